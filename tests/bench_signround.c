/* bench_signround.c -- SignRound's block stage on opt-30m's block shape
 * (hidden 512, 8 heads, ffn 2048, OPT): seconds per decoder block at 200
 * iterations of batch 8.
 *
 * Block 0 of ../shared/models/opt-30m (skipped when absent), 32 calibration
 * windows of T tokens of wikitext2 (T = 128, the signround configs' seqlen,
 * and 512), the layer stage's state for every linear (W4 g128 asym), then
 * qh_block_stage_tune with the row's plan at iters 0 (the stage's fixed cost:
 * the float targets and the loss before and after) and at iters 4; one step
 * costs (t4 − t0)/4, and a block at 200 iterations t0 + 200 × that (the
 * iterations cost the same each).  The row's own share of a step (every
 * linear's reconstruct and sign step, no forward) is timed apart.  The
 * block forward and backward passes' GFLOP/s against the sgemm peak are
 * bench_block_grad's.  Prints timings, so it is a benchmark, never a
 * pass/fail test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/model.h"
#include "pipeline/block_stage.h"
#include "pipeline/sequential.h"
#include "qh_method.h"
#include "signround.h"
#include "bench_util.h"

enum { NSAMPLES = 32 };

static int set_iters(void *params, int iters)
{
    char buf[16];
    snprintf(buf, sizeof buf, "%d", iters);
    return qh_method_params_set(&qh_method_signround, params, "iters", buf);
}

static int bench(qh_model *m, const int32_t *ids, size_t n_ids, size_t T)
{
    const qh_method_type *t = &qh_method_signround;
    size_t d = (size_t)m->cfg.hidden, win = d * T;
    if (n_ids < NSAMPLES * T) { printf("too few tokens\n"); return QH_EINVAL; }
    void *params = qh_method_params_new(t), *states[QH_LIN_MAX] = { NULL };
    float *x = malloc(NSAMPLES * win * sizeof(float)), *W_fp[QH_LIN_MAX] = { NULL };
    qh_forward_ws *ws = NULL;
    int st = params && x ? qh_forward_ws_alloc(m, T, &ws) : QH_ENOMEM;
    for (size_t s = 0; s < NSAMPLES && st == QH_OK; s++) st = qh_forward_embed(m, ids + s * T, T, ws, x + s * win);
    qh_block *b = &m->blocks[0];
    double row_s = 0.0;
    for (int k = 0; k < QH_LIN_MAX && st == QH_OK; k++) {
        if (!b->lin[k].W) continue;
        size_t out = (size_t)b->lin[k].out, in = (size_t)b->lin[k].in;
        W_fp[k] = malloc(out * in * sizeof(float));
        states[k] = t->block->state_new();
        qh_matd *W = qh_matd_alloc(out, in), *G = qh_matd_alloc(out, in);
        if (!W_fp[k] || !states[k] || !W || !G) st = QH_ENOMEM;
        if (st == QH_OK) {
            memcpy(W_fp[k], b->lin[k].W, out * in * sizeof(float));
            qh_linear_to_matd(&b->lin[k], W);
            qh_problem p = { W, NULL, 4, 0, 0, b->lin[k].name, states[k], NULL };
            qh_result r;
            qh_result_init(&r);
            st = qh_quantize(t, params, &p, NULL, NULL, &r);
            qh_result_free(&r);
        }
        /* the row's share of one step: Ŵ and the sign step of this linear */
        for (size_t i = 0; st == QH_OK && i < out * in; i++) G->data[i] = 1e-3 * (double)((i * 7919) % 13) - 6e-3;
        double t0 = qh_seconds();
        for (int rep = 0; st == QH_OK && rep < 4; rep++) {
            t->block->reconstruct(params, states[k], W);
            st = t->block->step(params, states[k], G, 1);
        }
        row_s += (qh_seconds() - t0) / 4.0;
        memset(((qh_signround_state *)states[k])->V, 0, out * in * sizeof(double));
        qh_matd_free(W);
        qh_matd_free(G);
    }
    qh_block_stage_stats s0, s4;
    if (st == QH_OK) st = set_iters(params, 0);
    if (st == QH_OK) st = qh_block_stage_tune(m, 0, x, x, NSAMPLES, T, W_fp, t, params, states, NULL, &s0);
    if (st == QH_OK) st = set_iters(params, 4);
    if (st == QH_OK) st = qh_block_stage_tune(m, 0, x, x, NSAMPLES, T, W_fp, t, params, states, NULL, &s4);
    if (st == QH_OK) {
        double step = (s4.seconds - s0.seconds) / 4.0;
        printf("    T = %4zu, %d windows, batch 8: fixed %.2f s, one step %.3f s (the row's Ŵ and sign "
               "step %.3f s of it) -> %.1f s per block at 200 iterations\n",
               T, NSAMPLES, s0.seconds, step, row_s, s0.seconds + 200.0 * step);
    } else {
        printf("    T = %zu: failed: %s\n", T, qh_last_error());
    }
    for (int k = 0; k < QH_LIN_MAX; k++) {
        free(W_fp[k]);
        t->block->state_free(states[k]);
    }
    free(params);
    free(x);
    qh_forward_ws_free(ws);
    return st;
}

int main(void)
{
    const char *dir = "../shared/models/opt-30m";
    qh_model *m = NULL;
    if (qh_model_load(dir, &m) != QH_OK) {
        printf("bench_signround: %s skipped: %s\n", dir, qh_last_error());
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (bench_wikitext_ids(&ids, &n) != QH_OK) return 1;
    printf("SignRound block stage, %s block 0 (hidden %d, %d heads, ffn %d), W4 g128, wall seconds:\n", dir,
           m->cfg.hidden, m->cfg.n_heads, m->cfg.ffn_dim);
    int st = bench(m, ids, n, 128);
    if (st == QH_OK) st = bench(m, ids, n, 512);
    free(ids);
    qh_model_free(m);
    return st == QH_OK ? 0 : 1;
}
