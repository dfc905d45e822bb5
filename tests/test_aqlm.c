/* test_aqlm.c -- the aqlm method row (core/methods/aqlm.h; methods reference §10):
 *   - bit accounting on the seven Llama-2-7B projections (1x16, 1x15, 2x8,
 *     1x16 g16, 1x8 at g8) to 1e-3; B = bits*g/M and its refusals;
 *   - a planted additive codebook is recovered (relative proxy ≤ 1e-8);
 *   - every beam-search coordinate step is the brute-force argmin of the
 *     full proxy (naive line-by-line proxy), and G stays = (Ŵ−W)H;
 *   - the least-squares codebook update zeroes the gradient (relative 1e-8)
 *     and lowers the loss; Adam ends lower;
 *   - each step and each epoch never raises the proxy;
 *   - with H = I, M = 1 and unit scales, beam search + lstsq is Lloyd's
 *     k-means (naive implementation in this file), codes and centroids;
 *   - 2x8 beats 1x8; AQLM beats RTN and GPTQ at 2 bits on a correlated H;
 *   - the driver: structure of Ŵ (≤ K distinct normalized groups), bits,
 *     determinism, Hadamard incoherence, bad input. */
#include "aqlm.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

/* H = X Xᵀ/T + 0.05 I with X correlated along the input index (full symmetric). */
static qh_matd *correlated_H(size_t n, size_t T, uint32_t key)
{
    qh_rng r = qh_rng_stream(12, key, QH_RNG_TEST);
    qh_matd *H = qh_matd_alloc(n, n);
    double *x = malloc(n * sizeof *x);
    for (size_t t = 0; t < T; t++) {
        double prev = 0.0, common = qh_rng_normal(&r);
        for (size_t i = 0; i < n; i++) {
            prev = 0.8 * prev + qh_rng_normal(&r);
            x[i] = prev + 0.5 * common;
        }
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < n; i++) QH_AT(H, i, j) += x[i] * x[j] / (double)T;
    }
    for (size_t i = 0; i < n; i++) QH_AT(H, i, i) += 0.05;
    free(x);
    return H;
}

/* Naive decode of the solver's model. */
static void naive_decode(const qh_aqlm_ctx *c, qh_matd *What)
{
    for (size_t r = 0; r < c->m; r++)
        for (size_t j = 0; j < c->J; j++)
            for (size_t a = 0; a < c->g; a++) {
                double s = 0.0;
                for (size_t k = 0; k < c->M; k++)
                    s += c->cb[(k * c->K + c->codes[r + c->m * (j + c->J * k)]) * c->g + a];
                QH_AT(What, r, j * c->g + a) = c->scale[r] * s;
            }
}

typedef struct { qh_aqlm_ctx c; void *mem; } solver;

static void solver_new(solver *s, const qh_matd *W, const qh_matd *H, int M, int B, int g, int epochs)
{
    size_t bytes = (qh_aqlm_ctx_bytes(W->rows, W->cols, M, B, g, epochs) + 63) / 64 * 64;
    s->mem = aligned_alloc(64, bytes);
    qh_aqlm_ctx_init(&s->c, W, H, M, B, g, epochs, s->mem);
}

/* Random codebooks, codes and scales (some negative scales too). */
static void solver_randomize(solver *s, uint32_t key)
{
    qh_aqlm_ctx *c = &s->c;
    qh_rng r = qh_rng_stream(13, key, QH_RNG_TEST);
    for (size_t i = 0; i < c->M * c->K * c->g; i++) c->cb[i] = 0.5 * qh_rng_normal(&r);
    for (size_t i = 0; i < c->m * c->J * c->M; i++) c->codes[i] = (uint16_t)qh_rng_below(&r, c->K);
    for (size_t i = 0; i < c->m; i++) c->scale[i] = (i % 4 == 3 ? -1.0 : 1.0) * (0.5 + qh_rng_uniform(&r));
}

static double rel_diff_mat(const qh_matd *A, const qh_matd *B)
{
    double d = 0.0, a = 0.0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++) {
            double x = QH_AT(A, i, j) - QH_AT(B, i, j);
            d += x * x;
            a += QH_AT(B, i, j) * QH_AT(B, i, j);
        }
    return sqrt(d / (a > 0.0 ? a : 1.0));
}

static int run_aqlm(const char *const *kv, const qh_matd *W, const qh_matd *H, int bits, uint64_t seed,
                    const qh_incoh_params *ip, qh_result *r)
{
    void *p = qh_method_params_new(&qh_method_aqlm);
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(&qh_method_aqlm, p, kv[0], kv[1]) != QH_OK) { free(p); return QH_ECONFIG; }
    qh_problem pb = { W, H, bits, seed, 3, "layers.0.fc1", NULL, NULL };
    int st = qh_quantize(&qh_method_aqlm, p, &pb, ip, NULL, r);
    free(p);
    return st;
}

/* ---- bits ----------------------------------------------------------------------- */

static void test_bits(void)
{
    /* q, k, v, o; gate, up (11008 x 4096); down (4096 x 11008) */
    static const size_t rows[7] = { 4096, 4096, 4096, 4096, 11008, 11008, 4096 };
    static const size_t cols[7] = { 4096, 4096, 4096, 4096, 4096, 4096, 11008 };
    static const struct { int M, B, g; double want; } cases[] = {
        { 1, 16, 8, 2.294 }, { 1, 15, 8, 2.023 }, { 2, 8, 8, 2.006 }, { 1, 16, 16, 1.584 }, { 1, 8, 8, 1.004 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double b = qh_aqlm_bits_per_weight(cases[i].M, cases[i].B, cases[i].g, rows, cols, 7);
        QH_CHECK_CLOSE(b, cases[i].want, 1e-3, 0, "%dx%d g%d on Llama-2-7B: %.4f bpw (want %.3f)", cases[i].M,
                       cases[i].B, cases[i].g, b, cases[i].want);
    }
    QH_CHECK(qh_aqlm_bits_per_weight(1, 8, 8, rows, cols, 0) == 0.0, "no layers: 0");

    static const struct { int M, g, bits, B; } ok[] = { { 2, 8, 2, 8 }, { 1, 8, 2, 16 }, { 3, 8, 3, 8 }, { 1, 8, 1, 8 },
                                                        { 8, 32, 2, 8 } };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int B = 0;
        int st = qh_aqlm_code_bits(ok[i].M, ok[i].g, ok[i].bits, 64, &B);
        QH_CHECK(st == QH_OK && B == ok[i].B, "M=%d g=%d bits=%d: B = %d (want %d)", ok[i].M, ok[i].g, ok[i].bits, B,
                 ok[i].B);
    }
    int B;
    int st = qh_aqlm_code_bits(3, 8, 2, 64, &B);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "codebooks M = 3") && strstr(qh_last_error(), "group g = 8")
             && strstr(qh_last_error(), "bits = 2"), "B = 16/3 refused: %s", qh_last_error());
    st = qh_aqlm_code_bits(1, 8, 3, 64, &B);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "B = bits*g/M = 24"), "B = 24 > 16 refused: %s",
             qh_last_error());
    st = qh_aqlm_code_bits(2, 3, 2, 64, &B);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "group g = 3 does not divide"), "g = 3 of n = 64: %s",
             qh_last_error());
    qh_error_clear();

    /* codebooks = 0: the fewest codebooks of at most 8 code bits each. */
    static const struct { int g, bits, M; } autos[] = { { 8, 1, 1 }, { 8, 2, 2 }, { 8, 3, 3 }, { 8, 4, 4 },
                                                         { 4, 2, 1 }, { 4, 3, 2 }, { 16, 2, 4 }, { 2, 3, 1 } };
    for (size_t i = 0; i < sizeof autos / sizeof autos[0]; i++)
        QH_CHECK(qh_aqlm_auto_codebooks(autos[i].g, autos[i].bits) == autos[i].M, "auto codebooks g=%d bits=%d: %d "
                 "(want %d)", autos[i].g, autos[i].bits, qh_aqlm_auto_codebooks(autos[i].g, autos[i].bits),
                 autos[i].M);
}

/* ---- planted codebook ------------------------------------------------------------- */

static void test_planted(void)
{
    /* M = 1, g = 4, bits 1 → B = 4 (16 codewords); 4 planted patterns, each row a
     * permutation of them times a positive scale, so W/‖W_r‖ holds exactly 4 points. */
    size_t m = 24, n = 16, g = 4;
    static const double pat[4][4] = { { 1, -0.5, 0.25, 2 }, { -1.5, 1, 0.5, -0.25 }, { 0.75, 0.75, -2, 1 },
                                      { 0, -1, -1, 0.5 } };
    qh_rng r = qh_rng_stream(21, 0, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n), *H = correlated_H(n, 40, 1);
    for (size_t i = 0; i < m; i++) {
        int perm[4] = { 0, 1, 2, 3 };
        for (int t = 3; t > 0; t--) {
            int u = (int)qh_rng_below(&r, (uint64_t)t + 1), x = perm[t];
            perm[t] = perm[u];
            perm[u] = x;
        }
        double s = 0.5 + 1.5 * qh_rng_uniform(&r);
        for (size_t j = 0; j < n / g; j++)
            for (size_t a = 0; a < g; a++) QH_AT(W, i, j * g + a) = s * pat[perm[j]][a];
    }
    qh_matd *zero = qh_matd_alloc(m, n);
    double wn = fixture_naive_proxy(W, zero, H);
    const char *kv[] = { "codebooks", "1", "group", "4", "fp16", "0", NULL };
    qh_result res;
    qh_result_init(&res);
    int st = run_aqlm(kv, W, H, 1, 5, NULL, &res);
    QH_CHECK(st == QH_OK, "planted case runs: %s", qh_last_error());
    if (st == QH_OK)
        QH_CHECK(res.proxy_loss <= 1e-8 * wn, "planted 4 patterns recovered: proxy %.3g, relative %.3g (<= 1e-8)",
                 res.proxy_loss, res.proxy_loss / wn);
    qh_result_free(&res);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(zero);
}

/* ---- beam search: coordinate steps are exact --------------------------------------- */

static void test_beam_exact(void)
{
    size_t m = 7, n = 12;
    int M = 2, B = 3, g = 3;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 1, 0.3), *H = correlated_H(n, 30, 2), *What = qh_matd_alloc(m, n);
    solver s;
    solver_new(&s, W, H, M, B, g, 4);
    qh_aqlm_ctx *c = &s.c;
    solver_randomize(&s, 3);
    qh_aqlm_refresh(c);
    static const size_t steps[][2] = { { 1, 0 }, { 3, 1 }, { 1, 1 }, { 0, 0 }, { 2, 1 }, { 3, 0 }, { 0, 1 }, { 1, 0 } };
    size_t nsteps = sizeof steps / sizeof steps[0], worse = 0, differ = 0, total = 0, changed = 0;
    double *Lc = malloc(c->K * sizeof *Lc);
    for (size_t t = 0; t < nsteps; t++) {
        size_t j = steps[t][0], k = steps[t][1];
        uint16_t *code = c->codes + m * (j + c->J * k);
        uint16_t *want = malloc(m * sizeof *want);
        double *Lmin = malloc(m * sizeof *Lmin);
        for (size_t r = 0; r < m; r++) {                     /* brute force, row by row */
            uint16_t old = code[r];
            size_t best = old;
            for (size_t cc = 0; cc < c->K; cc++) {
                code[r] = (uint16_t)cc;
                naive_decode(c, What);
                Lc[cc] = fixture_naive_proxy(W, What, H);
            }
            for (size_t cc = 0; cc < c->K; cc++)          /* the old code wins ties */
                if (Lc[cc] < Lc[best]) best = cc;
            code[r] = old;
            want[r] = (uint16_t)best;
            Lmin[r] = Lc[best];
        }
        uint16_t *before = malloc(m * sizeof *before);
        memcpy(before, code, m * sizeof *before);
        qh_aqlm_beam_step(c, j, k);
        for (size_t r = 0; r < m; r++) {                     /* loss of the chosen code for row r alone */
            uint16_t *tmp = malloc(m * sizeof *tmp);
            memcpy(tmp, code, m * sizeof *tmp);
            memcpy(code, before, m * sizeof *code);
            code[r] = tmp[r];
            naive_decode(c, What);
            double L = fixture_naive_proxy(W, What, H);
            memcpy(code, tmp, m * sizeof *code);
            free(tmp);
            worse += L > Lmin[r] + 1e-10 * fabs(Lmin[r]);
            differ += code[r] != want[r];
            changed += code[r] != before[r];
            total++;
        }
        free(want);
        free(Lmin);
        free(before);
    }
    QH_CHECK(worse == 0, "beam steps: chosen code = brute-force argmin of the proxy (%zu of %zu worse by > 1e-10 rel.)",
             worse, total);
    QH_CHECK(differ == 0, "beam steps: codes identical to brute force (%zu of %zu differ)", differ, total);
    QH_CHECK(changed > 0, "the steps changed %zu codes (the test exercises updates)", changed);
    /* G and E are still consistent, and Σ E∘G is the naive proxy */
    qh_matd *Ecopy = qh_matd_copy(&c->E), *Gcopy = qh_matd_copy(&c->G);
    double L = qh_aqlm_loss(c);
    naive_decode(c, What);
    double Ln = fixture_naive_proxy(W, What, H);
    qh_aqlm_refresh(c);
    QH_CHECK(rel_diff_mat(Gcopy, &c->G) < 1e-12 && rel_diff_mat(Ecopy, &c->E) < 1e-12,
             "E and G kept current by the steps (rel. %.2g, %.2g; <= 1e-12)", rel_diff_mat(Ecopy, &c->E),
             rel_diff_mat(Gcopy, &c->G));
    QH_CHECK_CLOSE(L, Ln, 0.0, 1e-10, "loss %.12g = naive proxy %.12g", L, Ln);
    /* a whole pass lowers the proxy and equals an ordered sequence of exact steps */
    qh_rng rng = qh_rng_stream(1, 0, QH_RNG_TEST);
    double before = qh_aqlm_loss(c);
    qh_aqlm_beam_pass(c, &rng);
    QH_CHECK(qh_aqlm_loss(c) <= before, "a beam pass does not raise the proxy (%.6g -> %.6g)", before,
             qh_aqlm_loss(c));
    free(Lc);
    qh_matd_free(Ecopy);
    qh_matd_free(Gcopy);
    free(s.mem);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(What);
}

/* ---- codebook updates --------------------------------------------------------------- */

static double norm2(const double *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s);
}

static void test_codebook_updates(void)
{
    size_t m = 12, n = 16;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 4, 0.3), *H = correlated_H(n, 40, 5), *What = qh_matd_alloc(m, n);
    solver s;
    solver_new(&s, W, H, 2, 3, 4, 4);
    qh_aqlm_ctx *c = &s.c;
    size_t N = c->M * c->K * c->g;
    double *g0 = malloc(N * sizeof *g0), *g1 = malloc(N * sizeof *g1), *g2 = malloc(N * sizeof *g2);
    solver_randomize(&s, 6);
    double L0 = qh_aqlm_refresh(c);
    qh_aqlm_gradient(c, g0);
    int it = qh_aqlm_update_lstsq(c, 10000, 1e-14);
    double L1 = qh_aqlm_loss(c);
    qh_aqlm_gradient(c, g1);
    double r = norm2(g1, N) / norm2(g0, N);
    QH_CHECK(r <= 1e-8, "lstsq: |grad| after / before = %.3g (<= 1e-8, %d CG iterations)", r, it);
    QH_CHECK(L1 <= L0, "lstsq lowers the proxy: %.6g -> %.6g", L0, L1);
    /* the gradient by finite differences of the naive proxy at one entry agrees with qh_aqlm_gradient */
    size_t probe = 0;
    while (probe < N && g0[probe] == 0.0) probe++;
    solver_randomize(&s, 6);
    qh_aqlm_refresh(c);
    double h = 1e-6, save = c->cb[probe];
    c->cb[probe] = save + h;
    naive_decode(c, What);
    double Lp = fixture_naive_proxy(W, What, H);
    c->cb[probe] = save - h;
    naive_decode(c, What);
    double Lm = fixture_naive_proxy(W, What, H);
    c->cb[probe] = save;
    QH_CHECK_CLOSE((Lp - Lm) / (2 * h), g0[probe], 1e-6, 1e-6, "gradient entry %zu: finite difference %.9g vs %.9g",
                   probe, (Lp - Lm) / (2 * h), g0[probe]);
    /* any perturbation of the lstsq solution raises the proxy */
    qh_aqlm_update_lstsq(c, 10000, 1e-14);
    double Lstar = qh_aqlm_loss(c);
    qh_rng rr = qh_rng_stream(2, 0, QH_RNG_TEST);
    size_t lower = 0;
    for (int t = 0; t < 5; t++) {
        memcpy(g2, c->cb, N * sizeof *g2);
        for (size_t i = 0; i < N; i++) c->cb[i] += 1e-3 * qh_rng_normal(&rr);
        lower += qh_aqlm_refresh(c) < Lstar;
        memcpy(c->cb, g2, N * sizeof *g2);
    }
    qh_aqlm_refresh(c);
    QH_CHECK(lower == 0, "5 random perturbations of the lstsq optimum never lower the proxy (%zu did)", lower);

    /* Adam (reference settings except a larger lr for this tiny case) ends lower */
    solver_randomize(&s, 7);
    double A0 = qh_aqlm_refresh(c);
    qh_aqlm_update_adam(c, 100, 1e-2);
    double A1 = qh_aqlm_loss(c);
    QH_CHECK(A1 < A0, "adam (100 steps, lr 1e-2) lowers the proxy: %.6g -> %.6g", A0, A1);
    solver_randomize(&s, 7);
    qh_aqlm_refresh(c);
    qh_aqlm_update_lstsq(c, 10000, 1e-14);
    QH_CHECK(qh_aqlm_loss(c) <= A1 * (1 + 1e-12), "lstsq optimum %.6g <= adam's %.6g", qh_aqlm_loss(c), A1);

    /* scales: closed form is the per-row optimum */
    solver_randomize(&s, 8);
    double S0 = qh_aqlm_refresh(c);
    qh_aqlm_update_scales(c);
    double S1 = qh_aqlm_loss(c);
    size_t worse = 0;
    for (size_t i = 0; i < m; i++)
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            double keep = c->scale[i];
            c->scale[i] = keep * (1.0 + sgn * 1e-4);
            worse += qh_aqlm_refresh(c) < S1;
            c->scale[i] = keep;
        }
    qh_aqlm_refresh(c);
    QH_CHECK(S1 <= S0 && worse == 0, "scales: %.6g -> %.6g, no scale nudge lowers it (%zu did)", S0, S1, worse);
    free(g0); free(g1); free(g2);
    free(s.mem);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(What);
}

/* ---- monotone steps and epochs ---------------------------------------------------------- */

static void test_monotone(void)
{
    size_t m = 32, n = 32;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 9, 0.3), *H = correlated_H(n, 60, 10);
    solver s;
    solver_new(&s, W, H, 2, 4, 4, 10);
    qh_aqlm_ctx *c = &s.c;
    qh_rng rng = qh_rng_stream(3, 0, QH_RNG_TEST);
    qh_aqlm_init_scales(c);
    qh_aqlm_init_kmeans(c, 10, &rng);
    double L = qh_aqlm_refresh(c);
    size_t up = 0;
    for (int e = 0; e < 5; e++) {
        double a, b, d;
        qh_aqlm_beam_pass(c, &rng);
        a = qh_aqlm_loss(c);
        qh_aqlm_update_lstsq(c, 30, 1e-10);
        b = qh_aqlm_loss(c);
        qh_aqlm_update_scales(c);
        d = qh_aqlm_loss(c);
        up += (a > L * (1 + 1e-12)) + (b > a * (1 + 1e-12)) + (d > b * (1 + 1e-12));
        L = d;
    }
    QH_CHECK(up == 0, "beam pass, lstsq and scale fit never raise the proxy (15 steps, %zu increases)", up);

    qh_aqlm_params p = { .codebooks = 2, .group = 4, .epochs = 10, .tolerance = 0.0, .kmeans_iters = 10,
                         .update = QH_AQLM_LSTSQ, .cg_iters = 30, .adam_steps = 20, .adam_lr = 1e-3, .fp16 = 0,
                         .damp = 0.01 };
    for (int upd = 0; upd < 2; upd++) {
        p.update = upd;
        rng = qh_rng_stream(4, 0, QH_RNG_TEST);
        int epochs = qh_aqlm_run(c, &p, &rng);
        size_t bad = 0;
        for (size_t i = 1; i < c->n_trace; i++) bad += c->trace[i] > c->trace[i - 1];
        QH_CHECK(bad == 0 && c->n_trace == (size_t)epochs + 1 && epochs >= 1,
                 "%s: proxy non-increasing over %d epochs (%.6g -> %.6g, %zu increases)", upd ? "adam" : "lstsq",
                 epochs, c->trace[0], c->trace[c->n_trace - 1], bad);
        QH_CHECK_CLOSE(qh_aqlm_loss(c), c->trace[c->n_trace - 1], 0, 1e-9, "%s: final state is the best (%.9g vs %.9g)",
                       upd ? "adam" : "lstsq", qh_aqlm_loss(c), c->trace[c->n_trace - 1]);
        if (!upd) QH_CHECK(c->trace[c->n_trace - 1] < 0.9 * c->trace[0], "lstsq epochs improve on the k-means init "
                           "by > 10 %% (%.6g -> %.6g)", c->trace[0], c->trace[c->n_trace - 1]);
    }
    free(s.mem);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- H = I, M = 1: k-means -------------------------------------------------------------- */

static void naive_lloyd(const qh_matd *W, size_t g, size_t K, double *C, uint16_t *code, int iters)
{
    size_t m = W->rows, J = W->cols / g;
    for (int it = 0; it <= iters; it++) {
        for (size_t j = 0; j < J; j++)                     /* assign (ties: lowest index) */
            for (size_t r = 0; r < m; r++) {
                double bd = INFINITY;
                for (size_t c = 0; c < K; c++) {
                    double d = 0.0;
                    for (size_t a = 0; a < g; a++) {
                        double x = QH_AT(W, r, j * g + a) - C[c * g + a];
                        d += x * x;
                    }
                    if (d < bd) { bd = d; code[r + j * m] = (uint16_t)c; }
                }
            }
        if (it == iters) break;
        for (size_t c = 0; c < K; c++) {                  /* update (empty clusters keep theirs) */
            double cnt = 0.0, sum[16] = { 0 };
            for (size_t j = 0; j < J; j++)
                for (size_t r = 0; r < m; r++)
                    if (code[r + j * m] == c) {
                        cnt += 1.0;
                        for (size_t a = 0; a < g; a++) sum[a] += QH_AT(W, r, j * g + a);
                    }
            if (cnt > 0.0)
                for (size_t a = 0; a < g; a++) C[c * g + a] = sum[a] / cnt;
        }
    }
}

static void test_identity_kmeans(void)
{
    size_t m = 40, n = 16, g = 4, K = 16;
    int iters = 6;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 14, 0.3), *H = qh_matd_alloc(n, n);
    for (size_t i = 0; i < n; i++) QH_AT(H, i, i) = 1.0;
    solver s;
    solver_new(&s, W, H, 1, 4, (int)g, 2);
    qh_aqlm_ctx *c = &s.c;
    for (size_t r = 0; r < m; r++) c->scale[r] = 1.0;
    qh_rng rng = qh_rng_stream(5, 0, QH_RNG_TEST);
    qh_aqlm_init_kmeans(c, 0, &rng);                       /* initial centroids C0 */
    double *C = malloc(K * g * sizeof *C);
    uint16_t *code = malloc(m * (n / g) * sizeof *code);
    memcpy(C, c->cb, K * g * sizeof *C);
    naive_lloyd(W, g, K, C, code, iters);
    /* the library's k-means from the same stream */
    rng = qh_rng_stream(5, 0, QH_RNG_TEST);
    qh_aqlm_init_kmeans(c, iters, &rng);
    size_t same = 0;
    double dc = 0.0;
    for (size_t i = 0; i < m * (n / g); i++) same += c->codes[i] == code[i];
    for (size_t i = 0; i < K * g; i++) dc = fmax(dc, fabs(c->cb[i] - C[i]));
    QH_CHECK(same == m * (n / g) && dc < 1e-12, "k-means init = naive Lloyd (%d iterations): codes %zu/%zu, "
             "max centroid diff %.2g", iters, same, m * (n / g), dc);
    /* beam pass + lstsq with H = I and unit scales is Lloyd too */
    rng = qh_rng_stream(5, 0, QH_RNG_TEST);
    qh_aqlm_init_kmeans(c, 0, &rng);
    qh_aqlm_refresh(c);
    for (int it = 0; it < iters; it++) {
        qh_aqlm_beam_pass(c, &rng);
        qh_aqlm_update_lstsq(c, 50, 1e-14);
    }
    qh_aqlm_beam_pass(c, &rng);
    same = 0;
    dc = 0.0;
    for (size_t i = 0; i < m * (n / g); i++) same += c->codes[i] == code[i];
    for (size_t i = 0; i < K * g; i++) dc = fmax(dc, fabs(c->cb[i] - C[i]));
    QH_CHECK(same == m * (n / g) && dc < 1e-10, "H = I, M = 1: beam + lstsq = Lloyd: codes %zu/%zu, max centroid "
             "diff %.2g", same, m * (n / g), dc);
    double obj = 0.0;                                      /* the k-means objective of the final codes */
    for (size_t j = 0; j < n / g; j++)
        for (size_t r = 0; r < m; r++)
            for (size_t a = 0; a < g; a++) {
                double x = QH_AT(W, r, j * g + a) - c->cb[(size_t)c->codes[r + j * m] * g + a];
                obj += x * x;
            }
    QH_CHECK_CLOSE(qh_aqlm_loss(c), obj, 0, 1e-10, "proxy %.10g = k-means objective %.10g", qh_aqlm_loss(c), obj);
    free(C);
    free(code);
    free(s.mem);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- quality through the driver ----------------------------------------------------------- */

static void test_quality(void)
{
    size_t m = 64, n = 64;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 15, 0.3), *H = correlated_H(n, 200, 16);
    qh_result a, b, rtn, gptq;
    qh_result_init(&a);
    qh_result_init(&b);
    qh_result_init(&rtn);
    qh_result_init(&gptq);
    const char *kv1[] = { "codebooks", "1", NULL }, *kv2[] = { "codebooks", "2", NULL };
    int ok = run_aqlm(kv1, W, H, 1, 1, NULL, &a) == QH_OK && run_aqlm(kv2, W, H, 2, 1, NULL, &b) == QH_OK;
    qh_problem pb = { W, H, 2, 1, 3, "layers.0.fc1", NULL, NULL };
    ok = ok && qh_quantize(qh_method_find("rtn"), NULL, &pb, NULL, NULL, &rtn) == QH_OK
         && qh_quantize(qh_method_find("gptq"), NULL, &pb, NULL, NULL, &gptq) == QH_OK;
    QH_CHECK(ok, "1x8, 2x8, rtn and gptq run: %s", qh_last_error());
    if (ok) {
        QH_CHECK(b.proxy_loss < a.proxy_loss, "2x8 g8 (2 bits) %.5g < 1x8 g8 (1 bit) %.5g", b.proxy_loss, a.proxy_loss);
        QH_CHECK(b.proxy_loss < 0.5 * rtn.proxy_loss, "aqlm 2x8 %.5g < half of rtn 2-bit %.5g", b.proxy_loss,
                 rtn.proxy_loss);
        QH_CHECK(b.proxy_loss < gptq.proxy_loss, "aqlm 2x8 %.5g < gptq 2-bit %.5g", b.proxy_loss, gptq.proxy_loss);
        QH_NOTE("64x64, correlated H: aqlm 1x8 %.5g, 2x8 %.5g, rtn %.5g, gptq %.5g (2 bits)", a.proxy_loss,
                b.proxy_loss, rtn.proxy_loss, gptq.proxy_loss);
        QH_CHECK(fabs(b.bits_nominal - 2.0) < 1e-12 && fabs(a.bits_nominal - 1.0) < 1e-12,
                 "bits_nominal 2 and 1 (%g, %g)", b.bits_nominal, a.bits_nominal);
        double side = (2.0 * 256 * 8 * 16 + 16.0 * m) / (double)(m * n);
        QH_CHECK_CLOSE(b.bits_side, side, 1e-12, 0, "bits_side (M 2^B g 16 + 16 m)/(mn) = %g (got %g)", side,
                       b.bits_side);
        QH_CHECK_CLOSE(b.bits_total, b.bits_nominal + b.bits_side, 1e-12, 0, "bits_total = nominal + side");
        QH_CHECK(b.n_iterations >= 1 && b.n_greedy_passes == 0 && !strcmp(b.order, "natural")
                 && b.row_scale && !b.grid.step && b.damp_used > 0,
                 "epochs run %zu, order %s, row scales of their own, no grid", b.n_iterations, b.order);
    }
    qh_result_free(&a);
    qh_result_free(&b);
    qh_result_free(&rtn);
    qh_result_free(&gptq);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* Ŵ's normalized groups take at most K distinct values when M = 1; scales are FP16. */
static void test_structure(void)
{
    size_t m = 64, n = 64, g = 8, J = n / g, K = 256;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 17, 0.3), *H = correlated_H(n, 100, 18);
    qh_result r;
    qh_result_init(&r);
    const char *kv[] = { "codebooks", "1", "epochs", "3", NULL };
    int st = run_aqlm(kv, W, H, 1, 2, NULL, &r);
    QH_CHECK(st == QH_OK, "1x8 runs: %s", qh_last_error());
    if (st == QH_OK) {
        double *vecs = malloc(m * J * g * sizeof *vecs);
        size_t nd = 0, fp16_bad = 0;
        for (size_t i = 0; i < m; i++) {
            double s = r.row_scale[i];
            int e;
            double f = frexp(fabs(s), &e);
            fp16_bad += s != 0.0 && ldexp(f, 11) != round(ldexp(f, 11));
            for (size_t j = 0; j < J && s != 0.0; j++) {
                double v[8];
                for (size_t a = 0; a < g; a++) v[a] = QH_AT(r.What_proc, i, j * g + a) / s;
                size_t d = 0;
                for (; d < nd; d++) {
                    int same = 1;
                    for (size_t a = 0; a < g && same; a++)
                        same = fabs(vecs[d * g + a] - v[a]) <= 1e-12 * (1.0 + fabs(v[a]));
                    if (same) break;
                }
                if (d == nd) memcpy(vecs + g * nd++, v, sizeof v);
            }
        }
        QH_CHECK(nd <= K && nd > K / 4, "%zu distinct normalized groups among %zu (<= K = %zu)", nd, m * J, K);
        QH_CHECK(fp16_bad == 0, "row scales have 11 significant bits (%zu do not)", fp16_bad);
        free(vecs);
    }
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void test_driver(void)
{
    size_t m = 64, n = 64;
    qh_matd *W = fixture_gaussian_W(m, n, 11, 19, 0.3), *H = correlated_H(n, 100, 20);
    qh_result a, b, c, h;
    qh_result_init(&a);
    qh_result_init(&b);
    qh_result_init(&c);
    qh_result_init(&h);
    const char *kv[] = { "epochs", "4", NULL };
    int ok = run_aqlm(kv, W, H, 2, 7, NULL, &a) == QH_OK && run_aqlm(kv, W, H, 2, 7, NULL, &b) == QH_OK
             && run_aqlm(kv, W, H, 2, 8, NULL, &c) == QH_OK;
    QH_CHECK(ok, "three runs: %s", qh_last_error());
    if (ok) {
        QH_CHECK(!memcmp(a.What->data, b.What->data, m * n * sizeof(double)) && a.proxy_loss == b.proxy_loss,
                 "same seed: bit-identical What");
        QH_CHECK(memcmp(a.What->data, c.What->data, m * n * sizeof(double)) != 0, "another seed: another What");
        qh_matd *zero = qh_matd_alloc(m, n);
        double wn = fixture_naive_proxy(W, zero, a.H_proc);
        QH_CHECK_CLOSE(a.proxy_loss, fixture_naive_proxy(W, a.What, a.H_proc), 0, 1e-9, "driver proxy = naive proxy");
        QH_CHECK(a.proxy_loss < 0.5 * wn, "relative proxy %.4g < 0.5", a.proxy_loss / wn);
        qh_matd_free(zero);
    }
    qh_incoh_params ip = { .kind = QH_INCOH_HADAMARD, .seed = 3, .layer = 0 };
    int st = run_aqlm(kv, W, H, 2, 7, &ip, &h);
    QH_CHECK(st == QH_OK, "with hadamard incoherence: %s", qh_last_error());
    if (st == QH_OK && ok) {
        /* the proxy of the original-basis What against the original H equals the processed-basis proxy */
        double Lorig;
        qh_matd *Hs = qh_matd_copy(H);
        for (size_t i = 0; i < n; i++) QH_AT(Hs, i, i) += h.damp_used * qh_mean_diag(H);
        Lorig = fixture_naive_proxy(W, h.What, Hs);
        QH_CHECK_CLOSE(h.proxy_loss, Lorig, 0, 1e-6, "hadamard: processed proxy %.8g = original-basis proxy %.8g",
                       h.proxy_loss, Lorig);
        QH_CHECK(h.proxy_loss < 2.0 * a.proxy_loss && h.incoh_side_bits >= 0.0,
                 "hadamard proxy %.5g comparable to plain %.5g", h.proxy_loss, a.proxy_loss);
        QH_NOTE("64x64 2x8: proxy %.5g plain, %.5g with hadamard", a.proxy_loss, h.proxy_loss);
        qh_matd_free(Hs);
    }
    qh_result_free(&a);
    qh_result_free(&b);
    qh_result_free(&c);
    qh_result_free(&h);

    /* default codebooks = 0 at 3 bits: 3x8 g8, bits by the §10 formula */
    const char *kva[] = { "epochs", "1", NULL };
    qh_result_init(&a);
    st = run_aqlm(kva, W, H, 3, 7, NULL, &a);
    double side = (3.0 * 256 * 8 * 16 + 16.0 * m) / ((double)m * n);
    QH_CHECK(st == QH_OK && a.bits_nominal == 3.0 && fabs(a.bits_side - side) < 1e-12,
             "auto 3x8 at 3 bits: nominal %g (want 3), side %.6g (want %.6g)", a.bits_nominal, a.bits_side, side);
    qh_result_free(&a);

    /* bad input */
    qh_result r;
    qh_result_init(&r);
    const char *kv3[] = { "codebooks", "3", NULL };
    st = run_aqlm(kv3, W, H, 2, 0, NULL, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "codebooks M = 3") && strstr(qh_last_error(), "layers.0.fc1"),
             "codebooks 3 at 2 bits: %s", qh_last_error());
    const char *kv1[] = { "codebooks", "1", NULL };
    st = run_aqlm(kv1, W, H, 3, 0, NULL, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "B = bits*g/M = 24"), "1 codebook at 3 bits: %s",
             qh_last_error());
    const char *kvg[] = { "group", "48", NULL };
    st = run_aqlm(kvg, W, H, 2, 0, NULL, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "group g = 48 does not divide"), "group 48 of 64: %s",
             qh_last_error());
    qh_problem pb = { W, NULL, 2, 0, 0, "x", NULL, NULL };
    st = qh_quantize(&qh_method_aqlm, NULL, &pb, NULL, NULL, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "needs a Hessian"), "missing H: %s", qh_last_error());
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

int main(void)
{
    test_bits();
    test_planted();
    test_beam_exact();
    test_codebook_updates();
    test_monotone();
    test_identity_kmeans();
    test_quality();
    test_structure();
    test_driver();
    return qh_test_summary();
}
