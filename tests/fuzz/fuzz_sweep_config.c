/* fuzz_sweep_config.c -- sweep configurations (pipeline/config.h): parse,
 * expand into cells, validate the method parameters against the method
 * table (qh_pipeline_validate) as `qh run` does before the first cell.
 * Input: the JSON text (a NUL byte ends it early, as it would a file read
 * as a C string).  Seeds: tests/fuzz/corpus/sweep_config/ (configs/). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    qh_config *c = NULL;
    if (qh_config_parse(text, "fuzz.json", &c) == QH_OK) {
        qh_cell *cells = NULL;
        size_t n = 0;
        if (qh_config_cells(c, &cells, &n) == QH_OK) {
            /* the cross product, each id unique */
            if (n != c->n_models * c->n_methods * c->n_bits * c->n_seeds) abort();
            for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n && j < i + 64; j++)
                    if (!strcmp(cells[i].id, cells[j].id)) abort();
        }
        free(cells);
        if (qh_pipeline_validate(c) != QH_OK) { /* refused: the message is the result */ }
    }
    qh_config_free(c);
    free(text);
    return 0;
}
