/* block_stage.h -- the block stage: a method's parameters of every linear of
 * one decoder block tuned jointly against the block's output (PTQ1.61's
 * objective, methods reference §8, step 4), for any row that declares block
 * ops (qh_block_ops in qh_method.h).  The stage owns the block forward, the
 * loss and the backward pass; the method owns its parameters and optimiser.
 *
 * Per window (one calibration sequence, batch 1 as in PTQ1.61's reference):
 *   Y_q  = the block with its current quantized weights on the quantized-path
 *          input x (the outputs of the already-quantized blocks);
 *   Y_fp = the float block on the float-path input x_fp (no block quantized);
 *   Y_fq = the float block on the quantized-path input x;
 *   loss = MSE(Y_q, Y_fp) + MSE(Y_q, Y_fq) − log|c(Y_q, Y_fp)| − log|c(Y_q, Y_fq)|,
 * where MSE averages over all hidden x T entries and c is the mean over the
 * T tokens of the cosine similarity of the hidden vectors, each cosine
 * x·y / max(‖x‖‖y‖, 1e-8) (torch.nn.CosineSimilarity over the hidden axis).
 * Every linear's Ŵ is the row's block->reconstruct of its state; one backward
 * pass of the block (model/backward.h) gives G = ∂loss/∂Ŵ of every linear,
 * and block->step takes one optimiser step of each state from its G (step
 * numbers 1, 2, ... across the whole tuning).  The windows in calibration
 * order, block->epochs(params) passes; the last iterate is kept, as in the
 * reference.  ptq161's step is Adam on (α, r1, r2) (core/methods/ptq161.c).
 *
 * Differences from PTQ1.61's reference: float32 throughout (no AMP); the
 * windows are the harness's calibration windows (nsamples x seqlen of the
 * config, not 128 x 2048 of WikiText-2); the layer stage before it may run
 * `steps` Adam steps on each layer's proxy (the reference starts from
 * α = mean|w|, r = 1: steps = 0).
 */
#ifndef QH_BLOCK_STAGE_H
#define QH_BLOCK_STAGE_H

#include <stddef.h>

#include "model/model.h"
#include "qh_method.h"

typedef struct {
    double loss_init, loss_final;    /* mean over the windows of the loss, before and after */
    double mse_fp_init, mse_fp_final;/* mean of its MSE(Y_q, Y_fp) term */
    size_t steps;                    /* optimiser steps taken (per linear) */
    double seconds;
} qh_block_stage_stats;

/* The loss of one window (hidden x T each) and, when dy is non-NULL, its
 * gradient with respect to yq (hidden x T).  *mse_fp (may be NULL) gets
 * MSE(yq, y_fp). */
double qh_block_loss(const float *yq, const float *y_fp, const float *y_fq, size_t hidden,
                     size_t T, float *dy, double *mse_fp);

/* Tunes the states of block `layer` with method t's block ops (t->block;
 * params its parameters): states[kind] for every linear the block has
 * (others unused), each filled by t's quantize through qh_problem.state_out,
 * on nsamples windows of T tokens: x (quantized path) and x_fp (float path),
 * hidden x T each; W_fp[kind] the block's float weights in qh_linear.W's
 * layout.  The states must be in the model's basis (no incoherence
 * processing).  On return the block holds the tuned Ŵ (float32) and the
 * states the tuned parameters.  Returns QH_OK, QH_EINVAL (a row without
 * block ops, a missing or unfilled state or a shape mismatch, naming the
 * linear), QH_EUNIMPL (a block the backward pass does not cover), QH_ENAN (a
 * non-finite loss, naming the block and step), QH_ENOMEM, or a status of
 * block->step. */
int qh_block_stage_tune(qh_model *m, int layer, const float *x, const float *x_fp,
                        size_t nsamples, size_t T, float *const W_fp[QH_LIN_MAX],
                        const qh_method_type *t, const void *params,
                        void *const states[QH_LIN_MAX], qh_block_stage_stats *stats) QH_MUST_CHECK;

#endif
