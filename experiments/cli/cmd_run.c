/* cmd_run.c -- `qh run CONFIG`: expands a sweep configuration into cells and
 * runs the pending ones with N worker processes, resumably: a cell whose
 * results file exists with status 0 is skipped, files appear only complete
 * (temporary name, then rename), and a killed run loses at most the cells in
 * flight.  A failed cell is recorded with its error and the sweep goes on.
 * With --backend slurm the pending cells become one Slurm job array plus an
 * afterany merge job instead (experiments/backends/slurm.h); locally, the worker pool of
 * experiments/backends/local.h. */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/local.h"
#include "backends/slurm.h"
#include "cli/commands.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "qh_path.h"
#include "results/writer.h"

#define MAX_SBATCH_ARGS 64

typedef struct {
    const char *config, *only, *out;
    const char *save_model;          /* --save-model DIR, NULL: don't */
    int jobs, dry_run, quiet;
    long cell;                       /* --cell INDEX, -1: all */
    long baseline;                   /* --baseline MODEL, -1: as the selection implies */
    int slurm;                       /* --backend slurm */
    const char *partition, *time, *mem;
    int cpus_per_task, array_max;
    const char *sbatch_args[MAX_SBATCH_ARGS];
    size_t n_sbatch_args;
} run_opts;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qh run CONFIG [--jobs N] [--only GLOB] [--dry-run] [--out DIR] [--cell INDEX]\n"
        "              [--backend slurm [--partition P] [--time T] [--cpus-per-task C] [--mem M]\n"
        "               [--array-max K] [--sbatch-arg ARG]...]\n\n"
        "Runs the sweep described by CONFIG (see configs/README.md): every cell\n"
        "model x method x bits x seed is calibrated, quantized block by block, evaluated\n"
        "and written to DIR/<cell id>.h5; the float32 baseline of each model goes to\n"
        "DIR/<model>.baseline.h5.  Complete cells are skipped, so a rerun resumes.\n\n"
        "options:\n"
        "  --jobs N       worker processes (default 1); OpenBLAS threads per worker are\n"
        "                 the available cores divided by N (at least 1), or\n"
        "                 OPENBLAS_NUM_THREADS when that is set\n"
        "  --only GLOB    run only cells whose id matches GLOB (e.g. '*.w2.*')\n"
        "  --dry-run      list the cells and their state; run nothing\n"
        "  --out DIR      results folder (default results/<config name>)\n"
        "  --cell INDEX   run exactly cell INDEX of the expansion (0-based; for job arrays)\n"
        "  --baseline M   run exactly the float32 baseline of model M (0-based; for job arrays)\n"
        "  --backend B    local (default): worker processes here; slurm: submit the pending\n"
        "                 cells as one job array (scripts in DIR/slurm/<n>/, per-cell logs in\n"
        "                 DIR/logs/) and a merge job after it (DIR/merged.h5, DIR/status.txt);\n"
        "                 with --dry-run, print the scripts instead (docs/cluster.md)\n"
        "  --partition P, --time T, --mem M   sbatch values (default: the site's)\n"
        "  --cpus-per-task C   CPUs and OpenBLAS threads of each array task (default 1)\n"
        "  --array-max K  at most K array tasks at once (default: no limit)\n"
        "  --sbatch-arg ARG    an extra #SBATCH line, e.g. --sbatch-arg=--account=proj (repeatable)\n"
        "  --save-model DIR  also write each quantized model as a Hugging Face folder\n"
        "                 DIR/<cell id>/ (float32 safetensors + config and tokenizer)\n"
        "  --quiet        no progress lines\n"
        "  --help         this text\n"
        "Exit status: 0 when every selected cell is complete, 1 when any failed, 2 on usage.\n");
}

static int parse_args(int argc, char **argv, run_opts *o)
{
    static const struct option longopts[] = {
        { "jobs", 1, 0, 'j' }, { "only", 1, 0, 'o' }, { "dry-run", 0, 0, 'n' }, { "out", 1, 0, 'O' },
        { "cell", 1, 0, 'c' }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' },
        { "baseline", 1, 0, 'B' }, { "backend", 1, 0, 'b' }, { "partition", 1, 0, 'P' },
        { "time", 1, 0, 'T' }, { "mem", 1, 0, 'M' }, { "cpus-per-task", 1, 0, 'C' },
        { "array-max", 1, 0, 'A' }, { "sbatch-arg", 1, 0, 'S' }, { "save-model", 1, 0, 'D' },
        { 0, 0, 0, 0 },
    };
    memset(o, 0, sizeof *o);
    o->jobs = 1;
    o->cell = -1;
    o->baseline = -1;
    o->cpus_per_task = 1;
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
        case 'D': o->save_model = optarg; break;
        case 'c':
            o->cell = strtol(optarg, &end, 10);
            if (*end || o->cell < 0) {
                fprintf(stderr, "qh run: --cell expects a non-negative integer, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'B':
            o->baseline = strtol(optarg, &end, 10);
            if (*end || o->baseline < 0) {
                fprintf(stderr, "qh run: --baseline expects a non-negative integer, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'b':
            if (strcmp(optarg, "local") && strcmp(optarg, "slurm")) {
                fprintf(stderr, "qh run: --backend expects local or slurm, got '%s'\n", optarg);
                return 2;
            }
            o->slurm = !strcmp(optarg, "slurm");
            break;
        case 'P': o->partition = optarg; break;
        case 'T': o->time = optarg; break;
        case 'M': o->mem = optarg; break;
        case 'C':
        case 'A': {
            long v = strtol(optarg, &end, 10);
            if (*end || v < (c == 'C') || v > 100000) {
                fprintf(stderr, "qh run: --%s expects an integer >= %d, got '%s'\n",
                        c == 'C' ? "cpus-per-task" : "array-max", c == 'C', optarg);
                return 2;
            }
            *(c == 'C' ? &o->cpus_per_task : &o->array_max) = (int)v;
            break;
        }
        case 'S':
            if (o->n_sbatch_args == MAX_SBATCH_ARGS) {
                fprintf(stderr, "qh run: more than %d --sbatch-arg options\n", MAX_SBATCH_ARGS);
                return 2;
            }
            o->sbatch_args[o->n_sbatch_args++] = optarg;
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
    if (o->slurm && (o->cell >= 0 || o->baseline >= 0)) {
        fprintf(stderr, "qh run: --cell and --baseline run one task here; they do not go with --backend slurm\n");
        return 2;
    }
    if (o->cell >= 0 && o->baseline >= 0) {
        fprintf(stderr, "qh run: give --cell or --baseline, not both\n");
        return 2;
    }
    return 0;
}

static int mkdir_p(const char *path)
{
    char buf[1024];
    if (qh_path_format(buf, sizeof buf, "folder", "%s", path) != QH_OK) return -1;
    for (char *s = buf + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            *s = '/';
        }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
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

/* The local backend's task function: ctx is a run_ctx. */
typedef struct {
    const qh_pipeline *p;
    const task *tasks;
} run_ctx;

static int run_task(void *ctx, size_t i)
{
    const run_ctx *r = ctx;
    const task *t = &r->tasks[i];
    return t->cell ? qh_pipeline_run_cell(r->p, t->cell) : qh_pipeline_run_baseline(r->p, t->model);
}

static int run_local(const qh_pipeline *p, const task *tasks, size_t n, int jobs, int quiet)
{
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    if (!ids) return (int)n;
    for (size_t i = 0; i < n; i++) ids[i] = tasks[i].id;
    run_ctx ctx = { p, tasks };
    qh_local_opts lo = { jobs, quiet, ids };
    int failed = qh_local_run(run_task, &ctx, n, &lo);
    free(ids);
    return failed;
}

/* An absolute form of path: realpath when it exists, else joined to the
 * working directory (a results folder that --dry-run does not create). */
static int absolute_path(const char *path, char *buf, size_t len)
{
    char resolved[PATH_MAX], cwd[PATH_MAX];
    if (realpath(path, resolved)) return qh_path_format(buf, len, "results folder", "%s", resolved);
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd))
        return qh_path_format(buf, len, "results folder", "%s", path);
    return qh_path_format(buf, len, "results folder", "%s/%s", cwd, path);
}

/* Prints one generated file under a header line (for --dry-run). */
static void print_file(const char *path, const char *text)
{
    printf("\n# ---- %s\n%s", path, text);
}

/* Writes the index map and the array script of submission j->submission,
 * submits the array and then the merge job that depends on it.  Returns the
 * exit status (0 submitted, 1 failed). */
static int submit_jobs(const qh_slurm_job *j, const char *map, const char *array_script,
                       const char *json, size_t n_tasks, int quiet)
{
    char dir[4096], path[4200], aid[64], mid[64];
    char *merge = NULL;
    int rc = 1;
    if (qh_path_format(path, sizeof path, "log folder", "%s/logs", j->out) != QH_OK
        || qh_slurm_dir(j, dir, sizeof dir) != QH_OK || mkdir_p(path) != 0 || mkdir_p(dir) != 0) {
        fprintf(stderr, "qh run: cannot create the submission folder and the logs under %s\n", j->out);
        return 1;
    }
    /* config.json is for `qh status DIR` */
    int st = qh_path_format(path, sizeof path, "config copy", "%s/slurm/config.json", j->out);
    if (st == QH_OK) st = qh_slurm_write_text(path, json, 0);
    if (st == QH_OK) st = qh_path_format(path, sizeof path, "task map", "%s/tasks.map", dir);
    if (st == QH_OK) st = qh_slurm_write_text(path, map, 0);
    if (st == QH_OK) st = qh_path_format(path, sizeof path, "array script", "%s/array.sbatch", dir);
    if (st == QH_OK) st = qh_slurm_write_text(path, array_script, 1);
    if (st == QH_OK) st = qh_slurm_sbatch(path, aid, sizeof aid);
    if (st != QH_OK) goto cleanup;
    if ((st = qh_path_format(path, sizeof path, "merge script", "%s/merge.sbatch", dir)) != QH_OK
        || (st = qh_slurm_merge_script(j, aid, &merge)) != QH_OK
        || (st = qh_slurm_write_text(path, merge, 1)) != QH_OK
        || (st = qh_slurm_sbatch(path, mid, sizeof mid)) != QH_OK) {
        fprintf(stderr, "qh run: array job %s was submitted, but not its merge job\n", aid);
        goto cleanup;
    }
    char ids[160];
    snprintf(ids, sizeof ids, "array %s\nmerge %s\n", aid, mid);
    if ((st = qh_path_format(path, sizeof path, "job list", "%s/jobs", dir)) != QH_OK
        || (st = qh_slurm_write_text(path, ids, 0)) != QH_OK) goto cleanup;
    printf("submitted array job %s (%zu tasks) and merge job %s (afterany); scripts in %s\n",
           aid, n_tasks, mid, dir);
    if (!quiet)
        fprintf(stderr, "qh run: logs in %s/logs/<cell id>.log; check with: qh status %s\n", j->out, j->out);
    rc = 0;
cleanup:
    if (rc) fprintf(stderr, "qh run: %s\n", qh_last_error());
    free(merge);
    return rc;
}

/* --backend slurm: the pending tasks as one job array plus a merge job, or
 * with --dry-run the scripts printed.  Returns the exit status. */
static int submit_slurm(const run_opts *o, const qh_config *cfg, const char *json, const char *out,
                        const task *tasks, size_t n_tasks, const qh_cell *cells)
{
    if (n_tasks == 0) {
        printf("nothing to submit: every selected cell of %s is complete in %s\n", cfg->name, out);
        return 0;
    }
    char qh[PATH_MAX], config[PATH_MAX], out_abs[PATH_MAX], workdir[PATH_MAX];
    if (!realpath("/proc/self/exe", qh) || !realpath(o->config, config) || !getcwd(workdir, sizeof workdir)) {
        fprintf(stderr, "qh run: cannot resolve the absolute paths of qh, %s or the working folder\n", o->config);
        return 1;
    }
    if (absolute_path(out, out_abs, sizeof out_abs) != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        return 1;
    }
    qh_slurm_job j = {
        .qh = qh, .config = config, .out = out_abs, .workdir = workdir, .name = cfg->name,
        .partition = o->partition, .time = o->time, .mem = o->mem,
        .cpus_per_task = o->cpus_per_task, .array_max = o->array_max,
        .sbatch_args = o->sbatch_args, .n_sbatch_args = o->n_sbatch_args,
    };
    qh_slurm_task *st = calloc(n_tasks, sizeof *st);
    char *map = NULL, *array = NULL, *merge = NULL;
    int rc = 1;
    if (!st) { fprintf(stderr, "qh run: out of memory\n"); return 1; }
    for (size_t k = 0; k < n_tasks; k++)
        st[k] = (qh_slurm_task){ !tasks[k].cell, tasks[k].cell ? (size_t)(tasks[k].cell - cells) : tasks[k].model,
                                 tasks[k].cell ? tasks[k].id : NULL };
    char baseline_ids[64][128];      /* "<model>.baseline" ids; baselines are few */
    for (size_t k = 0, b = 0; k < n_tasks; k++)
        if (!tasks[k].cell) {
            if (b == 64) { fprintf(stderr, "qh run: more than 64 models\n"); goto cleanup; }
            if (qh_path_format(baseline_ids[b], sizeof baseline_ids[b], "baseline id", "%s.baseline",
                               tasks[k].id) != QH_OK) {
                fprintf(stderr, "qh run: %s\n", qh_last_error());
                goto cleanup;
            }
            st[k].id = baseline_ids[b++];
        }
    if (qh_slurm_next_submission(out_abs, &j.submission) != QH_OK
        || qh_slurm_index_map(st, n_tasks, &map) != QH_OK
        || qh_slurm_array_script(&j, n_tasks, &array) != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        goto cleanup;
    }
    if (o->dry_run) {
        char dir[4096];
        if (qh_slurm_dir(&j, dir, sizeof dir) != QH_OK || qh_slurm_merge_script(&j, NULL, &merge) != QH_OK) {
            fprintf(stderr, "qh run: %s\n", qh_last_error());
            goto cleanup;
        }
        printf("dry run: would submit %zu array tasks and a merge job (submission %d)\n", n_tasks, j.submission);
        char path[4200];
        static const char *const names[3] = { "tasks.map", "array.sbatch", "merge.sbatch" };
        const char *texts[3] = { map, array, merge };
        for (int k = 0; k < 3; k++) {
            if (qh_path_format(path, sizeof path, "submission file", "%s/%s", dir, names[k]) != QH_OK) {
                fprintf(stderr, "qh run: %s\n", qh_last_error());
                goto cleanup;
            }
            print_file(path, texts[k]);
        }
        rc = 0;
    } else {
        rc = submit_jobs(&j, map, array, json, n_tasks, o->quiet);
    }
cleanup:
    free(st);
    free(map);
    free(array);
    free(merge);
    return rc;
}

static int run_sweep(const run_opts *o, const qh_config *cfg, const char *json)
{
    char out[1024];
    int fits = o->out ? qh_path_format(out, sizeof out, "results folder", "%s", o->out)
                      : qh_path_format(out, sizeof out, "results folder", "results/%s", cfg->name);
    if (fits != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        return 1;
    }
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
    if (o->baseline >= 0 && (o->baseline >= (long)cfg->n_models || !cfg->n_datasets)) {
        fprintf(stderr, "qh run: --baseline %ld but the sweep has %zu models and %zu datasets\n",
                o->baseline, cfg->n_models, cfg->n_datasets);
        free(cells);
        return 2;
    }
    if (o->save_model && !o->dry_run && mkdir_p(o->save_model) != 0) {
        fprintf(stderr, "qh run: cannot create --save-model folder %s\n", o->save_model);
        free(cells);
        return 1;
    }
    qh_pipeline p = { cfg, json, out, o->quiet ? NULL : stderr, o->save_model };
    task *tasks = calloc(cfg->n_models + n_cells, sizeof *tasks);
    if (!tasks) {
        fprintf(stderr, "qh run: out of memory\n");
        free(cells);
        return 1;
    }
    size_t n_tasks = 0, n_selected = 0, n_complete = 0;
    for (size_t m = 0; cfg->n_datasets && o->cell < 0 && m < cfg->n_models; m++) {
        if (o->baseline >= 0 && (long)m != o->baseline) continue;
        task *t = &tasks[n_tasks];
        t->model = m;
        t->id = cfg->models[m].label;
        if (qh_pipeline_baseline_path(&p, m, t->path, sizeof t->path) != QH_OK) goto bad_path;
        if (!task_done(t)) n_tasks++;
    }
    for (size_t i = 0; i < n_cells; i++) {
        if (o->baseline >= 0) break;
        if (o->cell >= 0 ? (long)i != o->cell : (o->only && !qh_cell_matches(&cells[i], o->only))) continue;
        task *t = &tasks[n_tasks];
        t->cell = &cells[i];
        t->id = cells[i].id;
        if (qh_pipeline_cell_path(&p, &cells[i], t->path, sizeof t->path) != QH_OK) goto bad_path;
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
    if (o->slurm)
        failed = submit_slurm(o, cfg, json, out, tasks, n_tasks, cells);
    else if (!o->dry_run) {
        if (!o->quiet)
            fprintf(stderr, "qh run: %s: %zu cells selected, %zu complete, %zu tasks to run with %d job(s) into %s\n",
                    cfg->name, n_selected, n_complete, n_tasks, o->jobs, out);
        failed = run_local(&p, tasks, n_tasks, o->jobs, o->quiet);
        if (!o->quiet) fprintf(stderr, "qh run: %d of %zu tasks failed; results in %s\n", failed, n_tasks, out);
    }
    free(tasks);
    free(cells);
    return failed ? 1 : 0;
bad_path:
    fprintf(stderr, "qh run: %s\n", qh_last_error());
    free(tasks);
    free(cells);
    return 1;
}

int qh_cmd_run(int argc, char **argv)
{
    run_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    qh_config *cfg = NULL;
    char *json = qh_read_text_file(o.config);
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
