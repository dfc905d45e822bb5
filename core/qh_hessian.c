/* qh_hessian.c -- float64 accumulation of Σ x xᵀ by chunked dsyrk (see qh_hessian.h). */
#include "qh_hessian.h"

#include <math.h>
#include <stdlib.h>

#include "qh_blas.h"

int qh_hessian_acc_init(qh_hessian_acc *acc, size_t n)
{
    acc->n = n;
    acc->tokens = 0;
    acc->chunk = 256;                /* dsyrk with k = 256 runs near peak; scratch stays small */
    acc->sum = qh_matd_alloc(n, n);
    acc->scratch = malloc(n * acc->chunk * sizeof *acc->scratch);
    if (!acc->sum || !acc->scratch) {
        qh_hessian_acc_free(acc);
        QH_ERROR(QH_ENOMEM, "cannot allocate a %zu x %zu Hessian", n, n);
    }
    return QH_OK;
}

void qh_hessian_acc_free(qh_hessian_acc *acc)
{
    qh_matd_free(acc->sum);
    free(acc->scratch);
    acc->sum = NULL;
    acc->scratch = NULL;
}

int qh_hessian_acc_add(qh_hessian_acc *acc, const float *X, size_t T, const char *what)
{
    size_t n = acc->n;
    for (size_t t0 = 0; t0 < T; t0 += acc->chunk) {
        size_t k = T - t0 < acc->chunk ? T - t0 : acc->chunk;
        const float *src = X + t0 * n;
        for (size_t i = 0; i < n * k; i++) {
            if (!isfinite(src[i]))
                QH_ERROR(QH_ENAN, "%s: non-finite input activation at token %zu, channel %zu",
                         what, t0 + i / n, i % n);
            acc->scratch[i] = src[i];
        }
        /* sum (upper) += S Sᵀ with S = scratch (n x k) */
        qh_dsyrk('N', n, k, 1.0, acc->scratch, n, 1.0, acc->sum->data, acc->sum->ld);
    }
    acc->tokens += T;
    return QH_OK;
}

int qh_hessian_acc_result(const qh_hessian_acc *acc, qh_matd *H)
{
    QH_ASSERT(H->rows == acc->n && H->cols == acc->n);
    if (acc->tokens == 0) QH_ERROR(QH_EINVAL, "Hessian of dimension %zu: no tokens accumulated", acc->n);
    double scale = 1.0 / (double)acc->tokens;
    for (size_t j = 0; j < acc->n; j++)
        for (size_t i = 0; i <= j; i++) {
            double v = QH_AT(acc->sum, i, j) * scale;
            QH_AT(H, i, j) = v;
            QH_AT(H, j, i) = v;
        }
    return QH_OK;
}
