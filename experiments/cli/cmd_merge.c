/* cmd_merge.c -- `qh merge DIR -o FILE`: copies every complete cell file of
 * DIR (/run status 0) into one HDF5 file, /runs/<cell id>, with
 * qh_results_merge (results/writer.h); DIR is listed by qh_results_scan_dir
 * (results/reader.h).  Incomplete and unreadable files are listed on stderr
 * and counted; temporary files are skipped.  A file that could not be read
 * or copied makes the exit status 1 (the merged file is still written), so
 * that a script or the Slurm merge job does not take a partial merge for a
 * whole one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "results/reader.h"
#include "results/writer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: qh merge DIR -o FILE\n"
            "  copies every complete cell file DIR/*.h5 (/run status 0) into FILE as\n"
            "  /runs/<cell id>; lists the incomplete and unreadable ones\n"
            "Exit status: 0 when every .h5 file was read (incomplete cells, listed, and\n"
            "temporary files, skipped, do not count); 1 when some file could not be read\n"
            "or copied (FILE is still written with the others, and a summary line says\n"
            "how many were skipped) or nothing could be merged; 2 on usage.\n");
}

/* 1 if a and b name the same existing file. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev
           && sa.st_ino == sb.st_ino;
}


/* The run name of a cell file: its base name without ".h5" (new string). */
static char *run_name(const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t len = strlen(base);
    return strndup(base, len >= 3 ? len - 3 : len);
}

int qh_cmd_merge(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "qh merge: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!dir || !out) {
        usage(stderr);
        return 2;
    }
    char **paths = NULL, **warnings = NULL, **names = NULL;
    const char **complete = NULL;
    size_t n_paths = 0, n_warnings = 0, n_complete = 0, n_incomplete = 0, n_unreadable = 0;
    int rc = 1;
    if (qh_results_scan_dir(dir, &paths, &n_paths, &warnings, &n_warnings) != QH_OK) {
        fprintf(stderr, "qh merge: %s\n", qh_last_error());
        return 1;
    }
    for (size_t i = 0; i < n_warnings; i++)
        fprintf(stderr, "qh merge: warning: %s\n", warnings[i]);
    if (n_paths == 0) {
        fprintf(stderr, "qh merge: no .h5 files in %s\n", dir);
        goto cleanup;
    }
    complete = calloc(n_paths, sizeof *complete);
    names = calloc(n_paths, sizeof *names);
    if (!complete || !names) {
        fprintf(stderr, "qh merge: out of memory\n");
        goto cleanup;
    }
    for (size_t i = 0; i < n_paths; i++) {
        int status;
        char msg[512];
        if (same_file(paths[i], out))
            continue;                /* an earlier merge output inside DIR */
        if (qh_results_read_status(paths[i], &status) != QH_OK) {
            fprintf(stderr, "qh merge: warning: skipping %s\n", qh_last_error());
            n_unreadable++;
        } else if (status != QH_OK) {
            qh_results_read_message(paths[i], msg, sizeof msg);
            fprintf(stderr, "qh merge: incomplete: %s (status %d %s: %s)\n", paths[i], status,
                    qh_status_name(status), msg[0] ? msg : "no message");
            n_incomplete++;
        } else {
            if (!(names[n_complete] = run_name(paths[i]))) {
                fprintf(stderr, "qh merge: out of memory\n");
                goto cleanup;
            }
            complete[n_complete++] = paths[i];
        }
    }
    if (n_complete == 0) {
        fprintf(stderr, "qh merge: no complete cell files in %s (%zu incomplete, %zu "
                "unreadable); %s not written\n", dir, n_incomplete, n_unreadable, out);
        goto cleanup;
    }
    size_t n_missing = 0;
    if (qh_results_merge(complete, n_complete, (const char *const *)names, out, &n_missing)
        != QH_OK) {
        fprintf(stderr, "qh merge: %s\n", qh_last_error());
        goto cleanup;
    }
    if (n_missing)
        fprintf(stderr, "qh merge: warning: %s\n", qh_last_error());
    printf("merged %zu complete cells into %s (%zu incomplete, %zu unreadable, %zu failed to "
           "copy, %zu temporary files skipped)\n", n_complete - n_missing, out, n_incomplete,
           n_unreadable, n_missing, n_warnings);
    rc = n_unreadable || n_missing;
    if (rc)
        fprintf(stderr, "qh merge: %zu unreadable and %zu uncopyable files skipped; %s lacks "
                "them (exit status 1)\n", n_unreadable, n_missing, out);
cleanup:
    for (size_t i = 0; names && i < n_complete; i++)
        free(names[i]);
    free(names);
    free(complete);
    qh_h5_free_names(paths, n_paths);
    qh_h5_free_names(warnings, n_warnings);
    return rc;
}
