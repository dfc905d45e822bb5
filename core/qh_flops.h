/* qh_flops.h -- the building blocks of the method rows' floating-point counts
 * (qh_method_type.flops), which the wall-time estimate divides by a measured
 * throughput (experiments/pipeline/timing.h).  Counts are in flops (a
 * multiply-add is 2), conventional rather than measured, for an m x n linear
 * with H n x n; rows compose them with their own parameters.  Shapes are
 * doubles, as the estimate sums and scales the counts (up to ~1e14, exact). */
#ifndef QH_FLOPS_H
#define QH_FLOPS_H

#include <stddef.h>

/* Fractions of the float64 gemm probe the rows' work reached in measured
 * cells (docs/cluster.md "Sizing a job: time"): an element-wise rounding
 * spends its time in the proxy loss and the copies around it; feedback
 * loops, factorisations and SVDs run closer to gemm. */
#define QH_FLOPS_EFF_ROUND 0.35
#define QH_FLOPS_EFF_FEEDBACK 0.55

/* Rounding onto a grid: the grid fit and the rounding, 10 m n. */
double qh_flops_round(double m, double n);
/* GPTQ's and LDLQ's column loop (m n^2: every column's error fed to the
 * later ones) and the factorisations of H (Cholesky, inverse, LDL: 2 n^3). */
double qh_flops_feedback(double m, double n);
/* One product of an m x n matrix with H, 2 m n^2: a proxy gradient
 * (Ŵ − W) H, a greedy coordinate pass, the driver's proxy loss. */
double qh_flops_times_h(double m, double n);
/* The feedback loop, then k products with H (LDLQ-RG's greedy passes,
 * PTQ1.61's proxy steps). */
double qh_flops_feedback_then(double m, double n, double k);
/* A symmetric eigendecomposition with vectors (dsyevd), 9 n^3. */
double qh_flops_eig(double n);
/* A truncated SVD of an m x n matrix, 8 m n min(m, n). */
double qh_flops_svd(double m, double n);

/* Row counts (qh_method_type.flops) for rows whose own work is one building
 * block, so that the rows sharing it point at one function. */
double qh_flops_row_round(const void *params, int bits, size_t rows, size_t cols, int *partial);
double qh_flops_row_feedback(const void *params, int bits, size_t rows, size_t cols,
                             int *partial);
/* The feedback loop with a search beside it that is not counted (a lattice,
 * pyramid or salient-weight search): sets *partial, a lower bound. */
double qh_flops_row_feedback_searched(const void *params, int bits, size_t rows, size_t cols,
                                      int *partial);

#endif
