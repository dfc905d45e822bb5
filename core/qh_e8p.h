/* qh_e8p.h -- the QuIP# lattice codebooks (Tseng et al. 2024, arXiv 2402.04396;
 * methods reference §5): E8P ("E8 padded", 2 bits per weight on 8-vectors),
 * the 1-bit-per-weight E81B residual codebook, and the residual (RVQ) stages
 * that make 3- and 4-bit codebooks of them.
 *
 * E8P.  D̂8 = D8 + ½: vectors with every entry in Z + ½ and an even entry sum.
 * S is a set of 256 absolute-value patterns a (entries ½, 3/2, 5/2):
 *   - the 227 distinct |v| of the 29 056 points v ∈ D̂8 with ‖v‖² ≤ 10; every
 *     a ∈ {½, 3/2, 5/2}⁸ with ‖a‖² ≤ 10 occurs (one sign flip changes the
 *     parity of the sum), so they are enumerated directly, in lexicographic
 *     order of (a_0, ..., a_7);
 *   - 29 patterns of norm² 12 with five entries 3/2 and three ½, in the
 *     reference's order (its corrected get_norm12 list; the 56 candidates are
 *     the 3-subsets of positions holding ½).  Described by the ½ positions:
 *     all 4 patterns with the three ½ in coordinates 0..3; the 23 patterns with
 *     one ½ in 0..3 and two in 4..7 except {1, 4, 5}; and {0, 1, 4}, {2, 3, 7}.
 *   Norm² histogram {2: 1, 4: 8, 6: 28, 8: 64, 10: 126, 12: 29}.
 * Codewords: s⊙a + t𝟙 with a ∈ S, s ∈ {±1}⁸ such that Σ s_i a_i is even
 * (so s⊙a ∈ D̂8), t = ±¼; 256·128·2 = 65 536 distinct points.
 * With A = Σ a_i (an integer), Σ s_i a_i ≡ A + #{s_i = −1} (mod 2): the sign
 * of coordinate 7 is fixed by the other seven signs and the pattern.
 *
 * 16-bit code (our layout; the reference's coordinate shuffle and sign
 * conventions exist for its packed kernels only and are not reproduced):
 *   bits 0..6   sign of coordinates 0..6 (1 = minus)
 *   bit  7      t: 0 = +¼, 1 = −¼
 *   bits 8..15  pattern index into S
 * The sign of coordinate 7 follows from the parity rule.
 *
 * Exact nearest codeword in 2·256·8 multiply-adds: for t = ±¼, z = x − t; for
 * each a the best signs are sign(z), cost Σ(|z_i| − a_i)²; when those signs
 * break the parity rule, the cheapest repair flips the coordinate minimising
 * |z_i|a_i, adding 4·min_i |z_i| a_i.  The best (t, a) wins.
 *
 * E81B: 256 points of E8 = D8 ∪ (D8 + ½): the origin, the 240 roots (norm² 2)
 * and the 15 points ±2e_i without −2e_7 (0-based); nearest by brute force.
 *
 * RVQ (x in codebook units, scaled so that RMS(x) ≈ the opt scale):
 *   2 bits: Q(x) = E8P(x)
 *   3 bits: q = E8P(x);  Q(x) = q + E81B(2.04 (x − q)) / 2.04
 *   4 bits: q = E8P(x);  Q(x) = q + E8P(3.45 (x − q)) / 3.45
 * The residual stages are greedy (nearest per stage), as in the reference.
 *
 * Left out: the reference's packed index formats and GPU decode kernels.
 */
#ifndef QH_E8P_H
#define QH_E8P_H

#include <stdint.h>

#include "qh_error.h"

#define QH_E8P_DIM 8
#define QH_E8P_NPATTERNS 256
#define QH_E8P_NCODES 65536
#define QH_E81B_NPOINTS 256

/* Reference opt scales (RMS of the scaled weights) and residual scales. */
#define QH_E8P_OPT_SCALE_2BIT 1.03
#define QH_E8P_OPT_SCALE_3BIT 0.98
#define QH_E8P_OPT_SCALE_4BIT 1.03
#define QH_E8P_RESID_SCALE_3BIT 2.04
#define QH_E8P_RESID_SCALE_4BIT 3.45

typedef struct {
    double abs[QH_E8P_NPATTERNS][QH_E8P_DIM];    /* S: pattern k, coordinate i */
    double absT[QH_E8P_DIM][QH_E8P_NPATTERNS];   /* the same, coordinate-major (search) */
    double norm2[QH_E8P_NPATTERNS];              /* ‖a‖² */
    unsigned char odd[QH_E8P_NPATTERNS];         /* Σ a_i mod 2 */
    double oddd[QH_E8P_NPATTERNS];               /* the same as 0.0 / 1.0 (search) */
} qh_e8p;

typedef struct {
    double pts[QH_E81B_NPOINTS][QH_E8P_DIM];
    double norm2[QH_E81B_NPOINTS];
} qh_e81b;

/* Builds S into *cb (about 6 561 candidate patterns scanned; microseconds).
 * Returns QH_OK, or QH_EINVAL if the construction does not give 227 + 29
 * distinct patterns (a bug guard that cannot trigger for correct code). */
int qh_e8p_init(qh_e8p *cb) QH_MUST_CHECK;

/* The codeword of code (any 16-bit value is valid) into v[8]. */
void qh_e8p_decode(const qh_e8p *cb, uint16_t code, double v[QH_E8P_DIM]);

/* The code of an exact codeword v (entries of s⊙a ± ¼ in binary floating
 * point, as qh_e8p_decode writes them).  Returns QH_OK, or QH_EINVAL when v
 * is not a codeword (message lists the first offending coordinate or the
 * missing pattern). */
int qh_e8p_encode(const qh_e8p *cb, const double v[QH_E8P_DIM], uint16_t *code) QH_MUST_CHECK;

/* Exact nearest codeword of x (Euclidean), by the 2·256·8 search of the file
 * header.  Writes the codeword into q (may be NULL) and returns its code.
 * Ties (measure zero) go to t = +¼ and to the lower pattern index. */
uint16_t qh_e8p_nearest(const qh_e8p *cb, const double x[QH_E8P_DIM], double q[QH_E8P_DIM]);

/* E81B: builds the 256 points (origin, 240 roots, ±2e_i without −2e_7).
 * Returns QH_OK or QH_EINVAL if the count differs from 256 (bug guard). */
int qh_e81b_init(qh_e81b *cb) QH_MUST_CHECK;
/* Nearest of the 256 points (brute force); q may be NULL. Returns its index. */
unsigned qh_e81b_nearest(const qh_e81b *cb, const double x[QH_E8P_DIM], double q[QH_E8P_DIM]);

/* Q(x) of the RVQ stages in the file header for bits 2, 3 or 4 (into q).
 * e81b is needed for bits = 3 only (may be NULL otherwise).
 * Returns QH_OK or QH_EINVAL for other bit widths or a missing E81B. */
int qh_e8p_rvq_quantize(const qh_e8p *e8p, const qh_e81b *e81b, int bits,
                        const double x[QH_E8P_DIM], double q[QH_E8P_DIM]) QH_MUST_CHECK;

/* The reference opt scale for bits 2, 3, 4 (0 for other widths). */
double qh_e8p_opt_scale(int bits);

#endif
