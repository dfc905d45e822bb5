/* qh_hadamard.h -- Hadamard matrices and fast normalized Hadamard transforms.
 *
 * The normalized transform of size h = K·2^j is 𝐇_h = (H_K ⊗ S_{2^j})/√h
 * (QuIP#, arXiv 2402.04396, "randomized Hadamard transform"), with S_p the
 * Sylvester matrix (applied by the O(p log p) fast Walsh–Hadamard transform)
 * and H_K a ±1 base matrix with H_K H_Kᵀ = K I:
 *   K = 1, and Paley construction I (q prime, q ≡ 3 mod 4, size q+1) for
 *   K = 12 (q = 11), 20 (19), 60 (59), 108 (107), 140 (139).
 * The odd parts of these K differ, so at most one K serves a given size.
 * Left out: the other QuIP# bases (28, 36, 52, 116, 124, 156, 172), which need
 * Paley II or prime-power fields; sizes they would serve are handled by the
 * caller's fallback (qh_hadamard_largest_divisor).
 *
 * Index convention (column-major Kronecker): entry i = i1·2^j + i2 with
 * i1 < K, i2 < 2^j, so a length-h vector reshaped to a 2^j x K matrix X maps
 * to S X H_Kᵀ.
 */
#ifndef QH_HADAMARD_H
#define QH_HADAMARD_H

#include <stddef.h>

#include "qh_error.h"

/* The base K (1, 12, 20, 60, 108, 140) with h = K·2^j, or 0 if none. */
size_t qh_hadamard_base_for(size_t h);

/* Largest supported size h (K·2^j) dividing n (≥ 1: 1 always divides). */
size_t qh_hadamard_largest_divisor(size_t n);

/* Fills out (K x K, column-major, ld = K) with the ±1 base matrix H_K.
 * Returns QH_OK or QH_EINVAL when K is not a supported base. */
int qh_hadamard_base(size_t K, double *out) QH_MUST_CHECK;

/* Fills out (h x h, column-major) with the unnormalized ±1 matrix H_K ⊗ S_{h/K}.
 * Returns QH_OK or QH_EINVAL for an unsupported h. For tests and small sizes. */
int qh_hadamard_dense(size_t h, double *out) QH_MUST_CHECK;

/* In-place unnormalized fast Walsh–Hadamard transform (x ← S_p x) of each of
 * ncols columns of length p (a power of two, p ≥ 1) stored with leading dimension ld. */
void qh_fwht(double *X, size_t p, size_t ncols, size_t ld);

/* In place X ← 𝐇_h X (transpose 0) or 𝐇_hᵀ X (transpose 1) for X h x ncols
 * (leading dimension ld ≥ h); 𝐇_h is orthogonal. Returns QH_OK or QH_EINVAL
 * (unsupported h), QH_ENOMEM. */
int qh_hadamard_apply(size_t h, int transpose, double *X, size_t ncols, size_t ld) QH_MUST_CHECK;

/* The same transform acting on the rows of a contiguous X (nrows x h, ld = nrows):
 * every row x becomes 𝐇_h x (transpose 0), i.e. X ← X 𝐇_hᵀ, or 𝐇_hᵀ x
 * (transpose 1). The butterflies run down whole columns, so no transpose of X
 * is needed. Returns QH_OK, QH_EINVAL (unsupported h), QH_ENOMEM. */
int qh_hadamard_apply_rows(size_t h, int transpose, double *X, size_t nrows) QH_MUST_CHECK;

#endif
