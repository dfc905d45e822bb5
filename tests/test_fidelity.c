/* test_fidelity.c -- KL, top-1 agreement, delta p and their intervals
 * (pipeline/eval.h) against brute-force double references on random logits:
 * identical logits give KL exactly 0 and agreement 1; with k = vocab the KL
 * is the exact D_KL(p || q); with k < vocab it is the KL of the (k+1)-outcome
 * coarsening (top k of p, one tail bucket); the 99th percentile lies within
 * one histogram bin of the sorted values, the maximum is exact; the interval
 * is 1.96 sd / sqrt(n) on a hand case.  Also a float cache round trip on a
 * tiny model when models/opt-7m is present: the build leaves no temporary of
 * its own, and a killed builder's is removed by its pid. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "pipeline/eval.h"
#include "pipeline/float_cache.h"
#include "qh_mat.h"
#include "qh_test.h"
#include "results/writer.h"

#define V 50
#define T 40

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void logsoftmax(const float *x, size_t n, double *out)
{
    double mx = -INFINITY, s = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, x[i]);
    for (size_t i = 0; i < n; i++) s += exp(x[i] - mx);
    for (size_t i = 0; i < n; i++) out[i] = x[i] - mx - log(s);
}

/* Brute-force KL of the coarsening: the k ids of largest p (ties by lower id)
 * kept, the rest pooled; k = n gives the exact KL. */
static double brute_kl(const float *pf, const float *qf, size_t n, size_t k, int *p_argmax)
{
    double lp[V], lq[V];
    int used[V] = { 0 };
    logsoftmax(pf, n, lp);
    logsoftmax(qf, n, lq);
    double kl = 0, P = 0, Q = 0;
    for (size_t j = 0; j < k; j++) {
        size_t b = n;
        for (size_t i = 0; i < n; i++)
            if (!used[i] && (b == n || lp[i] > lp[b])) b = i;
        used[b] = 1;
        if (j == 0) *p_argmax = (int)b;
        kl += exp(lp[b]) * (lp[b] - lq[b]);
        P += exp(lp[b]);
        Q += exp(lq[b]);
    }
    if (k < n && 1 - P > 0) kl += (1 - P) * log((1 - P) / (1 - Q));
    return kl;
}

static void check_random(size_t k, double noise, uint64_t seed)
{
    float *pl = malloc(sizeof(float) * V * T), *ql = malloc(sizeof(float) * V * T);
    int32_t ids[T], idx[(T - 1) * V];
    float logp[(T - 1) * V], lt[T - 1];
    uint64_t s = seed;
    for (size_t i = 0; i < V * T; i++) {
        pl[i] = (float)(4 * urand(&s) - 2);
        ql[i] = pl[i] + (float)(noise * (urand(&s) - 0.5));
    }
    for (size_t t = 0; t < T; t++) ids[t] = (int32_t)(urand(&s) * V);
    qh_float_window_from_logits(pl, V, ids, T, k, idx, logp, lt);
    qh_float_window ref = { k, idx, logp, lt };
    qh_fidelity_acc acc;
    memset(&acc, 0, sizeof acc);
    double nll, kl, agree, dp, nf, want_kl = 0, want_agree = 0, want_dp = 0, all[T], mx = 0;
    QH_CHECK(qh_window_fidelity(ql, V, ids, T, NULL, &ref, &acc, &nll, &kl, &agree, &dp, &nf) == QH_OK,
             "fidelity runs (k %zu)", k);
    for (size_t t = 0; t + 1 < T; t++) {
        int am_p, am_q = 0;
        const float *qc = ql + t * V;
        all[t] = brute_kl(pl + t * V, qc, V, k, &am_p);
        mx = fmax(mx, all[t]);
        want_kl += all[t];
        for (int i = 1; i < V; i++) if (qc[i] > qc[am_q]) am_q = i;
        want_agree += am_p == am_q;
        double lp[V], lq[V];
        logsoftmax(pl + t * V, V, lp);
        logsoftmax(qc, V, lq);
        want_dp += exp(lq[ids[t + 1]]) - exp(lp[ids[t + 1]]);
    }
    QH_CHECK_CLOSE(kl, want_kl / (T - 1), 1e-9, 1e-5, "KL k=%zu noise %g: %.9g vs brute force %.9g",
                   k, noise, kl, want_kl / (T - 1));
    QH_CHECK_CLOSE(agree, want_agree / (T - 1), 0, 1e-12, "agreement k=%zu: %g vs %g", k, agree,
                   want_agree / (T - 1));
    QH_CHECK_CLOSE(dp, want_dp / (T - 1), 1e-7, 0, "delta p k=%zu: %g vs %g", k, dp, want_dp / (T - 1));
    QH_CHECK_CLOSE(acc.kl_max, mx, 1e-9, 1e-5, "max KL exact: %g vs %g", acc.kl_max, mx);
    qh_sort_doubles(all, T - 1);
    double want99 = all[(size_t)ceil(0.99 * (T - 1)) - 1], got99 = qh_fidelity_quantile(&acc, 0.99);
    double want50 = all[(size_t)ceil(0.5 * (T - 1)) - 1], got50 = qh_fidelity_quantile(&acc, 0.5);
    double bin = pow(10.0, 1.0 / QH_KL_HIST_PER_DECADE) * (1 + 1e-6);
    QH_CHECK(got99 >= want99 * (1 - 1e-6) && got99 <= want99 * bin,
             "p99 %g within one bin above the sorted value %g", got99, want99);
    QH_CHECK(got50 >= want50 * (1 - 1e-6) && got50 <= want50 * bin,
             "median %g within one bin above the sorted value %g", got50, want50);
    free(pl);
    free(ql);
}

static void check_identical(void)
{
    float *pl = malloc(sizeof(float) * V * T);
    int32_t ids[T], idx[(T - 1) * 7];
    float logp[(T - 1) * 7], lt[T - 1];
    uint64_t s = 99;
    for (size_t i = 0; i < V * T; i++) pl[i] = (float)(10 * urand(&s) - 5);
    for (size_t t = 0; t < T; t++) ids[t] = (int32_t)(urand(&s) * V);
    pl[3] = pl[4];                                      /* a tie at the top of column 0 */
    qh_float_window_from_logits(pl, V, ids, T, 7, idx, logp, lt);
    qh_float_window ref = { 7, idx, logp, lt };
    qh_fidelity_acc acc;
    memset(&acc, 0, sizeof acc);
    double nll, kl, agree, dp, nf;
    QH_CHECK(qh_window_fidelity(pl, V, ids, T, NULL, &ref, &acc, &nll, &kl, &agree, &dp, &nf) == QH_OK,
             "identical: runs");
    QH_CHECK(kl == 0.0 && acc.kl_max == 0.0, "identical logits: KL exactly 0 (got %g, max %g)", kl,
             acc.kl_max);
    QH_CHECK(agree == 1.0, "identical logits: agreement exactly 1 (got %g)", agree);
    QH_CHECK(dp == 0.0, "identical logits: delta p exactly 0 (got %g)", dp);
    QH_CHECK_CLOSE(nf, nll, 1e-6, 0, "identical logits: float NLL %g = NLL %g", nf, nll);
    QH_CHECK(qh_fidelity_quantile(&acc, 0.99) == 0.0, "identical logits: p99 0");
    free(pl);
}

static void check_ci(void)
{
    double x[4] = { 1, 2, 3, 4 }, m, ci;
    qh_mean_ci95(x, 4, &m, &ci);
    /* sd = sqrt(5/3), se = sd / 2 */
    QH_CHECK_CLOSE(m, 2.5, 0, 1e-15, "mean of 1..4");
    QH_CHECK_CLOSE(ci, 1.96 * sqrt(5.0 / 3.0) / 2.0, 0, 1e-14, "CI of 1..4: %g", ci);
    qh_mean_ci95(x, 1, &m, &ci);
    QH_CHECK(m == 1 && ci == 0, "one window: no interval");
}

/* Entries of folder dir other than . and .. */
static size_t count_entries(const char *dir)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

/* The cache on disk against the reference computed in memory. */
static void check_cache(void)
{
    qh_model *m = NULL;
    if (access("models/opt-7m/config.json", R_OK) != 0 || qh_model_load("models/opt-7m", &m) != QH_OK) {
        QH_SKIP("models/opt-7m not readable");
        return;
    }
    size_t L = 64, W = 2, k = 16, vocab = (size_t)m->cfg.vocab_size;
    int32_t ids[128];
    for (size_t i = 0; i < L * W; i++) ids[i] = (int32_t)((i * 7919 + 13) % vocab);
    char key[65], dir[] = "/tmp/qh_fidelity_XXXXXX", path[64];
    if (!mkdtemp(dir)) {
        QH_CHECK(0, "mkdtemp: %s", strerror(errno));
        qh_model_free(m);
        return;
    }
    snprintf(path, sizeof path, "%s/cache.bin", dir);
    QH_CHECK(qh_float_cache_key("models/opt-7m", ids, L, W, k, key) == QH_OK, "key");
    /* a builder killed before its rename (pid 999999) left its temporary */
    char stale[128];
    snprintf(stale, sizeof stale, "%s.999999.00000000000000aa.tmp", path);
    FILE *sf = fopen(stale, "wb");
    if (sf) fclose(sf);
    QH_CHECK(qh_float_cache_build(m, ids, L, W, k, key, path) == QH_OK, "build: %s", qh_last_error());
    QH_CHECK(count_entries(dir) == 2 && access(stale, F_OK) == 0,
             "the build leaves the cache and no temporary of its own");
    size_t n_removed = 0;
    QH_CHECK(qh_results_remove_folder_temporaries(dir, 999999, &n_removed) == QH_OK && n_removed == 1
             && access(stale, F_OK) != 0 && access(path, F_OK) == 0 && count_entries(dir) == 1,
             "the killed builder's temporary is removed by its pid, the cache stays");
    qh_float_cache *c = NULL;
    QH_CHECK(qh_float_cache_open(path, key, vocab, L, W, k + 1, &c) == QH_EIO && !c
             && strstr(qh_last_error(), "k does not match"), "a header of another k is refused: %s",
             qh_last_error());
    QH_CHECK(qh_float_cache_open(path, key, vocab, L, W, k, &c) == QH_OK, "open");
    qh_eval_result r = { 0 };
    int st = c ? qh_eval_ppl_ref(m, ids, L * W, L, 0, qh_float_cache_window, c, NULL, NULL, &r) : QH_EIO;
    QH_CHECK(st == QH_OK, "eval against the cache: %s", qh_last_error());
    QH_CHECK(st == QH_OK && r.fid.present && r.fid.kl_mean == 0.0 && r.fid.agree == 1.0
             && fabs(r.fid.ppl_ratio - 1.0) < 1e-6,
             "the float model against its own cache: KL %g, agreement %g, ratio %g", r.fid.kl_mean,
             r.fid.agree, r.fid.ppl_ratio);
    QH_CHECK_CLOSE(r.fid.ppl_float, r.ppl, 0, 1e-5, "float ppl from the cache %g = ppl %g",
                   r.fid.ppl_float, r.ppl);
    qh_eval_result_free(&r);
    qh_float_cache_close(c);
    remove(path);
    rmdir(dir);
    qh_model_free(m);
}

int main(void)
{
    check_identical();
    check_random(V, 0.5, 1);
    check_random(V, 3.0, 2);
    check_random(5, 0.5, 3);
    check_random(1, 2.0, 4);
    check_ci();
    check_cache();
    return qh_test_summary();
}
