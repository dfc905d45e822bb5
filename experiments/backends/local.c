/* local.c -- forked worker pool of `qh run` and the results folder's lock
 * (see local.h). */
#define _GNU_SOURCE                  /* sched_getaffinity, CPU_COUNT */
#include "backends/local.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "qh_blas.h"
#include "qh_clock.h"
#include "qh_error.h"
#include "qh_path.h"

int qh_local_threads_per_worker(int jobs)
{
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    char *end;
    long pinned = env && *env ? strtol(env, &end, 10) : 0;
    if (pinned >= 1 && pinned <= 1024 && !*end) return (int)pinned;
    /* The CPUs this process may run on (taskset, Slurm, cgroups), not all
     * the machine's: OpenBLAS caps its own threads the same way. */
    cpu_set_t set;
    long cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    return (int)(cores / jobs) > 0 ? (int)(cores / jobs) : 1;
}

/* ---- stopping the pool on a signal ----------------------------------------------- */

/* What the handler needs, in statics because a handler takes no argument.
 * pids[k] for k < n_started is task k's worker, 0 once it has been reaped. */
static struct {
    pid_t *volatile pids;
    volatile sig_atomic_t n_started;
    volatile sig_atomic_t caught;    /* the first SIGINT/SIGTERM, 0 while none */
    pid_t parent;
} pool;

static void signal_workers(int sig)
{
    pid_t *pids = pool.pids;
    for (sig_atomic_t k = 0; pids && k < pool.n_started; k++)
        if (pids[k] > 0)
            kill(pids[k], sig);
}

/* Async-signal-safe: records the signal and forwards it to the workers, as
 * SIGTERM the first time (they die by its default action) and SIGKILL when
 * the user insists.  Any thread may run it: OpenBLAS has threads of its own. */
static void on_signal(int sig)
{
    int saved = errno;
    if (getpid() != pool.parent) {   /* a worker that has not reset its handlers yet */
        signal(sig, SIG_DFL);
        raise(sig);
    } else {
        int again = pool.caught != 0;
        if (!again)
            pool.caught = sig;
        signal_workers(again ? SIGKILL : SIGTERM);
    }
    errno = saved;
}

typedef struct {
    struct sigaction old_int, old_term;
} saved_handlers;

static void install_handlers(saved_handlers *h)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;
    pool.parent = getpid();
    pool.caught = 0;
    sigaction(SIGINT, &sa, &h->old_int);
    sigaction(SIGTERM, &sa, &h->old_term);
}

static void restore_handlers(const saved_handlers *h)
{
    sigaction(SIGINT, &h->old_int, NULL);
    sigaction(SIGTERM, &h->old_term, NULL);
}

/* In a new worker: SIGINT as the caller had it, SIGTERM by default (the
 * pool's way of stopping it), and SIGTERM when the parent dies. */
static void worker_signals(const saved_handlers *h, pid_t parent)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGINT, &h->old_int, NULL);
    sigaction(SIGTERM, &dfl, NULL);
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)         /* the parent died before prctl */
        _exit(99);
#else
    (void)parent;
#endif
}

/* ---- the pool ------------------------------------------------------------------------ */

static void report_progress(const qh_local_opts *o, size_t i, size_t done, size_t n, const char *what,
                            double t0)
{
    if (o->quiet) return;
    double el = qh_seconds() - t0;
    fprintf(stderr, "[%zu/%zu] %s %s (%.0f s elapsed, ETA %.0f s)\n", done, n,
            o->ids && i < n ? o->ids[i] : "?", what, el,
            el / (double)done * (double)(n - done));
}

/* Bookkeeping after worker pid ended with wstatus; returns 1 if it failed. */
static int reaped(const qh_local_opts *o, void *ctx, pid_t *pids, size_t n_started, pid_t pid,
                  int wstatus, size_t done, size_t n, double t0)
{
    size_t i = 0;
    while (i < n_started && pids[i] != pid) i++;
    if (i < n_started)
        pids[i] = 0;
    if (WIFSIGNALED(wstatus) && o->killed && i < n_started)
        o->killed(ctx, i, (long)pid);
    int ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    int stopped = !ok && pool.caught && WIFSIGNALED(wstatus);
    report_progress(o, i, done, n, ok ? "done" : stopped ? "stopped" : "FAILED", t0);
    return !ok && !stopped;
}

int qh_local_run(qh_local_task_fn run, void *ctx, size_t n, const qh_local_opts *o,
                 int *interrupted)
{
    int jobs = o->jobs >= 1 ? o->jobs : 1;
    int threads = qh_local_threads_per_worker(jobs);
    pid_t *pids = calloc(n ? n : 1, sizeof *pids);
    size_t next = 0, done = 0;
    int running = 0, failed = 0;
    double t0 = qh_seconds();
    saved_handlers h;
    if (interrupted) *interrupted = 0;
    if (!pids) return (int)n;
    fflush(NULL);
    pool.n_started = 0;
    pool.pids = pids;
    install_handlers(&h);
    while (running > 0 || (!pool.caught && next < n)) {
        if (!pool.caught && running < jobs && next < n) {
            pid_t parent = getpid(), pid = fork();
            if (pid == 0) {
                worker_signals(&h, parent);
                qh_blas_set_threads(threads);
                int st = run(ctx, next);
                fflush(NULL);
                _exit(st == 0 ? 0 : (st > 0 && st < 100 ? st : 99));
            }
            if (pid < 0) { perror("qh run: fork"); failed += (int)(n - next); n = next; continue; }
            pids[next++] = pid;
            pool.n_started = (sig_atomic_t)next;
            running++;
            if (pool.caught)         /* the signal came while forking: this one too */
                kill(pid, SIGTERM);
            continue;
        }
        int wstatus;
        pid_t pid = wait(&wstatus);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0) break;
        running--;
        done++;
        failed += reaped(o, ctx, pids, next, pid, wstatus, done, n, t0);
    }
    restore_handlers(&h);
    pool.pids = NULL;
    pool.n_started = 0;
    if (interrupted) *interrupted = pool.caught;
    pool.caught = 0;
    free(pids);
    return failed;
}

/* ---- the results folder's lock ---------------------------------------------------------- */

/* The process id written in the lock file, or 0 when unreadable. */
static long lock_holder(int fd)
{
    char buf[32];
    ssize_t k = pread(fd, buf, sizeof buf - 1, 0);
    if (k <= 0) return 0;
    buf[k] = '\0';
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? pid : 0;
}

static void describe_holder(int fd, char *buf, size_t cap)
{
    long pid = lock_holder(fd);
    if (pid) snprintf(buf, cap, "pid %ld", pid);
    else snprintf(buf, cap, "pid unknown");
}

int qh_local_lock(const char *dir, int wait, int *fd)
{
    char path[4200], who[48];
    *fd = -1;
    QH_TRY(qh_path_format(path, sizeof path, "lock file", "%s/.qh-run.lock", dir));
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f < 0)
        QH_ERROR(QH_EIO, "results folder %s: cannot open the lock file %s: %s", dir, path,
                 strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        describe_holder(f, who, sizeof who);
        if (busy && !wait) {
            close(f);
            QH_ERROR(QH_EIO, "results folder %s is in use by another qh run (%s, lock %s); "
                     "wait for it to end, or pass --wait-lock to wait", dir, who, path);
        }
        if (busy)
            fprintf(stderr, "qh run: results folder %s is in use by another qh run (%s); waiting\n",
                    dir, who);
        int rc = -1;
        while (busy && (rc = flock(f, LOCK_EX)) != 0 && errno == EINTR) {}
        if (!busy || rc != 0) {
            int e = errno;
            close(f);
            QH_ERROR(QH_EIO, "results folder %s: cannot lock %s: %s", dir, path, strerror(e));
        }
    }
    /* The holder's pid, for a second runner's message.  A failed write leaves
     * the lock held all the same; that message then says "pid unknown". */
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    int wrote = ftruncate(f, 0) == 0 && pwrite(f, pid, (size_t)len, 0) == len;
    (void)wrote;
    *fd = f;
    return QH_OK;
}

void qh_local_unlock(int fd)
{
    if (fd >= 0) close(fd);          /* closing the last descriptor releases the flock */
}
