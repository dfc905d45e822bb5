/* tok_util.c -- growable arrays, hash maps and UTF-8 helpers for the
 * tokenizer.  The maps use linear probing on power-of-two tables kept at most
 * half full; keys are never deleted (tokenizer tables are built once). */
#include "tokenizer/tok_util.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode_tables.h"

int tok_reserve(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return QH_OK;
    size_t new_cap = *cap ? *cap : 16;
    while (new_cap < need) new_cap *= 2;
    void *q = realloc(*p, new_cap * elem);
    if (!q) QH_ERROR(QH_ENOMEM, "tokenizer: out of memory growing an array to %zu elements", new_cap);
    *p = q;
    *cap = new_cap;
    return QH_OK;
}

int tok_buf_append(tok_buf *b, const void *data, size_t len)
{
    QH_TRY(tok_reserve((void **)&b->p, &b->cap, b->n + len + 1, 1));
    if (len) memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return QH_OK;
}

int tok_ids_push(tok_ids *v, int32_t id)
{
    QH_TRY(tok_reserve((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p));
    v->p[v->n++] = id;
    return QH_OK;
}

int tok_ids_append(tok_ids *v, const int32_t *ids, size_t n)
{
    if (n == 0) return QH_OK;
    QH_TRY(tok_reserve((void **)&v->p, &v->cap, v->n + n, sizeof *v->p));
    memcpy(v->p + v->n, ids, n * sizeof *ids);
    v->n += n;
    return QH_OK;
}

/* ---- string map ---------------------------------------------------------- */

struct tok_slot {
    uint64_t hash;        /* 0: empty (real hashes have the low bit set) */
    size_t key_off;       /* into the arena */
    size_t key_len;
    int64_t value;
};

static uint64_t hash_bytes(const char *key, size_t len)
{
    /* FNV-1a with a final avalanche so that the low bits used as the index mix well. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)key[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h | 1;
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->slots);
    free(m->arena.p);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(tok_strmap *m)
{
    size_t new_cap = m->cap ? 2 * m->cap : 64;
    struct tok_slot *s = calloc(new_cap, sizeof *s);
    if (!s) QH_ERROR(QH_ENOMEM, "tokenizer: out of memory growing a hash table to %zu slots", new_cap);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash) continue;
        size_t j = m->slots[i].hash & (new_cap - 1);
        while (s[j].hash) j = (j + 1) & (new_cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = new_cap;
    return QH_OK;
}

static struct tok_slot *strmap_find(const tok_strmap *m, const char *key, size_t len, uint64_t h)
{
    if (!m->cap) return NULL;
    size_t j = h & (m->cap - 1);
    for (;;) {
        struct tok_slot *s = &m->slots[j];
        if (!s->hash) return s;
        if (s->hash == h && s->key_len == len && memcmp(m->arena.p + s->key_off, key, len) == 0)
            return s;
        j = (j + 1) & (m->cap - 1);
    }
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int64_t value)
{
    if (2 * (m->count + 1) > m->cap) QH_TRY(strmap_grow(m));
    uint64_t h = hash_bytes(key, len);
    struct tok_slot *s = strmap_find(m, key, len, h);
    if (s->hash) {
        s->value = value;
        return QH_OK;
    }
    size_t off = m->arena.n;
    QH_TRY(tok_buf_append(&m->arena, key, len));
    s->hash = h;
    s->key_off = off;
    s->key_len = len;
    s->value = value;
    m->count++;
    return QH_OK;
}

int64_t *tok_strmap_get(const tok_strmap *m, const char *key, size_t len)
{
    struct tok_slot *s = strmap_find(m, key, len, hash_bytes(key, len));
    return (s && s->hash) ? &s->value : NULL;
}

/* ---- pair map ------------------------------------------------------------ */

#define PAIR_EMPTY UINT64_MAX   /* ids are non-negative int32, so no pair key equals it */

struct tok_pair_slot {
    uint64_t key;
    int32_t rank, merged;
};

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static size_t pair_index(uint64_t key, size_t cap)
{
    key ^= key >> 31;
    key *= 0x9e3779b97f4a7c15ULL;
    key ^= key >> 29;
    return key & (cap - 1);
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int pairmap_grow(tok_pairmap *m)
{
    size_t new_cap = m->cap ? 2 * m->cap : 64;
    struct tok_pair_slot *s = malloc(new_cap * sizeof *s);
    if (!s) QH_ERROR(QH_ENOMEM, "tokenizer: out of memory growing the merge table to %zu slots", new_cap);
    for (size_t i = 0; i < new_cap; i++) s[i].key = PAIR_EMPTY;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == PAIR_EMPTY) continue;
        size_t j = pair_index(m->slots[i].key, new_cap);
        while (s[j].key != PAIR_EMPTY) j = (j + 1) & (new_cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = new_cap;
    return QH_OK;
}

int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged)
{
    if (2 * (m->count + 1) > m->cap) QH_TRY(pairmap_grow(m));
    uint64_t key = pair_key(a, b);
    size_t j = pair_index(key, m->cap);
    while (m->slots[j].key != PAIR_EMPTY && m->slots[j].key != key) j = (j + 1) & (m->cap - 1);
    if (m->slots[j].key == PAIR_EMPTY) m->count++;
    m->slots[j].key = key;
    m->slots[j].rank = rank;
    m->slots[j].merged = merged;
    return QH_OK;
}

int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged)
{
    if (!m->cap) return 0;
    uint64_t key = pair_key(a, b);
    for (size_t j = pair_index(key, m->cap);; j = (j + 1) & (m->cap - 1)) {
        if (m->slots[j].key == PAIR_EMPTY) return 0;
        if (m->slots[j].key == key) {
            *rank = m->slots[j].rank;
            *merged = m->slots[j].merged;
            return 1;
        }
    }
}

/* ---- UTF-8 ---------------------------------------------------------------- */

size_t tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tok_utf8_first_invalid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t l = tok_utf8_decode(s + i, n - i, &cp);
        if (!l) return i;
        i += l;
    }
    return n;
}

/* ---- Unicode classes ------------------------------------------------------ */

int qh_unicode_class(uint32_t cp)
{
    if (cp < 128) {
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return QH_UCLASS_SPACE;
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return QH_UCLASS_LETTER;
        if (cp >= '0' && cp <= '9') return QH_UCLASS_NUMBER;
        return QH_UCLASS_OTHER;
    }
    size_t lo = 0, hi = qh_unicode_n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (qh_unicode_ranges[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < qh_unicode_n_ranges && qh_unicode_ranges[lo].lo <= cp) return qh_unicode_ranges[lo].cls;
    return QH_UCLASS_OTHER;
}
