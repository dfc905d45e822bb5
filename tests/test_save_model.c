/* test_save_model.c -- a modified model written as a Hugging Face folder
 * keeps every tensor's stored dtype (F16 opt-7m, BF16 llama-9m, F32 gpt2)
 * and reloads with the model's weights rounded to nearest even into that
 * dtype, exactly, and the identical NLL of the so-rounded model; the
 * metadata file and the tokenizer files are written. */
#include "qh_test.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/eval.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/save_model.h"

/* The dtype of the linear's weight tensor in folder dir (-1: not found). */
static int stored_dtype(const char *dir, const char *tensor)
{
    qh_st_set *set = NULL;
    char name[128];
    snprintf(name, sizeof name, "%s.weight", tensor);
    if (qh_st_set_open(dir, &set) != QH_OK) return -1;
    const qh_st_file *f = NULL;
    const qh_st_tensor *t = qh_st_set_find(set, name, &f);
    int dt = t ? (int)t->dtype : -1;
    qh_st_set_close(set);
    return dt;
}

/* x rounded to nearest even in dtype dt (F32: unchanged). */
static float round_to(int dt, float x)
{
    if (dt == QH_ST_BF16) return qh_bf16_to_f32(qh_f32_to_bf16(x));
    if (dt == QH_ST_F16) return qh_f16_to_f32(qh_f32_to_f16(x));
    return x;
}

static void check_model(const char *dir)
{
    qh_model *m = NULL, *r = NULL;
    if (qh_model_load(dir, &m) != QH_OK) { QH_CHECK(0, "load %s: %s", dir, qh_last_error()); return; }
    /* Change every decoder linear so that a copy of the source would fail. */
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            qh_linear *lin = &m->blocks[l].lin[k];
            for (size_t i = 0; lin->W && i < (size_t)lin->out * lin->in; i++) lin->W[i] = 0.5f * lin->W[i] + 1e-3f;
        }
    char out[] = "/tmp/qh_save_XXXXXX";
    QH_CHECK(mkdtemp(out) != NULL, "mkdtemp");
    int st = qh_model_save_meta(m, out, "{\"method\": \"test\"}");
    QH_CHECK(st == QH_OK, "%s: save: %s", dir, qh_last_error());
    /* the stored dtype is kept; the in-memory model rounded to it is what reloads */
    int dt = stored_dtype(dir, m->blocks[0].lin[QH_LIN_O].name);
    int dt_out = stored_dtype(out, m->blocks[0].lin[QH_LIN_O].name);
    QH_CHECK(dt >= 0 && dt == dt_out, "%s: stored dtype %s kept (saved %s)", dir,
             dt >= 0 ? qh_st_dtype_name((qh_st_dtype)dt) : "?",
             dt_out >= 0 ? qh_st_dtype_name((qh_st_dtype)dt_out) : "?");
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < QH_LIN_MAX; k++) {
            qh_linear *lin = &m->blocks[l].lin[k];
            for (size_t i = 0; lin->W && i < (size_t)lin->out * lin->in; i++)
                lin->W[i] = round_to(dt, lin->W[i]);
        }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", out, QH_SAVE_META_FILE);
    QH_CHECK(access(path, R_OK) == 0, "%s: %s written", dir, QH_SAVE_META_FILE);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int has_tok = access(path, R_OK) == 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", out);
    QH_CHECK(!has_tok || access(path, R_OK) == 0, "%s: tokenizer.json copied", dir);
    st = qh_model_load(out, &r);
    QH_CHECK(st == QH_OK, "%s: reload: %s", dir, qh_last_error());
    if (st == QH_OK) {
        int same = 1;
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int k = 0; k < QH_LIN_MAX; k++) {
                const qh_linear *a = &m->blocks[l].lin[k], *b = &r->blocks[l].lin[k];
                if (a->W) same &= b->W && !memcmp(a->W, b->W, sizeof(float) * (size_t)a->out * a->in);
            }
        QH_CHECK(same, "%s: every decoder linear reloads as the model's weights rounded to %s",
                 dir, dt >= 0 ? qh_st_dtype_name((qh_st_dtype)dt) : "?");
        size_t emb = (size_t)m->cfg.vocab_size * m->cfg.embed_dim;
        QH_CHECK(!memcmp(m->embed_tokens, r->embed_tokens, emb * sizeof(float)), "%s: embeddings kept", dir);
        QH_CHECK(!memcmp(m->lm_head, r->lm_head, emb * sizeof(float))
                 && r->cfg.features.tied_head == m->cfg.features.tied_head,
                 "%s: head kept (tied %d)", dir, m->cfg.features.tied_head);
        int32_t ids[64];
        for (int i = 0; i < 64; i++) ids[i] = (i * 131 + 7) % m->cfg.vocab_size;
        qh_eval_result ra, rb;
        QH_CHECK(qh_eval_ppl(m, ids, 64, 64, 1, NULL, NULL, &ra) == QH_OK
                 && qh_eval_ppl(r, ids, 64, 64, 1, NULL, NULL, &rb) == QH_OK, "evaluate both");
        QH_CHECK(ra.window_nll[0] == rb.window_nll[0], "%s: identical NLL %.9f vs %.9f", dir,
                 ra.window_nll[0], rb.window_nll[0]);
        qh_eval_result_free(&ra);
        qh_eval_result_free(&rb);
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    QH_CHECK(system(cmd) == 0, "cleanup");
    qh_model_free(r);
    qh_model_free(m);
}

int main(void)
{
    check_model("models/opt-7m");
    check_model("models/llama-9m");
    check_model("tests/data/families/gpt2");
    qh_model *m = NULL;
    QH_CHECK(qh_model_load("models/opt-7m", &m) == QH_OK, "load");
    if (m) QH_CHECK(qh_model_save(m, "/nonexistent-dir/x/y") == QH_EIO && strstr(qh_last_error(), "/nonexistent-dir"),
                    "unwritable folder is an error naming it: %s", qh_last_error());
    qh_model_free(m);
    return qh_test_summary();
}
