/* fuzz_util.h -- what the fuzz targets (tests/fuzz/fuzz_*.c) share: one
 * scratch folder per process under $TMPDIR, reused by every input, and
 * writing an input's bytes to a file in it.  The readers under test take
 * paths, so each input goes through a file as real inputs do.
 *
 * A target defines LLVMFuzzerTestOneInput (libFuzzer's entry point); it is
 * linked with libFuzzer for `make fuzz` and with tests/fuzz/replay.c for the
 * regression replay of `make test`.  A target returns 0 for every input: a
 * refused input is an error status, a defect is a sanitizer report or an
 * abort() on a broken invariant.
 */
#ifndef QH_FUZZ_UTIL_H
#define QH_FUZZ_UTIL_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qh_error.h"
#include "qh_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_path[1024];

/* Removes the scratch folder and the files in it (one level: the targets
 * make no subfolders but the ones they remove themselves). */
static inline void fuzz_dir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[2048];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (qh_path_format(path, sizeof path, "fuzz file", "%s/%s", dir, e->d_name) == QH_OK &&
            unlink(path) != 0)
            fuzz_dir_remove(path);
    }
    closedir(d);
    rmdir(dir);
}

static inline void fuzz_cleanup(void) { fuzz_dir_remove(fuzz_dir_path); }

/* The scratch folder of this process ($TMPDIR/qh-fuzz-XXXXXX), made on the
 * first call and removed at exit; aborts when it cannot be made, since no
 * input could then be tried. */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *tmp = getenv("TMPDIR");
    if (qh_path_format(fuzz_dir_path, sizeof fuzz_dir_path, "fuzz folder", "%s/qh-fuzz-XXXXXX",
                       tmp && *tmp ? tmp : "/tmp") != QH_OK || !mkdtemp(fuzz_dir_path)) {
        fprintf(stderr, "fuzz: cannot make a scratch folder under %s\n",
                tmp && *tmp ? tmp : "/tmp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir_path;
}

/* dir/name into buf (aborts when it does not fit: the names are fixed). */
static inline void fuzz_path(char *buf, size_t cap, const char *dir, const char *name)
{
    if (qh_path_format(buf, cap, "fuzz file", "%s/%s", dir, name) != QH_OK) abort();
}

/* Writes size bytes to path, replacing it; aborts on a write error (a full
 * disk is not a finding). */
static inline void fuzz_write(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        abort();
    }
}

#endif
