/* test_binary_survey.c -- the rows of the binary survey (issue 18):
 * ternary, bitnet1, gptqt, onebit, blockap (core/methods/).
 *   - known answers: a hand-computed 2 x 4 ternary case; matrices each
 *     quantizer represents exactly (±c signs for bitnet1 and ternary, a
 *     rank-1 |W| for onebit, levels on a min-max grid that 2 BCQ terms
 *     reproduce for gptqt, a matrix on the min-max grid for blockap);
 *   - the GPTQ rounding hook: with a diagonal H feedback changes nothing,
 *     with a correlated H it lowers the proxy (ternary, bitnet1);
 *   - BCQ: brute force = an exhaustive search over every assignment written
 *     here (k = 2, 6 levels), ALS never below it; both exact on a
 *     representable set; brute refused (naming "fit") when too large;
 *   - bit accounting of every row against hand-computed values;
 *   - block-stage gradients: onebit's ∂/∂a, ∂/∂b and blockap's
 *     straight-through ∂/∂W, ∂/∂s, ∂/∂z against central differences of a
 *     quadratic loss L = Σ c_ij (Ŵ_ij − T_ij)² (G = ∂L/∂Ŵ), for blockap of the
 *     surrogate with its rounding residuals frozen, entries both inside and
 *     outside the clamped range (relative error ≤ 1e-6);
 *   - bad parameters and bit widths refused, naming the key. */
#include "bitnet1.h"
#include "blockap.h"
#include "gptqt.h"
#include "onebit.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "ternary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *params_with(const qh_method_type *t, const char *const *kv)
{
    void *p = qh_method_params_new(t);
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(t, p, kv[0], kv[1]) != QH_OK) printf("note: %s\n", qh_last_error());
    return p;
}

static int run(const qh_method_type *t, const char *const *kv, const qh_matd *W, const qh_matd *H,
               int bits, void *state, qh_result *r)
{
    void *p = params_with(t, kv);
    qh_problem pb = { W, H, bits, 0, 0, "layers.0.fc1", state, NULL };
    int st = qh_quantize(t, p, &pb, NULL, NULL, r);
    free(p);
    return st;
}

static double max_diff(const qh_matd *A, const qh_matd *B)
{
    double d = 0.0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++) d = fmax(d, fabs(QH_AT(A, i, j) - QH_AT(B, i, j)));
    return d;
}

static qh_matd *correlated_H(size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(42, key, QH_RNG_TEST);
    size_t k = 4 * n;
    double *X = malloc(k * n * sizeof *X);
    for (size_t i = 0; i < k; i++) {
        double f = qh_rng_normal(&r);
        for (size_t j = 0; j < n; j++) X[i + j * k] = qh_rng_normal(&r) + 0.8 * f;
    }
    qh_matd *H = qh_matd_alloc(n, n);
    for (size_t a = 0; a < n; a++)
        for (size_t b = a; b < n; b++) {
            double s = 0.0;
            for (size_t i = 0; i < k; i++) s += X[i + a * k] * X[i + b * k];
            QH_AT(H, a, b) = QH_AT(H, b, a) = s / (double)k;
        }
    free(X);
    return H;
}

static qh_matd *random_W(size_t m, size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(7, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 0.05 * qh_rng_normal(&r);
    return W;
}

static qh_matd *identity(size_t n)
{
    qh_matd *H = qh_matd_alloc(n, n);
    for (size_t j = 0; j < n; j++) QH_AT(H, j, j) = 1.0;
    return H;
}

/* ---- ternary and bitnet1 -------------------------------------------------------- */

static void test_ternary(void)
{
    /* mean|W| = 1.6/8 = 0.2; W/γ = 1.5 -0.5 0.25 -3 | 1 0 -1.25 0.5 (row-major) */
    const double w[2][4] = { { 0.3, -0.1, 0.05, -0.6 }, { 0.2, 0.0, -0.25, 0.1 } };
    const double want[2][4] = { { 1, 0, 0, -1 }, { 1, 0, -1, 1 } };
    qh_matd *W = qh_matd_alloc(2, 4), *H = identity(4);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) QH_AT(W, i, j) = w[i][j];
    qh_result r;
    qh_result_init(&r);
    QH_CHECK(run(&qh_method_ternary, NULL, W, H, 2, NULL, &r) == QH_OK, "ternary: %s", qh_last_error());
    double worst = 0.0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) worst = fmax(worst, fabs(QH_AT(r.What, i, j) - 0.2 * want[i][j]));
    QH_CHECK(worst < 1e-15, "ternary 2 x 4 by hand (max error %.1e)", worst);
    QH_CHECK_CLOSE(r.bits_nominal, log2(3.0), 1e-15, 0, "packed nominal log2 3 (%g)", r.bits_nominal);
    QH_CHECK_CLOSE(r.bits_side, 16.0 / 8.0, 1e-15, 0, "per-tensor side 16/(mn) (%g)", r.bits_side);
    const char *stored[] = { "packing", "stored", "scope", "row", NULL };
    QH_CHECK(run(&qh_method_ternary, stored, W, H, 2, NULL, &r) == QH_OK, "stored");
    QH_CHECK(r.bits_nominal == 2.0 && fabs(r.bits_side - 4.0) < 1e-15 && fabs(r.bits_total - 6.0) < 1e-15,
             "stored: nominal 2, per-row side 16/n = 4, total 6 (%g %g %g)", r.bits_nominal,
             r.bits_side, r.bits_total);
    qh_matd_free(W);
    qh_matd_free(H);

    /* ±c per row is exact for per-row scopes (γ = c), for both rows */
    size_t m = 8, n = 32;
    W = qh_matd_alloc(m, n);
    H = identity(n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = (0.01 + 0.01 * (double)i) * (((i + j * 3) % 2) ? 1 : -1);
    const char *row[] = { "scope", "row", NULL };
    QH_CHECK(run(&qh_method_ternary, row, W, H, 2, NULL, &r) == QH_OK && max_diff(r.What, W) < 1e-15,
             "ternary: a ±c row is reproduced");
    QH_CHECK(run(&qh_method_bitnet1, row, W, H, 1, NULL, &r) == QH_OK && max_diff(r.What, W) < 1e-15,
             "bitnet1: a balanced ±c row is reproduced");
    QH_CHECK(r.bits_nominal == 1.0 && fabs(r.bits_side - 0.5) < 1e-15, "bitnet1 row: 1 + 16/32 bits");
    const char *grp[] = { "group", "8", NULL };
    QH_CHECK(run(&qh_method_bitnet1, grp, W, H, 1, NULL, &r) == QH_OK && fabs(r.bits_side - 2.0) < 1e-15,
             "bitnet1 group 8: side 16/8");
    qh_matd_free(W);
    qh_matd_free(H);

    /* the hook: feedback under diagonal H = no feedback; under correlated H lower */
    W = random_W(16, 64, 1);
    qh_matd *D = identity(64), *C = correlated_H(64, 2);
    const qh_method_type *rows[] = { &qh_method_ternary, &qh_method_bitnet1 };
    const char *fb[] = { "feedback", "1", NULL }, *fbrow[] = { "feedback", "1", "scope", "row", NULL };
    const char *norow[] = { "scope", "row", NULL };
    for (int k = 0; k < 2; k++) {
        qh_result a, b;
        qh_result_init(&a);
        qh_result_init(&b);
        int bits = k == 0 ? 2 : 1;
        QH_CHECK(run(rows[k], NULL, W, D, bits, NULL, &a) == QH_OK && run(rows[k], fb, W, D, bits, NULL, &b) == QH_OK,
                 "%s runs", rows[k]->name);
        QH_CHECK(max_diff(a.What, b.What) == 0.0, "%s: feedback under a diagonal H changes nothing", rows[k]->name);
        QH_CHECK(run(rows[k], norow, W, C, bits, NULL, &a) == QH_OK && run(rows[k], fbrow, W, C, bits, NULL, &b) == QH_OK,
                 "%s runs (correlated H)", rows[k]->name);
        QH_CHECK(b.proxy_loss < a.proxy_loss, "%s: feedback lowers the proxy under a correlated H (%.4g < %.4g)",
                 rows[k]->name, b.proxy_loss, a.proxy_loss);
        qh_result_free(&a);
        qh_result_free(&b);
    }
    QH_CHECK(run(&qh_method_ternary, fb, W, NULL, 2, NULL, &r) == QH_EINVAL, "feedback without H refused: %s",
             qh_last_error());
    QH_CHECK(run(&qh_method_ternary, NULL, W, D, 1, NULL, &r) == QH_EINVAL, "ternary bits 1 refused");
    QH_CHECK(run(&qh_method_bitnet1, NULL, W, D, 2, NULL, &r) == QH_EINVAL, "bitnet1 bits 2 refused");
    const char *bad[] = { "group", "24", NULL };
    QH_CHECK(run(&qh_method_ternary, bad, W, D, 2, NULL, &r) == QH_EINVAL && strstr(qh_last_error(), "group"),
             "group not dividing n refused: %s", qh_last_error());
    void *p = qh_method_params_new(&qh_method_ternary);
    QH_CHECK(qh_method_params_set(&qh_method_ternary, p, "scope", "diag") == QH_ECONFIG &&
             strstr(qh_last_error(), "scope"), "unknown scope refused naming the key: %s", qh_last_error());
    free(p);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(D);
    qh_matd_free(C);
}

/* ---- gptqt ------------------------------------------------------------------------ */

/* Exhaustive reference: every assignment of L levels to 4 patterns (k = 2),
 * least squares of (α1, α2, offset) by Cramer's rule on the normal equations. */
static double exhaustive_k2(const double *v, const double *c, size_t L)
{
    double best = INFINITY;
    size_t total = 1;
    for (size_t l = 0; l < L; l++) total *= 4;
    for (size_t code = 0; code < total; code++) {
        double A[3][3] = { { 0 } }, y[3] = { 0 };
        size_t cc = code;
        double rows[16][3];
        for (size_t l = 0; l < L; l++, cc /= 4) {
            unsigned p = (unsigned)(cc % 4);
            double x[3] = { (p & 1) ? 1 : -1, (p & 2) ? 1 : -1, 1 };
            memcpy(rows[l], x, sizeof x);
            for (int a = 0; a < 3; a++) {
                y[a] += c[l] * x[a] * v[l];
                for (int b = 0; b < 3; b++) A[a][b] += c[l] * x[a] * x[b];
            }
        }
        for (int a = 0; a < 3; a++) A[a][a] += 1e-12 * (A[0][0] + A[1][1] + A[2][2]);
        double det = A[0][0] * (A[1][1] * A[2][2] - A[1][2] * A[2][1]) - A[0][1] * (A[1][0] * A[2][2] - A[1][2] * A[2][0])
                   + A[0][2] * (A[1][0] * A[2][1] - A[1][1] * A[2][0]);
        double sol[3];
        for (int k = 0; k < 3; k++) {
            double M[3][3];
            memcpy(M, A, sizeof M);
            for (int a = 0; a < 3; a++) M[a][k] = y[a];
            sol[k] = (M[0][0] * (M[1][1] * M[2][2] - M[1][2] * M[2][1]) - M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0])
                      + M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0])) / det;
        }
        double sse = 0.0;
        for (size_t l = 0; l < L; l++) {
            double e = v[l] - (rows[l][0] * sol[0] + rows[l][1] * sol[1] + sol[2]);
            sse += c[l] * e * e;
        }
        if (sse < best) best = sse;
    }
    return best;
}

static void test_gptqt(void)
{
    double alpha[4], off, sse_b, sse_a;
    unsigned pat[16];
    /* representable: 0.7 ± 1 ± 0.25 */
    const double v0[4] = { -0.55, -0.05, 1.45, 1.95 }, c0[4] = { 3, 1, 2, 5 };
    QH_CHECK(qh_bcq_fit(v0, c0, 4, 2, QH_BCQ_FIT_BRUTE, 0, alpha, &off, pat, &sse_b) == QH_OK && sse_b < 1e-20,
             "brute: a representable set is exact (sse %.1e)", sse_b);
    const double c1[4] = { 1, 1, 1, 1 };   /* equal counts: the greedy start is already exact */
    QH_CHECK(qh_bcq_fit(v0, c1, 4, 2, QH_BCQ_FIT_ALS, 20, alpha, &off, pat, &sse_a) == QH_OK && sse_a < 1e-20,
             "ALS: a representable set with equal counts is exact (sse %.1e)", sse_a);
    QH_CHECK(qh_bcq_fit(v0, c0, 4, 2, QH_BCQ_FIT_ALS, 20, alpha, &off, pat, &sse_a) == QH_OK,
             "ALS runs (unequal counts)");
    QH_NOTE("ALS on the same set with counts 3 1 2 5: sse %.3g (a local optimum; brute 0)", sse_a);
    qh_rng r = qh_rng_stream(3, 0, QH_RNG_TEST);
    int agree = 0, never_below = 1, brute_exact = 1;
    for (int trial = 0; trial < 20; trial++) {
        double v[6], c[6];
        for (int l = 0; l < 6; l++) { v[l] = (double)l + 0.6 * qh_rng_uniform(&r); c[l] = 1 + (double)qh_rng_below(&r, 9); }
        QH_CHECK(qh_bcq_fit(v, c, 6, 2, QH_BCQ_FIT_BRUTE, 0, alpha, &off, pat, &sse_b) == QH_OK, "brute");
        QH_CHECK(qh_bcq_fit(v, c, 6, 2, QH_BCQ_FIT_ALS, 50, alpha, &off, pat, &sse_a) == QH_OK, "als");
        double ex = exhaustive_k2(v, c, 6);
        brute_exact &= fabs(sse_b - ex) <= 1e-9 * fmax(ex, 1e-12);
        never_below &= sse_a >= sse_b - 1e-9 * fmax(sse_b, 1e-12);
        agree += fabs(sse_a - sse_b) <= 1e-9 * fmax(sse_b, 1e-12);
    }
    QH_CHECK(brute_exact, "brute force = the exhaustive search over all 4^6 assignments (20 cases)");
    QH_CHECK(never_below, "ALS never below the brute-force optimum");
    QH_CHECK(agree >= 5, "ALS reaches the optimum on %d of 20 small cases", agree);
    QH_NOTE("gptqt: ALS = brute force on %d of 20 random 6-level k = 2 cases", agree);
    double big[32], cb[32];
    for (int l = 0; l < 32; l++) { big[l] = l; cb[l] = 1; }
    QH_CHECK(qh_bcq_fit(big, cb, 32, 3, QH_BCQ_FIT_BRUTE, 0, alpha, &off, pat, &sse_b) == QH_EINVAL &&
             strstr(qh_last_error(), "fit"), "brute with 32 levels, k = 3 refused naming fit: %s", qh_last_error());

    /* a layer whose rows hold levels {0, 2, 5, 7} of a 3-bit grid (Δ = 0.1, z = 3):
     * 3.5 ± 2.5 ± 1 steps, so GPTQ at 3 bits and 2 BCQ terms reproduce it */
    size_t m = 6, n = 16;
    qh_matd *W = qh_matd_alloc(m, n), *H = identity(n);
    const int lv[4] = { 0, 2, 5, 7 };
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 0.1 * (i + 1) * (lv[(i + j) % 4] - 3);
    const char *als[] = { NULL }, *brute[] = { "fit", "brute", NULL };
    qh_result res;
    qh_result_init(&res);
    for (int f = 0; f < 2; f++) {
        QH_CHECK(run(&qh_method_gptqt, f ? brute : als, W, H, 2, NULL, &res) == QH_OK, "gptqt: %s", qh_last_error());
        QH_CHECK(max_diff(res.What, W) < 1e-10, "gptqt (%s): BCQ-representable levels reproduced (max error %.1e)",
                 f ? "brute" : "als", max_diff(res.What, W));
    }
    QH_CHECK(res.bits_nominal == 2.0 && fabs(res.bits_side - 48.0 / 16.0) < 1e-15,
             "gptqt bits: 2 + (16*2 + 16)/16 (%g + %g)", res.bits_nominal, res.bits_side);
    QH_CHECK(res.n_iterations == 5, "five re-explore candidates run (%zu)", res.n_iterations);
    double nom, side;
    qh_gptqt_bits(3, 128, &nom, &side);
    QH_CHECK(nom == 3 && fabs(side - 64.0 / 128.0) < 1e-15, "k = 3, g = 128: 3 + 0.5 bits");
    const char *bad[] = { "inter_bits", "2", NULL };
    QH_CHECK(run(&qh_method_gptqt, bad, W, H, 2, NULL, &res) == QH_EINVAL && strstr(qh_last_error(), "inter_bits"),
             "inter_bits <= bits refused naming the key: %s", qh_last_error());
    void *p = qh_method_params_new(&qh_method_gptqt);
    QH_CHECK(qh_method_params_set(&qh_method_gptqt, p, "fit", "random") == QH_ECONFIG && strstr(qh_last_error(), "fit"),
             "unknown fit refused naming the key");
    free(p);
    QH_CHECK(run(&qh_method_gptqt, NULL, W, H, 5, NULL, &res) == QH_EINVAL, "bits 5 refused");
    qh_result_free(&res);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- onebit -------------------------------------------------------------------- */

/* Σ c_ij (Ŵ − T)² and G = 2 c (Ŵ − T). */
static double quad_loss(const qh_matd *What, const qh_matd *T, qh_matd *G)
{
    double l = 0.0;
    for (size_t j = 0; j < What->cols; j++)
        for (size_t i = 0; i < What->rows; i++) {
            double c = 1.0 + 0.1 * (double)((i * 3 + j) % 5), d = QH_AT(What, i, j) - QH_AT(T, i, j);
            l += c * d * d;
            if (G) QH_AT(G, i, j) = 2.0 * c * d;
        }
    return l;
}

static double fd_vec(double *x, size_t count, const double *g, double (*loss)(void *), void *ctx)
{
    double worst = 0.0, gmax = 0.0;
    for (size_t i = 0; i < count; i++) gmax = fmax(gmax, fabs(g[i]));
    for (size_t i = 0; i < count; i++) {
        double s = x[i], h = 1e-6 * fmax(fabs(s), 1e-3);
        x[i] = s + h;
        double lp = loss(ctx);
        x[i] = s - h;
        double lm = loss(ctx);
        x[i] = s;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - g[i]) / gmax);
    }
    return worst;
}

typedef struct { qh_onebit_state *s; qh_matd *What, *T; } ob_ctx;

static double ob_loss(void *ctx)
{
    ob_ctx *c = ctx;
    qh_onebit_reconstruct(c->s, c->What);
    return quad_loss(c->What, c->T, NULL);
}

static void test_onebit(void)
{
    size_t m = 12, n = 20;
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++)
            QH_AT(W, i, j) = (0.5 + 0.1 * (double)i) * (0.2 + 0.05 * (double)j) * (((i * 7 + j * 3) % 5 < 2) ? -1 : 1);
    qh_result r;
    qh_result_init(&r);
    const char *svd[] = { "objective", "layer", NULL }, *als[] = { "objective", "layer", "init", "als", NULL };
    QH_CHECK(run(&qh_method_onebit, svd, W, NULL, 1, NULL, &r) == QH_OK && max_diff(r.What, W) < 1e-12,
             "onebit svd: sign ⊙ rank-1 |W| reproduced (%.1e)", max_diff(r.What, W));
    QH_CHECK(run(&qh_method_onebit, als, W, NULL, 1, NULL, &r) == QH_OK && max_diff(r.What, W) < 1e-12,
             "onebit als: reproduced (%.1e)", max_diff(r.What, W));
    QH_CHECK(r.bits_nominal == 1.0 && fabs(r.bits_side - 16.0 * 32.0 / 240.0) < 1e-15,
             "onebit bits 1 + 16(m+n)/(mn) (%g)", r.bits_total);

    /* gradients on a random layer (the state the block stage tunes) */
    qh_matd *Wr = random_W(m, n, 5), *T = random_W(m, n, 6), *What = qh_matd_alloc(m, n), *G = qh_matd_alloc(m, n);
    qh_onebit_state st = { 0 };
    QH_CHECK(run(&qh_method_onebit, NULL, Wr, NULL, 1, &st, &r) == QH_OK && st.rows == m, "state filled");
    qh_onebit_reconstruct(&st, What);
    QH_CHECK(max_diff(What, r.What) == 0.0, "state reconstructs the layer result");
    quad_loss(What, T, G);
    double *ga = malloc((m + n) * sizeof *ga), *gb = ga + m;
    qh_onebit_param_grad(&st, G, ga, gb);
    ob_ctx c = { &st, What, T };
    double ea = fd_vec(st.a, m, ga, ob_loss, &c), eb = fd_vec(st.b, n, gb, ob_loss, &c);
    QH_CHECK(ea < 1e-6 && eb < 1e-6, "onebit d/da, d/db = central differences (%.1e, %.1e)", ea, eb);
    void *p = qh_method_params_new(&qh_method_onebit);
    QH_CHECK(qh_method_params_set(&qh_method_onebit, p, "init", "qr") == QH_ECONFIG && strstr(qh_last_error(), "init"),
             "unknown init refused naming the key");
    free(p);
    QH_CHECK(run(&qh_method_onebit, NULL, Wr, NULL, 2, NULL, &r) == QH_EINVAL, "onebit bits 2 refused");
    free(ga);
    qh_onebit_state_free(&st);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(Wr);
    qh_matd_free(T);
    qh_matd_free(What);
    qh_matd_free(G);
}

/* ---- blockap -------------------------------------------------------------------- */

/* The straight-through surrogate at a point, with the rounding residuals
 * ρ = round(W0/s0) − W0/s0, ζ = round(z0) − z0 and the set of entries inside
 * the range frozen: inside Ŵ = s (W/s + ρ) (so W + sρ), outside
 * Ŵ = s (c − z − ζ), c = 0 or maxq.  Equal to Ŵ at the point; its
 * derivatives are the straight-through ones (round's 1, clamp's 0 outside). */
typedef struct {
    qh_blockap_state *s;
    double *rho, *zeta, *clampv;     /* clampv: NAN inside, else 0 or maxq */
    qh_matd *What, *T;
} ap_ctx;

static double ap_loss(void *ctx)
{
    ap_ctx *c = ctx;
    qh_blockap_state *s = c->s;
    size_t m = s->rows;
    for (size_t j = 0; j < s->cols; j++) {
        size_t gi = j / s->group;
        for (size_t i = 0; i < m; i++) {
            size_t k = i + gi * m;
            double zr = s->z[k] + c->zeta[k], cv = c->clampv[i + j * m];
            QH_AT(c->What, i, j) = isnan(cv) ? s->W[i + j * m] + s->s[k] * c->rho[i + j * m]
                                             : s->s[k] * (cv - zr);
        }
    }
    return quad_loss(c->What, c->T, NULL);
}

static void test_blockap(void)
{
    size_t m = 6, n = 16;
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 0.05 * (double)(i + 1) * ((double)((i + j) % 4) - 1.0);
    qh_result r;
    qh_result_init(&r);
    const char *g8[] = { "objective", "layer", "group", "8", NULL };
    QH_CHECK(run(&qh_method_blockap, g8, W, NULL, 2, NULL, &r) == QH_OK && max_diff(r.What, W) < 1e-15,
             "blockap: a matrix on the 2-bit min-max grid is reproduced (%.1e)", max_diff(r.What, W));
    QH_CHECK(r.bits_nominal == 2.0 && fabs(r.bits_side - 18.0 / 8.0) < 1e-15, "blockap bits 2 + 18/8 (%g)", r.bits_total);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 0.03 * (double)(i + 1) * (((i + j) % 2) ? 1 : -1);
    const char *tern[] = { "objective", "layer", "group", "8", "levels", "ternary", NULL };
    QH_CHECK(run(&qh_method_blockap, tern, W, NULL, 2, NULL, &r) == QH_OK && max_diff(r.What, W) < 1e-15,
             "blockap ternary: ±c reproduced");
    QH_CHECK(fabs(r.bits_nominal - log2(3.0)) < 1e-15 && fabs(r.bits_side - 2.0) < 1e-15, "ternary bits log2 3 + 16/8");
    QH_CHECK(run(&qh_method_blockap, tern, W, NULL, 3, NULL, &r) == QH_EINVAL, "ternary with bits 3 refused");

    /* gradients at a perturbed point with entries outside the range */
    qh_matd *Wr = random_W(m, n, 8), *T = random_W(m, n, 9), *What = qh_matd_alloc(m, n), *G = qh_matd_alloc(m, n);
    for (int grid = 0; grid < 2; grid++) {
        qh_blockap_state st = { 0 };
        const char *kv[] = { "group", "8", "levels", grid ? "ternary" : "minmax", NULL };
        QH_CHECK(run(&qh_method_blockap, kv, Wr, NULL, 2, &st, &r) == QH_OK, "blockap state: %s", qh_last_error());
        size_t cells = m * st.n_groups, outside = 0;
        for (size_t k = 0; k < cells; k++) { st.s[k] *= 0.6; st.z[k] += 0.3; }   /* clamps some entries */
        double *rho = malloc((2 * m * n + cells) * sizeof *rho), *zeta = rho + m * n;
        double *clampv = zeta + cells;
        for (size_t k = 0; k < cells; k++) zeta[k] = nearbyint(st.z[k]) - st.z[k];
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++) {
                size_t k = i + (j / st.group) * m;
                double x = st.W[i + j * m] / st.s[k];
                rho[i + j * m] = nearbyint(x) - x;
                double u = nearbyint(x) + nearbyint(st.z[k]);
                outside += u < 0 || u > st.maxq;
                clampv[i + j * m] = u < 0 ? 0.0 : u > st.maxq ? st.maxq : NAN;
            }
        qh_blockap_reconstruct(&st, What);
        ap_ctx c = { &st, rho, zeta, clampv, qh_matd_alloc(m, n), T };
        double l0 = ap_loss(&c);
        QH_CHECK(max_diff(c.What, What) < 1e-14, "surrogate = Ŵ at the point");
        quad_loss(What, T, G);
        qh_blockap_param_grad(&st, G);
        double ew = fd_vec(st.W, m * n, st.gW, ap_loss, &c), es = fd_vec(st.s, cells, st.gs, ap_loss, &c);
        double ez = grid ? 0.0 : fd_vec(st.z, cells, st.gz, ap_loss, &c);
        QH_CHECK(outside > 0, "%s: %zu entries outside the range", grid ? "ternary" : "minmax", outside);
        QH_CHECK(ew < 1e-6 && es < 1e-6 && ez < 1e-6,
                 "blockap %s: STE d/dW, d/ds, d/dz = central differences of the surrogate (%.1e %.1e %.1e; loss %.3g)",
                 grid ? "ternary" : "minmax", ew, es, ez, l0);
        free(rho);
        qh_matd_free(c.What);
        qh_blockap_state_free(&st);
    }
    const char *bad[] = { "group", "24", NULL };
    QH_CHECK(run(&qh_method_blockap, bad, Wr, NULL, 2, NULL, &r) == QH_EINVAL && strstr(qh_last_error(), "group"),
             "group not dividing n refused naming the key: %s", qh_last_error());
    void *p = qh_method_params_new(&qh_method_blockap);
    QH_CHECK(qh_method_params_set(&qh_method_blockap, p, "lr_w", "-1") == QH_ECONFIG && strstr(qh_last_error(), "lr_w"),
             "negative lr_w refused naming the key");
    free(p);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(Wr);
    qh_matd_free(T);
    qh_matd_free(What);
    qh_matd_free(G);
}

int main(void)
{
    test_ternary();
    test_gptqt();
    test_onebit();
    test_blockap();
    return qh_test_summary();
}
