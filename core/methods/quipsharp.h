/* quipsharp.h -- QuIP# (Tseng et al. 2024, arXiv 2402.04396; methods
 * reference §5): BlockLDLQ with block size 8 onto the E8P lattice codebook
 * (2 bits) or its residual stages (3 bits: E8P + E81B, 4 bits: E8P + E8P).
 *
 * The row runs inside the driver's incoherence processing: ask the driver for
 * QH_INCOH_HADAMARD (the randomized Hadamard transform of QuIP#).  Without
 * incoherence it still runs, as BlockLDLQ + E8P in the original basis.
 *
 * Result fields: What_proc on the codebook (times Wscale); H_proc = the damped
 * H rounded against, H + damp·mean(diag H)·I (H's own scale: the method works
 * with H/mean(diag H) + damp·I, which has the same LDL feedback);
 * col_order = the 8-column blocks in processing order (last block first,
 * ascending inside a block), order = "reverse"; grid empty (not a scalar
 * grid); row_scale[r] = Wscale for every row (one FP16 scale, so bits_side =
 * 16/(mn) plus the incoherence side bits, 0 for seeded signs);
 * n_iterations = tune passes run.
 */
#ifndef QH_METHOD_QUIPSHARP_H
#define QH_METHOD_QUIPSHARP_H

#include "qh_method.h"

typedef struct {
    double scale_override;           /* RMS of W̃/Wscale; 0 = the codebook's opt scale */
    int tune_iters;                  /* block coordinate-descent passes after BlockLDLQ */
    double damp;                     /* relative damping of H */
} qh_quipsharp_params;

extern const qh_method_type qh_method_quipsharp;

/* Wscale of a quipsharp result (row_scale[0]); 0 when there is none. */
double qh_quipsharp_wscale(const qh_result *r);

#endif
