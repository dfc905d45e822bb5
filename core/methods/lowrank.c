/* lowrank.c -- truncated SVD as a two-core MPO (see lowrank.h). */
#include "lowrank.h"
#include "qh_flops.h"
#include "qh_linalg.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const qh_param_desc lowrank_params[] = {
    { "rank", QH_PARAM_INT, offsetof(qh_lowrank_params, rank), 16, 1, 1 << 20, NULL,
      "rank r of W^ = U_r S_r V_r^T (capped at min(m, n))", NULL },
    { "hessian", QH_PARAM_BOOL, offsetof(qh_lowrank_params, hessian), 0, 0, 1, NULL,
      "1: truncate W H^{1/2} (damped) and map back by H^{-1/2}: the rank-r minimiser of the proxy",
      NULL },
    { "damp", QH_PARAM_DOUBLE, offsetof(qh_lowrank_params, damp), 0.01, 0, 1, NULL,
      "hessian: relative damping lambda (H + lambda mean(diag H) I)", NULL },
    { "heal_steps", QH_PARAM_INT, offsetof(qh_lowrank_params, heal.heal_steps), 0, 0, 1000000,
      NULL, "healing: Adam steps on the factors of each decoder block against the float block's "
      "output (MSE), on the block stage (0: no healing)", NULL },
    { "heal_lr", QH_PARAM_DOUBLE, offsetof(qh_lowrank_params, heal.heal_lr), 1e-3, 0, 10, NULL,
      "healing rate, relative to each factor's entry RMS", NULL },
    { "heal_batch", QH_PARAM_INT, offsetof(qh_lowrank_params, heal.heal_batch), 4, 1, 4096, NULL,
      "healing: calibration windows per step, drawn at random", NULL },
    { "heal_kl_steps", QH_PARAM_INT, offsetof(qh_lowrank_params, heal.heal_kl_steps), 0, 0,
      1000000, NULL, "end-to-end healing: Adam steps on the factors of all decoder linears "
      "against the KL of the whole model's next-token distributions to the float model's, "
      "after the block loop (0: off)", NULL },
    { "heal_kl_lr", QH_PARAM_DOUBLE, offsetof(qh_lowrank_params, heal.heal_kl_lr), 1e-3, 0, 10,
      NULL, "end-to-end healing rate, relative to each factor's entry RMS", NULL },
    { "heal_kl_batch", QH_PARAM_INT, offsetof(qh_lowrank_params, heal.heal_kl_batch), 4, 1, 4096,
      NULL, "end-to-end healing: calibration windows per step, drawn at random", NULL },
    { 0 },
};

static size_t lowrank_workspace_size(const void *params, size_t m, size_t n)
{
    (void)params; (void)m; (void)n;
    return 0;                        /* the MPO engine allocates its own scratch */
}

/* S = (H + λ mean(diag H) I)^{1/2} and S^{-1} (n x n each) by dsyevd. */
static int sqrt_pair(const qh_matd *H, double damp, const char *name, double *S, double *Sinv)
{
    size_t n = H->cols;
    double lam = damp * qh_mean_diag(H);
    double *Q = malloc((n * n + 2 * n) * sizeof *Q), *w = Q ? Q + n * n : NULL, *v = w ? w + n : NULL;
    if (!Q) QH_ERROR(QH_ENOMEM, "%s: lowrank H^{1/2} of %zu x %zu", name, n, n);
    for (size_t j = 0; j < n; j++) {
        for (size_t i = 0; i < n; i++) Q[i + n * j] = QH_AT(H, i, j);
        Q[j + n * j] += lam;
    }
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)n, Q, (lapack_int)n, w);
    if (info != 0 || !(w[0] > 0)) {
        double w0 = info ? NAN : w[0];
        free(Q);
        QH_ERROR(QH_ENOTPD, "%s: lowrank hessian: H + %g mean(diag H) I is not positive definite "
                 "(smallest eigenvalue %g, dsyevd info %d); raise damp", name, damp, w0, (int)info);
    }
    double *T = malloc(n * n * sizeof *T);
    if (!T) { free(Q); QH_ERROR(QH_ENOMEM, "%s: lowrank H^{1/2}", name); }
    for (int inv = 0; inv < 2; inv++) {
        for (size_t k = 0; k < n; k++) v[k] = inv ? 1.0 / sqrt(w[k]) : sqrt(w[k]);
        for (size_t k = 0; k < n; k++)
            for (size_t i = 0; i < n; i++) T[i + n * k] = Q[i + n * k] * v[k];
        qh_lin_dgemm('N', 'T', n, n, n, 1.0, T, n, Q, n, 0.0, inv ? Sinv : S, n);
    }
    free(T);
    free(Q);
    return QH_OK;
}

static int lowrank_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_lowrank_params *p = params;
    const char *name = in->name ? in->name : "layer";
    (void)work;
    QH_TRY(qh_mpo_check_bits("lowrank", in));
    size_t m = in->W->rows, n = in->W->cols, fin[2] = { n, 1 }, fout[2] = { 1, m };
    qh_mpo mpo = { 0 };
    if (!p->hessian) {
        QH_TRY(qh_mpo_decompose(in->W, 2, fin, fout, p->rank, 0.0, &mpo, NULL));
    } else {
        if (!in->H) QH_ERROR(QH_EINVAL, "%s: lowrank hessian = 1 needs a Hessian H", name);
        double *S = malloc((2 * n * n) * sizeof *S);
        qh_matd *A = qh_matd_alloc(m, n);
        int st = QH_OK;
        if (!S || !A) QH_SET_ERROR(st, QH_ENOMEM, "%s: lowrank: out of memory", name);
        if (st == QH_OK) st = sqrt_pair(in->H, p->damp, name, S, S + n * n);
        if (st == QH_OK) {
            qh_lin_dgemm('N', 'N', m, n, n, 1.0, in->W->data, in->W->ld, S, n, 0.0, A->data, m);
            st = qh_mpo_decompose(A, 2, fin, fout, p->rank, 0.0, &mpo, NULL);
        }
        if (st == QH_OK) {              /* core 1 (n x r) ← S^{-1} core 1 */
            size_t r = mpo.bond[1];
            memcpy(S, mpo.core[0], n * r * sizeof *S);
            qh_lin_dgemm('N', 'N', n, r, n, 1.0, S + n * n, n, S, n, 0.0, mpo.core[0], n);
            out->damp_used = p->damp;
        }
        free(S);
        qh_matd_free(A);
        if (st != QH_OK) { qh_mpo_free(&mpo); return st; }
    }
    int st = qh_mpo_finish(&p->heal, in, &mpo, out);
    qh_mpo_free(&mpo);
    return st;
}

/* A truncated SVD; the Hessian variant adds H^1/2 (a spectrum) and W H^1/2. */
static double lowrank_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    const qh_lowrank_params *p = params;
    double m = (double)rows, n = (double)cols, f = qh_flops_svd(m, n);
    if (p->hessian) f += qh_flops_eig(n) + qh_flops_times_h(m, n);
    return f;
}

const qh_method_type qh_method_lowrank = {
    .name = "lowrank",
    .display = "Low-rank SVD",
    .display_order = 201,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = 0,
    .summary = "truncated SVD W ~ U_r S_r V_r^T (of W H^{1/2} with hessian), FP16 factors at "
               "bits 16, rounded at 2..8; optional block-stage healing (heal_steps)",
    .params = lowrank_params,
    .params_size = sizeof(qh_lowrank_params),
    .workspace_size = lowrank_workspace_size,
    .quantize = lowrank_quantize,
    .min_bits = 2,
    .max_bits = 16,
    .block = &qh_mpo_block_ops,
    .flops = lowrank_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
