/* quipsharp.c -- QuIP# BlockLDLQ onto E8P / RVQ codebooks (Tseng et al. 2024,
 * arXiv 2402.04396; methods reference §5 pipeline steps 1, 3-7; codebooks in
 * core/qh_e8p.h).
 *
 * In the processed basis (the driver applies the RHT when asked):
 *   1. H ← H + damp·mean(diag H)·I (the reference's H/mean(diag H) + damp·I up
 *      to a scale that the feedback does not see); raised tenfold per failed
 *      Cholesky, counted.
 *   2. Block LDL, g = 8: H = FᵀF (F upper); for each diagonal block
 *      B_i = F[blk, blk]: F[blk, :] ← B_i⁻¹ F[blk, :], so H = Uᵀ D U with U
 *      block upper with identity diagonal blocks, D_i = B_iᵀ B_i.  (The
 *      reference's lower L = Uᵀ.)
 *   3. Wscale = RMS(W̃)/s, s = scale_override or the codebook's opt scale
 *      (1.03 at 2 bits, 0.98 at 3, 1.03 at 4; the reference README recommends
 *      0.9 for 2-bit E8P); Y = W̃/Wscale.
 *   4. BlockLDLQ, last block first: target_blk = Y_blk + Σ_{j later} E_j U[blk, j]ᵀ
 *      with E = Y − Ŷ; Ŷ_blk = Q(target) row by row (8-vectors), Q the RVQ of
 *      qh_e8p_rvq_quantize.  Then η = E Uᵀ is the per-block quantization error
 *      and ℓ = tr(η D ηᵀ)·Wscale².  The feedback is pushed lazily: within a
 *      panel of 128 columns block by block, onto the earlier panels by one
 *      dgemm per panel.
 *   5. tune_iters passes (reference `quip_tune_iters`), last block first:
 *      Ŷ_blk ← Q(Ŷ_blk + E H[:, blk] H[blk, blk]⁻¹), the unconstrained block
 *      minimiser rounded.  Not guaranteed to lower ℓ (Q is Euclidean, not in
 *      the H[blk, blk] metric).  Default 0: plain BlockLDLQ, the object of the
 *      QuIP# bound; the reference's runs use 10.
 *   6. Ŵ = Ŷ·Wscale.
 * Bits: nominal b; side 16/(mn) for the FP16 Wscale plus what the incoherence
 * state reports (seeded sign vectors are regenerated: 0 bits).
 * Left out: fine-tuning, the low-rank (lora_rank) path, fused-matrix scales,
 * the reference's packed code layout (codes are not kept in qh_result).
 */
#include "quipsharp.h"
#include "qh_blas.h"
#include "qh_e8p.h"
#include "qh_flops.h"
#include "qh_quant.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define QS_G QH_E8P_DIM                  /* block size g */
#define QS_PANEL 128                     /* lazy-feedback panel (columns) */

static const qh_param_desc quipsharp_params[] = {
    { "scale_override", QH_PARAM_DOUBLE, offsetof(qh_quipsharp_params, scale_override), 0.0, 0.0, 100.0, NULL,
      "RMS of W/Wscale; 0 = opt scale (1.03 at 2 bits, 0.98 at 3, 1.03 at 4); README recommends 0.9 at 2 bits", NULL },
    { "tune_iters", QH_PARAM_INT, offsetof(qh_quipsharp_params, tune_iters), 0, 0, 100, NULL,
      "block re-rounding passes after BlockLDLQ (reference quip_tune_iters; its runs use 10); "
      "default 0 = plain BlockLDLQ, the object of the QuIP# bound (passes may raise the proxy)",
      "10" },
    { "damp", QH_PARAM_DOUBLE, offsetof(qh_quipsharp_params, damp), 0.01, 0.0, 1.0, NULL,
      "H += damp*mean(live diag H)*I (see dead_diag); raised tenfold per failed Cholesky (counted)", NULL },
    { 0 },
};

static size_t doubles_for(size_t bytes) { return (bytes + sizeof(double) - 1) / sizeof(double); }

static size_t panel_of(size_t n) { return n < QS_PANEL ? n : QS_PANEL; }

/* Codebooks + F (n x n) + Y, A (m x n) + panel errors (m x panel) + tune
 * scratch G (m x 8) + small blocks. */
static size_t quipsharp_workspace_size(const void *params, size_t m, size_t n)
{
    (void)params;
    size_t extra = doubles_for(sizeof(qh_e8p)) + doubles_for(sizeof(qh_e81b)) + m * panel_of(n) + m * QS_G
                   + 4 * QS_G * QS_G + QS_G;
    return qh_quant_ws_bytes(m, n, 2, 1, extra) + 8 * QH_WS_ALIGN;
}

static const char *layer_name(const qh_problem *in) { return in->name ? in->name : "layer"; }

static int check_problem(const qh_problem *in)
{
    if (in->bits < 2 || in->bits > 4)
        QH_ERROR(QH_EINVAL, "%s: quipsharp bits = %d; E8P codebooks exist for 2 (E8P), 3 (E8P + E81B RVQ) "
                 "and 4 (E8P + E8P RVQ) bits", layer_name(in), in->bits);
    if (in->W->cols % QS_G != 0)
        QH_ERROR(QH_EINVAL, "%s: quipsharp needs the number of input columns n = %zu to be divisible by 8 "
                 "(E8P rounds 8-vectors of each row)", layer_name(in), in->W->cols);
    if (!in->H) QH_ERROR(QH_EINVAL, "%s: quipsharp needs a Hessian H", layer_name(in));
    return QH_OK;
}

/* F[blk, :] ← F[blk, blk]⁻¹ F[blk, :] for every 8-block (F upper Cholesky factor). */
static void block_normalize(qh_matd *F, double *B)
{
    size_t n = F->cols;
    for (size_t b0 = 0; b0 < n; b0 += QS_G) {
        for (size_t j = 0; j < QS_G; j++)
            for (size_t i = 0; i < QS_G; i++) B[i + j * QS_G] = QH_AT(F, b0 + i, b0 + j);
        qh_dtrsm('L', 'U', 'N', 'N', QS_G, n - b0, 1.0, B, QS_G, &QH_AT(F, b0, b0), F->ld);
    }
}

typedef struct {
    const qh_e8p *e8p;
    const qh_e81b *e81b;
    int bits;
} qs_codebook;

/* Rounds the 8-block at column k of every row: Ŷ = Q(Y + A) (A may be NULL),
 * E = Y − Ŷ written at column ek of Emat (may be NULL). */
static void round_block(const qs_codebook *cb, const qh_matd *Y, const qh_matd *A, size_t k, qh_matd *Q,
                        qh_matd *Emat, size_t ek)
{
    for (size_t r = 0; r < Y->rows; r++) {
        double x[QS_G], q[QS_G];
        for (size_t i = 0; i < QS_G; i++) x[i] = QH_AT(Y, r, k + i) + (A ? QH_AT(A, r, k + i) : 0.0);
        int st = qh_e8p_rvq_quantize(cb->e8p, cb->e81b, cb->bits, x, q);
        QH_ASSERT(st == QH_OK);                         /* bits checked before */
        for (size_t i = 0; i < QS_G; i++) {
            QH_AT(Q, r, k + i) = q[i];
            if (Emat) QH_AT(Emat, r, ek + i) = QH_AT(Y, r, k + i) - q[i];
        }
    }
}

/* BlockLDLQ (step 4): Y, Q, A m x n; U n x n block unit upper; Ep m x panel. */
static void block_ldlq(const qs_codebook *cb, const qh_matd *Y, const qh_matd *U, qh_matd *A, qh_matd *Ep,
                       qh_matd *Q)
{
    size_t m = Y->rows, n = Y->cols, P = Ep->cols;
    size_t b1 = n;
    while (b1 > 0) {
        size_t b0 = b1 > P ? b1 - P : 0;
        for (size_t k = b1 - QS_G;; k -= QS_G) {
            round_block(cb, Y, A, k, Q, Ep, k - b0);
            if (k > b0)          /* A[:, b0:k] += E_k U[b0:k, k:k+8]ᵀ */
                qh_dgemm('N', 'T', m, k - b0, QS_G, 1.0, &QH_AT(Ep, 0, k - b0), Ep->ld, &QH_AT(U, b0, k), U->ld,
                         1.0, &QH_AT(A, 0, b0), A->ld);
            if (k == b0) break;
        }
        if (b0 > 0)              /* A[:, 0:b0] += E_panel U[0:b0, b0:b1]ᵀ */
            qh_dgemm('N', 'T', m, b0, b1 - b0, 1.0, Ep->data, Ep->ld, &QH_AT(U, 0, b0), U->ld, 1.0, A->data,
                     A->ld);
        b1 = b0;
    }
}

/* Tune passes (step 5).  E (m x n) = Y − Q on entry and kept current; G m x 8. */
static void tune_passes(const qs_codebook *cb, const qh_matd *Y, const qh_matd *H, int iters, qh_matd *E,
                        qh_matd *G, double *C, qh_matd *Q)
{
    size_t m = Y->rows, n = Y->cols;
    for (int it = 0; it < iters; it++)
        for (size_t k = n - QS_G;; k -= QS_G) {
            qh_dgemm('N', 'N', m, QS_G, n, 1.0, E->data, E->ld, &QH_AT(H, 0, k), H->ld, 0.0, G->data, G->ld);
            for (size_t j = 0; j < QS_G; j++)
                for (size_t i = 0; i < QS_G; i++) C[i + j * QS_G] = QH_AT(H, k + i, k + j);
            QH_ASSERT(qh_chol_small(C, QS_G));                        /* a principal block of a PD matrix */
            for (size_t r = 0; r < m; r++) {
                double x[QS_G], q[QS_G];
                for (size_t i = 0; i < QS_G; i++) x[i] = QH_AT(G, r, i);
                qh_chol_small_solve(C, QS_G, x);
                for (size_t i = 0; i < QS_G; i++) x[i] += QH_AT(Q, r, k + i);
                int st = qh_e8p_rvq_quantize(cb->e8p, cb->e81b, cb->bits, x, q);
                QH_ASSERT(st == QH_OK);
                for (size_t i = 0; i < QS_G; i++) {
                    QH_AT(Q, r, k + i) = q[i];
                    QH_AT(E, r, k + i) = QH_AT(Y, r, k + i) - q[i];
                }
            }
            if (k == 0) break;
        }
}

static double rms_of(const qh_matd *W)
{
    double ss = 0.0;
    for (size_t j = 0; j < W->cols; j++)
        for (size_t i = 0; i < W->rows; i++) ss += QH_AT(W, i, j) * QH_AT(W, i, j);
    return sqrt(ss / ((double)W->rows * (double)W->cols));
}

/* Result bookkeeping that does not depend on the codes: the order, the one
 * FP16 scale on every row, and its 16 bits over the layer. */
static int fill_layout(const qh_problem *in, double wscale, qh_result *out)
{
    size_t m = in->W->rows, n = in->W->cols, idx = 0;
    for (size_t b0 = n; b0 > 0; b0 -= QS_G)
        for (size_t i = 0; i < QS_G; i++) out->col_order[idx++] = b0 - QS_G + i;
    out->order = "reverse";
    if (!(out->row_scale = malloc(m * sizeof *out->row_scale)))
        QH_ERROR(QH_ENOMEM, "%s: row scales of %zu rows", layer_name(in), m);
    for (size_t r = 0; r < m; r++) out->row_scale[r] = wscale;
    out->bits_side = 16.0 / ((double)m * (double)n);
    return QH_OK;
}

static int quipsharp_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_quipsharp_params *p = params;
    QH_TRY(check_problem(in));
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, quipsharp_workspace_size(params, m, n) };
    qh_e8p *e8p = (qh_e8p *)(void *)qh_ws_take(&ws, doubles_for(sizeof(qh_e8p)));
    qh_e81b *e81b = (qh_e81b *)(void *)qh_ws_take(&ws, doubles_for(sizeof(qh_e81b)));
    QH_TRY(qh_e8p_init(e8p));
    QH_TRY(qh_e81b_init(e81b));
    qs_codebook cb = { e8p, e81b, in->bits };

    /* Step 1-2: damped H into out->H_proc, its block LDL factor. */
    for (size_t j = 0; j < n; j++) memcpy(&QH_AT(out->H_proc, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
    qh_matd U = qh_ws_mat(&ws, n, n);
    QH_TRY(qh_factor_damped(out->H_proc, p->damp, QH_FACTOR_CHOL, &U, NULL, &out->n_damp_retries,
                            &out->damp_used));
    double *B = qh_ws_take(&ws, 4 * QS_G * QS_G);
    block_normalize(&U, B);

    /* Step 3: scale. */
    double s = p->scale_override > 0.0 ? p->scale_override : qh_e8p_opt_scale(in->bits);
    double rms = rms_of(in->W), wscale = rms / s;
    QH_TRY(fill_layout(in, wscale, out));
    if (!(rms > 0.0)) {                              /* W̃ = 0: Ŵ = 0 (E8P has no zero point) */
        for (size_t j = 0; j < n; j++) memset(&QH_AT(out->What_proc, 0, j), 0, m * sizeof(double));
        return QH_OK;
    }
    qh_matd Y = qh_ws_mat(&ws, m, n), A = qh_ws_mat(&ws, m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(&Y, i, j) = QH_AT(in->W, i, j) / wscale;
    qh_matd Ep = { m, panel_of(n), m, qh_ws_take(&ws, m * panel_of(n)), 0 };

    /* Step 4-5: codes in out->What_proc (codebook units). */
    block_ldlq(&cb, &Y, &U, &A, &Ep, out->What_proc);
    if (p->tune_iters > 0) {
        qh_matd *E = &A;                             /* the feedback is spent: reuse for E = Y − Ŷ */
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++) QH_AT(E, i, j) = QH_AT(&Y, i, j) - QH_AT(out->What_proc, i, j);
        qh_matd G = { m, QS_G, m, qh_ws_take(&ws, m * QS_G), 0 };
        tune_passes(&cb, &Y, out->H_proc, p->tune_iters, E, &G, B, out->What_proc);
        out->n_iterations = (size_t)p->tune_iters;
    }
    /* Step 6. */
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(out->What_proc, i, j) *= wscale;
    return QH_OK;
}

double qh_quipsharp_wscale(const qh_result *r)
{
    return r && r->row_scale && r->rows ? r->row_scale[0] : 0.0;
}

const qh_method_type qh_method_quipsharp = {
    .name = "quipsharp",
    .display = "QuIP#",
    .display_order = 60,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN,
    .summary = "QuIP#: BlockLDLQ (g = 8) onto the E8P lattice codebook (2 bits; RVQ 3, 4 bits); "
               "use with incoherence hadamard",
    .params = quipsharp_params,
    .params_size = sizeof(qh_quipsharp_params),
    .workspace_size = quipsharp_workspace_size,
    .quantize = quipsharp_quantize,
    .min_bits = 2,
    .max_bits = 4,
    .flops = qh_flops_row_feedback_searched,   /* the E8P lattice search is not counted */
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
