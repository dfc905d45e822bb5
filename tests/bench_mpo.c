/* bench_mpo.c -- `make bench`: CompactifAI's TT-SVD (core/methods/mpo.h) on
 * the LLaMA-7B shapes 4096 x 4096 and 11008 x 4096 (random Gaussian W) at
 * chi = 64 and 256, with the default K = 2 cores (balanced factors: 64·64 and
 * 128·86 rows) and with K = 4 (8⁴ and 43·8·8·4).  Reported: wall seconds of
 * the decomposition (the SVDs dominate: for K = 2 one dgesdd of the 4096 x
 * 4096 or 5504 x 8192 unfolding), of the contraction back to Ŵ, the
 * parameters kept, bits per weight at FP16 and the relative truncation
 * error ‖W − Ŵ‖_F/‖W‖_F.  Set QH_BENCH_SMALL=1 for 1024 x 1024 and
 * 2752 x 1024 instead (a quick run). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mpo.h"
#include "qh_clock.h"
#include "qh_error.h"
#include "qh_rng.h"

static int bench(size_t m, size_t n, size_t K, int chi, const qh_matd *W)
{
    size_t fi[QH_MPO_MAXK], fo[QH_MPO_MAXK];
    qh_mpo_balanced_factors(n, K, fi);
    qh_mpo_balanced_factors(m, K, fo);
    qh_mpo mpo = { 0 };
    double disc = 0, t0 = qh_seconds();
    int st = qh_mpo_decompose(W, K, fi, fo, chi, 0.0, &mpo, &disc);
    double t_dec = qh_seconds() - t0;
    if (st != QH_OK) {
        fprintf(stderr, "bench_mpo: %zu x %zu K %zu chi %d: %s\n", m, n, K, chi, qh_last_error());
        return st;
    }
    qh_matd *What = qh_matd_alloc(m, n);
    t0 = qh_seconds();
    st = What ? qh_mpo_contract(&mpo, What) : QH_ENOMEM;
    double t_con = qh_seconds() - t0, e = 0, w = 0;
    for (size_t j = 0; st == QH_OK && j < n; j++)
        for (size_t i = 0; i < m; i++) {
            double d = QH_AT(W, i, j) - QH_AT(What, i, j);
            e += d * d;
            w += QH_AT(W, i, j) * QH_AT(W, i, j);
        }
    if (st == QH_OK)
        printf("mpo %5zu x %-5zu K %zu chi %3d: decompose %7.2f s, contract %6.3f s, %9zu params "
               "(%.2f %%), %.3f bits/weight at FP16, rel. error %.4f (sqrt discarded %.4f)\n",
               m, n, K, chi, t_dec, t_con, mpo.count, 100.0 * (double)mpo.count / (double)(m * n),
               16.0 * (double)mpo.count / (double)(m * n), sqrt(e / w), sqrt(disc / w));
    qh_matd_free(What);
    qh_mpo_free(&mpo);
    return st;
}

int main(void)
{
    const char *small = getenv("QH_BENCH_SMALL");
    size_t scale = small && *small && *small != '0' ? 4 : 1;
    size_t shapes[2][2] = { { 4096 / scale, 4096 / scale }, { 11008 / scale, 4096 / scale } };
    static const int chis[2] = { 64, 256 };
    for (size_t s = 0; s < 2; s++) {
        size_t m = shapes[s][0], n = shapes[s][1];
        qh_matd *W = qh_matd_alloc(m, n);
        if (!W) return 1;
        qh_rng r = qh_rng_stream(1, (uint32_t)s, QH_RNG_SYNTHETIC);
        for (size_t i = 0; i < m * n; i++) W->data[i] = qh_rng_normal(&r);
        for (size_t K = 2; K <= 4; K += 2)
            for (size_t c = 0; c < 2; c++)
                if (bench(m, n, K, chis[c], W) != QH_OK) { qh_matd_free(W); return 1; }
        qh_matd_free(W);
    }
    return 0;
}
