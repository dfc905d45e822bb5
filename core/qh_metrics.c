/* qh_metrics.c -- proxy loss, μ-incoherence (QuIP Definition 1), tr D of the
 * LDL factor (reference §1 form (a): Cholesky of the reversed matrix), and
 * spectral quantities of H (LAPACK dsyevd). The QuIP repository's
 * compute_Hsummary.py "μ" (= n always, reference §4 pitfall 3) is not
 * reproduced; μ_H here is √n·max|Q_ij|.
 */
#include "qh_metrics.h"

#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qh_blas.h"

static int check_mat(const qh_matd *M, const char *name)
{
    if (!M || !M->data)
        QH_ERROR(QH_EINVAL, "metrics: %s is NULL", name);
    if (M->rows == 0 || M->cols == 0)
        QH_ERROR(QH_EINVAL, "metrics: %s is %zux%zu, expected non-empty", name, M->rows, M->cols);
    return QH_OK;
}

static int check_square(const qh_matd *H, size_t n, const char *name)
{
    QH_TRY(check_mat(H, name));
    if (H->rows != n || H->cols != n)
        QH_ERROR(QH_EBADLEN, "metrics: %s is %zux%zu, expected %zux%zu", name, H->rows, H->cols, n, n);
    return QH_OK;
}

/* Copy into a contiguous r x c buffer (returns new, NULL on OOM). */
static double *pack(const qh_matd *M)
{
    double *b = malloc(M->rows * M->cols * sizeof *b);
    if (b)
        for (size_t j = 0; j < M->cols; j++)
            memcpy(b + j * M->rows, M->data + j * M->ld, M->rows * sizeof *b);
    return b;
}

/* Σ_ij (E H)_ij E_ij for E m x n contiguous. */
static int quad_form_trace(const double *E, size_t m, size_t n, const qh_matd *H, double *out)
{
    double *EH = malloc(m * n * sizeof *EH);
    if (!EH)
        QH_ERROR(QH_ENOMEM, "metrics: proxy of a %zux%zu matrix: out of memory", m, n);
    qh_dgemm('N', 'N', m, n, n, 1.0, E, m, H->data, H->ld, 0.0, EH, m);
    double s = 0.0;
    for (size_t k = 0; k < m * n; k++)
        s += EH[k] * E[k];
    free(EH);
    *out = s;
    return QH_OK;
}

int qh_proxy_loss(const qh_matd *W, const qh_matd *What, const qh_matd *H, double *loss)
{
    QH_TRY(check_mat(W, "W"));
    QH_TRY(check_mat(What, "What"));
    QH_TRY(check_square(H, W->cols, "H"));
    if (!loss)
        QH_ERROR(QH_EINVAL, "metrics: NULL loss output");
    if (What->rows != W->rows || What->cols != W->cols)
        QH_ERROR(QH_EBADLEN, "metrics: What is %zux%zu, expected %zux%zu like W", What->rows, What->cols, W->rows,
                 W->cols);
    size_t m = W->rows, n = W->cols;
    double *E = malloc(m * n * sizeof *E);
    if (!E)
        QH_ERROR(QH_ENOMEM, "metrics: proxy of a %zux%zu matrix: out of memory", m, n);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++)
            E[i + j * m] = QH_AT(What, i, j) - QH_AT(W, i, j);
    int st = quad_form_trace(E, m, n, H, loss);
    free(E);
    return st;
}

int qh_proxy_norm(const qh_matd *W, const qh_matd *H, double *out)
{
    QH_TRY(check_mat(W, "W"));
    QH_TRY(check_square(H, W->cols, "H"));
    if (!out)
        QH_ERROR(QH_EINVAL, "metrics: NULL output");
    double *E = pack(W);
    if (!E)
        QH_ERROR(QH_ENOMEM, "metrics: tr(W H W^T) of a %zux%zu matrix: out of memory", W->rows, W->cols);
    int st = quad_form_trace(E, W->rows, W->cols, H, out);
    free(E);
    return st;
}

double qh_mu_W(const qh_matd *W)
{
    if (!W || !W->data || W->rows == 0 || W->cols == 0)
        return NAN;
    double mx = 0.0, ss = 0.0;
    for (size_t j = 0; j < W->cols; j++)
        for (size_t i = 0; i < W->rows; i++) {
            double v = QH_AT(W, i, j);
            mx = fmax(mx, fabs(v));
            ss += v * v;
        }
    if (ss == 0.0)
        return 0.0;
    return mx * sqrt((double)W->rows * (double)W->cols) / sqrt(ss);
}

/* Summary of H's spectrum from its eigenvalues w (ascending) and the largest
 * |entry| of its orthonormal eigenvectors, qmax. */
static void spectrum_from_eigen(const qh_matd *H, const double *w, double qmax, qh_spectrum *out)
{
    size_t n = H->rows;
    double sq = 0.0, tr = 0.0;
    for (size_t i = 0; i < n; i++) {
        sq += sqrt(fmax(w[i], 0.0));   /* tiny negative eigenvalues are rounding: clamp */
        tr += QH_AT(H, i, i);
    }
    out->mu_H = sqrt((double)n) * qmax;
    out->tr_H = tr;
    out->tr_sqrtH_sq = sq * sq;
    out->lambda_min = w[0];
    out->lambda_max = w[n - 1];
    out->rank = 0;
    double thr = (double)n * DBL_EPSILON * w[n - 1];
    for (size_t i = 0; i < n; i++)
        out->rank += w[n - 1] > 0.0 && w[i] > thr;
    out->cond = w[0] > 0.0 ? w[n - 1] / w[0] : INFINITY;
}

/* Eigenvalues of H into w (n, ascending) and max|Q_ij| of its eigenvectors. */
static int eigen(const qh_matd *H, double *w, double *qmax)
{
    QH_TRY(check_mat(H, "H"));
    QH_TRY(check_square(H, H->rows, "H"));
    if (!qh_matd_all_finite(H))
        QH_ERROR(QH_ENAN, "metrics: H (%zux%zu) has NaN or Inf entries", H->rows, H->cols);
    size_t n = H->rows;
    int st = QH_OK;
    double *Q = pack(H), *work = NULL;
    lapack_int *iwork = NULL;
    if (!Q) {
        QH_SET_ERROR(st, QH_ENOMEM, "metrics: eigendecomposition of %zux%zu: out of memory", n, n);
        goto cleanup;
    }
    lapack_int ln = (lapack_int)n, info, liwork_q = 0;
    double lwork_q = 0.0;
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', ln, Q, ln, w, &lwork_q, -1, &liwork_q, -1);
    lapack_int lwork = (lapack_int)lwork_q, liwork = liwork_q;
    work = malloc((size_t)(lwork > 1 ? lwork : 1) * sizeof *work);
    iwork = malloc((size_t)(liwork > 1 ? liwork : 1) * sizeof *iwork);
    if (info != 0 || !work || !iwork) {
        QH_SET_ERROR(st, info ? QH_EINVAL : QH_ENOMEM, "metrics: dsyevd workspace for %zux%zu failed (info %d)", n,
                     n, (int)info);
        goto cleanup;
    }
    info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', ln, Q, ln, w, work, lwork, iwork, liwork);
    if (info != 0) {
        QH_SET_ERROR(st, QH_EINVAL, "metrics: dsyevd on H %zux%zu did not converge (info %d)", n, n, (int)info);
        goto cleanup;
    }
    *qmax = 0.0;
    for (size_t k = 0; k < n * n; k++)
        *qmax = fmax(*qmax, fabs(Q[k]));
cleanup:
    free(Q);
    free(work);
    free(iwork);
    return st;
}

int qh_spectrum_compute(const qh_matd *H, qh_spectrum *out)
{
    if (!out)
        QH_ERROR(QH_EINVAL, "metrics: NULL spectrum output");
    QH_TRY(check_mat(H, "H"));
    double *w = malloc((H->rows ? H->rows : 1) * sizeof *w), qmax = 0.0;
    if (!w)
        QH_ERROR(QH_ENOMEM, "metrics: eigendecomposition of %zux%zu: out of memory", H->rows, H->cols);
    int st = eigen(H, w, &qmax);
    if (st == QH_OK)
        spectrum_from_eigen(H, w, qmax, out);
    free(w);
    return st;
}

/* ---- the spectrum cache ---------------------------------------------------- */

void qh_spectrum_cache_init(qh_spectrum_cache *c) { memset(c, 0, sizeof *c); }

void qh_spectrum_cache_free(qh_spectrum_cache *c)
{
    if (!c)
        return;
    for (int k = 0; k < 2; k++) {
        free(c->slot[k].H);
        free(c->slot[k].lambda);
    }
    qh_spectrum_cache_init(c);
}

/* How H relates to a slot's matrix: 0 unrelated, 1 identical, 2 equal up to
 * a constant shift of the diagonal (*shift = mean of H_ii − C_ii).  Off the
 * diagonal the entries must be bit-identical; on it the differences may vary
 * by rounding only (1e-13 of the largest diagonal entry). */
static int relation(const qh_spectrum_slot *c, const qh_matd *H, double *shift)
{
    size_t n = H->rows;
    if (!c->H || c->n != n || H->cols != n)
        return 0;
    double dmin = INFINITY, dmax = -INFINITY, dsum = 0.0, diag_max = 0.0;
    for (size_t j = 0; j < n; j++) {
        const double *h = H->data + j * H->ld, *k = c->H + j * n;
        if (j > 0 && memcmp(h, k, j * sizeof *h) != 0)                /* above the diagonal */
            return 0;
        if (j + 1 < n && memcmp(h + j + 1, k + j + 1, (n - j - 1) * sizeof *h) != 0)
            return 0;
        double d = h[j] - k[j];
        dmin = fmin(dmin, d);
        dmax = fmax(dmax, d);
        dsum += d;
        diag_max = fmax(diag_max, fmax(fabs(h[j]), fabs(k[j])));
    }
    if (dmin == 0.0 && dmax == 0.0)
        return 1;
    if (dmax - dmin > 1e-13 * diag_max)
        return 0;
    *shift = dsum / (double)n;
    return 2;
}

/* Decomposes H into slot c (replacing what it held).  The slot is emptied
 * first and its copy of H allocated after the decomposition, so that the
 * peak is the decomposition's own three n x n (pipeline/memory.c counts
 * them) beside the other slot only. */
static int fill_slot(qh_spectrum_slot *c, const qh_matd *H)
{
    size_t n = H->rows;
    free(c->H);
    free(c->lambda);
    *c = (qh_spectrum_slot){ 0 };
    double *w = malloc(n * sizeof *w), *Hc = NULL, qmax = 0.0;
    int st = QH_OK;
    if (!w)
        QH_SET_ERROR(st, QH_ENOMEM, "metrics: spectrum cache for %zux%zu: out of memory", n, n);
    else
        st = eigen(H, w, &qmax);
    if (st == QH_OK && !(Hc = malloc(n * n * sizeof *Hc)))
        QH_SET_ERROR(st, QH_ENOMEM, "metrics: spectrum cache for %zux%zu: out of memory", n, n);
    if (st != QH_OK) {
        free(w);
        return st;
    }
    for (size_t j = 0; j < n; j++)
        memcpy(Hc + j * n, H->data + j * H->ld, n * sizeof *Hc);
    *c = (qh_spectrum_slot){ n, Hc, w, qmax };
    return QH_OK;
}

int qh_spectrum_compute_cached(const qh_matd *H, qh_spectrum_cache *c, int slot, qh_spectrum *out)
{
    if (!c)
        return qh_spectrum_compute(H, out);
    if (!out || slot < 0 || slot > 1)
        QH_ERROR(QH_EINVAL, "metrics: NULL spectrum output or slot %d not 0 or 1", slot);
    QH_TRY(check_mat(H, "H"));
    QH_TRY(check_square(H, H->rows, "H"));
    size_t n = H->rows;
    for (int k = 0; k < 2; k++) {
        double shift = 0.0;
        int rel = relation(&c->slot[k], H, &shift);
        if (rel == 0)
            continue;
        double *w = malloc(n * sizeof *w);
        if (!w)
            QH_ERROR(QH_ENOMEM, "metrics: spectrum of %zux%zu: out of memory", n, n);
        for (size_t i = 0; i < n; i++)   /* H + sI: the same vectors, λ + s */
            w[i] = c->slot[k].lambda[i] + (rel == 2 ? shift : 0.0);
        spectrum_from_eigen(H, w, c->slot[k].qmax, out);
        free(w);
        c->hits++;
        return QH_OK;
    }
    c->misses++;
    QH_TRY(fill_slot(&c->slot[slot], H));
    spectrum_from_eigen(H, c->slot[slot].lambda, c->slot[slot].qmax, out);
    return QH_OK;
}

static int check_perm(const size_t *order, size_t n)
{
    unsigned char *seen = calloc(n, 1);
    if (!seen)
        QH_ERROR(QH_ENOMEM, "metrics: out of memory");
    int st = QH_OK;
    for (size_t k = 0; k < n && st == QH_OK; k++) {
        if (order[k] >= n || seen[order[k]])
            QH_SET_ERROR(st, QH_EINVAL, "metrics: column order is not a permutation of 0..%zu (entry %zu = %zu)",
                         n - 1, k, order[k]);
        else
            seen[order[k]] = 1;
    }
    free(seen);
    return st;
}

int qh_ldl_diag(const qh_matd *H, const size_t *order, double *D_out, double *tr_D)
{
    QH_TRY(check_mat(H, "H"));
    QH_TRY(check_square(H, H->rows, "H"));
    if (!qh_matd_all_finite(H))
        QH_ERROR(QH_ENAN, "metrics: H (%zux%zu) has NaN or Inf entries", H->rows, H->cols);
    size_t n = H->rows;
    if (order)
        QH_TRY(check_perm(order, n));
    double *R = malloc(n * n * sizeof *R);
    if (!R)
        QH_ERROR(QH_ENOMEM, "metrics: LDL of %zux%zu: out of memory", n, n);
    /* R = J P H Pᵀ J: reversed processing order, so the lower Cholesky factor's
     * pivot i is the Schur complement w.r.t. columns processed after order[n-1-i]. */
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            size_t oi = order ? order[n - 1 - i] : n - 1 - i;
            size_t oj = order ? order[n - 1 - j] : n - 1 - j;
            R[i + j * n] = QH_AT(H, oi, oj);
        }
    lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)n, R, (lapack_int)n);
    int st = QH_OK;
    if (info != 0) {
        QH_SET_ERROR(st, info > 0 ? QH_ENOTPD : QH_EINVAL,
                     "metrics: H (%zux%zu) is not positive definite (Cholesky pivot %d of the reversed order)", n, n,
                     (int)info);
    } else {
        double s = 0.0;
        for (size_t k = 0; k < n; k++) {
            size_t i = n - 1 - k;
            double dk = R[i + i * n] * R[i + i * n];
            if (D_out)
                D_out[k] = dk;
            s += dk;
        }
        if (tr_D)
            *tr_D = s;
    }
    free(R);
    return st;
}

static int basis_metrics(const qh_matd *W, const qh_matd *What, const qh_matd *H, const size_t *order,
                         qh_spectrum_cache *cache, int slot, qh_basis_metrics *b)
{
    b->proxy = b->proxy_rel = b->mu_What = NAN;
    QH_TRY(qh_proxy_norm(W, H, &b->proxy_norm));
    if (What) {
        QH_TRY(qh_proxy_loss(W, What, H, &b->proxy));
        b->proxy_rel = b->proxy_norm > 0.0 ? b->proxy / b->proxy_norm : NAN;
        b->mu_What = qh_mu_W(What);
    }
    b->mu_W = qh_mu_W(W);
    QH_TRY(qh_spectrum_compute_cached(H, cache, slot, &b->spec));
    int st = qh_ldl_diag(H, order, NULL, &b->tr_D);
    if (st == QH_ENOTPD) {           /* a singular H is data, not a failure */
        b->tr_D = NAN;
        qh_error_clear();
    } else if (st != QH_OK) {
        return st;
    }
    return QH_OK;
}

int qh_layer_metrics_compute(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                             const qh_processed_inputs *proc, const size_t *order, qh_layer_metrics *out)
{
    return qh_layer_metrics_compute_cached(W, What, H, proc, order, NULL, out);
}

int qh_layer_metrics_compute_cached(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                                    const qh_processed_inputs *proc, const size_t *order,
                                    qh_spectrum_cache *cache, qh_layer_metrics *out)
{
    QH_TRY(check_mat(W, "W"));
    if (!out)
        QH_ERROR(QH_EINVAL, "metrics: NULL output");
    QH_TRY(check_square(H, W->cols, "H"));
    if (!qh_matd_all_finite(W))
        QH_ERROR(QH_ENAN, "metrics: W (%zux%zu) has NaN or Inf entries", W->rows, W->cols);
    memset(out, 0, sizeof *out);
    out->m = W->rows;
    out->n = W->cols;
    /* Separate slots, so that the next layer sharing the input still finds
     * its H after a processed Ĥ was decomposed. */
    int st = basis_metrics(W, What, H, order, cache, 0, &out->orig);
    if (st != QH_OK) {
        qh_error_prefix("original basis");
        return st;
    }
    if (proc) {
        QH_TRY(check_mat(proc->W, "processed W"));
        if (proc->W->rows != W->rows || proc->W->cols != W->cols)
            QH_ERROR(QH_EBADLEN, "metrics: processed W is %zux%zu, expected %zux%zu", proc->W->rows, proc->W->cols,
                     W->rows, W->cols);
        QH_TRY(check_square(proc->H, W->cols, "processed H"));
        st = basis_metrics(proc->W, proc->What, proc->H, order, cache, 1, &out->proc);
        if (st != QH_OK) {
            qh_error_prefix("processed basis");
            return st;
        }
        out->has_processed = 1;
    }
    return QH_OK;
}
