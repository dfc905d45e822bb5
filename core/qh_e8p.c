/* qh_e8p.c -- E8P codebook construction, 16-bit codes, exact nearest search,
 * E81B and the RVQ stages of QuIP# (arXiv 2402.04396; methods reference §5).
 * See qh_e8p.h for the construction and the code layout. */
#include "qh_e8p.h"

#include <math.h>
#include <string.h>

/* The 29 norm²-12 patterns by the positions of their three ½ entries (the
 * other five are 3/2), in the reference's order. */
static const unsigned char norm12_half_positions[29][3] = {
    { 1, 2, 3 }, { 0, 2, 3 }, { 0, 1, 3 }, { 0, 1, 2 },
    { 3, 6, 7 }, { 3, 5, 7 }, { 3, 4, 7 }, { 3, 5, 6 }, { 3, 4, 6 }, { 3, 4, 5 },
    { 2, 6, 7 }, { 2, 5, 7 }, { 2, 4, 7 }, { 2, 5, 6 }, { 2, 4, 6 }, { 2, 4, 5 },
    { 1, 6, 7 }, { 1, 5, 7 }, { 1, 4, 7 }, { 1, 5, 6 }, { 1, 4, 6 },
    { 0, 4, 5 }, { 0, 6, 7 }, { 0, 5, 7 }, { 0, 4, 7 }, { 0, 5, 6 }, { 0, 4, 6 },
    { 0, 1, 4 }, { 2, 3, 7 },
};

static void finish_pattern(qh_e8p *cb, size_t k)
{
    double n2 = 0.0, sum = 0.0;
    for (int i = 0; i < QH_E8P_DIM; i++) {
        n2 += cb->abs[k][i] * cb->abs[k][i];
        sum += cb->abs[k][i];
        cb->absT[i][k] = cb->abs[k][i];
    }
    cb->norm2[k] = n2;
    cb->odd[k] = (unsigned char)((long)sum & 1);      /* Σ a_i is an integer */
    cb->oddd[k] = (double)cb->odd[k];
}

int qh_e8p_init(qh_e8p *cb)
{
    memset(cb, 0, sizeof *cb);
    size_t k = 0;
    /* Lexicographic scan of {½, 3/2, 5/2}⁸ (digit 0 = ½), coordinate 0 most significant. */
    for (int c = 0; c < 6561; c++) {
        double a[QH_E8P_DIM], n2 = 0.0;
        int r = c;
        for (int i = QH_E8P_DIM - 1; i >= 0; i--, r /= 3) {
            a[i] = 0.5 + (double)(r % 3);
            n2 += a[i] * a[i];
        }
        if (n2 > 10.0) continue;
        if (k >= 227) QH_ERROR(QH_EINVAL, "E8P: more than 227 patterns of norm^2 <= 10");
        memcpy(cb->abs[k], a, sizeof a);
        finish_pattern(cb, k++);
    }
    if (k != 227) QH_ERROR(QH_EINVAL, "E8P: %zu patterns of norm^2 <= 10, expected 227", k);
    for (size_t j = 0; j < 29; j++, k++) {
        for (int i = 0; i < QH_E8P_DIM; i++) cb->abs[k][i] = 1.5;
        for (int h = 0; h < 3; h++) cb->abs[k][norm12_half_positions[j][h]] = 0.5;
        finish_pattern(cb, k);
    }
    return QH_OK;
}

/* Sign of coordinate 7 (1 = minus) that makes Σ s_i a_i even, given signs 0..6. */
static unsigned sign7_for(const qh_e8p *cb, unsigned pattern, unsigned signs7)
{
    unsigned neg = (unsigned)__builtin_popcount(signs7 & 0x7fu);
    return (cb->odd[pattern] ^ neg) & 1u;           /* need (A + #neg) even */
}

void qh_e8p_decode(const qh_e8p *cb, uint16_t code, double v[QH_E8P_DIM])
{
    unsigned pattern = code >> 8, signs = code & 0x7fu;
    double t = (code & 0x80u) ? -0.25 : 0.25;
    unsigned s7 = sign7_for(cb, pattern, signs);
    for (int i = 0; i < QH_E8P_DIM; i++) {
        unsigned neg = i < 7 ? (signs >> i) & 1u : s7;
        v[i] = (neg ? -cb->abs[pattern][i] : cb->abs[pattern][i]) + t;
    }
}

int qh_e8p_encode(const qh_e8p *cb, const double v[QH_E8P_DIM], uint16_t *code)
{
    /* t from the fractional part: s⊙a ∈ Z + ½, so v − ¼ ∈ Z + ½ exactly when t = +¼. */
    double frac = v[0] - 0.25 - floor(v[0] - 0.25);
    double t = fabs(frac - 0.5) < 1e-9 ? 0.25 : -0.25;
    double a[QH_E8P_DIM];
    unsigned signs = 0, neg = 0;
    for (int i = 0; i < QH_E8P_DIM; i++) {
        double u = v[i] - t, f = u - floor(u);
        if (!(fabs(f - 0.5) < 1e-9))
            QH_ERROR(QH_EINVAL, "E8P encode: coordinate %d = %g is not a half-integer %+g", i, v[i], t);
        a[i] = fabs(u);
        if (u < 0) { neg++; if (i < 7) signs |= 1u << i; }
    }
    for (unsigned k = 0; k < QH_E8P_NPATTERNS; k++) {
        if (memcmp(a, cb->abs[k], sizeof a) != 0) continue;
        if (((cb->odd[k] + neg) & 1u) != 0)
            QH_ERROR(QH_EINVAL, "E8P encode: signs of pattern %u break the even-sum rule", k);
        *code = (uint16_t)((k << 8) | (t < 0 ? 0x80u : 0u) | signs);
        return QH_OK;
    }
    QH_ERROR(QH_EINVAL, "E8P encode: |v - t| = (%g, %g, %g, %g, %g, %g, %g, %g) is not a pattern of S",
             a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
}

/* Best pattern for z = x − t: its index and cost ‖z − codeword‖² (sign repair included). */
static unsigned best_pattern(const qh_e8p *cb, const double z[QH_E8P_DIM], double *cost)
{
    double az[QH_E8P_DIM], zz = 0.0;
    unsigned neg = 0;
    for (int i = 0; i < QH_E8P_DIM; i++) {
        az[i] = fabs(z[i]);
        zz += z[i] * z[i];
        neg += z[i] < 0;
    }
    /* Pattern-major with the 8 coordinates unrolled: vectorizes across patterns. */
    double c[QH_E8P_NPATTERNS];
    double pen = (double)(neg & 1u);
    for (int k = 0; k < QH_E8P_NPATTERNS; k++) {
        double dot = 0.0, mn = INFINITY;
        for (int i = 0; i < QH_E8P_DIM; i++) {
            double p = az[i] * cb->absT[i][k];
            dot += p;
            mn = p < mn ? p : mn;
        }
        double mismatch = cb->oddd[k] + pen - 2.0 * cb->oddd[k] * pen;   /* odd[k] xor (neg & 1) */
        c[k] = cb->norm2[k] - 2.0 * dot + 4.0 * mn * mismatch;
    }
    unsigned best = 0;
    double best_cost = c[0];
    for (int k = 1; k < QH_E8P_NPATTERNS; k++)
        if (c[k] < best_cost) { best_cost = c[k]; best = (unsigned)k; }
    best_cost += zz;
    *cost = best_cost;
    return best;
}

uint16_t qh_e8p_nearest(const qh_e8p *cb, const double x[QH_E8P_DIM], double q[QH_E8P_DIM])
{
    double zp[QH_E8P_DIM], zm[QH_E8P_DIM], cp, cm;
    for (int i = 0; i < QH_E8P_DIM; i++) { zp[i] = x[i] - 0.25; zm[i] = x[i] + 0.25; }
    unsigned kp = best_pattern(cb, zp, &cp), km = best_pattern(cb, zm, &cm);
    int minus = cm < cp;
    const double *z = minus ? zm : zp;
    unsigned k = minus ? km : kp;
    /* Signs of z; on odd parity flip the coordinate with the smallest |z_i| a_i. */
    unsigned negmask = 0, neg = 0, flip = 0;
    double best = INFINITY;
    for (int i = 0; i < QH_E8P_DIM; i++) {
        if (z[i] < 0) { negmask |= 1u << i; neg++; }
        double p = fabs(z[i]) * cb->abs[k][i];
        if (p < best) { best = p; flip = (unsigned)i; }
    }
    if ((cb->odd[k] + neg) & 1u) negmask ^= 1u << flip;
    uint16_t code = (uint16_t)((k << 8) | (minus ? 0x80u : 0u) | (negmask & 0x7fu));
    if (q) qh_e8p_decode(cb, code, q);
    return code;
}

/* ---- E81B ------------------------------------------------------------------ */

int qh_e81b_init(qh_e81b *cb)
{
    memset(cb, 0, sizeof *cb);
    size_t k = 1;                                   /* point 0: the origin */
    for (int i = 0; i < QH_E8P_DIM; i++)            /* 112 roots ±e_i ± e_j */
        for (int j = i + 1; j < QH_E8P_DIM; j++)
            for (int s = 0; s < 4; s++, k++) {
                cb->pts[k][i] = (s & 1) ? -1.0 : 1.0;
                cb->pts[k][j] = (s & 2) ? -1.0 : 1.0;
            }
    for (unsigned s = 0; s < 256; s++) {            /* 128 roots (±½)⁸, even number of minus signs */
        if (__builtin_popcount(s) & 1) continue;
        for (int i = 0; i < QH_E8P_DIM; i++) cb->pts[k][i] = ((s >> i) & 1u) ? -0.5 : 0.5;
        k++;
    }
    for (int i = 0; i < QH_E8P_DIM; i++) cb->pts[k++][i] = 2.0;
    for (int i = 0; i < QH_E8P_DIM - 1; i++) cb->pts[k++][i] = -2.0;
    if (k != QH_E81B_NPOINTS) QH_ERROR(QH_EINVAL, "E81B: %zu points, expected 256", k);
    for (k = 0; k < QH_E81B_NPOINTS; k++) {
        double n2 = 0.0;
        for (int i = 0; i < QH_E8P_DIM; i++) n2 += cb->pts[k][i] * cb->pts[k][i];
        cb->norm2[k] = n2;
    }
    return QH_OK;
}

unsigned qh_e81b_nearest(const qh_e81b *cb, const double x[QH_E8P_DIM], double q[QH_E8P_DIM])
{
    unsigned best = 0;
    double best_cost = INFINITY;
    for (unsigned k = 0; k < QH_E81B_NPOINTS; k++) {
        double dot = 0.0;
        for (int i = 0; i < QH_E8P_DIM; i++) dot += x[i] * cb->pts[k][i];
        double c = cb->norm2[k] - 2.0 * dot;        /* ‖x − p‖² − ‖x‖² */
        if (c < best_cost) { best_cost = c; best = k; }
    }
    if (q) memcpy(q, cb->pts[best], sizeof cb->pts[best]);
    return best;
}

/* ---- RVQ ------------------------------------------------------------------- */

double qh_e8p_opt_scale(int bits)
{
    switch (bits) {
    case 2: return QH_E8P_OPT_SCALE_2BIT;
    case 3: return QH_E8P_OPT_SCALE_3BIT;
    case 4: return QH_E8P_OPT_SCALE_4BIT;
    default: return 0.0;
    }
}

int qh_e8p_rvq_quantize(const qh_e8p *e8p, const qh_e81b *e81b, int bits,
                        const double x[QH_E8P_DIM], double q[QH_E8P_DIM])
{
    if (bits < 2 || bits > 4)
        QH_ERROR(QH_EINVAL, "E8P RVQ: bits = %d; expected 2, 3 or 4", bits);
    if (bits == 3 && !e81b) QH_ERROR(QH_EINVAL, "E8P RVQ: 3 bits need the E81B codebook");
    (void)qh_e8p_nearest(e8p, x, q);
    if (bits == 2) return QH_OK;
    double rs = bits == 3 ? QH_E8P_RESID_SCALE_3BIT : QH_E8P_RESID_SCALE_4BIT;
    double r[QH_E8P_DIM], rq[QH_E8P_DIM];
    for (int i = 0; i < QH_E8P_DIM; i++) r[i] = rs * (x[i] - q[i]);
    if (bits == 3) (void)qh_e81b_nearest(e81b, r, rq);
    else (void)qh_e8p_nearest(e8p, r, rq);
    for (int i = 0; i < QH_E8P_DIM; i++) q[i] += rq[i] / rs;
    return QH_OK;
}
