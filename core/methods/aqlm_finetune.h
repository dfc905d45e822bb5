/* aqlm_finetune.h -- AQLM's block fine-tuning (methods reference §10, step 3):
 * the block ops of the "aqlm" row (core/methods/aqlm.h).
 *
 * After every linear of a decoder block is AQLM-coded, the codes stay frozen
 * and the codebooks and per-row scales of all of the block's linears are
 * tuned together by Adam (betas (0.9, 0.95), ε 1e-8) against the MSE between
 * the block's output on the quantized-path input and the float block's
 * output on the float-path input (experiments/pipeline/block_stage.h,
 * QH_BLOCK_LOSS_MSE): ft_batch windows per step in calibration order, at
 * most `finetune` passes over the windows, and, with ft_patience > 0, the
 * pass with the lowest mean block loss over all windows kept, stopping after
 * ft_patience passes without a lower one.
 *
 * Gradients, with G = ∂ℓ/∂Ŵ and Ŵ_r,group j = s_r Σ_k C_k[code_{r,j,k}]:
 *   ∂ℓ/∂C_k[c] = Σ_{(r,j): code_{r,j,k} = c} s_r G_{r, group j};
 *   ∂ℓ/∂s_r    = Σ_col G_{r,col} U_{r,col},  U the unscaled decode.
 * With fp16 = 1, Ŵ is decoded from the codebooks and scales rounded to FP16
 * precision and the gradient passes the rounding straight through to the
 * double master copies Adam updates (as mixed-precision training keeps FP32
 * masters), so the tuned Ŵ stays representable at the counted width.
 *
 * Differences from the reference code (Vahe1994/AQLM finetune.py,
 * finetune_groupwise): only the linears' codebooks and scales are tuned, not
 * the block's norms and biases (the row owns only its linears); early stopping
 * watches the loss on the calibration windows themselves (the reference holds
 * out 128 validation sequences), with no held-out split; the windows of a
 * pass are taken in calibration order (the calibration windows are random
 * draws already; the reference permutes once); float32 block passes, double
 * parameters.
 */
#ifndef QH_METHOD_AQLM_FINETUNE_H
#define QH_METHOD_AQLM_FINETUNE_H

#include <stddef.h>
#include <stdint.h>

#include "aqlm.h"
#include "qh_method.h"

/* The state one linear exports through qh_problem.state_out (from
 * qh_aqlm_block_ops.state_new; its memory is reused when the shape matches). */
typedef struct {
    qh_aqlm_ctx view;                /* shape (m, n, g, J, M, B, K) and codes; cb/scale unused */
    uint16_t *codes;                 /* (m·J·M) frozen codes, the view's */
    int fp16;                        /* decode from FP16-rounded copies */
    double *cb, *scale;              /* (M·K·g), (m): Adam's master copies */
    double *cb_use, *scale_use;      /* what Ŵ is decoded from (rounded when fp16) */
    double *cb_saved, *scale_saved;  /* keep's copies */
    double *g_cb, *g_scale;          /* the step's gradients */
    double *mom;                     /* Adam moments: cb m, v; scale m, v */
    double *U;                       /* (m·n) unscaled decode, for ∂ℓ/∂s */
} qh_aqlm_state;

extern const qh_block_ops qh_aqlm_block_ops;

/* Fills s (allocating or reusing its memory) from a solved ctx: its codes,
 * codebooks and scales.  QH_OK or QH_ENOMEM. */
int qh_aqlm_state_fill(qh_aqlm_state *s, const qh_aqlm_ctx *c, int fp16) QH_MUST_CHECK;
void qh_aqlm_state_free(qh_aqlm_state *s);      /* frees members, zeroes; NULL: no-op */

/* The gradients of ℓ with respect to the state's codebooks (g_cb) and scales
 * (g_scale) from G = ∂ℓ/∂Ŵ (m x n) at the state's Ŵ. */
void qh_aqlm_state_grad(qh_aqlm_state *s, const qh_matd *G);

#endif
