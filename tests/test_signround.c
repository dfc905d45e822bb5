/* test_signround.c -- the signround row (core/methods/signround.h).
 *
 * (a) iters 0 is RTN bit for bit: the layer stage's Ŵ equals the rtn row's
 *     for the same group (asym) on random matrices (groups 32, 64, 128 and per
 *     row; bits 2, 3, 4; ties up and even) and on real layers of opt-7m and
 *     llama-9m; the exported state reconstructs the same Ŵ.
 * (b) The fake-quant at random V and coefficients against a naive per-weight
 *     evaluation written here from auto-round's formulas (round(w/s + V) + z,
 *     then clamp; symmetric: round(w/s + V) clamped to [−M, M−1]): equal
 *     (the row adds z before rounding; the two differ only at a tie).
 * (c) Gradients: qh_signround_grad's ∂loss/∂V, ∂/∂min_scale, ∂/∂max_scale,
 *     from the block's G = ∂loss/∂Ŵ, against central differences of the block
 *     MSE along the gradient's direction (every entry moves) on real blocks of opt-7m and llama-9m (asym and sym).  With round
 *     the true derivative in V is zero almost everywhere, and the STE's
 *     derivative in the coefficients is not the piecewise one either; so the
 *     check runs on the surrogate (state.surrogate: round replaced by the
 *     identity, also in z), the function whose exact gradient the STE formulas
 *     are; the clamp stays.  sym's s flips sign where the two sides' ranges
 *     are equal (a jump): the coefficients are drawn away from it.  The differences divide float32 rounding of the
 *     loss by 2h: relative error ≤ 2e-2 of the directional derivative.
 * (d) The sign step and the linear decay on a hand case; clamping of the
 *     coefficients to [0, 1]; sign(0) = 0; V unclamped.
 * (e) Bits: nominal b, side (16 + b)/group asym, 16/group sym, per row.
 * (f) The plan and the schedule: recipes, precedence, auto lr.
 * (g) The block stage on a real block: the loss falls below RTN's, keep_best
 *     leaves the best minibatch iterate (batch = all windows: the minibatch
 *     loss is the mean loss), two runs give identical bytes.
 * (h) Bad parameters are refused naming the key.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "pipeline/block_stage.h"
#include "pipeline/sequential.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "block_case.h"
#include "signround.h"

static void *params_with(const char *method, const char *const *kv)
{
    const qh_method_type *t = qh_method_find(method);
    void *p = qh_method_params_new(t);
    for (; p && kv && kv[0]; kv += 2)
        if (qh_method_params_set(t, p, kv[0], kv[1]) != QH_OK) {
            QH_CHECK(0, "%s.%s = %s: %s", method, kv[0], kv[1], qh_last_error());
        }
    return p;
}

static int run(const char *method, const char *const *kv, const qh_matd *W, const qh_matd *H, int bits,
               void *state, qh_result *r)
{
    void *p = params_with(method, kv);
    qh_problem pb = { W, H, bits, 0, 0, "layers.1.fc1", state, NULL };
    int st = qh_quantize(qh_method_find(method), p, &pb, NULL, NULL, r);
    free(p);
    return st;
}

static qh_matd *random_W(size_t m, size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(3, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = 0.05 * qh_rng_normal(&r) + 0.01 * (double)(i % 3);
    for (size_t i = 0; i < m; i++) QH_AT(W, i, 0) = 0.0;      /* a zero column entry */
    return W;
}

static int same(const qh_matd *A, const qh_matd *B)
{
    return !memcmp(A->data, B->data, A->rows * A->cols * sizeof(double));
}

/* ---- (a) iters 0 = RTN ---------------------------------------------------------- */

static void check_rtn_equal(const qh_matd *W, const qh_matd *H, const char *what)
{
    static const char *const groups[] = { "0", "32", "64", "128" };
    static const char *const ties[] = { "up", "even" };
    size_t n = W->cols, ok = 0, total = 0;
    for (int b = 2; b <= 4; b++)
        for (size_t g = 0; g < 4; g++)
            for (size_t t = 0; t < 2; t++) {
                if (strcmp(groups[g], "0") && n % (size_t)atoi(groups[g])) continue;
                const char *kr[] = { "group", groups[g], "ties", ties[t], NULL };
                const char *ks[] = { "group", groups[g], "ties", ties[t], "iters", "0", NULL };
                qh_result a, s;
                qh_result_init(&a);
                qh_result_init(&s);
                qh_signround_state *st = qh_method_signround.block->state_new();
                qh_matd *R = qh_matd_alloc(W->rows, n);
                int rc = run("rtn", kr, W, H, b, NULL, &a) | run("signround", ks, W, H, b, st, &s);
                qh_method_signround.block->reconstruct(NULL, st, R);
                int eq = rc == QH_OK && same(a.What, s.What) && same(s.What, R) && a.bits_total == s.bits_total;
                if (!eq)
                    QH_CHECK(0, "%s w%d group %s ties %s: signround iters 0 == rtn bitwise (%s; %d %d %d)",
                             what, b, groups[g], ties[t], rc ? qh_last_error() : "values differ",
                             rc == QH_OK && same(a.What, s.What), rc == QH_OK && same(s.What, R),
                             a.bits_total == s.bits_total);
                ok += eq;
                total++;
                qh_method_signround.block->state_free(st);
                qh_matd_free(R);
                qh_result_free(&a);
                qh_result_free(&s);
            }
    QH_CHECK(ok == total && total > 0, "%s: signround iters 0 == rtn bit for bit in %zu/%zu settings "
             "(bits 2-4, groups, ties; state's reconstruction too)", what, ok, total);
}

static void test_rtn_equal(void)
{
    qh_matd *W = random_W(17, 256, 1), *W2 = random_W(9, 64, 2);
    check_rtn_equal(W, NULL, "random 17x256");
    check_rtn_equal(W2, NULL, "random 9x64");
    static const struct { const char *dir; int layer, kind; } real[] = {
        { "models/opt-7m", 1, QH_LIN_UP }, { "models/opt-7m", 3, QH_LIN_DOWN },
        { "models/llama-9m", 2, QH_LIN_Q }, { "models/llama-9m", 0, QH_LIN_DOWN },
    };
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        qh_model *m = NULL;
        if (qh_model_load(real[i].dir, &m) != QH_OK) {
            QH_CHECK(0, "%s: %s", real[i].dir, qh_last_error());
            continue;
        }
        qh_linear *lin = &m->blocks[real[i].layer].lin[real[i].kind];
        qh_matd *Wl = qh_matd_alloc((size_t)lin->out, (size_t)lin->in);
        qh_matd *H = qh_matd_alloc((size_t)lin->in, (size_t)lin->in);
        qh_linear_to_matd(lin, Wl);
        for (size_t j = 0; j < H->cols; j++) QH_AT(H, j, j) = 1.0 + (double)(j % 5);
        char what[96];
        snprintf(what, sizeof what, "%s %s", real[i].dir, lin->name);
        check_rtn_equal(Wl, H, what);
        qh_matd_free(Wl);
        qh_matd_free(H);
        qh_model_free(m);
    }
    qh_matd_free(W);
    qh_matd_free(W2);
}

/* ---- (b) the fake-quant against a naive evaluation ------------------------------------- */

static double round_half_up(double x) { return floor(x + 0.5); }

/* auto-round's int_asym / int_sym at one weight (ties up as the row's default). */
static double naive(double w, double v, double xmin, double xmax, double a, double b, int bits, int sym)
{
    if (!sym) {
        double maxq = pow(2, bits) - 1, lo = xmin * a, hi = xmax * b;
        double s = fmax((hi - lo) / maxq, 1e-5 * (xmax - xmin) / maxq);
        double z = nearbyint(-lo / s);
        double q = fmin(fmax(round_half_up(w / s + v) + z, 0), maxq);
        return s * (q - z);
    }
    double M = pow(2, bits - 1), A = -xmin * a, B = xmax * b;
    double s = (B < A ? 1 : -1) * fmax(fmax(A, B) / M, 1e-5 * fmax(-xmin, xmax) / M);
    double q = fmin(fmax(round_half_up(w / s + v), -M), M - 1);
    return s * q;
}

static void test_fake_quant(void)
{
    size_t m = 13, n = 96;
    qh_matd *W = random_W(m, n, 3);
    for (int sym = 0; sym <= 1; sym++)
        for (int bits = 2; bits <= 4; bits++) {
            qh_result r;
            qh_result_init(&r);
            qh_signround_state *st = qh_method_signround.block->state_new();
            const char *kv[] = { "group", "32", "sym", sym ? "1" : "0", NULL };
            QH_CHECK(run("signround", kv, W, NULL, bits, st, &r) == QH_OK, "quantize: %s", qh_last_error());
            qh_rng rng = qh_rng_stream(5, (uint32_t)(bits + 10 * sym), QH_RNG_TEST);
            for (size_t i = 0; i < m * n; i++) st->V[i] = qh_rng_uniform(&rng) - 0.5;
            for (size_t k = 0; k < m * st->n_groups; k++) {
                st->min_scale[k] = 0.5 + 0.5 * qh_rng_uniform(&rng);
                st->max_scale[k] = 0.5 + 0.5 * qh_rng_uniform(&rng);
            }
            st->min_scale[0] = st->max_scale[0] = 0.0;   /* the floor */
            qh_matd *F = qh_matd_alloc(m, n);
            qh_signround_fake_quant(st, F);
            size_t eq = 0;
            double worst = 0;
            for (size_t j = 0; j < n; j++)
                for (size_t i = 0; i < m; i++) {
                    size_t k = i + (j / 32) * m;
                    double want = naive(QH_AT(W, i, j), st->V[i + j * m], st->xmin[k], st->xmax[k],
                                        st->min_scale[k], st->max_scale[k], bits, sym);
                    double d = fabs(QH_AT(F, i, j) - want);
                    eq += d <= 1e-15 * fmax(fabs(want), 1e-3);
                    worst = fmax(worst, d);
                }
            QH_CHECK(eq == m * n, "%s w%d: fake-quant at random V, scales = naive auto-round formula "
                     "(%zu/%zu, worst %.2g)", sym ? "sym" : "asym", bits, eq, m * n, worst);
            /* the extremes of a group land on the ends of the grid at V = 0, scales 1 */
            qh_method_signround.block->state_free(st);
            qh_matd_free(F);
            qh_result_free(&r);
        }
    qh_matd_free(W);
}

/* ---- real blocks with signround states ------------------------------------------------------ */

enum { NS = 3, TT = 24 };

static qh_signround_state *srs(const block_case *c, int k) { return c->states[k]; }

/* Every linear of the block quantized into its signround state (kv, bits). */
static int quantize_block(block_case *c, const char *const *kv, int bits)
{
    void *p = params_with("signround", kv);
    int st = p ? block_case_quantize(c, &qh_method_signround, p, bits, NULL, 0) : QH_ENOMEM;
    free(p);
    return st;
}

/* Jittered inputs on the quantized path and the float block's outputs on the float inputs. */
static int load_case(block_case *c, const char *dir, int layer)
{
    return block_case_load(c, dir, layer, NS, TT, 9, 0.05, BLOCK_CASE_Y_TAPE);
}

/* Sum over the windows of MSE(Yq, Yfp) at the states' Ŵ; with grad, the
 * STE gradients of linear `kind` land in its state (qh_signround_grad). */
static double block_loss(block_case *c, qh_block_tape *tape, int kind, int grad)
{
    size_t win = c->hidden * TT;
    qh_block *b = &c->m->blocks[c->layer];
    size_t m = (size_t)b->lin[kind].out, n = (size_t)b->lin[kind].in;
    float *yq = malloc(2 * win * sizeof(float)), *dy = yq + win, *Gf = calloc(m * n, sizeof(float));
    float *G[QH_LIN_MAX] = { NULL };
    G[kind] = Gf;
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!srs(c, k)) continue;
        qh_matd *What = qh_matd_alloc(srs(c, k)->rows, srs(c, k)->cols);
        qh_signround_fake_quant(srs(c, k), What);
        qh_linear_from_matd(&b->lin[k], What);
        qh_matd_free(What);
    }
    double l = 0;
    for (size_t s = 0; s < NS; s++) {
        if (qh_block_forward_tape(c->m, c->layer, c->x + s * win, TT, yq, tape) != QH_OK)
            QH_CHECK(0, "forward: %s", qh_last_error());
        l += qh_block_loss_mse(yq, c->y_fp + s * win, win, 1.0, grad ? dy : NULL);
        if (grad && qh_block_backward(c->m, c->layer, dy, tape, G) != QH_OK)
            QH_CHECK(0, "backward: %s", qh_last_error());
    }
    if (grad) {
        qh_matd *Gd = qh_matd_alloc(m, n);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) QH_AT(Gd, i, j) = Gf[i * n + j];
        qh_signround_grad(srs(c, kind), Gd);
        qh_matd_free(Gd);
    }
    free(Gf);
    free(yq);
    return l;
}

/* Central difference along d = g/max|g| (every entry of x moves, the largest
 * by h), against the analytic directional derivative Σ g d, relative to it.
 * A direction through all entries sums the effect of every group, so the
 * float32 rounding of the loss weighs less than for one coefficient. */
static double fd_error(block_case *c, qh_block_tape *tape, int kind, double *x, const double *g,
                       size_t count, double h)
{
    double gmax = 0, want = 0;
    for (size_t i = 0; i < count; i++) gmax = fmax(gmax, fabs(g[i]));
    double *x0 = malloc(count * sizeof *x0);
    memcpy(x0, x, count * sizeof *x0);
    for (size_t i = 0; i < count; i++) want += g[i] * g[i] / gmax;
    for (size_t i = 0; i < count; i++) x[i] = x0[i] + h * g[i] / gmax;
    double lp = block_loss(c, tape, kind, 0);
    for (size_t i = 0; i < count; i++) x[i] = x0[i] - h * g[i] / gmax;
    double lm = block_loss(c, tape, kind, 0);
    memcpy(x, x0, count * sizeof *x0);
    free(x0);
    return fabs((lp - lm) / (2 * h) - want) / want;
}

static void check_grad(const char *dir, int layer, int sym)
{
    block_case c;
    if (load_case(&c, dir, layer) != QH_OK) {
        QH_CHECK(0, "%s: setup: %s", dir, qh_last_error());
        block_case_free(&c);
        return;
    }
    const char *kv[] = { "group", "64", "sym", sym ? "1" : "0", NULL };
    QH_CHECK(quantize_block(&c, kv, 3) == QH_OK, "quantize block: %s", qh_last_error());
    qh_rng r = qh_rng_stream(13, (uint32_t)layer, QH_RNG_TEST);
    for (int k = 0; k < QH_LIN_MAX; k++) {
        qh_signround_state *s = srs(&c, k);
        if (!s) continue;
        s->surrogate = 1;
        for (size_t i = 0; i < s->rows * s->cols; i++) s->V[i] = 0.6 * (qh_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < s->rows * s->n_groups; i++) {
            s->min_scale[i] = 0.7 + 0.3 * qh_rng_uniform(&r);
            s->max_scale[i] = 0.7 + 0.3 * qh_rng_uniform(&r);
            /* sym: s switches sign where A = B (a jump, no derivative): keep every group
             * 15 % away from the switch so the differences do not straddle one */
            double A = -s->xmin[i] * s->min_scale[i], B = s->xmax[i] * s->max_scale[i];
            if (sym && fabs(A - B) < 0.1 * fmax(A, B)) {
                if (A > B) s->max_scale[i] *= 0.85;
                else s->min_scale[i] *= 0.85;
            }
        }
    }
    qh_block_tape *tape = NULL;
    QH_CHECK(qh_block_tape_alloc(c.m, TT, &tape) == QH_OK, "tape: %s", qh_last_error());
    static const int kinds[] = { QH_LIN_Q, QH_LIN_O, QH_LIN_UP, QH_LIN_DOWN };
    double worst = 0;
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) {
        int k = kinds[ki];
        qh_signround_state *s = srs(&c, k);
        block_loss(&c, tape, k, 1);
        size_t mn = s->rows * s->cols, mg = s->rows * s->n_groups;
        double *gV = malloc(mn * sizeof *gV), *gmin = malloc(mg * sizeof *gmin), *gmax = malloc(mg * sizeof *gmax);
        memcpy(gV, s->gV, mn * sizeof *gV);
        memcpy(gmin, s->g_min, mg * sizeof *gmin);
        memcpy(gmax, s->g_max, mg * sizeof *gmax);
        double ev = fd_error(&c, tape, k, s->V, gV, mn, 1e-3);
        double e0 = fd_error(&c, tape, k, s->min_scale, gmin, mg, 1e-3);
        double e1 = fd_error(&c, tape, k, s->max_scale, gmax, mg, 1e-3);
        QH_CHECK(ev < 2e-2 && e0 < 2e-2 && e1 < 2e-2,
                 "%s block %d %s %s: STE d loss / d(V, min_scale, max_scale) = central differences of "
                 "the surrogate (%.1e %.1e %.1e)", dir, layer, qh_model_linear_short_name(c.m, k),
                 sym ? "sym" : "asym", ev, e0, e1);
        worst = fmax(worst, fmax(ev, fmax(e0, e1)));
        free(gV);
        free(gmin);
        free(gmax);
    }
    QH_NOTE("%s block %d %s: worst relative FD error %.1e", dir, layer, sym ? "sym" : "asym", worst);
    qh_block_tape_free(tape);
    block_case_free(&c);
}

/* ---- (d) the step ------------------------------------------------------------------------------ */

static void test_step(void)
{
    QH_CHECK(qh_signround_lr_at(0.1, 4, 1) == 0.1 && qh_signround_lr_at(0.1, 4, 2) == 0.1 * 0.75
             && qh_signround_lr_at(0.1, 4, 4) == 0.1 * 0.25 && qh_signround_lr_at(0.1, 4, 5) == 0.0,
             "lr_t = lr (1 - (t-1)/iters): 0.1, 0.075, ..., 0.025, then 0 (LinearLR 1 -> 0)");
    double x[4] = { 0.05, 0.98, 0.5, 0.3 }, g[4] = { 1.0, -1.0, 0.0, -2.0 };
    qh_signround_sign_step(x, g, 4, 0.1, 0.0, 1.0);
    QH_CHECK(x[0] == 0.0 && x[1] == 1.0 && x[2] == 0.5 && fabs(x[3] - 0.4) < 1e-15,
             "sign step clamps to [0, 1], sign(0) = 0: %g %g %g %g", x[0], x[1], x[2], x[3]);
    double v[2] = { 0.45, -0.45 }, gv[2] = { -1.0, 1.0 };
    qh_signround_sign_step(v, gv, 2, 0.1, 1.0, 0.0);
    QH_CHECK(fabs(v[0] - 0.55) < 1e-15 && fabs(v[1] + 0.55) < 1e-15, "V is not clamped (%g %g)", v[0], v[1]);

    /* one row, one group of 4, 2 bits: w = -1, -0.2, 0.3, 1 → s = 2/3, z = round(1.5) = 2 */
    qh_matd *W = qh_matd_alloc(1, 4);
    double w[4] = { -1.0, -0.2, 0.3, 1.0 };
    memcpy(W->data, w, sizeof w);
    qh_signround_state *st = qh_method_signround.block->state_new();
    qh_result r;
    qh_result_init(&r);
    const char *kv[] = { "group", "0", "iters", "4", "lr", "0.1", "minmax_lr", "0.05", NULL };
    void *p = params_with("signround", kv);
    qh_problem pb = { W, NULL, 2, 0, 0, "hand", st, NULL };
    QH_CHECK(qh_quantize(&qh_method_signround, p, &pb, NULL, NULL, &r) == QH_OK, "hand case: %s", qh_last_error());
    QH_CHECK(fabs(r.grid.step[0] - 2.0 / 3.0) < 1e-15 && r.grid.zero[0] == 2.0, "hand grid s = 2/3, z = 2");
    qh_matd *G = qh_matd_alloc(1, 4);
    double gg[4] = { 1.0, -2.0, 0.0, 3.0 };
    memcpy(G->data, gg, sizeof gg);
    QH_CHECK(qh_method_signround.block->step(p, st, G, 1) == QH_OK, "step 1");
    /* z + w/s = 0.5, 1.7, 2.45, 3.5 round (ties up) to 1, 2, 2, 4: the last is clamped to 3,
     * so its gradient in V is 0 and it reaches the coefficients through s and z */
    QH_CHECK(st->V[0] == -0.1 && st->V[1] == 0.1 && st->V[2] == 0.0 && st->V[3] == 0.0,
             "V after step 1 = -0.1 sign(g s), 0 where clamped (%g %g %g %g)", st->V[0], st->V[1], st->V[2],
             st->V[3]);
    /* ∂ŵ/∂s: inside round(u) - w/s = -1 + 1.5, 0 + 0.3; clamped q - z - lo/s = 3 - 2 + 1.5:
     * g_s = 1 (0.5) - 2 (0.3) + 3 (2.5) = 7.4; the clamped weight's ∂ŵ/∂lo = 1 gives g_lo = 3;
     * g_max = g_s xmax/3 = 7.4/3, g_min = g_s (-xmin/3) + g_lo xmin = 7.4/3 - 3 */
    QH_CHECK(fabs(st->g_max[0] - 7.4 / 3.0) < 1e-12 && fabs(st->g_min[0] - (7.4 / 3.0 - 3.0)) < 1e-12,
             "hand gradients of the coefficients 7.4/3 - 3, 7.4/3 (%.15g %.15g)", st->g_min[0], st->g_max[0]);
    QH_CHECK(st->min_scale[0] == 1.0 && st->max_scale[0] == 0.95,
             "coefficients: min 1 + 0.05 clamped to 1, max 1 - 0.05 (%g %g)", st->min_scale[0], st->max_scale[0]);
    double before = st->max_scale[0];
    QH_CHECK(qh_method_signround.block->step(p, st, G, 4) == QH_OK
             && fabs(fabs(st->max_scale[0] - before) - 0.0125) < 1e-15,
             "step 4 takes minmax_lr/4 (%.15g -> %.15g)", before, st->max_scale[0]);
    free(p);
    qh_result_free(&r);
    qh_method_signround.block->state_free(st);
    qh_matd_free(W);
    qh_matd_free(G);
}

/* ---- (e) bits, (f) plan, (h) parameters ------------------------------------------------------- */

static void test_bits(void)
{
    qh_matd *W = random_W(8, 256, 4);
    static const struct { const char *group, *sym; double side; } c[] = {
        { "128", "0", 19.0 / 128 }, { "128", "1", 16.0 / 128 }, { "0", "0", 19.0 / 256 },
        { "32", "0", 19.0 / 32 }, { "512", "1", 16.0 / 256 },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        qh_result r;
        qh_result_init(&r);
        const char *kv[] = { "group", c[i].group, "sym", c[i].sym, NULL };
        int st = run("signround", kv, W, NULL, 3, NULL, &r);
        QH_CHECK(st == QH_OK && r.bits_nominal == 3 && fabs(r.bits_side - c[i].side) < 1e-15
                 && r.bits_total == r.bits_nominal + r.bits_side,
                 "group %s sym %s: bits 3 + %.6f (got %g + %.6f)", c[i].group, c[i].sym, c[i].side,
                 r.bits_nominal, r.bits_side);
        qh_result_free(&r);
    }
    qh_matd_free(W);
}

static void plan_of(const char *const *kv, qh_block_plan *pl, int *wants, qh_signround_schedule *sc, int bits)
{
    void *p = params_with("signround", kv);
    *wants = qh_method_signround.block->wants(p);
    qh_method_signround.block->plan(p, 32, pl);
    qh_signround_resolve(p, bits, sc);
    free(p);
}

static void test_plan(void)
{
    qh_block_plan pl;
    qh_signround_schedule sc;
    int w;
    plan_of(NULL, &pl, &w, &sc, 4);
    QH_CHECK(w && pl.loss == QH_BLOCK_LOSS_MSE && pl.steps == 200 && pl.batch == 8 && pl.draw == QH_BLOCK_DRAW_RANDOM
             && pl.keep_best == 1 && pl.patience == 0 && sc.lr == 1.0 / 200 && sc.minmax_lr == sc.lr,
             "default plan: MSE, 200 steps, batch 8, random draws, keep best; lr = minmax_lr = 1/200");
    plan_of((const char *const[]){ "iters", "0", NULL }, &pl, &w, &sc, 4);
    QH_CHECK(!w && pl.steps == 0, "iters 0: no block stage");
    plan_of((const char *const[]){ "recipe", "light", NULL }, &pl, &w, &sc, 2);
    QH_CHECK(w && pl.steps == 50 && sc.lr == 5e-3 && sc.minmax_lr == 5e-3, "light: 50 iters, lr 5e-3");
    plan_of((const char *const[]){ "recipe", "best", NULL }, &pl, &w, &sc, 3);
    QH_CHECK(pl.steps == 1000 && sc.lr == 2.0 / 1000, "best at 3 bits: 1000 iters, lr 2/iters (%g)", sc.lr);
    plan_of((const char *const[]){ "recipe", "best", NULL }, &pl, &w, &sc, 4);
    QH_CHECK(sc.lr == 1.0 / 1000, "best at 4 bits: lr 1/iters (%g)", sc.lr);
    plan_of((const char *const[]){ "iters", "1000", NULL }, &pl, &w, &sc, 2);
    QH_CHECK(sc.lr == 2.0 / 1000, "1000 iters at 2 bits: lr 2/iters");
    plan_of((const char *const[]){ "recipe", "light", "iters", "100", "batch", "4", NULL }, &pl, &w, &sc, 4);
    QH_CHECK(pl.steps == 100 && pl.batch == 4 && sc.lr == 5e-3, "explicit iters overrides the recipe, its lr stays");
    plan_of((const char *const[]){ "recipe", "best", "lr", "0.01", "minmax_lr", "0.02", NULL }, &pl, &w, &sc, 2);
    QH_CHECK(pl.steps == 1000 && sc.lr == 0.01 && sc.minmax_lr == 0.02, "explicit lr and minmax_lr override");
}

static void test_bad_params(void)
{
    const qh_method_type *t = &qh_method_signround;
    void *p = qh_method_params_new(t);
    static const struct { const char *key, *value; } bad[] = {
        { "batch", "0" }, { "iters", "-2" }, { "recipe", "fast" }, { "lr", "-1" }, { "sym", "maybe" },
        { "group", "-1" }, { "minmax_lr", "x" }, { "ties", "down" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = qh_method_params_set(t, p, bad[i].key, bad[i].value);
        QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), bad[i].key), "%s = %s refused naming the key: %s",
                 bad[i].key, bad[i].value, qh_last_error());
    }
    free(p);
    qh_matd *W = random_W(4, 96, 6);
    qh_result r;
    qh_result_init(&r);
    int st = run("signround", (const char *const[]){ "group", "64", NULL }, W, NULL, 3, NULL, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "group") && strstr(qh_last_error(), "layers.1.fc1"),
             "group 64 of 96 refused naming the key and tensor: %s", qh_last_error());
    qh_result_free(&r);
    qh_matd_free(W);
}

/* ---- (g) the block stage ------------------------------------------------------------------------ */

static int tune(block_case *c, const char *const *kv, qh_block_stage_stats *bs)
{
    void *p = params_with("signround", kv);
    qh_block_stage_opts o = { 5, NULL, NULL };
    int st = qh_block_stage_tune(c->m, c->layer, c->x, c->x_fp, NS, TT, c->W_fp, &qh_method_signround, p,
                                 c->states, &o, bs);
    free(p);
    return st;
}

static void check_stage(const char *dir, int layer)
{
    block_case c, d;
    if (load_case(&c, dir, layer) != QH_OK || load_case(&d, dir, layer) != QH_OK) {
        QH_CHECK(0, "%s: setup: %s", dir, qh_last_error());
        return;
    }
    const char *kq[] = { "group", "64", NULL };
    const char *kv[] = { "group", "64", "iters", "30", "batch", "3", NULL };
    QH_CHECK(quantize_block(&c, kq, 3) == QH_OK && quantize_block(&d, kq, 3) == QH_OK, "quantize: %s",
             qh_last_error());
    qh_block_stage_stats a, b;
    int st = tune(&c, kv, &a);
    QH_CHECK(st == QH_OK && a.steps == 30 && a.loss_final < a.loss_init && a.mse_fp_final == a.loss_final,
             "%s block %d: 30 sign steps lower the block MSE below RTN's: %.6g -> %.6g (%s)", dir, layer,
             a.loss_init, a.loss_final, st ? qh_last_error() : "ok");
    QH_CHECK(fabs(a.loss_final - a.best_step_loss) <= 1e-12 * a.best_step_loss && a.best_step_loss <= a.loss_init,
             "%s: keep_best leaves the best iterate (final %.12g, best minibatch %.12g)", dir, a.loss_final,
             a.best_step_loss);
    QH_NOTE("%s block %d, 30 steps, w3 g64: block MSE %.6g -> %.6g (%.1f%%)", dir, layer, a.loss_init,
            a.loss_final, 100.0 * (a.loss_final / a.loss_init - 1.0));
    st = tune(&d, kv, &b);
    int eq = st == QH_OK && b.loss_final == a.loss_final;
    for (int k = 0; eq && k < QH_LIN_MAX; k++)
        if (srs(&c, k))
            eq = !memcmp(srs(&c, k)->V, srs(&d, k)->V, srs(&c, k)->rows * srs(&c, k)->cols * sizeof(double))
                 && !memcmp(srs(&c, k)->min_scale, srs(&d, k)->min_scale, srs(&c, k)->rows * srs(&c, k)->n_groups * sizeof(double));
    QH_CHECK(eq, "%s: two runs give identical parameters and losses", dir);
    size_t moved = 0, total = 0, capped = 0;
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (srs(&c, k)) {
            for (size_t i = 0; i < srs(&c, k)->rows * srs(&c, k)->cols; i++) moved += srs(&c, k)->V[i] != 0.0;
            for (size_t i = 0; i < srs(&c, k)->rows * srs(&c, k)->n_groups; i++)
                capped += srs(&c, k)->max_scale[i] > 1.0 || srs(&c, k)->max_scale[i] < 0.0;
            total += srs(&c, k)->rows * srs(&c, k)->cols;
        }
    QH_CHECK(moved > 0 && capped == 0, "%s: V moved on %zu/%zu weights, coefficients within [0, 1]", dir, moved,
             total);
    block_case_free(&c);
    block_case_free(&d);
}

int main(void)
{
    test_rtn_equal();
    test_fake_quant();
    test_step();
    test_bits();
    test_plan();
    test_bad_params();
    check_grad("models/opt-7m", 1, 0);
    check_grad("models/llama-9m", 2, 0);
    check_grad("models/opt-7m", 2, 1);
    check_grad("models/llama-9m", 1, 1);
    check_stage("models/opt-7m", 1);
    check_stage("models/llama-9m", 2);
    return qh_test_summary();
}
