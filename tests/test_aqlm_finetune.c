/* test_aqlm_finetune.c -- AQLM's block fine-tuning (core/methods/aqlm_finetune.h):
 *   1. the state's gradients with respect to the codebooks and the row scales
 *      against central differences of ℓ(Ŵ) = ½‖Ŵ − T‖² (a quadratic with
 *      G = Ŵ − T; relative error ≤ 1e-6, the differences of a quadratic in
 *      double with h = 1e-6 are exact up to rounding of ~1e-10);
 *   2. the exported state decodes to the layer result bit for bit (fp16 on and
 *      off), and finetune = 0 asks for no block stage, so that setting leaves
 *      the row's results as they were;
 *   3. the plan: MSE loss, passes x ceil(windows / batch) steps, in order,
 *      early stopping as set;
 *   4. on a real block of opt-7m and llama-9m (every linear AQLM-coded at 2
 *      bits, 1x8 g4): two passes lower the block MSE, the codes stay frozen
 *      (the tuned Ŵ still has at most K distinct normalized groups per
 *      codebook use), and keep/restore puts the saved parameters back bitwise;
 *   5. bad settings: ft_lr and ft_batch out of range are named (an
 *      incoherence kind with finetune > 0 is refused at config time:
 *      tests/test_run_cli.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aqlm.h"
#include "aqlm_finetune.h"
#include "model/forward.h"
#include "model/model.h"
#include "pipeline/block_stage.h"
#include "pipeline/sequential.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "block_case.h"

static qh_matd *random_mat(size_t m, size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(5, key, QH_RNG_TEST);
    qh_matd *A = qh_matd_alloc(m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(A, i, j) = qh_rng_normal(&r);
    return A;
}

static qh_matd *spd_H(size_t n, uint32_t key)
{
    qh_matd *X = random_mat(n, 2 * n, key), *H = qh_matd_alloc(n, n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0.0;
            for (size_t t = 0; t < 2 * n; t++) s += QH_AT(X, i, t) * QH_AT(X, j, t);
            QH_AT(H, i, j) = s / (double)(2 * n) + (i == j ? 0.1 : 0.0);
        }
    qh_matd_free(X);
    return H;
}

/* aqlm on W with settings kv (NULL-terminated key, value pairs) into r and,
 * when s != NULL, the state. */
static int quantize(const qh_matd *W, const qh_matd *H, int bits, const char *const *kv,
                    qh_aqlm_state *s, qh_result *r)
{
    const qh_method_type *t = &qh_method_aqlm;
    void *p = qh_method_params_new(t);
    int st = p ? QH_OK : QH_ENOMEM;
    for (size_t i = 0; kv && kv[i] && st == QH_OK; i += 2) st = qh_method_params_set(t, p, kv[i], kv[i + 1]);
    qh_problem pr = { W, H, bits, 3, 1, "test", s, NULL };
    if (st == QH_OK) st = qh_quantize(t, p, &pr, NULL, NULL, r);
    free(p);
    return st;
}

static void decode_state(const qh_aqlm_state *s, qh_matd *What)
{
    qh_aqlm_block_ops.reconstruct(NULL, s, What);
}

/* ℓ = ½‖Ŵ(state) − T‖². */
static double quad_loss(const qh_aqlm_state *s, const qh_matd *T, qh_matd *What)
{
    decode_state(s, What);
    double l = 0.0;
    for (size_t i = 0; i < What->rows * What->cols; i++) {
        double d = What->data[i] - T->data[i];
        l += 0.5 * d * d;
    }
    return l;
}

/* Central difference of quad_loss in x[i] (x one of the state's masters, use
 * its decoded copy: fp16 off, so use = master). */
static double central(qh_aqlm_state *s, double *use, size_t i, const qh_matd *T, qh_matd *What)
{
    const double h = 1e-6;
    double x0 = use[i];
    use[i] = x0 + h;
    double lp = quad_loss(s, T, What);
    use[i] = x0 - h;
    double lm = quad_loss(s, T, What);
    use[i] = x0;
    return (lp - lm) / (2.0 * h);
}

static void test_gradients(void)
{
    size_t m = 12, n = 16;
    qh_matd *W = random_mat(m, n, 1), *H = spd_H(n, 2), *T = random_mat(m, n, 3);
    qh_matd *What = qh_matd_alloc(m, n), *G = qh_matd_alloc(m, n);
    const char *kv[] = { "codebooks", "2", "group", "4", "fp16", "0", "epochs", "2", NULL };
    qh_aqlm_state s = { 0 };
    qh_result r;
    qh_result_init(&r);
    int st = quantize(W, H, 2, kv, &s, &r);
    QH_CHECK(st == QH_OK, "aqlm 2x4 g4 on 12 x 16: %s", qh_last_error());
    if (st == QH_OK) {
        decode_state(&s, What);
        for (size_t i = 0; i < m * n; i++) G->data[i] = What->data[i] - T->data[i];
        qh_aqlm_state_grad(&s, G);
        double worst = 0.0;
        size_t K = s.view.M * s.view.K * s.view.g;
        for (size_t i = 0; i < K; i++) {
            double fd = central(&s, s.cb_use, i, T, What);
            worst = fmax(worst, fabs(fd - s.g_cb[i]) / fmax(1.0, fabs(fd)));
        }
        QH_CHECK(worst < 1e-6, "codebook gradient = central differences (worst %.2g)", worst);
        worst = 0.0;
        for (size_t i = 0; i < m; i++) {
            double fd = central(&s, s.scale_use, i, T, What);
            worst = fmax(worst, fabs(fd - s.g_scale[i]) / fmax(1.0, fabs(fd)));
        }
        QH_CHECK(worst < 1e-6, "scale gradient = central differences (worst %.2g)", worst);
    }
    qh_aqlm_state_free(&s);
    qh_result_free(&r);
    qh_matd_free(W), qh_matd_free(H), qh_matd_free(T), qh_matd_free(What), qh_matd_free(G);
}

static int same_bits(const qh_matd *A, const qh_matd *B)
{
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++)
            if (QH_AT(A, i, j) != QH_AT(B, i, j)) return 0;
    return 1;
}

static void test_state_is_result(void)
{
    size_t m = 24, n = 32;
    qh_matd *W = random_mat(m, n, 4), *H = spd_H(n, 5), *What = qh_matd_alloc(m, n);
    for (int fp16 = 0; fp16 <= 1; fp16++) {
        const char *kv[] = { "group", "8", "fp16", fp16 ? "1" : "0", NULL };
        qh_aqlm_state s = { 0 };
        qh_result r0, r1;
        qh_result_init(&r0);
        qh_result_init(&r1);
        int st = quantize(W, H, 2, kv, NULL, &r0) | quantize(W, H, 2, kv, &s, &r1);
        QH_CHECK(st == QH_OK, "quantize: %s", qh_last_error());
        if (st == QH_OK) {
            decode_state(&s, What);
            QH_CHECK(same_bits(What, r1.What_proc) && same_bits(r0.What_proc, r1.What_proc) &&
                     r0.proxy_loss == r1.proxy_loss,
                     "fp16 %d: the state decodes to the layer result bitwise, with or without a state",
                     fp16);
        }
        qh_aqlm_state_free(&s);
        qh_result_free(&r0);
        qh_result_free(&r1);
    }
    void *p = qh_method_params_new(&qh_method_aqlm);
    QH_CHECK(qh_method_aqlm.block == &qh_aqlm_block_ops && !qh_aqlm_block_ops.wants(p),
             "finetune 0 (the default) asks for no block stage");
    free(p);
    qh_matd_free(W), qh_matd_free(H), qh_matd_free(What);
}

static void test_plan(void)
{
    const qh_method_type *t = &qh_method_aqlm;
    void *p = qh_method_params_new(t);
    int st = qh_method_params_set(t, p, "finetune", "4") | qh_method_params_set(t, p, "ft_batch", "3") |
             qh_method_params_set(t, p, "ft_patience", "2");
    qh_block_plan pl;
    qh_aqlm_block_ops.plan(p, 10, &pl);
    QH_CHECK(st == QH_OK && qh_aqlm_block_ops.wants(p) && pl.loss == QH_BLOCK_LOSS_MSE && pl.steps == 16 &&
             pl.batch == 3 && pl.draw == QH_BLOCK_DRAW_SEQUENTIAL && pl.patience == 2 && !pl.keep_best,
             "plan: 4 passes of ceil(10/3) steps of 3 windows in order, MSE, patience 2");
    qh_aqlm_block_ops.plan(p, 2, &pl);
    QH_CHECK(pl.batch == 3 && pl.steps == 4,
             "a batch larger than the windows: one step a pass, the batch left to the stage to cap");
    st = qh_method_params_set(t, p, "ft_lr", "-1");
    QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), "ft_lr"), "ft_lr < 0 named: %s", qh_last_error());
    st = qh_method_params_set(t, p, "ft_batch", "0");
    QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), "ft_batch"), "ft_batch 0 named: %s", qh_last_error());
    free(p);
}

/* ---- 4. a real block ---------------------------------------------------------------------- */

enum { NS = 4, TT = 32 };

static double unit(size_t j) { (void)j; return 1.0; }

/* Block 0 (the float input on both paths), every linear AQLM-coded with H = I. */
static int ft_case_load(block_case *c, const char *dir, const void *params)
{
    QH_TRY(block_case_load(c, dir, 0, NS, TT, 9, 0.0, BLOCK_CASE_Y_NONE));
    return block_case_quantize(c, &qh_method_aqlm, params, 2, unit, 0);
}

static size_t distinct_codes(const qh_aqlm_state *s)
{
    size_t seen = 0, K = s->view.K;
    unsigned char *used = calloc(K, 1);
    for (size_t i = 0; i < s->view.m * s->view.J; i++)
        if (!used[s->codes[i]]) used[s->codes[i]] = 1, seen++;
    free(used);
    return seen;
}

static void check_block(const char *dir)
{
    const qh_method_type *t = &qh_method_aqlm;
    void *p = qh_method_params_new(t);
    const char *kv[] = { "codebooks", "1", "group", "4", "epochs", "2", "kmeans_iters", "5", "finetune", "2",
                         "ft_batch", "2", "ft_patience", "0", NULL };
    int st = QH_OK;
    for (size_t i = 0; kv[i] && st == QH_OK; i += 2) st = qh_method_params_set(t, p, kv[i], kv[i + 1]);
    block_case c;
    if (st == QH_OK) st = ft_case_load(&c, dir, p);
    QH_CHECK(st == QH_OK, "%s: AQLM-coded block 0: %s", dir, qh_last_error());
    if (st != QH_OK) {
        free(p);
        return;
    }
    qh_aqlm_state *so = c.states[QH_LIN_O];
    uint16_t *codes0 = malloc(so->view.m * so->view.J * sizeof(uint16_t));
    memcpy(codes0, so->codes, so->view.m * so->view.J * 2);
    qh_block_stage_stats bs;
    qh_block_stage_opts o = { 1, NULL, NULL };
    st = qh_block_stage_tune(c.m, 0, c.x, c.x, NS, TT, c.W_fp, t, p, c.states, &o, &bs);
    QH_NOTE("%s block 0, aqlm 1x8 g4, 2 passes of 2 windows: block MSE %.5g -> %.5g (%zu steps)", dir,
            bs.mse_fp_init, bs.mse_fp_final, bs.steps);
    QH_CHECK(st == QH_OK && bs.steps == 4 && bs.loss_final < bs.loss_init && bs.loss_init == bs.mse_fp_init,
             "%s: fine-tuning lowers the block MSE: %s", dir, st == QH_OK ? "" : qh_last_error());
    QH_CHECK(!memcmp(codes0, so->codes, so->view.m * so->view.J * 2) && distinct_codes(so) <= so->view.K,
             "%s: the codes stay frozen", dir);
    /* keep: save, step away, restore -> the saved parameters bitwise */
    size_t K = so->view.M * so->view.K * so->view.g;
    double *cb = malloc(K * sizeof *cb);
    qh_aqlm_block_ops.keep(so, QH_BLOCK_KEEP_SAVE);
    memcpy(cb, so->cb, K * sizeof *cb);
    for (size_t i = 0; i < K; i++) so->cb[i] += 1.0;
    qh_aqlm_block_ops.keep(so, QH_BLOCK_KEEP_RESTORE);
    QH_CHECK(!memcmp(cb, so->cb, K * sizeof *cb),
             "%s: keep restores the saved codebooks", dir);
    free(cb);
    free(codes0);
    free(p);
    block_case_free(&c);
}

int main(void)
{
    test_gradients();
    test_state_is_result();
    test_plan();
    check_block("models/opt-7m");
    check_block("models/llama-9m");
    return qh_test_summary();
}
