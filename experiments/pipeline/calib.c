/* calib.c -- seeded calibration windows (see calib.h). */
#include "pipeline/calib.h"

#include <stdlib.h>
#include <string.h>

#include "qh_rng.h"

int qh_calib_windows(const int32_t *ids, size_t n, size_t nsamples, size_t seqlen, uint64_t seed,
                     const char *what, int32_t **windows)
{
    *windows = NULL;
    if (seqlen < 2 || nsamples == 0)
        QH_ERROR(QH_EINVAL, "%s: calibration needs seqlen >= 2 and nsamples >= 1 (got %zu, %zu)",
                 what, seqlen, nsamples);
    if (n < seqlen + 1)
        QH_ERROR(QH_EINVAL, "%s: %zu tokens, calibration windows of %zu tokens need at least %zu",
                 what, n, seqlen, seqlen + 1);
    int32_t *w = malloc(nsamples * seqlen * sizeof *w);
    if (!w) QH_ERROR(QH_ENOMEM, "%s: cannot allocate %zu calibration windows", what, nsamples);
    qh_rng r = qh_rng_stream(seed, 0, QH_RNG_CALIB);
    for (size_t s = 0; s < nsamples; s++) {
        size_t start = (size_t)qh_rng_below(&r, n - seqlen);   /* randint(0, n - L - 1) */
        memcpy(w + s * seqlen, ids + start, seqlen * sizeof *w);
    }
    *windows = w;
    return QH_OK;
}
