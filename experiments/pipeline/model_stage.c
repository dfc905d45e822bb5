/* model_stage.c -- the whole-model stage: a method's states of every decoder
 * linear tuned against the KL of the logits to the float model's (see
 * model_stage.h). */
#include "pipeline/model_stage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "model/forward.h"
#include "pipeline/sequential.h"
#include "qh_clock.h"
#include "qh_rng.h"

/* ---- the KL of one window and its gradient -------------------------------------- */

struct qh_kl_ws {
    size_t T, hidden, vocab;
    int n_layers;
    qh_forward_ws *fws;
    qh_block_tape *tape;
    float *xs;                       /* (n_layers + 1) x hidden x T: every block's input, then
                                        the last block's output */
    float *pl, *ql;                  /* vocab x T: float logits; the model's, then dlogits */
    float *dy, *dx, *y;              /* hidden x T */
};

void qh_kl_ws_free(qh_kl_ws *ws)
{
    if (!ws) return;
    qh_forward_ws_free(ws->fws);
    qh_block_tape_free(ws->tape);
    free(ws->xs);
    free(ws->pl);
    free(ws);
}

int qh_kl_ws_alloc(const qh_model *m, size_t T, qh_kl_ws **out)
{
    *out = NULL;
    qh_kl_ws *ws = calloc(1, sizeof *ws);
    if (!ws) QH_ERROR(QH_ENOMEM, "model stage: out of memory");
    ws->T = T;
    ws->hidden = (size_t)m->cfg.hidden;
    ws->vocab = (size_t)m->cfg.vocab_size;
    ws->n_layers = m->cfg.n_layers;
    size_t ht = ws->hidden * T, vt = ws->vocab * T;
    int st = qh_forward_ws_alloc(m, T, &ws->fws);
    if (st == QH_OK) st = qh_block_tape_alloc(m, T, &ws->tape);
    if (st == QH_OK) {
        ws->xs = malloc(((size_t)ws->n_layers + 4) * ht * sizeof(float));
        ws->pl = malloc(2 * vt * sizeof(float));
        if (!ws->xs || !ws->pl)
            QH_SET_ERROR(st, QH_ENOMEM, "model stage: cannot hold the logits and hidden states "
                         "of a window of %zu tokens", T);
    }
    if (st != QH_OK) {
        qh_kl_ws_free(ws);
        return st;
    }
    ws->ql = ws->pl + vt;
    ws->dy = ws->xs + ((size_t)ws->n_layers + 1) * ht;
    ws->dx = ws->dy + ht;
    ws->y = ws->dx + ht;
    *out = ws;
    return QH_OK;
}

/* Token-mean KL(p || q) of the T columns of the logits pl, ql (vocab x T), in
 * double; with grad, ql becomes scale (softmax(ql) − softmax(pl)) / T. */
static double kl_logits(const float *pl, float *ql, size_t V, size_t T, double scale, int grad)
{
    double total = 0.0;
    for (size_t t = 0; t < T; t++) {
        const float *a = pl + t * V;
        float *b = ql + t * V;
        double ma = a[0], mb = b[0], sa = 0.0, sb = 0.0;
        for (size_t v = 1; v < V; v++) { ma = fmax(ma, a[v]); mb = fmax(mb, b[v]); }
        for (size_t v = 0; v < V; v++) { sa += exp(a[v] - ma); sb += exp(b[v] - mb); }
        double la = ma + log(sa), lb = mb + log(sb), kl = 0.0;   /* log-normalisers */
        for (size_t v = 0; v < V; v++) {
            double lpa = a[v] - la, lpb = b[v] - lb, p = exp(lpa);
            kl += p * (lpa - lpb);
            if (grad) b[v] = (float)(scale * (exp(lpb) - p) / (double)T);
        }
        total += kl;
    }
    return total / (double)T;
}

int qh_model_kl(const qh_model *m, const qh_model *float_m, const int32_t *ids, size_t T,
                qh_kl_ws *ws, double scale, float *const *G, double *kl)
{
    if (T != ws->T || m->cfg.n_layers != ws->n_layers || (size_t)m->cfg.hidden != ws->hidden)
        QH_ERROR(QH_EINVAL, "model stage: a window of %zu tokens on a workspace of %zu", T, ws->T);
    size_t ht = ws->hidden * T;
    int L = ws->n_layers;
    QH_TRY(qh_forward_window(float_m, ids, T, ws->fws, ws->pl));
    QH_TRY(qh_forward_embed(m, ids, T, ws->fws, ws->xs));
    for (int l = 0; l < L; l++)
        QH_TRY(qh_block_forward_tape(m, l, ws->xs + (size_t)l * ht, T,
                                     ws->xs + (size_t)(l + 1) * ht, ws->tape));
    const float *h = ws->xs + (size_t)L * ht;
    QH_TRY(qh_forward_head(m, h, T, ws->fws, ws->ql));
    *kl = kl_logits(ws->pl, ws->ql, ws->vocab, T, scale, G != NULL);
    if (!isfinite(*kl)) QH_ERROR(QH_ENAN, "model stage: non-finite KL");
    if (!G) return QH_OK;
    /* the head (ql holds dlogits now; the logits are read only with soft-capping,
     * so recompute them there) */
    if (m->cfg.final_softcap > 0) {
        float *lg = ws->pl;           /* the float logits are no longer needed */
        QH_TRY(qh_forward_head(m, h, T, ws->fws, lg));
        QH_TRY(qh_head_backward(m, h, lg, ws->ql, T, ws->dy));
    } else {
        QH_TRY(qh_head_backward(m, h, NULL, ws->ql, T, ws->dy));
    }
    for (int l = L - 1; l >= 0; l--) {
        const float *x = ws->xs + (size_t)l * ht;
        QH_TRY(qh_block_forward_tape(m, l, x, T, ws->y, ws->tape));
        float *const *Gl = G + (size_t)l * QH_LIN_MAX;
        if (l == 0) {
            QH_TRY(qh_block_backward(m, l, ws->dy, ws->tape, Gl));
        } else {
            QH_TRY(qh_block_backward_input(m, l, x, ws->dy, ws->tape, Gl, ws->dx));
            float *t = ws->dy;
            ws->dy = ws->dx;
            ws->dx = t;
        }
    }
    return QH_OK;
}

/* ---- the stage ------------------------------------------------------------------- */

typedef struct {
    void *state;
    qh_linear *lin;
    size_t rows, cols;
    float *Gf;                       /* rows x cols, qh_linear.W's layout */
} model_linear;

typedef struct {
    qh_model *m;
    const qh_model *float_m;
    const int32_t *windows;
    size_t nsamples, T;
    const qh_block_ops *ops;
    const void *params;
    qh_block_plan plan;
    model_linear *lin;
    size_t n_lin;
    float **G;                       /* n_layers x QH_LIN_MAX, into lin[].Gf */
    qh_matd *What, *Gd;              /* double scratch of the largest linear (views resized) */
    size_t *order;
    qh_rng rng;
    qh_kl_ws *ws;
} model_tuner;

static void tuner_free(model_tuner *tu)
{
    for (size_t i = 0; i < tu->n_lin; i++) free(tu->lin[i].Gf);
    free(tu->lin);
    free(tu->G);
    qh_matd_free(tu->What);
    qh_matd_free(tu->Gd);
    free(tu->order);
    qh_kl_ws_free(tu->ws);
}

static int tuner_init(model_tuner *tu, void *const *states)
{
    qh_model *m = tu->m;
    size_t nl = (size_t)m->cfg.n_layers, max_mn = 1;
    tu->lin = calloc(nl * QH_LIN_MAX, sizeof *tu->lin);
    tu->G = calloc(nl * QH_LIN_MAX, sizeof *tu->G);
    tu->order = malloc(tu->nsamples * sizeof *tu->order);
    if (!tu->lin || !tu->G || !tu->order) QH_ERROR(QH_ENOMEM, "model stage: out of memory");
    for (size_t l = 0; l < nl; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            qh_linear *lin = &m->blocks[l].lin[k];
            if (!lin->W) continue;
            void *s = states ? states[l * QH_LIN_MAX + (size_t)k] : NULL;
            if (states && !s) continue;   /* no state: kept as it is (a skipped linear) */
            size_t sm = 0, sn = 0, rows = (size_t)lin->out, cols = (size_t)lin->in;
            if (s) tu->ops->state_shape(s, &sm, &sn);
            if (sm != rows || sn != cols)
                QH_ERROR(QH_EINVAL, "%s: no state of its %zu x %zu to tune end to end", lin->name,
                         rows, cols);
            model_linear *ml = &tu->lin[tu->n_lin++];
            *ml = (model_linear){ s, lin, rows, cols, calloc(rows * cols, sizeof(float)) };
            if (!ml->Gf) QH_ERROR(QH_ENOMEM, "%s: out of memory for its gradient", lin->name);
            tu->G[l * QH_LIN_MAX + (size_t)k] = ml->Gf;
            if (rows * cols > max_mn) max_mn = rows * cols;
        }
    tu->What = qh_matd_alloc(max_mn, 1);
    tu->Gd = qh_matd_alloc(max_mn, 1);
    if (!tu->What || !tu->Gd) QH_ERROR(QH_ENOMEM, "model stage: out of memory");
    return qh_kl_ws_alloc(m, tu->T, &tu->ws);
}

/* A rows x cols view of a scratch matrix. */
static qh_matd view(const qh_matd *buf, size_t rows, size_t cols)
{
    qh_matd v = *buf;
    v.rows = rows;
    v.cols = cols;
    v.ld = rows;
    v.owner = 0;
    return v;
}

/* Ŵ of every state into the model. */
static void write_all(model_tuner *tu)
{
    for (size_t i = 0; i < tu->n_lin; i++) {
        model_linear *ml = &tu->lin[i];
        qh_matd W = view(tu->What, ml->rows, ml->cols);
        tu->ops->reconstruct(tu->params, ml->state, &W);
        qh_linear_from_matd(ml->lin, &W);
    }
}

static int keep_all(model_tuner *tu, int action)
{
    for (size_t i = 0; i < tu->n_lin; i++) QH_TRY(tu->ops->keep(tu->lin[i].state, action));
    return QH_OK;
}

/* Mean KL over all windows at the current weights. */
static int full_kl(model_tuner *tu, double *kl)
{
    double s = 0.0, k;
    for (size_t w = 0; w < tu->nsamples; w++) {
        QH_TRY(qh_model_kl(tu->m, tu->float_m, tu->windows + w * tu->T, tu->T, tu->ws, 1.0, NULL,
                           &k));
        s += k;
    }
    *kl = s / (double)tu->nsamples;
    return QH_OK;
}

/* `batch` distinct windows drawn at random into order[0 .. batch). */
static void draw_windows(model_tuner *tu)
{
    qh_rng_pick(&tu->rng, tu->nsamples, (size_t)tu->plan.batch, tu->order);
}

static int minibatch_grad(model_tuner *tu, long step_no, double *kl)
{
    size_t b = (size_t)tu->plan.batch;
    for (size_t i = 0; i < tu->n_lin; i++)
        memset(tu->lin[i].Gf, 0, tu->lin[i].rows * tu->lin[i].cols * sizeof(float));
    double s = 0.0, k;
    for (size_t i = 0; i < b; i++) {
        QH_TRY(qh_model_kl(tu->m, tu->float_m, tu->windows + tu->order[i] * tu->T, tu->T, tu->ws,
                           1.0 / (double)b, tu->G, &k));
        s += k;
    }
    *kl = s / (double)b;
    if (!isfinite(*kl)) QH_ERROR(QH_ENAN, "model stage: non-finite KL at step %ld", step_no);
    return QH_OK;
}

static int step_all(model_tuner *tu, long step_no)
{
    for (size_t i = 0; i < tu->n_lin; i++) {
        model_linear *ml = &tu->lin[i];
        qh_matd G = view(tu->Gd, ml->rows, ml->cols);
        qh_matd_set_rowmajor_f(&G, ml->Gf);
        int st = tu->ops->model_step(tu->params, ml->state, &G, (int)step_no);
        if (st != QH_OK) {
            qh_error_prefix("%s: model stage step %ld", ml->lin->name, step_no);
            return st;
        }
    }
    return QH_OK;
}

static int tune(model_tuner *tu, const qh_model_stage_opts *opts, double t0,
                qh_model_stage_stats *stats)
{
    write_all(tu);
    QH_TRY(full_kl(tu, &stats->kl_init));
    double best = INFINITY;
    long s;
    for (s = 1; s <= tu->plan.steps; s++) {
        double kl;
        draw_windows(tu);
        QH_TRY(minibatch_grad(tu, s, &kl));
        if (kl < best) {
            best = kl;
            QH_TRY(keep_all(tu, QH_BLOCK_KEEP_SAVE));
        }
        QH_TRY(step_all(tu, s));
        write_all(tu);
        if (opts && opts->progress)
            opts->progress(s, tu->plan.steps, kl, best, qh_seconds() - t0, opts->user);
    }
    stats->steps = (size_t)(s - 1);
    stats->best_step_kl = tu->plan.steps > 0 ? best : NAN;
    if (tu->plan.steps > 0) {
        QH_TRY(keep_all(tu, QH_BLOCK_KEEP_RESTORE));
        write_all(tu);
    }
    return full_kl(tu, &stats->kl_final);
}

int qh_model_stage_tune(qh_model *m, const qh_model *float_m, const int32_t *windows,
                        size_t nsamples, size_t T, const qh_method_type *t, const void *params,
                        void *const *states, const qh_model_stage_opts *opts,
                        qh_model_stage_stats *stats)
{
    double t0 = qh_seconds();
    memset(stats, 0, sizeof *stats);
    stats->best_step_kl = NAN;
    if (!t || !t->block || !t->block->model_plan || !t->block->model_step || !t->block->keep)
        QH_ERROR(QH_EINVAL, "model stage: method %s has no whole-model stage",
                 t ? t->name : "(none)");
    if (nsamples < 1 || T < 1)
        QH_ERROR(QH_EINVAL, "model stage: %zu windows of %zu tokens", nsamples, T);
    if (float_m->cfg.n_layers != m->cfg.n_layers || float_m->cfg.hidden != m->cfg.hidden ||
        float_m->cfg.vocab_size != m->cfg.vocab_size)
        QH_ERROR(QH_EINVAL, "model stage: the float model's shapes differ from the model's");
    QH_TRY(qh_model_acquire_all(m));               /* it tunes every block at once */
    QH_TRY(qh_model_acquire_all(float_m));
    model_tuner tu = { .m = m, .float_m = float_m, .windows = windows, .nsamples = nsamples,
                       .T = T, .ops = t->block, .params = params,
                       .rng = qh_rng_stream(opts ? opts->seed : 0, 0, QH_RNG_MODEL_DRAW) };
    t->block->model_plan(params, &tu.plan);
    if (tu.plan.batch < 1 || tu.plan.steps < 0)
        QH_ERROR(QH_EINVAL, "%s: model plan with batch %d, %ld steps", t->name, tu.plan.batch,
                 tu.plan.steps);
    if ((size_t)tu.plan.batch > nsamples) tu.plan.batch = (int)nsamples;
    int st = tuner_init(&tu, states);
    if (st == QH_OK) st = tune(&tu, opts, t0, stats);
    tuner_free(&tu);
    stats->seconds = qh_seconds() - t0;
    return st;
}
