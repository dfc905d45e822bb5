/* test_family_methods.c -- every registered method row quantizes every
 * family's tiny model (tests/data/families) through the block-sequential
 * traversal the pipeline uses (pipeline/sequential.h): calibration on two
 * windows of 32 tokens of tokens.json, each linear's Hessian from the
 * quantized path, the row's defaults (as a run without incoherence starts
 * from) at 4 bits or the nearest width the row accepts, the result written
 * back into the model.  Checks that every linear of every block is visited
 * and quantized without error, that the weights changed, and that the
 * perplexity of the quantized model over the four 64-token windows is finite.
 * With QH_TEST_FAST set, only the last four families (Gemma 2, Phi-3, GPT-2,
 * GPT-NeoX: the fused, transposed and per-head layouts and the new features).
 *
 * A row with block ops also tunes each block through qh_block_stage_tune on
 * the model's backward pass (pipeline/block_stage.h), as the pipeline does:
 * PTQ1.61's block objective (its default), AQLM with finetune 2, MPO and
 * low-rank with heal_steps 4 on FP16 cores (bits 16; their defaults skip the
 * stage).  The stage
 * must run on every block, with finite losses.  Not covered: incoherence processing, which does
 * not depend on the family.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "model/model.h"
#include "pipeline/block_stage.h"
#include "pipeline/config.h"
#include "pipeline/eval.h"
#include "pipeline/sequential.h"
#include "qh_method.h"
#include "qh_test.h"

#define DATA "tests/data/families"

static const char *const families[] = { "llama3", "llama_linear", "qwen2", "qwen3", "mistral",
                                        "gemma", "gemma2", "phi3", "gpt2", "gpt_neox", NULL };

static int32_t *read_tokens(size_t *n)
{
    char *buf = qh_read_text_file(DATA "/tokens.json");
    if (!buf) return NULL;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
    *n = (size_t)cJSON_GetArraySize(ids);
    int32_t *out = malloc(*n * sizeof *out);
    for (size_t i = 0; i < *n; i++) out[i] = (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble;
    cJSON_Delete(j);
    return out;
}

typedef struct {
    const qh_method_type *mt;
    const void *params;
    int bits;
    int visits, changed, tuned;
    double loss_init, loss_final;    /* the last tuned block's */
    void *states[QH_LIN_MAX];        /* block ops' states when the stage runs */
    qh_result res;
} run_ctx;

static int tune_block(qh_model *m, int layer, const float *x, const float *x_fp, size_t ns,
                      size_t T, float *const W_fp[QH_LIN_MAX], void *user)
{
    run_ctx *c = user;
    qh_block_stage_stats bs;
    memset(&bs, 0, sizeof bs);
    QH_TRY(qh_block_stage_tune(m, layer, x, x_fp, ns, T, W_fp, c->mt, c->params, c->states, NULL,
                               &bs));
    c->tuned++;
    c->loss_init = bs.loss_init;
    c->loss_final = bs.loss_final;
    return isfinite(bs.loss_init) && isfinite(bs.loss_final) ? QH_OK : QH_ENAN;
}

static int quantize_one(const qh_model *m, int layer, int kind, qh_matd *W, const qh_matd *H,
                        const double *x_absmax, int *replace, void *user)
{
    run_ctx *c = user;
    const char *name = m->blocks[layer].lin[kind].name;
    qh_problem p = { W, H, c->bits, 11, qh_model_linear_key(m, layer, kind), name,
                     c->states[kind], x_absmax };
    QH_TRY(qh_quantize(c->mt, c->params, &p, NULL, NULL, &c->res));
    size_t n = W->rows * W->cols, diff = 0;
    for (size_t i = 0; i < n; i++) diff += W->data[i] != c->res.What->data[i];
    c->changed += diff > 0;
    memcpy(W->data, c->res.What->data, n * sizeof(double));
    *replace = 1;
    c->visits++;
    return QH_OK;
}

static void run_family(const char *family, const qh_method_type *mt, const int32_t *ids, size_t n)
{
    char dir[256];
    snprintf(dir, sizeof dir, DATA "/%s", family);
    qh_model *m = NULL;
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "%s: load: %s", family, st ? qh_last_error() : "");
    if (st != QH_OK) return;
    void *params = qh_method_params_new(mt);
    int lo, hi;
    qh_method_bits_range(mt, &lo, &hi);
    run_ctx c = { .mt = mt, .params = params, .bits = 4 < lo ? lo : 4 > hi ? hi : 4 };
    qh_result_init(&c.res);
    st = params ? qh_method_params_defaults_for(mt, params, QH_INCOH_NONE) : QH_ENOMEM;
    /* rows whose defaults skip their block stage: ask for a short one */
    if (st == QH_OK && mt->block && !mt->block->wants(params)) {
        if (qh_method_param_find(mt, "finetune"))
            st = qh_method_params_set(mt, params, "finetune", "2");
        else if (qh_method_param_find(mt, "heal_steps") && hi >= 16) {
            st = qh_method_params_set(mt, params, "heal_steps", "4");
            c.bits = 16;                 /* healing tunes float (FP16) cores */
        }
    }
    int stage = st == QH_OK && mt->block && mt->block->wants(params);
    for (int k = 0; stage && k < QH_LIN_MAX; k++)
        if (m->blocks[0].lin[k].W && !(c.states[k] = mt->block->state_new())) st = QH_ENOMEM;
    qh_layer_visitor v = { .fn = quantize_one, .block_fn = stage ? tune_block : NULL, .user = &c };
    if (st == QH_OK) st = qh_sequential_visit(m, ids, 2, 32, &v);
    if (stage)
        QH_CHECK(st != QH_OK || c.tuned == m->cfg.n_layers, "%s on %s: block stage on %d of %d "
                 "blocks (last block loss %.4g -> %.4g)", mt->name, family, c.tuned,
                 m->cfg.n_layers, c.loss_init, c.loss_final);
    if (stage && st == QH_OK && !strcmp(family, "gpt_neox"))
        QH_NOTE("%-10s block stage on gpt_neox: last block loss %.4g -> %.4g", mt->name,
                c.loss_init, c.loss_final);
    for (int k = 0; stage && k < QH_LIN_MAX; k++) mt->block->state_free(c.states[k]);
    int want = m->cfg.n_layers * qh_model_n_linear(m);
    QH_CHECK(st == QH_OK && c.visits == want, "%s on %s at %d bits: %d of %d linears quantized%s%s",
             mt->name, family, c.bits, c.visits, want, st ? ": " : "", st ? qh_last_error() : "");
    QH_CHECK(st != QH_OK || c.changed == want, "%s on %s: %d of %d linears changed", mt->name,
             family, c.changed, want);
    if (st == QH_OK) {
        qh_eval_result r;
        memset(&r, 0, sizeof r);
        st = qh_eval_ppl(m, ids, n, 64, 0, NULL, NULL, &r);
        QH_CHECK(st == QH_OK && isfinite(r.ppl) && r.ppl > 1.0, "%s on %s: ppl %g%s%s", mt->name,
                 family, st == QH_OK ? r.ppl : NAN, st ? ": " : "", st ? qh_last_error() : "");
        if (st == QH_OK && !strcmp(family, "gpt_neox"))
            QH_NOTE("%-10s %2d bits: gpt_neox ppl %.2f (float 904.75)", mt->name, c.bits, r.ppl);
        qh_eval_result_free(&r);
    }
    qh_result_free(&c.res);
    free(params);
    qh_model_free(m);
}

int main(void)
{
    size_t n = 0;
    int32_t *ids = read_tokens(&n);
    QH_CHECK(ids && n == 256, "tokens.json holds 256 ids");
    if (!ids) return qh_test_summary();
    int rows = 0, first = qh_test_fast() ? 6 : 0;
    for (const qh_method_type *const *mt = qh_method_registry(); *mt; mt++, rows++)
        for (const char *const *f = families + first; *f; f++) run_family(*f, *mt, ids, n);
    QH_NOTE("%d method rows x %d families", rows,
            (int)(sizeof families / sizeof *families) - 1 - first);
    free(ids);
    return qh_test_summary();
}
