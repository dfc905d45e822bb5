/* eval.c -- windowed perplexity (see eval.h for the protocol). */
#include "pipeline/eval.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/vexp.h"
#include "qh_clock.h"

double qh_logsumexp(const float *x, size_t n)
{
    float mx = x[0];
    for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (!isfinite(mx)) return (double)mx;       /* +Inf or NaN propagates */
    return (double)mx + log(qh_vexp_sum_d(x, n, (double)mx));   /* vectorised, threaded by the caller */
}

/* lse[t] = qh_logsumexp of column t of logits (vocab x n), t < n. */
typedef struct { const float *logits; size_t vocab; double *lse; } lse_task;

static void lse_columns(void *arg, size_t lo, size_t hi)
{
    lse_task *a = arg;
    for (size_t t = lo; t < hi; t++) a->lse[t] = qh_logsumexp(a->logits + t * a->vocab, a->vocab);
}

void qh_window_lse(const qh_forward_ws *ws, const float *logits, size_t vocab, size_t T,
                   double *lse)
{
    lse_task a = { logits, vocab, lse };
    if (ws) qh_forward_spans(ws, T - 1, (T - 1) * vocab, lse_columns, &a);
    else lse_columns(&a, 0, T - 1);
}

static double column_lse(const float *col, size_t vocab, const double *lse, size_t t)
{
    return lse ? lse[t] : qh_logsumexp(col, vocab);
}

int qh_window_nll(const float *logits, size_t vocab, const int32_t *ids, size_t T,
                  const double *lse, double *nll)
{
    QH_ASSERT(T >= 2);
    double sum = 0.0;
    for (size_t t = 0; t + 1 < T; t++) {
        const float *col = logits + t * vocab;
        double v = column_lse(col, vocab, lse, t) - (double)col[ids[t + 1]];
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
    free(res->fid.window_kl);
    free(res->fid.window_agree);
    free(res->fid.window_dp);
    free(res->fid.window_nll_float);
    res->fid.window_kl = res->fid.window_agree = res->fid.window_dp = res->fid.window_nll_float = NULL;
}

/* ---- fidelity against the float model -------------------------------------------- */

/* Order of the top k: higher logit first, then lower id. */
static int worse(const float *col, int32_t a, int32_t b)
{
    return col[a] < col[b] || (col[a] == col[b] && a > b);
}

/* Min-heap (by `worse`) of k ids: the root is the worst kept. */
static void sift_down(const float *col, int32_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(col, h[l], h[m])) m = l;
        if (r < n && worse(col, h[r], h[m])) m = r;
        if (m == i) return;
        int32_t t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

static void top_k(const float *col, size_t vocab, size_t k, int32_t *out)
{
    for (size_t i = 0; i < k; i++) out[i] = (int32_t)i;
    for (size_t i = k / 2; i-- > 0;) sift_down(col, out, k, i);
    for (size_t v = k; v < vocab; v++)
        if (worse(col, out[0], (int32_t)v)) {
            out[0] = (int32_t)v;
            sift_down(col, out, k, 0);
        }
    for (size_t n = k; n > 1; n--) {          /* heap sort: worst to the end, best first */
        int32_t t = out[0]; out[0] = out[n - 1]; out[n - 1] = t;
        sift_down(col, out, n - 1, 0);
    }
}

void qh_float_window_from_logits(const float *logits, size_t vocab, const int32_t *ids, size_t T,
                                 size_t k, int32_t *idx, float *logp, float *logp_true)
{
    for (size_t t = 0; t + 1 < T; t++) {
        const float *col = logits + t * vocab;
        double lse = qh_logsumexp(col, vocab);
        int32_t *ix = idx + t * k;
        top_k(col, vocab, k, ix);
        for (size_t j = 0; j < k; j++) logp[t * k + j] = (float)((double)col[ix[j]] - lse);
        logp_true[t] = (float)((double)col[ids[t + 1]] - lse);
    }
}

static size_t kl_bin(double kl)
{
    if (!(kl >= 1e-10)) return 0;
    double b = floor((log10(kl) - QH_KL_HIST_LO) * QH_KL_HIST_PER_DECADE);
    return b >= QH_KL_HIST_BINS - 2 ? QH_KL_HIST_BINS - 1 : 1 + (size_t)b;
}

double qh_fidelity_quantile(const qh_fidelity_acc *acc, double p)
{
    if (!acc->n_tokens) return NAN;
    uint64_t need = (uint64_t)ceil(p * (double)acc->n_tokens), cum = 0;
    if (need < 1) need = 1;
    for (size_t b = 0; b < QH_KL_HIST_BINS; b++) {
        cum += acc->hist[b];
        if (cum >= need) {
            if (b == 0) return 0.0;
            if (b == QH_KL_HIST_BINS - 1) return acc->kl_max;
            return pow(10.0, QH_KL_HIST_LO + (double)b / QH_KL_HIST_PER_DECADE);
        }
    }
    return acc->kl_max;
}

void qh_mean_ci95(const double *x, size_t n, double *mean, double *ci)
{
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    double m = n ? s / (double)n : NAN;
    for (size_t i = 0; i < n; i++) ss += (x[i] - m) * (x[i] - m);
    *mean = m;
    *ci = n >= 2 ? 1.96 * sqrt(ss / (double)(n - 1)) / sqrt((double)n) : 0.0;
}

int qh_window_fidelity(const float *logits, size_t vocab, const int32_t *ids, size_t T,
                       const double *lse_t, const qh_float_window *ref, qh_fidelity_acc *acc,
                       double *nll, double *kl, double *agree, double *dp, double *nll_float)
{
    QH_ASSERT(T >= 2 && ref->k >= 1 && ref->k <= vocab);
    size_t k = ref->k;
    double s_nll = 0, s_kl = 0, s_dp = 0, s_nf = 0;
    size_t n_agree = 0;
    for (size_t t = 0; t + 1 < T; t++) {
        const float *col = logits + t * vocab;
        double lse = column_lse(col, vocab, lse_t, t);
        double v = lse - (double)col[ids[t + 1]];
        if (!isfinite(v))
            QH_ERROR(QH_ENAN, "eval: non-finite log-probability at position %zu", t);
        s_nll += v;
        size_t am = 0;                            /* first maximum, as top_k's tie order */
        for (size_t i = 1; i < vocab; i++) if (col[i] > col[am]) am = i;
        const int32_t *ix = ref->idx + t * k;
        const float *lp = ref->logp + t * k;
        double P = 0, Q = 0, d = 0;
        for (size_t j = 0; j < k; j++) {
            float lq = (float)((double)col[ix[j]] - lse);
            double pj = exp((double)lp[j]);
            P += pj;
            Q += exp((double)lq);
            d += pj * ((double)lp[j] - (double)lq);
        }
        double rp = 1.0 - P, rq = 1.0 - Q;
        if (k < vocab && rp > 0) {
            d += rp * log(rp / (rq > DBL_MIN ? rq : DBL_MIN));
            acc->tail_sum += rp;
        }
        float lq_true = (float)((double)col[ids[t + 1]] - lse);
        double dpt = exp((double)lq_true) - exp((double)ref->logp_true[t]);
        s_kl += d;
        s_dp += dpt;
        s_nf -= (double)ref->logp_true[t];
        n_agree += (int32_t)am == ix[0];
        acc->n_tokens++;
        acc->hist[kl_bin(d)]++;
        if (d > acc->kl_max) acc->kl_max = d;
        acc->dp_sum += dpt;
        acc->dp_sq += dpt * dpt;
    }
    double n = (double)(T - 1);
    *nll = s_nll / n;
    *kl = s_kl / n;
    *agree = (double)n_agree / n;
    *dp = s_dp / n;
    *nll_float = s_nf / n;
    return QH_OK;
}

static void fidelity_finish(qh_eval_fidelity *f, const qh_fidelity_acc *acc, const double *nll,
                            size_t n_win, size_t k)
{
    f->present = 1;
    f->topk = k;
    qh_mean_ci95(f->window_kl, n_win, &f->kl_mean, &f->kl_ci);
    qh_mean_ci95(f->window_agree, n_win, &f->agree, &f->agree_ci);
    qh_mean_ci95(f->window_dp, n_win, &f->dp_mean, &f->dp_ci);
    f->kl_p99 = qh_fidelity_quantile(acc, 0.99);
    f->kl_max = acc->kl_max;
    double nt = (double)acc->n_tokens;
    f->dp_sd = nt > 1 ? sqrt(fmax(0.0, (acc->dp_sq - acc->dp_sum * acc->dp_sum / nt) / (nt - 1))) : 0.0;
    f->tail_mass = acc->tail_sum / nt;
    double mf = 0, *diff = malloc(n_win * sizeof *diff), md = NAN, cd = NAN;
    for (size_t w = 0; w < n_win; w++) mf += f->window_nll_float[w];
    f->ppl_float = exp(mf / (double)n_win);
    if (diff) {
        for (size_t w = 0; w < n_win; w++) diff[w] = nll[w] - f->window_nll_float[w];
        qh_mean_ci95(diff, n_win, &md, &cd);
        free(diff);
    }
    f->ppl_ratio = exp(md);
    f->ppl_ratio_lo = exp(md - cd);
    f->ppl_ratio_hi = exp(md + cd);
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
    return qh_eval_ppl_ref(m, ids, n_ids, seqlen, max_windows, NULL, NULL, progress, user, res);
}

int qh_eval_ppl_ref(const qh_model *m, const int32_t *ids, size_t n_ids, size_t seqlen,
                    size_t max_windows, qh_float_ref_fn ref, void *ref_user,
                    qh_eval_progress_fn progress, void *user, qh_eval_result *res)
{
    memset(res, 0, sizeof *res);
    QH_TRY(check_eval_args(m, n_ids, seqlen));
    int st = QH_OK;
    qh_forward_ws *ws = NULL;
    float *logits = NULL;
    double *nll = NULL, *lse = NULL, t0 = 0.0, sum = 0.0;
    qh_eval_fidelity *f = &res->fid;
    qh_fidelity_acc *acc = NULL;
    size_t k = 0;
    size_t total = n_ids / seqlen;
    size_t n_win = max_windows && max_windows < total ? max_windows : total;
    size_t vocab = (size_t)m->cfg.vocab_size;

    st = qh_forward_ws_alloc(m, seqlen, &ws);
    if (st != QH_OK) goto cleanup;
    logits = malloc(vocab * seqlen * sizeof(float));
    nll = malloc(n_win * sizeof(double));
    lse = malloc(seqlen * sizeof(double));
    if (ref) {
        acc = calloc(1, sizeof *acc);
        f->window_kl = malloc(n_win * sizeof(double));
        f->window_agree = malloc(n_win * sizeof(double));
        f->window_dp = malloc(n_win * sizeof(double));
        f->window_nll_float = malloc(n_win * sizeof(double));
    }
    if (!logits || !nll || !lse || (ref && (!acc || !f->window_kl || !f->window_agree || !f->window_dp
                                    || !f->window_nll_float))) {
        QH_SET_ERROR(st, QH_ENOMEM, "eval: cannot allocate logits for %zu x %zu", vocab, seqlen);
        goto cleanup;
    }
    t0 = qh_seconds();
    for (size_t w = 0; w < n_win; w++) {
        const int32_t *win = ids + w * seqlen;
        st = qh_forward_window(m, win, seqlen, ws, logits);
        if (st == QH_OK) qh_window_lse(ws, logits, vocab, seqlen, lse);
        if (st == QH_OK && ref) {
            qh_float_window fw;
            st = ref(w, &fw, ref_user);
            k = fw.k;
            if (st == QH_OK)
                st = qh_window_fidelity(logits, vocab, win, seqlen, lse, &fw, acc, &nll[w],
                                        &f->window_kl[w], &f->window_agree[w], &f->window_dp[w],
                                        &f->window_nll_float[w]);
        } else if (st == QH_OK) {
            st = qh_window_nll(logits, vocab, win, seqlen, lse, &nll[w]);
        }
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
    if (ref) fidelity_finish(f, acc, nll, n_win, k);
    nll = NULL;
cleanup:
    if (st != QH_OK) {
        free(f->window_kl); free(f->window_agree); free(f->window_dp); free(f->window_nll_float);
        memset(f, 0, sizeof *f);
    }
    free(acc);
    free(nll);
    free(lse);
    free(logits);
    qh_forward_ws_free(ws);
    return st;
}
