/* pvq.c -- PVQ-LLM-style pyramid vector quantization with GPTQ-style feedback
 * (van der Ouderaa et al. 2024, arXiv 2410.16926; methods reference §11;
 * codebook arithmetic in core/qh_pvq.c).
 *
 * In the processed basis (the driver applies the Hadamard rotation when the
 * user asks for incoherence "hadamard"), columns in natural order:
 *   1. H ← H + damp·mean(diag H)·I (raised tenfold per failed Cholesky,
 *      counted); U = upper Cholesky factor of H⁻¹ (GPTQ's Hinv, H⁻¹ = UᵀU).
 *   2. K = params.pulses, or the largest K with log₂V(D, K) + amp_bits ≤
 *      bits·D (qh_pvq_choose_k).  The index must fit 64 bits.
 *   3. Row scale s_r = ‖W̃_r‖ rounded to FP16 precision (11 significant bits;
 *      the FP16 exponent range is not enforced).  Amplitude levels a_l: square
 *      roots of the Beta(D/2, (n−D)/2) quantiles at (l + ½)/L, L = 2^amp_bits
 *      (the share of ‖row‖² in one group of an i.i.d. Gaussian row).
 *   4. For each group b of D columns (left to right), each row: w = the
 *      group of the feedback-updated row;
 *        Euclidean: y = greedy pulse search of w; ŷ = y/‖y‖; gain = the level
 *          nearest to ⟨w, ŷ⟩/s_r (⟨w, ŷ⟩ is the best gain for ŷ);
 *        Hessian (hessian_search = 1): also y' = qh_pvq_search_hessian(w,
 *          M_b, g₀) with g₀ = s_r·(level nearest to ‖w‖/s_r); each candidate
 *          gets the level nearest to its M_b-optimal gain wᵀM_bŷ/ŷᵀM_bŷ
 *          (f is quadratic in g, so the nearest level is the best level), and
 *          the candidate with the lower (w − gŷ)ᵀM_b(w − gŷ) is kept.
 *      M_b is the metric in which the group's error costs proxy loss:
 *        with feedback: M_b = (U_bbᵀU_bb)⁻¹ = U_bb⁻¹U_bb⁻ᵀ, the Schur complement
 *          of H_bb with respect to the columns after b (the block D of the
 *          block LDL of H), since later columns absorb what they can;
 *        without feedback: M_b = H_bb (the other groups stay fixed).
 *   5. Feedback (feedback = 1), GPTQ's update for a block quantized jointly:
 *      e = w − ŵ, E_b = e·U_bb⁻¹, W_later −= E_b·U[b, later]; the group's
 *      share of ℓ is ‖E_b‖².  Applied lazily: inside a panel of `blocksize`
 *      columns group by group, onto the later panels by one dgemm per panel.
 * Bits: nominal (log₂V(D, K) + amp_bits)/D (fractional: mixed-radix packing
 * of a row's indices; ⌈log₂V⌉ per group would cost up to 1/D more), side
 * 16/n per weight for the FP16 row norm.
 * Left out: activation quantization, the paper's exact amplitude coder
 * (Lloyd-Max points), act-order, storing the indices (What only).
 */
#include "pvq.h"
#include "qh_flops.h"
#include "qh_pvq.h"
#include "qh_quant.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define PVQ_MAX_AMP_BITS 8

static const qh_param_desc pvq_params[] = {
    { "group", QH_PARAM_INT, offsetof(qh_pvq_params, group), 8, 2, 256, NULL,
      "PVQ vector dimension D: consecutive columns per group (must divide n)", NULL },
    { "pulses", QH_PARAM_INT, offsetof(qh_pvq_params, pulses), 0, 0, 65536, NULL,
      "pulses K; 0 = the largest K with log2 V(D,K) + amp_bits <= bits*D", NULL },
    { "amp_bits", QH_PARAM_INT, offsetof(qh_pvq_params, amp_bits), 4, 1, PVQ_MAX_AMP_BITS, NULL,
      "bits of the per-group amplitude (levels at Beta(D/2,(n-D)/2) quantiles times the FP16 row norm)", NULL },
    { "hessian_search", QH_PARAM_BOOL, offsetof(qh_pvq_params, hessian_search), 1, 0, 1, NULL,
      "also search pulses in the group's H metric and keep the better codeword", NULL },
    { "feedback", QH_PARAM_BOOL, offsetof(qh_pvq_params, feedback), 1, 0, 1, NULL,
      "GPTQ-style error feedback from each group onto the later columns", NULL },
    { "moves", QH_PARAM_INT, offsetof(qh_pvq_params, moves), 4, 0, 1000, NULL,
      "pulse moves (remove one, add one) after the Hessian greedy fill", NULL },
    { "blocksize", QH_PARAM_INT, offsetof(qh_pvq_params, blocksize), 128, 1, 65536, NULL,
      "lazy-feedback panel in columns (rounded down to a multiple of D, at least D)", NULL },
    { "damp", QH_PARAM_DOUBLE, offsetof(qh_pvq_params, damp), 0.01, 0.0, 1.0, NULL,
      "H += damp*mean(live diag H)*I (see dead_diag); raised tenfold per failed Cholesky (counted)", NULL },
    { 0 },
};

static size_t panel_of(const qh_pvq_params *p, size_t n)
{
    size_t D = (size_t)p->group, P = (size_t)p->blocksize / D * D;
    if (P < D) P = D;
    return P < n ? P : n;
}

/* F (n x n) + Wp (m x n) + panel errors (m x P) + levels + row scales +
 * per-group matrices (3 D x D) + per-row vectors (w, q, e, y, y', scratch). */
static size_t pvq_workspace_size(const void *params, size_t m, size_t n)
{
    const qh_pvq_params *p = params;
    size_t D = (size_t)p->group;
    size_t extra = m * panel_of(p, n) + ((size_t)1 << PVQ_MAX_AMP_BITS) + m + 3 * D * D + 10 * D;
    return qh_quant_ws_bytes(m, n, 1, 1, extra) + 16 * QH_WS_ALIGN;
}

static const char *layer_name(const qh_problem *in) { return in->name ? in->name : "layer"; }

int qh_pvq_bits(const qh_pvq_params *p, int bits, size_t n, unsigned *K, double *nominal, double *side)
{
    unsigned D = (unsigned)p->group, k = (unsigned)p->pulses;
    if (p->group < 2 || n % D != 0)
        QH_ERROR(QH_EINVAL, "pvq: group dimension D = %d does not divide the number of input columns "
                 "n = %zu (PVQ quantizes D consecutive columns of a row jointly)", p->group, n);
    if (k == 0) QH_TRY(qh_pvq_choose_k(D, bits, p->amp_bits, &k));
    uint64_t count;
    QH_TRY(qh_pvq_count(D, k, &count));                    /* the index must fit 64 bits */
    if (K) *K = k;
    if (nominal) *nominal = (qh_pvq_log2_count(D, k) + p->amp_bits) / (double)D;
    if (side) *side = 16.0 / (double)n;
    return QH_OK;
}

/* x rounded to FP16 precision (11 significant bits; subnormal spacing 2⁻²⁴). */
static double round_fp16(double x)
{
    if (!(x > 0.0)) return 0.0;
    int e;
    double f = frexp(x, &e);                               /* x = f·2^e, f ∈ [½, 1) */
    if (e < -13) return ldexp(round(ldexp(x, 24)), -24);
    return ldexp(round(ldexp(f, 11)), e - 11);
}

/* Ui = U⁻¹ for an upper-triangular D x D block U (leading dimension ldu). */
static void upper_inverse(const double *U, size_t ldu, size_t D, double *Ui)
{
    memset(Ui, 0, D * D * sizeof *Ui);
    for (size_t j = 0; j < D; j++) {                       /* column j: U x = e_j */
        for (size_t i = j + 1; i-- > 0;) {
            double s = i == j ? 1.0 : 0.0;
            for (size_t k = i + 1; k <= j; k++) s -= U[i + k * ldu] * Ui[k + j * D];
            Ui[i + j * D] = s / U[i + i * ldu];
        }
    }
}

typedef struct {
    size_t D;
    unsigned K;
    const double *levels;
    size_t L;
    int hessian, moves;
    const double *M;                 /* D x D metric of the current group */
    double *u, *q2, *scratch;        /* D, D, 2D */
    int *y, *y2;                     /* D each */
} pvq_group_ctx;

/* Gain of the codeword y for target w at row scale s: the level nearest to
 * the M-optimal gain (M = NULL: Euclidean).  Writes ŷ·gain into q; returns
 * the error (w − q)ᵀM(w − q) − wᵀMw (Euclidean: the same with M = I). */
static double fit_gain(const pvq_group_ctx *c, const double *w, const int *y, double s, const double *M,
                       double *q)
{
    size_t D = c->D;
    double yy = 0.0;
    for (size_t i = 0; i < D; i++) yy += (double)y[i] * y[i];
    double inv = 1.0 / sqrt(yy), A = 0.0, B = 0.0;
    for (size_t i = 0; i < D; i++) {
        double mi = 0.0;
        if (M) for (size_t j = 0; j < D; j++) mi += M[i + j * D] * y[j];
        else mi = y[i];
        c->u[i] = mi * inv;                                /* M ŷ */
    }
    for (size_t i = 0; i < D; i++) {
        A += w[i] * c->u[i];                               /* wᵀMŷ */
        B += y[i] * inv * c->u[i];                         /* ŷᵀMŷ */
    }
    double g = s * c->levels[qh_pvq_nearest_level(c->levels, c->L, B > 0.0 ? A / B / s : 0.0)];
    for (size_t i = 0; i < D; i++) q[i] = g * y[i] * inv;
    return g * g * B - 2.0 * g * A;
}

/* ŵ of one row's group w (D) at row scale s into q. */
static void quantize_group(const pvq_group_ctx *c, const double *w, double s, double *q)
{
    size_t D = c->D;
    if (!(s > 0.0)) {
        memset(q, 0, D * sizeof *q);
        return;
    }
    qh_pvq_search(w, (unsigned)D, c->K, c->y);
    if (!c->hessian) {
        fit_gain(c, w, c->y, s, NULL, q);
        return;
    }
    double f1 = fit_gain(c, w, c->y, s, c->M, q), nw = 0.0;
    for (size_t i = 0; i < D; i++) nw += w[i] * w[i];
    double g0 = s * c->levels[qh_pvq_nearest_level(c->levels, c->L, sqrt(nw) / s)];
    qh_pvq_search_hessian(w, c->M, D, (unsigned)D, c->K, g0, c->moves, c->y2, c->scratch);
    if (fit_gain(c, w, c->y2, s, c->M, c->q2) < f1) memcpy(q, c->q2, D * sizeof *q);
}

/* The group metric M_b (step 4) into M; Ui = U_bb⁻¹ when feedback is on. */
static void group_metric(const qh_pvq_params *p, const qh_matd *F, const qh_matd *H, size_t c0, double *M,
                         double *Ui)
{
    size_t D = (size_t)p->group;
    if (p->feedback) upper_inverse(&QH_AT(F, c0, c0), F->ld, D, Ui);
    if (!p->hessian_search) return;
    for (size_t j = 0; j < D; j++)
        for (size_t i = 0; i < D; i++) {
            double s = 0.0;
            if (p->feedback)
                for (size_t k = (i > j ? i : j); k < D; k++) s += Ui[i + k * D] * Ui[j + k * D];
            else
                s = QH_AT(H, c0 + i, c0 + j);
            M[i + j * D] = s;
        }
}

typedef struct {
    const qh_pvq_params *p;
    pvq_group_ctx g;
    qh_matd Wp, F, Ep;
    const double *scale;
    double *M, *Ui, *w, *q;
} pvq_run;

/* Quantizes group c0 of every row (panel starting at p0), writing codes into
 * out->What_proc and, with feedback, E_b into Ep. */
static void quantize_columns(pvq_run *R, size_t c0, size_t p0, qh_result *out)
{
    size_t D = R->g.D, m = R->Wp.rows;
    group_metric(R->p, &R->F, out->H_proc, c0, R->M, R->Ui);
    for (size_t r = 0; r < m; r++) {
        for (size_t i = 0; i < D; i++) R->w[i] = QH_AT(&R->Wp, r, c0 + i);
        quantize_group(&R->g, R->w, R->scale[r], R->q);
        for (size_t i = 0; i < D; i++) QH_AT(out->What_proc, r, c0 + i) = R->q[i];
        if (!R->p->feedback) continue;
        for (size_t j = 0; j < D; j++) {                   /* E_b = e·U_bb⁻¹ */
            double s = 0.0;
            for (size_t i = 0; i <= j; i++) s += (R->w[i] - R->q[i]) * R->Ui[i + j * D];
            QH_AT(&R->Ep, r, c0 - p0 + j) = s;
        }
    }
}

static void run_groups(pvq_run *R, qh_result *out)
{
    size_t m = R->Wp.rows, n = R->Wp.cols, D = R->g.D, P = R->Ep.cols;
    for (size_t p0 = 0; p0 < n; p0 += P) {
        size_t p1 = p0 + P < n ? p0 + P : n;
        for (size_t c0 = p0; c0 < p1; c0 += D) {
            quantize_columns(R, c0, p0, out);
            if (R->p->feedback && c0 + D < p1)        /* W[:, c0+D:p1] −= E_b U[b, c0+D:p1] */
                qh_lin_dgemm('N', 'N', m, p1 - c0 - D, D, -1.0, &QH_AT(&R->Ep, 0, c0 - p0), R->Ep.ld,
                             &QH_AT(&R->F, c0, c0 + D), R->F.ld, 1.0, &QH_AT(&R->Wp, 0, c0 + D), R->Wp.ld);
        }
        if (R->p->feedback && p1 < n)                 /* W[:, p1:] −= E_panel U[panel, p1:] */
            qh_lin_dgemm('N', 'N', m, n - p1, p1 - p0, -1.0, R->Ep.data, R->Ep.ld, &QH_AT(&R->F, p0, p1),
                         R->F.ld, 1.0, &QH_AT(&R->Wp, 0, p1), R->Wp.ld);
    }
}

static void fill_layout(qh_result *out, size_t n)
{
    for (size_t k = 0; k < n; k++) out->col_order[k] = k;
    out->order = "natural";
}

static int pvq_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_pvq_params *p = params;
    size_t m = in->W->rows, n = in->W->cols, D = (size_t)p->group;
    unsigned K;
    double nominal, side;
    QH_TRY(qh_pvq_bits(p, in->bits, n, &K, &nominal, &side));
    if (!in->H) QH_ERROR(QH_EINVAL, "%s: pvq needs a Hessian H", layer_name(in));
    qh_bump ws = { work, pvq_workspace_size(params, m, n) };
    pvq_run R = { .p = p };

    /* Step 1: damped H in out->H_proc, U = chol(H⁻¹) upper. */
    if (in->H != out->H_proc)
        for (size_t j = 0; j < n; j++) memcpy(&QH_AT(out->H_proc, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
    R.F = qh_ws_mat(&ws, n, n);
    QH_TRY(qh_factor_damped(out->H_proc, p->damp, QH_FACTOR_HINV_UPPER, &R.F, NULL, &out->n_damp_retries,
                            &out->damp_used));
    fill_layout(out, n);

    /* Step 3: row scales (kept in the result) and amplitude levels. */
    size_t L = (size_t)1 << p->amp_bits;
    double *levels = qh_ws_take(&ws, L), *scale = qh_ws_take(&ws, m);
    QH_TRY(qh_pvq_amp_levels((unsigned)D, n, p->amp_bits, levels));
    if (!(out->row_scale = malloc(m * sizeof *out->row_scale)))
        QH_ERROR(QH_ENOMEM, "%s: row scales of %zu rows", layer_name(in), m);
    for (size_t r = 0; r < m; r++) {
        double ss = 0.0;
        for (size_t j = 0; j < n; j++) ss += QH_AT(in->W, r, j) * QH_AT(in->W, r, j);
        scale[r] = out->row_scale[r] = round_fp16(sqrt(ss));
    }

    /* Steps 4-5. */
    R.Wp = qh_ws_mat(&ws, m, n);
    for (size_t j = 0; j < n; j++) memcpy(&QH_AT(&R.Wp, 0, j), &QH_AT(in->W, 0, j), m * sizeof(double));
    size_t P = panel_of(p, n);
    R.Ep = (qh_matd){ m, P, m, qh_ws_take(&ws, m * P), 0 };
    R.scale = scale;
    R.M = qh_ws_take(&ws, D * D);
    R.Ui = qh_ws_take(&ws, D * D);
    R.w = qh_ws_take(&ws, D);
    R.q = qh_ws_take(&ws, D);
    R.g = (pvq_group_ctx){ D, K, levels, L, p->hessian_search, p->moves, R.M, qh_ws_take(&ws, D),
                           qh_ws_take(&ws, D), qh_ws_take(&ws, 2 * D), (int *)(void *)qh_ws_take(&ws, D),
                           (int *)(void *)qh_ws_take(&ws, D) };
    run_groups(&R, out);
    out->bits_nominal = nominal;           /* the driver keeps both (they are > 0) */
    out->bits_side = side;
    return QH_OK;
}

const qh_method_type qh_method_pvq = {
    .name = "pvq",
    .display = "PVQ",
    .display_order = 70,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN,
    .summary = "PVQ-LLM: pyramid VQ of D-groups (direction) + Beta-quantile amplitude, GPTQ-style "
               "feedback, Hessian-aware pulse search; use with incoherence hadamard",
    .params = pvq_params,
    .params_size = sizeof(qh_pvq_params),
    .workspace_size = pvq_workspace_size,
    .quantize = pvq_quantize,
    .flops = qh_flops_row_feedback_searched,   /* the pyramid search is not counted */
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
