/* cmd_status.c -- `qh status DIR [--config CONFIG]`: which cells of a sweep
 * are done (results file with /run status 0 whose protocol record is the
 * configuration's), stale (complete, but the record differs or is absent),
 * failed (a file with another status, or one that cannot be read) or missing
 * (no file), whichever backend ran them.  With a configuration (given, or the
 * snapshot DIR/sweep.json that `qh run` keeps, or DIR/slurm/config.json of
 * older folders) every expected file is listed, the float32 baselines
 * included; without one, the files found in DIR are.
 * Exit status: 0 when every listed cell is done, 1 otherwise (also when DIR
 * or the configuration cannot be read), 2 on usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "pipeline/config.h"
#include "results/reader.h"
#include "pipeline/pipeline.h"
#include "pipeline/protocol.h"
#include "pipeline/sweep.h"
#include "qh_path.h"
#include "results/writer.h"

enum cell_state { DONE, STALE, FAILED, MISSING };

typedef struct {
    size_t n[4];                     /* by cell_state */
} tally;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qh status DIR [--config CONFIG]\n\n"
        "Lists the cells of the sweep whose results are in DIR as done (status 0 and\n"
        "the protocol record CONFIG gives), stale (complete, but the record differs:\n"
        "the keys are shown; `qh run --rerun-stale` recomputes them), failed (a file\n"
        "with another status: its message is shown) or missing (no file).  CONFIG\n"
        "defaults to DIR/sweep.json, the snapshot `qh run` keeps (DIR/slurm/config.json\n"
        "in older folders); without any configuration the files found in DIR are\n"
        "listed as done or failed.  The BLAS keys of a record (the machine a cell ran\n"
        "on) are not compared here; `qh run` and `qh report` compare them.\n"
        "Exit status: 0 when every cell is done, 1 otherwise, 2 on usage.\n");
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The /run message of a failed cell, on one line, into buf ("" if none). */
static void read_message(const char *path, char *buf, size_t cap)
{
    qh_results_read_message(path, buf, cap);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

/* 1 if path is a merged file (/runs, no /run): not a cell of the sweep. */
static int is_merged_file(const char *path)
{
    hid_t f;
    if (qh_h5_open_read(path, &f) != QH_OK) return 0;
    int merged = qh_h5_exists(f, "/runs") && !qh_h5_exists(f, "/run");
    qh_h5_close(f);
    return merged;
}

/* Classifies one results file and prints its line; want: the record the
 * configuration gives (NULL: not compared). */
static enum cell_state show_cell(const char *id, const char *path, const char *dir, const char *want)
{
    int status = -1;
    if (!file_exists(path)) {
        printf("missing  %s\n", id);
        return MISSING;
    }
    if (qh_results_read_status(path, &status) != QH_OK) {
        printf("failed   %s: unreadable: %s\n", id, qh_last_error());
        return FAILED;
    }
    char why[600] = "";
    if (status == QH_OK && want) qh_sweep_stale_reason(path, want, qh_protocol_host_keys, why, sizeof why);
    if (status == QH_OK && why[0]) {
        printf("stale    %s: %s\n", id, why);
        return STALE;
    }
    if (status == QH_OK) {
        printf("done     %s\n", id);
        return DONE;
    }
    char msg[1024], log[2048];
    read_message(path, msg, sizeof msg);
    /* A log path too long to build is no log to point at. */
    int has_log = qh_path_format(log, sizeof log, "log", "%s/logs/%s.log", dir, id) == QH_OK
                  && file_exists(log);
    printf("failed   %s: status %d (%s): %s%s%s\n", id, status, qh_status_name(status),
           msg[0] ? msg : "no message", has_log ? "; log " : "", has_log ? log : "");
    return FAILED;
}

/* Every expected file of the configuration: baselines, then cells in order. */
static int status_from_config(const char *dir, const char *config_path, tally *t)
{
    char *json = qh_read_text_file(config_path);
    qh_config *cfg = NULL;
    qh_cell *cells = NULL;
    size_t n_cells = 0;
    char path[2048], id[256];
    if (!json) {
        fprintf(stderr, "qh status: cannot read config %s\n", config_path);
        return 1;
    }
    if (qh_config_parse(json, config_path, &cfg) != QH_OK || qh_config_cells(cfg, &cells, &n_cells) != QH_OK) {
        fprintf(stderr, "qh status: %s\n", qh_last_error());
        free(json);
        qh_config_free(cfg);
        return 1;
    }
    qh_pipeline p = { cfg, json, dir, NULL, NULL, NULL };
    for (size_t m = 0; cfg->n_datasets && m < cfg->n_models; m++) {
        if (qh_pipeline_baseline_path(&p, m, path, sizeof path) != QH_OK) {
            fprintf(stderr, "qh status: %s\n", qh_last_error());
            break;
        }
        snprintf(id, sizeof id, "%s.baseline", cfg->models[m].label);
        char *want = NULL;
        if (qh_protocol_record(cfg, m, NULL, 0, &want) != QH_OK) want = NULL;
        t->n[show_cell(id, path, dir, want)]++;
        free(want);
    }
    for (size_t i = 0; i < n_cells; i++) {
        if (qh_pipeline_cell_path(&p, &cells[i], path, sizeof path) != QH_OK) {
            fprintf(stderr, "qh status: %s\n", qh_last_error());
            break;
        }
        char *want = NULL;
        if (qh_protocol_record(cfg, cells[i].model, &cells[i], 0, &want) != QH_OK) want = NULL;
        t->n[show_cell(cells[i].id, path, dir, want)]++;
        free(want);
    }
    printf("%s (%s): %zu expected, %zu done, %zu stale, %zu failed, %zu missing\n", dir, cfg->name,
           t->n[DONE] + t->n[STALE] + t->n[FAILED] + t->n[MISSING], t->n[DONE], t->n[STALE],
           t->n[FAILED], t->n[MISSING]);
    free(cells);
    qh_config_free(cfg);
    free(json);
    return 0;
}

/* Without a configuration: the .h5 files of DIR (merged files left out). */
static int status_from_files(const char *dir, tally *t)
{
    char **paths = NULL, **warnings = NULL;
    size_t n_paths = 0, n_warnings = 0;
    if (qh_results_scan_dir(dir, &paths, &n_paths, &warnings, &n_warnings) != QH_OK) {
        fprintf(stderr, "qh status: %s\n", qh_last_error());
        return 1;
    }
    for (size_t i = 0; i < n_paths; i++) {
        if (is_merged_file(paths[i])) continue;
        const char *base = strrchr(paths[i], '/') ? strrchr(paths[i], '/') + 1 : paths[i];
        char id[512];
        snprintf(id, sizeof id, "%.*s", (int)(strlen(base) > 3 ? strlen(base) - 3 : strlen(base)), base);
        t->n[show_cell(id, paths[i], dir, NULL)]++;
    }
    for (size_t i = 0; i < n_warnings; i++)
        printf("partial  %s\n", warnings[i]);
    printf("%s: %zu files, %zu done, %zu failed (no configuration: missing cells unknown; "
           "give --config)\n", dir, t->n[DONE] + t->n[FAILED], t->n[DONE], t->n[FAILED]);
    qh_h5_free_names(paths, n_paths);
    qh_h5_free_names(warnings, n_warnings);
    return 0;
}

int qh_cmd_status(int argc, char **argv)
{
    const char *dir = NULL, *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config = argv[i] + 9;
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "qh status: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    char snapshot[2048], recorded[2048];
    if (!config && (qh_path_format(snapshot, sizeof snapshot, "qh status", "%s/sweep.json", dir) != QH_OK
                    || qh_path_format(recorded, sizeof recorded, "qh status", "%s/slurm/config.json",
                                      dir) != QH_OK)) {
        fprintf(stderr, "qh status: %s\n", qh_last_error());
        return 1;
    }
    if (!config && file_exists(snapshot)) config = snapshot;
    else if (!config && file_exists(recorded)) config = recorded;
    tally t = { { 0, 0, 0, 0 } };
    int rc = config ? status_from_config(dir, config, &t) : status_from_files(dir, &t);
    if (rc) return rc;
    return t.n[DONE] > 0 && t.n[STALE] == 0 && t.n[FAILED] == 0 && t.n[MISSING] == 0 ? 0 : 1;
}
