/* test_wa_config.c -- the "activations" and "kv" configuration keys: parsing,
 * top-level defaults, labels and cell ids, refusals naming the key, the
 * protocol record (keys present only when used). */
#include <stdlib.h>
#include <string.h>

#include "pipeline/config.h"
#include "pipeline/protocol.h"
#include "pipeline/wa_config.h"
#include "qh_test.h"

#define HEAD "{\"name\": \"t\", \"models\": [\"models/opt-7m\"], \"bits\": [4], "

static qh_config *parse(const char *json)
{
    qh_config *c = NULL;
    return qh_config_parse(json, "t.json", &c) == QH_OK ? c : NULL;
}

static void test_parse(void)
{
    qh_config *c = parse(HEAD "\"kv\": {\"bits\": 8}, \"methods\": ["
                         "{\"method\": \"rtn\"},"
                         "{\"method\": \"gptq\", \"activations\": {\"bits\": 4, \"smooth\": \"runtime\","
                         " \"smooth_group\": 128, \"causal\": true}, \"kv\": {\"bits\": 4, \"symmetric\": false}},"
                         "{\"method\": \"gptq\", \"activations\": {\"bits\": 6, \"granularity\": \"tensor\","
                         " \"clip\": 0.9}}]}");
    QH_CHECK(c != NULL, "parse: %s", c ? "" : qh_last_error());
    if (!c) return;
    QH_CHECK(!strcmp(c->methods[0].label, "rtn-KV8"), "top-level kv applies: %s", c->methods[0].label);
    QH_CHECK(!strcmp(c->methods[1].label, "gptq+rs128c-A4KV4"), "label %s", c->methods[1].label);
    QH_CHECK(!strcmp(c->methods[2].label, "gptq-A6KV8"), "label %s", c->methods[2].label);
    const qh_act_quant *w = &c->methods[1].wa;
    QH_CHECK(w->act.bits == 4 && w->smooth && w->smooth_group == 128 && w->smooth_causal &&
             w->kv.bits == 4 && w->kv.asym && !w->act.asym, "entry 1 settings");
    w = &c->methods[2].wa;
    QH_CHECK(w->act.per_tensor && w->act.clip == 0.9f && w->kv.bits == 8, "entry 2 settings");
    qh_cell *cells = NULL;
    size_t n = 0;
    QH_CHECK(qh_config_cells(c, &cells, &n) == QH_OK && n == 3 &&
             !strcmp(cells[1].id, "opt-7m.gptq+rs128c-A4KV4.w4.s0"), "cell id %s", cells ? cells[1].id : "");
    free(cells);
    qh_config_free(c);

    c = parse(HEAD "\"methods\": [{\"method\": \"rtn\"}, {\"method\": \"gptq\", \"incoherence\": \"kron\"}]}");
    QH_CHECK(c && !strcmp(c->methods[0].label, "rtn") && !strcmp(c->methods[1].label, "gptq+incoh") &&
             !qh_wa_active(&c->methods[0].wa), "labels unchanged without the keys");
    qh_config_free(c);
}

static void test_refusals(void)
{
    static const char *const bad[] = {
        HEAD "\"methods\": [{\"method\": \"rtn\", \"activations\": {\"bits\": 1}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"activations\": {\"bits\": 4, \"clip\": 1.5}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"activations\": {\"bitz\": 4}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"activations\": {\"bits\": 4, \"granularity\": \"row\"}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"activations\": {\"bits\": 4, \"causal\": true}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"activations\": {\"bits\": 4, \"smooth\": \"runtime\","
             " \"granularity\": \"tensor\"}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"kv\": {\"bits\": 4, \"granularity\": \"token\"}}]}",
        HEAD "\"activations\": 4, \"methods\": [{\"method\": \"rtn\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qh_config *c = NULL;
        int st = qh_config_parse(bad[i], "t.json", &c);
        QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), "t.json"), "bad config %zu refused: %s", i,
                 st ? qh_last_error() : "accepted");
        qh_config_free(c);
    }
    /* a group that does not divide the model's widths: refused against the model */
    qh_config *c = parse(HEAD "\"methods\": [{\"method\": \"rtn\", \"activations\": {\"bits\": 4, \"group\": 7}}]}");
    qh_model_config mc = { .hidden = 64, .n_heads = 4, .head_dim = 16, .ffn_dim = 256 };
    QH_CHECK(c && qh_wa_validate(c, 0, &mc) == QH_ECONFIG && strstr(qh_last_error(), "methods[0]"),
             "group 7 refused for hidden 64: %s", qh_last_error());
    qh_config_free(c);
}

static void test_protocol(void)
{
    qh_config *c = parse(HEAD "\"calibration\": {\"data\": \"data/wikitext2_test.raw\"}, \"methods\": ["
                         "{\"method\": \"rtn\"}, {\"method\": \"rtn\", \"activations\": {\"bits\": 4}}]}");
    if (!c) { QH_CHECK(0, "parse: %s", qh_last_error()); return; }
    qh_cell *cells = NULL;
    size_t n = 0;
    char *r0 = NULL, *r1 = NULL;
    int st = qh_config_cells(c, &cells, &n);
    if (st == QH_OK) st = qh_protocol_record(c, 0, &cells[0], 1, &r0);
    if (st == QH_OK) st = qh_protocol_record(c, 0, &cells[1], 1, &r1);
    QH_CHECK(st == QH_OK, "records: %s", st ? qh_last_error() : "");
    if (st == QH_OK) {
        QH_CHECK(!strstr(r0, "activations.") && !strstr(r0, "kv."), "weight-only record has no wa keys");
        QH_CHECK(strstr(r1, "\"activations.bits\":\"4\"") && strstr(r1, "\"kv.bits\":\"16\""),
                 "A4 record has its keys");
    }
    free(r0); free(r1); free(cells);
    qh_config_free(c);
}

/* "rotate" and "smooth": labels, protocol keys, refusals. */
static void test_transforms(void)
{
    qh_config *c = parse(HEAD "\"calibration\": {\"data\": \"data/wikitext2_test.raw\"}, \"methods\": ["
                         "{\"method\": \"gptq\", \"rotate\": \"hadamard\", \"activations\": {\"bits\": 4,"
                         " \"smooth\": \"runtime\"}},"
                         "{\"method\": \"rtn\", \"smooth\": {}, \"activations\": {\"bits\": 8}},"
                         "{\"method\": \"rtn\", \"smooth\": {\"alpha\": 0.8}, \"rotate\": \"none\"}]}");
    if (!c) { QH_CHECK(0, "parse: %s", qh_last_error()); return; }
    QH_CHECK(!strcmp(c->methods[0].label, "gptq+rot+rs-A4") && c->methods[0].tf.rotate,
             "rotation label: %s", c->methods[0].label);
    QH_CHECK(!strcmp(c->methods[1].label, "rtn+sq-A8") && c->methods[1].tf.smooth_alpha == 0.5,
             "smooth label and default alpha: %s", c->methods[1].label);
    QH_CHECK(!strcmp(c->methods[2].label, "rtn+sq80") && !c->methods[2].tf.rotate,
             "alpha in the label: %s", c->methods[2].label);
    qh_cell *cells = NULL;
    size_t n = 0;
    char *r0 = NULL, *r1 = NULL;
    int st = qh_config_cells(c, &cells, &n);
    if (st == QH_OK) st = qh_protocol_record(c, 0, &cells[0], 1, &r0);
    if (st == QH_OK) st = qh_protocol_record(c, 0, &cells[2], 1, &r1);
    QH_CHECK(st == QH_OK && strstr(r0, "\"rotate\":\"hadamard\"") && !strstr(r0, "smooth.alpha") &&
             strstr(r1, "\"smooth.alpha\":\"0.8\"") && !strstr(r1, "\"rotate\""),
             "protocol keys only when used");
    free(r0); free(r1); free(cells);
    qh_config_free(c);
    static const char *const bad[] = {
        HEAD "\"methods\": [{\"method\": \"rtn\", \"rotate\": \"random\"}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"smooth\": {\"alpha\": 1.5}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"smooth\": {\"beta\": 1}}]}",
        HEAD "\"methods\": [{\"method\": \"rtn\", \"smooth\": 0.5}]}",
    };
    const char *keys[] = { "rotate", "alpha", "beta", "smooth" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qh_config *b = NULL;
        st = qh_config_parse(bad[i], "t.json", &b);
        QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), keys[i]), "bad transform %zu refused: %s",
                 i, st ? qh_last_error() : "accepted");
        qh_config_free(b);
    }
}

int main(void)
{
    test_parse();
    test_transforms();
    test_refusals();
    test_protocol();
    return qh_test_summary();
}
