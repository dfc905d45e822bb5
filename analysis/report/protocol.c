/* protocol.c -- one table, one protocol: the cells of a model agree on every
 * protocol key that is not a row, column or repeat (see report.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_internal.h"
#include "results/record.h"

/* The keys a model's table holds fixed. */
static const char *const table_keys[] = { "model.", "eval.", "code.", "blas.", "record.",
                                          "calibration.", NULL };
static const char *const follows_seed[] = { "calibration.seed", NULL };
static const char *const no_calibration[] = { "calibration.", NULL };

/* The cell the others of `model` are compared with: the first quantized cell
 * with a record (it has calibration keys), else the first with one. */
static const qh_report_cell *reference(const qh_report_set *set, const char *model)
{
    const qh_report_cell *any = NULL;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (strcmp(c->model, model) || !c->protocol) continue;
        if (!c->is_baseline) return c;
        if (!any) any = c;
    }
    return any;
}

static int check_model(const qh_report_set *set, const char *model, char ***notes, size_t *n_notes)
{
    const qh_report_cell *ref = reference(set, model);
    if (!ref)
        return rep_push_fmt(notes, n_notes, "model %s: no cell holds a protocol record (older "
                            "files): protocols not checked", model);
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        char keys[512];
        size_t n = 0;
        if (strcmp(c->model, model) || c == ref) continue;
        if (!c->protocol)
            QH_ERROR(QH_EINVAL, "model %s: %s has no protocol record (written before cells kept "
                     "one) while %s has one; rerun it (qh run --rerun-stale) or give "
                     "--mix-protocols", model, c->path, ref->path);
        const char *const *skip = c->is_baseline || ref->is_baseline ? no_calibration : follows_seed;
        QH_TRY(qh_record_diff(ref->protocol, c->protocol, table_keys, skip, keys, sizeof keys, &n));
        if (n)
            QH_ERROR(QH_EINVAL, "model %s: cells of different protocols in one table: %s and %s "
                     "differ in %s; rerun the stale cells (qh run --rerun-stale) or give "
                     "--mix-protocols to report them together", model, ref->id, c->id, keys);
    }
    return QH_OK;
}

int qh_report_check_protocols(const qh_report_set *set, char ***notes, size_t *n_notes)
{
    const char **models = NULL;
    size_t n = 0;
    QH_TRY(rep_list_models(set, &models, &n));
    int st = QH_OK;
    for (size_t m = 0; m < n && st == QH_OK; m++) st = check_model(set, models[m], notes, n_notes);
    free(models);
    return st;
}
