/* transform.h -- the model transforms of a method entry ("smooth", "rotate";
 * model/rotate.h) applied to a loaded float model before calibration, and the
 * per-channel activation maxima they and the outlier statistics use.
 */
#ifndef QH_TRANSFORM_H
#define QH_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "model/rotate.h"
#include "qh_error.h"

/* Per-channel max_t |x_j| of every block's linear inputs over the windows
 * (nsamples x seqlen ids), the model as it is (its act_quant ignored: float
 * activations).  *out is new: n_layers * QH_ABSMAX_GROUPS arrays (free with
 * qh_absmax_free), group g of block l at [QH_ABSMAX_GROUPS * l + g] with
 * dims[g] values (hidden, hidden, ffn, heads x head_dim).  Returns QH_OK,
 * the forward pass's statuses, QH_ENOMEM. */
int qh_absmax_collect(qh_model *m, const int32_t *windows, size_t nsamples, size_t seqlen,
                      double ***out, size_t dims[QH_ABSMAX_GROUPS]) QH_MUST_CHECK;
void qh_absmax_free(double **a, const qh_model *m);

/* Smoothing (maxima from the windows), then rotation (seeded by seed), as tf
 * asks; nothing when neither is asked.  who names the cell in messages. */
int qh_transform_apply(qh_model *m, const qh_model_transform *tf, const int32_t *windows,
                       size_t nsamples, size_t seqlen, uint64_t seed, const char *who)
    QH_MUST_CHECK;

#endif
