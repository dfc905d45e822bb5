/* qh_hadamard.c -- Paley-construction Hadamard bases, the fast Walsh–Hadamard
 * transform and the normalized transform 𝐇_h = (H_K ⊗ S_{h/K})/√h of QuIP#
 * (arXiv 2402.04396). See qh_hadamard.h for the supported sizes and the
 * index convention; the QuIP# bases needing Paley II or GF(p^k) are left out.
 */
#include "qh_hadamard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qh_blas.h"

/* Primes q ≡ 3 (mod 4): Paley I gives a Hadamard matrix of order q + 1. */
static const size_t paley_primes[] = { 11, 19, 59, 107, 139 };
#define N_PALEY (sizeof paley_primes / sizeof paley_primes[0])

static int is_pow2(size_t x) { return x > 0 && (x & (x - 1)) == 0; }

size_t qh_hadamard_base_for(size_t h)
{
    if (h == 0)
        return 0;
    if (is_pow2(h))
        return 1;
    for (size_t i = 0; i < N_PALEY; i++) {
        size_t K = paley_primes[i] + 1;
        if (h % K == 0 && is_pow2(h / K))
            return K;
    }
    return 0;
}

size_t qh_hadamard_largest_divisor(size_t n)
{
    size_t best = 1;
    for (size_t i = 0; i <= N_PALEY; i++) {
        size_t K = i < N_PALEY ? paley_primes[i] + 1 : 1;
        if (n % K != 0)
            continue;
        size_t h = K;                /* K·2^j for the largest j with K·2^j | n */
        while (n % (2 * h) == 0)
            h *= 2;
        if (h > best)
            best = h;
    }
    return best;
}

/* Quadratic character of a mod q (q prime): 0, +1 (residue) or −1. */
static int quad_char(size_t a, size_t q, const unsigned char *is_residue)
{
    a %= q;
    return a == 0 ? 0 : (is_residue[a] ? 1 : -1);
}

/* Paley I: H = I + [[0, 1ᵀ], [−1, Q]] with Jacobsthal Q_ij = χ(j − i). Since
 * q ≡ 3 (mod 4), Q is skew, so the bordered matrix S is skew with S Sᵀ = qI and
 * H Hᵀ = (q+1) I. */
static int paley1(size_t q, double *out)
{
    size_t K = q + 1;
    unsigned char *res = calloc(q, 1);
    if (!res)
        QH_ERROR(QH_ENOMEM, "Paley matrix of order %zu: out of memory", K);
    for (size_t a = 1; a < q; a++)
        res[(a * a) % q] = 1;
    for (size_t j = 0; j < K; j++)
        for (size_t i = 0; i < K; i++) {
            double s;
            if (i == 0 && j == 0)
                s = 0.0;
            else if (i == 0)
                s = 1.0;
            else if (j == 0)
                s = -1.0;
            else
                s = quad_char(j - 1 + q - (i - 1), q, res);
            out[i + j * K] = s + (i == j ? 1.0 : 0.0);
        }
    free(res);
    return QH_OK;
}

int qh_hadamard_base(size_t K, double *out)
{
    QH_ASSERT(out != NULL);
    if (K == 1) {
        out[0] = 1.0;
        return QH_OK;
    }
    for (size_t i = 0; i < N_PALEY; i++)
        if (paley_primes[i] + 1 == K)
            return paley1(paley_primes[i], out);
    QH_ERROR(QH_EINVAL, "Hadamard base of order %zu not supported (expected 1, 12, 20, 60, 108, 140)", K);
}

static int popcount_parity(size_t x)
{
    int p = 0;
    while (x) {
        p ^= 1;
        x &= x - 1;
    }
    return p;
}

int qh_hadamard_dense(size_t h, double *out)
{
    QH_ASSERT(out != NULL);
    size_t K = qh_hadamard_base_for(h);
    if (K == 0)
        QH_ERROR(QH_EINVAL, "Hadamard size %zu is not K*2^j with K in {1,12,20,60,108,140}", h);
    size_t p = h / K;
    double *HK = malloc(K * K * sizeof *HK);
    if (!HK)
        QH_ERROR(QH_ENOMEM, "Hadamard size %zu: out of memory", h);
    int st = qh_hadamard_base(K, HK);
    if (st == QH_OK)
        for (size_t j = 0; j < h; j++)
            for (size_t i = 0; i < h; i++) {
                double s = popcount_parity((i % p) & (j % p)) ? -1.0 : 1.0;
                out[i + j * h] = HK[i / p + (j / p) * K] * s;
            }
    free(HK);
    return st;
}

void qh_fwht(double *X, size_t p, size_t ncols, size_t ld)
{
    QH_ASSERT(is_pow2(p) && ld >= p);
    for (size_t c = 0; c < ncols; c++) {
        double *x = X + c * ld;
        for (size_t len = 1; len < p; len <<= 1)
            for (size_t i = 0; i < p; i += 2 * len)
                for (size_t j = i; j < i + len; j++) {
                    double a = x[j], b = x[j + len];
                    x[j] = a + b;
                    x[j + len] = a - b;
                }
    }
}

int qh_hadamard_apply(size_t h, int transpose, double *X, size_t ncols, size_t ld)
{
    QH_ASSERT(X != NULL || ncols == 0);
    size_t K = qh_hadamard_base_for(h);
    if (K == 0)
        QH_ERROR(QH_EINVAL, "Hadamard size %zu is not K*2^j with K in {1,12,20,60,108,140}", h);
    QH_ASSERT(ld >= h);
    size_t p = h / K;
    double scale = 1.0 / sqrt((double)h);
    double *HK = NULL, *tmp = NULL;
    int st = QH_OK;
    if (K > 1) {
        HK = malloc(K * K * sizeof *HK);
        tmp = malloc(h * sizeof *tmp);
        if (!HK || !tmp) {
            QH_SET_ERROR(st, QH_ENOMEM, "Hadamard size %zu: out of memory", h);
            goto cleanup;
        }
        st = qh_hadamard_base(K, HK);
        if (st != QH_OK)
            goto cleanup;
    }
    for (size_t c = 0; c < ncols; c++) {
        double *x = X + c * ld;
        qh_fwht(x, p, K, p);         /* S_p on each of the K segments */
        if (K > 1) {
            /* reshape x as p x K: Y ← Y H_Kᵀ (forward) or Y H_K (transpose) */
            qh_dgemm('N', transpose ? 'N' : 'T', p, K, K, scale, x, p, HK, K, 0.0, tmp, p);
            memcpy(x, tmp, h * sizeof *x);
        } else {
            for (size_t i = 0; i < h; i++)
                x[i] *= scale;
        }
    }
cleanup:
    free(HK);
    free(tmp);
    return st;
}

/* Unnormalized FWHT along the columns index of the r x p block X (ld r):
 * columns j, j+len ← (x_j + x_{j+len}, x_j − x_{j+len}), each an r-long sweep. */
static void fwht_across_cols(double *X, size_t r, size_t p)
{
    for (size_t len = 1; len < p; len <<= 1)
        for (size_t i = 0; i < p; i += 2 * len)
            for (size_t j = i; j < i + len; j++) {
                double *x = X + j * r, *y = X + (j + len) * r;
                for (size_t k = 0; k < r; k++) {
                    double a = x[k], b = y[k];
                    x[k] = a + b;
                    y[k] = a - b;
                }
            }
}

int qh_hadamard_apply_rows(size_t h, int transpose, double *X, size_t nrows)
{
    QH_ASSERT(X != NULL || nrows == 0);
    size_t K = qh_hadamard_base_for(h);
    if (K == 0)
        QH_ERROR(QH_EINVAL, "Hadamard size %zu is not K*2^j with K in {1,12,20,60,108,140}", h);
    if (nrows == 0)
        return QH_OK;
    size_t p = h / K;
    double scale = 1.0 / sqrt((double)h);
    for (size_t k1 = 0; k1 < K; k1++)   /* S_p on each block of p columns (coordinate j = k1·p + j2) */
        fwht_across_cols(X + k1 * p * nrows, nrows, p);
    if (K == 1) {
        for (size_t i = 0; i < nrows * h; i++)
            X[i] *= scale;
        return QH_OK;
    }
    /* H_K on k1: view X as (nrows·p) x K, Z ← Z H_Kᵀ (forward) or Z H_K (transpose) */
    int st = QH_OK;
    double *HK = malloc(K * K * sizeof *HK), *tmp = malloc(nrows * h * sizeof *tmp);
    if (!HK || !tmp) {
        QH_SET_ERROR(st, QH_ENOMEM, "Hadamard size %zu on %zu rows: out of memory", h, nrows);
        goto cleanup;
    }
    st = qh_hadamard_base(K, HK);
    if (st != QH_OK)
        goto cleanup;
    qh_dgemm('N', transpose ? 'N' : 'T', nrows * p, K, K, scale, X, nrows * p, HK, K, 0.0, tmp, nrows * p);
    memcpy(X, tmp, nrows * h * sizeof *X);
cleanup:
    free(HK);
    free(tmp);
    return st;
}
