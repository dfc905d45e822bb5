/* bench_pvq.c -- `make bench`: throughput of the PVQ greedy pulse search
 * (groups per second, N(0, 1) inputs) and of the Hessian-aware search, for
 * D = 8 and 16 at the K of 2 and 3 bits per weight (4 amplitude bits), the
 * index encoding, and the wall time of one pvq 2-bit layer of 2048 x 2048
 * through the driver (hadamard incoherence, random W and a correlated
 * H = X Xᵀ/T), with and without the Hessian search. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pvq.h"
#include "qh_blas.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_pvq.h"
#include "qh_rng.h"
#include "bench_util.h"

static int bench_search(unsigned D, int bits)
{
    unsigned K;
    if (qh_pvq_choose_k(D, bits, 4, &K) != QH_OK) return 1;
    size_t ng = ((size_t)1 << 21) / D;
    double *X = malloc(ng * D * sizeof *X), *M = malloc(D * D * sizeof *M), *scr = malloc(2 * D * sizeof *scr);
    int *y = malloc(D * sizeof *y);
    qh_pvq_table t;
    if (!X || !M || !scr || !y || qh_pvq_table_init(&t, D, K) != QH_OK) {
        free(X); free(M); free(scr); free(y);
        return 1;
    }
    qh_rng r = qh_rng_stream(7, D, QH_RNG_SYNTHETIC);
    for (size_t i = 0; i < ng * D; i++) X[i] = qh_rng_normal(&r);
    for (unsigned j = 0; j < D; j++)                       /* a correlated SPD metric */
        for (unsigned i = 0; i < D; i++) M[i + j * D] = (i == j ? 1.0 : 0.0) + 0.3;
    uint64_t sink = 0, idx;
    double c0 = cpu_s();
    for (size_t g = 0; g < ng; g++) { qh_pvq_search(X + g * D, D, K, y); sink += (uint64_t)y[0]; }
    double c = cpu_s() - c0;
    c0 = cpu_s();
    for (size_t g = 0; g < ng; g++) {
        qh_pvq_search(X + g * D, D, K, y);
        if (qh_pvq_encode(&t, y, &idx) != QH_OK) break;
        sink += idx;
    }
    double ce = cpu_s() - c0;
    size_t nh = ng / 4;
    c0 = cpu_s();
    for (size_t g = 0; g < nh; g++) {
        qh_pvq_search_hessian(X + g * D, M, D, D, K, 3.0, 4, y, scr);
        sink += (uint64_t)y[0];
    }
    double ch = cpu_s() - c0;
    printf("pvq D = %2u, K = %3u (%d bpw with 4 amplitude bits): greedy search %.3g groups/s (%.0f ns), "
           "search + encode %.3g groups/s, Hessian search (4 moves) %.3g groups/s (CPU time)\n", D, K, bits,
           (double)ng / c, 1e9 * c / (double)ng, (double)ng / ce, (double)nh / ch);
    qh_pvq_table_free(&t);
    free(X); free(M); free(scr); free(y);
    return sink == 12345 ? 1 : 0;                          /* keeps the loops alive */
}

static int bench_layer(size_t n)
{
    qh_matd *H = bench_make_H(n, 2 * n, 7, 0), *W = qh_matd_alloc(n, n);
    if (!H || !W) { qh_matd_free(H); qh_matd_free(W); return 1; }
    qh_rng r = qh_rng_stream(7, 2, QH_RNG_SYNTHETIC);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) QH_AT(W, i, j) = 0.02 * qh_rng_normal(&r);
    int st = QH_OK;
    for (int hess = 1; hess >= 0 && st == QH_OK; hess--) {
        qh_pvq_params *p = qh_method_params_new(&qh_method_pvq);
        if (!p) { st = QH_ENOMEM; break; }
        p->hessian_search = hess;
        qh_problem pb = { W, H, 2, 0, 0, "bench", NULL, NULL };
        qh_incoh_params ip = { .kind = QH_INCOH_HADAMARD, .seed = 1, .layer = 0 };
        qh_result res;
        qh_result_init(&res);
        double t0 = qh_seconds(), c0 = cpu_s();
        st = qh_quantize(&qh_method_pvq, p, &pb, &ip, NULL, &res);
        double t = qh_seconds() - t0, c = cpu_s() - c0;
        if (st != QH_OK) fprintf(stderr, "bench_pvq: %s\n", qh_last_error());
        else
            printf("pvq 2 bits D = 8 %zux%zu (hadamard, hessian_search %d; driver incl. RHT and proxy): %.2f s wall "
                   "(CPU %.2f s, all threads), %.3g groups/s, proxy %.4g\n", n, n, hess, t, c,
                   (double)n * (double)n / 8.0 / t, res.proxy_loss);
        qh_result_free(&res);
        free(p);
    }
    qh_matd_free(H);
    qh_matd_free(W);
    return st != QH_OK;
}

int main(void)
{
    int fail = 0;
    for (unsigned D = 8; D <= 16; D *= 2)
        for (int bits = 2; bits <= 3; bits++) fail |= bench_search(D, bits);
    fail |= bench_layer(2048);
    return fail ? 1 : 0;
}
