/* sequential.c -- block-sequential calibration traversal (see sequential.h). */
#include "pipeline/sequential.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
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

/* Pass 1: Hessians of every input of block `layer` (hidden states untouched). */
static int collect_block(const qh_model *m, int layer, const float *states, size_t nsamples,
                         size_t seqlen, qh_forward_ws *ws, block_hessians *bh)
{
    size_t hidden = (size_t)m->cfg.hidden;
    qh_forward_hook hook = { accumulate_hook, bh };
    for (size_t s = 0; s < nsamples; s++) {
        memcpy(ws->x, states + s * hidden * seqlen, hidden * seqlen * sizeof(float));
        QH_TRY(qh_forward_block(m, layer, ws->x, seqlen, ws, &hook));
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
    size_t hidden = (size_t)m->cfg.hidden;
    size_t n_states = nsamples * hidden * seqlen;
    qh_forward_ws *ws = NULL;
    float *states = NULL;
    float_path fp = { { NULL }, NULL };
    int st = qh_forward_ws_alloc(m, seqlen, &ws);
    if (st != QH_OK) return st;
    states = malloc(n_states * sizeof *states);
    if (v->block_fn) fp.states = malloc(n_states * sizeof *states);
    if (!states || (v->block_fn && !fp.states)) {
        QH_SET_ERROR(st, QH_ENOMEM, "cannot hold %zu calibration windows of %zu x %zu hidden states",
                     nsamples, hidden, seqlen);
        goto cleanup;
    }
    for (size_t s = 0; s < nsamples && st == QH_OK; s++)
        st = qh_forward_embed(m, windows + s * seqlen, seqlen, ws, states + s * hidden * seqlen);
    if (fp.states && st == QH_OK) memcpy(fp.states, states, n_states * sizeof *states);

    for (int layer = 0; layer < m->cfg.n_layers && st == QH_OK; layer++) {
        block_hessians bh;
        st = init_hessians(&bh, m, layer);
        if (st != QH_OK) break;
        st = collect_block(m, layer, states, nsamples, seqlen, ws, &bh);
        if (st == QH_OK && v->block_fn) st = float_path_save_weights(&fp, m, layer);
        if (st == QH_OK) st = visit_block(m, layer, &bh, v);
        free_hessians(&bh);
        if (st == QH_OK && v->block_fn) st = block_stage(m, layer, states, &fp, nsamples, seqlen, ws, v);
        float_path_free_weights(&fp);
        /* Pass 3: the block as it now is produces the next block's inputs. */
        for (size_t s = 0; s < nsamples && st == QH_OK; s++)
            st = qh_forward_block(m, layer, states + s * hidden * seqlen, seqlen, ws, NULL);
        if (v->progress) v->progress(layer + 1, m->cfg.n_layers, v->user);
    }
cleanup:
    free(fp.states);
    free(states);
    qh_forward_ws_free(ws);
    return st;
}
