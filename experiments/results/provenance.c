/* provenance.c -- collects and writes /provenance (see provenance.h).
 *
 * Left out: the full compiler command line (the build passes no -D with it),
 * CPU model and memory of the host, the command line of the run (callers add
 * it with qh_results_attr_string on /provenance if they want it).
 */
#include "results/provenance.h"

#include <cJSON.h>
#include <gsl/gsl_version.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qh_blas.h"

extern char **environ;

#ifdef __OPTIMIZE__
#define QH_BUILT_OPTIMIZED 1
#else
#define QH_BUILT_OPTIMIZED 0
#endif
#if defined(__clang__)
#define QH_COMPILER __VERSION__        /* already names Clang */
#elif defined(__GNUC__)
#define QH_COMPILER "gcc " __VERSION__
#else
#define QH_COMPILER __VERSION__
#endif
#if defined(__SANITIZE_ADDRESS__)
#define QH_BUILT_SANITIZED 1
#else
#define QH_BUILT_SANITIZED 0
#endif

static int fixed_mode(void)
{
    const char *s = getenv("QH_PROVENANCE_FIXED");
    return s && strcmp(s, "1") == 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "unknown");
}

/* First line of a shell command's output, trailing newline removed; -1 if the
 * command failed or printed nothing. */
static int command_line_out(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    out[0] = '\0';
    int got = fgets(out, (int)cap, f) != NULL;
    char sink[256];
    while (fgets(sink, sizeof sink, f))      /* drain, so the child exits cleanly */
        ;
    int rc = pclose(f);
    out[strcspn(out, "\n")] = '\0';
    return rc == 0 && got ? 0 : -1;
}

static void collect_git_now(qh_provenance *p)
{
    char line[256];
    copy_str(p->git_commit, sizeof p->git_commit, "unknown");
    p->git_dirty = -1;
    if (command_line_out("git rev-parse HEAD 2>/dev/null", line, sizeof line) != 0)
        return;
    copy_str(p->git_commit, sizeof p->git_commit, line);
    /* --no-optional-locks: reading the state must not rewrite .git/index. */
    FILE *f = popen("git --no-optional-locks status --porcelain 2>/dev/null", "r");
    if (!f)
        return;
    int any = fgets(line, sizeof line, f) != NULL;
    while (fgets(line, sizeof line, f))
        ;
    if (pclose(f) == 0)
        p->git_dirty = any;
}

/* Once per process: a sweep's workers are forked from the runner, so every
 * cell of one run records the tree as it was when the run started. */
static void collect_git(qh_provenance *p)
{
    static int have;
    static char commit[64];
    static int dirty;
    if (!have) {
        qh_provenance tmp;
        collect_git_now(&tmp);
        memcpy(commit, tmp.git_commit, sizeof commit);
        dirty = tmp.git_dirty;
        have = 1;
    }
    memcpy(p->git_commit, commit, sizeof p->git_commit);
    p->git_dirty = dirty;
}

static void collect_versions(qh_provenance *p)
{
    unsigned maj = 0, min = 0, rel = 0;
    if (H5get_libversion(&maj, &min, &rel) >= 0)
        snprintf(p->hdf5_version, sizeof p->hdf5_version, "%u.%u.%u", maj, min, rel);
    else
        copy_str(p->hdf5_version, sizeof p->hdf5_version, "unknown");
    if (strcmp(gsl_version, GSL_VERSION) == 0)
        copy_str(p->gsl_version, sizeof p->gsl_version, gsl_version);
    else                                     /* run-time library differs from the headers */
        snprintf(p->gsl_version, sizeof p->gsl_version, "%s (built with %s)", gsl_version,
                 GSL_VERSION);
    copy_str(p->cjson_version, sizeof p->cjson_version, cJSON_Version());
    qh_blas_info_t b = qh_blas_info();
    copy_str(p->blas_config, sizeof p->blas_config, b.config);
    copy_str(p->blas_core, sizeof p->blas_core, b.core);
    p->blas_threads = b.threads;
}

static int env_cmp(const void *a, const void *b)
{
    return strcmp(((const qh_provenance_env *)a)->name, ((const qh_provenance_env *)b)->name);
}

static int env_wanted(const char *entry)
{
    return strncmp(entry, "OPENBLAS_", 9) == 0 || strncmp(entry, "OMP_NUM_THREADS=", 16) == 0;
}

static void collect_env(qh_provenance *p)
{
    p->n_env = p->n_env_dropped = 0;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || !env_wanted(*e))
            continue;
        if (p->n_env == QH_PROVENANCE_MAX_ENV) {
            p->n_env_dropped++;
            continue;
        }
        qh_provenance_env *v = &p->env[p->n_env++];
        snprintf(v->name, sizeof v->name, "%.*s", (int)(eq - *e), *e);
        snprintf(v->value, sizeof v->value, "%s", eq + 1);
    }
    qsort(p->env, p->n_env, sizeof p->env[0], env_cmp);   /* environ order varies */
}

static void now_iso8601(char *out, size_t cap, int fixed)
{
    struct tm tm;
    time_t t = time(NULL);
    if (fixed || !gmtime_r(&t, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        copy_str(out, cap, fixed ? QH_PROVENANCE_FIXED_TIME : "unknown");
}

void qh_provenance_collect(qh_provenance *p)
{
    memset(p, 0, sizeof *p);
    p->fixed = fixed_mode();
    now_iso8601(p->start_time, sizeof p->start_time, p->fixed);
    collect_git(p);
    copy_str(p->compiler, sizeof p->compiler, QH_COMPILER);
    p->optimize = QH_BUILT_OPTIMIZED;
    p->sanitize = QH_BUILT_SANITIZED;
    collect_versions(p);
    if (p->fixed || gethostname(p->host, sizeof p->host) != 0)
        copy_str(p->host, sizeof p->host, p->fixed ? QH_PROVENANCE_FIXED_HOST : "unknown");
    p->host[sizeof p->host - 1] = '\0';      /* gethostname may not terminate a long name */
    collect_env(p);
}

void qh_provenance_finish(qh_provenance *p)
{
    now_iso8601(p->end_time, sizeof p->end_time, p->fixed);
}

static int write_strings(qh_results *w, const qh_provenance *p)
{
    const struct { const char *name, *value; } s[] = {
        { "git_commit", p->git_commit },
        { "compiler", p->compiler },
        { "build_note", "CFLAGS are not recorded; see compiler, optimize, sanitize and the "
                        "Makefile at git_commit" },
        { "hdf5_version", p->hdf5_version },
        { "gsl_version", p->gsl_version },
        { "cjson_version", p->cjson_version },
        { "openblas_config", p->blas_config },
        { "openblas_core", p->blas_core },
        { "host", p->host },
        { "start_time", p->start_time },
        { "end_time", p->end_time },
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        QH_TRY(qh_results_attr_string(w, "/provenance", s[i].name, s[i].value));
    return QH_OK;
}

int qh_provenance_write(qh_results *w, const qh_provenance *p)
{
    QH_TRY(write_strings(w, p));
    const struct { const char *name; int64_t value; } n[] = {
        { "git_dirty", p->git_dirty },
        { "optimize", p->optimize },
        { "sanitize", p->sanitize },
        { "openblas_threads", p->blas_threads },
        { "fixed", p->fixed },
        { "env_dropped", (int64_t)p->n_env_dropped },
    };
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
        QH_TRY(qh_results_attr_int(w, "/provenance", n[i].name, n[i].value));
    QH_TRY(qh_results_group(w, "/provenance/env"));
    for (size_t i = 0; i < p->n_env; i++)
        QH_TRY(qh_results_attr_string(w, "/provenance/env", p->env[i].name, p->env[i].value));
    return QH_OK;
}
