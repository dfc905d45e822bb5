/* cmd_ppl.c -- `qh ppl`: perplexity of a model on a text file with the
 * float32 forward pass, under the windowed protocol of eval.h. */
#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "pipeline/eval.h"
#include "model/model.h"
#include "qh_blas.h"
#include "qh_path.h"
#include "tokenizer/tokenizer.h"
#include "qh_clock.h"

typedef struct {
    const char *model, *data, *tokenizer;
    long seqlen, max_windows, threads;
    int json;
} ppl_args;

static void ppl_usage(FILE *f)
{
    fprintf(f,
            "usage: qh ppl --model DIR --data FILE --seqlen N [options]\n"
            "\n"
            "Perplexity of the model in DIR (config.json + safetensors) on the text FILE:\n"
            "the whole file is encoded with DIR/tokenizer.json (one <s> prepended), cut\n"
            "into floor(tokens / N) windows of N tokens, each scored on its own;\n"
            "ppl = exp(mean over windows of the mean next-token NLL).\n"
            "\n"
            "options:\n"
            "  --model DIR        model folder (required)\n"
            "  --data FILE        text file, UTF-8 (required)\n"
            "  --seqlen N         window length, 2 <= N <= max_position_embeddings (required)\n"
            "  --max-windows K    score only the first K windows (default: all)\n"
            "  --tokenizer PATH   tokenizer.json to use (default: DIR/tokenizer.json)\n"
            "  --threads N        BLAS threads (default: OpenBLAS's choice)\n"
            "  --json             print one JSON object instead of text\n"
            "  --help             this text\n");
}

/* Strict decimal parse into [lo, hi]; 0 on success. */
static int parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "qh ppl: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns 0 to go on, 1 after --help, 2 on a usage error (already printed). */
static int parse_args(int argc, char **argv, ppl_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { ppl_usage(stdout); return 1; }
        if (!strcmp(o, "--json")) { a->json = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "qh ppl: unknown option or missing value: '%s'\n", o);
            ppl_usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--data")) a->data = v;
        else if (!strcmp(o, "--tokenizer")) a->tokenizer = v;
        else if (!strcmp(o, "--seqlen")) { if (parse_long(o, v, 2, INT_MAX, &a->seqlen)) return 2; }
        else if (!strcmp(o, "--max-windows")) { if (parse_long(o, v, 1, LONG_MAX, &a->max_windows)) return 2; }
        else if (!strcmp(o, "--threads")) { if (parse_long(o, v, 1, 1024, &a->threads)) return 2; }
        else {
            fprintf(stderr, "qh ppl: unknown option '%s'\n", o);
            ppl_usage(stderr);
            return 2;
        }
    }
    if (!a->model || !a->data || !a->seqlen) {
        fprintf(stderr, "qh ppl: --model, --data and --seqlen are required\n");
        ppl_usage(stderr);
        return 2;
    }
    return 0;
}

typedef struct { size_t seqlen; } progress_state;

/* \r-updated line on stderr: windows done/total, tokens/s, ETA. */
static void show_progress(size_t done, size_t total, double seconds, void *user)
{
    const progress_state *ps = user;
    double tps = seconds > 0 ? (double)(done * ps->seqlen) / seconds : 0.0;
    double eta = done ? seconds / (double)done * (double)(total - done) : 0.0;
    fprintf(stderr, "\rppl: window %zu/%zu  %.0f tok/s  ETA %d:%02d   ", done, total, tps,
            (int)eta / 60, (int)eta % 60);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static int print_json(const ppl_args *a, const qh_eval_result *r, size_t n_ids,
                      const char *sha, double tok_seconds)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return 1;
    qh_blas_info_t bi = qh_blas_info();
    cJSON_AddStringToObject(o, "model", a->model);
    cJSON_AddStringToObject(o, "data", a->data);
    cJSON_AddNumberToObject(o, "seqlen", (double)r->seqlen);
    cJSON_AddNumberToObject(o, "ppl", r->ppl);
    cJSON_AddNumberToObject(o, "mean_nll", r->mean_nll);
    cJSON_AddNumberToObject(o, "windows", (double)r->windows);
    cJSON_AddNumberToObject(o, "windows_total", (double)r->windows_total);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "n_ids", (double)n_ids);
    cJSON_AddStringToObject(o, "ids_sha256", sha);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "tokenize_seconds", tok_seconds);
    cJSON_AddNumberToObject(o, "tokens_per_second", r->seconds > 0 ? (double)r->tokens / r->seconds : 0.0);
    cJSON_AddNumberToObject(o, "blas_threads", bi.threads);
    cJSON_AddStringToObject(o, "blas_core", bi.core ? bi.core : "");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return 1;
    printf("%s\n", s);
    cJSON_free(s);
    return 0;
}

int qh_cmd_ppl(int argc, char **argv)
{
    ppl_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    if (a.threads) qh_blas_set_threads((int)a.threads);

    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    qh_eval_result res = { 0 };
    char tok_path[1200], sha[65];
    rc = 1;
    if (qh_model_load(a.model, &m) != QH_OK) {
        fprintf(stderr, "qh ppl: cannot load model '%s': %s\n", a.model, qh_last_error());
        goto cleanup;
    }
    if (a.seqlen > m->cfg.max_pos) {
        fprintf(stderr, "qh ppl: --seqlen %ld exceeds the model's max_position_embeddings %d\n",
                a.seqlen, m->cfg.max_pos);
        rc = 2;
        goto cleanup;
    }
    int pst = a.tokenizer ? qh_path_format(tok_path, sizeof tok_path, "--tokenizer", "%s", a.tokenizer)
                          : qh_path_format(tok_path, sizeof tok_path, "tokenizer", "%s/tokenizer.json", a.model);
    if (pst != QH_OK || qh_tokenizer_load(tok_path, &tok) != QH_OK) {
        fprintf(stderr, "qh ppl: cannot load tokenizer '%s': %s\n", tok_path, qh_last_error());
        goto cleanup;
    }
    double t0 = qh_seconds();
    if (qh_tokenize_file(tok, a.data, &ids, &n_ids) != QH_OK) {
        fprintf(stderr, "qh ppl: cannot read data '%s': %s\n", a.data, qh_last_error());
        goto cleanup;
    }
    double tok_seconds = qh_seconds() - t0;
    if (n_ids < (size_t)a.seqlen) {
        fprintf(stderr, "qh ppl: '%s' has %zu tokens, fewer than one window of %ld\n", a.data,
                n_ids, a.seqlen);
        goto cleanup;
    }
    progress_state ps = { (size_t)a.seqlen };
    int tty = isatty(STDERR_FILENO);
    if (qh_eval_ppl(m, ids, n_ids, (size_t)a.seqlen, (size_t)a.max_windows,
                    tty ? show_progress : NULL, &ps, &res) != QH_OK) {
        fprintf(stderr, "qh ppl: evaluation failed: %s\n", qh_last_error());
        goto cleanup;
    }
    qh_ids_sha256_hex(ids, n_ids, sha);
    if (a.json) {
        rc = print_json(&a, &res, n_ids, sha, tok_seconds);
    } else {
        printf("model %s\ndata %s: %zu tokens (sha256 %s)\n", a.model, a.data, n_ids, sha);
        printf("seqlen %zu: %zu of %zu windows, %zu tokens\n", res.seqlen, res.windows,
               res.windows_total, res.tokens);
        printf("ppl %.6f (mean NLL %.6f)\n", res.ppl, res.mean_nll);
        printf("time %.2f s, %.0f tokens/s\n", res.seconds,
               res.seconds > 0 ? (double)res.tokens / res.seconds : 0.0);
        rc = 0;
    }
cleanup:
    qh_eval_result_free(&res);
    free(ids);
    qh_tokenizer_free(tok);
    qh_model_free(m);
    return rc;
}
