/* test_model_io.c -- safetensors reading/writing and Hugging Face model loading.
 *
 * References used here are independent of the code under test:
 *  - half and bfloat16 values are decoded with ldexp() from their fields
 *    (sign, exponent, mantissa), exhaustively over all 65536 patterns;
 *  - the vendored models' headers are parsed with cJSON in this file and raw
 *    bytes read with stdio, then compared with the loaded float32 tensors;
 *  - parameter counts come from the models README (3 significant digits) and
 *    from the closed-form count of the architecture;
 *  - generated tiny models carry values k/64 (exact in F16 and BF16) that
 *    identify each tensor, so a tensor routed to the wrong field is caught.
 * Every malformed-input case is generated under a fresh mkdtemp() folder and
 * must give the stated status with the file and tensor named in the message.
 */
#define _XOPEN_SOURCE 700
#include <cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/family.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/save_model.h"
#include "qh_test.h"
#include "model/safetensors.h"

static char tmp_root[512];

/* ---- independent decoders ----------------------------------------------------- */

static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double ref_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v;
    if (e == 255) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -133);
    else v = ldexp(128 + m, e - 134);
    return s ? -v : v;
}

static int same_value(double got, double want)
{
    if (isnan(want)) return isnan(got);
    return got == want && signbit(got) == signbit(want);
}

static void test_conversions(void)
{
    int bad16 = 0, badbf = 0, bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        bad16 += !same_value(qh_f16_to_f32((uint16_t)h), ref_f16((uint16_t)h));
        badbf += !same_value(qh_bf16_to_f32((uint16_t)h), ref_bf16((uint16_t)h));
        if (!isnan(ref_f16((uint16_t)h)))
            bad_rt += qh_f32_to_f16(qh_f16_to_f32((uint16_t)h)) != h;
        if (!isnan(ref_bf16((uint16_t)h)))
            bad_rt += qh_f32_to_bf16(qh_bf16_to_f32((uint16_t)h)) != h;
    }
    QH_CHECK(bad16 == 0, "F16 decode: %d of 65536 patterns differ from the ldexp reference", bad16);
    QH_CHECK(badbf == 0, "BF16 decode: %d of 65536 patterns differ from the ldexp reference", badbf);
    QH_CHECK(bad_rt == 0, "encode(decode(h)) != h for %d finite patterns", bad_rt);
    QH_CHECK(qh_f16_to_f32(0x3C00) == 1.0f && qh_f16_to_f32(0xC000) == -2.0f, "F16 1.0, -2.0");
    QH_CHECK(qh_f16_to_f32(0x7BFF) == 65504.0f, "F16 max normal");
    QH_CHECK(qh_f16_to_f32(0x0001) == (float)ldexp(1, -24), "F16 smallest subnormal");
    QH_CHECK(qh_f16_to_f32(0x03FF) == (float)ldexp(1023, -24), "F16 largest subnormal");
    QH_CHECK(isinf(qh_f16_to_f32(0xFC00)) && qh_f16_to_f32(0xFC00) < 0, "F16 -Inf");
    QH_CHECK(isnan(qh_f16_to_f32(0x7E00)), "F16 NaN");
    QH_CHECK(signbit(qh_f16_to_f32(0x8000)) && qh_f16_to_f32(0x8000) == 0, "F16 -0");
    QH_CHECK(qh_bf16_to_f32(0x3F80) == 1.0f && qh_bf16_to_f32(0xC0A0) == -5.0f, "BF16 1, -5");
    /* round to nearest even at ties, overflow to Inf, underflow to zero */
    QH_CHECK(qh_f32_to_f16(1.0f + (float)ldexp(1, -11)) == 0x3C00, "F16 tie to even (down)");
    QH_CHECK(qh_f32_to_f16(1.0f + 3 * (float)ldexp(1, -11)) == 0x3C02, "F16 tie to even (up)");
    QH_CHECK(qh_f32_to_f16(65519.0f) == 0x7BFF && qh_f32_to_f16(65520.0f) == 0x7C00, "F16 overflow");
    QH_CHECK(qh_f32_to_f16((float)ldexp(1, -25)) == 0x0000, "F16 half of min subnormal -> 0");
    QH_CHECK(qh_f32_to_f16((float)ldexp(3, -25)) == 0x0002, "F16 subnormal tie to even");
    QH_CHECK(qh_f32_to_f16((float)ldexp(1.25, -25)) == 0x0001, "F16 above half rounds up");
    QH_CHECK(qh_f32_to_f16(-(float)ldexp(1023.5, -24)) == 0x8400, "F16 subnormal carries to normal");
    QH_CHECK(qh_f32_to_bf16(1.0f + (float)ldexp(1, -8)) == 0x3F80, "BF16 tie to even (down)");
    QH_CHECK(qh_f32_to_bf16(1.0f + 3 * (float)ldexp(1, -8)) == 0x3F82, "BF16 tie to even (up)");
    QH_CHECK((qh_f32_to_f16(NAN) & 0x7FFF) > 0x7C00, "F16 encode keeps NaN");
}

/* ---- files -------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void make_case_dir(char *dir, size_t size, const char *name)
{
    snprintf(dir, size, "%s/%s", tmp_root, name);
    QH_ASSERT(mkdir(dir, 0700) == 0);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    QH_ASSERT(f);
    QH_ASSERT(fwrite(p, 1, n, f) == n);
    QH_ASSERT(fclose(f) == 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n + 1);
    QH_ASSERT(p && fread(p, 1, *n, f) == *n);
    fclose(f);
    return p;
}

static void write_json(const char *path, const cJSON *j)
{
    char *s = cJSON_Print(j);
    write_bytes(path, s, strlen(s));
    free(s);
}

/* A safetensors file with an explicit header length field and header text. */
static void write_st_raw(const char *path, uint64_t hlen_field, const char *header,
                         const void *data, size_t data_len)
{
    size_t hl = strlen(header), n = 8 + hl + data_len;
    unsigned char *p = malloc(n);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(p + 8, header, hl);
    if (data_len) memcpy(p + 8 + hl, data, data_len);
    write_bytes(path, p, n);
    free(p);
}

/* Rewrites a safetensors file's header after edit(root, arg), keeping the data. */
static void edit_header(const char *path, void (*edit)(cJSON *, const void *), const void *arg)
{
    size_t n;
    unsigned char *p = read_bytes(path, &n);
    QH_ASSERT(p && n >= 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | p[i];
    cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hl);
    QH_ASSERT(root);
    edit(root, arg);
    char *h = cJSON_PrintUnformatted(root);
    write_st_raw(path, strlen(h), h, p + 8 + hl, n - 8 - (size_t)hl);
    free(h);
    cJSON_Delete(root);
    free(p);
}

/* ---- tiny generated models ------------------------------------------------------- */

typedef struct {
    const char *model_type;          /* "opt", "llama", "qwen2" */
    int V, H, L, NH, NKV, F, P, E;   /* vocab, hidden, layers, heads, kv heads, ffn, max_pos, embed */
    int pre_ln, tied, bias, qkv_bias, write_head;
    const char *prefix;              /* "model." or "" */
    qh_st_dtype dtype;
    int HD;                          /* Llama head_dim written to config.json; 0: hidden/heads */
} tiny_spec;

#define MAX_T 64
typedef struct {
    size_t n;
    char name[MAX_T][128];
    qh_st_write_tensor t[MAX_T];
    float *data[MAX_T];
} tensor_list;

/* Value j of tensor i: a multiple of 1/64 in [-0.78, 0.78], exact in F16/BF16. */
static float tiny_value(size_t i, size_t j)
{
    return (float)((long)((i * 131 + j * 17) % 101) - 50) / 64.0f;
}

static void add_tensor(tensor_list *tl, const tiny_spec *s, const char *prefix, const char *name,
                       int d0, int d1)
{
    QH_ASSERT(tl->n < MAX_T);
    size_t i = tl->n++, numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    snprintf(tl->name[i], sizeof tl->name[i], "%s%s", prefix, name);
    tl->data[i] = malloc(numel * sizeof(float));
    for (size_t j = 0; j < numel; j++) tl->data[i][j] = tiny_value(i, j);
    tl->t[i] = (qh_st_write_tensor){ .name = tl->name[i], .dtype = s->dtype, .ndim = d1 ? 2 : 1,
                                     .shape = { d0, d1 }, .data = tl->data[i] };
}

static void tiny_opt_tensors(const tiny_spec *s, tensor_list *tl)
{
    const char *p = s->prefix;
    char n[128];
    add_tensor(tl, s, p, "decoder.embed_tokens.weight", s->V, s->E);
    add_tensor(tl, s, p, "decoder.embed_positions.weight", s->P + 2, s->H);
    if (s->E != s->H) {
        add_tensor(tl, s, p, "decoder.project_in.weight", s->H, s->E);
        add_tensor(tl, s, p, "decoder.project_out.weight", s->E, s->H);
    }
    if (s->pre_ln) {
        add_tensor(tl, s, p, "decoder.final_layer_norm.weight", s->H, 0);
        add_tensor(tl, s, p, "decoder.final_layer_norm.bias", s->H, 0);
    }
    static const char *const lin[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.out_proj", "fc1", "fc2" };
    for (int l = 0; l < s->L; l++) {
        static const char *const norms[] = { "self_attn_layer_norm", "final_layer_norm" };
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "decoder.layers.%d.%s.weight", l, norms[k]);
            add_tensor(tl, s, p, n, s->H, 0);
            snprintf(n, sizeof n, "decoder.layers.%d.%s.bias", l, norms[k]);
            add_tensor(tl, s, p, n, s->H, 0);
        }
        for (int k = 0; k < 6; k++) {
            int out = k == 4 ? s->F : s->H, in = k == 5 ? s->F : s->H;
            snprintf(n, sizeof n, "decoder.layers.%d.%s.weight", l, lin[k]);
            add_tensor(tl, s, p, n, out, in);
            if (!s->bias) continue;
            snprintf(n, sizeof n, "decoder.layers.%d.%s.bias", l, lin[k]);
            add_tensor(tl, s, p, n, out, 0);
        }
    }
    if (!s->tied || s->write_head) add_tensor(tl, s, "", "lm_head.weight", s->V, s->E);
}

static void tiny_llama_tensors(const tiny_spec *s, tensor_list *tl)
{
    const char *p = s->prefix;
    char n[128];
    int hd = s->HD ? s->HD : s->H / s->NH, q = s->NH * hd, kv = s->NKV * hd;
    add_tensor(tl, s, p, "embed_tokens.weight", s->V, s->H);
    add_tensor(tl, s, p, "norm.weight", s->H, 0);
    static const char *const lin[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj", "mlp.up_proj" };
    const int outs[] = { q, kv, kv, s->H, s->F, s->H, s->F }, ins[] = { s->H, s->H, s->H, q, s->H, s->F, s->H };
    for (int l = 0; l < s->L; l++) {
        snprintf(n, sizeof n, "layers.%d.input_layernorm.weight", l);
        add_tensor(tl, s, p, n, s->H, 0);
        snprintf(n, sizeof n, "layers.%d.post_attention_layernorm.weight", l);
        add_tensor(tl, s, p, n, s->H, 0);
        for (int k = 0; k < 7; k++) {
            snprintf(n, sizeof n, "layers.%d.%s.weight", l, lin[k]);
            add_tensor(tl, s, p, n, outs[k], ins[k]);
            if (s->qkv_bias && k < 3) {
                snprintf(n, sizeof n, "layers.%d.%s.bias", l, lin[k]);
                add_tensor(tl, s, p, n, outs[k], 0);
            }
        }
    }
    if (!s->tied || s->write_head) add_tensor(tl, s, "", "lm_head.weight", s->V, s->H);
}

static cJSON *tiny_config(const tiny_spec *s)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "model_type", s->model_type);
    cJSON_AddNumberToObject(c, "vocab_size", s->V);
    cJSON_AddNumberToObject(c, "hidden_size", s->H);
    cJSON_AddNumberToObject(c, "num_hidden_layers", s->L);
    cJSON_AddNumberToObject(c, "num_attention_heads", s->NH);
    cJSON_AddNumberToObject(c, "max_position_embeddings", s->P);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", s->tied);
    cJSON_AddNumberToObject(c, "bos_token_id", 0);
    cJSON_AddNullToObject(c, "pad_token_id");
    if (!strcmp(s->model_type, "opt")) {
        cJSON_AddNumberToObject(c, "ffn_dim", s->F);
        cJSON_AddNumberToObject(c, "word_embed_proj_dim", s->E);
        cJSON_AddBoolToObject(c, "do_layer_norm_before", s->pre_ln);
        cJSON_AddBoolToObject(c, "enable_bias", s->bias);
        cJSON_AddStringToObject(c, "activation_function", "relu");
    } else {
        cJSON_AddNumberToObject(c, "intermediate_size", s->F);
        cJSON_AddNumberToObject(c, "num_key_value_heads", s->NKV);
        cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
        cJSON_AddNumberToObject(c, "rope_theta", 500000.0);
        if (s->HD) cJSON_AddNumberToObject(c, "head_dim", s->HD);
        cJSON *eos = cJSON_AddArrayToObject(c, "eos_token_id");
        cJSON_AddItemToArray(eos, cJSON_CreateNumber(2));
        cJSON_AddItemToArray(eos, cJSON_CreateNumber(3));
    }
    return c;
}

static const tiny_spec tiny_opt = { "opt", 16, 8, 2, 2, 2, 16, 6, 8, 1, 1, 1, 0, 0, "model.", QH_ST_F32, 0 };
static const tiny_spec tiny_llama = { "llama", 16, 8, 1, 2, 1, 12, 6, 8, 1, 0, 0, 0, 0, "model.", QH_ST_BF16, 0 };

static void free_list(tensor_list *tl)
{
    for (size_t i = 0; i < tl->n; i++) free(tl->data[i]);
}

/* Writes config.json and model.safetensors for s into a new folder dir/name. */
static void write_tiny(const tiny_spec *s, const char *name, char *dir, size_t size, tensor_list *tl)
{
    make_case_dir(dir, size, name);
    memset(tl, 0, sizeof *tl);
    if (!strcmp(s->model_type, "opt")) tiny_opt_tensors(s, tl); else tiny_llama_tensors(s, tl);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    QH_ASSERT(qh_st_write(path, tl->t, tl->n) == QH_OK);
    cJSON *c = tiny_config(s);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_json(path, c);
    cJSON_Delete(c);
}

static const float *list_find(const tensor_list *tl, const char *name)
{
    for (size_t i = 0; i < tl->n; i++)
        if (!strcmp(tl->name[i], name)) return tl->data[i];
    return NULL;
}

/* Compares the first n values of the loaded pointer with the generated tensor. */
static int same_data(const float *got, const tensor_list *tl, const char *name, size_t n)
{
    const float *want = list_find(tl, name);
    if (!got || !want) return 0;
    return memcmp(got, want, n * sizeof(float)) == 0;
}

static void test_tiny_opt_variants(void)
{
    char dir[768], name[256];
    tensor_list tl;
    qh_model *m = NULL;

    /* pre-LN, tied, "model." prefix: check routing of every linear of block 1 */
    write_tiny(&tiny_opt, "opt_pre", dir, sizeof dir, &tl);
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "tiny OPT loads: %s", qh_last_error());
    if (st == QH_OK) {
        static const char *const lin[] = { "self_attn.q_proj", "self_attn.k_proj",
            "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2" };
        static const int kinds[] = { QH_LIN_Q, QH_LIN_K, QH_LIN_V, QH_LIN_O, QH_LIN_UP,
                                     QH_LIN_DOWN };
        int routed = 1;
        for (int k = 0; k < 6; k++) {
            const qh_linear *L = &m->blocks[1].lin[kinds[k]];
            snprintf(name, sizeof name, "model.decoder.layers.1.%s.weight", lin[k]);
            routed &= same_data(L->W, &tl, name, (size_t)L->out * L->in);
            snprintf(name, sizeof name, "model.decoder.layers.1.%s.bias", lin[k]);
            routed &= same_data(L->b, &tl, name, (size_t)L->out);
            snprintf(name, sizeof name, "model.decoder.layers.1.%s", lin[k]);
            routed &= !strcmp(L->name, name);
        }
        QH_CHECK(routed, "tiny OPT: every block-1 linear holds its own tensor and name");
        QH_CHECK(same_data(m->blocks[1].mlp_norm.b, &tl, "model.decoder.layers.1.final_layer_norm.bias", 8)
                 && same_data(m->final_norm.w, &tl, "model.decoder.final_layer_norm.weight", 8)
                 && same_data(m->embed_pos, &tl, "model.decoder.embed_positions.weight", 64),
                 "tiny OPT: norms and positions routed");
        QH_CHECK(m->lm_head == m->embed_tokens && m->blocks[0].lin[QH_LIN_GATE].W == NULL,
                 "tiny OPT: tied head aliases embed_tokens; no gate");
        QH_CHECK(!strcmp(m->blocks[1].lin[QH_LIN_UP].name, "model.decoder.layers.1.fc1")
                 && !strcmp(m->blocks[1].lin[QH_LIN_DOWN].name, "model.decoder.layers.1.fc2"),
                 "tiny OPT: fc1 is UP, fc2 is DOWN");
        /* the stable numbers: OPT q0 k1 v2 o3 fc1 4 fc2 5, keys layer * 8 + number */
        QH_CHECK(qh_model_n_linear(m) == 6 && qh_model_linear_key(m, 1, QH_LIN_UP) == 12
                 && qh_model_linear_key(m, 1, QH_LIN_DOWN) == 13
                 && qh_model_linear_key(m, 0, QH_LIN_O) == 3
                 && qh_model_linear_number(m, QH_LIN_GATE) == -1
                 && qh_model_linear_at(m, 4) == QH_LIN_UP && qh_model_linear_at(m, 5) == QH_LIN_DOWN
                 && qh_model_linear_at(m, 6) == -1
                 && qh_model_linear_short_name(m, QH_LIN_GATE) == NULL
                 && !strcmp(qh_model_linear_short_name(m, QH_LIN_UP), "fc1"),
                 "tiny OPT: stable numbers, keys and short names");
        QH_CHECK(m->cfg.features.bias == (QH_LIN_ALL & ~QH_LIN_BIT(QH_LIN_GATE))
                 && m->cfg.features.norm == QH_NORM_LAYER && m->cfg.features.pos == QH_POS_LEARNED
                 && m->cfg.features.pos_offset == 2 && !m->cfg.features.gated_mlp,
                 "tiny OPT: features (biases on all six linears, LayerNorm, learned positions)");
        size_t want = 16 * 8 + 8 * 8 + 16 + 2 * (4 * 8 + 4 * 72 + 2 * 16 * 8 + 16 + 8);
        QH_CHECK(qh_model_n_params(m) == want, "tiny OPT params %zu, want %zu",
                 qh_model_n_params(m), want);
        QH_CHECK(qh_model_n_linear_params(m) == 2 * (4 * 64 + 2 * 128), "tiny OPT linear params");
        QH_CHECK(m->cfg.eos_id == -1 && m->cfg.pad_id == -1 && m->cfg.bos_id == 0, "OPT token ids");
    }
    qh_model_free(m);
    free_list(&tl);

    /* post-LN without final norm, "decoder." names, projected embeddings, no biases,
     * a tied head stored anyway (ignored, counted once) */
    tiny_spec s = tiny_opt;
    s.pre_ln = 0; s.prefix = ""; s.E = 4; s.bias = 0; s.write_head = 1; s.dtype = QH_ST_F16;
    write_tiny(&s, "opt_post", dir, sizeof dir, &tl);
    st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "post-LN projected OPT loads: %s", qh_last_error());
    if (st == QH_OK) {
        QH_CHECK(!m->cfg.features.pre_ln && m->final_norm.w == NULL, "post-LN: no final norm");
        QH_CHECK(m->project_in.out == 8 && m->project_in.in == 4
                 && same_data(m->project_in.W, &tl, "decoder.project_in.weight", 32)
                 && same_data(m->project_out.W, &tl, "decoder.project_out.weight", 32)
                 && m->project_in.b == NULL, "project_in (8x4) / project_out (4x8)");
        QH_CHECK(m->cfg.embed_dim == 4 && same_data(m->embed_tokens, &tl, "decoder.embed_tokens.weight", 64)
                 && m->lm_head == m->embed_tokens, "embed_tokens (16x4), tied head");
        QH_CHECK(m->blocks[0].lin[QH_LIN_UP].b == NULL && m->cfg.features.bias == 0
                 && !strcmp(m->blocks[0].lin[QH_LIN_UP].name, "decoder.layers.0.fc1"),
                 "no biases; names without model.");
        size_t want = 16 * 4 + 8 * 8 + 2 * 32 + 2 * (4 * 8 + 4 * 64 + 2 * 128);
        QH_CHECK(qh_model_n_params(m) == want, "post-LN OPT params %zu, want %zu",
                 qh_model_n_params(m), want);
    }
    qh_model_free(m);
    free_list(&tl);
}

static void test_tiny_llama_variants(void)
{
    char dir[768], name[256];
    tensor_list tl;
    qh_model *m = NULL;
    write_tiny(&tiny_llama, "llama", dir, sizeof dir, &tl);
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "tiny Llama loads: %s", qh_last_error());
    if (st == QH_OK) {
        static const char *const lin[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
            "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj", "mlp.up_proj" };
        static const int kinds[] = { QH_LIN_Q, QH_LIN_K, QH_LIN_V, QH_LIN_O, QH_LIN_GATE,
                                     QH_LIN_DOWN, QH_LIN_UP };
        const int outs[] = { 8, 4, 4, 8, 12, 8, 12 }, ins[] = { 8, 8, 8, 8, 8, 12, 8 };
        int routed = 1;
        for (int k = 0; k < 7; k++) {
            const qh_linear *L = &m->blocks[0].lin[kinds[k]];
            snprintf(name, sizeof name, "model.layers.0.%s.weight", lin[k]);
            routed &= L->out == outs[k] && L->in == ins[k] && L->b == NULL
                      && same_data(L->W, &tl, name, (size_t)L->out * L->in);
        }
        QH_CHECK(routed, "tiny Llama: GQA shapes and routing of all 7 linears");
        QH_CHECK(same_data(m->lm_head, &tl, "lm_head.weight", 128) && m->lm_head != m->embed_tokens,
                 "untied head");
        QH_CHECK(m->embed_pos == NULL && m->final_norm.b == NULL
                 && same_data(m->blocks[0].mlp_norm.w, &tl, "model.layers.0.post_attention_layernorm.weight", 8),
                 "RMSNorm without bias, no positions");
        QH_CHECK(m->cfg.rope_theta == 500000.0 && m->cfg.eos_id == 2 && m->cfg.head_dim == 4
                 && m->cfg.n_kv_heads == 1 && fabs(m->cfg.norm_eps - 1e-6) < 1e-12,
                 "rope_theta top level, eos list, head_dim hidden/heads");
        QH_CHECK(qh_model_n_params(m) == 16 * 8 * 2 + 8 + 16 + 64 * 2 + 32 * 2 + 96 * 3,
                 "tiny Llama params %zu", qh_model_n_params(m));
        QH_CHECK(qh_model_n_linear(m) == 7
                 && !strcmp(qh_model_linear_short_name(m, QH_LIN_DOWN), "down_proj")
                 && !strcmp(qh_model_linear_short_name(m, QH_LIN_GATE), "gate_proj")
                 && qh_model_linear_short_name(m, 7) == NULL, "Llama linear names");
        /* the stable numbers predate the kinds' order: gate 4, down 5, up 6 */
        QH_CHECK(qh_model_linear_key(m, 2, QH_LIN_GATE) == 20
                 && qh_model_linear_key(m, 2, QH_LIN_DOWN) == 21
                 && qh_model_linear_key(m, 2, QH_LIN_UP) == 22
                 && qh_model_linear_at(m, 5) == QH_LIN_DOWN && qh_model_linear_at(m, 6) == QH_LIN_UP,
                 "Llama stable numbers and keys");
        QH_CHECK(m->cfg.features.norm == QH_NORM_RMS && m->cfg.features.gated_mlp
                 && m->cfg.features.act == QH_ACT_SILU && m->cfg.features.pos == QH_POS_ROTARY
                 && m->cfg.features.rotary_dims == 4 && m->cfg.features.bias == 0,
                 "Llama features (RMSNorm, gated SiLU, RoPE on all 4 head dims, no biases)");
    }
    qh_model_free(m);
    free_list(&tl);

    /* Qwen2: q/k/v biases, tied head absent from the file, names without "model." */
    tiny_spec s = tiny_llama;
    s.model_type = "qwen2"; s.qkv_bias = 1; s.tied = 1; s.prefix = ""; s.dtype = QH_ST_F32;
    write_tiny(&s, "qwen2", dir, sizeof dir, &tl);
    st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "tiny Qwen2 loads: %s", qh_last_error());
    if (st == QH_OK) {
        QH_CHECK(m->cfg.family->layout == qh_family_find("llama")->layout
                 && same_data(m->blocks[0].lin[QH_LIN_K].b, &tl,
                              "layers.0.self_attn.k_proj.bias", 4)
                 && m->blocks[0].lin[QH_LIN_O].b == NULL
                 && m->cfg.features.bias == (QH_LIN_BIT(QH_LIN_Q) | QH_LIN_BIT(QH_LIN_K)
                                             | QH_LIN_BIT(QH_LIN_V)),
                 "Qwen2 has the Llama layout with q/k/v biases, no o bias");
        QH_CHECK(m->lm_head == m->embed_tokens, "Qwen2 tied head");
    }
    qh_model_free(m);
    free_list(&tl);

    /* Mistral with head_dim 6 from config.json (not hidden/heads = 4): q is 12 x 8, o 8 x 12 */
    s = tiny_llama;
    s.model_type = "mistral"; s.HD = 6; s.NH = 2; s.NKV = 2;
    write_tiny(&s, "mistral", dir, sizeof dir, &tl);
    st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "tiny Mistral with head_dim loads: %s", qh_last_error());
    if (st == QH_OK)
        QH_CHECK(m->cfg.head_dim == 6 && m->blocks[0].lin[QH_LIN_Q].out == 12
                 && m->blocks[0].lin[QH_LIN_O].in == 12 && m->blocks[0].lin[QH_LIN_V].out == 12
                 && same_data(m->blocks[0].lin[QH_LIN_O].W, &tl, "model.layers.0.self_attn.o_proj.weight", 96),
                 "head_dim from config sets q/k/v/o shapes");
    qh_model_free(m);
    free_list(&tl);
}

/* ---- the family table --------------------------------------------------------------- */

/* Every row: a unique model_type that qh_family_find returns; its layout has
 * q, k, v, o, up and down, and stable numbers 0..n-1 each once (results and
 * random-stream keys depend on them); the list names every row. */
static void test_family_table(void)
{
    char list[256];
    qh_family_list(list, sizeof list);
    QH_CHECK(qh_family_count() >= 4 && qh_family_at(qh_family_count()) == NULL, "family rows");
    for (size_t i = 0; i < qh_family_count(); i++) {
        const qh_family *f = qh_family_at(i);
        const qh_layout *ly = f->layout;
        int n = 0, seen[8] = { 0 }, ok = 1;
        for (int k = 0; k < QH_LIN_MAX; k++) {
            if (!ly->lin[k].name) { ok &= k == QH_LIN_GATE; continue; }
            n++;
            ok &= ly->lin[k].number >= 0 && ly->lin[k].number < 8 && !seen[ly->lin[k].number]++;
        }
        for (int j = 0; j < n; j++) ok &= seen[j] == 1;
        ok &= (ly->lin[QH_LIN_GATE].name != NULL) == (f->features.gated_mlp != 0);
        QH_CHECK(ok, "%s: linears q k v o up down (gate iff gated), numbers 0..%d once each",
                 f->model_type, n - 1);
        QH_CHECK(qh_family_find(f->model_type) == f && strstr(list, f->model_type),
                 "%s: found by name and listed in \"%s\"", f->model_type, list);
    }
    QH_CHECK(qh_family_find("falcon") == NULL, "unknown model_type: no row");
}

/* Bit-identical logits of two models on the same window. */
static int same_logits(const qh_model *a, const qh_model *b)
{
    int32_t ids[5] = { 1, 7, 3, 15, 0 };
    size_t n = 5 * (size_t)a->cfg.vocab_size;
    qh_forward_ws *wa = NULL, *wb = NULL;
    float *la = malloc(n * sizeof(float)), *lb = malloc(n * sizeof(float));
    int ok = qh_forward_ws_alloc(a, 5, &wa) == QH_OK && qh_forward_ws_alloc(b, 5, &wb) == QH_OK
             && qh_forward_window(a, ids, 5, wa, la) == QH_OK
             && qh_forward_window(b, ids, 5, wb, lb) == QH_OK && !memcmp(la, lb, n * sizeof(float));
    qh_forward_ws_free(wa);
    qh_forward_ws_free(wb);
    free(la);
    free(lb);
    return ok;
}

/* A family that kept Llama's tensor names is one row of the table: "mistral"
 * (that row alone) loads the same tensors as "llama" into the same model,
 * features, keys and logits. */
static void test_llama_layout_row(void)
{
    char dir[768];
    tensor_list tl, tl2;
    qh_model *a = NULL, *b = NULL;
    tiny_spec s = tiny_llama;
    write_tiny(&s, "row_llama", dir, sizeof dir, &tl);
    int st = qh_model_load(dir, &a);
    s.model_type = "mistral";
    write_tiny(&s, "row_mistral", dir, sizeof dir, &tl2);
    if (st == QH_OK) st = qh_model_load(dir, &b);
    QH_CHECK(st == QH_OK, "llama and mistral folders load: %s", qh_last_error());
    if (st == QH_OK) {
        int same = !memcmp(&a->cfg.features, &b->cfg.features, sizeof a->cfg.features)
                   && a->cfg.family->layout == b->cfg.family->layout
                   && !strcmp(b->cfg.model_type, "mistral")
                   && qh_model_n_params(a) == qh_model_n_params(b);
        for (int k = 0; k < QH_LIN_MAX; k++) {
            const qh_linear *la = &a->blocks[0].lin[k], *lb = &b->blocks[0].lin[k];
            same &= !strcmp(la->name, lb->name) && la->out == lb->out && la->in == lb->in
                    && !memcmp(la->W, lb->W, sizeof(float) * (size_t)la->out * la->in)
                    && qh_model_linear_key(a, 0, k) == qh_model_linear_key(b, 0, k);
        }
        QH_CHECK(same, "mistral row: same features, linears and keys as llama");
        QH_CHECK(same_logits(a, b), "mistral row: logits bit-identical to llama's");
    }
    qh_model_free(a);
    qh_model_free(b);
    free_list(&tl);
    free_list(&tl2);
}

/* config.json's bias switches: Llama's attention_bias gives q, k, v and o
 * biases, which must then be in the file. */
static void test_bias_switches(void)
{
    char dir[768], path[1100];
    tensor_list tl;
    qh_model *m = NULL;
    tiny_spec s = tiny_llama;
    s.qkv_bias = 1;
    write_tiny(&s, "bias_switch", dir, sizeof dir, &tl);
    cJSON *c = tiny_config(&s);
    cJSON_AddBoolToObject(c, "attention_bias", 1);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_json(path, c);
    cJSON_Delete(c);
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "layers.0.self_attn.o_proj.bias"),
             "attention_bias true: o_proj.bias required: %s", qh_last_error());
    qh_model_free(m);
    free_list(&tl);
}

/* ---- malformed inputs -------------------------------------------------------------- */

/* Loading dir must fail with status want and name every string in needles. */
static void expect_failure(const char *what, const char *dir, int want, const char *n1, const char *n2)
{
    qh_model *m = NULL;
    int st = qh_model_load(dir, &m);
    const char *e = qh_last_error();
    QH_CHECK(st == want && m == NULL, "%s: status %d (%s), want %d; message: %s", what, st,
             qh_status_name(st), want, e);
    QH_CHECK(!n1 || strstr(e, n1), "%s: message lacks \"%s\": %s", what, n1, e);
    QH_CHECK(!n2 || strstr(e, n2), "%s: message lacks \"%s\": %s", what, n2, e);
    if (m) qh_model_free(m);
}

static const char *const FC1W = "model.decoder.layers.0.fc1.weight";
static const char *const FC1B = "model.decoder.layers.0.fc1.bias";

static void set_dtype(cJSON *root, const void *arg)
{
    cJSON *e = cJSON_GetObjectItemCaseSensitive(root, FC1W);
    cJSON_ReplaceItemInObjectCaseSensitive(e, "dtype", cJSON_CreateString(arg));
}

static void delete_tensor(cJSON *root, const void *arg) { cJSON_DeleteItemFromObjectCaseSensitive(root, arg); }

static void set_shape_transposed(cJSON *root, const void *arg)
{
    (void)arg;
    cJSON *e = cJSON_GetObjectItemCaseSensitive(root, FC1W);
    const int shape[2] = { 8, 16 };                    /* stored [16, 8]: same byte count */
    cJSON_ReplaceItemInObjectCaseSensitive(e, "shape", cJSON_CreateIntArray(shape, 2));
}

static void get_offsets(cJSON *root, const char *name, double *b, double *e)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, name), "data_offsets");
    *b = cJSON_GetArrayItem(o, 0)->valuedouble;
    *e = cJSON_GetArrayItem(o, 1)->valuedouble;
}

static void set_offsets(cJSON *root, const char *name, double b, double e)
{
    cJSON *o = cJSON_CreateArray();
    cJSON_AddItemToArray(o, cJSON_CreateNumber(b));
    cJSON_AddItemToArray(o, cJSON_CreateNumber(e));
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, name), "data_offsets", o);
}

static void make_overlap(cJSON *root, const void *arg)
{
    (void)arg;
    double b, e;
    get_offsets(root, FC1W, &b, &e);
    set_offsets(root, FC1B, b + 4, b + 4 + 16 * 4);    /* fc1.bias (16 F32) inside fc1.weight */
}

static void make_out_of_range(cJSON *root, const void *arg)
{
    double b, e, max_end = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, root) {
        if (!strcmp(t->string, "__metadata__")) continue;
        get_offsets(root, t->string, &b, &e);
        if (e > max_end) max_end = e;
    }
    (void)arg;
    set_offsets(root, FC1B, max_end, max_end + 64);    /* starts at the end of the data */
}

static void make_size_mismatch(cJSON *root, const void *arg)
{
    (void)arg;
    double b, e;
    get_offsets(root, FC1B, &b, &e);
    set_offsets(root, FC1B, b, e - 4);                 /* 15 floats for shape [16] */
}

typedef struct { const char *what; void (*edit)(cJSON *, const void *); const void *arg;
                 int status; const char *needle; } header_case;

static void test_bad_headers(void)
{
    const header_case cases[] = {
        { "unknown dtype", set_dtype, "Q4_K", QH_EINVAL, "Q4_K" },
        { "unsupported known dtype", set_dtype, "I32", QH_EINVAL, "I32" },
        { "missing tensor", delete_tensor, FC1W, QH_EINVAL, NULL },
        { "wrong shape", set_shape_transposed, NULL, QH_EBADLEN, "[8, 16]" },
        { "overlapping offsets", make_overlap, NULL, QH_EBADLEN, "overlap" },
        { "offsets past end of data", make_out_of_range, NULL, QH_EBADLEN, "out of range" },
        { "offsets not matching shape", make_size_mismatch, NULL, QH_EBADLEN, "needs 64" },
    };
    char dir[768], path[1100], casename[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tensor_list tl;
        snprintf(casename, sizeof casename, "hdr%zu", i);
        write_tiny(&tiny_opt, casename, dir, sizeof dir, &tl);
        free_list(&tl);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        edit_header(path, cases[i].edit, cases[i].arg);
        const char *tensor = cases[i].edit == make_overlap || cases[i].edit == make_out_of_range
                             || cases[i].edit == make_size_mismatch ? FC1B : FC1W;
        expect_failure(cases[i].what, dir, cases[i].status, path, tensor);
        if (cases[i].needle) expect_failure(cases[i].what, dir, cases[i].status, cases[i].needle, NULL);
    }
}

static void test_bad_files(void)
{
    char dir[768], path[1100];
    tensor_list tl;
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    float two[2] = { 1, 2 };

    write_tiny(&tiny_opt, "short", dir, sizeof dir, &tl);
    free_list(&tl);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st_raw(path, 4096, hdr, two, sizeof two);    /* header length past end of file */
    expect_failure("header length past end of file", dir, QH_EBADLEN, path, "past the end");

    write_st_raw(path, (uint64_t)1 << 40, hdr, two, sizeof two);
    expect_failure("absurd header length", dir, QH_EBADLEN, path, "absurd");

    write_bytes(path, "\x05\0\0", 3);
    expect_failure("file shorter than 8 bytes", dir, QH_EBADLEN, path, "shorter");

    const char *broken = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],";
    write_st_raw(path, strlen(broken), broken, two, sizeof two);
    expect_failure("malformed JSON header", dir, QH_EINVAL, path, "malformed JSON");

    const char *neg = "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}";
    write_st_raw(path, strlen(neg), neg, two, sizeof two);
    expect_failure("negative shape", dir, QH_EINVAL, path, "tensor a");

    /* direct reader check: a well-formed file with one tensor reads back */
    write_st_raw(path, strlen(hdr), hdr, two, sizeof two);
    qh_st_file *f = NULL;
    int st = qh_st_open(path, &f);
    QH_CHECK(st == QH_OK && f->n_tensors == 1 && qh_st_find(f, "a") && !qh_st_find(f, "b"),
             "hand-written one-tensor file opens: %s", qh_last_error());
    float got[2] = { 0, 0 };
    QH_CHECK(st == QH_OK && qh_st_read_f32(f, qh_st_find(f, "a"), got) == QH_OK
             && got[0] == 1 && got[1] == 2, "hand-written F32 values");
    qh_st_close(f);

    /* a folder with no weights, and a missing folder */
    make_case_dir(dir, sizeof dir, "empty");
    expect_failure("folder without weights", dir, QH_EIO, dir, "model.safetensors");
    snprintf(path, sizeof path, "%s/does-not-exist", tmp_root);
    expect_failure("non-existent directory", path, QH_EIO, "does-not-exist", NULL);
}

static void test_non_finite(void)
{
    char dir[768];
    tensor_list tl;
    tiny_spec s = tiny_opt;
    make_case_dir(dir, sizeof dir, "nan");
    memset(&tl, 0, sizeof tl);
    tiny_opt_tensors(&s, &tl);
    for (size_t i = 0; i < tl.n; i++)
        if (!strcmp(tl.name[i], "model.decoder.layers.1.fc2.weight")) tl.data[i][37] = NAN;
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    QH_ASSERT(qh_st_write(path, tl.t, tl.n) == QH_OK);
    cJSON *c = tiny_config(&s);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_json(path, c);
    expect_failure("NaN weight", dir, QH_ENAN, "model.decoder.layers.1.fc2.weight", "NaN");
    expect_failure("NaN weight", dir, QH_ENAN, "model.safetensors", "element 37");
    /* spilled, block 1 is converted when acquired: the error comes then, named alike */
    qh_model *m = NULL;
    qh_model_load_opts opts = { tmp_root };
    int st = qh_model_load_with(dir, &opts, &m);
    int a0 = st == QH_OK ? qh_model_acquire_block(m, 0) : -1;
    int a1 = st == QH_OK ? qh_model_acquire_block(m, 1) : -1;
    QH_CHECK(st == QH_OK && a0 == QH_OK && a1 == QH_ENAN
                 && strstr(qh_last_error(), "model.decoder.layers.1.fc2.weight")
                 && strstr(qh_last_error(), "element 37"),
             "spilled NaN weight: load and block 0 fine, block 1's acquire QH_ENAN naming it (%d %d %d: %s)",
             st, a0, a1, qh_last_error());
    qh_model_free(m);

    /* an F16 Inf (0x7C00) in a bias */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    for (size_t i = 0; i < tl.n; i++) {
        tl.t[i].dtype = QH_ST_F16;
        if (!strcmp(tl.name[i], "model.decoder.layers.1.fc2.weight")) tl.data[i][37] = 0;
        if (!strcmp(tl.name[i], "model.decoder.layers.0.self_attn.v_proj.bias")) tl.data[i][3] = 1e6f;
    }
    QH_ASSERT(qh_st_write(path, tl.t, tl.n) == QH_OK);
    expect_failure("F16 Inf weight", dir, QH_ENAN, "model.decoder.layers.0.self_attn.v_proj.bias", "Inf");
    cJSON_Delete(c);
    free_list(&tl);
}

static void write_config_text(const char *dir, const char *text)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_bytes(path, text, strlen(text));
}

static void write_config_edit(const char *dir, const tiny_spec *s, const char *del, const char *key,
                              cJSON *value)
{
    char path[1100];
    cJSON *c = tiny_config(s);
    if (del) cJSON_DeleteItemFromObjectCaseSensitive(c, del);
    if (key) {
        cJSON_DeleteItemFromObjectCaseSensitive(c, key);
        cJSON_AddItemToObject(c, key, value);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_json(path, c);
    cJSON_Delete(c);
}

static void test_bad_configs(void)
{
    char dir[768];
    tensor_list tl;
    write_tiny(&tiny_opt, "cfg_opt", dir, sizeof dir, &tl);
    free_list(&tl);
    write_config_edit(dir, &tiny_opt, "hidden_size", NULL, NULL);
    expect_failure("config missing hidden_size", dir, QH_ECONFIG, "config.json", "hidden_size");
    write_config_edit(dir, &tiny_opt, "ffn_dim", NULL, NULL);
    expect_failure("OPT config missing ffn_dim", dir, QH_ECONFIG, "config.json", "ffn_dim");
    write_config_edit(dir, &tiny_opt, NULL, "model_type", cJSON_CreateString("falcon"));
    expect_failure("unsupported model_type", dir, QH_ECONFIG, "config.json", "falcon");
    expect_failure("unsupported model_type lists the families", dir, QH_ECONFIG,
                   "supported: opt, llama, mistral, qwen2", NULL);
    write_config_edit(dir, &tiny_opt, NULL, "num_attention_heads", cJSON_CreateString("four"));
    expect_failure("heads not a number", dir, QH_ECONFIG, "config.json", "num_attention_heads");
    write_config_edit(dir, &tiny_opt, NULL, "activation_function", cJSON_CreateString("gelu"));
    expect_failure("OPT gelu", dir, QH_ECONFIG, "config.json", "activation_function");
    write_config_text(dir, "{\"model_type\": \"opt\", \"hidden_size\": 8,,}");
    expect_failure("config not JSON", dir, QH_ECONFIG, "config.json", "not valid JSON");
    write_config_text(dir, "[1, 2]");
    expect_failure("config not an object", dir, QH_ECONFIG, "config.json", NULL);
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    expect_failure("config.json absent", dir, QH_EIO, path, NULL);

    write_tiny(&tiny_llama, "cfg_llama", dir, sizeof dir, &tl);
    free_list(&tl);
    cJSON *rope = cJSON_CreateObject();
    cJSON_AddStringToObject(rope, "rope_type", "yarn");
    cJSON_AddNumberToObject(rope, "factor", 4);
    write_config_edit(dir, &tiny_llama, NULL, "rope_scaling", rope);
    expect_failure("rope_type yarn", dir, QH_ECONFIG, "config.json", "yarn");
    write_config_edit(dir, &tiny_llama, NULL, "num_key_value_heads", cJSON_CreateNumber(3));
    expect_failure("kv heads above heads", dir, QH_ECONFIG, "config.json", "num_key_value_heads");
    /* kv heads 2 in the config, tensors for 1: k_proj shape disagrees */
    write_config_edit(dir, &tiny_llama, NULL, "num_key_value_heads", cJSON_CreateNumber(2));
    expect_failure("k_proj shape vs kv heads", dir, QH_EBADLEN, "model.layers.0.self_attn.k_proj.weight",
                   "[4, 8]");
    /* rope_parameters with a theta, rope_scaling null: accepted */
    rope = cJSON_CreateObject();
    cJSON_AddStringToObject(rope, "rope_type", "default");
    cJSON_AddNumberToObject(rope, "rope_theta", 1234.5);
    write_config_edit(dir, &tiny_llama, "rope_theta", "rope_parameters", rope);
    qh_model *m = NULL;
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK && m->cfg.rope_theta == 1234.5, "rope_parameters.rope_theta read: %s",
             st ? qh_last_error() : "");
    qh_model_free(m);
    write_config_edit(dir, &tiny_llama, "rope_theta", "rope_scaling", cJSON_CreateNull());
    st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK && m->cfg.rope_theta == 10000.0, "rope_scaling null, default theta: %s",
             st ? qh_last_error() : "");
    qh_model_free(m);
}

/* Splits the tiny OPT into two shards plus an index; optionally names a missing third. */
static void test_tiny_sharded(void)
{
    char dir[768], path[1100];
    tensor_list tl;
    make_case_dir(dir, sizeof dir, "sharded");
    memset(&tl, 0, sizeof tl);
    tiny_opt_tensors(&tiny_opt, &tl);
    size_t half = tl.n / 2;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    QH_ASSERT(qh_st_write(path, tl.t, half) == QH_OK);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    QH_ASSERT(qh_st_write(path, tl.t + half, tl.n - half) == QH_OK);
    cJSON *c = tiny_config(&tiny_opt);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_json(path, c);
    cJSON_Delete(c);
    cJSON *idx = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(idx, "weight_map");
    for (size_t i = 0; i < tl.n; i++)
        cJSON_AddStringToObject(map, tl.name[i], i < half ? "model-00001-of-00002.safetensors"
                                                          : "model-00002-of-00002.safetensors");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_json(path, idx);
    qh_model *m = NULL;
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "tiny sharded OPT loads: %s", qh_last_error());
    if (st == QH_OK)
        QH_CHECK(same_data(m->blocks[1].lin[QH_LIN_DOWN].W, &tl, "model.decoder.layers.1.fc2.weight", 128)
                 && same_data(m->embed_tokens, &tl, "model.decoder.embed_tokens.weight", 128),
                 "sharded: tensors from both shards");
    qh_model_free(m);

    cJSON_ReplaceItemInObjectCaseSensitive(map, tl.name[tl.n - 1],
                                           cJSON_CreateString("model-00003-of-00002.safetensors"));
    write_json(path, idx);
    expect_failure("index names a missing shard", dir, QH_EIO, "model-00003-of-00002.safetensors",
                   "model.safetensors.index.json");
    cJSON_Delete(idx);
    free_list(&tl);
}

/* An index whose entries leave the model folder ("../x", a symlinked
 * subfolder) is refused naming the index and the entry; a shard that is
 * itself a symbolic link (a download cache's snapshot) still loads. */
static void test_shard_paths(void)
{
    char dir[768], path[1100], other[1100], link[1100];
    tensor_list tl;
    write_tiny(&tiny_opt, "escape", dir, sizeof dir, &tl);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    QH_ASSERT(remove(path) == 0);
    size_t half = tl.n / 2;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    QH_ASSERT(qh_st_write(path, tl.t, half) == QH_OK);
    snprintf(other, sizeof other, "%s/outside.safetensors", tmp_root);   /* next to the folder */
    QH_ASSERT(qh_st_write(other, tl.t + half, tl.n - half) == QH_OK);
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/elsewhere", tmp_root);
    QH_ASSERT(mkdir(sub, 0700) == 0);
    snprintf(path, sizeof path, "%s/elsewhere/model-00002-of-00002.safetensors", tmp_root);
    QH_ASSERT(qh_st_write(path, tl.t + half, tl.n - half) == QH_OK);
    snprintf(link, sizeof link, "%s/sub", dir);
    QH_ASSERT(symlink(sub, link) == 0);

    static const char *const escapes[2] = { "../outside.safetensors", "sub/model-00002-of-00002.safetensors" };
    cJSON *idx = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(idx, "weight_map");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    for (int k = 0; k < 3; k++) {
        /* k = 2: the second shard is a symbolic link to the file outside */
        const char *second = k < 2 ? escapes[k] : "model-00002-of-00002.safetensors";
        if (k == 2) {
            snprintf(link, sizeof link, "%s/%s", dir, second);
            QH_ASSERT(symlink(other, link) == 0);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(idx, "weight_map");
        map = cJSON_AddObjectToObject(idx, "weight_map");
        for (size_t i = 0; i < tl.n; i++)
            cJSON_AddStringToObject(map, tl.name[i], i < half ? "model-00001-of-00002.safetensors" : second);
        write_json(path, idx);
        if (k < 2) {
            char what[128];
            snprintf(what, sizeof what, "index entry %s", second);
            expect_failure(what, dir, QH_EINVAL, second, "outside the model folder");
            QH_CHECK(strstr(qh_last_error(), "model.safetensors.index.json")
                     && strstr(qh_last_error(), tl.name[half]),
                     "%s: the message names the index and the tensor: %s", what, qh_last_error());
        } else {
            qh_model *m = NULL;
            int st = qh_model_load(dir, &m);
            QH_CHECK(st == QH_OK, "a shard that is a symbolic link loads: %s", qh_last_error());
            qh_model_free(m);
        }
    }
    cJSON_Delete(idx);
    free_list(&tl);
}

/* Model files that are a FIFO or a directory: a clear error at once, never a
 * hang (an alarm ends the test if an open blocks). */
static void test_special_files(void)
{
    static const char *const names[3] = { "model.safetensors", "config.json",
                                          "model.safetensors.index.json" };
    char dir[768], path[1100];
    tensor_list tl;
    alarm(60);
    for (int k = 0; k < 3; k++)
        for (int fifo = 0; fifo < 2; fifo++) {
            char name[64];
            snprintf(name, sizeof name, "special-%d-%d", k, fifo);
            write_tiny(&tiny_opt, name, dir, sizeof dir, &tl);
            free_list(&tl);
            snprintf(path, sizeof path, "%s/%s", dir, names[k]);
            remove(path);
            QH_ASSERT(fifo ? mkfifo(path, 0600) == 0 : mkdir(path, 0700) == 0);
            char what[128];
            snprintf(what, sizeof what, "%s as a %s", names[k], fifo ? "FIFO" : "directory");
            expect_failure(what, dir, QH_EIO, path, fifo ? "is a FIFO" : "is a directory");
        }
    alarm(0);
}

/* ---- writer ----------------------------------------------------------------------------- */

static void test_writer_round_trip(void)
{
    char dir[768], path[1100];
    make_case_dir(dir, sizeof dir, "writer");
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    enum { N = 300 };
    float a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = (float)sin(0.37 * i) * (float)ldexp(1, i % 40 - 28);   /* includes F16 subnormals */
        b[i] = (float)cos(1.3 * i) * 1000.0f;
    }
    const qh_st_write_tensor t[] = {
        { "w.f32", QH_ST_F32, 2, { 20, 15 }, a },
        { "w.f16", QH_ST_F16, 2, { 15, 20 }, a },
        { "w.bf16", QH_ST_BF16, 1, { N }, b },
        { "empty", QH_ST_F32, 2, { 0, 3 }, NULL },
    };
    int st = qh_st_write(path, t, 4);
    QH_CHECK(st == QH_OK, "writer: %s", qh_last_error());
    qh_st_file *f = NULL;
    st = st ? st : qh_st_open(path, &f);
    QH_CHECK(st == QH_OK, "written file opens: %s", qh_last_error());
    if (st != QH_OK) return;
    float got[N];
    const qh_st_tensor *x = qh_st_find(f, "w.f32");
    QH_CHECK(x && x->dtype == QH_ST_F32 && x->ndim == 2 && x->shape[0] == 20 && x->shape[1] == 15
             && qh_st_read_f32(f, x, got) == QH_OK && !memcmp(got, a, sizeof a), "F32 round trip exact");
    x = qh_st_find(f, "w.f16");
    int ok = x && x->dtype == QH_ST_F16 && x->shape[0] == 15 && qh_st_read_f32(f, x, got) == QH_OK;
    double worst = 0;
    for (int i = 0; ok && i < N; i++) {
        /* RNE to binary16: error at most half an ulp (2^-11 relative, 2^-25 absolute below 2^-14) */
        double err = fabs(got[i] - a[i]), bound = fmax(fabs(a[i]) * ldexp(1, -11), ldexp(1, -25));
        worst = fmax(worst, err / bound);
    }
    QH_CHECK(ok && worst <= 1.0, "F16 round trip within half an ulp (worst %.3f of bound)", worst);
    x = qh_st_find(f, "w.bf16");
    ok = x && x->dtype == QH_ST_BF16 && x->ndim == 1 && qh_st_read_f32(f, x, got) == QH_OK;
    worst = 0;
    for (int i = 0; ok && i < N; i++) worst = fmax(worst, fabs(got[i] - b[i]) / (fabs(b[i]) * ldexp(1, -8)));
    QH_CHECK(ok && worst <= 1.0, "BF16 round trip within half an ulp (worst %.3f)", worst);
    x = qh_st_find(f, "empty");
    QH_CHECK(x && x->numel == 0 && x->begin == x->end, "empty tensor");
    QH_CHECK((f->data - (const unsigned char *)f->map) % 8 == 0, "data section 8-byte aligned");
    qh_st_close(f);
    QH_CHECK(access(path, F_OK) == 0, "final file present");
    snprintf(path + strlen(path), sizeof path - strlen(path), ".%ld.tmp", (long)getpid());
    QH_CHECK(access(path, F_OK) != 0, "no temporary file left");

    const qh_st_write_tensor dup[] = { { "x", QH_ST_F32, 1, { 1 }, a }, { "x", QH_ST_F32, 1, { 1 }, a } };
    snprintf(path, sizeof path, "%s/dup.safetensors", dir);
    QH_CHECK(qh_st_write(path, dup, 2) == QH_EINVAL && access(path, F_OK) != 0, "duplicate name refused");
    const qh_st_write_tensor i8[] = { { "x", QH_ST_I8, 1, { 1 }, a } };
    QH_CHECK(qh_st_write(path, i8, 1) == QH_EINVAL, "I8 not writable");
}

/* ---- the vendored models -------------------------------------------------------------- */

/* Decodes the first n values of tensor name from the safetensors file at path
 * with cJSON and stdio only.  Returns 0 when the tensor is absent. */
static int raw_values(const char *path, const char *name, double *out, int n)
{
    size_t len;
    unsigned char *p = read_bytes(path, &len);
    if (!p) return 0;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | p[i];
    cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hl);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, name);
    int found = e != NULL;
    if (found) {
        const char *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring;
        size_t begin = (size_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), 0)->valuedouble;
        const unsigned char *d = p + 8 + hl + begin;
        for (int i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(d[2 * i] | d[2 * i + 1] << 8);
            out[i] = !strcmp(dt, "F16") ? ref_f16(h) : ref_bf16(h);
        }
    }
    cJSON_Delete(root);
    free(p);
    return found;
}

static int matches_raw(const char *file, const char *name, const float *got, int n)
{
    double want[16];
    if (!got || !raw_values(file, name, want, n)) return 0;
    for (int i = 0; i < n; i++)
        if (!same_value(got[i], want[i])) return 0;
    return 1;
}

/* |n/1e6 - stated| < 0.005: agreement to the README's 3 significant digits. */
static int millions_match(size_t n, double stated) { return fabs((double)n / 1e6 - stated) < 0.005; }

static void test_opt7m(void)
{
    qh_model *m = NULL;
    int st = qh_model_load("models/opt-7m", &m);
    QH_CHECK(st == QH_OK, "opt-7m loads: %s", qh_last_error());
    if (st != QH_OK) return;
    const qh_model_config *k = &m->cfg;
    QH_CHECK(k->family == qh_family_find("opt") && !strcmp(k->model_type, "opt") && k->n_layers == 6
             && k->hidden == 256 && k->n_heads == 4 && k->n_kv_heads == 4 && k->head_dim == 64
             && k->ffn_dim == 1024 && k->vocab_size == 8192 && k->max_pos == 1024
             && k->embed_dim == 256 && k->features.pre_ln && k->features.tied_head, "opt-7m config numbers");
    QH_CHECK(k->bos_id == 0 && k->eos_id == 2 && k->pad_id == 1, "opt-7m token ids");
    size_t n = qh_model_n_params(m);
    /* embed 8192x256, positions 1026x256, final LN, 6 x (4 (256x256+256) + fc1 + fc2 + 2 LN) */
    size_t closed = 8192 * 256 + 1026 * 256 + 512
                    + 6 * (4 * (65536 + 256) + (262144 + 1024) + (262144 + 256) + 4 * 256);
    QH_CHECK(n == closed && millions_match(n, 7.10), "opt-7m params %zu (README 7.10 M)", n);
    QH_CHECK(qh_model_n_linear_params(m) == 6 * (4 * 65536 + 2 * 262144), "opt-7m linear params");
    QH_CHECK(m->lm_head == m->embed_tokens && m->embed_pos && m->final_norm.b
             && m->project_in.W == NULL, "opt-7m tied head, positions, final norm, no projection");
    const char *file = "models/opt-7m/model.safetensors";
    QH_CHECK(matches_raw(file, "model.decoder.layers.0.fc1.weight", m->blocks[0].lin[QH_LIN_UP].W, 16),
             "opt-7m fc1 weights vs independent F16 decode");
    QH_CHECK(matches_raw(file, "model.decoder.layers.5.self_attn.v_proj.bias",
                         m->blocks[5].lin[QH_LIN_V].b, 16), "opt-7m layer 5 v bias");
    QH_CHECK(matches_raw(file, "model.decoder.embed_positions.weight", m->embed_pos, 16)
             && matches_raw(file, "model.decoder.final_layer_norm.weight", m->final_norm.w, 16),
             "opt-7m positions and final norm");
    /* spot value: the first fc1 weight is stored as 0x2C5F (bytes 5f 2c) */
    QH_CHECK(m->blocks[0].lin[QH_LIN_UP].W[0] == (float)ldexp(1024 + 0x05F, 11 - 25),
             "opt-7m fc1[0] = 0x2C5F = %.9g", (double)m->blocks[0].lin[QH_LIN_UP].W[0]);
    QH_CHECK(((uintptr_t)m->blocks[3].lin[QH_LIN_Q].W % 64) == 0, "weights 64-byte aligned");
    qh_model_free(m);
}

static void test_llama9m(void)
{
    qh_model *m = NULL;
    int st = qh_model_load("models/llama-9m", &m);
    QH_CHECK(st == QH_OK, "llama-9m loads: %s", qh_last_error());
    if (st != QH_OK) return;
    const qh_model_config *k = &m->cfg;
    QH_CHECK(k->family == qh_family_find("llama") && k->n_layers == 6 && k->hidden == 256 && k->n_heads == 4
             && k->n_kv_heads == 2 && k->head_dim == 64 && k->ffn_dim == 768 && k->vocab_size == 8192
             && !k->features.tied_head && k->rope_theta == 10000.0 && fabs(k->norm_eps - 1e-5) < 1e-12,
             "llama-9m config numbers");
    size_t n = qh_model_n_params(m);
    size_t closed = 2 * 8192 * 256 + 256 + 6 * (2 * 256 + 2 * 65536 + 2 * 128 * 256 + 3 * 768 * 256);
    QH_CHECK(n == closed && millions_match(n, 8.92), "llama-9m params %zu (README 8.92 M)", n);
    QH_CHECK(m->blocks[2].lin[QH_LIN_K].out == 128 && m->blocks[2].lin[QH_LIN_K].in == 256
             && m->blocks[2].lin[QH_LIN_UP].out == 768 && m->blocks[2].lin[QH_LIN_DOWN].in == 768,
             "llama-9m GQA and MLP shapes");
    const char *file = "models/llama-9m/model.safetensors";
    QH_CHECK(m->lm_head != m->embed_tokens && matches_raw(file, "lm_head.weight", m->lm_head, 16),
             "llama-9m untied lm_head vs independent BF16 decode");
    QH_CHECK(matches_raw(file, "model.layers.4.self_attn.k_proj.weight", m->blocks[4].lin[QH_LIN_K].W, 16)
             && matches_raw(file, "model.layers.0.mlp.up_proj.weight", m->blocks[0].lin[QH_LIN_UP].W, 16)
             && matches_raw(file, "model.norm.weight", m->final_norm.w, 16),
             "llama-9m k_proj, up_proj, norm");
    qh_model_free(m);
}

static void test_opt30m(void)
{
    const char *dir = "../shared/models/opt-30m";
    if (access(dir, F_OK) != 0) { QH_SKIP("%s absent", dir); return; }
    qh_model *m = NULL;
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "opt-30m (sharded) loads: %s", qh_last_error());
    if (st != QH_OK) return;
    QH_CHECK(m->cfg.n_layers == 8 && m->cfg.hidden == 512 && m->cfg.n_heads == 8
             && m->cfg.ffn_dim == 2048 && m->cfg.features.tied_head, "opt-30m config numbers");
    size_t n = qh_model_n_params(m);
    QH_CHECK(n == 29939712 && millions_match(n, 29.94), "opt-30m params %zu (README 29.94 M, index 29939712)", n);
    /* compare one tensor from each shard the index names for it */
    char ipath[256];
    snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", dir);
    size_t len;
    char *text = (char *)read_bytes(ipath, &len);
    cJSON *idx = text ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    const char *names[] = { "model.decoder.layers.0.fc1.weight", "model.decoder.layers.7.fc2.weight" };
    const float *ptrs[] = { m->blocks[0].lin[QH_LIN_UP].W, m->blocks[7].lin[QH_LIN_DOWN].W };
    for (int i = 0; i < 2; i++) {
        const cJSON *shard = cJSON_GetObjectItemCaseSensitive(map, names[i]);
        char spath[512];
        snprintf(spath, sizeof spath, "%s/%s", dir, cJSON_IsString(shard) ? shard->valuestring : "?");
        QH_CHECK(matches_raw(spath, names[i], ptrs[i], 16), "opt-30m %s vs %s", names[i], spath);
    }
    cJSON_Delete(idx);
    free(text);
    qh_model_free(m);
}

/* Rewrites a safetensors file with its header padded by `pad` more spaces:
 * the same tensors, the data section shifted by pad bytes. */
static void pad_header(const char *path, size_t pad)
{
    size_t n;
    unsigned char *p = read_bytes(path, &n);
    QH_ASSERT(p && n >= 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | p[i];
    char *h = malloc((size_t)hl + pad + 1);
    memcpy(h, p + 8, (size_t)hl);
    memset(h + hl, ' ', pad);
    h[hl + pad] = '\0';
    write_st_raw(path, hl + pad, h, p + 8 + hl, n - 8 - (size_t)hl);
    free(h);
    free(p);
}

/* F32 weights are mapped in place (copy-on-write): writes through the model
 * never reach the file, a second load sees the file's values, saving works
 * (also over the folder itself, which a rename must not disturb), and a data
 * section at an address not 4-byte aligned falls back to copying. */
static void test_mapped_f32(void)
{
    char dir[768], path[1024], out[1024];
    tensor_list tl;
    write_tiny(&tiny_opt, "mapped", dir, sizeof dir, &tl);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t n0, n1;
    unsigned char *before = read_bytes(path, &n0);
    qh_model *m = NULL, *m2 = NULL;
    int st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "F32 tiny OPT loads: %s", qh_last_error());
    if (st != QH_OK) { free(before); free_list(&tl); return; }
    QH_CHECK(qh_model_n_mapped_params(m) == qh_model_n_params(m) && qh_model_n_params(m) > 0,
             "every F32 tensor mapped in place (%zu of %zu)", qh_model_n_mapped_params(m),
             qh_model_n_params(m));
    qh_linear *L = &m->blocks[1].lin[QH_LIN_UP];
    QH_CHECK(same_data(L->W, &tl, "model.decoder.layers.1.fc1.weight", (size_t)L->out * L->in),
             "mapped fc1 holds the file's values");
    for (size_t j = 0; j < (size_t)L->out * L->in; j++) L->W[j] = 0.5f;   /* as a quantizer does */
    m->embed_tokens[3] = -2.0f;
    unsigned char *after = read_bytes(path, &n1);
    QH_CHECK(after && n0 == n1 && !memcmp(before, after, n0), "writes into W leave the file unchanged");
    free(after);
    st = qh_model_load(dir, &m2);
    QH_CHECK(st == QH_OK && m2->blocks[1].lin[QH_LIN_UP].W[0] ==
             list_find(&tl, "model.decoder.layers.1.fc1.weight")[0] && m2->embed_tokens[3] ==
             list_find(&tl, "model.decoder.embed_tokens.weight")[3],
             "a second load sees the file, not the first model's writes");
    qh_model_free(m2);
    m2 = NULL;
    /* save elsewhere, then over the source folder while it is mapped */
    snprintf(out, sizeof out, "%s/mapped_saved", tmp_root);
    for (int pass = 0; pass < 2; pass++) {
        const char *to = pass ? dir : out;
        st = qh_model_save(m, to);
        QH_CHECK(st == QH_OK, "save of a mapped model %s: %s", pass ? "over its folder" : "",
                 qh_last_error());
        st = st ? st : qh_model_load(to, &m2);
        /* save_model.h: the linears as held, every other tensor as in the source file */
        int same = st == QH_OK && m2->blocks[1].lin[QH_LIN_UP].W[5] == 0.5f &&
                   m2->embed_tokens[3] == list_find(&tl, "model.decoder.embed_tokens.weight")[3] &&
                   same_data(m2->blocks[0].lin[QH_LIN_Q].W, &tl, "model.decoder.layers.0.self_attn"
                             ".q_proj.weight", 64);
        QH_CHECK(same, "saved %s: the written weights, the rest as loaded", pass ? "in place" : "copy");
        QH_CHECK(L->W[7] == 0.5f && m->embed_tokens[3] == -2.0f,
                 "the mapped model still reads its weights after the save (pass %d)", pass);
        qh_model_free(m2);
        m2 = NULL;
    }
    qh_model_free(m);
    m = NULL;
    /* data section at 8 + header + 1: not 4-byte aligned, so copied */
    free_list(&tl);
    write_tiny(&tiny_opt, "unaligned", dir, sizeof dir, &tl);   /* same values: tl refilled */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    pad_header(path, 1);
    st = qh_model_load(dir, &m);
    QH_CHECK(st == QH_OK, "F32 model with an unaligned data section loads: %s", qh_last_error());
    if (st == QH_OK) {
        L = &m->blocks[1].lin[QH_LIN_UP];
        QH_CHECK(qh_model_n_mapped_params(m) == 0 && ((uintptr_t)L->W % 64) == 0,
                 "unaligned F32 copied into aligned storage (%zu mapped)",
                 qh_model_n_mapped_params(m));
        QH_CHECK(same_data(L->W, &tl, "model.decoder.layers.1.fc1.weight", (size_t)L->out * L->in),
                 "copied fc1 holds the file's values");
    }
    qh_model_free(m);
    free(before);
    free_list(&tl);
}

/* Spilled models (model.h): the same tensors and logits as a model held in
 * memory, nothing mapped in place, no file left in the scratch folder, and
 * writes kept across a release (the pages come back from the scratch file). */
static int scratch_files_left(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, "qh-weights-", 11);
    if (d) closedir(d);
    return n;
}

static void spill_case(const tiny_spec *spec, const char *name)
{
    char dir[768];
    tensor_list tl;
    write_tiny(spec, name, dir, sizeof dir, &tl);
    qh_model *m = NULL, *s = NULL;
    qh_model_load_opts opts = { tmp_root };
    int st = qh_model_load(dir, &m);
    if (st == QH_OK) st = qh_model_load_with(dir, &opts, &s);
    QH_CHECK(st == QH_OK, "%s: loads held and spilled: %s", name, qh_last_error());
    if (st != QH_OK) { qh_model_free(m); free_list(&tl); return; }
    QH_CHECK(qh_model_spilled(s) && !qh_model_spilled(m) && qh_model_n_mapped_params(s) == 0 &&
             qh_model_n_params(s) == qh_model_n_params(m), "%s: spilled, nothing mapped in place", name);
    QH_CHECK(scratch_files_left(tmp_root) == 0, "%s: the scratch file has no name", name);
    /* the blocks are converted when first acquired: before, their pages are unwritten */
    const qh_linear *q0 = &s->blocks[0].lin[QH_LIN_Q];
    int untouched = q0->W != NULL;
    for (size_t j = 0; untouched && j < (size_t)q0->out * q0->in; j++) untouched = q0->W[j] == 0.0f;
    QH_CHECK(untouched, "%s: block 0 not converted before it is acquired", name);
    QH_CHECK(qh_model_acquire_all(s) == QH_OK && qh_model_acquire_all(m) == QH_OK,
             "%s: every block acquired (held: a no-op)", name);
    int same = 1;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            const qh_linear *a = &m->blocks[l].lin[k], *b = &s->blocks[l].lin[k];
            if (!a->W) continue;
            same &= !memcmp(a->W, b->W, (size_t)a->out * a->in * sizeof(float));
            same &= !a->b || !memcmp(a->b, b->b, (size_t)a->out * sizeof(float));
        }
    QH_CHECK(same, "%s: every linear as held in memory, once acquired", name);
    QH_CHECK(same_logits(m, s), "%s: the same logits (blocks released on the way)", name);
    int last = s->cfg.n_layers - 1;
    qh_linear *L = &s->blocks[last].lin[QH_LIN_UP];
    size_t n = (size_t)L->out * L->in;
    for (size_t j = 0; j < n; j++) L->W[j] = 0.5f;       /* as a quantizer does */
    qh_model_release_block(s, last);
    size_t kept = 0;
    for (size_t j = 0; j < n; j++) kept += L->W[j] == 0.5f;
    QH_CHECK(kept == n, "%s: writes survive a release (%zu of %zu)", name, kept, n);
    qh_model_release_block(s, -1);                       /* out of range: a no-op */
    qh_model_release_block(s, s->cfg.n_layers);
    qh_model_release_block(m, 0);                        /* not spilled: a no-op */
    QH_CHECK(same_data(m->blocks[0].lin[QH_LIN_UP].W, &tl, spec->model_type[0] == 'o' ?
                       "model.decoder.layers.0.fc1.weight" : "model.layers.0.mlp.up_proj.weight",
                       (size_t)m->blocks[0].lin[QH_LIN_UP].out * m->blocks[0].lin[QH_LIN_UP].in),
             "%s: a held model keeps its weights after a release call", name);
    qh_model_free(s);
    qh_model_free(m);
    free_list(&tl);
}

static void test_spilled(void)
{
    spill_case(&tiny_opt, "spill_opt_f32");
    spill_case(&tiny_llama, "spill_llama_bf16");
    qh_model *m = NULL, *s = NULL;
    qh_model_load_opts opts = { tmp_root };
    int st = qh_model_load("models/llama-9m", &m);
    if (st == QH_OK) st = qh_model_load_with("models/llama-9m", &opts, &s);
    QH_CHECK(st == QH_OK && same_logits(m, s), "llama-9m spilled: the same logits: %s",
             st ? qh_last_error() : "");
    qh_model_free(s);
    s = NULL;
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such-folder", tmp_root);
    opts.scratch_dir = missing;
    st = qh_model_load_with("models/llama-9m", &opts, &s);
    QH_CHECK(st == QH_EIO && !s && strstr(qh_last_error(), "no-such-folder"),
             "a missing scratch folder: QH_EIO naming it (%d: %s)", st, qh_last_error());
    qh_model_free(m);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/qh_model_io_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_root)) { printf("FAIL: mkdtemp %s\n", tmp_root); return 1; }
    test_conversions();
    test_writer_round_trip();
    test_tiny_opt_variants();
    test_tiny_llama_variants();
    test_mapped_f32();
    test_spilled();
    test_family_table();
    test_llama_layout_row();
    test_bias_switches();
    test_tiny_sharded();
    test_shard_paths();
    test_special_files();
    test_bad_files();
    test_bad_headers();
    test_non_finite();
    test_bad_configs();
    test_opt7m();
    test_llama9m();
    test_opt30m();
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return qh_test_summary();
}
