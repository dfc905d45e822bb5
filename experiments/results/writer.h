/* writer.h -- HDF5 results files: one file per run, written under a temporary
 * name and renamed into place, byte-identical for identical calls.
 *
 * A writer creates "<final_path>.<pid>.<16 hex digits>.tmp" in the same
 * directory (a name of its own, so concurrent writers of one final path never
 * share a temporary; the last rename wins) with object time tracking off, so
 * the same calls in the same order give the same bytes.
 * qh_results_commit() closes, fsyncs and renames it to final_path; until then
 * (and after any failure or qh_results_abort()) a file already under the final
 * name is untouched.  The layout of a run file is documented in
 * results/README.md; this layer is schema-agnostic apart from the root
 * attribute schema_version, which every file gets on open.
 *
 * Storage conventions (chosen so that h5py and pandas read files without
 * custom code):
 *   double  -> H5T_IEEE_F64LE      int64 -> H5T_STD_I64LE
 *   string  -> variable-length UTF-8 (h5py: attributes read as str, datasets
 *              as bytes, or str through Dataset.asstr())
 *   matrix  -> a column-major (rows x cols) matrix is stored with dims
 *              {rows, cols}: h5py reads it as shape (rows, cols) with
 *              m[i, j] equal to the caller's (i, j) entry.  HDF5 is row-major,
 *              so the writer transposes in blocks of rows.
 *   table   -> a group holding one 1-D dataset per column, all of one length,
 *              and a string attribute "columns" listing the column names in
 *              order, separated by commas.
 *
 * Object paths are absolute ("/run/layers/fc1") or taken from the root; the
 * writer creates missing intermediate groups.  Error messages name the final
 * file and the object path.  HDF5's own error printing is switched off
 * (process-wide) the first time any function here runs; its innermost reason
 * is appended to our message instead.
 *
 * Any failed write poisons the writer: qh_results_commit() then refuses,
 * removes the temporary file and returns the first error's status, so an
 * incomplete file never reaches its final name.
 */
#ifndef QH_RESULTS_H
#define QH_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"
#include "qh_mat.h"

#define QH_RESULTS_SCHEMA_VERSION 1  /* root attribute; bump on incompatible layout changes */

typedef struct qh_results qh_results; /* opaque writer; owns the open temporary file */

/* Opens a writer for final_path.
 * Inputs: final_path, a file path whose directory exists.
 * Outputs: *out, a new writer (NULL on failure).
 * Work: creates a new "<final_path>.<pid>.<random>.tmp" with time tracking
 *   off and writes the root attribute schema_version = QH_RESULTS_SCHEMA_VERSION.
 * Return: QH_OK; QH_EINVAL (empty or over-long path); QH_EIO (cannot create the
 *   temporary file: message names final_path); QH_ENOMEM. */
int qh_results_open(const char *final_path, qh_results **out) QH_MUST_CHECK;

/* Closes the file, fsyncs it, renames it to final_path and fsyncs the
 * directory.  Frees w in every case (NULL: QH_EINVAL).
 * Return: QH_OK; the first earlier write's status if any write failed (the
 *   temporary file is removed); QH_EIO (close, fsync or rename failed: the
 *   temporary file is removed, a previous final file is untouched). */
int qh_results_commit(qh_results *w) QH_MUST_CHECK;

/* Closes and removes the temporary file and frees w; a file already under the
 * final name is untouched.  NULL: no-op. */
void qh_results_abort(qh_results *w);

/* The final path given to qh_results_open (borrowed from w). */
const char *qh_results_final_path(const qh_results *w);

/* Creates group `path` and any missing intermediate groups; an existing group
 * is fine.  Return: QH_OK; QH_EINVAL (empty path or a non-group is in the
 * way); QH_EIO. */
int qh_results_group(qh_results *w, const char *path) QH_MUST_CHECK;

/* Scalar attribute `name` on the object at `obj` ("/" for the root).  A missing
 * object is created as a group (with intermediates); an existing attribute of
 * that name is replaced.  v == NULL writes "".
 * Return: QH_OK; QH_EINVAL (empty name); QH_EIO. */
int qh_results_attr_double(qh_results *w, const char *obj, const char *name, double v) QH_MUST_CHECK;
int qh_results_attr_int(qh_results *w, const char *obj, const char *name, int64_t v) QH_MUST_CHECK;
int qh_results_attr_string(qh_results *w, const char *obj, const char *name, const char *v) QH_MUST_CHECK;

/* Scalar (0-d) datasets; h5py: f[path][()].
 * Return: QH_OK; QH_EINVAL (path exists already or is empty); QH_EIO. */
int qh_results_write_double(qh_results *w, const char *path, double v) QH_MUST_CHECK;
int qh_results_write_int(qh_results *w, const char *path, int64_t v) QH_MUST_CHECK;
int qh_results_write_string(qh_results *w, const char *path, const char *v) QH_MUST_CHECK;

/* 1-D datasets of n elements (n may be 0; x may then be NULL).
 * Return: as the scalar writers. */
int qh_results_write_vec(qh_results *w, const char *path, const double *x, size_t n) QH_MUST_CHECK;
int qh_results_write_vec_int(qh_results *w, const char *path, const int64_t *x, size_t n) QH_MUST_CHECK;
/* v: n borrowed strings (NULL entries: ""). */
int qh_results_write_vec_string(qh_results *w, const char *path, const char *const *v,
                                size_t n) QH_MUST_CHECK;

/* 2-D dataset from a column-major matrix A (rows x cols, leading dimension
 * ld >= rows): stored with dims {rows, cols}, dataset[i][j] = A[i + j*ld].
 * Return: as the scalar writers; QH_EBADLEN (ld < rows); QH_ENOMEM. */
int qh_results_write_mat(qh_results *w, const char *path, const double *A,
                         size_t rows, size_t cols, size_t ld) QH_MUST_CHECK;
/* The same for a qh_matd (borrowed). */
int qh_results_write_matd(qh_results *w, const char *path, const qh_matd *m) QH_MUST_CHECK;

enum qh_results_type {               /* element type of a table column */
    QH_RESULTS_DOUBLE = 1,           /* data: const double[n_rows] */
    QH_RESULTS_INT64 = 2,            /* data: const int64_t[n_rows] */
    QH_RESULTS_STRING = 3,           /* data: const char *const[n_rows] (NULL entries: "") */
};

typedef struct {
    const char *name;                /* dataset name: non-empty, no ',' or '/' */
    enum qh_results_type type;
    const void *data;                /* borrowed; n_rows elements of `type` */
} qh_results_column;

/* Table at group `path`: one 1-D dataset of n_rows per column, written in the
 * order given, plus the group attribute "columns" = "name1,name2,...".
 * pandas: pd.DataFrame({c: g[c][()] for c in g.attrs["columns"].split(",")}).
 * Return: QH_OK; QH_EINVAL (no columns, bad or duplicate column name, unknown
 *   type, path exists); QH_EIO. */
int qh_results_write_table(qh_results *w, const char *path, const qh_results_column *cols,
                           size_t n_cols, size_t n_rows) QH_MUST_CHECK;

/* Merges finished run files into one file.
 * Inputs: paths[n] (run files), names[n] (run ids: non-empty, no '/', unique),
 *   out_path (written through a temporary, as qh_results_open, and rename).
 * Outputs: *n_missing, how many inputs were missing or unreadable.
 * Work: copies each input's root group whole (H5Ocopy: attributes, datasets,
 *   subgroups) to /runs/<name>; an input that cannot be opened or copied is
 *   skipped and counted.  The root gets schema_version, n_runs (copied) and
 *   n_missing attributes.  The output is written even if every input is missing.
 * Return: QH_OK (if *n_missing > 0, qh_last_error() lists the skipped inputs
 *   by name and path, for the caller to report); QH_EINVAL (bad names);
 *   QH_EIO (output cannot be written; out_path untouched). */
int qh_results_merge(const char *const *paths, size_t n, const char *const *names,
                     const char *out_path, size_t *n_missing) QH_MUST_CHECK;

/* Removes the temporaries that process pid left for final_path (a writer
 * killed before its commit or abort: "<final_path>.<pid>.*.tmp"); others'
 * temporaries are untouched.  *n_removed (if not NULL) counts them.
 * Return: QH_OK (also when there were none); QH_EIO (the folder cannot be
 *   read, or a temporary cannot be removed: message names it). */
int qh_results_remove_temporaries(const char *final_path, long pid, size_t *n_removed) QH_MUST_CHECK;

/* The same for every file of folder dir written through qh_results_tmp_name
 * by process pid ("*.<pid>.<nonce>.tmp": the float cache's), for a folder
 * whose final names the caller does not know. */
int qh_results_remove_folder_temporaries(const char *dir, long pid, size_t *n_removed) QH_MUST_CHECK;

/* "<final_path>.<pid>.<16 hex digits>.tmp" into buf (cap bytes): the name
 * results files are written under, unique to the process and the call (on
 * this host or another one sharing the folder), for any file written under a
 * temporary name and renamed into place.  QH_EINVAL when it does not fit. */
int qh_results_tmp_name(const char *final_path, char *buf, size_t cap) QH_MUST_CHECK;

/* Reads the integer attribute "status" of /run in a finished file (a resumed
 * sweep skips cells whose status is QH_OK).
 * Return: QH_OK; QH_EIO (file missing, not HDF5, or without /run status:
 *   message names the path). */
int qh_results_read_status(const char *path, int *status) QH_MUST_CHECK;

#endif
