/* calib.h -- calibration windows drawn from a tokenized text with a seed.
 *
 * GPTQ/QuIP draw each calibration window as i = randint(0, ntok - L - 1),
 * tokens [i, i + L) (methods reference §16).  We draw the start uniformly
 * from the same range with the stream qh_rng_stream(seed, 0, QH_RNG_CALIB),
 * so the windows depend only on the text, the tokenizer and the seed.  The
 * reference's Python random stream is not reproduced (its C4 loader also
 * differs), so windows differ from the reference code's while following the
 * same distribution.
 */
#ifndef QH_CALIB_H
#define QH_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"

/* Inputs: ids (n tokens), nsamples >= 1 windows of seqlen >= 2 tokens.
 * Outputs: *windows, new (free()), nsamples x seqlen ids, window s at
 * *windows + s*seqlen.  Returns QH_OK, QH_EINVAL (text shorter than seqlen + 1
 * tokens, naming `what`), QH_ENOMEM. */
int qh_calib_windows(const int32_t *ids, size_t n, size_t nsamples, size_t seqlen, uint64_t seed,
                     const char *what, int32_t **windows) QH_MUST_CHECK;

#endif
