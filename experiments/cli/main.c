/* main.c -- bin/qh: dispatches to subcommands.  The only place that exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* OpenBLAS's idle worker threads spin for 2^28 cycles (about 0.1 s) after each
 * call before they sleep, taking the cores that the harness's own threads
 * need right after a BLAS call (the attention heads of every layer, the row
 * loops of the quantizers): the forward of a 170M Llama ran 25 % slower for
 * it on 2 cores (docs/architecture.md).  The library reads the spin from
 * OPENBLAS_THREAD_TIMEOUT (2^N cycles) once, when it loads, before main; so a
 * process started without it runs itself again once with N = QH_BLAS_SPIN,
 * about 25 microseconds.  A value the user set is kept.  Only the time
 * changes: the thread count, and with it every result, does not. */
#define QH_BLAS_SPIN "16"

static void reexec_with_short_blas_spin(char **argv)
{
    char self[4096];
    if (getenv("OPENBLAS_THREAD_TIMEOUT")) return;
    /* the binary's own path, so that the process keeps its name ("qh") */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 1) return;      /* no /proc: go on as loaded */
    self[n] = '\0';
    if (setenv("OPENBLAS_THREAD_TIMEOUT", QH_BLAS_SPIN, 1) != 0) return;
    execv(self, argv);
    unsetenv("OPENBLAS_THREAD_TIMEOUT");      /* the exec failed: go on as loaded */
}

int main(int argc, char **argv)
{
    reexec_with_short_blas_spin(argv);
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
