/* transform.c -- smoothing and rotation before calibration (see transform.h). */
#include "pipeline/transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"

typedef struct {
    const qh_model *m;
    double **a;
} absmax_ctx;

static int absmax_hook(int layer, int kind, const float *X, size_t in, size_t T, void *user)
{
    absmax_ctx *c = user;
    int gated = c->m->cfg.features.gated_mlp;
    int g = kind == QH_LIN_Q ? 0 : kind == (gated ? QH_LIN_GATE : QH_LIN_UP) ? 1
          : kind == QH_LIN_DOWN ? 2 : kind == QH_LIN_O ? 3 : -1;
    if (g < 0) return QH_OK;                   /* k, v, up of a gated MLP: same input */
    double *a = c->a[(size_t)layer * QH_ABSMAX_GROUPS + (size_t)g];
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < in; j++) a[j] = fmax(a[j], fabs((double)X[t * in + j]));
    return QH_OK;
}

void qh_absmax_free(double **a, const qh_model *m)
{
    if (!a) return;
    for (size_t i = 0; i < (size_t)m->cfg.n_layers * QH_ABSMAX_GROUPS; i++) free(a[i]);
    free(a);
}

int qh_absmax_collect(qh_model *m, const int32_t *windows, size_t nsamples, size_t seqlen,
                      double ***out, size_t dims[QH_ABSMAX_GROUPS])
{
    const qh_model_config *c = &m->cfg;
    size_t L = (size_t)c->n_layers;
    dims[0] = dims[1] = (size_t)c->hidden;
    dims[2] = (size_t)c->ffn_dim;
    dims[3] = (size_t)c->n_heads * (size_t)c->head_dim;
    *out = NULL;
    double **a = calloc(L * QH_ABSMAX_GROUPS, sizeof *a);
    if (!a) QH_ERROR(QH_ENOMEM, "activation maxima: out of memory");
    for (size_t i = 0; i < L * QH_ABSMAX_GROUPS; i++)
        if (!(a[i] = calloc(dims[i % QH_ABSMAX_GROUPS], sizeof **a))) {
            qh_absmax_free(a, m);
            QH_ERROR(QH_ENOMEM, "activation maxima: out of memory");
        }
    const qh_act_quant *aq = m->act_quant;
    m->act_quant = NULL;
    qh_forward_ws *ws = NULL;
    int st = qh_forward_ws_alloc(m, seqlen, &ws);
    absmax_ctx ctx = { m, a };
    qh_forward_hook hook = { absmax_hook, &ctx };
    for (size_t w = 0; st == QH_OK && w < nsamples; w++) {
        st = qh_forward_embed(m, windows + w * seqlen, seqlen, ws, ws->x);
        for (int l = 0; st == QH_OK && l < c->n_layers; l++)
            st = qh_forward_block(m, l, ws->x, seqlen, ws, &hook);
    }
    qh_forward_ws_free(ws);
    m->act_quant = aq;
    if (st != QH_OK) {
        qh_absmax_free(a, m);
        return st;
    }
    *out = a;
    return QH_OK;
}

int qh_transform_apply(qh_model *m, const qh_model_transform *tf, const int32_t *windows,
                       size_t nsamples, size_t seqlen, uint64_t seed, const char *who)
{
    if (tf->smooth_alpha > 0 || tf->rotate)      /* they rewrite every block */
        QH_TRY(qh_model_acquire_all(m));
    if (tf->smooth_alpha > 0) {
        double **a = NULL;
        size_t dims[QH_ABSMAX_GROUPS];
        QH_TRY(qh_absmax_collect(m, windows, nsamples, seqlen, &a, dims));
        int st = qh_smooth_model(m, tf->smooth_alpha, (const double *const *)a, who);
        qh_absmax_free(a, m);
        QH_TRY(st);
    }
    if (tf->rotate) QH_TRY(qh_rotate_model(m, seed, who));
    return QH_OK;
}
