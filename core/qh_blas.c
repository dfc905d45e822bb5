/* qh_blas.c -- column-major CBLAS wrappers over OpenBLAS (see qh_blas.h). */
#include "qh_blas.h"

#include <cblas.h>

static enum CBLAS_TRANSPOSE tr(char t) { return (t == 'T' || t == 't') ? CblasTrans : CblasNoTrans; }

void qh_sgemm(char ta, char tb, size_t m, size_t n, size_t k, float alpha,
              const float *A, size_t lda, const float *B, size_t ldb,
              float beta, float *C, size_t ldc)
{
    cblas_sgemm(CblasColMajor, tr(ta), tr(tb), (blasint)m, (blasint)n, (blasint)k, alpha,
                A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void qh_dgemm(char ta, char tb, size_t m, size_t n, size_t k, double alpha,
              const double *A, size_t lda, const double *B, size_t ldb,
              double beta, double *C, size_t ldc)
{
    cblas_dgemm(CblasColMajor, tr(ta), tr(tb), (blasint)m, (blasint)n, (blasint)k, alpha,
                A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void qh_dsyrk(char trans, size_t n, size_t k, double alpha, const double *A, size_t lda,
              double beta, double *C, size_t ldc)
{
    cblas_dsyrk(CblasColMajor, CblasUpper, tr(trans), (blasint)n, (blasint)k, alpha,
                A, (blasint)lda, beta, C, (blasint)ldc);
}

void qh_ssyrk(char trans, size_t n, size_t k, float alpha, const float *A, size_t lda,
              float beta, float *C, size_t ldc)
{
    cblas_ssyrk(CblasColMajor, CblasUpper, tr(trans), (blasint)n, (blasint)k, alpha,
                A, (blasint)lda, beta, C, (blasint)ldc);
}

void qh_dgemv(char ta, size_t m, size_t n, double alpha, const double *A, size_t lda,
              const double *x, double beta, double *y)
{
    cblas_dgemv(CblasColMajor, tr(ta), (blasint)m, (blasint)n, alpha, A, (blasint)lda,
                x, 1, beta, y, 1);
}

void qh_dtrsm(char side, char uplo, char ta, char diag, size_t m, size_t n, double alpha,
              const double *A, size_t lda, double *B, size_t ldb)
{
    cblas_dtrsm(CblasColMajor, (side == 'R' || side == 'r') ? CblasRight : CblasLeft,
                (uplo == 'L' || uplo == 'l') ? CblasLower : CblasUpper, tr(ta),
                (diag == 'U' || diag == 'u') ? CblasUnit : CblasNonUnit,
                (blasint)m, (blasint)n, alpha, A, (blasint)lda, B, (blasint)ldb);
}

qh_blas_info_t qh_blas_info(void)
{
    qh_blas_info_t info = { openblas_get_config(), openblas_get_corename(),
                            openblas_get_num_threads() };
    return info;
}

void qh_blas_set_threads(int n) { openblas_set_num_threads(n); }
