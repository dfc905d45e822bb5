/* hash_cache.h -- SHA-256 of large files remembered across processes.
 *
 * Every `qh run` process (a Slurm task, a resumed sweep) hashes the model's
 * files for the protocol record, and a 7B model's 13.5 GB take 1.5 to 2
 * minutes to read.  This cache keeps the hashes of files of at least
 * QH_HASH_CACHE_MIN bytes (default 64 MiB) in one text file, a line per file:
 *     device inode size mtime_s mtime_ns ctime_s ctime_ns sha256
 * A line is used only when all seven numbers equal the file's stat(): any
 * write to the file changes its ctime, which no user tool can set back, so a
 * changed file is hashed again (the check git's index makes).  The file is
 * $QH_HASH_CACHE, else $XDG_CACHE_HOME/qh/file-sha256, else
 * $HOME/.cache/qh/file-sha256; QH_HASH_CACHE=off turns the cache off.  A
 * missing, unreadable or malformed cache is treated as empty and a failed
 * write leaves it as it was (rewritten whole under a temporary name, then
 * renamed): the cache only saves time, it never makes a hash fail. */
#ifndef QH_HASH_CACHE_H
#define QH_HASH_CACHE_H

#include <sys/stat.h>

/* What identifies a file's contents without reading them: a write changes
 * size, mtime or, whatever mtime is set back to, ctime. */
typedef struct {
    unsigned long long dev, ino;
    long long size, mtime_s, mtime_ns, ctime_s, ctime_ns;
} qh_file_key;

qh_file_key qh_file_key_of(const struct stat *sb);
int qh_file_key_same(const qh_file_key *a, const qh_file_key *b);   /* 1: every field equal */

/* 1 and the hash in hex when the cache holds one for the file of key. */
int qh_hash_cache_lookup(const qh_file_key *key, char hex[65]);

/* Remembers hex for the file of key (files below the size threshold and a
 * disabled cache: nothing). */
void qh_hash_cache_store(const qh_file_key *key, const char hex[65]);

#endif
