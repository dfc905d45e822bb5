/* test_results.c -- the HDF5 results layer and provenance.
 *
 * Every writer function is read back through the HDF5 C API (values, stored
 * types, dims, no timestamps); the temporary-name protocol, abort, poisoned
 * commits, byte-identical output, merge with missing inputs, the status reader,
 * the folder listing and bad paths are checked with files in a fresh
 * temporary directory; so are concurrent writers of one path (forked
 * processes) and the removal of a killed writer's temporaries, by final name
 * or, for a folder (the float cache's), by pid alone.
 */
#include <dirent.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "results/provenance.h"
#include "qh_test.h"
#include "results/reader.h"
#include "results/writer.h"

static char dir[256];

/* Path of name in the test directory; a ring of 16 buffers, so callers that
 * keep a path across many calls copy it (see test_merge). */
static const char *in_dir(const char *name)
{
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0;
}

/* How many temporaries of final name `name` the test directory holds
 * ("<name>.<pid>.<hex>.tmp"); the first one's name goes to first (if any). */
static int count_tmp(const char *name, char *first, size_t cap)
{
    DIR *d = opendir(dir);
    int n = 0;
    size_t nn = strlen(name);
    if (first && cap) first[0] = '\0';
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len > nn + 5 && !strncmp(e->d_name, name, nn) && e->d_name[nn] == '.'
            && !strcmp(e->d_name + len - 4, ".tmp")) {
            if (!n++ && first) snprintf(first, cap, "%s", e->d_name);
        }
    }
    if (d) closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    *len = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        *len = (size_t)n;
    fclose(f);
    return buf;
}

static int same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* ---- independent readers (plain HDF5 C API) ---------------------------- */

static double attr_d(hid_t f, const char *obj, const char *name)
{
    double v = NAN;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        hid_t t = H5Aget_type(a);
        if (H5Tequal(t, H5T_IEEE_F64LE) <= 0 || H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
            v = NAN;
        H5Tclose(t);
        H5Aclose(a);
    }
    return v;
}

static int64_t attr_i(hid_t f, const char *obj, const char *name)
{
    int64_t v = INT64_MIN;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        hid_t t = H5Aget_type(a);
        if (H5Tequal(t, H5T_STD_I64LE) <= 0 || H5Aread(a, H5T_NATIVE_INT64, &v) < 0)
            v = INT64_MIN;
        H5Tclose(t);
        H5Aclose(a);
    }
    return v;
}

/* Variable-length UTF-8 string attribute, copied into out ("<missing>" if not). */
static const char *attr_s(hid_t f, const char *obj, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "<missing>");
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        return out;
    hid_t t = H5Aget_type(a);
    char *s = NULL;
    if (H5Tis_variable_str(t) > 0 && H5Tget_cset(t) == H5T_CSET_UTF8
        && H5Aread(a, t, &s) >= 0 && s)
        snprintf(out, cap, "%s", s);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

/* Reads a dataset of at most cap doubles; returns its rank (-1 on error). */
static int dset_d(hid_t f, const char *path, double *out, size_t cap, hsize_t dims[2])
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    int rank = H5Sget_simple_extent_ndims(s);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    if (rank > 0)
        H5Sget_simple_extent_dims(s, dims, NULL);
    if (rank < 0 || rank > 2 || n < 0 || (size_t)n > cap || H5Tequal(t, H5T_IEEE_F64LE) <= 0
        || (n > 0 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0))
        rank = -1;
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    return rank;
}

static int dset_i(hid_t f, const char *path, int64_t *out, size_t cap, hsize_t *n_out)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    int rank = H5Sget_simple_extent_ndims(s);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    *n_out = (hsize_t)n;
    if (rank < 0 || n < 0 || (size_t)n > cap || H5Tequal(t, H5T_STD_I64LE) <= 0
        || (n > 0 && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0))
        rank = -1;
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    return rank;
}

/* Element k of a variable-length string dataset (scalar: k = 0) into out. */
static const char *dset_s(hid_t f, const char *path, size_t k, char *out, size_t cap)
{
    snprintf(out, cap, "<missing>");
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0)
        return out;
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    char **v = n > 0 ? calloc((size_t)n, sizeof *v) : NULL;
    if (v && H5Tis_variable_str(t) > 0 && (hssize_t)k < n
        && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0) {
        snprintf(out, cap, "%s", v[k] ? v[k] : "<null>");
        for (hssize_t i = 0; i < n; i++)
            H5free_memory(v[i]);
    }
    free(v);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    return out;
}

static time_t dset_ctime(hid_t f, const char *path)
{
    H5O_info_t info;
    if (H5Oget_info_by_name2(f, path, &info, H5O_INFO_TIME, H5P_DEFAULT) < 0)
        return (time_t)-1;
    return info.ctime;
}

/* ---- round trip ----------------------------------------------------------- */

enum { MR = 3, MC = 4, MLD = 5, BIG_R = 1100, BIG_C = 1000 };

static void write_everything(qh_results *w, const double *big)
{
    double A[MLD * MC];
    for (int j = 0; j < MC; j++)
        for (int i = 0; i < MLD; i++)
            A[i + j * MLD] = i < MR ? 10.0 * i + j : -999.0;   /* padding rows never stored */
    const double vec[3] = { 1.5, -2.25, 1e300 };
    const int64_t ivec[4] = { INT64_MIN, -1, 0, INT64_MAX };
    const char *svec[3] = { "alpha", NULL, "\xce\xbb-utf8" };
    const char *names[3] = { "fc1", "fc2", "q_proj" };
    const int64_t idx[3] = { 0, 1, 7 };
    const double loss[3] = { 0.125, 3.5, -0.0 };
    qh_results_column cols[3] = {
        { "name", QH_RESULTS_STRING, names },
        { "index", QH_RESULTS_INT64, idx },
        { "loss", QH_RESULTS_DOUBLE, loss },
    };
    int ok = qh_results_group(w, "/run/layers/fc1") == QH_OK
        && qh_results_group(w, "run/layers") == QH_OK                /* exists: fine */
        && qh_results_attr_string(w, "/", "config_json", "{\"method\": \"gptq\"}") == QH_OK
        && qh_results_attr_int(w, "/run", "status", 1) == QH_OK
        && qh_results_attr_int(w, "/run", "status", 0) == QH_OK       /* replaced */
        && qh_results_attr_double(w, "/run/layers/fc1", "loss", 0.25) == QH_OK
        && qh_results_attr_int(w, "/run/layers/fc1", "n_dead_cols", 3) == QH_OK
        && qh_results_attr_string(w, "/run/layers/fc2", "note", NULL) == QH_OK  /* auto group */
        && qh_results_write_double(w, "/run/eval/wikitext2/ppl", 27.625) == QH_OK
        && qh_results_write_int(w, "/run/eval/wikitext2/seqlen", 2048) == QH_OK
        && qh_results_write_string(w, "/run/eval/wikitext2/name", "wikitext2") == QH_OK
        && qh_results_write_vec(w, "/run/eval/wikitext2/window_nll", vec, 3) == QH_OK
        && qh_results_write_vec(w, "/run/empty", NULL, 0) == QH_OK
        && qh_results_write_vec_int(w, "/run/ints", ivec, 4) == QH_OK
        && qh_results_write_vec_string(w, "/run/strings", svec, 3) == QH_OK
        && qh_results_write_mat(w, "/run/mat", A, MR, MC, MLD) == QH_OK
        && qh_results_write_mat(w, "/run/big", big, BIG_R, BIG_C, BIG_R) == QH_OK
        && qh_results_attr_double(w, "/run/mat", "scale", -0.5) == QH_OK   /* on a dataset */
        && qh_results_write_table(w, "/run/layer_table", cols, 3, 3) == QH_OK;
    QH_CHECK(ok, "every writer call succeeds: %s", qh_last_error());
}

static void check_everything(hid_t f, const double *big)
{
    char s[256];
    double buf[16];
    hsize_t dims[2] = { 0, 0 }, n;
    int64_t iv[8];
    QH_CHECK(attr_i(f, "/", "schema_version") == QH_RESULTS_SCHEMA_VERSION, "schema_version");
    QH_CHECK(strcmp(attr_s(f, "/", "config_json", s, sizeof s), "{\"method\": \"gptq\"}") == 0,
             "config_json: %s", s);
    QH_CHECK(attr_i(f, "/run", "status") == 0, "status replaced by the second write");
    QH_CHECK(attr_d(f, "/run/layers/fc1", "loss") == 0.25, "double attribute");
    QH_CHECK(attr_i(f, "/run/layers/fc1", "n_dead_cols") == 3, "int attribute");
    QH_CHECK(strcmp(attr_s(f, "/run/layers/fc2", "note", s, sizeof s), "") == 0,
             "NULL string attribute reads as empty: %s", s);
    QH_CHECK(attr_d(f, "/run/mat", "scale") == -0.5, "attribute on a dataset");
    QH_CHECK(dset_d(f, "/run/eval/wikitext2/ppl", buf, 1, dims) == 0 && buf[0] == 27.625,
             "scalar double dataset (rank 0)");
    QH_CHECK(dset_i(f, "/run/eval/wikitext2/seqlen", iv, 1, &n) == 0 && iv[0] == 2048,
             "scalar int dataset");
    QH_CHECK(strcmp(dset_s(f, "/run/eval/wikitext2/name", 0, s, sizeof s), "wikitext2") == 0,
             "scalar string dataset: %s", s);
    QH_CHECK(dset_d(f, "/run/eval/wikitext2/window_nll", buf, 16, dims) == 1 && dims[0] == 3
             && buf[0] == 1.5 && buf[1] == -2.25 && buf[2] == 1e300, "double vector");
    QH_CHECK(dset_d(f, "/run/empty", buf, 16, dims) == 1 && dims[0] == 0, "empty vector");
    QH_CHECK(dset_i(f, "/run/ints", iv, 8, &n) == 1 && n == 4 && iv[0] == INT64_MIN
             && iv[1] == -1 && iv[2] == 0 && iv[3] == INT64_MAX, "int64 vector, extremes");
    QH_CHECK(strcmp(dset_s(f, "/run/strings", 0, s, sizeof s), "alpha") == 0
             && strcmp(dset_s(f, "/run/strings", 1, s, sizeof s), "") == 0
             && strcmp(dset_s(f, "/run/strings", 2, s, sizeof s), "\xce\xbb-utf8") == 0,
             "string vector (NULL -> \"\", UTF-8 kept)");
    int rank = dset_d(f, "/run/mat", buf, 16, dims);
    int mat_ok = rank == 2 && dims[0] == MR && dims[1] == MC;
    for (int i = 0; mat_ok && i < MR; i++)
        for (int j = 0; j < MC; j++)
            mat_ok &= buf[i * MC + j] == 10.0 * i + j;   /* row-major file, (i, j) = 10i + j */
    QH_CHECK(mat_ok, "column-major (3 x 4, ld 5) stored as dims {3, 4}, [i][j] = A(i, j)");
    double *back = malloc(sizeof(double) * BIG_R * BIG_C);
    int big_ok = back && dset_d(f, "/run/big", back, (size_t)BIG_R * BIG_C, dims) == 2
        && dims[0] == BIG_R && dims[1] == BIG_C;
    for (size_t i = 0; big_ok && i < BIG_R; i++)
        for (size_t j = 0; j < BIG_C; j++)
            big_ok &= back[i * BIG_C + j] == big[i + j * BIG_R];
    QH_CHECK(big_ok, "%d x %d matrix written in several row blocks", BIG_R, BIG_C);
    free(back);
    QH_CHECK(strcmp(attr_s(f, "/run/layer_table", "columns", s, sizeof s), "name,index,loss")
             == 0, "table columns attribute: %s", s);
    QH_CHECK(strcmp(dset_s(f, "/run/layer_table/name", 2, s, sizeof s), "q_proj") == 0
             && dset_i(f, "/run/layer_table/index", iv, 8, &n) == 1 && n == 3 && iv[2] == 7
             && dset_d(f, "/run/layer_table/loss", buf, 16, dims) == 1 && dims[0] == 3
             && buf[1] == 3.5, "table columns read back");
    QH_CHECK(dset_ctime(f, "/run/mat") == 0 && dset_ctime(f, "/run/layer_table/loss") == 0,
             "datasets carry no creation time");
}

static void test_round_trip(void)
{
    const char *final = in_dir("round.h5");
    char tmp[256], want[64];
    double *big = malloc(sizeof(double) * BIG_R * BIG_C);
    for (size_t k = 0; big && k < (size_t)BIG_R * BIG_C; k++)
        big[k] = (double)k * 0.5 - 3.0;
    qh_results *w = NULL;
    QH_CHECK(big && qh_results_open(final, &w) == QH_OK && w, "open: %s", qh_last_error());
    if (!w || !big) {
        free(big);
        return;
    }
    QH_CHECK(strcmp(qh_results_final_path(w), final) == 0, "final path kept");
    write_everything(w, big);
    snprintf(want, sizeof want, "round.h5.%ld.", (long)getpid());
    QH_CHECK(!exists(final) && count_tmp("round.h5", tmp, sizeof tmp) == 1
             && !strncmp(tmp, want, strlen(want)) && strlen(tmp) == strlen(want) + 16 + 4,
             "before commit: only the temporary round.h5.<pid>.<16 hex>.tmp exists (%s)", tmp);
    QH_CHECK(qh_results_commit(w) == QH_OK, "commit: %s", qh_last_error());
    QH_CHECK(exists(final) && count_tmp("round.h5", NULL, 0) == 0,
             "after commit: final file, no temporary");
    hid_t f = H5Fopen(final, H5F_ACC_RDONLY, H5P_DEFAULT);
    QH_CHECK(f >= 0, "committed file opens");
    if (f >= 0) {
        check_everything(f, big);
        H5Fclose(f);
    }
    int status = -7;
    QH_CHECK(qh_results_read_status(final, &status) == QH_OK && status == 0,
             "read_status of a finished file: %d", status);
    free(big);
}

/* ---- failures never reach the final name ------------------------------------ */

static void write_small_run(const char *path, int status)
{
    qh_results *w = NULL;
    int st = qh_results_open(path, &w);
    if (st == QH_OK)
        st = qh_results_attr_int(w, "/run", "status", status);
    if (st == QH_OK)
        st = qh_results_attr_string(w, "/run", "id", path);
    if (st == QH_OK)
        st = qh_results_write_double(w, "/run/eval/wikitext2/ppl", 10.0 + status);
    st = st == QH_OK ? qh_results_commit(w) : (qh_results_abort(w), st);
    QH_CHECK(st == QH_OK, "write %s: %s", path, qh_last_error());
}

static void test_abort_and_poison(void)
{
    const char *final = in_dir("keep.h5"), *copy = in_dir("keep.copy");
    write_small_run(final, 0);
    size_t n;
    char *orig = slurp(final, &n);
    QH_CHECK(orig != NULL, "existing file readable");
    if (orig) {
        FILE *c = fopen(copy, "wb");
        if (c) {
            fwrite(orig, 1, n, c);
            fclose(c);
        }
        free(orig);
    }

    qh_results *w = NULL;
    QH_CHECK(qh_results_open(final, &w) == QH_OK, "reopen for writing: %s", qh_last_error());
    if (w) {
        QH_CHECK(qh_results_attr_int(w, "/run", "status", 5) == QH_OK
                 && qh_results_write_double(w, "/run/x", 1.0) == QH_OK, "writes to the new file");
        QH_CHECK(same_bytes(final, copy) && count_tmp("keep.h5", NULL, 0) == 1,
                 "during writing the old file is intact");
        qh_results_abort(w);
    }
    QH_CHECK(same_bytes(final, copy) && count_tmp("keep.h5", NULL, 0) == 0,
             "abort: old file byte for byte, no tmp");

    /* A failed write poisons the writer: commit refuses and keeps the old file. */
    w = NULL;
    QH_CHECK(qh_results_open(final, &w) == QH_OK, "open again");
    if (w) {
        QH_CHECK(qh_results_write_double(w, "/run/x", 1.0) == QH_OK, "first write");
        int st = qh_results_write_double(w, "/run/x", 2.0);
        QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "/run/x")
                 && strstr(qh_last_error(), final), "duplicate dataset -> EINVAL naming "
                 "file and object: %s", qh_last_error());
        QH_CHECK(qh_results_attr_int(w, "/run", "status", 0) == QH_OK, "later writes still work");
        st = qh_results_commit(w);
        QH_CHECK(st == QH_EINVAL && strstr(qh_last_error(), "earlier write failed"),
                 "commit of a poisoned writer refused: %s", qh_last_error());
    }
    QH_CHECK(same_bytes(final, copy) && count_tmp("keep.h5", NULL, 0) == 0,
             "refused commit: old file intact, no tmp");

    /* Table validation. */
    w = NULL;
    if (qh_results_open(in_dir("bad_table.h5"), &w) == QH_OK) {
        const double x[2] = { 1, 2 };
        qh_results_column c[2] = { { "a,b", QH_RESULTS_DOUBLE, x }, { "c", QH_RESULTS_DOUBLE, x } };
        QH_CHECK(qh_results_write_table(w, "/t", c, 2, 2) == QH_EINVAL, "comma in column name");
        c[0].name = "c";
        QH_CHECK(qh_results_write_table(w, "/t", c, 2, 2) == QH_EINVAL, "duplicate column");
        QH_CHECK(qh_results_write_table(w, "/t", c, 0, 2) == QH_EINVAL, "no columns");
        QH_CHECK(qh_results_write_mat(w, "/m", x, 2, 1, 1) == QH_EBADLEN, "ld < rows");
        qh_results_abort(w);
    }
    QH_CHECK(!exists(in_dir("bad_table.h5")) && count_tmp("bad_table.h5", NULL, 0) == 0,
             "aborted new file leaves nothing");
    remove(copy);
}

/* ---- determinism ----------------------------------------------------------- */

static int write_sample(const char *path, int with_provenance)
{
    static const double big[6] = { 1, 2, 3, 4, 5, 6 };
    qh_provenance p;
    qh_results *w = NULL;
    int st = qh_results_open(path, &w);
    if (st != QH_OK)
        return st;
    if (with_provenance)
        qh_provenance_collect(&p);
    const char *names[2] = { "fc1", "fc2" };
    const double loss[2] = { 0.5, 0.75 };
    qh_results_column cols[2] = { { "name", QH_RESULTS_STRING, names },
                                  { "loss", QH_RESULTS_DOUBLE, loss } };
    if ((st = qh_results_attr_string(w, "/", "config_json", "{}")) == QH_OK
        && (st = qh_results_attr_string(w, "/run", "method", "rtn")) == QH_OK
        && (st = qh_results_write_mat(w, "/run/layers/fc1/scale", big, 2, 3, 2)) == QH_OK
        && (st = qh_results_write_vec(w, "/run/eval/wikitext2/window_nll", big, 6)) == QH_OK
        && (st = qh_results_write_table(w, "/run/layer_table", cols, 2, 2)) == QH_OK
        && (st = qh_results_attr_int(w, "/run", "status", 0)) == QH_OK && with_provenance) {
        qh_provenance_finish(&p);
        st = qh_provenance_write(w, &p);
    }
    return st == QH_OK ? qh_results_commit(w) : (qh_results_abort(w), st);
}

/* Copies /run of src into a fresh time-free file dst: the bytes of everything
 * but /provenance (the root attributes are compared separately). */
static int copy_run_only(const char *src, const char *dst)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    hid_t in = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t out = H5Fcreate(dst, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    int ok = in >= 0 && out >= 0 && H5Ocopy(in, "/run", out, "/run", H5P_DEFAULT, H5P_DEFAULT) >= 0;
    if (in >= 0)
        H5Fclose(in);
    if (out >= 0)
        H5Fclose(out);
    H5Pclose(fcpl);
    return ok;
}

static void test_determinism(void)
{
    const char *a = in_dir("det_a.h5"), *b = in_dir("det_b.h5");
    QH_CHECK(write_sample(a, 0) == QH_OK && write_sample(b, 0) == QH_OK, "write two samples: %s",
             qh_last_error());
    QH_CHECK(same_bytes(a, b), "same calls, no provenance: byte-identical files");

    setenv("QH_PROVENANCE_FIXED", "1", 1);
    QH_CHECK(write_sample(a, 1) == QH_OK && write_sample(b, 1) == QH_OK, "fixed provenance: %s",
             qh_last_error());
    QH_CHECK(same_bytes(a, b), "QH_PROVENANCE_FIXED=1: whole files byte-identical");
    unsetenv("QH_PROVENANCE_FIXED");

    QH_CHECK(write_sample(a, 1) == QH_OK && write_sample(b, 1) == QH_OK, "live provenance: %s",
             qh_last_error());
    const char *ra = in_dir("det_ra.h5"), *rb = in_dir("det_rb.h5");
    QH_CHECK(copy_run_only(a, ra) && copy_run_only(b, rb) && same_bytes(ra, rb),
             "live provenance: bytes outside /provenance identical");
    char s1[64], s2[64];
    hid_t fa = H5Fopen(a, H5F_ACC_RDONLY, H5P_DEFAULT), fb = H5Fopen(b, H5F_ACC_RDONLY, H5P_DEFAULT);
    QH_CHECK(fa >= 0 && fb >= 0
             && strcmp(attr_s(fa, "/", "config_json", s1, sizeof s1),
                       attr_s(fb, "/", "config_json", s2, sizeof s2)) == 0
             && attr_i(fa, "/", "schema_version") == attr_i(fb, "/", "schema_version"),
             "root attributes agree");
    if (fa >= 0)
        H5Fclose(fa);
    if (fb >= 0)
        H5Fclose(fb);
    remove(ra);
    remove(rb);
}

/* ---- provenance content ---------------------------------------------------- */

static int is_iso_utc(const char *s)
{
    int y, mo, d, h, mi, se;
    char z = 0;
    return strlen(s) == 20 && sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &z) == 7
        && z == 'Z' && y >= 2000 && mo >= 1 && mo <= 12;
}

static void test_provenance(void)
{
    const char *path = in_dir("prov.h5");
    QH_CHECK(write_sample(path, 1) == QH_OK, "write with provenance: %s", qh_last_error());
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    QH_CHECK(f >= 0, "provenance file opens");
    if (f < 0)
        return;
    char s[512], want[64];
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(want, sizeof want, "%u.%u.%u", maj, min, rel);
    QH_CHECK(strcmp(attr_s(f, "/provenance", "hdf5_version", s, sizeof s), want) == 0,
             "hdf5_version %s (want %s)", s, want);
    attr_s(f, "/provenance", "git_commit", s, sizeof s);
    int hex = strlen(s) == 40;
    for (const char *c = s; hex && *c; c++)
        hex = strchr("0123456789abcdef", *c) != NULL;
    int64_t dirty = attr_i(f, "/provenance", "git_dirty");
    QH_CHECK((hex && (dirty == 0 || dirty == 1)) || (strcmp(s, "unknown") == 0 && dirty == -1),
             "git commit %s, dirty %lld", s, (long long)dirty);
    QH_CHECK(is_iso_utc(attr_s(f, "/provenance", "start_time", s, sizeof s)), "start %s", s);
    QH_CHECK(is_iso_utc(attr_s(f, "/provenance", "end_time", s, sizeof s)), "end %s", s);
    QH_CHECK(strcmp(attr_s(f, "/provenance", "host", s, sizeof s), "<missing>") != 0 && s[0],
             "host %s", s);
    QH_CHECK(strstr(attr_s(f, "/provenance", "compiler", s, sizeof s), __VERSION__) != NULL,
             "compiler %s", s);
    QH_CHECK(attr_i(f, "/provenance", "openblas_threads") >= 1, "openblas threads");
    QH_CHECK(strcmp(attr_s(f, "/provenance", "openblas_core", s, sizeof s), "<missing>") != 0,
             "openblas core %s", s);
    QH_CHECK(attr_i(f, "/provenance", "fixed") == 0, "not fixed");
    /* Every OPENBLAS_* variable of this environment is recorded (none set here). */
    extern char **environ;
    int env_ok = 1;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || (strncmp(*e, "OPENBLAS_", 9) && strncmp(*e, "OMP_NUM_THREADS=", 16)))
            continue;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
        env_ok &= strcmp(attr_s(f, "/provenance/env", name, s, sizeof s), eq + 1) == 0;
    }
    QH_CHECK(env_ok && H5Lexists(f, "/provenance/env", H5P_DEFAULT) > 0,
             "OPENBLAS_* and OMP_NUM_THREADS recorded under /provenance/env");
    H5Fclose(f);
}

/* ---- merge ------------------------------------------------------------------- */

static void test_merge(void)
{
    char r0[512], r1[512], r2[512], out[512];
    snprintf(r0, sizeof r0, "%s", in_dir("m0.h5"));
    snprintf(r1, sizeof r1, "%s", in_dir("m1.h5"));
    snprintf(r2, sizeof r2, "%s", in_dir("m2_absent.h5"));
    snprintf(out, sizeof out, "%s", in_dir("merged.h5"));
    write_small_run(r0, 0);
    write_small_run(r1, 3);
    const char *paths[3] = { r0, r1, r2 }, *names[3] = { "rtn.w4.s0", "gptq.w3.s0", "missing.s0" };
    size_t n_missing = 99;
    int st = qh_results_merge(paths, 3, names, out, &n_missing);
    QH_CHECK(st == QH_OK && n_missing == 1, "merge with one missing input: st %d, missing %zu",
             st, n_missing);
    QH_CHECK(strstr(qh_last_error(), "missing.s0") && strstr(qh_last_error(), r2),
             "missing input named with its path: %s", qh_last_error());
    QH_CHECK(exists(out) && count_tmp("merged.h5", NULL, 0) == 0, "merged file renamed into place");
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    QH_CHECK(f >= 0, "merged file opens");
    if (f >= 0) {
        char s[256];
        double ppl[1];
        hsize_t dims[2];
        QH_CHECK(attr_i(f, "/runs/rtn.w4.s0/run", "status") == 0
                 && attr_i(f, "/runs/gptq.w3.s0/run", "status") == 3, "statuses copied");
        QH_CHECK(strcmp(attr_s(f, "/runs/gptq.w3.s0/run", "id", s, sizeof s), r1) == 0,
                 "string attribute copied: %s", s);
        QH_CHECK(dset_d(f, "/runs/gptq.w3.s0/run/eval/wikitext2/ppl", ppl, 1, dims) == 0
                 && ppl[0] == 13.0, "dataset copied");
        QH_CHECK(attr_i(f, "/runs/rtn.w4.s0", "schema_version") == QH_RESULTS_SCHEMA_VERSION,
                 "root attributes of a run copied");
        QH_CHECK(H5Lexists(f, "/runs/missing.s0", H5P_DEFAULT) == 0, "missing run absent");
        QH_CHECK(attr_i(f, "/", "n_runs") == 2 && attr_i(f, "/", "n_missing") == 1
                 && strcmp(attr_s(f, "/", "missing", s, sizeof s), "missing.s0") == 0,
                 "merge summary attributes");
        H5Fclose(f);
    }
    /* An unreadable (non-HDF5) input is skipped too; duplicate names are refused. */
    put_file(r2, "not an HDF5 file\n");
    st = qh_results_merge(paths, 3, names, out, &n_missing);
    QH_CHECK(st == QH_OK && n_missing == 1, "garbage input counted as missing: st %d, %zu: %s", st, n_missing, qh_last_error());
    const char *dup[3] = { "a", "b", "a" };
    QH_CHECK(qh_results_merge(paths, 3, dup, in_dir("dup.h5"), &n_missing) == QH_EINVAL
             && !exists(in_dir("dup.h5")), "duplicate run names refused: %s", qh_last_error());
    remove(r0);
    remove(r1);
    remove(r2);
    remove(out);
}

/* ---- status reader and bad paths ------------------------------------------------ */

static void test_status_and_bad_paths(void)
{
    int status = 42;
    const char *absent = in_dir("absent.h5"), *garbage = in_dir("garbage.h5");
    const char *norun = in_dir("norun.h5"), *failed = in_dir("failed.h5");
    QH_CHECK(qh_results_read_status(absent, &status) == QH_EIO && strstr(qh_last_error(), absent)
             && status == 42, "missing file -> EIO naming it: %s", qh_last_error());
    put_file(garbage, "garbage");
    QH_CHECK(qh_results_read_status(garbage, &status) == QH_EIO, "non-HDF5 file -> EIO");
    qh_results *w = NULL;
    if (qh_results_open(norun, &w) == QH_OK)
        QH_CHECK(qh_results_commit(w) == QH_OK, "empty file");
    QH_CHECK(qh_results_read_status(norun, &status) == QH_EIO
             && strstr(qh_last_error(), "status"), "file without /run status -> EIO: %s",
             qh_last_error());
    write_small_run(failed, QH_ENOTPD);
    QH_CHECK(qh_results_read_status(failed, &status) == QH_OK && status == QH_ENOTPD,
             "failed run's status read back: %d", status);

    const char *bad = in_dir("no_such_dir/run.h5");
    w = NULL;
    int st = qh_results_open(bad, &w);
    QH_CHECK(st == QH_EIO && w == NULL && strstr(qh_last_error(), bad),
             "open in a missing directory -> EIO naming the path: %s", qh_last_error());
    size_t n_missing;
    const char *paths[1] = { failed }, *names[1] = { "x" };
    st = qh_results_merge(paths, 1, names, bad, &n_missing);
    QH_CHECK(st == QH_EIO && strstr(qh_last_error(), bad), "merge to a missing directory -> "
             "EIO: %s", qh_last_error());
    QH_CHECK(qh_results_open("", &w) == QH_EINVAL, "empty path -> EINVAL");
    remove(garbage);
    remove(norun);
    remove(failed);
}

/* A chain of nested folders under top whose path is longer than 2 KiB: a
 * listing that formats paths into a fixed buffer would cut them.  Writes the
 * deepest folder into out (cap bytes); returns the depth made. */
static int make_deep(const char *top, char *out, size_t cap)
{
    char seg[201];
    memset(seg, 'd', 200);
    seg[200] = '\0';
    int depth = 0;
    snprintf(out, cap, "%s", top);
    while (strlen(out) < 2200 && strlen(out) + 202 < cap) {
        strcat(out, "/");
        strcat(out, seg);
        if (mkdir(out, 0777) != 0)
            break;
        depth++;
    }
    return depth;
}

/* qh_results_scan_dir: the .h5 entries sorted by name as DIR/NAME, each .tmp
 * entry one warning naming it, other entries ignored; long paths whole; a
 * folder that cannot be read is EIO naming it. */
static void test_scan_dir(void)
{
    char top[512], a[600], b[600], t[600], t2[600], other[600], deep[4096], x[4200];
    char **paths = NULL, **warnings = NULL;
    size_t n_paths = 0, n_warnings = 0;
    snprintf(top, sizeof top, "%s", in_dir("scan"));
    QH_CHECK(mkdir(top, 0777) == 0, "mkdir %s", top);
    snprintf(a, sizeof a, "%s/a.h5", top);
    snprintf(b, sizeof b, "%s/b.h5", top);
    snprintf(t, sizeof t, "%s/c.h5.tmp", top);
    snprintf(t2, sizeof t2, "%s/d.h5.4242.0123456789abcdef.tmp", top);   /* a writer's own name */
    snprintf(other, sizeof other, "%s/notes.txt", top);
    put_file(b, "b");
    put_file(a, "a");
    put_file(t, "partial");
    put_file(t2, "partial");
    put_file(other, "not a run file");
    int st = qh_results_scan_dir(top, &paths, &n_paths, &warnings, &n_warnings);
    QH_CHECK(st == QH_OK && n_paths == 2 && !strcmp(paths[0], a) && !strcmp(paths[1], b),
             "two .h5 files, sorted, as DIR/NAME (%zu)", n_paths);
    QH_CHECK(st == QH_OK && n_warnings == 2 && strstr(warnings[0], t) && strstr(warnings[1], t2)
             && strstr(warnings[0], "unfinished") && strstr(warnings[1], "unfinished"),
             "each .tmp file (old and per-writer names) is a warning naming it");
    qh_h5_free_names(paths, n_paths);
    qh_h5_free_names(warnings, n_warnings);

    int depth = make_deep(top, deep, sizeof deep);
    snprintf(x, sizeof x, "%s/x.h5", deep);
    put_file(x, "x");
    st = qh_results_scan_dir(deep, &paths, &n_paths, &warnings, &n_warnings);
    QH_CHECK(st == QH_OK && n_paths == 1 && strlen(deep) > 2048 && !strcmp(paths[0], x),
             "a %zu-byte path is listed whole", strlen(x));
    qh_h5_free_names(paths, n_paths);
    qh_h5_free_names(warnings, n_warnings);
    remove(x);
    for (; depth > 0; depth--) {     /* the deepest folder first */
        rmdir(deep);
        *strrchr(deep, '/') = '\0';
    }

    const char *missing = in_dir("no_such_folder");
    paths = warnings = (char **)1;   /* must come back NULL */
    st = qh_results_scan_dir(missing, &paths, &n_paths, &warnings, &n_warnings);
    QH_CHECK(st == QH_EIO && strstr(qh_last_error(), missing) && !paths && !warnings
             && n_paths == 0 && n_warnings == 0, "missing folder -> EIO naming it: %s",
             qh_last_error());
    remove(a);
    remove(b);
    remove(t);
    remove(t2);
    remove(other);
    QH_CHECK(rmdir(top) == 0, "scan folder empty at the end");
}

/* ---- concurrent writers ------------------------------------------------------ */

#define RACE_WRITERS 6
#define RACE_ROUNDS 5
#define RACE_N 20000

/* One process's writes of path: RACE_ROUNDS complete files whose every value
 * is tag(writer, round), so a file mixed from two writers shows.  Returns the
 * number of failed commits. */
static int race_writer(const char *path, int k)
{
    double *v = malloc(RACE_N * sizeof *v);
    int failed = 0;
    for (int r = 0; r < RACE_ROUNDS && v; r++) {
        int tag = 100 * k + r;
        for (size_t i = 0; i < RACE_N; i++)
            v[i] = tag;
        qh_results *w = NULL;
        int st = qh_results_open(path, &w);
        if (st == QH_OK) st = qh_results_attr_int(w, "/run", "tag", tag);
        if (st == QH_OK) st = qh_results_write_vec(w, "/run/values", v, RACE_N);
        if (st == QH_OK) st = qh_results_attr_int(w, "/run", "status", 0);
        st = st == QH_OK ? qh_results_commit(w) : (qh_results_abort(w), st);
        if (st != QH_OK) {
            fprintf(stderr, "writer %d round %d: %s\n", k, r, qh_last_error());
            failed++;
        }
    }
    free(v);
    return v ? failed : RACE_ROUNDS;
}

/* RACE_WRITERS processes write one cell path RACE_ROUNDS times each, at once
 * (two runners of one cell): every commit succeeds, the file under the final
 * name is one writer's complete file, and no temporary is left. */
static void test_concurrent_writers(void)
{
    const char *path = in_dir("race.h5");
    pid_t pids[RACE_WRITERS];
    int started = 0, clean = 1;
    for (int k = 0; k < RACE_WRITERS; k++) {
        fflush(NULL);
        pids[k] = fork();
        if (pids[k] == 0)
            _exit(race_writer(path, k) ? 1 : 0);
        started += pids[k] > 0;
    }
    for (int k = 0; k < RACE_WRITERS; k++) {
        int ws = 0;
        if (pids[k] > 0 && (waitpid(pids[k], &ws, 0) != pids[k] || !WIFEXITED(ws)
                            || WEXITSTATUS(ws) != 0))
            clean = 0;
    }
    QH_CHECK(started == RACE_WRITERS && clean, "%d writers x %d commits of one path all succeed",
             RACE_WRITERS, RACE_ROUNDS);
    int status = -1;
    QH_CHECK(qh_results_read_status(path, &status) == QH_OK && status == 0,
             "the file under the final name is readable, status 0");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    double *v = malloc(RACE_N * sizeof *v);
    hsize_t dims[2] = { 0, 0 };
    int whole = 0;
    if (f >= 0 && v) {
        int64_t tag = attr_i(f, "/run", "tag");
        whole = dset_d(f, "/run/values", v, RACE_N, dims) == 1 && dims[0] == RACE_N && tag >= 0
                && tag / 100 < RACE_WRITERS && tag % 100 < RACE_ROUNDS;
        for (size_t i = 0; whole && i < RACE_N; i++)
            whole = v[i] == (double)tag;
    }
    if (f >= 0) H5Fclose(f);
    free(v);
    QH_CHECK(whole, "the final file is one writer's complete file (values all equal its tag)");
    QH_CHECK(count_tmp("race.h5", NULL, 0) == 0, "no temporary left");
    remove(path);
}

/* A killed writer's temporaries go; another process's stay. */
static void test_remove_temporaries(void)
{
    const char *mine1 = in_dir("rm.h5.123.00000000000000aa.tmp"), *mine2 = in_dir("rm.h5.123.bb.tmp"),
               *other_pid = in_dir("rm.h5.1234.00000000000000aa.tmp"),
               *other_file = in_dir("rmx.h5.123.00000000000000aa.tmp"), *final = in_dir("rm.h5");
    char keep[3][512];
    snprintf(keep[0], sizeof keep[0], "%s", other_pid);
    snprintf(keep[1], sizeof keep[1], "%s", other_file);
    snprintf(keep[2], sizeof keep[2], "%s", final);
    put_file(mine1, "partial");
    put_file(mine2, "partial");
    for (int k = 0; k < 3; k++)
        put_file(keep[k], "other");
    size_t n = 0;
    int st = qh_results_remove_temporaries(in_dir("rm.h5"), 123, &n);
    QH_CHECK(st == QH_OK && n == 2 && !exists(in_dir("rm.h5.123.00000000000000aa.tmp"))
             && !exists(in_dir("rm.h5.123.bb.tmp")), "pid 123's two temporaries removed (%zu)", n);
    QH_CHECK(exists(keep[0]) && exists(keep[1]) && exists(keep[2]),
             "another pid's temporary, another file's and the final file stay");
    st = qh_results_remove_temporaries(in_dir("none/rm.h5"), 123, &n);
    QH_CHECK(st == QH_EIO && strstr(qh_last_error(), "none"), "unreadable folder: EIO naming it: %s",
             qh_last_error());
    for (int k = 0; k < 3; k++)
        remove(keep[k]);
}

/* A folder's temporaries of one pid, whatever their final names (the float
 * cache's): "*.<pid>.<nonce>.tmp" go; other pids', other forms and final
 * files stay. */
static void test_remove_folder_temporaries(void)
{
    const char *gone[] = { "fc.bin.123.00000000000000aa.tmp", "b.x.y.123.0a.tmp" };
    const char *stay[] = { "fc.bin.1234.00000000000000aa.tmp", "fc.bin.23.00000000000000aa.tmp",
                           "fc.bin.123.tmp", "fc.bin.123.00000000000000aa.h5", "fc.bin" };
    for (size_t k = 0; k < 2; k++) put_file(in_dir(gone[k]), "partial");
    for (size_t k = 0; k < 5; k++) put_file(in_dir(stay[k]), "other");
    size_t n = 0;
    int st = qh_results_remove_folder_temporaries(dir, 123, &n);
    QH_CHECK(st == QH_OK && n == 2 && !exists(in_dir(gone[0])) && !exists(in_dir(gone[1])),
             "folder: pid 123's two temporaries removed (%zu)", n);
    int kept = 1;
    for (size_t k = 0; k < 5; k++) {
        kept &= exists(in_dir(stay[k]));
        remove(in_dir(stay[k]));
    }
    QH_CHECK(kept, "folder: other pids' temporaries, other forms and final files stay");
    char name[600];
    QH_CHECK(qh_results_tmp_name("x/fc.bin", name, sizeof name) == QH_OK && !strncmp(name, "x/fc.bin.", 9)
             && strlen(name) > 13 && !strcmp(name + strlen(name) - 4, ".tmp"),
             "tmp name %s: <final>.<pid>.<nonce>.tmp", name);
    char a[600];
    QH_CHECK(qh_results_tmp_name("x/fc.bin", a, sizeof a) == QH_OK && strcmp(a, name),
             "two calls give two names");
    QH_CHECK(qh_results_tmp_name("x/fc.bin", name, 12) == QH_EINVAL, "a name that does not fit: EINVAL");
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qh_test_results_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        QH_CHECK(0, "cannot make a temporary directory %s", dir);
        return qh_test_summary();
    }
    test_round_trip();
    test_abort_and_poison();
    test_determinism();
    test_provenance();
    test_merge();
    test_status_and_bad_paths();
    test_scan_dir();
    test_concurrent_writers();
    test_remove_temporaries();
    test_remove_folder_temporaries();
    const char *leftovers[] = { "round.h5", "keep.h5", "det_a.h5", "det_b.h5", "prov.h5" };
    for (size_t i = 0; i < sizeof leftovers / sizeof leftovers[0]; i++)
        remove(in_dir(leftovers[i]));
    QH_CHECK(rmdir(dir) == 0, "temporary directory %s empty at the end", dir);
    return qh_test_summary();
}
