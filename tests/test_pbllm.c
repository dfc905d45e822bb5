/* test_pbllm.c -- the PB-LLM row (core/methods/pbllm.h; methods reference §7):
 *   - bits: qh_pbllm_bits and the driver's fields against hand-computed values
 *     (small shape and the 4096² count 1.7 nominal, ≈2.71 with the raw mask);
 *   - the salient set is exactly the top salient_frac (brute-force sort with
 *     ties by index) for many fractions and tie-heavy metrics;
 *   - H diagonal (no feedback): the whole output equals an independent
 *     reference (mask by W²/diag(Hinv)², fixed μ, α, 8-bit row grid);
 *   - two-valued rows with equal counts are exact with fixed calibration;
 *     biased calibration averages the salient zeros in, as documented;
 *   - salient entries lie on the 8-bit grid; feedback lowers the proxy loss on
 *     a correlated H; blocksize does not change the result; determinism;
 *     bad input. */
#include "pbllm.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

#include <stdlib.h>
#include <string.h>

static qh_matd *random_W(size_t m, size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(31, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = qh_rng_normal(&r) + 0.2 * (double)(i % 3);
    return W;
}

/* H = X Xᵀ/T with correlated, unequally scaled inputs; SPD for T ≥ n. */
static qh_matd *random_H(size_t n, size_t T, uint32_t key)
{
    qh_rng r = qh_rng_stream(32, key, QH_RNG_TEST);
    qh_matd *X = qh_matd_alloc(n, T), *H = qh_matd_alloc(n, n);
    for (size_t t = 0; t < T; t++) {
        double common = qh_rng_normal(&r);
        for (size_t i = 0; i < n; i++)
            QH_AT(X, i, t) = (0.7 * common + qh_rng_normal(&r)) * (0.3 + (double)((i * 5) % 7) / 3.0);
    }
    qh_lin_dgemm('N', 'T', n, n, T, 1.0 / (double)T, X->data, X->ld, X->data, X->ld, 0.0, H->data, H->ld);
    qh_matd_free(X);
    return H;
}

static void *params_with(const char *const *kv)
{
    void *p = qh_method_params_new(&qh_method_pbllm);
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(&qh_method_pbllm, p, kv[0], kv[1]) != QH_OK)
            printf("note: %s\n", qh_last_error());
    return p;
}

static int run(const char *const *kv, const qh_matd *W, const qh_matd *H, int bits, qh_result *r)
{
    void *p = params_with(kv);
    qh_problem pb = { W, H, bits, 0, 0, "layers.0.fc1", NULL, NULL };
    int st = qh_quantize(&qh_method_pbllm, p, &pb, NULL, NULL, r);
    free(p);
    return st;
}

/* ---- bits ---------------------------------------------------------------------- */

static void test_bits(void)
{
    double nom, side;
    qh_pbllm_bits(1677722, 8, 4096, 4096, &nom, &side);     /* round(0.1 · 4096²) kept */
    QH_CHECK_CLOSE(nom, 1.7 + 7.0 * 0.4 / 16777216.0, 1e-12, 0, "4096²: nominal %.9f", nom);
    QH_CHECK_CLOSE(side, 1.0 + 56.0 / 4096.0, 1e-12, 0, "4096²: side 1 + 56/4096 (%.9f)", side);
    QH_NOTE("PB-LLM 4096^2: nominal %.6f, side %.6f, total %.6f", nom, side, nom + side);
    qh_pbllm_bits(0, 8, 4096, 4096, &nom, &side);            /* nothing salient: no mask, no grid */
    QH_CHECK(nom == 1.0 && fabs(side - 32.0 / 4096.0) < 1e-15, "no salient weights: nominal %g, side %g "
             "(want 1 and 32/4096)", nom, side);

    size_t m = 10, n = 20;                   /* 200 weights, 20 kept */
    qh_matd *W = random_W(m, n, 1), *H = random_H(n, 40, 1);
    qh_result r;
    qh_result_init(&r);
    QH_CHECK(run(NULL, W, H, 1, &r) == QH_OK, "runs: %s", qh_last_error());
    QH_CHECK_CLOSE(r.bits_nominal, 1.7, 1e-12, 0, "10x20: nominal 0.1*8 + 0.9 (%g)", r.bits_nominal);
    QH_CHECK_CLOSE(r.bits_side, 1.0 + 56.0 / 20.0, 1e-12, 0, "10x20: side 1 + (16*3 + 8)/20 (%g)", r.bits_side);
    QH_CHECK_CLOSE(r.bits_total, 1.7 + 3.8, 1e-12, 0, "10x20: total 5.5 (%g)", r.bits_total);
    const char *kv[] = { "salient_frac", "0.25", "high_bits", "4", NULL };
    QH_CHECK(run(kv, W, H, 1, &r) == QH_OK, "runs with 25 %% at 4 bits");
    QH_CHECK_CLOSE(r.bits_nominal, 0.25 * 4 + 0.75, 1e-12, 0, "25 %% at 4 bits: nominal 1.75 (%g)", r.bits_nominal);
    QH_CHECK_CLOSE(r.bits_side, 1.0 + 52.0 / 20.0, 1e-12, 0, "side 1 + 52/20 (%g)", r.bits_side);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- the salient set ------------------------------------------------------------ */

typedef struct { double v; size_t i; } keyed;

static int by_value_desc(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static void test_select_top(void)
{
    size_t count = 997, bad = 0, wrong_k = 0;
    double *met = malloc(count * sizeof *met), *scr = malloc(count * sizeof *scr);
    keyed *ref = malloc(count * sizeof *ref);
    uint8_t *mask = malloc(count), *want = malloc(count);
    qh_rng r = qh_rng_stream(33, 0, QH_RNG_TEST);
    static const double fracs[] = { 0, 0.001, 0.1, 0.25, 0.5, 0.9, 1.0 };
    for (int trial = 0; trial < 6; trial++)
        for (size_t f = 0; f < sizeof fracs / sizeof fracs[0]; f++) {
            for (size_t i = 0; i < count; i++)       /* trials 0-2: few levels, many ties */
                met[i] = trial < 3 ? (double)qh_rng_below(&r, 5 + 3 * (uint64_t)trial) : fabs(qh_rng_normal(&r));
            for (size_t i = 0; i < count; i++) ref[i] = (keyed){ met[i], i };
            qsort(ref, count, sizeof *ref, by_value_desc);
            size_t k = (size_t)floor(fracs[f] * (double)count + 0.5);
            memset(want, 0, count);
            for (size_t t = 0; t < k; t++) want[ref[t].i] = 1;
            size_t got = qh_pbllm_select_top(met, count, fracs[f], mask, scr);
            wrong_k += got != k;
            bad += memcmp(mask, want, count) != 0;
        }
    QH_CHECK(wrong_k == 0 && bad == 0, "select_top = brute-force top round(f*count), ties by index "
             "(%zu wrong counts, %zu wrong masks of 42)", wrong_k, bad);
    free(met); free(scr); free(ref); free(mask); free(want);
}

/* ---- an independent reference for diagonal H ------------------------------------- */

/* 8-bit per-row min-max grid of the full row (qh_grid.h MINMAX). */
static void row_grid(const qh_matd *W, size_t i, int bits, double *step, double *zero)
{
    double lo = 0.0, hi = 0.0, maxq = (double)((1 << bits) - 1);
    for (size_t j = 0; j < W->cols; j++) {
        lo = fmin(lo, QH_AT(W, i, j));
        hi = fmax(hi, QH_AT(W, i, j));
    }
    if (lo == 0.0 && hi == 0.0) { lo = -1.0; hi = 1.0; }
    *step = (hi - lo) / maxq;
    *zero = round(-lo / *step);
}

static double on_grid(double w, double step, double zero, int bits)
{
    double q = floor(fmin(fmax(w / step + zero, 0.0), (double)((1 << bits) - 1)) + 0.5);
    return step * (q - zero);
}

/* With H = diag(h), Hinv_jj = 1/sqrt(h_j + λ·mean h) and there is no feedback. */
static void test_diagonal_reference(void)
{
    size_t m = 12, n = 50, mn = m * n;
    qh_matd *W = random_W(m, n, 4), *H = qh_matd_alloc(n, n), *want = qh_matd_alloc(m, n);
    double mean_h = 0.0;
    for (size_t j = 0; j < n; j++) mean_h += (QH_AT(H, j, j) = 0.1 + (double)((j * 13) % 17));
    mean_h /= (double)n;
    keyed *ref = malloc(mn * sizeof *ref);
    uint8_t *sal = calloc(mn, 1);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            double w = QH_AT(W, i, j);
            ref[i + j * m] = (keyed){ w * w * (QH_AT(H, j, j) + 0.01 * mean_h), i + j * m };
        }
    qsort(ref, mn, sizeof *ref, by_value_desc);
    for (size_t t = 0; t < 60; t++) sal[ref[t].i] = 1;      /* 10 % of 600 */
    for (size_t i = 0; i < m; i++) {
        double step, zero, s = 0.0, a = 0.0;
        size_t c = 0;
        row_grid(W, i, 8, &step, &zero);
        for (size_t j = 0; j < n; j++)
            if (!sal[i + j * m]) { s += QH_AT(W, i, j); c++; }
        double mu = s / (double)c;
        for (size_t j = 0; j < n; j++)
            if (!sal[i + j * m]) a += fabs(QH_AT(W, i, j) - mu);
        double alpha = a / (double)c;
        for (size_t j = 0; j < n; j++) {
            double w = QH_AT(W, i, j);
            QH_AT(want, i, j) = sal[i + j * m] ? on_grid(w, step, zero, 8) : (w >= mu ? mu + alpha : mu - alpha);
        }
    }
    const char *kv[] = { "xnor_calibration", "fixed", "salient_metric", "hessian", NULL };
    qh_result r;
    qh_result_init(&r);
    QH_CHECK(run(kv, W, H, 1, &r) == QH_OK, "diagonal H runs: %s", qh_last_error());
    size_t eq = 0;
    for (size_t k = 0; k < mn; k++) eq += fabs(r.What->data[k] - want->data[k]) <= 1e-12 * (1 + fabs(want->data[k]));
    QH_CHECK(eq == mn, "diagonal H, hessian metric, fixed: What = independent reference (%zu/%zu)", eq, mn);
    qh_result_free(&r);
    free(ref); free(sal);
    qh_matd_free(W); qh_matd_free(H); qh_matd_free(want);
}

/* ---- two-valued rows, calibration switch, grid ---------------------------------- */

/* Row i: 4 outliers (±(20 + i + j/10)) at columns 3, 13, 23, 33 and the other
 * 36 entries alternating a_i, b_i (18 each). */
static qh_matd *two_valued(size_t m, size_t n)
{
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t i = 0; i < m; i++) {
        double a = 0.5 + 0.1 * (double)i, b = -1.3 + 0.05 * (double)i;
        size_t t = 0;
        for (size_t j = 0; j < n; j++) {
            if (j % 10 == 3) QH_AT(W, i, j) = (j % 20 == 3 ? 1.0 : -1.0) * (20.0 + (double)i + (double)j / 10.0);
            else QH_AT(W, i, j) = (t++ % 2) ? b : a;
        }
    }
    return W;
}

static void test_two_valued(void)
{
    size_t m = 8, n = 40;
    qh_matd *W = two_valued(m, n), *H = qh_matd_alloc(n, n);
    for (size_t j = 0; j < n; j++) QH_AT(H, j, j) = 1.0;
    qh_result fx, bi;
    qh_result_init(&fx);
    qh_result_init(&bi);
    const char *kfx[] = { "xnor_calibration", "fixed", "salient_metric", "magnitude", NULL };
    const char *kbi[] = { "xnor_calibration", "biased", "salient_metric", "magnitude", NULL };
    int ok = run(kfx, W, H, 1, &fx) == QH_OK && run(kbi, W, H, 1, &bi) == QH_OK;
    QH_CHECK(ok, "two-valued rows run: %s", qh_last_error());
    size_t exact = 0, low = 0, on = 0, sal = 0, biased_ok = 0;
    double max_biased_err = 0.0;
    for (size_t i = 0; ok && i < m; i++) {
        double step, zero, mu_b = 0.0, al_b = 0.0;
        row_grid(W, i, 8, &step, &zero);
        for (size_t j = 0; j < n; j++) mu_b += j % 10 == 3 ? 0.0 : QH_AT(W, i, j);
        mu_b /= (double)n;                   /* biased: salient zeros averaged in */
        for (size_t j = 0; j < n; j++) al_b += fabs((j % 10 == 3 ? 0.0 : QH_AT(W, i, j)) - mu_b);
        al_b /= (double)n;
        for (size_t j = 0; j < n; j++) {
            double w = QH_AT(W, i, j), q = QH_AT(fx.What, i, j), qb = QH_AT(bi.What, i, j);
            if (j % 10 == 3) {
                sal++;
                double u = q / step + zero;
                on += fabs(u - round(u)) < 1e-9 && u > -0.5 && u < 255.5 && fabs(q - w) <= 0.5 * step * (1 + 1e-12);
                continue;
            }
            low++;
            exact += fabs(q - w) <= 1e-12;
            double want_b = w >= mu_b ? mu_b + al_b : mu_b - al_b;
            biased_ok += fabs(qb - want_b) <= 1e-12;
            max_biased_err = fmax(max_biased_err, fabs(qb - w));
        }
    }
    QH_CHECK(exact == low && low == 36 * m, "fixed calibration: two values per row are exact (%zu/%zu)", exact, low);
    QH_CHECK(on == sal && sal == 4 * m, "salient outliers on the 8-bit grid within step/2 (%zu/%zu)", on, sal);
    QH_CHECK(biased_ok == low, "biased calibration: mu, alpha over W*mask with n = 40 (%zu/%zu)", biased_ok, low);
    QH_CHECK(max_biased_err > 0.05, "biased calibration is not exact (max error %.4f)", max_biased_err);
    QH_NOTE("two-valued rows: proxy fixed %.3g, biased %.3g", fx.proxy_loss, bi.proxy_loss);
    qh_result_free(&fx);
    qh_result_free(&bi);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- feedback, blocks, determinism, bad input ----------------------------------- */

static void test_feedback(void)
{
    size_t m = 32, n = 128;
    qh_matd *W = random_W(m, n, 5), *H = random_H(n, 300, 5);
    qh_result a, b, c, d;
    qh_result_init(&a); qh_result_init(&b); qh_result_init(&c); qh_result_init(&d);
    const char *fb[] = { "feedback", "1", NULL }, *nofb[] = { "feedback", "0", NULL };
    const char *blk[] = { "blocksize", "7", NULL };
    int ok = run(fb, W, H, 1, &a) == QH_OK && run(nofb, W, H, 1, &b) == QH_OK
             && run(blk, W, H, 1, &c) == QH_OK && run(fb, W, H, 1, &d) == QH_OK;
    QH_CHECK(ok, "random layer runs: %s", qh_last_error());
    QH_NOTE("PB-LLM %zux%zu correlated H: proxy with feedback %.4f, without %.4f (ratio %.3f); "
            "bits %.4f + %.4f = %.4f", m, n, a.proxy_loss, b.proxy_loss, a.proxy_loss / b.proxy_loss,
            a.bits_nominal, a.bits_side, a.bits_total);
    QH_CHECK(ok && a.proxy_loss < 0.9 * b.proxy_loss, "feedback lowers the proxy: %g < 0.9 * %g",
             a.proxy_loss, b.proxy_loss);
    QH_CHECK(ok && fabs(c.proxy_loss - a.proxy_loss) <= 1e-9 * a.proxy_loss,
             "blocksize 7 == 128 (%.12g vs %.12g)", c.proxy_loss, a.proxy_loss);
    QH_CHECK(ok && !memcmp(a.What->data, d.What->data, m * n * sizeof(double)), "deterministic: identical bytes");
    QH_CHECK(ok && a.grid.bits == 8 && a.grid.kind == QH_GRID_MINMAX && !strcmp(a.order, "natural")
             && a.damp_used > 0 && a.col_order[n - 1] == n - 1, "result fields: 8-bit grid, natural order, damping");
    qh_result_free(&a); qh_result_free(&b); qh_result_free(&c); qh_result_free(&d);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void test_bad_input(void)
{
    size_t m = 4, n = 10;
    qh_matd *W = random_W(m, n, 6), *H = random_H(n, 20, 6);
    qh_result r;
    qh_result_init(&r);
    int st = run(NULL, W, H, 2, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "bits = 2") && strstr(qh_last_error(), "layers.0.fc1")
             && strstr(qh_last_error(), "pbllm"),
             "bits 2 refused: %d %s", st, qh_last_error());
    st = run(NULL, W, NULL, 1, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "needs a Hessian"), "missing H: %s", qh_last_error());
    QH_AT(W, 1, 2) = NAN;
    st = run(NULL, W, H, 1, &r);
    QH_CHECK(st == QH_ENAN && strstr(qh_last_error(), "layers.0.fc1: W"), "NaN in W: %s", qh_last_error());
    void *p = qh_method_params_new(&qh_method_pbllm);
    QH_CHECK(qh_method_params_set(&qh_method_pbllm, p, "xnor_calibration", "exact") == QH_ECONFIG
             && strstr(qh_last_error(), "biased|fixed"), "bad enum: %s", qh_last_error());
    QH_CHECK(qh_method_params_set(&qh_method_pbllm, p, "high_bits", "9") == QH_ECONFIG, "high_bits 9 refused");
    free(p);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* Awkward shapes and a dead input (H_jj = 0; its binarized entries are μ ± α, not 0,
 * which is harmless since the input is always zero). */
static void test_small_shapes(void)
{
    static const size_t shapes[][2] = { { 1, 1 }, { 3, 5 }, { 7, 33 } };
    for (size_t s = 0; s < 3; s++) {
        size_t m = shapes[s][0], n = shapes[s][1];
        qh_matd *W = random_W(m, n, 70 + (uint32_t)s), *H = random_H(n, n + 4, 70 + (uint32_t)s);
        fixture_check_dead_input(&qh_method_pbllm, 1, W, H);
        qh_matd_free(W);
        qh_matd_free(H);
    }
}

int main(void)
{
    test_bits();
    test_select_top();
    test_diagonal_reference();
    test_two_valued();
    test_feedback();
    test_small_shapes();
    test_bad_input();
    return qh_test_summary();
}
