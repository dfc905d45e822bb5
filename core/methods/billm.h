/* billm.h -- the "billm" method row: BiLLM (Huang et al. 2024, arXiv
 * 2402.04291; reference code Aaronhuang-778/BiLLM; methods reference §6),
 * 1-bit post-training binarization with salient columns binarized at two
 * residual orders and the other weights split by magnitude into a
 * "concentrated" and a "sparse" part, each binarized at one order; GPTQ-style
 * error feedback across blocks of columns.  Primitives in core/qh_binarize.h.
 *
 * Result fields: What_proc (fake-quantized doubles); H_proc = the damped H;
 * col_order natural, order "natural"; grid left empty (not a scalar grid);
 * bits_nominal and bits_side as qh_billm_bits counts them (the driver keeps a
 * method's own nonzero values).
 */
#ifndef QH_METHOD_BILLM_H
#define QH_METHOD_BILLM_H

#include <stddef.h>

#include "qh_mat.h"
#include "qh_method.h"

enum { QH_BILLM_SALIENT_HESSIAN = 0, QH_BILLM_SALIENT_MAGNITUDE = 1 };
enum { QH_BILLM_TARGET_S = 0, QH_BILLM_TARGET_W = 1 };
enum { QH_BILLM_SPLIT_NONSALIENT = 0, QH_BILLM_SPLIT_ZEROED = 1 };

typedef struct {
    int blocksize;                   /* columns per block (128) */
    double damp;                     /* relative damping of H (0.01) */
    int salient_metric;              /* QH_BILLM_SALIENT_*: S = W²/diag(Hinv)² or S = W */
    int search_target;               /* QH_BILLM_TARGET_*: searches measure MSE against S or W */
    int max_salient;                 /* salient columns searched: 1..max_salient (49) */
    int n_thresholds;                /* split candidates: quantiles 10..90 % (81) */
    int intra_block_update;          /* 1: OBC-style feedback inside a block too */
    int feedback;                    /* 1: error feedback onto later blocks (reference) */
    int split_quantiles;             /* QH_BILLM_SPLIT_*: split candidates over the non-salient
                                        entries, or over the block with salient columns
                                        zeroed (reference) */
} qh_billm_params;

extern const qh_method_type qh_method_billm;

/* Bits of a BiLLM layer of m x n in blocks of `blocksize` columns, where block
 * b kept salient[b] salient columns (n_blocks = ⌈n/blocksize⌉ entries):
 *   nominal (the paper's count) = (signs + column bitmap)/(m·n), signs = one
 *     per weight plus one more per weight of a salient column (second order),
 *     bitmap = one bit per column;
 *   total = nominal + (flags + statistics)/(m·n), flags = one bit per
 *     non-salient weight (concentrated or sparse, counted raw), statistics =
 *     8 FP16 values (μ, α of salient order 1, salient order 2, concentrated,
 *     sparse) per row per block = 128·m bits per block.
 * Either output may be NULL. */
void qh_billm_bits(size_t m, size_t n, size_t blocksize, const size_t *salient, double *nominal,
                   double *total);

/* Saliency of a block Wb (m x nb) into S (m x nb): hessian: S_ij = W_ij² /
 * hinv_diag[j]² (hinv_diag = the block's diagonal of the upper Cholesky
 * factor of H⁻¹); magnitude: S = W. */
void qh_billm_saliency(const qh_matd *Wb, const double *hinv_diag, int metric, qh_matd *S);

#endif
