/* vexp.h -- exp for the forward pass's element-wise loops, in a form the
 * compiler vectorises (glibc's expf is a scalar call per element).
 *
 * exp(x) = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 split in two
 * constants (Cody and Waite), |r| <= ln 2 / 2, e^r by its Taylor polynomial
 * to degree 7 (truncation below 6e-9 relative).  Measured against exp() in
 * double (tests/test_forward.c): at most 2 ulp of float.  x above 88.72
 * gives +Inf, x below -87.33 gives 0 (expf would give a subnormal, which
 * no sum that includes a term near 1 can see), NaN gives NaN.  Every
 * operation is an IEEE float operation without contraction (ISO C's
 * default), so the scalar and vector forms give the same bits, and the
 * results do not depend on the instruction set the loops are built for.
 * The forward's softmax and SiLU and the block tape's (backward.c) use it,
 * so the two agree bit for bit. */
#ifndef QH_VEXP_H
#define QH_VEXP_H

#include <stddef.h>

/* exp(x), as above. */
float qh_vexpf(float x);

/* x[i] = exp(x[i] - shift) for i < n, in place; returns the sum of the new
 * values accumulated in double (eight partial sums, combined in a fixed
 * order, so the result does not depend on the vector width). */
double qh_vexp_shifted_sum(float *x, size_t n, float shift);

/* a[i] = silu(a[i]) = a[i] / (1 + exp(-a[i])), times u[i] when u is not
 * NULL (a gated MLP's up projection). */
void qh_vsilu(float *a, const float *u, size_t n);

/* exp(x) in double for x <= 709 (the evaluation's log-sum-exp, whose
 * arguments are logits minus their maximum, so at most 0), as qh_vexpf in
 * double: Taylor to degree 13, at most 2 ulp of double against glibc's exp
 * (measured in tests/test_forward.c); x below -708 gives 0 instead of a
 * subnormal, NaN gives NaN. */
double qh_vexp_d(double x);

/* sum over i < n of qh_vexp_d((double)x[i] - shift), shift >= every x[i],
 * in eight partial sums combined in a fixed order, as qh_vexp_shifted_sum. */
double qh_vexp_sum_d(const float *x, size_t n, double shift);

#endif
