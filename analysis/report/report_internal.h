/* report_internal.h -- what the files of analysis/report/ share and nothing
 * outside uses: the group test and running mean (stats.c), the per-model
 * index of labels, bit widths, datasets, bounds and layers (tables.c, which
 * fixes the row order every table and figure follows), the output files
 * written under a temporary name (write.c), and the two writers that
 * qh_report_write calls (tables.c, figures.c).
 *
 * A "group" is the cells of one (model, method label, bit width) that differ
 * only in seed; the baseline belongs to every bit width.
 */
#ifndef QH_REPORT_INTERNAL_H
#define QH_REPORT_INTERNAL_H

#include <stdio.h>

#include "report/report.h"

#define REP_PATH_CAP 4096
#define REP_TEXT_CAP 1024

/* ---- small utilities (write.c) --------------------------------------------- */

/* Appends a formatted, newly allocated string (never truncated) to (*list, *n).
 * Return: QH_OK; QH_ENOMEM. */
int rep_push_fmt(char ***list, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4))) QH_MUST_CHECK;

int rep_has_str(const char **v, size_t n, const char *s);   /* 1 if s is among v[0..n) */

/* ---- statistics (stats.c) -------------------------------------------------- */

/* 1 if c belongs to the group (model, label, bits). */
int rep_in_group(const qh_report_cell *c, const char *model, const char *label, int bits);

/* Running mean and sum of squared deviations (Welford). */
typedef struct { size_t n; double mean, m2; } rep_accum;
void rep_accum_add(rep_accum *a, double x);

/* A bound column's name without the "bound_" prefix. */
const char *rep_bound_base(const char *bound);

/* 1 if method's row in the method table puts it in the LDLQ bound family
 * (QH_BOUND_FAMILY_LDLQ); 0 for other and unregistered methods. */
int rep_ldlq_family(const char *method);

/* ---- the per-model index (tables.c) ------------------------------------------ */

typedef struct {
    const qh_report_cell *first;     /* first cell with this label (method, incoherence) */
    size_t first_index;
    char display[128];
} rep_label;

typedef struct {                     /* borrows every string from the set */
    const char *model;
    size_t n_labels;
    rep_label *labels;               /* baseline first, then method, incoherence, appearance */
    size_t n_bits;
    int *bits;                       /* quantized bit widths, descending */
    size_t n_datasets;
    const char **datasets;           /* evaluation names (sorted, "wiki*" first) */
    size_t n_tasks;
    const char **tasks;              /* task labels (sorted) */
    size_t n_bounds;
    const char **bounds;             /* bound_* columns in first-appearance order */
    size_t n_layers;
    const char **layers;             /* layer names in model order */
    const int64_t *layer_ids;        /* the "layer" column of the same table, or NULL */
} rep_model_index;

/* The index of `model`'s cells in set.  Output: *mi (free with
 * rep_model_index_free).  Return: QH_OK; QH_ENOMEM. */
int rep_build_index(const qh_report_set *set, const char *model, rep_model_index *mi)
    QH_MUST_CHECK;
void rep_model_index_free(rep_model_index *mi);
/* The distinct models of set, sorted.  Output: *models (new array of
 * borrowed strings; free() it), *n.  Return: QH_OK; QH_ENOMEM. */
int rep_list_models(const qh_report_set *set, const char ***models, size_t *n) QH_MUST_CHECK;

/* Mean over the complete cells of a group of column `col` at the index's
 * layer row l (matched by layer name); NaN when no cell has a positive
 * finite value (stats.c). */
double rep_layer_mean(const qh_report_set *set, const rep_model_index *mi, const char *label,
                      int bits, const char *col, size_t l);

/* ---- output files: temporary name, then rename (write.c) ------------------------ */

typedef struct {
    FILE *f;
    char path[REP_PATH_CAP];
    char tmp[REP_PATH_CAP + 8];
} rep_out_file;

/* Creates dir/name.tmp.  Return: QH_OK; QH_EINVAL (path too long); QH_EIO. */
int rep_out_open(rep_out_file *o, const char *dir, const char *name) QH_MUST_CHECK;
/* Closes o and renames it into place; records the path in out.
 * Return: QH_OK; QH_EIO (write, close or rename failed); QH_ENOMEM. */
int rep_out_commit(rep_out_file *o, qh_report_outputs *out) QH_MUST_CHECK;
void rep_out_abort(rep_out_file *o);   /* closes and removes the temporary file */

/* ---- the writers qh_report_write runs, in this order ------------------------------ */

/* table.md, table.tex, proxy.md, fidelity.md, tasks.md, bounds.md into dir (tables.c). */
int rep_write_tables(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                     const char *dir, qh_report_outputs *out) QH_MUST_CHECK;
/* The TSV files into opt->out_dir, then their figures through gnuplot when
 * available (figures.c); a missing gnuplot or a failed figure is a note. */
int rep_write_figures(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                      const qh_report_options *opt, qh_report_outputs *out) QH_MUST_CHECK;

#endif
