/* pvq.h -- the "pvq" method row: PVQ-LLM-style pyramid vector quantization of
 * weight groups (van der Ouderaa et al. 2024, arXiv 2410.16926; methods
 * reference §11; codebook arithmetic in core/qh_pvq.h).
 *
 * Each row of W̃ (processed basis; ask the driver for incoherence
 * "hadamard" so that rows look i.i.d. Gaussian) is cut into groups of D
 * consecutive columns.  A group w is stored as
 *   ŵ = s_r · a_l · y/‖y‖,
 * y a point of the pyramid P(D, K) (index of log₂V(D, K) bits), a_l one of
 * 2^amp_bits amplitude levels (Beta quantiles, qh_pvq_amp_levels) and s_r the
 * row's FP16 norm ‖W̃_r‖.  Groups are quantized left to right with GPTQ-style
 * error feedback between groups (see pvq.c).
 *
 * Result fields: What_proc; H_proc = the damped H; col_order natural,
 * order "natural"; grid empty (not a scalar grid); row_scale[r] = s_r;
 * n_iterations = 0 (one pass, nothing iterated); bits_nominal = (log₂V(D, K) + amp_bits)/D, fractional (a row's group
 * indices packed in mixed radix), bits_side = 16/n (one FP16 norm per row).
 */
#ifndef QH_METHOD_PVQ_H
#define QH_METHOD_PVQ_H

#include <stddef.h>

#include "qh_method.h"

typedef struct {
    int group;                       /* D: columns per PVQ vector (must divide n) */
    int pulses;                      /* K; 0 = the largest K that fits the bit budget */
    int amp_bits;                    /* bits of the per-group amplitude index */
    int hessian_search;              /* 1: pulses scored in the group's H metric */
    int feedback;                    /* 1: GPTQ-style error feedback across groups */
    int moves;                       /* pulse moves after the Hessian greedy fill */
    int blocksize;                   /* lazy-feedback panel in columns (rounded to D) */
    double damp;                     /* relative damping of H */
} qh_pvq_params;

extern const qh_method_type qh_method_pvq;

/* The pulses and bits of a pvq configuration for a budget of `bits` per
 * weight and rows of n columns: *K (params->pulses or the choice of
 * qh_pvq_choose_k), *nominal = (log₂V(D, K) + amp_bits)/D, *side = 16/n.
 * Any output pointer may be NULL.  Returns QH_OK; QH_EINVAL when D does not
 * divide n, when no K fits the budget, or when V(D, K) does not fit the
 * 64-bit index of qh_pvq (the message names D and K). */
int qh_pvq_bits(const qh_pvq_params *p, int bits, size_t n, unsigned *K, double *nominal,
                double *side) QH_MUST_CHECK;

#endif
