/* test_reference.c -- the reference switches: parameters whose `reference`
 * value (qh_param_desc.reference) reproduces the authors' code, one small
 * layer each with a difference derived by hand or checked by brute force,
 * and the variant that sets them all (qh_method_params_variant).
 *   grid_*: the grid-family rows (LDLQ, greedy, OPTQ, QuIP);
 *   vec_*:  BiLLM's split quantiles, AQLM's damping, PTQ1.61's channel
 *           ranking, QuIP#'s tune passes, and the variant itself. */
#include "aqlm.h"
#include "billm.h"
#include "gptq.h"
#include "greedy.h"
#include "ldlq.h"
#include "pipeline/config.h"
#include "ptq161.h"
#include "qh_binarize.h"
#include "qh_mat.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "quipsharp.h"
#include "rtn.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

static qh_matd *random_W(size_t m, size_t n, uint32_t key)
{
    qh_rng r = qh_rng_stream(7, key, QH_RNG_TEST);
    qh_matd *W = qh_matd_alloc(m, n);
    for (size_t k = 0; k < m * n; k++) W->data[k] = qh_rng_normal(&r);
    return W;
}

/* H = XᵀX/T of T random tokens with a shared factor: full rank when T ≥ n. */
static qh_matd *sample_H(size_t n, size_t T, uint32_t key)
{
    qh_rng r = qh_rng_stream(11, key, QH_RNG_TEST);
    double *X = malloc(T * n * sizeof *X);
    for (size_t t = 0; t < T; t++) {
        double f = qh_rng_normal(&r);
        for (size_t j = 0; j < n; j++) X[t + j * T] = qh_rng_normal(&r) + 0.5 * f;
    }
    qh_matd *H = qh_matd_alloc(n, n);
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++) {
            double s = 0.0;
            for (size_t t = 0; t < T; t++) s += X[t + a * T] * X[t + b * T];
            QH_AT(H, a, b) = s / (double)T;
        }
    free(X);
    return H;
}

/* Params of row m: the variant's start, then key/value pairs (NULL-terminated). */
static void *params_for(const qh_method_type *m, qh_variant v, const char *const *kv)
{
    void *p = qh_method_params_new(m);
    if (qh_method_params_variant(m, p, QH_INCOH_NONE, v) != QH_OK)
        printf("note: %s\n", qh_last_error());
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(m, p, kv[0], kv[1]) != QH_OK) printf("note: %s\n", qh_last_error());
    return p;
}

static int run(const qh_method_type *m, const void *params, const qh_problem *pb,
               const qh_incoh_params *ip, qh_result *r)
{
    qh_result_init(r);
    return qh_quantize(m, params, pb, ip, NULL, r);
}

static int same_matrix(const qh_matd *A, const qh_matd *B)
{
    for (size_t j = 0; j < A->cols; j++)
        for (size_t i = 0; i < A->rows; i++)
            if (QH_AT(A, i, j) != QH_AT(B, i, j)) return 0;
    return 1;
}

static void check_param(const qh_method_type *m, const void *p, const char *key, const char *want)
{
    char got[64];
    qh_param_format(qh_method_param_find(m, key), p, got, sizeof got);
    QH_CHECK(!strcmp(got, want), "%s.%s = %s (want %s)", m->name, key, got, want);
}

/* ---- grid-family switches ---------------------------------------------------- */

/* A rows x cols matrix from column-major values (the caller frees it). */
static qh_matd *mat_of(size_t rows, size_t cols, const double *v)
{
    qh_matd *A = qh_matd_alloc(rows, cols);
    memcpy(A->data, v, rows * cols * sizeof *v);
    return A;
}

/* Runs row m with variant v and key/value overrides on (W, H); QH_OK or the status. */
static int run_kv(const qh_method_type *m, qh_variant v, const char *const *kv, const qh_matd *W,
                  const qh_matd *H, int bits, qh_result *r)
{
    void *p = params_for(m, v, kv);
    qh_problem pb = { W, H, bits, 0, 0, "layers.0.fc2", NULL, NULL };
    int st = run(m, p, &pb, NULL, r);
    free(p);
    return st;
}

/* Two runs of row m on (W, H) that differ only in variant or parameters; 1
 * when both succeeded (a failure is reported as `what`).  Both results are
 * initialised, so free_pair may release them either way. */
static int run_pair(const qh_method_type *m, qh_variant va, const char *const *ka, qh_variant vb,
                    const char *const *kb, const qh_matd *W, const qh_matd *H, int bits,
                    qh_result *a, qh_result *b, const char *what)
{
    qh_result_init(a);
    qh_result_init(b);
    int ok = run_kv(m, va, ka, W, H, bits, a) == QH_OK && run_kv(m, vb, kb, W, H, bits, b) == QH_OK;
    QH_CHECK(ok, "%s: %s", what, qh_last_error());
    return ok;
}

static void free_pair(qh_result *a, qh_result *b, qh_matd *W, qh_matd *H)
{
    qh_result_free(a);
    qh_result_free(b);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* Each switch's reference value, and the default kept. */
static void grid_reference_values(void)
{
    static const struct { const char *method, *key, *def, *ref; } sw[] = {
        { "gptq", "dead_diag", "0", "0.0009765625" },
        { "ldlq", "dead_diag", "0", "0.001953125" },
        { "ldlq_rg", "dead_diag", "0", "0.001953125" },
        { "greedy", "dead_diag", "0", "0.001953125" },
        { "rtn", "ties", "up", "even" },
        { "gptq", "ties", "up", "even" },
        { "ldlq", "ties", "up", "even" },
        { "ldlq", "clamp_w", "0", "1" },
        { "ldlq_rg", "clamp_w", "0", "1" },
        { "greedy", "clamp_w", "0", "1" },
        { "ldlq_rg", "pass_clamp", "step", "pass" },
        { "greedy", "pass_clamp", "step", "pass" },
        { "gptq", "rms_scope", "matrix", "column" },
    };
    for (size_t i = 0; i < sizeof sw / sizeof sw[0]; i++) {
        const qh_method_type *m = qh_method_find(sw[i].method);
        void *d = params_for(m, QH_VARIANT_DEFAULT, NULL), *r = params_for(m, QH_VARIANT_REFERENCE, NULL);
        check_param(m, d, sw[i].key, sw[i].def);
        check_param(m, r, sw[i].key, sw[i].ref);
        free(d);
        free(r);
    }
}

/* Damping with dead inputs.  H = diag(2, 0, 4, 0): the dead inputs get the
 * live mean 3, so mean(diag H) = 3 and the damping adds 0.01·3 to every
 * entry (not 0.01·mean(2, 1, 4, 1) = 0.02, the dead H_jj = 1 of OPTQ's code
 * at the per-token scale).  Scaling H by 1000 scales the damped H by 1000.
 * dead_diag = c counts each dead input as c: base ((4 − 2)·3 + 2c)/4. */
static void grid_dead_damping(void)
{
    const double h[16] = { 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0 };
    const double w[4] = { 1.3, 0.7, -0.4, 2.2 };
    qh_matd *H = mat_of(4, 4, h), *W = mat_of(1, 4, w), *Hs = mat_of(4, 4, h);
    for (size_t k = 0; k < 16; k++) Hs->data[k] *= 1000.0;
    qh_result r, rs, rr;
    int ok = run_kv(&qh_method_gptq, QH_VARIANT_DEFAULT, NULL, W, H, 3, &r) == QH_OK
             && run_kv(&qh_method_gptq, QH_VARIANT_DEFAULT, NULL, W, Hs, 3, &rs) == QH_OK
             && run_kv(&qh_method_gptq, QH_VARIANT_REFERENCE, NULL, W, H, 3, &rr) == QH_OK;
    QH_CHECK(ok, "gptq on a diagonal H with two dead inputs: %s", qh_last_error());
    if (ok) {
        const double want[4] = { 2.03, 3.03, 4.03, 3.03 };
        double c = 1.0 / 1024.0, base = (2.0 * 3.0 + 2.0 * c) / 4.0;
        int d = 1, s = 1, ref = 1;
        for (size_t j = 0; j < 4; j++) {
            d &= fabs(QH_AT(r.H_proc, j, j) - want[j]) < 1e-15;
            s &= fabs(QH_AT(rs.H_proc, j, j) - 1000.0 * want[j]) < 1e-12;
        }
        ref &= fabs(QH_AT(rr.H_proc, 0, 0) - (2.0 + 0.01 * base)) < 1e-15
               && fabs(QH_AT(rr.H_proc, 2, 2) - (4.0 + 0.01 * base)) < 1e-15;
        QH_CHECK(r.n_dead_cols == 2 && r.damp_used == 0.01 && d,
                 "damped diag = diag(2, 3, 4, 3) + 0.03 (got %.17g %.17g %.17g %.17g, damp %g)",
                 QH_AT(r.H_proc, 0, 0), QH_AT(r.H_proc, 1, 1), QH_AT(r.H_proc, 2, 2),
                 QH_AT(r.H_proc, 3, 3), r.damp_used);
        QH_CHECK(s && same_matrix(r.What, rs.What), "1000·H: damped H 1000 times, same Ŵ");
        QH_CHECK(ref && rr.damp_used == 0.01,
                 "dead_diag 1/1024 (reference): live diag + 0.01·%.6g (got %.17g)", base,
                 QH_AT(rr.H_proc, 0, 0));
    }
    qh_result_free(&r);
    qh_result_free(&rs);
    qh_result_free(&rr);
    qh_matd_free(H);
    qh_matd_free(Hs);
    qh_matd_free(W);
}

/* Ties on the integer grid (points 0..7): 0.5 1.5 2.5 3.5 round up to
 * 1 2 3 4, and to the even 0 2 2 4 as torch.round. */
static void grid_ties(void)
{
    const double w[4] = { 0.5, 1.5, 2.5, 3.5 };
    qh_matd *W = mat_of(1, 4, w);
    static const char *const kv[] = { "grid", "integer", NULL };
    qh_result up, even;
    if (run_pair(&qh_method_rtn, QH_VARIANT_DEFAULT, kv, QH_VARIANT_REFERENCE, kv, W, NULL, 3, &up,
                 &even, "rtn on ties")) {
        const double u[4] = { 1, 2, 3, 4 }, e[4] = { 0, 2, 2, 4 };
        int a = 1, b = 1;
        for (size_t j = 0; j < 4; j++) {
            a &= QH_AT(up.What, 0, j) == u[j];
            b &= QH_AT(even.What, 0, j) == e[j];
        }
        QH_CHECK(a, "ties up: 1 2 3 4 (got %g %g %g %g)", QH_AT(up.What, 0, 0),
                 QH_AT(up.What, 0, 1), QH_AT(up.What, 0, 2), QH_AT(up.What, 0, 3));
        QH_CHECK(b, "ties even: 0 2 2 4 (got %g %g %g %g)", QH_AT(even.What, 0, 0),
                 QH_AT(even.What, 0, 1), QH_AT(even.What, 0, 2), QH_AT(even.What, 0, 3));
    }
    free_pair(&up, &even, W, NULL);
}

/* Forward LDLQ on W = (5, 1.2), integer grid 0..3, H = [1 .5; .5 1] (U̇_01 =
 * 0.5), no damping.  True error: Ŵ_0 = 3, feedback (5 − 3)·0.5 = 1, Ŵ_1 =
 * Q(2.2) = 2, ℓ = 3.04.  W clamped first (QuIP): W_0 = 3, no feedback, Ŵ_1 =
 * Q(1.2) = 1, ℓ = 4.44 against the true W. */
static void grid_clamp_w(void)
{
    const double w[2] = { 5.0, 1.2 }, h[4] = { 1, 0.5, 0.5, 1 };
    qh_matd *W = mat_of(1, 2, w), *H = mat_of(2, 2, h);
    static const char *const kv[] = { "grid", "integer", "order", "forward", "damp", "0", NULL };
    static const char *const kc[] = { "grid", "integer", "order", "forward", "damp", "0",
                                      "clamp_w", "1", NULL };
    qh_result t, c;
    if (run_pair(&qh_method_ldlq, QH_VARIANT_DEFAULT, kv, QH_VARIANT_DEFAULT, kc, W, H, 2, &t,
                 &c, "ldlq clamp_w")) {
        QH_CHECK(QH_AT(t.What, 0, 0) == 3 && QH_AT(t.What, 0, 1) == 2,
                 "true error fed back: (3, 2) (got %g %g)", QH_AT(t.What, 0, 0), QH_AT(t.What, 0, 1));
        QH_CHECK(QH_AT(c.What, 0, 0) == 3 && QH_AT(c.What, 0, 1) == 1,
                 "clamped W fed back: (3, 1) (got %g %g)", QH_AT(c.What, 0, 0), QH_AT(c.What, 0, 1));
        QH_CHECK_CLOSE(t.proxy_loss, 3.04, 1e-12, 0, "true error: proxy 3.04 (%.17g)", t.proxy_loss);
        QH_CHECK_CLOSE(c.proxy_loss, 4.44, 1e-12, 0, "clamped W: proxy 4.44 (%.17g)", c.proxy_loss);
    }
    free_pair(&t, &c, W, H);
}

/* Greedy from W = (3.8, 0.2), integer grid 0..3, H = [2 1; 1 1], no damping.
 * Clamping every step: column 0 → 3 (error −0.8), column 1 → Q(0.2 + 0.8)
 * = 1; stable at (3, 1), ℓ = 0.64.  Clamping at the pass end: column 0 →
 * 4, column 1 → Q(0.2 − 0.2) = 0, then 4 → 3: (3, 0), ℓ = 1.64. */
static void grid_pass_clamp(void)
{
    const double w[2] = { 3.8, 0.2 }, h[4] = { 2, 1, 1, 1 };
    qh_matd *W = mat_of(1, 2, w), *H = mat_of(2, 2, h);
    static const char *const ks[] = { "grid", "integer", "damp", "0", NULL };
    static const char *const kp[] = { "grid", "integer", "damp", "0", "pass_clamp", "pass", NULL };
    qh_result s, p;
    if (run_pair(&qh_method_greedy, QH_VARIANT_DEFAULT, ks, QH_VARIANT_DEFAULT, kp, W, H, 2, &s,
                 &p, "greedy pass_clamp")) {
        QH_CHECK(QH_AT(s.What, 0, 0) == 3 && QH_AT(s.What, 0, 1) == 1 && s.n_greedy_passes == 2,
                 "clamp per step: (3, 1) after 2 passes (got %g %g, %zu)", QH_AT(s.What, 0, 0),
                 QH_AT(s.What, 0, 1), s.n_greedy_passes);
        QH_CHECK(QH_AT(p.What, 0, 0) == 3 && QH_AT(p.What, 0, 1) == 0,
                 "clamp per pass: (3, 0) (got %g %g)", QH_AT(p.What, 0, 0), QH_AT(p.What, 0, 1));
        QH_CHECK_CLOSE(s.proxy_loss, 0.64, 1e-12, 0, "per step: proxy 0.64 (%.17g)", s.proxy_loss);
        QH_CHECK_CLOSE(p.proxy_loss, 1.64, 1e-12, 0, "per pass: proxy 1.64 (%.17g)", p.proxy_loss);
    }
    free_pair(&s, &p, W, H);
}

/* OPTQ on the 1-bit RMS grid (points ±s), H = I, no damping: no feedback, so
 * column 0 of W = [1 10; −1 −10] rounds to ±2.4·RMS: the matrix's RMS
 * √50.5, or the column's 1 with rms_scope = column (side: 16/m bits). */
static void grid_rms_scope(void)
{
    const double w[4] = { 1, -1, 10, -10 }, h[4] = { 1, 0, 0, 1 };
    qh_matd *W = mat_of(2, 2, w), *H = mat_of(2, 2, h);
    static const char *const km[] = { "grid", "rms", "damp", "0", NULL };
    static const char *const kc[] = { "grid", "rms", "damp", "0", "rms_scope", "column", NULL };
    qh_result a, b;
    if (run_pair(&qh_method_gptq, QH_VARIANT_DEFAULT, km, QH_VARIANT_DEFAULT, kc, W, H, 1, &a,
                 &b, "gptq rms_scope")) {
        double sm = 2.4 * sqrt(50.5);
        QH_CHECK(fabs(QH_AT(a.What, 0, 0) - sm) < 1e-12 && fabs(QH_AT(a.What, 1, 0) + sm) < 1e-12,
                 "matrix scope: column 0 = ±2.4·√50.5 (got %.17g)", QH_AT(a.What, 0, 0));
        QH_CHECK(fabs(QH_AT(b.What, 0, 0) - 2.4) < 1e-12 && fabs(QH_AT(b.What, 1, 1) + 24.0) < 1e-12,
                 "column scope: column 0 = ±2.4, column 1 = ±24 (got %.17g %.17g)",
                 QH_AT(b.What, 0, 0), QH_AT(b.What, 1, 1));
        QH_CHECK(b.bits_side == 8.0 && a.bits_side == 16.0 / 4.0,
                 "side bits: 16/m per column (%g), 16/(mn) per matrix (%g)", b.bits_side, a.bits_side);
    }
    free_pair(&a, &b, W, H);
}

/* The incoherence rows name the per-kind rescale and permute values. */
static void grid_incoherence_values(void)
{
    const qh_incoh_row *k = qh_incoh_row_of(QH_INCOH_KRON), *h = qh_incoh_row_of(QH_INCOH_HADAMARD);
    QH_CHECK(k->rescale_default == 1 && k->rescale_reference == 1 && k->permute_default == 0
             && k->permute_reference == 1, "kron: rescale on; permute off, on in the reference");
    QH_CHECK(h->rescale_default == 1 && h->rescale_reference == 0 && h->permute_reference == 0,
             "hadamard: rescale on, off in the reference (QuIP#, PVQ)");
}

/* Config keys "rescale" and "permute": unset, each entry takes its
 * incoherence row's default, or its reference value under the reference
 * variant; a value given wins; a non-boolean is an error naming the key. */
static void grid_config_keys(void)
{
    const char *json =
        "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],\"methods\":["
        "{\"method\":\"ldlq\",\"incoherence\":\"kron\"},"
        "{\"method\":\"ldlq\",\"incoherence\":\"kron\",\"variant\":\"reference\"},"
        "{\"method\":\"quipsharp\",\"incoherence\":\"hadamard\"},"
        "{\"method\":\"quipsharp\",\"incoherence\":\"hadamard\",\"variant\":\"reference\"},"
        "{\"method\":\"ldlq\",\"incoherence\":\"kron\",\"label\":\"p\",\"permute\":true,"
        "\"rescale\":false}]}";
    qh_config *c = NULL;
    int st = qh_config_parse(json, "keys.json", &c);
    QH_CHECK(st == QH_OK, "rescale/permute keys parse: %s", qh_last_error());
    if (st == QH_OK) {
        const qh_config_method *m = c->methods;
        QH_CHECK(m[0].rescale == 1 && m[0].permute == 0, "kron default: rescale, no permutations");
        QH_CHECK(m[1].rescale == 1 && m[1].permute == 1, "kron reference: rescale and permutations");
        QH_CHECK(m[2].rescale == 1 && m[3].rescale == 0, "hadamard: rescale on, off in the reference");
        QH_CHECK(m[4].rescale == 0 && m[4].permute == 1, "explicit values win");
        qh_config_free(c);
    }
    const char *bad = "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],\"methods\":["
                      "{\"method\":\"ldlq\",\"incoherence\":\"kron\",\"permute\":1}]}";
    c = NULL;
    QH_CHECK(qh_config_parse(bad, "bad.json", &c) == QH_ECONFIG && strstr(qh_last_error(), "permute"),
             "permute: 1 refused naming the key: %s", qh_last_error());
    qh_config_free(c);
}

static void grid_tests(void)
{
    grid_config_keys();
    grid_reference_values();
    grid_dead_damping();
    grid_ties();
    grid_clamp_w();
    grid_pass_clamp();
    grid_rms_scope();
    grid_incoherence_values();
}

/* ---- the variant ---------------------------------------------------------------- */

static void vec_variant(void)
{
    qh_variant v = QH_VARIANT_DEFAULT;
    QH_CHECK(qh_variant_parse("reference", &v) == QH_OK && v == QH_VARIANT_REFERENCE, "reference");
    QH_CHECK(qh_variant_parse("default", &v) == QH_OK && v == QH_VARIANT_DEFAULT, "default");
    QH_CHECK(qh_variant_parse("ref", &v) == QH_ECONFIG && strstr(qh_last_error(), "\"ref\"")
             && strstr(qh_last_error(), "default, reference"),
             "unknown variant names itself and the valid ones: %s", qh_last_error());
    /* Every row's reference values parse under its own descriptors. */
    for (const qh_method_type *const *m = qh_method_registry(); *m; m++) {
        void *p = qh_method_params_new(*m);
        QH_CHECK(qh_method_params_variant(*m, p, QH_INCOH_NONE, QH_VARIANT_REFERENCE) == QH_OK,
                 "%s: reference values apply: %s", (*m)->name, qh_last_error());
        free(p);
    }
    /* The four switches of this file: reference values set, defaults unchanged. */
    static const struct { const qh_method_type *m; const char *key, *def, *ref; } sw[] = {
        { &qh_method_billm, "split_quantiles", "nonsalient", "zeroed" },
        { &qh_method_aqlm, "damp", "0.01", "0" },
        { &qh_method_ptq161, "rank", "rms", "absmax" },
        { &qh_method_quipsharp, "tune_iters", "0", "10" },
    };
    for (size_t i = 0; i < sizeof sw / sizeof sw[0]; i++) {
        void *d = params_for(sw[i].m, QH_VARIANT_DEFAULT, NULL);
        void *r = params_for(sw[i].m, QH_VARIANT_REFERENCE, NULL);
        check_param(sw[i].m, d, sw[i].key, sw[i].def);
        check_param(sw[i].m, r, sw[i].key, sw[i].ref);
        free(d);
        free(r);
    }
    /* An explicit setting after the variant overrides it. */
    static const char *const kv[] = { "tune_iters", "3", NULL };
    void *p = params_for(&qh_method_quipsharp, QH_VARIANT_REFERENCE, kv);
    check_param(&qh_method_quipsharp, p, "tune_iters", "3");
    free(p);
}

/* ---- BiLLM: split-threshold quantiles ----------------------------------------- */

/* One row |T| = 5 1 2 3 with column 0 salient: the median of the other
 * entries {1, 2, 3} is 2; with the salient column zeroed, of {0, 1, 2, 3},
 * 1.5.  Deciles 10/50/90 %: 1.2, 2, 2.8 against 0.3, 1.5, 2.7. */
static void vec_billm_candidates(void)
{
    double t[4] = { 5, 1, 2, 3 };
    qh_matd T = { 1, 4, 1, t, 0 };
    uint8_t base[4] = { 0, 1, 1, 1 };
    double c[3];
    QH_CHECK(qh_binarize_split_candidates_in(&T, base, QH_SPLIT_Q_BASE, 1, 0.5, 0.5, c) == QH_OK
             && c[0] == 2.0, "median over the non-salient entries = 2 (%g)", c[0]);
    QH_CHECK(qh_binarize_split_candidates_in(&T, base, QH_SPLIT_Q_ZEROED, 1, 0.5, 0.5, c) == QH_OK
             && c[0] == 1.5, "median with the salient column zeroed = 1.5 (%g)", c[0]);
    QH_CHECK(qh_binarize_split_candidates_in(&T, base, QH_SPLIT_Q_BASE, 3, 0.1, 0.9, c) == QH_OK
             && fabs(c[0] - 1.2) < 1e-15 && c[1] == 2.0 && fabs(c[2] - 2.8) < 1e-15,
             "deciles over the non-salient entries 1.2 2 2.8 (%g %g %g)", c[0], c[1], c[2]);
    QH_CHECK(qh_binarize_split_candidates_in(&T, base, QH_SPLIT_Q_ZEROED, 3, 0.1, 0.9, c) == QH_OK
             && fabs(c[0] - 0.3) < 1e-15 && c[1] == 1.5 && fabs(c[2] - 2.7) < 1e-15,
             "deciles with the salient column zeroed 0.3 1.5 2.7 (%g %g %g)", c[0], c[1], c[2]);
}

/* The zeroed split search against a brute force: candidates from a sorted
 * copy of the zeroed block (numpy's linear interpolation), the error of each
 * from masks built here. */
static void vec_billm_search(void)
{
    const size_t m = 6, n = 16, nt = 9;
    qh_matd *T = random_W(m, n, 1);
    uint8_t base[6 * 16], inner[6 * 16], outer[6 * 16];
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m; i++) base[i + j * m] = !(j == 3 || j == 7 || j == 12);
    double v[6 * 16], best_err = INFINITY, best_thr = 0.0;
    for (size_t k = 0; k < m * n; k++) v[k] = base[k] ? fabs(T->data[k]) : 0.0;
    qh_sort_doubles(v, m * n);
    for (size_t t = 0; t < nt; t++) {
        double pos = (0.1 + 0.8 * (double)t / (double)(nt - 1)) * (double)(m * n - 1);
        size_t lo = (size_t)pos;
        double thr = v[lo] + (pos - (double)lo) * (v[lo + 1] - v[lo]);
        for (size_t k = 0; k < m * n; k++) {
            inner[k] = base[k] && fabs(T->data[k]) < thr;
            outer[k] = base[k] && !(fabs(T->data[k]) < thr);
        }
        double e1 = 0, e2 = 0;
        if (qh_binarize_error(T, inner, 1, &e1) != QH_OK || qh_binarize_error(T, outer, 1, &e2) != QH_OK)
            QH_CHECK(0, "brute-force error: %s", qh_last_error());
        if (e1 + e2 < best_err) { best_err = e1 + e2; best_thr = thr; }
    }
    double thr = 0, err = 0;
    QH_CHECK(qh_binarize_search_split_in(T, base, QH_SPLIT_Q_ZEROED, (int)nt, 0.1, 0.9, 1, &thr, &err)
             == QH_OK, "zeroed search runs: %s", qh_last_error());
    QH_CHECK_CLOSE(thr, best_thr, 1e-14, 1e-14, "zeroed search threshold %.17g = brute force %.17g",
                   thr, best_thr);
    QH_CHECK_CLOSE(err, best_err, 1e-12, 1e-12, "zeroed search error %.17g = brute force %.17g",
                   err, best_err);
    qh_matd_free(T);
}

/* On a layer: the reference variant is split_quantiles = zeroed exactly, and
 * it changes Ŵ (the candidates differ, so the chosen split does somewhere). */
static void vec_billm_layer(void)
{
    qh_matd *W = random_W(16, 64, 2), *H = sample_H(64, 256, 2);
    qh_problem pb = { W, H, 1, 0, 0, "layers.0.fc1", NULL, NULL };
    static const char *const zeroed[] = { "split_quantiles", "zeroed", NULL };
    void *pd = params_for(&qh_method_billm, QH_VARIANT_DEFAULT, NULL);
    void *pr = params_for(&qh_method_billm, QH_VARIANT_REFERENCE, NULL);
    void *pz = params_for(&qh_method_billm, QH_VARIANT_DEFAULT, zeroed);
    qh_result rd, rr, rz;
    int ok = run(&qh_method_billm, pd, &pb, NULL, &rd) == QH_OK
             && run(&qh_method_billm, pr, &pb, NULL, &rr) == QH_OK
             && run(&qh_method_billm, pz, &pb, NULL, &rz) == QH_OK;
    QH_CHECK(ok, "billm runs: %s", qh_last_error());
    if (ok) {
        QH_CHECK(same_matrix(rr.What, rz.What), "billm reference = split_quantiles zeroed (bitwise)");
        QH_CHECK(!same_matrix(rr.What, rd.What), "billm reference differs from the default");
        QH_NOTE("billm proxy: default %.6g, reference split %.6g", rd.proxy_loss, rr.proxy_loss);
    }
    qh_result_free(&rd);
    qh_result_free(&rr);
    qh_result_free(&rz);
    free(pd);
    free(pr);
    free(pz);
    qh_matd_free(W);
    qh_matd_free(H);
}

/* ---- AQLM: damping ------------------------------------------------------------- */

/* The reference quantizes against H itself: H_proc = H and no damping used;
 * the default adds 0.01·mean(diag H) to the diagonal.  A singular H (fewer
 * tokens than inputs) still factors with the least counted damping. */
static void vec_aqlm_damp(void)
{
    const size_t m = 8, n = 16;
    static const char *const kv[] = { "codebooks", "2", "epochs", "1", "kmeans_iters", "2", NULL };
    qh_matd *W = random_W(m, n, 3), *H = sample_H(n, 64, 3), *Hs = sample_H(n, 4, 4);
    void *pd = params_for(&qh_method_aqlm, QH_VARIANT_DEFAULT, kv);
    void *pr = params_for(&qh_method_aqlm, QH_VARIANT_REFERENCE, kv);
    qh_problem pb = { W, H, 2, 1, 3, "layers.0.fc1", NULL, NULL };
    qh_result rd, rr, rs;
    int ok = run(&qh_method_aqlm, pd, &pb, NULL, &rd) == QH_OK
             && run(&qh_method_aqlm, pr, &pb, NULL, &rr) == QH_OK;
    QH_CHECK(ok, "aqlm runs: %s", qh_last_error());
    if (ok) {
        double mean = 0.0, worst = 0.0;
        for (size_t j = 0; j < n; j++) mean += QH_AT(H, j, j) / (double)n;
        for (size_t j = 0; j < n; j++)
            worst = fmax(worst, fabs(QH_AT(rd.H_proc, j, j) - QH_AT(H, j, j) - 0.01 * mean));
        QH_CHECK(same_matrix(rr.H_proc, H) && rr.damp_used == 0.0 && rr.n_damp_retries == 0,
                 "aqlm reference: H_proc = H exactly, damp_used %g", rr.damp_used);
        QH_CHECK(worst <= 1e-14 * mean && rd.damp_used == 0.01,
                 "aqlm default: diag(H_proc) = diag(H) + 0.01 mean(diag H) (off by %.3g)", worst);
    }
    pb.H = Hs;
    QH_CHECK(run(&qh_method_aqlm, pr, &pb, NULL, &rs) == QH_OK && rs.n_damp_retries >= 1
             && rs.damp_used >= 1e-6 && rs.damp_used < 1e-3,
             "aqlm reference on a rank-4 H: least damping that factors (%g after %zu retries): %s",
             rs.damp_used, rs.n_damp_retries, qh_last_error());
    qh_result_free(&rd);
    qh_result_free(&rr);
    qh_result_free(&rs);
    free(pd);
    free(pr);
    qh_matd_free(W);
    qh_matd_free(H);
    qh_matd_free(Hs);
}

/* ---- PTQ1.61: channel ranking ------------------------------------------------------ */

/* Rows holding 0 and 15 have a 4-bit min-max grid of step 1, so a salient
 * column of integers comes back exactly, a binarized one does not.  With
 * salient_frac 0.2 of 5 columns one column is salient: by sqrt(diag H) column
 * 0 (H = diag(9, 1, 1, 1, 1)), by max|x| column 2 (x_absmax = 1 1 5 1 1). */
static void vec_ptq161_rank(void)
{
    double w[10] = { 3, 12, 15, 0, 7, 5, 0, 15, 11, 9 };   /* 2 x 5, column-major */
    qh_matd W = { 2, 5, 2, w, 0 };
    qh_matd *H = qh_matd_alloc(5, 5);
    memset(H->data, 0, 25 * sizeof(double));
    for (size_t j = 0; j < 5; j++) QH_AT(H, j, j) = j == 0 ? 9.0 : 1.0;
    double absmax[5] = { 1, 1, 5, 1, 1 };
    static const char *const kv[] = { "steps", "0", "objective", "layer", NULL };
    void *pd = params_for(&qh_method_ptq161, QH_VARIANT_DEFAULT, kv);
    void *pr = params_for(&qh_method_ptq161, QH_VARIANT_REFERENCE, kv);
    qh_problem pb = { &W, H, 1, 0, 0, "layers.0.q_proj", NULL, absmax };
    qh_result rd, rr, rx;
    int ok = run(&qh_method_ptq161, pd, &pb, NULL, &rd) == QH_OK
             && run(&qh_method_ptq161, pr, &pb, NULL, &rr) == QH_OK;
    QH_CHECK(ok, "ptq161 runs: %s", qh_last_error());
    if (ok) {
        int d0 = QH_AT(rd.What, 0, 0) == 3 && QH_AT(rd.What, 1, 0) == 12;
        int d2 = QH_AT(rd.What, 0, 2) == 7 && QH_AT(rd.What, 1, 2) == 5;
        int r0 = QH_AT(rr.What, 0, 0) == 3 && QH_AT(rr.What, 1, 0) == 12;
        int r2 = QH_AT(rr.What, 0, 2) == 7 && QH_AT(rr.What, 1, 2) == 5;
        QH_CHECK(d0 && !d2, "rank rms: column 0 (largest H_jj) kept on the 4-bit grid, column 2 binarized");
        QH_CHECK(r2 && !r0, "rank absmax (reference): column 2 (largest max|x|) kept, column 0 binarized");
    }
    /* No maxima, or incoherence processing (which withholds them): refused. */
    pb.x_absmax = NULL;
    QH_CHECK(run(&qh_method_ptq161, pr, &pb, NULL, &rx) == QH_EINVAL
             && strstr(qh_last_error(), "absmax") && strstr(qh_last_error(), "layers.0.q_proj"),
             "rank absmax without maxima refused naming the tensor: %s", qh_last_error());
    qh_result_free(&rx);
    pb.x_absmax = absmax;
    qh_incoh_params ip = { .kind = QH_INCOH_NONE, .rescale = 1, .seed = 1 };
    QH_CHECK(run(&qh_method_ptq161, pr, &pb, &ip, &rx) == QH_EINVAL,
             "rank absmax under incoherence processing refused: %s", qh_last_error());
    qh_result_free(&rd);
    qh_result_free(&rr);
    qh_result_free(&rx);
    free(pd);
    free(pr);
    qh_matd_free(H);
}

/* ---- QuIP#: tune passes ------------------------------------------------------------ */

static void vec_quipsharp_tune(void)
{
    qh_matd *W = random_W(16, 64, 5), *H = sample_H(64, 256, 5);
    static const char *const ten[] = { "tune_iters", "10", NULL };
    void *pd = params_for(&qh_method_quipsharp, QH_VARIANT_DEFAULT, NULL);
    void *pr = params_for(&qh_method_quipsharp, QH_VARIANT_REFERENCE, NULL);
    void *pt = params_for(&qh_method_quipsharp, QH_VARIANT_DEFAULT, ten);
    qh_incoh_params ip = { .kind = QH_INCOH_HADAMARD, .seed = 3, .layer = 0 };
    qh_problem pb = { W, H, 2, 0, 0, "layers.0.fc1", NULL, NULL };
    qh_result rd, rr, rt;
    int ok = run(&qh_method_quipsharp, pd, &pb, &ip, &rd) == QH_OK
             && run(&qh_method_quipsharp, pr, &pb, &ip, &rr) == QH_OK
             && run(&qh_method_quipsharp, pt, &pb, &ip, &rt) == QH_OK;
    QH_CHECK(ok, "quipsharp runs: %s", qh_last_error());
    if (ok) {
        QH_CHECK(rd.n_iterations == 0 && rr.n_iterations == 10,
                 "quipsharp tune passes: default %zu, reference %zu (want 0, 10)", rd.n_iterations,
                 rr.n_iterations);
        QH_CHECK(same_matrix(rr.What, rt.What), "quipsharp reference = tune_iters 10 (bitwise)");
        QH_NOTE("quipsharp proxy: plain BlockLDLQ %.6g, 10 tune passes %.6g", rd.proxy_loss,
                rr.proxy_loss);
    }
    qh_result_free(&rd);
    qh_result_free(&rr);
    qh_result_free(&rt);
    free(pd);
    free(pr);
    free(pt);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void vec_tests(void)
{
    vec_variant();
    vec_billm_candidates();
    vec_billm_search();
    vec_billm_layer();
    vec_aqlm_damp();
    vec_ptq161_rank();
    vec_quipsharp_tune();
}

int main(void)
{
    grid_tests();
    vec_tests();
    return qh_test_summary();
}
