/* signround.c -- SignRound: rounding offsets and range coefficients tuned by
 * signed gradient descent against the decoder block's output (methods
 * reference §12; intel/auto-round `sign_round/`, `wrapper.py`,
 * `data_type/int.py`).  See signround.h for the grid, the schedule and the
 * deviations.
 *
 * The layer stage fits the rtn row's min-max grid through the shared
 * preparation of the scalar-grid rows (qh_quant_prepare, qh_grid_fit) and
 * rounds with V = 0 and unit coefficients, so that iters 0 is RTN bit for bit;
 * the block ops go on from that state.  Rounding adds z before rounding,
 * round(w/s + V + z), as the rtn row does; auto-round adds it after,
 * round(w/s + V) + z, which is the same number for an integer z up to the
 * float rounding of the sum (≤ 1 ulp, only at a tie).
 */
#include "signround.h"
#include "qh_block_helpers.h"
#include "qh_flops.h"
#include "qh_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SR_DESC(k, t, field, d, l, h, ch, doc, ref) \
    { k, t, offsetof(qh_signround_params, field), d, l, h, ch, doc, ref }

static const qh_param_desc signround_params[] = {
    SR_DESC("group", QH_PARAM_INT, group, 128, 0, 1 << 20, NULL,
            "columns per grid group (must divide n); 0, or a group of at least n columns, = one "
            "group per row", NULL),
    SR_DESC("sym", QH_PARAM_BOOL, sym, 0, 0, 1, NULL,
            "0: asymmetric min-max grid with an integer zero per group (the paper's); 1: "
            "auto-round's symmetric full-range grid, s = ±max(|lo|, hi)/2^(b-1), q in "
            "[-2^(b-1), 2^(b-1)-1], no stored zero (auto-round's current default)", "1"),
    SR_DESC("iters", QH_PARAM_INT, iters, -1, -1, 1000000, NULL,
            "signed-gradient steps per decoder block; -1: the recipe's (200, light 50, best "
            "1000); 0: RTN exactly (no block stage)", NULL),
    SR_DESC("lr", QH_PARAM_DOUBLE, lr, 0, 0, 10, NULL,
            "step size of V, decayed linearly to 0; 0: the recipe's (light 5e-3), else 1/iters, "
            "or 2/iters when iters >= 1000 and bits <= 3 (auto-round)", NULL),
    SR_DESC("minmax_lr", QH_PARAM_DOUBLE, minmax_lr, 0, 0, 10, NULL,
            "step size of min_scale and max_scale; 0: lr", NULL),
    SR_DESC("batch", QH_PARAM_INT, batch, 8, 1, 65536, NULL,
            "calibration windows per step, drawn at random per step (capped at nsamples)", NULL),
    SR_DESC("recipe", QH_PARAM_ENUM, recipe, QH_SIGNROUND_RECIPE_DEFAULT, 0, 0, "default|light|best",
            "auto-round's presets: default (200 iters), light (50 iters, lr 5e-3), best (1000 "
            "iters); an explicit iters or lr overrides the preset", NULL),
    SR_DESC("ties", QH_PARAM_ENUM, ties, QH_SIGNROUND_TIES_UP, 0, 0, "up|even",
            "nearest rounding of a tie: up (as the rtn row), or to even as torch.round", "even"),
    { 0 },
};

/* ---- schedule --------------------------------------------------------------- */

static long recipe_iters(int recipe)
{
    return recipe == QH_SIGNROUND_RECIPE_LIGHT ? 50 : recipe == QH_SIGNROUND_RECIPE_BEST ? 1000 : 200;
}

static long resolved_iters(const qh_signround_params *p)
{
    return p->iters >= 0 ? (long)p->iters : recipe_iters(p->recipe);
}

void qh_signround_resolve(const qh_signround_params *p, int bits, qh_signround_schedule *out)
{
    out->iters = resolved_iters(p);
    if (p->lr > 0) out->lr = p->lr;
    else if (p->recipe == QH_SIGNROUND_RECIPE_LIGHT) out->lr = 5e-3;
    else if (out->iters == 0) out->lr = 0.0;
    else out->lr = (out->iters >= 1000 && bits <= 3 ? 2.0 : 1.0) / (double)out->iters;
    out->minmax_lr = p->minmax_lr > 0 ? p->minmax_lr : out->lr;
}

double qh_signround_lr_at(double lr, long iters, long t)
{
    return iters > 0 ? lr * (1.0 - (double)(t - 1) / (double)iters) : 0.0;
}

void qh_signround_sign_step(double *x, const double *g, size_t count, double lr, double lo,
                            double hi)
{
    for (size_t i = 0; i < count; i++) {
        double sg = (g[i] > 0.0) - (g[i] < 0.0);
        x[i] -= lr * sg;
        if (lo <= hi) x[i] = fmin(fmax(x[i], lo), hi);
    }
}

/* ---- the grid of one (row, group) and one weight ------------------------------------ */

#define SCALE_FLOOR 1e-5             /* relative to the scale at unit coefficients */

typedef struct {
    double s, z, lo;                 /* step, zero (asym), lower end (asym) */
    double ds_min, ds_max;           /* ∂s/∂min_scale, ∂s/∂max_scale (0 at the floor) */
    double qlo, qhi;                 /* the clamp's range of q */
} cell_grid;

static double round_q(const qh_signround_state *st, double u)
{
    if (st->surrogate) return u;
    return st->ties_even ? nearbyint(u) : floor(u + 0.5);
}

static cell_grid grid_of(const qh_signround_state *st, size_t k)
{
    double xmin = st->xmin[k], xmax = st->xmax[k], a = st->min_scale[k], b = st->max_scale[k];
    cell_grid c = { 0 };
    if (!st->sym) {
        double maxq = (double)((1u << st->bits) - 1u);
        double lo = xmin * a, hi = xmax * b, s = (hi - lo) / maxq, fl = SCALE_FLOOR * ((xmax - xmin) / maxq);
        if (s < fl) s = fl;
        else { c.ds_min = -xmin / maxq; c.ds_max = xmax / maxq; }
        c.s = s;
        c.lo = lo;
        c.z = st->surrogate ? -lo / s : nearbyint(-lo / s);   /* torch.round: half to even */
        c.qlo = 0.0;
        c.qhi = maxq;
        return c;
    }
    double M = (double)(1u << (st->bits - 1)), A = -xmin * a, B = xmax * b, s;
    if (B < A) { s = A / M; c.ds_min = -xmin / M; }
    else { s = -B / M; c.ds_max = -xmax / M; }
    double fl = SCALE_FLOOR * (fmax(-xmin, xmax) / M);
    if (fabs(s) < fl) {
        s = signbit(s) ? -fl : fl;
        c.ds_min = c.ds_max = 0.0;
    }
    c.s = s;
    c.qlo = -M;
    c.qhi = M - 1.0;
    return c;
}

/* ŵ of weight w with offset v; with d (non-NULL) its partial derivatives
 * ∂ŵ/∂V, ∂ŵ/∂s, ∂ŵ/∂lo (STE, see signround.h). */
static double elem(const qh_signround_state *st, const cell_grid *c, double w, double v, double *d)
{
    double t = round_q(st, w / c->s + v + c->z);
    int inside = t >= c->qlo && t <= c->qhi;
    double q = inside ? t + 0.0 : t < c->qlo ? c->qlo : c->qhi;   /* + 0.0: −0 → +0, as rtn */
    if (d) {
        if (inside) {
            d[0] = c->s;
            d[1] = t - c->z - w / c->s;
            d[2] = 0.0;
        } else {
            d[0] = 0.0;
            d[1] = st->sym ? q : q - c->z - c->lo / c->s;
            d[2] = st->sym ? 0.0 : 1.0;
        }
    }
    return c->s * (q - c->z);
}

/* Both loops run down the columns (W, V and G are column-major) and refit
 * the (row, group) grid per weight: a few flops, cheaper than striding
 * across the rows of a tall matrix. */
void qh_signround_fake_quant(const qh_signround_state *s, qh_matd *What)
{
    size_t m = s->rows;
    for (size_t j = 0; j < s->cols; j++) {
        size_t gi = j / s->group;
        for (size_t r = 0; r < m; r++) {
            cell_grid c = grid_of(s, r + gi * m);
            QH_AT(What, r, j) = elem(s, &c, QH_AT(s->W, r, j), s->V[r + j * m], NULL);
        }
    }
}

void qh_signround_grad(qh_signround_state *s, const qh_matd *G)
{
    size_t m = s->rows;
    /* per (row, group): Σ g ∂ŵ/∂s accumulates in g_max, Σ g ∂ŵ/∂lo in g_min */
    memset(s->g_min, 0, m * s->n_groups * sizeof(double));
    memset(s->g_max, 0, m * s->n_groups * sizeof(double));
    for (size_t j = 0; j < s->cols; j++) {
        size_t gi = j / s->group;
        for (size_t r = 0; r < m; r++) {
            size_t k = r + gi * m;
            cell_grid c = grid_of(s, k);
            double g = QH_AT(G, r, j), d[3];
            elem(s, &c, QH_AT(s->W, r, j), s->V[r + j * m], d);
            s->gV[r + j * m] = g * d[0];
            s->g_max[k] += g * d[1];
            s->g_min[k] += g * d[2];
        }
    }
    for (size_t k = 0; k < m * s->n_groups; k++) {
        cell_grid c = grid_of(s, k);
        double gs = s->g_max[k], glo = s->g_min[k];
        s->g_min[k] = gs * c.ds_min + glo * s->xmin[k];
        s->g_max[k] = gs * c.ds_max;
    }
}

/* ---- the state ---------------------------------------------------------------------- */

void qh_signround_state_free(qh_signround_state *s)
{
    if (!s) return;
    qh_matd_free(s->W);
    free(s->V);
    memset(s, 0, sizeof *s);
}

/* Points the m x n_groups arrays of s into buf (8 of them after 3 m x n). */
static void state_carve(qh_signround_state *s, double *buf)
{
    size_t mn = s->rows * s->cols, mg = s->rows * s->n_groups;
    s->V = buf;
    s->gV = buf + mn;
    s->V_saved = buf + 2 * mn;
    double *p = buf + 3 * mn;
    double **arr[] = { &s->xmin, &s->xmax, &s->min_scale, &s->max_scale, &s->min_saved,
                       &s->max_saved, &s->g_min, &s->g_max };
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) *arr[i] = p + i * mg;
}

static int state_reserve(qh_signround_state *s, size_t m, size_t n, size_t group)
{
    size_t ng = n / group;
    if (s->W && s->rows == m && s->cols == n && s->n_groups == ng) {
        s->group = group;
        return QH_OK;
    }
    qh_signround_state_free(s);
    s->rows = m;
    s->cols = n;
    s->group = group;
    s->n_groups = ng;
    s->W = qh_matd_alloc(m, n);
    double *buf = malloc((3 * m * n + 8 * m * ng) * sizeof(double));
    if (!s->W || !buf) {
        free(buf);
        qh_signround_state_free(s);
        QH_ERROR(QH_ENOMEM, "signround state (%zu x %zu): out of memory", m, n);
    }
    state_carve(s, buf);
    return QH_OK;
}

/* ---- the layer stage ---------------------------------------------------------------- */

static size_t effective_group(const qh_signround_params *p, size_t n)
{
    return p->group <= 0 || (size_t)p->group >= n ? n : (size_t)p->group;
}

/* Lp (shared preparation), V and the four range arrays of a state view. */
static size_t signround_workspace_size(const void *params, size_t m, size_t n)
{
    size_t ng = n / effective_group(params, n);
    return qh_quant_ws_bytes(m, n, 2, 0, 4 * m * ng) + 8 * QH_WS_ALIGN;
}

/* The raw range of every row and group, as the min-max grid fits it (the
 * same fmin/fmax over the same values: the order does not matter). */
static void fit_ranges(qh_signround_state *s)
{
    size_t m = s->rows, mg = m * s->n_groups;
    for (size_t k = 0; k < mg; k++) s->xmin[k] = s->xmax[k] = 0.0;
    for (size_t j = 0; j < s->cols; j++)
        for (size_t r = 0; r < m; r++) {
            size_t k = r + (j / s->group) * m;
            s->xmin[k] = fmin(s->xmin[k], QH_AT(s->W, r, j));
            s->xmax[k] = fmax(s->xmax[k], QH_AT(s->W, r, j));
        }
    for (size_t k = 0; k < mg; k++) {
        if (s->xmin[k] == 0.0 && s->xmax[k] == 0.0) { s->xmin[k] = -1.0; s->xmax[k] = 1.0; }
        s->min_scale[k] = s->max_scale[k] = 1.0;
    }
}

/* The result's grid for sym: Δ = |s| and the zero that maps q ∈ [−M, M−1]
 * onto 0..2^b−1 (M for s > 0; M − 1 for s < 0, where the codes run backwards). */
static void sym_result_grid(const qh_signround_state *s, qh_grid *g)
{
    double M = (double)(1u << (s->bits - 1));
    for (size_t k = 0; k < s->rows * s->n_groups; k++) {
        cell_grid c = grid_of(s, k);
        g->step[k] = fabs(c.s);
        g->zero[k] = c.s > 0 ? M : M - 1.0;
    }
    g->sym = 1;                       /* z is fixed: no zero stored (side bits) */
}

static int signround_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_signround_params *p = params;
    size_t m = in->W->rows, n = in->W->cols, group = effective_group(p, n);
    if (n % group != 0)
        QH_ERROR(QH_EINVAL, "%s: signround group = %zu does not divide the %zu input columns",
                 in->name ? in->name : "layer", group, n);
    qh_bump ws = { work, signround_workspace_size(params, m, n) };
    qh_quant_params qp = { .grid = QH_GRID_MINMAX, .group = group == n ? 0 : (int)group,
                           .clamp = 1, .rounding = QH_ROUND_NEAREST,
                           .ties = p->ties == QH_SIGNROUND_TIES_EVEN ? QH_TIES_EVEN : QH_TIES_UP };
    qh_layer L;
    QH_TRY(qh_quant_prepare(&qp, in, out, QH_ORDER_NATURAL, QH_NO_FACTOR, &ws, &L));
    qh_grid *g = &out->grid;
    for (size_t gi = 0; g->n_groups > 1 && gi < g->n_groups; gi++)
        qh_grid_fit(g, in->W, gi * g->group, g->group, gi);

    qh_signround_state view = { 0 }, *s = in->state_out ? in->state_out : &view;
    if (in->state_out) {
        QH_TRY(state_reserve(s, m, n, group));
        for (size_t j = 0; j < n; j++) memcpy(&QH_AT(s->W, 0, j), &QH_AT(in->W, 0, j), m * sizeof(double));
    } else {
        size_t ng = n / group;
        view = (qh_signround_state){ .rows = m, .cols = n, .group = group, .n_groups = ng,
                                     .W = (qh_matd *)in->W };   /* read only */
        view.V = qh_ws_take(&ws, m * n);
        view.xmin = qh_ws_take(&ws, m * ng);
        view.xmax = qh_ws_take(&ws, m * ng);
        view.min_scale = qh_ws_take(&ws, m * ng);
        view.max_scale = qh_ws_take(&ws, m * ng);
    }
    s->bits = in->bits;
    s->sym = p->sym;
    s->ties_even = p->ties == QH_SIGNROUND_TIES_EVEN;
    s->surrogate = 0;
    memset(s->V, 0, m * n * sizeof(double));
    fit_ranges(s);
    qh_signround_fake_quant(s, out->What_proc);
    if (p->sym) sym_result_grid(s, g);
    return QH_OK;
}

/* ---- the block stage (qh_block_ops) --------------------------------------------------- */

static int block_wants(const void *params) { return resolved_iters(params) > 0; }

static void block_plan(const void *params, size_t nsamples, qh_block_plan *out)
{
    (void)nsamples;
    const qh_signround_params *p = params;
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_MSE, .steps = resolved_iters(p), .batch = p->batch,
                            .draw = QH_BLOCK_DRAW_RANDOM, .keep_best = 1 };
}

QH_BLOCK_STATE_OPS(block, qh_signround_state, qh_signround_state_free, s->W, s->rows, s->cols,
                   qh_signround_fake_quant)

static int block_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    qh_signround_state *s = state;
    qh_signround_schedule sc;
    qh_signround_resolve(params, s->bits, &sc);
    qh_signround_grad(s, G);
    size_t mn = s->rows * s->cols, mg = s->rows * s->n_groups;
    qh_signround_sign_step(s->V, s->gV, mn, qh_signround_lr_at(sc.lr, sc.iters, step_no), 1.0, 0.0);
    double mlr = qh_signround_lr_at(sc.minmax_lr, sc.iters, step_no);
    qh_signround_sign_step(s->min_scale, s->g_min, mg, mlr, 0.0, 1.0);
    qh_signround_sign_step(s->max_scale, s->g_max, mg, mlr, 0.0, 1.0);
    return QH_OK;
}

static int block_keep(void *state, int action)
{
    qh_signround_state *s = state;
    size_t mn = s->rows * s->cols, mg = s->rows * s->n_groups;
    int save = action == QH_BLOCK_KEEP_SAVE;
    memcpy(save ? s->V_saved : s->V, save ? s->V : s->V_saved, mn * sizeof(double));
    memcpy(save ? s->min_saved : s->min_scale, save ? s->min_scale : s->min_saved, mg * sizeof(double));
    memcpy(save ? s->max_saved : s->max_scale, save ? s->max_scale : s->max_saved, mg * sizeof(double));
    return QH_OK;
}

static const qh_block_ops signround_block_ops = {
    .setting = "iters > 0",
    .wants = block_wants,
    .plan = block_plan,
    QH_BLOCK_STATE_FIELDS(block),
    .step = block_step,
    .keep = block_keep,
};

const qh_method_type qh_method_signround = {
    .name = "signround",
    .display = "SignRound",
    .display_order = 55,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = QH_NEEDS_GRID,          /* out->grid is RTN's min-max grid, on which quantize's Ŵ lies */
    .summary = "SignRound: per-weight rounding offsets and per-group range coefficients tuned by "
               "signed gradient descent against each decoder block's output (iters 0: RTN)",
    .params = signround_params,
    .params_size = sizeof(qh_signround_params),
    .workspace_size = signround_workspace_size,
    .quantize = signround_quantize,
    .block = &signround_block_ops,
    .flops = qh_flops_row_round,   /* the block stage is counted from the plan */
    .flops_efficiency = QH_FLOPS_EFF_ROUND,
};
