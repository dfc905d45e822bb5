/* record.c -- comparing flat JSON records (see record.h). */
#include "results/record.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has_prefix(const char *key, const char *const *prefixes)
{
    for (; prefixes && *prefixes; prefixes++)
        if (!strncmp(key, *prefixes, strlen(*prefixes))) return 1;
    return 0;
}

/* Appends key to the comma-separated list, or ", ..." once it no longer fits. */
static void append_key(char *keys, size_t cap, const char *key, int *full)
{
    size_t len = strlen(keys);
    if (*full || cap == 0) return;
    const char *sep = len ? ", " : "";
    if (len + strlen(sep) + strlen(key) + 6 < cap) {
        snprintf(keys + len, cap - len, "%s%s", sep, key);
    } else {
        snprintf(keys + len, cap - len, "%s...", sep);
        *full = 1;
    }
}

static int by_name(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Every key of a and b once, sorted: *names new (free()), borrowing the strings. */
static int union_keys(const cJSON *a, const cJSON *b, const char ***names, size_t *n)
{
    size_t cap = (size_t)cJSON_GetArraySize(a) + (size_t)cJSON_GetArraySize(b);
    *n = 0;
    if (!(*names = calloc(cap ? cap : 1, sizeof **names))) QH_ERROR(QH_ENOMEM, "out of memory");
    for (const cJSON *it = a->child; it; it = it->next) (*names)[(*n)++] = it->string;
    for (const cJSON *it = b->child; it; it = it->next)
        if (!cJSON_GetObjectItemCaseSensitive(a, it->string)) (*names)[(*n)++] = it->string;
    qsort(*names, *n, sizeof **names, by_name);
    return QH_OK;
}

int qh_record_diff(const char *a, const char *b, const char *const *only, const char *const *skip,
                   char *keys, size_t cap, size_t *n_diff)
{
    if (cap) keys[0] = '\0';
    *n_diff = 0;
    cJSON *ja = cJSON_Parse(a ? a : ""), *jb = cJSON_Parse(b ? b : "");
    const char **names = NULL;
    size_t n = 0;
    int st = QH_OK, full = 0;
    if (!cJSON_IsObject(ja) || !cJSON_IsObject(jb))
        QH_SET_ERROR(st, QH_EINVAL, "protocol record %s is not a JSON object",
                     cJSON_IsObject(ja) ? "b" : "a");
    if (st == QH_OK) st = union_keys(ja, jb, &names, &n);
    for (size_t i = 0; st == QH_OK && i < n; i++) {
        if ((only && !has_prefix(names[i], only)) || has_prefix(names[i], skip)) continue;
        const cJSON *va = cJSON_GetObjectItemCaseSensitive(ja, names[i]);
        const cJSON *vb = cJSON_GetObjectItemCaseSensitive(jb, names[i]);
        if (va && vb && cJSON_Compare(va, vb, 1)) continue;
        (*n_diff)++;
        append_key(keys, cap, names[i], &full);
    }
    free(names);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return st;
}

int qh_record_get(const char *record, const char *key, char *buf, size_t cap)
{
    cJSON *j = cJSON_Parse(record ? record : "");
    const cJSON *v = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    int found = v != NULL;
    if (cap) buf[0] = '\0';
    if (cJSON_IsString(v)) {
        snprintf(buf, cap, "%s", v->valuestring);
    } else if (v) {
        char *t = cJSON_PrintUnformatted(v);
        snprintf(buf, cap, "%s", t ? t : "");
        free(t);
    }
    cJSON_Delete(j);
    return found;
}
