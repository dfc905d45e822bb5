/* cmd_tasks.c -- `qh tasks`: multiple-choice / cloze accuracy of a model by
 * log-likelihood (pipeline/tasks.h; format in docs/metrics.md). */
#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "model/model.h"
#include "pipeline/tasks.h"
#include "qh_path.h"
#include "tokenizer/tokenizer.h"

static void tasks_usage(FILE *f)
{
    fprintf(f,
            "usage: qh tasks --model DIR --task FILE.jsonl [--max-items K] [--json]\n"
            "\n"
            "Accuracy of the model in DIR on a multiple-choice or cloze task file (JSON\n"
            "lines {\"context\": S, \"continuations\": [S, ...], \"answer\": I}): each\n"
            "continuation is scored by the sum of its tokens' log-probabilities after the\n"
            "context; acc picks the highest sum, acc_norm the highest sum per character.\n"
            "Standard errors: sqrt(acc (1 - acc) / (n - 1)).  docs/metrics.md has the details.\n"
            "\n"
            "options:\n"
            "  --model DIR      model folder (required)\n"
            "  --task FILE      task file (required; may be given several times)\n"
            "  --max-items K    score only the first K items of each file\n"
            "  --json           one JSON object per task file instead of text\n"
            "  --help           this text\n");
}

int qh_cmd_tasks(int argc, char **argv)
{
    const char *model = NULL, *tasks[64];
    size_t n_tasks = 0;
    long max_items = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { tasks_usage(stdout); return 0; }
        if (!strcmp(o, "--json")) { json = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "qh tasks: unknown option or missing value: '%s'\n", o);
            tasks_usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--task")) {
            if (n_tasks == 64) { fprintf(stderr, "qh tasks: at most 64 --task files\n"); return 2; }
            tasks[n_tasks++] = v;
        } else if (!strcmp(o, "--max-items")) {
            char *end;
            errno = 0;
            max_items = strtol(v, &end, 10);
            if (errno || end == v || *end || max_items < 1) {
                fprintf(stderr, "qh tasks: --max-items expects a positive integer, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "qh tasks: unknown option '%s'\n", o);
            tasks_usage(stderr);
            return 2;
        }
    }
    if (!model || !n_tasks) {
        fprintf(stderr, "qh tasks: --model and --task are required\n");
        tasks_usage(stderr);
        return 2;
    }
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    char path[1200];
    int st = qh_model_load(model, &m);
    if (st == QH_OK) st = qh_path_format(path, sizeof path, "tokenizer", "%s/tokenizer.json", model);
    if (st == QH_OK) st = qh_tokenizer_load(path, &tok);
    for (size_t k = 0; k < n_tasks && st == QH_OK; k++) {
        qh_task t;
        qh_task_result r;
        st = qh_task_load(tasks[k], &t);
        if (st == QH_OK) st = qh_task_eval(m, tok, &t, (size_t)max_items, &r);
        if (st == QH_OK) {
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "model", model);
                cJSON_AddStringToObject(o, "task", tasks[k]);
                cJSON_AddNumberToObject(o, "n", (double)r.n);
                cJSON_AddNumberToObject(o, "acc", r.acc);
                cJSON_AddNumberToObject(o, "acc_stderr", r.acc_stderr);
                cJSON_AddNumberToObject(o, "acc_norm", r.acc_norm);
                cJSON_AddNumberToObject(o, "acc_norm_stderr", r.acc_norm_stderr);
                cJSON_AddNumberToObject(o, "seconds", r.seconds);
                char *s = cJSON_PrintUnformatted(o);
                if (s) printf("%s\n", s);
                free(s);
                cJSON_Delete(o);
            } else {
                printf("task %s: %zu items\nacc %.4f +- %.4f\nacc_norm %.4f +- %.4f\ntime %.1f s\n",
                       tasks[k], r.n, r.acc, r.acc_stderr, r.acc_norm, r.acc_norm_stderr, r.seconds);
            }
            qh_task_result_free(&r);
        }
        qh_task_free(&t);
    }
    qh_tokenizer_free(tok);
    qh_model_free(m);
    if (st != QH_OK) {
        fprintf(stderr, "qh tasks: %s\n", qh_last_error());
        return 1;
    }
    return 0;
}
