/* qh_linalg.c -- damping, Cholesky, Hinv and LDL factors for the OPTQ/LDLQ
 * family (methods reference §1; QuIP arXiv 2307.13304 §3).  See qh_linalg.h.
 *
 * Left out: pivoted or blocked-by-hand factorisations (LAPACK does the work),
 * and any symmetry check of H beyond reading its upper triangle.
 */
#include "qh_linalg.h"
#include "qh_blas.h"
#include "qh_clock.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- timing of BLAS/LAPACK calls (bench only) ---------------------------- */

static _Thread_local int timing_on;
static _Thread_local double timing_s;

void qh_lin_timing_enable(int on) { timing_on = on; }
double qh_lin_timing_seconds(void) { return timing_s; }
void qh_lin_timing_reset(void) { timing_s = 0.0; }

#define TIMED(call)                                                   \
    do {                                                              \
        double t0_ = timing_on ? qh_seconds() : 0.0;                       \
        call;                                                         \
        if (timing_on) timing_s += qh_seconds() - t0_;                     \
    } while (0)

void qh_lin_dgemm(char ta, char tb, size_t m, size_t n, size_t k, double alpha,
                  const double *A, size_t lda, const double *B, size_t ldb,
                  double beta, double *C, size_t ldc)
{
    if (m == 0 || n == 0) return;
    if (k == 0) {                    /* BLAS would only scale C; keep that exact */
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i++) C[i + j * ldc] *= beta;
        return;
    }
    TIMED(qh_dgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc));
}

static lapack_int potrf(char uplo, double *A, size_t n, size_t ld)
{
    lapack_int info;
    TIMED(info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, uplo, (lapack_int)n, A, (lapack_int)ld));
    QH_ASSERT(info >= 0);
    return info;
}

static lapack_int potri(char uplo, double *A, size_t n, size_t ld)
{
    lapack_int info;
    TIMED(info = LAPACKE_dpotri_work(LAPACK_COL_MAJOR, uplo, (lapack_int)n, A, (lapack_int)ld));
    QH_ASSERT(info >= 0);
    return info;
}

static lapack_int trtri(char uplo, double *A, size_t n, size_t ld)
{
    lapack_int info;
    TIMED(info = LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, uplo, 'N', (lapack_int)n, A, (lapack_int)ld));
    QH_ASSERT(info >= 0);
    return info;
}

/* ---- small helpers -------------------------------------------------------- */

int qh_check_finite(const qh_matd *A, const char *name)
{
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++)
            if (!isfinite(QH_AT(A, i, j)))
                QH_ERROR(QH_ENAN, "%s (%zu x %zu): entry (%zu, %zu) is %g; finite values required",
                         name ? name : "matrix", A->rows, A->cols, i, j, QH_AT(A, i, j));
    return QH_OK;
}

/* Tiled so that both the rows read and the columns written stay in cache
 * (a plain loop strides through memory and dominates at n = 4096). */
void qh_symmetrize_upper(qh_matd *A)
{
    const size_t T = 64;
    size_t n = A->rows < A->cols ? A->rows : A->cols;
    for (size_t j0 = 0; j0 < n; j0 += T)
        for (size_t i0 = j0; i0 < n; i0 += T) {          /* tile of the lower triangle */
            size_t i1 = i0 + T < n ? i0 + T : n, j1 = j0 + T < n ? j0 + T : n;
            for (size_t j = j0; j < j1; j++)
                for (size_t i = i0 > j + 1 ? i0 : j + 1; i < i1; i++) QH_AT(A, i, j) = QH_AT(A, j, i);
        }
}

/* dst = src (n x n) with the upper triangle mirrored onto the lower one. */
static void copy_sym(const qh_matd *src, qh_matd *dst)
{
    size_t n = src->rows;
    for (size_t j = 0; j < n; j++) memcpy(&QH_AT(dst, 0, j), &QH_AT(src, 0, j), (j + 1) * sizeof(double));
    qh_symmetrize_upper(dst);
}

static void zero_lower(qh_matd *A)
{
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = j + 1; i < A->rows; i++) QH_AT(A, i, j) = 0.0;
}

static void zero_upper(qh_matd *A)
{
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < j && i < A->rows; i++) QH_AT(A, i, j) = 0.0;
}

size_t qh_dead_columns(qh_matd *H, qh_matd *W)
{
    size_t n_dead = 0, n_live = 0;
    double live = 0.0;
    for (size_t i = 0; i < H->cols; i++)
        if (QH_AT(H, i, i) != 0.0) { live += QH_AT(H, i, i); n_live++; }
    double fill = n_live ? live / (double)n_live : 1.0;
    for (size_t i = 0; i < H->cols; i++) {
        if (QH_AT(H, i, i) != 0.0) continue;
        QH_AT(H, i, i) = fill;
        if (W)
            for (size_t r = 0; r < W->rows; r++) QH_AT(W, r, i) = 0.0;
        n_dead++;
    }
    return n_dead;
}

double qh_mean_diag(const qh_matd *H)
{
    double s = 0.0;
    for (size_t i = 0; i < H->cols; i++) s += QH_AT(H, i, i);
    return H->cols ? s / (double)H->cols : 0.0;
}

double qh_damp_base(const qh_matd *H, size_t n_dead, double dead_diag)
{
    size_t n = H->cols;
    double mean = qh_mean_diag(H);
    if (!(dead_diag > 0.0) || n == 0 || n_dead == 0) return mean;
    if (n_dead > n) n_dead = n;
    return ((double)(n - n_dead) * mean + (double)n_dead * dead_diag) / (double)n;
}

/* ---- factorisations ------------------------------------------------------- */

static int check_square(const qh_matd *H, const qh_matd *F)
{
    if (H->rows != H->cols || F->rows != H->rows || F->cols != H->cols)
        QH_ERROR(QH_EBADLEN, "H is %zu x %zu and its factor %zu x %zu; both must be n x n",
                 H->rows, H->cols, F->rows, F->cols);
    return QH_OK;
}

/* Reverses rows and columns of A in place: A ← J A J. */
static void flip_both(qh_matd *A)
{
    size_t n = A->rows, total = n * n;
    for (size_t t = 0; t < total / 2; t++) {
        size_t i = t % n, j = t / n;
        double tmp = QH_AT(A, i, j);
        QH_AT(A, i, j) = QH_AT(A, n - 1 - i, n - 1 - j);
        QH_AT(A, n - 1 - i, n - 1 - j) = tmp;
    }
}

/* Divides column k of the triangular C by C_kk and stores D_k = C_kk². */
static void unit_columns(qh_matd *C, double *D)
{
    for (size_t k = 0; k < C->cols; k++) {
        double c = QH_AT(C, k, k);
        if (D) D[k] = c * c;
        for (size_t i = 0; i < C->rows; i++) QH_AT(C, i, k) /= c;
    }
}

/* Forward-order R of form (a): H = R Rᵀ, R upper, from chol(J H J) = C Cᵀ
 * and R = J C J.  F holds H (symmetric) on entry. */
static lapack_int upper_lower_chol(qh_matd *F)
{
    size_t n = F->rows;
    flip_both(F);
    lapack_int info = potrf('L', F->data, n, F->ld);
    if (info) return info;
    zero_upper(F);
    flip_both(F);
    return 0;
}

/* Factor of the symmetric A + shift·I (upper triangle of A read) into F;
 * LAPACK info (> 0: not positive definite) is returned through *info. */
static void factor_into(qh_factor_kind kind, const qh_matd *A, double shift, qh_matd *F,
                        double *D, lapack_int *info)
{
    size_t n = A->rows;
    copy_sym(A, F);
    for (size_t i = 0; i < n; i++) QH_AT(F, i, i) += shift;
    if (n == 0) { *info = 0; return; }
    switch (kind) {
    case QH_FACTOR_CHOL:
        *info = potrf('U', F->data, n, F->ld);
        zero_lower(F);
        return;
    case QH_FACTOR_HINV_UPPER:
        /* H = R Rᵀ gives H⁻¹ = (R⁻¹)ᵀ R⁻¹ with R⁻¹ upper and a positive diagonal:
         * the upper Cholesky factor of H⁻¹ (unique), in 2n³/3 flops instead of the
         * reference's chol → potri → chol (4n³/3); qh_hinv_upper_chol keeps that route. */
        *info = upper_lower_chol(F);
        if (*info == 0) *info = trtri('U', F->data, n, F->ld);
        return;
    case QH_FACTOR_LDL_FORWARD:          /* form (a): U̇+I = R diag(R)⁻¹, D = diag(R)² */
        *info = upper_lower_chol(F);
        if (*info == 0) unit_columns(F, D);
        return;
    }
    QH_ASSERT(0 && "unknown factor kind");
}

int qh_chol_upper(const qh_matd *H, qh_matd *F)
{
    lapack_int info;
    QH_TRY(check_square(H, F));
    factor_into(QH_FACTOR_CHOL, H, 0.0, F, NULL, &info);
    if (info) QH_ERROR(QH_ENOTPD, "H (%zu x %zu): not positive definite (leading minor %d)",
                       H->rows, H->cols, (int)info);
    return QH_OK;
}

int qh_hinv_upper_chol(const qh_matd *H, qh_matd *F)
{
    lapack_int info = 0;
    QH_TRY(check_square(H, F));
    copy_sym(H, F);                      /* the reference route: chol → potri → chol */
    size_t n = H->rows;
    if (n) info = potrf('U', F->data, n, F->ld);
    if (n && info == 0) info = potri('U', F->data, n, F->ld);
    if (n && info == 0) info = potrf('U', F->data, n, F->ld);
    zero_lower(F);
    if (info) QH_ERROR(QH_ENOTPD, "H (%zu x %zu): not positive definite (LAPACK info %d)",
                       H->rows, H->cols, (int)info);
    return QH_OK;
}

int qh_ldl_factor(const qh_matd *H, qh_ldl_order order, qh_matd *F, double *D)
{
    lapack_int info = 0;
    QH_TRY(check_square(H, F));
    if (order == QH_LDL_FORWARD) {
        factor_into(QH_FACTOR_LDL_FORWARD, H, 0.0, F, D, &info);
    } else {                             /* plain Cholesky H = C Cᵀ, C lower */
        copy_sym(H, F);
        if (H->rows) info = potrf('L', F->data, H->rows, F->ld);
        if (info == 0) { zero_upper(F); unit_columns(F, D); }
    }
    if (info) QH_ERROR(QH_ENOTPD, "H (%zu x %zu): not positive definite (LDL, LAPACK info %d)",
                       H->rows, H->cols, (int)info);
    return QH_OK;
}

void qh_ldl_diag_from_hinv(const qh_matd *R, double *D)
{
    for (size_t k = 0; k < R->cols; k++) D[k] = 1.0 / (QH_AT(R, k, k) * QH_AT(R, k, k));
}

int qh_factor_damped(qh_matd *H, double damp, qh_factor_kind kind, qh_matd *F, double *D,
                     size_t *n_retries, double *damp_used)
{
    QH_TRY(check_square(H, F));
    return qh_factor_damped_base(H, damp, qh_mean_diag(H), kind, F, D, n_retries, damp_used);
}

int qh_factor_damped_base(qh_matd *H, double damp, double base, qh_factor_kind kind, qh_matd *F,
                          double *D, size_t *n_retries, double *damp_used)
{
    size_t n = H->rows, retries = 0;
    QH_TRY(check_square(H, F));
    QH_ASSERT(damp >= 0.0 && base >= 0.0);
    if (n_retries) *n_retries = 0;
    for (size_t i = 0; i < n; i++)
        if (QH_AT(H, i, i) < 0.0)
            QH_ERROR(QH_ENOTPD, "H (%zu x %zu): diagonal entry %zu is %g < 0; a proxy Hessian "
                     "must be positive semidefinite", n, n, i, QH_AT(H, i, i));
    qh_symmetrize_upper(H);
    double lam = damp;
    for (;;) {
        lapack_int info;
        factor_into(kind, H, lam * base, F, D, &info);
        if (info == 0) break;
        retries++;                       /* indicative outcome: fixed and counted */
        lam = fmax(10.0 * lam, 1e-6);
        if (lam > 1.0) {
            if (n_retries) *n_retries = retries;
            QH_ERROR(QH_ENOTPD, "H (%zu x %zu): not positive definite even with damping "
                     "%g x mean(diag H) after %zu retries", n, n, lam / 10.0, retries);
        }
    }
    for (size_t i = 0; i < n; i++) QH_AT(H, i, i) += lam * base;
    if (n_retries) *n_retries = retries;
    if (damp_used) *damp_used = lam;
    return QH_OK;
}

/* ---- permutations --------------------------------------------------------- */

void qh_permute_sym(const qh_matd *A, const size_t *p, qh_matd *B)
{
    for (size_t l = 0; l < A->cols; l++)
        for (size_t k = 0; k < A->rows; k++) QH_AT(B, k, l) = QH_AT(A, p[k], p[l]);
}

void qh_permute_cols(const qh_matd *W, const size_t *p, qh_matd *Wp)
{
    for (size_t k = 0; k < W->cols; k++)
        memcpy(&QH_AT(Wp, 0, k), &QH_AT(W, 0, p[k]), W->rows * sizeof(double));
}

void qh_unpermute_cols(const qh_matd *Wp, const size_t *p, qh_matd *W)
{
    for (size_t k = 0; k < W->cols; k++)
        memcpy(&QH_AT(W, 0, p[k]), &QH_AT(Wp, 0, k), W->rows * sizeof(double));
}

/* Stable insertion-free ordering: merge sort on indices keyed by diag(H). */
static void merge_sort_idx(size_t *p, size_t *tmp, size_t n, const qh_matd *H, int desc)
{
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort_idx(p, tmp, h, H, desc);
    merge_sort_idx(p + h, tmp, n - h, H, desc);
    size_t a = 0, b = h, o = 0;
    while (a < h && b < n) {
        double da = QH_AT(H, p[a], p[a]), db = QH_AT(H, p[b], p[b]);
        int take_b = desc ? (db > da) : (db < da);
        tmp[o++] = take_b ? p[b++] : p[a++];
    }
    while (a < h) tmp[o++] = p[a++];
    while (b < n) tmp[o++] = p[b++];
    memcpy(p, tmp, n * sizeof *p);
}

void qh_order_by_diag(const qh_matd *H, int descending, size_t *p)
{
    size_t n = H->cols;
    for (size_t i = 0; i < n; i++) p[i] = i;
    /* Scratch of n indices: the second half of p is not free, so borrow the
     * stack for small n and the heap otherwise (called once per layer). */
    size_t small[256];
    size_t *tmp = n <= 256 ? small : malloc(n * sizeof *tmp);
    if (!tmp) {                         /* fall back to a stable O(n²) insertion sort */
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0; j--) {
                double dj = QH_AT(H, p[j], p[j]), dk = QH_AT(H, p[j - 1], p[j - 1]);
                if (!(descending ? dj > dk : dj < dk)) break;
                size_t t = p[j]; p[j] = p[j - 1]; p[j - 1] = t;
            }
        return;
    }
    merge_sort_idx(p, tmp, n, H, descending);
    if (tmp != small) free(tmp);
}

/* ---- proxy loss ----------------------------------------------------------- */

int qh_lin_proxy_loss_ws(const qh_matd *W, const qh_matd *What, const qh_matd *H,
                         double *scratch, double *loss)
{
    size_t m = W->rows, n = W->cols, panel = QH_PROXY_LOSS_PANEL;
    if (What->rows != m || What->cols != n || H->rows != n || H->cols != n)
        QH_ERROR(QH_EBADLEN, "proxy loss: W %zu x %zu, What %zu x %zu, H %zu x %zu disagree",
                 m, n, What->rows, What->cols, H->rows, H->cols);
    *loss = 0.0;
    if (m == 0 || n == 0) return QH_OK;
    /* ℓ = tr(E H Eᵀ) = Σ_ab H_ab (EᵀE)_ab over the upper triangle (off-diagonal
     * twice): the upper part of EᵀE costs m n² flops, half of E·H. */
    double *E = scratch, *T = scratch + m * n;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) E[i + j * m] = QH_AT(What, i, j) - QH_AT(W, i, j);
    double s = 0.0;
    for (size_t j0 = 0; j0 < n; j0 += panel) {
        size_t nb = n - j0 < panel ? n - j0 : panel, rows = j0 + nb;
        /* T = E[:, 0:rows]ᵀ E[:, j0:j0+nb]  (rows x nb) */
        qh_lin_dgemm('T', 'N', rows, nb, m, 1.0, E, m, E + j0 * m, m, 0.0, T, rows);
        for (size_t c = 0; c < nb; c++) {
            size_t j = j0 + c;
            double part = 0.0;
            for (size_t i = 0; i < j; i++) part += T[i + c * rows] * QH_AT(H, i, j);
            s += 2.0 * part + T[j + c * rows] * QH_AT(H, j, j);
        }
    }
    *loss = s;
    return QH_OK;
}

int qh_lin_proxy_loss(const qh_matd *W, const qh_matd *What, const qh_matd *H, double *loss)
{
    size_t m = W->rows, n = W->cols;
    double *scratch = malloc((QH_PROXY_LOSS_SCRATCH(m, n) + 1) * sizeof *scratch);
    if (!scratch) QH_ERROR(QH_ENOMEM, "proxy loss: no memory for %zu x %zu", m, n);
    int st = qh_lin_proxy_loss_ws(W, What, H, scratch, loss);
    free(scratch);
    return st;
}

int qh_chol_small(double *A, size_t g)
{
    for (size_t j = 0; j < g; j++) {
        double d = A[j + j * g];
        for (size_t k = 0; k < j; k++) d -= A[j + k * g] * A[j + k * g];
        if (!(d > 0.0)) return 0;
        d = sqrt(d);
        A[j + j * g] = d;
        for (size_t i = j + 1; i < g; i++) {
            double s = A[i + j * g];
            for (size_t k = 0; k < j; k++) s -= A[i + k * g] * A[j + k * g];
            A[i + j * g] = s / d;
        }
    }
    return 1;
}

void qh_chol_small_solve(const double *L, size_t g, double *x)
{
    for (size_t i = 0; i < g; i++) {                        /* L y = x */
        double s = x[i];
        for (size_t k = 0; k < i; k++) s -= L[i + k * g] * x[k];
        x[i] = s / L[i + i * g];
    }
    for (size_t i = g; i-- > 0;) {                          /* Lᵀ z = y */
        double s = x[i];
        for (size_t k = i + 1; k < g; k++) s -= L[k + i * g] * x[k];
        x[i] = s / L[i + i * g];
    }
}
