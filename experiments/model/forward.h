/* forward.h -- float32 forward pass of OPT and Llama decoders, block by block.
 *
 * Activations are column-major (dim x T) matrices: token t's vector is
 * contiguous at x + t*dim.  A linear layer with Hugging Face row-major
 * W[out][in] is applied as one sgemm, y = W x + b.  Every heavy step (linears,
 * QK^T and PV per head, lm_head) is an sgemm; norms, RoPE, softmax and
 * activations are plain loops.
 *
 * The pass is exposed in pieces so that the quantization pipeline can run one
 * decoder block at a time on stored hidden states, see the input of every
 * linear layer through a hook (to accumulate H = X X^T) and swap a layer's
 * weights between blocks:
 *
 *     qh_forward_embed  ids (T)            -> x (hidden x T)
 *     qh_forward_block  x (hidden x T)     -> x, in place, one decoder layer
 *     qh_forward_head   x (hidden x T)     -> logits (vocab x T)
 *     qh_forward_window ids (T)            -> logits (vocab x T), all of the above
 *
 * A rotated model (model/rotate.h) with online_had_down gets the normalized
 * Hadamard of size ffn applied to the down input after the MLP activation
 * (before the hook), and its head_bias added to the logits.
 *
 * With m->act_quant set (model/act_quant.h), each decoder linear is applied to a
 * fake-quantized copy of its input (ws->aq; the hook still sees the float
 * input) and K, V are fake-quantized in place after projection and RoPE.
 *
 * What is computed follows the model's features (model/family.h): pre- or
 * post-LN blocks, LayerNorm or RMSNorm (optionally scaling by 1 + w),
 * learned positions at an offset or rotate-half RoPE (default, linear or
 * llama3 frequencies; on all or the leading head dims), per-head q/k RMSNorm,
 * grouped-query attention, sliding-window attention on the layers the config
 * names, a ReLU, SiLU, tanh-GELU or exact GELU MLP, plain (up, down) or gated
 * (gate, up, down), embeddings scaled by sqrt(hidden), optional
 * project_in/project_out, parallel residual blocks (GPT-NeoX), sandwich
 * norms, score scale query_pre_attn_scalar^-1/2 and attention / final logit
 * soft-capping (Gemma 2).  The loader refuses dynamic/yarn RoPE.  No KV
 * caches (every call scores a whole window from position 0).
 */
#ifndef QH_FORWARD_H
#define QH_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "qh_error.h"

/* Seconds and FLOPs spent by a workspace's calls, by kind of work.  Time is
 * only measured when ws->profile is nonzero; FLOPs (2 per multiply-add of the
 * sgemm calls, as executed) are always counted.  Reset with memset. */
typedef struct {
    double linear_s, attn_gemm_s, softmax_s, head_s, other_s;
    double linear_flops;             /* decoder linears */
    double attn_flops;               /* QK^T and PV, causal blocks as executed */
    double head_flops;               /* project_out + lm_head */
} qh_forward_stats;

/* Scratch for windows of up to `capacity` tokens, sized for one model's
 * shapes: allocated once by qh_forward_ws_alloc, reused by every call, so the
 * forward pass itself never allocates.  Fields are read-only for callers
 * except `profile` and `stats`; `x` (hidden x capacity) is free for a caller
 * to hold hidden states between qh_forward_embed/block/head calls (it is what
 * qh_forward_window uses). */
typedef struct {
    size_t capacity;                 /* max tokens per call */
    size_t hidden, embed_dim, q_dim, kv_dim, ffn_dim, head_dim, qblock;
    float *x;                        /* (hidden x capacity) */
    float *xn;                       /* (max(hidden, embed_dim) x capacity) normalised input */
    float *q, *k, *v;                /* (q_dim x cap), (kv_dim x cap), (kv_dim x cap) */
    float *att;                      /* (q_dim x cap) attention output, input of o_proj */
    float *f1, *f2;                  /* (ffn_dim x cap) MLP hidden; f2 gated MLPs only */
    float *tmp;                      /* (max(hidden, embed_dim) x cap) */
    float *scores;                   /* (capacity x qblock) per thread: one head's probabilities */
    float *inv_sum;                  /* (qblock) per thread: softmax normalisers of one block */
    float *rope_cos, *rope_sin;      /* (head_dim/2 x capacity) RoPE only */
    float *aq;                       /* (max linear input x capacity) fake-quantized linear input */
    float *aq_s;                     /* (max linear input) Runtime Smooth scales */
    size_t *aq_idx;                  /* (max linear input) Runtime Smooth sort scratch */
    size_t aq_dim;                   /* max linear input: max(hidden, embed_dim, q_dim, ffn_dim) */
    float *had_base;                 /* (had_K x had_K) H_K of the online Hadamard before down
                                        (models with online_had_down), else NULL */
    size_t had_K;
    int max_threads;                 /* attention threads the buffers allow */
    int threads;                     /* attention threads to use, 1..max_threads (settable) */
    int profile;                     /* nonzero: measure time into stats */
    qh_forward_stats stats;
    void *mem;                       /* private: the one allocation */
} qh_forward_ws;

/* Upper bound on attention threads per workspace. */
#define QH_FORWARD_MAX_THREADS 64

/* QH_OK when the forward pass computes what m's features say, else
 * QH_EUNIMPL (a feature it lacks) or QH_ECONFIG (head shapes it refuses), the
 * message starting with `who`. */
int qh_forward_check_features(const qh_model *m, const char *who) QH_MUST_CHECK;

/* Allocates a workspace for model m and windows of up to capacity tokens
 * (1 <= capacity; with learned positions capacity <= max_pos).  Returns QH_OK
 * and a new workspace in *out (free with qh_forward_ws_free), QH_EINVAL for a
 * bad capacity, the status of qh_forward_check_features, QH_ENOMEM.  The
 * workspace borrows nothing from m but must only be used with models of the
 * same shapes.  Attention runs its heads on
 * min(BLAS threads at allocation, n_heads) threads (ws->threads, which may be
 * lowered later); during that part BLAS is set to one thread and restored
 * after, so a workspace must not be used concurrently with other BLAS calls
 * of the process. */
int qh_forward_ws_alloc(const qh_model *m, size_t capacity, qh_forward_ws **out) QH_MUST_CHECK;

/* The bytes qh_forward_ws_alloc takes for a model of config c (not rotated:
 * no online Hadamard) at capacity tokens with the current BLAS threads: for
 * memory estimates (pipeline/memory.h). */
size_t qh_forward_ws_bytes(const qh_model_config *c, size_t capacity);
void qh_forward_ws_free(qh_forward_ws *ws);              /* NULL: no-op */

/* fn(arg, lo, hi) over [0, n) in contiguous spans, one per workspace thread
 * (ws->threads; the caller runs the first span), or all on the caller when
 * `work` (the elements the spans touch in all) is below 2^16.  fn must
 * compute each element as it would alone, so results do not depend on the
 * split.  The forward's element-wise work runs so, and the evaluation's
 * per-token log-sum-exp. */
typedef void (*qh_span_fn)(void *arg, size_t lo, size_t hi);
void qh_forward_spans(const qh_forward_ws *ws, size_t n, size_t work, qh_span_fn fn, void *arg);

/* Called before a linear layer is applied, with its input X (in x T,
 * column-major; borrows, valid only during the call) where in is
 * m->blocks[layer].lin[kind].in, in model order (enum qh_linear_kind).  Q, K
 * and V (and a gated MLP's gate and up) share one input: the hook is called
 * once per linear with the same pointer.  A
 * nonzero return stops the forward pass, which returns that status. */
typedef int (*qh_linear_hook_fn)(int layer, int kind, const float *X, size_t in, size_t T,
                                 void *user);
typedef struct {
    qh_linear_hook_fn fn;
    void *user;
} qh_forward_hook;

/* Token (and, when learned, position) embeddings of ids[0..T) at positions 0..T-1
 * into x (hidden x T, caller allocated; may be ws->x).  QH_EINVAL for a token
 * id outside [0, vocab) (the message names the position) or T > capacity. */
int qh_forward_embed(const qh_model *m, const int32_t *ids, size_t T, qh_forward_ws *ws,
                     float *x) QH_MUST_CHECK;

/* Decoder layer `layer` applied in place to x (hidden x T), the hidden states
 * of positions 0..T-1 of one sequence (causal attention).  hook may be NULL.
 * Returns QH_OK, QH_EINVAL (bad layer or T), or a hook's status. */
int qh_forward_block(const qh_model *m, int layer, float *x, size_t T, qh_forward_ws *ws,
                     const qh_forward_hook *hook) QH_MUST_CHECK;

/* Final norm (+ project_out when present) and lm_head: x (hidden x T, not modified) to
 * logits (vocab x T, caller allocated). */
int qh_forward_head(const qh_model *m, const float *x, size_t T, qh_forward_ws *ws,
                    float *logits) QH_MUST_CHECK;

/* The whole model on one window ids[0..T): logits (vocab x T). */
int qh_forward_window(const qh_model *m, const int32_t *ids, size_t T, qh_forward_ws *ws,
                      float *logits) QH_MUST_CHECK;

/* y (out x T) = W x + b for the linear L on x (in x T), one sgemm; with
 * accumulate, y += W x + b (a residual add).  b may be absent (L->b NULL). */
void qh_linear_apply(const qh_linear *L, const float *x, size_t T, float *y, int accumulate);

/* The model's norm n (its features' RMSNorm or LayerNorm) on the T columns
 * of x (dim x T) into y (may equal x). */
void qh_norm_apply(const qh_model *m, const qh_norm *n, const float *x, float *y, size_t dim,
                   size_t T);

/* The pieces, exposed for tests.  Each normalises the T columns of x (dim x T)
 * into y (may equal x).  LayerNorm: (x - mean) / sqrt(var + eps) * w + b with
 * the biased variance (b may be NULL); RMSNorm: x * rsqrt(mean(x^2) + eps) * w,
 * statistics accumulated in double, products in float as Hugging Face does. */
void qh_layer_norm(const float *x, float *y, size_t dim, size_t T, const float *w,
                   const float *b, float eps);
void qh_rms_norm(const float *x, float *y, size_t dim, size_t T, const float *w, float eps);
/* RMSNorm scaling by offset + w (Gemma's 1 + w with offset 1). */
void qh_rms_norm_offset(const float *x, float *y, size_t dim, size_t T, const float *w,
                        float offset, float eps);

/* GELU with the tanh approximation (gelu_new, gelu_pytorch_tanh), in float. */
float qh_gelu_tanh(float x);
/* The exact GELU x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, in float. */
float qh_gelu(float x);

/* The attention score scale of c: attn_scale, or 1/sqrt(head_dim), as a float. */
float qh_attention_scale(const qh_model_config *c);

/* RoPE tables for positions 0..T-1: cos/sin (head_dim/2 x T) of the angle
 * t * inv_freq[i], inv_freq[i] = theta^(-2i/head_dim).  The angle is formed in
 * float32 as Hugging Face does (so positions agree with its rounding); cos and
 * sin are evaluated in double and stored as float. */
void qh_rope_tables(size_t head_dim, size_t T, double theta, float *cos_t, float *sin_t);

/* RoPE tables of model c's rotary dims (features.rotary_dims) and rope
 * scaling (default, linear, llama3) for positions 0..T-1: (rotary_dims/2 x T). */
void qh_rope_tables_model(const qh_model_config *c, size_t T, float *cos_t, float *sin_t);

/* Rotate-half RoPE on the first rot dims of each head (partial rotary), the
 * other head dims unchanged; tables of rot/2 rows. */
void qh_rope_apply_partial(float *x, size_t n_heads, size_t head_dim, size_t rot, size_t T,
                           const float *cos_t, const float *sin_t);

/* Rotate-half RoPE in place on n_heads heads of x ((n_heads*head_dim) x T):
 * for i < d/2, (a, b) = (x[i], x[i+d/2]) -> (a cos - b sin, b cos + a sin). */
void qh_rope_apply(float *x, size_t n_heads, size_t head_dim, size_t T, const float *cos_t,
                   const float *sin_t);

/* Causal softmax attention for one head: O (hd x T, ld ldo) = V P with
 * P[j,i] = softmax_j<=i(scale * k_j . q_i).  Q, K, V are (hd x T) with leading
 * dimensions ldq, ldk, ldv.  Scores go through ws->scores in query blocks of
 * ws->qblock columns, so only the causal part is (mostly) computed. */
void qh_attention_head(const float *Q, size_t ldq, const float *K, size_t ldk, const float *V,
                       size_t ldv, float *O, size_t ldo, size_t T, size_t hd, float scale,
                       qh_forward_ws *ws);

#endif
