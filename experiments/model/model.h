/* model.h -- a causal language model loaded from a Hugging Face folder.
 *
 * Supported: model_type "opt" (pre-/post-LN, ReLU, learned positions with
 * offset 2, biases, optional project_in/project_out, tied lm_head) and "llama"
 * (RMSNorm, SwiGLU, RoPE rotate-half, grouped-query attention, tied or untied
 * lm_head; Qwen2/Mistral-style name variants and q/k/v biases).
 *
 * Every tensor is converted to float32 on load (F32, F16, BF16 on disk) into
 * storage the model owns, so the quantization pipeline may overwrite a linear
 * layer's weights in place.
 *
 * Layouts: a linear layer y = W x + b stores W as Hugging Face does, row-major
 * [out][in], which is the same memory as a column-major (in x out) matrix.
 * Embeddings are row-major [vocab][dim]: row t is token t's vector.
 */
#ifndef QH_MODEL_H
#define QH_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"

typedef enum { QH_ARCH_OPT = 1, QH_ARCH_LLAMA = 2 } qh_arch;

typedef struct {
    qh_arch arch;
    char model_type[32];             /* as in config.json */
    int vocab_size;
    int hidden;                      /* hidden_size */
    int n_layers;
    int n_heads;
    int n_kv_heads;                  /* == n_heads for OPT */
    int head_dim;                    /* hidden / n_heads unless config says head_dim */
    int ffn_dim;                     /* OPT ffn_dim, Llama intermediate_size */
    int max_pos;                     /* max_position_embeddings */
    int embed_dim;                   /* OPT word_embed_proj_dim (== hidden unless projected) */
    int pre_ln;                      /* OPT do_layer_norm_before; 1 for Llama */
    int tied_lm_head;                /* tie_word_embeddings */
    float norm_eps;                  /* OPT 1e-5 (LayerNorm); Llama rms_norm_eps */
    double rope_theta;               /* Llama; top level or rope_parameters.rope_theta */
    int bos_id, eos_id, pad_id;      /* -1 when absent */
} qh_model_config;

/* The linear layers of one decoder block, in model order. OPT uses
 * Q K V O FC1 FC2; Llama uses Q K V O GATE UP DOWN. */
enum qh_linear_kind {
    QH_LIN_Q = 0, QH_LIN_K, QH_LIN_V, QH_LIN_O,
    QH_LIN_FC1,                      /* OPT fc1, Llama gate_proj */
    QH_LIN_FC2,                      /* OPT fc2, Llama down_proj */
    QH_LIN_UP,                       /* Llama up_proj only */
    QH_LIN_MAX
};

typedef struct {
    char name[96];                   /* full tensor prefix, e.g. "model.decoder.layers.0.fc1" */
    int out, in;
    float *W;                        /* (out, in) row-major; owned by the model's storage */
    float *b;                        /* (out) or NULL */
} qh_linear;

typedef struct {
    float *w;                        /* (dim) scale */
    float *b;                        /* (dim) shift for LayerNorm, NULL for RMSNorm */
} qh_norm;

typedef struct {
    qh_norm attn_norm;               /* OPT self_attn_layer_norm, Llama input_layernorm */
    qh_norm mlp_norm;                /* OPT final_layer_norm, Llama post_attention_layernorm */
    qh_linear lin[QH_LIN_MAX];       /* lin[k].W == NULL when the architecture lacks kind k */
} qh_block;

typedef struct {
    qh_model_config cfg;
    char dir[1024];                  /* the folder it was loaded from */
    float *embed_tokens;             /* (vocab, embed_dim) row-major */
    float *embed_pos;                /* OPT: (max_pos + 2, hidden); NULL for Llama */
    qh_linear project_in;            /* OPT embed_dim -> hidden, W NULL when absent */
    qh_linear project_out;           /* OPT hidden -> embed_dim, W NULL when absent */
    qh_norm final_norm;              /* OPT decoder.final_layer_norm (w NULL if absent), Llama norm */
    float *lm_head;                  /* (vocab, embed_dim) row-major; == embed_tokens if tied */
    qh_block *blocks;                /* n_layers */
    void *storage;                   /* private: owned allocations */
} qh_model;

/* Loads config.json and the safetensors weights (single file or sharded with
 * model.safetensors.index.json) from dir.  Returns QH_OK and a new model in
 * *out, or a status with qh_last_error() naming the file and tensor at fault
 * (QH_EIO missing/unreadable file, QH_EINVAL malformed header or dtype,
 * QH_EBADLEN wrong shape or out-of-range data, QH_ECONFIG bad config,
 * QH_ENAN non-finite weights). */
int qh_model_load(const char *dir, qh_model **out) QH_MUST_CHECK;
void qh_model_free(qh_model *m);                        /* NULL: no-op */

/* Number of linear kinds a block of this architecture has (6 OPT, 7 Llama),
 * and the short name of kind k ("q_proj", "fc1", "gate_proj", ...). */
int qh_model_n_linear(const qh_model *m);
const char *qh_model_linear_short_name(const qh_model *m, int kind);

/* The key of linear `kind` of block `layer` for random streams (incoherence
 * rotations, stochastic rounding): layer * 8 + a number fixed per tensor of
 * the family, so that a linear draws the same numbers in `qh run` and
 * `qh layer` and whatever order the kinds are listed in. */
uint32_t qh_model_linear_key(const qh_model *m, int layer, int kind);

/* Parameter counts: every stored tensor, and the decoder linears alone. */
size_t qh_model_n_params(const qh_model *m);
size_t qh_model_n_linear_params(const qh_model *m);

#endif
