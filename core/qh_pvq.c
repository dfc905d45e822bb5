/* qh_pvq.c -- pyramid vector quantization: exact counting, enumeration,
 * greedy pulse searches and the amplitude levels (see qh_pvq.h; methods
 * reference §11).  The regularized incomplete beta function for the
 * amplitude levels is evaluated by its continued fraction (modified Lentz)
 * and inverted by bisection. */
#include "qh_pvq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- counting --------------------------------------------------------------- */

/* *out = a + b; 1 on uint64 overflow. */
static int add_overflows(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a > UINT64_MAX - b) return 1;
    *out = a + b;
    return 0;
}

/* One more row of the recurrence: next[k] = V(n+1, k) from prev[k] = V(n, k).
 * Returns 1 on overflow.  V is increasing in both arguments, so an overflow
 * anywhere means V(N, K) itself does not fit. */
static int next_row(const uint64_t *prev, uint64_t *next, unsigned K)
{
    next[0] = 1;
    for (unsigned k = 1; k <= K; k++) {
        uint64_t s;
        if (add_overflows(prev[k], next[k - 1], &s) || add_overflows(s, prev[k - 1], &next[k])) return 1;
    }
    return 0;
}

static void first_row(uint64_t *row, unsigned K)
{
    row[0] = 1;
    for (unsigned k = 1; k <= K; k++) row[k] = 0;         /* V(0, K > 0) = 0 */
}

int qh_pvq_count(unsigned N, unsigned K, uint64_t *count)
{
    uint64_t *a = malloc(2 * ((size_t)K + 1) * sizeof *a);
    if (!a) QH_ERROR(QH_ENOMEM, "PVQ count V(%u, %u): rows of %u entries", N, K, K + 1);
    uint64_t *prev = a, *next = a + K + 1;
    first_row(prev, K);
    for (unsigned n = 0; n < N; n++) {
        if (next_row(prev, next, K)) {
            free(a);
            QH_ERROR(QH_EINVAL, "PVQ V(N = %u, K = %u) overflows 64 bits (index needs about %.1f bits); "
                     "use smaller groups or fewer pulses", N, K, qh_pvq_log2_count(N, K));
        }
        uint64_t *t = prev; prev = next; next = t;
    }
    *count = prev[K];
    free(a);
    return QH_OK;
}

double qh_pvq_log2_count(unsigned N, unsigned K)
{
    double *a = malloc(2 * ((size_t)K + 1) * sizeof *a);
    if (!a) return NAN;
    double *prev = a, *next = a + K + 1;
    prev[0] = 1.0;
    for (unsigned k = 1; k <= K; k++) prev[k] = 0.0;
    for (unsigned n = 0; n < N; n++) {
        next[0] = 1.0;
        for (unsigned k = 1; k <= K; k++) next[k] = prev[k] + next[k - 1] + prev[k - 1];
        double *t = prev; prev = next; next = t;
    }
    double v = prev[K];
    free(a);
    return v > 0.0 ? log2(v) : -INFINITY;
}

int qh_pvq_table_init(qh_pvq_table *t, unsigned N, unsigned K)
{
    memset(t, 0, sizeof *t);
    if (N == 0) QH_ERROR(QH_EINVAL, "PVQ table: dimension N = 0 (need N >= 1)");
    size_t row = (size_t)K + 1;
    if (!(t->V = malloc(((size_t)N + 1) * row * sizeof *t->V)))
        QH_ERROR(QH_ENOMEM, "PVQ table V(n <= %u, k <= %u)", N, K);
    t->N = N;
    t->K = K;
    first_row(t->V, K);
    for (unsigned n = 0; n < N; n++)
        if (next_row(t->V + n * row, t->V + (n + 1) * row, K)) {
            qh_pvq_table_free(t);
            QH_ERROR(QH_EINVAL, "PVQ V(N = %u, K = %u) overflows 64 bits (index needs about %.1f bits); "
                     "use smaller groups or fewer pulses", N, K, qh_pvq_log2_count(N, K));
        }
    return QH_OK;
}

void qh_pvq_table_free(qh_pvq_table *t)
{
    free(t->V);
    memset(t, 0, sizeof *t);
}

/* ---- enumeration ------------------------------------------------------------ */

int qh_pvq_encode(const qh_pvq_table *t, const int *y, uint64_t *index)
{
    unsigned N = t->N, K = t->K;
    uint64_t l1 = 0;
    for (unsigned i = 0; i < N; i++) l1 += (uint64_t)(y[i] < 0 ? -(int64_t)y[i] : y[i]);
    if (l1 != K) QH_ERROR(QH_EINVAL, "PVQ encode: sum |y_i| = %llu, expected K = %u (N = %u)",
                          (unsigned long long)l1, K, N);
    uint64_t idx = 0;
    unsigned k = K;
    for (unsigned i = 0; i < N; i++) {
        unsigned n1 = N - i - 1, a = (unsigned)(y[i] < 0 ? -y[i] : y[i]);
        if (a == 0) continue;
        idx += qh_pvq_table_at(t, n1, k);                  /* the block of v = 0 */
        for (unsigned j = 1; j < a; j++) idx += 2 * qh_pvq_table_at(t, n1, k - j);
        if (y[i] < 0) idx += qh_pvq_table_at(t, n1, k - a);   /* +a comes before −a */
        k -= a;
    }
    *index = idx;
    return QH_OK;
}

int qh_pvq_decode(const qh_pvq_table *t, uint64_t index, int *y)
{
    unsigned N = t->N, K = t->K;
    if (index >= qh_pvq_table_at(t, N, K))
        QH_ERROR(QH_EINVAL, "PVQ decode: index %llu >= V(%u, %u) = %llu", (unsigned long long)index, N, K,
                 (unsigned long long)qh_pvq_table_at(t, N, K));
    unsigned k = K;
    for (unsigned i = 0; i < N; i++) {
        unsigned n1 = N - i - 1;
        y[i] = 0;
        uint64_t zero_block = qh_pvq_table_at(t, n1, k);
        if (index < zero_block) continue;
        index -= zero_block;
        for (unsigned a = 1; a <= k; a++) {
            uint64_t half = qh_pvq_table_at(t, n1, k - a);     /* points with +a (and with −a) */
            if (index < 2 * half) {
                int neg = index >= half;
                if (neg) index -= half;
                y[i] = neg ? -(int)a : (int)a;
                k -= a;
                break;
            }
            index -= 2 * half;
        }
    }
    return QH_OK;
}

/* ---- searches --------------------------------------------------------------- */

static int sign_of(double v) { return v < 0.0 ? -1 : 1; }

/* Pre-projection onto the pyramid from below (opus): y_i = ⌊(K + 0.8)|x_i|/Σ|x|⌋
 * for K > N/2, else 0 (magnitudes).  Returns the pulses placed (≤ K). */
static unsigned pre_project(const double *x, double sum, unsigned N, unsigned K, int *y)
{
    unsigned placed = 0;
    for (unsigned i = 0; i < N; i++) y[i] = 0;
    if (K <= N / 2 || !(sum > 0.0)) return 0;
    double r = ((double)K + 0.8) / sum;
    for (unsigned i = 0; i < N; i++) {
        y[i] = (int)floor(r * fabs(x[i]));
        placed += (unsigned)y[i];
    }
    if (placed > K) {                                      /* cannot happen; guard rounding */
        for (unsigned i = 0; i < N; i++) y[i] = 0;
        placed = 0;
    }
    return placed;
}

void qh_pvq_search(const double *x, unsigned N, unsigned K, int *y)
{
    double sum = 0.0;
    for (unsigned i = 0; i < N; i++) sum += fabs(x[i]);
    if (!(sum > 0.0)) {                                    /* no direction: all pulses on 0 */
        for (unsigned i = 0; i < N; i++) y[i] = 0;
        if (N) y[0] = (int)K;
        return;
    }
    /* y holds magnitudes until the signs are restored at the end. */
    unsigned placed = pre_project(x, sum, N, K, y);
    double xy = 0.0, yy = 0.0;
    for (unsigned i = 0; i < N; i++) {
        xy += fabs(x[i]) * y[i];
        yy += (double)y[i] * y[i];
    }
    for (; placed < K; placed++) {
        /* maximise (xy + ax_j)² / (yy + 2y_j + 1) by cross-multiplication */
        unsigned best = 0;
        double best_num = -1.0, best_den = 1.0;
        for (unsigned j = 0; j < N; j++) {
            double num = xy + fabs(x[j]), den = yy + 2.0 * y[j] + 1.0;
            num *= num;
            if (num * best_den > best_num * den) {
                best = j;
                best_num = num;
                best_den = den;
            }
        }
        xy += fabs(x[best]);
        yy += 2.0 * y[best] + 1.0;
        y[best]++;
    }
    for (unsigned i = 0; i < N; i++) y[i] *= sign_of(x[i]);
}

/* f − wᵀMw for the sums s1 = aᵀy, s2 = yᵀMy, yy = ‖y‖² (yy > 0). */
static double hess_obj(double g, double s1, double s2, double yy)
{
    return g * g * s2 / yy - 2.0 * g * s1 / sqrt(yy);
}

typedef struct {
    const double *M;
    size_t ldm;
    unsigned N;
    double g;
    const double *a;                 /* M w */
    double *c;                       /* M y, kept current */
    int *y;
    double s1, s2, yy;
} hess_state;

static double Mij(const hess_state *h, unsigned i, unsigned j) { return h->M[i + j * h->ldm]; }

/* y_j += σ with every sum updated. */
static void hess_add(hess_state *h, unsigned j, int sigma)
{
    unsigned aj = (unsigned)abs(h->y[j]);
    int grows = h->y[j] == 0 || sign_of(h->y[j]) == sigma;
    h->s1 += sigma * h->a[j];
    h->s2 += 2.0 * sigma * h->c[j] + Mij(h, j, j);
    h->yy += grows ? 2.0 * aj + 1.0 : -2.0 * aj + 1.0;
    h->y[j] += sigma;
    for (unsigned i = 0; i < h->N; i++) h->c[i] += sigma * Mij(h, i, j);
}

/* Best pulse to add (lowest f); ties to the lowest j, + before −. */
static void hess_best_pulse(const hess_state *h, unsigned *best_j, int *best_sigma)
{
    double best = INFINITY;
    *best_j = 0;
    *best_sigma = 1;
    for (unsigned j = 0; j < h->N; j++)
        for (int sigma = 1; sigma >= -1; sigma -= 2) {
            if (h->y[j] != 0 && sign_of(h->y[j]) != sigma) continue;
            double yy = h->yy + 2.0 * abs(h->y[j]) + 1.0;
            double f = hess_obj(h->g, h->s1 + sigma * h->a[j], h->s2 + 2.0 * sigma * h->c[j] + Mij(h, j, j), yy);
            if (f < best) { best = f; *best_j = j; *best_sigma = sigma; }
        }
}

/* The best single move of one pulse (remove at i, add at j with sign σ);
 * returns its f (INFINITY when none). */
static double hess_best_move(const hess_state *h, unsigned *bi, unsigned *bj, int *bs)
{
    double best = INFINITY;
    for (unsigned i = 0; i < h->N; i++) {
        if (h->y[i] == 0) continue;
        int si = sign_of(h->y[i]);
        double s1r = h->s1 - si * h->a[i], s2r = h->s2 - 2.0 * si * h->c[i] + Mij(h, i, i);
        double yyr = h->yy - 2.0 * abs(h->y[i]) + 1.0;
        for (unsigned j = 0; j < h->N; j++) {
            int yj = j == i ? h->y[i] - si : h->y[j];
            double cj = h->c[j] - si * Mij(h, j, i);       /* (M y) after the removal */
            for (int sigma = 1; sigma >= -1; sigma -= 2) {
                if (yj != 0 && sign_of(yj) != sigma) continue;
                if (j == i && sigma == si) continue;           /* the null move */
                double f = hess_obj(h->g, s1r + sigma * h->a[j], s2r + 2.0 * sigma * cj + Mij(h, j, j),
                                    yyr + 2.0 * abs(yj) + 1.0);
                if (f < best) { best = f; *bi = i; *bj = j; *bs = sigma; }
            }
        }
    }
    return best;
}

double qh_pvq_search_hessian(const double *w, const double *M, size_t ldm, unsigned N, unsigned K,
                             double g, int max_moves, int *y, double *scratch)
{
    double *a = scratch, *c = scratch + N;
    for (unsigned i = 0; i < N; i++) {
        double s = 0.0;
        for (unsigned j = 0; j < N; j++) s += M[i + j * ldm] * w[j];
        a[i] = s;
        c[i] = 0.0;
    }
    hess_state h = { M, ldm, N, g, a, c, y, 0.0, 0.0, 0.0 };
    double sum = 0.0;
    for (unsigned i = 0; i < N; i++) sum += fabs(w[i]);
    unsigned placed = pre_project(w, sum, N, K, y);
    for (unsigned i = 0; i < N; i++) {
        y[i] *= sign_of(w[i]);
        h.s1 += a[i] * y[i];
        h.yy += (double)y[i] * y[i];
    }
    for (unsigned j = 0; j < N; j++)                       /* c = M y */
        if (y[j])
            for (unsigned i = 0; i < N; i++) c[i] += M[i + j * ldm] * y[j];
    for (unsigned i = 0; i < N; i++) h.s2 += c[i] * y[i];
    for (; placed < K; placed++) {
        unsigned j;
        int sigma;
        hess_best_pulse(&h, &j, &sigma);
        hess_add(&h, j, sigma);
    }
    double f = hess_obj(g, h.s1, h.s2, h.yy);
    for (int mv = 0; mv < max_moves; mv++) {
        unsigned i = 0, j = 0;
        int sigma = 1;
        double fn = hess_best_move(&h, &i, &j, &sigma);
        if (!(fn < f - 1e-12 * fabs(f))) break;
        hess_add(&h, i, -sign_of(y[i]));
        hess_add(&h, j, sigma);
        f = hess_obj(g, h.s1, h.s2, h.yy);
    }
    return f;
}

/* ---- choice of K -------------------------------------------------------------- */

int qh_pvq_choose_k(unsigned D, double bits, int amp_bits, unsigned *K)
{
    const unsigned kmax = 1000000;
    double budget = bits * (double)D - amp_bits, slack = 1e-9;
    if (D == 0 || !(qh_pvq_log2_count(D, 1) <= budget + slack))
        QH_ERROR(QH_EINVAL, "PVQ: no pulse count fits D = %u at %g bits per weight with %d amplitude bits "
                 "(K = 1 needs %.2f bits per group, the budget is %.2f)", D, bits, amp_bits,
                 D ? qh_pvq_log2_count(D, 1) + amp_bits : 0.0, bits * (double)D);
    /* V(D, K) is increasing in K: grow an upper bracket, then bisect. */
    unsigned lo = 1, hi = 2;
    while (hi < kmax && qh_pvq_log2_count(D, hi) <= budget + slack) { lo = hi; hi = hi * 2 < kmax ? hi * 2 : kmax; }
    if (qh_pvq_log2_count(D, hi) <= budget + slack) { *K = hi; return QH_OK; }
    while (hi - lo > 1) {
        unsigned mid = lo + (hi - lo) / 2;
        if (qh_pvq_log2_count(D, mid) <= budget + slack) lo = mid;
        else hi = mid;
    }
    *K = lo;
    return QH_OK;
}

/* ---- amplitude levels ------------------------------------------------------- */

/* Continued fraction of the incomplete beta function (modified Lentz). */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 1000; m++) {
        double m2 = 2.0 * m;
        double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));    /* even step */
        d = 1.0 + num * d; if (fabs(d) < tiny) d = tiny;
        c = 1.0 + num / c; if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        h *= d * c;
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)); /* odd step */
        d = 1.0 + num * d; if (fabs(d) < tiny) d = tiny;
        c = 1.0 + num / c; if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-15) break;
    }
    return h;
}

/* Regularized incomplete beta I_x(a, b). */
static double beta_inc(double a, double b, double x)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    double lfront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(lfront) * beta_cf(a, b, x) / a;
    return 1.0 - exp(lfront) * beta_cf(b, a, 1.0 - x) / b;
}

/* x with I_x(a, b) = p, by bisection (I is increasing in x). */
static double beta_quantile(double a, double b, double p)
{
    double lo = 0.0, hi = 1.0;
    for (int it = 0; it < 200 && hi - lo > 1e-16; it++) {
        double mid = 0.5 * (lo + hi);
        if (beta_inc(a, b, mid) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

int qh_pvq_amp_levels(unsigned D, size_t n, int amp_bits, double *levels)
{
    if (D == 0 || n == 0 || n % D != 0)
        QH_ERROR(QH_EINVAL, "PVQ amplitude levels: group dimension D = %u must divide the row length n = %zu",
                 D, n);
    if (amp_bits < 1 || amp_bits > 12)
        QH_ERROR(QH_EINVAL, "PVQ amplitude levels: amp_bits = %d; expected 1..12", amp_bits);
    size_t L = (size_t)1 << amp_bits;
    for (size_t l = 0; l < L; l++) {
        double p = ((double)l + 0.5) / (double)L;
        levels[l] = n == D ? (double)(l + 1) / (double)L
                           : sqrt(beta_quantile(0.5 * D, 0.5 * (double)(n - D), p));
    }
    return QH_OK;
}

size_t qh_pvq_nearest_level(const double *levels, size_t L, double a)
{
    size_t lo = 0, hi = L;                                 /* first level >= a */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (levels[mid] < a) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return 0;
    if (lo == L) return L - 1;
    return a - levels[lo - 1] <= levels[lo] - a ? lo - 1 : lo;
}
