/* qh_bounds.c -- evaluates the QuIP (arXiv 2307.13304: Thm 1, Lemma 2, Thm 3,
 * Thm 4) and QuIP# (arXiv 2402.04396: RHT incoherence, BlockLDLQ) bounds of
 * methods reference §15 in grid units (scale S = mΔ² or Σ_r Δ_r²). Lemma 5
 * and the finite-grid bound carry unknown constants and are left out.
 */
#include "qh_bounds.h"

#include <math.h>
#include <string.h>

static void add(qh_bound_list *L, const char *name, double v, qh_bound_kind k, const char *formula)
{
    QH_ASSERT(L->count < QH_BOUNDS_MAX);
    qh_bound *b = &L->items[L->count++];
    b->name = name;
    b->value = v;
    b->applies_to = k;
    b->formula = formula;
}

void qh_bound_inputs_from_metrics(qh_bound_inputs *in, size_t m, size_t n, const qh_basis_metrics *bm)
{
    QH_ASSERT(in && bm);
    memset(in, 0, sizeof *in);
    in->m = m;
    in->n = n;
    in->tr_D = bm->tr_D;
    in->tr_H = bm->spec.tr_H;
    in->tr_sqrtH_sq = bm->spec.tr_sqrtH_sq;
    in->mu_H = bm->spec.mu_H;
}

int qh_bound_inputs_from_H(qh_bound_inputs *in, size_t m, const qh_matd *H, const size_t *order)
{
    if (!in || !H)
        QH_ERROR(QH_EINVAL, "bounds: NULL inputs or H");
    memset(in, 0, sizeof *in);
    qh_spectrum sp;
    QH_TRY(qh_spectrum_compute(H, &sp));
    double trd = NAN;
    int st = qh_ldl_diag(H, order, NULL, &trd);
    if (st == QH_ENOTPD) {
        trd = NAN;
        qh_error_clear();
    } else if (st != QH_OK) {
        return st;
    }
    in->m = m;
    in->n = H->rows;
    in->tr_D = trd;
    in->tr_H = sp.tr_H;
    in->tr_sqrtH_sq = sp.tr_sqrtH_sq;
    in->mu_H = sp.mu_H;
    return QH_OK;
}

static int finite_nonneg(double x) { return isfinite(x) && x >= 0.0; }

/* S: mΔ² or Σ_r Δ_r². */
static int grid_scale(const qh_bound_inputs *in, double *S)
{
    if (in->delta_rows) {
        double s = 0.0;
        for (size_t r = 0; r < in->m; r++) {
            if (!finite_nonneg(in->delta_rows[r]))
                QH_ERROR(QH_EINVAL, "bounds: per-row step %zu is %g, expected finite >= 0", r, in->delta_rows[r]);
            s += in->delta_rows[r] * in->delta_rows[r];
        }
        *S = s;
    } else {
        if (!(isfinite(in->delta) && in->delta > 0.0))
            QH_ERROR(QH_EINVAL, "bounds: grid step %g, expected finite > 0 (or per-row steps)", in->delta);
        *S = (double)in->m * in->delta * in->delta;
    }
    return QH_OK;
}

int qh_bounds_compute(const qh_bound_inputs *in, qh_bound_list *out)
{
    if (!in || !out)
        QH_ERROR(QH_EINVAL, "bounds: NULL inputs or output");
    out->count = 0;
    if (in->m == 0 || in->n == 0)
        QH_ERROR(QH_EINVAL, "bounds: layer is %zux%zu, expected non-empty", in->m, in->n);
    if (!finite_nonneg(in->tr_H) || !finite_nonneg(in->tr_sqrtH_sq))
        QH_ERROR(QH_EINVAL, "bounds: tr H = %g, tr(H^1/2)^2 = %g, expected finite >= 0", in->tr_H, in->tr_sqrtH_sq);
    double S = 0.0;
    QH_TRY(grid_scale(in, &S));
    double m = (double)in->m, n = (double)in->n;

    if (finite_nonneg(in->tr_D)) {   /* NAN when H was singular */
        add(out, "thm1_ldlq_worst", S / 4.0 * in->tr_D, QH_BOUND_WORST, "(m/4) tr D * Delta^2");
        add(out, "thm1_ldlq_avg_nearest", S / 12.0 * in->tr_D, QH_BOUND_AVERAGE, "(m/12) tr D * Delta^2");
        add(out, "thm1_ldlq_avg_stochastic", S / 6.0 * in->tr_D, QH_BOUND_AVERAGE, "(m/6) tr D * Delta^2");
    }
    add(out, "nearest_worst", S / 4.0 * in->tr_H, QH_BOUND_WORST, "(m/4) tr H * Delta^2");
    add(out, "nearest_avg", S / 12.0 * in->tr_H, QH_BOUND_AVERAGE, "(m/12) tr H * Delta^2");
    add(out, "stochastic_avg", S / 6.0 * in->tr_H, QH_BOUND_AVERAGE, "(m/6) tr H * Delta^2");

    double t = in->tr_sqrtH_sq;
    if (in->mu_H > 0.0 && isfinite(in->mu_H)) {
        double mu2 = in->mu_H * in->mu_H;
        add(out, "lemma2_trD", mu2 / n * t, QH_BOUND_TRACE_D, "(mu^2/n) tr(H^1/2)^2");
        add(out, "thm3_worst", S * mu2 / (4.0 * n) * t, QH_BOUND_WORST, "(m mu^2/(4n)) tr(H^1/2)^2 * Delta^2");
        add(out, "thm3_avg_nearest", S * mu2 / (12.0 * n) * t, QH_BOUND_AVERAGE,
            "(m mu^2/(12n)) tr(H^1/2)^2 * Delta^2");
        add(out, "thm3_avg_stochastic", S * mu2 / (6.0 * n) * t, QH_BOUND_AVERAGE,
            "(m mu^2/(6n)) tr(H^1/2)^2 * Delta^2");
    }
    double mu_rht = NAN;
    if (in->prob_delta > 0.0 && in->prob_delta < 1.0) {
        mu_rht = sqrt(2.0 * log(2.0 * n * n / in->prob_delta));
        add(out, "rht_mu_H", mu_rht, QH_BOUND_MU_H, "sqrt(2 log(2 n^2/delta))");
        add(out, "rht_mu_W", 2.0 * log(4.0 * m * n / in->prob_delta), QH_BOUND_MU_W, "2 log(4 m n/delta)");
        add(out, "thm3_worst_rht_mu", S * mu_rht * mu_rht / (4.0 * n) * t, QH_BOUND_WORST,
            "(m mu_rht^2/(4n)) tr(H^1/2)^2 * Delta^2");
    }
    if (in->g > 0 && in->sigma2 > 0.0 && isfinite(in->sigma2)) {
        double ws = in->wscale > 0.0 ? in->wscale : 1.0;
        double base = (double)in->g * m * in->sigma2 / n * t * ws * ws;
        if (in->mu_H > 0.0 && isfinite(in->mu_H))
            add(out, "quipsharp_blockldlq", base * in->mu_H * in->mu_H, QH_BOUND_AVERAGE,
                "(g m mu^2 sigma^2/n) tr(H^1/2)^2 * Wscale^2");
        if (isfinite(mu_rht))
            add(out, "quipsharp_blockldlq_rht_mu", base * mu_rht * mu_rht, QH_BOUND_AVERAGE,
                "(g m mu_rht^2 sigma^2/n) tr(H^1/2)^2 * Wscale^2");
    }
    return QH_OK;
}

const qh_bound *qh_bounds_find(const qh_bound_list *list, const char *name)
{
    if (!list || !name)
        return NULL;
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].name, name) == 0)
            return &list->items[i];
    return NULL;
}

const char *qh_bound_kind_name(qh_bound_kind k)
{
    switch (k) {
    case QH_BOUND_WORST: return "worst";
    case QH_BOUND_AVERAGE: return "average";
    case QH_BOUND_TRACE_D: return "trace_D";
    case QH_BOUND_MU_H: return "mu_H";
    case QH_BOUND_MU_W: return "mu_W";
    }
    return "?";
}
