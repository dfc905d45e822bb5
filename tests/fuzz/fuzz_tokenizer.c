/* fuzz_tokenizer.c -- tokenizer.json load and encode (tokenizer/tokenizer.h).
 * Input: the tokenizer.json bytes, then optionally a NUL byte and the text
 * to encode (JSON text holds no raw NUL); without one, a fixed text with
 * repeated words, contractions, digits, spaces and non-ASCII letters.  The
 * text is encoded with and without the post-processor's special tokens.
 * Seeds: tests/fuzz/corpus/tokenizer/ (excerpts of the byte-level and
 * SentencePiece-style tokenizers of the test models and fixtures). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

static const char sample[] =
    "Hello world, it's 2024!  Hello\tworld\n\nx2y \xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC "
    "<s> </s> <unk> a  a   b.b.b";

static void encode(const qh_tokenizer *t, const char *text, size_t len, int add_special)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (qh_tokenizer_encode(t, text, len, add_special, &ids, &n) == QH_OK) {
        int vocab = qh_tokenizer_vocab_size(t);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab) abort();   /* every id names a vocabulary entry */
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[1100];
    if (!path[0]) fuzz_path(path, sizeof path, fuzz_dir(), "tokenizer.json");
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    fuzz_write(path, data, json_len);
    qh_tokenizer *t = NULL;
    if (qh_tokenizer_load(path, &t) != QH_OK) return 0;
    const char *text = nul ? (const char *)nul + 1 : sample;
    size_t len = nul ? size - json_len - 1 : sizeof sample - 1;
    encode(t, text, len, 0);
    encode(t, text, len, 1);
    qh_tokenizer_free(t);
    return 0;
}
