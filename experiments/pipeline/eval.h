/* eval.h -- perplexity of a causal language model on a token stream.
 *
 * Protocol (models/README.md): the ids are cut into floor(N / seqlen)
 * non-overlapping windows (the remainder is dropped); each window is scored
 * on its own from position 0; a window's NLL is the mean over its seqlen-1
 * next-token predictions of logsumexp(logits) - logit(true next token),
 * computed in double from the float32 logits; ppl = exp(mean of the window
 * NLLs).  Only one window's logits (vocab x seqlen) are held at a time.
 */
#ifndef QH_EVAL_H
#define QH_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "model/forward.h"
#include "model/model.h"
#include "qh_error.h"

/* Fidelity against the float model on the same windows (docs/metrics.md).
 * Per token t (each of a window's seqlen-1 predictions), with p the float
 * model's and q this model's next-token distribution:
 *   KL_t = D_KL(p || q), from the float reference's top k log-probabilities
 *          and the tail mass outside them (exact when k = vocab, otherwise
 *          the KL of the (k+1)-outcome coarsening: a lower bound);
 *   agree_t = [argmax q == argmax p];
 *   dp_t = q(true next) - p(true next).
 * Each is averaged per window; a confidence interval is mean +- 1.96 x the
 * standard error of the window means (windows are the independent unit).
 * The 99th percentile of KL_t over all tokens comes from a histogram of
 * QH_KL_HIST_PER_DECADE bins per decade over [1e-10, 1e4) (upper bin edge:
 * relative resolution 10^(1/50) = 4.7 %); the maximum is exact.  The ppl
 * ratio's interval is exp(mean +- 1.96 se) of the window NLL differences. */
#define QH_KL_HIST_LO (-10)          /* log10 of the lowest bin edge */
#define QH_KL_HIST_HI 4              /* log10 of the highest bin edge */
#define QH_KL_HIST_PER_DECADE 50
#define QH_KL_HIST_BINS ((QH_KL_HIST_HI - QH_KL_HIST_LO) * QH_KL_HIST_PER_DECADE + 2)

typedef struct {
    int present;                     /* 1: the fields below are filled */
    size_t topk;                     /* float log-probs kept per token (vocab: exact) */
    double kl_mean, kl_ci;           /* mean KL per token (nats), 1.96 se over windows */
    double kl_p99, kl_max;           /* over all tokens: histogram percentile, exact max */
    double agree, agree_ci;          /* top-1 agreement */
    double dp_mean, dp_ci, dp_sd;    /* delta p of the true token; dp_sd: sd over tokens */
    double ppl_float;                /* the float model's ppl on the same windows */
    double ppl_ratio, ppl_ratio_lo, ppl_ratio_hi;
    double tail_mass;                /* mean float probability outside the top k */
    double *window_kl, *window_agree, *window_dp, *window_nll_float;   /* (windows); owned */
} qh_eval_fidelity;

/* The float model's reference for one window: per prediction t < T-1, its
 * top k token ids (descending log-prob, ties by lower id) and log-probs,
 * row t at idx[t*k], and the log-prob of the true next token. */
typedef struct {
    size_t k;
    const int32_t *idx;              /* (T-1) x k */
    const float *logp;               /* (T-1) x k */
    const float *logp_true;          /* T-1 */
} qh_float_window;

/* Streamed accumulators over windows (no per-token storage). */
typedef struct {
    size_t n_tokens;
    double kl_max, dp_sum, dp_sq, tail_sum;
    uint64_t hist[QH_KL_HIST_BINS];
} qh_fidelity_acc;

typedef struct {
    double ppl;                      /* exp(mean_nll) */
    double mean_nll;                 /* mean of window_nll */
    size_t seqlen;
    size_t windows;                  /* windows scored (<= windows_total) */
    size_t windows_total;            /* floor(n_ids / seqlen) */
    size_t tokens;                   /* windows * seqlen */
    double seconds;                  /* wall time of the forward passes */
    double *window_nll;              /* (windows) mean NLL per window; owned, see _free */
    qh_eval_fidelity fid;            /* against the float model; fid.present 0 without a reference */
} qh_eval_result;

/* Called after each window: done of total windows, seconds since the start. */
typedef void (*qh_eval_progress_fn)(size_t done, size_t total, double seconds, void *user);

/* Perplexity of m on ids[0..n_ids) with windows of seqlen tokens; at most
 * max_windows windows (0: all).  progress may be NULL.  On QH_OK *res holds a
 * new window_nll array (release with qh_eval_result_free).  Statuses:
 * QH_EINVAL seqlen < 2, seqlen > max_position_embeddings, fewer than seqlen
 * ids, or an id outside the vocabulary; QH_ENOMEM; QH_ENAN non-finite logits
 * (the message names the window and position). */
int qh_eval_ppl(const qh_model *m, const int32_t *ids, size_t n_ids, size_t seqlen,
                size_t max_windows, qh_eval_progress_fn progress, void *user,
                qh_eval_result *res) QH_MUST_CHECK;
void qh_eval_result_free(qh_eval_result *res);          /* frees window_nll; NULL: no-op */

/* log(sum_i exp(x[i])) of n >= 1 floats, in double with max subtraction;
 * the exps are vexp.h's qh_vexp_d, summed in eight partial sums. */
double qh_logsumexp(const float *x, size_t n);

/* lse[t] = qh_logsumexp(column t of logits (vocab x T)) for t < T - 1, the
 * positions a window scores, T >= 2: over the workspace's threads in spans
 * of positions (ws NULL: on the caller), each value as one thread computes
 * it, so the NLL does not depend on the split. */
void qh_window_lse(const qh_forward_ws *ws, const float *logits, size_t vocab, size_t T,
                   double *lse);

/* Mean next-token NLL of one window: logits (vocab x T) from the forward pass
 * of ids[0..T), T >= 2; lse: qh_window_lse's values for these logits, or NULL
 * to compute them here.  Returns QH_OK and *nll, or QH_ENAN at the first
 * non-finite log-probability (position in the message). */
int qh_window_nll(const float *logits, size_t vocab, const int32_t *ids, size_t T,
                  const double *lse, double *nll) QH_MUST_CHECK;

/* The float reference of one window from its logits (vocab x T): top k per
 * position (k <= vocab), as a cache stores it.  idx, logp: (T-1) x k;
 * logp_true: T-1, caller allocated.  Log-probs are (float)(logit - lse) with
 * lse in double, the same expression qh_window_fidelity uses, so identical
 * logits give KL exactly 0. */
void qh_float_window_from_logits(const float *logits, size_t vocab, const int32_t *ids, size_t T,
                                 size_t k, int32_t *idx, float *logp, float *logp_true);

/* One window's NLL (as qh_window_nll, lse as there) and fidelity against ref, added to acc;
 * window means into *kl, *agree, *dp, and the float NLL into *nll_float.
 * Return: QH_OK; QH_ENAN (non-finite log-probability; position named). */
int qh_window_fidelity(const float *logits, size_t vocab, const int32_t *ids, size_t T,
                       const double *lse, const qh_float_window *ref, qh_fidelity_acc *acc,
                       double *nll, double *kl, double *agree, double *dp,
                       double *nll_float) QH_MUST_CHECK;

/* The p-quantile (0 < p < 1) of the accumulated KL values: the upper edge of
 * the histogram bin holding the ceil(p n)-th smallest (0 when it lies below
 * 1e-10). */
double qh_fidelity_quantile(const qh_fidelity_acc *acc, double p);

/* mean and 1.96 x sd / sqrt(n) of x[0..n) (ci 0 when n < 2). */
void qh_mean_ci95(const double *x, size_t n, double *mean, double *ci);

/* Supplies the float reference of window w (0-based) of the evaluation. */
typedef int (*qh_float_ref_fn)(size_t w, qh_float_window *out, void *user);

/* As qh_eval_ppl, and with ref non-NULL also the fidelity against the float
 * model (res->fid); ref is called once per window before its scoring. */
int qh_eval_ppl_ref(const qh_model *m, const int32_t *ids, size_t n_ids, size_t seqlen,
                    size_t max_windows, qh_float_ref_fn ref, void *ref_user,
                    qh_eval_progress_fn progress, void *user, qh_eval_result *res) QH_MUST_CHECK;

#endif
