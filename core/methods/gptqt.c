/* gptqt.c -- GPTQT (methods reference §9; paper only, details recalled):
 *   1. GPTQ (core/methods/gptq.c, qh_gptq_run) at inter_bits (default
 *      bits + 1) on the per-row (or per-group) asymmetric min-max grid, every
 *      step Δ multiplied by the re-explore factor s after it is fitted
 *      (the zero z kept), rounding to nearest with GPTQ's error feedback.
 *   2. Per row (or group): the integer levels q ∈ 0..2^inter−1 in use,
 *      weighted by their counts, valued Δ(q − z), re-coded as BCQ with
 *      k = bits terms, w ≈ Σ α_i b_i + offset (qh_bcq_fit: ALS or brute
 *      force); every weight of a level takes that level's BCQ value.  The
 *      re-coding error is not fed back (the paper's step 2 follows step 1).
 *   3. Re-explore: s runs over reexplore_n values evenly spaced in
 *      [reexplore_lo, reexplore_hi] (default 0.8..1.2, 5 values); the s of
 *      least final proxy tr((Ŵ−W)H(Ŵ−W)ᵀ) (undamped H) is kept and steps
 *      1-2 rerun with it.
 * Bits: k nominal + (16k + 16)/g side (k FP16 α and an FP16 offset per row
 * or group; methods reference §9).  The row takes bits 1..4 (k).
 * Documented choices (the paper gives no code): levels weighted by counts,
 * not by H; z kept when Δ is scaled; act-order off.
 */
#include "gptqt.h"
#include "gptq.h"
#include "qh_flops.h"
#include "qh_linalg.h"
#include "qh_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GP(k, t, f, d, l, h, ch, doc) { k, t, offsetof(qh_gptqt_params, f), d, l, h, ch, doc, NULL }
static const qh_param_desc gptqt_params[] = {
    GP("inter_bits", QH_PARAM_INT, inter_bits, 0, 0, 8, NULL,
       "step-1 GPTQ width (0: bits + 1; must exceed bits)"),
    GP("group", QH_PARAM_INT, group, 0, 0, 1 << 20, NULL,
       "columns per group of the step-1 grid and of the BCQ (0: per row; must divide n)"),
    GP("fit", QH_PARAM_ENUM, fit, QH_BCQ_FIT_ALS, 0, 0, "als|brute",
       "BCQ fit of the levels: alternating least squares, or the exact brute force (k <= 3, "
       "few levels)"),
    GP("als_iters", QH_PARAM_INT, als_iters, 20, 0, 10000, NULL, "ALS rounds (stops when stable)"),
    GP("reexplore_lo", QH_PARAM_DOUBLE, reexplore_lo, 0.8, 0.05, 10, NULL,
       "smallest step-1 scale multiplier searched"),
    GP("reexplore_hi", QH_PARAM_DOUBLE, reexplore_hi, 1.2, 0.05, 10, NULL,
       "largest step-1 scale multiplier searched"),
    GP("reexplore_n", QH_PARAM_INT, reexplore_n, 5, 1, 101, NULL,
       "multipliers searched, evenly spaced (1: reexplore_lo only)"),
    GP("damp", QH_PARAM_DOUBLE, damp, 0.01, 0, 1, NULL,
       "H += damp*mean(live diag H)*I (raised tenfold per failed Cholesky)"),
    { 0 },
};

void qh_gptqt_bits(int k, size_t g, double *nominal, double *side)
{
    if (nominal) *nominal = (double)k;
    if (side) *side = (16.0 * k + 16.0) / (double)g;
}

/* ---- BCQ fit ---------------------------------------------------------------- */

double qh_bcq_value(const double *alpha, double offset, int k, unsigned p)
{
    double v = offset;
    for (int i = 0; i < k; i++) v += (p >> i & 1u) ? alpha[i] : -alpha[i];
    return v;
}

/* Weighted least squares for (α, offset) with the patterns fixed: normal
 * equations of [b_0 .. b_{k−1} 1], a small ridge against singular systems
 * (fewer distinct levels than unknowns).  Returns the weighted SSE. */
static double solve_ls(const double *v, const double *c, size_t L, int k, const unsigned *pat,
                       double *alpha, double *offset)
{
    int d = k + 1;
    double A[(QH_BCQ_MAX_K + 1) * (QH_BCQ_MAX_K + 2)] = { 0 };
    double x[QH_BCQ_MAX_K + 1] = { 0 };
    int ld = d + 1;                  /* augmented rows of d + 1 */
    for (size_t l = 0; l < L; l++) {
        double row[QH_BCQ_MAX_K + 1];
        for (int i = 0; i < k; i++) row[i] = (pat[l] >> i & 1u) ? 1.0 : -1.0;
        row[k] = 1.0;
        for (int a = 0; a < d; a++) {
            for (int b = 0; b < d; b++) A[a * ld + b] += c[l] * row[a] * row[b];
            A[a * ld + d] += c[l] * row[a] * v[l];
        }
    }
    double tr = 0.0;
    for (int a = 0; a < d; a++) tr += A[a * ld + a];
    for (int a = 0; a < d; a++) A[a * ld + a] += 1e-12 * (tr > 0 ? tr : 1.0);
    for (int col = 0; col < d; col++) {           /* Gaussian elimination, partial pivoting */
        int piv = col;
        for (int r = col + 1; r < d; r++)
            if (fabs(A[r * ld + col]) > fabs(A[piv * ld + col])) piv = r;
        if (piv != col)
            for (int b = 0; b <= d; b++) {
                double t = A[col * ld + b];
                A[col * ld + b] = A[piv * ld + b];
                A[piv * ld + b] = t;
            }
        for (int r = col + 1; r < d; r++) {
            double f = A[r * ld + col] / A[col * ld + col];
            for (int b = col; b <= d; b++) A[r * ld + b] -= f * A[col * ld + b];
        }
    }
    for (int r = d - 1; r >= 0; r--) {
        double s = A[r * ld + d];
        for (int b = r + 1; b < d; b++) s -= A[r * ld + b] * x[b];
        x[r] = s / A[r * ld + r];
    }
    for (int i = 0; i < k; i++) alpha[i] = x[i];
    *offset = x[k];
    double sse = 0.0;
    for (size_t l = 0; l < L; l++) {
        double e = v[l] - qh_bcq_value(alpha, *offset, k, pat[l]);
        sse += c[l] * e * e;
    }
    return sse;
}

static unsigned nearest_pattern(double v, const double *alpha, double offset, int k)
{
    unsigned best = 0;
    double be = INFINITY;
    for (unsigned p = 0; p < (1u << k); p++) {
        double e = fabs(v - qh_bcq_value(alpha, offset, k, p));
        if (e < be) { be = e; best = p; }
    }
    return best;
}

static double fit_als(const double *v, const double *c, size_t L, int k, int iters,
                      double *alpha, double *offset, unsigned *pat)
{
    double cw = 0.0, mean = 0.0;
    for (size_t l = 0; l < L; l++) { cw += c[l]; mean += c[l] * v[l]; }
    mean = cw > 0 ? mean / cw : 0.0;
    *offset = mean;
    double r[256];
    for (size_t l = 0; l < L; l++) { r[l] = v[l] - mean; pat[l] = 0; }
    for (int i = 0; i < k; i++) {
        double a = 0.0;
        for (size_t l = 0; l < L; l++) a += c[l] * fabs(r[l]);
        alpha[i] = cw > 0 ? a / cw : 0.0;
        for (size_t l = 0; l < L; l++) {
            int plus = r[l] >= 0.0;
            if (plus) pat[l] |= 1u << i;
            r[l] -= plus ? alpha[i] : -alpha[i];
        }
    }
    double sse = 0.0;
    for (size_t l = 0; l < L; l++) sse += c[l] * r[l] * r[l];
    for (int it = 0; it < iters; it++) {
        double a2[QH_BCQ_MAX_K], o2;
        double s2 = solve_ls(v, c, L, k, pat, a2, &o2);
        if (s2 <= sse) { memcpy(alpha, a2, (size_t)k * sizeof *alpha); *offset = o2; sse = s2; }
        size_t changed = 0;
        for (size_t l = 0; l < L; l++) {
            unsigned p = nearest_pattern(v[l], alpha, *offset, k);
            if (p != pat[l]) { pat[l] = p; changed++; }
        }
        double s3 = 0.0;
        for (size_t l = 0; l < L; l++) {
            double e = v[l] - qh_bcq_value(alpha, *offset, k, pat[l]);
            s3 += c[l] * e * e;
        }
        sse = s3;
        if (!changed) break;
    }
    return sse;
}

/* The orders of the 2^k codes, ascending, that a sorted α_0 ≥ α_1 ≥ ... ≥ 0
 * can give (pattern bit i = sign of α_i). */
static const unsigned order_k1[] = { 0, 1 };
static const unsigned order_k2[] = { 0, 2, 1, 3 };
static const unsigned order_k3a[] = { 0, 4, 2, 6, 1, 5, 3, 7 };   /* α1 + α2 ≤ α0 */
static const unsigned order_k3b[] = { 0, 4, 2, 1, 6, 5, 3, 7 };   /* α1 + α2 ≥ α0 */

typedef struct {
    const double *v, *c;
    size_t L;
    int k;
    const unsigned *order;
    unsigned *pat, *best_pat;
    double best, *alpha, *offset;
} brute_ctx;

static void brute_rec(brute_ctx *b, size_t l, unsigned cell)
{
    size_t C = (size_t)1 << b->k;
    if (l == b->L) {
        double a[QH_BCQ_MAX_K], o;
        double s = solve_ls(b->v, b->c, b->L, b->k, b->pat, a, &o);
        if (s < b->best) {
            b->best = s;
            memcpy(b->alpha, a, (size_t)b->k * sizeof *a);
            *b->offset = o;
            memcpy(b->best_pat, b->pat, b->L * sizeof *b->pat);
        }
        return;
    }
    for (unsigned t = cell; t < C; t++) {
        b->pat[l] = b->order[t];
        brute_rec(b, l + 1, t);
    }
}

static double binom(size_t n, size_t r)
{
    double x = 1.0;
    for (size_t i = 1; i <= r; i++) x = x * (double)(n - r + i) / (double)i;
    return x;
}

int qh_bcq_fit(const double *v, const double *c, size_t L, int k, int method, int iters,
               double *alpha, double *offset, unsigned *pattern, double *sse)
{
    if (k < 1 || k > QH_BCQ_MAX_K)
        QH_ERROR(QH_EINVAL, "BCQ with k = %d terms: expected 1..%d", k, QH_BCQ_MAX_K);
    if (L > 256) QH_ERROR(QH_EINVAL, "BCQ of %zu levels: at most 256 (8-bit step 1)", L);
    if (method == QH_BCQ_FIT_ALS) {
        *sse = fit_als(v, c, L, k, iters, alpha, offset, pattern);
        return QH_OK;
    }
    if (k > QH_BCQ_BRUTE_MAX_K)
        QH_ERROR(QH_EINVAL, "fit \"brute\" with k = %d terms: at most %d (2^k <= 8 codes); use "
                 "fit \"als\"", k, QH_BCQ_BRUTE_MAX_K);
    size_t C = (size_t)1 << k;
    double count = binom(L + C - 1, L) * (k == 3 ? 2 : 1);
    if (count > QH_BCQ_BRUTE_MAX_ASSIGNMENTS)
        QH_ERROR(QH_EINVAL, "fit \"brute\": %zu levels onto %zu codes is %.0f assignments (at "
                 "most %d); use fit \"als\" or a smaller inter_bits", L, C, count,
                 QH_BCQ_BRUTE_MAX_ASSIGNMENTS);
    unsigned pat[256];
    const unsigned *orders[2] = { k == 1 ? order_k1 : k == 2 ? order_k2 : order_k3a, order_k3b };
    brute_ctx b = { v, c, L, k, NULL, pat, pattern, INFINITY, alpha, offset };
    for (int o = 0; o < (k == 3 ? 2 : 1); o++) {
        b.order = orders[o];
        brute_rec(&b, 0, 0);
    }
    *sse = b.best;
    return QH_OK;
}

/* ---- the row ------------------------------------------------------------------ */

typedef struct {
    qh_grid *g;
    double s;                        /* the re-explore multiplier */
} scaled_grid;

static void scaled_fit(void *ctx, const qh_matd *Wp, size_t c0, size_t nc, size_t gi)
{
    scaled_grid *sg = ctx;
    qh_grid_fit(sg->g, Wp, c0, nc, gi);
    for (size_t r = 0; r < sg->g->rows; r++) sg->g->step[r + gi * sg->g->rows] *= sg->s;
}

static double scaled_round(void *ctx, size_t row, size_t gi, double w)
{
    const scaled_grid *sg = ctx;
    return qh_grid_round(sg->g, row, gi, w, 0.5);
}

static qh_quant_params step1_params(const qh_gptqt_params *p)
{
    return (qh_quant_params){ .grid = QH_GRID_MINMAX, .group = p->group, .clamp = 1,
                              .damp = p->damp, .blocksize = 128 };
}

static size_t gptqt_workspace_size(const void *params, size_t m, size_t n)
{
    qh_quant_params qp = step1_params(params);
    return qh_gptq_workspace_size(&qp, m, n) + qh_ws_round(n * n * sizeof(double)) + QH_WS_ALIGN;
}

/* Step 2 on out->What_proc with out->grid (the scaled step-1 grid). */
static int recode(const qh_gptqt_params *p, int k, qh_result *out, const char *name)
{
    qh_grid *g = &out->grid;
    size_t m = g->rows, gs = g->group;
    size_t nq = (size_t)g->maxq + 1;
    double cnt[256], v[256], c[256], alpha[QH_BCQ_MAX_K], offset, sse, val[256];
    unsigned pat[256];
    size_t idx[256];
    for (size_t gi = 0; gi < g->n_groups; gi++)
        for (size_t r = 0; r < m; r++) {
            double d = g->step[r + gi * m], z = g->zero[r + gi * m];
            memset(cnt, 0, sizeof cnt);
            for (size_t j = gi * gs; j < (gi + 1) * gs; j++) {
                double q = floor(QH_AT(out->What_proc, r, j) / d + z + 0.5);
                cnt[(size_t)fmin(fmax(q, 0.0), g->maxq)] += 1.0;
            }
            size_t L = 0;
            for (size_t q = 0; q < nq; q++)
                if (cnt[q] > 0) { v[L] = d * ((double)q - z); c[L] = cnt[q]; idx[L++] = q; }
            int st = qh_bcq_fit(v, c, L, k, p->fit, p->als_iters, alpha, &offset, pat, &sse);
            if (st != QH_OK)
                QH_ERROR(st, "%s: row %zu group %zu: %s", name, r, gi, qh_last_error());
            for (size_t l = 0; l < L; l++) val[idx[l]] = qh_bcq_value(alpha, offset, k, pat[l]);
            for (size_t j = gi * gs; j < (gi + 1) * gs; j++) {
                double q = floor(QH_AT(out->What_proc, r, j) / d + z + 0.5);
                QH_AT(out->What_proc, r, j) = val[(size_t)fmin(fmax(q, 0.0), g->maxq)];
            }
        }
    return QH_OK;
}

static int run_once(const qh_gptqt_params *p, const qh_problem *in, const qh_problem *step1,
                    double s, qh_result *out, void *work)
{
    out->n_dead_cols = 0;
    out->n_damp_retries = 0;
    qh_grid_free(&out->grid);
    scaled_grid sg = { &out->grid, s };
    qh_gptq_rounding rnd = { scaled_fit, scaled_round, &sg };
    qh_quant_params qp = step1_params(p);
    QH_TRY(qh_gptq_run(&qp, step1, out, work, &rnd));
    return recode(p, in->bits, out, in->name ? in->name : "layer");
}

static int gptqt_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_gptqt_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    const char *name = in->name ? in->name : "layer";
    int inter = p->inter_bits ? p->inter_bits : in->bits + 1;
    if (inter <= in->bits || inter > 8)
        QH_ERROR(QH_EINVAL, "%s: gptqt inter_bits = %d must exceed bits = %d (and be <= 8)", name,
                 inter, in->bits);
    if (p->group && n % (size_t)p->group)
        QH_ERROR(QH_EINVAL, "%s: gptqt group = %d does not divide the %zu input columns", name,
                 p->group, n);
    if (!in->H) QH_ERROR(QH_EINVAL, "%s: gptqt needs a Hessian H", name);
    /* H kept aside: the driver may pass out->H_proc itself, which GPTQ damps. */
    qh_matd H0 = { n, n, n, (double *)work, 0 };
    for (size_t j = 0; j < n; j++) memcpy(&QH_AT(&H0, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
    qh_symmetrize_upper(&H0);
    void *rest = (char *)work + qh_ws_round(n * n * sizeof(double));
    qh_problem step1 = *in;
    step1.bits = inter;
    step1.H = &H0;
    double best = INFINITY, best_s = p->reexplore_lo;
    for (int t = 0; t < p->reexplore_n; t++) {
        double s = p->reexplore_n == 1 ? p->reexplore_lo
                 : p->reexplore_lo + (p->reexplore_hi - p->reexplore_lo) * t / (p->reexplore_n - 1);
        QH_TRY(run_once(p, in, &step1, s, out, rest));
        double loss;
        QH_TRY(qh_lin_proxy_loss(in->W, out->What_proc, &H0, &loss));
        if (loss < best) { best = loss; best_s = s; }
        out->n_iterations++;
    }
    if (p->reexplore_n > 1) QH_TRY(run_once(p, in, &step1, best_s, out, rest));
    qh_grid_free(&out->grid);
    memset(&out->grid, 0, sizeof out->grid);
    qh_gptqt_bits(in->bits, p->group ? (size_t)p->group : n, &out->bits_nominal, &out->bits_side);
    (void)m;
    return QH_OK;
}

/* GPTQ, then `als_iters` rounds of binary-coding least squares (20 m n each). */
static double gptqt_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    const qh_gptqt_params *p = params;
    double m = (double)rows, n = (double)cols;
    return qh_flops_feedback(m, n) + p->als_iters * 20 * m * n;
}

const qh_method_type qh_method_gptqt = {
    .name = "gptqt",
    .display = "GPTQT",
    .display_order = 86,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = QH_NEEDS_HESSIAN,
    .summary = "GPTQT: GPTQ at bits+1, levels re-coded as k = bits term binary-coding "
               "quantization (ALS or brute force), step-1 scale re-explored (bits 1..4)",
    .params = gptqt_params,
    .params_size = sizeof(qh_gptqt_params),
    .workspace_size = gptqt_workspace_size,
    .quantize = gptqt_quantize,
    .min_bits = 1,
    .max_bits = 4,
    .flops = gptqt_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
