/* act_quant.h -- fake quantization of activations and of the KV cache in the
 * forward pass, and Runtime Smooth (methods reference §13).
 *
 * A qh_act_quant hung on a model (qh_model.act_quant, NULL: float) makes
 * model/forward.c round the input of every decoder linear, and K and V after
 * their projection (and RoPE), to a grid and back ("fake quantization"): the
 * arithmetic stays float32, the values are those an integer kernel would see.
 * Bits 16 means off for that part: the forward pass is then bit-identical to
 * the float one (the input is not even copied).
 *
 * Grids (b bits, clip ratio c in (0, 1], the range of each quantized group):
 *   symmetric:  s = c·max|x| / (2^(b-1) − 1),  q = clamp(rint(x/s), −2^(b-1), 2^(b-1) − 1),
 *               x̂ = q·s                       (QuaRot's activation quantizer)
 *   asymmetric: lo = c·min(min x, 0), hi = c·max(max x, 0), s = (hi − lo)/(2^b − 1),
 *               z = rint(−lo/s), q = clamp(rint(x/s) + z, 0, 2^b − 1), x̂ = (q − z)·s
 * rint rounds half to even; a group whose range is 0 maps to 0.  Groups:
 * per token (each column of the dim x T activation), per tensor (the whole
 * dim x T matrix at once), or per token in runs of `group` consecutive
 * channels.  The KV cache is quantized per token and head (head_dim values, or
 * runs of `group` of them).
 *
 * Runtime Smooth (RRS, arXiv 2409.20361), on the inputs of o_proj, gate/up
 * (OPT fc1) and down (fc2) only: s_c = max(max_t |x_c,t|, 1e−5) over the
 * window's tokens; with smooth_group g, the channels are sorted by s, each s
 * set to the maximum of its run of g in that order, and the order undone;
 * then x̂ = Q(x/s)·s with the per-token quantizer above.  The paper's s uses
 * every token of the window, also later ones: smooth_causal takes the
 * running maximum over tokens 0..t for token t instead (what a decoder can
 * know), at the cost of one sort per token with groups.
 */
#ifndef QH_ACT_QUANT_H
#define QH_ACT_QUANT_H

#include <stddef.h>

#include "qh_error.h"

typedef struct {
    int bits;                        /* 2..16; 16: off */
    int per_tensor;                  /* 1: one range for the whole dim x T matrix */
    int asym;                        /* 1: asymmetric grid with a zero point */
    int group;                       /* 0: whole vector; g: runs of g channels (g divides dim) */
    float clip;                      /* clip ratio in (0, 1] */
} qh_quant_spec;

typedef struct {
    qh_quant_spec act;               /* every decoder linear's input */
    qh_quant_spec kv;                /* K and V per token and head; per_tensor must be 0 */
    int smooth;                      /* 1: Runtime Smooth at o_proj, gate/up, down inputs */
    int smooth_group;                /* 0: per channel; g: the sorted group-of-g variant */
    int smooth_causal;               /* 1: running max over tokens 0..t */
} qh_act_quant;

#define QH_SMOOTH_MIN_SCALE 1e-5f

/* A spec that leaves values alone (bits 16, clip 1). */
qh_quant_spec qh_quant_spec_off(void);

/* 1 when spec changes values (bits < 16). */
static inline int qh_quant_spec_on(const qh_quant_spec *s) { return s->bits < 16; }

/* QH_OK when spec is valid for vectors of dim values, else QH_ECONFIG naming `who`. */
int qh_quant_spec_check(const qh_quant_spec *s, size_t dim, const char *who) QH_MUST_CHECK;

/* y (dim x T) = fake quantization of x (dim x T) under s; y may equal x. */
void qh_fake_quant(const qh_quant_spec *s, const float *x, float *y, size_t dim, size_t T);

/* In place on x ((n_heads·head_dim) x T): per token and head, as qh_fake_quant
 * with dim = head_dim (s->per_tensor is ignored: checked off by the caller). */
void qh_fake_quant_heads(const qh_quant_spec *s, float *x, size_t n_heads, size_t head_dim,
                         size_t T);

/* The group-of-g variant on scales s (dim) in place: sort by value (ties by
 * index), each run of g in that order set to its maximum, order undone.  idx
 * is scratch of dim entries.  g = 0 or g >= dim: every s set to the overall max
 * when g >= dim, left alone when g = 0. */
void qh_smooth_group_max(float *s, size_t dim, size_t g, size_t *idx);

/* Runtime Smooth then per-token fake quantization of x (dim x T) into y (y != x):
 * y = Q(x/s)·s with s from aq's smooth settings (aq->act the quantizer, its
 * per_tensor ignored).  s_ws (dim floats) and idx (dim) are scratch. */
void qh_runtime_smooth_quant(const qh_act_quant *aq, const float *x, float *y, size_t dim,
                             size_t T, float *s_ws, size_t *idx);

/* QH_OK when aq suits a model with these shapes (group sizes dividing the
 * dims of every linear input and head_dim); QH_ECONFIG naming who. */
int qh_act_quant_check(const qh_act_quant *aq, const size_t *in_dims, size_t n_in_dims,
                       size_t head_dim, const char *who) QH_MUST_CHECK;

/* "A4KV4"-style suffix ("" when nothing is quantized): A<bits> when act on,
 * KV<bits> when kv on.  Returns QH_OK or QH_EINVAL when cap is too small. */
int qh_act_quant_label(const qh_act_quant *aq, char *buf, size_t cap) QH_MUST_CHECK;

#endif
