/* family.h -- the model families qh loads: one row per config.json
 * "model_type", giving the tensor names of its Hugging Face checkpoints and
 * the features of its decoder.
 *
 * The loader (model.c) looks the row up, merges the config.json switches into
 * the row's features and keeps both in the model; the forward and backward
 * passes and `qh info` read features, never a family's name.  Families whose
 * checkpoints share tensor names share a layout (opt_layout, llama_layout in
 * family.c), so a new Llama-layout family is one row of the table.
 *
 * Linear kinds are named in the order a block computes them.  Each layout
 * also gives every linear it has a stable number, 0..n-1 for its n linears
 * (n <= 8): results tables record it as the linear's "kind" and list a
 * block's linears in its order, and a linear's random streams are keyed
 * layer * 8 + number, so the numbers must never change for an existing layout
 * (they predate the kinds' names: Llama's down_proj is 5, up_proj 6).
 */
#ifndef QH_FAMILY_H
#define QH_FAMILY_H

#include <stddef.h>

/* The linear layers of one decoder block, in model order.  OPT has
 * Q K V O UP (fc1) DOWN (fc2) and no GATE; Llama has all seven. */
enum qh_linear_kind {
    QH_LIN_Q = 0, QH_LIN_K, QH_LIN_V,
    QH_LIN_O,                        /* attention output: OPT out_proj, Llama o_proj */
    QH_LIN_GATE,                     /* gated MLPs only: Llama gate_proj */
    QH_LIN_UP,                       /* OPT fc1, Llama up_proj */
    QH_LIN_DOWN,                     /* OPT fc2, Llama down_proj */
    QH_LIN_MAX
};

#define QH_LIN_BIT(kind) (1u << (kind))
#define QH_LIN_ALL ((1u << QH_LIN_MAX) - 1u)

typedef enum { QH_NORM_LAYER = 1, QH_NORM_RMS } qh_norm_kind;  /* LayerNorm has a bias */
/* GELU_TANH: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (gelu_new,
 * gelu_pytorch_tanh); GELU: the exact x Phi(x) with erf. */
typedef enum { QH_ACT_RELU = 1, QH_ACT_SILU, QH_ACT_GELU_TANH, QH_ACT_GELU } qh_act_kind;
typedef enum { QH_POS_LEARNED = 1, QH_POS_ROTARY } qh_pos_kind;

/* What a decoder computes.  A row gives the defaults; the loader sets
 * rotary_dims and applies config.json's switches (pre_ln, tied_head, bias,
 * activation, parallel residual, partial rotary, see the config dialects in
 * model.c).  The numbers that come with a feature (window, soft-capping
 * values, RoPE scaling) are in qh_model_config. */
typedef struct {
    qh_norm_kind norm;
    qh_act_kind act;                 /* of the MLP */
    int gated_mlp;                   /* down(act(gate x) * up x); 0: down(act(up x)) */
    qh_pos_kind pos;
    int pos_offset;                  /* learned positions: position t is row t + pos_offset */
    int rotary_dims;                 /* rotary: leading dims rotated per head (partial: < head_dim) */
    int parallel_residual;           /* x + attn(n1(x)) + mlp(n2(x)) (GPT-NeoX) */
    int pre_ln;                      /* norm before each sublayer; 0: after the residual add */
    int tied_head;                   /* lm_head is embed_tokens */
    unsigned bias;                   /* linears with a bias, QH_LIN_BIT(kind); a row: always */
    int qk_norm;                     /* RMSNorm per head on q and k before RoPE (Qwen3) */
    int norm_plus_one;               /* RMSNorm scales by 1 + w (Gemma) */
    int embed_scale;                 /* embeddings times sqrt(hidden), rounded to float (Gemma) */
    int sandwich_norm;               /* a norm after each sublayer too, before its residual add:
                                        x += pn1(attn(n1(x))); x += pn2(mlp(n2(x))) (Gemma 2) */
    int softcap;                     /* the family reads attn_logit_softcapping,
                                        final_logit_softcapping, query_pre_attn_scalar (Gemma 2) */
    int alternate_window;            /* without layer_types, even layers use the sliding
                                        window and odd layers full attention (Gemma 2) */
} qh_model_features;

/* config.json dialects: which keys give the shapes and switches. */
typedef enum {
    QH_CONFIG_OPT = 1,
    QH_CONFIG_LLAMA,
    QH_CONFIG_GPT2,                  /* n_embd, n_layer, n_head, n_inner, n_positions */
    QH_CONFIG_NEOX                   /* GPTNeoXConfig: rotary_pct, use_parallel_residual */
} qh_config_dialect;

/* How a layout stores its linears when not one tensor per linear. */
typedef enum {
    QH_FUSE_NONE = 0,
    QH_FUSE_ROWS,                    /* [q; k; v] rows of one (q+2kv, h) tensor, [gate; up]
                                        rows of one (2 ffn, h) tensor (Phi-3, GPT-2) */
    QH_FUSE_HEADS                    /* q/k/v interleaved per head: rows [q_h; k_h; v_h] of
                                        head_dim each, head after head (GPT-NeoX) */
} qh_fuse_kind;

typedef struct {
    const char *name;                /* within a block, e.g. "self_attn.q_proj"; NULL: absent */
    int number;                      /* the stable number, see above */
} qh_family_linear;

/* Tensor names of a checkpoint layout, under an optional "model." prefix;
 * ".weight" / ".bias" are appended.  A block's tensors are
 * "<layers>.<layer>.<name>". */
typedef struct {
    const char *name;                /* shown by qh info: "OPT", "Llama" */
    qh_config_dialect config;
    const char *prefix;              /* optional prefix of every name but lm_head; NULL:
                                        "model." ("transformer.", "gpt_neox.") */
    int transposed;                  /* linears stored (in, out) (GPT-2's Conv1D): transposed
                                        on load, back on save */
    const char *embed_tokens;
    const char *embed_pos;           /* learned positions, or NULL */
    const char *project_in, *project_out;   /* when the embedding is narrower, or NULL */
    const char *final_norm;
    const char *layers;
    const char *attn_norm, *mlp_norm;       /* within a block */
    const char *attn_post_norm, *mlp_post_norm;   /* sandwich norms (Gemma 2), or NULL */
    qh_family_linear lin[QH_LIN_MAX];       /* by kind */
    const char *lm_head;             /* an untied head, at top level (no "model." prefix) */
    /* fused storage: the tensor that holds Q, K and V (lin[Q..V] then name
     * the kinds for results, their weights (and biases) are split from it on
     * load, and `qh run --save-model` writes the fused tensor back); likewise
     * GATE and UP (gate_up_fused NULL: stored apart) */
    qh_fuse_kind fuse;
    const char *qkv_fused, *gate_up_fused;
    const char *q_norm, *k_norm;            /* within a block: Qwen3's per-head norms */
} qh_layout;

/* A config.json boolean that gives a set of linears biases. */
typedef struct {
    const char *key;                 /* NULL: unused slot */
    int def;                         /* its value when absent */
    unsigned kinds;                  /* QH_LIN_BIT mask (only kinds the layout has count) */
} qh_bias_key;

typedef struct qh_family {
    const char *model_type;
    const qh_layout *layout;
    qh_model_features features;      /* defaults */
    qh_bias_key bias_keys[2];
    const char *name;                /* shown by qh info: "Llama", "Qwen3", "Gemma 2" */
} qh_family;

/* The row of model_type, or NULL. */
const qh_family *qh_family_find(const char *model_type);

/* The rows, for listing: i in [0, qh_family_count()). */
size_t qh_family_count(void);
const qh_family *qh_family_at(size_t i);

/* "opt, llama, ..." into buf (always terminated), for error messages. */
void qh_family_list(char *buf, size_t size);

#endif
