/* qh_bounds.h -- the evaluable bounds of the QuIP / QuIP# theory (methods
 * reference §15), in the units of a given grid.
 *
 * Step-1 (integer grid) formulas are multiplied by Δ²: every "m" below stands
 * for the scale S = mΔ² (one step Δ) or S = Σ_r Δ_r² (per-row steps), as in
 * the reference's per-layer test procedure. c = 12 (nearest), 6 (stochastic).
 *   thm1_ldlq_worst          (S/4) tr D               Thm 1 (= sup_W E ℓ of LDLQ)
 *   thm1_ldlq_avg_nearest    (S/12) tr D              Thm 1, W ~ U[0,1]
 *   thm1_ldlq_avg_stochastic (S/6) tr D
 *   nearest_worst            (S/4) tr H               U = 0 (also Thm 4's sup over rotations)
 *   nearest_avg              (S/12) tr H
 *   stochastic_avg           (S/6) tr H
 *   lemma2_trD               (μ²/n) tr(H^{1/2})²      bounds tr D itself (no Δ²)
 *   thm3_worst               (S μ²/(4n)) tr(H^{1/2})²
 *   thm3_avg_nearest         (S μ²/(12n)) tr(H^{1/2})²
 *   thm3_avg_stochastic      (S μ²/(6n)) tr(H^{1/2})²
 *   rht_mu_H                 √(2 log(2n²/δ))          QuIP# RHT, probability ≥ 1−δ
 *   rht_mu_W                 2 log(4mn/δ)
 *   thm3_worst_rht_mu        thm3_worst with μ = rht_mu_H
 *   quipsharp_blockldlq      (g m μ² σ²/n) tr(H^{1/2})² · Wscale²  (needs g, σ²)
 *   quipsharp_blockldlq_rht_mu   the same with μ = rht_mu_H
 * μ is the measured μ_H of the H rounded against. Not evaluable (unknown
 * constants, left out): Lemma 5 (A, C) and the finite-grid Õ(·) bound.
 */
#ifndef QH_BOUNDS_H
#define QH_BOUNDS_H

#include <stddef.h>

#include "qh_error.h"
#include "qh_metrics.h"

typedef enum {
    QH_BOUND_WORST = 0,              /* bounds sup_W E ℓ (every trial, without clamping) */
    QH_BOUND_AVERAGE = 1,            /* predicts/bounds E_W ℓ */
    QH_BOUND_TRACE_D = 2,            /* bounds tr D (Lemma 2) */
    QH_BOUND_MU_H = 3,               /* high-probability value of μ_H */
    QH_BOUND_MU_W = 4,               /* high-probability value of μ_W */
} qh_bound_kind;

#define QH_BOUNDS_MAX 24

typedef struct {
    const char *name;                /* stable key (static string) */
    double value;
    qh_bound_kind applies_to;
    const char *formula;             /* static string, e.g. "(S/4) tr D, S = m Delta^2" */
} qh_bound;

typedef struct {
    size_t count;
    qh_bound items[QH_BOUNDS_MAX];
} qh_bound_list;

typedef struct {
    size_t m, n;
    double tr_D, tr_H, tr_sqrtH_sq;  /* of the H rounded against, tr D in the order used */
    double mu_H;                     /* measured μ_H (≤ 0: skip the μ bounds) */
    double delta;                    /* grid step Δ (used when delta_rows is NULL) */
    const double *delta_rows;        /* per-row steps Δ_r, length m, or NULL; borrows */
    double prob_delta;               /* δ of the RHT μ formulas; ≤ 0: skip them */
    size_t g;                        /* QuIP# block size (0: skip the QuIP# bound) */
    double sigma2;                   /* codebook MSE per coordinate at the used scale */
    double wscale;                   /* QuIP# Wscale (≤ 0 taken as 1) */
} qh_bound_inputs;

/* Zeroes in and fills m, n, tr_D, tr_H, tr_sqrtH_sq, mu_H from metrics of one basis;
 * the caller then sets delta (or delta_rows) and the optional fields. */
void qh_bound_inputs_from_metrics(qh_bound_inputs *in, size_t m, size_t n,
                                  const qh_basis_metrics *bm);

/* The same from H itself (n x n): spectrum and tr D in processing order `order`
 * (NULL = natural; a non-PD H leaves tr_D = NAN and the Thm 1 entries out).
 * Returns QH_OK or the statuses of qh_spectrum_compute / qh_ldl_diag. */
int qh_bound_inputs_from_H(qh_bound_inputs *in, size_t m, const qh_matd *H, const size_t *order) QH_MUST_CHECK;

/* Evaluates every applicable bound into out. Returns QH_OK, QH_EINVAL (NULL,
 * m or n zero, negative/non-finite traces, no positive step). */
int qh_bounds_compute(const qh_bound_inputs *in, qh_bound_list *out) QH_MUST_CHECK;

/* The entry named name, or NULL. */
const qh_bound *qh_bounds_find(const qh_bound_list *list, const char *name);
const char *qh_bound_kind_name(qh_bound_kind k); /* "worst", "average", "trace_D", "mu_H", "mu_W" */

#endif
