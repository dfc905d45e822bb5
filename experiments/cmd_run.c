/* cmd_run.c -- `qh run CONFIG`: expands a sweep configuration into cells and
 * runs the pending ones with N worker processes, resumably: a cell whose
 * results file exists with status 0 is skipped, files appear only complete
 * (temporary name, then rename), and a killed run loses at most the cells in
 * flight.  A failed cell is recorded with its error and the sweep goes on. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "pipeline.h"
#include "qh_blas.h"
#include "results.h"

typedef struct {
    const char *config, *only, *out;
    int jobs, dry_run, quiet;
    long cell;                       /* --cell INDEX, -1: all */
} run_opts;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qh run CONFIG [--jobs N] [--only GLOB] [--dry-run] [--out DIR] [--cell INDEX]\n\n"
        "Runs the sweep described by CONFIG (see configs/README.md): every cell\n"
        "model x method x bits x seed is calibrated, quantized block by block, evaluated\n"
        "and written to DIR/<cell id>.h5; the float32 baseline of each model goes to\n"
        "DIR/<model>.baseline.h5.  Complete cells are skipped, so a rerun resumes.\n\n"
        "options:\n"
        "  --jobs N       worker processes (default 1); OpenBLAS threads per worker are\n"
        "                 the available cores divided by N (at least 1)\n"
        "  --only GLOB    run only cells whose id matches GLOB (e.g. '*.w2.*')\n"
        "  --dry-run      list the cells and their state; run nothing\n"
        "  --out DIR      results folder (default results/<config name>)\n"
        "  --cell INDEX   run exactly cell INDEX of the expansion (0-based; for job arrays)\n"
        "  --quiet        no progress lines\n"
        "  --help         this text\n"
        "Exit status: 0 when every selected cell is complete, 1 when any failed, 2 on usage.\n");
}

static int parse_args(int argc, char **argv, run_opts *o)
{
    static const struct option longopts[] = {
        { "jobs", 1, 0, 'j' }, { "only", 1, 0, 'o' }, { "dry-run", 0, 0, 'n' }, { "out", 1, 0, 'O' },
        { "cell", 1, 0, 'c' }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
    };
    memset(o, 0, sizeof *o);
    o->jobs = 1;
    o->cell = -1;
    int c;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o->jobs = (int)strtol(optarg, &end, 10);
            if (*end || o->jobs < 1 || o->jobs > 256) {
                fprintf(stderr, "qh run: --jobs expects an integer in [1, 256], got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'o': o->only = optarg; break;
        case 'n': o->dry_run = 1; break;
        case 'O': o->out = optarg; break;
        case 'c':
            o->cell = strtol(optarg, &end, 10);
            if (*end || o->cell < 0) {
                fprintf(stderr, "qh run: --cell expects a non-negative integer, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "qh run: expected exactly one CONFIG file (see qh run --help)\n");
        return 2;
    }
    o->config = argv[optind];
    return 0;
}

static int mkdir_p(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            *s = '/';
        }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long len;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0
        && (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len)
        buf[len] = '\0';
    else { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

/* A task is a baseline (cell == NULL, model index) or a cell. */
typedef struct {
    const qh_cell *cell;
    size_t model;
    char path[1400];
    const char *id;
} task;

static int task_done(const task *t)
{
    int status = -1;
    return qh_results_read_status(t->path, &status) == QH_OK && status == QH_OK;
}

static int run_task(const qh_pipeline *p, const task *t)
{
    return t->cell ? qh_pipeline_run_cell(p, t->cell) : qh_pipeline_run_baseline(p, t->model);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs tasks in up to `jobs` child processes; returns the number that failed. */
static int run_parallel(const qh_pipeline *p, const task *tasks, size_t n, int jobs, int quiet)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cores / jobs) > 0 ? (int)(cores / jobs) : 1;
    pid_t *pids = calloc(n ? n : 1, sizeof *pids);
    size_t next = 0, done = 0;
    int running = 0, failed = 0;
    double t0 = now_seconds();
    if (!pids) return (int)n;
    fflush(NULL);
    while (done < n) {
        if (running < jobs && next < n) {
            pid_t pid = fork();
            if (pid == 0) {
                qh_blas_set_threads(threads);
                int st = run_task(p, &tasks[next]);
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
        if (!quiet) {
            double el = now_seconds() - t0;
            fprintf(stderr, "[%zu/%zu] %s %s (%.0f s elapsed, ETA %.0f s)\n", done, n,
                    i < next ? tasks[i].id : "?", ok ? "done" : "FAILED", el,
                    el / (double)done * (double)(n - done));
        }
    }
    free(pids);
    return failed;
}

static int run_sweep(const run_opts *o, const qh_config *cfg, const char *json)
{
    char out[1024];
    snprintf(out, sizeof out, "%s", o->out ? o->out : "");
    if (!o->out) snprintf(out, sizeof out, "results/%s", cfg->name);
    if (!o->dry_run && mkdir_p(out) != 0) {
        fprintf(stderr, "qh run: cannot create results folder %s\n", out);
        return 1;
    }
    qh_cell *cells = NULL;
    size_t n_cells = 0;
    if (qh_config_cells(cfg, &cells, &n_cells) != QH_OK) { fprintf(stderr, "qh run: %s\n", qh_last_error()); return 1; }
    if (o->cell >= (long)n_cells) {
        fprintf(stderr, "qh run: --cell %ld but the sweep has %zu cells (0..%zu)\n", o->cell, n_cells, n_cells - 1);
        free(cells);
        return 2;
    }
    qh_pipeline p = { cfg, json, out, o->quiet ? NULL : stderr, NULL };
    task *tasks = calloc(cfg->n_models + n_cells, sizeof *tasks);
    size_t n_tasks = 0, n_selected = 0, n_complete = 0;
    for (size_t m = 0; cfg->n_datasets && o->cell < 0 && m < cfg->n_models; m++) {
        task *t = &tasks[n_tasks];
        t->model = m;
        t->id = cfg->models[m].label;
        qh_pipeline_baseline_path(&p, m, t->path, sizeof t->path);
        if (!task_done(t)) n_tasks++;
    }
    for (size_t i = 0; i < n_cells; i++) {
        if (o->cell >= 0 ? (long)i != o->cell : (o->only && !qh_cell_matches(&cells[i], o->only))) continue;
        task *t = &tasks[n_tasks];
        t->cell = &cells[i];
        t->id = cells[i].id;
        qh_pipeline_cell_path(&p, &cells[i], t->path, sizeof t->path);
        n_selected++;
        int complete = task_done(t);
        n_complete += complete;
        if (o->dry_run) printf("%5zu  %-48s %s\n", i, cells[i].id, complete ? "complete" : "pending");
        if (!complete) n_tasks++;
    }
    int failed = 0;
    if (o->dry_run)
        printf("%zu cells selected, %zu complete, %zu to run (plus baselines); results in %s\n",
               n_selected, n_complete, n_selected - n_complete, out);
    else {
        if (!o->quiet)
            fprintf(stderr, "qh run: %s: %zu cells selected, %zu complete, %zu tasks to run with %d job(s) into %s\n",
                    cfg->name, n_selected, n_complete, n_tasks, o->jobs, out);
        failed = run_parallel(&p, tasks, n_tasks, o->jobs, o->quiet);
        if (!o->quiet) fprintf(stderr, "qh run: %d of %zu tasks failed; results in %s\n", failed, n_tasks, out);
    }
    free(tasks);
    free(cells);
    return failed ? 1 : 0;
}

int qh_cmd_run(int argc, char **argv)
{
    run_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    qh_config *cfg = NULL;
    char *json = read_text(o.config);
    if (!json) { fprintf(stderr, "qh run: cannot read config %s\n", o.config); return 1; }
    int st = qh_config_parse(json, o.config, &cfg);
    if (st == QH_OK && (st = qh_pipeline_validate(cfg)) != QH_OK) qh_error_prefix("config %s", o.config);
    if (st != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        free(json);
        return 1;
    }
    rc = run_sweep(&o, cfg, json);
    qh_config_free(cfg);
    free(json);
    return rc;
}
