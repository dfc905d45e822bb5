/* mpo.c -- CompactifAI's MPO (tensor-train) decomposition of a linear, its
 * contraction and core gradients, the "mpo" row and the block ops shared
 * with "lowrank" (methods reference §14).  See mpo.h for the conventions. */
#include "mpo.h"
#include "qh_adam.h"
#include "qh_block_helpers.h"
#include "qh_flops.h"
#include "qh_linalg.h"

#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MPO_DESC(k, t, field, d, l, h, doc) { k, t, offsetof(qh_mpo_params, field), d, l, h, NULL, doc, NULL }

static const qh_param_desc mpo_params[] = {
    MPO_DESC("chi", QH_PARAM_INT, chi, 32, 1, 1 << 20,
             "bond dimension: at most chi singular values kept per cut of the TT-SVD"),
    MPO_DESC("energy", QH_PARAM_DOUBLE, energy, 0, 0, 1,
             "0: off; else keep per cut the fewest singular values whose squares reach this "
             "fraction of the cut's total (capped by chi)"),
    MPO_DESC("factors", QH_PARAM_INT, factors, 2, 2, QH_MPO_MAXK,
             "number of cores K; m and n are split into their most balanced K factors"),
    MPO_DESC("proxy_steps", QH_PARAM_INT, proxy_steps, 0, 0, 1000000,
             "Hessian-aware refinement: Adam steps on all cores against the layer proxy "
             "tr((W^-W)H(W^-W)^T) from the TT-SVD start, best iterate kept (0: plain TT-SVD)"),
    MPO_DESC("proxy_lr", QH_PARAM_DOUBLE, proxy_lr, 1e-2, 0, 10,
             "rate of the proxy refinement, relative to each core's entry RMS"),
    { "heal_steps", QH_PARAM_INT, offsetof(qh_mpo_params, heal.heal_steps), 0, 0, 1000000, NULL,
      "healing: Adam steps on the cores of each decoder block against the float block's output "
      "(MSE), on the block stage (0: no healing)", NULL },
    { "heal_lr", QH_PARAM_DOUBLE, offsetof(qh_mpo_params, heal.heal_lr), 1e-3, 0, 10, NULL,
      "healing rate, relative to each core's entry RMS", NULL },
    { "heal_batch", QH_PARAM_INT, offsetof(qh_mpo_params, heal.heal_batch), 4, 1, 4096, NULL,
      "healing: calibration windows per step, drawn at random", NULL },
    { "heal_kl_steps", QH_PARAM_INT, offsetof(qh_mpo_params, heal.heal_kl_steps), 0, 0, 1000000,
      NULL, "end-to-end healing: Adam steps on all cores of all decoder linears against the "
      "KL of the whole model's next-token distributions to the float model's, after the "
      "block loop (0: off)", NULL },
    { "heal_kl_lr", QH_PARAM_DOUBLE, offsetof(qh_mpo_params, heal.heal_kl_lr), 1e-3, 0, 10, NULL,
      "end-to-end healing rate, relative to each core's entry RMS", NULL },
    { "heal_kl_batch", QH_PARAM_INT, offsetof(qh_mpo_params, heal.heal_kl_batch), 4, 1, 4096,
      NULL, "end-to-end healing: calibration windows per step, drawn at random", NULL },
    { 0 },
};

/* ---- factorisations ---------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

void qh_mpo_balanced_factors(size_t d, size_t K, size_t *f)
{
    size_t primes[64], np = 0, x = d;
    for (size_t p = 2; p * p <= x; p++)
        while (x % p == 0) { primes[np++] = p; x /= p; }
    if (x > 1) primes[np++] = x;
    qsort(primes, np, sizeof *primes, cmp_desc);
    for (size_t k = 0; k < K; k++) f[k] = 1;
    for (size_t i = 0; i < np; i++) {
        size_t lo = 0;
        for (size_t k = 1; k < K; k++) if (f[k] < f[lo]) lo = k;
        f[lo] *= primes[i];
    }
    qsort(f, K, sizeof *f, cmp_desc);
}

/* ---- layout ------------------------------------------------------------------ */

void qh_mpo_free(qh_mpo *mpo)
{
    if (!mpo) return;
    free(mpo->data);
    memset(mpo, 0, sizeof *mpo);
}

static void set_views(qh_mpo *mpo)
{
    size_t at = 0;
    for (size_t k = 0; k < mpo->K; k++) {
        mpo->core[k] = mpo->data + at;
        at += mpo->bond[k] * mpo->in[k] * mpo->out[k] * mpo->bond[k + 1];
    }
    mpo->count = at;
}

int qh_mpo_copy(const qh_mpo *src, qh_mpo *dst)
{
    qh_mpo_free(dst);
    *dst = *src;
    if (!(dst->data = malloc((src->count ? src->count : 1) * sizeof(double)))) {
        memset(dst, 0, sizeof *dst);
        QH_ERROR(QH_ENOMEM, "mpo: copy of %zu core entries", src->count);
    }
    memcpy(dst->data, src->data, src->count * sizeof(double));
    set_views(dst);
    return QH_OK;
}

/* Offsets of row r and column c in the paired tensor A (size_t each). */
static void index_maps(const qh_mpo *mpo, size_t *ro, size_t *co)
{
    for (size_t r = 0; r < mpo->rows; r++) {
        size_t x = r, stride = 1, off = 0;
        for (size_t k = 0; k < mpo->K; k++) {
            off += (x % mpo->out[k]) * mpo->in[k] * stride;
            x /= mpo->out[k];
            stride *= mpo->in[k] * mpo->out[k];
        }
        ro[r] = off;
    }
    for (size_t c = 0; c < mpo->cols; c++) {
        size_t x = c, stride = 1, off = 0;
        for (size_t k = 0; k < mpo->K; k++) {
            off += (x % mpo->in[k]) * stride;
            x /= mpo->in[k];
            stride *= mpo->in[k] * mpo->out[k];
        }
        co[c] = off;
    }
}

static size_t P_of(const qh_mpo *mpo, size_t k) { return mpo->in[k] * mpo->out[k]; }

/* Scratch: A (mn), the maps (m + n), left environments L_1..L_K
 * (Pleft_k χ_{k−1}), right environments R_1..R_K (χ_k Pright_k), X. */
size_t qh_mpo_scratch_count(const qh_mpo *mpo)
{
    size_t mn = mpo->rows * mpo->cols, total = mn + mpo->rows + mpo->cols, left = 1, xmax = 0;
    for (size_t k = 0; k < mpo->K; k++) {
        size_t right = mn / (left * P_of(mpo, k));
        total += left * mpo->bond[k] + mpo->bond[k + 1] * right;
        size_t x = mpo->bond[k] * P_of(mpo, k) * right;
        if (x > xmax) xmax = x;
        left *= P_of(mpo, k);
    }
    return total + xmax;
}

typedef struct {
    double *A;
    size_t *ro, *co;
    double *L[QH_MPO_MAXK], *R[QH_MPO_MAXK], *X;
    size_t left[QH_MPO_MAXK], right[QH_MPO_MAXK];
} mpo_scratch;

static mpo_scratch carve(const qh_mpo *mpo, double *s)
{
    mpo_scratch w;
    size_t mn = mpo->rows * mpo->cols, left = 1;
    w.A = s;
    s += mn;
    w.ro = (size_t *)(void *)s;
    s += mpo->rows;
    w.co = (size_t *)(void *)s;
    s += mpo->cols;
    for (size_t k = 0; k < mpo->K; k++) {
        w.left[k] = left;
        w.right[k] = mn / (left * P_of(mpo, k));
        w.L[k] = s;
        s += left * mpo->bond[k];
        w.R[k] = s;
        s += mpo->bond[k + 1] * w.right[k];
        left *= P_of(mpo, k);
    }
    w.X = s;
    index_maps(mpo, w.ro, w.co);
    return w;
}

/* L_1 = 1; L_{k+1} (Pleft_k P_k x χ_k) = L_k (Pleft_k x χ_{k−1}) · C_k (χ_{k−1} x P_k χ_k);
 * L_{K+1} goes into dst (the flat A). */
static void left_envs(const qh_mpo *mpo, mpo_scratch *w, double *last)
{
    w->L[0][0] = 1.0;
    for (size_t k = 0; k < mpo->K; k++) {
        double *dst = k + 1 < mpo->K ? w->L[k + 1] : last;
        if (!dst) break;
        size_t a = mpo->bond[k], pc = P_of(mpo, k) * mpo->bond[k + 1];
        qh_lin_dgemm('N', 'N', w->left[k], pc, a, 1.0, w->L[k], w->left[k], mpo->core[k], a,
                     0.0, dst, w->left[k]);
    }
}

void qh_mpo_contract_ws(const qh_mpo *mpo, qh_matd *What, double *scratch)
{
    mpo_scratch w = carve(mpo, scratch);
    left_envs(mpo, &w, w.A);
    for (size_t c = 0; c < mpo->cols; c++)
        for (size_t r = 0; r < mpo->rows; r++) QH_AT(What, r, c) = w.A[w.ro[r] + w.co[c]];
}

void qh_mpo_grad_ws(const qh_mpo *mpo, const qh_matd *G, double *grad, double *scratch)
{
    mpo_scratch w = carve(mpo, scratch);
    size_t K = mpo->K;
    for (size_t c = 0; c < mpo->cols; c++)
        for (size_t r = 0; r < mpo->rows; r++) w.A[w.ro[r] + w.co[c]] = QH_AT(G, r, c);
    left_envs(mpo, &w, NULL);
    /* R_K = 1; R_k (χ_k x Pright_k) = C_{k+1} (χ_k P_{k+1} x χ_{k+1}) · R_{k+1} (χ_{k+1} x Pright_{k+1}) */
    w.R[K - 1][0] = 1.0;
    for (size_t k = K - 1; k-- > 0;) {
        size_t rows = mpo->bond[k + 1] * P_of(mpo, k + 1), b = mpo->bond[k + 2];
        qh_lin_dgemm('N', 'N', rows, w.right[k + 1], b, 1.0, mpo->core[k + 1], rows, w.R[k + 1], b,
                     0.0, w.R[k], rows);
    }
    for (size_t k = 0; k < K; k++) {
        size_t a = mpo->bond[k], P = P_of(mpo, k), b = mpo->bond[k + 1];
        size_t off = (size_t)(mpo->core[k] - mpo->data);
        /* X (χ_{k−1} x P_k Pright_k) = L_kᵀ · Gt (Pleft_k x P_k Pright_k) */
        qh_lin_dgemm('T', 'N', a, P * w.right[k], w.left[k], 1.0, w.L[k], w.left[k], w.A,
                     w.left[k], 0.0, w.X, a);
        /* grad_k (χ_{k−1} P_k x χ_k) = X (χ_{k−1} P_k x Pright_k) · R_kᵀ */
        qh_lin_dgemm('N', 'T', a * P, b, w.right[k], 1.0, w.X, a * P, w.R[k], b, 0.0,
                     grad + off, a * P);
    }
}

int qh_mpo_contract(const qh_mpo *mpo, qh_matd *What)
{
    double *s = malloc(qh_mpo_scratch_count(mpo) * sizeof *s);
    if (!s) QH_ERROR(QH_ENOMEM, "mpo: contraction scratch");
    qh_mpo_contract_ws(mpo, What, s);
    free(s);
    return QH_OK;
}

int qh_mpo_grad(const qh_mpo *mpo, const qh_matd *G, double *grad)
{
    double *s = malloc(qh_mpo_scratch_count(mpo) * sizeof *s);
    if (!s) QH_ERROR(QH_ENOMEM, "mpo: gradient scratch");
    qh_mpo_grad_ws(mpo, G, grad, s);
    free(s);
    return QH_OK;
}

/* ---- TT-SVD ------------------------------------------------------------------- */

/* Singular values kept of s (count, descending). */
static size_t kept(const double *s, size_t count, int chi, double energy)
{
    size_t r = count;
    if (energy > 0) {
        double total = 0, cum = 0;
        for (size_t j = 0; j < count; j++) total += s[j] * s[j];
        for (r = 0; r < count; r++) {
            cum += s[r] * s[r];
            if (cum >= energy * total) { r++; break; }
        }
        if (r > count) r = count;
    }
    if (chi > 0 && r > (size_t)chi) r = (size_t)chi;
    return r ? r : 1;
}

int qh_mpo_decompose(const qh_matd *W, size_t K, const size_t *in, const size_t *out, int chi,
                     double energy, qh_mpo *mpo, double *discarded)
{
    size_t m = W->rows, n = W->cols, pm = 1, pn = 1;
    if (K < 1 || K > QH_MPO_MAXK) QH_ERROR(QH_EINVAL, "mpo: %zu cores (1..%d)", K, QH_MPO_MAXK);
    for (size_t k = 0; k < K; k++) { pm *= out[k]; pn *= in[k]; }
    if (pm != m || pn != n)
        QH_ERROR(QH_EINVAL, "mpo: factors multiply to %zu x %zu, W is %zu x %zu", pm, pn, m, n);
    qh_mpo_free(mpo);
    mpo->K = K;
    mpo->rows = m;
    mpo->cols = n;
    memcpy(mpo->in, in, K * sizeof *in);
    memcpy(mpo->out, out, K * sizeof *out);
    mpo->bond[0] = mpo->bond[K] = 1;

    size_t mn = m * n, ab_max = 0, left = 1;
    for (size_t k = 0; k + 1 < K; k++) {       /* largest min(a, b) a cut can see */
        left *= P_of(mpo, k);
        size_t b = mn / left, mx = left < b ? left : b;
        if (mx > ab_max) ab_max = mx;
    }
    double *M = malloc(mn * sizeof *M), *U = NULL, *VT = NULL, *s = NULL;
    double *cores[QH_MPO_MAXK] = { NULL };
    size_t *maps = malloc((m + n) * sizeof *maps);
    int st = QH_OK;
    if (K > 1) {
        U = malloc(mn * sizeof *U);
        VT = malloc(mn * sizeof *VT);
        s = malloc((ab_max ? ab_max : 1) * sizeof *s);
    }
    if (!M || !maps || (K > 1 && (!U || !VT || !s))) {
        QH_SET_ERROR(st, QH_ENOMEM, "mpo: TT-SVD of %zu x %zu: out of memory", m, n);
        goto done;
    }
    index_maps(mpo, maps, maps + m);
    for (size_t c = 0; c < n; c++)
        for (size_t r = 0; r < m; r++) M[maps[r] + maps[m + c]] = QH_AT(W, r, c);
    double disc = 0;
    size_t rest = mn;
    for (size_t k = 0; k + 1 < K; k++) {
        size_t a = mpo->bond[k] * P_of(mpo, k);
        rest /= P_of(mpo, k);
        size_t b = rest, q = a < b ? a : b;
        lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', (lapack_int)a, (lapack_int)b, M,
                                         (lapack_int)a, s, U, (lapack_int)a, VT, (lapack_int)q);
        if (info != 0) {
            QH_SET_ERROR(st, info < 0 ? QH_EINVAL : QH_ENOTPD,
                         "mpo: SVD of the %zu x %zu unfolding at cut %zu failed (info %d)", a, b,
                         k + 1, (int)info);
            goto done;
        }
        size_t r = kept(s, q, chi, energy);
        for (size_t j = r; j < q; j++) disc += s[j] * s[j];
        if (!(cores[k] = malloc(a * r * sizeof(double)))) {
            QH_SET_ERROR(st, QH_ENOMEM, "mpo: core %zu", k + 1);
            goto done;
        }
        memcpy(cores[k], U, a * r * sizeof(double));
        for (size_t col = 0; col < b; col++)       /* M = S_r V_rᵀ (r x b) */
            for (size_t i = 0; i < r; i++) M[i + r * col] = s[i] * VT[i + q * col];
        mpo->bond[k + 1] = r;
    }
    mpo->data = NULL;
    size_t total = 0;
    for (size_t k = 0; k < K; k++) total += mpo->bond[k] * P_of(mpo, k) * mpo->bond[k + 1];
    if (!(mpo->data = malloc(total * sizeof(double)))) {
        QH_SET_ERROR(st, QH_ENOMEM, "mpo: %zu core entries", total);
        goto done;
    }
    set_views(mpo);
    for (size_t k = 0; k + 1 < K; k++)
        memcpy(mpo->core[k], cores[k], mpo->bond[k] * P_of(mpo, k) * mpo->bond[k + 1] * sizeof(double));
    memcpy(mpo->core[K - 1], M, mpo->bond[K - 1] * P_of(mpo, K - 1) * sizeof(double));
    if (discarded) *discarded = disc;
done:
    for (size_t k = 0; k < K; k++) free(cores[k]);
    free(M); free(U); free(VT); free(s); free(maps);
    if (st != QH_OK) qh_mpo_free(mpo);
    return st;
}

/* ---- core quantization -------------------------------------------------------- */

size_t qh_mpo_columns(const qh_mpo *mpo)
{
    size_t c = 0;
    for (size_t k = 0; k < mpo->K; k++) c += mpo->bond[k + 1];
    return c;
}

void qh_mpo_quantize_cores(qh_mpo *mpo, int bits)
{
    double levels = (double)((1u << bits) - 1);
    for (size_t k = 0; k < mpo->K; k++) {
        size_t rows = mpo->bond[k] * P_of(mpo, k);
        for (size_t col = 0; col < mpo->bond[k + 1]; col++) {
            double *x = mpo->core[k] + rows * col, lo = INFINITY, hi = -INFINITY;
            for (size_t i = 0; i < rows; i++) { lo = fmin(lo, x[i]); hi = fmax(hi, x[i]); }
            double step = (hi - lo) / levels;
            if (!(step > 0)) continue;
            for (size_t i = 0; i < rows; i++) x[i] = lo + step * nearbyint((x[i] - lo) / step);
        }
    }
}

/* ---- the shared state and block ops ------------------------------------------ */

void qh_mpo_state_free(qh_mpo_state *s)
{
    if (!s) return;
    qh_mpo_free(&s->mpo);
    free(s->saved);
    free(s->scratch);
    memset(s, 0, sizeof *s);
}

static void core_scales(const qh_mpo *mpo, double *scale)
{
    for (size_t k = 0; k < mpo->K; k++) {
        size_t cnt = mpo->bond[k] * P_of(mpo, k) * mpo->bond[k + 1];
        double ss = 0;
        for (size_t i = 0; i < cnt; i++) ss += mpo->core[k][i] * mpo->core[k][i];
        scale[k] = cnt ? sqrt(ss / (double)cnt) : 0.0;
    }
}

static int export_state(qh_mpo_state *s, const qh_mpo *mpo)
{
    qh_mpo_state_free(s);
    QH_TRY(qh_mpo_copy(mpo, &s->mpo));
    size_t cnt = mpo->count;
    s->saved = malloc((4 * cnt + 1) * sizeof(double));
    s->scratch = malloc((qh_mpo_scratch_count(mpo) + mpo->rows * mpo->cols) * sizeof(double));
    if (!s->saved || !s->scratch) {
        qh_mpo_state_free(s);
        QH_ERROR(QH_ENOMEM, "mpo state (%zu x %zu): out of memory", mpo->rows, mpo->cols);
    }
    s->grad = s->saved + cnt;
    s->moments = s->grad + cnt;
    core_scales(mpo, s->scale);
    return QH_OK;
}

/* One Adam step of every core (rate lr times the core's scale) from grad;
 * moments: each core's two moments after the previous core's (2·count),
 * zeroed at t = 1. */
static void adam_cores(qh_mpo *mpo, const double *grad, double *moments, const double *scale,
                       double lr, int t)
{
    qh_adam_vector v[QH_MPO_MAXK];
    for (size_t k = 0; k < mpo->K; k++) {
        size_t off = (size_t)(mpo->core[k] - mpo->data);
        size_t cnt = mpo->bond[k] * P_of(mpo, k) * mpo->bond[k + 1];
        v[k] = (qh_adam_vector){ mpo->core[k], grad + off, cnt, lr * scale[k] };
    }
    qh_block_adam_step(v, mpo->K, moments, t, QH_ADAM_BETA1, QH_ADAM_BETA2);
}

static int block_wants(const void *params)
{
    return ((const qh_mpo_heal_params *)params)->heal_steps > 0;
}

static void block_plan(const void *params, size_t nsamples, qh_block_plan *out)
{
    const qh_mpo_heal_params *h = params;
    (void)nsamples;
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_MSE, .steps = h->heal_steps,
                            .batch = h->heal_batch, .draw = QH_BLOCK_DRAW_RANDOM, .keep_best = 1 };
}

static void reconstruct_state(const qh_mpo_state *s, qh_matd *What)
{
    qh_mpo_contract_ws(&s->mpo, What, s->scratch);
}

QH_BLOCK_STATE_OPS(block, qh_mpo_state, qh_mpo_state_free, s->mpo.data, s->mpo.rows, s->mpo.cols,
                   reconstruct_state)

static int block_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    const qh_mpo_heal_params *h = params;
    qh_mpo_state *s = state;
    qh_mpo_grad_ws(&s->mpo, G, s->grad, s->scratch);
    for (size_t i = 0; i < s->mpo.count; i++)
        if (!isfinite(s->grad[i]))
            QH_ERROR(QH_ENAN, "mpo healing: non-finite core gradient at step %d", step_no);
    adam_cores(&s->mpo, s->grad, s->moments, s->scale, h->heal_lr, step_no);
    return QH_OK;
}

static void model_plan(const void *params, qh_block_plan *out)
{
    const qh_mpo_heal_params *h = params;
    *out = (qh_block_plan){ .loss = QH_BLOCK_LOSS_MSE, .steps = h->heal_kl_steps,
                            .batch = h->heal_kl_batch, .draw = QH_BLOCK_DRAW_RANDOM,
                            .keep_best = 1 };
}

static int model_step(const void *params, void *state, const qh_matd *G, int step_no)
{
    qh_mpo_heal_params h = *(const qh_mpo_heal_params *)params;
    h.heal_lr = h.heal_kl_lr;
    return block_step(&h, state, G, step_no);
}

static int block_keep(void *state, int action)
{
    qh_mpo_state *s = state;
    size_t bytes = s->mpo.count * sizeof(double);
    if (action == QH_BLOCK_KEEP_SAVE) memcpy(s->saved, s->mpo.data, bytes);
    else memcpy(s->mpo.data, s->saved, bytes);
    return QH_OK;
}

const qh_block_ops qh_mpo_block_ops = {
    .setting = "heal_steps > 0 or heal_kl_steps > 0",
    .wants = block_wants,
    .plan = block_plan,
    QH_BLOCK_STATE_FIELDS(block),
    .step = block_step,
    .keep = block_keep,
    .model_plan = model_plan,
    .model_step = model_step,
};

/* ---- the rows' common finish --------------------------------------------------- */

int qh_mpo_finish(const qh_mpo_heal_params *heal, const qh_problem *in, qh_mpo *mpo,
                  qh_result *out)
{
    size_t m = mpo->rows, n = mpo->cols;
    double mn = (double)m * (double)n;
    if (in->bits < 16 && heal->heal_steps > 0)
        QH_ERROR(QH_EINVAL, "%s: heal_steps = %d needs float cores (bits 16); cores rounded to "
                 "%d bits are not healed", in->name ? in->name : "layer", heal->heal_steps,
                 in->bits);
    if (in->bits < 16 && heal->heal_kl_steps > 0)
        QH_ERROR(QH_EINVAL, "%s: heal_kl_steps = %d needs float cores (bits 16); cores rounded "
                 "to %d bits are not healed", in->name ? in->name : "layer", heal->heal_kl_steps,
                 in->bits);
    if (in->bits <= 8) qh_mpo_quantize_cores(mpo, in->bits);
    QH_TRY(qh_mpo_contract(mpo, out->What_proc));
    for (size_t k = 0; k < n; k++) out->col_order[k] = k;
    out->order = "natural";
    out->bits_nominal = (double)in->bits * (double)mpo->count / mn;
    out->bits_side = in->bits <= 8 ? 32.0 * (double)qh_mpo_columns(mpo) / mn : 0.0;
    if (in->state_out) QH_TRY(export_state(in->state_out, mpo));
    return QH_OK;
}

/* ---- the mpo row ---------------------------------------------------------------- */

static size_t mpo_workspace_size(const void *params, size_t m, size_t n)
{
    (void)params; (void)m; (void)n;
    return 0;                        /* the row allocates (bond sizes are known only after SVDs) */
}

/* Adam on the cores against ℓ = tr(ΔHΔᵀ), Δ = Ŵ − W (G = 2ΔH); best iterate kept. */
static int proxy_refine(const qh_mpo_params *p, const qh_matd *W, const qh_matd *H, qh_mpo *mpo,
                        size_t *steps_run)
{
    size_t m = W->rows, n = W->cols, cnt = mpo->count;
    double *buf = malloc((2 * m * n + 5 * cnt + qh_mpo_scratch_count(mpo)) * sizeof *buf);
    if (!buf) QH_ERROR(QH_ENOMEM, "mpo: proxy refinement of %zu x %zu", m, n);
    qh_matd D = { m, n, m, buf, 0 }, G = { m, n, m, buf + m * n, 0 };
    double *best = buf + 2 * m * n, *grad = best + cnt, *mom = grad + cnt, *scr = mom + 2 * cnt;
    double scale[QH_MPO_MAXK], best_loss = INFINITY;
    core_scales(mpo, scale);
    for (int t = 0; t <= p->proxy_steps; t++) {
        qh_mpo_contract_ws(mpo, &D, scr);
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++) QH_AT(&D, i, j) -= QH_AT(W, i, j);
        qh_lin_dgemm('N', 'N', m, n, n, 2.0, D.data, m, H->data, H->ld, 0.0, G.data, m);
        double l = 0;
        for (size_t k = 0; k < m * n; k++) l += D.data[k] * G.data[k];
        l *= 0.5;
        if (l < best_loss) { best_loss = l; memcpy(best, mpo->data, cnt * sizeof *best); }
        if (t == p->proxy_steps || !isfinite(l)) break;
        qh_mpo_grad_ws(mpo, &G, grad, scr);
        adam_cores(mpo, grad, mom, scale, p->proxy_lr, t + 1);
        *steps_run = (size_t)t + 1;
    }
    memcpy(mpo->data, best, cnt * sizeof *best);
    free(buf);
    return QH_OK;
}

int qh_mpo_check_bits(const char *row, const qh_problem *in)
{
    if (in->bits > 8 && in->bits < 16)
        QH_ERROR(QH_EINVAL, "%s: bits = %d; %s takes bits 16 (FP16 cores) or 2..8 (rounded cores)",
                 in->name ? in->name : "layer", in->bits, row);
    return QH_OK;
}

static int mpo_quantize(const void *params, const qh_problem *in, qh_result *out, void *work)
{
    const qh_mpo_params *p = params;
    (void)work;
    QH_TRY(qh_mpo_check_bits("mpo", in));
    if (p->proxy_steps > 0 && !in->H)
        QH_ERROR(QH_EINVAL, "%s: mpo proxy_steps = %d needs a Hessian H",
                 in->name ? in->name : "layer", p->proxy_steps);
    size_t K = (size_t)p->factors, fin[QH_MPO_MAXK], fout[QH_MPO_MAXK];
    qh_mpo_balanced_factors(in->W->cols, K, fin);
    qh_mpo_balanced_factors(in->W->rows, K, fout);
    qh_mpo mpo = { 0 };
    QH_TRY(qh_mpo_decompose(in->W, K, fin, fout, p->chi, p->energy, &mpo, NULL));
    int st = QH_OK;
    if (p->proxy_steps > 0) st = proxy_refine(p, in->W, in->H, &mpo, &out->n_iterations);
    if (st == QH_OK) st = qh_mpo_finish(&p->heal, in, &mpo, out);
    qh_mpo_free(&mpo);
    return st;
}

/* A truncated SVD of W and `proxy_steps` Adam steps on the proxy, one
 * product with H each; the healing stages are counted from their plans. */
static double mpo_flops(const void *params, int bits, size_t rows, size_t cols, int *partial)
{
    (void)bits, (void)partial;
    const qh_mpo_params *p = params;
    double m = (double)rows, n = (double)cols;
    return qh_flops_svd(m, n) + p->proxy_steps * qh_flops_times_h(m, n);
}

const qh_method_type qh_method_mpo = {
    .name = "mpo",
    .display = "MPO (CompactifAI)",
    .display_order = 200,
    .bound_family = QH_BOUND_FAMILY_GENERAL,
    .version = 1,
    .needs = 0,
    .summary = "CompactifAI: TT-SVD of W into a matrix product operator of bond chi over "
               "`factors` cores (FP16 cores at bits 16, rounded cores at 2..8); optional proxy "
               "refinement, block-stage healing (heal_steps) and end-to-end KL healing "
               "(heal_kl_steps)",
    .params = mpo_params,
    .params_size = sizeof(qh_mpo_params),
    .workspace_size = mpo_workspace_size,
    .quantize = mpo_quantize,
    .min_bits = 2,
    .max_bits = 16,
    .block = &qh_mpo_block_ops,
    .flops = mpo_flops,
    .flops_efficiency = QH_FLOPS_EFF_FEEDBACK,
};
