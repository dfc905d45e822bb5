/* qh_error.h -- status codes and error reporting for the qharness library.
 *
 * Library code never exits and never prints to stdout: it returns a status and
 * leaves a human-readable message (naming the file, key or tensor and what was
 * expected) in a thread-local buffer that the caller reads with qh_last_error().
 * Bugs (violated preconditions) abort through QH_ASSERT, which is never
 * compiled out.
 */
#ifndef QH_ERROR_H
#define QH_ERROR_H

enum qh_status {                     /* stable values: stored in results files */
    QH_OK = 0,
    QH_EINVAL = 1,                   /* bad argument or malformed input */
    QH_EBADLEN = 2,                  /* sizes or shapes disagree */
    QH_ENOMEM = 3,
    QH_ENOTPD = 4,                   /* matrix not positive definite */
    QH_ENAN = 5,                     /* NaN or Inf where finite values are required */
    QH_EIO = 6,                      /* file system error */
    QH_ECONFIG = 7,                  /* bad configuration key or value */
    QH_EUNIMPL = 8,                  /* valid request this build cannot serve */
};

#define QH_MUST_CHECK __attribute__((warn_unused_result))

/* Formats the message into the thread-local buffer and returns status. */
int qh_error(int status, const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Prepends "context: " to the current message (for callers adding a file name). */
void qh_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *qh_last_error(void);
const char *qh_status_name(int status);
void qh_error_clear(void);
_Noreturn void qh_abort(const char *file, int line, const char *func, const char *expr);

#define QH_ERROR(status, ...) \
    do { return qh_error((status), __FILE__, __LINE__, __func__, __VA_ARGS__); } while (0)
/* Sets the message and status without returning (for goto-cleanup paths). */
#define QH_SET_ERROR(var, status, ...) \
    do { (var) = qh_error((status), __FILE__, __LINE__, __func__, __VA_ARGS__); } while (0)
#define QH_ASSERT(cond) \
    do { if (!(cond)) qh_abort(__FILE__, __LINE__, __func__, #cond); } while (0)
/* Propagates a non-OK status unchanged (the message is already set). */
#define QH_TRY(expr) \
    do { int qh_try_st_ = (expr); if (qh_try_st_ != QH_OK) return qh_try_st_; } while (0)

#endif
