/* qh_pvq.h -- pyramid vector quantization (Fischer 1986; the enumeration and
 * pulse search of xiph/opus `celt/cwrs.c`, `celt/vq.c`; PVQ for LLM weights:
 * van der Ouderaa et al. 2024, arXiv 2410.16926; methods reference §11).
 *
 * The pyramid P(N, K) = {y ∈ ℤᴺ : Σ|y_i| = K}; codewords are y/‖y‖.
 *
 * Counting.  V(N, 0) = 1, V(0, K > 0) = 0,
 *   V(N, K) = V(N−1, K) + V(N, K−1) + V(N−1, K−1)
 * (= Σ_{k≥1} 2^k C(N,k) C(K−1,k−1)).  Exact counts are uint64: a size whose
 * count reaches 2^64 is refused with QH_EINVAL naming N and K (limit: index
 * bits log₂V(N, K) < 64, e.g. N = K = 16 needs 37.1 bits, N = 16 at 4 bits
 * per weight K = 58 needs 63.7; N = 32 at 3 bits does not fit: split the
 * vector).  log₂V in double precision has no such limit (up to 2^1024).
 *
 * Enumeration (our order, O(NK) table lookups).  Values of a coordinate are
 * ordered 0, +1, −1, +2, −2, ...  At coordinate i with n' = N−i−1 coordinates
 * after it and pulse budget k, value v contributes
 *   V(n', k) + Σ_{j=1}^{|v|−1} 2 V(n', k−j)   (|v| ≥ 1: the blocks of smaller |v|)
 *   + V(n', k−|v|)                             (v < 0: the block of +|v| first)
 * and k −= |v|.  The last coordinate is forced to ±k, so only its sign adds.
 * Decoding subtracts the same blocks.
 *
 * Search (maximum cosine ⟨|x|, y⟩/‖y‖ over the pyramid, opus's greedy):
 *   1. work on |x|;  2. if K > N/2, pre-project y_i = ⌊(K + 0.8)|x_i|/Σ|x|⌋
 *   (Σy ≤ K);  3. add the remaining pulses one at a time at the j maximising
 *   (Σ|x|y + |x_j|)² / (Σy² + 2y_j + 1), compared by cross-multiplication;
 *   4. restore the signs of x.  The greedy is exact for the maximum-cosine
 *   criterion only up to its greedy choices: on small pyramids (N ≤ 4, K ≤ 6,
 *   Gaussian x) it is cosine-optimal in 296 of 300 random cases against brute
 *   force (tests/test_pvq.c; the reference reports 291/300).
 *
 * Hessian-aware search: for a target w, a PSD metric M (D x D) and a gain g,
 * minimise f(y) = (w − g·ŷ)ᵀ M (w − g·ŷ), ŷ = y/‖y‖, i.e. with a = M w,
 * s1 = aᵀy, s2 = yᵀMy, yy = ‖y‖²:
 *   f(y) = wᵀMw − 2g·s1/√yy + g²·s2/yy.
 * One pulse at j with sign σ changes s1 by σa_j, s2 by 2σ(My)_j + M_jj and yy
 * by 2|y_j| + 1, so each candidate costs O(1) and each accepted pulse O(N)
 * (the update of My).  Start: the pre-projection of |w| (signs of w); then
 * pulses are added greedily by f; then a few "move one pulse from i to j"
 * steps that lower f (O(N²) each).  Greedy again, not exact (optimal in the
 * H metric in 291 of 300 small random cases of tests/test_pvq.c).
 *
 * Left out: opus's fixed-point arithmetic and its U(N, K) row tables (O(K)
 * memory per row; we keep the full (N+1) x (K+1) table), bignum indices.
 */
#ifndef QH_PVQ_H
#define QH_PVQ_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"

/* Exact V(N, K) into *count (V(0, K > 0) = 0).  Returns QH_OK; QH_EINVAL when
 * the count would reach 2^64 (the message names N and K and the index bits it
 * would need); QH_ENOMEM. */
int qh_pvq_count(unsigned N, unsigned K, uint64_t *count) QH_MUST_CHECK;

/* log₂V(N, K) by the recurrence in double precision (exact below 2^53;
 * relative error ~1e-15 above).  −INFINITY for V = 0, +INFINITY beyond
 * double range. */
double qh_pvq_log2_count(unsigned N, unsigned K);

/* The counting table of one size: V(n, k) for n ≤ N, k ≤ K. */
typedef struct {
    unsigned N, K;
    uint64_t *V;                     /* (N+1) x (K+1), V[n·(K+1) + k]; owns */
} qh_pvq_table;

/* Builds the table.  Returns QH_OK; QH_EINVAL for N = 0 or when V(N, K)
 * reaches 2^64 (message names N and K and the index bits it would need);
 * QH_ENOMEM.  On error *t is left freeable. */
int qh_pvq_table_init(qh_pvq_table *t, unsigned N, unsigned K) QH_MUST_CHECK;
void qh_pvq_table_free(qh_pvq_table *t);
static inline uint64_t qh_pvq_table_at(const qh_pvq_table *t, unsigned n, unsigned k)
{
    return t->V[(size_t)n * (t->K + 1) + k];
}

/* Index of the pyramid point y (N entries, Σ|y_i| = K) in [0, V(N, K)).
 * Returns QH_OK, or QH_EINVAL when Σ|y_i| ≠ K. */
int qh_pvq_encode(const qh_pvq_table *t, const int *y, uint64_t *index) QH_MUST_CHECK;
/* The point of index into y (N entries).  QH_EINVAL when index ≥ V(N, K). */
int qh_pvq_decode(const qh_pvq_table *t, uint64_t index, int *y) QH_MUST_CHECK;

/* Greedy pulse search (file header): y (N entries) with Σ|y_i| = K and signs
 * of x, approximately maximising ⟨x, y⟩/‖y‖.  x = 0 puts all pulses on
 * coordinate 0.  K = 0 gives y = 0. */
void qh_pvq_search(const double *x, unsigned N, unsigned K, int *y);

/* Hessian-aware search (file header): w (N), M (N x N column-major, leading
 * dimension ldm, symmetric PSD), gain g > 0, K ≥ 1 pulses, max_moves pulse
 * moves after the greedy fill.  scratch: 2N doubles.  Writes y (N entries,
 * Σ|y_i| = K) and returns f(y) − wᵀMw = −2g·s1/√yy + g²·s2/yy. */
double qh_pvq_search_hessian(const double *w, const double *M, size_t ldm, unsigned N, unsigned K,
                             double g, int max_moves, int *y, double *scratch);

/* Largest K ≥ 1 with log₂V(D, K) + amp_bits ≤ bits·D (amp_bits = 0 gives the
 * shape-only table of the reference: D = 8 at 2 bits → K = 6).  Returns QH_OK,
 * or QH_EINVAL when not even K = 1 fits (message names D, bits, amp_bits).
 * K is searched up to 1 000 000. */
int qh_pvq_choose_k(unsigned D, double bits, int amp_bits, unsigned *K) QH_MUST_CHECK;

/* Amplitude levels in units of the row norm for groups of D of a row of n:
 * a group's share of ‖row‖² for an i.i.d. Gaussian (rotated) row is
 * Beta(D/2, (n−D)/2); the L = 2^amp_bits levels are the square roots of its
 * quantiles at (l + ½)/L, ascending, in (0, 1).  For n = D (one group, share
 * 1) the levels are uniform, (l + 1)/L.  levels: L doubles.
 * Returns QH_OK or QH_EINVAL (D = 0, n not a multiple of D, amp_bits outside 1..12). */
int qh_pvq_amp_levels(unsigned D, size_t n, int amp_bits, double *levels) QH_MUST_CHECK;

/* Index of the level nearest to a (levels ascending, L of them). */
size_t qh_pvq_nearest_level(const double *levels, size_t L, double a);

#endif
