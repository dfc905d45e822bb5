/* test_quipsharp.c -- the quipsharp method row (core/methods/quipsharp.h;
 * methods reference §5 and §15):
 *   - a line-by-line BlockLDLQ (own block LDL from the Cholesky factor, the
 *     feedback summed per block) gives the same Ŵ as the lazy fast path, and
 *     ℓ = Wscale² Σ_i tr(η_i D_i η_iᵀ) with η the per-block rounding error;
 *   - every 8-vector of Ŵ/Wscale is a codeword (2 bits);
 *   - BlockLDLQ beats nearest rounding onto the same codebook (no feedback);
 *   - ℓ is below the QuIP# bound (g m μ² σ²/n) tr(H^{1/2})² Wscale² with the
 *     measured μ_H of the processed H and σ² the codebook MSE at the used scale;
 *   - 3 and 4 bits, tune passes, no incoherence, scale equivariance,
 *     determinism, bad input. */
#include "quipsharp.h"
#include "qh_bounds.h"
#include "qh_e8p.h"
#include "qh_linalg.h"
#include "qh_metrics.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

#include <stdlib.h>
#include <string.h>

static qh_e8p cb;

/* H = XᵀX/k, X (k x n): Gaussian columns of decaying scale plus a common factor. */
static qh_matd *random_spd_H(size_t n, size_t k, uint32_t key)
{
    qh_rng r = qh_rng_stream(12, key, QH_RNG_TEST);
    double *X = malloc(k * n * sizeof *X);
    for (size_t i = 0; i < k; i++) {
        double f = qh_rng_normal(&r);
        for (size_t j = 0; j < n; j++) X[i + j * k] = qh_rng_normal(&r) * pow(0.95, (double)j) + 0.7 * f;
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

static int run(const char *const *kv, const qh_matd *W, const qh_matd *H, int bits, int incoh, qh_result *r)
{
    const qh_method_type *m = &qh_method_quipsharp;
    void *p = qh_method_params_new(m);
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(m, p, kv[0], kv[1]) != QH_OK)
            QH_CHECK(0, "quipsharp parameter %s = %s: %s", kv[0], kv[1], qh_last_error());
    qh_problem pb = { W, H, bits, 0, 0, "layers.0.fc1", NULL, NULL };
    qh_incoh_params ip = { .kind = QH_INCOH_HADAMARD, .seed = 3, .layer = 0 };
    int st = qh_quantize(m, p, &pb, incoh ? &ip : NULL, NULL, r);
    free(p);
    return st;
}

/* Ŵ = Wscale·Q(W/Wscale), 2 bits, no feedback. */
static qh_matd *nearest_rounding(const qh_matd *W, double wscale)
{
    qh_matd *Q = qh_matd_alloc(W->rows, W->cols);
    for (size_t r = 0; r < W->rows; r++)
        for (size_t k = 0; k < W->cols; k += 8) {
            double x[8], q[8];
            for (int i = 0; i < 8; i++) x[i] = QH_AT(W, r, k + i) / wscale;
            (void)qh_e8p_nearest(&cb, x, q);
            for (int i = 0; i < 8; i++) QH_AT(Q, r, k + i) = q[i] * wscale;
        }
    return Q;
}

/* ---- line-by-line reference ------------------------------------------------ */

/* Inverse of the 8 x 8 upper triangular block T (ld ldt) into Ti (8 x 8). */
static void inv_upper8(const double *T, size_t ldt, double *Ti)
{
    memset(Ti, 0, 64 * sizeof *Ti);
    for (int j = 0; j < 8; j++) {
        Ti[j + j * 8] = 1.0 / T[j + j * ldt];
        for (int i = j - 1; i >= 0; i--) {
            double s = 0.0;
            for (int k = i + 1; k <= j; k++) s += T[i + k * ldt] * Ti[k + j * 8];
            Ti[i + j * 8] = -s / T[i + i * ldt];
        }
    }
}

/* BlockLDLQ as the equations read: H = FᵀF, U = blockdiag(B_i⁻¹) F, D_i = B_iᵀB_i;
 * blocks last first, target = Y_blk + Σ_{later j} E_j U[blk, j]ᵀ.  Returns
 * Ŵ (codes times wscale) and the predicted ℓ = Wscale² Σ tr(η_i D_i η_iᵀ). */
static qh_matd *reference_blockldlq(const qh_matd *W, const qh_matd *H, double wscale, double *pred)
{
    size_t m = W->rows, n = W->cols;
    qh_matd *F = qh_matd_alloc(n, n), *U = qh_matd_alloc(n, n), *E = qh_matd_alloc(m, n);
    qh_matd *Q = qh_matd_alloc(m, n);
    double *D = calloc(n * 8, sizeof *D), Ti[64];
    QH_ASSERT(qh_chol_upper(H, F) == QH_OK);
    for (size_t b = 0; b < n; b += 8) {
        inv_upper8(&QH_AT(F, b, b), F->ld, Ti);
        for (size_t j = b; j < n; j++)
            for (int i = 0; i < 8; i++) {
                double s = 0.0;
                for (int k = 0; k < 8; k++) s += Ti[i + k * 8] * QH_AT(F, b + k, j);
                QH_AT(U, b + i, j) = s;
            }
        for (int j = 0; j < 8; j++)               /* D_i = BᵀB, B = F[blk, blk] */
            for (int i = 0; i < 8; i++) {
                double s = 0.0;
                for (int k = 0; k < 8; k++) s += QH_AT(F, b + k, b + i) * QH_AT(F, b + k, b + j);
                D[(b / 8) * 64 + i + j * 8] = s;
            }
    }
    *pred = 0.0;
    for (size_t b = n; b > 0;) {
        b -= 8;
        for (size_t r = 0; r < m; r++) {
            double x[8], q[8], eta[8];
            for (int i = 0; i < 8; i++) {
                double s = QH_AT(W, r, b + i) / wscale;
                for (size_t j = b + 8; j < n; j++) s += QH_AT(E, r, j) * QH_AT(U, b + i, j);
                x[i] = s;
            }
            (void)qh_e8p_nearest(&cb, x, q);
            for (int i = 0; i < 8; i++) {
                QH_AT(Q, r, b + i) = q[i] * wscale;
                QH_AT(E, r, b + i) = QH_AT(W, r, b + i) / wscale - q[i];
                eta[i] = x[i] - q[i];
            }
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++) *pred += eta[i] * D[(b / 8) * 64 + i + j * 8] * eta[j];
        }
    }
    *pred *= wscale * wscale;
    qh_matd_free(F); qh_matd_free(U); qh_matd_free(E);
    free(D);
    return Q;
}

/* ---- tests ------------------------------------------------------------------ */

static size_t count_close(const qh_matd *A, const qh_matd *B, double tol)
{
    size_t c = 0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++) c += fabs(QH_AT(A, i, j) - QH_AT(B, i, j)) <= tol;
    return c;
}

static void test_two_bit_hadamard(void)
{
    size_t m = 64, n = 64;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 1, 0.0), *H = random_spd_H(n, 96, 2);
    qh_result r;
    qh_result_init(&r);
    QH_CHECK(run(NULL, W, H, 2, 1, &r) == QH_OK, "quipsharp 2 bits with hadamard runs: %s", qh_last_error());
    if (!r.What_proc) { qh_result_free(&r); qh_matd_free(W); qh_matd_free(H); return; }
    double ws = qh_quipsharp_wscale(&r);
    /* Wscale = RMS(W̃)/1.03 */
    double ss = 0.0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) ss += QH_AT(r.W_proc, i, j) * QH_AT(r.W_proc, i, j);
    QH_CHECK_CLOSE(ws, sqrt(ss / (double)(m * n)) / 1.03, 0, 1e-12, "Wscale = RMS(W~)/1.03 (%g)", ws);
    QH_CHECK(!strcmp(r.order, "reverse") && r.col_order[0] == n - 8 && r.col_order[7] == n - 1
             && r.col_order[n - 1] == 7, "col_order: last 8-block first, ascending inside");
    QH_CHECK(r.bits_nominal == 2.0 && fabs(r.bits_side - 16.0 / (double)(m * n)) < 1e-15 && r.incoh_side_bits == 0.0,
             "bits: nominal 2, side 16/(mn) (one FP16 Wscale; seeded signs cost 0): %g", r.bits_side);
    size_t same = 0;
    for (size_t i = 0; r.row_scale && i < m; i++) same += r.row_scale[i] == ws;
    QH_CHECK(same == m && !r.grid.step, "Wscale on every row of row_scale (%zu of %zu), no grid", same, m);
    size_t off = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t k = 0; k < n; k += 8) {
            double v[8];
            uint16_t code;
            int exact = 1;
            for (int c = 0; c < 8; c++) {
                double x = QH_AT(r.What_proc, i, k + c) / ws;
                v[c] = round(4.0 * x) / 4.0;
                exact &= fabs(x - v[c]) < 1e-9;
            }
            off += !exact || qh_e8p_encode(&cb, v, &code) != QH_OK;
        }
    QH_CHECK(off == 0, "every 8-vector of What_proc/Wscale is an E8P codeword (%zu off)", off);

    /* Line-by-line reference in the processed basis. */
    double pred = 0.0;
    qh_matd *Qref = reference_blockldlq(r.W_proc, r.H_proc, ws, &pred);
    size_t agree = count_close(Qref, r.What_proc, 1e-12 * ws);
    double lref = NAN;
    QH_CHECK(qh_proxy_loss(r.W_proc, Qref, r.H_proc, &lref) == QH_OK, "reference loss");
    QH_NOTE("fast vs line-by-line BlockLDLQ: %zu/%zu entries equal", agree, m * n);
    QH_CHECK(agree >= m * n * 99 / 100, "fast == line-by-line BlockLDLQ: %zu/%zu entries", agree, m * n);
    QH_CHECK_CLOSE(r.proxy_loss, lref, 0, 1e-6, "proxy fast %.10g vs reference %.10g", r.proxy_loss, lref);
    QH_CHECK_CLOSE(lref, pred, 0, 1e-9, "l = Wscale^2 sum tr(eta D eta^T): %.12g vs %.12g", lref, pred);

    /* BlockLDLQ against nearest rounding onto the same codebook. */
    qh_matd *Qn = nearest_rounding(r.W_proc, ws);
    double lnear = NAN;
    QH_CHECK(qh_proxy_loss(r.W_proc, Qn, r.H_proc, &lnear) == QH_OK, "nearest loss");
    QH_NOTE("2 bits, hadamard: proxy %.6g, nearest %.6g (ratio %.3f)", r.proxy_loss, lnear, r.proxy_loss / lnear);
    QH_CHECK(r.proxy_loss < 0.9 * lnear, "BlockLDLQ beats nearest rounding: %.6g < 0.9 * %.6g", r.proxy_loss, lnear);

    /* The QuIP# bound with the measured μ_H of the H rounded against. */
    qh_bound_inputs bi;
    QH_CHECK(qh_bound_inputs_from_H(&bi, m, r.H_proc, r.col_order) == QH_OK, "bound inputs: %s", qh_last_error());
    bi.delta = 1.0;
    bi.g = 8;
    bi.sigma2 = 1.03 * 1.03 * 0.0912;     /* per coordinate in units of Wscale: s² MSE(s), MSE(1.03) = .0912 */
    bi.wscale = ws;
    qh_bound_list bl;
    QH_CHECK(qh_bounds_compute(&bi, &bl) == QH_OK, "bounds: %s", qh_last_error());
    const qh_bound *b = qh_bounds_find(&bl, "quipsharp_blockldlq");
    QH_CHECK(b != NULL, "quipsharp_blockldlq bound present");
    if (b) {
        QH_NOTE("mu_H %.3f, tr(H^1/2)^2 %.4g: proxy / bound = %.4f (bound %.6g)", bi.mu_H, bi.tr_sqrtH_sq,
                r.proxy_loss / b->value, b->value);
        QH_CHECK(r.proxy_loss < b->value, "proxy %.6g below the QuIP# BlockLDLQ bound %.6g", r.proxy_loss, b->value);
    }
    qh_matd_free(Qref);
    qh_matd_free(Qn);

    /* Determinism, tune passes, other widths. */
    qh_result r2;
    qh_result_init(&r2);
    QH_CHECK(run(NULL, W, H, 2, 1, &r2) == QH_OK && !memcmp(r.What->data, r2.What->data, m * n * sizeof(double))
             && r.proxy_loss == r2.proxy_loss, "same inputs, identical bytes");
    qh_result_free(&r2);
    const char *tune[] = { "tune_iters", "10", NULL };
    qh_result_init(&r2);
    QH_CHECK(run(tune, W, H, 2, 1, &r2) == QH_OK && r2.n_iterations == 10
             && r2.n_greedy_passes == 0, "tune_iters 10 runs, counted as iterations");
    QH_NOTE("tune_iters 10: proxy %.6g (plain BlockLDLQ %.6g)", r2.proxy_loss, r.proxy_loss);
    QH_CHECK(r2.proxy_loss < lnear, "tuned BlockLDLQ still beats nearest (%.6g < %.6g)", r2.proxy_loss, lnear);
    qh_result_free(&r2);
    double prev = r.proxy_loss;
    for (int bits = 3; bits <= 4; bits++) {
        qh_result_init(&r2);
        QH_CHECK(run(NULL, W, H, bits, 1, &r2) == QH_OK, "%d bits runs: %s", bits, qh_last_error());
        QH_NOTE("%d bits: proxy %.6g (side bits %g)", bits, r2.proxy_loss, r2.bits_side);
        QH_CHECK(r2.proxy_loss < 0.5 * prev && r2.bits_nominal == bits, "%d bits: proxy %.6g < half of %d bits (%.6g)",
                 bits, r2.proxy_loss, bits - 1, prev);
        prev = r2.proxy_loss;
        qh_result_free(&r2);
    }
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void test_no_incoherence_and_scale(void)
{
    size_t m = 24, n = 48;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 3, 0.0), *H = random_spd_H(n, 80, 4), *W4 = qh_matd_copy(W);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W4, i, j) *= 4.0;
    qh_result a, b;
    qh_result_init(&a);
    qh_result_init(&b);
    QH_CHECK(run(NULL, W, H, 2, 0, &a) == QH_OK && run(NULL, W4, H, 2, 0, &b) == QH_OK,
             "runs without incoherence: %s", qh_last_error());
    if (a.What && b.What) {
        size_t eq = 0;
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++) eq += QH_AT(b.What, i, j) == 4.0 * QH_AT(a.What, i, j);
        QH_CHECK(eq == m * n, "What(4W) == 4 What(W) exactly (%zu/%zu)", eq, m * n);
        qh_matd *Qn = nearest_rounding(a.W_proc, qh_quipsharp_wscale(&a));
        double lnear = NAN;
        QH_CHECK(qh_proxy_loss(a.W_proc, Qn, a.H_proc, &lnear) == QH_OK && a.proxy_loss < lnear,
                 "no incoherence: BlockLDLQ %.6g < nearest %.6g", a.proxy_loss, lnear);
        qh_matd_free(Qn);
    }
    qh_result_free(&a);
    qh_result_free(&b);
    const char *kv[] = { "scale_override", "0.9", NULL };
    qh_result_init(&a);
    QH_CHECK(run(kv, W, H, 2, 1, &a) == QH_OK, "scale_override 0.9 runs");
    double ss = 0.0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) ss += QH_AT(a.W_proc, i, j) * QH_AT(a.W_proc, i, j);
    QH_CHECK_CLOSE(qh_quipsharp_wscale(&a), sqrt(ss / (double)(m * n)) / 0.9, 0, 1e-12, "Wscale = RMS/0.9");
    qh_result_free(&a);
    qh_matd *Z = qh_matd_alloc(m, n);
    qh_result_init(&a);
    QH_CHECK(run(NULL, Z, H, 2, 1, &a) == QH_OK && a.proxy_loss == 0.0, "W = 0 gives What = 0");
    qh_result_free(&a);
    qh_matd_free(Z);
    qh_matd_free(W);
    qh_matd_free(W4);
    qh_matd_free(H);
}

static void expect(int st, int want, const char *needle, const char *what)
{
    QH_CHECK(st == want && strstr(qh_last_error(), needle), "%s: status %d (want %d): %s", what, st, want,
             qh_last_error());
}

static void test_bad_input(void)
{
    size_t m = 8, n = 16;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 5, 0.0), *H = random_spd_H(n, 30, 6);
    qh_matd *W60 = fixture_gaussian_W(m, 60, 11, 7, 0.0), *H60 = random_spd_H(60, 70, 8), *Wnan = qh_matd_copy(W);
    QH_AT(Wnan, 3, 5) = NAN;
    qh_result r;
    qh_result_init(&r);
    expect(run(NULL, W, H, 5, 1, &r), QH_EINVAL, "bits = 5", "bits 5");
    expect(run(NULL, W, H, 1, 1, &r), QH_EINVAL, "takes 2..4", "bits 1");
    expect(run(NULL, W60, H60, 2, 0, &r), QH_EINVAL, "layers.0.fc1: quipsharp needs the number of input columns n = 60",
           "n = 60");
    expect(run(NULL, Wnan, H, 2, 1, &r), QH_ENAN, "layers.0.fc1: W", "NaN in W");
    expect(run(NULL, W, NULL, 2, 0, &r), QH_EINVAL, "needs a Hessian", "no H");
    const qh_method_type *mt = &qh_method_quipsharp;
    void *p = qh_method_params_new(mt);
    QH_CHECK(qh_method_params_set(mt, p, "scale_override", "-1") == QH_ECONFIG, "negative scale rejected");
    QH_CHECK(qh_method_params_set(mt, p, "tune_iters", "3") == QH_OK, "tune_iters settable");
    free(p);
    qh_result_free(&r);
    qh_matd_free(W); qh_matd_free(H); qh_matd_free(W60); qh_matd_free(H60); qh_matd_free(Wnan);
}

int main(void)
{
    QH_CHECK(qh_e8p_init(&cb) == QH_OK, "E8P builds");
    test_two_bit_hadamard();
    test_no_incoherence_and_scale();
    test_bad_input();
    return qh_test_summary();
}
