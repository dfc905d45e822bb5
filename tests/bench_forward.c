/* bench_forward.c -- forward-pass throughput against the machine's sgemm peak.
 *
 * Peak: best of a few square sgemm (1024^3, 2048^3) through qh_sgemm.
 * Forward: a few windows of 1024 tokens of wikitext2 per model (opt-7m,
 * llama-9m, and ../shared/models/opt-30m when present), with the workspace's
 * profile on, so that time splits into decoder linears, attention sgemm,
 * softmax, lm_head and the rest.  FLOPs are those of the sgemm calls as
 * executed (2 per multiply-add):
 *   linears   2 * T * sum over layers and linears of out*in
 *   attention 4 * head_dim * sum over heads and query blocks of keys*queries
 *             (causal blocks of 128 queries: about T^2/2 + 64 T per head, x2 for QK^T and PV)
 *   lm_head   2 * T * vocab * embed_dim (+ project_out)
 * QH_BENCH_MODEL=DIR adds that model at T = 512 and 1024 (4 windows each, the
 * best of 5 passes, as the peak too is a best of several).  The machine's
 * speed drifts by several per cent between the peak probe and a pass, so
 * for this model the peak is probed again around every pass, two ways: the
 * best of a few short products (the fastest moment) and 2048^3 sustained
 * for 1 s (bench_util.h); the median and range of the passes' ratios to
 * each are printed as well.
 * Prints timings, so it is a benchmark, never a pass/fail test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/eval.h"
#include "model/forward.h"
#include "model/model.h"
#include "qh_blas.h"
#include "qh_mat.h"
#include "qh_rng.h"
#include "tokenizer/tokenizer.h"
#include "bench_util.h"

/* Median and range of n ratios (sorted in place), in per cent. */
static void print_ratios(const char *against, double *ratio, int n)
{
    qh_sort_doubles(ratio, (size_t)n);
    printf("    against %s: median %.1f %%, range %.1f-%.1f %% (%d passes)\n", against,
           100 * ratio[n / 2], 100 * ratio[0], 100 * ratio[n - 1], n);
}

/* `reps` passes over `windows` windows of T tokens; the best pass is reported
 * against `peak` with its time split.  With bracket set, the peak is probed
 * again just before and after every pass, so that the machine's drift
 * (several per cent over minutes) cancels: each pass's rate is divided by
 * the better of the two best-of probes, and by the mean of the two
 * sustained rates; the median and range of both ratios are printed too. */
static int bench_model(const char *dir, const int32_t *ids, size_t n_ids, size_t T, int windows,
                       int reps, int bracket, double peak)
{
    qh_model *m = NULL;
    qh_forward_ws *ws = NULL;
    float *logits = NULL;
    double ratio[16], sustained_ratio[16];
    if (reps > 16) reps = 16;
    if (qh_model_load(dir, &m) != QH_OK) {
        printf("%-10s skipped: %s\n", dir, qh_last_error());
        return 0;
    }
    int st = qh_forward_ws_alloc(m, T, &ws);
    size_t V = (size_t)m->cfg.vocab_size;
    logits = malloc(V * T * sizeof(float));
    if (st != QH_OK || !logits || n_ids < T * (size_t)(windows + 1)) {
        printf("%s: setup failed: %s\n", dir, st ? qh_last_error() : "too few tokens");
        goto cleanup;
    }
    st = qh_forward_window(m, ids, T, ws, logits);            /* warm-up */
    ws->profile = 1;
    /* best of `reps` passes over the windows, as the peak is a best of several */
    qh_forward_stats best = { 0 };
    double sec = 0.0;
    for (int r = 0; st == QH_OK && r < reps; r++) {
        double before = bracket ? bench_sgemm_peak(3, 2, NULL, NULL) : 0.0;
        double sus_before = bracket ? bench_sgemm_sustained(1.0) : 0.0;
        memset(&ws->stats, 0, sizeof ws->stats);
        double t0 = qh_seconds();
        for (int w = 0; st == QH_OK && w < windows; w++)
            st = qh_forward_window(m, ids + (size_t)(w + 1) * T, T, ws, logits);
        double t = qh_seconds() - t0;
        if (bracket) {
            double sus_after = bench_sgemm_sustained(1.0);
            double after = bench_sgemm_peak(3, 2, NULL, NULL), local = before > after ? before : after;
            const qh_forward_stats *s = &ws->stats;
            double rate = (s->linear_flops + s->attn_flops + s->head_flops) / t * 1e-9;
            ratio[r] = rate / local;
            sustained_ratio[r] = rate / (0.5 * (sus_before + sus_after));
        }
        if (r == 0 || t < sec) { sec = t; best = ws->stats; }
    }
    if (st != QH_OK) { printf("%s: forward failed: %s\n", dir, qh_last_error()); goto cleanup; }
    const qh_forward_stats *s = &best;
    double flops = s->linear_flops + s->attn_flops + s->head_flops;
    double gemm_s = s->linear_s + s->attn_gemm_s + s->head_s;
    double gf = flops / sec * 1e-9;
    printf("%-28s T=%zu x %d windows, best of %d: %8.0f tokens/s  %6.1f GFLOP/s = %4.1f %% of peak\n",
           dir, T, windows, reps, (double)T * windows / sec, gf, 100.0 * gf / peak);
    printf("    GFLOP per window: linears %.2f, attention %.2f, lm_head %.2f (total %.2f)\n",
           s->linear_flops / windows * 1e-9, s->attn_flops / windows * 1e-9,
           s->head_flops / windows * 1e-9, flops / windows * 1e-9);
    printf("    time: linears %4.1f %% (%5.1f GFLOP/s), attn sgemm %4.1f %% (%5.1f), lm_head %4.1f %% (%5.1f),"
           " softmax %4.1f %%, other %4.1f %%; sgemm %.1f %% of the time\n",
           100 * s->linear_s / sec, s->linear_flops / s->linear_s * 1e-9,
           100 * s->attn_gemm_s / sec, s->attn_flops / s->attn_gemm_s * 1e-9,
           100 * s->head_s / sec, s->head_flops / s->head_s * 1e-9,
           100 * s->softmax_s / sec, 100 * s->other_s / sec, 100 * gemm_s / sec);
    if (bracket) {
        print_ratios("the best-of peak probed just before and after each pass", ratio, reps);
        print_ratios("the sustained 2048^3 rate just before and after", sustained_ratio, reps);
    }
cleanup:
    free(logits);
    qh_forward_ws_free(ws);
    qh_model_free(m);
    return st;
}

int main(void)
{
    double peak = bench_sgemm_peak_report();
    printf("FLOPs counted (2 per multiply-add, as executed by sgemm), per window of T tokens:\n"
           "  linears   2 T sum_layers sum_linears out*in\n"
           "  attention 4 head_dim n_heads sum_blocks keys*queries  (query blocks of 128: ~T^2/2 + 64 T)\n"
           "  lm_head   2 T vocab embed_dim (+ 2 T embed_dim hidden for project_out)\n"
           "not counted: norms, RoPE, softmax, activations, biases, embedding\n");

    int32_t *ids = NULL;
    size_t n = 0;
    if (bench_wikitext_ids(&ids, &n) != QH_OK) return 1;
    int st = bench_model("models/opt-7m", ids, n, 1024, 8, 1, 0, peak);
    if (st == QH_OK) st = bench_model("models/llama-9m", ids, n, 1024, 8, 1, 0, peak);
    if (st == QH_OK) st = bench_model("../shared/models/opt-30m", ids, n, 1024, 4, 1, 0, peak);
    /* a larger model of real shapes, e.g. experiments/scripts/make_random_model.py
     * --preset llama-170m DIR: its token ids are wikitext2's (below its vocabulary) */
    const char *big = getenv("QH_BENCH_MODEL");
    for (size_t T = 512; st == QH_OK && big && *big && T <= 1024; T *= 2)
        st = bench_model(big, ids, n, T, 4, 5, 1, peak);
    free(ids);
    return st == QH_OK ? 0 : 1;
}
