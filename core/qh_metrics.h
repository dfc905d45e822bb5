/* qh_metrics.h -- per-layer quantities of the QuIP analysis (arXiv 2307.13304,
 * methods reference §1 and §15): proxy loss, μ-incoherence of H and W
 * (Definition 1), tr D of the LDL factor in a column order, tr(H^{1/2})²,
 * tr H, numerical rank and condition number.
 *
 * Conventions: W, Ŵ are m x n (out x in), H is n x n symmetric PSD, all
 * column-major double. The proxy is ℓ = tr((Ŵ−W) H (Ŵ−W)ᵀ).
 * tr D: H permuted into processing order p (p[0] quantized first) is written
 * H_p = (U̇+I) D (U̇+I)ᵀ with U̇ strictly upper, so D_k is the Schur complement
 * of column p[k] with respect to the columns processed after it (reference §1
 * form (c)); natural order (p = NULL) is the forward/OPTQ order 0..n−1 and
 * gives D_k = 1/Hinv_kk² with Hinv the upper Cholesky factor of H⁻¹.
 * μ_H = √n·max|Q_ij| over the eigenvectors from LAPACK dsyevd (not unique for
 * repeated eigenvalues: the value is the one LAPACK's basis gives).
 */
#ifndef QH_METRICS_H
#define QH_METRICS_H

#include <stddef.h>

#include "qh_error.h"
#include "qh_mat.h"

/* ℓ = tr((What−W) H (What−W)ᵀ) via E = What−W and Σ (E H) ∘ E (one dgemm).
 * W, What m x n; H n x n. Returns QH_OK, QH_EINVAL (NULL), QH_EBADLEN, QH_ENOMEM. */
int qh_proxy_loss(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                  double *loss) QH_MUST_CHECK;
/* tr(W H Wᵀ), the normaliser of the relative proxy. */
int qh_proxy_norm(const qh_matd *W, const qh_matd *H, double *out) QH_MUST_CHECK;

/* μ_W = max|W_ij|·√(mn)/‖W‖_F (0 for W = 0). */
double qh_mu_W(const qh_matd *W);

/* Spectral quantities of a symmetric H (n x n), eigenvalues clamped at 0 for the square root. */
typedef struct {
    double mu_H;                     /* √n·max|Q_ij| */
    double tr_H;                     /* Σ H_ii */
    double tr_sqrtH_sq;              /* (Σ √max(λ_i, 0))² */
    double lambda_min, lambda_max;
    size_t rank;                     /* #{λ_i > n·ε·λ_max} */
    double cond;                     /* λ_max/λ_min, +inf when λ_min ≤ 0 */
} qh_spectrum;

/* Eigen-decomposes a copy of H (LAPACKE_dsyevd_work). Returns QH_OK, QH_EINVAL,
 * QH_EBADLEN (not square), QH_ENAN (non-finite), QH_ENOMEM, QH_EINVAL (LAPACK failed). */
int qh_spectrum_compute(const qh_matd *H, qh_spectrum *out) QH_MUST_CHECK;

/* Recent eigendecompositions, kept so that a sweep does not repeat them: q,
 * k and v of a block share one H, `qh layer` measures many method
 * combinations on the same H and the same processed Ĥ, and without
 * incoherence processing Ĥ is H plus damping·I (same eigenvectors,
 * eigenvalues shifted).  Two slots (by convention 0: original basis, 1:
 * processed basis), each a copy of the matrix, its eigenvalues and
 * max|Q_ij|.  Init, use, free. */
typedef struct {
    size_t n;
    double *H;                       /* n x n copy of the decomposed matrix (NULL: empty) */
    double *lambda;                  /* its eigenvalues, ascending */
    double qmax;                     /* max |entry| of its eigenvectors */
} qh_spectrum_slot;

typedef struct {
    qh_spectrum_slot slot[2];
    size_t hits, misses;             /* lookups answered from a slot / decomposed */
} qh_spectrum_cache;

void qh_spectrum_cache_init(qh_spectrum_cache *c);
void qh_spectrum_cache_free(qh_spectrum_cache *c);   /* leaves it empty and usable */

/* qh_spectrum_compute through the cache c (NULL: no cache).  A hit is H equal
 * to a slot's matrix, or equal up to a constant diagonal shift s (off-diagonal
 * entries bit-identical; then λ_i + s and the same μ_H).  On a miss H is
 * decomposed and replaces slot `slot` (0 or 1).  Same statuses as
 * qh_spectrum_compute. */
int qh_spectrum_compute_cached(const qh_matd *H, qh_spectrum_cache *c, int slot,
                               qh_spectrum *out) QH_MUST_CHECK;

/* D of the LDL factor (see header note) in processing order `order` (a
 * permutation of 0..n−1, NULL = natural). D_out[k] is the value for the k-th
 * processed column (length n, caller-allocated); *tr_D its sum. Either output may be NULL.
 * Returns QH_OK, QH_EINVAL (NULL H / bad permutation), QH_EBADLEN, QH_ENAN,
 * QH_ENOTPD (H not positive definite), QH_ENOMEM. */
int qh_ldl_diag(const qh_matd *H, const size_t *order, double *D_out, double *tr_D) QH_MUST_CHECK;

/* Metrics of one layer in one basis. NAN marks a value that could not be computed
 * (e.g. tr_D when H is singular, proxy when no Ŵ was given). */
typedef struct {
    double proxy;                    /* tr(E H Eᵀ) */
    double proxy_norm;               /* tr(W H Wᵀ) */
    double proxy_rel;                /* proxy / proxy_norm */
    double mu_W;                     /* of W */
    double mu_What;                  /* of Ŵ */
    double tr_D;                     /* in the given order */
    qh_spectrum spec;                /* μ_H, tr H, tr(H^{1/2})², rank, cond */
} qh_basis_metrics;

typedef struct {
    size_t m, n;
    qh_basis_metrics orig;           /* original basis: W, Ŵ, H */
    int has_processed;               /* 1 when the processed-basis inputs were given */
    qh_basis_metrics proc;           /* processed basis: W̃, Ŵ̃, Ĥ */
} qh_layer_metrics;

/* Optional processed-basis inputs (all three, or pass NULL). */
typedef struct {
    const qh_matd *W;                /* W̃, m x n */
    const qh_matd *What;             /* Ŵ̃, m x n (may be NULL: proxy = NAN) */
    const qh_matd *H;                /* Ĥ, n x n */
} qh_processed_inputs;

/* Computes everything in one call.
 *   W, H: required (m x n, n x n); What: may be NULL (proxy fields NAN);
 *   proc: may be NULL; order: processing order for tr D (NULL = natural) in both bases.
 * A non-PD H gives tr_D = NAN, not an error. Returns QH_OK, QH_EINVAL, QH_EBADLEN,
 * QH_ENAN, QH_ENOMEM. */
int qh_layer_metrics_compute(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                             const qh_processed_inputs *proc, const size_t *order,
                             qh_layer_metrics *out) QH_MUST_CHECK;
/* The same through a spectrum cache (NULL: none): H in slot 0, Ĥ in slot 1. */
int qh_layer_metrics_compute_cached(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                                    const qh_processed_inputs *proc, const size_t *order,
                                    qh_spectrum_cache *cache, qh_layer_metrics *out) QH_MUST_CHECK;

#endif
