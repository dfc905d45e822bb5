/* report.c -- `qh report`: loads a directory of per-cell results files and
 * writes the QuIP-style perplexity table (Markdown and LaTeX), the relative
 * proxy loss table, the bound-check table, one TSV per figure, and the
 * figures themselves through the gnuplot scripts in analysis/plots/.
 *
 * Aggregation: a "group" is the cells of one (model, method label, bit width)
 * that differ only in seed.  Numbers are the mean over the group's complete
 * cells (status 0) and the sample standard deviation (n-1 denominator);
 * failed cells are listed in footnotes with their message.  Row order:
 * baseline, then method (OPTQ, LDLQ, LDLQ-RG, Greedy, Nearest, others), then
 * incoherence (none, kron, hadamard, others), then first appearance in
 * file-name order.
 *
 * Left out: zero-shot accuracies, KL columns, error bars in the figures.
 */
#include "report/report.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATH_CAP 4096
#define TEXT_CAP 1024
#define HOLD_SLACK 1e-9              /* measured <= bound * (1 + slack) counts as holding */

/* ---- small utilities -------------------------------------------------------- */

/* Appends a formatted, newly allocated string to (*list, *n). */
static int push_fmt(char ***list, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int push_fmt(char ***list, size_t *n, const char *fmt, ...)
{
    char buf[TEXT_CAP * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **grown = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown)
        QH_ERROR(QH_ENOMEM, "out of memory (report list)");
    *list = grown;
    if (!(grown[*n] = strdup(buf)))
        QH_ERROR(QH_ENOMEM, "out of memory (report list)");
    ++*n;
    return QH_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- directory scan and loading ---------------------------------------------- */

int qh_report_scan_dir(const char *dir, char ***paths, size_t *n_paths, char ***warnings,
                       size_t *n_warnings)
{
    int st = QH_OK;
    *paths = NULL;
    *n_paths = 0;
    *warnings = NULL;
    *n_warnings = 0;
    DIR *d = opendir(dir);
    if (!d)
        QH_ERROR(QH_EIO, "results directory %s: cannot read (%s)", dir, strerror(errno));
    struct dirent *e;
    while (st == QH_OK && (e = readdir(d))) {
        if (ends_with(e->d_name, ".tmp"))
            st = push_fmt(warnings, n_warnings, "skipping temporary file %s/%s (an unfinished "
                          "write)", dir, e->d_name);
        else if (ends_with(e->d_name, ".h5"))
            st = push_fmt(paths, n_paths, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (st != QH_OK) {
        qh_h5_free_names(*paths, *n_paths);
        qh_h5_free_names(*warnings, *n_warnings);
        *paths = *warnings = NULL;
        *n_paths = *n_warnings = 0;
        return st;
    }
    if (*n_paths)
        qsort(*paths, *n_paths, sizeof **paths, cmp_str);
    if (*n_warnings)
        qsort(*warnings, *n_warnings, sizeof **warnings, cmp_str);
    return QH_OK;
}

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
    qh_h5_table_free(&c->layers);
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

/* The evaluations under /run/eval: names and ppl attributes. */
static int load_evals(hid_t f, qh_report_cell *c)
{
    char **names = NULL, obj[PATH_CAP];
    size_t n = 0;
    if (!qh_h5_exists(f, "/run/eval"))
        return QH_OK;
    QH_TRY(qh_h5_list_group(f, "/run/eval", &names, &n));
    c->eval_names = calloc(n ? n : 1, sizeof *c->eval_names);
    c->eval_ppl = calloc(n ? n : 1, sizeof *c->eval_ppl);
    if (!c->eval_names || !c->eval_ppl) {
        qh_h5_free_names(names, n);
        QH_ERROR(QH_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        double ppl;
        snprintf(obj, sizeof obj, "/run/eval/%s", names[i]);
        if (!qh_h5_attr_exists(f, obj, "ppl") || qh_h5_attr_double(f, obj, "ppl", &ppl) != QH_OK) {
            free(names[i]);
            continue;                /* an evaluation without ppl is not a column */
        }
        c->eval_names[c->n_eval] = names[i];
        c->eval_ppl[c->n_eval++] = ppl;
    }
    free(names);
    return QH_OK;
}

/* Reads one run file into c; on failure c is freed and the message set. */
static int load_cell(const char *path, qh_report_cell *c)
{
    hid_t f;
    int64_t v;
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
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if ((st = qh_h5_attr_string(f, "/run", "model", &c->model)) != QH_OK
        || (st = qh_h5_attr_string(f, "/run", "method", &c->method)) != QH_OK
        || (st = qh_h5_attr_int(f, "/run", "status", &v)) != QH_OK)
        goto cleanup;
    c->status = (int)v;
    if ((st = opt_string(f, "id", base, &c->id)) != QH_OK
        || (st = opt_string(f, "method_label", c->method, &c->label)) != QH_OK
        || (st = opt_string(f, "incoherence", "none", &c->incoherence)) != QH_OK
        || (st = opt_string(f, "message", "", &c->message)) != QH_OK)
        goto cleanup;
    c->bits = qh_h5_attr_exists(f, "/run", "bits") && qh_h5_attr_int(f, "/run", "bits", &v) == QH_OK
              ? (int)v : 0;
    c->seed = qh_h5_attr_exists(f, "/run", "seed") && qh_h5_attr_int(f, "/run", "seed", &v) == QH_OK
              ? (int)v : 0;
    c->bpw_nominal = opt_double(f, "bits_per_weight_nominal");
    c->bpw_total = opt_double(f, "bits_per_weight_total");
    c->is_baseline = strcmp(c->method, "float32") == 0;
    if ((st = load_evals(f, c)) != QH_OK)
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

int qh_report_load(const char *dir, qh_report_set *set)
{
    char **paths = NULL;
    size_t n_paths = 0;
    int st;
    memset(set, 0, sizeof *set);
    QH_TRY(qh_report_scan_dir(dir, &paths, &n_paths, &set->warnings, &set->n_warnings));
    set->cells = calloc(n_paths ? n_paths : 1, sizeof *set->cells);
    if (!set->cells) {
        QH_SET_ERROR(st, QH_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n_paths; i++) {
        if (load_cell(paths[i], &set->cells[set->n_cells]) == QH_OK) {
            set->n_cells++;
            continue;
        }
        if ((st = push_fmt(&set->warnings, &set->n_warnings, "skipping %s: %s", paths[i],
                           qh_last_error())) != QH_OK)
            goto cleanup;
    }
    st = QH_OK;
    if (set->n_cells == 0)
        QH_SET_ERROR(st, QH_EINVAL, "results directory %s: no readable run files (%zu .h5 "
                     "files, %zu skipped)", dir, n_paths, set->n_warnings);
cleanup:
    qh_h5_free_names(paths, n_paths);
    if (st != QH_OK) {
        char keep[TEXT_CAP];
        snprintf(keep, sizeof keep, "%s", qh_last_error());
        qh_report_set_free(set);
        QH_ERROR(st, "%s", keep);
    }
    return QH_OK;
}

/* ---- statistics ----------------------------------------------------------------- */

static int in_group(const qh_report_cell *c, const char *model, const char *label, int bits)
{
    return strcmp(c->model, model) == 0 && strcmp(c->label, label) == 0
           && (c->is_baseline || c->bits == bits);
}

/* Running mean and sum of squared deviations (Welford). */
typedef struct { size_t n; double mean, m2; } accum;

static void accum_add(accum *a, double x)
{
    double d = x - a->mean;
    a->n++;
    a->mean += d / (double)a->n;
    a->m2 += d * (x - a->mean);
}

static qh_report_stat accum_stat(const accum *a, size_t n_failed)
{
    qh_report_stat s = { a->n, n_failed, NAN, NAN };
    if (a->n >= 1) {
        s.mean = a->mean;
        s.std = a->n >= 2 ? sqrt(a->m2 / (double)(a->n - 1)) : 0.0;
    }
    return s;
}

static double cell_ppl(const qh_report_cell *c, const char *dataset)
{
    for (size_t i = 0; i < c->n_eval; i++)
        if (strcmp(c->eval_names[i], dataset) == 0)
            return c->eval_ppl[i];
    return NAN;
}

qh_report_stat qh_report_ppl(const qh_report_set *set, const char *model, const char *label,
                             int bits, const char *dataset)
{
    accum a = { 0, 0, 0 };
    size_t n_failed = 0;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!in_group(c, model, label, bits))
            continue;
        if (c->status != QH_OK) {
            n_failed++;
            continue;
        }
        double p = cell_ppl(c, dataset);
        if (isfinite(p))
            accum_add(&a, p);
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
    accum a = { 0, 0, 0 };
    size_t n_failed = 0;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!in_group(c, model, label, bits) || c->is_baseline)
            continue;
        if (c->status != QH_OK) {
            n_failed++;
            continue;
        }
        double r = processed ? cell_ratio_of_sums(c, "proxy_proc", "proxy_norm_proc")
                             : cell_ratio_of_sums(c, "proxy", "proxy_norm");
        if (isfinite(r))
            accum_add(&a, r);
    }
    return accum_stat(&a, n_failed);
}

static const char *bound_base(const char *bound)
{
    return strncmp(bound, "bound_", 6) == 0 ? bound + 6 : bound;
}

const char *qh_report_bound_measured(const char *bound)
{
    const char *b = bound_base(bound);
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
    const char *b = bound_base(bound);
    if (strcmp(b, "lemma2_trD") == 0)
        return "tr D bound: must hold";
    if (strncmp(b, "rht_mu", 6) == 0)
        return "high probability";
    if (strstr(b, "worst"))
        return "worst case: must hold without clamping";
    return "average: prediction";
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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
        if (in_group(c, model, label, bits) && !c->is_baseline && c->status == QH_OK)
            n += c->layers.n_rows;
    }
    return n;
}

static int is_ldlq_family(const char *method)
{
    return strncmp(method, "ldlq", 4) == 0 || strcmp(method, "gptq") == 0;
}

int qh_report_bound_applies(const char *method, const char *bound)
{
    const char *b = bound_base(bound);
    if (strncmp(b, "thm1_ldlq", 9) == 0 || strncmp(b, "thm3", 4) == 0
        || strncmp(b, "quipsharp", 9) == 0)
        return is_ldlq_family(method);
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
        if (!in_group(c, model, label, bits) || c->is_baseline || c->status != QH_OK
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
        qsort(ratios, s.n_layers, sizeof *ratios, cmp_double);
        s.frac_hold = (double)s.n_hold / (double)s.n_layers;
        s.median_ratio = median_sorted(ratios, s.n_layers);
    }
    free(ratios);
    return s;
}

/* ---- names and ordering ------------------------------------------------------------ */

static const char *const method_order[] = { "float32", "gptq", "ldlq", "ldlq_rg", "greedy",
                                            "rtn", "quipsharp", "pvq", "aqlm", "billm",
                                            "pbllm", "ptq161", NULL };
static const char *const method_display[] = { "FP32", "OPTQ", "LDLQ", "LDLQ-RG", "Greedy",
                                              "Nearest", "QuIP#", "PVQ", "AQLM", "BiLLM",
                                              "PB-LLM", "PTQ1.61", NULL };
static const char *const incoh_order[] = { "none", "kron", "hadamard", NULL };

static int rank_of(const char *const *table, const char *s)
{
    int i = 0;
    for (; table[i]; i++)
        if (strcmp(table[i], s) == 0)
            return i;
    return i;
}

void qh_report_display_name(const char *method, const char *incoherence, char *buf, size_t cap)
{
    int m = rank_of(method_order, method);
    const char *name = method_order[m] ? method_display[m] : method;
    const char *suffix = "";
    if (strcmp(incoherence, "kron") == 0)
        suffix = "+IncP";
    else if (strcmp(incoherence, "hadamard") == 0)
        suffix = "+IncP(Had)";
    else if (strcmp(incoherence, "none") != 0 && *incoherence)
        suffix = "+?";
    snprintf(buf, cap, "%s%s", name, suffix);
    if (strcmp(suffix, "+?") == 0)
        snprintf(buf, cap, "%s+%s", name, incoherence);
}

typedef struct {
    const qh_report_cell *first;     /* first cell with this label (method, incoherence) */
    size_t first_index;
    char display[128];
} label_info;

typedef struct {
    const char *model;
    size_t n_labels;
    label_info *labels;              /* baseline first, then method, incoherence, appearance */
    size_t n_bits;
    int *bits;                       /* quantized bit widths, descending */
    size_t n_datasets;
    const char **datasets;           /* evaluation names (sorted, "wiki*" first) */
    size_t n_bounds;
    const char **bounds;             /* bound_* columns in first-appearance order */
    size_t n_layers;
    const char **layers;             /* layer names in model order */
    const int64_t *layer_ids;        /* the "layer" column of the same table, or NULL */
} model_index;

static int cmp_label(const void *pa, const void *pb)
{
    const label_info *a = pa, *b = pb;
    if (a->first->is_baseline != b->first->is_baseline)
        return b->first->is_baseline - a->first->is_baseline;
    int ma = rank_of(method_order, a->first->method), mb = rank_of(method_order, b->first->method);
    if (ma != mb)
        return ma - mb;
    int ia = rank_of(incoh_order, a->first->incoherence);
    int ib = rank_of(incoh_order, b->first->incoherence);
    if (ia != ib)
        return ia - ib;
    return (a->first_index > b->first_index) - (a->first_index < b->first_index);
}

static int cmp_int_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (y > x) - (y < x);
}

static int cmp_dataset(const void *pa, const void *pb)
{
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    int wa = strncmp(a, "wiki", 4) == 0, wb = strncmp(b, "wiki", 4) == 0;
    return wa != wb ? wb - wa : strcmp(a, b);
}

static int has_str(const char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

static void model_index_free(model_index *mi)
{
    free(mi->labels);
    free(mi->bits);
    free(mi->datasets);
    free(mi->bounds);
    free(mi->layers);
    memset(mi, 0, sizeof *mi);
}

/* Gives each label a display name; labels that would share one keep their
 * raw method label instead. */
static void name_labels(model_index *mi)
{
    for (size_t i = 0; i < mi->n_labels; i++)
        qh_report_display_name(mi->labels[i].first->method, mi->labels[i].first->incoherence,
                               mi->labels[i].display, sizeof mi->labels[i].display);
    /* Mark every label of a colliding group before renaming any: renaming
     * one at a time would leave the group's last member under the shared name. */
    unsigned char *clash = calloc(mi->n_labels ? mi->n_labels : 1, 1);
    for (size_t i = 0; i < mi->n_labels; i++)
        for (size_t j = i + 1; j < mi->n_labels; j++)
            if (strcmp(mi->labels[i].display, mi->labels[j].display) == 0)
                if (clash) clash[i] = clash[j] = 1;
    for (size_t i = 0; i < mi->n_labels; i++)
        if (!clash || clash[i])
            snprintf(mi->labels[i].display, sizeof mi->labels[i].display, "%s",
                     mi->labels[i].first->label);
    free(clash);
}

/* Layer order: the table with the most rows among the model's complete cells. */
static void pick_layers(const qh_report_set *set, model_index *mi, const qh_report_cell **best)
{
    *best = NULL;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (strcmp(c->model, mi->model) == 0 && c->status == QH_OK
            && qh_h5_table_find(&c->layers, "name")
            && qh_h5_table_find(&c->layers, "name")->type == QH_RESULTS_STRING
            && (!*best || c->layers.n_rows > (*best)->layers.n_rows))
            *best = c;
    }
}

static int build_index(const qh_report_set *set, const char *model, model_index *mi)
{
    size_t n = set->n_cells;
    memset(mi, 0, sizeof *mi);
    mi->model = model;
    mi->labels = calloc(n, sizeof *mi->labels);
    mi->bits = calloc(n, sizeof *mi->bits);
    size_t max_ds = 0, max_bounds = 0;
    for (size_t i = 0; i < n; i++) {
        max_ds += set->cells[i].n_eval;
        max_bounds += set->cells[i].layers.n_cols;
    }
    mi->datasets = calloc(max_ds + 1, sizeof *mi->datasets);
    mi->bounds = calloc(max_bounds + 1, sizeof *mi->bounds);
    if (!mi->labels || !mi->bits || !mi->datasets || !mi->bounds) {
        model_index_free(mi);
        QH_ERROR(QH_ENOMEM, "out of memory (report index)");
    }
    for (size_t i = 0; i < n; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (strcmp(c->model, model) != 0)
            continue;
        size_t k = 0;
        while (k < mi->n_labels && strcmp(mi->labels[k].first->label, c->label) != 0)
            k++;
        if (k == mi->n_labels)
            mi->labels[mi->n_labels++] = (label_info){ c, i, "" };
        int seen = c->is_baseline;
        for (size_t b = 0; b < mi->n_bits && !seen; b++)
            seen = mi->bits[b] == c->bits;
        if (!seen)
            mi->bits[mi->n_bits++] = c->bits;
        for (size_t e = 0; c->status == QH_OK && e < c->n_eval; e++)
            if (!has_str(mi->datasets, mi->n_datasets, c->eval_names[e]))
                mi->datasets[mi->n_datasets++] = c->eval_names[e];
        for (size_t j = 0; j < c->layers.n_cols; j++) {
            const char *col = c->layers.cols[j].name;
            if (strncmp(col, "bound_", 6) == 0 && !has_str(mi->bounds, mi->n_bounds, col))
                mi->bounds[mi->n_bounds++] = col;
        }
    }
    qsort(mi->labels, mi->n_labels, sizeof *mi->labels, cmp_label);
    if (mi->n_bits)
        qsort(mi->bits, mi->n_bits, sizeof *mi->bits, cmp_int_desc);
    if (mi->n_datasets)
        qsort(mi->datasets, mi->n_datasets, sizeof *mi->datasets, cmp_dataset);
    name_labels(mi);
    const qh_report_cell *best;
    pick_layers(set, mi, &best);
    if (best) {
        const qh_h5_column *names = qh_h5_table_find(&best->layers, "name");
        const qh_h5_column *ids = qh_h5_table_find(&best->layers, "layer");
        mi->n_layers = best->layers.n_rows;
        mi->layers = calloc(mi->n_layers ? mi->n_layers : 1, sizeof *mi->layers);
        if (!mi->layers) {
            model_index_free(mi);
            QH_ERROR(QH_ENOMEM, "out of memory (report index)");
        }
        for (size_t r = 0; r < mi->n_layers; r++)
            mi->layers[r] = names->s[r];
        mi->layer_ids = ids && ids->type == QH_RESULTS_INT64 ? ids->i : NULL;
    }
    return QH_OK;
}

/* Distinct models in file order. */
static int list_models(const qh_report_set *set, const char ***models, size_t *n)
{
    *n = 0;
    *models = calloc(set->n_cells ? set->n_cells : 1, sizeof **models);
    if (!*models)
        QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t i = 0; i < set->n_cells; i++)
        if (!has_str(*models, *n, set->cells[i].model))
            (*models)[(*n)++] = set->cells[i].model;
    qsort(*models, *n, sizeof **models, cmp_str);
    return QH_OK;
}

/* ---- output files: temporary name, then rename ------------------------------------ */

typedef struct {
    FILE *f;
    char path[PATH_CAP];
    char tmp[PATH_CAP + 8];
} out_file;

static int out_open(out_file *o, const char *dir, const char *name)
{
    if (snprintf(o->path, sizeof o->path, "%s/%s", dir, name) >= (int)sizeof o->path)
        QH_ERROR(QH_EINVAL, "report file name too long: %s/%s", dir, name);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", o->path);
    if (!(o->f = fopen(o->tmp, "w")))
        QH_ERROR(QH_EIO, "cannot create %s (%s)", o->tmp, strerror(errno));
    return QH_OK;
}

/* Closes o and renames it into place; records the path in out. */
static int out_commit(out_file *o, qh_report_outputs *out)
{
    int bad = ferror(o->f);
    if (fclose(o->f) != 0)
        bad = 1;
    o->f = NULL;
    if (bad || rename(o->tmp, o->path) != 0) {
        remove(o->tmp);
        QH_ERROR(QH_EIO, "cannot write %s (%s)", o->path, strerror(errno));
    }
    return push_fmt(&out->paths, &out->n_paths, "%s", o->path);
}

static void out_abort(out_file *o)
{
    if (o->f) {
        fclose(o->f);
        remove(o->tmp);
        o->f = NULL;
    }
}

static int mkdir_p(const char *dir)
{
    char buf[PATH_CAP];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        QH_ERROR(QH_EINVAL, "output directory name too long: %s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            QH_ERROR(QH_EIO, "cannot create directory %s (%s)", buf, strerror(errno));
        *p = saved;
        if (!saved)
            break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        QH_ERROR(QH_EIO, "output path %s is not a directory", dir);
    return QH_OK;
}

/* ---- text formatting ------------------------------------------------------------- */

typedef enum { FMT_MD, FMT_TEX } fmt_kind;

/* Copies s into buf escaping what the format treats specially; newlines
 * become spaces. */
static void escape(fmt_kind k, const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 24 < cap; s++) {
        char one[3] = { *s, 0, 0 };
        const char *rep = one;
        if (*s == '\n' || *s == '\r' || *s == '\t')
            rep = " ";
        else if (k == FMT_MD && *s == '|')
            rep = "\\|";
        else if (k == FMT_TEX && strchr("&%$#_{}", *s))
            one[0] = '\\', one[1] = *s;
        else if (k == FMT_TEX && *s == '~')
            rep = "\\textasciitilde{}";
        else if (k == FMT_TEX && *s == '^')
            rep = "\\textasciicircum{}";
        else if (k == FMT_TEX && *s == '\\')
            rep = "\\textbackslash{}";
        size_t len = strlen(rep);
        memcpy(buf + o, rep, len);
        o += len;
    }
    buf[o] = '\0';
}

typedef struct {
    size_t n;
    const qh_report_cell **cells;    /* footnoted failed cells, numbered 1..n */
} footnotes;

static int footnote_number(footnotes *fn, const qh_report_cell *c)
{
    for (size_t i = 0; i < fn->n; i++)
        if (fn->cells[i] == c)
            return (int)i + 1;
    const qh_report_cell **grown = realloc(fn->cells, (fn->n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    fn->cells = grown;
    grown[fn->n++] = c;
    return (int)fn->n;
}

/* Markers of the failed cells of a group: "[^3][^4]" (md) or "3,4" (tex). */
static void failure_marks(fmt_kind k, const qh_report_set *set, const char *model,
                          const char *label, int bits, footnotes *fn, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < set->n_cells && o + 24 < cap; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!in_group(c, model, label, bits) || c->status == QH_OK)
            continue;
        int num = footnote_number(fn, c);
        if (k == FMT_MD)
            o += (size_t)snprintf(buf + o, cap - o, "[^%d]", num);
        else
            o += (size_t)snprintf(buf + o, cap - o, "%s%d", o ? "," : "", num);
    }
}

/* One perplexity entry of the main table. */
static void ppl_entry(fmt_kind k, const qh_report_set *set, const char *model, const char *label,
                      int bits, const char *dataset, footnotes *fn, char *buf, size_t cap)
{
    qh_report_stat s = qh_report_ppl(set, model, label, bits, dataset);
    char marks[256] = "", num[128];
    const char *pm = k == FMT_MD ? "±" : "$\\pm$";
    if (s.n_failed)
        failure_marks(k, set, model, label, bits, fn, marks, sizeof marks);
    if (s.n == 0 && s.n_failed)
        snprintf(num, sizeof num, "failed");
    else if (s.n == 0)
        snprintf(num, sizeof num, "%s", k == FMT_MD ? "—" : "--");
    else if (s.n == 1)
        snprintf(num, sizeof num, "%.2f", s.mean);
    else
        snprintf(num, sizeof num, "%.2f %s %.2f (%zu)", s.mean, pm, s.std, s.n);
    if (!marks[0])
        snprintf(buf, cap, "%s", num);
    else if (k == FMT_MD)
        snprintf(buf, cap, "%s%s", num, marks);
    else
        snprintf(buf, cap, "%s\\textsuperscript{%s}", num, marks);
}

/* "nominal / total" bits per weight of a group (mean over complete cells,
 * else over all cells). */
static void bpw_entry(fmt_kind k, const qh_report_set *set, const char *model, const char *label,
                      int bits, char *buf, size_t cap)
{
    accum nom = { 0, 0, 0 }, tot = { 0, 0, 0 }, nom_any = { 0, 0, 0 }, tot_any = { 0, 0, 0 };
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!in_group(c, model, label, bits))
            continue;
        if (isfinite(c->bpw_nominal))
            accum_add(c->status == QH_OK ? &nom : &nom_any, c->bpw_nominal);
        if (isfinite(c->bpw_total))
            accum_add(c->status == QH_OK ? &tot : &tot_any, c->bpw_total);
    }
    const accum *a = nom.n ? &nom : &nom_any, *b = tot.n ? &tot : &tot_any;
    /* Integer nominal widths read as "4"; fractional ones (BiLLM's salient
     * columns, PVQ's mixed radix) with three decimals like the total. */
    char nominal[32];
    double nm = a->n ? a->mean : NAN;
    snprintf(nominal, sizeof nominal, nm == floor(nm) ? "%.0f" : "%.3f", nm);
    if (!a->n && !b->n)
        snprintf(buf, cap, "%s", k == FMT_MD ? "—" : "--");
    else if (!b->n)
        snprintf(buf, cap, "%s / ?", nominal);
    else
        snprintf(buf, cap, "%s / %.3f", nominal, b->mean);
}

static void write_footnotes(fmt_kind k, FILE *f, const footnotes *fn, size_t from)
{
    char msg[TEXT_CAP], id[512];
    for (size_t i = from; i < fn->n; i++) {
        const qh_report_cell *c = fn->cells[i];
        escape(k, c->message[0] ? c->message : "(no message)", msg, sizeof msg);
        escape(k, c->id, id, sizeof id);
        if (k == FMT_MD)
            fprintf(f, "[^%zu]: failed cell `%s` (seed %d): status %d (%s): %s\n", i + 1, id,
                    c->seed, c->status, qh_status_name(c->status), msg);
        else
            fprintf(f, "\\textsuperscript{%zu} failed cell \\texttt{%s} (seed %d): status %d "
                    "(%s): %s\\\\\n", i + 1, id, c->seed, c->status, qh_status_name(c->status),
                    msg);
    }
}

/* ---- the main table ------------------------------------------------------------------ */

/* The body rows of the perplexity table, one per label: perplexity per bit
 * width and dataset, then the bits; Markdown pipes or LaTeX ampersands (with
 * a rule under the float32 baseline). */
static void table_rows(fmt_kind k, FILE *f, const qh_report_set *set, const model_index *mi,
                       footnotes *fn)
{
    char entry[512], name[256];
    const char *sep = k == FMT_MD ? " %s |" : " & %s";
    for (size_t l = 0; l < mi->n_labels; l++) {
        const char *label = mi->labels[l].first->label;
        escape(k, mi->labels[l].display, name, sizeof name);
        fprintf(f, k == FMT_MD ? "| %s |" : "%s", name);
        for (size_t b = 0; b < mi->n_bits; b++) {
            for (size_t d = 0; d < mi->n_datasets; d++) {
                ppl_entry(k, set, mi->model, label, mi->bits[b], mi->datasets[d], fn, entry,
                          sizeof entry);
                fprintf(f, sep, entry);
            }
            bpw_entry(k, set, mi->model, label, mi->bits[b], entry, sizeof entry);
            fprintf(f, sep, entry);
        }
        fprintf(f, k == FMT_MD ? "\n" : " \\\\\n");
        if (k == FMT_TEX && mi->labels[l].first->is_baseline)
            fprintf(f, "\\midrule\n");
    }
}

static void md_table(FILE *f, const qh_report_set *set, const model_index *mi, footnotes *fn)
{
    char name[256];
    size_t fn_from = fn->n;
    escape(FMT_MD, mi->model, name, sizeof name);
    fprintf(f, "## %s\n\nPerplexity (lower is better): mean ± sample standard deviation over "
            "seeds, with the seed count in parentheses when there are several. "
            "bpw: nominal / total bits per weight.\n\n| Method |", name);
    for (size_t b = 0; b < mi->n_bits; b++) {
        for (size_t d = 0; d < mi->n_datasets; d++)
            fprintf(f, " W%d %s |", mi->bits[b], mi->datasets[d]);
        fprintf(f, " W%d bpw |", mi->bits[b]);
    }
    fprintf(f, "\n|:---|");
    for (size_t b = 0; b < mi->n_bits; b++)
        for (size_t d = 0; d <= mi->n_datasets; d++)
            fprintf(f, "---:|");
    fprintf(f, "\n");
    table_rows(FMT_MD, f, set, mi, fn);
    if (fn->n > fn_from) {
        fprintf(f, "\n");
        write_footnotes(FMT_MD, f, fn, fn_from);
    }
    fprintf(f, "\n");
}

static void tex_table(FILE *f, const qh_report_set *set, const model_index *mi, footnotes *fn)
{
    char entry[512], name[256];
    size_t fn_from = fn->n;
    escape(FMT_TEX, mi->model, name, sizeof name);
    fprintf(f, "\\begin{table}[t]\n\\centering\n\\small\n\\caption{Perplexity of \\texttt{%s} "
            "(mean $\\pm$ sample standard deviation over seeds, seed count in parentheses); "
            "bpw: nominal / total bits per weight.}\n\\begin{tabular}{l", name);
    for (size_t b = 0; b < mi->n_bits; b++)
        for (size_t d = 0; d <= mi->n_datasets; d++)
            fprintf(f, "r");
    fprintf(f, "}\n\\toprule\n");
    for (size_t b = 0; b < mi->n_bits; b++)
        fprintf(f, " & \\multicolumn{%zu}{c}{W%d}", mi->n_datasets + 1, mi->bits[b]);
    fprintf(f, " \\\\\nMethod");
    for (size_t b = 0; b < mi->n_bits; b++) {
        for (size_t d = 0; d < mi->n_datasets; d++) {
            escape(FMT_TEX, mi->datasets[d], entry, sizeof entry);
            fprintf(f, " & %s", entry);
        }
        fprintf(f, " & bpw");
    }
    fprintf(f, " \\\\\n\\midrule\n");
    table_rows(FMT_TEX, f, set, mi, fn);
    fprintf(f, "\\bottomrule\n\\end{tabular}\n");
    if (fn->n > fn_from) {
        fprintf(f, "\n\\par\\footnotesize\n");
        write_footnotes(FMT_TEX, f, fn, fn_from);
    }
    fprintf(f, "\\end{table}\n\n");
}

/* ---- proxy and bounds tables ---------------------------------------------------------- */

static void proxy_entry(const qh_report_stat *s, char *buf, size_t cap)
{
    if (s->n == 0)
        snprintf(buf, cap, "%s", s->n_failed ? "failed" : "—");
    else if (s->n == 1)
        snprintf(buf, cap, "%.4g", s->mean);
    else
        snprintf(buf, cap, "%.4g ± %.2g (%zu)", s->mean, s->std, s->n);
}

static void md_proxy_table(FILE *f, const qh_report_set *set, const model_index *mi,
                           int processed)
{
    char entry[256], name[256];
    fprintf(f, "%s\n\n| Method |", processed
            ? "Processed basis (after incoherence processing and damping): "
              "sum of proxy_proc / sum of proxy_norm_proc."
            : "Original basis: sum over layers of proxy / sum of proxy_norm.");
    for (size_t b = 0; b < mi->n_bits; b++)
        fprintf(f, " W%d |", mi->bits[b]);
    fprintf(f, "\n|:---|");
    for (size_t b = 0; b < mi->n_bits; b++)
        fprintf(f, "---:|");
    fprintf(f, "\n");
    for (size_t l = 0; l < mi->n_labels; l++) {
        if (mi->labels[l].first->is_baseline)
            continue;
        escape(FMT_MD, mi->labels[l].display, name, sizeof name);
        fprintf(f, "| %s |", name);
        for (size_t b = 0; b < mi->n_bits; b++) {
            qh_report_stat s = qh_report_proxy_rel(set, mi->model, mi->labels[l].first->label,
                                                   mi->bits[b], processed);
            proxy_entry(&s, entry, sizeof entry);
            fprintf(f, " %s |", entry);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
}

static void md_bounds_table(FILE *f, const qh_report_set *set, const model_index *mi)
{
    char name[256];
    escape(FMT_MD, mi->model, name, sizeof name);
    fprintf(f, "## %s\n\n", name);
    if (mi->n_bounds == 0) {
        fprintf(f, "No bound columns in the layer tables.\n\n");
        return;
    }
    fprintf(f, "| Method | bits | bound | compared with | kind | layers | holds | fraction "
            "| median measured/bound | |\n|:---|---:|:---|:---|:---|---:|---:|---:|---:|:---|\n");
    for (size_t l = 0; l < mi->n_labels; l++) {
        if (mi->labels[l].first->is_baseline)
            continue;
        escape(FMT_MD, mi->labels[l].display, name, sizeof name);
        for (size_t b = 0; b < mi->n_bits; b++)
            for (size_t k = 0; k < mi->n_bounds; k++) {
                const char *bound = mi->bounds[k];
                qh_report_bound_stat s = qh_report_bound(set, mi->model,
                                                         mi->labels[l].first->label, mi->bits[b],
                                                         bound);
                if (s.n_layers == 0)
                    continue;
                const char *kind = qh_report_bound_kind(bound);
                int must = strstr(kind, "must hold") != NULL;
                fprintf(f, "| %s | %d | %s | %s | %s | %zu | %zu | %.3f | %.4g | %s |\n", name,
                        mi->bits[b], bound_base(bound), s.measured, kind, s.n_layers, s.n_hold,
                        s.frac_hold, s.median_ratio,
                        must && s.n_hold < s.n_layers ? "**violated**" : "");
            }
    }
    fprintf(f, "\n");
}

/* ---- TSV files and figures --------------------------------------------------------------- */

/* A file-name-safe copy of s: characters outside [A-Za-z0-9._-] become '_'. */
static void safe_name(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        buf[o++] = (strchr("._-", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z')
                    || (*s >= 'A' && *s <= 'Z')) ? *s : '_';
    buf[o] = '\0';
}

/* A TSV cell: tabs and newlines replaced by spaces. */
static void tsv_text(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static void tsv_num(FILE *f, double x)
{
    if (isfinite(x))
        fprintf(f, "\t%.10g", x);
    else
        fprintf(f, "\tNaN");
}

typedef struct {
    char script[64];                 /* analysis/plots/<script> */
    char tsv[PATH_CAP];              /* data file */
    char base[PATH_CAP];             /* out_dir/<name>, without extension */
    char title[256];
    size_t ncols;                    /* columns of the TSV */
    char series[TEXT_CAP];           /* space-separated series names, or "" */
} figure;

typedef struct {
    size_t n, cap;
    figure *v;
} figure_list;

static figure *figure_add(figure_list *fl)
{
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? 2 * fl->cap : 8;
        figure *grown = realloc(fl->v, cap * sizeof *grown);
        if (!grown)
            return NULL;
        fl->v = grown;
        fl->cap = cap;
    }
    figure *fig = &fl->v[fl->n++];
    memset(fig, 0, sizeof *fig);
    return fig;
}

/* A title safe inside a single-quoted gnuplot string. */
static void gp_text(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        buf[o++] = (*s == '\'' || *s == '"' || *s == '\\' || *s == '\n') ? ' ' : *s;
    buf[o] = '\0';
}

/* ppl_vs_bits.<model>.<dataset>.tsv: bits (ascending), then one column per
 * method label that has a value at some bit width (mean over seeds; NaN where
 * none). */
static int tsv_ppl_vs_bits(const qh_report_set *set, const model_index *mi, const char *dir,
                           const char *dataset, qh_report_outputs *out, figure_list *fl)
{
    char sm[256], sd[256], name[600];
    out_file o;
    safe_name(mi->model, sm, sizeof sm);
    safe_name(dataset, sd, sizeof sd);
    snprintf(name, sizeof name, "ppl_vs_bits.%s.%s.tsv", sm, sd);
    int used[64] = { 0 };            /* labels with any value (at most 64 lines drawn) */
    size_t n_used = 0;
    for (size_t l = 0; l < mi->n_labels && l < 64; l++) {
        for (size_t b = 0; b < mi->n_bits && !used[l]; b++)
            used[l] = qh_report_ppl(set, mi->model, mi->labels[l].first->label, mi->bits[b],
                                    dataset).n > 0;
        n_used += (size_t)used[l];
    }
    if (n_used == 0)
        return QH_OK;
    QH_TRY(out_open(&o, dir, name));
    fprintf(o.f, "bits");
    for (size_t l = 0; l < mi->n_labels && l < 64; l++)
        if (used[l]) {
            fputc('\t', o.f);
            tsv_text(o.f, mi->labels[l].display);
        }
    fputc('\n', o.f);
    for (size_t b = mi->n_bits; b-- > 0;) {
        fprintf(o.f, "%d", mi->bits[b]);
        for (size_t l = 0; l < mi->n_labels && l < 64; l++)
            if (used[l])
                tsv_num(o.f, qh_report_ppl(set, mi->model, mi->labels[l].first->label,
                                           mi->bits[b], dataset).mean);
        fputc('\n', o.f);
    }
    QH_TRY(out_commit(&o, out));
    figure *fig = figure_add(fl);
    if (!fig)
        QH_ERROR(QH_ENOMEM, "out of memory");
    snprintf(fig->script, sizeof fig->script, "ppl_vs_bits.gp");
    snprintf(fig->tsv, sizeof fig->tsv, "%s", o.path);
    snprintf(fig->base, sizeof fig->base, "%s/ppl_vs_bits.%s.%s", dir, sm, sd);
    char t[100], u[100];
    gp_text(mi->model, t, sizeof t);
    gp_text(dataset, u, sizeof u);
    snprintf(fig->title, sizeof fig->title, "%s: perplexity on %s", t, u);
    fig->ncols = 1 + n_used;
    return QH_OK;
}

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

/* Mean over the complete cells of a group of column `col` at layer row l. */
static double layer_mean(const qh_report_set *set, const model_index *mi, const char *label,
                         int bits, const char *col, size_t l)
{
    accum a = { 0, 0, 0 };
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!in_group(c, mi->model, label, bits) || c->is_baseline || c->status != QH_OK)
            continue;
        size_t r = find_layer(c, mi->layers[l], l);
        double x = qh_h5_column_value(qh_h5_table_find(&c->layers, col), c->layers.n_rows, r);
        if (isfinite(x) && x > 0)
            accum_add(&a, x);
    }
    return a.n ? a.mean : NAN;
}

/* proxy_per_layer.<model>.w<bits>.tsv: index, layer, name, then one column
 * per method label with any finite value. */
static int tsv_proxy_per_layer(const qh_report_set *set, const model_index *mi, const char *dir,
                               int bits, qh_report_outputs *out, figure_list *fl)
{
    char sm[256], name[600];
    out_file o;
    size_t n_used = 0;
    int *used = calloc(mi->n_labels ? mi->n_labels : 1, sizeof *used);
    if (!used)
        QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t l = 0; l < mi->n_labels; l++) {
        if (mi->labels[l].first->is_baseline)
            continue;
        for (size_t r = 0; r < mi->n_layers && !used[l]; r++)
            used[l] = isfinite(layer_mean(set, mi, mi->labels[l].first->label, bits,
                                          "proxy_rel", r));
        n_used += (size_t)used[l];
    }
    if (n_used == 0) {
        free(used);
        return QH_OK;
    }
    safe_name(mi->model, sm, sizeof sm);
    snprintf(name, sizeof name, "proxy_per_layer.%s.w%d.tsv", sm, bits);
    int st = out_open(&o, dir, name);
    if (st != QH_OK) {
        free(used);
        return st;
    }
    fprintf(o.f, "index\tlayer\tname");
    for (size_t l = 0; l < mi->n_labels; l++)
        if (used[l]) {
            fputc('\t', o.f);
            tsv_text(o.f, mi->labels[l].display);
        }
    fputc('\n', o.f);
    for (size_t r = 0; r < mi->n_layers; r++) {
        fprintf(o.f, "%zu\t", r);
        if (mi->layer_ids)
            fprintf(o.f, "%lld", (long long)mi->layer_ids[r]);
        else
            fprintf(o.f, "NaN");
        fputc('\t', o.f);
        tsv_text(o.f, mi->layers[r]);
        for (size_t l = 0; l < mi->n_labels; l++)
            if (used[l])
                tsv_num(o.f, layer_mean(set, mi, mi->labels[l].first->label, bits, "proxy_rel", r));
        fputc('\n', o.f);
    }
    free(used);
    QH_TRY(out_commit(&o, out));
    figure *fig = figure_add(fl);
    if (!fig)
        QH_ERROR(QH_ENOMEM, "out of memory");
    char t[100];
    gp_text(mi->model, t, sizeof t);
    snprintf(fig->script, sizeof fig->script, "proxy_per_layer.gp");
    snprintf(fig->tsv, sizeof fig->tsv, "%s", o.path);
    snprintf(fig->base, sizeof fig->base, "%s/proxy_per_layer.%s.w%d", dir, sm, bits);
    snprintf(fig->title, sizeof fig->title, "%s: relative proxy loss per layer, %d bits", t, bits);
    fig->ncols = 3 + n_used;
    return QH_OK;
}

/* Writes the rows of one bound into the scatter TSV; returns how many. */
static size_t scatter_rows(FILE *f, const qh_report_set *set, const char *model,
                           const char *bound)
{
    size_t n = 0;
    char disp[128];
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (strcmp(c->model, model) != 0 || c->status != QH_OK || !is_ldlq_family(c->method))
            continue;
        const qh_h5_column *b = qh_h5_table_find(&c->layers, bound);
        const qh_h5_column *m = qh_h5_table_find(&c->layers, "proxy_proc");
        const qh_h5_column *names = qh_h5_table_find(&c->layers, "name");
        qh_report_display_name(c->method, c->incoherence, disp, sizeof disp);
        for (size_t r = 0; b && m && r < c->layers.n_rows; r++) {
            double x = qh_h5_column_value(b, c->layers.n_rows, r);
            double y = qh_h5_column_value(m, c->layers.n_rows, r);
            if (!isfinite(x) || !isfinite(y) || x <= 0 || y <= 0)
                continue;
            fprintf(f, "%s\t%d\t", bound_base(bound), c->bits);
            tsv_text(f, disp);
            fprintf(f, "\t%d\t%zu\t", c->seed, r);
            tsv_text(f, names && names->type == QH_RESULTS_STRING ? names->s[r] : "");
            fprintf(f, "\t%.10g\t%.10g\n", x, y);
            n++;
        }
    }
    return n;
}

/* proxy_vs_bound.<model>.tsv: one row per (bound, ldlq-family cell, layer). */
static int tsv_proxy_vs_bound(const qh_report_set *set, const model_index *mi, const char *dir,
                              qh_report_outputs *out, figure_list *fl)
{
    char sm[256], name[600], series[TEXT_CAP] = "";
    out_file o;
    size_t total = 0;
    safe_name(mi->model, sm, sizeof sm);
    snprintf(name, sizeof name, "proxy_vs_bound.%s.tsv", sm);
    QH_TRY(out_open(&o, dir, name));
    fprintf(o.f, "bound\tbits\tmethod\tseed\tindex\tname\tbound_value\tproxy_proc\n");
    for (size_t k = 0; k < mi->n_bounds; k++) {
        if (strcmp(qh_report_bound_measured(mi->bounds[k]), "proxy_proc") != 0)
            continue;
        size_t n = scatter_rows(o.f, set, mi->model, mi->bounds[k]);
        if (n && strlen(series) + strlen(mi->bounds[k]) + 2 < sizeof series) {
            strcat(series, series[0] ? " " : "");
            strcat(series, bound_base(mi->bounds[k]));
        }
        total += n;
    }
    if (total == 0) {
        out_abort(&o);
        return QH_OK;
    }
    QH_TRY(out_commit(&o, out));
    figure *fig = figure_add(fl);
    if (!fig)
        QH_ERROR(QH_ENOMEM, "out of memory");
    char t[100];
    gp_text(mi->model, t, sizeof t);
    snprintf(fig->script, sizeof fig->script, "proxy_vs_bound.gp");
    snprintf(fig->tsv, sizeof fig->tsv, "%s", o.path);
    snprintf(fig->base, sizeof fig->base, "%s/proxy_vs_bound.%s", dir, sm);
    snprintf(fig->title, sizeof fig->title, "%s: measured proxy loss vs bounds (LDLQ family)", t);
    fig->ncols = 8;
    snprintf(fig->series, sizeof fig->series, "%s", series);
    return QH_OK;
}

/* ---- gnuplot ------------------------------------------------------------------------------ */

/* The gnuplot program to run, or NULL (reason in why). */
static const char *find_gnuplot(const qh_report_options *opt, char *buf, size_t cap,
                                char *why, size_t why_cap)
{
    const char *prog = opt->gnuplot;
    if (!prog)
        prog = getenv("QH_GNUPLOT") ? getenv("QH_GNUPLOT") : "gnuplot";
    if (!*prog || strcmp(prog, "none") == 0) {
        snprintf(why, why_cap, "figures disabled");
        return NULL;
    }
    if (strchr(prog, '/')) {
        if (access(prog, X_OK) == 0)
            return prog;
        snprintf(why, why_cap, "gnuplot not found at %s", prog);
        return NULL;
    }
    const char *path = getenv("PATH");
    char dirs[PATH_CAP];
    snprintf(dirs, sizeof dirs, "%s", path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (snprintf(buf, cap, "%s/%s", *d ? d : ".", prog) < (int)cap && access(buf, X_OK) == 0)
            return buf;
    }
    snprintf(why, why_cap, "%s not found in PATH", prog);
    return NULL;
}

/* Runs `prog -e expr script` with stdout discarded and stderr appended to
 * log; returns the exit status (or -1). */
static int run_program(const char *prog, const char *expr, const char *script, const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null_fd = open("/dev/null", O_WRONLY);
        int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
        if (null_fd >= 0)
            dup2(null_fd, STDOUT_FILENO);
        if (log_fd >= 0)
            dup2(log_fd, STDERR_FILENO);
        execlp(prog, prog, "-e", expr, script, (char *)NULL);
        _exit(127);
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* Renders one figure into base.tmp.{png,svg}, then renames both. */
static int render(const char *prog, const char *plots_dir, const figure *fig, const char *log,
                  qh_report_outputs *out)
{
    char script[PATH_CAP], expr[PATH_CAP * 3 + 2 * TEXT_CAP], tmp[PATH_CAP + 16];
    char final[PATH_CAP + 16], tmp_base[PATH_CAP + 8];
    snprintf(script, sizeof script, "%s/%s", plots_dir, fig->script);
    if (access(script, R_OK) != 0)
        return push_fmt(&out->notes, &out->n_notes, "gnuplot script %s missing: %s.png skipped",
                        script, fig->base);
    if (strpbrk(fig->tsv, "'\"") || strpbrk(fig->base, "'\"") || strpbrk(plots_dir, "'\""))
        return push_fmt(&out->notes, &out->n_notes, "quote in a path: %s.png skipped", fig->base);
    snprintf(tmp_base, sizeof tmp_base, "%s.tmp", fig->base);
    snprintf(expr, sizeof expr, "datafile='%s'; outfile='%s'; plotdir='%s/'; ttl='%s'; "
             "ncols=%zu; series='%s'", fig->tsv, tmp_base, plots_dir, fig->title, fig->ncols,
             fig->series);
    int rc = run_program(prog, expr, script, log);
    static const char *const ext[] = { "png", "svg" };
    int ok = rc == 0;
    for (int e = 0; e < 2; e++) {
        snprintf(tmp, sizeof tmp, "%s.%s", tmp_base, ext[e]);
        snprintf(final, sizeof final, "%s.%s", fig->base, ext[e]);
        struct stat sb;
        if (ok && stat(tmp, &sb) == 0 && sb.st_size > 0 && rename(tmp, final) == 0) {
            QH_TRY(push_fmt(&out->paths, &out->n_paths, "%s", final));
            continue;
        }
        remove(tmp);
        QH_TRY(push_fmt(&out->notes, &out->n_notes, "gnuplot failed on %s (exit %d): %s not "
                        "written (see %s)", script, rc, final, log));
    }
    return QH_OK;
}

static int render_all(const qh_report_options *opt, const figure_list *fl,
                      qh_report_outputs *out)
{
    char buf[PATH_CAP], why[PATH_CAP + 64], log[PATH_CAP + 16], log_tmp[PATH_CAP + 32];
    const char *prog = find_gnuplot(opt, buf, sizeof buf, why, sizeof why);
    if (fl->n == 0)
        return QH_OK;
    if (!prog)
        return push_fmt(&out->notes, &out->n_notes, "%s: figures skipped (the TSV files are "
                        "written; run analysis/plots/*.gp on them by hand)", why);
    const char *plots_dir = opt->plots_dir ? opt->plots_dir : "analysis/plots";
    char common[PATH_CAP + 16];
    snprintf(common, sizeof common, "%s/common.gp", plots_dir);
    if (access(common, R_OK) != 0)
        return push_fmt(&out->notes, &out->n_notes, "gnuplot scripts not found in %s (run from "
                        "the repository root or pass --plots-dir): figures skipped", plots_dir);
    snprintf(log, sizeof log, "%s/gnuplot.log", opt->out_dir);
    snprintf(log_tmp, sizeof log_tmp, "%s.tmp", log);
    remove(log_tmp);
    for (size_t i = 0; i < fl->n; i++)
        QH_TRY(render(prog, plots_dir, &fl->v[i], log_tmp, out));
    struct stat sb;
    if (stat(log_tmp, &sb) == 0 && sb.st_size > 0 && rename(log_tmp, log) == 0)
        return push_fmt(&out->notes, &out->n_notes, "gnuplot printed messages: see %s", log);
    remove(log_tmp);
    remove(log);                     /* a stale log of an earlier run would mislead */
    return QH_OK;
}

/* ---- top level --------------------------------------------------------------------------- */

void qh_report_outputs_free(qh_report_outputs *out)
{
    if (!out)
        return;
    qh_h5_free_names(out->paths, out->n_paths);
    qh_h5_free_names(out->notes, out->n_notes);
    memset(out, 0, sizeof *out);
}

static int write_md_tables(const qh_report_set *set, const model_index *idx, size_t n_models,
                           const char *dir, qh_report_outputs *out)
{
    out_file o;
    footnotes fn = { 0, NULL };
    QH_TRY(out_open(&o, dir, "table.md"));
    fprintf(o.f, "# Perplexity\n\n");
    for (size_t m = 0; m < n_models; m++)
        md_table(o.f, set, &idx[m], &fn);
    free(fn.cells);
    QH_TRY(out_commit(&o, out));

    fn = (footnotes){ 0, NULL };
    QH_TRY(out_open(&o, dir, "table.tex"));
    fprintf(o.f, "%% Perplexity tables written by `qh report`; needs \\usepackage{booktabs}.\n\n");
    for (size_t m = 0; m < n_models; m++)
        tex_table(o.f, set, &idx[m], &fn);
    free(fn.cells);
    QH_TRY(out_commit(&o, out));

    QH_TRY(out_open(&o, dir, "proxy.md"));
    fprintf(o.f, "# Relative proxy loss\n\nMean over seeds of sum(proxy) / sum(proxy_norm) over "
            "the layers of each cell (± sample std, seed count in parentheses).\n\n");
    for (size_t m = 0; m < n_models; m++) {
        char name[256];
        escape(FMT_MD, idx[m].model, name, sizeof name);
        fprintf(o.f, "## %s\n\n", name);
        md_proxy_table(o.f, set, &idx[m], 0);
        md_proxy_table(o.f, set, &idx[m], 1);
    }
    QH_TRY(out_commit(&o, out));

    QH_TRY(out_open(&o, dir, "bounds.md"));
    fprintf(o.f, "# Measured proxy loss against the QuIP bounds\n\nPer layer, in the processed "
            "basis (the H actually rounded against): the fraction of layers where the measured "
            "value <= bound and the median ratio measured/bound, pooled over seeds. Worst-case "
            "bounds and the Lemma 2 tr D bound must hold on every layer as long as the grid "
            "does not clamp (a finite grid can break them); average-case bounds are predictions "
            "(ratio near 1 when W behaves like a uniform draw). Thm 1 (LDLQ), Thm 3 and QuIP# "
            "bounds are applied to OPTQ/LDLQ/LDLQ-RG cells only.\n\n");
    for (size_t m = 0; m < n_models; m++)
        md_bounds_table(o.f, set, &idx[m]);
    return out_commit(&o, out);
}

static int write_tsvs(const qh_report_set *set, const model_index *idx, size_t n_models,
                      const char *dir, qh_report_outputs *out, figure_list *fl)
{
    for (size_t m = 0; m < n_models; m++) {
        for (size_t d = 0; d < idx[m].n_datasets; d++)
            if (idx[m].n_bits)
                QH_TRY(tsv_ppl_vs_bits(set, &idx[m], dir, idx[m].datasets[d], out, fl));
        for (size_t b = 0; b < idx[m].n_bits && idx[m].n_layers; b++)
            QH_TRY(tsv_proxy_per_layer(set, &idx[m], dir, idx[m].bits[b], out, fl));
        if (idx[m].n_layers)
            QH_TRY(tsv_proxy_vs_bound(set, &idx[m], dir, out, fl));
    }
    return QH_OK;
}

int qh_report_write(const qh_report_set *set, const qh_report_options *opt,
                    qh_report_outputs *out)
{
    const char **models = NULL;
    size_t n_models = 0, n_built = 0;
    model_index *idx = NULL;
    figure_list fl = { 0, 0, NULL };
    int st;
    memset(out, 0, sizeof *out);
    if (!set || set->n_cells == 0)
        QH_ERROR(QH_EINVAL, "report: no cells to report");
    QH_TRY(mkdir_p(opt->out_dir));
    if ((st = list_models(set, &models, &n_models)) != QH_OK)
        goto cleanup;
    if (!(idx = calloc(n_models, sizeof *idx))) {
        QH_SET_ERROR(st, QH_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (; n_built < n_models; n_built++)
        if ((st = build_index(set, models[n_built], &idx[n_built])) != QH_OK)
            goto cleanup;
    if ((st = write_md_tables(set, idx, n_models, opt->out_dir, out)) != QH_OK
        || (st = write_tsvs(set, idx, n_models, opt->out_dir, out, &fl)) != QH_OK)
        goto cleanup;
    st = render_all(opt, &fl, out);
cleanup:
    for (size_t m = 0; m < n_built; m++)
        model_index_free(&idx[m]);
    free(idx);
    free(models);
    free(fl.v);
    return st;
}
