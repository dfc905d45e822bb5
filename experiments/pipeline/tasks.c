/* tasks.c -- log-likelihood scoring of multiple-choice and cloze tasks (see tasks.h). */
#include "pipeline/tasks.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/eval.h"
#include "qh_clock.h"

/* ---- the task file ------------------------------------------------------------ */

static void item_free(qh_task_item *it)
{
    free(it->context);
    for (size_t i = 0; i < it->n_conts; i++) free(it->conts[i]);
    free(it->conts);
    memset(it, 0, sizeof *it);
}

void qh_task_free(qh_task *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) item_free(&t->items[i]);
    free(t->items);
    free(t->path);
    memset(t, 0, sizeof *t);
}

/* One JSON line into *it. */
static int parse_item(const char *path, size_t line, const char *text, qh_task_item *it)
{
    int st = QH_OK;
    cJSON *o = cJSON_Parse(text);
    memset(it, 0, sizeof *it);
    it->line = line;
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        QH_ERROR(QH_EINVAL, "task %s:%zu: not a JSON object", path, line);
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, o)
        if (strcmp(k->string, "context") && strcmp(k->string, "continuations")
            && strcmp(k->string, "answer") && strcmp(k->string, "id")) {
            QH_SET_ERROR(st, QH_EINVAL, "task %s:%zu: unknown key \"%.100s\" (expected context, "
                         "continuations, answer, id)", path, line, k->string);
            goto done;
        }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "context");
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(o, "continuations");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "answer");
    if (!cJSON_IsString(c)) {
        QH_SET_ERROR(st, QH_EINVAL, "task %s:%zu: key \"context\": %s", path, line,
                     c ? "expected a string" : "missing");
        goto done;
    }
    int n = cJSON_IsArray(cs) ? cJSON_GetArraySize(cs) : -1;
    if (n < 2) {
        QH_SET_ERROR(st, QH_EINVAL, "task %s:%zu: key \"continuations\": %s", path, line,
                     !cs ? "missing" : "expected an array of at least two strings");
        goto done;
    }
    if (!cJSON_IsNumber(a) || a->valuedouble != floor(a->valuedouble) || a->valuedouble < 0
        || a->valuedouble >= n) {
        if (a)
            QH_SET_ERROR(st, QH_EINVAL, "task %s:%zu: key \"answer\": expected an integer in [0, %d]",
                         path, line, n - 1);
        else
            QH_SET_ERROR(st, QH_EINVAL, "task %s:%zu: key \"answer\": missing", path, line);
        goto done;
    }
    it->answer = (int)a->valuedouble;
    it->context = strdup(c->valuestring);
    it->conts = calloc((size_t)n, sizeof *it->conts);
    if (!it->context || !it->conts) { QH_SET_ERROR(st, QH_ENOMEM, "out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(cs, i);
        if (!cJSON_IsString(e) || !e->valuestring[0]) {
            QH_SET_ERROR(st, QH_EINVAL, "task %s:%zu: key \"continuations\"[%d]: expected a "
                         "non-empty string", path, line, i);
            goto done;
        }
        if (!(it->conts[i] = strdup(e->valuestring))) { QH_SET_ERROR(st, QH_ENOMEM, "out of memory"); goto done; }
        it->n_conts = (size_t)i + 1;
    }
done:
    cJSON_Delete(o);
    if (st != QH_OK) item_free(it);
    return st;
}

static int blank(const char *s)
{
    for (; *s; s++) if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

int qh_task_load(const char *path, qh_task *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) QH_ERROR(QH_EIO, "task %s: cannot open", path);
    char *line = NULL;
    size_t cap = 0, lineno = 0, room = 0;
    ssize_t len;
    int st = QH_OK;
    if (!(t->path = strdup(path))) QH_SET_ERROR(st, QH_ENOMEM, "out of memory");
    while (st == QH_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (blank(line)) continue;
        if (t->n == room) {
            room = room ? 2 * room : 64;
            qh_task_item *g = realloc(t->items, room * sizeof *g);
            if (!g) { QH_SET_ERROR(st, QH_ENOMEM, "out of memory"); break; }
            t->items = g;
        }
        st = parse_item(path, lineno, line, &t->items[t->n]);
        if (st == QH_OK) t->n++;
    }
    if (st == QH_OK && ferror(f)) QH_SET_ERROR(st, QH_EIO, "task %s: read error", path);
    if (st == QH_OK && t->n == 0) QH_SET_ERROR(st, QH_EINVAL, "task %s: no items", path);
    free(line);
    fclose(f);
    if (st != QH_OK) qh_task_free(t);
    return st;
}

/* ---- scoring -------------------------------------------------------------------- */

int qh_task_score(const qh_model *m, qh_forward_ws *ws, float *logits, const int32_t *ctx,
                  size_t n_ctx, const int32_t *cont, size_t n_cont, double *ll)
{
    size_t cap = (size_t)m->cfg.max_pos, vocab = (size_t)m->cfg.vocab_size;
    if (n_cont == 0) QH_ERROR(QH_EINVAL, "task: a continuation encodes to no tokens");
    if (n_ctx == 0) QH_ERROR(QH_EINVAL, "task: an empty context (nothing to condition on)");
    if (n_cont + 1 > cap)
        QH_ERROR(QH_EINVAL, "task: a continuation of %zu tokens does not fit the context of %zu",
                 n_cont, cap);
    size_t keep = n_ctx + n_cont > cap ? cap - n_cont : n_ctx;       /* oldest context dropped */
    size_t T = keep + n_cont;
    int32_t *ids = malloc(T * sizeof *ids);
    if (!ids) QH_ERROR(QH_ENOMEM, "out of memory");
    memcpy(ids, ctx + (n_ctx - keep), keep * sizeof *ids);
    memcpy(ids + keep, cont, n_cont * sizeof *ids);
    int st = qh_forward_window(m, ids, T, ws, logits);
    double s = 0;
    for (size_t j = 0; st == QH_OK && j < n_cont; j++) {
        const float *col = logits + (keep + j - 1) * vocab;
        double v = (double)col[ids[keep + j]] - qh_logsumexp(col, vocab);
        if (!isfinite(v)) QH_SET_ERROR(st, QH_ENAN, "task: non-finite log-probability");
        s += v;
    }
    free(ids);
    *ll = s;
    return st;
}

/* Characters (UTF-8 code points) of s, as Python's len(). */
static size_t n_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static double stderr_of(double acc, size_t n)
{
    return n > 1 ? sqrt(acc * (1 - acc) / (double)(n - 1)) : NAN;
}

void qh_task_result_free(qh_task_result *r)
{
    if (!r) return;
    free(r->scores);
    r->scores = NULL;
}

int qh_task_eval(const qh_model *m, const qh_tokenizer *tok, const qh_task *t, size_t max_items,
                 qh_task_result *r)
{
    memset(r, 0, sizeof *r);
    size_t n = max_items && max_items < t->n ? max_items : t->n, total = 0;
    for (size_t i = 0; i < n; i++) total += t->items[i].n_conts;
    size_t cap = (size_t)m->cfg.max_pos;
    qh_forward_ws *ws = NULL;
    float *logits = malloc(cap * (size_t)m->cfg.vocab_size * sizeof *logits);
    r->scores = malloc((total ? total : 1) * sizeof *r->scores);
    int st = QH_OK;
    if (!logits || !r->scores) QH_SET_ERROR(st, QH_ENOMEM, "task %s: out of memory", t->path);
    if (st == QH_OK) st = qh_forward_ws_alloc(m, cap, &ws);
    double t0 = qh_seconds();
    size_t hit = 0, hit_norm = 0, o = 0;
    for (size_t i = 0; i < n && st == QH_OK; i++) {
        const qh_task_item *it = &t->items[i];
        int32_t *ctx = NULL;
        size_t n_ctx = 0, best = 0, best_norm = 0;
        double best_s = -INFINITY, best_sn = -INFINITY;
        st = qh_tokenizer_encode(tok, it->context, strlen(it->context), 1, &ctx, &n_ctx);
        for (size_t c = 0; c < it->n_conts && st == QH_OK; c++) {
            int32_t *ci = NULL;
            size_t nc = 0;
            double ll = 0;
            st = qh_tokenizer_encode(tok, it->conts[c], strlen(it->conts[c]), 0, &ci, &nc);
            if (st == QH_OK) st = qh_task_score(m, ws, logits, ctx, n_ctx, ci, nc, &ll);
            free(ci);
            if (st != QH_OK) break;
            r->scores[o++] = ll;
            double ln = ll / (double)n_chars(it->conts[c]);
            if (ll > best_s) { best_s = ll; best = c; }
            if (ln > best_sn) { best_sn = ln; best_norm = c; }
        }
        free(ctx);
        if (st != QH_OK) { qh_error_prefix("task %s:%zu", t->path, it->line); break; }
        hit += best == (size_t)it->answer;
        hit_norm += best_norm == (size_t)it->answer;
    }
    qh_forward_ws_free(ws);
    free(logits);
    if (st != QH_OK) { qh_task_result_free(r); return st; }
    r->n = n;
    r->n_scores = o;
    r->acc = (double)hit / (double)n;
    r->acc_norm = (double)hit_norm / (double)n;
    r->acc_stderr = stderr_of(r->acc, n);
    r->acc_norm_stderr = stderr_of(r->acc_norm, n);
    r->seconds = qh_seconds() - t0;
    return QH_OK;
}
