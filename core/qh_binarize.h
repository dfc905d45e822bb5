/* qh_binarize.h -- residual binarization primitives shared by the 1-bit
 * methods (BiLLM, PB-LLM, PTQ1.61; methods reference §6-§8).
 *
 * One order of binarization of a set of entries of a row r (the entries where
 * a mask is set):  μ = mean r,  α = mean |r − μ|,  b = α·sign(r − μ) + μ.
 * Order k repeats this on the residual r − (b_1 + ... + b_{k−1}), so the
 * reconstruction is the sum of k binary planes, each with its own per-row
 * (μ, α).  This is BiLLM's "high_order_residual".  sign(0) = +1 here (a stored
 * sign bit has two states; the reference's torch.sign maps 0 to 0).
 *
 * Masks: uint8_t arrays of m x n entries, column-major with leading dimension
 * m (entry (i, j) at mask[i + j*m]); nonzero = in the set; a NULL mask means
 * every entry.  Rows whose set is empty get μ = α = 0 and no output.
 *
 * Left out: packing of sign planes (the harness keeps fake-quantized doubles
 * and counts bits separately).
 */
#ifndef QH_BINARIZE_H
#define QH_BINARIZE_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"
#include "qh_mat.h"

#define QH_BINARIZE_MAX_ORDER 8

/* Order-`order` residual binarization of the masked entries of every row of W.
 *   W: (m, n), any leading dimension; mask: m x n or NULL;
 *   order: 1..QH_BINARIZE_MAX_ORDER;
 *   out: (m, n); masked entries are overwritten with the reconstruction,
 *        the other entries are left untouched (so disjoint masks can be
 *        written into one matrix one after the other);  out may be W itself;
 *   mu, alpha: NULL, or m*order doubles each: mu[i + k*m] is row i's mean of
 *        order k (k = 0..order−1), alpha likewise.
 * Returns QH_OK; QH_EINVAL (NULL W/out, order out of range); QH_EBADLEN (out
 * shape differs); QH_ENOMEM. */
int qh_binarize_rows(const qh_matd *W, const uint8_t *mask, int order, qh_matd *out,
                     double *mu, double *alpha) QH_MUST_CHECK;

/* The reconstruction of one entry x of row `row` from fitted planes (mu, alpha
 * laid out as qh_binarize_rows writes them, m rows): the sum over the orders
 * of α·sign(r − μ) + μ with r the running residual.  Lets a caller keep the
 * statistics of a block fixed while the entries change (in-block feedback). */
double qh_binarize_value(double x, int order, const double *mu, const double *alpha, size_t row,
                         size_t m);

/* Sum of squared errors Σ_masked (T − B(T))² of the order-`order`
 * binarization B of the masked entries of T, without an output matrix.
 * Returns QH_OK, QH_EINVAL, QH_ENOMEM. */
int qh_binarize_error(const qh_matd *T, const uint8_t *mask, int order,
                      double *err) QH_MUST_CHECK;

/* ---- masks ------------------------------------------------------------------ */

void qh_mask_fill(uint8_t *mask, size_t m, size_t n, uint8_t value);
/* Sets columns cols[0..k−1] of an m-row mask to value. */
void qh_mask_set_columns(uint8_t *mask, size_t m, const size_t *cols, size_t k, uint8_t value);
/* Number of set entries of an m x n mask (NULL: m*n). */
size_t qh_mask_count(const uint8_t *mask, size_t m, size_t n);
/* Splits base (m x n, NULL = all) by magnitude of T (m, n):
 * inner = base ∧ |T| < thr ("concentrated"), outer = base ∧ |T| ≥ thr ("sparse"). */
void qh_mask_split_abs(const qh_matd *T, const uint8_t *base, double thr, uint8_t *inner,
                       uint8_t *outer);

/* ---- searches (BiLLM's structural search and bell-shaped split) ------------- */

/* Ranks the columns of T (m, n) by Σ_i |T_ij|, descending (ties: lower
 * index first).  rank: n indices, rank[0] = the top column. */
void qh_binarize_rank_columns(const qh_matd *T, size_t *rank);

/* Salient column search: for k = 1..max_k (capped at n), the top-k columns of
 * qh_binarize_rank_columns form the salient part, the rest the other part;
 * both are binarized at `order` (BiLLM: 2) and the summed squared error
 * against T is measured.  Keeps the first k with the lowest error.
 *   rank: n indices (output, the ranking); best_k, best_err: outputs.
 * Returns QH_OK, QH_EINVAL (max_k == 0, bad order), QH_ENOMEM. */
int qh_binarize_search_salient(const qh_matd *T, size_t max_k, int order, size_t *rank,
                               size_t *best_k, double *best_err) QH_MUST_CHECK;

/* The same search with a given column ranking (rank: n distinct indices,
 * e.g. ranked by a saliency other than T), so the error can be measured
 * against a different matrix than the one that ranks. */
int qh_binarize_search_salient_ranked(const qh_matd *T, const size_t *rank, size_t max_k,
                                      int order, size_t *best_k, double *best_err) QH_MUST_CHECK;

/* Quantiles of |T| over the masked entries (linear interpolation between
 * order statistics, numpy's default): out[t] = quantile q[t], q in [0, 1].
 * An empty mask gives zeros.  Returns QH_OK, QH_EINVAL, QH_ENOMEM. */
int qh_binarize_abs_quantiles(const qh_matd *T, const uint8_t *mask, const double *q,
                              size_t nq, double *out) QH_MUST_CHECK;

/* Which values the split candidates' quantiles are taken over. */
typedef enum {
    QH_SPLIT_Q_BASE = 0,             /* |T| on the entries of base only */
    QH_SPLIT_Q_ZEROED = 1,           /* all m x n entries of |T|, those outside base counted
                                        as 0: BiLLM's reference code takes the quantiles of
                                        the block with its salient columns zeroed */
} qh_split_quantiles;

/* Candidate thresholds of the split search: the quantiles q_lo + (q_hi −
 * q_lo)·t/(n_thr − 1), t = 0..n_thr−1 (n_thr = 1: q_lo), of |T| on base. */
int qh_binarize_split_candidates(const qh_matd *T, const uint8_t *base, int n_thr,
                                 double q_lo, double q_hi, double *thr) QH_MUST_CHECK;
/* The same over the values `where` names (QH_SPLIT_Q_BASE: as above). */
int qh_binarize_split_candidates_in(const qh_matd *T, const uint8_t *base,
                                    qh_split_quantiles where, int n_thr, double q_lo,
                                    double q_hi, double *thr) QH_MUST_CHECK;

/* Split search: for each candidate threshold (qh_binarize_split_candidates),
 * binarizes the inner and outer parts of base (qh_mask_split_abs) at `order`
 * (BiLLM: 1) and sums their squared errors against T; keeps the first
 * candidate with the lowest error.
 *   best_thr, best_err: outputs.  Returns QH_OK, QH_EINVAL (n_thr < 1, bad
 *   quantile range or order), QH_ENOMEM. */
int qh_binarize_search_split(const qh_matd *T, const uint8_t *base, int n_thr, double q_lo,
                             double q_hi, int order, double *best_thr,
                             double *best_err) QH_MUST_CHECK;
/* The same with the candidates of qh_binarize_split_candidates_in(where); the
 * parts binarized are base's entries either way. */
int qh_binarize_search_split_in(const qh_matd *T, const uint8_t *base, qh_split_quantiles where,
                                int n_thr, double q_lo, double q_hi, int order,
                                double *best_thr, double *best_err) QH_MUST_CHECK;

#endif
