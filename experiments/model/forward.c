/* forward.c -- float32 forward pass of OPT and Llama decoders (see forward.h).
 *
 * Follows the Hugging Face implementations (OPTForCausalLM, LlamaForCausalLM
 * and the families of family.c) in float32, choosing each step by the model's
 * features (family.h), never by its family: LayerNorm/RMSNorm, causal
 * multi-head attention with grouped key/value heads, learned positions (with
 * an offset) or rotate-half RoPE, ReLU, SiLU or GELU MLP, plain or gated,
 * sandwich norms, soft-capping, parallel residual, tied or untied lm_head.  Every matrix product
 * is one sgemm on column-major (dim x T) activations; attention is computed
 * per head in blocks of query columns so that most of the masked upper
 * triangle of QK^T is never formed.  Left out: rope scaling variants, KV
 * caches, padding masks (windows always start at position 0).
 */
#include "model/forward.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model/rotate.h"
#include "model/vexp.h"
#include "qh_blas.h"
#include "qh_hadamard.h"
#include "qh_clock.h"

/* The element-wise loops (norm outputs, RoPE, residuals) are vectorised with
 * GCC's full vectoriser, which -O2 leaves out.  The bits do not change: it
 * does not reorder floating-point sums without -fassociative-math, so the
 * reductions (the norms' sums in double) stay serial. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif

/* Query columns per attention block: large enough for efficient sgemm,
 * small enough that the computed-but-masked part of QK^T stays ~12 %. */
#define QH_ATTN_QBLOCK 128

/* Adds the seconds since *t0 to *acc and restarts the clock (profile only). */
static void lap(int profile, double *t0, double *acc)
{
    if (!profile) return;
    double t = qh_seconds();
    *acc += t - *t0;
    *t0 = t;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

int qh_forward_check_features(const qh_model *m, const char *who)
{
    const qh_model_config *c = &m->cfg;
    const qh_model_features *f = &c->features;
    if (f->parallel_residual && (f->sandwich_norm || !f->pre_ln))
        QH_ERROR(QH_EUNIMPL, "%s: %s: a parallel residual with sandwich norms or post-LN is not "
                 "implemented", who, c->model_type);
    if (f->pos == QH_POS_ROTARY &&
        (f->rotary_dims < 2 || f->rotary_dims > c->head_dim || f->rotary_dims % 2))
        QH_ERROR(QH_ECONFIG, "%s: %s: RoPE on %d of %d head dims (an even number, at most "
                 "head_dim, is needed)", who, c->model_type, f->rotary_dims, c->head_dim);
    if (f->sandwich_norm && !f->pre_ln)
        QH_ERROR(QH_EUNIMPL, "%s: %s: sandwich norms in a post-LN block are not implemented",
                 who, c->model_type);
    if ((f->norm != QH_NORM_LAYER && f->norm != QH_NORM_RMS) ||
        (f->act != QH_ACT_RELU && f->act != QH_ACT_SILU && f->act != QH_ACT_GELU_TANH &&
         f->act != QH_ACT_GELU) ||
        (f->pos != QH_POS_LEARNED && f->pos != QH_POS_ROTARY))
        QH_ERROR(QH_EUNIMPL, "%s: %s: unknown norm, activation or position kind", who,
                 c->model_type);
    if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads != 0 || c->head_dim < 2 ||
        (f->qk_norm && f->norm != QH_NORM_RMS))
        QH_ERROR(QH_ECONFIG, "%s: unsupported heads %d / kv heads %d / head_dim %d", who,
                 c->n_heads, c->n_kv_heads, c->head_dim);
    return QH_OK;
}

/* Floats of a workspace (the buffers carved below), and the size_t scratch
 * after them in *idx (aqd entries). */
static size_t ws_floats(const qh_model_config *c, size_t T, size_t nt, size_t hk, size_t *idx)
{
    const qh_model_features *f = &c->features;
    size_t hidden = (size_t)c->hidden, embed = (size_t)(c->embed_dim > 0 ? c->embed_dim : c->hidden);
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t ffn = (size_t)c->ffn_dim, wide = max_sz(hidden, embed);
    size_t half = f->pos == QH_POS_ROTARY ? (size_t)f->rotary_dims / 2 : 0;
    size_t f2 = f->gated_mlp ? ffn : 0, aqd = max_sz(wide, max_sz(qd, ffn));
    *idx = aqd;
    return T * (hidden + 2 * wide + 2 * qd + 2 * kvd + ffn + f2 + nt * QH_ATTN_QBLOCK + 2 * half + aqd)
           + nt * QH_ATTN_QBLOCK + aqd + hk * hk;
}

size_t qh_forward_ws_bytes(const qh_model_config *c, size_t capacity)
{
    int nt = qh_blas_info().threads;
    nt = nt < 1 ? 1 : nt > QH_FORWARD_MAX_THREADS ? QH_FORWARD_MAX_THREADS : nt;
    nt = nt > c->n_heads ? c->n_heads : nt;
    size_t idx, n = ws_floats(c, capacity, (size_t)nt, 0, &idx);
    return (n * sizeof(float) + sizeof(size_t) - 1) / sizeof(size_t) * sizeof(size_t)
           + idx * sizeof(size_t) + sizeof(qh_forward_ws);
}

int qh_forward_ws_alloc(const qh_model *m, size_t capacity, qh_forward_ws **out)
{
    const qh_model_config *c = &m->cfg;
    const qh_model_features *f = &c->features;
    *out = NULL;
    if (capacity < 1)
        QH_ERROR(QH_EINVAL, "forward workspace: capacity must be >= 1 token");
    if (f->pos == QH_POS_LEARNED && capacity > (size_t)c->max_pos)
        QH_ERROR(QH_EINVAL, "forward workspace: %zu tokens exceed max_position_embeddings %d",
                 capacity, c->max_pos);
    QH_TRY(qh_forward_check_features(m, "forward workspace"));

    qh_forward_ws *ws = calloc(1, sizeof *ws);
    if (!ws) QH_ERROR(QH_ENOMEM, "forward workspace: out of memory");
    size_t T = capacity;
    ws->capacity = T;
    ws->hidden = (size_t)c->hidden;
    ws->embed_dim = (size_t)(c->embed_dim > 0 ? c->embed_dim : c->hidden);
    ws->head_dim = (size_t)c->head_dim;
    ws->q_dim = (size_t)c->n_heads * ws->head_dim;
    ws->kv_dim = (size_t)c->n_kv_heads * ws->head_dim;
    ws->ffn_dim = (size_t)c->ffn_dim;
    ws->qblock = QH_ATTN_QBLOCK;
    int nt = qh_blas_info().threads;
    nt = nt < 1 ? 1 : nt > QH_FORWARD_MAX_THREADS ? QH_FORWARD_MAX_THREADS : nt;
    nt = nt > c->n_heads ? c->n_heads : nt;
    ws->threads = ws->max_threads = nt;
    size_t wide = max_sz(ws->hidden, ws->embed_dim);
    size_t half = f->pos == QH_POS_ROTARY ? (size_t)f->rotary_dims / 2 : 0;
    size_t f2 = f->gated_mlp ? ws->ffn_dim : 0;
    size_t aqd = max_sz(wide, max_sz(ws->q_dim, ws->ffn_dim));
    ws->aq_dim = aqd;
    size_t hk = m->online_had_down ? qh_hadamard_base_for(ws->ffn_dim) : 0;
    if (m->online_had_down && !hk) {
        free(ws);
        QH_ERROR(QH_ECONFIG, "forward workspace: online Hadamard of size %d (ffn) unsupported",
                 c->ffn_dim);
    }
    size_t idx_n, n_floats = ws_floats(c, T, (size_t)nt, hk, &idx_n);   /* == the carving below */
    QH_ASSERT(idx_n == aqd);
    /* size_t scratch after the floats, aligned for size_t */
    size_t idx_off = (n_floats * sizeof(float) + sizeof(size_t) - 1) / sizeof(size_t);
    float *p = malloc((idx_off + aqd) * sizeof(size_t));
    if (!p) {
        free(ws);
        QH_ERROR(QH_ENOMEM, "forward workspace: cannot allocate %zu floats", n_floats);
    }
    ws->mem = p;
    ws->x = p;          p += T * ws->hidden;
    ws->xn = p;         p += T * wide;
    ws->tmp = p;        p += T * wide;
    ws->q = p;          p += T * ws->q_dim;
    ws->att = p;        p += T * ws->q_dim;
    ws->k = p;          p += T * ws->kv_dim;
    ws->v = p;          p += T * ws->kv_dim;
    ws->f1 = p;         p += T * ws->ffn_dim;
    ws->f2 = f2 ? p : NULL;  p += T * f2;
    ws->scores = p;     p += (size_t)nt * T * ws->qblock;
    ws->inv_sum = p;    p += (size_t)nt * ws->qblock;
    ws->aq = p;         p += T * aqd;
    ws->aq_s = p;       p += aqd;
    if (hk) {
        double *base = malloc(hk * hk * sizeof *base);
        if (!base || qh_hadamard_base(hk, base) != QH_OK) {
            free(base);
            free(ws->mem);
            free(ws);
            QH_ERROR(QH_ENOMEM, "forward workspace: Hadamard base %zu", hk);
        }
        for (size_t i = 0; i < hk * hk; i++) p[i] = (float)base[i];
        free(base);
        ws->had_base = p;  p += hk * hk;
        ws->had_K = hk;
    }
    ws->aq_idx = (size_t *)ws->mem + idx_off;
    if (half) {
        ws->rope_cos = p;  p += T * half;
        ws->rope_sin = p;  p += T * half;
        qh_rope_tables_model(c, T, ws->rope_cos, ws->rope_sin);
    }
    *out = ws;
    return QH_OK;
}

void qh_forward_ws_free(qh_forward_ws *ws)
{
    if (!ws) return;
    free(ws->mem);
    free(ws);
}

/* ---- pieces ------------------------------------------------------------ */

void qh_layer_norm(const float *x, float *y, size_t dim, size_t T, const float *w,
                   const float *b, float eps)
{
    for (size_t t = 0; t < T; t++) {
        const float *xc = x + t * dim;
        float *yc = y + t * dim;
        double s = 0.0;
        for (size_t i = 0; i < dim; i++) s += xc[i];
        double mean = s / (double)dim, ss = 0.0;
        for (size_t i = 0; i < dim; i++) {
            double d = xc[i] - mean;
            ss += d * d;
        }
        float inv = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
        float mu = (float)mean;
        for (size_t i = 0; i < dim; i++) {
            float v = (xc[i] - mu) * inv * w[i];
            yc[i] = b ? v + b[i] : v;
        }
    }
}

void qh_rms_norm(const float *x, float *y, size_t dim, size_t T, const float *w, float eps)
{
    qh_rms_norm_offset(x, y, dim, T, w, 0.0f, eps);
}

void qh_rms_norm_offset(const float *x, float *y, size_t dim, size_t T, const float *w,
                        float offset, float eps)
{
    for (size_t t = 0; t < T; t++) {
        const float *xc = x + t * dim;
        float *yc = y + t * dim;
        double ss = 0.0;
        for (size_t i = 0; i < dim; i++) ss += (double)xc[i] * xc[i];
        float inv = (float)(1.0 / sqrt((double)(float)(ss / (double)dim) + (double)eps));
        for (size_t i = 0; i < dim; i++) yc[i] = (offset + w[i]) * (xc[i] * inv);
    }
}

void qh_rope_tables(size_t head_dim, size_t T, double theta, float *cos_t, float *sin_t)
{
    size_t half = head_dim / 2;
    for (size_t i = 0; i < half; i++) {
        /* Hugging Face: inv_freq = 1 / theta^(2i/d) in float32, angle = t * inv_freq in float32 */
        float inv_freq = (float)(1.0 / pow(theta, (double)(float)(2.0 * (double)i / (double)head_dim)));
        for (size_t t = 0; t < T; t++) {
            float angle = (float)t * inv_freq;
            cos_t[i + t * half] = (float)cos((double)angle);
            sin_t[i + t * half] = (float)sin((double)angle);
        }
    }
}

/* The frequency of pair i of d rotary dims under the config's scaling
 * (transformers' rope init functions; the arithmetic in double, rounded to
 * float as its float32 tensors are). */
static float rope_inv_freq(const qh_model_config *c, size_t i, size_t d)
{
    float f = (float)(1.0 / pow(c->rope_theta, (double)(float)(2.0 * (double)i / (double)d)));
    const qh_rope_scaling *r = &c->rope;
    if (r->type == QH_ROPE_LINEAR) return (float)((double)f / r->factor);
    if (r->type != QH_ROPE_LLAMA3) return f;
    double old = (double)r->original_max_pos;
    double low_wl = old / r->low_freq_factor, high_wl = old / r->high_freq_factor;
    double wl = 2.0 * M_PI / (double)f;
    if (wl < high_wl) return f;                            /* high frequencies kept */
    if (wl > low_wl) return (float)((double)f / r->factor); /* low frequencies scaled */
    double smooth = (old / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
    return (float)((1.0 - smooth) * (double)f / r->factor + smooth * (double)f);
}

void qh_rope_tables_model(const qh_model_config *c, size_t T, float *cos_t, float *sin_t)
{
    size_t d = (size_t)c->features.rotary_dims, half = d / 2;
    for (size_t i = 0; i < half; i++) {
        float inv_freq = rope_inv_freq(c, i, d);
        for (size_t t = 0; t < T; t++) {
            float angle = (float)t * inv_freq;
            cos_t[i + t * half] = (float)cos((double)angle);
            sin_t[i + t * half] = (float)sin((double)angle);
        }
    }
}

void qh_rope_apply(float *x, size_t n_heads, size_t head_dim, size_t T, const float *cos_t,
                   const float *sin_t)
{
    qh_rope_apply_partial(x, n_heads, head_dim, head_dim, T, cos_t, sin_t);
}

void qh_rope_apply_partial(float *x, size_t n_heads, size_t head_dim, size_t rot, size_t T,
                           const float *cos_t, const float *sin_t)
{
    size_t half = rot / 2, dim = n_heads * head_dim;
    for (size_t t = 0; t < T; t++) {
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (size_t h = 0; h < n_heads; h++) {
            float *v = x + t * dim + h * head_dim;
            for (size_t i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/* Unnormalised softmax of one score column over its first `valid` entries,
 * in place: col[j] = exp(col[j] - max), masked entries (valid..n_keys) set to
 * zero.  Returns 1/sum, applied later to the (much shorter) output column.
 * Max subtraction keeps exp in range (vexp.h's, vectorised); the sum is
 * accumulated in double. */
static float softmax_masked(float *col, size_t valid, size_t n_keys)
{
    /* four running maxima break the compare dependency chain */
    float m4[4] = { col[0], col[0], col[0], col[0] };
    size_t j = 0;
    for (; j + 4 <= valid; j += 4)
        for (int u = 0; u < 4; u++) m4[u] = col[j + u] > m4[u] ? col[j + u] : m4[u];
    for (; j < valid; j++) m4[0] = col[j] > m4[0] ? col[j] : m4[0];
    float mx = m4[0];
    for (int u = 1; u < 4; u++) mx = m4[u] > mx ? m4[u] : mx;
    double sum = qh_vexp_shifted_sum(col, valid, mx);
    for (j = valid; j < n_keys; j++) col[j] = 0.0f;
    return (float)(1.0 / sum);
}

/* One head's causal attention with scratch S (n_keys x qblock) and inv_sum
 * (qblock); counters into st. */
/* softmax_masked over keys lo..valid-1 of a column, keys before lo (outside
 * a sliding window) exactly zero. */
static float softmax_window(float *col, size_t lo, size_t valid, size_t n_keys)
{
    for (size_t j = 0; j < lo; j++) col[j] = 0.0f;
    return softmax_masked(col + lo, valid - lo, n_keys - lo);
}

/* The first key query i sees under a sliding window (0: none). */
static size_t window_lo(size_t i, size_t window)
{
    return window && i + 1 > window ? i + 1 - window : 0;
}

/* Soft-capping of the scores a query sees: s -> cap tanh(s / cap) (float, as
 * Hugging Face's Gemma 2). */
static void softcap_scores(float *col, size_t lo, size_t valid, float cap)
{
    for (size_t j = lo; j < valid; j++) col[j] = cap * tanhf(col[j] / cap);
}

static void attention_head_run(const float *Q, size_t ldq, const float *K, size_t ldk,
                               const float *V, size_t ldv, float *O, size_t ldo, size_t T,
                               size_t hd, float scale, float softcap, size_t window, size_t qblock,
                               float *S, float *inv_sum, int profile, qh_forward_stats *st)
{
    double t0 = profile ? qh_seconds() : 0.0;
    for (size_t i0 = 0; i0 < T; i0 += qblock) {
        size_t B = T - i0 < qblock ? T - i0 : qblock;
        size_t n_keys = i0 + B;          /* queries i0..i0+B-1 see keys 0..i0+B-1 */
        /* S (n_keys x B) = scale * K^T Q */
        qh_sgemm('T', 'N', n_keys, B, hd, scale, K, ldk, Q + i0 * ldq, ldq, 0.0f, S, n_keys);
        lap(profile, &t0, &st->attn_gemm_s);
        if (softcap > 0)
            for (size_t c = 0; c < B; c++)
                softcap_scores(S + c * n_keys, window_lo(i0 + c, window), i0 + c + 1, softcap);
        for (size_t c = 0; c < B; c++)
            inv_sum[c] = softmax_window(S + c * n_keys, window_lo(i0 + c, window), i0 + c + 1,
                                        n_keys);
        lap(profile, &t0, &st->softmax_s);
        /* O (hd x B) = V (hd x n_keys) exp(S) (n_keys x B), then columns / sum */
        float *Ob = O + i0 * ldo;
        qh_sgemm('N', 'N', hd, B, n_keys, 1.0f, V, ldv, S, n_keys, 0.0f, Ob, ldo);
        lap(profile, &t0, &st->attn_gemm_s);
        for (size_t c = 0; c < B; c++)
            for (size_t d = 0; d < hd; d++) Ob[d + c * ldo] *= inv_sum[c];
        lap(profile, &t0, &st->softmax_s);
        st->attn_flops += 4.0 * (double)n_keys * (double)B * (double)hd;
    }
}

void qh_attention_head(const float *Q, size_t ldq, const float *K, size_t ldk, const float *V,
                       size_t ldv, float *O, size_t ldo, size_t T, size_t hd, float scale,
                       qh_forward_ws *ws)
{
    QH_ASSERT(T <= ws->capacity);
    attention_head_run(Q, ldq, K, ldk, V, ldv, O, ldo, T, hd, scale, 0.0f, 0, ws->qblock, ws->scores,
                       ws->inv_sum, ws->profile, &ws->stats);
}

/* worker(tasks + i size) for each i < nt: task 0 on the caller, the others on
 * threads of their own; a thread that cannot be created leaves its task to
 * the caller.  The attention heads and the element-wise spans run so. */
static void run_on_threads(int nt, void *(*worker)(void *), void *tasks, size_t size)
{
    pthread_t tids[QH_FORWARD_MAX_THREADS];
    int started[QH_FORWARD_MAX_THREADS] = { 0 };
    char *t = tasks;
    for (int i = 1; i < nt; i++)
        started[i] = pthread_create(&tids[i], NULL, worker, t + (size_t)i * size) == 0;
    worker(t);
    for (int i = 1; i < nt; i++) {
        if (started[i]) pthread_join(tids[i], NULL);
        else worker(t + (size_t)i * size);
    }
}

/* All heads of one layer, heads tid, tid+nt, ... on thread tid. */
typedef struct {
    const qh_model_config *c;
    qh_forward_ws *ws;
    size_t T, window;
    int tid, nt;
    qh_forward_stats st;
} heads_task;

static void *heads_worker(void *arg)
{
    heads_task *a = arg;
    qh_forward_ws *ws = a->ws;
    size_t hd = ws->head_dim, qd = ws->q_dim, kvd = ws->kv_dim;
    size_t group = (size_t)(a->c->n_heads / a->c->n_kv_heads);
    float scale = qh_attention_scale(a->c), cap = (float)a->c->attn_softcap;
    float *S = ws->scores + (size_t)a->tid * ws->capacity * ws->qblock;
    float *inv_sum = ws->inv_sum + (size_t)a->tid * ws->qblock;
    for (size_t h = (size_t)a->tid; h < (size_t)a->c->n_heads; h += (size_t)a->nt) {
        size_t kvh = h / group;                       /* grouped-query attention */
        attention_head_run(ws->q + h * hd, qd, ws->k + kvh * hd, kvd, ws->v + kvh * hd, kvd,
                           ws->att + h * hd, qd, a->T, hd, scale, cap, a->window, ws->qblock, S, inv_sum,
                           ws->profile, &a->st);
    }
    return NULL;
}

/* Heads in parallel on ws->threads threads, each calling single-threaded
 * sgemm: the per-head products are too small for BLAS threading to pay, and
 * the softmax loops run in parallel too.  The BLAS thread count is restored
 * afterwards.  A thread that cannot be created leaves its heads to the caller. */
static void attention_all_heads(const qh_model_config *c, qh_forward_ws *ws, size_t T,
                                size_t window)
{
    heads_task tasks[QH_FORWARD_MAX_THREADS];
    int nt = ws->threads < c->n_heads ? ws->threads : c->n_heads;
    nt = nt < 1 ? 1 : nt > ws->max_threads ? ws->max_threads : nt;
    int blas_threads = nt > 1 ? qh_blas_info().threads : 0;
    double t0 = ws->profile ? qh_seconds() : 0.0;
    if (nt > 1) qh_blas_set_threads(1);
    for (int i = 0; i < nt; i++)
        tasks[i] = (heads_task){ .c = c, .ws = ws, .T = T, .window = window, .tid = i, .nt = nt };
    run_on_threads(nt, heads_worker, tasks, sizeof tasks[0]);
    if (nt > 1) qh_blas_set_threads(blas_threads);
    /* wall time of the region, split as thread 0 spent it */
    double wall = ws->profile ? qh_seconds() - t0 : 0.0;
    double g0 = tasks[0].st.attn_gemm_s, s0 = tasks[0].st.softmax_s;
    if (g0 + s0 > 0) {
        ws->stats.attn_gemm_s += wall * g0 / (g0 + s0);
        ws->stats.softmax_s += wall * s0 / (g0 + s0);
    }
    for (int i = 0; i < nt; i++) ws->stats.attn_flops += tasks[i].st.attn_flops;
}

/* ---- element-wise work over threads ------------------------------------- */

/* fn(arg, lo, hi) over [0, n) in nt contiguous spans, one per thread (the
 * caller runs the first).  Each element is computed as it would be on one
 * thread, so the results do not depend on nt.  Below SPLIT_MIN elements of
 * work the caller does it all. */
#define SPLIT_MIN ((size_t)1 << 16)

typedef struct { qh_span_fn fn; void *arg; size_t lo, hi; } span_task;

static void *span_worker(void *p)
{
    span_task *t = p;
    t->fn(t->arg, t->lo, t->hi);
    return NULL;
}

void qh_forward_spans(const qh_forward_ws *ws, size_t n, size_t work, qh_span_fn fn, void *arg)
{
    int nt = ws->threads < 1 ? 1 : ws->threads > ws->max_threads ? ws->max_threads : ws->threads;
    if (nt > 1 && work < SPLIT_MIN) nt = 1;
    if ((size_t)nt > n) nt = (int)(n ? n : 1);
    span_task tasks[QH_FORWARD_MAX_THREADS];
    for (int i = 0; i < nt; i++)
        tasks[i] = (span_task){ fn, arg, n * (size_t)i / (size_t)nt, n * (size_t)(i + 1) / (size_t)nt };
    run_on_threads(nt, span_worker, tasks, sizeof tasks[0]);
}

/* ---- blocks ------------------------------------------------------------ */

float qh_gelu_tanh(float x)
{
    const float k = 0.7978845608028654f;      /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

float qh_gelu(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

float qh_attention_scale(const qh_model_config *c)
{
    return (float)(c->attn_scale > 0 ? c->attn_scale : 1.0 / sqrt((double)c->head_dim));
}

static int call_hook(const qh_forward_hook *hook, int layer, int kind, const float *X,
                     size_t in, size_t T)
{
    if (!hook || !hook->fn) return QH_OK;
    return hook->fn(layer, kind, X, in, T, hook->user);
}

void qh_linear_apply(const qh_linear *L, const float *x, size_t T, float *y, int accumulate)
{
    size_t out = (size_t)L->out, in = (size_t)L->in;
    float beta = accumulate ? 1.0f : 0.0f;
    if (L->b) {
        for (size_t t = 0; t < T; t++) {
            float *yc = y + t * out;
            if (accumulate)
                for (size_t i = 0; i < out; i++) yc[i] += L->b[i];
            else
                memcpy(yc, L->b, out * sizeof(float));
        }
        beta = 1.0f;
    }
    qh_sgemm('T', 'N', out, T, in, 1.0f, L->W, in, x, in, beta, y, out);
}

/* The input a linear of `kind` is applied to: x itself without activation
 * quantization, else ws->aq holding x fake-quantized (with Runtime Smooth at
 * o_proj, gate/up and down when asked).  Linears sharing an input (q/k/v,
 * gate/up) pass reuse = 1 after the first to skip the repeated work. */
static const float *linear_input(const qh_model *m, int kind, const float *x, size_t dim,
                                 size_t T, qh_forward_ws *ws, int reuse)
{
    const qh_act_quant *aq = m->act_quant;
    if (!aq || !qh_quant_spec_on(&aq->act)) return x;
    if (reuse) return ws->aq;
    QH_ASSERT(dim <= ws->aq_dim);
    int smoothed = aq->smooth && kind != QH_LIN_Q && kind != QH_LIN_K && kind != QH_LIN_V;
    if (smoothed)
        qh_runtime_smooth_quant(aq, x, ws->aq, dim, T, ws->aq_s, ws->aq_idx);
    else
        qh_fake_quant(&aq->act, x, ws->aq, dim, T);
    return ws->aq;
}

/* Hook (on the float input x), then the linear on xa (x or its fake-quantized
 * copy); timing and FLOPs into ws->stats. */
static int run_linear(const qh_block *blk, int layer, int kind, const float *x, const float *xa,
                      size_t T, float *y, int accumulate, qh_forward_ws *ws,
                      const qh_forward_hook *hook, double *t0)
{
    const qh_linear *L = &blk->lin[kind];
    QH_ASSERT(L->W != NULL);
    lap(ws->profile, t0, &ws->stats.other_s);
    int st = call_hook(hook, layer, kind, x, (size_t)L->in, T);
    if (st != QH_OK) return st;
    if (ws->profile) *t0 = qh_seconds();                 /* hook time is not ours */
    qh_linear_apply(L, xa, T, y, accumulate);
    ws->stats.linear_flops += 2.0 * (double)L->out * (double)L->in * (double)T;
    lap(ws->profile, t0, &ws->stats.linear_s);
    return QH_OK;
}

void qh_norm_apply(const qh_model *m, const qh_norm *n, const float *x, float *y, size_t dim,
                   size_t T)
{
    if (m->cfg.features.norm == QH_NORM_RMS)
        qh_rms_norm_offset(x, y, dim, T, n->w, m->cfg.features.norm_plus_one ? 1.0f : 0.0f,
                           m->cfg.norm_eps);
    else
        qh_layer_norm(x, y, dim, T, n->w, n->b, m->cfg.norm_eps);
}

typedef struct {
    const qh_model *m;
    const qh_norm *n;
    const float *x;
    float *y;
    size_t dim;
} norm_span;

static void norm_tokens(void *arg, size_t lo, size_t hi)
{
    const norm_span *a = arg;
    qh_norm_apply(a->m, a->n, a->x + lo * a->dim, a->y + lo * a->dim, a->dim, hi - lo);
}

/* qh_norm_apply with the tokens spread over the workspace's threads. */
static void norm_threaded(const qh_model *m, const qh_norm *n, const float *x, float *y, size_t dim,
                          size_t T, const qh_forward_ws *ws)
{
    norm_span a = { m, n, x, y, dim };
    qh_forward_spans(ws, T, dim * T, norm_tokens, &a);
}

/* x += norm(z) (z overwritten): a sandwich norm's output into the residual. */
static void add_post_norm(const qh_model *m, const qh_norm *n, float *z, float *x, size_t d,
                          size_t T)
{
    qh_norm_apply(m, n, z, z, d, T);
    for (size_t i = 0; i < d * T; i++) x[i] += z[i];
}

typedef struct {
    const qh_model_config *c;
    qh_forward_ws *ws;
    size_t hd;
} rope_span;

/* RoPE on tokens lo..hi of q and k (their tables' columns lo..hi). */
static void rope_tokens(void *arg, size_t lo, size_t hi)
{
    const rope_span *a = arg;
    const qh_model_config *c = a->c;
    qh_forward_ws *ws = a->ws;
    size_t rot = (size_t)c->features.rotary_dims, half = rot / 2;
    const float *cs = ws->rope_cos + lo * half, *sn = ws->rope_sin + lo * half;
    qh_rope_apply_partial(ws->q + lo * ws->q_dim, (size_t)c->n_heads, a->hd, rot, hi - lo, cs, sn);
    qh_rope_apply_partial(ws->k + lo * ws->kv_dim, (size_t)c->n_kv_heads, a->hd, rot, hi - lo, cs, sn);
}

/* Self-attention of block `layer` on input h (hidden x T): x += o_proj(attn(h)),
 * or x += post_norm(o_proj(attn(h))) with sandwich norms (through ws->tmp). */
static int attention_sublayer(const qh_model *m, int layer, const float *h, float *x, size_t T,
                              qh_forward_ws *ws, const qh_forward_hook *hook, double *t0)
{
    const qh_block *blk = &m->blocks[layer];
    const qh_model_config *c = &m->cfg;
    size_t hd = ws->head_dim, d = (size_t)blk->lin[QH_LIN_Q].in;
    const float *ha = linear_input(m, QH_LIN_Q, h, d, T, ws, 0);
    QH_TRY(run_linear(blk, layer, QH_LIN_Q, h, ha, T, ws->q, 0, ws, hook, t0));
    QH_TRY(run_linear(blk, layer, QH_LIN_K, h, ha, T, ws->k, 0, ws, hook, t0));
    QH_TRY(run_linear(blk, layer, QH_LIN_V, h, ha, T, ws->v, 0, ws, hook, t0));
    if (c->features.qk_norm) {                /* per head: columns of head_dim */
        qh_norm_apply(m, &blk->q_norm, ws->q, ws->q, hd, (size_t)c->n_heads * T);
        qh_norm_apply(m, &blk->k_norm, ws->k, ws->k, hd, (size_t)c->n_kv_heads * T);
    }
    if (c->features.pos == QH_POS_ROTARY) {
        rope_span a = { c, ws, hd };
        qh_forward_spans(ws, T, ws->q_dim * T, rope_tokens, &a);
    }
    if (m->act_quant && qh_quant_spec_on(&m->act_quant->kv)) {
        qh_fake_quant_heads(&m->act_quant->kv, ws->k, (size_t)c->n_kv_heads, hd, T);
        qh_fake_quant_heads(&m->act_quant->kv, ws->v, (size_t)c->n_kv_heads, hd, T);
    }
    lap(ws->profile, t0, &ws->stats.other_s);
    attention_all_heads(c, ws, T, (size_t)qh_model_layer_window(c, layer));
    if (ws->profile) *t0 = qh_seconds();
    const float *aa = linear_input(m, QH_LIN_O, ws->att, ws->q_dim, T, ws, 0);
    if (!c->features.sandwich_norm)
        return run_linear(blk, layer, QH_LIN_O, ws->att, aa, T, x, 1, ws, hook, t0);
    QH_TRY(run_linear(blk, layer, QH_LIN_O, ws->att, aa, T, ws->tmp, 0, ws, hook, t0));
    add_post_norm(m, &blk->attn_post_norm, ws->tmp, x, ws->hidden, T);
    return QH_OK;
}

/* a[i] = act(a[i]), times u[i] when u is given (a gated MLP). */
static void mlp_activation(qh_act_kind act, float *a, const float *u, size_t n)
{
    if (act == QH_ACT_GELU) {
        for (size_t i = 0; i < n; i++) {
            float g = qh_gelu(a[i]);
            a[i] = u ? g * u[i] : g;
        }
    } else if (act == QH_ACT_GELU_TANH) {
        for (size_t i = 0; i < n; i++) {
            float g = qh_gelu_tanh(a[i]);
            a[i] = u ? g * u[i] : g;
        }
    } else if (act == QH_ACT_SILU) {
        qh_vsilu(a, u, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            float r = a[i] > 0.0f ? a[i] : 0.0f;
            a[i] = u ? r * u[i] : r;
        }
    }
}

typedef struct {
    qh_act_kind act;
    float *a;
    const float *u;
} act_span;

static void act_elements(void *arg, size_t lo, size_t hi)
{
    const act_span *s = arg;
    mlp_activation(s->act, s->a + lo, s->u ? s->u + lo : NULL, hi - lo);
}

/* MLP of block `layer` on input h (hidden x T): x += down(act(gate h) * up h)
 * when gated, else x += down(act(up h)). */
static int mlp_sublayer(const qh_model *m, int layer, const float *h, float *x, size_t T,
                        qh_forward_ws *ws, const qh_forward_hook *hook, double *t0)
{
    const qh_block *blk = &m->blocks[layer];
    int gated = m->cfg.features.gated_mlp;
    float *f1 = ws->f1;
    int first = gated ? QH_LIN_GATE : QH_LIN_UP;
    const float *ha = linear_input(m, first, h, (size_t)blk->lin[first].in, T, ws, 0);
    QH_TRY(run_linear(blk, layer, first, h, ha, T, f1, 0, ws, hook, t0));
    if (gated) QH_TRY(run_linear(blk, layer, QH_LIN_UP, h, ha, T, ws->f2, 0, ws, hook, t0));
    act_span as = { m->cfg.features.act, f1, gated ? ws->f2 : NULL };
    qh_forward_spans(ws, ws->ffn_dim * T, ws->ffn_dim * T, act_elements, &as);
    if (m->online_had_down)                    /* rotated model: down's W holds (H D)^T */
        qh_online_hadamard(f1, ws->ffn_dim, T, ws->had_base, ws->had_K,
                           m->had_down_signs);
    const float *fa = linear_input(m, QH_LIN_DOWN, f1, ws->ffn_dim, T, ws, 0);
    if (!m->cfg.features.sandwich_norm)
        return run_linear(blk, layer, QH_LIN_DOWN, f1, fa, T, x, 1, ws, hook, t0);
    QH_TRY(run_linear(blk, layer, QH_LIN_DOWN, f1, fa, T, ws->tmp, 0, ws, hook, t0));
    add_post_norm(m, &blk->mlp_post_norm, ws->tmp, x, ws->hidden, T);
    return QH_OK;
}

int qh_forward_block(const qh_model *m, int layer, float *x, size_t T, qh_forward_ws *ws,
                     const qh_forward_hook *hook)
{
    if (layer < 0 || layer >= m->cfg.n_layers)
        QH_ERROR(QH_EINVAL, "forward: layer %d outside [0, %d)", layer, m->cfg.n_layers);
    if (T < 1 || T > ws->capacity)
        QH_ERROR(QH_EINVAL, "forward: %zu tokens outside [1, %zu] (workspace capacity)", T,
                 ws->capacity);
    QH_TRY(qh_model_acquire_block(m, layer));   /* spilled models: converted on first use */
    const qh_block *blk = &m->blocks[layer];
    size_t d = ws->hidden;
    double t0 = ws->profile ? qh_seconds() : 0.0;
    if (m->cfg.features.parallel_residual) {
        /* GPT-NeoX: x + attn(n1(x)) + mlp(n2(x)), both norms of the block input */
        norm_threaded(m, &blk->attn_norm, x, ws->xn, d, T, ws);
        norm_threaded(m, &blk->mlp_norm, x, ws->tmp, d, T, ws);
        QH_TRY(attention_sublayer(m, layer, ws->xn, x, T, ws, hook, &t0));
        QH_TRY(mlp_sublayer(m, layer, ws->tmp, x, T, ws, hook, &t0));
    } else if (m->cfg.features.pre_ln) {
        norm_threaded(m, &blk->attn_norm, x, ws->xn, d, T, ws);
        QH_TRY(attention_sublayer(m, layer, ws->xn, x, T, ws, hook, &t0));
        norm_threaded(m, &blk->mlp_norm, x, ws->xn, d, T, ws);
        QH_TRY(mlp_sublayer(m, layer, ws->xn, x, T, ws, hook, &t0));
    } else {
        /* post-LN (OPT-350m): x = LN(x + attn(x)); x = LN(x + mlp(x)).  The
         * sublayer input must survive the residual add, so copy it first. */
        memcpy(ws->xn, x, d * T * sizeof(float));
        QH_TRY(attention_sublayer(m, layer, ws->xn, x, T, ws, hook, &t0));
        norm_threaded(m, &blk->attn_norm, x, x, d, T, ws);
        memcpy(ws->xn, x, d * T * sizeof(float));
        QH_TRY(mlp_sublayer(m, layer, ws->xn, x, T, ws, hook, &t0));
        norm_threaded(m, &blk->mlp_norm, x, x, d, T, ws);
    }
    lap(ws->profile, &t0, &ws->stats.other_s);
    return QH_OK;
}

/* ---- ends -------------------------------------------------------------- */

int qh_forward_embed(const qh_model *m, const int32_t *ids, size_t T, qh_forward_ws *ws,
                     float *x)
{
    const qh_model_config *c = &m->cfg;
    if (T < 1 || T > ws->capacity)
        QH_ERROR(QH_EINVAL, "forward: %zu tokens outside [1, %zu] (workspace capacity)", T,
                 ws->capacity);
    for (size_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            QH_ERROR(QH_EINVAL, "forward: token id %d at position %zu outside [0, %d)",
                     (int)ids[t], t, c->vocab_size);
    double t0 = ws->profile ? qh_seconds() : 0.0;
    size_t d = ws->hidden, e = ws->embed_dim;
    int project = m->project_in.W != NULL;
    float *dst = project ? ws->tmp : x;              /* (e x T) before project_in */
    for (size_t t = 0; t < T; t++)
        memcpy(dst + t * e, m->embed_tokens + (size_t)ids[t] * e, e * sizeof(float));
    if (project) qh_linear_apply(&m->project_in, ws->tmp, T, x, 0);
    if (c->features.embed_scale) {            /* Gemma: sqrt(hidden) as a float32 scalar */
        float s = (float)sqrt((double)c->hidden);
        for (size_t i = 0; i < d * T; i++) x[i] *= s;
    }
    if (m->embed_pos) {
        for (size_t t = 0; t < T; t++) {
            const float *p = m->embed_pos + (t + (size_t)c->features.pos_offset) * d;
            float *xc = x + t * d;
            for (size_t i = 0; i < d; i++) xc[i] += p[i];
        }
    }
    lap(ws->profile, &t0, &ws->stats.other_s);
    return QH_OK;
}

int qh_forward_head(const qh_model *m, const float *x, size_t T, qh_forward_ws *ws,
                    float *logits)
{
    if (T < 1 || T > ws->capacity)
        QH_ERROR(QH_EINVAL, "forward: %zu tokens outside [1, %zu] (workspace capacity)", T,
                 ws->capacity);
    double t0 = ws->profile ? qh_seconds() : 0.0;
    size_t d = ws->hidden, e = ws->embed_dim, V = (size_t)m->cfg.vocab_size;
    const float *h = x;
    if (m->final_norm.w) {
        qh_norm_apply(m, &m->final_norm, x, ws->xn, d, T);
        h = ws->xn;
    }
    lap(ws->profile, &t0, &ws->stats.other_s);
    if (m->project_out.W) {
        qh_linear_apply(&m->project_out, h, T, ws->tmp, 0);
        ws->stats.head_flops += 2.0 * (double)e * (double)d * (double)T;
        h = ws->tmp;
    }
    qh_sgemm('T', 'N', V, T, e, 1.0f, m->lm_head, e, h, e, 0.0f, logits, V);
    if (m->head_bias)
        for (size_t t = 0; t < T; t++)
            for (size_t v = 0; v < V; v++) logits[v + t * V] += m->head_bias[v];
    ws->stats.head_flops += 2.0 * (double)V * (double)e * (double)T;
    if (m->cfg.final_softcap > 0) {           /* Gemma 2: cap tanh(logits / cap) */
        float cap = (float)m->cfg.final_softcap;
        for (size_t i = 0; i < V * T; i++) logits[i] = cap * tanhf(logits[i] / cap);
    }
    lap(ws->profile, &t0, &ws->stats.head_s);
    return QH_OK;
}

int qh_forward_window(const qh_model *m, const int32_t *ids, size_t T, qh_forward_ws *ws,
                      float *logits)
{
    QH_TRY(qh_forward_embed(m, ids, T, ws, ws->x));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        QH_TRY(qh_forward_block(m, l, ws->x, T, ws, NULL));
        qh_model_release_block(m, l);            /* spilled models: one block resident */
    }
    return qh_forward_head(m, ws->x, T, ws, logits);
}
