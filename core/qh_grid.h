/* qh_grid.h -- uniform scalar grids for the OPTQ/LDLQ family.
 *
 * Every grid has the form  ŵ = Δ (q − z),  q ∈ {0, ..., 2^b − 1},  with one
 * step Δ and offset z per (row, group):
 *   QH_GRID_MINMAX  OPTQ `quant.py` (methods reference §2): per row, asymmetric;
 *                   xmin = min(0, row min), xmax = max(0, row max) (both 0 → ±1),
 *                   Δ = (xmax − xmin)/(2^b − 1), z = round(−xmin/Δ) (integer).
 *                   With groups, one (Δ, z) per row and group of columns.
 *   QH_GRID_RMS     QuIP `qfn='b'` (§4): one per matrix, s = ρ·RMS(W) + 1e−16,
 *                   2^b points on [−s, s]: Δ = 2s/(2^b − 1), z = (2^b − 1)/2.
 *   QH_GRID_INTEGER the theory's integer grid (§15): Δ = 1, z = 0.  With clamping
 *                   the points are 0..2^b − 1 (the finite-grid counterexample).
 * Rounding of u = x/Δ + z: q = ⌊u + η⌋, η = ½ (nearest) or η ~ U[0, 1)
 * (stochastic, unbiased).  Nearest rounds ties up by default; with ties_even
 * it rounds them to the even integer, as torch.round in the authors' code
 * (a tie is rare on real weights; neither choice is better).  With
 * clamping, u is clamped to [0, 2^b − 1] first (clamp-before-round keeps
 * stochastic rounding unbiased inside the range).
 *
 * Options of QH_GRID_MINMAX (set after qh_grid_init, like ties_even):
 *   sym   symmetric (QuaRot's weight quantizer, which RRS uses): xmax = max(|row min|,
 *         row max) (0 → 1), Δ = xmax/(2^(b−1) − 1), z = 2^(b−1): the points are
 *         Δ·{−2^(b−1), ..., 2^(b−1) − 1} (b ≥ 2).  Side information: one FP16 Δ.
 *   mse   the range shrink search of OPTQ's and QuaRot's `find_params(mse=True)`
 *         (RRS `--w_clip`): for i = 0 .. 79 (grid 100, maxshrink 0.8), the range
 *         p·[lo, hi] with p = 1 − i/100 gives (Δ, z) as above; the p of least
 *         Σ_j |ŵ_j − w_j|^2.4 over the row's (group's) weights, rounded to the
 *         nearest point with clamping, is kept (the first on ties).
 *
 * Left out: OPTQ's --trits and static groups.
 */
#ifndef QH_GRID_H
#define QH_GRID_H

#include <math.h>
#include <stddef.h>

#include "qh_error.h"
#include "qh_mat.h"

#define QH_GRID_MSE_GRID 100.0        /* the shrink search: p = 1 − i/100 ... */
#define QH_GRID_MSE_STEPS 80          /* ... for i < 0.8·100 (maxshrink 0.8) ... */
#define QH_GRID_MSE_NORM 2.4          /* ... scoring Σ |ŵ − w|^2.4 */

typedef enum { QH_GRID_MINMAX = 0, QH_GRID_RMS = 1, QH_GRID_INTEGER = 2 } qh_grid_kind;

typedef struct {
    qh_grid_kind kind;
    int bits;                        /* 1..8 */
    int clamp;                       /* 1: q restricted to 0..maxq */
    int ties_even;                   /* 1: nearest rounds ties to even (torch.round); 0: up */
    int sym;                         /* MINMAX: symmetric grid (see above): z is fixed by the
                                        grid's definition and not stored (rtn/gptq sym, signround
                                        sym); 0 after init */
    int mse;                         /* MINMAX: MSE range shrink search; 0 after init */
    double maxq;                     /* 2^bits − 1 */
    double rho;                      /* QH_GRID_RMS: s = rho·RMS(W) */
    size_t rows;                     /* m */
    size_t group;                    /* columns per group; == cols when ungrouped */
    size_t n_groups;                 /* cols / group (1 when ungrouped) */
    double *step;                    /* (rows, n_groups) column-major: Δ per row and group; owns */
    double *zero;                    /* (rows, n_groups): z per row and group; owns */
} qh_grid;

/* Allocates the (rows x n_groups) tables.  group = 0: ungrouped.
 * Returns QH_OK, QH_EINVAL (bits outside 1..8, group not dividing cols, group
 * with a non-MINMAX kind, rho ≤ 0), QH_ENOMEM.  On error *g is left freeable. */
int qh_grid_init(qh_grid *g, qh_grid_kind kind, int bits, int clamp, double rho,
                 size_t rows, size_t cols, size_t group) QH_MUST_CHECK;
void qh_grid_free(qh_grid *g);       /* frees the tables; the struct is caller's */

/* Fits group `gi` of the grid to the columns c0..c0+nc−1 of W (m x n):
 * per-row min/max for MINMAX, RMS of those columns for RMS, nothing for INTEGER. */
void qh_grid_fit(qh_grid *g, const qh_matd *W, size_t c0, size_t nc, size_t gi);
/* The same for a block of rows: W holds rows r0..r0+W->rows−1 of the matrix
 * (e.g. a row view of it) and only those rows' cells are set, each as
 * qh_grid_fit sets it.  Per-row kinds only (MINMAX, INTEGER); RMS reads every
 * row and is refused (assert).  Row-parallel loops (qh_rows.h) call it. */
void qh_grid_fit_rows(qh_grid *g, const qh_matd *W, size_t r0, size_t c0, size_t nc, size_t gi);

/* Side information in bits per weight (reference §1 "Bits"): MINMAX stores an
 * FP16 step and a b-bit zero per row and group, (16 + b)/group (16/group when
 * sym: the step alone); RMS one FP16 scale per matrix, 16/(rows·cols);
 * INTEGER nothing. */
double qh_grid_side_bits(const qh_grid *g, size_t cols);

/* The grid point for x in row r and group gi, with η as in the file header
 * (η = ½ is nearest, and then ties follow g->ties_even). */
static inline double qh_grid_round(const qh_grid *g, size_t r, size_t gi, double x, double eta)
{
    size_t k = r + gi * g->rows;
    double d = g->step[k], z = g->zero[k], u = x / d + z;
    if (g->clamp) u = fmin(fmax(u, 0.0), g->maxq);
    double q = g->ties_even && eta == 0.5 ? nearbyint(u) : floor(u + eta);
    if (g->clamp && q > g->maxq) q = g->maxq;
    return d * (q - z);
}

/* x clamped into the range [Δ(0 − z), Δ(maxq − z)] of row r and group gi
 * (x itself without clamping): QuIP's code clamps W into the grid before
 * rounding, so its feedback carries the error to the clamped W. */
static inline double qh_grid_clamp_value(const qh_grid *g, size_t r, size_t gi, double x)
{
    if (!g->clamp) return x;
    size_t k = r + gi * g->rows;
    double d = g->step[k], z = g->zero[k], u = x / d + z;
    return u < 0.0 ? d * (0.0 - z) : u > g->maxq ? d * (g->maxq - z) : x;
}

#endif
