/* block_stage.c -- the block stage: a method's block ops driven against the
 * block output (see block_stage.h). */
#include "pipeline/block_stage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "pipeline/sequential.h"
#include "qh_clock.h"
#include "qh_rng.h"

#define COS_EPS 1e-8

/* ---- the loss ------------------------------------------------------------------- */

static double dot_f(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* Mean over tokens of cos(yq_t, y_t); per token, the cosine into cos_t (T)
 * and ‖yq_t‖‖y_t‖ into nn_t (T), for the gradient. */
static double mean_cosine(const float *yq, const float *y, size_t d, size_t T,
                          const double *norm_q, double *cos_t, double *nn_t)
{
    double c = 0.0;
    for (size_t t = 0; t < T; t++) {
        const float *a = yq + t * d, *b = y + t * d;
        double nn = nn_t[t] = norm_q[t] * sqrt(dot_f(b, b, d));
        cos_t[t] = dot_f(a, b, d) / fmax(nn, COS_EPS);
        c += cos_t[t];
    }
    return c / (double)T;
}

/* dy += ∂(−log|c|)/∂yq for c = mean_t cos(yq_t, y_t):
 * −(1/c)(1/T) [y_t / max(‖yq_t‖‖y_t‖, ε) − cos_t yq_t / ‖yq_t‖² (when not clamped)]. */
static void add_cosine_grad(const float *yq, const float *y, size_t d, size_t T, double c,
                            const double *cos_t, const double *nn_t, const double *norm_q,
                            float *dy)
{
    for (size_t t = 0; t < T; t++) {
        const float *a = yq + t * d, *b = y + t * d;
        double nq = norm_q[t], nn = nn_t[t];
        double k = -1.0 / (c * (double)T);
        double inv = 1.0 / fmax(nn, COS_EPS), self = nn > COS_EPS ? cos_t[t] / (nq * nq) : 0.0;
        for (size_t i = 0; i < d; i++)
            dy[t * d + i] += (float)(k * ((double)b[i] * inv - self * (double)a[i]));
    }
}

double qh_block_loss(const float *yq, const float *y_fp, const float *y_fq, size_t hidden,
                     size_t T, float *dy, double *mse_fp)
{
    size_t n = hidden * T;
    double e_fp = 0.0, e_fq = 0.0;
    for (size_t i = 0; i < n; i++) {
        double a = (double)yq[i] - (double)y_fp[i], b = (double)yq[i] - (double)y_fq[i];
        e_fp += a * a;
        e_fq += b * b;
        if (dy) dy[i] = (float)(2.0 * (a + b) / (double)n);
    }
    e_fp /= (double)n;
    e_fq /= (double)n;
    if (mse_fp) *mse_fp = e_fp;
    /* per-token cosines and norm products: 5T doubles, small next to the window */
    double *cos_fp = malloc(5 * T * sizeof(double));
    if (!cos_fp) return NAN;
    double *cos_fq = cos_fp + T, *nn_fp = cos_fq + T, *nn_fq = nn_fp + T, *norm_q = nn_fq + T;
    for (size_t t = 0; t < T; t++) norm_q[t] = sqrt(dot_f(yq + t * hidden, yq + t * hidden, hidden));
    double c_fp = mean_cosine(yq, y_fp, hidden, T, norm_q, cos_fp, nn_fp);
    double c_fq = mean_cosine(yq, y_fq, hidden, T, norm_q, cos_fq, nn_fq);
    if (dy) {
        add_cosine_grad(yq, y_fp, hidden, T, c_fp, cos_fp, nn_fp, norm_q, dy);
        add_cosine_grad(yq, y_fq, hidden, T, c_fq, cos_fq, nn_fq, norm_q, dy);
    }
    free(cos_fp);
    return e_fp + e_fq - log(fabs(c_fp)) - log(fabs(c_fq));
}

double qh_block_loss_mse(const float *yq, const float *y_fp, size_t n, double scale, float *dy)
{
    double e = 0.0, k = 2.0 * scale / (double)n;
    for (size_t i = 0; i < n; i++) {
        double a = (double)yq[i] - (double)y_fp[i];
        e += a * a;
        if (dy) dy[i] = (float)(k * a);
    }
    return e / (double)n;
}

/* ---- one linear's state ------------------------------------------------------------ */

typedef struct {
    const qh_block_ops *ops;
    const void *params;
    void *state;                     /* the method's, filled by its quantize */
    qh_linear *lin;
    size_t rows, cols;               /* m = out, n = in */
    qh_matd *What, *G;               /* (m, n) double: Ŵ to write, ∂ℓ/∂Ŵ */
    float *Gf;                       /* (m x n) row-major float: the backward pass's output */
} tune_linear;

static void tune_linear_free(tune_linear *t)
{
    qh_matd_free(t->What);
    qh_matd_free(t->G);
    free(t->Gf);
}

static int tune_linear_init(tune_linear *t, qh_linear *lin, const qh_method_type *mt,
                            const void *params, void *state)
{
    memset(t, 0, sizeof *t);
    size_t m = (size_t)lin->out, n = (size_t)lin->in, sm = 0, sn = 0;
    if (state) mt->block->state_shape(state, &sm, &sn);
    if (sm == 0 && sn == 0)
        QH_ERROR(QH_EINVAL, "%s: no %s state to tune (was the layer quantized with %s?)", lin->name,
                 mt->name, mt->name);
    if (sm != m || sn != n)
        QH_ERROR(QH_EINVAL, "%s: %s state is %zu x %zu, the linear %zu x %zu", lin->name, mt->name,
                 sm, sn, m, n);
    *t = (tune_linear){ .ops = mt->block, .params = params, .state = state, .lin = lin,
                        .rows = m, .cols = n };
    t->What = qh_matd_alloc(m, n);
    t->G = qh_matd_alloc(m, n);
    t->Gf = malloc(m * n * sizeof(float));
    if (!t->What || !t->G || !t->Gf) {
        tune_linear_free(t);
        QH_ERROR(QH_ENOMEM, "%s: out of memory for block tuning", lin->name);
    }
    return QH_OK;
}

/* Ŵ of the current state into the model's float weights. */
static void write_weights(tune_linear *t)
{
    t->ops->reconstruct(t->params, t->state, t->What);
    qh_linear_from_matd(t->lin, t->What);
}

/* One optimiser step from the accumulated Gf (row-major out x in). */
static int step(tune_linear *t, int step_no)
{
    qh_matd_set_rowmajor_f(t->G, t->Gf);
    int st = t->ops->step(t->params, t->state, t->G, step_no);
    if (st != QH_OK) qh_error_prefix("%s: block step %d", t->lin->name, step_no);
    return st;
}

/* ---- the block ---------------------------------------------------------------------- */

typedef struct {
    qh_model *m;
    int layer;
    size_t nsamples, T, hidden;
    const float *x, *x_fp;
    qh_block_plan plan;
    const qh_block_ops *ops;
    float *y_fp, *y_fq;              /* targets, nsamples windows (y_fq: PTQ1.61's loss only) */
    float *yq, *dy;                  /* one window */
    size_t *order;                   /* (nsamples) window indices; a step takes `batch` of them */
    size_t cursor;                   /* sequential draw: the next window */
    qh_rng rng;                      /* random draw */
    qh_block_tape *tape;
    tune_linear lin[QH_LIN_MAX];
    int have[QH_LIN_MAX];
} tuner;

static size_t window(const tuner *tu, size_t s) { return s * tu->hidden * tu->T; }
static int wants_fq(const tuner *tu) { return tu->plan.loss == QH_BLOCK_LOSS_PTQ161; }

/* Y_fp (and Y_fq when the loss uses it) with the float weights swapped in. */
static int compute_targets(tuner *tu, float *const W_fp[QH_LIN_MAX])
{
    float *W[QH_LIN_MAX];
    memcpy(W, W_fp, sizeof W);
    qh_block_swap_weights(tu->m, tu->layer, W);
    int st = QH_OK;
    for (size_t s = 0; s < tu->nsamples && st == QH_OK; s++) {
        st = qh_block_forward_tape(tu->m, tu->layer, tu->x_fp + window(tu, s), tu->T,
                                   tu->y_fp + window(tu, s), tu->tape);
        if (st == QH_OK && wants_fq(tu))
            st = qh_block_forward_tape(tu->m, tu->layer, tu->x + window(tu, s), tu->T,
                                       tu->y_fq + window(tu, s), tu->tape);
    }
    qh_block_swap_weights(tu->m, tu->layer, W);
    return st;
}

/* The plan's loss of window s at the block's current weights (the forward
 * already run into tu->yq); its gradient, times scale, into tu->dy when dy. */
static double window_loss(tuner *tu, size_t s, double scale, int dy, double *mse_fp)
{
    size_t n = tu->hidden * tu->T;
    if (!wants_fq(tu)) {
        double e = qh_block_loss_mse(tu->yq, tu->y_fp + window(tu, s), n, scale, dy ? tu->dy : NULL);
        if (mse_fp) *mse_fp = e;
        return e;
    }
    double l = qh_block_loss(tu->yq, tu->y_fp + window(tu, s), tu->y_fq + window(tu, s), tu->hidden,
                             tu->T, dy ? tu->dy : NULL, mse_fp);
    if (dy && scale != 1.0)
        for (size_t i = 0; i < n; i++) tu->dy[i] = (float)(scale * (double)tu->dy[i]);
    return l;
}

/* Mean loss (and MSE to Y_fp) over all windows at the current weights. */
static int full_loss(tuner *tu, double *loss, double *mse_fp)
{
    double l = 0.0, e = 0.0, e1;
    for (size_t s = 0; s < tu->nsamples; s++) {
        QH_TRY(qh_block_forward_tape(tu->m, tu->layer, tu->x + window(tu, s), tu->T, tu->yq, tu->tape));
        l += window_loss(tu, s, 1.0, 0, &e1);
        e += e1;
    }
    *loss = l / (double)tu->nsamples;
    if (mse_fp) *mse_fp = e / (double)tu->nsamples;
    return QH_OK;
}

/* The step's windows into tu->order[0 .. batch): the next `batch` in
 * calibration order, or `batch` distinct ones drawn at random (a partial
 * Fisher-Yates shuffle of the identity). */
static void draw_windows(tuner *tu)
{
    size_t n = tu->nsamples, b = (size_t)tu->plan.batch;
    if (tu->plan.draw == QH_BLOCK_DRAW_SEQUENTIAL) {
        for (size_t i = 0; i < b; i++) tu->order[i] = (tu->cursor++) % n;
        return;
    }
    qh_rng_pick(&tu->rng, n, b, tu->order);
}

/* Ŵ of every state into the block; zeroes the gradients when G is given. */
static void write_all(tuner *tu, float *G[QH_LIN_MAX])
{
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!tu->have[k]) continue;
        write_weights(&tu->lin[k]);
        if (!G) continue;
        G[k] = tu->lin[k].Gf;
        memset(G[k], 0, tu->lin[k].rows * tu->lin[k].cols * sizeof(float));
    }
}

static int keep_all(tuner *tu, int action)
{
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (tu->have[k]) {
            int st = tu->ops->keep(tu->lin[k].state, action);
            if (st != QH_OK) {
                qh_error_prefix("%s: block tuning", tu->lin[k].lin->name);
                return st;
            }
        }
    return QH_OK;
}

/* The gradient of the mean loss over the drawn windows into every G; the
 * mean loss into *loss. */
static int minibatch_grad(tuner *tu, long step_no, double *loss)
{
    float *G[QH_LIN_MAX] = { NULL };
    write_all(tu, G);
    size_t b = (size_t)tu->plan.batch;
    double l = 0.0;
    for (size_t i = 0; i < b; i++) {
        size_t s = tu->order[i];
        QH_TRY(qh_block_forward_tape(tu->m, tu->layer, tu->x + window(tu, s), tu->T, tu->yq, tu->tape));
        l += window_loss(tu, s, 1.0 / (double)b, 1, NULL);
        QH_TRY(qh_block_backward(tu->m, tu->layer, tu->dy, tu->tape, G));
    }
    *loss = l / (double)b;
    if (!isfinite(*loss))
        QH_ERROR(QH_ENAN, "block %d: non-finite block loss at step %ld (window %zu)", tu->layer,
                 step_no, tu->order[0]);
    return QH_OK;
}

static int step_all(tuner *tu, long step_no)
{
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (tu->have[k]) QH_TRY(step(&tu->lin[k], (int)step_no));
    return QH_OK;
}

static void tuner_free(tuner *tu)
{
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (tu->have[k]) tune_linear_free(&tu->lin[k]);
    free(tu->y_fp);
    free(tu->yq);
    free(tu->order);
    qh_block_tape_free(tu->tape);
}

static int check_plan(const qh_method_type *t, qh_block_plan *p, size_t nsamples)
{
    if (p->batch < 1 || p->steps < 0)
        QH_ERROR(QH_EINVAL, "%s: block plan with batch %d, %ld steps", t->name, p->batch, p->steps);
    if ((size_t)p->batch > nsamples) p->batch = (int)nsamples;
    if ((p->keep_best || p->patience > 0) && !t->block->keep)
        QH_ERROR(QH_EINVAL, "%s: a block plan that keeps the best iterate needs a keep op", t->name);
    if (p->keep_best && p->patience > 0)
        QH_ERROR(QH_EINVAL, "%s: a block plan keeps the best step or the best pass, not both", t->name);
    return QH_OK;
}

static int tuner_init(tuner *tu, qh_model *m, int layer, const float *x, const float *x_fp,
                      size_t nsamples, size_t T, const qh_method_type *t, const void *params,
                      void *const states[QH_LIN_MAX], uint64_t seed)
{
    *tu = (tuner){ .m = m, .layer = layer, .nsamples = nsamples, .T = T, .ops = t->block,
                   .hidden = (size_t)m->cfg.hidden, .x = x, .x_fp = x_fp,
                   .rng = qh_rng_stream(seed, (uint32_t)layer, QH_RNG_BLOCK_DRAW) };
    if (layer < 0 || layer >= m->cfg.n_layers || nsamples < 1)
        QH_ERROR(QH_EINVAL, "block tuning: block %d of %d, %zu windows", layer, m->cfg.n_layers, nsamples);
    t->block->plan(params, nsamples, &tu->plan);
    QH_TRY(check_plan(t, &tu->plan, nsamples));
    qh_block *b = &m->blocks[layer];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!b->lin[k].W || !states[k]) continue;   /* no state: kept as it is */
        QH_TRY(tune_linear_init(&tu->lin[k], &b->lin[k], t, params, states[k]));
        tu->have[k] = 1;
    }
    QH_TRY(qh_block_tape_alloc(m, T, &tu->tape));
    size_t win = tu->hidden * T;
    tu->y_fp = malloc((wants_fq(tu) ? 2 : 1) * nsamples * win * sizeof(float));
    tu->yq = malloc(2 * win * sizeof(float));
    tu->order = malloc(nsamples * sizeof(size_t));
    if (!tu->y_fp || !tu->yq || !tu->order)
        QH_ERROR(QH_ENOMEM, "block %d: cannot hold the block targets (%zu windows)", layer, nsamples);
    tu->y_fq = wants_fq(tu) ? tu->y_fp + nsamples * win : NULL;
    tu->dy = tu->yq + win;
    return QH_OK;
}

/* Early stopping after a pass: saves the state when the mean loss over all
 * windows fell by rel_tol below the best pass, else counts a bad pass.
 * *stop = 1 after `patience` bad passes in a row. */
typedef struct { double best; int bad; size_t passes; } pass_watch;

static int watch_pass(tuner *tu, pass_watch *w, int *stop)
{
    double l;
    QH_TRY(full_loss(tu, &l, NULL));
    w->passes++;
    if (l < w->best * (1.0 - tu->plan.rel_tol)) {
        w->best = l;
        w->bad = 0;
        return keep_all(tu, QH_BLOCK_KEEP_SAVE);
    }
    *stop = ++w->bad >= tu->plan.patience;
    return QH_OK;
}

static int run_steps(tuner *tu, const qh_block_stage_opts *opts, double t0, qh_block_stage_stats *stats)
{
    const qh_block_plan *p = &tu->plan;
    long per_pass = (long)((tu->nsamples + (size_t)p->batch - 1) / (size_t)p->batch);
    double best = INFINITY;
    pass_watch w = { stats->loss_init, 0, 0 };
    if (p->patience > 0) QH_TRY(keep_all(tu, QH_BLOCK_KEEP_SAVE));
    long s;
    for (s = 1; s <= p->steps; s++) {
        double loss;
        draw_windows(tu);
        QH_TRY(minibatch_grad(tu, s, &loss));
        if (p->keep_best && loss < best) {
            best = loss;
            QH_TRY(keep_all(tu, QH_BLOCK_KEEP_SAVE));
        }
        QH_TRY(step_all(tu, s));
        if (opts && opts->progress)
            opts->progress(tu->layer, s, p->steps, loss, p->keep_best ? best : NAN,
                           qh_seconds() - t0, opts->user);
        int stop = 0;
        if (p->patience > 0 && s % per_pass == 0) {
            write_all(tu, NULL);
            QH_TRY(watch_pass(tu, &w, &stop));
        }
        if (stop) {
            stats->passes_stopped = w.passes;
            s++;
            break;
        }
    }
    stats->steps = (size_t)(s - 1);
    stats->best_step_loss = p->keep_best ? best : NAN;
    if (p->keep_best && p->steps > 0) QH_TRY(keep_all(tu, QH_BLOCK_KEEP_RESTORE));
    if (p->patience > 0) QH_TRY(keep_all(tu, QH_BLOCK_KEEP_RESTORE));
    return QH_OK;
}

static int tune(tuner *tu, float *const W_fp[QH_LIN_MAX], const qh_block_stage_opts *opts,
                double t0, qh_block_stage_stats *stats)
{
    QH_TRY(compute_targets(tu, W_fp));
    write_all(tu, NULL);
    QH_TRY(full_loss(tu, &stats->loss_init, &stats->mse_fp_init));
    QH_TRY(run_steps(tu, opts, t0, stats));
    write_all(tu, NULL);
    return full_loss(tu, &stats->loss_final, &stats->mse_fp_final);
}

int qh_block_stage_tune(qh_model *m, int layer, const float *x, const float *x_fp,
                        size_t nsamples, size_t T, float *const W_fp[QH_LIN_MAX],
                        const qh_method_type *t, const void *params,
                        void *const states[QH_LIN_MAX], const qh_block_stage_opts *opts,
                        qh_block_stage_stats *stats)
{
    double t0 = qh_seconds();
    memset(stats, 0, sizeof *stats);
    stats->best_step_loss = NAN;
    if (!t || !t->block)
        QH_ERROR(QH_EINVAL, "block %d: method %s has no block stage", layer, t ? t->name : "(none)");
    tuner tu;
    int st = tuner_init(&tu, m, layer, x, x_fp, nsamples, T, t, params, states,
                        opts ? opts->seed : 0);
    if (st == QH_OK) st = tune(&tu, W_fp, opts, t0, stats);
    tuner_free(&tu);
    stats->seconds = qh_seconds() - t0;
    return st;
}
