/* sequential.c -- block-sequential calibration traversal (see sequential.h). */
#include "pipeline/sequential.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/safetensors.h"
#include "qh_hessian.h"

/* Linears that share an input share a Hessian: q/k/v, and a gated MLP's gate/up. */
enum { GROUP_ATTN_IN, GROUP_ATTN_OUT, GROUP_MLP_IN, GROUP_MLP_OUT, N_GROUPS };
static const int group_of_kind[QH_LIN_MAX] = {
    [QH_LIN_Q] = GROUP_ATTN_IN, [QH_LIN_K] = GROUP_ATTN_IN, [QH_LIN_V] = GROUP_ATTN_IN,
    [QH_LIN_O] = GROUP_ATTN_OUT, [QH_LIN_GATE] = GROUP_MLP_IN, [QH_LIN_UP] = GROUP_MLP_IN,
    [QH_LIN_DOWN] = GROUP_MLP_OUT,
};

/* The first kind of group g that block b has in forward (enum) order: the
 * hook accumulates there only (the MLP's input at gate when gated, else up). */
static int group_leader(const qh_block *b, int g)
{
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (group_of_kind[k] == g && b->lin[k].W) return k;
    return -1;
}

typedef struct {
    const qh_model *m;
    int layer;
    qh_hessian_acc acc[N_GROUPS];
    double *absmax[N_GROUPS];        /* (acc[g].n) max |x_j| over the tokens seen */
} block_hessians;

/* absmax[j] = max(absmax[j], |X[j, t]|) over the T columns of X (in x T). */
static void update_absmax(double *absmax, const float *X, size_t in, size_t T)
{
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < in; j++) {
            double a = fabs((double)X[j + t * in]);
            if (a > absmax[j]) absmax[j] = a;
        }
}

static int accumulate_hook(int layer, int kind, const float *X, size_t in, size_t T, void *user)
{
    block_hessians *bh = user;
    int g = group_of_kind[kind];
    if (kind != group_leader(&bh->m->blocks[layer], g)) return QH_OK;
    QH_ASSERT(bh->acc[g].n == in);
    const qh_linear *lin = &bh->m->blocks[layer].lin[kind];
    QH_TRY(qh_hessian_acc_add(&bh->acc[g], X, T, lin->name));   /* checks X is finite */
    update_absmax(bh->absmax[g], X, in, T);
    return QH_OK;
}

void qh_linear_to_matd(const qh_linear *lin, qh_matd *W)
{
    QH_ASSERT(W->rows == (size_t)lin->out && W->cols == (size_t)lin->in);
    for (size_t i = 0; i < (size_t)lin->out; i++)
        for (size_t j = 0; j < (size_t)lin->in; j++)
            QH_AT(W, i, j) = lin->W[i * (size_t)lin->in + j];
}

void qh_linear_from_matd(qh_linear *lin, const qh_matd *W)
{
    QH_ASSERT(W->rows == (size_t)lin->out && W->cols == (size_t)lin->in);
    for (size_t i = 0; i < (size_t)lin->out; i++)
        for (size_t j = 0; j < (size_t)lin->in; j++)
            lin->W[i * (size_t)lin->in + j] = (float)QH_AT(W, i, j);
}

static void free_hessians(block_hessians *bh)
{
    for (int g = 0; g < N_GROUPS; g++) {
        qh_hessian_acc_free(&bh->acc[g]);
        free(bh->absmax[g]);
        bh->absmax[g] = NULL;
    }
}

static int init_hessians(block_hessians *bh, const qh_model *m, int layer)
{
    memset(bh, 0, sizeof *bh);
    bh->m = m;
    bh->layer = layer;
    const qh_block *b = &m->blocks[layer];
    for (int g = 0; g < N_GROUPS; g++) {
        size_t n = (size_t)b->lin[group_leader(b, g)].in;
        int st = qh_hessian_acc_init(&bh->acc[g], n);
        if (st == QH_OK && !(bh->absmax[g] = calloc(n, sizeof(double))))
            QH_SET_ERROR(st, QH_ENOMEM, "layer %d: per-channel maxima of %zu inputs", layer, n);
        if (st != QH_OK) { free_hessians(bh); return st; }
    }
    return QH_OK;
}

static const char *const act_dtype_names[] = { "f32", "bf16", "f16" };

int qh_act_dtype_parse(const char *name, qh_act_dtype *out)
{
    for (int d = 0; d < 3; d++)
        if (name && !strcmp(name, act_dtype_names[d])) { *out = (qh_act_dtype)d; return QH_OK; }
    QH_ERROR(QH_ECONFIG, "activation dtype \"%s\": expected one of " QH_ACT_DTYPE_NAMES,
             name ? name : "(null)");
}

const char *qh_act_dtype_name(qh_act_dtype d)
{
    return d >= QH_ACT_F32 && d <= QH_ACT_F16 ? act_dtype_names[d] : "?";
}

/* The hidden states of every window, as float32 (read and written in place,
 * as before 16-bit storage existed, so float32 results keep their bits) or
 * as 16-bit values that a block reads widened into a float32 window. */
typedef struct {
    qh_act_dtype dtype;
    size_t window;                   /* values per window: hidden x seqlen */
    float *f32;                      /* nsamples windows (QH_ACT_F32) */
    uint16_t *h16;                   /* nsamples windows (16-bit dtypes) */
} window_store;

static int store_alloc(window_store *ws, qh_act_dtype dtype, size_t nsamples, size_t window)
{
    *ws = (window_store){ dtype, window, NULL, NULL };
    if (dtype == QH_ACT_F32) ws->f32 = malloc(nsamples * window * sizeof(float));
    else ws->h16 = malloc(nsamples * window * sizeof(uint16_t));
    return ws->f32 || ws->h16 ? QH_OK : QH_ENOMEM;
}

static void store_free(window_store *ws)
{
    free(ws->f32);
    free(ws->h16);
    ws->f32 = NULL;
    ws->h16 = NULL;
}

/* Window s as float32: the stored floats themselves, or widened into buf. */
static float *store_read(const window_store *ws, size_t s, float *buf)
{
    if (ws->f32) return ws->f32 + s * ws->window;
    const uint16_t *h = ws->h16 + s * ws->window;
    for (size_t i = 0; i < ws->window; i++)
        buf[i] = ws->dtype == QH_ACT_BF16 ? qh_bf16_to_f32(h[i]) : qh_f16_to_f32(h[i]);
    return buf;
}

/* Stores x as window s (a no-op when x is the stored floats themselves);
 * 16 bits round to nearest even. */
static void store_write(window_store *ws, size_t s, const float *x)
{
    if (ws->f32) {
        float *at = ws->f32 + s * ws->window;
        if (x != at) memcpy(at, x, ws->window * sizeof *x);
        return;
    }
    uint16_t *h = ws->h16 + s * ws->window;
    for (size_t i = 0; i < ws->window; i++)
        h[i] = ws->dtype == QH_ACT_BF16 ? qh_f32_to_bf16(x[i]) : qh_f32_to_f16(x[i]);
}

/* Pass 1: Hessians of every input of block `layer` (hidden states untouched). */
static int collect_block(const qh_model *m, int layer, const window_store *states, size_t nsamples,
                         size_t seqlen, qh_forward_ws *ws, block_hessians *bh)
{
    qh_forward_hook hook = { accumulate_hook, bh };
    for (size_t s = 0; s < nsamples; s++) {
        const float *x = store_read(states, s, ws->x);
        if (x != ws->x) memcpy(ws->x, x, states->window * sizeof(float));
        QH_TRY(qh_forward_block(m, layer, ws->x, seqlen, ws, &hook));
    }
    return QH_OK;
}

/* Pass 3: the block as it now is moves every window to the next block's
 * inputs (in place for float32; through buf, one window, for 16 bits). */
static int advance_block(const qh_model *m, int layer, window_store *states, size_t nsamples,
                         size_t seqlen, qh_forward_ws *ws, float *buf)
{
    for (size_t s = 0; s < nsamples; s++) {
        float *x = store_read(states, s, buf);
        QH_TRY(qh_forward_block(m, layer, x, seqlen, ws, NULL));
        store_write(states, s, x);
    }
    return QH_OK;
}

/* Step 2: hands every linear of the block with its H to the visitor, in the
 * order of the family's stable numbers (results list a block's linears so). */
static int visit_block(qh_model *m, int layer, const block_hessians *bh, const qh_layer_visitor *v)
{
    qh_block *b = &m->blocks[layer];
    int st = QH_OK;
    for (int i = 0; i < qh_model_n_linear(m) && st == QH_OK; i++) {
        int kind = qh_model_linear_at(m, i);
        qh_linear *lin = &b->lin[kind];
        if (!lin->W) continue;
        int g = group_of_kind[kind];
        const qh_hessian_acc *acc = &bh->acc[g];
        qh_matd *W = qh_matd_alloc((size_t)lin->out, (size_t)lin->in);
        qh_matd *H = qh_matd_alloc(acc->n, acc->n);
        int replace = 0;
        if (!W || !H) QH_SET_ERROR(st, QH_ENOMEM, "%s: cannot allocate W and H", lin->name);
        if (st == QH_OK) st = qh_hessian_acc_result(acc, H);
        if (st == QH_OK) {
            qh_linear_to_matd(lin, W);
            st = v->fn(m, layer, kind, W, H, bh->absmax[g], &replace, v->user);
        }
        if (st == QH_OK && replace) qh_linear_from_matd(lin, W);
        qh_matd_free(W);
        qh_matd_free(H);
    }
    return st;
}

void qh_block_swap_weights(qh_model *m, int layer, float *W[QH_LIN_MAX])
{
    qh_block *b = &m->blocks[layer];
    for (int kind = 0; kind < QH_LIN_MAX; kind++) {
        if (!b->lin[kind].W) continue;
        float *t = b->lin[kind].W;
        b->lin[kind].W = W[kind];
        W[kind] = t;
    }
}

/* The float path for a block objective: the block's original weights and the
 * hidden states every window has when no block is quantized. */
typedef struct {
    float *W[QH_LIN_MAX];            /* NULL where the block lacks the kind */
    float *states;                   /* nsamples x hidden x seqlen */
} float_path;

static void float_path_free_weights(float_path *fp)
{
    for (int k = 0; k < QH_LIN_MAX; k++) { free(fp->W[k]); fp->W[k] = NULL; }
}

static int float_path_save_weights(float_path *fp, const qh_model *m, int layer)
{
    const qh_block *b = &m->blocks[layer];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        const qh_linear *lin = &b->lin[k];
        if (!lin->W) continue;
        size_t bytes = (size_t)lin->out * (size_t)lin->in * sizeof(float);
        if (!(fp->W[k] = malloc(bytes))) {
            float_path_free_weights(fp);
            QH_ERROR(QH_ENOMEM, "%s: cannot hold the float weights", lin->name);
        }
        memcpy(fp->W[k], lin->W, bytes);
    }
    return QH_OK;
}

/* Moves the float-path states through block `layer` with its original weights. */
static int float_path_advance(float_path *fp, qh_model *m, int layer, size_t nsamples,
                              size_t seqlen, qh_forward_ws *ws)
{
    size_t hidden = (size_t)m->cfg.hidden;
    int st = QH_OK;
    qh_block_swap_weights(m, layer, fp->W);
    for (size_t s = 0; s < nsamples && st == QH_OK; s++)
        st = qh_forward_block(m, layer, fp->states + s * hidden * seqlen, seqlen, ws, NULL);
    qh_block_swap_weights(m, layer, fp->W);
    return st;
}

/* Step 2b: the block objective, with the float path kept in step. */
static int block_stage(qh_model *m, int layer, float *states, float_path *fp, size_t nsamples,
                       size_t seqlen, qh_forward_ws *ws, const qh_layer_visitor *v)
{
    int st = v->block_fn(m, layer, states, fp->states, nsamples, seqlen, fp->W, v->user);
    if (st == QH_OK) st = float_path_advance(fp, m, layer, nsamples, seqlen, ws);
    return st;
}

int qh_sequential_visit(qh_model *m, const int32_t *windows, size_t nsamples, size_t seqlen,
                        const qh_layer_visitor *v)
{
    if (v->act_dtype != QH_ACT_F32 && v->block_fn)
        QH_ERROR(QH_EUNIMPL, "calibration act_dtype \"%s\": the block stage reads every window's "
                 "hidden states as float32; only \"f32\" runs with it",
                 qh_act_dtype_name(v->act_dtype));
    size_t hidden = (size_t)m->cfg.hidden;
    size_t n_states = nsamples * hidden * seqlen;
    qh_forward_ws *ws = NULL;
    window_store states = { 0 };
    float *buf = NULL;               /* one float32 window for 16-bit states */
    float_path fp = { { NULL }, NULL };
    int st = qh_forward_ws_alloc(m, seqlen, &ws);
    if (st != QH_OK) return st;
    st = store_alloc(&states, v->act_dtype, nsamples, hidden * seqlen);
    if (st == QH_OK && v->act_dtype != QH_ACT_F32 && !(buf = malloc(hidden * seqlen * sizeof *buf)))
        st = QH_ENOMEM;
    if (st == QH_OK && v->block_fn && !(fp.states = malloc(n_states * sizeof *fp.states)))
        st = QH_ENOMEM;
    if (st != QH_OK) {
        QH_SET_ERROR(st, QH_ENOMEM, "cannot hold %zu calibration windows of %zu x %zu hidden states",
                     nsamples, hidden, seqlen);
        goto cleanup;
    }
    for (size_t s = 0; s < nsamples && st == QH_OK; s++) {
        float *x = states.f32 ? states.f32 + s * hidden * seqlen : buf;
        st = qh_forward_embed(m, windows + s * seqlen, seqlen, ws, x);
        if (st == QH_OK) store_write(&states, s, x);
    }
    if (fp.states && st == QH_OK) memcpy(fp.states, states.f32, n_states * sizeof *fp.states);

    int n_blocks = v->max_blocks > 0 && v->max_blocks < m->cfg.n_layers ? v->max_blocks : m->cfg.n_layers;
    for (int layer = 0; layer < n_blocks && st == QH_OK; layer++) {
        block_hessians bh;
        st = qh_model_acquire_block(m, layer);    /* spilled models: converted now */
        if (st != QH_OK) break;
        st = init_hessians(&bh, m, layer);
        if (st != QH_OK) break;
        st = collect_block(m, layer, &states, nsamples, seqlen, ws, &bh);
        if (st == QH_OK && v->block_fn) st = float_path_save_weights(&fp, m, layer);
        if (st == QH_OK) st = visit_block(m, layer, &bh, v);
        free_hessians(&bh);
        if (st == QH_OK && v->block_fn)
            st = block_stage(m, layer, states.f32, &fp, nsamples, seqlen, ws, v);
        float_path_free_weights(&fp);
        if (st == QH_OK) st = advance_block(m, layer, &states, nsamples, seqlen, ws, buf);
        qh_model_release_block(m, layer);        /* spilled models: done with this block */
        if (v->progress) v->progress(layer + 1, n_blocks, v->user);
    }
cleanup:
    free(fp.states);
    free(buf);
    store_free(&states);
    qh_forward_ws_free(ws);
    return st;
}
