/* bench_act_quant.c -- forward throughput with fake-quantized activations on
 * against off (the aim: W4A4 at most 20 % slower).
 *
 * Per model (opt-7m, llama-9m, ../shared/models/opt-30m when present), windows
 * of 1024 wikitext2 tokens, five settings measured in interleaved rounds
 * (float, A4, A4KV4, A4 with Runtime Smooth, A4 with causal grouped Runtime
 * Smooth) so that load from other processes hits them alike; the best round
 * of each is reported with its ratio to float.  Prints timings, so it is a
 * benchmark, never a pass/fail test.
 */
#include <stdio.h>
#include <stdlib.h>

#include "model/act_quant.h"
#include "model/forward.h"
#include "model/model.h"
#include "qh_clock.h"
#include "bench_util.h"

#define N_SET 5

static int bench_model(const char *dir, const int32_t *ids, size_t n_ids, size_t T, int windows)
{
    qh_model *m = NULL;
    qh_forward_ws *ws = NULL;
    float *logits = NULL;
    int st = qh_model_load(dir, &m);
    if (st != QH_OK) {
        printf("%-28s skipped: %s\n", dir, qh_last_error());
        return QH_OK;
    }
    st = qh_forward_ws_alloc(m, T, &ws);
    if (st == QH_OK && !(logits = malloc((size_t)m->cfg.vocab_size * T * sizeof *logits)))
        st = QH_ENOMEM;
    if (st != QH_OK || n_ids < (size_t)windows * T) {
        printf("%s: setup failed\n", dir);
        goto cleanup;
    }
    qh_quant_spec a4 = { .bits = 4, .clip = 1.0f }, kv4 = { .bits = 4, .asym = 1, .clip = 1.0f };
    qh_act_quant set[N_SET] = {
        { .act = qh_quant_spec_off(), .kv = qh_quant_spec_off() },
        { .act = a4, .kv = qh_quant_spec_off() },
        { .act = a4, .kv = kv4 },
        { .act = a4, .kv = qh_quant_spec_off(), .smooth = 1 },
        { .act = a4, .kv = qh_quant_spec_off(), .smooth = 1, .smooth_group = 128, .smooth_causal = 1 },
    };
    static const char *const names[N_SET] = { "float", "A4", "A4KV4", "A4 + RS", "A4 + RS128 causal" };
    double best[N_SET];
    for (int s = 0; s < N_SET; s++) best[s] = 1e30;
    st = qh_forward_window(m, ids, T, ws, logits);                     /* warm-up */
    for (int round = 0; st == QH_OK && round < 3; round++)
        for (int s = 0; st == QH_OK && s < N_SET; s++) {
            m->act_quant = s ? &set[s] : NULL;
            double t0 = qh_seconds();
            for (int w = 0; st == QH_OK && w < windows; w++)
                st = qh_forward_window(m, ids + (size_t)w * T, T, ws, logits);
            double t = qh_seconds() - t0;
            best[s] = t < best[s] ? t : best[s];
        }
    m->act_quant = NULL;
    if (st != QH_OK) { printf("%s: forward failed: %s\n", dir, qh_last_error()); goto cleanup; }
    printf("%s (T=%zu x %d windows, best of 3 interleaved rounds):\n", dir, T, windows);
    for (int s = 0; s < N_SET; s++)
        printf("    %-18s %8.0f tokens/s   time x%.3f of float\n", names[s],
               (double)windows * (double)T / best[s], best[s] / best[0]);
cleanup:
    free(logits);
    qh_forward_ws_free(ws);
    qh_model_free(m);
    return st;
}

int main(void)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (bench_wikitext_ids(&ids, &n) != QH_OK) return 1;
    int st = bench_model("models/opt-7m", ids, n, 1024, 4);
    if (st == QH_OK) st = bench_model("models/llama-9m", ids, n, 1024, 4);
    if (st == QH_OK) st = bench_model("../shared/models/opt-30m", ids, n, 1024, 2);
    free(ids);
    return st == QH_OK ? 0 : 1;
}
