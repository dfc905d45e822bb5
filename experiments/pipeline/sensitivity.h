/* sensitivity.h -- how much each linear (or each decoder block) costs when
 * quantized alone: a helper for choosing mixed bit widths from data, and a
 * greedy allocation of wider bits to a total-bits budget.
 *
 * For one cell (model, method entry, bits, seed): the calibration windows
 * are drawn as the cell draws them; one traversal computes every linear's
 * Hessian on the float model (no block sees quantized inputs) and quantizes
 * every linear at the cell's width without writing it back; then, for every
 * unit (a linear, or a block's linears), the quantized weights of that unit
 * alone replace the float ones, the model is evaluated on the first dataset,
 * and the float weights are restored.  Per unit: its proxy loss (summed over
 * its linears), its perplexity and the change against the float model.
 * The configuration's per-layer rules are not applied here.
 *
 * The allocation is a simple baseline, not a published method: every unit
 * starts at the cell's width; units are upgraded to `high` bits in the order
 * of Δppl per added bit (Δppl / (weights x (high - bits))), largest first,
 * while the nominal bits per weight over all linears stay within the budget. */
#ifndef QH_SENSITIVITY_H
#define QH_SENSITIVITY_H

#include <stdio.h>

#include "pipeline/config.h"

typedef struct {
    char name[160];                  /* the linear's tensor name, or "<block prefix>.*" for a block */
    int layer;                       /* block index */
    int kind;                        /* qh_model_linear_number, -1 for a block */
    size_t weights;                  /* number of weights in the unit */
    double proxy;                    /* sum of the linears' proxy losses tr(ΔW H ΔWᵀ) */
    double ppl, dppl;                /* perplexity with this unit quantized, and minus the float one */
    char linears[8][96];             /* the tensor names of the unit (a block's, or the one) */
    int n_linears;
} qh_sens_unit;

typedef struct {
    qh_sens_unit *units;
    size_t n;
    double ppl_float;
    int bits;                        /* the width every unit was measured at */
    size_t total_weights;            /* all decoder linears */
} qh_sens_result;

/* Measures every unit of `cell` (per_block: blocks, else linears).  Needs at
 * least one dataset in cfg.  log: progress lines (NULL: quiet). */
int qh_sensitivity_run(const qh_config *cfg, const qh_cell *cell, int per_block, FILE *log,
                       qh_sens_result *out) QH_MUST_CHECK;
void qh_sens_result_free(qh_sens_result *r);

/* The TSV of a result (header line, one line per unit). */
int qh_sensitivity_write_tsv(const qh_sens_result *r, const char *path) QH_MUST_CHECK;

/* Reads a table written by qh_sensitivity_write_tsv (units, their weights and
 * dppl; the total is the sum of the units' weights). */
int qh_sensitivity_read_tsv(const char *path, qh_sens_result *out) QH_MUST_CHECK;

/* Greedy allocation to budget bits per weight (nominal) with wider width
 * high: writes a JSON array of rules ({"match": name, "bits": high}, one per
 * upgraded unit: a linear's name, or a block's glob "<prefix>.*") to path (temporary name, then rename), and the resulting
 * nominal bits per weight into *avg.  QH_EINVAL when high <= the measured
 * width or the budget is below it. */
int qh_sensitivity_allocate(const qh_sens_result *r, double budget, int high, const char *path,
                            double *avg) QH_MUST_CHECK;

#endif
