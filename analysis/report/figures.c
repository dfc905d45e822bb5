/* figures.c -- the report's figures: one TSV file per figure (perplexity
 * against bit width per dataset, relative proxy loss per layer per bit width,
 * measured proxy loss against each bound for the LDLQ family), then the PNG
 * and SVG drawn from it by the gnuplot scripts in analysis/plots/ when
 * gnuplot is available.  Columns and series follow the index's row order and
 * display names (tables.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qh_incoherence.h"
#include "qh_path.h"
#include "report/report_internal.h"

#define NAME_CAP 256                 /* a file name component */

/* ---- TSV files ------------------------------------------------------------------------ */

/* A file-name-safe copy of s: characters outside [A-Za-z0-9._-] become '_'.
 * Return: QH_OK; QH_EINVAL (s too long for a file name: two long names cut
 *   to one prefix would overwrite each other's files). */
static int safe_name(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        buf[o++] = (strchr("._-", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z')
                    || (*s >= 'A' && *s <= 'Z')) ? *s : '_';
    buf[o] = '\0';
    if (*s)
        QH_ERROR(QH_EINVAL, "report: name too long for a file name (at most %zu bytes): %.60s...",
                 cap - 1, buf);
    return QH_OK;
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
    char tsv[REP_PATH_CAP];          /* data file */
    char base[REP_PATH_CAP];         /* out_dir/<name>, without extension */
    char title[256];
    size_t ncols;                    /* columns of the TSV */
    char series[REP_TEXT_CAP];       /* space-separated series names, or "" */
} figure;

typedef struct {
    size_t n, cap;
    figure *v;
} figure_list;

/* Registers the figure of the TSV file just written (tsv: OUT_DIR/NAME.tsv):
 * drawn by `script` into OUT_DIR/NAME.{png,svg}.  The caller fills the title
 * and series.  Output: *out (in fl).  Return: QH_OK; QH_ENOMEM. */
static int figure_add(figure_list *fl, const char *script, const char *tsv, size_t ncols,
                      figure **out)
{
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? 2 * fl->cap : 8;
        figure *grown = realloc(fl->v, cap * sizeof *grown);
        if (!grown)
            QH_ERROR(QH_ENOMEM, "out of memory");
        fl->v = grown;
        fl->cap = cap;
    }
    figure *fig = &fl->v[fl->n++];
    memset(fig, 0, sizeof *fig);
    snprintf(fig->script, sizeof fig->script, "%s", script);   /* literals of this file */
    snprintf(fig->tsv, sizeof fig->tsv, "%s", tsv);            /* same capacity as tsv */
    size_t len = strlen(tsv);
    snprintf(fig->base, sizeof fig->base, "%.*s", (int)(len > 4 ? len - 4 : len), tsv);
    fig->ncols = ncols;
    *out = fig;
    return QH_OK;
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
static int tsv_ppl_vs_bits(const qh_report_set *set, const rep_model_index *mi, const char *dir,
                           const char *dataset, qh_report_outputs *out, figure_list *fl)
{
    char sm[NAME_CAP], sd[NAME_CAP], name[3 * NAME_CAP];
    rep_out_file o;
    figure *fig;
    QH_TRY(safe_name(mi->model, sm, sizeof sm));
    QH_TRY(safe_name(dataset, sd, sizeof sd));
    QH_TRY(qh_path_format(name, sizeof name, "report TSV", "ppl_vs_bits.%s.%s.tsv", sm, sd));
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
    QH_TRY(rep_out_open(&o, dir, name));
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
    QH_TRY(rep_out_commit(&o, out));
    QH_TRY(figure_add(fl, "ppl_vs_bits.gp", o.path, 1 + n_used, &fig));
    char t[100], u[100];
    gp_text(mi->model, t, sizeof t);
    gp_text(dataset, u, sizeof u);
    snprintf(fig->title, sizeof fig->title, "%s: perplexity on %s", t, u);
    return QH_OK;
}

/* Rank of s among the first n entries of v (appended when new). */
static size_t rank_of(const char **v, size_t *n, size_t cap, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(v[i], s) == 0) return i;
    if (*n < cap) v[(*n)++] = s;
    return *n - 1;
}

/* metric_vs_bpw.<model>.<dataset>.tsv: one block per method label (blocks
 * separated by two blank lines, for gnuplot's `index`), each opening with a
 * header row whose first field is the label's display name, then one row per
 * bit width: total bits per weight (mean over seeds), ppl, KL and top-1
 * agreement (mean and sample sd over seeds), and the seed count.  series
 * holds, per block, "colour dash": the colour is the method's rank (one per
 * method), the dash the incoherence kind's. */
static int tsv_metric_vs_bpw(const qh_report_set *set, const rep_model_index *mi, const char *dir,
                             const char *dataset, qh_report_outputs *out, figure_list *fl)
{
    char sm[NAME_CAP], sd[NAME_CAP], name[3 * NAME_CAP];
    const char *methods[64];
    size_t n_methods = 0, n_blocks = 0, o_series = 0;
    char series[REP_TEXT_CAP] = "";
    rep_out_file o;
    figure *fig;
    QH_TRY(safe_name(mi->model, sm, sizeof sm));
    QH_TRY(safe_name(dataset, sd, sizeof sd));
    QH_TRY(qh_path_format(name, sizeof name, "report TSV", "metric_vs_bpw.%s.%s.tsv", sm, sd));
    int any_kl = 0;
    for (size_t l = 0; l < mi->n_labels && !any_kl; l++)
        for (size_t b = 0; b < mi->n_bits && !any_kl; b++)
            any_kl = qh_report_eval_stat(set, mi->model, mi->labels[l].first->label, mi->bits[b],
                                         dataset, QH_REPORT_KL).n > 0 && !mi->labels[l].first->is_baseline;
    if (!any_kl)
        return QH_OK;
    QH_TRY(rep_out_open(&o, dir, name));
    for (size_t l = 0; l < mi->n_labels && n_blocks < 64; l++) {
        const qh_report_cell *first = mi->labels[l].first;
        const char *label = first->label;
        if (first->is_baseline) continue;
        int rows = 0;
        for (size_t b = mi->n_bits; b-- > 0;) {
            qh_report_stat p = qh_report_eval_stat(set, mi->model, label, mi->bits[b], dataset, QH_REPORT_PPL);
            if (p.n == 0) continue;
            qh_report_stat k = qh_report_eval_stat(set, mi->model, label, mi->bits[b], dataset, QH_REPORT_KL);
            qh_report_stat a = qh_report_eval_stat(set, mi->model, label, mi->bits[b], dataset, QH_REPORT_AGREE);
            rep_accum tot = { 0, 0, 0 };
            for (size_t i = 0; i < set->n_cells; i++) {
                const qh_report_cell *c = &set->cells[i];
                if (rep_in_group(c, mi->model, label, mi->bits[b]) && c->status == QH_OK
                    && isfinite(c->bpw_total))
                    rep_accum_add(&tot, c->bpw_total);
            }
            if (!rows++) {
                if (n_blocks) fprintf(o.f, "\n\n");
                tsv_text(o.f, mi->labels[l].display);
                fprintf(o.f, "\tppl\tppl_sd\tkl\tkl_sd\tagree\tagree_sd\tn_seeds\n");
            }
            fprintf(o.f, "%.6g", tot.n ? tot.mean : (double)mi->bits[b]);
            tsv_num(o.f, p.mean); tsv_num(o.f, p.std);
            tsv_num(o.f, k.mean); tsv_num(o.f, k.std);
            tsv_num(o.f, a.mean); tsv_num(o.f, a.std);
            fprintf(o.f, "\t%zu\n", p.n);
        }
        if (!rows) continue;
        n_blocks++;
        size_t colour = 1 + rank_of(methods, &n_methods, 64, first->method);
        size_t dash = 1;                         /* the incoherence table's order: none solid */
        for (const qh_incoh_row *r = qh_incoh_table(); r->name && strcmp(r->name, first->incoherence); r++)
            dash++;
        int w = snprintf(series + o_series, sizeof series - o_series, "%s%zu %zu", o_series ? " " : "",
                         colour, dash);
        if (w > 0 && (size_t)w < sizeof series - o_series) o_series += (size_t)w;
    }
    QH_TRY(rep_out_commit(&o, out));
    QH_TRY(figure_add(fl, "metric_vs_bpw.gp", o.path, n_blocks, &fig));
    snprintf(fig->series, sizeof fig->series, "%s", series);
    char t[100], u[100];
    gp_text(mi->model, t, sizeof t);
    gp_text(dataset, u, sizeof u);
    snprintf(fig->title, sizeof fig->title, "%s on %s: against total bits per weight", t, u);
    return QH_OK;
}

/* proxy_per_layer.<model>.w<bits>.tsv: index, layer, name, then one column
 * per method label with any finite value. */
static int tsv_proxy_per_layer(const qh_report_set *set, const rep_model_index *mi, const char *dir,
                               int bits, qh_report_outputs *out, figure_list *fl)
{
    char sm[NAME_CAP], name[2 * NAME_CAP];
    rep_out_file o;
    figure *fig;
    size_t n_used = 0;
    QH_TRY(safe_name(mi->model, sm, sizeof sm));
    QH_TRY(qh_path_format(name, sizeof name, "report TSV", "proxy_per_layer.%s.w%d.tsv", sm,
                          bits));
    int *used = calloc(mi->n_labels ? mi->n_labels : 1, sizeof *used);
    if (!used)
        QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t l = 0; l < mi->n_labels; l++) {
        if (mi->labels[l].first->is_baseline)
            continue;
        for (size_t r = 0; r < mi->n_layers && !used[l]; r++)
            used[l] = isfinite(rep_layer_mean(set, mi, mi->labels[l].first->label, bits,
                                              "proxy_rel", r));
        n_used += (size_t)used[l];
    }
    if (n_used == 0) {
        free(used);
        return QH_OK;
    }
    int st = rep_out_open(&o, dir, name);
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
                tsv_num(o.f, rep_layer_mean(set, mi, mi->labels[l].first->label, bits,
                                            "proxy_rel", r));
        fputc('\n', o.f);
    }
    free(used);
    QH_TRY(rep_out_commit(&o, out));
    QH_TRY(figure_add(fl, "proxy_per_layer.gp", o.path, 3 + n_used, &fig));
    char t[100];
    gp_text(mi->model, t, sizeof t);
    snprintf(fig->title, sizeof fig->title, "%s: relative proxy loss per layer, %d bits", t, bits);
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
        if (strcmp(c->model, model) != 0 || c->status != QH_OK || !rep_ldlq_family(c->method))
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
            fprintf(f, "%s\t%d\t", rep_bound_base(bound), c->bits);
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
static int tsv_proxy_vs_bound(const qh_report_set *set, const rep_model_index *mi, const char *dir,
                              qh_report_outputs *out, figure_list *fl)
{
    char sm[NAME_CAP], name[2 * NAME_CAP], series[REP_TEXT_CAP] = "";
    rep_out_file o;
    figure *fig;
    size_t total = 0;
    QH_TRY(safe_name(mi->model, sm, sizeof sm));
    QH_TRY(qh_path_format(name, sizeof name, "report TSV", "proxy_vs_bound.%s.tsv", sm));
    QH_TRY(rep_out_open(&o, dir, name));
    fprintf(o.f, "bound\tbits\tmethod\tseed\tindex\tname\tbound_value\tproxy_proc\n");
    for (size_t k = 0; k < mi->n_bounds; k++) {
        if (strcmp(qh_report_bound_measured(mi->bounds[k]), "proxy_proc") != 0)
            continue;
        size_t n = scatter_rows(o.f, set, mi->model, mi->bounds[k]);
        if (n && strlen(series) + strlen(mi->bounds[k]) + 2 < sizeof series) {
            strcat(series, series[0] ? " " : "");
            strcat(series, rep_bound_base(mi->bounds[k]));
        }
        total += n;
    }
    if (total == 0) {
        rep_out_abort(&o);
        return QH_OK;
    }
    QH_TRY(rep_out_commit(&o, out));
    QH_TRY(figure_add(fl, "proxy_vs_bound.gp", o.path, 8, &fig));
    char t[100];
    gp_text(mi->model, t, sizeof t);
    snprintf(fig->title, sizeof fig->title, "%s: measured proxy loss vs bounds (LDLQ family)", t);
    snprintf(fig->series, sizeof fig->series, "%s", series);
    return QH_OK;
}

/* ---- gnuplot ------------------------------------------------------------------------------ */

/* prog (no '/') in one of the folders of $PATH: into buf, or NULL. */
static const char *search_path(const char *prog, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    char *dirs = strdup(path ? path : "/usr/bin:/bin"), *save = NULL;
    const char *found = NULL;
    for (char *d = dirs ? strtok_r(dirs, ":", &save) : NULL; d && !found;
         d = strtok_r(NULL, ":", &save))
        if (qh_path_format(buf, cap, "gnuplot", "%s/%s", *d ? d : ".", prog) == QH_OK
            && access(buf, X_OK) == 0)
            found = buf;
    free(dirs);
    qh_error_clear();                /* a folder too long to hold prog is not a candidate */
    return found;
}

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
    const char *found = search_path(prog, buf, cap);
    if (!found)
        snprintf(why, why_cap, "%s not found in PATH", prog);
    return found;
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

/* Moves base.tmp.EXT to base.EXT when gnuplot succeeded and wrote it;
 * otherwise removes it and notes the failure. */
static int keep_output(const figure *fig, const char *ext, int rc, const char *script,
                       const char *log, qh_report_outputs *out)
{
    char tmp[REP_PATH_CAP + 16], final[REP_PATH_CAP + 16];
    struct stat sb;
    QH_TRY(qh_path_format(tmp, sizeof tmp, "figure", "%s.tmp.%s", fig->base, ext));
    QH_TRY(qh_path_format(final, sizeof final, "figure", "%s.%s", fig->base, ext));
    if (rc == 0 && stat(tmp, &sb) == 0 && sb.st_size > 0 && rename(tmp, final) == 0)
        return rep_push_fmt(&out->paths, &out->n_paths, "%s", final);
    remove(tmp);
    return rep_push_fmt(&out->notes, &out->n_notes, "gnuplot failed on %s (exit %d): %s not "
                        "written (see %s)", script, rc, final, log);
}

/* Renders one figure into base.tmp.{png,svg}, then renames both. */
static int render(const char *prog, const char *plots_dir, const figure *fig, const char *log,
                  qh_report_outputs *out)
{
    char script[REP_PATH_CAP], expr[REP_PATH_CAP * 3 + 2 * REP_TEXT_CAP];
    if (qh_path_format(script, sizeof script, "gnuplot script", "%s/%s", plots_dir,
                       fig->script) != QH_OK || access(script, R_OK) != 0)
        return rep_push_fmt(&out->notes, &out->n_notes, "gnuplot script %s missing: %s.png "
                            "skipped", script, fig->base);
    if (strpbrk(fig->tsv, "'\"") || strpbrk(fig->base, "'\"") || strpbrk(plots_dir, "'\""))
        return rep_push_fmt(&out->notes, &out->n_notes, "quote in a path: %s.png skipped",
                            fig->base);
    QH_TRY(qh_path_format(expr, sizeof expr, "gnuplot command", "datafile='%s'; "
                          "outfile='%s.tmp'; plotdir='%s/'; ttl='%s'; ncols=%zu; series='%s'",
                          fig->tsv, fig->base, plots_dir, fig->title, fig->ncols, fig->series));
    int rc = run_program(prog, expr, script, log);
    QH_TRY(keep_output(fig, "png", rc, script, log, out));
    return keep_output(fig, "svg", rc, script, log, out);
}

/* Draws every figure; what gnuplot printed is kept in OUT_DIR/gnuplot.log. */
static int render_all(const qh_report_options *opt, const figure_list *fl,
                      qh_report_outputs *out)
{
    char buf[REP_PATH_CAP], why[REP_PATH_CAP + 64], log[REP_PATH_CAP], log_tmp[REP_PATH_CAP + 8];
    char common[REP_PATH_CAP];
    const char *prog = find_gnuplot(opt, buf, sizeof buf, why, sizeof why);
    if (fl->n == 0)
        return QH_OK;
    if (!prog)
        return rep_push_fmt(&out->notes, &out->n_notes, "%s: figures skipped (the TSV files are "
                            "written; run analysis/plots/*.gp on them by hand)", why);
    const char *plots_dir = opt->plots_dir ? opt->plots_dir : "analysis/plots";
    if (qh_path_format(common, sizeof common, "gnuplot scripts", "%s/common.gp", plots_dir)
        != QH_OK || access(common, R_OK) != 0)
        return rep_push_fmt(&out->notes, &out->n_notes, "gnuplot scripts not found in %s (run "
                            "from the repository root or pass --plots-dir): figures skipped",
                            plots_dir);
    QH_TRY(qh_path_format(log, sizeof log, "gnuplot log", "%s/gnuplot.log", opt->out_dir));
    QH_TRY(qh_path_format(log_tmp, sizeof log_tmp, "gnuplot log", "%s.tmp", log));
    remove(log_tmp);
    for (size_t i = 0; i < fl->n; i++)
        QH_TRY(render(prog, plots_dir, &fl->v[i], log_tmp, out));
    struct stat sb;
    if (stat(log_tmp, &sb) == 0 && sb.st_size > 0 && rename(log_tmp, log) == 0)
        return rep_push_fmt(&out->notes, &out->n_notes, "gnuplot printed messages: see %s", log);
    remove(log_tmp);
    remove(log);                     /* a stale log of an earlier run would mislead */
    return QH_OK;
}

/* ---- the figures of a report ------------------------------------------------------------ */

static int write_tsvs(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                      const char *dir, qh_report_outputs *out, figure_list *fl)
{
    for (size_t m = 0; m < n_models; m++) {
        for (size_t d = 0; d < idx[m].n_datasets; d++)
            if (idx[m].n_bits) {
                QH_TRY(tsv_ppl_vs_bits(set, &idx[m], dir, idx[m].datasets[d], out, fl));
                QH_TRY(tsv_metric_vs_bpw(set, &idx[m], dir, idx[m].datasets[d], out, fl));
            }
        for (size_t b = 0; b < idx[m].n_bits && idx[m].n_layers; b++)
            QH_TRY(tsv_proxy_per_layer(set, &idx[m], dir, idx[m].bits[b], out, fl));
        if (idx[m].n_layers)
            QH_TRY(tsv_proxy_vs_bound(set, &idx[m], dir, out, fl));
    }
    return QH_OK;
}

int rep_write_figures(const qh_report_set *set, const rep_model_index *idx, size_t n_models,
                      const qh_report_options *opt, qh_report_outputs *out)
{
    figure_list fl = { 0, 0, NULL };
    int st = write_tsvs(set, idx, n_models, opt->out_dir, out, &fl);
    if (st == QH_OK)
        st = render_all(opt, &fl, out);
    free(fl.v);
    return st;
}
