/* qh_method.c -- the method registry, generic parameter handling from the
 * descriptors, and the driver qh_quantize (validate → dead columns →
 * incoherence → method → back to the original basis → proxy loss and bits).
 * See qh_method.h.  The methods themselves live in core/methods/. */
#include "qh_method.h"
#include "qh_linalg.h"

#include "aqlm.h"
#include "greedy.h"
#include "gptq.h"
#include "gptqt.h"
#include "ldlq.h"
#include "lowrank.h"
#include "mpo.h"
#include "pbllm.h"
#include "ptq161.h"
#include "pvq.h"
#include "billm.h"
#include "blockap.h"
#include "onebit.h"
#include "bitnet1.h"
#include "ternary.h"
#include "quipsharp.h"
#include "rtn.h"
#include "signround.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const qh_method_type *const registry[] = {
    &qh_method_rtn, &qh_method_gptq, &qh_method_ldlq, &qh_method_ldlq_rg, &qh_method_greedy,
    &qh_method_quipsharp, &qh_method_pvq, &qh_method_billm, &qh_method_pbllm, &qh_method_ptq161,
    &qh_method_aqlm, &qh_method_signround, &qh_method_ternary, &qh_method_bitnet1, &qh_method_gptqt,
    &qh_method_onebit, &qh_method_blockap, &qh_method_mpo, &qh_method_lowrank, NULL,
};

const qh_method_type *const *qh_method_registry(void) { return registry; }

const qh_method_type *qh_method_find(const char *name)
{
    if (!name) return NULL;
    for (const qh_method_type *const *m = registry; *m; m++)
        if (!strcmp((*m)->name, name)) return *m;
    return NULL;
}

void qh_method_names(char *buf, size_t len)
{
    size_t used = 0;
    if (!len) return;
    buf[0] = '\0';
    for (const qh_method_type *const *m = registry; *m; m++) {
        int k = snprintf(buf + used, len - used, "%s%s", m == registry ? "" : ", ", (*m)->name);
        if (k < 0 || (size_t)k >= len - used) return;
        used += (size_t)k;
    }
}

/* ---- parameters ----------------------------------------------------------- */

const qh_param_desc *qh_method_param_find(const qh_method_type *m, const char *key)
{
    for (const qh_param_desc *d = m->params; d && d->key; d++)
        if (!strcmp(d->key, key)) return d;
    return NULL;
}

static int *int_field(const qh_param_desc *d, void *params)
{
    return (int *)(void *)((char *)params + d->offset);
}

static double *double_field(const qh_param_desc *d, void *params)
{
    return (double *)(void *)((char *)params + d->offset);
}

void qh_method_params_default(const qh_method_type *m, void *params)
{
    memset(params, 0, m->params_size);
    for (const qh_param_desc *d = m->params; d && d->key; d++) {
        if (d->type == QH_PARAM_DOUBLE) *double_field(d, params) = d->def;
        else *int_field(d, params) = (int)d->def;
    }
}

void *qh_method_params_new(const qh_method_type *m)
{
    void *p = calloc(1, m->params_size ? m->params_size : 1);
    if (p) qh_method_params_default(m, p);
    return p;
}

/* Index of value among the '|'-separated choices, or −1. */
static int choice_index(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    int idx = 0;
    for (const char *s = choices; *s; idx++) {
        const char *bar = strchr(s, '|');
        size_t len = bar ? (size_t)(bar - s) : strlen(s);
        if (len == vlen && !strncmp(s, value, len)) return idx;
        if (!bar) break;
        s = bar + 1;
    }
    return -1;
}

static void valid_keys(const qh_method_type *m, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const qh_param_desc *d = m->params; d && d->key; d++) {
        int k = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", d->key);
        if (k < 0 || (size_t)k >= len - used) return;
        used += (size_t)k;
    }
}

int qh_method_params_set(const qh_method_type *m, void *params, const char *key, const char *value)
{
    const qh_param_desc *d = qh_method_param_find(m, key);
    if (!d) {
        char keys[512];
        valid_keys(m, keys, sizeof keys);
        QH_ERROR(QH_ECONFIG, "method %s: unknown parameter '%s' (valid: %s)", m->name, key, keys);
    }
    char range[256];
    qh_param_format_range(d, range, sizeof range);
    char *end = NULL;
    errno = 0;
    switch (d->type) {
    case QH_PARAM_INT: {
        long v = strtol(value, &end, 10);
        if (end == value || *end || errno || v < d->lo || v > d->hi)
            QH_ERROR(QH_ECONFIG, "method %s: parameter %s = '%s': expected an integer in %s",
                     m->name, key, value, range);
        *int_field(d, params) = (int)v;
        return QH_OK;
    }
    case QH_PARAM_DOUBLE: {
        double v = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(v) || v < d->lo || v > d->hi)
            QH_ERROR(QH_ECONFIG, "method %s: parameter %s = '%s': expected a number in %s",
                     m->name, key, value, range);
        *double_field(d, params) = v;
        return QH_OK;
    }
    case QH_PARAM_BOOL: {
        int v = -1;
        if (!strcmp(value, "1") || !strcasecmp(value, "true")) v = 1;
        if (!strcmp(value, "0") || !strcasecmp(value, "false")) v = 0;
        if (v < 0)
            QH_ERROR(QH_ECONFIG, "method %s: parameter %s = '%s': expected 0, 1, true or false",
                     m->name, key, value);
        *int_field(d, params) = v;
        return QH_OK;
    }
    case QH_PARAM_ENUM: {
        int v = choice_index(d->choices, value);
        if (v < 0)
            QH_ERROR(QH_ECONFIG, "method %s: parameter %s = '%s': expected one of %s",
                     m->name, key, value, d->choices);
        *int_field(d, params) = v;
        return QH_OK;
    }
    }
    QH_ERROR(QH_ECONFIG, "method %s: parameter %s has an unknown type", m->name, key);
}

/* The idx-th choice into buf. */
static void choice_name(const char *choices, int idx, char *buf, size_t len)
{
    const char *s = choices;
    for (int i = 0; i < idx && s; i++) {
        s = strchr(s, '|');
        if (s) s++;
    }
    if (!s) { snprintf(buf, len, "?"); return; }
    const char *bar = strchr(s, '|');
    int n = bar ? (int)(bar - s) : (int)strlen(s);
    snprintf(buf, len, "%.*s", n, s);
}

static void format_value(const qh_param_desc *d, double v, char *buf, size_t len)
{
    switch (d->type) {
    case QH_PARAM_INT: snprintf(buf, len, "%d", (int)v); return;
    case QH_PARAM_DOUBLE: snprintf(buf, len, "%.17g", v); return;
    case QH_PARAM_BOOL: snprintf(buf, len, "%d", (int)v); return;
    case QH_PARAM_ENUM: choice_name(d->choices, (int)v, buf, len); return;
    }
}

void qh_param_format(const qh_param_desc *d, const void *params, char *buf, size_t len)
{
    void *p = (void *)(uintptr_t)params;     /* read-only use of the field helpers */
    double v = d->type == QH_PARAM_DOUBLE ? *double_field(d, p) : (double)*int_field(d, p);
    format_value(d, v, buf, len);
}

void qh_param_format_default(const qh_param_desc *d, char *buf, size_t len)
{
    if (d->type == QH_PARAM_DOUBLE) snprintf(buf, len, "%g", d->def);
    else format_value(d, d->def, buf, len);
}

void qh_param_format_range(const qh_param_desc *d, char *buf, size_t len)
{
    switch (d->type) {
    case QH_PARAM_INT: snprintf(buf, len, "[%d, %d]", (int)d->lo, (int)d->hi); return;
    case QH_PARAM_DOUBLE: snprintf(buf, len, "[%g, %g]", d->lo, d->hi); return;
    case QH_PARAM_BOOL: snprintf(buf, len, "0|1"); return;
    case QH_PARAM_ENUM: snprintf(buf, len, "%s", d->choices); return;
    }
}

/* QuIP rounds the processed weights on one symmetric grid at 2.4 RMS, while
 * baseline processing keeps OPTQ's per-row min-max grid: the one place both
 * drivers take this default from. */
int qh_method_params_defaults_for(const qh_method_type *m, void *params, qh_incoh_kind incoh)
{
    qh_method_params_default(m, params);
    if (incoh != QH_INCOH_NONE && qh_method_param_find(m, "grid"))
        return qh_method_params_set(m, params, "grid", "rms");
    return QH_OK;
}

int qh_method_params_reference(const qh_method_type *m, void *params)
{
    for (const qh_param_desc *d = m->params; d && d->key; d++)
        if (d->reference)
            QH_TRY(qh_method_params_set(m, params, d->key, d->reference));
    return QH_OK;
}

int qh_variant_parse(const char *name, qh_variant *v)
{
    if (name && !strcmp(name, "default")) *v = QH_VARIANT_DEFAULT;
    else if (name && !strcmp(name, "reference")) *v = QH_VARIANT_REFERENCE;
    else QH_ERROR(QH_ECONFIG, "unknown variant \"%s\" (expected one of: " QH_VARIANT_NAMES ")",
                  name ? name : "");
    return QH_OK;
}

const char *qh_variant_name(qh_variant v)
{
    return v == QH_VARIANT_REFERENCE ? "reference" : "default";
}

int qh_method_params_variant(const qh_method_type *m, void *params, qh_incoh_kind incoh,
                             qh_variant variant)
{
    QH_TRY(qh_method_params_defaults_for(m, params, incoh));
    return variant == QH_VARIANT_REFERENCE ? qh_method_params_reference(m, params) : QH_OK;
}

/* The method's scratch, which the driver reuses afterwards for the proxy loss. */
size_t qh_method_workspace_size(const qh_method_type *m, const void *params, size_t rows,
                                size_t cols)
{
    size_t own = m->workspace_size ? m->workspace_size(params, rows, cols) : 0;
    size_t loss = QH_PROXY_LOSS_SCRATCH(rows, cols) * sizeof(double);
    return own > loss ? own : loss;
}

/* ---- results -------------------------------------------------------------- */

void qh_result_init(qh_result *r)
{
    memset(r, 0, sizeof *r);
}

void qh_result_free(qh_result *r)
{
    qh_matd_free(r->What);
    qh_matd_free(r->W_proc);
    qh_matd_free(r->What_proc);
    qh_matd_free(r->H_proc);
    free(r->col_order);
    free(r->row_scale);
    qh_grid_free(&r->grid);
    qh_result_init(r);
}

/* ---- the driver ----------------------------------------------------------- */

static const char *tensor(const qh_problem *p)
{
    return p->name ? p->name : "layer";
}

void qh_method_bits_range(const qh_method_type *m, int *lo, int *hi)
{
    int has = m->min_bits > 0 && m->max_bits >= m->min_bits;
    *lo = has ? m->min_bits : 1;
    *hi = has ? m->max_bits : 8;
}

int qh_method_wants_block_stage(const qh_method_type *m, const void *params)
{
    return m->block && m->block->wants(params);
}

int qh_method_wants_model_stage(const qh_method_type *m, const void *params)
{
    qh_block_plan plan = { .steps = 0 };
    if (!m->block || !m->block->model_plan) return 0;
    m->block->model_plan(params, &plan);
    return plan.steps > 0;
}

static int validate(const qh_method_type *m, const qh_problem *p)
{
    if (!m) QH_ERROR(QH_EINVAL, "no method given");
    if (!p || !p->W) QH_ERROR(QH_EINVAL, "%s: no weight matrix W given", p ? tensor(p) : "layer");
    size_t rows = p->W->rows, cols = p->W->cols;
    if (rows == 0 || cols == 0)
        QH_ERROR(QH_EINVAL, "%s: W is %zu x %zu; a non-empty matrix is required", tensor(p), rows, cols);
    int lo, hi;
    qh_method_bits_range(m, &lo, &hi);
    if (p->bits < lo || p->bits > hi)
        QH_ERROR(QH_EINVAL, "%s: bits = %d; method %s takes %d..%d", tensor(p), p->bits, m->name, lo, hi);
    if ((m->needs & QH_NEEDS_HESSIAN) && !p->H)
        QH_ERROR(QH_EINVAL, "%s: method %s needs a Hessian H (%zu x %zu) and none was given",
                 tensor(p), m->name, cols, cols);
    if (p->H && (p->H->rows != cols || p->H->cols != cols))
        QH_ERROR(QH_EBADLEN, "%s: H is %zu x %zu; expected %zu x %zu for W of %zu x %zu",
                 tensor(p), p->H->rows, p->H->cols, cols, cols, rows, cols);
    char name[160];
    snprintf(name, sizeof name, "%s: W", tensor(p));
    QH_TRY(qh_check_finite(p->W, name));
    if (p->H) {
        snprintf(name, sizeof name, "%s: H", tensor(p));
        QH_TRY(qh_check_finite(p->H, name));
    }
    return QH_OK;
}

static int incoh_active(const qh_incoh_params *ip)
{
    return ip && (ip->kind != QH_INCOH_NONE || ip->rescale);
}

/* *M as a rows x cols matrix, reusing the one there when the shape matches
 * (a caller quantizing many layers of one shape then touches no new memory). */
static int ensure_mat(qh_matd **M, size_t rows, size_t cols)
{
    if (*M && (*M)->rows == rows && (*M)->cols == cols && (*M)->owner) return QH_OK;
    qh_matd_free(*M);
    if (!(*M = qh_matd_alloc(rows, cols)))
        QH_ERROR(QH_ENOMEM, "result matrix of %zu x %zu", rows, cols);
    return QH_OK;
}

/* Resets out for an m x n layer: counters and grid cleared, matrices reused
 * or (re)allocated; H_proc only when H is given. */
static int reset_result(qh_result *out, size_t m, size_t n, int has_H)
{
    qh_result keep = *out;
    qh_grid_free(&keep.grid);
    free(keep.row_scale);              /* a row fills it afresh, or leaves it NULL */
    qh_result_init(out);
    out->What = keep.What;
    out->W_proc = keep.W_proc;
    out->What_proc = keep.What_proc;
    out->H_proc = keep.H_proc;
    out->col_order = keep.cols == n ? keep.col_order : (free(keep.col_order), NULL);
    out->rows = m;
    out->cols = n;
    if (!has_H) { qh_matd_free(out->H_proc); out->H_proc = NULL; }
    QH_TRY(ensure_mat(&out->What, m, n));
    QH_TRY(ensure_mat(&out->W_proc, m, n));
    QH_TRY(ensure_mat(&out->What_proc, m, n));
    if (has_H) QH_TRY(ensure_mat(&out->H_proc, n, n));
    if (!out->col_order && !(out->col_order = calloc(n, sizeof *out->col_order)))
        QH_ERROR(QH_ENOMEM, "column order of %zu entries", n);
    return QH_OK;
}

static size_t qh_ws_bytes_rounded(size_t bytes)
{
    return (bytes + 63) / 64 * 64;     /* aligned_alloc wants a multiple of the alignment */
}

static void copy_into(const qh_matd *src, qh_matd *dst)
{
    for (size_t j = 0; j < src->cols; j++)
        memcpy(&QH_AT(dst, 0, j), &QH_AT(src, 0, j), src->rows * sizeof(double));
}

/* W_proc and H_proc (in place) from the problem: dead columns fixed, then
 * incoherence processing when asked for (*st_incoh receives its state). */
static int to_processed_basis(const qh_problem *p, const qh_incoh_params *incoh, qh_result *out,
                              qh_incoh_state **st_incoh)
{
    copy_into(p->W, out->W_proc);
    if (p->H) {
        copy_into(p->H, out->H_proc);
        qh_symmetrize_upper(out->H_proc);
        out->n_dead_cols = qh_dead_columns(out->H_proc, out->W_proc);
    }
    if (!incoh_active(incoh)) return QH_OK;
    if (!p->H) QH_ERROR(QH_EINVAL, "incoherence processing needs H");
    QH_TRY(qh_incoh_apply(incoh, out->W_proc, out->H_proc, st_incoh));
    qh_symmetrize_upper(out->H_proc);
    return QH_OK;
}

/* What in the original basis, the proxy loss (in work) and the bits. */
static int finish_result(const qh_problem *p, const qh_incoh_state *st_incoh, void *work,
                         qh_result *out)
{
    size_t rows = out->rows, cols = out->cols;
    copy_into(out->What_proc, out->What);
    if (st_incoh) {
        QH_TRY(qh_incoh_invert(st_incoh, out->What));
        out->incoh_side_bits = qh_incoh_side_bits(st_incoh);
    }
    if (out->H_proc)
        QH_TRY(qh_lin_proxy_loss_ws(out->W_proc, out->What_proc, out->H_proc, work, &out->proxy_loss));
    /* Vector quantizers (pvq, ...) count their own bits; scalar-grid rows
     * leave both fields zero (reset_result) and get the grid's accounting. */
    if (!(out->bits_nominal > 0)) out->bits_nominal = p->bits;
    double grid_side = out->grid.step ? qh_grid_side_bits(&out->grid, cols) : 0.0;
    double side = out->bits_side > 0 ? out->bits_side : grid_side;
    out->bits_side = side + out->incoh_side_bits / ((double)rows * (double)cols);
    out->bits_total = out->bits_nominal + out->bits_side;
    return QH_OK;
}

static int run(const qh_method_type *m, const void *params, const qh_problem *p,
               const qh_incoh_params *incoh, void *work, qh_result *out, int use_ref)
{
    void *own_params = NULL, *own_work = NULL;
    qh_incoh_state *st_incoh = NULL;
    int st = QH_OK;

    QH_ASSERT(out);
    if ((st = validate(m, p)) != QH_OK) {
        qh_result_free(out);
        return st;
    }
    if (use_ref && !m->quantize_ref) {
        qh_result_free(out);
        QH_ERROR(QH_EUNIMPL, "method %s has no reference implementation", m->name);
    }
    size_t rows = p->W->rows, cols = p->W->cols;
    if (!params && !(params = own_params = qh_method_params_new(m))) {
        QH_SET_ERROR(st, QH_ENOMEM, "parameters of %s", m->name);
        goto cleanup;
    }
    if ((st = reset_result(out, rows, cols, p->H != NULL)) != QH_OK) goto cleanup;
    if ((st = to_processed_basis(p, incoh, out, &st_incoh)) != QH_OK) goto cleanup;
    if (!work) {
        size_t bytes = qh_ws_bytes_rounded(qh_method_workspace_size(m, params, rows, cols));
        if (!(work = own_work = aligned_alloc(64, bytes))) {
            QH_SET_ERROR(st, QH_ENOMEM, "workspace of %zu bytes", bytes);
            goto cleanup;
        }
    }
    /* The method sees the processed basis; H_proc is its input and its output. */
    qh_problem q = *p;
    q.W = out->W_proc;
    q.H = out->H_proc;
    if (incoh_active(incoh)) q.x_absmax = NULL;   /* per-channel maxima of another basis */
    st = (use_ref ? m->quantize_ref : m->quantize)(params, &q, out, work);
    if (st == QH_OK) st = finish_result(p, st_incoh, work, out);

cleanup:
    if (st != QH_OK) {
        if (p->name) qh_error_prefix("%s (%s)", p->name, m->name);
        else qh_error_prefix("%s", m->name);
    }
    qh_incoh_state_free(st_incoh);
    free(own_work);
    free(own_params);
    return st;
}

int qh_quantize(const qh_method_type *m, const void *params, const qh_problem *p,
                const qh_incoh_params *incoh, void *work, qh_result *out)
{
    return run(m, params, p, incoh, work, out, 0);
}

int qh_quantize_ref(const qh_method_type *m, const void *params, const qh_problem *p,
                    const qh_incoh_params *incoh, void *work, qh_result *out)
{
    return run(m, params, p, incoh, work, out, 1);
}
