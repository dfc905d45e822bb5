/* test_families.c -- the model families against transformers, on the tiny
 * random-weight models of tests/data/families (made, and their references
 * computed in float32, by experiments/scripts/make_tiny_family_models.py; see
 * docs/families.md).
 *
 * 1. Every family qh implements: loads, perplexity at context 64 over the
 *    four windows of tests/data/families/tokens.json within 1e-4 relative of
 *    reference.json, each window's mean NLL within 1e-4 relative, window 0's
 *    argmax identical at every position and its logsumexp within 1e-4
 *    relative.  A feature switched off (the sliding window, llama3/linear
 *    frequencies) must move the perplexity by more than the tolerance, so the
 *    match is not one the feature does not affect.
 * 2. The block backward pass of every implemented family against central
 *    differences of the float32 block forward (directional derivative along
 *    a random direction per linear kind, L = <R, y>, as test_block_grad's 2a
 *    with its tolerance), on both layers at T = 24 (past the 16-token windows).
 * 3. Stored forms survive a save: Phi-3's fused rows, GPT-2's transposed
 *    Conv1D weights with the fused c_attn, GPT-NeoX's per-head interleaved
 *    query_key_value (weights and biases): the split kinds' changed weights
 *    are what a reload of the saved folder holds.
 * 4. Config dialects: Gemma 2 without layer_types (the even-layer rule),
 *    GPT-NeoX's older rotary_pct / rotary_emb_base, GPT-2 tensors without the
 *    "transformer." prefix all give the same perplexity; GPT-2's
 *    scale_attn_by_inverse_layer_idx and a GPT-NeoX hidden_act other than
 *    gelu are refused naming the key.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "model/backward.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/save_model.h"
#include "pipeline/config.h"
#include "pipeline/eval.h"
#include "qh_rng.h"
#include "qh_test.h"

#define DATA "tests/data/families"
#define PPL_TOL 1e-4
#define FD_EPS 1e-3
#define FD_TOL 2e-2

static const char *const implemented[] = { "llama3", "llama_linear", "qwen2", "qwen3", "mistral",
                                           "gemma", "gemma2", "phi3", "gpt2", "gpt_neox", NULL };

static cJSON *load_json(const char *path)
{
    char *text = qh_read_text_file(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static int32_t *read_tokens(size_t *n)
{
    cJSON *j = load_json(DATA "/tokens.json");
    const cJSON *ids = jget(j, "ids");
    *n = (size_t)cJSON_GetArraySize(ids);
    int32_t *out = malloc(*n * sizeof *out);
    for (size_t i = 0; i < *n; i++) out[i] = (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble;
    cJSON_Delete(j);
    return out;
}

static double ppl_of(const qh_model *m, const int32_t *ids, size_t n, const char *name, int *st)
{
    qh_eval_result res;
    memset(&res, 0, sizeof res);
    *st = qh_eval_ppl(m, ids, n, 64, 0, NULL, NULL, &res);
    QH_CHECK(*st == QH_OK, "%s: ppl: %s", name, *st ? qh_last_error() : "");
    double p = res.ppl;
    qh_eval_result_free(&res);
    return p;
}

/* ---- 1. forward against the references ------------------------------------ */

static void check_reference(const char *name, const int32_t *ids, size_t n)
{
    char dir[256], path[300];
    snprintf(dir, sizeof dir, DATA "/%s", name);
    snprintf(path, sizeof path, "%s/reference.json", dir);
    cJSON *ref = load_json(path);
    qh_model *m = NULL;
    if (!ref) { QH_CHECK(0, "%s: no reference.json", name); return; }
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "%s: load: %s", name, st ? qh_last_error() : "");
    if (st != QH_OK) { cJSON_Delete(ref); return; }
    const cJSON *pr = jget(jget(ref, "ppl"), "64");
    double want = jget(pr, "ppl")->valuedouble;
    qh_eval_result res;
    memset(&res, 0, sizeof res);
    st = qh_eval_ppl(m, ids, n, 64, 0, NULL, NULL, &res);
    QH_CHECK(st == QH_OK, "%s: ppl: %s", name, st ? qh_last_error() : "");
    if (st == QH_OK) {
        QH_NOTE("%-13s ppl %.6f, reference %.6f, rel diff %.2e", name, res.ppl, want,
                (res.ppl - want) / want);
        QH_CHECK_CLOSE(res.ppl, want, 0, PPL_TOL, "%s ppl %.8f vs %.8f", name, res.ppl, want);
        const cJSON *wn = jget(pr, "window_nll");
        QH_CHECK(res.windows == (size_t)cJSON_GetArraySize(wn), "%s: %zu windows", name, res.windows);
        for (size_t w = 0; w < res.windows && w < (size_t)cJSON_GetArraySize(wn); w++) {
            double wv = cJSON_GetArrayItem(wn, (int)w)->valuedouble;
            QH_CHECK_CLOSE(res.window_nll[w], wv, 0, PPL_TOL, "%s window %zu nll", name, w);
        }
    }
    qh_eval_result_free(&res);
    /* window 0: argmax and logsumexp at every position */
    const cJSON *w0 = jget(ref, "window0");
    qh_forward_ws *ws = NULL;
    size_t V = (size_t)m->cfg.vocab_size, T = 64;
    float *logits = malloc(V * T * sizeof(float));
    st = qh_forward_ws_alloc(m, T, &ws);
    if (st == QH_OK) st = qh_forward_window(m, ids, T, ws, logits);
    QH_CHECK(st == QH_OK, "%s: window 0: %s", name, st ? qh_last_error() : "");
    int bad_arg = 0;
    double worst_lse = 0;
    for (size_t t = 0; st == QH_OK && t < T; t++) {
        const float *l = logits + t * V;
        size_t am = 0;
        double mx = l[0], s = 0;
        for (size_t v = 1; v < V; v++) if (l[v] > l[am]) am = v;
        mx = l[am];
        for (size_t v = 0; v < V; v++) s += exp((double)l[v] - mx);
        double lse = mx + log(s), want_lse = cJSON_GetArrayItem(jget(w0, "logsumexp"), (int)t)->valuedouble;
        bad_arg += (int)am != (int)cJSON_GetArrayItem(jget(w0, "argmax"), (int)t)->valuedouble;
        worst_lse = fmax(worst_lse, fabs(lse - want_lse) / fabs(want_lse));
    }
    QH_CHECK(bad_arg == 0, "%s: window 0 argmax differs at %d of 64 positions", name, bad_arg);
    QH_CHECK(worst_lse < PPL_TOL, "%s: window 0 logsumexp rel err %.3g", name, worst_lse);
    free(logits);
    qh_forward_ws_free(ws);

    /* the features must matter: without them the perplexity moves */
    double with = ppl_of(m, ids, n, name, &st);
    if (m->cfg.sliding_window || m->cfg.rope.type != QH_ROPE_DEFAULT) {
        qh_model_config saved = m->cfg;
        m->cfg.sliding_window = 0;
        m->cfg.rope.type = QH_ROPE_DEFAULT;
        double without = ppl_of(m, ids, n, name, &st);
        m->cfg = saved;
        QH_NOTE("%-13s without its window / rope scaling: ppl %.6f (rel %.2e)", name, without,
                (without - with) / with);
        QH_CHECK(fabs(without - with) > 10 * PPL_TOL * with, "%s: the feature has no effect", name);
    }
    if (m->cfg.attn_softcap > 0 || m->cfg.final_softcap > 0) {
        qh_model_config saved = m->cfg;
        for (int which = 0; which < 2; which++) {
            m->cfg = saved;
            if (which == 0) m->cfg.attn_softcap = 0;
            else m->cfg.final_softcap = 0;
            double without = ppl_of(m, ids, n, name, &st);
            QH_NOTE("%-13s without its %s soft-capping: ppl %.6f (rel %.2e)", name,
                    which ? "final" : "attention", without, (without - with) / with);
            QH_CHECK(fabs(without - with) > 10 * PPL_TOL * with, "%s: soft-capping has no effect",
                     name);
        }
        m->cfg = saved;
    }
    if (m->cfg.features.parallel_residual) {
        m->cfg.features.parallel_residual = 0;
        double without = ppl_of(m, ids, n, name, &st);
        m->cfg.features.parallel_residual = 1;
        QH_NOTE("%-13s with a sequential residual: ppl %.6f (rel %.2e)", name, without,
                (without - with) / with);
        QH_CHECK(fabs(without - with) > 10 * PPL_TOL * with, "%s: the parallel residual has no "
                 "effect", name);
    }
    qh_model_free(m);
    cJSON_Delete(ref);
}

/* ---- 2. block backward against finite differences -------------------------- */

static double block_loss(const qh_model *m, int layer, const float *x, size_t T, const float *R,
                         float *y, qh_block_tape *tape)
{
    int st = qh_block_forward_tape(m, layer, x, T, y, tape);
    QH_ASSERT(st == QH_OK);
    double L = 0.0;
    for (size_t i = 0; i < (size_t)m->cfg.hidden * T; i++) L += (double)R[i] * y[i];
    return L;
}

static double worst_fd;

static void check_backward(const char *name, const int32_t *ids)
{
    char dir[256];
    snprintf(dir, sizeof dir, DATA "/%s", name);
    qh_model *m = NULL;
    if (qh_model_load(dir, &m) != QH_OK) { QH_CHECK(0, "%s: load: %s", name, qh_last_error()); return; }
    size_t T = 24, d = (size_t)m->cfg.hidden, n = d * T;
    double family_worst = 0;
    qh_forward_ws *ws = NULL;
    qh_block_tape *tape = NULL;
    float *x = malloc(n * sizeof(float)), *R = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    qh_rng r = qh_rng_stream(7, 0, QH_RNG_TEST);
    for (size_t i = 0; i < n; i++) R[i] = (float)qh_rng_normal(&r);
    int st = qh_forward_ws_alloc(m, T, &ws);
    if (st == QH_OK) st = qh_block_tape_alloc(m, T, &tape);
    if (st == QH_OK) st = qh_forward_embed(m, ids, T, ws, ws->x);
    QH_CHECK(st == QH_OK, "%s: backward setup: %s", name, st ? qh_last_error() : "");
    for (int layer = 0; st == QH_OK && layer < m->cfg.n_layers; layer++) {
        memcpy(x, ws->x, n * sizeof(float));
        float *G[QH_LIN_MAX] = { 0 };
        for (int k = 0; k < QH_LIN_MAX; k++)
            if (m->blocks[layer].lin[k].W)
                G[k] = calloc((size_t)m->blocks[layer].lin[k].out * m->blocks[layer].lin[k].in,
                              sizeof(float));
        block_loss(m, layer, x, T, R, y, tape);
        /* the tape forward is the forward pass */
        st = qh_forward_block(m, layer, ws->x, T, ws, NULL);
        double e = 0, sc = 0;
        for (size_t i = 0; i < n; i++) {
            e = fmax(e, fabs(y[i] - ws->x[i]));
            sc = fmax(sc, fabs(ws->x[i]));
        }
        QH_CHECK(st == QH_OK && e <= 1e-5 * sc, "%s layer %d: tape forward vs forward %.3g", name,
                 layer, e / sc);
        block_loss(m, layer, x, T, R, y, tape);
        st = qh_block_backward(m, layer, R, tape, G);
        QH_CHECK(st == QH_OK, "%s: backward: %s", name, st ? qh_last_error() : "");
        for (int k = 0; st == QH_OK && k < QH_LIN_MAX; k++) {
            qh_linear *L = &m->blocks[layer].lin[k];
            if (!G[k]) continue;
            size_t nw = (size_t)L->out * L->in;
            float *W0 = malloc(nw * sizeof(float)), *D = malloc(nw * sizeof(float));
            memcpy(W0, L->W, nw * sizeof(float));
            double ss = 0, an = 0, gg = 0, dd = 0;
            for (size_t i = 0; i < nw; i++) ss += (double)W0[i] * W0[i];
            double wrms = sqrt(ss / (double)nw);
            for (size_t i = 0; i < nw; i++) D[i] = (float)(wrms * qh_rng_normal(&r));
            for (size_t i = 0; i < nw; i++) {
                an += (double)G[k][i] * D[i];
                gg += (double)G[k][i] * G[k][i];
                dd += (double)D[i] * D[i];
            }
            for (size_t i = 0; i < nw; i++) L->W[i] = (float)(W0[i] + FD_EPS * D[i]);
            double Lp = block_loss(m, layer, x, T, R, y, tape);
            for (size_t i = 0; i < nw; i++) L->W[i] = (float)(W0[i] - FD_EPS * D[i]);
            double Lm = block_loss(m, layer, x, T, R, y, tape);
            memcpy(L->W, W0, nw * sizeof(float));
            double fd = (Lp - Lm) / (2 * FD_EPS), den = fmax(fabs(an), sqrt(gg * dd / (double)nw));
            double err = fabs(fd - an) / den;
            worst_fd = fmax(worst_fd, err);
            family_worst = fmax(family_worst, err);
            QH_CHECK(err < FD_TOL, "%s layer %d %s: <G,D> %.6g vs central differences %.6g (rel %.3g)",
                     name, layer, qh_model_linear_short_name(m, k), an, fd, err);
            free(W0);
            free(D);
        }
        for (int k = 0; k < QH_LIN_MAX; k++) free(G[k]);
    }
    QH_NOTE("%-13s backward vs central differences: worst relative error %.3g", name, family_worst);
    free(x);
    free(R);
    free(y);
    qh_block_tape_free(tape);
    qh_forward_ws_free(ws);
    qh_model_free(m);
}

/* ---- 4. config.json dialects and refusals ------------------------------------- */

/* A copy of family `name` in a new temporary folder `out` whose config.json
 * is edited by `edit` (NULL: unchanged); with strip, the safetensors names
 * lose their "transformer." prefix (as in the original GPT-2 checkpoints). */
static int variant(const char *name, void (*edit)(cJSON *), int strip, char *out)
{
    char path[300], dst[300];
    if (!mkdtemp(out)) return QH_EIO;
    snprintf(path, sizeof path, DATA "/%s/config.json", name);
    cJSON *cfg = load_json(path);
    if (!cfg) return QH_EIO;
    if (edit) edit(cfg);
    char *text = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(dst, sizeof dst, "%s/config.json", out);
    FILE *f = fopen(dst, "wb");
    int st = f && text && fputs(text, f) >= 0 ? QH_OK : QH_EIO;
    if (f) fclose(f);
    free(text);
    if (st != QH_OK) return st;
    snprintf(path, sizeof path, DATA "/%s", name);
    qh_st_set *set = NULL;
    QH_TRY(qh_st_set_open(path, &set));
    const qh_st_file *sf = set->files[0];
    qh_st_write_tensor *t = calloc(sf->n_tensors, sizeof *t);
    char (*names)[128] = calloc(sf->n_tensors, sizeof *names);
    for (size_t i = 0; st == QH_OK && i < sf->n_tensors; i++) {
        const qh_st_tensor *src = &sf->tensors[i];
        const char *nm = src->name;
        if (strip && !strncmp(nm, "transformer.", 12)) nm += 12;
        snprintf(names[i], sizeof names[i], "%s", nm);
        float *data = malloc(src->numel * sizeof(float));
        t[i] = (qh_st_write_tensor){ names[i], src->dtype, src->ndim, { 0 }, data };
        memcpy(t[i].shape, src->shape, sizeof t[i].shape);
        st = qh_st_read_f32(sf, src, data);
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors", out);
    if (st == QH_OK) st = qh_st_write(dst, t, sf->n_tensors);
    for (size_t i = 0; i < sf->n_tensors; i++) free((void *)t[i].data);
    free(t);
    free(names);
    qh_st_set_close(set);
    return st;
}

static void drop_layer_types(cJSON *c) { cJSON_DeleteItemFromObject(c, "layer_types"); }
static void neox_old_keys(cJSON *c)
{
    cJSON_DeleteItemFromObject(c, "rope_parameters");
    cJSON_AddNumberToObject(c, "rotary_pct", 0.25);
    cJSON_AddNumberToObject(c, "rotary_emb_base", 10000);
}
static void gpt2_inverse_layer(cJSON *c)
{
    cJSON_ReplaceItemInObject(c, "scale_attn_by_inverse_layer_idx", cJSON_CreateTrue());
}
static void neox_relu(cJSON *c)
{
    cJSON_ReplaceItemInObject(c, "hidden_act", cJSON_CreateString("relu"));
}

static void remove_dir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    QH_CHECK(system(cmd) == 0, "remove %s", dir);
}

/* The variant loads and gives the original's perplexity exactly. */
static void check_same(const char *name, void (*edit)(cJSON *), int strip, const char *what,
                       const int32_t *ids, size_t n)
{
    char out[] = "/tmp/qh_families_cfgXXXXXX", dir[256];
    snprintf(dir, sizeof dir, DATA "/%s", name);
    qh_model *a = NULL, *b = NULL;
    int st = variant(name, edit, strip, out);
    if (st == QH_OK) st = qh_model_load(dir, &a);
    if (st == QH_OK) st = qh_model_load(out, &b);
    QH_CHECK(st == QH_OK, "%s %s: %s", name, what, st ? qh_last_error() : "");
    if (st == QH_OK) {
        double pa = ppl_of(a, ids, n, name, &st), pb = ppl_of(b, ids, n, name, &st);
        QH_CHECK(pa == pb, "%s %s: ppl %.9g, as the original's %.9g", name, what, pb, pa);
    }
    qh_model_free(a);
    qh_model_free(b);
    remove_dir(out);
}

/* The variant is refused naming `key`. */
static void check_refused_key(const char *name, void (*edit)(cJSON *), const char *key)
{
    char out[] = "/tmp/qh_families_cfgXXXXXX";
    qh_model *m = NULL;
    int st = variant(name, edit, 0, out);
    QH_CHECK(st == QH_OK, "%s: variant: %s", name, st ? qh_last_error() : "");
    st = qh_model_load(out, &m);
    QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), key), "%s: refused naming %s "
             "(status %d: %s)", name, key, st, st ? qh_last_error() : "");
    qh_model_free(m);
    remove_dir(out);
}

/* Every linear (weights, biases) of a equal to b's, bit for bit. */
static int same_linears(const qh_model *a, const qh_model *b)
{
    int same = 1;
    for (int l = 0; same && l < a->cfg.n_layers; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            const qh_linear *x = &a->blocks[l].lin[k], *y = &b->blocks[l].lin[k];
            if (!x->W) continue;
            same &= !memcmp(x->W, y->W, (size_t)x->out * x->in * sizeof(float));
            same &= !x->b == !y->b && (!x->b || !memcmp(x->b, y->b, (size_t)x->out * sizeof(float)));
        }
    return same;
}

/* ---- 3. fused and transposed tensors saved back ------------------------------ */

static void check_fused_save(const char *name)
{
    qh_model *m = NULL, *r = NULL;
    char out[] = "/tmp/qh_families_saveXXXXXX", dir[256];
    snprintf(dir, sizeof dir, DATA "/%s", name);
    if (qh_model_load(dir, &m) != QH_OK || !mkdtemp(out)) {
        QH_CHECK(0, "%s: load or temp dir: %s", name, qh_last_error());
        qh_model_free(m);
        return;
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            qh_linear *L = &m->blocks[l].lin[k];
            for (int i = 0; L->W && i < L->out * L->in; i++)
                L->W[i] = (float)(k + 1) + 0.001f * (float)i + 0.1f * (float)l;
            for (int i = 0; L->b && i < L->out; i++) L->b[i] = (float)(k + 1) - 0.01f * (float)i;
        }
    int st = qh_model_save(m, out);
    if (st == QH_OK) st = qh_model_load(out, &r);
    QH_CHECK(st == QH_OK, "%s: save and reload: %s", name, st ? qh_last_error() : "");
    QH_CHECK(r && same_linears(m, r),
             "%s: every kind's weights and biases round-trip through the stored tensors", name);
    qh_model_free(r);
    qh_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    QH_CHECK(system(cmd) == 0, "remove %s", out);
}

/* Spilled (model.h: blocks converted when first acquired, with the layout's
 * transposes and head permutations then): the same perplexity as held, the
 * same linears once acquired, and a save straight after loading (which
 * acquires block by block) writes the held model's tensors. */
static void check_spilled(const char *name, const int32_t *ids, size_t n)
{
    char dir[256], scratch[] = "/tmp/qh_families_spillXXXXXX", out[300];
    snprintf(dir, sizeof dir, DATA "/%s", name);
    qh_model *m = NULL, *s = NULL, *s2 = NULL, *r = NULL;
    qh_model_load_opts opts = { scratch };
    int st = mkdtemp(scratch) ? qh_model_load(dir, &m) : QH_EIO;
    if (st == QH_OK) st = qh_model_load_with(dir, &opts, &s);
    if (st == QH_OK) st = qh_model_load_with(dir, &opts, &s2);
    QH_CHECK(st == QH_OK, "%s: loads held and spilled: %s", name, st ? qh_last_error() : "");
    if (st == QH_OK) {
        int s1 = 0, s0 = 0;
        double ps = ppl_of(s, ids, n, name, &s1), pm = ppl_of(m, ids, n, name, &s0);
        QH_CHECK(s1 == QH_OK && s0 == QH_OK && ps == pm,
                 "%s: spilled, the same perplexity as held (%.9g, %.9g)", name, ps, pm);
        QH_CHECK(qh_model_acquire_all(s) == QH_OK && same_linears(m, s),
                 "%s: spilled, every linear as held once acquired", name);
        snprintf(out, sizeof out, "%s/saved", scratch);
        st = qh_model_save(s2, out);
        if (st == QH_OK) st = qh_model_load(out, &r);
        QH_CHECK(st == QH_OK && same_linears(m, r),
                 "%s: saved straight after a spilled load: the held model's tensors (%s)", name,
                 st ? qh_last_error() : "ok");
    }
    qh_model_free(r);
    qh_model_free(s2);
    qh_model_free(s);
    qh_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    QH_CHECK(system(cmd) == 0, "remove %s", scratch);
}

int main(void)
{
    size_t n = 0;
    int32_t *ids = read_tokens(&n);
    QH_CHECK(n == 256, "tokens.json holds %zu ids", n);
    for (const char *const *f = implemented; *f; f++) check_reference(*f, ids, n);
    for (const char *const *f = implemented; *f; f++) check_backward(*f, ids);
    for (const char *const *f = implemented; *f; f++) check_spilled(*f, ids, n);
    check_fused_save("phi3");          /* fused rows */
    check_fused_save("gpt2");          /* Conv1D (in, out), fused columns, biases */
    check_fused_save("gpt_neox");      /* q/k/v interleaved per head, biases */
    check_same("gemma2", drop_layer_types, 0, "without layer_types (even layers slide)", ids, n);
    check_same("gpt_neox", neox_old_keys, 0, "with rotary_pct / rotary_emb_base", ids, n);
    check_same("gpt2", NULL, 1, "without the \"transformer.\" prefix", ids, n);
    check_refused_key("gpt2", gpt2_inverse_layer, "scale_attn_by_inverse_layer_idx");
    check_refused_key("gpt_neox", neox_relu, "hidden_act");
    QH_NOTE("worst relative error of the backward pass against central differences: %.3g "
            "(tol %g)", worst_fd, FD_TOL);
    free(ids);
    return qh_test_summary();
}
