/* wa_config.h -- the "activations" and "kv" keys of a sweep configuration
 * (weight-activation quantization, model/act_quant.h), at the top level (every
 * method entry's default) or in a method entry (configs/README.md).
 *
 *   "activations": { "bits": 4, "granularity": "token" | "tensor", "symmetric": true,
 *                    "group": 0, "clip": 1.0,
 *                    "smooth": "none" | "runtime", "smooth_group": 0, "causal": false }
 *   "kv":          { "bits": 4, "symmetric": false, "group": 0, "clip": 1.0 }
 *
 * and, in a method entry only, the model transforms applied before
 * calibration (model/rotate.h, pipeline/transform.h):
 *
 *   "rotate": "none" | "hadamard"        (QuaRot's rotation, seeded by the cell's seed)
 *   "smooth": { "alpha": 0.5 }           (SmoothQuant from calibration maxima)
 */
#ifndef QH_WA_CONFIG_H
#define QH_WA_CONFIG_H

#include <stddef.h>

#include "model/act_quant.h"
#include "model/model.h"
#include "pipeline/config.h"
#include "qh_error.h"

struct cJSON;

/* Everything off: bits 16 for activations and KV. */
qh_act_quant qh_wa_default(void);

/* 1 when aq quantizes anything (activations or KV). */
int qh_wa_active(const qh_act_quant *aq);

/* Parses the objects act and kv (either may be NULL: that part keeps *aq's
 * value) into *aq.  QH_ECONFIG naming src and path ("methods[2].activations.bits"). */
int qh_wa_parse(const struct cJSON *act, const struct cJSON *kv, qh_act_quant *aq,
                const char *src, const char *path) QH_MUST_CHECK;

/* Parses obj's "rotate" and "smooth" (absent: none) into *tf.  QH_ECONFIG
 * naming src and path. */
int qh_wa_parse_transform(const struct cJSON *obj, qh_model_transform *tf, const char *src,
                          const char *path) QH_MUST_CHECK;

/* Appends "+sq" (smoothing; "+sq80" for alpha 0.8: other than 0.5, in hundredths) and "+rot"
 * (rotation) to the label in buf. */
int qh_wa_transform_label_append(char *buf, size_t cap, const qh_model_transform *tf)
    QH_MUST_CHECK;

/* The protocol record's "rotate" and "smooth.alpha" entries; nothing when
 * tf asks for no transform. */
void qh_wa_transform_protocol(const qh_model_transform *tf, void (*put)(const char *key,
                              const char *value, void *user), void *user);

/* The label suffix of aq: "" when inactive, else "+rs" (Runtime Smooth), "+rs128"
 * (groups of 128), "c" appended for causal, then "-A4KV4" style. */
int qh_wa_label_suffix(const qh_act_quant *aq, char *buf, size_t cap) QH_MUST_CHECK;

/* Appends qh_wa_label_suffix(aq) to the label in buf (cap bytes). */
int qh_wa_label_append(char *buf, size_t cap, const qh_act_quant *aq) QH_MUST_CHECK;

/* Checks every method entry's settings of cfg against models[model]'s shapes
 * (groups dividing the linear input widths and head_dim).  QH_ECONFIG naming
 * the entry and the model. */
int qh_wa_validate(const qh_config *cfg, size_t model, const qh_model_config *mc) QH_MUST_CHECK;

/* Hangs aq on m for evaluation when it quantizes anything (m->act_quant = aq,
 * else NULL), after checking it against m's shapes (QH_ECONFIG naming who). */
int qh_wa_attach(qh_model *m, const qh_act_quant *aq, const char *who) QH_MUST_CHECK;

/* Adds the protocol record's "activations.*" and "kv.*" entries of aq through
 * put(key, value-as-text, user); nothing when aq is inactive, so that the
 * records of configurations without these keys are unchanged. */
void qh_wa_protocol(const qh_act_quant *aq, void (*put)(const char *key, const char *value,
                    void *user), void *user);

#endif
