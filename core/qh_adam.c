/* qh_adam.c -- one Adam step (see qh_adam.h). */
#include "qh_adam.h"

#include <math.h>

#define ADAM_B1 0.9
#define ADAM_B2 0.999
#define ADAM_EPS 1e-8

void qh_adam_step(double *x, const double *g, qh_adam_moments *a, size_t count, double lr, int t)
{
    double c1 = 1.0 - pow(ADAM_B1, t), c2 = 1.0 - pow(ADAM_B2, t);
    for (size_t k = 0; k < count; k++) {
        a->m[k] = ADAM_B1 * a->m[k] + (1.0 - ADAM_B1) * g[k];
        a->v[k] = ADAM_B2 * a->v[k] + (1.0 - ADAM_B2) * g[k] * g[k];
        x[k] -= lr * (a->m[k] / c1) / (sqrt(a->v[k] / c2) + ADAM_EPS);
    }
}
