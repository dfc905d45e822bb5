/* bench_util.h -- clocks and a synthetic layer Hessian shared by the
 * benchmark programs (tests/bench_*.c). */
#ifndef QH_BENCH_UTIL_H
#define QH_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "qh_blas.h"
#include "qh_linalg.h"
#include "qh_mat.h"
#include "qh_rng.h"
#include "tokenizer/tokenizer.h"
#include "qh_clock.h"

/* Process CPU seconds (all threads): robust to a loaded machine for
 * single-threaded loops. */
static inline double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* H = X Xᵀ / T with X (n x T): a shared factor per sample and a smooth
 * correlation along the input index, like activations; `uneven` also scales
 * channels by 0.5..2.5 so that diag(H) varies.  New matrix, NULL on OOM. */
static inline qh_matd *bench_make_H(size_t n, size_t T, uint64_t seed, int uneven)
{
    qh_rng r = qh_rng_stream(seed, 0, QH_RNG_SYNTHETIC);
    double *X = malloc(n * T * sizeof *X);
    qh_matd *H = qh_matd_alloc(n, n);
    if (!X || !H) { free(X); qh_matd_free(H); return NULL; }
    for (size_t t = 0; t < T; t++) {
        double common = qh_rng_normal(&r), prev = 0.0;
        for (size_t i = 0; i < n; i++) {
            prev = 0.7 * prev + qh_rng_normal(&r);
            X[i + t * n] = (0.5 * common + prev) * (uneven ? 0.5 + (double)(i % 13) / 6.0 : 1.0);
        }
    }
    qh_dsyrk('N', n, T, 1.0 / (double)T, X, n, 0.0, H->data, n);
    qh_symmetrize_upper(H);
    free(X);
    return H;
}

/* Two random n x n operands and room for the product (3 n² elements, double
 * or float), or NULL on OOM. */
static inline void *bench_gemm_operands(int dbl, size_t n)
{
    qh_rng r = qh_rng_stream(1, 0, QH_RNG_SYNTHETIC);
    void *A = malloc(3 * n * n * (dbl ? sizeof(double) : sizeof(float)));
    if (!A) return NULL;
    for (size_t i = 0; i < 2 * n * n; i++) {
        if (dbl) ((double *)A)[i] = qh_rng_normal(&r);
        else ((float *)A)[i] = (float)qh_rng_normal(&r);
    }
    return A;
}

/* C = A B on the operands of bench_gemm_operands; its seconds. */
static inline double bench_gemm_once(int dbl, size_t n, void *A)
{
    double t = qh_seconds();
    if (dbl) {
        double *D = A;
        qh_dgemm('N', 'N', n, n, n, 1.0, D, n, D + n * n, n, 0.0, D + 2 * n * n, n);
    } else {
        float *F = A;
        qh_sgemm('N', 'N', n, n, n, 1.0f, F, n, F + n * n, n, 0.0f, F + 2 * n * n, n);
    }
    return qh_seconds() - t;
}

/* Best-of-reps GFLOP/s of an n³ GEMM (dbl: dgemm, else sgemm), random
 * operands; the machine's measured peak that benchmarks report against. */
static inline double bench_gemm_gflops(int dbl, size_t n, int reps)
{
    void *A = bench_gemm_operands(dbl, n);
    if (!A) return 0.0;
    double best = 1e30;
    for (int k = 0; k < reps; k++) {
        double t = bench_gemm_once(dbl, n, A);
        best = t < best ? t : best;
    }
    free(A);
    return 2.0 * (double)n * n * n / best * 1e-9;
}

/* The sustained sgemm rate: 2048³ products back to back for at least
 * `seconds`, total FLOPs over total time (a first product, which faults the
 * pages in, is not counted).  A best-of probe catches the machine's fastest
 * moment; this averages over its short-term noise as a forward pass of
 * several seconds does, so a pass divided by it compares like with like. */
static inline double bench_sgemm_sustained(double seconds)
{
    const size_t n = 2048;
    void *A = bench_gemm_operands(0, n);
    if (!A) return 0.0;
    (void)bench_gemm_once(0, n, A);
    double t = 0.0;
    long calls = 0;
    while (t < seconds) {
        t += bench_gemm_once(0, n, A);
        calls++;
    }
    free(A);
    return 2.0 * (double)n * n * n * (double)calls / t * 1e-9;
}

/* The sgemm peak: the better of 1024^3 (best of reps1) and 2048^3 (best of
 * reps2); the two rates also into *p1, *p2 when not NULL. */
static inline double bench_sgemm_peak(int reps1, int reps2, double *p1, double *p2)
{
    double a = bench_gemm_gflops(0, 1024, reps1), b = bench_gemm_gflops(0, 2048, reps2);
    if (p1) *p1 = a;
    if (p2) *p2 = b;
    return a > b ? a : b;
}

/* Prints the BLAS build, the sgemm peak (best of 1024³ and 2048³) and, for
 * context, the sustained 2048³ rate; returns the peak, the reference the
 * model benchmarks report against. */
static inline double bench_sgemm_peak_report(void)
{
    qh_blas_info_t bi = qh_blas_info();
    printf("OpenBLAS core %s, %d threads (%s)\n", bi.core, bi.threads, bi.config);
    double p1, p2, peak = bench_sgemm_peak(5, 3, &p1, &p2);
    printf("sgemm peak: 1024^3 %.1f GFLOP/s, 2048^3 %.1f GFLOP/s (best of 5 / 3); "
           "2048^3 sustained over 1 s: %.1f GFLOP/s\n", p1, p2, bench_sgemm_sustained(1.0));
    return peak;
}

/* The WikiText-2 test text tokenized with opt-7m's tokenizer (the windows
 * the model benchmarks run on); *ids to free().  QH_OK or the failure. */
static inline int bench_wikitext_ids(int32_t **ids, size_t *n)
{
    qh_tokenizer *tok = NULL;
    int st = qh_tokenizer_load("models/opt-7m/tokenizer.json", &tok);
    if (st == QH_OK) st = qh_tokenize_file(tok, "data/wikitext2_test.raw", ids, n);
    if (st != QH_OK) printf("cannot tokenize data/wikitext2_test.raw: %s\n", qh_last_error());
    qh_tokenizer_free(tok);
    return st;
}

/* W (m x n) with entries 0.02·N(0, 1) from stream `seed`; every `heavy`-th
 * column (0: none) scaled by 4, like the outlier inputs of trained layers.
 * New matrix, NULL on OOM. */
static inline qh_matd *bench_make_W(size_t m, size_t n, uint64_t seed, size_t heavy)
{
    qh_rng r = qh_rng_stream(seed, 1, QH_RNG_SYNTHETIC);
    qh_matd *W = qh_matd_alloc(m, n);
    if (!W) return NULL;
    for (size_t j = 0; j < n; j++) {
        double col = (heavy && j % heavy == 0) ? 4.0 : 1.0;
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 0.02 * col * qh_rng_normal(&r);
    }
    return W;
}

#endif
