/* save_model.c -- a model as a Hugging Face folder (see save_model.h). */
#include "model/save_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/safetensors.h"

/* The fused group (q/k/v or gate/up) kind belongs to in the model's layout:
 * its kinds in *kinds, their count returned; 0 for a kind stored alone. */
static int group_of(const qh_layout *ly, int kind, const int **kinds)
{
    static const int qkv[] = { QH_LIN_Q, QH_LIN_K, QH_LIN_V }, gu[] = { QH_LIN_GATE, QH_LIN_UP };
    if (ly->fuse == QH_FUSE_NONE) return 0;
    if (ly->qkv_fused && kind >= QH_LIN_Q && kind <= QH_LIN_V) { *kinds = qkv; return 3; }
    if (ly->gate_up_fused && (kind == QH_LIN_GATE || kind == QH_LIN_UP)) { *kinds = gu; return 2; }
    return 0;
}

/* Tensor `name` in its stored form from the model's current linears, if it
 * is a decoder linear's weight or bias (one kind's, or a fused tensor's): the
 * model's own memory when the form is the same, else a new buffer in *owned
 * (Conv1D weights transposed back to (in, out), GPT-NeoX's q/k/v rows
 * interleaved per head again).  NULL with *owned NULL: not a linear's; NULL
 * with st set: out of memory. */
static const float *linear_tensor(const qh_model *m, const char *name, float **owned, int *layer,
                                  int *st)
{
    const qh_layout *ly = m->cfg.family->layout;
    size_t len = strlen(name);
    int is_w = len > 7 && !strcmp(name + len - 7, ".weight");
    int is_b = len > 5 && !strcmp(name + len - 5, ".bias");
    *owned = NULL;
    if (!is_w && !is_b) return NULL;
    size_t base_len = len - (is_w ? 7 : 5);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            const qh_linear *lin = &m->blocks[l].lin[k];
            const int *kinds = NULL;
            int n = group_of(ly, k, &kinds);
            if (!lin->W || (n && kinds[0] != k)) continue;   /* a group at its first kind */
            /* lin->name is the tensor as found ("<tensor>[q]" for a fused kind) */
            size_t pl = strcspn(lin->name, "[");
            if (pl != base_len || strncmp(name, lin->name, pl)) continue;
            size_t rows = 0, in = (size_t)lin->in;
            for (int i = 0; i < (n ? n : 1); i++) rows += (size_t)m->blocks[l].lin[n ? kinds[i] : k].out;
            const float *src = is_w ? lin->W : lin->b;     /* a group's rows are contiguous */
            if (!src) return NULL;
            *layer = l;
            int acq = qh_model_acquire_block(m, l);   /* a spilled block not yet converted */
            if (acq != QH_OK) { *st = acq; return NULL; }
            int heads = ly->fuse == QH_FUSE_HEADS && n == 3;
            int transpose = ly->transposed && is_w;
            if (!heads && !transpose) return src;
            size_t cols = is_w ? in : 1, count = rows * cols;
            float *buf = malloc(2 * count * sizeof(float));
            if (!buf) {
                *st = qh_error(QH_ENOMEM, __FILE__, __LINE__, __func__, "out of memory for %s", name);
                return NULL;
            }
            memcpy(buf, src, count * sizeof(float));
            if (heads)
                qh_fused_heads_permute(buf, (size_t)m->cfg.n_heads, (size_t)m->cfg.head_dim, cols,
                                       1, buf + count);
            if (transpose) {          /* (rows, in) -> (in, rows) */
                float *t = buf + count;
                for (size_t i = 0; i < rows; i++)
                    for (size_t j = 0; j < in; j++) t[j * rows + i] = buf[i * in + j];
                memcpy(buf, t, count * sizeof(float));
            }
            *owned = buf;
            return buf;
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

/* The tensors of the written file, one at a time (qh_st_write_stream): a
 * linear's from the model (a copy only where its form differs), the rest
 * read from the stored files; each copy is freed once written, and a
 * spilled block's pages are dropped after each of its linears, so that the
 * write holds one tensor and one block, not the model. */
typedef struct {
    const qh_model *m;
    const qh_st_file **file;         /* per tensor, its file and entry */
    const qh_st_tensor **src;
    float *owned;                    /* the current tensor's copy, or NULL */
    int layer;                       /* the current tensor's block, or -1 */
} save_source;

static int save_load(void *user, size_t i, const float **data)
{
    save_source *s = user;
    const qh_st_tensor *src = s->src[i];
    int st = QH_OK;
    s->owned = NULL;
    s->layer = -1;
    *data = linear_tensor(s->m, src->name, &s->owned, &s->layer, &st);
    if (*data || st != QH_OK) return st;
    if (!(s->owned = malloc((src->numel ? src->numel : 1) * sizeof(float))))
        QH_ERROR(QH_ENOMEM, "out of memory copying %s", src->name);
    QH_TRY(qh_st_read_f32(s->file[i], src, s->owned));
    *data = s->owned;
    return QH_OK;
}

static void save_done(void *user, size_t i)
{
    (void)i;
    save_source *s = user;
    free(s->owned);
    s->owned = NULL;
    if (s->layer >= 0) qh_model_release_block(s->m, s->layer);
}

static int write_weights(const qh_model *m, const qh_st_set *set, const char *path)
{
    size_t n = 0;
    for (size_t f = 0; f < set->n_files; f++) n += set->files[f]->n_tensors;
    qh_st_write_tensor *t = calloc(n ? n : 1, sizeof *t);
    save_source s = { m, calloc(n ? n : 1, sizeof *s.file), calloc(n ? n : 1, sizeof *s.src), NULL, -1 };
    int st = (t && s.file && s.src) ? QH_OK : qh_error(QH_ENOMEM, __FILE__, __LINE__, __func__, "out of memory");
    size_t k = 0;
    for (size_t f = 0; f < set->n_files && st == QH_OK; f++)
        for (size_t i = 0; i < set->files[f]->n_tensors; i++, k++) {
            const qh_st_tensor *src = &set->files[f]->tensors[i];
            s.file[k] = set->files[f];
            s.src[k] = src;
            t[k].name = src->name;
            /* the stored dtype is kept: F16 and BF16 round to nearest even */
            t[k].dtype = src->dtype == QH_ST_F16 || src->dtype == QH_ST_BF16 ? src->dtype : QH_ST_F32;
            t[k].ndim = src->ndim;
            memcpy(t[k].shape, src->shape, sizeof t[k].shape);
        }
    qh_st_write_source source = { save_load, save_done, &s };
    if (st == QH_OK) st = qh_st_write_stream(path, t, n, &source);
    free(s.owned);                    /* left by a failed write */
    free(s.file);
    free(s.src);
    free(t);
    return st;
}

int qh_model_save(const qh_model *m, const char *out_dir)
{
    static const char *const small_files[] = { "config.json", "tokenizer.json", "tokenizer_config.json",
                                               "generation_config.json", "special_tokens_map.json",
                                               "vocab.json", "merges.txt", "tokenizer.model",
                                               "added_tokens.json", NULL };
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

int qh_model_save_meta(const qh_model *m, const char *out_dir, const char *meta_json)
{
    QH_TRY(qh_model_save(m, out_dir));
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/%s", out_dir, QH_SAVE_META_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) QH_ERROR(QH_EIO, "cannot write %s", tmp);
    size_t n = strlen(meta_json);
    int ok = fwrite(meta_json, 1, n, f) == n && fputc('\n', f) != EOF;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        QH_ERROR(QH_EIO, "cannot write %s", path);
    }
    return QH_OK;
}
