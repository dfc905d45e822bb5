/* qh_hessian.h -- proxy Hessians H = E_tok[x xᵀ] of linear-layer inputs.
 *
 * The harness stores H_tok = (1/T) Σ_t x_t x_tᵀ over all T calibration tokens,
 * accumulated in float64 (methods reference §1: QuIP sums in float64; GPTQ's
 * running mean with a factor 2 and QuIP's per-sequence sum differ from H_tok
 * only by a scale, which damping relative to mean(diag H) makes irrelevant to
 * rounding but which changes every printed proxy loss: results record the
 * convention "token-mean").
 */
#ifndef QH_HESSIAN_H
#define QH_HESSIAN_H

#include <stddef.h>

#include "qh_error.h"
#include "qh_mat.h"

typedef struct {
    size_t n;                        /* input dimension */
    size_t tokens;                   /* tokens accumulated so far */
    qh_matd *sum;                    /* n x n, upper triangle of Σ x xᵀ (owned) */
    double *scratch;                 /* n x chunk double copy of the inputs (owned) */
    size_t chunk;
} qh_hessian_acc;

/* Inputs: n > 0.  Returns QH_OK or QH_ENOMEM. */
int  qh_hessian_acc_init(qh_hessian_acc *acc, size_t n) QH_MUST_CHECK;
void qh_hessian_acc_free(qh_hessian_acc *acc);

/* Adds the T columns of X (n x T, column-major float32, column t = token t)
 * with one dsyrk per chunk of columns.  Returns QH_OK or QH_ENAN (naming
 * `what`) when X holds a non-finite value. */
int  qh_hessian_acc_add(qh_hessian_acc *acc, const float *X, size_t T, const char *what) QH_MUST_CHECK;

/* H (n x n, caller-allocated) = sum / tokens, both triangles filled.
 * Returns QH_OK, or QH_EINVAL when nothing was accumulated. */
int  qh_hessian_acc_result(const qh_hessian_acc *acc, qh_matd *H) QH_MUST_CHECK;

#endif
