/* test_metrics.c -- proxy loss, μ_H/μ_W, tr D (three equal forms), spectral
 * quantities, Lemma 2 on random PSD matrices, the §15 Kronecker-rotation
 * example (qualitatively), and hand-computed bounds for 2x2 and 3x3 cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_blas.h"
#include "qh_bounds.h"
#include "qh_hadamard.h"
#include "qh_incoherence.h"
#include "qh_metrics.h"
#include "qh_rng.h"
#include "qh_test.h"

static qh_matd *rand_mat(size_t r, size_t c, qh_rng *g)
{
    qh_matd *M = qh_matd_alloc(r, c);
    QH_ASSERT(M);
    for (size_t j = 0; j < c; j++)
        for (size_t i = 0; i < r; i++)
            QH_AT(M, i, j) = 2.385 * qh_rng_normal(g) - 0.7;
    return M;
}

/* H = diag(s) (X Xᵀ/k) diag(s) + eps I, s spread over `decades` decades. */
static qh_matd *rand_spd(size_t n, size_t k, double decades, double eps, qh_rng *g)
{
    qh_matd *X = qh_matd_alloc(n, k), *H = qh_matd_alloc(n, n);
    QH_ASSERT(X && H);
    for (size_t i = 0; i < n; i++) {
        double s = pow(10.0, decades * ((double)i / (double)(n > 1 ? n - 1 : 1) - 0.5));
        for (size_t j = 0; j < k; j++)
            QH_AT(X, i, j) = s * qh_rng_normal(g);
    }
    qh_dgemm('N', 'T', n, n, k, 1.0 / (double)k, X->data, n, X->data, n, 0.0, H->data, n);
    for (size_t i = 0; i < n; i++)
        QH_AT(H, i, i) += eps;
    qh_matd_free(X);
    return H;
}

/* Naive UDUᵀ (U unit upper) of H in natural order: from the last column back. */
static void naive_udu_diag(const qh_matd *H, double *D)
{
    size_t n = H->rows;
    double *A = malloc(n * n * sizeof *A);
    QH_ASSERT(A);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++)
            A[i + j * n] = QH_AT(H, i, j);
    for (size_t kk = n; kk-- > 0;) {  /* eliminate column kk from the leading block */
        D[kk] = A[kk + kk * n];
        for (size_t i = 0; i < kk; i++)
            for (size_t j = 0; j < kk; j++)
                A[i + j * n] -= A[i + kk * n] * A[kk + j * n] / D[kk];
    }
    free(A);
}

/* Naive inverse by Gauss–Jordan (SPD: no pivoting needed). */
static void naive_inverse(const qh_matd *H, double *Inv)
{
    size_t n = H->rows;
    double *A = malloc(n * n * sizeof *A);
    QH_ASSERT(A);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            A[i + j * n] = QH_AT(H, i, j);
            Inv[i + j * n] = i == j;
        }
    for (size_t k = 0; k < n; k++) {
        double p = A[k + k * n];
        for (size_t j = 0; j < n; j++) {
            A[k + j * n] /= p;
            Inv[k + j * n] /= p;
        }
        for (size_t i = 0; i < n; i++) {
            if (i == k)
                continue;
            double f = A[i + k * n];
            for (size_t j = 0; j < n; j++) {
                A[i + j * n] -= f * A[k + j * n];
                Inv[i + j * n] -= f * Inv[k + j * n];
            }
        }
    }
    free(A);
}

static double bound_of(const qh_bound_list *L, const char *name)
{
    const qh_bound *b = qh_bounds_find(L, name);
    return b ? b->value : NAN;
}

/* Naive UDUᵀ with the unit upper factor: H = (U+I) D (U+I)ᵀ, U strictly upper (n x n). */
static void naive_udu(const qh_matd *H, double *U, double *D)
{
    size_t n = H->rows;
    double *A = malloc(n * n * sizeof *A);
    QH_ASSERT(A);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            A[i + j * n] = QH_AT(H, i, j);
            U[i + j * n] = 0.0;
        }
    for (size_t kk = n; kk-- > 0;) {
        D[kk] = A[kk + kk * n];
        for (size_t i = 0; i < kk; i++)
            U[i + kk * n] = A[i + kk * n] / D[kk];
        for (size_t i = 0; i < kk; i++)
            for (size_t j = 0; j < kk; j++)
                A[i + j * n] -= A[i + kk * n] * A[kk + j * n] / D[kk];
    }
    free(A);
}

/* Forward LDLQ on the integer grid without clamping: column k is rounded after
 * adding Σ_{j<k} (W − Ŵ)_j U_jk; stochastic: round up with probability frac. */
static void ldlq_round(const qh_matd *W, const double *U, int use_U, int stochastic, qh_rng *g, qh_matd *What)
{
    size_t m = W->rows, n = W->cols;
    for (size_t k = 0; k < n; k++)
        for (size_t r = 0; r < m; r++) {
            double x = QH_AT(W, r, k);
            for (size_t j = 0; use_U && j < k; j++)
                x += (QH_AT(W, r, j) - QH_AT(What, r, j)) * U[j + k * n];
            double f = floor(x);
            QH_AT(What, r, k) = stochastic ? f + (qh_rng_uniform(g) < x - f) : floor(x + 0.5);
        }
}

/* Thm 1 and the U = 0 rows of §15 by Monte Carlo: W ~ U[0,1]^{m x n}, step 1.
 * Means within 3 % of (m/12) tr D, (m/12) tr H, (m/6) tr D, (m/6) tr H (the
 * relative standard error is about 0.3 %, 0.6 % in the fast run), and every
 * nearest-LDLQ trial below (m/4) tr D. */
static void test_thm1_monte_carlo(void)
{
    size_t m = 32, n = 24, draws = qh_test_fast() ? 30 : 100;
    qh_rng g = qh_rng_stream(12, 0, QH_RNG_TEST);
    qh_matd *H = rand_spd(n, 2 * n, 2.0, 0.05, &g);
    qh_matd *W = qh_matd_alloc(m, n), *Wq = qh_matd_alloc(m, n);
    double *U = malloc(n * n * sizeof *U), *D = malloc(n * sizeof *D);
    QH_ASSERT(W && Wq && U && D);
    naive_udu(H, U, D);
    qh_bound_inputs in;
    QH_CHECK(qh_bound_inputs_from_H(&in, m, H, NULL) == QH_OK, "inputs");
    in.delta = 1.0;
    qh_bound_list L;
    QH_CHECK(qh_bounds_compute(&in, &L) == QH_OK, "bounds");
    static const char *names[4] = { "thm1_ldlq_avg_nearest", "nearest_avg", "thm1_ldlq_avg_stochastic",
                                    "stochastic_avg" };
    double mean[4] = { 0 }, worst_ratio = 0.0;
    for (size_t d = 0; d < draws; d++) {
        for (size_t k = 0; k < m * n; k++)
            W->data[k] = qh_rng_uniform(&g);
        for (int v = 0; v < 4; v++) {
            double l = 0.0;
            ldlq_round(W, U, v == 0 || v == 2, v >= 2, &g, Wq);
            QH_CHECK(qh_proxy_loss(W, Wq, H, &l) == QH_OK, "proxy");
            mean[v] += l / (double)draws;
            if (v == 0)
                worst_ratio = fmax(worst_ratio, l / bound_of(&L, "thm1_ldlq_worst"));
        }
    }
    for (int v = 0; v < 4; v++) {
        double b = bound_of(&L, names[v]);
        QH_NOTE("Monte Carlo %s: mean %.3f vs %.3f (ratio %.4f)", names[v], mean[v], b, mean[v] / b);
        QH_CHECK_CLOSE(mean[v], b, 0.0, 0.03, "%s: mean loss %g vs prediction %g", names[v], mean[v], b);
    }
    QH_CHECK(worst_ratio <= 1.0, "every LDLQ trial <= (m/4) tr D (max ratio %.3f)", worst_ratio);
    QH_CHECK(in.tr_D < in.tr_H, "tr D %g < tr H %g", in.tr_D, in.tr_H);
    free(U);
    free(D);
    qh_matd_free(W);
    qh_matd_free(Wq);
    qh_matd_free(H);
}

static void test_proxy(void)
{
    qh_rng g = qh_rng_stream(1, 0, QH_RNG_TEST);
    size_t m = 7, n = 5;
    qh_matd *big = rand_mat(m + 3, n + 2, &g);   /* views with ld > rows */
    qh_matd *Wh = rand_mat(m, n, &g), *H = rand_spd(n, 9, 1.0, 0.1, &g);
    qh_matd W = qh_matd_view(big, 2, 1, m, n);
    double naive = 0.0, nrm = 0.0;
    for (size_t r = 0; r < m; r++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                naive += (QH_AT(Wh, r, i) - QH_AT(&W, r, i)) * QH_AT(H, i, j) * (QH_AT(Wh, r, j) - QH_AT(&W, r, j));
                nrm += QH_AT(&W, r, i) * QH_AT(H, i, j) * QH_AT(&W, r, j);
            }
    double l = 0.0, ln = 0.0;
    QH_CHECK(qh_proxy_loss(&W, Wh, H, &l) == QH_OK, "proxy");
    QH_CHECK(qh_proxy_norm(&W, H, &ln) == QH_OK, "proxy norm");
    QH_CHECK_CLOSE(l, naive, 0.0, 1e-12, "proxy %.15g vs naive triple loop %.15g", l, naive);
    QH_CHECK_CLOSE(ln, nrm, 0.0, 1e-12, "tr(W H W^T) %.15g vs naive %.15g", ln, nrm);
    qh_matd *Hb = qh_matd_alloc(n + 1, n + 1);
    QH_CHECK(qh_proxy_loss(&W, Wh, Hb, &l) == QH_EBADLEN && strstr(qh_last_error(), "expected 5x5"),
             "mismatched H: %s", qh_last_error());
    QH_CHECK(qh_proxy_loss(&W, Wh, NULL, &l) == QH_EINVAL, "NULL H");
    /* μ_W: max/RMS */
    qh_matd *A = qh_matd_alloc(2, 2);
    QH_AT(A, 0, 0) = 3.0;
    QH_AT(A, 1, 1) = 4.0;                        /* ‖A‖_F = 5, max 4, √(mn) = 2 */
    QH_CHECK_CLOSE(qh_mu_W(A), 1.6, 0.0, 1e-15, "mu_W = 4*2/5");
    qh_matd_free(A);
    qh_matd_free(Hb);
    qh_matd_free(big);
    qh_matd_free(Wh);
    qh_matd_free(H);
}

static void test_spectrum(void)
{
    size_t n = 16;
    qh_matd *H = qh_matd_alloc(n, n);
    for (size_t i = 0; i < n; i++)
        QH_AT(H, i, i) = 1.0 + (double)i;
    qh_spectrum s;
    QH_CHECK(qh_spectrum_compute(H, &s) == QH_OK, "spectrum diag");
    QH_CHECK_CLOSE(s.mu_H, 4.0, 0.0, 1e-14, "mu_H of a diagonal H = sqrt(n)");
    double sq = 0.0;
    for (size_t i = 0; i < n; i++)
        sq += sqrt(1.0 + (double)i);
    QH_CHECK_CLOSE(s.tr_sqrtH_sq, sq * sq, 0.0, 1e-13, "tr(H^1/2)^2");
    QH_CHECK_CLOSE(s.tr_H, 136.0, 0.0, 1e-15, "tr H");
    QH_CHECK_CLOSE(s.cond, 16.0, 0.0, 1e-13, "cond");
    QH_CHECK(s.rank == n, "rank %zu", s.rank);

    /* rotated by the normalized Hadamard 𝐇_16 (entries ±1/4): μ_H = 4·(1/4) = 1 */
    double *Q = malloc(n * n * sizeof *Q), *T = malloc(n * n * sizeof *T);
    QH_ASSERT(Q && T);
    QH_CHECK(qh_hadamard_dense(n, Q) == QH_OK, "dense 16");
    for (size_t k = 0; k < n * n; k++)
        Q[k] *= 0.25;
    qh_dgemm('N', 'N', n, n, n, 1.0, Q, n, H->data, n, 0.0, T, n);
    qh_matd *Hr = qh_matd_alloc(n, n);
    qh_dgemm('N', 'T', n, n, n, 1.0, T, n, Q, n, 0.0, Hr->data, n);
    QH_CHECK(qh_spectrum_compute(Hr, &s) == QH_OK, "spectrum rotated");
    QH_CHECK_CLOSE(s.mu_H, 1.0, 0.0, 1e-12, "mu_H of Hadamard-rotated H = 1 (got %.15g)", s.mu_H);
    QH_CHECK_CLOSE(s.tr_H, 136.0, 0.0, 1e-12, "tr H rotation-invariant");

    /* rank-deficient PSD: X Xᵀ with X 16 x 5 */
    qh_rng g = qh_rng_stream(2, 0, QH_RNG_TEST);
    qh_matd *X = rand_mat(n, 5, &g);
    qh_dgemm('N', 'T', n, n, 5, 1.0, X->data, n, X->data, n, 0.0, Hr->data, n);
    QH_CHECK(qh_spectrum_compute(Hr, &s) == QH_OK, "spectrum rank 5");
    QH_CHECK(s.rank == 5, "numerical rank of X X^T = 5 (got %zu)", s.rank);
    QH_CHECK(isinf(s.cond) || s.cond > 1e12, "singular: cond %g", s.cond);
    double trd;
    QH_CHECK(qh_ldl_diag(Hr, NULL, NULL, &trd) == QH_ENOTPD, "LDL of a singular H: ENOTPD (%s)", qh_last_error());
    QH_AT(Hr, 3, 3) = NAN;
    QH_CHECK(qh_spectrum_compute(Hr, &s) == QH_ENAN, "NaN H refused");
    free(Q);
    free(T);
    qh_matd_free(X);
    qh_matd_free(H);
    qh_matd_free(Hr);
}

static void test_ldl(void)
{
    qh_rng g = qh_rng_stream(3, 0, QH_RNG_TEST);
    static const size_t ns[] = { 1, 2, 5, 17, 48 };
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        size_t n = ns[t];
        qh_matd *H = rand_spd(n, n + 4, 2.0, 0.01, &g);
        double *D = malloc(n * sizeof *D), *Dn = malloc(n * sizeof *Dn), *Inv = malloc(n * n * sizeof *Inv);
        double trd = 0.0;
        QH_ASSERT(D && Dn && Inv);
        QH_CHECK(qh_ldl_diag(H, NULL, D, &trd) == QH_OK, "ldl n=%zu", n);
        naive_udu_diag(H, Dn);
        double e = 0.0, s = 0.0;
        for (size_t k = 0; k < n; k++) {
            e = fmax(e, fabs(D[k] - Dn[k]) / Dn[k]);
            s += Dn[k];
        }
        QH_CHECK(e < 1e-10, "n=%zu: D vs naive UDU^T (max rel err %g)", n, e);
        QH_CHECK_CLOSE(trd, s, 0.0, 1e-10, "n=%zu: tr D", n);
        /* form (b): D_k = 1/Hinv_kk² with Hinv = upper Cholesky of H⁻¹, Hinv_kk² = Schur of H⁻¹ on 0..k */
        naive_inverse(H, Inv);
        double *C = malloc(n * n * sizeof *C);
        QH_ASSERT(C);
        memcpy(C, Inv, n * n * sizeof *C);
        double sb = 0.0;
        for (size_t k = 0; k < n; k++) {   /* naive upper Cholesky RᵀR: pivot k of the Schur complement */
            double rkk2 = C[k + k * n];
            sb += 1.0 / rkk2;
            for (size_t i = k + 1; i < n; i++)
                for (size_t j = k + 1; j < n; j++)
                    C[i + j * n] -= C[i + k * n] * C[k + j * n] / rkk2;
        }
        QH_CHECK_CLOSE(trd, sb, 0.0, 1e-8, "n=%zu: tr D %.12g = sum 1/Hinv_kk^2 %.12g", n, trd, sb);
        /* form (c) for the first column: Schur complement w.r.t. all later = 1/(H⁻¹)_00 */
        QH_CHECK_CLOSE(D[0], 1.0 / Inv[0], 0.0, 1e-9, "n=%zu: D_0 = 1/(H^-1)_00", n);
        QH_CHECK_CLOSE(D[n - 1], QH_AT(H, n - 1, n - 1), 0.0, 1e-12, "n=%zu: D_last = H_last,last", n);
        /* a processing order: D of the permuted matrix */
        size_t *ord = malloc(n * sizeof *ord);
        for (size_t k = 0; k < n; k++)
            ord[k] = (k * 7 + 3) % n;        /* a permutation when gcd(7, n) = 1 */
        if (n % 7 != 0) {
            qh_matd *Hp = qh_matd_alloc(n, n);
            for (size_t j = 0; j < n; j++)
                for (size_t i = 0; i < n; i++)
                    QH_AT(Hp, i, j) = QH_AT(H, ord[i], ord[j]);
            naive_udu_diag(Hp, Dn);
            QH_CHECK(qh_ldl_diag(H, ord, D, &trd) == QH_OK, "ldl ordered");
            e = 0.0;
            for (size_t k = 0; k < n; k++)
                e = fmax(e, fabs(D[k] - Dn[k]) / Dn[k]);
            QH_CHECK(e < 1e-10, "n=%zu: ordered D vs naive on the permuted H (err %g)", n, e);
            qh_matd_free(Hp);
        }
        if (n >= 2) {
            ord[0] = ord[1];
            QH_CHECK(qh_ldl_diag(H, ord, D, &trd) == QH_EINVAL && strstr(qh_last_error(), "permutation"),
                     "bad order refused: %s", qh_last_error());
        }
        free(ord);
        free(C);
        free(D);
        free(Dn);
        free(Inv);
        qh_matd_free(H);
    }
}

/* Lemma 2: tr D ≤ (μ_H²/n) tr(H^{1/2})² on random PSD matrices; and tr D ≤ tr H. */
static void test_lemma2(void)
{
    qh_rng g = qh_rng_stream(4, 0, QH_RNG_TEST);
    int n_ok = 0, n_ok_h = 0, trials = 0;
    double worst = 0.0;
    for (size_t n = 3; n <= 40; n += 3)
        for (int rep = 0; rep < 3; rep++) {
            qh_matd *H = rand_spd(n, n / 2 + 1 + (size_t)rep * n, 1.0 * rep, 1e-3, &g);
            qh_spectrum s;
            double trd = 0.0;
            if (qh_spectrum_compute(H, &s) != QH_OK || qh_ldl_diag(H, NULL, NULL, &trd) != QH_OK) {
                qh_matd_free(H);
                continue;
            }
            double bound = s.mu_H * s.mu_H / (double)n * s.tr_sqrtH_sq;
            trials++;
            n_ok += trd <= bound * (1 + 1e-12);
            n_ok_h += trd <= s.tr_H * (1 + 1e-12);
            worst = fmax(worst, trd / bound);
            qh_matd_free(H);
        }
    QH_CHECK(trials == 39 && n_ok == trials, "Lemma 2 holds in %d of %d random PSD matrices (max ratio %.4f)", n_ok,
             trials, worst);
    QH_CHECK(n_ok_h == trials, "tr D <= tr H in %d of %d", n_ok_h, trials);
}

/* §15 example, qualitatively: one Kronecker Haar rotation of a badly scaled SPD H
 * (n = 48; butterfly factors 12 ⊗ 4 here, 6 ⊗ 8 in the reference) lowers μ_H and tr D. */
static void test_kron_example(void)
{
    qh_rng g = qh_rng_stream(15, 0, QH_RNG_TEST);
    size_t n = 48, m = 64;
    qh_matd *H = rand_spd(n, 2 * n, 2.0, 1e-2, &g), *W = rand_mat(m, n, &g);
    qh_matd *H0 = qh_matd_copy(H), *W0 = qh_matd_copy(W);
    qh_incoh_params p = { .kind = QH_INCOH_KRON, .seed = 0, .layer = 0 };
    qh_incoh_state *st = NULL;
    QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_OK, "kron 64x48");
    qh_processed_inputs proc = { W, NULL, H };
    qh_layer_metrics lm;
    QH_CHECK(qh_layer_metrics_compute(W0, NULL, H0, &proc, NULL, &lm) == QH_OK, "layer metrics: %s", qh_last_error());
    QH_NOTE("n=48 Kronecker rotation: mu_H %.2f -> %.2f, tr D %.2f -> %.2f, tr H %.4f -> %.4f", lm.orig.spec.mu_H,
            lm.proc.spec.mu_H, lm.orig.tr_D, lm.proc.tr_D, lm.orig.spec.tr_H, lm.proc.spec.tr_H);
    QH_CHECK(lm.proc.spec.mu_H < lm.orig.spec.mu_H, "mu_H drops");
    QH_CHECK(lm.proc.tr_D < lm.orig.tr_D, "tr D drops");
    QH_CHECK_CLOSE(lm.proc.spec.tr_H, lm.orig.spec.tr_H, 0.0, 1e-9, "tr H unchanged");
    QH_CHECK_CLOSE(lm.proc.spec.tr_sqrtH_sq, lm.orig.spec.tr_sqrtH_sq, 0.0, 1e-9, "tr(H^1/2)^2 unchanged");
    QH_CHECK_CLOSE(lm.proc.proxy_norm, lm.orig.proxy_norm, 0.0, 1e-9, "tr(W H W^T) unchanged");
    QH_CHECK(isnan(lm.orig.proxy) && lm.has_processed, "no What: proxy NAN");

    /* with a quantized Ŵ in the processed basis: both proxies equal */
    qh_matd *Wq = qh_matd_copy(W);
    for (size_t k = 0; k < m * n; k++)
        Wq->data[k] = 0.25 * round(4.0 * Wq->data[k]);
    qh_matd *Wq0 = qh_matd_copy(Wq);
    QH_CHECK(qh_incoh_invert(st, Wq0) == QH_OK, "invert");
    qh_processed_inputs proc2 = { W, Wq, H };
    QH_CHECK(qh_layer_metrics_compute(W0, Wq0, H0, &proc2, NULL, &lm) == QH_OK, "layer metrics 2");
    QH_CHECK_CLOSE(lm.orig.proxy, lm.proc.proxy, 0.0, 1e-9, "proxy %g (orig) = %g (processed)", lm.orig.proxy,
                   lm.proc.proxy);
    QH_CHECK(lm.proc.proxy_rel > 0 && lm.proc.proxy_rel < 0.1, "relative proxy %g", lm.proc.proxy_rel);
    qh_matd_free(Wq);
    qh_matd_free(Wq0);
    qh_incoh_state_free(st);
    qh_matd_free(H);
    qh_matd_free(W);
    qh_matd_free(H0);
    qh_matd_free(W0);
}

/* 2x2: H = [[2,1],[1,2]], m = 3, Δ = 0.5 (S = 0.75); tr D = 1.5 + 2 = 3.5, tr H = 4,
 * eigenvalues 3 and 1 with vectors (1,±1)/√2, so μ_H = 1, tr(H^1/2)² = 4 + 2√3. */
static void test_bounds_2x2(void)
{
    qh_matd *H = qh_matd_alloc(2, 2), *W = qh_matd_alloc(3, 2);
    QH_AT(H, 0, 0) = 2; QH_AT(H, 1, 1) = 2; QH_AT(H, 0, 1) = 1; QH_AT(H, 1, 0) = 1;
    for (size_t k = 0; k < 6; k++)
        W->data[k] = (double)k - 2.5;
    qh_layer_metrics lm;
    QH_CHECK(qh_layer_metrics_compute(W, NULL, H, NULL, NULL, &lm) == QH_OK, "metrics 2x2");
    QH_CHECK_CLOSE(lm.orig.tr_D, 3.5, 0.0, 1e-14, "tr D 2x2");
    QH_CHECK_CLOSE(lm.orig.spec.mu_H, 1.0, 0.0, 1e-14, "mu_H 2x2");
    qh_bound_inputs in;
    qh_bound_inputs_from_metrics(&in, 3, 2, &lm.orig);
    in.delta = 0.5;
    in.prob_delta = 0.5;
    qh_bound_list L;
    QH_CHECK(qh_bounds_compute(&in, &L) == QH_OK, "bounds 2x2");
    double t = 4.0 + 2.0 * sqrt(3.0);
    struct { const char *name; double want; } cases[] = {
        { "thm1_ldlq_worst", 0.65625 },        { "thm1_ldlq_avg_nearest", 0.21875 },
        { "thm1_ldlq_avg_stochastic", 0.4375 }, { "nearest_worst", 0.75 },
        { "nearest_avg", 0.25 },                { "stochastic_avg", 0.5 },
        { "lemma2_trD", t / 2.0 },              { "thm3_worst", 0.75 / 8.0 * t },
        { "thm3_avg_nearest", 0.75 / 24.0 * t }, { "thm3_avg_stochastic", 0.75 / 12.0 * t },
        { "rht_mu_H", sqrt(2.0 * log(16.0)) },  { "rht_mu_W", 2.0 * log(48.0) },
        { "thm3_worst_rht_mu", 0.75 * 2.0 * log(16.0) / 8.0 * t },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        QH_CHECK_CLOSE(bound_of(&L, cases[i].name), cases[i].want, 0.0, 1e-12, "2x2 %s = %.15g, want %.15g",
                       cases[i].name, bound_of(&L, cases[i].name), cases[i].want);
    QH_CHECK(lm.orig.tr_D <= bound_of(&L, "lemma2_trD"), "Lemma 2 holds on the 2x2");
    qh_bound_inputs in2;
    QH_CHECK(qh_bound_inputs_from_H(&in2, 3, H, NULL) == QH_OK && in2.tr_D == in.tr_D && in2.mu_H == in.mu_H
                 && in2.tr_sqrtH_sq == in.tr_sqrtH_sq && in2.n == 2,
             "inputs from H = inputs from metrics");
    size_t rev[2] = { 1, 0 };         /* symmetric case: the order does not change tr D */
    QH_CHECK(qh_bound_inputs_from_H(&in2, 3, H, rev) == QH_OK && fabs(in2.tr_D - 3.5) < 1e-14, "reverse order");
    const qh_bound *b = qh_bounds_find(&L, "thm1_ldlq_worst");
    QH_CHECK(b && b->applies_to == QH_BOUND_WORST && strcmp(qh_bound_kind_name(b->applies_to), "worst") == 0
                 && strstr(b->formula, "tr D"),
             "entry metadata");
    QH_CHECK(qh_bounds_find(&L, "quipsharp_blockldlq") == NULL, "no QuIP# bound without g, sigma^2");
    in.delta = 0.0;
    QH_CHECK(qh_bounds_compute(&in, &L) == QH_EINVAL && strstr(qh_last_error(), "step"), "no step refused: %s",
             qh_last_error());
    qh_matd_free(H);
    qh_matd_free(W);
}

/* 3x3: H = diag(1,4,9): tr D = tr H = 14, tr(H^1/2)² = 36, μ_H = √3; per-row
 * Δ = (1, 2, 0.5): S = 5.25. QuIP#: g = 8, σ² = 0.0912, Wscale = 2. */
static void test_bounds_3x3(void)
{
    qh_matd *H = qh_matd_alloc(3, 3), *W = qh_matd_alloc(3, 3);
    QH_AT(H, 0, 0) = 1; QH_AT(H, 1, 1) = 4; QH_AT(H, 2, 2) = 9;
    for (size_t k = 0; k < 9; k++)
        W->data[k] = 1.0 + (double)k;
    qh_layer_metrics lm;
    QH_CHECK(qh_layer_metrics_compute(W, NULL, H, NULL, NULL, &lm) == QH_OK, "metrics 3x3");
    qh_bound_inputs in;
    qh_bound_inputs_from_metrics(&in, 3, 3, &lm.orig);
    double dr[3] = { 1.0, 2.0, 0.5 };
    in.delta_rows = dr;
    in.g = 8;
    in.sigma2 = 0.0912;
    in.wscale = 2.0;
    qh_bound_list L;
    QH_CHECK(qh_bounds_compute(&in, &L) == QH_OK, "bounds 3x3");
    struct { const char *name; double want; } cases[] = {
        { "thm1_ldlq_worst", 18.375 }, { "thm1_ldlq_avg_nearest", 6.125 }, { "nearest_avg", 6.125 },
        { "stochastic_avg", 12.25 },   { "lemma2_trD", 36.0 },             { "thm3_worst", 47.25 },
        { "thm3_avg_nearest", 15.75 }, { "quipsharp_blockldlq", 315.1872 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        QH_CHECK_CLOSE(bound_of(&L, cases[i].name), cases[i].want, 0.0, 1e-12, "3x3 %s = %.15g, want %.15g",
                       cases[i].name, bound_of(&L, cases[i].name), cases[i].want);
    QH_CHECK(qh_bounds_find(&L, "rht_mu_H") == NULL, "no RHT mu without delta");
    dr[1] = NAN;
    QH_CHECK(qh_bounds_compute(&in, &L) == QH_EINVAL, "NaN per-row step refused: %s", qh_last_error());
    qh_matd_free(H);
    qh_matd_free(W);
}

/* The spectrum cache answers exactly what a fresh decomposition gives: the
 * same H bit for bit, H + sI within rounding of λ_max, and misses on any
 * other matrix (one changed off-diagonal entry, an uneven diagonal change). */
static void test_spectrum_cache(void)
{
    qh_rng g = qh_rng_stream(41, 0, QH_RNG_TEST);
    size_t n = 40;
    qh_matd *H = rand_spd(n, 60, 2.0, 1e-3, &g), *Hs = qh_matd_alloc(n, n), *Hx = qh_matd_alloc(n, n);
    QH_ASSERT(Hs && Hx);
    double shift = 0.37 * QH_AT(H, 0, 0);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            QH_AT(Hs, i, j) = QH_AT(H, i, j) + (i == j ? shift : 0.0);
            QH_AT(Hx, i, j) = QH_AT(H, i, j);
        }
    QH_AT(Hx, 3, 7) += 1e-9;
    QH_AT(Hx, 7, 3) += 1e-9;
    qh_spectrum_cache c;
    qh_spectrum_cache_init(&c);
    qh_spectrum fresh, cached;
    QH_CHECK(qh_spectrum_compute(H, &fresh) == QH_OK, "fresh spectrum");
    QH_CHECK(qh_spectrum_compute_cached(H, &c, 0, &cached) == QH_OK && c.misses == 1 && c.hits == 0,
             "first lookup decomposes (misses %zu)", c.misses);
    QH_CHECK(qh_spectrum_compute_cached(H, &c, 0, &cached) == QH_OK && c.hits == 1, "same H: a hit");
    QH_CHECK(memcmp(&fresh, &cached, sizeof fresh) == 0, "same H: identical summary");

    QH_CHECK(qh_spectrum_compute(Hs, &fresh) == QH_OK, "fresh spectrum of H + sI");
    QH_CHECK(qh_spectrum_compute_cached(Hs, &c, 1, &cached) == QH_OK && c.hits == 2,
             "H + sI: a hit from slot 0 (hits %zu)", c.hits);
    double scale = fresh.lambda_max;
    QH_CHECK_CLOSE(cached.lambda_min, fresh.lambda_min, 1e-12 * scale, 0, "H + sI: λ_min");
    QH_CHECK_CLOSE(cached.lambda_max, fresh.lambda_max, 1e-12 * scale, 0, "H + sI: λ_max");
    QH_CHECK_CLOSE(cached.tr_sqrtH_sq, fresh.tr_sqrtH_sq, 0, 1e-10, "H + sI: tr(H^1/2)^2");
    QH_CHECK_CLOSE(cached.tr_H, fresh.tr_H, 0, 1e-14, "H + sI: tr H");
    QH_CHECK_CLOSE(cached.cond, fresh.cond, 0, 1e-9, "H + sI: condition number");
    QH_CHECK(cached.rank == fresh.rank, "H + sI: rank %zu vs %zu", cached.rank, fresh.rank);
    QH_CHECK_CLOSE(cached.mu_H, fresh.mu_H, 0, 1e-6, "H + sI: mu_H (same eigenvectors)");

    size_t misses = c.misses;
    QH_CHECK(qh_spectrum_compute_cached(Hx, &c, 1, &cached) == QH_OK && c.misses == misses + 1,
             "one changed off-diagonal entry: a miss");
    QH_CHECK(qh_spectrum_compute(Hx, &fresh) == QH_OK && memcmp(&fresh, &cached, sizeof fresh) == 0,
             "a miss gives the fresh decomposition");
    QH_CHECK(qh_spectrum_compute_cached(H, &c, 0, &cached) == QH_OK && c.misses == misses + 1,
             "slot 0 kept H while slot 1 took the other matrix");
    QH_AT(Hs, 5, 5) += 1e-6 * shift;   /* uneven diagonal change: not a shift */
    QH_CHECK(qh_spectrum_compute_cached(Hs, &c, 1, &cached) == QH_OK && c.misses == misses + 2,
             "uneven diagonal change: a miss");
    QH_CHECK(qh_spectrum_compute_cached(H, &c, 2, &cached) == QH_EINVAL, "slot 2 refused");
    qh_error_clear();
    qh_spectrum_cache_free(&c);
    QH_CHECK(c.slot[0].H == NULL && c.hits == 0, "free empties the cache");
    qh_matd_free(H);
    qh_matd_free(Hs);
    qh_matd_free(Hx);
}

int main(void)
{
    test_proxy();
    test_spectrum();
    test_spectrum_cache();
    test_ldl();
    test_lemma2();
    test_kron_example();
    test_bounds_2x2();
    test_bounds_3x3();
    test_thm1_monte_carlo();
    return qh_test_summary();
}
