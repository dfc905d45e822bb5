/* ternary.c -- BitNet b1.58's weight quantizer, post-training (methods
 * reference §1 conventions; BitNet b1.58, Ma et al. 2024, arXiv 2402.17764,
 * eq. 1-3):  γ = mean |W| over the scope,  W̃ = RoundClip(W/γ, −1, 1),
 * Ŵ = γ·W̃ ∈ {−γ, 0, γ}.
 *
 * The paper trains with this quantizer from the start (quantization-aware,
 * per tensor, ε = 1e-5 added to γ); here it is applied once to trained
 * weights, which is what the survey's post-training comparison needs.
 * Parameters (deviations from the paper are documented choices):
 *   scope   tensor (the paper) | row: one γ per tensor or per output row;
 *   group   0, or g > 0: one γ per row and group of g input columns (any scope);
 *   feedback 0: every weight rounded independently (the paper's quantizer);
 *           1: GPTQ's column loop (core/methods/gptq.c, qh_gptq_run with this
 *           rounding): each column rounded after the error feedback of the
 *           earlier ones through the upper Cholesky factor of H⁻¹ (damp);
 *           γ from W before feedback (tensor, row) or at each group start
 *           from the updated weights (group), as GPTQ fits its groups;
 *   packing packed: nominal bits log2 3 ≈ 1.585 (five trits per byte give
 *           1.6; base-3 words of many trits approach log2 3); stored: 2 bits
 *           per weight as a 2-bit field holds it.  Side bits: one FP16 γ per
 *           scope.  The row takes bits = 2 (the width a ternary code is
 *           stored in); packing only changes the count.
 * γ = 0 (an all-zero scope) gives Ŵ = 0; no ε is added (a documented
 * deviation: ε only guards the division).
 */
#include "ternary.h"
#include "gptq.h"
#include "qh_flops.h"
#include "qh_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TP(k, t, f, d, l, h, ch, doc) { k, t, offsetof(qh_ternary_params, f), d, l, h, ch, doc, NULL }
static const qh_param_desc ternary_params[] = {
    TP("scope", QH_PARAM_ENUM, scope, QH_SCOPE_TENSOR, 0, 0, "tensor|row",
       "one gamma = mean|W| per tensor (BitNet b1.58) or per output row (group > 0: per group)"),
    TP("group", QH_PARAM_INT, group, 0, 0, 1 << 20, NULL,
       "0: the scope's one gamma; g > 0: one gamma per row and group of g columns (must divide n)"),
    TP("feedback", QH_PARAM_BOOL, feedback, 0, 0, 1, NULL,
       "0: round every weight independently (the paper); 1: GPTQ column loop with error "
       "feedback under H"),
    TP("damp", QH_PARAM_DOUBLE, damp, 0.01, 0, 1, NULL,
       "feedback: H += damp*mean(live diag H)*I (raised tenfold per failed Cholesky)"),
    TP("packing", QH_PARAM_ENUM, packing, QH_PACKING_PACKED, 0, 0, "packed|stored",
       "nominal bits log2(3) = 1.585 (packed trits) or 2 (one 2-bit field per weight)"),
    { 0 },
};

/* ---- shared with bitnet1 ------------------------------------------------------ */

void qh_scope_stats(int scope, const qh_matd *W, size_t c0, size_t nc, size_t gi, double *mean,
                    double *absmean)
{
    size_t m = W->rows;
    double ts = 0.0, ta = 0.0;
    for (size_t r = 0; r < m; r++) {
        double s = 0.0, a = 0.0;
        for (size_t j = c0; j < c0 + nc; j++) {
            double w = QH_AT(W, r, j);
            s += w;
            a += fabs(w);
        }
        ts += s;
        ta += a;
        if (mean) mean[r + gi * m] = s / (double)nc;
        if (absmean) absmean[r + gi * m] = a / (double)nc;
    }
    if (scope != QH_SCOPE_TENSOR) return;
    double cnt = (double)m * (double)nc;
    for (size_t r = 0; r < m; r++) {
        if (mean) mean[r + gi * m] = ts / cnt;
        if (absmean) absmean[r + gi * m] = ta / cnt;
    }
}

double qh_scope_side_bits(int scope, size_t m, size_t n, size_t group)
{
    double size = scope == QH_SCOPE_TENSOR ? (double)m * (double)n
                : scope == QH_SCOPE_ROW ? (double)n : (double)group;
    return 16.0 / size;
}

int qh_scope_grid_group(int scope, int group) { return scope == QH_SCOPE_GROUP ? group : 0; }

int qh_scope_effective(int scope, int group) { return group > 0 ? QH_SCOPE_GROUP : scope; }

double qh_ternary_nominal_bits(int packing)
{
    return packing == QH_PACKING_STORED ? 2.0 : log2(3.0);
}

double qh_ternary_round(double w, double gamma)
{
    if (!(gamma > 0.0)) return 0.0;
    double q = floor(w / gamma + 0.5);
    return gamma * fmin(fmax(q, -1.0), 1.0);
}

/* ---- the driver shared with bitnet1 -------------------------------------------- */

size_t qh_scope_workspace_size(int scope, int group, double damp, size_t m, size_t n,
                               size_t stats)
{
    qh_quant_params qp = { .grid = QH_GRID_MINMAX, .group = qh_scope_grid_group(scope, group),
                           .clamp = 1, .damp = damp, .blocksize = 128 };
    size_t a = qh_gptq_workspace_size(&qp, m, n), b = qh_quant_ws_bytes(m, n, 1, 0, 0);
    size_t groups = scope == QH_SCOPE_GROUP && group > 0 ? n / (size_t)group : 1;
    return (a > b ? a : b) + qh_ws_round(stats * m * groups * sizeof(double)) + QH_WS_ALIGN;
}

int qh_scope_quantize(const qh_problem *in, qh_result *out, void *work, size_t bytes, int scope,
                      int group, int feedback, double damp, const struct qh_gptq_rounding_s *rnd)
{
    size_t m = in->W->rows, n = in->W->cols;
    qh_quant_params qp = { .grid = QH_GRID_MINMAX, .group = qh_scope_grid_group(scope, group),
                           .clamp = 1, .damp = damp, .blocksize = 128 };
    if (scope == QH_SCOPE_GROUP && n % (size_t)group != 0)
        QH_ERROR(QH_EINVAL, "%s: group = %d does not divide the %zu input columns",
                 in->name ? in->name : "layer", group, n);
    if (feedback) {
        if (!in->H)
            QH_ERROR(QH_EINVAL, "%s: feedback = 1 needs a Hessian H", in->name ? in->name : "layer");
        QH_TRY(qh_gptq_run(&qp, in, out, work, rnd));
    } else {
        qh_bump ws = { work, bytes };
        qh_layer L;
        QH_TRY(qh_quant_prepare(&qp, in, out, QH_ORDER_NATURAL, QH_NO_FACTOR, &ws, &L));
        size_t g = qp.group > 0 ? (size_t)qp.group : n;
        for (size_t gi = 0; gi < n / g; gi++) {
            rnd->fit(rnd->ctx, &L.Wp, gi * g, g, gi);
            for (size_t k = gi * g; k < (gi + 1) * g; k++)
                for (size_t r = 0; r < m; r++)
                    QH_AT(&L.Wp, r, k) = rnd->round(rnd->ctx, r, gi, QH_AT(&L.Wp, r, k));
        }
        qh_quant_store(&L, &L.Wp, out);
    }
    qh_grid_free(&out->grid);        /* the scales are the row's, not a qh_grid */
    memset(&out->grid, 0, sizeof out->grid);
    out->bits_side = qh_scope_side_bits(scope, m, n, (size_t)group);
    return QH_OK;
}

/* ---- the row ------------------------------------------------------------------ */

typedef struct {
    int scope;
    size_t m;
    double *gamma;                   /* (m, n_groups) */
} ternary_ctx;

static void ternary_fit(void *ctx, const qh_matd *Wp, size_t c0, size_t nc, size_t gi)
{
    ternary_ctx *c = ctx;
    qh_scope_stats(c->scope, Wp, c0, nc, gi, NULL, c->gamma);
}

static double ternary_hook_round(void *ctx, size_t row, size_t gi, double w)
{
    const ternary_ctx *c = ctx;
    return qh_ternary_round(w, c->gamma[row + gi * c->m]);
}

static size_t ternary_workspace_size(const void *params, size_t m, size_t n)
{
    const qh_ternary_params *p = params;
    return qh_scope_workspace_size(qh_scope_effective(p->scope, p->group), p->group, p->damp, m, n, 1);
}

static int ternary_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_ternary_params *p = params;
    size_t m = in->W->rows, n = in->W->cols, bytes = ternary_workspace_size(params, m, n);
    int scope = qh_scope_effective(p->scope, p->group);
    size_t groups = p->group > 0 && n % (size_t)p->group == 0 ? n / (size_t)p->group : 1;
    size_t stats = qh_ws_round(m * groups * sizeof(double));
    ternary_ctx c = { scope, m, work };
    qh_gptq_rounding rnd = { ternary_fit, ternary_hook_round, &c };
    QH_TRY(qh_scope_quantize(in, out, (char *)work + stats, bytes - stats, scope, p->group,
                             p->feedback, p->damp, &rnd));
    out->bits_nominal = qh_ternary_nominal_bits(p->packing);
    return QH_OK;
}

/* Element-wise rounding, or GPTQ's loop with feedback. */
static double ternary_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    const qh_ternary_params *p = params;
    return p->feedback ? qh_flops_feedback((double)rows, (double)cols)
                       : qh_flops_round((double)rows, (double)cols);
}

const qh_method_type qh_method_ternary = {
    .name = "ternary",
    .display = "BitNet b1.58 (PTQ)",
    .display_order = 84,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = 0,
    .summary = "BitNet b1.58 absmean ternary {-g, 0, g}, g = mean|W| per tensor/row/group, "
               "applied post-training, optionally with GPTQ error feedback (bits = 2; "
               "log2 3 nominal packed)",
    .params = ternary_params,
    .params_size = sizeof(qh_ternary_params),
    .workspace_size = ternary_workspace_size,
    .quantize = ternary_quantize,
    .min_bits = 2,
    .max_bits = 2,
    .flops = ternary_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
