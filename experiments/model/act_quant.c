/* act_quant.c -- fake quantization of activations and KV, Runtime Smooth (see act_quant.h). */
#include "model/act_quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

qh_quant_spec qh_quant_spec_off(void)
{
    return (qh_quant_spec){ .bits = 16, .per_tensor = 0, .asym = 0, .group = 0, .clip = 1.0f };
}

int qh_quant_spec_check(const qh_quant_spec *s, size_t dim, const char *who)
{
    if (s->bits < 2 || s->bits > 16)
        QH_ERROR(QH_ECONFIG, "%s: bits %d outside [2, 16]", who, s->bits);
    if (!(s->clip > 0.0f && s->clip <= 1.0f))
        QH_ERROR(QH_ECONFIG, "%s: clip ratio %g outside (0, 1]", who, (double)s->clip);
    if (s->group < 0) QH_ERROR(QH_ECONFIG, "%s: group %d < 0", who, s->group);
    if (s->group > 0 && s->per_tensor)
        QH_ERROR(QH_ECONFIG, "%s: channel groups and per-tensor ranges exclude each other", who);
    if (s->group > 0 && dim % (size_t)s->group != 0)
        QH_ERROR(QH_ECONFIG, "%s: group %d does not divide %zu channels", who, s->group, dim);
    return QH_OK;
}

/* Range of n values -> (scale, zero); returns 0 when the range is empty (all map to 0). */
static int grid_of(const qh_quant_spec *s, float lo, float hi, float *scale, float *zero)
{
    if (s->asym) {
        lo = s->clip * (lo < 0.0f ? lo : 0.0f);
        hi = s->clip * (hi > 0.0f ? hi : 0.0f);
        float levels = (float)((1L << s->bits) - 1);
        *scale = (hi - lo) / levels;
        if (!(*scale > 0.0f)) return 0;
        *zero = rintf(-lo / *scale);
    } else {
        float amax = fabsf(lo) > fabsf(hi) ? fabsf(lo) : fabsf(hi);
        *scale = s->clip * amax / (float)((1L << (s->bits - 1)) - 1);
        *zero = 0.0f;
        if (!(*scale > 0.0f)) return 0;
    }
    return 1;
}

static void quant_run(const qh_quant_spec *s, const float *x, float *y, size_t n, float scale,
                      float zero, int nonempty)
{
    if (!nonempty) {
        for (size_t i = 0; i < n; i++) y[i] = 0.0f;
        return;
    }
    float qlo, qhi;
    if (s->asym) {
        qlo = 0.0f;
        qhi = (float)((1L << s->bits) - 1);
    } else {
        qhi = (float)((1L << (s->bits - 1)) - 1);
        qlo = -qhi - 1.0f;
    }
    for (size_t i = 0; i < n; i++) {
        float q = rintf(x[i] / scale) + zero;
        q = q < qlo ? qlo : q > qhi ? qhi : q;
        y[i] = (q - zero) * scale;
    }
}

static void min_max(const float *x, size_t n, float *lo, float *hi)
{
    float a = x[0], b = x[0];
    for (size_t i = 1; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

void qh_fake_quant(const qh_quant_spec *s, const float *x, float *y, size_t dim, size_t T)
{
    if (!qh_quant_spec_on(s)) {
        if (y != x) memcpy(y, x, dim * T * sizeof(float));
        return;
    }
    float lo, hi, scale, zero;
    if (s->per_tensor) {
        min_max(x, dim * T, &lo, &hi);
        int ne = grid_of(s, lo, hi, &scale, &zero);
        quant_run(s, x, y, dim * T, scale, zero, ne);
        return;
    }
    size_t g = s->group > 0 ? (size_t)s->group : dim;
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < dim; j += g) {
            const float *xr = x + t * dim + j;
            min_max(xr, g, &lo, &hi);
            int ne = grid_of(s, lo, hi, &scale, &zero);
            quant_run(s, xr, y + t * dim + j, g, scale, zero, ne);
        }
}

void qh_fake_quant_heads(const qh_quant_spec *s, float *x, size_t n_heads, size_t head_dim,
                         size_t T)
{
    qh_quant_spec h = *s;
    h.per_tensor = 0;
    /* token t, head h lies at x + t·(n_heads·head_dim) + h·head_dim: head_dim x (n_heads·T) */
    qh_fake_quant(&h, x, x, head_dim, n_heads * T);
}

/* ---- Runtime Smooth ------------------------------------------------------------------- */

static int before(const float *s, size_t a, size_t b)
{
    return s[a] < s[b] || (s[a] == s[b] && a < b);
}

static void sift_down(const float *s, size_t *idx, size_t root, size_t n)
{
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n) return;
        if (c + 1 < n && before(s, idx[c], idx[c + 1])) c++;
        if (!before(s, idx[root], idx[c])) return;
        size_t t = idx[root]; idx[root] = idx[c]; idx[c] = t;
        root = c;
    }
}

/* idx = 0..n-1 sorted ascending by (s[i], i): heapsort, no allocation. */
static void argsort(const float *s, size_t *idx, size_t n)
{
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = n / 2; i-- > 0;) sift_down(s, idx, i, n);
    for (size_t end = n; end-- > 1;) {
        size_t t = idx[0]; idx[0] = idx[end]; idx[end] = t;
        sift_down(s, idx, 0, end);
    }
}

void qh_smooth_group_max(float *s, size_t dim, size_t g, size_t *idx)
{
    if (g == 0 || dim == 0) return;
    argsort(s, idx, dim);
    /* ascending order: a run's maximum is its last element */
    for (size_t j = 0; j < dim; j += g) {
        size_t e = j + g < dim ? j + g : dim;
        float mx = s[idx[e - 1]];
        for (size_t k = j; k < e; k++) s[idx[k]] = mx;
    }
}

/* y_col = Q(x_col / s) · s, one token. */
static void smooth_token(const qh_quant_spec *q, const float *x, float *y, size_t dim,
                         const float *s)
{
    for (size_t i = 0; i < dim; i++) y[i] = x[i] / s[i];
    qh_fake_quant(q, y, y, dim, 1);
    for (size_t i = 0; i < dim; i++) y[i] *= s[i];
}

void qh_runtime_smooth_quant(const qh_act_quant *aq, const float *x, float *y, size_t dim,
                             size_t T, float *s_ws, size_t *idx)
{
    qh_quant_spec q = aq->act;
    q.per_tensor = 0;
    size_t g = aq->smooth_group > 0 ? (size_t)aq->smooth_group : 0;
    for (size_t i = 0; i < dim; i++) s_ws[i] = QH_SMOOTH_MIN_SCALE;
    if (!aq->smooth_causal) {
        for (size_t t = 0; t < T; t++)
            for (size_t i = 0; i < dim; i++) {
                float a = fabsf(x[t * dim + i]);
                s_ws[i] = a > s_ws[i] ? a : s_ws[i];
            }
        qh_smooth_group_max(s_ws, dim, g, idx);
        for (size_t t = 0; t < T; t++) smooth_token(&q, x + t * dim, y + t * dim, dim, s_ws);
        return;
    }
    /* causal: token t uses the running max over tokens 0..t (kept in s_ws); with
     * groups, that token's grouped scales go in its output column first */
    for (size_t t = 0; t < T; t++) {
        const float *xc = x + t * dim;
        float *yc = y + t * dim;
        for (size_t i = 0; i < dim; i++) {
            float a = fabsf(xc[i]);
            s_ws[i] = a > s_ws[i] ? a : s_ws[i];
        }
        if (!g) {
            smooth_token(&q, xc, yc, dim, s_ws);
            continue;
        }
        memcpy(yc, s_ws, dim * sizeof(float));
        qh_smooth_group_max(yc, dim, g, idx);
        float lo = 0.0f, hi = 0.0f;
        for (size_t i = 0; i < dim; i++) {
            float v = xc[i] / yc[i];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        float scale, zero;
        int ne = grid_of(&q, lo, hi, &scale, &zero);
        for (size_t i = 0; i < dim; i++) {
            float v = xc[i] / yc[i], out;
            quant_run(&q, &v, &out, 1, scale, zero, ne);
            yc[i] = out * yc[i];
        }
    }
}

int qh_act_quant_check(const qh_act_quant *aq, const size_t *in_dims, size_t n_in_dims,
                       size_t head_dim, const char *who)
{
    char w[160];
    for (size_t i = 0; i < n_in_dims; i++) {
        snprintf(w, sizeof w, "%s: activations (input of %zu channels)", who, in_dims[i]);
        QH_TRY(qh_quant_spec_check(&aq->act, in_dims[i], w));
    }
    snprintf(w, sizeof w, "%s: kv (head_dim %zu)", who, head_dim);
    QH_TRY(qh_quant_spec_check(&aq->kv, head_dim, w));
    if (aq->kv.per_tensor)
        QH_ERROR(QH_ECONFIG, "%s: kv: per-tensor ranges are not offered (per token and head)", who);
    if (aq->smooth) {
        if (!qh_quant_spec_on(&aq->act))
            QH_ERROR(QH_ECONFIG, "%s: Runtime Smooth needs activation bits below 16", who);
        if (aq->act.per_tensor || aq->act.group)
            QH_ERROR(QH_ECONFIG, "%s: Runtime Smooth quantizes per token: per_tensor and group "
                     "must be off", who);
        if (aq->smooth_group < 0)
            QH_ERROR(QH_ECONFIG, "%s: smooth group %d < 0", who, aq->smooth_group);
    } else if (aq->smooth_group || aq->smooth_causal) {
        QH_ERROR(QH_ECONFIG, "%s: smooth group / causal given without Runtime Smooth", who);
    }
    return QH_OK;
}

int qh_act_quant_label(const qh_act_quant *aq, char *buf, size_t cap)
{
    char a[16] = "", k[16] = "";
    if (qh_quant_spec_on(&aq->act)) snprintf(a, sizeof a, "A%d", aq->act.bits);
    if (qh_quant_spec_on(&aq->kv)) snprintf(k, sizeof k, "KV%d", aq->kv.bits);
    int n = snprintf(buf, cap, "%s%s", a, k);
    if (n < 0 || (size_t)n >= cap) QH_ERROR(QH_EINVAL, "activation label: buffer too small");
    return QH_OK;
}
