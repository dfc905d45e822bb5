/* hash_cache.c -- see hash_cache.h. */
#include "pipeline/hash_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIN_BYTES_DEFAULT (64LL << 20)
#define MAX_LINES 4096               /* oldest lines dropped beyond this */

qh_file_key qh_file_key_of(const struct stat *sb)
{
    return (qh_file_key){ (unsigned long long)sb->st_dev, (unsigned long long)sb->st_ino,
                       (long long)sb->st_size, (long long)sb->st_mtim.tv_sec,
                       (long long)sb->st_mtim.tv_nsec, (long long)sb->st_ctim.tv_sec,
                       (long long)sb->st_ctim.tv_nsec };
}

int qh_file_key_same(const qh_file_key *a, const qh_file_key *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_s == b->mtime_s
           && a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s && a->ctime_ns == b->ctime_ns;
}

/* The cache file's path into buf, or 0 when the cache is off or has no home. */
static int cache_path(char *buf, size_t n)
{
    const char *env = getenv("QH_HASH_CACHE"), *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int len;
    if (env && *env) {
        if (!strcmp(env, "off")) return 0;
        len = snprintf(buf, n, "%s", env);
    } else if (xdg && *xdg) {
        len = snprintf(buf, n, "%s/qh/file-sha256", xdg);
    } else if (home && *home) {
        len = snprintf(buf, n, "%s/.cache/qh/file-sha256", home);
    } else {
        return 0;
    }
    return len > 0 && (size_t)len < n;
}

static int wanted(const qh_file_key *key)
{
    const char *env = getenv("QH_HASH_CACHE_MIN");
    long long min = env && *env ? atoll(env) : MIN_BYTES_DEFAULT;
    return key->size >= min;
}

/* One line into key and hex; 0 for a malformed line. */
static int parse_line(const char *line, qh_file_key *k, char hex[65])
{
    char h[80];
    if (sscanf(line, "%llu %llu %lld %lld %lld %lld %lld %79s", &k->dev, &k->ino, &k->size,
               &k->mtime_s, &k->mtime_ns, &k->ctime_s, &k->ctime_ns, h) != 8 || strlen(h) != 64
        || strspn(h, "0123456789abcdef") != 64)
        return 0;
    memcpy(hex, h, 65);
    return 1;
}

int qh_hash_cache_lookup(const qh_file_key *key, char hex[65])
{
    char path[1100], line[256], h[65];
    if (!wanted(key) || !cache_path(path, sizeof path)) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    qh_file_key k;
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (parse_line(line, &k, h) && qh_file_key_same(&k, key)) {
            memcpy(hex, h, 65);
            found = 1;                   /* the last matching line wins */
        }
    fclose(f);
    return found;
}

/* mkdir -p of path's folder (its parents included); failures show at fopen. */
static void make_parent(const char *path)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0777) != 0 && errno != EEXIST) return;
            *p = '/';
        }
}

void qh_hash_cache_store(const qh_file_key *key, const char hex[65])
{
    char path[1100], tmp[1200], line[256], h[65];
    if (!wanted(key) || !cache_path(path, sizeof path)) return;
    make_parent(path);
    char (*keep)[256] = malloc(MAX_LINES * sizeof *keep);
    if (!keep) return;
    size_t n = 0;
    qh_file_key k;
    FILE *in = fopen(path, "r");
    while (in && fgets(line, sizeof line, in))
        if (parse_line(line, &k, h) && !qh_file_key_same(&k, key)) {
            if (n == MAX_LINES) { memmove(keep, keep + 1, (MAX_LINES - 1) * sizeof *keep); n--; }
            snprintf(keep[n++], sizeof *keep, "%s", line);
        }
    if (in) fclose(in);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *out = fopen(tmp, "w");
    if (out) {
        for (size_t i = 0; i < n; i++) fputs(keep[i], out);
        fprintf(out, "%llu %llu %lld %lld %lld %lld %lld %s\n", key->dev, key->ino, key->size,
                key->mtime_s, key->mtime_ns, key->ctime_s, key->ctime_ns, hex);
        int bad = ferror(out);
        bad |= fclose(out) != 0;
        if (bad || rename(tmp, path) != 0) remove(tmp);
    }
    free(keep);
}
