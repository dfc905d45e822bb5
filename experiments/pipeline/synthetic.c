/* synthetic.c -- (W, H) generators for per-matrix experiments (see synthetic.h). */
#include "pipeline/synthetic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qh_blas.h"
#include "qh_rng.h"

/* H = X Xᵀ / k with X n x k Gaussian, row i of X scaled by rowscale[i] (may be NULL). */
static int gram(qh_matd *H, size_t k, const double *rowscale, qh_rng *r)
{
    size_t n = H->rows;
    double *X = calloc(n * k, sizeof *X);
    if (!X) QH_ERROR(QH_ENOMEM, "synthetic H: out of memory");
    for (size_t j = 0; j < k; j++)
        for (size_t i = 0; i < n; i++)
            X[i + j * n] = qh_rng_normal(r) * (rowscale ? rowscale[i] : 1.0);
    qh_dsyrk('N', n, k, 1.0 / (double)k, X, n, 0.0, H->data, H->ld);
    for (size_t j = 0; j < n; j++)                       /* mirror the upper triangle */
        for (size_t i = j + 1; i < n; i++) QH_AT(H, i, j) = QH_AT(H, j, i);
    free(X);
    return QH_OK;
}

static void fill_W(qh_matd *W, int uniform, double outlier_frac, qh_rng *r)
{
    for (size_t j = 0; j < W->cols; j++)
        for (size_t i = 0; i < W->rows; i++) {
            double v = uniform ? qh_rng_uniform(r) : qh_rng_normal(r);
            if (outlier_frac > 0 && qh_rng_uniform(r) < outlier_frac) v *= 30.0;
            QH_AT(W, i, j) = v;
        }
}

static int coherent_H(qh_matd *H, qh_rng *r)
{
    size_t n = H->rows;
    QH_TRY(gram(H, 2 * n, NULL, r));
    for (size_t k = 0; k < n * n; k++) H->data[k] *= 0.01;       /* small dense part */
    size_t spikes = n / 16 + 1;
    for (size_t s = 0; s < spikes; s++) {                         /* axis-aligned eigenvectors */
        size_t i = (size_t)qh_rng_below(r, n);
        QH_AT(H, i, i) += 100.0;
    }
    return QH_OK;
}

int qh_synthetic_problem(const char *gen, uint64_t seed, qh_matd *W, qh_matd *H)
{
    QH_ASSERT(H->rows == W->cols && H->cols == W->cols);
    qh_rng r = qh_rng_stream(seed, 0, QH_RNG_SYNTHETIC);
    size_t n = W->cols;
    if (!strcmp(gen, "gaussian")) {
        fill_W(W, 0, 0, &r);
        return gram(H, 2 * n, NULL, &r);
    }
    if (!strcmp(gen, "uniform")) {
        double *scale = malloc(n * sizeof *scale);
        if (!scale) QH_ERROR(QH_ENOMEM, "synthetic H: out of memory");
        fill_W(W, 1, 0, &r);
        for (size_t i = 0; i < n; i++) scale[i] = pow(10.0, 3.0 * qh_rng_uniform(&r) - 1.5);
        int st = gram(H, 2 * n, scale, &r);
        free(scale);
        return st;
    }
    if (!strcmp(gen, "coherent")) {
        fill_W(W, 0, 0.01, &r);
        return coherent_H(H, &r);
    }
    if (!strcmp(gen, "lowrank")) {
        fill_W(W, 0, 0, &r);
        QH_TRY(gram(H, n / 8 ? n / 8 : 1, NULL, &r));
        for (size_t i = 0; i < n; i++) QH_AT(H, i, i) += 1e-6;
        return QH_OK;
    }
    QH_ERROR(QH_EINVAL, "unknown synthetic generator '%s' (expected gaussian, uniform, coherent, lowrank)", gen);
}
