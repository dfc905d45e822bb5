/* test_tokenizer.c -- tokenizer.json BPE tokenizer and SHA-256.
 *
 * Independent references used:
 *   - SHA-256: the FIPS 180-2 / NIST example vectors.
 *   - GPT-2 pattern splitting: pieces derived by hand from the pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     (leftmost alternative first, as a backtracking engine tries them).
 *   - byte-level ids of tricky strings: produced by the Hugging Face
 *     `tokenizers` library 0.23 from models/opt-7m/tokenizer.json (encode with
 *     add_special_tokens), copied here as constants.
 *   - SentencePiece-style fixtures tests/data/tok_sp_tokenizer.json and
 *     tok_metaspace_tokenizer.json: expected ids derived by hand below (and
 *     confirmed with the same library).
 *   - every models/ and ../shared/models/ reference.json: n_tokens,
 *     ids_sha256_int32le and first_ids of whole evaluation files.
 */
#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qh_test.h"
#include "tokenizer/sha256.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_tables.h"

#define OPT7M_TOKENIZER "models/opt-7m/tokenizer.json"
#define SP_FIXTURE "tests/data/tok_sp_tokenizer.json"
#define METASPACE_FIXTURE "tests/data/tok_metaspace_tokenizer.json"

/* ---- helpers ------------------------------------------------------------------ */

static int ids_equal(const int32_t *got, size_t n, const int32_t *want, size_t m)
{
    return n == m && (n == 0 || memcmp(got, want, n * sizeof *got) == 0);
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    printf("    %s [", label);
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("]\n");
}

/* Encodes text and checks the ids against want (terminated by -1). */
static void check_encode(const qh_tokenizer *t, const char *name, const char *text, size_t len,
                         int add_special, const int32_t *want)
{
    size_t m = 0;
    while (want[m] >= 0) m++;
    int32_t *ids = NULL;
    size_t n = 0;
    int st = qh_tokenizer_encode(t, text, len, add_special, &ids, &n);
    QH_CHECK(st == QH_OK, "%s: encode failed: %s", name, st ? qh_last_error() : "");
    int ok = st == QH_OK && ids_equal(ids, n, want, m);
    QH_CHECK(ok, "%s: ids differ", name);
    if (!ok) { print_ids("got ", ids, n); print_ids("want", want, m); }
    free(ids);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__, -1})
#define CHECK_ENC(t, name, text, add, ...) check_encode(t, name, text, sizeof(text) - 1, add, IDS(__VA_ARGS__))

/* Writes s to a new temporary file; returns its path (free()) or NULL. */
static char *write_temp(const char *s)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    if (!path) return NULL;
    snprintf(path, 4096, "%s/qh_tok_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) { free(path); return NULL; }
    size_t len = strlen(s);
    int ok = write(fd, s, len) == (ssize_t)len;
    close(fd);
    if (!ok) { unlink(path); free(path); return NULL; }
    return path;
}

/* Loads the JSON file at path, lets edit change it, loads the result as a tokenizer. */
static qh_tokenizer *load_variant(const char *path, void (*edit)(cJSON *root))
{
    char *text = NULL, *out = NULL, *tmp = NULL;
    size_t len;
    cJSON *root = NULL;
    qh_tokenizer *t = NULL;
    if (qh_tok_read_file(path, &text, &len) != QH_OK) goto cleanup;
    if (!(root = cJSON_Parse(text))) goto cleanup;
    edit(root);
    if (!(out = cJSON_PrintUnformatted(root)) || !(tmp = write_temp(out))) goto cleanup;
    if (qh_tokenizer_load(tmp, &t) != QH_OK) t = NULL;
    unlink(tmp);
cleanup:
    free(text);
    free(out);
    free(tmp);
    cJSON_Delete(root);
    return t;
}

/* Loading a tokenizer.json with this content fails with status and a message containing needle. */
static void check_load_error(const char *name, const char *json, int status, const char *needle)
{
    char *path = write_temp(json);
    QH_CHECK(path != NULL, "%s: cannot write temporary file", name);
    if (!path) return;
    qh_tokenizer *t = NULL;
    int st = qh_tokenizer_load(path, &t);
    QH_CHECK(st == status && t == NULL, "%s: status %d, want %d", name, st, status);
    QH_CHECK(strstr(qh_last_error(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", name,
             qh_last_error(), needle);
    QH_CHECK(strstr(qh_last_error(), path) != NULL, "%s: message does not name the file", name);
    qh_tokenizer_free(t);
    unlink(path);
    free(path);
}

/* ---- SHA-256 ------------------------------------------------------------------ */

static void check_digest(const char *name, const void *data, size_t len, const char *want)
{
    uint8_t d[32];
    char hex[65];
    qh_sha256(data, len, d);
    qh_sha256_to_hex(d, hex);
    QH_CHECK(strcmp(hex, want) == 0, "sha256(%s) = %s, want %s", name, hex, want);
}

static void test_sha256(void)
{
    check_digest("\"\"", "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_digest("abc", "abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *v448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_digest("448-bit", v448, strlen(v448),
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *v896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_digest("896-bit", v896, strlen(v896),
                 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* One million 'a' fed in uneven chunks exercises the block buffering. */
    qh_sha256_ctx c;
    char chunk[997];
    memset(chunk, 'a', sizeof chunk);
    qh_sha256_init(&c);
    size_t left = 1000000;
    while (left) {
        size_t k = left < sizeof chunk ? left : sizeof chunk;
        qh_sha256_update(&c, chunk, k);
        left -= k;
    }
    uint8_t d[32];
    char hex[65];
    qh_sha256_final(&c, d);
    qh_sha256_to_hex(d, hex);
    QH_CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
             "sha256(10^6 'a') = %s", hex);
    /* ids as int32 little-endian: bytes 00000000 01000000 02010000 00000100 */
    const int32_t ids[] = {0, 1, 258, 65536};
    qh_ids_sha256_hex(ids, 4, hex);
    QH_CHECK(strcmp(hex, "054a4770987a7739bccc22a9e7113082ff500c0a1b79163639224e88b56aa624") == 0,
             "ids sha256 = %s", hex);
}

/* ---- Unicode classes and the GPT-2 pattern ------------------------------------------ */

static void test_unicode_classes(void)
{
    QH_CHECK(strcmp(qh_unicode_version, "") != 0, "Unicode version recorded");
    struct { uint32_t cp; int cls; } cases[] = {
        {'a', QH_UCLASS_LETTER}, {'Z', QH_UCLASS_LETTER}, {'7', QH_UCLASS_NUMBER}, {' ', QH_UCLASS_SPACE},
        {'\n', QH_UCLASS_SPACE}, {'\'', QH_UCLASS_OTHER}, {0xE9, QH_UCLASS_LETTER} /* é */,
        {0xA0, QH_UCLASS_SPACE} /* no-break space */, {0x85, QH_UCLASS_SPACE} /* NEL */,
        {0x1C, QH_UCLASS_OTHER} /* file separator: not White_Space */, {0x301, QH_UCLASS_OTHER} /* combining acute */,
        {0x65E5, QH_UCLASS_LETTER} /* 日 */, {0x0661, QH_UCLASS_NUMBER} /* Arabic-Indic 1 */,
        {0x2163, QH_UCLASS_NUMBER} /* Roman numeral IV (Nl) */, {0xB2, QH_UCLASS_NUMBER} /* ² (No) */,
        {0x3000, QH_UCLASS_SPACE}, {0x2028, QH_UCLASS_SPACE}, {0x1F600, QH_UCLASS_OTHER} /* emoji */,
        {0x10FFFF, QH_UCLASS_OTHER}, {0x200B, QH_UCLASS_OTHER} /* zero width space is Cf */,
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        QH_CHECK(qh_unicode_class(cases[i].cp) == cases[i].cls, "class of U+%04X: %d, want %d",
                 (unsigned)cases[i].cp, qh_unicode_class(cases[i].cp), cases[i].cls);
}

static void check_pieces(const char *text, const char *const *want)
{
    size_t n = strlen(text), i = 0, k = 0;
    int ok = 1;
    while (i < n) {
        size_t end = qh_gpt2_piece_end(text, n, i);
        if (!want[k] || strlen(want[k]) != end - i || memcmp(want[k], text + i, end - i) != 0) {
            printf("    piece %zu: got \"%.*s\", want \"%s\"\n", k, (int)(end - i), text + i,
                   want[k] ? want[k] : "(end)");
            ok = 0;
            break;
        }
        i = end;
        k++;
    }
    QH_CHECK(ok && !want[k], "GPT-2 pieces of \"%s\"", text);
}

#define PIECES(text, ...) check_pieces(text, (const char *const[]){__VA_ARGS__, NULL})

static void test_gpt2_pattern(void)
{
    /* Contractions are lowercase only; an apostrophe that starts none is punctuation. */
    PIECES("I'm here, they'll've DON'T 's 'S", "I", "'m", " here", ",", " they", "'ll", "'ve", " DON", "'", "T",
           " '", "s", " '", "S");
    /* A run of spaces before a word leaves its last space to lead the word. */
    PIECES("a  b   c", "a", " ", " b", "  ", " c");
    /* \s+(?!\S): "\n\n\n" before a letter gives "\n\n" then "\n" (a lone \n cannot lead a word). */
    PIECES("x\n\n\ny", "x", "\n\n", "\n", "y");
    PIECES("end \n", "end", " \n");
    PIECES("tail   ", "tail", "   ");
    PIECES("\tTab\t tab", "\t", "Tab", "\t", " tab");
    PIECES("x2y 3.14 42", "x", "2", "y", " 3", ".", "14", " 42");
    PIECES("Hi!!! ...ok", "Hi", "!!!", " ...", "ok");
    PIECES("e\xCC\x81 \xCC\x81", "e", "\xCC\x81", " \xCC\x81");                  /* combining acute: "other" */
    PIECES("Caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC", "Caf\xC3\xA9", " \xE6\x97\xA5\xE6\x9C\xAC");   /* Café 日本 */
    PIECES("a\xC2\xA0" "b", "a", "\xC2\xA0", "b");                               /* no-break space */
    PIECES("''x'", "''", "x", "'");
    PIECES(" ", " ");
}

/* ---- byte-level BPE ----------------------------------------------------------------- */

static void test_byte_level(void)
{
    qh_tokenizer *t = NULL;
    int st = qh_tokenizer_load(OPT7M_TOKENIZER, &t);
    QH_CHECK(st == QH_OK, "load %s: %s", OPT7M_TOKENIZER, st ? qh_last_error() : "");
    if (st != QH_OK) return;
    QH_CHECK(qh_tokenizer_vocab_size(t) == 8192, "vocab size %d, want 8192", qh_tokenizer_vocab_size(t));
    /* Expected ids from the reference library (see the file header). */
    CHECK_ENC(t, "contractions", "I'm here, they'll've DON'T 's 'S", 1,
              0, 44, 1747, 774, 15, 450, 1210, 1997, 494, 1555, 10, 55, 889, 86, 889, 54);
    CHECK_ENC(t, "multiple spaces", "a  b   c    d", 1, 0, 68, 224, 275, 276, 282, 497, 290);
    CHECK_ENC(t, "newlines", "line1\nline2\n\n\nline3\r\n end \n", 1,
              0, 5531, 20, 202, 5531, 21, 420, 202, 5531, 22, 205, 202, 906, 224, 202);
    CHECK_ENC(t, "trailing spaces", "trailing spaces   ", 1, 0, 7522, 2191, 448, 1374, 497);
    CHECK_ENC(t, "tabs", "\tTab\t tab", 1, 0, 201, 55, 416, 201, 260, 416);
    CHECK_ENC(t, "digits", "digits 12345 and 3.14159 x2y", 1,
              0, 71, 484, 1004, 3450, 22, 23, 24, 285, 1404, 17, 5424, 5279, 28, 3827, 21, 92);
    CHECK_ENC(t, "non-ASCII letters",
              "Caf\xC3\xA9 na\xC3\xAFve \xC3\x9Cn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9 "
              "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88 "
              "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80", 1,
              0, 38, 2455, 2328, 301, 68, 131, 111, 313, 224, 131, 254, 81, 131, 111, 70, 131, 118, 71, 2328,
              224, 166, 249, 102, 166, 254, 109, 168, 107, 256, 163, 227, 110, 163, 229, 232, 163, 228, 259,
              163, 228, 121, 163, 229, 234, 224, 144, 257, 145, 226, 144, 120, 144, 114, 144, 117, 145, 228,
              224, 144, 124, 144, 120, 145, 226);
    CHECK_ENC(t, "lone combining mark", "e\xCC\x81 lone \xCC\x81 mark", 1,
              0, 72, 140, 227, 299, 482, 224, 140, 227, 3410);
    CHECK_ENC(t, "emoji", "emoji \xF0\x9F\x98\x80\xF0\x9F\x91\x8D ok", 1,
              0, 441, 82, 77, 76, 224, 176, 257, 250, 226, 176, 257, 243, 239, 268, 78);
    CHECK_ENC(t, "unicode spaces", "nbsp\xC2\xA0here\xE3\x80\x80ideo", 1,
              0, 81, 69, 736, 130, 258, 584, 163, 226, 226, 582, 82);
    CHECK_ENC(t, "specials inline", "<s>inline special</s> tok", 1, 0, 0, 263, 5531, 4509, 2, 284, 78);
    CHECK_ENC(t, "spaces before special", "  <s> spaced", 1, 0, 276, 0, 448, 1521);
    CHECK_ENC(t, "punctuation", "'''quotes'''' \"dq\" (paren) [br] {c} --dash-- ...", 1,
              0, 10, 10, 10, 401, 5936, 10, 10, 10, 10, 440, 71, 84, 5, 660, 83, 543, 81, 12, 1089, 1331, 64,
              4625, 70, 96, 4619, 6313, 376, 4586);
    CHECK_ENC(t, "empty", "", 1, 0);
    CHECK_ENC(t, "one space", " ", 1, 0, 224);
    CHECK_ENC(t, "no post-processor", "\n", 0, 202);

    /* Invalid UTF-8 is refused (the reference reads text as UTF-8 strings), naming the offset. */
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    const char bad[] = "ok \xC3\x28 no";
    st = qh_tokenizer_encode(t, bad, sizeof bad - 1, 1, &ids, &n);
    QH_CHECK(st == QH_EINVAL && ids == NULL && n == 0, "invalid UTF-8: status %d", st);
    QH_CHECK(strstr(qh_last_error(), "offset 3") != NULL, "invalid UTF-8 message: %s", qh_last_error());
    const char *bads[] = {"\xFF", "\xC0\xAF" /* overlong */, "\xED\xA0\x80" /* surrogate */,
                          "\xF4\x90\x80\x80" /* > U+10FFFF */, "\xE2\x82" /* truncated */};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        st = qh_tokenizer_encode(t, bads[i], strlen(bads[i]), 0, &ids, &n);
        QH_CHECK(st == QH_EINVAL, "invalid UTF-8 case %zu accepted", i);
        free(ids);
    }
    /* Embedded NUL is a valid character (U+0000 maps to byte-level "Ā"). */
    const char nul[] = "a\0b";
    st = qh_tokenizer_encode(t, nul, 3, 0, &ids, &n);
    QH_CHECK(st == QH_OK && n >= 2, "embedded NUL");
    free(ids);
    qh_tokenizer_free(t);
}

static void set_add_prefix_space(cJSON *root)
{
    cJSON *pre = cJSON_GetObjectItem(root, "pre_tokenizer");
    cJSON_ReplaceItemInObject(pre, "add_prefix_space", cJSON_CreateTrue());
}

static void test_add_prefix_space(void)
{
    qh_tokenizer *t = load_variant(OPT7M_TOKENIZER, set_add_prefix_space);
    QH_CHECK(t != NULL, "load add_prefix_space variant: %s", qh_last_error());
    if (!t) return;
    /* A space is prepended to each text piece unless it already starts with one. */
    CHECK_ENC(t, "aps: Hello world", "Hello world", 1, 0, 388, 466, 82, 1093);
    CHECK_ENC(t, "aps: leading space kept single", " Hello", 1, 0, 388, 466, 82);
    CHECK_ENC(t, "aps: after special", "<s>Hi there", 1, 0, 0, 388, 76, 520);
    qh_tokenizer_free(t);
}

/* ---- SentencePiece-style BPE (hand-built fixtures) ----------------------------------- */

/* tests/data/tok_sp_tokenizer.json: normalizer Prepend("▁") + Replace(" ", "▁"),
 * no pre-tokenizer (the whole normalized piece is one word), byte_fallback,
 * fuse_unk, unk "<unk>", template "<s> A".  Vocab: <unk>0 <s>1 </s>2
 * <0xF0>3 <0x9F>4 <0x98>5 <0x80>6 ▁7 h8 e9 l10 o11 w12 r13 d14 lo15 ▁h16 el17
 * ▁hel18 ▁hello19 or20 ▁w21 ▁wor22 ▁worl23; added <sep>24 (not special, not
 * normalized) and [M]25 (lstrip).  Merges by rank: 0 "l o", 1 "▁ h", 2 "e l",
 * 3 "▁h el", 4 "▁hel lo", 5 "o r", 6 "▁ w", 7 "▁w or", 8 "▁wor l".
 *
 * "hello world" -> "▁hello▁world" -> ▁ h e l l o ▁ w o r l d.
 *   rank 0 merges l+o (the second l; the first l's pair "l l" is no merge):
 *   ▁ h e l lo ▁ w o r l d; rank 1: ▁h e l lo ...; rank 2: ▁h el lo ...;
 *   rank 3: ▁hel lo; rank 4: ▁hello; rank 5: ... w or l d; rank 6: ▁w or l d;
 *   rank 7: ▁wor l d; rank 8: ▁worl d; "▁worl d" is no merge.
 *   -> <s> ▁hello ▁worl d = 1 19 23 14.  (Merging left to right instead of by
 *   rank would give ▁h el ... first and a different result for "hello".)
 * "hello<sep>world": the added token splits first; each side is normalized on
 *   its own, so both get "▁": ▁hello | <sep> | ▁worl d = 1 19 24 23 14.
 * "hex 😀" -> "▁hex▁😀": x is not in the vocab and <0x78> is absent -> <unk>;
 *   😀 is F0 9F 98 80 -> byte fallback 3 4 5 6; merges: ▁ h -> ▁h only
 *   ("▁h e" is no merge): 1 16 9 0 7 3 4 5 6.
 * "xx" -> ▁ x x: the two unknowns fuse into one <unk>: 1 7 0.
 * "hello [M]": [M] strips the space on its left: ▁hello [M] = 1 19 25.
 * "hello  world" -> "▁hello▁▁world": the extra ▁ stays alone: 1 19 7 23 14.
 * "<s>hello": the special token, then "▁hello": 1 1 19. */
static void test_sentencepiece_fixture(void)
{
    qh_tokenizer *t = NULL;
    int st = qh_tokenizer_load(SP_FIXTURE, &t);
    QH_CHECK(st == QH_OK, "load %s: %s", SP_FIXTURE, st ? qh_last_error() : "");
    if (st != QH_OK) return;
    QH_CHECK(qh_tokenizer_vocab_size(t) == 26, "fixture vocab size %d", qh_tokenizer_vocab_size(t));
    CHECK_ENC(t, "sp: merges by rank", "hello world", 1, 1, 19, 23, 14);
    CHECK_ENC(t, "sp: added token mid-text", "hello<sep>world", 1, 1, 19, 24, 23, 14);
    CHECK_ENC(t, "sp: byte fallback and unk", "hex \xF0\x9F\x98\x80", 1, 1, 16, 9, 0, 7, 3, 4, 5, 6);
    CHECK_ENC(t, "sp: fused unk", "xx", 1, 1, 7, 0);
    CHECK_ENC(t, "sp: lstrip", "hello [M]", 1, 1, 19, 25);
    CHECK_ENC(t, "sp: double space", "hello  world", 1, 1, 19, 7, 23, 14);
    CHECK_ENC(t, "sp: leading special", "<s>hello", 1, 1, 1, 19);
    CHECK_ENC(t, "sp: no BOS", "hello", 0, 19);
    CHECK_ENC(t, "sp: empty", "", 1, 1);
    qh_tokenizer_free(t);
}

/* tests/data/tok_metaspace_tokenizer.json: the same model with no normalizer
 * and a Metaspace pre-tokenizer (replacement ▁, prepend_scheme "first",
 * split).  Words start at each ▁, and only the piece at the start of the text
 * gets a ▁ prepended:
 * "hello world" -> ▁hello | ▁world -> 1 19 23 14 (as above);
 * "hello<sep>world": "world" does not start the text, so no ▁:
 *   w o r l d -> rank 5 o+r -> w or l d (no "w or" merge) = 12 20 10 14;
 * "<s>hello": likewise "hello" -> h e l l o -> h e l lo -> h el lo = 8 17 15;
 * "hello  world" -> ▁hello | ▁ | ▁world = 19 7 23 14. */
static void test_metaspace_fixture(void)
{
    qh_tokenizer *t = NULL;
    int st = qh_tokenizer_load(METASPACE_FIXTURE, &t);
    QH_CHECK(st == QH_OK, "load %s: %s", METASPACE_FIXTURE, st ? qh_last_error() : "");
    if (st != QH_OK) return;
    CHECK_ENC(t, "ms: split words", "hello world", 1, 1, 19, 23, 14);
    CHECK_ENC(t, "ms: prepend first only", "hello<sep>world", 1, 1, 19, 24, 12, 20, 10, 14);
    CHECK_ENC(t, "ms: after special", "<s>hello", 1, 1, 1, 8, 17, 15);
    CHECK_ENC(t, "ms: double space", "hello  world", 1, 1, 19, 7, 23, 14);
    CHECK_ENC(t, "ms: byte fallback", "hex \xF0\x9F\x98\x80", 1, 1, 16, 9, 0, 7, 3, 4, 5, 6);
    qh_tokenizer_free(t);
}

/* ignore_merges: a word that is itself in the vocab is taken whole. */
static void add_hex_ignore_merges(cJSON *root)
{
    cJSON *model = cJSON_GetObjectItem(root, "model");
    cJSON_ReplaceItemInObject(model, "ignore_merges", cJSON_CreateTrue());
    cJSON_AddNumberToObject(cJSON_GetObjectItem(model, "vocab"), "\xE2\x96\x81hex", 26);
}

static void test_ignore_merges(void)
{
    qh_tokenizer *t = load_variant(SP_FIXTURE, add_hex_ignore_merges);
    QH_CHECK(t != NULL, "load ignore_merges variant: %s", qh_last_error());
    if (!t) return;
    CHECK_ENC(t, "ignore_merges: whole word", "hex", 1, 1, 26);
    CHECK_ENC(t, "ignore_merges: not a vocab word", "hexx", 1, 1, 16, 9, 0);
    qh_tokenizer_free(t);
}

/* Whole-file answers for the fixtures (byte fallback and unk at scale, one
 * 1.3 MB "word" for the pre-tokenizer-less fixture), from the reference library. */
static void check_file_answer(const char *tok_path, const char *data, size_t want_n, const char *want_sha)
{
    if (access(data, R_OK) != 0) { QH_SKIP("%s absent", data); return; }
    qh_tokenizer *t = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int st = qh_tokenizer_load(tok_path, &t);
    if (st == QH_OK) st = qh_tokenize_file(t, data, &ids, &n);
    QH_CHECK(st == QH_OK, "%s on %s: %s", tok_path, data, st ? qh_last_error() : "");
    if (st == QH_OK) {
        char hex[65];
        qh_ids_sha256_hex(ids, n, hex);
        QH_CHECK(n == want_n, "%s on %s: %zu tokens, want %zu", tok_path, data, n, want_n);
        QH_CHECK(strcmp(hex, want_sha) == 0, "%s on %s: ids sha256 %s, want %s", tok_path, data, hex, want_sha);
    }
    free(ids);
    qh_tokenizer_free(t);
}

static void test_fixture_files(void)
{
    check_file_answer(METASPACE_FIXTURE, "data/wikitext2_test.raw", 959889,
                      "b1cd230d3f0306ca2c4d048189878ed07fb25b4f15e2bf0c2e4a70541c18accf");
    if (qh_test_fast()) { QH_SKIP("fast mode: SentencePiece fixture on a whole file"); return; }
    check_file_answer(SP_FIXTURE, "data/wikitext2_test.raw", 959890,
                      "f8ce9c7c54bdf776e4b5196ad9a8e4dca7e1207905a8a796f03f00012c95ca67");
}

/* ---- bad tokenizer.json --------------------------------------------------------------- */

static void test_bad_files(void)
{
    qh_tokenizer *t = NULL;
    int st = qh_tokenizer_load("tests/data/no_such_tokenizer.json", &t);
    QH_CHECK(st == QH_EIO && t == NULL, "missing file: status %d", st);
    QH_CHECK(strstr(qh_last_error(), "no_such_tokenizer.json") != NULL, "missing file message: %s",
             qh_last_error());
    check_load_error("not JSON", "{\"model\": {\"type\": \"BPE\", ", QH_EINVAL, "not valid JSON");
    check_load_error("top-level array", "[1, 2]", QH_EINVAL, "not a JSON object");
    check_load_error("no model", "{\"normalizer\": null}", QH_EINVAL, "'model' is missing");
    check_load_error("unknown model type", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}",
                     QH_EUNIMPL, "WordPiece");
    check_load_error("missing vocab", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", QH_EINVAL,
                     "'model.vocab' is missing");
    check_load_error("merge outside vocab",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                     QH_EINVAL, "'model.merges'[0]");
    check_load_error("bad merge string",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", QH_EINVAL,
                     "one space");
    check_load_error("unk outside vocab",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"unk_token\": \"<unk>\"}}",
                     QH_EINVAL, "unk_token");
    check_load_error("added token not UTF-8",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, "
                     "\"added_tokens\": [{\"id\": 1, \"content\": \"\xC3\"}]}",
                     QH_EINVAL, "not valid UTF-8");
    check_load_error("unsupported pre-tokenizer",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, "
                     "\"pre_tokenizer\": {\"type\": \"Whitespace\"}}",
                     QH_EUNIMPL, "Whitespace");
    check_load_error("unsupported normalizer",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"normalizer\": {\"type\": \"NFKC\"}}",
                     QH_EUNIMPL, "NFKC");
    check_load_error("template without its special token",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"post_processor\": "
                     "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, "
                     "{\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {}}}",
                     QH_EINVAL, "<s>");
    /* 1 + the largest id is the vocabulary size, an int32 */
    check_load_error("vocab id INT32_MAX",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2147483647}}}",
                     QH_EINVAL, "token \"b\": id 2147483647 is above the largest id 2147483646");
    check_load_error("added token id INT32_MAX",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, "
                     "\"added_tokens\": [{\"id\": 2147483647, \"content\": \"<s>\"}]}",
                     QH_EINVAL, "'added_tokens'[0] (\"<s>\"): 'id': id 2147483647 is above");
    check_load_error("vocab id 1e300",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1e300}}}",
                     QH_EINVAL, "token \"a\": id 1.0000000000000001e+300 is above");
    check_load_error("vocab id 0.5",
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0.5}}}",
                     QH_EINVAL, "token \"a\": expected a non-negative integer id");
}

/* A word that encodes to no ids (unknown characters, no unk token), seen
 * twice: the second time is a cache hit of 0 ids while the cache holds no
 * ids at all (a NULL + 0 offset, which clang's UBSan reports). */
static void test_empty_word_twice(void)
{
    char *path = write_temp("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, "
                            "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                            "\"use_regex\": true}}");
    QH_CHECK(path != NULL, "empty word twice: cannot write temporary file");
    if (!path) return;
    qh_tokenizer *t = NULL;
    int st = qh_tokenizer_load(path, &t);
    QH_CHECK(st == QH_OK, "empty word twice: load: %s", st ? qh_last_error() : "");
    if (st == QH_OK) {
        int32_t *ids = NULL;
        size_t n = 99;
        st = qh_tokenizer_encode(t, "q.q.a", 5, 0, &ids, &n);
        QH_CHECK(st == QH_OK && n == 1 && ids[0] == 0, "\"q.q.a\" encodes to [0] (status %d, %zu ids)",
                 st, n);
        free(ids);
    }
    qh_tokenizer_free(t);
    unlink(path);
    free(path);
}

/* ---- known answers: reference.json of every model ------------------------------------- */

static void check_reference_file(const qh_tokenizer *t, const char *model_dir, const cJSON *entry)
{
    char path[1024];
    snprintf(path, sizeof path, "data/%s", entry->string);
    const cJSON *n_tokens = cJSON_GetObjectItem(entry, "n_tokens");
    const cJSON *sha = cJSON_GetObjectItem(entry, "ids_sha256_int32le");
    const cJSON *first = cJSON_GetObjectItem(entry, "first_ids");
    QH_CHECK(cJSON_IsNumber(n_tokens) && cJSON_IsString(sha) && cJSON_IsArray(first),
             "%s reference.json: %s lacks n_tokens/ids_sha256_int32le/first_ids", model_dir, entry->string);
    if (!cJSON_IsNumber(n_tokens) || !cJSON_IsString(sha) || !cJSON_IsArray(first)) return;
    if (access(path, R_OK) != 0) { QH_SKIP("%s: %s absent", model_dir, path); return; }
    int32_t *ids = NULL;
    size_t n = 0;
    int st = qh_tokenize_file(t, path, &ids, &n);
    QH_CHECK(st == QH_OK, "%s: tokenize %s: %s", model_dir, path, st ? qh_last_error() : "");
    if (st != QH_OK) return;
    char hex[65];
    qh_ids_sha256_hex(ids, n, hex);
    QH_CHECK((double)n == n_tokens->valuedouble, "%s %s: %zu tokens, want %.0f", model_dir, path, n,
             n_tokens->valuedouble);
    QH_CHECK(strcmp(hex, sha->valuestring) == 0, "%s %s: ids sha256 %s, want %s", model_dir, path, hex,
             sha->valuestring);
    int k = 0, first_ok = 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, first) {
        if ((size_t)k >= n || ids[k] != (int32_t)e->valuedouble) first_ok = 0;
        k++;
    }
    QH_CHECK(first_ok && k > 0, "%s %s: first %d ids differ", model_dir, path, k);
    free(ids);
}

static void check_reference_model(const char *model_dir)
{
    char ref_path[1024], tok_path[1024];
    snprintf(ref_path, sizeof ref_path, "%s/reference.json", model_dir);
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", model_dir);
    if (access(ref_path, R_OK) != 0 || access(tok_path, R_OK) != 0) {
        QH_SKIP("%s: reference.json or tokenizer.json absent", model_dir);
        return;
    }
    char *text = NULL;
    size_t len;
    cJSON *ref = NULL;
    qh_tokenizer *t = NULL;
    QH_CHECK(qh_tok_read_file(ref_path, &text, &len) == QH_OK, "read %s", ref_path);
    ref = text ? cJSON_Parse(text) : NULL;
    const cJSON *files = cJSON_GetObjectItem(ref, "files");
    QH_CHECK(cJSON_IsObject(files) && cJSON_GetArraySize(files) > 0, "%s: no \"files\"", ref_path);
    int st = qh_tokenizer_load(tok_path, &t);
    QH_CHECK(st == QH_OK, "load %s: %s", tok_path, st ? qh_last_error() : "");
    if (st == QH_OK && cJSON_IsObject(files)) {
        const cJSON *entry;
        cJSON_ArrayForEach(entry, files) check_reference_file(t, model_dir, entry);
    }
    qh_tokenizer_free(t);
    cJSON_Delete(ref);
    free(text);
}

/* A FIFO or a directory where a text file is expected is refused by name at
 * once: before, opening a FIFO blocked until a writer appeared (the alarm
 * turns such a hang into a failure instead of a stuck suite). */
static void test_not_regular_files(void)
{
    char dir[] = "/tmp/qh_test_tok_XXXXXX", fifo[64];
    QH_ASSERT(mkdtemp(dir) != NULL);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    QH_ASSERT(mkfifo(fifo, 0600) == 0);
    char *text = NULL;
    size_t len = 0;
    alarm(20);
    int st = qh_tok_read_file(fifo, &text, &len);
    QH_CHECK(st == QH_EIO && text == NULL, "FIFO refused: status %d", st);
    QH_CHECK(strstr(qh_last_error(), "a FIFO, expected a regular file") != NULL, "FIFO message: %s",
             qh_last_error());
    qh_tokenizer *t = NULL;
    st = qh_tokenizer_load(dir, &t);
    QH_CHECK(st == QH_EIO && t == NULL, "directory refused: status %d", st);
    QH_CHECK(strstr(qh_last_error(), "a directory, expected a regular file") != NULL,
             "directory message: %s", qh_last_error());
    alarm(0);
    unlink(fifo);
    rmdir(dir);
}

int main(void)
{
    test_sha256();
    test_unicode_classes();
    test_gpt2_pattern();
    test_byte_level();
    test_add_prefix_space();
    test_sentencepiece_fixture();
    test_metaspace_fixture();
    test_ignore_merges();
    test_fixture_files();
    test_bad_files();
    test_empty_word_twice();
    test_not_regular_files();
    const char *models[] = {"models/opt-7m", "models/llama-9m", "../shared/models/opt-30m"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) check_reference_model(models[i]);
    QH_NOTE("Unicode tables: version %s", qh_unicode_version);
    return qh_test_summary();
}
