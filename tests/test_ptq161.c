/* test_ptq161.c -- the PTQ1.61 row (core/methods/ptq161.h; methods reference §8):
 *   - bits: qh_ptq161_bits against hand-computed values (4096² ≈ 1.62, and a
 *     small shape through the driver);
 *   - salient columns = the top 20 % by sqrt(diag H) (planted high-variance
 *     channels), their entries on the 4-bit row grid;
 *   - steps 0: the output equals the closed-form initialisation
 *     (α = mean|w|, μ = mean w over the non-salient non-zeros, r = 1);
 *   - analytic gradients against central finite differences (rel. < 1e-5);
 *   - Adam lowers the proxy loss (non-increasing over 0, 25, 50, 100, 200
 *     steps, final < initial); determinism; awkward shapes with a dead input;
 *     bad input (bits 2, missing H, NaN, non-PSD H);
 *   - the row's block ops: wants follows objective, epochs the parameter; the
 *     state quantize fills reconstructs the row's Ŵ bit for bit; step is one
 *     Adam step of (α, r1, r2) from ∂ℓ/∂Ŵ (qh_ptq161_param_grad +
 *     qh_adam_step, checked bytewise) whose moments restart at step 1. */
#include "ptq161.h"
#include "qh_adam.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

#include <stdlib.h>
#include <string.h>

static qh_matd *random_W(size_t m, size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(41, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = qh_rng_normal(&r) + 0.3 * (double)(i % 4) - 0.4;
    return W;
}

/* H = X Xᵀ/T, inputs correlated through a common factor; channels with
 * planted[i] set get scale 6 (the others 0.3 .. 2.3). */
static qh_matd *planted_H(size_t n, size_t T, const uint8_t *planted, uint32_t key)
{
    qh_rng r = qh_rng_stream(42, key, QH_RNG_TEST);
    qh_matd *X = qh_matd_alloc(n, T), *H = qh_matd_alloc(n, n);
    for (size_t t = 0; t < T; t++) {
        double common = qh_rng_normal(&r);
        for (size_t i = 0; i < n; i++) {
            double scale = planted && planted[i] ? 6.0 : 0.3 + (double)((i * 5) % 11) / 5.0;
            QH_AT(X, i, t) = (0.7 * common + qh_rng_normal(&r)) * scale;
        }
    }
    qh_lin_dgemm('N', 'T', n, n, T, 1.0 / (double)T, X->data, X->ld, X->data, X->ld, 0.0, H->data, H->ld);
    qh_matd_free(X);
    return H;
}

static int run(const char *const *kv, const qh_matd *W, const qh_matd *H, int bits, qh_result *r)
{
    void *p = qh_method_params_new(&qh_method_ptq161);
    for (; kv && kv[0]; kv += 2)
        QH_CHECK(qh_method_params_set(&qh_method_ptq161, p, kv[0], kv[1]) == QH_OK, "param %s = %s: %s", kv[0], kv[1], qh_last_error());
    qh_problem pb = { W, H, bits, 0, 0, "layers.2.q_proj", NULL, NULL };
    int st = qh_quantize(&qh_method_ptq161, p, &pb, NULL, NULL, r);
    free(p);
    return st;
}

/* ---- bits ------------------------------------------------------------------------- */

static void test_bits(void)
{
    double nom, side;
    qh_ptq161_bits(819, 4, 4096, 4096, &nom, &side);        /* round(0.2 · 4096) columns */
    /* (819·4 + 3277·1 + 1)/4096 and (20 + 32 + 16 + 16)/4096, by hand */
    QH_CHECK_CLOSE(nom, 6554.0 / 4096.0, 1e-12, 0, "4096²: nominal 6554/4096 (%.9f)", nom);
    QH_CHECK_CLOSE(side, 84.0 / 4096.0, 1e-12, 0, "4096²: side 84/4096 (%.9f)", side);
    QH_CHECK(fabs(nom + side - 1.62) < 0.002, "4096²: total %.6f ≈ 1.62 (reference estimate)", nom + side);
    QH_NOTE("PTQ1.61 4096^2: nominal %.6f, side %.6f, total %.6f", nom, side, nom + side);

    size_t m = 8, n = 20;                    /* 4 salient columns */
    qh_matd *W = random_W(m, n, 1), *H = planted_H(n, 40, NULL, 1);
    qh_result r;
    qh_result_init(&r);
    const char *kv[] = { "steps", "3", NULL };
    QH_CHECK(run(kv, W, H, 1, &r) == QH_OK, "runs: %s", qh_last_error());
    /* nominal (4·4 + 16)/20 + 1/8; side 20/20 + 32/20 + 16/20 + 16/8 */
    QH_CHECK_CLOSE(r.bits_nominal, 1.725, 1e-12, 0, "8x20: nominal 1.725 (%g)", r.bits_nominal);
    QH_CHECK_CLOSE(r.bits_side, 5.4, 1e-12, 0, "8x20: side 5.4 (%g)", r.bits_side);
    QH_CHECK_CLOSE(r.bits_total, 7.125, 1e-12, 0, "8x20: total 7.125 (%g)", r.bits_total);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- salient columns and the initialisation --------------------------------------- */

static void test_salient_and_init(void)
{
    size_t m = 16, n = 40;
    uint8_t planted[40] = { 0 }, sal[40];
    static const size_t cols[] = { 1, 6, 9, 17, 22, 23, 30, 38 };   /* 8 = 20 % of 40 */
    for (size_t k = 0; k < 8; k++) planted[cols[k]] = 1;
    qh_matd *W = random_W(m, n, 2), *H = planted_H(n, 400, planted, 2);
    for (size_t i = 0; i < m; i++) QH_AT(W, i, 5) = 0.0;   /* a zero is left out of μ and α */
    double scratch[80];
    size_t k = qh_ptq161_select_columns(H, 0.2, sal, scratch);
    QH_CHECK(k == 8 && !memcmp(sal, planted, n), "select_columns: the 8 planted channels (k = %zu)", k);

    qh_result r;
    qh_result_init(&r);
    const char *kv[] = { "steps", "0", NULL };
    QH_CHECK(run(kv, W, H, 1, &r) == QH_OK, "steps 0 runs: %s", qh_last_error());
    size_t on = 0, init_ok = 0;
    for (size_t i = 0; i < m; i++) {
        double lo = 0.0, hi = 0.0, s = 0.0, a = 0.0;
        size_t c = 0;
        for (size_t j = 0; j < n; j++) {
            double w = QH_AT(W, i, j);
            lo = fmin(lo, w);
            hi = fmax(hi, w);
            if (!planted[j] && w != 0.0) { s += w; a += fabs(w); c++; }
        }
        double step = (hi - lo) / 15.0, zero = round(-lo / step), mu = s / (double)c, alpha = a / (double)c;
        for (size_t j = 0; j < n; j++) {
            double w = QH_AT(W, i, j), q = QH_AT(r.What, i, j);
            if (planted[j]) {
                double u = q / step + zero;
                on += fabs(u - round(u)) < 1e-9 && u > -0.5 && u < 15.5 && fabs(q - w) <= 0.5 * step * (1 + 1e-12);
            } else {
                double want = w >= mu ? mu + alpha : mu - alpha;
                init_ok += fabs(q - want) <= 1e-12;
            }
        }
    }
    QH_CHECK(on == 8 * m, "salient columns on the 4-bit row grid within step/2 (%zu/%zu)", on, 8 * m);
    QH_CHECK(init_ok == 32 * m, "steps 0: (alpha s + mu), alpha = mean|w|, mu = mean w (%zu/%zu)", init_ok, 32 * m);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- gradients --------------------------------------------------------------------- */

static double loss_at(const qh_ptq161_model *md, const double *a, const double *r1, const double *r2,
                      double *scratch, size_t m, size_t n)
{
    double l, *ga = malloc(m * sizeof *ga), *g1 = malloc(m * sizeof *g1), *g2 = malloc(n * sizeof *g2);
    qh_ptq161_loss_grad(md, a, r1, r2, &l, ga, g1, g2, scratch);
    free(ga); free(g1); free(g2);
    return l;
}

/* Central difference of ℓ in x[k]; restores x[k]. */
static double fd(const qh_ptq161_model *md, double *a, double *r1, double *r2, double *x, size_t k,
                 double *scratch, size_t m, size_t n)
{
    double x0 = x[k], h = 1e-5 * fmax(1.0, fabs(x0));
    x[k] = x0 + h;
    double lp = loss_at(md, a, r1, r2, scratch, m, n);
    x[k] = x0 - h;
    double lm = loss_at(md, a, r1, r2, scratch, m, n);
    x[k] = x0;
    return (lp - lm) / (2.0 * h);
}

static double rel_err(const double *g, const double *f, size_t count)
{
    double d = 0.0, s = 0.0;
    for (size_t k = 0; k < count; k++) { d += (g[k] - f[k]) * (g[k] - f[k]); s += f[k] * f[k]; }
    return sqrt(d / fmax(s, 1e-300));
}

static void test_gradients(void)
{
    size_t m = 5, n = 12;
    uint8_t sal[12] = { 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1 };
    qh_matd *W = random_W(m, n, 3), *H = planted_H(n, 30, NULL, 3), *Q = qh_matd_alloc(m, n);
    qh_rng rg = qh_rng_stream(43, 0, QH_RNG_TEST);
    double mu[5], a[5], r1[5], r2[12], ga[5], g1[5], g2[12], fa[5], f1[5], f2[12], loss;
    double *scratch = malloc(2 * m * n * sizeof *scratch);
    for (size_t i = 0; i < m; i++) {
        mu[i] = 0.2 * qh_rng_normal(&rg);
        a[i] = 0.8 + 0.2 * qh_rng_uniform(&rg);
        r1[i] = 1.0 + 0.1 * qh_rng_normal(&rg);
    }
    for (size_t j = 0; j < n; j++) r2[j] = 1.0 + 0.1 * qh_rng_normal(&rg);
    for (size_t k = 0; k < m * n; k++) Q->data[k] = W->data[k] + 0.05 * qh_rng_normal(&rg);
    qh_ptq161_model md = { W, H, sal, Q, mu };
    qh_ptq161_loss_grad(&md, a, r1, r2, &loss, ga, g1, g2, scratch);
    for (size_t i = 0; i < m; i++) {
        fa[i] = fd(&md, a, r1, r2, a, i, scratch, m, n);
        f1[i] = fd(&md, a, r1, r2, r1, i, scratch, m, n);
    }
    for (size_t j = 0; j < n; j++) f2[j] = fd(&md, a, r1, r2, r2, j, scratch, m, n);
    double ea = rel_err(ga, fa, m), e1 = rel_err(g1, f1, m), e2 = rel_err(g2, f2, n);
    QH_NOTE("gradient check: loss %.6g, relative errors alpha %.2e, r1 %.2e, r2 %.2e", loss, ea, e1, e2);
    QH_CHECK(ea < 1e-5 && e1 < 1e-5 && e2 < 1e-5, "analytic = finite differences (%.2e %.2e %.2e)", ea, e1, e2);
    QH_CHECK(g2[1] == 0.0 && g2[6] == 0.0 && g2[11] == 0.0, "no gradient on r2 of salient columns");

    /* ℓ itself against tr(ΔHΔᵀ) from the library's proxy loss. */
    qh_matd *What = qh_matd_alloc(m, n);
    qh_ptq161_reconstruct(&md, a, r1, r2, What);
    double want = NAN;
    QH_CHECK(qh_lin_proxy_loss(W, What, H, &want) == QH_OK, "proxy loss");
    QH_CHECK_CLOSE(loss, want, 0, 1e-12, "loss = tr((What-W) H (What-W)^T): %.15g vs %.15g", loss, want);
    free(scratch);
    qh_matd_free(W); qh_matd_free(H); qh_matd_free(Q); qh_matd_free(What);
}

/* ---- the optimisation ---------------------------------------------------------------- */

static void test_optimisation(void)
{
    size_t m = 32, n = 128;
    qh_matd *W = random_W(m, n, 4), *H = planted_H(n, 300, NULL, 4);
    static const char *const steps[] = { "0", "25", "50", "100", "200" };
    double loss[5];
    size_t increases = 0;
    qh_result r, again;
    qh_result_init(&r);
    qh_result_init(&again);
    for (int s = 0; s < 5; s++) {
        const char *kv[] = { "steps", steps[s], NULL };
        QH_CHECK(run(kv, W, H, 1, &r) == QH_OK, "steps %s runs: %s", steps[s], qh_last_error());
        loss[s] = r.proxy_loss;
        if (s > 0) increases += loss[s] > loss[s - 1];
    }
    QH_NOTE("PTQ1.61 %zux%zu: proxy at 0/25/50/100/200 Adam steps: %.4f %.4f %.4f %.4f %.4f (%.1f %% lower); "
            "bits %.4f + %.4f = %.4f", m, n, loss[0], loss[1], loss[2], loss[3], loss[4],
            100.0 * (1.0 - loss[4] / loss[0]), r.bits_nominal, r.bits_side, r.bits_total);
    QH_CHECK(increases == 0 && loss[4] < 0.99 * loss[0], "proxy non-increasing in steps, final < 0.99 initial");
    const char *kv[] = { "steps", "200", NULL };
    QH_CHECK(run(kv, W, H, 1, &again) == QH_OK && !memcmp(r.What->data, again.What->data, m * n * sizeof(double)),
             "deterministic: identical bytes");
    QH_CHECK(r.damp_used == 0 && !strcmp(r.order, "natural") && r.grid.bits == 4, "result fields");
    qh_result_free(&r);
    qh_result_free(&again);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void test_bad_input(void)
{
    size_t m = 4, n = 10;
    qh_matd *W = random_W(m, n, 5), *H = planted_H(n, 20, NULL, 5);
    qh_result r;
    qh_result_init(&r);
    int st = run(NULL, W, H, 2, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "bits = 2") && strstr(qh_last_error(), "layers.2.q_proj")
             && strstr(qh_last_error(), "ptq161"),
             "bits 2 refused: %d %s", st, qh_last_error());
    st = run(NULL, W, NULL, 1, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "needs a Hessian"), "missing H: %s", qh_last_error());
    QH_AT(H, 3, 3) = NAN;
    st = run(NULL, W, H, 1, &r);
    QH_CHECK(st == QH_ENAN && strstr(qh_last_error(), "layers.2.q_proj: H"), "NaN in H: %s", qh_last_error());
    QH_AT(H, 3, 3) = 1.0;
    qh_matd *Hbad = qh_matd_alloc(n, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) QH_AT(Hbad, i, j) = i == j ? 1.0 : 5.0;   /* eigenvalue −44 */
    st = run(NULL, W, Hbad, 1, &r);
    QH_CHECK(st == QH_ENOTPD && strstr(qh_last_error(), "not positive definite"), "non-PSD H: %s", qh_last_error());
    qh_matd_free(Hbad);
    QH_AT(W, 0, 0) = NAN;
    st = run(NULL, W, H, 1, &r);
    QH_CHECK(st == QH_ENAN && strstr(qh_last_error(), "layers.2.q_proj: W"), "NaN in W: %s", qh_last_error());
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
        qh_matd *W = random_W(m, n, 70 + (uint32_t)s), *H = planted_H(n, n + 4, NULL, 70 + (uint32_t)s);
        fixture_check_dead_input(&qh_method_ptq161, 1, W, H);
        qh_matd_free(W);
        qh_matd_free(H);
    }
}

/* ---- the block stage's ops ------------------------------------------------------------ */

static void check_wants_epochs(const qh_block_ops *ops)
{
    void *p = qh_method_params_new(&qh_method_ptq161);
    QH_CHECK(ops->wants(p) == 1, "default objective (block) wants the block stage");
    qh_block_plan plan = { 0 };
    QH_CHECK(qh_method_params_set(&qh_method_ptq161, p, "epochs", "7") == QH_OK, "epochs 7");
    ops->plan(p, 5, &plan);
    QH_CHECK(plan.steps == 35 && plan.batch == 1 && plan.draw == QH_BLOCK_DRAW_SEQUENTIAL &&
             plan.loss == QH_BLOCK_LOSS_PTQ161 && !plan.keep_best && !plan.patience,
             "plan: epochs x windows steps of one window in order, PTQ1.61's loss, last iterate");
    QH_CHECK(qh_method_params_set(&qh_method_ptq161, p, "objective", "layer") == QH_OK && !ops->wants(p),
             "objective layer does not want it");
    free(p);
}

/* G = 2 (Ŵ − W) H, the proxy's ∂ℓ/∂Ŵ at the state's Ŵ. */
static qh_matd *proxy_grad(const qh_block_ops *ops, const void *p, const void *state,
                           const qh_matd *W, const qh_matd *H)
{
    size_t m = W->rows, n = W->cols;
    qh_matd *D = qh_matd_alloc(m, n), *G = qh_matd_alloc(m, n);
    ops->reconstruct(p, state, D);
    for (size_t k = 0; k < m * n; k++) D->data[k] -= W->data[k];
    qh_lin_dgemm('N', 'N', m, n, n, 2.0, D->data, m, H->data, H->ld, 0.0, G->data, m);
    qh_matd_free(D);
    return G;
}

/* (α, r1, r2) of a state to and from one vector of 2m + n. */
static void pack(const qh_ptq161_state *s, double *x)
{
    memcpy(x, s->alpha, s->rows * sizeof *x);
    memcpy(x + s->rows, s->r1, s->rows * sizeof *x);
    memcpy(x + 2 * s->rows, s->r2, s->cols * sizeof *x);
}

static void unpack(qh_ptq161_state *s, const double *x)
{
    memcpy(s->alpha, x, s->rows * sizeof *x);
    memcpy(s->r1, x + s->rows, s->rows * sizeof *x);
    memcpy(s->r2, x + 2 * s->rows, s->cols * sizeof *x);
}

/* What one step from G should give: fresh moments, step 1, the row's lrs. */
static void expected_step(const qh_ptq161_state *s, const qh_matd *G, double *x)
{
    size_t m = s->rows, n = s->cols, c = 2 * m + n;
    double *g = malloc(c * sizeof *g), *mo = calloc(2 * c, sizeof *mo);
    pack(s, x);
    qh_ptq161_model md = qh_ptq161_state_model(s);
    qh_ptq161_param_grad(&md, s->alpha, s->r1, s->r2, G, g, g + m, g + 2 * m);
    qh_adam_moments a = { mo, mo + c }, b = { mo + m, mo + c + m }, r = { mo + 2 * m, mo + c + 2 * m };
    qh_adam_step(x, g, &a, m, 5e-4, 1);
    qh_adam_step(x + m, g + m, &b, m, 1e-3, 1);
    qh_adam_step(x + 2 * m, g + 2 * m, &r, n, 1e-3, 1);
    free(g);
    free(mo);
}

static void test_block_ops(void)
{
    const qh_block_ops *ops = qh_method_ptq161.block;
    QH_CHECK(ops && ops->setting && ops->wants && ops->plan && ops->state_new && ops->state_free &&
             ops->state_shape && ops->reconstruct && ops->step, "the ptq161 row declares block ops");
    if (!ops) return;
    check_wants_epochs(ops);
    size_t m = 12, n = 40, sm = 1, sn = 1, c = 2 * m + n;
    qh_matd *W = random_W(m, n, 9), *H = planted_H(n, 80, NULL, 9), *What = qh_matd_alloc(m, n);
    void *p = qh_method_params_new(&qh_method_ptq161);
    qh_ptq161_state *s = ops->state_new();
    ops->state_shape(s, &sm, &sn);
    QH_CHECK(sm == 0 && sn == 0, "a new state is empty (0 x 0)");
    QH_CHECK(qh_method_params_set(&qh_method_ptq161, p, "steps", "25") == QH_OK, "steps 25");
    qh_problem pb = { W, H, 1, 0, 0, "layers.0.fc1", s, NULL };
    qh_result r;
    qh_result_init(&r);
    QH_CHECK(qh_quantize(&qh_method_ptq161, p, &pb, NULL, NULL, &r) == QH_OK, "quantize: %s", qh_last_error());
    ops->state_shape(s, &sm, &sn);
    ops->reconstruct(p, s, What);
    QH_CHECK(sm == m && sn == n && !memcmp(What->data, r.What->data, m * n * sizeof(double)),
             "quantize fills the state (%zu x %zu); reconstruct = the row's W-hat bitwise", sm, sn);

    qh_matd *G = proxy_grad(ops, p, s, W, H);
    double *start = malloc(c * sizeof *start), *want = malloc(c * sizeof *want), *got = malloc(c * sizeof *got);
    pack(s, start);
    expected_step(s, G, want);
    int st = ops->step(p, s, G, 1);
    pack(s, got);
    QH_CHECK(st == QH_OK && !memcmp(got, want, c * sizeof *want),
             "step 1 = one Adam step of (alpha, r1, r2) with lr_alpha, lr_r (bitwise)");
    st = ops->step(p, s, G, 2);
    if (st == QH_OK) st = ops->step(p, s, G, 3);
    pack(s, got);
    QH_CHECK(st == QH_OK && memcmp(got, want, c * sizeof *want), "steps 2, 3 move on");
    unpack(s, start);
    st = ops->step(p, s, G, 1);
    pack(s, got);
    QH_CHECK(st == QH_OK && !memcmp(got, want, c * sizeof *want),
             "step 1 again starts from zero moments (bitwise as the first)");
    free(start);
    free(want);
    free(got);
    qh_matd_free(G);
    qh_result_free(&r);
    ops->state_free(s);
    ops->state_free(NULL);
    free(p);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(What);
}

int main(void)
{
    test_bits();
    test_salient_and_init();
    test_gradients();
    test_optimisation();
    test_small_shapes();
    test_bad_input();
    test_block_ops();
    return qh_test_summary();
}
