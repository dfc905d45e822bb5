/* test_grid_clip.c -- the symmetric min-max grid and the MSE range search
 * (qh_grid.h sym, mse; rtn/gptq "sym", "clip").
 *
 * 1. Against a brute force written here: per row, the 80 shrunk ranges, each
 *    point set enumerated (2^b points), every weight sent to its nearest
 *    point by scanning, error sum |e|^2.4; the fitted (Δ, z) must be the
 *    brute force's argmin (1e-12 relative) and every rounded weight equal,
 *    for bits 2, 3, 4, 8, symmetric and asymmetric, ungrouped and groups of 16.
 * 2. Hand case: sym at 4 bits on a row with max|w| = 7 gives Δ = 1, points
 *    −8..7; mse never scores worse than the full range.
 * 3. rtn and gptq with sym + clip mse through qh_quantize: every row of
 *    rtn's Ŵ on the brute-force points; gptq's proxy loss below rtn's;
 *    sym/clip with grid=rms and sym at 1 bit refused by name.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gptq.h"
#include "qh_grid.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "rtn.h"

/* Brute force of one row (n values): the chosen step and zero. */
static void brute(const double *w, size_t n, int bits, int sym, int mse, double *step, double *zero)
{
    double lo = 0, hi = 0;
    for (size_t j = 0; j < n; j++) { lo = fmin(lo, w[j]); hi = fmax(hi, w[j]); }
    if (sym) { hi = fmax(-lo, hi); lo = -hi; }
    if (lo == 0 && hi == 0) { lo = -1; hi = 1; }
    double levels = pow(2, bits), best = INFINITY;
    int steps = mse ? 80 : 1;
    for (int i = 0; i < steps; i++) {
        double p = 1.0 - i / 100.0, d, z;
        if (sym) { d = p * hi / (levels / 2 - 1); z = levels / 2; }
        else { d = p * (hi - lo) / (levels - 1); z = nearbyint(-p * lo / d); }
        double err = 0;
        for (size_t j = 0; j < n; j++) {
            double e = INFINITY;
            for (double q = 0; q < levels; q++) e = fmin(e, fabs(d * (q - z) - w[j]));
            err += pow(e, 2.4);
        }
        if (err < best) { best = err; *step = d; *zero = z; }
    }
}

static double nearest(double x, double d, double z, int bits)
{
    double bestv = 0, e = INFINITY;
    for (double q = 0; q < pow(2, bits); q++)
        if (fabs(d * (q - z) - x) < e) { e = fabs(d * (q - z) - x); bestv = d * (q - z); }
    return bestv;
}

static void test_brute(void)
{
    size_t m = 6, n = 64;
    qh_matd *W = qh_matd_alloc(m, n);
    qh_rng r = qh_rng_stream(3, 0, QH_RNG_TEST);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            double v = qh_rng_normal(&r);
            QH_AT(W, i, j) = i == 2 && j == 5 ? 8.0 : i == 3 ? fabs(v) : v;   /* an outlier, a positive row */
        }
    const int bitss[] = { 2, 3, 4, 8 };
    int bad = 0, badq = 0, cases = 0;
    for (size_t b = 0; b < 4; b++)
        for (int sym = 0; sym < 2; sym++)
            for (int mse = 0; mse < 2; mse++)
                for (size_t group = 0; group <= 16; group += 16) {
                    qh_grid g;
                    if (qh_grid_init(&g, QH_GRID_MINMAX, bitss[b], 1, 1.0, m, n, group) != QH_OK) {
                        QH_CHECK(0, "init");
                        continue;
                    }
                    g.sym = sym;
                    g.mse = mse;
                    g.ties_even = 1;
                    for (size_t gi = 0; gi < g.n_groups; gi++) {
                        qh_grid_fit(&g, W, gi * g.group, g.group, gi);
                        for (size_t i = 0; i < m; i++) {
                            double row[64], d, z;
                            for (size_t j = 0; j < g.group; j++) row[j] = QH_AT(W, i, gi * g.group + j);
                            brute(row, g.group, bitss[b], sym, mse, &d, &z);
                            size_t k = i + gi * m;
                            bad += fabs(g.step[k] - d) > 1e-12 * d || g.zero[k] != z;
                            for (size_t j = 0; j < g.group; j++)
                                badq += fabs(qh_grid_round(&g, i, gi, row[j], 0.5) -
                                             nearest(row[j], d, z, bitss[b])) > 1e-12;
                            cases++;
                        }
                    }
                    qh_grid_free(&g);
                }
    QH_CHECK(bad == 0 && badq == 0, "fitted grids equal the brute force in %d row cases "
             "(%d grids, %d rounded weights differ)", cases, bad, badq);
    qh_matd_free(W);
}

static void test_hand(void)
{
    qh_matd *W = qh_matd_alloc(1, 8);
    const double v[8] = { -7, -3, 0, 0.5, 1, 2, 6.9, 7 };
    for (size_t j = 0; j < 8; j++) QH_AT(W, 0, j) = v[j];
    qh_grid g;
    QH_CHECK(qh_grid_init(&g, QH_GRID_MINMAX, 4, 1, 1.0, 1, 8, 0) == QH_OK, "init");
    g.sym = 1;
    qh_grid_fit(&g, W, 0, 8, 0);
    QH_CHECK(g.step[0] == 1.0 && g.zero[0] == 8.0 && qh_grid_round(&g, 0, 0, -9.0, 0.5) == -8.0 &&
             qh_grid_round(&g, 0, 0, 9.0, 0.5) == 7.0,
             "sym 4 bits, max|w| 7: step 1, zero 8, points -8..7 (%g, %g)", g.step[0], g.zero[0]);
    QH_CHECK(qh_grid_side_bits(&g, 8) == 16.0 / 8, "sym stores no zero: 16/group side bits");
    qh_grid_free(&g);
    qh_matd_free(W);
}

static qh_matd *rand_psd(size_t n, uint64_t seed)
{
    size_t T = 4 * n;
    qh_matd *X = qh_matd_alloc(n, T), *H = qh_matd_alloc(n, n);
    qh_rng r = qh_rng_stream(seed, 1, QH_RNG_TEST);
    for (size_t t = 0; t < T; t++) {              /* correlated inputs: a shared factor */
        double f = qh_rng_normal(&r);
        for (size_t i = 0; i < n; i++) QH_AT(X, i, t) = 0.3 * qh_rng_normal(&r) + f;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t t = 0; t < T; t++) s += QH_AT(X, i, t) * QH_AT(X, j, t);
            QH_AT(H, i, j) = s / (double)T;
        }
    qh_matd_free(X);
    return H;
}

static void test_methods(void)
{
    size_t m = 8, n = 32;
    qh_matd *W = qh_matd_alloc(m, n), *H = rand_psd(n, 4);
    qh_rng r = qh_rng_stream(4, 0, QH_RNG_TEST);
    for (size_t i = 0; i < m * n; i++) W->data[i] = qh_rng_normal(&r);
    qh_problem p = { W, H, 4, 0, 0, "test.W", NULL, NULL };
    const qh_method_type *rows[2] = { &qh_method_rtn, &qh_method_gptq };
    double loss[2] = { 0, 0 };
    for (int k = 0; k < 2; k++) {
        void *params = qh_method_params_new(rows[k]);
        int st = qh_method_params_set(rows[k], params, "sym", "true");
        if (st == QH_OK) st = qh_method_params_set(rows[k], params, "clip", "mse");
        qh_result res;
        qh_result_init(&res);
        if (st == QH_OK) st = qh_quantize(rows[k], params, &p, NULL, NULL, &res);
        QH_CHECK(st == QH_OK, "%s sym + clip mse: %s", rows[k]->name, st ? qh_last_error() : "");
        if (st == QH_OK && k == 0) {
            int bad = 0;
            for (size_t i = 0; i < m; i++) {
                double row[32], d, z;
                for (size_t j = 0; j < n; j++) row[j] = QH_AT(W, i, j);
                brute(row, n, 4, 1, 1, &d, &z);
                for (size_t j = 0; j < n; j++)
                    bad += fabs(QH_AT(res.What, i, j) - nearest(row[j], d, z, 4)) > 1e-12;
            }
            QH_CHECK(bad == 0, "rtn Ŵ on the brute-force points (%d differ)", bad);
        }
        loss[k] = res.proxy_loss;
        qh_result_free(&res);
        free(params);
    }
    QH_CHECK(loss[1] < loss[0], "gptq sym+mse proxy %.4g below rtn's %.4g", loss[1], loss[0]);
    void *params = qh_method_params_new(&qh_method_rtn);
    qh_result res;
    qh_result_init(&res);
    int st = qh_method_params_set(&qh_method_rtn, params, "grid", "rms");
    if (st == QH_OK) st = qh_method_params_set(&qh_method_rtn, params, "sym", "true");
    QH_CHECK(st == QH_OK && qh_quantize(&qh_method_rtn, params, &p, NULL, NULL, &res) == QH_EINVAL &&
             strstr(qh_last_error(), "minmax only"), "sym with grid=rms refused: %s", qh_last_error());
    qh_method_params_default(&qh_method_rtn, params);
    st = qh_method_params_set(&qh_method_rtn, params, "sym", "true");
    p.bits = 1;
    QH_CHECK(st == QH_OK && qh_quantize(&qh_method_rtn, params, &p, NULL, NULL, &res) == QH_EINVAL &&
             strstr(qh_last_error(), "bits >= 2"), "sym at 1 bit refused: %s", qh_last_error());
    qh_result_free(&res);
    free(params);
    qh_matd_free(W);
    qh_matd_free(H);
}

int main(void)
{
    test_brute();
    test_hand();
    test_methods();
    return qh_test_summary();
}
