/* greedy.c -- "Greedy" of QuIP (Chee et al. 2023; reference `allbal`, methods
 * reference §3): start from the unrounded W, order columns by descending
 * diag(H), and run npasses coordinate passes
 *   ŵ_k ← Q_nearest(ŵ_k − ((Ŵ−W)H)_{:,k}/H_kk)   (with clamping),
 * the exact grid minimiser of ℓ in column k with the other columns fixed.
 * The first pass puts every column on the grid; later passes never increase ℓ
 * and the run stops early when a pass changes nothing.  H is the damped H.
 * The paper's pass counts are not recorded; npasses defaults to 4.
 * Grid: fitted from W before the passes (per group when grouped).
 */
#include "greedy.h"
#include "qh_flops.h"
#include "qh_quant.h"
#include "qh_rows.h"

#include <string.h>

static const qh_param_desc greedy_params[] = {
    QH_QP_GRID, QH_QP_GROUP, QH_QP_RHO, QH_QP_CLAMP, QH_QP_DAMP,
    QH_QP_DESC("npasses", QH_PARAM_INT, npasses, 4, 1, 100, NULL,
               "coordinate passes from the unrounded W (stops early when a pass changes nothing)"),
    QH_QP_BLOCK,
    QH_QP_DEAD_DIAG("0.001953125", "QuIP", "seqlen"), QH_QP_TIES, QH_QP_CLAMP_W, QH_QP_PASS_CLAMP,
    { 0 },
};

static size_t greedy_workspace_size(const void *params, size_t m, size_t n)
{
    const qh_quant_params *p = params;
    return qh_quant_ws_bytes(m, n, 3, 2, 2 * m * (size_t)p->blocksize + n) + 4 * QH_WS_ALIGN;
}

typedef struct {
    qh_layer *L;
    qh_grid *g;
    qh_matd *Q;
} start_job;

/* On one chunk of rows: each group's grid from W (per row), the target
 * clamped into it (clamp_w), and Q = W. */
static int start_rows(void *arg, const qh_rows_chunk *c)
{
    start_job *jb = arg;
    qh_layer *L = jb->L;
    qh_grid *g = jb->g;
    size_t r0 = c->r0, mr = c->r1 - c->r0;
    qh_matd Wr = { mr, L->n, L->Wp.ld, L->Wp.data + r0, 0 };
    for (size_t gi = 0; g->n_groups > 1 && gi < g->n_groups; gi++) {
        qh_grid_fit_rows(g, &Wr, r0, gi * g->group, g->group, gi);
        qh_layer_clamp_target_rows(L, g, gi * g->group, g->group, gi, r0, c->r1);
    }
    for (size_t k = 0; k < L->n; k++)
        memcpy(&QH_AT(jb->Q, r0, k), &QH_AT(&L->Wp, r0, k), mr * sizeof(double));
    return QH_OK;
}

static int greedy_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quant_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, greedy_workspace_size(params, m, n) };
    qh_layer L;
    QH_TRY(qh_quant_prepare(p, in, out, QH_ORDER_DIAG_DESC, QH_FACTOR_CHOL, &ws, &L));
    qh_matd Q = qh_ws_mat(&ws, m, n);
    start_job sj = { &L, &out->grid, &Q };
    QH_TRY(qh_rows_run(m, qh_rows_threads(m, n), start_rows, &sj));
    QH_TRY(qh_greedy_passes(&L, &out->grid, &Q, p->npasses, (size_t)p->blocksize, &ws,
                            &out->n_greedy_passes));
    qh_quant_store(&L, &Q, out);
    return QH_OK;
}

/* The factorisation of H (2 n^3) and `npasses` coordinate passes of one
 * product with H each; no feedback loop (the passes start from W). */
static double greedy_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    const qh_quant_params *p = params;
    double m = (double)rows, n = (double)cols;
    return 2 * n * n * n + p->npasses * qh_flops_times_h(m, n);
}

const qh_method_type qh_method_greedy = {
    .name = "greedy",
    .display = "Greedy",
    .display_order = 40,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN | QH_NEEDS_GRID,
    .summary = "QuIP Greedy: coordinate passes from the unrounded W, columns by descending diag(H)",
    .params = greedy_params,
    .params_size = sizeof(qh_quant_params),
    .workspace_size = greedy_workspace_size,
    .quantize = greedy_quantize,
    .flops = greedy_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
