/* float_cache.c -- the float model's per-window reference on disk (see float_cache.h). */
#define _FILE_OFFSET_BITS 64      /* caches of more than 2 GiB */
#include "pipeline/float_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/forward.h"
#include "model/safetensors.h"
#include "pipeline/protocol.h"
#include "qh_path.h"
#include "results/writer.h"
#include "tokenizer/sha256.h"
#include "tokenizer/tokenizer.h"

#define MAGIC "QHFREF1"
#define HEADER 128

struct qh_float_cache {
    FILE *f;
    char path[1024];
    size_t vocab, seqlen, n_windows, k;
    int32_t *idx;
    float *logp, *logp_true;
};

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void hash_text(qh_sha256_ctx *c, const char *s)
{
    qh_sha256_update(c, s, strlen(s) + 1);
}

static int hash_file(qh_sha256_ctx *c, const char *path)
{
    char hex[65];
    QH_TRY(qh_file_sha256(path, hex));
    hash_text(c, hex);
    return QH_OK;
}

int qh_float_cache_key(const char *model_dir, const int32_t *ids, size_t seqlen, size_t n_windows,
                       size_t k, char key[65])
{
    static const char *const fixed[] = { "config.json", "tokenizer.json" };
    qh_sha256_ctx c;
    char path[1200], buf[128], idhex[65];
    uint8_t d[32];
    qh_sha256_init(&c);
    hash_text(&c, "qh float reference v1");
    for (int i = 0; i < 2; i++) {
        QH_TRY(qh_path_format(path, sizeof path, "model file", "%s/%s", model_dir, fixed[i]));
        QH_TRY(hash_file(&c, path));
    }
    qh_st_set *set = NULL;
    QH_TRY(qh_st_set_open(model_dir, &set));
    int st = QH_OK;
    for (size_t i = 0; i < set->n_files && st == QH_OK; i++) st = hash_file(&c, set->files[i]->path);
    qh_st_set_close(set);
    QH_TRY(st);
    qh_ids_sha256_hex(ids, seqlen * n_windows, idhex);
    snprintf(buf, sizeof buf, "%s %zu %zu %zu", idhex, seqlen, n_windows, k);
    hash_text(&c, buf);
    qh_sha256_final(&c, d);
    qh_sha256_to_hex(d, key);
    return QH_OK;
}

static size_t window_bytes(size_t seqlen, size_t k)
{
    return (seqlen - 1) * (8 * k + 4);
}

static int write_all(FILE *f, const void *p, size_t n, const char *path)
{
    if (fwrite(p, 1, n, f) != n) QH_ERROR(QH_EIO, "float cache %s: write failed", path);
    return QH_OK;
}

int qh_float_cache_dir(const char *out_dir, char *buf, size_t cap)
{
    return qh_path_format(buf, cap, "float cache folder", "%s/float-cache", out_dir);
}

/* A new temporary for path, named as results files are (unique to the
 * process and the call, created exclusively), so concurrent builders of one
 * cache never share one, and a killed worker's is found by its pid
 * (qh_results_remove_folder_temporaries). */
static int create_tmp(const char *path, char *tmp, size_t cap, FILE **out)
{
    *out = NULL;
    for (int attempt = 0; attempt < 4; attempt++) {
        QH_TRY(qh_results_tmp_name(path, tmp, cap));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0 || !(*out = fdopen(fd, "wb"))) {
            int e = errno;
            if (fd >= 0) { close(fd); remove(tmp); }
            QH_ERROR(QH_EIO, "float cache %s: cannot create (%s)", tmp, strerror(e));
        }
        return QH_OK;
    }
    QH_ERROR(QH_EIO, "float cache %s: no unused temporary name", path);
}

int qh_float_cache_build(const qh_model *fm, const int32_t *ids, size_t seqlen, size_t n_windows,
                         size_t k, const char *key, const char *path)
{
    size_t vocab = (size_t)fm->cfg.vocab_size, rows = seqlen - 1;
    char tmp[1500];
    unsigned char head[HEADER] = { 0 };
    qh_forward_ws *ws = NULL;
    float *logits = malloc(vocab * seqlen * sizeof *logits);
    int32_t *idx = malloc(rows * k * sizeof *idx);
    float *logp = malloc(rows * k * sizeof *logp), *lt = malloc(rows * sizeof *lt);
    FILE *f = NULL;
    int st = QH_OK;
    if (!logits || !idx || !logp || !lt) {
        QH_SET_ERROR(st, QH_ENOMEM, "float cache: out of memory");
        goto cleanup;
    }
    if ((st = qh_forward_ws_alloc(fm, seqlen, &ws)) != QH_OK) goto cleanup;
    if ((st = create_tmp(path, tmp, sizeof tmp, &f)) != QH_OK) goto cleanup;
    memcpy(head, MAGIC, 8);
    put_u64(head + 8, vocab);
    put_u64(head + 16, seqlen);
    put_u64(head + 24, n_windows);
    put_u64(head + 32, k);
    memcpy(head + 40, key, 64);
    st = write_all(f, head, HEADER, tmp);
    for (size_t w = 0; w < n_windows && st == QH_OK; w++) {
        const int32_t *win = ids + w * seqlen;
        st = qh_forward_window(fm, win, seqlen, ws, logits);
        if (st != QH_OK) { qh_error_prefix("float cache window %zu", w); break; }
        qh_float_window_from_logits(logits, vocab, win, seqlen, k, idx, logp, lt);
        st = write_all(f, idx, rows * k * sizeof *idx, tmp);
        if (st == QH_OK) st = write_all(f, logp, rows * k * sizeof *logp, tmp);
        if (st == QH_OK) st = write_all(f, lt, rows * sizeof *lt, tmp);
    }
    if (st == QH_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        QH_SET_ERROR(st, QH_EIO, "float cache %s: flush failed (%s)", tmp, strerror(errno));
    if (fclose(f) != 0 && st == QH_OK)
        QH_SET_ERROR(st, QH_EIO, "float cache %s: close failed", tmp);
    f = NULL;
    if (st == QH_OK && rename(tmp, path) != 0)
        QH_SET_ERROR(st, QH_EIO, "float cache: cannot rename %s to %s (%s)", tmp, path, strerror(errno));
    if (st != QH_OK) remove(tmp);
cleanup:
    if (f) { fclose(f); remove(tmp); }
    qh_forward_ws_free(ws);
    free(logits); free(idx); free(logp); free(lt);
    return st;
}

int qh_float_cache_open(const char *path, const char *key, size_t vocab, size_t seqlen,
                        size_t n_windows, size_t k, qh_float_cache **out)
{
    unsigned char head[HEADER];
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) QH_ERROR(QH_EIO, "float cache %s: cannot open (%s)", path, strerror(errno));
    int st = QH_OK;
    const char *bad = NULL;
    if (fread(head, 1, HEADER, f) != HEADER) bad = "short header";
    else if (memcmp(head, MAGIC, 8) != 0) bad = "magic";
    else if (get_u64(head + 8) != vocab) bad = "vocab";
    else if (get_u64(head + 16) != seqlen) bad = "seqlen";
    else if (get_u64(head + 24) != n_windows) bad = "n_windows";
    else if (get_u64(head + 32) != k) bad = "k";
    else if (memcmp(head + 40, key, 64) != 0) bad = "key";
    else if (fseeko(f, 0, SEEK_END) != 0
             || ftello(f) != (off_t)(HEADER + n_windows * window_bytes(seqlen, k))) bad = "size";
    if (bad) {
        fclose(f);
        QH_ERROR(QH_EIO, "float cache %s: %s does not match", path, bad);
    }
    qh_float_cache *c = calloc(1, sizeof *c);
    if (c) {
        c->idx = malloc((seqlen - 1) * k * sizeof *c->idx);
        c->logp = malloc((seqlen - 1) * k * sizeof *c->logp);
        c->logp_true = malloc((seqlen - 1) * sizeof *c->logp_true);
    }
    if (!c || !c->idx || !c->logp || !c->logp_true) {
        QH_SET_ERROR(st, QH_ENOMEM, "float cache: out of memory");
        fclose(f);
        if (c) { free(c->idx); free(c->logp); free(c->logp_true); free(c); }
        return st;
    }
    c->f = f;
    snprintf(c->path, sizeof c->path, "%s", path);
    c->vocab = vocab;
    c->seqlen = seqlen;
    c->n_windows = n_windows;
    c->k = k;
    *out = c;
    return QH_OK;
}

void qh_float_cache_close(qh_float_cache *c)
{
    if (!c) return;
    fclose(c->f);
    free(c->idx);
    free(c->logp);
    free(c->logp_true);
    free(c);
}

int qh_float_cache_window(size_t w, qh_float_window *out, void *user)
{
    qh_float_cache *c = user;
    size_t rows = c->seqlen - 1, k = c->k;
    if (w >= c->n_windows)
        QH_ERROR(QH_EINVAL, "float cache %s: window %zu of %zu", c->path, w, c->n_windows);
    if (fseeko(c->f, (off_t)(HEADER + w * window_bytes(c->seqlen, k)), SEEK_SET) != 0
        || fread(c->idx, sizeof *c->idx, rows * k, c->f) != rows * k
        || fread(c->logp, sizeof *c->logp, rows * k, c->f) != rows * k
        || fread(c->logp_true, sizeof *c->logp_true, rows, c->f) != rows)
        QH_ERROR(QH_EIO, "float cache %s: cannot read window %zu", c->path, w);
    for (size_t i = 0; i < rows * k; i++)          /* a damaged file must not index past the vocabulary */
        if (c->idx[i] < 0 || (size_t)c->idx[i] >= c->vocab)
            QH_ERROR(QH_EIO, "float cache %s: window %zu holds token id %d outside the vocabulary "
                     "of %zu", c->path, w, (int)c->idx[i], c->vocab);
    *out = (qh_float_window){ k, c->idx, c->logp, c->logp_true };
    return QH_OK;
}
