/* qh_rows.h -- row-parallel column loops of the OPTQ/LDLQ family (GPTQ and
 * its rounding hooks, LDLQ, the greedy passes).
 *
 * Given the shared factor (Cholesky of H⁻¹, LDL of H, or H itself), every row
 * of W runs the same column loop independently: rounding, error feedback and
 * the lazy-block trailing dgemm act row-wise.  qh_rows_run splits the m rows
 * into nt contiguous chunks, one per thread, and runs the same loop on each,
 * with OpenBLAS held at one thread meanwhile (one threading model: harness
 * threads outside, none of OpenBLAS's inside); the count is restored after.
 * Per-row arithmetic is that of the one-thread loop, so results do not
 * depend on the thread count (the tests compare 1, 2 and 3 threads bit for
 * bit).  What is not row-wise takes a barrier (qh_rows_sync): a fit that reads
 * every row (a rounding hook's, grid=rms per column) runs on thread 0 between
 * two syncs; stochastic rounding draws one stream in row order and so runs on
 * one thread.
 *
 * Thread count (qh_rows_threads): qh_rows_set_threads(n) when n ≥ 1 (tests,
 * benches), else QH_ROW_THREADS from the environment when set, else
 * OpenBLAS's thread count, which `qh run` sets per worker (cores / jobs, or
 * OPENBLAS_NUM_THREADS): a worker with 2 cores runs 2 row threads.  Without an
 * explicit count, layers under QH_ROWS_MIN_ELEMS weights run on one thread. */
#ifndef QH_ROWS_H
#define QH_ROWS_H

#include <stddef.h>

#include "qh_error.h"

#define QH_ROWS_MAX_THREADS 64
#define QH_ROWS_MIN_ELEMS ((size_t)1 << 16)
/* Chunks start on multiples of this many rows: OpenBLAS's dgemm kernels
 * round a row by its offset within the vector lanes (SkylakeX: rows whose
 * offsets differ by a non-multiple of 8 get other last bits), so aligned
 * chunks keep every row's arithmetic that of the one-thread call.  At most
 * ⌈m / QH_ROWS_ALIGN⌉ threads. */
#define QH_ROWS_ALIGN 16

typedef struct qh_rows_team_s qh_rows_team;

/* One thread's share: rows r0..r1−1 of m (r0 a multiple of QH_ROWS_ALIGN;
 * never empty), thread tid of nt. */
typedef struct {
    size_t r0, r1;
    int tid, nt;
    qh_rows_team *team;
} qh_rows_chunk;

/* Runs the loop on the chunk; returns a status.  Every thread must reach the
 * same sequence of qh_rows_sync calls, so a worker that fails records it and
 * returns at the end rather than leaving early. */
typedef int (*qh_rows_fn)(void *arg, const qh_rows_chunk *c);

/* Threads for an m x n layer's row loop (see above); ≥ 1 and ≤ ⌈m / QH_ROWS_ALIGN⌉. */
int qh_rows_threads(size_t m, size_t n);
/* Explicit row-thread count for this process (n ≤ 0: back to the default). */
void qh_rows_set_threads(int n);

/* Runs fn on nt contiguous row chunks of m rows (thread 0 in the caller),
 * OpenBLAS at one thread while nt > 1.  Returns the first non-OK status in
 * thread order.  When a thread cannot be started, runs fn on one chunk of all
 * rows instead (the results are the same). */
int qh_rows_run(size_t m, int nt, qh_rows_fn fn, void *arg) QH_MUST_CHECK;

/* C[r0:r0+mr, :n] = alpha·A·B + beta·C for rows r0..r0+mr−1 of an m-row
 * matrix (A: mr x k with leading dimension mr; C: the view at row r0), in
 * calls whose row blocks do not depend on the chunking: the matrix's short
 * last unit (its last m mod QH_ROWS_ALIGN rows) goes in a call of its own,
 * so every other call has a multiple of QH_ROWS_ALIGN rows and OpenBLAS
 * gives each row the same bits whatever chunk it is in (its M-remainder code
 * rounds otherwise).  For m a multiple of QH_ROWS_ALIGN, one call, as
 * before threads. */
void qh_rows_dgemm(size_t m, size_t r0, size_t mr, size_t n, size_t k, double alpha,
                   const double *A, const double *B, size_t ldb, double beta, double *C,
                   size_t ldc);

/* Barrier across the chunk's team (nothing when nt = 1). */
void qh_rows_sync(const qh_rows_chunk *c);

/* CPU seconds of the row loops since the last reset, summed over the calls
 * of qh_rows_run made from any thread (benches only: not synchronised):
 * cpu_s over every chunk, critical_s over each call's busiest chunk (the
 * wall time the loops would take on idle cores, barrier waits aside).  On a
 * loaded machine they tell how the work splits when wall times cannot. */
typedef struct {
    double cpu_s, critical_s;
    size_t runs;
} qh_rows_timing;
void qh_rows_timing_reset(void);
qh_rows_timing qh_rows_timing_get(void);

#endif
