/* block_stage.c -- the block stage: a method's block ops driven against the
 * block output (see block_stage.h). */
#include "pipeline/block_stage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "pipeline/sequential.h"
#include "qh_clock.h"

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
    size_t m = t->rows, n = t->cols;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) QH_AT(t->G, i, j) = (double)t->Gf[i * n + j];
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
    float *y_fp, *y_fq;              /* targets, nsamples windows */
    float *yq, *dy;                  /* one window */
    qh_block_tape *tape;
    tune_linear lin[QH_LIN_MAX];
    int have[QH_LIN_MAX];
} tuner;

static size_t window(const tuner *tu, size_t s) { return s * tu->hidden * tu->T; }

/* Y_fp and Y_fq with the float weights swapped in. */
static int compute_targets(tuner *tu, float *const W_fp[QH_LIN_MAX])
{
    float *W[QH_LIN_MAX];
    memcpy(W, W_fp, sizeof W);
    qh_block_swap_weights(tu->m, tu->layer, W);
    int st = QH_OK;
    for (size_t s = 0; s < tu->nsamples && st == QH_OK; s++) {
        st = qh_block_forward_tape(tu->m, tu->layer, tu->x_fp + window(tu, s), tu->T,
                                   tu->y_fp + window(tu, s), tu->tape);
        if (st == QH_OK)
            st = qh_block_forward_tape(tu->m, tu->layer, tu->x + window(tu, s), tu->T,
                                       tu->y_fq + window(tu, s), tu->tape);
    }
    qh_block_swap_weights(tu->m, tu->layer, W);
    return st;
}

/* Mean loss (and MSE to Y_fp) over all windows at the current weights. */
static int full_loss(tuner *tu, double *loss, double *mse_fp)
{
    double l = 0.0, e = 0.0, e1;
    for (size_t s = 0; s < tu->nsamples; s++) {
        QH_TRY(qh_block_forward_tape(tu->m, tu->layer, tu->x + window(tu, s), tu->T, tu->yq, tu->tape));
        l += qh_block_loss(tu->yq, tu->y_fp + window(tu, s), tu->y_fq + window(tu, s), tu->hidden,
                           tu->T, NULL, &e1);
        e += e1;
    }
    *loss = l / (double)tu->nsamples;
    *mse_fp = e / (double)tu->nsamples;
    return QH_OK;
}

/* One optimiser step of every linear on window s. */
static int train_window(tuner *tu, size_t s, int step_no)
{
    float *G[QH_LIN_MAX] = { NULL };
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!tu->have[k]) continue;
        write_weights(&tu->lin[k]);
        G[k] = tu->lin[k].Gf;
        memset(G[k], 0, tu->lin[k].rows * tu->lin[k].cols * sizeof(float));
    }
    QH_TRY(qh_block_forward_tape(tu->m, tu->layer, tu->x + window(tu, s), tu->T, tu->yq, tu->tape));
    double loss = qh_block_loss(tu->yq, tu->y_fp + window(tu, s), tu->y_fq + window(tu, s),
                                tu->hidden, tu->T, tu->dy, NULL);
    if (!isfinite(loss))
        QH_ERROR(QH_ENAN, "block %d: non-finite block loss at step %d (window %zu)", tu->layer,
                 step_no, s);
    QH_TRY(qh_block_backward(tu->m, tu->layer, tu->dy, tu->tape, G));
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (tu->have[k]) QH_TRY(step(&tu->lin[k], step_no));
    return QH_OK;
}

static void tuner_free(tuner *tu)
{
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (tu->have[k]) tune_linear_free(&tu->lin[k]);
    free(tu->y_fp);
    free(tu->yq);
    qh_block_tape_free(tu->tape);
}

static int tuner_init(tuner *tu, qh_model *m, int layer, const float *x, const float *x_fp,
                      size_t nsamples, size_t T, const qh_method_type *t, const void *params,
                      void *const states[QH_LIN_MAX])
{
    *tu = (tuner){ .m = m, .layer = layer, .nsamples = nsamples, .T = T,
                   .hidden = (size_t)m->cfg.hidden, .x = x, .x_fp = x_fp };
    if (layer < 0 || layer >= m->cfg.n_layers || nsamples < 1)
        QH_ERROR(QH_EINVAL, "block tuning: block %d of %d, %zu windows", layer, m->cfg.n_layers, nsamples);
    qh_block *b = &m->blocks[layer];
    for (int k = 0; k < QH_LIN_MAX; k++) {
        if (!b->lin[k].W) continue;
        QH_TRY(tune_linear_init(&tu->lin[k], &b->lin[k], t, params, states[k]));
        tu->have[k] = 1;
    }
    QH_TRY(qh_block_tape_alloc(m, T, &tu->tape));
    size_t win = tu->hidden * T;
    tu->y_fp = malloc(2 * nsamples * win * sizeof(float));
    tu->yq = malloc(2 * win * sizeof(float));
    if (!tu->y_fp || !tu->yq)
        QH_ERROR(QH_ENOMEM, "block %d: cannot hold the block targets (%zu windows)", layer, nsamples);
    tu->y_fq = tu->y_fp + nsamples * win;
    tu->dy = tu->yq + win;
    return QH_OK;
}

static int tune(tuner *tu, float *const W_fp[QH_LIN_MAX], int epochs, qh_block_stage_stats *stats)
{
    QH_TRY(compute_targets(tu, W_fp));
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (tu->have[k]) write_weights(&tu->lin[k]);
    QH_TRY(full_loss(tu, &stats->loss_init, &stats->mse_fp_init));
    int step_no = 0;
    for (int e = 0; e < epochs; e++)
        for (size_t s = 0; s < tu->nsamples; s++) QH_TRY(train_window(tu, s, ++step_no));
    for (int k = 0; k < QH_LIN_MAX; k++)
        if (tu->have[k]) write_weights(&tu->lin[k]);
    stats->steps = (size_t)step_no;
    return full_loss(tu, &stats->loss_final, &stats->mse_fp_final);
}

int qh_block_stage_tune(qh_model *m, int layer, const float *x, const float *x_fp,
                        size_t nsamples, size_t T, float *const W_fp[QH_LIN_MAX],
                        const qh_method_type *t, const void *params,
                        void *const states[QH_LIN_MAX], qh_block_stage_stats *stats)
{
    double t0 = qh_seconds();
    memset(stats, 0, sizeof *stats);
    if (!t || !t->block)
        QH_ERROR(QH_EINVAL, "block %d: method %s has no block stage", layer, t ? t->name : "(none)");
    tuner tu;
    int st = tuner_init(&tu, m, layer, x, x_fp, nsamples, T, t, params, states);
    if (st == QH_OK) st = tune(&tu, W_fp, t->block->epochs(params), stats);
    tuner_free(&tu);
    stats->seconds = qh_seconds() - t0;
    return st;
}
