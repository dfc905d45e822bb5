/* rtn.c -- rounding each weight onto the grid independently: nearest, or
 * stochastic (unbiased).  The U = 0 member of the LDLQ family: its average
 * proxy loss on an integer grid is (m/12) tr H (nearest) or (m/6) tr H
 * (stochastic), methods reference §15.
 *
 * Grids (qh_grid.h): OPTQ per-row min-max computed once from W (per group when
 * group > 0), QuIP's per-matrix 2.4·RMS symmetric grid, or the integer grid.
 * H is not used; when given it is copied (dead columns fixed, undamped) into
 * the result so the proxy loss can be computed against it.
 */
#include "rtn.h"
#include "qh_flops.h"
#include "qh_quant.h"

static const qh_param_desc rtn_params[] = {
    QH_QP_GRID, QH_QP_GROUP, QH_QP_RHO, QH_QP_CLAMP, QH_QP_ROUNDING, QH_QP_TIES, QH_QP_SYM,
    QH_QP_CLIP,
    { 0 },
};

static size_t rtn_workspace_size(const void *params, size_t m, size_t n)
{
    (void)params;
    return qh_quant_ws_bytes(m, n, 1, 0, 0);
}

static int rtn_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quant_params *p = params;
    qh_bump ws = { work, rtn_workspace_size(params, in->W->rows, in->W->cols) };
    qh_layer L;
    QH_TRY(qh_quant_prepare(p, in, out, QH_ORDER_NATURAL, QH_NO_FACTOR, &ws, &L));
    qh_grid *g = &out->grid;
    for (size_t gi = 0; g->n_groups > 1 && gi < g->n_groups; gi++)
        qh_grid_fit(g, &L.Wp, gi * g->group, g->group, gi);
    for (size_t k = 0; k < L.n; k++)
        for (size_t r = 0; r < L.m; r++)
            QH_AT(&L.Wp, r, k) = qh_grid_round(g, r, qh_group_of(g, k), QH_AT(&L.Wp, r, k),
                                               qh_layer_eta(&L));
    qh_quant_store(&L, &L.Wp, out);
    return QH_OK;
}

const qh_method_type qh_method_rtn = {
    .name = "rtn",
    .display = "Nearest",
    .display_order = 50,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = QH_NEEDS_GRID | QH_NEEDS_RNG,
    .summary = "round each weight to the grid (nearest or stochastic); no Hessian",
    .params = rtn_params,
    .params_size = sizeof(qh_quant_params),
    .workspace_size = rtn_workspace_size,
    .quantize = rtn_quantize,
    .flops = qh_flops_row_round,
    .flops_efficiency = QH_FLOPS_EFF_ROUND,
};
