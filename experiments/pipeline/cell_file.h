/* cell_file.h -- the results file of one experiment cell (layout in
 * results/README.md): run attributes, method parameters, the per-layer table
 * and per-dataset perplexities, plus provenance.  Written under a temporary
 * name and renamed, so a file under its final name is always complete. */
#ifndef QH_CELL_FILE_H
#define QH_CELL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/eval.h"
#include "pipeline/layer_eval.h"
#include "pipeline/model_stage.h"
#include "pipeline/tasks.h"
#include "qh_method.h"

typedef struct {
    const char *id;                  /* cell id, e.g. "opt-7m.ldlq+incoh.w2.s0" */
    const char *model;               /* model label */
    const char *model_path;
    const qh_method_type *method;    /* NULL for the float32 baseline */
    const void *params;              /* method parameters (NULL: defaults) */
    const char *method_label;
    const char *incoherence;         /* "none", "kron", "hadamard" */
    int rescale;
    int bits;                        /* 32 for the baseline */
    uint64_t seed;
    int status;                      /* QH_OK or the failure's status */
    const char *message;
    double seconds;
    const char *config_json;         /* the resolved configuration ("" if none) */
    const char *calib_path;          /* "" when not calibrated */
    size_t calib_nsamples, calib_seqlen;
    const char *protocol;            /* the protocol record (pipeline/protocol.h); NULL: none */
    const struct qh_cell_task *tasks;   /* n_tasks task accuracies (may be NULL) */
    size_t n_tasks;
    const qh_model_stage_stats *heal_kl;   /* the whole-model stage (end-to-end healing);
                                              NULL: not run (no attributes written) */
} qh_cell_info;

typedef struct qh_cell_task {
    const char *name;                /* task label */
    const char *path;
    const qh_task_result *r;         /* borrows */
} qh_cell_task;

typedef struct {
    const char *name;                /* dataset label */
    const char *path;
    double ppl;
    size_t seqlen, n_windows, n_tokens;
    const double *window_nll;        /* n_windows; borrows */
    const qh_eval_fidelity *fid;     /* against the float model; NULL: not measured (borrows) */
} qh_cell_eval;

int qh_cell_file_write(const char *path, const qh_cell_info *info, const qh_layer_record *recs,
                       size_t n_recs, const qh_cell_eval *evals, size_t n_evals) QH_MUST_CHECK;

#endif
