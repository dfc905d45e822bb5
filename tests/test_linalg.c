/* test_linalg.c -- core/qh_linalg: LDL factors in both column orders against
 * H (tolerance ∝ n·ε), the three forms of D (Cholesky of JHJ, 1/Hinv_kk²,
 * Schur complements by plain Gauss-Jordan), H⁻¹ = FᵀF, dead columns, damping
 * retries and their limits, NaN detection, ordering and the proxy loss. */
#include "qh_test.h"

#include <float.h>
#include <string.h>

#include "qh_linalg.h"
#include "qh_rng.h"

/* H = A Aᵀ / k + shift·I, A n x k Gaussian with badly scaled rows. */
static qh_matd *random_spd(size_t n, size_t k, double shift, uint32_t key)
{
    qh_rng r = qh_rng_stream(2024, key, QH_RNG_TEST);
    qh_matd *A = qh_matd_alloc(n, k), *H = qh_matd_alloc(n, n);
    for (size_t j = 0; j < k; j++)
        for (size_t i = 0; i < n; i++) QH_AT(A, i, j) = qh_rng_normal(&r) * (1.0 + (double)(i % 5));
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double s = 0.0;
            for (size_t t = 0; t < k; t++) s += QH_AT(A, i, t) * QH_AT(A, j, t);
            QH_AT(H, i, j) = s / (double)k + (i == j ? shift : 0.0);
        }
    qh_matd_free(A);
    return H;
}

static double max_abs(const qh_matd *A)
{
    double m = 0.0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++) m = fmax(m, fabs(QH_AT(A, i, j)));
    return m;
}

/* max |F D Fᵀ − H| */
static double ldl_residual(const qh_matd *H, const qh_matd *F, const double *D)
{
    size_t n = H->rows;
    double err = 0.0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double s = 0.0;
            for (size_t k = 0; k < n; k++) s += QH_AT(F, i, k) * D[k] * QH_AT(F, j, k);
            err = fmax(err, fabs(s - QH_AT(H, i, j)));
        }
    return err;
}

/* Inverse of the trailing block H[k:, k:] by Gauss-Jordan; returns its (0,0) entry. */
static double trailing_inverse_00(const qh_matd *H, size_t k)
{
    size_t n = H->rows - k;
    double *a = malloc(n * 2 * n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < 2 * n; j++)
            a[i * 2 * n + j] = j < n ? QH_AT(H, k + i, k + j) : (j - n == i);
    for (size_t c = 0; c < n; c++) {
        double piv = a[c * 2 * n + c];
        for (size_t j = 0; j < 2 * n; j++) a[c * 2 * n + j] /= piv;
        for (size_t i = 0; i < n; i++) {
            if (i == c) continue;
            double f = a[i * 2 * n + c];
            for (size_t j = 0; j < 2 * n; j++) a[i * 2 * n + j] -= f * a[c * 2 * n + j];
        }
    }
    double v = a[n];
    free(a);
    return v;
}

static void test_ldl_forms(void)
{
    int bad_res = 0, bad_unit = 0, bad_b = 0, bad_c = 0, bad_rev = 0;
    for (size_t n = 1; n <= 64; n++) {
        qh_matd *H = random_spd(n, n / 2 + 1, 0.05, (uint32_t)n);
        qh_matd *F = qh_matd_alloc(n, n), *R = qh_matd_alloc(n, n), *G = qh_matd_alloc(n, n);
        qh_matd *J = qh_matd_alloc(n, n);
        double *D = calloc(n, sizeof *D), *Db = calloc(n, sizeof *Db), *Dr = calloc(n, sizeof *Dr);
        double tol = 8.0 * (double)n * DBL_EPSILON * max_abs(H);
        QH_CHECK(qh_ldl_factor(H, QH_LDL_FORWARD, F, D) == QH_OK, "forward LDL n=%zu", n);
        bad_res += ldl_residual(H, F, D) > tol;
        for (size_t j = 0; j < n; j++)
            for (size_t i = j; i < n; i++)
                bad_unit += QH_AT(F, i, j) != (i == j ? 1.0 : 0.0);    /* unit upper */
        /* (b) D_kk = 1/Hinv_kk² */
        QH_CHECK(qh_hinv_upper_chol(H, R) == QH_OK, "Hinv n=%zu", n);
        qh_ldl_diag_from_hinv(R, Db);
        for (size_t k = 0; k < n; k++) bad_b += fabs(Db[k] - D[k]) > 1e-9 * D[k];
        /* (c) Schur complement of H_kk w.r.t. the later columns = 1/(H[k:,k:]⁻¹)_00 */
        if (n <= 24)
            for (size_t k = 0; k < n; k++)
                bad_c += fabs(1.0 / trailing_inverse_00(H, k) - D[k]) > 1e-8 * D[k];
        /* reverse: H = F D Fᵀ, F unit lower; equals the forward factor of J H J flipped */
        QH_CHECK(qh_ldl_factor(H, QH_LDL_REVERSE, G, Dr) == QH_OK, "reverse LDL n=%zu", n);
        bad_res += ldl_residual(H, G, Dr) > tol;
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i <= j; i++) bad_unit += QH_AT(G, i, j) != (i == j ? 1.0 : 0.0);
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < n; i++) QH_AT(J, i, j) = QH_AT(H, n - 1 - i, n - 1 - j);
        QH_CHECK(qh_ldl_factor(J, QH_LDL_FORWARD, F, D) == QH_OK, "forward LDL of JHJ n=%zu", n);
        for (size_t k = 0; k < n; k++) bad_rev += fabs(D[n - 1 - k] - Dr[k]) > 1e-9 * Dr[k];
        qh_matd_free(H); qh_matd_free(F); qh_matd_free(R); qh_matd_free(G); qh_matd_free(J);
        free(D); free(Db); free(Dr);
    }
    QH_CHECK(bad_res == 0, "L D L^T == H within 8 n eps max|H| (n = 1..64): %d failures", bad_res);
    QH_CHECK(bad_unit == 0, "LDL factors are unit triangular: %d bad entries", bad_unit);
    QH_CHECK(bad_b == 0, "form (b) D = 1/Hinv_kk^2 agrees with form (a): %d bad", bad_b);
    QH_CHECK(bad_c == 0, "form (c) Schur complements agree with form (a): %d bad", bad_c);
    QH_CHECK(bad_rev == 0, "reverse LDL of H == forward LDL of JHJ flipped: %d bad", bad_rev);
}

static void test_hinv(void)
{
    size_t n = 37;
    qh_matd *H = random_spd(n, 50, 0.0, 99), *R = qh_matd_alloc(n, n);
    QH_CHECK(qh_hinv_upper_chol(H, R) == QH_OK, "Hinv of SPD");
    double err = 0.0;                /* (RᵀR) H = I */
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double s = 0.0;
            for (size_t k = 0; k < n; k++) {
                double rtr = 0.0;
                for (size_t t = 0; t < n; t++) rtr += QH_AT(R, t, i) * QH_AT(R, t, k);
                s += rtr * QH_AT(H, k, j);
            }
            err = fmax(err, fabs(s - (i == j)));
        }
    QH_CHECK(err < 1e-8, "Hinv^T Hinv H == I: max error %g", err);
    /* The damped route (inverse of the form-(a) factor) gives the same factor. */
    qh_matd *H2 = qh_matd_copy(H), *R2 = qh_matd_alloc(n, n);
    size_t retries = 9;
    double used = -1.0, diff = 0.0;
    QH_CHECK(qh_factor_damped(H2, 0.0, QH_FACTOR_HINV_UPPER, R2, NULL, &retries, &used) == QH_OK
             && retries == 0 && used == 0.0, "undamped HINV factor");
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs(QH_AT(R2, i, j) - QH_AT(R, i, j)));
    QH_CHECK(diff < 1e-9 * max_abs(R), "Hinv by trtri of form (a) == potrf/potri/potrf: %g", diff);
    qh_matd_free(H2);
    qh_matd_free(R2);
    for (size_t j = 0; j < n; j++)
        for (size_t i = j + 1; i < n; i++) QH_CHECK(QH_AT(R, i, j) == 0.0, "Hinv lower zero");
    qh_matd_free(H);
    qh_matd_free(R);
}

/* H = diag(2, 0, 4, 0), by hand: the dead inputs get the live mean 3, the
 * damping 0.01·3 = 0.03, so the Cholesky factor is diag(√2.03, √3.03,
 * √4.03, √3.03); with the dead H_jj = 1 of OPTQ's code it would be 0.01·2 on
 * every entry.  At 1000·H everything scales by 1000 (no fixed 1 in it).
 * qh_damp_base with a dead input counted as c = 0.5: (2·3 + 2·0.5)/4. */
static void test_dead_damping_by_hand(void)
{
    for (int scaled = 0; scaled < 2; scaled++) {
        double f = scaled ? 1000.0 : 1.0;
        qh_matd *H = qh_matd_alloc(4, 4), *F = qh_matd_alloc(4, 4);
        for (size_t k = 0; k < 16; k++) H->data[k] = 0.0;
        QH_AT(H, 0, 0) = 2.0 * f;
        QH_AT(H, 2, 2) = 4.0 * f;
        QH_CHECK(qh_dead_columns(H, NULL) == 2 && QH_AT(H, 1, 1) == 3.0 * f
                 && QH_AT(H, 3, 3) == 3.0 * f, "dead inputs get the live mean 3 (x%g)", f);
        QH_CHECK(qh_damp_base(H, 2, 0.0) == 3.0 * f && qh_damp_base(H, 2, 0.5 * f) == 1.75 * f,
                 "damping base: live mean 3, or 1.75 with dead inputs counted as 0.5 (x%g)", f);
        double used = 0.0;
        size_t retries = 9;
        QH_CHECK(qh_factor_damped(H, 0.01, QH_FACTOR_CHOL, F, NULL, &retries, &used) == QH_OK
                 && used == 0.01 && retries == 0, "damped factor: damp_used 0.01, no retries");
        const double want[4] = { 2.03, 3.03, 4.03, 3.03 };
        for (size_t j = 0; j < 4; j++) {
            QH_CHECK_CLOSE(QH_AT(H, j, j), want[j] * f, 0, 1e-15, "damped H_%zu%zu = %g", j, j,
                           want[j] * f);
            QH_CHECK_CLOSE(QH_AT(F, j, j), sqrt(want[j] * f), 0, 1e-15, "factor F_%zu%zu = √%g",
                           j, j, want[j] * f);
        }
        qh_matd_free(H);
        qh_matd_free(F);
    }
}

static void test_dead_and_damping(void)
{
    size_t n = 6, m = 3;
    qh_matd *H = random_spd(n, 8, 0.0, 7), *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 1.0 + (double)(i + j);
    for (size_t k = 0; k < n; k++) QH_AT(H, 2, k) = QH_AT(H, k, 2) = 0.0;   /* input 2 is dead */
    for (size_t k = 0; k < n; k++) QH_AT(H, 4, k) = QH_AT(H, k, 4) = 0.0;   /* and input 4 */
    double live = (QH_AT(H, 0, 0) + QH_AT(H, 1, 1) + QH_AT(H, 3, 3) + QH_AT(H, 5, 5)) / 4.0;
    QH_CHECK(qh_dead_columns(H, W) == 2, "two dead columns counted");
    QH_CHECK(fabs(QH_AT(H, 2, 2) - live) <= 1e-15 * live && QH_AT(H, 4, 4) == QH_AT(H, 2, 2)
             && fabs(qh_mean_diag(H) - live) <= 1e-15 * live,
             "dead H_ii set to the live mean %g, so mean(diag H) is the live mean (%g)", live,
             QH_AT(H, 2, 2));
    QH_CHECK(QH_AT(W, 0, 2) == 0.0 && QH_AT(W, 2, 4) == 0.0 && QH_AT(W, 1, 3) != 0.0,
             "dead columns of W zeroed, others kept");
    QH_CHECK(qh_dead_columns(H, W) == 0, "no dead columns after the fix");
    qh_matd_free(W);

    /* PD: no retry, damping 0.01 applied to the returned H. */
    qh_matd *F = qh_matd_alloc(n, n), *H0 = qh_matd_copy(H);
    size_t retries = 99;
    double used = 0.0, mean = qh_mean_diag(H);
    QH_CHECK(qh_factor_damped(H, 0.01, QH_FACTOR_HINV_UPPER, F, NULL, &retries, &used) == QH_OK,
             "damped factor of SPD H");
    QH_CHECK(retries == 0 && used == 0.01, "no retries, damp 0.01 (got %zu, %g)", retries, used);
    QH_CHECK_CLOSE(QH_AT(H, 0, 0), QH_AT(H0, 0, 0) + 0.01 * mean, 1e-15, 1e-14, "damped diagonal");
    qh_matd_free(H); qh_matd_free(H0); qh_matd_free(F);

    /* 𝟙𝟙ᵀ − 0.05·I: eigenvalues −0.05 and n − 0.05, mean diag 0.95; damping
     * 1 % fails, 10 % succeeds → one counted retry. */
    n = 10;
    H = qh_matd_alloc(n, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) QH_AT(H, i, j) = 1.0 - (i == j ? 0.05 : 0.0);
    F = qh_matd_alloc(n, n);
    QH_CHECK(qh_factor_damped(H, 0.01, QH_FACTOR_LDL_FORWARD, F, (double[10]){0}, &retries, &used)
             == QH_OK, "indefinite by 5%%: fixed by damping");
    QH_CHECK(retries == 1 && fabs(used - 0.1) < 1e-12, "one retry, damp 0.1 (got %zu, %g)", retries, used);
    qh_matd_free(H); qh_matd_free(F);

    /* Strongly indefinite: eigenvalue −9 with unit diagonal → ENOTPD after counted retries. */
    n = 2;
    H = qh_matd_alloc(n, n); F = qh_matd_alloc(n, n);
    QH_AT(H, 0, 0) = QH_AT(H, 1, 1) = 1.0;
    QH_AT(H, 0, 1) = QH_AT(H, 1, 0) = 10.0;
    int st = qh_factor_damped(H, 0.01, QH_FACTOR_CHOL, F, NULL, &retries, &used);
    QH_CHECK(st == QH_ENOTPD, "non-PSD H gives QH_ENOTPD (got %d)", st);
    QH_CHECK(retries == 3, "after 3 counted retries (got %zu)", retries);
    QH_CHECK(strstr(qh_last_error(), "not positive definite") != NULL, "message: %s", qh_last_error());
    /* Negative diagonal: no retry can help. */
    QH_AT(H, 0, 0) = -1.0;
    QH_CHECK(qh_factor_damped(H, 0.01, QH_FACTOR_CHOL, F, NULL, &retries, &used) == QH_ENOTPD
             && retries == 0, "negative diagonal → QH_ENOTPD without retries");
    QH_CHECK(strstr(qh_last_error(), "diagonal entry 0") != NULL, "message: %s", qh_last_error());
    qh_matd_free(H); qh_matd_free(F);
}

static void test_nan_and_misc(void)
{
    qh_matd *A = qh_matd_alloc(3, 4);
    QH_CHECK(qh_check_finite(A, "W") == QH_OK, "finite matrix passes");
    QH_AT(A, 1, 2) = NAN;
    QH_CHECK(qh_check_finite(A, "layers.0.fc1 W") == QH_ENAN, "NaN gives QH_ENAN");
    QH_CHECK(strstr(qh_last_error(), "layers.0.fc1 W") && strstr(qh_last_error(), "(1, 2)"),
             "message names the tensor and entry: %s", qh_last_error());
    qh_matd_free(A);

    /* Stable descending/ascending order by diag. */
    qh_matd *H = qh_matd_alloc(5, 5);
    double d[5] = { 2, 5, 2, 1, 5 };
    for (int i = 0; i < 5; i++) QH_AT(H, i, i) = d[i];
    size_t p[5], want_desc[5] = { 1, 4, 0, 2, 3 }, want_asc[5] = { 3, 0, 2, 1, 4 };
    qh_order_by_diag(H, 1, p);
    QH_CHECK(!memcmp(p, want_desc, sizeof p), "descending stable order");
    qh_order_by_diag(H, 0, p);
    QH_CHECK(!memcmp(p, want_asc, sizeof p), "ascending stable order");
    qh_matd_free(H);

    /* Proxy loss vs a plain triple loop. */
    size_t m = 7, n = 300;           /* n > the 256-column panel */
    H = random_spd(n, 40, 0.1, 5);
    qh_matd *W = qh_matd_alloc(m, n), *Q = qh_matd_alloc(m, n);
    qh_rng r = qh_rng_stream(1, 2, QH_RNG_TEST);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            QH_AT(W, i, j) = qh_rng_normal(&r);
            QH_AT(Q, i, j) = QH_AT(W, i, j) + 0.1 * qh_rng_normal(&r);
        }
    double loss = 0.0, want = 0.0;
    QH_CHECK(qh_lin_proxy_loss(W, Q, H, &loss) == QH_OK, "proxy loss runs");
    for (size_t i = 0; i < m; i++)
        for (size_t a = 0; a < n; a++)
            for (size_t b = 0; b < n; b++)
                want += (QH_AT(Q, i, a) - QH_AT(W, i, a)) * QH_AT(H, a, b) * (QH_AT(Q, i, b) - QH_AT(W, i, b));
    QH_CHECK_CLOSE(loss, want, 0.0, 1e-10, "proxy loss %g vs loops %g", loss, want);
    qh_matd *Hs = qh_matd_alloc(n + 1, n);
    QH_CHECK(qh_lin_proxy_loss(W, Q, Hs, &loss) == QH_EBADLEN, "shape mismatch detected");
    qh_matd_free(Hs); qh_matd_free(H); qh_matd_free(W); qh_matd_free(Q);
}

/* Small-block Cholesky: a planted lower factor is recovered, the solve
 * inverts A, and an indefinite block is refused. */
static void test_chol_small(void)
{
    enum { G = 5 };
    double L[G * G] = { 0 }, A[G * G], x[G], b[G];
    for (size_t j = 0; j < G; j++)
        for (size_t i = j; i < G; i++) L[i + j * G] = i == j ? 1.0 + 0.5 * (double)i : 0.3 * (double)(i + 1) - 0.2 * (double)j;
    for (size_t j = 0; j < G; j++)
        for (size_t i = 0; i < G; i++) {
            double s = 0.0;
            for (size_t k = 0; k < G; k++) s += L[i + k * G] * L[j + k * G];
            A[i + j * G] = s;
        }
    for (size_t i = 0; i < G; i++) x[i] = b[i] = 1.0 - 0.25 * (double)i;
    QH_CHECK(qh_chol_small(A, G) == 1, "SPD block factored");
    double err = 0.0;
    for (size_t j = 0; j < G; j++)
        for (size_t i = j; i < G; i++) err = fmax(err, fabs(A[i + j * G] - L[i + j * G]));
    QH_CHECK(err < 1e-13, "planted factor recovered (max error %.3g)", err);
    qh_chol_small_solve(A, G, x);                          /* x = A⁻¹ b: check L Lᵀ x = b */
    double y[G], res = 0.0;
    for (size_t i = 0; i < G; i++) {
        y[i] = 0.0;
        for (size_t k = i; k < G; k++) y[i] += L[k + i * G] * x[k];
    }
    for (size_t i = 0; i < G; i++) {
        double s = 0.0;
        for (size_t k = 0; k <= i; k++) s += L[i + k * G] * y[k];
        res = fmax(res, fabs(s - b[i]));
    }
    QH_CHECK(res < 1e-12, "solve: residual %.3g", res);
    double bad[4] = { 1.0, 2.0, 2.0, 1.0 };                 /* eigenvalues 3 and -1 */
    QH_CHECK(qh_chol_small(bad, 2) == 0, "indefinite block refused");
}

int main(void)
{
    test_ldl_forms();
    test_hinv();
    test_dead_and_damping();
    test_dead_damping_by_hand();
    test_nan_and_misc();
    test_chol_small();
    return qh_test_summary();
}
