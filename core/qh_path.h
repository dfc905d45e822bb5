/* qh_path.h -- formatting into a fixed buffer that refuses to truncate, and
 * creating a folder with its parents.
 *
 * File names are built from user input (results folders, labels, model
 * folders); a silently truncated path writes or reads the wrong file.  Every
 * path the harness builds goes through qh_path_format, which fails with a
 * message naming what was being built instead.
 */
#ifndef QH_PATH_H
#define QH_PATH_H

#include <stddef.h>

#include "qh_error.h"

/* snprintf(buf, cap, fmt, ...) that returns QH_OK when the whole text fits,
 * else QH_EINVAL with a message "<what>: path too long (N bytes, at most M)"
 * (buf then holds a truncated, terminated prefix that must not be used). */
int qh_path_format(char *buf, size_t cap, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5))) QH_MUST_CHECK;

/* mkdir -p: creates dir and each missing folder above it (mode 0777 before
 * the umask).  Return: QH_OK when dir is a folder at the end; QH_EINVAL (empty
 * or too long); QH_EIO naming the folder that cannot be created, or dir when
 * it is not a folder. */
int qh_path_mkdirs(const char *dir) QH_MUST_CHECK;

/* The size in bytes of the regular file at path; 0 when path is NULL, missing
 * or not a regular file (for estimates, which must not fail on a bad path:
 * loading the file reports it). */
size_t qh_path_file_bytes(const char *path);

#endif
