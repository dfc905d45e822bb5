/* bench_aqlm.c -- `make bench`: the aqlm row (core/methods/aqlm.h).
 *
 * 1. Peaks: best of 3 square sgemm and dgemm of 1024³ through qh_blas (the
 *    solver's GEMMs are double, so both are printed).
 * 2. Whole layers through the driver (default parameters, no incoherence,
 *    W ~ N(0, 0.02²), correlated H = X Xᵀ/T with uneven channels): 2x8 g8
 *    at 2 bits and 1x8 g8 at 1 bit on the opt-30m shapes 512 x 512 and
 *    2048 x 512 (fc1), and 2x8 on 512 x 2048 (fc2, the slowest: the
 *    m·n² GEMMs dominate): wall seconds, weights/s, epochs, proxy relative
 *    to tr(W H Wᵀ), and RTN's at the same bits.
 * 3. Steps alone on the solver: one k-means Lloyd iteration, one beam pass,
 *    one CG iteration of the lstsq update, with achieved GFLOP/s, counting
 *    2 flops per multiply-add of the GEMMs:
 *      beam pass  2·m·n·K·M (scores) + 2·m·n² (rank-g updates of G)
 *      k-means    2·m·n·K per codebook and iteration
 *      CG step    2·m·n² (one product with H)
 *    plus one 1x16 g8 beam pass (K = 65536) on 512 x 512.
 * Timings only; never a pass/fail test.  About a minute on 2 cores.  Many
 * GEMMs are small (inner dimension g = 8): on a loaded machine OpenBLAS's
 * threads spin and yield, so compare with OPENBLAS_NUM_THREADS=1. */
#include <stdio.h>
#include <stdlib.h>

#include "aqlm.h"
#include "qh_blas.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "bench_util.h"

static int bench_layer(size_t m, size_t n, int M, int bits)
{
    qh_matd *W = bench_make_W(m, n, 9, 0), *H = bench_make_H(n, 2 * n, 9, 1), *zero = qh_matd_alloc(m, n);
    void *params = qh_method_params_new(&qh_method_aqlm);
    char buf[16];
    snprintf(buf, sizeof buf, "%d", M);
    int st = (W && H && zero && params) ? qh_method_params_set(&qh_method_aqlm, params, "codebooks", buf) : QH_ENOMEM;
    double wn = 0.0;
    if (st == QH_OK) st = qh_lin_proxy_loss(W, zero, H, &wn);
    qh_result r, rt;
    qh_result_init(&r);
    qh_result_init(&rt);
    qh_problem p = { W, H, bits, 0, 0, "bench", NULL, NULL };
    double t = 0.0;
    if (st == QH_OK) {
        double t0 = qh_seconds();
        st = qh_quantize(&qh_method_aqlm, params, &p, NULL, NULL, &r);
        t = qh_seconds() - t0;
    }
    if (st == QH_OK) st = qh_quantize(qh_method_find("rtn"), NULL, &p, NULL, NULL, &rt);
    if (st == QH_OK)
        printf("| %dx8 g8 | %4zu x %-4zu | %d | %6.3f | %7.2f | %10.0f | %2zu | %.4f | %.4f |\n", M, m, n, bits,
               r.bits_total, t, (double)m * (double)n / t, r.n_iterations, r.proxy_loss / wn, rt.proxy_loss / wn);
    else
        fprintf(stderr, "bench_aqlm: %zu x %zu: %s\n", m, n, qh_last_error());
    qh_result_free(&r);
    qh_result_free(&rt);
    free(params);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(zero);
    return st;
}

/* One beam pass (and, for K ≤ 256, one Lloyd iteration and one CG step) on the solver. */
static int bench_steps(size_t m, size_t n, int M, int B, double dpeak, double speak)
{
    qh_matd *W = bench_make_W(m, n, 9, 0), *H = bench_make_H(n, 2 * n, 9, 1);
    size_t bytes = (qh_aqlm_ctx_bytes(m, n, M, B, 8, 2) + 63) / 64 * 64;
    void *mem = aligned_alloc(64, bytes);
    if (!W || !H || !mem) { qh_matd_free(W); qh_matd_free(H); free(mem); return QH_ENOMEM; }
    for (size_t i = 0; i < n; i++) QH_AT(H, i, i) *= 1.01;
    qh_aqlm_ctx c;
    qh_aqlm_ctx_init(&c, W, H, M, B, 8, 2, mem);
    qh_rng rng = qh_rng_stream(9, 2, QH_RNG_SYNTHETIC);
    double K = (double)c.K, mn = (double)m * (double)n;
    qh_aqlm_init_scales(&c);
    double tk = -1.0;
    if (c.K <= 4096) {
        double t0 = qh_seconds();
        qh_aqlm_init_kmeans(&c, 1, &rng);                  /* first assignment + one iteration */
        tk = (qh_seconds() - t0) / (2.0 * M);
    } else {                                               /* random codebooks and codes */
        for (size_t i = 0; i < c.M * c.K * c.g; i++) c.cb[i] = 0.05 * qh_rng_normal(&rng);
        for (size_t i = 0; i < m * c.J * c.M; i++) c.codes[i] = (uint16_t)qh_rng_below(&rng, c.K);
    }
    qh_aqlm_refresh(&c);
    double t0 = qh_seconds();
    qh_aqlm_beam_pass(&c, &rng);
    double tb = qh_seconds() - t0;
    double fb = 2.0 * mn * K * M + 2.0 * mn * (double)n;
    printf("| %dx%d g8 | %4zu x %-4zu | beam pass | %7.3f | %8.1f | %5.1f %% | %5.1f %% |\n", M, B, m, n, tb,
           fb / tb * 1e-9, 100.0 * fb / tb * 1e-9 / dpeak, 100.0 * fb / tb * 1e-9 / speak);
    if (tk > 0.0) {
        double fk = 2.0 * mn * K;
        printf("| %dx%d g8 | %4zu x %-4zu | k-means iteration | %7.3f | %8.1f | %5.1f %% | %5.1f %% |\n", M, B, m, n,
               tk, fk / tk * 1e-9, 100.0 * fk / tk * 1e-9 / dpeak, 100.0 * fk / tk * 1e-9 / speak);
        t0 = qh_seconds();
        int it = qh_aqlm_update_lstsq(&c, 5, 0.0);
        double tc = (qh_seconds() - t0) / (it > 0 ? it : 1);
        double fc = 2.0 * mn * (double)n;
        printf("| %dx%d g8 | %4zu x %-4zu | CG iteration | %7.3f | %8.1f | %5.1f %% | %5.1f %% |\n", M, B, m, n, tc,
               fc / tc * 1e-9, 100.0 * fc / tc * 1e-9 / dpeak, 100.0 * fc / tc * 1e-9 / speak);
    }
    free(mem);
    qh_matd_free(W);
    qh_matd_free(H);
    return QH_OK;
}

int main(void)
{
    qh_blas_info_t info = qh_blas_info();
    double speak = bench_gemm_gflops(0, 1024, 3), dpeak = bench_gemm_gflops(1, 1024, 3);
    printf("bench_aqlm (OpenBLAS core %s, %d threads): peak sgemm %.1f GFLOP/s, dgemm %.1f GFLOP/s (1024^3, best of 3)\n\n",
           info.core, info.threads, speak, dpeak);
    printf("Whole layers through the driver, default parameters (rel. proxy = proxy / tr(W H W^T)):\n\n");
    printf("| scheme | m x n | bits | bpw total | seconds | weights/s | epochs | rel. proxy | rtn rel. proxy |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    static const size_t shapes[3][2] = { { 512, 512 }, { 2048, 512 }, { 512, 2048 } };
    for (int s = 0; s < 3; s++)                            /* 1x8 only on the first two shapes */
        for (int M = 2; M >= (s < 2 ? 1 : 2); M--)
            if (bench_layer(shapes[s][0], shapes[s][1], M, M) != QH_OK) return 1;
    printf("\nSteps alone (GFLOP/s of the GEMM flops, double precision; %% of the dgemm and sgemm peaks):\n\n");
    printf("| scheme | m x n | step | seconds | GFLOP/s | of dgemm | of sgemm |\n|---|---|---|---|---|---|---|\n");
    for (int s = 0; s < 3; s++)
        for (int M = 2; M >= (s < 2 ? 1 : 2); M--)
            if (bench_steps(shapes[s][0], shapes[s][1], M, 8, dpeak, speak) != QH_OK) return 1;
    if (bench_steps(512, 512, 1, 16, dpeak, speak) != QH_OK) return 1;
    return 0;
}
