/* test_mpo.c -- the MPO engine and the "mpo" row (core/methods/mpo.h).
 *
 * 1. Balanced factorisations of 256, 1000, 11008 and a prime.
 * 2. A matrix that is an exact MPO (random cores of bonds 2, 3 over three
 *    factor pairs) is reproduced by the TT-SVD at chi 3 to 1e-12 (relative
 *    Frobenius); chi = full rank reproduces a random W to 1e-12.
 * 3. K = 2: ‖W − Ŵ‖_F equals the square root of the discarded σ² of the
 *    rearranged matrix, computed here by GSL's SVD on an unfolding built from
 *    the index definition (relative 1e-10), and the engine's own discarded sum.
 * 4. Parameter count Σ χ_{k−1} I_k O_k χ_k and the bits the row reports
 *    (16·N/(mn); quantized cores b·N/(mn) + 32·Σχ_k/(mn)).
 * 5. Core gradients of ℓ = ½‖Ŵ − T‖² against central differences (K = 3,
 *    every core entry, relative 1e-7 of the largest gradient).
 * 6. proxy_steps lowers the proxy loss on a planted H with strongly unequal
 *    input scales; bad parameters and settings are refused naming the key.
 */
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpo.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

static double frob(const qh_matd *A)
{
    qh_matd *Z = qh_matd_alloc(A->rows, A->cols);
    double f = fixture_frob_diff(A, Z);
    qh_matd_free(Z);
    return f;
}

static void test_factors(void)
{
    size_t f[4];
    qh_mpo_balanced_factors(256, 2, f);
    QH_CHECK(f[0] == 16 && f[1] == 16, "256, K 2 = 16 x 16 (%zu %zu)", f[0], f[1]);
    qh_mpo_balanced_factors(4096, 4, f);
    QH_CHECK(f[0] == 8 && f[1] == 8 && f[2] == 8 && f[3] == 8, "4096, K 4 = 8^4");
    qh_mpo_balanced_factors(1000, 3, f);
    QH_CHECK(f[0] == 10 && f[1] == 10 && f[2] == 10, "1000, K 3 = 10^3");
    qh_mpo_balanced_factors(11008, 4, f);
    QH_CHECK(f[0] == 43 && f[1] == 8 && f[2] == 8 && f[3] == 4, "11008, K 4 = 43 8 8 4 (%zu %zu %zu %zu)",
             f[0], f[1], f[2], f[3]);
    qh_mpo_balanced_factors(11008, 2, f);
    QH_CHECK(f[0] == 128 && f[1] == 86, "11008, K 2 = 128 x 86 (%zu %zu)", f[0], f[1]);
    qh_mpo_balanced_factors(1009, 2, f);
    QH_CHECK(f[0] == 1009 && f[1] == 1, "prime 1009, K 2 = 1009 x 1");
}

/* A random MPO of the given shape and bonds, contracted. */
static qh_matd *planted(size_t K, const size_t *in, const size_t *out, const size_t *bond, qh_mpo *mpo)
{
    qh_rng r = qh_rng_stream(5, 0, QH_RNG_TEST);
    size_t m = 1, n = 1, count = 0;
    memset(mpo, 0, sizeof *mpo);
    mpo->K = K;
    for (size_t k = 0; k < K; k++) {
        m *= out[k]; n *= in[k];
        mpo->in[k] = in[k]; mpo->out[k] = out[k];
        count += bond[k] * in[k] * out[k] * bond[k + 1];
    }
    memcpy(mpo->bond, bond, (K + 1) * sizeof *bond);
    mpo->rows = m; mpo->cols = n; mpo->count = count;
    mpo->data = malloc(count * sizeof(double));
    for (size_t i = 0; i < count; i++) mpo->data[i] = qh_rng_normal(&r);
    for (size_t k = 0, at = 0; k < K; k++) {
        mpo->core[k] = mpo->data + at;
        at += bond[k] * in[k] * out[k] * bond[k + 1];
    }
    qh_matd *W = qh_matd_alloc(m, n);
    QH_CHECK(qh_mpo_contract(mpo, W) == QH_OK, "contract");
    return W;
}

static void test_exact(void)
{
    size_t in[3] = { 3, 2, 5 }, out[3] = { 2, 3, 4 }, bond[4] = { 1, 2, 3, 1 };
    qh_mpo src, got = { 0 };
    qh_matd *W = planted(3, in, out, bond, &src), *What = qh_matd_alloc(W->rows, W->cols);
    double disc = -1;
    int st = qh_mpo_decompose(W, 3, in, out, 3, 0.0, &got, &disc);
    QH_CHECK(st == QH_OK && qh_mpo_contract(&got, What) == QH_OK, "decompose: %s", qh_last_error());
    double e = fixture_frob_diff(W, What) / frob(W);
    QH_CHECK(e < 1e-12 && disc < 1e-24 * frob(W) * frob(W),
             "exact MPO of bonds (2, 3) reproduced at chi 3: error %.2e, discarded %.2e", e, disc);
    qh_matd_free(W);
    qh_matd_free(What);
    qh_mpo_free(&src);

    /* full rank: chi large reproduces a random W */
    W = fixture_gaussian_W(24, 30, 3, 0, 0.0);
    What = qh_matd_alloc(24, 30);
    st = qh_mpo_decompose(W, 3, in, out, 1000, 0.0, &got, &disc);
    QH_CHECK(st == QH_OK && qh_mpo_contract(&got, What) == QH_OK, "decompose full");
    e = fixture_frob_diff(W, What) / frob(W);
    QH_CHECK(e < 1e-12 && disc < 1e-20, "chi = full rank reproduces W (error %.2e, discarded %.2e)", e, disc);
    qh_mpo_free(&got);
    qh_matd_free(W);
    qh_matd_free(What);
}

/* K = 2: the unfolding B[(i1,o1), (i2,o2)] = W[o1 + O1 o2, i1 + I1 i2], from the definition. */
static void test_truncation_k2(void)
{
    size_t I1 = 4, I2 = 5, O1 = 3, O2 = 6, m = O1 * O2, n = I1 * I2;
    size_t in[2] = { I1, I2 }, out[2] = { O1, O2 }, P1 = I1 * O1, P2 = I2 * O2;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 0, 0.0), *What = qh_matd_alloc(m, n);
    /* GSL wants rows ≥ cols: B is P1 x P2 = 12 x 30, so decompose Bᵀ (30 x 12) */
    gsl_matrix *Bt = gsl_matrix_alloc(P2, P1), *V = gsl_matrix_alloc(P1, P1);
    gsl_vector *s = gsl_vector_alloc(P1), *work = gsl_vector_alloc(P1);
    for (size_t o1 = 0; o1 < O1; o1++)
        for (size_t o2 = 0; o2 < O2; o2++)
            for (size_t i1 = 0; i1 < I1; i1++)
                for (size_t i2 = 0; i2 < I2; i2++)
                    gsl_matrix_set(Bt, i2 + I2 * o2, i1 + I1 * o1, QH_AT(W, o1 + O1 * o2, i1 + I1 * i2));
    gsl_linalg_SV_decomp(Bt, V, s, work);
    for (int chi = 1; chi <= 12; chi += 3) {
        double want = 0, disc = 0;
        for (size_t j = (size_t)chi; j < P1; j++) want += gsl_vector_get(s, j) * gsl_vector_get(s, j);
        qh_mpo got = { 0 };
        int st = qh_mpo_decompose(W, 2, in, out, chi, 0.0, &got, &disc);
        QH_CHECK(st == QH_OK && qh_mpo_contract(&got, What) == QH_OK, "decompose K 2");
        double e = fixture_frob_diff(W, What);
        QH_CHECK_CLOSE(e, sqrt(want), 1e-12, 1e-10, "K 2 chi %d: ||W - W^||_F %.12g = sqrt(discarded sigma^2) "
                       "%.12g (GSL)", chi, e, sqrt(want));
        QH_CHECK_CLOSE(disc, want, 1e-20, 1e-10, "K 2 chi %d: engine's discarded sum %.12g", chi, disc);
        QH_CHECK(got.count == (size_t)chi * (P1 + P2), "K 2 chi %d: %zu parameters = chi (P1 + P2)", chi, got.count);
        qh_mpo_free(&got);
    }
    /* energy: the fewest σ reaching the fraction */
    double total = 0, cum = 0;
    for (size_t j = 0; j < P1; j++) total += gsl_vector_get(s, j) * gsl_vector_get(s, j);
    size_t want_r = 0;
    while (cum < 0.9 * total) { cum += gsl_vector_get(s, want_r) * gsl_vector_get(s, want_r); want_r++; }
    qh_mpo got = { 0 };
    QH_CHECK(qh_mpo_decompose(W, 2, in, out, 100, 0.9, &got, NULL) == QH_OK && got.bond[1] == want_r,
             "energy 0.9 keeps %zu singular values (got %zu)", want_r, got.bond[1]);
    qh_mpo_free(&got);
    gsl_matrix_free(Bt); gsl_matrix_free(V); gsl_vector_free(s); gsl_vector_free(work);
    qh_matd_free(W);
    qh_matd_free(What);
}

static void test_row_bits(void)
{
    const qh_method_type *t = qh_method_find("mpo");
    QH_CHECK(t != NULL, "mpo is registered");
    if (!t) return;
    size_t m = 24, n = 36;   /* K 3: 24 = 4 3 2 → sorted 4 3 2 ... */
    qh_matd *W = fixture_gaussian_W(m, n, 21, 0, 0.0);
    void *p = qh_method_params_new(t);
    QH_CHECK(qh_method_params_set(t, p, "chi", "4") == QH_OK && qh_method_params_set(t, p, "factors", "3") == QH_OK,
             "params");
    size_t fi[3], fo[3];
    qh_mpo_balanced_factors(n, 3, fi);
    qh_mpo_balanced_factors(m, 3, fo);
    qh_mpo ref = { 0 };
    QH_CHECK(qh_mpo_decompose(W, 3, fi, fo, 4, 0.0, &ref, NULL) == QH_OK, "reference decomposition");
    size_t N = 0;
    for (size_t k = 0; k < 3; k++) N += ref.bond[k] * fi[k] * fo[k] * ref.bond[k + 1];
    QH_CHECK(N == ref.count, "N = sum chi_{k-1} I_k O_k chi_k = %zu", N);
    qh_problem pb = { W, NULL, 16, 0, 0, "layers.0.q", NULL, NULL };
    qh_result r;
    qh_result_init(&r);
    QH_CHECK(qh_quantize(t, p, &pb, NULL, NULL, &r) == QH_OK, "mpo bits 16: %s", qh_last_error());
    QH_CHECK_CLOSE(r.bits_nominal, 16.0 * (double)N / (double)(m * n), 0, 1e-15,
                   "bits 16: %.6g bits per weight = 16 N/(mn)", r.bits_nominal);
    QH_CHECK(r.bits_side == 0 && r.grid.step == NULL && !strcmp(r.order, "natural"), "bits 16: no side bits, no grid");
    double e16 = fixture_frob_diff(W, r.What);
    pb.bits = 4;
    QH_CHECK(qh_quantize(t, p, &pb, NULL, NULL, &r) == QH_OK, "mpo bits 4");
    size_t cols = ref.bond[1] + ref.bond[2] + 1;
    QH_CHECK_CLOSE(r.bits_nominal, 4.0 * (double)N / (double)(m * n), 0, 1e-15, "bits 4: nominal 4 N/(mn)");
    QH_CHECK_CLOSE(r.bits_side, 32.0 * (double)cols / (double)(m * n), 0, 1e-15, "bits 4: side 32 sum chi_k/(mn)");
    double e4 = fixture_frob_diff(W, r.What);
    QH_CHECK(e4 > e16, "4-bit cores add error: %.4g > %.4g", e4, e16);
    pb.bits = 12;
    QH_CHECK(qh_quantize(t, p, &pb, NULL, NULL, &r) == QH_EINVAL && strstr(qh_last_error(), "bits = 12"),
             "bits 12 refused: %s", qh_last_error());
    pb.bits = 4;
    QH_CHECK(qh_method_params_set(t, p, "heal_steps", "5") == QH_OK, "heal_steps");
    QH_CHECK(qh_quantize(t, p, &pb, NULL, NULL, &r) == QH_EINVAL && strstr(qh_last_error(), "heal_steps"),
             "healing rounded cores refused naming heal_steps: %s", qh_last_error());
    QH_CHECK(qh_method_params_set(t, p, "chi", "0") == QH_ECONFIG && strstr(qh_last_error(), "chi"),
             "chi 0 refused: %s", qh_last_error());
    QH_CHECK(qh_method_params_set(t, p, "factors", "9") == QH_ECONFIG && strstr(qh_last_error(), "factors"),
             "factors 9 refused: %s", qh_last_error());
    QH_CHECK(qh_method_params_set(t, p, "energy", "1.5") == QH_ECONFIG && strstr(qh_last_error(), "energy"),
             "energy 1.5 refused: %s", qh_last_error());
    QH_CHECK(qh_method_params_set(t, p, "heal_steps", "0") == QH_OK &&
             qh_method_params_set(t, p, "proxy_steps", "3") == QH_OK, "proxy_steps");
    QH_CHECK(qh_quantize(t, p, &pb, NULL, NULL, &r) == QH_EINVAL && strstr(qh_last_error(), "proxy_steps"),
             "proxy_steps without H refused naming the key: %s", qh_last_error());
    qh_result_free(&r);
    qh_mpo_free(&ref);
    free(p);
    qh_matd_free(W);
}

static double half_sq(const qh_mpo *mpo, const qh_matd *T, qh_matd *What)
{
    if (qh_mpo_contract(mpo, What) != QH_OK) return NAN;
    double d = fixture_frob_diff(What, T);
    return 0.5 * d * d;
}

static void test_grad(void)
{
    size_t in[3] = { 3, 2, 4 }, out[3] = { 2, 3, 2 }, bond[4] = { 1, 3, 4, 1 };
    qh_mpo mpo;
    qh_matd *What = planted(3, in, out, bond, &mpo);
    qh_matd *T = fixture_gaussian_W(What->rows, What->cols, 31, 0, 0.0);
    qh_matd *G = qh_matd_alloc(What->rows, What->cols);
    half_sq(&mpo, T, What);
    for (size_t j = 0; j < T->cols; j++)
        for (size_t i = 0; i < T->rows; i++) QH_AT(G, i, j) = QH_AT(What, i, j) - QH_AT(T, i, j);
    double *g = malloc(mpo.count * sizeof *g), gmax = 0, worst = 0, h = 1e-6;
    QH_CHECK(qh_mpo_grad(&mpo, G, g) == QH_OK, "grad");
    for (size_t i = 0; i < mpo.count; i++) gmax = fmax(gmax, fabs(g[i]));
    for (size_t i = 0; i < mpo.count; i++) {
        double s = mpo.data[i];
        mpo.data[i] = s + h;
        double lp = half_sq(&mpo, T, What);
        mpo.data[i] = s - h;
        double lm = half_sq(&mpo, T, What);
        mpo.data[i] = s;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - g[i]) / gmax);
    }
    QH_CHECK(worst < 1e-7, "core gradients = central differences on all %zu entries (max error %.2e of max |g|)",
             mpo.count, worst);
    free(g);
    qh_mpo_free(&mpo);
    qh_matd_free(What); qh_matd_free(T); qh_matd_free(G);
}

static void test_proxy_steps(void)
{
    const qh_method_type *t = qh_method_find("mpo");
    size_t m = 32, n = 48;
    qh_matd *W = fixture_gaussian_W(m, n, 41, 0, 0.0), *H = qh_matd_alloc(n, n);
    qh_rng r = qh_rng_stream(42, 0, QH_RNG_TEST);
    /* H = X Xᵀ/T with channel scales 0.1 .. 10 */
    size_t T = 200;
    double *X = malloc(n * T * sizeof *X);
    for (size_t tt = 0; tt < T; tt++)
        for (size_t i = 0; i < n; i++) X[i + n * tt] = qh_rng_normal(&r) * pow(10.0, -1.0 + 2.0 * (double)i / (double)(n - 1));
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            for (size_t tt = 0; tt < T; tt++) s += X[i + n * tt] * X[j + n * tt];
            QH_AT(H, i, j) = s / (double)T;
        }
    void *p = qh_method_params_new(t);
    QH_CHECK(qh_method_params_set(t, p, "chi", "6") == QH_OK, "chi");
    qh_problem pb = { W, H, 16, 0, 0, "layers.0.fc1", NULL, NULL };
    qh_result a, b;
    qh_result_init(&a);
    qh_result_init(&b);
    QH_CHECK(qh_quantize(t, p, &pb, NULL, NULL, &a) == QH_OK, "plain");
    QH_CHECK(qh_method_params_set(t, p, "proxy_steps", "200") == QH_OK, "proxy_steps");
    QH_CHECK(qh_quantize(t, p, &pb, NULL, NULL, &b) == QH_OK, "proxy refined: %s", qh_last_error());
    QH_CHECK(b.proxy_loss < 0.8 * a.proxy_loss && b.bits_nominal == a.bits_nominal && b.n_iterations == 200,
             "proxy_steps 200 lowers the proxy %.5g -> %.5g at the same parameters", a.proxy_loss, b.proxy_loss);
    QH_NOTE("planted H: plain TT-SVD proxy %.5g, after 200 proxy steps %.5g", a.proxy_loss, b.proxy_loss);
    qh_result_free(&a);
    qh_result_free(&b);
    free(p);
    free(X);
    qh_matd_free(W);
    qh_matd_free(H);
}

int main(void)
{
    test_factors();
    test_exact();
    test_truncation_k2();
    test_row_bits();
    test_grad();
    test_proxy_steps();
    return qh_test_summary();
}
