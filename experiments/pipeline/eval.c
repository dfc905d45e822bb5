/* eval.c -- windowed perplexity (see eval.h for the protocol). */
#include "pipeline/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "qh_clock.h"

double qh_logsumexp(const float *x, size_t n)
{
    float mx = x[0];
    for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (!isfinite(mx)) return (double)mx;       /* +Inf or NaN propagates */
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += exp((double)x[i] - (double)mx);
    return (double)mx + log(s);
}

int qh_window_nll(const float *logits, size_t vocab, const int32_t *ids, size_t T, double *nll)
{
    QH_ASSERT(T >= 2);
    double sum = 0.0;
    for (size_t t = 0; t + 1 < T; t++) {
        const float *col = logits + t * vocab;
        double v = qh_logsumexp(col, vocab) - (double)col[ids[t + 1]];
        if (!isfinite(v))
            QH_ERROR(QH_ENAN, "eval: non-finite log-probability at position %zu", t);
        sum += v;
    }
    *nll = sum / (double)(T - 1);
    return QH_OK;
}

void qh_eval_result_free(qh_eval_result *res)
{
    if (!res) return;
    free(res->window_nll);
    res->window_nll = NULL;
}

static int check_eval_args(const qh_model *m, size_t n_ids, size_t seqlen)
{
    if (seqlen < 2)
        QH_ERROR(QH_EINVAL, "eval: seqlen %zu must be at least 2", seqlen);
    if (seqlen > (size_t)m->cfg.max_pos)
        QH_ERROR(QH_EINVAL, "eval: seqlen %zu exceeds the model's max_position_embeddings %d",
                 seqlen, m->cfg.max_pos);
    if (n_ids < seqlen)
        QH_ERROR(QH_EINVAL, "eval: %zu tokens are fewer than one window of %zu", n_ids, seqlen);
    return QH_OK;
}

int qh_eval_ppl(const qh_model *m, const int32_t *ids, size_t n_ids, size_t seqlen,
                size_t max_windows, qh_eval_progress_fn progress, void *user,
                qh_eval_result *res)
{
    memset(res, 0, sizeof *res);
    QH_TRY(check_eval_args(m, n_ids, seqlen));
    int st = QH_OK;
    qh_forward_ws *ws = NULL;
    float *logits = NULL;
    double *nll = NULL, t0 = 0.0, sum = 0.0;
    size_t total = n_ids / seqlen;
    size_t n_win = max_windows && max_windows < total ? max_windows : total;
    size_t vocab = (size_t)m->cfg.vocab_size;

    st = qh_forward_ws_alloc(m, seqlen, &ws);
    if (st != QH_OK) goto cleanup;
    logits = malloc(vocab * seqlen * sizeof(float));
    nll = malloc(n_win * sizeof(double));
    if (!logits || !nll) {
        QH_SET_ERROR(st, QH_ENOMEM, "eval: cannot allocate logits for %zu x %zu", vocab, seqlen);
        goto cleanup;
    }
    t0 = qh_seconds();
    for (size_t w = 0; w < n_win; w++) {
        const int32_t *win = ids + w * seqlen;
        st = qh_forward_window(m, win, seqlen, ws, logits);
        if (st == QH_OK) st = qh_window_nll(logits, vocab, win, seqlen, &nll[w]);
        if (st != QH_OK) {
            qh_error_prefix("window %zu", w);
            goto cleanup;
        }
        sum += nll[w];
        if (progress) progress(w + 1, n_win, qh_seconds() - t0, user);
    }
    res->seconds = qh_seconds() - t0;
    res->mean_nll = sum / (double)n_win;
    res->ppl = exp(res->mean_nll);
    res->seqlen = seqlen;
    res->windows = n_win;
    res->windows_total = total;
    res->tokens = n_win * seqlen;
    res->window_nll = nll;
    nll = NULL;
cleanup:
    free(nll);
    free(logits);
    qh_forward_ws_free(ws);
    return st;
}
