/* writer.c -- HDF5 results writer (temporary name + rename, no timestamps),
 * merge by whole-file H5Ocopy, and the status reader for resumed sweeps.
 *
 * Determinism: every group and dataset is created with object time tracking
 * off, datasets are contiguous (no chunking, no compression, no filters whose
 * output could depend on the library build), attributes are scalar, strings
 * variable-length UTF-8.  Groups are created one level at a time by this file
 * (not through HDF5's intermediate-group links) so that every group gets the
 * same creation property list.
 *
 * Several processes may write the same final path at once (two runners of
 * one cell): each writes its own uniquely named temporary and the last
 * rename wins, so the final file is always one writer's complete file.
 *
 * Left out: chunked/compressed datasets, float32 datasets, appending to or
 * reopening a committed file, two writers sharing one open file.
 */
#include "results/writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qh_path.h"

#define PATH_CAP 1024                /* longest object path, in bytes with the NUL */
#define MAT_BLOCK_ELEMS (1u << 20)   /* transposition buffer of the matrix writer */

struct qh_results {
    char *final_path;
    char *tmp_path;
    hid_t file;
    hid_t gcpl;                      /* group creation: times off */
    hid_t dcpl;                      /* dataset creation: times off */
    int status;                      /* first failure; QH_OK while healthy */
    char first_error[768];           /* its message, repeated by commit */
};

/* ---- error reporting ---------------------------------------------------- */

static void silence_hdf5(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   /* library code never prints */
}

static herr_t take_first_desc(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0 && e->desc)
        snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}

/* The innermost HDF5 error description (most specific first), then clears
 * the stack. */
static void h5_reason(char *buf)
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first_desc, buf);
    H5Eclear2(H5E_DEFAULT);
}

/* Sets "results file <path>: <what> (HDF5: <reason>)" and returns status. */
static int fail(const char *file_path, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(const char *file_path, int status, const char *fmt, ...)
{
    char what[600], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    h5_reason(why);
    if (why[0])
        QH_ERROR(status, "results file %s: %s (HDF5: %s)", file_path, what, why);
    QH_ERROR(status, "results file %s: %s", file_path, what);
}

/* Records the first failure of a writer so that commit can refuse. */
static int track(qh_results *w, int st)
{
    if (st != QH_OK && w->status == QH_OK) {
        w->status = st;
        snprintf(w->first_error, sizeof w->first_error, "%s", qh_last_error());
    }
    return st;
}

/* ---- paths and groups ----------------------------------------------------- */

/* Writes "/a/b" form of path into out (PATH_CAP bytes): adds the leading '/',
 * drops a trailing one, rejects empty components and "." / ".." components. */
static int normalize_path(const qh_results *w, const char *path, char *out)
{
    if (!path || !*path)
        return fail(w->final_path, QH_EINVAL, "empty object path");
    size_t len = strlen(path);
    if (len + 2 > PATH_CAP)
        return fail(w->final_path, QH_EINVAL, "object path longer than %d bytes: %.60s...",
                    PATH_CAP - 2, path);
    snprintf(out, PATH_CAP, "%s%s", path[0] == '/' ? "" : "/", path);
    len = strlen(out);
    if (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    for (const char *c = out; *c; ) {          /* c points at a '/' */
        const char *next = strchr(c + 1, '/');
        size_t n = next ? (size_t)(next - c - 1) : strlen(c + 1);
        if ((n == 0 && len > 1) || (n == 1 && c[1] == '.') || (n == 2 && c[1] == '.' && c[2] == '.'))
            return fail(w->final_path, QH_EINVAL, "bad object path \"%s\"", path);
        if (!next)
            break;
        c = next;
    }
    return QH_OK;
}

/* 1 if a link named by the normalized path exists, 0 if not, -1 on error.
 * Walks prefixes because H5Lexists fails when an intermediate is missing. */
static int link_exists(hid_t file, const char *norm)
{
    char buf[PATH_CAP];
    if (strcmp(norm, "/") == 0)
        return 1;
    snprintf(buf, sizeof buf, "%s", norm);
    for (char *c = strchr(buf + 1, '/'); ; c = strchr(c + 1, '/')) {
        if (c)
            *c = '\0';
        htri_t ex = H5Lexists(file, buf, H5P_DEFAULT);
        if (c)
            *c = '/';
        if (ex <= 0)
            return ex < 0 ? -1 : 0;
        if (!c)
            return 1;
    }
}

/* Creates the normalized group path level by level; existing groups are fine. */
static int ensure_group(qh_results *w, const char *norm)
{
    char buf[PATH_CAP];
    snprintf(buf, sizeof buf, "%s", norm);
    if (strcmp(buf, "/") == 0)
        return QH_OK;
    for (char *c = strchr(buf + 1, '/'); ; c = strchr(c + 1, '/')) {
        if (c)
            *c = '\0';
        htri_t ex = H5Lexists(w->file, buf, H5P_DEFAULT);
        if (ex < 0)
            return fail(w->final_path, QH_EIO, "cannot look up %s", buf);
        if (ex > 0) {
            hid_t o = H5Oopen(w->file, buf, H5P_DEFAULT);
            int is_group = o >= 0 && H5Iget_type(o) == H5I_GROUP;
            if (o >= 0)
                H5Oclose(o);
            if (!is_group)
                return fail(w->final_path, QH_EINVAL, "%s exists and is not a group", buf);
        } else {
            hid_t g = H5Gcreate2(w->file, buf, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
            if (g < 0)
                return fail(w->final_path, QH_EIO, "cannot create group %s", buf);
            H5Gclose(g);
        }
        if (!c)
            return QH_OK;
        *c = '/';
    }
}

/* Parent of a normalized path ("/a/b" -> "/a", "/a" -> "/"). */
static void parent_of(const char *norm, char *out)
{
    snprintf(out, PATH_CAP, "%s", norm);
    char *slash = strrchr(out, '/');
    if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

/* ---- writer lifetime ------------------------------------------------------ */

static void free_writer(qh_results *w)
{
    if (w->file >= 0)
        H5Fclose(w->file);
    if (w->gcpl >= 0)
        H5Pclose(w->gcpl);
    if (w->dcpl >= 0)
        H5Pclose(w->dcpl);
    free(w->final_path);
    free(w->tmp_path);
    free(w);
}

static char *dup_cat(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (s) {
        memcpy(s, a, na);
        memcpy(s + na, b, nb + 1);
    }
    return s;
}

/* 64 bits that differ between processes and between calls: the name of a
 * temporary must not collide with another writer's, on this host or another
 * one sharing the folder (where process ids repeat). */
static uint64_t tmp_nonce(void)
{
    static uint64_t counter;
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &r, sizeof r) != (ssize_t)sizeof r)
            r = 0;
        close(fd);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);     /* mixed in, for a host without /dev/urandom */
    return r ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (++counter * 0x9e3779b97f4a7c15u);
}

/* Sets w->tmp_path to "<final>.<pid>.<16 hex digits>.tmp". */
static int name_tmp_file(qh_results *w)
{
    size_t cap = strlen(w->final_path) + 48;
    free(w->tmp_path);
    if (!(w->tmp_path = malloc(cap)))
        QH_ERROR(QH_ENOMEM, "results file %s: out of memory", w->final_path);
    return qh_results_tmp_name(w->final_path, w->tmp_path, cap);
}

int qh_results_tmp_name(const char *final_path, char *buf, size_t cap)
{
    return qh_path_format(buf, cap, "temporary", "%s.%ld.%016llx.tmp", final_path, (long)getpid(),
                          (unsigned long long)tmp_nonce());
}

/* Creates the temporary file with times off and STRONG close (closing the
 * file closes every object, so the bytes are complete before fsync).  The
 * name is unique per writer and created exclusively, so two processes
 * writing the same cell never write into, rename or remove each other's
 * temporary; a name that exists already (practically never) gets another. */
static int create_tmp_file(qh_results *w)
{
    int st = QH_OK;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fcpl < 0 || fapl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0
        || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        st = fail(w->final_path, QH_EIO, "cannot set up file property lists");
        goto cleanup;
    }
    for (int attempt = 0; attempt < 4 && w->file < 0; attempt++) {
        if ((st = name_tmp_file(w)) != QH_OK)
            goto cleanup;
        if (access(w->tmp_path, F_OK) == 0)
            continue;
        w->file = H5Fcreate(w->tmp_path, H5F_ACC_EXCL, fcpl, fapl);
        if (w->file < 0 && access(w->tmp_path, F_OK) != 0)
            break;                   /* not a name clash: report it */
    }
    if (w->file < 0)
        st = fail(w->final_path, QH_EIO, "cannot create temporary file %s", w->tmp_path);
cleanup:
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (fapl >= 0)
        H5Pclose(fapl);
    return st;
}

int qh_results_open(const char *final_path, qh_results **out)
{
    int st;
    silence_hdf5();
    *out = NULL;
    if (!final_path || !*final_path || strlen(final_path) > 4000)
        QH_ERROR(QH_EINVAL, "results file path is empty or longer than 4000 bytes");
    qh_results *w = calloc(1, sizeof *w);
    if (!w)
        QH_ERROR(QH_ENOMEM, "results file %s: out of memory", final_path);
    w->file = w->gcpl = w->dcpl = -1;
    w->final_path = dup_cat(final_path, "");
    if (!w->final_path) {
        QH_SET_ERROR(st, QH_ENOMEM, "results file %s: out of memory", final_path);
        goto fail_free;
    }
    w->gcpl = H5Pcreate(H5P_GROUP_CREATE);
    w->dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (w->gcpl < 0 || w->dcpl < 0 || H5Pset_obj_track_times(w->gcpl, 0) < 0
        || H5Pset_obj_track_times(w->dcpl, 0) < 0) {
        st = fail(final_path, QH_EIO, "cannot set up creation property lists");
        goto fail_free;
    }
    if ((st = create_tmp_file(w)) != QH_OK)
        goto fail_free;
    if ((st = qh_results_attr_int(w, "/", "schema_version", QH_RESULTS_SCHEMA_VERSION)) != QH_OK)
        goto fail_remove;
    *out = w;
    return QH_OK;
fail_remove:
    H5Fclose(w->file);
    w->file = -1;
    remove(w->tmp_path);
fail_free:
    free_writer(w);
    return st;
}

const char *qh_results_final_path(const qh_results *w)
{
    return w->final_path;
}

void qh_results_abort(qh_results *w)
{
    if (!w)
        return;
    silence_hdf5();
    if (w->file >= 0) {
        H5Fclose(w->file);
        w->file = -1;
        H5Eclear2(H5E_DEFAULT);
    }
    remove(w->tmp_path);
    free_writer(w);
}

/* fsync of a file or directory; EINVAL (no fsync support) counts as success. */
static int sync_path(const char *path, int dir)
{
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    if (rc != 0 && errno == EINVAL)
        rc = 0;
    close(fd);
    return rc;
}

static int sync_parent_dir(const char *path)
{
    char dir[4096];
    if (qh_path_format(dir, sizeof dir, "results file", "%s", path) != QH_OK)
        return -1;
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    return sync_path(dir, 1);
}

int qh_results_commit(qh_results *w)
{
    int st = QH_OK;
    if (!w)
        QH_ERROR(QH_EINVAL, "qh_results_commit: no writer");
    silence_hdf5();
    if (w->status != QH_OK) {
        QH_SET_ERROR(st, w->status, "results file %s not written: an earlier write failed: %s",
                     w->final_path, w->first_error);
        goto discard;
    }
    herr_t rc = H5Fclose(w->file);
    w->file = -1;
    if (rc < 0) {
        st = fail(w->final_path, QH_EIO, "cannot close temporary file %s", w->tmp_path);
        goto discard;
    }
    if (sync_path(w->tmp_path, 0) != 0) {
        QH_SET_ERROR(st, QH_EIO, "results file %s: cannot fsync %s: %s", w->final_path,
                     w->tmp_path, strerror(errno));
        goto discard;
    }
    if (rename(w->tmp_path, w->final_path) != 0) {
        QH_SET_ERROR(st, QH_EIO, "results file %s: cannot rename %s into place: %s",
                     w->final_path, w->tmp_path, strerror(errno));
        goto discard;
    }
    if (sync_parent_dir(w->final_path) != 0)      /* the rename is done; report, keep file */
        QH_SET_ERROR(st, QH_EIO, "results file %s: written, but cannot fsync its directory: %s",
                     w->final_path, strerror(errno));
    free_writer(w);
    return st;
discard:
    qh_results_abort(w);                          /* close, remove the temporary file, free */
    return st;
}

/* Splits path into its folder ("." when none) and base name; 0 if too long. */
static int split_path(const char *path, char *dir, size_t cap, const char **base)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n + 2 > cap)
        return 0;
    if (!slash)
        snprintf(dir, cap, ".");
    else if (n == 0)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)n, path);
    return 1;
}

/* 1 when name is "<anything>.<pid>.<nonce>.tmp" (qh_results_tmp_name's form). */
static int is_tmp_of(const char *name, long pid)
{
    size_t len = strlen(name);
    if (len < 4 || strcmp(name + len - 4, ".tmp")) return 0;
    const char *nonce = NULL, *field = NULL;
    for (const char *p = name + len - 4; p-- > name;)
        if (*p == '.') {
            if (!nonce) nonce = p;
            else { field = p; break; }
        }
    char want[32];
    int n = snprintf(want, sizeof want, ".%ld.", pid);
    return field && nonce > field && (size_t)(nonce - field + 1) == (size_t)n &&
           !strncmp(field, want, (size_t)n);
}

/* Unlinks the temporaries of pid in dir: those of final file `base`
 * ("<base>.<pid>.*.tmp") or, with base NULL, every "*.<pid>.<nonce>.tmp".
 * `what` names the caller's file in messages. */
static int remove_tmp_in(const char *dir, const char *base, long pid, size_t *n_removed,
                         const char *what)
{
    char prefix[4200], victim[8400];
    int st = QH_OK;
    if (n_removed)
        *n_removed = 0;
    if (base && qh_path_format(prefix, sizeof prefix, "results file", "%s.%ld.", base, pid) != QH_OK)
        QH_ERROR(QH_EINVAL, "%s: path too long", what);
    DIR *d = opendir(dir);
    if (!d)
        QH_ERROR(QH_EIO, "%s: cannot read folder %s: %s", what, dir, strerror(errno));
    size_t np = base ? strlen(prefix) : 0;
    for (struct dirent *e; st == QH_OK && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (base ? len < np + 4 || strncmp(e->d_name, prefix, np) || strcmp(e->d_name + len - 4, ".tmp")
                 : !is_tmp_of(e->d_name, pid))
            continue;
        if (qh_path_format(victim, sizeof victim, "temporary", "%s/%s", dir, e->d_name) != QH_OK)
            st = QH_EINVAL;
        else if (unlink(victim) != 0 && errno != ENOENT)
            QH_SET_ERROR(st, QH_EIO, "%s: cannot remove temporary %s: %s", what, victim,
                         strerror(errno));
        else if (n_removed)
            ++*n_removed;
    }
    closedir(d);
    return st;
}

int qh_results_remove_temporaries(const char *final_path, long pid, size_t *n_removed)
{
    char dir[4096], what[4200];
    const char *base;
    if (n_removed)
        *n_removed = 0;
    if (!split_path(final_path, dir, sizeof dir, &base)
        || qh_path_format(what, sizeof what, "results file", "results file %s", final_path) != QH_OK)
        QH_ERROR(QH_EINVAL, "results file %s: path too long", final_path);
    return remove_tmp_in(dir, base, pid, n_removed, what);
}

int qh_results_remove_folder_temporaries(const char *dir, long pid, size_t *n_removed)
{
    char what[4200];
    QH_TRY(qh_path_format(what, sizeof what, "folder", "folder %s", dir));
    return remove_tmp_in(dir, NULL, pid, n_removed, what);
}

/* ---- groups and attributes ------------------------------------------------ */

int qh_results_group(qh_results *w, const char *path)
{
    char norm[PATH_CAP];
    silence_hdf5();
    int st = normalize_path(w, path, norm);
    if (st == QH_OK)
        st = ensure_group(w, norm);
    return track(w, st);
}

static hid_t new_string_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* Scalar attribute of file type ftype from memory type mtype at buf. */
static int write_attr(qh_results *w, const char *obj, const char *name, hid_t ftype,
                      hid_t mtype, const void *buf)
{
    char norm[PATH_CAP];
    int st;
    hid_t o = -1, space = -1, a = -1;
    silence_hdf5();
    if (!name || !*name)
        return fail(w->final_path, QH_EINVAL, "empty attribute name on %s", obj ? obj : "(null)");
    if ((st = normalize_path(w, obj, norm)) != QH_OK)
        return st;
    int ex = link_exists(w->file, norm);
    if (ex < 0)
        return fail(w->final_path, QH_EIO, "cannot look up %s", norm);
    if (ex == 0 && (st = ensure_group(w, norm)) != QH_OK)
        return st;
    o = H5Oopen(w->file, norm, H5P_DEFAULT);
    if (o < 0) {
        st = fail(w->final_path, QH_EIO, "cannot open %s for attribute %s", norm, name);
        goto cleanup;
    }
    htri_t has = H5Aexists(o, name);
    if (has < 0 || (has > 0 && H5Adelete(o, name) < 0)) {
        st = fail(w->final_path, QH_EIO, "cannot replace attribute %s of %s", name, norm);
        goto cleanup;
    }
    space = H5Screate(H5S_SCALAR);
    a = space < 0 ? -1 : H5Acreate2(o, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mtype, buf) < 0)
        st = fail(w->final_path, QH_EIO, "cannot write attribute %s of %s", name, norm);
cleanup:
    if (a >= 0)
        H5Aclose(a);
    if (space >= 0)
        H5Sclose(space);
    if (o >= 0)
        H5Oclose(o);
    return st;
}

int qh_results_attr_double(qh_results *w, const char *obj, const char *name, double v)
{
    return track(w, write_attr(w, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v));
}

int qh_results_attr_int(qh_results *w, const char *obj, const char *name, int64_t v)
{
    return track(w, write_attr(w, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v));
}

int qh_results_attr_string(qh_results *w, const char *obj, const char *name, const char *v)
{
    const char *s = v ? v : "";
    hid_t t = new_string_type();
    if (t < 0)
        return track(w, fail(w->final_path, QH_EIO, "cannot make string type for %s", name));
    int st = write_attr(w, obj, name, t, t, &s);
    H5Tclose(t);
    return track(w, st);
}

/* ---- datasets --------------------------------------------------------------- */

/* Creates dataset `path` (normalized into norm) with the writer's dcpl; the
 * parent groups are created, an existing link is an error. */
static int create_dataset(qh_results *w, const char *path, hid_t ftype, hid_t space,
                          char *norm, hid_t *out)
{
    char parent[PATH_CAP];
    int st;
    *out = -1;
    if ((st = normalize_path(w, path, norm)) != QH_OK)
        return st;
    if (strcmp(norm, "/") == 0)
        return fail(w->final_path, QH_EINVAL, "a dataset cannot be the root group");
    parent_of(norm, parent);
    if ((st = ensure_group(w, parent)) != QH_OK)
        return st;
    htri_t ex = H5Lexists(w->file, norm, H5P_DEFAULT);
    if (ex != 0)
        return fail(w->final_path, ex < 0 ? QH_EIO : QH_EINVAL, "%s %s", norm,
                    ex < 0 ? "cannot be looked up" : "exists already");
    *out = H5Dcreate2(w->file, norm, ftype, space, H5P_DEFAULT, w->dcpl, H5P_DEFAULT);
    if (*out < 0)
        return fail(w->final_path, QH_EIO, "cannot create dataset %s", norm);
    return QH_OK;
}

/* Dataset of rank 0 (dims NULL) or 1, written whole from buf. */
static int write_simple(qh_results *w, const char *path, hid_t ftype, hid_t mtype,
                        int rank, const hsize_t *dims, const void *buf)
{
    char norm[PATH_CAP];
    int st = QH_OK;
    hid_t d = -1;
    silence_hdf5();
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    if (space < 0) {
        st = fail(w->final_path, QH_EIO, "cannot make dataspace for %s", path);
        goto cleanup;
    }
    if ((st = create_dataset(w, path, ftype, space, norm, &d)) != QH_OK)
        goto cleanup;
    int empty = rank == 1 && dims[0] == 0;       /* nothing to write; HDF5 wants no buffer */
    if (!empty && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = fail(w->final_path, QH_EIO, "cannot write dataset %s", norm);
cleanup:
    if (d >= 0)
        H5Dclose(d);
    if (space >= 0)
        H5Sclose(space);
    return st;
}

int qh_results_write_double(qh_results *w, const char *path, double v)
{
    return track(w, write_simple(w, path, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, NULL, &v));
}

int qh_results_write_int(qh_results *w, const char *path, int64_t v)
{
    return track(w, write_simple(w, path, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &v));
}

int qh_results_write_string(qh_results *w, const char *path, const char *v)
{
    const char *s = v ? v : "";
    hid_t t = new_string_type();
    if (t < 0)
        return track(w, fail(w->final_path, QH_EIO, "cannot make string type for %s", path));
    int st = write_simple(w, path, t, t, 0, NULL, &s);
    H5Tclose(t);
    return track(w, st);
}

int qh_results_write_vec(qh_results *w, const char *path, const double *x, size_t n)
{
    hsize_t dims[1] = { n };
    return track(w, write_simple(w, path, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dims, x));
}

int qh_results_write_vec_int(qh_results *w, const char *path, const int64_t *x, size_t n)
{
    hsize_t dims[1] = { n };
    return track(w, write_simple(w, path, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dims, x));
}

/* Variable-length string vector; NULL entries become "". */
static int write_string_vec(qh_results *w, const char *path, const char *const *v, size_t n)
{
    hsize_t dims[1] = { n };
    const char **s = malloc((n ? n : 1) * sizeof *s);
    hid_t t = new_string_type();
    int st;
    if (!s || t < 0) {
        st = fail(w->final_path, s ? QH_EIO : QH_ENOMEM, "cannot prepare strings for %s", path);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        s[i] = v[i] ? v[i] : "";
    st = write_simple(w, path, t, t, 1, dims, s);
cleanup:
    if (t >= 0)
        H5Tclose(t);
    free(s);
    return st;
}

int qh_results_write_vec_string(qh_results *w, const char *path, const char *const *v, size_t n)
{
    return track(w, write_string_vec(w, path, v, n));
}

/* Writes rows [r0, r0+nb) of the column-major A as a row-major hyperslab. */
static int write_row_block(qh_results *w, hid_t d, hid_t fspace, const char *norm,
                           const double *A, size_t ld, size_t cols, size_t r0, size_t nb,
                           double *buf)
{
    for (size_t i = 0; i < nb; i++)
        for (size_t j = 0; j < cols; j++)
            buf[i * cols + j] = A[(r0 + i) + j * ld];
    hsize_t start[2] = { r0, 0 }, count[2] = { nb, cols }, mdims[1] = { nb * cols };
    hid_t mspace = H5Screate_simple(1, mdims, NULL);
    int ok = mspace >= 0
        && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0
        && H5Dwrite(d, H5T_NATIVE_DOUBLE, mspace, fspace, H5P_DEFAULT, buf) >= 0;
    if (mspace >= 0)
        H5Sclose(mspace);
    return ok ? QH_OK : fail(w->final_path, QH_EIO, "cannot write rows %zu..%zu of %s",
                             r0, r0 + nb - 1, norm);
}

static int write_mat(qh_results *w, const char *path, const double *A, size_t rows,
                     size_t cols, size_t ld)
{
    char norm[PATH_CAP];
    int st = QH_OK;
    hid_t d = -1, space = -1;
    double *buf = NULL;
    silence_hdf5();
    if (rows > 0 && ld < rows)
        return fail(w->final_path, QH_EBADLEN, "matrix %s: leading dimension %zu < rows %zu",
                    path, ld, rows);
    hsize_t dims[2] = { rows, cols };
    space = H5Screate_simple(2, dims, NULL);
    if (space < 0) {
        st = fail(w->final_path, QH_EIO, "cannot make dataspace for %s", path);
        goto cleanup;
    }
    if ((st = create_dataset(w, path, H5T_IEEE_F64LE, space, norm, &d)) != QH_OK)
        goto cleanup;
    if (rows == 0 || cols == 0)
        goto cleanup;
    size_t block = cols >= MAT_BLOCK_ELEMS ? 1 : MAT_BLOCK_ELEMS / cols;
    if (block > rows)
        block = rows;
    buf = malloc(block * cols * sizeof *buf);
    if (!buf) {
        QH_SET_ERROR(st, QH_ENOMEM, "results file %s: out of memory writing %s", w->final_path, norm);
        goto cleanup;
    }
    for (size_t r0 = 0; r0 < rows && st == QH_OK; r0 += block) {
        size_t nb = rows - r0 < block ? rows - r0 : block;
        st = write_row_block(w, d, space, norm, A, ld, cols, r0, nb, buf);
    }
cleanup:
    free(buf);
    if (d >= 0)
        H5Dclose(d);
    if (space >= 0)
        H5Sclose(space);
    return st;
}

int qh_results_write_mat(qh_results *w, const char *path, const double *A, size_t rows,
                         size_t cols, size_t ld)
{
    return track(w, write_mat(w, path, A, rows, cols, ld));
}

int qh_results_write_matd(qh_results *w, const char *path, const qh_matd *m)
{
    return track(w, write_mat(w, path, m->data, m->rows, m->cols, m->ld));
}

/* ---- tables ------------------------------------------------------------------ */

static int check_columns(qh_results *w, const char *path, const qh_results_column *cols,
                         size_t n_cols, size_t *names_len)
{
    *names_len = 0;
    if (n_cols == 0)
        return fail(w->final_path, QH_EINVAL, "table %s has no columns", path);
    for (size_t i = 0; i < n_cols; i++) {
        const char *name = cols[i].name;
        if (!name || !*name || strpbrk(name, ",/") || strcmp(name, ".") == 0
            || strcmp(name, "..") == 0)
            return fail(w->final_path, QH_EINVAL, "table %s: column %zu has a bad name \"%s\" "
                        "(non-empty, no ',' or '/')", path, i, name ? name : "(null)");
        if (cols[i].type < QH_RESULTS_DOUBLE || cols[i].type > QH_RESULTS_STRING)
            return fail(w->final_path, QH_EINVAL, "table %s: column %s has unknown type %d",
                        path, name, (int)cols[i].type);
        for (size_t j = 0; j < i; j++)
            if (strcmp(cols[j].name, name) == 0)
                return fail(w->final_path, QH_EINVAL, "table %s: duplicate column %s", path, name);
        *names_len += strlen(name) + 1;
    }
    return QH_OK;
}

static int write_column(qh_results *w, const char *dset, const qh_results_column *c, size_t n)
{
    hsize_t dims[1] = { n };
    switch (c->type) {
    case QH_RESULTS_DOUBLE:
        return write_simple(w, dset, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dims, c->data);
    case QH_RESULTS_INT64:
        return write_simple(w, dset, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dims, c->data);
    case QH_RESULTS_STRING:
        return write_string_vec(w, dset, (const char *const *)c->data, n);
    }
    return fail(w->final_path, QH_EINVAL, "column %s: unknown type", dset);
}

static int write_table(qh_results *w, const char *path, const qh_results_column *cols,
                       size_t n_cols, size_t n_rows)
{
    char norm[PATH_CAP], dset[PATH_CAP];
    size_t names_len;
    int st;
    silence_hdf5();
    if ((st = normalize_path(w, path, norm)) != QH_OK)
        return st;
    if ((st = check_columns(w, norm, cols, n_cols, &names_len)) != QH_OK)
        return st;
    int ex = link_exists(w->file, norm);
    if (ex != 0)
        return fail(w->final_path, ex < 0 ? QH_EIO : QH_EINVAL, "table %s %s", norm,
                    ex < 0 ? "cannot be looked up" : "exists already");
    if ((st = ensure_group(w, norm)) != QH_OK)
        return st;
    char *names = malloc(names_len);
    if (!names)
        return fail(w->final_path, QH_ENOMEM, "out of memory for table %s", norm);
    names[0] = '\0';
    for (size_t i = 0; i < n_cols && st == QH_OK; i++) {
        if (i)
            strcat(names, ",");
        strcat(names, cols[i].name);
        if (snprintf(dset, sizeof dset, "%s/%s", norm, cols[i].name) >= (int)sizeof dset)
            st = fail(w->final_path, QH_EINVAL, "table %s: column path too long", norm);
        else
            st = write_column(w, dset, &cols[i], n_rows);
    }
    if (st == QH_OK)
        st = qh_results_attr_string(w, norm, "columns", names);
    free(names);
    return st;
}

int qh_results_write_table(qh_results *w, const char *path, const qh_results_column *cols,
                           size_t n_cols, size_t n_rows)
{
    return track(w, write_table(w, path, cols, n_cols, n_rows));
}

/* ---- merge ----------------------------------------------------------------- */

static int check_run_names(const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !*names[i] || strchr(names[i], '/') || strcmp(names[i], ".") == 0
            || strcmp(names[i], "..") == 0)
            QH_ERROR(QH_EINVAL, "merge: run name %zu \"%s\" is empty or contains '/'", i,
                     names[i] ? names[i] : "(null)");
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0)
                QH_ERROR(QH_EINVAL, "merge: run name %s appears twice (inputs %zu and %zu)",
                         names[i], j, i);
    }
    return QH_OK;
}

/* Copies one input's root group to /runs/<name>; 0 on success.  A failed
 * copy leaves nothing behind under its name. */
static int copy_run(hid_t out, hid_t lcpl, const char *path, const char *name, char *why)
{
    char dst[PATH_CAP];
    why[0] = '\0';
    if (snprintf(dst, sizeof dst, "/runs/%s", name) >= (int)sizeof dst) {
        snprintf(why, 256, "run name too long");
        return -1;
    }
    hid_t in = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    herr_t rc = in < 0 ? -1 : H5Ocopy(in, "/", out, dst, H5P_DEFAULT, lcpl);
    if (rc < 0) {
        h5_reason(why);
        if (H5Lexists(out, dst, H5P_DEFAULT) > 0)
            H5Ldelete(out, dst, H5P_DEFAULT);
    }
    if (in >= 0)
        H5Fclose(in);
    H5Eclear2(H5E_DEFAULT);
    return rc < 0 ? -1 : 0;
}

/* Appends "name (path): why" to the missing list, truncating politely. */
static void note_missing(char *list, size_t cap, const char *name, const char *path,
                         const char *why)
{
    size_t len = strlen(list);
    if (len + 4 >= cap)
        return;
    int n = snprintf(list + len, cap - len, "%s%s (%s: %s)", len ? "; " : "", name, path,
                     why[0] ? why : "cannot open");
    if (n < 0 || (size_t)n >= cap - len)
        snprintf(list + cap - 5, 5, "...");
}

static void note_missing_name(char *names, size_t cap, const char *name)
{
    size_t len = strlen(names);
    if (len + strlen(name) + 2 < cap)
        snprintf(names + len, cap - len, "%s%s", len ? "," : "", name);
}

int qh_results_merge(const char *const *paths, size_t n, const char *const *names,
                     const char *out_path, size_t *n_missing)
{
    char missing[700] = "", missing_names[4096] = "", why[256];
    qh_results *w = NULL;
    hid_t lcpl = -1;
    int st;
    *n_missing = 0;
    silence_hdf5();
    QH_TRY(check_run_names(names, n));
    QH_TRY(qh_results_open(out_path, &w));
    if ((st = qh_results_group(w, "/runs")) != QH_OK)
        goto fail;
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        st = track(w, fail(out_path, QH_EIO, "cannot set up link creation property list"));
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (copy_run(w->file, lcpl, paths[i], names[i], why) == 0)
            continue;
        ++*n_missing;
        note_missing(missing, sizeof missing, names[i], paths[i], why);
        note_missing_name(missing_names, sizeof missing_names, names[i]);
    }
    H5Pclose(lcpl);
    lcpl = -1;
    if ((st = qh_results_attr_int(w, "/", "n_runs", (int64_t)(n - *n_missing))) != QH_OK
        || (st = qh_results_attr_int(w, "/", "n_missing", (int64_t)*n_missing)) != QH_OK
        || (st = qh_results_attr_string(w, "/", "missing", missing_names)) != QH_OK)
        goto fail;
    if ((st = qh_results_commit(w)) != QH_OK)
        return st;
    if (*n_missing)
        qh_error(QH_OK, __FILE__, __LINE__, __func__, "merge %s: %zu of %zu inputs missing or "
                 "unreadable: %s", out_path, *n_missing, n, missing);
    return QH_OK;
fail:
    if (lcpl >= 0)
        H5Pclose(lcpl);
    qh_results_abort(w);
    return st;
}

/* ---- status reader ------------------------------------------------------- */

int qh_results_read_status(const char *path, int *status)
{
    int st = QH_OK;
    hid_t f = -1, a = -1, type = -1, space = -1;
    int64_t v = 0;
    silence_hdf5();
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        st = fail(path, QH_EIO, "cannot open (missing or not HDF5)");
        goto cleanup;
    }
    htri_t has = H5Lexists(f, "/run", H5P_DEFAULT) > 0
        ? H5Aexists_by_name(f, "/run", "status", H5P_DEFAULT) : 0;
    if (has <= 0) {
        st = fail(path, QH_EIO, "no attribute status on /run");
        goto cleanup;
    }
    a = H5Aopen_by_name(f, "/run", "status", H5P_DEFAULT, H5P_DEFAULT);
    type = a < 0 ? -1 : H5Aget_type(a);
    space = a < 0 ? -1 : H5Aget_space(a);
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_INTEGER
        || H5Sget_simple_extent_npoints(space) != 1
        || H5Aread(a, H5T_NATIVE_INT64, &v) < 0) {
        st = fail(path, QH_EIO, "/run attribute status is not one integer");
        goto cleanup;
    }
    if (v < -2147483647 || v > 2147483647) {
        QH_SET_ERROR(st, QH_EIO, "results file %s: /run status %lld out of range", path,
                     (long long)v);
        goto cleanup;
    }
    *status = (int)v;
cleanup:
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    if (a >= 0)
        H5Aclose(a);
    if (f >= 0)
        H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return st;
}
