/* qh_block_helpers.h -- what the block ops (qh_block_ops, qh_method.h) of the
 * block-tuned rows have in common, written once: the state wrappers, whose
 * only differences are the state type, its free function, the member that
 * says quantize filled it and the function that reconstructs Ŵ; and the
 * optimiser step of Adam on a state's parameter vectors.
 *
 * In a row's source:
 *   static void mine_reconstruct_state(const qh_mine_state *s, qh_matd *What);
 *   QH_BLOCK_STATE_OPS(mine, qh_mine_state, qh_mine_state_free, s->W, s->rows, s->cols,
 *                      mine_reconstruct_state)
 *   static const qh_block_ops mine_block_ops = {
 *       .wants = ..., .plan = ..., QH_BLOCK_STATE_FIELDS(mine), .step = ..., };
 * The macro's filled, rows and cols are expressions in `s`, a const T *. */
#ifndef QH_BLOCK_HELPERS_H
#define QH_BLOCK_HELPERS_H

#include <stddef.h>
#include <stdlib.h>

#include "qh_mat.h"
#include "qh_method.h"

/* prefix_state_new (a zeroed T), prefix_state_free (free_fn, which frees T's
 * members and accepts NULL, then the T itself), prefix_state_shape (0 x 0
 * until `filled` is true, i.e. quantize filled the state) and
 * prefix_reconstruct (recon(const T *, qh_matd *); the params are not
 * needed by any row: the state carries what reconstruction needs). */
#define QH_BLOCK_STATE_OPS(prefix, T, free_fn, filled, rows_, cols_, recon)                 \
    static void *prefix##_state_new(void) { return calloc(1, sizeof(T)); }                  \
    static void prefix##_state_free(void *state)                                            \
    {                                                                                       \
        free_fn((T *)state);                                                                \
        free(state);                                                                        \
    }                                                                                       \
    static void prefix##_state_shape(const void *state, size_t *rows, size_t *cols)         \
    {                                                                                       \
        const T *s = state;                                                                 \
        int f = (filled) ? 1 : 0;                                                           \
        *rows = f ? (size_t)(rows_) : 0;                                                    \
        *cols = f ? (size_t)(cols_) : 0;                                                    \
    }                                                                                       \
    static void prefix##_reconstruct(const void *params, const void *state, qh_matd *What)  \
    {                                                                                       \
        (void)params;                                                                       \
        recon((const T *)state, What);                                                      \
    }

/* The four fields of a qh_block_ops initializer that QH_BLOCK_STATE_OPS defined. */
#define QH_BLOCK_STATE_FIELDS(prefix)                                                       \
    .state_new = prefix##_state_new, .state_free = prefix##_state_free,                     \
    .state_shape = prefix##_state_shape, .reconstruct = prefix##_reconstruct

/* One parameter vector of a state and its gradient, for qh_block_adam_step. */
typedef struct {
    double *x;                       /* (count) parameters, updated in place */
    const double *g;                 /* (count) ∂loss/∂x */
    size_t count;
    double lr;
} qh_adam_vector;

/* One Adam step (qh_adam_step_betas) of each of the nv vectors in order.
 * moments holds each vector's first and second moments after the previous
 * vector's, [m_0 (count_0), v_0 (count_0), m_1, v_1, ...]; at step_no 1 they
 * are zeroed first, since the block stage numbers the steps of each block's
 * tuning from 1 and Adam's memory must start afresh with it. */
void qh_block_adam_step(const qh_adam_vector *v, size_t nv, double *moments, int step_no,
                        double beta1, double beta2);

#endif
