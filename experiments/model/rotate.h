/* rotate.h -- computational invariance: a decoder rewritten so that its
 * residual stream is rotated by a randomized Hadamard transform, with the
 * same float function (QuaRot, arXiv 2404.00456; SliceGPT, arXiv 2401.15024;
 * methods reference §13).
 *
 * qh_rotate_model(m, seed) changes m in place, in this order:
 *
 * 1. OPT's LayerNorm is made rotation-invariant (SliceGPT): the token and
 *    position embeddings have their row means subtracted, and every linear
 *    that writes into the residual stream (out_proj, fc2) gets its rows
 *    centred, W <- (I - 11^T/d) W, b <- b - mean(b), so every residual
 *    vector has mean 0.  LayerNorm without its affine part then equals
 *    RMSNorm without weight on that stream (the mean it subtracts is 0; the
 *    eps stays where it was, inside the square root).  The model's norm
 *    feature becomes RMSNorm (weights 1).
 * 2. Norm scales are fused into the following linears: a block's first norm
 *    into q/k/v, its second into gate/up (OPT fc1), the final norm into the
 *    head: W <- W diag(w), and for LayerNorm's shift b <- b + W beta (the
 *    head gets a logits bias for the final norm's beta, qh_model.head_bias).
 *    Norm weights become 1 (Gemma's 1 + w: w becomes 0).  A tied head is
 *    untied first (its own copy).
 * 3. The residual rotation Q = diag(s) H_d (s random signs from the stream
 *    (seed, 0, QH_RNG_ROTATION), H_d the normalized Hadamard of size hidden,
 *    core/qh_hadamard.h) is absorbed: embeddings E <- E Q (token and
 *    position rows), q/k/v, gate/up inputs W <- W Q, o_proj and down outputs
 *    W <- Q^T W, b <- Q^T b, head <- head Q.  The stream then carries Q^T x,
 *    whose RMS is that of x.
 * 4. Per head before o_proj (QuaRot's offline part): each K/V head's rows of
 *    v_proj (and bias) W <- H_hd W, each head's columns of o_proj
 *    W <- W H_hd^T; the attention output of a head is linear in its V, so
 *    o_proj's input is every head's output rotated by H_hd with no online op.
 * 5. Online before down (fc2): down's W <- W (H_f D_f)^T (H_f of size
 *    ffn_dim, D_f random signs from the stream (seed, 1, QH_RNG_ROTATION),
 *    m->had_down_signs) and m->online_had_down = 1, which makes the forward
 *    pass apply H_f D_f to the down input right after the MLP activation, before the hook (so
 *    calibration Hessians are collected in the rotated basis) and before the
 *    activation fake-quantization.  In float this is the identity.  The
 *    signs are this harness's addition (QuaRot's online transform is H_f
 *    alone): OPT's ReLU outputs are nonnegative, and a plain Hadamard maps
 *    their mean into one channel (H_f's all-ones row) -- measured on opt-7m,
 *    the fc2 input's max/median channel ratio rose from about 2 to 5-10 and
 *    its 4-bit per-token error from 0.13-0.16 to 0.18-0.59 (bench_outliers).
 *
 * Left out (QuaRot does them, this does not): the online Hadamard across
 * heads before o_proj, and rotating queries and keys after RoPE for the K
 * cache.  Refused (QH_EUNIMPL or QH_ECONFIG, naming what): post-LN blocks,
 * parallel residual blocks, project_in/project_out, a size (hidden, head_dim,
 * ffn_dim) that is not K*2^j with a base of qh_hadamard.h, a LayerNorm shift
 * in front of a linear without a bias, a model already rotated.
 */
#ifndef QH_ROTATE_H
#define QH_ROTATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "qh_error.h"

/* The model transforms a sweep's method entry asks for before calibration
 * (configs "rotate", "smooth"; pipeline/wa_config.h). */
#define QH_ABSMAX_GROUPS 4            /* per block: q/k/v, gate/up, down, o_proj inputs */

typedef struct {
    int rotate;                      /* 1: qh_rotate_model with the cell's seed */
    double smooth_alpha;             /* > 0: SmoothQuant with this migration strength, 0: off */
} qh_model_transform;

/* QH_OK when m can be rotated, else QH_EUNIMPL / QH_ECONFIG naming who and
 * the feature or size at fault (nothing is changed). */
int qh_rotate_check(const qh_model *m, const char *who) QH_MUST_CHECK;

/* Steps 1-5 above on m in place.  Returns QH_OK, the statuses of
 * qh_rotate_check, QH_ENOMEM (m unchanged when the first allocation fails;
 * otherwise m must be freed). */
int qh_rotate_model(qh_model *m, uint64_t seed, const char *who) QH_MUST_CHECK;

/* Only steps 1-2 (norm fusion; LayerNorm made RMSNorm on a mean-free
 * stream): for tests and for smoothing, which needs unit norms. */
int qh_fuse_norms(qh_model *m, const char *who) QH_MUST_CHECK;

/* SmoothQuant (Xiao et al. 2023, arXiv 2211.10438): per input channel j of
 * a group of linears sharing an input, s_j = max|X_j|^alpha /
 * max_i |W_ij|^(1-alpha) (the weight maximum over every row of the group;
 * s_j = 1 when either maximum is 0; s clamped below at 1e-5), then
 * X <- X diag(s)^-1 folded into what produces X and W <- W diag(s).  Folded:
 * the attention norm (w, and LayerNorm's b, divided by s) for q/k/v, the MLP
 * norm for gate/up (fc1), and the up_proj rows (gated MLP: act(gate) * up is
 * linear in up) or fc1's rows and bias (ReLU(x/s) = ReLU(x)/s for s > 0) for
 * down (fc2).  Not smoothed: o_proj (the paper's default folds into norms
 * only; folding into v_proj needs one s per K/V head group).  A tanh-GELU
 * or SiLU plain MLP's down is not smoothed either (not positively
 * homogeneous).  absmax[QH_ABSMAX_GROUPS * l + g] (g 0: q/k/v input, 1:
 * gate/up input, 2: down input, 3: o_proj input (not used here); hidden,
 * hidden, ffn, heads x head_dim values) are the calibration maxima of the
 * float model.  Returns QH_OK, QH_ECONFIG (alpha outside (0, 1], a Gemma 1 + w
 * norm), QH_ENOMEM. */
int qh_smooth_model(qh_model *m, double alpha, const double *const *absmax, const char *who)
    QH_MUST_CHECK;

/* In place on the T columns of x (n x T): x <- H_n diag(signs) x with H_n
 * the normalized Hadamard of size n = K*2^j (the same matrix as
 * qh_hadamard_apply's, transpose 0), in float; signs (n, +-1) may be NULL.
 * base: H_K (K x K, column-major, +-1). */
void qh_online_hadamard(float *x, size_t n, size_t T, const float *base, size_t K,
                        const float *signs);

#endif
