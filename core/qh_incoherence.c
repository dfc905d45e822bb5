/* qh_incoherence.c -- QuIP incoherence processing (arXiv 2307.13304, Alg. 1
 * pre/post-processing; methods reference §4) and the QuIP# randomized
 * Hadamard transform (arXiv 2402.04396; reference §5 step 2).
 *
 * Each side (left: m, right: n) is one orthogonal operator
 *     O = P_out (A ⊗ B) P_in S
 * S = diag(random signs) or I, P_in/P_out optional random permutations,
 * A (a x a) dense, B (b x b) dense Haar or the implicit normalized Hadamard
 * 𝐇_b; a·b = N. A vector x of length N reshaped to the b x a matrix X
 * (column-major) maps to B X Aᵀ, so the Kronecker product is never formed:
 * one GEMM (or FWHT) for B over all columns, one small GEMM per column for A.
 *   KRON:     A = Haar(a), B = Haar(b), (a, b) = butterfly factors, S = I.
 *   HADAMARD: S = random signs, B = 𝐇_h with h the largest supported
 *             Hadamard size dividing N, A = Haar(N/h) (absent when N/h = 1).
 *             Sizes 2^j, 12·2^j, 20·2^j, ... are pure RHTs; others (e.g. 100 =
 *             5·20) get Haar_5 ⊗ 𝐇_20: still orthogonal and seeded, shapes
 *             unchanged, no padding.
 * Haar(p): QR of a p x p Gaussian with diag(R) > 0 (Haar on O(p); the
 * reference samples SO(p), which differs by one reflection only).
 * Left out: the reference's blocked butterfly (pre_proj_extra 0/2), its
 * H ← H/max|H| (see qh_incoherence.h) and its added 0.01 I (damping belongs to
 * the quantizer).
 */
#include "qh_incoherence.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qh_blas.h"
#include "qh_hadamard.h"
#include "qh_rng.h"

enum side_kind { SIDE_IDENTITY = 0, SIDE_KRON = 1, SIDE_HADAMARD = 2 };

typedef struct {
    size_t N;
    enum side_kind kind;
    double *signs;                   /* N, or NULL */
    size_t *perm_in, *perm_out;      /* (P x)_i = x[perm[i]]; N each, or NULL */
    size_t a, b;                     /* A ⊗ B, a·b = N */
    double *A;                       /* a x a orthogonal, NULL when a == 1 */
    double *B;                       /* b x b orthogonal (KRON), NULL for 𝐇_b */
} side_op;

struct qh_incoh_state {
    qh_incoh_params params;
    size_t m, n;
    double *d;                       /* D̃ (n) or NULL */
    side_op left, right;
};

/* ---------------------------------------------------------------- helpers */

static void side_free(side_op *s)
{
    free(s->signs);
    free(s->perm_in);
    free(s->perm_out);
    free(s->A);
    free(s->B);
    memset(s, 0, sizeof *s);
}

/* ---- names ------------------------------------------------------------------ */

static const qh_incoh_row incoh_rows[] = {
    /* kind, name, label, display, rescale default/reference, permute default/reference */
    { QH_INCOH_NONE, "none", "", "", 0, 0, 0, 0 },
    { QH_INCOH_KRON, "kron", "+incoh", "+IncP", 1, 1, 0, 1 },
    { QH_INCOH_HADAMARD, "hadamard", "+rht", "+IncP(Had)", 1, 0, 0, 0 },
    { QH_INCOH_NONE, NULL, NULL, NULL, 0, 0, 0, 0 },
};

const qh_incoh_row *qh_incoh_table(void) { return incoh_rows; }

const qh_incoh_row *qh_incoh_find(const char *name)
{
    for (const qh_incoh_row *r = incoh_rows; name && r->name; r++)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

const qh_incoh_row *qh_incoh_row_of(qh_incoh_kind kind)
{
    for (const qh_incoh_row *r = incoh_rows; r->name; r++)
        if (r->kind == kind)
            return r;
    return NULL;
}

void qh_incoh_names(char *buf, size_t len)
{
    size_t used = 0;
    if (len) buf[0] = '\0';
    for (const qh_incoh_row *r = incoh_rows; r->name && used < len; r++) {
        int k = snprintf(buf + used, len - used, "%s%s", r == incoh_rows ? "" : ", ", r->name);
        if (k < 0) break;
        used += (size_t)k;
    }
}

void qh_incoh_row_settings(const qh_incoh_row *row, int reference, int *rescale, int *permute)
{
    if (*rescale < 0) *rescale = reference ? row->rescale_reference : row->rescale_default;
    if (*permute < 0) *permute = reference ? row->permute_reference : row->permute_default;
}

int qh_incoh_parse(const char *name, qh_incoh_kind *kind)
{
    const qh_incoh_row *r = qh_incoh_find(name);
    if (!r) {
        char names[128];
        qh_incoh_names(names, sizeof names);
        QH_ERROR(QH_ECONFIG, "unknown incoherence \"%s\" (expected one of: %s)", name ? name : "(null)", names);
    }
    *kind = r->kind;
    return QH_OK;
}

void qh_incoh_state_free(qh_incoh_state *st)
{
    if (!st)
        return;
    side_free(&st->left);
    side_free(&st->right);
    free(st->d);
    free(st);
}

void qh_incoh_butterfly_factors(size_t n, size_t *a, size_t *b)
{
    size_t f[2] = { 1, 1 };
    int turn = 0;
    size_t r = n;
    for (size_t p = 2; r > 1 && p * p <= r; p++)
        while (r % p == 0) {         /* ascending primes, alternately into a, b */
            f[turn] *= p;
            turn ^= 1;
            r /= p;
        }
    if (r > 1)
        f[turn] *= r;
    *a = f[0];
    *b = f[1];
}

/* Haar-random p x p orthogonal matrix into Q (returns new). */
static int haar_orthogonal(size_t p, qh_rng *rng, double **Q_out)
{
    int st = QH_OK;
    double *Q = malloc(p * p * sizeof *Q), *tau = malloc(p * sizeof *tau), *work = NULL;
    double *sgn = malloc(p * sizeof *sgn);
    if (!Q || !tau || !sgn) {
        QH_SET_ERROR(st, QH_ENOMEM, "Haar orthogonal %zux%zu: out of memory", p, p);
        goto cleanup;
    }
    for (size_t i = 0; i < p * p; i++)
        Q[i] = qh_rng_normal(rng);
    lapack_int lp = (lapack_int)p, info;
    double wq1 = 0.0, wq2 = 0.0;
    info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, lp, lp, Q, lp, tau, &wq1, -1);
    if (info == 0)
        info = LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, lp, lp, lp, Q, lp, tau, &wq2, -1);
    lapack_int lwork = (lapack_int)fmax(fmax(wq1, wq2), 1.0);
    work = malloc((size_t)lwork * sizeof *work);
    if (info != 0 || !work) {
        QH_SET_ERROR(st, info ? QH_EINVAL : QH_ENOMEM, "Haar orthogonal %zux%zu: workspace query failed (info %d)",
                     p, p, (int)info);
        goto cleanup;
    }
    info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, lp, lp, Q, lp, tau, work, lwork);
    for (size_t j = 0; j < p; j++)
        sgn[j] = Q[j + j * p] < 0 ? -1.0 : 1.0;   /* sign fix: diag(R) > 0 */
    if (info == 0)
        info = LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, lp, lp, lp, Q, lp, tau, work, lwork);
    if (info != 0) {
        QH_SET_ERROR(st, QH_EINVAL, "Haar orthogonal %zux%zu: QR failed (LAPACK info %d)", p, p, (int)info);
        goto cleanup;
    }
    for (size_t j = 0; j < p; j++)
        for (size_t i = 0; i < p; i++)
            Q[i + j * p] *= sgn[j];
    *Q_out = Q;
    Q = NULL;
cleanup:
    free(Q);
    free(tau);
    free(work);
    free(sgn);
    return st;
}

/* Uniform random permutation (Fisher–Yates). Returns new or NULL on OOM. */
static size_t *random_perm(size_t N, qh_rng *rng)
{
    size_t *p = malloc(N * sizeof *p);
    if (!p)
        return NULL;
    for (size_t i = 0; i < N; i++)
        p[i] = i;
    for (size_t i = N; i > 1; i--) {
        size_t j = (size_t)qh_rng_below(rng, i);
        size_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

static int side_build(side_op *s, size_t N, qh_incoh_kind kind, const qh_incoh_params *p, int is_left)
{
    memset(s, 0, sizeof *s);
    s->N = N;
    s->a = 1;
    s->b = N;
    if (kind == QH_INCOH_NONE)
        return QH_OK;
    qh_rng ortho = qh_rng_stream(p->seed, p->layer, is_left ? QH_RNG_ORTHO_LEFT : QH_RNG_ORTHO_RIGHT);
    const char *side = is_left ? "left (rows)" : "right (cols)";
    if (kind == QH_INCOH_KRON) {
        s->kind = SIDE_KRON;
        size_t f1, f2;
        qh_incoh_butterfly_factors(N, &f1, &f2);
        s->a = f1;
        s->b = f2;
        if (f1 > 1)
            QH_TRY(haar_orthogonal(f1, &ortho, &s->A));
        QH_TRY(haar_orthogonal(f2, &ortho, &s->B));
        if (p->permute) {
            qh_rng pr = qh_rng_stream(p->seed, p->layer, is_left ? QH_RNG_PERM_LEFT : QH_RNG_PERM_RIGHT);
            s->perm_in = random_perm(N, &pr);
            s->perm_out = random_perm(N, &pr);
            if (!s->perm_in || !s->perm_out)
                QH_ERROR(QH_ENOMEM, "incoherence %s permutations of %zu: out of memory", side, N);
        }
        return QH_OK;
    }
    s->kind = SIDE_HADAMARD;
    s->b = qh_hadamard_largest_divisor(N);
    s->a = N / s->b;
    qh_rng sr = qh_rng_stream(p->seed, p->layer, is_left ? QH_RNG_SIGNS_LEFT : QH_RNG_SIGNS_RIGHT);
    s->signs = malloc(N * sizeof *s->signs);
    if (!s->signs)
        QH_ERROR(QH_ENOMEM, "incoherence %s signs of %zu: out of memory", side, N);
    for (size_t i = 0; i < N; i++)
        s->signs[i] = (double)qh_rng_sign(&sr);
    if (s->a > 1)
        QH_TRY(haar_orthogonal(s->a, &ortho, &s->A));
    return QH_OK;
}

/* X (N x c, contiguous) ← P X (inverse 0) or Pᵀ X (inverse 1), row permutation. */
static void permute_rows(const size_t *perm, int inverse, double *X, size_t N, size_t c, double *tmp)
{
    for (size_t j = 0; j < c; j++) {
        double *x = X + j * N;
        for (size_t i = 0; i < N; i++) {
            if (inverse)
                tmp[perm[i]] = x[i];
            else
                tmp[i] = x[perm[i]];
        }
        memcpy(x, tmp, N * sizeof *x);
    }
}

/* X (N x c, contiguous) ← (A ⊗ B) X or its transpose. tmp: ≥ N·max(c, 1) doubles. */
static int kron_apply(const side_op *s, int transpose, double *X, size_t c, double *tmp)
{
    size_t N = s->N, a = s->a, b = s->b;
    if (s->B) {                      /* B on the fast index of every column: one GEMM */
        qh_dgemm(transpose ? 'T' : 'N', 'N', b, a * c, b, 1.0, s->B, b, X, b, 0.0, tmp, b);
        memcpy(X, tmp, N * c * sizeof *X);
    } else {
        QH_TRY(qh_hadamard_apply(b, transpose, X, a * c, b));
    }
    if (s->A)                        /* each column as b x a: Y ← Y Aᵀ (or Y A) */
        for (size_t j = 0; j < c; j++) {
            double *x = X + j * N;
            qh_dgemm('N', transpose ? 'N' : 'T', b, a, a, 1.0, x, b, s->A, a, 0.0, tmp, b);
            memcpy(x, tmp, N * sizeof *x);
        }
    return QH_OK;
}

/* X (N x c, contiguous) ← O X (transpose 0) or Oᵀ X (transpose 1). */
static int side_apply_cols(const side_op *s, int transpose, double *X, size_t c)
{
    size_t N = s->N;
    if (s->kind == SIDE_IDENTITY || c == 0)
        return QH_OK;
    double *tmp = malloc(N * c * sizeof *tmp);
    if (!tmp)
        QH_ERROR(QH_ENOMEM, "incoherence transform of %zux%zu: out of memory", N, c);
    int st = QH_OK;
    if (!transpose) {                /* O = P_out (A⊗B) P_in S */
        if (s->signs)
            for (size_t j = 0; j < c; j++)
                for (size_t i = 0; i < N; i++)
                    X[i + j * N] *= s->signs[i];
        if (s->perm_in)
            permute_rows(s->perm_in, 0, X, N, c, tmp);
        st = kron_apply(s, 0, X, c, tmp);
        if (st == QH_OK && s->perm_out)
            permute_rows(s->perm_out, 0, X, N, c, tmp);
    } else {                         /* Oᵀ = S P_inᵀ (A⊗B)ᵀ P_outᵀ */
        if (s->perm_out)
            permute_rows(s->perm_out, 1, X, N, c, tmp);
        st = kron_apply(s, 1, X, c, tmp);
        if (st == QH_OK && s->perm_in)
            permute_rows(s->perm_in, 1, X, N, c, tmp);
        if (st == QH_OK && s->signs)
            for (size_t j = 0; j < c; j++)
                for (size_t i = 0; i < N; i++)
                    X[i + j * N] *= s->signs[i];
    }
    free(tmp);
    return st;
}

/* X (r x N, contiguous) ← X P_permᵀ-style column permutation: new column i is old
 * column perm[i] (inverse 0) or old column i goes to perm[i] (inverse 1). */
static void permute_cols(const size_t *perm, int inverse, double *X, size_t r, size_t N, double *tmp)
{
    for (size_t i = 0; i < N; i++) {
        if (inverse)
            memcpy(tmp + perm[i] * r, X + i * r, r * sizeof *X);
        else
            memcpy(tmp + i * r, X + perm[i] * r, r * sizeof *X);
    }
    memcpy(X, tmp, r * N * sizeof *X);
}

/* Rows of X (r x N, contiguous) ← (A ⊗ B) row (transpose 0) or (A ⊗ B)ᵀ row.
 * Row coordinate j = j1·b + j2, so the B part acts on each r x b column block and
 * the A part on X viewed as (r·b) x a. tmp: ≥ r·N doubles. */
static int kron_apply_rows(const side_op *s, int transpose, double *X, size_t r, double *tmp)
{
    size_t N = s->N, a = s->a, b = s->b;
    if (s->B) {
        for (size_t j1 = 0; j1 < a; j1++) /* block ← block Bᵀ (or block B) */
            qh_dgemm('N', transpose ? 'N' : 'T', r, b, b, 1.0, X + j1 * b * r, r, s->B, b, 0.0,
                     tmp + j1 * b * r, r);
        memcpy(X, tmp, r * N * sizeof *X);
    } else {
        for (size_t j1 = 0; j1 < a; j1++)
            QH_TRY(qh_hadamard_apply_rows(b, transpose, X + j1 * b * r, r));
    }
    if (s->A) {
        qh_dgemm('N', transpose ? 'N' : 'T', r * b, a, a, 1.0, X, r * b, s->A, a, 0.0, tmp, r * b);
        memcpy(X, tmp, r * N * sizeof *X);
    }
    return QH_OK;
}

/* X (r x N, contiguous) ← X Oᵀ (transpose 0: every row x becomes O x) or X O. */
static int side_apply_rows(const side_op *s, int transpose, double *X, size_t r)
{
    size_t N = s->N;
    if (s->kind == SIDE_IDENTITY || r == 0)
        return QH_OK;
    double *tmp = malloc(N * r * sizeof *tmp);
    if (!tmp)
        QH_ERROR(QH_ENOMEM, "incoherence transform of %zux%zu: out of memory", r, N);
    int st = QH_OK;
    if (!transpose) {                /* O = P_out (A⊗B) P_in S */
        if (s->signs)
            for (size_t j = 0; j < N; j++)
                for (size_t i = 0; i < r; i++)
                    X[i + j * r] *= s->signs[j];
        if (s->perm_in)
            permute_cols(s->perm_in, 0, X, r, N, tmp);
        st = kron_apply_rows(s, 0, X, r, tmp);
        if (st == QH_OK && s->perm_out)
            permute_cols(s->perm_out, 0, X, r, N, tmp);
    } else {                         /* Oᵀ = S P_inᵀ (A⊗B)ᵀ P_outᵀ */
        if (s->perm_out)
            permute_cols(s->perm_out, 1, X, r, N, tmp);
        st = kron_apply_rows(s, 1, X, r, tmp);
        if (st == QH_OK && s->perm_in)
            permute_cols(s->perm_in, 1, X, r, N, tmp);
        if (st == QH_OK && s->signs)
            for (size_t j = 0; j < N; j++)
                for (size_t i = 0; i < r; i++)
                    X[i + j * r] *= s->signs[j];
    }
    free(tmp);
    return st;
}

/* M (r x c, any ld) ← L M Rᵀ with L = left side (or Lᵀ), R = right side (or Rᵀ);
 * either side may be NULL (identity). Works on a packed copy; no transposes. */
static int two_sided(qh_matd *M, const side_op *L, int Lt, const side_op *R, int Rt)
{
    size_t r = M->rows, c = M->cols;
    int st = QH_OK;
    double *buf = malloc(r * c * sizeof *buf);
    if (!buf)
        QH_ERROR(QH_ENOMEM, "incoherence transform of a %zux%zu matrix: out of memory", r, c);
    for (size_t j = 0; j < c; j++)
        memcpy(buf + j * r, M->data + j * M->ld, r * sizeof *buf);
    if (L)
        st = side_apply_cols(L, Lt, buf, c);
    if (st == QH_OK && R)            /* M Rᵀ: each row x becomes R x */
        st = side_apply_rows(R, Rt, buf, r);
    if (st == QH_OK)
        for (size_t j = 0; j < c; j++)
            memcpy(M->data + j * M->ld, buf + j * r, r * sizeof *buf);
    free(buf);
    return st;
}

static void symmetrize(qh_matd *H)
{
    for (size_t j = 0; j < H->cols; j++)
        for (size_t i = j + 1; i < H->rows; i++) {
            double v = 0.5 * (QH_AT(H, i, j) + QH_AT(H, j, i));
            QH_AT(H, i, j) = v;
            QH_AT(H, j, i) = v;
        }
}

/* d_j = max((max(H_jj, 1e-8) / max(‖W_:j‖², 1e-8))^{1/4}, 1e-8)  (reference §4 "Rescale"). */
static int rescale_vector(const qh_matd *W, const qh_matd *H, double **d_out)
{
    size_t m = W->rows, n = W->cols;
    double *d = malloc(n * sizeof *d);
    if (!d)
        QH_ERROR(QH_ENOMEM, "incoherence rescale of %zu columns: out of memory", n);
    for (size_t j = 0; j < n; j++) {
        double ww = 0.0;
        for (size_t i = 0; i < m; i++)
            ww += QH_AT(W, i, j) * QH_AT(W, i, j);
        double hjj = fmax(QH_AT(H, j, j), 1e-8);
        d[j] = fmax(pow(hjj / fmax(ww, 1e-8), 0.25), 1e-8);
    }
    *d_out = d;
    return QH_OK;
}

static void scale_cols(qh_matd *W, const double *d, int divide)
{
    for (size_t j = 0; j < W->cols; j++) {
        double f = divide ? 1.0 / d[j] : d[j];
        for (size_t i = 0; i < W->rows; i++)
            QH_AT(W, i, j) *= f;
    }
}

static void scale_sym_inv(qh_matd *H, const double *d)
{
    for (size_t j = 0; j < H->cols; j++)
        for (size_t i = 0; i < H->rows; i++)
            QH_AT(H, i, j) /= d[i] * d[j];
}

static const char *kind_name(qh_incoh_kind k)
{
    return k == QH_INCOH_NONE ? "none" : k == QH_INCOH_KRON ? "kron" : k == QH_INCOH_HADAMARD ? "hadamard" : "?";
}

/* ------------------------------------------------------------------- API */

static int check_inputs(const qh_incoh_params *p, const qh_matd *W, const qh_matd *H)
{
    if (!p || !W || !H || !W->data || !H->data)
        QH_ERROR(QH_EINVAL, "incoherence: NULL params, W or H");
    if (p->kind != QH_INCOH_NONE && p->kind != QH_INCOH_KRON && p->kind != QH_INCOH_HADAMARD)
        QH_ERROR(QH_EINVAL, "incoherence: unknown kind %d (expected 0 none, 1 kron, 2 hadamard)", (int)p->kind);
    if (W->rows == 0 || W->cols == 0)
        QH_ERROR(QH_EINVAL, "incoherence: W is %zux%zu, expected a non-empty matrix", W->rows, W->cols);
    if (H->rows != W->cols || H->cols != W->cols)
        QH_ERROR(QH_EBADLEN, "incoherence: H is %zux%zu, expected %zux%zu (cols of W)", H->rows, H->cols,
                 W->cols, W->cols);
    if (!qh_matd_all_finite(W))
        QH_ERROR(QH_ENAN, "incoherence: W (%zux%zu) has NaN or Inf entries", W->rows, W->cols);
    if (!qh_matd_all_finite(H))
        QH_ERROR(QH_ENAN, "incoherence: H (%zux%zu) has NaN or Inf entries", H->rows, H->cols);
    return QH_OK;
}

int qh_incoh_apply(const qh_incoh_params *p, qh_matd *W, qh_matd *H, qh_incoh_state **st_out)
{
    if (!st_out)
        QH_ERROR(QH_EINVAL, "incoherence: NULL state output");
    *st_out = NULL;
    QH_TRY(check_inputs(p, W, H));
    int st = QH_OK;
    qh_incoh_state *s = calloc(1, sizeof *s);
    if (!s)
        QH_ERROR(QH_ENOMEM, "incoherence: out of memory");
    s->params = *p;
    s->m = W->rows;
    s->n = W->cols;
    if (p->rescale) {
        st = rescale_vector(W, H, &s->d);
        if (st != QH_OK)
            goto cleanup;
    }
    st = side_build(&s->left, s->m, p->kind, p, 1);
    if (st == QH_OK)
        st = side_build(&s->right, s->n, p->kind, p, 0);
    if (st == QH_OK)
        st = qh_incoh_forward_W(s, W);
    if (st == QH_OK)
        st = qh_incoh_forward_H(s, H);
cleanup:
    if (st != QH_OK) {
        qh_error_prefix("incoherence %s %zux%zu", kind_name(p->kind), s->m, s->n);
        qh_incoh_state_free(s);
        return st;
    }
    *st_out = s;
    return QH_OK;
}

static int check_W_shape(const qh_incoh_state *s, const qh_matd *W, const char *what)
{
    if (!s || !W || !W->data)
        QH_ERROR(QH_EINVAL, "incoherence %s: NULL state or matrix", what);
    if (W->rows != s->m || W->cols != s->n)
        QH_ERROR(QH_EBADLEN, "incoherence %s: matrix is %zux%zu, expected %zux%zu", what, W->rows, W->cols, s->m,
                 s->n);
    return QH_OK;
}

int qh_incoh_forward_W(const qh_incoh_state *s, qh_matd *W)
{
    QH_TRY(check_W_shape(s, W, "forward W"));
    if (s->d)
        scale_cols(W, s->d, 0);
    return two_sided(W, &s->left, 0, &s->right, 0);
}

int qh_incoh_forward_H(const qh_incoh_state *s, qh_matd *H)
{
    if (!s || !H || !H->data)
        QH_ERROR(QH_EINVAL, "incoherence forward H: NULL state or matrix");
    if (H->rows != s->n || H->cols != s->n)
        QH_ERROR(QH_EBADLEN, "incoherence forward H: H is %zux%zu, expected %zux%zu", H->rows, H->cols, s->n, s->n);
    if (s->d)
        scale_sym_inv(H, s->d);
    QH_TRY(two_sided(H, &s->right, 0, &s->right, 0));
    symmetrize(H);                   /* remove rounding asymmetry: Cholesky-based quantizers read one triangle */
    return QH_OK;
}

int qh_incoh_invert(const qh_incoh_state *s, qh_matd *What)
{
    QH_TRY(check_W_shape(s, What, "invert"));
    QH_TRY(two_sided(What, &s->left, 1, &s->right, 1));   /* Uᵀ Ŵ V */
    if (s->d)
        scale_cols(What, s->d, 1);
    return QH_OK;
}

double qh_incoh_side_bits(const qh_incoh_state *s)
{
    if (!s)
        return 0.0;
    return s->d ? 16.0 * (double)s->n : 0.0;   /* D̃ as FP16; transforms regenerate from (seed, layer) */
}

size_t qh_incoh_rows(const qh_incoh_state *s) { return s ? s->m : 0; }
size_t qh_incoh_cols(const qh_incoh_state *s) { return s ? s->n : 0; }
const double *qh_incoh_rescale_vector(const qh_incoh_state *s) { return s ? s->d : NULL; }

static void describe_side(const side_op *o, char *buf, size_t len)
{
    switch (o->kind) {
    case SIDE_IDENTITY:
        snprintf(buf, len, "I%zu", o->N);
        break;
    case SIDE_KRON:
        snprintf(buf, len, "%sHaar%zu(x)Haar%zu%s", o->perm_out ? "P" : "", o->a, o->b, o->perm_in ? "P" : "");
        break;
    case SIDE_HADAMARD:
        if (o->a > 1)
            snprintf(buf, len, "Haar%zu(x)H%zu*S", o->a, o->b);
        else
            snprintf(buf, len, "H%zu*S", o->b);
        break;
    }
}

void qh_incoh_describe(const qh_incoh_state *s, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    if (!s) {
        snprintf(buf, len, "(null)");
        return;
    }
    char l[64], r[64];
    describe_side(&s->left, l, sizeof l);
    describe_side(&s->right, r, sizeof r);
    snprintf(buf, len, "%s%s L=%s R=%s", kind_name(s->params.kind), s->d ? "+rescale" : "", l, r);
}

static int dense_side(const side_op *o, qh_matd **out)
{
    qh_matd *M = qh_matd_alloc(o->N, o->N);
    if (!M)
        QH_ERROR(QH_ENOMEM, "incoherence: dense %zux%zu transform: out of memory", o->N, o->N);
    for (size_t i = 0; i < o->N; i++)
        QH_AT(M, i, i) = 1.0;
    int st = side_apply_cols(o, 0, M->data, o->N);   /* alloc gives ld == rows */
    if (st != QH_OK) {
        qh_matd_free(M);
        return st;
    }
    *out = M;
    return QH_OK;
}

int qh_incoh_dense_transforms(const qh_incoh_state *s, qh_matd **U, qh_matd **V)
{
    if (!s)
        QH_ERROR(QH_EINVAL, "incoherence: NULL state");
    if (U) {
        *U = NULL;
        QH_TRY(dense_side(&s->left, U));
    }
    if (V) {
        *V = NULL;
        int st = dense_side(&s->right, V);
        if (st != QH_OK) {
            if (U) {
                qh_matd_free(*U);
                *U = NULL;
            }
            return st;
        }
    }
    return QH_OK;
}
