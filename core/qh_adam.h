/* qh_adam.h -- one Adam step (Kingma & Ba 2015; AdamW with weight decay 0 as
 * PTQ1.61's reference uses it): by default β = (0.9, 0.999), ε = 1e-8, bias
 * correction; qh_adam_step_betas takes other betas (AQLM's block
 * fine-tuning uses (0.9, 0.95)).  Used by the ptq161 row for its layer
 * objective and for its block stage's step (core/methods/ptq161.c) and by
 * aqlm's fine-tuning; any method's optimiser may share it. */
#ifndef QH_ADAM_H
#define QH_ADAM_H

#include <stddef.h>

/* The default decay rates of qh_adam_step. */
#define QH_ADAM_BETA1 0.9
#define QH_ADAM_BETA2 0.999

typedef struct {
    double *m, *v;                   /* (count) first and second moments, zero at t = 1 */
} qh_adam_moments;

/* x -= lr · m̂ / (sqrt(v̂) + ε) after updating the moments with g; t ≥ 1 is
 * the step number (for the bias correction). */
void qh_adam_step(double *x, const double *g, qh_adam_moments *a, size_t count, double lr, int t);
/* The same with moment decay rates beta1, beta2 in [0, 1). */
void qh_adam_step_betas(double *x, const double *g, qh_adam_moments *a, size_t count, double lr,
                        int t, double beta1, double beta2);

#endif
