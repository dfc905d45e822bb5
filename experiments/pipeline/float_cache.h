/* float_cache.h -- the float model's reference for fidelity metrics
 * (pipeline/eval.h), computed once per model, dataset, window length, window
 * set and k, and kept on disk so that every quantized cell of a sweep reads it
 * instead of running the float model again.
 *
 * File (little-endian, docs/metrics.md): a 128-byte header
 *   "QHFREF1\0", uint64 vocab, seqlen, n_windows, k, the 64-hex key, zero pad;
 * then per window, for its seqlen-1 predictions: int32 idx[(seqlen-1) k],
 * float32 logp[(seqlen-1) k], float32 logp_true[seqlen-1]
 * ((seqlen-1)(8k+4) bytes a window: 1.05 MB at seqlen 1024 and the default
 * k 128; the 550 Gutenberg windows of the embedded models take 578 MB).  Written under a
 * temporary name and renamed, so concurrent builders of one key never expose
 * a partial file; the key (qh_float_cache_key) names the inputs, so a changed
 * model, text, tokenizer or window set never reads a stale file.
 */
#ifndef QH_FLOAT_CACHE_H
#define QH_FLOAT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "pipeline/eval.h"
#include "qh_error.h"

typedef struct qh_float_cache qh_float_cache;

/* The cache key: SHA-256 over the format version, the model folder's
 * config.json, tokenizer.json and weight files (their SHA-256), the ids of
 * the evaluated windows, seqlen, n_windows and k.
 * Return: QH_OK; QH_EIO (a model file cannot be hashed: named). */
int qh_float_cache_key(const char *model_dir, const int32_t *ids, size_t seqlen, size_t n_windows,
                       size_t k, char key[65]) QH_MUST_CHECK;

/* The folder of a results folder's float caches, "<out_dir>/float-cache". */
int qh_float_cache_dir(const char *out_dir, char *buf, size_t cap) QH_MUST_CHECK;

/* Runs the float model fm on windows 0..n_windows-1 of ids and writes the
 * cache to path under a unique temporary name (qh_results_tmp_name: a killed
 * builder's is "<path>.<pid>.<nonce>.tmp", which
 * qh_results_remove_folder_temporaries removes), then renames it into place.
 * Return: QH_OK; QH_EIO (named); QH_ENOMEM; the forward pass's status. */
int qh_float_cache_build(const qh_model *fm, const int32_t *ids, size_t seqlen, size_t n_windows,
                         size_t k, const char *key, const char *path) QH_MUST_CHECK;

/* Opens path and checks its header against the arguments.
 * Return: QH_OK; QH_EIO (missing, short, or a header that does not match:
 *   the message says which field). */
int qh_float_cache_open(const char *path, const char *key, size_t vocab, size_t seqlen,
                        size_t n_windows, size_t k, qh_float_cache **out) QH_MUST_CHECK;
void qh_float_cache_close(qh_float_cache *c);   /* NULL: no-op */

/* qh_float_ref_fn over an open cache (user: the qh_float_cache); the window's
 * arrays stay valid until the next call. */
int qh_float_cache_window(size_t w, qh_float_window *out, void *user) QH_MUST_CHECK;

#endif
