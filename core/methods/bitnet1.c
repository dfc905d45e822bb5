/* bitnet1.c -- BitNet's 1-bit quantizer, post-training (Wang et al. 2023,
 * arXiv 2310.11453, eq. 1-3): W̃ = Sign(W − α), α = mean W, and the output
 * rescaled by β = ‖W‖₁/(nm), so Ŵ = β·sign(W − α) ∈ {−β, β}.
 *
 * The paper trains with it from scratch (per tensor); here it is applied to
 * trained weights once.  Parameters as the ternary row's (ternary.c, whose
 * driver qh_scope_quantize this row shares): scope tensor (the paper) | row,
 * group 0 or g (one α, β per row and group of g columns); feedback 0 (the paper's quantizer) | 1 (GPTQ's column loop with
 * error feedback under H, α and β from W before feedback, or at each group
 * start from the updated weights); damp.  β = mean |W| as in the paper (not
 * the least-squares scale mean |W − α|·...); sign(0) = +1.
 * Bits: 1 nominal; side one FP16 β per scope.  The row takes bits = 1.
 */
#include "bitnet1.h"
#include "gptq.h"
#include "qh_flops.h"
#include "qh_quant.h"
#include "ternary.h"

#include <stddef.h>

#define BP(k, t, f, d, l, h, ch, doc) { k, t, offsetof(qh_bitnet1_params, f), d, l, h, ch, doc, NULL }
static const qh_param_desc bitnet1_params[] = {
    BP("scope", QH_PARAM_ENUM, scope, QH_SCOPE_TENSOR, 0, 0, "tensor|row",
       "one (alpha, beta) = (mean W, mean|W|) per tensor (BitNet) or per output row (group > 0: per group)"),
    BP("group", QH_PARAM_INT, group, 0, 0, 1 << 20, NULL,
       "0: the scope's one (alpha, beta); g > 0: one per row and group of g columns (must divide n)"),
    BP("feedback", QH_PARAM_BOOL, feedback, 0, 0, 1, NULL,
       "0: sign of every weight independently (the paper); 1: GPTQ column loop with error "
       "feedback under H"),
    BP("damp", QH_PARAM_DOUBLE, damp, 0.01, 0, 1, NULL,
       "feedback: H += damp*mean(live diag H)*I (raised tenfold per failed Cholesky)"),
    { 0 },
};

double qh_bitnet1_round(double w, double alpha, double beta)
{
    return w - alpha >= 0.0 ? beta : -beta;
}

typedef struct {
    int scope;
    size_t m;
    double *alpha, *beta;            /* (m, n_groups) each */
} bitnet1_ctx;

static void bitnet1_fit(void *ctx, const qh_matd *Wp, size_t c0, size_t nc, size_t gi)
{
    bitnet1_ctx *c = ctx;
    qh_scope_stats(c->scope, Wp, c0, nc, gi, c->alpha, c->beta);
}

static double bitnet1_hook_round(void *ctx, size_t row, size_t gi, double w)
{
    const bitnet1_ctx *c = ctx;
    size_t k = row + gi * c->m;
    return qh_bitnet1_round(w, c->alpha[k], c->beta[k]);
}

static size_t bitnet1_workspace_size(const void *params, size_t m, size_t n)
{
    const qh_bitnet1_params *p = params;
    return qh_scope_workspace_size(qh_scope_effective(p->scope, p->group), p->group, p->damp, m, n, 2);
}

static int bitnet1_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_bitnet1_params *p = params;
    size_t m = in->W->rows, n = in->W->cols, bytes = bitnet1_workspace_size(params, m, n);
    int scope = qh_scope_effective(p->scope, p->group);
    size_t groups = p->group > 0 && n % (size_t)p->group == 0 ? n / (size_t)p->group : 1;
    size_t stats = qh_ws_round(m * groups * sizeof(double));
    bitnet1_ctx c = { scope, m, work, (double *)(void *)((char *)work + stats) };
    qh_gptq_rounding rnd = { bitnet1_fit, bitnet1_hook_round, &c };
    QH_TRY(qh_scope_quantize(in, out, (char *)work + 2 * stats, bytes - 2 * stats, scope,
                             p->group, p->feedback, p->damp, &rnd));
    out->bits_nominal = 1.0;
    return QH_OK;
}

/* As ternary's: element-wise, or GPTQ's loop with feedback. */
static double bitnet1_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    const qh_bitnet1_params *p = params;
    return p->feedback ? qh_flops_feedback((double)rows, (double)cols)
                       : qh_flops_round((double)rows, (double)cols);
}

const qh_method_type qh_method_bitnet1 = {
    .name = "bitnet1",
    .display = "BitNet (PTQ)",
    .display_order = 82,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = 0,
    .summary = "BitNet 1-bit mean|W|*sign(W - mean W) per tensor/row/group, applied "
               "post-training, optionally with GPTQ error feedback (bits = 1)",
    .params = bitnet1_params,
    .params_size = sizeof(qh_bitnet1_params),
    .workspace_size = bitnet1_workspace_size,
    .quantize = bitnet1_quantize,
    .min_bits = 1,
    .max_bits = 1,
    .flops = bitnet1_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
