/* layer_eval.c -- quantize one layer, measure it, tabulate (see layer_eval.h). */
#include "pipeline/layer_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_clock.h"

/* RMS of the grid's steps over rows and groups; per-row steps (RMS over the
 * row's groups) into rows_out for the bounds' S = Σ_r Δ_r². */
static double grid_steps(const qh_grid *g, double *rows_out)
{
    double total = 0;
    for (size_t r = 0; r < g->rows; r++) {
        double s = 0;
        for (size_t gi = 0; gi < g->n_groups; gi++) {
            double d = g->step[r + gi * g->rows];
            s += d * d;
        }
        rows_out[r] = sqrt(s / (double)g->n_groups);
        total += s;
    }
    return sqrt(total / (double)(g->rows * g->n_groups));
}

static double mean_of(const double *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return n ? s / (double)n : NAN;
}

static int measure(const qh_method_type *m, const qh_problem *p, const qh_result *res,
                   qh_spectrum_cache *cache, qh_layer_record *rec)
{
    qh_processed_inputs proc = { res->W_proc, res->What_proc, res->H_proc };
    QH_TRY(qh_layer_metrics_compute_cached(p->W, res->What, p->H, res->H_proc ? &proc : NULL,
                                           res->col_order, cache, &rec->metrics));
    /* The bounds are stated for scalar grids with steps Δ; other methods
     * report their row scales on their own (row_scale_mean). */
    if (!(m->needs & QH_NEEDS_GRID) || !res->grid.step || !res->H_proc) return QH_OK;
    double *delta_rows = malloc(res->grid.rows * sizeof *delta_rows);
    if (!delta_rows) QH_ERROR(QH_ENOMEM, "%s: out of memory", rec->name);
    rec->delta_rms = grid_steps(&res->grid, delta_rows);
    qh_bound_inputs in;
    qh_bound_inputs_from_metrics(&in, rec->rows, rec->cols, &rec->metrics.proc);
    in.delta_rows = delta_rows;
    in.prob_delta = 0.01;
    int st = isfinite(in.tr_D) ? qh_bounds_compute(&in, &rec->bounds) : QH_OK;
    free(delta_rows);
    return st;
}

int qh_layer_run(const qh_method_type *m, const void *params, const qh_incoh_params *incoh,
                 const qh_problem *p, int layer, int kind, qh_spectrum_cache *cache,
                 qh_layer_record *rec, qh_matd *What)
{
    memset(rec, 0, sizeof *rec);
    snprintf(rec->name, sizeof rec->name, "%s", p->name ? p->name : "matrix");
    rec->layer = layer;
    rec->kind = kind;
    rec->rows = p->W->rows;
    rec->cols = p->W->cols;
    rec->order = "";
    rec->delta_rms = NAN;
    rec->row_scale_mean = NAN;

    qh_result res;
    qh_result_init(&res);
    double t0 = qh_seconds();
    int st = qh_quantize(m, params, p, incoh, NULL, &res);
    rec->seconds = qh_seconds() - t0;
    if (st == QH_OK) {
        rec->order = res.order ? res.order : "";
        rec->n_dead_cols = res.n_dead_cols;
        rec->n_damp_retries = res.n_damp_retries;
        rec->n_greedy_passes = res.n_greedy_passes;
        rec->damp_used = res.damp_used;
        rec->bits_nominal = res.bits_nominal;
        rec->bits_side = res.bits_side;
        rec->bits_total = res.bits_total;
        rec->n_iterations = res.n_iterations;
        if (res.row_scale) rec->row_scale_mean = mean_of(res.row_scale, res.rows);
        st = measure(m, p, &res, cache, rec);
    }
    if (st == QH_OK && What) {
        QH_ASSERT(What->rows == rec->rows && What->cols == rec->cols);
        for (size_t j = 0; j < rec->cols; j++)
            memcpy(What->data + j * What->ld, res.What->data + j * res.What->ld, rec->rows * sizeof(double));
    }
    rec->status = st;
    if (st != QH_OK) snprintf(rec->message, sizeof rec->message, "%s", qh_last_error());
    qh_result_free(&res);
    return st;
}

/* ---- the table ---------------------------------------------------------- */

enum { COL_MAX = 48 + QH_BOUNDS_MAX };

typedef struct {
    qh_results_column cols[COL_MAX];
    size_t n;
    void *owned[COL_MAX];
} table_builder;

static double *add_double(table_builder *tb, const char *name, size_t rows)
{
    double *d = calloc(rows ? rows : 1, sizeof *d);
    QH_ASSERT(tb->n < COL_MAX);
    tb->cols[tb->n] = (qh_results_column){ name, QH_RESULTS_DOUBLE, d };
    tb->owned[tb->n++] = d;
    return d;
}

static int64_t *add_int(table_builder *tb, const char *name, size_t rows)
{
    int64_t *d = calloc(rows ? rows : 1, sizeof *d);
    QH_ASSERT(tb->n < COL_MAX);
    tb->cols[tb->n] = (qh_results_column){ name, QH_RESULTS_INT64, d };
    tb->owned[tb->n++] = d;
    return d;
}

static const char **add_string(table_builder *tb, const char *name, size_t rows)
{
    const char **d = calloc(rows ? rows : 1, sizeof *d);
    QH_ASSERT(tb->n < COL_MAX);
    tb->cols[tb->n] = (qh_results_column){ name, QH_RESULTS_STRING, d };
    tb->owned[tb->n++] = d;
    return d;
}

/* One double column per basis-metrics field, suffixed "" (original) or "_proc". */
static void add_basis_columns(table_builder *tb, const qh_layer_record *recs, size_t n, int proc)
{
    static const char *const names[2][10] = {
        { "proxy", "proxy_norm", "proxy_rel", "mu_W", "mu_What", "tr_D", "mu_H", "tr_H",
          "tr_sqrtH_sq", "cond" },
        { "proxy_proc", "proxy_norm_proc", "proxy_rel_proc", "mu_W_proc", "mu_What_proc",
          "tr_D_proc", "mu_H_proc", "tr_H_proc", "tr_sqrtH_sq_proc", "cond_proc" },
    };
    double *c[10];
    for (int k = 0; k < 10; k++) c[k] = add_double(tb, names[proc][k], n);
    for (size_t i = 0; i < n; i++) {
        const qh_basis_metrics *b = proc ? &recs[i].metrics.proc : &recs[i].metrics.orig;
        int have = proc ? recs[i].metrics.has_processed : recs[i].status == QH_OK;
        double v[10] = { b->proxy, b->proxy_norm, b->proxy_rel, b->mu_W, b->mu_What, b->tr_D,
                         b->spec.mu_H, b->spec.tr_H, b->spec.tr_sqrtH_sq, b->spec.cond };
        for (int k = 0; k < 10; k++) c[k][i] = have ? v[k] : NAN;
    }
}

static void add_bound_columns(table_builder *tb, const qh_layer_record *recs, size_t n)
{
    static char names[QH_BOUNDS_MAX][64];
    const qh_bound_list *ref = NULL;
    for (size_t i = 0; i < n && !ref; i++)
        if (recs[i].bounds.count) ref = &recs[i].bounds;
    if (!ref) return;
    for (size_t k = 0; k < ref->count; k++) {
        snprintf(names[k], sizeof names[k], "bound_%s", ref->items[k].name);
        double *c = add_double(tb, names[k], n);
        for (size_t i = 0; i < n; i++) {
            const qh_bound *b = qh_bounds_find(&recs[i].bounds, ref->items[k].name);
            c[i] = b ? b->value : NAN;
        }
    }
}

static void add_block_columns(table_builder *tb, const qh_layer_record *recs, size_t n)
{
    static const char *const names[4] = { "block_loss_init", "block_loss_final", "block_mse_init",
                                          "block_mse_final" };
    int any = 0;
    for (size_t i = 0; i < n; i++) any |= recs[i].block_tuned;
    if (!any) return;
    double *c[4];
    for (int k = 0; k < 4; k++) c[k] = add_double(tb, names[k], n);
    for (size_t i = 0; i < n; i++) {
        const qh_layer_record *r = &recs[i];
        double v[4] = { r->block_loss_init, r->block_loss_final, r->block_mse_init, r->block_mse_final };
        for (int k = 0; k < 4; k++) c[k][i] = r->block_tuned ? v[k] : NAN;
    }
}

/* Methods that are not a scalar grid: their row scales and iterations, in
 * columns of their own, written only when some record has row scales (so
 * the tables of grid methods keep their columns). */
static void add_vector_columns(table_builder *tb, const qh_layer_record *recs, size_t n)
{
    int any = 0;
    for (size_t i = 0; i < n; i++) any |= !isnan(recs[i].row_scale_mean);
    if (!any) return;
    double *scale = add_double(tb, "row_scale_mean", n);
    int64_t *iters = add_int(tb, "n_iterations", n);
    if (!scale || !iters) return;     /* the caller reports the missing column */
    for (size_t i = 0; i < n; i++) {
        scale[i] = recs[i].row_scale_mean;
        iters[i] = (int64_t)recs[i].n_iterations;
    }
}

/* Per-layer rules: the resolved setting of every linear, written only when
 * some record is ruled (so cells without rules keep their columns). */
static void add_rule_columns(table_builder *tb, const qh_layer_record *recs, size_t n)
{
    int any = 0;
    for (size_t i = 0; i < n; i++) any |= recs[i].ruled;
    if (!any) return;
    int64_t *skipped = add_int(tb, "skipped", n), *bits = add_int(tb, "bits_set", n);
    const char **over = add_string(tb, "overrides", n);
    if (!skipped || !bits || !over) return;   /* the caller reports the missing column */
    for (size_t i = 0; i < n; i++) {
        skipped[i] = recs[i].skipped;
        bits[i] = recs[i].bits_set;
        over[i] = recs[i].overrides;
    }
}

int qh_layer_record_skipped(const char *name, int layer, int kind, const qh_matd *W, const qh_matd *H,
                            int stored_bits, qh_spectrum_cache *cache, qh_layer_record *rec)
{
    memset(rec, 0, sizeof *rec);
    snprintf(rec->name, sizeof rec->name, "%s", name);
    rec->layer = layer;
    rec->kind = kind;
    rec->rows = W->rows;
    rec->cols = W->cols;
    rec->order = "";
    rec->delta_rms = NAN;
    rec->row_scale_mean = NAN;
    rec->damp_used = NAN;
    rec->bits_nominal = rec->bits_total = stored_bits;
    rec->ruled = rec->skipped = 1;
    rec->bits_set = stored_bits;
    qh_processed_inputs proc = { W, W, H };
    return qh_layer_metrics_compute_cached(W, W, H, &proc, NULL, cache, &rec->metrics);
}

int qh_layer_records_write(qh_results *w, const char *path, const qh_layer_record *recs, size_t n)
{
    table_builder tb = { .n = 0 };
    const char **name = add_string(&tb, "name", n), **order = add_string(&tb, "order", n);
    const char **message = add_string(&tb, "message", n);
    int64_t *layer = add_int(&tb, "layer", n), *kind = add_int(&tb, "kind", n);
    int64_t *rows = add_int(&tb, "rows", n), *cols = add_int(&tb, "cols", n);
    int64_t *status = add_int(&tb, "status", n), *dead = add_int(&tb, "n_dead_cols", n);
    int64_t *damp_retries = add_int(&tb, "n_damp_retries", n);
    int64_t *passes = add_int(&tb, "n_greedy_passes", n), *rank = add_int(&tb, "rank", n);
    double *damp = add_double(&tb, "damp_used", n), *bn = add_double(&tb, "bits_nominal", n);
    double *bs = add_double(&tb, "bits_side", n), *bt = add_double(&tb, "bits_total", n);
    double *delta = add_double(&tb, "delta_rms", n);
    for (size_t i = 0; i < n; i++) {
        const qh_layer_record *r = &recs[i];
        name[i] = r->name; order[i] = r->order; message[i] = r->message;
        layer[i] = r->layer; kind[i] = r->kind; rows[i] = (int64_t)r->rows; cols[i] = (int64_t)r->cols;
        status[i] = r->status; dead[i] = (int64_t)r->n_dead_cols;
        damp_retries[i] = (int64_t)r->n_damp_retries; passes[i] = (int64_t)r->n_greedy_passes;
        rank[i] = (int64_t)r->metrics.orig.spec.rank;
        damp[i] = r->damp_used; bn[i] = r->bits_nominal; bs[i] = r->bits_side; bt[i] = r->bits_total;
        delta[i] = r->delta_rms;          /* timings go to /provenance: they vary */
    }
    add_basis_columns(&tb, recs, n, 0);
    add_basis_columns(&tb, recs, n, 1);
    add_bound_columns(&tb, recs, n);
    add_block_columns(&tb, recs, n);
    add_vector_columns(&tb, recs, n);
    add_rule_columns(&tb, recs, n);
    int st = QH_OK;
    for (size_t k = 0; k < tb.n; k++)
        if (!tb.owned[k]) QH_SET_ERROR(st, QH_ENOMEM, "layer table: out of memory");
    if (st == QH_OK) st = qh_results_write_table(w, path, tb.cols, tb.n, n);
    for (size_t k = 0; k < tb.n; k++) free(tb.owned[k]);
    return st;
}

double qh_layer_records_bits_total(const qh_layer_record *recs, size_t n)
{
    double bits = 0, weights = 0;
    for (size_t i = 0; i < n; i++) {
        double w = (double)recs[i].rows * (double)recs[i].cols;
        bits += recs[i].bits_total * w;
        weights += w;
    }
    return weights > 0 ? bits / weights : NAN;
}
