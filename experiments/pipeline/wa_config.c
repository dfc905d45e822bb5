/* wa_config.c -- "activations" and "kv" configuration keys (see wa_config.h). */
#include "pipeline/wa_config.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define WA_ERR(src, path, key, ...)                                                    \
    do { char msg_[256]; snprintf(msg_, sizeof msg_, __VA_ARGS__);                     \
         return qh_error(QH_ECONFIG, __FILE__, __LINE__, __func__, "config %s: %s.%s: %s", \
                         (src), (path), (key), msg_); } while (0)

qh_act_quant qh_wa_default(void)
{
    return (qh_act_quant){ .act = qh_quant_spec_off(), .kv = qh_quant_spec_off() };
}

int qh_wa_active(const qh_act_quant *aq)
{
    return qh_quant_spec_on(&aq->act) || qh_quant_spec_on(&aq->kv);
}

static int check_keys(const cJSON *o, const char *const *keys, const char *src, const char *path)
{
    for (const cJSON *it = o->child; it; it = it->next) {
        int ok = 0;
        for (const char *const *k = keys; *k; k++) ok |= !strcmp(it->string, *k);
        if (!ok) {
            char list[256] = "";
            for (const char *const *k = keys; *k; k++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         k == keys ? "" : ", ", *k);
            WA_ERR(src, path, it->string, "unknown key (expected one of: %s)", list);
        }
    }
    return QH_OK;
}

static int get_int(const cJSON *o, const char *key, int lo, int hi, int *out, const char *src,
                   const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return QH_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        WA_ERR(src, path, key, "expected an integer in [%d, %d]", lo, hi);
    *out = (int)v->valuedouble;
    return QH_OK;
}

static int get_bool(const cJSON *o, const char *key, int *out, const char *src, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return QH_OK;
    if (!cJSON_IsBool(v)) WA_ERR(src, path, key, "expected true or false");
    *out = cJSON_IsTrue(v);
    return QH_OK;
}

static int get_clip(const cJSON *o, float *out, const char *src, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "clip");
    if (!v) return QH_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0.0 && v->valuedouble <= 1.0))
        WA_ERR(src, path, "clip", "expected a clip ratio in (0, 1]");
    *out = (float)v->valuedouble;
    return QH_OK;
}

static int get_symmetric(const cJSON *o, qh_quant_spec *s, const char *src, const char *path)
{
    int sym = !s->asym;
    QH_TRY(get_bool(o, "symmetric", &sym, src, path));
    s->asym = !sym;
    return QH_OK;
}

int qh_wa_parse(const cJSON *act, const cJSON *kv, qh_act_quant *aq, const char *src,
                const char *path)
{
    char sub[192];
    if (act) {
        static const char *const keys[] = { "bits", "granularity", "symmetric", "group", "clip",
                                            "smooth", "smooth_group", "causal", NULL };
        snprintf(sub, sizeof sub, "%s.activations", path);
        if (!cJSON_IsObject(act)) WA_ERR(src, path, "activations", "expected an object");
        QH_TRY(check_keys(act, keys, src, sub));
        qh_quant_spec *s = &aq->act;
        QH_TRY(get_int(act, "bits", 2, 16, &s->bits, src, sub));
        QH_TRY(get_symmetric(act, s, src, sub));
        QH_TRY(get_int(act, "group", 0, 1 << 20, &s->group, src, sub));
        QH_TRY(get_clip(act, &s->clip, src, sub));
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(act, "granularity");
        if (g) {
            if (!cJSON_IsString(g) || (strcmp(g->valuestring, "token") && strcmp(g->valuestring, "tensor")))
                WA_ERR(src, sub, "granularity", "expected \"token\" or \"tensor\"");
            s->per_tensor = !strcmp(g->valuestring, "tensor");
        }
        const cJSON *sm = cJSON_GetObjectItemCaseSensitive(act, "smooth");
        if (sm) {
            if (!cJSON_IsString(sm) || (strcmp(sm->valuestring, "none") && strcmp(sm->valuestring, "runtime")))
                WA_ERR(src, sub, "smooth", "expected \"none\" or \"runtime\"");
            aq->smooth = !strcmp(sm->valuestring, "runtime");
        }
        QH_TRY(get_int(act, "smooth_group", 0, 1 << 20, &aq->smooth_group, src, sub));
        QH_TRY(get_bool(act, "causal", &aq->smooth_causal, src, sub));
        if (s->group && s->per_tensor)
            WA_ERR(src, sub, "group", "channel groups need \"granularity\": \"token\"");
        if (aq->smooth && (s->per_tensor || s->group || s->bits == 16))
            WA_ERR(src, sub, "smooth", "Runtime Smooth quantizes per token without groups, below 16 bits");
        if (!aq->smooth && (aq->smooth_group || aq->smooth_causal))
            WA_ERR(src, sub, "smooth", "\"smooth_group\" and \"causal\" need \"smooth\": \"runtime\"");
    }
    if (kv) {
        static const char *const keys[] = { "bits", "symmetric", "group", "clip", NULL };
        snprintf(sub, sizeof sub, "%s.kv", path);
        if (!cJSON_IsObject(kv)) WA_ERR(src, path, "kv", "expected an object");
        QH_TRY(check_keys(kv, keys, src, sub));
        qh_quant_spec *s = &aq->kv;
        QH_TRY(get_int(kv, "bits", 2, 16, &s->bits, src, sub));
        QH_TRY(get_symmetric(kv, s, src, sub));
        QH_TRY(get_int(kv, "group", 0, 1 << 20, &s->group, src, sub));
        QH_TRY(get_clip(kv, &s->clip, src, sub));
    }
    return QH_OK;
}

int qh_wa_label_suffix(const qh_act_quant *aq, char *buf, size_t cap)
{
    char sm[32] = "", bits[32];
    if (!qh_wa_active(aq)) {
        if (cap) buf[0] = '\0';
        return cap ? QH_OK : QH_EINVAL;
    }
    if (aq->smooth)
        snprintf(sm, sizeof sm, "+rs%.0d%s", aq->smooth_group, aq->smooth_causal ? "c" : "");
    QH_TRY(qh_act_quant_label(aq, bits, sizeof bits));
    int n = snprintf(buf, cap, "%s-%s", sm, bits);
    if (n < 0 || (size_t)n >= cap) QH_ERROR(QH_EINVAL, "activation label suffix: buffer too small");
    return QH_OK;
}

int qh_wa_label_append(char *buf, size_t cap, const qh_act_quant *aq)
{
    char suf[64];
    QH_TRY(qh_wa_label_suffix(aq, suf, sizeof suf));
    size_t n = strlen(buf);
    if (n + strlen(suf) >= cap) QH_ERROR(QH_EINVAL, "label %s%s: too long", buf, suf);
    memcpy(buf + n, suf, strlen(suf) + 1);
    return QH_OK;
}

static void in_dims(const qh_model_config *mc, size_t d[3])
{
    d[0] = (size_t)mc->hidden;
    d[1] = (size_t)mc->n_heads * (size_t)mc->head_dim;
    d[2] = (size_t)mc->ffn_dim;
}

int qh_wa_validate(const qh_config *cfg, size_t model, const qh_model_config *mc)
{
    size_t d[3];
    in_dims(mc, d);
    for (size_t i = 0; i < cfg->n_methods; i++) {
        if (!qh_wa_active(&cfg->methods[i].wa)) continue;
        char who[256];
        snprintf(who, sizeof who, "methods[%zu] (%s) on models[%zu] (%s)", i,
                 cfg->methods[i].label, model, cfg->models[model].label);
        QH_TRY(qh_act_quant_check(&cfg->methods[i].wa, d, 3, (size_t)mc->head_dim, who));
    }
    return QH_OK;
}

int qh_wa_attach(qh_model *m, const qh_act_quant *aq, const char *who)
{
    m->act_quant = NULL;
    if (!qh_wa_active(aq)) return QH_OK;
    size_t d[3];
    in_dims(&m->cfg, d);
    QH_TRY(qh_act_quant_check(aq, d, 3, (size_t)m->cfg.head_dim, who));
    m->act_quant = aq;
    return QH_OK;
}

void qh_wa_protocol(const qh_act_quant *aq, void (*put)(const char *key, const char *value,
                    void *user), void *user)
{
    if (!qh_wa_active(aq)) return;
    char v[64];
    const qh_quant_spec *s = &aq->act;
    snprintf(v, sizeof v, "%d", s->bits); put("activations.bits", v, user);
    put("activations.granularity", s->per_tensor ? "tensor" : "token", user);
    put("activations.symmetric", s->asym ? "false" : "true", user);
    snprintf(v, sizeof v, "%d", s->group); put("activations.group", v, user);
    snprintf(v, sizeof v, "%.9g", (double)s->clip); put("activations.clip", v, user);
    put("activations.smooth", aq->smooth ? "runtime" : "none", user);
    snprintf(v, sizeof v, "%d", aq->smooth_group); put("activations.smooth_group", v, user);
    put("activations.causal", aq->smooth_causal ? "true" : "false", user);
    s = &aq->kv;
    snprintf(v, sizeof v, "%d", s->bits); put("kv.bits", v, user);
    put("kv.symmetric", s->asym ? "false" : "true", user);
    snprintf(v, sizeof v, "%d", s->group); put("kv.group", v, user);
    snprintf(v, sizeof v, "%.9g", (double)s->clip); put("kv.clip", v, user);
}

int qh_wa_parse_transform(const cJSON *obj, qh_model_transform *tf, const char *src,
                          const char *path)
{
    *tf = (qh_model_transform){ 0 };
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(obj, "rotate");
    if (r) {
        if (!cJSON_IsString(r) || (strcmp(r->valuestring, "none") && strcmp(r->valuestring, "hadamard")))
            WA_ERR(src, path, "rotate", "expected \"none\" or \"hadamard\"");
        tf->rotate = !strcmp(r->valuestring, "hadamard");
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, "smooth");
    if (s) {
        static const char *const keys[] = { "alpha", NULL };
        char sub[192];
        snprintf(sub, sizeof sub, "%s.smooth", path);
        if (!cJSON_IsObject(s)) WA_ERR(src, path, "smooth", "expected an object {\"alpha\": 0.5}");
        QH_TRY(check_keys(s, keys, src, sub));
        tf->smooth_alpha = 0.5;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(s, "alpha");
        if (a) {
            if (!cJSON_IsNumber(a) || !(a->valuedouble > 0.0 && a->valuedouble <= 1.0))
                WA_ERR(src, sub, "alpha", "expected a migration strength in (0, 1]");
            tf->smooth_alpha = a->valuedouble;
        }
    }
    return QH_OK;
}

int qh_wa_transform_label_append(char *buf, size_t cap, const qh_model_transform *tf)
{
    char suf[32] = "";
    if (tf->smooth_alpha > 0) {
        if (tf->smooth_alpha == 0.5) snprintf(suf, sizeof suf, "+sq");
        else snprintf(suf, sizeof suf, "+sq%02.0f", tf->smooth_alpha * 100.0);
    }
    if (tf->rotate) snprintf(suf + strlen(suf), sizeof suf - strlen(suf), "+rot");
    size_t n = strlen(buf);
    if (n + strlen(suf) >= cap) QH_ERROR(QH_EINVAL, "label %s%s: too long", buf, suf);
    memcpy(buf + n, suf, strlen(suf) + 1);
    return QH_OK;
}

void qh_wa_transform_protocol(const qh_model_transform *tf, void (*put)(const char *key,
                              const char *value, void *user), void *user)
{
    char v[64];
    if (tf->rotate) put("rotate", "hadamard", user);
    if (tf->smooth_alpha > 0) {
        snprintf(v, sizeof v, "%.9g", tf->smooth_alpha);
        put("smooth.alpha", v, user);
    }
}
