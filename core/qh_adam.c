/* qh_adam.c -- one Adam step (see qh_adam.h). */
#include "qh_adam.h"

#include <math.h>

#define ADAM_EPS 1e-8

void qh_adam_step_betas(double *x, const double *g, qh_adam_moments *a, size_t count, double lr,
                        int t, double beta1, double beta2)
{
    double c1 = 1.0 - pow(beta1, t), c2 = 1.0 - pow(beta2, t);
    for (size_t k = 0; k < count; k++) {
        a->m[k] = beta1 * a->m[k] + (1.0 - beta1) * g[k];
        a->v[k] = beta2 * a->v[k] + (1.0 - beta2) * g[k] * g[k];
        x[k] -= lr * (a->m[k] / c1) / (sqrt(a->v[k] / c2) + ADAM_EPS);
    }
}

void qh_adam_step(double *x, const double *g, qh_adam_moments *a, size_t count, double lr, int t)
{
    qh_adam_step_betas(x, g, a, count, lr, t, QH_ADAM_BETA1, QH_ADAM_BETA2);
}
