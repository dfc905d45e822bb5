/* blockap.c -- EfficientQAT's Block-AP (Chen et al. 2024, arXiv 2407.11062,
 * §3.2; reference code OpenGVLab/EfficientQAT `main_block_ap.py`,
 * `quantize/quantizer.py`):
 *   1. Start: per row and group of `group` columns, the asymmetric min-max
 *      grid (qh_grid.h MINMAX: step s, integer zero z) fitted on W, rounding
 *      to nearest (RTN), as the reference initialises its quantizer; grid
 *      ternary: s = mean |w| of the group (BitNet b1.58's absmean), z = 1,
 *      codes 0..2, i.e. Ŵ ∈ {−s, 0, s}.
 *   2. With objective block (the default) the block stage trains, for every
 *      linear of a decoder block together, the latent W (lr_w) and (s, z)
 *      (lr_s) by Adam (core/qh_adam.h) on the MSE between the quantized
 *      block's output and the float block's output on the float path
 *      (QH_BLOCK_LOSS_MSE), through Ŵ = s(clamp(round(W/s) + round(z), 0,
 *      maxq) − round(z)) with straight-through rounding (gradients in
 *      blockap.h), `epochs` passes over the calibration windows, one window
 *      per step; then Ŵ is frozen (the next blocks see it).  z is trained
 *      only with train_zero and never on the ternary grid; s is kept ≥ 1e-8.
 * Defaults and their source: lr_s = 1e-4 (the reference README's quant_lr
 * for every width) and lr_w = 2e-5 (its weight_lr for w2g64; 1e-5 for w4),
 * epochs 2 (the reference's), group 64 (w2g64).  Deviations (documented):
 * constant learning rates (the reference decays them by a cosine schedule),
 * one window per step (the reference: batch 2 of 4096 windows of 2048
 * tokens), no validation-set early stop, float32 block arithmetic.
 * EfficientQAT's second phase (E2E-QP, end-to-end training of the steps) is
 * out of scope.
 * Bits: minmax b + (16 + b)/g; ternary log2 3 + 16/g (packed trits, bits = 2).
 */
#include "blockap.h"
#include "qh_adam.h"
#include "qh_block_helpers.h"
#include "qh_flops.h"
#include "qh_grid.h"
#include "qh_quant.h"
#include "ternary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AP(k, t, f, d, l, h, ch, doc) { k, t, offsetof(qh_blockap_params, f), d, l, h, ch, doc, NULL }
static const qh_param_desc blockap_params[] = {
    AP("levels", QH_PARAM_ENUM, grid, QH_BLOCKAP_GRID_MINMAX, 0, 0, "minmax|ternary",
       "minmax: asymmetric b-bit grid per row and group; ternary: {-s, 0, s}, s = mean|w| "
       "start (bits = 2, log2 3 nominal)"),
    AP("group", QH_PARAM_INT, group, 64, 0, 1 << 20, NULL,
       "columns per group (0: per row; must divide n); EfficientQAT w2g64"),
    AP("objective", QH_PARAM_ENUM, objective, QH_BLOCKAP_OBJECTIVE_BLOCK, 0, 0, "layer|block",
       "layer: the RTN start only; block: W, s, z trained on the block output (Block-AP)"),
    AP("epochs", QH_PARAM_INT, epochs, 2, 0, 100000, NULL,
       "block objective: passes over the calibration windows, one Adam step per window"),
    AP("lr_w", QH_PARAM_DOUBLE, lr_w, 2e-5, 0, 1, NULL,
       "Adam learning rate of the latent weights (reference weight_lr, w2g64)"),
    AP("lr_s", QH_PARAM_DOUBLE, lr_s, 1e-4, 0, 1, NULL,
       "Adam learning rate of the steps and zeros (reference quant_lr)"),
    AP("train_zero", QH_PARAM_BOOL, train_zero, 1, 0, 1, NULL,
       "train the zero points too (minmax grid; straight-through round)"),
    { 0 },
};

void qh_blockap_bits(int grid, int bits, size_t g, double *nominal, double *side)
{
    if (grid == QH_BLOCKAP_GRID_TERNARY) {
        if (nominal) *nominal = qh_ternary_nominal_bits(QH_PACKING_PACKED);
        if (side) *side = 16.0 / (double)g;
        return;
    }
    if (nominal) *nominal = bits;
    if (side) *side = (16.0 + bits) / (double)g;
}

static double q_of(const qh_blockap_state *st, size_t k, double w, double *u_out)
{
    double s = st->s[k], zr = nearbyint(st->z[k]);
    double u = nearbyint(w / s) + zr;
    if (u_out) *u_out = u;
    return s * (fmin(fmax(u, 0.0), st->maxq) - zr);
}

void qh_blockap_reconstruct(const qh_blockap_state *st, qh_matd *What)
{
    size_t m = st->rows;
    for (size_t j = 0; j < st->cols; j++) {
        size_t gi = j / st->group;
        for (size_t i = 0; i < m; i++)
            QH_AT(What, i, j) = q_of(st, i + gi * m, st->W[i + j * m], NULL);
    }
}

void qh_blockap_param_grad(qh_blockap_state *st, const qh_matd *G)
{
    size_t m = st->rows, cells = m * st->n_groups;
    memset(st->gs, 0, cells * sizeof(double));
    memset(st->gz, 0, cells * sizeof(double));
    for (size_t j = 0; j < st->cols; j++) {
        size_t gi = j / st->group;
        for (size_t i = 0; i < m; i++) {
            size_t k = i + gi * m;
            double w = st->W[i + j * m], g = QH_AT(G, i, j), u, s = st->s[k];
            double zr = nearbyint(st->z[k]);
            (void)q_of(st, k, w, &u);
            int inside = u >= 0.0 && u <= st->maxq;
            double c = fmin(fmax(u, 0.0), st->maxq);
            st->gW[i + j * m] = inside ? g : 0.0;
            st->gs[k] += g * ((c - zr) - (inside ? w / s : 0.0));
            st->gz[k] += inside ? 0.0 : -s * g;
        }
    }
}

void qh_blockap_state_free(qh_blockap_state *st)
{
    if (!st) return;
    free(st->W);
    memset(st, 0, sizeof *st);
}

static int state_reserve(qh_blockap_state *st, size_t m, size_t n, size_t g)
{
    size_t G = n / g, mn = m * n, mg = m * G;
    if (!(st->W && st->rows == m && st->cols == n && st->group == g)) {
        qh_blockap_state_free(st);
        st->W = malloc((4 * mn + 8 * mg) * sizeof(double));
        if (!st->W) QH_ERROR(QH_ENOMEM, "blockap state (%zu x %zu): out of memory", m, n);
    }
    st->rows = m;
    st->cols = n;
    st->group = g;
    st->n_groups = G;
    st->gW = st->W + mn;
    st->mom = st->gW + mn;           /* 2 mn + 4 mg */
    st->s = st->mom + 2 * mn + 4 * mg;
    st->z = st->s + mg;
    st->gs = st->z + mg;
    st->gz = st->gs + mg;
    (void)st->gz;
    return QH_OK;
}

static size_t blockap_workspace_size(const void *params, size_t m, size_t n)
{
    (void)params;
    return qh_quant_ws_bytes(m, n, 0, 0, 0);
}

static int blockap_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    (void)work;
    const qh_blockap_params *p = params;
    size_t m = in->W->rows, n = in->W->cols, g = p->group ? (size_t)p->group : n;
    const char *name = in->name ? in->name : "layer";
    if (n % g) QH_ERROR(QH_EINVAL, "%s: blockap group = %d does not divide the %zu input columns",
                        name, p->group, n);
    if (p->grid == QH_BLOCKAP_GRID_TERNARY && in->bits != 2)
        QH_ERROR(QH_EINVAL, "%s: blockap grid \"ternary\" takes bits = 2 (got %d; log2 3 nominal)",
                 name, in->bits);
    qh_blockap_state local = { 0 }, *st = in->state_out ? in->state_out : &local;
    QH_TRY(state_reserve(st, m, n, g));
    st->train_zero = p->train_zero && p->grid == QH_BLOCKAP_GRID_MINMAX;
    for (size_t j = 0; j < n; j++) memcpy(st->W + j * m, &QH_AT(in->W, 0, j), m * sizeof(double));
    int rc = QH_OK;
    if (p->grid == QH_BLOCKAP_GRID_TERNARY) {
        st->maxq = 2.0;
        for (size_t gi = 0; gi < st->n_groups; gi++)
            qh_scope_stats(QH_SCOPE_GROUP, in->W, gi * g, g, gi, NULL, st->s);
        for (size_t k = 0; k < m * st->n_groups; k++) {
            st->z[k] = 1.0;
            if (!(st->s[k] > 1e-8)) st->s[k] = 1e-8;
        }
    } else {
        qh_grid grid;
        rc = qh_grid_init(&grid, QH_GRID_MINMAX, in->bits, 1, 1.0, m, n, p->group ? g : 0);
        if (rc == QH_OK) {
            for (size_t gi = 0; gi < grid.n_groups; gi++) qh_grid_fit(&grid, in->W, gi * g, g, gi);
            memcpy(st->s, grid.step, m * st->n_groups * sizeof(double));
            memcpy(st->z, grid.zero, m * st->n_groups * sizeof(double));
            st->maxq = grid.maxq;
        }
        qh_grid_free(&grid);
    }
    if (rc == QH_OK) {
        qh_blockap_reconstruct(st, out->What_proc);
        if (in->H && in->H != out->H_proc)
            for (size_t j = 0; j < n; j++)
                memcpy(&QH_AT(out->H_proc, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
        for (size_t k = 0; k < n; k++) out->col_order[k] = k;
        out->order = "natural";
        qh_blockap_bits(p->grid, in->bits, g, &out->bits_nominal, &out->bits_side);
    }
    if (st == &local) qh_blockap_state_free(&local);
    return rc;
}

/* ---- the block stage ---------------------------------------------------------- */

static int block_wants(const void *params)
{
    return ((const qh_blockap_params *)params)->objective == QH_BLOCKAP_OBJECTIVE_BLOCK;
}

static void block_plan(const void *params, size_t nsamples, qh_block_plan *out)
{
    const qh_blockap_params *p = params;
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_MSE, .steps = (long)p->epochs * (long)nsamples,
                            .batch = 1, .draw = QH_BLOCK_DRAW_SEQUENTIAL };
}

QH_BLOCK_STATE_OPS(block, qh_blockap_state, qh_blockap_state_free, s->W, s->rows, s->cols,
                   qh_blockap_reconstruct)

static int block_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    const qh_blockap_params *p = params;
    qh_blockap_state *st = state;
    size_t mn = st->rows * st->cols, mg = st->rows * st->n_groups;
    qh_blockap_param_grad(st, G);
    /* z last: without train_zero it is left out (its moments are never read) */
    qh_adam_vector v[] = { { st->W, st->gW, mn, p->lr_w }, { st->s, st->gs, mg, p->lr_s },
                           { st->z, st->gz, mg, p->lr_s } };
    qh_block_adam_step(v, st->train_zero ? 3 : 2, st->mom, step_no, QH_ADAM_BETA1, QH_ADAM_BETA2);
    for (size_t k = 0; k < mg; k++) {
        if (!(st->s[k] > 1e-8)) st->s[k] = 1e-8;
        st->z[k] = fmin(fmax(st->z[k], 0.0), st->maxq);
    }
    return QH_OK;
}

static const qh_block_ops blockap_block_ops = {
    .setting = "objective \"block\"",
    .wants = block_wants,
    .plan = block_plan,
    QH_BLOCK_STATE_FIELDS(block),
    .step = block_step,
};

const qh_method_type qh_method_blockap = {
    .name = "blockap",
    .display = "Block-AP",
    .display_order = 115,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = 0,
    .summary = "EfficientQAT Block-AP: RTN min-max (or ternary) start, then latent W and the "
               "steps/zeros trained with straight-through rounding on the block output MSE",
    .params = blockap_params,
    .params_size = sizeof(qh_blockap_params),
    .workspace_size = blockap_workspace_size,
    .quantize = blockap_quantize,
    .block = &blockap_block_ops,
    .flops = qh_flops_row_round,   /* the block stage is counted from the plan */
    .flops_efficiency = QH_FLOPS_EFF_ROUND,
};
