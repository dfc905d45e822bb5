/* backward.c -- reverse-mode gradient of one decoder block with respect to
 * its linear weights (see backward.h).
 *
 * The forward pass follows forward.c step by step, choosing by the model's
 * features as it does (LayerNorm or RMSNorm, biases, rotate-half RoPE or none,
 * grouped-query attention, the score scale and soft-capping, an MLP plain or
 * gated with the family's activation, sandwich norms, a parallel residual)
 * and keeps on the tape what the backward pass reads.  Attention
 * runs per head in blocks of QBLOCK query columns; block b of a head stores its probabilities P (keys 0..i0+B-1 x B queries,
 * column-major, masked entries exactly zero) contiguously, so the stored part
 * of the causal T x T matrix is about half of it and every block is a plain
 * sgemm operand.
 *
 * Backward, for y = x1 + mlp(norm2(x1)) and x1 = x + o(attn(norm1(x))), with
 * g the pre-activation (gate's output when gated, else up's):
 *   MLP      dW_down += dy a^T, da = W_down^T dy, activation backward,
 *            dW_gate/up += dg h2^T (du h2^T), dh2 = W^T dg (+ W_up^T du)
 *   norm2    dx1 = dy + norm2'(x1)^T dh2   (statistics in double)
 *   o_proj   dW_o += dx1 att^T, datt = W_o^T dx1
 *   heads    per query block: dV += dO P^T, dP = V^T dO,
 *            dS = P .* (dP - colsum(P .* dP)), dQ = s K dS, dK += s Q dS^T
 *            (s the score scale; the heads of a group add into one dK, dV)
 *   RoPE     the transposed rotation (the same rotation with -sin)
 *   q, k, v  dW += d(qkv) h1^T
 */
#include "model/backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/vexp.h"
#include "qh_blas.h"

/* Query columns per attention block (as forward.c uses). */
#define QBLOCK 128

struct qh_block_tape {
    int gated, rotary, qk_norm;      /* the features the buffers were sized for */
    int sandwich, parallel;          /* sandwich norms (Gemma 2), parallel residual (NeoX) */
    float scale, softcap;            /* score scale, attention soft-capping (0: none) */
    size_t rot;                      /* rotary dims per head */
    size_t capacity;                 /* max tokens per call */
    size_t hidden, q_dim, kv_dim, ffn_dim, head_dim, n_heads, n_kv_heads;
    int layer;                       /* of the last forward; -1 before any */
    size_t T;                        /* tokens of the last forward; 0 before any */
    double fwd_flops, bwd_flops;     /* of the last forward / backward */
    /* saved by the forward pass */
    float *h1;                       /* (hidden x cap) norm1(x): input of q, k, v */
    float *q, *k, *v;                /* (q_dim x cap), (kv_dim x cap) x2; q, k after RoPE */
    float *q_raw, *k_raw;            /* qk_norm only: q, k before their norms */
    float *P;                        /* n_heads x packed(cap): probabilities, causal blocks */
    float *att;                      /* (q_dim x cap) attention output: input of o */
    float *x1;                       /* (hidden x cap) residual stream after attention */
    float *h2;                       /* (hidden x cap) norm2(x1): input of gate, up */
    float *g;                        /* (ffn x cap) pre-activation: gate's (gated) or up's output */
    float *u;                        /* (ffn x cap) up's output when gated, else NULL */
    float *a;                        /* (ffn x cap) activation: input of down */
    float *z1, *z2;                  /* sandwich only: (hidden x cap) o's and down's outputs,
                                        inputs of the post-norms */
    float *rope_cos, *rope_sin, *rope_nsin;   /* (head_dim/2 x cap) RoPE only */
    /* scratch of the backward pass */
    float *dx1, *dh2;                /* (hidden x cap) */
    float *datt, *dq;                /* (q_dim x cap) */
    float *dk, *dv;                  /* (kv_dim x cap) */
    float *dS;                       /* (cap x QBLOCK) one block's dP, then dS */
    float *S2;                       /* softcap only: (cap x QBLOCK) a block's raw scores */
    float *dz;                       /* sandwich only: (hidden x cap) through a post-norm */
    float *dg, *du;                  /* (ffn x cap); du gated only */
    float *mem;                      /* the one allocation */
    size_t bytes;
};

/* Floats of one head's packed probabilities for T tokens: blocks of QBLOCK
 * queries, block b holding (b+1)*QBLOCK keys (the last: T keys). */
static size_t packed_size(size_t T)
{
    size_t nb = T / QBLOCK, rem = T % QBLOCK;
    return (size_t)QBLOCK * QBLOCK * nb * (nb + 1) / 2 + rem * T;
}

/* Offset of the block starting at query i0 (a multiple of QBLOCK). */
static size_t packed_offset(size_t i0)
{
    size_t b = i0 / QBLOCK;
    return (size_t)QBLOCK * QBLOCK * b * (b + 1) / 2;
}

/* The features the backward pass can differentiate (besides what the forward
 * pass refuses): pre-LN blocks, a gated SiLU or a plain ReLU MLP. */
static int check_differentiable(const qh_model *m, const char *who)
{
    const qh_model_features *f = &m->cfg.features;
    QH_TRY(qh_forward_check_features(m, who));
    if (m->act_quant)
        QH_ERROR(QH_EUNIMPL, "%s: fake-quantized activations (act_quant) are not "
                 "differentiable; tune blocks with float activations", who);
    if (m->online_had_down)
        QH_ERROR(QH_EUNIMPL, "%s: the online Hadamard before down_proj/fc2 of a rotated model "
                 "(rotate \"hadamard\") is not differentiated; tune blocks of unrotated models",
                 who);
    if (!f->pre_ln)
        QH_ERROR(QH_EUNIMPL, "%s: post-LN blocks (do_layer_norm_before = false) are not "
                 "differentiable; only pre-LN blocks are", who);
    if (f->gated_mlp && f->act == QH_ACT_RELU)
        QH_ERROR(QH_EUNIMPL, "%s: a gated ReLU MLP is not differentiable; gated SiLU or GELU "
                 "and plain ReLU or GELU are", who);
    return QH_OK;
}

/* The MLP activation and its derivative, in double, as the forward pass's
 * float functions compute them. */
static double act_value(qh_act_kind act, double g)
{
    switch (act) {
    case QH_ACT_SILU: return g / (1.0 + exp(-g));
    case QH_ACT_GELU: return 0.5 * g * (1.0 + erf(g * M_SQRT1_2));
    case QH_ACT_GELU_TANH: {
        const double kk = 0.7978845608028654;
        return 0.5 * g * (1.0 + tanh(kk * (g + 0.044715 * g * g * g)));
    }
    default: return g > 0 ? g : 0.0;
    }
}

static double act_deriv(qh_act_kind act, double g)
{
    switch (act) {
    case QH_ACT_SILU: {
        double sg = 1.0 / (1.0 + exp(-g));
        return sg * (1.0 + g * (1.0 - sg));
    }
    case QH_ACT_GELU:                  /* Phi(g) + g phi(g) */
        return 0.5 * (1.0 + erf(g * M_SQRT1_2)) + g * exp(-0.5 * g * g) * 0.3989422804014327;
    case QH_ACT_GELU_TANH: {
        const double kk = 0.7978845608028654;
        double th = tanh(kk * (g + 0.044715 * g * g * g));
        return 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * kk * (1.0 + 3 * 0.044715 * g * g);
    }
    default: return g > 0 ? 1.0 : 0.0;
    }
}

/* The forward pass's float activation (forward.c's). */
static float act_float(qh_act_kind act, float g)
{
    switch (act) {
    case QH_ACT_SILU: return g / (1.0f + qh_vexpf(-g));
    case QH_ACT_GELU: return qh_gelu(g);
    case QH_ACT_GELU_TANH: return qh_gelu_tanh(g);
    default: return g > 0.0f ? g : 0.0f;
    }
}

int qh_block_tape_alloc(const qh_model *m, size_t T, qh_block_tape **out)
{
    const qh_model_config *c = &m->cfg;
    *out = NULL;
    if (T < 1) QH_ERROR(QH_EINVAL, "block tape: capacity must be >= 1 token");
    if (c->features.pos == QH_POS_LEARNED && T > (size_t)c->max_pos)
        QH_ERROR(QH_EINVAL, "block tape: %zu tokens exceed max_position_embeddings %d", T,
                 c->max_pos);
    QH_TRY(check_differentiable(m, "block tape"));

    qh_block_tape *t = calloc(1, sizeof *t);
    if (!t) QH_ERROR(QH_ENOMEM, "block tape: out of memory");
    t->gated = c->features.gated_mlp;
    t->rotary = c->features.pos == QH_POS_ROTARY;
    t->qk_norm = c->features.qk_norm;
    t->sandwich = c->features.sandwich_norm;
    t->parallel = c->features.parallel_residual;
    t->scale = qh_attention_scale(c);
    t->softcap = (float)c->attn_softcap;
    t->rot = t->rotary ? (size_t)c->features.rotary_dims : 0;
    t->capacity = T;
    t->hidden = (size_t)c->hidden;
    t->head_dim = (size_t)c->head_dim;
    t->n_heads = (size_t)c->n_heads;
    t->n_kv_heads = (size_t)c->n_kv_heads;
    t->q_dim = t->n_heads * t->head_dim;
    t->kv_dim = t->n_kv_heads * t->head_dim;
    t->ffn_dim = (size_t)c->ffn_dim;
    t->layer = -1;
    size_t d = t->hidden, qd = t->q_dim, kvd = t->kv_dim, f = t->ffn_dim;
    size_t half = t->rot / 2, fu = t->gated ? f : 0, qkn = t->qk_norm ? qd + kvd : 0;
    size_t sw = t->sandwich ? d : 0, sc = t->softcap > 0 ? QBLOCK : 0;
    size_t n_floats = T * (3 * d + 2 * qd + 2 * kvd + 2 * f + fu + qkn + 2 * sw)    /* saved */
                      + t->n_heads * packed_size(T) + 3 * half * T
                      + T * (2 * d + 2 * qd + 2 * kvd + f + fu + sw)      /* scratch */
                      + T * (QBLOCK + sc);
    float *p = malloc(n_floats * sizeof(float));
    if (!p) {
        free(t);
        QH_ERROR(QH_ENOMEM, "block tape: cannot allocate %zu floats", n_floats);
    }
    t->mem = p;
    t->bytes = n_floats * sizeof(float);
    t->h1 = p;    p += T * d;
    t->q = p;     p += T * qd;
    t->k = p;     p += T * kvd;
    t->v = p;     p += T * kvd;
    if (qkn) {
        t->q_raw = p;  p += T * qd;
        t->k_raw = p;  p += T * kvd;
    }
    t->P = p;     p += t->n_heads * packed_size(T);
    t->att = p;   p += T * qd;
    t->x1 = p;    p += T * d;
    t->h2 = p;    p += T * d;
    t->g = p;     p += T * f;
    t->u = fu ? p : NULL;  p += T * fu;
    t->a = p;     p += T * f;
    if (sw) {
        t->z1 = p;  p += T * d;
        t->z2 = p;  p += T * d;
        t->dz = p;  p += T * d;
    }
    if (sc) {
        t->S2 = p;  p += T * QBLOCK;
    }
    t->dx1 = p;   p += T * d;
    t->dh2 = p;   p += T * d;
    t->datt = p;  p += T * qd;
    t->dq = p;    p += T * qd;
    t->dk = p;    p += T * kvd;
    t->dv = p;    p += T * kvd;
    t->dS = p;    p += T * QBLOCK;
    t->dg = p;    p += T * f;
    t->du = fu ? p : NULL;  p += T * fu;
    if (half) {
        t->rope_cos = p;   p += T * half;
        t->rope_sin = p;   p += T * half;
        t->rope_nsin = p;  p += T * half;
        qh_rope_tables_model(c, T, t->rope_cos, t->rope_sin);
        for (size_t i = 0; i < T * half; i++) t->rope_nsin[i] = -t->rope_sin[i];
    }
    *out = t;
    return QH_OK;
}

void qh_block_tape_free(qh_block_tape *t)
{
    if (!t) return;
    free(t->mem);
    free(t);
}

size_t qh_block_tape_bytes(const qh_block_tape *t) { return t ? t->bytes + sizeof *t : 0; }

void qh_block_tape_flops(const qh_block_tape *t, double *forward, double *backward)
{
    if (forward) *forward = t->fwd_flops;
    if (backward) *backward = t->bwd_flops;
}

/* ---- helpers ----------------------------------------------------------- */

static int check_shapes(const qh_model *m, int layer, const qh_block_tape *t, const char *who)
{
    const qh_model_config *c = &m->cfg;
    if (layer < 0 || layer >= c->n_layers)
        QH_ERROR(QH_EINVAL, "%s: layer %d outside [0, %d)", who, layer, c->n_layers);
    if (c->features.gated_mlp != t->gated || (c->features.pos == QH_POS_ROTARY) != t->rotary ||
        c->features.qk_norm != t->qk_norm || c->features.sandwich_norm != t->sandwich ||
        c->features.parallel_residual != t->parallel || qh_attention_scale(c) != t->scale ||
        (float)c->attn_softcap != t->softcap ||
        (t->rotary && (size_t)c->features.rotary_dims != t->rot) ||
        (size_t)c->hidden != t->hidden || (size_t)c->n_heads != t->n_heads ||
        (size_t)c->n_kv_heads != t->n_kv_heads || (size_t)c->head_dim != t->head_dim ||
        (size_t)c->ffn_dim != t->ffn_dim)
        QH_ERROR(QH_EBADLEN, "%s: the model's shapes differ from the tape's", who);
    QH_TRY(check_differentiable(m, who));
    const qh_block *blk = &m->blocks[layer];
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (qh_model_linear_number(m, k) >= 0 && !blk->lin[k].W)
            QH_ERROR(QH_EINVAL, "%s: layer %d lacks its %s", who, layer,
                     qh_model_linear_short_name(m, k));
    return QH_OK;
}

/* G (row-major out x in, i.e. column-major in x out) += X dY^T. */
static void linear_grad_w(const qh_linear *L, const float *X, const float *dY, size_t T, float *G)
{
    size_t out = (size_t)L->out, in = (size_t)L->in;
    qh_sgemm('N', 'T', in, out, T, 1.0f, X, in, dY, out, 1.0f, G, in);
}

/* dX (in x T) = W^T dY, or dX += W^T dY when accumulate. */
static void linear_grad_x(const qh_linear *L, const float *dY, size_t T, float *dX, int accumulate)
{
    size_t out = (size_t)L->out, in = (size_t)L->in;
    qh_sgemm('N', 'N', in, T, out, 1.0f, L->W, in, dY, out, accumulate ? 1.0f : 0.0f, dX, in);
}

/* dx = dres + (d norm(x) / dx)^T dh for the T columns of x (dim x T):
 * LayerNorm  dx = r (g - mean(g) - xhat mean(g xhat)),  xhat = (x - mu) r
 * RMSNorm    dx = r (g - x r^2 mean(g x)),
 * with g = w .* dh and r the forward's 1/sqrt(var + eps) or 1/sqrt(ms + eps);
 * statistics and the per-element arithmetic in double. */
static void norm_backward(const qh_model *m, const qh_norm *n, const float *x, const float *dh,
                          const float *dres, float *dx, size_t dim, size_t T)
{
    double eps = (double)m->cfg.norm_eps;
    int rms = m->cfg.features.norm == QH_NORM_RMS;
    double off = m->cfg.features.norm_plus_one ? 1.0 : 0.0;  /* Gemma: 1 + w */
    for (size_t t = 0; t < T; t++) {
        const float *xc = x + t * dim, *hc = dh + t * dim, *rc = dres ? dres + t * dim : NULL;
        float *oc = dx + t * dim;
        if (rms) {
            double ss = 0.0, gx = 0.0;
            for (size_t i = 0; i < dim; i++) {
                ss += (double)xc[i] * xc[i];
                gx += (off + n->w[i]) * hc[i] * xc[i];
            }
            double r = 1.0 / sqrt((double)(float)(ss / (double)dim) + eps);
            double c2 = r * r * gx / (double)dim;
            for (size_t i = 0; i < dim; i++)
                oc[i] = (float)((rc ? (double)rc[i] : 0.0) +
                                r * ((off + n->w[i]) * hc[i] - xc[i] * c2));
        } else {
            double s = 0.0;
            for (size_t i = 0; i < dim; i++) s += xc[i];
            double mean = s / (double)dim, ss = 0.0, gs = 0.0, gxs = 0.0;
            for (size_t i = 0; i < dim; i++) {
                double dd = xc[i] - mean, gi = (double)n->w[i] * hc[i];
                ss += dd * dd;
                gs += gi;
                gxs += gi * dd;
            }
            double r = 1.0 / sqrt(ss / (double)dim + eps);
            double mg = gs / (double)dim, mgx = gxs * r / (double)dim;   /* mean(g), mean(g xhat) */
            for (size_t i = 0; i < dim; i++) {
                double xhat = (xc[i] - mean) * r;
                oc[i] = (float)((rc ? (double)rc[i] : 0.0) +
                                r * ((double)n->w[i] * hc[i] - mg - xhat * mgx));
            }
        }
    }
}

/* Softmax of one score column over its first `valid` entries, normalised, in
 * place; masked entries (valid..n_keys) exactly zero.  As forward.c: max
 * subtraction, vexp.h's exp and sum. */
static void softmax_column(float *col, size_t lo, size_t valid, size_t n_keys)
{
    float mx = col[lo];
    for (size_t j = 0; j < lo; j++) col[j] = 0.0f;       /* outside a sliding window */
    for (size_t j = lo + 1; j < valid; j++) mx = col[j] > mx ? col[j] : mx;
    double sum = qh_vexp_shifted_sum(col + lo, valid - lo, mx);
    float inv = (float)(1.0 / sum);
    for (size_t j = lo; j < valid; j++) col[j] *= inv;
    for (size_t j = valid; j < n_keys; j++) col[j] = 0.0f;
}

/* ---- forward ----------------------------------------------------------- */

static void attention_forward(qh_block_tape *t, size_t T, size_t window)
{
    size_t hd = t->head_dim, qd = t->q_dim, kvd = t->kv_dim, group = t->n_heads / t->n_kv_heads;
    float scale = t->scale, cap = t->softcap;
    size_t stride = packed_size(T);
    for (size_t h = 0; h < t->n_heads; h++) {
        size_t kvh = h / group;
        const float *Q = t->q + h * hd, *K = t->k + kvh * hd, *V = t->v + kvh * hd;
        float *O = t->att + h * hd, *Ph = t->P + h * stride;
        for (size_t i0 = 0; i0 < T; i0 += QBLOCK) {
            size_t B = T - i0 < QBLOCK ? T - i0 : QBLOCK, n_keys = i0 + B;
            float *Pb = Ph + packed_offset(i0);
            /* S (n_keys x B) = scale K^T Q, then P = softmax over keys <= query */
            qh_sgemm('T', 'N', n_keys, B, hd, scale, K, kvd, Q + i0 * qd, qd, 0.0f, Pb, n_keys);
            for (size_t c = 0; c < B; c++) {
                size_t i = i0 + c, lo = window && i + 1 > window ? i + 1 - window : 0;
                float *col = Pb + c * n_keys;
                if (cap > 0)            /* soft-capping, as forward.c */
                    for (size_t j = lo; j <= i; j++) col[j] = cap * tanhf(col[j] / cap);
                softmax_column(col, lo, i + 1, n_keys);
            }
            /* O (hd x B) = V (hd x n_keys) P (n_keys x B) */
            qh_sgemm('N', 'N', hd, B, n_keys, 1.0f, V, kvd, Pb, n_keys, 0.0f, O + i0 * qd, qd);
            t->fwd_flops += 4.0 * (double)n_keys * (double)B * (double)hd;
        }
    }
}

static double linear_flops(const qh_linear *L, size_t T)
{
    return 2.0 * (double)L->out * (double)L->in * (double)T;
}

int qh_block_forward_tape(const qh_model *m, int layer, const float *x, size_t T, float *y,
                          qh_block_tape *tape)
{
    QH_TRY(check_shapes(m, layer, tape, "block forward"));
    if (T < 1 || T > tape->capacity)
        QH_ERROR(QH_EINVAL, "block forward: %zu tokens outside [1, %zu] (tape capacity)", T,
                 tape->capacity);
    if (x == y) QH_ERROR(QH_EINVAL, "block forward: y must not be x");
    qh_block_tape *t = tape;
    const qh_block *blk = &m->blocks[layer];
    size_t d = t->hidden, nf = t->ffn_dim * T;
    t->layer = -1;                    /* invalid until complete */
    t->T = 0;
    t->fwd_flops = 0.0;

    /* attention sublayer: x1 = x + o(attn(norm1(x))) (+ post-norm with sandwich norms) */
    qh_norm_apply(m, &blk->attn_norm, x, t->h1, d, T);
    qh_linear_apply(&blk->lin[QH_LIN_Q], t->h1, T, t->q, 0);
    qh_linear_apply(&blk->lin[QH_LIN_K], t->h1, T, t->k, 0);
    qh_linear_apply(&blk->lin[QH_LIN_V], t->h1, T, t->v, 0);
    if (t->qk_norm) {                 /* per head, columns of head_dim */
        memcpy(t->q_raw, t->q, t->q_dim * T * sizeof(float));
        memcpy(t->k_raw, t->k, t->kv_dim * T * sizeof(float));
        qh_norm_apply(m, &blk->q_norm, t->q_raw, t->q, t->head_dim, t->n_heads * T);
        qh_norm_apply(m, &blk->k_norm, t->k_raw, t->k, t->head_dim, t->n_kv_heads * T);
    }
    if (t->rotary) {
        qh_rope_apply_partial(t->q, t->n_heads, t->head_dim, t->rot, T, t->rope_cos, t->rope_sin);
        qh_rope_apply_partial(t->k, t->n_kv_heads, t->head_dim, t->rot, T, t->rope_cos,
                              t->rope_sin);
    }
    attention_forward(t, T, (size_t)qh_model_layer_window(&m->cfg, layer));
    memcpy(y, x, d * T * sizeof(float));
    if (t->sandwich) {
        qh_linear_apply(&blk->lin[QH_LIN_O], t->att, T, t->z1, 0);
        qh_norm_apply(m, &blk->attn_post_norm, t->z1, t->dz, d, T);   /* dz: scratch here */
        for (size_t i = 0; i < d * T; i++) y[i] += t->dz[i];
    } else {
        qh_linear_apply(&blk->lin[QH_LIN_O], t->att, T, y, 1);
    }
    memcpy(t->x1, y, d * T * sizeof(float));

    /* MLP sublayer: y = x1 + down(act(gate h2) * up h2) or x1 + down(act(up h2)), h2 =
     * norm2(x1), or norm2(x) with a parallel residual; post-norm with sandwich norms */
    qh_norm_apply(m, &blk->mlp_norm, t->parallel ? x : t->x1, t->h2, d, T);
    qh_linear_apply(&blk->lin[t->gated ? QH_LIN_GATE : QH_LIN_UP], t->h2, T, t->g, 0);
    qh_act_kind act = m->cfg.features.act;
    if (t->gated) {
        qh_linear_apply(&blk->lin[QH_LIN_UP], t->h2, T, t->u, 0);
        for (size_t i = 0; i < nf; i++) t->a[i] = act_float(act, t->g[i]) * t->u[i];
    } else {
        for (size_t i = 0; i < nf; i++) t->a[i] = act_float(act, t->g[i]);
    }
    if (t->sandwich) {
        qh_linear_apply(&blk->lin[QH_LIN_DOWN], t->a, T, t->z2, 0);
        qh_norm_apply(m, &blk->mlp_post_norm, t->z2, t->dz, d, T);
        for (size_t i = 0; i < d * T; i++) y[i] += t->dz[i];
    } else {
        qh_linear_apply(&blk->lin[QH_LIN_DOWN], t->a, T, y, 1);
    }

    for (int k = 0; k < QH_LIN_MAX; k++)
        if (blk->lin[k].W) t->fwd_flops += linear_flops(&blk->lin[k], T);
    t->layer = layer;
    t->T = T;
    return QH_OK;
}

/* ---- backward ---------------------------------------------------------- */

/* dS = P .* (dP - colsum(P .* dP)) in place on one block's dP (n_keys x B);
 * column c has valid = i0 + c + 1 keys, the rest stay exactly zero. */
static void softmax_backward(const float *Pb, float *dS, size_t i0, size_t B, size_t n_keys)
{
    for (size_t c = 0; c < B; c++) {
        const float *p = Pb + c * n_keys;
        float *s = dS + c * n_keys;
        size_t valid = i0 + c + 1;
        double dot = 0.0;
        for (size_t j = 0; j < valid; j++) dot += (double)p[j] * s[j];
        float fdot = (float)dot;
        for (size_t j = 0; j < valid; j++) s[j] = p[j] * (s[j] - fdot);
        for (size_t j = valid; j < n_keys; j++) s[j] = 0.0f;
    }
}

/* From datt (q_dim x T) to dq, dk, dv (pre-RoPE for q and k is done by the
 * caller); only the wanted ones are formed. */
static void attention_backward(qh_block_tape *t, size_t T, int want_q, int want_k, int want_v)
{
    size_t hd = t->head_dim, qd = t->q_dim, kvd = t->kv_dim, group = t->n_heads / t->n_kv_heads;
    float scale = t->scale, cap = t->softcap;
    size_t stride = packed_size(T);
    if (want_k) memset(t->dk, 0, kvd * T * sizeof(float));
    if (want_v) memset(t->dv, 0, kvd * T * sizeof(float));
    for (size_t h = 0; h < t->n_heads; h++) {
        size_t kvh = h / group;
        const float *Q = t->q + h * hd, *K = t->k + kvh * hd, *V = t->v + kvh * hd;
        const float *dO = t->datt + h * hd, *Ph = t->P + h * stride;
        float *dQ = t->dq + h * hd, *dK = t->dk + kvh * hd, *dV = t->dv + kvh * hd;
        for (size_t i0 = 0; i0 < T; i0 += QBLOCK) {
            size_t B = T - i0 < QBLOCK ? T - i0 : QBLOCK, n_keys = i0 + B;
            const float *Pb = Ph + packed_offset(i0);
            double nkb = (double)n_keys * (double)B * (double)hd;
            if (want_v) {               /* dV (hd x n_keys) += dO (hd x B) P^T */
                qh_sgemm('N', 'T', hd, n_keys, B, 1.0f, dO + i0 * qd, qd, Pb, n_keys, 1.0f, dV,
                         kvd);
                t->bwd_flops += 2.0 * nkb;
            }
            if (!want_q && !want_k) continue;
            /* dP (n_keys x B) = V^T dO, then dS */
            qh_sgemm('T', 'N', n_keys, B, hd, 1.0f, V, kvd, dO + i0 * qd, qd, 0.0f, t->dS, n_keys);
            t->bwd_flops += 2.0 * nkb;
            softmax_backward(Pb, t->dS, i0, B, n_keys);
            if (cap > 0) {              /* through cap tanh(s / cap): times 1 - tanh^2 */
                qh_sgemm('T', 'N', n_keys, B, hd, scale, K, kvd, Q + i0 * qd, qd, 0.0f, t->S2,
                         n_keys);
                t->bwd_flops += 2.0 * nkb;
                for (size_t j = 0; j < n_keys * B; j++) {
                    float th = tanhf(t->S2[j] / cap);
                    t->dS[j] *= 1.0f - th * th;
                }
            }
            if (want_q) {               /* dQ (hd x B) = scale K dS */
                qh_sgemm('N', 'N', hd, B, n_keys, scale, K, kvd, t->dS, n_keys, 0.0f, dQ + i0 * qd,
                         qd);
                t->bwd_flops += 2.0 * nkb;
            }
            if (want_k) {               /* dK (hd x n_keys) += scale Q dS^T */
                qh_sgemm('N', 'T', hd, n_keys, B, scale, Q + i0 * qd, qd, t->dS, n_keys, 1.0f, dK,
                         kvd);
                t->bwd_flops += 2.0 * nkb;
            }
        }
    }
}

/* The backward pass; with dx (x the block's input) also dL/dx into dx. */
static int block_backward(const qh_model *m, int layer, const float *x, const float *dy,
                          qh_block_tape *tape, float *const G[QH_LIN_MAX], float *dx)
{
    QH_TRY(check_shapes(m, layer, tape, "block backward"));
    qh_block_tape *t = tape;
    if (t->T == 0 || t->layer != layer)
        QH_ERROR(QH_EINVAL, "block backward: the tape holds no forward pass of layer %d", layer);
    const qh_block *blk = &m->blocks[layer];
    int gated = t->gated;
    int act_in = gated ? QH_LIN_GATE : QH_LIN_UP;   /* the linear whose output is g */
    size_t T = t->T, d = t->hidden, nf = t->ffn_dim * T;
    int want[QH_LIN_MAX];
    for (int k = 0; k < QH_LIN_MAX; k++) want[k] = G[k] != NULL && blk->lin[k].W != NULL;
    int want_x = dx != NULL;          /* the input gradient needs every inner gradient */
    int need_q = want[QH_LIN_Q] || want_x, need_k = want[QH_LIN_K] || want_x;
    int need_v = want[QH_LIN_V] || want_x;
    int want_qkv = need_q || need_k || need_v;
    int want_dx1 = want_qkv || want[QH_LIN_O];
    int want_du = gated && want[QH_LIN_UP];
    int want_da = want_dx1 || want[act_in] || want_du;
    const qh_linear *L;
    t->bwd_flops = 0.0;

    /* MLP: (post-norm,) down, activation, gate / up */
    const float *dz2 = dy;            /* d(down's output) */
    if (t->sandwich) {
        norm_backward(m, &blk->mlp_post_norm, t->z2, dy, NULL, t->dz, d, T);
        dz2 = t->dz;
    }
    L = &blk->lin[QH_LIN_DOWN];
    if (want[QH_LIN_DOWN]) {
        linear_grad_w(L, t->a, dz2, T, G[QH_LIN_DOWN]);
        t->bwd_flops += linear_flops(L, T);
    }
    if (!want_da) return QH_OK;
    /* the MLP's inner gradients: for its own weights, and on the way to the
     * attention's unless a parallel residual hands dy to it directly */
    if (want[act_in] || want_du || !t->parallel || want_x) {
        linear_grad_x(L, dz2, T, t->dg, 0);              /* da into dg */
        t->bwd_flops += linear_flops(L, T);
        qh_act_kind act = m->cfg.features.act;
        if (gated) {                  /* act(g) * u */
            for (size_t i = 0; i < nf; i++) {
                double g = t->g[i], da = t->dg[i];
                t->du[i] = (float)(da * act_value(act, g));
                t->dg[i] = (float)(da * t->u[i] * act_deriv(act, g));
            }
        } else {                      /* act(g) */
            for (size_t i = 0; i < nf; i++)
                t->dg[i] = (float)(t->dg[i] * act_deriv(act, t->g[i]));
        }
        if (want[act_in]) {
            linear_grad_w(&blk->lin[act_in], t->h2, t->dg, T, G[act_in]);
            t->bwd_flops += linear_flops(&blk->lin[act_in], T);
        }
        if (want_du) {
            linear_grad_w(&blk->lin[QH_LIN_UP], t->h2, t->du, T, G[QH_LIN_UP]);
            t->bwd_flops += linear_flops(&blk->lin[QH_LIN_UP], T);
        }
    }
    if (!want_dx1) return QH_OK;
    if (!t->parallel || want_x) {     /* dh2 = d(norm2's output) */
        linear_grad_x(&blk->lin[act_in], t->dg, T, t->dh2, 0);
        t->bwd_flops += linear_flops(&blk->lin[act_in], T);
        if (gated) {
            linear_grad_x(&blk->lin[QH_LIN_UP], t->du, T, t->dh2, 1);
            t->bwd_flops += linear_flops(&blk->lin[QH_LIN_UP], T);
        }
    }
    if (t->parallel) {
        /* y = x + attn(n1(x)) + mlp(n2(x)): the attention output's gradient is dy;
         * dx = dy + n2'(x)^T dh2 (+ n1'(x)^T dh1 below) */
        memcpy(t->dx1, dy, d * T * sizeof(float));
        if (want_x) norm_backward(m, &blk->mlp_norm, x, t->dh2, dy, dx, d, T);
    } else {
        /* norm2 and the residual: dx1 = dy + norm2'^T dh2; dx = dx1 + n1'(x)^T dh1 below */
        norm_backward(m, &blk->mlp_norm, t->x1, t->dh2, dy, t->dx1, d, T);
        if (want_x) memcpy(dx, t->dx1, d * T * sizeof(float));
    }
    if (t->sandwich) {                /* through the attention post-norm, in place */
        norm_backward(m, &blk->attn_post_norm, t->z1, t->dx1, NULL, t->dx1, d, T);
    }

    /* o_proj */
    L = &blk->lin[QH_LIN_O];
    if (want[QH_LIN_O]) {
        linear_grad_w(L, t->att, t->dx1, T, G[QH_LIN_O]);
        t->bwd_flops += linear_flops(L, T);
    }
    if (!want_qkv) return QH_OK;
    linear_grad_x(L, t->dx1, T, t->datt, 0);
    t->bwd_flops += linear_flops(L, T);

    /* heads, RoPE, q / k / v */
    attention_backward(t, T, need_q, need_k, need_v);
    if (t->rotary) {                    /* R^T: the rotation by -angle */
        if (need_q)
            qh_rope_apply_partial(t->dq, t->n_heads, t->head_dim, t->rot, T, t->rope_cos,
                                  t->rope_nsin);
        if (need_k)
            qh_rope_apply_partial(t->dk, t->n_kv_heads, t->head_dim, t->rot, T, t->rope_cos,
                                  t->rope_nsin);
    }
    if (t->qk_norm) {                   /* through the per-head norms, in place */
        if (need_q)
            norm_backward(m, &blk->q_norm, t->q_raw, t->dq, NULL, t->dq, t->head_dim,
                          t->n_heads * T);
        if (need_k)
            norm_backward(m, &blk->k_norm, t->k_raw, t->dk, NULL, t->dk, t->head_dim,
                          t->n_kv_heads * T);
    }
    const float *dqkv[3] = { t->dq, t->dk, t->dv };
    for (int k = QH_LIN_Q; k <= QH_LIN_V; k++) {
        if (!want[k]) continue;
        linear_grad_w(&blk->lin[k], t->h1, dqkv[k], T, G[k]);
        t->bwd_flops += linear_flops(&blk->lin[k], T);
    }
    if (!want_x) return QH_OK;
    /* dh1 = W_q^T dq + W_k^T dk + W_v^T dv (into dh2, free now); dx += norm1'(x)^T dh1 */
    for (int k = QH_LIN_Q; k <= QH_LIN_V; k++) {
        linear_grad_x(&blk->lin[k], dqkv[k], T, t->dh2, k != QH_LIN_Q);
        t->bwd_flops += linear_flops(&blk->lin[k], T);
    }
    norm_backward(m, &blk->attn_norm, x, t->dh2, dx, dx, d, T);
    return QH_OK;
}

int qh_block_backward(const qh_model *m, int layer, const float *dy, qh_block_tape *tape,
                      float *const G[QH_LIN_MAX])
{
    return block_backward(m, layer, NULL, dy, tape, G, NULL);
}

int qh_block_backward_input(const qh_model *m, int layer, const float *x, const float *dy,
                            qh_block_tape *tape, float *const G[QH_LIN_MAX], float *dx)
{
    if (!x || !dx || dx == dy || dx == x)
        QH_ERROR(QH_EINVAL, "block backward: the input gradient needs x and a dx apart from x and dy");
    return block_backward(m, layer, x, dy, tape, G, dx);
}

/* ---- the head ------------------------------------------------------------ */

int qh_head_backward(const qh_model *m, const float *x, const float *logits, const float *dlogits,
                     size_t T, float *dx)
{
    const qh_model_config *c = &m->cfg;
    size_t d = (size_t)c->hidden, V = (size_t)c->vocab_size;
    size_t e = m->project_out.W ? (size_t)m->project_out.out : d;
    int cap = c->final_softcap > 0;
    if (T < 1 || !x || !dlogits || !dx || dx == x || (cap && !logits))
        QH_ERROR(QH_EINVAL, "head backward: bad arguments (T = %zu)", T);
    size_t n_floats = (e + d) * T + (cap ? V * T : 0);
    float *buf = malloc(n_floats * sizeof(float));
    if (!buf) QH_ERROR(QH_ENOMEM, "head backward: cannot allocate %zu floats", n_floats);
    float *dh = buf, *dn = buf + e * T;   /* d(lm_head's input) (e x T), d(norm's output) */
    const float *dl = dlogits;
    if (cap) {            /* logits = cap tanh(raw / cap): d/draw = 1 - (logits / cap)^2 */
        float *dr = buf + (e + d) * T, inv = (float)(1.0 / c->final_softcap);
        for (size_t i = 0; i < V * T; i++) {
            float th = logits[i] * inv;
            dr[i] = dlogits[i] * (1.0f - th * th);
        }
        dl = dr;
    }
    /* logits (V x T) = lm_head (V x e, row-major) h: dh (e x T) = lm_head^T dl */
    qh_sgemm('N', 'N', e, T, V, 1.0f, m->lm_head, e, dl, V, 0.0f, dh, e);
    if (m->project_out.W) linear_grad_x(&m->project_out, dh, T, dn, 0);   /* h = W_po n */
    else memcpy(dn, dh, d * T * sizeof(float));
    if (m->final_norm.w) norm_backward(m, &m->final_norm, x, dn, NULL, dx, d, T);
    else memcpy(dx, dn, d * T * sizeof(float));
    free(buf);
    return QH_OK;
}
