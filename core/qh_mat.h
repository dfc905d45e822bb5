/* qh_mat.h -- dense column-major matrices, as LAPACK stores them.
 *
 * (i, j) lives at data[i + j*ld].  qh_matd (double) serves Hessians and
 * factorisations, qh_matf (float) weights and activations.  An owner matrix
 * frees its data in _free; a view borrows.
 */
#ifndef QH_MAT_H
#define QH_MAT_H

#include <stddef.h>

typedef struct {
    size_t rows, cols, ld;
    double *data;
    int owner;                       /* 1: qh_matd_free releases data; 0: a view */
} qh_matd;

typedef struct {
    size_t rows, cols, ld;
    float *data;
    int owner;
} qh_matf;

#define QH_AT(m, i, j) ((m)->data[(i) + (size_t)(j) * (m)->ld])

qh_matd *qh_matd_alloc(size_t rows, size_t cols);       /* returns new, zeroed; NULL on OOM */
void     qh_matd_free(qh_matd *m);                      /* NULL: no-op */
qh_matd  qh_matd_view(const qh_matd *m, size_t i, size_t j, size_t r, size_t c); /* borrows */
qh_matd *qh_matd_copy(const qh_matd *m);                /* returns new */

qh_matf *qh_matf_alloc(size_t rows, size_t cols);
void     qh_matf_free(qh_matf *m);
qh_matf  qh_matf_view(const qh_matf *m, size_t i, size_t j, size_t r, size_t c);
qh_matf *qh_matf_copy(const qh_matf *m);

/* m := src, a row-major float array of m's shape (e.g. a layer's gradient
 * as the forward stores its weights), widened to double. */
void qh_matd_set_rowmajor_f(qh_matd *m, const float *src);

/* 1 if every entry is finite. */
int qh_matd_all_finite(const qh_matd *m);
int qh_matf_all_finite(const qh_matf *m);

/* v[0..n) in ascending order (qsort); NaNs are not ordered, keep them out. */
void qh_sort_doubles(double *v, size_t n);

#endif
