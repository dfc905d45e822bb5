/* reader.c -- read-only helpers for results files: scalar attributes, 1-D
 * datasets, group listings, tables and the run files of a folder (see
 * reader.h and results/README.md).
 *
 * Left out: matrices, attribute arrays, partial reads.
 */
#include "results/reader.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_CAP 1024

/* The file name of f for messages (static buffer: single-threaded callers). */
static const char *file_name(hid_t f)
{
    static char buf[NAME_CAP];
    if (H5Fget_name(f, buf, sizeof buf) < 0)
        snprintf(buf, sizeof buf, "(unknown file)");
    return buf;
}

int qh_h5_open_read(const char *path, hid_t *out)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   /* library code never prints */
    *out = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    if (*out < 0)
        QH_ERROR(QH_EIO, "results file %s: cannot open (missing, unreadable or not HDF5)", path);
    return QH_OK;
}

void qh_h5_close(hid_t f)
{
    if (f >= 0)
        H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
}

int qh_h5_exists(hid_t f, const char *obj)
{
    char buf[NAME_CAP];
    if (!obj || snprintf(buf, sizeof buf, "%s", obj) >= (int)sizeof buf)
        return 0;
    if (strcmp(buf, "/") == 0)
        return 1;
    /* H5Lexists needs every parent to exist: check one component at a time. */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        htri_t ex = H5Lexists(f, buf, H5P_DEFAULT);
        *p = saved;
        if (ex <= 0) {
            H5Eclear2(H5E_DEFAULT);
            return 0;
        }
        if (saved == '\0')
            break;
    }
    htri_t ok = H5Oexists_by_name(f, buf, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return ok > 0;
}

int qh_h5_attr_exists(hid_t f, const char *obj, const char *name)
{
    if (!qh_h5_exists(f, obj))
        return 0;
    htri_t ex = H5Aexists_by_name(f, obj, name, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return ex > 0;
}

/* Opens scalar attribute obj@name; *type gets its type.  Negative on failure
 * (message set in *st). */
static hid_t open_scalar_attr(hid_t f, const char *obj, const char *name, hid_t *type, int *st)
{
    *type = -1;
    if (!qh_h5_attr_exists(f, obj, name)) {
        QH_SET_ERROR(*st, QH_EIO, "results file %s: no attribute %s on %s", file_name(f), name,
                     obj);
        return -1;
    }
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = a < 0 ? -1 : H5Aget_space(a);
    hssize_t np = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    if (space >= 0)
        H5Sclose(space);
    if (a < 0 || np != 1 || (*type = H5Aget_type(a)) < 0) {
        if (a >= 0)
            H5Aclose(a);
        H5Eclear2(H5E_DEFAULT);
        QH_SET_ERROR(*st, QH_EIO, "results file %s: attribute %s of %s is not a readable scalar",
                     file_name(f), name, obj);
        return -1;
    }
    return a;
}

static int read_number_attr(hid_t f, const char *obj, const char *name, int allow_float,
                            hid_t mtype, void *v)
{
    int st = QH_OK;
    hid_t type;
    hid_t a = open_scalar_attr(f, obj, name, &type, &st);
    if (a < 0)
        return st;
    H5T_class_t cls = H5Tget_class(type);
    if (!(cls == H5T_INTEGER || (allow_float && cls == H5T_FLOAT)) || H5Aread(a, mtype, v) < 0)
        QH_SET_ERROR(st, QH_EIO, "results file %s: attribute %s of %s is not %s", file_name(f),
                     name, obj, allow_float ? "a number" : "an integer");
    H5Tclose(type);
    H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    return st;
}

int qh_h5_attr_double(hid_t f, const char *obj, const char *name, double *v)
{
    return read_number_attr(f, obj, name, 1, H5T_NATIVE_DOUBLE, v);
}

int qh_h5_attr_int(hid_t f, const char *obj, const char *name, int64_t *v)
{
    return read_number_attr(f, obj, name, 0, H5T_NATIVE_INT64, v);
}

/* Reads a string attribute of file type `type` (variable or fixed length). */
static int read_string(hid_t a, hid_t type, char **out)
{
    if (H5Tis_variable_str(type) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        int ok = mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0
                 && H5Tset_cset(mt, H5Tget_cset(type)) >= 0 && H5Aread(a, mt, &s) >= 0;
        if (mt >= 0)
            H5Tclose(mt);
        if (!ok)
            return QH_EIO;
        *out = strdup(s ? s : "");
        H5free_memory(s);
        return *out ? QH_OK : QH_ENOMEM;
    }
    size_t len = H5Tget_size(type);
    char *s = calloc(len + 1, 1);
    if (!s)
        return QH_ENOMEM;
    if (H5Aread(a, type, s) < 0) {
        free(s);
        return QH_EIO;
    }
    *out = s;
    return QH_OK;
}

int qh_h5_attr_string(hid_t f, const char *obj, const char *name, char **v)
{
    int st = QH_OK;
    hid_t type;
    *v = NULL;
    hid_t a = open_scalar_attr(f, obj, name, &type, &st);
    if (a < 0)
        return st;
    if (H5Tget_class(type) != H5T_STRING)
        QH_SET_ERROR(st, QH_EIO, "results file %s: attribute %s of %s is not a string",
                     file_name(f), name, obj);
    else if ((st = read_string(a, type, v)) != QH_OK)
        QH_SET_ERROR(st, st, "results file %s: cannot read string attribute %s of %s",
                     file_name(f), name, obj);
    H5Tclose(type);
    H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    return st;
}

/* Opens the 1-D dataset at path; *n its length, *cls its type class. */
static hid_t open_vec(hid_t f, const char *path, size_t *n, H5T_class_t *cls, int *st)
{
    hid_t d = qh_h5_exists(f, path) ? H5Dopen2(f, path, H5P_DEFAULT) : -1;
    hid_t space = d < 0 ? -1 : H5Dget_space(d);
    hid_t type = d < 0 ? -1 : H5Dget_type(d);
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    hsize_t dims[1] = { 0 };
    if (rank == 1)
        H5Sget_simple_extent_dims(space, dims, NULL);
    *cls = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    H5Eclear2(H5E_DEFAULT);
    if (d < 0 || rank != 1) {
        if (d >= 0)
            H5Dclose(d);
        QH_SET_ERROR(*st, QH_EIO, "results file %s: %s is %s", file_name(f), path,
                     d < 0 ? "missing or not a dataset" : "not a 1-D dataset");
        return -1;
    }
    *n = (size_t)dims[0];
    return d;
}

/* Reads n elements of d into a new array of elem bytes each in memory type mt. */
static int read_all(hid_t d, hid_t mt, size_t n, size_t elem, void **out)
{
    *out = NULL;
    if (n == 0)
        return QH_OK;
    void *buf = malloc(n * elem);
    if (!buf)
        return QH_ENOMEM;
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        H5Eclear2(H5E_DEFAULT);
        return QH_EIO;
    }
    *out = buf;
    return QH_OK;
}

int qh_h5_read_vec(hid_t f, const char *path, double **x, size_t *n)
{
    int st = QH_OK;
    H5T_class_t cls;
    *x = NULL;
    *n = 0;
    hid_t d = open_vec(f, path, n, &cls, &st);
    if (d < 0)
        return st;
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
        QH_SET_ERROR(st, QH_EIO, "results file %s: %s is not numeric", file_name(f), path);
    else if ((st = read_all(d, H5T_NATIVE_DOUBLE, *n, sizeof(double), (void **)x)) != QH_OK)
        QH_SET_ERROR(st, st, "results file %s: cannot read %s", file_name(f), path);
    H5Dclose(d);
    return st;
}

void qh_h5_free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

int qh_h5_list_group(hid_t f, const char *path, char ***names, size_t *n)
{
    int st = QH_OK;
    H5G_info_t info;
    *names = NULL;
    *n = 0;
    hid_t g = qh_h5_exists(f, path) ? H5Gopen2(f, path, H5P_DEFAULT) : -1;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        QH_SET_ERROR(st, QH_EIO, "results file %s: %s is missing or not a group", file_name(f),
                     path);
        goto cleanup;
    }
    if (info.nlinks == 0)
        goto cleanup;
    if (!(*names = calloc(info.nlinks, sizeof **names))) {
        QH_SET_ERROR(st, QH_ENOMEM, "out of memory listing %s", path);
        goto cleanup;
    }
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0,
                                         H5P_DEFAULT);
        char *s = len < 0 ? NULL : malloc((size_t)len + 1);
        if (!s || H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, s,
                                     (size_t)len + 1, H5P_DEFAULT) < 0) {
            free(s);
            QH_SET_ERROR(st, len < 0 ? QH_EIO : QH_ENOMEM, "results file %s: cannot list %s",
                         file_name(f), path);
            goto cleanup;
        }
        (*names)[(*n)++] = s;
    }
cleanup:
    if (g >= 0)
        H5Gclose(g);
    H5Eclear2(H5E_DEFAULT);
    if (st != QH_OK) {
        qh_h5_free_names(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return st;
}

/* Reads a 1-D string dataset into a new array of n new strings. */
static int read_string_column(hid_t d, size_t n, char ***out)
{
    hid_t ft = H5Dget_type(d);
    if (ft < 0)
        return QH_EIO;
    int st = QH_OK;
    char **s = calloc(n ? n : 1, sizeof *s);
    if (!s) {
        H5Tclose(ft);
        return QH_ENOMEM;
    }
    if (H5Tis_variable_str(ft) > 0) {
        char **raw = calloc(n ? n : 1, sizeof *raw);
        hid_t mt = H5Tcopy(H5T_C_S1);
        int ok = raw && mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0
                 && H5Tset_cset(mt, H5Tget_cset(ft)) >= 0
                 && (n == 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0);
        for (size_t i = 0; i < n && ok; i++)
            if (!(s[i] = strdup(raw[i] ? raw[i] : "")))
                st = QH_ENOMEM;
        for (size_t i = 0; raw && ok && i < n; i++)
            H5free_memory(raw[i]);
        if (!ok)
            st = QH_EIO;
        free(raw);
        if (mt >= 0)
            H5Tclose(mt);
    } else {
        size_t len = H5Tget_size(ft);
        char *flat = calloc(n * len + 1, 1);
        if (!flat || (n && H5Dread(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, flat) < 0))
            st = flat ? QH_EIO : QH_ENOMEM;
        for (size_t i = 0; i < n && st == QH_OK; i++)
            if (!(s[i] = strndup(flat + i * len, len)))
                st = QH_ENOMEM;
        free(flat);
    }
    H5Tclose(ft);
    H5Eclear2(H5E_DEFAULT);
    if (st != QH_OK) {
        for (size_t i = 0; i < n; i++)
            free(s[i]);
        free(s);
        return st;
    }
    *out = s;
    return QH_OK;
}

/* Reads column c (name set) from dataset `path`, checking its length. */
static int read_column(hid_t f, const char *path, qh_h5_column *c, size_t *n_rows, int first)
{
    int st = QH_OK;
    size_t n;
    H5T_class_t cls;
    hid_t d = open_vec(f, path, &n, &cls, &st);
    if (d < 0)
        return st;
    if (!first && n != *n_rows) {
        QH_SET_ERROR(st, QH_EIO, "results file %s: table column %s has %zu rows, expected %zu",
                     file_name(f), path, n, *n_rows);
        goto cleanup;
    }
    *n_rows = n;
    if (cls == H5T_FLOAT) {
        c->type = QH_RESULTS_DOUBLE;
        st = read_all(d, H5T_NATIVE_DOUBLE, n, sizeof(double), (void **)&c->d);
    } else if (cls == H5T_INTEGER) {
        c->type = QH_RESULTS_INT64;
        st = read_all(d, H5T_NATIVE_INT64, n, sizeof(int64_t), (void **)&c->i);
    } else if (cls == H5T_STRING) {
        c->type = QH_RESULTS_STRING;
        st = read_string_column(d, n, &c->s);
    } else {
        QH_SET_ERROR(st, QH_EIO, "results file %s: table column %s has an unsupported type",
                     file_name(f), path);
        goto cleanup;
    }
    if (st != QH_OK)
        QH_SET_ERROR(st, st, "results file %s: cannot read table column %s", file_name(f), path);
cleanup:
    H5Dclose(d);
    H5Eclear2(H5E_DEFAULT);
    return st;
}

static size_t count_columns(const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

int qh_h5_read_table(hid_t f, const char *path, qh_h5_table *t)
{
    char *list = NULL, dset[NAME_CAP];
    int st;
    memset(t, 0, sizeof *t);
    if ((st = qh_h5_attr_string(f, path, "columns", &list)) != QH_OK)
        return st;
    size_t n = *list ? count_columns(list) : 0;
    if (n == 0) {
        QH_SET_ERROR(st, QH_EIO, "results file %s: table %s lists no columns", file_name(f), path);
        goto cleanup;
    }
    if (!(t->cols = calloc(n, sizeof *t->cols))) {
        QH_SET_ERROR(st, QH_ENOMEM, "out of memory reading table %s", path);
        goto cleanup;
    }
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name && st == QH_OK;
         name = strtok_r(NULL, ",", &save)) {
        qh_h5_column *c = &t->cols[t->n_cols];
        if (!(c->name = strdup(name))) {
            QH_SET_ERROR(st, QH_ENOMEM, "out of memory reading table %s", path);
            break;
        }
        t->n_cols++;
        if (snprintf(dset, sizeof dset, "%s/%s", path, name) >= (int)sizeof dset)
            QH_SET_ERROR(st, QH_EIO, "results file %s: column path %s/%s too long",
                         file_name(f), path, name);
        else
            st = read_column(f, dset, c, &t->n_rows, t->n_cols == 1);
    }
cleanup:
    free(list);
    if (st != QH_OK)
        qh_h5_table_free(t);
    return st;
}

void qh_h5_table_free(qh_h5_table *t)
{
    if (!t)
        return;
    for (size_t j = 0; t->cols && j < t->n_cols; j++) {
        qh_h5_column *c = &t->cols[j];
        free(c->name);
        free(c->d);
        free(c->i);
        for (size_t r = 0; c->s && r < t->n_rows; r++)
            free(c->s[r]);
        free(c->s);
    }
    free(t->cols);
    memset(t, 0, sizeof *t);
}

const qh_h5_column *qh_h5_table_find(const qh_h5_table *t, const char *name)
{
    for (size_t j = 0; t && j < t->n_cols; j++)
        if (strcmp(t->cols[j].name, name) == 0)
            return &t->cols[j];
    return NULL;
}

double qh_h5_column_value(const qh_h5_column *c, size_t n_rows, size_t row)
{
    if (!c || row >= n_rows)
        return NAN;
    if (c->type == QH_RESULTS_DOUBLE)
        return c->d[row];
    if (c->type == QH_RESULTS_INT64)
        return (double)c->i[row];
    return NAN;
}

/* ---- the run files of a folder ----------------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends "dir/name" + tail to (*list, *n), sized to fit: a long name is
 * kept whole rather than truncated into a different file's name. */
static int push_entry(char ***list, size_t *n, const char *dir, const char *name,
                      const char *prefix, const char *tail)
{
    size_t len = strlen(prefix) + strlen(dir) + 1 + strlen(name) + strlen(tail) + 1;
    char *s = malloc(len);
    char **grown = s ? realloc(*list, (*n + 1) * sizeof **list) : NULL;
    if (!grown) {
        free(s);
        QH_ERROR(QH_ENOMEM, "out of memory listing %s", dir);
    }
    snprintf(s, len, "%s%s/%s%s", prefix, dir, name, tail);
    *list = grown;
    grown[(*n)++] = s;
    return QH_OK;
}

int qh_results_scan_dir(const char *dir, char ***paths, size_t *n_paths, char ***warnings,
                        size_t *n_warnings)
{
    int st = QH_OK;
    *paths = *warnings = NULL;
    *n_paths = *n_warnings = 0;
    DIR *d = opendir(dir);
    if (!d)
        QH_ERROR(QH_EIO, "results directory %s: cannot read (%s)", dir, strerror(errno));
    for (struct dirent *e; st == QH_OK && (e = readdir(d));) {
        if (ends_with(e->d_name, ".tmp"))
            st = push_entry(warnings, n_warnings, dir, e->d_name, "skipping temporary file ",
                            " (an unfinished write)");
        else if (ends_with(e->d_name, ".h5"))
            st = push_entry(paths, n_paths, dir, e->d_name, "", "");
    }
    closedir(d);
    if (st != QH_OK) {
        qh_h5_free_names(*paths, *n_paths);
        qh_h5_free_names(*warnings, *n_warnings);
        *paths = *warnings = NULL;
        *n_paths = *n_warnings = 0;
        return st;
    }
    if (*n_paths)                    /* readdir order is the file system's: sort */
        qsort(*paths, *n_paths, sizeof **paths, cmp_name);
    if (*n_warnings)
        qsort(*warnings, *n_warnings, sizeof **warnings, cmp_name);
    return QH_OK;
}

void qh_results_read_message(const char *path, char *buf, size_t cap)
{
    hid_t f;
    char *msg = NULL;
    buf[0] = '\0';
    if (qh_h5_open_read(path, &f) != QH_OK) return;
    if (qh_h5_attr_exists(f, "/run", "message") && qh_h5_attr_string(f, "/run", "message", &msg) == QH_OK)
        snprintf(buf, cap, "%s", msg);
    free(msg);
    qh_h5_close(f);
}
