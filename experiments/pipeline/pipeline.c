/* pipeline.c -- one sweep cell: calibrate, quantize block by block, evaluate,
 * write the results file (see pipeline.h). */
#include "pipeline/pipeline.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/block_stage.h"
#include "pipeline/calib.h"
#include "pipeline/cell_file.h"
#include "pipeline/eval.h"
#include "pipeline/float_cache.h"
#include "pipeline/layer_eval.h"
#include "pipeline/model_stage.h"
#include "pipeline/protocol.h"
#include "pipeline/tasks.h"
#include "pipeline/transform.h"
#include "pipeline/wa_config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "qh_blas.h"
#include "qh_method.h"
#include "qh_path.h"
#include "model/save_model.h"
#include "pipeline/sequential.h"
#include "tokenizer/tokenizer.h"
#include "qh_clock.h"

/* The kind of an incoherence name from the table (none for an unknown name,
 * which qh_config_method_params refuses before any cell runs). */
static qh_incoh_kind incoh_kind(const char *name)
{
    const qh_incoh_row *row = qh_incoh_find(name);
    return row ? row->kind : QH_INCOH_NONE;
}

/* The block stage (block_stage.h) and the whole-model stage after the block
 * loop (model_stage.h): qh_method_wants_block_stage / _model_stage.  Either
 * stage: the row's states are kept and tuned in the model's basis. */
static int wants_block_objective(const qh_method_type *t, const void *params)
{
    return qh_method_wants_block_stage(t, params) || qh_method_wants_model_stage(t, params);
}

/* Every bit width of each method entry (its own, else the sweep's) and of
 * every rule that applies to it against the method's range: a cell outside
 * it would fail at run time.  The range applies per linear. */
static int validate_bits(const qh_config *cfg)
{
    for (size_t i = 0; i < cfg->n_methods; i++) {
        const qh_method_type *t = qh_method_find(cfg->methods[i].method);
        const int *bits;
        size_t nb;
        int lo, hi;
        if (!t) continue;                /* qh_config_method_params named it already */
        qh_method_bits_range(t, &lo, &hi);
        qh_config_method_bits(cfg, i, &bits, &nb);
        for (size_t b = 0; b < nb; b++)
            if (bits[b] < lo || bits[b] > hi)
            {
                char where[64];
                if (cfg->methods[i].bits) snprintf(where, sizeof where, "methods[%zu].bits[%zu]", i, b);
                else snprintf(where, sizeof where, "bits[%zu]", b);
                QH_ERROR(QH_ECONFIG, "%s: methods[%zu] (%s, label \"%s\") takes bits %d..%d, "
                         "got %d; give the entry its own \"bits\"", where, i, t->name,
                         cfg->methods[i].label, lo, hi, bits[b]);
            }
        for (size_t k = 0; k < qh_config_rule_count(cfg, i); k++) {
            const qh_config_rule *r = qh_config_rule_at(cfg, i, k);
            if (r->bits && (r->bits < lo || r->bits > hi))
                QH_ERROR(QH_ECONFIG, "%s.bits: %d bits for \"%s\" with methods[%zu] (%s, label "
                         "\"%s\"), which takes bits %d..%d", r->where, r->bits, r->match, i,
                         t->name, cfg->methods[i].label, lo, hi);
        }
    }
    return QH_OK;
}

/* The parameters of methods[index] for one linear: the entry's, then the
 * rule parameters of its setting.  *params is new (free(); also on failure). */
static int linear_params(const qh_config *cfg, size_t index, const qh_linear_setting *ls,
                         const qh_method_type **type, void **params)
{
    QH_TRY(qh_config_method_params(cfg, index, type, params));
    for (size_t k = 0; k < ls->n_params; k++) {
        int st = qh_method_params_set(*type, *params, ls->params[k]->key, ls->params[k]->value);
        if (st != QH_OK) {
            qh_error_prefix("layers rule params.%s (methods[%zu])", ls->params[k]->key, index);
            return st;
        }
    }
    return QH_OK;
}

/* Rules against the method row: parameters it knows, and no parameters for a
 * row whose block stage is wanted (the stage tunes every linear of a block
 * with the entry's parameters; a skipped linear stays float and untuned). */
static int validate_rules(const qh_config *cfg, size_t i, const qh_method_type *t, int block)
{
    for (size_t k = 0; k < qh_config_rule_count(cfg, i); k++) {
        const qh_config_rule *r = qh_config_rule_at(cfg, i, k);
        if (block && r->n_params)
            QH_ERROR(QH_ECONFIG, "%s: \"%s\" with methods[%zu] (%s with %s): a block-tuned method "
                     "takes per-layer \"bits\" and \"skip\" only, not \"params\"", r->where, r->match,
                     i, t->name, t->block->setting);
        if (!r->n_params) continue;
        qh_linear_setting ls = { .bits = 0 };
        for (size_t p = 0; p < r->n_params; p++) ls.params[ls.n_params++] = &r->params[p];
        void *params = NULL;
        const qh_method_type *tt;
        int st = linear_params(cfg, i, &ls, &tt, &params);
        free(params);
        if (st != QH_OK) { qh_error_prefix("%s", r->where); return st; }
    }
    return QH_OK;
}

/* The value of an integer parameter `key` of methods[i] as its cells see it;
 * 0 when the row has no such parameter. */
static long int_param(const qh_config *cfg, size_t i, const char *key)
{
    const qh_method_type *t;
    void *params = NULL;
    long v = 0;
    if (qh_config_method_params(cfg, i, &t, &params) == QH_OK) {
        const qh_param_desc *d = qh_method_param_find(t, key);
        char buf[64];
        if (d && d->type == QH_PARAM_INT) {
            qh_param_format(d, params, buf, sizeof buf);
            v = strtol(buf, NULL, 10);
        }
    }
    free(params);
    return v;
}

/* A method's `group` must divide the input width of every decoder linear:
 * the attention inputs (hidden), the output projection (heads x head_dim)
 * and the second MLP linear (ffn). */
static int validate_groups(const qh_config *cfg, size_t m, const qh_model_config *mc)
{
    const struct { const char *what; int width; } in[] = {
        { "hidden_size (q/k/v and first MLP linears)", mc->hidden },
        { "heads x head_dim (attention output)", mc->n_heads * mc->head_dim },
        { "ffn width (second MLP linear)", mc->ffn_dim },
    };
    for (size_t i = 0; i < cfg->n_methods; i++) {
        long g = int_param(cfg, i, "group");
        for (size_t k = 0; g > 0 && k < sizeof in / sizeof in[0]; k++)
            if (in[k].width % g != 0)
                QH_ERROR(QH_ECONFIG, "methods[%zu].params.group: %ld does not divide the input "
                         "width %d (%s) of models[%zu] (%s, %s)", i, g, in[k].width, in[k].what, m,
                         cfg->models[m].label, cfg->models[m].path);
    }
    return QH_OK;
}

/* Sequence lengths and groups against the model's config.json.  A model
 * whose config cannot be read is left to its cells, which record why. */
static int validate_model(const qh_config *cfg, size_t m)
{
    const qh_config_entry *me = &cfg->models[m];
    qh_model_config mc;
    if (qh_model_config_load(me->path, &mc) != QH_OK) return QH_OK;
    const struct { const char *key; int v; } len[] = {
        { "eval.seqlen", cfg->eval_seqlen }, { "calibration.seqlen", cfg->calib_seqlen },
    };
    for (size_t k = 0; k < 2; k++)
        if (len[k].v > mc.max_pos)
            QH_ERROR(QH_ECONFIG, "%s: %d exceeds the context of models[%zu] (%s, %s): "
                     "max_position_embeddings %d", len[k].key, len[k].v, m, me->label, me->path,
                     mc.max_pos);
    QH_TRY(validate_groups(cfg, m, &mc));
    return qh_wa_validate(cfg, m, &mc);
}

int qh_pipeline_validate(const qh_config *cfg)
{
    for (size_t i = 0; i < cfg->n_methods; i++) {
        const qh_method_type *t;
        void *params = NULL;
        int st = qh_config_method_params(cfg, i, &t, &params);
        /* the block stage tunes Ŵ in the model's basis */
        if (st == QH_OK && wants_block_objective(t, params) &&
            incoh_kind(cfg->methods[i].incoherence) != QH_INCOH_NONE)
            QH_SET_ERROR(st, QH_ECONFIG, "methods[%zu]: %s with %s takes incoherence \"none\" "
                         "(got \"%s\"): its block stage tunes in the model's basis",
                         i, t->name, t->block->setting, cfg->methods[i].incoherence);
        if (st == QH_OK) st = validate_rules(cfg, i, t, wants_block_objective(t, params));
        if (st == QH_OK && qh_method_wants_block_stage(t, params) &&
            cfg->calib_act_dtype != QH_ACT_F32)
            QH_SET_ERROR(st, QH_EUNIMPL, "methods[%zu]: %s with %s needs calibration.act_dtype "
                         "\"f32\" (got \"%s\"): the block stage reads every window's hidden states "
                         "as float32", i, t->name, t->block->setting,
                         qh_act_dtype_name(cfg->calib_act_dtype));
        if (st == QH_OK && wants_block_objective(t, params) && cfg->methods[i].tf.rotate)
            QH_SET_ERROR(st, QH_EUNIMPL, "methods[%zu]: %s with %s takes \"rotate\": \"none\": "
                         "the block backward pass does not differentiate the online Hadamard "
                         "before down_proj/fc2", i, t->name, t->block->setting);
        if (st == QH_OK && qh_method_wants_model_stage(t, params) && cfg->calib_max_blocks > 0)
            QH_SET_ERROR(st, QH_EUNIMPL, "methods[%zu]: %s with %s tunes every block of the model "
                         "jointly; calibration.max_blocks (%d) leaves blocks unvisited: drop one of "
                         "them", i, t->name, t->block->setting, cfg->calib_max_blocks);
        free(params);
        if (st != QH_OK) return st;
    }
    /* each row's own range (qh_method_bits_range: 1..8 unless the row says
     * otherwise; mpo and lowrank take 16 for FP16 cores) */
    QH_TRY(validate_bits(cfg));
    for (size_t m = 0; m < cfg->n_models; m++) QH_TRY(validate_model(cfg, m));
    return QH_OK;
}

int qh_pipeline_cell_path(const qh_pipeline *p, const qh_cell *cell, char *buf, size_t len)
{
    return qh_path_format(buf, len, "results file", "%s/%s.h5", p->out_dir, cell->id);
}

int qh_pipeline_baseline_path(const qh_pipeline *p, size_t model, char *buf, size_t len)
{
    return qh_path_format(buf, len, "results file", "%s/%s.baseline.h5", p->out_dir,
                          p->cfg->models[model].label);
}

/* The model of dir, spilled to the pipeline's scratch folder when it has one. */
static int load_model(const qh_pipeline *p, const char *dir, qh_model **m)
{
    qh_model_load_opts opts = { p->scratch_dir };
    return qh_model_load_with(dir, &opts, m);
}

/* ---- the quantizing visitor ------------------------------------------------ */

/* What the block objective keeps of each linear of the current block: the
 * row's state (its quantize fills it, the block stage tunes it), and W, H
 * and the record index to measure the tuned Ŵ. */
typedef struct {
    const qh_block_ops *ops;         /* NULL: no block stage */
    const void *params;
    int block_stage, model_stage;    /* which stages the params ask for */
    void *states[QH_LIN_MAX];        /* from ops->state_new: the current block's */
    int quantized[QH_LIN_MAX];       /* this block's linear went through quantize (not skipped) */
    void **all;                      /* model stage: n_layers x QH_LIN_MAX states (every
                                        block's, kept to the end; NULL: a skipped linear);
                                        states unused then */
    size_t n_all;
    qh_matd *W[QH_LIN_MAX], *H[QH_LIN_MAX];
    size_t rec[QH_LIN_MAX];
} block_objective;

/* The states of block `layer`'s linears, by kind. */
static void **layer_states(block_objective *b, int layer)
{
    return b->all ? b->all + (size_t)layer * QH_LIN_MAX : b->states;
}

static void block_objective_free(block_objective *b)
{
    for (size_t i = 0; i < b->n_all; i++) b->ops->state_free(b->all[i]);
    free(b->all);
    b->all = NULL;
    b->n_all = 0;
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (b->ops) b->ops->state_free(b->states[k]);
        b->states[k] = NULL;
        qh_matd_free(b->W[k]);
        qh_matd_free(b->H[k]);
        b->W[k] = b->H[k] = NULL;
    }
}

/* Keeps copies of W and H of linear `kind` for measuring its tuned Ŵ. */
static int block_objective_keep(block_objective *b, int kind, const qh_matd *W, const qh_matd *H,
                                size_t rec)
{
    qh_matd_free(b->W[kind]);
    qh_matd_free(b->H[kind]);
    b->W[kind] = qh_matd_copy(W);
    b->H[kind] = qh_matd_copy(H);
    b->rec[kind] = rec;
    if (!b->W[kind] || !b->H[kind]) QH_ERROR(QH_ENOMEM, "block objective: out of memory");
    return QH_OK;
}

static int block_objective_setup(block_objective *b, const qh_method_type *t, const void *params,
                                 int n_layers)
{
    memset(b, 0, sizeof *b);
    if (!wants_block_objective(t, params)) return QH_OK;
    b->ops = t->block;
    b->params = params;
    b->block_stage = qh_method_wants_block_stage(t, params);
    b->model_stage = qh_method_wants_model_stage(t, params);
    if (b->model_stage) {
        b->all = calloc((size_t)n_layers * QH_LIN_MAX, sizeof *b->all);
        if (!b->all) QH_ERROR(QH_ENOMEM, "%s model stage: out of memory", t->name);
        for (; b->n_all < (size_t)n_layers * QH_LIN_MAX; b->n_all++)
            if (!(b->all[b->n_all] = b->ops->state_new()))
                QH_ERROR(QH_ENOMEM, "%s model stage: out of memory", t->name);
        return QH_OK;
    }
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (!(b->states[k] = b->ops->state_new()))
            QH_ERROR(QH_ENOMEM, "%s block stage: out of memory", t->name);
    return QH_OK;
}

typedef struct {
    const qh_pipeline *p;
    const qh_cell *cell;
    const qh_method_type *type;
    const void *params;
    qh_incoh_kind incoh;
    int rescale;
    int permute;                     /* kron: random permutations (config "permute") */
    qh_layer_record *recs;
    size_t n_recs, cap;
    double t0;
    qh_spectrum_cache spectra;       /* q, k, v share H; Ĥ = H + damping·I without incoherence */
    block_objective block;           /* the row's block stage (ops NULL: none) */
    qh_model_stage_stats heal_kl;    /* the whole-model stage, when block.model_stage */
    int heal_kl_done;                /* 1: heal_kl holds a completed stage */
    int ruled;                       /* per-layer rules apply to the cell's method entry */
    qh_st_set *st;                   /* the checkpoint, for the stored width of kept linears */
} quant_ctx;

/* The width of linear `name` in the checkpoint (16 for F16/BF16, 32 for
 * F32); 32 when it cannot be told. */
static int stored_bits(const qh_st_set *set, const char *name)
{
    char tensor[160];
    const qh_st_file *f = NULL;
    const qh_st_tensor *t = NULL;
    if (set && qh_path_format(tensor, sizeof tensor, "tensor name", "%s.weight", name) == QH_OK)
        t = qh_st_set_find(set, tensor, &f);
    return t ? (int)qh_st_dtype_size(t->dtype) * 8 : 32;
}

/* "k=v,k=v" of a setting's rule parameters. */
static void format_overrides(const qh_linear_setting *ls, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < ls->n_params && len < cap; k++) {
        int w = snprintf(buf + len, cap - len, "%s%s=%s", k ? "," : "", ls->params[k]->key,
                         ls->params[k]->value);
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* Every rule of the cell's method entry must match some decoder linear of
 * the model: a pattern that matches nothing is most often a typo. */
static int check_rules_match(const qh_config *cfg, size_t method, const qh_model *m)
{
    for (size_t k = 0; k < qh_config_rule_count(cfg, method); k++) {
        const qh_config_rule *r = qh_config_rule_at(cfg, method, k);
        int hit = 0;
        for (int l = 0; l < m->cfg.n_layers && !hit; l++)
            for (int kind = 0; kind < QH_LIN_MAX && !hit; kind++)
                hit = m->blocks[l].lin[kind].W && qh_config_rule_matches(r, m->blocks[l].lin[kind].name) == 1;
        if (!hit)
            QH_ERROR(QH_ECONFIG, "%s.match: \"%s\" matches no decoder linear of %s (names as `qh info` "
                     "lists them, e.g. \"%s\")", r->where, r->match, m->dir,
                     m->cfg.n_layers ? m->blocks[0].lin[qh_model_linear_at(m, 0)].name : "");
    }
    return QH_OK;
}

static int quantize_linear(const qh_model *m, int layer, int kind, qh_matd *W, const qh_matd *H,
                           const double *x_absmax, int *replace, void *user)
{
    quant_ctx *q = user;
    const char *name = m->blocks[layer].lin[kind].name;
    if (q->n_recs == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        qh_layer_record *r = realloc(q->recs, cap * sizeof *r);
        if (!r) QH_ERROR(QH_ENOMEM, "%s: out of memory", name);
        q->recs = r;
        q->cap = cap;
    }
    /* Each linear draws from its own streams, the same as under `qh layer`. */
    uint32_t key = qh_model_linear_key(m, layer, kind);
    qh_incoh_params ip = { q->incoh, q->rescale && q->incoh != QH_INCOH_NONE, q->cell->seed, key,
                           q->permute && q->incoh == QH_INCOH_KRON };
    qh_linear_setting ls = { .bits = q->cell->bits };
    if (q->ruled) qh_config_linear_setting(q->p->cfg, q->cell->method, name, q->cell->bits, &ls);
    q->block.quantized[kind] = !ls.skip;
    if (ls.skip && q->block.all) {    /* the model stage keeps a skipped linear as it is */
        void **slot = &layer_states(&q->block, layer)[kind];
        q->block.ops->state_free(*slot);
        *slot = NULL;
    }
    if (ls.skip) {                    /* kept in float: recorded at its stored width */
        qh_layer_record *rec = &q->recs[q->n_recs++];
        return qh_layer_record_skipped(name, layer, qh_model_linear_number(m, kind), W, H,
                                       stored_bits(q->st, name), &q->spectra, rec);
    }
    const void *params = q->params;
    void *own = NULL;                 /* the entry's parameters with the rules' on top */
    if (ls.n_params) {
        const qh_method_type *t;
        int st = linear_params(q->p->cfg, q->cell->method, &ls, &t, &own);
        if (st != QH_OK) { free(own); qh_error_prefix("%s", name); return st; }
        params = own;
    }
    qh_problem prob = { W, H, ls.bits, q->cell->seed, key, name,
                        q->block.ops ? layer_states(&q->block, layer)[kind] : NULL, x_absmax };
    int st = q->block.ops ? block_objective_keep(&q->block, kind, W, H, q->n_recs) : QH_OK;
    if (st != QH_OK) { free(own); return st; }
    qh_layer_record *rec = &q->recs[q->n_recs++];
    /* Ŵ lands in W itself: qh_layer_run writes its output only after the
     * last read of the problem's W, and an m x n buffer less is a linear's
     * working set less (pipeline/memory.c). */
    st = qh_layer_run(q->type, params, &ip, &prob, layer, qh_model_linear_number(m, kind),
                      &q->spectra, rec, W);
    if (q->ruled) {
        rec->ruled = 1;
        rec->bits_set = ls.bits;
        format_overrides(&ls, rec->overrides, sizeof rec->overrides);
    }
    if (st == QH_OK) *replace = 1;
    free(own);
    return st;                        /* a failed layer fails the cell: its model is unusable */
}

/* The tuned Ŵ of every linear of the block measured into its record. */
static int measure_tuned(quant_ctx *q, const qh_model *m, int layer, const qh_block_stage_stats *bs)
{
    block_objective *b = &q->block;
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!m->blocks[layer].lin[k].W || !b->quantized[k]) continue;
        qh_layer_record *rec = &q->recs[b->rec[k]];
        qh_matd *What = qh_matd_alloc(b->W[k]->rows, b->W[k]->cols);
        if (!What) QH_ERROR(QH_ENOMEM, "%s: out of memory", rec->name);
        b->ops->reconstruct(b->params, layer_states(b, layer)[k], What);
        qh_processed_inputs proc = { b->W[k], What, b->H[k] };
        int st = qh_layer_metrics_compute_cached(b->W[k], What, b->H[k], &proc, NULL, &q->spectra,
                                                 &rec->metrics);
        qh_matd_free(What);
        QH_TRY(st);
        /* The grid step and the bounds were measured on quantize's grid; the
         * tuned Ŵ (SignRound's tuned ranges) need not lie on it, and the
         * stage knows no row's grid, so they are not reported for it. */
        rec->delta_rms = NAN;
        rec->bounds.count = 0;
        rec->block_tuned = 1;
        rec->block_loss_init = bs->loss_init;
        rec->block_loss_final = bs->loss_final;
        rec->block_mse_init = bs->mse_fp_init;
        rec->block_mse_final = bs->mse_fp_final;
    }
    return QH_OK;
}

/* A progress line per block on a terminal, redrawn at most twice a second:
 * step, minibatch loss, best loss, ETA.  Log files (sweep workers) get the
 * per-block summary alone. */
typedef struct { FILE *out; double last; } step_progress;

/* The line itself: "<stage>: step s/n, <metric> v, best b, ETA" (both stages). */
static void draw_step_progress(step_progress *sp, const char *stage, const char *metric, long step,
                               long steps, double value, double best, double seconds)
{
    if (step < steps && seconds - sp->last < 0.5) return;
    sp->last = seconds;
    double eta = step > 0 ? seconds * (double)(steps - step) / (double)step : 0.0;
    fprintf(sp->out, "\r  %s: step %ld/%ld, %s %.5g, best %.5g, ETA %.0f s   ", stage, step, steps,
            metric, value, best, eta);
    fflush(sp->out);
}

static void block_step_progress(int layer, long step, long steps, double loss, double best,
                                double seconds, void *user)
{
    char stage[32];
    snprintf(stage, sizeof stage, "block %d", layer);
    draw_step_progress(user, stage, "loss", step, steps, loss, best, seconds);
}

/* The sequential traversal's block stage: the row's block ops against the block output. */
static int tune_block(qh_model *m, int layer, const float *x, const float *x_fp, size_t nsamples,
                      size_t seqlen, float *const W_fp[QH_LIN_MAX], void *user)
{
    quant_ctx *q = user;
    qh_block_stage_stats bs;
    step_progress sp = { q->p->log, -1.0 };
    int tty = q->p->log && isatty(fileno(q->p->log));
    qh_block_stage_opts opts = { q->cell->seed, tty ? block_step_progress : NULL, &sp };
    void *states[QH_LIN_MAX] = { NULL };   /* NULL: a skipped linear, kept float and untuned */
    void **mine = layer_states(&q->block, layer);
    int any = 0;
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (m->blocks[layer].lin[k].W && q->block.quantized[k]) {
            states[k] = mine[k];
            any = 1;
        }
    if (!any) return QH_OK;           /* every linear of the block skipped: nothing to tune */
    QH_TRY(qh_block_stage_tune(m, layer, x, x_fp, nsamples, seqlen, W_fp, q->type, q->params,
                               states, &opts, &bs));
    if (tty && bs.steps > 0) fputc('\n', q->p->log);   /* ends the progress line */
    if (q->p->log)
        fprintf(q->p->log, "%s: block %d tuned: loss %.6g -> %.6g, MSE to float %.6g -> %.6g "
                "(%zu steps, %.1f s)\n", q->cell->id, layer, bs.loss_init, bs.loss_final,
                bs.mse_fp_init, bs.mse_fp_final, bs.steps, bs.seconds);
    return measure_tuned(q, m, layer, &bs);
}

static void model_step_progress(long step, long steps, double kl, double best, double seconds,
                                void *user)
{
    draw_step_progress(user, "end-to-end healing", "KL", step, steps, kl, best, seconds);
}

/* The whole-model stage after the block loop: every state against the KL of
 * the logits to the float model's (loaded again from the checkpoint: the
 * model in hand holds the compressed weights). */
static int heal_model(const qh_pipeline *p, const qh_cell *cell, qh_model *m, quant_ctx *q,
                      const int32_t *win, size_t nsamples, size_t seqlen)
{
    qh_model *float_m = NULL;
    QH_TRY(load_model(p, p->cfg->models[cell->model].path, &float_m));
    step_progress sp = { p->log, -1.0 };
    int tty = p->log && isatty(fileno(p->log));
    qh_model_stage_opts opts = { cell->seed, tty ? model_step_progress : NULL, &sp };
    qh_model_stage_stats *s = &q->heal_kl;
    int st = qh_model_stage_tune(m, float_m, win, nsamples, seqlen, q->type, q->params,
                                 q->block.all, &opts, s);
    qh_model_free(float_m);
    if (tty && s->steps > 0) fputc('\n', p->log);
    q->heal_kl_done = st == QH_OK;
    if (st == QH_OK && p->log)
        fprintf(p->log, "%s: end-to-end healing: calibration KL %.6g -> %.6g (best step %.6g, "
                "%zu steps, %.1f s)\n", cell->id, s->kl_init, s->kl_final, s->best_step_kl,
                s->steps, s->seconds);
    return st;
}

static void block_progress(int done, int total, void *user)
{
    quant_ctx *q = user;
    if (q->p->log)
        fprintf(q->p->log, "%s: block %d/%d quantized (%.1f s)\n", q->cell->id, done, total,
                qh_seconds() - q->t0);
}

/* ---- evaluation ------------------------------------------------------------- */

typedef struct {
    qh_cell_eval *evals;
    qh_eval_result *results;
    size_t n;
    qh_cell_task *tasks;
    qh_task_result *task_results;
    size_t n_tasks;
} eval_set;

static void eval_set_free(eval_set *e)
{
    for (size_t i = 0; i < e->n; i++) qh_eval_result_free(&e->results[i]);
    free(e->results);
    free(e->evals);
    for (size_t i = 0; i < e->n_tasks; i++) qh_task_result_free(&e->task_results[i]);
    free(e->task_results);
    free(e->tasks);
}

/* The accuracy of m on every task file of the configuration. */
static int run_tasks(const qh_pipeline *p, const qh_model *m, const qh_tokenizer *tok, const char *id,
                     eval_set *e)
{
    const qh_config *cfg = p->cfg;
    e->tasks = calloc(cfg->n_tasks + 1, sizeof *e->tasks);
    e->task_results = calloc(cfg->n_tasks + 1, sizeof *e->task_results);
    if (!e->tasks || !e->task_results) QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t k = 0; k < cfg->n_tasks; k++) {
        qh_task t;
        QH_TRY(qh_task_load(cfg->tasks[k].path, &t));
        int st = qh_task_eval(m, tok, &t, 0, &e->task_results[k]);
        qh_task_free(&t);
        if (st != QH_OK) { qh_error_prefix("task %s", cfg->tasks[k].label); return st; }
        e->n_tasks = k + 1;
        e->tasks[k] = (qh_cell_task){ cfg->tasks[k].label, cfg->tasks[k].path, &e->task_results[k] };
        const qh_task_result *r = &e->task_results[k];
        if (p->log) fprintf(p->log, "%s: task %s acc %.4f +- %.4f, acc_norm %.4f (%zu items, %.1f s)\n", id,
                            cfg->tasks[k].label, r->acc, r->acc_stderr, r->acc_norm, r->n, r->seconds);
    }
    return QH_OK;
}

/* The float reference of dataset d (ids, n windows of seqlen): the cache file
 * under OUT/float-cache/, built from the float model when missing (float_m, or
 * the model folder loaded here).  *cache stays NULL when kl_topk is 0. */
static int float_reference(const qh_pipeline *p, size_t model, size_t d, const qh_model *float_m,
                           const int32_t *ids, size_t seqlen, size_t n_win, qh_float_cache **cache)
{
    const qh_config *cfg = p->cfg;
    const qh_config_entry *me = &cfg->models[model];
    size_t vocab = float_m ? (size_t)float_m->cfg.vocab_size : 0;
    *cache = NULL;
    if (cfg->eval_kl_topk <= 0) return QH_OK;
    if (!vocab) {
        qh_model_config mc;
        QH_TRY(qh_model_config_load(me->path, &mc));
        vocab = (size_t)mc.vocab_size;
    }
    size_t k = (size_t)cfg->eval_kl_topk < vocab ? (size_t)cfg->eval_kl_topk : vocab;
    char key[65], dir[1200], path[1400];
    QH_TRY(qh_float_cache_key(me->path, ids, seqlen, n_win, k, key));
    QH_TRY(qh_float_cache_dir(p->out_dir, dir, sizeof dir));
    QH_TRY(qh_path_format(path, sizeof path, "float cache", "%s/%s.%s.%.16s.bin", dir, me->label,
                          cfg->datasets[d].label, key));
    if (qh_float_cache_open(path, key, vocab, seqlen, n_win, k, cache) == QH_OK) return QH_OK;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        QH_ERROR(QH_EIO, "float cache folder %s: cannot create (%s)", dir, strerror(errno));
    qh_model *own = NULL;
    double t0 = qh_seconds();
    if (!float_m) {
        QH_TRY(load_model(p, me->path, &own));
        float_m = own;
    }
    int st = qh_float_cache_build(float_m, ids, seqlen, n_win, k, key, path);
    qh_model_free(own);
    QH_TRY(st);
    if (p->log) fprintf(p->log, "%s: float reference of %s written to %s (%zu windows, top %zu, %.1f s)\n",
                        me->label, cfg->datasets[d].label, path, n_win, k, qh_seconds() - t0);
    return qh_float_cache_open(path, key, vocab, seqlen, n_win, k, cache);
}

/* Perplexity and, with eval.kl_topk > 0, the fidelity against the float model
 * on every dataset.  float_m: the float model when m is it (the baseline), or NULL. */
static int evaluate(const qh_pipeline *p, const qh_model *m, const qh_tokenizer *tok, const char *id,
                    size_t model, const qh_model *float_m, eval_set *e)
{
    const qh_config *cfg = p->cfg;
    size_t seqlen = cfg->eval_seqlen ? (size_t)cfg->eval_seqlen : (size_t)m->cfg.max_pos;
    e->evals = calloc(cfg->n_datasets + 1, sizeof *e->evals);
    e->results = calloc(cfg->n_datasets + 1, sizeof *e->results);
    if (!e->evals || !e->results) QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t d = 0; d < cfg->n_datasets; d++) {
        int32_t *ids = NULL;
        size_t n = 0;
        qh_float_cache *cache = NULL;
        QH_TRY(qh_tokenize_file(tok, cfg->datasets[d].path, &ids, &n));
        size_t total = n / seqlen, cap = (size_t)cfg->eval_max_windows;
        size_t n_win = cap && cap < total ? cap : total;
        int st = n_win ? float_reference(p, model, d, float_m, ids, seqlen, n_win, &cache) : QH_OK;
        if (st == QH_OK)
            st = qh_eval_ppl_ref(m, ids, n, seqlen, cap, cache ? qh_float_cache_window : NULL, cache,
                                 NULL, NULL, &e->results[d]);
        qh_float_cache_close(cache);
        free(ids);
        if (st != QH_OK) { qh_error_prefix("dataset %s", cfg->datasets[d].label); return st; }
        e->n = d + 1;
        qh_eval_result *r = &e->results[d];
        e->evals[d] = (qh_cell_eval){ cfg->datasets[d].label, cfg->datasets[d].path, r->ppl, r->seqlen,
                                      r->windows, r->tokens, r->window_nll,
                                      r->fid.present ? &r->fid : NULL };
        if (p->log) fprintf(p->log, "%s: %s ppl %.4f (%zu windows of %zu)\n", id, cfg->datasets[d].label,
                            r->ppl, r->windows, r->seqlen);
        if (p->log && r->fid.present)
            fprintf(p->log, "%s: %s KL %.5f +- %.5f, top-1 agreement %.4f, ppl ratio %.4f (%.1f s)\n",
                    id, cfg->datasets[d].label, r->fid.kl_mean, r->fid.kl_ci, r->fid.agree,
                    r->fid.ppl_ratio, r->seconds);
    }
    return QH_OK;
}

static int load_model_and_tokenizer(const qh_pipeline *p, const char *dir, qh_model **m,
                                    qh_tokenizer **tok)
{
    char path[1200];
    QH_TRY(load_model(p, dir, m));
    QH_TRY(qh_path_format(path, sizeof path, "tokenizer", "%s/tokenizer.json", dir));
    return qh_tokenizer_load(path, tok);
}

/* ---- cells ------------------------------------------------------------------ */

/* What --save-model writes beside the weights (QH_SAVE_META_FILE): the cell,
 * method, its version, bits, every parameter (defaults included, as the
 * protocol formats them), incoherence, bits per weight (nominal and total,
 * weighted by each linear's size, as the results file's /run attributes), the
 * protocol record and its SHA-256.  *out: new JSON text (free()). */
static int save_meta_json(const qh_cell *cell, const qh_config_method *cm, const quant_ctx *q,
                          const void *params, const char *protocol, char **out)
{
    cJSON *j = cJSON_CreateObject(), *pj = cJSON_CreateObject();
    double nominal = 0, weights = 0;
    for (size_t i = 0; i < q->n_recs; i++) {
        double k = (double)q->recs[i].rows * (double)q->recs[i].cols;
        nominal += q->recs[i].bits_nominal * k;
        weights += k;
    }
    for (const qh_param_desc *d = q->type->params; d && d->key; d++) {
        char v[64];
        qh_param_format(d, params, v, sizeof v);
        char *end = NULL;
        double num = strtod(v, &end);           /* numbers as numbers, choices as text */
        if (end != v && *end == '\0' && isfinite(num)) cJSON_AddNumberToObject(pj, d->key, num);
        else cJSON_AddStringToObject(pj, d->key, v);
    }
    char hex[65] = "";
    if (protocol) qh_protocol_sha256(protocol, hex);
    cJSON_AddStringToObject(j, "cell", cell->id);
    cJSON_AddStringToObject(j, "method", q->type->name);
    cJSON_AddStringToObject(j, "method_label", cm->label);
    cJSON_AddNumberToObject(j, "method_version", q->type->version);
    cJSON_AddNumberToObject(j, "bits", cell->bits);
    const qh_param_desc *g = qh_method_param_find(q->type, "group");
    if (g) cJSON_AddItemToObject(j, "group", cJSON_Duplicate(cJSON_GetObjectItem(pj, "group"), 1));
    cJSON_AddItemToObject(j, "params", pj);
    cJSON_AddStringToObject(j, "incoherence", cm->incoherence);
    cJSON_AddBoolToObject(j, "rescale", q->rescale && q->incoh != QH_INCOH_NONE);
    cJSON_AddNumberToObject(j, "seed", (double)cell->seed);
    cJSON_AddNumberToObject(j, "bits_per_weight_nominal", weights > 0 ? nominal / weights : cell->bits);
    cJSON_AddNumberToObject(j, "bits_per_weight_total",
                            weights > 0 ? qh_layer_records_bits_total(q->recs, q->n_recs) : cell->bits);
    cJSON_AddNumberToObject(j, "linears", (double)q->n_recs);
    cJSON_AddStringToObject(j, "protocol_sha256", hex);
    cJSON *pr = protocol ? cJSON_Parse(protocol) : NULL;
    if (pr) cJSON_AddItemToObject(j, "protocol", pr);
    cJSON_AddStringToObject(j, "weights", "dequantized, in the source's dtypes (BF16/F16 rounded "
                            "to nearest even) and layout");
    *out = cJSON_Print(j);
    cJSON_Delete(j);
    if (!*out) QH_ERROR(QH_ENOMEM, "%s: out of memory for %s", cell->id, QH_SAVE_META_FILE);
    return QH_OK;
}

static int quantize_model(const qh_pipeline *p, const qh_cell *cell, qh_model *m, const qh_tokenizer *tok,
                          quant_ctx *q)
{
    const qh_config *cfg = p->cfg;
    size_t seqlen = cfg->calib_seqlen ? (size_t)cfg->calib_seqlen : (size_t)m->cfg.max_pos;
    int32_t *ids = NULL, *win = NULL;
    size_t n = 0;
    int st = qh_tokenize_file(tok, cfg->calib_path, &ids, &n);
    if (st == QH_OK)
        st = qh_calib_windows(ids, n, (size_t)cfg->calib_nsamples, seqlen, cell->seed, cfg->calib_path, &win);
    free(ids);
    if (st == QH_OK)
        st = qh_transform_apply(m, &cfg->methods[cell->method].tf, win, (size_t)cfg->calib_nsamples,
                                seqlen, cell->seed, cell->id);
    if (st == QH_OK) {
        qh_layer_visitor v = { .fn = quantize_linear, .progress = block_progress, .user = q,
                               .act_dtype = cfg->calib_act_dtype, .max_blocks = cfg->calib_max_blocks,
                               .block_fn = q->block.block_stage ? tune_block : NULL };
        st = qh_sequential_visit(m, win, (size_t)cfg->calib_nsamples, seqlen, &v);
    }
    if (st == QH_OK && q->block.model_stage)
        st = heal_model(p, cell, m, q, win, (size_t)cfg->calib_nsamples, seqlen);
    free(win);
    return st;
}

int qh_pipeline_run_cell(const qh_pipeline *p, const qh_cell *cell)
{
    const qh_config *cfg = p->cfg;
    const qh_config_method *cm = &cfg->methods[cell->method];
    const qh_config_entry *me = &cfg->models[cell->model];
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    eval_set ev = { 0 };
    quant_ctx q = { .p = p, .cell = cell, .incoh = incoh_kind(cm->incoherence), .rescale = cm->rescale,
                    .permute = cm->permute, .t0 = qh_seconds() };
    qh_spectrum_cache_init(&q.spectra);
    void *params = NULL;
    char path[1400];

    int st = qh_config_method_params(cfg, cell->method, &q.type, &params);
    q.params = params;
    if (st == QH_OK) st = load_model_and_tokenizer(p, me->path, &m, &tok);
    if (st == QH_OK) st = block_objective_setup(&q.block, q.type, params, m->cfg.n_layers);
    q.ruled = qh_config_rule_count(cfg, cell->method) > 0;
    if (st == QH_OK && q.ruled) st = check_rules_match(cfg, cell->method, m);
    if (st == QH_OK && q.ruled) st = qh_st_set_open(me->path, &q.st);
    if (st == QH_OK) st = quantize_model(p, cell, m, tok, &q);
    if (st == QH_OK) st = qh_wa_attach(m, &cm->wa, cell->id);
    if (st == QH_OK) st = evaluate(p, m, tok, cell->id, cell->model, NULL, &ev);
    if (st == QH_OK) st = run_tasks(p, m, tok, cell->id, &ev);
    if (m) m->act_quant = NULL;                   /* a saved model stays a float model */
    if (st == QH_OK && p->save_model_dir && m->rotated)
        QH_SET_ERROR(st, QH_EUNIMPL, "%s: --save-model of a rotated model (\"rotate\": \"hadamard\") "
                     "is not implemented: its online Hadamard before down_proj/fc2 has no Hugging "
                     "Face form", cell->id);
    char message[1024];
    snprintf(message, sizeof message, "%s", st == QH_OK ? "" : qh_last_error());
    char *record = NULL;                          /* before the save: its hash goes with it */
    int wst = qh_protocol_record(cfg, cell->model, cell, qh_blas_info().threads, &record);
    if (st == QH_OK && p->save_model_dir) {
        char dir[1400], *meta = NULL;
        st = qh_path_format(dir, sizeof dir, "--save-model folder", "%s/%s", p->save_model_dir, cell->id);
        if (st == QH_OK) st = save_meta_json(cell, cm, &q, params, wst == QH_OK ? record : NULL, &meta);
        if (st == QH_OK) st = qh_model_save_meta(m, dir, meta);
        free(meta);
        if (st == QH_OK && p->log) fprintf(p->log, "%s: dequantized model written to %s\n", cell->id, dir);
        if (st != QH_OK) snprintf(message, sizeof message, "%s", qh_last_error());
    }
    if (st != QH_OK && p->log) fprintf(p->log, "%s: FAILED: %s\n", cell->id, message);

    size_t seqlen = m ? (cfg->calib_seqlen ? (size_t)cfg->calib_seqlen : (size_t)m->cfg.max_pos) : 0;
    qh_cell_info info = {
        .id = cell->id, .model = me->label, .model_path = me->path, .method = q.type, .params = params,
        .method_label = cm->label, .incoherence = cm->incoherence, .rescale = cm->rescale,
        .bits = cell->bits, .seed = cell->seed, .status = st, .message = message,
        .seconds = qh_seconds() - q.t0, .config_json = p->config_json, .calib_path = cfg->calib_path,
        .calib_nsamples = (size_t)cfg->calib_nsamples, .calib_seqlen = seqlen,
        .tasks = ev.tasks, .n_tasks = ev.n_tasks,
        .heal_kl = q.heal_kl_done ? &q.heal_kl : NULL,
    };
    info.protocol = record;
    if (wst == QH_OK) wst = qh_pipeline_cell_path(p, cell, path, sizeof path);
    if (wst == QH_OK) wst = qh_cell_file_write(path, &info, q.recs, q.n_recs, ev.evals, ev.n);
    free(record);
    if (wst != QH_OK && p->log) fprintf(p->log, "%s: cannot write results: %s\n", cell->id, qh_last_error());
    eval_set_free(&ev);
    free(q.recs);
    block_objective_free(&q.block);
    qh_spectrum_cache_free(&q.spectra);
    qh_st_set_close(q.st);
    free(params);
    qh_tokenizer_free(tok);
    qh_model_free(m);
    return wst != QH_OK ? QH_EIO : st;
}

int qh_pipeline_run_baseline(const qh_pipeline *p, size_t model)
{
    const qh_config_entry *me = &p->cfg->models[model];
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    eval_set ev = { 0 };
    char id[128], path[1400];
    double t0 = qh_seconds();
    snprintf(id, sizeof id, "%s.baseline", me->label);
    int st = load_model_and_tokenizer(p, me->path, &m, &tok);
    if (st == QH_OK) st = evaluate(p, m, tok, id, model, m, &ev);
    if (st == QH_OK) st = run_tasks(p, m, tok, id, &ev);
    char message[1024];
    snprintf(message, sizeof message, "%s", st == QH_OK ? "" : qh_last_error());
    qh_cell_info info = {
        .id = id, .model = me->label, .model_path = me->path, .method = NULL, .params = NULL,
        .method_label = "float32", .incoherence = "none", .rescale = 0, .bits = 32, .seed = 0,
        .status = st, .message = message, .seconds = qh_seconds() - t0, .config_json = p->config_json,
        .calib_path = "", .calib_nsamples = 0, .calib_seqlen = 0,
        .tasks = ev.tasks, .n_tasks = ev.n_tasks,
    };
    char *record = NULL;
    int wst = qh_protocol_record(p->cfg, model, NULL, qh_blas_info().threads, &record);
    info.protocol = record;
    if (wst == QH_OK) wst = qh_pipeline_baseline_path(p, model, path, sizeof path);
    if (wst == QH_OK) wst = qh_cell_file_write(path, &info, NULL, 0, ev.evals, ev.n);
    free(record);
    eval_set_free(&ev);
    qh_tokenizer_free(tok);
    qh_model_free(m);
    return wst != QH_OK ? QH_EIO : st;
}
