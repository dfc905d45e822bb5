/* rotate.c -- norm fusion, residual rotation and online Hadamards (see rotate.h). */
#include "model/rotate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qh_hadamard.h"
#include "qh_rng.h"

/* ---- the float online transform ------------------------------------------ */

void qh_online_hadamard(float *x, size_t n, size_t T, const float *base, size_t K,
                        const float *signs)
{
    size_t p = n / K;
    float tmp[140];
    float scale = (float)(1.0 / sqrt((double)n));
    QH_ASSERT(K >= 1 && K <= 140 && p * K == n);
    for (size_t t = 0; t < T; t++) {
        float *xc = x + t * n;
        if (signs)
            for (size_t i = 0; i < n; i++) xc[i] *= signs[i];
        /* Sylvester part on each of the K runs of p (index i = i1*p + i2) */
        for (size_t i1 = 0; i1 < K; i1++) {
            float *r = xc + i1 * p;
            for (size_t h = 1; h < p; h <<= 1)
                for (size_t i = 0; i < p; i += 2 * h)
                    for (size_t j = i; j < i + h; j++) {
                        float a = r[j], b = r[j + h];
                        r[j] = a + b;
                        r[j + h] = a - b;
                    }
        }
        /* base part: X (p x K) <- X H_K^T */
        if (K > 1)
            for (size_t i2 = 0; i2 < p; i2++) {
                for (size_t k = 0; k < K; k++) tmp[k] = xc[k * p + i2];
                for (size_t i1 = 0; i1 < K; i1++) {
                    float s = 0.0f;
                    for (size_t k = 0; k < K; k++) s += base[i1 + k * K] * tmp[k];
                    xc[i1 * p + i2] = s;
                }
            }
        for (size_t i = 0; i < n; i++) xc[i] *= scale;
    }
}

/* ---- transforms on float storage through double ---------------------------- */

/* T applied to vectors of length h: Q^T = H^T diag(signs) when signs is
 * given, else H (qh_hadamard_apply, transpose 0). */
typedef struct {
    size_t h;
    const double *signs;             /* (h) or NULL */
    int transpose;                   /* H^T (1) or H (0) after the signs */
} xform;

static int xform_apply(const xform *t, double *X, size_t ncols)
{
    if (t->signs)
        for (size_t c = 0; c < ncols; c++)
            for (size_t i = 0; i < t->h; i++) X[i + c * t->h] *= t->signs[i];
    return qh_hadamard_apply(t->h, t->transpose, X, ncols, t->h);
}

/* Each of rows rows (row-major, ld floats apart) has its segment
 * [col0, col0 + h) replaced by T of it: W <- W T^T on those columns. */
static int right_apply(const xform *t, float *W, size_t rows, size_t ld, size_t col0)
{
    size_t h = t->h;
    double *X = malloc(h * (rows ? rows : 1) * sizeof *X);
    if (!X) QH_ERROR(QH_ENOMEM, "rotation: out of memory");
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < h; i++) X[i + r * h] = W[r * ld + col0 + i];
    int st = xform_apply(t, X, rows);
    if (st == QH_OK)
        for (size_t r = 0; r < rows; r++)
            for (size_t i = 0; i < h; i++) W[r * ld + col0 + i] = (float)X[i + r * h];
    free(X);
    return st;
}

/* Rows [row0, row0 + h) of W (row-major, cols columns): every column of that
 * block replaced by T of it: W <- T W on those rows. */
static int left_apply(const xform *t, float *W, size_t cols, size_t row0)
{
    size_t h = t->h;
    double *X = malloc(h * cols * sizeof *X);
    if (!X) QH_ERROR(QH_ENOMEM, "rotation: out of memory");
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < cols; j++) X[i + j * h] = W[(row0 + i) * cols + j];
    int st = xform_apply(t, X, cols);
    if (st == QH_OK)
        for (size_t i = 0; i < h; i++)
            for (size_t j = 0; j < cols; j++) W[(row0 + i) * cols + j] = (float)X[i + j * h];
    free(X);
    return st;
}

/* ---- checks ------------------------------------------------------------------ */

static int check_size(size_t n, const char *what, const char *who)
{
    if (!qh_hadamard_base_for(n))
        QH_ERROR(QH_ECONFIG, "%s: rotation: %s %zu has no Hadamard matrix (sizes K*2^j, K in "
                 "1, 12, 20, 60, 108, 140, are supported)", who, what, n);
    return QH_OK;
}

static int check_fusable(const qh_model *m, const char *who)
{
    const qh_model_features *f = &m->cfg.features;
    if (m->rotated)
        QH_ERROR(QH_ECONFIG, "%s: rotation: the model is already rotated", who);
    if (!f->pre_ln)
        QH_ERROR(QH_EUNIMPL, "%s: rotation: post-LN blocks (do_layer_norm_before = false) are "
                 "not rotation-invariant", who);
    if (f->parallel_residual)
        QH_ERROR(QH_EUNIMPL, "%s: rotation: parallel residual blocks are not implemented", who);
    if (m->project_in.W || m->project_out.W)
        QH_ERROR(QH_EUNIMPL, "%s: rotation: project_in/project_out (word_embed_proj_dim != "
                 "hidden_size) are not implemented", who);
    if (f->norm == QH_NORM_LAYER) {
        static const int firsts[] = { QH_LIN_Q, QH_LIN_K, QH_LIN_V, QH_LIN_GATE, QH_LIN_UP };
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (size_t k = 0; k < sizeof firsts / sizeof firsts[0]; k++) {
                const qh_linear *L = &m->blocks[l].lin[firsts[k]];
                const qh_norm *n = firsts[k] <= QH_LIN_V ? &m->blocks[l].attn_norm
                                                          : &m->blocks[l].mlp_norm;
                if (L->W && n->b && !L->b)
                    QH_ERROR(QH_EUNIMPL, "%s: rotation: %s has no bias to take the LayerNorm "
                             "shift", who, L->name);
            }
    }
    return QH_OK;
}

int qh_rotate_check(const qh_model *m, const char *who)
{
    QH_TRY(check_fusable(m, who));
    QH_TRY(check_size((size_t)m->cfg.hidden, "hidden_size", who));
    QH_TRY(check_size((size_t)m->cfg.head_dim, "head_dim", who));
    return check_size((size_t)m->cfg.ffn_dim, "the MLP width (ffn_dim / intermediate_size)", who);
}

/* ---- step 1: mean-free residual stream (LayerNorm models) --------------------- */

static void center_rows(float *X, size_t rows, size_t d)
{
    for (size_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (size_t i = 0; i < d; i++) s += X[r * d + i];
        float mu = (float)(s / (double)d);
        for (size_t i = 0; i < d; i++) X[r * d + i] -= mu;
    }
}

/* W <- (I - 11^T/d) W, b likewise, for a linear writing d outputs. */
static void center_outputs(qh_linear *L)
{
    size_t out = (size_t)L->out, in = (size_t)L->in;
    for (size_t j = 0; j < in; j++) {
        double s = 0.0;
        for (size_t i = 0; i < out; i++) s += L->W[i * in + j];
        float mu = (float)(s / (double)out);
        for (size_t i = 0; i < out; i++) L->W[i * in + j] -= mu;
    }
    if (L->b) center_rows(L->b, 1, out);
}

/* ---- step 2: norm scales into the following linears ------------------------------- */

/* W <- W diag(scale), b <- b + W beta (beta may be NULL), with W's rows of
 * length d (the first d columns). */
static void fuse_into(float *W, float *b, size_t rows, size_t d, const float *scale,
                      const float *beta)
{
    for (size_t r = 0; r < rows; r++) {
        float *w = W + r * d;
        if (beta) {
            double s = 0.0;
            for (size_t j = 0; j < d; j++) s += (double)w[j] * beta[j];
            b[r] += (float)s;
        }
        for (size_t j = 0; j < d; j++) w[j] *= scale[j];
    }
}

/* Makes lm_head the model's own copy (and room for a logits bias). */
static int untie_head(qh_model *m, int with_bias)
{
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.hidden;
    int tied = m->lm_head == m->embed_tokens;
    if (!tied && !with_bias) return QH_OK;
    float *mem = malloc(((tied ? V * d : 0) + (with_bias ? V : 0)) * sizeof *mem);
    if (!mem) QH_ERROR(QH_ENOMEM, "rotation: out of memory for an untied head");
    float *p = mem;
    if (tied) {
        memcpy(p, m->embed_tokens, V * d * sizeof *p);
        m->lm_head = p;
        p += V * d;
        m->cfg.features.tied_head = 0;
    }
    if (with_bias) {
        memset(p, 0, V * sizeof *p);
        m->head_bias = p;
    }
    free(m->rot_mem[0]);
    m->rot_mem[0] = mem;
    return QH_OK;
}

static void unit_norm(const qh_model *m, qh_norm *n, size_t d)
{
    float one = m->cfg.features.norm_plus_one ? 0.0f : 1.0f;
    for (size_t i = 0; i < d; i++) n->w[i] = one;
    if (n->b) memset(n->b, 0, d * sizeof *n->b);
}

int qh_fuse_norms(qh_model *m, const char *who)
{
    QH_TRY(check_fusable(m, who));
    qh_model_config *c = &m->cfg;
    size_t d = (size_t)c->hidden;
    int layer_norm = c->features.norm == QH_NORM_LAYER;
    QH_TRY(untie_head(m, layer_norm && m->final_norm.w && m->final_norm.b));
    float *scale = malloc(d * sizeof *scale);
    if (!scale) QH_ERROR(QH_ENOMEM, "%s: rotation: out of memory", who);
    if (layer_norm) {
        center_rows(m->embed_tokens, (size_t)c->vocab_size, d);
        if (m->embed_pos) center_rows(m->embed_pos, (size_t)(c->max_pos + c->features.pos_offset), d);
        for (int l = 0; l < c->n_layers; l++) {
            center_outputs(&m->blocks[l].lin[QH_LIN_O]);
            center_outputs(&m->blocks[l].lin[QH_LIN_DOWN]);
        }
    }
    float off = c->features.norm_plus_one ? 1.0f : 0.0f;
    for (int l = 0; l < c->n_layers; l++) {
        qh_block *B = &m->blocks[l];
        for (int pass = 0; pass < 2; pass++) {
            qh_norm *n = pass ? &B->mlp_norm : &B->attn_norm;
            for (size_t i = 0; i < d; i++) scale[i] = off + n->w[i];
            for (int k = pass ? QH_LIN_GATE : QH_LIN_Q; k <= (pass ? QH_LIN_UP : QH_LIN_V); k++) {
                qh_linear *L = &B->lin[k];
                if (L->W) fuse_into(L->W, L->b, (size_t)L->out, d, scale, layer_norm ? n->b : NULL);
            }
            unit_norm(m, n, d);
        }
    }
    if (m->final_norm.w) {
        for (size_t i = 0; i < d; i++) scale[i] = off + m->final_norm.w[i];
        fuse_into(m->lm_head, m->head_bias, (size_t)c->vocab_size, d, scale,
                  layer_norm ? m->final_norm.b : NULL);
        unit_norm(m, &m->final_norm, d);
    }
    free(scale);
    c->features.norm = QH_NORM_RMS;             /* LayerNorm on a mean-free stream */
    return QH_OK;
}

/* ---- steps 3-5 ------------------------------------------------------------------------ */

int qh_rotate_model(qh_model *m, uint64_t seed, const char *who)
{
    QH_TRY(qh_rotate_check(m, who));
    QH_TRY(qh_fuse_norms(m, who));
    qh_model_config *c = &m->cfg;
    size_t d = (size_t)c->hidden, hd = (size_t)c->head_dim, V = (size_t)c->vocab_size;
    size_t ffn = (size_t)c->ffn_dim;
    double *signs = malloc((d + ffn) * sizeof *signs), *fsigns = signs + d;
    float *had_signs = malloc(ffn * sizeof *had_signs);
    if (!signs || !had_signs) {
        free(signs);
        free(had_signs);
        QH_ERROR(QH_ENOMEM, "%s: rotation: out of memory", who);
    }
    qh_rng r = qh_rng_stream(seed, 0, QH_RNG_ROTATION);
    for (size_t i = 0; i < d; i++) signs[i] = qh_rng_sign(&r);
    r = qh_rng_stream(seed, 1, QH_RNG_ROTATION);
    for (size_t i = 0; i < ffn; i++) had_signs[i] = (float)(fsigns[i] = qh_rng_sign(&r));
    free(m->rot_mem[1]);
    m->rot_mem[1] = had_signs;
    xform Qt = { d, signs, 1 }, Hh = { hd, NULL, 0 }, Hf = { ffn, fsigns, 0 };
    int st = right_apply(&Qt, m->embed_tokens, V, d, 0);
    if (st == QH_OK && m->embed_pos)
        st = right_apply(&Qt, m->embed_pos, (size_t)(c->max_pos + c->features.pos_offset), d, 0);
    if (st == QH_OK) st = right_apply(&Qt, m->lm_head, V, d, 0);
    for (int l = 0; st == QH_OK && l < c->n_layers; l++) {
        qh_block *B = &m->blocks[l];
        for (int k = 0; st == QH_OK && k < QH_LIN_MAX; k++) {
            qh_linear *L = &B->lin[k];
            if (!L->W) continue;
            if (k == QH_LIN_O || k == QH_LIN_DOWN) {
                st = left_apply(&Qt, L->W, (size_t)L->in, 0);
                if (st == QH_OK && L->b) st = left_apply(&Qt, L->b, 1, 0);
            } else {
                st = right_apply(&Qt, L->W, (size_t)L->out, (size_t)L->in, 0);
            }
        }
        /* per head: v_proj rows H_hd W, o_proj columns W H_hd^T */
        qh_linear *Lv = &B->lin[QH_LIN_V], *Lo = &B->lin[QH_LIN_O];
        for (int h = 0; st == QH_OK && h < c->n_kv_heads; h++) {
            st = left_apply(&Hh, Lv->W, (size_t)Lv->in, (size_t)h * hd);
            if (st == QH_OK && Lv->b) st = right_apply(&Hh, Lv->b, 1, (size_t)Lv->out, (size_t)h * hd);
        }
        for (int h = 0; st == QH_OK && h < c->n_heads; h++)
            st = right_apply(&Hh, Lo->W, (size_t)Lo->out, (size_t)Lo->in, (size_t)h * hd);
        /* online before down: W <- W (H_f D_f)^T */
        qh_linear *Ld = &B->lin[QH_LIN_DOWN];
        if (st == QH_OK) st = right_apply(&Hf, Ld->W, (size_t)Ld->out, (size_t)Ld->in, 0);
    }
    free(signs);
    if (st != QH_OK) return st;
    m->online_had_down = 1;
    m->had_down_signs = had_signs;
    m->rotated = 1;
    return QH_OK;
}

/* ---- SmoothQuant ----------------------------------------------------------------------- */

/* s (n) from the activation maxima and the largest |W_ij| over the linears
 * Ls (their first n columns). */
static void smooth_scales(double *s, const double *xmax, qh_linear *const *Ls, size_t nL,
                          size_t n, double alpha)
{
    for (size_t j = 0; j < n; j++) {
        double wmax = 0.0;
        for (size_t k = 0; k < nL; k++)
            for (size_t i = 0; i < (size_t)Ls[k]->out; i++)
                wmax = fmax(wmax, fabs(Ls[k]->W[i * (size_t)Ls[k]->in + j]));
        double v = xmax[j] > 0 && wmax > 0 ? pow(xmax[j], alpha) / pow(wmax, 1.0 - alpha) : 1.0;
        s[j] = v < 1e-5 ? 1e-5 : v;
    }
}

static void scale_columns(qh_linear *L, const double *s)
{
    for (size_t i = 0; i < (size_t)L->out; i++)
        for (size_t j = 0; j < (size_t)L->in; j++) L->W[i * (size_t)L->in + j] *= (float)s[j];
}

int qh_smooth_model(qh_model *m, double alpha, const double *const *absmax, const char *who)
{
    const qh_model_features *f = &m->cfg.features;
    if (!(alpha > 0.0 && alpha <= 1.0))
        QH_ERROR(QH_ECONFIG, "%s: smooth.alpha %g outside (0, 1]", who, alpha);
    if (f->norm_plus_one)
        QH_ERROR(QH_EUNIMPL, "%s: SmoothQuant into 1 + w norms (Gemma) is not implemented", who);
    if (!f->pre_ln)
        QH_ERROR(QH_EUNIMPL, "%s: SmoothQuant of post-LN blocks is not implemented", who);
    size_t d = (size_t)m->cfg.hidden, ffn = (size_t)m->cfg.ffn_dim;
    double *s = malloc((d > ffn ? d : ffn) * sizeof *s);
    if (!s) QH_ERROR(QH_ENOMEM, "%s: SmoothQuant: out of memory", who);
    int down_ok = f->gated_mlp || f->act == QH_ACT_RELU;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qh_block *B = &m->blocks[l];
        for (int g = 0; g < 2; g++) {
            qh_norm *n = g ? &B->mlp_norm : &B->attn_norm;
            qh_linear *Ls[3];
            size_t nL = 0;
            for (int k = g ? QH_LIN_GATE : QH_LIN_Q; k <= (g ? QH_LIN_UP : QH_LIN_V); k++)
                if (B->lin[k].W) Ls[nL++] = &B->lin[k];
            smooth_scales(s, absmax[l * QH_ABSMAX_GROUPS + g], Ls, nL, d, alpha);
            for (size_t j = 0; j < d; j++) {
                n->w[j] = (float)(n->w[j] / s[j]);
                if (n->b) n->b[j] = (float)(n->b[j] / s[j]);
            }
            for (size_t k = 0; k < nL; k++) scale_columns(Ls[k], s);
        }
        if (down_ok) {
            qh_linear *Ld = &B->lin[QH_LIN_DOWN], *Lu = &B->lin[QH_LIN_UP];
            smooth_scales(s, absmax[l * QH_ABSMAX_GROUPS + 2], &Ld, 1, ffn, alpha);
            for (size_t i = 0; i < ffn; i++) {
                for (size_t j = 0; j < (size_t)Lu->in; j++)
                    Lu->W[i * (size_t)Lu->in + j] = (float)(Lu->W[i * (size_t)Lu->in + j] / s[i]);
                if (Lu->b) Lu->b[i] = (float)(Lu->b[i] / s[i]);
            }
            scale_columns(Ld, s);
        }
    }
    free(s);
    return QH_OK;
}
