/* timing.c -- the wall-time estimate of a sweep cell (see timing.h for what
 * is counted).  Each phase's count follows the code it names; keep them in
 * step when those change.  The efficiencies are measured, not derived
 * (docs/cluster.md "Sizing a job: time"). */
#include "pipeline/timing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qh_blas.h"
#include "qh_clock.h"
#include "qh_flops.h"
#include "qh_incoherence.h"
#include "qh_path.h"

/* Fractions of the probe's throughput the phases reached in the measured
 * cells (docs/cluster.md), fitted on CPU seconds: the calibration forward
 * runs the probe's own shapes; the evaluation adds the softmax and the KL
 * over the vocabulary beside its gemms; the Hessians convert every window to
 * float64 before dsyrk; the metrics are dsyevd and the proxy products. */
#define EFF_FORWARD 0.8
#define EFF_EVAL 0.5
#define EFF_HESSIAN 0.5
#define EFF_METRICS 0.5
/* Fitted to whole block-tuned cells: the tuning alone ran at 0.8, the rest
 * of such a cell (states, float path, copies) is not counted elsewhere. */
#define EFF_BACKWARD 0.65
#define EFF_INCOHERENCE 0.15         /* many small gemms of sqrt(n)-sized factors */
#define EFF_STEP 0.02                /* the optimiser steps: scalar loops over the weights, one
                                        thread whatever the BLAS count */
#define STEP_OPS_PER_WEIGHT 60.0
/* The model's loading (conversion to float32, checks): seconds per parameter. */
#define LOAD_S_PER_PARAM 5e-9

/* The probe's factor over one thread (qh_time_probe_measure). */
static double thread_scale(int threads)
{
    return threads > 1 ? threads * QH_TIME_THREAD_SCALING : 1;
}

static double min2d(double a, double b) { return a < b ? a : b; }

/* ---- the probe -------------------------------------------------------------- */

/* CPU seconds of the calling thread: the probe runs gemm on one thread, in
 * this thread, so these count the work and not the time other jobs on the
 * machine held the core. */
static double thread_seconds(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return qh_seconds();
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* GFLOP/s of one thread's gemm on n x n by n x k operands: the best of the
 * calls made within `budget` CPU seconds, after a warm-up call (page faults,
 * BLAS buffers). */
static double probe_gemm(int dbl, size_t n, size_t k, void *A, void *B, void *C, double budget)
{
    double best = 0, start = thread_seconds(), flops = 2.0 * (double)n * (double)n * (double)k;
    for (int rep = 0; rep < 1000; rep++) {
        double t0 = thread_seconds();
        if (dbl)
            qh_dgemm('N', 'N', n, k, n, 1.0, A, n, B, n, 0.0, C, n);
        else
            qh_sgemm('N', 'N', n, k, n, 1.0f, A, n, B, n, 0.0f, C, n);
        double t1 = thread_seconds();
        if (rep >= 1 && t1 > t0) best = flops / (t1 - t0) > best ? flops / (t1 - t0) : best;
        if (rep >= 3 && t1 - start >= budget) break;
    }
    return best / 1e9;
}

int qh_time_probe_measure(size_t hidden, size_t seqlen, qh_time_probe *out)
{
    if (!out || !hidden || !seqlen) QH_ERROR(QH_EINVAL, "time probe: NULL output or zero shape");
    /* the forward multiplies (hidden x hidden) by (hidden x tokens); the
     * Hessian and the methods work on n x n; beyond 512 gemm runs near its
     * peak already, and shorter calls give the best-of more chances on a
     * busy machine */
    size_t n = hidden < 512 ? hidden : 512, k = seqlen < 512 ? seqlen : 512;
    size_t elems = n * n + n * (k > n ? k : n) * 2;
    double *buf = malloc(elems * sizeof(double));
    if (!buf) QH_ERROR(QH_ENOMEM, "time probe: out of memory for %zu x %zu", n, k);
    for (size_t i = 0; i < elems; i++) buf[i] = 1.0 / (double)(1 + i % 7);
    float *fbuf = (float *)buf;      /* the float probe uses the first half as floats */
    double *B = buf + n * n, *C = B + n * (k > n ? k : n);
    /* One thread, timed by its CPU time and scaled by the worker's count:
     * the machine's throughput whatever other jobs run on it now (several
     * threads' wall time would measure their load instead, which the cell's
     * own node need not share). */
    int threads = qh_blas_info().threads;
    qh_blas_set_threads(1);
    double s1 = probe_gemm(0, n, k, fbuf, fbuf + n * n, fbuf + n * n + n * k, 0.1);
    double d1 = probe_gemm(1, n, n, buf, B, C, 0.1);
    qh_blas_set_threads(threads);
    free(buf);
    *out = (qh_time_probe){ s1 * thread_scale(threads), d1 * thread_scale(threads), threads };
    return QH_OK;
}

/* ---- the methods' own work ---------------------------------------------------- */

/* A row's own work is its flops member (qh_method.h); a row without one is
 * estimated from the driver's work alone, a lower bound, at the feedback
 * rows' efficiency. */
static double method_efficiency(const qh_method_type *t)
{
    return t && t->flops && t->flops_efficiency > 0 ? t->flops_efficiency
                                                    : QH_FLOPS_EFF_FEEDBACK;
}

/* Incoherence processing of one m x n linear: W and Ŵ through the Kronecker
 * factors (about sqrt(m) + sqrt(n) operations a weight, both ways) and H
 * once; the Hadamard transform log2 of the size instead. */
static double incoherence_flops(qh_incoh_kind kind, double m, double n)
{
    if (kind == QH_INCOH_KRON) return 4 * m * n * (sqrt(m) + sqrt(n)) + 4 * n * n * sqrt(n);
    if (kind == QH_INCOH_HADAMARD) return 4 * m * n * (log2(m) + log2(n)) + 4 * n * n * log2(n);
    return 0;
}

/* ---- the count ------------------------------------------------------------------ */

typedef struct {
    double m, n;
    int input;                       /* which distinct input: 0 attention, 1 o, 2 MLP, 3 down */
} linear_shape;

/* The linears of a block (memory.c's order); returns their number. */
static int block_linears(const qh_model_config *c, linear_shape s[7])
{
    double h = c->hidden, qd = (double)c->n_heads * c->head_dim;
    double kvd = (double)c->n_kv_heads * c->head_dim, ffn = c->ffn_dim;
    linear_shape all[7] = { { qd, h, 0 }, { kvd, h, 0 }, { kvd, h, 0 }, { h, qd, 1 },
                            { ffn, h, 2 }, { h, ffn, 3 }, { ffn, h, 2 } };
    int n = c->features.gated_mlp ? 7 : 6;
    memcpy(s, all, sizeof all);
    return n;
}

/* One token through one block at context T (timing.h: F(T)). */
static double block_token_flops(const qh_model_config *c, double T)
{
    linear_shape s[7];
    int n = block_linears(c, s);
    double w = 0;
    for (int k = 0; k < n; k++) w += s[k].m * s[k].n;
    return 2 * w + 2 * T * (double)c->n_heads * c->head_dim;
}

/* One token through the whole model and its head at context T. */
static double model_token_flops(const qh_model_config *c, double T)
{
    double e = c->embed_dim > 0 ? c->embed_dim : c->hidden;
    double proj = e != c->hidden ? 2 * 2 * e * c->hidden : 0;
    return c->n_layers * block_token_flops(c, T) + 2 * e * c->vocab_size + proj;
}

/* The blocks the traversal visits (calibration.max_blocks; every block's
 * calibration, quantization and stages scale with them, evaluation does not). */
static double visited_blocks(const qh_model_config *c, const qh_time_protocol *p)
{
    return p->max_blocks > 0 && p->max_blocks < c->n_layers ? p->max_blocks : c->n_layers;
}

static int wants_block(const qh_time_protocol *p)
{
    const qh_method_type *t = p->mem.method;
    return t && qh_method_wants_block_stage(t, p->mem.params);
}

/* The block stage's work on one block (block_stage.c: targets, the loss
 * before and after, the steps' forward with tape and backward, the passes
 * of plans with patience); 0 without one. */
static double block_weights(const qh_model_config *c)
{
    linear_shape s[7];
    int n = block_linears(c, s);
    double w = 0;
    for (int k = 0; k < n; k++) w += s[k].m * s[k].n;
    return w;
}

/* The optimiser steps' own work (block_stage.c step and write_weights: every
 * weight of the block reconstructed, stepped and written back per step),
 * in operations, STEP_OPS_PER_WEIGHT a weight. */
static double stage_step_ops(const qh_model_config *c, const qh_time_protocol *p)
{
    const qh_method_type *t = p->mem.method;
    if (!t || !t->block) return 0;
    qh_block_plan plan = { .steps = 0 }, model = { .steps = 0 };
    if (wants_block(p)) t->block->plan(p->mem.params, p->mem.nsamples, &plan);
    if (t->block->model_plan) t->block->model_plan(p->mem.params, &model);
    double steps = (double)(plan.steps + model.steps);
    return steps * visited_blocks(c, p) * block_weights(c) * STEP_OPS_PER_WEIGHT;
}

static double block_stage_flops(const qh_model_config *c, const qh_time_protocol *p, double T)
{
    if (!wants_block(p)) return 0;
    qh_block_plan plan = { .steps = 0, .batch = 1 };
    size_t N = p->mem.nsamples;
    p->mem.method->block->plan(p->mem.params, N, &plan);
    double batch = min2d(plan.batch > 0 ? plan.batch : 1, (double)N);
    double windows = (double)N * (plan.loss == QH_BLOCK_LOSS_PTQ161 ? 4 : 3)
                   + (double)plan.steps * batch * 3;
    if (plan.patience > 0) windows += (double)plan.steps * batch;   /* a full pass per epoch */
    return windows * T * block_token_flops(c, T);
}

/* The whole-model stage: per step, batch windows of the model's forward and
 * backward (3) and the float model's forward (1). */
static double model_stage_flops(const qh_model_config *c, const qh_time_protocol *p, double T)
{
    const qh_method_type *t = p->mem.method;
    if (!t || !t->block || !t->block->model_plan) return 0;
    qh_block_plan plan = { .steps = 0, .batch = 1 };
    t->block->model_plan(p->mem.params, &plan);
    double batch = min2d(plan.batch > 0 ? plan.batch : 1, (double)p->mem.nsamples);
    return (double)plan.steps * batch * 4 * T * model_token_flops(c, T);
}

/* Each linear's method work and measurement; *partial as the row's flops
 * sets it, and 1 for a row without flops. */
static void linear_flops(const qh_model_config *c, const qh_time_protocol *p, qh_time_flops *f,
                         int *partial)
{
    linear_shape s[7];
    int n_lin = block_linears(c, s);
    const qh_method_type *t = p->mem.method;
    const qh_incoh_row *ir = qh_incoh_find(p->incoherence ? p->incoherence : "none");
    qh_incoh_kind kind = ir ? ir->kind : QH_INCOH_NONE;
    double method = 0, incoherence = 0, metrics = 0, eig_done[4] = { 0 };
    double remeasure = wants_block(p) ? 2 : 1;      /* pipeline.c measure_tuned */
    for (int k = 0; k < n_lin; k++) {
        double m = s[k].m, n = s[k].n;
        if (t->flops) method += t->flops(p->mem.params, p->bits, (size_t)m, (size_t)n, partial);
        method += qh_flops_times_h(m, n);            /* qh_quantize's proxy loss */
        incoherence += incoherence_flops(kind, m, n);
        metrics += remeasure * 4 * m * n * n;        /* proxy loss, both bases */
        /* the spectrum cache: H once per distinct input (the damped, processed
         * H is H plus a shift of its diagonal, whose spectrum the cache derives);
         * under incoherence the processed H again per linear (its rotation
         * differs per kind) */
        if (!eig_done[s[k].input]) metrics += qh_flops_eig(n), eig_done[s[k].input] = 1;
        if (kind != QH_INCOH_NONE) metrics += qh_flops_eig(n);
    }
    if (!t->flops) *partial = 1;
    double L = visited_blocks(c, p);
    f->method = L * method;
    f->incoherence = L * incoherence;
    f->metrics = L * metrics;
}

/* Evaluation windows of all datasets together. */
static double eval_windows(const qh_time_protocol *p, double T)
{
    double w = 0;
    for (size_t d = 0; d < p->n_datasets && d < 16; d++) {
        double all = floor((double)p->eval_bytes[d] / QH_TIME_BYTES_PER_TOKEN / T);
        w += p->max_windows && (double)p->max_windows < all ? (double)p->max_windows : all;
    }
    return w;
}

static int count_with_params(const qh_model_config *c, const qh_time_protocol *p, qh_time_flops *f,
                             int *partial)
{
    *f = (qh_time_flops){ 0 };
    *partial = 0;
    double ctx = c->max_pos;
    double Tc = p->mem.calib_seqlen ? (double)p->mem.calib_seqlen : ctx;
    double Te = p->mem.eval_seqlen ? (double)p->mem.eval_seqlen : ctx;
    if (Tc <= 0 || Te <= 0) QH_ERROR(QH_EINVAL, "time estimate: zero sequence length");
    double L = visited_blocks(c, p), tokens = (double)p->mem.nsamples * Tc;
    if (p->mem.method) {
        double passes = wants_block(p) ? 3 : 2;
        f->forward = L * passes * tokens * block_token_flops(c, Tc);
        double h = c->hidden, qd = (double)c->n_heads * c->head_dim, ffn = c->ffn_dim;
        f->hessian = L * tokens * (2 * h * h + qd * qd + ffn * ffn);
        linear_flops(c, p, f, partial);
        f->block = L * block_stage_flops(c, p, Tc);
        f->model = model_stage_flops(c, p, Tc);
        f->steps = stage_step_ops(c, p);
    }
    f->eval = eval_windows(p, Te) * Te * model_token_flops(c, Te) * (p->builds_reference ? 2 : 1);
    return QH_OK;
}

/* The count with the method's parameters; its defaults where p has none
 * (the block ops read their parameters). */
static int count(const qh_model_config *c, const qh_time_protocol *p, qh_time_flops *f,
                 int *partial)
{
    if (!c || !p || !f || !partial) QH_ERROR(QH_EINVAL, "time estimate: NULL argument");
    if (!p->mem.method || p->mem.params) return count_with_params(c, p, f, partial);
    qh_time_protocol q = *p;
    void *params = qh_method_params_new(p->mem.method);
    if (!params) QH_ERROR(QH_ENOMEM, "time estimate: out of memory");
    q.mem.params = params;
    int st = count_with_params(c, &q, f, partial);
    free(params);
    return st;
}

int qh_time_count_flops(const qh_model_config *c, const qh_time_protocol *p, qh_time_flops *out)
{
    int partial = 0;
    return count(c, p, out, &partial);
}

/* What the estimate leaves out, as words; 1 when anything. */
static int describe_unmodelled(const qh_time_protocol *p, int partial, char *buf, size_t size)
{
    buf[0] = '\0';
    const char *parts[4] = { partial ? "the method's searches" : NULL,
                             p->n_tasks ? "task files" : NULL,
                             p->transformed ? "model transforms" : NULL,
                             p->n_datasets > 16 ? "datasets past the 16th" : NULL };
    size_t used = 0;
    for (int i = 0; i < 4; i++)
        if (parts[i] && used < size)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", parts[i]);
    return buf[0] != '\0';
}

int qh_time_estimate_cell(const qh_model_config *c, size_t n_params, const qh_time_protocol *p,
                          const qh_time_probe *probe, qh_time_estimate *out)
{
    if (!probe || !out) QH_ERROR(QH_EINVAL, "time estimate: NULL argument");
    if (!(probe->sgemm_gflops > 0) || !(probe->dgemm_gflops > 0))
        QH_ERROR(QH_EINVAL, "time estimate: the probe measured no throughput");
    *out = (qh_time_estimate){ 0 };
    int partial = 0;
    QH_TRY(count(c, p, &out->flops, &partial));
    const qh_time_flops *f = &out->flops;
    double s = probe->sgemm_gflops * 1e9, d = probe->dgemm_gflops * 1e9;
    double eff_method = method_efficiency(p->mem.method);
    out->calibration_s = f->forward / (s * EFF_FORWARD) + f->hessian / (d * EFF_HESSIAN)
                       + f->method / (d * eff_method) + f->incoherence / (d * EFF_INCOHERENCE)
                       + f->metrics / (d * EFF_METRICS) + (f->block + f->model) / (s * EFF_BACKWARD)
                       + f->steps / (d / thread_scale(probe->threads) * EFF_STEP);
    out->eval_s = f->eval / (s * EFF_EVAL);
    double text = (double)p->calib_bytes * (p->mem.method ? 1 : 0);
    for (size_t k = 0; k < p->n_datasets && k < 16; k++) text += (double)p->eval_bytes[k];
    out->fixed_s = text / QH_TIME_TEXT_BYTES_PER_S + (double)n_params * LOAD_S_PER_PARAM;
    out->seconds = out->fixed_s + out->calibration_s + out->eval_s;
    out->lower_bound = describe_unmodelled(p, partial, out->unmodelled, sizeof out->unmodelled);
    return QH_OK;
}

int qh_time_protocol_of_cell(const qh_config *cfg, const qh_cell *cell, qh_time_protocol *p,
                             void **params)
{
    *p = (qh_time_protocol){ 0 };
    QH_TRY(qh_mem_protocol_of_cell(cfg, cell, &p->mem, params));
    const qh_config_method *cm = &cfg->methods[cell->method];
    p->incoherence = cm->incoherence;
    p->bits = cell->bits;
    p->max_windows = cfg->eval_max_windows > 0 ? (size_t)cfg->eval_max_windows : 0;
    p->n_datasets = cfg->n_datasets;
    for (size_t d = 0; d < cfg->n_datasets && d < 16; d++)
        p->eval_bytes[d] = qh_path_file_bytes(cfg->datasets[d].path);
    p->calib_bytes = qh_path_file_bytes(cfg->calib_path);
    p->n_tasks = cfg->n_tasks;
    p->transformed = cm->tf.rotate || cm->tf.smooth_alpha > 0;
    p->max_blocks = cfg->calib_max_blocks;
    return QH_OK;
}

void qh_time_protocol_of_baseline(const qh_config *cfg, qh_time_protocol *p)
{
    size_t max_windows = cfg->eval_max_windows > 0 ? (size_t)cfg->eval_max_windows : 0;
    *p = (qh_time_protocol){ .mem = { .eval_seqlen = (size_t)cfg->eval_seqlen },
                             .max_windows = max_windows,
                             .n_datasets = cfg->n_datasets, .n_tasks = cfg->n_tasks,
                             .builds_reference = 1 };
    for (size_t d = 0; d < cfg->n_datasets && d < 16; d++)
        p->eval_bytes[d] = qh_path_file_bytes(cfg->datasets[d].path);
}

const char *qh_time_format(double seconds, int lower_bound, char *buf, size_t size)
{
    const char *ge = lower_bound ? ">=" : "";
    if (seconds < 60) snprintf(buf, size, "%s%.0f s", ge, ceil(seconds));
    else if (seconds < 3600) snprintf(buf, size, "%s%.1f min", ge, seconds / 60);
    else snprintf(buf, size, "%s%.1f h", ge, seconds / 3600);
    return buf;
}
