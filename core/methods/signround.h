/* signround.h -- the "signround" method row: SignRound (Cheng et al., arXiv
 * 2309.05516; intel/auto-round; methods reference §12).
 *
 * Parameters of one linear (m x n), in the model's basis:
 *   V            (m x n) rounding offset per weight, initially 0;
 *   min_scale,   (m x n_groups) coefficients of each group's range, initially
 *   max_scale    1, clamped to [0, 1] after every step.
 * Each (row, group) has the raw range xmin = min(0, min w), xmax = max(0, max w)
 * (both 0: −1, 1), exactly as the rtn row's min-max grid (qh_grid.h MINMAX).
 *   asym (default):  lo = min_scale·xmin, hi = max_scale·xmax,
 *                    s = (hi − lo)/(2^b − 1), z = round(−lo/s),
 *                    q = clamp(round(w/s + V) + z, 0, 2^b − 1),  ŵ = s (q − z);
 *   sym (auto-round's full-range symmetric grid, its library default):
 *                    A = −min_scale·xmin, B = max_scale·xmax, M = 2^(b−1),
 *                    s = A/M when B < A, else −B/M (the larger side maps to −M),
 *                    q = clamp(round(w/s + V), −M, M − 1),  ŵ = s q.
 * round is nearest (ties up, or to even with ties = even as torch.round);
 * the scale s is floored at 1e-5 times its value at min_scale = max_scale = 1
 * (auto-round floors it at an absolute 1e-5 in FP16; the floor only matters
 * when both coefficients reach 0).
 *
 * Layer stage (quantize, no calibration data): V = 0 and the coefficients 1,
 * i.e. exactly the rtn row's min-max grid and nearest rounding for the same
 * group (asym) -- SignRound with iters 0 is RTN bit for bit.  The result's
 * grid holds Δ and z per row and group (sym: Δ = |s|, z fixed, grid.sym),
 * so bits_side is the grid's (16 + b)/group, or 16/group for sym.
 *
 * Block stage (qh_block_ops, when the resolved iters > 0): per decoder block,
 * loss = MSE between the float block on the float inputs and the fake-quant
 * block on the quantized model's inputs; `batch` windows per step drawn at
 * random; signed gradient descent p ← p − lr_t·sign(∂loss/∂p) (sign(0) = 0)
 * with lr_t = lr·(1 − (t−1)/iters) at step t = 1..iters (torch LinearLR from 1
 * to 0 over iters, stepped after every update); the best minibatch loss seen
 * before a step keeps its parameters, restored at the end (auto-round's
 * best-MSE iterate).  Gradients from G = ∂loss/∂Ŵ by the straight-through
 * estimator (∂round(u)/∂u = 1, also for z = round(−lo/s)) with the clamp's
 * zero gradient outside its range (qh_signround_grad gives the formulas).
 * V is not clamped (auto-round does not; Σ lr_t ≈ lr·iters/2 bounds it).
 *
 * Schedule (qh_signround_resolve), in order of precedence:
 *   1. an explicit iters (≥ 0) or lr / minmax_lr (> 0) in the params;
 *   2. the recipe's preset: default 200 iters; light 50 iters, lr 5e-3;
 *      best 1000 iters (auto-round's recipes; their nsamples 128/512 and
 *      seqlen 2048 are the config's calibration, not parameters here);
 *   3. lr = 1/iters, or 2/iters when iters ≥ 1000 and bits ≤ 3 (auto-round's
 *      rule); minmax_lr = lr.
 *
 * Deviations from auto-round: float32 block arithmetic, float64 parameters
 * (auto-round: AMP/bf16 blocks, FP16 scales); the harness's calibration
 * windows (nsamples x seqlen of the config); asymmetric grid by default (the
 * paper's; `sym` 1 is auto-round's current default, its `reference` value);
 * ties up by default (reference: even); the relative scale floor above.
 */
#ifndef QH_METHOD_SIGNROUND_H
#define QH_METHOD_SIGNROUND_H

#include <stddef.h>

#include "qh_method.h"

enum { QH_SIGNROUND_RECIPE_DEFAULT = 0, QH_SIGNROUND_RECIPE_LIGHT = 1, QH_SIGNROUND_RECIPE_BEST = 2 };
enum { QH_SIGNROUND_TIES_UP = 0, QH_SIGNROUND_TIES_EVEN = 1 };

typedef struct {
    int group;                       /* columns per group; 0 or ≥ n: one group per row */
    int sym;                         /* 0: asymmetric min-max grid; 1: symmetric full range */
    int iters;                       /* −1: the recipe's; 0: RTN (no block stage) */
    double lr;                       /* 0: the recipe's, else auto (see above) */
    double minmax_lr;                /* 0: lr */
    int batch;                       /* windows per step */
    int recipe;                      /* QH_SIGNROUND_RECIPE_* */
    int ties;                        /* QH_SIGNROUND_TIES_* */
} qh_signround_params;

extern const qh_method_type qh_method_signround;

/* The schedule the params give at `bits`. */
typedef struct {
    long iters;
    double lr, minmax_lr;
} qh_signround_schedule;
void qh_signround_resolve(const qh_signround_params *p, int bits, qh_signround_schedule *out);

/* lr_t of step t (1..iters): lr·(1 − (t−1)/iters). */
double qh_signround_lr_at(double lr, long iters, long t);

/* x[i] ← x[i] − lr·sign(g[i]) (sign(0) = 0), then clamped to [lo, hi] when lo ≤ hi. */
void qh_signround_sign_step(double *x, const double *g, size_t count, double lr, double lo,
                            double hi);

/* The state of one linear (qh_problem.state_out; from the row's
 * block->state_new or zeroed, or previously filled: reused when the shape
 * matches).  Arrays: V, gV, V_saved (m x n, column-major like W); the others
 * (m x n_groups, column-major: entry r + gi·m). */
typedef struct {
    size_t rows, cols, group, n_groups;
    int bits, sym, ties_even;
    int surrogate;                   /* 1: round is the identity (the smooth function whose
                                        gradient the STE computes; gradient tests only) */
    qh_matd *W;                      /* (m, n) the weights being quantized */
    double *V, *gV, *V_saved;
    double *xmin, *xmax;             /* raw range per row and group */
    double *min_scale, *max_scale, *min_saved, *max_saved, *g_min, *g_max;
} qh_signround_state;

void qh_signround_state_free(qh_signround_state *s);   /* frees members, zeroes; NULL: no-op */

/* Ŵ (m x n) of the state's current V and coefficients. */
void qh_signround_fake_quant(const qh_signround_state *s, qh_matd *What);

/* The STE gradients of a loss from G = ∂loss/∂Ŵ (m x n) at the state's
 * parameters into s->gV (m x n), s->g_min, s->g_max (m x n_groups).  Per
 * weight, with u = w/s + V and q̃ = round(u) (+ z for asym) inside the clamp:
 *   ∂ŵ/∂V = s, ∂ŵ/∂s = round(u) − w/s                       (inside)
 *   ∂ŵ/∂V = 0, ∂ŵ/∂s = q − z − lo/s, ∂ŵ/∂lo = 1 (asym, via z) (clamped; sym: ∂ŵ/∂s = q)
 * and s, lo through the coefficients: asym ∂s/∂min_scale = −xmin/(2^b−1),
 * ∂s/∂max_scale = xmax/(2^b−1), ∂lo/∂min_scale = xmin; sym ∂s/∂min_scale =
 * −xmin/M when s = A/M, ∂s/∂max_scale = −xmax/M when s = −B/M; 0 where the
 * floor holds s. */
void qh_signround_grad(qh_signround_state *s, const qh_matd *G);

#endif
