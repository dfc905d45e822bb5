/* bench_block_grad.c -- forward-with-tape and backward throughput of the
 * block gradient (model/backward.h) against the machine's sgemm peak.
 *
 * Peak: best of a few square sgemm (1024^3, 2048^3) through qh_sgemm, as in
 * bench_forward.c.  Per model (opt-7m, llama-9m, and ../shared/models/opt-30m
 * when present): windows of T = 512 tokens of wikitext2, every decoder block
 * in turn: qh_block_forward_tape, then qh_block_backward with a fixed random
 * dy and gradients for every linear kind; the block's output feeds the next
 * block.  For reference, the same blocks through qh_forward_block.  FLOPs
 * are those of the sgemm calls as executed (2 per multiply-add, counted by
 * the tape):
 *   forward   2 T sum_linears out*in + 4 head_dim n_heads sum_blocks keys*queries
 *   backward  dW for every linear and dX for all but q/k/v (2 T out*in each),
 *             four attention products per head and query block (dV, dP, dQ, dK)
 * Prints timings, so it is a benchmark, never a pass/fail test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "qh_blas.h"
#include "qh_rng.h"
#include "tokenizer/tokenizer.h"
#include "bench_util.h"

static int bench_model(const char *dir, const int32_t *ids, size_t n_ids, size_t T, int windows,
                       double peak)
{
    qh_model *m = NULL;
    qh_forward_ws *ws = NULL;
    qh_block_tape *tape = NULL;
    float *x = NULL, *y = NULL, *dy = NULL, *G[QH_LIN_MAX] = { 0 };
    if (qh_model_load(dir, &m) != QH_OK) {
        printf("%-10s skipped: %s\n", dir, qh_last_error());
        return 0;
    }
    const qh_model_config *c = &m->cfg;
    size_t d = (size_t)c->hidden;
    int st = qh_forward_ws_alloc(m, T, &ws);
    if (st == QH_OK) st = qh_block_tape_alloc(m, T, &tape);
    x = malloc(d * T * sizeof(float));
    y = malloc(d * T * sizeof(float));
    dy = malloc(d * T * sizeof(float));
    int ok = x && y && dy;
    for (int k = 0; k < QH_LIN_MAX; k++) {
        const qh_linear *L = &m->blocks[0].lin[k];
        if (!L->W) continue;                       /* a kind the family lacks */
        G[k] = calloc((size_t)L->out * (size_t)L->in, sizeof(float));
        ok = ok && G[k];
    }
    if (st != QH_OK || !ok || n_ids < T * (size_t)(windows + 1)) {
        printf("%s: setup failed: %s\n", dir, st ? qh_last_error() : "memory or too few tokens");
        if (st == QH_OK) st = QH_ENOMEM;
        goto cleanup;
    }
    qh_rng r = qh_rng_stream(1, 0, QH_RNG_SYNTHETIC);
    for (size_t i = 0; i < d * T; i++) dy[i] = (float)(1e-3 * qh_rng_normal(&r));

    /* window 0 warms up; then `windows` timed windows */
    double fwd_s = 0, bwd_s = 0, plain_s = 0, fwd_fl = 0, bwd_fl = 0;
    for (int w = 0; st == QH_OK && w <= windows; w++) {
        const int32_t *wid = ids + (size_t)w * T;
        double f_s = 0, b_s = 0, p_s = 0, f_fl = 0, b_fl = 0;
        st = qh_forward_embed(m, wid, T, ws, x);
        for (int l = 0; st == QH_OK && l < c->n_layers; l++) {
            double t0 = qh_seconds();
            st = qh_block_forward_tape(m, l, x, T, y, tape);
            double t1 = qh_seconds();
            if (st == QH_OK) st = qh_block_backward(m, l, dy, tape, G);
            double t2 = qh_seconds(), ff, bf;
            qh_block_tape_flops(tape, &ff, &bf);
            f_s += t1 - t0;
            b_s += t2 - t1;
            f_fl += ff;
            b_fl += bf;
            float *tmp = x; x = y; y = tmp;
        }
        if (st == QH_OK) st = qh_forward_embed(m, wid, T, ws, ws->x);
        double t0 = qh_seconds();
        for (int l = 0; st == QH_OK && l < c->n_layers; l++)
            st = qh_forward_block(m, l, ws->x, T, ws, NULL);
        p_s = qh_seconds() - t0;
        if (w > 0) {
            fwd_s += f_s; bwd_s += b_s; plain_s += p_s; fwd_fl += f_fl; bwd_fl += b_fl;
        }
    }
    if (st != QH_OK) { printf("%s: failed: %s\n", dir, qh_last_error()); goto cleanup; }
    double fg = fwd_fl / fwd_s * 1e-9, bg = bwd_fl / bwd_s * 1e-9;
    printf("%-28s T=%zu x %d windows, %d blocks (hidden %zu, ffn %d, %d heads); tape %.1f MiB\n",
           dir, T, windows, c->n_layers, d, c->ffn_dim, c->n_heads,
           (double)qh_block_tape_bytes(tape) / (1024.0 * 1024.0));
    printf("    per window: forward with tape %7.1f ms (%.2f GFLOP, %6.1f GFLOP/s = %4.1f %% of peak)\n",
           1e3 * fwd_s / windows, fwd_fl / windows * 1e-9, fg, 100.0 * fg / peak);
    printf("                backward          %7.1f ms (%.2f GFLOP, %6.1f GFLOP/s = %4.1f %% of peak)\n",
           1e3 * bwd_s / windows, bwd_fl / windows * 1e-9, bg, 100.0 * bg / peak);
    printf("                qh_forward_block  %7.1f ms (no tape; forward with tape / this = %.2f)\n",
           1e3 * plain_s / windows, fwd_s / plain_s);
cleanup:
    for (int k = 0; k < QH_LIN_MAX; k++) free(G[k]);
    free(x);
    free(y);
    free(dy);
    qh_block_tape_free(tape);
    qh_forward_ws_free(ws);
    qh_model_free(m);
    return st;
}

int main(void)
{
    double peak = bench_sgemm_peak_report();
    printf("FLOPs counted (2 per multiply-add, as executed by sgemm), per block and window of T tokens:\n"
           "  forward   2 T sum_linears out*in + 4 head_dim n_heads sum_qblocks keys*queries\n"
           "  backward  2 T out*in per dW (all) and dX (all but q/k/v) + 8 head_dim n_heads sum_qblocks keys*queries\n"
           "not counted: norms, RoPE, softmax and its backward, activations, biases\n");

    int32_t *ids = NULL;
    size_t n = 0;
    if (bench_wikitext_ids(&ids, &n) != QH_OK) return 1;
    int st = bench_model("models/opt-7m", ids, n, 512, 4, peak);
    if (st == QH_OK) st = bench_model("models/llama-9m", ids, n, 512, 4, peak);
    if (st == QH_OK) st = bench_model("../shared/models/opt-30m", ids, n, 512, 2, peak);
    free(ids);
    return st == QH_OK ? 0 : 1;
}
