/* bench_fidelity.c -- the cost of the fidelity metrics (pipeline/eval.h):
 * evaluation time of a few windows with KL, agreement and delta p against a
 * float reference cache (default k 128) as a ratio of the plain perplexity
 * evaluation of the same windows, and the one-off cost of building the cache
 * as a ratio too.  Best of three alternating runs each, in wall time and in
 * process CPU time (the latter is the steadier figure on a shared machine).
 * Prints timings; never a pass/fail test. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "pipeline/config.h"
#include "pipeline/eval.h"
#include "pipeline/float_cache.h"
#include "qh_clock.h"
#include "bench_util.h"

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench(const char *dir, const int32_t *ids, size_t n_ids, size_t T, size_t W, size_t k)
{
    qh_model *m = NULL;
    if (qh_model_load(dir, &m) != QH_OK) {
        printf("%-16s skipped: %s\n", dir, qh_last_error());
        return QH_OK;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/qh_bench_fidelity_%ld.bin", (long)getpid());
    char key[65];
    qh_float_cache *c = NULL;
    qh_eval_result r;
    double best_plain = 1e30, best_ref = 1e30, cpu_plain = 1e30, cpu_ref = 1e30, t0 = qh_seconds();
    int st = n_ids >= T * W ? qh_float_cache_key(dir, ids, T, W, k, key) : QH_EINVAL;
    if (st == QH_OK) st = qh_float_cache_build(m, ids, T, W, k, key, path);
    double build = qh_seconds() - t0;
    if (st == QH_OK) st = qh_float_cache_open(path, key, (size_t)m->cfg.vocab_size, T, W, k, &c);
    for (int rep = 0; rep < 3 && st == QH_OK; rep++) {
        t0 = qh_seconds();
        double c0 = cpu_seconds();
        st = qh_eval_ppl(m, ids, T * W, T, W, NULL, NULL, &r);
        double a = qh_seconds() - t0, ca = cpu_seconds() - c0;
        qh_eval_result_free(&r);
        if (st != QH_OK) break;
        t0 = qh_seconds();
        c0 = cpu_seconds();
        st = qh_eval_ppl_ref(m, ids, T * W, T, W, qh_float_cache_window, c, NULL, NULL, &r);
        double b = qh_seconds() - t0, cb = cpu_seconds() - c0;
        cpu_plain = ca < cpu_plain ? ca : cpu_plain;
        cpu_ref = cb < cpu_ref ? cb : cpu_ref;
        qh_eval_result_free(&r);
        best_plain = a < best_plain ? a : best_plain;
        best_ref = b < best_ref ? b : best_ref;
    }
    if (st == QH_OK)
        printf("%-16s %zu windows of %zu, k %zu: evaluation wall %.3f s plain, %.3f s with fidelity "
               "metrics (%+.1f %%); CPU %.3f s against %.3f s (%+.1f %%; budget +10 %%); cache "
               "build %.3f s wall once (%.2f x a plain evaluation)\n", dir, W, T, k, best_plain,
               best_ref, 100.0 * (best_ref / best_plain - 1.0), cpu_plain, cpu_ref,
               100.0 * (cpu_ref / cpu_plain - 1.0), build, build / best_plain);
    else
        printf("%s: failed: %s\n", dir, qh_last_error());
    qh_float_cache_close(c);
    remove(path);
    qh_model_free(m);
    return st;
}

int main(void)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (bench_wikitext_ids(&ids, &n) != QH_OK) return 1;
    int st = bench("models/opt-7m", ids, n, 1024, 8, QH_EVAL_KL_TOPK_DEFAULT);
    if (st == QH_OK) st = bench("models/llama-9m", ids, n, 1024, 8, QH_EVAL_KL_TOPK_DEFAULT);
    free(ids);
    return st == QH_OK ? 0 : 1;
}
