/* cmd_report.c -- `qh report DIR [--out OUTDIR]`: tables (Markdown, LaTeX),
 * TSV files and gnuplot figures from a directory of per-cell results files
 * (report/report.h).  Prints every path written; warnings about skipped
 * files and notes (e.g. gnuplot missing) go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "qh_path.h"
#include "report/report.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: qh report DIR [--out OUTDIR] [--no-plots] [--plots-dir DIR] "
            "[--gnuplot PROG] [--mix-protocols]\n"
            "  reads DIR/*.h5 (one file per sweep cell) and writes into OUTDIR (default "
            "DIR/report):\n"
            "  table.md, table.tex (perplexity per method, bits and dataset), proxy.md, "
            "bounds.md,\n"
            "  one .tsv per figure and, when gnuplot is available, .png and .svg figures\n"
            "  drawn by the scripts in --plots-dir (default analysis/plots).\n"
            "  --no-plots      write tables and TSV files only\n"
            "  --gnuplot PROG  the gnuplot program (default: $QH_GNUPLOT, else gnuplot in PATH)\n"
            "  --mix-protocols put cells of different protocols in one table anyway; without it\n"
            "                  the cells of a model must agree on their protocol record\n"
            "                  (/run/protocol) but for method, parameters, incoherence, bits\n"
            "                  and seed, and the report names the keys that differ\n");
}

/* One table, one protocol (qh_report_check_protocols); returns 0 or 1 after saying why. */
static int check_protocols(const qh_report_set *set)
{
    char **notes = NULL;
    size_t n = 0;
    int st = qh_report_check_protocols(set, &notes, &n);
    if (st != QH_OK) fprintf(stderr, "qh report: %s\n", qh_last_error());
    for (size_t i = 0; i < n; i++) fprintf(stderr, "qh report: note: %s\n", notes[i]);
    for (size_t i = 0; i < n; i++) free(notes[i]);
    free(notes);
    return st == QH_OK ? 0 : 1;
}

int qh_cmd_report(int argc, char **argv)
{
    const char *dir = NULL, *out_dir = NULL;
    int mix = 0;
    qh_report_options opt = { NULL, NULL, NULL };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--mix-protocols")) {
            mix = 1;
        } else if (!strcmp(a, "--no-plots")) {
            opt.gnuplot = "none";
        } else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && i + 1 < argc) {
            out_dir = argv[++i];
        } else if (!strcmp(a, "--plots-dir") && i + 1 < argc) {
            opt.plots_dir = argv[++i];
        } else if (!strcmp(a, "--gnuplot") && i + 1 < argc) {
            opt.gnuplot = argv[++i];
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "qh report: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    char default_out[4096];
    if (!out_dir) {
        if (qh_path_format(default_out, sizeof default_out, "qh report --out", "%s/report",
                           dir) != QH_OK) {
            fprintf(stderr, "qh report: %s\n", qh_last_error());
            return 1;
        }
        out_dir = default_out;
    }
    opt.out_dir = out_dir;

    qh_report_set set;
    if (qh_report_load(dir, &set) != QH_OK) {
        fprintf(stderr, "qh report: %s\n", qh_last_error());
        return 1;
    }
    for (size_t i = 0; i < set.n_warnings; i++)
        fprintf(stderr, "qh report: warning: %s\n", set.warnings[i]);
    if (!mix && check_protocols(&set) != 0) {
        qh_report_set_free(&set);
        return 1;
    }
    qh_report_outputs out;
    int st = qh_report_write(&set, &opt, &out);
    if (st != QH_OK)
        fprintf(stderr, "qh report: %s\n", qh_last_error());
    for (size_t i = 0; i < out.n_notes; i++)
        fprintf(stderr, "qh report: note: %s\n", out.notes[i]);
    for (size_t i = 0; i < out.n_paths; i++)
        printf("wrote %s\n", out.paths[i]);
    if (st == QH_OK)
        printf("report: %zu cells (%zu files skipped) -> %s\n", set.n_cells, set.n_warnings,
               out_dir);
    qh_report_outputs_free(&out);
    qh_report_set_free(&set);
    return st == QH_OK ? 0 : 1;
}
