/* test_tasks.c -- the task evaluator (pipeline/tasks.h): the JSON-lines
 * parser refuses bad lines naming file, line and key; a continuation's score
 * equals a brute-force sum of next-token log-probabilities, each from its own
 * forward pass of the prefix; the standard error is sqrt(acc (1-acc)/(n-1));
 * and the float accuracies of the embedded models on the committed cloze task
 * (tests/data/gutenberg_cloze.jsonl, first 100 items) match the recorded
 * values and lie far above chance (0.25). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/forward.h"
#include "model/model.h"
#include "pipeline/eval.h"
#include "pipeline/tasks.h"
#include "qh_test.h"
#include "tokenizer/tokenizer.h"

#define TASK "tests/data/gutenberg_cloze.jsonl"

/* A scratch file name of this process under /tmp (the build folder may not
 * exist: the sanitizer builds live elsewhere). */
static void temp_path(char *path, size_t len, const char *name)
{
    snprintf(path, len, "/tmp/qh_test_tasks_%ld_%s", (long)getpid(), name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void check_bad(const char *text, const char *want)
{
    char path[64];
    temp_path(path, sizeof path, "task_bad.jsonl");
    qh_task t;
    write_file(path, text);
    int st = qh_task_load(path, &t);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), path) && strstr(qh_last_error(), want),
             "bad task refused naming file and '%s': %s", want, qh_last_error());
    remove(path);
}

static void check_parser(void)
{
    check_bad("{\"context\": \"a\", \"continuations\": [\"b\", \"c\"], \"answer\": 0}\n\nnot json\n",
              ":3: not a JSON object");
    check_bad("{\"continuations\": [\"b\", \"c\"], \"answer\": 0}\n", ":1: key \"context\": missing");
    check_bad("{\"context\": \"a\", \"continuations\": [\"b\"], \"answer\": 0}\n",
              ":1: key \"continuations\": expected an array of at least two strings");
    check_bad("{\"context\": \"a\", \"continuations\": [\"b\", \"c\"], \"answer\": 2}\n",
              ":1: key \"answer\": expected an integer in [0, 1]");
    check_bad("{\"context\": \"a\", \"continuations\": [\"b\", \"c\"]}\n", ":1: key \"answer\": missing");
    check_bad("{\"context\": \"a\", \"continuations\": [\"b\", \"\"], \"answer\": 1}\n",
              ":1: key \"continuations\"[1]: expected a non-empty string");
    check_bad("{\"context\": \"a\", \"continuations\": [\"b\", \"c\"], \"answer\": 1, \"label\": 1}\n",
              ":1: unknown key \"label\"");
    check_bad("\n\n", "no items");
    qh_task t;
    char path[64];
    temp_path(path, sizeof path, "task_ok.jsonl");
    write_file(path, "{\"id\": 7, \"context\": \"x\", \"continuations\": [\" y\", \" z\", \" w\"], \"answer\": 2}\n"
                     "\n{\"context\": \"é\", \"continuations\": [\"a\", \"b\"], \"answer\": 0}\n");
    QH_CHECK(qh_task_load(path, &t) == QH_OK && t.n == 2 && t.items[0].n_conts == 3
             && t.items[0].answer == 2 && t.items[1].line == 3 && !strcmp(t.items[1].context, "é"),
             "a good file: two items, lines counted with blanks");
    qh_task_free(&t);
    remove(path);
}

/* Brute force: each continuation token from a forward pass of its own prefix. */
static double brute_score(const qh_model *m, const int32_t *ctx, size_t nc, const int32_t *cont,
                          size_t nk)
{
    size_t V = (size_t)m->cfg.vocab_size, T = nc + nk;
    int32_t *ids = malloc(T * sizeof *ids);
    float *logits = malloc(T * V * sizeof *logits);
    qh_forward_ws *ws = NULL;
    memcpy(ids, ctx, nc * sizeof *ids);
    memcpy(ids + nc, cont, nk * sizeof *ids);
    double s = 0;
    if (qh_forward_ws_alloc(m, T, &ws) != QH_OK) return NAN;
    for (size_t j = 0; j < nk; j++) {
        size_t len = nc + j;                                   /* the prefix before token j */
        if (qh_forward_window(m, ids, len, ws, logits) != QH_OK) { s = NAN; break; }
        const float *col = logits + (len - 1) * V;
        s += (double)col[ids[len]] - qh_logsumexp(col, V);
    }
    qh_forward_ws_free(ws);
    free(ids);
    free(logits);
    return s;
}

static void check_model(const char *dir, double want_acc, double want_norm)
{
    char path[256];
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, R_OK) != 0 || qh_model_load(dir, &m) != QH_OK || qh_tokenizer_load(path, &tok) != QH_OK) {
        QH_SKIP("%s not readable", dir);
        qh_model_free(m);
        return;
    }
    const char *ctx_text = "The old man walked slowly down the road towards the", *cont_text = " village church";
    int32_t *ctx = NULL, *cont = NULL;
    size_t nc = 0, nk = 0;
    QH_CHECK(qh_tokenizer_encode(tok, ctx_text, strlen(ctx_text), 1, &ctx, &nc) == QH_OK
             && qh_tokenizer_encode(tok, cont_text, strlen(cont_text), 0, &cont, &nk) == QH_OK && nk >= 2,
             "%s: encode", dir);
    size_t cap = (size_t)m->cfg.max_pos;
    qh_forward_ws *ws = NULL;
    float *logits = malloc(cap * (size_t)m->cfg.vocab_size * sizeof *logits);
    double ll = NAN;
    QH_CHECK(qh_forward_ws_alloc(m, cap, &ws) == QH_OK
             && qh_task_score(m, ws, logits, ctx, nc, cont, nk, &ll) == QH_OK, "%s: score", dir);
    double want = brute_score(m, ctx, nc, cont, nk);
    QH_CHECK_CLOSE(ll, want, 1e-4, 1e-5, "%s: score %.6f against brute force %.6f (%zu tokens)", dir,
                   ll, want, nk);
    qh_forward_ws_free(ws);
    free(logits);
    free(ctx);
    free(cont);

    qh_task t;
    qh_task_result r;
    size_t items = qh_test_fast() ? 20 : 100;
    QH_CHECK(qh_task_load(TASK, &t) == QH_OK && t.n == 400, "%s: the cloze task has 400 items", TASK);
    QH_CHECK(qh_task_eval(m, tok, &t, items, &r) == QH_OK, "%s: eval: %s", dir, qh_last_error());
    QH_CHECK_CLOSE(r.acc_stderr, sqrt(r.acc * (1 - r.acc) / (double)(r.n - 1)), 0, 1e-12, "stderr formula");
    QH_NOTE("%s: acc %.4f +- %.4f, acc_norm %.4f +- %.4f on %zu items (%.1f s)", dir, r.acc, r.acc_stderr,
            r.acc_norm, r.acc_norm_stderr, r.n, r.seconds);
    QH_CHECK(r.acc > 0.5 && r.acc_norm > 0.5, "%s: accuracy %.3f far above chance 0.25", dir, r.acc);
    if (items == 100) {
        /* recorded float accuracies; two items either way allowed for BLAS kernels */
        QH_CHECK_CLOSE(r.acc, want_acc, 0.021, 0, "%s: acc %.3f, recorded %.3f", dir, r.acc, want_acc);
        QH_CHECK_CLOSE(r.acc_norm, want_norm, 0.021, 0, "%s: acc_norm %.3f, recorded %.3f", dir,
                       r.acc_norm, want_norm);
    }
    qh_task_result_free(&r);
    qh_task_free(&t);
    qh_tokenizer_free(tok);
    qh_model_free(m);
}

int main(void)
{
    check_parser();
    check_model("models/opt-7m", 0.75, 0.76);
    check_model("models/llama-9m", 0.81, 0.82);
    return qh_test_summary();
}
