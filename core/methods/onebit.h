/* onebit.h -- the "onebit" method row: OneBit's sign-value-independent
 * decomposition (Xu et al. 2024, arXiv 2402.11295): W ≈ diag(a)·sign(W)·
 * diag(b), (a, b) the rank-1 factors of |W| (SVD or alternating least
 * squares), then a and b tuned on the block stage against the float block's
 * output (see onebit.c).
 *
 * Result fields: What_proc; H_proc = H as given; col_order natural; grid
 * empty; bits_nominal = 1; bits_side = 16(m + n)/(m n) (FP16 a and b).
 */
#ifndef QH_METHOD_ONEBIT_H
#define QH_METHOD_ONEBIT_H

#include <stddef.h>
#include <stdint.h>

#include "qh_mat.h"
#include "qh_method.h"

enum { QH_ONEBIT_INIT_SVD = 0, QH_ONEBIT_INIT_ALS = 1 };
enum { QH_ONEBIT_OBJECTIVE_LAYER = 0, QH_ONEBIT_OBJECTIVE_BLOCK = 1 };

typedef struct {
    int init;                        /* QH_ONEBIT_INIT_* */
    int als_iters;                   /* ALS rounds (init als) */
    int objective;                   /* QH_ONEBIT_OBJECTIVE_*: block runs the block stage */
    int epochs;                      /* block stage: passes over the windows, one step each */
    double lr;                       /* Adam learning rate of a and b */
} qh_onebit_params;

extern const qh_method_type qh_method_onebit;

/* The tunable state of one linear (block stage). */
typedef struct {
    size_t rows, cols;
    int8_t *sign;                    /* (m, n) column-major ±1, frozen */
    double *a, *b;                   /* (m), (n) */
    double *grad, *moments;          /* m + n; 2 (m + n) Adam moments */
} qh_onebit_state;

/* Rank-1 nonnegative factors of |W|: a (m), b (n) with a bᵀ the best rank-1
 * approximation of |W| (Perron vectors, ‖a‖ = ‖b‖ = sqrt σ).  init svd: LAPACK
 * dgesvd; als: `iters` rounds of b = |W|ᵀa/‖a‖², a = |W|b/‖b‖² from the row
 * means.  Returns QH_OK, QH_ENOMEM, QH_ENOTPD (SVD did not converge). */
int qh_onebit_factors(const qh_matd *W, int init, int iters, double *a, double *b) QH_MUST_CHECK;
/* Ŵ = diag(a)·S·diag(b). */
void qh_onebit_reconstruct(const qh_onebit_state *s, qh_matd *What);
/* ∂/∂a_i = Σ_j G_ij S_ij b_j, ∂/∂b_j = Σ_i G_ij S_ij a_i from G = ∂loss/∂Ŵ. */
void qh_onebit_param_grad(const qh_onebit_state *s, const qh_matd *G, double *ga, double *gb);
void qh_onebit_state_free(qh_onebit_state *s);

#endif
