/* safetensors.h -- reading and writing the safetensors tensor format.
 *
 * Format (Hugging Face safetensors): an 8-byte little-endian header length N,
 * N bytes of JSON mapping each tensor name to {dtype, shape, data_offsets
 * [begin, end)} relative to the data section that follows the header, and an
 * optional "__metadata__" object of strings.  Files are memory-mapped
 * private (copy-on-write: writes through the mapping stay in this process and
 * never reach the file) and writable where the system allows it, read-only
 * otherwise; every offset, size and dtype is validated on open so that later
 * reads cannot leave the mapping.  A mapped file must not be truncated or
 * rewritten in place while it is open (a rename over it, as qh_st_write does,
 * is safe: the mapping keeps the old file).
 *
 * Conversion to float32 supports F32, F16 and BF16.  Other dtypes of the
 * format (F64, integers, FP8, BOOL) are recognised for validation but not
 * converted.  Left out: big-endian hosts, tensors of more than 8 dimensions.
 */
#ifndef QH_SAFETENSORS_H
#define QH_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "qh_error.h"

#define QH_ST_MAX_DIMS 8
#define QH_ST_MAX_HEADER ((uint64_t)100 << 20)   /* the format's own limit: 100 MB */

typedef enum {
    QH_ST_F32 = 0, QH_ST_F16, QH_ST_BF16,        /* convertible to float32 */
    QH_ST_F64, QH_ST_I64, QH_ST_I32, QH_ST_I16, QH_ST_I8, QH_ST_U8, QH_ST_BOOL,
    QH_ST_F8_E4M3, QH_ST_F8_E5M2, QH_ST_U16, QH_ST_U32, QH_ST_U64,
    QH_ST_N_DTYPES
} qh_st_dtype;

typedef struct {
    char *name;                       /* owned by the file */
    qh_st_dtype dtype;
    int ndim;
    int64_t shape[QH_ST_MAX_DIMS];
    size_t numel;                     /* product of shape (1 for a scalar) */
    size_t begin, end;                /* byte range inside the data section */
} qh_st_tensor;

typedef struct {
    char path[1024];
    void *map;                        /* whole file, private mapping (NULL if empty) */
    size_t map_size;
    int writable;                     /* 1: the mapping is PROT_WRITE (copy-on-write, MAP_PRIVATE
                                         | MAP_NORESERVE); 0: read-only (the system refused) */
    const unsigned char *data;        /* data section: map + 8 + header length */
    size_t data_size;
    size_t n_tensors;
    qh_st_tensor *tensors;            /* (n_tensors), sorted by name */
} qh_st_file;

/* A set of files holding one model's tensors: model.safetensors, or the
 * shards named by model.safetensors.index.json. */
typedef struct {
    size_t n_files;
    qh_st_file **files;               /* (n_files), owned */
    char index_path[1024];            /* "" when there is no index */
} qh_st_set;

/* Dtype names as in the format ("F32", "BF16", ...) and element sizes. */
const char *qh_st_dtype_name(qh_st_dtype dt);
size_t qh_st_dtype_size(qh_st_dtype dt);

/* Opens and validates path.  Returns QH_OK and a new file in *out; QH_EIO
 * (cannot open or map, or not a regular file: a FIFO, a directory or a
 * device is refused without blocking), QH_EBADLEN (header length past end of file or above
 * 100 MB, data offsets out of range, overlapping, or not matching
 * shape x dtype size), QH_EINVAL (malformed JSON header, unknown dtype, bad
 * shape).  Messages name the file and, where one is at fault, the tensor. */
int qh_st_open(const char *path, qh_st_file **out) QH_MUST_CHECK;
void qh_st_close(qh_st_file *f);                         /* NULL: no-op */

/* The tensor called name, or NULL (binary search; borrows). */
const qh_st_tensor *qh_st_find(const qh_st_file *f, const char *name);

/* Converts tensor t of f to float32 into dst (t->numel floats, caller
 * allocated).  QH_EINVAL when t's dtype is not F32/F16/BF16. */
int qh_st_read_f32(const qh_st_file *f, const qh_st_tensor *t, float *dst) QH_MUST_CHECK;

/* F32 tensor t of f in place: a pointer into f's writable private mapping
 * (writes are the process's own copy of the page, never the file's), valid
 * until f is closed.  NULL when t is not F32, the mapping is read-only, or
 * its data are not 4-byte aligned in memory (a header length that is not a
 * multiple of 4): then copy with qh_st_read_f32. */
float *qh_st_f32_view(const qh_st_file *f, const qh_st_tensor *t);

/* Gives back the resident pages lying wholly inside t's bytes (madvise
 * DONTNEED: a later read faults them in again from the file), for a tensor
 * that was converted and will not be read through the mapping again.  Never
 * for a tensor whose view was written: its private copy would be dropped. */
void qh_st_release(const qh_st_file *f, const qh_st_tensor *t);

/* Scalar conversions (IEEE 754 binary16 incl. subnormals, Inf, NaN; bfloat16
 * = the top 16 bits of a float32).  The float-to-half direction rounds to
 * nearest even and overflows to Inf. */
float qh_f16_to_f32(uint16_t h);
float qh_bf16_to_f32(uint16_t h);
uint16_t qh_f32_to_f16(float f);
uint16_t qh_f32_to_bf16(float f);

/* Opens the weights of a Hugging Face folder: dir/model.safetensors.index.json
 * (weight_map, every shard it names) when present, else dir/model.safetensors.
 * Returns QH_OK and a new set in *out; statuses of qh_st_open, QH_EIO when
 * neither file exists or a shard is missing, QH_EINVAL for a bad index or an
 * entry that leaves the folder (absolute, "../", or through a symbolically
 * linked subfolder; a shard file that is itself a link is accepted). */
int qh_st_set_open(const char *dir, qh_st_set **out) QH_MUST_CHECK;
void qh_st_set_close(qh_st_set *s);                      /* NULL: no-op */

/* Looks name up in every file of the set; NULL when absent.  *file (if not
 * NULL) receives the file holding it. */
const qh_st_tensor *qh_st_set_find(const qh_st_set *s, const char *name,
                                   const qh_st_file **file);

/* Reads and parses the JSON file at path (config.json, an index).  Returns
 * QH_OK and a new tree in *out (free with cJSON_Delete); QH_EIO cannot read,
 * or not a regular file (a FIFO or a directory is refused at once, never
 * waited on); QH_EINVAL not valid JSON (the message names the file and byte
 * offset). */
struct cJSON;
int qh_st_json_load(const char *path, struct cJSON **out) QH_MUST_CHECK;

/* One tensor to write: float32 data converted to dtype (F32, F16 or BF16). */
typedef struct {
    const char *name;
    qh_st_dtype dtype;
    int ndim;
    int64_t shape[QH_ST_MAX_DIMS];
    const float *data;                /* (product of shape) values; borrows */
} qh_st_write_tensor;

/* Writes n tensors to path (via path.<pid>.tmp and rename, so a failure never
 * leaves a partial file under the final name).  Data are laid out in the
 * given order; the header is padded with spaces to a multiple of 8 bytes.
 * QH_EINVAL bad dtype, shape or duplicate name; QH_EIO write failure. */
int qh_st_write(const char *path, const qh_st_write_tensor *t, size_t n) QH_MUST_CHECK;

/* Where the data of a streamed write come from: for each tensor i in order,
 * load (when t[i].data is NULL) gives its values, and done (may be NULL) is
 * told once they are written, so that a caller holds one tensor's copy at a
 * time.  load returns QH_OK or a status whose message it has set. */
typedef struct {
    int (*load)(void *user, size_t i, const float **data);
    void (*done)(void *user, size_t i);
    void *user;
} qh_st_write_source;

/* qh_st_write with the data drawn from src tensor by tensor; t[i].data may be
 * NULL for any tensor that src->load provides. */
int qh_st_write_stream(const char *path, const qh_st_write_tensor *t, size_t n,
                       const qh_st_write_source *src) QH_MUST_CHECK;

#endif
