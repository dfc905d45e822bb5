/* tasks.h -- multiple-choice and cloze tasks scored by log-likelihood, in
 * the manner of lm-evaluation-harness (docs/metrics.md).
 *
 * A task file holds JSON lines, one item each (blank lines are skipped):
 *   {"context": "...", "continuations": ["...", "...", ...], "answer": 2}
 * continuations: at least two strings, each non-empty; answer: the 0-based
 * index of the correct one; an optional "id" (string or number) is ignored;
 * any other key is an error.  The context is encoded with the tokenizer's
 * special tokens (the BOS the perplexity protocol also prepends), each
 * continuation on its own without them, and the two id sequences are
 * concatenated (lm-eval encodes context and continuation separately too);
 * when the concatenation exceeds the model's context, the oldest context
 * tokens are dropped.  A continuation's score is the sum over its tokens of
 * log p(token | everything before it), in double from the float32 logits.
 *   acc       = mean over items of [argmax_i score_i == answer]
 *   acc_norm  = the same with score_i / (characters of continuation i)
 *   stderr    = sqrt(acc (1 - acc) / (n - 1)) (the sample standard error)
 * Ties go to the lowest index.
 */
#ifndef QH_TASKS_H
#define QH_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "model/forward.h"
#include "model/model.h"
#include "qh_error.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char *context;
    char **conts;                    /* n_conts continuations */
    size_t n_conts;
    int answer;
    size_t line;                     /* 1-based line in the file */
} qh_task_item;

typedef struct {
    char *path;
    size_t n;
    qh_task_item *items;
} qh_task;

/* Reads a task file.  Output: *t (free with qh_task_free).
 * Return: QH_OK; QH_EIO (cannot read: path named); QH_EINVAL (a bad line:
 *   "task FILE:LINE: key \"K\": ..." or "not a JSON object"; an empty file);
 *   QH_ENOMEM. */
int qh_task_load(const char *path, qh_task *t) QH_MUST_CHECK;
void qh_task_free(qh_task *t);       /* NULL or zeroed: no-op */

typedef struct {
    size_t n;                        /* items scored */
    double acc, acc_stderr, acc_norm, acc_norm_stderr;
    double seconds;
    double *scores;                  /* per item, per continuation, in file order (sum of log p);
                                        owned: free with qh_task_result_free */
    size_t n_scores;
} qh_task_result;

/* Sum of log p(cont | ctx) over cont's tokens: one forward of the
 * concatenation (left-truncated to the model's context; cont alone must
 * fit).  ws must hold max_position_embeddings tokens; logits vocab x that.
 * Return: QH_OK; QH_EINVAL (empty or too long continuation); QH_ENAN; the
 *   forward pass's status. */
int qh_task_score(const qh_model *m, qh_forward_ws *ws, float *logits, const int32_t *ctx,
                  size_t n_ctx, const int32_t *cont, size_t n_cont, double *ll) QH_MUST_CHECK;

/* Scores the first max_items items of t (0: all) with m.  Output: *r.
 * Return: QH_OK; the first failing item's status (message names file and line). */
int qh_task_eval(const qh_model *m, const qh_tokenizer *tok, const qh_task *t, size_t max_items,
                 qh_task_result *r) QH_MUST_CHECK;
void qh_task_result_free(qh_task_result *r);

#endif
