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
 * while the nominal bits per weight over all linears stay within the budget.
 *
 * The selection (layer selection by sensitivity, for the factorisation rows
 * mpo and lowrank: CompactifAI chooses the layers to compress) is the
 * reverse: every unit starts float; units are compressed in the order of
 * their cost per parameter saved (Δppl, or the proxy loss, divided by
 * weights − entries kept), cheapest first, until the entries kept over all
 * linears fall to the budget's fraction of the dense count.  A unit's
 * entries kept are weights x bits_total / bits (for mpo and lowrank at 16
 * bits: the cores' or factors' entries); a unit that keeps as many entries
 * as it has weights saves nothing and is never selected. */
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
    double bits_total;               /* size-weighted mean total bits per weight (NAN: unknown) */
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

/* Reads a table written by qh_sensitivity_write_tsv (units, their weights,
 * dppl and bits_total (NAN in a table of the 9 columns before it); the
 * total is the sum of the units' weights). */
int qh_sensitivity_read_tsv(const char *path, qh_sens_result *out) QH_MUST_CHECK;

/* Greedy allocation to budget bits per weight (nominal) with wider width
 * high: writes a JSON array of rules ({"match": name, "bits": high}, one per
 * upgraded unit: a linear's name, or a block's glob "<prefix>.*") to path (temporary name, then rename), and the resulting
 * nominal bits per weight into *avg.  QH_EINVAL when high <= the measured
 * width or the budget is below it. */
int qh_sensitivity_allocate(const qh_sens_result *r, double budget, int high, const char *path,
                            double *avg) QH_MUST_CHECK;

/* Which units the selection orders by. */
typedef enum { QH_SELECT_BY_PPL, QH_SELECT_BY_PROXY } qh_select_by;

/* Layer selection to keep_frac (0 < keep_frac < 1) of the dense linears'
 * entries: writes a JSON array of rules {"match": name, "skip": true}, one
 * per unit left float, to path (temporary name, then rename), and the
 * fraction kept into *kept and the number of compressed units into
 * *n_selected.  When compressing every unit that saves entries does not reach
 * the budget, all of them are selected and *kept tells how far it got.
 * QH_EINVAL for keep_frac outside (0, 1) or a table without bits_total. */
int qh_sensitivity_select(const qh_sens_result *r, double keep_frac, qh_select_by by, const char *path,
                          double *kept, size_t *n_selected) QH_MUST_CHECK;

#endif
