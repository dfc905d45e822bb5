/* model_fixtures.h -- tiny synthetic decoder models for the tests: random
 * weights from qh_rng streams (purpose QH_RNG_SYNTHETIC), so a test that
 * builds one gets the same model bit for bit.
 *
 *   variant 0  OPT pre-LN
 *   variant 1  OPT post-LN with project_in / project_out
 *   variant 2  Llama with grouped-query attention and q/k/v biases
 *
 * vocab 50, hidden 16, 2 layers, 4 heads, max_pos 320; free with synth_free.
 * Also the per-token double-precision reference pieces that tests check the
 * float32 forward pass against, and real token ids for the vendored models.
 */
#ifndef QH_MODEL_FIXTURES_H
#define QH_MODEL_FIXTURES_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "qh_error.h"
#include "qh_rng.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    qh_model m;
    float *pool;                     /* every tensor */
    size_t used, size;
} synth_model;

static inline float *synth_take(synth_model *s, size_t n, double scale, double shift, qh_rng *r)
{
    QH_ASSERT(s->used + n <= s->size);
    float *p = s->pool + s->used;
    s->used += n;
    for (size_t i = 0; i < n; i++) p[i] = (float)(shift + scale * qh_rng_normal(r));
    return p;
}

static inline void synth_linear(synth_model *s, qh_linear *L, int out, int in, int bias, qh_rng *r)
{
    L->out = out;
    L->in = in;
    L->W = synth_take(s, (size_t)out * in, 1.0 / sqrt((double)in), 0.0, r);
    L->b = bias ? synth_take(s, (size_t)out, 0.1, 0.0, r) : NULL;
}

static inline void synth_norm(synth_model *s, qh_norm *n, int dim, int with_bias, qh_rng *r)
{
    n->w = synth_take(s, (size_t)dim, 0.2, 1.0, r);
    n->b = with_bias ? synth_take(s, (size_t)dim, 0.1, 0.0, r) : NULL;
}

/* variant 0: OPT pre-LN; 1: OPT post-LN with project_in/out; 2: Llama GQA + qkv bias */
static inline void synth_build(synth_model *s, int variant, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    qh_model_config *c = &s->m.cfg;
    int llama = variant == 2;
    const qh_family *fam = qh_family_find(llama ? "llama" : "opt");
    QH_ASSERT(fam);
    *c = (qh_model_config){ .family = fam, .vocab_size = 50,
                            .hidden = 16, .n_layers = 2, .n_heads = 4,
                            .n_kv_heads = llama ? 2 : 4, .head_dim = llama ? 6 : 4,
                            .ffn_dim = llama ? 20 : 24, .max_pos = 320,
                            .embed_dim = variant == 1 ? 8 : 16, .features = fam->features,
                            .norm_eps = llama ? 1e-6f : 1e-5f,
                            .rope_theta = 10000.0, .bos_id = 0, .eos_id = 2, .pad_id = 1 };
    snprintf(c->model_type, sizeof c->model_type, "%s", fam->model_type);
    c->features.pre_ln = variant != 1;
    c->features.tied_head = !llama;
    c->features.rotary_dims = llama ? c->head_dim : 0;
    c->features.bias = llama ? QH_LIN_BIT(QH_LIN_Q) | QH_LIN_BIT(QH_LIN_K) | QH_LIN_BIT(QH_LIN_V)
                             : QH_LIN_ALL & ~QH_LIN_BIT(QH_LIN_GATE);
    s->size = 200000;
    s->pool = malloc(s->size * sizeof(float));
    s->m.blocks = calloc((size_t)c->n_layers, sizeof(qh_block));
    qh_rng r = qh_rng_stream(seed, (uint32_t)variant, QH_RNG_SYNTHETIC);
    int d = c->hidden, e = c->embed_dim, qd = c->n_heads * c->head_dim;
    int kvd = c->n_kv_heads * c->head_dim, f = c->ffn_dim;
    s->m.embed_tokens = synth_take(s, (size_t)c->vocab_size * e, 1.0, 0.0, &r);
    if (!llama) s->m.embed_pos = synth_take(s, (size_t)(c->max_pos + 2) * d, 0.5, 0.0, &r);
    if (variant == 1) {
        synth_linear(s, &s->m.project_in, d, e, 0, &r);
        synth_linear(s, &s->m.project_out, e, d, 0, &r);
    }
    for (int l = 0; l < c->n_layers; l++) {
        qh_block *b = &s->m.blocks[l];
        synth_norm(s, &b->attn_norm, d, !llama, &r);
        synth_norm(s, &b->mlp_norm, d, !llama, &r);
        synth_linear(s, &b->lin[QH_LIN_Q], qd, d, 1, &r);
        synth_linear(s, &b->lin[QH_LIN_K], kvd, d, 1, &r);
        synth_linear(s, &b->lin[QH_LIN_V], kvd, d, 1, &r);
        synth_linear(s, &b->lin[QH_LIN_O], d, qd, !llama, &r);
        /* OPT's fc1 is UP; Llama draws gate, down, up in its stable-number order */
        synth_linear(s, &b->lin[llama ? QH_LIN_GATE : QH_LIN_UP], f, d, !llama, &r);
        synth_linear(s, &b->lin[QH_LIN_DOWN], d, f, !llama, &r);
        if (llama) synth_linear(s, &b->lin[QH_LIN_UP], f, d, 0, &r);
    }
    if (variant != 1) synth_norm(s, &s->m.final_norm, d, !llama, &r);
    s->m.lm_head = llama ? synth_take(s, (size_t)c->vocab_size * e, 0.3, 0.0, &r)
                         : s->m.embed_tokens;
}

static inline void synth_free(synth_model *s)
{
    free(s->pool);
    free(s->m.blocks);
}

/* Per-token double-precision reference pieces, activations row-major [t][i]:
 * y = W x + b; LayerNorm (OPT) or RMSNorm (Llama) by the definition; rotate-
 * half RoPE at position pos with the exact angle. */
static inline void ref_linear(const qh_linear *L, const double *x, double *y)
{
    for (int o = 0; o < L->out; o++) {
        double acc = L->b ? L->b[o] : 0.0;
        for (int i = 0; i < L->in; i++) acc += (double)L->W[(size_t)o * L->in + i] * x[i];
        y[o] = acc;
    }
}

static inline void ref_norm(const qh_model *m, const qh_norm *n, const double *x, double *y, int dim)
{
    double mu = 0, var = 0, ms = 0;
    for (int i = 0; i < dim; i++) mu += x[i] / dim;
    for (int i = 0; i < dim; i++) var += (x[i] - mu) * (x[i] - mu) / dim;
    for (int i = 0; i < dim; i++) ms += x[i] * x[i] / dim;
    for (int i = 0; i < dim; i++)
        y[i] = m->cfg.features.norm == QH_NORM_RMS ? x[i] / sqrt(ms + m->cfg.norm_eps) * n->w[i]
                                            : (x[i] - mu) / sqrt(var + m->cfg.norm_eps) * n->w[i]
                                              + (n->b ? n->b[i] : 0.0);
}

static inline void ref_rope(double *v, int hd, int pos, double theta)
{
    for (int i = 0; i < hd / 2; i++) {
        double ang = pos * pow(theta, -2.0 * i / hd), a = v[i], b = v[i + hd / 2];
        v[i] = a * cos(ang) - b * sin(ang);
        v[i + hd / 2] = a * sin(ang) + b * cos(ang);
    }
}

/* Causal softmax attention of every head for T tokens in double: att
 * (T x n_heads·head_dim, token-major) from q (T x q_dim) and k, v (T x
 * kv_dim) after RoPE, grouped-query heads sharing k and v; p: T scratch. */
static inline void ref_attention(const qh_model_config *c, const double *q, const double *k,
                                 const double *v, int T, double *att, double *p)
{
    int H = c->n_heads, hd = c->head_dim, qd = H * hd, kvd = c->n_kv_heads * hd;
    for (int t = 0; t < T; t++)
        for (int hh = 0; hh < H; hh++) {
            int kh = hh / (H / c->n_kv_heads);
            double mx = -INFINITY, z = 0.0;
            for (int j = 0; j <= t; j++) {
                double sc = 0.0;
                for (int i = 0; i < hd; i++)
                    sc += q[(size_t)t * qd + hh * hd + i] * k[(size_t)j * kvd + kh * hd + i];
                p[j] = sc / sqrt((double)hd);
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j <= t; j++) z += (p[j] = exp(p[j] - mx));
            for (int i = 0; i < hd; i++) {
                double acc = 0.0;
                for (int j = 0; j <= t; j++) acc += p[j] / z * v[(size_t)j * kvd + kh * hd + i];
                att[(size_t)t * qd + hh * hd + i] = acc;
            }
        }
}

/* The first 8 KB of data/wikitext2_test.raw (whole lines: valid UTF-8)
 * through the tokenizer of model folder dir: a new array of *n ids (free()),
 * or NULL when the file or tokenizer is missing or it gives fewer than
 * min_tokens tokens. */
static inline int32_t *wikitext_ids(const char *dir, size_t min_tokens, size_t *n)
{
    char path[1200], buf[8192];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    *n = 0;
    FILE *f = fopen("data/wikitext2_test.raw", "rb");
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    while (len > 0 && buf[len - 1] != '\n') len--;
    if (len == 0 || qh_tokenizer_load(path, &tok) != QH_OK ||
        qh_tokenizer_encode(tok, buf, len, 1, &ids, n) != QH_OK || *n < min_tokens) {
        free(ids);
        ids = NULL;
    }
    qh_tokenizer_free(tok);
    return ids;
}

#endif
