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

#include "model/model.h"
#include "qh_error.h"

typedef struct {
    double ppl;                      /* exp(mean_nll) */
    double mean_nll;                 /* mean of window_nll */
    size_t seqlen;
    size_t windows;                  /* windows scored (<= windows_total) */
    size_t windows_total;            /* floor(n_ids / seqlen) */
    size_t tokens;                   /* windows * seqlen */
    double seconds;                  /* wall time of the forward passes */
    double *window_nll;              /* (windows) mean NLL per window; owned, see _free */
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

/* log(sum_i exp(x[i])) of n >= 1 floats, in double with max subtraction. */
double qh_logsumexp(const float *x, size_t n);

/* Mean next-token NLL of one window: logits (vocab x T) from the forward pass
 * of ids[0..T), T >= 2.  Returns QH_OK and *nll, or QH_ENAN at the first
 * non-finite log-probability (position in the message). */
int qh_window_nll(const float *logits, size_t vocab, const int32_t *ids, size_t T,
                  double *nll) QH_MUST_CHECK;

#endif
