/* test_timing.c -- the wall-time estimate of a cell (pipeline/timing.h): the
 * flop counts of a tiny configuration against a hand count, how the estimate
 * scales with the protocol, the lower bounds, the probe and the format. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/timing.h"
#include "qh_test.h"

/* An OPT-like model small enough to count by hand: 2 blocks, hidden 8 (2
 * heads of 4), ffn 16, vocabulary 10. */
static qh_model_config tiny_config(void)
{
    qh_model_config c = { .vocab_size = 10, .hidden = 8, .n_layers = 2, .n_heads = 2,
                          .n_kv_heads = 2, .head_dim = 4, .ffn_dim = 16, .max_pos = 32,
                          .embed_dim = 8 };
    c.features.gated_mlp = 0;
    return c;
}

/* nsamples 2 x 4 tokens of calibration, one dataset of 3 windows of 8 tokens. */
static qh_time_protocol tiny_protocol(const qh_method_type *t, const void *params)
{
    qh_time_protocol p = { .mem = { .nsamples = 2, .calib_seqlen = 4, .eval_seqlen = 8,
                                    .method = t, .params = params },
                           .incoherence = "none", .bits = 3, .n_datasets = 1 };
    p.eval_bytes[0] = (size_t)(3 * 8 * QH_TIME_BYTES_PER_TOKEN);
    return p;
}

/* The hand count (timing.h's formulas), rtn, no incoherence:
 *   linears (m, n): q, k, v, o 8 x 8, fc1 16 x 8, fc2 8 x 16: sum m n = 512;
 *   F(4) = 2 x 512 + 2 x 4 x 8 = 1088 flops a token and block;
 *   forward = 2 blocks x 2 passes x 8 tokens x 1088 = 34816;
 *   hessian = 2 x 8 tokens x (2 x 8^2 + 8^2 + 16^2) = 7168;
 *   method = 2 x 10 x 512 = 10240, + the driver's proxy loss 2 m n^2:
 *     2 x 2 x (4 x 8 x 64 + 16 x 64 + 8 x 256) = 20480, so 30720;
 *   metrics per block: proxy 4 m n^2 = 4 x 8 x 64 x 4 + 4 x 16 x 64 + 4 x 8 x 256 = 20480,
 *     spectra 9 n^3 per distinct input = 3 x 4608 + 36864 = 50688: x 2 = 142336;
 *   eval: 3 windows x 8 tokens x (2 x F(8) + 2 x 8 x 10) = 24 x (2 x 1152 + 160) = 59136. */
static void test_hand_count(void)
{
    qh_model_config c = tiny_config();
    qh_time_protocol p = tiny_protocol(qh_method_find("rtn"), NULL);
    qh_time_flops f;
    QH_CHECK(qh_time_count_flops(&c, &p, &f) == QH_OK, "count: %s", qh_last_error());
    QH_CHECK(f.forward == 34816, "forward %g, hand 34816", f.forward);
    QH_CHECK(f.hessian == 7168, "hessian %g, hand 7168", f.hessian);
    QH_CHECK(f.method == 30720, "method %g, hand 30720", f.method);
    QH_CHECK(f.incoherence == 0, "no incoherence: %g", f.incoherence);
    QH_CHECK(f.metrics == 142336, "metrics %g, hand 142336", f.metrics);
    QH_CHECK(f.eval == 59136, "eval %g, hand 59136", f.eval);
    QH_CHECK(f.block == 0 && f.model == 0, "no stage: block %g, model %g", f.block, f.model);

    /* GPTQ: m n^2 + 2 n^3 per linear: per block 4 x (512 + 1024) + (1024 + 1024) + (2048 + 8192),
     * and the proxy loss */
    p = tiny_protocol(qh_method_find("gptq"), NULL);
    QH_CHECK(qh_time_count_flops(&c, &p, &f) == QH_OK, "count gptq");
    QH_CHECK(f.method == 2 * (4 * 1536 + 2048 + 10240) + 20480, "gptq method %g, hand 57344",
             f.method);
    /* Kronecker incoherence: 4 m n (sqrt m + sqrt n) + 4 n^2 sqrt n per linear */
    p.incoherence = "kron";
    QH_CHECK(qh_time_count_flops(&c, &p, &f) == QH_OK, "count gptq+kron");
    double r8 = sqrt(8), r16 = 4;
    double kron = 4 * (4 * 64 * 2 * r8 + 4 * 64 * r8) + 4 * 128 * (r16 + r8) + 4 * 64 * r8
                + 4 * 128 * (r8 + r16) + 4 * 256 * r16;
    QH_CHECK_CLOSE(f.incoherence, 2 * kron, 0, 1e-12, "kron %g, hand %g", f.incoherence, 2 * kron);
}

static void test_scaling(void)
{
    qh_model_config c = tiny_config();
    qh_time_protocol p = tiny_protocol(qh_method_find("gptq"), NULL);
    qh_time_flops a, b;
    QH_CHECK(qh_time_count_flops(&c, &p, &a) == QH_OK, "count");
    p.mem.nsamples *= 2;
    QH_CHECK(qh_time_count_flops(&c, &p, &b) == QH_OK, "count, twice the windows");
    QH_CHECK(b.forward == 2 * a.forward && b.hessian == 2 * a.hessian,
             "twice the windows: forward %g -> %g, hessian %g -> %g", a.forward, b.forward,
             a.hessian, b.hessian);
    QH_CHECK(b.method == a.method && b.metrics == a.metrics && b.eval == a.eval,
             "the windows leave method, metrics and evaluation alone");
    p = tiny_protocol(qh_method_find("gptq"), NULL);
    p.eval_bytes[0] *= 2;
    QH_CHECK(qh_time_count_flops(&c, &p, &b) == QH_OK, "count, twice the text");
    QH_CHECK(b.eval == 2 * a.eval && b.forward == a.forward, "twice the text: eval %g -> %g",
             a.eval, b.eval);
    p.max_windows = 3;
    QH_CHECK(qh_time_count_flops(&c, &p, &b) == QH_OK && b.eval == a.eval,
             "max_windows 3 caps 6 windows at 3: eval %g", b.eval);
    /* the linears' work grows with the width: doubling hidden and ffn scales
     * GPTQ's m n^2 + 2 n^3 by 8 */
    qh_model_config w = c;
    w.hidden *= 2, w.head_dim *= 2, w.ffn_dim *= 2, w.embed_dim *= 2;
    QH_CHECK(qh_time_count_flops(&w, &p, &b) == QH_OK && b.method == 8 * a.method,
             "twice the width: method %g -> %g", a.method, b.method);
}

/* The block stage follows the row's plan: steps x batch windows of forward
 * and backward (3 F a token), so 20 more SignRound iterations at batch 2 add
 * 20 x 2 x 3 x 4 tokens x F(4) x 2 blocks; the stage adds a third traversal pass. */
static void test_block_stage(void)
{
    qh_model_config c = tiny_config();
    const qh_method_type *t = qh_method_find("signround");
    void *params = qh_method_params_new(t);
    QH_CHECK(params && qh_method_params_set(t, params, "iters", "20") == QH_OK
             && qh_method_params_set(t, params, "batch", "2") == QH_OK, "signround params");
    qh_time_protocol p = tiny_protocol(t, params);
    qh_time_flops a, b;
    QH_CHECK(qh_time_count_flops(&c, &p, &a) == QH_OK, "count signround");
    QH_CHECK(a.forward == 34816.0 * 3 / 2, "block stage: three passes, forward %g", a.forward);
    QH_CHECK(qh_method_params_set(t, params, "iters", "40") == QH_OK, "iters 40");
    QH_CHECK(qh_time_count_flops(&c, &p, &b) == QH_OK, "count signround 40");
    QH_CHECK(b.block - a.block == 20.0 * 2 * 3 * 4 * 1088 * 2, "20 more steps add %g",
             b.block - a.block);
    QH_CHECK(b.steps - a.steps == 20.0 * 2 * 512 * 60,
             "20 more steps of 60 operations on each of 2 x 512 weights: %g", b.steps - a.steps);
    QH_CHECK(qh_method_params_set(t, params, "iters", "0") == QH_OK, "iters 0");
    QH_CHECK(qh_time_count_flops(&c, &p, &b) == QH_OK && b.block == 0 && b.steps == 0,
             "iters 0 (RTN, no stage): block %g, steps %g", b.block, b.steps);
    free(params);
}

/* Every row's own work on the tiny model, against the counts the name-keyed
 * cost table in timing.c gave before the rows carried them (method flops,
 * and the calibration seconds at a fixed probe, which also checks each
 * row's efficiency), with and without the parameters the counts read. */
typedef struct {
    const char *method, *key, *value;   /* one setting, or NULL */
    int bits;
    double method_flops, calibration_s;
    int lower_bound;
} row_count;

static const row_count row_counts[] = {
    { "rtn", NULL, NULL, 3, 30720, 8.1707885714285723e-05, 0 },
    { "gptq", NULL, NULL, 3, 57344, 8.5005963636363633e-05, 0 },
    { "ldlq", NULL, NULL, 3, 57344, 8.5005963636363633e-05, 0 },
    { "ldlq_rg", NULL, NULL, 3, 77824, 9.2453236363636363e-05, 0 },
    { "ldlq_rg", "npasses", "3", 3, 118784, 0.00010734778181818182, 0 },
    { "greedy", NULL, NULL, 3, 129024, 0.00011107141818181819, 0 },
    { "greedy", "npasses", "2", 3, 88064, 9.6176872727272728e-05, 0 },
    { "quipsharp", NULL, NULL, 2, 57344, 8.5005963636363633e-05, 1 },
    { "pvq", NULL, NULL, 3, 57344, 8.5005963636363633e-05, 1 },
    { "billm", NULL, NULL, 1, 57344, 8.5005963636363633e-05, 1 },
    { "pbllm", NULL, NULL, 1, 57344, 8.5005963636363633e-05, 1 },
    { "ptq161", NULL, NULL, 1, 4153344, 0.026340422355244756, 0 },
    { "ptq161", "steps", "10", 1, 262144, 0.024925440537062939, 0 },
    { "aqlm", NULL, NULL, 3, 70799360, 0.025809375418181818, 1 },
    { "aqlm", NULL, NULL, 2, 47206400, 0.017230117236363633, 1 },
    { "aqlm", "codebooks", "1", 2, 6039818240, 2.1963616954181817, 1 },
    { "aqlm", "group", "4", 2, 23613440, 0.0086508590545454553, 1 },   /* M = 1, B = 8: the quantizer's choice */
    { "aqlm", "epochs", "3", 2, 29380608, 0.010748011054545455, 1 },
    { "aqlm", "kmeans_iters", "0", 2, 20992000, 0.0076976081454545459, 1 },
    { "signround", NULL, NULL, 3, 30720, 0.12459519465494506, 0 },
    { "ternary", NULL, NULL, 2, 30720, 7.532450909090909e-05, 0 },
    { "ternary", "feedback", "1", 2, 57344, 8.5005963636363633e-05, 0 },
    { "bitnet1", NULL, NULL, 1, 30720, 7.532450909090909e-05, 0 },
    { "bitnet1", "feedback", "1", 1, 57344, 8.5005963636363633e-05, 0 },
    { "gptqt", NULL, NULL, 1, 466944, 0.00023395141818181818, 0 },
    { "gptqt", "als_iters", "5", 1, 159744, 0.00012224232727272728, 0 },
    { "onebit", NULL, NULL, 1, 153600, 0.0026521884131868131, 0 },
    { "onebit", "als_iters", "7", 1, 59392, 0.0025983552703296702, 0 },
    { "blockap", NULL, NULL, 2, 30720, 0.0025819712703296703, 0 },
    { "mpo", NULL, NULL, 3, 86016, 9.5432145454545466e-05, 0 },
    { "mpo", "proxy_steps", "5", 3, 188416, 0.00013266850909090909, 0 },
    { "lowrank", NULL, NULL, 3, 86016, 9.5432145454545466e-05, 0 },
    { "lowrank", "hessian", "1", 3, 226304, 0.00014644596363636364, 0 },
};

static void check_row_count(const row_count *rc)
{
    qh_model_config c = tiny_config();
    qh_time_probe probe = { 10, 5, 1 };
    const qh_method_type *t = qh_method_find(rc->method);
    void *params = t ? qh_method_params_new(t) : NULL;
    QH_CHECK(params, "%s: row and params", rc->method);
    if (!params) return;
    if (rc->key)
        QH_CHECK(qh_method_params_set(t, params, rc->key, rc->value) == QH_OK, "%s %s=%s",
                 rc->method, rc->key, rc->value);
    qh_time_protocol p = tiny_protocol(t, params);
    p.bits = rc->bits;
    qh_time_estimate e;
    QH_CHECK(qh_time_estimate_cell(&c, 1000, &p, &probe, &e) == QH_OK, "%s: %s", rc->method,
             qh_last_error());
    QH_CHECK(e.flops.method == rc->method_flops, "%s %s=%s w%d: method %.17g, before %.17g",
             rc->method, rc->key ? rc->key : "", rc->value ? rc->value : "", rc->bits,
             e.flops.method, rc->method_flops);
    QH_CHECK_CLOSE(e.calibration_s, rc->calibration_s, 0, 1e-12,
                   "%s %s=%s w%d: calibration %.17g s, before %.17g", rc->method,
                   rc->key ? rc->key : "", rc->value ? rc->value : "", rc->bits, e.calibration_s,
                   rc->calibration_s);
    QH_CHECK(e.lower_bound == rc->lower_bound, "%s: lower bound %d, before %d", rc->method,
             e.lower_bound, rc->lower_bound);
    free(params);
}

static void test_row_counts(void)
{
    for (size_t i = 0; i < sizeof row_counts / sizeof row_counts[0]; i++)
        check_row_count(&row_counts[i]);
}

static void test_lower_bounds(void)
{
    qh_model_config c = tiny_config();
    qh_time_probe probe = { 10, 5, 1 };
    qh_time_estimate e;
    qh_time_protocol p = tiny_protocol(qh_method_find("gptq"), NULL);
    QH_CHECK(qh_time_estimate_cell(&c, 1000, &p, &probe, &e) == QH_OK && !e.lower_bound,
             "gptq is modelled whole");
    p = tiny_protocol(qh_method_find("aqlm"), NULL);
    QH_CHECK(qh_time_estimate_cell(&c, 1000, &p, &probe, &e) == QH_OK && e.lower_bound
             && strstr(e.unmodelled, "search"), "aqlm is a lower bound: '%s'", e.unmodelled);
    /* a row the cost table does not know */
    static const qh_method_type unknown = { .name = "no_such_row" };
    static const int no_params = 0;
    p = tiny_protocol(&unknown, &no_params);
    QH_CHECK(qh_time_estimate_cell(&c, 1000, &p, &probe, &e) == QH_OK && e.lower_bound
             && e.flops.method == 20480, "an unknown row: the driver's proxy alone (%g), lower bound",
             e.flops.method);
    p = tiny_protocol(qh_method_find("gptq"), NULL);
    p.n_tasks = 2;
    QH_CHECK(qh_time_estimate_cell(&c, 1000, &p, &probe, &e) == QH_OK && e.lower_bound
             && strstr(e.unmodelled, "task files"), "tasks: '%s'", e.unmodelled);
}

/* Seconds are the flops over the probe (twice the throughput: half the
 * floating-point time) plus the fixed part. */
static void test_estimate(void)
{
    qh_model_config c = tiny_config();
    qh_time_protocol p = tiny_protocol(qh_method_find("gptq"), NULL);
    p.calib_bytes = 8000000;
    qh_time_probe slow = { 1e-3, 1e-3, 1 }, fast = { 2e-3, 2e-3, 1 };
    qh_time_estimate a, b;
    QH_CHECK(qh_time_estimate_cell(&c, 0, &p, &slow, &a) == QH_OK, "estimate slow");
    QH_CHECK(qh_time_estimate_cell(&c, 0, &p, &fast, &b) == QH_OK, "estimate fast");
    QH_CHECK_CLOSE(b.calibration_s, a.calibration_s / 2, 0, 1e-12, "calibration %g -> %g",
                   a.calibration_s, b.calibration_s);
    QH_CHECK_CLOSE(b.eval_s, a.eval_s / 2, 0, 1e-12, "eval %g -> %g", a.eval_s, b.eval_s);
    QH_CHECK(a.fixed_s == b.fixed_s && a.fixed_s > 0, "tokenizing does not depend on BLAS");
    QH_CHECK_CLOSE(a.seconds, a.fixed_s + a.calibration_s + a.eval_s, 0, 1e-12, "sum");
    qh_time_probe none = { 0, 1, 1 };
    QH_CHECK(qh_time_estimate_cell(&c, 0, &p, &none, &a) == QH_EINVAL, "a probe of 0 refused");
    QH_CHECK(qh_time_count_flops(&c, NULL, &a.flops) == QH_EINVAL, "NULL protocol refused");
}

static void test_probe_and_format(void)
{
    qh_time_probe pr;
    QH_CHECK(qh_time_probe_measure(64, 64, &pr) == QH_OK, "probe: %s", qh_last_error());
    QH_CHECK(pr.sgemm_gflops > 0 && pr.dgemm_gflops > 0 && pr.threads >= 1,
             "probe %g / %g GFLOP/s, %d threads", pr.sgemm_gflops, pr.dgemm_gflops, pr.threads);
    QH_CHECK(qh_time_probe_measure(0, 64, &pr) == QH_EINVAL, "probe of width 0 refused");
    char b[32];
    QH_CHECK(!strcmp(qh_time_format(41.2, 0, b, sizeof b), "42 s"), "'%s'", b);
    QH_CHECK(!strcmp(qh_time_format(750, 1, b, sizeof b), ">=12.5 min"), "'%s'", b);
    QH_CHECK(!strcmp(qh_time_format(3 * 3600 + 720, 0, b, sizeof b), "3.2 h"), "'%s'", b);
}

/* The memory estimate's hidden-state term with 16-bit states (calibration
 * act_dtype): half the float32 term, plus the one float32 window they are
 * widened into. */
static void test_memory_act_bytes(void)
{
    qh_model_config c = tiny_config();
    qh_mem_protocol p = { .nsamples = 64, .calib_seqlen = 16, .eval_seqlen = 16,
                          .method = qh_method_find("gptq") };
    qh_mem_estimate f32, h16;
    QH_CHECK(qh_mem_estimate_cell(&c, 1000, &p, &f32) == QH_OK, "memory f32");
    p.act_bytes = 2;
    QH_CHECK(qh_mem_estimate_cell(&c, 1000, &p, &h16) == QH_OK, "memory 16-bit");
    QH_CHECK(f32.states == 64 * 16 * 8 * 4 && h16.states == f32.states / 2 + 16 * 8 * 4,
             "states %zu -> %zu", f32.states, h16.states);
    QH_CHECK(f32.calibration - h16.calibration == f32.states - h16.states,
             "only the states term changes");
}

/* Spilled weights (--scratch): one block's linears resident instead of all,
 * every other term unchanged; a row with the whole-model stage (mpo with
 * heal_kl_steps) still counts every block. */
static void test_memory_spill(void)
{
    qh_model_config c = tiny_config();        /* 2 blocks of 512 linear weights */
    qh_mem_protocol p = { .nsamples = 4, .calib_seqlen = 16, .eval_seqlen = 16,
                          .method = qh_method_find("gptq") };
    qh_mem_estimate held, spilled;
    QH_CHECK(qh_mem_estimate_cell(&c, 1500, &p, &held) == QH_OK, "memory held");
    p.spill = 1;
    QH_CHECK(qh_mem_estimate_cell(&c, 1500, &p, &spilled) == QH_OK, "memory spilled");
    QH_CHECK(held.weights == 1500 * 4 && spilled.weights == (1500 - 512) * 4 &&
             held.peak - spilled.peak == 512 * 4 && held.calibration == spilled.calibration,
             "weights %zu -> %zu, peak %zu -> %zu", held.weights, spilled.weights, held.peak,
             spilled.peak);
    const qh_method_type *mpo = qh_method_find("mpo");
    void *params = mpo ? qh_method_params_new(mpo) : NULL;
    QH_CHECK(params && qh_method_params_set(mpo, params, "heal_kl_steps", "5") == QH_OK,
             "mpo with heal_kl_steps 5");
    p.method = mpo;
    p.params = params;
    QH_CHECK(params && qh_mem_estimate_cell(&c, 1500, &p, &spilled) == QH_OK &&
             spilled.weights == 1500 * 4, "the whole-model stage holds every block (%zu)",
             spilled.weights);
    free(params);
}

/* The terms that follow what a 7B-shaped block touches (memory.c): Hessian
 * sums above glibc's mmap threshold count their upper triangle's pages only,
 * and with incoherence the spectrum cache's other slot holds an in x in H
 * (11008², against hidden² without). */
static void test_memory_7b_block(void)
{
    qh_model_config c = { .vocab_size = 32000, .hidden = 4096, .n_layers = 32, .n_heads = 32,
                          .n_kv_heads = 32, .head_dim = 128, .ffn_dim = 11008, .max_pos = 4096,
                          .embed_dim = 4096 };
    c.features.gated_mlp = 1;
    qh_mem_protocol p = { .nsamples = 4, .calib_seqlen = 128, .eval_seqlen = 128,
                          .method = qh_method_find("gptq") };
    qh_mem_estimate plain, incoh;
    QH_CHECK(qh_mem_estimate_cell(&c, 6738415616u, &p, &plain) == QH_OK, "memory 7b");
    p.incoherence = 1;
    QH_CHECK(qh_mem_estimate_cell(&c, 6738415616u, &p, &incoh) == QH_OK, "memory 7b incoh");
    size_t hess = 0, widths[4] = { 4096, 4096, 4096, 11008 };
    for (int k = 0; k < 4; k++) {
        size_t n = widths[k];
        hess += n * (n + 1) / 2 * 8 + n * 2048 + n * 256 * 8 + n * 8;
    }
    QH_CHECK(plain.hessians == hess, "hessians %zu, expected %zu", plain.hessians, hess);
    QH_CHECK(plain.linear_out == 4096 && plain.linear_in == 11008, "widest linear %dx%d",
             plain.linear_out, plain.linear_in);
    size_t slot = (size_t)11008 * 11008 * 8 - (size_t)4096 * 4096 * 8;
    QH_CHECK(incoh.linear - plain.linear == slot, "incoherence adds %zu, expected %zu",
             incoh.linear - plain.linear, slot);
}

/* calibration.max_blocks: every per-block phase scales with the blocks
 * visited (1 of 2 here), evaluation does not. */
static void test_max_blocks(void)
{
    qh_model_config c = tiny_config();
    qh_time_protocol p = tiny_protocol(qh_method_find("gptq"), NULL);
    qh_time_flops all, one;
    QH_CHECK(qh_time_count_flops(&c, &p, &all) == QH_OK, "count, every block");
    p.max_blocks = 1;
    QH_CHECK(qh_time_count_flops(&c, &p, &one) == QH_OK, "count, max_blocks 1");
    QH_CHECK(one.forward * 2 == all.forward && one.hessian * 2 == all.hessian &&
             one.method * 2 == all.method && one.metrics * 2 == all.metrics && one.eval == all.eval,
             "halved: forward %g/%g, method %g/%g; eval %g/%g", one.forward, all.forward,
             one.method, all.method, one.eval, all.eval);
    p.max_blocks = 5;                         /* beyond the model: every block */
    QH_CHECK(qh_time_count_flops(&c, &p, &one) == QH_OK && one.forward == all.forward,
             "max_blocks beyond the depth counts every block");
}

int main(void)
{
    test_hand_count();
    test_scaling();
    test_block_stage();
    test_row_counts();
    test_lower_bounds();
    test_estimate();
    test_probe_and_format();
    test_memory_act_bytes();
    test_memory_spill();
    test_memory_7b_block();
    test_max_blocks();
    return qh_test_summary();
}
