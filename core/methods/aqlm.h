/* aqlm.h -- the "aqlm" method row: additive quantization of language models
 * (Egiazarian et al. 2024, arXiv 2401.06118; methods reference §10).
 *
 * Representation.  Each row r of W̃ (m x n, processed basis) is cut into
 * J = n/g groups of g consecutive columns; group j of row r is stored as
 *   ŵ_{r,j} = s_r · Σ_{k<M} C_k[code_{r,j,k}],
 * C_k a codebook of K = 2^B vectors of dimension g, s_r one scale per output
 * row.  The problem's bit width is the NOMINAL bits per weight: B = bits·g/M
 * must be an integer in 1..16 (bits 2 with codebooks 2, group 8 is "2x8";
 * codebooks 1 is "1x16"), else QH_EINVAL naming M, g and bits.  The default
 * codebooks = 0 picks the fewest codebooks of at most 8 bits each: with
 * group 8, 1x8 at 1 bit, 2x8 at 2, 3x8 at 3, 4x8 at 4 (a sweep over bit
 * widths then stays in the family the reference recommends on CPU).
 *
 * Algorithm (aqlm.c has the details), proxy ℓ = tr((Ŵ−W̃) H (Ŵ−W̃)ᵀ) with
 * H damped by damp·mean(diag H)·I (raised tenfold per failed Cholesky):
 *   1. s_r = ‖W̃_r‖₂ (the reference's row-norm init); residual k-means on the
 *      groups of W̃/s, one codebook at a time (seeded, kmeans_iters Lloyd
 *      iterations, stopping when no assignment changes).
 *   2. Up to `epochs` alternations of
 *        (a) beam search with beam 1 = exact coordinate descent over codes:
 *            groups in a seeded random order, every codebook, all rows at
 *            once, scored by one GEMM per (group, codebook);
 *        (b) codebook update with the codes fixed (update = lstsq or adam);
 *        (c) per-row scales in closed form, s_r = ⟨U_r H, W̃_r⟩/⟨U_r H, U_r⟩
 *            (U_r the unscaled reconstruction: the exact minimiser per row);
 *      stopping when an epoch lowers ℓ by less than `tolerance` (relative).
 *      The best state is kept, so ℓ never increases across epochs.
 *   3. fp16 = 1: codebooks rounded to FP16 precision, one more beam pass and
 *      scale fit for the rounded codebooks, scales rounded to FP16.
 *
 * Result fields: What_proc = decoded Ŵ; H_proc = the damped H; col_order
 * natural, order "natural"; grid empty (not a scalar grid); row_scale[r] =
 * s_r; n_iterations = epochs run; bits_nominal = M·B/g; bits_side =
 * (M·2^B·g·16 + 16·m)/(m·n) (FP16 codebooks and one FP16 scale per row,
 * the reference's estimate_nbits_per_parameter).
 *
 * Deviations from the reference code (Vahe1994/AQLM):
 *   - Codebook update "lstsq" (default): least squares over all M·K·g
 *     codebook entries with codes and scales fixed, by preconditioned
 *     conjugate gradients (block-Jacobi, g x g per codeword) without forming
 *     the normal matrix, warm-started from the current codebooks, stopped at
 *     a relative residual of 1e-10 or after cg_iters iterations.  With a
 *     large cg_iters this is the exact optimum for the codes (the tests use
 *     that); every CG step lowers ℓ.  Why not a direct solve: forming the
 *     normal matrix costs m·n²·M² and its Cholesky (M·K·g)³/3 flops (≈2.5e10
 *     for 2x8 g8, every epoch), and 1x16 has 524 288 unknowns; one CG step
 *     costs one m·n·n GEMM.  Default cg_iters = 3: on 512 x 512, 2048 x 512
 *     and 512 x 2048 layers (2x8 g8, correlated H) the final proxy with 3
 *     iterations is within 0.1 % of that with 30-100, at a third less time
 *     (the CG GEMMs dominate on wide layers).  "adam" reproduces the
 *     reference update (adam_steps steps, lr adam_lr, betas (0, 0.95),
 *     amsgrad, eps 1e-8) on the codebooks only; its lr is absolute, in units
 *     of the codebooks of W/s (entries ~ 1/sqrt(n)).
 *   - Scales: closed form after the codebook update instead of Adam steps.
 *   - Stopping: relative improvement of a whole epoch below `tolerance`
 *     (the reference compares the loss after each epoch's first step).
 *   - k-means: initial centroids are distinct random groups (cycled when
 *     there are fewer groups than codewords); an empty cluster keeps its
 *     previous centroid; kmeans_iters defaults to 25 instead of 100 (early
 *     stop when assignments settle): 10 iterations cost 1 % of final proxy,
 *     25 are within the noise of more, and each costs 2·m·n·K flops per
 *     codebook.
 *   - Damping: H + damp·mean(diag H)·I with damp = 0.01, as the other
 *     H-based rows; the reference code uses XᵀX/N undamped (damp = 0, the
 *     parameter's reference value; a singular H then still gets the least
 *     damping that factors, from 1e-6, counted in n_damp_retries).  Whether
 *     the damping helps AQLM has not been measured.
 *   - All arithmetic in double (the reference trains in float32 on GPU).
 *   - Side information is rounded to FP16 precision (11 significant bits; the
 *     FP16 exponent range is not enforced), like pvq's row norm.
 * Block fine-tuning (finetune > 0): the row's block ops (aqlm_finetune.h)
 * tune the codebooks and row scales of a whole decoder block against its
 * output after the layer stage; finetune = 0 leaves the layer result.
 * Out of scope: PV-tuning, beam
 * widths above 1, packed code storage (What only).
 *
 * Cost (2 flops per multiply-add): k-means 2·m·n·K per codebook and
 * iteration; per epoch a beam pass 2·m·n·K·M + 2·m·n², cg_iters CG steps of
 * 2·m·n² each and a scale fit 2·m·n².  Defaults, 2x8 g8, one OpenBLAS thread
 * on a loaded 2-core machine: 512 x 512 1.5 s, 2048 x 512 6 s, 512 x 2048
 * 10 s, about 7 epochs each (tests/bench_aqlm.c).
 *
 * The solver (qh_aqlm_ctx) is exposed below for tests and benchmarks: its
 * steps are the row's steps.
 */
#ifndef QH_METHOD_AQLM_H
#define QH_METHOD_AQLM_H

#include <stddef.h>
#include <stdint.h>

#include "qh_method.h"
#include "qh_rng.h"

enum { QH_AQLM_LSTSQ = 0, QH_AQLM_ADAM = 1 };

typedef struct {
    int codebooks;                   /* M; 0 = qh_aqlm_auto_codebooks */
    int group;                       /* g: columns per group (must divide n) */
    int epochs;                      /* maximum alternations */
    double tolerance;                /* stop below this relative improvement per epoch */
    int kmeans_iters;                /* Lloyd iterations per codebook at init */
    int update;                      /* QH_AQLM_LSTSQ | QH_AQLM_ADAM */
    int cg_iters;                    /* lstsq: CG iterations per update */
    int adam_steps;                  /* adam: steps per update */
    double adam_lr;                  /* adam: learning rate */
    int fp16;                        /* 1: codebooks and scales rounded to FP16 */
    double damp;                     /* relative damping of H */
    int finetune;                    /* block fine-tuning passes (0: off) */
    double ft_lr;                    /* its Adam learning rate */
    int ft_batch;                    /* windows per step */
    int ft_patience;                 /* early stop after this many passes without progress */
} qh_aqlm_params;

extern const qh_method_type qh_method_aqlm;

/* Average bits per weight of an AQLM configuration (M codebooks of 2^B
 * vectors, groups of g) over layers of rows[i] x cols[i]:
 *   Σ(m·n·M·B/g + M·2^B·g·16 + 16·m) / Σ m·n.
 * B may be any value in 1..30 (independent of a bit width).  0 for no layers. */
double qh_aqlm_bits_per_weight(int M, int B, int g, const size_t *rows, const size_t *cols,
                               size_t nlayers);

/* B = bits·g/M for a layer of n columns.  Returns QH_OK, or QH_EINVAL when g
 * does not divide n or B is not an integer in 1..16 (the message names M, g
 * and bits). */
int qh_aqlm_code_bits(int M, int g, int bits, size_t n, int *B) QH_MUST_CHECK;

/* The codebook count of parameter codebooks = 0 for groups of g at `bits`
 * nominal bits: the smallest M with B = bits·g/M an integer of at most 8
 * (8-bit codebooks are the reference's CPU-friendly 2x8 and 1x8; 2^16-entry
 * codebooks cost more than the weights of a small layer). */
int qh_aqlm_auto_codebooks(int g, int bits);

/* ---- the solver (tests, benchmarks) ---------------------------------------- */

typedef struct {
    size_t m, n, g, J, M, B, K;      /* shape; J = n/g groups; K = 2^B */
    const qh_matd *W, *H;            /* (m, n) target, (n, n) damped H; borrows */
    double *cb;                      /* (M·K·g) codeword c of codebook k at cb + (k·K + c)·g */
    double *scale;                   /* (m) s_r */
    uint16_t *codes;                 /* (m·J·M) code of (r, j, k) at codes[r + m·(j + J·k)] */
    qh_matd E, G;                    /* (m, n) E = Ŵ − W, G = E H */
    qh_matd WH;                      /* (m, n) W H, computed by qh_aqlm_ctx_init */
    qh_matd T, X;                    /* (m, n) scratch */
    /* internal scratch */
    double *best_cb, *best_scale, *score, *vec, *prec, *small;
    uint16_t *best_codes;
    uint32_t *idx;
    size_t mb;                       /* rows per scoring block */
    double *trace;                   /* (epochs + 1) ℓ after init and after each epoch */
    size_t n_trace;
} qh_aqlm_ctx;

/* Bytes for a solver of an m x n layer with M codebooks of 2^B vectors of g
 * entries and up to `epochs` epochs. */
size_t qh_aqlm_ctx_bytes(size_t m, size_t n, int M, int B, int g, int epochs);
/* Carves a solver out of mem (qh_aqlm_ctx_bytes bytes, 64-byte aligned; borrows
 * W and H, which must stay alive; H full symmetric) and computes W H (one
 * GEMM).  g must divide n; 1 <= B <= 16.  The model starts zeroed. */
void qh_aqlm_ctx_init(qh_aqlm_ctx *c, const qh_matd *W, const qh_matd *H, int M, int B, int g,
                      int epochs, void *mem);

/* Steps of the algorithm (aqlm.h header).  Every step that changes the
 * state leaves E and G consistent with it. */
void qh_aqlm_init_scales(qh_aqlm_ctx *c);                              /* s_r = ‖W_r‖ */
void qh_aqlm_init_kmeans(qh_aqlm_ctx *c, int iters, qh_rng *rng);       /* codes, codebooks */
double qh_aqlm_refresh(qh_aqlm_ctx *c);        /* E, G from the model; returns ℓ */
double qh_aqlm_loss(const qh_aqlm_ctx *c);     /* Σ E∘G */
/* One coordinate step: the codes of codebook k in group j of every row set to
 * the exact minimiser of ℓ with everything else fixed (ties keep the old code). */
void qh_aqlm_beam_step(qh_aqlm_ctx *c, size_t j, size_t k);
void qh_aqlm_beam_pass(qh_aqlm_ctx *c, qh_rng *rng);                    /* all (j, k), j shuffled */
/* Codebook updates with codes and scales fixed; return CG iterations / steps run. */
int qh_aqlm_update_lstsq(qh_aqlm_ctx *c, int max_iters, double rtol);
int qh_aqlm_update_adam(qh_aqlm_ctx *c, int steps, double lr);
void qh_aqlm_update_scales(qh_aqlm_ctx *c);
/* ∇ℓ with respect to every codebook entry (M·K·g, layout of cb) from G. */
void qh_aqlm_gradient(const qh_aqlm_ctx *c, double *grad);
/* Ŵ = s·Σ C[codes] into What (m x n). */
void qh_aqlm_decode(const qh_aqlm_ctx *c, qh_matd *What);
/* out (m x n, ld m) = s_r·Σ_k x_k[codes] per group with c's shape and codes and
 * codebooks x in c->cb's layout; scale NULL: unscaled. */
void qh_aqlm_decode_with(const qh_aqlm_ctx *c, const double *x, const double *scale, double *out);
/* out (M·K·g, c->cb's layout) = factor·Σ_{(r,j): code = c} s_r Y(r, columns of
 * group j), the transpose of decode (Y m x n, ld m): with Y = ∂ℓ/∂Ŵ and
 * factor 1 the gradient with respect to the codebooks. */
void qh_aqlm_scatter_with(const qh_aqlm_ctx *c, const double *scale, const double *Y, double factor,
                          double *out);
/* x rounded to FP16 precision (11 significant bits; subnormal spacing 2⁻²⁴;
 * the exponent range is not enforced). */
double qh_aqlm_round_fp16(double x);
/* The whole algorithm (steps 1-3); c->trace receives ℓ per epoch.  Returns the
 * number of epochs run. */
int qh_aqlm_run(qh_aqlm_ctx *c, const qh_aqlm_params *p, qh_rng *rng);

#endif
