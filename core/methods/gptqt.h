/* gptqt.h -- the "gptqt" method row: GPTQT (Guo et al. 2024, arXiv
 * 2407.02891; methods reference §9; paper only, no public code): GPTQ to a
 * higher intermediate width, the integer levels of every row (or group)
 * re-coded as binary-coding quantization (BCQ) w ≈ Σ_i α_i b_i + offset,
 * b_i = ±1, k = bits terms, and a re-explore search of the step-1 scale
 * multiplier on the final proxy error (see gptqt.c).
 *
 * Result fields: What_proc (the BCQ values); H_proc = the damped H;
 * col_order natural; grid left empty (the BCQ codebook is not a uniform
 * grid); bits_nominal = k; bits_side = (16k + 16)/g (k FP16 α and one FP16
 * offset per row or group of g columns); n_iterations = the re-explore
 * candidates run.
 */
#ifndef QH_METHOD_GPTQT_H
#define QH_METHOD_GPTQT_H

#include <stddef.h>

#include "qh_method.h"

enum { QH_BCQ_FIT_ALS = 0, QH_BCQ_FIT_BRUTE = 1 };

typedef struct {
    int inter_bits;                  /* step-1 width; 0: bits + 1 */
    int group;                       /* columns per group, 0: per row */
    int fit;                         /* QH_BCQ_FIT_* */
    int als_iters;                   /* ALS rounds (stops earlier when stable) */
    double reexplore_lo, reexplore_hi;   /* scale multipliers searched */
    int reexplore_n;                 /* candidates, evenly spaced (1: lo only) */
    double damp;                     /* relative damping of H */
} qh_gptqt_params;

extern const qh_method_type qh_method_gptqt;

#define QH_BCQ_MAX_K 4
#define QH_BCQ_BRUTE_MAX_K 3
#define QH_BCQ_BRUTE_MAX_ASSIGNMENTS 200000

/* The BCQ value of pattern p (bit i set: b_i = +1, clear: −1). */
double qh_bcq_value(const double *alpha, double offset, int k, unsigned p);

/* Fits k-term BCQ to L values v (ascending) with weights c (counts ≥ 0):
 * minimises Σ_l c_l (v_l − value(pattern_l))² over α (k), offset and the
 * patterns.  ALS: greedy residual start (offset = weighted mean, α_i =
 * weighted mean |r|, b_i = sign r), then `iters` rounds of weighted least
 * squares for (α, offset) with the patterns fixed and nearest-code
 * reassignment, stopping when no pattern changes.  BRUTE: the exact
 * optimum, over every monotone assignment of the sorted values to the codes
 * in each order a sorted α ≥ 0 can give (k ≤ 3), least squares for each.
 * Outputs alpha (k), offset, pattern (L), *sse.  Returns QH_OK, QH_EINVAL
 * (k outside 1..QH_BCQ_MAX_K, brute with k > 3 or more than
 * QH_BCQ_BRUTE_MAX_ASSIGNMENTS assignments: the message names "fit"). */
int qh_bcq_fit(const double *v, const double *c, size_t L, int k, int method, int iters,
               double *alpha, double *offset, unsigned *pattern, double *sse) QH_MUST_CHECK;

/* Bits per weight of a GPTQT layer with k terms, groups of g columns. */
void qh_gptqt_bits(int k, size_t g, double *nominal, double *side);

#endif
