/* fuzz_safetensors.c -- the safetensors reader (model/safetensors.h) on
 * arbitrary files: open and validate the header, look every tensor up by
 * name, convert every F32/F16/BF16 tensor to float32.
 * Seeds: tests/fuzz/corpus/safetensors/ (small files of each dtype). */
#include <stdlib.h>

#include "fuzz_util.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[1100];
    if (!path[0]) fuzz_path(path, sizeof path, fuzz_dir(), "input.safetensors");
    fuzz_write(path, data, size);
    qh_st_file *f = NULL;
    if (qh_st_open(path, &f) != QH_OK) return 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const qh_st_tensor *t = &f->tensors[i];
        /* open promised: sorted unique names, ranges inside the data section */
        if (qh_st_find(f, t->name) != t || t->end < t->begin || t->end > f->data_size) abort();
        if (t->dtype != QH_ST_F32 && t->dtype != QH_ST_F16 && t->dtype != QH_ST_BF16) continue;
        if (t->numel * qh_st_dtype_size(t->dtype) != t->end - t->begin) abort();
        float *dst = malloc((t->numel ? t->numel : 1) * sizeof *dst);
        if (!dst) abort();
        if (qh_st_read_f32(f, t, dst) != QH_OK) abort();   /* a validated tensor converts */
        free(dst);
    }
    qh_st_close(f);
    return 0;
}
