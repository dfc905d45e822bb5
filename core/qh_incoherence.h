/* qh_incoherence.h -- incoherence processing of a layer (W, H) before
 * quantization, and its exact inverse afterwards.
 *
 * QuIP (Chee et al. 2023, Alg. 1 "incoherence pre/post-processing"):
 *   D̃ rescaling  d_j = (H_jj / (WᵀW)_jj)^{1/4}, W ← W diag(d), H ← diag(d)⁻¹ H diag(d)⁻¹;
 *   then two-sided random orthogonal transforms
 *     W̃ = U W D̃ Vᵀ,   H̃ = V D̃⁻¹ H D̃⁻¹ Vᵀ      (U m x m, V n x n orthogonal),
 * so the proxy loss tr(E H Eᵀ) of any error E is the same in both bases.
 *   QH_INCOH_KRON     : U, V = P_out (B1 ⊗ B2) P_in with Haar-random B1, B2
 *                       (QuIP's Kronecker construction; factor sizes from the
 *                       butterfly rule of the methods reference §4).
 *   QH_INCOH_HADAMARD : randomized Hadamard transform (QuIP#): random signs,
 *                       then (Haar_q ⊗ 𝐇_h) with 𝐇_h = (H_K ⊗ Sylvester_{h/K})/√h,
 *                       K ∈ {1, 12, 20}, h the largest such size dividing the
 *                       dimension and q = dim/h (q = 1 for 2^j, 12·2^j, 20·2^j).
 *                       No padding: shapes never change (see qh_hadamard.h).
 *                       U = 𝐇_m S_L, V = 𝐇_n S_R: QuIP#'s W̃ = 𝐇_mᵀ S_V W S_U 𝐇_n
 *                       up to 𝐇 ↔ 𝐇ᵀ (equal for Sylvester-only sizes).
 *
 * The reference code's H ← H / max|H| is NOT applied: it is never undone there,
 * and every metric of the harness is reported in the original basis, so H̃ here
 * has exactly the scale of H (the quantizers are scale-invariant in H).
 * All randomness comes from qh_rng_stream(seed, layer, purpose).
 */
#ifndef QH_INCOHERENCE_H
#define QH_INCOHERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"
#include "qh_mat.h"

typedef enum { QH_INCOH_NONE = 0, QH_INCOH_KRON = 1, QH_INCOH_HADAMARD = 2 } qh_incoh_kind;

/* The names of the kinds, in one table used by configs, `qh layer`, the
 * pipeline and the report: an unknown name is an error everywhere. */
typedef struct {
    qh_incoh_kind kind;
    const char *name;                /* config and results key: "none", "kron", "hadamard" */
    const char *label_suffix;        /* appended to a method's default label: "", "+incoh", "+rht" */
    const char *display_suffix;      /* appended to its display name in tables: "+IncP", ... */
    /* Per kind, the default of the D̃ rescaling and of KRON's random
     * permutations (config keys "rescale", "permute"), and the value that
     * reproduces the authors' code: QuIP rescales and permutes around its
     * Kronecker factors (pre_proj_extra 1); QuIP#'s code and PVQ's do not
     * rescale around the Hadamard transform.  Rescaling stays on by default
     * for hadamard (the harness's choice since the start); the permutations
     * stay off for kron (Lemma 5 is proved without them). */
    int rescale_default, rescale_reference;
    int permute_default, permute_reference;
} qh_incoh_row;

/* The rows, in display order, ending with a row whose name is NULL. */
const qh_incoh_row *qh_incoh_table(void);
/* The row named `name`, or NULL. */
const qh_incoh_row *qh_incoh_find(const char *name);
/* The row of `kind` (never NULL for a valid kind; NULL otherwise). */
const qh_incoh_row *qh_incoh_row_of(qh_incoh_kind kind);
/* Parses name into *kind; QH_ECONFIG with a message listing the valid names. */
int qh_incoh_parse(const char *name, qh_incoh_kind *kind) QH_MUST_CHECK;
/* "none, kron, hadamard" into buf (always terminated), for messages. */
void qh_incoh_names(char *buf, size_t len);
/* Fills the unset (negative) rescale and permute flags of `row` with its
 * default or, when reference is set, with the value of the authors' code:
 * the one rule for configs and `qh layer`. */
void qh_incoh_row_settings(const qh_incoh_row *row, int reference, int *rescale, int *permute);

typedef struct {
    qh_incoh_kind kind;
    int rescale;                     /* 1: apply the D̃ rescaling first */
    uint64_t seed;
    uint32_t layer;
    int permute;                     /* KRON only: 1 adds random P_out, P_in around each
                                        side's Kronecker product, as QuIP's code (default 0) */
} qh_incoh_params;

typedef struct qh_incoh_state qh_incoh_state;

/* Moves (W, H) into the processed basis in place.
 *   p: parameters (kind NONE with rescale 0 is the identity; still returns a state).
 *   W: m x n weights (out x in), finite; H: n x n symmetric proxy Hessian, finite.
 *   *st: receives a new state (free with qh_incoh_state_free) on success, NULL on error.
 * Returns QH_OK, QH_EINVAL (NULL/zero-size/bad kind), QH_EBADLEN (H not n x n),
 * QH_ENAN (non-finite entries), QH_ENOMEM, or a LAPACK failure as QH_EINVAL.
 * On error W and H may be partly transformed. */
int qh_incoh_apply(const qh_incoh_params *p, qh_matd *W, qh_matd *H,
                   qh_incoh_state **st) QH_MUST_CHECK;

/* Processed → original basis in place: What ← Uᵀ What V D̃⁻¹.
 * What must be m x n as in the apply call. Returns QH_OK, QH_EINVAL, QH_EBADLEN, QH_ENOMEM. */
int qh_incoh_invert(const qh_incoh_state *st, qh_matd *What) QH_MUST_CHECK;

/* Original → processed basis with the stored transform (same map as apply):
 * W ← U W D̃ Vᵀ (m x n), H ← V D̃⁻¹ H D̃⁻¹ Vᵀ (n x n). For reporting metrics of
 * another matrix (e.g. a quantized Ŵ) in the processed basis. */
int qh_incoh_forward_W(const qh_incoh_state *st, qh_matd *W) QH_MUST_CHECK;
int qh_incoh_forward_H(const qh_incoh_state *st, qh_matd *H) QH_MUST_CHECK;

void qh_incoh_state_free(qh_incoh_state *st);         /* NULL: no-op */

/* Bits of side information that must be stored with the quantized layer:
 * D̃ as FP16 per input column (16 n) when rescaling, plus nothing for seeded
 * transforms (regenerated from (seed, layer)). Bits per weight = this / (m n). */
double qh_incoh_side_bits(const qh_incoh_state *st);

/* Introspection (for reports and tests). */
size_t qh_incoh_rows(const qh_incoh_state *st);     /* m */
size_t qh_incoh_cols(const qh_incoh_state *st);     /* n */
/* D̃ (length n) or NULL when rescaling was off. */
const double *qh_incoh_rescale_vector(const qh_incoh_state *st);
/* Human-readable description of the two transforms, e.g.
 * "hadamard+rescale L=H96*S R=Haar5(x)H20*S" or "kron L=PHaar48(x)Haar16P R=...";
 * written into buf (always terminated). */
void qh_incoh_describe(const qh_incoh_state *st, char *buf, size_t len);
/* Dense U (m x m) and V (n x n) of the orthogonal parts (identity for NONE),
 * for tests on small sizes. Either output may be NULL. Returns new matrices. */
int qh_incoh_dense_transforms(const qh_incoh_state *st, qh_matd **U, qh_matd **V) QH_MUST_CHECK;

/* Kronecker factor sizes of n by the butterfly rule (methods reference §4):
 * prime factors in ascending order multiplied alternately into two factors,
 * e.g. 768 → (48, 16), 1024 → (32, 32); *a ≥ 1, *b ≥ 1, a*b = n. */
void qh_incoh_butterfly_factors(size_t n, size_t *a, size_t *b);

#endif
