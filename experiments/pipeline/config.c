/* config.c -- strict JSON sweep configurations (see config.h). */
#include "pipeline/config.h"

#include <cJSON.h>
#include <fnmatch.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/wa_config.h"
#include "qh_path.h"

#define CFG_ERR(st, src, path, ...)                                                   \
    do { char msg_[512]; snprintf(msg_, sizeof msg_, __VA_ARGS__);                    \
         return qh_error((st), __FILE__, __LINE__, __func__, "config %s: %s: %s",     \
                         (src), (path), msg_); } while (0)

/* Rejects keys not in allowed (NULL-terminated). */
static int check_keys(const cJSON *obj, const char *const *allowed, const char *src, const char *path)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= !strcmp(it->string, *a);
        if (!ok) {
            char list[256] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", a == allowed ? "" : ", ", *a);
            CFG_ERR(QH_ECONFIG, src, path, "unknown key \"%s\" (expected one of: %s)", it->string, list);
        }
    }
    return QH_OK;
}

static int get_string(const cJSON *v, char *dst, size_t cap, const char *src, const char *path)
{
    if (!cJSON_IsString(v)) CFG_ERR(QH_ECONFIG, src, path, "expected a string");
    if (strlen(v->valuestring) >= cap || !v->valuestring[0])
        CFG_ERR(QH_ECONFIG, src, path, "expected a non-empty string shorter than %zu bytes", cap);
    strcpy(dst, v->valuestring);
    return QH_OK;
}

/* The range is checked on the double: converting one outside long's range
 * (1e20, 1e999 = inf) to long is undefined behaviour. */
static int get_int(const cJSON *v, long lo, long hi, long *out, const char *src, const char *path)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        CFG_ERR(QH_ECONFIG, src, path, "expected an integer");
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        CFG_ERR(QH_ECONFIG, src, path, "expected an integer in [%ld, %ld], got %.17g", lo, hi,
                v->valuedouble);
    *out = (long)v->valuedouble;
    return QH_OK;
}

/* The folder's base name as the default label: a longer name is an error,
 * not a truncated label that may collide with another. */
static int label_from_path(const char *path, char *label, size_t cap, const char *src, const char *at)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;             /* ignore trailing slashes */
    size_t i = n;
    while (i > 0 && path[i - 1] != '/') i--;
    if (n - i >= cap)
        CFG_ERR(QH_ECONFIG, src, at, "folder name \"%.*s\" is longer than a label may be (%zu bytes); "
                "give {\"label\": L, \"path\": P}", (int)(n - i), path + i, cap - 1);
    memcpy(label, path + i, n - i);
    label[n - i] = '\0';
    return QH_OK;
}

static int label_ok(const char *label)
{
    for (const char *p = label; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9')
              || *p == '-' || *p == '_' || *p == '+'))
            return 0;
    return *label != '\0';
}

/* models: ["dir", ...] or [{"label": L, "path": P}, ...] */
static int parse_entries(const cJSON *arr, int objects_by_key, qh_config_entry **out, size_t *n,
                         const char *src, const char *key)
{
    char path[128];
    size_t count = (size_t)cJSON_GetArraySize(arr);
    if (objects_by_key ? !cJSON_IsObject(arr) : !cJSON_IsArray(arr))
        CFG_ERR(QH_ECONFIG, src, key, objects_by_key ? "expected an object {label: path}"
                                                     : "expected an array of paths");
    if (count == 0) CFG_ERR(QH_ECONFIG, src, key, "expected at least one entry");
    *out = calloc(count, sizeof **out);
    if (!*out) QH_ERROR(QH_ENOMEM, "config %s: out of memory", src);
    *n = count;
    size_t i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        qh_config_entry *e = &(*out)[i];
        snprintf(path, sizeof path, "%s[%zu]", key, i);
        if (objects_by_key) {
            snprintf(path, sizeof path, "%s.%s", key, it->string);
            if (strlen(it->string) >= sizeof e->label)
                CFG_ERR(QH_ECONFIG, src, path, "label longer than %zu bytes", sizeof e->label - 1);
            strcpy(e->label, it->string);
            QH_TRY(get_string(it, e->path, sizeof e->path, src, path));
        } else if (cJSON_IsObject(it)) {
            static const char *const keys[] = { "label", "path", NULL };
            QH_TRY(check_keys(it, keys, src, path));
            QH_TRY(get_string(cJSON_GetObjectItemCaseSensitive(it, "path"), e->path, sizeof e->path, src, path));
            const cJSON *l = cJSON_GetObjectItemCaseSensitive(it, "label");
            if (l) QH_TRY(get_string(l, e->label, sizeof e->label, src, path));
            else QH_TRY(label_from_path(e->path, e->label, sizeof e->label, src, path));
        } else {
            QH_TRY(get_string(it, e->path, sizeof e->path, src, path));
            QH_TRY(label_from_path(e->path, e->label, sizeof e->label, src, path));
        }
        if (!label_ok(e->label))
            CFG_ERR(QH_ECONFIG, src, path, "label \"%s\" may use only letters, digits, '-', '_' and '+'", e->label);
        for (size_t j = 0; j < i; j++)
            if (!strcmp((*out)[j].label, e->label))
                CFG_ERR(QH_ECONFIG, src, path, "duplicate label \"%s\"", e->label);
    }
    return QH_OK;
}

static int parse_param_value(const cJSON *v, char *dst, size_t cap, const char *src, const char *path)
{
    if (cJSON_IsString(v)) return get_string(v, dst, cap, src, path);
    if (cJSON_IsBool(v)) { snprintf(dst, cap, "%s", cJSON_IsTrue(v) ? "true" : "false"); return QH_OK; }
    if (cJSON_IsNumber(v)) { snprintf(dst, cap, "%.17g", v->valuedouble); return QH_OK; }
    CFG_ERR(QH_ECONFIG, src, path, "expected a string, number or boolean");
}

/* "variant": "default" | "reference" (qh_variant_parse), at `path`. */
static int get_variant(const cJSON *v, qh_variant *out, const char *src, const char *path)
{
    if (!cJSON_IsString(v))
        CFG_ERR(QH_ECONFIG, src, path, "expected a string, one of: " QH_VARIANT_NAMES);
    if (qh_variant_parse(v->valuestring, out) != QH_OK)
        CFG_ERR(QH_ECONFIG, src, path, "%s", qh_last_error());
    return QH_OK;
}

/* 1 if name matches rule r (glob, or "re:" + POSIX extended regex); -1 when
 * the regex does not compile. */
int qh_config_rule_matches(const qh_config_rule *r, const char *name)
{
    if (strncmp(r->match, "re:", 3) != 0) return fnmatch(r->match, name, 0) == 0;
    regex_t re;
    if (regcomp(&re, r->match + 3, REG_EXTENDED | REG_NOSUB) != 0) return -1;
    int hit = regexec(&re, name, 0, NULL, 0) == 0;
    regfree(&re);
    return hit;
}

/* One rule: {"match": P, "bits": B, "skip": true, "params": {...}}. */
static int parse_rule(const cJSON *obj, qh_config_rule *r, const char *src, const char *path)
{
    static const char *const keys[] = { "match", "bits", "skip", "params", NULL };
    char sub[192];
    const cJSON *v;
    if (!cJSON_IsObject(obj)) CFG_ERR(QH_ECONFIG, src, path, "expected an object with key \"match\"");
    QH_TRY(check_keys(obj, keys, src, path));
    snprintf(r->where, sizeof r->where, "%s", path);
    snprintf(sub, sizeof sub, "%s.match", path);
    if (!(v = cJSON_GetObjectItemCaseSensitive(obj, "match"))) CFG_ERR(QH_ECONFIG, src, sub, "missing");
    QH_TRY(get_string(v, r->match, sizeof r->match, src, sub));
    if (!strncmp(r->match, "re:", 3)) {
        regex_t re;
        int rc = regcomp(&re, r->match + 3, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[128];
            regerror(rc, &re, why, sizeof why);
            CFG_ERR(QH_ECONFIG, src, sub, "regular expression \"%s\" does not compile: %s",
                    r->match + 3, why);
        }
        regfree(&re);
    }
    r->skip = -1;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "bits"))) {
        long b;
        snprintf(sub, sizeof sub, "%s.bits", path);
        QH_TRY(get_int(v, 1, 16, &b, src, sub));
        r->bits = (int)b;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "skip"))) {
        snprintf(sub, sizeof sub, "%s.skip", path);
        if (!cJSON_IsBool(v)) CFG_ERR(QH_ECONFIG, src, sub, "expected true or false");
        r->skip = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "params"))) {
        snprintf(sub, sizeof sub, "%s.params", path);
        if (!cJSON_IsObject(v)) CFG_ERR(QH_ECONFIG, src, sub, "expected an object of parameter values");
        for (const cJSON *p = v->child; p; p = p->next) {
            if (r->n_params == QH_CONFIG_MAX_RULE_PARAMS)
                CFG_ERR(QH_ECONFIG, src, sub, "more than %d parameters", QH_CONFIG_MAX_RULE_PARAMS);
            qh_config_param *kv = &r->params[r->n_params++];
            snprintf(sub, sizeof sub, "%s.params.%s", path, p->string);
            if (strlen(p->string) >= sizeof kv->key) CFG_ERR(QH_ECONFIG, src, sub, "key too long");
            strcpy(kv->key, p->string);
            QH_TRY(parse_param_value(p, kv->value, sizeof kv->value, src, sub));
        }
    }
    if (!r->bits && r->skip < 0 && !r->n_params)
        CFG_ERR(QH_ECONFIG, src, path, "a rule sets \"bits\", \"skip\" or \"params\"; this one sets none");
    if (r->skip == 1 && (r->bits || r->n_params))
        CFG_ERR(QH_ECONFIG, src, path, "\"skip\": true keeps the linear in float; it takes no "
                "\"bits\" or \"params\"");
    return QH_OK;
}

/* "layers": [rule, ...] at `key`. */
static int parse_rules(const cJSON *arr, qh_config_rule **out, size_t *n, const char *src, const char *key)
{
    char path[96];
    if (!cJSON_IsArray(arr) || !arr->child)
        CFG_ERR(QH_ECONFIG, src, key, "expected a non-empty array of {\"match\": ...} rules");
    *n = (size_t)cJSON_GetArraySize(arr);
    if (!(*out = calloc(*n, sizeof **out))) QH_ERROR(QH_ENOMEM, "config %s: out of memory", src);
    size_t i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        snprintf(path, sizeof path, "%s[%zu]", key, i);
        QH_TRY(parse_rule(it, &(*out)[i], src, path));
    }
    return QH_OK;
}

static int parse_int_list(const cJSON *arr, long lo, long hi, long **out, size_t *n, const char *src,
                          const char *key);

/* A method entry's own "bits" or "seeds". */
static int parse_own_bits(const cJSON *v, qh_config_method *m, const char *src, const char *path)
{
    long *list = NULL;
    int st = parse_int_list(v, 1, 16, &list, &m->n_bits, src, path);
    if (st == QH_OK && !(m->bits = calloc(m->n_bits, sizeof *m->bits)))
        st = qh_error(QH_ENOMEM, __FILE__, __LINE__, __func__, "config %s: out of memory", src);
    for (size_t k = 0; st == QH_OK && k < m->n_bits; k++) m->bits[k] = (int)list[k];
    free(list);
    return st;
}

static int parse_own_seeds(const cJSON *v, qh_config_method *m, const char *src, const char *path)
{
    long *list = NULL;
    int st = parse_int_list(v, 0, 0x7fffffffL, &list, &m->n_seeds, src, path);
    if (st == QH_OK && !(m->seeds = calloc(m->n_seeds, sizeof *m->seeds)))
        st = qh_error(QH_ENOMEM, __FILE__, __LINE__, __func__, "config %s: out of memory", src);
    for (size_t k = 0; st == QH_OK && k < m->n_seeds; k++) m->seeds[k] = (uint64_t)list[k];
    free(list);
    return st;
}

static int parse_method(const cJSON *obj, qh_config_method *m, qh_variant variant,
                        const qh_act_quant *wa, const char *src, const char *path)
{
    static const char *const keys[] = { "method", "label", "params", "incoherence", "rescale",
                                        "permute", "variant", "activations", "kv", "bits",
                                        "seeds", "layers", "rotate", "smooth", NULL };
    char sub[192];
    if (!cJSON_IsObject(obj)) CFG_ERR(QH_ECONFIG, src, path, "expected an object with key \"method\"");
    QH_TRY(check_keys(obj, keys, src, path));
    snprintf(sub, sizeof sub, "%s.method", path);
    QH_TRY(get_string(cJSON_GetObjectItemCaseSensitive(obj, "method"), m->method, sizeof m->method, src, sub));
    snprintf(m->incoherence, sizeof m->incoherence, "none");
    m->rescale = m->permute = -1;    /* unset: the incoherence row's value for the variant */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "incoherence");
    if (v) {
        snprintf(sub, sizeof sub, "%s.incoherence", path);
        QH_TRY(get_string(v, m->incoherence, sizeof m->incoherence, src, sub));
        if (!qh_incoh_find(m->incoherence)) {
            char names[128];
            qh_incoh_names(names, sizeof names);
            CFG_ERR(QH_ECONFIG, src, sub, "unknown incoherence \"%s\" (expected one of: %s)",
                    m->incoherence, names);
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "rescale"))) {
        snprintf(sub, sizeof sub, "%s.rescale", path);
        if (!cJSON_IsBool(v)) CFG_ERR(QH_ECONFIG, src, sub, "expected true or false");
        m->rescale = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "permute"))) {
        snprintf(sub, sizeof sub, "%s.permute", path);
        if (!cJSON_IsBool(v)) CFG_ERR(QH_ECONFIG, src, sub, "expected true or false");
        m->permute = cJSON_IsTrue(v);
    }
    m->variant = variant;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "variant"))) {
        snprintf(sub, sizeof sub, "%s.variant", path);
        QH_TRY(get_variant(v, &m->variant, src, sub));
    }
    qh_incoh_row_settings(qh_incoh_find(m->incoherence), m->variant == QH_VARIANT_REFERENCE,
                          &m->rescale, &m->permute);
    m->wa = *wa;
    QH_TRY(qh_wa_parse(cJSON_GetObjectItemCaseSensitive(obj, "activations"),
                       cJSON_GetObjectItemCaseSensitive(obj, "kv"), &m->wa, src, path));
    QH_TRY(qh_wa_parse_transform(obj, &m->tf, src, path));
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "label"))) {
        snprintf(sub, sizeof sub, "%s.label", path);
        QH_TRY(get_string(v, m->label, sizeof m->label, src, sub));
    } else if (qh_config_default_label(m->label, sizeof m->label, m->method,
                                       qh_incoh_find(m->incoherence)->kind, m->variant) != QH_OK
               || qh_wa_transform_label_append(m->label, sizeof m->label, &m->tf) != QH_OK
               || qh_wa_label_append(m->label, sizeof m->label, &m->wa) != QH_OK) {
        CFG_ERR(QH_ECONFIG, src, path, "method \"%s\": default label too long; set \"label\"", m->method);
    }
    if (!label_ok(m->label))
        CFG_ERR(QH_ECONFIG, src, path, "label \"%s\" may use only letters, digits, '-', '_' and '+'", m->label);
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "params"))) {
        snprintf(sub, sizeof sub, "%s.params", path);
        if (!cJSON_IsObject(v)) CFG_ERR(QH_ECONFIG, src, sub, "expected an object of parameter values");
        for (const cJSON *p = v->child; p; p = p->next) {
            if (m->n_params == QH_CONFIG_MAX_PARAMS)
                CFG_ERR(QH_ECONFIG, src, sub, "more than %d parameters", QH_CONFIG_MAX_PARAMS);
            qh_config_param *kv = &m->params[m->n_params++];
            snprintf(sub, sizeof sub, "%s.params.%s", path, p->string);
            if (strlen(p->string) >= sizeof kv->key) CFG_ERR(QH_ECONFIG, src, sub, "key too long");
            strcpy(kv->key, p->string);
            QH_TRY(parse_param_value(p, kv->value, sizeof kv->value, src, sub));
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "bits"))) {
        snprintf(sub, sizeof sub, "%s.bits", path);
        QH_TRY(parse_own_bits(v, m, src, sub));
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "seeds"))) {
        snprintf(sub, sizeof sub, "%s.seeds", path);
        QH_TRY(parse_own_seeds(v, m, src, sub));
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "layers"))) {
        snprintf(sub, sizeof sub, "%s.layers", path);
        QH_TRY(parse_rules(v, &m->rules, &m->n_rules, src, sub));
    }
    return QH_OK;
}

static int parse_int_list(const cJSON *arr, long lo, long hi, long **out, size_t *n, const char *src, const char *key)
{
    char path[96];
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
        CFG_ERR(QH_ECONFIG, src, key, "expected a non-empty array of integers");
    *n = (size_t)cJSON_GetArraySize(arr);
    *out = calloc(*n, sizeof **out);
    if (!*out) QH_ERROR(QH_ENOMEM, "config %s: out of memory", src);
    size_t i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        snprintf(path, sizeof path, "%s[%zu]", key, i);
        QH_TRY(get_int(it, lo, hi, &(*out)[i], src, path));
        for (size_t j = 0; j < i; j++)
            if ((*out)[j] == (*out)[i]) CFG_ERR(QH_ECONFIG, src, path, "duplicate value %ld", (*out)[i]);
    }
    return QH_OK;
}

static int parse_section(const cJSON *obj, const char *key, const char *const *keys, const char *src)
{
    if (!cJSON_IsObject(obj)) CFG_ERR(QH_ECONFIG, src, key, "expected an object");
    return check_keys(obj, keys, src, key);
}

static int parse_calibration(const cJSON *cal, qh_config *c, const char *src)
{
    static const char *const keys[] = { "data", "nsamples", "seqlen", "act_dtype", "max_blocks",
                                        NULL };
    long v;
    QH_TRY(parse_section(cal, "calibration", keys, src));
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(cal, "data");
    if (it) QH_TRY(get_string(it, c->calib_path, sizeof c->calib_path, src, "calibration.data"));
    if ((it = cJSON_GetObjectItemCaseSensitive(cal, "nsamples"))) {
        QH_TRY(get_int(it, 1, 1 << 20, &v, src, "calibration.nsamples"));
        c->calib_nsamples = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(cal, "seqlen"))) {
        QH_TRY(get_int(it, 2, 1 << 20, &v, src, "calibration.seqlen"));
        c->calib_seqlen = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(cal, "act_dtype"))) {
        char name[16];
        QH_TRY(get_string(it, name, sizeof name, src, "calibration.act_dtype"));
        if (qh_act_dtype_parse(name, &c->calib_act_dtype) != QH_OK)
            CFG_ERR(QH_ECONFIG, src, "calibration.act_dtype", "\"%s\": expected one of %s", name,
                    QH_ACT_DTYPE_NAMES);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(cal, "max_blocks"))) {
        QH_TRY(get_int(it, 1, QH_MAX_LAYERS, &v, src, "calibration.max_blocks"));
        c->calib_max_blocks = (int)v;
    }
    return QH_OK;
}

static int parse_eval(const cJSON *ev, qh_config *c, const char *src)
{
    static const char *const keys[] = { "seqlen", "max_windows", "kl_topk", NULL };
    long v;
    QH_TRY(parse_section(ev, "eval", keys, src));
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(ev, "seqlen");
    if (it) { QH_TRY(get_int(it, 2, 1 << 20, &v, src, "eval.seqlen")); c->eval_seqlen = (int)v; }
    if ((it = cJSON_GetObjectItemCaseSensitive(ev, "max_windows"))) {
        QH_TRY(get_int(it, 0, 1 << 30, &v, src, "eval.max_windows"));
        c->eval_max_windows = (int)v;
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(ev, "kl_topk"))) {
        QH_TRY(get_int(it, 0, 1 << 24, &v, src, "eval.kl_topk"));
        c->eval_kl_topk = (int)v;
    }
    return QH_OK;
}

static int parse_seeds(const cJSON *root, qh_config *c, const char *src);

static int parse_root(const cJSON *root, qh_config *c, const char *src)
{
    static const char *const keys[] = { "name", "models", "datasets", "calibration", "eval",
                                        "tasks", "methods", "bits", "seeds", "variant",
                                        "activations", "kv", "layers", NULL };
    const cJSON *it;
    if (!cJSON_IsObject(root)) CFG_ERR(QH_ECONFIG, src, "(root)", "expected a JSON object");
    QH_TRY(check_keys(root, keys, src, "(root)"));
    if (!(it = cJSON_GetObjectItemCaseSensitive(root, "name"))) CFG_ERR(QH_ECONFIG, src, "name", "missing");
    QH_TRY(get_string(it, c->name, sizeof c->name, src, "name"));
    if (!label_ok(c->name)) CFG_ERR(QH_ECONFIG, src, "name", "use only letters, digits, '-', '_' and '+'");
    if (!(it = cJSON_GetObjectItemCaseSensitive(root, "models"))) CFG_ERR(QH_ECONFIG, src, "models", "missing");
    QH_TRY(parse_entries(it, 0, &c->models, &c->n_models, src, "models"));
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "datasets")))
        QH_TRY(parse_entries(it, 1, &c->datasets, &c->n_datasets, src, "datasets"));
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "tasks")))
        QH_TRY(parse_entries(it, 1, &c->tasks, &c->n_tasks, src, "tasks"));
    c->calib_nsamples = 128;
    c->eval_kl_topk = QH_EVAL_KL_TOPK_DEFAULT;
    snprintf(c->calib_path, sizeof c->calib_path, "data/gutenberg_calib_4M.txt");
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "calibration"))) QH_TRY(parse_calibration(it, c, src));
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "eval"))) QH_TRY(parse_eval(it, c, src));
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "variant")))
        QH_TRY(get_variant(it, &c->variant, src, "variant"));
    c->wa = qh_wa_default();
    QH_TRY(qh_wa_parse(cJSON_GetObjectItemCaseSensitive(root, "activations"),
                       cJSON_GetObjectItemCaseSensitive(root, "kv"), &c->wa, src, "(root)"));
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "layers")))
        QH_TRY(parse_rules(it, &c->rules, &c->n_rules, src, "layers"));

    if (!(it = cJSON_GetObjectItemCaseSensitive(root, "methods")) || !cJSON_IsArray(it) || !it->child)
        CFG_ERR(QH_ECONFIG, src, "methods", "expected a non-empty array of method objects");
    c->n_methods = (size_t)cJSON_GetArraySize(it);
    if (!(c->methods = calloc(c->n_methods, sizeof *c->methods))) QH_ERROR(QH_ENOMEM, "config %s: out of memory", src);
    size_t i = 0;
    for (const cJSON *m = it->child; m; m = m->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "methods[%zu]", i);
        QH_TRY(parse_method(m, &c->methods[i], c->variant, &c->wa, src, path));
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->methods[j].label, c->methods[i].label))
                CFG_ERR(QH_ECONFIG, src, path, "duplicate label \"%s\" (set \"label\" to tell them apart)",
                        c->methods[i].label);
    }

    long *list = NULL;
    int all_own = 1;                 /* every entry has its own bits: the sweep's may be left out */
    for (size_t k = 0; k < c->n_methods; k++) all_own &= c->methods[k].bits != NULL;
    if (!(it = cJSON_GetObjectItemCaseSensitive(root, "bits"))) {
        if (!all_own) CFG_ERR(QH_ECONFIG, src, "bits", "missing (required unless every method entry sets its own \"bits\")");
        return parse_seeds(root, c, src);
    }
    int st = parse_int_list(it, 1, 16, &list, &c->n_bits, src, "bits");
    if (st == QH_OK && (c->bits = calloc(c->n_bits, sizeof *c->bits)))
        for (size_t k = 0; k < c->n_bits; k++) c->bits[k] = (int)list[k];
    free(list);
    list = NULL;
    if (st != QH_OK) return st;
    if (!c->bits) QH_ERROR(QH_ENOMEM, "config %s: out of memory", src);
    return parse_seeds(root, c, src);
}

static int parse_seeds(const cJSON *root, qh_config *c, const char *src)
{
    const cJSON *it;
    long *list = NULL;
    int st;
    c->n_seeds = 1;
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "seeds"))) {
        st = parse_int_list(it, 0, 0x7fffffffL, &list, &c->n_seeds, src, "seeds");
        if (st != QH_OK) { free(list); return st; }
    }
    if (!(c->seeds = calloc(c->n_seeds, sizeof *c->seeds))) { free(list); QH_ERROR(QH_ENOMEM, "config %s: out of memory", src); }
    for (size_t k = 0; k < c->n_seeds; k++) c->seeds[k] = list ? (uint64_t)list[k] : 0;
    free(list);
    return QH_OK;
}

int qh_config_parse(const char *json, const char *source, qh_config **out)
{
    *out = NULL;
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t line = 1;
        for (const char *p = json; at && p < at; p++) line += (*p == '\n');
        QH_ERROR(QH_ECONFIG, "config %s: not valid JSON (near line %zu)", source, line);
    }
    qh_config *c = calloc(1, sizeof *c);
    int st = c ? parse_root(root, c, source) : qh_error(QH_ENOMEM, __FILE__, __LINE__, __func__, "out of memory");
    cJSON_Delete(root);
    if (st != QH_OK) { qh_config_free(c); return st; }
    *out = c;
    return QH_OK;
}

char *qh_read_text_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long len;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0
        && (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len)
        buf[len] = '\0';
    else { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

int qh_config_load(const char *path, qh_config **out)
{
    *out = NULL;
    char *text = qh_read_text_file(path);
    if (!text) QH_ERROR(QH_EIO, "config %s: cannot read", path);
    int st = qh_config_parse(text, path, out);
    free(text);
    return st;
}

void qh_config_free(qh_config *c)
{
    if (!c) return;
    for (size_t i = 0; c->methods && i < c->n_methods; i++) {
        free(c->methods[i].bits); free(c->methods[i].seeds); free(c->methods[i].rules);
    }
    free(c->rules);
    free(c->models); free(c->datasets); free(c->tasks); free(c->methods); free(c->bits); free(c->seeds);
    free(c);
}

void qh_config_method_bits(const qh_config *c, size_t index, const int **bits, size_t *n)
{
    const qh_config_method *m = &c->methods[index];
    *bits = m->bits ? m->bits : c->bits;
    *n = m->bits ? m->n_bits : c->n_bits;
}

void qh_config_method_seeds(const qh_config *c, size_t index, const uint64_t **seeds, size_t *n)
{
    const qh_config_method *m = &c->methods[index];
    *seeds = m->seeds ? m->seeds : c->seeds;
    *n = m->seeds ? m->n_seeds : c->n_seeds;
}

size_t qh_config_rule_count(const qh_config *c, size_t index)
{
    return c->n_rules + c->methods[index].n_rules;
}

const qh_config_rule *qh_config_rule_at(const qh_config *c, size_t index, size_t k)
{
    return k < c->n_rules ? &c->rules[k] : &c->methods[index].rules[k - c->n_rules];
}

void qh_config_linear_setting(const qh_config *c, size_t index, const char *name, int cell_bits,
                              qh_linear_setting *out)
{
    memset(out, 0, sizeof *out);
    out->bits = cell_bits;
    for (size_t k = 0; k < qh_config_rule_count(c, index); k++) {
        const qh_config_rule *r = qh_config_rule_at(c, index, k);
        if (qh_config_rule_matches(r, name) != 1) continue;
        out->n_rules_hit++;
        if (r->skip >= 0) out->skip = r->skip;
        if (r->bits) { out->bits = r->bits; out->skip = 0; }
        if (r->n_params) out->skip = 0;
        for (size_t p = 0; p < r->n_params; p++) {
            size_t j = 0;            /* a later value of the same key replaces the earlier */
            while (j < out->n_params && strcmp(out->params[j]->key, r->params[p].key)) j++;
            if (j == out->n_params) {
                if (out->n_params == QH_CONFIG_MAX_PARAMS) continue;
                out->n_params++;
            }
            out->params[j] = &r->params[p];
        }
    }
}

int qh_config_cells(const qh_config *c, qh_cell **cells, size_t *n)
{
    size_t total = 0, k = 0;
    for (size_t me = 0; me < c->n_methods; me++) {
        const int *bits; const uint64_t *seeds; size_t nb, ns;
        qh_config_method_bits(c, me, &bits, &nb);
        qh_config_method_seeds(c, me, &seeds, &ns);
        total += c->n_models * nb * ns;
    }
    *cells = calloc(total ? total : 1, sizeof **cells);
    if (!*cells) QH_ERROR(QH_ENOMEM, "out of memory expanding %zu cells", total);
    for (size_t mo = 0; mo < c->n_models; mo++)
        for (size_t me = 0; me < c->n_methods; me++) {
            const int *bits; const uint64_t *seeds; size_t nb, ns;
            qh_config_method_bits(c, me, &bits, &nb);
            qh_config_method_seeds(c, me, &seeds, &ns);
            for (size_t b = 0; b < nb; b++)
                for (size_t s = 0; s < ns; s++, k++) {
                    qh_cell *cell = &(*cells)[k];
                    cell->model = mo; cell->method = me;
                    cell->bits = bits[b]; cell->seed = seeds[s];
                    int st = qh_config_cell_id(cell->id, sizeof cell->id, c->models[mo].label,
                                               c->methods[me].label, cell->bits, cell->seed);
                    if (st != QH_OK) { free(*cells); *cells = NULL; return st; }
                }
        }
    *n = total;
    return QH_OK;
}

int qh_config_default_label(char *buf, size_t cap, const char *method, qh_incoh_kind incoh,
                            qh_variant variant)
{
    const qh_incoh_row *row = qh_incoh_row_of(incoh);
    if (!row) QH_ERROR(QH_EINVAL, "method %s: incoherence kind %d has no name", method, (int)incoh);
    return qh_path_format(buf, cap, "default label", "%s%s%s", method, row->label_suffix,
                          variant == QH_VARIANT_REFERENCE ? "-ref" : "");
}

int qh_config_cell_id(char *buf, size_t cap, const char *model, const char *label, int bits,
                      uint64_t seed)
{
    return qh_path_format(buf, cap, "cell id", "%s.%s.w%d.s%llu", model, label, bits,
                          (unsigned long long)seed);
}

int qh_cell_matches(const qh_cell *cell, const char *pattern)
{
    return fnmatch(pattern, cell->id, 0) == 0;
}

/* A method's parameters from its config entry: the defaults under its
 * incoherence kind and variant (qh_method_params_variant), then the config's keys. */
int qh_config_method_params(const qh_config *cfg, size_t index, const qh_method_type **type,
                            void **params)
{
    const qh_config_method *cm = &cfg->methods[index];
    *params = NULL;
    *type = qh_method_find(cm->method);
    if (!*type) {
        char names[256];
        qh_method_names(names, sizeof names);
        QH_ERROR(QH_ECONFIG, "methods[%zu].method: unknown method \"%s\" (expected one of: %s)",
                 index, cm->method, names);
    }
    if (!(*params = qh_method_params_new(*type))) QH_ERROR(QH_ENOMEM, "out of memory");
    qh_incoh_kind incoh;
    int bad = qh_incoh_parse(cm->incoherence, &incoh);
    if (bad != QH_OK) {
        qh_error_prefix("methods[%zu].incoherence", index);
        return bad;
    }
    QH_TRY(qh_method_params_variant(*type, *params, incoh, cm->variant));
    for (size_t k = 0; k < cm->n_params; k++) {
        int st = qh_method_params_set(*type, *params, cm->params[k].key, cm->params[k].value);
        if (st != QH_OK) {
            qh_error_prefix("methods[%zu].params.%s", index, cm->params[k].key);
            return st;
        }
    }
    return QH_OK;
}
