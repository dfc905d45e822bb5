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
#include "qh_quant.h"

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

static int greedy_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quant_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, greedy_workspace_size(params, m, n) };
    qh_layer L;
    QH_TRY(qh_quant_prepare(p, in, out, QH_ORDER_DIAG_DESC, QH_FACTOR_CHOL, &ws, &L));
    qh_grid *g = &out->grid;
    for (size_t gi = 0; g->n_groups > 1 && gi < g->n_groups; gi++) {
        qh_grid_fit(g, &L.Wp, gi * g->group, g->group, gi);
        qh_layer_clamp_target(&L, g, gi * g->group, g->group, gi);
    }
    qh_matd Q = qh_ws_mat(&ws, m, n);
    for (size_t k = 0; k < n; k++)
        memcpy(&QH_AT(&Q, 0, k), &QH_AT(&L.Wp, 0, k), m * sizeof(double));
    out->n_greedy_passes = qh_greedy_passes(&L, g, &Q, p->npasses, (size_t)p->blocksize, &ws);
    qh_quant_store(&L, &Q, out);
    return QH_OK;
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
};
