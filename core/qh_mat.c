/* qh_mat.c -- allocation, views and copies of column-major matrices. */
#include "qh_mat.h"
#include "qh_error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFINE_MAT(T, E)                                                              \
    qh_##T *qh_##T##_alloc(size_t rows, size_t cols)                                  \
    {                                                                                 \
        qh_##T *m = calloc(1, sizeof *m);                                             \
        size_t n = (rows && cols) ? rows * cols : 1;                               \
        if (!m) return NULL;                                                          \
        m->data = calloc(n, sizeof(E));                                               \
        if (!m->data) { free(m); return NULL; }                                       \
        m->rows = rows; m->cols = cols; m->ld = rows ? rows : 1; m->owner = 1;        \
        return m;                                                                     \
    }                                                                                 \
    void qh_##T##_free(qh_##T *m)                                                     \
    {                                                                                 \
        if (!m) return;                                                               \
        if (m->owner) free(m->data);                                                  \
        free(m);                                                                      \
    }                                                                                 \
    qh_##T qh_##T##_view(const qh_##T *m, size_t i, size_t j, size_t r, size_t c)     \
    {                                                                                 \
        QH_ASSERT(i + r <= m->rows && j + c <= m->cols);                              \
        qh_##T v = { r, c, m->ld, m->data + i + j * m->ld, 0 };                       \
        return v;                                                                     \
    }                                                                                 \
    qh_##T *qh_##T##_copy(const qh_##T *m)                                            \
    {                                                                                 \
        qh_##T *c = qh_##T##_alloc(m->rows, m->cols);                                 \
        if (!c) return NULL;                                                          \
        for (size_t j = 0; j < m->cols; j++)                                          \
            memcpy(c->data + j * c->ld, m->data + j * m->ld, m->rows * sizeof(E));    \
        return c;                                                                     \
    }                                                                                 \
    int qh_##T##_all_finite(const qh_##T *m)                                          \
    {                                                                                 \
        for (size_t j = 0; j < m->cols; j++)                                          \
            for (size_t i = 0; i < m->rows; i++)                                      \
                if (!isfinite(QH_AT(m, i, j))) return 0;                              \
        return 1;                                                                     \
    }

DEFINE_MAT(matd, double)
DEFINE_MAT(matf, float)

void qh_matd_set_rowmajor_f(qh_matd *m, const float *src)
{
    for (size_t i = 0; i < m->rows; i++)
        for (size_t j = 0; j < m->cols; j++) QH_AT(m, i, j) = (double)src[i * m->cols + j];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void qh_sort_doubles(double *v, size_t n)
{
    if (n > 1) qsort(v, n, sizeof *v, cmp_double);
}
