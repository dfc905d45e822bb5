/* local.h -- the local backend of `qh run`: pending tasks run in up to N
 * forked worker processes on this machine, each with its share of the cores
 * as OpenBLAS threads.  The backend knows nothing of cells or methods: the
 * caller hands it a function that runs task i in the child.
 *
 * A child's exit status is the task's status (0 ok; 1..99 a qh status; 99
 * anything else), so a crash in one cell never takes the sweep down.
 *
 * SIGINT or SIGTERM of the parent stops the pool: no new worker starts, every
 * running worker gets SIGTERM (a second signal: SIGKILL), and the parent
 * waits for all of them before it returns.  A worker also gets SIGTERM when
 * its parent dies (Linux), so a killed runner leaves no orphan computing.
 *
 * One runner per results folder: qh_local_lock() takes an advisory lock
 * (flock) on DIR/.qh-run.lock that the runner holds, with its workers, for
 * the whole run. */
#ifndef QH_BACKEND_LOCAL_H
#define QH_BACKEND_LOCAL_H

#include <stddef.h>

/* Runs task i (0 <= i < n) in a worker process; returns its status. */
typedef int (*qh_local_task_fn)(void *ctx, size_t i);

/* Called in the parent when the worker (process id pid) of task i died from
 * a signal, so that the caller can remove what it left half-written. */
typedef void (*qh_local_killed_fn)(void *ctx, size_t i, long pid);

typedef struct {
    int jobs;                        /* worker processes at once (>= 1) */
    int quiet;                       /* 0: one progress line per finished task on stderr */
    const char *const *ids;          /* n task names for progress lines (may be NULL) */
    qh_local_killed_fn killed;       /* may be NULL */
} qh_local_opts;

/* BLAS threads per worker: OPENBLAS_NUM_THREADS when set (a job script pins
 * it, and a cell's bits depend on it), else the usable cores shared among
 * `jobs` workers. */
int qh_local_threads_per_worker(int jobs);

/* Runs the n tasks; returns how many failed (a task that could not be
 * started counts as failed).  *interrupted (if not NULL) receives the signal
 * (SIGINT or SIGTERM) that stopped the run early, else 0; the workers it
 * stopped and the tasks never started are not counted as failed. */
int qh_local_run(qh_local_task_fn run, void *ctx, size_t n, const qh_local_opts *o,
                 int *interrupted);

/* Locks results folder dir for this process (and the workers it forks) with
 * flock on dir/.qh-run.lock, whose content becomes this process id.  When
 * another process holds it: with wait == 0, QH_EIO at once, the message
 * naming the folder and the holder's process id; with wait != 0, a line on
 * stderr and a wait until it is free.  Returns QH_OK and the lock's
 * descriptor in *fd (release with qh_local_unlock), or QH_EIO. */
int qh_local_lock(const char *dir, int wait, int *fd);
void qh_local_unlock(int fd);        /* fd < 0: no-op */

#endif
