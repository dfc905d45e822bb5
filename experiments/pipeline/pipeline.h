/* pipeline.h -- one sweep cell end to end (GPTQ/QuIP protocol, methods
 * reference §1 and §16): calibration windows drawn with the cell's seed,
 * block-sequential quantization of every decoder linear with the cell's
 * method (each block calibrated on the outputs of the already-quantized
 * blocks), perplexity on every configured dataset, and one results file.
 * A failed cell is a result: its file records the status and message.
 */
#ifndef QH_PIPELINE_H
#define QH_PIPELINE_H

#include <stdio.h>

#include "pipeline/config.h"
#include "qh_method.h"

typedef struct {
    const qh_config *cfg;
    const char *config_json;         /* the resolved configuration, stored in every file */
    const char *out_dir;             /* results folder (exists) */
    FILE *log;                       /* progress lines (NULL: quiet) */
    const char *save_model_dir;      /* write the dequantized model here (NULL: don't) */
    const char *scratch_dir;         /* spill the models' weights here (model.h; NULL: don't) */
} qh_pipeline;

/* Checks what can be checked before any work: method names and parameters,
 * incoherence, bit ranges (each method's own, qh_method_bits_range), and
 * against each model's config.json: eval and calibration seqlen within
 * max_position_embeddings, a method's `group` dividing every linear's input
 * width.  QH_ECONFIG naming the config key and the model on failure. */
int qh_pipeline_validate(const qh_config *cfg) QH_MUST_CHECK;

/* Runs one cell and writes <out_dir>/<cell id>.h5 (also on failure, with the
 * status).  Returns the cell's status; QH_EIO when the file cannot be written. */
int qh_pipeline_run_cell(const qh_pipeline *p, const qh_cell *cell);

/* The float32 baseline of model index `model`: <out_dir>/<label>.baseline.h5
 * with the perplexity on every dataset (method "float32", bits 32). */
int qh_pipeline_run_baseline(const qh_pipeline *p, size_t model);

/* The results-file path of a cell or a baseline (buf of len bytes). */
int qh_pipeline_cell_path(const qh_pipeline *p, const qh_cell *cell, char *buf, size_t len) QH_MUST_CHECK;
int qh_pipeline_baseline_path(const qh_pipeline *p, size_t model, char *buf, size_t len) QH_MUST_CHECK;

#endif
