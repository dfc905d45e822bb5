/* memory.c -- the peak-memory estimate of a sweep cell (see memory.h for what
 * is counted).  Every term follows an allocation of the code it names; keep
 * them in step when those change. */
#include "pipeline/memory.h"

#include <stdio.h>
#include <stdlib.h>

#include "model/forward.h"
#include "model/safetensors.h"
#include "qh_path.h"

#define D sizeof(double)
#define F sizeof(float)
#define HESSIAN_CHUNK 256            /* qh_hessian_acc's scratch columns (core/qh_hessian.c) */
#define PAGE 4096
/* glibc serves a calloc above this from fresh zero pages of its own mapping
 * (the largest value its dynamic mmap threshold takes on 64-bit systems):
 * such pages are resident only once written.  Below it a buffer may reuse
 * freed heap, which calloc clears, so the estimate counts all of it. */
#define MMAP_THRESHOLD_MAX ((size_t)32 << 20)

static size_t max2(size_t a, size_t b) { return a > b ? a : b; }

/* One Hessian accumulator of an n-wide input (core/qh_hessian.c: the n x n
 * sum, an n x 256 scratch) and its per-channel maxima (sequential.c).  dsyrk
 * writes the sum's upper triangle only, so a freshly mapped sum has about
 * half its pages resident: column j's first j + 1 entries, half a page more
 * per column on average. */
static size_t accumulator(size_t n)
{
    size_t sum = n * n * D;
    if (sum > MMAP_THRESHOLD_MAX) sum = n * (n + 1) / 2 * D + n * (PAGE / 2);
    return sum + n * HESSIAN_CHUNK * D + n * D;
}

/* The working set of quantizing one m x n linear (memory.h).  processed: the
 * metrics decompose the processed basis's H on its own (it differs from H by
 * more than a diagonal shift), so the spectrum cache's other slot can hold an
 * n x n H while the next is decomposed. */
static size_t linear_set(const qh_mem_protocol *p, size_t m, size_t n, size_t hidden, int processed)
{
    size_t M = m * n * D, N = n * n * D;
    size_t held = M + N                  /* sequential.c: W (Ŵ is written into it), H */
                + 3 * M + N + n * sizeof(size_t);   /* qh_result: Ŵ, W_proc, Ŵ_proc, H_proc */
    size_t ws = p->method ? qh_method_workspace_size(p->method, p->params, m, n) : 0;
    /* core/qh_metrics.c fill_slot: the copy dsyevd overwrites, its workspace
     * (1 + 6n + 2n² doubles, 3 + 5n ints) and the eigenvalues; the slot's own
     * copy of H is made after them */
    size_t eig = N + (1 + 6 * n + 2 * n * n) * D + (3 + 5 * n) * 4 + n * D;
    size_t metrics = max2(2 * M, eig);   /* qh_metrics.c: proxy loss E, EH; or the spectrum */
    size_t other_slot = processed ? N : hidden * hidden * D;
    return held + max2(ws, metrics + other_slot);
}

static int estimate(const qh_model_config *c, size_t n_params, const qh_mem_protocol *p,
                    qh_mem_estimate *out);

int qh_mem_estimate_cell(const qh_model_config *c, size_t n_params, const qh_mem_protocol *p,
                         qh_mem_estimate *out)
{
    if (!c || !p || !out) QH_ERROR(QH_EINVAL, "memory estimate: NULL argument");
    if (!p->method || p->params) return estimate(c, n_params, p, out);
    /* the rows' workspace sizes and block ops read their parameters */
    qh_mem_protocol q = *p;
    void *params = qh_method_params_new(p->method);
    if (!params) QH_ERROR(QH_ENOMEM, "memory estimate: out of memory");
    q.params = params;
    int st = estimate(c, n_params, &q, out);
    free(params);
    return st;
}

static int estimate(const qh_model_config *c, size_t n_params, const qh_mem_protocol *p,
                    qh_mem_estimate *out)
{
    *out = (qh_mem_estimate){ 0 };
    size_t hidden = (size_t)c->hidden, qd = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim, ffn = (size_t)c->ffn_dim;
    size_t ctx = (size_t)c->max_pos;
    size_t cT = p->calib_seqlen ? p->calib_seqlen : ctx, eT = p->eval_seqlen ? p->eval_seqlen : ctx;
    out->base = QH_MEM_BASE_BYTES;
    out->weights = n_params * F;
    /* the linears of a block as (out, in): q, k, v, o, gate, down, up; without a
     * gated MLP (OPT) the first six, fc1 and fc2 standing where gate and down do */
    size_t shape[7][2] = { { qd, hidden }, { kvd, hidden }, { kvd, hidden }, { hidden, qd },
                           { ffn, hidden }, { hidden, ffn }, { ffn, hidden } };
    size_t n_lin = c->features.gated_mlp ? 7 : 6, block_w = 0;
    for (size_t k = 0; k < n_lin; k++) block_w += shape[k][0] * shape[k][1] * F;
    /* spilled (model.h): one block's linears resident, the other blocks' in the
     * scratch file; norms and biases of every block still counted */
    size_t others = (size_t)(c->n_layers > 1 ? c->n_layers - 1 : 0) * block_w;
    int whole_model = p->method && qh_method_wants_model_stage(p->method, p->params);
    if (p->spill && !whole_model && others < out->weights) out->weights -= others;

    if (p->method) {
        int block = qh_method_wants_block_stage(p->method, p->params);
        size_t act = p->act_bytes ? p->act_bytes : F;
        size_t S = p->nsamples * cT * hidden * act + (act < F ? cT * hidden * F : 0);
        size_t keep = 0, worst = 0;
        /* the processed basis has an H of its own with incoherence, for a
         * block-tuned row, and on a non-gated MLP (counted for OPT's ReLU,
         * whose inputs dead on the calibration windows change single
         * diagonal entries of H_proc) */
        int processed = p->incoherence || block || !c->features.gated_mlp;
        for (size_t k = 0; k < n_lin; k++) {
            size_t m = shape[k][0], n = shape[k][1], s = linear_set(p, m, n, hidden, processed);
            keep += m * n * D + n * n * D;       /* block_objective_keep: W, H per kind */
            if (s > worst) { worst = s; out->linear_out = (int)m; out->linear_in = (int)n; }
        }
        out->states = block ? 2 * S + block_w : S;
        out->forward_calib = qh_forward_ws_bytes(c, cT) + p->nsamples * cT * sizeof(int);
        /* sequential.c: attention input (q/k/v), attention output, MLP input, MLP output */
        out->hessians = 2 * accumulator(hidden) + accumulator(qd) + accumulator(ffn);
        out->linear = worst + (block ? keep : 0);
        out->calibration = out->states + out->forward_calib + out->hessians + out->linear;
    }
    size_t vocab = (size_t)c->vocab_size, k = p->kl_topk < vocab ? p->kl_topk : vocab;
    size_t ids = p->dataset_bytes ? (p->dataset_bytes + 1) * sizeof(int) : 0;
    size_t fwd = qh_forward_ws_bytes(c, eT), logits = vocab * eT * F;
    /* eval.c: workspace, logits; float_cache.c: a window's top-k indices and log-probs */
    out->evaluation = fwd + logits + (k ? eT * (k * (sizeof(int) + F) + F) : 0) + ids;
    /* float_cache.c builds with a second model, its workspace, logits and top-k arrays */
    out->float_ref = k ? out->weights + fwd + logits + eT * (k * (sizeof(int) + F) + F) : 0;
    out->peak = out->base + out->weights + max2(out->calibration, out->evaluation);
    return QH_OK;
}

int qh_mem_stored_params(const char *dir, size_t *n_params)
{
    qh_st_set *set = NULL;
    QH_TRY(qh_st_set_open(dir, &set));
    size_t n = 0;
    for (size_t i = 0; i < set->n_files; i++)
        for (size_t j = 0; j < set->files[i]->n_tensors; j++) n += set->files[i]->tensors[j].numel;
    qh_st_set_close(set);
    *n_params = n;
    return QH_OK;
}

int qh_mem_protocol_of_cell(const qh_config *cfg, const qh_cell *cell, qh_mem_protocol *p,
                            void **params)
{
    *params = NULL;
    *p = (qh_mem_protocol){ .nsamples = (size_t)cfg->calib_nsamples,
                            .calib_seqlen = (size_t)cfg->calib_seqlen,
                            .eval_seqlen = (size_t)cfg->eval_seqlen,
                            .kl_topk = cfg->eval_kl_topk > 0 ? (size_t)cfg->eval_kl_topk : 0,
                            .act_bytes = cfg->calib_act_dtype == QH_ACT_F32 ? F : 2 };
    const qh_incoh_row *incoh = qh_incoh_find(cfg->methods[cell->method].incoherence);
    p->incoherence = incoh && incoh->kind != QH_INCOH_NONE;
    for (size_t d = 0; d < cfg->n_datasets; d++)
        p->dataset_bytes = max2(p->dataset_bytes, qh_path_file_bytes(cfg->datasets[d].path));
    const qh_method_type *t = NULL;
    QH_TRY(qh_config_method_params(cfg, cell->method, &t, params));
    p->method = t;
    p->params = *params;
    return QH_OK;
}

const char *qh_mem_format(size_t bytes, char *buf, size_t size)
{
    double mib = (double)bytes / (1 << 20);
    if (mib < 1024) snprintf(buf, size, "%.0f MiB", mib);
    else snprintf(buf, size, "%.2f GiB", mib / 1024);
    return buf;
}
