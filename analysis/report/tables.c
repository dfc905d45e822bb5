/* tables.c -- the Markdown and LaTeX tables of the report (table.md,
 * table.tex, proxy.md, bounds.md), and the per-model index whose row order
 * and display names every table and figure follows.
 *
 * Row order: the float32 baseline ("FP32"), then the method's display_order
 * in the method table (OPTQ, LDLQ, LDLQ-RG, Greedy, Nearest, ...; methods
 * not in the table after them, under their stored name), then incoherence in
 * the order of the incoherence table (none, kron, hadamard), then first
 * appearance in file-name order.  Failed cells are footnoted with their
 * message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_incoherence.h"
#include "qh_method.h"
#include "report/report_internal.h"

/* ---- names and ordering ------------------------------------------------------------ */

/* The baseline is the report's own row, not a method of the table. */
#define BASELINE_METHOD "float32"
#define BASELINE_DISPLAY "FP32"

void qh_report_display_name(const char *method, const char *incoherence, char *buf, size_t cap)
{
    const qh_method_type *m = qh_method_find(method);
    const qh_incoh_row *r = qh_incoh_find(incoherence);
    const char *name = method;
    if (strcmp(method, BASELINE_METHOD) == 0)
        name = BASELINE_DISPLAY;
    else if (m && m->display)
        name = m->display;
    if (r)
        snprintf(buf, cap, "%s%s", name, r->display_suffix);
    else                             /* not from a loaded set: the loader refuses such files */
        snprintf(buf, cap, "%s+%s", name, incoherence);
}

static int cmp_int(int a, int b)
{
    return (a > b) - (a < b);
}

/* Registered methods sort by display_order, then name. */
static int cmp_method_rows(const qh_method_type *a, const qh_method_type *b)
{
    int c = cmp_int(a->display_order, b->display_order);
    return c ? c : strcmp(a->name, b->name);
}

/* 1 if row a sorts after row b (b NULL: before every row). */
static int method_after(const qh_method_type *a, const qh_method_type *b)
{
    return !b || cmp_method_rows(a, b) > 0;
}

/* Methods the method table does not know (an old file) sort after every
 * registered one, and among themselves by incoherence and appearance. */
static int cmp_methods(const char *a, const char *b)
{
    const qh_method_type *ra = qh_method_find(a), *rb = qh_method_find(b);
    if (ra && rb)
        return cmp_method_rows(ra, rb);
    return (ra == NULL) - (rb == NULL);
}

static int incoh_rank(const char *name)
{
    const qh_incoh_row *t = qh_incoh_table();
    int i = 0;
    while (t[i].name && strcmp(t[i].name, name) != 0)
        i++;
    return i;
}

static int cmp_label(const void *pa, const void *pb)
{
    const rep_label *a = pa, *b = pb;
    if (a->first->is_baseline != b->first->is_baseline)
        return b->first->is_baseline - a->first->is_baseline;
    int c = cmp_methods(a->first->method, b->first->method);
    if (c == 0)
        c = cmp_int(incoh_rank(a->first->incoherence), incoh_rank(b->first->incoherence));
    if (c == 0)
        c = (a->first_index > b->first_index) - (a->first_index < b->first_index);
    return c;
}

static int cmp_int_desc(const void *a, const void *b)
{
    return cmp_int(*(const int *)b, *(const int *)a);
}

static int cmp_dataset(const void *pa, const void *pb)
{
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    int wa = strncmp(a, "wiki", 4) == 0, wb = strncmp(b, "wiki", 4) == 0;
    return wa != wb ? wb - wa : strcmp(a, b);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- the per-model index ------------------------------------------------------------ */

void rep_model_index_free(rep_model_index *mi)
{
    free(mi->labels);
    free(mi->bits);
    free(mi->datasets);
    free(mi->tasks);
    free(mi->bounds);
    free(mi->layers);
    memset(mi, 0, sizeof *mi);
}

/* Gives each label a display name; labels that would share one keep their
 * raw method label instead. */
/* The weight-activation part of a default label ("+rs128c-A4KV4" of
 * "gptq+rs128c-A4KV4", configs/README.md), or "" when it has none. */
static const char *wa_suffix(const char *label)
{
    const char *p = strstr(label, "+rs");
    if (!p) p = strstr(label, "-A");
    if (!p) p = strstr(label, "-KV");
    return p ? p : "";
}

static void name_labels(rep_model_index *mi)
{
    for (size_t i = 0; i < mi->n_labels; i++) {
        char base[sizeof mi->labels[i].display];
        qh_report_display_name(mi->labels[i].first->method, mi->labels[i].first->incoherence,
                               base, sizeof base);
        snprintf(mi->labels[i].display, sizeof mi->labels[i].display, "%.*s%s", 60, base,
                 wa_suffix(mi->labels[i].first->label));
    }
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
static const qh_report_cell *pick_layers(const qh_report_set *set, const char *model)
{
    const qh_report_cell *best = NULL;
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        const qh_h5_column *names = qh_h5_table_find(&c->layers, "name");
        if (strcmp(c->model, model) == 0 && c->status == QH_OK && names
            && names->type == QH_RESULTS_STRING
            && (!best || c->layers.n_rows > best->layers.n_rows))
            best = c;
    }
    return best;
}

/* Room for every label, bit width, dataset and bound column of the set. */
static int index_alloc(const qh_report_set *set, rep_model_index *mi)
{
    size_t n = set->n_cells, max_ds = 0, max_tasks = 0, max_bounds = 0;
    for (size_t i = 0; i < n; i++) {
        max_ds += set->cells[i].n_eval;
        max_tasks += set->cells[i].n_tasks;
        max_bounds += set->cells[i].layers.n_cols;
    }
    mi->labels = calloc(n, sizeof *mi->labels);
    mi->bits = calloc(n, sizeof *mi->bits);
    mi->datasets = calloc(max_ds + 1, sizeof *mi->datasets);
    mi->tasks = calloc(max_tasks + 1, sizeof *mi->tasks);
    mi->bounds = calloc(max_bounds + 1, sizeof *mi->bounds);
    if (!mi->labels || !mi->bits || !mi->datasets || !mi->tasks || !mi->bounds) {
        rep_model_index_free(mi);
        QH_ERROR(QH_ENOMEM, "out of memory (report index)");
    }
    return QH_OK;
}

/* Records cell i's label, bit width, datasets and bound columns when new. */
static void index_add(rep_model_index *mi, const qh_report_cell *c, size_t i)
{
    size_t k = 0;
    while (k < mi->n_labels && strcmp(mi->labels[k].first->label, c->label) != 0)
        k++;
    if (k == mi->n_labels)
        mi->labels[mi->n_labels++] = (rep_label){ c, i, "" };
    int seen = c->is_baseline;
    for (size_t b = 0; b < mi->n_bits && !seen; b++)
        seen = mi->bits[b] == c->bits;
    if (!seen)
        mi->bits[mi->n_bits++] = c->bits;
    for (size_t e = 0; c->status == QH_OK && e < c->n_eval; e++)
        if (!rep_has_str(mi->datasets, mi->n_datasets, c->eval_names[e]))
            mi->datasets[mi->n_datasets++] = c->eval_names[e];
    for (size_t t = 0; c->status == QH_OK && t < c->n_tasks; t++)
        if (!rep_has_str(mi->tasks, mi->n_tasks, c->task_names[t]))
            mi->tasks[mi->n_tasks++] = c->task_names[t];
    for (size_t j = 0; j < c->layers.n_cols; j++) {
        const char *col = c->layers.cols[j].name;
        if (strncmp(col, "bound_", 6) == 0 && !rep_has_str(mi->bounds, mi->n_bounds, col))
            mi->bounds[mi->n_bounds++] = col;
    }
}

/* The layer names (and ids) of the model's fullest layer table. */
static int index_layers(const qh_report_set *set, rep_model_index *mi)
{
    const qh_report_cell *best = pick_layers(set, mi->model);
    if (!best)
        return QH_OK;
    const qh_h5_column *names = qh_h5_table_find(&best->layers, "name");
    const qh_h5_column *ids = qh_h5_table_find(&best->layers, "layer");
    mi->n_layers = best->layers.n_rows;
    mi->layers = calloc(mi->n_layers ? mi->n_layers : 1, sizeof *mi->layers);
    if (!mi->layers) {
        rep_model_index_free(mi);
        QH_ERROR(QH_ENOMEM, "out of memory (report index)");
    }
    for (size_t r = 0; r < mi->n_layers; r++)
        mi->layers[r] = names->s[r];
    mi->layer_ids = ids && ids->type == QH_RESULTS_INT64 ? ids->i : NULL;
    return QH_OK;
}

int rep_build_index(const qh_report_set *set, const char *model, rep_model_index *mi)
{
    memset(mi, 0, sizeof *mi);
    mi->model = model;
    QH_TRY(index_alloc(set, mi));
    for (size_t i = 0; i < set->n_cells; i++)
        if (strcmp(set->cells[i].model, model) == 0)
            index_add(mi, &set->cells[i], i);
    qsort(mi->labels, mi->n_labels, sizeof *mi->labels, cmp_label);
    if (mi->n_bits)
        qsort(mi->bits, mi->n_bits, sizeof *mi->bits, cmp_int_desc);
    if (mi->n_datasets)
        qsort(mi->datasets, mi->n_datasets, sizeof *mi->datasets, cmp_dataset);
    if (mi->n_tasks)
        qsort(mi->tasks, mi->n_tasks, sizeof *mi->tasks, cmp_str);
    name_labels(mi);
    return index_layers(set, mi);
}

int rep_list_models(const qh_report_set *set, const char ***models, size_t *n)
{
    *n = 0;
    *models = calloc(set->n_cells ? set->n_cells : 1, sizeof **models);
    if (!*models)
        QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t i = 0; i < set->n_cells; i++)
        if (!rep_has_str(*models, *n, set->cells[i].model))
            (*models)[(*n)++] = set->cells[i].model;
    qsort(*models, *n, sizeof **models, cmp_str);
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
        if (!rep_in_group(c, model, label, bits) || c->status == QH_OK)
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
    else if (s.n == 1)                   /* the seed count always shows: (1) is one seed */
        snprintf(num, sizeof num, "%.2f (1)", s.mean);
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
    rep_accum nom = { 0, 0, 0 }, tot = { 0, 0, 0 }, nom_any = { 0, 0, 0 }, tot_any = { 0, 0, 0 };
    for (size_t i = 0; i < set->n_cells; i++) {
        const qh_report_cell *c = &set->cells[i];
        if (!rep_in_group(c, model, label, bits))
            continue;
        if (isfinite(c->bpw_nominal))
            rep_accum_add(c->status == QH_OK ? &nom : &nom_any, c->bpw_nominal);
        if (isfinite(c->bpw_total))
            rep_accum_add(c->status == QH_OK ? &tot : &tot_any, c->bpw_total);
    }
    const rep_accum *a = nom.n ? &nom : &nom_any, *b = tot.n ? &tot : &tot_any;
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
    char msg[REP_TEXT_CAP], id[512];
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
static void table_rows(fmt_kind k, FILE *f, const qh_report_set *set, const rep_model_index *mi,
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

static void md_table(FILE *f, const qh_report_set *set, const rep_model_index *mi, footnotes *fn)
{
    char name[256];
    size_t fn_from = fn->n;
    escape(FMT_MD, mi->model, name, sizeof name);
    fprintf(f, "## %s\n\nPerplexity (lower is better): mean ± sample standard deviation over "
            "seeds, with the seed count in parentheses. "
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

static void tex_table(FILE *f, const qh_report_set *set, const rep_model_index *mi, footnotes *fn)
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

static void md_proxy_table(FILE *f, const qh_report_set *set, const rep_model_index *mi,
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

static void md_bounds_table(FILE *f, const qh_report_set *set, const rep_model_index *mi)
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
                        mi->bits[b], rep_bound_base(bound), s.measured, kind, s.n_layers, s.n_hold,
                        s.frac_hold, s.median_ratio,
                        must && s.n_hold < s.n_layers ? "**violated**" : "");
            }
    }
    fprintf(f, "\n");
}

/* ---- the files --------------------------------------------------------------------- */

/* table.md or table.tex: one perplexity table per model, footnotes numbered
 * through the file. */
static int write_ppl_tables(fmt_kind k, const qh_report_set *set, const rep_model_index *idx,
                            size_t n_models, const char *dir, qh_report_outputs *out)
{
    rep_out_file o;
    footnotes fn = { 0, NULL };
    QH_TRY(rep_out_open(&o, dir, k == FMT_MD ? "table.md" : "table.tex"));
    fputs(k == FMT_MD ? "# Perplexity\n\n" : "% Perplexity tables written by `qh report`; needs "
          "\\usepackage{booktabs}.\n\n", o.f);
    for (size_t m = 0; m < n_models; m++)
        (k == FMT_MD ? md_table : tex_table)(o.f, set, &idx[m], &fn);
    free(fn.cells);
    return rep_out_commit(&o, out);
}

static int write_proxy_md(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                          const char *dir, qh_report_outputs *out)
{
    rep_out_file o;
    QH_TRY(rep_out_open(&o, dir, "proxy.md"));
    fprintf(o.f, "# Relative proxy loss\n\nMean over seeds of sum(proxy) / sum(proxy_norm) over "
            "the layers of each cell (± sample std, seed count in parentheses).\n\n");
    for (size_t m = 0; m < n_models; m++) {
        char name[256];
        escape(FMT_MD, idx[m].model, name, sizeof name);
        fprintf(o.f, "## %s\n\n", name);
        md_proxy_table(o.f, set, &idx[m], 0);
        md_proxy_table(o.f, set, &idx[m], 1);
    }
    return rep_out_commit(&o, out);
}

/* "mean ± sd (n)" of a metric, "—" when no cell has it. */
static void stat_text(qh_report_stat st, const char *fmt, char *buf, size_t cap)
{
    char a[40], b[40];
    if (st.n == 0) { snprintf(buf, cap, "—"); return; }
    snprintf(a, sizeof a, fmt, st.mean);
    snprintf(b, sizeof b, fmt, st.std);
    snprintf(buf, cap, "%s ± %s (%zu)", a, b, st.n);
}

/* 1 if any cell of the set carries the fidelity metrics. */
static int any_fidelity(const qh_report_set *set)
{
    for (size_t i = 0; i < set->n_cells; i++)
        for (size_t e = 0; e < set->cells[i].n_eval; e++)
            if (isfinite(set->cells[i].eval_kl[e])) return 1;
    return 0;
}

/* One column of a metric table: the metric, its header suffix and number format. */
typedef struct {
    qh_report_metric metric;
    const char *header, *fmt;
} md_metric_col;

/* A model's table of per-seed statistics: one row per method label, for each
 * bit width and each name (a dataset, or a task for the TASK metrics) one
 * column per entry of cols. */
static void md_metric_table(FILE *f, const qh_report_set *set, const rep_model_index *mi,
                            const char **names, size_t n_names, const md_metric_col *cols,
                            size_t n_cols)
{
    char text[256], cell[256];
    escape(FMT_MD, mi->model, text, sizeof text);
    fprintf(f, "## %s\n\n| Method |", text);
    for (size_t b = 0; b < mi->n_bits; b++)
        for (size_t d = 0; d < n_names; d++) {
            escape(FMT_MD, names[d], text, sizeof text);
            for (size_t c = 0; c < n_cols; c++)
                fprintf(f, " W%d %s %s |", mi->bits[b], text, cols[c].header);
        }
    fprintf(f, "\n|:---|");
    for (size_t k = 0; k < mi->n_bits * n_names * n_cols; k++) fprintf(f, "---:|");
    fprintf(f, "\n");
    for (size_t l = 0; l < mi->n_labels; l++) {
        const char *label = mi->labels[l].first->label;
        escape(FMT_MD, mi->labels[l].display, text, sizeof text);
        fprintf(f, "| %s |", text);
        for (size_t b = 0; b < mi->n_bits; b++)
            for (size_t d = 0; d < n_names; d++)
                for (size_t c = 0; c < n_cols; c++) {
                    stat_text(qh_report_eval_stat(set, mi->model, label, mi->bits[b], names[d],
                                                  cols[c].metric), cols[c].fmt, cell, sizeof cell);
                    fprintf(f, " %s |", cell);
                }
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
}

/* fidelity.md: perplexity, KL to the float model and top-1 agreement side by
 * side per bit width and dataset (only when some cell has the metrics). */
static int write_fidelity_md(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                             const char *dir, qh_report_outputs *out)
{
    static const md_metric_col cols[] = { { QH_REPORT_PPL, "ppl", "%.2f" },
                                          { QH_REPORT_KL, "KL", "%.4f" },
                                          { QH_REPORT_AGREE, "agree", "%.4f" } };
    if (!any_fidelity(set)) return QH_OK;
    rep_out_file o;
    QH_TRY(rep_out_open(&o, dir, "fidelity.md"));
    fprintf(o.f, "# Perplexity, KL divergence and top-1 agreement against the float model\n\n"
            "Each entry: mean ± sample standard deviation over seeds (seed count in parentheses). "
            "KL: mean D_KL(p_float || p_quant) per token in nats, from the float model's top-k "
            "reference (docs/metrics.md); agreement: fraction of tokens whose argmax matches the "
            "float model's.  Per-cell 95 %% intervals over windows are in each results file.\n\n");
    for (size_t m = 0; m < n_models; m++)
        md_metric_table(o.f, set, &idx[m], idx[m].datasets, idx[m].n_datasets, cols, 3);
    return rep_out_commit(&o, out);
}

/* tasks.md: each task file's accuracy and length-normalised accuracy per
 * method label and bit width (only when some cell scored a task). */
static int write_tasks_md(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                          const char *dir, qh_report_outputs *out)
{
    static const md_metric_col cols[] = { { QH_REPORT_TASK_ACC, "acc", "%.4f" },
                                          { QH_REPORT_TASK_ACC_NORM, "acc_norm", "%.4f" } };
    size_t any = 0;
    for (size_t m = 0; m < n_models; m++) any += idx[m].n_tasks;
    if (!any) return QH_OK;
    rep_out_file o;
    QH_TRY(rep_out_open(&o, dir, "tasks.md"));
    fprintf(o.f, "# Task accuracy\n\nMultiple-choice scoring by log-likelihood (docs/metrics.md): "
            "acc, and acc_norm with each continuation's score divided by its length in "
            "characters.  Each entry: mean ± sample standard deviation over seeds (seed count in "
            "parentheses); each cell's own standard error is in its file under /run/tasks.\n\n");
    for (size_t m = 0; m < n_models; m++)
        if (idx[m].n_tasks)
            md_metric_table(o.f, set, &idx[m], idx[m].tasks, idx[m].n_tasks, cols, 2);
    return rep_out_commit(&o, out);
}

/* "OPTQ/LDLQ/LDLQ-RG": the display names of the LDLQ bound family, in
 * display order, from the method table. */
static void ldlq_family_names(char *buf, size_t cap)
{
    const qh_method_type *const *reg = qh_method_registry();
    const qh_method_type *prev = NULL;
    size_t o = 0;
    buf[0] = '\0';
    for (;;) {                       /* selection by (display_order, name): the registry is short */
        const qh_method_type *next = NULL;
        for (size_t i = 0; reg[i]; i++)
            if (reg[i]->bound_family == QH_BOUND_FAMILY_LDLQ && method_after(reg[i], prev)
                && (!next || method_after(next, reg[i])))
                next = reg[i];
        if (!next)
            return;
        int w = snprintf(buf + o, cap - o, "%s%s", o ? "/" : "",
                         next->display ? next->display : next->name);
        if (w < 0 || (size_t)w >= cap - o)
            return;                  /* a prose list: keep what fits */
        o += (size_t)w;
        prev = next;
    }
}

static int write_bounds_md(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                           const char *dir, qh_report_outputs *out)
{
    rep_out_file o;
    char family[256];
    ldlq_family_names(family, sizeof family);
    QH_TRY(rep_out_open(&o, dir, "bounds.md"));
    fprintf(o.f, "# Measured proxy loss against the QuIP bounds\n\nPer layer, in the processed "
            "basis (the H actually rounded against): the fraction of layers where the measured "
            "value <= bound and the median ratio measured/bound, pooled over seeds. Worst-case "
            "bounds and the Lemma 2 tr D bound must hold on every layer as long as the grid "
            "does not clamp (a finite grid can break them); average-case bounds are predictions "
            "(ratio near 1 when W behaves like a uniform draw). Thm 1 (LDLQ), Thm 3 and QuIP# "
            "bounds are applied to %s cells only.\n\n", family);
    for (size_t m = 0; m < n_models; m++)
        md_bounds_table(o.f, set, &idx[m]);
    return rep_out_commit(&o, out);
}

int rep_write_tables(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                     const char *dir, qh_report_outputs *out)
{
    QH_TRY(write_ppl_tables(FMT_MD, set, idx, n_models, dir, out));
    QH_TRY(write_ppl_tables(FMT_TEX, set, idx, n_models, dir, out));
    QH_TRY(write_proxy_md(set, idx, n_models, dir, out));
    QH_TRY(write_fidelity_md(set, idx, n_models, dir, out));
    QH_TRY(write_tasks_md(set, idx, n_models, dir, out));
    return write_bounds_md(set, idx, n_models, dir, out);
}
