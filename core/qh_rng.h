/* qh_rng.h -- deterministic random streams keyed by (seed, layer, purpose).
 *
 * xoshiro256** (Blackman & Vigna, public domain algorithm) seeded through a
 * splitmix64 mix of the key.  There is no global generator: every random draw
 * in the harness comes from a stream derived here, so results depend only on
 * the configured seed and never on call order elsewhere.
 */
#ifndef QH_RNG_H
#define QH_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct { uint64_t s[4]; } qh_rng;

enum qh_rng_purpose {                /* stable values: never reuse or renumber */
    QH_RNG_SIGNS_LEFT = 1,
    QH_RNG_SIGNS_RIGHT = 2,
    QH_RNG_CALIB = 3,
    QH_RNG_CODEBOOK = 4,
    QH_RNG_ORTHO_LEFT = 5,
    QH_RNG_ORTHO_RIGHT = 6,
    QH_RNG_STOCHASTIC_ROUND = 7,
    QH_RNG_TEST = 8,
    QH_RNG_PERM_LEFT = 9,
    QH_RNG_PERM_RIGHT = 10,
    QH_RNG_SYNTHETIC = 11,
    QH_RNG_AQLM = 12,
    QH_RNG_BLOCK_DRAW = 13,          /* the block stage's random windows per step */
    QH_RNG_ROTATION = 14,            /* the random signs of a model's residual rotation */
    QH_RNG_MODEL_DRAW = 15,          /* the whole-model stage's random windows per step */
};

qh_rng   qh_rng_stream(uint64_t seed, uint32_t layer, uint32_t purpose);
uint64_t qh_rng_next(qh_rng *r);
double   qh_rng_uniform(qh_rng *r);          /* [0, 1), 53 bits */
double   qh_rng_normal(qh_rng *r);           /* N(0, 1), polar Box-Muller without caching */
uint64_t qh_rng_below(qh_rng *r, uint64_t n); /* uniform in [0, n), unbiased; n > 0 */
int      qh_rng_sign(qh_rng *r);             /* +1 or -1 */
/* k distinct indices of [0, n) into idx[0 .. k), uniformly: a partial
 * Fisher-Yates shuffle of the identity (idx holds n entries; k <= n). */
void     qh_rng_pick(qh_rng *r, size_t n, size_t k, size_t *idx);

#endif
