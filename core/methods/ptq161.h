/* ptq161.h -- the "ptq161" method row: PTQ1.61 (Zhao et al. 2025, arXiv
 * 2502.13179; methods reference §8), per-layer PTQ form.
 *
 * A one-dimensional structured mask over the input channels (columns): the
 * top salient_frac columns by an activation statistic (rank: sqrt(diag H),
 * the RMS of x_j, by default; max|x_j| over the calibration tokens, the
 * reference code's, with rank = absmax, from qh_problem.x_absmax, which the
 * sequential traversal fills; refused without it, and so under incoherence
 * processing, where the driver withholds it) keep a salient_bits
 * asymmetric per-row min-max grid (over the full row); every other entry is
 *   ŵ_ij = (α_i·s_ij + μ_i)·r1_i·r2_j,   s_ij = sign(w_ij − μ_i) (sign(0) = +1),
 * with μ_i (frozen), α_i, r1 ∈ R^m and r2 ∈ R^n; α, r1, r2 are optimised by
 * Adam(W) against the layer's proxy loss tr((Ŵ−W) H (Ŵ−W)ᵀ) (see ptq161.c
 * for the gradients and the deviations from the reference).
 *
 * Objective: the row itself always optimises the layer proxy (`steps`);
 * objective = block asks for the row's block stage (qh_method_ptq161.block,
 * see qh_block_ops): the pipeline goes on tuning (α, r1, r2) of every linear
 * of a decoder block jointly against the block output, as the reference does
 * (`epochs` passes over the calibration windows, one Adam step per window,
 * lr_alpha and lr_r; experiments/pipeline/block_stage.h).  Where there is no
 * block (`qh layer`), the row's layer result is what is measured.
 *
 * Result fields: What_proc; H_proc = H (undamped: nothing is inverted);
 * col_order natural, order "natural"; grid = the salient_bits MINMAX grid;
 * bits_nominal and bits_side from qh_ptq161_bits.  The width is fixed by
 * the method: the row accepts bits = 1 only (min_bits = max_bits = 1; the
 * driver refuses others, QH_EINVAL).  A non-PSD H is QH_ENOTPD.
 */
#ifndef QH_METHOD_PTQ161_H
#define QH_METHOD_PTQ161_H

#include <stddef.h>
#include <stdint.h>

#include "qh_method.h"

enum { QH_PTQ161_OBJECTIVE_LAYER = 0, QH_PTQ161_OBJECTIVE_BLOCK = 1 };
enum { QH_PTQ161_RANK_RMS = 0, QH_PTQ161_RANK_ABSMAX = 1 };

typedef struct {
    double salient_frac;             /* fraction of the columns kept at salient_bits */
    int salient_bits;                /* bits of the salient columns' per-row grid */
    int steps;                       /* Adam(W) steps on the exact proxy (full batch) */
    double lr_alpha;                 /* learning rate of α */
    double lr_r;                     /* learning rate of r1, r2 */
    int objective;                   /* QH_PTQ161_OBJECTIVE_*: what the pipeline tunes against */
    int epochs;                      /* block objective: passes over the calibration windows */
    int rank;                        /* QH_PTQ161_RANK_*: salient channels by sqrt(diag H) or
                                        by max|x| (qh_problem.x_absmax, the reference) */
} qh_ptq161_params;

extern const qh_method_type qh_method_ptq161;

/* Bits per weight of PTQ1.61 for an m x n matrix with k salient columns
 * (f = k/n):
 *   *nominal = f·salient_bits + (1 − f) + 1/m   (the column bitmap);
 *   *side    = (16 + salient_bits)/n            (FP16 step + integer zero per row)
 *            + 32/n                             (FP16 α, μ per row)
 *            + 16/n + 16/m                      (FP16 r1 (m values), r2 (n values)).
 * At 4096 x 4096, f = 0.2: 1.600244 + 0.020508 = 1.620752 (the reference's
 * estimate ≈ 1.62 counts an FP16 zero: 1.623682).  Outputs may be NULL. */
void qh_ptq161_bits(size_t k, int salient_bits, size_t m, size_t n, double *nominal,
                    double *side);

/* The binarized-plus-scaled model of one layer, for the optimiser and tests. */
typedef struct {
    const qh_matd *W;                /* (m, n) target weights */
    const qh_matd *H;                /* (n, n) symmetric, both triangles stored */
    const uint8_t *salient;          /* (n) 1 = salient column */
    const qh_matd *Qsal;             /* (m, n) values of the salient columns (others unused) */
    const double *mu;                /* (m) frozen row means */
} qh_ptq161_model;

/* Gradients of a loss ℓ(Ŵ) with respect to α (m), r1 (m), r2 (n; zero on
 * salient columns), given G = ∂ℓ/∂Ŵ (m x n) at (α, r1, r2).  md->H unused. */
void qh_ptq161_param_grad(const qh_ptq161_model *md, const double *alpha, const double *r1,
                          const double *r2, const qh_matd *G, double *g_alpha, double *g_r1,
                          double *g_r2);

/* The block stage's state: what the row exports through qh_problem.state_out
 * (a qh_ptq161_state *, from qh_method_ptq161.block->state_new or zeroed, or
 * previously filled: its memory is reused when the shape matches): the
 * processed-basis model (W copy, the mask, the salient values, μ) and the
 * (α, r1, r2) the row ended with, which the block ops' step goes on tuning by
 * Adam against the block output (experiments/pipeline/block_stage.h); Ŵ is
 * qh_ptq161_reconstruct of them.  grad and moments are that step's memory
 * (the moments are zeroed at step 1). */
typedef struct {
    size_t rows, cols;
    qh_matd *W, *Qsal;               /* (m, n) */
    uint8_t *salient;                /* (n) */
    double *mu, *alpha, *r1, *r2;    /* (m), (m), (m), (n) */
    double *grad;                    /* α (m), r1 (m), r2 (n) */
    double *moments;                 /* Adam's first and second moments of α, r1, r2 */
} qh_ptq161_state;

/* The model view of a state (H = NULL). */
qh_ptq161_model qh_ptq161_state_model(const qh_ptq161_state *s);
void qh_ptq161_state_free(qh_ptq161_state *s);   /* frees members, zeroes; NULL: no-op */

/* Ŵ (m x n) of the model at (α (m), r1 (m), r2 (n)). */
void qh_ptq161_reconstruct(const qh_ptq161_model *md, const double *alpha, const double *r1,
                           const double *r2, qh_matd *What);

/* ℓ = tr((Ŵ−W) H (Ŵ−W)ᵀ) and its gradients with respect to α (m), r1 (m),
 * r2 (n; zero on salient columns).  scratch: 2·m·n doubles. */
void qh_ptq161_loss_grad(const qh_ptq161_model *md, const double *alpha, const double *r1,
                         const double *r2, double *loss, double *g_alpha, double *g_r1,
                         double *g_r2, double *scratch);

/* The salient columns: the top round(frac·n) by sqrt(diag H) (ties: lower
 * index first) into salient (n bytes).  scratch: 2n doubles.  Returns k. */
size_t qh_ptq161_select_columns(const qh_matd *H, double frac, uint8_t *salient,
                                double *scratch);
/* The same ranked by x_absmax (n values: max|x_j| over the calibration
 * tokens), the reference code's statistic.  scratch: n doubles. */
size_t qh_ptq161_select_columns_absmax(const double *x_absmax, size_t n, double frac,
                                       uint8_t *salient, double *scratch);

#endif
