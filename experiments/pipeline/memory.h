/* memory.h -- an estimate of one sweep cell's peak resident memory (RSS), from
 * the model's shapes and the protocol alone (no weights read), so that a
 * cluster user can size a job before it runs (`qh info`, `qh run --dry-run`,
 * docs/cluster.md).
 *
 * What a cell holds at once (pipeline.c, sequential.c, layer_eval.c,
 * core/qh_method.c, eval.c; every term in bytes):
 *   weights   every stored tensor as float32 (4 x parameters), whatever the
 *             stored dtype: converted F16/BF16 are private memory, mapped F32
 *             pages are resident too once the loader has checked them (and
 *             written pages become private); spilled (spill, model.h), the
 *             linears of one block instead of all (a row with the whole-model
 *             stage still holds every block);
 *   then the larger of the two phases:
 *   calibration  the hidden states of the calibration windows (nsamples x
 *             seqlen x hidden values of act_bytes each, and one float32
 *             window to widen them into when they are 16-bit; twice, plus a
 *             float copy of one block's linears, when the method tunes
 *             against the block output), the
 *             windows' ids, the forward workspace at the calibration length,
 *             one block's four Hessian accumulators (in x in doubles per
 *             distinct linear input, of which dsyrk writes the upper triangle:
 *             half the pages of a freshly mapped one; plus a 256-column
 *             scratch each), and the largest linear's working set (below);
 *   evaluation the forward workspace at the evaluation length, one window's
 *             logits (vocab x seqlen floats), the float reference's top-k of a
 *             window, and the token ids of the largest dataset (at most one
 *             per byte of its file);
 *   plus a base (program, libraries, tokenizer, BLAS buffers: measured, not
 *   derived; QH_MEM_BASE_BYTES).
 * A linear's working set (out x in = m x n, doubles): W and H as the traversal
 * hands them over (Ŵ is written back into W), the method's result (Ŵ, W and Ŵ
 * in the processed basis, H_proc), then the larger of the method's own
 * workspace (its row's workspace_size) and the metrics' peak: the proxy
 * loss's two m x n products, or the eigendecomposition (the copy dsyevd
 * overwrites and its workspace, three n x n) beside the spectrum cache's
 * other slot (n x n when the processed basis is decomposed on its own: with
 * incoherence, a block-tuned row, a non-gated MLP, counted for OPT's ReLU
 * whose dead inputs change H_proc; else hidden x hidden).  A block-tuned row also keeps W and H of every
 * linear of the block.  Measured against it (docs/cluster.md): a 7B-shaped
 * block within 8 %.
 * Not counted: the incoherence transforms' factors, model transforms
 * (rotate, smooth), task files, the results file's buffers, allocator slack.
 * While the float reference of a dataset is built (the first cell of a model
 * when the baseline has not run), a second model and its workspace are held:
 * float_ref says how much more.
 */
#ifndef QH_MEMORY_H
#define QH_MEMORY_H

#include <stddef.h>

#include "model/model.h"
#include "pipeline/config.h"
#include "qh_method.h"

/* The base RSS of a cell before any model-sized buffer: measured on the
 * embedded models (docs/cluster.md). */
#define QH_MEM_BASE_BYTES ((size_t)40 << 20)

typedef struct {
    size_t nsamples, calib_seqlen;   /* calibration windows (seqlen 0: the model's context) */
    size_t eval_seqlen;              /* 0: the model's context */
    size_t kl_topk;                  /* float reference entries per position (0: none) */
    size_t dataset_bytes;            /* the largest evaluation file (0: none) */
    size_t act_bytes;                /* bytes a held hidden-state value takes (calibration
                                        act_dtype: 4 float32, 2 bf16/f16; 0: 4) */
    int spill;                       /* 1: the weights are spilled to a scratch file (--scratch) */
    int incoherence;                 /* 1: the method entry has incoherence processing */
    const qh_method_type *method;    /* NULL: no quantization (a baseline) */
    const void *params;              /* the method's parameters (NULL: its defaults) */
} qh_mem_protocol;

typedef struct {
    size_t base, weights;
    size_t states;                   /* calibration hidden states (+ the block stage's float path) */
    size_t forward_calib;            /* forward workspace at the calibration length, window ids */
    size_t hessians;                 /* one block's accumulators */
    size_t linear;                   /* the largest linear's working set */
    int linear_out, linear_in;       /* its shape */
    size_t calibration;              /* states + forward_calib + hessians + linear */
    size_t evaluation;               /* forward workspace, logits, reference, dataset ids */
    size_t float_ref;                /* more while the float reference is built */
    size_t peak;                     /* base + weights + max(calibration, evaluation) */
} qh_mem_estimate;

/* The estimate for a model of config c with n_params stored parameters under
 * protocol p.  Returns QH_OK; QH_EINVAL for a NULL argument. */
int qh_mem_estimate_cell(const qh_model_config *c, size_t n_params, const qh_mem_protocol *p,
                         qh_mem_estimate *out) QH_MUST_CHECK;

/* The number of stored parameters of the model folder dir (every tensor of
 * its safetensors files; headers only).  Returns QH_OK or qh_st_set_open's
 * statuses. */
int qh_mem_stored_params(const char *dir, size_t *n_params) QH_MUST_CHECK;

/* The protocol of cell `cell` of cfg (its method entry's parameters: new in
 * *params, free() it; file sizes from the configuration's paths). */
int qh_mem_protocol_of_cell(const qh_config *cfg, const qh_cell *cell, qh_mem_protocol *p,
                            void **params) QH_MUST_CHECK;

/* Bytes in words: "812 MiB", "3.41 GiB" (binary units, as Slurm's --mem and
 * GNU time count), into buf. */
const char *qh_mem_format(size_t bytes, char *buf, size_t size);

#endif
