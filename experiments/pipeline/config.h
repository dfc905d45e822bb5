/* config.h -- sweep configurations: one JSON file expanded into named cells.
 *
 * A configuration names models, evaluation datasets, a calibration set,
 * methods with parameters, bit widths and seeds; it expands to the cross
 * product model x method x bits x seed, each cell with an explicit id such
 * as "opt-7m.ldlq+incoh.w2.s0".  Every key is documented in configs/README.md.
 * Parsing is strict: unknown keys, wrong types, bad values and duplicate
 * labels are QH_ECONFIG with the JSON path and what was expected.
 */
#ifndef QH_CONFIG_H
#define QH_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"
#include "qh_incoherence.h"
#include "qh_method.h"
#include "model/act_quant.h"
#include "model/rotate.h"
#include "pipeline/sequential.h"

#define QH_CONFIG_MAX_PARAMS 16
#define QH_CONFIG_MAX_RULE_PARAMS 8


#define QH_EVAL_KL_TOPK_DEFAULT 128

typedef struct {
    char key[64];
    char value[128];                 /* as written in JSON (numbers, strings, booleans) */
} qh_config_param;

/* A per-layer rule ("layers": [...] at the top level or in a method entry):
 * the decoder linears whose tensor name (as `qh info` lists it, e.g.
 * "model.decoder.layers.0.fc1") matches `match` take its settings.  A
 * pattern is a shell glob (fnmatch, '*' also crosses '.'), or a POSIX
 * extended regular expression when written "re:...", matched anywhere in the
 * name unless anchored.  Rules apply in order, the top level's first, then
 * the entry's; a later rule's setting wins. */
typedef struct {
    char where[96];                  /* JSON path for messages: "layers[0]", "methods[1].layers[2]" */
    char match[192];                 /* as written, "re:" included */
    int bits;                        /* 0: not set */
    int skip;                        /* -1: not set; 1: keep the linear in float */
    qh_config_param params[QH_CONFIG_MAX_RULE_PARAMS];
    size_t n_params;
} qh_config_rule;

typedef struct {
    char label[96];                  /* unique; used in cell ids (default: qh_config_default_label) */
    char method[64];                 /* a name from the method table */
    qh_config_param params[QH_CONFIG_MAX_PARAMS];
    size_t n_params;
    char incoherence[16];            /* a name of the incoherence table (qh_incoh_find) */
    int rescale;                     /* D~ rescaling with incoherence (default: the
                                        incoherence row's, qh_incoh_row.rescale_default) */
    int permute;                     /* kron: random permutations around the Kronecker
                                        factors (default: the row's permute_default) */
    qh_variant variant;              /* "variant": the entry's, else the top level's, else
                                        default; reference starts the parameters from the
                                        values that reproduce the authors' code
                                        (qh_method_params_variant) */
    qh_act_quant wa;                 /* "activations", "kv": the entry's, else the top level's,
                                        else off (bits 16); pipeline/wa_config.h */
    int *bits;                       /* "bits": the entry's own widths (NULL: the sweep's) */
    size_t n_bits;
    uint64_t *seeds;                 /* "seeds": the entry's own seeds (NULL: the sweep's) */
    size_t n_seeds;
    qh_config_rule *rules;           /* "layers": the entry's rules, after the top level's */
    size_t n_rules;
    qh_model_transform tf;           /* "rotate", "smooth": model transforms before
                                        calibration (pipeline/transform.h); default none */
} qh_config_method;

typedef struct {
    char label[64];                  /* unique; defaults to the folder's base name */
    char path[1024];
} qh_config_entry;

typedef struct {
    char name[64];
    qh_config_entry *models;         /* n_models */
    size_t n_models;
    qh_config_entry *datasets;       /* n_datasets: evaluation texts */
    size_t n_datasets;
    qh_config_entry *tasks;          /* n_tasks: multiple-choice task files (pipeline/tasks.h) */
    size_t n_tasks;
    char calib_path[1024];
    int calib_nsamples;              /* default 128 */
    int calib_seqlen;                /* 0: the model's context length */
    qh_act_dtype calib_act_dtype;    /* how the windows' hidden states are held (default f32) */
    int calib_max_blocks;            /* quantize blocks [0, K) only, the rest stay float (0: all) */
    int eval_seqlen;                 /* 0: the model's context length */
    int eval_max_windows;            /* 0: all */
    int eval_kl_topk;                /* float log-probs kept per token for KL (default 128; 0: no
                                        fidelity metrics; the vocabulary size or more: exact) */
    qh_config_method *methods;       /* n_methods */
    size_t n_methods;
    int *bits;                       /* n_bits */
    size_t n_bits;
    uint64_t *seeds;                 /* n_seeds */
    size_t n_seeds;
    qh_variant variant;              /* top-level "variant": every entry's unless it sets its own */
    qh_act_quant wa;                 /* top-level "activations", "kv": every entry's default */
    qh_config_rule *rules;           /* top-level "layers": rules for every method entry */
    size_t n_rules;
} qh_config;

/* The setting of one linear under a cell's rules. */
typedef struct {
    int bits;                        /* the cell's bits unless a rule set them */
    int skip;                        /* 1: kept in float */
    const qh_config_param *params[QH_CONFIG_MAX_PARAMS];   /* rule parameters in order; later win */
    size_t n_params;
    int n_rules_hit;                 /* rules that matched this name */
} qh_linear_setting;

typedef struct {
    char id[256];                    /* "<model>.<method label>.w<bits>.s<seed>" */
    size_t model, method;            /* indices into the config's arrays */
    int bits;
    uint64_t seed;
} qh_cell;

/* Parses JSON text (source names the file in messages).  *out is new. */
int  qh_config_parse(const char *json, const char *source, qh_config **out) QH_MUST_CHECK;
int  qh_config_load(const char *path, qh_config **out) QH_MUST_CHECK;
void qh_config_free(qh_config *c);

/* Cells in a stable order (model, method, bits, seed); *cells is new (free()). */
int  qh_config_cells(const qh_config *c, qh_cell **cells, size_t *n) QH_MUST_CHECK;

/* The whole file as a NUL-terminated string, new (free()); NULL when it
 * cannot be read. */
char *qh_read_text_file(const char *path);

/* The default label of a method entry, the method name and the label suffix
 * of its incoherence kind: "ldlq", "ldlq+incoh" (kron), "quipsharp+rht"
 * (hadamard), and "-ref" for the reference variant ("ldlq+incoh-ref"), so
 * that it does not collide with the default entry.  `qh run` and `qh layer`
 * both name results so.  Returns QH_OK, or QH_EINVAL when it does not fit
 * cap bytes. */
int  qh_config_default_label(char *buf, size_t cap, const char *method, qh_incoh_kind incoh,
                             qh_variant variant) QH_MUST_CHECK;

/* A cell id, "<model>.<method label>.w<bits>.s<seed>" (e.g.
 * "opt-7m.ldlq+incoh.w2.s0"), into buf: the one format of `qh run` cells and
 * `qh layer` files, and the base name of their results files.  Returns QH_OK,
 * or QH_EINVAL when it does not fit cap bytes. */
int  qh_config_cell_id(char *buf, size_t cap, const char *model, const char *label, int bits,
                       uint64_t seed) QH_MUST_CHECK;

/* The widths and seeds of methods[index]'s cells: its own, else the sweep's. */
void qh_config_method_bits(const qh_config *c, size_t index, const int **bits, size_t *n);
void qh_config_method_seeds(const qh_config *c, size_t index, const uint64_t **seeds, size_t *n);

/* Number of rules that apply to methods[index] (top level + entry's) and
 * the k-th of them (top level first). */
size_t qh_config_rule_count(const qh_config *c, size_t index);
const qh_config_rule *qh_config_rule_at(const qh_config *c, size_t index, size_t k);

/* 1 if tensor `name` matches the rule's pattern; -1 for a regular
 * expression that does not compile (checked at parse time, so not seen). */
int qh_config_rule_matches(const qh_config_rule *r, const char *name);

/* The setting of linear `name` in a cell of methods[index] at cell_bits:
 * every applicable rule in order, later ones winning. */
void qh_config_linear_setting(const qh_config *c, size_t index, const char *name, int cell_bits,
                              qh_linear_setting *out);

/* 1 if id matches the shell-style pattern (*, ?, [..]). */
int  qh_cell_matches(const qh_cell *cell, const char *pattern);

/* The method row and parameters of methods[index] as its cells run them:
 * the row's defaults under the entry's incoherence and variant, then the entry's
 * params.  *params is new (free(); also on failure).  Return: QH_OK;
 * QH_ECONFIG naming methods[index]; QH_ENOMEM. */
int qh_config_method_params(const qh_config *cfg, size_t index, const qh_method_type **type,
                            void **params) QH_MUST_CHECK;

#endif
