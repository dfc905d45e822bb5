/* qh_path.c -- checked formatting of paths (see qh_path.h). */
#include "qh_path.h"

#include <stdarg.h>
#include <stdio.h>

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
