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
#include "block_case.h"

enum { NS = 4, TT = 24 };

/* The float inputs on both paths and the float block's output; states of
 * row `row` with key = val, healing 40 steps at rate 0.01, FP16 cores, their
 * Ŵ in the block. */
static int setup(block_case *c, const char *dir, int layer, const char *row, const char *key, const char *val)
{
    const qh_method_type *t = qh_method_find(row);
    QH_TRY(block_case_load(c, dir, layer, NS, TT, 9, 0.0, BLOCK_CASE_Y_FORWARD));
    if (!(c->params = qh_method_params_new(t))) return QH_ENOMEM;
    QH_TRY(qh_method_params_set(t, c->params, key, val));
    QH_TRY(qh_method_params_set(t, c->params, "heal_steps", "40"));
    QH_TRY(qh_method_params_set(t, c->params, "heal_lr", "0.01"));
    return block_case_quantize(c, t, c->params, 16, NULL, 1);
}

/* Σ over windows of MSE(Y_q, Y_fp) with the states' Ŵ in the block; with
 * grad, ∂/∂cores of linear kind into grad. */
static double loss_of(block_case *c, qh_block_tape *tape, int kind, double *grad)
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
    block_case c;
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
    block_case_free(&c);
}

static float *weights(const block_case *c, size_t *count)
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
    block_case c, d;
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
    block_case_free(&c);
    block_case_free(&d);
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
