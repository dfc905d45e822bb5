/* qh_rows.c -- row-parallel column loops (see qh_rows.h). */
#include "qh_rows.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "qh_blas.h"
#include "qh_linalg.h"

struct qh_rows_team_s {
    pthread_barrier_t bar;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;                       /* 0: wait, 1: go, −1: abandoned (a thread failed to start) */
};

static int rows_override;            /* qh_rows_set_threads; 0 = default */
static qh_rows_timing timing;        /* caller-side totals (benches) */

static double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void qh_rows_timing_reset(void) { timing = (qh_rows_timing){ 0 }; }
qh_rows_timing qh_rows_timing_get(void) { return timing; }

/* Units of QH_ROWS_ALIGN rows (the last one may be short). */
static size_t row_units(size_t m) { return (m + QH_ROWS_ALIGN - 1) / QH_ROWS_ALIGN; }

void qh_rows_set_threads(int n) { rows_override = n > 0 ? n : 0; }

int qh_rows_threads(size_t m, size_t n)
{
    long want = rows_override;
    int explicit_count = want > 0;
    if (!explicit_count) {
        const char *env = getenv("QH_ROW_THREADS");
        char *end;
        long v = env && *env ? strtol(env, &end, 10) : 0;
        if (v >= 1 && !*end) { want = v; explicit_count = 1; }
    }
    if (!explicit_count) {
        want = qh_blas_info().threads;
        if (m * n < QH_ROWS_MIN_ELEMS) want = 1;
    }
    if (want > QH_ROWS_MAX_THREADS) want = QH_ROWS_MAX_THREADS;
    if ((size_t)want > row_units(m)) want = (long)row_units(m);
    return want >= 1 ? (int)want : 1;
}

void qh_rows_dgemm(size_t m, size_t r0, size_t mr, size_t n, size_t k, double alpha,
                   const double *A, const double *B, size_t ldb, double beta, double *C,
                   size_t ldc)
{
    size_t tail = m - m % QH_ROWS_ALIGN;
    size_t cut = tail > r0 && tail < r0 + mr ? tail - r0 : mr;
    qh_lin_dgemm('N', 'N', cut, n, k, alpha, A, mr, B, ldb, beta, C, ldc);
    if (cut < mr)
        qh_lin_dgemm('N', 'N', mr - cut, n, k, alpha, A + cut, mr, B, ldb, beta, C + cut, ldc);
}

void qh_rows_sync(const qh_rows_chunk *c)
{
    if (c->nt > 1) pthread_barrier_wait(&c->team->bar);
}

typedef struct {
    qh_rows_fn fn;
    void *arg;
    qh_rows_chunk chunk;
    int status;
    double cpu_s;                    /* the thread's CPU seconds in fn */
    char msg[256];                   /* the worker's message when status is not OK */
} rows_task;

static void *rows_worker(void *p)
{
    rows_task *t = p;
    qh_rows_team *team = t->chunk.team;
    pthread_mutex_lock(&team->mu);
    while (team->state == 0) pthread_cond_wait(&team->cv, &team->mu);
    int go = team->state > 0;
    pthread_mutex_unlock(&team->mu);
    double c0 = thread_cpu_s();
    if (go) t->status = t->fn(t->arg, &t->chunk);
    t->cpu_s = thread_cpu_s() - c0;
    if (t->status != QH_OK) snprintf(t->msg, sizeof t->msg, "%s", qh_last_error());
    return NULL;
}

/* Start of chunk t of nt over m rows: the units shared out evenly, so every
 * chunk starts on a multiple of QH_ROWS_ALIGN and none is empty (nt ≤ units). */
static size_t chunk_start(size_t m, int t, int nt)
{
    size_t r = row_units(m) * (size_t)t / (size_t)nt * QH_ROWS_ALIGN;
    return r < m ? r : m;
}

static void set_state(qh_rows_team *team, int state)
{
    pthread_mutex_lock(&team->mu);
    team->state = state;
    pthread_cond_broadcast(&team->cv);
    pthread_mutex_unlock(&team->mu);
}

int qh_rows_run(size_t m, int nt, qh_rows_fn fn, void *arg)
{
    if (nt > QH_ROWS_MAX_THREADS) nt = QH_ROWS_MAX_THREADS;
    if ((size_t)nt > row_units(m)) nt = (int)row_units(m);
    if (nt <= 1) {
        qh_rows_chunk all = { 0, m, 0, 1, NULL };
        double c0 = thread_cpu_s();
        int st = fn(arg, &all);
        double c = thread_cpu_s() - c0;
        timing.cpu_s += c;
        timing.critical_s += c;
        timing.runs++;
        return st;
    }
    qh_rows_team team;
    rows_task tasks[QH_ROWS_MAX_THREADS];
    pthread_t tids[QH_ROWS_MAX_THREADS];
    if (pthread_barrier_init(&team.bar, NULL, (unsigned)nt) != 0) {
        qh_rows_chunk all = { 0, m, 0, 1, NULL };
        return fn(arg, &all);
    }
    pthread_mutex_init(&team.mu, NULL);
    pthread_cond_init(&team.cv, NULL);
    team.state = 0;
    for (int t = 0; t < nt; t++) {
        qh_rows_chunk c = { chunk_start(m, t, nt), chunk_start(m, t + 1, nt), t, nt, &team };
        tasks[t] = (rows_task){ fn, arg, c, QH_OK, 0.0, "" };
    }
    int started = 1;
    for (; started < nt; started++)
        if (pthread_create(&tids[started], NULL, rows_worker, &tasks[started]) != 0) break;
    int st = QH_OK;
    if (started < nt) {              /* abandon the team; the started threads return at once */
        set_state(&team, -1);
        for (int t = 1; t < started; t++) pthread_join(tids[t], NULL);
        qh_rows_chunk all = { 0, m, 0, 1, NULL };
        st = fn(arg, &all);
    } else {
        int blas = qh_blas_info().threads;
        qh_blas_set_threads(1);
        set_state(&team, 1);
        double c0 = thread_cpu_s();
        tasks[0].status = fn(arg, &tasks[0].chunk);
        tasks[0].cpu_s = thread_cpu_s() - c0;
        for (int t = 1; t < nt; t++) pthread_join(tids[t], NULL);
        qh_blas_set_threads(blas);
        double most = 0.0;
        for (int t = 0; t < nt; t++) {
            timing.cpu_s += tasks[t].cpu_s;
            most = tasks[t].cpu_s > most ? tasks[t].cpu_s : most;
        }
        timing.critical_s += most;
        timing.runs++;
        /* The first failure in thread order; a worker's message lives in its
         * thread's buffer and is copied into the caller's. */
        for (int t = 0; t < nt && st == QH_OK; t++) {
            st = tasks[t].status;
            if (st != QH_OK && t > 0) qh_error(st, __FILE__, __LINE__, __func__, "%s", tasks[t].msg);
        }
    }
    pthread_cond_destroy(&team.cv);
    pthread_mutex_destroy(&team.mu);
    pthread_barrier_destroy(&team.bar);
    return st;
}
