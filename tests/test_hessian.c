/* test_hessian.c -- chunked float64 Hessian accumulation against a naive sum. */
#include "qh_test.h"

#include <string.h>

#include "qh_hessian.h"
#include "qh_rng.h"

int main(void)
{
    const size_t n = 37, T1 = 300, T2 = 45;          /* T1 spans two chunks, T2 a partial one */
    float *X = malloc(n * (T1 + T2) * sizeof *X);
    qh_rng r = qh_rng_stream(1, 0, QH_RNG_TEST);
    for (size_t i = 0; i < n * (T1 + T2); i++) X[i] = (float)(qh_rng_normal(&r) * (1 + i % 7));

    qh_hessian_acc acc;
    QH_CHECK(qh_hessian_acc_init(&acc, n) == QH_OK, "init");
    QH_CHECK(qh_hessian_acc_add(&acc, X, T1, "test") == QH_OK, "add first batch");
    QH_CHECK(qh_hessian_acc_add(&acc, X + n * T1, T2, "test") == QH_OK, "add second batch");
    qh_matd *H = qh_matd_alloc(n, n);
    QH_CHECK(qh_hessian_acc_result(&acc, H) == QH_OK, "result");

    double maxerr = 0, maxval = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t t = 0; t < T1 + T2; t++) s += (double)X[i + t * n] * X[j + t * n];
            s /= (double)(T1 + T2);
            maxerr = fmax(maxerr, fabs(QH_AT(H, i, j) - s));
            maxval = fmax(maxval, fabs(s));
        }
    QH_CHECK(maxerr <= 1e-12 * maxval, "H = (1/T) sum x x^T: max error %.3g of %.3g", maxerr, maxval);
    QH_CHECK(QH_AT(H, 3, 17) == QH_AT(H, 17, 3), "both triangles filled");

    X[5 + 2 * n] = NAN;
    int st = qh_hessian_acc_add(&acc, X, 4, "layer 0 fc1");
    QH_CHECK(st == QH_ENAN && strstr(qh_last_error(), "layer 0 fc1") && strstr(qh_last_error(), "token 2"),
             "NaN input names the layer and token: %s", qh_last_error());

    qh_hessian_acc empty;
    QH_CHECK(qh_hessian_acc_init(&empty, n) == QH_OK, "init empty");
    QH_CHECK(qh_hessian_acc_result(&empty, H) == QH_EINVAL, "no tokens is an error");
    qh_hessian_acc_free(&empty);
    qh_hessian_acc_free(&acc);
    qh_matd_free(H);
    free(X);
    return qh_test_summary();
}
