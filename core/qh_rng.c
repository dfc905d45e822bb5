/* qh_rng.c -- xoshiro256** streams (see qh_rng.h). */
#include "qh_rng.h"
#include "qh_error.h"

#include <math.h>

static uint64_t mix64(uint64_t z)                    /* splitmix64 finaliser */
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

qh_rng qh_rng_stream(uint64_t seed, uint32_t layer, uint32_t purpose)
{
    uint64_t k = mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)layer << 32 | purpose));
    qh_rng r;
    for (int i = 0; i < 4; i++)
        r.s[i] = mix64(k += 0x9e3779b97f4a7c15ULL);
    return r;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t qh_rng_next(qh_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double qh_rng_uniform(qh_rng *r) { return (double)(qh_rng_next(r) >> 11) * 0x1.0p-53; }

double qh_rng_normal(qh_rng *r)
{
    /* Polar method; the second variate is discarded so that a stream's k-th
     * normal depends on nothing but the stream. */
    double u, v, s;
    do {
        u = 2.0 * qh_rng_uniform(r) - 1.0;
        v = 2.0 * qh_rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    return u * sqrt(-2.0 * log(s) / s);
}

uint64_t qh_rng_below(qh_rng *r, uint64_t n)
{
    QH_ASSERT(n > 0);
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;    /* reject the incomplete last block */
    uint64_t x;
    do x = qh_rng_next(r); while (x >= limit);
    return x % n;
}

int qh_rng_sign(qh_rng *r) { return (qh_rng_next(r) >> 63) ? -1 : 1; }

void qh_rng_pick(qh_rng *r, size_t n, size_t k, size_t *idx)
{
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)qh_rng_below(r, n - i), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
