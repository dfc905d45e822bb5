/* slurm.c -- sbatch scripts for a sweep as a Slurm job array plus an
 * afterany merge job (see slurm.h), and their submission through
 * `sbatch --parsable`.
 *
 * Values inside the shell part of a script are single-quoted; values on
 * #SBATCH lines cannot be quoted portably, so whitespace there is refused
 * with a message instead of producing a script that sbatch splits wrongly. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "backends/slurm.h"

#include "qh_path.h"

/* A growing string; `failed` records an allocation failure so that callers
 * check once at the end instead of after every append. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} text_buf;

static void append(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append(text_buf *b, const char *fmt, ...)
{
    if (b->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) { b->failed = 1; return; }
    if (b->len + (size_t)need + 1 > b->cap) {
        size_t cap = (b->cap ? 2 * b->cap : 1024) + (size_t)need;
        char *s = realloc(b->s, cap);
        if (!s) { b->failed = 1; return; }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)need;
}

/* Hands the text to *text, or frees it and reports QH_ENOMEM. */
static int finish(text_buf *b, char **text)
{
    if (b->failed || !b->s) {
        free(b->s);
        *text = NULL;
        QH_ERROR(QH_ENOMEM, "out of memory building a Slurm script");
    }
    *text = b->s;
    return QH_OK;
}

int qh_shell_quote(const char *t, char **quoted)
{
    text_buf b = { 0 };
    append(&b, "'");
    for (const char *c = t; *c; c++)
        if (*c == '\'') append(&b, "'\\''");
        else append(&b, "%c", *c);
    append(&b, "'");
    return finish(&b, quoted);
}

static int has_space(const char *s)
{
    return s && strpbrk(s, " \t\n\r") != NULL;
}

/* Values that land on #SBATCH lines: no whitespace (sbatch would split them). */
static int check_job(const qh_slurm_job *j)
{
    const struct { const char *what, *value; } v[] = {
        { "results folder", j->out }, { "sweep name", j->name }, { "--partition", j->partition },
        { "--time", j->time }, { "--mem", j->mem },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (has_space(v[i].value))
            QH_ERROR(QH_EINVAL, "%s '%s' holds whitespace, which an #SBATCH line cannot carry",
                     v[i].what, v[i].value);
    if (!j->qh || !j->config || !j->out || !j->workdir || !j->name)
        QH_ERROR(QH_EINVAL, "Slurm job without qh binary, config, results folder, workdir or name");
    if (j->cpus_per_task < 1)
        QH_ERROR(QH_EINVAL, "--cpus-per-task must be at least 1, got %d", j->cpus_per_task);
    if (j->array_max < 0)
        QH_ERROR(QH_EINVAL, "--array-max must be at least 0, got %d", j->array_max);
    if (j->submission < 1)
        QH_ERROR(QH_EINVAL, "submission number must be at least 1, got %d", j->submission);
    for (size_t i = 0; i < j->n_sbatch_args; i++)
        if (strpbrk(j->sbatch_args[i], "\n\r") || !j->sbatch_args[i][0])
            QH_ERROR(QH_EINVAL, "--sbatch-arg '%s' is empty or holds a newline", j->sbatch_args[i]);
    return QH_OK;
}

int qh_slurm_dir(const qh_slurm_job *j, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/slurm/%d", j->out, j->submission);
    if (n < 0 || (size_t)n >= len) QH_ERROR(QH_EINVAL, "results folder path too long: %s", j->out);
    return QH_OK;
}

int qh_slurm_next_submission(const char *out, int *n)
{
    char path[4096];
    struct stat st;
    for (int k = 1;; k++) {
        int w = snprintf(path, sizeof path, "%s/slurm/%d", out, k);
        if (w < 0 || (size_t)w >= sizeof path) QH_ERROR(QH_EINVAL, "results folder path too long: %s", out);
        if (stat(path, &st) != 0) { *n = k; return QH_OK; }
    }
}

int qh_slurm_index_map(const qh_slurm_task *tasks, size_t n, char **text)
{
    text_buf b = { 0 };
    append(&b, "%s", "");
    for (size_t k = 0; k < n; k++) {
        if (!tasks[k].id[0] || has_space(tasks[k].id)) {
            free(b.s);
            *text = NULL;
            QH_ERROR(QH_EINVAL, "cell id '%s' is empty or holds whitespace", tasks[k].id);
        }
        append(&b, "%s %zu %s\n", tasks[k].baseline ? "baseline" : "cell", tasks[k].index, tasks[k].id);
    }
    return finish(&b, text);
}

/* #SBATCH lines shared by both scripts: site values and extra arguments. */
static void site_options(text_buf *b, const qh_slurm_job *j)
{
    if (j->partition) append(b, "#SBATCH --partition=%s\n", j->partition);
    if (j->time) append(b, "#SBATCH --time=%s\n", j->time);
    if (j->mem) append(b, "#SBATCH --mem=%s\n", j->mem);
    for (size_t i = 0; i < j->n_sbatch_args; i++)
        append(b, "#SBATCH %s\n", j->sbatch_args[i]);
}

/* Shell variables QH, CONFIG, OUT (single-quoted) and the cd into workdir. */
static int shell_prologue(text_buf *b, const qh_slurm_job *j)
{
    const char *names[4] = { "QH", "CONFIG", "OUT", "WORKDIR" };
    const char *values[4] = { j->qh, j->config, j->out, j->workdir };
    for (int i = 0; i < 4; i++) {
        char *q = NULL;
        QH_TRY(qh_shell_quote(values[i], &q));
        append(b, "%s=%s\n", names[i], q);
        free(q);
    }
    append(b, "cd \"$WORKDIR\" || exit 1       # relative paths in the configuration resolve here\n");
    return QH_OK;
}

int qh_slurm_array_script(const qh_slurm_job *j, size_t n_tasks, char **text)
{
    *text = NULL;
    QH_TRY(check_job(j));
    if (n_tasks == 0) QH_ERROR(QH_EINVAL, "Slurm array with no task");
    char dir[4096];
    QH_TRY(qh_slurm_dir(j, dir, sizeof dir));
    text_buf b = { 0 };
    append(&b, "#!/bin/bash\n");
    append(&b, "# Sweep %s, submission %d: array task k runs line k+1 of tasks.map (written by\n"
               "# `qh run --backend slurm`; resubmit with the same command to redo failed cells).\n",
           j->name, j->submission);
    append(&b, "#SBATCH --job-name=qh-%s\n", j->name);
    append(&b, "#SBATCH --array=0-%zu", n_tasks - 1);
    if (j->array_max > 0) append(&b, "%%%d", j->array_max);
    append(&b, "\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=%d\n", j->cpus_per_task);
    append(&b, "#SBATCH --output=%s/task-%%A_%%a.out\n", dir);
    site_options(&b, j);
    append(&b, "set -u\n");
    int st = shell_prologue(&b, j);
    if (st != QH_OK) { free(b.s); return st; }
    char *map = NULL;
    char map_path[4200];
    if ((st = qh_path_format(map_path, sizeof map_path, "Slurm task map", "%s/tasks.map", dir)) != QH_OK
        || (st = qh_shell_quote(map_path, &map)) != QH_OK) { free(b.s); return st; }
    append(&b, "MAP=%s\n", map);
    free(map);
    char *scratch = NULL;            /* " --scratch 'DIR'" or "" */
    if (j->scratch && (st = qh_shell_quote(j->scratch, &scratch)) != QH_OK) { free(b.s); return st; }
    append(&b,
        "read -r kind index id < <(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" \"$MAP\")\n"
        "if [ -z \"${id:-}\" ]; then echo \"qh: no line $((SLURM_ARRAY_TASK_ID + 1)) in $MAP\" >&2; exit 2; fi\n"
        "# One BLAS thread per allocated CPU: a cell's bits depend on the thread count.\n"
        "export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-%d}\n"
        "log=\"$OUT/logs/$id.log\"\n"
        "echo \"== job ${SLURM_ARRAY_JOB_ID:-}_${SLURM_ARRAY_TASK_ID} on $(hostname) at $(date -u +%%FT%%TZ):"
        " $kind $index, OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS\" >> \"$log\"\n"
        "exec \"$QH\" run \"$CONFIG\" --\"$kind\" \"$index\" --out \"$OUT\"%s%s%s >> \"$log\" 2>&1\n",
        j->cpus_per_task, j->rerun_stale ? " --rerun-stale" : "", scratch ? " --scratch " : "",
        scratch ? scratch : "");
    free(scratch);
    return finish(&b, text);
}

int qh_slurm_merge_script(const qh_slurm_job *j, const char *array_job_id, char **text)
{
    *text = NULL;
    QH_TRY(check_job(j));
    if (array_job_id && (!array_job_id[0] || has_space(array_job_id)))
        QH_ERROR(QH_EINVAL, "bad array job id '%s'", array_job_id);
    char dir[4096];
    QH_TRY(qh_slurm_dir(j, dir, sizeof dir));
    text_buf b = { 0 };
    append(&b, "#!/bin/bash\n");
    append(&b, "# Sweep %s, submission %d: after every array task has ended, whatever its\n"
               "# state (afterany), record done/failed/missing cells and merge the complete ones.\n",
           j->name, j->submission);
    append(&b, "#SBATCH --job-name=qh-%s-merge\n", j->name);
    append(&b, "#SBATCH --dependency=afterany:%s\n", array_job_id ? array_job_id : "<array job id>");
    append(&b, "#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n");
    append(&b, "#SBATCH --output=%s/merge-%%j.out\n", dir);
    site_options(&b, j);
    append(&b, "set -u\n");
    int st = shell_prologue(&b, j);
    if (st != QH_OK) { free(b.s); return st; }
    append(&b,
        "\"$QH\" status \"$OUT\" --config \"$CONFIG\" > \"$OUT/status.txt\" 2>&1\n"
        "echo \"qh status: exit $? (0: every cell done); see $OUT/status.txt\"\n"
        "exec \"$QH\" merge \"$OUT\" -o \"$OUT/merged.h5\"\n");
    return finish(&b, text);
}

int qh_slurm_sbatch(const char *script_path, char *job_id, size_t len)
{
    char *quoted = NULL;
    QH_TRY(qh_shell_quote(script_path, &quoted));
    char cmd[8192];
    int st = qh_path_format(cmd, sizeof cmd, "sbatch command", "sbatch --parsable %s 2>&1", quoted);
    free(quoted);
    if (st != QH_OK) return st;
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    if (!p) QH_ERROR(QH_EIO, "cannot run sbatch for %s", script_path);
    char line[1024] = "";
    if (!fgets(line, sizeof line, p)) line[0] = '\0';
    char rest[256];
    while (fgets(rest, sizeof rest, p)) {}    /* drain, so sbatch never blocks on a full pipe */
    int ws = pclose(p);
    line[strcspn(line, "\r\n")] = '\0';
    if (ws == -1 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        QH_ERROR(QH_EIO, "sbatch %s failed (exit %d): %s", script_path,
                 ws != -1 && WIFEXITED(ws) ? WEXITSTATUS(ws) : -1,
                 line[0] ? line : "no output (is Slurm installed and SLURM_CONF set?)");
    line[strcspn(line, ";")] = '\0';          /* "<id>;<cluster>" on multi-cluster sites */
    size_t n = strspn(line, "0123456789");
    if (n == 0 || line[n] != '\0')
        QH_ERROR(QH_EIO, "sbatch %s printed '%s', not a job id", script_path, line);
    if (n + 1 > len) QH_ERROR(QH_EINVAL, "job id buffer too small for '%s'", line);
    memcpy(job_id, line, n + 1);
    return QH_OK;
}

int qh_slurm_write_text(const char *path, const char *text, int executable)
{
    FILE *f = fopen(path, "w");
    if (!f) QH_ERROR(QH_EIO, "cannot create %s", path);
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok) QH_ERROR(QH_EIO, "cannot write %s", path);
    if (chmod(path, executable ? 0755 : 0644) != 0) QH_ERROR(QH_EIO, "cannot set the mode of %s", path);
    return QH_OK;
}
