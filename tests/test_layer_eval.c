/* test_layer_eval.c -- one layer quantized and measured: the record's proxy
 * equals an independent computation, the theory's worst-case bound holds on
 * the integer grid without clamping, and the table round-trips through HDF5,
 * with the row scales and iterations of non-grid methods in columns of their
 * own (absent from tables of grid methods); a signround record carries the
 * grid step and bounds of its grid. */
#include "qh_test.h"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/layer_eval.h"
#include "qh_method.h"
#include "results/writer.h"
#include "pipeline/synthetic.h"
#include "qh_fixtures.h"

static const qh_bound *bound(const qh_layer_record *r, const char *name)
{
    return qh_bounds_find(&r->bounds, name);
}

/* A quipsharp record (not a scalar grid) beside a grid record: its Wscale
 * and tune passes land in row_scale_mean and n_iterations, not in the grid's
 * delta_rms or n_greedy_passes; the grid record reads NaN and 0 there. */
static void test_vector_columns(const qh_matd *W, const qh_matd *H, const qh_layer_record *grid_rec)
{
    const qh_method_type *qs = qh_method_find("quipsharp");
    void *params = qh_method_params_new(qs);
    QH_CHECK(qh_method_params_set(qs, params, "tune_iters", "2") == QH_OK, "tune_iters 2");
    qh_layer_record recs[2] = { *grid_rec };
    qh_problem p = { W, H, 2, 0, 0, "synthetic.uniform", NULL, NULL };
    QH_CHECK(qh_layer_run(qs, params, NULL, &p, 0, 0, NULL, &recs[1], NULL) == QH_OK, "quipsharp runs: %s",
             recs[1].message);
    double rms = 0;
    for (size_t j = 0; j < W->cols; j++)
        for (size_t i = 0; i < W->rows; i++) rms += QH_AT(W, i, j) * QH_AT(W, i, j);
    rms = sqrt(rms / (double)(W->rows * W->cols));
    QH_CHECK(recs[1].n_iterations == 2 && recs[1].n_greedy_passes == 0 && isnan(recs[1].delta_rms)
             && recs[1].row_scale_mean > 0 && recs[1].row_scale_mean < rms,
             "record: 2 iterations, no greedy passes, no grid step, Wscale %g below RMS %g",
             recs[1].row_scale_mean, rms);
    char path[] = "/tmp/qh_layer_eval_XXXXXX";
    close(mkstemp(path));
    qh_results *w = NULL;
    QH_CHECK(qh_results_open(path, &w) == QH_OK && qh_layer_records_write(w, "/run/layer_table", recs, 2) == QH_OK
             && qh_results_commit(w) == QH_OK, "write a mixed table: %s", qh_last_error());
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    double scale[2] = { 0 };
    long long iters[2] = { -1, -1 };
    QH_CHECK(f >= 0 && H5LTread_dataset_double(f, "/run/layer_table/row_scale_mean", scale) >= 0
             && H5LTread_dataset(f, "/run/layer_table/n_iterations", H5T_NATIVE_LLONG, iters) >= 0,
             "row_scale_mean and n_iterations columns");
    QH_CHECK(isnan(scale[0]) && scale[1] == recs[1].row_scale_mean && iters[0] == 0 && iters[1] == 2,
             "grid row NaN and 0; quipsharp row %g and %lld", scale[1], iters[1]);
    if (f >= 0) H5Fclose(f);
    remove(path);
    free(params);
}

/* SignRound fills the result's grid: quantize's Ŵ is RTN's on the same
 * min-max grid, so its record carries RTN's delta_rms bit for bit and the
 * bounds. */
static void test_signround_grid(const qh_matd *W, const qh_matd *H)
{
    const qh_method_type *sr = qh_method_find("signround"), *rtn = qh_method_find("rtn");
    void *ps = qh_method_params_new(sr), *pr = qh_method_params_new(rtn);
    QH_CHECK(qh_method_params_set(sr, ps, "group", "8") == QH_OK &&
             qh_method_params_set(rtn, pr, "group", "8") == QH_OK, "group 8");
    qh_layer_record recs[2];
    qh_problem p = { W, H, 3, 0, 0, "synthetic.uniform", NULL, NULL };
    QH_CHECK(qh_layer_run(sr, ps, NULL, &p, 0, 0, NULL, &recs[0], NULL) == QH_OK, "signround runs: %s",
             recs[0].message);
    QH_CHECK(qh_layer_run(rtn, pr, NULL, &p, 0, 0, NULL, &recs[1], NULL) == QH_OK, "rtn runs: %s",
             recs[1].message);
    QH_CHECK(isfinite(recs[0].delta_rms) && recs[0].delta_rms > 0 && recs[0].delta_rms == recs[1].delta_rms,
             "a signround record carries delta_rms %.6g (rtn's on the same grid: %.6g)", recs[0].delta_rms,
             recs[1].delta_rms);
    QH_CHECK(recs[0].bounds.count > 0 && recs[0].bounds.count == recs[1].bounds.count &&
             bound(&recs[0], "thm1_ldlq_worst"), "and the bounds (%zu, rtn %zu)", recs[0].bounds.count,
             recs[1].bounds.count);
    free(ps);
    free(pr);
}

int main(void)
{
    const size_t m = 32, n = 24;
    qh_matd *W = qh_matd_alloc(m, n), *H = qh_matd_alloc(n, n), *Q = qh_matd_alloc(m, n);
    QH_CHECK(qh_synthetic_problem("uniform", 3, W, H) == QH_OK, "synthetic problem");
    const qh_method_type *ldlq = qh_method_find("ldlq");
    void *params = qh_method_params_new(ldlq);
    QH_CHECK(qh_method_params_set(ldlq, params, "grid", "integer") == QH_OK
             && qh_method_params_set(ldlq, params, "clamp", "0") == QH_OK
             && qh_method_params_set(ldlq, params, "damp", "0") == QH_OK, "integer grid, no clamp, no damping");

    qh_layer_record recs[3];
    qh_problem p = { W, H, 2, 0, 0, "synthetic.uniform", NULL, NULL };
    int st = qh_layer_run(ldlq, params, NULL, &p, 0, 0, NULL, &recs[0], Q);
    QH_CHECK(st == QH_OK, "ldlq runs: %s", recs[0].message);
    QH_CHECK_CLOSE(recs[0].metrics.orig.proxy, fixture_naive_proxy(W, Q, H), 0, 1e-9, "record proxy vs naive sum");
    const qh_bound *worst = bound(&recs[0], "thm1_ldlq_worst"), *avg = bound(&recs[0], "thm1_ldlq_avg_nearest");
    QH_CHECK(worst && avg, "Theorem 1 bounds present");
    if (worst) QH_CHECK(recs[0].metrics.proc.proxy <= worst->value,
                        "l = %.4g <= (m/4) tr D = %.4g (Theorem 1, no clamping)", recs[0].metrics.proc.proxy, worst->value);
    QH_CHECK_CLOSE(recs[0].delta_rms, 1.0, 0, 1e-15, "integer grid has step 1");

    /* With incoherence the record carries both bases; without damping (which only
     * the processed H carries) the proxy agrees between them. */
    qh_incoh_params ip = { QH_INCOH_KRON, 1, 7, 0, 0 };
    st = qh_layer_run(ldlq, params, &ip, &p, 0, 1, NULL, &recs[1], NULL);
    QH_CHECK(st == QH_OK && recs[1].metrics.has_processed, "ldlq + incoherence runs: %s", recs[1].message);
    QH_CHECK_CLOSE(recs[1].metrics.orig.proxy, recs[1].metrics.proc.proxy, 0, 1e-8,
                   "proxy is basis-independent (original vs processed)");

    /* A failing layer is a record, not a crash. */
    p.bits = 9;
    st = qh_layer_run(ldlq, NULL, NULL, &p, 0, 2, NULL, &recs[2], NULL);
    QH_CHECK(st == QH_EINVAL && recs[2].status == QH_EINVAL && strstr(recs[2].message, "bits"),
             "bits 9 recorded as a failure: %s", recs[2].message);

    char path[] = "/tmp/qh_layer_eval_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    qh_results *w = NULL;
    QH_CHECK(qh_results_open(path, &w) == QH_OK, "open results");
    QH_CHECK(qh_layer_records_write(w, "/run/layer_table", recs, 3) == QH_OK, "write table: %s", qh_last_error());
    QH_CHECK(qh_results_commit(w) == QH_OK, "commit");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    double proxy[3] = { 0 }, wb[3] = { 0 };
    QH_CHECK(f >= 0 && H5LTread_dataset_double(f, "/run/layer_table/proxy", proxy) >= 0
             && H5LTread_dataset_double(f, "/run/layer_table/bound_thm1_ldlq_worst", wb) >= 0, "read back");
    QH_CHECK(proxy[0] == recs[0].metrics.orig.proxy && isnan(proxy[2]), "proxy column round trip, NaN for failure");
    QH_CHECK(worst && wb[0] == worst->value && isnan(wb[2]), "bound column round trip");
    QH_CHECK(f >= 0 && H5Lexists(f, "/run/layer_table/delta_rms", H5P_DEFAULT) > 0
             && H5Lexists(f, "/run/layer_table/row_scale_mean", H5P_DEFAULT) == 0
             && H5Lexists(f, "/run/layer_table/n_iterations", H5P_DEFAULT) == 0,
             "a table of grid methods has no row-scale or iteration columns");
    if (f >= 0) H5Fclose(f);
    remove(path);
    test_vector_columns(W, H, &recs[0]);
    test_signround_grid(W, H);
    free(params);
    qh_matd_free(W); qh_matd_free(H); qh_matd_free(Q);
    return qh_test_summary();
}
