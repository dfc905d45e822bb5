/* cmd_info.c -- `qh info --model DIR`: loads a model folder and prints its
 * configuration, parameter counts, on-disk dtypes and the linear layers of a
 * decoder block.  Loading fully (not just reading headers) makes the command
 * a check that the folder is usable by every other command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "pipeline/config.h"
#include "pipeline/memory.h"
#include "pipeline/timing.h"
#include "qh_method.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: qh info --model DIR [--method NAME] [--nsamples N] [--seqlen N] [--scratch DIR]\n\n"
               "Loads the Hugging Face model folder DIR (config.json + model.safetensors or\n"
               "model.safetensors.index.json with shards) and prints its configuration,\n"
               "parameter counts, dtypes on disk, the linear layers of each block and the\n"
               "estimated peak memory and wall time of one sweep cell on it (docs/cluster.md;\n"
               "the time from a throughput probe of about 0.2 s at the model's shapes, with\n"
               "OPENBLAS_NUM_THREADS threads, or all cores when unset).\n\n"
               "options:\n"
               "  --model DIR     model folder (required)\n"
               "  --method NAME   the cell's method, default parameters (default gptq)\n"
               "  --nsamples N    calibration windows (default 128, as a configuration's)\n"
               "  --seqlen N      calibration and evaluation length (default: the context)\n"
               "  --scratch DIR   load the model spilled to a scratch file in DIR (as qh run\n"
               "                  --scratch: for models larger than memory)\n"
               "  --help          this text\n");
}

/* The decoder's features in words. */
static void print_features(const qh_model *m)
{
    const qh_model_config *k = &m->cfg;
    const qh_model_features *f = &k->features;
    printf("norm         %s%s, eps %g, %s\n", f->norm == QH_NORM_RMS ? "RMSNorm" : "LayerNorm",
           f->norm_plus_one ? " scaling by 1 + w" : "", (double)k->norm_eps,
           f->pre_ln ? "pre-LN" : "post-LN");
    if (f->qk_norm) printf("qk_norm      RMSNorm per head on q and k\n");
    if (f->sandwich_norm) printf("post_norms   after attention and MLP, before each residual add\n");
    if (f->embed_scale) printf("embeddings   scaled by sqrt(hidden)\n");
    printf("final_norm   %s\n", m->final_norm.w ? "yes" : "no");
    static const char *const acts[] = { "?", "ReLU", "SiLU", "GELU (tanh)", "GELU (erf)" };
    printf("mlp          %s%s\n", f->gated_mlp ? "gated " : "",
           f->act >= QH_ACT_RELU && f->act <= QH_ACT_GELU ? acts[f->act] : "?");
    if (f->pos == QH_POS_ROTARY) {
        const qh_rope_scaling *r = &k->rope;
        printf("positions    RoPE on %d of %d head dims\n", f->rotary_dims, k->head_dim);
        printf("rope_theta   %g\n", k->rope_theta);
        if (r->type == QH_ROPE_LINEAR) printf("rope_scaling linear, factor %g\n", r->factor);
        if (r->type == QH_ROPE_LLAMA3)
            printf("rope_scaling llama3, factor %g, low/high freq factors %g/%g, original "
                   "context %d\n", r->factor, r->low_freq_factor, r->high_freq_factor,
                   r->original_max_pos);
    } else {
        printf("positions    learned, offset %d\n", f->pos_offset);
    }
    printf("residual     %s\n", f->parallel_residual ? "parallel" : "sequential");
    if (k->sliding_window) {
        int n = 0;
        for (int l = 0; l < k->n_layers; l++) n += qh_model_layer_window(k, l) > 0;
        printf("attention    sliding window of %d on %d of %d layers\n", k->sliding_window, n,
               k->n_layers);
    } else {
        printf("attention    full causal\n");
    }
    if (k->attn_scale > 0) printf("score_scale  %g\n", k->attn_scale);
    if (k->attn_softcap > 0 || k->final_softcap > 0)
        printf("softcapping  attention %g, final logits %g (0: none)\n", k->attn_softcap,
               k->final_softcap);
    const qh_layout *ly = k->family->layout;
    if (ly->fuse == QH_FUSE_ROWS && ly->gate_up_fused)
        printf("fused        %s and %s split on load into q/k/v and gate/up (rows)\n",
               ly->qkv_fused, ly->gate_up_fused);
    else if (ly->fuse == QH_FUSE_ROWS)
        printf("fused        %s split on load into q/k/v\n", ly->qkv_fused);
    else if (ly->fuse == QH_FUSE_HEADS)
        printf("fused        %s split on load into q/k/v (interleaved per head)\n", ly->qkv_fused);
    if (ly->transposed) printf("storage      Conv1D weights (in, out), transposed on load\n");
}

static void print_config(const qh_model *m)
{
    const qh_model_config *k = &m->cfg;
    printf("model        %s\n", m->dir);
    printf("model_type   %s (family %s, %s layout)\n", k->model_type, k->family->name,
           k->family->layout->name);
    printf("vocab_size   %d\n", k->vocab_size);
    printf("hidden       %d\n", k->hidden);
    printf("layers       %d\n", k->n_layers);
    printf("heads        %d (kv heads %d, head_dim %d)\n", k->n_heads, k->n_kv_heads, k->head_dim);
    printf("ffn_dim      %d\n", k->ffn_dim);
    printf("max_pos      %d\n", k->max_pos);
    printf("embed_dim    %d%s\n", k->embed_dim, m->project_in.W ? " (project_in/project_out)" : "");
    print_features(m);
    printf("lm_head      %s\n", k->features.tied_head ? "tied to embed_tokens" : "separate");
    printf("tokens       bos %d, eos %d, pad %d\n", k->bos_id, k->eos_id, k->pad_id);
}

static void print_counts(const qh_model *m)
{
    size_t n = qh_model_n_params(m), nl = qh_model_n_linear_params(m);
    printf("parameters   %zu (%.2f M; tied head counted once)\n", n, (double)n / 1e6);
    printf("linear W     %zu (%.2f M in decoder-block linear weights, %.1f %%)\n", nl,
           (double)nl / 1e6, n ? 100.0 * (double)nl / (double)n : 0.0);
    size_t mapped = qh_model_n_mapped_params(m);
    printf("in memory    %zu mapped in place from F32 files (copy-on-write), %zu converted to "
           "float32%s\n", mapped, n - mapped, qh_model_spilled(m) ? " in a scratch file (spilled; each decoder block when first used)" : "");
}

/* Dtypes as stored, summed over every tensor of every file. */
static int print_disk(const char *dir)
{
    qh_st_set *set = NULL;
    int st = qh_st_set_open(dir, &set);
    if (st != QH_OK) return st;
    size_t count[QH_ST_N_DTYPES] = { 0 }, elems[QH_ST_N_DTYPES] = { 0 }, n_tensors = 0, bytes = 0;
    for (size_t i = 0; i < set->n_files; i++)
        for (size_t j = 0; j < set->files[i]->n_tensors; j++) {
            const qh_st_tensor *t = &set->files[i]->tensors[j];
            count[t->dtype]++;
            elems[t->dtype] += t->numel;
            bytes += t->end - t->begin;
            n_tensors++;
        }
    printf("on disk      %zu file(s)%s, %zu tensors, %.1f MB of data\n", set->n_files,
           set->index_path[0] ? " (sharded, index)" : "", n_tensors, (double)bytes / 1e6);
    for (int d = 0; d < QH_ST_N_DTYPES; d++)
        if (count[d])
            printf("  dtype %-5s %zu tensors, %zu values\n", qh_st_dtype_name((qh_st_dtype)d),
                   count[d], elems[d]);
    qh_st_set_close(set);
    return QH_OK;
}

/* In model order, each with its stable number (the "kind" of results tables). */
static void print_block(const qh_model *m)
{
    printf("block linears (block 0 shown; all %d blocks have these shapes, W is out x in;\n"
           "#: the linear's number in results):\n", m->cfg.n_layers);
    const qh_block *b = &m->blocks[0];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (qh_model_linear_number(m, k) < 0) continue;
        printf("  %-10s #%d %-48s %6d x %-6d %s\n", qh_model_linear_short_name(m, k),
               qh_model_linear_number(m, k), b->lin[k].name, b->lin[k].out, b->lin[k].in,
               b->lin[k].b ? "bias" : "no bias");
    }
}

/* The estimated peak RSS of one cell (pipeline/memory.h) under the default
 * protocol of a configuration, or the flags'. */
static int print_memory(const qh_model *m, const char *method, long nsamples, long seqlen)
{
    const qh_method_type *t = qh_method_find(method);
    if (!t) {
        fprintf(stderr, "qh info: unknown method '%s' (qh methods lists them)\n", method);
        return 2;
    }
    void *params = qh_method_params_new(t);
    if (!params) { fprintf(stderr, "qh info: out of memory\n"); return 1; }
    qh_mem_protocol p = { .nsamples = (size_t)nsamples, .calib_seqlen = (size_t)seqlen,
                          .eval_seqlen = (size_t)seqlen, .kl_topk = QH_EVAL_KL_TOPK_DEFAULT,
                          .method = t, .params = params };
    qh_mem_estimate e, spilled;
    int st = qh_mem_estimate_cell(&m->cfg, qh_model_n_params(m), &p, &e);
    p.spill = 1;
    if (st == QH_OK) st = qh_mem_estimate_cell(&m->cfg, qh_model_n_params(m), &p, &spilled);
    free(params);
    if (st != QH_OK) {
        fprintf(stderr, "qh info: %s (%s)\n", qh_last_error(), qh_status_name(st));
        return 1;
    }
    char a[32], b[32], c[32], d[32], g[32], h[32], k[32];
    long T = seqlen ? seqlen : m->cfg.max_pos;
    printf("memory       estimated peak RSS of a %s cell, %ld windows of %ld tokens: %s\n", method,
           nsamples, T, qh_mem_format(e.peak, a, sizeof a));
    printf("               weights %s (float32), calibration %s (hidden states %s, Hessians %s,\n"
           "               linear %d x %d %s), evaluation %s, base %s\n",
           qh_mem_format(e.weights, b, sizeof b), qh_mem_format(e.calibration, c, sizeof c),
           qh_mem_format(e.states, d, sizeof d), qh_mem_format(e.hessians, g, sizeof g),
           e.linear_out, e.linear_in, qh_mem_format(e.linear, h, sizeof h),
           qh_mem_format(e.evaluation, k, sizeof k), qh_mem_format(e.base, a, sizeof a));
    printf("               + %s while the float reference is built (a cell before its baseline)\n",
           qh_mem_format(e.float_ref, a, sizeof a));
    printf("               spilled (qh run --scratch DIR): %s, weights %s resident\n",
           qh_mem_format(spilled.peak, a, sizeof a), qh_mem_format(spilled.weights, b, sizeof b));
    return 0;
}

/* The estimated wall time of one cell (pipeline/timing.h) under the same
 * protocol, with its phases; evaluation per window, since info knows no
 * dataset, and no tokenizing, since it knows no text. */
static int print_time(const qh_model *m, const char *method, long nsamples, long seqlen)
{
    const qh_method_type *t = qh_method_find(method);
    void *params = t ? qh_method_params_new(t) : NULL;
    if (!params) { fprintf(stderr, "qh info: out of memory\n"); return 1; }
    long T = seqlen ? seqlen : m->cfg.max_pos;
    qh_time_protocol p = { .mem = { .nsamples = (size_t)nsamples, .calib_seqlen = (size_t)T,
                                    .eval_seqlen = (size_t)T, .method = t, .params = params },
                           .incoherence = "none", .bits = 4 };
    qh_time_probe probe;
    qh_time_estimate e, one;
    int st = qh_time_probe_measure((size_t)m->cfg.hidden, (size_t)T, &probe);
    if (st == QH_OK) st = qh_time_estimate_cell(&m->cfg, qh_model_n_params(m), &p, &probe, &e);
    /* one evaluation window: the same protocol with one dataset of one window */
    qh_time_protocol w = { .mem = p.mem, .n_datasets = 1, .max_windows = 1,
                           .eval_bytes = { (size_t)(T * QH_TIME_BYTES_PER_TOKEN) + 1 } };
    w.mem.method = NULL;
    if (st == QH_OK) st = qh_time_estimate_cell(&m->cfg, 0, &w, &probe, &one);
    free(params);
    if (st != QH_OK) {
        fprintf(stderr, "qh info: %s (%s)\n", qh_last_error(), qh_status_name(st));
        return 1;
    }
    const qh_time_flops *f = &e.flops;
    char a[32];
    printf("time         estimated wall time of its calibration and quantization: %s, + %.2f s per "
           "evaluation window\n", qh_time_format(e.seconds, e.lower_bound, a, sizeof a), one.eval_s);
    printf("               GFLOP: forward %.3g, Hessians %.3g, method %.3g, metrics %.3g, block stage "
           "%.3g, model stage %.3g;\n               probe %.1f GFLOP/s float32, %.1f float64, %d "
           "BLAS thread(s)%s%s\n", f->forward / 1e9, f->hessian / 1e9, f->method / 1e9,
           f->metrics / 1e9, f->block / 1e9, f->model / 1e9, probe.sgemm_gflops, probe.dgemm_gflops,
           probe.threads, e.lower_bound ? "; not counted: " : "", e.unmodelled);
    return 0;
}

/* A positive integer option value, or -1. */
static long positive(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return end != s && *end == '\0' && v > 0 && v <= (1L << 24) ? v : -1;
}

int qh_cmd_info(int argc, char **argv)
{
    const char *dir = NULL, *method = "gptq", *scratch = NULL;
    long nsamples = 128, seqlen = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--model") && i + 1 < argc) { dir = argv[++i]; continue; }
        if (!strcmp(argv[i], "--method") && i + 1 < argc) { method = argv[++i]; continue; }
        if (!strcmp(argv[i], "--scratch") && i + 1 < argc) { scratch = argv[++i]; continue; }
        if ((!strcmp(argv[i], "--nsamples") || !strcmp(argv[i], "--seqlen")) && i + 1 < argc) {
            long v = positive(argv[i + 1]);
            if (v < 0) {
                fprintf(stderr, "qh info: %s takes a positive integer, got '%s'\n", argv[i],
                        argv[i + 1]);
                return 2;
            }
            if (!strcmp(argv[i], "--nsamples")) nsamples = v; else seqlen = v;
            i++;
            continue;
        }
        fprintf(stderr, "qh info: unknown or incomplete option '%s'\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (!dir) { fprintf(stderr, "qh info: --model DIR is required\n"); usage(stderr); return 2; }
    qh_model *m = NULL;
    qh_model_load_opts opts = { scratch };
    int st = qh_model_load_with(dir, &opts, &m);
    if (st != QH_OK) {
        fprintf(stderr, "qh info: %s (%s)\n", qh_last_error(), qh_status_name(st));
        return 1;
    }
    print_config(m);
    print_counts(m);
    st = print_disk(dir);
    print_block(m);
    int rc = st == QH_OK ? print_memory(m, method, nsamples, seqlen) : 0;
    if (st == QH_OK && rc == 0) rc = print_time(m, method, nsamples, seqlen);
    qh_model_free(m);
    if (st != QH_OK) {
        fprintf(stderr, "qh info: %s (%s)\n", qh_last_error(), qh_status_name(st));
        return 1;
    }
    return rc;
}
