/* test_billm.c -- the billm method row (core/methods/billm.h; methods
 * reference §6):
 *   - bit accounting against hand-computed values (4 x 256 with 2 salient
 *     columns per block; a ragged last block) and the 4096² formula;
 *   - saliency W²/diag(Hinv)²: planted columns with a small Hinv diagonal
 *     are ranked first and kept by the salient search;
 *   - structure: per row and block Ŵ takes at most 8 distinct values
 *     (4 salient, 2 concentrated, 2 sparse);
 *   - the result's bits agree with the formula (total − nominal = flags +
 *     128·blocks/n);
 *   - proxy loss with block feedback below the one without, on a random
 *     layer with correlated H; every switch runs; determinism;
 *   - bad input: bits 2, NaN in W, missing H. */
#include "billm.h"
#include "qh_binarize.h"
#include "qh_method.h"
#include "qh_rng.h"
#include "qh_test.h"
#include "qh_fixtures.h"

#include <stdlib.h>
#include <string.h>

/* H = XᵀX/k with a shared factor (correlated columns) and uneven scales. */
static qh_matd *correlated_H(size_t n, size_t k, uint32_t key)
{
    qh_rng r = qh_rng_stream(42, key, QH_RNG_TEST);
    double *X = malloc(k * n * sizeof *X);
    for (size_t i = 0; i < k; i++) {
        double f = qh_rng_normal(&r);
        for (size_t j = 0; j < n; j++)
            X[i + j * k] = qh_rng_normal(&r) * (0.3 + (double)((j * 7) % 11) / 5.0) + 0.8 * f;
    }
    qh_matd *H = qh_matd_alloc(n, n);
    for (size_t a = 0; a < n; a++)
        for (size_t b = a; b < n; b++) {
            double s = 0.0;
            for (size_t i = 0; i < k; i++) s += X[i + a * k] * X[i + b * k];
            QH_AT(H, a, b) = QH_AT(H, b, a) = s / (double)k;
        }
    free(X);
    return H;
}

static int run_billm(const char *const *kv, const qh_matd *W, const qh_matd *H, int bits, qh_result *r)
{
    void *p = qh_method_params_new(&qh_method_billm);
    for (; kv && kv[0]; kv += 2)
        if (qh_method_params_set(&qh_method_billm, p, kv[0], kv[1]) != QH_OK)
            printf("note: %s\n", qh_last_error());
    qh_problem pb = { W, H, bits, 0, 0, "layers.0.fc1", NULL, NULL };
    int st = qh_quantize(&qh_method_billm, p, &pb, NULL, NULL, r);
    free(p);
    return st;
}

static void test_bits(void)
{
    /* 4 x 256, blocks of 128, 2 salient columns each:
     * signs 4·(128+2)·2 = 1040, bitmap 256 → nominal 1296/1024 = 1.265625;
     * flags 4·126·2 = 1008, statistics 4·128·2 = 1024 → total 3328/1024 = 3.25. */
    size_t sal[2] = { 2, 2 };
    double nom, tot;
    qh_billm_bits(4, 256, 128, sal, &nom, &tot);
    QH_CHECK_CLOSE(nom, 1.265625, 1e-15, 0, "4x256 nominal 1.265625 (%g)", nom);
    QH_CHECK_CLOSE(tot, 3.25, 1e-15, 0, "4x256 total 3.25 (%g)", tot);
    /* 2 x 200, blocks 128 + 72, salient 3 and 1: signs 2·131 + 2·73 = 408,
     * bitmap 200, flags 2·125 + 2·71 = 392, stats 2·128·2 = 512;
     * nominal 608/400 = 1.52, total 1512/400 = 3.78. */
    size_t sal2[2] = { 3, 1 };
    qh_billm_bits(2, 200, 128, sal2, &nom, &tot);
    QH_CHECK_CLOSE(nom, 1.52, 1e-15, 0, "ragged nominal 1.52 (%g)", nom);
    QH_CHECK_CLOSE(tot, 3.78, 1e-15, 0, "ragged total 3.78 (%g)", tot);
    /* 4096², 32 blocks; nominal 1 + K/n + 1/m, total = nominal + (1 − K/n) + 128·32/4096. */
    size_t sal3[32];
    for (size_t k = 0; k < 32; k++) sal3[k] = 5;         /* 5 salient columns per block */
    qh_billm_bits(4096, 4096, 128, sal3, &nom, &tot);
    double kn = 160.0 / 4096.0;
    QH_CHECK_CLOSE(nom, 1.0 + kn + 1.0 / 4096, 1e-14, 0, "4096² nominal (%g)", nom);
    QH_CHECK_CLOSE(tot, nom + (1.0 - kn) + 1.0, 1e-14, 0, "4096² total (%g)", tot);
    QH_NOTE("4096^2, 5 salient/block: nominal %.4f, total %.4f bpw", nom, tot);
    for (size_t k = 0; k < 32; k++) sal3[k] = 13;        /* about 10 % salient columns */
    qh_billm_bits(4096, 4096, 128, sal3, &nom, &tot);
    QH_NOTE("4096^2, 13 salient/block: nominal %.4f, total %.4f bpw", nom, tot);
    QH_CHECK(tot > 2.9 && tot < 3.1, "4096² honest total about 3.0 bpw (%g)", tot);
}

static void test_salient_planted(void)
{
    size_t m = 32, n = 64;
    qh_matd *W = fixture_gaussian_W(m, n, 41, 1, 0.0), *S = qh_matd_alloc(m, n);
    double d[64];
    const size_t planted[3] = { 7, 30, 51 };
    for (size_t j = 0; j < n; j++) d[j] = 0.8 + 0.4 * (double)(j % 5) / 4.0;
    for (int c = 0; c < 3; c++) d[planted[c]] = 0.12;     /* S ×~60 on those columns */
    qh_billm_saliency(W, d, QH_BILLM_SALIENT_HESSIAN, S);
    QH_CHECK_CLOSE(QH_AT(S, 3, 9), QH_AT(W, 3, 9) * QH_AT(W, 3, 9) / (d[9] * d[9]), 1e-15, 1e-14,
                   "S = w²/d²");
    size_t rank[64], k;
    double err;
    QH_CHECK(qh_binarize_search_salient(S, 49, 2, rank, &k, &err) == QH_OK, "%s", qh_last_error());
    int ok = 1;
    for (int c = 0; c < 3; c++) {
        int found = 0;
        for (size_t r = 0; r < 3; r++) found |= rank[r] == planted[c];
        ok &= found;
    }
    QH_CHECK(ok && k >= 3, "planted columns ranked first and selected (top %zu %zu %zu, k = %zu)", rank[0],
             rank[1], rank[2], k);
    qh_billm_saliency(W, d, QH_BILLM_SALIENT_MAGNITUDE, S);
    QH_CHECK(QH_AT(S, 5, 5) == QH_AT(W, 5, 5), "magnitude saliency S = W");
    qh_matd_free(W);
    qh_matd_free(S);
}

/* Largest number of distinct values of one row inside one block. */
static size_t max_distinct(const qh_matd *Q, size_t B)
{
    size_t worst = 0;
    double v[512];
    for (size_t i = 0; i < Q->rows; i++)
        for (size_t b0 = 0; b0 < Q->cols; b0 += B) {
            size_t c = 0;
            for (size_t j = b0; j < b0 + B && j < Q->cols; j++) {
                double x = QH_AT(Q, i, j);
                size_t k = 0;
                while (k < c && v[k] != x) k++;
                if (k == c) v[c++] = x;
            }
            if (c > worst) worst = c;
        }
    return worst;
}

static void test_layer(void)
{
    int fast = qh_test_fast();
    size_t m = fast ? 64 : 256, n = fast ? 128 : 256;
    const char *bs = fast ? "64" : "128";
    size_t B = fast ? 64 : 128;
    qh_matd *W = fixture_gaussian_W(m, n, 41, 2, 0.0), *H = correlated_H(n, 2 * n, 2);
    qh_result on, off, again;
    qh_result_init(&on);
    qh_result_init(&off);
    qh_result_init(&again);
    const char *kv_on[] = { "blocksize", bs, NULL };
    const char *kv_off[] = { "blocksize", bs, "feedback", "0", NULL };
    QH_CHECK(run_billm(kv_on, W, H, 1, &on) == QH_OK, "billm: %s", qh_last_error());
    QH_CHECK(run_billm(kv_off, W, H, 1, &off) == QH_OK, "billm no feedback: %s", qh_last_error());
    QH_NOTE("%zux%zu proxy: feedback %.6g, no feedback %.6g (ratio %.3f)", m, n, on.proxy_loss,
            off.proxy_loss, on.proxy_loss / off.proxy_loss);
    QH_CHECK(on.proxy_loss < off.proxy_loss, "block feedback lowers the proxy (%g < %g)", on.proxy_loss,
             off.proxy_loss);
    QH_CHECK(max_distinct(on.What, B) <= 8, "at most 8 values per row and block (%zu)", max_distinct(on.What, B));

    /* Bits: nominal = 1 + K/n + 1/m, so K/n follows, and the side bits must be
     * the flags (1 − K/n) plus 128 bits per row per block. */
    double kn = on.bits_nominal - 1.0 - 1.0 / (double)m;
    double blocks = (double)((n + B - 1) / B);
    QH_CHECK(on.bits_nominal > 1.0 && on.bits_nominal < 1.0 + 49.0 / (double)B + 0.01,
             "nominal bits in range (%g)", on.bits_nominal);
    QH_CHECK_CLOSE(on.bits_side, (1.0 - kn) + 128.0 * blocks / (double)n, 1e-12, 0,
                   "side bits = flags + FP16 statistics (%g)", on.bits_side);
    QH_CHECK_CLOSE(on.bits_total, on.bits_nominal + on.bits_side, 1e-12, 0, "total = nominal + side");
    QH_NOTE("%zux%zu bits: nominal %.4f, side %.4f, total %.4f", m, n, on.bits_nominal, on.bits_side,
            on.bits_total);

    QH_CHECK(run_billm(kv_on, W, H, 1, &again) == QH_OK, "rerun: %s", qh_last_error());
    QH_CHECK(memcmp(again.What->data, on.What->data, m * n * sizeof(double)) == 0 &&
             again.proxy_loss == on.proxy_loss, "deterministic");

    /* The switches run and give sensible layers (on a smaller layer, for time). */
    qh_matd *W2 = fixture_gaussian_W(64, 128, 41, 4, 0.0), *H2 = correlated_H(128, 256, 4);
    const char *kv_off2[] = { "blocksize", "64", "feedback", "0", NULL };
    QH_CHECK(run_billm(kv_off2, W2, H2, 1, &off) == QH_OK, "small no feedback: %s", qh_last_error());
    const char *variants[][7] = {
        { "blocksize", "64", "intra_block_update", "1", NULL },
        { "blocksize", "64", "search_target", "w", NULL },
        { "blocksize", "64", "salient_metric", "magnitude", NULL },
        { "blocksize", "64", "max_salient", "4", "n_thresholds", "5", NULL },
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        QH_CHECK(run_billm(variants[v], W2, H2, 1, &again) == QH_OK, "variant %s=%s: %s", variants[v][2],
                 variants[v][3], qh_last_error());
        QH_CHECK(isfinite(again.proxy_loss) && again.proxy_loss < off.proxy_loss * 1.5,
                 "variant %s=%s: proxy %g finite and sensible", variants[v][2], variants[v][3], again.proxy_loss);
        QH_NOTE("64x128 variant %s=%s: proxy %.6g (no feedback %.6g), bits nominal %.4f total %.4f",
                variants[v][2], variants[v][3], again.proxy_loss, off.proxy_loss, again.bits_nominal,
                again.bits_total);
    }
    qh_matd_free(W2);
    qh_matd_free(H2);
    qh_result_free(&on);
    qh_result_free(&off);
    qh_result_free(&again);
    qh_matd_free(W);
    qh_matd_free(H);
}

static void test_bad_input(void)
{
    qh_matd *W = fixture_gaussian_W(8, 32, 41, 3, 0.0), *H = correlated_H(32, 64, 3);
    qh_result r;
    qh_result_init(&r);
    int st = run_billm(NULL, W, H, 2, &r);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "takes 1..1"), "bits 2 refused as 1-bit only: %s",
             qh_last_error());
    QH_CHECK(run_billm(NULL, W, NULL, 1, &r) == QH_EINVAL && strstr(qh_last_error(), "Hessian"),
             "missing H refused: %s", qh_last_error());
    QH_AT(W, 2, 3) = NAN;
    QH_CHECK(run_billm(NULL, W, H, 1, &r) == QH_ENAN, "NaN in W refused: %s", qh_last_error());
    void *p = qh_method_params_new(&qh_method_billm);
    QH_CHECK(qh_method_params_set(&qh_method_billm, p, "search_target", "x") == QH_ECONFIG,
             "unknown search target refused");
    QH_CHECK(qh_method_params_set(&qh_method_billm, p, "max_salient", "0") == QH_ECONFIG, "max_salient 0 refused");
    free(p);
    qh_result_free(&r);
    qh_matd_free(W);
    qh_matd_free(H);
}

int main(void)
{
    test_bits();
    test_salient_planted();
    test_layer();
    test_bad_input();
    return qh_test_summary();
}
