/* vexp.c -- see vexp.h. */
#include "model/vexp.h"

#include <string.h>

/* The loops vectorise only when the compiler may assume that float
 * comparisons do not trap (the selects below become blends) and uses its
 * full vectoriser, which -O2 does not; neither changes a result.  On x86-64
 * the array loops are built twice, for AVX2 and for the baseline (SSE2), and
 * the loader picks one per machine (GCC builds); the bits are the same. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic", "no-trapping-math")
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)   /* clang 14 emits no resolver
                                                                        for calls from other files */
#define VEXP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VEXP_CLONES
#endif

#define VEXP_HI 88.7228f              /* above: exp overflows float */
#define VEXP_LO (-87.3365f)           /* below: 2^n leaves the normal range */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f           /* 8 significant bits: n LN2_HI is exact */
#define LN2_LO (-2.12194440e-4f)
#define ROUND_MAGIC 12582912.0f       /* 1.5 2^23: adding it rounds to an integer */

static inline float exp_core(float x)
{
    float xc = x > VEXP_LO ? (x < VEXP_HI ? x : VEXP_HI) : VEXP_LO;   /* NaN: LO, no UB below */
    float n = (xc * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    float r = (xc - n * LN2_HI) - n * LN2_LO;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int bits = ((int)n + 127) << 23;     /* 2^n, n in [-126, 128] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = n > 127.5f ? 2.0f * (p * 1.70141183e38f) : p * scale;   /* n = 128: 2^127, then 2 */
    y = x > VEXP_HI ? __builtin_inff() : y;
    y = x < VEXP_LO ? 0.0f : y;
    return x != x ? x : y;
}

float qh_vexpf(float x)
{
    return exp_core(x);
}

VEXP_CLONES
double qh_vexp_shifted_sum(float *x, size_t n, float shift)
{
    double part[8] = { 0 };
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            float e = exp_core(x[i + k] - shift);
            x[i + k] = e;
            part[k] += (double)e;
        }
    for (int k = 0; i < n; i++, k++) {
        float e = exp_core(x[i] - shift);
        x[i] = e;
        part[k] += (double)e;
    }
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

VEXP_CLONES
void qh_vsilu(float *a, const float *u, size_t n)
{
    if (u)
        for (size_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + exp_core(-a[i])) * u[i];
    else
        for (size_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + exp_core(-a[i]));
}
