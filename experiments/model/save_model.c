/* save_model.c -- a model as a Hugging Face folder (see save_model.h). */
#include "model/save_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/safetensors.h"

/* The model's current weights for tensor `name` if it is a decoder linear's W. */
static const float *linear_weights(const qh_model *m, const char *name)
{
    size_t len = strlen(name);
    if (len < 8 || strcmp(name + len - 7, ".weight")) return NULL;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            const qh_linear *lin = &m->blocks[l].lin[k];
            if (!lin->W) continue;
            /* lin->name is the prefix as found; the file may omit "model.".  A
             * kind split from a fused tensor is "<tensor>[q]": its W is at its
             * rows of the fused tensor, so the first kind's W is the whole
             * fused tensor as the model now holds it */
            const char *ln = lin->name;
            size_t pl = strcspn(ln, "[");
            if (ln[pl] == '[' && (k == QH_LIN_K || k == QH_LIN_V || k == QH_LIN_UP)) continue;
            if (pl == len - 7 && !strncmp(name, ln, pl)) return lin->W;
            if (!strncmp(ln, "model.", 6) && pl - 6 == len - 7 && !strncmp(name, ln + 6, pl - 6)) return lin->W;
        }
    return NULL;
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in) return errno == ENOENT ? QH_OK : qh_error(QH_EIO, __FILE__, __LINE__, __func__, "cannot read %s", from);
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *out = fopen(tmp, "wb");
    int st = QH_OK;
    char buf[65536];
    size_t n;
    if (!out) QH_SET_ERROR(st, QH_EIO, "cannot write %s", tmp);
    while (st == QH_OK && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) QH_SET_ERROR(st, QH_EIO, "cannot write %s", tmp);
    fclose(in);
    if (out && fclose(out) != 0 && st == QH_OK) QH_SET_ERROR(st, QH_EIO, "cannot write %s", tmp);
    if (st == QH_OK && rename(tmp, to) != 0) QH_SET_ERROR(st, QH_EIO, "cannot rename %s to %s", tmp, to);
    if (st != QH_OK) remove(tmp);
    return st;
}

static int write_weights(const qh_model *m, const qh_st_set *set, const char *path)
{
    size_t n = 0;
    for (size_t f = 0; f < set->n_files; f++) n += set->files[f]->n_tensors;
    qh_st_write_tensor *t = calloc(n ? n : 1, sizeof *t);
    float **owned = calloc(n ? n : 1, sizeof *owned);
    int st = (t && owned) ? QH_OK : qh_error(QH_ENOMEM, __FILE__, __LINE__, __func__, "out of memory");
    size_t k = 0;
    for (size_t f = 0; f < set->n_files && st == QH_OK; f++) {
        const qh_st_file *file = set->files[f];
        for (size_t i = 0; i < file->n_tensors && st == QH_OK; i++, k++) {
            const qh_st_tensor *src = &file->tensors[i];
            t[k].name = src->name;
            t[k].dtype = QH_ST_F32;
            t[k].ndim = src->ndim;
            memcpy(t[k].shape, src->shape, sizeof t[k].shape);
            t[k].data = linear_weights(m, src->name);
            if (t[k].data) continue;
            if (!(owned[k] = malloc((src->numel ? src->numel : 1) * sizeof(float))))
                QH_SET_ERROR(st, QH_ENOMEM, "out of memory copying %s", src->name);
            else if ((st = qh_st_read_f32(file, src, owned[k])) == QH_OK)
                t[k].data = owned[k];
        }
    }
    if (st == QH_OK) st = qh_st_write(path, t, n);
    for (size_t i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(t);
    return st;
}

int qh_model_save(const qh_model *m, const char *out_dir)
{
    static const char *const small_files[] = { "config.json", "tokenizer.json", "tokenizer_config.json",
                                               "generation_config.json", "special_tokens_map.json", NULL };
    char from[1200], to[1200];
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) QH_ERROR(QH_EIO, "cannot create %s", out_dir);
    qh_st_set *set = NULL;
    QH_TRY(qh_st_set_open(m->dir, &set));
    snprintf(to, sizeof to, "%s/model.safetensors", out_dir);
    int st = write_weights(m, set, to);
    qh_st_set_close(set);
    for (const char *const *f = small_files; *f && st == QH_OK; f++) {
        snprintf(from, sizeof from, "%s/%s", m->dir, *f);
        snprintf(to, sizeof to, "%s/%s", out_dir, *f);
        st = copy_file(from, to);
    }
    return st;
}
