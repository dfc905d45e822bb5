/* protocol.c -- the protocol record of a cell (see protocol.h). */
#include "pipeline/protocol.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"
#include "model/safetensors.h"
#include "pipeline/config.h"
#include "pipeline/wa_config.h"
#include "qh_blas.h"
#include "qh_method.h"
#include "qh_path.h"
#include "results/provenance.h"
#include "tokenizer/sha256.h"

const char *const qh_protocol_host_keys[] = { "blas.", NULL };

/* ---- file hashes, once per process ------------------------------------------- */

#define HASH_CACHE 64                /* models have a few files each; more are hashed again */

typedef struct {
    char path[1024];
    long long size, mtime_s, mtime_ns;
    char hex[65];
} hash_entry;

static hash_entry cache[HASH_CACHE];
static size_t n_cache;

static int hash_stream(FILE *f, const char *path, char hex[65])
{
    static unsigned char buf[1 << 20];
    qh_sha256_ctx c;
    uint8_t d[32];
    size_t n;
    qh_sha256_init(&c);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) qh_sha256_update(&c, buf, n);
    if (ferror(f)) QH_ERROR(QH_EIO, "%s: read error while hashing", path);
    qh_sha256_final(&c, d);
    qh_sha256_to_hex(d, hex);
    return QH_OK;
}

int qh_file_sha256(const char *path, char hex[65])
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        QH_ERROR(QH_EIO, "%s: not a readable regular file", path);
    for (size_t i = 0; i < n_cache; i++)
        if (!strcmp(cache[i].path, path) && cache[i].size == (long long)sb.st_size
            && cache[i].mtime_s == (long long)sb.st_mtim.tv_sec
            && cache[i].mtime_ns == (long long)sb.st_mtim.tv_nsec) {
            memcpy(hex, cache[i].hex, 65);
            return QH_OK;
        }
    FILE *f = fopen(path, "rb");
    if (!f) QH_ERROR(QH_EIO, "%s: cannot open for hashing", path);
    int st = hash_stream(f, path, hex);
    fclose(f);
    if (st != QH_OK || strlen(path) >= sizeof cache[0].path) return st;
    hash_entry *e = &cache[n_cache < HASH_CACHE ? n_cache++ : HASH_CACHE - 1];
    snprintf(e->path, sizeof e->path, "%s", path);
    e->size = (long long)sb.st_size;
    e->mtime_s = (long long)sb.st_mtim.tv_sec;
    e->mtime_ns = (long long)sb.st_mtim.tv_nsec;
    memcpy(e->hex, hex, 65);
    return QH_OK;
}

void qh_protocol_sha256(const char *json, char hex[65])
{
    uint8_t d[32];
    qh_sha256(json, strlen(json), d);
    qh_sha256_to_hex(d, hex);
}

/* ---- the record: keys collected, then emitted sorted ------------------------------ */

typedef struct {
    char key[160];
    cJSON *value;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
    int failed;                      /* out of memory */
} record;

static void put(record *r, cJSON *value, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void put(record *r, cJSON *value, const char *fmt, ...)
{
    if (!value || r->failed) { r->failed = 1; cJSON_Delete(value); return; }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 32;
        entry *e = realloc(r->e, cap * sizeof *e);
        if (!e) { r->failed = 1; cJSON_Delete(value); return; }
        r->e = e;
        r->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->e[r->n].key, sizeof r->e[r->n].key, fmt, ap);
    va_end(ap);
    r->e[r->n++].value = value;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The hash of path, or "unreadable" (the cell that reads it fails and says why). */
static cJSON *file_hash(const char *path)
{
    char hex[65];
    return cJSON_CreateString(qh_file_sha256(path, hex) == QH_OK ? hex : "unreadable");
}

/* config.json, tokenizer.json, the index and every safetensors file. */
static void put_model(record *r, const char *dir)
{
    static const char *const fixed[] = { "config.json", "tokenizer.json" };
    char path[1200];
    for (int i = 0; i < 2; i++) {
        if (qh_path_format(path, sizeof path, "model file", "%s/%s", dir, fixed[i]) != QH_OK) continue;
        put(r, file_hash(path), "model.file.%s", fixed[i]);
    }
    qh_st_set *set = NULL;
    if (qh_st_set_open(dir, &set) != QH_OK) {
        put(r, cJSON_CreateString("unreadable"), "model.file.weights");
        return;
    }
    if (set->index_path[0])
        put(r, file_hash(set->index_path), "model.file.%s", base_name(set->index_path));
    for (size_t i = 0; i < set->n_files; i++)
        put(r, file_hash(set->files[i]->path), "model.file.%s", base_name(set->files[i]->path));
    qh_st_set_close(set);
}

static void put_eval(record *r, const qh_config *cfg, int max_pos)
{
    put(r, cJSON_CreateNumber(cfg->eval_seqlen ? cfg->eval_seqlen : max_pos), "eval.seqlen");
    put(r, cJSON_CreateNumber(cfg->eval_max_windows), "eval.max_windows");
    put(r, cJSON_CreateNumber(cfg->eval_kl_topk), "eval.kl_topk");
    for (size_t d = 0; d < cfg->n_datasets; d++) {
        const qh_config_entry *e = &cfg->datasets[d];
        put(r, cJSON_CreateString(base_name(e->path)), "eval.data.%s.file", e->label);
        put(r, file_hash(e->path), "eval.data.%s.sha256", e->label);
    }
    for (size_t t = 0; t < cfg->n_tasks; t++) {
        const qh_config_entry *e = &cfg->tasks[t];
        put(r, cJSON_CreateString(base_name(e->path)), "tasks.%s.file", e->label);
        put(r, file_hash(e->path), "tasks.%s.sha256", e->label);
    }
}

static void put_calibration(record *r, const qh_config *cfg, const qh_cell *cell, int max_pos)
{
    put(r, cJSON_CreateString(base_name(cfg->calib_path)), "calibration.file");
    put(r, file_hash(cfg->calib_path), "calibration.sha256");
    put(r, cJSON_CreateNumber(cfg->calib_nsamples), "calibration.nsamples");
    put(r, cJSON_CreateNumber(cfg->calib_seqlen ? cfg->calib_seqlen : max_pos), "calibration.seqlen");
    put(r, cJSON_CreateNumber((double)cell->seed), "calibration.seed");
}

static void put_wa_entry(const char *key, const char *value, void *user)
{
    put(user, cJSON_CreateString(value), "%s", key);
}

/* The per-layer rules that apply to the cell's method entry, in order (top
 * level first), as an array of {match, bits, skip, params}; absent without
 * rules, so records of cells without rules are unchanged. */
static void put_rules(record *r, const qh_config *cfg, size_t method)
{
    size_t n = qh_config_rule_count(cfg, method);
    if (!n) return;
    cJSON *arr = cJSON_CreateArray();
    for (size_t k = 0; arr && k < n; k++) {
        const qh_config_rule *rule = qh_config_rule_at(cfg, method, k);
        cJSON *o = cJSON_CreateObject(), *params = cJSON_CreateObject();
        if (!o || !params) { cJSON_Delete(o); cJSON_Delete(params); cJSON_Delete(arr); arr = NULL; break; }
        cJSON_AddStringToObject(o, "match", rule->match);
        cJSON_AddNumberToObject(o, "bits", rule->bits);
        cJSON_AddNumberToObject(o, "skip", rule->skip);
        for (size_t p = 0; p < rule->n_params; p++)
            cJSON_AddStringToObject(params, rule->params[p].key, rule->params[p].value);
        cJSON_AddItemToObject(o, "params", params);
        cJSON_AddItemToArray(arr, o);
    }
    put(r, arr, "layers");
}

/* Method name, version and every parameter as the cell resolves them. */
static int put_method(record *r, const qh_config *cfg, const qh_cell *cell)
{
    const qh_config_method *cm = &cfg->methods[cell->method];
    const qh_method_type *t = NULL;
    void *params = NULL;
    int st = qh_config_method_params(cfg, cell->method, &t, &params);
    if (st != QH_OK) { free(params); return st; }
    put(r, cJSON_CreateString(t->name), "method.name");
    put(r, cJSON_CreateNumber(t->version), "method.version");
    for (const qh_param_desc *d = t->params; d && d->key; d++) {
        char buf[128];
        qh_param_format(d, params, buf, sizeof buf);
        put(r, cJSON_CreateString(buf), "method.param.%s", d->key);
    }
    free(params);
    const qh_incoh_row *row = qh_incoh_find(cm->incoherence);
    int incoh = row && row->kind != QH_INCOH_NONE;
    put(r, cJSON_CreateString(cm->incoherence), "incoherence");
    put(r, cJSON_CreateBool(cm->rescale && incoh), "rescale");
    put(r, cJSON_CreateBool(cm->permute && row && row->kind == QH_INCOH_KRON), "permute");
    put(r, cJSON_CreateNumber(cell->bits), "bits");
    put(r, cJSON_CreateNumber((double)cell->seed), "seed");
    qh_wa_protocol(&cm->wa, put_wa_entry, r);
    put_rules(r, cfg, cell->method);
    qh_wa_transform_protocol(&cm->tf, put_wa_entry, r);
    return QH_OK;
}

static void put_code(record *r, int blas_threads)
{
    char commit[64];
    int dirty;
    qh_provenance_code_version(commit, sizeof commit, &dirty);
    put(r, cJSON_CreateString(commit), "code.commit");
    put(r, dirty < 0 ? cJSON_CreateNull() : cJSON_CreateBool(dirty), "code.dirty");
    qh_blas_info_t b = qh_blas_info();
    put(r, cJSON_CreateString(b.core ? b.core : "unknown"), "blas.core");
    put(r, cJSON_CreateNumber(blas_threads), "blas.threads");
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

/* The sorted object as text; the entries' values move into it. */
static int emit(record *r, char **json)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) r->failed = 1;
    qsort(r->e, r->n, sizeof *r->e, by_key);
    for (size_t i = 0; i < r->n; i++) {
        if (o && !r->failed) cJSON_AddItemToObject(o, r->e[i].key, r->e[i].value);
        else cJSON_Delete(r->e[i].value);
    }
    *json = o && !r->failed ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(r->e);
    if (!*json) QH_ERROR(QH_ENOMEM, "protocol record: out of memory");
    return QH_OK;
}

int qh_protocol_record(const qh_config *cfg, size_t model, const qh_cell *cell, int blas_threads,
                       char **json)
{
    *json = NULL;
    const qh_config_entry *me = &cfg->models[cell ? cell->model : model];
    qh_model_config mc;
    int max_pos = qh_model_config_load(me->path, &mc) == QH_OK ? mc.max_pos : 0;
    record r = { 0 };
    put(&r, cJSON_CreateNumber(1), "record.version");
    put_model(&r, me->path);
    put_eval(&r, cfg, max_pos);
    put_code(&r, blas_threads);
    if (!cell) {
        put(&r, cJSON_CreateString("float32"), "method.name");
    } else {
        put_calibration(&r, cfg, cell, max_pos);
        int st = put_method(&r, cfg, cell);
        if (st != QH_OK) {
            for (size_t i = 0; i < r.n; i++) cJSON_Delete(r.e[i].value);
            free(r.e);
            return st;
        }
    }
    return emit(&r, json);
}
