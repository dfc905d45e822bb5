/* bench_outliers.c -- activation outlier statistics of every decoder linear
 * input before and after smoothing and rotation (issue 16's figure).
 *
 * Per model (opt-7m, llama-9m, ../shared/models/opt-30m when present) and
 * transform (none; SmoothQuant alpha 0.5; the Hadamard rotation, seed 0),
 * on 8 calibration windows of 512 tokens of data/gutenberg_calib_4M.txt (qh_calib_windows, seed
 * 0; SmoothQuant's maxima come from the same windows):
 *   ratio   max_j a_j / median_j a_j, a_j = max_t |x_j,t| (per layer input:
 *           q/k/v, gate/up (fc1), down (fc2, after the online Hadamard when
 *           rotated), o_proj);
 *   err_a4  ||Q(X) - X||_F / ||X||_F with Q the per-token symmetric 4-bit
 *           quantizer (clip 1) over the windows;
 *   err_rs  the same with Runtime Smooth (whole window, per channel) first.
 * Writes a TSV (argument 1, default stdout): model, transform, layer, input,
 * dim, ratio, err_a4, err_rs.  analysis/plots/outliers.gp draws it.  A
 * measurement, never a pass/fail test.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/act_quant.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/rotate.h"
#include "pipeline/calib.h"
#include "pipeline/transform.h"
#include "tokenizer/tokenizer.h"

static const char *const input_names[QH_ABSMAX_GROUPS] = { "qkv", "fc1", "fc2", "o" };

typedef struct {
    const qh_model *m;
    double *err2, *err2_rs, *norm2;  /* (layers x groups) */
    float *y, *s;
    size_t *idx;
} err_ctx;

static int err_hook(int layer, int kind, const float *X, size_t in, size_t T, void *user)
{
    err_ctx *c = user;
    int gated = c->m->cfg.features.gated_mlp;
    int g = kind == QH_LIN_Q ? 0 : kind == (gated ? QH_LIN_GATE : QH_LIN_UP) ? 1
          : kind == QH_LIN_DOWN ? 2 : kind == QH_LIN_O ? 3 : -1;
    if (g < 0) return QH_OK;
    size_t k = (size_t)layer * QH_ABSMAX_GROUPS + (size_t)g;
    qh_act_quant aq = { .act = { .bits = 4, .clip = 1.0f }, .kv = qh_quant_spec_off(), .smooth = 1 };
    qh_fake_quant(&aq.act, X, c->y, in, T);
    for (size_t i = 0; i < in * T; i++) {
        double e = (double)c->y[i] - X[i];
        c->err2[k] += e * e;
        c->norm2[k] += (double)X[i] * X[i];
    }
    qh_runtime_smooth_quant(&aq, X, c->y, in, T, c->s, c->idx);
    for (size_t i = 0; i < in * T; i++) {
        double e = (double)c->y[i] - X[i];
        c->err2_rs[k] += e * e;
    }
    return QH_OK;
}

static int measure(FILE *out, const char *label, const char *tname, qh_model *m,
                   const int32_t *win, size_t ns, size_t T)
{
    double **a = NULL;
    size_t dims[QH_ABSMAX_GROUPS];
    QH_TRY(qh_absmax_collect(m, win, ns, T, &a, dims));
    size_t L = (size_t)m->cfg.n_layers, G = QH_ABSMAX_GROUPS, wide = 0;
    for (size_t g = 0; g < G; g++) wide = dims[g] > wide ? dims[g] : wide;
    err_ctx c = { m, calloc(L * G, sizeof(double)), calloc(L * G, sizeof(double)),
                  calloc(L * G, sizeof(double)), malloc(wide * T * sizeof(float)),
                  malloc(wide * sizeof(float)), malloc(wide * sizeof(size_t)) };
    qh_forward_ws *ws = NULL;
    int st = c.err2 && c.err2_rs && c.norm2 && c.y && c.s && c.idx ? QH_OK : QH_ENOMEM;
    if (st == QH_OK) st = qh_forward_ws_alloc(m, T, &ws);
    qh_forward_hook hook = { err_hook, &c };
    for (size_t w = 0; st == QH_OK && w < ns; w++) {
        st = qh_forward_embed(m, win + w * T, T, ws, ws->x);
        for (int l = 0; st == QH_OK && l < m->cfg.n_layers; l++)
            st = qh_forward_block(m, l, ws->x, T, ws, &hook);
    }
    double *tmp = malloc(wide * sizeof *tmp);
    for (size_t l = 0; st == QH_OK && tmp && l < L; l++)
        for (size_t g = 0; g < G; g++) {
            size_t n = dims[g], k = l * G + g;
            double mx = 0;
            memcpy(tmp, a[k], n * sizeof *tmp);
            for (size_t j = 0; j < n; j++) mx = fmax(mx, tmp[j]);
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && tmp[j - 1] > tmp[j]; j--) {
                    double t = tmp[j]; tmp[j] = tmp[j - 1]; tmp[j - 1] = t;
                }
            fprintf(out, "%s\t%s\t%zu\t%s\t%zu\t%.4f\t%.5f\t%.5f\n", label, tname, l,
                    input_names[g], n, mx / tmp[n / 2], sqrt(c.err2[k] / c.norm2[k]),
                    sqrt(c.err2_rs[k] / c.norm2[k]));
        }
    free(tmp);
    qh_forward_ws_free(ws);
    free(c.err2); free(c.err2_rs); free(c.norm2); free(c.y); free(c.s); free(c.idx);
    qh_absmax_free(a, m);
    return st;
}

int main(int argc, char **argv)
{
    const char *dirs[] = { "models/opt-7m", "models/llama-9m", "../shared/models/opt-30m" };
    const char *labels[] = { "opt-7m", "llama-9m", "opt-30m" };
    const char *tnames[] = { "none", "smooth", "rotate" };
    FILE *out = argc > 1 ? fopen(argv[1], "w") : stdout;
    if (!out) { perror(argv[1]); return 1; }
    fprintf(out, "model\ttransform\tlayer\tinput\tdim\tratio\terr_a4\terr_rs\n");
    size_t ns = 8, T = 512;
    for (size_t d = 0; d < 3; d++) {
        if (access(dirs[d], R_OK) != 0) continue;
        char path[1200];
        qh_tokenizer *tok = NULL;
        int32_t *ids = NULL, *win = NULL;
        size_t n = 0;
        snprintf(path, sizeof path, "%s/tokenizer.json", dirs[d]);
        int st = qh_tokenizer_load(path, &tok);
        if (st == QH_OK) st = qh_tokenize_file(tok, "data/gutenberg_calib_4M.txt", &ids, &n);
        if (st == QH_OK) st = qh_calib_windows(ids, n, ns, T, 0, "gutenberg_calib_4M", &win);
        for (int t = 0; st == QH_OK && t < 3; t++) {
            qh_model *m = NULL;
            qh_model_transform tf = { .rotate = t == 2, .smooth_alpha = t == 1 ? 0.5 : 0.0 };
            st = qh_model_load(dirs[d], &m);
            if (st == QH_OK) st = qh_transform_apply(m, &tf, win, ns, T, 0, labels[d]);
            if (st == QH_OK) st = measure(out, labels[d], tnames[t], m, win, ns, T);
            qh_model_free(m);
        }
        if (st != QH_OK) fprintf(stderr, "%s: %s\n", dirs[d], qh_last_error());
        free(ids); free(win);
        qh_tokenizer_free(tok);
        if (st != QH_OK) return 1;
    }
    if (out != stdout) fclose(out);
    return 0;
}
