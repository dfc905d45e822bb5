/* qh_error.c -- thread-local last-error buffer (see qh_error.h). */
#include "qh_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

int qh_error(int status, const char *file, int line, const char *func, const char *fmt, ...)
{
    (void)file; (void)line; (void)func;   /* messages are for users: no source locations */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void qh_error_prefix(const char *fmt, ...)
{
    char joined[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(joined, sizeof joined, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    size_t used = (size_t)k < sizeof joined ? (size_t)k : sizeof joined - 1;
    size_t room = sizeof joined - used;                 /* includes the NUL */
    if (room > 2) {
        memcpy(joined + used, ": ", 2);
        size_t keep = strnlen(last_error, room - 3);
        memcpy(joined + used + 2, last_error, keep);
        joined[used + 2 + keep] = '\0';
    }
    memcpy(last_error, joined, sizeof last_error);
}

const char *qh_last_error(void) { return last_error; }
void qh_error_clear(void) { last_error[0] = '\0'; }

const char *qh_status_name(int status)
{
    static const char *const names[] = {
        "ok", "invalid input", "size mismatch", "out of memory", "not positive definite",
        "non-finite value", "i/o error", "configuration error", "not implemented",
    };
    if (status >= 0 && status < (int)(sizeof names / sizeof names[0])) return names[status];
    return "unknown status";
}

_Noreturn void qh_abort(const char *file, int line, const char *func, const char *expr)
{
    fprintf(stderr, "qharness: internal error: assertion '%s' failed in %s (%s:%d)\n",
            expr, func, file, line);
    abort();
}
