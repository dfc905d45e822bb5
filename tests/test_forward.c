/* test_forward.c -- the float32 forward pass and perplexity evaluation.
 *
 * 1. Pieces against naive references: LayerNorm/RMSNorm (double), RoPE tables
 *    (closed form), one attention head (triple loop in double).
 * 2. Tiny synthetic models (random weights from qh_rng streams): OPT pre-LN,
 *    OPT post-LN with project_in/out, Llama with GQA and q/k/v biases, checked
 *    against a per-token double-precision reference written independently
 *    here; the linear hook's calls and inputs.
 * 3. The vendored models against reference.json (PyTorch float32): first
 *    three window NLLs per file and seqlen, window-0 argmax/logsumexp/true
 *    logit, and (not under QH_TEST_FAST) opt-7m's full wikitext2 ppl at 1024.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "pipeline/config.h"
#include "pipeline/eval.h"
#include "model/forward.h"
#include "model/vexp.h"
#include "qh_blas.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "tokenizer/tokenizer.h"

/* ---- helpers ------------------------------------------------------------ */

static void fill_normal(float *x, size_t n, double scale, qh_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * qh_rng_normal(r));
}

static double max_rel_err(const float *got, const double *want, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        num = d > num ? d : num;
        den = fabs(want[i]) > den ? fabs(want[i]) : den;
    }
    return num / (den > 0 ? den : 1.0);
}

/* ---- 1. pieces ---------------------------------------------------------- */

static void test_norms(void)
{
    size_t dim = 37, T = 5;
    qh_rng r = qh_rng_stream(1, 0, QH_RNG_TEST);
    float x[37 * 5], y[37 * 5], w[37], b[37];
    double want[37 * 5];
    fill_normal(x, dim * T, 3.0, &r);
    for (size_t i = 0; i < dim * T; i++) x[i] += 2.0f;     /* nonzero mean */
    fill_normal(w, dim, 1.0, &r);
    fill_normal(b, dim, 1.0, &r);
    for (size_t t = 0; t < T; t++) {
        double mu = 0, var = 0;
        for (size_t i = 0; i < dim; i++) mu += x[i + t * dim] / (double)dim;
        for (size_t i = 0; i < dim; i++) var += pow(x[i + t * dim] - mu, 2) / (double)dim;
        for (size_t i = 0; i < dim; i++)
            want[i + t * dim] = (x[i + t * dim] - mu) / sqrt(var + 1e-5) * w[i] + b[i];
    }
    qh_layer_norm(x, y, dim, T, w, b, 1e-5f);
    QH_CHECK(max_rel_err(y, want, dim * T) < 1e-6, "layer norm vs double reference");
    qh_layer_norm(x, x + 0, dim, 1, w, b, 1e-5f);            /* in place, column 0 */
    QH_CHECK(max_rel_err(x, want, dim) < 1e-6, "layer norm in place");

    fill_normal(x, dim * T, 3.0, &r);
    for (size_t t = 0; t < T; t++) {
        double ms = 0;
        for (size_t i = 0; i < dim; i++) ms += pow(x[i + t * dim], 2) / (double)dim;
        for (size_t i = 0; i < dim; i++) want[i + t * dim] = x[i + t * dim] / sqrt(ms + 1e-6) * w[i];
    }
    qh_rms_norm(x, y, dim, T, w, 1e-6f);
    QH_CHECK(max_rel_err(y, want, dim * T) < 1e-6, "rms norm vs double reference");
}

static void test_rope(void)
{
    size_t hd = 16, half = 8, T = 1024;
    float *c = malloc(half * T * sizeof(float)), *s = malloc(half * T * sizeof(float));
    qh_rope_tables(hd, T, 10000.0, c, s);
    double worst = 0.0;
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < half; i++) {
            double ang = (double)t * pow(10000.0, -2.0 * (double)i / (double)hd);
            worst = fmax(worst, fabs(c[i + t * half] - cos(ang)));
            worst = fmax(worst, fabs(s[i + t * half] - sin(ang)));
        }
    /* float32 angles (as the reference implementation forms them) differ from
     * the exact angle by <= 1 ulp of t*inv_freq, i.e. <= 1024 * 2^-24 rad */
    QH_CHECK(worst < 1.5e-4, "rope tables vs closed form: max error %.3g", worst);
    QH_CHECK(c[0] == 1.0f && s[0] == 0.0f && fabs(c[3 * half] - cos(3.0)) < 1e-6,
             "rope tables at positions 0 and 3 (frequency 1)");

    /* rotate-half on 2 heads, 3 positions vs the closed form */
    float x[2 * 16 * 3], x0[2 * 16 * 3];
    qh_rng r = qh_rng_stream(2, 0, QH_RNG_TEST);
    fill_normal(x, sizeof x / sizeof x[0], 1.0, &r);
    memcpy(x0, x, sizeof x);
    qh_rope_apply(x, 2, hd, 3, c, s);
    double err = 0.0;
    for (size_t t = 0; t < 3; t++)
        for (size_t h = 0; h < 2; h++)
            for (size_t i = 0; i < half; i++) {
                size_t o = t * 32 + h * 16;
                double ang = (double)t * pow(10000.0, -2.0 * (double)i / (double)hd);
                double a = x0[o + i], b = x0[o + i + half];
                err = fmax(err, fabs(x[o + i] - (a * cos(ang) - b * sin(ang))));
                err = fmax(err, fabs(x[o + i + half] - (b * cos(ang) + a * sin(ang))));
            }
    QH_CHECK(err < 1e-5, "rope rotate-half vs closed form: max error %.3g", err);
    free(c);
    free(s);
}

/* One head, T = 300 (three query blocks), against a triple loop in double. */
static void test_attention(void)
{
    qh_model m;
    memset(&m, 0, sizeof m);
    const qh_family *opt = qh_family_find("opt");
    m.cfg = (qh_model_config){ .family = opt, .vocab_size = 4, .hidden = 8, .n_layers = 1,
                               .n_heads = 1, .n_kv_heads = 1, .head_dim = 8, .ffn_dim = 4,
                               .max_pos = 512, .embed_dim = 8, .features = opt->features };
    size_t T = 300, hd = 8, ld = 11;                       /* ld > hd: strided heads */
    qh_forward_ws *ws = NULL;
    if (qh_forward_ws_alloc(&m, T, &ws) != QH_OK) { QH_CHECK(0, "ws alloc: %s", qh_last_error()); return; }
    float *Q = malloc(ld * T * sizeof(float)), *K = malloc(ld * T * sizeof(float));
    float *V = malloc(ld * T * sizeof(float)), *O = malloc(ld * T * sizeof(float));
    double *want = malloc(hd * T * sizeof(double)), *p = malloc(T * sizeof(double));
    float *got = malloc(hd * T * sizeof(float));
    qh_rng r = qh_rng_stream(3, 0, QH_RNG_TEST);
    fill_normal(Q, ld * T, 2.0, &r);
    fill_normal(K, ld * T, 2.0, &r);
    fill_normal(V, ld * T, 1.0, &r);
    float scale = 0.35f;
    qh_attention_head(Q, ld, K, ld, V, ld, O, ld, T, hd, scale, ws);
    for (size_t i = 0; i < T; i++) {
        double mx = -INFINITY, z = 0.0;
        for (size_t j = 0; j <= i; j++) {
            double s = 0;
            for (size_t d = 0; d < hd; d++) s += (double)Q[d + i * ld] * K[d + j * ld];
            p[j] = s * scale;
            mx = fmax(mx, p[j]);
        }
        for (size_t j = 0; j <= i; j++) z += (p[j] = exp(p[j] - mx));
        for (size_t d = 0; d < hd; d++) {
            double acc = 0;
            for (size_t j = 0; j <= i; j++) acc += p[j] / z * V[d + j * ld];
            want[d + i * hd] = acc;
            got[d + i * hd] = O[d + i * ld];
        }
    }
    double err = max_rel_err(got, want, hd * T);
    QH_CHECK(err < 2e-6, "attention head vs naive triple loop: rel err %.3g", err);
    free(Q); free(K); free(V); free(O); free(want); free(p); free(got);
    qh_forward_ws_free(ws);
}

/* ---- 2. synthetic models (builder in model_fixtures.h) ------------------ */

/* logits[t][vocab] of the model on ids[0..T): per-token reference in double
 * (ref_linear, ref_norm, ref_rope from model_fixtures.h) */
static void ref_forward(const qh_model *m, const int32_t *ids, int T, double *logits)
{
    const qh_model_config *c = &m->cfg;
    int d = c->hidden, e = c->embed_dim, H = c->n_heads, hd = c->head_dim, f = c->ffn_dim;
    int qd = H * hd, kvd = c->n_kv_heads * hd, pre_ln = c->features.pre_ln;
    int rotary = c->features.pos == QH_POS_ROTARY, gated = c->features.gated_mlp;
    int silu = c->features.act == QH_ACT_SILU;
    int W = 64 + d + e + qd + f;                           /* widest scratch row */
    double *x = calloc((size_t)T * d, sizeof(double)), *q = calloc((size_t)T * qd, sizeof(double));
    double *k = calloc((size_t)T * kvd, sizeof(double)), *v = calloc((size_t)T * kvd, sizeof(double));
    double *a = calloc((size_t)T * qd, sizeof(double)), *u = calloc((size_t)W, sizeof(double));
    double *g = calloc((size_t)W, sizeof(double)), *h = calloc((size_t)W, sizeof(double));
    double *p = calloc((size_t)T, sizeof(double));
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < e; i++) u[i] = m->embed_tokens[(size_t)ids[t] * e + i];
        if (m->project_in.W) ref_linear(&m->project_in, u, x + (size_t)t * d);
        else memcpy(x + (size_t)t * d, u, (size_t)d * sizeof(double));
        if (m->embed_pos)
            for (int i = 0; i < d; i++)
                x[(size_t)t * d + i] += m->embed_pos[(size_t)(t + c->features.pos_offset) * d + i];
    }
    for (int l = 0; l < c->n_layers; l++) {
        const qh_block *b = &m->blocks[l];
        for (int t = 0; t < T; t++) {
            double *xt = x + (size_t)t * d;
            if (pre_ln) ref_norm(m, &b->attn_norm, xt, h, d);
            else memcpy(h, xt, (size_t)d * sizeof(double));
            ref_linear(&b->lin[QH_LIN_Q], h, q + (size_t)t * qd);
            ref_linear(&b->lin[QH_LIN_K], h, k + (size_t)t * kvd);
            ref_linear(&b->lin[QH_LIN_V], h, v + (size_t)t * kvd);
            if (rotary) {
                for (int hh = 0; hh < H; hh++) ref_rope(q + (size_t)t * qd + hh * hd, hd, t, c->rope_theta);
                for (int hh = 0; hh < c->n_kv_heads; hh++)
                    ref_rope(k + (size_t)t * kvd + hh * hd, hd, t, c->rope_theta);
            }
        }
        ref_attention(c, q, k, v, T, a, p);
        for (int t = 0; t < T; t++) {
            double *xt = x + (size_t)t * d;
            ref_linear(&b->lin[QH_LIN_O], a + (size_t)t * qd, u);
            for (int i = 0; i < d; i++) xt[i] += u[i];
            if (!pre_ln) ref_norm(m, &b->attn_norm, xt, xt, d);
            if (pre_ln) ref_norm(m, &b->mlp_norm, xt, h, d);
            else memcpy(h, xt, (size_t)d * sizeof(double));
            ref_linear(&b->lin[gated ? QH_LIN_GATE : QH_LIN_UP], h, g);
            for (int i = 0; i < f; i++) g[i] = silu ? g[i] / (1 + exp(-g[i])) : g[i] > 0 ? g[i] : 0;
            if (gated) {
                ref_linear(&b->lin[QH_LIN_UP], h, u);
                for (int i = 0; i < f; i++) g[i] *= u[i];
            }
            ref_linear(&b->lin[QH_LIN_DOWN], g, u);
            for (int i = 0; i < d; i++) xt[i] += u[i];
            if (!pre_ln) ref_norm(m, &b->mlp_norm, xt, xt, d);
        }
    }
    for (int t = 0; t < T; t++) {
        double *xt = x + (size_t)t * d;
        if (m->final_norm.w) ref_norm(m, &m->final_norm, xt, h, d);
        else memcpy(h, xt, (size_t)d * sizeof(double));
        if (m->project_out.W) ref_linear(&m->project_out, h, u);
        else memcpy(u, h, (size_t)d * sizeof(double));
        for (int o = 0; o < c->vocab_size; o++) {
            double acc = 0;
            for (int i = 0; i < e; i++) acc += (double)m->lm_head[(size_t)o * e + i] * u[i];
            logits[(size_t)t * c->vocab_size + o] = acc;
        }
    }
    free(x); free(q); free(k); free(v); free(a); free(u); free(g); free(h); free(p);
}

typedef struct {
    int calls[QH_LIN_MAX];
    int order[QH_LIN_MAX], n_order;  /* kinds of layer 0's calls, as called */
    const float *qkv_ptr[3];
    int bad_shape;
    float q_in0[64];                 /* layer 0's q input, first column */
} hook_log;

static int log_hook(int layer, int kind, const float *X, size_t in, size_t T, void *user)
{
    hook_log *hl = user;
    (void)T;
    hl->calls[kind]++;
    if (layer == 0 && hl->n_order < QH_LIN_MAX) hl->order[hl->n_order++] = kind;
    if (layer == 0 && kind <= QH_LIN_V) hl->qkv_ptr[kind] = X;
    if (layer == 0 && kind == QH_LIN_Q)
        memcpy(hl->q_in0, X, (in < 64 ? in : 64) * sizeof(float));
    if (in == 0) hl->bad_shape = 1;
    return QH_OK;
}

static int failing_hook(int layer, int kind, const float *X, size_t in, size_t T, void *user)
{
    (void)X; (void)in; (void)T; (void)user;
    return layer == 1 && kind == QH_LIN_DOWN ? QH_EIO : QH_OK;
}

static void test_synthetic(int variant, int T)
{
    static const char *names[] = { "opt pre-LN", "opt post-LN + project_in/out", "llama GQA + qkv bias" };
    synth_model s;
    synth_build(&s, variant, 17);
    qh_model *m = &s.m;
    size_t V = (size_t)m->cfg.vocab_size;
    int32_t *ids = malloc((size_t)T * sizeof(int32_t));
    qh_rng r = qh_rng_stream(5, (uint32_t)variant, QH_RNG_TEST);
    for (int t = 0; t < T; t++) ids[t] = (int32_t)qh_rng_below(&r, V);
    double *want = malloc((size_t)T * V * sizeof(double));
    float *got = malloc((size_t)T * V * sizeof(float));
    ref_forward(m, ids, T, want);
    qh_forward_ws *ws = NULL;
    if (qh_forward_ws_alloc(m, (size_t)T, &ws) != QH_OK) {
        QH_CHECK(0, "%s: ws alloc: %s", names[variant], qh_last_error());
        goto cleanup;
    }
    int st = qh_forward_window(m, ids, (size_t)T, ws, got);
    QH_CHECK(st == QH_OK, "%s: forward status %d", names[variant], st);
    double err = max_rel_err(got, want, (size_t)T * V);
    QH_CHECK(err < 2e-5, "%s, T=%d: blocked forward vs per-token double reference: rel err %.3g",
             names[variant], T, err);

    /* Attention heads on one thread vs on ws->threads (BLAS threads at allocation) */
    float *got1 = malloc((size_t)T * V * sizeof(float));
    int saved = ws->threads;
    ws->threads = 1;
    st = qh_forward_window(m, ids, (size_t)T, ws, got1);
    ws->threads = saved;
    double dmax = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) dmax = fmax(dmax, fabs(got1[i] - got[i]));
    QH_CHECK(st == QH_OK && dmax < 1e-5, "%s: %d attention threads vs 1: max diff %.3g",
             names[variant], ws->threads, dmax);
    free(got1);

    /* The first half through the pieces, with the hook: causal attention makes
     * its logits equal the first T/2 columns of the whole window's. */
    size_t Th = (size_t)T / 2;
    hook_log hl;
    memset(&hl, 0, sizeof hl);
    qh_forward_hook hook = { log_hook, &hl };
    st = qh_forward_embed(m, ids, Th, ws, ws->x);
    for (int l = 0; st == QH_OK && l < m->cfg.n_layers; l++)
        st = qh_forward_block(m, l, ws->x, Th, ws, &hook);
    if (st == QH_OK) st = qh_forward_head(m, ws->x, Th, ws, got);
    QH_CHECK(st == QH_OK, "%s: pieces status %d", names[variant], st);
    err = max_rel_err(got, want, Th * V);
    QH_CHECK(err < 2e-5, "%s: causal prefix of %zu tokens matches: rel err %.3g", names[variant],
             Th, err);
    int nl = m->cfg.n_layers, expect_gate = variant == 2 ? nl : 0;
    QH_CHECK(hl.calls[QH_LIN_Q] == nl && hl.calls[QH_LIN_K] == nl && hl.calls[QH_LIN_V] == nl &&
             hl.calls[QH_LIN_O] == nl && hl.calls[QH_LIN_GATE] == expect_gate &&
             hl.calls[QH_LIN_UP] == nl && hl.calls[QH_LIN_DOWN] == nl && !hl.bad_shape,
             "%s: hook called once per linear per layer", names[variant]);
    /* model order is enum order: q k v o (gate) up down */
    int in_order = hl.n_order == (variant == 2 ? 7 : 6);
    for (int i = 1; i < hl.n_order; i++) in_order &= hl.order[i] > hl.order[i - 1];
    QH_CHECK(in_order, "%s: the hook sees the %d linears in enum (model) order", names[variant],
             hl.n_order);
    QH_CHECK(hl.qkv_ptr[0] && hl.qkv_ptr[0] == hl.qkv_ptr[1] && hl.qkv_ptr[1] == hl.qkv_ptr[2],
             "%s: q, k, v hooks see one input", names[variant]);

    /* layer 0's attention input for token 0, from the reference's pieces */
    {
        int d = m->cfg.hidden, e = m->cfg.embed_dim;
        double emb[64], x0[64], h0[64];
        for (int i = 0; i < e; i++) emb[i] = m->embed_tokens[(size_t)ids[0] * e + i];
        if (m->project_in.W) ref_linear(&m->project_in, emb, x0);
        else memcpy(x0, emb, (size_t)d * sizeof(double));
        for (int i = 0; m->embed_pos && i < d; i++) x0[i] += m->embed_pos[2 * d + i];
        if (m->cfg.features.pre_ln) ref_norm(m, &m->blocks[0].attn_norm, x0, h0, d);
        else memcpy(h0, x0, (size_t)d * sizeof(double));
        QH_CHECK(max_rel_err(hl.q_in0, h0, (size_t)d) < 1e-5, "%s: hook sees layer 0's q input",
                 names[variant]);
    }

    qh_forward_hook bad = { failing_hook, NULL };
    st = qh_forward_embed(m, ids, Th, ws, ws->x);
    for (int l = 0; st == QH_OK && l < nl; l++) st = qh_forward_block(m, l, ws->x, Th, ws, &bad);
    QH_CHECK(st == QH_EIO, "%s: a hook's status stops the pass (got %d)", names[variant], st);

    int32_t bad_ids[2] = { 0, (int32_t)V };
    QH_CHECK(qh_forward_embed(m, bad_ids, 2, ws, ws->x) == QH_EINVAL, "out-of-range id refused");
    QH_CHECK(qh_forward_block(m, nl, ws->x, 2, ws, NULL) == QH_EINVAL, "bad layer refused");
    QH_CHECK(qh_forward_block(m, 0, ws->x, (size_t)T + 1, ws, NULL) == QH_EINVAL,
             "T above capacity refused");
cleanup:
    qh_forward_ws_free(ws);
    free(ids); free(want); free(got);
    synth_free(&s);
}

/* Eval on a synthetic model: the window NLLs equal an independent
 * computation from reference logits. */
static void test_eval_synthetic(void)
{
    synth_model s;
    synth_build(&s, 2, 23);
    qh_model *m = &s.m;
    size_t V = (size_t)m->cfg.vocab_size, seqlen = 24, n = 3 * seqlen + 7;
    int32_t *ids = malloc(n * sizeof(int32_t));
    qh_rng r = qh_rng_stream(6, 0, QH_RNG_TEST);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)qh_rng_below(&r, V);
    double *lg = malloc(seqlen * V * sizeof(double));
    double want[3], mean = 0;
    for (int w = 0; w < 3; w++) {
        ref_forward(m, ids + w * seqlen, (int)seqlen, lg);
        double acc = 0;
        for (size_t t = 0; t + 1 < seqlen; t++) {
            double z = 0;
            for (size_t o = 0; o < V; o++) z += exp(lg[t * V + o]);
            acc += log(z) - lg[t * V + (size_t)ids[w * seqlen + t + 1]];
        }
        want[w] = acc / (double)(seqlen - 1);
        mean += want[w] / 3;
    }
    qh_eval_result res;
    int st = qh_eval_ppl(m, ids, n, seqlen, 0, NULL, NULL, &res);
    QH_CHECK(st == QH_OK && res.windows == 3 && res.windows_total == 3 && res.tokens == 72,
             "synthetic eval: 3 windows of 24 from 79 ids (status %d)", st);
    if (st == QH_OK) {
        for (int w = 0; w < 3; w++)
            QH_CHECK_CLOSE(res.window_nll[w], want[w], 0, 1e-5, "synthetic window %d nll %.8f vs %.8f",
                           w, res.window_nll[w], want[w]);
        QH_CHECK_CLOSE(res.ppl, exp(mean), 0, 1e-5, "synthetic ppl %.6f vs %.6f", res.ppl, exp(mean));
    }
    qh_eval_result_free(&res);
    st = qh_eval_ppl(m, ids, n, seqlen, 2, NULL, NULL, &res);
    QH_CHECK(st == QH_OK && res.windows == 2, "max_windows 2 scores 2 windows");
    qh_eval_result_free(&res);
    QH_CHECK(qh_eval_ppl(m, ids, n, 1, 0, NULL, NULL, &res) == QH_EINVAL, "seqlen 1 refused");
    QH_CHECK(qh_eval_ppl(m, ids, n, 321, 0, NULL, NULL, &res) == QH_EINVAL, "seqlen > max_pos refused");
    QH_CHECK(qh_eval_ppl(m, ids, 10, 24, 0, NULL, NULL, &res) == QH_EINVAL, "too few tokens refused");
    free(ids); free(lg);
    synth_free(&s);
}

/* ---- 3. vendored models vs reference.json ------------------------------ */

static cJSON *load_json(const char *path)
{
    char *text = qh_read_text_file(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static double jnum(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Window 0's argmax, logsumexp and true-token logit for the first 64 positions. */
static void check_window0(const char *name, const qh_model *m, const int32_t *ids, size_t seqlen,
                          const cJSON *w0)
{
    size_t V = (size_t)m->cfg.vocab_size;
    float *logits = malloc(V * seqlen * sizeof(float));
    qh_forward_ws *ws = NULL;
    int st = qh_forward_ws_alloc(m, seqlen, &ws);
    if (st == QH_OK) st = qh_forward_window(m, ids, seqlen, ws, logits);
    QH_CHECK(st == QH_OK, "%s: window 0 forward: %s", name, st ? qh_last_error() : "");
    const cJSON *am = cJSON_GetObjectItemCaseSensitive(w0, "argmax");
    const cJSON *lse = cJSON_GetObjectItemCaseSensitive(w0, "logsumexp");
    const cJSON *lon = cJSON_GetObjectItemCaseSensitive(w0, "logit_of_next");
    int n = cJSON_GetArraySize(am), n_arg = 0;
    double e_lse = 0, e_lon = 0;
    for (int t = 0; st == QH_OK && t < n && t < (int)seqlen; t++) {
        const float *col = logits + (size_t)t * V;
        size_t best = 0;
        for (size_t o = 1; o < V; o++) best = col[o] > col[best] ? o : best;
        n_arg += (int)best == cJSON_GetArrayItem(am, t)->valueint;
        e_lse = fmax(e_lse, fabs(qh_logsumexp(col, V) - cJSON_GetArrayItem(lse, t)->valuedouble));
        e_lon = fmax(e_lon, fabs(col[ids[t + 1]] - cJSON_GetArrayItem(lon, t)->valuedouble));
    }
    QH_CHECK(st == QH_OK && n == 64 && n_arg == n, "%s: window-0 argmax %d/%d", name, n_arg, n);
    QH_CHECK(st == QH_OK && e_lse < 1e-3, "%s: window-0 logsumexp max err %.3g", name, e_lse);
    QH_CHECK(st == QH_OK && e_lon < 1e-3, "%s: window-0 logit of next max err %.3g", name, e_lon);
    qh_forward_ws_free(ws);
    free(logits);
}

static void check_model(const char *dir, int full_ppl)
{
    char path[1200];
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    cJSON *ref = NULL;
    static const char *files[] = { "wikitext2_test.raw", "gutenberg_heldout_2M.txt" };
    static const size_t seqlens[] = { 1024, 512 };
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    snprintf(path, sizeof path, "%s/reference.json", dir);
    ref = load_json(path);
    if (!ref) { QH_SKIP("%s: no reference.json", dir); return; }
    if (qh_model_load(dir, &m) != QH_OK) { QH_CHECK(0, "%s: load: %s", dir, qh_last_error()); goto cleanup; }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (qh_tokenizer_load(path, &tok) != QH_OK) {
        QH_CHECK(0, "%s: tokenizer: %s", dir, qh_last_error());
        goto cleanup;
    }
    int fast = qh_test_fast();
    for (int f = 0; f < (fast ? 1 : 2); f++) {
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ref, "files"), files[f]);
        int32_t *ids = NULL;
        size_t n = 0;
        snprintf(path, sizeof path, "data/%s", files[f]);
        if (qh_tokenize_file(tok, path, &ids, &n) != QH_OK) {
            QH_CHECK(0, "%s: tokenize %s: %s", name, path, qh_last_error());
            continue;
        }
        QH_CHECK(n == (size_t)jnum(fr, "n_tokens"), "%s %s: %zu tokens", name, files[f], n);
        if (f == 0) check_window0(name, m, ids, 1024, cJSON_GetObjectItemCaseSensitive(fr, "window0_first64"));
        for (int s = 0; s < (fast ? 1 : 2); s++) {
            char key[16];
            snprintf(key, sizeof key, "%zu", seqlens[s]);
            const cJSON *pr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fr, "ppl"), key);
            const cJSON *first3 = cJSON_GetObjectItemCaseSensitive(pr, "window_nll_first3");
            size_t nw = fast ? 1 : 3;
            qh_eval_result res;
            int st = qh_eval_ppl(m, ids, n, seqlens[s], nw, NULL, NULL, &res);
            QH_CHECK(st == QH_OK && res.windows_total == (size_t)jnum(pr, "windows"),
                     "%s %s %zu: windows %zu vs %g", name, files[f], seqlens[s], res.windows_total,
                     jnum(pr, "windows"));
            for (size_t w = 0; st == QH_OK && w < nw; w++) {
                double want = cJSON_GetArrayItem(first3, (int)w)->valuedouble;
                QH_CHECK_CLOSE(res.window_nll[w], want, 0, 1e-5, "%s %s %zu: window %zu nll %.7f vs %.7f",
                               name, files[f], seqlens[s], w, res.window_nll[w], want);
            }
            qh_eval_result_free(&res);
        }
        if (f == 0 && full_ppl && !fast) {
            const cJSON *pr = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fr, "ppl"), "1024");
            qh_eval_result res;
            int st = qh_eval_ppl(m, ids, n, 1024, 0, NULL, NULL, &res);
            double want = jnum(pr, "ppl");
            QH_CHECK(st == QH_OK, "%s full ppl: %s", name, st ? qh_last_error() : "");
            if (st == QH_OK) {
                QH_NOTE("%s wikitext2 seqlen 1024: ppl %.6f, reference %.6f, rel diff %.2e (%zu windows, %.1f s)",
                        name, res.ppl, want, (res.ppl - want) / want, res.windows, res.seconds);
                QH_CHECK_CLOSE(res.ppl, want, 0, 1e-4, "%s wikitext2 1024 ppl %.6f vs %.6f", name, res.ppl, want);
            }
            qh_eval_result_free(&res);
        }
        free(ids);
    }
cleanup:
    qh_tokenizer_free(tok);
    qh_model_free(m);
    cJSON_Delete(ref);
}

/* The passes follow features, not families: a plain SiLU MLP (no family has
 * one) matches the reference; features the forward pass lacks, and rotary
 * dims it cannot rotate, are refused. */
static void test_features(void)
{
    synth_model s;
    synth_build(&s, 0, 17);
    qh_model *m = &s.m;
    m->cfg.features.act = QH_ACT_SILU;
    int T = 19;
    size_t V = (size_t)m->cfg.vocab_size;
    int32_t ids[19];
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((t * 7 + 3) % (int)V);
    double *want = malloc((size_t)T * V * sizeof(double));
    float *got = malloc((size_t)T * V * sizeof(float));
    ref_forward(m, ids, T, want);
    qh_forward_ws *ws = NULL;
    int st = qh_forward_ws_alloc(m, (size_t)T, &ws);
    if (st == QH_OK) st = qh_forward_window(m, ids, (size_t)T, ws, got);
    QH_CHECK(st == QH_OK && max_rel_err(got, want, (size_t)T * V) < 2e-5,
             "plain SiLU MLP follows the feature: status %d", st);
    qh_forward_ws_free(ws);
    ws = NULL;

    m->cfg.features.act = QH_ACT_RELU;
    m->cfg.features.parallel_residual = 1;                 /* with sandwich norms */
    m->cfg.features.sandwich_norm = 1;
    st = qh_forward_ws_alloc(m, 8, &ws);
    QH_CHECK(st == QH_EUNIMPL && ws == NULL && strstr(qh_last_error(), "parallel residual"),
             "parallel residual with sandwich norms refused: %d %s", st, qh_last_error());
    synth_free(&s);

    synth_build(&s, 2, 17);
    s.m.cfg.features.rotary_dims = s.m.cfg.head_dim / 2;      /* 3 of 6: odd */
    st = qh_forward_ws_alloc(&s.m, 8, &ws);
    QH_CHECK(st == QH_ECONFIG && ws == NULL && strstr(qh_last_error(), "RoPE on 3 of 6"),
             "odd partial RoPE refused: %d %s", st, qh_last_error());
    synth_free(&s);
    free(want);
    free(got);
}

/* The block's norms, RoPE and MLP activation split over threads (work of
 * 2^16 values or more) compute every value as one thread does: with BLAS on
 * one thread, a 512-token window of a real model gives the same bits with 1
 * and 2 workspace threads. */
static void check_threads_bitwise(const char *dir)
{
    qh_model *m = NULL;
    qh_forward_ws *ws = NULL;
    int blas = qh_blas_info().threads;
    const size_t T = 512;
    size_t V = 0;
    int32_t *ids = NULL;
    float *a = NULL, *b = NULL;
    if (qh_model_load(dir, &m) != QH_OK) { QH_CHECK(0, "%s: load: %s", dir, qh_last_error()); return; }
    qh_blas_set_threads(2);               /* buffers for two attention threads */
    int st = qh_forward_ws_alloc(m, T, &ws);
    qh_blas_set_threads(1);
    V = (size_t)m->cfg.vocab_size;
    ids = malloc(T * sizeof *ids);
    a = malloc(T * V * sizeof *a);
    b = malloc(T * V * sizeof *b);
    if (st != QH_OK || !ids || !a || !b || ws->max_threads < 2) {
        QH_CHECK(0, "%s: setup (%s)", dir, st != QH_OK ? qh_last_error() : "two threads");
        goto cleanup;
    }
    qh_rng r = qh_rng_stream(11, 0, QH_RNG_TEST);
    for (size_t t = 0; t < T; t++) ids[t] = (int32_t)qh_rng_below(&r, V);
    ws->threads = 1;
    int s1 = qh_forward_window(m, ids, T, ws, a);
    ws->threads = 2;
    int s2 = qh_forward_window(m, ids, T, ws, b);
    QH_CHECK(s1 == QH_OK && s2 == QH_OK && !memcmp(a, b, T * V * sizeof *a),
             "%s: logits with 2 workspace threads equal those with 1, bit for bit", dir);
    /* the evaluation's per-position log-sum-exp, split over the two threads */
    double *l1 = malloc(T * sizeof *l1), *l2 = malloc(T * sizeof *l2), n1 = 0, n2 = 0;
    if (l1 && l2) {
        qh_window_lse(NULL, b, V, T, l1);
        qh_window_lse(ws, b, V, T, l2);
        int ok = qh_window_nll(b, V, ids, T, NULL, &n1) == QH_OK
                 && qh_window_nll(b, V, ids, T, l2, &n2) == QH_OK;
        QH_CHECK(ok && !memcmp(l1, l2, (T - 1) * sizeof *l1) && n1 == n2,
                 "%s: log-sum-exp and NLL on 2 threads equal 1 thread's, bit for bit", dir);
    }
    free(l1);
    free(l2);
cleanup:
    qh_blas_set_threads(blas);
    free(ids);
    free(a);
    free(b);
    qh_forward_ws_free(ws);
    qh_model_free(m);
}

/* vexp.h's exp against exp() in double: at most 2 ulp of float over the
 * range where the result is a normal float, the array forms bit-equal to the
 * scalar one, and the edges (overflow, flush to 0, NaN) as documented. */
static void test_vexp(void)
{
    double worst = 0.0;
    size_t n = 0;
    float xs[4096], ys[4096];
    for (float x = -87.3f; x < 88.7f; x += 0.00731f) {
        float y = qh_vexpf(x);
        double e = exp((double)x);
        double ulp = ldexp(1.0, ilogb(e) - 23);           /* float ulp at e */
        double err = fabs((double)y - e) / ulp;
        worst = err > worst ? err : worst;
        if (n < 4096) xs[n] = x;
        n++;
    }
    QH_CHECK(worst <= 2.0, "vexp: worst error %.3f ulp over [-87.3, 88.7] (<= 2)", worst);
    memcpy(ys, xs, sizeof ys);
    double sum = qh_vexp_shifted_sum(ys, 4095, 1.5f), ref = 0.0;
    int same = 1;
    for (size_t i = 0; i < 4095; i++) {
        same &= ys[i] == qh_vexpf(xs[i] - 1.5f);
        ref += (double)ys[i];
    }
    QH_CHECK(same && fabs(sum - ref) <= 1e-12 * ref,
             "vexp: qh_vexp_shifted_sum's values equal qh_vexpf's, its sum the plain sum's");
    for (size_t i = 0; i < 4095; i++) ys[i] = xs[i] * 0.1f;
    float g[4095], u[4095];
    for (size_t i = 0; i < 4095; i++) { g[i] = ys[i]; u[i] = 0.5f + (float)i / 4095.0f; }
    qh_vsilu(ys, u, 4095);
    same = 1;
    for (size_t i = 0; i < 4095; i++) same &= ys[i] == g[i] / (1.0f + qh_vexpf(-g[i])) * u[i];
    QH_CHECK(same, "vexp: qh_vsilu equals the scalar formula bit for bit");
    QH_CHECK(isinf(qh_vexpf(89.0f)) && qh_vexpf(-88.0f) == 0.0f && isnan(qh_vexpf(NAN))
                 && qh_vexpf(0.0f) == 1.0f && qh_vexpf(-INFINITY) == 0.0f,
             "vexp: overflow to +Inf, flush below -87.34, NaN kept, exp(0) = 1");
}

/* The double exp of the evaluation's log-sum-exp against glibc's exp, and
 * qh_logsumexp against the serial sum of glibc's exps it replaced. */
static void test_vexp_double(void)
{
    double worst = 0.0;
    for (double x = -707.9; x < 709.0; x += 0.0137) {
        double e = exp(x), ulp = ldexp(1.0, ilogb(e) - 52);    /* double ulp at e */
        double err = fabs(qh_vexp_d(x) - e) / ulp;
        worst = err > worst ? err : worst;
    }
    QH_CHECK(worst <= 2.0, "vexp_d: worst error %.3f ulp over [-707.9, 709] (<= 2)", worst);
    QH_CHECK(qh_vexp_d(-709.0) == 0.0 && qh_vexp_d(-INFINITY) == 0.0 && isnan(qh_vexp_d(NAN))
                 && qh_vexp_d(0.0) == 1.0,
             "vexp_d: 0 below -708 and at -Inf, NaN kept, exp(0) = 1");
    qh_rng r = qh_rng_stream(7, 0, QH_RNG_SYNTHETIC);
    double worst_rel = 0.0;
    float x[5003];
    for (int trial = 0; trial < 20; trial++) {
        size_t n = 1 + (size_t)trial * 250;             /* 1 .. 4751: partial sums and tails */
        for (size_t i = 0; i < n; i++) x[i] = (float)(8.0 * qh_rng_normal(&r));
        float mx = x[0];
        for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += exp((double)x[i] - (double)mx);
        double ref = (double)mx + log(s), got = qh_logsumexp(x, n);
        double rel = fabs(got - ref) / fabs(ref);
        worst_rel = rel > worst_rel ? rel : worst_rel;
    }
    QH_CHECK(worst_rel <= 1e-14, "logsumexp: within %.2g of glibc exp's serial sum (<= 1e-14)", worst_rel);
    x[0] = 1.0f; x[1] = NAN; x[2] = 2.0f;
    QH_CHECK(isnan(qh_logsumexp(x, 3)), "logsumexp: a NaN logit gives NaN");
}

int main(void)
{
    test_vexp();
    test_vexp_double();
    test_norms();
    test_rope();
    test_attention();
    test_synthetic(0, 37);
    test_synthetic(1, 29);
    test_synthetic(2, qh_test_fast() ? 41 : 300);
    test_synthetic(0, qh_test_fast() ? 45 : 300);
    test_features();
    test_eval_synthetic();
    check_model("models/opt-7m", 1);
    check_model("models/llama-9m", 0);
    check_threads_bitwise("models/opt-7m");
    check_threads_bitwise("models/llama-9m");
    FILE *f = fopen("../shared/models/opt-30m/config.json", "r");
    if (f) {
        fclose(f);
        if (qh_test_fast()) QH_SKIP("opt-30m: skipped under QH_TEST_FAST");
        else check_model("../shared/models/opt-30m", 0);
    } else {
        QH_SKIP("opt-30m: ../shared/models/opt-30m absent");
    }
    return qh_test_summary();
}
