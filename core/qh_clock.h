/* qh_clock.h -- the one clock of the harness: seconds on the monotonic clock,
 * for timings in logs, results and benchmarks (never for anything a result
 * depends on). */
#ifndef QH_CLOCK_H
#define QH_CLOCK_H

/* Seconds since an arbitrary fixed point; differences are elapsed wall time. */
double qh_seconds(void);

#endif
