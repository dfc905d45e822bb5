/* sensitivity.c -- per-unit sensitivity and greedy bit allocation (see sensitivity.h). */
#include "pipeline/sensitivity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "pipeline/calib.h"
#include "pipeline/eval.h"
#include "pipeline/layer_eval.h"
#include "pipeline/sequential.h"
#include "qh_clock.h"
#include "qh_path.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const qh_method_type *type;
    const void *params;
    qh_incoh_params ip;
    const qh_cell *cell;
    float **What;                    /* [layer * QH_LIN_MAX + kind]: the quantized weights */
    double *proxy;                   /* same index */
    double *bits_total;              /* same index: the record's total bits per weight */
    qh_spectrum_cache spectra;
    FILE *log;
    double t0;
} sens_ctx;

/* Quantizes every linear on float inputs and keeps Ŵ aside (W stays float). */
static int keep_quantized(const qh_model *m, int layer, int kind, qh_matd *W, const qh_matd *H,
                          const double *x_absmax, int *replace, void *user)
{
    sens_ctx *s = user;
    const qh_linear *lin = &m->blocks[layer].lin[kind];
    qh_incoh_params ip = s->ip;
    ip.layer = qh_model_linear_key(m, layer, kind);
    qh_problem prob = { W, H, s->cell->bits, s->cell->seed, ip.layer, lin->name, NULL, x_absmax };
    qh_matd *What = qh_matd_alloc(W->rows, W->cols);
    size_t idx = (size_t)layer * QH_LIN_MAX + (size_t)kind;
    qh_layer_record rec;
    *replace = 0;
    if (!What) QH_ERROR(QH_ENOMEM, "%s: out of memory", lin->name);
    int st = qh_layer_run(s->type, s->params, &ip, &prob, layer, qh_model_linear_number(m, kind),
                          &s->spectra, &rec, What);
    if (st == QH_OK && !(s->What[idx] = malloc(W->rows * W->cols * sizeof(float))))
        QH_SET_ERROR(st, QH_ENOMEM, "%s: out of memory", lin->name);
    if (st == QH_OK) {
        qh_linear tmp = *lin;
        tmp.W = s->What[idx];
        qh_linear_from_matd(&tmp, What);
        s->proxy[idx] = rec.metrics.orig.proxy;
        s->bits_total[idx] = rec.bits_total;
    }
    qh_matd_free(What);
    return st;
}

static void progress(int done, int total, void *user)
{
    sens_ctx *s = user;
    if (s->log) fprintf(s->log, "%s: sensitivity: block %d/%d quantized (%.1f s)\n", s->cell->id, done,
                        total, qh_seconds() - s->t0);
}

static int eval_first(const qh_config *cfg, const qh_model *m, const int32_t *ids, size_t n, double *ppl)
{
    size_t seqlen = cfg->eval_seqlen ? (size_t)cfg->eval_seqlen : (size_t)m->cfg.max_pos;
    qh_eval_result r;
    memset(&r, 0, sizeof r);
    int st = qh_eval_ppl(m, ids, n, seqlen, (size_t)cfg->eval_max_windows, NULL, NULL, &r);
    if (st == QH_OK) *ppl = r.ppl;
    qh_eval_result_free(&r);
    return st;
}

/* Swaps Ŵ of the unit's linears in (or back out: swapping twice restores). */
static void swap_unit(qh_model *m, sens_ctx *s, int layer, int only_kind)
{
    for (int k = 0; k < QH_LIN_MAX; k++) {
        qh_linear *lin = &m->blocks[layer].lin[k];
        size_t idx = (size_t)layer * QH_LIN_MAX + (size_t)k;
        if (!lin->W || (only_kind >= 0 && k != only_kind)) continue;
        float *t = lin->W;
        lin->W = s->What[idx];
        s->What[idx] = t;
    }
}

static int measure_units(const qh_config *cfg, qh_model *m, sens_ctx *s, int per_block,
                         const int32_t *ids, size_t n_ids, qh_sens_result *out)
{
    size_t cap = (size_t)m->cfg.n_layers * QH_LIN_MAX;
    if (!(out->units = calloc(cap, sizeof *out->units))) QH_ERROR(QH_ENOMEM, "out of memory");
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int i = 0; i < qh_model_n_linear(m); i++) {
            int kind = qh_model_linear_at(m, i);
            const qh_linear *lin = &m->blocks[l].lin[kind];
            if (!lin->W) continue;
            out->total_weights += (size_t)lin->out * (size_t)lin->in;
            qh_sens_unit *u = &out->units[out->n];
            if (!per_block || u->n_linears == 0) {
                u->layer = l;
                u->kind = per_block ? -1 : qh_model_linear_number(m, kind);
                if (per_block) {
                    /* the block prefix: the name up to its first ".<layer>." */
                    char num[24];
                    snprintf(num, sizeof num, ".%d.", l);
                    const char *at = strstr(lin->name, num);
                    size_t len = at ? (size_t)(at - lin->name) + strlen(num) - 1 : strlen(lin->name);
                    snprintf(u->name, sizeof u->name, "%.*s.*", (int)len, lin->name);
                } else {
                    snprintf(u->name, sizeof u->name, "%s", lin->name);
                }
            }
            snprintf(u->linears[u->n_linears++], sizeof u->linears[0], "%s", lin->name);
            u->weights += (size_t)lin->out * (size_t)lin->in;
            u->proxy += s->proxy[(size_t)l * QH_LIN_MAX + (size_t)kind];
            /* the sum of weights x bits here, divided by the unit's weights when it is complete */
            u->bits_total += (double)lin->out * (double)lin->in * s->bits_total[(size_t)l * QH_LIN_MAX + (size_t)kind];
            if (per_block) continue;
            u->bits_total /= (double)u->weights;
            swap_unit(m, s, l, kind);
            int st = eval_first(cfg, m, ids, n_ids, &u->ppl);
            swap_unit(m, s, l, kind);
            QH_TRY(st);
            u->dppl = u->ppl - out->ppl_float;
            if (s->log) fprintf(s->log, "%s: %s: ppl %.4f (%+.4f)\n", s->cell->id, u->name, u->ppl, u->dppl);
            out->n++;
        }
        if (!per_block) continue;
        qh_sens_unit *u = &out->units[out->n];
        u->bits_total /= (double)u->weights;
        swap_unit(m, s, l, -1);
        int st = eval_first(cfg, m, ids, n_ids, &u->ppl);
        swap_unit(m, s, l, -1);
        QH_TRY(st);
        u->dppl = u->ppl - out->ppl_float;
        if (s->log) fprintf(s->log, "%s: %s: ppl %.4f (%+.4f)\n", s->cell->id, u->name, u->ppl, u->dppl);
        out->n++;
    }
    return QH_OK;
}

int qh_sensitivity_run(const qh_config *cfg, const qh_cell *cell, int per_block, FILE *log,
                       qh_sens_result *out)
{
    const qh_config_method *cm = &cfg->methods[cell->method];
    const qh_incoh_row *row = qh_incoh_find(cm->incoherence);
    qh_incoh_kind incoh = row ? row->kind : QH_INCOH_NONE;
    sens_ctx s = { .cell = cell, .log = log, .t0 = qh_seconds(),
                   .ip = { incoh, cm->rescale && incoh != QH_INCOH_NONE, cell->seed, 0,
                           cm->permute && incoh == QH_INCOH_KRON } };
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL, *calib = NULL, *win = NULL;
    size_t n_ids = 0, n_calib = 0;
    void *params = NULL;
    char path[1200];
    memset(out, 0, sizeof *out);
    out->bits = cell->bits;
    qh_spectrum_cache_init(&s.spectra);
    if (!cfg->n_datasets) QH_ERROR(QH_ECONFIG, "sensitivity needs a dataset (\"datasets\") to evaluate on");
    int st = qh_config_method_params(cfg, cell->method, &s.type, &params);
    s.params = params;
    if (st == QH_OK && qh_method_wants_block_stage(s.type, params))
        QH_SET_ERROR(st, QH_ECONFIG, "methods[%zu]: sensitivity measures layer-wise quantization; "
                     "%s with %s tunes blocks", cell->method, s.type->name, s.type->block->setting);
    if (st == QH_OK) st = qh_model_load(cfg->models[cell->model].path, &m);
    if (st == QH_OK) st = qh_path_format(path, sizeof path, "tokenizer", "%s/tokenizer.json", m->dir);
    if (st == QH_OK) st = qh_tokenizer_load(path, &tok);
    if (st == QH_OK) st = qh_tokenize_file(tok, cfg->datasets[0].path, &ids, &n_ids);
    if (st == QH_OK) st = eval_first(cfg, m, ids, n_ids, &out->ppl_float);
    size_t seqlen = m ? (cfg->calib_seqlen ? (size_t)cfg->calib_seqlen : (size_t)m->cfg.max_pos) : 0;
    if (st == QH_OK) st = qh_tokenize_file(tok, cfg->calib_path, &calib, &n_calib);
    if (st == QH_OK)
        st = qh_calib_windows(calib, n_calib, (size_t)cfg->calib_nsamples, seqlen, cell->seed,
                              cfg->calib_path, &win);
    size_t slots = m ? (size_t)m->cfg.n_layers * QH_LIN_MAX : 0;
    if (st == QH_OK && (!(s.What = calloc(slots, sizeof *s.What)) || !(s.proxy = calloc(slots, sizeof *s.proxy)) ||
                        !(s.bits_total = calloc(slots, sizeof *s.bits_total))))
        QH_SET_ERROR(st, QH_ENOMEM, "out of memory");
    if (st == QH_OK) {
        if (log) fprintf(log, "%s: float ppl %.4f on %s\n", cell->id, out->ppl_float, cfg->datasets[0].label);
        qh_layer_visitor v = { .fn = keep_quantized, .progress = progress, .user = &s,
                               .act_dtype = cfg->calib_act_dtype };
        st = qh_sequential_visit(m, win, (size_t)cfg->calib_nsamples, seqlen, &v);
    }
    if (st == QH_OK) st = measure_units(cfg, m, &s, per_block, ids, n_ids, out);
    for (size_t i = 0; s.What && i < slots; i++) free(s.What[i]);
    free(s.What);
    free(s.proxy);
    free(s.bits_total);
    free(ids);
    free(calib);
    free(win);
    free(params);
    qh_spectrum_cache_free(&s.spectra);
    qh_tokenizer_free(tok);
    qh_model_free(m);
    if (st != QH_OK) qh_sens_result_free(out);
    return st;
}

void qh_sens_result_free(qh_sens_result *r)
{
    free(r->units);
    r->units = NULL;
    r->n = 0;
}

/* Writes text to path under a temporary name, then renames it. */
static int write_atomic(const char *path, const char *what, int (*emit)(FILE *, const void *), const void *arg)
{
    char tmp[1200];
    QH_TRY(qh_path_format(tmp, sizeof tmp, what, "%s.tmp.%ld", path, (long)getpid()));
    FILE *f = fopen(tmp, "w");
    if (!f) QH_ERROR(QH_EIO, "cannot write %s %s", what, tmp);
    int ok = emit(f, arg) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        QH_ERROR(QH_EIO, "cannot write %s %s", what, path);
    }
    return QH_OK;
}

static int emit_tsv(FILE *f, const void *arg)
{
    const qh_sens_result *r = arg;
    fprintf(f, "unit\tlayer\tkind\tweights\tbits\tproxy\tppl\tppl_float\tdppl\tbits_total\n");
    for (size_t i = 0; i < r->n; i++) {
        const qh_sens_unit *u = &r->units[i];
        fprintf(f, "%s\t%d\t%d\t%zu\t%d\t%.6g\t%.6f\t%.6f\t%.6f\t%.9g\n", u->name, u->layer, u->kind,
                u->weights, r->bits, u->proxy, u->ppl, r->ppl_float, u->dppl, u->bits_total);
    }
    return ferror(f) ? -1 : 0;
}

int qh_sensitivity_write_tsv(const qh_sens_result *r, const char *path)
{
    return write_atomic(path, "sensitivity table", emit_tsv, r);
}

/* A rules file: one rule per unit whose flag equals `when`, the unit's name
 * (a linear's, or a block's glob) with the setting `set` ("\"bits\": 4",
 * "\"skip\": true"). */
typedef struct {
    const qh_sens_result *r;
    const char *flags;               /* n flags */
    char when;
    const char *set;
} rules_out;

static int emit_rules(FILE *f, const void *arg)
{
    const rules_out *o = arg;
    int first = 1;
    fprintf(f, "[");
    for (size_t i = 0; i < o->r->n; i++)
        if (o->flags[i] == o->when) {
            fprintf(f, "%s\n  { \"match\": \"%s\", %s }", first ? "" : ",", o->r->units[i].name, o->set);
            first = 0;
        }
    fprintf(f, "%s]\n", first ? "" : "\n");
    return ferror(f) ? -1 : 0;
}

static const qh_sens_result *sort_r;

/* Δppl per added bit, largest first. */
static int by_gain(const void *a, const void *b)
{
    const qh_sens_unit *ua = &sort_r->units[*(const size_t *)a], *ub = &sort_r->units[*(const size_t *)b];
    double ga = ua->dppl / (double)ua->weights, gb = ub->dppl / (double)ub->weights;
    return ga < gb ? 1 : ga > gb ? -1 : 0;
}

int qh_sensitivity_allocate(const qh_sens_result *r, double budget, int high, const char *path, double *avg)
{
    if (high <= r->bits)
        QH_ERROR(QH_EINVAL, "allocation: the wider width %d must exceed the measured width %d", high, r->bits);
    if (budget < r->bits)
        QH_ERROR(QH_EINVAL, "allocation: budget %.4g bits per weight is below the measured width %d",
                 budget, r->bits);
    size_t *order = malloc((r->n ? r->n : 1) * sizeof *order);
    char *up = calloc(r->n ? r->n : 1, 1);
    if (!order || !up) { free(order); free(up); QH_ERROR(QH_ENOMEM, "out of memory"); }
    for (size_t i = 0; i < r->n; i++) order[i] = i;
    sort_r = r;
    qsort(order, r->n, sizeof *order, by_gain);
    double bits = (double)r->bits * (double)r->total_weights;
    for (size_t j = 0; j < r->n; j++) {
        const qh_sens_unit *u = &r->units[order[j]];
        double more = (double)(high - r->bits) * (double)u->weights;
        if (u->dppl <= 0 || (bits + more) / (double)r->total_weights > budget + 1e-12) continue;
        bits += more;
        up[order[j]] = 1;
    }
    *avg = bits / (double)r->total_weights;
    char set[32];
    snprintf(set, sizeof set, "\"bits\": %d", high);
    rules_out o = { r, up, 1, set };
    int st = write_atomic(path, "rules file", emit_rules, &o);
    free(order);
    free(up);
    return st;
}

int qh_sensitivity_read_tsv(const char *path, qh_sens_result *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) QH_ERROR(QH_EIO, "cannot read sensitivity table %s", path);
    char line[1024];
    size_t cap = 0, lineno = 1;
    int st = QH_OK;
    static const char header[] = "unit\tlayer\tkind\tweights\tbits\t";
    if (!fgets(line, sizeof line, f) || strncmp(line, header, sizeof header - 1) != 0)
        QH_SET_ERROR(st, QH_EINVAL, "%s: not a table of qh sensitivity (header line)", path);
    while (st == QH_OK && fgets(line, sizeof line, f)) {
        lineno++;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            qh_sens_unit *u = realloc(out->units, cap * sizeof *u);
            if (!u) { QH_SET_ERROR(st, QH_ENOMEM, "out of memory"); break; }
            out->units = u;
        }
        qh_sens_unit *u = &out->units[out->n];
        memset(u, 0, sizeof *u);
        double ppl_float;
        int bits;
        u->bits_total = NAN;          /* tables written before the column have 9 */
        int got = sscanf(line, "%159[^\t]\t%d\t%d\t%zu\t%d\t%lf\t%lf\t%lf\t%lf\t%lf", u->name, &u->layer,
                         &u->kind, &u->weights, &bits, &u->proxy, &u->ppl, &ppl_float, &u->dppl,
                         &u->bits_total);
        if (got != 9 && got != 10) {
            QH_SET_ERROR(st, QH_EINVAL, "%s:%zu: expected 9 or 10 tab-separated columns", path, lineno);
            break;
        }
        out->bits = bits;
        out->ppl_float = ppl_float;
        out->total_weights += u->weights;
        out->n++;
    }
    fclose(f);
    if (st == QH_OK && !out->n) QH_SET_ERROR(st, QH_EINVAL, "%s: no units", path);
    if (st != QH_OK) qh_sens_result_free(out);
    return st;
}

/* ---- layer selection ---------------------------------------------------------- */

/* Entries a unit keeps when compressed (weights x bits_total / bits). */
static double entries_kept(const qh_sens_result *r, const qh_sens_unit *u)
{
    return (double)u->weights * u->bits_total / (double)r->bits;
}

static qh_select_by sort_by;

/* Cost per entry saved, cheapest first; ties keep the table's order. */
static int by_cost(const void *a, const void *b)
{
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    const qh_sens_unit *ua = &sort_r->units[ia], *ub = &sort_r->units[ib];
    double ca = (sort_by == QH_SELECT_BY_PROXY ? ua->proxy : ua->dppl) /
                ((double)ua->weights - entries_kept(sort_r, ua));
    double cb = (sort_by == QH_SELECT_BY_PROXY ? ub->proxy : ub->dppl) /
                ((double)ub->weights - entries_kept(sort_r, ub));
    return ca < cb ? -1 : ca > cb ? 1 : (ia > ib) - (ia < ib);
}

int qh_sensitivity_select(const qh_sens_result *r, double keep_frac, qh_select_by by, const char *path,
                          double *kept, size_t *n_selected)
{
    if (!(keep_frac > 0 && keep_frac < 1))
        QH_ERROR(QH_EINVAL, "selection: the fraction of entries kept must lie in (0, 1), got %.4g", keep_frac);
    for (size_t i = 0; i < r->n; i++)
        if (!isfinite(r->units[i].bits_total))
            QH_ERROR(QH_EINVAL, "selection: unit %s has no bits_total (a table written before that "
                     "column: measure again)", r->units[i].name);
    size_t *order = malloc((r->n ? r->n : 1) * sizeof *order), n = 0;
    char *sel = calloc(r->n ? r->n : 1, 1);
    if (!order || !sel) { free(order); free(sel); QH_ERROR(QH_ENOMEM, "out of memory"); }
    for (size_t i = 0; i < r->n; i++)   /* only units that save entries are candidates */
        if (entries_kept(r, &r->units[i]) < (double)r->units[i].weights) order[n++] = i;
    sort_r = r;
    sort_by = by;
    qsort(order, n, sizeof *order, by_cost);
    double total = (double)r->total_weights, target = keep_frac * total;
    *n_selected = 0;
    for (size_t j = 0; j < n && total > target; j++) {
        const qh_sens_unit *u = &r->units[order[j]];
        total -= (double)u->weights - entries_kept(r, u);
        sel[order[j]] = 1;
        (*n_selected)++;
    }
    *kept = total / (double)r->total_weights;
    rules_out o = { r, sel, 0, "\"skip\": true" };   /* the units left float */
    int st = write_atomic(path, "rules file", emit_rules, &o);
    free(order);
    free(sel);
    return st;
}
