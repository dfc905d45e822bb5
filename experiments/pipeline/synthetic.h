/* synthetic.h -- documented generators of (W, H) test problems for `qh layer`.
 *
 *   gaussian      W ~ N(0, 1); H = X Xᵀ / (2n), X ~ N(0, 1)^(n x 2n): well conditioned.
 *   uniform       W ~ U[0, 1] (the theory's average case, §15); H as gaussian but with
 *                 rows of X scaled by 10^u, u ~ U[-1.5, 1.5]: badly scaled, like the
 *                 reference's Monte-Carlo setup.
 *   coherent      W ~ N(0, 1) with 1 % of entries multiplied by 30 (outliers); H with
 *                 eigenvectors aligned to coordinate axes: diagonal with a few large
 *                 entries plus a small dense part.  Incoherence processing should lower
 *                 both μ_W and μ_H markedly.
 *   lowrank       W ~ N(0, 1); H = X Xᵀ / k with X n x k, k = max(1, n/8), plus 1e-6·I:
 *                 tr(H^{1/2})² ≤ rank·tr H makes Theorem 3's gain visible.
 * All draws come from qh_rng_stream(seed, 0, QH_RNG_SYNTHETIC).
 */
#ifndef QH_SYNTHETIC_H
#define QH_SYNTHETIC_H

#include <stdint.h>

#include "qh_error.h"
#include "qh_mat.h"

/* W (m x n) and H (n x n) caller-allocated.  Returns QH_OK, QH_EINVAL for an
 * unknown generator (the message lists the valid ones), QH_ENOMEM. */
int qh_synthetic_problem(const char *gen, uint64_t seed, qh_matd *W, qh_matd *H) QH_MUST_CHECK;

#endif
