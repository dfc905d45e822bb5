/* unicode_tables.h -- character classes for the GPT-2 pre-tokenizer pattern
 * (\p{L}, \p{N}, \s), generated into unicode_tables.c by gen_unicode_tables.py. */
#ifndef QH_UNICODE_TABLES_H
#define QH_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

enum { QH_UCLASS_OTHER = 0, QH_UCLASS_LETTER = 1, QH_UCLASS_NUMBER = 2, QH_UCLASS_SPACE = 3 };

typedef struct {
    uint32_t lo, hi;   /* inclusive code-point range */
    uint8_t cls;       /* QH_UCLASS_* */
} qh_unicode_range;

extern const char qh_unicode_version[];      /* e.g. "14.0.0" */
extern const size_t qh_unicode_n_ranges;
extern const qh_unicode_range qh_unicode_ranges[];

/* Class of code point cp (QH_UCLASS_*); binary search, ASCII by table. */
int qh_unicode_class(uint32_t cp);

#endif
