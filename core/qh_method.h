/* qh_method.h -- the method table of the per-matrix quantizers and the driver
 * that runs one of them on one layer, optionally inside incoherence processing.
 *
 * A method is one row (qh_method_type): name, version, needs, parameter
 * descriptors, workspace size, quantize (fast) and optionally quantize_ref
 * (plain line-by-line oracle), and for a method tuned further against a
 * decoder block's output its block ops (qh_block_ops).  Parameters live in a flat struct of
 * params_size bytes described by NULL-key-terminated descriptors; the runner
 * creates, parses, range-checks and prints them generically through the
 * qh_method_params_* functions, so nothing outside the table switches on
 * method names.  Rows of this file's family: rtn, gptq, ldlq, ldlq_rg, greedy
 * (core/methods/).  QuIP = ldlq with grid=rms under incoherence (KRON).
 *
 * Conventions (methods reference §1): W is m x n (rows = output channels,
 * columns = input channels), H is n x n symmetric PSD (upper triangle read),
 * column-major double; proxy ℓ = tr((Ŵ−W) H (Ŵ−W)ᵀ).
 *
 * Typical use (a runner that knows no method):
 *     const qh_method_type *m = qh_method_find(name);          // NULL: list qh_method_names
 *     void *params = qh_method_params_new(m);                  // defaults
 *     st = qh_method_params_set(m, params, "group", "128");    // per config key
 *     void *work = aligned_alloc(64, round64(qh_method_workspace_size(m, params, rows, cols)));
 *     qh_problem p = { W, H, bits, seed, layer_index, "layers.3.fc1" };
 *     qh_incoh_params ip = { QH_INCOH_KRON, 1, seed, layer_index, 0 };   // or pass NULL
 *     qh_result r; qh_result_init(&r);
 *     st = qh_quantize(m, params, &p, &ip, work, &r);          // r.What, r.proxy_loss, ...
 *     qh_result_free(&r); free(work); free(params);
 */
#ifndef QH_METHOD_H
#define QH_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"
#include "qh_grid.h"
#include "qh_incoherence.h"
#include "qh_mat.h"

/* ---- parameters ----------------------------------------------------------- */

typedef enum {
    QH_PARAM_INT = 0,                /* int; value in [lo, hi] */
    QH_PARAM_DOUBLE = 1,             /* double; value in [lo, hi] */
    QH_PARAM_BOOL = 2,               /* int 0/1; "0|1|true|false" */
    QH_PARAM_ENUM = 3,               /* int index into choices "a|b|c" */
} qh_param_type;

typedef struct {
    const char *key;                 /* stable key in configs and results; NULL ends a list */
    qh_param_type type;
    size_t offset;                   /* offsetof in the method's params struct */
    double def, lo, hi;              /* default (ENUM: index); range for INT/DOUBLE */
    const char *choices;             /* ENUM only: "nearest|stochastic" */
    const char *doc;
    const char *reference;           /* where this parameter is a documented deviation from
                                        the authors' code: the value (as config text) that
                                        reproduces their code; NULL: no deviation */
} qh_param_desc;

/* ---- one quantization problem and its result ------------------------------ */

typedef struct {
    const qh_matd *W;                /* (m, n) weights; borrows */
    const qh_matd *H;                /* (n, n) proxy Hessian; NULL allowed without QH_NEEDS_HESSIAN */
    int bits;                        /* 1..8 */
    uint64_t seed;                   /* with layer: qh_rng_stream keys for stochastic rounding */
    uint32_t layer;
    const char *name;                /* tensor name for messages (may be NULL) */
    void *state_out;                 /* optional (NULL: none): a state from the row's
                                        block->state_new; a method with a block stage fills
                                        it with the representation its block ops tune
                                        (see qh_block_ops); others ignore it */
    const double *x_absmax;          /* optional (NULL: unknown): (n) max over the calibration
                                        tokens of |x_j| per input channel, in the original
                                        basis (ptq161's reference ranking).  The driver hands
                                        the method NULL under incoherence processing, where
                                        the channels are mixed and these maxima mean nothing */
} qh_problem;

/* Everything a layer's quantization produces.  The driver allocates and owns
 * every pointer member; release with qh_result_free.  "Processed basis" is the
 * basis after dead columns and incoherence processing (= original basis
 * without incoherence). */
typedef struct {
    size_t rows, cols;               /* m, n */
    qh_matd *What;                   /* (m, n) quantized weights, original basis */
    qh_matd *W_proc;                 /* (m, n) target W̃ in the processed basis */
    qh_matd *What_proc;              /* (m, n) Ŵ in the processed basis (on the grid) */
    qh_matd *H_proc;                 /* (n, n) the H actually rounded against: processed
                                        basis, damped, original column order; NULL if no H */
    size_t *col_order;               /* (n) col_order[k] = column quantized k-th */
    const char *order;               /* static: "natural", "reverse", "act_order", "diag_desc" */
    qh_grid grid;                    /* the grid (kind, bits, Δ and z per row and group);
                                        group gi covers processing positions
                                        gi·group .. (gi+1)·group−1, i.e. columns
                                        col_order[gi·group ...] (act-order!) */
    size_t n_dead_cols;              /* H_ii == 0 columns fixed (H_ii = the live diagonal's
                                        mean, W[:, i] = 0; qh_dead_columns) */
    size_t n_damp_retries;           /* failed Cholesky attempts before damping sufficed */
    double damp_used;                /* relative damping finally applied (0 without H) */
    size_t n_greedy_passes;          /* greedy passes actually run (stops when stable);
                                        scalar-grid rows only (greedy, ldlq npasses) */
    /* Methods that are not a scalar grid (aqlm, pvq, quipsharp) leave grid
     * empty and say what they hold here instead. */
    double *row_scale;               /* (m) or NULL: the scale of each output row of
                                        Ŵ_proc (aqlm, pvq: s_r; quipsharp: Wscale on
                                        every row); malloc'ed by the method, freed by
                                        qh_result_free, NULL for scalar-grid rows */
    size_t n_iterations;             /* the row's own refinement iterations run
                                        (aqlm: epochs; quipsharp: tune passes; 0 else) */
    double bits_nominal;             /* b */
    double bits_side;                /* per weight: grid scales/zeros + incoherence side info */
    double bits_total;               /* nominal + side */
    double proxy_loss;               /* tr((What_proc−W_proc) H_proc (·)ᵀ); 0 without H */
    double incoh_side_bits;          /* total bits of incoherence side info (0 without) */
} qh_result;

void qh_result_init(qh_result *r);   /* zeroes; safe to free */
void qh_result_free(qh_result *r);   /* frees members; the struct is the caller's */

/* ---- the method table ----------------------------------------------------- */

enum {
    QH_NEEDS_HESSIAN = 1u << 0,      /* H required */
    QH_NEEDS_GRID = 1u << 1,         /* rounds onto a scalar grid */
    QH_NEEDS_RNG = 1u << 2,          /* may draw random numbers (stochastic rounding) */
};

/* Which of the theory's bounds (qh_bounds.h) describe a method's proxy loss:
 * the general ones (nearest/stochastic rounding, incoherence) apply to every
 * method; LDLQ's (Theorem 1, Theorem 3, the QuIP# variant) only to the LDL
 * feedback family (OPTQ = LDLQ by Theorem 6, LDLQ, LDLQ-RG). */
enum {
    QH_BOUND_FAMILY_GENERAL = 0,
    QH_BOUND_FAMILY_LDLQ = 1,
};

/* ---- the block stage ------------------------------------------------------ */

/* A method that goes on tuning its parameters against a decoder block's
 * output (PTQ1.61's reference objective, SignRound, AQLM's block fine-tuning,
 * ...) declares these ops in its row; the pipeline
 * (experiments/pipeline/block_stage.h) owns the block forward, the loss and
 * the backward pass and calls only these, so it knows no method.
 *
 * A state is the method's tunable representation of one linear, created by
 * state_new and handed to quantize as qh_problem.state_out; quantize fills
 * it (in the model's basis: the pipeline refuses incoherence processing
 * with a block stage at config time).  The row's plan says which loss, how
 * many optimiser steps, how many windows each step averages over and how
 * they are drawn, and whether the best iterate is kept.  Per step the stage
 * writes reconstruct's Ŵ of every linear of the block into the model, runs
 * the block forward, the loss and the backward pass on the step's windows,
 * and hands each state its G = ∂loss/∂Ŵ (the mean over the step's windows)
 * through step. */

/* Which block loss the stage minimises (block_stage.h gives the formulas). */
typedef enum {
    QH_BLOCK_LOSS_PTQ161 = 0,        /* MSE(Yq,Yfp) + MSE(Yq,Yfq) − log|cos(Yq,Yfp)| − log|cos(Yq,Yfq)| */
    QH_BLOCK_LOSS_MSE = 1,           /* MSE(Yq, Yfp): the float block on float inputs (SignRound, AQLM) */
} qh_block_loss_kind;

/* How the step's windows are drawn from the nsamples calibration windows. */
typedef enum {
    QH_BLOCK_DRAW_SEQUENTIAL = 0,    /* windows in calibration order, wrapping around (epochs) */
    QH_BLOCK_DRAW_RANDOM = 1,        /* per step, `batch` distinct windows drawn at random from a
                                        stream keyed by the cell's seed and the block
                                        (auto-round's randperm(nsamples)[:batch]) */
} qh_block_draw;

typedef struct {
    qh_block_loss_kind loss;
    long steps;                      /* optimiser steps (0: no step; the quantize result stays) */
    int batch;                       /* windows per step (≥ 1; capped at nsamples) */
    qh_block_draw draw;
    int keep_best;                   /* 1: before each step, the step's loss is compared with the
                                        best so far and the state saved (keep) when lower; at the
                                        end the best saved state is restored (auto-round); 0: the
                                        last iterate is kept */
    int patience;                    /* > 0: after every pass over the windows (nsamples/batch
                                        steps) the mean loss over all windows is measured; stop
                                        when it has not fallen by rel_tol for `patience` passes and
                                        restore the best pass's state (AQLM's early stop);
                                        needs keep */
    double rel_tol;                  /* with patience: the relative improvement that counts */
} qh_block_plan;

/* keep's actions. */
enum { QH_BLOCK_KEEP_SAVE = 0, QH_BLOCK_KEEP_RESTORE = 1 };

typedef struct qh_block_ops {
    const char *setting;             /* the parameter setting that asks for the stage, for
                                        messages ("objective \"block\"") */
    int (*wants)(const void *params);   /* 1: these params tune against the block */
    /* The tuning's plan for these params and nsamples calibration windows. */
    void (*plan)(const void *params, size_t nsamples, qh_block_plan *out);
    void *(*state_new)(void);           /* an empty state; NULL: out of memory */
    void (*state_free)(void *state);    /* NULL: no-op */
    /* The m x n of the linear the state holds; 0 x 0 while quantize never filled it. */
    void (*state_shape)(const void *state, size_t *rows, size_t *cols);
    /* Ŵ (m x n, caller-allocated) of the state's current parameters. */
    void (*reconstruct)(const void *params, const void *state, qh_matd *What);
    /* One optimiser step of the state's parameters from G = ∂loss/∂Ŵ (m x n) at
     * reconstruct's Ŵ; step_no counts from 1 to plan.steps in each tuning of a
     * block (an optimiser with memory starts it afresh at 1).  Returns QH_OK or
     * a status with a message naming the state's problem. */
    int (*step)(const void *params, void *state, const qh_matd *G, int step_no);
    /* Only for plans with keep_best or patience (NULL otherwise): SAVE copies the
     * tunable parameters aside inside the state, RESTORE puts the saved copy
     * back.  QH_OK or QH_ENOMEM. */
    int (*keep)(void *state, int action);
    /* Optional (NULL: none): the whole-model stage (pipeline/model_stage.h), run after
     * every block is quantized (and block-tuned), tuning the states of every linear of
     * the model jointly against the KL of the model's logits to the float model's.
     * model_plan gives its plan (steps 0: no stage; loss is ignored, keep_best needs
     * keep), model_step one optimiser step as step does, with the stage's rate. */
    void (*model_plan)(const void *params, qh_block_plan *out);
    int (*model_step)(const void *params, void *state, const qh_matd *G, int step_no);
} qh_block_ops;

/* quantize contract: in->W, in->H are in the processed basis and valid
 * (checked by the driver).  The driver has allocated out->What_proc (m x n),
 * out->H_proc (n x n, when in->H) and out->col_order (n); the method fills
 * them, out->grid (qh_grid_init), out->order and the counters.  in->H may be
 * out->H_proc itself (the driver passes it so, to save a copy).  work has
 * workspace_size(params, m, n) bytes (64-byte aligned). */
typedef struct qh_method_type {
    const char *name;                /* stable key in configs and results */
    uint32_t version;                /* +1 whenever outputs change for the same inputs */
    uint32_t needs;                  /* QH_NEEDS_* */
    const char *summary;             /* one line for `qh methods` */
    const qh_param_desc *params;     /* NULL-key-terminated */
    size_t params_size;
    size_t (*workspace_size)(const void *params, size_t rows, size_t cols);
    int (*quantize)(const void *params, const qh_problem *in, qh_result *out, void *work);
    int (*quantize_ref)(const void *params, const qh_problem *in, qh_result *out, void *work);
    double tol_ref;                  /* relative tolerance of proxy loss, fast vs ref */
    int min_bits, max_bits;          /* bit widths the row accepts; 0, 0 means 1..8
                                        (1-bit methods such as BiLLM set 1, 1) */
    /* How reports name and order it, and which theory applies. */
    const char *display;             /* name in tables ("OPTQ"); NULL: name */
    int display_order;               /* rows and series sort by it, then by name */
    uint32_t bound_family;           /* QH_BOUND_FAMILY_*: which bounds describe its proxy */
    /* NULL, or the ops of a stage that tunes the row's parameters against the
     * decoder block's output when block->wants(params) (ptq161, objective = block). */
    const qh_block_ops *block;
    /* Optional (NULL: the row's own work is not counted and a cell's time
     * estimate is a lower bound): the floating-point work of quantizing one
     * rows x cols linear with params (the row's struct, never NULL) at `bits`,
     * for the wall-time estimate (experiments/pipeline/timing.h; building
     * blocks in qh_flops.h).  Sets *partial = 1 when part of the work (a
     * codebook or lattice search) is left out, so the estimate is a lower
     * bound; leaves it alone otherwise. */
    double (*flops)(const void *params, int bits, size_t rows, size_t cols, int *partial);
    double flops_efficiency;         /* the fraction of the float64 gemm probe that work
                                        reaches (QH_FLOPS_EFF_*, measured: docs/cluster.md);
                                        0: QH_FLOPS_EFF_FEEDBACK */
} qh_method_type;

/* The bit widths m accepts (the driver refuses others with QH_EINVAL). */
void qh_method_bits_range(const qh_method_type *m, int *lo, int *hi);

/* Whether m's parameters ask for its block stage (block ops whose `wants` says
 * so: tuned per decoder block against the block output), and for its
 * whole-model stage (a model_plan of one step or more, after the block loop).
 * 0 for rows without block ops.  The pipeline, its estimates and its checks
 * all ask here. */
int qh_method_wants_block_stage(const qh_method_type *m, const void *params);
int qh_method_wants_model_stage(const qh_method_type *m, const void *params);

/* NULL-terminated list of every registered method. */
const qh_method_type *const *qh_method_registry(void);
/* The row named `name`, or NULL (unknown names: see qh_method_names). */
const qh_method_type *qh_method_find(const char *name);
/* "rtn, gptq, ..." into buf (always terminated), for error messages. */
void qh_method_names(char *buf, size_t len);

/* ---- generic parameter handling ------------------------------------------- */

/* New params struct of m->params_size bytes holding the defaults; free() it. NULL on OOM. */
void *qh_method_params_new(const qh_method_type *m);
void qh_method_params_default(const qh_method_type *m, void *params);
/* Parses value for key and range-checks it.  Returns QH_OK or QH_ECONFIG with a
 * message naming the method, key and what was expected (unknown keys list the valid ones). */
int qh_method_params_set(const qh_method_type *m, void *params, const char *key,
                         const char *value) QH_MUST_CHECK;
const qh_param_desc *qh_method_param_find(const qh_method_type *m, const char *key);
/* The current value as text ("128", "0.01", "stochastic", "1"). */
void qh_param_format(const qh_param_desc *d, const void *params, char *buf, size_t len);
/* The default / range as text ("[0, 1]", "nearest|stochastic", "0|1"). */
void qh_param_format_default(const qh_param_desc *d, char *buf, size_t len);
void qh_param_format_range(const qh_param_desc *d, char *buf, size_t len);
/* Resets params to m's defaults for a run under incoherence `incoh`: the
 * row's defaults, except that a row with a "grid" parameter rounds on QuIP's
 * symmetric grid at 2.4 RMS ("rms", qfn 'b') under any incoherence kind.
 * Drivers call it before applying explicit settings, which override it.
 * Returns QH_OK or qh_method_params_set's status. */
int qh_method_params_defaults_for(const qh_method_type *m, void *params,
                                  qh_incoh_kind incoh) QH_MUST_CHECK;
/* Sets every parameter of m that has a `reference` value to it, so that the
 * row computes what the authors' code computes (a config's "variant":
 * "reference").  Explicit settings applied afterwards override it.
 * Returns QH_OK or qh_method_params_set's status. */
int qh_method_params_reference(const qh_method_type *m, void *params) QH_MUST_CHECK;

/* Which values a run starts from: the rows' defaults, or the values that
 * reproduce the authors' code (a config's "variant", `qh layer --variant`). */
typedef enum { QH_VARIANT_DEFAULT = 0, QH_VARIANT_REFERENCE = 1 } qh_variant;
#define QH_VARIANT_NAMES "default, reference"
/* "default" or "reference" into *v; else QH_ECONFIG naming the valid values. */
int qh_variant_parse(const char *name, qh_variant *v) QH_MUST_CHECK;
const char *qh_variant_name(qh_variant v);     /* "default", "reference" */
/* The start of every driver: qh_method_params_defaults_for(m, params,
 * incoh), then, for QH_VARIANT_REFERENCE, qh_method_params_reference.
 * Explicit settings applied afterwards override both. */
int qh_method_params_variant(const qh_method_type *m, void *params, qh_incoh_kind incoh,
                             qh_variant variant) QH_MUST_CHECK;

/* Bytes of workspace for a layer of rows x cols: the method's scratch, and at
 * least what the driver's proxy loss needs (it reuses the space afterwards).
 * Allocate once per layer shape (64-byte aligned) and pass it to qh_quantize. */
size_t qh_method_workspace_size(const qh_method_type *m, const void *params, size_t rows,
                                size_t cols);

/* ---- the driver ----------------------------------------------------------- */

/* Quantizes one layer.
 *   m: a registry row; params: its struct (NULL = defaults); p: the problem;
 *   incoh: incoherence processing, or NULL / kind NONE without rescale for none;
 *   work: workspace of at least qh_method_workspace_size bytes, or NULL to let
 *         the driver allocate one for this call;
 *   out: caller's struct, initialised (qh_result_init) or holding a previous
 *        result: it is reset, and its matrices are reused when the shape
 *        matches (no new memory for a run of same-shape layers).  On return
 *        filled (partly on error); release with qh_result_free either way.
 * Steps: validate → copy (W, H) → dead columns → incoherence apply → method in
 * the processed basis → Ŵ back to the original basis → proxy loss and bits.
 * Returns QH_OK; QH_EINVAL (NULL or zero-size W, bits outside 1..8, H missing,
 * bad parameters such as a group not dividing n); QH_EBADLEN (H not n x n);
 * QH_ENAN (non-finite W or H, the message names the tensor); QH_ENOTPD (H not
 * PSD, after counted damping retries); QH_ENOMEM; statuses of qh_incoh_*. */
int qh_quantize(const qh_method_type *m, const void *params, const qh_problem *p,
                const qh_incoh_params *incoh, void *work, qh_result *out) QH_MUST_CHECK;
/* The same with the method's quantize_ref (QH_EUNIMPL when the row has none). */
int qh_quantize_ref(const qh_method_type *m, const void *params, const qh_problem *p,
                    const qh_incoh_params *incoh, void *work, qh_result *out) QH_MUST_CHECK;

#endif
