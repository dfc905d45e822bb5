/* test_incoherence.c -- Hadamard bases and FWHT, Kronecker/RHT incoherence
 * transforms: orthogonality, exact round trip, proxy invariance, D̃ rescale,
 * lower μ on coherent inputs, determinism, awkward sizes and error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_blas.h"
#include "qh_hadamard.h"
#include "qh_incoherence.h"
#include "qh_mat.h"
#include "qh_metrics.h"
#include "qh_rng.h"
#include "qh_test.h"

static qh_matd *rand_mat(size_t r, size_t c, qh_rng *g)
{
    qh_matd *M = qh_matd_alloc(r, c);
    QH_ASSERT(M);
    for (size_t j = 0; j < c; j++)
        for (size_t i = 0; i < r; i++)
            QH_AT(M, i, j) = 2.385 * qh_rng_normal(g) + 0.3;
    return M;
}

/* H = X Xᵀ/k + 0.05 I with X n x k Gaussian, column scales spread (badly scaled). */
static qh_matd *rand_spd(size_t n, qh_rng *g)
{
    size_t k = 2 * n + 3;
    qh_matd *X = qh_matd_alloc(n, k), *H = qh_matd_alloc(n, n);
    QH_ASSERT(X && H);
    for (size_t j = 0; j < k; j++)
        for (size_t i = 0; i < n; i++)
            QH_AT(X, i, j) = qh_rng_normal(g) * (1.0 + (double)(i % 7));
    qh_dgemm('N', 'T', n, n, k, 1.0 / (double)k, X->data, n, X->data, n, 0.0, H->data, n);
    for (size_t i = 0; i < n; i++)
        QH_AT(H, i, i) += 0.05;
    qh_matd_free(X);
    return H;
}

static double max_abs_diff(const qh_matd *A, const qh_matd *B)
{
    double d = 0.0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++)
            d = fmax(d, fabs(QH_AT(A, i, j) - QH_AT(B, i, j)));
    return d;
}

static double max_abs(const qh_matd *A)
{
    double d = 0.0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++)
            d = fmax(d, fabs(QH_AT(A, i, j)));
    return d;
}

/* max |UᵀU − I| */
static double orth_err(const qh_matd *U)
{
    size_t N = U->rows;
    qh_matd *P = qh_matd_alloc(N, N);
    QH_ASSERT(P);
    qh_dgemm('T', 'N', N, N, N, 1.0, U->data, U->ld, U->data, U->ld, 0.0, P->data, N);
    double e = 0.0;
    for (size_t j = 0; j < N; j++)
        for (size_t i = 0; i < N; i++)
            e = fmax(e, fabs(QH_AT(P, i, j) - (i == j ? 1.0 : 0.0)));
    qh_matd_free(P);
    return e;
}

static void test_hadamard_bases(void)
{
    static const size_t Ks[] = { 1, 12, 20, 60, 108, 140 };
    for (size_t t = 0; t < sizeof Ks / sizeof Ks[0]; t++) {
        size_t K = Ks[t];
        double *HK = malloc(K * K * sizeof *HK);
        QH_ASSERT(HK);
        QH_CHECK(qh_hadamard_base(K, HK) == QH_OK, "base %zu", K);
        double err = 0.0;
        int pm1 = 1;
        for (size_t i = 0; i < K * K; i++)
            pm1 &= fabs(fabs(HK[i]) - 1.0) == 0.0;
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++) {
                double s = 0.0;
                for (size_t k = 0; k < K; k++)
                    s += HK[i + k * K] * HK[j + k * K];
                err = fmax(err, fabs(s - (i == j ? (double)K : 0.0)));
            }
        QH_CHECK(pm1, "H_%zu entries are +-1", K);
        QH_CHECK(err == 0.0, "H_%zu H_%zu^T = %zu I exactly (max err %g)", K, K, K, err);
        free(HK);
    }
    double tmp[4];
    QH_CHECK(qh_hadamard_base(28, tmp) == QH_EINVAL && strstr(qh_last_error(), "28"), "base 28 refused: %s",
             qh_last_error());
    QH_CHECK(qh_hadamard_base_for(768) == 12 && qh_hadamard_base_for(3072) == 12 && qh_hadamard_base_for(1024) == 1
                 && qh_hadamard_base_for(40) == 20 && qh_hadamard_base_for(100) == 0 && qh_hadamard_base_for(0) == 0,
             "base_for");
    QH_CHECK(qh_hadamard_largest_divisor(100) == 20 && qh_hadamard_largest_divisor(7) == 1
                 && qh_hadamard_largest_divisor(96) == 96 && qh_hadamard_largest_divisor(720) == 240,
             "largest divisor: 100->%zu 7->%zu 96->%zu 720->%zu", qh_hadamard_largest_divisor(100),
             qh_hadamard_largest_divisor(7), qh_hadamard_largest_divisor(96), qh_hadamard_largest_divisor(720));
}

/* Fast transform (FWHT + base GEMM) against the explicit dense matrix product. */
static void test_fwht_vs_dense(void)
{
    static const size_t hs[] = { 1, 2, 8, 12, 20, 24, 40, 64, 96, 120, 256 };
    qh_rng g = qh_rng_stream(1, 0, QH_RNG_TEST);
    for (size_t t = 0; t < sizeof hs / sizeof hs[0]; t++) {
        size_t h = hs[t], c = 5, ld = h + 3;
        double *Hd = malloc(h * h * sizeof *Hd), *X = malloc(ld * c * sizeof *X), *Y = malloc(h * c * sizeof *Y);
        QH_ASSERT(Hd && X && Y);
        QH_CHECK(qh_hadamard_dense(h, Hd) == QH_OK, "dense %zu", h);
        for (int tr = 0; tr < 2; tr++) {
            for (size_t i = 0; i < ld * c; i++)
                X[i] = qh_rng_normal(&g);
            qh_dgemm(tr ? 'T' : 'N', 'N', h, c, h, 1.0 / sqrt((double)h), Hd, h, X, ld, 0.0, Y, h);
            QH_CHECK(qh_hadamard_apply(h, tr, X, c, ld) == QH_OK, "apply %zu", h);
            double e = 0.0;
            for (size_t j = 0; j < c; j++)
                for (size_t i = 0; i < h; i++)
                    e = fmax(e, fabs(X[i + j * ld] - Y[i + j * h]));
            QH_CHECK(e < 1e-12, "fast vs dense Hadamard h=%zu transpose=%d: err %g", h, tr, e);
            /* row version: R (c x h) ← R 𝐇ᵀ (or R 𝐇), i.e. every row x → 𝐇 x (or 𝐇ᵀ x) */
            double *R = malloc(c * h * sizeof *R), *Z = malloc(c * h * sizeof *Z);
            QH_ASSERT(R && Z);
            for (size_t i = 0; i < c * h; i++)
                R[i] = qh_rng_normal(&g);
            qh_dgemm('N', tr ? 'N' : 'T', c, h, h, 1.0 / sqrt((double)h), R, c, Hd, h, 0.0, Z, c);
            QH_CHECK(qh_hadamard_apply_rows(h, tr, R, c) == QH_OK, "apply rows %zu", h);
            e = 0.0;
            for (size_t i = 0; i < c * h; i++)
                e = fmax(e, fabs(R[i] - Z[i]));
            QH_CHECK(e < 1e-12, "fast vs dense Hadamard on rows h=%zu transpose=%d: err %g", h, tr, e);
            free(R);
            free(Z);
        }
        free(Hd);
        free(X);
        free(Y);
    }
    /* pure Sylvester FWHT on a known vector: S_4 (1,2,3,4) = (10,-2,-4,0) */
    double x[4] = { 1, 2, 3, 4 };
    qh_fwht(x, 4, 1, 4);
    QH_CHECK(x[0] == 10 && x[1] == -2 && x[2] == -4 && x[3] == 0, "FWHT(1,2,3,4) = (%g,%g,%g,%g)", x[0], x[1], x[2],
             x[3]);
    double y[12];
    QH_CHECK(qh_hadamard_apply(100, 0, y, 0, 100) == QH_EINVAL, "unsupported Hadamard size 100 refused");
}

static void test_butterfly(void)
{
    static const size_t n[] = { 768, 3072, 1024, 2048, 4096, 48, 7, 1 };
    static const size_t a[] = { 48, 96, 32, 64, 64, 12, 7, 1 };
    static const size_t b[] = { 16, 32, 32, 32, 64, 4, 1, 1 };
    for (size_t t = 0; t < sizeof n / sizeof n[0]; t++) {
        size_t x, y;
        qh_incoh_butterfly_factors(n[t], &x, &y);
        QH_CHECK(x == a[t] && y == b[t], "butterfly(%zu) = (%zu,%zu), want (%zu,%zu)", n[t], x, y, a[t], b[t]);
    }
}

/* One (m, n, kind, rescale) case: orthogonality, round trip, proxy invariance. */
static void check_case(size_t m, size_t n, qh_incoh_kind kind, int rescale, int permute, int dense_ok)
{
    qh_rng g = qh_rng_stream(7, (uint32_t)(m * 1000 + n), QH_RNG_TEST);
    qh_matd *W = rand_mat(m, n, &g), *H = rand_spd(n, &g);
    qh_matd *W0 = qh_matd_copy(W), *H0 = qh_matd_copy(H);
    qh_incoh_params p = { .kind = kind, .rescale = rescale, .seed = 11, .layer = 3, .permute = permute };
    qh_incoh_state *st = NULL;
    char desc[128];
    int rc = qh_incoh_apply(&p, W, H, &st);
    QH_CHECK(rc == QH_OK, "apply %zux%zu kind %d: %s", m, n, (int)kind, qh_last_error());
    if (rc != QH_OK)
        goto cleanup;
    qh_incoh_describe(st, desc, sizeof desc);

    if (dense_ok) {
        qh_matd *U = NULL, *V = NULL;
        QH_CHECK(qh_incoh_dense_transforms(st, &U, &V) == QH_OK, "dense transforms");
        if (U && V) {
            double eu = orth_err(U), ev = orth_err(V);
            QH_CHECK(eu < 1e-6 && ev < 1e-6, "%s %zux%zu: U^T U = I err %g, V^T V = I err %g", desc, m, n, eu, ev);
            /* W̃ = U W D̃ Vᵀ from the dense matrices */
            qh_matd *T = qh_matd_copy(W0), *T2 = qh_matd_alloc(m, n), *T3 = qh_matd_alloc(m, n);
            const double *d = qh_incoh_rescale_vector(st);
            for (size_t j = 0; j < n && d; j++)
                for (size_t i = 0; i < m; i++)
                    QH_AT(T, i, j) *= d[j];
            qh_dgemm('N', 'N', m, n, m, 1.0, U->data, m, T->data, m, 0.0, T2->data, m);
            qh_dgemm('N', 'T', m, n, n, 1.0, T2->data, m, V->data, n, 0.0, T3->data, m);
            double e = max_abs_diff(T3, W) / fmax(max_abs(W), 1e-300);
            QH_CHECK(e < 1e-12, "%s: fast transform = U W D V^T (rel err %g)", desc, e);
            qh_matd_free(T);
            qh_matd_free(T2);
            qh_matd_free(T3);
        }
        qh_matd_free(U);
        qh_matd_free(V);
    }

    /* proxy invariance: perturb in the processed basis, map back, compare */
    qh_matd *Wq = qh_matd_copy(W);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++)
            QH_AT(Wq, i, j) += 0.1 * qh_rng_normal(&g);
    double l_proc = 0.0, l_orig = 0.0;
    QH_CHECK(qh_proxy_loss(W, Wq, H, &l_proc) == QH_OK, "proxy processed");
    QH_CHECK(qh_incoh_invert(st, Wq) == QH_OK, "invert Wq: %s", qh_last_error());
    QH_CHECK(qh_proxy_loss(W0, Wq, H0, &l_orig) == QH_OK, "proxy original");
    QH_CHECK_CLOSE(l_proc, l_orig, 0.0, 1e-9, "%s %zux%zu: proxy processed %.15g vs original %.15g", desc, m, n,
                   l_proc, l_orig);

    /* round trip W → processed → back */
    QH_CHECK(qh_incoh_invert(st, W) == QH_OK, "invert W");
    double e = max_abs_diff(W, W0) / max_abs(W0);
    QH_CHECK(e < 1e-10, "%s %zux%zu: round trip rel err %g", desc, m, n, e);

    /* H back: Vᵀ H̃ V, D̃ H D̃ equals H0 — via forward_H on H0 matching H */
    qh_matd *H2 = qh_matd_copy(H0);
    QH_CHECK(qh_incoh_forward_H(st, H2) == QH_OK, "forward_H");
    QH_CHECK(max_abs_diff(H2, H) == 0.0, "%s: forward_H reproduces apply's H bit-exactly", desc);
    double want_bits = rescale ? 16.0 * (double)n : 0.0;
    QH_CHECK(qh_incoh_side_bits(st) == want_bits, "side bits %g, want %g", qh_incoh_side_bits(st), want_bits);
    QH_CHECK(qh_incoh_rows(st) == m && qh_incoh_cols(st) == n, "rows/cols");
    qh_matd_free(H2);
    qh_matd_free(Wq);
cleanup:
    qh_incoh_state_free(st);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(W0);
    qh_matd_free(H0);
}

static void test_sizes(void)
{
    static const size_t sz[] = { 1, 2, 12, 20, 24, 64, 96, 100, 256, 768 };
    size_t ns = sizeof sz / sizeof sz[0];
    int fast = qh_test_fast();
    for (size_t t = 0; t < ns; t++) {
        size_t m = sz[t], n = sz[(t + 3) % ns];
        if (fast && (m > 256 || n > 256))
            continue;
        int dense_ok = m <= 768 && n <= 768;
        check_case(m, n, QH_INCOH_HADAMARD, 0, 0, dense_ok);
        check_case(m, n, QH_INCOH_KRON, 0, t % 2, dense_ok);
        check_case(n, m, QH_INCOH_HADAMARD, 1, 0, dense_ok);
        check_case(n, m, QH_INCOH_KRON, 1, 1, dense_ok);
    }
    check_case(5, 7, QH_INCOH_NONE, 1, 0, 1);
    check_case(5, 7, QH_INCOH_NONE, 0, 0, 1);
}

/* Pure RHT sizes: every entry of U is ±1/√N; 100 = Haar5 ⊗ H20 is not. */
static void test_rht_structure(void)
{
    qh_rng g = qh_rng_stream(3, 0, QH_RNG_TEST);
    qh_matd *W = rand_mat(96, 100, &g), *H = rand_spd(100, &g);
    qh_incoh_params p = { .kind = QH_INCOH_HADAMARD, .seed = 5 };
    qh_incoh_state *st = NULL;
    QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_OK, "apply 96x100");
    qh_matd *U = NULL, *V = NULL;
    QH_CHECK(qh_incoh_dense_transforms(st, &U, &V) == QH_OK, "dense");
    double e = 0.0;
    for (size_t k = 0; k < 96 * 96; k++)
        e = fmax(e, fabs(fabs(U->data[k]) - 1.0 / sqrt(96.0)));
    QH_CHECK(e < 1e-14, "U of 96 = 12*8 has entries +-1/sqrt(96) (err %g)", e);
    char desc[128];
    qh_incoh_describe(st, desc, sizeof desc);
    QH_CHECK(strstr(desc, "L=H96*S") && strstr(desc, "R=Haar5(x)H20*S"), "describe: %s", desc);
    QH_NOTE("%s", desc);
    qh_matd_free(U);
    qh_matd_free(V);
    qh_incoh_state_free(st);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* D̃: after rescale only, diag(H̃)_j = ‖W̃_:j‖² (d⁴ = H_jj/‖W_:j‖², clamps inactive). */
static void test_rescale(void)
{
    qh_rng g = qh_rng_stream(4, 0, QH_RNG_TEST);
    size_t m = 9, n = 6;
    qh_matd *W = rand_mat(m, n, &g), *H = rand_spd(n, &g);
    qh_matd *W0 = qh_matd_copy(W), *H0 = qh_matd_copy(H);
    qh_incoh_params p = { .kind = QH_INCOH_NONE, .rescale = 1 };
    qh_incoh_state *st = NULL;
    QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_OK, "rescale only");
    const double *d = qh_incoh_rescale_vector(st);
    QH_CHECK(d != NULL, "rescale vector present");
    for (size_t j = 0; j < n && d; j++) {
        double ww = 0.0, ww0 = 0.0;
        for (size_t i = 0; i < m; i++) {
            ww += QH_AT(W, i, j) * QH_AT(W, i, j);
            ww0 += QH_AT(W0, i, j) * QH_AT(W0, i, j);
        }
        QH_CHECK_CLOSE(d[j], pow(QH_AT(H0, j, j) / ww0, 0.25), 0.0, 1e-14, "d[%zu]", j);
        QH_CHECK_CLOSE(QH_AT(H, j, j), ww, 0.0, 1e-12, "balanced column %zu: H_jj %g vs |W_j|^2 %g", j,
                       QH_AT(H, j, j), ww);
    }
    qh_incoh_state_free(st);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(W0);
    qh_matd_free(H0);
}

/* Coherent inputs: H with spiky eigenvectors on coordinate axes, W with huge entries. */
static void test_lowers_mu(qh_incoh_kind kind)
{
    size_t m = 128, n = 256;
    qh_rng g = qh_rng_stream(9, 0, QH_RNG_TEST);
    qh_matd *H = qh_matd_alloc(n, n), *W = rand_mat(m, n, &g);
    for (size_t i = 0; i < n; i++)     /* distinct eigenvalues: eigenvectors are exactly the axes */
        QH_AT(H, i, i) = 1.0 + 0.01 * (double)i;
    QH_AT(H, 3, 3) = 500.0;
    QH_AT(H, 77, 77) = 300.0;
    QH_AT(H, 200, 200) = 900.0;
    QH_AT(W, 5, 9) = 400.0;
    QH_AT(W, 100, 200) = -300.0;
    qh_spectrum s0, s1;
    QH_CHECK(qh_spectrum_compute(H, &s0) == QH_OK, "spectrum before");
    double muW0 = qh_mu_W(W);
    qh_incoh_params p = { .kind = kind, .seed = 2, .layer = 1 };
    qh_incoh_state *st = NULL;
    QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_OK, "apply");
    QH_CHECK(qh_spectrum_compute(H, &s1) == QH_OK, "spectrum after");
    double muW1 = qh_mu_W(W);
    QH_NOTE("%s 128x256: mu_H %.3f -> %.3f, mu_W %.3f -> %.3f, tr H %.6f -> %.6f",
            kind == QH_INCOH_KRON ? "kron" : "hadamard", s0.mu_H, s1.mu_H, muW0, muW1, s0.tr_H, s1.tr_H);
    QH_CHECK_CLOSE(s0.mu_H, 16.0, 0.0, 1e-12, "mu_H of axis-aligned H = sqrt(256)");
    /* RHT: eigenvectors become ±1/16 columns (μ_H = 1); a Kronecker of two Haar(16)
     * factors only reaches √n·max|A|·max|B| (Lemma 5: polylog to the power k). */
    double want = kind == QH_INCOH_HADAMARD ? 1.0 + 1e-9 : 0.6 * s0.mu_H;
    QH_CHECK(s1.mu_H < want, "mu_H lowered: %g -> %g (want < %g)", s0.mu_H, s1.mu_H, want);
    QH_CHECK(muW1 < 0.25 * muW0, "mu_W lowered: %g -> %g", muW0, muW1);
    QH_CHECK_CLOSE(s1.tr_H, s0.tr_H, 0.0, 1e-12, "tr H unchanged");
    qh_incoh_state_free(st);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* QuIP's Kronecker factors with its random permutations (config "permute"):
 * V = P_out (A ⊗ B) P_in only reorders the rows and columns of A ⊗ B (the
 * same Haar factors are drawn either way), so both V hold the same entries,
 * in other places, and stay orthogonal. */
static void test_kron_permute(void)
{
    qh_rng g = qh_rng_stream(9, 1, QH_RNG_TEST);
    qh_matd *V[2] = { NULL, NULL };
    for (int perm = 0; perm < 2; perm++) {
        qh_matd *W = rand_mat(6, 12, &g), *H = rand_spd(12, &g);
        qh_incoh_params p = { .kind = QH_INCOH_KRON, .rescale = 0, .seed = 4, .layer = 2, .permute = perm };
        qh_incoh_state *st = NULL;
        QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_OK && qh_incoh_dense_transforms(st, NULL, &V[perm]) == QH_OK,
                 "kron permute %d: %s", perm, qh_last_error());
        qh_incoh_state_free(st);
        qh_matd_free(W);
        qh_matd_free(H);
    }
    if (V[0] && V[1]) {
        double a[144], b[144];
        memcpy(a, V[0]->data, sizeof a);
        memcpy(b, V[1]->data, sizeof b);
        QH_CHECK(max_abs_diff(V[0], V[1]) > 1e-3, "permuted V differs from A (x) B");
        qh_sort_doubles(a, 144);
        qh_sort_doubles(b, 144);
        QH_CHECK(memcmp(a, b, sizeof a) == 0, "permuted V holds the entries of A (x) B");
        QH_CHECK(orth_err(V[1]) < 1e-12, "permuted V orthogonal (%g)", orth_err(V[1]));
    }
    qh_matd_free(V[0]);
    qh_matd_free(V[1]);
}

static int run_once(qh_incoh_kind kind, uint64_t seed, uint32_t layer, qh_matd **W, qh_matd **H)
{
    qh_rng g = qh_rng_stream(21, 0, QH_RNG_TEST);
    *W = rand_mat(24, 20, &g);
    *H = rand_spd(20, &g);
    qh_incoh_params p = { .kind = kind, .rescale = 1, .seed = seed, .layer = layer, .permute = 1 };
    qh_incoh_state *st = NULL;
    int rc = qh_incoh_apply(&p, *W, *H, &st);
    qh_incoh_state_free(st);
    return rc;
}

static void test_determinism(void)
{
    for (int k = 1; k <= 2; k++) {
        qh_matd *W1, *H1, *W2, *H2, *W3, *H3;
        QH_CHECK(run_once((qh_incoh_kind)k, 5, 2, &W1, &H1) == QH_OK, "run 1");
        QH_CHECK(run_once((qh_incoh_kind)k, 5, 2, &W2, &H2) == QH_OK, "run 2");
        QH_CHECK(run_once((qh_incoh_kind)k, 5, 3, &W3, &H3) == QH_OK, "run 3");
        QH_CHECK(memcmp(W1->data, W2->data, 24 * 20 * sizeof(double)) == 0
                     && memcmp(H1->data, H2->data, 20 * 20 * sizeof(double)) == 0,
                 "kind %d: same seed and layer give the same bytes", k);
        QH_CHECK(max_abs_diff(W1, W3) > 1e-3, "kind %d: another layer gives another transform", k);
        qh_matd_free(W1); qh_matd_free(H1);
        qh_matd_free(W2); qh_matd_free(H2);
        qh_matd_free(W3); qh_matd_free(H3);
    }
}

static void test_errors(void)
{
    qh_rng g = qh_rng_stream(1, 1, QH_RNG_TEST);
    qh_matd *W = rand_mat(4, 3, &g), *H = rand_spd(3, &g), *Hbad = rand_spd(4, &g);
    qh_matd *Wz = qh_matd_alloc(0, 3);
    qh_incoh_params p = { .kind = QH_INCOH_HADAMARD, .seed = 1 };
    qh_incoh_state *st = (qh_incoh_state *)&p;   /* must be reset to NULL on error */
    QH_CHECK(qh_incoh_apply(&p, W, Hbad, &st) == QH_EBADLEN && st == NULL, "mismatched H refused");
    QH_CHECK(strstr(qh_last_error(), "H is 4x4, expected 3x3") != NULL, "message: %s", qh_last_error());
    QH_CHECK(qh_incoh_apply(&p, Wz, H, &st) == QH_EINVAL, "zero-size W refused: %s", qh_last_error());
    QH_CHECK(qh_incoh_apply(NULL, W, H, &st) == QH_EINVAL, "NULL params refused");
    QH_CHECK(qh_incoh_apply(&p, W, H, NULL) == QH_EINVAL, "NULL state output refused");
    qh_incoh_params bad = p;
    bad.kind = (qh_incoh_kind)7;
    QH_CHECK(qh_incoh_apply(&bad, W, H, &st) == QH_EINVAL && strstr(qh_last_error(), "unknown kind 7"),
             "bad kind refused: %s", qh_last_error());
    QH_AT(W, 2, 1) = NAN;
    QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_ENAN && strstr(qh_last_error(), "W"), "NaN W refused: %s",
             qh_last_error());
    QH_AT(W, 2, 1) = 1.0;
    QH_AT(H, 0, 2) = INFINITY;
    QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_ENAN && strstr(qh_last_error(), "H"), "Inf H refused: %s",
             qh_last_error());
    QH_AT(H, 0, 2) = QH_AT(H, 2, 0);
    QH_CHECK(qh_incoh_apply(&p, W, H, &st) == QH_OK, "valid input accepted");
    qh_matd *Wt = qh_matd_alloc(3, 4);
    QH_CHECK(qh_incoh_invert(st, Wt) == QH_EBADLEN && strstr(qh_last_error(), "expected 4x3"),
             "invert with the wrong shape refused: %s", qh_last_error());
    QH_CHECK(qh_incoh_forward_H(st, Hbad) == QH_EBADLEN, "forward_H with the wrong shape refused");
    QH_CHECK(qh_incoh_invert(NULL, W) == QH_EINVAL, "NULL state refused");
    qh_incoh_state_free(st);
    qh_incoh_state_free(NULL);
    qh_matd_free(Wt);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(Hbad);
    qh_matd_free(Wz);
}

int main(void)
{
    test_hadamard_bases();
    test_fwht_vs_dense();
    test_butterfly();
    test_rescale();
    test_rht_structure();
    test_sizes();
    test_lowers_mu(QH_INCOH_HADAMARD);
    test_lowers_mu(QH_INCOH_KRON);
    test_determinism();
    test_kron_permute();
    test_errors();
    return qh_test_summary();
}
