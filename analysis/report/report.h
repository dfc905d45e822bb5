/* report.h -- tables and figures from a directory of per-cell results files
 * (`qh report`): the QuIP-paper-style perplexity table (Chee et al. 2023,
 * Table 1 layout: one row per method, columns per bit width and evaluation
 * text), the mean relative proxy loss per method and bit width, and how the
 * measured per-layer proxy loss compares with each evaluated bound of the
 * QuIP theory (methods reference §15).  Figures are drawn by gnuplot scripts
 * (analysis/plots/) from TSV files written here.
 *
 * Method display names, row order and which bounds apply come from the
 * method table (core/qh_method.h: display, display_order, bound_family);
 * incoherence suffixes and order from the incoherence table
 * (core/qh_incoherence.h).  The code is split by job: load.c (reading
 * cells), stats.c (statistics), tables.c (index, Markdown and LaTeX),
 * figures.c (TSV files and gnuplot), write.c (qh_report_write, output files);
 * report_internal.h holds what they share.
 *
 * Input: DIR/<cell id>.h5 as written by the sweep runner (layout in
 * results/README.md and analysis/README.md); DIR/<model>.baseline.h5 holds
 * the float32 baseline (method "float32", no layer table).
 *
 * With the fidelity metrics (docs/metrics.md) fidelity.md puts KL and
 * top-1 agreement beside perplexity, and with task files (config key
 * "tasks") tasks.md gives each task's accuracy; all of them as mean and
 * sample standard deviation over seeds.  Per-cell confidence intervals stay
 * in the cell files.
 */
#ifndef QH_REPORT_H
#define QH_REPORT_H

#include <stddef.h>

#include "qh_error.h"
#include "results/reader.h"

typedef struct {
    char *path;                      /* the file it came from */
    char *id, *model, *method, *label, *incoherence, *message;
    int bits, seed, status;          /* status 0: complete */
    int is_baseline;                 /* method "float32" */
    double bpw_nominal, bpw_total;   /* NaN when absent */
    size_t n_eval;
    char **eval_names;               /* n_eval dataset names (sorted) */
    double *eval_ppl;                /* n_eval perplexities */
    double *eval_kl;                 /* n_eval mean KL to the float model; NaN when absent */
    double *eval_agree;              /* n_eval top-1 agreement; NaN when absent */
    size_t n_tasks;
    char **task_names;               /* n_tasks task labels under /run/tasks (sorted) */
    double *task_acc;                /* n_tasks accuracies; NaN when unreadable */
    double *task_acc_norm;           /* n_tasks length-normalised accuracies; NaN likewise */
    qh_h5_table layers;              /* /run/layer_table; zeroed when absent */
    char *protocol;                  /* /run/protocol; NULL when absent (older files) */
} qh_report_cell;

typedef struct {                     /* owns every cell and string */
    size_t n_cells;
    qh_report_cell *cells;           /* in file-name order */
    size_t n_warnings;
    char **warnings;                 /* one line per skipped file, naming it */
} qh_report_set;

/* Loads every run file DIR/NAME.h5 (the folder listed by qh_results_scan_dir).
 * Files ending in .tmp, unreadable or corrupt .h5 files, .h5 files without
 * /run (e.g. a merged file) and files whose /run incoherence is not a name of
 * the incoherence table (qh_incoh_find; an absent attribute reads "none") are
 * skipped with a warning in set->warnings naming the file; a cell whose
 * status is not 0 is loaded (it is a result: "failed" in the tables).  A
 * method the method table does not know is loaded under its stored name
 * (reports read old files).
 * Output: *set (caller-provided; free with qh_report_set_free).
 * Return: QH_OK; QH_EIO (DIR cannot be read); QH_EINVAL (no readable run file
 *   in DIR: the message names DIR and the skipped files); QH_ENOMEM. */
int qh_report_load(const char *dir, qh_report_set *set) QH_MUST_CHECK;
void qh_report_set_free(qh_report_set *set);   /* leaves *set zeroed */

/* Cells of one model share one table, so they must share a protocol: the
 * keys of their records (/run/protocol) under model., eval., code., blas.,
 * record. and calibration. (but calibration.seed, which follows the seed)
 * must agree; the method, its parameters, incoherence, bits and seed (the
 * rows, columns and repeats) may differ.  A baseline has no calibration keys.
 * A model whose cells hold no record at all (older files) passes with a note.
 * Output: *notes (appended: one line per model not checked).
 * Return: QH_OK; QH_EINVAL (the message names the model, two cells and the
 *   keys they differ in, or a cell without a record among cells with one);
 *   QH_ENOMEM. */
int qh_report_check_protocols(const qh_report_set *set, char ***notes, size_t *n_notes) QH_MUST_CHECK;

typedef struct {
    size_t n;                        /* complete cells that contributed */
    size_t n_failed;                 /* cells of the group whose status is not 0 */
    double mean;                     /* NaN when n == 0 */
    double std;                      /* sample std (n-1 denominator); 0 when n == 1, NaN when 0 */
} qh_report_stat;

/* Perplexity on `dataset` over the seeds of (model, label, bits); bits is
 * ignored for the baseline.  Cells missing that dataset do not count. */
qh_report_stat qh_report_ppl(const qh_report_set *set, const char *model, const char *label,
                             int bits, const char *dataset);

/* The metric of a cell that qh_report_eval_stat averages: of an evaluation
 * dataset, or (the TASK ones) of a task file's multiple-choice scoring. */
typedef enum {
    QH_REPORT_PPL, QH_REPORT_KL, QH_REPORT_AGREE, QH_REPORT_TASK_ACC, QH_REPORT_TASK_ACC_NORM
} qh_report_metric;

/* As qh_report_ppl for any metric; `dataset` names the task for the TASK
 * metrics.  Cells without the metric (older files) do not count. */
qh_report_stat qh_report_eval_stat(const qh_report_set *set, const char *model, const char *label,
                                   int bits, const char *dataset, qh_report_metric metric);

/* Relative proxy loss of each complete cell, sum over layers of proxy /
 * sum of proxy_norm (processed: proxy_proc / proxy_norm_proc), layers with a
 * non-finite value left out; mean and std over seeds. */
qh_report_stat qh_report_proxy_rel(const qh_report_set *set, const char *model,
                                   const char *label, int bits, int processed);

typedef struct {
    size_t n_layers;                 /* layers with a finite measured value and bound > 0 */
    size_t n_hold;                   /* of those, measured <= bound (relative slack 1e-9) */
    double frac_hold;                /* n_hold / n_layers; NaN when n_layers == 0 */
    double median_ratio;             /* median of measured / bound; NaN when n_layers == 0 */
    const char *measured;            /* the column compared (static string) */
} qh_report_bound_stat;

/* The column a bound is compared with: "tr_D_proc" for lemma2_trD,
 * "mu_H_proc" / "mu_W_proc" for rht_mu_H / rht_mu_W, else "proxy_proc".
 * bound: the column name with or without the "bound_" prefix. */
const char *qh_report_bound_measured(const char *bound);

/* What a bound claims: "worst case: must hold without clamping", "tr D bound: must hold",
 * "high probability", or "average: prediction" (static strings). */
const char *qh_report_bound_kind(const char *bound);

/* 1 if bound (with or without "bound_") is a statement about method: the
 * Thm 1 LDLQ, Thm 3 and QuIP# bounds (thm1_ldlq*, thm3*, quipsharp*) apply
 * to the methods whose row in the method table has bound_family
 * QH_BOUND_FAMILY_LDLQ (gptq = forward LDLQ, ldlq, ldlq_rg) and to no
 * unregistered method; the others (nearest/stochastic, Lemma 2, RHT mu) to
 * every method. */
int qh_report_bound_applies(const char *method, const char *bound);

/* Pools the layers of every complete cell of (model, label, bits) and
 * compares column `bound` (e.g. "bound_thm1_ldlq_worst") with its measured
 * column; cells whose method the bound does not apply to
 * (qh_report_bound_applies) are left out. */
qh_report_bound_stat qh_report_bound(const qh_report_set *set, const char *model,
                                     const char *label, int bits, const char *bound);

/* Display name of a method: the display field of its row in the method table
 * (gptq -> OPTQ, rtn -> Nearest, ...), "FP32" for the float32 baseline, the
 * name itself for a method the table does not know; followed by the
 * display_suffix of the incoherence's row in the incoherence table ("",
 * "+IncP" for kron, "+IncP(Had)" for hadamard), or "+NAME" for a name not in
 * it (the loader never yields one).  Writes into buf (cap bytes, truncating:
 * a label, not a path). */
void qh_report_display_name(const char *method, const char *incoherence, char *buf, size_t cap);

typedef struct {
    const char *out_dir;             /* created (with parents) if missing */
    const char *plots_dir;           /* gnuplot scripts; NULL: "analysis/plots" */
    const char *gnuplot;             /* program; NULL: $QH_GNUPLOT if set, else "gnuplot"
                                        searched in PATH; "" or "none": no figures */
} qh_report_options;

typedef struct {                     /* owns its strings */
    size_t n_paths;
    char **paths;                    /* every file written, in order */
    size_t n_notes;
    char **notes;                    /* e.g. "gnuplot not found: figures skipped" */
} qh_report_outputs;

/* Writes table.md, table.tex, proxy.md, bounds.md, the TSV files and (when
 * gnuplot and the scripts are available) the PNG and SVG figures into
 * opt->out_dir.  Every file is written as FILE.tmp (figures: NAME.tmp.png)
 * and renamed into place.  A missing gnuplot or a failed figure is a note,
 * not an error.
 * Output: *out (caller-provided; free with qh_report_outputs_free).
 * Return: QH_OK; QH_EIO (a table or TSV cannot be written: message names
 *   it); QH_EINVAL (empty set); QH_ENOMEM. */
int qh_report_write(const qh_report_set *set, const qh_report_options *opt,
                    qh_report_outputs *out) QH_MUST_CHECK;
void qh_report_outputs_free(qh_report_outputs *out);

#endif
