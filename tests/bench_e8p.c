/* bench_e8p.c -- `make bench`: throughput of the exact E8P nearest search and
 * of the 3-/4-bit RVQ stages (8-vectors per second, N(0, 1.03²) inputs), and
 * the wall time of one quipsharp 2-bit layer of 4096 x 4096 through the driver
 * (hadamard incoherence, random W and a correlated H = X Xᵀ/T).
 * Set QH_BENCH_SMALL=1 for a 2048 x 2048 layer. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "qh_blas.h"
#include "qh_e8p.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "bench_util.h"
#include "quipsharp.h"

static int bench_search(const qh_e8p *cb, const qh_e81b *cb1)
{
    size_t nvec = 1u << 20;
    double *X = malloc(nvec * 8 * sizeof *X), q[8], sink = 0.0;
    if (!X) return 1;
    qh_rng r = qh_rng_stream(5, 0, QH_RNG_SYNTHETIC);
    for (size_t i = 0; i < nvec * 8; i++) X[i] = 1.03 * qh_rng_normal(&r);
    double t0 = qh_seconds(), c0 = cpu_s();
    for (size_t v = 0; v < nvec; v++) {
        sink += qh_e8p_nearest(cb, X + 8 * v, q);
    }
    double t = qh_seconds() - t0, c = cpu_s() - c0;
    printf("e8p nearest (exact, 2*256*8): %zu vectors in %.3f s wall = %.3g vectors/s; CPU %.3f s = %.3g vectors/s "
           "(%.0f ns each)\n", nvec, t, (double)nvec / t, c, (double)nvec / c, 1e9 * c / (double)nvec);
    for (int bits = 3; bits <= 4; bits++) {
        size_t nv = nvec / 4;
        t0 = qh_seconds();
        c0 = cpu_s();
        for (size_t v = 0; v < nv; v++) {
            if (qh_e8p_rvq_quantize(cb, cb1, bits, X + 8 * v, q) != QH_OK) { free(X); return 1; }
            sink += q[0];
        }
        t = qh_seconds() - t0;
        c = cpu_s() - c0;
        printf("e8p rvq %d bits: %zu vectors in %.3f s wall = %.3g vectors/s; CPU %.3f s = %.3g vectors/s\n", bits,
               nv, t, (double)nv / t, c, (double)nv / c);
    }
    free(X);
    return sink == 0.12345 ? 1 : 0;                  /* keeps the loops alive */
}

static int bench_layer(size_t n)
{
    qh_matd *H = bench_make_H(n, 2 * n, 5, 0), *W = qh_matd_alloc(n, n);
    if (!H || !W) { qh_matd_free(H); qh_matd_free(W); return 1; }
    qh_rng r = qh_rng_stream(5, 2, QH_RNG_SYNTHETIC);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) QH_AT(W, i, j) = 0.02 * qh_rng_normal(&r);
    qh_problem pb = { W, H, 2, 0, 0, "bench", NULL, NULL };
    qh_incoh_params ip = { .kind = QH_INCOH_HADAMARD, .seed = 1, .layer = 0 };
    qh_result res;
    qh_result_init(&res);
    double t0 = qh_seconds(), c0 = cpu_s();
    int st = qh_quantize(&qh_method_quipsharp, NULL, &pb, &ip, NULL, &res);
    double t = qh_seconds() - t0, c = cpu_s() - c0;
    if (st != QH_OK) fprintf(stderr, "bench_e8p: %s\n", qh_last_error());
    else
        printf("quipsharp 2 bits %zux%zu (hadamard; driver incl. RHT and proxy): %.2f s wall (CPU %.2f s, all "
               "threads), %.3g vectors/s, proxy %.4g\n", n, n, t, c, (double)n * (double)n / 8.0 / t,
               res.proxy_loss);
    qh_result_free(&res);
    qh_matd_free(H);
    qh_matd_free(W);
    return st != QH_OK;
}

int main(void)
{
    static qh_e8p cb;
    static qh_e81b cb1;
    if (qh_e8p_init(&cb) != QH_OK || qh_e81b_init(&cb1) != QH_OK) {
        fprintf(stderr, "bench_e8p: %s\n", qh_last_error());
        return 1;
    }
    const char *small = getenv("QH_BENCH_SMALL");
    int fail = bench_search(&cb, &cb1);
    fail |= bench_layer(small && *small && *small != '0' ? 2048 : 4096);
    return fail ? 1 : 0;
}
