/* qh_flops.c -- the rows' floating-point building blocks (see qh_flops.h).
 * The expressions keep the order the estimate has always summed them in, so
 * that its counts stay the same to the last bit. */
#include "qh_flops.h"

double qh_flops_round(double m, double n) { return 10 * m * n; }

double qh_flops_feedback(double m, double n) { return m * n * n + 2 * n * n * n; }

double qh_flops_times_h(double m, double n) { return 2 * m * n * n; }

double qh_flops_feedback_then(double m, double n, double k)
{
    return qh_flops_feedback(m, n) + k * qh_flops_times_h(m, n);
}

double qh_flops_eig(double n) { return 9.0 * n * n * n; }

double qh_flops_svd(double m, double n) { return 8 * m * n * (m < n ? m : n); }

double qh_flops_row_round(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)params, (void)bits, (void)partial;
    return qh_flops_round((double)rows, (double)cols);
}

double qh_flops_row_feedback(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)params, (void)bits, (void)partial;
    return qh_flops_feedback((double)rows, (double)cols);
}

double qh_flops_row_feedback_searched(const void *params, int bits, size_t rows, size_t cols,
                                      int *partial)
{
    *partial = 1;
    return qh_flops_row_feedback(params, bits, rows, cols, partial);
}
