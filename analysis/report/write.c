/* write.c -- `qh report`'s output: qh_report_write builds one index per
 * model (tables.c) and runs the table and figure writers; every file is
 * written under a temporary name and renamed into place, so a reader never
 * sees half a table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qh_path.h"
#include "report/report_internal.h"

/* ---- top level --------------------------------------------------------------------------- */

void qh_report_outputs_free(qh_report_outputs *out)
{
    if (!out)
        return;
    qh_h5_free_names(out->paths, out->n_paths);
    qh_h5_free_names(out->notes, out->n_notes);
    memset(out, 0, sizeof *out);
}

/* One index per model, in model order.  Output: *idx (n_models entries; free
 * each with rep_model_index_free, then the array).  Return: QH_OK; QH_ENOMEM. */
static int build_indexes(const qh_report_set *set, const char **models, size_t n_models,
                         rep_model_index **idx)
{
    if (!(*idx = calloc(n_models ? n_models : 1, sizeof **idx)))
        QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t m = 0; m < n_models; m++) {
        int st = rep_build_index(set, models[m], &(*idx)[m]);
        if (st != QH_OK) {
            for (size_t k = 0; k < m; k++)
                rep_model_index_free(&(*idx)[k]);
            free(*idx);
            *idx = NULL;
            return st;
        }
    }
    return QH_OK;
}

int qh_report_write(const qh_report_set *set, const qh_report_options *opt,
                    qh_report_outputs *out)
{
    const char **models = NULL;
    size_t n_models = 0;
    rep_model_index *idx = NULL;
    memset(out, 0, sizeof *out);
    if (!set || set->n_cells == 0)
        QH_ERROR(QH_EINVAL, "report: no cells to report");
    QH_TRY(qh_path_mkdirs(opt->out_dir));
    QH_TRY(rep_list_models(set, &models, &n_models));
    int st = build_indexes(set, models, n_models, &idx);
    if (st == QH_OK)
        st = rep_write_tables(set, idx, n_models, opt->out_dir, out);
    if (st == QH_OK)
        st = rep_write_figures(set, idx, n_models, opt, out);
    for (size_t m = 0; idx && m < n_models; m++)
        rep_model_index_free(&idx[m]);
    free(idx);
    free(models);
    return st;
}
