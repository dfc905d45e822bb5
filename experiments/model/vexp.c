/* vexp.c -- see vexp.h. */
#include "model/vexp.h"

#include <stdint.h>
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

/* The eight partial sums of the array loops, combined in one fixed order
 * (pairwise), so that a sum does not depend on the vector width. */
static inline double sum8(const double part[8])
{
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
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
    return sum8(part);
}

VEXP_CLONES
void qh_vsilu(float *a, const float *u, size_t n)
{
    if (u)
        for (size_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + exp_core(-a[i])) * u[i];
    else
        for (size_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + exp_core(-a[i]));
}

/* ---- double: the evaluation's log-sum-exp -------------------------------- */

#define VEXPD_LO (-708.0)               /* below: e^x < 2^-1021, nothing beside a term of 1 */
#define VEXPD_HI 709.0                  /* 2^n stays a normal double */
#define LOG2E_D 1.4426950408889634
#define LN2_HI_D 6.93147180369123816490e-01    /* 32 significant bits: n LN2_HI_D is exact */
#define LN2_LO_D 1.90821492927058770002e-10
#define ROUND_MAGIC_D 6755399441055744.0      /* 1.5 2^52 */

/* exp(x) in double: Cody-Waite as exp_core, e^r by Taylor to degree 13
 * (truncation below 5e-18 relative for |r| <= ln 2 / 2); x below VEXPD_LO
 * gives 0, x above VEXPD_HI is out of its range, NaN gives NaN. */
static inline double exp_core_d(double x)
{
    double xc = x > VEXPD_LO ? (x < VEXPD_HI ? x : VEXPD_HI) : VEXPD_LO;   /* NaN: LO */
    double t = xc * LOG2E_D + ROUND_MAGIC_D;      /* n sits in t's low mantissa bits */
    double n = t - ROUND_MAGIC_D;
    double r = (xc - n * LN2_HI_D) - n * LN2_LO_D;
    double p = 1.0 / 6227020800.0;      /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n, n in [-1021, 1023], from t's bits: their low 12 bits are n mod 2^12,
     * so (bits + 1023) << 52 is 2^n's exponent field (an integer add and
     * shift, which vectorise where a double-to-int64 conversion does not) */
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023u) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double y = x < VEXPD_LO ? 0.0 : p * scale;
    return x != x ? x : y;
}

double qh_vexp_d(double x)
{
    return exp_core_d(x);
}

VEXP_CLONES
double qh_vexp_sum_d(const float *x, size_t n, double shift)
{
    double part[8] = { 0 };
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) part[k] += exp_core_d((double)x[i + k] - shift);
    for (int k = 0; i < n; i++, k++) part[k] += exp_core_d((double)x[i] - shift);
    return sum8(part);
}
