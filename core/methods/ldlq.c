/* ldlq.c -- LDLQ and LDLQ-RG (QuIP, Chee et al. 2023, arXiv 2307.13304, §3;
 * methods reference §3).
 *
 * LDLQ: with the processing-order H = (U̇+I) D (U̇+I)ᵀ (U̇ strictly upper),
 *   Ŵ_k = Q(W_k + Σ_{j<k} (W_j − Ŵ_j) U̇_jk)           (Ŵ − W = η (U̇+I)⁻¹, ℓ = tr(η D ηᵀ)).
 *   order=reverse processes columns n−1..0, i.e. H = L D Lᵀ with L unit lower
 *   (the reference's production round_ldl); order=forward processes 0..n−1
 *   and equals OPTQ (round_ldl_gptqequiv).  Both run the same forward code on
 *   the columns in processing order.
 *   The fast path keeps the feedback in an accumulator updated lazily per
 *   block (one dgemm per block); ldlq_quantize_ref forms each column's sum
 *   Σ_{j<k} E_j U̇_jk directly ("pull" form), as the equation reads.
 * LDLQ-RG: columns sorted by ascending diag(H) and processed in reverse, i.e.
 *   by descending diag(H); LDLQ; then npasses greedy passes in the same order
 *   (qh_greedy_passes), stopping early when a pass changes nothing.  The
 *   paper's pass counts are not recorded; the default npasses = 1 follows the
 *   reference's llama.py default.  Passes use the damped H; the reference's
 *   normalisation by max diag(H) does not change the minimiser and is omitted.
 * Grid as in gptq.c (once from W; groups at group start from updated weights).
 * Left out: ldlbal_admm, the clamp-aware stochastic "Algorithm 5".
 */
#include "ldlq.h"
#include "qh_flops.h"
#include "qh_quant.h"
#include "qh_rows.h"

#include <string.h>

#define LDLQ_ORDER QH_QP_DESC("order", QH_PARAM_ENUM, order, QH_LDLQ_REVERSE, 0, 0, "reverse|forward", \
    "reverse: columns n-1..0 (QuIP round_ldl); forward: 0..n-1 (equals OPTQ)")

static const qh_param_desc ldlq_params[] = {
    QH_QP_GRID, QH_QP_GROUP, QH_QP_RHO, QH_QP_CLAMP, QH_QP_ROUNDING, QH_QP_DAMP, LDLQ_ORDER,
    QH_QP_BLOCK, QH_QP_DEAD_DIAG("0.001953125", "QuIP", "seqlen"), QH_QP_TIES, QH_QP_CLAMP_W,
    { 0 },
};

static const qh_param_desc ldlq_rg_params[] = {
    QH_QP_GRID, QH_QP_GROUP, QH_QP_RHO, QH_QP_CLAMP, QH_QP_DAMP,
    QH_QP_DESC("npasses", QH_PARAM_INT, npasses, 1, 0, 100, NULL,
               "greedy passes after LDLQ (stops early when a pass changes nothing)"),
    QH_QP_BLOCK, QH_QP_DEAD_DIAG("0.001953125", "QuIP", "seqlen"), QH_QP_TIES, QH_QP_CLAMP_W,
    QH_QP_PASS_CLAMP,
    { 0 },
};


/* Prepare (W: m x n, 2 n x n) + codes Q and accumulator A (2 m x n) + block
 * error and fit scratch (2 m x B); LDLQ-RG adds G (m x n) and 2 m x B for the
 * greedy passes.  The reference path needs less. */
static size_t ldlq_workspace_size(const void *params, size_t m, size_t n)
{
    return qh_quant_ws_bytes(m, n, 3, 2, 2 * m * qh_quant_block(params) + n) + 4 * QH_WS_ALIGN;
}

static size_t ldlq_rg_workspace_size(const void *params, size_t m, size_t n)
{
    return qh_quant_ws_bytes(m, n, 4, 2, 4 * m * qh_quant_block(params) + n) + 4 * QH_WS_ALIGN;
}

static int ldlq_prepare(const qh_quant_params *p, qh_order_kind order, const qh_problem *in,
                        qh_result *out, qh_bump *ws, qh_layer *L)
{
    return qh_quant_prepare(p, in, out, order, QH_FACTOR_LDL_FORWARD, ws, L);
}

/* At a group start, fits the group to the updated weights W + A (A the
 * feedback so far, NULL = none) in rows r0..r0+mr−1, using T (mr x group) as
 * scratch.  Grouped grids are per row (minmax), so each chunk of rows fits
 * its own. */
static void fit_group(qh_layer *L, qh_grid *g, size_t k, const qh_matd *A, double *T, size_t r0,
                      size_t mr)
{
    if (g->n_groups == 1 || k % g->group != 0) return;
    qh_matd Tm = { mr, g->group, mr ? mr : 1, T, 0 };
    for (size_t c = 0; c < g->group; c++)
        for (size_t r = 0; r < mr; r++)
            QH_AT(&Tm, r, c) = QH_AT(&L->Wp, r0 + r, k + c) + (A ? QH_AT(A, r0 + r, k + c) : 0.0);
    qh_grid_fit_rows(g, &Tm, r0, 0, g->group, qh_group_of(g, k));
    qh_layer_clamp_target_rows(L, g, k, g->group, qh_group_of(g, k), r0, r0 + mr);
}

/* Rounds column k in rows r0..r0+mr−1 given their feedback a: the grid
 * point into q and the error W_k − Ŵ_k into e (a, q, e: mr entries). */
static void round_column(qh_layer *L, const qh_grid *g, size_t k, const double *a,
                         double *q, double *e, size_t r0, size_t mr)
{
    size_t gi = qh_group_of(g, k);
    for (size_t r = 0; r < mr; r++) {
        double w = QH_AT(&L->Wp, r0 + r, k);
        q[r] = qh_grid_round(g, r0 + r, gi, w + a[r], qh_layer_eta(L));
        e[r] = w - q[r];
    }
}

typedef struct {
    qh_layer *L;
    qh_grid *g;
    size_t B;
    qh_matd *Q, *A;                  /* (m, n) codes and feedback, processing order */
    double *E, *T;                   /* (m, B) each: a chunk of mr rows has mr x B at row r0·B */
} ldlq_job;

/* Blocked LDLQ on one chunk of rows (all rows on one thread). */
static int ldlq_rows(void *arg, const qh_rows_chunk *c)
{
    ldlq_job *jb = arg;
    qh_layer *L = jb->L;
    size_t r0 = c->r0, mr = c->r1 - c->r0, n = L->n, B = jb->B;
    qh_matd *A = jb->A, *Q = jb->Q;  /* A: Σ_j E_j U̇_jk, lazily complete */
    double *E = jb->E + r0 * B, *T = jb->T + r0 * B;
    for (size_t b0 = 0; b0 < n; b0 += B) {
        size_t b1 = b0 + B < n ? b0 + B : n;
        for (size_t s0 = b0; s0 < b1; s0 += QH_QUANT_SUB) {   /* sub-blocks as in gptq.c */
            size_t s1 = s0 + QH_QUANT_SUB < b1 ? s0 + QH_QUANT_SUB : b1;
            for (size_t k = s0; k < s1; k++) {
                double *e = E + (k - b0) * mr;
                fit_group(L, jb->g, k, A, T, r0, mr);
                round_column(L, jb->g, k, &QH_AT(A, r0, k), &QH_AT(Q, r0, k), e, r0, mr);
                for (size_t j = k + 1; j < s1; j++) {
                    double u = QH_AT(&L->F, k, j), *a = &QH_AT(A, r0, j);
                    for (size_t r = 0; r < mr; r++) a[r] += e[r] * u;
                }
            }
            if (s1 < b1)
                qh_rows_dgemm(L->m, r0, mr, b1 - s1, s1 - s0, 1.0, E + (s0 - b0) * mr,
                              &QH_AT(&L->F, s0, s1), L->F.ld, 1.0, &QH_AT(A, r0, s1), A->ld);
        }
        if (b1 < n)                          /* A[:, b1:] += E_blk · U̇[blk, b1:] */
            qh_rows_dgemm(L->m, r0, mr, n - b1, b1 - b0, 1.0, E, &QH_AT(&L->F, b0, b1), L->F.ld,
                          1.0, &QH_AT(A, r0, b1), A->ld);
    }
    return QH_OK;
}

/* Blocked LDLQ in processing order; the codes go to Q (m x n, processing
 * order).  Rows in parallel (qh_rows.h); stochastic rounding on one thread. */
static int ldlq_blocked(qh_layer *L, qh_grid *g, size_t B, qh_matd *Q, qh_bump *ws)
{
    size_t m = L->m, n = L->n;
    qh_matd A = qh_ws_mat(ws, m, n);
    ldlq_job jb = { L, g, B, Q, &A, qh_ws_take(ws, m * B), qh_ws_take(ws, m * B) };
    return qh_rows_run(m, L->stochastic ? 1 : qh_rows_threads(m, n), ldlq_rows, &jb);
}

static qh_order_kind ldlq_order(const qh_quant_params *p)
{
    return p->order == QH_LDLQ_FORWARD ? QH_ORDER_NATURAL : QH_ORDER_REVERSE;
}

static int ldlq_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quant_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, ldlq_workspace_size(params, m, n) };
    qh_layer L;
    QH_TRY(ldlq_prepare(p, ldlq_order(p), in, out, &ws, &L));
    /* Codes land in a processing-order copy; out->What_proc is free until the store. */
    qh_matd Q = qh_ws_mat(&ws, m, n);
    QH_TRY(ldlq_blocked(&L, &out->grid, qh_quant_block(p), &Q, &ws));
    qh_quant_store(&L, &Q, out);
    return QH_OK;
}

static int ldlq_quantize_ref(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quant_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, ldlq_workspace_size(params, m, n) };
    qh_layer L;
    QH_TRY(ldlq_prepare(p, ldlq_order(p), in, out, &ws, &L));
    qh_matd E = qh_ws_mat(&ws, m, n);          /* E_j = W_j − Ŵ_j */
    double *a = qh_ws_take(&ws, m);
    double *T = out->grid.n_groups > 1 ? qh_ws_take(&ws, m * out->grid.group) : NULL;
    for (size_t k = 0; k < n; k++) {
        for (size_t r = 0; r < m; r++) {        /* a = Σ_{j<k} E_j U̇_jk */
            double s = 0.0;
            for (size_t j = 0; j < k; j++) s += QH_AT(&E, r, j) * QH_AT(&L.F, j, k);
            a[r] = s;
        }
        if (out->grid.n_groups > 1 && k % out->grid.group == 0) {
            /* The group's later columns need their feedback too: form it for the fit. */
            qh_matd Tm = { m, out->grid.group, m, T, 0 };
            for (size_t c = 0; c < out->grid.group; c++)
                for (size_t r = 0; r < m; r++) {
                    double s = 0.0;
                    for (size_t j = 0; j < k; j++) s += QH_AT(&E, r, j) * QH_AT(&L.F, j, k + c);
                    QH_AT(&Tm, r, c) = QH_AT(&L.Wp, r, k + c) + s;
                }
            qh_grid_fit(&out->grid, &Tm, 0, out->grid.group, qh_group_of(&out->grid, k));
            qh_layer_clamp_target(&L, &out->grid, k, out->grid.group, qh_group_of(&out->grid, k));
        }
        round_column(&L, &out->grid, k, a, &QH_AT(out->What_proc, 0, L.perm[k]), &QH_AT(&E, 0, k), 0,
                     m);
    }
    return QH_OK;
}

static int ldlq_rg_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quant_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, ldlq_rg_workspace_size(params, m, n) };
    qh_layer L;
    QH_TRY(ldlq_prepare(p, QH_ORDER_DIAG_DESC, in, out, &ws, &L));
    qh_matd Q = qh_ws_mat(&ws, m, n);
    QH_TRY(ldlq_blocked(&L, &out->grid, qh_quant_block(p), &Q, &ws));
    QH_TRY(qh_greedy_passes(&L, &out->grid, &Q, p->npasses, qh_quant_block(p), &ws,
                            &out->n_greedy_passes));
    qh_quant_store(&L, &Q, out);
    return QH_OK;
}

const qh_method_type qh_method_ldlq = {
    .name = "ldlq",
    .display = "LDLQ",
    .display_order = 20,
    .bound_family = QH_BOUND_FAMILY_LDLQ,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN | QH_NEEDS_GRID | QH_NEEDS_RNG,
    .summary = "QuIP LDLQ: rounding with LDL feedback (reverse = reference round_ldl, forward = OPTQ)",
    .params = ldlq_params,
    .params_size = sizeof(qh_quant_params),
    .workspace_size = ldlq_workspace_size,
    .quantize = ldlq_quantize,
    .quantize_ref = ldlq_quantize_ref,
    .tol_ref = 1e-9,
    .flops = qh_flops_row_feedback,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};

/* LDLQ's count, then `npasses` greedy coordinate passes of one product with H each. */
static double ldlq_rg_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    return qh_flops_feedback_then((double)rows, (double)cols,
                                  ((const qh_quant_params *)params)->npasses);
}

const qh_method_type qh_method_ldlq_rg = {
    .name = "ldlq_rg",
    .display = "LDLQ-RG",
    .display_order = 30,
    .bound_family = QH_BOUND_FAMILY_LDLQ,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN | QH_NEEDS_GRID,
    .summary = "QuIP LDLQ-RG: LDLQ by descending diag(H), then greedy coordinate passes",
    .params = ldlq_rg_params,
    .params_size = sizeof(qh_quant_params),
    .workspace_size = ldlq_rg_workspace_size,
    .quantize = ldlq_rg_quantize,
    .flops = ldlq_rg_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
