/* qh_adam.h -- one Adam step (Kingma & Ba 2015; AdamW with weight decay 0 as
 * PTQ1.61's reference uses it): β = (0.9, 0.999), ε = 1e-8, bias correction.
 * Used by the ptq161 row for its layer objective and for its block stage's
 * step (core/methods/ptq161.c); any method's optimiser may share it. */
#ifndef QH_ADAM_H
#define QH_ADAM_H

#include <stddef.h>

typedef struct {
    double *m, *v;                   /* (count) first and second moments, zero at t = 1 */
} qh_adam_moments;

/* x -= lr · m̂ / (sqrt(v̂) + ε) after updating the moments with g; t ≥ 1 is
 * the step number (for the bias correction). */
void qh_adam_step(double *x, const double *g, qh_adam_moments *a, size_t count, double lr, int t);

#endif
