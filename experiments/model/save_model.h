/* save_model.h -- writes a (quantized) model back as a Hugging Face folder, so
 * that other tools can evaluate the dequantized weights: model.safetensors
 * with every tensor of the source folder in its stored dtype (the decoder
 * linears as the model now holds them, rounded to nearest even into BF16 or
 * F16 when stored so; F32 stays F32; everything else as loaded), in the
 * source's layout (fused tensors re-fused, Conv1D weights transposed back),
 * plus config.json, the tokenizer files (tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, vocab.json, merges.txt,
 * tokenizer.model, added_tokens.json) and generation_config.json copied
 * unchanged where present.  A dequantized grid value is exact in float32 but
 * rounds in BF16/F16: the saved model matches the in-memory one up to that
 * rounding. */
#ifndef QH_SAVE_MODEL_H
#define QH_SAVE_MODEL_H

#include "model/model.h"

/* out_dir is created if missing.  Returns QH_OK, QH_EIO (naming the file),
 * QH_ENOMEM, or a status of re-reading the source folder m->dir. */
int qh_model_save(const qh_model *m, const char *out_dir) QH_MUST_CHECK;

/* The name of the metadata file qh_model_save_meta writes. */
#define QH_SAVE_META_FILE "qh_quantization.json"

/* qh_model_save, then meta_json (JSON text saying what was done: method,
 * bits, parameters, bits per weight, protocol hash; written by the pipeline)
 * into out_dir/QH_SAVE_META_FILE.  Same statuses. */
int qh_model_save_meta(const qh_model *m, const char *out_dir, const char *meta_json) QH_MUST_CHECK;

#endif
