/* load.c -- reading the cells of a results folder for the report: the /run
 * attributes, the evaluations and the layer table of every run file the
 * folder listing (results/reader.h) returns; files that cannot be used are
 * skipped with a warning naming them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_incoherence.h"
#include "qh_path.h"
#include "report/report_internal.h"

static void cell_free(qh_report_cell *c)
{
    free(c->path);
    free(c->id);
    free(c->model);
    free(c->method);
    free(c->label);
    free(c->incoherence);
    free(c->message);
    qh_h5_free_names(c->eval_names, c->n_eval);
    free(c->eval_ppl);
    free(c->eval_kl);
    free(c->eval_agree);
    qh_h5_free_names(c->task_names, c->n_tasks);
    free(c->task_acc);
    free(c->task_acc_norm);
    qh_h5_table_free(&c->layers);
    free(c->protocol);
    memset(c, 0, sizeof *c);
}

/* An optional string attribute of /run: a copy of fallback when absent. */
static int opt_string(hid_t f, const char *name, const char *fallback, char **out)
{
    if (qh_h5_attr_exists(f, "/run", name))
        return qh_h5_attr_string(f, "/run", name, out);
    if (!(*out = strdup(fallback)))
        QH_ERROR(QH_ENOMEM, "out of memory");
    return QH_OK;
}

static double opt_double(hid_t f, const char *name)
{
    double v;
    if (!qh_h5_attr_exists(f, "/run", name) || qh_h5_attr_double(f, "/run", name, &v) != QH_OK)
        return NAN;
    return v;
}

/* An optional integer attribute of /run: 0 when absent or not an integer. */
static int opt_int(hid_t f, const char *name)
{
    int64_t v;
    return qh_h5_attr_exists(f, "/run", name) && qh_h5_attr_int(f, "/run", name, &v) == QH_OK
           ? (int)v : 0;
}

/* The evaluations under /run/eval: names and ppl attributes. */
static int load_evals(hid_t f, const char *path, qh_report_cell *c)
{
    char **names = NULL, obj[REP_PATH_CAP];
    size_t n = 0;
    if (!qh_h5_exists(f, "/run/eval"))
        return QH_OK;
    QH_TRY(qh_h5_list_group(f, "/run/eval", &names, &n));
    c->eval_names = calloc(n ? n : 1, sizeof *c->eval_names);
    c->eval_ppl = calloc(n ? n : 1, sizeof *c->eval_ppl);
    c->eval_kl = calloc(n ? n : 1, sizeof *c->eval_kl);
    c->eval_agree = calloc(n ? n : 1, sizeof *c->eval_agree);
    if (!c->eval_names || !c->eval_ppl || !c->eval_kl || !c->eval_agree) {
        qh_h5_free_names(names, n);
        QH_ERROR(QH_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        double ppl;
        int st = qh_path_format(obj, sizeof obj, path, "/run/eval/%s", names[i]);
        if (st != QH_OK) {
            qh_h5_free_names(names + i, n - i);
            return st;
        }
        if (!qh_h5_attr_exists(f, obj, "ppl") || qh_h5_attr_double(f, obj, "ppl", &ppl) != QH_OK) {
            free(names[i]);
            continue;                /* an evaluation without ppl is not a column */
        }
        double kl = NAN, agree = NAN;           /* absent in files before the fidelity metrics */
        if (qh_h5_attr_exists(f, obj, "kl_mean") && qh_h5_attr_double(f, obj, "kl_mean", &kl) != QH_OK)
            kl = NAN;
        if (qh_h5_attr_exists(f, obj, "top1_agree")
            && qh_h5_attr_double(f, obj, "top1_agree", &agree) != QH_OK)
            agree = NAN;
        c->eval_names[c->n_eval] = names[i];
        c->eval_kl[c->n_eval] = kl;
        c->eval_agree[c->n_eval] = agree;
        c->eval_ppl[c->n_eval++] = ppl;
    }
    free(names);
    return QH_OK;
}

/* An attribute of obj as a double; NaN when absent or not a number. */
static double attr_or_nan(hid_t f, const char *obj, const char *name)
{
    double v;
    return qh_h5_attr_exists(f, obj, name) && qh_h5_attr_double(f, obj, name, &v) == QH_OK ? v : NAN;
}

/* The task accuracies under /run/tasks (config key "tasks"); none in older files. */
static int load_tasks(hid_t f, const char *path, qh_report_cell *c)
{
    char obj[REP_PATH_CAP];
    if (!qh_h5_exists(f, "/run/tasks"))
        return QH_OK;
    QH_TRY(qh_h5_list_group(f, "/run/tasks", &c->task_names, &c->n_tasks));
    c->task_acc = calloc(c->n_tasks ? c->n_tasks : 1, sizeof *c->task_acc);
    c->task_acc_norm = calloc(c->n_tasks ? c->n_tasks : 1, sizeof *c->task_acc_norm);
    if (!c->task_acc || !c->task_acc_norm)
        QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->n_tasks; i++) {
        QH_TRY(qh_path_format(obj, sizeof obj, path, "/run/tasks/%s", c->task_names[i]));
        c->task_acc[i] = attr_or_nan(f, obj, "acc");
        c->task_acc_norm[i] = attr_or_nan(f, obj, "acc_norm");
    }
    return QH_OK;
}

/* The incoherence name must be one of the table's: a table row of an
 * unknown kind could not be named or ordered, and would hide a file written
 * by a harness this report does not understand. */
static int check_incoherence(const char *path, const char *name)
{
    char valid[128];
    if (qh_incoh_find(name))
        return QH_OK;
    qh_incoh_names(valid, sizeof valid);
    QH_ERROR(QH_EINVAL, "%s: /run incoherence '%s' is not one of %s", path, name, valid);
}

/* The scalar attributes of /run into c (c->path set). */
static int load_run_attrs(hid_t f, const char *path, qh_report_cell *c)
{
    int64_t v;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    QH_TRY(qh_h5_attr_string(f, "/run", "model", &c->model));
    QH_TRY(qh_h5_attr_string(f, "/run", "method", &c->method));
    QH_TRY(qh_h5_attr_int(f, "/run", "status", &v));
    c->status = (int)v;
    QH_TRY(opt_string(f, "id", base, &c->id));
    QH_TRY(opt_string(f, "method_label", c->method, &c->label));
    QH_TRY(opt_string(f, "incoherence", "none", &c->incoherence));
    QH_TRY(check_incoherence(path, c->incoherence));
    QH_TRY(opt_string(f, "message", "", &c->message));
    c->bits = opt_int(f, "bits");
    c->seed = opt_int(f, "seed");
    c->bpw_nominal = opt_double(f, "bits_per_weight_nominal");
    c->bpw_total = opt_double(f, "bits_per_weight_total");
    c->is_baseline = strcmp(c->method, "float32") == 0;
    if (qh_h5_attr_exists(f, "/run", "protocol"))
        QH_TRY(qh_h5_attr_string(f, "/run", "protocol", &c->protocol));
    return QH_OK;
}

/* Reads one run file into c; on failure c is freed and the message set. */
static int load_cell(const char *path, qh_report_cell *c)
{
    hid_t f;
    int st;
    memset(c, 0, sizeof *c);
    QH_TRY(qh_h5_open_read(path, &f));
    if (!qh_h5_exists(f, "/run")) {
        QH_SET_ERROR(st, QH_EIO, "%s: no /run group (not a cell file; a merged file?)", path);
        goto cleanup;
    }
    if (!(c->path = strdup(path))) {
        QH_SET_ERROR(st, QH_ENOMEM, "out of memory");
        goto cleanup;
    }
    if ((st = load_run_attrs(f, path, c)) != QH_OK || (st = load_evals(f, path, c)) != QH_OK
        || (st = load_tasks(f, path, c)) != QH_OK)
        goto cleanup;
    if (qh_h5_exists(f, "/run/layer_table"))
        st = qh_h5_read_table(f, "/run/layer_table", &c->layers);
cleanup:
    qh_h5_close(f);
    if (st != QH_OK)
        cell_free(c);
    return st;
}

void qh_report_set_free(qh_report_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n_cells; i++)
        cell_free(&set->cells[i]);
    free(set->cells);
    qh_h5_free_names(set->warnings, set->n_warnings);
    memset(set, 0, sizeof *set);
}

/* Loads every path into set->cells; a file that cannot be used is a warning. */
static int load_paths(char **paths, size_t n_paths, qh_report_set *set)
{
    set->cells = calloc(n_paths ? n_paths : 1, sizeof *set->cells);
    if (!set->cells)
        QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_paths; i++) {
        if (load_cell(paths[i], &set->cells[set->n_cells]) == QH_OK)
            set->n_cells++;
        else
            QH_TRY(rep_push_fmt(&set->warnings, &set->n_warnings, "skipping %s: %s", paths[i],
                                qh_last_error()));
    }
    return QH_OK;
}

int qh_report_load(const char *dir, qh_report_set *set)
{
    char **paths = NULL;
    size_t n_paths = 0;
    memset(set, 0, sizeof *set);
    QH_TRY(qh_results_scan_dir(dir, &paths, &n_paths, &set->warnings, &set->n_warnings));
    int st = load_paths(paths, n_paths, set);
    if (st == QH_OK && set->n_cells == 0)
        QH_SET_ERROR(st, QH_EINVAL, "results directory %s: no readable run files (%zu .h5 "
                     "files, %zu skipped)", dir, n_paths, set->n_warnings);
    qh_h5_free_names(paths, n_paths);
    if (st != QH_OK)
        qh_report_set_free(set);     /* the message stays: freeing sets none */
    return st;
}
