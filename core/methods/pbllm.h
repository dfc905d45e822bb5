/* pbllm.h -- the "pbllm" method row: PB-LLM, partially binarized LLMs, PTQ
 * variant "GPTQ-PB" (Shang et al. 2023, arXiv 2310.00034; methods reference §7).
 *
 * A fixed unstructured mask keeps the top salient_frac of the entries of W
 * (by |W| or W²/diag(Hinv)²) on a high_bits asymmetric per-row min-max grid
 * spanning the full row; every other entry is binarized, q = α·sign(w − μ) + μ
 * with one (μ, α) per row calibrated once before any feedback.  Columns are
 * then rounded left to right with OPTQ error feedback (see pbllm.c).
 *
 * Result fields: What_proc; H_proc = the damped H; col_order natural, order
 * "natural"; grid = the high_bits MINMAX grid of the salient part;
 * bits_nominal = f·high_bits + (1 − f) (f the kept fraction actually
 * selected), bits_side = the raw mask (1 bit per weight) + per row FP16 μ, α,
 * FP16 step and high_bits zero of the grid (qh_pbllm_bits).
 * The bit budget is set by salient_frac and high_bits: the row accepts bits
 * = 1 only (min_bits = max_bits = 1; the driver refuses others, QH_EINVAL).
 */
#ifndef QH_METHOD_PBLLM_H
#define QH_METHOD_PBLLM_H

#include <stddef.h>
#include <stdint.h>

#include "qh_method.h"

enum { QH_PBLLM_METRIC_MAGNITUDE = 0, QH_PBLLM_METRIC_HESSIAN = 1 };
enum { QH_PBLLM_XNOR_BIASED = 0, QH_PBLLM_XNOR_FIXED = 1 };

typedef struct {
    double salient_frac;             /* fraction of the m·n entries kept at high_bits */
    int high_bits;                   /* bits of the salient part's per-row min-max grid */
    int salient_metric;              /* QH_PBLLM_METRIC_* */
    int xnor_calibration;            /* QH_PBLLM_XNOR_* */
    int feedback;                    /* 1: OPTQ error feedback (0: round W as it is) */
    int blocksize;                   /* lazy-feedback block in columns */
    double damp;                     /* relative damping of H */
} qh_pbllm_params;

extern const qh_method_type qh_method_pbllm;

/* Bits per weight of PB-LLM for an m x n matrix with n_salient kept entries:
 *   *nominal = f·high_bits + (1 − f), f = n_salient/(m·n);
 *   *side    = 1 (raw bitmap mask) + (16 + 16 + 16 + high_bits)/n
 *              (per row: FP16 μ, FP16 α, FP16 grid step, high_bits grid zero);
 *              32/n when n_salient = 0 (no mask, no grid: per row μ and α only).
 * Either output may be NULL. */
void qh_pbllm_bits(size_t n_salient, int high_bits, size_t m, size_t n, double *nominal,
                   double *side);

/* The salient mask: exactly k = round(frac·count) entries of metric (count
 * values) are set, those with the largest metric; among equal values the
 * lower index wins.  mask: count bytes (1 = salient).  scratch: count
 * doubles.  Returns k. */
size_t qh_pbllm_select_top(const double *metric, size_t count, double frac, uint8_t *mask,
                           double *scratch);

#endif
