/* onebit.c -- OneBit (Xu et al. 2024, arXiv 2402.11295), in the block-wise
 * form a post-training harness can offer:
 *   1. SVID (sign-value-independent decomposition): S = sign(W) (sign(0) =
 *      +1), |W| ≈ a bᵀ by its best rank-1 approximation (init svd: LAPACK
 *      dgesvd, the paper's choice; init als: alternating least squares, i.e.
 *      power iteration from the row means, als_iters rounds); a and b are
 *      balanced to equal norms.  Ŵ = diag(a)·S·diag(b).
 *   2. With objective block (the default) the block stage tunes a and b of
 *      every linear of a decoder block together by Adam (core/qh_adam.h, lr)
 *      on the MSE between the quantized block's output and the float block's
 *      output on the float path (QH_BLOCK_LOSS_MSE), `epochs` passes over the
 *      calibration windows, one window per step, the last iterate kept; S
 *      stays frozen, as in the paper.  Gradients: ∂/∂a_i = Σ_j G_ij S_ij b_j,
 *      ∂/∂b_j = Σ_i G_ij S_ij a_i.
 * Deviation (documented): the paper distils the whole model (knowledge
 * distillation on logits and hidden states, many thousands of steps, all
 * parameters of the value vectors and the FP16 layers trainable); this row
 * trains block by block on the block output only: a block-wise approximation
 * of OneBit's quantization-aware distillation.  Defaults epochs 2, lr 1e-3:
 * chosen so a sweep cell on opt-7m stays at about a minute; a and b are
 * O(0.1), so one Adam step moves them by about 1 %.
 * Bits: 1 nominal (the sign), side 16(m + n)/(m n) (FP16 a, b).  bits = 1.
 */
#include "onebit.h"
#include "qh_adam.h"
#include "qh_block_helpers.h"
#include "qh_flops.h"
#include "qh_quant.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define OP(k, t, f, d, l, h, ch, doc) { k, t, offsetof(qh_onebit_params, f), d, l, h, ch, doc, NULL }
static const qh_param_desc onebit_params[] = {
    OP("init", QH_PARAM_ENUM, init, QH_ONEBIT_INIT_SVD, 0, 0, "svd|als",
       "rank-1 factors of |W| by SVD (LAPACK, the paper) or alternating least squares"),
    OP("als_iters", QH_PARAM_INT, als_iters, 30, 1, 100000, NULL, "ALS rounds (init als)"),
    OP("objective", QH_PARAM_ENUM, objective, QH_ONEBIT_OBJECTIVE_BLOCK, 0, 0, "layer|block",
       "layer: SVID only; block: a, b of each decoder block then tuned by Adam on the block "
       "output MSE (a block-wise stand-in for the paper's whole-model distillation)"),
    OP("epochs", QH_PARAM_INT, epochs, 2, 0, 100000, NULL,
       "block objective: passes over the calibration windows, one Adam step per window"),
    OP("lr", QH_PARAM_DOUBLE, lr, 1e-3, 0, 1, NULL, "block objective: Adam learning rate of a, b"),
    { 0 },
};

static double sign_of(double x) { return x >= 0.0 ? 1.0 : -1.0; }

static double norm2(const double *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s);
}

static void balance(double *a, size_t m, double *b, size_t n)
{
    double na = norm2(a, m), nb = norm2(b, n);
    if (!(na > 0.0) || !(nb > 0.0)) return;
    double t = sqrt(nb / na);
    for (size_t i = 0; i < m; i++) a[i] *= t;
    for (size_t j = 0; j < n; j++) b[j] /= t;
}

int qh_onebit_factors(const qh_matd *W, int init, int iters, double *a, double *b)
{
    size_t m = W->rows, n = W->cols;
    if (init == QH_ONEBIT_INIT_ALS) {
        for (size_t i = 0; i < m; i++) {
            double s = 0.0;
            for (size_t j = 0; j < n; j++) s += fabs(QH_AT(W, i, j));
            a[i] = s / (double)n;
        }
        for (int it = 0; it < iters; it++) {
            double aa = 0.0, bb = 0.0;
            for (size_t i = 0; i < m; i++) aa += a[i] * a[i];
            for (size_t j = 0; j < n; j++) {
                double s = 0.0;
                for (size_t i = 0; i < m; i++) s += fabs(QH_AT(W, i, j)) * a[i];
                b[j] = aa > 0.0 ? s / aa : 0.0;
                bb += b[j] * b[j];
            }
            for (size_t i = 0; i < m; i++) {
                double s = 0.0;
                for (size_t j = 0; j < n; j++) s += fabs(QH_AT(W, i, j)) * b[j];
                a[i] = bb > 0.0 ? s / bb : 0.0;
            }
        }
        balance(a, m, b, n);
        return QH_OK;
    }
    size_t k = m < n ? m : n;
    double *A = malloc((m * n + m * k + k * n + k + k) * sizeof *A);
    if (!A) QH_ERROR(QH_ENOMEM, "onebit SVD of %zu x %zu: out of memory", m, n);
    double *U = A + m * n, *VT = U + m * k, *S = VT + k * n, *sup = S + k;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) A[i + j * m] = fabs(QH_AT(W, i, j));
    lapack_int info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', (lapack_int)m, (lapack_int)n, A,
                                     (lapack_int)m, S, U, (lapack_int)m, VT, (lapack_int)k, sup);
    if (info != 0) {
        free(A);
        QH_ERROR(QH_ENOTPD, "onebit: SVD of |W| (%zu x %zu) failed (info %d); try init \"als\"",
                 m, n, (int)info);
    }
    double r = sqrt(S[0]);
    for (size_t i = 0; i < m; i++) a[i] = r * fabs(U[i]);
    for (size_t j = 0; j < n; j++) b[j] = r * fabs(VT[j * k]);
    free(A);
    return QH_OK;
}

void qh_onebit_reconstruct(const qh_onebit_state *s, qh_matd *What)
{
    size_t m = s->rows;
    for (size_t j = 0; j < s->cols; j++)
        for (size_t i = 0; i < m; i++)
            QH_AT(What, i, j) = s->a[i] * (double)s->sign[i + j * m] * s->b[j];
}

void qh_onebit_param_grad(const qh_onebit_state *s, const qh_matd *G, double *ga, double *gb)
{
    size_t m = s->rows;
    memset(ga, 0, m * sizeof *ga);
    for (size_t j = 0; j < s->cols; j++) {
        double acc = 0.0;
        for (size_t i = 0; i < m; i++) {
            double gs = QH_AT(G, i, j) * (double)s->sign[i + j * m];
            ga[i] += gs * s->b[j];
            acc += gs * s->a[i];
        }
        gb[j] = acc;
    }
}

void qh_onebit_state_free(qh_onebit_state *s)
{
    if (!s) return;
    free(s->sign);
    free(s->a);
    memset(s, 0, sizeof *s);
}

static int state_reserve(qh_onebit_state *s, size_t m, size_t n)
{
    if (s->sign && s->rows == m && s->cols == n) return QH_OK;
    qh_onebit_state_free(s);
    s->sign = malloc(m * n);
    s->a = malloc(4 * (m + n) * sizeof(double));
    if (!s->sign || !s->a) {
        qh_onebit_state_free(s);
        QH_ERROR(QH_ENOMEM, "onebit state (%zu x %zu): out of memory", m, n);
    }
    s->rows = m;
    s->cols = n;
    s->b = s->a + m;
    s->grad = s->b + n;
    s->moments = s->grad + m + n;
    return QH_OK;
}

static size_t onebit_workspace_size(const void *params, size_t m, size_t n)
{
    (void)params;
    return qh_quant_ws_bytes(m, n, 0, 0, 0);
}

static int onebit_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    (void)work;
    const qh_onebit_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    if (in->bits != 1)
        QH_ERROR(QH_EINVAL, "%s: onebit takes bits = 1 (got %d)", in->name ? in->name : "layer",
                 in->bits);
    qh_onebit_state local = { 0 }, *s = in->state_out ? in->state_out : &local;
    QH_TRY(state_reserve(s, m, n));
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) s->sign[i + j * m] = (int8_t)sign_of(QH_AT(in->W, i, j));
    int st = qh_onebit_factors(in->W, p->init, p->als_iters, s->a, s->b);
    if (st == QH_OK) {
        qh_onebit_reconstruct(s, out->What_proc);
        if (in->H && in->H != out->H_proc)
            for (size_t j = 0; j < n; j++)
                memcpy(&QH_AT(out->H_proc, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
        for (size_t k = 0; k < n; k++) out->col_order[k] = k;
        out->order = "natural";
        out->bits_nominal = 1.0;
        out->bits_side = 16.0 * (double)(m + n) / ((double)m * (double)n);
    }
    if (s == &local) qh_onebit_state_free(&local);
    return st;
}

/* ---- the block stage ---------------------------------------------------------- */

static int block_wants(const void *params)
{
    return ((const qh_onebit_params *)params)->objective == QH_ONEBIT_OBJECTIVE_BLOCK;
}

static void block_plan(const void *params, size_t nsamples, qh_block_plan *out)
{
    const qh_onebit_params *p = params;
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_MSE, .steps = (long)p->epochs * (long)nsamples,
                            .batch = 1, .draw = QH_BLOCK_DRAW_SEQUENTIAL };
}

QH_BLOCK_STATE_OPS(block, qh_onebit_state, qh_onebit_state_free, s->sign, s->rows, s->cols,
                   qh_onebit_reconstruct)

static int block_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    const qh_onebit_params *p = params;
    qh_onebit_state *s = state;
    size_t m = s->rows, n = s->cols;
    qh_onebit_param_grad(s, G, s->grad, s->grad + m);
    qh_adam_vector v[] = { { s->a, s->grad, m, p->lr }, { s->b, s->grad + m, n, p->lr } };
    qh_block_adam_step(v, 2, s->moments, step_no, QH_ADAM_BETA1, QH_ADAM_BETA2);
    return QH_OK;
}

static const qh_block_ops onebit_block_ops = {
    .setting = "objective \"block\"",
    .wants = block_wants,
    .plan = block_plan,
    QH_BLOCK_STATE_FIELDS(block),
    .step = block_step,
};

/* The rank-1 factors of |W| (`als_iters` ALS rounds of 4 m n) and the sign
 * rounding; the block stage is counted by the estimate from the plan. */
static double onebit_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    const qh_onebit_params *p = params;
    double m = (double)rows, n = (double)cols;
    return p->als_iters * 4 * m * n + qh_flops_round(m, n);
}

const qh_method_type qh_method_onebit = {
    .name = "onebit",
    .display = "OneBit (block)",
    .display_order = 88,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = 0,
    .summary = "OneBit: W ~ diag(a) sign(W) diag(b), a b^T the rank-1 SVD (or ALS) of |W|, "
               "then a, b tuned by Adam on the block output MSE (objective=block); bits = 1",
    .params = onebit_params,
    .params_size = sizeof(qh_onebit_params),
    .workspace_size = onebit_workspace_size,
    .quantize = onebit_quantize,
    .min_bits = 1,
    .max_bits = 1,
    .block = &onebit_block_ops,
    .flops = onebit_flops,
    .flops_efficiency = QH_FLOPS_EFF_ROUND,
};
