/* model.c -- loads a Hugging Face causal LM folder (config.json + safetensors)
 * into the float32 qh_model of model.h.
 *
 * The family row of config.json's model_type (family.h) gives the tensor
 * names and the decoder's features; its config dialect says which keys give
 * the shapes: the OPT dialect (OPTConfig: ffn_dim, word_embed_proj_dim with
 * project_in/project_out, do_layer_norm_before, final_layer_norm only when
 * pre-LN and not _remove_final_layer_norm) or the Llama one (LlamaConfig:
 * intermediate_size, num_key_value_heads, head_dim, rms_norm_eps, rope_theta).
 * Config defaults are those of the transformers config classes.
 *
 * Loading is two passes: the first finds and checks every tensor (name,
 * dtype, shape against config.json); the second points each F32 tensor into
 * the files' private writable mappings (safetensors.h: copy-on-write, so the
 * pipeline may overwrite weights in place and the file never changes; no
 * copy, and the pages are shared with the page cache until written), converts
 * the others (F16, BF16, or F32 at an address not 4-byte aligned, or in a
 * file the system would only map read-only) into one 64-byte aligned float32
 * buffer, and rejects non-finite values.  The mapped files stay open until
 * qh_model_free when any tensor points into them.  Spilled (a scratch folder in
 * the load options), nothing is mapped in place: every tensor is converted or
 * copied into a shared mapping of an unnamed file in that folder, each tensor
 * on pages of its own; the ends at load, a decoder block's tensors (and the
 * layout's transposes and permutations of them) when the block is first
 * acquired, its files kept mapped until then (model.h).  Fused tensors (a layout's qkv_fused,
 * gate_up_fused) are loaded whole and the kinds' W point at their rows.
 * Refused by name: RoPE scaling other than default/linear/llama3, LayerNorm
 * without affine parameters, activations other than the row's, soft-capping
 * and the other keys of refuse_keys.
 */
#include "model/model.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "qh_path.h"

typedef struct {
    float *buf;                      /* the tensors converted or copied (not mapped in place) */
    qh_st_set *set;                  /* the mapped files, kept while a tensor points into them;
                                        NULL when every tensor was converted */
    size_t n_params;                 /* elements of every loaded tensor (tied head once) */
    size_t n_mapped;                 /* of those, elements mapped in place (F32) */
    size_t buf_bytes;                /* buf's size when it is a scratch-file mapping, else 0 */
    size_t *block_begin, *block_end; /* spilled: block l's tensors are buf[begin[l], end[l]),
                                        whole pages; NULL otherwise */
    struct plan_slot *pending;       /* spilled: the decoder blocks' tensors, converted into
                                        their pages when the block is first acquired */
    size_t n_pending;
    unsigned char *ready;            /* spilled: block l converted (qh_model_acquire_block) */
    float *arrange_tmp;              /* spilled layouts with transposed or fused tensors:
                                        scratch of one block's linears for arrange_data */
} model_storage;

/* ---- config.json ------------------------------------------------------------ */

typedef struct {
    const cJSON *root;
    const char *path;
} config_src;

/* Integer key in [lo, hi]; absent or null gives def, unless def < lo: then the
 * key is required (callers pass -1). */
static int cfg_int(const config_src *c, const char *key, int def, int lo, int hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < lo) QH_ERROR(QH_ECONFIG, "%s: required key \"%s\" is missing", c->path, key);
        *out = def;
        return QH_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi) || d != floor(d))
        QH_ERROR(QH_ECONFIG, "%s: key \"%s\" must be an integer in [%d, %d]", c->path, key, lo, hi);
    *out = (int)d;
    return QH_OK;
}

static int cfg_bool(const config_src *c, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return QH_OK; }
    if (!cJSON_IsBool(v)) QH_ERROR(QH_ECONFIG, "%s: key \"%s\" must be true or false", c->path, key);
    *out = cJSON_IsTrue(v);
    return QH_OK;
}

static int cfg_positive(const config_src *c, const cJSON *v, const char *key, double *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
        QH_ERROR(QH_ECONFIG, "%s: key \"%s\" must be a positive number", c->path, key);
    *out = v->valuedouble;
    return QH_OK;
}

static int cfg_string_is(const config_src *c, const char *key, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !strcmp(v->valuestring, want))) return QH_OK;
    QH_ERROR(QH_ECONFIG, "%s: key \"%s\" must be \"%s\" (others are not supported)",
             c->path, key, want);
}

/* bos/eos/pad ids: a number, a list (first entry), or absent/null (-1). */
static int cfg_token(const config_src *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9) return -1;
    return (int)v->valuedouble;
}

#define MAX_DIM (1 << 20)

static int parse_common(const config_src *c, qh_model_config *k, qh_config_dialect dialect)
{
    int gpt2 = dialect == QH_CONFIG_GPT2;
    QH_TRY(cfg_int(c, "vocab_size", -1, 1, 1 << 24, &k->vocab_size));
    QH_TRY(cfg_int(c, gpt2 ? "n_embd" : "hidden_size", -1, 1, MAX_DIM, &k->hidden));
    QH_TRY(cfg_int(c, gpt2 ? "n_layer" : "num_hidden_layers", -1, 1, 4096, &k->n_layers));
    QH_TRY(cfg_int(c, gpt2 ? "n_head" : "num_attention_heads", -1, 1, 4096, &k->n_heads));
    k->bos_id = cfg_token(c, "bos_token_id");
    k->eos_id = cfg_token(c, "eos_token_id");
    k->pad_id = cfg_token(c, "pad_token_id");
    return QH_OK;
}

/* Hugging Face's name of an activation in config.json. */
static const char *act_name(qh_act_kind a)
{
    switch (a) {
    case QH_ACT_SILU: return "silu";
    case QH_ACT_GELU_TANH: return "gelu_pytorch_tanh";
    case QH_ACT_GELU: return "gelu";
    default: return "relu";
    }
}

/* Keys whose presence (not null, not false, not 0) asks for a computation no
 * family here implements: refused by name rather than ignored. */
static int refuse_keys(const config_src *c, const qh_model_features *f)
{
    static const char *const keys[] = { "attn_logit_softcapping", "final_logit_softcapping",
                                        "logits_scaling", "embedding_multiplier",
                                        "residual_multiplier", "attention_multiplier",
                                        "use_qk_norm", "sliding_window_pattern", NULL };
    for (const char *const *k = keys; *k; k++) {
        if (f->softcap && strstr(*k, "softcapping")) continue;     /* read by parse_softcap */
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, *k);
        if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsNumber(v) && v->valuedouble == 0))
            continue;
        QH_ERROR(QH_ECONFIG, "%s: key \"%s\" is not supported for this model_type", c->path, *k);
    }
    return QH_OK;
}

static int parse_opt(const config_src *c, qh_model_config *k, int *final_norm)
{
    qh_model_features *f = &k->features;
    int remove_final = 0, affine = 1;
    QH_TRY(cfg_int(c, "ffn_dim", -1, 1, MAX_DIM, &k->ffn_dim));
    QH_TRY(cfg_int(c, "max_position_embeddings", -1, 1, MAX_DIM, &k->max_pos));
    QH_TRY(cfg_int(c, "word_embed_proj_dim", k->hidden, 1, MAX_DIM, &k->embed_dim));
    QH_TRY(cfg_bool(c, "do_layer_norm_before", f->pre_ln, &f->pre_ln));
    QH_TRY(cfg_bool(c, "_remove_final_layer_norm", 0, &remove_final));
    QH_TRY(cfg_bool(c, "layer_norm_elementwise_affine", 1, &affine));
    QH_TRY(cfg_bool(c, "tie_word_embeddings", f->tied_head, &f->tied_head));
    QH_TRY(cfg_string_is(c, "activation_function", act_name(f->act)));
    if (!affine)
        QH_ERROR(QH_ECONFIG, "%s: layer_norm_elementwise_affine false is not supported", c->path);
    if (k->hidden % k->n_heads)
        QH_ERROR(QH_ECONFIG, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                 c->path, k->hidden, k->n_heads);
    k->n_kv_heads = k->n_heads;
    k->head_dim = k->hidden / k->n_heads;
    k->norm_eps = 1e-5f;
    k->rope_theta = 0;
    *final_norm = f->pre_ln && !remove_final;
    return QH_OK;
}

static int rope_num(const config_src *c, const cJSON *o, const char *key, const char *name,
                    double def, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0)
            QH_ERROR(QH_ECONFIG, "%s: %s.%s is required for this rope_type", c->path, key, name);
        *out = def;
        return QH_OK;
    }
    char full[96];
    snprintf(full, sizeof full, "%s.%s", key, name);
    return cfg_positive(c, v, full, out);
}

/* rope_parameters / rope_scaling: absent, null, or an object with rope_type
 * (or type) "default", "linear" or "llama3" and that type's numbers, and
 * optionally rope_theta and partial_rotary_factor.  Other types (dynamic,
 * yarn, longrope, ...) are refused by name. */
static int parse_rope_object(const config_src *c, const char *key, qh_model_config *k,
                             double *theta, double *partial)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!o || cJSON_IsNull(o)) return QH_OK;
    if (!cJSON_IsObject(o)) QH_ERROR(QH_ECONFIG, "%s: key \"%s\" must be an object", c->path, key);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "rope_type");
    if (!type) type = cJSON_GetObjectItemCaseSensitive(o, "type");
    const char *tn = type && cJSON_IsString(type) ? type->valuestring : type ? "?" : "default";
    qh_rope_scaling *r = &k->rope;
    if (!strcmp(tn, "default")) {
        r->type = QH_ROPE_DEFAULT;
    } else if (!strcmp(tn, "linear")) {
        r->type = QH_ROPE_LINEAR;
        QH_TRY(rope_num(c, o, key, "factor", -1, &r->factor));
    } else if (!strcmp(tn, "llama3")) {
        double om = 0;
        r->type = QH_ROPE_LLAMA3;
        QH_TRY(rope_num(c, o, key, "factor", -1, &r->factor));
        QH_TRY(rope_num(c, o, key, "low_freq_factor", -1, &r->low_freq_factor));
        QH_TRY(rope_num(c, o, key, "high_freq_factor", -1, &r->high_freq_factor));
        QH_TRY(rope_num(c, o, key, "original_max_position_embeddings", -1, &om));
        if (om != floor(om) || om > 1 << 24 || !(r->high_freq_factor > r->low_freq_factor))
            QH_ERROR(QH_ECONFIG, "%s: %s: llama3 needs an integer "
                     "original_max_position_embeddings and high_freq_factor > low_freq_factor",
                     c->path, key);
        r->original_max_pos = (int)om;
    } else {
        QH_ERROR(QH_ECONFIG, "%s: %s.rope_type \"%s\" is not supported (default, linear, llama3)",
                 c->path, key, tn);
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "rope_theta");
    if (t) QH_TRY(cfg_positive(c, t, "rope_theta", theta));
    t = cJSON_GetObjectItemCaseSensitive(o, "partial_rotary_factor");
    if (t) QH_TRY(cfg_positive(c, t, "partial_rotary_factor", partial));
    return QH_OK;
}

/* sliding_window (an integer, or null/absent for none), switched off by
 * use_sliding_window false; the layers it applies to from layer_types
 * ("sliding_attention" / "full_attention"), else every layer (the even
 * layers for a family with alternate_window: Gemma 2 before layer_types). */
static int parse_window(const config_src *c, qh_model_config *k)
{
    int alternate = k->features.alternate_window;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, "sliding_window");
    memset(k->window_layers, 0, sizeof k->window_layers);
    k->sliding_window = 0;
    if (!v || cJSON_IsNull(v)) return QH_OK;
    int use = 1, w = 0;
    QH_TRY(cfg_bool(c, "use_sliding_window", 1, &use));
    if (!use) return QH_OK;
    QH_TRY(cfg_int(c, "sliding_window", 0, 0, 1 << 30, &w));
    if (w == 0) return QH_OK;
    if (k->n_layers > QH_MAX_LAYERS)
        QH_ERROR(QH_ECONFIG, "%s: sliding windows on more than %d layers", c->path, QH_MAX_LAYERS);
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(c->root, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != k->n_layers)
            QH_ERROR(QH_ECONFIG, "%s: key \"layer_types\" must list num_hidden_layers (%d) entries",
                     c->path, k->n_layers);
        for (int l = 0; l < k->n_layers; l++) {
            const cJSON *e = cJSON_GetArrayItem(lt, l);
            const char *s = cJSON_IsString(e) ? e->valuestring : "?";
            if (!strcmp(s, "sliding_attention"))
                k->window_layers[l / 64] |= (uint64_t)1 << (l % 64);
            else if (strcmp(s, "full_attention"))
                QH_ERROR(QH_ECONFIG, "%s: layer_types[%d] \"%s\" is not supported "
                         "(sliding_attention, full_attention)", c->path, l, s);
        }
    } else {
        const cJSON *mwl = cJSON_GetObjectItemCaseSensitive(c->root, "max_window_layers");
        if (mwl && !cJSON_IsNull(mwl))
            QH_ERROR(QH_ECONFIG, "%s: use_sliding_window with max_window_layers and no "
                     "layer_types is not supported", c->path);
        for (int l = 0; l < k->n_layers; l += alternate ? 2 : 1)
            k->window_layers[l / 64] |= (uint64_t)1 << (l % 64);
    }
    k->sliding_window = w;
    return QH_OK;
}

/* The MLP activation: hidden_activation (Gemma) or hidden_act must name the row's. */
static int parse_act(const config_src *c, const qh_model_features *f)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, "hidden_activation");
    if (f->act == QH_ACT_GELU_TANH && v && !cJSON_IsNull(v))
        return cfg_string_is(c, "hidden_activation", act_name(f->act));
    return cfg_string_is(c, "hidden_act", act_name(f->act));
}

/* rope_theta / partial_rotary_factor at top level, then rope_scaling and
 * rope_parameters (which may override both); theta and partial come in with
 * the dialect's defaults.  Sets rope_theta and features.rotary_dims. */
static int parse_rotary(const config_src *c, qh_model_config *k, double theta, double partial)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, "rope_theta");
    if (v && !cJSON_IsNull(v)) QH_TRY(cfg_positive(c, v, "rope_theta", &theta));
    v = cJSON_GetObjectItemCaseSensitive(c->root, "partial_rotary_factor");
    if (v && !cJSON_IsNull(v)) QH_TRY(cfg_positive(c, v, "partial_rotary_factor", &partial));
    memset(&k->rope, 0, sizeof k->rope);
    QH_TRY(parse_rope_object(c, "rope_scaling", k, &theta, &partial));
    QH_TRY(parse_rope_object(c, "rope_parameters", k, &theta, &partial));
    if (partial > 1.0)
        QH_ERROR(QH_ECONFIG, "%s: partial_rotary_factor %g is above 1", c->path, partial);
    k->features.rotary_dims = (int)((double)k->head_dim * partial);
    if (k->features.rotary_dims < 2 || k->features.rotary_dims % 2)
        QH_ERROR(QH_ECONFIG, "%s: partial_rotary_factor %g gives %d rotary dims of head_dim %d "
                 "(an even number >= 2 is needed)", c->path, partial, k->features.rotary_dims,
                 k->head_dim);
    k->rope_theta = theta;
    return QH_OK;
}

/* A positive number or null/absent (0). */
static int cfg_optional_positive(const config_src *c, const char *key, double def, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, key);
    *out = def;
    if (!v || cJSON_IsNull(v)) return QH_OK;
    return cfg_positive(c, v, key, out);
}

/* Gemma 2: attn_logit_softcapping, final_logit_softcapping (null: none) and
 * the score scale query_pre_attn_scalar^-1/2 (Gemma2Config's defaults 50, 30,
 * 256). */
static int parse_softcap(const config_src *c, qh_model_config *k)
{
    double qpas = 0;
    QH_TRY(cfg_optional_positive(c, "attn_logit_softcapping", 50.0, &k->attn_softcap));
    QH_TRY(cfg_optional_positive(c, "final_logit_softcapping", 30.0, &k->final_softcap));
    /* explicit null switches a cap off */
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c->root, "attn_logit_softcapping")))
        k->attn_softcap = 0;
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c->root, "final_logit_softcapping")))
        k->final_softcap = 0;
    QH_TRY(cfg_optional_positive(c, "query_pre_attn_scalar", 256.0, &qpas));
    k->attn_scale = 1.0 / sqrt(qpas);
    return QH_OK;
}

static int parse_llama(const config_src *c, qh_model_config *k, int *final_norm)
{
    qh_model_features *f = &k->features;
    QH_TRY(cfg_int(c, "intermediate_size", -1, 1, MAX_DIM, &k->ffn_dim));
    QH_TRY(cfg_int(c, "max_position_embeddings", 2048, 1, 1 << 24, &k->max_pos));
    QH_TRY(cfg_int(c, "num_key_value_heads", k->n_heads, 1, k->n_heads, &k->n_kv_heads));
    QH_TRY(cfg_int(c, "head_dim", k->hidden / k->n_heads, 1, MAX_DIM, &k->head_dim));
    QH_TRY(cfg_bool(c, "tie_word_embeddings", f->tied_head, &f->tied_head));
    QH_TRY(parse_act(c, f));
    QH_TRY(refuse_keys(c, f));
    if (k->n_heads % k->n_kv_heads)
        QH_ERROR(QH_ECONFIG, "%s: num_attention_heads %d is not a multiple of "
                 "num_key_value_heads %d", c->path, k->n_heads, k->n_kv_heads);
    double eps = 1e-6;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, "rms_norm_eps");
    if (v) QH_TRY(cfg_positive(c, v, "rms_norm_eps", &eps));
    QH_TRY(parse_rotary(c, k, 10000.0, 1.0));
    QH_TRY(parse_window(c, k));
    if (f->softcap) QH_TRY(parse_softcap(c, k));
    k->norm_eps = (float)eps;
    k->embed_dim = k->hidden;
    *final_norm = 1;
    return QH_OK;
}

/* GPT2Config: n_inner (null: 4 n_embd), n_positions, layer_norm_epsilon,
 * activation_function; scores scaled by 1/sqrt(head_dim) (scale_attn_weights
 * true, scale_attn_by_inverse_layer_idx false, no cross-attention, else
 * refused by name). */
static int parse_gpt2(const config_src *c, qh_model_config *k, int *final_norm)
{
    qh_model_features *f = &k->features;
    int scale = 1, inv_layer = 0, cross = 0;
    QH_TRY(cfg_int(c, "n_inner", 4 * k->hidden, 1, MAX_DIM, &k->ffn_dim));
    QH_TRY(cfg_int(c, "n_positions", 1024, 1, 1 << 24, &k->max_pos));
    QH_TRY(cfg_bool(c, "tie_word_embeddings", f->tied_head, &f->tied_head));
    QH_TRY(cfg_bool(c, "scale_attn_weights", 1, &scale));
    QH_TRY(cfg_bool(c, "scale_attn_by_inverse_layer_idx", 0, &inv_layer));
    QH_TRY(cfg_bool(c, "add_cross_attention", 0, &cross));
    if (!scale || inv_layer || cross)
        QH_ERROR(QH_ECONFIG, "%s: key \"%s\" is not supported", c->path,
                 !scale ? "scale_attn_weights" : inv_layer ? "scale_attn_by_inverse_layer_idx"
                                                           : "add_cross_attention");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c->root, "activation_function");
    const char *an = cJSON_IsString(a) ? a->valuestring : a ? "?" : "gelu_new";
    if (!strcmp(an, "gelu_new") || !strcmp(an, "gelu_pytorch_tanh")) f->act = QH_ACT_GELU_TANH;
    else if (!strcmp(an, "gelu")) f->act = QH_ACT_GELU;
    else QH_ERROR(QH_ECONFIG, "%s: activation_function \"%s\" is not supported (gelu_new, "
                  "gelu_pytorch_tanh, gelu)", c->path, an);
    QH_TRY(refuse_keys(c, f));
    if (k->hidden % k->n_heads)
        QH_ERROR(QH_ECONFIG, "%s: n_embd %d is not a multiple of n_head %d", c->path, k->hidden,
                 k->n_heads);
    double eps = 1e-5;
    QH_TRY(cfg_optional_positive(c, "layer_norm_epsilon", 1e-5, &eps));
    k->n_kv_heads = k->n_heads;
    k->head_dim = k->hidden / k->n_heads;
    k->norm_eps = (float)eps;
    k->embed_dim = k->hidden;
    *final_norm = 1;
    return QH_OK;
}

/* GPTNeoXConfig: intermediate_size, layer_norm_eps, hidden_act, rotary_pct
 * (or partial_rotary_factor, in rope_parameters too; default 0.25),
 * rotary_emb_base (or rope_theta; default 10000), use_parallel_residual. */
static int parse_neox(const config_src *c, qh_model_config *k, int *final_norm)
{
    qh_model_features *f = &k->features;
    QH_TRY(cfg_int(c, "intermediate_size", -1, 1, MAX_DIM, &k->ffn_dim));
    QH_TRY(cfg_int(c, "max_position_embeddings", 2048, 1, 1 << 24, &k->max_pos));
    QH_TRY(cfg_bool(c, "tie_word_embeddings", f->tied_head, &f->tied_head));
    QH_TRY(cfg_bool(c, "use_parallel_residual", f->parallel_residual, &f->parallel_residual));
    QH_TRY(cfg_string_is(c, "hidden_act", act_name(f->act)));
    QH_TRY(refuse_keys(c, f));
    if (k->hidden % k->n_heads)
        QH_ERROR(QH_ECONFIG, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                 c->path, k->hidden, k->n_heads);
    k->n_kv_heads = k->n_heads;
    k->head_dim = k->hidden / k->n_heads;
    double eps = 1e-5, pct = 0.25, base = 10000.0;
    QH_TRY(cfg_optional_positive(c, "layer_norm_eps", 1e-5, &eps));
    QH_TRY(cfg_optional_positive(c, "rotary_pct", 0.25, &pct));
    QH_TRY(cfg_optional_positive(c, "rotary_emb_base", 10000.0, &base));
    QH_TRY(parse_rotary(c, k, base, pct));
    k->norm_eps = (float)eps;
    k->embed_dim = k->hidden;
    *final_norm = 1;
    return QH_OK;
}

/* The row's always-biased linears plus those its config.json switches turn on,
 * among the linears the layout has. */
static int parse_biases(const config_src *c, const qh_family *fam, qh_model_features *f)
{
    unsigned has = 0;
    for (int kind = 0; kind < QH_LIN_MAX; kind++)
        if (fam->layout->lin[kind].name) has |= QH_LIN_BIT(kind);
    for (size_t i = 0; i < sizeof fam->bias_keys / sizeof *fam->bias_keys; i++) {
        const qh_bias_key *b = &fam->bias_keys[i];
        int on = 0;
        if (!b->key) continue;
        QH_TRY(cfg_bool(c, b->key, b->def, &on));
        if (on) f->bias |= b->kinds;
    }
    f->bias &= has;
    return QH_OK;
}

static int parse_config(const char *path, const cJSON *root, qh_model_config *k, int *final_norm)
{
    config_src c = { root, path };
    if (!cJSON_IsObject(root)) QH_ERROR(QH_ECONFIG, "%s: not a JSON object", path);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt))
        QH_ERROR(QH_ECONFIG, "%s: required key \"model_type\" is missing", path);
    const qh_family *fam = qh_family_find(mt->valuestring);
    if (!fam) {
        char list[256];
        qh_family_list(list, sizeof list);
        QH_ERROR(QH_ECONFIG, "%s: unsupported model_type \"%s\" (supported: %s)", path,
                 mt->valuestring, list);
    }
    snprintf(k->model_type, sizeof k->model_type, "%s", fam->model_type);
    k->family = fam;
    k->features = fam->features;
    QH_TRY(parse_common(&c, k, fam->layout->config));
    switch (fam->layout->config) {
    case QH_CONFIG_OPT:  QH_TRY(parse_opt(&c, k, final_norm)); break;
    case QH_CONFIG_GPT2: QH_TRY(parse_gpt2(&c, k, final_norm)); break;
    case QH_CONFIG_NEOX: QH_TRY(parse_neox(&c, k, final_norm)); break;
    default:             QH_TRY(parse_llama(&c, k, final_norm)); break;
    }
    return parse_biases(&c, fam, &k->features);
}

/* ---- tensor plan ----------------------------------------------------------------- */

typedef struct plan_slot {
    const qh_st_file *file;
    const qh_st_tensor *t;
    float **dst;                     /* where the converted pointer goes */
    size_t offset;                   /* in floats, into the storage buffer */
    float *view;                     /* the tensor in the mapping, or NULL: converted into buf */
    int block;                       /* the decoder block it belongs to, -1 for the ends */
} plan_slot;

typedef struct {
    const qh_st_set *set;
    const char *where;               /* the file(s) named in "not found" errors */
    int try_model_prefix;            /* names may start with the layout's prefix or not */
    const char *prefix;              /* "model.", "transformer.", ... */
    int transposed;                  /* the layout's linears are stored (in, out) */
    plan_slot *slots;
    size_t n, cap;
    size_t total_floats, n_params;
    int block;                       /* the block being planned, -1 outside the blocks */
    size_t align;                    /* floats each slot is aligned to */
    int spill;                       /* nothing mapped in place: every tensor into buf */
} loader;

#define ALIGN_FLOATS 16              /* 64-byte alignment for every tensor */

/* Finds base (with "model." prefix or without), checks dtype and shape
 * (d1 == 0: a vector), plans its slot.  Optional tensors may be absent. */
static int want(loader *L, const char *base, int d0, int d1, float **dst, char *found_name,
                size_t found_size, int optional)
{
    char name[256];
    const qh_st_file *f = NULL;
    const qh_st_tensor *t = NULL;
    if (L->try_model_prefix) {
        QH_TRY(qh_path_format(name, sizeof name, "tensor name", "%s%s", L->prefix, base));
        t = qh_st_set_find(L->set, name, &f);
    }
    if (!t) t = qh_st_set_find(L->set, base, &f);
    *dst = NULL;
    if (!t) {
        if (optional) return QH_OK;
        QH_ERROR(QH_EINVAL, "%s: missing tensor %s%s%s%s%s", L->where,
                 L->try_model_prefix ? L->prefix : "", base,
                 L->try_model_prefix ? " (or without \"" : "",
                 L->try_model_prefix ? L->prefix : "", L->try_model_prefix ? "\")" : "");
    }
    if (t->dtype != QH_ST_F32 && t->dtype != QH_ST_F16 && t->dtype != QH_ST_BF16)
        QH_ERROR(QH_EINVAL, "%s: tensor %s: dtype %s not supported (F32, F16, BF16)",
                 f->path, t->name, qh_st_dtype_name(t->dtype));
    int ok = d1 ? t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1
                : t->ndim == 1 && t->shape[0] == d0;
    if (!ok) {
        char got[128] = "";
        for (int i = 0, len = 0; i < t->ndim && len < 100; i++)
            len += snprintf(got + len, sizeof got - (size_t)len, "%s%lld", i ? ", " : "",
                            (long long)t->shape[i]);
        if (d1) QH_ERROR(QH_EBADLEN, "%s: tensor %s has shape [%s], config.json implies [%d, %d]",
                         f->path, t->name, got, d0, d1);
        QH_ERROR(QH_EBADLEN, "%s: tensor %s has shape [%s], config.json implies [%d]",
                 f->path, t->name, got, d0);
    }
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 64;
        plan_slot *grown = realloc(L->slots, cap * sizeof *grown);
        if (!grown) QH_ERROR(QH_ENOMEM, "tensor plan of %zu entries", cap);
        L->slots = grown;
        L->cap = cap;
    }
    L->slots[L->n++] = (plan_slot){ f, t, dst, 0, NULL, L->block };
    L->n_params += t->numel;
    if (found_name) {
        size_t len = strlen(t->name) - (strlen(t->name) > 7 ? 7 : 0);   /* drop ".weight" */
        QH_TRY(qh_path_format(found_name, found_size, "linear name", "%.*s", (int)len, t->name));
    }
    return QH_OK;
}

/* want() of "<base>.<suffix>" ("weight" or "bias"). */
static int want_part(loader *L, const char *base, const char *suffix, int d0, int d1, float **dst,
                     char *found_name, size_t found_size)
{
    char name[256];
    QH_TRY(qh_path_format(name, sizeof name, "tensor name", "%s.%s", base, suffix));
    return want(L, name, d0, d1, dst, found_name, found_size, 0);
}

static int want_linear(loader *L, const char *base, int out, int in, int bias, qh_linear *lin)
{
    if (L->transposed)                /* Conv1D: stored (in, out) */
        QH_TRY(want_part(L, base, "weight", in, out, &lin->W, lin->name, sizeof lin->name));
    else
        QH_TRY(want_part(L, base, "weight", out, in, &lin->W, lin->name, sizeof lin->name));
    lin->out = out;
    lin->in = in;
    return bias ? want_part(L, base, "bias", out, 0, &lin->b, NULL, 0) : QH_OK;
}

/* A norm's weight (dim wide), and its bias for LayerNorm. */
static int want_norm_dim(loader *L, const qh_model *m, const char *base, int dim, qh_norm *n)
{
    QH_TRY(want_part(L, base, "weight", dim, 0, &n->w, NULL, 0));
    if (m->cfg.features.norm != QH_NORM_LAYER) return QH_OK;
    return want_part(L, base, "bias", dim, 0, &n->b, NULL, 0);
}

static int want_norm(loader *L, const qh_model *m, const char *base, qh_norm *n)
{
    return want_norm_dim(L, m, base, m->cfg.hidden, n);
}

static void linear_shape(const qh_model_config *k, int kind, int *out, int *in);

/* A fused tensor holding the rows of linears kinds[0..n) one after another
 * (per head for QH_FUSE_HEADS): planned whole into the first kind's W, and its
 * bias, when the kinds have biases, into the first kind's b (after
 * conversion, arrange_linears reorders and points the others at their rows);
 * each kind's name is "<tensor>[<short name>]". */
static int want_fused(loader *L, qh_model *m, qh_block *b, int layer, const char *fused,
                      const int *kinds, int n)
{
    const qh_model_config *k = &m->cfg;
    const qh_layout *ly = k->family->layout;
    char base[160], found[96];
    int rows = 0, in = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        int out;
        linear_shape(k, kinds[i], &out, &in);
        rows += out;
        nb += !!(k->features.bias & QH_LIN_BIT(kinds[i]));
    }
    if (nb && nb != n)
        QH_ERROR(QH_ECONFIG, "%s: biases on some but not all of the fused %s are not supported",
                 m->dir, fused);
    QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, layer, fused));
    if (L->transposed)
        QH_TRY(want_part(L, base, "weight", in, rows, &b->lin[kinds[0]].W, found, sizeof found));
    else
        QH_TRY(want_part(L, base, "weight", rows, in, &b->lin[kinds[0]].W, found, sizeof found));
    if (nb) QH_TRY(want_part(L, base, "bias", rows, 0, &b->lin[kinds[0]].b, NULL, 0));
    for (int i = 0; i < n; i++) {
        qh_linear *lin = &b->lin[kinds[i]];
        linear_shape(k, kinds[i], &lin->out, &lin->in);
        const char *sn = qh_model_linear_short_name(m, kinds[i]);
        QH_TRY(qh_path_format(lin->name, sizeof lin->name, "linear name", "%s[%.*s]", found,
                              (int)strcspn(sn, "_"), sn));
    }
    return QH_OK;
}

/* The fused groups of a layout: g = 0 q/k/v, g = 1 gate/up; 0 when absent. */
static int fused_group(const qh_layout *ly, int g, const int **kinds)
{
    static const int qkv[] = { QH_LIN_Q, QH_LIN_K, QH_LIN_V }, gu[] = { QH_LIN_GATE, QH_LIN_UP };
    if (ly->fuse == QH_FUSE_NONE) return 0;
    *kinds = g ? gu : qkv;
    if (g == 0) return ly->qkv_fused ? 3 : 0;
    return ly->gate_up_fused ? 2 : 0;
}

/* Whether `kind` is stored in a fused tensor of the layout. */
static int kind_is_fused(const qh_layout *ly, int kind)
{
    for (int g = 0; g < 2; g++) {
        const int *kinds;
        int n = fused_group(ly, g, &kinds);
        for (int i = 0; i < n; i++)
            if (kinds[i] == kind) return 1;
    }
    return 0;
}

/* x (rows x cols, row-major) transposed in place through tmp (rows * cols). */
static void transpose_in_place(float *x, size_t rows, size_t cols, float *tmp)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) tmp[j * rows + i] = x[i * cols + j];
    memcpy(x, tmp, rows * cols * sizeof(float));
}

void qh_fused_heads_permute(float *x, size_t n_heads, size_t hd, size_t cols, int to_heads,
                            float *tmp)
{
    size_t blk = hd * cols, n = 3 * n_heads * blk;
    memcpy(tmp, x, n * sizeof(float));
    for (size_t h = 0; h < n_heads; h++)
        for (size_t p = 0; p < 3; p++) {
            size_t inter = (h * 3 + p) * blk, grouped = (p * n_heads + h) * blk;
            memcpy(x + (to_heads ? inter : grouped), tmp + (to_heads ? grouped : inter),
                   blk * sizeof(float));
        }
}

/* Floats of one block's linears: the scratch arrange_data needs (0 for a
 * layout with nothing to arrange). */
static size_t arrange_floats(const qh_model *m)
{
    const qh_layout *ly = m->cfg.family->layout;
    size_t most = 0;
    if (!ly->transposed && ly->fuse == QH_FUSE_NONE) return 0;
    for (int kind = 0; kind < QH_LIN_MAX; kind++)
        if (m->blocks[0].lin[kind].W)
            most += (size_t)m->blocks[0].lin[kind].out * (size_t)m->blocks[0].lin[kind].in;
    return most ? most : 1;
}

/* After block l's conversion: Conv1D weights transposed to (out, in) and
 * GPT-NeoX's interleaved q/k/v rows grouped by kind, through tmp
 * (arrange_floats). */
static void arrange_data(qh_model *m, int l, float *tmp)
{
    const qh_layout *ly = m->cfg.family->layout;
    qh_block *b = &m->blocks[l];
    /* one stored tensor: a kind alone, or a fused group at its first kind */
    for (int kind = 0; kind < QH_LIN_MAX && ly->transposed; kind++) {
        if (!b->lin[kind].W || (kind_is_fused(ly, kind) && kind != QH_LIN_Q &&
                                kind != QH_LIN_GATE))
            continue;
        size_t rows = (size_t)b->lin[kind].out;
        if (kind_is_fused(ly, kind)) {
            const int *kinds;
            int n = fused_group(ly, kind == QH_LIN_Q ? 0 : 1, &kinds);
            rows = 0;
            for (int i = 0; i < n; i++) rows += (size_t)b->lin[kinds[i]].out;
        }
        transpose_in_place(b->lin[kind].W, (size_t)b->lin[kind].in, rows, tmp);
    }
    if (ly->fuse == QH_FUSE_HEADS) {
        size_t nh = (size_t)m->cfg.n_heads, hd = (size_t)m->cfg.head_dim;
        qh_fused_heads_permute(b->lin[QH_LIN_Q].W, nh, hd, (size_t)b->lin[QH_LIN_Q].in, 0, tmp);
        if (b->lin[QH_LIN_Q].b) qh_fused_heads_permute(b->lin[QH_LIN_Q].b, nh, hd, 1, 0, tmp);
    }
}

/* The fused kinds' W (and b) pointed at their rows of the first kind's, in
 * every block (pointers only: valid before a spilled block is converted). */
static void arrange_pointers(qh_model *m)
{
    const qh_layout *ly = m->cfg.family->layout;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int g = 0; g < 2; g++) {
            const int *kinds;
            int n = fused_group(ly, g, &kinds);
            qh_block *b = &m->blocks[l];
            for (int i = 1; i < n; i++) {
                const qh_linear *prev = &b->lin[kinds[i - 1]];
                b->lin[kinds[i]].W = prev->W + (size_t)prev->out * prev->in;
                if (prev->b) b->lin[kinds[i]].b = prev->b + prev->out;
            }
        }
}

/* arrange_data on every block converted at load (all, unless spilled). */
static int arrange_linears(qh_model *m)
{
    model_storage *ms = m->storage;
    size_t n = arrange_floats(m);
    arrange_pointers(m);
    if (!n) return QH_OK;
    float *tmp = malloc(n * sizeof(float));
    if (!tmp) QH_ERROR(QH_ENOMEM, "%s: scratch of %zu floats", m->dir, n);
    if (ms->ready) {                     /* spilled: blocks arrange as they are converted */
        ms->arrange_tmp = tmp;
        return QH_OK;
    }
    for (int l = 0; l < m->cfg.n_layers; l++) arrange_data(m, l, tmp);
    free(tmp);
    return QH_OK;
}

/* (out, in) of linear `kind` from the config's shapes. */
static void linear_shape(const qh_model_config *k, int kind, int *out, int *in)
{
    int h = k->hidden, q = k->n_heads * k->head_dim, kv = k->n_kv_heads * k->head_dim;
    switch (kind) {
    case QH_LIN_Q:    *out = q;  *in = h; break;
    case QH_LIN_K:
    case QH_LIN_V:    *out = kv; *in = h; break;
    case QH_LIN_O:    *out = h;  *in = q; break;
    case QH_LIN_DOWN: *out = h;  *in = k->ffn_dim; break;
    default:          *out = k->ffn_dim; *in = h; break;      /* gate, up */
    }
}

/* Embeddings, positions and projections, final norm, in the layout's names. */
static int plan_ends(loader *L, qh_model *m, int final_norm)
{
    const qh_model_config *k = &m->cfg;
    const qh_layout *ly = k->family->layout;
    int h = k->hidden;
    QH_TRY(want_part(L, ly->embed_tokens, "weight", k->vocab_size, k->embed_dim, &m->embed_tokens,
                     NULL, 0));
    if (k->features.pos == QH_POS_LEARNED)
        QH_TRY(want_part(L, ly->embed_pos, "weight", k->max_pos + k->features.pos_offset, h,
                         &m->embed_pos, NULL, 0));
    if (k->embed_dim != h) {
        if (!ly->project_in || !ly->project_out)
            QH_ERROR(QH_ECONFIG, "%s: embedding width %d differs from hidden_size %d and the %s "
                     "layout has no projections", m->dir, k->embed_dim, h, ly->name);
        QH_TRY(want_linear(L, ly->project_in, h, k->embed_dim, 0, &m->project_in));
        QH_TRY(want_linear(L, ly->project_out, k->embed_dim, h, 0, &m->project_out));
    }
    return final_norm ? want_norm(L, m, ly->final_norm, &m->final_norm) : QH_OK;
}

/* Every block's norms and linears (in stable-number order). */
static int plan_blocks(loader *L, qh_model *m)
{
    const qh_model_config *k = &m->cfg;
    const qh_layout *ly = k->family->layout;
    char base[160];
    for (int i = 0; i < k->n_layers; i++) {
        qh_block *b = &m->blocks[i];
        L->block = i;
        QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, i,
                              ly->attn_norm));
        QH_TRY(want_norm(L, m, base, &b->attn_norm));
        QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, i,
                              ly->mlp_norm));
        QH_TRY(want_norm(L, m, base, &b->mlp_norm));
        if (k->features.qk_norm) {
            QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, i,
                                  ly->q_norm));
            QH_TRY(want_norm_dim(L, m, base, k->head_dim, &b->q_norm));
            QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, i,
                                  ly->k_norm));
            QH_TRY(want_norm_dim(L, m, base, k->head_dim, &b->k_norm));
        }
        if (k->features.sandwich_norm) {
            QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, i,
                                  ly->attn_post_norm));
            QH_TRY(want_norm(L, m, base, &b->attn_post_norm));
            QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, i,
                                  ly->mlp_post_norm));
            QH_TRY(want_norm(L, m, base, &b->mlp_post_norm));
        }
        for (int g = 0; g < 2; g++) {
            const int *kinds;
            int n = fused_group(ly, g, &kinds);
            if (n) QH_TRY(want_fused(L, m, b, i, g ? ly->gate_up_fused : ly->qkv_fused, kinds, n));
        }
        for (int j = 0; j < qh_model_n_linear(m); j++) {
            int kind = qh_model_linear_at(m, j), out, in;
            if (kind_is_fused(ly, kind)) continue;
            linear_shape(k, kind, &out, &in);
            QH_TRY(qh_path_format(base, sizeof base, "tensor name", "%s.%d.%s", ly->layers, i,
                                  ly->lin[kind].name));
            QH_TRY(want_linear(L, base, out, in, !!(k->features.bias & QH_LIN_BIT(kind)),
                               &b->lin[kind]));
        }
    }
    L->block = -1;
    return QH_OK;
}

/* An untied output head is at top level ("lm_head.weight") in every layout. */
static int plan_head(loader *L, qh_model *m)
{
    if (m->cfg.features.tied_head) return QH_OK;
    int saved = L->try_model_prefix;
    L->try_model_prefix = 0;
    int st = want_part(L, m->cfg.family->layout->lm_head, "weight", m->cfg.vocab_size,
                       m->cfg.embed_dim, &m->lm_head, NULL, 0);
    L->try_model_prefix = saved;
    return st;
}

/* The floats slot s takes in the storage buffer: its elements rounded up to
 * the loader's alignment. */
static size_t slot_floats(const loader *L, const plan_slot *s)
{
    return (s->t->numel + L->align - 1) / L->align * L->align;
}

/* Each slot mapped in place when the file allows it (qh_st_f32_view) and the
 * model is not spilled, else given its offset, aligned to L->align floats, in
 * the storage buffer; the buffer's size in L->total_floats, the mapped
 * elements in *mapped. */
static void place_all(loader *L, size_t *mapped)
{
    *mapped = 0;
    L->total_floats = 0;
    for (size_t i = 0; i < L->n; i++) {
        plan_slot *s = &L->slots[i];
        s->view = L->spill ? NULL : qh_st_f32_view(s->file, s->t);
        if (s->view) { *mapped += s->t->numel; continue; }
        s->offset = L->total_floats;
        L->total_floats += slot_floats(L, s);
    }
}

/* Each spilled block's range of the buffer (its slots are planned one after
 * another, each starting on a page). */
static int spill_ranges(const loader *L, model_storage *ms, int n_layers)
{
    ms->block_begin = calloc((size_t)n_layers, sizeof *ms->block_begin);
    ms->block_end = calloc((size_t)n_layers, sizeof *ms->block_end);
    if (!ms->block_begin || !ms->block_end) QH_ERROR(QH_ENOMEM, "block ranges of %d blocks", n_layers);
    for (int l = 0; l < n_layers; l++) ms->block_begin[l] = SIZE_MAX;
    for (size_t i = 0; i < L->n; i++) {
        const plan_slot *s = &L->slots[i];
        if (s->block < 0) continue;
        size_t end = s->offset + slot_floats(L, s);
        if (s->offset < ms->block_begin[s->block]) ms->block_begin[s->block] = s->offset;
        if (end > ms->block_end[s->block]) ms->block_end[s->block] = end;
    }
    for (int l = 0; l < n_layers; l++)
        if (ms->block_begin[l] == SIZE_MAX) ms->block_begin[l] = ms->block_end[l] = 0;
    return QH_OK;
}

/* Drops floats [begin, end) of a spilled buffer from the process's memory:
 * the pages stay in the scratch file (written back by the system when it
 * needs the memory) and come back on the next access. */
static void spill_release(const model_storage *ms, size_t begin, size_t end)
{
    if (ms->buf_bytes && end > begin)
        (void)madvise(ms->buf + begin, (end - begin) * sizeof(float), MADV_DONTNEED);
}

/* The storage buffer: heap memory, or with scratch_dir a shared mapping of an
 * unnamed file there, its blocks reserved up front so that a full disk is an
 * error here and not a SIGBUS later. */
static int storage_alloc(model_storage *ms, size_t floats, const char *scratch_dir, const char *dir)
{
    size_t bytes = (floats ? floats : ALIGN_FLOATS) * sizeof(float);
    if (!scratch_dir) {
        ms->buf = aligned_alloc(64, bytes);
        if (!ms->buf) QH_ERROR(QH_ENOMEM, "%s: %zu floats of weights", dir, floats);
        return QH_OK;
    }
    char path[1100];                     /* a named file, unlinked at once */
    QH_TRY(qh_path_format(path, sizeof path, "scratch file", "%s/qh-weights-XXXXXX", scratch_dir));
    int fd = mkstemp(path);
    if (fd >= 0) unlink(path);
    if (fd < 0)
        QH_ERROR(QH_EIO, "%s: cannot create the weights' scratch file there: %s", scratch_dir,
                 strerror(errno));
    int err = posix_fallocate(fd, 0, (off_t)bytes);
    void *p = err ? MAP_FAILED : mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (!err && p == MAP_FAILED) err = errno;
    close(fd);                           /* the mapping keeps the file */
    if (err)
        QH_ERROR(QH_EIO, "%s: cannot reserve %.2f GiB of scratch for the weights of %s: %s",
                 scratch_dir, (double)bytes / (1 << 30), dir, strerror(err));
    ms->buf = p;
    ms->buf_bytes = bytes;
    return QH_OK;
}

/* Slot s converted (or checked, when mapped in place) into its place. */
static int convert_slot(const plan_slot *s, const model_storage *ms)
{
    float *dst = s->view;
    if (!dst) {
        dst = ms->buf + s->offset;
        QH_TRY(qh_st_read_f32(s->file, s->t, dst));
        qh_st_release(s->file, s->t);            /* the source pages are not needed again */
    }
    for (size_t j = 0; j < s->t->numel; j++)
        if (!isfinite(dst[j]))
            QH_ERROR(QH_ENAN, "%s: tensor %s: element %zu is %s (weights must be finite)",
                     s->file->path, s->t->name, j, isnan(dst[j]) ? "NaN" : "Inf");
    return QH_OK;
}

/* Every slot converted, or for a spilled model only the ends: a decoder
 * block's slots go to ms->pending, their pointers already set into the
 * block's (not yet written) pages, and are converted by
 * qh_model_acquire_block when the pipeline reaches the block. */
static int convert_all(loader *L, model_storage *ms, int n_layers)
{
    if (L->spill) {
        ms->pending = malloc((L->n ? L->n : 1) * sizeof *ms->pending);
        ms->ready = calloc((size_t)(n_layers > 0 ? n_layers : 1), 1);
        if (!ms->pending || !ms->ready) QH_ERROR(QH_ENOMEM, "spilled blocks' plan");
    }
    for (size_t i = 0; i < L->n; i++) {
        const plan_slot *s = &L->slots[i];
        *s->dst = s->view ? s->view : ms->buf + s->offset;
        if (L->spill && s->block >= 0) ms->pending[ms->n_pending++] = *s;
        else QH_TRY(convert_slot(s, ms));
    }
    return QH_OK;
}

/* Plans, maps or converts every tensor of set into m; on success the set
 * passes to m's storage when a tensor points into it (*set is then NULL). */
static int load_weights(qh_model *m, qh_st_set **set_p, int final_norm, const char *scratch_dir)
{
    const qh_st_set *set = *set_p;
    const qh_layout *ly = m->cfg.family->layout;
    long page = sysconf(_SC_PAGESIZE);
    loader L = { .set = set, .try_model_prefix = 1, .prefix = ly->prefix ? ly->prefix : "model.",
                 .transposed = ly->transposed, .block = -1, .align = ALIGN_FLOATS,
                 .spill = scratch_dir != NULL };
    if (L.spill && page > 0 && (size_t)page / sizeof(float) > L.align)
        L.align = (size_t)page / sizeof(float);  /* whole pages: a block is released alone */
    L.where = set->index_path[0] ? set->index_path : set->files[0]->path;
    int st = plan_ends(&L, m, final_norm);
    if (st == QH_OK) st = plan_blocks(&L, m);
    if (st == QH_OK) st = plan_head(&L, m);
    if (st != QH_OK) goto cleanup;
    model_storage *ms = m->storage;
    place_all(&L, &ms->n_mapped);
    if (ms->n_mapped || L.spill) {    /* from here the model owns the mappings (spilled:
                                         its blocks are converted from them later) */
        ms->set = *set_p;
        *set_p = NULL;
    }
    if ((st = storage_alloc(ms, L.total_floats, scratch_dir, m->dir)) != QH_OK) goto cleanup;
    if (L.spill && (st = spill_ranges(&L, ms, m->cfg.n_layers)) != QH_OK) goto cleanup;
    if ((st = convert_all(&L, ms, m->cfg.n_layers)) != QH_OK) goto cleanup;
    ms->n_params = L.n_params;
    if ((st = arrange_linears(m)) != QH_OK) goto cleanup;
    if (m->cfg.features.tied_head) m->lm_head = m->embed_tokens;
cleanup:
    free(L.slots);
    return st;
}

/* ---- public API ------------------------------------------------------------------- */

static int load_config(qh_model *m, int *final_norm)
{
    char path[1100];
    QH_TRY(qh_path_format(path, sizeof path, "config path", "%s/config.json", m->dir));
    cJSON *root = NULL;
    int st = qh_st_json_load(path, &root);
    if (st == QH_EINVAL) st = QH_ECONFIG;            /* config.json not JSON: a config error */
    if (st == QH_OK) st = parse_config(path, root, &m->cfg, final_norm);
    cJSON_Delete(root);
    return st;
}

int qh_model_load(const char *dir, qh_model **out)
{
    return qh_model_load_with(dir, NULL, out);
}

int qh_model_load_with(const char *dir, const qh_model_load_opts *opts, qh_model **out)
{
    *out = NULL;
    qh_st_set *set = NULL;
    qh_model *m = calloc(1, sizeof *m);
    if (!m) QH_ERROR(QH_ENOMEM, "%s", dir);
    int st = QH_OK, final_norm = 0;
    m->storage = calloc(1, sizeof(model_storage));
    if (!m->storage) { QH_SET_ERROR(st, QH_ENOMEM, "%s", dir); goto cleanup; }
    if ((st = qh_path_format(m->dir, sizeof m->dir, "model folder", "%s", dir)) != QH_OK)
        goto cleanup;
    if ((st = qh_st_set_open(dir, &set)) != QH_OK) goto cleanup;
    if ((st = load_config(m, &final_norm)) != QH_OK) goto cleanup;
    m->blocks = calloc((size_t)m->cfg.n_layers, sizeof *m->blocks);
    if (!m->blocks) { QH_SET_ERROR(st, QH_ENOMEM, "%s: %d blocks", dir, m->cfg.n_layers); goto cleanup; }
    st = load_weights(m, &set, final_norm, opts ? opts->scratch_dir : NULL);
cleanup:
    qh_st_set_close(set);
    if (st != QH_OK) { qh_model_free(m); return st; }
    *out = m;
    return QH_OK;
}

int qh_model_config_load(const char *dir, qh_model_config *cfg)
{
    qh_model *m = calloc(1, sizeof *m);
    if (!m) QH_ERROR(QH_ENOMEM, "%s", dir);
    int final_norm = 0;
    int st = qh_path_format(m->dir, sizeof m->dir, "model folder", "%s", dir);
    if (st == QH_OK) st = load_config(m, &final_norm);
    if (st == QH_OK) *cfg = m->cfg;
    free(m);
    return st;
}

void qh_model_free(qh_model *m)
{
    if (!m) return;
    model_storage *ms = m->storage;
    if (ms) {
        if (ms->buf_bytes) munmap(ms->buf, ms->buf_bytes);   /* the unnamed file goes with it */
        else free(ms->buf);
        free(ms->block_begin);
        free(ms->block_end);
        free(ms->pending);
        free(ms->ready);
        free(ms->arrange_tmp);
        qh_st_set_close(ms->set);     /* unmaps: after this no weight pointer is valid */
    }
    free(ms);
    free(m->rot_mem[0]);
    free(m->rot_mem[1]);
    free(m->blocks);
    free(m);
}

int qh_model_layer_window(const qh_model_config *c, int layer)
{
    if (c->sliding_window <= 0 || layer < 0 || layer >= c->n_layers || layer >= QH_MAX_LAYERS)
        return 0;
    return (c->window_layers[layer / 64] >> (layer % 64)) & 1 ? c->sliding_window : 0;
}

int qh_model_n_linear(const qh_model *m)
{
    int n = 0;
    for (int kind = 0; kind < QH_LIN_MAX; kind++)
        n += m->cfg.family->layout->lin[kind].name != NULL;
    return n;
}

const char *qh_model_linear_short_name(const qh_model *m, int kind)
{
    if (kind < 0 || kind >= QH_LIN_MAX) return NULL;
    const char *name = m->cfg.family->layout->lin[kind].name;
    if (!name) return NULL;
    const char *dot = strrchr(name, '.');          /* "mlp.up_proj" -> "up_proj" */
    return dot ? dot + 1 : name;
}

int qh_model_linear_number(const qh_model *m, int kind)
{
    if (kind < 0 || kind >= QH_LIN_MAX) return -1;
    const qh_family_linear *l = &m->cfg.family->layout->lin[kind];
    return l->name ? l->number : -1;
}

int qh_model_linear_at(const qh_model *m, int i)
{
    for (int kind = 0; kind < QH_LIN_MAX; kind++)
        if (qh_model_linear_number(m, kind) == i) return kind;
    return -1;
}

uint32_t qh_model_linear_key(const qh_model *m, int layer, int kind)
{
    int number = qh_model_linear_number(m, kind);
    QH_ASSERT(layer >= 0 && number >= 0);
    return (uint32_t)layer * 8u + (uint32_t)number;
}

void qh_model_release_block(const qh_model *m, int layer)
{
    const model_storage *ms = m->storage;
    if (!ms || !ms->block_begin || layer < 0 || layer >= m->cfg.n_layers) return;
    spill_release(ms, ms->block_begin[layer], ms->block_end[layer]);
}

int qh_model_acquire_block(const qh_model *m, int layer)
{
    model_storage *ms = m->storage;
    if (!ms || !ms->ready || layer < 0 || layer >= m->cfg.n_layers || ms->ready[layer])
        return QH_OK;
    for (size_t i = 0; i < ms->n_pending; i++)
        if (ms->pending[i].block == layer) QH_TRY(convert_slot(&ms->pending[i], ms));
    if (ms->arrange_tmp) arrange_data((qh_model *)m, layer, ms->arrange_tmp);
    ms->ready[layer] = 1;
    return QH_OK;
}

int qh_model_acquire_all(const qh_model *m)
{
    for (int l = 0; l < m->cfg.n_layers; l++) {
        QH_TRY(qh_model_acquire_block(m, l));
        qh_model_release_block(m, l);
    }
    return QH_OK;
}

int qh_model_spilled(const qh_model *m)
{
    return m->storage && ((const model_storage *)m->storage)->buf_bytes > 0;
}

size_t qh_model_n_params(const qh_model *m)
{
    return ((const model_storage *)m->storage)->n_params;
}

size_t qh_model_n_mapped_params(const qh_model *m)
{
    return ((const model_storage *)m->storage)->n_mapped;
}

size_t qh_model_n_linear_params(const qh_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->cfg.n_layers; i++)
        for (int k = 0; k < QH_LIN_MAX; k++)
            if (m->blocks[i].lin[k].W) n += (size_t)m->blocks[i].lin[k].out * m->blocks[i].lin[k].in;
    return n;
}
