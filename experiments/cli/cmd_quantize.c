/* cmd_quantize.c -- `qh quantize --model DIR --method NAME --out DIR`: one
 * model quantized with one method in one command.  The flags become a
 * one-cell sweep configuration (written to OUT/quantize.json), which runs
 * through qh_pipeline_run_cell exactly as `qh run` runs a cell: so
 * `qh run OUT/quantize.json --out OTHER` gives the same results file outside
 * /provenance.  Writes OUT/<cell id>.h5 and the quantized model folder
 * OUT/<cell id>/. */
#include <cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "qh_path.h"

#define MAX_LIST 32

typedef struct {
    const char *model, *method, *out, *calib, *incoherence, *variant, *layers, *label;
    const char *params[MAX_LIST], *data[MAX_LIST];
    size_t n_params, n_data;
    long bits, seed, nsamples, seqlen, eval_seqlen, max_windows;
    int quiet, no_save;
} quantize_opts;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qh quantize --model DIR --method NAME --out DIR [--bits B] [--param K=V]...\n"
        "                   [--calib FILE] [--data [LABEL=]FILE]... [--incoherence KIND]\n"
        "                   [--variant default|reference] [--layers RULES.json] [--seed S]\n"
        "                   [--nsamples N] [--seqlen L] [--eval-seqlen L] [--max-windows W]\n"
        "                   [--label L] [--no-save] [--quiet]\n\n"
        "Quantizes one model with one method, as one cell of a sweep: calibrates, quantizes\n"
        "block by block, evaluates perplexity on every --data text, and writes\n"
        "  OUT/quantize.json   the equivalent one-cell configuration (qh run OUT/quantize.json\n"
        "                      reproduces the cell)\n"
        "  OUT/<cell id>.h5    the results file, as qh run writes it\n"
        "  OUT/<cell id>/      the quantized model (float32 safetensors, config, tokenizer)\n\n"
        "options:\n"
        "  --model DIR        Hugging Face model folder\n"
        "  --method NAME      a method of `qh methods`\n"
        "  --bits B           weight bits (default 4)\n"
        "  --param K=V        a method parameter (repeatable)\n"
        "  --calib FILE       calibration text (default data/gutenberg_calib_4M.txt)\n"
        "  --data [LABEL=]FILE  an evaluation text (repeatable; label: the file's base name)\n"
        "  --incoherence K    none, kron or hadamard (default none)\n"
        "  --variant V        default or reference (configs/README.md, Variants)\n"
        "  --layers FILE      a JSON array of per-layer rules ({\"match\": ..., \"bits\": ...}),\n"
        "                     as `qh sensitivity --allocate` writes (configs/README.md)\n"
        "  --seed S           seed of every random draw (default 0)\n"
        "  --nsamples N       calibration windows (default 128)\n"
        "  --seqlen L         calibration window length (default: the model's context)\n"
        "  --eval-seqlen L    evaluation window length (default: the model's context)\n"
        "  --max-windows W    evaluation windows per text (default: all)\n"
        "  --label L          method label in the cell id (default: the method's)\n"
        "  --no-save          do not write the quantized model folder\n"
        "  --quiet            no progress lines\n");
}

static int parse_long(const char *flag, const char *arg, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (*end || end == arg || v < lo || v > hi) {
        fprintf(stderr, "qh quantize: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, arg);
        return 2;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, quantize_opts *o)
{
    static const struct option longopts[] = {
        { "model", 1, 0, 'm' }, { "method", 1, 0, 'M' }, { "out", 1, 0, 'o' }, { "bits", 1, 0, 'b' },
        { "param", 1, 0, 'p' }, { "calib", 1, 0, 'c' }, { "data", 1, 0, 'd' },
        { "incoherence", 1, 0, 'i' }, { "variant", 1, 0, 'v' }, { "layers", 1, 0, 'l' },
        { "seed", 1, 0, 's' }, { "nsamples", 1, 0, 'n' }, { "seqlen", 1, 0, 'L' },
        { "eval-seqlen", 1, 0, 'E' }, { "max-windows", 1, 0, 'W' }, { "label", 1, 0, 'B' },
        { "no-save", 0, 0, 'N' }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
    };
    memset(o, 0, sizeof *o);
    o->bits = 4;
    o->nsamples = o->seqlen = o->eval_seqlen = o->max_windows = -1;
    int c, rc = 0;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'M': o->method = optarg; break;
        case 'o': o->out = optarg; break;
        case 'c': o->calib = optarg; break;
        case 'i': o->incoherence = optarg; break;
        case 'v': o->variant = optarg; break;
        case 'l': o->layers = optarg; break;
        case 'B': o->label = optarg; break;
        case 'b': rc = parse_long("--bits", optarg, 1, 16, &o->bits); break;
        case 's': rc = parse_long("--seed", optarg, 0, 0x7fffffffL, &o->seed); break;
        case 'n': rc = parse_long("--nsamples", optarg, 1, 1 << 20, &o->nsamples); break;
        case 'L': rc = parse_long("--seqlen", optarg, 2, 1 << 20, &o->seqlen); break;
        case 'E': rc = parse_long("--eval-seqlen", optarg, 2, 1 << 20, &o->eval_seqlen); break;
        case 'W': rc = parse_long("--max-windows", optarg, 0, 1 << 30, &o->max_windows); break;
        case 'p':
        case 'd': {
            const char **list = c == 'p' ? o->params : o->data;
            size_t *n = c == 'p' ? &o->n_params : &o->n_data;
            if (*n == MAX_LIST) {
                fprintf(stderr, "qh quantize: more than %d --%s options\n", MAX_LIST, c == 'p' ? "param" : "data");
                return 2;
            }
            if (c == 'p' && (!strchr(optarg, '=') || optarg[0] == '=')) {
                fprintf(stderr, "qh quantize: --param expects KEY=VALUE, got '%s'\n", optarg);
                return 2;
            }
            list[(*n)++] = optarg;
            break;
        }
        case 'N': o->no_save = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return 2;
        }
    }
    if (rc) return rc;
    if (optind != argc) {
        fprintf(stderr, "qh quantize: unexpected argument '%s' (see qh quantize --help)\n", argv[optind]);
        return 2;
    }
    const char *missing = !o->model ? "--model" : !o->method ? "--method" : !o->out ? "--out" : NULL;
    if (missing) {
        fprintf(stderr, "qh quantize: %s is required (see qh quantize --help)\n", missing);
        return 2;
    }
    return 0;
}

/* The dataset label of "LABEL=FILE" or FILE (its base name without extension). */
static void data_label(const char *arg, char *label, size_t cap, const char **path)
{
    const char *eq = strchr(arg, '=');
    if (eq) {
        snprintf(label, cap, "%.*s", (int)(eq - arg), arg);
        *path = eq + 1;
        return;
    }
    const char *base = strrchr(arg, '/');
    base = base ? base + 1 : arg;
    const char *dot = strrchr(base, '.');
    snprintf(label, cap, "%.*s", (int)(dot && dot != base ? dot - base : (long)strlen(base)), base);
    *path = arg;
}

/* The one-cell configuration of the flags as JSON text, new; NULL after printing why. */
static char *build_config(const quantize_opts *o)
{
    cJSON *root = cJSON_CreateObject(), *method = cJSON_CreateObject(), *models = NULL;
    char *text = NULL, *rules_text = NULL;
    cJSON *rules = NULL;
    if (!root || !method) goto oom;
    cJSON_AddStringToObject(root, "name", "quantize");
    if (!(models = cJSON_AddArrayToObject(root, "models"))) goto oom;
    cJSON_AddItemToArray(models, cJSON_CreateString(o->model));
    if (o->n_data) {
        cJSON *ds = cJSON_AddObjectToObject(root, "datasets");
        for (size_t k = 0; ds && k < o->n_data; k++) {
            char label[64];
            const char *path;
            data_label(o->data[k], label, sizeof label, &path);
            cJSON_AddStringToObject(ds, label, path);
        }
    }
    if (o->calib || o->nsamples > 0 || o->seqlen > 0) {
        cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
        if (cal && o->calib) cJSON_AddStringToObject(cal, "data", o->calib);
        if (cal && o->nsamples > 0) cJSON_AddNumberToObject(cal, "nsamples", (double)o->nsamples);
        if (cal && o->seqlen > 0) cJSON_AddNumberToObject(cal, "seqlen", (double)o->seqlen);
    }
    if (o->eval_seqlen > 0 || o->max_windows >= 0) {
        cJSON *ev = cJSON_AddObjectToObject(root, "eval");
        if (ev && o->eval_seqlen > 0) cJSON_AddNumberToObject(ev, "seqlen", (double)o->eval_seqlen);
        if (ev && o->max_windows >= 0) cJSON_AddNumberToObject(ev, "max_windows", (double)o->max_windows);
    }
    cJSON_AddStringToObject(method, "method", o->method);
    if (o->label) cJSON_AddStringToObject(method, "label", o->label);
    if (o->incoherence) cJSON_AddStringToObject(method, "incoherence", o->incoherence);
    if (o->variant) cJSON_AddStringToObject(method, "variant", o->variant);
    if (o->n_params) {
        cJSON *ps = cJSON_AddObjectToObject(method, "params");
        for (size_t k = 0; ps && k < o->n_params; k++) {
            const char *eq = strchr(o->params[k], '=');
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - o->params[k]), o->params[k]);
            cJSON_AddStringToObject(ps, key, eq + 1);
        }
    }
    if (o->layers) {
        if (!(rules_text = qh_read_text_file(o->layers))) {
            fprintf(stderr, "qh quantize: cannot read --layers %s\n", o->layers);
            goto fail;
        }
        if (!(rules = cJSON_Parse(rules_text))) {
            fprintf(stderr, "qh quantize: --layers %s is not valid JSON\n", o->layers);
            goto fail;
        }
        cJSON_AddItemToObject(method, "layers", rules);   /* checked as the config's "layers" */
        rules = NULL;
    }
    cJSON *methods = cJSON_AddArrayToObject(root, "methods");
    if (!methods) goto oom;
    cJSON_AddItemToArray(methods, method);
    method = NULL;
    cJSON *bits = cJSON_AddArrayToObject(root, "bits"), *seeds = cJSON_AddArrayToObject(root, "seeds");
    if (!bits || !seeds) goto oom;
    cJSON_AddItemToArray(bits, cJSON_CreateNumber((double)o->bits));
    cJSON_AddItemToArray(seeds, cJSON_CreateNumber((double)o->seed));
    text = cJSON_Print(root);
    if (!text) goto oom;
    goto done;
oom:
    fprintf(stderr, "qh quantize: out of memory\n");
fail:
    free(text);
    text = NULL;
done:
    cJSON_Delete(rules);
    cJSON_Delete(method);
    cJSON_Delete(root);
    free(rules_text);
    return text;
}

/* OUT/quantize.json (temporary name, then rename). */
static int write_config(const char *out, const char *json)
{
    char path[1100], tmp[1200];
    if (qh_path_format(path, sizeof path, "configuration", "%s/quantize.json", out) != QH_OK
        || qh_path_format(tmp, sizeof tmp, "configuration", "%s.tmp.%ld", path, (long)getpid()) != QH_OK)
        return 1;
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(json, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        fprintf(stderr, "qh quantize: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int qh_cmd_quantize(int argc, char **argv)
{
    quantize_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    struct stat sb;
    if (stat(o.out, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "qh quantize: --out %s is an existing file, expected a folder\n", o.out);
        return 1;
    }
    char *json = build_config(&o);
    if (!json) return 1;
    qh_config *cfg = NULL;
    qh_cell *cells = NULL;
    size_t n = 0;
    int st = qh_config_parse(json, "qh quantize", &cfg);
    if (st == QH_OK) st = qh_pipeline_validate(cfg);
    if (st == QH_OK) st = qh_config_cells(cfg, &cells, &n);
    if (st != QH_OK) {
        fprintf(stderr, "qh quantize: %s\n", qh_last_error());
        rc = 1;
    } else if (qh_path_mkdirs(o.out) != 0) {
        fprintf(stderr, "qh quantize: cannot create %s: %s\n", o.out, qh_last_error());
        rc = 1;
    } else {
        rc = write_config(o.out, json);
    }
    if (rc == 0) {
        qh_pipeline p = { cfg, json, o.out, o.quiet ? NULL : stderr, o.no_save ? NULL : o.out, NULL };
        char path[1400];
        st = qh_pipeline_run_cell(&p, &cells[0]);
        if (qh_pipeline_cell_path(&p, &cells[0], path, sizeof path) != QH_OK) path[0] = '\0';
        if (st != QH_OK) {
            fprintf(stderr, "qh quantize: %s failed (recorded in %s)\n", cells[0].id, path);
            rc = 1;
        } else {
            printf("%s: results %s\n", cells[0].id, path);
            if (!o.no_save) printf("%s: model %s/%s\n", cells[0].id, o.out, cells[0].id);
        }
    }
    free(cells);
    qh_config_free(cfg);
    free(json);
    return rc;
}
