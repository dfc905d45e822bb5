/* model_stage.h -- the whole-model stage: a method's parameters of every
 * decoder linear of the model tuned jointly, end to end, against the KL
 * divergence of the model's next-token distributions to the float model's on
 * calibration windows (CompactifAI's healing, methods reference §14; the mpo
 * and lowrank rows' heal_kl_steps).  It runs after the block-sequential
 * loop, when every block is quantized (and block-tuned), for a row whose
 * block ops have model_plan / model_step (qh_method.h) and whose plan has
 * steps > 0.
 *
 * Loss of one window of T tokens (ids), p the float model's and q the
 * quantized model's softmax over the vocabulary at every position t:
 *     KL = (1/T) Σ_t Σ_v p_tv (log p_tv − log q_tv),
 * whose gradient with respect to q's logits is (q_t − p_t)/T.  A step's loss
 * is the mean over `batch` windows (drawn at random per step from a stream
 * keyed by the cell's seed, QH_RNG_MODEL_DRAW).  The float logits are
 * recomputed by the float model (an unmodified copy, e.g. the checkpoint
 * loaded again) for every window and step rather than cached: vocab x T
 * floats per window would be GBs for a calibration set.
 *
 * Gradient: the quantized model's forward keeps the input of every block
 * (n_layers + 1 hidden states of hidden x T); the backward pass turns
 * dlogits into dh by qh_head_backward, then for blocks L−1 .. 0 re-runs the
 * block's taped forward on its stored input (one tape for the whole model:
 * recomputation instead of n_layers tapes) and qh_block_backward_input adds
 * dL/dW of its linears and gives the next dy.  dL/dŴ of each linear goes to
 * the method's model_step (for mpo and lowrank, the chain rule to the cores
 * and an Adam step).  The best minibatch iterate is kept (plan.keep_best).
 *
 * Memory besides the model and the float model: per window 2 vocab x T floats
 * (logits), (n_layers + 4) hidden x T, one block tape (backward.h) and a
 * forward workspace; a float gradient of every decoder linear (the size of
 * the decoder's weights) and a double m x n of the largest linear.
 */
#ifndef QH_MODEL_STAGE_H
#define QH_MODEL_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "qh_method.h"

typedef struct {
    double kl_init, kl_final;        /* mean KL over all calibration windows, before / after */
    double best_step_kl;             /* the lowest minibatch KL (its state kept); NAN: no step */
    size_t steps;
    double seconds;
} qh_model_stage_stats;

/* Called after every step (step of steps, the step's minibatch KL, the best so
 * far, seconds since the stage began). */
typedef void (*qh_model_progress_fn)(long step, long steps, double kl, double best,
                                     double seconds, void *user);

typedef struct {
    uint64_t seed;                   /* the cell's seed: random window draws */
    qh_model_progress_fn progress;   /* NULL: quiet */
    void *user;
} qh_model_stage_opts;

/* Scratch for the KL and its gradient on windows of T tokens of m's shapes. */
typedef struct qh_kl_ws qh_kl_ws;
int qh_kl_ws_alloc(const qh_model *m, size_t T, qh_kl_ws **out) QH_MUST_CHECK;
void qh_kl_ws_free(qh_kl_ws *ws);    /* NULL: no-op */

/* *kl = the token-mean KL(p_float || q_m) of one window ids[0..T) (float_m:
 * the float model, of m's shapes).  With G non-NULL, adds scale times its
 * gradient with respect to the weights of every decoder linear into
 * G[layer * QH_LIN_MAX + kind] (qh_linear.W's layout, row-major out x in;
 * NULL entries skipped).  QH_OK, QH_EINVAL, QH_EUNIMPL (a model the backward
 * pass does not cover), QH_ENAN (non-finite logits). */
int qh_model_kl(const qh_model *m, const qh_model *float_m, const int32_t *ids, size_t T,
                qh_kl_ws *ws, double scale, float *const *G, double *kl) QH_MUST_CHECK;

/* Tunes states[layer * QH_LIN_MAX + kind] (every linear of the model, filled
 * by t's quantize through qh_problem.state_out; a NULL state keeps its
 * linear as it is, e.g. one skipped by a per-layer rule) with t's block ops
 * (model_plan, model_step, reconstruct, keep) against the mean KL over
 * nsamples windows of T tokens (windows: nsamples x T ids).  On return the
 * model holds the kept Ŵ (float32) and the states the kept parameters.
 * QH_OK, QH_EINVAL (no model ops, a missing or unfilled state), QH_EUNIMPL,
 * QH_ENAN, QH_ENOMEM or a status of the method's ops. */
int qh_model_stage_tune(qh_model *m, const qh_model *float_m, const int32_t *windows,
                        size_t nsamples, size_t T, const qh_method_type *t, const void *params,
                        void *const *states, const qh_model_stage_opts *opts,
                        qh_model_stage_stats *stats) QH_MUST_CHECK;

#endif
