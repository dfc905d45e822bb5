/* local.c -- forked worker pool of `qh run` (see local.h). */
#define _GNU_SOURCE                  /* sched_getaffinity, CPU_COUNT */
#include "backends/local.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qh_blas.h"
#include "qh_clock.h"

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

static void report_progress(const qh_local_opts *o, size_t i, size_t done, size_t n, int ok, double t0)
{
    if (o->quiet) return;
    double el = qh_seconds() - t0;
    fprintf(stderr, "[%zu/%zu] %s %s (%.0f s elapsed, ETA %.0f s)\n", done, n,
            o->ids && i < n ? o->ids[i] : "?", ok ? "done" : "FAILED", el,
            el / (double)done * (double)(n - done));
}

int qh_local_run(qh_local_task_fn run, void *ctx, size_t n, const qh_local_opts *o)
{
    int jobs = o->jobs >= 1 ? o->jobs : 1;
    int threads = qh_local_threads_per_worker(jobs);
    pid_t *pids = calloc(n ? n : 1, sizeof *pids);
    size_t next = 0, done = 0;
    int running = 0, failed = 0;
    double t0 = qh_seconds();
    if (!pids) return (int)n;
    fflush(NULL);
    while (done < n) {
        if (running < jobs && next < n) {
            pid_t pid = fork();
            if (pid == 0) {
                qh_blas_set_threads(threads);
                int st = run(ctx, next);
                fflush(NULL);
                _exit(st == 0 ? 0 : (st > 0 && st < 100 ? st : 99));
            }
            if (pid < 0) { perror("qh run: fork"); failed += (int)(n - next); n = next; continue; }
            pids[next++] = pid;
            running++;
            continue;
        }
        int wstatus;
        pid_t pid = wait(&wstatus);
        if (pid < 0) break;
        size_t i = 0;
        while (i < next && pids[i] != pid) i++;
        running--;
        done++;
        int ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
        failed += !ok;
        report_progress(o, i, done, n, ok, t0);
    }
    free(pids);
    return failed;
}
