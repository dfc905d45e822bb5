/* cmd_layer.c -- `qh layer`: per-matrix experiments.  Runs methods x bit
 * widths x incoherence choices on one synthetic matrix or on the linear layers
 * of a model (H from calibration text at full precision), and writes one
 * results file per combination with the per-layer table of metrics and
 * bounds (layout in results/README.md).  `make bounds-check` is built on it. */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/calib.h"
#include "pipeline/cell_file.h"
#include "pipeline/config.h"
#include "cli/commands.h"
#include "pipeline/layer_eval.h"
#include "model/model.h"
#include "qh_blas.h"
#include "qh_method.h"
#include "qh_path.h"
#include "pipeline/sequential.h"
#include "pipeline/synthetic.h"
#include "tokenizer/tokenizer.h"

#define MAX_LIST 16
#define MAX_PARAMS 16

typedef struct {
    const char *model_dir, *tensor, *synthetic, *calib, *out;
    size_t rows, cols, nsamples, seqlen;
    uint64_t seed;
    char *methods[MAX_LIST], *incohs[MAX_LIST];
    int bits[MAX_LIST];
    size_t n_methods, n_bits, n_incohs;
    char *param_keys[MAX_PARAMS], *param_values[MAX_PARAMS];
    size_t n_params;
    int rescale, permute, quiet;     /* rescale, permute: -1 = the incoherence kind's value */
    qh_variant variant;              /* --variant: parameters start from the defaults or the
                                        authors' code's values */
} layer_opts;

typedef struct {                      /* one method x bits x incoherence combination */
    const qh_method_type *method;
    void *params;
    int bits;
    qh_incoh_kind incoh;
    char label[96];
    qh_layer_record *recs;
    size_t n_recs, cap;
} combo;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qh layer (--model DIR [--tensor GLOB] | --synthetic GEN --rows M --cols N)\n"
        "                --method M[,M...] --bits B[,B...] [options] --out DIR\n\n"
        "Quantizes one matrix, or every decoder linear of a model whose name matches GLOB,\n"
        "with each method x bit width x incoherence choice, and writes one results file per\n"
        "combination, DIR/<model>.<method>[+incoh|+rht][-ref].w<B>.s<seed>.h5, holding a table of\n"
        "proxy losses, incoherence metrics and every evaluable bound (one row per layer).\n"
        "Hessians of model layers come from calibration text at full precision.\n\n"
        "options:\n"
        "  --model DIR            Hugging Face model folder\n"
        "  --tensor GLOB          layers to run, matched against tensor names (default: all),\n"
        "                         e.g. 'model.decoder.layers.3.*' or '*fc1'\n"
        "  --synthetic GEN        gaussian | uniform | coherent | lowrank (see experiments/synthetic.h)\n"
        "  --rows M --cols N      synthetic matrix size\n"
        "  --method LIST          method names from `qh methods`, comma-separated\n"
        "  --bits LIST            bit widths, comma-separated (e.g. 2,3,4)\n"
        "  --incoherence LIST     none | kron | hadamard, comma-separated (default none)\n"
        "  --rescale, --no-rescale  do or skip the D~ rescaling of incoherence processing\n"
        "                         (default: on for kron and hadamard; the reference variant\n"
        "                         turns it off for hadamard, as QuIP#'s and PVQ's code)\n"
        "                         (with incoherence the grid defaults to QuIP's rms grid)\n"
        "  --permute, --no-permute  kron: random permutations around the Kronecker factors\n"
        "                         (default off; on in the reference variant, as QuIP's code)\n"
        "  --variant V            default | reference: start every method's parameters from\n"
        "                         the defaults or from the values that reproduce the authors'\n"
        "                         code (`qh methods` lists them); --param overrides either.\n"
        "                         reference labels end in -ref (a config's \"variant\")\n"
        "  --param KEY=VALUE      method parameter (repeatable; applies to every listed method\n"
        "                         that has KEY, and at least one must)\n"
        "  --seed S               seed of every random draw (default 0); a model's linear draws\n"
        "                         from streams keyed by its layer and kind, as under `qh run`,\n"
        "                         so both give the same weights for the same cell and calibration\n"
        "  --calib FILE           calibration text (default data/gutenberg_calib_4M.txt)\n"
        "  --nsamples N           calibration windows (default 128)\n"
        "  --seqlen L             tokens per window (default: the model's context length)\n"
        "  --out DIR              output folder (created if missing)\n"
        "  --quiet                no per-layer lines\n"
        "  --help                 this text\n");
}

/* Splits "a,b,c" in place into up to MAX_LIST items. */
static size_t split_list(char *s, char **items)
{
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok && n < MAX_LIST; tok = strtok(NULL, ",")) items[n++] = tok;
    return n;
}

static int parse_size(const char *s, const char *opt, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || !*s || s[0] == '-') {
        fprintf(stderr, "qh layer: %s expects a non-negative integer, got '%s'\n", opt, s);
        return 0;
    }
    *out = (size_t)v;
    return 1;
}

static int parse_args(int argc, char **argv, layer_opts *o)
{
    static const struct option longopts[] = {
        { "model", 1, 0, 'm' }, { "tensor", 1, 0, 't' }, { "synthetic", 1, 0, 'y' },
        { "rows", 1, 0, 'r' }, { "cols", 1, 0, 'c' }, { "method", 1, 0, 'M' },
        { "bits", 1, 0, 'b' }, { "incoherence", 1, 0, 'i' }, { "no-rescale", 0, 0, 'R' },
        { "rescale", 0, 0, 'E' }, { "permute", 0, 0, 'P' }, { "no-permute", 0, 0, 'N' },
        { "param", 1, 0, 'p' }, { "seed", 1, 0, 's' }, { "calib", 1, 0, 'C' },
        { "nsamples", 1, 0, 'n' }, { "seqlen", 1, 0, 'L' }, { "out", 1, 0, 'o' },
        { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' }, { "variant", 1, 0, 'V' },
        { 0, 0, 0, 0 },
    };
    static char incoh_default[] = "none";
    memset(o, 0, sizeof *o);
    o->calib = "data/gutenberg_calib_4M.txt";
    o->nsamples = 128;
    o->rescale = o->permute = -1;
    char *bits_list[MAX_LIST];
    size_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 't': o->tensor = optarg; break;
        case 'y': o->synthetic = optarg; break;
        case 'r': if (!parse_size(optarg, "--rows", &o->rows)) return 2; break;
        case 'c': if (!parse_size(optarg, "--cols", &o->cols)) return 2; break;
        case 'M': o->n_methods = split_list(optarg, o->methods); break;
        case 'b':
            o->n_bits = split_list(optarg, bits_list);
            for (size_t k = 0; k < o->n_bits; k++) {
                if (!parse_size(bits_list[k], "--bits", &v)) return 2;
                o->bits[k] = (int)v;
            }
            break;
        case 'i': o->n_incohs = split_list(optarg, o->incohs); break;
        case 'R': o->rescale = 0; break;
        case 'E': o->rescale = 1; break;
        case 'P': o->permute = 1; break;
        case 'N': o->permute = 0; break;
        case 'p': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || o->n_params == MAX_PARAMS) {
                fprintf(stderr, "qh layer: --param expects KEY=VALUE, got '%s'\n", optarg);
                return 2;
            }
            *eq = '\0';
            o->param_keys[o->n_params] = optarg;
            o->param_values[o->n_params++] = eq + 1;
            break;
        }
        case 's': if (!parse_size(optarg, "--seed", &v)) return 2; o->seed = v; break;
        case 'C': o->calib = optarg; break;
        case 'n': if (!parse_size(optarg, "--nsamples", &o->nsamples)) return 2; break;
        case 'L': if (!parse_size(optarg, "--seqlen", &o->seqlen)) return 2; break;
        case 'o': o->out = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'V':
            if (qh_variant_parse(optarg, &o->variant) != QH_OK) {
                fprintf(stderr, "qh layer: --variant: %s\n", qh_last_error());
                return 2;
            }
            break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) { fprintf(stderr, "qh layer: unexpected argument '%s'\n", argv[optind]); return 2; }
    if (!o->n_incohs) { o->incohs[0] = incoh_default; o->n_incohs = 1; }
    const char *missing = !o->n_methods ? "--method" : !o->n_bits ? "--bits" : !o->out ? "--out"
                        : (!o->model_dir == !o->synthetic) ? "exactly one of --model and --synthetic"
                        : (o->synthetic && (!o->rows || !o->cols)) ? "--rows and --cols (>= 1)" : NULL;
    if (missing) {
        fprintf(stderr, "qh layer: missing %s (see qh layer --help)\n", missing);
        return 2;
    }
    return 0;
}

/* Applies every --param to the methods that know the key; each key must fit one. */
static int apply_params(const layer_opts *o, combo *cb, size_t n)
{
    for (size_t p = 0; p < o->n_params; p++) {
        int used = 0;
        for (size_t i = 0; i < n; i++) {
            if (!qh_method_param_find(cb[i].method, o->param_keys[p])) continue;
            if (qh_method_params_set(cb[i].method, cb[i].params, o->param_keys[p], o->param_values[p]) != QH_OK) {
                fprintf(stderr, "qh layer: %s\n", qh_last_error());
                return 0;
            }
            used = 1;
        }
        if (!used) {
            fprintf(stderr, "qh layer: no listed method has a parameter '%s' (see qh methods)\n", o->param_keys[p]);
            return 0;
        }
    }
    return 1;
}

/* One combination with the defaults `qh run` gives the same entry (grid rms
 * under incoherence, the variant's values) and its label; 1 on success, else
 * 0 after a message. */
static int init_combo(combo *c, const char *method, const char *incoh, int bits,
                      qh_variant variant)
{
    c->bits = bits;
    if (!(c->method = qh_method_find(method))) {
        char names[256];
        qh_method_names(names, sizeof names);
        fprintf(stderr, "qh layer: unknown method '%s' (expected one of: %s)\n", method, names);
        return 0;
    }
    if (qh_incoh_parse(incoh, &c->incoh) != QH_OK) {
        fprintf(stderr, "qh layer: --incoherence: %s\n", qh_last_error());
        return 0;
    }
    if (!(c->params = qh_method_params_new(c->method))) {
        fprintf(stderr, "qh layer: out of memory\n");
        return 0;
    }
    if (qh_method_params_variant(c->method, c->params, c->incoh, variant) != QH_OK
        || qh_config_default_label(c->label, sizeof c->label, c->method->name, c->incoh,
                                   variant) != QH_OK) {
        fprintf(stderr, "qh layer: %s\n", qh_last_error());
        return 0;
    }
    return 1;
}

static combo *make_combos(const layer_opts *o, size_t *n_out)
{
    size_t n = o->n_methods * o->n_bits * o->n_incohs, k = 0;
    combo *cb = calloc(n, sizeof *cb);
    if (!cb) return NULL;
    for (size_t mi = 0; mi < o->n_methods; mi++)
        for (size_t ii = 0; ii < o->n_incohs; ii++)
            for (size_t bi = 0; bi < o->n_bits; bi++, k++)
                if (!init_combo(&cb[k], o->methods[mi], o->incohs[ii], o->bits[bi], o->variant))
                    goto fail;
    *n_out = n;
    if (apply_params(o, cb, n)) return cb;     /* explicit --param overrides the defaults */
fail:
    for (size_t i = 0; i < n; i++) free(cb[i].params);
    free(cb);
    return NULL;
}

static void free_combos(combo *cb, size_t n)
{
    for (size_t i = 0; cb && i < n; i++) { free(cb[i].params); free(cb[i].recs); }
    free(cb);
}

/* The incoherence parameters of a combination: --rescale/--permute when
 * given, else the kind's default or, under --variant reference, its
 * reference value (qh_incoh_row). */
static qh_incoh_params incoh_params_of(const layer_opts *o, qh_incoh_kind kind, uint32_t key)
{
    int rescale = o->rescale, permute = o->permute;
    qh_incoh_row_settings(qh_incoh_row_of(kind), o->variant == QH_VARIANT_REFERENCE, &rescale,
                          &permute);
    qh_incoh_params ip = { kind, rescale && kind != QH_INCOH_NONE, o->seed, key,
                           permute && kind == QH_INCOH_KRON };
    return ip;
}

typedef struct {
    const layer_opts *o;
    combo *cb;
    size_t n_cb;
    int n_layers_run;
    qh_spectrum_cache spectra;       /* every combination of a layer shares H (and Ĥ per kind) */
} layer_ctx;

/* Runs every combination on one (W, H) and appends a record to each; key
 * seeds the random streams (qh_model_linear_key for a model's linear, as
 * under `qh run`; 0 for a synthetic matrix). */
static int run_all(layer_ctx *ctx, const char *name, int layer, int kind, uint32_t key,
                   const qh_matd *W, const qh_matd *H, const double *x_absmax)
{
    for (size_t i = 0; i < ctx->n_cb; i++) {
        combo *c = &ctx->cb[i];
        if (c->n_recs == c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 16;
            qh_layer_record *r = realloc(c->recs, cap * sizeof *r);
            if (!r) QH_ERROR(QH_ENOMEM, "out of memory");
            c->recs = r;
            c->cap = cap;
        }
        qh_incoh_params ip = incoh_params_of(ctx->o, c->incoh, key);
        qh_problem p = { W, H, c->bits, ctx->o->seed, key, name, NULL, x_absmax };
        qh_layer_record *rec = &c->recs[c->n_recs++];
        qh_layer_run(c->method, c->params, &ip, &p, layer, kind, &ctx->spectra, rec, NULL);
        if (!ctx->o->quiet)
            printf("%-40s %-14s w%d  proxy %.4g  rel %.4g  %s\n", name, c->label, c->bits,
                   rec->metrics.orig.proxy, rec->metrics.orig.proxy_rel,
                   rec->status == QH_OK ? "" : rec->message);
    }
    ctx->n_layers_run++;
    return QH_OK;
}

static int visit_linear(const qh_model *m, int layer, int kind, qh_matd *W, const qh_matd *H,
                        const double *x_absmax, int *replace, void *user)
{
    layer_ctx *ctx = user;
    const char *name = m->blocks[layer].lin[kind].name;
    *replace = 0;                                  /* Hessians stay full precision */
    if (ctx->o->tensor && fnmatch(ctx->o->tensor, name, 0) != 0) return QH_OK;
    return run_all(ctx, name, layer, qh_model_linear_number(m, kind),
                   qh_model_linear_key(m, layer, kind), W, H, x_absmax);
}

static int run_model(layer_ctx *ctx, qh_model **model_out)
{
    const layer_opts *o = ctx->o;
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL, *win = NULL;
    size_t n_ids = 0;
    char tokpath[1200];
    int st = qh_model_load(o->model_dir, &m);
    if (st != QH_OK) return st;
    *model_out = m;
    size_t seqlen = o->seqlen ? o->seqlen : (size_t)m->cfg.max_pos;
    if ((st = qh_path_format(tokpath, sizeof tokpath, "tokenizer path", "%s/tokenizer.json",
                             o->model_dir)) == QH_OK
        && (st = qh_tokenizer_load(tokpath, &tok)) == QH_OK
        && (st = qh_tokenize_file(tok, o->calib, &ids, &n_ids)) == QH_OK
        && (st = qh_calib_windows(ids, n_ids, o->nsamples, seqlen, o->seed, o->calib, &win)) == QH_OK) {
        qh_layer_visitor v = { .fn = visit_linear, .user = ctx };
        st = qh_sequential_visit(m, win, o->nsamples, seqlen, &v);
    }
    if (st == QH_OK && ctx->n_layers_run == 0)
        QH_SET_ERROR(st, QH_EINVAL, "%s: no linear layer matches --tensor '%s'", o->model_dir, o->tensor);
    free(win);
    free(ids);
    qh_tokenizer_free(tok);
    return st;
}

static int run_synthetic(layer_ctx *ctx)
{
    const layer_opts *o = ctx->o;
    qh_matd *W = qh_matd_alloc(o->rows, o->cols), *H = qh_matd_alloc(o->cols, o->cols);
    int st = (W && H) ? qh_synthetic_problem(o->synthetic, o->seed, W, H)
                      : qh_error(QH_ENOMEM, __FILE__, __LINE__, __func__, "synthetic %zu x %zu: out of memory", o->rows, o->cols);
    if (st == QH_OK) st = run_all(ctx, o->synthetic, -1, -1, 0, W, H, NULL);   /* no inputs */
    qh_matd_free(W);
    qh_matd_free(H);
    return st;
}

static const char *label_of(const char *path)
{
    const char *s = strrchr(path, '/');
    while (s && !s[1] && s > path) {                 /* trailing slash */
        const char *p = s - 1;
        while (p > path && *p != '/') p--;
        return *p == '/' ? p + 1 : p;
    }
    return s ? s + 1 : path;
}

static int write_outputs(const layer_ctx *ctx, const qh_model *m, int *n_failed)
{
    const layer_opts *o = ctx->o;
    char model_label[64];
    QH_TRY(qh_path_format(model_label, sizeof model_label, "model label", "%s",
                          o->model_dir ? label_of(o->model_dir) : o->synthetic));
    char *slash = strchr(model_label, '/');
    if (slash) *slash = '\0';
    for (size_t i = 0; i < ctx->n_cb; i++) {
        const combo *c = &ctx->cb[i];
        char id[256], path[1400];
        QH_TRY(qh_config_cell_id(id, sizeof id, model_label, c->label, c->bits, o->seed));
        QH_TRY(qh_path_format(path, sizeof path, "results file", "%s/%s.h5", o->out, id));
        int status = QH_OK;
        const char *message = "";
        for (size_t r = 0; r < c->n_recs; r++)
            if (c->recs[r].status != QH_OK && status == QH_OK) { status = c->recs[r].status; message = c->recs[r].message; }
        *n_failed += status != QH_OK;
        double seconds = 0;
        for (size_t r = 0; r < c->n_recs; r++) seconds += c->recs[r].seconds;
        qh_cell_info info = {
            .id = id, .model = model_label, .model_path = o->model_dir ? o->model_dir : "",
            .method = c->method, .params = c->params, .method_label = c->label,
            .incoherence = qh_incoh_row_of(c->incoh)->name,
            .rescale = incoh_params_of(o, c->incoh, 0).rescale, .bits = c->bits, .seed = o->seed,
            .status = status, .message = message, .seconds = seconds, .config_json = "",
            .calib_path = m ? o->calib : "", .calib_nsamples = m ? o->nsamples : 0,
            .calib_seqlen = m ? (o->seqlen ? o->seqlen : (size_t)m->cfg.max_pos) : 0,
        };
        QH_TRY(qh_cell_file_write(path, &info, c->recs, c->n_recs, NULL, 0));
        if (!o->quiet) printf("wrote %s\n", path);
    }
    return QH_OK;
}

int qh_cmd_layer(int argc, char **argv)
{
    layer_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    size_t n_cb = 0;
    combo *cb = make_combos(&o, &n_cb);
    if (!cb) return 2;
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "qh layer: cannot create output folder %s\n", o.out);
        free_combos(cb, n_cb);
        return 1;
    }
    layer_ctx ctx = { .o = &o, .cb = cb, .n_cb = n_cb };
    qh_spectrum_cache_init(&ctx.spectra);
    qh_model *m = NULL;
    int st = o.synthetic ? run_synthetic(&ctx) : run_model(&ctx, &m);
    int n_failed = 0;
    if (st == QH_OK) st = write_outputs(&ctx, m, &n_failed);
    if (st != QH_OK) fprintf(stderr, "qh layer: %s\n", qh_last_error());
    else if (n_failed) fprintf(stderr, "qh layer: %d combination(s) had failed layers (recorded in their files)\n", n_failed);
    qh_spectrum_cache_free(&ctx.spectra);
    qh_model_free(m);
    free_combos(cb, n_cb);
    return st != QH_OK || n_failed ? 1 : 0;
}
