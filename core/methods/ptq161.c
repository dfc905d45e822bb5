/* ptq161.c -- PTQ1.61 in per-layer form (Zhao et al. 2025, arXiv 2502.13179;
 * reference `quantize/blockptq.py`, `models/int_llama_layer.py`; methods
 * reference §8).  See ptq161.h.
 *
 * In the processed basis:
 *   1. Statistic per input channel j (rank): sqrt(H_jj), the RMS of x_j
 *      (rms, the default), or max|x_j| over the calibration tokens (absmax,
 *      the reference code's; the paper says mean|X|) from qh_problem.x_absmax.
 *      The RMS is the default because it comes with H and weighs every token,
 *      where one outlier token decides a maximum: on opt-7m layers 1 and 3
 *      (objective layer, 16 x 128 calibration tokens) absmax gave a higher
 *      proxy on 9 of 12 layers (-1.1 % to +16.8 %); its effect on perplexity
 *      has not been measured.  The reference takes its maxima on the float model
 *      before quantizing; the pipeline's come from the inputs H is
 *      accumulated on (under `qh run` the quantized path, as for H).  The
 *      top round(salient_frac·n) columns are salient (hard-coded 20 % in the
 *      reference).  Dead inputs (the driver sets H_jj = 1) rank as RMS 1 and
 *      as max 0.
 *   2. Salient columns: salient_bits asymmetric per-row min-max grid fitted
 *      on the full row (qh_grid.h MINMAX), round to nearest, no feedback.
 *   3. Other entries, per row over the non-salient non-zero entries:
 *      μ = mean w (frozen), α = mean |w| (the reference's initialisation; not
 *      mean|w − μ| as in BiLLM); r1 = 1 (m), r2 = 1 (n);
 *      ŵ_ij = (α_i s_ij + μ_i) r1_i r2_j, s_ij = sign(w_ij − μ_i), sign(0) = +1.
 *      The signs depend on W and the frozen μ only, so they are constants of
 *      the optimisation (the reference needs no STE for the same reason).
 *   4. Adam (AdamW with weight decay 0: β = (0.9, 0.999), ε = 1e-8, bias
 *      correction), lr_alpha for α and lr_r for r1, r2, `steps` full-batch
 *      steps on ℓ = tr(ΔHΔᵀ), Δ = Ŵ − W.  Gradients (G = ∂ℓ/∂Ŵ = 2ΔH for a
 *      symmetric H; N = non-salient columns; b_ij = α_i s_ij + μ_i):
 *        ∂ℓ/∂α_i  = Σ_{j∈N} G_ij s_ij r1_i r2_j
 *        ∂ℓ/∂r1_i = Σ_{j∈N} G_ij b_ij r2_j
 *        ∂ℓ/∂r2_j = Σ_i G_ij b_ij r1_i   (j ∈ N; 0 on salient columns)
 *      The iterate with the lowest ℓ seen is kept (the exact loss comes free
 *      with G, so the result never exceeds the initial loss; the reference,
 *      with a stochastic mini-batch loss, keeps the last).
 * The reference's objective is the decoder block's output, MSE(Y_q, Y_fp) +
 * MSE(Y_q, Y_fq) − log cos terms, with all linears of a block tuned together
 * over 20 epochs of 128 windows (2560 updates, AMP).  This row optimises the
 * layer's own output MSE on the calibration inputs, E‖(Ŵ−W)x‖² = tr(ΔHΔᵀ),
 * exact and full batch; with objective = block (the default) the row's
 * block ops (end of this file: Adam on α, r1, r2 from the block's ∂ℓ/∂Ŵ) go
 * on tuning the exported state against the block output as the reference
 * does (experiments/pipeline/block_stage.h); steps = 0 starts that tuning from the
 * reference's initialisation.  The restorative-LoRA preprocessing is out of
 * scope.
 */
#include "ptq161.h"
#include "pbllm.h"
#include "qh_adam.h"
#include "qh_block_helpers.h"
#include "qh_flops.h"
#include "qh_quant.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PT_DESC(k, t, field, d, l, h, doc) { k, t, offsetof(qh_ptq161_params, field), d, l, h, NULL, doc, NULL }

static const qh_param_desc ptq161_params[] = {
    PT_DESC("salient_frac", QH_PARAM_DOUBLE, salient_frac, 0.2, 0, 1,
            "fraction of the input channels (columns) kept at salient_bits, ranked by sqrt(diag H)"),
    PT_DESC("salient_bits", QH_PARAM_INT, salient_bits, 4, 2, 8,
            "bits of the salient columns' per-row asymmetric min-max grid (full row)"),
    PT_DESC("steps", QH_PARAM_INT, steps, 200, 0, 1000000,
            "Adam steps on the exact per-layer proxy; with objective block the start of the block "
            "tuning (0: the reference's start, alpha = mean|w|, r = 1)"),
    PT_DESC("lr_alpha", QH_PARAM_DOUBLE, lr_alpha, 5e-4, 0, 1, "learning rate of alpha"),
    PT_DESC("lr_r", QH_PARAM_DOUBLE, lr_r, 1e-3, 0, 1, "learning rate of r1, r2"),
    { "objective", QH_PARAM_ENUM, offsetof(qh_ptq161_params, objective), QH_PTQ161_OBJECTIVE_BLOCK,
      0, 0, "layer|block",
      "layer: the row's proxy Adam only; block: the pipeline then tunes alpha, r1, r2 of a whole "
      "decoder block against its output (reference objective)", NULL },
    PT_DESC("epochs", QH_PARAM_INT, epochs, 20, 0, 100000,
            "block objective: Adam passes over the calibration windows, one step per window"),
    { "rank", QH_PARAM_ENUM, offsetof(qh_ptq161_params, rank), QH_PTQ161_RANK_RMS, 0, 0,
      "rms|absmax",
      "salient channels by sqrt(diag H) (rms: the RMS of x, every token counts; lower proxy on "
      "9 of 12 opt-7m layers) or by max|x| over the calibration tokens (absmax, the reference "
      "code; needs the traversal's maxima, so not with incoherence)", "absmax" },
    { 0 },
};

void qh_ptq161_bits(size_t k, int salient_bits, size_t m, size_t n, double *nominal,
                    double *side)
{
    double f = (double)k / (double)n, dm = (double)m, dn = (double)n;
    if (nominal) *nominal = f * (double)salient_bits + (1.0 - f) + 1.0 / dm;
    if (side) *side = (16.0 + (double)salient_bits) / dn + 32.0 / dn + 16.0 / dn + 16.0 / dm;
}

size_t qh_ptq161_select_columns(const qh_matd *H, double frac, uint8_t *salient, double *scratch)
{
    size_t n = H->cols;
    for (size_t j = 0; j < n; j++) scratch[j] = sqrt(fmax(QH_AT(H, j, j), 0.0));
    return qh_pbllm_select_top(scratch, n, frac, salient, scratch + n);
}

size_t qh_ptq161_select_columns_absmax(const double *x_absmax, size_t n, double frac,
                                       uint8_t *salient, double *scratch)
{
    return qh_pbllm_select_top(x_absmax, n, frac, salient, scratch);
}

static double sign_of(double x) { return x >= 0.0 ? 1.0 : -1.0; }

void qh_ptq161_reconstruct(const qh_ptq161_model *md, const double *alpha, const double *r1,
                           const double *r2, qh_matd *What)
{
    const qh_matd *W = md->W;
    for (size_t j = 0; j < W->cols; j++)
        for (size_t i = 0; i < W->rows; i++) {
            double w = QH_AT(W, i, j);
            QH_AT(What, i, j) = md->salient[j]
                ? QH_AT(md->Qsal, i, j)
                : (alpha[i] * sign_of(w - md->mu[i]) + md->mu[i]) * r1[i] * r2[j];
        }
}

void qh_ptq161_param_grad(const qh_ptq161_model *md, const double *alpha, const double *r1,
                          const double *r2, const qh_matd *G, double *g_alpha, double *g_r1,
                          double *g_r2)
{
    const qh_matd *W = md->W;
    size_t m = W->rows, n = W->cols;
    memset(g_alpha, 0, m * sizeof *g_alpha);
    memset(g_r1, 0, m * sizeof *g_r1);
    for (size_t j = 0; j < n; j++) {
        double acc = 0.0;
        if (!md->salient[j])
            for (size_t i = 0; i < m; i++) {
                double g = QH_AT(G, i, j), s = sign_of(QH_AT(W, i, j) - md->mu[i]);
                double b = alpha[i] * s + md->mu[i];
                g_alpha[i] += g * s * r1[i] * r2[j];
                g_r1[i] += g * b * r2[j];
                acc += g * b * r1[i];
            }
        g_r2[j] = acc;
    }
}

void qh_ptq161_loss_grad(const qh_ptq161_model *md, const double *alpha, const double *r1,
                         const double *r2, double *loss, double *g_alpha, double *g_r1,
                         double *g_r2, double *scratch)
{
    const qh_matd *W = md->W;
    size_t m = W->rows, n = W->cols;
    qh_matd D = { m, n, m, scratch, 0 }, G = { m, n, m, scratch + m * n, 0 };
    qh_ptq161_reconstruct(md, alpha, r1, r2, &D);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(&D, i, j) -= QH_AT(W, i, j);
    /* G = ∂ℓ/∂Ŵ = 2 Δ H for a symmetric H */
    qh_lin_dgemm('N', 'N', m, n, n, 2.0, D.data, m, md->H->data, md->H->ld, 0.0, G.data, m);
    double l = 0.0;
    for (size_t k = 0; k < m * n; k++) l += D.data[k] * G.data[k];
    *loss = 0.5 * l;
    qh_ptq161_param_grad(md, alpha, r1, r2, &G, g_alpha, g_r1, g_r2);
}

/* ---- the exported state ------------------------------------------------------ */

qh_ptq161_model qh_ptq161_state_model(const qh_ptq161_state *s)
{
    return (qh_ptq161_model){ s->W, NULL, s->salient, s->Qsal, s->mu };
}

void qh_ptq161_state_free(qh_ptq161_state *s)
{
    if (!s) return;
    qh_matd_free(s->W);
    qh_matd_free(s->Qsal);
    free(s->salient);
    free(s->mu);
    memset(s, 0, sizeof *s);
}

/* (Re)allocates s for m x n: one block of doubles holds μ, α, r1, r2 (4m + n),
 * the block step's gradient (2m + n) and its Adam moments (2 (2m + n)). */
static int state_reserve(qh_ptq161_state *s, size_t m, size_t n)
{
    if (s->W && s->rows == m && s->cols == n) return QH_OK;
    qh_ptq161_state_free(s);
    s->rows = m;
    s->cols = n;
    s->W = qh_matd_alloc(m, n);
    s->Qsal = qh_matd_alloc(m, n);
    s->salient = malloc(n);
    s->mu = malloc((10 * m + 4 * n) * sizeof(double));
    if (!s->W || !s->Qsal || !s->salient || !s->mu) {
        qh_ptq161_state_free(s);
        QH_ERROR(QH_ENOMEM, "ptq161 state (%zu x %zu): out of memory", m, n);
    }
    s->alpha = s->mu + m;
    s->r1 = s->alpha + m;
    s->r2 = s->r1 + m;
    s->grad = s->r2 + n;
    s->moments = s->grad + 2 * m + n;
    return QH_OK;
}

static int export_state(qh_ptq161_state *s, const qh_ptq161_model *md, const double *alpha,
                        const double *r1, const double *r2)
{
    size_t m = md->W->rows, n = md->W->cols;
    QH_TRY(state_reserve(s, m, n));
    for (size_t j = 0; j < n; j++) {
        memcpy(&QH_AT(s->W, 0, j), &QH_AT(md->W, 0, j), m * sizeof(double));
        memcpy(&QH_AT(s->Qsal, 0, j), &QH_AT(md->Qsal, 0, j), m * sizeof(double));
    }
    memcpy(s->salient, md->salient, n);
    memcpy(s->mu, md->mu, m * sizeof(double));
    memcpy(s->alpha, alpha, m * sizeof(double));
    memcpy(s->r1, r1, m * sizeof(double));
    memcpy(s->r2, r2, n * sizeof(double));
    return QH_OK;
}

/* ---- the optimiser ---------------------------------------------------------- */

typedef struct {
    double *alpha, *r1, *r2;         /* current (m, m, n) */
    double *best_alpha, *best_r1, *best_r2;
    double *ga, *g1, *g2;            /* gradients */
    qh_adam_moments ma, m1, m2;
    double *scratch;                 /* 2 m n */
} pt_state;

static void keep_best(pt_state *s, size_t m, size_t n)
{
    memcpy(s->best_alpha, s->alpha, m * sizeof(double));
    memcpy(s->best_r1, s->r1, m * sizeof(double));
    memcpy(s->best_r2, s->r2, n * sizeof(double));
}

/* Adam on (α, r1, r2); leaves the best iterate in s->best_*. */
static void optimise(const qh_ptq161_params *p, const qh_ptq161_model *md, pt_state *s)
{
    size_t m = md->W->rows, n = md->W->cols;
    double best = INFINITY, loss = 0.0;
    keep_best(s, m, n);
    for (int t = 0; t <= p->steps; t++) {
        qh_ptq161_loss_grad(md, s->alpha, s->r1, s->r2, &loss, s->ga, s->g1, s->g2, s->scratch);
        if (loss < best) { best = loss; keep_best(s, m, n); }
        if (t == p->steps || !isfinite(loss)) break;
        qh_adam_step(s->alpha, s->ga, &s->ma, m, p->lr_alpha, t + 1);
        qh_adam_step(s->r1, s->g1, &s->m1, m, p->lr_r, t + 1);
        qh_adam_step(s->r2, s->g2, &s->m2, n, p->lr_r, t + 1);
    }
}

/* μ = mean w, α = mean |w| of row i over the non-salient non-zero entries. */
static void init_rows(const qh_matd *W, const uint8_t *salient, double *mu, double *alpha)
{
    size_t m = W->rows, n = W->cols;
    for (size_t i = 0; i < m; i++) {
        double s = 0.0, a = 0.0;
        size_t c = 0;
        for (size_t j = 0; j < n; j++) {
            double w = QH_AT(W, i, j);
            if (salient[j] || w == 0.0) continue;
            s += w;
            a += fabs(w);
            c++;
        }
        mu[i] = c ? s / (double)c : 0.0;
        alpha[i] = c ? a / (double)c : 0.0;
    }
}

static size_t bytes_as_doubles(size_t bytes) { return (bytes + sizeof(double) - 1) / sizeof(double); }

/* The objective tr(ΔHΔᵀ) is bounded below only for a PSD H: refuse an H
 * whose Cholesky factorisation fails even with 1 % relative damping (the
 * damped copy, in the n x n scratch C, is used for this check only). */
static int check_psd(const qh_matd *H, qh_matd *C)
{
    size_t n = H->cols;
    double lam = 0.01 * qh_mean_diag(H);
    for (size_t j = 0; j < n; j++) {
        memcpy(&QH_AT(C, 0, j), &QH_AT(H, 0, j), (j + 1) * sizeof(double));
        QH_AT(C, j, j) += lam;
    }
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, C->data, (lapack_int)C->ld);
    if (info != 0)
        QH_ERROR(QH_ENOTPD, "H (%zu x %zu) is not positive definite even with 1%% damping "
                 "(Cholesky fails at column %d); ptq161's objective needs a PSD H", n, n, (int)info);
    return QH_OK;
}

/* Qsal + 2 m n scratch; the PSD check's n x n copy; vectors: μ, α, r1 and their best, grads, moments
 * (11 m + 8 n), selection scratch 2n, the column mask; rounding slack. */
static size_t ptq161_workspace_size(const void *params, size_t m, size_t n)
{
    (void)params;
    return qh_quant_ws_bytes(m, n, 3, 1, 11 * m + 10 * n + bytes_as_doubles(n) + 24 * 8);
}

static void fill_layout(qh_result *out, size_t n)
{
    for (size_t k = 0; k < n; k++) out->col_order[k] = k;
    out->order = "natural";
}

/* Step 1: the salient columns by the statistic `rank` asks for. */
static int select_salient(const qh_ptq161_params *p, const qh_problem *in, const qh_matd *H,
                          uint8_t *salient, double *scratch, size_t *k)
{
    if (p->rank == QH_PTQ161_RANK_RMS) {
        *k = qh_ptq161_select_columns(H, p->salient_frac, salient, scratch);
        return QH_OK;
    }
    if (!in->x_absmax)
        QH_ERROR(QH_EINVAL, "%s: ptq161 rank \"absmax\" needs the per-input-channel maxima "
                 "max|x| of the calibration inputs, and none were given (the sequential "
                 "traversal of `qh run` and `qh layer --model` collects them; there are none "
                 "for a synthetic matrix or under incoherence processing); use rank \"rms\"",
                 in->name ? in->name : "layer");
    *k = qh_ptq161_select_columns_absmax(in->x_absmax, H->cols, p->salient_frac, salient, scratch);
    return QH_OK;
}

static int ptq161_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_ptq161_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    if (in->bits != 1)
        QH_ERROR(QH_EINVAL, "ptq161 takes bits = 1 (got bits = %d); its width is fixed by "
                 "salient_frac and salient_bits", in->bits);
    if (!in->H) QH_ERROR(QH_EINVAL, "ptq161 needs a Hessian H");
    qh_bump ws = { work, ptq161_workspace_size(params, m, n) };
    if (in->H != out->H_proc)
        for (size_t j = 0; j < n; j++) memcpy(&QH_AT(out->H_proc, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
    qh_symmetrize_upper(out->H_proc);
    fill_layout(out, n);
    qh_matd C = qh_ws_mat(&ws, n, n);
    QH_TRY(check_psd(out->H_proc, &C));

    uint8_t *salient = (uint8_t *)(void *)qh_ws_take(&ws, bytes_as_doubles(n));
    size_t k = 0;
    QH_TRY(select_salient(p, in, out->H_proc, salient, qh_ws_take(&ws, 2 * n), &k));
    QH_TRY(qh_grid_init(&out->grid, QH_GRID_MINMAX, p->salient_bits, 1, 1.0, m, n, 0));
    qh_grid_fit(&out->grid, in->W, 0, n, 0);
    qh_matd Qsal = qh_ws_mat(&ws, m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; salient[j] && i < m; i++)
            QH_AT(&Qsal, i, j) = qh_grid_round(&out->grid, i, 0, QH_AT(in->W, i, j), 0.5);

    double *mu = qh_ws_take(&ws, m);
    pt_state s = { qh_ws_take(&ws, m), qh_ws_take(&ws, m), qh_ws_take(&ws, n),
                   qh_ws_take(&ws, m), qh_ws_take(&ws, m), qh_ws_take(&ws, n),
                   qh_ws_take(&ws, m), qh_ws_take(&ws, m), qh_ws_take(&ws, n),
                   { qh_ws_take(&ws, m), qh_ws_take(&ws, m) }, { qh_ws_take(&ws, m), qh_ws_take(&ws, m) },
                   { qh_ws_take(&ws, n), qh_ws_take(&ws, n) }, qh_ws_take(&ws, 2 * m * n) };
    init_rows(in->W, salient, mu, s.alpha);
    for (size_t i = 0; i < m; i++) s.r1[i] = 1.0;
    for (size_t j = 0; j < n; j++) s.r2[j] = 1.0;
    qh_ptq161_model md = { in->W, out->H_proc, salient, &Qsal, mu };
    optimise(p, &md, &s);
    qh_ptq161_reconstruct(&md, s.best_alpha, s.best_r1, s.best_r2, out->What_proc);
    if (in->state_out) QH_TRY(export_state(in->state_out, &md, s.best_alpha, s.best_r1, s.best_r2));
    qh_ptq161_bits(k, p->salient_bits, m, n, &out->bits_nominal, &out->bits_side);
    return QH_OK;
}

/* ---- the block stage (qh_block_ops) ------------------------------------------ */

static int block_wants(const void *params)
{
    return ((const qh_ptq161_params *)params)->objective == QH_PTQ161_OBJECTIVE_BLOCK;
}

/* The reference's loop: `epochs` passes over the windows in calibration
 * order, one Adam step per window, PTQ1.61's loss, the last iterate kept. */
static void block_plan(const void *params, size_t nsamples, qh_block_plan *out)
{
    const qh_ptq161_params *p = params;
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_PTQ161, .steps = (long)p->epochs * (long)nsamples,
                            .batch = 1, .draw = QH_BLOCK_DRAW_SEQUENTIAL };
}

static void reconstruct_state(const qh_ptq161_state *s, qh_matd *What)
{
    qh_ptq161_model md = qh_ptq161_state_model(s);
    qh_ptq161_reconstruct(&md, s->alpha, s->r1, s->r2, What);
}

QH_BLOCK_STATE_OPS(block, qh_ptq161_state, qh_ptq161_state_free, s->W, s->rows, s->cols,
                   reconstruct_state)

/* One Adam step of (α, r1, r2) from G = ∂ℓ/∂Ŵ; μ, the signs and the salient
 * columns stay fixed. */
static int block_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    const qh_ptq161_params *p = params;
    qh_ptq161_state *s = state;
    size_t m = s->rows, n = s->cols;
    double *ga = s->grad, *g1 = ga + m, *g2 = g1 + m;
    qh_ptq161_model md = qh_ptq161_state_model(s);
    qh_ptq161_param_grad(&md, s->alpha, s->r1, s->r2, G, ga, g1, g2);
    qh_adam_vector v[] = { { s->alpha, ga, m, p->lr_alpha }, { s->r1, g1, m, p->lr_r },
                           { s->r2, g2, n, p->lr_r } };
    qh_block_adam_step(v, 3, s->moments, step_no, QH_ADAM_BETA1, QH_ADAM_BETA2);
    return QH_OK;
}

static const qh_block_ops ptq161_block_ops = {
    .setting = "objective \"block\"",
    .wants = block_wants,
    .plan = block_plan,
    QH_BLOCK_STATE_FIELDS(block),
    .step = block_step,
};

/* The feedback start, then `steps` Adam steps on the proxy, each one
 * gradient (Ŵ − W) H; the block stage is counted by the estimate from the plan. */
static double ptq161_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    return qh_flops_feedback_then((double)rows, (double)cols,
                                  ((const qh_ptq161_params *)params)->steps);
}

const qh_method_type qh_method_ptq161 = {
    .name = "ptq161",
    .display = "PTQ1.61",
    .display_order = 110,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN,
    .summary = "PTQ1.61: top 20% input channels (sqrt diag H) on a 4-bit row grid, the rest "
               "binarized with Adam-optimised alpha, r1, r2 on the layer proxy, then in sweeps on "
               "the decoder block output (objective=block); bits must be 1",
    .params = ptq161_params,
    .params_size = sizeof(qh_ptq161_params),
    .workspace_size = ptq161_workspace_size,
    .quantize = ptq161_quantize,
    .min_bits = 1,
    .max_bits = 1,
    .block = &ptq161_block_ops,
    .flops = ptq161_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
