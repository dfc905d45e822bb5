/* test_backend_slurm.c -- the Slurm scripts of experiments/backends/slurm.h,
 * without Slurm: the text holds the array range, throttle, CPUs and the
 * afterany dependency; the scripts are then run by bash with the variables
 * Slurm would set and a stand-in `qh` that records its arguments, its
 * working folder and OPENBLAS_NUM_THREADS, so the index map lookup, quoting
 * of awkward paths and per-cell logs are checked by behaviour.  A stand-in
 * `sbatch` on PATH checks the job id parsing and the failure message.
 * Bad inputs (whitespace on #SBATCH lines, no tasks, newline in an extra
 * argument) are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/slurm.h"
#include "qh_test.h"

static char dir[256];

static const char *in_dir(const char *name)
{
    static char buf[8][768];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf) buf[fread(buf, 1, (1 << 16) - 1, f)] = '\0';
    fclose(f);
    return buf;
}

static int write_exec(const char *path, const char *text)
{
    return qh_slurm_write_text(path, text, 1) == QH_OK;
}

static int contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

/* A stand-in qh: appends its arguments, working folder and BLAS threads. */
static const char *fake_qh =
    "#!/bin/sh\n"
    "{ printf 'arg=%s\\n' \"$@\"; echo \"pwd=$(pwd)\"; echo \"threads=$OPENBLAS_NUM_THREADS\"; } >> \"$FAKE_RECORD\"\n"
    "echo 'output of qh'\n";

static void test_array_script(void)
{
    char qh[768], config[768], out[768];
    snprintf(qh, sizeof qh, "%s", in_dir("fake qh"));
    snprintf(config, sizeof config, "%s", in_dir("it's a config.json"));   /* space and quote */
    snprintf(out, sizeof out, "%s", in_dir("out"));
    QH_CHECK(write_exec(qh, fake_qh), "stand-in qh written");
    const char *extra[] = { "--account=proj", "--qos=low" };
    qh_slurm_job j = { .qh = qh, .config = config, .out = out, .workdir = dir, .name = "sw",
                       .submission = 1, .partition = "short", .time = "1:00:00", .mem = "4G",
                       .cpus_per_task = 3, .array_max = 4, .sbatch_args = extra, .n_sbatch_args = 2 };
    qh_slurm_task tasks[2] = { { 1, 0, "m.baseline" }, { 0, 7, "m.gptq.w4.s0" } };
    char *map = NULL, *script = NULL, *merge = NULL, *placeholder = NULL;
    QH_CHECK(qh_slurm_index_map(tasks, 2, &map) == QH_OK, "index map: %s", qh_last_error());
    QH_CHECK(map && !strcmp(map, "baseline 0 m.baseline\ncell 7 m.gptq.w4.s0\n"), "index map text: %s", map);
    QH_CHECK(qh_slurm_array_script(&j, 2, &script) == QH_OK, "array script: %s", qh_last_error());
    QH_CHECK(contains(script, "\n#SBATCH --array=0-1%4\n"), "array range with throttle");
    QH_CHECK(contains(script, "\n#SBATCH --cpus-per-task=3\n"), "cpus per task");
    QH_CHECK(contains(script, "\n#SBATCH --partition=short\n#SBATCH --time=1:00:00\n#SBATCH --mem=4G\n"
                              "#SBATCH --account=proj\n#SBATCH --qos=low\n"), "site options in order");
    QH_CHECK(contains(script, "export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK"), "BLAS threads pinned");
    QH_CHECK(qh_slurm_merge_script(&j, "4242", &merge) == QH_OK, "merge script: %s", qh_last_error());
    QH_CHECK(contains(merge, "\n#SBATCH --dependency=afterany:4242\n"), "afterany dependency");
    QH_CHECK(qh_slurm_merge_script(&j, NULL, &placeholder) == QH_OK
             && contains(placeholder, "afterany:<array job id>"), "dry-run placeholder");

    /* Run task 1 as Slurm would: it must run cell 7 with 3 threads in dir. */
    char sdir[1024], path[1200], cmd[4096];
    QH_CHECK(qh_slurm_dir(&j, sdir, sizeof sdir) == QH_OK && !strcmp(sdir, in_dir("out/slurm/1")), "slurm dir %s", sdir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/logs'", sdir, out);
    QH_CHECK(system(cmd) == 0, "folders created");
    snprintf(path, sizeof path, "%s/tasks.map", sdir);
    QH_CHECK(qh_slurm_write_text(path, map, 0) == QH_OK, "map written");
    snprintf(path, sizeof path, "%s/array.sbatch", sdir);
    QH_CHECK(qh_slurm_write_text(path, script, 1) == QH_OK, "script written");
    snprintf(cmd, sizeof cmd, "cd / && FAKE_RECORD='%s' SLURM_ARRAY_JOB_ID=9 SLURM_ARRAY_TASK_ID=1 "
             "SLURM_CPUS_PER_TASK=3 OPENBLAS_NUM_THREADS=7 bash '%s'", in_dir("record"), path);
    QH_CHECK(system(cmd) == 0, "array task 1 ran");
    char *rec = slurp(in_dir("record"));
    char want[4096];
    snprintf(want, sizeof want, "arg=run\narg=%s\narg=--cell\narg=7\narg=--out\narg=%s\npwd=%s\nthreads=3\n",
             config, out, dir);
    QH_CHECK(rec && !strcmp(rec, want), "task 1 ran `qh run CONFIG --cell 7 --out OUT` in the workdir "
             "with 3 threads:\n%s\nwant:\n%s", rec, want);
    free(rec);
    char *log = slurp(in_dir("out/logs/m.gptq.w4.s0.log"));
    QH_CHECK(contains(log, "== job 9_1 ") && contains(log, "output of qh"), "per-cell log: %s", log);
    free(log);

    /* Task 0 is the baseline; a task beyond the map fails without running qh. */
    unlink(in_dir("record"));
    snprintf(cmd, sizeof cmd, "FAKE_RECORD='%s' SLURM_ARRAY_TASK_ID=0 SLURM_CPUS_PER_TASK=1 bash '%s'",
             in_dir("record"), path);
    QH_CHECK(system(cmd) == 0, "array task 0 ran");
    rec = slurp(in_dir("record"));
    QH_CHECK(contains(rec, "arg=--baseline\narg=0\n") && contains(rec, "threads=1\n"), "task 0 runs the baseline: %s", rec);
    free(rec);
    unlink(in_dir("record"));
    snprintf(cmd, sizeof cmd, "FAKE_RECORD='%s' SLURM_ARRAY_TASK_ID=2 bash '%s' 2>/dev/null", in_dir("record"), path);
    QH_CHECK(system(cmd) != 0 && access(in_dir("record"), F_OK) != 0, "task past the map fails, qh not run");

    /* The merge job: qh status into OUT/status.txt, then qh merge. */
    snprintf(path, sizeof path, "%s/merge.sbatch", sdir);
    QH_CHECK(qh_slurm_write_text(path, merge, 1) == QH_OK, "merge script written");
    snprintf(cmd, sizeof cmd, "FAKE_RECORD='%s' bash '%s' >/dev/null", in_dir("record"), path);
    QH_CHECK(system(cmd) == 0, "merge job ran");
    rec = slurp(in_dir("record"));
    snprintf(want, sizeof want, "arg=status\narg=%s\narg=--config\narg=%s\n", out, config);
    QH_CHECK(rec && !strncmp(rec, want, strlen(want)), "merge job runs qh status first: %s", rec);
    snprintf(want, sizeof want, "arg=merge\narg=%s\narg=-o\narg=%s/merged.h5\n", out, out);
    QH_CHECK(contains(rec, want), "merge job runs qh merge OUT -o OUT/merged.h5: %s", rec);
    free(rec);
    char *status_txt = slurp(in_dir("out/status.txt"));
    QH_CHECK(contains(status_txt, "output of qh"), "qh status output in OUT/status.txt");
    free(status_txt);

    int n = 0;
    QH_CHECK(qh_slurm_next_submission(out, &n) == QH_OK && n == 2, "next submission after 1 is 2, got %d", n);
    j.array_max = 0;
    free(script);
    QH_CHECK(qh_slurm_array_script(&j, 5, &script) == QH_OK && contains(script, "\n#SBATCH --array=0-4\n"),
             "no throttle when array_max is 0");
    free(script);
    free(merge);
    free(placeholder);
    free(map);
}

static void test_refusals(void)
{
    const char *bad_arg[] = { "--account=a\n--qos=b" };
    qh_slurm_job j = { .qh = "/q", .config = "/c", .out = "/o", .workdir = "/", .name = "sw",
                       .submission = 1, .cpus_per_task = 1 };
    char *t = NULL;
    qh_slurm_job k = j;
    k.out = "/my results";
    QH_CHECK(qh_slurm_array_script(&k, 1, &t) == QH_EINVAL && !t && strstr(qh_last_error(), "/my results"),
             "whitespace in the results folder refused: %s", qh_last_error());
    QH_CHECK(qh_slurm_array_script(&j, 0, &t) == QH_EINVAL, "no task refused");
    k = j;
    k.sbatch_args = bad_arg;
    k.n_sbatch_args = 1;
    QH_CHECK(qh_slurm_merge_script(&k, "1", &t) == QH_EINVAL, "newline in --sbatch-arg refused");
    k = j;
    k.cpus_per_task = 0;
    QH_CHECK(qh_slurm_array_script(&k, 1, &t) == QH_EINVAL, "zero CPUs refused");
    qh_slurm_task bad = { 0, 1, "a b" };
    QH_CHECK(qh_slurm_index_map(&bad, 1, &t) == QH_EINVAL && !t, "cell id with a space refused");
    char *q = NULL;
    QH_CHECK(qh_shell_quote("a'b c", &q) == QH_OK && !strcmp(q, "'a'\\''b c'"), "shell quote: %s", q);
    free(q);
}

/* A submission with --rerun-stale passes it to its tasks: without it a task
 * would find its stale cell complete and leave it. */
static void test_rerun_stale(void)
{
    qh_slurm_job j = { .qh = "/q", .config = "/o/slurm/1/config.json", .out = "/o", .workdir = "/",
                       .name = "sw", .submission = 1, .cpus_per_task = 1 };
    char *t = NULL;
    QH_CHECK(qh_slurm_array_script(&j, 2, &t) == QH_OK && t && !strstr(t, "--rerun-stale"),
             "no --rerun-stale by default");
    free(t);
    j.rerun_stale = 1;
    QH_CHECK(qh_slurm_array_script(&j, 2, &t) == QH_OK && t
             && strstr(t, "--out \"$OUT\" --rerun-stale >> \"$log\""), "tasks get --rerun-stale");
    free(t);
}

static void test_sbatch(void)
{
    char bin[768], path_env[4096], id[64] = "";
    snprintf(bin, sizeof bin, "%s", in_dir("bin"));
    mkdir(bin, 0755);
    const char *old = getenv("PATH");
    snprintf(path_env, sizeof path_env, "%s:%s", bin, old ? old : "/usr/bin:/bin");
    char *saved = strdup(old ? old : "");
    setenv("PATH", path_env, 1);
    /* Records its arguments; prints "<id>;<cluster>" as multi-cluster sites do. */
    QH_CHECK(write_exec(in_dir("bin/sbatch"),
                        "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\necho '4711;clusterA'\n"),
             "stand-in sbatch written");
    QH_CHECK(qh_slurm_sbatch(in_dir("x y.sbatch"), id, sizeof id) == QH_OK && !strcmp(id, "4711"),
             "job id parsed: '%s' (%s)", id, qh_last_error());
    char *args = slurp(in_dir("bin/args"));
    char want[1024];
    snprintf(want, sizeof want, "--parsable %s\n", in_dir("x y.sbatch"));
    QH_CHECK(args && !strcmp(args, want), "sbatch --parsable SCRIPT: %s", args);
    free(args);
    QH_CHECK(write_exec(in_dir("bin/sbatch"),
                        "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid account' >&2\nexit 1\n"),
             "failing sbatch written");
    QH_CHECK(qh_slurm_sbatch("s.sbatch", id, sizeof id) == QH_EIO
             && strstr(qh_last_error(), "Invalid account"), "sbatch failure reported: %s", qh_last_error());
    setenv("PATH", saved, 1);
    free(saved);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/qh-slurm-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        printf("FAIL: mkdtemp %s\n", dir);
        return EXIT_FAILURE;
    }
    test_array_script();
    test_refusals();
    test_rerun_stale();
    test_sbatch();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    return qh_test_summary();
}
