/* qh_quant.c -- shared preparation and greedy passes of the scalar-grid
 * quantizers (methods reference §1-§3).  See qh_quant.h. */
#include "qh_quant.h"
#include "qh_rows.h"

#include <stdlib.h>
#include <string.h>

double *qh_ws_take(qh_bump *b, size_t count)
{
    size_t bytes = qh_ws_round(count * sizeof(double));
    QH_ASSERT(bytes <= b->left);     /* a workspace too small is a bug */
    double *p = (double *)(void *)b->p;
    b->p += bytes;
    b->left -= bytes;
    memset(p, 0, count * sizeof(double));
    return p;
}

qh_matd qh_ws_mat(qh_bump *b, size_t rows, size_t cols)
{
    qh_matd M = { rows, cols, rows ? rows : 1, qh_ws_take(b, rows * cols), 0 };
    return M;
}

size_t qh_quant_ws_bytes(size_t m, size_t n, size_t n_mn, size_t n_nn, size_t extra)
{
    return n_mn * qh_ws_round(m * n * sizeof(double)) + n_nn * qh_ws_round(n * n * sizeof(double))
           + qh_ws_round(extra * sizeof(double)) + qh_ws_round(n * sizeof(double)) + QH_WS_ALIGN;
}

static void make_order(qh_order_kind kind, const qh_matd *H, size_t n, size_t *perm)
{
    for (size_t k = 0; k < n; k++) perm[k] = kind == QH_ORDER_REVERSE ? n - 1 - k : k;
    if (kind == QH_ORDER_DIAG_DESC && H) qh_order_by_diag(H, 1, perm);
}

static const char *order_name(qh_order_kind kind)
{
    switch (kind) {
    case QH_ORDER_NATURAL: return "natural";
    case QH_ORDER_REVERSE: return "reverse";
    case QH_ORDER_DIAG_DESC: return "diag_desc";
    }
    return "?";
}

static void copy_mat(const qh_matd *src, qh_matd *dst)
{
    for (size_t j = 0; j < src->cols; j++)
        memcpy(&QH_AT(dst, 0, j), &QH_AT(src, 0, j), src->rows * sizeof(double));
}

int qh_quant_prepare(const qh_quant_params *p, const qh_problem *in, qh_result *out,
                     qh_order_kind order, int factor, qh_bump *ws, qh_layer *L)
{
    size_t m = in->W->rows, n = in->W->cols;
    memset(L, 0, sizeof *L);
    L->m = m;
    L->n = n;
    if ((p->sym || p->clip) && p->grid != QH_GRID_MINMAX)
        QH_ERROR(QH_EINVAL, "%s: sym and clip apply to grid=minmax only", in->name ? in->name : "layer");
    if (p->sym && in->bits < 2)
        QH_ERROR(QH_EINVAL, "%s: sym needs bits >= 2 (got %d)", in->name ? in->name : "layer",
                 in->bits);
    QH_TRY(qh_grid_init(&out->grid, (qh_grid_kind)p->grid, in->bits, p->clamp, p->rho, m, n,
                        (size_t)p->group));
    out->grid.ties_even = p->ties == QH_TIES_EVEN;
    out->grid.sym = p->sym;
    out->grid.mse = p->clip == QH_CLIP_MSE;
    /* Dead columns on copies: out->What_proc serves as the scratch copy of W. */
    copy_mat(in->W, out->What_proc);
    if (in->H) {
        if (in->H != out->H_proc) copy_mat(in->H, out->H_proc);   /* the driver aliases them */
        qh_symmetrize_upper(out->H_proc);
        out->n_dead_cols += qh_dead_columns(out->H_proc, out->What_proc);
    }
    /* An ungrouped grid is fitted here, on W in its natural column order, so
     * that it does not depend on the processing order (RMS sums are not). */
    if (out->grid.n_groups == 1) qh_grid_fit(&out->grid, out->What_proc, 0, n, 0);
    make_order(order, in->H ? out->H_proc : NULL, n, out->col_order);
    out->order = order_name(order);
    L->perm = out->col_order;
    L->Wp = qh_ws_mat(ws, m, n);
    qh_permute_cols(out->What_proc, L->perm, &L->Wp);
    L->stochastic = p->rounding == QH_ROUND_STOCHASTIC;
    L->rng = qh_rng_stream(in->seed, in->layer, QH_RNG_STOCHASTIC_ROUND);
    L->clamp_w = p->clamp_w;
    L->pass_clamp = p->pass_clamp;
    if (out->grid.n_groups == 1) qh_layer_clamp_target(L, &out->grid, 0, n, 0);
    if (factor == QH_NO_FACTOR) return QH_OK;

    QH_ASSERT(in->H);
    L->Hp = qh_ws_mat(ws, n, n);
    L->F = qh_ws_mat(ws, n, n);
    L->D = qh_ws_take(ws, n);
    qh_permute_sym(out->H_proc, L->perm, &L->Hp);
    /* n_dead_cols counts the driver's dead columns too (fixed before any
     * incoherence processing), which is what the authors' mean counts. */
    double base = qh_damp_base(out->H_proc, out->n_dead_cols, p->dead_diag), lam = 0.0;
    size_t retries = 0;
    int st = qh_factor_damped_base(&L->Hp, p->damp, base, (qh_factor_kind)factor, &L->F, L->D,
                                   &retries, &lam);
    out->n_damp_retries += retries;
    if (st != QH_OK) return st;
    for (size_t i = 0; i < n; i++) QH_AT(out->H_proc, i, i) += lam * base;
    out->damp_used = lam;
    return QH_OK;
}

void qh_layer_clamp_target(qh_layer *L, const qh_grid *g, size_t c0, size_t nc, size_t gi)
{
    qh_layer_clamp_target_rows(L, g, c0, nc, gi, 0, L->m);
}

void qh_layer_clamp_target_rows(qh_layer *L, const qh_grid *g, size_t c0, size_t nc, size_t gi,
                                size_t r0, size_t r1)
{
    if (!L->clamp_w) return;
    for (size_t k = c0; k < c0 + nc; k++)
        for (size_t r = r0; r < r1; r++)
            QH_AT(&L->Wp, r, k) = qh_grid_clamp_value(g, r, gi, QH_AT(&L->Wp, r, k));
}

void qh_quant_store(const qh_layer *L, const qh_matd *Q, qh_result *out)
{
    qh_unpermute_cols(Q, L->perm, out->What_proc);
}

/* One pass over the columns in blocks, on rows r0..r0+mr−1: the block's
 * columns of G = (Q−W)H are kept exact by rank-1 updates inside the block,
 * and the whole G catches up with one dgemm per block.  Gb and Dl hold
 * mr x B.  Returns the number of entries changed. */
static size_t greedy_pass(qh_layer *L, const qh_grid *g, qh_matd *Q, qh_matd *G,
                          size_t B, double *Gb, double *Dl, size_t r0, size_t mr)
{
    size_t n = L->n, changed = 0;
    qh_grid free_grid = *g;          /* shares the tables; only the clamp flag differs */
    if (L->pass_clamp == QH_PASS_CLAMP_PASS) { free_grid.clamp = 0; g = &free_grid; }
    for (size_t b0 = 0; b0 < n; b0 += B) {
        size_t nb = n - b0 < B ? n - b0 : B;
        for (size_t c = 0; c < nb; c++)
            memcpy(Gb + c * mr, &QH_AT(G, r0, b0 + c), mr * sizeof(double));
        for (size_t c = 0; c < nb; c++) {
            size_t k = b0 + c, gi = qh_group_of(g, k);
            double hkk = QH_AT(&L->Hp, k, k);
            double *gk = Gb + c * mr, *dk = Dl + c * mr, *q = &QH_AT(Q, r0, k);
            for (size_t r = 0; r < mr; r++) {
                double cur = q[r];
                double nw = qh_grid_round(g, r0 + r, gi, cur - gk[r] / hkk, 0.5);
                dk[r] = nw - cur;
                if (nw != cur) { q[r] = nw; changed++; }
            }
            for (size_t c2 = c + 1; c2 < nb; c2++) {
                double h = QH_AT(&L->Hp, k, b0 + c2);
                double *g2 = Gb + c2 * mr;
                for (size_t r = 0; r < mr; r++) g2[r] += dk[r] * h;
            }
        }
        /* G += Δ_blk · H[blk, :] */
        qh_rows_dgemm(L->m, r0, mr, n, nb, 1.0, Dl, &QH_AT(&L->Hp, b0, 0), L->Hp.ld, 1.0,
                      &QH_AT(G, r0, 0), G->ld);
    }
    return changed;
}

/* QuIP's end-of-pass clamp on rows r0..r0+mr−1: Q ← clamp(Q) block by block,
 * G following with one dgemm per block.  Returns the number of entries changed. */
static size_t clamp_pass_end(qh_layer *L, const qh_grid *g, qh_matd *Q, qh_matd *G, size_t B,
                             double *Dl, size_t r0, size_t mr)
{
    size_t n = L->n, changed = 0;
    for (size_t b0 = 0; b0 < n; b0 += B) {
        size_t nb = n - b0 < B ? n - b0 : B, here = 0;
        for (size_t c = 0; c < nb; c++) {
            size_t k = b0 + c, gi = qh_group_of(g, k);
            double *q = &QH_AT(Q, r0, k);
            for (size_t r = 0; r < mr; r++) {
                double cur = q[r], nw = qh_grid_clamp_value(g, r0 + r, gi, cur);
                Dl[r + c * mr] = nw - cur;
                if (nw != cur) { q[r] = nw; here++; }
            }
        }
        if (here)
            qh_rows_dgemm(L->m, r0, mr, n, nb, 1.0, Dl, &QH_AT(&L->Hp, b0, 0), L->Hp.ld, 1.0,
                          &QH_AT(G, r0, 0), G->ld);
        changed += here;
    }
    return changed;
}

typedef struct {
    qh_layer *L;
    const qh_grid *g;
    qh_matd *Q, *G;
    int npasses;
    size_t B;
    double *Gb, *Dl;                 /* (m, B) each: a chunk of mr rows has mr x B at row r0·B */
    size_t runs[QH_ROWS_MAX_THREADS];
} greedy_job;

/* The passes on one chunk of rows.  A row's passes depend only on that row
 * (given H), and a pass that changes nothing in the chunk leaves it as it was,
 * so every later pass would too: the chunk stops there, and the passes run on
 * the whole matrix are the most any chunk ran. */
static int greedy_rows(void *arg, const qh_rows_chunk *c)
{
    greedy_job *jb = arg;
    qh_layer *L = jb->L;
    size_t r0 = c->r0, mr = c->r1 - c->r0, n = L->n, B = jb->B, runs = 0;
    double *Gb = jb->Gb + r0 * B, *Dl = jb->Dl + r0 * B;
    /* G = (Q − W) H from scratch, one column panel of Q − W (in Dl) at a time. */
    for (size_t j0 = 0; j0 < n; j0 += B) {
        size_t nb = n - j0 < B ? n - j0 : B;
        /* Dl holds E[:, j0:j0+nb] = Q − W; accumulate G += E_panel H[panel, :] */
        for (size_t cc = 0; cc < nb; cc++)
            for (size_t r = 0; r < mr; r++)
                Dl[r + cc * mr] = QH_AT(jb->Q, r0 + r, j0 + cc) - QH_AT(&L->Wp, r0 + r, j0 + cc);
        qh_rows_dgemm(L->m, r0, mr, n, nb, 1.0, Dl, &QH_AT(&L->Hp, j0, 0), L->Hp.ld,
                      j0 == 0 ? 0.0 : 1.0, &QH_AT(jb->G, r0, 0), jb->G->ld);
    }
    for (int pass = 0; pass < jb->npasses; pass++) {
        runs++;
        size_t changed = greedy_pass(L, jb->g, jb->Q, jb->G, B, Gb, Dl, r0, mr);
        if (L->pass_clamp == QH_PASS_CLAMP_PASS)
            changed += clamp_pass_end(L, jb->g, jb->Q, jb->G, B, Dl, r0, mr);
        if (changed == 0) break;
    }
    jb->runs[c->tid] = runs;
    return QH_OK;
}

int qh_greedy_passes(qh_layer *L, const qh_grid *g, qh_matd *Q, int npasses, size_t blocksize,
                     qh_bump *ws, size_t *runs)
{
    size_t m = L->m, n = L->n, B = blocksize ? blocksize : 128;
    *runs = 0;
    if (npasses <= 0) return QH_OK;
    qh_matd G = qh_ws_mat(ws, m, n);
    greedy_job *jb = calloc(1, sizeof *jb);
    if (!jb) QH_ERROR(QH_ENOMEM, "greedy passes: job of %zu bytes", sizeof *jb);
    *jb = (greedy_job){ L, g, Q, &G, npasses, B, qh_ws_take(ws, m * B), qh_ws_take(ws, m * B), { 0 } };
    int st = qh_rows_run(m, qh_rows_threads(m, n), greedy_rows, jb);
    for (int t = 0; t < QH_ROWS_MAX_THREADS; t++) *runs = jb->runs[t] > *runs ? jb->runs[t] : *runs;
    free(jb);
    return st;
}
