/* cmd_tokenize.c -- `qh tokenize`: encodes a text file with a model's
 * tokenizer.json under the evaluation protocol (whole file as UTF-8,
 * post-processor applied) and prints the token count and the SHA-256 of the
 * ids as int32 little-endian, the fingerprints stored in reference.json. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "qh_clock.h"

#define FIRST_IDS 32   /* as many as reference.json stores */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qh tokenize --model DIR --data FILE [--json]\n"
            "  --model DIR   model folder holding tokenizer.json (or the tokenizer.json itself)\n"
            "  --data FILE   UTF-8 text file, encoded whole with the post-processor (one <s> first)\n"
            "  --json        print one JSON object with n_tokens, ids_sha256_int32le, first_ids\n"
            "                and the encoding time, instead of two text lines\n"
            "output (text): n_tokens N / ids_sha256_int32le HEX\n");
}

/* DIR/tokenizer.json, or the path itself when it is a regular file. */
static char *tokenizer_path(const char *model)
{
    struct stat sb;
    if (stat(model, &sb) == 0 && S_ISREG(sb.st_mode)) return strdup(model);
    size_t len = strlen(model) + sizeof "/tokenizer.json";
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s/tokenizer.json", model);
    return p;
}

static int print_json(const char *tok_path, const char *data, const int32_t *ids, size_t n,
                      const char *hex, double seconds)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *first = cJSON_CreateArray();
    if (!o || !first) { cJSON_Delete(o); cJSON_Delete(first); return 1; }
    cJSON_AddStringToObject(o, "tokenizer", tok_path);
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddNumberToObject(o, "n_tokens", (double)n);
    cJSON_AddStringToObject(o, "ids_sha256_int32le", hex);
    for (size_t i = 0; i < n && i < FIRST_IDS; i++) cJSON_AddItemToArray(first, cJSON_CreateNumber(ids[i]));
    cJSON_AddItemToObject(o, "first_ids", first);
    cJSON_AddNumberToObject(o, "encode_seconds", seconds);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return 1;
    printf("%s\n", s);
    free(s);
    return 0;
}

int qh_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *data = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else {
            fprintf(stderr, "qh tokenize: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !data) {
        fprintf(stderr, "qh tokenize: --model and --data are required\n");
        usage(stderr);
        return 2;
    }
    char *tok_path = tokenizer_path(model);
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 1;
    if (!tok_path) { fprintf(stderr, "qh tokenize: out of memory\n"); goto cleanup; }
    if (qh_tokenizer_load(tok_path, &tok) != QH_OK) {
        fprintf(stderr, "qh tokenize: cannot load tokenizer: %s\n", qh_last_error());
        goto cleanup;
    }
    double t0 = qh_seconds();
    if (qh_tokenize_file(tok, data, &ids, &n) != QH_OK) {
        fprintf(stderr, "qh tokenize: cannot tokenize: %s\n", qh_last_error());
        goto cleanup;
    }
    double seconds = qh_seconds() - t0;
    char hex[65];
    qh_ids_sha256_hex(ids, n, hex);
    if (json) {
        rc = print_json(tok_path, data, ids, n, hex, seconds);
    } else {
        printf("n_tokens %zu\nids_sha256_int32le %s\n", n, hex);
        rc = 0;
    }
cleanup:
    free(ids);
    qh_tokenizer_free(tok);
    free(tok_path);
    return rc;
}
