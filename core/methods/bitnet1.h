/* bitnet1.h -- the "bitnet1" method row: BitNet's 1-bit weight quantizer
 * (Wang et al. 2023, arXiv 2310.11453, eq. 1-3) applied after training:
 * Ŵ = β·sign(W − α), α = mean W, β = mean |W| per tensor (the paper), row or
 * group, with and without GPTQ-style error feedback under H (see bitnet1.c).
 *
 * Result fields: What_proc; H_proc; col_order natural; grid left empty;
 * bits_nominal = 1; bits_side = one FP16 β per scope (α is needed only to
 * choose the signs, not to decode them). */
#ifndef QH_METHOD_BITNET1_H
#define QH_METHOD_BITNET1_H

#include "qh_method.h"

typedef struct {
    int scope;                       /* QH_SCOPE_TENSOR | QH_SCOPE_ROW (ternary.h) */
    int group;                       /* 0, or columns per group: one (α, β) per row and group */
    int feedback;                    /* 1: GPTQ column loop with error feedback under H */
    double damp;                     /* relative damping of H (feedback) */
} qh_bitnet1_params;

extern const qh_method_type qh_method_bitnet1;

/* One weight: β·sign(w − α), sign(0) = +1 (a stored bit has two states). */
double qh_bitnet1_round(double w, double alpha, double beta);

#endif
