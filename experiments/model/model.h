/* model.h -- a causal language model loaded from a Hugging Face folder.
 *
 * Supported: the families of family.h's table -- model_type "opt" (pre-/post-LN,
 * ReLU, learned positions with offset 2, biases, optional
 * project_in/project_out, tied lm_head), "llama", "mistral", "qwen2",
 * "qwen3", "gemma", "gemma2", "phi3" (RMSNorm, gated MLP, RoPE with
 * default/linear/llama3 frequencies, grouped-query attention, sliding
 * windows, tied or untied lm_head, optional biases; Qwen3's per-head q/k
 * norms, Gemma's 1 + w norms, tanh GELU and scaled embeddings, Gemma 2's
 * sandwich norms and soft-capping, Phi-3's fused tensors split on load),
 * "gpt2" (Conv1D weights transposed on load, c_attn split, learned
 * positions, LayerNorm, tanh GELU) and "gpt_neox" (per-head query_key_value
 * split on load, partial RoPE, parallel residual, exact GELU).
 * What the decoder computes is in cfg.features; code outside the loader reads
 * those, never the family's name.
 *
 * Every tensor is float32 in memory and the model's own, so the quantization
 * pipeline may overwrite a linear layer's weights in place: F32 tensors are
 * mapped from the file without copying (a private, copy-on-write mapping:
 * written pages become the process's, the file never changes), F16 and BF16
 * (and F32 the system will not map so) are converted into storage the model
 * owns.  Weights are therefore 4-byte aligned, not more, when mapped; the
 * files must not be truncated or rewritten in place while the model is loaded.
 *
 * Spilled models (qh_model_load_opts.scratch_dir, for models larger than
 * memory): every tensor is converted or copied into a shared mapping of an
 * unnamed scratch file in that folder, one block after another, each
 * block's pages starting on a page of their own, a decoder block's when it
 * is first acquired (qh_model_acquire_block); qh_model_release_block
 * drops a block's pages from the process (they stay in the file, written
 * back when the system needs the memory, and are read again on the next
 * access), so that only the blocks in use are resident.  The numbers are
 * those of an unspilled model, bit for bit.  The forward (qh_forward_window)
 * and the block-sequential pipeline release each block when they leave it;
 * code that touches every block at once (model transforms, the end-to-end
 * model stage, saving) makes the whole model resident again.
 *
 * Layouts: a linear layer y = W x + b stores W as Hugging Face does, row-major
 * [out][in], which is the same memory as a column-major (in x out) matrix.
 * Embeddings are row-major [vocab][dim]: row t is token t's vector.
 */
#ifndef QH_MODEL_H
#define QH_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model/act_quant.h"
#include "model/family.h"
#include "qh_error.h"

#define QH_MAX_LAYERS 4096

/* RoPE frequencies: "default" theta^(-2i/d); "linear" divided by factor;
 * "llama3" (Llama 3.1+) low frequencies divided by factor, a smooth blend
 * between low_freq and high_freq wavelengths (original_max / the factors). */
typedef enum { QH_ROPE_DEFAULT = 0, QH_ROPE_LINEAR, QH_ROPE_LLAMA3 } qh_rope_type;
typedef struct {
    qh_rope_type type;
    double factor, low_freq_factor, high_freq_factor;
    int original_max_pos;
} qh_rope_scaling;

typedef struct {
    const qh_family *family;         /* the row of model_type */
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
    qh_model_features features;      /* the row's, with config.json's switches applied */
    float norm_eps;                  /* OPT 1e-5 (LayerNorm); Llama rms_norm_eps */
    double rope_theta;               /* Llama; top level or rope_parameters.rope_theta */
    qh_rope_scaling rope;            /* rope_scaling / rope_parameters beyond rope_theta */
    int sliding_window;              /* keys older than this many positions are masked; 0 none */
    uint64_t window_layers[QH_MAX_LAYERS / 64];  /* bit l: layer l uses the window */
    double attn_scale;               /* score scale; 0: 1/sqrt(head_dim) (Gemma 2:
                                        query_pre_attn_scalar^-1/2) */
    double attn_softcap;             /* scores -> c tanh(scores / c) before the mask; 0 none */
    double final_softcap;            /* logits -> c tanh(logits / c); 0 none */
    int bos_id, eos_id, pad_id;      /* -1 when absent */
} qh_model_config;

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
    qh_norm q_norm, k_norm;          /* Qwen3: RMSNorm per head (head_dim), w NULL otherwise */
    qh_norm attn_norm;               /* OPT self_attn_layer_norm, Llama input_layernorm */
    qh_norm mlp_norm;                /* OPT final_layer_norm, Llama post_attention_layernorm */
    qh_norm attn_post_norm, mlp_post_norm;  /* sandwich norms (Gemma 2), w NULL otherwise */
    qh_linear lin[QH_LIN_MAX];       /* by enum qh_linear_kind; W NULL where the family lacks it */
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
    float *head_bias;                /* (vocab) logits bias or NULL: a rotated OPT's final-norm
                                        shift (model/rotate.h) */
    int online_had_down;             /* 1: the forward applies H diag(had_down_signs), H the
                                        normalized Hadamard of size ffn_dim, to the down (fc2)
                                        input (model/rotate.h) */
    float *had_down_signs;           /* (ffn_dim) +-1, with online_had_down */
    int rotated;                     /* 1: qh_rotate_model ran (the function is unchanged; the
                                        weights are not Hugging Face's) */
    void *rot_mem[2];                /* private: the rotation's allocations, freed with m */
    const qh_act_quant *act_quant;   /* borrowed; NULL (the loader's): float activations and KV
                                        (model/act_quant.h; forward.c applies it) */
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

typedef struct {
    const char *scratch_dir;         /* non-NULL: spill the weights to a scratch file in this
                                        folder (a disk-backed one: on tmpfs the pages cannot
                                        leave memory); it must have room for every tensor as
                                        float32, reserved at load (QH_EIO otherwise) */
} qh_model_load_opts;

/* qh_model_load with options (NULL: qh_model_load's defaults). */
int qh_model_load_with(const char *dir, const qh_model_load_opts *opts, qh_model **out) QH_MUST_CHECK;

/* Drops decoder block `layer`'s weights from the resident memory of a spilled
 * model (they come back on the next access, unchanged); a no-op for a model
 * not spilled and for a layer out of range.  Safe while other threads read
 * the block. */
void qh_model_release_block(const qh_model *m, int layer);

/* Spilled models convert a decoder block's tensors from their files (mapped in
 * the stored dtype) into the scratch file when the block is first acquired,
 * not at load: a run that visits a few blocks converts only those, and the
 * first block's work starts at once.  Until then the block's weight pointers
 * are set but its values are not: every reader of block weights acquires the
 * block first (the forward, the sequential pipeline, saving do; code that
 * touches every block calls qh_model_acquire_all).  Returns QH_OK (also for a
 * model not spilled, a block already converted and a layer out of range), or
 * the load statuses of the block's tensors (QH_EIO, QH_ENAN with the file and
 * tensor named).  Not thread-safe: acquire from one thread. */
int qh_model_acquire_block(const qh_model *m, int layer) QH_MUST_CHECK;
/* Every block acquired (each released after, for a spilled model). */
int qh_model_acquire_all(const qh_model *m) QH_MUST_CHECK;
int qh_model_spilled(const qh_model *m);                /* 1: loaded with a scratch_dir */

/* config.json of dir alone, parsed as qh_model_load parses it (no weights
 * read): for checks before a sweep starts.  Returns QH_OK or qh_model_load's
 * config statuses. */
int qh_model_config_load(const char *dir, qh_model_config *cfg) QH_MUST_CHECK;

/* Number of linears a block of this family has (6 OPT, 7 Llama), and the
 * short name of kind k ("q_proj", "fc1", "gate_proj", ...; NULL for a kind the
 * family lacks or one outside [0, QH_LIN_MAX)). */
int qh_model_n_linear(const qh_model *m);

/* The sliding window of layer `layer` (keys j > i - window seen by query i),
 * 0 for full causal attention. */
int qh_model_layer_window(const qh_model_config *c, int layer);
const char *qh_model_linear_short_name(const qh_model *m, int kind);

/* The family's stable number of linear `kind` (family.h), -1 for a kind it
 * lacks.  Results record it as the linear's "kind" and list a block's
 * linears in its order: qh_model_linear_at(m, i) is the kind numbered i-th,
 * i in [0, qh_model_n_linear(m)) (-1 outside). */
int qh_model_linear_number(const qh_model *m, int kind);
int qh_model_linear_at(const qh_model *m, int i);

/* The key of linear `kind` (one the family has) of block `layer` for random
 * streams (incoherence rotations, stochastic rounding): layer * 8 + its stable
 * number, so that a linear draws the same numbers in `qh run` and `qh layer`
 * and whatever order the kinds are listed in. */
uint32_t qh_model_linear_key(const qh_model *m, int layer, int kind);

/* The rows of a fused q/k/v tensor of n_heads heads of hd rows (cols values
 * each; 1 for a bias) reordered in place from GPT-NeoX's per-head
 * [q_0; k_0; v_0; q_1; ...] to [q_0; q_1; ...; k_0; ...; v_0; ...]
 * (to_heads 0, as on load), or back (to_heads 1, as saved); tmp holds
 * 3 n_heads hd cols floats. */
void qh_fused_heads_permute(float *x, size_t n_heads, size_t hd, size_t cols, int to_heads,
                            float *tmp);

/* Parameter counts: every stored tensor, and the decoder linears alone; of
 * every stored tensor's, those mapped in place from F32 files (not copied). */
size_t qh_model_n_params(const qh_model *m);
size_t qh_model_n_linear_params(const qh_model *m);
size_t qh_model_n_mapped_params(const qh_model *m);

#endif
