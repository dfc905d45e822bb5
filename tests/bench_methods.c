/* bench_methods.c -- `make bench`: encode throughput of every row of the
 * method table on the layer shapes of opt-30m (512 x 512 attention
 * projections and a 512 x 2048 fc2), with default parameters, through the
 * driver qh_quantize without incoherence processing.
 *
 * Each row runs at the lowest bit width it is meant for in this harness's
 * sweeps: 1 bit for the binarization rows (min_bits = max_bits = 1), 2 bits
 * for every other row.  Reported: wall seconds of the second call (the first
 * touches the workspace), weights encoded per second, the share of the time
 * inside the BLAS/LAPACK wrappers, and the proxy loss relative to tr(WHWᵀ)
 * so that speed is read beside quality.
 * Set QH_BENCH_SMALL=1 to run only the 512 x 512 shape. */
#include <stdio.h>
#include <stdlib.h>

#include "qh_error.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "bench_util.h"

static int bench_bits(const qh_method_type *m)
{
    int lo, hi;
    qh_method_bits_range(m, &lo, &hi);
    return lo > 2 ? lo : (hi < 2 ? hi : 2);
}

/* Times one row on (W, H); prints one line.  Returns QH_OK or the status. */
static int bench_row(const qh_method_type *m, const qh_matd *W, const qh_matd *H, double wnorm)
{
    size_t rows = W->rows, cols = W->cols;
    void *params = qh_method_params_new(m);
    if (!params) return QH_ENOMEM;
    size_t bytes = (qh_method_workspace_size(m, params, rows, cols) + 63) / 64 * 64;
    void *work = aligned_alloc(64, bytes ? bytes : 64);
    if (!work) { free(params); return QH_ENOMEM; }
    qh_problem p = { W, H, bench_bits(m), 0, 0, "bench", NULL, NULL };
    qh_result r;
    qh_result_init(&r);
    double t = 0.0, t_blas = 0.0;
    int st = QH_OK;
    for (int rep = 0; rep < 2 && st == QH_OK; rep++) {
        qh_lin_timing_reset();
        qh_lin_timing_enable(1);
        double t0 = qh_seconds();
        st = qh_quantize(m, params, &p, NULL, work, &r);
        t = qh_seconds() - t0;
        t_blas = qh_lin_timing_seconds();
        qh_lin_timing_enable(0);
    }
    if (st == QH_OK)
        printf("%-10s %4zu x %-4zu %d-bit (%.3f bpw total): %8.3f s  %10.0f weights/s  "
               "BLAS %4.1f %%  rel. proxy %.4g\n",
               m->name, rows, cols, p.bits, r.bits_total, t, (double)(rows * cols) / t,
               100.0 * t_blas / t, r.proxy_loss / wnorm);
    else
        fprintf(stderr, "bench_methods: %s on %zu x %zu: %s\n", m->name, rows, cols,
                qh_last_error());
    qh_result_free(&r);
    free(work);
    free(params);
    return st;
}

static int bench_shape(size_t rows, size_t cols)
{
    qh_matd *W = bench_make_W(rows, cols, 5, 97), *H = bench_make_H(cols, 2 * cols, 5, 1);
    qh_matd *zero = qh_matd_alloc(rows, cols);
    double wnorm = 0.0;              /* tr(W H Wᵀ): the proxy of Ŵ = 0 (alloc zeroes) */
    int st = (W && H && zero) ? qh_lin_proxy_loss(W, zero, H, &wnorm) : QH_ENOMEM;
    for (const qh_method_type *const *m = qh_method_registry(); *m && st == QH_OK; m++)
        st = bench_row(*m, W, H, wnorm);
    qh_matd_free(zero);
    qh_matd_free(W);
    qh_matd_free(H);
    return st;
}

int main(void)
{
    qh_blas_info_t info = qh_blas_info();
    printf("bench_methods: encode throughput per method row (OpenBLAS core %s, %d threads)\n",
           info.core, info.threads);
    const char *small = getenv("QH_BENCH_SMALL");
    if (bench_shape(512, 512) != QH_OK) return 1;
    if (!(small && *small && *small != '0') && bench_shape(512, 2048) != QH_OK) return 1;
    return 0;
}
