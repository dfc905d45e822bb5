/* aqlm_finetune.c -- AQLM's block fine-tuning (see aqlm_finetune.h). */
#include "aqlm_finetune.h"

#include <stdlib.h>
#include <string.h>

#include "qh_adam.h"
#include "qh_block_helpers.h"

#define FT_BETA1 0.9
#define FT_BETA2 0.95

/* ---- the state ---------------------------------------------------------------- */

void qh_aqlm_state_free(qh_aqlm_state *s)
{
    if (!s) return;
    free(s->codes);
    free(s->cb);
    memset(s, 0, sizeof *s);
}

static size_t mkg(const qh_aqlm_state *s) { return s->view.M * s->view.K * s->view.g; }

/* One block of doubles: cb, cb_use, cb_saved, g_cb, 2 moments (6·mkg); scale,
 * scale_use, scale_saved, g_scale, 2 moments (6·m); U (m·n). */
static int state_alloc(qh_aqlm_state *s, const qh_aqlm_ctx *c)
{
    size_t m = c->m, K = c->M * c->K * c->g, ncodes = c->m * c->J * c->M;
    int same = s->cb && s->view.m == m && s->view.n == c->n && mkg(s) == K &&
               s->view.J * s->view.M == c->J * c->M;
    if (!same) {
        qh_aqlm_state_free(s);
        s->codes = malloc(ncodes * sizeof *s->codes);
        s->cb = malloc((6 * K + 6 * m + m * c->n) * sizeof(double));
        if (!s->codes || !s->cb) {
            qh_aqlm_state_free(s);
            QH_ERROR(QH_ENOMEM, "aqlm fine-tuning state of %zu x %zu", m, c->n);
        }
    }
    s->cb_use = s->cb + K;
    s->cb_saved = s->cb_use + K;
    s->g_cb = s->cb_saved + K;
    s->mom = s->g_cb + K;                            /* cb m, v (2K), then scale m, v (2m) */
    s->scale = s->mom + 2 * K + 2 * m;
    s->scale_use = s->scale + m;
    s->scale_saved = s->scale_use + m;
    s->g_scale = s->scale_saved + m;
    s->U = s->g_scale + m;
    return QH_OK;
}

/* cb_use, scale_use from the masters (FP16-rounded when fp16). */
static void refresh_use(qh_aqlm_state *s)
{
    size_t K = mkg(s), m = s->view.m;
    for (size_t i = 0; i < K; i++) s->cb_use[i] = s->fp16 ? qh_aqlm_round_fp16(s->cb[i]) : s->cb[i];
    for (size_t r = 0; r < m; r++)
        s->scale_use[r] = s->fp16 ? qh_aqlm_round_fp16(s->scale[r]) : s->scale[r];
}

int qh_aqlm_state_fill(qh_aqlm_state *s, const qh_aqlm_ctx *c, int fp16)
{
    QH_TRY(state_alloc(s, c));
    size_t ncodes = c->m * c->J * c->M;
    memcpy(s->codes, c->codes, ncodes * sizeof *s->codes);
    memcpy(s->cb, c->cb, c->M * c->K * c->g * sizeof(double));
    memcpy(s->scale, c->scale, c->m * sizeof(double));
    qh_aqlm_ctx v = { .m = c->m, .n = c->n, .g = c->g, .J = c->J, .M = c->M, .B = c->B, .K = c->K,
                      .codes = s->codes };
    s->view = v;
    s->fp16 = fp16;
    refresh_use(s);
    return QH_OK;
}

void qh_aqlm_state_grad(qh_aqlm_state *s, const qh_matd *G)
{
    size_t m = s->view.m, n = s->view.n;
    QH_ASSERT(G->rows == m && G->cols == n && G->ld == m);
    qh_aqlm_scatter_with(&s->view, s->scale_use, G->data, 1.0, s->g_cb);
    qh_aqlm_decode_with(&s->view, s->cb_use, NULL, s->U);
    memset(s->g_scale, 0, m * sizeof *s->g_scale);
    for (size_t col = 0; col < n; col++)
        for (size_t r = 0; r < m; r++) s->g_scale[r] += G->data[r + col * m] * s->U[r + col * m];
}

/* ---- the block ops ---------------------------------------------------------------- */

static int ft_wants(const void *params) { return ((const qh_aqlm_params *)params)->finetune > 0; }

static void ft_plan(const void *params, size_t nsamples, qh_block_plan *out)
{
    const qh_aqlm_params *p = params;
    /* The stage caps a batch larger than the windows (check_plan in
     * block_stage.c); a pass is one step then either way: ceil(n / b) = 1. */
    size_t batch = (size_t)p->ft_batch;
    long per_pass = (long)((nsamples + batch - 1) / batch);
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_MSE, .steps = (long)p->finetune * per_pass,
                            .batch = p->ft_batch, .draw = QH_BLOCK_DRAW_SEQUENTIAL,
                            .patience = p->ft_patience, .rel_tol = 0.0 };
}

static void reconstruct_state(const qh_aqlm_state *s, qh_matd *What)
{
    QH_ASSERT(What->ld == s->view.m);
    qh_aqlm_decode_with(&s->view, s->cb_use, s->scale_use, What->data);
}

QH_BLOCK_STATE_OPS(ft, qh_aqlm_state, qh_aqlm_state_free, s->cb, s->view.m, s->view.n,
                   reconstruct_state)

static int ft_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    const qh_aqlm_params *p = params;
    qh_aqlm_state *s = state;
    size_t K = mkg(s), m = s->view.m;
    qh_aqlm_state_grad(s, G);
    qh_adam_vector v[] = { { s->cb, s->g_cb, K, p->ft_lr }, { s->scale, s->g_scale, m, p->ft_lr } };
    qh_block_adam_step(v, 2, s->mom, step_no, FT_BETA1, FT_BETA2);
    refresh_use(s);
    return QH_OK;
}

static int ft_keep(void *state, int action)
{
    qh_aqlm_state *s = state;
    size_t K = mkg(s), m = s->view.m;
    if (action == QH_BLOCK_KEEP_SAVE) {
        memcpy(s->cb_saved, s->cb, K * sizeof(double));
        memcpy(s->scale_saved, s->scale, m * sizeof(double));
    } else {
        memcpy(s->cb, s->cb_saved, K * sizeof(double));
        memcpy(s->scale, s->scale_saved, m * sizeof(double));
        refresh_use(s);
    }
    return QH_OK;
}

const qh_block_ops qh_aqlm_block_ops = {
    .setting = "finetune > 0",
    .wants = ft_wants,
    .plan = ft_plan,
    QH_BLOCK_STATE_FIELDS(ft),
    .step = ft_step,
    .keep = ft_keep,
};
