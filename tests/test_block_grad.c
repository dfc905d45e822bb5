/* test_block_grad.c -- gradient of one decoder block with respect to its
 * linear weights (model/backward.h).
 *
 * 1. Forward: qh_block_forward_tape against qh_forward_block on the tiny
 *    synthetic pre-LN OPT and GQA Llama models (model_fixtures.h; windows of
 *    1, 37 and 300 tokens: up to three query blocks of 128) and on block 0
 *    and the last block of the vendored opt-7m and llama-9m on embedded
 *    wikitext2 windows (T = 64, and 160 for the last block).
 *    Tolerance: max |y - y_ref| <= 1e-5 * max |y_ref| (the two differ only in
 *    where the softmax normaliser is applied and in summation order; measured
 *    <= 3e-7).
 * 2. Gradients of L = <R, y> (R fixed random, so dy = R; L accumulated in
 *    double), per linear kind, on both synthetic models (T = 37, and T = 150:
 *    two query blocks) and one block of each vendored model (T = 24):
 *    a. the directional derivative <G_k, D> along a random D (shape of W_k)
 *       against central differences of the float32 forward pass, and
 *       (synthetic models) single entries of G_k the same way;
 *    b. the same against central differences of a per-token double-precision
 *       reference of the block (model_fixtures.h pieces), tight;
 *    c. additivity (two backward calls add; into a prefilled G it adds) and
 *       kinds with G[k] == NULL untouched, the others unchanged.
 * 3. Errors: post-LN OPT (QH_EUNIMPL with a message), T = 0 and other bad
 *    arguments (QH_EINVAL), backward without a forward of that layer, a model
 *    of other shapes (QH_EBADLEN).
 *
 * Mutation checks, run by hand with the code restored afterwards:
 *  - flipping the sign of the column-sum term of the softmax backward
 *    (s[j] - fdot -> s[j] + fdot in block_grad.c) makes the q_proj and k_proj
 *    checks of 2a and 2b fail on every model (relative errors 0.05 to 1.06;
 *    40 failures);
 *  - dropping the mean(g) term of the LayerNorm backward fails 2a and 2b on
 *    the synthetic OPT (errors 0.005 to 0.11), but on opt-7m (hidden 256) only
 *    2b sees it (errors 1.5e-4 to 6.5e-3, inside 2a's float32 tolerance):
 *    the reason 2b exists;
 *  - dropping the x r^2 mean(g x) term of the RMSNorm backward fails 2a and 2b
 *    on the synthetic Llama and on llama-9m (errors 0.024 to 0.18).
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

/* Forward agreement, relative to max |y|. */
#define FWD_TOL 1e-5

/* 2a: central differences of the float32 forward pass.  D is scaled to the
 * RMS of W_k, so εD is a relative perturbation ε of the weights.  Two error
 * sources bound what float32 allows:
 *  - rounding: the forward pass's outputs carry relative rounding noise of
 *    ~1e-7, i.e. noise of ~1e-7 |R| |y| sqrt(hidden T) in L, which the
 *    difference quotient divides by 2ε (grows as ε shrinks);
 *  - ReLU kinks: a perturbation of relative size ε moves a fraction O(ε) of
 *    the OPT MLP units across zero, each leaving an O(1) error in its own
 *    term, and with a random R the derivative itself is a sum of terms of
 *    random sign, so the relative error grows like ε (measured on opt-7m's
 *    fc1: 1.3e-1 at ε = 1e-2, 2.8e-2 at 2e-3, 7e-3 at 1e-3).
 * Scanning ε from 1e-4 to 1e-2 over all the checks below, the worst
 * relative error is smallest near ε = 1e-3 (7.3e-3 for directions, 1.9e-3
 * x max|G| for single entries; 2.3e-3 at worst on the Llama models), hence
 * FD_TOL 2e-2 and FD_ENTRY_TOL 1e-2.  Errors are relative to
 * max(|<G,D>|, |G| |D| / sqrt(numel)), the typical size of <G,D> for a
 * random D, so that a direction nearly orthogonal to G cannot inflate them.
 * 2b removes both sources: in double, ε = 1e-6 makes rounding noise ~1e-10,
 * truncation ~1e-12 and kink crossings unlikely, so what remains is the
 * float32 rounding of G itself (measured <= 1e-6): REF_TOL 1e-5.  A wrong
 * term of the backward pass (a sign, a missing scale or GQA sum, a
 * transposition) gives errors of order 1; a missing norm-backward term can
 * give errors of order 1e-3 that only 2b resolves (see the mutation checks
 * above). */
#define FD_EPS 1e-3
#define FD_TOL 2e-2
#define FD_ENTRY_TOL 1e-2
#define REF_EPS 1e-6
#define REF_TOL 1e-5

/* ---- helpers ------------------------------------------------------------ */

static void fill_normal(float *x, size_t n, double scale, qh_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * qh_rng_normal(r));
}

static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* Whether the model's family has linear kind k (OPT lacks GATE). */
static int has_kind(const qh_model *m, int k) { return qh_model_linear_number(m, k) >= 0; }

static size_t w_size(const qh_model *m, int layer, int k)
{
    const qh_linear *L = &m->blocks[layer].lin[k];
    return (size_t)L->out * (size_t)L->in;
}

/* Per-kind gradient buffers (zeroed) for every kind the block has. */
static void grads_alloc(const qh_model *m, int layer, float *G[QH_LIN_MAX])
{
    for (int k = 0; k < QH_LIN_MAX; k++)
        G[k] = has_kind(m, k) ? calloc(w_size(m, layer, k), sizeof(float)) : NULL;
}

static void grads_free(float *G[QH_LIN_MAX])
{
    for (int k = 0; k < QH_LIN_MAX; k++) free(G[k]);
}

/* L = <R, y> in double for the block's output on x with the current weights. */
static double loss(const qh_model *m, int layer, const float *x, size_t T, const float *R,
                   float *y, qh_block_tape *tape, int *st)
{
    *st = qh_block_forward_tape(m, layer, x, T, y, tape);
    double L = 0.0;
    size_t n = (size_t)m->cfg.hidden * T;
    for (size_t i = 0; i < n; i++) L += (double)R[i] * y[i];
    return L;
}

/* ---- 1. forward --------------------------------------------------------- */

static void check_forward(const char *name, const qh_model *m, int layer, const float *x, size_t T)
{
    size_t n = (size_t)m->cfg.hidden * T;
    float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    qh_forward_ws *ws = NULL;
    qh_block_tape *tape = NULL;
    int st = qh_forward_ws_alloc(m, T, &ws);
    if (st == QH_OK) st = qh_block_tape_alloc(m, T, &tape);
    if (st != QH_OK) { QH_CHECK(0, "%s: alloc: %s", name, qh_last_error()); goto done; }
    memcpy(want, x, n * sizeof(float));
    st = qh_forward_block(m, layer, want, T, ws, NULL);
    QH_CHECK(st == QH_OK, "%s: qh_forward_block status %d", name, st);
    float *xc = malloc(n * sizeof(float));
    memcpy(xc, x, n * sizeof(float));
    st = qh_block_forward_tape(m, layer, xc, T, got, tape);
    QH_CHECK(st == QH_OK, "%s: qh_block_forward_tape status %d (%s)", name, st,
             st ? qh_last_error() : "");
    QH_CHECK(memcmp(xc, x, n * sizeof(float)) == 0, "%s: input not modified", name);
    free(xc);
    double scale = max_abs(want, n), err = max_abs_diff(got, want, n);
    QH_NOTE("%s layer %d T=%zu forward: max |diff| %.3g = %.3g x max|y| (%.3g)", name, layer, T,
            err, err / scale, scale);
    QH_CHECK(err <= FWD_TOL * scale, "%s layer %d T=%zu: tape forward vs qh_forward_block: "
             "%.3g > %g x %.3g", name, layer, T, err, FWD_TOL, scale);
done:
    qh_block_tape_free(tape);
    qh_forward_ws_free(ws);
    free(want);
    free(got);
}

/* ---- 2. gradients ------------------------------------------------------- */

/* Worst errors seen, reported at the end. */
static double worst_fd, worst_fd_entry, worst_ref, worst_ref_entry, worst_ref_fwd, worst_add;

/* y = (W_k + s D) x + b_k, per token in double; D only for k == pk. */
static void ref_lin(const qh_block *blk, int k, int pk, const float *D, double s, const double *x,
                    double *y)
{
    const qh_linear *L = &blk->lin[k];
    ref_linear(L, x, y);
    if (k != pk) return;
    for (int o = 0; o < L->out; o++) {
        double acc = 0.0;
        for (int i = 0; i < L->in; i++) acc += (double)D[(size_t)o * L->in + i] * x[i];
        y[o] += s * acc;
    }
}

/* L = <R, y> for block `layer` of m on x (hidden x T) by a per-token
 * reference in double, with W_pk replaced by W_pk + s D (pk < 0: none);
 * yout (hidden x T, may be NULL) receives y. */
static double ref_block_loss(const qh_model *m, int layer, const float *x, size_t T,
                             const float *R, int pk, const float *D, double s, double *yout)
{
    const qh_model_config *c = &m->cfg;
    const qh_block *b = &m->blocks[layer];
    int d = c->hidden, H = c->n_heads, hd = c->head_dim, f = c->ffn_dim;
    int qd = H * hd, kvd = c->n_kv_heads * hd, n = (int)T;
    int rotary = c->features.pos == QH_POS_ROTARY, gated = c->features.gated_mlp;
    size_t wide = (size_t)(d + f + qd);
    double *xr = malloc((size_t)n * d * sizeof(double)), *q = malloc((size_t)n * qd * sizeof(double));
    double *k = malloc((size_t)n * kvd * sizeof(double)), *v = malloc((size_t)n * kvd * sizeof(double));
    double *att = malloc((size_t)n * qd * sizeof(double)), *h = malloc(wide * sizeof(double));
    double *u = malloc(wide * sizeof(double)), *g = malloc(wide * sizeof(double));
    double *p = malloc((size_t)n * sizeof(double)), L = 0.0;
    for (size_t i = 0; i < (size_t)n * d; i++) xr[i] = x[i];
    for (int t = 0; t < n; t++) {
        ref_norm(m, &b->attn_norm, xr + (size_t)t * d, h, d);
        ref_lin(b, QH_LIN_Q, pk, D, s, h, q + (size_t)t * qd);
        ref_lin(b, QH_LIN_K, pk, D, s, h, k + (size_t)t * kvd);
        ref_lin(b, QH_LIN_V, pk, D, s, h, v + (size_t)t * kvd);
        if (rotary) {
            for (int j = 0; j < H; j++) ref_rope(q + (size_t)t * qd + j * hd, hd, t, c->rope_theta);
            for (int j = 0; j < c->n_kv_heads; j++)
                ref_rope(k + (size_t)t * kvd + j * hd, hd, t, c->rope_theta);
        }
    }
    ref_attention(c, q, k, v, n, att, p);
    for (int t = 0; t < n; t++) {
        double *xt = xr + (size_t)t * d;
        ref_lin(b, QH_LIN_O, pk, D, s, att + (size_t)t * qd, u);
        for (int i = 0; i < d; i++) xt[i] += u[i];
        ref_norm(m, &b->mlp_norm, xt, h, d);
        ref_lin(b, gated ? QH_LIN_GATE : QH_LIN_UP, pk, D, s, h, g);
        if (gated) {
            ref_lin(b, QH_LIN_UP, pk, D, s, h, u);
            for (int i = 0; i < f; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        } else {
            for (int i = 0; i < f; i++) g[i] = g[i] > 0.0 ? g[i] : 0.0;
        }
        ref_lin(b, QH_LIN_DOWN, pk, D, s, g, u);
        for (int i = 0; i < d; i++) {
            xt[i] += u[i];
            L += (double)R[(size_t)t * d + i] * xt[i];
        }
    }
    if (yout) memcpy(yout, xr, (size_t)n * d * sizeof(double));
    free(xr); free(q); free(k); free(v); free(att); free(h); free(u); free(g); free(p);
    return L;
}

/* Parts 2a-2c for one block; entries: also single entries of G. */
static void check_grad(const char *name, qh_model *m, int layer, const float *x, size_t T,
                       int entries, uint32_t key)
{
    size_t d = (size_t)m->cfg.hidden, n = d * T;
    qh_rng r = qh_rng_stream(40, key, QH_RNG_TEST);
    float *R = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    double *yref = malloc(n * sizeof(double));
    float *G[QH_LIN_MAX], *G2[QH_LIN_MAX];
    qh_block_tape *tape = NULL;
    grads_alloc(m, layer, G);
    grads_alloc(m, layer, G2);
    fill_normal(R, n, 1.0, &r);
    int st = qh_block_tape_alloc(m, T, &tape);
    if (st != QH_OK) { QH_CHECK(0, "%s: tape: %s", name, qh_last_error()); goto done; }
    st = qh_block_forward_tape(m, layer, x, T, y, tape);
    if (st == QH_OK) st = qh_block_backward(m, layer, R, tape, G);
    QH_CHECK(st == QH_OK, "%s: forward + backward status %d (%s)", name, st, st ? qh_last_error() : "");
    if (st != QH_OK) goto done;
    double fwd_flops, bwd_flops;
    qh_block_tape_flops(tape, &fwd_flops, &bwd_flops);
    QH_CHECK(fwd_flops > 0 && bwd_flops > fwd_flops, "%s: flops forward %.3g, backward %.3g", name,
             fwd_flops, bwd_flops);
    {   /* the double reference's output is the tape forward's */
        double e = 0.0, sc = 0.0;
        ref_block_loss(m, layer, x, T, R, -1, NULL, 0.0, yref);
        for (size_t i = 0; i < n; i++) {
            e = fmax(e, fabs(y[i] - yref[i]));
            sc = fmax(sc, fabs(yref[i]));
        }
        worst_ref_fwd = fmax(worst_ref_fwd, e / sc);
        QH_CHECK(e <= FWD_TOL * sc, "%s layer %d: tape forward vs double reference: %.3g x max|y|",
                 name, layer, e / sc);
    }

    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!has_kind(m, k)) continue;
        qh_linear *L = &m->blocks[layer].lin[k];
        const char *kn = qh_model_linear_short_name(m, k);
        size_t nw = w_size(m, layer, k);
        float *W0 = malloc(nw * sizeof(float)), *D = malloc(nw * sizeof(float));
        float *E = calloc(nw, sizeof(float));
        memcpy(W0, L->W, nw * sizeof(float));
        double ss = 0.0, gg = 0.0, dd = 0.0, an = 0.0;
        for (size_t i = 0; i < nw; i++) ss += (double)W0[i] * W0[i];
        double wrms = sqrt(ss / (double)nw);
        fill_normal(D, nw, wrms, &r);
        for (size_t i = 0; i < nw; i++) {
            an += (double)G[k][i] * D[i];
            gg += (double)G[k][i] * G[k][i];
            dd += (double)D[i] * D[i];
        }
        double den = fmax(fabs(an), sqrt(gg * dd / (double)nw));
        /* 2a: (L(W + εD) - L(W - εD)) / 2ε by the float32 forward pass */
        int s1, s2;
        for (size_t i = 0; i < nw; i++) L->W[i] = (float)(W0[i] + FD_EPS * D[i]);
        double Lp = loss(m, layer, x, T, R, y, tape, &s1);
        for (size_t i = 0; i < nw; i++) L->W[i] = (float)(W0[i] - FD_EPS * D[i]);
        double Lm = loss(m, layer, x, T, R, y, tape, &s2);
        memcpy(L->W, W0, nw * sizeof(float));
        double fd = (Lp - Lm) / (2.0 * FD_EPS), err = fabs(fd - an) / den;
        /* 2b: the same in double by the reference */
        double fdr = (ref_block_loss(m, layer, x, T, R, k, D, REF_EPS, NULL) -
                      ref_block_loss(m, layer, x, T, R, k, D, -REF_EPS, NULL)) / (2.0 * REF_EPS);
        double err_r = fabs(fdr - an) / den;
        worst_fd = fmax(worst_fd, err);
        worst_ref = fmax(worst_ref, err_r);
        QH_NOTE("%s layer %d %-9s <G,D> %+.6e  float fd %+.6e (%.1e)  double fd %+.6e (%.1e)", name,
                layer, kn, an, fd, err, fdr, err_r);
        QH_CHECK(s1 == QH_OK && s2 == QH_OK && err <= FD_TOL,
                 "%s layer %d %s: <G,D> %.6e vs float32 central difference %.6e (rel %.3g)", name,
                 layer, kn, an, fd, err);
        QH_CHECK(err_r <= REF_TOL, "%s layer %d %s: <G,D> %.6e vs double reference central "
                 "difference %.6e (rel %.3g)", name, layer, kn, an, fdr, err_r);

        /* single entries (the largest |G| and two drawn ones), errors vs max |G| */
        if (entries) {
            double gmax = max_abs(G[k], nw), werr = 0.0, werr_r = 0.0;
            size_t idx[3] = { 0, qh_rng_below(&r, nw), qh_rng_below(&r, nw) };
            for (size_t i = 1; i < nw; i++) idx[0] = fabs(G[k][i]) > fabs(G[k][idx[0]]) ? i : idx[0];
            for (int e = 0; e < 3; e++) {
                size_t i = idx[e];
                double h = FD_EPS * fmax(fabs(W0[i]), wrms);
                float wp = (float)(W0[i] + h), wm = (float)(W0[i] - h);
                L->W[i] = wp;
                Lp = loss(m, layer, x, T, R, y, tape, &s1);
                L->W[i] = wm;
                Lm = loss(m, layer, x, T, R, y, tape, &s2);
                L->W[i] = W0[i];
                werr = fmax(werr, fabs((Lp - Lm) / ((double)wp - (double)wm) - G[k][i]) / gmax);
                E[i] = 1.0f;
                h = REF_EPS * fmax(fabs(W0[i]), wrms);
                double fde = (ref_block_loss(m, layer, x, T, R, k, E, h, NULL) -
                              ref_block_loss(m, layer, x, T, R, k, E, -h, NULL)) / (2.0 * h);
                E[i] = 0.0f;
                werr_r = fmax(werr_r, fabs(fde - G[k][i]) / gmax);
            }
            worst_fd_entry = fmax(worst_fd_entry, werr);
            worst_ref_entry = fmax(worst_ref_entry, werr_r);
            QH_CHECK(s1 == QH_OK && s2 == QH_OK && werr <= FD_ENTRY_TOL,
                     "%s layer %d %s: single entries vs float32 central differences: "
                     "max err %.3g x max|G|", name, layer, kn, werr);
            QH_CHECK(werr_r <= REF_TOL, "%s layer %d %s: single entries vs double reference: "
                     "max err %.3g x max|G|", name, layer, kn, werr_r);
        }
        free(W0);
        free(D);
        free(E);
    }

    /* additivity: a second backward call adds the same gradients again; into
     * a prefilled G it adds the gradient to what was there */
    st = qh_block_forward_tape(m, layer, x, T, y, tape);
    if (st == QH_OK) st = qh_block_backward(m, layer, R, tape, G2);
    if (st == QH_OK) st = qh_block_backward(m, layer, R, tape, G2);
    double add_err = 0.0, pre_err = 0.0;
    for (int k = 0; st == QH_OK && k < QH_LIN_MAX; k++) {
        if (!has_kind(m, k)) continue;
        size_t nw = w_size(m, layer, k);
        double gmax = max_abs(G[k], nw);
        for (size_t i = 0; i < nw; i++)
            add_err = fmax(add_err, fabs((double)G2[k][i] - 2.0 * G[k][i]) / gmax);
        fill_normal(G2[k], nw, gmax, &r);
    }
    float *Z[QH_LIN_MAX];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        Z[k] = NULL;
        if (G2[k]) {
            size_t nw = w_size(m, layer, k);
            Z[k] = malloc(nw * sizeof(float));
            memcpy(Z[k], G2[k], nw * sizeof(float));
        }
    }
    if (st == QH_OK) st = qh_block_backward(m, layer, R, tape, G2);
    for (int k = 0; st == QH_OK && k < QH_LIN_MAX; k++) {
        if (!has_kind(m, k)) continue;
        size_t nw = w_size(m, layer, k);
        double gmax = max_abs(G[k], nw);
        for (size_t i = 0; i < nw; i++)
            pre_err = fmax(pre_err, fabs((double)G2[k][i] - Z[k][i] - G[k][i]) / gmax);
    }
    worst_add = fmax(worst_add, fmax(add_err, pre_err));
    QH_CHECK(st == QH_OK && add_err <= 1e-6, "%s: two backward calls add: max err %.3g x max|G|",
             name, add_err);
    QH_CHECK(st == QH_OK && pre_err <= 1e-6, "%s: backward adds into a prefilled G: max err %.3g",
             name, pre_err);
    for (int k = 0; k < QH_LIN_MAX; k++) free(Z[k]);

    /* G[k] == NULL: subsets give the same gradients for the kinds asked for
     * (up without gate, gate without up); a kind the block lacks (OPT gate) is
     * not written */
    static const int subsets[3][QH_LIN_MAX] = {
        { [QH_LIN_V] = 1, [QH_LIN_UP] = 1 },
        { [QH_LIN_Q] = 1 },
        { [QH_LIN_K] = 1, [QH_LIN_O] = 1, [QH_LIN_DOWN] = 1, [QH_LIN_GATE] = 1 },
    };
    float sentinel[8];
    for (int s = 0; s < 3 && st == QH_OK; s++) {
        float *Gs[QH_LIN_MAX] = { 0 };
        for (int k = 0; k < QH_LIN_MAX; k++)
            if (subsets[s][k]) {
                if (G2[k]) memset(G2[k], 0, w_size(m, layer, k) * sizeof(float));
                Gs[k] = G2[k] ? G2[k] : sentinel;
            }
        for (int i = 0; i < 8; i++) sentinel[i] = 7.0f;
        st = qh_block_backward(m, layer, R, tape, Gs);
        double diff = 0.0;
        for (int k = 0; k < QH_LIN_MAX; k++)
            if (has_kind(m, k) && subsets[s][k])
                diff = fmax(diff, max_abs_diff(G2[k], G[k], w_size(m, layer, k)) /
                                      max_abs(G[k], w_size(m, layer, k)));
        int intact = 1;
        for (int i = 0; i < 8; i++) intact &= sentinel[i] == 7.0f;
        QH_CHECK(st == QH_OK && diff <= 1e-6 && intact,
                 "%s: subset %d of kinds: max diff %.3g x max|G|, absent kind untouched %d", name, s,
                 diff, intact);
    }
done:
    qh_block_tape_free(tape);
    grads_free(G);
    grads_free(G2);
    free(R);
    free(y);
    free(yref);
}

/* ---- synthetic and vendored models -------------------------------------- */

static void test_synthetic(int variant)
{
    const char *name = variant == 0 ? "synthetic opt pre-LN" : "synthetic llama GQA";
    synth_model s;
    synth_build(&s, variant, 31);
    qh_model *m = &s.m;
    QH_CHECK(variant != 2 || m->cfg.n_kv_heads < m->cfg.n_heads, "llama fixture has GQA");
    size_t d = (size_t)m->cfg.hidden, Tmax = 300;
    float *x = malloc(d * Tmax * sizeof(float));
    qh_rng r = qh_rng_stream(41, (uint32_t)variant, QH_RNG_TEST);
    fill_normal(x, d * Tmax, 1.0, &r);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        check_forward(name, m, l, x, 37);
        check_forward(name, m, l, x, Tmax);              /* three query blocks, the last partial */
    }
    check_forward(name, m, 0, x, 1);
    check_grad(name, m, 1, x, 37, 1, (uint32_t)variant);
    check_grad(name, m, 0, x, 150, 1, 10 + (uint32_t)variant);   /* two query blocks */
    free(x);
    synth_free(&s);
}

static void test_vendored(const char *dir, int grad_layer)
{
    const char *name = strrchr(dir, '/') + 1;
    qh_model *m = NULL;
    size_t T = 160, Tg = 24;
    size_t n_ids;
    int32_t *ids = wikitext_ids(dir, T, &n_ids);
    if (!ids) { QH_CHECK(0, "%s: no token window: %s", name, qh_last_error()); return; }
    if (qh_model_load(dir, &m) != QH_OK) {
        QH_CHECK(0, "%s: load: %s", dir, qh_last_error());
        free(ids);
        return;
    }
    size_t d = (size_t)m->cfg.hidden;
    int nl = m->cfg.n_layers;
    float **xs = calloc((size_t)nl, sizeof(float *));  /* input of each block */
    qh_forward_ws *ws = NULL;
    int st = qh_forward_ws_alloc(m, T, &ws);
    if (st == QH_OK) st = qh_forward_embed(m, ids, T, ws, ws->x);
    for (int l = 0; st == QH_OK && l < nl; l++) {
        xs[l] = malloc(d * T * sizeof(float));
        memcpy(xs[l], ws->x, d * T * sizeof(float));
        st = qh_forward_block(m, l, ws->x, T, ws, NULL);
    }
    QH_CHECK(st == QH_OK, "%s: block inputs: %s", name, st ? qh_last_error() : "");
    if (st == QH_OK) {
        check_forward(name, m, 0, xs[0], 64);
        check_forward(name, m, nl - 1, xs[nl - 1], 64);
        check_forward(name, m, nl - 1, xs[nl - 1], T);   /* two query blocks */
        /* the block input of a window of Tg tokens is the first Tg columns (causal) */
        check_grad(name, m, grad_layer, xs[grad_layer], Tg, 0, 20 + (uint32_t)grad_layer);
    }
    for (int l = 0; l < nl; l++) free(xs[l]);
    free(xs);
    qh_forward_ws_free(ws);
    qh_model_free(m);
    free(ids);
}

/* ---- 3. errors ---------------------------------------------------------- */

static void test_errors(void)
{
    synth_model s;
    qh_block_tape *tape = NULL;
    synth_build(&s, 1, 31);                                /* post-LN OPT */
    int st = qh_block_tape_alloc(&s.m, 8, &tape);
    QH_CHECK(st == QH_EUNIMPL && tape == NULL && strstr(qh_last_error(), "post-LN"),
             "post-LN OPT refused with QH_EUNIMPL: %d (%s)", st, qh_last_error());
    synth_free(&s);

    /* features the forward pass computes but the backward pass cannot differentiate */
    synth_build(&s, 0, 31);
    s.m.cfg.features.gated_mlp = 1;                        /* a gated ReLU MLP */
    st = qh_block_tape_alloc(&s.m, 8, &tape);
    QH_CHECK(st == QH_EUNIMPL && tape == NULL && strstr(qh_last_error(), "gated ReLU"),
             "gated ReLU MLP refused with QH_EUNIMPL: %d (%s)", st, qh_last_error());
    s.m.cfg.features.gated_mlp = 0;
    s.m.cfg.features.parallel_residual = 1;                /* with sandwich norms */
    s.m.cfg.features.sandwich_norm = 1;
    st = qh_block_tape_alloc(&s.m, 8, &tape);
    QH_CHECK(st == QH_EUNIMPL && tape == NULL && strstr(qh_last_error(), "parallel residual"),
             "parallel residual with sandwich norms refused with QH_EUNIMPL: %d (%s)", st,
             qh_last_error());
    synth_free(&s);

    synth_build(&s, 0, 31);
    qh_model *m = &s.m;
    size_t d = (size_t)m->cfg.hidden;
    QH_CHECK(qh_block_tape_alloc(m, 0, &tape) == QH_EINVAL && tape == NULL, "T = 0 refused");
    QH_CHECK(qh_block_tape_alloc(m, (size_t)m->cfg.max_pos + 1, &tape) == QH_EINVAL,
             "OPT T > max_pos refused");
    st = qh_block_tape_alloc(m, 8, &tape);
    QH_CHECK(st == QH_OK && qh_block_tape_bytes(tape) > 0, "tape of 8 tokens");
    if (st != QH_OK) { synth_free(&s); return; }
    float x[16 * 9], y[16 * 9], G0[16 * 16];
    float *G[QH_LIN_MAX] = { [QH_LIN_Q] = G0 };
    qh_rng r = qh_rng_stream(42, 0, QH_RNG_TEST);
    fill_normal(x, d * 9, 1.0, &r);
    QH_CHECK(qh_block_backward(m, 0, x, tape, G) == QH_EINVAL, "backward before any forward refused");
    QH_CHECK(qh_block_forward_tape(m, 0, x, 0, y, tape) == QH_EINVAL, "forward T = 0 refused");
    QH_CHECK(qh_block_forward_tape(m, 0, x, 9, y, tape) == QH_EINVAL, "forward T > capacity refused");
    QH_CHECK(qh_block_forward_tape(m, 2, x, 8, y, tape) == QH_EINVAL, "forward bad layer refused");
    QH_CHECK(qh_block_forward_tape(m, 0, x, 8, x, tape) == QH_EINVAL, "forward y == x refused");
    QH_CHECK(qh_block_forward_tape(m, 0, x, 8, y, tape) == QH_OK, "forward ok");
    QH_CHECK(qh_block_backward(m, 1, x, tape, G) == QH_EINVAL, "backward of another layer refused");
    synth_model s2;
    synth_build(&s2, 2, 31);                               /* other shapes */
    QH_CHECK(qh_block_forward_tape(&s2.m, 0, x, 8, y, tape) == QH_EBADLEN, "other model refused");
    synth_free(&s2);
    qh_block_tape_free(tape);
    qh_block_tape_free(NULL);
    synth_free(&s);
}

int main(void)
{
    test_errors();
    test_synthetic(0);
    test_synthetic(2);
    test_vendored("models/opt-7m", 2);
    test_vendored("models/llama-9m", 3);
    QH_NOTE("worst relative errors: float32 fd directions %.3g (tol %g), entries %.3g (tol %g); "
            "double reference fd directions %.3g, entries %.3g (tol %g), forward %.3g (tol %g); "
            "additivity %.3g", worst_fd, FD_TOL, worst_fd_entry, FD_ENTRY_TOL, worst_ref,
            worst_ref_entry, REF_TOL, worst_ref_fwd, FWD_TOL, worst_add);
    return qh_test_summary();
}
