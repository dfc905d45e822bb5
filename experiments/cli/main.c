/* main.c -- bin/qh: dispatches to subcommands.  The only place that exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} qh_command;

static const qh_command commands[] = {
    { "info",     qh_cmd_info,     "print a model's configuration and tensor summary" },
    { "tokenize", qh_cmd_tokenize, "tokenize a text file; print token count and SHA-256 of the ids" },
    { "ppl",      qh_cmd_ppl,      "perplexity of a model on a text file (float32 forward pass)" },
    { "tasks",    qh_cmd_tasks,    "multiple-choice / cloze accuracy by log-likelihood on a JSON-lines task file" },
    { "methods",  qh_cmd_methods,  "list the quantization methods with their parameters" },
    { "layer",    qh_cmd_layer,    "quantize matrices or model layers; metrics and bounds to HDF5" },
    { "quantize", qh_cmd_quantize, "quantize one model with one method: results file and model folder" },
    { "sensitivity", qh_cmd_sensitivity, "per-linear (or block) perplexity change; greedy bits to a budget" },
    { "run",      qh_cmd_run,      "run a sweep configuration (calibrate, quantize, evaluate, record)" },
    { "report",   qh_cmd_report,   "tables and figures from a directory of cell results files" },
    { "merge",    qh_cmd_merge,    "merge the complete cell files of a directory into one HDF5 file" },
    { "status",   qh_cmd_status,   "done / failed / missing cells of a sweep" },
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: qh <command> [options]   (qh <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s %s\n", "help", "this list");
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qh: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
