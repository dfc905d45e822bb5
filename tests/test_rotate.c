/* test_rotate.c -- computational invariance (model/rotate.h).
 *
 * 1. qh_online_hadamard (float, with and without random signs) against
 *    qh_hadamard_apply (double) for sizes 2^j, 12*2^j, 20*2^j: 1e-5 relative.
 * 2. Per block on random inputs: the rotated block on Q^T C x gives
 *    Q^T C y, y the original block's output on x (C the centring of a
 *    LayerNorm model, I for RMSNorm), 1e-4 relative in the max norm, every
 *    block of opt-7m and llama-9m; the fused-norms-only model likewise (Q = I).
 * 3. Whole models: the rotated float model's perplexity equals the float
 *    perplexity to 1e-4 relative on opt-7m, llama-9m and, when present,
 *    ../shared/models/opt-30m (skipped otherwise).
 * 4. Refusals by name: post-LN and project_in/out (synthetic OPT variant 1),
 *    a head_dim without a Hadamard, a second rotation, the block backward
 *    pass of a rotated model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/rotate.h"
#include "model_fixtures.h"
#include "pipeline/calib.h"
#include "pipeline/eval.h"
#include "pipeline/transform.h"
#include "qh_hadamard.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "tokenizer/tokenizer.h"

static void test_online_hadamard(void)
{
    const size_t sizes[] = { 1, 2, 64, 768, 1024, 160, 12 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s], T = 3, K = qh_hadamard_base_for(n);
        float *x = malloc(n * T * sizeof *x), *base = malloc(K * K * sizeof *base);
        double *X = malloc(n * T * sizeof *X), *bd = malloc(K * K * sizeof *bd);
        QH_CHECK(qh_hadamard_base(K, bd) == QH_OK, "base %zu", K);
        for (size_t i = 0; i < K * K; i++) base[i] = (float)bd[i];
        qh_rng r = qh_rng_stream(5, (uint32_t)n, QH_RNG_TEST);
        for (size_t i = 0; i < n * T; i++) X[i] = x[i] = (float)qh_rng_normal(&r);
        float *sg = malloc(n * sizeof *sg);
        for (size_t i = 0; i < n; i++) sg[i] = (float)qh_rng_sign(&r);
        int with_signs = s % 2;
        if (with_signs)
            for (size_t t = 0; t < T; t++)
                for (size_t i = 0; i < n; i++) X[i + t * n] *= sg[i];
        qh_online_hadamard(x, n, T, base, K, with_signs ? sg : NULL);
        free(sg);
        QH_CHECK(qh_hadamard_apply(n, 0, X, T, n) == QH_OK, "apply %zu", n);
        double err = 0, mx = 0;
        for (size_t i = 0; i < n * T; i++) {
            err = fmax(err, fabs(x[i] - X[i]));
            mx = fmax(mx, fabs(X[i]));
        }
        QH_CHECK(err <= 1e-5 * mx, "online Hadamard of size %zu (K %zu) matches "
                 "qh_hadamard_apply: max err %.3g of %.3g", n, K, err, mx);
        free(x); free(base); free(X); free(bd);
    }
}

/* x (d) <- Q^T C x in double with Q = diag(signs) H (signs NULL: Q = I). */
static void to_rotated(double *x, size_t d, size_t T, int center, const double *signs)
{
    for (size_t t = 0; t < T; t++) {
        double *c = x + t * d;
        if (center) {
            double s = 0;
            for (size_t i = 0; i < d; i++) s += c[i];
            for (size_t i = 0; i < d; i++) c[i] -= s / (double)d;
        }
        if (signs) for (size_t i = 0; i < d; i++) c[i] *= signs[i];
    }
    if (signs) QH_CHECK(qh_hadamard_apply(d, 1, x, T, d) == QH_OK, "Q^T");
}

static void check_blocks(const char *dir, int rotate)
{
    qh_model *a = NULL, *b = NULL;
    if (qh_model_load(dir, &a) != QH_OK || qh_model_load(dir, &b) != QH_OK) {
        QH_CHECK(0, "%s: %s", dir, qh_last_error());
        qh_model_free(a);
        return;
    }
    int center = a->cfg.features.norm == QH_NORM_LAYER;
    uint64_t seed = 7;
    int st = rotate ? qh_rotate_model(b, seed, dir) : qh_fuse_norms(b, dir);
    QH_CHECK(st == QH_OK, "%s: %s: %s", dir, rotate ? "rotate" : "fuse", st ? qh_last_error() : "");
    size_t d = (size_t)a->cfg.hidden, T = 40;
    double *signs = NULL;
    if (rotate) {
        signs = malloc(d * sizeof *signs);
        qh_rng r = qh_rng_stream(seed, 0, QH_RNG_ROTATION);
        for (size_t i = 0; i < d; i++) signs[i] = qh_rng_sign(&r);
    }
    qh_forward_ws *wa = NULL, *wb = NULL;
    float *x = malloc(d * T * sizeof *x), *xb = malloc(d * T * sizeof *xb);
    double *want = malloc(d * T * sizeof *want);
    if (st == QH_OK) st = qh_forward_ws_alloc(a, T, &wa);
    if (st == QH_OK) st = qh_forward_ws_alloc(b, T, &wb);
    QH_CHECK(st == QH_OK, "%s: workspaces", dir);
    double worst = 0;
    for (int l = 0; st == QH_OK && l < a->cfg.n_layers; l++) {
        qh_rng r = qh_rng_stream(11, (uint32_t)l, QH_RNG_TEST);
        for (size_t i = 0; i < d * T; i++) x[i] = (float)(qh_rng_normal(&r) + 0.3);
        for (size_t i = 0; i < d * T; i++) want[i] = x[i];
        to_rotated(want, d, T, center, signs);
        for (size_t i = 0; i < d * T; i++) xb[i] = (float)want[i];
        st = qh_forward_block(a, l, x, T, wa, NULL);
        if (st == QH_OK) st = qh_forward_block(b, l, xb, T, wb, NULL);
        for (size_t i = 0; i < d * T; i++) want[i] = x[i];
        to_rotated(want, d, T, center, signs);
        double err = 0, mx = 0;
        for (size_t i = 0; i < d * T; i++) {
            err = fmax(err, fabs(xb[i] - want[i]));
            mx = fmax(mx, fabs(want[i]));
        }
        worst = fmax(worst, err / mx);
    }
    QH_CHECK(st == QH_OK && worst < 1e-4, "%s: every %s block on random inputs maps Q^T C x to "
             "Q^T C y (max relative err %.3g)", dir, rotate ? "rotated" : "norm-fused", worst);
    qh_forward_ws_free(wa);
    qh_forward_ws_free(wb);
    free(x); free(xb); free(want); free(signs);
    qh_model_free(a);
    qh_model_free(b);
}

static void check_ppl(const char *dir)
{
    if (access(dir, R_OK) != 0) {
        QH_SKIP("%s absent", dir);
        return;
    }
    char path[1200];
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0, seqlen = 512, nw = qh_test_fast() ? 2 : 4;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (qh_model_load(dir, &m) != QH_OK || qh_tokenizer_load(path, &tok) != QH_OK ||
        qh_tokenize_file(tok, "data/wikitext2_test.raw", &ids, &n) != QH_OK) {
        QH_CHECK(0, "%s: %s", dir, qh_last_error());
        goto done;
    }
    qh_eval_result f = { 0 }, r = { 0 };
    int st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &f);
    if (st == QH_OK) st = qh_rotate_model(m, 3, dir);
    if (st == QH_OK) st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &r);
    QH_CHECK(st == QH_OK, "%s: %s", dir, st ? qh_last_error() : "");
    if (st == QH_OK) {
        QH_NOTE("%s (%zu windows of %zu): float %.6f rotated %.6f", dir, nw, seqlen, f.ppl, r.ppl);
        QH_CHECK(fabs(r.ppl / f.ppl - 1) < 1e-4, "%s: rotated float ppl within 1e-4 relative", dir);
    }
    QH_CHECK(qh_rotate_model(m, 3, dir) == QH_ECONFIG && strstr(qh_last_error(), "already"),
             "%s: a second rotation is refused: %s", dir, qh_last_error());
    qh_block_tape *tape = NULL;
    QH_CHECK(qh_block_tape_alloc(m, 8, &tape) == QH_EUNIMPL &&
             strstr(qh_last_error(), "online Hadamard"),
             "%s: the backward pass refuses the rotated model: %s", dir, qh_last_error());
    qh_eval_result_free(&f);
    qh_eval_result_free(&r);
done:
    free(ids);
    qh_tokenizer_free(tok);
    qh_model_free(m);
}

/* SmoothQuant from calibration maxima keeps the float function; it lowers the
 * largest max/median channel ratio of the q/k/v inputs. */
static double worst_ratio(double *const *a, int layers, size_t d)
{
    double worst = 0;
    double *tmp = malloc(d * sizeof *tmp);
    for (int l = 0; l < layers; l++) {
        const double *v = a[(size_t)l * QH_ABSMAX_GROUPS];
        double mx = 0;
        for (size_t j = 0; j < d; j++) { tmp[j] = v[j]; mx = fmax(mx, v[j]); }
        for (size_t i = 1; i < d; i++)       /* insertion sort, small d */
            for (size_t j = i; j > 0 && tmp[j - 1] > tmp[j]; j--) {
                double t = tmp[j]; tmp[j] = tmp[j - 1]; tmp[j - 1] = t;
            }
        worst = fmax(worst, mx / tmp[d / 2]);
    }
    free(tmp);
    return worst;
}

static void check_smooth(const char *dir)
{
    char path[1200];
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL, *win = NULL;
    size_t n = 0, seqlen = 256, nw = 2, ns = 4;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (qh_model_load(dir, &m) != QH_OK || qh_tokenizer_load(path, &tok) != QH_OK ||
        qh_tokenize_file(tok, "data/wikitext2_test.raw", &ids, &n) != QH_OK ||
        qh_calib_windows(ids, n, ns, seqlen, 1, "wikitext2", &win) != QH_OK) {
        QH_CHECK(0, "%s: %s", dir, qh_last_error());
        goto done;
    }
    qh_eval_result f = { 0 }, r = { 0 };
    double **a0 = NULL, **a1 = NULL;
    size_t dims[QH_ABSMAX_GROUPS];
    qh_model_transform tf = { .smooth_alpha = 0.5 };
    int st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &f);
    if (st == QH_OK) st = qh_absmax_collect(m, win, ns, seqlen, &a0, dims);
    if (st == QH_OK) st = qh_transform_apply(m, &tf, win, ns, seqlen, 0, dir);
    if (st == QH_OK) st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &r);
    if (st == QH_OK) st = qh_absmax_collect(m, win, ns, seqlen, &a1, dims);
    QH_CHECK(st == QH_OK, "%s: smooth: %s", dir, st ? qh_last_error() : "");
    if (st == QH_OK) {
        double w0 = worst_ratio(a0, m->cfg.n_layers, dims[0]);
        double w1 = worst_ratio(a1, m->cfg.n_layers, dims[0]);
        QH_NOTE("%s: smoothed float ppl %.6f vs %.6f; q/k/v input max/median %.2f -> %.2f", dir,
                r.ppl, f.ppl, w0, w1);
        QH_CHECK(fabs(r.ppl / f.ppl - 1) < 1e-4, "%s: SmoothQuant keeps the float ppl (1e-4)", dir);
        QH_CHECK(w1 < w0, "%s: SmoothQuant flattens the q/k/v input channels", dir);
    }
    qh_absmax_free(a0, m);
    qh_absmax_free(a1, m);
    qh_eval_result_free(&f);
    qh_eval_result_free(&r);
done:
    free(ids);
    free(win);
    qh_tokenizer_free(tok);
    qh_model_free(m);
}

static void test_refusals(void)
{
    synth_model s;
    synth_build(&s, 1, 3);                  /* post-LN, project_in/out */
    QH_CHECK(qh_rotate_model(&s.m, 1, "synth") == QH_EUNIMPL &&
             strstr(qh_last_error(), "post-LN"), "post-LN refused: %s", qh_last_error());
    s.m.cfg.features.pre_ln = 1;
    QH_CHECK(qh_rotate_model(&s.m, 1, "synth") == QH_EUNIMPL &&
             strstr(qh_last_error(), "project_in"), "project_in refused: %s", qh_last_error());
    synth_free(&s);
    synth_build(&s, 2, 3);
    s.m.cfg.head_dim = 3;
    QH_CHECK(qh_rotate_check(&s.m, "synth") == QH_ECONFIG && strstr(qh_last_error(), "head_dim 3"),
             "a head_dim without a Hadamard refused by name: %s", qh_last_error());
    synth_free(&s);
}

int main(void)
{
    test_online_hadamard();
    test_refusals();
    const char *dirs[] = { "models/opt-7m", "models/llama-9m" };
    for (size_t i = 0; i < 2; i++) {
        check_blocks(dirs[i], 0);
        check_blocks(dirs[i], 1);
        check_ppl(dirs[i]);
        check_smooth(dirs[i]);
    }
    check_ppl("../shared/models/opt-30m");
    return qh_test_summary();
}
