/* mpo.h -- the "mpo" method row: CompactifAI (Tomut et al. 2024, arXiv
 * 2401.14109; methods reference §14), tensor-network compression of a
 * linear's weight matrix into a matrix product operator (tensor train) of
 * bond dimension χ, with optional healing on the block stage.  The MPO
 * engine below is shared with the "lowrank" row (lowrank.h), which is the
 * MPO of two cores whose cut separates the input index from the output index.
 *
 * Index conventions.  W is m x n (rows = outputs r, columns = inputs c).
 * m = Π_k o_k and n = Π_k i_k over K cores; r = o_1 + O_1·(o_2 + O_2·(...))
 * and c = i_1 + I_1·(i_2 + ...) (first factor fastest).  The paired index of
 * core k is p_k = i_k + I_k·o_k (P_k = I_k·O_k), and the tensor A of W in
 * paired indices is the flat array A[p_1 + P_1·(p_2 + P_2·(...))] = W[r, c].
 * Core k has shape (χ_{k−1}, i_k, o_k, χ_k), χ_0 = χ_K = 1, stored
 * column-major as a (χ_{k−1}·P_k) x χ_k matrix: entry (a, i, o, b) at
 * a + χ_{k−1}·(i + I_k·o) + χ_{k−1}·P_k·b.  Then
 *   W[r, c] ≈ Σ_{a_1..a_{K−1}} C_1[1, i_1, o_1, a_1] C_2[a_1, i_2, o_2, a_2] ... C_K[a_{K−1}, i_K, o_K, 1].
 *
 * TT-SVD (left to right): M_1 = A as P_1 x (mn/P_1); at cut k the SVD
 * M_k = U S Vᵀ (LAPACK dgesdd) keeps r_k = min(χ, rank bound, energy count)
 * singular values, core k = U[:, :r_k], and S Vᵀ (r_k x rest) read as
 * (r_k·P_{k+1}) x (rest/P_{k+1}) is M_{k+1}; the last core is M_K.  For K = 2
 * the truncation is optimal (Eckart–Young on the rearranged matrix, Van
 * Loan's nearest sum of Kronecker products) and ‖W − Ŵ‖_F² equals the sum of
 * the discarded σ²; for K > 2 the discarded energies of the cuts add up to
 * the same identity (the left cores are orthonormal).  `energy` > 0 keeps the
 * fewest σ whose squares reach that fraction of the cut's total, capped by χ.
 *
 * Factorisations: `factors` = K; each of m and n is split into the most
 * balanced K factors: its prime factors, largest first, each multiplied into
 * the currently smallest factor (longest-processing-time rule), the K
 * factors then sorted in descending order; pair k takes the k-th factor of
 * each.  256 → 16·16 (K = 2), 4·4·4·4 (K = 4); 1000 → 10·10·10 (K = 3);
 * 11008 = 2⁸·43 → 128·86 (K = 2), 43·8·8·4 (K = 4).  A prime size such as
 * 1009 gives 1009·1·…·1: its whole index sits in the first core and the
 * decomposition degrades to fewer effective cores (no padding is done).
 * K = 2 is the default: its one cut is the optimal truncation, its
 * truncation error is the discarded singular values exactly, and χ means
 * one thing; the paper's 4096 = 8⁴ (K = 4) is `factors` 4.
 *
 * Width: the row's `bits` is the storage width of a core entry: 16 (FP16
 * cores, the default in sweeps: configs give `bits: [16]`), or 2..8 for
 * cores rounded by round-to-nearest on a per-column asymmetric min-max grid
 * of each core's (χ_{k−1}·P_k) x χ_k matrix, after the decomposition (the
 * paper's mixed FP16/int4), with an FP16 step and zero per column as side
 * information.  9..15 are refused.  Bits per original weight:
 *   bits_nominal = bits·N_params/(m·n),  bits_side = 32·Σ_k χ_k/(m·n) when quantized,
 * N_params = Σ_k χ_{k−1}·I_k·O_k·χ_k.  Parameters kept = bits_nominal·m·n/bits
 * and the compression ratio m·n/N_params follow from bits_nominal.
 *
 * Hessian-aware variant (`proxy_steps` > 0): a decomposition of W·H^{1/2}
 * mapped back by H^{−1/2} is not an MPO of the same bonds unless H is a
 * Kronecker product (H^{−1/2} mixes all input factors), so the row instead
 * starts from the plain TT-SVD and takes `proxy_steps` Adam steps (rate
 * `proxy_lr` relative to the RMS of the cores' entries) on all cores against
 * the layer proxy ℓ = tr((Ŵ−W) H (Ŵ−W)ᵀ), keeping the best iterate (never
 * above the plain decomposition's ℓ).  The lowrank row's `hessian` does the
 * exact W·H^{1/2} truncation, which keeps its structure.
 *
 * Healing (heal_steps > 0): the block ops (qh_mpo_block_ops, shared with
 * lowrank) tune every core of every linear of a decoder block jointly by
 * Adam against the MSE of the block output to the float block's
 * (QH_BLOCK_LOSS_MSE), heal_batch windows drawn at random per step, the best
 * minibatch iterate kept.  The core gradients are the chain rule through the
 * contraction (qh_mpo_grad).  Healing needs float cores (bits 16).
 *
 * End-to-end healing (heal_kl_steps > 0; the "healing with the KL of
 * the whole model's logits"): after every block has been compressed (and
 * block-healed when heal_steps > 0), the whole-model stage
 * (pipeline/model_stage.h) tunes every core of every decoder linear of the
 * model jointly by Adam (rate heal_kl_lr relative to each core's entry RMS
 * after the decomposition, as heal_lr) against the mean over heal_kl_batch calibration
 * windows (drawn at random per step) of the token-mean KL(p_float || q_model)
 * of the next-token distributions, the float distribution recomputed by the
 * unmodified float model on every step (not cached: vocab x T per window);
 * the backward pass runs from the logits through the head and every block
 * (model/backward.h: qh_head_backward, qh_block_backward_input), and dŴ maps
 * to the cores by the same chain rule.  The best minibatch iterate is kept.
 * Needs float cores (bits 16) too.  heal_kl_steps = 0 (the default) leaves
 * every result as without the option.
 *
 * Result fields: What_proc = the contracted MPO; H_proc = H as given
 * (unused by the decomposition); col_order natural, order "natural"; grid
 * empty; n_iterations = proxy steps run.  Workspace: the row allocates its
 * own scratch (sizes depend on the bonds the truncation finds).
 */
#ifndef QH_METHOD_MPO_H
#define QH_METHOD_MPO_H

#include <stddef.h>

#include "qh_method.h"

#define QH_MPO_MAXK 8

/* The healing parameters, first member of the mpo and lowrank params structs
 * (the shared block ops read them there). */
typedef struct {
    int heal_steps;                  /* block-stage Adam steps (0: no healing) */
    double heal_lr;                  /* Adam rate relative to each linear's core entry RMS */
    int heal_batch;                  /* windows per step */
    int heal_kl_steps;               /* whole-model Adam steps against the logits' KL (0: off) */
    double heal_kl_lr;               /* their rate, relative to each core's entry RMS */
    int heal_kl_batch;               /* windows per whole-model step */
} qh_mpo_heal_params;

typedef struct {
    qh_mpo_heal_params heal;
    int chi;                         /* bond dimension χ */
    double energy;                   /* 0: off; else the kept σ² fraction per cut */
    int factors;                     /* K */
    int proxy_steps;                 /* Adam steps on the layer proxy (Hessian-aware) */
    double proxy_lr;
} qh_mpo_params;

extern const qh_method_type qh_method_mpo;
extern const qh_block_ops qh_mpo_block_ops;

typedef struct {
    size_t K, rows, cols;            /* cores, m, n */
    size_t in[QH_MPO_MAXK], out[QH_MPO_MAXK];
    size_t bond[QH_MPO_MAXK + 1];    /* χ_0 = 1, ..., χ_K = 1 */
    double *core[QH_MPO_MAXK];       /* views into data */
    double *data;                    /* all cores, flat (count doubles) */
    size_t count;                    /* N_params */
} qh_mpo;

/* The most balanced K factors of d (see above) into f (K entries). */
void qh_mpo_balanced_factors(size_t d, size_t K, size_t *f);

/* TT-SVD of W with the given factors (K ≤ QH_MPO_MAXK, Π in = n, Π out = m),
 * at most chi singular values per cut (chi ≤ 0: no cap), energy as above.
 * mpo: zeroed or previously filled (freed first).  *discarded (may be NULL):
 * Σ over the cuts of the discarded σ².  QH_OK, QH_EINVAL (bad factors),
 * QH_ENOMEM, QH_ENOTPD (an SVD did not converge). */
int qh_mpo_decompose(const qh_matd *W, size_t K, const size_t *in, const size_t *out, int chi,
                     double energy, qh_mpo *mpo, double *discarded) QH_MUST_CHECK;
void qh_mpo_free(qh_mpo *mpo);       /* frees data, zeroes; NULL: no-op */
/* A copy of src's shape and cores into dst (freed first).  QH_OK or QH_ENOMEM. */
int qh_mpo_copy(const qh_mpo *src, qh_mpo *dst) QH_MUST_CHECK;

/* Doubles of scratch qh_mpo_contract_ws and qh_mpo_grad_ws need. */
size_t qh_mpo_scratch_count(const qh_mpo *mpo);
/* Ŵ (m x n) of the cores. */
void qh_mpo_contract_ws(const qh_mpo *mpo, qh_matd *What, double *scratch);
int qh_mpo_contract(const qh_mpo *mpo, qh_matd *What) QH_MUST_CHECK;
/* grad (count doubles, the cores' layout) = ∂ℓ/∂cores given G = ∂ℓ/∂Ŵ (m x n). */
void qh_mpo_grad_ws(const qh_mpo *mpo, const qh_matd *G, double *grad, double *scratch);
int qh_mpo_grad(const qh_mpo *mpo, const qh_matd *G, double *grad) QH_MUST_CHECK;

/* Rounds every core onto a per-column `bits` min-max grid (RTN). */
void qh_mpo_quantize_cores(qh_mpo *mpo, int bits);
/* Σ_k χ_k over the cores (the quantized columns). */
size_t qh_mpo_columns(const qh_mpo *mpo);

/* Shared by the mpo and lowrank rows: fills out's layout fields, Ŵ, the bits
 * and the state (in->state_out, a qh_mpo_state) from a finished decomposition.
 * bits ≤ 8 rounds the cores first. */
int qh_mpo_finish(const qh_mpo_heal_params *heal, const qh_problem *in, qh_mpo *mpo,
                  qh_result *out) QH_MUST_CHECK;

/* QH_EINVAL naming the tensor and `row` for bits 9..15 (the rows take 16 or 2..8). */
int qh_mpo_check_bits(const char *row, const qh_problem *in) QH_MUST_CHECK;

/* The block stage's state: the cores of one linear and Adam's memory. */
typedef struct {
    qh_mpo mpo;
    double *saved, *grad, *moments;  /* count, count, 2·count */
    double *scratch;                 /* qh_mpo_scratch_count + m·n (G copy) */
    double scale[QH_MPO_MAXK];       /* RMS of each core's entries at the start (Adam's step unit) */
} qh_mpo_state;

void qh_mpo_state_free(qh_mpo_state *s); /* frees members, zeroes; NULL: no-op */

#endif
