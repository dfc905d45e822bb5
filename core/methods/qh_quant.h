/* qh_quant.h -- what the scalar-grid quantizers of the OPTQ/LDLQ family share
 * (rtn, gptq, ldlq, ldlq_rg, greedy): one parameter struct, its descriptors,
 * workspace carving, and the preparation of a layer in processing order
 * (dead columns, column order, damping + factor with retries, grid).
 *
 * Every method of the family uses qh_quant_params and exposes only the keys
 * that matter to it in its descriptor list; the others keep their defaults.
 */
#ifndef QH_QUANT_H
#define QH_QUANT_H

#include <stddef.h>

#include "qh_grid.h"
#include "qh_linalg.h"
#include "qh_method.h"
#include "qh_rng.h"

enum { QH_ROUND_NEAREST = 0, QH_ROUND_STOCHASTIC = 1 };
enum { QH_LDLQ_REVERSE = 0, QH_LDLQ_FORWARD = 1 };

typedef struct {
    int grid;                        /* qh_grid_kind: minmax | rms | integer */
    int group;                       /* columns per grid group, 0 = per row (minmax only) */
    double rho;                      /* rms grid: s = rho·RMS(W) */
    int clamp;                       /* 1: codes limited to 0..2^b−1 */
    int rounding;                    /* QH_ROUND_* */
    double damp;                     /* relative damping of H */
    int act_order;                   /* gptq: columns by descending diag(H) */
    int order;                       /* ldlq: QH_LDLQ_REVERSE | QH_LDLQ_FORWARD */
    int npasses;                     /* greedy passes (ldlq_rg, greedy) */
    int blocksize;                   /* lazy-batch block (gptq, ldlq) */
    /* Switches to the authors' code (each 0 by default: a struct filled by
     * designated initialisers keeps the harness's choice). */
    double dead_diag;                /* 0: damp relative to the live diagonal; c > 0: a dead
                                        input counts as H_jj = c in mean(diag H) */
    int ties;                        /* QH_TIES_UP | QH_TIES_EVEN (torch.round) */
    int clamp_w;                     /* 1: clamp W into the grid before rounding (QuIP) */
    int pass_clamp;                  /* greedy passes: QH_PASS_CLAMP_STEP | _PASS (QuIP) */
    int rms_scope;                   /* gptq, grid rms: QH_RMS_MATRIX | QH_RMS_COLUMN */
    int sym;                         /* minmax: symmetric grid (qh_grid.h) */
    int clip;                        /* minmax: QH_CLIP_NONE | QH_CLIP_MSE (range shrink search) */
} qh_quant_params;

enum { QH_CLIP_NONE = 0, QH_CLIP_MSE = 1 };

enum { QH_TIES_UP = 0, QH_TIES_EVEN = 1 };
enum { QH_PASS_CLAMP_STEP = 0, QH_PASS_CLAMP_PASS = 1 };
enum { QH_RMS_MATRIX = 0, QH_RMS_COLUMN = 1 };

/* Descriptor entries shared by the rows; each row lists the keys it uses. */
#define QH_QP_DESC(k, t, field, d, l, h, ch, doc) QH_QP_DESC_REF(k, t, field, d, l, h, ch, doc, NULL)
/* The same for a parameter that deviates from the authors' code: ref is the
 * value (config text) that reproduces it (qh_param_desc.reference). */
#define QH_QP_DESC_REF(k, t, field, d, l, h, ch, doc, ref) \
    { k, t, offsetof(qh_quant_params, field), d, l, h, ch, doc, ref }
#define QH_QP_GRID QH_QP_DESC("grid", QH_PARAM_ENUM, grid, 0, 0, 0, "minmax|rms|integer", \
    "minmax: per-row asymmetric OPTQ grid; rms: one symmetric grid on [-rho*RMS, rho*RMS] (QuIP); " \
    "integer: step 1, zero 0 (theory tests)")
#define QH_QP_GROUP QH_QP_DESC("group", QH_PARAM_INT, group, 0, 0, 1 << 20, NULL, \
    "columns per grid group (minmax only; must divide n); 0 = one grid per row")
#define QH_QP_RHO QH_QP_DESC("rho", QH_PARAM_DOUBLE, rho, 2.4, 1e-3, 100, NULL, \
    "rms grid half-width in units of RMS(W)")
#define QH_QP_CLAMP QH_QP_DESC("clamp", QH_PARAM_BOOL, clamp, 1, 0, 1, NULL, \
    "limit codes to 0..2^b-1 (0 only for theory tests)")
#define QH_QP_ROUNDING QH_QP_DESC("rounding", QH_PARAM_ENUM, rounding, 0, 0, 0, \
    "nearest|stochastic", "nearest, or stochastic (unbiased: floor(u + U[0,1)))")
#define QH_QP_DAMP QH_QP_DESC("damp", QH_PARAM_DOUBLE, damp, 0.01, 0, 1, NULL, \
    "H += damp*mean(live diag H)*I (see dead_diag); raised tenfold per failed Cholesky (counted)")
/* The reference values below assume the project's calibration windows of 512
 * tokens; see the docs for another length. */
#define QH_QP_DEAD_DIAG(ref, code, formula) QH_QP_DESC_REF("dead_diag", QH_PARAM_DOUBLE, dead_diag, \
    0, 0, 1e6, NULL, "0: damping relative to the mean of the live diagonal (dead inputs, H_jj = 0, " \
    "left out; independent of the scale of H; better); c > 0: as the authors' code, the mean runs " \
    "over every input with a dead one counted as H_jj = c; " code "'s H is " formula " times the " \
    "per-token H, so its dead H_jj = 1 is c = " ref " for 512-token windows", ref)
#define QH_QP_TIES QH_QP_DESC_REF("ties", QH_PARAM_ENUM, ties, QH_TIES_UP, 0, 0, "up|even", \
    "nearest rounding of a tie (a weight exactly between two grid points): up, or to the even " \
    "point as torch.round in the authors' code (neither is better; ties are rare)", "even")
#define QH_QP_CLAMP_W QH_QP_DESC_REF("clamp_w", QH_PARAM_BOOL, clamp_w, 0, 0, 1, NULL, \
    "1: clamp W into the grid's range before rounding, so the feedback carries the error to the " \
    "clamped W (QuIP's code); 0: feed back the error to the true W (lower proxy; better)", "1")
#define QH_QP_PASS_CLAMP QH_QP_DESC_REF("pass_clamp", QH_PARAM_ENUM, pass_clamp, \
    QH_PASS_CLAMP_STEP, 0, 0, "step|pass", \
    "greedy passes: step clamps every coordinate step (each step is the exact minimiser on the " \
    "finite grid; better); pass rounds without clamping and clamps once at the end of each pass " \
    "(QuIP's code)", "pass")
#define QH_QP_SYM QH_QP_DESC("sym", QH_PARAM_BOOL, sym, 0, 0, 1, NULL, \
    "grid=minmax only: symmetric grid, points D*{-2^(b-1)..2^(b-1)-1} with D = max|w|/(2^(b-1)-1) " \
    "per row (group) (QuaRot's weight quantizer, used by RRS; bits >= 2); 0: OPTQ's asymmetric grid")
#define QH_QP_CLIP QH_QP_DESC("clip", QH_PARAM_ENUM, clip, QH_CLIP_NONE, 0, 0, "none|mse", \
    "grid=minmax only: mse shrinks each row's (group's) range by p = 1 - i/100, i < 80, keeping " \
    "the p of least sum |w^ - w|^2.4 (OPTQ/QuaRot find_params(mse=True), RRS --w_clip); none: " \
    "the full range")
#define QH_QP_BLOCK QH_QP_DESC("blocksize", QH_PARAM_INT, blocksize, 128, 1, 65536, NULL, \
    "lazy-batch block (results equal up to rounding of sums); with a group, block = group")

/* ---- workspace ------------------------------------------------------------ */

#define QH_QUANT_SUB 16              /* columns per sub-block of the in-block updates */

/* Columns per lazy-update block: the group when grouped (the grid changes
 * at group starts), else the blocksize parameter. */
static inline size_t qh_quant_block(const qh_quant_params *p)
{
    return p->group > 0 ? (size_t)p->group : (size_t)p->blocksize;
}

typedef struct { char *p; size_t left; } qh_bump;

#define QH_WS_ALIGN 64
static inline size_t qh_ws_round(size_t bytes) { return (bytes + QH_WS_ALIGN - 1) / QH_WS_ALIGN * QH_WS_ALIGN; }
/* Takes count doubles from the bump region (asserts it is large enough). */
double *qh_ws_take(qh_bump *b, size_t count);
/* A rows x cols matrix view over bump memory (zeroed). */
qh_matd qh_ws_mat(qh_bump *b, size_t rows, size_t cols);
/* Bytes for n_mn (m x n) + n_nn (n x n) matrices + extra doubles + n indices. */
size_t qh_quant_ws_bytes(size_t m, size_t n, size_t n_mn, size_t n_nn, size_t extra);

/* ---- a layer prepared in processing order ----------------------------------- */

typedef enum {
    QH_ORDER_NATURAL = 0,            /* 0..n−1 */
    QH_ORDER_REVERSE = 1,            /* n−1..0 (QuIP's round_ldl) */
    QH_ORDER_DIAG_DESC = 2,          /* descending diag(H): OPTQ act-order, LDLQ-RG, greedy */
} qh_order_kind;

typedef struct {
    size_t m, n;
    qh_matd Wp;                      /* (m, n) W in processing order, dead columns zeroed */
    qh_matd Hp;                      /* (n, n) damped H in processing order (when factored) */
    qh_matd F;                       /* (n, n) factor of Hp (kind as requested) */
    double *D;                       /* (n) LDL diagonal (QH_FACTOR_LDL_FORWARD) */
    const size_t *perm;              /* = out->col_order */
    qh_rng rng;                      /* stochastic rounding stream */
    int stochastic;
    int clamp_w;                     /* clamp W into each group's grid when it is fitted */
    int pass_clamp;                  /* QH_PASS_CLAMP_* for qh_greedy_passes */
} qh_layer;

#define QH_NO_FACTOR (-1)

/* Prepares in (processed basis) for a method: grid init (and fit, when
 * ungrouped, from W after dead columns; grouped grids are fitted by the
 * method at group starts), H copy into
 * out->H_proc with dead columns, column order, W in that order, and when
 * factor != QH_NO_FACTOR the damped factorisation (damping also applied to
 * out->H_proc).  Takes 1 m x n and (with a factor) 2 n x n matrices and n
 * doubles from ws.  Returns the statuses of qh_grid_init and qh_factor_damped. */
int qh_quant_prepare(const qh_quant_params *p, const qh_problem *in, qh_result *out,
                     qh_order_kind order, int factor, qh_bump *ws, qh_layer *L) QH_MUST_CHECK;

/* With clamp_w, clamps columns c0..c0+nc−1 of L->Wp (the target) into
 * group gi of the grid; called when that group's grid is known. */
void qh_layer_clamp_target(qh_layer *L, const qh_grid *g, size_t c0, size_t nc, size_t gi);
/* The same on rows r0..r1−1 only (row-parallel loops). */
void qh_layer_clamp_target_rows(qh_layer *L, const qh_grid *g, size_t c0, size_t nc, size_t gi,
                                size_t r0, size_t r1);

/* η for the next rounding: ½ or U[0, 1). */
static inline double qh_layer_eta(qh_layer *L)
{
    return L->stochastic ? qh_rng_uniform(&L->rng) : 0.5;
}

/* Group of processing position k. */
static inline size_t qh_group_of(const qh_grid *g, size_t k) { return k / g->group; }

/* Greedy coordinate passes (QuIP `allbal` / the RG of LDLQ-RG), in processing
 * order: ŵ_k ← Q_nearest(ŵ_k − ((Ŵ−W)H)_{:,k}/H_kk), the exact grid minimiser
 * of ℓ in column k with the others fixed, so no pass increases ℓ.  With
 * L->pass_clamp = QH_PASS_CLAMP_PASS (QuIP's code) the steps round without
 * clamping and Ŵ is clamped once at the end of each pass (no such guarantee).
 *   Q: (m, n) current Ŵ in processing order (updated in place); L->Wp, L->Hp.
 *   Stops after npasses or after a pass that changed nothing.
 *   ws: takes 1 m x n + 2 m x blocksize matrices.  *runs: passes run.
 * Rows run in parallel (qh_rows.h; each chunk stops at its first pass without
 * a change, which leaves Q as the whole-matrix stop does; *runs is the most
 * any chunk ran, i.e. the whole matrix's count).  Returns QH_OK or QH_ENOMEM. */
int qh_greedy_passes(qh_layer *L, const qh_grid *g, qh_matd *Q, int npasses,
                     size_t blocksize, qh_bump *ws, size_t *runs) QH_MUST_CHECK;

/* Writes Q (processing order) into out->What_proc (original column order). */
void qh_quant_store(const qh_layer *L, const qh_matd *Q, qh_result *out);

#endif
