/* test_mpo_block.c -- healing of the mpo and lowrank rows on the block stage
 * (qh_mpo_block_ops, experiments/pipeline/block_stage.h) on a real block of
 * the vendored opt-7m and llama-9m.
 *
 * 1. The chain the stage uses (cores → Ŵ by contraction → block forward →
 *    MSE to the float block → block backward → qh_mpo_grad) against central
 *    differences of the block loss along each core's gradient direction
 *    (step 1e-2 of the core's norm; relative error ≤ 1e-2: the block runs in float32
 *    and the differences divide float rounding of the loss by 2h).
 * 2. The stage with the shared block ops: heal_steps 40 lowers the MSE to the
 *    float block output for both rows; two runs give identical weights.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowrank.h"
#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "mpo.h"
#include "pipeline/block_stage.h"
#include "pipeline/sequential.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"

enum { NS = 4, TT = 24 };

typedef struct {
    qh_model *m;
    int layer;
    size_t hidden;
    float *x, *x_fp, *y_fp;          /* NS windows each */
    float *W_fp[QH_LIN_MAX];
    void *states[QH_LIN_MAX];
    const qh_method_type *t;
    void *params;
} bcase;

static void bcase_free(bcase *c)
{
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (c->states[k]) c->t->block->state_free(c->states[k]);
        free(c->W_fp[k]);
    }
    free(c->x);
    free(c->params);
    qh_model_free(c->m);
}

static int setup(bcase *c, const char *dir, int layer, const char *row, const char *key, const char *val)
{
    memset(c, 0, sizeof *c);
    c->layer = layer;
    c->t = qh_method_find(row);
    QH_TRY(qh_model_load(dir, &c->m));
    c->hidden = (size_t)c->m->cfg.hidden;
    size_t win = c->hidden * TT;
    qh_forward_ws *ws = NULL;
    QH_TRY(qh_forward_ws_alloc(c->m, TT, &ws));
    c->x = malloc(3 * NS * win * sizeof(float));
    c->x_fp = c->x + NS * win;
    c->y_fp = c->x_fp + NS * win;
    qh_rng r = qh_rng_stream(9, (uint32_t)layer, QH_RNG_TEST);
    int32_t ids[TT];
    int st = c->x ? QH_OK : QH_ENOMEM;
    for (size_t s = 0; s < NS && st == QH_OK; s++) {
        for (size_t t = 0; t < TT; t++) ids[t] = (int32_t)qh_rng_below(&r, (uint64_t)c->m->cfg.vocab_size);
        st = qh_forward_embed(c->m, ids, TT, ws, c->x_fp + s * win);
        for (int l = 0; l < layer && st == QH_OK; l++) st = qh_forward_block(c->m, l, c->x_fp + s * win, TT, ws, NULL);
        for (size_t i = 0; i < win; i++) c->x[s * win + i] = c->x_fp[s * win + i];
        memcpy(c->y_fp + s * win, c->x_fp + s * win, win * sizeof(float));
        if (st == QH_OK) st = qh_forward_block(c->m, layer, c->y_fp + s * win, TT, ws, NULL);
    }
    qh_forward_ws_free(ws);
    QH_TRY(st);
    c->params = qh_method_params_new(c->t);
    QH_TRY(qh_method_params_set(c->t, c->params, key, val));
    QH_TRY(qh_method_params_set(c->t, c->params, "heal_steps", "40"));
    QH_TRY(qh_method_params_set(c->t, c->params, "heal_lr", "0.01"));
    qh_block *b = &c->m->blocks[layer];
    for (int k = 0; k < QH_LIN_MAX && st == QH_OK; k++) {
        qh_linear *lin = &b->lin[k];
        if (!lin->W) continue;
        size_t m = (size_t)lin->out, n = (size_t)lin->in, bytes = m * n * sizeof(float);
        if (!(c->W_fp[k] = malloc(bytes))) return QH_ENOMEM;
        memcpy(c->W_fp[k], lin->W, bytes);
        qh_matd *W = qh_matd_alloc(m, n);
        qh_linear_to_matd(lin, W);
        c->states[k] = c->t->block->state_new();
        qh_problem p = { W, NULL, 16, 0, (uint32_t)k, lin->name, c->states[k], NULL };
        qh_result res;
        qh_result_init(&res);
        st = qh_quantize(c->t, c->params, &p, NULL, NULL, &res);
        if (st == QH_OK) qh_linear_from_matd(lin, res.What);
        qh_result_free(&res);
        qh_matd_free(W);
    }
    return st;
}

/* Σ over windows of MSE(Y_q, Y_fp) with the states' Ŵ in the block; with
 * grad, ∂/∂cores of linear kind into grad. */
static double loss_of(bcase *c, qh_block_tape *tape, int kind, double *grad)
{
    qh_block *b = &c->m->blocks[c->layer];
    qh_linear *lin = &b->lin[kind];
    size_t m = (size_t)lin->out, n = (size_t)lin->in, win = c->hidden * TT;
    qh_matd *What = qh_matd_alloc(m, n);
    c->t->block->reconstruct(c->params, c->states[kind], What);
    qh_linear_from_matd(lin, What);
    float *yq = malloc(2 * win * sizeof(float)), *dy = yq + win, *Gf = calloc(m * n, sizeof(float));
    float *G[QH_LIN_MAX] = { NULL };
    G[kind] = Gf;
    double l = 0;
    for (size_t s = 0; s < NS; s++) {
        if (qh_block_forward_tape(c->m, c->layer, c->x + s * win, TT, yq, tape) != QH_OK)
            QH_CHECK(0, "forward: %s", qh_last_error());
        l += qh_block_loss_mse(yq, c->y_fp + s * win, win, 1.0, grad ? dy : NULL);
        if (grad && qh_block_backward(c->m, c->layer, dy, tape, G) != QH_OK)
            QH_CHECK(0, "backward: %s", qh_last_error());
    }
    if (grad) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) QH_AT(What, i, j) = Gf[i * n + j];
        qh_mpo_state *st = c->states[kind];
        QH_CHECK(qh_mpo_grad(&st->mpo, What, grad) == QH_OK, "grad");
    }
    free(Gf);
    free(yq);
    qh_matd_free(What);
    return l;
}

static double hrel = 1e-2;
static void check_chain(const char *dir, int layer, const char *row, const char *key, const char *val)
{
    bcase c;
    if (setup(&c, dir, layer, row, key, val) != QH_OK) {
        QH_CHECK(0, "%s %s: setup: %s", dir, row, qh_last_error());
        return;
    }
    qh_block_tape *tape = NULL;
    QH_CHECK(qh_block_tape_alloc(c.m, TT, &tape) == QH_OK, "tape");
    static const int kinds[] = { QH_LIN_Q, QH_LIN_O, QH_LIN_DOWN };
    for (size_t ki = 0; ki < 3; ki++) {
        int k = kinds[ki];
        qh_mpo_state *s = c.states[k];
        qh_mpo *mp = &s->mpo;
        double *g = malloc(mp->count * sizeof *g), worst = 0;
        loss_of(&c, tape, k, g);
        for (size_t core = 0; core < mp->K; core++) {
            size_t off = (size_t)(mp->core[core] - mp->data);
            size_t cnt = (core + 1 < mp->K ? (size_t)(mp->core[core + 1] - mp->core[core]) : mp->count - off);
            /* along the core's gradient direction d = g/‖g‖: the derivative is ‖g‖ */
            double gn = 0, xn = 0;
            for (size_t i = off; i < off + cnt; i++) { gn += g[i] * g[i]; xn += mp->data[i] * mp->data[i]; }
            gn = sqrt(gn);
            double h = hrel * sqrt(xn), *x0 = malloc(cnt * sizeof *x0);
            memcpy(x0, mp->data + off, cnt * sizeof *x0);
            for (size_t i = 0; i < cnt; i++) mp->data[off + i] = x0[i] + h * g[off + i] / gn;
            double lp = loss_of(&c, tape, k, NULL);
            for (size_t i = 0; i < cnt; i++) mp->data[off + i] = x0[i] - h * g[off + i] / gn;
            double lm = loss_of(&c, tape, k, NULL);
            memcpy(mp->data + off, x0, cnt * sizeof *x0);
            free(x0);
            worst = fmax(worst, fabs((lp - lm) / (2 * h) - gn) / gn);
        }
        QH_CHECK(worst < 1e-2, "%s block %d %s %s: d loss / d cores = central differences (max rel. %.1e)",
                 dir, layer, row, qh_model_linear_short_name(c.m, k), worst);
        QH_NOTE("%s block %d %s %s: core gradient FD error %.1e", dir, layer, row,
                qh_model_linear_short_name(c.m, k), worst);
        free(g);
    }
    qh_block_tape_free(tape);
    bcase_free(&c);
}

static float *weights(const bcase *c, size_t *count)
{
    const qh_block *b = &c->m->blocks[c->layer];
    size_t total = 0, at = 0;
    for (int k = 0; k < QH_LIN_MAX; k++) if (b->lin[k].W) total += (size_t)b->lin[k].out * (size_t)b->lin[k].in;
    float *w = malloc(total * sizeof *w);
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!b->lin[k].W) continue;
        size_t n = (size_t)b->lin[k].out * (size_t)b->lin[k].in;
        memcpy(w + at, b->lin[k].W, n * sizeof *w);
        at += n;
    }
    *count = total;
    return w;
}

static void check_heal(const char *dir, int layer, const char *row, const char *key, const char *val)
{
    bcase c, d;
    if (setup(&c, dir, layer, row, key, val) != QH_OK || setup(&d, dir, layer, row, key, val) != QH_OK) {
        QH_CHECK(0, "%s %s: setup: %s", dir, row, qh_last_error());
        return;
    }
    qh_block_stage_opts o = { 3, NULL, NULL };
    qh_block_stage_stats a, b;
    int st = qh_block_stage_tune(c.m, layer, c.x, c.x_fp, NS, TT, c.W_fp, c.t, c.params, c.states, &o, &a);
    QH_CHECK(st == QH_OK && a.steps == 40 && a.mse_fp_final < 0.9 * a.mse_fp_init,
             "%s block %d %s: 40 healing steps lower the MSE to the float block %.4g -> %.4g (%s)",
             dir, layer, row, a.mse_fp_init, a.mse_fp_final, st ? qh_last_error() : "ok");
    QH_NOTE("%s block %d %s %s=%s: healing MSE %.4g -> %.4g", dir, layer, row, key, val, a.mse_fp_init,
            a.mse_fp_final);
    st = qh_block_stage_tune(d.m, layer, d.x, d.x_fp, NS, TT, d.W_fp, d.t, d.params, d.states, &o, &b);
    size_t n0, n1;
    float *wc = weights(&c, &n0), *wd = weights(&d, &n1);
    QH_CHECK(st == QH_OK && n0 == n1 && !memcmp(wc, wd, n0 * sizeof(float)) && a.mse_fp_final == b.mse_fp_final,
             "%s %s: two healing runs give identical weights", dir, row);
    free(wc);
    free(wd);
    bcase_free(&c);
    bcase_free(&d);
}

int main(int argc, char **argv)
{
    if (argc > 1) {   /* FD step study: test_mpo_block HREL */
        hrel = atof(argv[1]);
        check_chain("models/opt-7m", 1, "mpo", "chi", "8");
        return qh_test_summary();
    }
    check_chain("models/opt-7m", 1, "mpo", "chi", "8");
    check_chain("models/opt-7m", 1, "lowrank", "rank", "8");
    check_chain("models/llama-9m", 2, "mpo", "factors", "3");
    check_heal("models/opt-7m", 1, "mpo", "chi", "8");
    check_heal("models/llama-9m", 1, "lowrank", "rank", "8");
    return qh_test_summary();
}
