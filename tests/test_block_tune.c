/* test_block_tune.c -- the block stage (experiments/pipeline/block_stage.h)
 * and PTQ1.61's block objective on it.
 *
 * 1. The loss against a naive double-precision evaluation written here from
 *    the formula, zero at Y_q = Y_fp = Y_fq, and its gradient against
 *    central differences in double (relative error ≤ 1e-4: the gradient is
 *    returned in float, 6e-8 relative, and the differences of a smooth
 *    function in double with h = 1e-5 carry ~1e-9 truncation error).
 * 2. The chain the tuner uses (state → Ŵ → block forward → loss → block
 *    backward → qh_ptq161_param_grad) against central differences of the
 *    block loss in α, r1 and r2 (each at its largest gradient entry) on a real block of the vendored opt-7m and
 *    llama-9m (relative error ≤ 1e-2, seen ≤ 1.5e-3: the block runs in float32 and the
 *    differences divide float rounding of the loss by 2h).
 * 3. The stage with ptq161's block ops: epochs 0 leaves Ŵ = the states'
 *    reconstruction and loss_final = loss_init; 8 epochs lower the mean block
 *    loss and the MSE to the float output on both models; two runs give
 *    identical bytes; a missing state is a named error.
 * 4. The stage knows no method: a row defined here ("gd": its state is Ŵ,
 *    its step plain gradient descent) runs through it, and its result equals
 *    bit for bit a replay written here (per window: Ŵ into the block,
 *    forward, loss, backward, Ŵ −= lr·G), with step numbers 1, 2, ... in
 *    order; a row without block ops and a missing state are named errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "pipeline/block_stage.h"
#include "model/forward.h"
#include "model/model.h"
#include "ptq161.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "block_case.h"
#include "pipeline/sequential.h"

static void fill_normal(float *x, size_t n, double scale, qh_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * qh_rng_normal(r));
}

/* ---- 1. the loss ---------------------------------------------------------------- */

static double naive_loss(const double *yq, const float *a, const float *b, size_t d, size_t T)
{
    double mse_a = 0, mse_b = 0, ca = 0, cb = 0;
    for (size_t t = 0; t < T; t++) {
        double qq = 0, aa = 0, bb = 0, qa = 0, qb = 0;
        for (size_t i = 0; i < d; i++) {
            double q = yq[t * d + i], x = a[t * d + i], y = b[t * d + i];
            mse_a += (q - x) * (q - x);
            mse_b += (q - y) * (q - y);
            qq += q * q; aa += x * x; bb += y * y; qa += q * x; qb += q * y;
        }
        ca += qa / fmax(sqrt(qq * aa), 1e-8);
        cb += qb / fmax(sqrt(qq * bb), 1e-8);
    }
    double n = (double)(d * T);
    return mse_a / n + mse_b / n - log(fabs(ca / (double)T)) - log(fabs(cb / (double)T));
}

static void test_loss(void)
{
    enum { D = 8, T = 5, N = D * T };
    qh_rng r = qh_rng_stream(1, 0, QH_RNG_TEST);
    float yq[N], a[N], b[N], dy[N];
    double yd[N];
    fill_normal(a, N, 1.0, &r);
    fill_normal(b, N, 1.0, &r);
    for (size_t i = 0; i < N; i++) yq[i] = a[i];
    double mse;
    double l0 = qh_block_loss(a, a, a, D, T, dy, &mse);
    double g0 = 0;
    for (size_t i = 0; i < N; i++) g0 = fmax(g0, fabs(dy[i]));
    QH_CHECK(fabs(l0) < 1e-12 && mse == 0 && g0 < 1e-6, "Y_q = Y_fp = Y_fq: loss %.2e, gradient %.2e", l0, g0);

    for (size_t i = 0; i < N; i++) yq[i] = (float)(0.7 * a[i] + 0.3 * b[i] + 0.1 * qh_rng_normal(&r));
    for (size_t i = 0; i < N; i++) yd[i] = yq[i];
    double l = qh_block_loss(yq, a, b, D, T, dy, &mse);
    double want = naive_loss(yd, a, b, D, T);
    QH_CHECK(fabs(l - want) <= 1e-12 * fabs(want), "loss %.12g = naive %.12g", l, want);

    double worst = 0, h = 1e-5, gmax = 0;
    for (size_t i = 0; i < N; i++) gmax = fmax(gmax, fabs(dy[i]));
    for (size_t i = 0; i < N; i++) {
        double s = yd[i];
        yd[i] = s + h;
        double lp = naive_loss(yd, a, b, D, T);
        yd[i] = s - h;
        double lm = naive_loss(yd, a, b, D, T);
        yd[i] = s;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - dy[i]) / gmax);
    }
    QH_CHECK(worst < 1e-4, "dL/dY_q = central differences (max error %.2e of max |g|)", worst);
}

/* ---- a real block with ptq161 states ------------------------------------------------- */

enum { NS = 3, TT = 24 };

static qh_ptq161_state *ptq(const block_case *c, int k) { return c->states[k]; }

static double h_diag(size_t j) { return 1.0 + 0.5 * (double)(j % 7); }

/* ptq161 (layer stage with `steps` proxy steps, H = diag(h_diag)) into the states. */
static int quantize_block(block_case *c, int steps)
{
    const qh_method_type *t = &qh_method_ptq161;
    void *params = qh_method_params_new(t);
    char sv[16];
    snprintf(sv, sizeof sv, "%d", steps);
    int st = params ? qh_method_params_set(t, params, "steps", sv) : QH_ENOMEM;
    if (st == QH_OK) st = block_case_quantize(c, t, params, 1, h_diag, 0);
    free(params);
    return st;
}

/* Jittered quantized-path inputs, ptq161 states after 0 proxy steps. */
static int load_case(block_case *c, const char *dir, int layer)
{
    QH_TRY(block_case_load(c, dir, layer, NS, TT, 7, 0.05, BLOCK_CASE_Y_NONE));
    return quantize_block(c, 0);
}

/* load_case, or a failed check (and nothing to free): 1 when loaded. */
static int open_case(block_case *c, const char *dir, int layer)
{
    if (load_case(c, dir, layer) == QH_OK) return 1;
    QH_CHECK(0, "%s: setup: %s", dir, qh_last_error());
    block_case_free(c);
    return 0;
}

/* Writes the states' Ŵ into the block. */
static void write_block(block_case *c)
{
    qh_block *b = &c->m->blocks[c->layer];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!ptq(c, k)) continue;
        qh_ptq161_model md = qh_ptq161_state_model(ptq(c, k));
        qh_matd *What = qh_matd_alloc(ptq(c, k)->rows, ptq(c, k)->cols);
        qh_ptq161_reconstruct(&md, ptq(c, k)->alpha, ptq(c, k)->r1, ptq(c, k)->r2, What);
        qh_linear_from_matd(&b->lin[k], What);
        qh_matd_free(What);
    }
}

/* Targets of window s (float weights swapped in). */
static void targets(block_case *c, qh_block_tape *tape, float *y_fp, float *y_fq)
{
    float *W[QH_LIN_MAX];
    memcpy(W, c->W_fp, sizeof W);
    size_t win = c->hidden * TT;
    qh_block_swap_weights(c->m, c->layer, W);
    for (size_t s = 0; s < NS; s++) {
        if (qh_block_forward_tape(c->m, c->layer, c->x_fp + s * win, TT, y_fp + s * win, tape) != QH_OK ||
            qh_block_forward_tape(c->m, c->layer, c->x + s * win, TT, y_fq + s * win, tape) != QH_OK)
            QH_CHECK(0, "targets: %s", qh_last_error());
    }
    qh_block_swap_weights(c->m, c->layer, W);
}

/* Block loss summed over windows at the states' current scales; with
 * grads, the gradients of linear `kind`'s α, r1, r2 (m, m, n) too. */
static double block_loss(block_case *c, qh_block_tape *tape, const float *y_fp, const float *y_fq,
                         int kind, double *ga)
{
    size_t win = c->hidden * TT;
    qh_linear *lin = &c->m->blocks[c->layer].lin[kind];
    size_t m = (size_t)lin->out, n = (size_t)lin->in;
    float *yq = malloc(2 * win * sizeof(float)), *dy = yq + win;
    float *Gf = calloc(m * n, sizeof(float));
    float *G[QH_LIN_MAX] = { NULL };
    G[kind] = Gf;
    write_block(c);
    double l = 0;
    for (size_t s = 0; s < NS; s++) {
        if (qh_block_forward_tape(c->m, c->layer, c->x + s * win, TT, yq, tape) != QH_OK)
            QH_CHECK(0, "forward: %s", qh_last_error());
        l += qh_block_loss(yq, y_fp + s * win, y_fq + s * win, c->hidden, TT, ga ? dy : NULL, NULL);
        if (ga && qh_block_backward(c->m, c->layer, dy, tape, G) != QH_OK)
            QH_CHECK(0, "backward: %s", qh_last_error());
    }
    if (ga) {
        qh_matd *Gd = qh_matd_alloc(m, n);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) QH_AT(Gd, i, j) = Gf[i * n + j];
        qh_ptq161_model md = qh_ptq161_state_model(ptq(c, kind));
        qh_ptq161_param_grad(&md, ptq(c, kind)->alpha, ptq(c, kind)->r1, ptq(c, kind)->r2, Gd, ga,
                             ga + m, ga + 2 * m);
        qh_matd_free(Gd);
    }
    free(Gf);
    free(yq);
    return l;
}

/* Central difference of the block loss in the entry of one scale vector
 * with the largest analytic gradient, relative to that gradient. */
static double fd_error(block_case *c, qh_block_tape *tape, const float *y_fp, const float *y_fq,
                       int kind, double *x, const double *g, size_t count)
{
    size_t idx = 0;
    for (size_t i = 1; i < count; i++) if (fabs(g[i]) > fabs(g[idx])) idx = i;
    double gmax = fabs(g[idx]), h = 1e-2 * fmax(fabs(x[idx]), 1e-3);
    double s = x[idx];
    x[idx] = s + h;
    double lp = block_loss(c, tape, y_fp, y_fq, kind, NULL);
    x[idx] = s - h;
    double lm = block_loss(c, tape, y_fp, y_fq, kind, NULL);
    x[idx] = s;
    return fabs((lp - lm) / (2 * h) - g[idx]) / gmax;
}

static void check_chain(const char *dir, int layer)
{
    block_case c;
    if (!open_case(&c, dir, layer)) return;
    qh_block_tape *tape = NULL;
    size_t win = c.hidden * TT;
    float *y = malloc(2 * NS * win * sizeof(float));
    QH_CHECK(qh_block_tape_alloc(c.m, TT, &tape) == QH_OK && y, "tape: %s", qh_last_error());
    targets(&c, tape, y, y + NS * win);
    static const int kinds[] = { QH_LIN_Q, QH_LIN_O, QH_LIN_UP, QH_LIN_DOWN };
    for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++) {
        int k = kinds[ki];
        qh_ptq161_state *s = ptq(&c, k);
        size_t m = s->rows, n = s->cols;
        double *g = malloc((2 * m + n) * sizeof *g);
        block_loss(&c, tape, y, y + NS * win, k, g);
        double ea = fd_error(&c, tape, y, y + NS * win, k, s->alpha, g, m);
        double e1 = fd_error(&c, tape, y, y + NS * win, k, s->r1, g + m, m);
        double e2 = fd_error(&c, tape, y, y + NS * win, k, s->r2, g + 2 * m, n);
        size_t zero_on_salient = 0, n_salient = 0;
        for (size_t j = 0; j < n; j++)
            if (s->salient[j]) { n_salient++; zero_on_salient += g[2 * m + j] == 0.0; }
        QH_CHECK(n_salient > 0 && zero_on_salient == n_salient, "%s %s: r2 gradient zero on the %zu salient columns",
                 dir, qh_model_linear_short_name(c.m, k), n_salient);
        QH_CHECK(ea < 1e-2 && e1 < 1e-2 && e2 < 1e-2,
                 "%s block %d %s: d loss / d(alpha, r1, r2) = central differences (%.1e %.1e %.1e)",
                 dir, layer, qh_model_linear_short_name(c.m, k), ea, e1, e2);
        QH_NOTE("%s block %d %s: relative FD errors alpha %.1e r1 %.1e r2 %.1e", dir, layer,
                qh_model_linear_short_name(c.m, k), ea, e1, e2);
        free(g);
    }
    free(y);
    qh_block_tape_free(tape);
    block_case_free(&c);
}

/* ---- 3. the stage with ptq161's block ops ---------------------------------------------- */

static int tune(block_case *c, int epochs, qh_block_stage_stats *bs)
{
    const qh_method_type *t = &qh_method_ptq161;
    void *p = qh_method_params_new(t);
    char ev[16];
    snprintf(ev, sizeof ev, "%d", epochs);
    int st = p ? qh_method_params_set(t, p, "epochs", ev) : QH_ENOMEM;
    if (st == QH_OK) st = qh_block_stage_tune(c->m, c->layer, c->x, c->x_fp, NS, TT, c->W_fp, t, p, c->states, NULL, bs);
    free(p);
    return st;
}

/* The block's weights, concatenated (for byte comparisons). */
static float *block_weights(const block_case *c, size_t *count)
{
    const qh_block *b = &c->m->blocks[c->layer];
    size_t total = 0, at = 0;
    for (int k = 0; k < QH_LIN_MAX; k++) if (b->lin[k].W) total += (size_t)b->lin[k].out * (size_t)b->lin[k].in;
    float *w = malloc(total * sizeof *w);
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!b->lin[k].W) continue;
        size_t n = (size_t)b->lin[k].out * (size_t)b->lin[k].in;
        memcpy(w + at, b->lin[k].W, n * sizeof *w);
        at += n;
    }
    *count = total;
    return w;
}

static void check_tuner(const char *dir, int layer)
{
    block_case c, d;
    if (load_case(&c, dir, layer) != QH_OK || load_case(&d, dir, layer) != QH_OK) {
        QH_CHECK(0, "%s: setup: %s", dir, qh_last_error());
        return;
    }
    qh_block_stage_stats b0, b1, b2;
    QH_CHECK(tune(&c, 0, &b0) == QH_OK && b0.steps == 0 && b0.loss_final == b0.loss_init,
             "%s: epochs 0: loss %.6g unchanged, 0 steps (%s)", dir, b0.loss_init, qh_last_error());
    size_t n0, n1;
    float *w_tuned0 = block_weights(&c, &n0);
    write_block(&c);
    float *w_states = block_weights(&c, &n1);
    QH_CHECK(n0 == n1 && !memcmp(w_tuned0, w_states, n0 * sizeof(float)), "%s: epochs 0 writes the states' W", dir);
    free(w_tuned0);
    free(w_states);

    QH_CHECK(tune(&c, 8, &b1) == QH_OK, "%s: 8 epochs run: %s", dir, qh_last_error());
    QH_CHECK(b1.steps == 8 * NS && b1.loss_final < b1.loss_init && b1.mse_fp_final < b1.mse_fp_init,
             "%s block %d: 8 epochs lower the loss %.5g -> %.5g and the MSE to float %.5g -> %.5g",
             dir, layer, b1.loss_init, b1.loss_final, b1.mse_fp_init, b1.mse_fp_final);
    QH_NOTE("%s block %d: 8 epochs x %d windows: loss %.5g -> %.5g, MSE to float %.5g -> %.5g", dir,
            layer, NS, b1.loss_init, b1.loss_final, b1.mse_fp_init, b1.mse_fp_final);
    QH_CHECK(tune(&d, 0, &b2) == QH_OK && tune(&d, 8, &b2) == QH_OK, "%s: second run", dir);
    float *wc = block_weights(&c, &n0), *wd = block_weights(&d, &n1);
    QH_CHECK(b2.loss_final == b1.loss_final && !memcmp(wc, wd, n0 * sizeof(float)),
             "%s: two runs give identical weights and losses", dir);
    free(wc);
    free(wd);

    void *keep = d.states[QH_LIN_V];
    d.states[QH_LIN_V] = qh_method_ptq161.block->state_new();
    int st = tune(&d, 1, &b2);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "v_proj") && strstr(qh_last_error(), "no ptq161 state"),
             "unfilled state named: %s", qh_last_error());
    qh_method_ptq161.block->state_free(d.states[QH_LIN_V]);
    /* A NULL state keeps its linear as it is (a linear skipped by a rule); the others are tuned. */
    const qh_linear *v = &d.m->blocks[d.layer].lin[QH_LIN_V], *q = &d.m->blocks[d.layer].lin[QH_LIN_Q];
    size_t nv = (size_t)v->out * (size_t)v->in, nq = (size_t)q->out * (size_t)q->in;
    float *v0 = malloc(nv * sizeof *v0), *q0 = malloc(nq * sizeof *q0);
    memcpy(v0, v->W, nv * sizeof *v0);
    memcpy(q0, q->W, nq * sizeof *q0);
    d.states[QH_LIN_V] = NULL;
    st = tune(&d, 1, &b2);
    QH_CHECK(st == QH_OK && !memcmp(v0, v->W, nv * sizeof *v0) && memcmp(q0, q->W, nq * sizeof *q0),
             "%s: a NULL state leaves v_proj untouched and q_proj is tuned (%s)", dir,
             st == QH_OK ? "ok" : qh_last_error());
    free(v0);
    free(q0);
    d.states[QH_LIN_V] = keep;
    block_case_free(&c);
    block_case_free(&d);
}

/* ---- 4. a block-tuned row defined here ------------------------------------------------- */

typedef struct {
    int epochs;
    double lr;
    int custom;                      /* 1: plan below instead of epochs x windows in order */
    qh_block_plan plan;
} gd_params;
typedef struct {
    qh_matd *What;                   /* the state is Ŵ itself */
    qh_matd *saved;                  /* keep's copy */
    int last_step, in_order;         /* step numbers seen: 1, 2, ... */
} gd_state;

static int gd_wants(const void *params) { (void)params; return 1; }
static void gd_plan(const void *params, size_t nsamples, qh_block_plan *out)
{
    const gd_params *p = params;
    if (p->custom) {
        *out = p->plan;
        return;
    }
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_PTQ161,
                            .steps = (long)((const gd_params *)params)->epochs * (long)nsamples,
                            .batch = 1, .draw = QH_BLOCK_DRAW_SEQUENTIAL };
}
static void *gd_state_new(void) { return calloc(1, sizeof(gd_state)); }

static void gd_state_free(void *state)
{
    if (state) {
        qh_matd_free(((gd_state *)state)->What);
        qh_matd_free(((gd_state *)state)->saved);
    }
    free(state);
}

static void gd_state_shape(const void *state, size_t *rows, size_t *cols)
{
    const gd_state *s = state;
    *rows = s->What ? s->What->rows : 0;
    *cols = s->What ? s->What->cols : 0;
}

static void gd_copy(const qh_matd *from, qh_matd *to)
{
    for (size_t j = 0; j < from->cols; j++)
        for (size_t i = 0; i < from->rows; i++) QH_AT(to, i, j) = QH_AT(from, i, j);
}

static void gd_reconstruct(const void *params, const void *state, qh_matd *What)
{
    (void)params;
    gd_copy(((const gd_state *)state)->What, What);
}

static void gd_descend(qh_matd *What, const qh_matd *G, double lr)
{
    for (size_t j = 0; j < What->cols; j++)
        for (size_t i = 0; i < What->rows; i++) QH_AT(What, i, j) -= lr * QH_AT(G, i, j);
}

static int gd_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    gd_state *s = state;
    s->in_order &= step_no == s->last_step + 1;
    s->last_step = step_no;
    gd_descend(s->What, G, ((const gd_params *)params)->lr);
    return QH_OK;
}

static int gd_keep(void *state, int action)
{
    gd_state *s = state;
    if (action == QH_BLOCK_KEEP_SAVE) {
        if (!s->saved) s->saved = qh_matd_alloc(s->What->rows, s->What->cols);
        if (!s->saved) return QH_ENOMEM;
        gd_copy(s->What, s->saved);
    } else if (s->saved) {
        gd_copy(s->saved, s->What);
    }
    return QH_OK;
}

static const qh_block_ops gd_ops = {
    .setting = "gd", .wants = gd_wants, .plan = gd_plan, .state_new = gd_state_new,
    .state_free = gd_state_free, .state_shape = gd_state_shape, .reconstruct = gd_reconstruct,
    .step = gd_step, .keep = gd_keep,
};
static const qh_method_type gd_row = { .name = "gd", .block = &gd_ops };

/* Ŵ0 = 0.9 W_fp of every linear of the block, as gd states and as plain copies. */
static void gd_start(block_case *c, void *states[QH_LIN_MAX], qh_matd *copy[QH_LIN_MAX])
{
    qh_block *b = &c->m->blocks[c->layer];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        states[k] = NULL;
        copy[k] = NULL;
        if (!b->lin[k].W) continue;
        gd_state *s = states[k] = gd_state_new();
        size_t m = (size_t)b->lin[k].out, n = (size_t)b->lin[k].in;
        s->What = qh_matd_alloc(m, n);
        s->in_order = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) QH_AT(s->What, i, j) = 0.9 * (double)c->W_fp[k][i * n + j];
        copy[k] = qh_matd_alloc(m, n);
        gd_copy(s->What, copy[k]);
    }
}

/* One window of the replay: Ŵ into the block, forward, loss, backward, descent. */
static void gd_replay_window(block_case *c, qh_block_tape *tape, size_t s, const float *y, qh_matd *What[QH_LIN_MAX],
                             double lr)
{
    size_t win = c->hidden * TT;
    qh_block *b = &c->m->blocks[c->layer];
    float *yq = malloc(2 * win * sizeof(float)), *dy = yq + win, *G[QH_LIN_MAX] = { NULL };
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (What[k]) {
            qh_linear_from_matd(&b->lin[k], What[k]);
            G[k] = calloc(What[k]->rows * What[k]->cols, sizeof(float));
        }
    if (qh_block_forward_tape(c->m, c->layer, c->x + s * win, TT, yq, tape) != QH_OK)
        QH_CHECK(0, "replay forward: %s", qh_last_error());
    qh_block_loss(yq, y + s * win, y + (NS + s) * win, c->hidden, TT, dy, NULL);
    if (qh_block_backward(c->m, c->layer, dy, tape, G) != QH_OK)
        QH_CHECK(0, "replay backward: %s", qh_last_error());
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!What[k]) continue;
        size_t m = What[k]->rows, n = What[k]->cols;
        qh_matd *Gd = qh_matd_alloc(m, n);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) QH_AT(Gd, i, j) = (double)G[k][i * n + j];
        gd_descend(What[k], Gd, lr);
        qh_matd_free(Gd);
        free(G[k]);
    }
    free(yq);
}

/* The replay's Ŵ equal (bitwise) to the states'. */
static int gd_same(void *states[QH_LIN_MAX], qh_matd *What[QH_LIN_MAX])
{
    int same = 1;
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!What[k]) continue;
        const qh_matd *S = ((gd_state *)states[k])->What;
        for (size_t j = 0; j < What[k]->cols; j++)
            for (size_t i = 0; i < What[k]->rows; i++) same &= QH_AT(S, i, j) == QH_AT(What[k], i, j);
    }
    return same;
}

/* Replays `epochs` passes from the copies in What; 1 when the block's weights
 * the stage left equal the replay's final Ŵ bitwise (the replay writes its
 * final Ŵ into the block to compare). */
static int gd_replay(block_case *c, qh_matd *What[QH_LIN_MAX], int epochs, double lr)
{
    qh_block_tape *tape = NULL;
    size_t win = c->hidden * TT, n0, n1;
    float *y = malloc(2 * NS * win * sizeof(float));
    QH_CHECK(qh_block_tape_alloc(c->m, TT, &tape) == QH_OK && y, "tape: %s", qh_last_error());
    float *tuned = block_weights(c, &n0);
    targets(c, tape, y, y + NS * win);
    for (int e = 0; e < epochs; e++)
        for (size_t s = 0; s < NS; s++) gd_replay_window(c, tape, s, y, What, lr);
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (What[k]) qh_linear_from_matd(&c->m->blocks[c->layer].lin[k], What[k]);
    float *replayed = block_weights(c, &n1);
    int same = n0 == n1 && !memcmp(tuned, replayed, n0 * sizeof(float));
    free(tuned);
    free(replayed);
    free(y);
    qh_block_tape_free(tape);
    return same;
}

static void check_fake_row(const char *dir, int layer)
{
    block_case c;
    if (!open_case(&c, dir, layer)) return;
    void *states[QH_LIN_MAX];
    qh_matd *replay[QH_LIN_MAX];
    gd_start(&c, states, replay);
    gd_params p = { 2, 0.05, 0, { 0 } };
    qh_block_stage_stats bs;
    int st = qh_block_stage_tune(c.m, c.layer, c.x, c.x_fp, NS, TT, c.W_fp, &gd_row, &p, states, NULL, &bs);
    QH_CHECK(st == QH_OK && bs.steps == 2 * NS, "%s: the stage runs a row defined in the test (%zu steps): %s",
             dir, bs.steps, qh_last_error());
    QH_NOTE("%s block %d, gd lr %.2g: loss %.5g -> %.5g", dir, layer, p.lr, bs.loss_init, bs.loss_final);
    QH_CHECK(bs.loss_final < bs.loss_init, "%s: gradient descent through the stage lowers the block loss", dir);
    int in_order = 1;
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (states[k]) in_order &= ((gd_state *)states[k])->in_order && ((gd_state *)states[k])->last_step == 2 * NS;
    QH_CHECK(in_order, "%s: every state saw steps 1 .. %d in order", dir, 2 * NS);
    QH_CHECK(gd_replay(&c, replay, p.epochs, p.lr) && gd_same(states, replay),
             "%s: the stage's states and block weights = a replay written here, bitwise", dir);

    qh_method_type plain = { .name = "plain" };
    st = qh_block_stage_tune(c.m, c.layer, c.x, c.x_fp, NS, TT, c.W_fp, &plain, &p, states, NULL, &bs);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "plain has no block stage"), "no block ops: %s",
             qh_last_error());
    void *keep = states[QH_LIN_O];
    states[QH_LIN_O] = gd_state_new();
    st = qh_block_stage_tune(c.m, c.layer, c.x, c.x_fp, NS, TT, c.W_fp, &gd_row, &p, states, NULL, &bs);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "no gd state"), "unfilled gd state named: %s",
             qh_last_error());
    gd_state_free(states[QH_LIN_O]);
    states[QH_LIN_O] = keep;
    for (int k = 0; k < QH_LIN_MAX; k++) {
        gd_state_free(states[k]);
        qh_matd_free(replay[k]);
    }
    block_case_free(&c);
}

/* Largest |a − b| / max|b| over the block's states. */
static double gd_rel_diff(void *a[QH_LIN_MAX], void *b[QH_LIN_MAX])
{
    double d = 0.0, mx = 0.0;
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!a[k]) continue;
        const qh_matd *A = ((gd_state *)a[k])->What, *B = ((gd_state *)b[k])->What;
        for (size_t j = 0; j < A->cols; j++)
            for (size_t i = 0; i < A->rows; i++) {
                d = fmax(d, fabs(QH_AT(A, i, j) - QH_AT(B, i, j)));
                mx = fmax(mx, fabs(QH_AT(B, i, j)));
            }
    }
    return d / fmax(mx, 1e-300);
}

static int gd_states_equal(void *a[QH_LIN_MAX], qh_matd *copy[QH_LIN_MAX])
{
    return gd_same(a, copy);
}

static void gd_free_all(void *states[QH_LIN_MAX], qh_matd *copy[QH_LIN_MAX])
{
    for (int k = 0; k < QH_LIN_MAX; k++) {
        gd_state_free(states[k]);
        qh_matd_free(copy[k]);
    }
}

/* Runs the gd row with plan pl from Ŵ0 = 0.9 W_fp; states and start copies out. */
static int gd_run(block_case *c, const qh_block_plan *pl, double lr, uint64_t seed,
                  void *states[QH_LIN_MAX], qh_matd *copy[QH_LIN_MAX], qh_block_stage_stats *bs)
{
    gd_start(c, states, copy);
    gd_params p = { 0, lr, 1, *pl };
    qh_block_stage_opts o = { seed, NULL, NULL };
    return qh_block_stage_tune(c->m, c->layer, c->x, c->x_fp, NS, TT, c->W_fp, &gd_row, &p, states, &o, bs);
}

/* The plan's features: the MSE loss, minibatches (sequential and random),
 * seeds, keep_best and early stopping. */
static void check_plans(const char *dir, int layer)
{
    block_case c;
    if (!open_case(&c, dir, layer)) return;
    void *a[QH_LIN_MAX], *b[QH_LIN_MAX];
    qh_matd *ca[QH_LIN_MAX], *cb[QH_LIN_MAX];
    qh_block_stage_stats sa, sb;
    /* one step on all windows: in order or drawn at random, the same mean gradient */
    qh_block_plan seq = { .loss = QH_BLOCK_LOSS_MSE, .steps = 1, .batch = NS, .draw = QH_BLOCK_DRAW_SEQUENTIAL };
    qh_block_plan rnd = seq;
    rnd.draw = QH_BLOCK_DRAW_RANDOM;
    int st = gd_run(&c, &seq, 0.05, 1, a, ca, &sa);
    st |= gd_run(&c, &rnd, 0.05, 1, b, cb, &sb);
    double d = gd_rel_diff(a, b);
    QH_CHECK(st == QH_OK && d < 1e-6, "%s: a minibatch of every window: same step in any order (rel %.2g)", dir, d);
    QH_CHECK(fabs(sa.mse_fp_init - sa.loss_init) <= 1e-12 * sa.loss_init,
             "%s: the MSE loss is the MSE to the float block (%.6g, %.6g)", dir, sa.loss_init, sa.mse_fp_init);
    gd_free_all(b, cb);
    /* a batch larger than the windows: the stage caps it (the rows leave the cap to it) */
    qh_block_plan big = seq;
    big.batch = NS + 5;
    st = gd_run(&c, &big, 0.05, 1, b, cb, &sb);
    QH_CHECK(st == QH_OK && sb.steps == 1 && gd_rel_diff(a, b) == 0.0,
             "%s: batch %d of %d windows: capped, the step of all windows bitwise", dir, NS + 5, NS);
    gd_free_all(a, ca);
    gd_free_all(b, cb);
    /* random minibatches of 2: a seed fixes them, another seed changes them */
    rnd.batch = 2;
    rnd.steps = 4;
    st = gd_run(&c, &rnd, 0.05, 7, a, ca, &sa) | gd_run(&c, &rnd, 0.05, 7, b, cb, &sb);
    QH_CHECK(st == QH_OK && gd_rel_diff(a, b) == 0.0, "%s: random draws: same seed, same states bitwise", dir);
    gd_free_all(b, cb);
    st = gd_run(&c, &rnd, 0.05, 8, b, cb, &sb);
    QH_CHECK(st == QH_OK && gd_rel_diff(a, b) > 0.0, "%s: random draws: another seed, other windows", dir);
    QH_CHECK(sa.loss_final < sa.loss_init && sa.steps == 4, "%s: MSE descent lowers the loss (%.5g -> %.5g)",
             dir, sa.loss_init, sa.loss_final);
    gd_free_all(a, ca);
    gd_free_all(b, cb);
    /* a diverging step size: keep_best returns the start, early stopping too */
    qh_block_plan best = rnd;
    best.keep_best = 1;
    st = gd_run(&c, &best, 30.0, 3, a, ca, &sa);
    QH_CHECK(st == QH_OK && gd_states_equal(a, ca) && sa.loss_final == sa.loss_init && sa.best_step_loss > 0,
             "%s: keep_best after diverging steps keeps the start (loss %.5g -> %.5g)", dir, sa.loss_init,
             sa.loss_final);
    gd_free_all(a, ca);
    qh_block_plan pat = { .loss = QH_BLOCK_LOSS_MSE, .steps = 100, .batch = NS, .patience = 2, .rel_tol = 0.0 };
    st = gd_run(&c, &pat, 30.0, 3, a, ca, &sa);
    QH_CHECK(st == QH_OK && sa.passes_stopped == 2 && sa.steps == 2 && gd_states_equal(a, ca) &&
             sa.loss_final == sa.loss_init,
             "%s: patience 2 stops after two bad passes (%zu steps) and restores the best pass (%s)", dir, sa.steps,
             st == QH_OK ? "ok" : qh_last_error());
    gd_free_all(a, ca);
    /* a plan that keeps the best needs the keep op */
    qh_block_ops nokeep = gd_ops;
    nokeep.keep = NULL;
    qh_method_type row = { .name = "nokeep", .block = &nokeep };
    gd_start(&c, a, ca);
    gd_params p = { 0, 0.05, 1, best };
    st = qh_block_stage_tune(c.m, c.layer, c.x, c.x_fp, NS, TT, c.W_fp, &row, &p, a, NULL, &sa);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "keep op"), "keep_best without keep refused: %s",
             qh_last_error());
    gd_free_all(a, ca);
    block_case_free(&c);
}

int main(void)
{
    test_loss();
    check_chain("models/opt-7m", 1);
    check_chain("models/llama-9m", 2);
    check_tuner("models/opt-7m", 1);
    check_tuner("models/llama-9m", 0);
    check_fake_row("models/opt-7m", 1);
    check_fake_row("models/llama-9m", 1);
    check_plans("models/opt-7m", 2);
    check_plans("models/llama-9m", 1);
    return qh_test_summary();
}
