/* ternary.h -- the "ternary" method row: BitNet b1.58's absmean ternary
 * quantizer (Ma et al. 2024, arXiv 2402.17764) applied after training, with
 * and without GPTQ-style error feedback under H (see ternary.c).
 *
 * Also the scope statistics it shares with the bitnet1 row (BitNet's 1-bit
 * quantizer): mean and mean |w| over a tensor, a row or a group of columns of
 * a row, and the side bits of one FP16 scale per scope.
 *
 * Result fields: What_proc; H_proc = the damped H with feedback, H as given
 * without; col_order natural; grid left empty (the scales are not a
 * qh_grid); bits_nominal = log2 3 (packing "packed") or 2 (packing
 * "stored"); bits_side = one FP16 γ per scope (qh_scope_side_bits).
 */
#ifndef QH_METHOD_TERNARY_H
#define QH_METHOD_TERNARY_H

#include <stddef.h>

#include "qh_mat.h"
#include "qh_method.h"

enum { QH_SCOPE_TENSOR = 0, QH_SCOPE_ROW = 1, QH_SCOPE_GROUP = 2 };
enum { QH_PACKING_PACKED = 0, QH_PACKING_STORED = 1 };

typedef struct {
    int scope;                       /* QH_SCOPE_TENSOR | QH_SCOPE_ROW: one γ per tensor or row */
    int group;                       /* 0, or columns per group: one γ per row and group */
    int feedback;                    /* 1: GPTQ column loop with error feedback under H */
    double damp;                     /* relative damping of H (feedback) */
    int packing;                     /* QH_PACKING_*: nominal bits log2 3 or 2 */
} qh_ternary_params;

extern const qh_method_type qh_method_ternary;

/* Statistics of columns c0..c0+nc−1 of W (m x n) for group gi of a scope:
 * mean[r + gi·m] = mean of w, absmean[r + gi·m] = mean |w| (either may be
 * NULL), per row for scopes row and group, the same value on every row for
 * scope tensor (then nc = n, gi = 0). */
void qh_scope_stats(int scope, const qh_matd *W, size_t c0, size_t nc, size_t gi, double *mean,
                    double *absmean);
/* Side bits per weight of one FP16 value per scope: 16/(m n), 16/n or 16/group. */
double qh_scope_side_bits(int scope, size_t m, size_t n, size_t group);
/* QH_SCOPE_GROUP when group > 0, else scope (the rows' scope parameter
 * takes tensor | row; a group overrides it). */
int qh_scope_effective(int scope, int group);
/* The grid group of a scope for qh_quant_params.group (0 unless scope group). */
int qh_scope_grid_group(int scope, int group);
/* Nominal bits of a ternary code: log2 3 (packed, base-3 words) or 2 (stored). */
double qh_ternary_nominal_bits(int packing);

/* The driver of the ternary and bitnet1 rows: without feedback every weight
 * rounded by rnd after rnd->fit of its scope (in->W as given; H copied when
 * present), with feedback GPTQ's column loop with rnd (qh_gptq_run; damp).
 * Leaves out->grid empty and sets out->bits_side (qh_scope_side_bits).  work
 * has `bytes` bytes, at least qh_scope_workspace_size(..., 0).  Returns
 * QH_OK; QH_EINVAL naming the tensor (group not dividing n, feedback without
 * H); statuses of qh_gptq_run. */
struct qh_gptq_rounding_s;
int qh_scope_quantize(const qh_problem *in, qh_result *out, void *work, size_t bytes, int scope,
                      int group, int feedback, double damp,
                      const struct qh_gptq_rounding_s *rnd) QH_MUST_CHECK;
/* Workspace of the driver plus `stats` (m x groups) tables of doubles. */
size_t qh_scope_workspace_size(int scope, int group, double damp, size_t m, size_t n,
                               size_t stats);

/* One weight on the absmean ternary grid: γ·clip(round(w/γ), −1, 1) (0 when γ = 0). */
double qh_ternary_round(double w, double gamma);

#endif
