/* tokenizer.h -- Hugging Face tokenizer.json BPE tokenizers in plain C.
 *
 * Supported pipeline (the subset used by GPT-2/OPT and Llama/SentencePiece
 * style checkpoints):
 *   added_tokens  split out first (leftmost-longest; lstrip, rstrip,
 *                 single_word, normalized honoured);
 *   normalizer    null, Sequence, Prepend, Replace (string pattern);
 *   pre_tokenizer null, Sequence, ByteLevel (GPT-2 pattern, add_prefix_space,
 *                 use_regex), Metaspace (replacement, prepend_scheme
 *                 first/always/never or legacy add_prefix_space, split);
 *   model         BPE: merges as "a b" strings or [a, b] pairs, ranked by
 *                 position; byte_fallback (<0xNN>), unk_token, fuse_unk,
 *                 ignore_merges; dropout must be null or 0;
 *   post_processor null, TemplateProcessing (single template), RobertaProcessing,
 *                 BertProcessing, ByteLevel (no effect on ids), Sequence.
 * Anything else is refused at load time with QH_EUNIMPL and a message naming
 * the key.  Input text must be valid UTF-8 (as the reference reads files as
 * UTF-8 strings): invalid bytes give QH_EINVAL naming the byte offset.
 */
#ifndef QH_TOKENIZER_H
#define QH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"

typedef struct qh_tokenizer qh_tokenizer;

/* Loads path (a tokenizer.json).  *out is a new tokenizer (qh_tokenizer_free).
 * Returns QH_OK, QH_EIO (unreadable file), QH_EINVAL (not JSON, missing or
 * malformed keys), QH_EUNIMPL (a component this implementation lacks),
 * QH_ENOMEM. */
int qh_tokenizer_load(const char *path, qh_tokenizer **out) QH_MUST_CHECK;
void qh_tokenizer_free(qh_tokenizer *t);  /* NULL: no-op */

/* Encodes len bytes of UTF-8 text; add_special 1 applies the post-processor
 * (e.g. prepends <s>).  *ids is a new array (free()), *n its length (*ids may
 * be NULL when *n is 0).  Thread-safe: t is not modified.
 * Returns QH_OK, QH_EINVAL (invalid UTF-8), QH_ENOMEM. */
int qh_tokenizer_encode(const qh_tokenizer *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n) QH_MUST_CHECK;

/* Reads a whole file and encodes it with add_special = 1 (the evaluation
 * protocol).  Returns QH_EIO naming the path, or what qh_tokenizer_encode
 * returns. */
int qh_tokenize_file(const qh_tokenizer *t, const char *path, int32_t **ids,
                     size_t *n) QH_MUST_CHECK;

/* 1 + the largest id of the vocabulary and the added tokens. */
int qh_tokenizer_vocab_size(const qh_tokenizer *t);

/* SHA-256 of the ids as int32 little-endian, as 64 lowercase hex chars + NUL. */
void qh_ids_sha256_hex(const int32_t *ids, size_t n, char out[65]);

#endif
