/* test_methods.c -- the method table (core/qh_method.h) and the quantizers of
 * the QuIP family, looping over the registry where possible:
 *   parameters from descriptors; fast vs reference (awkward shapes);
 *   OPTQ ≡ forward LDLQ; H = I reduces every method to RTN; QuIP Theorem 1
 *   (Monte-Carlo means of ℓ against (m/c) tr D and (m/c) tr H, worst case
 *   (m/4) tr D); LDLQ ≤ nearest on average; the OPTQ finite-grid
 *   counterexample (methods reference §15); row-permutation and scaling
 *   equivariance; greedy passes never increase ℓ; determinism; incoherence
 *   round trip through the driver; bad inputs give clear errors. */
#include "qh_test.h"

#include <float.h>
#include <string.h>

#include "qh_blas.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_rows.h"

/* ---- inputs --------------------------------------------------------------- */

/* Deterministic high-entropy weights: Gaussian·2.385 + 0.3 offset per row. */
static qh_matd *random_W(size_t m, size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(7, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 2.385 * qh_rng_normal(&r) + 0.3 * (double)(i % 3);
    return W;
}

static qh_matd *uniform_W(size_t m, size_t n, double lo, double hi, uint32_t key)
{
    qh_rng r = qh_rng_stream(11, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = lo + (hi - lo) * qh_rng_uniform(&r);
    return W;
}

/* H = X Xᵀ/T with correlated, badly scaled rows (X n x T); SPD for T ≥ n. */
static qh_matd *random_H(size_t n, size_t T, uint32_t key)
{
    qh_rng r = qh_rng_stream(13, key, QH_RNG_TEST);
    qh_matd *X = qh_matd_alloc(n, T), *H = qh_matd_alloc(n, n);
    for (size_t t = 0; t < T; t++) {
        double common = qh_rng_normal(&r);
        for (size_t i = 0; i < n; i++)
            QH_AT(X, i, t) = (0.6 * common + qh_rng_normal(&r)) * (0.2 + (double)((i * 7) % 11) / 4.0);
    }
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double s = 0.0;
            for (size_t t = 0; t < T; t++) s += QH_AT(X, i, t) * QH_AT(X, j, t);
            QH_AT(H, i, j) = s / (double)T;
        }
    qh_matd_free(X);
    return H;
}

/* New params of m with key/value overrides.  Every key must be m's and its
 * value valid: a typo or a key the method lacks fails the test instead of
 * silently running the defaults. */
static void *params_with(const qh_method_type *m, const char *const *kv)
{
    void *p = qh_method_params_new(m);
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(m, p, kv[0], kv[1]) != QH_OK)
            QH_CHECK(0, "%s: parameter %s = %s: %s", m->name, kv[0], kv[1], qh_last_error());
    return p;
}

/* Runs method `name` with key/value overrides (each must be the method's). */
static int quantize(const char *name, const char *const *kv, const qh_matd *W, const qh_matd *H,
                    int bits, uint64_t seed, qh_result *res, int ref)
{
    const qh_method_type *m = qh_method_find(name);
    QH_ASSERT(m);
    void *p = params_with(m, kv);
    qh_problem pb = { W, H, bits, seed, 0, "test", NULL, NULL };
    int st = ref ? qh_quantize_ref(m, p, &pb, NULL, NULL, res) : qh_quantize(m, p, &pb, NULL, NULL, res);
    free(p);
    return st;
}

/* A scalar-grid row that takes the shared grid parameters (grid minmax|rms,
 * qh_quant.h); SignRound rounds onto RTN's min-max grid but has no such choice. */
static int shared_grid_row(const qh_method_type *m)
{
    if (!(m->needs & QH_NEEDS_GRID)) return 0;
    for (const qh_param_desc *d = m->params; d && d->key; d++)
        if (!strcmp(d->key, "grid")) return 1;
    return 0;
}

static size_t count_equal(const qh_matd *A, const qh_matd *B)
{
    size_t eq = 0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++) eq += QH_AT(A, i, j) == QH_AT(B, i, j);
    return eq;
}

/* Entries equal up to rtol (grids fitted on updated weights differ in the last bits). */
static size_t count_close(const qh_matd *A, const qh_matd *B, double rtol)
{
    size_t eq = 0;
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++) {
            double a = QH_AT(A, i, j), b = QH_AT(B, i, j);
            eq += fabs(a - b) <= rtol * fmax(fabs(a), fabs(b)) + 1e-300;
        }
    return eq;
}

static double loss_of(const qh_matd *W, const qh_matd *What, const qh_matd *H)
{
    double l = NAN;
    if (qh_lin_proxy_loss(W, What, H, &l) != QH_OK) return NAN;
    return l;
}

/* ---- registry and parameters ---------------------------------------------- */

static void test_registry(void)
{
    char names[256], buf[128];
    qh_method_names(names, sizeof names);
    size_t count = 0;
    for (const qh_method_type *const *m = qh_method_registry(); *m; m++, count++) {
        QH_CHECK((*m)->name && (*m)->version >= 1 && (*m)->quantize && (*m)->params_size > 0,
                 "row %zu is complete", count);
        QH_CHECK(qh_method_find((*m)->name) == *m, "%s found by name", (*m)->name);
        QH_CHECK(strstr(names, (*m)->name) != NULL, "%s in the names list", (*m)->name);
        void *p = qh_method_params_new(*m);
        for (const qh_param_desc *d = (*m)->params; d->key; d++) {
            qh_param_format(d, p, buf, sizeof buf);       /* default round-trips through set */
            QH_CHECK(qh_method_params_set(*m, p, d->key, buf) == QH_OK, "%s.%s = %s accepted: %s",
                     (*m)->name, d->key, buf, qh_last_error());
            if (d->type == QH_PARAM_INT || d->type == QH_PARAM_DOUBLE)
                QH_CHECK(d->def >= d->lo && d->def <= d->hi, "%s.%s default in range", (*m)->name, d->key);
        }
        if ((*m)->flops) {           /* the time estimate's count (pipeline/timing.h) */
            int lo, hi, partial = 0;
            qh_method_bits_range(*m, &lo, &hi);
            double f = (*m)->flops(p, lo, 64, 32, &partial);
            QH_CHECK(f > 0 && (*m)->flops_efficiency > 0 && (*m)->flops_efficiency <= 1,
                     "%s counts its work (%g flops at 64 x 32) at an efficiency in (0, 1] (%g)",
                     (*m)->name, f, (*m)->flops_efficiency);
        }
        free(p);
    }
    QH_CHECK(count >= 5, "at least the five scalar-grid methods registered (%zu)", count);
    for (const char *const *nm = (const char *const[]){ "rtn", "gptq", "ldlq", "ldlq_rg", "greedy", NULL }; *nm; nm++)
        QH_CHECK(qh_method_find(*nm) && (qh_method_find(*nm)->needs & QH_NEEDS_GRID), "%s registered (grid)", *nm);
    QH_CHECK(qh_method_find("quip_sharp_e8p") == NULL && qh_method_find(NULL) == NULL,
             "unknown names give NULL");

    const qh_method_type *g = qh_method_find("gptq");
    void *p = qh_method_params_new(g);
    QH_CHECK(qh_method_params_set(g, p, "blocksize", "64") == QH_OK, "set blocksize");
    qh_param_format(qh_method_param_find(g, "blocksize"), p, buf, sizeof buf);
    QH_CHECK(!strcmp(buf, "64"), "blocksize reads back 64 (%s)", buf);
    QH_CHECK(qh_method_params_set(g, p, "blocksize", "0") == QH_ECONFIG
             && strstr(qh_last_error(), "[1, 65536]"), "out of range: %s", qh_last_error());
    QH_CHECK(qh_method_params_set(g, p, "damp", "1e-2x") == QH_ECONFIG, "trailing junk rejected");
    QH_CHECK(qh_method_params_set(g, p, "rounding", "up") == QH_ECONFIG
             && strstr(qh_last_error(), "nearest|stochastic"), "bad enum: %s", qh_last_error());
    QH_CHECK(qh_method_params_set(g, p, "act_order", "true") == QH_OK, "bool true");
    QH_CHECK(qh_method_params_set(g, p, "npasses", "2") == QH_ECONFIG
             && strstr(qh_last_error(), "unknown parameter 'npasses'") && strstr(qh_last_error(), "blocksize"),
             "unknown key lists the valid ones: %s", qh_last_error());
    free(p);
}

/* The defaults both drivers take: QuIP's rms grid under any incoherence for
 * rows with a grid, the row's own defaults otherwise (and for other rows). */
static void test_params_defaults_for(void)
{
    for (const qh_method_type *const *m = qh_method_registry(); *m; m++) {
        const qh_param_desc *grid = qh_method_param_find(*m, "grid");
        void *p = qh_method_params_new(*m), *d = qh_method_params_new(*m);
        for (const qh_incoh_row *r = qh_incoh_table(); r->name; r++) {
            char buf[64] = "";
            QH_CHECK(qh_method_params_defaults_for(*m, p, r->kind) == QH_OK, "%s under %s", (*m)->name, r->name);
            if (grid) qh_param_format(grid, p, buf, sizeof buf);
            int want_rms = grid && r->kind != QH_INCOH_NONE;
            QH_CHECK(want_rms ? !strcmp(buf, "rms") : !memcmp(p, d, (*m)->params_size),
                     "%s under %s: %s", (*m)->name, r->name, want_rms ? "grid rms" : "the row's defaults");
        }
        QH_CHECK(qh_method_params_defaults_for(*m, p, QH_INCOH_NONE) == QH_OK && !memcmp(p, d, (*m)->params_size),
                 "%s: back to the row's defaults without incoherence", (*m)->name);
        free(p);
        free(d);
    }
}

/* ---- fast vs reference ---------------------------------------------------- */

static void test_fast_vs_ref(void)
{
    static const size_t shapes[][2] = { { 1, 1 }, { 3, 5 }, { 17, 64 }, { 64, 129 }, { 40, 300 } };
    static const char *const variants[][8] = {
        { NULL },
        { "rounding", "stochastic", NULL },
        { "grid", "rms", "order", "forward", NULL },
        { "blocksize", "7", NULL },
    };
    /* gptq's counterpart of ldlq's variant 2: act_order where ldlq has order */
    static const char *const gptq_v2[] = { "grid", "rms", "act_order", "1", NULL };
    for (const qh_method_type *const *m = qh_method_registry(); *m; m++) {
        if (!(*m)->quantize_ref) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
                size_t r = shapes[s][0], c = shapes[s][1];
                qh_matd *W = random_W(r, c, (uint32_t)(s * 10 + v)), *H = random_H(c, c + 8, (uint32_t)s);
                qh_result fast, ref;
                qh_result_init(&fast);
                qh_result_init(&ref);
                const char *const *kv = v == 2 && !qh_method_param_find(*m, "order") ? gptq_v2 : variants[v];
                int st1 = quantize((*m)->name, kv, W, H, 3, 5, &fast, 0);
                int st2 = quantize((*m)->name, kv, W, H, 3, 5, &ref, 1);
                QH_CHECK(st1 == QH_OK && st2 == QH_OK, "%s %zux%zu v%zu runs: %s", (*m)->name, r, c, v,
                         qh_last_error());
                if (st1 == QH_OK && st2 == QH_OK) {
                    double agree = (double)count_equal(fast.What, ref.What) / (double)(r * c);
                    QH_CHECK_CLOSE(fast.proxy_loss, ref.proxy_loss, 1e-12, (*m)->tol_ref,
                                   "%s %zux%zu v%zu: fast %.17g vs ref %.17g", (*m)->name, r, c, v,
                                   fast.proxy_loss, ref.proxy_loss);
                    QH_CHECK(agree == 1.0, "%s %zux%zu v%zu: codes agree %.6f", (*m)->name, r, c, v, agree);
                }
                qh_result_free(&fast);
                qh_result_free(&ref);
                qh_matd_free(W);
                qh_matd_free(H);
            }
    }
    /* Groups: blocks follow groups, and the reference fits each group on updated weights. */
    qh_matd *W = random_W(9, 96, 3), *H = random_H(96, 120, 4);
    for (const char *const *name = (const char *const[]){ "gptq", "ldlq", NULL }; *name; name++) {
        qh_result a, b;
        qh_result_init(&a);
        qh_result_init(&b);
        const char *kv_all[] = { "group", "32", "order", "forward", NULL };
        const char **kv = kv_all;
        if (!qh_method_param_find(qh_method_find(*name), "order")) kv[2] = NULL;   /* gptq: forward always */
        QH_CHECK(quantize(*name, kv, W, H, 4, 1, &a, 0) == QH_OK && quantize(*name, kv, W, H, 4, 1, &b, 1) == QH_OK,
                 "%s group 32 runs", *name);
        QH_CHECK(a.What && b.What && count_close(a.What, b.What, 1e-9) == 9 * 96,
                 "%s group 32: fast == ref up to 1e-9 (bit-identical: %zu / %d)", *name,
                 a.What && b.What ? count_equal(a.What, b.What) : 0, 9 * 96);
        QH_CHECK(a.grid.n_groups == 3 && fabs(a.bits_side - 20.0 / 32.0) < 1e-12,
                 "%s group 32: 3 groups, side bits (16+4)/32 (%g)", *name, a.bits_side);
        qh_result_free(&a);
        qh_result_free(&b);
    }
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- OPTQ ≡ forward LDLQ ---------------------------------------------------- */

static void test_gptq_equals_forward_ldlq(void)
{
    /* The reference's check: n = 48, W ∈ [0, 7]^{64×48}, integer grid, no clamp, no damping. */
    qh_matd *W = uniform_W(64, 48, 0.0, 7.0, 1), *H = random_H(48, 60, 21);
    const char *kv_g[] = { "grid", "integer", "clamp", "0", "damp", "0", NULL };
    const char *kv[] = { "grid", "integer", "clamp", "0", "damp", "0", "order", "forward", NULL };
    qh_result g, l;
    qh_result_init(&g);
    qh_result_init(&l);
    QH_CHECK(quantize("gptq", kv_g, W, H, 3, 0, &g, 0) == QH_OK && quantize("ldlq", kv, W, H, 3, 0, &l, 0) == QH_OK,
             "gptq and forward ldlq run");
    size_t eq = count_equal(g.What, l.What);
    QH_CHECK(eq == 64 * 48, "GPTQ == forward LDLQ bit-identical on the integer grid: %zu / %d", eq, 64 * 48);
    qh_result_free(&g);
    qh_result_free(&l);
    qh_matd_free(W);
    qh_matd_free(H);

    /* Production settings (min-max grid, clamping, 1 % damping) on a larger layer. */
    W = random_W(64, 256, 2);
    H = random_H(256, 300, 22);
    const char *kv2[] = { "order", "forward", NULL };
    qh_result_init(&g);
    qh_result_init(&l);
    QH_CHECK(quantize("gptq", NULL, W, H, 3, 0, &g, 0) == QH_OK && quantize("ldlq", kv2, W, H, 3, 0, &l, 0) == QH_OK,
             "gptq and forward ldlq run (minmax)");
    double frac = (double)count_equal(g.What, l.What) / (64.0 * 256.0);
    QH_CHECK(frac >= 0.999, "GPTQ vs forward LDLQ, minmax grid: agreement %.6f >= 0.999", frac);
    QH_CHECK_CLOSE(g.proxy_loss, l.proxy_loss, 0.0, 1e-3, "losses %g vs %g", g.proxy_loss, l.proxy_loss);
    QH_NOTE("GPTQ vs forward LDLQ (minmax, 64x256): agreement %.6f", frac);
    qh_result_free(&g);
    qh_result_free(&l);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- H = I reduces every method to RTN -------------------------------------- */

static void test_identity_hessian(void)
{
    size_t m = 17, n = 64;
    qh_matd *W = random_W(m, n, 5), *H = qh_matd_alloc(n, n);
    for (size_t i = 0; i < n; i++) QH_AT(H, i, i) = 1.0;
    static const char *const grids[] = { "minmax", "rms" };
    for (int gi = 0; gi < 2; gi++) {
        const char *kv[] = { "grid", grids[gi], NULL };
        qh_result rtn;
        qh_result_init(&rtn);
        QH_CHECK(quantize("rtn", kv, W, H, 3, 0, &rtn, 0) == QH_OK, "rtn runs");
        for (const qh_method_type *const *mt = qh_method_registry(); *mt; mt++) {
            if (!shared_grid_row(*mt)) continue;     /* scalar-grid rows with the grid choice */
            qh_result r;
            qh_result_init(&r);
            QH_CHECK(quantize((*mt)->name, kv, W, H, 3, 0, &r, 0) == QH_OK, "%s runs", (*mt)->name);
            QH_CHECK(r.What && count_equal(r.What, rtn.What) == m * n, "H = I: %s (%s) == rtn exactly",
                     (*mt)->name, grids[gi]);
            qh_result_free(&r);
        }
        qh_result_free(&rtn);
    }
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- QuIP Theorem 1 (Monte-Carlo), worst case, LDLQ ≤ nearest --------------- */

typedef struct { double sum, sum2, max; size_t n; } stat;
static void stat_add(stat *s, double x) { s->sum += x; s->sum2 += x * x; s->max = fmax(s->max, x); s->n++; }
static double stat_mean(const stat *s) { return s->sum / (double)s->n; }
static double stat_se(const stat *s)
{
    double mu = stat_mean(s), var = (s->sum2 - (double)s->n * mu * mu) / (double)(s->n - 1);
    return sqrt(fmax(var, 0.0) / (double)s->n);
}

static void test_theorem1(void)
{
    size_t m = 64, n = 48, draws = qh_test_fast() ? 100 : 400;
    qh_matd *H = random_H(n, 60, 31), *F = qh_matd_alloc(n, n);
    double *D = calloc(n, sizeof *D), *Drev = calloc(n, sizeof *Drev), trD = 0, trDrev = 0, trH = 0;
    QH_CHECK(qh_ldl_factor(H, QH_LDL_FORWARD, F, D) == QH_OK, "LDL of H");
    QH_CHECK(qh_ldl_factor(H, QH_LDL_REVERSE, F, Drev) == QH_OK, "reverse LDL of H");
    for (size_t k = 0; k < n; k++) { trD += D[k]; trDrev += Drev[k]; trH += QH_AT(H, k, k); }
    QH_NOTE("Monte-Carlo m=%zu n=%zu: tr D = %.4g (reverse %.4g), tr H = %.4g", m, n, trD, trDrev, trH);
    QH_CHECK(trD < trH, "tr D < tr H for a non-diagonal H");

    const char *base[] = { "grid", "integer", "clamp", "0", "damp", "0", NULL };
    const char *ldlq_st[] = { "grid", "integer", "clamp", "0", "damp", "0", "order", "forward",
                              "rounding", "stochastic", NULL };
    const char *ldlq_nr[] = { "grid", "integer", "clamp", "0", "damp", "0", "order", "forward", NULL };
    const char *rtn_nr[] = { "grid", "integer", "clamp", "0", NULL };    /* rtn has no damping */
    const char *rtn_st[] = { "grid", "integer", "clamp", "0", "rounding", "stochastic", NULL };
    stat s_ldlq_st = { 0 }, s_ldlq_nr = { 0 }, s_ldlq_rev = { 0 }, s_rtn_nr = { 0 }, s_rtn_st = { 0 };
    size_t over_worst = 0;
    for (size_t d = 0; d < draws; d++) {
        qh_matd *W = uniform_W(m, n, 0.0, 1.0, (uint32_t)(1000 + d));
        qh_result r;
        qh_result_init(&r);
        if (quantize("ldlq", ldlq_st, W, H, 2, d, &r, 0) == QH_OK) stat_add(&s_ldlq_st, r.proxy_loss);
        if (quantize("ldlq", ldlq_nr, W, H, 2, d, &r, 0) == QH_OK) {
            stat_add(&s_ldlq_nr, r.proxy_loss);
            over_worst += r.proxy_loss > (double)m / 4.0 * trD;
        }
        if (quantize("ldlq", base, W, H, 2, d, &r, 0) == QH_OK) {       /* reverse (default) */
            stat_add(&s_ldlq_rev, r.proxy_loss);
            over_worst += r.proxy_loss > (double)m / 4.0 * trDrev;
        }
        if (quantize("rtn", rtn_nr, W, H, 2, d, &r, 0) == QH_OK) stat_add(&s_rtn_nr, r.proxy_loss);
        if (quantize("rtn", rtn_st, W, H, 2, d, &r, 0) == QH_OK) stat_add(&s_rtn_st, r.proxy_loss);
        qh_result_free(&r);
        qh_matd_free(W);
    }
    QH_CHECK(s_ldlq_st.n == draws && s_rtn_st.n == draws && s_rtn_nr.n == draws, "all draws ran");
    double want;
    want = (double)m / 6.0 * trD;
    QH_CHECK(fabs(stat_mean(&s_ldlq_st) - want) <= 3.0 * stat_se(&s_ldlq_st),
             "stochastic LDLQ mean %.5g vs (m/6) tr D = %.5g (3 SE = %.3g)", stat_mean(&s_ldlq_st), want,
             3.0 * stat_se(&s_ldlq_st));
    want = (double)m / 12.0 * trH;
    QH_CHECK(fabs(stat_mean(&s_rtn_nr) - want) <= 3.0 * stat_se(&s_rtn_nr),
             "nearest RTN mean %.5g vs (m/12) tr H = %.5g (3 SE = %.3g)", stat_mean(&s_rtn_nr), want,
             3.0 * stat_se(&s_rtn_nr));
    want = (double)m / 6.0 * trH;
    QH_CHECK(fabs(stat_mean(&s_rtn_st) - want) <= 3.0 * stat_se(&s_rtn_st),
             "stochastic RTN mean %.5g vs (m/6) tr H = %.5g (3 SE = %.3g)", stat_mean(&s_rtn_st), want,
             3.0 * stat_se(&s_rtn_st));
    /* Nearest LDLQ: (m/12) tr D holds when the rounding errors are uniform, which
     * the feedback makes only approximately so: 3 SE plus 2 %. */
    want = (double)m / 12.0 * trD;
    QH_CHECK(fabs(stat_mean(&s_ldlq_nr) - want) <= 3.0 * stat_se(&s_ldlq_nr) + 0.02 * want,
             "nearest LDLQ mean %.5g vs (m/12) tr D = %.5g", stat_mean(&s_ldlq_nr), want);
    want = (double)m / 12.0 * trDrev;
    QH_CHECK(fabs(stat_mean(&s_ldlq_rev) - want) <= 3.0 * stat_se(&s_ldlq_rev) + 0.02 * want,
             "nearest reverse LDLQ mean %.5g vs (m/12) tr D_rev = %.5g", stat_mean(&s_ldlq_rev), want);
    QH_CHECK(over_worst == 0, "no nearest-LDLQ trial exceeds (m/4) tr D (%zu did)", over_worst);
    QH_NOTE("means: LDLQ stoch %.5g, LDLQ nearest %.5g (max %.5g <= %.5g), RTN nearest %.5g, RTN stoch %.5g",
            stat_mean(&s_ldlq_st), stat_mean(&s_ldlq_nr), s_ldlq_nr.max, (double)m / 4.0 * trD,
            stat_mean(&s_rtn_nr), stat_mean(&s_rtn_st));
    free(D);
    free(Drev);
    qh_matd_free(F);
    qh_matd_free(H);
}

static void test_ldlq_beats_nearest(void)
{
    size_t m = 16, n = 32, n_h = qh_test_fast() ? 6 : 20, draws = 20, worse = 0;
    double sum_ldlq = 0.0, sum_rtn = 0.0;
    const char *kv[] = { "grid", "integer", "clamp", "0", "damp", "0", NULL };
    const char *kv_rtn[] = { "grid", "integer", "clamp", "0", NULL };
    for (size_t h = 0; h < n_h; h++) {
        qh_matd *H = random_H(n, n + (h % 3) * 8, (uint32_t)(500 + h));
        double a = 0.0, b = 0.0;
        for (size_t d = 0; d < draws; d++) {
            qh_matd *W = uniform_W(m, n, 0.0, 1.0, (uint32_t)(7000 + 100 * h + d));
            qh_result r;
            qh_result_init(&r);
            if (quantize("ldlq", kv, W, H, 2, d, &r, 0) == QH_OK) a += r.proxy_loss;
            if (quantize("rtn", kv_rtn, W, H, 2, d, &r, 0) == QH_OK) b += r.proxy_loss;
            qh_result_free(&r);
            qh_matd_free(W);
        }
        worse += a > b;
        sum_ldlq += a;
        sum_rtn += b;
        qh_matd_free(H);
    }
    QH_CHECK(worse == 0 && sum_ldlq < sum_rtn,
             "LDLQ mean loss not above nearest on any of %zu random PSD H (%zu were; totals %g vs %g)",
             n_h, worse, sum_ldlq, sum_rtn);
}

/* ---- the OPTQ finite-grid counterexample (reference §15, optq_counter.py) -------- */

/* Tolerance 0.5 %: the reference table gives three significant digits. */
static void counterexample(size_t n, double want_ldlq, double want_nearest)
{
    const double c = 0.01;
    qh_matd *H = qh_matd_alloc(n, n), *W = qh_matd_alloc(n, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) QH_AT(H, i, j) = 1.0 + (i == j);
    QH_AT(H, n - 1, n - 1) = 1.0;
    for (size_t j = 1; j < n - 1; j++) { QH_AT(H, 0, j) += 2 * c; QH_AT(H, j, 0) += 2 * c; }
    QH_AT(H, 0, n - 1) += c;
    QH_AT(H, n - 1, 0) += c;
    QH_AT(H, 0, 0) += 4 * c + (double)n * c * c;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) QH_AT(W, i, j) = j % 2 ? 0.501 : 0.499;
    const char *kv[] = { "grid", "integer", "clamp", "1", "damp", "0", "order", "forward", NULL };
    const char *kv_rtn[] = { "grid", "integer", "clamp", "1", NULL };
    qh_result l, r;
    qh_result_init(&l);
    qh_result_init(&r);
    QH_CHECK(quantize("ldlq", kv, W, H, 2, 0, &l, 0) == QH_OK && quantize("rtn", kv_rtn, W, H, 2, 0, &r, 0) == QH_OK,
             "counterexample n=%zu runs: %s", n, qh_last_error());
    QH_CHECK_CLOSE(l.proxy_loss, want_ldlq, 0.0, 0.005, "n=%zu: LDLQ det. clamped %.4g vs %.3g", n,
                   l.proxy_loss, want_ldlq);
    QH_CHECK_CLOSE(r.proxy_loss, want_nearest, 0.0, 0.005, "n=%zu: nearest %.4g vs %.3g", n, r.proxy_loss,
                   want_nearest);
    QH_NOTE("counterexample n=%zu: LDLQ %.4g (want %.3g), nearest %.4g (want %.3g)", n, l.proxy_loss,
            want_ldlq, r.proxy_loss, want_nearest);
    qh_result_free(&l);
    qh_result_free(&r);
    qh_matd_free(H);
    qh_matd_free(W);
}

static void test_counterexample(void)
{
    counterexample(128, 4.96e5, 4.05e3);
    if (qh_test_fast()) { QH_SKIP("counterexample n = 256, 512 (QH_TEST_FAST)"); return; }
    counterexample(256, 4.08e6, 1.63e4);
    counterexample(512, 3.31e7, 6.52e4);
}

/* ---- equivariance, greedy monotonicity, determinism ------------------------- */

static void test_equivariance(void)
{
    size_t m = 17, n = 64;
    qh_matd *W = random_W(m, n, 41), *H = random_H(n, 80, 42);
    qh_matd *Wp = qh_matd_alloc(m, n), *Ws = qh_matd_alloc(m, n);
    size_t perm[17];
    for (size_t i = 0; i < m; i++) perm[i] = (i * 5 + 3) % m;    /* 5 is invertible mod 17 */
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            QH_AT(Wp, i, j) = QH_AT(W, perm[i], j);
            QH_AT(Ws, i, j) = 4.0 * QH_AT(W, i, j);                 /* power of 2: exact */
        }
    static const char *const grids[] = { "minmax", "rms" };
    for (const qh_method_type *const *mt = qh_method_registry(); *mt; mt++)
        for (int g = 0; g < 2 && shared_grid_row(*mt); g++) {   /* grid-relative rows */
            const char *kv[] = { "grid", grids[g], NULL };
            qh_result a, b, s;
            qh_result_init(&a);
            qh_result_init(&b);
            qh_result_init(&s);
            int ok = quantize((*mt)->name, kv, W, H, 3, 0, &a, 0) == QH_OK
                     && quantize((*mt)->name, kv, Wp, H, 3, 0, &b, 0) == QH_OK
                     && quantize((*mt)->name, kv, Ws, H, 3, 0, &s, 0) == QH_OK;
            QH_CHECK(ok, "%s runs", (*mt)->name);
            size_t perm_eq = 0, scale_eq = 0;
            for (size_t j = 0; ok && j < n; j++)
                for (size_t i = 0; i < m; i++) {
                    /* exact for minmax; the rms scale sums W in another order: 1e-12 */
                    double x = QH_AT(a.What, perm[i], j), y = 4.0 * QH_AT(a.What, i, j);
                    perm_eq += fabs(QH_AT(b.What, i, j) - x) <= 1e-12 * fabs(x);
                    scale_eq += fabs(QH_AT(s.What, i, j) - y) <= 1e-12 * fabs(y);
                }
            QH_CHECK(perm_eq == m * n, "%s (%s): permuting rows of W permutes rows of What (%zu/%zu)",
                     (*mt)->name, grids[g], perm_eq, m * n);
            QH_CHECK(scale_eq == m * n, "%s (%s): What(4W) == 4 What(W) (%zu/%zu)", (*mt)->name, grids[g],
                     scale_eq, m * n);
            qh_result_free(&a);
            qh_result_free(&b);
            qh_result_free(&s);
        }
    qh_matd_free(W); qh_matd_free(Wp); qh_matd_free(Ws); qh_matd_free(H);
}

static void test_greedy_monotone(void)
{
    size_t m = 24, n = 96;
    qh_matd *W = random_W(m, n, 51), *H = random_H(n, 110, 52);
    static const char *const methods[] = { "ldlq_rg", "greedy" };
    for (int k = 0; k < 2; k++) {
        double prev = INFINITY;
        size_t bad = 0;
        for (int passes = k; passes <= 5; passes++) {
            char np[8];
            snprintf(np, sizeof np, "%d", passes);
            const char *kv[] = { "npasses", np, "blocksize", "32", NULL };
            qh_result r;
            qh_result_init(&r);
            QH_CHECK(quantize(methods[k], kv, W, H, 2, 0, &r, 0) == QH_OK, "%s npasses %d", methods[k], passes);
            bad += r.proxy_loss > prev * (1.0 + 1e-12);
            if (passes >= 1) QH_CHECK(r.n_greedy_passes >= 1 && r.n_greedy_passes <= (size_t)passes,
                                      "%s: passes run %zu <= %d", methods[k], r.n_greedy_passes, passes);
            prev = r.proxy_loss;
            qh_result_free(&r);
        }
        QH_CHECK(bad == 0, "%s: more passes never increase the proxy loss (%zu increases)", methods[k], bad);
    }
    /* LDLQ-RG with passes is no worse than its LDLQ start in the same order. */
    qh_result a, b;
    qh_result_init(&a);
    qh_result_init(&b);
    const char *kv0[] = { "npasses", "0", NULL }, *kv2[] = { "npasses", "2", NULL };
    QH_CHECK(quantize("ldlq_rg", kv0, W, H, 2, 0, &a, 0) == QH_OK && quantize("ldlq_rg", kv2, W, H, 2, 0, &b, 0) == QH_OK,
             "ldlq_rg runs");
    QH_CHECK(b.proxy_loss <= a.proxy_loss && !strcmp(b.order, "diag_desc"),
             "ldlq_rg passes improve LDLQ: %g <= %g (order %s)", b.proxy_loss, a.proxy_loss, b.order);
    qh_result_free(&a);
    qh_result_free(&b);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* `want` if method m accepts it, else the nearest width it accepts. */
static int valid_bits(const qh_method_type *m, int want)
{
    int lo, hi;
    qh_method_bits_range(m, &lo, &hi);
    return want < lo ? lo : want > hi ? hi : want;
}

static void test_determinism(void)
{
    size_t m = 17, n = 64;
    qh_matd *W = random_W(m, n, 61), *H = random_H(n, 70, 62);
    const char *kv[] = { "rounding", "stochastic", NULL };
    for (const qh_method_type *const *mt = qh_method_registry(); *mt; mt++) {
        qh_result a, b, c;
        qh_result_init(&a);
        qh_result_init(&b);
        qh_result_init(&c);
        int b3 = valid_bits(*mt, 3);
        /* stochastic rounding where the row has it; the others' own randomness */
        const char *const *kvm = qh_method_param_find(*mt, "rounding") ? kv : NULL;
        int ok = quantize((*mt)->name, kvm, W, H, b3, 123, &a, 0) == QH_OK
                 && quantize((*mt)->name, kvm, W, H, b3, 123, &b, 0) == QH_OK
                 && quantize((*mt)->name, kvm, W, H, b3, 124, &c, 0) == QH_OK;
        QH_CHECK(ok, "%s runs", (*mt)->name);
        QH_CHECK(ok && !memcmp(a.What->data, b.What->data, m * n * sizeof(double))
                 && a.proxy_loss == b.proxy_loss, "%s: same seed, identical bytes", (*mt)->name);
        if (ok && qh_method_param_find(*mt, "rounding"))
            QH_CHECK(count_equal(a.What, c.What) < m * n, "%s stochastic: another seed changes codes", (*mt)->name);
        qh_result_free(&a);
        qh_result_free(&b);
        qh_result_free(&c);
    }
    qh_matd_free(W);
    qh_matd_free(H);
}

/* A result struct reused across calls (shape changes and back) gives the same output. */
static void test_result_reuse(void)
{
    qh_matd *W = random_W(17, 64, 65), *H = random_H(64, 70, 66), *W2 = random_W(3, 5, 67);
    const qh_method_type *g = qh_method_find("gptq"), *r = qh_method_find("rtn");
    qh_problem p1 = { W, H, 3, 0, 0, "a", NULL, NULL }, p2 = { W2, NULL, 3, 0, 0, "b", NULL, NULL };
    qh_result res, fresh;
    qh_result_init(&res);
    qh_result_init(&fresh);
    int ok = qh_quantize(g, NULL, &p1, NULL, NULL, &fresh) == QH_OK
             && qh_quantize(g, NULL, &p1, NULL, NULL, &res) == QH_OK
             && qh_quantize(r, NULL, &p2, NULL, NULL, &res) == QH_OK;
    QH_CHECK(ok && res.rows == 3 && res.cols == 5 && res.H_proc == NULL && res.What->rows == 3,
             "reused result takes the new shape, no H");
    ok = ok && qh_quantize(g, NULL, &p1, NULL, NULL, &res) == QH_OK;
    QH_CHECK(ok && count_equal(res.What, fresh.What) == 17 * 64 && res.proxy_loss == fresh.proxy_loss
             && res.n_dead_cols == 0 && res.grid.n_groups == 1, "reused result == fresh result");
    qh_result_free(&res);
    qh_result_free(&fresh);
    qh_matd_free(W); qh_matd_free(H); qh_matd_free(W2);
}

/* ---- result fields, dead columns, incoherence ------------------------------ */

static void test_result_fields(void)
{
    size_t m = 8, n = 40;
    qh_matd *W = random_W(m, n, 71), *H = random_H(n, 50, 72);
    for (size_t k = 0; k < n; k++) QH_AT(H, 3, k) = QH_AT(H, k, 3) = 0.0;        /* dead input 3 */
    qh_result r;
    qh_result_init(&r);
    const char *kv[] = { "act_order", "1", NULL };
    QH_CHECK(quantize("gptq", kv, W, H, 4, 0, &r, 0) == QH_OK, "gptq with a dead column runs");
    QH_CHECK(r.n_dead_cols == 1 && r.n_damp_retries == 0 && r.damp_used == 0.01, "dead 1, retries 0, damp 0.01");
    QH_CHECK(QH_AT(r.W_proc, 0, 3) == 0.0 && QH_AT(r.What, 5, 3) == 0.0, "dead column: W and What zero");
    QH_CHECK(!strcmp(r.order, "diag_desc"), "act_order recorded as diag_desc (%s)", r.order);
    int perm_ok = 1;                 /* col_order sorted by descending diag of the (undamped) H */
    for (size_t k = 1; k < n; k++)
        perm_ok &= QH_AT(r.H_proc, r.col_order[k - 1], r.col_order[k - 1]) >= QH_AT(r.H_proc, r.col_order[k], r.col_order[k]);
    QH_CHECK(perm_ok, "col_order by descending diag(H)");
    QH_CHECK(r.bits_nominal == 4 && fabs(r.bits_side - 20.0 / 40.0) < 1e-12 && r.bits_total == r.bits_nominal + r.bits_side,
             "bits: nominal 4, side (16+4)/n, total = sum");
    double l = loss_of(r.W_proc, r.What_proc, r.H_proc);
    QH_CHECK_CLOSE(r.proxy_loss, l, 0.0, 1e-12, "proxy_loss is against H_proc");
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void test_incoherence(void)
{
    size_t m = 24, n = 64;
    qh_matd *W = random_W(m, n, 81), *H = random_H(n, 80, 82);
    static const qh_incoh_kind kinds[] = { QH_INCOH_KRON, QH_INCOH_HADAMARD };
    for (int k = 0; k < 2; k++) {
        const qh_method_type *mt = qh_method_find("ldlq");
        void *p = params_with(mt, (const char *const[]){ "grid", "rms", NULL });
        qh_incoh_params ip = { kinds[k], 0, 5, 3, 0 };
        qh_problem pb = { W, H, 2, 5, 3, "incoh", NULL, NULL };
        qh_result r;
        qh_result_init(&r);
        int st = qh_quantize(mt, p, &pb, &ip, NULL, &r);
        QH_CHECK(st == QH_OK, "QuIP (ldlq + rms + incoherence %d) runs: %s", k, qh_last_error());
        if (st == QH_OK) {
            /* Original-basis proxy with the equally damped original H equals the processed one. */
            qh_matd *Hd = qh_matd_copy(H);
            double mean = qh_mean_diag(H);
            for (size_t i = 0; i < n; i++) QH_AT(Hd, i, i) += r.damp_used * mean;
            double l = loss_of(W, r.What, Hd);
            QH_CHECK_CLOSE(l, r.proxy_loss, 0.0, 1e-8, "incoherence %d: proxy in both bases %g vs %g",
                           k, l, r.proxy_loss);
            QH_CHECK(count_equal(r.W_proc, W) < m * n && qh_matd_all_finite(r.What), "processed basis differs");
            qh_matd_free(Hd);
        }
        qh_result_free(&r);
        free(p);
    }
    /* With the D̃ rescale: runs, finite, side information counted (16 bits per input). */
    const qh_method_type *mt = qh_method_find("ldlq");
    qh_incoh_params ip = { QH_INCOH_KRON, 1, 5, 3, 0 };
    qh_problem pb = { W, H, 2, 5, 3, "incoh.rescale", NULL, NULL };
    qh_result r;
    qh_result_init(&r);
    int st = qh_quantize(mt, NULL, &pb, &ip, NULL, &r);
    QH_CHECK(st == QH_OK && qh_matd_all_finite(r.What) && r.incoh_side_bits == 16.0 * (double)n
             && fabs(r.bits_side - (18.0 / (double)n + 16.0 / (double)m)) < 1e-12,   /* (16+b)/n + 16n/(mn) */
             "incoherence with rescale: status %d, side bits %g (%s)", st, r.bits_side, qh_last_error());
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- bad inputs --------------------------------------------------------------- */

static void expect_error(const qh_method_type *mt, const qh_matd *W, const qh_matd *H, int bits,
                         int want, const char *needle, const char *what)
{
    qh_problem pb = { W, H, bits, 0, 0, "layers.1.fc2", NULL, NULL };
    qh_result r;
    qh_result_init(&r);
    int st = qh_quantize(mt, NULL, &pb, NULL, NULL, &r);
    QH_CHECK(st == want && strstr(qh_last_error(), needle) != NULL, "%s %s: status %d (want %d), message: %s",
             mt->name, what, st, want, qh_last_error());
    qh_result_free(&r);
}

static void test_bad_inputs(void)
{
    size_t m = 5, n = 8;
    qh_matd *W = random_W(m, n, 91), *H = random_H(n, 12, 92);
    qh_matd *Wnan = qh_matd_copy(W), *Hnan = qh_matd_copy(H), *Hbad = qh_matd_alloc(n, n);
    qh_matd *Hwrong = qh_matd_alloc(n + 1, n + 1), *W0 = qh_matd_alloc(0, n);
    QH_AT(Wnan, 2, 3) = NAN;
    QH_AT(Hnan, 1, 1) = INFINITY;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) QH_AT(Hbad, i, j) = (i == j) ? 1.0 : 5.0;   /* eigenvalue −34 */
    for (const qh_method_type *const *mt = qh_method_registry(); *mt; mt++) {
        int b3 = valid_bits(*mt, 3);
        expect_error(*mt, Wnan, H, b3, QH_ENAN, "layers.1.fc2: W", "NaN in W");
        expect_error(*mt, W0, H, b3, QH_EINVAL, "0 x 8", "zero-size W");
        expect_error(*mt, W, H, 0, QH_EINVAL, "bits = 0", "bits 0");
        expect_error(*mt, W, H, 9, QH_EINVAL, "bits = 9", "bits 9");
        expect_error(*mt, W, Hwrong, b3, QH_EBADLEN, "9 x 9", "mismatched H");
        if ((*mt)->needs & QH_NEEDS_HESSIAN) {
            expect_error(*mt, W, Hnan, b3, QH_ENAN, "layers.1.fc2: H", "Inf in H");
            expect_error(*mt, W, Hbad, b3, QH_ENOTPD, "not positive definite", "non-PSD H");
            expect_error(*mt, W, NULL, b3, QH_EINVAL, "needs a Hessian", "missing H");
        }
        /* group not dividing n */
        if (!qh_method_param_find(*mt, "group")) continue;
        void *p = params_with(*mt, (const char *const[]){ "group", "3", NULL });
        qh_problem pb = { W, H, valid_bits(*mt, 3), 0, 0, "layers.1.fc2", NULL, NULL };
        qh_result r;
        qh_result_init(&r);
        int st = qh_quantize(*mt, p, &pb, NULL, NULL, &r);
        QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "does not divide") && strstr(qh_last_error(), "layers.1.fc2"),
                 "%s group 3 of 8: %d %s", (*mt)->name, st, qh_last_error());
        qh_result_free(&r);
        free(p);
    }
    QH_CHECK(qh_quantize(NULL, NULL, &(qh_problem){ W, H, 3, 0, 0, NULL, NULL, NULL }, NULL, NULL,
                         &(qh_result){ 0 }) == QH_EINVAL, "NULL method rejected");
    qh_matd_free(W); qh_matd_free(H); qh_matd_free(Wnan); qh_matd_free(Hnan);
    qh_matd_free(Hbad); qh_matd_free(Hwrong); qh_matd_free(W0);
}

/* ---- row threads (qh_rows.h) ------------------------------------------------ */

/* Every row of the OPTQ/LDLQ family's column loops runs alone given the shared
 * factor, so 1, 2 and 3 row threads (3: an uneven split; m = 200 also puts the
 * chunk starts on multiples of 8) give the same bytes, the same loss and the
 * same count of greedy passes, for every configuration that has its own code
 * path: grouped fits per row, act-order, rms grids (per column: a fit across
 * rows between barriers), clipping, rounding hooks (ternary, bitnet1, gptqt),
 * greedy passes with both clamp modes, stochastic rounding (one thread).
 * OpenBLAS runs at one thread throughout (the row loops always do when
 * split; its threaded factorisations may round otherwise). */
static void test_row_threads(void)
{
    static const struct { const char *name; const char *kv[9]; } cases[] = {
        { "gptq", { NULL } },
        { "gptq", { "act_order", "1", "blocksize", "32", NULL } },
        { "gptq", { "group", "32", "clip", "mse", NULL } },
        { "gptq", { "grid", "rms", "rms_scope", "column", "blocksize", "48", NULL } },
        { "gptq", { "rounding", "stochastic", NULL } },
        { "ldlq", { "blocksize", "32", NULL } },
        { "ldlq", { "order", "forward", "group", "32", "clamp_w", "1", NULL } },
        { "ldlq", { "grid", "rms", "rounding", "stochastic", NULL } },
        { "ldlq_rg", { "npasses", "3", "blocksize", "32", NULL } },
        { "ldlq_rg", { "group", "32", "npasses", "4", "pass_clamp", "pass", "clamp_w", "1", NULL } },
        { "greedy", { "blocksize", "32", NULL } },
        { "greedy", { "group", "32", "pass_clamp", "pass", NULL } },
        { "ternary", { "feedback", "1", NULL } },
        { "ternary", { "feedback", "1", "scope", "row", "group", "32", NULL } },
        { "bitnet1", { "feedback", "1", "group", "32", NULL } },
        { "gptqt", { "group", "32", NULL } },
    };
    /* 517 = 32·16 + 5 rows: OpenBLAS blocks M, and its remainder rows round
     * by the block they fall in (qh_rows_dgemm keeps them in a call of their own). */
    static const size_t shapes[][2] = { { 67, 160 }, { 200, 96 }, { 517, 288 } };
    int blas = qh_blas_info().threads;
    qh_blas_set_threads(1);          /* the factorisations too, so that only the row loops differ */
    for (size_t sh = 0; sh < 3; sh++) {
        size_t m = shapes[sh][0], n = shapes[sh][1];
        qh_matd *W = random_W(m, n, 91 + (uint32_t)sh), *H = random_H(n, n + 20, 93 + (uint32_t)sh);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const qh_method_type *mt = qh_method_find(cases[c].name);
            int bits = valid_bits(mt, 3);
            qh_result r[3];
            int ok = 1;
            for (int t = 0; t < 3; t++) {
                qh_result_init(&r[t]);
                qh_rows_set_threads(t + 1);
                ok &= qh_rows_threads(m, n) == t + 1;
                ok &= quantize(cases[c].name, cases[c].kv, W, H, bits, 5, &r[t], 0) == QH_OK;
            }
            qh_rows_set_threads(0);
            QH_CHECK(ok, "%s case %zu (%zu x %zu) runs on 1, 2, 3 threads: %s", cases[c].name, c, m, n,
                     qh_last_error());
            for (int t = 1; ok && t < 3; t++)
                QH_CHECK(!memcmp(r[0].What->data, r[t].What->data, m * n * sizeof(double))
                         && r[0].proxy_loss == r[t].proxy_loss
                         && r[0].n_greedy_passes == r[t].n_greedy_passes,
                         "%s case %zu (%zu x %zu): %d threads give 1 thread's bytes (%zu of %zu "
                         "entries equal, loss %.17g vs %.17g, passes %zu vs %zu)", cases[c].name, c, m, n,
                         t + 1, count_equal(r[0].What, r[t].What), m * n, r[t].proxy_loss,
                         r[0].proxy_loss, r[t].n_greedy_passes, r[0].n_greedy_passes);
            for (int t = 0; t < 3; t++) qh_result_free(&r[t]);
        }
        qh_matd_free(W);
        qh_matd_free(H);
    }
    qh_blas_set_threads(blas);
}

/* One failing chunk fails the run with its message; BLAS threads come back. */
static int fail_on_last(void *arg, const qh_rows_chunk *c)
{
    int *calls = arg;
    __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED);
    qh_rows_sync(c);
    if (c->tid == c->nt - 1 && c->nt > 1) QH_ERROR(QH_ENOMEM, "chunk %d of rows %zu..%zu", c->tid, c->r0, c->r1);
    return QH_OK;
}

static void test_row_threads_errors(void)
{
    int blas = qh_blas_info().threads, calls = 0;
    qh_error_clear();
    int st = qh_rows_run(40, 3, fail_on_last, &calls);
    QH_CHECK(st == QH_ENOMEM && strstr(qh_last_error(), "chunk 2 of rows 32..40") && calls == 3,
             "a worker's status and message reach the caller (status %d, '%s', %d calls)", st,
             qh_last_error(), calls);
    QH_CHECK(qh_blas_info().threads == blas, "BLAS threads restored (%d)", qh_blas_info().threads);
    calls = 0;
    QH_CHECK(qh_rows_run(33, 5, fail_on_last, &calls) == QH_ENOMEM && calls == 3,
             "threads capped at the count of 16-row units");
    calls = 0;
    QH_CHECK(qh_rows_run(4, 1, fail_on_last, &calls) == QH_OK && calls == 1, "one thread: one call");
    qh_rows_set_threads(0);
    QH_CHECK(qh_rows_threads(8, 8) == 1, "small layers default to one thread");
}

int main(void)
{
    test_registry();
    test_params_defaults_for();
    test_fast_vs_ref();
    test_gptq_equals_forward_ldlq();
    test_identity_hessian();
    test_theorem1();
    test_ldlq_beats_nearest();
    test_counterexample();
    test_equivariance();
    test_greedy_monotone();
    test_determinism();
    test_result_fields();
    test_result_reuse();
    test_incoherence();
    test_bad_inputs();
    test_row_threads();
    test_row_threads_errors();
    return qh_test_summary();
}
