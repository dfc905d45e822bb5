/* test_lowrank.c -- the "lowrank" row (core/methods/lowrank.h).
 *
 * 1. Ŵ equals U_r Σ_r V_rᵀ of GSL's SVD entrywise (relative 1e-10 of ‖W‖),
 *    and ‖W − Ŵ‖_F² the discarded σ² (Eckart–Young's value).
 * 2. Eckart–Young optimality: 200 random rank-r matrices near Ŵ
 *    (Ŵ + small rank-r-preserving perturbations of both factors) all have
 *    a larger error.
 * 3. bits = 16 r (m + n)/(mn); r above min(m, n) is capped.
 * 4. hessian = 1 (damp 0 on a planted PD H) attains the proxy's rank-r
 *    minimum, the discarded σ² of W H^{1/2} (GSL on W·S, S from GSL's
 *    eigensolver), and is below plain's proxy; without H it is refused
 *    naming the key.
 */
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowrank.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

/* Singular values (descending) and, when U, V given, the vectors of A (m ≥ n). */
static void gsl_svd(const qh_matd *A, gsl_matrix *U, gsl_matrix *V, gsl_vector *s)
{
    size_t n = A->cols;
    gsl_vector *w = gsl_vector_alloc(n);
    for (size_t i = 0; i < A->rows; i++)
        for (size_t j = 0; j < n; j++) gsl_matrix_set(U, i, j, QH_AT(A, i, j));
    gsl_linalg_SV_decomp(U, V, s, w);
    gsl_vector_free(w);
}

static int run(const char *name, const char *const *kv, const qh_matd *W, const qh_matd *H,
               qh_result *r)
{
    const qh_method_type *t = qh_method_find(name);
    void *p = qh_method_params_new(t);
    int st = QH_OK;
    for (size_t i = 0; kv[i] && st == QH_OK; i += 2) st = qh_method_params_set(t, p, kv[i], kv[i + 1]);
    qh_problem pb = { W, H, 16, 0, 0, "layers.2.fc1", NULL, NULL };
    if (st == QH_OK) st = qh_quantize(t, p, &pb, NULL, NULL, r);
    free(p);
    return st;
}

static void test_svd(void)
{
    size_t m = 30, n = 20, rank = 5;
    qh_matd *W = fixture_gaussian_W(m, n, 1, 0, 0.0);
    gsl_matrix *U = gsl_matrix_alloc(m, n), *V = gsl_matrix_alloc(n, n);
    gsl_vector *s = gsl_vector_alloc(n);
    gsl_svd(W, U, V, s);
    qh_matd *Wr = qh_matd_alloc(m, n);
    double disc = 0;
    for (size_t k = rank; k < n; k++) disc += gsl_vector_get(s, k) * gsl_vector_get(s, k);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double a = 0;
            for (size_t k = 0; k < rank; k++)
                a += gsl_matrix_get(U, i, k) * gsl_vector_get(s, k) * gsl_matrix_get(V, j, k);
            QH_AT(Wr, i, j) = a;
        }
    qh_result r;
    qh_result_init(&r);
    const char *kv[] = { "rank", "5", NULL };
    QH_CHECK(run("lowrank", kv, W, NULL, &r) == QH_OK, "lowrank: %s", qh_last_error());
    double wn = fixture_frob_diff(W, NULL);
    QH_CHECK(fixture_frob_diff(r.What, Wr) < 1e-10 * wn, "W^ = U_r S_r V_r^T of GSL (diff %.2e)",
             fixture_frob_diff(r.What, Wr));
    double e = fixture_frob_diff(W, r.What);
    QH_CHECK_CLOSE(e * e, disc, 0, 1e-10, "||W - W^||^2 %.12g = discarded sigma^2 %.12g", e * e, disc);
    QH_CHECK_CLOSE(r.bits_nominal, 16.0 * 5 * (m + n) / (double)(m * n), 0, 1e-15,
                   "bits = 16 r (m+n)/(mn) = %.6g", r.bits_nominal);

    /* Eckart–Young: perturbed rank-r factorisations are worse */
    qh_rng g = qh_rng_stream(2, 0, QH_RNG_TEST);
    int worse = 0;
    for (int trial = 0; trial < 200; trial++) {
        double eps = 1e-2;
        qh_matd *B = qh_matd_alloc(m, n);
        double *a = malloc((m + n) * rank * sizeof *a);
        for (size_t k = 0; k < (m + n) * rank; k++) a[k] = eps * qh_rng_normal(&g);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double v = 0;
                for (size_t k = 0; k < rank; k++)
                    v += (gsl_matrix_get(U, i, k) * gsl_vector_get(s, k) + a[i + m * k])
                         * (gsl_matrix_get(V, j, k) + a[m * rank + j + n * k]);
                QH_AT(B, i, j) = v;
            }
        worse += fixture_frob_diff(W, B) > e;
        free(a);
        qh_matd_free(B);
    }
    QH_CHECK(worse == 200, "Eckart-Young: 200 of 200 perturbed rank-%zu matrices are worse (%d)", rank, worse);

    const char *kv2[] = { "rank", "100", NULL };
    QH_CHECK(run("lowrank", kv2, W, NULL, &r) == QH_OK && fixture_frob_diff(W, r.What) < 1e-12 * wn &&
             fabs(r.bits_nominal - 16.0 * 20 * (m + n) / (double)(m * n)) < 1e-12,
             "rank 100 capped at min(m, n) = 20: exact, bits %.4g", r.bits_nominal);
    qh_result_free(&r);
    gsl_matrix_free(U); gsl_matrix_free(V); gsl_vector_free(s);
    qh_matd_free(W); qh_matd_free(Wr);
}

static void test_hessian(void)
{
    size_t m = 24, n = 16, rank = 4, T = 100;
    qh_matd *W = fixture_gaussian_W(m, n, 3, 0, 0.0), *H = qh_matd_alloc(n, n);
    qh_matd *X = fixture_gaussian_W(n, T, 4, 0, 0.0);
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < T; t++) QH_AT(X, i, t) *= pow(10.0, -1.0 + 2.0 * (double)i / (double)(n - 1));
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double a = 0;
            for (size_t t = 0; t < T; t++) a += QH_AT(X, i, t) * QH_AT(X, j, t);
            QH_AT(H, i, j) = a / (double)T;
        }
    /* S = H^{1/2} by GSL's symmetric eigensolver; the rank-r proxy minimum */
    gsl_matrix *Hg = gsl_matrix_alloc(n, n), *Q = gsl_matrix_alloc(n, n);
    gsl_vector *lam = gsl_vector_alloc(n);
    gsl_eigen_symmv_workspace *ew = gsl_eigen_symmv_alloc(n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) gsl_matrix_set(Hg, i, j, QH_AT(H, i, j));
    gsl_eigen_symmv(Hg, lam, Q, ew);
    qh_matd *A = qh_matd_alloc(m, n);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double a = 0;
            for (size_t k = 0; k < n; k++) {
                double sk = 0;
                for (size_t l = 0; l < n; l++)
                    sk += gsl_matrix_get(Q, k, l) * sqrt(gsl_vector_get(lam, l)) * gsl_matrix_get(Q, j, l);
                a += QH_AT(W, i, k) * sk;
            }
            QH_AT(A, i, j) = a;
        }
    gsl_matrix *U = gsl_matrix_alloc(m, n), *V = gsl_matrix_alloc(n, n);
    gsl_vector *s = gsl_vector_alloc(n);
    gsl_svd(A, U, V, s);
    double want = 0;
    for (size_t k = rank; k < n; k++) want += gsl_vector_get(s, k) * gsl_vector_get(s, k);
    qh_result a, b;
    qh_result_init(&a);
    qh_result_init(&b);
    const char *plain[] = { "rank", "4", NULL }, *hess[] = { "rank", "4", "hessian", "1", "damp", "0", NULL };
    QH_CHECK(run("lowrank", plain, W, H, &a) == QH_OK && run("lowrank", hess, W, H, &b) == QH_OK,
             "plain and hessian: %s", qh_last_error());
    QH_CHECK_CLOSE(b.proxy_loss, want, 0, 1e-9, "hessian proxy %.10g = discarded sigma^2 of W H^1/2 %.10g",
                   b.proxy_loss, want);
    QH_CHECK(b.proxy_loss < a.proxy_loss, "hessian lowers the proxy: %.5g < %.5g", b.proxy_loss, a.proxy_loss);
    QH_NOTE("planted H: plain rank-4 proxy %.5g, hessian %.5g", a.proxy_loss, b.proxy_loss);
    qh_result c;
    qh_result_init(&c);
    const char *hess1[] = { "hessian", "1", NULL };
    QH_CHECK(run("lowrank", hess1, W, NULL, &c) == QH_EINVAL && strstr(qh_last_error(), "hessian"),
             "hessian without H refused naming the key: %s", qh_last_error());
    const char *bad[] = { "rank", "0", NULL };
    QH_CHECK(run("lowrank", bad, W, NULL, &c) == QH_ECONFIG && strstr(qh_last_error(), "rank"),
             "rank 0 refused: %s", qh_last_error());
    qh_result_free(&a); qh_result_free(&b); qh_result_free(&c);
    gsl_matrix_free(Hg); gsl_matrix_free(Q); gsl_vector_free(lam); gsl_eigen_symmv_free(ew);
    gsl_matrix_free(U); gsl_matrix_free(V); gsl_vector_free(s);
    qh_matd_free(W); qh_matd_free(H); qh_matd_free(X); qh_matd_free(A);
}

int main(void)
{
    test_svd();
    test_hessian();
    return qh_test_summary();
}
