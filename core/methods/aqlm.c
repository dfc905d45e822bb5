/* aqlm.c -- additive quantization (AQLM, Egiazarian et al. 2024, arXiv
 * 2401.06118; methods reference §10).  See aqlm.h for the representation,
 * the result fields and the deviations from the reference code.
 *
 * Notation: W (m x n) target, H (n x n) damped, J = n/g groups, M codebooks
 * of K = 2^B codewords of dimension g; E = Ŵ − W, G = E H, ℓ = Σ E∘G.
 *
 * Beam search (beam 1).  Replacing the code of codebook k in group j of row
 * r, c_old → c, changes Ŵ_{r,j} by s_r(c − c_old).  With the group's
 * gradient taken without the old codeword, G'_{r,j} = G_{r,j} − s_r c_oldᵀH_jj,
 *   ℓ(c) = const_r + 2 s_r ⟨c, G'_{r,j}⟩ + s_r² cᵀH_jj c,
 * so the scores of all K codewords for all rows are one GEMM (K x g times
 * g x rows, in row blocks) plus the per-codeword q_c = cᵀH_jj c.  The old
 * code is kept unless another scores strictly lower, so no step raises ℓ.
 * After a step, E and the group's block of G are updated in O(m g); after
 * the M codebooks of a group, the other columns of G by one rank-g GEMM,
 * G[:, ¬j] += ΔE_j H[j, ¬j].  FLOPs per pass: 2·m·n·K·M (scores) + 2·m·n²
 * (updates of G).
 *
 * Codebook update (lstsq).  ℓ is quadratic in the codebook entries x with
 * Hessian A = 2 P S H S Pᵀ (P scatters a row's groups to its codewords, S the
 * row scales).  CG solves A δ = −∇ℓ from δ = 0; one product A p = decode p
 * with scales, times H (GEMM), scatter with scales.  Preconditioner: per
 * codeword (k, c) the g x g block 2 Σ_{(r,j): code = c} s_r² H_jj (the
 * diagonal blocks of A without the cross-group terms), Cholesky-factored;
 * identity for unused codewords.  E and G are linear in the codebooks, so a
 * CG step x += αp also updates E += α·T and G += α·T H with the T H of the
 * product just computed (no extra GEMM).
 *
 * Scales.  With U the unscaled reconstruction and V = U H (one GEMM), the
 * per-row minimiser is s_r = ⟨V_r, W_r⟩/⟨V_r, U_r⟩ (rows of ℓ are
 * independent); then E = S U − W and G = S V − W H, W H computed once.
 */
#include "aqlm.h"
#include "aqlm_finetune.h"
#include "qh_blas.h"
#include "qh_flops.h"
#include "qh_linalg.h"
#include "qh_quant.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define AQLM_MAX_B 16
#define AQLM_CG_RTOL 1e-10

static const qh_param_desc aqlm_params[] = {
    { "codebooks", QH_PARAM_INT, offsetof(qh_aqlm_params, codebooks), 0, 0, 8, NULL,
      "M: additive codebooks per group (code bits per codebook B = bits*group/M, an integer in 1..16); "
      "0 = the fewest codebooks of at most 8 bits each (2x8 at 2 bits, 3x8 at 3 bits with group 8)", NULL },
    { "group", QH_PARAM_INT, offsetof(qh_aqlm_params, group), 8, 1, 64, NULL,
      "g: consecutive input columns per vector (must divide n)", NULL },
    { "epochs", QH_PARAM_INT, offsetof(qh_aqlm_params, epochs), 20, 0, 1000, NULL,
      "maximum alternations of beam search, codebook update and scale fit", NULL },
    { "tolerance", QH_PARAM_DOUBLE, offsetof(qh_aqlm_params, tolerance), 0.01, 0.0, 1.0, NULL,
      "stop when an epoch lowers the proxy by less than this fraction (relative_mse_tolerance)", NULL },
    { "kmeans_iters", QH_PARAM_INT, offsetof(qh_aqlm_params, kmeans_iters), 25, 0, 1000, NULL,
      "Lloyd iterations per codebook of the residual k-means init (stops early when settled)", NULL },
    { "update", QH_PARAM_ENUM, offsetof(qh_aqlm_params, update), 0, 0, 0, "lstsq|adam",
      "codebook update with codes fixed: lstsq (exact least squares by preconditioned CG) or adam "
      "(the reference: adam_steps steps, betas (0, 0.95), amsgrad)", NULL },
    { "cg_iters", QH_PARAM_INT, offsetof(qh_aqlm_params, cg_iters), 3, 1, 100000, NULL,
      "lstsq: CG iterations per update, warm-started across epochs (stops earlier at relative "
      "residual 1e-10; large values give the exact least-squares codebooks)", NULL },
    { "adam_steps", QH_PARAM_INT, offsetof(qh_aqlm_params, adam_steps), 100, 1, 100000, NULL,
      "adam: steps per update", NULL },
    { "adam_lr", QH_PARAM_DOUBLE, offsetof(qh_aqlm_params, adam_lr), 1e-4, 0.0, 1.0, NULL,
      "adam: learning rate (on codebooks of W/scale)", NULL },
    { "fp16", QH_PARAM_BOOL, offsetof(qh_aqlm_params, fp16), 1, 0, 1, NULL,
      "round codebooks and row scales to FP16 precision (codes refitted to the rounded codebooks)", NULL },
    { "damp", QH_PARAM_DOUBLE, offsetof(qh_aqlm_params, damp), 0.01, 0.0, 1.0, NULL,
      "H += damp*mean(live diag H)*I (see dead_diag); raised tenfold per failed Cholesky (counted); 0 = H undamped "
      "as in the reference code (a singular H then still gets the least damping that "
      "factors, from 1e-6, counted); 0.01 kept as default, like the other H-based rows", "0" },
    { "finetune", QH_PARAM_INT, offsetof(qh_aqlm_params, finetune), 0, 0, 1000, NULL,
      "block fine-tuning: at most this many passes over the calibration windows tuning the codebooks "
      "and row scales of every linear of a decoder block (codes frozen) by Adam against the float "
      "block's output (AQLM's finetune_max_epochs: 10); 0 = off, the layer result alone", NULL },
    { "ft_lr", QH_PARAM_DOUBLE, offsetof(qh_aqlm_params, ft_lr), 1e-4, 0.0, 1.0, NULL,
      "block fine-tuning: Adam learning rate, betas (0.9, 0.95) (the reference code's default is "
      "1e-5; its authors recommend 1e-4, the value of the paper's runs)", "1e-5" },
    { "ft_batch", QH_PARAM_INT, offsetof(qh_aqlm_params, ft_batch), 8, 1, 4096, NULL,
      "block fine-tuning: calibration windows per Adam step, their gradients averaged (the "
      "reference: finetune_batch_size 32 of 1024 sequences; capped at the windows there are)", "32" },
    { "ft_patience", QH_PARAM_INT, offsetof(qh_aqlm_params, ft_patience), 3, 0, 1000, NULL,
      "block fine-tuning: stop after this many passes without a lower mean block loss over the "
      "windows and keep the best pass (finetune_early_stop; the reference measures it on 128 "
      "held-out sequences); 0 = run every pass and keep the last", NULL },
    { 0 },
};

/* ---- bits ------------------------------------------------------------------- */

double qh_aqlm_bits_per_weight(int M, int B, int g, const size_t *rows, const size_t *cols, size_t nlayers)
{
    double bits = 0.0, weights = 0.0;
    for (size_t i = 0; i < nlayers; i++) {
        double mn = (double)rows[i] * (double)cols[i];
        bits += mn * M * B / (double)g + (double)M * ldexp(1.0, B) * g * 16.0 + 16.0 * (double)rows[i];
        weights += mn;
    }
    return weights > 0.0 ? bits / weights : 0.0;
}

int qh_aqlm_code_bits(int M, int g, int bits, size_t n, int *B)
{
    if (g < 1 || n % (size_t)g != 0)
        QH_ERROR(QH_EINVAL, "aqlm: group g = %d does not divide the number of input columns n = %zu", g, n);
    if (M < 1 || (bits * g) % M != 0 || bits * g / M < 1 || bits * g / M > AQLM_MAX_B)
        QH_ERROR(QH_EINVAL, "aqlm: bits = %d with codebooks M = %d and group g = %d gives B = bits*g/M = %g "
                 "code bits per codebook; B must be an integer in 1..%d", bits, M, g,
                 M > 0 ? (double)bits * g / M : 0.0, AQLM_MAX_B);
    if (B) *B = bits * g / M;
    return QH_OK;
}

int qh_aqlm_auto_codebooks(int g, int bits)
{
    int total = bits * g;            /* code bits per group */
    for (int M = 1; M <= total; M++)
        if (total % M == 0 && total / M <= 8)
            return M;
    return 1;
}

/* ---- solver memory ------------------------------------------------------------ */

static size_t rows_per_block(size_t m, size_t K)
{
    size_t mb = ((size_t)1 << 17) / K;
    if (mb < 16) mb = 16;
    return mb < m ? mb : m;
}

static size_t doubles_for(size_t bytes) { return (bytes + sizeof(double) - 1) / sizeof(double); }

static size_t small_count(size_t m, size_t g, size_t K) { return g * K + 3 * K + 2 * m * g + 64; }

size_t qh_aqlm_ctx_bytes(size_t m, size_t n, int M, int B, int g, int epochs)
{
    size_t K = (size_t)1 << B, J = n / (size_t)g, mkg = (size_t)M * K * (size_t)g;
    size_t counts[] = {
        mkg, mkg, m, m,                                     /* cb, best_cb, scale, best_scale */
        doubles_for(m * J * (size_t)M * sizeof(uint16_t)),  /* codes */
        doubles_for(m * J * (size_t)M * sizeof(uint16_t)),  /* best_codes */
        m * n, m * n, m * n, m * n, m * n,                  /* E, G, T, X, WH */
        rows_per_block(m, K) * K,                           /* score */
        5 * mkg,                                            /* vec */
        mkg * (size_t)g,                                    /* prec */
        small_count(m, (size_t)g, K),
        doubles_for(m * J * sizeof(uint32_t)),              /* idx */
        (size_t)epochs + 2,                                 /* trace */
    };
    size_t bytes = QH_WS_ALIGN;
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) bytes += qh_ws_round(counts[i] * sizeof(double));
    return bytes;
}

void qh_aqlm_ctx_init(qh_aqlm_ctx *c, const qh_matd *W, const qh_matd *H, int M, int B, int g, int epochs,
                      void *mem)
{
    size_t m = W->rows, n = W->cols;
    QH_ASSERT(g >= 1 && n % (size_t)g == 0 && B >= 1 && B <= AQLM_MAX_B && M >= 1);
    memset(c, 0, sizeof *c);
    c->m = m;
    c->n = n;
    c->g = (size_t)g;
    c->J = n / c->g;
    c->M = (size_t)M;
    c->B = (size_t)B;
    c->K = (size_t)1 << B;
    c->W = W;
    c->H = H;
    size_t mkg = c->M * c->K * c->g, mjm = m * c->J * c->M;
    qh_bump ws = { mem, qh_aqlm_ctx_bytes(m, n, M, B, g, epochs) };
    c->cb = qh_ws_take(&ws, mkg);
    c->best_cb = qh_ws_take(&ws, mkg);
    c->scale = qh_ws_take(&ws, m);
    c->best_scale = qh_ws_take(&ws, m);
    c->codes = (uint16_t *)(void *)qh_ws_take(&ws, doubles_for(mjm * sizeof(uint16_t)));
    c->best_codes = (uint16_t *)(void *)qh_ws_take(&ws, doubles_for(mjm * sizeof(uint16_t)));
    c->E = qh_ws_mat(&ws, m, n);
    c->G = qh_ws_mat(&ws, m, n);
    c->T = qh_ws_mat(&ws, m, n);
    c->X = qh_ws_mat(&ws, m, n);
    c->WH = qh_ws_mat(&ws, m, n);
    c->mb = rows_per_block(m, c->K);
    c->score = qh_ws_take(&ws, c->mb * c->K);
    c->vec = qh_ws_take(&ws, 5 * mkg);
    c->prec = qh_ws_take(&ws, mkg * c->g);
    c->small = qh_ws_take(&ws, small_count(m, c->g, c->K));
    c->idx = (uint32_t *)(void *)qh_ws_take(&ws, doubles_for(m * c->J * sizeof(uint32_t)));
    c->trace = qh_ws_take(&ws, (size_t)epochs + 2);
    qh_dgemm('N', 'N', m, n, n, 1.0, W->data, W->ld, H->data, H->ld, 0.0, c->WH.data, m);
}

/* ---- decode, loss, gradient ------------------------------------------------------- */

void qh_aqlm_decode_with(const qh_aqlm_ctx *c, const double *x, const double *scale, double *out)
{
    size_t m = c->m, g = c->g, K = c->K;
    memset(out, 0, m * c->n * sizeof *out);
    for (size_t j = 0; j < c->J; j++)
        for (size_t k = 0; k < c->M; k++) {
            const uint16_t *code = c->codes + m * (j + c->J * k);
            const double *xk = x + k * K * g;
            for (size_t a = 0; a < g; a++) {
                double *col = out + (j * g + a) * m;
                for (size_t r = 0; r < m; r++) col[r] += xk[(size_t)code[r] * g + a];
            }
        }
    if (scale)
        for (size_t col = 0; col < c->n; col++)
            for (size_t r = 0; r < m; r++) out[r + col * m] *= scale[r];
}

void qh_aqlm_scatter_with(const qh_aqlm_ctx *c, const double *scale, const double *Y, double factor,
                          double *out)
{
    size_t m = c->m, g = c->g, K = c->K;
    memset(out, 0, c->M * K * g * sizeof *out);
    for (size_t k = 0; k < c->M; k++)
        for (size_t j = 0; j < c->J; j++) {
            const uint16_t *code = c->codes + m * (j + c->J * k);
            double *ok = out + k * K * g;
            for (size_t a = 0; a < g; a++) {
                const double *col = Y + (j * g + a) * m;
                for (size_t r = 0; r < m; r++) ok[(size_t)code[r] * g + a] += factor * scale[r] * col[r];
            }
        }
}

static void decode_into(const qh_aqlm_ctx *c, const double *x, const double *scale, double *out)
{
    qh_aqlm_decode_with(c, x, scale, out);
}

/* out[(k, c)] = 2 Σ_{(r,j): code = c} s_r Y(r, j-block)  (the transpose of decode). */
static void scatter_from(const qh_aqlm_ctx *c, const double *Y, double *out)
{
    qh_aqlm_scatter_with(c, c->scale, Y, 2.0, out);
}

void qh_aqlm_decode(const qh_aqlm_ctx *c, qh_matd *What)
{
    QH_ASSERT(What->rows == c->m && What->cols == c->n);
    if (What->ld == c->m) {
        decode_into(c, c->cb, c->scale, What->data);
        return;
    }
    decode_into(c, c->cb, c->scale, c->T.data);
    for (size_t j = 0; j < c->n; j++) memcpy(&QH_AT(What, 0, j), &QH_AT(&c->T, 0, j), c->m * sizeof(double));
}

static void gemm_EH(qh_aqlm_ctx *c, const double *X, double *Y)   /* Y = X H, X and Y m x n */
{
    qh_dgemm('N', 'N', c->m, c->n, c->n, 1.0, X, c->m, c->H->data, c->H->ld, 0.0, Y, c->m);
}

double qh_aqlm_loss(const qh_aqlm_ctx *c)
{
    double s = 0.0;
    for (size_t i = 0; i < c->m * c->n; i++) s += c->E.data[i] * c->G.data[i];
    return s;
}

double qh_aqlm_refresh(qh_aqlm_ctx *c)
{
    decode_into(c, c->cb, c->scale, c->E.data);
    for (size_t j = 0; j < c->n; j++)
        for (size_t r = 0; r < c->m; r++) QH_AT(&c->E, r, j) -= QH_AT(c->W, r, j);
    gemm_EH(c, c->E.data, c->G.data);
    return qh_aqlm_loss(c);
}

void qh_aqlm_gradient(const qh_aqlm_ctx *c, double *grad)
{
    scatter_from(c, c->G.data, grad);
}

/* First index of the minimum of v_c = x_c + alpha·y_c (c < K) into *vmin.
 * Four independent running minima (no loop-carried branch), then a second
 * pass for the first index attaining it (the same expression, bit-identical). */
static size_t argmin_affine(const double *x, const double *y, double alpha, size_t K, double *vmin)
{
    double m0 = INFINITY, m1 = INFINITY, m2 = INFINITY, m3 = INFINITY;
    size_t c = 0;
    for (; c + 4 <= K; c += 4) {
        double v0 = x[c] + alpha * y[c], v1 = x[c + 1] + alpha * y[c + 1];
        double v2 = x[c + 2] + alpha * y[c + 2], v3 = x[c + 3] + alpha * y[c + 3];
        m0 = v0 < m0 ? v0 : m0;
        m1 = v1 < m1 ? v1 : m1;
        m2 = v2 < m2 ? v2 : m2;
        m3 = v3 < m3 ? v3 : m3;
    }
    for (; c < K; c++) {
        double v = x[c] + alpha * y[c];
        m0 = v < m0 ? v : m0;
    }
    double mv = fmin(fmin(m0, m1), fmin(m2, m3));
    for (c = 0; c < K; c++)
        if (x[c] + alpha * y[c] <= mv) break;
    if (c == K) {                                          /* only if the passes round differently */
        c = 0;
        for (size_t i = 1; i < K; i++)
            if (x[i] + alpha * y[i] < x[c] + alpha * y[c]) c = i;
    }
    *vmin = x[c] + alpha * y[c];
    return c;
}

/* ---- init ------------------------------------------------------------------------ */

void qh_aqlm_init_scales(qh_aqlm_ctx *c)
{
    for (size_t r = 0; r < c->m; r++) {
        double ss = 0.0;
        for (size_t j = 0; j < c->n; j++) ss += QH_AT(c->W, r, j) * QH_AT(c->W, r, j);
        c->scale[r] = sqrt(ss);
    }
}

/* Nearest centroid of codebook Ck (g x K) for every group of Y (m x n, ld m)
 * into code (m x J); returns the number of codes changed (all when first). */
static size_t kmeans_assign(qh_aqlm_ctx *c, const double *Ck, const double *Y, uint16_t *code, int first)
{
    size_t m = c->m, g = c->g, K = c->K, changed = 0;
    double *cn = c->small;                                 /* ‖c‖² */
    for (size_t cc = 0; cc < K; cc++) {
        double s = 0.0;
        for (size_t a = 0; a < g; a++) s += Ck[cc * g + a] * Ck[cc * g + a];
        cn[cc] = s;
    }
    for (size_t j = 0; j < c->J; j++)
        for (size_t r0 = 0; r0 < m; r0 += c->mb) {
            size_t nb = r0 + c->mb < m ? c->mb : m - r0;
            /* score (K x nb) = −2 Ckᵀ Y_blockᵀ */
            qh_dgemm('T', 'T', K, nb, g, -2.0, Ck, g, Y + r0 + j * g * m, m, 0.0, c->score, K);
            for (size_t i = 0; i < nb; i++) {
                double bv;
                size_t best = argmin_affine(cn, c->score + i * K, 1.0, K, &bv);
                uint16_t *cr = &code[r0 + i + j * m];
                if (first || *cr != best) changed++;
                *cr = (uint16_t)best;
            }
        }
    return changed;
}

void qh_aqlm_init_kmeans(qh_aqlm_ctx *c, int iters, qh_rng *rng)
{
    size_t m = c->m, g = c->g, K = c->K, J = c->J, N = m * J;
    double *Y = c->T.data;                                 /* residual of W/s */
    for (size_t col = 0; col < c->n; col++)
        for (size_t r = 0; r < m; r++)
            Y[r + col * m] = c->scale[r] > 0.0 ? QH_AT(c->W, r, col) / c->scale[r] : 0.0;
    double *sums = c->vec, *counts = c->vec + K * g;
    for (size_t k = 0; k < c->M; k++) {
        double *Ck = c->cb + k * K * g;
        uint16_t *code = c->codes + m * J * k;
        /* initial centroids: distinct random groups (partial Fisher-Yates), cycled when N < K */
        for (size_t i = 0; i < N; i++) c->idx[i] = (uint32_t)i;
        size_t nsel = K < N ? K : N;
        for (size_t i = 0; i < nsel; i++) {
            size_t t = i + (size_t)qh_rng_below(rng, N - i);
            uint32_t tmp = c->idx[i];
            c->idx[i] = c->idx[t];
            c->idx[t] = tmp;
        }
        for (size_t cc = 0; cc < K; cc++) {
            size_t p = c->idx[cc % nsel], r = p % m, j = p / m;
            for (size_t a = 0; a < g; a++) Ck[cc * g + a] = Y[r + (j * g + a) * m];
        }
        kmeans_assign(c, Ck, Y, code, 1);
        for (int it = 0; it < iters; it++) {
            memset(sums, 0, K * g * sizeof *sums);
            memset(counts, 0, K * sizeof *counts);
            for (size_t j = 0; j < J; j++)
                for (size_t r = 0; r < m; r++) {
                    size_t cc = code[r + j * m];
                    counts[cc] += 1.0;
                    for (size_t a = 0; a < g; a++) sums[cc * g + a] += Y[r + (j * g + a) * m];
                }
            for (size_t cc = 0; cc < K; cc++)          /* an empty cluster keeps its centroid */
                if (counts[cc] > 0.0)
                    for (size_t a = 0; a < g; a++) Ck[cc * g + a] = sums[cc * g + a] / counts[cc];
            if (kmeans_assign(c, Ck, Y, code, 0) == 0) break;
        }
        for (size_t j = 0; j < J; j++)                 /* residual for the next codebook */
            for (size_t a = 0; a < g; a++)
                for (size_t r = 0; r < m; r++) Y[r + (j * g + a) * m] -= Ck[(size_t)code[r + j * m] * g + a];
    }
}

/* ---- beam search (beam 1) ---------------------------------------------------------- */

/* Codes of codebook k in group j, all rows; E and G's block j updated,
 * the changes of Ŵ accumulated into dE (m x g).  Returns codes changed. */
static size_t step_codes(qh_aqlm_ctx *c, size_t j, size_t k, double *dE)
{
    size_t m = c->m, g = c->g, K = c->K, j0 = j * g, changed = 0;
    const double *Hjj = &QH_AT(c->H, j0, j0), *Ck = c->cb + k * K * g;
    double *QC = c->small, *q = QC + g * K, *Gp = q + K;  /* H_jj C_k (g x K), cᵀH_jj c, G' (m x g) */
    qh_dgemm('N', 'N', g, K, g, 1.0, Hjj, c->H->ld, Ck, g, 0.0, QC, g);
    for (size_t cc = 0; cc < K; cc++) {
        double s = 0.0;
        for (size_t a = 0; a < g; a++) s += Ck[cc * g + a] * QC[cc * g + a];
        q[cc] = s;
    }
    uint16_t *code = c->codes + m * (j + c->J * k);
    for (size_t a = 0; a < g; a++)                         /* G' = G_j − s c_oldᵀ H_jj */
        for (size_t r = 0; r < m; r++)
            Gp[r + a * m] = QH_AT(&c->G, r, j0 + a) - c->scale[r] * QC[(size_t)code[r] * g + a];
    for (size_t r0 = 0; r0 < m; r0 += c->mb) {
        size_t nb = r0 + c->mb < m ? c->mb : m - r0;
        /* score (K x nb) = C_kᵀ G'_blockᵀ: ⟨c, G'_r⟩ for every codeword and row */
        qh_dgemm('T', 'T', K, nb, g, 1.0, Ck, g, Gp + r0, m, 0.0, c->score, K);
        for (size_t i = 0; i < nb; i++) {
            size_t r = r0 + i, old = code[r], best = old;
            double s = c->scale[r];
            if (s == 0.0) continue;
            /* ℓ(c) − const = s²q_c + 2s⟨c, G'_r⟩ = s²(q_c + (2/s)·score_c) */
            const double *sc = c->score + i * K;
            double alpha = 2.0 / s, bv;
            size_t cand = argmin_affine(q, sc, alpha, K, &bv);
            if (cand != old && bv < q[old] + alpha * sc[old]) best = cand;
            if (best == old) continue;
            code[r] = (uint16_t)best;
            changed++;
            for (size_t a = 0; a < g; a++) {
                double d = s * (Ck[best * g + a] - Ck[old * g + a]);
                QH_AT(&c->E, r, j0 + a) += d;
                dE[r + a * m] += d;
                QH_AT(&c->G, r, j0 + a) += s * (QC[best * g + a] - QC[old * g + a]);
            }
        }
    }
    return changed;
}

/* G[:, ¬j] += dE H[j, ¬j] (block j of G is kept current by step_codes). */
static void finish_group(qh_aqlm_ctx *c, size_t j, const double *dE)
{
    size_t m = c->m, n = c->n, g = c->g, j0 = j * g, j1 = j0 + g;
    const qh_matd *H = c->H;
    if (j0 > 0)
        qh_dgemm('N', 'N', m, j0, g, 1.0, dE, m, &QH_AT(H, j0, 0), H->ld, 1.0, c->G.data, m);
    if (j1 < n)
        qh_dgemm('N', 'N', m, n - j1, g, 1.0, dE, m, &QH_AT(H, j0, j1), H->ld, 1.0, &QH_AT(&c->G, 0, j1), m);
}

static double *dE_buffer(qh_aqlm_ctx *c)
{
    double *dE = c->small + c->g * c->K + c->K + c->m * c->g;
    memset(dE, 0, c->m * c->g * sizeof *dE);
    return dE;
}

void qh_aqlm_beam_step(qh_aqlm_ctx *c, size_t j, size_t k)
{
    QH_ASSERT(j < c->J && k < c->M);
    double *dE = dE_buffer(c);
    if (step_codes(c, j, k, dE)) finish_group(c, j, dE);
}

void qh_aqlm_beam_pass(qh_aqlm_ctx *c, qh_rng *rng)
{
    uint32_t *order = c->idx;
    for (size_t j = 0; j < c->J; j++) order[j] = (uint32_t)j;
    for (size_t j = c->J; j > 1; j--) {                    /* Fisher-Yates */
        size_t t = (size_t)qh_rng_below(rng, j);
        uint32_t tmp = order[j - 1];
        order[j - 1] = order[t];
        order[t] = tmp;
    }
    for (size_t o = 0; o < c->J; o++) {
        size_t j = order[o], changed = 0;
        double *dE = dE_buffer(c);
        for (size_t k = 0; k < c->M; k++) changed += step_codes(c, j, k, dE);
        if (changed) finish_group(c, j, dE);
    }
}

/* ---- codebook updates -------------------------------------------------------------- */

/* Block-Jacobi preconditioner (file header) into c->prec, factored. */
static void build_prec(qh_aqlm_ctx *c)
{
    size_t m = c->m, g = c->g, K = c->K, g2 = g * g;
    double *w = c->small + c->g * c->K + c->K + 2 * c->m * c->g;   /* K weights */
    memset(c->prec, 0, c->M * K * g2 * sizeof *c->prec);
    memset(w, 0, K * sizeof *w);
    for (size_t k = 0; k < c->M; k++)
        for (size_t j = 0; j < c->J; j++) {
            const uint16_t *code = c->codes + m * (j + c->J * k);
            const double *Hjj = &QH_AT(c->H, j * g, j * g);
            for (size_t r = 0; r < m; r++) w[code[r]] += 2.0 * c->scale[r] * c->scale[r];
            for (size_t r = 0; r < m; r++) {
                size_t cc = code[r];
                if (w[cc] == 0.0) continue;                 /* already added (or zero weight) */
                double *P = c->prec + (k * K + cc) * g2;
                for (size_t b = 0; b < g; b++)
                    for (size_t a = 0; a < g; a++) P[a + b * g] += w[cc] * Hjj[a + b * c->H->ld];
                w[cc] = 0.0;
            }
        }
    for (size_t i = 0; i < c->M * K; i++) {
        double *P = c->prec + i * g2;
        if (!qh_chol_small(P, g)) {                            /* unused codeword: identity */
            memset(P, 0, g2 * sizeof *P);
            for (size_t a = 0; a < g; a++) P[a + a * g] = 1.0;
        }
    }
}

/* z = P⁻¹ r blockwise (P = L Lᵀ per block). */
static void apply_prec(const qh_aqlm_ctx *c, const double *r, double *z)
{
    size_t g = c->g;
    memcpy(z, r, c->M * c->K * g * sizeof *z);
    for (size_t i = 0; i < c->M * c->K; i++) qh_chol_small_solve(c->prec + i * g * g, g, z + i * g);
}

/* Ap = A p, leaving T = the scaled decode of p and X = T H (what p adds to E and G). */
static void apply_A(qh_aqlm_ctx *c, const double *p, double *Ap)
{
    decode_into(c, p, c->scale, c->T.data);
    gemm_EH(c, c->T.data, c->X.data);
    scatter_from(c, c->X.data, Ap);
}

static double dot(const double *x, const double *y, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

int qh_aqlm_update_lstsq(qh_aqlm_ctx *c, int max_iters, double rtol)
{
    size_t N = c->M * c->K * c->g;
    double *r = c->vec, *z = r + N, *p = z + N, *Ap = p + N;
    qh_aqlm_gradient(c, r);                                 /* G is current */
    for (size_t i = 0; i < N; i++) r[i] = -r[i];
    double r0 = sqrt(dot(r, r, N));
    if (!(r0 > 0.0)) return 0;
    build_prec(c);
    apply_prec(c, r, z);
    memcpy(p, z, N * sizeof *p);
    double rz = dot(r, z, N);
    int it = 0;
    while (it < max_iters) {
        apply_A(c, p, Ap);
        double pAp = dot(p, Ap, N);
        if (!(pAp > 0.0)) break;
        double alpha = rz / pAp;
        for (size_t i = 0; i < N; i++) {
            c->cb[i] += alpha * p[i];
            r[i] -= alpha * Ap[i];
        }
        for (size_t i = 0; i < c->m * c->n; i++) {       /* E, G are linear in the codebooks */
            c->E.data[i] += alpha * c->T.data[i];
            c->G.data[i] += alpha * c->X.data[i];
        }
        it++;
        if (sqrt(dot(r, r, N)) <= rtol * r0) break;
        apply_prec(c, r, z);
        double rz_new = dot(r, z, N), beta = rz_new / rz;
        rz = rz_new;
        for (size_t i = 0; i < N; i++) p[i] = z[i] + beta * p[i];
    }
    return it;
}

int qh_aqlm_update_adam(qh_aqlm_ctx *c, int steps, double lr)
{
    const double beta2 = 0.95, eps = 1e-8;                  /* beta1 = 0: the step uses the gradient */
    size_t N = c->M * c->K * c->g;
    double *grad = c->vec, *v = grad + N, *vmax = v + N;
    memset(v, 0, 2 * N * sizeof *v);
    double b2t = 1.0;
    for (int t = 0; t < steps; t++) {
        qh_aqlm_gradient(c, grad);
        b2t *= beta2;
        double bc = sqrt(1.0 - b2t);
        for (size_t i = 0; i < N; i++) {
            v[i] = beta2 * v[i] + (1.0 - beta2) * grad[i] * grad[i];
            if (v[i] > vmax[i]) vmax[i] = v[i];
            c->cb[i] -= lr * grad[i] / (sqrt(vmax[i]) / bc + eps);
        }
        qh_aqlm_refresh(c);
    }
    return steps;
}

void qh_aqlm_update_scales(qh_aqlm_ctx *c)
{
    size_t m = c->m;
    decode_into(c, c->cb, NULL, c->T.data);                 /* U: unscaled reconstruction */
    gemm_EH(c, c->T.data, c->X.data);                       /* U H */
    double *num = c->small, *den = num + m;
    memset(num, 0, 2 * m * sizeof *num);
    for (size_t col = 0; col < c->n; col++)
        for (size_t r = 0; r < m; r++) {
            double uh = QH_AT(&c->X, r, col);
            num[r] += uh * QH_AT(c->W, r, col);
            den[r] += uh * QH_AT(&c->T, r, col);
        }
    for (size_t r = 0; r < m; r++)
        if (den[r] > 0.0) c->scale[r] = num[r] / den[r];
    for (size_t col = 0; col < c->n; col++)                 /* E = S U − W, G = S U H − W H */
        for (size_t r = 0; r < m; r++) {
            QH_AT(&c->E, r, col) = c->scale[r] * QH_AT(&c->T, r, col) - QH_AT(c->W, r, col);
            QH_AT(&c->G, r, col) = c->scale[r] * QH_AT(&c->X, r, col) - QH_AT(&c->WH, r, col);
        }
}

/* ---- the whole algorithm ------------------------------------------------------------ */

static void save_best(qh_aqlm_ctx *c, int restore)
{
    size_t mkg = c->M * c->K * c->g, ncodes = c->m * c->J * c->M;
    if (restore) {
        memcpy(c->cb, c->best_cb, mkg * sizeof(double));
        memcpy(c->scale, c->best_scale, c->m * sizeof(double));
        memcpy(c->codes, c->best_codes, ncodes * sizeof(uint16_t));
    } else {
        memcpy(c->best_cb, c->cb, mkg * sizeof(double));
        memcpy(c->best_scale, c->scale, c->m * sizeof(double));
        memcpy(c->best_codes, c->codes, ncodes * sizeof(uint16_t));
    }
}

double qh_aqlm_round_fp16(double x)
{
    if (x == 0.0 || !isfinite(x)) return x;
    int e;
    double f = frexp(fabs(x), &e), y;
    if (e < -13) y = ldexp(round(ldexp(fabs(x), 24)), -24);
    else y = ldexp(round(ldexp(f, 11)), e - 11);
    return x < 0.0 ? -y : y;
}

int qh_aqlm_run(qh_aqlm_ctx *c, const qh_aqlm_params *p, qh_rng *rng)
{
    qh_aqlm_init_scales(c);
    qh_aqlm_init_kmeans(c, p->kmeans_iters, rng);
    double best = qh_aqlm_refresh(c);
    c->n_trace = 0;
    c->trace[c->n_trace++] = best;
    save_best(c, 0);
    int epochs = 0;
    while (epochs < p->epochs && best > 0.0) {
        qh_aqlm_beam_pass(c, rng);
        if (p->update == QH_AQLM_ADAM) qh_aqlm_update_adam(c, p->adam_steps, p->adam_lr);
        else qh_aqlm_update_lstsq(c, p->cg_iters, AQLM_CG_RTOL);
        qh_aqlm_update_scales(c);
        double L = qh_aqlm_loss(c);
        epochs++;
        if (!(L < best)) {                                  /* no progress: keep the best state */
            c->trace[c->n_trace++] = best;
            break;
        }
        double rel = (best - L) / best;
        best = L;
        save_best(c, 0);
        c->trace[c->n_trace++] = best;
        if (rel < p->tolerance) break;
    }
    save_best(c, 1);
    qh_aqlm_refresh(c);
    if (p->fp16) {
        for (size_t i = 0; i < c->M * c->K * c->g; i++) c->cb[i] = qh_aqlm_round_fp16(c->cb[i]);
        qh_aqlm_refresh(c);
        qh_aqlm_beam_pass(c, rng);
        qh_aqlm_update_scales(c);
        for (size_t r = 0; r < c->m; r++) c->scale[r] = qh_aqlm_round_fp16(c->scale[r]);
        qh_aqlm_refresh(c);
    }
    return epochs;
}

/* ---- the method row ------------------------------------------------------------------- */

/* M for this bit width: the parameter, or the automatic choice for 0. */
static int codebooks_for(const qh_aqlm_params *p, int bits)
{
    return p->codebooks > 0 ? p->codebooks : qh_aqlm_auto_codebooks(p->group, bits);
}

/* The largest B the row may need for any bit width 1..8 (workspace size). */
static int max_code_bits(const qh_aqlm_params *p)
{
    if (p->codebooks == 0)
        return 8;
    int best = 1;
    for (int bits = 1; bits <= 8; bits++)
        if ((bits * p->group) % p->codebooks == 0) {
            int B = bits * p->group / p->codebooks;
            if (B <= AQLM_MAX_B && B > best) best = B;
        }
    return best;
}

static size_t aqlm_workspace_size(const void *params, size_t m, size_t n)
{
    const qh_aqlm_params *p = params;
    size_t g = p->group > 0 ? (size_t)p->group : 1;
    size_t nn = n / g * g;                                  /* quantize refuses n % g != 0 */
    int M = p->codebooks > 0 ? p->codebooks : (int)g;   /* auto: M <= bits*g/8 <= g */
    return qh_aqlm_ctx_bytes(m, nn ? nn : g, M, max_code_bits(p), (int)g, p->epochs)
           + qh_ws_round(n * n * sizeof(double)) + 2 * QH_WS_ALIGN;
}

static const char *layer_name(const qh_problem *in) { return in->name ? in->name : "layer"; }

static int aqlm_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_aqlm_params *p = params;
    size_t m = in->W->rows, n = in->W->cols;
    int B, M = codebooks_for(p, in->bits);
    QH_TRY(qh_aqlm_code_bits(M, p->group, in->bits, n, &B));
    if (!in->H) QH_ERROR(QH_EINVAL, "%s: aqlm needs a Hessian H", layer_name(in));
    size_t bytes = aqlm_workspace_size(params, m, n);
    qh_bump ws = { work, bytes };

    /* Damped H in out->H_proc (the factor only checks positive definiteness). */
    if (in->H != out->H_proc)
        for (size_t j = 0; j < n; j++) memcpy(&QH_AT(out->H_proc, 0, j), &QH_AT(in->H, 0, j), n * sizeof(double));
    qh_matd F = qh_ws_mat(&ws, n, n);
    QH_TRY(qh_factor_damped(out->H_proc, p->damp, QH_FACTOR_CHOL, &F, NULL, &out->n_damp_retries,
                            &out->damp_used));
    for (size_t k = 0; k < n; k++) out->col_order[k] = k;
    out->order = "natural";

    qh_aqlm_ctx c;
    qh_aqlm_ctx_init(&c, in->W, out->H_proc, M, B, p->group, p->epochs, ws.p);
    qh_rng rng = qh_rng_stream(in->seed, in->layer, QH_RNG_AQLM);
    out->n_iterations = (size_t)qh_aqlm_run(&c, p, &rng);
    qh_aqlm_decode(&c, out->What_proc);

    if (!(out->row_scale = malloc(m * sizeof *out->row_scale)))
        QH_ERROR(QH_ENOMEM, "%s: row scales of %zu rows", layer_name(in), m);
    memcpy(out->row_scale, c.scale, m * sizeof *out->row_scale);
    if (in->state_out) QH_TRY(qh_aqlm_state_fill(in->state_out, &c, p->fp16));
    out->bits_nominal = (double)M * B / p->group;
    out->bits_side = ((double)M * ldexp(1.0, B) * p->group * 16.0 + 16.0 * (double)m)
                     / ((double)m * (double)n);
    return QH_OK;
}

/* The residual k-means and, per epoch, the beam-1 code search over M
 * codebooks of 2^B codewords (2 m n M 2^B); the least-squares codebook
 * update and the scales are not counted (*partial).  M and B as the
 * quantizer picks them (qh_aqlm_auto_codebooks without a setting). */
static double aqlm_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    const qh_aqlm_params *p = params;
    double m = (double)rows, n = (double)cols, g = p->group;
    double M = p->codebooks > 0 ? p->codebooks : qh_aqlm_auto_codebooks(p->group, bits);
    double B = fmin(16, fmax(1, bits * g / M)), words = pow(2, B);
    double search = 2 * m * n * M * words;
    *partial = 1;
    return ((double)p->kmeans_iters + p->epochs) * search;
}

const qh_method_type qh_method_aqlm = {
    .name = "aqlm",
    .display = "AQLM",
    .display_order = 80,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 2,                    /* 2: dead inputs get the live diagonal mean (damping) */
    .needs = QH_NEEDS_HESSIAN | QH_NEEDS_RNG,
    .summary = "AQLM: additive codebooks (M x 2^B codewords of g columns, FP16 row scale); k-means init, "
               "beam-1 code search, least-squares codebooks, closed-form scales",
    .params = aqlm_params,
    .params_size = sizeof(qh_aqlm_params),
    .workspace_size = aqlm_workspace_size,
    .quantize = aqlm_quantize,
    .block = &qh_aqlm_block_ops,
    .flops = aqlm_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
