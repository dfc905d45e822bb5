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
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
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
