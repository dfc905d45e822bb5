/* layer_eval.h -- one linear layer quantized and measured: the method's result,
 * the incoherence metrics in the original and processed bases, and every
 * evaluable bound of the theory, as one record; records of many layers become
 * one table in a results file (/run/layers), one row per layer.
 */
#ifndef QH_LAYER_EVAL_H
#define QH_LAYER_EVAL_H

#include <stddef.h>

#include "qh_bounds.h"
#include "qh_method.h"
#include "qh_metrics.h"
#include "results/writer.h"

typedef struct {
    char name[96];                   /* tensor name */
    int layer, kind;                 /* block index and qh_model_linear_number (-1 for synthetic) */
    size_t rows, cols;
    int status;                      /* QH_OK or the failure's status */
    char message[256];               /* the failure's message */
    double seconds;                  /* quantization alone */
    const char *order;               /* column order used (static string) */
    size_t n_dead_cols, n_damp_retries, n_greedy_passes;
    double damp_used;
    double bits_nominal, bits_side, bits_total;
    double delta_rms;                /* RMS over rows (and groups) of the grid step */
    /* Methods that are not a scalar grid (qh_result.row_scale): the mean of
     * their row scales (NaN for grid methods) and their own iteration count. */
    double row_scale_mean;
    size_t n_iterations;
    qh_layer_metrics metrics;        /* orig: W, Ŵ, H; proc: W̃, Ŵ̃, Ĥ (damped, processed) */
    qh_bound_list bounds;            /* in the processed basis with the grid's steps */
    /* Block stage (block_stage.h, e.g. ptq161): when block_tuned, metrics are of
     * the tuned Ŵ and these are the block's mean loss and MSE to the float
     * block output before and after tuning (the same for every linear of a block). */
    int block_tuned;
    double block_loss_init, block_loss_final, block_mse_init, block_mse_final;
    /* Per-layer rules (config "layers"): when ruled, the resolved setting of
     * this linear: its bits, whether it was kept in float (skipped; bits_*
     * then hold the stored width), and the rule parameters as "k=v,k=v". */
    int ruled, skipped, bits_set;
    char overrides[160];
} qh_layer_record;

/* Quantizes p->W with method m (params may be NULL: defaults) inside the
 * incoherence processing incoh (NULL: none), then measures it; cache (may
 * be NULL) carries the last spectrum of H between calls on the same H.
 * Outputs: rec (always filled; rec->status says whether it worked), and when
 * What is non-NULL (m x n, caller-allocated) the quantized weights, written
 * after the last read of p->W, so What may be p->W itself.
 * Returns rec->status.  A failure is data: the caller records it and goes on. */
int qh_layer_run(const qh_method_type *m, const void *params, const qh_incoh_params *incoh,
                 const qh_problem *p, int layer, int kind, qh_spectrum_cache *cache,
                 qh_layer_record *rec, qh_matd *What);

/* A record of a linear kept in float (a "skip" rule): Ŵ = W measured against
 * H (zero proxy), bits_nominal = bits_total = stored_bits (the width of the
 * checkpoint's tensor), no bounds.  cache as for qh_layer_run. */
int qh_layer_record_skipped(const char *name, int layer, int kind, const qh_matd *W, const qh_matd *H,
                            int stored_bits, qh_spectrum_cache *cache, qh_layer_record *rec);

/* Writes n records as the table `path` (one row per record; bound columns
 * named "bound_<name>", NaN where a record lacks that bound; when any record
 * is block_tuned, columns block_loss_init, block_loss_final, block_mse_init,
 * block_mse_final, NaN for the others; when any record has row scales, columns
 * row_scale_mean (NaN for the others) and n_iterations; when any record is
 * ruled, columns skipped, bits_set and overrides). */
int qh_layer_records_write(qh_results *w, const char *path, const qh_layer_record *recs,
                           size_t n) QH_MUST_CHECK;

/* Total bits per weight over the records, weighted by their sizes. */
double qh_layer_records_bits_total(const qh_layer_record *recs, size_t n);

#endif
