/* cell_file.c -- one cell's HDF5 results file (see cell_file.h). */
#include "pipeline/cell_file.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "pipeline/protocol.h"
#include "qh_path.h"
#include "results/provenance.h"
#include "results/writer.h"

static int write_params(qh_results *w, const qh_method_type *m, const void *params)
{
    QH_TRY(qh_results_group(w, "/run/params"));
    if (!m) return QH_OK;
    void *defaults = params ? NULL : qh_method_params_new(m);
    if (!params && !defaults) QH_ERROR(QH_ENOMEM, "out of memory");
    const void *p = params ? params : defaults;
    int st = QH_OK;
    for (const qh_param_desc *d = m->params; d && d->key && st == QH_OK; d++) {
        const char *field = (const char *)p + d->offset;
        char buf[128];
        if (d->type == QH_PARAM_DOUBLE) {
            double v;
            memcpy(&v, field, sizeof v);
            st = qh_results_attr_double(w, "/run/params", d->key, v);
        } else if (d->type == QH_PARAM_ENUM) {        /* enums by name: stable across versions */
            qh_param_format(d, p, buf, sizeof buf);
            st = qh_results_attr_string(w, "/run/params", d->key, buf);
        } else {                                      /* INT and BOOL are ints */
            int v;
            memcpy(&v, field, sizeof v);
            st = qh_results_attr_int(w, "/run/params", d->key, v);
        }
    }
    free(defaults);
    return st;
}

/* The protocol record and its hash: `qh run` compares the record to tell a
 * complete cell from a stale one; the hash is for a quick eye comparison. */
static int write_protocol(qh_results *w, const char *protocol)
{
    char hex[65];
    if (!protocol) return QH_OK;
    qh_protocol_sha256(protocol, hex);
    QH_TRY(qh_results_attr_string(w, "/run", "protocol", protocol));
    return qh_results_attr_string(w, "/run", "protocol_sha256", hex);
}

static int write_run(qh_results *w, const qh_cell_info *c, const qh_layer_record *recs, size_t n)
{
    double nominal = 0, weights = 0;
    for (size_t i = 0; i < n; i++) {
        double k = (double)recs[i].rows * (double)recs[i].cols;
        nominal += recs[i].bits_nominal * k;
        weights += k;
    }
    QH_TRY(qh_results_attr_string(w, "/", "config_json", c->config_json ? c->config_json : ""));
    QH_TRY(qh_results_attr_string(w, "/run", "id", c->id));
    QH_TRY(qh_results_attr_string(w, "/run", "model", c->model));
    QH_TRY(qh_results_attr_string(w, "/run", "model_path", c->model_path));
    QH_TRY(qh_results_attr_string(w, "/run", "method", c->method ? c->method->name : "float32"));
    QH_TRY(qh_results_attr_string(w, "/run", "method_label", c->method_label));
    QH_TRY(qh_results_attr_int(w, "/run", "method_version", c->method ? c->method->version : 0));
    QH_TRY(qh_results_attr_string(w, "/run", "incoherence", c->incoherence));
    QH_TRY(qh_results_attr_int(w, "/run", "rescale", c->rescale));
    QH_TRY(qh_results_attr_int(w, "/run", "bits", c->bits));
    QH_TRY(qh_results_attr_int(w, "/run", "seed", (int64_t)c->seed));
    QH_TRY(qh_results_attr_int(w, "/run", "status", c->status));
    QH_TRY(qh_results_attr_string(w, "/run", "message", c->message ? c->message : ""));
    QH_TRY(qh_results_attr_double(w, "/run", "bits_per_weight_nominal",
                                  weights > 0 ? nominal / weights : (double)c->bits));
    QH_TRY(qh_results_attr_double(w, "/run", "bits_per_weight_total",
                                  weights > 0 ? qh_layer_records_bits_total(recs, n) : (double)c->bits));
    QH_TRY(qh_results_attr_string(w, "/run", "hessian_convention", "token-mean"));
    QH_TRY(qh_results_attr_string(w, "/run", "calib_path", c->calib_path ? c->calib_path : ""));
    QH_TRY(qh_results_attr_int(w, "/run", "calib_nsamples", (int64_t)c->calib_nsamples));
    QH_TRY(qh_results_attr_int(w, "/run", "calib_seqlen", (int64_t)c->calib_seqlen));
    if (c->heal_kl) {                 /* the whole-model stage (pipeline/model_stage.h) */
        QH_TRY(qh_results_attr_double(w, "/run", "heal_kl_init", c->heal_kl->kl_init));
        QH_TRY(qh_results_attr_double(w, "/run", "heal_kl_final", c->heal_kl->kl_final));
        QH_TRY(qh_results_attr_double(w, "/run", "heal_kl_best_step", c->heal_kl->best_step_kl));
        QH_TRY(qh_results_attr_int(w, "/run", "heal_kl_steps_run", (int64_t)c->heal_kl->steps));
    }
    QH_TRY(write_protocol(w, c->protocol));
    return write_params(w, c->method, c->params);
}

/* The fidelity against the float model: attributes beside ppl, and the
 * per-window vectors the intervals come from (results/README.md). */
static int write_fidelity(qh_results *w, const char *g, const qh_eval_fidelity *f, size_t n)
{
    const struct { const char *name; double v; } attrs[] = {
        { "kl_mean", f->kl_mean }, { "kl_ci95", f->kl_ci }, { "kl_p99", f->kl_p99 },
        { "kl_max", f->kl_max }, { "top1_agree", f->agree }, { "top1_agree_ci95", f->agree_ci },
        { "dp_true_mean", f->dp_mean }, { "dp_true_ci95", f->dp_ci }, { "dp_true_sd", f->dp_sd },
        { "ppl_float", f->ppl_float }, { "ppl_ratio", f->ppl_ratio },
        { "ppl_ratio_lo95", f->ppl_ratio_lo }, { "ppl_ratio_hi95", f->ppl_ratio_hi },
        { "kl_tail_mass", f->tail_mass },
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        QH_TRY(qh_results_attr_double(w, g, attrs[i].name, attrs[i].v));
    QH_TRY(qh_results_attr_int(w, g, "kl_topk", (int64_t)f->topk));
    QH_TRY(qh_results_attr_string(w, g, "ci_method", "1.96 x standard error over windows"));
    const struct { const char *name; const double *x; } vecs[] = {
        { "window_kl", f->window_kl }, { "window_top1_agree", f->window_agree },
        { "window_dp_true", f->window_dp }, { "window_nll_float", f->window_nll_float },
    };
    char d[300];
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        QH_TRY(qh_path_format(d, sizeof d, "evaluation dataset", "%s/%s", g, vecs[i].name));
        QH_TRY(qh_results_write_vec(w, d, vecs[i].x, n));
    }
    return QH_OK;
}

static int write_eval(qh_results *w, const qh_cell_eval *e)
{
    char g[256], d[300];
    QH_TRY(qh_path_format(g, sizeof g, "evaluation group", "/run/eval/%s", e->name));
    QH_TRY(qh_results_group(w, g));
    QH_TRY(qh_results_attr_string(w, g, "path", e->path));
    QH_TRY(qh_results_attr_double(w, g, "ppl", e->ppl));
    QH_TRY(qh_results_attr_int(w, g, "seqlen", (int64_t)e->seqlen));
    QH_TRY(qh_results_attr_int(w, g, "n_windows", (int64_t)e->n_windows));
    QH_TRY(qh_results_attr_int(w, g, "n_tokens", (int64_t)e->n_tokens));
    QH_TRY(qh_path_format(d, sizeof d, "evaluation dataset", "%s/window_nll", g));
    QH_TRY(qh_results_write_vec(w, d, e->window_nll, e->n_windows));
    return e->fid ? write_fidelity(w, g, e->fid, e->n_windows) : QH_OK;
}

/* /run/tasks/<label>: accuracies and the per-continuation scores. */
static int write_task(qh_results *w, const qh_cell_task *t)
{
    char g[256], d[300];
    QH_TRY(qh_path_format(g, sizeof g, "task group", "/run/tasks/%s", t->name));
    QH_TRY(qh_results_group(w, g));
    QH_TRY(qh_results_attr_string(w, g, "path", t->path));
    QH_TRY(qh_results_attr_int(w, g, "n_items", (int64_t)t->r->n));
    QH_TRY(qh_results_attr_double(w, g, "acc", t->r->acc));
    QH_TRY(qh_results_attr_double(w, g, "acc_stderr", t->r->acc_stderr));
    QH_TRY(qh_results_attr_double(w, g, "acc_norm", t->r->acc_norm));
    QH_TRY(qh_results_attr_double(w, g, "acc_norm_stderr", t->r->acc_norm_stderr));
    QH_TRY(qh_path_format(d, sizeof d, "task dataset", "%s/scores", g));
    return qh_results_write_vec(w, d, t->r->scores, t->r->n_scores);
}

/* The process's peak resident memory so far in bytes (getrusage; 0 when the
 * system does not say): one cell's when the process ran only that cell. */
static double peak_rss_bytes(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss * 1024.0 : 0.0;
}

/* Timings and memory vary between reruns, so they live under /provenance,
 * which comparisons exclude: the cell's wall time, the process's peak RSS and
 * one time per layer. */
static int write_timings(qh_results *w, const qh_cell_info *c, const qh_layer_record *recs, size_t n)
{
    QH_TRY(qh_results_attr_double(w, "/provenance", "seconds", c->seconds));
    QH_TRY(qh_results_attr_double(w, "/provenance", "peak_rss_bytes", peak_rss_bytes()));
    if (c->heal_kl)
        QH_TRY(qh_results_attr_double(w, "/provenance", "heal_kl_seconds", c->heal_kl->seconds));
    if (!n) return QH_OK;
    double *secs = malloc(n * sizeof *secs);
    if (!secs) QH_ERROR(QH_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) secs[i] = recs[i].seconds;
    int st = qh_results_write_vec(w, "/provenance/layer_seconds", secs, n);
    free(secs);
    return st;
}

int qh_cell_file_write(const char *path, const qh_cell_info *info, const qh_layer_record *recs,
                       size_t n_recs, const qh_cell_eval *evals, size_t n_evals)
{
    qh_provenance prov;
    qh_provenance_collect(&prov);
    qh_results *w = NULL;
    QH_TRY(qh_results_open(path, &w));
    int st = write_run(w, info, recs, n_recs);
    if (st == QH_OK && n_recs) st = qh_layer_records_write(w, "/run/layer_table", recs, n_recs);
    for (size_t i = 0; i < n_evals && st == QH_OK; i++) st = write_eval(w, &evals[i]);
    for (size_t i = 0; i < info->n_tasks && st == QH_OK; i++) st = write_task(w, &info->tasks[i]);
    if (st == QH_OK) {
        qh_provenance_finish(&prov);
        st = qh_provenance_write(w, &prov);
    }
    if (st == QH_OK) st = write_timings(w, info, recs, n_recs);
    if (st != QH_OK) {
        qh_results_abort(w);
        return st;
    }
    return qh_results_commit(w);
}
