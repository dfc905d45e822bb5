/* stats.c -- the numbers of the report: perplexity and relative proxy loss
 * of a group (mean and sample standard deviation over its complete cells),
 * and how the measured per-layer values compare with each bound of the QuIP
 * theory.  Which bounds describe a method comes from its row in the method
 * table (bound_family), not from its name.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qh_mat.h"
#include "qh_method.h"
#include "report/report_internal.h"

#define HOLD_SLACK 1e-9              /* measured <= bound * (1 + slack) counts as holding */

/* ---- groups and their perplexity and proxy loss --------------------------------------- */

int rep_in_group(const qh_report_cell *c, const char *model, const char *label, int bits)
{
    return strcmp(c->model, model) == 0 && strcmp(c->label, label) == 0
           && (c->is_baseline || c->bits == bits);
}

void rep_accum_add(rep_accum *a, double x)
{
    double d = x - a->mean;
    a->n++;
    a->mean += d / (double)a->n;
    a->m2 += d * (x - a->mean);
}

static qh_report_stat accum_stat(const rep_accum *a, size_t n_failed)
{
    qh_report_stat s = { a->n, n_failed, NAN, NAN };
    if (a->n >= 1) {
        s.mean = a->mean;
        s.std = a->n >= 2 ? sqrt(a->m2 / (double)(a->n - 1)) : 0.0;
    }
    return s;
}

static double cell_metric(const qh_report_cell *c, const char *dataset, qh_report_metric metric)
{
    if (metric == QH_REPORT_TASK_ACC || metric == QH_REPORT_TASK_ACC_NORM) {
        for (size_t i = 0; i < c->n_tasks; i++)
            if (strcmp(c->task_names[i], dataset) == 0)
                return metric == QH_REPORT_TASK_ACC ? c->task_acc[i] : c->task_acc_norm[i];
        return NAN;
    }
    for (size_t i = 0; i < c->n_eval; i++)
        if (strcmp(c->eval_names[i], dataset) == 0)
            return metric == QH_REPORT_KL ? c->eval_kl[i]
                   : metric == QH_REPORT_AGREE ? c->eval_agree[i] : c->eval_ppl[i];
    return NAN;
}

qh_report_stat qh_report_ppl(const qh_report_set *set, const char *model, const char *label,
                             int bits, const char *dataset)
{
    return qh_report_eval_stat(set, model, label, bits, dataset, QH_REPORT_PPL);
}

qh_report_stat qh_report_eval_stat(const qh_report_set *set, const char *model, const char *label,
                                   int bits, const char *dataset, qh_report_metric metric)
{
    rep_accum a = { 0, 0, 0 };
    size_t n_failed = 0;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!rep_in_group(c, model, label, bits))
            continue;
        if (c->status != QH_OK) {
            n_failed++;
            continue;
        }
        double p = cell_metric(c, dataset, metric);
        if (isfinite(p))
            rep_accum_add(&a, p);
    }
    return accum_stat(&a, n_failed);
}

/* sum(num) / sum(den) over the layers where both are finite; NaN if none. */
static double cell_ratio_of_sums(const qh_report_cell *c, const char *num, const char *den)
{
    const qh_h5_column *a = qh_h5_table_find(&c->layers, num);
    const qh_h5_column *b = qh_h5_table_find(&c->layers, den);
    double sa = 0, sb = 0;
    size_t used = 0;
    for (size_t r = 0; a && b && r < c->layers.n_rows; r++) {
        double x = qh_h5_column_value(a, c->layers.n_rows, r);
        double y = qh_h5_column_value(b, c->layers.n_rows, r);
        if (isfinite(x) && isfinite(y)) {
            sa += x;
            sb += y;
            used++;
        }
    }
    return used && sb > 0 ? sa / sb : NAN;
}

qh_report_stat qh_report_proxy_rel(const qh_report_set *set, const char *model,
                                   const char *label, int bits, int processed)
{
    rep_accum a = { 0, 0, 0 };
    size_t n_failed = 0;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!rep_in_group(c, model, label, bits) || c->is_baseline)
            continue;
        if (c->status != QH_OK) {
            n_failed++;
            continue;
        }
        double r = processed ? cell_ratio_of_sums(c, "proxy_proc", "proxy_norm_proc")
                             : cell_ratio_of_sums(c, "proxy", "proxy_norm");
        if (isfinite(r))
            rep_accum_add(&a, r);
    }
    return accum_stat(&a, n_failed);
}

/* ---- bounds ---------------------------------------------------------------------------- */

const char *rep_bound_base(const char *bound)
{
    return strncmp(bound, "bound_", 6) == 0 ? bound + 6 : bound;
}

const char *qh_report_bound_measured(const char *bound)
{
    const char *b = rep_bound_base(bound);
    if (strcmp(b, "lemma2_trD") == 0)
        return "tr_D_proc";
    if (strcmp(b, "rht_mu_H") == 0)
        return "mu_H_proc";
    if (strcmp(b, "rht_mu_W") == 0)
        return "mu_W_proc";
    return "proxy_proc";
}

const char *qh_report_bound_kind(const char *bound)
{
    const char *b = rep_bound_base(bound);
    if (strcmp(b, "lemma2_trD") == 0)
        return "tr D bound: must hold";
    if (strncmp(b, "rht_mu", 6) == 0)
        return "high probability";
    if (strstr(b, "worst"))
        return "worst case: must hold without clamping";
    return "average: prediction";
}

static double median_sorted(const double *x, size_t n)
{
    if (n == 0)
        return NAN;
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Layer rows in the complete cells of a group: the capacity for its ratios. */
static size_t count_layers(const qh_report_set *set, const char *model, const char *label,
                           int bits)
{
    size_t n = 0;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (rep_in_group(c, model, label, bits) && !c->is_baseline && c->status == QH_OK)
            n += c->layers.n_rows;
    }
    return n;
}

int rep_ldlq_family(const char *method)
{
    const qh_method_type *m = qh_method_find(method);
    return m && m->bound_family == QH_BOUND_FAMILY_LDLQ;
}

/* The LDLQ theorems (Thm 1's LDLQ bounds, Thm 3, the QuIP# variant) are
 * statements about the LDL feedback family only; the rest hold for any
 * rounding. */
int qh_report_bound_applies(const char *method, const char *bound)
{
    const char *b = rep_bound_base(bound);
    if (strncmp(b, "thm1_ldlq", 9) == 0 || strncmp(b, "thm3", 4) == 0
        || strncmp(b, "quipsharp", 9) == 0)
        return rep_ldlq_family(method);
    return 1;
}

qh_report_bound_stat qh_report_bound(const qh_report_set *set, const char *model,
                                     const char *label, int bits, const char *bound)
{
    qh_report_bound_stat s = { 0, 0, NAN, NAN, qh_report_bound_measured(bound) };
    size_t cap = count_layers(set, model, label, bits);
    double *ratios = malloc((cap ? cap : 1) * sizeof *ratios);
    if (!ratios)
        return s;                    /* no memory: reported as "no layers" (no status here) */
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!rep_in_group(c, model, label, bits) || c->is_baseline || c->status != QH_OK
            || !qh_report_bound_applies(c->method, bound))
            continue;
        const qh_h5_column *m = qh_h5_table_find(&c->layers, s.measured);
        const qh_h5_column *b = qh_h5_table_find(&c->layers, bound);
        for (size_t r = 0; m && b && r < c->layers.n_rows; r++) {
            double x = qh_h5_column_value(m, c->layers.n_rows, r);
            double y = qh_h5_column_value(b, c->layers.n_rows, r);
            if (!isfinite(x) || !isfinite(y) || y <= 0)
                continue;
            ratios[s.n_layers++] = x / y;
            s.n_hold += x <= y * (1 + HOLD_SLACK);
        }
    }
    if (s.n_layers) {
        qh_sort_doubles(ratios, s.n_layers);
        s.frac_hold = (double)s.n_hold / (double)s.n_layers;
        s.median_ratio = median_sorted(ratios, s.n_layers);
    }
    free(ratios);
    return s;
}

/* ---- per-layer means (the per-layer figure) ---------------------------------------- */

/* The row of layer `name` in cell c's table (c->layers.n_rows if absent). */
static size_t find_layer(const qh_report_cell *c, const char *name, size_t hint)
{
    const qh_h5_column *names = qh_h5_table_find(&c->layers, "name");
    if (!names || names->type != QH_RESULTS_STRING)
        return c->layers.n_rows;
    if (hint < c->layers.n_rows && strcmp(names->s[hint], name) == 0)
        return hint;
    for (size_t r = 0; r < c->layers.n_rows; r++)
        if (strcmp(names->s[r], name) == 0)
            return r;
    return c->layers.n_rows;
}

double rep_layer_mean(const qh_report_set *set, const rep_model_index *mi, const char *label,
                      int bits, const char *col, size_t l)
{
    rep_accum a = { 0, 0, 0 };
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!rep_in_group(c, mi->model, label, bits) || c->is_baseline || c->status != QH_OK)
            continue;
        size_t r = find_layer(c, mi->layers[l], l);
        double x = qh_h5_column_value(qh_h5_table_find(&c->layers, col), c->layers.n_rows, r);
        if (isfinite(x) && x > 0)
            rep_accum_add(&a, x);
    }
    return a.n ? a.mean : NAN;
}

