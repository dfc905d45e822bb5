/* tokenizer_internal.h -- the tokenizer's in-memory form, shared by
 * tokenizer_load.c (which fills it from tokenizer.json) and tokenizer.c
 * (which encodes with it).  Not part of the public API. */
#ifndef QH_TOKENIZER_INTERNAL_H
#define QH_TOKENIZER_INTERNAL_H

#include "tokenizer/tok_util.h"
#include "tokenizer/tokenizer.h"

#define QH_TOK_MAX_STEPS 8   /* normalizer / pre-tokenizer steps after flattening Sequences */

enum { QH_NORM_PREPEND = 1, QH_NORM_REPLACE = 2 };
typedef struct {
    int kind;
    char *a;        /* Prepend: the prefix; Replace: the pattern */
    size_t a_len;
    char *b;        /* Replace: the content */
    size_t b_len;
} tok_norm;

enum { QH_PRETOK_BYTE_LEVEL = 1, QH_PRETOK_METASPACE = 2 };
enum { QH_PREPEND_NEVER = 0, QH_PREPEND_FIRST = 1, QH_PREPEND_ALWAYS = 2 };
typedef struct {
    int kind;
    int add_prefix_space, use_regex;   /* ByteLevel */
    char replacement[8];               /* Metaspace: UTF-8 of the replacement character */
    size_t replacement_len;
    int prepend_scheme, split;         /* Metaspace */
} tok_pretok;

typedef struct {
    char *content;   /* as matched: normalized at load time when normalized is set */
    size_t len;
    int32_t id;
    uint8_t lstrip, rstrip, single_word, normalized, special;
} tok_added;

typedef struct {
    tok_added *v;              /* sorted by decreasing length (longest match first) */
    size_t n;
    uint8_t first_byte[256];   /* 1 where some token starts with that byte */
} tok_added_set;

struct qh_tokenizer {
    tok_strmap vocab;          /* token string -> id */
    int32_t vocab_size;        /* 1 + largest id (vocab and added tokens) */
    tok_pairmap merges;        /* (left id, right id) -> (rank, merged id) */
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;            /* -1: no unk token */
    int32_t byte_ids[256];     /* id of "<0xNN>", -1 when absent */
    tok_norm norm[QH_TOK_MAX_STEPS];
    int n_norm;
    tok_pretok pretok[QH_TOK_MAX_STEPS];
    int n_pretok;
    tok_added_set added_raw;          /* added tokens with normalized = false */
    tok_added_set added_normalized;   /* added tokens with normalized = true */
    tok_ids post_prefix, post_suffix; /* post-processor ids around the sequence */
    char byte_map[256][2];            /* GPT-2 byte -> unicode character, as UTF-8 */
    uint8_t byte_map_len[256];
};

static inline int bytes_all_known(const qh_tokenizer *t, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t->byte_ids[(uint8_t)s[i]] < 0) return 0;
    return 1;
}

/* Applies t's normalizer to s[0..n) into out (replacing its contents). */
int qh_tok_normalize(const qh_tokenizer *t, const char *s, size_t n, tok_buf *out) QH_MUST_CHECK;
/* Reads a whole file into a new NUL-terminated buffer (*data, free()). */
int qh_tok_read_file(const char *path, char **data, size_t *len) QH_MUST_CHECK;
/* End offset of the GPT-2 pattern piece that starts at byte i < n of valid UTF-8 s. */
size_t qh_gpt2_piece_end(const char *s, size_t n, size_t i);

#endif
