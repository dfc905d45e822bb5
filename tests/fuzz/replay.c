/* replay.c -- runs a fuzz target without libFuzzer: each argument is a file
 * or a folder whose regular files (sorted by name) are fed, one by one, to
 * the target's LLVMFuzzerTestOneInput.  Linked with each tests/fuzz/fuzz_*.c
 * and the suite's compiler and flags (so under ASan + UBSan in
 * `make test-asan`), it is the regression replay of tests/test_fuzz_replay.sh.
 * A defect aborts (sanitizer report or a target's abort()); the line naming
 * the input comes first.  Exit: 0 when every input ran, 2 when an argument
 * or an input cannot be read. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The whole file in a new buffer (at least one byte, so an empty input is a
 * valid pointer as libFuzzer passes it); NULL when unreadable. */
static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            uint8_t *p = realloc(buf, cap = cap ? 2 * cap : 65536);
            if (!p) { free(buf); fclose(f); return NULL; }
            buf = p;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return NULL; }
    *size = n;
    return buf;
}

static int run_file(const char *path)
{
    size_t size = 0;
    uint8_t *data = read_all(path, &size);
    if (!data) { fprintf(stderr, "replay: cannot read %s\n", path); return 2; }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of dir whose name does not start with '.' (README-like
 * notes are named so), in name order; *count gets how many ran. */
static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) { fprintf(stderr, "replay: cannot read folder %s\n", dir); return 2; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!p) { fprintf(stderr, "replay: out of memory listing %s\n", dir); rc = 2; break; }
            names = p;
        }
        if (!(names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2))) {
            fprintf(stderr, "replay: out of memory listing %s\n", dir);
            rc = 2;
            break;
        }
        sprintf(names[n++], "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (rc == 0 && stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
            rc = run_file(names[i]);
            *count += rc == 0;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|FOLDER...  (feeds each input to the target)\n", argv[0]);
        return 2;
    }
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: no such file or folder %s\n", argv[i]);
            return 2;
        }
        int rc = S_ISDIR(sb.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i]);
        if (rc) return rc;
        count += !S_ISDIR(sb.st_mode);
    }
    printf("replay: %zu inputs ran\n", count);
    return 0;
}
