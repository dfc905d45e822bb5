/* fuzz_h5_cell.c -- a cell's HDF5 results file read as `qh report` reads it
 * (report/report.h: qh_report_load on a folder holding the one file, which
 * reads /run's attributes, /run/eval and /run/layer_table through
 * results/reader.h), then every child of /run through the reader's table and
 * vector readers, as `qh merge` and `qh status` read files they did not write.
 * Seeds: tests/fuzz/corpus/h5_cell/ (cells written by qh layer on the tiny
 * test model).  The HDF5 library itself is not instrumented: what is tested
 * is the project's reading code on whatever the library returns. */
#include <stdlib.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "report/report.h"
#include "results/reader.h"

static void read_children(const char *path)
{
    hid_t f;
    if (qh_h5_open_read(path, &f) != QH_OK) return;
    char **names = NULL;
    size_t n = 0;
    if (qh_h5_exists(f, "/run") && qh_h5_list_group(f, "/run", &names, &n) == QH_OK) {
        for (size_t i = 0; i < n; i++) {
            char obj[1024];
            if (qh_path_format(obj, sizeof obj, "object", "/run/%s", names[i]) != QH_OK) continue;
            qh_h5_table t = {0};
            if (qh_h5_read_table(f, obj, &t) == QH_OK)
                for (size_t c = 0; c < t.n_cols; c++)
                    for (size_t r = 0; r < t.n_rows; r++)
                        (void)qh_h5_column_value(&t.cols[c], t.n_rows, r);
            qh_h5_table_free(&t);
            double *x = NULL;
            size_t nx = 0;
            if (qh_h5_read_vec(f, obj, &x, &nx) == QH_OK) free(x);
            char *s = NULL;
            if (qh_h5_attr_string(f, obj, "columns", &s) == QH_OK) free(s);
        }
        qh_h5_free_names(names, n);
    }
    qh_h5_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[1100], path[1200];
    if (!dir[0]) {
        fuzz_path(dir, sizeof dir, fuzz_dir(), "cells");
        if (mkdir(dir, 0700) != 0) abort();
        fuzz_path(path, sizeof path, dir, "cell.h5");
    }
    fuzz_write(path, data, size);
    qh_report_set set = {0};
    if (qh_report_load(dir, &set) == QH_OK) {
        for (size_t i = 0; i < set.n_cells; i++)
            if (set.cells[i].n_eval && !set.cells[i].eval_names) abort();
    }
    qh_report_set_free(&set);
    read_children(path);
    return 0;
}
