/* block_tune.h -- PTQ1.61's block objective (methods reference §8, step 4):
 * the learned scales (α, r1, r2) of every linear of one decoder block tuned
 * jointly against the block's output.
 *
 * Per window (one calibration sequence, batch 1 as in the reference):
 *   Y_q  = the block with its current quantized weights on the quantized-path
 *          input x (the outputs of the already-quantized blocks);
 *   Y_fp = the float block on the float-path input x_fp (no block quantized);
 *   Y_fq = the float block on the quantized-path input x;
 *   loss = MSE(Y_q, Y_fp) + MSE(Y_q, Y_fq) − log|c(Y_q, Y_fp)| − log|c(Y_q, Y_fq)|,
 * where MSE averages over all hidden x T entries and c is the mean over the
 * T tokens of the cosine similarity of the hidden vectors, each cosine
 * x·y / max(‖x‖‖y‖, 1e-8) (torch.nn.CosineSimilarity over the hidden axis).
 * One Adam step (qh_adam.h; lr_alpha for α, lr_r for r1 and r2; μ, signs and
 * the salient columns fixed) per window, the windows in calibration order,
 * `epochs` passes; the last iterate is kept, as in the reference.  The
 * gradient with respect to every linear's Ŵ comes from one backward pass of
 * the block (block_grad.h) and goes to (α, r1, r2) by qh_ptq161_param_grad.
 *
 * Differences from the reference: float32 throughout (no AMP); the windows
 * are the harness's calibration windows (nsamples x seqlen of the config, not
 * 128 x 2048 of WikiText-2); the layer stage before it may run `steps` Adam
 * steps on each layer's proxy (the reference starts from α = mean|w|, r = 1:
 * steps = 0).
 */
#ifndef QH_BLOCK_TUNE_H
#define QH_BLOCK_TUNE_H

#include <stddef.h>

#include "model/model.h"
#include "ptq161.h"

typedef struct {
    int epochs;                      /* passes over the windows (0: evaluate only) */
    double lr_alpha, lr_r;           /* Adam learning rates of α and of r1, r2 */
} qh_block_tune_params;

typedef struct {
    double loss_init, loss_final;    /* mean over the windows of the loss, before and after */
    double mse_fp_init, mse_fp_final;/* mean of its MSE(Y_q, Y_fp) term */
    size_t steps;                    /* Adam steps taken */
    double seconds;
} qh_block_tune_stats;

/* The loss of one window (hidden x T each) and, when dy is non-NULL, its
 * gradient with respect to yq (hidden x T).  *mse_fp (may be NULL) gets
 * MSE(yq, y_fp). */
double qh_block_loss(const float *yq, const float *y_fp, const float *y_fq, size_t hidden,
                     size_t T, float *dy, double *mse_fp);

/* Tunes the states of block `layer` (states[kind] for every linear the block
 * has; others NULL) on nsamples windows of T tokens: x (quantized path) and
 * x_fp (float path), hidden x T each; W_fp[kind] the block's float weights in
 * qh_linear.W's layout.  The states must be in the model's basis (ptq161
 * without incoherence processing).  On return the block holds the tuned Ŵ
 * (float32) and the states the tuned scales.  Returns QH_OK, QH_EINVAL (a
 * missing state or a shape mismatch, naming the linear), QH_EUNIMPL (a block
 * the backward pass does not cover), QH_ENAN (a non-finite loss, naming the
 * block and step), QH_ENOMEM. */
int qh_block_tune_ptq161(qh_model *m, int layer, const float *x, const float *x_fp,
                         size_t nsamples, size_t T, float *const W_fp[QH_LIN_MAX],
                         qh_ptq161_state *const states[QH_LIN_MAX],
                         const qh_block_tune_params *p, qh_block_tune_stats *stats) QH_MUST_CHECK;

#endif
