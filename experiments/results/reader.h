/* reader.h -- small readers for the HDF5 results files of results/writer.h:
 * scalar attributes, 1-D datasets, group listings, the table format (a
 * group with one 1-D dataset per column and the attribute "columns") and the
 * listing of a folder of run files (for `qh merge`, `qh status` and the report).
 *
 * Every function works on a file opened read-only by qh_h5_open_read(); error
 * messages name the file, the object path and what was expected.  HDF5's own
 * error printing is switched off (process-wide) on open.
 *
 * Left out: writing (writer.h does it), matrices, chunked/partial reads,
 * attribute arrays.
 */
#ifndef QH_H5READ_H
#define QH_H5READ_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"
#include "results/writer.h"

/* Opens path read-only.  Output: *out (a file id, close with qh_h5_close).
 * Return: QH_OK; QH_EIO (missing, unreadable or not HDF5: message names path). */
int qh_h5_open_read(const char *path, hid_t *out) QH_MUST_CHECK;

/* Closes a file from qh_h5_open_read (negative id: no-op). */
void qh_h5_close(hid_t f);

/* 1 if the object at absolute path `obj` exists (every component is checked),
 * 0 if not (or on any lookup error). */
int qh_h5_exists(hid_t f, const char *obj);

/* 1 if object `obj` exists and carries attribute `name`, else 0. */
int qh_h5_attr_exists(hid_t f, const char *obj, const char *name);

/* Scalar attribute readers.  _double accepts integer or float attributes;
 * _int accepts integer attributes only; _string accepts variable-length or
 * fixed-length strings and returns a new NUL-terminated copy (free() it).
 * Return: QH_OK; QH_EIO (missing object or attribute, wrong class, not a
 *   scalar: message names file, object and attribute); QH_ENOMEM. */
int qh_h5_attr_double(hid_t f, const char *obj, const char *name, double *v) QH_MUST_CHECK;
int qh_h5_attr_int(hid_t f, const char *obj, const char *name, int64_t *v) QH_MUST_CHECK;
int qh_h5_attr_string(hid_t f, const char *obj, const char *name, char **v) QH_MUST_CHECK;

/* Reads the 1-D numeric dataset at `path` as doubles.
 * Outputs: *x (returns new, n doubles; NULL when n == 0), *n.
 * Return: QH_OK; QH_EIO (missing, not numeric or not 1-D); QH_ENOMEM. */
int qh_h5_read_vec(hid_t f, const char *path, double **x, size_t *n) QH_MUST_CHECK;

/* Names of the direct children of group `path`, sorted by name.
 * Outputs: *names (returns new: n strings and the array, free with
 *   qh_h5_free_names), *n.
 * Return: QH_OK; QH_EIO (missing or not a group); QH_ENOMEM. */
int qh_h5_list_group(hid_t f, const char *path, char ***names, size_t *n) QH_MUST_CHECK;
void qh_h5_free_names(char **names, size_t n);

typedef struct {
    char *name;
    enum qh_results_type type;       /* QH_RESULTS_DOUBLE, _INT64 or _STRING */
    double *d;                       /* n_rows values when type is DOUBLE */
    int64_t *i;                      /* n_rows values when type is INT64 */
    char **s;                        /* n_rows strings when type is STRING */
} qh_h5_column;

typedef struct {                     /* owns every array and string */
    size_t n_cols, n_rows;
    qh_h5_column *cols;
} qh_h5_table;

/* Reads the table at group `path` (columns in the order of its "columns"
 * attribute; float columns are read as double, integer as int64).
 * Output: *t (caller-provided, filled; free with qh_h5_table_free).
 * Return: QH_OK; QH_EIO (missing group or attribute, a missing or non-1-D
 *   column, columns of different lengths, an unsupported type); QH_ENOMEM. */
int qh_h5_read_table(hid_t f, const char *path, qh_h5_table *t) QH_MUST_CHECK;
void qh_h5_table_free(qh_h5_table *t);   /* NULL or zeroed: no-op; leaves t zeroed */

/* The column named `name`, or NULL. */
const qh_h5_column *qh_h5_table_find(const qh_h5_table *t, const char *name);

/* Numeric value of row `row` of column c (int64 converted); NaN for a NULL
 * column, a string column or a row out of range. */
double qh_h5_column_value(const qh_h5_column *c, size_t n_rows, size_t row);

/* The run files of folder DIR: every entry ending in ".h5", sorted by name,
 * as "DIR/NAME" paths; each entry ending in ".tmp" (an unfinished write)
 * gives one warning line naming it, sorted too.  Names are kept whole
 * (never truncated).
 * Outputs: *paths, *n_paths, *warnings, *n_warnings (return new; free each
 *   with qh_h5_free_names; NULL and 0 on error).
 * Return: QH_OK (possibly with no paths); QH_EIO (DIR cannot be read: message
 *   names it); QH_ENOMEM. */
int qh_results_scan_dir(const char *dir, char ***paths, size_t *n_paths, char ***warnings,
                        size_t *n_warnings) QH_MUST_CHECK;

/* The /run message of a results file (why a cell failed) into buf (cap
 * bytes, always terminated); "" when the file cannot be read or has none. */
void qh_results_read_message(const char *path, char *buf, size_t cap);

#endif
