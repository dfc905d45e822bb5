/* qh_fixtures.h -- test inputs and checks shared by the method tests.
 * Each generator draws from its own test stream (seed, key), so a test that
 * moves here keeps its data bit for bit. */
#ifndef QH_FIXTURES_H
#define QH_FIXTURES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"

/* W (m x n), entries N(0, 1) from stream (seed, key), row i scaled by
 * 1 + row_slope·(i mod 3) (0: plain Gaussian).  NULL on OOM. */
static inline qh_matd *fixture_gaussian_W(size_t m, size_t n, uint64_t seed, uint32_t key, double row_slope)
{
    qh_rng r = qh_rng_stream(seed, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    if (!W) return NULL;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = qh_rng_normal(&r) * (1.0 + row_slope * (double)(i % 3));
    return W;
}

/* ‖A − B‖_F (B NULL: ‖A‖_F), summed column by column. */
static inline double fixture_frob_diff(const qh_matd *A, const qh_matd *B)
{
    double s = 0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++) {
            double d = QH_AT(A, i, j) - (B ? QH_AT(B, i, j) : 0.0);
            s += d * d;
        }
    return sqrt(s);
}

/* The proxy Σ_r Σ_ab e_ra H_ab e_rb (e = Ŵ − W) by the definition, line by
 * line: the reference against which BLAS-based losses are checked. */
static inline double fixture_naive_proxy(const qh_matd *W, const qh_matd *What, const qh_matd *H)
{
    double L = 0.0;
    for (size_t r = 0; r < W->rows; r++)
        for (size_t a = 0; a < W->cols; a++)
            for (size_t b = 0; b < W->cols; b++)
                L += (QH_AT(What, r, a) - QH_AT(W, r, a)) * QH_AT(H, a, b) * (QH_AT(What, r, b) - QH_AT(W, r, b));
    return L;
}

/* Runs row m (default parameters, at `bits`) on W and H with input 0 made
 * dead (row and column 0 of H zeroed when n > 1; H is modified) and checks
 * what every method owes a dead input: success, a finite Ŵ, the dead column
 * counted, a finite proxy and more than nominal total bits. */
static inline void fixture_check_dead_input(const qh_method_type *m, int bits, const qh_matd *W, qh_matd *H)
{
    size_t n = W->cols;
    for (size_t j = 0; n > 1 && j < n; j++) QH_AT(H, 0, j) = QH_AT(H, j, 0) = 0.0;
    qh_problem p = { W, H, bits, 0, 0, "layers.0.fc1", NULL, NULL };
    qh_result r;
    qh_result_init(&r);
    int st = qh_quantize(m, NULL, &p, NULL, NULL, &r);
    QH_CHECK(st == QH_OK && qh_matd_all_finite(r.What) && r.n_dead_cols == (n > 1)
             && isfinite(r.proxy_loss) && r.bits_total > (double)bits,
             "%s %zux%zu with a dead input: status %d, dead %zu, proxy %g (%s)", m->name, W->rows, n, st,
             r.n_dead_cols, r.proxy_loss, qh_last_error());
    qh_result_free(&r);
}

#endif
