/* provenance.h -- what varies between reruns of one experiment, stored under
 * /provenance of every results file so that the rest of the file can be
 * compared byte for byte.
 *
 * Collected: git commit and dirty flag (from `git` run in the current
 * directory, once per process; "unknown" / -1 when git or the repository is unavailable;
 * for people: the protocol record identifies the code by its sources, code.sources),
 * compiler version (__VERSION__) and whether it optimised (__OPTIMIZE__) --
 * the full CFLAGS are not known to the code, which says so in build_note --,
 * HDF5, GSL and cJSON versions, OpenBLAS config, core and threads, the host
 * name, start and end time (ISO 8601 UTC), and every OPENBLAS_* variable plus
 * OMP_NUM_THREADS.
 *
 * Test-only override: with QH_PROVENANCE_FIXED=1 in the environment, host and
 * both times are fixed strings (QH_PROVENANCE_FIXED_HOST, _TIME) so that two
 * identical runs in one environment give byte-identical whole files (a
 * cmp-based test).  The file records the override in the attribute "fixed".
 */
#ifndef QH_PROVENANCE_H
#define QH_PROVENANCE_H

#include <stddef.h>

#include "results/writer.h"

#define QH_PROVENANCE_FIXED_HOST "fixed-host"
#define QH_PROVENANCE_FIXED_TIME "2000-01-01T00:00:00Z"
#define QH_PROVENANCE_MAX_ENV 32     /* further matching variables are counted, not kept */

typedef struct {
    char name[64];
    char value[256];                 /* truncated if longer */
} qh_provenance_env;

typedef struct {
    char git_commit[64];             /* 40 hex digits or "unknown" */
    int git_dirty;                   /* 1 dirty, 0 clean, -1 unknown */
    char compiler[128];              /* "gcc " __VERSION__ (or clang's) */
    int optimize;                    /* 1 if built with __OPTIMIZE__ */
    int sanitize;                    /* 1 if built with AddressSanitizer */
    char hdf5_version[32];           /* run-time library, "1.10.8" */
    char gsl_version[32];            /* run-time library */
    char cjson_version[32];          /* run-time library */
    char blas_config[256];           /* openblas_get_config() */
    char blas_core[64];              /* openblas_get_corename() */
    int blas_threads;                /* openblas_get_num_threads() at collection */
    char host[256];
    char start_time[32];             /* "YYYY-MM-DDTHH:MM:SSZ" */
    char end_time[32];               /* "" until qh_provenance_finish */
    int fixed;                       /* 1 under QH_PROVENANCE_FIXED=1 */
    size_t n_env;                    /* entries of env, sorted by name */
    size_t n_env_dropped;            /* matching variables beyond QH_PROVENANCE_MAX_ENV */
    qh_provenance_env env[QH_PROVENANCE_MAX_ENV];
} qh_provenance;

/* Fills p (caller-provided) and sets start_time to now.  Never fails: what
 * cannot be found is "unknown".  Runs `git` twice through popen (stderr
 * discarded), in the current directory. */
void qh_provenance_collect(qh_provenance *p);

/* Sets end_time to now (or the fixed time). */
void qh_provenance_finish(qh_provenance *p);

/* Writes p as attributes of group /provenance and the environment variables
 * as attributes of /provenance/env (name = value).
 * Return: QH_OK or the writer's status (QH_EIO, QH_ENOMEM). */
int qh_provenance_write(qh_results *w, const qh_provenance *p) QH_MUST_CHECK;

#endif
