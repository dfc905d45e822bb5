/* block_stage.h -- the block stage: a method's parameters of every linear of
 * one decoder block tuned jointly against the block's output, for any row
 * that declares block ops (qh_block_ops in qh_method.h): PTQ1.61's objective
 * (methods reference §8, step 4), SignRound's loop (§12), AQLM's block
 * fine-tuning (§10, step 3).  The stage owns the block forward, the loss and
 * the backward pass; the method owns its parameters and optimiser, and says
 * through its plan (qh_block_plan) which loss, how many steps, how many
 * windows per step and how they are drawn, and which iterate is kept.
 *
 * Per window (one calibration sequence):
 *   Y_q  = the block with its current quantized weights on the quantized-path
 *          input x (the outputs of the already-quantized blocks);
 *   Y_fp = the float block on the float-path input x_fp (no block quantized);
 *   Y_fq = the float block on the quantized-path input x (PTQ1.61's loss only).
 * Losses (QH_BLOCK_LOSS_*):
 *   PTQ161: MSE(Y_q, Y_fp) + MSE(Y_q, Y_fq) − log|c(Y_q, Y_fp)| − log|c(Y_q, Y_fq)|,
 *           c the mean over the T tokens of the cosine similarity of the hidden
 *           vectors, each cosine x·y / max(‖x‖‖y‖, 1e-8) (torch.nn.CosineSimilarity);
 *   MSE:    MSE(Y_q, Y_fp) (auto-round's and AQLM's fine-tuning loss);
 * MSE averages over all hidden x T entries.  A step's loss is the mean of its
 * windows' losses (a minibatch of `batch` windows of equal length, as
 * torch's mean-reduced MSE over the batch); every linear's Ŵ is the row's
 * block->reconstruct of its state; one backward pass per window (model/backward.h)
 * accumulates G = ∂loss/∂Ŵ of every linear, and block->step takes one
 * optimiser step of each state from its G (step numbers 1 .. plan.steps).
 * Windows per step: in calibration order, wrapping (one pass = one epoch), or
 * `batch` distinct windows drawn per step from the stream keyed by the seed
 * and the block (QH_RNG_BLOCK_DRAW).  Kept iterate: the last, the best
 * minibatch loss seen before a step (keep_best), or the best pass by the
 * mean loss over all windows with early stopping (patience).
 *
 * Differences from the authors' code: float32 throughout (no AMP); the
 * windows are the harness's calibration windows (nsamples x seqlen of the
 * config); PTQ1.61's layer stage before it may run `steps` Adam steps on
 * each layer's proxy (the reference starts from α = mean|w|, r = 1: steps = 0).
 */
#ifndef QH_BLOCK_STAGE_H
#define QH_BLOCK_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "qh_method.h"

typedef struct {
    double loss_init, loss_final;    /* mean over all windows of the plan's loss, before and after */
    double mse_fp_init, mse_fp_final;/* mean of MSE(Y_q, Y_fp) over all windows */
    double best_step_loss;           /* keep_best: the lowest minibatch loss (its state is kept);
                                        NAN otherwise */
    size_t steps;                    /* optimiser steps taken (per linear) */
    size_t passes_stopped;           /* patience: passes run when early stopping ended the
                                        tuning; 0 when it ran all its steps */
    double seconds;
} qh_block_stage_stats;

/* Called after every step (step of steps, the step's minibatch loss, the best
 * so far or NAN, seconds since the stage began), for progress lines. */
typedef void (*qh_block_progress_fn)(int layer, long step, long steps, double loss, double best,
                                     double seconds, void *user);

typedef struct {
    uint64_t seed;                   /* the cell's seed: random window draws */
    qh_block_progress_fn progress;   /* NULL: quiet */
    void *user;
} qh_block_stage_opts;

/* PTQ1.61's loss of one window (hidden x T each) and, when dy is non-NULL,
 * its gradient with respect to yq (hidden x T).  *mse_fp (may be NULL) gets
 * MSE(yq, y_fp). */
double qh_block_loss(const float *yq, const float *y_fp, const float *y_fq, size_t hidden,
                     size_t T, float *dy, double *mse_fp);
/* MSE(yq, y_fp) over n entries and, when dy is non-NULL, scale times its
 * gradient with respect to yq. */
double qh_block_loss_mse(const float *yq, const float *y_fp, size_t n, double scale, float *dy);

/* Tunes the states of block `layer` with method t's block ops (t->block;
 * params its parameters): states[kind] for every linear of the block that
 * is tuned, each filled by t's quantize through qh_problem.state_out (a NULL
 * state: the linear is kept as it is, e.g. skipped by a per-layer rule),
 * on nsamples windows of T tokens: x (quantized path) and x_fp (float path),
 * hidden x T each; W_fp[kind] the block's float weights in qh_linear.W's
 * layout; opts may be NULL (seed 0, quiet).  The states must be in the
 * model's basis (no incoherence processing).  On return the block holds the
 * tuned Ŵ (float32) and the states the kept parameters.  Returns QH_OK,
 * QH_EINVAL (a row without block ops, a missing or unfilled state or a shape
 * mismatch, naming the linear; a plan with keep_best or patience and no keep
 * op, or with both), QH_EUNIMPL (a block the backward pass does not cover),
 * QH_ENAN (a non-finite loss, naming the block and step), QH_ENOMEM, or a
 * status of block->step or block->keep. */
int qh_block_stage_tune(qh_model *m, int layer, const float *x, const float *x_fp,
                        size_t nsamples, size_t T, float *const W_fp[QH_LIN_MAX],
                        const qh_method_type *t, const void *params,
                        void *const states[QH_LIN_MAX], const qh_block_stage_opts *opts,
                        qh_block_stage_stats *stats) QH_MUST_CHECK;

#endif
