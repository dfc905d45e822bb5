/* qh_clock.c -- monotonic seconds (see qh_clock.h). */
#include "qh_clock.h"

#include <time.h>

double qh_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
