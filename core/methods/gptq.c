/* gptq.c -- OPTQ / GPTQ (Frantar et al. 2022, arXiv 2210.17323, Algorithm 1),
 * following the reference `gptq.py` (methods reference §2):
 *   dead inputs → optional act-order (descending diag H, undone at the end) →
 *   H += damp·mean(diag H)·I (raised and counted on Cholesky failure) →
 *   Hinv = upper Cholesky factor of H⁻¹ → per column i: q = Q(w_i),
 *   e = (w_i − q)/Hinv_ii, later columns −= e·Hinv[i, later].
 * The fast path applies the updates lazily per block of 128 columns (one
 * dgemm per block, and inside a block per sub-block of 16); gptq_quantize_ref updates every later column after every
 * column, as the paper's equations read, and serves as the oracle.
 *
 * Grid: computed once from W before any feedback; with groups, at each group
 * start from the updated weights (groups are contiguous in processing order,
 * as in the reference without --static-groups).  With a group the block size
 * is the group size so that a group's columns are up to date when it is fitted.
 * Under grid=rms the reference's quant.py recomputes s from the RMS of the
 * current column after feedback (methods reference §4, pitfall 4):
 * rms_scope=column does that (side information: one FP16 s per column,
 * 16/m bits per weight); the default keeps QuIP's one s per matrix, fitted
 * from W before feedback, as its nearest rounding and LDLQ do.
 * Left out: --static-groups, --trits grids, the
 * per-column loss accumulator (the driver computes ℓ exactly).
 */
#include "gptq.h"
#include "qh_flops.h"
#include "qh_quant.h"
#include "qh_rows.h"

#include <string.h>

static const qh_param_desc gptq_params[] = {
    QH_QP_GRID, QH_QP_GROUP, QH_QP_RHO, QH_QP_CLAMP, QH_QP_ROUNDING, QH_QP_DAMP,
    QH_QP_DESC("act_order", QH_PARAM_BOOL, act_order, 0, 0, 1, NULL,
               "quantize columns by descending diag(H) (reference --act-order)"),
    QH_QP_BLOCK,
    QH_QP_DEAD_DIAG("0.0009765625", "OPTQ", "2*seqlen"), QH_QP_TIES,
    QH_QP_DESC_REF("rms_scope", QH_PARAM_ENUM, rms_scope, QH_RMS_MATRIX, 0, 0, "matrix|column",
                   "grid=rms only: matrix fits one s from W before feedback (QuIP; better); "
                   "column refits s to each column after feedback, as the OPTQ path of "
                   "QuIP's code (one FP16 s per column)", "column"),
    QH_QP_SYM, QH_QP_CLIP,
    { 0 },
};


static size_t gptq_workspace_size(const void *params, size_t m, size_t n)
{
    return qh_quant_ws_bytes(m, n, 1, 2, m * qh_quant_block(params) + n);
}

size_t qh_gptq_workspace_size(const qh_quant_params *p, size_t m, size_t n)
{
    return gptq_workspace_size(p, m, n);
}

static int rms_per_column(const qh_quant_params *p)
{
    return p->grid == QH_GRID_RMS && p->rms_scope == QH_RMS_COLUMN;
}

static int gptq_prepare(const qh_quant_params *p, const qh_problem *in, qh_result *out,
                        qh_bump *ws, qh_layer *L)
{
    qh_order_kind order = p->act_order ? QH_ORDER_DIAG_DESC : QH_ORDER_NATURAL;
    QH_TRY(qh_quant_prepare(p, in, out, order, QH_FACTOR_HINV_UPPER, ws, L));
    if (rms_per_column(p)) out->bits_side = 16.0 / (double)in->W->rows;
    return QH_OK;
}

/* A fit that reads every row (a rounding hook's, grid=rms per column) runs on
 * thread 0 once every thread has brought its rows up to date; the others
 * wait until it is done (no-ops on one thread). */
#define SERIAL_FIT(c, call)                                                       \
    do {                                                                          \
        qh_rows_sync(c);                                                          \
        if ((c)->tid == 0) call;                                                  \
        qh_rows_sync(c);                                                          \
    } while (0)

/* Rounds processing column i of L->Wp (with its feedback applied) in rows
 * c->r0..c->r1−1 (Wr: the view of those rows), writes the code into
 * out->What_proc and the scaled error (w − q)/Hinv_ii into e (one entry per
 * row of the chunk).  With a rounding hook (rnd non-NULL) the hook fits each
 * group at its start and rounds; the grid then only carries the group layout. */
static void round_column(qh_layer *L, qh_result *out, size_t i, double *e, int rms_column,
                         const qh_gptq_rounding *rnd, const qh_rows_chunk *c, const qh_matd *Wr)
{
    qh_grid *g = &out->grid;
    size_t gi = qh_group_of(g, i);
    if (g->n_groups > 1 && i % g->group == 0) {
        if (rnd) SERIAL_FIT(c, rnd->fit(rnd->ctx, &L->Wp, i, g->group, gi));
        else qh_grid_fit_rows(g, Wr, c->r0, i, g->group, gi);   /* minmax: per row */
    }
    if (rms_column) SERIAL_FIT(c, qh_grid_fit(g, &L->Wp, i, 1, 0));
    double rii = QH_AT(&L->F, i, i);
    for (size_t r = 0; r < Wr->rows; r++) {
        double w = QH_AT(Wr, r, i);
        double q = rnd ? rnd->round(rnd->ctx, c->r0 + r, gi, w)
                       : qh_grid_round(g, c->r0 + r, gi, w, qh_layer_eta(L));
        QH_AT(out->What_proc, c->r0 + r, L->perm[i]) = q;
        e[r] = (w - q) / rii;
    }
}

/* Wr[:, j] −= e·Hinv[i, j] for j in [j0, j1) (Wr: the chunk's rows). */
static void push_error(const qh_layer *L, const qh_matd *Wr, size_t i, const double *e, size_t j0,
                       size_t j1)
{
    for (size_t j = j0; j < j1; j++) {
        double c = QH_AT(&L->F, i, j);
        double *w = &QH_AT(Wr, 0, j);
        for (size_t r = 0; r < Wr->rows; r++) w[r] -= e[r] * c;
    }
}

typedef struct {
    const qh_quant_params *p;
    qh_layer *L;
    qh_result *out;
    const qh_gptq_rounding *rnd;
    size_t B;
    double *E;                       /* (m, B) block errors: a chunk of mr rows has mr x B at row r0·B */
} gptq_job;

/* The lazy-block column loop on one chunk of rows (all rows on one thread). */
static int gptq_rows(void *arg, const qh_rows_chunk *c)
{
    gptq_job *jb = arg;
    qh_layer *L = jb->L;
    size_t mr = c->r1 - c->r0, n = L->n, B = jb->B;
    qh_matd Wr = { mr, n, L->Wp.ld, L->Wp.data + c->r0, 0 };
    double *E = jb->E + c->r0 * B;   /* (mr, B) scaled errors of the block */
    int rms_column = rms_per_column(jb->p);
    for (size_t b0 = 0; b0 < n; b0 += B) {
        size_t b1 = b0 + B < n ? b0 + B : n;
        /* Inside the block, rank-1 updates only within sub-blocks of QH_QUANT_SUB columns;
         * the rest of the block catches up by one small dgemm per sub-block. */
        for (size_t s0 = b0; s0 < b1; s0 += QH_QUANT_SUB) {
            size_t s1 = s0 + QH_QUANT_SUB < b1 ? s0 + QH_QUANT_SUB : b1;
            for (size_t i = s0; i < s1; i++) {
                round_column(L, jb->out, i, E + (i - b0) * mr, rms_column, jb->rnd, c, &Wr);
                push_error(L, &Wr, i, E + (i - b0) * mr, i + 1, s1);
            }
            if (s1 < b1)
                qh_rows_dgemm(L->m, c->r0, mr, b1 - s1, s1 - s0, -1.0, E + (s0 - b0) * mr,
                              &QH_AT(&L->F, s0, s1), L->F.ld, 1.0, &QH_AT(&Wr, 0, s1), Wr.ld);
        }
        /* Lazy update of the later columns: W[:, b1:] −= E_blk · Hinv[blk, b1:] */
        if (b1 < n)
            qh_rows_dgemm(L->m, c->r0, mr, n - b1, b1 - b0, -1.0, E, &QH_AT(&L->F, b0, b1), L->F.ld,
                          1.0, &QH_AT(&Wr, 0, b1), Wr.ld);
    }
    return QH_OK;
}

int qh_gptq_run(const qh_quant_params *p, const qh_problem *in, qh_result *out, void *work,
                const qh_gptq_rounding *rnd)
{
    size_t m = in->W->rows, n = in->W->cols, B = qh_quant_block(p);
    qh_bump ws = { work, gptq_workspace_size(p, m, n) };
    qh_layer L;
    QH_TRY(gptq_prepare(p, in, out, &ws, &L));
    if (rnd && out->grid.n_groups == 1) rnd->fit(rnd->ctx, &L.Wp, 0, n, 0);
    gptq_job jb = { p, &L, out, rnd, B, qh_ws_take(&ws, m * B) };
    /* Stochastic rounding draws one stream in row order: one thread. */
    return qh_rows_run(m, L.stochastic ? 1 : qh_rows_threads(m, n), gptq_rows, &jb);
}

static int gptq_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    return qh_gptq_run(params, in, out, work, NULL);
}

static int gptq_quantize_ref(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quant_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, gptq_workspace_size(params, m, n) };
    qh_layer L;
    QH_TRY(gptq_prepare(p, in, out, &ws, &L));
    double *e = qh_ws_take(&ws, m);
    qh_rows_chunk all = { 0, m, 0, 1, NULL };
    for (size_t i = 0; i < n; i++) {
        round_column(&L, out, i, e, rms_per_column(p), NULL, &all, &L.Wp);
        push_error(&L, &L.Wp, i, e, i + 1, n);
    }
    return QH_OK;
}

const qh_method_type qh_method_gptq = {
    .name = "gptq",
    .display = "OPTQ",
    .display_order = 10,
    .bound_family = QH_BOUND_FAMILY_LDLQ,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN | QH_NEEDS_GRID | QH_NEEDS_RNG,
    .summary = "OPTQ/GPTQ: column-wise rounding with error feedback through Hinv (lazy blocks)",
    .params = gptq_params,
    .params_size = sizeof(qh_quant_params),
    .workspace_size = gptq_workspace_size,
    .quantize = gptq_quantize,
    .quantize_ref = gptq_quantize_ref,
    .tol_ref = 1e-9,
    .flops = qh_flops_row_feedback,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
