/* local.h -- the local backend of `qh run`: pending tasks run in up to N
 * forked worker processes on this machine, each with its share of the cores
 * as OpenBLAS threads.  The backend knows nothing of cells or methods: the
 * caller hands it a function that runs task i in the child.
 *
 * A child's exit status is the task's status (0 ok; 1..99 a qh status; 99
 * anything else), so a crash in one cell never takes the sweep down. */
#ifndef QH_BACKEND_LOCAL_H
#define QH_BACKEND_LOCAL_H

#include <stddef.h>

/* Runs task i (0 <= i < n) in a worker process; returns its status. */
typedef int (*qh_local_task_fn)(void *ctx, size_t i);

typedef struct {
    int jobs;                        /* worker processes at once (>= 1) */
    int quiet;                       /* 0: one progress line per finished task on stderr */
    const char *const *ids;          /* n task names for progress lines (may be NULL) */
} qh_local_opts;

/* BLAS threads per worker: OPENBLAS_NUM_THREADS when set (a job script pins
 * it, and a cell's bits depend on it), else the usable cores shared among
 * `jobs` workers. */
int qh_local_threads_per_worker(int jobs);

/* Runs the n tasks; returns how many failed (a task that could not be
 * started counts as failed). */
int qh_local_run(qh_local_task_fn run, void *ctx, size_t n, const qh_local_opts *o);

#endif
