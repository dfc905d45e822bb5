/* family.c -- the table of model families (see family.h).
 *
 * To add a family whose checkpoints are named like an existing layout's, add
 * one row below; for a new layout, add a qh_layout (with stable numbers that
 * no other layout's results depend on) and say in the row which config.json
 * dialect (model.c) reads its shapes.
 */
#include "model/family.h"

#include <stdio.h>
#include <string.h>

/* OPTForCausalLM: fc1 is the MLP's up projection, fc2 its down projection. */
static const qh_layout opt_layout = {
    .name = "OPT", .config = QH_CONFIG_OPT,
    .embed_tokens = "decoder.embed_tokens", .embed_pos = "decoder.embed_positions",
    .project_in = "decoder.project_in", .project_out = "decoder.project_out",
    .final_norm = "decoder.final_layer_norm", .layers = "decoder.layers",
    .attn_norm = "self_attn_layer_norm", .mlp_norm = "final_layer_norm",
    .lin = {
        [QH_LIN_Q] = { "self_attn.q_proj", 0 }, [QH_LIN_K] = { "self_attn.k_proj", 1 },
        [QH_LIN_V] = { "self_attn.v_proj", 2 }, [QH_LIN_O] = { "self_attn.out_proj", 3 },
        [QH_LIN_UP] = { "fc1", 4 }, [QH_LIN_DOWN] = { "fc2", 5 },
    },
    .lm_head = "lm_head",
};

/* LlamaForCausalLM and the families that kept its names. */
static const qh_layout llama_layout = {
    .name = "Llama", .config = QH_CONFIG_LLAMA,
    .embed_tokens = "embed_tokens", .final_norm = "norm", .layers = "layers",
    .attn_norm = "input_layernorm", .mlp_norm = "post_attention_layernorm",
    .lin = {
        [QH_LIN_Q] = { "self_attn.q_proj", 0 }, [QH_LIN_K] = { "self_attn.k_proj", 1 },
        [QH_LIN_V] = { "self_attn.v_proj", 2 }, [QH_LIN_O] = { "self_attn.o_proj", 3 },
        [QH_LIN_GATE] = { "mlp.gate_proj", 4 }, [QH_LIN_DOWN] = { "mlp.down_proj", 5 },
        [QH_LIN_UP] = { "mlp.up_proj", 6 },
    },
    .lm_head = "lm_head",
    .q_norm = "self_attn.q_norm", .k_norm = "self_attn.k_norm",
};

/* Phi3ForCausalLM: Llama's names, but q/k/v in one qkv_proj and gate/up in
 * one gate_up_proj.  They are split on load into the kinds Q, K, V and GATE,
 * UP (rows of the fused tensors), so every method, key and results table
 * treats them as Llama's seven linears; --save-model writes the fused
 * tensors back. */
static const qh_layout phi3_layout = {
    .name = "Phi-3", .config = QH_CONFIG_LLAMA,
    .embed_tokens = "embed_tokens", .final_norm = "norm", .layers = "layers",
    .attn_norm = "input_layernorm", .mlp_norm = "post_attention_layernorm",
    .lin = {
        [QH_LIN_Q] = { "self_attn.q_proj", 0 }, [QH_LIN_K] = { "self_attn.k_proj", 1 },
        [QH_LIN_V] = { "self_attn.v_proj", 2 }, [QH_LIN_O] = { "self_attn.o_proj", 3 },
        [QH_LIN_GATE] = { "mlp.gate_proj", 4 }, [QH_LIN_DOWN] = { "mlp.down_proj", 5 },
        [QH_LIN_UP] = { "mlp.up_proj", 6 },
    },
    .lm_head = "lm_head",
    .fuse = QH_FUSE_ROWS, .qkv_fused = "self_attn.qkv_proj", .gate_up_fused = "mlp.gate_up_proj",
};

/* Gemma2ForCausalLM: Llama's names plus the sandwich norms.  Its
 * post_attention_layernorm is the norm of the attention output (Llama's is the
 * MLP's input norm, here pre_feedforward_layernorm). */
static const qh_layout gemma2_layout = {
    .name = "Gemma 2", .config = QH_CONFIG_LLAMA,
    .embed_tokens = "embed_tokens", .final_norm = "norm", .layers = "layers",
    .attn_norm = "input_layernorm", .mlp_norm = "pre_feedforward_layernorm",
    .attn_post_norm = "post_attention_layernorm", .mlp_post_norm = "post_feedforward_layernorm",
    .lin = {
        [QH_LIN_Q] = { "self_attn.q_proj", 0 }, [QH_LIN_K] = { "self_attn.k_proj", 1 },
        [QH_LIN_V] = { "self_attn.v_proj", 2 }, [QH_LIN_O] = { "self_attn.o_proj", 3 },
        [QH_LIN_GATE] = { "mlp.gate_proj", 4 }, [QH_LIN_DOWN] = { "mlp.down_proj", 5 },
        [QH_LIN_UP] = { "mlp.up_proj", 6 },
    },
    .lm_head = "lm_head",
};

/* GPT2LMHeadModel: Conv1D linears stored (in, out), transposed on load; q, k
 * and v are the column blocks of attn.c_attn (rows once transposed), split on
 * load into the kinds Q, K, V ("...c_attn[q]").  fc is UP, its c_proj DOWN. */
static const qh_layout gpt2_layout = {
    .name = "GPT-2", .config = QH_CONFIG_GPT2, .prefix = "transformer.", .transposed = 1,
    .embed_tokens = "wte", .embed_pos = "wpe", .final_norm = "ln_f", .layers = "h",
    .attn_norm = "ln_1", .mlp_norm = "ln_2",
    .lin = {
        [QH_LIN_Q] = { "attn.q_proj", 0 }, [QH_LIN_K] = { "attn.k_proj", 1 },
        [QH_LIN_V] = { "attn.v_proj", 2 }, [QH_LIN_O] = { "attn.c_proj", 3 },
        [QH_LIN_UP] = { "mlp.c_fc", 4 }, [QH_LIN_DOWN] = { "mlp.c_proj", 5 },
    },
    .lm_head = "lm_head",
    .fuse = QH_FUSE_ROWS, .qkv_fused = "attn.c_attn",
};

/* GPTNeoXForCausalLM (Pythia): query_key_value holds q, k, v interleaved per
 * head, reordered on load into the kinds Q, K, V; dense_h_to_4h is UP,
 * dense_4h_to_h DOWN; the untied head is embed_out. */
static const qh_layout neox_layout = {
    .name = "GPT-NeoX", .config = QH_CONFIG_NEOX, .prefix = "gpt_neox.",
    .embed_tokens = "embed_in", .final_norm = "final_layer_norm", .layers = "layers",
    .attn_norm = "input_layernorm", .mlp_norm = "post_attention_layernorm",
    .lin = {
        [QH_LIN_Q] = { "attention.q_proj", 0 }, [QH_LIN_K] = { "attention.k_proj", 1 },
        [QH_LIN_V] = { "attention.v_proj", 2 }, [QH_LIN_O] = { "attention.dense", 3 },
        [QH_LIN_UP] = { "mlp.dense_h_to_4h", 4 }, [QH_LIN_DOWN] = { "mlp.dense_4h_to_h", 5 },
    },
    .lm_head = "embed_out",
    .fuse = QH_FUSE_HEADS, .qkv_fused = "attention.query_key_value",
};

#define QKV (QH_LIN_BIT(QH_LIN_Q) | QH_LIN_BIT(QH_LIN_K) | QH_LIN_BIT(QH_LIN_V))
#define MLP (QH_LIN_BIT(QH_LIN_GATE) | QH_LIN_BIT(QH_LIN_UP) | QH_LIN_BIT(QH_LIN_DOWN))

/* OPT: LayerNorm, ReLU, learned positions at offset 2, biases unless
 * enable_bias is false, tied head unless config.json says otherwise. */
#define OPT_FEATURES { .norm = QH_NORM_LAYER, .act = QH_ACT_RELU, .pos = QH_POS_LEARNED, \
                       .pos_offset = 2, .pre_ln = 1, .tied_head = 1 }
/* Llama: RMSNorm, SwiGLU, rotate-half RoPE, pre-LN, untied head by default;
 * `always` the linears that have biases whatever config.json says. */
#define LLAMA_FEATURES(always) { .norm = QH_NORM_RMS, .act = QH_ACT_SILU, .gated_mlp = 1, \
                                 .pos = QH_POS_ROTARY, .pre_ln = 1, .bias = (always) }
/* Qwen3: Llama's with RMSNorm per head on q and k. */
#define QWEN3_FEATURES { .norm = QH_NORM_RMS, .act = QH_ACT_SILU, .gated_mlp = 1, \
                         .pos = QH_POS_ROTARY, .pre_ln = 1, .qk_norm = 1 }
/* Gemma: RMSNorm scaling by 1 + w, GeGLU with tanh GELU, embeddings times
 * sqrt(hidden), tied head. */
#define GEMMA_FEATURES { .norm = QH_NORM_RMS, .act = QH_ACT_GELU_TANH, .gated_mlp = 1, \
                         .pos = QH_POS_ROTARY, .pre_ln = 1, .tied_head = 1, \
                         .norm_plus_one = 1, .embed_scale = 1 }
/* Gemma 2: Gemma's with sandwich norms, soft-capping and (without
 * layer_types) sliding windows on even layers. */
#define GEMMA2_FEATURES { .norm = QH_NORM_RMS, .act = QH_ACT_GELU_TANH, .gated_mlp = 1, \
                          .pos = QH_POS_ROTARY, .pre_ln = 1, .tied_head = 1, \
                          .norm_plus_one = 1, .embed_scale = 1, .sandwich_norm = 1, \
                          .softcap = 1, .alternate_window = 1 }
/* GPT-2: LayerNorm, plain tanh-GELU MLP, learned positions, biases, tied head. */
#define GPT2_FEATURES { .norm = QH_NORM_LAYER, .act = QH_ACT_GELU_TANH, .pos = QH_POS_LEARNED, \
                        .pre_ln = 1, .tied_head = 1, .bias = QH_LIN_ALL }
/* GPT-NeoX: LayerNorm, plain exact-GELU MLP (biased), partial RoPE, parallel
 * residual unless use_parallel_residual is false. */
#define NEOX_FEATURES { .norm = QH_NORM_LAYER, .act = QH_ACT_GELU, .pos = QH_POS_ROTARY, \
                        .pre_ln = 1, .parallel_residual = 1, \
                        .bias = QH_LIN_BIT(QH_LIN_UP) | QH_LIN_BIT(QH_LIN_DOWN) }
#define ATTENTION_BIAS { "attention_bias", 0, QKV | QH_LIN_BIT(QH_LIN_O) }
#define MLP_BIAS { "mlp_bias", 0, MLP }

static const qh_family families[] = {
    { "opt",     &opt_layout,   OPT_FEATURES,        { { "enable_bias", 1, QH_LIN_ALL } }, "OPT" },
    { "llama",   &llama_layout, LLAMA_FEATURES(0),   { ATTENTION_BIAS, MLP_BIAS }, "Llama" },
    { "mistral", &llama_layout, LLAMA_FEATURES(0),   { ATTENTION_BIAS, MLP_BIAS }, "Mistral" },
    /* Qwen2: q/k/v always biased, o never */
    { "qwen2",   &llama_layout, LLAMA_FEATURES(QKV), { MLP_BIAS }, "Qwen2" },
    { "qwen3",   &llama_layout, QWEN3_FEATURES,      { ATTENTION_BIAS }, "Qwen3" },
    { "gemma",   &llama_layout, GEMMA_FEATURES,      { ATTENTION_BIAS }, "Gemma" },
    { "gemma2",  &gemma2_layout, GEMMA2_FEATURES,    { ATTENTION_BIAS }, "Gemma 2" },
    { "phi3",    &phi3_layout,  LLAMA_FEATURES(0),   { { NULL, 0, 0 } }, "Phi-3" },
    { "gpt2",    &gpt2_layout,  GPT2_FEATURES,       { { NULL, 0, 0 } }, "GPT-2" },
    { "gpt_neox", &neox_layout, NEOX_FEATURES,
      { { "attention_bias", 1, QKV | QH_LIN_BIT(QH_LIN_O) } }, "GPT-NeoX" },
};

#define N_FAMILIES (sizeof families / sizeof *families)

const qh_family *qh_family_find(const char *model_type)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (!strcmp(families[i].model_type, model_type)) return &families[i];
    return NULL;
}

size_t qh_family_count(void) { return N_FAMILIES; }

const qh_family *qh_family_at(size_t i) { return i < N_FAMILIES ? &families[i] : NULL; }

void qh_family_list(char *buf, size_t size)
{
    size_t len = 0;
    if (size) buf[0] = '\0';
    for (size_t i = 0; i < N_FAMILIES && len < size; i++) {
        int n = snprintf(buf + len, size - len, "%s%s", i ? ", " : "", families[i].model_type);
        if (n < 0) break;
        len += (size_t)n;
    }
}
