/* test_pvq.c -- pyramid vector quantization (core/qh_pvq.h) and the pvq
 * method row (core/methods/pvq.h; methods reference §11):
 *   - V(N, K): the recurrence against the closed form Σ 2^k C(N,k) C(K−1,k−1),
 *     V(2,K) = 4K, V(3,K) = 4K²+2, V(4,4) = 192, V(9,9) = 864 146, index bits,
 *     64-bit overflow refused with N and K named;
 *   - enumeration: exhaustive round trip against a brute-force list of the
 *     pyramid for N, K ≤ 5; random round trips for (8, 36) and (16, 27);
 *   - greedy pulse search against brute force (N ≤ 4, K ≤ 6): fraction of
 *     cosine-optimal cases ≥ 90 %; the Hessian search against brute force in
 *     the H metric;
 *   - the choice of K reproduces the shape-only table for D = 8, 16, 32, 64;
 *   - amplitude levels: Beta(1, b) closed-form quantiles;
 *   - the row: every group of Ŵ is s·a_l·y/‖y‖ with y on the pyramid; feedback
 *     and the Hessian search lower the proxy loss; lazy panels = eager;
 *     Hadamard incoherence through the driver; determinism; bad input. */
#include "pvq.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_pvq.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

#include <stdlib.h>
#include <string.h>

/* ---- counting --------------------------------------------------------------- */

static uint64_t binom(unsigned n, unsigned k)
{
    if (k > n) return 0;
    uint64_t c = 1;
    for (unsigned i = 1; i <= k; i++) c = c * (n - k + i) / i;       /* exact at every step */
    return c;
}

static uint64_t closed_form(unsigned N, unsigned K)
{
    if (K == 0) return 1;
    uint64_t s = 0;
    for (unsigned k = 1; k <= N && k <= K; k++) s += ((uint64_t)1 << k) * binom(N, k) * binom(K - 1, k - 1);
    return s;
}

static uint64_t count_of(unsigned N, unsigned K)
{
    uint64_t v = 0;
    if (qh_pvq_count(N, K, &v) != QH_OK) return UINT64_MAX;
    return v;
}

static void test_counting(void)
{
    size_t bad = 0;
    for (unsigned N = 1; N <= 20; N++)
        for (unsigned K = 0; K <= 20; K++) bad += count_of(N, K) != closed_form(N, K);
    QH_CHECK(bad == 0, "V(N, K) = closed form for N <= 20, K <= 20 (%zu differ)", bad);
    size_t bad2 = 0, bad3 = 0;
    for (unsigned K = 1; K <= 60; K++) {
        bad2 += count_of(2, K) != 4ull * K;
        bad3 += count_of(3, K) != 4ull * K * K + 2;
    }
    QH_CHECK(bad2 == 0 && bad3 == 0, "V(2,K) = 4K, V(3,K) = 4K^2+2 for K <= 60 (%zu, %zu differ)", bad2, bad3);
    QH_CHECK(count_of(4, 4) == 192 && count_of(9, 9) == 864146, "V(4,4) = 192 (%llu), V(9,9) = 864146 (%llu)",
             (unsigned long long)count_of(4, 4), (unsigned long long)count_of(9, 9));
    QH_CHECK(count_of(5, 0) == 1 && count_of(0, 3) == 0 && count_of(0, 0) == 1, "V(N,0) = 1, V(0,K>0) = 0");
    QH_CHECK_CLOSE(qh_pvq_log2_count(16, 16), 37.1, 0.05, 0, "N=K=16: %.3f bits", qh_pvq_log2_count(16, 16));
    QH_CHECK_CLOSE(qh_pvq_log2_count(32, 32), 77.3, 0.05, 0, "N=K=32: %.3f bits", qh_pvq_log2_count(32, 32));
    QH_CHECK_CLOSE(qh_pvq_log2_count(128, 64), 217.7, 0.05, 0, "N=128,K=64: %.3f bits",
                   qh_pvq_log2_count(128, 64));
    QH_CHECK(qh_pvq_log2_count(9, 9) == log2(864146.0), "log2 count exact below 2^53");
    uint64_t v;
    QH_CHECK(qh_pvq_count(16, 58, &v) == QH_OK && log2((double)v) > 63.0, "V(16,58) fits 64 bits (%.2f bits)",
             log2((double)v));
    int st = qh_pvq_count(32, 105, &v);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "N = 32") && strstr(qh_last_error(), "K = 105"),
             "V(32,105) overflow refused: %s", qh_last_error());
    qh_pvq_table t;
    st = qh_pvq_table_init(&t, 17, 64);
    QH_CHECK(st == QH_EINVAL && t.V == NULL && strstr(qh_last_error(), "K = 64"), "table overflow refused: %s",
             qh_last_error());
    qh_pvq_table_free(&t);
}

/* ---- enumeration ------------------------------------------------------------ */

/* Every point of P(N, K) in lexicographic order of y by brute force; returns the count. */
static size_t list_pyramid(unsigned N, unsigned K, int *pts)
{
    size_t count = 0;
    int y[8];
    long total = 1;
    for (unsigned i = 0; i < N; i++) total *= 2 * (long)K + 1;
    for (long c = 0; c < total; c++) {
        long r = c;
        unsigned l1 = 0;
        for (unsigned i = 0; i < N; i++) {
            y[i] = (int)(r % (2 * (long)K + 1)) - (int)K;
            r /= 2 * (long)K + 1;
            l1 += (unsigned)abs(y[i]);
        }
        if (l1 != K) continue;
        if (pts) memcpy(pts + count * N, y, N * sizeof *y);
        count++;
    }
    return count;
}

static void test_enumeration_exhaustive(void)
{
    size_t cases = 0, bad = 0;
    for (unsigned N = 1; N <= 5; N++)
        for (unsigned K = 0; K <= 5; K++) {
            qh_pvq_table t;
            if (qh_pvq_table_init(&t, N, K) != QH_OK) { bad++; continue; }
            uint64_t V = qh_pvq_table_at(&t, N, K);
            size_t np = list_pyramid(N, K, NULL);
            int *pts = malloc((np ? np : 1) * N * sizeof *pts);
            list_pyramid(N, K, pts);
            unsigned char *seen = calloc(V ? V : 1, 1);
            int ok = np == V;
            for (size_t p = 0; ok && p < np; p++) {           /* every point: a distinct valid index */
                uint64_t idx;
                int y[8];
                ok = qh_pvq_encode(&t, pts + p * N, &idx) == QH_OK && idx < V && !seen[idx]
                     && qh_pvq_decode(&t, idx, y) == QH_OK && !memcmp(y, pts + p * N, N * sizeof *y);
                if (ok) seen[idx] = 1;
            }
            bad += !ok;
            cases++;
            free(seen);
            free(pts);
            qh_pvq_table_free(&t);
        }
    QH_CHECK(bad == 0, "exhaustive round trip N, K <= 5: %zu of %zu sizes fail", bad, cases);
    /* the order: index 0 is (0, ..., 0, +K), then (0, ..., 0, −K) */
    qh_pvq_table t;
    int y[4] = { 0 };
    QH_CHECK(qh_pvq_table_init(&t, 4, 3) == QH_OK && qh_pvq_decode(&t, 0, y) == QH_OK && y[3] == 3 && !y[0]
             && qh_pvq_decode(&t, 1, y) == QH_OK && y[3] == -3, "order: 0 first, + before -");
    uint64_t idx;
    int bad_y[4] = { 1, 1, 0, 0 };
    QH_CHECK(qh_pvq_encode(&t, bad_y, &idx) == QH_EINVAL && strstr(qh_last_error(), "K = 3"),
             "encode of a point off the pyramid refused: %s", qh_last_error());
    QH_CHECK(qh_pvq_decode(&t, qh_pvq_table_at(&t, 4, 3), y) == QH_EINVAL, "decode of index V refused");
    qh_pvq_table_free(&t);
}

static void random_point(qh_rng *r, unsigned N, unsigned K, int *y)
{
    memset(y, 0, N * sizeof *y);
    for (unsigned p = 0; p < K; p++) {
        unsigned i = (unsigned)qh_rng_below(r, N);
        if (y[i] == 0) y[i] = qh_rng_sign(r);
        else y[i] += y[i] > 0 ? 1 : -1;
    }
}

static void test_enumeration_random(void)
{
    static const unsigned sizes[][2] = { { 8, 36 }, { 16, 27 }, { 16, 58 } };
    size_t trials = qh_test_fast() ? 300 : 3000;
    qh_rng r = qh_rng_stream(3, 0, QH_RNG_TEST);
    for (size_t s = 0; s < 3; s++) {
        unsigned N = sizes[s][0], K = sizes[s][1];
        qh_pvq_table t;
        QH_CHECK(qh_pvq_table_init(&t, N, K) == QH_OK, "table (%u, %u)", N, K);
        uint64_t V = qh_pvq_table_at(&t, N, K);
        size_t bad = 0;
        int y[16], z[16];
        for (size_t k = 0; k < trials; k++) {
            uint64_t idx, idx2;
            random_point(&r, N, K, y);                    /* point → index → point */
            bad += qh_pvq_encode(&t, y, &idx) != QH_OK || idx >= V || qh_pvq_decode(&t, idx, z) != QH_OK
                   || memcmp(y, z, N * sizeof *y);
            idx = qh_rng_below(&r, V);                     /* index → point → index */
            bad += qh_pvq_decode(&t, idx, z) != QH_OK || qh_pvq_encode(&t, z, &idx2) != QH_OK || idx2 != idx;
        }
        bad += qh_pvq_decode(&t, V - 1, z) != QH_OK || qh_pvq_encode(&t, z, &V) != QH_OK;
        QH_CHECK(bad == 0, "random round trips N = %u, K = %u (V = %llu): %zu fail", N, K,
                 (unsigned long long)qh_pvq_table_at(&t, N, K), bad);
        qh_pvq_table_free(&t);
    }
}

/* ---- searches against brute force ------------------------------------------- */

static double cosine(const double *x, const int *y, unsigned N)
{
    double xy = 0, xx = 0, yy = 0;
    for (unsigned i = 0; i < N; i++) { xy += x[i] * y[i]; xx += x[i] * x[i]; yy += (double)y[i] * y[i]; }
    return xy / sqrt(xx * yy);
}

static void test_greedy_vs_brute(void)
{
    size_t cases = 300, optimal = 0, invalid = 0;
    qh_rng r = qh_rng_stream(5, 0, QH_RNG_TEST);
    int *pts = malloc(4 * 700 * sizeof *pts);
    for (size_t c = 0; c < cases; c++) {
        unsigned N = 2 + (unsigned)qh_rng_below(&r, 3), K = 1 + (unsigned)qh_rng_below(&r, 6);
        double x[4];
        int y[4];
        for (unsigned i = 0; i < N; i++) x[i] = qh_rng_normal(&r);
        qh_pvq_search(x, N, K, y);
        unsigned l1 = 0;
        for (unsigned i = 0; i < N; i++) {
            l1 += (unsigned)abs(y[i]);
            invalid += (y[i] > 0 && x[i] < 0) || (y[i] < 0 && x[i] > 0);
        }
        invalid += l1 != K;
        size_t np = list_pyramid(N, K, pts);
        double best = -2.0;
        for (size_t p = 0; p < np; p++) best = fmax(best, cosine(x, pts + p * N, N));
        optimal += cosine(x, y, N) >= best - 1e-12;
    }
    double frac = (double)optimal / (double)cases;
    QH_CHECK(invalid == 0, "greedy output on the pyramid with the signs of x (%zu violations)", invalid);
    QH_CHECK(frac >= 0.90, "greedy cosine-optimal in %zu / %zu cases (%.1f %%, need >= 90 %%)", optimal, cases,
             100.0 * frac);
    QH_NOTE("greedy pulse search cosine-optimal in %zu / %zu small cases (reference 291/300)", optimal, cases);

    /* Zero vector and K = 0. */
    double z[3] = { 0, 0, 0 };
    int y[3];
    qh_pvq_search(z, 3, 4, y);
    QH_CHECK(y[0] == 4 && y[1] == 0 && y[2] == 0, "x = 0: all pulses on coordinate 0");
    qh_pvq_search((double[]){ 1, -2, 3 }, 3, 0, y);
    QH_CHECK(!y[0] && !y[1] && !y[2], "K = 0: y = 0");
    free(pts);
}

/* f(y) = (w − gŷ)ᵀM(w − gŷ) − wᵀMw directly. */
static double hess_f(const double *w, const double *M, const int *y, unsigned N, double g)
{
    double yy = 0, f = 0;
    for (unsigned i = 0; i < N; i++) yy += (double)y[i] * y[i];
    double e[4], e0[4];
    for (unsigned i = 0; i < N; i++) { e[i] = w[i] - g * y[i] / sqrt(yy); e0[i] = w[i]; }
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < N; j++) f += M[i + j * N] * (e[i] * e[j] - e0[i] * e0[j]);
    return f;
}

static void test_hessian_search(void)
{
    size_t cases = 300, optimal = 0, beats_euclid = 0, worse_euclid = 0, bad_f = 0;
    qh_rng r = qh_rng_stream(6, 0, QH_RNG_TEST);
    int *pts = malloc(4 * 700 * sizeof *pts);
    for (size_t c = 0; c < cases; c++) {
        unsigned N = 2 + (unsigned)qh_rng_below(&r, 3), K = 1 + (unsigned)qh_rng_below(&r, 6);
        double w[4], A[16], M[16], scratch[8];
        for (unsigned i = 0; i < N; i++) w[i] = qh_rng_normal(&r);
        for (unsigned i = 0; i < N * N; i++) A[i] = qh_rng_normal(&r);
        for (unsigned i = 0; i < N; i++)                    /* M = AAᵀ + 0.1 I, correlated */
            for (unsigned j = 0; j < N; j++) {
                double s = i == j ? 0.1 : 0.0;
                for (unsigned k = 0; k < N; k++) s += A[i + k * N] * A[j + k * N];
                M[i + j * N] = s;
            }
        double nw = 0;
        for (unsigned i = 0; i < N; i++) nw += w[i] * w[i];
        double g = sqrt(nw);
        int y[4], ye[4];
        double f = qh_pvq_search_hessian(w, M, N, N, K, g, 4, y, scratch);
        bad_f += fabs(f - hess_f(w, M, y, N, g)) > 1e-9 * (1 + fabs(f));
        qh_pvq_search(w, N, K, ye);
        double fe = hess_f(w, M, ye, N, g);
        beats_euclid += f < fe - 1e-12;
        worse_euclid += f > fe + 1e-12;
        size_t np = list_pyramid(N, K, pts);
        double best = INFINITY;
        for (size_t p = 0; p < np; p++) best = fmin(best, hess_f(w, M, pts + p * N, N, g));
        optimal += f <= best + 1e-9 * (1 + fabs(best));
    }
    QH_CHECK(bad_f == 0, "Hessian search returns f(y) (%zu mismatches)", bad_f);
    QH_CHECK(optimal >= cases * 8 / 10, "Hessian search optimal in the H metric in %zu / %zu cases (need 80 %%)",
             optimal, cases);
    QH_CHECK(beats_euclid > worse_euclid, "Hessian search beats the Euclidean pulses in the H metric more often "
             "than it loses (%zu vs %zu)", beats_euclid, worse_euclid);
    QH_NOTE("Hessian search: optimal %zu / %zu; better than Euclidean greedy in %zu, worse in %zu", optimal, cases,
            beats_euclid, worse_euclid);
    free(pts);
}

/* ---- choice of K and amplitude levels --------------------------------------- */

static void test_choose_k(void)
{
    static const unsigned want[4][4] = { { 8, 6, 16, 36 }, { 16, 12, 27, 58 }, { 32, 22, 50, 105 },
                                         { 64, 43, 96, 199 } };
    static const double want_bits[3][3] = { { 1.84, 2.98, 3.99 }, { 1.98, 2.98, 3.98 }, { 1.97, 2.99, 3.99 } };
    for (int d = 0; d < 4; d++)
        for (int b = 0; b < 3; b++) {
            unsigned D = want[d][0], K = 0;
            int st = qh_pvq_choose_k(D, 2 + b, 0, &K);
            QH_CHECK(st == QH_OK && K == want[d][b + 1], "D = %u at %d bpw: K = %u (want %u)", D, 2 + b, K,
                     want[d][b + 1]);
            if (d < 3)          /* 0.01: the table prints 2.98 for 2.9748 (D = 16, K = 27) */
                QH_CHECK_CLOSE(qh_pvq_log2_count(D, K) / D, want_bits[d][b], 0.01, 0,
                               "D = %u, K = %u: %.4f shape bits per weight (table %.2f)", D, K,
                               qh_pvq_log2_count(D, K) / D, want_bits[d][b]);
        }
    unsigned K;
    QH_CHECK(qh_pvq_choose_k(8, 2, 4, &K) == QH_OK && K == 4, "D = 8, 2 bpw, 4 amplitude bits: K = %u (want 4)", K);
    QH_CHECK(qh_pvq_choose_k(8, 1, 8, &K) == QH_EINVAL && strstr(qh_last_error(), "D = 8"),
             "no K fits: %s", qh_last_error());
}

static void test_amp_levels(void)
{
    double lv[256];
    /* D = 2: share ~ Beta(1, b), quantile 1 − (1 − p)^{1/b}. */
    size_t n = 64;
    double b = (double)(n - 2) / 2.0, worst = 0.0;
    QH_CHECK(qh_pvq_amp_levels(2, n, 4, lv) == QH_OK, "levels D = 2");
    for (int l = 0; l < 16; l++) {
        double p = (l + 0.5) / 16.0, want = sqrt(1.0 - pow(1.0 - p, 1.0 / b));
        worst = fmax(worst, fabs(lv[l] - want));
    }
    QH_CHECK(worst < 1e-10, "Beta(1, %g) quantile levels, max error %.2g", b, worst);
    /* D = 8, n = 4096: ascending, in (0, 1), median share near D/n. */
    QH_CHECK(qh_pvq_amp_levels(8, 4096, 8, lv) == QH_OK, "levels D = 8, 8 bits");
    int asc = 1;
    for (int l = 1; l < 256; l++) asc &= lv[l] > lv[l - 1];
    QH_CHECK(asc && lv[0] > 0 && lv[255] < 1, "levels ascending in (0, 1)");
    QH_CHECK_CLOSE(lv[127] * lv[127], 8.0 / 4096.0, 0, 0.15, "median share %.5g near D/n = %.5g", lv[127] * lv[127],
                   8.0 / 4096.0);
    QH_CHECK(qh_pvq_amp_levels(8, 8, 2, lv) == QH_OK && lv[0] == 0.25 && lv[3] == 1.0, "n = D: uniform levels");
    QH_CHECK(qh_pvq_amp_levels(8, 60, 4, lv) == QH_EINVAL, "D not dividing n refused");
    QH_CHECK(qh_pvq_nearest_level((double[]){ 0.1, 0.2, 0.4 }, 3, 0.31) == 2
             && qh_pvq_nearest_level((double[]){ 0.1, 0.2, 0.4 }, 3, 0.29) == 1
             && qh_pvq_nearest_level((double[]){ 0.1, 0.2, 0.4 }, 3, -1) == 0
             && qh_pvq_nearest_level((double[]){ 0.1, 0.2, 0.4 }, 3, 9) == 2, "nearest level");
}

/* ---- the method row ----------------------------------------------------------- */

/* H = XᵀX/k with correlated columns of decaying scale (SPD for k ≥ n). */
static qh_matd *random_spd_H(size_t n, size_t k, uint32_t key)
{
    qh_rng r = qh_rng_stream(22, key, QH_RNG_TEST);
    double *X = malloc(k * n * sizeof *X);
    for (size_t i = 0; i < k; i++) {
        double f = qh_rng_normal(&r);
        for (size_t j = 0; j < n; j++) X[i + j * k] = qh_rng_normal(&r) * (0.3 + (double)((j * 7) % 11) / 5.0) + 0.8 * f;
    }
    qh_matd *H = qh_matd_alloc(n, n);
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++) {
            double s = 0.0;
            for (size_t i = 0; i < k; i++) s += X[i + a * k] * X[i + b * k];
            QH_AT(H, a, b) = s / (double)k;
        }
    free(X);
    return H;
}

static int run_pvq(const char *const *kv, const qh_matd *W, const qh_matd *H, int bits,
                   const qh_incoh_params *ip, qh_result *r)
{
    void *p = qh_method_params_new(&qh_method_pvq);
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(&qh_method_pvq, p, kv[0], kv[1]) != QH_OK)
            QH_CHECK(0, "pvq parameter %s = %s: %s", kv[0], kv[1], qh_last_error());
    qh_problem pb = { W, H, bits, 0, 0, "layers.0.fc1", NULL, NULL };
    int st = qh_quantize(&qh_method_pvq, p, &pb, ip, NULL, r);
    free(p);
    return st;
}

/* Every D-group of What is s_r·a_l·y/‖y‖: y = q·K/Σ|q| integral, ‖q‖/s_r a level. */
static size_t structure_violations(const qh_result *r, size_t D, unsigned K, const double *levels, size_t L)
{
    size_t bad = 0;
    for (size_t i = 0; i < r->rows; i++)
        for (size_t c0 = 0; c0 < r->cols; c0 += D) {
            double l1 = 0, l2 = 0;
            for (size_t j = 0; j < D; j++) {
                double q = QH_AT(r->What_proc, i, c0 + j);
                l1 += fabs(q);
                l2 += q * q;
            }
            for (size_t j = 0; j < D; j++) {
                double y = QH_AT(r->What_proc, i, c0 + j) * K / l1;
                bad += fabs(y - round(y)) > 1e-9;
            }
            double a = sqrt(l2) / r->row_scale[i];
            bad += fabs(a - levels[qh_pvq_nearest_level(levels, L, a)]) > 1e-12;
        }
    return bad;
}

static void test_method_structure(void)
{
    size_t m = 32, n = 64;
    qh_matd *W = fixture_gaussian_W(m, n, 21, 1, 0.0), *H = random_spd_H(n, 2 * n, 2);
    qh_result r;
    qh_result_init(&r);
    QH_CHECK(run_pvq(NULL, W, H, 2, NULL, &r) == QH_OK, "pvq defaults, 2 bits: %s", qh_last_error());
    unsigned K = 0;
    double nominal = 0, side = 0, lv[16];
    qh_pvq_params p;
    qh_method_params_default(&qh_method_pvq, &p);
    QH_CHECK(qh_pvq_bits(&p, 2, n, &K, &nominal, &side) == QH_OK && K == 4, "K = %u at 2 bits (want 4)", K);
    QH_CHECK_CLOSE(nominal, (log2(2816.0) + 4.0) / 8.0, 1e-12, 0, "nominal bits %.4f = (log2 V(8,4) + 4)/8", nominal);
    QH_CHECK(nominal <= 2.0 && side == 16.0 / 64.0, "within the budget; side 16/n");
    QH_CHECK(qh_pvq_amp_levels(8, n, 4, lv) == QH_OK, "levels");
    if (r.What_proc) {
        QH_CHECK(structure_violations(&r, 8, K, lv, 16) == 0, "every group is s*a_l*y/|y| on P(8, 4)");
        double rn = 0;
        for (size_t j = 0; j < n; j++) rn += QH_AT(W, 5, j) * QH_AT(W, 5, j);
        QH_CHECK(r.row_scale && !r.grid.step && r.n_iterations == 0, "row scales of their own, no grid");
        if (r.row_scale)
            QH_CHECK_CLOSE(r.row_scale[5], sqrt(rn), 0, 1.0 / 2048.0, "row scale is the FP16 row norm");
        QH_CHECK(!strcmp(r.order, "natural") && r.col_order[7] == 7 && r.damp_used == 0.01, "layout, damping");
        QH_NOTE("pvq 32x64 2 bits: K = %u, nominal %.4f + side %.4f bpw (driver reports %g + %g)", K, nominal,
                side, r.bits_nominal, r.bits_side);
    }
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void test_method_feedback(void)
{
    size_t m = 32, n = 64, draws = qh_test_fast() ? 2 : 6;
    for (int bits = 2; bits <= 3; bits++) {
        double loss[4] = { 0 };
        size_t ok = 0;
        static const char *const names[4] = { "plain PVQ", "Hessian search only", "GPTQ feedback",
                                              "feedback + Hessian search" };
        for (size_t d = 0; d < draws; d++) {
            qh_matd *W = fixture_gaussian_W(m, n, 21, (uint32_t)(10 + d), 0.0), *H = random_spd_H(n, 2 * n, (uint32_t)(20 + d));
            for (int v = 0; v < 4; v++) {
                const char *kv[] = { "feedback", v >= 2 ? "1" : "0", "hessian_search", v % 2 ? "1" : "0", NULL };
                qh_result r;
                qh_result_init(&r);
                if (run_pvq(kv, W, H, bits, NULL, &r) == QH_OK) { loss[v] += r.proxy_loss / draws; ok++; }
                qh_result_free(&r);
            }
            qh_matd_free(W);
            qh_matd_free(H);
        }
        QH_CHECK(ok == 4 * draws, "all variants run at %d bits", bits);
        QH_CHECK(loss[2] < loss[0] && loss[3] < loss[2] && loss[1] < loss[0],
                 "%d bits: feedback and Hessian search lower the proxy loss (%.4g plain, %.4g hess, %.4g fb, %.4g both)",
                 bits, loss[0], loss[1], loss[2], loss[3]);
        for (int v = 0; v < 4; v++) QH_NOTE("%d bits, mean proxy loss over %zu layers: %-26s %.5g", bits, draws, names[v], loss[v]);
        /* The scalar GPTQ row at the same nominal bits, for scale. */
        qh_matd *W = fixture_gaussian_W(m, n, 21, 10, 0.0), *H = random_spd_H(n, 2 * n, 20);
        qh_problem pb = { W, H, bits, 0, 0, "gptq", NULL, NULL };
        qh_result r;
        qh_result_init(&r);
        if (qh_method_find("gptq") && qh_quantize(qh_method_find("gptq"), NULL, &pb, NULL, NULL, &r) == QH_OK)
            QH_NOTE("%d bits, gptq (minmax per row, first layer only): %.5g", bits, r.proxy_loss);
        qh_result_free(&r);
        qh_matd_free(W);
        qh_matd_free(H);
    }
}

static size_t count_close(const qh_matd *A, const qh_matd *B, double rtol)
{
    size_t eq = 0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++)
            eq += fabs(QH_AT(A, i, j) - QH_AT(B, i, j)) <= rtol * fmax(fabs(QH_AT(A, i, j)), 1e-300) + 1e-300;
    return eq;
}

static void test_method_lazy_determinism_incoherence(void)
{
    size_t m = 24, n = 96;
    qh_matd *W = fixture_gaussian_W(m, n, 21, 31, 0.0), *H = random_spd_H(n, 2 * n, 32);
    qh_result a, b, c;
    qh_result_init(&a);
    qh_result_init(&b);
    qh_result_init(&c);
    const char *lazy[] = { "blocksize", "32", "group", "16", NULL }, *eager[] = { "blocksize", "1", "group", "16", NULL };
    int ok = run_pvq(lazy, W, H, 3, NULL, &a) == QH_OK && run_pvq(eager, W, H, 3, NULL, &b) == QH_OK
             && run_pvq(lazy, W, H, 3, NULL, &c) == QH_OK;
    QH_CHECK(ok, "D = 16 runs (lazy and eager panels): %s", qh_last_error());
    if (ok) {
        size_t agree = count_close(a.What, b.What, 1e-9);
        QH_CHECK(agree == m * n, "lazy panels == eager feedback up to 1e-9 (%zu / %zu)", agree, m * n);
        QH_CHECK_CLOSE(a.proxy_loss, b.proxy_loss, 0, 1e-9, "losses %.12g vs %.12g", a.proxy_loss, b.proxy_loss);
        QH_CHECK(!memcmp(a.What->data, c.What->data, m * n * sizeof(double)) && a.proxy_loss == c.proxy_loss,
                 "same inputs, identical bytes");
    }
    /* Through the driver's Hadamard incoherence: the proxy loss in the original basis agrees. */
    qh_incoh_params ip = { QH_INCOH_HADAMARD, 0, 5, 3, 0 };
    qh_result_free(&c);
    int st = run_pvq(NULL, W, H, 2, &ip, &c);
    QH_CHECK(st == QH_OK, "pvq with incoherence hadamard: %s", qh_last_error());
    if (st == QH_OK) {
        qh_matd *Hd = qh_matd_copy(H);
        double mean = qh_mean_diag(H), l = NAN;
        for (size_t i = 0; i < n; i++) QH_AT(Hd, i, i) += c.damp_used * mean;
        QH_CHECK(qh_lin_proxy_loss(W, c.What, Hd, &l) == QH_OK, "proxy in the original basis");
        QH_CHECK_CLOSE(l, c.proxy_loss, 0, 1e-8, "proxy in both bases %g vs %g", l, c.proxy_loss);
        QH_NOTE("pvq 24x96 2 bits with hadamard: proxy %.5g", c.proxy_loss);
        qh_matd_free(Hd);
    }
    qh_result_free(&a);
    qh_result_free(&b);
    qh_result_free(&c);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- an independent two-group reference -------------------------------------- */

/* x = A⁻¹ b for an SPD n x n A (n ≤ 8) by Gaussian elimination on a copy. */
static void spd_solve(const double *A, size_t n, double *b)
{
    double a[64];
    memcpy(a, A, n * n * sizeof *a);
    for (size_t k = 0; k < n; k++)
        for (size_t i = k + 1; i < n; i++) {
            double f = a[i + k * n] / a[k + k * n];
            for (size_t j = k; j < n; j++) a[i + j * n] -= f * a[k + j * n];
            b[i] -= f * b[k];
        }
    for (size_t i = n; i-- > 0;) {
        for (size_t j = i + 1; j < n; j++) b[i] -= a[i + j * n] * b[j];
        b[i] /= a[i + i * n];
    }
}

typedef struct { const double *levels; size_t L; unsigned K; double s; } ref_ctx;

/* The codeword of the row rule (pvq.c step 4) for target w in metric M (8 x 8). */
static void ref_group(const ref_ctx *c, const double *w, const double *M, double *q)
{
    int ys[2][8];
    double qs[2][8], f[2], nw = 0, scr[16];
    for (int i = 0; i < 8; i++) nw += w[i] * w[i];
    qh_pvq_search(w, 8, c->K, ys[0]);
    double g0 = c->s * c->levels[qh_pvq_nearest_level(c->levels, c->L, sqrt(nw) / c->s)];
    qh_pvq_search_hessian(w, M, 8, 8, c->K, g0, 4, ys[1], scr);
    for (int v = 0; v < 2; v++) {
        double yy = 0, A = 0, B = 0, u[8];
        for (int i = 0; i < 8; i++) yy += (double)ys[v][i] * ys[v][i];
        for (int i = 0; i < 8; i++) {
            u[i] = 0;
            for (int j = 0; j < 8; j++) u[i] += M[i + j * 8] * ys[v][j] / sqrt(yy);
        }
        for (int i = 0; i < 8; i++) { A += w[i] * u[i]; B += ys[v][i] / sqrt(yy) * u[i]; }
        double g = c->s * c->levels[qh_pvq_nearest_level(c->levels, c->L, A / B / c->s)];
        for (int i = 0; i < 8; i++) qs[v][i] = g * ys[v][i] / sqrt(yy);
        f[v] = g * g * B - 2 * g * A;
    }
    memcpy(q, qs[f[1] < f[0]], 8 * sizeof *q);
}

/* n = 16, D = 8: the first group is rounded in the metric of its Schur
 * complement S = H11 − H12 H22⁻¹ H21, the second group's target is
 * w2 + e1 H12 H22⁻¹ (the loss-optimal compensation), rounded in H22 — all from
 * the damped H directly, not from the Cholesky factor of H⁻¹ that pvq.c uses. */
static void test_method_two_groups(void)
{
    size_t m = 6, n = 16;
    qh_matd *W = fixture_gaussian_W(m, n, 21, 51, 0.0), *H = random_spd_H(n, 40, 52);
    qh_result r;
    qh_result_init(&r);
    const char *kv[] = { "hessian_search", "1", "feedback", "1", NULL };
    int st = run_pvq(kv, W, H, 3, NULL, &r);
    QH_CHECK(st == QH_OK, "pvq 6x16 runs: %s", qh_last_error());
    if (st != QH_OK) { qh_matd_free(W); qh_matd_free(H); return; }
    double H11[64], H22[64], T[64], S[64], lv[16];
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 8; i++) {
            H11[i + 8 * j] = QH_AT(r.H_proc, i, j);
            H22[i + 8 * j] = QH_AT(r.H_proc, 8 + i, 8 + j);
            T[i + 8 * j] = QH_AT(r.H_proc, 8 + i, j);       /* H21, then H22⁻¹ H21 */
        }
    for (int j = 0; j < 8; j++) spd_solve(H22, 8, T + 8 * j);
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 8; i++) {
            double s = H11[i + 8 * j];
            for (int k = 0; k < 8; k++) s -= QH_AT(r.H_proc, i, 8 + k) * T[k + 8 * j];
            S[i + 8 * j] = s;
        }
    qh_pvq_params p;
    qh_method_params_default(&qh_method_pvq, &p);
    unsigned K = 0;
    QH_CHECK(qh_pvq_bits(&p, 3, n, &K, NULL, NULL) == QH_OK && qh_pvq_amp_levels(8, n, 4, lv) == QH_OK, "K, levels");
    size_t agree = 0;
    for (size_t i = 0; i < m; i++) {
        ref_ctx c = { lv, 16, K, r.row_scale[i] };
        double w1[8], x2[8], q1[8], q2[8];
        for (int j = 0; j < 8; j++) { w1[j] = QH_AT(W, i, j); x2[j] = QH_AT(W, i, 8 + j); }
        ref_group(&c, w1, S, q1);
        for (int k = 0; k < 8; k++)                          /* x2 += (H22⁻¹ H21 e1ᵀ)ᵀ */
            for (int j = 0; j < 8; j++) x2[k] += T[k + 8 * j] * (w1[j] - q1[j]);
        ref_group(&c, x2, H22, q2);
        for (int j = 0; j < 8; j++) {
            agree += fabs(q1[j] - QH_AT(r.What_proc, i, j)) <= 1e-9 * (1 + fabs(q1[j]));
            agree += fabs(q2[j] - QH_AT(r.What_proc, i, 8 + j)) <= 1e-9 * (1 + fabs(q2[j]));
        }
    }
    QH_CHECK(agree == m * n, "two groups: metric and feedback from H directly reproduce pvq (%zu / %zu)", agree,
             m * n);
    qh_result_free(&r);
    /* A diagonal H has nothing to feed back: feedback on and off agree. */
    qh_matd *Hd = qh_matd_alloc(n, n);
    for (size_t k = 0; k < n; k++) QH_AT(Hd, k, k) = 0.5 + (double)k;
    qh_result a, b;
    qh_result_init(&a);
    qh_result_init(&b);
    const char *on[] = { "feedback", "1", NULL }, *off[] = { "feedback", "0", NULL };
    QH_CHECK(run_pvq(on, W, Hd, 3, NULL, &a) == QH_OK && run_pvq(off, W, Hd, 3, NULL, &b) == QH_OK
             && count_close(a.What, b.What, 1e-12) == m * n, "diagonal H: feedback on == off");
    qh_result_free(&a);
    qh_result_free(&b);
    qh_matd_free(Hd);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void expect(const char *const *kv, const qh_matd *W, const qh_matd *H, int bits, int want, const char *needle,
                   const char *what)
{
    qh_result r;
    qh_result_init(&r);
    int st = run_pvq(kv, W, H, bits, NULL, &r);
    QH_CHECK(st == want && strstr(qh_last_error(), needle), "%s: status %d (want %d): %s", what, st, want,
             qh_last_error());
    qh_result_free(&r);
}

static void test_method_bad_input(void)
{
    qh_matd *W = fixture_gaussian_W(4, 60, 21, 41, 0.0), *H = random_spd_H(60, 80, 42);
    expect(NULL, W, H, 2, QH_EINVAL, "D = 8 does not divide", "n = 60 with D = 8");
    qh_matd_free(W);
    qh_matd_free(H);
    W = fixture_gaussian_W(4, 64, 21, 43, 0.0);
    H = random_spd_H(64, 80, 44);
    expect((const char *const[]){ "group", "32", "pulses", "200", NULL }, W, H, 2, QH_EINVAL, "K = 200",
           "D = 32, K = 200 overflows");
    expect((const char *const[]){ "group", "32", NULL }, W, H, 3, QH_EINVAL, "N = 32", "D = 32 at 3 bits overflows");
    expect((const char *const[]){ "amp_bits", "8", NULL }, W, H, 1, QH_EINVAL, "no pulse count fits",
           "1 bit with 8 amplitude bits");
    expect(NULL, W, NULL, 2, QH_EINVAL, "needs a Hessian", "missing H");
    QH_AT(W, 2, 9) = NAN;
    expect(NULL, W, H, 2, QH_ENAN, "layers.0.fc1: W", "NaN in W");
    qh_matd_free(W);
    qh_matd_free(H);
}

int main(void)
{
    test_counting();
    test_enumeration_exhaustive();
    test_enumeration_random();
    test_greedy_vs_brute();
    test_hessian_search();
    test_choose_k();
    test_amp_levels();
    test_method_structure();
    test_method_feedback();
    test_method_lazy_determinism_incoherence();
    test_method_two_groups();
    test_method_bad_input();
    return qh_test_summary();
}
