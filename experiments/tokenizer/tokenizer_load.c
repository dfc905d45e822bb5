/* tokenizer_load.c -- reads a Hugging Face tokenizer.json (cJSON) into the
 * qh_tokenizer of tokenizer_internal.h.
 *
 * Read: model (type BPE: vocab, merges as "a b" strings or [a, b] pairs,
 * unk_token, byte_fallback, fuse_unk, ignore_merges, dropout null/0),
 * added_tokens, normalizer (Sequence, Prepend, Replace with a String pattern),
 * pre_tokenizer (Sequence, ByteLevel, Metaspace), post_processor
 * (TemplateProcessing single template, RobertaProcessing, BertProcessing,
 * ByteLevel, Sequence).  Ignored: decoder, truncation, padding.  Any other
 * component type gives QH_EUNIMPL naming the key, rather than silently
 * producing different ids from the reference.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

/* ---- small JSON helpers ---------------------------------------------------- */

/* Boolean member key of obj, def when absent or null; QH_EINVAL when of another type. */
static int json_bool(const cJSON *obj, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = def; return QH_OK; }
    if (!cJSON_IsBool(v)) QH_ERROR(QH_EINVAL, "key '%s': expected true or false", key);
    *out = cJSON_IsTrue(v);
    return QH_OK;
}

/* String member key of obj or NULL when absent or null; QH_EINVAL for another type. */
static int json_str(const cJSON *obj, const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return QH_OK;
    if (!cJSON_IsString(v)) QH_ERROR(QH_EINVAL, "key '%s': expected a string", key);
    *out = v->valuestring;
    return QH_OK;
}

/* Non-negative int32 id from a JSON number. */
/* The vocabulary size is 1 + the largest id and an int32, so the largest id
 * is INT32_MAX - 1.  The range is checked on the double, before converting. */
#define TOK_MAX_ID (INT32_MAX - 1)

static int json_id(const cJSON *v, const char *what, int32_t *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0))
        QH_ERROR(QH_EINVAL, "%s: expected a non-negative integer id", what);
    if (v->valuedouble > TOK_MAX_ID)
        QH_ERROR(QH_EINVAL, "%s: id %.17g is above the largest id %d (1 + the largest id is the "
                 "vocabulary size, an int32)", what, v->valuedouble, TOK_MAX_ID);
    if (v->valuedouble != (double)(int32_t)v->valuedouble)
        QH_ERROR(QH_EINVAL, "%s: expected a non-negative integer id", what);
    *out = (int32_t)v->valuedouble;
    return QH_OK;
}

static int component_type(const cJSON *obj, const char *where, const char **type)
{
    if (!cJSON_IsObject(obj)) QH_ERROR(QH_EINVAL, "'%s': expected an object", where);
    QH_TRY(json_str(obj, "type", type));
    if (!*type) QH_ERROR(QH_EINVAL, "'%s': missing 'type'", where);
    return QH_OK;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) { memcpy(p, s, n); p[n] = '\0'; }
    return p;
}

static int valid_utf8(const char *s)
{
    size_t n = strlen(s);
    return tok_utf8_first_invalid((const uint8_t *)s, n) == n;
}

static void note_id(qh_tokenizer *t, int32_t id)
{
    if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
}

/* ---- model ------------------------------------------------------------------ */

static int vocab_id(const qh_tokenizer *t, const char *tok, size_t len, int32_t *id)
{
    int64_t *v = tok_strmap_get(&t->vocab, tok, len);
    if (!v) return 0;
    *id = (int32_t)*v;
    return 1;
}

static int load_vocab(qh_tokenizer *t, const cJSON *model)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!vocab) QH_ERROR(QH_EINVAL, "'model.vocab' is missing");
    if (!cJSON_IsObject(vocab)) QH_ERROR(QH_EINVAL, "'model.vocab': expected an object of token: id");
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id;
        char what[160];
        snprintf(what, sizeof what, "'model.vocab': token \"%s\"", e->string);
        QH_TRY(json_id(e, what, &id));
        QH_TRY(tok_strmap_put(&t->vocab, e->string, strlen(e->string), id));
        note_id(t, id);
    }
    if (t->vocab.count == 0) QH_ERROR(QH_EINVAL, "'model.vocab' is empty");
    return QH_OK;
}

/* Splits merge number rank into its two token strings (pointers into the JSON or buf). */
static int merge_parts(const cJSON *m, size_t rank, char *buf, size_t buf_size, const char **a, const char **b)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        size_t len = strlen(s);
        if (!sp || strchr(sp + 1, ' ') || sp == s || sp[1] == '\0')
            QH_ERROR(QH_EINVAL, "'model.merges'[%zu] = \"%s\": expected two tokens separated by one space",
                     rank, s);
        if (len + 1 > buf_size) QH_ERROR(QH_EINVAL, "'model.merges'[%zu]: merge too long", rank);
        memcpy(buf, s, len + 1);
        buf[sp - s] = '\0';
        *a = buf;
        *b = buf + (sp - s) + 1;
        return QH_OK;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
        cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        *a = cJSON_GetArrayItem(m, 0)->valuestring;
        *b = cJSON_GetArrayItem(m, 1)->valuestring;
        return QH_OK;
    }
    QH_ERROR(QH_EINVAL, "'model.merges'[%zu]: expected \"a b\" or [\"a\", \"b\"]", rank);
}

static int load_merges(qh_tokenizer *t, const cJSON *model)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!merges || cJSON_IsNull(merges)) return QH_OK;   /* no merges: characters only */
    if (!cJSON_IsArray(merges)) QH_ERROR(QH_EINVAL, "'model.merges': expected an array");
    char buf[1024], joined[1024];
    size_t rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a = NULL, *b = NULL;
        QH_TRY(merge_parts(m, rank, buf, sizeof buf, &a, &b));
        size_t la = strlen(a), lb = strlen(b);
        if (la + lb + 1 > sizeof joined) QH_ERROR(QH_EINVAL, "'model.merges'[%zu]: merge too long", rank);
        memcpy(joined, a, la);
        memcpy(joined + la, b, lb + 1);
        int32_t ia, ib, im;
        if (!vocab_id(t, a, la, &ia) || !vocab_id(t, b, lb, &ib) || !vocab_id(t, joined, la + lb, &im))
            QH_ERROR(QH_EINVAL, "'model.merges'[%zu] (\"%s\" + \"%s\"): a token is not in the vocab",
                     rank, a, b);
        QH_TRY(tok_pairmap_put(&t->merges, ia, ib, (int32_t)rank, im));
        rank++;
    }
    return QH_OK;
}

static int load_model_options(qh_tokenizer *t, const cJSON *model)
{
    QH_TRY(json_bool(model, "byte_fallback", 0, &t->byte_fallback));
    QH_TRY(json_bool(model, "fuse_unk", 0, &t->fuse_unk));
    QH_TRY(json_bool(model, "ignore_merges", 0, &t->ignore_merges));
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        QH_ERROR(QH_EUNIMPL, "'model.dropout': BPE dropout is not supported (expected null)");
    const char *fix;
    QH_TRY(json_str(model, "continuing_subword_prefix", &fix));
    if (fix && *fix) QH_ERROR(QH_EUNIMPL, "'model.continuing_subword_prefix' is not supported");
    QH_TRY(json_str(model, "end_of_word_suffix", &fix));
    if (fix && *fix) QH_ERROR(QH_EUNIMPL, "'model.end_of_word_suffix' is not supported");
    const char *unk;
    QH_TRY(json_str(model, "unk_token", &unk));
    t->unk_id = -1;
    if (unk && !vocab_id(t, unk, strlen(unk), &t->unk_id))
        QH_ERROR(QH_EINVAL, "'model.unk_token' \"%s\" is not in the vocab", unk);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        if (!vocab_id(t, name, strlen(name), &t->byte_ids[b])) t->byte_ids[b] = -1;
    }
    return QH_OK;
}

static int load_model(qh_tokenizer *t, const cJSON *root)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) QH_ERROR(QH_EINVAL, "key 'model' is missing");
    if (!cJSON_IsObject(model)) QH_ERROR(QH_EINVAL, "'model': expected an object");
    const char *type;
    QH_TRY(json_str(model, "type", &type));
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        QH_ERROR(QH_EINVAL, "'model': no 'type' and no 'merges' (only BPE models are supported)");
    if (type && strcmp(type, "BPE") != 0)
        QH_ERROR(QH_EUNIMPL, "'model.type' is \"%s\": only BPE models are supported", type);
    QH_TRY(load_vocab(t, model));
    QH_TRY(load_merges(t, model));
    return load_model_options(t, model);
}

/* ---- normalizer and pre-tokenizer ------------------------------------------- */

static int add_norm(qh_tokenizer *t, int kind, const char *a, const char *b)
{
    if (t->n_norm == QH_TOK_MAX_STEPS) QH_ERROR(QH_EUNIMPL, "'normalizer': more than %d steps", QH_TOK_MAX_STEPS);
    /* Normalized text must stay valid UTF-8: the pre-tokenizers decode it. */
    if (!valid_utf8(a) || (b && !valid_utf8(b))) QH_ERROR(QH_EINVAL, "'normalizer': a string is not valid UTF-8");
    tok_norm *op = &t->norm[t->n_norm];
    op->kind = kind;
    op->a_len = strlen(a);
    op->a = dup_bytes(a, op->a_len);
    op->b_len = b ? strlen(b) : 0;
    op->b = b ? dup_bytes(b, op->b_len) : NULL;
    t->n_norm++;
    if (!op->a || (b && !op->b)) QH_ERROR(QH_ENOMEM, "'normalizer': out of memory");
    return QH_OK;
}

static int load_normalizer(qh_tokenizer *t, const cJSON *n)
{
    if (!n || cJSON_IsNull(n)) return QH_OK;
    const char *type;
    QH_TRY(component_type(n, "normalizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        if (!cJSON_IsArray(list)) QH_ERROR(QH_EINVAL, "'normalizer' Sequence: 'normalizers' must be an array");
        cJSON_ArrayForEach(e, list) QH_TRY(load_normalizer(t, e));
        return QH_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const char *pre;
        QH_TRY(json_str(n, "prepend", &pre));
        if (!pre) QH_ERROR(QH_EINVAL, "'normalizer' Prepend: missing string 'prepend'");
        return add_norm(t, QH_NORM_PREPEND, pre, NULL);
    }
    if (strcmp(type, "Replace") == 0) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *pat = NULL, *content;
        if (cJSON_IsObject(pattern)) QH_TRY(json_str(pattern, "String", &pat));
        if (!pat || !*pat)
            QH_ERROR(QH_EUNIMPL, "'normalizer' Replace: only {\"String\": ...} patterns are supported");
        QH_TRY(json_str(n, "content", &content));
        if (!content) QH_ERROR(QH_EINVAL, "'normalizer' Replace: missing string 'content'");
        return add_norm(t, QH_NORM_REPLACE, pat, content);
    }
    QH_ERROR(QH_EUNIMPL, "'normalizer' type \"%s\" is not supported (Sequence, Prepend, Replace)", type);
}

static int load_metaspace(tok_pretok *p, const cJSON *n)
{
    const char *rep, *scheme;
    p->kind = QH_PRETOK_METASPACE;
    QH_TRY(json_str(n, "replacement", &rep));
    if (!rep) rep = "\xE2\x96\x81";   /* U+2581, the default */
    p->replacement_len = strlen(rep);
    uint32_t cp;
    if (p->replacement_len == 0 || p->replacement_len >= sizeof p->replacement ||
        tok_utf8_decode((const uint8_t *)rep, p->replacement_len, &cp) != p->replacement_len)
        QH_ERROR(QH_EINVAL, "'pre_tokenizer' Metaspace: 'replacement' must be one character");
    memcpy(p->replacement, rep, p->replacement_len);
    QH_TRY(json_str(n, "prepend_scheme", &scheme));
    if (scheme) {
        if (strcmp(scheme, "first") == 0) p->prepend_scheme = QH_PREPEND_FIRST;
        else if (strcmp(scheme, "always") == 0) p->prepend_scheme = QH_PREPEND_ALWAYS;
        else if (strcmp(scheme, "never") == 0) p->prepend_scheme = QH_PREPEND_NEVER;
        else QH_ERROR(QH_EINVAL, "'pre_tokenizer' Metaspace: unknown prepend_scheme \"%s\"", scheme);
    } else {   /* older files: add_prefix_space */
        int add;
        QH_TRY(json_bool(n, "add_prefix_space", 1, &add));
        p->prepend_scheme = add ? QH_PREPEND_ALWAYS : QH_PREPEND_NEVER;
    }
    return json_bool(n, "split", 1, &p->split);
}

static int load_pre_tokenizer(qh_tokenizer *t, const cJSON *n)
{
    if (!n || cJSON_IsNull(n)) return QH_OK;
    const char *type;
    QH_TRY(component_type(n, "pre_tokenizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "pretokenizers"), *e;
        if (!cJSON_IsArray(list)) QH_ERROR(QH_EINVAL, "'pre_tokenizer' Sequence: 'pretokenizers' must be an array");
        cJSON_ArrayForEach(e, list) QH_TRY(load_pre_tokenizer(t, e));
        return QH_OK;
    }
    if (t->n_pretok == QH_TOK_MAX_STEPS)
        QH_ERROR(QH_EUNIMPL, "'pre_tokenizer': more than %d steps", QH_TOK_MAX_STEPS);
    tok_pretok *p = &t->pretok[t->n_pretok];
    memset(p, 0, sizeof *p);
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = QH_PRETOK_BYTE_LEVEL;
        QH_TRY(json_bool(n, "add_prefix_space", 1, &p->add_prefix_space));
        QH_TRY(json_bool(n, "use_regex", 1, &p->use_regex));
    } else if (strcmp(type, "Metaspace") == 0) {
        QH_TRY(load_metaspace(p, n));
    } else {
        QH_ERROR(QH_EUNIMPL, "'pre_tokenizer' type \"%s\" is not supported (Sequence, ByteLevel, Metaspace)",
                 type);
    }
    t->n_pretok++;
    return QH_OK;
}

/* GPT-2's reversible byte -> printable character map: printable Latin-1
 * bytes map to themselves, the others to U+0100 upwards in byte order. */
static void build_byte_map(qh_tokenizer *t)
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : next++;
        char buf[4];
        t->byte_map_len[b] = (uint8_t)tok_utf8_encode(cp, buf);
        memcpy(t->byte_map[b], buf, t->byte_map_len[b]);
    }
}

/* ---- added tokens --------------------------------------------------------- */

static int cmp_added_longest_first(const void *x, const void *y)
{
    const tok_added *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int add_to_set(tok_added_set *set, const tok_added *a)
{
    tok_added *v = realloc(set->v, (set->n + 1) * sizeof *v);
    if (!v) QH_ERROR(QH_ENOMEM, "'added_tokens': out of memory");
    set->v = v;
    set->v[set->n++] = *a;
    return QH_OK;
}

static int load_added_token(qh_tokenizer *t, const cJSON *e, size_t index)
{
    const char *content;
    tok_added a = {0};
    int lstrip, rstrip, single, special, normalized;
    if (!cJSON_IsObject(e)) QH_ERROR(QH_EINVAL, "'added_tokens'[%zu]: expected an object", index);
    QH_TRY(json_str(e, "content", &content));
    if (!content) QH_ERROR(QH_EINVAL, "'added_tokens'[%zu]: missing string 'content'", index);
    if (!valid_utf8(content)) QH_ERROR(QH_EINVAL, "'added_tokens'[%zu]: 'content' is not valid UTF-8", index);
    char what[160];
    snprintf(what, sizeof what, "'added_tokens'[%zu] (\"%s\"): 'id'", index, content);
    QH_TRY(json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), what, &a.id));
    QH_TRY(json_bool(e, "lstrip", 0, &lstrip));
    QH_TRY(json_bool(e, "rstrip", 0, &rstrip));
    QH_TRY(json_bool(e, "single_word", 0, &single));
    QH_TRY(json_bool(e, "special", 0, &special));
    QH_TRY(json_bool(e, "normalized", !special, &normalized));
    a.lstrip = (uint8_t)lstrip; a.rstrip = (uint8_t)rstrip; a.single_word = (uint8_t)single;
    a.special = (uint8_t)special; a.normalized = (uint8_t)normalized;
    note_id(t, a.id);
    if (!*content) return QH_OK;   /* an empty token can never be matched */
    /* Normalized tokens are matched in normalized text, so normalize them too. */
    tok_buf norm = {0};
    if (normalized) QH_TRY(qh_tok_normalize(t, content, strlen(content), &norm));
    else QH_TRY(tok_buf_append(&norm, content, strlen(content)));
    a.content = norm.p;
    a.len = norm.n;
    int st = add_to_set(normalized ? &t->added_normalized : &t->added_raw, &a);
    if (st != QH_OK) free(norm.p);
    return st;
}

static void finish_set(tok_added_set *set)
{
    if (set->n) qsort(set->v, set->n, sizeof *set->v, cmp_added_longest_first);
    for (size_t i = 0; i < set->n; i++) set->first_byte[(uint8_t)set->v[i].content[0]] = 1;
}

static int load_added_tokens(qh_tokenizer *t, const cJSON *root)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;
    if (!list || cJSON_IsNull(list)) return QH_OK;
    if (!cJSON_IsArray(list)) QH_ERROR(QH_EINVAL, "'added_tokens': expected an array");
    size_t i = 0;
    cJSON_ArrayForEach(e, list) QH_TRY(load_added_token(t, e, i++));
    finish_set(&t->added_raw);
    finish_set(&t->added_normalized);
    return QH_OK;
}

/* ---- post-processor --------------------------------------------------------- */

/* Appends the ids of TemplateProcessing special token name to v. */
static int template_special_ids(const cJSON *pp, const char *name, tok_ids *v)
{
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids"), *e;
    if (!cJSON_IsArray(ids))
        QH_ERROR(QH_EINVAL, "'post_processor.special_tokens': no ids for \"%s\"", name);
    cJSON_ArrayForEach(e, ids) {
        int32_t id;
        QH_TRY(json_id(e, "post_processor.special_tokens ids", &id));
        QH_TRY(tok_ids_push(v, id));
    }
    return QH_OK;
}

static int load_template(const cJSON *pp, tok_ids *pre, tok_ids *suf)
{
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single"), *item;
    if (!cJSON_IsArray(single)) QH_ERROR(QH_EINVAL, "'post_processor.single': expected an array");
    int seen_sequence = 0;
    cJSON_ArrayForEach(item, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(item, "Sequence");
        const char *id = NULL;
        if (sp) {
            QH_TRY(json_str(sp, "id", &id));
            if (!id) QH_ERROR(QH_EINVAL, "'post_processor.single': SpecialToken without 'id'");
            QH_TRY(template_special_ids(pp, id, seen_sequence ? suf : pre));
        } else if (sq) {
            QH_TRY(json_str(sq, "id", &id));
            if (!id || strcmp(id, "A") != 0 || seen_sequence)
                QH_ERROR(QH_EINVAL, "'post_processor.single': expected exactly one Sequence \"A\"");
            seen_sequence = 1;
        } else {
            QH_ERROR(QH_EINVAL, "'post_processor.single': items must be SpecialToken or Sequence");
        }
    }
    if (!seen_sequence) QH_ERROR(QH_EINVAL, "'post_processor.single': no Sequence \"A\"");
    return QH_OK;
}

/* cls/sep of RobertaProcessing and BertProcessing: ["<s>", 0]. */
static int pair_token_id(const cJSON *pp, const char *key, tok_ids *v)
{
    const cJSON *pair = cJSON_GetObjectItemCaseSensitive(pp, key);
    int32_t id;
    if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2 ||
        json_id(cJSON_GetArrayItem(pair, 1), key, &id) != QH_OK)
        QH_ERROR(QH_EINVAL, "'post_processor.%s': expected [\"token\", id]", key);
    return tok_ids_push(v, id);
}

/* Wraps (pre, suf) of the processors so far with this processor's tokens. */
static int load_post_processor(qh_tokenizer *t, const cJSON *pp)
{
    if (!pp || cJSON_IsNull(pp)) return QH_OK;
    const char *type;
    QH_TRY(component_type(pp, "post_processor", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *e;
        if (!cJSON_IsArray(list)) QH_ERROR(QH_EINVAL, "'post_processor' Sequence: 'processors' must be an array");
        cJSON_ArrayForEach(e, list) QH_TRY(load_post_processor(t, e));
        return QH_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) return QH_OK;   /* only adjusts offsets */
    tok_ids pre = {0}, suf = {0};
    int st;
    if (strcmp(type, "TemplateProcessing") == 0) {
        st = load_template(pp, &pre, &suf);
    } else if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        st = pair_token_id(pp, "cls", &pre);
        if (st == QH_OK) st = pair_token_id(pp, "sep", &suf);
    } else {
        QH_SET_ERROR(st, QH_EUNIMPL, "'post_processor' type \"%s\" is not supported "
                     "(TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)", type);
    }
    if (st != QH_OK) goto cleanup;
    /* new prefix = this prefix + old prefix; new suffix = old suffix + this suffix */
    if ((st = tok_ids_append(&pre, t->post_prefix.p, t->post_prefix.n)) != QH_OK) goto cleanup;
    if ((st = tok_ids_append(&t->post_suffix, suf.p, suf.n)) != QH_OK) goto cleanup;
    free(t->post_prefix.p);
    t->post_prefix = pre;
    pre.p = NULL;
cleanup:
    free(pre.p);
    free(suf.p);
    return st;
}

/* ---- public ----------------------------------------------------------------- */

static int load_all(qh_tokenizer *t, const cJSON *root)
{
    if (!cJSON_IsObject(root)) QH_ERROR(QH_EINVAL, "top level is not a JSON object");
    QH_TRY(load_model(t, root));
    QH_TRY(load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer")));
    QH_TRY(load_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")));
    QH_TRY(load_added_tokens(t, root));
    QH_TRY(load_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor")));
    for (size_t i = 0; i < t->post_prefix.n; i++) note_id(t, t->post_prefix.p[i]);
    for (size_t i = 0; i < t->post_suffix.n; i++) note_id(t, t->post_suffix.p[i]);
    build_byte_map(t);
    return QH_OK;
}

int qh_tokenizer_load(const char *path, qh_tokenizer **out)
{
    QH_ASSERT(path && out);
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    qh_tokenizer *t = NULL;
    int st = qh_tok_read_file(path, &text, &len);
    if (st != QH_OK) goto cleanup;
    root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *err = cJSON_GetErrorPtr();
        size_t at = (err && err >= text && err <= text + len) ? (size_t)(err - text) : 0;
        QH_SET_ERROR(st, QH_EINVAL, "%s: not valid JSON (parse error near byte %zu)", path, at);
        goto cleanup;
    }
    t = calloc(1, sizeof *t);
    if (!t) { QH_SET_ERROR(st, QH_ENOMEM, "%s: out of memory", path); goto cleanup; }
    st = load_all(t, root);
    if (st != QH_OK) { qh_error_prefix("%s", path); goto cleanup; }
    *out = t;
    t = NULL;
cleanup:
    qh_tokenizer_free(t);
    cJSON_Delete(root);
    free(text);
    return st;
}

static void free_set(tok_added_set *set)
{
    for (size_t i = 0; i < set->n; i++) free(set->v[i].content);
    free(set->v);
}

void qh_tokenizer_free(qh_tokenizer *t)
{
    if (!t) return;
    tok_strmap_free(&t->vocab);
    tok_pairmap_free(&t->merges);
    for (int i = 0; i < t->n_norm; i++) { free(t->norm[i].a); free(t->norm[i].b); }
    free_set(&t->added_raw);
    free_set(&t->added_normalized);
    free(t->post_prefix.p);
    free(t->post_suffix.p);
    free(t);
}
