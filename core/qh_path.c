/* qh_path.c -- checked formatting of paths (see qh_path.h). */
#include "qh_path.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int qh_path_format(char *buf, size_t cap, const char *what, const char *fmt, ...)
{
    if (!buf || cap == 0) QH_ERROR(QH_EINVAL, "%s: no buffer", what);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0) QH_ERROR(QH_EINVAL, "%s: cannot format path", what);
    if ((size_t)n >= cap)
        QH_ERROR(QH_EINVAL, "%s: path too long (%d bytes, at most %zu): %.60s...", what, n, cap - 1, buf);
    return QH_OK;
}

int qh_path_mkdirs(const char *dir)
{
    char buf[4096];
    if (!dir || !*dir) QH_ERROR(QH_EINVAL, "folder: empty path");
    QH_TRY(qh_path_format(buf, sizeof buf, "folder", "%s", dir));
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            QH_ERROR(QH_EIO, "cannot create folder %s (%s)", buf, strerror(errno));
        *p = saved;
        if (!saved)
            break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        QH_ERROR(QH_EIO, "%s is not a folder", dir);
    return QH_OK;
}

size_t qh_path_file_bytes(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? (size_t)sb.st_size : 0;
}
