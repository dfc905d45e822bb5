/* sequential.h -- block-sequential traversal of a model's decoder linears on
 * calibration data, as in GPTQ/QuIP (methods reference §1 "Pipeline").
 *
 * The calibration windows are embedded once; then, block by block:
 *   1. the block runs on the stored hidden states of every window with a hook
 *      that accumulates, in float64, the token-mean Hessian H = E[x xᵀ] of
 *      each distinct linear input (q/k/v share one, a gated MLP's gate/up another)
 *      and, alongside, the per-channel maxima max_t |x_j| of that input;
 *      all linears of a block take H from this one pass of the block as it is
 *      on entry (not "true-sequential"), like the reference code;
 *   2. the visitor sees every linear of the block, in the order of the
 *      family's stable numbers (qh_model_linear_at), with its weights W
 *      (m x n, double, column-major) and H, and may replace W;
 *   3. the block runs again, with any replaced weights, to produce the hidden
 *      states the next block sees.
 * A visitor that replaces nothing sees full-precision Hessians of every layer
 * (the bounds experiment); one that quantizes gets GPTQ's sequential scheme,
 * each block calibrated on the outputs of the already-quantized blocks.
 */
#ifndef QH_SEQUENTIAL_H
#define QH_SEQUENTIAL_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "qh_mat.h"

/* How the traversal holds the calibration windows' hidden states between
 * blocks (config "calibration": {"act_dtype": ...}): float32, or 16 bits a
 * value (bfloat16 or IEEE half), rounded to nearest even when stored and
 * widened to float32 when a block reads them; every block computes in
 * float32 either way.  16 bits halve the states' memory (memory.h). */
typedef enum { QH_ACT_F32 = 0, QH_ACT_BF16 = 1, QH_ACT_F16 = 2 } qh_act_dtype;
#define QH_ACT_DTYPE_NAMES "f32, bf16, f16"

/* "f32", "bf16" or "f16" into *out; else QH_ECONFIG naming the valid values. */
int qh_act_dtype_parse(const char *name, qh_act_dtype *out) QH_MUST_CHECK;
const char *qh_act_dtype_name(qh_act_dtype d);     /* "f32", "bf16", "f16" */

typedef struct {
    /* Called once per decoder linear, in stable-number order.  W: the layer's current
     * weights (m = out x n = in, column-major double; the callee may modify
     * it), H: the n x n Hessian of its input, x_absmax: n values, the
     * largest |x_j| of input channel j over the same tokens (qh_problem's
     * x_absmax).  Setting *replace = 1 writes W back into the model as
     * float32.  A non-OK return stops the traversal. */
    int (*fn)(const qh_model *m, int layer, int kind, qh_matd *W, const qh_matd *H,
              const double *x_absmax, int *replace, void *user);
    /* Optional: called after fn has seen every linear of block `layer` and
     * before the block produces the next block's inputs, for objectives that
     * span a whole block (a method's block stage, pipeline/block_stage.h).  x: the
     * block's inputs on the quantized path (nsamples windows of hidden x
     * seqlen floats); x_fp: the same windows on the float path (every block
     * so far with its original weights); W_fp[kind]: the block's original
     * weights in qh_linear.W's layout (NULL where the block lacks the kind).
     * The callee may change the block's weights (not x, x_fp or W_fp) and must
     * leave them as they should stay.  When set, the traversal also carries
     * the float path: twice the hidden-state memory and one more block pass
     * per block.  A non-OK return stops the traversal. */
    int (*block_fn)(qh_model *m, int layer, const float *x, const float *x_fp, size_t nsamples,
                    size_t seqlen, float *const W_fp[QH_LIN_MAX], void *user);
    /* Optional: called after each block with (layers done, total). */
    void (*progress)(int done, int total, void *user);
    void *user;
    /* How the hidden states are held (zero: float32).  A 16-bit dtype with
     * block_fn is refused (QH_EUNIMPL): the block stage reads every window's
     * states as float32. */
    qh_act_dtype act_dtype;
    /* Visit blocks [0, max_blocks) only and stop there (0: every block); the
     * later blocks keep their weights and are not visited. */
    int max_blocks;
} qh_layer_visitor;

/* Runs the traversal over nsamples windows of seqlen tokens (windows:
 * nsamples x seqlen ids).  Memory: nsamples x hidden x seqlen values of hidden
 * states (4 or 2 bytes each, v->act_dtype) plus one Hessian per distinct input
 * of a block.  Returns QH_OK, the visitor's status, QH_ENAN (non-finite
 * activations, naming the layer), QH_EINVAL, QH_EUNIMPL (16-bit states with
 * a block stage), QH_ENOMEM. */
int qh_sequential_visit(qh_model *m, const int32_t *windows, size_t nsamples, size_t seqlen,
                        const qh_layer_visitor *v) QH_MUST_CHECK;

/* Copies between a model linear (row-major [out][in] float) and a column-major
 * out x in double matrix (caller-allocated, ld >= out). */
/* Exchanges the weight pointers of block `layer`'s linears with W[kind]
 * (kinds the block lacks are skipped); calling it twice restores both. */
void qh_block_swap_weights(qh_model *m, int layer, float *W[QH_LIN_MAX]);

void qh_linear_to_matd(const qh_linear *lin, qh_matd *W);
void qh_linear_from_matd(qh_linear *lin, const qh_matd *W);

#endif
