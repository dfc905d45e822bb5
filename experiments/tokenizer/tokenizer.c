/* tokenizer.c -- byte-pair-encoding tokenizers described by a Hugging Face
 * tokenizer.json: GPT-2/OPT byte-level BPE and Llama/SentencePiece-style BPE
 * (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with
 * Subword Units"; byte-level variant of Radford et al. 2019, GPT-2).
 *
 * Pipeline of qh_tokenizer_encode, in the order of the reference library:
 *   1. split the text on added tokens whose "normalized" is false;
 *   2. normalize each remaining piece, then split it on the normalized added
 *      tokens (whose contents were normalized the same way at load time);
 *   3. pre-tokenize each remaining piece into words (ByteLevel: GPT-2 pattern
 *      plus byte-to-unicode mapping; Metaspace: spaces to the replacement
 *      character, optional prefix and split);
 *   4. BPE each word: one symbol per character (or byte-fallback bytes, or
 *      unk), then repeatedly merge the adjacent pair of lowest merge rank
 *      (leftmost first on ties) using a min-heap over a linked list of
 *      symbols; results are cached per word for the duration of one call;
 *   5. the post-processor adds the template's special tokens around the ids.
 * The loader (what tokenizer.json keys are read, what is refused) lives in
 * tokenizer_load.c; tokenizer_internal.h holds the shared struct.
 * Left out: dropout, continuing_subword_prefix/end_of_word_suffix, regex
 * Split pre-tokenizers, Unicode normalization forms (NFC/NFKC), pair
 * templates, truncation and padding, decoding ids back to text.
 */
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer/sha256.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode_tables.h"

/* ---- per-call state ---------------------------------------------------------- */

typedef struct {
    int32_t id;
    int32_t prev, next;   /* neighbours in the live list, -1 at the ends */
    int32_t len;          /* bytes of the word it covers; 0 once merged away */
} bpe_symbol;

typedef struct {
    int32_t rank, pos, merged;
} bpe_candidate;

typedef struct {
    const qh_tokenizer *t;
    tok_ids out;                       /* ids of the whole text */
    tok_strmap cache;                  /* word -> (offset << 24 | count) into cache_ids */
    tok_ids cache_ids;
    tok_buf norm;                      /* the normalized piece being processed */
    tok_buf level[QH_TOK_MAX_STEPS];   /* per pre-tokenizer step: its transformed text */
    bpe_symbol *sym;
    size_t sym_cap;
    bpe_candidate *heap;
    size_t heap_n, heap_cap;
    tok_ids word_ids;                  /* ids of the word being merged */
} enc_state;

static void enc_state_free(enc_state *st)
{
    free(st->out.p);
    tok_strmap_free(&st->cache);
    free(st->cache_ids.p);
    free(st->norm.p);
    for (int i = 0; i < QH_TOK_MAX_STEPS; i++) free(st->level[i].p);
    free(st->sym);
    free(st->heap);
    free(st->word_ids.p);
}

/* ---- BPE merge loop -------------------------------------------------------- */

static int cand_less(const bpe_candidate *a, const bpe_candidate *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int heap_push(enc_state *st, int32_t rank, int32_t pos, int32_t merged)
{
    QH_TRY(tok_reserve((void **)&st->heap, &st->heap_cap, st->heap_n + 1, sizeof *st->heap));
    size_t i = st->heap_n++;
    bpe_candidate c = {rank, pos, merged};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(&c, &st->heap[parent])) break;
        st->heap[i] = st->heap[parent];
        i = parent;
    }
    st->heap[i] = c;
    return QH_OK;
}

static bpe_candidate heap_pop(enc_state *st)
{
    bpe_candidate top = st->heap[0];
    bpe_candidate last = st->heap[--st->heap_n];
    size_t i = 0, n = st->heap_n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && cand_less(&st->heap[child + 1], &st->heap[child])) child++;
        if (!cand_less(&st->heap[child], &last)) break;
        st->heap[i] = st->heap[child];
        i = child;
    }
    if (n > 0) st->heap[i] = last;
    return top;
}

/* Queues the pair starting at symbol pos (with its live successor) if it is a merge. */
static int queue_pair(enc_state *st, int32_t pos)
{
    if (pos < 0 || st->sym[pos].next < 0) return QH_OK;
    int32_t rank, merged;
    if (tok_pairmap_get(&st->t->merges, st->sym[pos].id, st->sym[st->sym[pos].next].id, &rank, &merged))
        return heap_push(st, rank, pos, merged);
    return QH_OK;
}

/* Applies merges to st->sym[0..n) until no adjacent pair is a merge, lowest
 * rank first; stale queue entries (a side already merged into something
 * else) are recognised by re-checking the pair and skipped. */
static int merge_symbols(enc_state *st, size_t n)
{
    st->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) QH_TRY(queue_pair(st, (int32_t)i));
    while (st->heap_n > 0) {
        bpe_candidate c = heap_pop(st);
        bpe_symbol *left = &st->sym[c.pos];
        if (left->len == 0 || left->next < 0) continue;
        bpe_symbol *right = &st->sym[left->next];
        int32_t rank, merged;
        if (!tok_pairmap_get(&st->t->merges, left->id, right->id, &rank, &merged) || merged != c.merged)
            continue;
        left->id = merged;
        left->len += right->len;
        right->len = 0;
        left->next = right->next;
        if (left->next >= 0) st->sym[left->next].prev = c.pos;
        QH_TRY(queue_pair(st, left->prev));
        QH_TRY(queue_pair(st, c.pos));
    }
    return QH_OK;
}

static int add_symbol(enc_state *st, size_t *n, int32_t id, int32_t len)
{
    QH_TRY(tok_reserve((void **)&st->sym, &st->sym_cap, *n + 1, sizeof *st->sym));
    st->sym[*n] = (bpe_symbol){id, (int32_t)*n - 1, -1, len};
    if (*n > 0) st->sym[*n - 1].next = (int32_t)*n;
    (*n)++;
    return QH_OK;
}

/* One symbol per character of word: its vocabulary id, else its bytes as
 * <0xNN> tokens (byte_fallback, when all exist), else unk (consecutive unks
 * fused with fuse_unk), else the character is dropped (as the reference
 * does when the model has no unk token). */
static int initial_symbols(enc_state *st, const char *word, size_t len, size_t *n_out)
{
    const qh_tokenizer *t = st->t;
    size_t n = 0;
    int32_t unk_len = 0;   /* pending unk symbol covering unk_len bytes */
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t cl = tok_utf8_decode((const uint8_t *)word + i, len - i, &cp);
        QH_ASSERT(cl > 0);   /* input validated before encoding */
        int64_t *id = tok_strmap_get(&t->vocab, word + i, cl);
        if (id) {
            if (unk_len) { QH_TRY(add_symbol(st, &n, t->unk_id, unk_len)); unk_len = 0; }
            QH_TRY(add_symbol(st, &n, (int32_t)*id, (int32_t)cl));
        } else if (t->byte_fallback && bytes_all_known(t, word + i, cl)) {
            for (size_t k = 0; k < cl; k++)
                QH_TRY(add_symbol(st, &n, t->byte_ids[(uint8_t)word[i + k]], 1));
        } else if (t->unk_id >= 0) {
            if (unk_len && !t->fuse_unk) { QH_TRY(add_symbol(st, &n, t->unk_id, unk_len)); unk_len = 0; }
            unk_len += (int32_t)cl;
        }
        i += cl;
    }
    if (unk_len) QH_TRY(add_symbol(st, &n, t->unk_id, unk_len));
    *n_out = n;
    return QH_OK;
}

/* BPE of one word into st->word_ids. */
static int bpe_word(enc_state *st, const char *word, size_t len)
{
    st->word_ids.n = 0;
    if (st->t->ignore_merges) {
        int64_t *id = tok_strmap_get(&st->t->vocab, word, len);
        if (id) return tok_ids_push(&st->word_ids, (int32_t)*id);
    }
    size_t n;
    QH_TRY(initial_symbols(st, word, len, &n));
    QH_TRY(merge_symbols(st, n));
    for (int32_t i = n ? 0 : -1; i >= 0; i = st->sym[i].next)
        QH_TRY(tok_ids_push(&st->word_ids, st->sym[i].id));
    return QH_OK;
}

#define CACHE_COUNT_BITS 24

/* Appends the ids of one pre-tokenized word, through the per-call cache. */
static int model_word(enc_state *st, const char *word, size_t len)
{
    if (len == 0) return QH_OK;
    int64_t *hit = tok_strmap_get(&st->cache, word, len);
    if (hit) {
        size_t off = (size_t)(*hit >> CACHE_COUNT_BITS), cnt = (size_t)(*hit & ((1 << CACHE_COUNT_BITS) - 1));
        /* a word of no ids (unknown characters, no unk token) may be cached
         * while cache_ids is still NULL: NULL + 0 is undefined behaviour */
        if (cnt == 0) return QH_OK;
        return tok_ids_append(&st->out, st->cache_ids.p + off, cnt);
    }
    QH_TRY(bpe_word(st, word, len));
    QH_TRY(tok_ids_append(&st->out, st->word_ids.p, st->word_ids.n));
    if (st->word_ids.n < (1u << CACHE_COUNT_BITS)) {
        int64_t entry = (int64_t)st->cache_ids.n << CACHE_COUNT_BITS | (int64_t)st->word_ids.n;
        QH_TRY(tok_ids_append(&st->cache_ids, st->word_ids.p, st->word_ids.n));
        QH_TRY(tok_strmap_put(&st->cache, word, len, entry));
    }
    return QH_OK;
}

/* ---- pre-tokenizers -------------------------------------------------------- */

static int pretokenize(enc_state *st, int step, const char *s, size_t n, int at_origin);

static int char_class_at(const char *s, size_t n, size_t i, size_t *len)
{
    uint32_t cp;
    *len = tok_utf8_decode((const uint8_t *)s + i, n - i, &cp);
    QH_ASSERT(*len > 0);
    return qh_unicode_class(cp);
}

/* End of the GPT-2 pattern match starting at s[i], i < n:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Alternatives are tried in order (leftmost-first), as a backtracking engine
 * does; the pattern matches every character, so pieces tile the text. */
size_t qh_gpt2_piece_end(const char *s, size_t n, size_t i)
{
    if (s[i] == '\'' && i + 1 < n) {
        char a = s[i + 1], b = i + 2 < n ? s[i + 2] : '\0';
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    size_t cl;
    int cls = char_class_at(s, n, i, &cl);
    size_t j = i + cl;
    if (s[i] == ' ' && j < n) {   /* " ?X+": a single space may lead a run of letters, digits or other */
        size_t cl2;
        int cls2 = char_class_at(s, n, j, &cl2);
        if (cls2 != QH_UCLASS_SPACE) { cls = cls2; j += cl2; }
    }
    if (cls != QH_UCLASS_SPACE) {
        while (j < n) {
            size_t l;
            if (char_class_at(s, n, j, &l) != cls) break;
            j += l;
        }
        return j;
    }
    /* Whitespace run: \s+(?!\S) leaves the last white character for the next
     * piece when a non-space follows and the run has two or more characters. */
    size_t last = i;
    while (j < n) {
        size_t l;
        if (char_class_at(s, n, j, &l) != QH_UCLASS_SPACE) break;
        last = j;
        j += l;
    }
    if (j < n && last > i) return last;
    return j;
}

static int byte_level_step(enc_state *st, int step, const char *s, size_t n, int at_origin)
{
    const tok_pretok *p = &st->t->pretok[step];
    tok_buf *lv = &st->level[step];
    if (n == 0) return QH_OK;
    /* Level buffer layout: [source text (with the prefix space) | mapped piece]. */
    lv->n = 0;
    if (p->add_prefix_space && s[0] != ' ') QH_TRY(tok_buf_append(lv, " ", 1));
    QH_TRY(tok_buf_append(lv, s, n));
    size_t src_len = lv->n;
    size_t i = 0;
    while (i < src_len) {
        size_t end = p->use_regex ? qh_gpt2_piece_end(lv->p, src_len, i) : src_len;
        lv->n = src_len;
        for (size_t k = i; k < end; k++) {
            const uint8_t b = (uint8_t)lv->p[k];
            QH_TRY(tok_buf_append(lv, st->t->byte_map[b], st->t->byte_map_len[b]));
        }
        QH_TRY(pretokenize(st, step + 1, lv->p + src_len, lv->n - src_len, at_origin && i == 0));
        i = end;
    }
    return QH_OK;
}

static int starts_with(const char *s, size_t n, const char *pre, size_t pn)
{
    return n >= pn && memcmp(s, pre, pn) == 0;
}

static int metaspace_step(enc_state *st, int step, const char *s, size_t n, int at_origin)
{
    const tok_pretok *p = &st->t->pretok[step];
    tok_buf *lv = &st->level[step];
    lv->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') QH_TRY(tok_buf_append(lv, p->replacement, p->replacement_len));
        else QH_TRY(tok_buf_append(lv, s + i, 1));
    }
    int prepend = p->prepend_scheme == QH_PREPEND_ALWAYS ||
                  (p->prepend_scheme == QH_PREPEND_FIRST && at_origin);
    if (prepend && lv->n > 0 && !starts_with(lv->p, lv->n, p->replacement, p->replacement_len)) {
        size_t old = lv->n;
        QH_TRY(tok_buf_append(lv, p->replacement, p->replacement_len));
        memmove(lv->p + p->replacement_len, lv->p, old);
        memcpy(lv->p, p->replacement, p->replacement_len);
    }
    if (!p->split) return pretokenize(st, step + 1, lv->p, lv->n, at_origin);
    /* Split before every replacement character (it starts the next piece). */
    size_t start = 0, r = p->replacement_len;
    for (size_t i = 1; i + r <= lv->n; i++) {
        if (memcmp(lv->p + i, p->replacement, r) != 0) continue;
        QH_TRY(pretokenize(st, step + 1, lv->p + start, i - start, at_origin && start == 0));
        start = i;
    }
    return pretokenize(st, step + 1, lv->p + start, lv->n - start, at_origin && start == 0);
}

/* Runs pre-tokenizer steps step.. on s[0..n); past the last step, s is a word. */
static int pretokenize(enc_state *st, int step, const char *s, size_t n, int at_origin)
{
    if (step == st->t->n_pretok) return model_word(st, s, n);
    switch (st->t->pretok[step].kind) {
    case QH_PRETOK_BYTE_LEVEL: return byte_level_step(st, step, s, n, at_origin);
    case QH_PRETOK_METASPACE: return metaspace_step(st, step, s, n, at_origin);
    }
    QH_ASSERT(0);
    return QH_EINVAL;
}

/* ---- normalizer and added tokens ------------------------------------------ */

int qh_tok_normalize(const qh_tokenizer *t, const char *s, size_t n, tok_buf *out)
{
    out->n = 0;
    QH_TRY(tok_buf_append(out, s, n));
    tok_buf tmp = {0};
    int st = QH_OK;
    for (int k = 0; k < t->n_norm && out->n > 0; k++) {
        const tok_norm *op = &t->norm[k];
        tmp.n = 0;
        if (op->kind == QH_NORM_PREPEND) {
            if ((st = tok_buf_append(&tmp, op->a, op->a_len)) != QH_OK) goto cleanup;
            if ((st = tok_buf_append(&tmp, out->p, out->n)) != QH_OK) goto cleanup;
        } else {   /* QH_NORM_REPLACE: every non-overlapping occurrence, left to right */
            size_t i = 0;
            while (i < out->n) {
                if (starts_with(out->p + i, out->n - i, op->a, op->a_len)) {
                    if ((st = tok_buf_append(&tmp, op->b, op->b_len)) != QH_OK) goto cleanup;
                    i += op->a_len;
                } else {
                    if ((st = tok_buf_append(&tmp, out->p + i, 1)) != QH_OK) goto cleanup;
                    i++;
                }
            }
        }
        out->n = 0;
        if ((st = tok_buf_append(out, tmp.p, tmp.n)) != QH_OK) goto cleanup;
    }
cleanup:
    free(tmp.p);
    return st;
}

static int is_space_at(const char *s, size_t n, size_t i, size_t *len)
{
    return char_class_at(s, n, i, len) == QH_UCLASS_SPACE;
}

/* Offset of the character that ends just before byte i > 0. */
static size_t prev_char_start(const char *s, size_t i)
{
    size_t k = i - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
    return k;
}

/* Byte offset where the trailing white space of s[0..n) starts. */
static size_t trailing_space_start(const char *s, size_t n)
{
    size_t i = n;
    while (i > 0) {
        size_t k = prev_char_start(s, i), l;
        if (!is_space_at(s, n, k, &l)) break;
        i = k;
    }
    return i;
}

static size_t leading_space_len(const char *s, size_t n)
{
    size_t i = 0, l;
    while (i < n && is_space_at(s, n, i, &l)) i += l;
    return i;
}

static int is_word_char_at(const char *s, size_t n, size_t i)
{
    size_t l;
    int cls = char_class_at(s, n, i, &l);
    return cls == QH_UCLASS_LETTER || cls == QH_UCLASS_NUMBER || s[i] == '_';
}

/* Longest added token of set matching at s[i], or NULL. */
static const tok_added *match_added_at(const tok_added_set *set, const char *s, size_t n, size_t i)
{
    if (!set->first_byte[(uint8_t)s[i]]) return NULL;
    for (size_t k = 0; k < set->n; k++) {   /* sorted longest first */
        const tok_added *a = &set->v[k];
        if (a->len <= n - i && memcmp(s + i, a->content, a->len) == 0) return a;
    }
    return NULL;
}

typedef int (*piece_fn)(enc_state *st, const char *s, size_t n, int at_origin);

/* Splits s[0..n) on the added tokens of set (leftmost-longest), appending
 * their ids and handing the text between them to on_text. */
static int split_added(enc_state *st, const tok_added_set *set, const char *s, size_t n, int at_origin,
                       piece_fn on_text)
{
    size_t done = 0;   /* s[0..done) has been emitted */
    for (size_t i = 0; i < n && set->n > 0; i++) {
        const tok_added *a = match_added_at(set, s, n, i);
        if (!a) continue;
        size_t start = i, stop = i + a->len;
        if (a->single_word && ((start > 0 && is_word_char_at(s, n, prev_char_start(s, start))) ||
                               (stop < n && is_word_char_at(s, n, stop))))
            continue;
        if (a->lstrip) {
            start = trailing_space_start(s, start);
            if (start < done) start = done;
        }
        if (a->rstrip) stop += leading_space_len(s + stop, n - stop);
        if (done < start) QH_TRY(on_text(st, s + done, start - done, at_origin && done == 0));
        QH_TRY(tok_ids_push(&st->out, a->id));
        done = stop;
        i = stop - 1;
    }
    if (done < n) QH_TRY(on_text(st, s + done, n - done, at_origin && done == 0));
    return QH_OK;
}

static int pretokenize_piece(enc_state *st, const char *s, size_t n, int at_origin)
{
    return pretokenize(st, 0, s, n, at_origin);
}

/* A piece of raw text between non-normalized added tokens. */
static int normalize_piece(enc_state *st, const char *s, size_t n, int at_origin)
{
    QH_TRY(qh_tok_normalize(st->t, s, n, &st->norm));
    return split_added(st, &st->t->added_normalized, st->norm.p, st->norm.n, at_origin, pretokenize_piece);
}

/* ---- public API ------------------------------------------------------------ */

int qh_tokenizer_encode(const qh_tokenizer *t, const char *text, size_t len, int add_special,
                        int32_t **ids, size_t *n)
{
    QH_ASSERT(t && ids && n && (text || len == 0));
    *ids = NULL;
    *n = 0;
    size_t bad = tok_utf8_first_invalid((const uint8_t *)text, len);
    if (bad < len)
        QH_ERROR(QH_EINVAL, "text is not valid UTF-8: byte 0x%02X at offset %zu", (uint8_t)text[bad], bad);
    enc_state st = {.t = t};
    int status = QH_OK;
    if (add_special) status = tok_ids_append(&st.out, t->post_prefix.p, t->post_prefix.n);
    if (status == QH_OK && len > 0)
        status = split_added(&st, &t->added_raw, text, len, 1, normalize_piece);
    if (status == QH_OK && add_special) status = tok_ids_append(&st.out, t->post_suffix.p, t->post_suffix.n);
    if (status == QH_OK) {
        *ids = st.out.p;
        *n = st.out.n;
        st.out.p = NULL;
    }
    enc_state_free(&st);
    return status;
}

/* Opens path for reading if it is a regular file: O_NONBLOCK so that a FIFO
 * cannot block the open, the kind checked on the descriptor, the flag cleared
 * afterwards.  A FIFO or a directory is refused by name, never read. */
static int open_regular_file(const char *path, FILE **out)
{
    struct stat sb;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) QH_ERROR(QH_EIO, "%s: cannot open for reading (%s)", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int is_dir = S_ISDIR(sb.st_mode), is_fifo = S_ISFIFO(sb.st_mode);
        close(fd);
        QH_ERROR(QH_EIO, "%s is %s, expected a regular file", path,
                 is_dir ? "a directory" : is_fifo ? "a FIFO" : "not a regular file");
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 || !(*out = fdopen(fd, "rb"))) {
        close(fd);
        QH_ERROR(QH_EIO, "%s: cannot open for reading (%s)", path, strerror(errno));
    }
    return QH_OK;
}

int qh_tok_read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f;
    QH_TRY(open_regular_file(path, &f));
    tok_buf b = {0};
    int status = QH_OK;
    char chunk[1 << 16];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((status = tok_buf_append(&b, chunk, got)) != QH_OK) goto cleanup;
    if (ferror(f)) QH_SET_ERROR(status, QH_EIO, "%s: read error", path);
    if (status == QH_OK && !b.p) status = tok_buf_append(&b, "", 0);   /* empty file: valid "" */
cleanup:
    fclose(f);
    if (status != QH_OK) { free(b.p); return status; }
    *data = b.p;
    *len = b.n;
    return QH_OK;
}

int qh_tokenize_file(const qh_tokenizer *t, const char *path, int32_t **ids, size_t *n)
{
    char *text;
    size_t len;
    *ids = NULL;
    *n = 0;
    QH_TRY(qh_tok_read_file(path, &text, &len));
    int status = qh_tokenizer_encode(t, text, len, 1, ids, n);
    if (status != QH_OK) qh_error_prefix("%s", path);
    free(text);
    return status;
}

int qh_tokenizer_vocab_size(const qh_tokenizer *t) { return t->vocab_size; }

void qh_ids_sha256_hex(const int32_t *ids, size_t n, char out[65])
{
    qh_sha256_ctx c;
    qh_sha256_init(&c);
    uint8_t chunk[4096];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {   /* explicit little-endian bytes, whatever the host order */
        uint32_t v = (uint32_t)ids[i];
        chunk[k++] = (uint8_t)v;
        chunk[k++] = (uint8_t)(v >> 8);
        chunk[k++] = (uint8_t)(v >> 16);
        chunk[k++] = (uint8_t)(v >> 24);
        if (k == sizeof chunk) { qh_sha256_update(&c, chunk, k); k = 0; }
    }
    if (k) qh_sha256_update(&c, chunk, k);
    uint8_t digest[32];
    qh_sha256_final(&c, digest);
    qh_sha256_to_hex(digest, out);
}
