/* qh_linalg.h -- the dense linear algebra of the OPTQ/LDLQ family (methods
 * reference §1): dead Hessian columns, relative damping with counted retries,
 * Cholesky, the upper Cholesky factor of H⁻¹ ("Hinv" of OPTQ), and the LDL
 * factor H = F D Fᵀ in both column orders.
 *
 * Column orders.  The quantizers round columns in a processing order.
 *   forward: columns 0, 1, ..., n−1 (OPTQ / GPTQ, QuIP's round_ldl_gptqequiv):
 *            H = (U̇+I) D (U̇+I)ᵀ, U̇ strictly upper; D_kk is the Schur complement
 *            of H_kk with respect to the columns k+1..n−1 (processed after k),
 *            equal to 1/Hinv_kk² with Hinv the upper Cholesky factor of H⁻¹.
 *   reverse: columns n−1, ..., 0 (QuIP's round_ldl): H = (L̇+I) D (L̇+I)ᵀ, L̇
 *            strictly lower; D_kk is the Schur complement w.r.t. columns 0..k−1.
 * A reverse factor of H is the forward factor of J H J (J the anti-identity).
 *
 * All matrices are column-major double; H is read from its upper triangle
 * (LAPACK 'U'), so a caller may pass an H whose lower triangle is stale.
 * Heavy work is LAPACKE _work calls (dpotrf, dpotri) and BLAS through qh_blas.
 *
 * Timing hooks: the BLAS/LAPACK calls made by this module and the quantizers
 * can be timed (off by default) for `make bench`; the accumulator is
 * thread-local and never changes results.
 */
#ifndef QH_LINALG_H
#define QH_LINALG_H

#include <stddef.h>

#include "qh_error.h"
#include "qh_mat.h"

/* Finiteness check with a message naming the tensor: QH_ENAN "<name>: entry (i, j) is nan". */
int qh_check_finite(const qh_matd *A, const char *name) QH_MUST_CHECK;

/* Copies the upper triangle of A (n x n) onto its lower triangle. */
void qh_symmetrize_upper(qh_matd *A);

/* Dead inputs: every i with H_ii == 0 gets H_ii = the mean of the live
 * (nonzero) diagonal entries and, when W is not NULL, W[:, i] = 0 (an input
 * that is always zero carries no information).  OPTQ's code sets H_ii = 1, a
 * value whose size relative to the live entries depends on how H is scaled
 * (per token here, 2/nsamples·ΣXᵀX there): with H per token that 1 can be
 * hundreds of times the live entries and inflate the damping
 * damp·mean(diag H) many times over.  The live mean keeps mean(diag H) equal
 * to the mean of the live diagonal, so relative damping does not depend on
 * the scale of H, and it survives incoherence processing (an orthogonal
 * transform keeps the trace).  The value is 1 when no input is live.
 *   H: n x n, modified; W: m x n or NULL, modified.
 * Returns the number of dead columns. */
size_t qh_dead_columns(qh_matd *H, qh_matd *W);

/* mean(diag H); 0 for n = 0. */
double qh_mean_diag(const qh_matd *H);

/* The base of the relative damping λ·base when n_dead of the n inputs were
 * dead (H as left by qh_dead_columns, so mean(diag H) is the live mean):
 * dead_diag = 0 gives mean(diag H), the mean of the live diagonal;
 * dead_diag = c > 0 gives the authors' mean over all n inputs with each dead
 * one counted as H_ii = c, ((n − n_dead)·mean(diag H) + n_dead·c)/n. */
double qh_damp_base(const qh_matd *H, size_t n_dead, double dead_diag);

/* What a damped factorisation produces; pick one. */
typedef enum {
    QH_FACTOR_CHOL = 0,              /* F = upper Cholesky factor of H (H = FᵀF) */
    QH_FACTOR_HINV_UPPER = 1,        /* F = upper Cholesky factor of H⁻¹ (OPTQ's Hinv) */
    QH_FACTOR_LDL_FORWARD = 2,       /* F = U̇+I (unit upper), D = diag; forward order */
} qh_factor_kind;

/* Damped factorisation with counted retries (reference §1 and §2).
 *   H: n x n symmetric PSD (upper triangle read).  On return it holds the damped
 *      matrix actually factored, H + λ·mean(diag H)·I, symmetrized.
 *   damp: initial relative damping λ ≥ 0 (0.01 in OPTQ and QuIP).
 *   kind: which factor to produce into F (n x n, caller-allocated; the unused
 *         triangle is zeroed).  D (length n) is filled for QH_FACTOR_LDL_FORWARD
 *         and may be NULL otherwise.
 *   *n_retries: number of failed attempts (each raises λ tenfold, from at least
 *      1e-6), *damp_used: the λ that succeeded.  Either may be NULL.
 * Return: QH_OK; QH_ENOTPD when a diagonal entry is negative (no retry can fix
 * a non-PSD diagonal) or when λ would exceed 1; QH_EBADLEN on shape mismatch.
 * Dead columns must have been handled before (a zero diagonal is treated as
 * data, not as dead). */
int qh_factor_damped(qh_matd *H, double damp, qh_factor_kind kind, qh_matd *F, double *D,
                     size_t *n_retries, double *damp_used) QH_MUST_CHECK;
/* The same with the damping base given (λ·base is added; qh_factor_damped
 * passes base = mean(diag H)); base ≥ 0. */
int qh_factor_damped_base(qh_matd *H, double damp, double base, qh_factor_kind kind, qh_matd *F,
                          double *D, size_t *n_retries, double *damp_used) QH_MUST_CHECK;

/* Undamped factorisations of an SPD H (n x n, upper triangle read).
 * qh_hinv_upper_chol follows the reference route (chol → inverse → chol);
 * qh_factor_damped's QH_FACTOR_HINV_UPPER takes the inverse of the form-(a)
 * factor instead (same matrix, half the flops).
 * Return QH_OK, QH_ENOTPD (LAPACK info > 0), QH_EBADLEN. F and D caller-allocated. */
int qh_chol_upper(const qh_matd *H, qh_matd *F) QH_MUST_CHECK;          /* H = FᵀF */
int qh_hinv_upper_chol(const qh_matd *H, qh_matd *F) QH_MUST_CHECK;     /* H⁻¹ = FᵀF */

/* Small dense blocks (g x g, column-major, g of a few to a few dozen) where a
 * LAPACK call would cost more than the arithmetic: the g x g diagonal blocks
 * of BlockLDLQ and AQLM's preconditioner.  qh_chol_small factors A = L Lᵀ in
 * place (lower triangle; the upper is left as it was) and returns 1, or 0 when
 * A is not positive definite; qh_chol_small_solve overwrites x with
 * A⁻¹x = L⁻ᵀ L⁻¹ x. */
int qh_chol_small(double *A, size_t g);
void qh_chol_small_solve(const double *L, size_t g, double *x);

typedef enum { QH_LDL_FORWARD = 0, QH_LDL_REVERSE = 1 } qh_ldl_order;

/* H = F D Fᵀ with F unit upper (forward) or unit lower (reverse); see the file
 * header for the meaning of D in each order.  Form (a) of the reference:
 * one Cholesky factorisation (of J H J for forward, of H for reverse). */
int qh_ldl_factor(const qh_matd *H, qh_ldl_order order, qh_matd *F, double *D) QH_MUST_CHECK;

/* Form (b): D_kk = 1/Hinv_kk² from the upper Cholesky factor of H⁻¹ (forward order). */
void qh_ldl_diag_from_hinv(const qh_matd *Hinv_upper, double *D);

/* B(k, l) = A(p[k], p[l]) (n x n) and Wp[:, k] = W[:, p[k]] (m x n); p a permutation. */
void qh_permute_sym(const qh_matd *A, const size_t *p, qh_matd *B);
void qh_permute_cols(const qh_matd *W, const size_t *p, qh_matd *Wp);
/* Inverse: W[:, p[k]] = Wp[:, k]. */
void qh_unpermute_cols(const qh_matd *Wp, const size_t *p, qh_matd *W);

/* p = the columns sorted by diag(H), descending (descending = 1) or ascending;
 * ties keep index order (stable).  Used for act-order and LDLQ-RG. */
void qh_order_by_diag(const qh_matd *H, int descending, size_t *p);

/* ℓ = tr((What−W) H (What−W)ᵀ) (W, What m x n; H n x n symmetric, upper
 * triangle read) from the upper triangle of EᵀE, by dgemm over column panels.  Returns QH_OK, QH_EBADLEN, QH_ENOMEM (panel scratch). */
int qh_lin_proxy_loss(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                      double *loss) QH_MUST_CHECK;
/* The same with caller scratch of QH_PROXY_LOSS_SCRATCH(m, n) doubles (no allocation). */
#define QH_PROXY_LOSS_PANEL 256
#define QH_PROXY_LOSS_SCRATCH(m, n) ((m) * (n) + (n) * (size_t)QH_PROXY_LOSS_PANEL)
int qh_lin_proxy_loss_ws(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                         double *scratch, double *loss) QH_MUST_CHECK;

/* Timed wrappers used by the quantizers (same arguments as qh_blas / LAPACKE). */
void qh_lin_dgemm(char ta, char tb, size_t m, size_t n, size_t k, double alpha,
                  const double *A, size_t lda, const double *B, size_t ldb,
                  double beta, double *C, size_t ldc);
void qh_lin_timing_enable(int on);   /* thread-local; off by default */
double qh_lin_timing_seconds(void);  /* seconds in BLAS/LAPACK since the last reset */
void qh_lin_timing_reset(void);

#endif
