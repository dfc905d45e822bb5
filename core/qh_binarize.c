/* qh_binarize.c -- residual binarization primitives (see qh_binarize.h):
 * BiLLM's high-order residual binarization per row over a mask, masks,
 * the salient-column search and the bell-shaped split search.
 *
 * Loops run column by column (the storage order) with per-row accumulators,
 * so a pass over a tall matrix streams memory once.  The residual of order o
 * is recomputed from the entry and the (μ, α) of the lower orders instead of
 * being stored, so no m x n scratch is needed.
 */
#include "qh_binarize.h"
#include "qh_mat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int in_mask(const uint8_t *mask, size_t m, size_t i, size_t j)
{
    return mask == NULL || mask[i + j * m] != 0;
}

/* One binary plane: α·sign(r − μ) + μ with sign(0) = +1. */
static double plane(double r, double mu, double alpha)
{
    return (r - mu >= 0.0 ? alpha : -alpha) + mu;
}

/* Residual of x after the planes 0..o−1 of row i (mu/alpha laid out [i + p*m]). */
static double residual_after(double x, int o, const double *mu, const double *alpha,
                             size_t i, size_t m)
{
    double r = x;
    for (int p = 0; p < o; p++) r -= plane(r, mu[i + (size_t)p * m], alpha[i + (size_t)p * m]);
    return r;
}

/* Fits (μ, α) of every order for every row of T over mask.  cnt, acc: m
 * doubles of scratch; mu, alpha: m*order outputs. */
static void fit_planes(const qh_matd *T, const uint8_t *mask, int order, double *cnt,
                       double *acc, double *mu, double *alpha)
{
    const size_t m = T->rows, n = T->cols;
    memset(cnt, 0, m * sizeof *cnt);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++)
            if (in_mask(mask, m, i, j)) cnt[i] += 1.0;
    for (int o = 0; o < order; o++) {
        double *mu_o = mu + (size_t)o * m, *al_o = alpha + (size_t)o * m;
        memset(acc, 0, m * sizeof *acc);
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++)
                if (in_mask(mask, m, i, j))
                    acc[i] += residual_after(QH_AT(T, i, j), o, mu, alpha, i, m);
        for (size_t i = 0; i < m; i++) mu_o[i] = cnt[i] > 0 ? acc[i] / cnt[i] : 0.0;
        memset(acc, 0, m * sizeof *acc);
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++)
                if (in_mask(mask, m, i, j))
                    acc[i] += fabs(residual_after(QH_AT(T, i, j), o, mu, alpha, i, m) - mu_o[i]);
        for (size_t i = 0; i < m; i++) al_o[i] = cnt[i] > 0 ? acc[i] / cnt[i] : 0.0;
    }
}

/* Sum of the planes of row i for entry x. */
static double reconstruct(double x, int order, const double *mu, const double *alpha,
                          size_t i, size_t m)
{
    double r = x, q = 0.0;
    for (int p = 0; p < order; p++) {
        double b = plane(r, mu[i + (size_t)p * m], alpha[i + (size_t)p * m]);
        q += b;
        r -= b;
    }
    return q;
}

double qh_binarize_value(double x, int order, const double *mu, const double *alpha, size_t row,
                         size_t m)
{
    return reconstruct(x, order, mu, alpha, row, m);
}

/* Scratch of m*(2 + 2*order) doubles: cnt, acc, mu, alpha. */
static double *alloc_scratch(size_t m, int order)
{
    return malloc(m * (2 + 2 * (size_t)order) * sizeof(double));
}

static int check_args(const qh_matd *T, int order, const char *func)
{
    if (T == NULL || T->data == NULL)
        return qh_error(QH_EINVAL, __FILE__, __LINE__, func, "matrix is NULL");
    if (order < 1 || order > QH_BINARIZE_MAX_ORDER)
        return qh_error(QH_EINVAL, __FILE__, __LINE__, func,
                        "binarization order %d outside 1..%d", order, QH_BINARIZE_MAX_ORDER);
    return QH_OK;
}

int qh_binarize_rows(const qh_matd *W, const uint8_t *mask, int order, qh_matd *out,
                     double *mu, double *alpha)
{
    QH_TRY(check_args(W, order, __func__));
    if (out == NULL || out->data == NULL) QH_ERROR(QH_EINVAL, "output matrix is NULL");
    if (out->rows != W->rows || out->cols != W->cols)
        QH_ERROR(QH_EBADLEN, "output is %zu x %zu, expected %zu x %zu like W", out->rows,
                 out->cols, W->rows, W->cols);
    const size_t m = W->rows, n = W->cols;
    double *s = alloc_scratch(m, order);
    if (s == NULL) QH_ERROR(QH_ENOMEM, "binarization scratch for %zu rows", m);
    double *cnt = s, *acc = s + m, *mu_s = s + 2 * m, *al_s = mu_s + (size_t)order * m;
    fit_planes(W, mask, order, cnt, acc, mu_s, al_s);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++)
            if (in_mask(mask, m, i, j))
                QH_AT(out, i, j) = reconstruct(QH_AT(W, i, j), order, mu_s, al_s, i, m);
    if (mu) memcpy(mu, mu_s, (size_t)order * m * sizeof *mu);
    if (alpha) memcpy(alpha, al_s, (size_t)order * m * sizeof *alpha);
    free(s);
    return QH_OK;
}

int qh_binarize_error(const qh_matd *T, const uint8_t *mask, int order, double *err)
{
    QH_TRY(check_args(T, order, __func__));
    if (err == NULL) QH_ERROR(QH_EINVAL, "err is NULL");
    const size_t m = T->rows, n = T->cols;
    double *s = alloc_scratch(m, order);
    if (s == NULL) QH_ERROR(QH_ENOMEM, "binarization scratch for %zu rows", m);
    double *cnt = s, *acc = s + m, *mu = s + 2 * m, *al = mu + (size_t)order * m;
    fit_planes(T, mask, order, cnt, acc, mu, al);
    double e = 0.0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++)
            if (in_mask(mask, m, i, j)) {
                double d = QH_AT(T, i, j) - reconstruct(QH_AT(T, i, j), order, mu, al, i, m);
                e += d * d;
            }
    *err = e;
    free(s);
    return QH_OK;
}

/* ---- masks ------------------------------------------------------------------ */

void qh_mask_fill(uint8_t *mask, size_t m, size_t n, uint8_t value)
{
    memset(mask, value, m * n);
}

void qh_mask_set_columns(uint8_t *mask, size_t m, const size_t *cols, size_t k, uint8_t value)
{
    for (size_t c = 0; c < k; c++) memset(mask + cols[c] * m, value, m);
}

size_t qh_mask_count(const uint8_t *mask, size_t m, size_t n)
{
    if (mask == NULL) return m * n;
    size_t c = 0;
    for (size_t k = 0; k < m * n; k++) c += mask[k] != 0;
    return c;
}

void qh_mask_split_abs(const qh_matd *T, const uint8_t *base, double thr, uint8_t *inner,
                       uint8_t *outer)
{
    const size_t m = T->rows, n = T->cols;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            int b = in_mask(base, m, i, j);
            int small = fabs(QH_AT(T, i, j)) < thr;
            inner[i + j * m] = (uint8_t)(b && small);
            outer[i + j * m] = (uint8_t)(b && !small);
        }
}

/* ---- searches ----------------------------------------------------------------- */

typedef struct { double score; size_t col; } col_score;

static int by_score_desc(const void *a, const void *b)
{
    const col_score *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->col < y->col ? -1 : (x->col > y->col);
}

void qh_binarize_rank_columns(const qh_matd *T, size_t *rank)
{
    const size_t n = T->cols;
    col_score *cs = malloc((n ? n : 1) * sizeof *cs);
    if (cs == NULL) {                /* degrade to the natural order rather than fail */
        for (size_t j = 0; j < n; j++) rank[j] = j;
        return;
    }
    for (size_t j = 0; j < n; j++) {
        double s = 0.0;
        for (size_t i = 0; i < T->rows; i++) s += fabs(QH_AT(T, i, j));
        cs[j] = (col_score){ s, j };
    }
    qsort(cs, n, sizeof *cs, by_score_desc);
    for (size_t j = 0; j < n; j++) rank[j] = cs[j].col;
    free(cs);
}

int qh_binarize_search_salient_ranked(const qh_matd *T, const size_t *rank, size_t max_k,
                                      int order, size_t *best_k, double *best_err)
{
    QH_TRY(check_args(T, order, __func__));
    if (max_k == 0) QH_ERROR(QH_EINVAL, "salient search needs max_k >= 1");
    if (rank == NULL || best_k == NULL || best_err == NULL)
        QH_ERROR(QH_EINVAL, "NULL argument of the salient search");
    const size_t m = T->rows, n = T->cols;
    if (max_k > n) max_k = n;
    int st = QH_OK;
    uint8_t *sal = malloc(2 * m * n + 1);
    if (sal == NULL) QH_ERROR(QH_ENOMEM, "salient masks of %zu x %zu", m, n);
    uint8_t *rest = sal + m * n;
    qh_mask_fill(sal, m, n, 0);
    qh_mask_fill(rest, m, n, 1);
    *best_k = 0;
    *best_err = INFINITY;
    for (size_t k = 1; k <= max_k; k++) {
        qh_mask_set_columns(sal, m, rank + k - 1, 1, 1);
        qh_mask_set_columns(rest, m, rank + k - 1, 1, 0);
        double e1 = 0.0, e2 = 0.0;
        if ((st = qh_binarize_error(T, sal, order, &e1)) != QH_OK) goto cleanup;
        if ((st = qh_binarize_error(T, rest, order, &e2)) != QH_OK) goto cleanup;
        if (e1 + e2 < *best_err) {
            *best_err = e1 + e2;
            *best_k = k;
        }
    }
cleanup:
    free(sal);
    return st;
}

int qh_binarize_search_salient(const qh_matd *T, size_t max_k, int order, size_t *rank,
                               size_t *best_k, double *best_err)
{
    QH_TRY(check_args(T, order, __func__));
    if (rank == NULL) QH_ERROR(QH_EINVAL, "NULL rank of the salient search");
    qh_binarize_rank_columns(T, rank);
    return qh_binarize_search_salient_ranked(T, rank, max_k, order, best_k, best_err);
}

/* Quantiles of |T| over the masked entries, plus, when zero_rest, a zero for
 * every entry outside the mask (the magnitudes of T with those entries zeroed). */
static int abs_quantiles(const qh_matd *T, const uint8_t *mask, int zero_rest, const double *q,
                         size_t nq, double *out)
{
    if (T == NULL || q == NULL || out == NULL) QH_ERROR(QH_EINVAL, "NULL argument");
    const size_t m = T->rows, n = T->cols;
    size_t cnt = zero_rest ? m * n : qh_mask_count(mask, m, n);
    if (cnt == 0) {
        for (size_t t = 0; t < nq; t++) out[t] = 0.0;
        return QH_OK;
    }
    double *v = malloc(cnt * sizeof *v);
    if (v == NULL) QH_ERROR(QH_ENOMEM, "%zu magnitudes for quantiles", cnt);
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++)
            if (in_mask(mask, m, i, j)) v[k++] = fabs(QH_AT(T, i, j));
            else if (zero_rest) v[k++] = 0.0;
    qh_sort_doubles(v, cnt);
    for (size_t t = 0; t < nq; t++) {
        if (!(q[t] >= 0.0 && q[t] <= 1.0)) {
            free(v);
            QH_ERROR(QH_EINVAL, "quantile %g outside [0, 1]", q[t]);
        }
        double pos = q[t] * (double)(cnt - 1);
        size_t lo = (size_t)floor(pos);
        size_t hi = lo + 1 < cnt ? lo + 1 : lo;
        double f = pos - (double)lo;
        out[t] = v[lo] + f * (v[hi] - v[lo]);
    }
    free(v);
    return QH_OK;
}

int qh_binarize_abs_quantiles(const qh_matd *T, const uint8_t *mask, const double *q,
                              size_t nq, double *out)
{
    return abs_quantiles(T, mask, 0, q, nq, out);
}

int qh_binarize_split_candidates(const qh_matd *T, const uint8_t *base, int n_thr,
                                 double q_lo, double q_hi, double *thr)
{
    return qh_binarize_split_candidates_in(T, base, QH_SPLIT_Q_BASE, n_thr, q_lo, q_hi, thr);
}

int qh_binarize_split_candidates_in(const qh_matd *T, const uint8_t *base,
                                    qh_split_quantiles where, int n_thr, double q_lo,
                                    double q_hi, double *thr)
{
    if (n_thr < 1) QH_ERROR(QH_EINVAL, "split search needs at least 1 threshold, got %d", n_thr);
    if (!(q_lo >= 0.0 && q_hi <= 1.0 && q_lo <= q_hi))
        QH_ERROR(QH_EINVAL, "split quantile range [%g, %g] not within [0, 1]", q_lo, q_hi);
    double *q = malloc((size_t)n_thr * sizeof *q);
    if (q == NULL) QH_ERROR(QH_ENOMEM, "%d quantile levels", n_thr);
    for (int t = 0; t < n_thr; t++)
        q[t] = n_thr == 1 ? q_lo : q_lo + (q_hi - q_lo) * (double)t / (double)(n_thr - 1);
    int st = abs_quantiles(T, base, where == QH_SPLIT_Q_ZEROED, q, (size_t)n_thr, thr);
    free(q);
    return st;
}

int qh_binarize_search_split(const qh_matd *T, const uint8_t *base, int n_thr, double q_lo,
                             double q_hi, int order, double *best_thr, double *best_err)
{
    return qh_binarize_search_split_in(T, base, QH_SPLIT_Q_BASE, n_thr, q_lo, q_hi, order,
                                       best_thr, best_err);
}

int qh_binarize_search_split_in(const qh_matd *T, const uint8_t *base, qh_split_quantiles where,
                                int n_thr, double q_lo, double q_hi, int order,
                                double *best_thr, double *best_err)
{
    QH_TRY(check_args(T, order, __func__));
    if (best_thr == NULL || best_err == NULL) QH_ERROR(QH_EINVAL, "NULL output of the split search");
    if (n_thr < 1) QH_ERROR(QH_EINVAL, "split search needs at least 1 threshold, got %d", n_thr);
    const size_t m = T->rows, n = T->cols;
    int st = QH_OK;
    double *thr = malloc((size_t)n_thr * sizeof *thr);
    uint8_t *inner = malloc(2 * m * n + 1);
    if (thr == NULL || inner == NULL) {
        QH_SET_ERROR(st, QH_ENOMEM, "split search scratch for %zu x %zu", m, n);
        goto cleanup;
    }
    uint8_t *outer = inner + m * n;
    if ((st = qh_binarize_split_candidates_in(T, base, where, n_thr, q_lo, q_hi, thr)) != QH_OK)
        goto cleanup;
    *best_thr = thr[0];
    *best_err = INFINITY;
    for (int t = 0; t < n_thr; t++) {
        qh_mask_split_abs(T, base, thr[t], inner, outer);
        double e1 = 0.0, e2 = 0.0;
        if ((st = qh_binarize_error(T, inner, order, &e1)) != QH_OK) goto cleanup;
        if ((st = qh_binarize_error(T, outer, order, &e2)) != QH_OK) goto cleanup;
        if (e1 + e2 < *best_err) {
            *best_err = e1 + e2;
            *best_thr = thr[t];
        }
    }
cleanup:
    free(thr);
    free(inner);
    return st;
}
