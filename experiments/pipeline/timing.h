/* timing.h -- an estimate of one sweep cell's wall time, from the model's
 * shapes, the protocol and a throughput measured on this machine, so that a
 * cluster user can size a job's --time before it runs (`qh info`,
 * `qh run --dry-run`, docs/cluster.md "Sizing a job: time").
 *
 * The work of a cell is counted phase by phase in floating-point operations
 * (a multiply-add is 2), L blocks, T_c / T_e the calibration / evaluation
 * lengths, N = nsamples windows, F(T) the flops of one token through one
 * block at context T (2 x the block's linear weights + 2 T x q_dim for the
 * causal attention's two products):
 *   forward   the traversal (sequential.h) runs every block twice over the
 *             N x T_c calibration tokens (Hessian pass, output pass), three
 *             times with a block stage (the float path too);
 *   hessian   one dsyrk per distinct linear input per token: L N T_c
 *             (2 hidden^2 + q_dim^2 + ffn^2);
 *   method    the row's own work per m x n linear (its flops member,
 *             qh_method.h, from core/qh_flops.h's counts: RTN 10 mn,
 *             GPTQ/LDLQ m n^2 + 2 n^3, greedy passes 2 m n^2 each, SVDs
 *             8 m n min(m, n), iterations and steps times their
 *             parameters) and the driver's proxy loss (2 m n^2);
 *   incoherence  the transforms of W, Ŵ and H (Kronecker factors: about
 *             sqrt(m) + sqrt(n) operations a weight each way);
 *   metrics   layer_eval.c's measurement: the proxy loss in both bases
 *             (4 m n^2; again for the tuned Ŵ after a block stage) and the
 *             spectrum of H (dsyevd, counted 9 n^3) once per distinct input
 *             (the spectrum cache derives the damped H's), and of the
 *             processed H once per linear under incoherence;
 *   block     the block stage (block_stage.h) from the row's own plan: the
 *             targets and the loss before and after (3 N T_c F, 4 with
 *             PTQ1.61's second target), steps x batch windows of forward
 *             with tape and backward (3 T_c F each), a full pass per epoch
 *             for plans with patience;
 *   steps     the stages' optimiser steps themselves: each reconstructs,
 *             steps and writes back every weight of the block (counted 60
 *             operations a weight, scalar code);
 *   model     the whole-model stage (model_stage.h) from the row's model
 *             plan: steps x batch windows of the model's forward and
 *             backward and the float model's forward (4 T_c F_model);
 *   eval      every dataset's windows (min(max_windows, tokens / T_e), the
 *             tokens estimated at QH_TIME_BYTES_PER_TOKEN bytes each) through
 *             the whole model and its head (2 embed x vocab per token);
 * and a fixed part that is not floating point: tokenizing the calibration
 * and evaluation texts (at QH_TIME_TEXT_BYTES_PER_S) and loading the model.
 * Each phase's flops are divided by the throughput a short probe measured
 * (qh_time_probe_measure: float32 gemm at the forward's shapes for the
 * forward-like phases, float64 gemm at the Hessian's for the rest), times an
 * efficiency: the fraction of that probe the phase reached in real cells
 * (docs/cluster.md gives the measurements behind the constants).
 *
 * With calibration.max_blocks K every phase but eval counts K blocks instead
 * of L.
 * Not modelled: task files (multiple-choice items), model transforms
 * (rotate, smooth), writing the results file.  The float reference a cell
 * builds when it runs before its model's baseline (one more evaluation of
 * each dataset) is counted only when the protocol says so.  A cell with
 * tasks or transforms, or whose method's row does not count its work
 * fully (codebook searches and the like), is a lower bound (lower_bound
 * set, `unmodelled` says why) and prints as ">=".
 */
#ifndef QH_TIMING_H
#define QH_TIMING_H

#include <stddef.h>

#include "model/model.h"
#include "pipeline/config.h"
#include "pipeline/memory.h"
#include "qh_method.h"

/* Bytes of raw text per BPE token, for the evaluation windows of a dataset
 * not tokenized yet (wikitext-2: 4.5 with OPT's tokenizer, 3.8 with Llama's). */
#define QH_TIME_BYTES_PER_TOKEN 4.0
/* The tokenizer's speed, measured (docs/cluster.md); every cell tokenizes the
 * calibration text and each dataset again. */
#define QH_TIME_TEXT_BYTES_PER_S 8e6

/* What each BLAS thread beyond the first adds to gemm's throughput, as a
 * fraction of one thread's: 2 threads reached 1.56 to 1.73 times one
 * thread's sgemm and dgemm at 256 x 256 on the 2-core development machine. */
#define QH_TIME_THREAD_SCALING 0.85

/* What the probe measured: GFLOP/s of float32 and float64 gemm at the
 * model's shapes, with the BLAS thread count in force. */
typedef struct {
    double sgemm_gflops, dgemm_gflops;
    int threads;
} qh_time_probe;

/* Measures the probe for a model of width `hidden` at calibration length
 * `seqlen` (shapes capped at 512, about 0.2 s of CPU in all): one BLAS
 * thread's best gemm by its CPU time, times the thread count set now (the
 * caller sets the worker's count first) and QH_TIME_THREAD_SCALING, so that
 * other jobs on the machine do not move it; the thread count is restored.
 * Returns QH_OK, QH_EINVAL (zero shapes, NULL), QH_ENOMEM. */
int qh_time_probe_measure(size_t hidden, size_t seqlen, qh_time_probe *out) QH_MUST_CHECK;

typedef struct {
    qh_mem_protocol mem;             /* nsamples, lengths, method and parameters */
    const char *incoherence;         /* the entry's incoherence name ("none", "kron", ...) */
    int bits;                        /* the cell's width (AQLM's codebook size follows it) */
    size_t max_windows;              /* evaluation windows per dataset (0: all) */
    size_t eval_bytes[16];           /* each dataset's text size (bytes) */
    size_t n_datasets;               /* at most 16 counted; more: the rest not */
    size_t calib_bytes;              /* the calibration text's size */
    size_t n_tasks;                  /* task files (not modelled) */
    int transformed;                 /* a model transform (rotate, smooth; not modelled) */
    int max_blocks;                  /* calibration.max_blocks: blocks visited (0: all) */
    int builds_reference;            /* 1: the float reference of every dataset is built too,
                                        one more evaluation (a baseline; a cell that runs
                                        before its model's baseline) */
} qh_time_protocol;

/* Floating-point work of a cell's phases, in flops (timing.h's header says
 * what each counts). */
typedef struct {
    double forward, hessian, method, incoherence, metrics, block, model, eval;
    double steps;                    /* the stages' optimiser steps: operations on the weights */
} qh_time_flops;

typedef struct {
    qh_time_flops flops;
    double fixed_s;                  /* tokenizing and loading */
    double calibration_s;            /* forward + hessian + method + metrics + block + model */
    double eval_s;
    double seconds;                  /* fixed + calibration + eval */
    int lower_bound;                 /* 1: some work is not modelled: seconds is a lower bound */
    char unmodelled[96];             /* what, for messages ("" when complete) */
} qh_time_estimate;

/* The floating-point work of a cell of protocol p on a model of config c.
 * Returns QH_OK; QH_EINVAL for a NULL argument or a zero length. */
int qh_time_count_flops(const qh_model_config *c, const qh_time_protocol *p,
                        qh_time_flops *out) QH_MUST_CHECK;

/* The wall-time estimate from the flops and the probe.  Returns QH_OK;
 * QH_EINVAL for a NULL argument or a probe without throughput. */
int qh_time_estimate_cell(const qh_model_config *c, size_t n_params, const qh_time_protocol *p,
                          const qh_time_probe *probe, qh_time_estimate *out) QH_MUST_CHECK;

/* The protocol of cell `cell` of cfg (its method entry's parameters: new in
 * *params, free() it; file sizes from the configuration's paths). */
int qh_time_protocol_of_cell(const qh_config *cfg, const qh_cell *cell, qh_time_protocol *p,
                             void **params) QH_MUST_CHECK;

/* The protocol of model `model`'s baseline: no calibration, every dataset
 * evaluated and its float reference built. */
void qh_time_protocol_of_baseline(const qh_config *cfg, qh_time_protocol *p);

/* Seconds in words: "42 s", "12.5 min", "3.2 h", with ">=" before a lower
 * bound, into buf. */
const char *qh_time_format(double seconds, int lower_bound, char *buf, size_t size);

#endif
