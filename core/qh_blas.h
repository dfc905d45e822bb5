/* qh_blas.h -- the harness's only door to CBLAS (OpenBLAS).
 *
 * <cblas.h> and GSL's headers cannot share a translation unit (both declare
 * the CBLAS enums), so every BLAS call goes through these column-major
 * wrappers.  trans arguments are 'N' or 'T'.
 */
#ifndef QH_BLAS_H
#define QH_BLAS_H

#include <stddef.h>

/* C (m x n) = alpha * op(A) * op(B) + beta * C */
void qh_sgemm(char ta, char tb, size_t m, size_t n, size_t k, float alpha,
              const float *A, size_t lda, const float *B, size_t ldb,
              float beta, float *C, size_t ldc);
void qh_dgemm(char ta, char tb, size_t m, size_t n, size_t k, double alpha,
              const double *A, size_t lda, const double *B, size_t ldb,
              double beta, double *C, size_t ldc);
/* C (n x n, upper triangle) = alpha * A * A^T + beta * C, A n x k (trans 'N') or k x n ('T') */
void qh_dsyrk(char trans, size_t n, size_t k, double alpha, const double *A, size_t lda,
              double beta, double *C, size_t ldc);
void qh_ssyrk(char trans, size_t n, size_t k, float alpha, const float *A, size_t lda,
              float beta, float *C, size_t ldc);
/* y = alpha * op(A) x + beta * y */
void qh_dgemv(char ta, size_t m, size_t n, double alpha, const double *A, size_t lda,
              const double *x, double beta, double *y);
/* Triangular solve B = alpha * op(A)^-1 B (side 'L') or B op(A)^-1 (side 'R'). */
void qh_dtrsm(char side, char uplo, char ta, char diag, size_t m, size_t n, double alpha,
              const double *A, size_t lda, double *B, size_t ldb);

typedef struct {
    const char *config;              /* openblas_get_config() */
    const char *core;                /* openblas_get_corename() */
    int threads;                     /* openblas_get_num_threads() */
} qh_blas_info_t;

qh_blas_info_t qh_blas_info(void);
void qh_blas_set_threads(int n);

#endif
