/* blockap.h -- the "blockap" method row: EfficientQAT's Block-AP (Chen et
 * al. 2024, arXiv 2407.11062, phase 1): every decoder block's weights and
 * quantization scales (and zero points) trained together through
 * straight-through rounding against the float block's output, then frozen
 * (see blockap.c).  The survey's post-training-cheap QAT representative and
 * the upper reference for what block-wise training buys over PTQ.
 *
 * Result fields: What_proc; H_proc = H as given; col_order natural; grid
 * empty (the trained scales are the state's); bits_nominal = bits (minmax)
 * or log2 3 (ternary, packed); bits_side = (16 + bits)/g (minmax: FP16 step,
 * bits-wide zero) or 16/g (ternary: FP16 step), g = group (n when 0).
 */
#ifndef QH_METHOD_BLOCKAP_H
#define QH_METHOD_BLOCKAP_H

#include <stddef.h>

#include "qh_mat.h"
#include "qh_method.h"

enum { QH_BLOCKAP_GRID_MINMAX = 0, QH_BLOCKAP_GRID_TERNARY = 1 };
enum { QH_BLOCKAP_OBJECTIVE_LAYER = 0, QH_BLOCKAP_OBJECTIVE_BLOCK = 1 };

typedef struct {
    int grid;                        /* QH_BLOCKAP_GRID_* */
    int group;                       /* columns per group (0: per row) */
    int objective;                   /* QH_BLOCKAP_OBJECTIVE_*: layer = the RTN start only */
    int epochs;                      /* passes over the windows, one Adam step per window */
    double lr_w, lr_s;               /* Adam learning rates of W and of (s, z) */
    int train_zero;                  /* 1: z trained too (minmax) */
} qh_blockap_params;

extern const qh_method_type qh_method_blockap;

/* The tunable state of one linear. */
typedef struct {
    size_t rows, cols, group, n_groups;
    double maxq;                     /* 2^b − 1, or 2 for the ternary grid */
    int train_zero;
    double *W;                       /* (m, n) latent weights, column-major */
    double *s, *z;                   /* (m, n_groups) step and zero (z used rounded) */
    double *gW, *gs, *gz;            /* gradients */
    double *mom;                     /* Adam moments: 2 m n + 4 m n_groups */
} qh_blockap_state;

/* Ŵ_ij = s (clamp(round(W_ij/s) + round(z), 0, maxq) − round(z)), (s, z) of
 * row i and the group of column j. */
void qh_blockap_reconstruct(const qh_blockap_state *st, qh_matd *What);
/* Straight-through gradients from G = ∂loss/∂Ŵ (round's derivative taken as
 * 1, clamp's as 0 outside the range): with u = round(W/s) + round(z),
 * inside = 0 ≤ u ≤ maxq:  ∂Ŵ/∂W = inside;  ∂Ŵ/∂s = (clamp(u) − round(z)) −
 * inside·W/s;  ∂Ŵ/∂z = −s·(1 − inside).  Into st->gW, gs, gz. */
void qh_blockap_param_grad(qh_blockap_state *st, const qh_matd *G);
void qh_blockap_state_free(qh_blockap_state *st);
/* Bits per weight of a blockap layer. */
void qh_blockap_bits(int grid, int bits, size_t g, double *nominal, double *side);

#endif
