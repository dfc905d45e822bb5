/* block_case.h -- a real decoder block of a vendored model for the tests of
 * the block stage (test_block_tune, test_signround, test_mpo_block,
 * test_survey_block, test_aqlm_finetune): ns windows of tt random token ids
 * (a qh_rng stream keyed by seed and the layer), the block's float input
 * x_fp (embedding, then the blocks before it), the quantized path's input x
 * (x_fp perturbed by a factor 1 + jitter·N(0, 1) per entry, or x_fp itself),
 * optionally the float block's output y_fp on x_fp, a copy of the block's
 * float weights, and one state per linear of a block-tuned row, quantized
 * from those weights.  The draws come in the order the tests always drew
 * them, so their cases are the ones they had. */
#ifndef QH_BLOCK_CASE_H
#define QH_BLOCK_CASE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "pipeline/sequential.h"
#include "qh_error.h"
#include "qh_method.h"
#include "qh_rng.h"

/* How y_fp is computed: none, by the taped block forward the stage uses, or
 * by the plain block forward. */
enum { BLOCK_CASE_Y_NONE = 0, BLOCK_CASE_Y_TAPE = 1, BLOCK_CASE_Y_FORWARD = 2 };

typedef struct {
    qh_model *m;
    int layer;
    size_t hidden, ns, tt;
    float *x, *x_fp, *y_fp;          /* ns windows of hidden·tt each; y_fp NULL when not asked */
    float *W_fp[QH_LIN_MAX];         /* the block's float weights */
    qh_block_tape *tape;             /* a tape for the block (tt tokens) */
    const qh_method_type *t;         /* the row of the states (block_case_quantize) */
    void *params;                    /* NULL, or the states' parameters: freed with the case */
    void *states[QH_LIN_MAX];
} block_case;

static inline void block_case_free(block_case *c)
{
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (c->states[k] && c->t) c->t->block->state_free(c->states[k]);
        free(c->W_fp[k]);
    }
    free(c->x);
    free(c->params);
    qh_block_tape_free(c->tape);
    qh_model_free(c->m);
    memset(c, 0, sizeof *c);
}

/* Loads the case (see the top); on failure the caller frees what was loaded
 * with block_case_free. */
static inline int block_case_load(block_case *c, const char *dir, int layer, size_t ns, size_t tt,
                                  uint64_t seed, double jitter, int y_fp)
{
    memset(c, 0, sizeof *c);
    c->layer = layer;
    c->ns = ns;
    c->tt = tt;
    QH_TRY(qh_model_load(dir, &c->m));
    c->hidden = (size_t)c->m->cfg.hidden;
    size_t win = c->hidden * tt;
    c->x = malloc((y_fp ? 3 : 2) * ns * win * sizeof(float));
    if (!c->x) return QH_ENOMEM;
    c->x_fp = c->x + ns * win;
    c->y_fp = y_fp ? c->x_fp + ns * win : NULL;
    int32_t *ids = malloc(tt * sizeof *ids);
    qh_forward_ws *ws = NULL;
    int st = ids ? qh_forward_ws_alloc(c->m, tt, &ws) : QH_ENOMEM;
    qh_rng r = qh_rng_stream(seed, (uint32_t)layer, QH_RNG_TEST);
    for (size_t s = 0; s < ns && st == QH_OK; s++) {
        float *xf = c->x_fp + s * win, *xq = c->x + s * win;
        for (size_t t = 0; t < tt; t++) ids[t] = (int32_t)qh_rng_below(&r, (uint64_t)c->m->cfg.vocab_size);
        st = qh_forward_embed(c->m, ids, tt, ws, xf);
        for (int l = 0; l < layer && st == QH_OK; l++) st = qh_forward_block(c->m, l, xf, tt, ws, NULL);
        if (jitter > 0)
            for (size_t i = 0; i < win && st == QH_OK; i++)
                xq[i] = xf[i] * (float)(1.0 + jitter * qh_rng_normal(&r));
        else
            memcpy(xq, xf, win * sizeof(float));
        if (st == QH_OK && y_fp == BLOCK_CASE_Y_FORWARD) {
            memcpy(c->y_fp + s * win, xf, win * sizeof(float));
            st = qh_forward_block(c->m, layer, c->y_fp + s * win, tt, ws, NULL);
        }
    }
    qh_forward_ws_free(ws);
    free(ids);
    QH_TRY(st);
    QH_TRY(qh_block_tape_alloc(c->m, tt, &c->tape));
    for (size_t s = 0; s < ns && y_fp == BLOCK_CASE_Y_TAPE; s++)
        QH_TRY(qh_block_forward_tape(c->m, layer, c->x_fp + s * win, tt, c->y_fp + s * win, c->tape));
    qh_block *b = &c->m->blocks[layer];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!b->lin[k].W) continue;
        size_t bytes = (size_t)b->lin[k].out * (size_t)b->lin[k].in * sizeof(float);
        if (!(c->W_fp[k] = malloc(bytes))) return QH_ENOMEM;
        memcpy(c->W_fp[k], b->lin[k].W, bytes);
    }
    return QH_OK;
}

/* Quantizes every linear of the block with row t (params, bits; H diagonal
 * with entries h(j) when h is given, else none) into c->states (new ones
 * from t's state_new where there are none yet: a state is refilled in
 * place); write_back puts the result's Ŵ into the block. */
static inline int block_case_quantize(block_case *c, const qh_method_type *t, const void *params,
                                      int bits, double (*h)(size_t j), int write_back)
{
    qh_block *b = &c->m->blocks[c->layer];
    int st = QH_OK;
    c->t = t;
    for (int k = 0; k < QH_LIN_MAX && st == QH_OK; k++) {
        qh_linear *lin = &b->lin[k];
        if (!lin->W) continue;
        if (!c->states[k] && !(c->states[k] = t->block->state_new())) return QH_ENOMEM;
        size_t m = (size_t)lin->out, n = (size_t)lin->in;
        qh_matd *W = qh_matd_alloc(m, n), *H = h ? qh_matd_alloc(n, n) : NULL;
        for (size_t j = 0; H && j < n; j++) QH_AT(H, j, j) = h(j);
        qh_linear_to_matd(lin, W);
        qh_problem p = { W, H, bits, 0, (uint32_t)k, lin->name, c->states[k], NULL };
        qh_result res;
        qh_result_init(&res);
        st = qh_quantize(t, params, &p, NULL, NULL, &res);
        if (st == QH_OK && write_back) qh_linear_from_matd(lin, res.What);
        qh_result_free(&res);
        qh_matd_free(W);
        qh_matd_free(H);
    }
    return st;
}

#endif
