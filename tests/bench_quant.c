/* bench_quant.c -- `make bench`: wall time of GPTQ and LDLQ (through the
 * driver qh_quantize, 4 bits, default parameters) on 2048² and 4096² layers
 * with random W and H = X Xᵀ/T from correlated random X, and the share of
 * that time spent inside BLAS/LAPACK calls (timed around each call).
 * The driver's time includes the copies, the results' allocation and the
 * proxy loss (m n² flops, also timed alone); the workspace and the result
 * are allocated once and each method's second run is reported.
 * Set QH_BENCH_SMALL=1 to run only the 2048² layer. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "qh_blas.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "bench_util.h"

/* One timed call of method `name`; returns 0 on success. */
static int run_once(const char *name, const qh_matd *W, const qh_matd *H, void *work,
                    qh_result *r, double *t, double *t_blas)
{
    const qh_method_type *m = qh_method_find(name);
    qh_problem p = { W, H, 4, 0, 0, "bench", NULL, NULL };
    qh_lin_timing_reset();
    qh_lin_timing_enable(1);
    double t0 = qh_seconds();
    int st = qh_quantize(m, NULL, &p, NULL, work, r);
    *t = qh_seconds() - t0;
    *t_blas = qh_lin_timing_seconds();
    qh_lin_timing_enable(0);
    if (st != QH_OK) fprintf(stderr, "bench_quant: %s\n", qh_last_error());
    return st != QH_OK;
}

static int bench_size(size_t n)
{
    static const char *const names[] = { "gptq", "ldlq" };
    qh_matd *W = bench_make_W(n, n, 3, 0), *H = bench_make_H(n, n + n / 2, 3, 1);
    size_t bytes = 0;
    for (int k = 0; k < 2; k++) {
        const qh_method_type *m = qh_method_find(names[k]);
        void *p = qh_method_params_new(m);
        size_t b = qh_method_workspace_size(m, p, n, n);
        bytes = b > bytes ? b : bytes;
        free(p);
    }
    bytes = (bytes + 63) / 64 * 64;
    void *work = aligned_alloc(64, bytes);   /* one workspace per layer shape, as a pipeline does */
    if (!W || !H || !work) { fprintf(stderr, "bench_quant: out of memory at n = %zu\n", n); return 1; }
    double loss = 0.0, t0 = qh_seconds();
    if (qh_lin_proxy_loss(W, W, H, &loss) != QH_OK) return 1;
    double t_loss = qh_seconds() - t0;
    qh_result r;                     /* reused, like the workspace */
    qh_result_init(&r);
    for (int k = 0; k < 2; k++) {
        double t, tb;
        if (run_once(names[k], W, H, work, &r, &t, &tb)) return 1;     /* first touch */
        if (run_once(names[k], W, H, work, &r, &t, &tb)) return 1;
        printf("%-5s %5zu x %-5zu 4-bit: %7.3f s, %7.3f s in BLAS/LAPACK (%4.1f %%); "
               "of which the driver's proxy loss ~%.3f s\n",
               names[k], n, n, t, tb, 100.0 * tb / t, t_loss);
    }
    qh_result_free(&r);
    free(work);
    qh_matd_free(W);
    qh_matd_free(H);
    return 0;
}

int main(void)
{
    qh_blas_info_t info = qh_blas_info();
    printf("bench_quant: OpenBLAS core %s, %d threads\n", info.core, info.threads);
    const char *small = getenv("QH_BENCH_SMALL");
    if (bench_size(2048)) return 1;
    if (!(small && *small && *small != '0') && bench_size(4096)) return 1;
    return 0;
}
