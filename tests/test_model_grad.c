/* test_model_grad.c -- the input gradient of a decoder block
 * (qh_block_backward_input) and the head's backward pass (qh_head_backward),
 * model/backward.h.
 *
 * 1. Block input: for L = <R, y(x)> (R fixed random, dy = R, L in double),
 *    dx = dL/dx against central differences of the float32 forward pass:
 *    along random directions D of x (scaled to the RMS of x) and in single
 *    entries of x; on the synthetic pre-LN OPT, the synthetic GQA Llama, the
 *    synthetic OPT with a parallel residual, and blocks of the vendored
 *    opt-7m and llama-9m on wikitext2 windows.  The weight gradients that
 *    qh_block_backward_input adds are those qh_block_backward adds (to float
 *    rounding: the same products in the same order, so exactly equal).
 * 2. Head: L = <R, logits(x)>, dlogits = R, dx = dL/dx of the last block's
 *    output the same way, on the vendored models (LayerNorm, RMSNorm), the
 *    synthetic OPT with project_out and the synthetic OPT with Gemma 2's final
 *    logit soft-capping switched on.
 * 3. Refusals: dx aliasing x or dy, NULL x.
 *
 * Tolerance: as test_block_grad.c's float32 checks (its comment explains the
 * choice): eps 1e-3 relative, directions within FD_TOL 2e-2 of
 * max(|<dx,D>|, |dx| |D| / sqrt(n)), entries within FD_ENTRY_TOL 1e-2 of
 * max |dx|.  Measured worst values are printed at the end.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "tokenizer/tokenizer.h"

#ifndef FD_EPS
#define FD_EPS 1e-3
#endif
#define FD_TOL 2e-2
#define FD_ENTRY_TOL 1e-2
#define N_ENTRIES 6

static double worst_dir, worst_entry, worst_head_dir, worst_head_entry, worst_gsame;

static void fill_normal(float *x, size_t n, double scale, qh_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * qh_rng_normal(r));
}

static double rms(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s / (double)n);
}

static double dotf(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* The function whose input gradient is checked: L(x) = <R, f(x)>. */
typedef struct {
    const qh_model *m;
    int layer;                       /* >= 0: block `layer`; -1: the head */
    size_t T;
    const float *R;
    float *out;                      /* block: hidden x T; head: vocab x T */
    qh_block_tape *tape;
    qh_forward_ws *ws;
} fn_ctx;

static double eval_L(fn_ctx *c, const float *x, int *st)
{
    size_t n;
    if (c->layer >= 0) {
        *st = qh_block_forward_tape(c->m, c->layer, x, c->T, c->out, c->tape);
        n = (size_t)c->m->cfg.hidden * c->T;
    } else {
        *st = qh_forward_head(c->m, x, c->T, c->ws, c->out);
        n = (size_t)c->m->cfg.vocab_size * c->T;
    }
    return dotf(c->R, c->out, n);
}

/* Directional and entry checks of dx at x (hidden x T). */
static void check_dx(const char *name, fn_ctx *c, const float *x, const float *dx, uint32_t key)
{
    size_t n = (size_t)c->m->cfg.hidden * c->T;
    qh_rng r = qh_rng_stream(50, key, QH_RNG_TEST);
    float *D = malloc(n * sizeof(float)), *xp = malloc(n * sizeof(float));
    double sx = rms(x, n), ndx = sqrt(dotf(dx, dx, n)), mdx = 0.0;
    for (size_t i = 0; i < n; i++) mdx = fmax(mdx, fabs((double)dx[i]));
    int st1 = QH_OK, st2 = QH_OK;
    double *wd = c->layer >= 0 ? &worst_dir : &worst_head_dir;
    double *we = c->layer >= 0 ? &worst_entry : &worst_head_entry;
    for (int rep = 0; rep < 2; rep++) {
        fill_normal(D, n, sx, &r);
        for (size_t i = 0; i < n; i++) xp[i] = (float)((double)x[i] + FD_EPS * D[i]);
        double lp = eval_L(c, xp, &st1);
        for (size_t i = 0; i < n; i++) xp[i] = (float)((double)x[i] - FD_EPS * D[i]);
        double lm = eval_L(c, xp, &st2);
        double fd = (lp - lm) / (2.0 * FD_EPS), an = dotf(dx, D, n);
        double scale = fmax(fabs(an), ndx * sqrt(dotf(D, D, n)) / sqrt((double)n));
        double err = fabs(fd - an) / scale;
        *wd = fmax(*wd, err);
        QH_CHECK(st1 == QH_OK && st2 == QH_OK && err <= FD_TOL,
                 "%s: <dx, D> %.6g vs central difference %.6g (rel %.3g, tol %g)", name, an, fd,
                 err, FD_TOL);
    }
    for (int e = 0; e < N_ENTRIES; e++) {
        size_t i = (size_t)qh_rng_below(&r, n);
        double h = FD_EPS * fmax(sx, 1e-3);
        memcpy(xp, x, n * sizeof(float));
        xp[i] = (float)((double)x[i] + h);
        double hp = (double)xp[i] - x[i];
        double lp = eval_L(c, xp, &st1);
        xp[i] = (float)((double)x[i] - h);
        double hm = (double)x[i] - xp[i];
        double lm = eval_L(c, xp, &st2);
        double fd = (lp - lm) / (hp + hm), err = fabs(fd - dx[i]) / fmax(mdx, 1e-30);
        *we = fmax(*we, err);
        QH_CHECK(st1 == QH_OK && st2 == QH_OK && err <= FD_ENTRY_TOL,
                 "%s: dx[%zu] %.6g vs central difference %.6g (rel to max|dx| %.3g, tol %g)", name,
                 i, dx[i], fd, err, FD_ENTRY_TOL);
    }
    free(D);
    free(xp);
}

static int has_kind(const qh_model *m, int k) { return qh_model_linear_number(m, k) >= 0; }

/* Part 1 on block `layer` of m at x (hidden x T). */
static void check_block(const char *name, const qh_model *m, int layer, const float *x, size_t T,
                        uint32_t key)
{
    size_t d = (size_t)m->cfg.hidden, n = d * T;
    qh_rng r = qh_rng_stream(51, key, QH_RNG_TEST);
    float *R = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *dx = malloc(n * sizeof(float));
    float *G1[QH_LIN_MAX] = { NULL }, *G2[QH_LIN_MAX] = { NULL };
    fill_normal(R, n, 1.0, &r);
    fn_ctx c = { m, layer, T, R, y, NULL, NULL };
    int st = qh_block_tape_alloc(m, T, &c.tape);
    if (st == QH_OK) st = qh_block_forward_tape(m, layer, x, T, y, c.tape);
    if (st == QH_OK) st = qh_block_backward_input(m, layer, x, R, c.tape, G1, dx);
    QH_CHECK(st == QH_OK, "%s block %d: forward + input backward: %s", name, layer,
             st ? qh_last_error() : "");
    if (st == QH_OK) {
        /* the weight gradients with dx are qh_block_backward's */
        for (int k = 0; k < QH_LIN_MAX; k++) {
            if (!has_kind(m, k)) continue;
            size_t w = (size_t)m->blocks[layer].lin[k].out * (size_t)m->blocks[layer].lin[k].in;
            G1[k] = calloc(w, sizeof(float));
            G2[k] = calloc(w, sizeof(float));
        }
        float *dx2 = malloc(n * sizeof(float));
        st = qh_block_backward_input(m, layer, x, R, c.tape, G1, dx2);
        if (st == QH_OK) st = qh_block_backward(m, layer, R, c.tape, G2);
        double diff = memcmp(dx, dx2, n * sizeof(float)) ? 1.0 : 0.0;
        for (int k = 0; k < QH_LIN_MAX && st == QH_OK; k++) {
            if (!G1[k]) continue;
            size_t w = (size_t)m->blocks[layer].lin[k].out * (size_t)m->blocks[layer].lin[k].in;
            double mg = 0.0, md = 0.0;
            for (size_t i = 0; i < w; i++) {
                mg = fmax(mg, fabs((double)G2[k][i]));
                md = fmax(md, fabs((double)G1[k][i] - G2[k][i]));
            }
            diff = fmax(diff, md / fmax(mg, 1e-30));
        }
        worst_gsame = fmax(worst_gsame, diff);
        QH_CHECK(st == QH_OK && diff <= 1e-6,
                 "%s block %d: G with the input gradient equals qh_block_backward's and dx is "
                 "repeatable (rel %.3g)", name, layer, diff);
        free(dx2);
        char what[96];
        snprintf(what, sizeof what, "%s block %d dx (T = %zu)", name, layer, T);
        check_dx(what, &c, x, dx, key);
    }
    /* refusals */
    if (st == QH_OK) {
        QH_CHECK(qh_block_backward_input(m, layer, x, R, c.tape, G1, R) == QH_EINVAL,
                 "%s: dx == dy refused", name);
        QH_CHECK(qh_block_backward_input(m, layer, NULL, R, c.tape, G1, dx) == QH_EINVAL,
                 "%s: x NULL refused", name);
    }
    for (int k = 0; k < QH_LIN_MAX; k++) { free(G1[k]); free(G2[k]); }
    qh_block_tape_free(c.tape);
    free(R); free(y); free(dx);
}

/* Part 2 on m's head at x (hidden x T). */
static void check_head(const char *name, const qh_model *m, const float *x, size_t T, uint32_t key)
{
    size_t d = (size_t)m->cfg.hidden, V = (size_t)m->cfg.vocab_size;
    qh_rng r = qh_rng_stream(52, key, QH_RNG_TEST);
    float *R = malloc(V * T * sizeof(float)), *lg = malloc(V * T * sizeof(float));
    float *dx = malloc(d * T * sizeof(float));
    fill_normal(R, V * T, 1.0, &r);
    fn_ctx c = { m, -1, T, R, lg, NULL, NULL };
    int st = qh_forward_ws_alloc(m, T, &c.ws);
    if (st == QH_OK) st = qh_forward_head(m, x, T, c.ws, lg);
    if (st == QH_OK) st = qh_head_backward(m, x, lg, R, T, dx);
    QH_CHECK(st == QH_OK, "%s head: %s", name, st ? qh_last_error() : "");
    if (st == QH_OK) {
        char what[96];
        snprintf(what, sizeof what, "%s head dx (T = %zu)", name, T);
        check_dx(what, &c, x, dx, key);
    }
    QH_CHECK(qh_head_backward(m, x, lg, R, T, (float *)x) == QH_EINVAL, "%s: head dx == x refused",
             name);
    qh_forward_ws_free(c.ws);
    free(R); free(lg); free(dx);
}

static void test_synthetic(int variant, int parallel, double softcap)
{
    char name[64];
    snprintf(name, sizeof name, "synthetic %d%s%s", variant, parallel ? " parallel" : "",
             softcap > 0 ? " softcap" : "");
    synth_model s;
    synth_build(&s, variant, 33);
    qh_model *m = &s.m;
    m->cfg.features.parallel_residual = parallel;
    m->cfg.final_softcap = softcap;
    size_t d = (size_t)m->cfg.hidden, T = 37;
    float *x = malloc(d * T * sizeof(float));
    qh_rng r = qh_rng_stream(53, (uint32_t)variant, QH_RNG_TEST);
    fill_normal(x, d * T, 1.0, &r);
    if (m->cfg.features.pre_ln) {
        check_block(name, m, 0, x, T, (uint32_t)(variant * 10 + parallel));
        check_block(name, m, 1, x, T, (uint32_t)(variant * 10 + parallel + 5));
    }
    check_head(name, m, x, T, (uint32_t)(variant * 10 + parallel + 100));
    free(x);
    synth_free(&s);
}

static void test_vendored(const char *dir)
{
    const char *name = strrchr(dir, '/') + 1;
    size_t T = 24;
    qh_model *m = NULL;
    size_t n_ids;
    int32_t *ids = wikitext_ids(dir, T, &n_ids);
    if (!ids || qh_model_load(dir, &m) != QH_OK) {
        QH_CHECK(0, "%s: load: %s", dir, qh_last_error());
        free(ids);
        return;
    }
    size_t d = (size_t)m->cfg.hidden;
    int nl = m->cfg.n_layers;
    qh_forward_ws *ws = NULL;
    float *x0 = malloc(d * T * sizeof(float)), *xl = malloc(d * T * sizeof(float));
    int st = qh_forward_ws_alloc(m, T, &ws);
    if (st == QH_OK) st = qh_forward_embed(m, ids, T, ws, ws->x);
    for (int l = 0; st == QH_OK && l < nl; l++) {
        if (l == 0) memcpy(x0, ws->x, d * T * sizeof(float));
        if (l == nl - 1) memcpy(xl, ws->x, d * T * sizeof(float));
        st = qh_forward_block(m, l, ws->x, T, ws, NULL);
    }
    QH_CHECK(st == QH_OK, "%s: hidden states: %s", name, st ? qh_last_error() : "");
    if (st == QH_OK) {
        check_block(name, m, 0, x0, T, 200);
        check_block(name, m, nl - 1, xl, T, 201);
        check_head(name, m, ws->x, T, 202);
    }
    free(x0);
    free(xl);
    qh_forward_ws_free(ws);
    qh_model_free(m);
    free(ids);
}

int main(void)
{
    test_synthetic(0, 0, 0.0);
    test_synthetic(0, 1, 0.0);
    test_synthetic(2, 0, 0.0);
    test_synthetic(1, 0, 0.0);      /* post-LN: head only (project_out) */
    test_synthetic(0, 0, 5.0);      /* final logit soft-capping */
    test_vendored("models/opt-7m");
    test_vendored("models/llama-9m");
    QH_NOTE("worst relative errors: block dx directions %.3g (tol %g), entries %.3g (tol %g); "
            "head dx directions %.3g, entries %.3g; G with dx vs without %.3g",
            worst_dir, FD_TOL, worst_entry, FD_ENTRY_TOL, worst_head_dir, worst_head_entry,
            worst_gsame);
    return qh_test_summary();
}
