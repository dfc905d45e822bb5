/* slurm.h -- the Slurm backend of `qh run`: a sweep's pending cells as
 * one job array (one task per cell, one results file per task) and a merge
 * job that waits for the whole array with an `afterany` dependency, so that a
 * failed task never leaves the merge pending forever.
 *
 * Array task k runs line k+1 of an index map written next to the script
 * ("cell 5 opt-7m.gptq.w4.s0" or "baseline 0 opt-7m.baseline"): pending cells
 * are not contiguous in the sweep's expansion, and Slurm array indices are.
 * Each submission gets its own folder OUT/slurm/<n>/ (n = 1, 2, ...), so a
 * resubmission never rewrites the map an earlier array may still be reading.
 *
 * This file only builds text and calls sbatch; which cells are pending is the
 * caller's business (experiments/cmd_run.c).  Left out: job accounting
 * (sacct needs slurmdbd), cancelling, and waiting for jobs.
 */
#ifndef QH_BACKEND_SLURM_H
#define QH_BACKEND_SLURM_H

#include <stddef.h>

#include "qh_error.h"

typedef struct {
    const char *qh;                  /* absolute path of the qh binary */
    const char *config;              /* absolute path of the sweep configuration: the
                                      * submission's own copy, OUT/slurm/<n>/config.json, so
                                      * that editing the original cannot remap pending tasks */
    const char *out;                 /* absolute results folder */
    const char *workdir;             /* absolute folder the jobs run in: relative paths of the
                                      * configuration (models, data) resolve against it */
    const char *name;                /* sweep name, used in job names */
    int submission;                  /* n of OUT/slurm/<n>/ (>= 1) */
    const char *partition, *time, *mem;  /* sbatch values; NULL: the site's default */
    int cpus_per_task;               /* >= 1; also the OpenBLAS threads of each task */
    int array_max;                   /* tasks running at once (--array=...%K); 0: no limit */
    const char *const *sbatch_args;  /* n_sbatch_args extra "#SBATCH ARG" lines, verbatim */
    size_t n_sbatch_args;
    int rerun_stale;                 /* 1: tasks run with --rerun-stale (the submission had it) */
    const char *scratch;             /* tasks run with --scratch this folder (NULL: without) */
} qh_slurm_job;

typedef struct {
    int baseline;                    /* 1: the float32 baseline of model `index`; 0: cell `index` */
    size_t index;                    /* cell index in the expansion, or model index */
    const char *id;                  /* cell id ("<model>.baseline" for a baseline); names the log */
} qh_slurm_task;

/* OUT/slurm/<submission> into buf (len bytes).  Return: QH_OK; QH_EINVAL (too long). */
int qh_slurm_dir(const qh_slurm_job *j, char *buf, size_t len) QH_MUST_CHECK;

/* The smallest n >= 1 such that OUT/slurm/<n> does not exist.
 * Return: QH_OK; QH_EINVAL (out too long). */
int qh_slurm_next_submission(const char *out, int *n) QH_MUST_CHECK;

/* Index map text: line k (0-based) is "cell|baseline INDEX ID" for task k.
 * Output: *text (new, free()).  Return: QH_OK; QH_EINVAL (an id holding
 *   whitespace); QH_ENOMEM. */
int qh_slurm_index_map(const qh_slurm_task *tasks, size_t n, char **text) QH_MUST_CHECK;

/* The array script for n_tasks tasks (n_tasks >= 1): --array=0-(n_tasks-1)[%K],
 * the sbatch options of j, OPENBLAS_NUM_THREADS set to the task's CPUs, and
 * `qh run CONFIG --cell|--baseline INDEX --out OUT [--rerun-stale] [--scratch DIR]` appending to
 * OUT/logs/<id>.log.  Slurm's own output goes to OUT/slurm/<n>/.
 * Output: *text (new).  Return: QH_OK; QH_EINVAL (n_tasks 0, cpus < 1, a path
 *   or option value holding whitespace where sbatch cannot take it, a newline
 *   in an extra argument: the message names it); QH_ENOMEM. */
int qh_slurm_array_script(const qh_slurm_job *j, size_t n_tasks, char **text) QH_MUST_CHECK;

/* The merge script: depends on array_job_id with afterany (NULL: the
 * placeholder "<array job id>", for --dry-run), writes `qh status` of OUT to
 * OUT/status.txt and merges OUT into OUT/merged.h5 with `qh merge`.
 * Output: *text (new).  Return: as qh_slurm_array_script. */
int qh_slurm_merge_script(const qh_slurm_job *j, const char *array_job_id,
                          char **text) QH_MUST_CHECK;

/* Runs `sbatch --parsable SCRIPT` and returns the job id it prints (a
 * ";cluster" suffix removed) in job_id (len bytes).
 * Return: QH_OK; QH_EIO (sbatch missing or failing: the message holds its
 *   exit status and first output line). */
int qh_slurm_sbatch(const char *script_path, char *job_id, size_t len) QH_MUST_CHECK;

/* Writes text to path (created or truncated; mode 0755 when executable, else
 * 0644).  Return: QH_OK; QH_EIO (message names path). */
int qh_slurm_write_text(const char *path, const char *text, int executable) QH_MUST_CHECK;

/* Text t with single quotes for a POSIX shell ('a'\''b').  Output: *quoted (new).
 * Return: QH_OK; QH_ENOMEM. */
int qh_shell_quote(const char *t, char **quoted) QH_MUST_CHECK;

#endif
