/* fuzz_model_config.c -- a model folder's config.json (model/model.h): the
 * loader parses it, picks the family row, and checks every tensor of a tiny
 * valid checkpoint against the shapes the config implies.  Each input is
 * written as config.json next to a fixed model.safetensors: OPT's tensors
 * when the input names "opt", Llama's otherwise (vocab 16, hidden 8, 2
 * heads, 1 layer, ffn 16, 16 positions; Llama with 1 key/value head, an
 * untied head and Qwen2's q/k/v biases), so a config matching them loads
 * and the fuzzer can explore from there.  Seeds:
 * tests/fuzz/corpus/model_config/ (tiny configs, the test models' ones). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "model/model.h"
#include "model/safetensors.h"

typedef struct { const char *name; int d0, d1; } tensor_spec;   /* d1 0: a vector */

#define V 16
#define H 8
#define F 16
#define P 16
#define KV 4                           /* Llama: 1 key/value head of head_dim 4 */

static const tensor_spec opt_tensors[] = {
    { "model.decoder.embed_tokens.weight", V, H },
    { "model.decoder.embed_positions.weight", P + 2, H },
    { "model.decoder.final_layer_norm.weight", H, 0 },
    { "model.decoder.final_layer_norm.bias", H, 0 },
    { "model.decoder.layers.0.self_attn.q_proj.weight", H, H },
    { "model.decoder.layers.0.self_attn.q_proj.bias", H, 0 },
    { "model.decoder.layers.0.self_attn.k_proj.weight", H, H },
    { "model.decoder.layers.0.self_attn.k_proj.bias", H, 0 },
    { "model.decoder.layers.0.self_attn.v_proj.weight", H, H },
    { "model.decoder.layers.0.self_attn.v_proj.bias", H, 0 },
    { "model.decoder.layers.0.self_attn.out_proj.weight", H, H },
    { "model.decoder.layers.0.self_attn.out_proj.bias", H, 0 },
    { "model.decoder.layers.0.self_attn_layer_norm.weight", H, 0 },
    { "model.decoder.layers.0.self_attn_layer_norm.bias", H, 0 },
    { "model.decoder.layers.0.fc1.weight", F, H }, { "model.decoder.layers.0.fc1.bias", F, 0 },
    { "model.decoder.layers.0.fc2.weight", H, F }, { "model.decoder.layers.0.fc2.bias", H, 0 },
    { "model.decoder.layers.0.final_layer_norm.weight", H, 0 },
    { "model.decoder.layers.0.final_layer_norm.bias", H, 0 },
};

static const tensor_spec llama_tensors[] = {
    { "model.embed_tokens.weight", V, H }, { "model.norm.weight", H, 0 },
    { "lm_head.weight", V, H },
    { "model.layers.0.input_layernorm.weight", H, 0 },
    { "model.layers.0.post_attention_layernorm.weight", H, 0 },
    { "model.layers.0.self_attn.q_proj.weight", H, H },
    { "model.layers.0.self_attn.k_proj.weight", KV, H },
    { "model.layers.0.self_attn.v_proj.weight", KV, H },
    { "model.layers.0.self_attn.o_proj.weight", H, H },
    /* Qwen2's q/k/v biases (Llama's loader ignores them) */
    { "model.layers.0.self_attn.q_proj.bias", H, 0 },
    { "model.layers.0.self_attn.k_proj.bias", KV, 0 },
    { "model.layers.0.self_attn.v_proj.bias", KV, 0 },
    { "model.layers.0.mlp.gate_proj.weight", F, H }, { "model.layers.0.mlp.up_proj.weight", F, H },
    { "model.layers.0.mlp.down_proj.weight", H, F },
};

/* Writes dir/model.safetensors holding the n tensors of spec (small values). */
static void write_weights(const char *dir, const tensor_spec *spec, size_t n)
{
    static float values[V * H * 4];
    for (size_t i = 0; i < sizeof values / sizeof *values; i++)
        values[i] = (float)(i % 7) * 0.125f - 0.375f;
    qh_st_write_tensor t[32];
    if (n > 32 || mkdir(dir, 0700) != 0) abort();
    for (size_t i = 0; i < n; i++)
        t[i] = (qh_st_write_tensor){ .name = spec[i].name, .dtype = QH_ST_F32,
                                     .ndim = spec[i].d1 ? 2 : 1,
                                     .shape = { spec[i].d0, spec[i].d1 }, .data = values };
    char path[1200];
    fuzz_path(path, sizeof path, dir, "model.safetensors");
    if (qh_st_write(path, t, n) != QH_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char opt_dir[1100], llama_dir[1100];
    if (!opt_dir[0]) {
        fuzz_path(opt_dir, sizeof opt_dir, fuzz_dir(), "opt");
        fuzz_path(llama_dir, sizeof llama_dir, fuzz_dir(), "llama");
        write_weights(opt_dir, opt_tensors, sizeof opt_tensors / sizeof *opt_tensors);
        write_weights(llama_dir, llama_tensors, sizeof llama_tensors / sizeof *llama_tensors);
    }
    static const char opt_type[] = "\"opt\"";
    int is_opt = 0;
    for (size_t i = 0; !is_opt && i + sizeof opt_type - 1 <= size; i++)
        is_opt = !memcmp(data + i, opt_type, sizeof opt_type - 1);
    const char *dir = is_opt ? opt_dir : llama_dir;
    char path[1200];
    fuzz_path(path, sizeof path, dir, "config.json");
    fuzz_write(path, data, size);
    qh_model *m = NULL;
    if (qh_model_load(dir, &m) == QH_OK) {
        /* what the loader promises the forward pass */
        const qh_model_config *k = &m->cfg;
        if (k->vocab_size <= 0 || k->hidden <= 0 || k->n_layers <= 0 || k->n_heads <= 0 ||
            k->n_kv_heads <= 0 || k->n_heads % k->n_kv_heads || !m->embed_tokens || !m->lm_head)
            abort();
        (void)qh_model_n_params(m);
    }
    qh_model_free(m);
    return 0;
}
