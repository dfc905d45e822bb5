/* gptq.h -- OPTQ / GPTQ (Frantar et al., arXiv 2210.17323), methods reference §2.
 *
 * Besides the row, the column loop with its error feedback is open to other
 * rows whose rounding is not the scalar grid's (ternary, bitnet1, gptqt):
 * qh_gptq_run with a rounding hook. */
#ifndef QH_METHOD_GPTQ_H
#define QH_METHOD_GPTQ_H
#include "qh_method.h"
#include "qh_quant.h"

extern const qh_method_type qh_method_gptq;

/* A pluggable rounding for GPTQ's column loop.  fit is called once on the
 * whole W (processing order, before any feedback) when p->group = 0, else at
 * every group start on that group's columns with their feedback applied
 * (gi = the group); round(ctx, row, gi, w) returns the value w rounds to.
 * Threads (qh_rows.h): the loop runs on row chunks in parallel; fit is
 * always called on one thread with every row up to date and no round in
 * flight, while round is called from every thread at once, so it must only
 * read ctx. */
typedef struct qh_gptq_rounding_s {
    void (*fit)(void *ctx, const qh_matd *Wp, size_t c0, size_t nc, size_t gi);
    double (*round)(void *ctx, size_t row, size_t gi, double w);
    void *ctx;
} qh_gptq_rounding;

/* GPTQ's fast path (lazy blocks) with p's settings (grid, group, damp,
 * act_order, ...) and rounding rnd (NULL: the grid's, i.e. the gptq row).
 * The column loop runs on qh_rows_threads(m, n) row chunks (one thread with
 * stochastic rounding), bit-identical for any count.
 * With a hook the grid is still initialised (its group layout is used; its
 * steps are fitted by qh_quant_prepare but not used for rounding).  work has
 * qh_gptq_workspace_size(p, m, n) bytes.  Statuses as the gptq row's. */
int qh_gptq_run(const qh_quant_params *p, const qh_problem *in, qh_result *out, void *work,
                const qh_gptq_rounding *rnd) QH_MUST_CHECK;
size_t qh_gptq_workspace_size(const qh_quant_params *p, size_t m, size_t n);

#endif
