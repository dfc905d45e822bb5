/* save_model.h -- writes a (quantized) model back as a Hugging Face folder, so
 * that other tools can evaluate the dequantized weights: model.safetensors
 * with every tensor of the source folder in float32 (the decoder linears as
 * the model now holds them, everything else as loaded), plus config.json,
 * tokenizer.json and the other small files copied unchanged.  Float32 keeps
 * the dequantized grid values exact; load it with torch_dtype=float32. */
#ifndef QH_SAVE_MODEL_H
#define QH_SAVE_MODEL_H

#include "model/model.h"

/* out_dir is created if missing.  Returns QH_OK, QH_EIO (naming the file),
 * QH_ENOMEM, or a status of re-reading the source folder m->dir. */
int qh_model_save(const qh_model *m, const char *out_dir) QH_MUST_CHECK;

#endif
