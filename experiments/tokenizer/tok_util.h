/* tok_util.h -- building blocks of the tokenizer (internal to experiments/):
 * growable arrays, a string-keyed hash map, a pair-keyed hash map for BPE
 * merges, and strict UTF-8 decoding. */
#ifndef QH_TOK_UTIL_H
#define QH_TOK_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"

/* Ensures *p (elements of elem bytes, capacity *cap) holds at least need
 * elements, growing geometrically.  Returns QH_OK or QH_ENOMEM. */
int tok_reserve(void **p, size_t *cap, size_t need, size_t elem) QH_MUST_CHECK;

typedef struct { char *p; size_t n, cap; } tok_buf;          /* bytes */
typedef struct { int32_t *p; size_t n, cap; } tok_ids;       /* int32 ids */

int tok_buf_append(tok_buf *b, const void *data, size_t len) QH_MUST_CHECK;
int tok_ids_push(tok_ids *v, int32_t id) QH_MUST_CHECK;
int tok_ids_append(tok_ids *v, const int32_t *ids, size_t n) QH_MUST_CHECK;

/* Open-addressing map from byte strings (copied into an arena) to int64. */
typedef struct {
    struct tok_slot *slots;
    size_t cap, count;        /* cap is a power of two (or 0) */
    tok_buf arena;            /* key bytes */
} tok_strmap;

void tok_strmap_free(tok_strmap *m);
/* Inserts key -> value, replacing the value of an existing key. */
int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int64_t value) QH_MUST_CHECK;
/* Pointer to the value of key, or NULL when absent (valid until the next put). */
int64_t *tok_strmap_get(const tok_strmap *m, const char *key, size_t len);

/* Open-addressing map from an id pair (a, b) to (rank, merged id). */
typedef struct {
    struct tok_pair_slot *slots;
    size_t cap, count;
} tok_pairmap;

void tok_pairmap_free(tok_pairmap *m);
/* Inserts (a, b) -> (rank, merged), replacing an existing entry (as a later
 * duplicate merge line does in the reference implementation). */
int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank,
                    int32_t merged) QH_MUST_CHECK;
/* 1 and (*rank, *merged) when (a, b) is present, else 0. */
int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);

/* Length in bytes of the valid UTF-8 sequence at s[0..n) and its code point in
 * *cp, or 0 when s does not start with a valid sequence (overlong forms,
 * surrogates and values above U+10FFFF are invalid). */
size_t tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Writes cp as UTF-8 into out (4 bytes room); returns the length. */
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Offset of the first invalid byte of s[0..n), or n when all is valid. */
size_t tok_utf8_first_invalid(const uint8_t *s, size_t n);

#endif
