/* backward.h -- reverse-mode gradient of one decoder block with respect to
 * the weights of its linear layers.
 *
 * For a scalar loss L of a block's output y, the backward pass turns
 * dy = dL/dy into dL/dW for every linear W of the block (q, k, v, o and the
 * MLP's up/down or gate/up/down), the quantity that gradient-based
 * fine-tuning of quantized weights or gradient-weighted proxies need.
 *
 * Layouts as in forward.h: activations are column-major (dim x T) matrices
 * with token t's vector contiguous at x + t*dim.  A gradient G[k] has the
 * layout of qh_linear.W, row-major [out][in]:
 *     G[k][i*in + j] += sum_t dY_k[i,t] * X_k[j,t]
 * with X_k the linear's input and dY_k = dL/d(W_k X_k) over the window.
 *
 * A tape holds what the backward pass needs of one window: the inputs of the
 * linears, q and k after RoPE, v, the softmax probabilities of every head
 * (causal-packed in blocks of 128 query columns: block b holds keys
 * 0..end of the block, so about T^2/2 + 64 T floats per head), the MLP's
 * pre-activations and the residual stream between the two sublayers; and the
 * scratch of the backward pass.  It is sized once by qh_block_tape_alloc, so
 * neither pass allocates.  Every heavy step is an sgemm (BLAS threads as
 * configured): per linear one product forward, one for the input gradient and
 * one accumulating dW; per head and query block QK^T and PV forward and four
 * products backward (dV, dP, dQ, dK); norms, RoPE, softmax and activations
 * are plain loops.
 *
 * Biases and norm weights are constants: no gradients are formed for them.
 * qh_block_backward stops at the inputs of q/k/v (the first norm is not
 * differentiated); qh_block_backward_input goes on to dL/dx of the block
 * input x: through the attention-input norm, the MLP-input norm (on x1, or on
 * x with a parallel residual) and both residual paths, so that blocks chain
 * (dx of block l is dy of block l - 1).  qh_head_backward turns dL/dlogits
 * into dL/dh of the last block's output through the final soft-capping, the
 * lm_head, project_out and the final norm, for end-to-end losses on the
 * logits (pipeline/model_stage.h).
 *
 * Left out: post-LN blocks (OPT's do_layer_norm_before = false, as in
 * OPT-350m).  There each sublayer's LayerNorm sits on the residual stream
 * after the add, so the gradient would have to pass a norm at the block's
 * output before reaching any linear, and the tape would have to keep both
 * normalised sums; qh_block_tape_alloc returns QH_EUNIMPL for such a model
 * rather than silently differentiating the wrong function.  Likewise for a
 * gated ReLU MLP, and for what the forward pass refuses
 * (qh_forward_check_features).  Differentiated: plain or gated SiLU,
 * tanh-GELU and exact GELU MLPs, plain ReLU, sandwich norms (through both
 * post-norms), parallel residual blocks (the attention output receives dy
 * directly), the soft-capped scores (times 1 - tanh^2 of the raw score over
 * the cap, the raw scores recomputed per block) and any score scale.
 * With sandwich norms the tape keeps o's and down's outputs (2 hidden x T
 * more, and hidden x T scratch); with soft-capping one more T x 128 scratch.
 *
 * Memory of a tape for T tokens, in floats (qh_block_tape_bytes tells):
 *     T (5 hidden + 4 q_dim + 4 kv_dim + 3 ffn + 128)   activations, scratch
 *   + n_heads T (T + 128) / 2                           probabilities (at most)
 *   + T (2 ffn)                                         gated MLP only: up
 *   + T (3 head_dim / 2)                                RoPE only
 * e.g. opt-30m (hidden 512, ffn 2048, 8 heads) at T = 512: 30.3 MiB, of
 * which 5 MiB probabilities; at T = 1024, 50.5 MiB + 18 MiB.
 */
#ifndef QH_BLOCK_GRAD_H
#define QH_BLOCK_GRAD_H

#include <stddef.h>

#include "model/model.h"
#include "qh_error.h"

typedef struct qh_block_tape qh_block_tape;   /* opaque: saved activations of one window */

/* Tape for windows of up to T tokens of model m's shapes (one allocation,
 * reused by every call; it borrows nothing from m).  QH_EINVAL for T < 1 (or
 * T > max_pos with learned positions), QH_ECONFIG for head shapes the forward
 * pass refuses too, QH_EUNIMPL for features it cannot differentiate (post-LN
 * blocks, see above), QH_ENOMEM. */
int qh_block_tape_alloc(const qh_model *m, size_t T, qh_block_tape **out) QH_MUST_CHECK;
void qh_block_tape_free(qh_block_tape *t);  /* NULL: no-op */

/* Bytes held by a tape (its buffers and its handle). */
size_t qh_block_tape_bytes(const qh_block_tape *t);

/* FLOPs of the sgemm calls (2 per multiply-add, as executed) of the tape's
 * last forward and last backward call; either pointer may be NULL. */
void qh_block_tape_flops(const qh_block_tape *t, double *forward, double *backward);

/* y (hidden x T, column-major like forward.h) = decoder block `layer` applied
 * to x (not modified; y != x) with the model's current weights, recording on
 * the tape what the backward pass needs.  Equals qh_forward_block's result up
 * to float rounding.  QH_EINVAL for a bad layer, T outside [1, capacity] or
 * y == x; QH_EBADLEN for a model of other shapes than the tape's. */
int qh_block_forward_tape(const qh_model *m, int layer, const float *x, size_t T, float *y,
                          qh_block_tape *tape) QH_MUST_CHECK;

/* dy = dL/dy (hidden x T) for the y of the last qh_block_forward_tape on this
 * tape (same layer, same weights).  Adds dL/dW_k to G[k] for every kind k
 * (enum qh_linear_kind) with G[k] != NULL and the block having that linear;
 * G[k] has the layout of qh_linear.W (row-major out x in).  Kinds with
 * G[k] == NULL are not written, and the parts of the backward pass that only
 * they need are skipped.  The tape's saved activations are not modified, so
 * a second call adds the same gradients again.  QH_EINVAL when the tape holds
 * no forward pass of this layer, QH_EBADLEN for a model of other shapes. */
int qh_block_backward(const qh_model *m, int layer, const float *dy, qh_block_tape *tape,
                      float *const G[QH_LIN_MAX]) QH_MUST_CHECK;

/* As qh_block_backward, and dx (hidden x T, overwritten) = dL/dx for the block
 * input x, the x (not modified since) given to the last qh_block_forward_tape
 * of this tape: the tape does not keep it.  Every inner gradient is formed
 * (the q/k/v paths too) whatever G asks for.  QH_EINVAL as qh_block_backward,
 * and for x or dx NULL or dx aliasing x or dy. */
int qh_block_backward_input(const qh_model *m, int layer, const float *x, const float *dy,
                            qh_block_tape *tape, float *const G[QH_LIN_MAX],
                            float *dx) QH_MUST_CHECK;

/* dx (hidden x T, overwritten) = dL/dx for x, the last block's output given to
 * qh_forward_head, from dlogits = dL/dlogits (vocab x T) of the logits it
 * returned (read only with final soft-capping, where d tanh is formed from
 * them).  The lm_head (tied or not), project_out and the final norm's weights
 * are constants.  Allocates (hidden + embed + vocab with soft-capping) x T
 * floats of scratch per call.  QH_OK, QH_EINVAL (T < 1, NULL pointers, dx ==
 * x), QH_ENOMEM. */
int qh_head_backward(const qh_model *m, const float *x, const float *logits, const float *dlogits,
                     size_t T, float *dx) QH_MUST_CHECK;

#endif
