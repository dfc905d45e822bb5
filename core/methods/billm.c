/* billm.c -- BiLLM (Huang et al. 2024, arXiv 2402.04291), following the
 * reference `bigptq.py` / `utils/structure.py` (methods reference §6).
 *
 * In the processed basis, columns in natural order:
 *   1. H ← H + damp·mean(diag H)·I (raised tenfold per failed Cholesky,
 *      counted); F = Hinv = upper Cholesky factor of H⁻¹.
 *   2. Per block of `blocksize` columns (W already carrying the feedback of
 *      the earlier blocks):
 *      a. saliency S = W_blk²/diag(Hinv_blk)² (hessian) or S = W_blk
 *         (magnitude); columns ranked by Σ_rows |S|;
 *      b. salient columns: for k = 1..min(max_salient, block width) the top k
 *         columns are salient; both parts binarized at order 2 (search only);
 *         keep the k of least squared error against the target T;
 *      c. split of the other entries: thresholds at the n_thresholds
 *         quantiles 10..90 % of |T| on them (split_quantiles = nonsalient,
 *         the default) or, as the reference code computes them, of |T| over
 *         the whole block with the salient columns zeroed (= zeroed); inner
 *         (|T| < t, "concentrated") and outer ("sparse") parts of the
 *         non-salient entries binarized at order 1; keep the t of least
 *         squared error against T;
 *      d. W_blk binarized per mask: salient at order 2, concentrated and
 *         sparse at order 1, each with per-row (μ, α) (qh_binarize_rows);
 *      e. feedback (feedback = 1): E = (W_blk − Q_blk)/diag(Hinv_blk),
 *         W[:, later] −= E·Hinv[blk, later] (one dgemm).
 *   Target T of the searches (search_target): "s" = S itself, as the
 *   reference code does (its searches binarize the saliency matrix and
 *   measure MSE against it; the default); "w" = W_blk, as the paper's text
 *   reads (the masks then come from |W|; columns are still ranked by S).
 *   intra_block_update = 0 (default, the reference): no update inside a
 *   block.  = 1: OBC-style inside the block too: masks and (μ, α) are fitted
 *   at the block start as above, then the block's columns are rounded left
 *   to right with those fixed statistics, each column's scaled error
 *   e = (w − q)/Hinv_jj pushed onto the block's later columns (GPTQ's update).
 * Bits: qh_billm_bits (nominal = the paper's count; side = flags + FP16
 * statistics).  sign(0) = +1 (qh_binarize.h).
 * Left out: the calibration pipeline (the runner's), packing and kernels
 * (the reference is fake-quant too), the reference's other methods
 * (xnor, sign, 2bit, ...) than braq.
 */
#include "billm.h"
#include "qh_binarize.h"
#include "qh_flops.h"
#include "qh_linalg.h"
#include "qh_quant.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define BILLM_SALIENT_ORDER 2
#define BILLM_SPLIT_ORDER 1
#define BILLM_Q_LO 0.10
#define BILLM_Q_HI 0.90
#define BILLM_FP16_STATS 8           /* μ, α of salient o1, o2, concentrated, sparse */

#define BP(k, t, f, d, l, h, ch, doc) { k, t, offsetof(qh_billm_params, f), d, l, h, ch, doc, NULL }
static const qh_param_desc billm_params[] = {
    BP("blocksize", QH_PARAM_INT, blocksize, 128, 1, 65536, NULL,
       "columns per block (masks, statistics and the salient search are per block)"),
    BP("damp", QH_PARAM_DOUBLE, damp, 0.01, 0, 1, NULL,
       "H += damp*mean(live diag H)*I (see dead_diag); raised tenfold per failed Cholesky (counted)"),
    BP("salient_metric", QH_PARAM_ENUM, salient_metric, 0, 0, 0, "hessian|magnitude",
       "saliency S = W^2/diag(Hinv)^2 (hessian, reference README) or S = W (magnitude)"),
    BP("search_target", QH_PARAM_ENUM, search_target, 0, 0, 0, "s|w",
       "searches measure MSE against S (s, reference code) or against W (w, paper text)"),
    BP("max_salient", QH_PARAM_INT, max_salient, 49, 1, 65536, NULL,
       "salient columns searched per block: 1..max_salient (capped at the block width)"),
    BP("n_thresholds", QH_PARAM_INT, n_thresholds, 81, 1, 100000, NULL,
       "split candidates: this many quantiles from 10 % to 90 % of |target|"),
    BP("intra_block_update", QH_PARAM_BOOL, intra_block_update, 0, 0, 1, NULL,
       "0: no update inside a block (reference); 1: OBC-style feedback inside the block too"),
    BP("feedback", QH_PARAM_BOOL, feedback, 1, 0, 1, NULL,
       "error feedback from each block onto the later columns (reference: on)"),
    { "split_quantiles", QH_PARAM_ENUM, offsetof(qh_billm_params, split_quantiles), 0, 0, 0,
      "nonsalient|zeroed",
      "split candidates are quantiles of |target| over the non-salient entries (nonsalient) or "
      "over the whole block with the salient columns zeroed (zeroed, the reference code: its "
      "zeros pull the candidates towards 0); neither is known to be better (opt-7m layers 1 "
      "and 3: zeroed lower on 8 of 12, -2.6 % to +1.4 %); nonsalient stays the default so that "
      "earlier results keep their meaning", "zeroed" },
    { 0 },
};

/* ---- bits and saliency ---------------------------------------------------------- */

void qh_billm_bits(size_t m, size_t n, size_t blocksize, const size_t *salient, double *nominal,
                   double *total)
{
    double signs = 0.0, flags = 0.0, stats = 0.0, bitmap = (double)n;
    size_t nblocks = (n + blocksize - 1) / blocksize;
    for (size_t b = 0; b < nblocks; b++) {
        size_t width = n - b * blocksize < blocksize ? n - b * blocksize : blocksize;
        double k = (double)salient[b];
        signs += (double)m * ((double)width + k);
        flags += (double)m * ((double)width - k);
        stats += (double)m * BILLM_FP16_STATS * 16.0;
    }
    double mn = (double)m * (double)n;
    if (nominal) *nominal = (signs + bitmap) / mn;
    if (total) *total = (signs + bitmap + flags + stats) / mn;
}

void qh_billm_saliency(const qh_matd *Wb, const double *hinv_diag, int metric, qh_matd *S)
{
    for (size_t j = 0; j < Wb->cols; j++) {
        double d2 = hinv_diag[j] * hinv_diag[j];
        for (size_t i = 0; i < Wb->rows; i++) {
            double w = QH_AT(Wb, i, j);
            QH_AT(S, i, j) = metric == QH_BILLM_SALIENT_MAGNITUDE ? w : w * w / d2;
        }
    }
}

/* ---- the layer ------------------------------------------------------------------ */

enum { PART_SALIENT = 0, PART_CONC = 1, PART_SPARSE = 2, N_PARTS = 3 };

typedef struct {
    const qh_billm_params *p;
    size_t m, n, B;
    qh_matd Wp, F, E, S;             /* (m,n), (n,n), (m,B), (m,B) */
    uint8_t *mask[N_PARTS + 1];      /* m x B each; [N_PARTS] = the non-salient entries */
    double *mu, *alpha;              /* per part: 2·m doubles (order ≤ 2) */
    size_t *rank;                    /* B */
    double *diag;                    /* B: diag(Hinv) of the block */
    size_t *n_salient;               /* per block */
} billm_run;

static const int part_order[N_PARTS] = { BILLM_SALIENT_ORDER, BILLM_SPLIT_ORDER, BILLM_SPLIT_ORDER };

static size_t n_blocks(size_t n, size_t B) { return (n + B - 1) / B; }

static size_t billm_workspace_size(const void *params, size_t m, size_t n)
{
    const qh_billm_params *p = params;
    size_t B = (size_t)p->blocksize < n ? (size_t)p->blocksize : n;
    size_t mask_doubles = ((N_PARTS + 1) * m * B + 7) / 8;
    size_t extra = 2 * m * B + mask_doubles + N_PARTS * 2 * 2 * m + 2 * B + n_blocks(n, B);
    return qh_quant_ws_bytes(m, n, 1, 1, extra) + 16 * QH_WS_ALIGN;
}

/* Steps 2a-c: the masks of block [b0, b0+nb) from the current W; returns k. */
static int choose_masks(billm_run *R, const qh_matd *Wb, size_t nb, size_t *k)
{
    const qh_billm_params *p = R->p;
    size_t m = R->m;
    qh_matd Sb = { m, nb, m, R->S.data, 0 };
    qh_billm_saliency(Wb, R->diag, p->salient_metric, &Sb);
    const qh_matd *T = p->search_target == QH_BILLM_TARGET_S ? &Sb : Wb;
    qh_binarize_rank_columns(&Sb, R->rank);
    size_t kmax = (size_t)p->max_salient < nb ? (size_t)p->max_salient : nb;
    double err;
    QH_TRY(qh_binarize_search_salient_ranked(T, R->rank, kmax, BILLM_SALIENT_ORDER, k, &err));
    uint8_t *sal = R->mask[PART_SALIENT], *rest = R->mask[N_PARTS];
    qh_mask_fill(sal, m, nb, 0);
    qh_mask_fill(rest, m, nb, 1);
    qh_mask_set_columns(sal, m, R->rank, *k, 1);
    qh_mask_set_columns(rest, m, R->rank, *k, 0);
    double thr;
    qh_split_quantiles where = p->split_quantiles == QH_BILLM_SPLIT_ZEROED ? QH_SPLIT_Q_ZEROED
                                                                            : QH_SPLIT_Q_BASE;
    QH_TRY(qh_binarize_search_split_in(T, rest, where, p->n_thresholds, BILLM_Q_LO, BILLM_Q_HI,
                                       BILLM_SPLIT_ORDER, &thr, &err));
    qh_mask_split_abs(T, rest, thr, R->mask[PART_CONC], R->mask[PART_SPARSE]);
    return QH_OK;
}

static int part_of(const billm_run *R, size_t i, size_t j)
{
    size_t k = i + j * R->m;
    if (R->mask[PART_SALIENT][k]) return PART_SALIENT;
    return R->mask[PART_CONC][k] ? PART_CONC : PART_SPARSE;
}

/* Step 2d: every part of Wb binarized into Qb (statistics into R->mu/alpha). */
static int binarize_block(billm_run *R, const qh_matd *Wb, qh_matd *Qb)
{
    for (int pt = 0; pt < N_PARTS; pt++)
        QH_TRY(qh_binarize_rows(Wb, R->mask[pt], part_order[pt], Qb, R->mu + (size_t)pt * 2 * R->m,
                                R->alpha + (size_t)pt * 2 * R->m));
    return QH_OK;
}

/* intra_block_update = 1: the block's columns left to right with fixed
 * statistics, each column's scaled error pushed onto the block's later columns. */
static void round_block_obc(billm_run *R, size_t b0, qh_matd *Wb, qh_matd *Qb)
{
    size_t m = R->m, nb = Wb->cols;
    for (size_t j = 0; j < nb; j++) {
        double *e = &QH_AT(&R->E, 0, j);
        for (size_t i = 0; i < m; i++) {
            int pt = part_of(R, i, j);
            double w = QH_AT(Wb, i, j);
            double q = qh_binarize_value(w, part_order[pt], R->mu + (size_t)pt * 2 * m,
                                         R->alpha + (size_t)pt * 2 * m, i, m);
            QH_AT(Qb, i, j) = q;
            e[i] = (w - q) / R->diag[j];
        }
        for (size_t c = j + 1; c < nb; c++) {
            double f = QH_AT(&R->F, b0 + j, b0 + c);
            double *w = &QH_AT(Wb, 0, c);
            for (size_t i = 0; i < m; i++) w[i] -= e[i] * f;
        }
    }
}

static int run_block(billm_run *R, size_t b0, size_t b1, qh_result *out)
{
    size_t m = R->m, nb = b1 - b0;
    qh_matd Wb = qh_matd_view(&R->Wp, 0, b0, m, nb);
    qh_matd Qb = qh_matd_view(out->What_proc, 0, b0, m, nb);
    for (size_t j = 0; j < nb; j++) R->diag[j] = QH_AT(&R->F, b0 + j, b0 + j);
    QH_TRY(choose_masks(R, &Wb, nb, &R->n_salient[b0 / R->B]));
    QH_TRY(binarize_block(R, &Wb, &Qb));
    if (R->p->intra_block_update)
        round_block_obc(R, b0, &Wb, &Qb);
    else
        for (size_t j = 0; j < nb; j++)
            for (size_t i = 0; i < m; i++)
                QH_AT(&R->E, i, j) = (QH_AT(&Wb, i, j) - QH_AT(&Qb, i, j)) / R->diag[j];
    if (R->p->feedback && b1 < R->n)   /* W[:, b1:] −= E_blk · Hinv[blk, b1:] */
        qh_lin_dgemm('N', 'N', m, R->n - b1, nb, -1.0, R->E.data, R->E.ld, &QH_AT(&R->F, b0, b1),
                     R->F.ld, 1.0, &QH_AT(&R->Wp, 0, b1), R->Wp.ld);
    return QH_OK;
}

static int check_problem(const qh_problem *in)
{
    if (in->bits != 1)
        QH_ERROR(QH_EINVAL, "BiLLM is a 1-bit method (binarization; about 1.1 nominal bits "
                 "per weight); bits = %d requested, expected 1", in->bits);
    if (!in->H) QH_ERROR(QH_EINVAL, "billm needs a Hessian H (saliency and feedback use H^-1)");
    return QH_OK;
}

static int billm_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_billm_params *p = params;
    QH_TRY(check_problem(in));
    size_t m = in->W->rows, n = in->W->cols;
    qh_bump ws = { work, billm_workspace_size(params, m, n) };
    billm_run R = { .p = p, .m = m, .n = n };
    R.B = (size_t)p->blocksize < n ? (size_t)p->blocksize : n;

    /* Step 1: damped H in out->H_proc, F = chol(H⁻¹) upper. */
    if (in->H != out->H_proc)
        for (size_t j = 0; j < n; j++)
            memcpy(&QH_AT(out->H_proc, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
    qh_symmetrize_upper(out->H_proc);
    R.Wp = qh_ws_mat(&ws, m, n);
    for (size_t j = 0; j < n; j++)
        memcpy(&QH_AT(&R.Wp, 0, j), &QH_AT(in->W, 0, j), m * sizeof(double));
    out->n_dead_cols += qh_dead_columns(out->H_proc, &R.Wp);
    R.F = qh_ws_mat(&ws, n, n);
    QH_TRY(qh_factor_damped(out->H_proc, p->damp, QH_FACTOR_HINV_UPPER, &R.F, NULL,
                            &out->n_damp_retries, &out->damp_used));
    for (size_t k = 0; k < n; k++) out->col_order[k] = k;
    out->order = "natural";

    R.E = qh_ws_mat(&ws, m, R.B);
    R.S = qh_ws_mat(&ws, m, R.B);
    uint8_t *masks = (uint8_t *)(void *)qh_ws_take(&ws, ((N_PARTS + 1) * m * R.B + 7) / 8);
    for (int pt = 0; pt <= N_PARTS; pt++) R.mask[pt] = masks + (size_t)pt * m * R.B;
    R.mu = qh_ws_take(&ws, N_PARTS * 2 * m);
    R.alpha = qh_ws_take(&ws, N_PARTS * 2 * m);
    R.rank = (size_t *)(void *)qh_ws_take(&ws, R.B);
    R.diag = qh_ws_take(&ws, R.B);
    R.n_salient = (size_t *)(void *)qh_ws_take(&ws, n_blocks(n, R.B));

    for (size_t b0 = 0; b0 < n; b0 += R.B)
        QH_TRY(run_block(&R, b0, b0 + R.B < n ? b0 + R.B : n, out));

    double nominal, total;
    qh_billm_bits(m, n, R.B, R.n_salient, &nominal, &total);
    out->bits_nominal = nominal;
    out->bits_side = total - nominal;
    return QH_OK;
}

const qh_method_type qh_method_billm = {
    .name = "billm",
    .display = "BiLLM",
    .display_order = 90,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN,
    .summary = "BiLLM: 1-bit residual binarization, order-2 salient columns + bell-shaped "
               "split, feedback across blocks (bits = 1 only)",
    .params = billm_params,
    .params_size = sizeof(qh_billm_params),
    .workspace_size = billm_workspace_size,
    .quantize = billm_quantize,
    .min_bits = 1,
    .max_bits = 1,
    .flops = qh_flops_row_feedback_searched,   /* the salient and split searches are not counted */
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
