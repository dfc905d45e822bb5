/* bench_threads.c -- `make bench`: how GPTQ, LDLQ, LDLQ-RG and Greedy (4 bits,
 * default parameters, through the driver qh_quantize) scale from 1 to 2
 * threads on 4096 x 4096 and 11008 x 4096 (m x n) layers, random W and
 * H = X Xᵀ/T from correlated random X (tests/bench_util.h).  Three settings:
 *   1 thread      OpenBLAS 1 thread, rows on 1 thread;
 *   BLAS 2        OpenBLAS 2 threads, rows on 1 thread (the column loop
 *                 serial, the lazy trailing dgemm threaded by OpenBLAS: the
 *                 only threading before qh_rows);
 *   rows 2        the default of a 2-core worker: the factorisation and the
 *                 driver's loss at OpenBLAS 2 threads, the column loop on 2
 *                 row chunks with OpenBLAS at 1 thread inside (qh_rows.h).
 * Prints wall seconds, the speed-up over 1 thread, and whether the codes
 * equal the 1-thread codes bit for bit (they should).  On a loaded machine
 * wall times are upper bounds and their ratios say little, so it also prints
 * CPU seconds: the process's, the row loops' (qh_rows_timing) and their
 * busiest chunks', and from them an estimate of the 2-thread speed-up on
 * idle cores (1-thread CPU over the same with the loops' CPU replaced by the
 * busiest 2-thread chunks'; the factorisation counted at 1 thread, so a
 * lower bound up to memory-bandwidth sharing).  Each layer's workspace and result
 * are allocated once and touched by one untimed run first.
 * QH_BENCH_SMALL=1: a 2048 x 2048 layer only; QH_BENCH_LARGE=1: 11008 x 4096
 * only; QH_BENCH_METHODS=gptq,ldlq picks methods. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_blas.h"
#include "qh_method.h"
#include "qh_rows.h"
#include "bench_util.h"

typedef struct {
    double wall, cpu;                /* seconds: wall, process CPU */
    qh_rows_timing rows;             /* the row loops' CPU (all chunks, busiest chunks) */
} timing;

static int run_once(const qh_method_type *mt, const qh_matd *W, const qh_matd *H, void *work,
                    qh_result *r, int blas, int rows, timing *t)
{
    qh_problem p = { W, H, 4, 0, 0, "bench", NULL, NULL };
    qh_blas_set_threads(blas);
    qh_rows_set_threads(rows);
    qh_rows_timing_reset();
    double t0 = qh_seconds(), c0 = cpu_s();
    int st = qh_quantize(mt, NULL, &p, NULL, work, r);
    t->wall = qh_seconds() - t0;
    t->cpu = cpu_s() - c0;
    t->rows = qh_rows_timing_get();
    qh_rows_set_threads(0);
    if (st != QH_OK) fprintf(stderr, "bench_threads: %s: %s\n", mt->name, qh_last_error());
    return st != QH_OK;
}

static int wanted(const char *name)
{
    const char *list = getenv("QH_BENCH_METHODS");
    if (!list || !*list) return 1;
    size_t len = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += len)
        if ((p == list || p[-1] == ',') && (p[len] == ',' || p[len] == '\0')) return 1;
    return 0;
}

static int bench_shape(size_t m, size_t n, int max_threads)
{
    static const char *const names[] = { "gptq", "ldlq", "ldlq_rg", "greedy" };
    qh_matd *W = bench_make_W(m, n, 3, 0), *H = bench_make_H(n, n + n / 2, 3, 1);
    size_t bytes = 0;
    for (int k = 0; k < 4; k++) {
        const qh_method_type *mt = qh_method_find(names[k]);
        void *p = qh_method_params_new(mt);
        size_t b = qh_method_workspace_size(mt, p, m, n);
        bytes = b > bytes ? b : bytes;
        free(p);
    }
    bytes = (bytes + 63) / 64 * 64;
    void *work = aligned_alloc(64, bytes);
    qh_matd *ref = qh_matd_alloc(m, n);
    if (!W || !H || !work || !ref) {
        fprintf(stderr, "bench_threads: out of memory at %zu x %zu\n", m, n);
        return 1;
    }
    qh_result r;
    qh_result_init(&r);
    int first = 1;
    for (int k = 0; k < 4; k++) {
        if (!wanted(names[k])) continue;
        const qh_method_type *mt = qh_method_find(names[k]);
        timing t1, tb, tr;
        if (first && run_once(mt, W, H, work, &r, 1, 1, &t1)) return 1;   /* first touch */
        first = 0;
        if (run_once(mt, W, H, work, &r, 1, 1, &t1)) return 1;
        memcpy(ref->data, r.What->data, m * n * sizeof(double));
        if (run_once(mt, W, H, work, &r, 2, 1, &tb)) return 1;
        int same_b = !memcmp(ref->data, r.What->data, m * n * sizeof(double));
        if (run_once(mt, W, H, work, &r, 2, 2, &tr)) return 1;
        int same_r = !memcmp(ref->data, r.What->data, m * n * sizeof(double));
        /* The busiest chunk's CPU in place of the loops' CPU, the rest of the
         * 1-thread run serial: the rows-2 wall time on 2 idle cores, less
         * the factorisation's own BLAS speed-up (a conservative estimate). */
        double est = t1.cpu - t1.rows.cpu_s + tr.rows.critical_s;
        printf("%-7s %5zu x %-5zu  1 thread %7.3f s   BLAS 2 %7.3f s (x%.2f%s)   rows 2 %7.3f s "
               "(x%.2f%s)\n", names[k], m, n, t1.wall, tb.wall, t1.wall / tb.wall,
               same_b ? "" : ", codes differ", tr.wall, t1.wall / tr.wall,
               same_r ? "" : ", codes differ");
        printf("        CPU s: 1 thread %.3f (row loops %.3f); rows 2 %.3f (row loops %.3f, busiest "
               "chunks %.3f): idle-core estimate x%.2f%s\n", t1.cpu, t1.rows.cpu_s, tr.cpu,
               tr.rows.cpu_s, tr.rows.critical_s, t1.cpu / est,
               max_threads < 2 ? "  [OpenBLAS caps threads at 1]" : "");
        fflush(stdout);
    }
    qh_result_free(&r);
    qh_matd_free(ref);
    free(work);
    qh_matd_free(W);
    qh_matd_free(H);
    return 0;
}

int main(void)
{
    qh_blas_info_t info = qh_blas_info();
    int max_threads = info.threads;
    qh_blas_set_threads(2);
    int two = qh_blas_info().threads;
    printf("bench_threads: OpenBLAS core %s, %d threads by default; 4 bits, default parameters, "
           "wall seconds (upper bounds on a loaded machine)\n", info.core, max_threads);
    const char *small = getenv("QH_BENCH_SMALL"), *large = getenv("QH_BENCH_LARGE");
    int st = 0;
    if (small && *small && *small != '0') st = bench_shape(2048, 2048, two);
    else if (large && *large && *large != '0') st = bench_shape(11008, 4096, two);
    else st = bench_shape(4096, 4096, two) || bench_shape(11008, 4096, two);
    qh_blas_set_threads(max_threads);
    return st;
}
