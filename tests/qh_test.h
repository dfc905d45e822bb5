/* qh_test.h -- minimal test harness: counted checks, a summary line that
 * tests/run.sh adds up, and skips for missing prerequisites. */
#ifndef QH_TEST_H
#define QH_TEST_H

#undef NDEBUG
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int qh_n_pass, qh_n_fail, qh_n_skip;

#define QH_CHECK(cond, ...)                                                         \
    do { if (cond) qh_n_pass++;                                                     \
         else { qh_n_fail++; printf("FAIL: "); printf(__VA_ARGS__);                 \
                printf("  [%s:%d]\n", __FILE__, __LINE__); fflush(stdout); } } while (0)
/* |got - want| <= atol + rtol*|want|; NaN fails. */
#define QH_CHECK_CLOSE(got, want, atol, rtol, ...)                                  \
    QH_CHECK(fabs((double)(got) - (double)(want))                                   \
             <= (atol) + (rtol) * fabs((double)(want)), __VA_ARGS__)
#define QH_SKIP(...)                                                                \
    do { qh_n_skip++; printf("SKIP: "); printf(__VA_ARGS__); printf("\n"); } while (0)
/* Prints a progress note (not counted). */
#define QH_NOTE(...) do { printf("note: "); printf(__VA_ARGS__); printf("\n"); } while (0)

static inline int qh_test_summary(void)
{
    printf("%d passed, %d failed, %d skipped\n", qh_n_pass, qh_n_fail, qh_n_skip);
    return qh_n_fail ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Heavy tests shorten themselves when QH_TEST_FAST is set (the sanitizer run). */
static inline int qh_test_fast(void)
{
    const char *s = getenv("QH_TEST_FAST");
    return s && *s && *s != '0';
}

#endif
