/* test_protocol.c -- the protocol record of a cell (pipeline/protocol.h), the
 * record comparison (results/record.h) and the checks a sweep gets against
 * its models before the first cell (qh_pipeline_validate); code.sources and
 * what a cell of other code, or of the version-1 record, is told. */
#include "qh_test.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/config.h"
#include "pipeline/pipeline.h"
#include "pipeline/protocol.h"
#include "pipeline/sweep.h"
#include "qh_clock.h"
#include "results/record.h"
#include "results/writer.h"

static const char *base =
    "{ \"name\": \"t\", \"models\": [\"models/opt-7m\"],\n"
    "  \"datasets\": {\"wikitext2\": \"data/wikitext2_test.raw\"},\n"
    "  \"calibration\": {\"nsamples\": %d%s},\n"
    "  \"eval\": {\"seqlen\": %d, \"max_windows\": 2},\n"
    "  \"methods\": [%s],\n"
    "  \"bits\": [%s] }";

static qh_config *config(int nsamples, int calib_seqlen, int eval_seqlen, const char *methods,
                         const char *bits)
{
    char json[2048], seqlen[64] = "";
    qh_config *c = NULL;
    if (calib_seqlen) snprintf(seqlen, sizeof seqlen, ", \"seqlen\": %d", calib_seqlen);
    snprintf(json, sizeof json, base, nsamples, seqlen, eval_seqlen, methods, bits);
    if (qh_config_parse(json, "test.json", &c) != QH_OK) {
        printf("FAIL: config does not parse: %s\n", qh_last_error());
        return NULL;
    }
    return c;
}

static char *record_of(const qh_config *c, int cell_index)
{
    qh_cell *cells = NULL;
    size_t n = 0;
    char *rec = NULL;
    if (qh_config_cells(c, &cells, &n) != QH_OK || (cell_index >= 0 && (size_t)cell_index >= n)) {
        free(cells);
        return NULL;
    }
    int st = cell_index < 0 ? qh_protocol_record(c, 0, NULL, 3, &rec)
                            : qh_protocol_record(c, 0, &cells[cell_index], 3, &rec);
    free(cells);
    return st == QH_OK ? rec : NULL;
}

static void test_record_diff(void)
{
    char keys[64];
    size_t n = 99;
    const char *a = "{\"a\":1,\"b\":\"x\",\"c.d\":true,\"e\":null}";
    const char *b = "{\"a\":1,\"b\":\"y\",\"c.d\":false,\"f\":2}";
    QH_CHECK(qh_record_diff(a, a, NULL, NULL, keys, sizeof keys, &n) == QH_OK && n == 0 && !keys[0],
             "a record equals itself");
    QH_CHECK(qh_record_diff(a, b, NULL, NULL, keys, sizeof keys, &n) == QH_OK && n == 4
             && !strcmp(keys, "b, c.d, e, f"), "differing and one-sided keys, sorted: %zu '%s'", n, keys);
    const char *only[] = { "c.", NULL }, *skip[] = { "b", "e", "f", NULL };
    QH_CHECK(qh_record_diff(a, b, only, NULL, keys, sizeof keys, &n) == QH_OK && n == 1
             && !strcmp(keys, "c.d"), "only: '%s'", keys);
    QH_CHECK(qh_record_diff(a, b, NULL, skip, keys, sizeof keys, &n) == QH_OK && n == 1
             && !strcmp(keys, "c.d"), "skip: '%s'", keys);
    QH_CHECK(qh_record_diff(a, b, NULL, NULL, keys, 10, &n) == QH_OK && n == 4 && strstr(keys, "..."),
             "a long list ends in ...: '%s'", keys);
    QH_CHECK(qh_record_diff("[1]", a, NULL, NULL, keys, sizeof keys, &n) == QH_EINVAL
             && strstr(qh_last_error(), "not a JSON object"), "an array is not a record");
    char v[32];
    QH_CHECK(qh_record_get(b, "b", v, sizeof v) == 1 && !strcmp(v, "y"), "get a string");
    QH_CHECK(qh_record_get(b, "f", v, sizeof v) == 1 && !strcmp(v, "2"), "get a number");
    QH_CHECK(qh_record_get(b, "zz", v, sizeof v) == 0 && !v[0], "get an absent key");
}

static void test_file_hash(void)
{
    char path[] = "/tmp/qh_protocol_XXXXXX", hex[65];
    int fd = mkstemp(path);
    QH_CHECK(fd >= 0 && write(fd, "abc", 3) == 3, "temporary file");
    close(fd);
    QH_CHECK(qh_file_sha256(path, hex) == QH_OK && !strcmp(hex,
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "SHA-256 of 'abc': %s", hex);
    QH_CHECK(qh_file_sha256(path, hex) == QH_OK && hex[0] == 'b', "cached hash");
    /* A changed file (other size) is hashed again, not served from the cache. */
    FILE *f = fopen(path, "a");
    fputs("d", f);
    fclose(f);
    QH_CHECK(qh_file_sha256(path, hex) == QH_OK && !strcmp(hex,
             "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"), "SHA-256 of 'abcd': %s", hex);
    unlink(path);
    QH_CHECK(qh_file_sha256(path, hex) == QH_EIO && strstr(qh_last_error(), path), "missing file named");
}

/* Keys appear once each, in sorted order, on one line. */
static int sorted_keys(const char *rec)
{
    cJSON *j = cJSON_Parse(rec);
    int ok = cJSON_IsObject(j) && !strchr(rec, '\n');
    for (const cJSON *it = j ? j->child : NULL; ok && it && it->next; it = it->next)
        ok = strcmp(it->string, it->next->string) < 0;
    cJSON_Delete(j);
    return ok;
}

static void test_record(void)
{
    qh_config *c = config(4, 0, 256, "{\"method\": \"gptq\", \"params\": {\"damp\": 0.02}}", "3");
    qh_config *c2 = config(5, 0, 256, "{\"method\": \"gptq\", \"params\": {\"damp\": 0.02}}", "3");
    if (!c || !c2) { qh_n_fail++; qh_config_free(c); qh_config_free(c2); return; }
    double t0 = qh_seconds();
    char *r = record_of(c, 0);
    double t1 = qh_seconds();
    char *again = record_of(c, 0);
    double t2 = qh_seconds();
    char *r2 = record_of(c2, 0), *bl = record_of(c, -1);
    QH_CHECK(r && again && r2 && bl, "records built: %s", qh_last_error());
    if (!r || !again || !r2 || !bl) goto done;
    QH_NOTE("opt-7m record: first %.3f s (hashes every file), then %.4f s (cached)", t1 - t0, t2 - t1);
    QH_CHECK(!strcmp(r, again), "the record is canonical: equal text twice");
    QH_CHECK(sorted_keys(r), "keys sorted: %s", r);
    char v[128];
    QH_CHECK(qh_record_get(r, "method.param.damp", v, sizeof v) && !strcmp(v, "0.02"), "set parameter: %s", v);
    QH_CHECK(qh_record_get(r, "method.param.blocksize", v, sizeof v) && !strcmp(v, "128"),
             "default parameter recorded: %s", v);
    QH_CHECK(qh_record_get(r, "calibration.seqlen", v, sizeof v) && !strcmp(v, "1024"),
             "seqlen 0 resolved to max_position_embeddings: %s", v);
    QH_CHECK(qh_record_get(r, "model.file.model.safetensors", v, sizeof v) && strlen(v) == 64,
             "weights hashed");
    QH_CHECK(qh_record_get(r, "model.file.config.json", v, sizeof v)
             && qh_record_get(r, "model.file.tokenizer.json", v, sizeof v)
             && qh_record_get(r, "calibration.sha256", v, sizeof v)
             && qh_record_get(r, "eval.data.wikitext2.sha256", v, sizeof v)
             && qh_record_get(r, "blas.core", v, sizeof v), "files and BLAS recorded");
    QH_CHECK(qh_record_get(r, "code.sources", v, sizeof v) && strlen(v) == 64
             && strspn(v, "0123456789abcdef") == 64 && !strcmp(v, qh_protocol_code_sources()),
             "code.sources is the build's code id: %s", v);
    QH_CHECK(!qh_record_get(r, "code.commit", v, sizeof v) && !qh_record_get(r, "code.dirty", v, sizeof v)
             && !qh_record_get(bl, "code.commit", v, sizeof v)
             && qh_record_get(bl, "code.sources", v, sizeof v) && !strcmp(v, qh_protocol_code_sources()),
             "no git commit or dirty flag in the record (they stay in /provenance)");
    QH_CHECK(qh_record_get(r, "record.version", v, sizeof v) && !strcmp(v, "2"), "record.version 2: %s", v);
    QH_CHECK(qh_record_get(r, "blas.threads", v, sizeof v) && !strcmp(v, "3"), "thread count as given");
    QH_CHECK(qh_record_get(r, "bits", v, sizeof v) && !strcmp(v, "3")
             && qh_record_get(r, "method.name", v, sizeof v) && !strcmp(v, "gptq")
             && qh_record_get(r, "method.version", v, sizeof v), "method and bits");
    char keys[256];
    size_t n = 0;
    QH_CHECK(qh_record_diff(r, r2, NULL, NULL, keys, sizeof keys, &n) == QH_OK && n == 1
             && !strcmp(keys, "calibration.nsamples"), "nsamples 4 -> 5 differs in one key: '%s'", keys);
    QH_CHECK(!qh_record_get(bl, "calibration.nsamples", v, sizeof v)
             && qh_record_get(bl, "method.name", v, sizeof v) && !strcmp(v, "float32")
             && qh_record_get(bl, "eval.seqlen", v, sizeof v) && !strcmp(v, "256"),
             "the baseline has no calibration, method float32");
    char h1[65], h2[65];
    qh_protocol_sha256(r, h1);
    qh_protocol_sha256(r2, h2);
    QH_CHECK(strlen(h1) == 64 && strcmp(h1, h2), "record hashes differ with the record");
done:
    free(r); free(again); free(r2); free(bl);
    qh_config_free(c);
    qh_config_free(c2);
}

/* A results file at path whose /run holds status 0 and the record rec. */
static int write_cell(const char *path, const char *rec)
{
    qh_results *w = NULL;
    int st = qh_results_open(path, &w);
    if (st == QH_OK) st = qh_results_group(w, "/run");
    if (st == QH_OK) st = qh_results_attr_int(w, "/run", "status", 0);
    if (st == QH_OK) st = qh_results_attr_string(w, "/run", "protocol", rec);
    if (st == QH_OK) return qh_results_commit(w);
    qh_results_abort(w);
    return st;
}

/* The record with key `key` set to the string `value` (new; NULL on error). */
static char *with_key(const char *rec, const char *key, const char *value)
{
    cJSON *j = cJSON_Parse(rec);
    char *out = NULL;
    if (j) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, key);
        if (value) cJSON_AddStringToObject(j, key, value);
        out = cJSON_PrintUnformatted(j);
    }
    cJSON_Delete(j);
    return out;
}

/* A cell is stale when its code.sources differs (code that computes results
 * changed), and a cell written under record.version 1 (code.commit,
 * code.dirty) is stale naming those keys. */
static void test_code_sources_stale(void)
{
    qh_config *c = config(4, 0, 256, "{\"method\": \"rtn\"}", "3");
    char *r = c ? record_of(c, 0) : NULL;
    char path[] = "/tmp/qh_protocol_cell_XXXXXX", file[64], why[256];
    QH_CHECK(r && mkdtemp(path), "record and folder: %s", qh_last_error());
    if (!r || !path[0]) { free(r); qh_config_free(c); return; }
    snprintf(file, sizeof file, "%s/cell.h5", path);

    QH_CHECK(write_cell(file, r) == QH_OK, "cell written: %s", qh_last_error());
    qh_sweep_stale_reason(file, r, qh_protocol_host_keys, why, sizeof why);
    QH_CHECK(!why[0], "the same record: not stale ('%s')", why);

    char *other = with_key(r, "code.sources", "0000000000000000000000000000000000000000000000000000000000000000");
    QH_CHECK(other && write_cell(file, other) == QH_OK, "cell of other code written");
    qh_sweep_stale_reason(file, r, qh_protocol_host_keys, why, sizeof why);
    QH_CHECK(!strcmp(why, "code.sources"), "other code: stale naming code.sources: '%s'", why);

    /* A record of version 1: the git commit instead of the code id. */
    char *old = with_key(r, "code.sources", NULL), *old2 = NULL, *old3 = NULL;
    if (old) old2 = with_key(old, "code.commit", "0123456789abcdef0123456789abcdef01234567");
    if (old2) {
        cJSON *j = cJSON_Parse(old2);
        if (j) {
            cJSON_AddFalseToObject(j, "code.dirty");
            cJSON_ReplaceItemInObjectCaseSensitive(j, "record.version", cJSON_CreateNumber(1));
            old3 = cJSON_PrintUnformatted(j);
        }
        cJSON_Delete(j);
    }
    QH_CHECK(old3 && write_cell(file, old3) == QH_OK, "cell of record.version 1 written");
    qh_sweep_stale_reason(file, r, qh_protocol_host_keys, why, sizeof why);
    QH_CHECK(!strcmp(why, "code.commit, code.dirty, code.sources, record.version"),
             "a version-1 record is stale, naming the keys: '%s'", why);

    unlink(file);
    rmdir(path);
    free(other); free(old); free(old2); free(old3); free(r);
    qh_config_free(c);
}

/* Refused before the first cell, naming the key and the model. */
static void refused(const char *what, qh_config *c, const char *want1, const char *want2)
{
    if (!c) { qh_n_fail++; return; }
    int st = qh_pipeline_validate(c);
    QH_CHECK(st == QH_ECONFIG && strstr(qh_last_error(), want1) && strstr(qh_last_error(), want2),
             "%s: status %d: %s", what, st, qh_last_error());
    qh_config_free(c);
}

static void test_validate(void)
{
    qh_config *c = config(4, 128, 1024, "{\"method\": \"rtn\"}, {\"method\": \"aqlm\", \"params\": {\"group\": 8}}", "2");
    QH_CHECK(c && qh_pipeline_validate(c) == QH_OK, "a good sweep passes: %s", qh_last_error());
    qh_config_free(c);
    refused("eval seqlen beyond the context", config(4, 128, 2048, "{\"method\": \"rtn\"}", "2"),
            "eval.seqlen: 2048 exceeds", "opt-7m");
    refused("calibration seqlen beyond the context", config(4, 4096, 128, "{\"method\": \"rtn\"}", "2"),
            "calibration.seqlen: 4096", "max_position_embeddings 1024");
    refused("group not dividing a width",
            config(4, 128, 128, "{\"method\": \"rtn\"}, {\"method\": \"aqlm\", \"params\": {\"group\": 48}}", "2"),
            "methods[1].params.group: 48 does not divide", "opt-7m");
    refused("bits outside the method's range", config(4, 128, 128, "{\"method\": \"ptq161\"}", "2"),
            "bits[0]: methods[0] (ptq161", "takes bits 1..1, got 2");
    refused("bits outside QuIP#'s range", config(4, 128, 128, "{\"method\": \"quipsharp\", \"incoherence\": \"hadamard\"}", "1, 2"),
            "bits[0]: methods[0] (quipsharp", "takes bits 2..4, got 1");
    /* A model whose config.json cannot be read is left to its cells, which record why. */
    qh_config *m = NULL;
    QH_CHECK(qh_config_parse("{\"name\":\"t\",\"models\":[\"no/such-model\"],\"methods\":[{\"method\":\"rtn\"}],"
                             "\"bits\":[2]}", "m.json", &m) == QH_OK && qh_pipeline_validate(m) == QH_OK,
             "a missing model is its cells' failure, not the config's");
    qh_config_free(m);
}

/* Replaces the hash on every line of the cache file with 64 zeros. */
static void zero_cache_hashes(const char *cache)
{
    char lines[8][256];
    size_t n = 0;
    FILE *f = fopen(cache, "r");
    while (f && n < 8 && fgets(lines[n], sizeof lines[n], f)) n++;
    if (f) fclose(f);
    f = fopen(cache, "w");
    for (size_t i = 0; f && i < n; i++) {
        char *h = strrchr(lines[i], ' ');
        if (h && strlen(h) >= 65) memset(h + 1, '0', 64);
        fputs(lines[i], f);
    }
    if (f) fclose(f);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF) n += c == '\n';
    if (f) fclose(f);
    return f ? n : -1;
}

/* The cross-process cache (hash_cache.h): a hash stored by one call is what a
 * later lookup of the same inode under another path (the in-process cache is
 * by path) returns; a write to the file, even one that restores size and
 * mtime, makes it hashed again; malformed lines are ignored; "off" writes
 * nothing. */
static void test_disk_hash_cache(void)
{
    char dir[] = "/tmp/qh_hcache_XXXXXX", a[128], b[128], d[128], cache[160], hex[65];
    static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
    QH_CHECK(mkdtemp(dir) != NULL, "temporary folder");
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(d, sizeof d, "%s/d", dir);
    snprintf(cache, sizeof cache, "%s/sub/file-sha256", dir);   /* its folder made on store */
    FILE *f = fopen(a, "w");
    fputs("abc", f);
    fclose(f);
    QH_CHECK(link(a, b) == 0 && link(a, d) == 0, "hard links");   /* links change ctime: first */
    setenv("QH_HASH_CACHE", cache, 1);
    setenv("QH_HASH_CACHE_MIN", "1", 1);
    QH_CHECK(qh_file_sha256(a, hex) == QH_OK && hex[0] == 'b' && count_lines(cache) == 1,
             "hash stored in the cache file (%d lines)", count_lines(cache));
    zero_cache_hashes(cache);
    QH_CHECK(qh_file_sha256(b, hex) == QH_OK && !strcmp(hex, zeros),
             "the same inode's stored hash is served from the cache file: %.8s", hex);
    struct stat sb;
    stat(a, &sb);
    f = fopen(a, "r+");
    fputs("abx", f);                                   /* same size */
    fclose(f);
    struct timespec times[2] = { sb.st_atim, sb.st_mtim };
    utimensat(AT_FDCWD, a, times, 0);                  /* mtime set back: ctime is not */
    QH_CHECK(qh_file_sha256(d, hex) == QH_OK
                 && !strcmp(hex, "b2bdab4230154046ad0b7dfa830a9260caa5bd6ae230e582a2244ab4bf0b4ca5"),
             "a written file is hashed again despite its old size and mtime: %.8s", hex);
    f = fopen(cache, "a");
    fputs("garbage line\n1 2 3\n", f);
    fclose(f);
    char hex2[65];
    /* b's in-process entry has the old size and mtime: the ctime tells it apart */
    QH_CHECK(qh_file_sha256(b, hex2) == QH_OK && !strcmp(hex, hex2),
             "malformed lines are ignored; the in-process cache sees the write too");
    char off_cache[160];
    snprintf(off_cache, sizeof off_cache, "%s/off", dir);
    setenv("QH_HASH_CACHE", "off", 1);
    unlink(d);
    QH_CHECK(link(a, d) == 0 && qh_file_sha256(d, hex2) == QH_OK && count_lines(off_cache) == -1,
             "QH_HASH_CACHE=off writes nothing");
    unsetenv("QH_HASH_CACHE");
    unsetenv("QH_HASH_CACHE_MIN");
    unlink(a); unlink(b); unlink(d); unlink(cache);
    snprintf(cache, sizeof cache, "%s/sub", dir);
    rmdir(cache);
    rmdir(dir);
}

int main(void)
{
    test_record_diff();
    test_file_hash();
    test_disk_hash_cache();
    test_record();
    test_code_sources_stale();
    test_validate();
    return qh_test_summary();
}
