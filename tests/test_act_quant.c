/* test_act_quant.c -- fake quantization of activations and KV, Runtime Smooth.
 *
 * 1. qh_fake_quant against a naive reference written here in double (every
 *    bits/granularity/symmetry/clip combination), and a hand-made 4-bit case.
 * 2. KV quantization per token and head on a hand-made case.
 * 3. The group-of-g scale variant against a brute force (rank by rank).
 * 4. Runtime Smooth (whole-window and causal, with and without groups) against
 *    a naive reference.
 * 5. The vendored models: act_quant with every bit width 16 gives bit-identical
 *    window NLLs; W8A8 stays close to float, W4A4 is worse than W8A8.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/act_quant.h"
#include "model/forward.h"
#include "model/model.h"
#include "pipeline/eval.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "tokenizer/tokenizer.h"

/* Naive reference of one group of n values into y, in double. */
static void ref_group(const qh_quant_spec *s, const float *x, double *y, size_t n)
{
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, x[i]);
        hi = fmax(hi, x[i]);
    }
    double scale, zero = 0, qlo, qhi;
    if (s->asym) {
        lo *= s->clip;
        hi *= s->clip;
        scale = (hi - lo) / (pow(2, s->bits) - 1);
        qlo = 0;
        qhi = pow(2, s->bits) - 1;
        if (scale > 0) zero = nearbyint(-lo / scale);
    } else {
        double amax = fmax(-lo, hi) * s->clip;
        qhi = pow(2, s->bits - 1) - 1;
        qlo = -qhi - 1;
        scale = amax / qhi;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(scale > 0)) { y[i] = 0; continue; }
        double q = nearbyint(x[i] / scale) + zero;
        q = fmin(fmax(q, qlo), qhi);
        y[i] = (q - zero) * scale;
    }
}

/* Compares y with the reference: all within 1e-5 of a step, except values at a
 * rounding tie that float and double resolve differently (one step, rare). */
static void compare(const float *y, const double *want, const float *x, size_t n, double step,
                    const char *what)
{
    size_t off = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(y[i] - want[i]);
        if (d > 1e-5 * step + 1e-12) {
            off++;
            worst = fmax(worst, d / step);
        }
    }
    (void)x;
    QH_CHECK(off <= n / 500 && worst <= 1.0 + 1e-5, "%s: %zu of %zu off the reference (worst %.3g steps)",
             what, off, n, worst);
}

static void test_fake_quant_vs_ref(void)
{
    size_t dim = 64, T = 37;
    float *x = malloc(dim * T * sizeof *x), *y = malloc(dim * T * sizeof *y);
    double *want = malloc(dim * T * sizeof *want);
    qh_rng r = qh_rng_stream(5, 0, QH_RNG_TEST);
    for (size_t i = 0; i < dim * T; i++) x[i] = (float)(qh_rng_normal(&r) * (i % 7 == 0 ? 10 : 1));
    static const int bits[] = { 2, 4, 6, 8 };
    static const float clips[] = { 1.0f, 0.9f };
    int cases = 0;
    for (int b = 0; b < 4; b++)
        for (int asym = 0; asym < 2; asym++)
            for (int gran = 0; gran < 3; gran++)          /* token, tensor, group 16 */
                for (int c = 0; c < 2; c++) {
                    qh_quant_spec s = { .bits = bits[b], .asym = asym, .per_tensor = gran == 1,
                                        .group = gran == 2 ? 16 : 0, .clip = clips[c] };
                    QH_CHECK(qh_quant_spec_check(&s, dim, "test") == QH_OK, "spec valid");
                    qh_fake_quant(&s, x, y, dim, T);
                    size_t g = gran == 1 ? dim * T : gran == 2 ? 16 : dim;
                    for (size_t j = 0; j < dim * T; j += g) ref_group(&s, x + j, want + j, g);
                    double amax = 0;
                    for (size_t i = 0; i < dim * T; i++) amax = fmax(amax, fabs(x[i]));
                    char what[96];
                    snprintf(what, sizeof what, "b%d asym%d gran%d clip%.1f", bits[b], asym, gran,
                             (double)clips[c]);
                    compare(y, want, x, dim * T, 2 * amax / pow(2, bits[b]), what);
                    cases++;
                }
    /* in place equals out of place */
    qh_quant_spec s = { .bits = 4, .clip = 1.0f };
    qh_fake_quant(&s, x, y, dim, T);
    qh_fake_quant(&s, x, x, dim, T);
    QH_CHECK(!memcmp(x, y, dim * T * sizeof *x), "in place == out of place");
    /* bits 16: a copy */
    qh_quant_spec off = qh_quant_spec_off();
    for (size_t i = 0; i < dim * T; i++) x[i] = (float)qh_rng_normal(&r);
    qh_fake_quant(&off, x, y, dim, T);
    QH_CHECK(!memcmp(x, y, dim * T * sizeof *x), "bits 16 leaves values alone");
    /* refusals */
    qh_quant_spec bad = { .bits = 4, .group = 24, .clip = 1.0f };
    QH_CHECK(qh_quant_spec_check(&bad, 64, "t") == QH_ECONFIG, "group not dividing refused");
    bad = (qh_quant_spec){ .bits = 4, .clip = 0.0f };
    QH_CHECK(qh_quant_spec_check(&bad, 64, "t") == QH_ECONFIG, "clip 0 refused");
    bad = (qh_quant_spec){ .bits = 1, .clip = 1.0f };
    QH_CHECK(qh_quant_spec_check(&bad, 64, "t") == QH_ECONFIG, "bits 1 refused");
    QH_NOTE("%d fake-quant settings against the reference", cases);
    free(x); free(y); free(want);
}

static void test_hand_case(void)
{
    /* 4-bit symmetric: scale 3/7; 1 -> rint(2.33) = 2, -2 -> rint(-4.67) = -5,
     * 0.5 -> rint(1.17) = 1, 3 -> 7 */
    float x[4] = { 1.0f, -2.0f, 0.5f, 3.0f }, y[4];
    qh_quant_spec s = { .bits = 4, .clip = 1.0f };
    qh_fake_quant(&s, x, y, 4, 1);
    float sc = 3.0f / 7.0f;
    QH_CHECK(y[0] == 2 * sc && y[1] == -5 * sc && y[2] == 1 * sc && y[3] == 7 * sc,
             "4-bit sym hand case: %g %g %g %g", y[0], y[1], y[2], y[3]);
    /* 2-bit asymmetric: lo -2, hi 3, scale 5/3, zero rint(1.2) = 1;
     * 1 -> rint(0.6)+1 = 2 -> 5/3; -2 -> rint(-1.2)+1 = 0 -> -5/3; 0.5 -> rint(0.3)+1 = 1 -> 0;
     * 3 -> rint(1.8)+1 = 3 -> 10/3 */
    qh_quant_spec a = { .bits = 2, .asym = 1, .clip = 1.0f };
    qh_fake_quant(&a, x, y, 4, 1);
    float st = 5.0f / 3.0f;
    QH_CHECK(y[0] == st && y[1] == -st && y[2] == 0.0f && y[3] == 2 * st,
             "2-bit asym hand case: %g %g %g %g", y[0], y[1], y[2], y[3]);
}

static void test_kv_hand_case(void)
{
    /* 2 tokens, 2 heads of head_dim 2: each (token, head) pair its own range.
     * 3-bit symmetric (qmax 3): head (4, 1) -> scale 4/3: 1 -> rint(0.75) = 1;
     * head (-0.3, 0.6) -> scale 0.2: -0.3 -> rint(-1.5) = -2 (half to even) */
    float k[8] = { 4.0f, 1.0f, -0.3f, 0.6f,     /* token 0: head 0, head 1 */
                   0.0f, 0.0f, 2.0f, -6.0f };   /* token 1 */
    qh_quant_spec s = { .bits = 3, .clip = 1.0f };
    qh_fake_quant_heads(&s, k, 2, 2, 2);
    float s0 = 4.0f / 3.0f, s1 = 0.6f / 3.0f, s3 = 2.0f;
    QH_CHECK(k[0] == 3 * s0 && k[1] == 1 * s0, "kv head 0 token 0: %g %g", k[0], k[1]);
    QH_CHECK(k[2] == rintf(-0.3f / s1) * s1 && k[3] == 3 * s1, "kv head 1 token 0: %g %g", k[2], k[3]);
    QH_CHECK(k[4] == 0.0f && k[5] == 0.0f, "kv zero head stays zero");
    QH_CHECK(k[6] == 1 * s3 && k[7] == -3 * s3, "kv head 1 token 1: %g %g", k[6], k[7]);
    /* group 1 inside the head: every value exact on its own grid (x = 3 steps) */
    float v[4] = { 0.7f, -1.3f, 5.0f, 0.01f }, w[4];
    memcpy(w, v, sizeof v);
    qh_quant_spec g = { .bits = 3, .group = 1, .clip = 1.0f };
    qh_fake_quant_heads(&g, v, 2, 2, 1);
    QH_CHECK(fabsf(v[0] - w[0]) < 1e-6f && fabsf(v[1] - w[1]) < 1e-6f && fabsf(v[3] - w[3]) < 1e-8f,
             "kv groups of one: values kept");
}

/* Brute force of the group-of-g variant: rank of channel i by (s, i). */
static void group_brute(const float *s, float *out, size_t dim, size_t g)
{
    for (size_t i = 0; i < dim; i++) {
        size_t rank = 0;
        for (size_t j = 0; j < dim; j++) rank += s[j] < s[i] || (s[j] == s[i] && j < i);
        size_t g0 = rank / g * g, g1 = g0 + g < dim ? g0 + g : dim;
        float mx = -INFINITY;
        for (size_t j = 0; j < dim; j++) {
            size_t rj = 0;
            for (size_t k = 0; k < dim; k++) rj += s[k] < s[j] || (s[k] == s[j] && k < j);
            if (rj >= g0 && rj < g1) mx = fmaxf(mx, s[j]);
        }
        out[i] = mx;
    }
}

static void test_group_sort(void)
{
    static const size_t dims[] = { 1, 7, 128, 300 };
    static const size_t gs[] = { 1, 4, 128, 1000 };
    qh_rng r = qh_rng_stream(9, 0, QH_RNG_TEST);
    int ok = 1;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            size_t dim = dims[a], g = gs[b];
            float *s = malloc(dim * sizeof *s), *want = malloc(dim * sizeof *want);
            size_t *idx = malloc(dim * sizeof *idx);
            for (size_t i = 0; i < dim; i++)       /* ties on purpose */
                s[i] = (float)(qh_rng_below(&r, 3) ? qh_rng_uniform(&r) : 0.5);
            group_brute(s, want, dim, g);
            qh_smooth_group_max(s, dim, g, idx);
            ok &= !memcmp(s, want, dim * sizeof *s);
            free(s); free(want); free(idx);
        }
    QH_CHECK(ok, "group-of-g scales equal the brute force on 16 shapes");
}

static void test_runtime_smooth(void)
{
    size_t dim = 256, T = 19;
    float *x = malloc(dim * T * sizeof *x), *y = malloc(dim * T * sizeof *y);
    float *s = malloc(dim * sizeof *s), *xs = malloc(dim * sizeof *xs);
    double *want = malloc(dim * T * sizeof *want), *col = malloc(dim * sizeof *col);
    size_t *idx = malloc(dim * sizeof *idx);
    qh_rng r = qh_rng_stream(11, 0, QH_RNG_TEST);
    for (size_t i = 0; i < dim * T; i++)
        x[i] = (float)(qh_rng_normal(&r) * ((i % dim) % 17 == 0 ? 30 : 1));
    for (size_t i = 0; i < dim; i++) x[3 * dim + i] = 0.0f;     /* a zero token */
    x[5] = 0.0f;
    for (int causal = 0; causal < 2; causal++)
        for (int grouped = 0; grouped < 2; grouped++) {
            qh_act_quant aq = { .act = { .bits = 4, .clip = 1.0f }, .kv = qh_quant_spec_off(),
                                .smooth = 1, .smooth_group = grouped ? 128 : 0,
                                .smooth_causal = causal };
            qh_runtime_smooth_quant(&aq, x, y, dim, T, s, idx);
            for (size_t t = 0; t < T; t++) {
                float sc[256];
                for (size_t i = 0; i < dim; i++) {
                    float m = 1e-5f;
                    for (size_t u = 0; u < (causal ? t + 1 : T); u++) m = fmaxf(m, fabsf(x[u * dim + i]));
                    sc[i] = m;
                }
                if (grouped) group_brute(memcpy(s, sc, sizeof sc), sc, dim, 128);
                for (size_t i = 0; i < dim; i++) xs[i] = x[t * dim + i] / sc[i];
                ref_group(&aq.act, xs, col, dim);
                for (size_t i = 0; i < dim; i++) want[t * dim + i] = col[i] * sc[i];
            }
            double amax = 0;
            for (size_t i = 0; i < dim * T; i++) amax = fmax(amax, fabs(x[i]));
            char what[64];
            snprintf(what, sizeof what, "runtime smooth causal %d grouped %d", causal, grouped);
            compare(y, want, x, dim * T, amax / 7, what);
        }
    free(x); free(y); free(s); free(xs); free(want); free(col); free(idx);
}

/* ---- models ----------------------------------------------------------------- */

static void check_model(const char *dir)
{
    char path[1200];
    qh_model *m = NULL;
    qh_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0, seqlen = 256, nw = qh_test_fast() ? 2 : 8;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (qh_model_load(dir, &m) != QH_OK || qh_tokenizer_load(path, &tok) != QH_OK ||
        qh_tokenize_file(tok, "data/wikitext2_test.raw", &ids, &n) != QH_OK) {
        QH_CHECK(0, "%s: %s", dir, qh_last_error());
        goto done;
    }
    qh_eval_result f = { 0 }, q = { 0 }, a8 = { 0 }, a4 = { 0 };
    qh_act_quant aq = { .act = qh_quant_spec_off(), .kv = qh_quant_spec_off() };
    int st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &f);
    m->act_quant = &aq;
    if (st == QH_OK) st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &q);
    QH_CHECK(st == QH_OK && !memcmp(f.window_nll, q.window_nll, nw * sizeof(double)) && f.ppl == q.ppl,
             "%s: all bits 16 gives bit-identical NLLs (ppl %.6f vs %.6f)", dir, f.ppl, q.ppl);
    aq.act = (qh_quant_spec){ .bits = 8, .clip = 1.0f };
    aq.kv = (qh_quant_spec){ .bits = 8, .asym = 1, .clip = 1.0f };
    if (st == QH_OK) st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &a8);
    aq.act.bits = aq.kv.bits = 4;
    if (st == QH_OK) st = qh_eval_ppl(m, ids, n, seqlen, nw, NULL, NULL, &a4);
    QH_CHECK(st == QH_OK, "%s: evals: %s", dir, st ? qh_last_error() : "");
    if (st == QH_OK) {
        QH_NOTE("%s (%zu windows of %zu): float %.4f  A8KV8 %.4f  A4KV4 %.4f", dir, nw, seqlen,
                f.ppl, a8.ppl, a4.ppl);
        QH_CHECK(fabs(a8.ppl / f.ppl - 1) < 0.02, "%s: A8KV8 within 2 %% of float", dir);
        QH_CHECK(a4.ppl > a8.ppl, "%s: A4KV4 worse than A8KV8", dir);
    }
    m->act_quant = NULL;
    qh_eval_result_free(&f); qh_eval_result_free(&q);
    qh_eval_result_free(&a8); qh_eval_result_free(&a4);
done:
    free(ids);
    qh_tokenizer_free(tok);
    qh_model_free(m);
}

int main(void)
{
    test_fake_quant_vs_ref();
    test_hand_case();
    test_kv_hand_case();
    test_group_sort();
    test_runtime_smooth();
    check_model("models/opt-7m");
    check_model("models/llama-9m");
    return qh_test_summary();
}
