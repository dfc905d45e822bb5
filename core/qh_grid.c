/* qh_grid.c -- fitting of the uniform scalar grids (OPTQ min-max per row,
 * QuIP 2.4·RMS per matrix, the theory's integer grid).  See qh_grid.h. */
#include "qh_grid.h"

#include <math.h>
#include <stdlib.h>

int qh_grid_init(qh_grid *g, qh_grid_kind kind, int bits, int clamp, double rho,
                 size_t rows, size_t cols, size_t group)
{
    g->step = g->zero = NULL;
    if (bits < 1 || bits > 8)
        QH_ERROR(QH_EINVAL, "bits = %d: expected 1..8", bits);
    if (kind != QH_GRID_MINMAX && kind != QH_GRID_RMS && kind != QH_GRID_INTEGER)
        QH_ERROR(QH_EINVAL, "unknown grid kind %d", (int)kind);
    if (group && kind != QH_GRID_MINMAX)
        QH_ERROR(QH_EINVAL, "group = %zu: groups are defined only for grid=minmax", group);
    if (group && cols % group != 0)
        QH_ERROR(QH_EINVAL, "group = %zu does not divide the %zu input columns", group, cols);
    if (kind == QH_GRID_RMS && !(rho > 0.0))
        QH_ERROR(QH_EINVAL, "rho = %g: expected > 0", rho);
    g->kind = kind;
    g->bits = bits;
    g->clamp = clamp;
    g->ties_even = 0;                /* the caller sets it after init */
    g->sym = g->mse = 0;
    g->maxq = (double)((1u << bits) - 1u);
    g->rho = rho;
    g->rows = rows;
    g->group = group ? group : cols;
    g->n_groups = group ? cols / group : 1;
    size_t cells = (rows && g->n_groups) ? rows * g->n_groups : 1;
    g->step = malloc(cells * sizeof *g->step);
    g->zero = malloc(cells * sizeof *g->zero);
    if (!g->step || !g->zero) {
        qh_grid_free(g);
        QH_ERROR(QH_ENOMEM, "grid tables %zu x %zu", rows, g->n_groups);
    }
    for (size_t k = 0; k < cells; k++) { g->step[k] = 1.0; g->zero[k] = 0.0; }
    return QH_OK;
}

void qh_grid_free(qh_grid *g)
{
    free(g->step);
    free(g->zero);
    g->step = g->zero = NULL;
}

/* (Δ, z) of the range [lo, hi] (0 inside it) into cell k. */
static void set_range(qh_grid *g, size_t k, double lo, double hi)
{
    if (g->sym) {
        double half = (double)(1u << (g->bits - 1));
        double d = fmax(-lo, hi) / (half - 1.0);
        g->step[k] = d;
        g->zero[k] = half;
    } else {
        double d = (hi - lo) / g->maxq;
        g->step[k] = d;
        g->zero[k] = nearbyint(-lo / d);   /* torch.round: half to even */
    }
}

/* The shrink search's error of the current (Δ, z) of cell k on the row's
 * weights x (nc), summed in column order; it stops once the sum exceeds
 * `limit` (reaches it when `strict`): the terms are ≥ 0, so a rounded partial
 * sum never exceeds the full one, and a stopped candidate could not have been
 * kept. */
static double clip_error(const qh_grid *g, size_t r, size_t gi, const double *x, size_t stride,
                         size_t nc, double limit, int strict)
{
    double err = 0.0;
    for (size_t j = 0; j < nc; j++) {
        double v = x[j * stride];
        err += pow(fabs(qh_grid_round(g, r, gi, v, 0.5) - v), QH_GRID_MSE_NORM);
        if (strict ? err >= limit : err > limit) break;
    }
    return err;
}

/* Row r of W is grid row r0 + r. */
static void fit_minmax(qh_grid *g, const qh_matd *W, size_t r0, size_t c0, size_t nc, size_t gi)
{
    /* The search reads a row 80 times: a contiguous copy saves 80 strided
     * passes over the column-major W (without memory, W is read in place). */
    double *row = g->mse ? malloc(nc * sizeof *row) : NULL;
    /* Without the search, the ranges come from one pass down the columns
     * (contiguous; the same fmin/fmax per row in the same column order, so
     * the same values as the row by row scan, which strides through W). */
    double *rlo = g->mse ? NULL : malloc(2 * W->rows * sizeof *rlo), *rhi = rlo ? rlo + W->rows : NULL;
    if (rlo) {
        for (size_t r = 0; r < W->rows; r++) rlo[r] = rhi[r] = 0.0;
        for (size_t j = c0; j < c0 + nc; j++) {
            const double *x = &QH_AT(W, 0, j);
            for (size_t r = 0; r < W->rows; r++) {
                rlo[r] = fmin(rlo[r], x[r]);
                rhi[r] = fmax(rhi[r], x[r]);
            }
        }
    }
    int hint = 0;                    /* the previous row's shrink: neighbours' are alike */
    for (size_t r = 0; r < W->rows; r++) {
        double lo = 0.0, hi = 0.0;   /* the range always contains 0 (OPTQ) */
        if (rlo) {
            lo = rlo[r];
            hi = rhi[r];
        } else
            for (size_t j = c0; j < c0 + nc; j++) {
                double x = QH_AT(W, r, j);
                lo = fmin(lo, x);
                hi = fmax(hi, x);
                if (row) row[j - c0] = x;
            }
        if (g->sym) {
            hi = fmax(-lo, hi);
            lo = -hi;
        }
        if (lo == 0.0 && hi == 0.0) { lo = -1.0; hi = 1.0; }
        size_t k = r0 + r + gi * g->rows;
        set_range(g, k, lo, hi);
        if (!g->mse) continue;
        const double *x = row ? row : &QH_AT(W, r, c0);
        size_t stride = row ? 1 : W->ld;
        /* The kept shrink is the first of least error, as a scan in order
         * keeps it; trying the hint first only lets the others stop early
         * (a candidate before the best so far still wins a tie). */
        double best = INFINITY, bd = g->step[k], bz = g->zero[k];
        int bi = QH_GRID_MSE_STEPS;
        for (int t = -1; t < QH_GRID_MSE_STEPS; t++) {
            int i = t < 0 ? hint : t;
            if (t == hint) continue;
            double p = 1.0 - (double)i / QH_GRID_MSE_GRID;
            set_range(g, k, p * lo, p * hi);
            double err = clip_error(g, r0 + r, gi, x, stride, nc, best, i > bi);
            if (err < best || (err == best && i < bi)) {
                best = err;
                bi = i;
                bd = g->step[k];
                bz = g->zero[k];
            }
        }
        if (bi < QH_GRID_MSE_STEPS) hint = bi;
        g->step[k] = bd;
        g->zero[k] = bz;
    }
    free(row);
    free(rlo);
}

static void fit_rms(qh_grid *g, const qh_matd *W, size_t c0, size_t nc, size_t gi)
{
    /* Extended precision makes s (nearly always) independent of the order of
     * rows and columns, so permuting W permutes Ŵ. */
    long double ss = 0.0L;
    for (size_t j = c0; j < c0 + nc; j++)
        for (size_t r = 0; r < W->rows; r++) ss += (long double)QH_AT(W, r, j) * QH_AT(W, r, j);
    double cnt = (double)W->rows * (double)nc;
    double s = g->rho * (cnt > 0 ? sqrt((double)(ss / cnt)) : 0.0) + 1e-16;
    for (size_t r = 0; r < g->rows; r++) {
        g->step[r + gi * g->rows] = 2.0 * s / g->maxq;
        g->zero[r + gi * g->rows] = g->maxq / 2.0;
    }
}

void qh_grid_fit(qh_grid *g, const qh_matd *W, size_t c0, size_t nc, size_t gi)
{
    QH_ASSERT(gi < g->n_groups && c0 + nc <= W->cols && W->rows == g->rows);
    switch (g->kind) {
    case QH_GRID_MINMAX: fit_minmax(g, W, 0, c0, nc, gi); return;
    case QH_GRID_RMS: fit_rms(g, W, c0, nc, gi); return;
    case QH_GRID_INTEGER: return;    /* Δ = 1, z = 0 from init */
    }
}

void qh_grid_fit_rows(qh_grid *g, const qh_matd *W, size_t r0, size_t c0, size_t nc, size_t gi)
{
    QH_ASSERT(gi < g->n_groups && c0 + nc <= W->cols && r0 + W->rows <= g->rows);
    QH_ASSERT(g->kind != QH_GRID_RMS);
    if (g->kind == QH_GRID_MINMAX) fit_minmax(g, W, r0, c0, nc, gi);
}

double qh_grid_side_bits(const qh_grid *g, size_t cols)
{
    switch (g->kind) {
    case QH_GRID_MINMAX: return (16.0 + (g->sym ? 0 : g->bits)) / (double)g->group;
    case QH_GRID_RMS: return g->rows && cols ? 16.0 / ((double)g->rows * (double)cols) : 0.0;
    case QH_GRID_INTEGER: return 0.0;
    }
    return 0.0;
}
