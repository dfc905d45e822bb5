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
#include "pipeline/float_cache.h"
#include "pipeline/memory.h"
#include "pipeline/timing.h"
#include "pipeline/pipeline.h"
#include "pipeline/protocol.h"
#include "pipeline/sweep.h"
#include "qh_blas.h"
#include "qh_path.h"
#include "results/reader.h"
#include "results/writer.h"

#define MAX_SBATCH_ARGS 64
#define MAX_ONLY 64

typedef struct {
    const char *config, *out;
    const char *only[MAX_ONLY];      /* --only GLOB, repeatable: a cell matching any runs */
    size_t n_only;
    const char *save_model;          /* --save-model DIR, NULL: don't */
    const char *scratch;             /* --scratch DIR: spill the weights there, NULL: don't */
    int jobs, dry_run, quiet;
    int rerun_stale;                 /* --rerun-stale: recompute cells whose protocol changed */
    int update_snapshot;             /* --update-snapshot: replace OUT/sweep.json */
    long cell;                       /* --cell INDEX, -1: all */
    long baseline;                   /* --baseline MODEL, -1: as the selection implies */
    int slurm;                       /* --backend slurm */
    int wait_lock;                   /* --wait-lock: wait for another runner of DIR */
    const char *partition, *time, *mem;
    int cpus_per_task, array_max;
    const char *sbatch_args[MAX_SBATCH_ARGS];
    size_t n_sbatch_args;
} run_opts;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qh run CONFIG [--jobs N] [--only GLOB]... [--dry-run] [--out DIR] [--cell INDEX]\n"
        "              [--rerun-stale] [--update-snapshot] [--scratch DIR]\n"
        "              [--backend slurm [--partition P] [--time T] [--cpus-per-task C] [--mem M]\n"
        "               [--array-max K] [--sbatch-arg ARG]...]\n\n"
        "Runs the sweep described by CONFIG (see configs/README.md): every cell\n"
        "model x method x bits x seed is calibrated, quantized block by block, evaluated\n"
        "and written to DIR/<cell id>.h5; the float32 baseline of each model goes to\n"
        "DIR/<model>.baseline.h5.  Complete cells are skipped, so a rerun resumes.\n"
        "Every file holds its protocol record (/run/protocol: file hashes, calibration,\n"
        "evaluation, method and every parameter, code version, BLAS); a complete cell\n"
        "whose record differs from what CONFIG gives is stale: it is listed with the\n"
        "keys that differ, and recomputed only with --rerun-stale.  The first run\n"
        "copies CONFIG to DIR/sweep.json; a later run with a different CONFIG is\n"
        "refused unless --update-snapshot.\n\n"
        "options:\n"
        "  --jobs N       worker processes (default 1); OpenBLAS threads per worker are\n"
        "                 the available cores divided by N (at least 1), or\n"
        "                 OPENBLAS_NUM_THREADS when that is set\n"
        "  --only GLOB    run only cells whose id matches GLOB (e.g. '*.w2.*'); repeat it\n"
        "                 to add patterns (a cell matching any of them runs)\n"
        "  --dry-run      list the cells and their state with each cell's estimated peak\n"
        "                 memory and wall time, the largest and the total (per job); run\n"
        "                 nothing.  The time comes from the model's shapes and a gemm probe\n"
        "                 of about 0.2 s per model here, at the workers' BLAS threads\n"
        "                 (--cpus-per-task with slurm); >= marks a lower bound (docs/cluster.md)\n"
        "  --rerun-stale  also recompute stale cells (complete, but their protocol record\n"
        "                 differs from this configuration's, or they have none)\n"
        "  --update-snapshot  replace DIR/sweep.json by CONFIG when they differ (the\n"
        "                 cells whose protocol changes are then listed as stale)\n"
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
        "  --scratch DIR  models larger than memory: keep the float32 weights in an\n"
        "                 unnamed scratch file in DIR (disk, not tmpfs; room for 4 bytes per\n"
        "                 parameter), resident one block at a time; results are unchanged\n"
        "                 and --dry-run's peak counts one block (docs/cluster.md)\n"
        "  --save-model DIR  also write each quantized model as a Hugging Face folder\n"
        "                 DIR/<cell id>/ (float32 safetensors + config and tokenizer)\n"
        "  --wait-lock    when another qh run holds DIR (its lock DIR/.qh-run.lock), wait\n"
        "                 for it to end instead of refusing at once\n"
        "  --quiet        no progress lines\n"
        "  --help         this text\n"
        "One local runner per results folder: a second one refuses (or waits, with\n"
        "--wait-lock).  Ctrl-C (SIGINT) or SIGTERM stops the workers too, keeps every\n"
        "complete cell and removes the half-written ones; rerun to resume.\n"
        "Exit status: 0 when every selected cell is complete, 1 when any failed or DIR\n"
        "is in use, 2 on usage, 130 on SIGINT, 143 on SIGTERM.\n");
}

static int parse_args(int argc, char **argv, run_opts *o)
{
    static const struct option longopts[] = {
        { "jobs", 1, 0, 'j' }, { "only", 1, 0, 'o' }, { "dry-run", 0, 0, 'n' }, { "out", 1, 0, 'O' },
        { "cell", 1, 0, 'c' }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' },
        { "baseline", 1, 0, 'B' }, { "backend", 1, 0, 'b' }, { "partition", 1, 0, 'P' },
        { "time", 1, 0, 'T' }, { "mem", 1, 0, 'M' }, { "cpus-per-task", 1, 0, 'C' },
        { "array-max", 1, 0, 'A' }, { "sbatch-arg", 1, 0, 'S' }, { "save-model", 1, 0, 'D' },
        { "scratch", 1, 0, 'W' },
        { "wait-lock", 0, 0, 'L' },
        { "rerun-stale", 0, 0, 'R' }, { "update-snapshot", 0, 0, 'U' },
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
        case 'o':
            if (o->n_only == MAX_ONLY) {
                fprintf(stderr, "qh run: more than %d --only patterns\n", MAX_ONLY);
                return 2;
            }
            o->only[o->n_only++] = optarg;
            break;
        case 'n': o->dry_run = 1; break;
        case 'O': o->out = optarg; break;
        case 'D': o->save_model = optarg; break;
        case 'W': o->scratch = optarg; break;
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
        case 'L': o->wait_lock = 1; break;
        case 'R': o->rerun_stale = 1; break;
        case 'U': o->update_snapshot = 1; break;
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

/* A task is a baseline (cell == NULL, model index) or a cell. */
typedef struct {
    const qh_cell *cell;
    size_t model;
    char path[1400];
    const char *id;
} task;

/* 1 when no --only was given or the cell matches one of the patterns. */
static int selected(const run_opts *o, const qh_cell *cell)
{
    for (size_t k = 0; k < o->n_only; k++)
        if (qh_cell_matches(cell, o->only[k])) return 1;
    return o->n_only == 0;
}

static int task_done(const task *t)
{
    int status = -1;
    return qh_results_read_status(t->path, &status) == QH_OK && status == QH_OK;
}

/* ---- stale cells: the stored protocol record against the configuration's ---- */

enum task_state { TASK_PENDING, TASK_COMPLETE, TASK_STALE };

/* A task runs when pending, or stale under --rerun-stale. */
static int task_runs(enum task_state ts, const run_opts *o)
{
    return ts == TASK_PENDING || (ts == TASK_STALE && o->rerun_stale);
}

#define STALE_SHOWN 5                /* stale cells listed with their keys; the rest counted */
#define QH_STR_(x) #x
#define QH_STR(x) QH_STR_(x)

typedef struct {
    const qh_config *cfg;
    int threads;                     /* BLAS threads the tasks would run with */
    const char *const *skip;         /* key prefixes left out of the comparison */
    size_t n_stale;
} stale_check;

/* Why a complete task is stale into why (cap bytes); "" when it is not. */
static void stale_reason(const stale_check *s, const task *t, char *why, size_t cap)
{
    char *want = NULL;
    if (qh_protocol_record(s->cfg, t->model, t->cell, s->threads, &want) != QH_OK) want = NULL;
    qh_sweep_stale_reason(t->path, want, s->skip, why, cap);
    free(want);
}

/* Pending (no complete file), complete (its record is the configuration's)
 * or stale; the first stale tasks are named on stderr with the keys that differ. */
static enum task_state task_state(stale_check *s, const task *t)
{
    char why[480];
    if (!task_done(t)) return TASK_PENDING;
    stale_reason(s, t, why, sizeof why);
    if (!why[0]) return TASK_COMPLETE;
    if (s->n_stale++ < STALE_SHOWN)
        fprintf(stderr, "qh run: stale %s%s: %s\n", t->id, t->cell ? "" : ".baseline", why);
    return TASK_STALE;
}

/* The thread count OpenBLAS really takes when asked for `want` (it caps it
 * at the count it was built for), which is what a worker records. */
static int effective_threads(int want)
{
    qh_blas_set_threads(want);
    return qh_blas_info().threads;
}

static void stale_summary(const stale_check *s, int rerun)
{
    if (!s->n_stale) return;
    if (rerun)
        fprintf(stderr, "qh run: %zu stale cell(s) will be recomputed (--rerun-stale)\n", s->n_stale);
    else
        fprintf(stderr, "qh run: %zu stale cell(s) kept, not recomputed: their protocol record differs "
                "from this configuration's (%s listed above with the keys that differ); "
                "rerun with --rerun-stale to recompute them\n", s->n_stale,
                s->n_stale > STALE_SHOWN ? "the first " QH_STR(STALE_SHOWN) " are" : "they are");
}

/* Files are hashed once per process: hashing every model and data file here,
 * before the workers fork, spares each worker doing it again. */
static void warm_hashes(const qh_config *cfg, int threads)
{
    char hex[65], *rec = NULL;
    for (size_t m = 0; m < cfg->n_models; m++) {
        if (qh_protocol_record(cfg, m, NULL, threads, &rec) == QH_OK) free(rec);
        rec = NULL;
    }
    if (qh_file_sha256(cfg->calib_path, hex) != QH_OK) return;   /* its cells say why */
}

/* ---- the snapshot of the configuration: OUT/sweep.json -------------------- */

/* The first run snapshots the configuration into OUT/sweep.json; a later run
 * with other contents is refused unless --update-snapshot, so that a folder's
 * cells and its snapshot (which `qh status` reads) cannot drift apart.  Tasks
 * of a submission (--cell, --baseline) read their submission's copy and leave
 * the snapshot alone.  Returns 0, or 1 after printing why. */
static int check_snapshot(const run_opts *o, const char *out, const char *json)
{
    int replaced = 0;
    if (o->cell >= 0 || o->baseline >= 0) return 0;
    if (qh_sweep_snapshot_sync(out, json, o->config, o->update_snapshot, o->dry_run, &replaced) != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        return 1;
    }
    if (replaced && !o->quiet) fprintf(stderr, "qh run: %s/sweep.json replaced by %s\n", out, o->config);
    return 0;
}

/* Defined with the folder lock below. */
static int results_folder(const run_opts *o, const qh_config *cfg, char *out, size_t cap);

/* --out must be a folder (or not exist yet): writing cells into a file's
 * name would fail in every cell.  Checked before anything is created. */
static int check_out(const run_opts *o, const qh_config *cfg)
{
    struct stat sb;
    char out[1024];
    if (results_folder(o, cfg, out, sizeof out) != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        return 1;
    }
    if (stat(out, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "qh run: --out %s is an existing file, expected a results folder\n", out);
        return 1;
    }
    return 0;
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

/* A worker killed by a signal left its cell's temporary results file, and
 * perhaps a float cache it was building; their names carry the worker's pid,
 * so other writers' temporaries stay. */
static void remove_killed_temporaries(void *ctx, size_t i, long pid)
{
    const run_ctx *r = ctx;
    char dir[1200];
    struct stat sb;
    if (qh_results_remove_temporaries(r->tasks[i].path, pid, NULL) != QH_OK)
        fprintf(stderr, "qh run: warning: %s\n", qh_last_error());
    if (qh_float_cache_dir(r->p->out_dir, dir, sizeof dir) != QH_OK
        || (stat(dir, &sb) == 0 && qh_results_remove_folder_temporaries(dir, pid, NULL) != QH_OK))
        fprintf(stderr, "qh run: warning: %s\n", qh_last_error());
}

/* Runs the tasks in worker processes; returns how many failed.  *sig gets
 * the SIGINT or SIGTERM that stopped the run (0: none). */
static int run_local(const qh_pipeline *p, const task *tasks, size_t n, int jobs, int quiet, int *sig)
{
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    *sig = 0;
    if (!ids) return (int)n;
    for (size_t i = 0; i < n; i++) ids[i] = tasks[i].id;
    run_ctx ctx = { p, tasks };
    qh_local_opts lo = { jobs, quiet, ids, remove_killed_temporaries };
    int failed = qh_local_run(run_task, &ctx, n, &lo, sig);
    free(ids);
    if (*sig) fprintf(stderr, "qh run: interrupted; rerun to resume\n");
    return failed;
}

/* The results folder of the sweep: --out, else results/<config name>. */
static int results_folder(const run_opts *o, const qh_config *cfg, char *out, size_t cap)
{
    return o->out ? qh_path_format(out, cap, "results folder", "%s", o->out)
                  : qh_path_format(out, cap, "results folder", "results/%s", cfg->name);
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
        || qh_slurm_dir(j, dir, sizeof dir) != QH_OK || qh_path_mkdirs(path) != 0 || qh_path_mkdirs(dir) != 0) {
        fprintf(stderr, "qh run: cannot create the submission folder and the logs under %s: %s\n", j->out,
                qh_last_error());
        return 1;
    }
    /* The submission's own copy of the configuration: its tasks and merge job
     * read it, so editing the original while tasks are pending cannot remap them. */
    int st = qh_slurm_write_text(j->config, json, 0);
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
    char qh[PATH_MAX], config[PATH_MAX + 64], out_abs[PATH_MAX], workdir[PATH_MAX];
    if (!realpath("/proc/self/exe", qh) || !getcwd(workdir, sizeof workdir)) {
        fprintf(stderr, "qh run: cannot resolve the absolute paths of qh or the working folder\n");
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
        .rerun_stale = o->rerun_stale, .scratch = o->scratch,
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
        || qh_path_format(config, sizeof config, "configuration copy", "%s/slurm/%d/config.json",
                          out_abs, j.submission) != QH_OK
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
        printf("dry run: would submit %zu array tasks and a merge job (submission %d), reading a copy "
               "of %s as %s\n", n_tasks, j.submission, o->config, config);
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

/* A model's shapes, stored size and measured throughput for the dry run's
 * estimates, read once (state 0: not yet, 1: read, -1: unreadable). */
typedef struct { int state; qh_model_config cfg; size_t n_params; qh_time_probe probe; } model_shapes;

/* The estimates of one cell: peak RSS (pipeline/memory.h; 0: unknown) and
 * wall time (pipeline/timing.h; seconds < 0: unknown). */
typedef struct { size_t peak; qh_time_estimate time; } cell_estimate;

/* Reads model m's shapes and probes the throughput at them, with the BLAS
 * threads the workers will use (set before the dry run lists cells). */
static model_shapes *shapes_of(const qh_config *cfg, size_t m, model_shapes *ms)
{
    model_shapes *s = &ms[m];
    if (s->state == 0) {
        const char *dir = cfg->models[m].path;
        size_t T = cfg->calib_seqlen > 0 ? (size_t)cfg->calib_seqlen : 0;
        s->state = qh_model_config_load(dir, &s->cfg) == QH_OK &&
                   qh_mem_stored_params(dir, &s->n_params) == QH_OK &&
                   qh_time_probe_measure((size_t)s->cfg.hidden, T ? T : (size_t)s->cfg.max_pos,
                                         &s->probe) == QH_OK ? 1 : -1;
        qh_error_clear();
    }
    return s;
}

/* The estimates of cell c; unknown when its model's config or headers cannot
 * be read (the cell will say why when it runs). */
static cell_estimate estimate_cell(const qh_config *cfg, const qh_cell *c, model_shapes *ms, int spill)
{
    cell_estimate e = { 0, { .seconds = -1 } };
    model_shapes *s = shapes_of(cfg, c->model, ms);
    if (s->state < 0) return e;
    qh_time_protocol p;
    qh_mem_estimate mem;
    qh_time_estimate t;
    void *params = NULL;
    int st = qh_time_protocol_of_cell(cfg, c, &p, &params);
    p.mem.spill = spill;
    if (st == QH_OK && qh_mem_estimate_cell(&s->cfg, s->n_params, &p.mem, &mem) == QH_OK)
        e.peak = mem.peak;
    if (st == QH_OK && qh_time_estimate_cell(&s->cfg, s->n_params, &p, &s->probe, &t) == QH_OK)
        e.time = t;
    free(params);
    qh_error_clear();
    return e;
}

/* The estimate of model m's baseline (its time only: the cells' peaks are larger). */
static cell_estimate estimate_baseline(const qh_config *cfg, size_t m, model_shapes *ms)
{
    cell_estimate e = { 0, { .seconds = -1 } };
    model_shapes *s = shapes_of(cfg, m, ms);
    qh_time_protocol p;
    qh_time_protocol_of_baseline(cfg, &p);
    if (s->state > 0 && qh_time_estimate_cell(&s->cfg, s->n_params, &p, &s->probe, &e.time) != QH_OK)
        e.time.seconds = -1;
    qh_error_clear();
    return e;
}

/* The dry run's line for one cell: index, id, state, peak RSS and wall time. */
static void print_cell_line(size_t i, const qh_cell *c, const char *state, const cell_estimate *e)
{
    char b[32], t[32];
    printf("%5zu  %-48s %-8s peak ~%-10s time ~%s\n", i, c->id, state,
           e->peak ? qh_mem_format(e->peak, b, sizeof b) : "?",
           e->time.seconds >= 0 ? qh_time_format(e->time.seconds, e->time.lower_bound, t, sizeof t)
                                : "?");
}

/* The dry run's estimates: the largest peak of the cells listed, the times
 * of those that will run. */
typedef struct {
    size_t most_peak;
    double most_s, total_s;
    int lower_bound, unknown;
    char unmodelled[96];             /* one lower bound's reason, for the summary */
} sweep_estimate;

static void add_estimate(sweep_estimate *sum, const cell_estimate *e, int runs)
{
    sum->most_peak = e->peak > sum->most_peak ? e->peak : sum->most_peak;
    if (!runs) return;
    if (e->time.seconds < 0) { sum->unknown = 1; return; }
    sum->most_s = e->time.seconds > sum->most_s ? e->time.seconds : sum->most_s;
    sum->total_s += e->time.seconds;
    if (e->time.lower_bound && !sum->lower_bound)
        snprintf(sum->unmodelled, sizeof sum->unmodelled, "%s", e->time.unmodelled);
    sum->lower_bound |= e->time.lower_bound;
}

static void print_estimate_summary(const sweep_estimate *sum, int jobs, const model_shapes *ms,
                                   size_t n_models)
{
    char b[32], t[32], u[32];
    if (sum->most_peak)
        printf("largest estimated peak RSS of a cell: %s (per worker; docs/cluster.md sizes a job "
               "from it)\n", qh_mem_format(sum->most_peak, b, sizeof b));
    if (sum->total_s <= 0 && !sum->unknown) return;
    const qh_time_probe *pr = NULL;
    for (size_t m = 0; m < n_models && !pr; m++) if (ms[m].state > 0) pr = &ms[m].probe;
    /* local workers share the tasks; array tasks run side by side, so their
     * sum is the allocation they use, not a wall time */
    if (jobs > 0)
        printf("largest estimated time of a cell: %s; all to run: %s over %d job(s)%s\n",
               qh_time_format(sum->most_s, sum->lower_bound, t, sizeof t),
               qh_time_format(sum->total_s / jobs, sum->lower_bound, u, sizeof u), jobs,
               sum->unknown ? " (some cells unknown)" : "");
    else
        printf("largest estimated time of a cell: %s (a task's --time); all tasks together: %s%s\n",
               qh_time_format(sum->most_s, sum->lower_bound, t, sizeof t),
               qh_time_format(sum->total_s, sum->lower_bound, u, sizeof u),
               sum->unknown ? " (some cells unknown)" : "");
    if (pr)
        printf("  (from a probe of %.1f GFLOP/s float32, %.1f float64 with %d BLAS thread(s) here; "
               "docs/cluster.md)\n", pr->sgemm_gflops, pr->dgemm_gflops, pr->threads);
    if (sum->lower_bound)
        printf("  >= marks a lower bound: not counted are %s\n", sum->unmodelled);
}

static int run_sweep(const run_opts *o, const qh_config *cfg, const char *json)
{
    char out[1024];
    if (results_folder(o, cfg, out, sizeof out) != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        return 1;
    }
    if (!o->dry_run && qh_path_mkdirs(out) != 0) {
        fprintf(stderr, "qh run: cannot create results folder %s: %s\n", out, qh_last_error());
        return 1;
    }
    if (check_snapshot(o, out, json) != 0) return 1;
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
    if (o->save_model && !o->dry_run && qh_path_mkdirs(o->save_model) != 0) {
        fprintf(stderr, "qh run: cannot create --save-model folder %s: %s\n", o->save_model, qh_last_error());
        free(cells);
        return 1;
    }
    qh_pipeline p = { cfg, json, out, o->quiet ? NULL : stderr, o->save_model, o->scratch };
    task *tasks = calloc(cfg->n_models + n_cells, sizeof *tasks);
    if (!tasks) {
        fprintf(stderr, "qh run: out of memory\n");
        free(cells);
        return 1;
    }
    size_t n_tasks = 0, n_selected = 0, n_complete = 0, n_cell_stale = 0;
    sweep_estimate sum = { 0 };
    model_shapes *shapes = calloc(cfg->n_models + 1, sizeof *shapes);
    if (!shapes) {
        fprintf(stderr, "qh run: out of memory\n");
        free(tasks);
        free(cells);
        return 1;
    }
    /* The Slurm submitter runs elsewhere than its tasks: the BLAS keys of
     * the machine a cell ran on are not its to predict. */
    stale_check sc = { cfg, effective_threads(o->slurm ? o->cpus_per_task : qh_local_threads_per_worker(o->jobs)),
                       o->slurm ? qh_protocol_host_keys : NULL, 0 };
    for (size_t m = 0; cfg->n_datasets && o->cell < 0 && m < cfg->n_models; m++) {
        if (o->baseline >= 0 && (long)m != o->baseline) continue;
        task *t = &tasks[n_tasks];
        t->model = m;
        t->id = cfg->models[m].label;
        if (qh_pipeline_baseline_path(&p, m, t->path, sizeof t->path) != QH_OK) goto bad_path;
        enum task_state ts = task_state(&sc, t);
        int runs = task_runs(ts, o);
        if (o->dry_run && runs) {
            cell_estimate e = estimate_baseline(cfg, m, shapes);
            add_estimate(&sum, &e, 1);
        }
        n_tasks += runs;
    }
    for (size_t i = 0; i < n_cells; i++) {
        if (o->baseline >= 0) break;
        if (o->cell >= 0 ? (long)i != o->cell : !selected(o, &cells[i])) continue;
        task *t = &tasks[n_tasks];
        t->cell = &cells[i];
        t->id = cells[i].id;
        if (qh_pipeline_cell_path(&p, &cells[i], t->path, sizeof t->path) != QH_OK) goto bad_path;
        n_selected++;
        size_t stale_before = sc.n_stale;
        enum task_state ts = task_state(&sc, t);
        static const char *const names[] = { "pending", "complete", "stale" };
        n_complete += ts == TASK_COMPLETE;
        n_cell_stale += sc.n_stale - stale_before;
        int runs = task_runs(ts, o);
        if (o->dry_run) {
            cell_estimate e = estimate_cell(cfg, &cells[i], shapes, o->scratch != NULL);
            print_cell_line(i, &cells[i], names[ts], &e);
            add_estimate(&sum, &e, runs);
        }
        if (runs) n_tasks++;
    }
    int failed = 0, sig = 0;
    stale_summary(&sc, o->rerun_stale);
    if (o->dry_run) {
        printf("%zu cells selected, %zu complete, %zu stale, %zu to run (plus baselines); results in %s\n",
               n_selected, n_complete, n_cell_stale,
               n_selected - n_complete - (o->rerun_stale ? 0 : n_cell_stale), out);
        print_estimate_summary(&sum, o->slurm ? 0 : o->jobs, shapes, cfg->n_models);
    }
    if (o->slurm)
        failed = submit_slurm(o, cfg, json, out, tasks, n_tasks, cells);
    else if (!o->dry_run) {
        if (!o->quiet)
            fprintf(stderr, "qh run: %s: %zu cells selected, %zu complete, %zu stale, %zu tasks to run with %d job(s) into %s\n",
                    cfg->name, n_selected, n_complete, n_cell_stale, n_tasks, o->jobs, out);
        warm_hashes(cfg, sc.threads);
        failed = run_local(&p, tasks, n_tasks, o->jobs, o->quiet, &sig);
        if (!o->quiet && !sig) fprintf(stderr, "qh run: %d of %zu tasks failed; results in %s\n", failed, n_tasks, out);
    }
    free(shapes);
    free(tasks);
    free(cells);
    return sig ? 128 + sig : failed ? 1 : 0;   /* the shell's status for a signal */
bad_path:
    fprintf(stderr, "qh run: %s\n", qh_last_error());
    free(shapes);
    free(tasks);
    free(cells);
    return 1;
}

/* One local runner per results folder: two would both compute every pending
 * cell and race on its file.  The lock is taken before the pending cells are
 * listed and held (by the workers too) until the run ends.  Slurm tasks
 * (--cell, --baseline) run one cell each and share the folder; a submission
 * and a dry run write no cells.  Returns an exit status. */
static int lock_results_folder(const run_opts *o, const qh_config *cfg, int *lock)
{
    char out[1024];
    *lock = -1;
    if (o->dry_run || o->slurm || o->cell >= 0 || o->baseline >= 0) return 0;
    if (results_folder(o, cfg, out, sizeof out) != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        return 1;
    }
    if (qh_path_mkdirs(out) != 0) {
        fprintf(stderr, "qh run: cannot create results folder %s: %s\n", out, qh_last_error());
        return 1;
    }
    if (qh_local_lock(out, o->wait_lock, lock) != QH_OK) {
        fprintf(stderr, "qh run: %s\n", qh_last_error());
        return 1;
    }
    return 0;
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
        qh_config_free(cfg);                     /* parsed, then refused by validation */
        free(json);
        return 1;
    }
    int lock = -1;
    rc = check_out(&o, cfg);
    if (rc == 0) rc = lock_results_folder(&o, cfg, &lock);
    if (rc == 0) rc = run_sweep(&o, cfg, json);
    qh_local_unlock(lock);
    qh_config_free(cfg);
    free(json);
    return rc;
}
