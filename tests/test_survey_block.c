/* test_survey_block.c -- the block stage of the survey's block-tuned rows
 * (onebit, blockap) on a real block (layer 1) of the vendored opt-7m and
 * llama-9m:
 *   1. the chain the stage uses (state → Ŵ → block forward → MSE to the
 *      float block's output → block backward → the row's parameter
 *      gradient) against central differences of the block loss along the
 *      parameter's direction in Ŵ, for the entry of largest gradient of each
 *      parameter vector of q, o, up and down: onebit's a and b (Ŵ is
 *      linear in each), blockap's latent W, step s and zero z through the
 *      straight-through surrogate (rounding residuals and the clamped set
 *      frozen: linear in each parameter), on the 2-bit min-max grid and
 *      the ternary grid.  Relative error ≤ 1e-2 (float32 block; the
 *      differences divide float rounding of the loss by 2h).
 *   2. the stage with the row's ops: 4 epochs over 3 windows lower the
 *      MSE to the float block's output (onebit, blockap both grids).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockap.h"
#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "onebit.h"
#include "pipeline/block_stage.h"
#include "pipeline/sequential.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "block_case.h"

enum { NS = 3, TT = 24, LAYER = 1 };

/* Layer 1 with jittered inputs and the float block's output, states of row t
 * with the parameters kv (2 bits; onebit 1). */
static int bcase_load(block_case *c, const char *dir, const qh_method_type *t, const char *const *kv)
{
    QH_TRY(block_case_load(c, dir, LAYER, NS, TT, 11, 0.05, BLOCK_CASE_Y_TAPE));
    if (!(c->params = qh_method_params_new(t))) return QH_ENOMEM;
    for (; kv && kv[0]; kv += 2) QH_TRY(qh_method_params_set(t, c->params, kv[0], kv[1]));
    return block_case_quantize(c, t, c->params, t == &qh_method_onebit ? 1 : 2, NULL, 0);
}

/* Ŵ of every linear from the states into the block; dW (or NULL) added to linear k. */
static void write_block(block_case *c, int kind, const qh_matd *dW, double h)
{
    qh_block *b = &c->m->blocks[LAYER];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!c->states[k]) continue;
        size_t m, n;
        c->t->block->state_shape(c->states[k], &m, &n);
        qh_matd *W = qh_matd_alloc(m, n);
        c->t->block->reconstruct(c->params, c->states[k], W);
        if (k == kind && dW)
            for (size_t j = 0; j < n; j++)
                for (size_t i = 0; i < m; i++) QH_AT(W, i, j) += h * QH_AT(dW, i, j);
        qh_linear_from_matd(&b->lin[k], W);
        qh_matd_free(W);
    }
}

/* Σ over windows of MSE(Y_q, Y_fp); with Gd, G of linear `kind` (double, m x n). */
static double block_loss(block_case *c, int kind, qh_matd *Gd)
{
    size_t win = c->hidden * TT;
    qh_linear *lin = &c->m->blocks[LAYER].lin[kind];
    size_t m = (size_t)lin->out, n = (size_t)lin->in;
    float *yq = malloc(2 * win * sizeof(float)), *dy = yq + win, *Gf = calloc(m * n, sizeof(float));
    float *G[QH_LIN_MAX] = { NULL };
    G[kind] = Gf;
    double l = 0.0;
    for (size_t s = 0; s < NS; s++) {
        if (qh_block_forward_tape(c->m, LAYER, c->x + s * win, TT, yq, c->tape) != QH_OK)
            QH_CHECK(0, "forward: %s", qh_last_error());
        l += qh_block_loss_mse(yq, c->y_fp + s * win, win, 1.0, Gd ? dy : NULL);
        if (Gd && qh_block_backward(c->m, LAYER, dy, c->tape, G) != QH_OK)
            QH_CHECK(0, "backward: %s", qh_last_error());
    }
    if (Gd)
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) QH_AT(Gd, i, j) = Gf[i * n + j];
    free(Gf);
    free(yq);
    return l;
}

static double fd_dir(block_case *c, int kind, const qh_matd *D, double h, double g)
{
    write_block(c, kind, D, h);
    double lp = block_loss(c, kind, NULL);
    write_block(c, kind, D, -h);
    double lm = block_loss(c, kind, NULL);
    write_block(c, kind, NULL, 0);
    return fabs((lp - lm) / (2 * h) - g) / fabs(g);
}

static size_t argmax_abs(const double *g, size_t n)
{
    size_t k = 0;
    for (size_t i = 1; i < n; i++) if (fabs(g[i]) > fabs(g[k])) k = i;
    return k;
}

static const int kinds[] = { QH_LIN_Q, QH_LIN_O, QH_LIN_UP, QH_LIN_DOWN };

static void check_onebit(const char *dir)
{
    block_case c;
    const char *kv[] = { NULL };
    if (bcase_load(&c, dir, &qh_method_onebit, kv) != QH_OK) {
        QH_CHECK(0, "%s: setup: %s", dir, qh_last_error());
        return;
    }
    write_block(&c, -1, NULL, 0);
    for (size_t ki = 0; ki < 4; ki++) {
        int k = kinds[ki];
        qh_onebit_state *s = c.states[k];
        size_t m = s->rows, n = s->cols;
        qh_matd *G = qh_matd_alloc(m, n), *D = qh_matd_alloc(m, n);
        block_loss(&c, k, G);
        double *ga = malloc((m + n) * sizeof *ga), *gb = ga + m;
        qh_onebit_param_grad(s, G, ga, gb);
        size_t ia = argmax_abs(ga, m), jb = argmax_abs(gb, n);
        for (size_t j = 0; j < n; j++) QH_AT(D, ia, j) = s->sign[ia + j * m] * s->b[j];
        double ea = fd_dir(&c, k, D, 1e-2 * s->a[ia], ga[ia]);
        memset(D->data, 0, m * n * sizeof(double));
        for (size_t i = 0; i < m; i++) QH_AT(D, i, jb) = s->sign[i + jb * m] * s->a[i];
        double eb = fd_dir(&c, k, D, 1e-2 * s->b[jb], gb[jb]);
        QH_CHECK(ea < 1e-2 && eb < 1e-2, "%s %s onebit: d loss/d(a, b) = central differences (%.1e %.1e)",
                 dir, qh_model_linear_short_name(c.m, k), ea, eb);
        QH_NOTE("%s %s onebit: relative FD errors a %.1e b %.1e", dir, qh_model_linear_short_name(c.m, k), ea, eb);
        free(ga);
        qh_matd_free(G);
        qh_matd_free(D);
    }
    block_case_free(&c);
}

static void check_blockap(const char *dir, const char *levels)
{
    block_case c;
    const char *kv[] = { "levels", levels, NULL };
    if (bcase_load(&c, dir, &qh_method_blockap, kv) != QH_OK) {
        QH_CHECK(0, "%s: setup: %s", dir, qh_last_error());
        return;
    }
    write_block(&c, -1, NULL, 0);
    for (size_t ki = 0; ki < 4; ki++) {
        int k = kinds[ki];
        qh_blockap_state *s = c.states[k];
        size_t m = s->rows, n = s->cols, cells = m * s->n_groups;
        for (size_t q = 0; q < cells; q++) s->s[q] *= 0.7;   /* some entries clamp */
        write_block(&c, -1, NULL, 0);
        qh_matd *G = qh_matd_alloc(m, n), *D = qh_matd_alloc(m, n);
        block_loss(&c, k, G);
        qh_blockap_param_grad(s, G);
        /* W: the inside entry of largest gradient, direction e_ij */
        size_t iw = argmax_abs(s->gW, m * n);
        QH_AT(D, iw % m, iw / m) = 1.0;
        double ew = fd_dir(&c, k, D, 0.05 * s->s[(iw % m) + (iw / m / s->group) * m], s->gW[iw]);
        /* s: the surrogate's derivative, ρ = round(W/s) − W/s inside, c − round(z) outside */
        size_t is = argmax_abs(s->gs, cells), i = is % m, gi = is / m;
        memset(D->data, 0, m * n * sizeof(double));
        double zr = nearbyint(s->z[is]);
        for (size_t j = gi * s->group; j < (gi + 1) * s->group; j++) {
            double x = s->W[i + j * m] / s->s[is], u = nearbyint(x) + zr;
            QH_AT(D, i, j) = u < 0 ? 0 - zr : u > s->maxq ? s->maxq - zr : nearbyint(x) - x;
        }
        double es = fd_dir(&c, k, D, 1e-2 * s->s[is], s->gs[is]);
        double ez = 0.0;
        size_t iz = argmax_abs(s->gz, cells);
        if (s->train_zero && s->gz[iz] != 0.0) {   /* z: −s on the clamped entries of its group */
            memset(D->data, 0, m * n * sizeof(double));
            size_t r = iz % m, g2 = iz / m;
            for (size_t j = g2 * s->group; j < (g2 + 1) * s->group; j++) {
                double u = nearbyint(s->W[r + j * m] / s->s[iz]) + nearbyint(s->z[iz]);
                QH_AT(D, r, j) = (u < 0 || u > s->maxq) ? -s->s[iz] : 0.0;
            }
            ez = fd_dir(&c, k, D, 1e-2, s->gz[iz]);
        }
        QH_CHECK(ew < 1e-2 && es < 1e-2 && ez < 1e-2,
                 "%s %s blockap %s: straight-through d loss/d(W, s, z) = central differences of the "
                 "surrogate (%.1e %.1e %.1e)", dir, qh_model_linear_short_name(c.m, k), levels, ew, es, ez);
        QH_NOTE("%s %s blockap %s: relative FD errors W %.1e s %.1e z %.1e", dir,
                qh_model_linear_short_name(c.m, k), levels, ew, es, ez);
        qh_matd_free(G);
        qh_matd_free(D);
    }
    block_case_free(&c);
}

static void check_stage(const char *dir, const qh_method_type *t, const char *const *kv, const char *what)
{
    block_case c;
    if (bcase_load(&c, dir, t, kv) != QH_OK) {
        QH_CHECK(0, "%s: setup: %s", dir, qh_last_error());
        return;
    }
    qh_block_stage_stats bs;
    int st = qh_block_stage_tune(c.m, LAYER, c.x, c.x_fp, NS, TT, c.W_fp, t, c.params, c.states, NULL, &bs);
    QH_CHECK(st == QH_OK && bs.steps == 4 * NS && bs.mse_fp_final < bs.mse_fp_init,
             "%s %s: 4 epochs lower the MSE to the float block %.5g -> %.5g (%s)", dir, what,
             bs.mse_fp_init, bs.mse_fp_final, st == QH_OK ? "ok" : qh_last_error());
    QH_NOTE("%s %s: 4 epochs x %d windows: MSE to float %.5g -> %.5g", dir, what, NS, bs.mse_fp_init,
            bs.mse_fp_final);
    block_case_free(&c);
}

int main(void)
{
    const char *dirs[] = { "models/opt-7m", "models/llama-9m" };
    for (int d = 0; d < 2; d++) {
        check_onebit(dirs[d]);
        check_blockap(dirs[d], "minmax");
        check_blockap(dirs[d], "ternary");
        const char *ob[] = { "epochs", "4", NULL }, *ap[] = { "epochs", "4", "lr_w", "1e-4", NULL };
        const char *apt[] = { "epochs", "4", "lr_w", "1e-4", "levels", "ternary", NULL };
        check_stage(dirs[d], &qh_method_onebit, ob, "onebit");
        check_stage(dirs[d], &qh_method_blockap, ap, "blockap");
        check_stage(dirs[d], &qh_method_blockap, apt, "blockap ternary");
    }
    return qh_test_summary();
}
