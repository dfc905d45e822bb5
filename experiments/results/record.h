/* record.h -- flat JSON records: one object of scalar values (strings,
 * numbers, booleans, null) under dotted keys, such as the protocol record
 * /run/protocol of every results file.  Two records are compared key by key
 * so that a message can name what differs ("calibration.nsamples,
 * method.param.damp"), not only that something does.
 */
#ifndef QH_RECORD_H
#define QH_RECORD_H

#include <stddef.h>

#include "qh_error.h"

/* Keys whose values differ between records a and b (a key present in one
 * only counts), among the keys that start with one of only (NULL: every
 * key) and with none of skip (NULL-terminated prefix lists; NULL: none).  keys (cap bytes) receives them comma-separated,
 * in sorted order, ending in ", ..." when they do not fit; *n_diff their count.
 * Return: QH_OK; QH_EINVAL (a or b is not a JSON object: message says which). */
int qh_record_diff(const char *a, const char *b, const char *const *only, const char *const *skip,
                   char *keys, size_t cap, size_t *n_diff) QH_MUST_CHECK;

/* The value of key in record as text (strings without quotes) into buf;
 * "" when record is not an object or lacks key.  Return: 1 found, 0 not. */
int qh_record_get(const char *record, const char *key, char *buf, size_t cap);

#endif
