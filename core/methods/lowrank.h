/* lowrank.h -- the "lowrank" method row: truncated SVD, Ŵ = U_r Σ_r V_rᵀ, the
 * natural baseline for CompactifAI's MPO at equal parameters (methods
 * reference §14).  It is the two-core MPO whose cut separates the inputs from
 * the outputs (mpo.h with in = (n, 1), out = (1, m)): core 1 = V_r (n x r),
 * core 2 = Σ_r U_rᵀ (r x m), so it shares the MPO engine, the bits accounting
 * and the healing block ops (heal_steps, heal_lr, heal_batch; Adam on both
 * factors from ∂ℓ/∂U = G V, ∂ℓ/∂V = Gᵀ U by the same chain rule), and the
 * end-to-end KL healing of mpo.h (heal_kl_steps, heal_kl_lr, heal_kl_batch).
 *
 * hessian = 1: the same truncation of A = W·S, S = (H + λ·mean(diag H)·I)^{1/2}
 * (symmetric square root by dsyevd; λ = damp), mapped back as Ŵ = Â·S^{-1}
 * (core 1 ← S^{-1} V_r).  Then ‖(Ŵ−W)S‖_F² = tr((Ŵ−W)(H+λ'I)(Ŵ−W)ᵀ) is
 * minimal over rank r (Eckart–Young under the damped proxy).
 *
 * Width: `bits` is the storage width of a factor entry, as for mpo: 16 (FP16)
 * or 2..8 (per-column min-max RTN of each factor matrix, FP16 step and zero
 * per column).  Bits per original weight: bits·r(m+n)/(mn) (+ 32·2r/(mn)
 * side when rounded).  A rank above min(m, n) is capped there.
 * Result fields as mpo's; damp_used = λ with hessian.
 */
#ifndef QH_METHOD_LOWRANK_H
#define QH_METHOD_LOWRANK_H

#include "mpo.h"

typedef struct {
    qh_mpo_heal_params heal;
    int rank;                        /* r */
    int hessian;                     /* 1: truncate W·H^{1/2} */
    double damp;                     /* relative damping of H for hessian */
} qh_lowrank_params;

extern const qh_method_type qh_method_lowrank;

#endif
