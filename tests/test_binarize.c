/* test_binarize.c -- residual binarization primitives (core/qh_binarize.h;
 * methods reference §6 step 4):
 *   - rows of two values in equal numbers are reproduced exactly by one
 *     order (μ = (a+b)/2, α = |a−b|/2), also under a mask, and entries
 *     outside the mask are left untouched;
 *   - against a plain per-row reference written here (orders 1..3, masked);
 *     qh_binarize_error equals the squared error of qh_binarize_rows;
 *   - order 2 never has a larger error than order 1, every row (closed form:
 *     one order removes N·α² from ‖r − μ‖² ≤ ‖r‖²);
 *   - quantiles against hand values (numpy's linear interpolation);
 *   - the salient search finds planted heavy columns; the split search
 *     returns the best of its candidates (brute force with the reference);
 *   - bad arguments. */
#include "qh_binarize.h"
#include "qh_rng.h"
#include "qh_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static qh_matd *gaussian(size_t m, size_t n, uint32_t key)
{
    qh_matd *W = qh_matd_alloc(m, n);
    qh_rng r = qh_rng_stream(31, key, QH_RNG_TEST);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) QH_AT(W, i, j) = qh_rng_normal(&r);
    return W;
}

static uint8_t *random_mask(size_t m, size_t n, double p_in, uint32_t key)
{
    uint8_t *mask = malloc(m * n);
    qh_rng r = qh_rng_stream(32, key, QH_RNG_TEST);
    for (size_t k = 0; k < m * n; k++) mask[k] = qh_rng_uniform(&r) < p_in;
    return mask;
}

/* Plain reference: row i's masked entries copied out, binarized order by order. */
static double ref_row_error(const qh_matd *T, const uint8_t *mask, size_t i, int order, double *rec)
{
    size_t m = T->rows, n = T->cols, c = 0;
    double *r = malloc(n * sizeof *r), *x = malloc(n * sizeof *x);
    for (size_t j = 0; j < n; j++)
        if (!mask || mask[i + j * m]) { x[c] = r[c] = QH_AT(T, i, j); c++; }
    for (int o = 0; o < order && c > 0; o++) {
        double mu = 0.0, al = 0.0;
        for (size_t k = 0; k < c; k++) mu += r[k];
        mu /= (double)c;
        for (size_t k = 0; k < c; k++) al += fabs(r[k] - mu);
        al /= (double)c;
        for (size_t k = 0; k < c; k++) r[k] -= (r[k] >= mu ? al : -al) + mu;
    }
    double e = 0.0;
    for (size_t k = 0; k < c; k++) {
        e += r[k] * r[k];
        if (rec) rec[k] = x[k] - r[k];
    }
    free(r);
    free(x);
    return e;
}

static void test_two_values_exact(void)
{
    size_t m = 16, n = 24;
    qh_matd *W = qh_matd_alloc(m, n), *Q = qh_matd_alloc(m, n);
    qh_rng r = qh_rng_stream(33, 0, QH_RNG_TEST);
    double a[16], b[16];
    for (size_t i = 0; i < m; i++) {
        a[i] = qh_rng_normal(&r);
        b[i] = a[i] + 0.1 + fabs(qh_rng_normal(&r));
        size_t perm[24];                               /* half the entries a, half b */
        for (size_t j = 0; j < n; j++) perm[j] = j;
        for (size_t j = n - 1; j > 0; j--) {
            size_t k = (size_t)qh_rng_below(&r, j + 1), t = perm[j];
            perm[j] = perm[k];
            perm[k] = t;
        }
        for (size_t j = 0; j < n; j++) QH_AT(W, i, perm[j]) = j < n / 2 ? a[i] : b[i];
    }
    double mu[16], al[16], worst = 0.0, wmu = 0.0, wal = 0.0;
    QH_CHECK(qh_binarize_rows(W, NULL, 1, Q, mu, al) == QH_OK, "binarize: %s", qh_last_error());
    for (size_t k = 0; k < m * n; k++) worst = fmax(worst, fabs(Q->data[k] - W->data[k]));
    for (size_t i = 0; i < m; i++) {
        wmu = fmax(wmu, fabs(mu[i] - 0.5 * (a[i] + b[i])));
        wal = fmax(wal, fabs(al[i] - 0.5 * (b[i] - a[i])));
    }
    QH_CHECK(worst < 1e-12, "two balanced values per row reproduced by one order (max err %g)", worst);
    QH_CHECK(wmu < 1e-12 && wal < 1e-12, "mu = (a+b)/2, alpha = |a-b|/2 (errs %g, %g)", wmu, wal);

    /* Masked: the masked half of each row holds two balanced values; the rest
     * is noise that must neither enter the statistics nor be overwritten. */
    uint8_t *mask = calloc(m * n, 1);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            mask[i + j * m] = (j % 2 == 0);
            QH_AT(W, i, j) = mask[i + j * m] ? ((j / 2) % 2 ? a[i] : b[i]) : 100.0 + qh_rng_normal(&r);
        }
    for (size_t k = 0; k < m * n; k++) Q->data[k] = -7.0;
    QH_CHECK(qh_binarize_rows(W, mask, 1, Q, NULL, NULL) == QH_OK, "masked: %s", qh_last_error());
    double werr = 0.0;
    int untouched = 1;
    for (size_t k = 0; k < m * n; k++) {
        if (mask[k]) werr = fmax(werr, fabs(Q->data[k] - W->data[k]));
        else untouched &= Q->data[k] == -7.0;
    }
    QH_CHECK(werr < 1e-12, "masked two-value rows exact (max err %g)", werr);
    QH_CHECK(untouched, "entries outside the mask left untouched");
    double e;
    QH_CHECK(qh_binarize_error(W, mask, 1, &e) == QH_OK && e < 1e-20, "error of the exact case 0 (%g)", e);
    free(mask);
    qh_matd_free(W);
    qh_matd_free(Q);
}

static void test_against_reference(void)
{
    size_t m = 20, n = 37;
    qh_matd *W = gaussian(m, n, 1), *Q = qh_matd_alloc(m, n);
    uint8_t *mask = random_mask(m, n, 0.6, 1);
    for (size_t k = 0; k < n; k++) mask[3 + k * m] = 0;   /* row 3 empty */
    double rec[64];
    for (int order = 1; order <= 3; order++) {
        double mu[3 * 20], al[3 * 20];
        QH_CHECK(qh_binarize_rows(W, mask, order, Q, mu, al) == QH_OK, "rows: %s", qh_last_error());
        double worst = 0.0, total = 0.0, lib_err = -1.0;
        for (size_t i = 0; i < m; i++) {
            total += ref_row_error(W, mask, i, order, rec);
            size_t c = 0;
            for (size_t j = 0; j < n; j++)
                if (mask[i + j * m]) worst = fmax(worst, fabs(QH_AT(Q, i, j) - rec[c++]));
        }
        QH_CHECK(worst < 1e-12, "order %d: reconstruction = plain reference (max diff %g)", order, worst);
        QH_CHECK(qh_binarize_error(W, mask, order, &lib_err) == QH_OK, "error: %s", qh_last_error());
        QH_CHECK_CLOSE(lib_err, total, 1e-12, 1e-12, "order %d: qh_binarize_error %g = reference %g",
                       order, lib_err, total);
        int empty_zero = 1;
        for (int o = 0; o < order; o++) empty_zero &= mu[3 + o * 20] == 0.0 && al[3 + o * 20] == 0.0;
        QH_CHECK(empty_zero, "order %d: an empty row gets mu = alpha = 0", order);
        /* The value function reproduces the matrix from the statistics. */
        double vworst = 0.0;
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++)
                if (mask[i + j * m])
                    vworst = fmax(vworst, fabs(qh_binarize_value(QH_AT(W, i, j), order, mu, al, i, m)
                                               - QH_AT(Q, i, j)));
        QH_CHECK(vworst == 0.0, "order %d: qh_binarize_value = qh_binarize_rows (diff %g)", order, vworst);
    }
    free(mask);
    qh_matd_free(W);
    qh_matd_free(Q);
}

static void test_order_monotone(void)
{
    size_t m = 64, n = 100;
    qh_matd *W = gaussian(m, n, 2), *Q1 = qh_matd_alloc(m, n), *Q2 = qh_matd_alloc(m, n);
    /* Skewed rows (exponential-like) so that the orders differ visibly. */
    for (size_t k = 0; k < m * n; k++) W->data[k] = W->data[k] * W->data[k] * (k % 3 ? 1.0 : -0.5);
    uint8_t *mask = random_mask(m, n, 0.7, 2);
    for (int masked = 0; masked <= 1; masked++) {
        const uint8_t *mk = masked ? mask : NULL;
        QH_CHECK(qh_binarize_rows(W, mk, 1, Q1, NULL, NULL) == QH_OK, "%s", qh_last_error());
        QH_CHECK(qh_binarize_rows(W, mk, 2, Q2, NULL, NULL) == QH_OK, "%s", qh_last_error());
        size_t bad = 0, strictly = 0;
        for (size_t i = 0; i < m; i++) {
            double e1 = 0.0, e2 = 0.0;
            for (size_t j = 0; j < n; j++) {
                if (mk && !mk[i + j * m]) continue;
                double d1 = QH_AT(Q1, i, j) - QH_AT(W, i, j), d2 = QH_AT(Q2, i, j) - QH_AT(W, i, j);
                e1 += d1 * d1;
                e2 += d2 * d2;
            }
            bad += e2 > e1 * (1 + 1e-12) + 1e-300;
            strictly += e2 < e1;
        }
        QH_CHECK(bad == 0, "mask %d: order 2 error <= order 1 in every row (%zu rows worse)", masked, bad);
        QH_CHECK(strictly == m, "mask %d: order 2 strictly better on random rows (%zu of %zu)", masked,
                 strictly, m);
    }
    free(mask);
    qh_matd_free(W);
    qh_matd_free(Q1);
    qh_matd_free(Q2);
}

static void test_masks_and_quantiles(void)
{
    qh_matd *T = qh_matd_alloc(1, 5);
    double v[5] = { 3, -1, 5, 2, -4 };                 /* |T| sorted: 1 2 3 4 5 */
    memcpy(T->data, v, sizeof v);
    double q[4] = { 0.0, 0.1, 0.5, 0.9 }, out[4];
    QH_CHECK(qh_binarize_abs_quantiles(T, NULL, q, 4, out) == QH_OK, "%s", qh_last_error());
    QH_CHECK_CLOSE(out[0], 1.0, 1e-15, 0, "q0 = 1 (%g)", out[0]);
    QH_CHECK_CLOSE(out[1], 1.4, 1e-14, 0, "q0.1 = 1.4 (%g)", out[1]);
    QH_CHECK_CLOSE(out[2], 3.0, 1e-14, 0, "q0.5 = 3 (%g)", out[2]);
    QH_CHECK_CLOSE(out[3], 4.6, 1e-14, 0, "q0.9 = 4.6 (%g)", out[3]);
    uint8_t base[5] = { 1, 1, 0, 1, 1 }, in[5], outm[5];   /* without the 5: 1 2 3 4 */
    QH_CHECK(qh_binarize_abs_quantiles(T, base, q + 2, 1, out) == QH_OK && fabs(out[0] - 2.5) < 1e-14,
             "masked median 2.5 (%g)", out[0]);
    qh_mask_split_abs(T, base, 3.0, in, outm);
    QH_CHECK(in[0] == 0 && outm[0] == 1 && in[1] == 1 && outm[1] == 0 && in[2] == 0 && outm[2] == 0 &&
             in[3] == 1 && outm[4] == 1, "split: |T| < 3 inner, >= 3 outer, outside base neither");
    QH_CHECK(qh_mask_count(base, 1, 5) == 4 && qh_mask_count(NULL, 3, 4) == 12, "mask counts");
    double thr[3];
    QH_CHECK(qh_binarize_split_candidates(T, NULL, 3, 0.1, 0.9, thr) == QH_OK &&
             fabs(thr[0] - 1.4) < 1e-14 && fabs(thr[1] - 3.0) < 1e-14 && fabs(thr[2] - 4.6) < 1e-14,
             "candidates at 10/50/90 %%: %g %g %g", thr[0], thr[1], thr[2]);
    qh_matd_free(T);
}

static void test_salient_planted(void)
{
    size_t m = 32, n = 64;
    qh_matd *T = gaussian(m, n, 3);
    const size_t planted[3] = { 5, 17, 40 };
    for (size_t k = 0; k < m * n; k++) T->data[k] = T->data[k] * T->data[k];  /* S >= 0 like W²/d² */
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < m; i++) QH_AT(T, i, planted[c]) *= 60.0 + 10.0 * c;
    size_t rank[64], k = 0;
    double err = 0.0;
    QH_CHECK(qh_binarize_search_salient(T, 49, 2, rank, &k, &err) == QH_OK, "%s", qh_last_error());
    int top_ok = 1;
    for (int c = 0; c < 3; c++) {
        int found = 0;
        for (size_t r = 0; r < 3; r++) found |= rank[r] == planted[c];
        top_ok &= found;
    }
    QH_CHECK(top_ok, "planted columns ranked first (%zu %zu %zu)", rank[0], rank[1], rank[2]);
    QH_CHECK(k >= 3, "search keeps at least the 3 planted columns (k = %zu)", k);
    /* Brute force over k with the plain reference. */
    double best = INFINITY;
    size_t best_k = 0;
    uint8_t *sal = calloc(m * n, 1), *rest = malloc(m * n);
    memset(rest, 1, m * n);
    for (size_t kk = 1; kk <= 49; kk++) {
        memset(sal + rank[kk - 1] * m, 1, m);
        memset(rest + rank[kk - 1] * m, 0, m);
        double e = 0.0;
        for (size_t i = 0; i < m; i++) e += ref_row_error(T, sal, i, 2, NULL) + ref_row_error(T, rest, i, 2, NULL);
        if (e < best) { best = e; best_k = kk; }
    }
    QH_CHECK(best_k == k && fabs(best - err) <= 1e-9 * best, "search = brute force (k %zu vs %zu, err %g vs %g)",
             k, best_k, err, best);
    free(sal);
    free(rest);
    qh_matd_free(T);
}

static void test_split_brute_force(void)
{
    size_t m = 8, n = 16;
    qh_matd *T = gaussian(m, n, 4);
    uint8_t *base = random_mask(m, n, 0.8, 4), *in = malloc(m * n), *out = malloc(m * n);
    const int nt = 9;
    double thr[9], best_thr = 0, best_err = 0;
    QH_CHECK(qh_binarize_search_split(T, base, nt, 0.1, 0.9, 1, &best_thr, &best_err) == QH_OK, "%s",
             qh_last_error());
    /* Candidates by hand: sorted |T| on base, numpy linear quantiles. */
    size_t c = 0;
    double *v = malloc(m * n * sizeof *v);
    for (size_t k = 0; k < m * n; k++)
        if (base[k]) v[c++] = fabs(T->data[k]);
    for (size_t a = 1; a < c; a++)                       /* insertion sort */
        for (size_t b = a; b > 0 && v[b - 1] > v[b]; b--) { double t = v[b]; v[b] = v[b - 1]; v[b - 1] = t; }
    double bf_err = INFINITY, bf_thr = 0.0;
    for (int t = 0; t < nt; t++) {
        double pos = (0.1 + 0.8 * t / (nt - 1)) * (double)(c - 1);
        size_t lo = (size_t)pos;
        thr[t] = v[lo] + (pos - (double)lo) * (v[lo + 1 < c ? lo + 1 : lo] - v[lo]);
        qh_mask_split_abs(T, base, thr[t], in, out);
        double e = 0.0;
        for (size_t i = 0; i < m; i++) e += ref_row_error(T, in, i, 1, NULL) + ref_row_error(T, out, i, 1, NULL);
        if (e < bf_err) { bf_err = e; bf_thr = thr[t]; }
    }
    QH_CHECK(fabs(best_thr - bf_thr) < 1e-14 && fabs(best_err - bf_err) <= 1e-12 * bf_err,
             "split search = brute force over its candidates (thr %g vs %g, err %g vs %g)", best_thr,
             bf_thr, best_err, bf_err);
    free(v);
    free(base);
    free(in);
    free(out);
    qh_matd_free(T);
}

static void test_bad_arguments(void)
{
    qh_matd *W = gaussian(4, 6, 5), *Q = qh_matd_alloc(4, 5);
    double e, t;
    size_t rank[6], k;
    QH_CHECK(qh_binarize_rows(W, NULL, 0, W, NULL, NULL) == QH_EINVAL, "order 0 refused");
    QH_CHECK(qh_binarize_rows(W, NULL, QH_BINARIZE_MAX_ORDER + 1, W, NULL, NULL) == QH_EINVAL,
             "order above the maximum refused");
    QH_CHECK(qh_binarize_rows(W, NULL, 1, Q, NULL, NULL) == QH_EBADLEN, "output shape mismatch refused: %s",
             qh_last_error());
    QH_CHECK(qh_binarize_rows(W, NULL, 1, NULL, NULL, NULL) == QH_EINVAL, "NULL output refused");
    QH_CHECK(qh_binarize_error(NULL, NULL, 1, &e) == QH_EINVAL, "NULL matrix refused");
    QH_CHECK(qh_binarize_search_split(W, NULL, 0, 0.1, 0.9, 1, &t, &e) == QH_EINVAL, "0 thresholds refused");
    QH_CHECK(qh_binarize_search_split(W, NULL, 3, 0.9, 0.1, 1, &t, &e) == QH_EINVAL, "reversed range refused");
    QH_CHECK(qh_binarize_search_salient(W, 0, 2, rank, &k, &e) == QH_EINVAL, "max_k 0 refused");
    QH_CHECK(qh_binarize_rows(W, NULL, 2, W, NULL, NULL) == QH_OK, "in place allowed");
    qh_matd_free(W);
    qh_matd_free(Q);
}

int main(void)
{
    test_two_values_exact();
    test_against_reference();
    test_order_monotone();
    test_masks_and_quantiles();
    test_salient_planted();
    test_split_brute_force();
    test_bad_arguments();
    return qh_test_summary();
}
