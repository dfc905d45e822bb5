/* qh_block_helpers.c -- the block-tuned rows' Adam step (see qh_block_helpers.h). */
#include "qh_block_helpers.h"

#include <string.h>

#include "qh_adam.h"

void qh_block_adam_step(const qh_adam_vector *v, size_t nv, double *moments, int step_no,
                        double beta1, double beta2)
{
    size_t total = 0;
    for (size_t i = 0; i < nv; i++) total += 2 * v[i].count;
    if (step_no == 1) memset(moments, 0, total * sizeof *moments);
    for (size_t i = 0; i < nv; i++) {
        qh_adam_moments a = { moments, moments + v[i].count };
        qh_adam_step_betas(v[i].x, v[i].g, &a, v[i].count, v[i].lr, step_no, beta1, beta2);
        moments += 2 * v[i].count;
    }
}
