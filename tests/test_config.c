/* test_config.c -- strict parsing and cell expansion of sweep configurations. */
#include "qh_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "pipeline/config.h"
#include "pipeline/pipeline.h"

static const char *good =
    "{ \"name\": \"t\", \"models\": [\"models/opt-7m\", {\"label\": \"L\", \"path\": \"x/llama\"}],\n"
    "  \"datasets\": {\"wikitext2\": \"data/wikitext2_test.raw\"},\n"
    "  \"calibration\": {\"nsamples\": 16, \"seqlen\": 256},\n"
    "  \"eval\": {\"seqlen\": 512, \"max_windows\": 4},\n"
    "  \"methods\": [{\"method\": \"gptq\", \"params\": {\"act_order\": true, \"block\": 64}},\n"
    "              {\"method\": \"ldlq\", \"incoherence\": \"kron\"}],\n"
    "  \"bits\": [2, 4], \"seeds\": [0, 7] }";

/* eval.kl_topk and tasks: parsed, and a bad value names its key. */
static void test_metrics_keys(void)
{
    const char *json = "{ \"name\": \"t\", \"models\": [\"m\"], \"eval\": {\"kl_topk\": 0},\n"
                       "  \"tasks\": {\"cloze\": \"tests/data/gutenberg_cloze.jsonl\"},\n"
                       "  \"methods\": [{\"method\": \"rtn\"}], \"bits\": [3] }";
    qh_config *c = NULL;
    int st = qh_config_parse(json, "metrics.json", &c);
    QH_CHECK(st == QH_OK && c->eval_kl_topk == 0 && c->n_tasks == 1 && !strcmp(c->tasks[0].label, "cloze")
             && !strcmp(c->tasks[0].path, "tests/data/gutenberg_cloze.jsonl"), "kl_topk 0 and one task: %s",
             st == QH_OK ? "" : qh_last_error());
    qh_config_free(c);
    c = NULL;
    const char *bad = "{ \"name\": \"t\", \"models\": [\"m\"], \"eval\": {\"kl_topk\": -1},\n"
                      "  \"methods\": [{\"method\": \"rtn\"}], \"bits\": [3] }";
    st = qh_config_parse(bad, "metrics.json", &c);
    QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), "eval.kl_topk"), "negative kl_topk refused: %s",
             qh_last_error());
    qh_config_free(c);
}

static void test_good(void)
{
    qh_config *c = NULL;
    int st = qh_config_parse(good, "good.json", &c);
    QH_CHECK(st == QH_OK, "good config parses: %s", qh_last_error());
    if (st != QH_OK) return;
    QH_CHECK(c->n_models == 2 && !strcmp(c->models[0].label, "opt-7m") && !strcmp(c->models[1].label, "L"),
             "model labels default to the folder name");
    QH_CHECK(c->calib_nsamples == 16 && c->calib_seqlen == 256 && c->eval_seqlen == 512
             && c->eval_max_windows == 4, "calibration and eval values");
    QH_CHECK(c->eval_kl_topk == QH_EVAL_KL_TOPK_DEFAULT && c->n_tasks == 0,
             "fidelity metrics on by default (k %d), no tasks", c->eval_kl_topk);
    QH_CHECK(!strcmp(c->calib_path, "data/gutenberg_calib_4M.txt"), "default calibration set");
    QH_CHECK(c->calib_act_dtype == QH_ACT_F32, "hidden states float32 by default");
    QH_CHECK(c->methods[0].n_params == 2 && !strcmp(c->methods[0].params[0].value, "true")
             && !strcmp(c->methods[0].params[1].value, "64"), "parameters kept as text");
    QH_CHECK(!strcmp(c->methods[1].label, "ldlq+incoh") && c->methods[1].rescale == 1,
             "incoherence label default");
    qh_cell *cells = NULL;
    size_t n = 0;
    QH_CHECK(qh_config_cells(c, &cells, &n) == QH_OK && n == 16, "2x2x2x2 cells, got %zu", n);
    if (n == 16) {
        QH_CHECK(!strcmp(cells[0].id, "opt-7m.gptq.w2.s0"), "first id %s", cells[0].id);
        QH_CHECK(!strcmp(cells[15].id, "L.ldlq+incoh.w4.s7"), "last id %s", cells[15].id);
        int matched = 0;
        for (size_t i = 0; i < n; i++) matched += qh_cell_matches(&cells[i], "*.ldlq+incoh.w2.*");
        QH_CHECK(matched == 4, "--only pattern matches 4 cells, got %d", matched);
    }
    free(cells);
    qh_config_free(c);
}

/* Default labels come from the incoherence table: kron and hadamard entries
 * of one method get distinct labels, so they no longer collide. */
static void test_default_labels(void)
{
    const char *json =
        "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],\"methods\":["
        "{\"method\":\"ldlq\"},{\"method\":\"ldlq\",\"incoherence\":\"kron\"},"
        "{\"method\":\"ldlq\",\"incoherence\":\"hadamard\"},"
        "{\"method\":\"ldlq\",\"incoherence\":\"none\",\"label\":\"mine\"}]}";
    qh_config *c = NULL;
    int st = qh_config_parse(json, "labels.json", &c);
    QH_CHECK(st == QH_OK, "none, kron and hadamard entries of one method parse: %s", qh_last_error());
    if (st != QH_OK) return;
    QH_CHECK(!strcmp(c->methods[0].label, "ldlq") && !strcmp(c->methods[1].label, "ldlq+incoh")
             && !strcmp(c->methods[2].label, "ldlq+rht") && !strcmp(c->methods[3].label, "mine"),
             "labels ldlq, ldlq+incoh, ldlq+rht, mine: %s %s %s %s", c->methods[0].label,
             c->methods[1].label, c->methods[2].label, c->methods[3].label);
    qh_cell *cells = NULL;
    size_t n = 0;
    QH_CHECK(qh_config_cells(c, &cells, &n) == QH_OK && n == 4 && !strcmp(cells[2].id, "m.ldlq+rht.w2.s0"),
             "hadamard cell id m.ldlq+rht.w2.s0: %s", n == 4 ? cells[2].id : "(none)");
    free(cells);
    qh_config_free(c);
    /* the table's suffix for every kind */
    char buf[96];
    for (const qh_incoh_row *r = qh_incoh_table(); r->name; r++) {
        char want[96];
        snprintf(want, sizeof want, "gptq%s", r->label_suffix);
        QH_CHECK(qh_config_default_label(buf, sizeof buf, "gptq", r->kind, QH_VARIANT_DEFAULT) == QH_OK
                 && !strcmp(buf, want), "default label under %s: %s (want %s)", r->name, buf, want);
    }
}

/* "variant": the top level sets every entry's, an entry's own overrides it,
 * explicit params stay as written (the pipeline applies them after the
 * variant's values), and a reference entry's default label ends in -ref so
 * that it does not collide with the default entry of the same method. */
static void test_variant(void)
{
    const char *json =
        "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],\"variant\":\"reference\",\"methods\":["
        "{\"method\":\"quipsharp\",\"incoherence\":\"hadamard\"},"
        "{\"method\":\"quipsharp\",\"incoherence\":\"hadamard\",\"variant\":\"default\"},"
        "{\"method\":\"quipsharp\",\"incoherence\":\"hadamard\",\"label\":\"qs10\","
        "\"params\":{\"tune_iters\":3}}]}";
    qh_config *c = NULL;
    int st = qh_config_parse(json, "variant.json", &c);
    QH_CHECK(st == QH_OK, "top-level and per-entry variants parse: %s", qh_last_error());
    if (st != QH_OK) return;
    QH_CHECK(c->variant == QH_VARIANT_REFERENCE && c->methods[0].variant == QH_VARIANT_REFERENCE
             && c->methods[1].variant == QH_VARIANT_DEFAULT && c->methods[2].variant == QH_VARIANT_REFERENCE,
             "entries inherit the top-level variant unless they set their own");
    QH_CHECK(!strcmp(c->methods[0].label, "quipsharp+rht-ref") && !strcmp(c->methods[1].label, "quipsharp+rht")
             && !strcmp(c->methods[2].label, "qs10"), "labels quipsharp+rht-ref, quipsharp+rht, qs10: %s %s %s",
             c->methods[0].label, c->methods[1].label, c->methods[2].label);
    QH_CHECK(c->methods[2].n_params == 1 && !strcmp(c->methods[2].params[0].key, "tune_iters")
             && !strcmp(c->methods[2].params[0].value, "3"), "explicit params kept beside the variant");
    qh_config_free(c);
    /* Without a top-level variant, entries default to "default"; one entry alone may ask. */
    const char *one =
        "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],\"methods\":["
        "{\"method\":\"aqlm\"},{\"method\":\"aqlm\",\"variant\":\"reference\"}]}";
    st = qh_config_parse(one, "variant.json", &c);
    QH_CHECK(st == QH_OK && c->methods[0].variant == QH_VARIANT_DEFAULT
             && c->methods[1].variant == QH_VARIANT_REFERENCE && !strcmp(c->methods[0].label, "aqlm")
             && !strcmp(c->methods[1].label, "aqlm-ref"), "per-entry variant alone: aqlm, aqlm-ref");
    qh_config_free(c);
    char buf[96];
    QH_CHECK(qh_config_default_label(buf, sizeof buf, "ldlq", QH_INCOH_KRON, QH_VARIANT_REFERENCE) == QH_OK
             && !strcmp(buf, "ldlq+incoh-ref"), "default label ldlq+incoh-ref: %s", buf);
}

/* One cell id for `qh run` and `qh layer`; an id that does not fit is an
 * error, never a truncated (and possibly colliding) name. */
static void test_cell_id(void)
{
    char id[32];
    QH_CHECK(qh_config_cell_id(id, sizeof id, "opt-7m", "ldlq+incoh", 2, 7) == QH_OK
             && !strcmp(id, "opt-7m.ldlq+incoh.w2.s7"), "cell id %s", id);
    QH_CHECK(qh_config_cell_id(id, 23, "opt-7m", "ldlq+incoh", 2, 7) == QH_EINVAL
             && strstr(qh_last_error(), "cell id"), "an id one byte too long is refused: %s", qh_last_error());
    QH_CHECK(qh_config_cell_id(id, 24, "opt-7m", "ldlq+incoh", 2, 7) == QH_OK, "an id that just fits");
}

/* Each bad config must fail with QH_ECONFIG and a message naming the key path. */
static void test_bad(const char *json, const char *expect_in_message)
{
    qh_config *c = NULL;
    int st = qh_config_parse(json, "bad.json", &c);
    QH_CHECK(st == QH_ECONFIG && c == NULL, "rejects %s (status %d)", expect_in_message, st);
    QH_CHECK(strstr(qh_last_error(), expect_in_message) && strstr(qh_last_error(), "bad.json"),
             "message names '%s' and the file: %s", expect_in_message, qh_last_error());
    qh_config_free(c);
}

/* `qh run` on a config that parses but fails validation (9 bits) returns 1;
 * the parsed config is freed on that path (LeakSanitizer, in make test-asan,
 * fails this program otherwise). */
static void test_run_refuses_invalid(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/qh_cfg_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    QH_CHECK(fd >= 0, "cannot create a temporary config");
    if (fd < 0) return;
    const char *json = "{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],"
                       "\"bits\":[9]}";
    int wrote = write(fd, json, strlen(json)) == (ssize_t)strlen(json);
    close(fd);
    QH_CHECK(wrote, "cannot write %s", path);
    /* several times: LeakSanitizer scans the stack conservatively, and a
     * stale copy of the last pointer may hide that one leak */
    for (int i = 0; i < 4 && wrote; i++) {
        char *argv[] = { "run", path, NULL };
        QH_CHECK(qh_cmd_run(2, argv) == 1, "qh run refuses a config with bits 9 (call %d)", i + 1);
    }
    unlink(path);
}

/* Per-method bits and seeds: each entry's own cross product, the sweep's
 * lists for the others; ids as before. */
static void test_method_bits(void)
{
    const char *json =
        "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[3],\"seeds\":[0],\"methods\":["
        "{\"method\":\"gptq\"},{\"method\":\"ldlq\",\"incoherence\":\"kron\",\"bits\":[2,4],"
        "\"seeds\":[1,2]}]}";
    qh_config *c = NULL;
    int st = qh_config_parse(json, "mb.json", &c);
    QH_CHECK(st == QH_OK, "per-method bits parse: %s", qh_last_error());
    if (st != QH_OK) return;
    qh_cell *cells = NULL;
    size_t n = 0;
    QH_CHECK(qh_config_cells(c, &cells, &n) == QH_OK && n == 5, "1 + 2x2 cells, got %zu", n);
    if (n == 5) {
        QH_CHECK(!strcmp(cells[0].id, "m.gptq.w3.s0"), "sweep bits for gptq: %s", cells[0].id);
        QH_CHECK(!strcmp(cells[1].id, "m.ldlq+incoh.w2.s1") && !strcmp(cells[4].id, "m.ldlq+incoh.w4.s2"),
                 "entry's own bits and seeds: %s .. %s", cells[1].id, cells[4].id);
    }
    free(cells);
    qh_config_free(c);
    /* every entry with its own bits: the sweep's may be left out */
    st = qh_config_parse("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":["
                         "{\"method\":\"gptq\",\"bits\":[3]},{\"method\":\"rtn\",\"bits\":[2]}]}",
                         "own.json", &c);
    QH_CHECK(st == QH_OK && qh_config_cells(c, &cells, &n) == QH_OK && n == 2
             && !strcmp(cells[1].id, "m.rtn.w2.s0"), "top-level bits optional when every entry has its own");
    if (st == QH_OK) free(cells);
    qh_config_free(c);
}

/* Rules: glob and regex, bits / skip / params, top level before the entry,
 * later rules winning. */
static void test_rules(void)
{
    const char *json =
        "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],"
        "\"layers\":[{\"match\":\"*.layers.0.*\",\"skip\":true},"
        "             {\"match\":\"re:fc[12]$\",\"bits\":4}],"
        "\"methods\":[{\"method\":\"gptq\"},"
        "  {\"method\":\"rtn\",\"layers\":[{\"match\":\"*.layers.0.fc1\",\"skip\":true},"
        "    {\"match\":\"*.q_proj\",\"params\":{\"group\":64}},"
        "    {\"match\":\"*.layers.1.q_proj\",\"params\":{\"group\":32},\"bits\":3}]}]}";
    qh_config *c = NULL;
    int st = qh_config_parse(json, "rules.json", &c);
    QH_CHECK(st == QH_OK, "rules parse: %s", qh_last_error());
    if (st != QH_OK) return;
    QH_CHECK(c->n_rules == 2 && c->methods[1].n_rules == 3 && qh_config_rule_count(c, 0) == 2
             && qh_config_rule_count(c, 1) == 5, "rule counts");
    qh_linear_setting ls;
    qh_config_linear_setting(c, 0, "model.layers.0.self_attn.q_proj", 2, &ls);
    QH_CHECK(ls.skip == 1 && ls.n_rules_hit == 1, "glob skip");
    qh_config_linear_setting(c, 0, "model.layers.0.fc1", 2, &ls);
    QH_CHECK(!ls.skip && ls.bits == 4, "a later bits rule un-skips (later wins)");
    qh_config_linear_setting(c, 0, "model.layers.3.fc2", 2, &ls);
    QH_CHECK(!ls.skip && ls.bits == 4 && ls.n_rules_hit == 1, "regex bits");
    qh_config_linear_setting(c, 0, "model.layers.3.fc2x", 2, &ls);
    QH_CHECK(ls.bits == 2 && ls.n_rules_hit == 0, "regex anchored with $");
    qh_config_linear_setting(c, 1, "model.layers.0.fc1", 2, &ls);
    QH_CHECK(ls.skip == 1, "the entry's rules come after the top level's");
    qh_config_linear_setting(c, 1, "model.layers.1.q_proj", 2, &ls);
    QH_CHECK(ls.bits == 3 && ls.n_params == 1 && !strcmp(ls.params[0]->value, "32"),
             "a later rule's parameter replaces the earlier value (%zu)", ls.n_params);
    qh_config_linear_setting(c, 1, "model.layers.2.q_proj", 2, &ls);
    QH_CHECK(ls.bits == 2 && ls.n_params == 1 && !strcmp(ls.params[0]->value, "64"), "params rule");
    qh_config_free(c);
}

/* A calibration setting (json_fmt holds the methods at %s) that parses with
 * gptq (check: the parsed value) and that `refusing` (a method entry) refuses
 * at validation with QH_EUNIMPL and a message holding `message`. */
static void calibration_case(const char *what, const char *json_fmt, int (*check)(const qh_config *),
                             const char *refusing, const char *message)
{
    char buf[512];
    qh_config *c = NULL;
    snprintf(buf, sizeof buf, json_fmt, "{\"method\":\"gptq\"}");
    QH_CHECK(qh_config_parse(buf, "t.json", &c) == QH_OK && check(c), "%s parses: %s", what,
             qh_last_error());
    qh_config_free(c);
    c = NULL;
    snprintf(buf, sizeof buf, json_fmt, refusing);
    QH_CHECK(qh_config_parse(buf, "t.json", &c) == QH_OK, "%s with %s parses", what, refusing);
    QH_CHECK(c && qh_pipeline_validate(c) == QH_EUNIMPL && strstr(qh_last_error(), message),
             "%s refused with %s: %s", what, refusing, qh_last_error());
    qh_config_free(c);
}

static int is_bf16(const qh_config *c) { return c->calib_act_dtype == QH_ACT_BF16; }
static int is_three_blocks(const qh_config *c) { return c->calib_max_blocks == 3; }

/* calibration.act_dtype: 16-bit states parse, and a row whose block stage
 * reads float32 states refuses them at validation, naming the key;
 * calibration.max_blocks: parses, and a row whose whole-model stage tunes
 * every block refuses it. */
static void test_calibration_keys(void)
{
    calibration_case("act_dtype bf16", "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],"
                     "\"calibration\":{\"act_dtype\":\"bf16\"},\"methods\":[%s]}", is_bf16,
                     "{\"method\":\"signround\",\"params\":{\"iters\":4}}",
                     "needs calibration.act_dtype \"f32\" (got \"bf16\")");
    calibration_case("max_blocks 3", "{\"name\":\"t\",\"models\":[\"m\"],\"bits\":[2],"
                     "\"calibration\":{\"max_blocks\":3},\"methods\":[%s]}", is_three_blocks,
                     "{\"method\":\"mpo\",\"params\":{\"heal_kl_steps\":2}}",
                     "calibration.max_blocks (3) leaves blocks unvisited");
}

int main(void)
{
    test_method_bits();
    test_rules();
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"layers\":[{\"match\":\"x\",\"bitz\":3}]}", "layers[0]: unknown key \"bitz\"");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"layers\":[{\"match\":\"x\"}]}", "layers[0]: a rule sets");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\",\"layers\":"
             "[{\"match\":\"re:(\",\"bits\":3}]}],\"bits\":[2]}", "methods[0].layers[0].match: regular expression");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"layers\":[{\"match\":\"x\",\"skip\":true,\"bits\":3}]}", "takes no \"bits\"");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\",\"bits\":[0]}]}",
             "methods[0].bits[0]");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"},"
             "{\"method\":\"gptq\",\"bits\":[2]}]}", "bits: missing");
    test_good();
    test_metrics_keys();
    test_default_labels();
    test_variant();
    test_cell_id();
    test_bad("{ \"name\": \"t\", ", "not valid JSON");
    test_bad("[1]", "expected a JSON object");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],\"bogus\":1}",
             "unknown key \"bogus\"");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}]}", "bits: missing");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2, 0]}",
             "bits[1]: expected an integer in [1, 16]");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[\"2\"]}",
             "bits[0]: expected an integer");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"},{\"method\":\"rtn\"}],\"bits\":[2]}",
             "methods[1]: duplicate label");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\",\"incoherence\":\"fft\"}],\"bits\":[2]}",
             "methods[0].incoherence");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\",\"incoherence\":\"fft\"}],\"bits\":[2]}",
             "unknown incoherence \"fft\" (expected one of: none, kron, hadamard)");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\",\"params\":{\"x\":[1]}}],\"bits\":[2]}",
             "methods[0].params.x");
    test_bad("{\"name\":\"t\",\"models\":[\"a/m0123456789m0123456789m0123456789m0123456789m0123456789m0123456789\"],"
             "\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2]}", "models[0]: folder name");
    test_bad("{\"name\":\"t\",\"models\":[\"a/m\",\"b/m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2]}",
             "models[1]: duplicate label");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"calibration\":{\"nsamples\":0}}", "calibration.nsamples");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"calibration\":{\"act_dtype\":\"fp8\"}}",
             "calibration.act_dtype: \"fp8\": expected one of f32, bf16, f16");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"calibration\":{\"act_dtype\":16}}", "calibration.act_dtype: expected a string");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"calibration\":{\"max_blocks\":0}}", "calibration.max_blocks: expected an integer in [1, 4096]");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"eval\":{\"seqlen\":1.5}}", "eval.seqlen: expected an integer");
    /* integers beyond long's range are refused before converting (1e999 is inf) */
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[1e20]}",
             "bits[0]: expected an integer in [1, 16], got 1e+20");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[-1e20]}",
             "bits[0]: expected an integer in [1, 16], got -1e+20");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"seeds\":[1e999]}", "seeds[0]: expected an integer in [0, 2147483647], got inf");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"calibration\":{\"nsamples\":1e19}}", "calibration.nsamples: expected an integer in");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\"}],\"bits\":[2],"
             "\"variant\":\"authors\"}", "variant: unknown variant \"authors\" (expected one of: default, reference)");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\",\"variant\":\"ref\"}],"
             "\"bits\":[2]}", "methods[0].variant: unknown variant \"ref\" (expected one of: default, reference)");
    test_bad("{\"name\":\"t\",\"models\":[\"m\"],\"methods\":[{\"method\":\"rtn\",\"variant\":1}],"
             "\"bits\":[2]}", "methods[0].variant: expected a string, one of: default, reference");
    test_run_refuses_invalid();
    qh_config *c = NULL;
    QH_CHECK(qh_config_load("tests/no-such-config.json", &c) == QH_EIO
             && strstr(qh_last_error(), "tests/no-such-config.json"), "missing file names the path");
    test_calibration_keys();
    return qh_test_summary();
}
