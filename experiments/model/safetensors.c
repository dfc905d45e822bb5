/* safetensors.c -- validated, memory-mapped reader and a small writer for the
 * safetensors format (see safetensors.h).  Assumes a little-endian host, as
 * the format stores little-endian values and we copy them unchanged. */
#include "model/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qh_path.h"

static const struct { const char *name; size_t size; } dtype_table[QH_ST_N_DTYPES] = {
    [QH_ST_F32] = { "F32", 4 },   [QH_ST_F16] = { "F16", 2 },   [QH_ST_BF16] = { "BF16", 2 },
    [QH_ST_F64] = { "F64", 8 },   [QH_ST_I64] = { "I64", 8 },   [QH_ST_I32] = { "I32", 4 },
    [QH_ST_I16] = { "I16", 2 },   [QH_ST_I8] = { "I8", 1 },     [QH_ST_U8] = { "U8", 1 },
    [QH_ST_BOOL] = { "BOOL", 1 }, [QH_ST_F8_E4M3] = { "F8_E4M3", 1 },
    [QH_ST_F8_E5M2] = { "F8_E5M2", 1 }, [QH_ST_U16] = { "U16", 2 },
    [QH_ST_U32] = { "U32", 4 },   [QH_ST_U64] = { "U64", 8 },
};

const char *qh_st_dtype_name(qh_st_dtype dt)
{
    return (unsigned)dt < QH_ST_N_DTYPES ? dtype_table[dt].name : "?";
}

size_t qh_st_dtype_size(qh_st_dtype dt)
{
    return (unsigned)dt < QH_ST_N_DTYPES ? dtype_table[dt].size : 0;
}

static int dtype_from_name(const char *s, qh_st_dtype *dt)
{
    for (int i = 0; i < QH_ST_N_DTYPES; i++)
        if (!strcmp(s, dtype_table[i].name)) { *dt = (qh_st_dtype)i; return 1; }
    return 0;
}

/* ---- scalar conversions ---------------------------------------------------- */

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float f16_to_f32_inline(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f)                                     /* Inf, or NaN keeping its payload */
        return bits_to_f32(sign | 0x7f800000u | mant << 13);
    if (exp != 0)                                        /* normal: rebias 15 -> 127 */
        return bits_to_f32(sign | (exp + 112) << 23 | mant << 13);
    if (mant == 0) return bits_to_f32(sign);             /* signed zero */
    uint32_t e32 = 113;                                  /* subnormal m * 2^-24: normalise */
    while (!(mant & 0x400)) { mant <<= 1; e32--; }
    return bits_to_f32(sign | e32 << 23 | (mant & 0x3ff) << 13);
}

float qh_f16_to_f32(uint16_t h) { return f16_to_f32_inline(h); }
float qh_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* Rounds the integer m / 2^shift to nearest, ties to even. */
static uint32_t round_shift_rne(uint32_t m, int shift)
{
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t qh_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f), sign = (u >> 16) & 0x8000;
    int exp = (int)((u >> 23) & 0xff);
    uint32_t mant = u & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 | mant >> 13 : 0));
    int e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);       /* overflow to Inf */
    if (e <= 0) {                                        /* half subnormal or zero */
        if (e < -10) return (uint16_t)sign;              /* below half the smallest subnormal */
        return (uint16_t)(sign | round_shift_rne(mant | 0x800000, 14 - e));
    }
    /* a carry out of the mantissa correctly bumps the exponent (up to Inf) */
    return (uint16_t)(sign | round_shift_rne((uint32_t)e << 23 | mant, 13));
}

uint16_t qh_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)(u >> 16 | 0x40);   /* quiet NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* ---- opening model files ------------------------------------------------------- */

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* Opens path for reading and checks, on the descriptor, that it is a regular
 * file: O_NONBLOCK so that a FIFO cannot block the open, cleared afterwards.
 * A directory or device would otherwise give a hang or a bogus size. */
static int open_regular(const char *path, int *fd, size_t *size)
{
    *fd = -1;
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) QH_ERROR(QH_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        QH_ERROR(QH_EIO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        QH_ERROR(QH_EIO, "%s is %s, expected a regular file", path, file_kind(sb.st_mode));
    }
    int flags = fcntl(f, F_GETFL);
    if (flags < 0 || fcntl(f, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(f);
        QH_ERROR(QH_EIO, "cannot read %s: %s", path, strerror(e));
    }
    *fd = f;
    *size = (size_t)sb.st_size;
    return QH_OK;
}

/* ---- JSON helpers ------------------------------------------------------------ */

/* Reads all len bytes of fd into text. */
static int read_all(int fd, char *text, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, text + got, len - got);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) errno = 0;       /* the file shrank */
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

int qh_st_json_load(const char *path, cJSON **out)
{
    *out = NULL;
    int st = QH_OK, fd;
    size_t len;
    QH_TRY(open_regular(path, &fd, &len));
    char *text = malloc(len + 1);
    if (!text) { QH_SET_ERROR(st, QH_ENOMEM, "%s: %zu bytes", path, len); goto cleanup; }
    if (read_all(fd, text, len) != 0) {
        QH_SET_ERROR(st, QH_EIO, "cannot read %s: %s", path, errno ? strerror(errno) : "short read");
        goto cleanup;
    }
    text[len] = '\0';
    *out = cJSON_ParseWithLength(text, len);
    if (!*out) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        QH_SET_ERROR(st, QH_EINVAL, "%s is not valid JSON (error near byte %ld)", path, off);
    }
cleanup:
    free(text);
    close(fd);
    return st;
}

/* A JSON number that is a non-negative integer below 2^53, or -1. */
static int64_t json_count(const cJSON *v)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return -1;
    return (int64_t)d;
}

/* ---- reader ------------------------------------------------------------------- */

static int parse_shape(const qh_st_file *f, const char *name, const cJSON *shape, qh_st_tensor *t)
{
    if (!cJSON_IsArray(shape))
        QH_ERROR(QH_EINVAL, "%s: tensor %s: \"shape\" is not an array", f->path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > QH_ST_MAX_DIMS)
        QH_ERROR(QH_EINVAL, "%s: tensor %s: %d dimensions (at most %d supported)",
                 f->path, name, nd, QH_ST_MAX_DIMS);
    t->ndim = nd;
    t->numel = 1;
    const cJSON *d;
    int i = 0;
    cJSON_ArrayForEach(d, shape) {
        int64_t n = json_count(d);
        if (n < 0)
            QH_ERROR(QH_EINVAL, "%s: tensor %s: shape[%d] is not a non-negative integer",
                     f->path, name, i);
        if (n > 0 && t->numel > SIZE_MAX / 16 / (size_t)n)
            QH_ERROR(QH_EBADLEN, "%s: tensor %s: shape too large", f->path, name);
        t->shape[i++] = n;
        t->numel *= (size_t)n;
    }
    return QH_OK;
}

static int parse_offsets(const qh_st_file *f, const char *name, const cJSON *offs, qh_st_tensor *t)
{
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        QH_ERROR(QH_EINVAL, "%s: tensor %s: \"data_offsets\" is not a [begin, end] pair",
                 f->path, name);
    int64_t b = json_count(cJSON_GetArrayItem(offs, 0)), e = json_count(cJSON_GetArrayItem(offs, 1));
    if (b < 0 || e < 0)
        QH_ERROR(QH_EINVAL, "%s: tensor %s: data_offsets are not non-negative integers",
                 f->path, name);
    if (b > e || (uint64_t)e > f->data_size)
        QH_ERROR(QH_EBADLEN, "%s: tensor %s: data_offsets [%lld, %lld] out of range "
                 "(data section has %zu bytes)", f->path, name, (long long)b, (long long)e,
                 f->data_size);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    size_t want = t->numel * qh_st_dtype_size(t->dtype);
    if (t->end - t->begin != want)
        QH_ERROR(QH_EBADLEN, "%s: tensor %s: data_offsets span %zu bytes but shape x %s "
                 "needs %zu", f->path, name, t->end - t->begin, qh_st_dtype_name(t->dtype), want);
    return QH_OK;
}

static int parse_tensor(qh_st_file *f, const cJSON *entry, qh_st_tensor *t)
{
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        QH_ERROR(QH_EINVAL, "%s: tensor %s: header entry is not an object", f->path, name);
    t->name = strdup(name);
    if (!t->name) QH_ERROR(QH_ENOMEM, "%s: tensor %s", f->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dt))
        QH_ERROR(QH_EINVAL, "%s: tensor %s: missing \"dtype\" string", f->path, name);
    if (!dtype_from_name(dt->valuestring, &t->dtype))
        QH_ERROR(QH_EINVAL, "%s: tensor %s: unknown dtype \"%s\"", f->path, name, dt->valuestring);
    QH_TRY(parse_shape(f, name, cJSON_GetObjectItemCaseSensitive(entry, "shape"), t));
    return parse_offsets(f, name, cJSON_GetObjectItemCaseSensitive(entry, "data_offsets"), t);
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(((const qh_st_tensor *)a)->name, ((const qh_st_tensor *)b)->name);
}

static int cmp_by_begin(const void *a, const void *b)
{
    const qh_st_tensor *x = *(const qh_st_tensor *const *)a, *y = *(const qh_st_tensor *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Names must be unique and non-empty byte ranges must not share bytes. */
static int check_layout(const qh_st_file *f)
{
    int st = QH_OK;
    for (size_t i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name))
            QH_ERROR(QH_EINVAL, "%s: tensor %s appears twice in the header", f->path,
                     f->tensors[i].name);
    const qh_st_tensor **order = malloc((f->n_tensors + 1) * sizeof *order);
    if (!order) QH_ERROR(QH_ENOMEM, "%s: %zu tensors", f->path, f->n_tensors);
    size_t n = 0;
    for (size_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].end > f->tensors[i].begin) order[n++] = &f->tensors[i];
    qsort(order, n, sizeof *order, cmp_by_begin);
    for (size_t i = 1; i < n; i++)
        if (order[i]->begin < order[i - 1]->end) {
            QH_SET_ERROR(st, QH_EBADLEN, "%s: tensor %s: data_offsets [%zu, %zu] overlap those "
                         "of tensor %s [%zu, %zu]", f->path, order[i]->name, order[i]->begin,
                         order[i]->end, order[i - 1]->name, order[i - 1]->begin, order[i - 1]->end);
            break;
        }
    free(order);
    return st;
}

static int parse_header(qh_st_file *f, const char *text, size_t len)
{
    int st = QH_OK;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        QH_ERROR(QH_EINVAL, "%s: malformed JSON header (error near header byte %ld)", f->path, off);
    }
    if (!cJSON_IsObject(root)) {
        QH_SET_ERROR(st, QH_EINVAL, "%s: JSON header is not an object", f->path);
        goto cleanup;
    }
    const cJSON *e;
    size_t n = 0;
    cJSON_ArrayForEach(e, root) n += strcmp(e->string, "__metadata__") != 0;
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) { QH_SET_ERROR(st, QH_ENOMEM, "%s: %zu tensors", f->path, n); goto cleanup; }
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) continue;
        st = parse_tensor(f, e, &f->tensors[f->n_tensors++]);
        if (st != QH_OK) goto cleanup;
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_name);
    st = check_layout(f);
cleanup:
    cJSON_Delete(root);
    return st;
}

/* Private (copy-on-write) mapping of the whole file: writable, so that a
 * loaded model can point F32 weights into it and quantize them in place
 * without touching the file; MAP_NORESERVE so that the kernel does not charge
 * the whole file against the commit limit up front.  Where the system refuses
 * a writable mapping (strict overcommit accounting of a file larger than the
 * limit), read-only: readers copy then. */
static int map_file(qh_st_file *f)
{
    int fd, st = QH_OK;
    QH_TRY(open_regular(f->path, &fd, &f->map_size));
    if (f->map_size > 0) {
        void *p = mmap(NULL, f->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
                       fd, 0);
        f->writable = p != MAP_FAILED;
        if (p == MAP_FAILED) p = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            QH_SET_ERROR(st, QH_EIO, "cannot map %s: %s", f->path, strerror(errno));
            goto cleanup;
        }
        f->map = p;
    }
cleanup:
    close(fd);
    return st;
}

int qh_st_open(const char *path, qh_st_file **out)
{
    *out = NULL;
    qh_st_file *f = calloc(1, sizeof *f);
    if (!f) QH_ERROR(QH_ENOMEM, "%s", path);
    int st = QH_OK;
    if ((size_t)snprintf(f->path, sizeof f->path, "%s", path) >= sizeof f->path) {
        QH_SET_ERROR(st, QH_EINVAL, "path too long: %s", path);
        goto cleanup;
    }
    if ((st = map_file(f)) != QH_OK) goto cleanup;
    if (f->map_size < 8) {
        QH_SET_ERROR(st, QH_EBADLEN, "%s: %zu bytes, shorter than the 8-byte header length",
                     path, f->map_size);
        goto cleanup;
    }
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];   /* little-endian u64 */
    if (hlen > QH_ST_MAX_HEADER) {
        QH_SET_ERROR(st, QH_EBADLEN, "%s: header length %llu is absurd (limit %llu bytes)",
                     path, (unsigned long long)hlen, (unsigned long long)QH_ST_MAX_HEADER);
        goto cleanup;
    }
    if (hlen > f->map_size - 8) {
        QH_SET_ERROR(st, QH_EBADLEN, "%s: header length %llu runs past the end of the file "
                     "(%zu bytes)", path, (unsigned long long)hlen, f->map_size);
        goto cleanup;
    }
    f->data = p + 8 + hlen;
    f->data_size = f->map_size - 8 - (size_t)hlen;
    st = parse_header(f, (const char *)p + 8, (size_t)hlen);
cleanup:
    if (st != QH_OK) { qh_st_close(f); return st; }
    *out = f;
    return QH_OK;
}

void qh_st_close(qh_st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->map_size);
    free(f);
}

const qh_st_tensor *qh_st_find(const qh_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

int qh_st_read_f32(const qh_st_file *f, const qh_st_tensor *t, float *dst)
{
    const unsigned char *src = f->data + t->begin;
    switch (t->dtype) {
    case QH_ST_F32:
        if (t->numel) memcpy(dst, src, t->numel * 4);
        return QH_OK;
    case QH_ST_F16:                                   /* separate loops: the inline */
        for (size_t i = 0; i < t->numel; i++) {        /* conversion keeps this fast */
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);               /* data may be unaligned */
            dst[i] = f16_to_f32_inline(h);
        }
        return QH_OK;
    case QH_ST_BF16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = bits_to_f32((uint32_t)h << 16);
        }
        return QH_OK;
    default:
        QH_ERROR(QH_EINVAL, "%s: tensor %s: dtype %s cannot be converted to float32 "
                 "(F32, F16, BF16 supported)", f->path, t->name, qh_st_dtype_name(t->dtype));
    }
}

float *qh_st_f32_view(const qh_st_file *f, const qh_st_tensor *t)
{
    if (t->dtype != QH_ST_F32 || !f->writable || !f->data) return NULL;
    const unsigned char *p = f->data + t->begin;
    if ((uintptr_t)p % _Alignof(float) != 0) return NULL;
    return (float *)(uintptr_t)p;       /* the mapping is writable: the const was the reader's */
}

void qh_st_release(const qh_st_file *f, const qh_st_tensor *t)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (!f->map || !f->data || ps <= 0 || t->end <= t->begin) return;
    uintptr_t page = (uintptr_t)ps, lo = (uintptr_t)(f->data + t->begin),
              hi = (uintptr_t)(f->data + t->end);
    lo = (lo + page - 1) / page * page;  /* whole pages only: neighbours may be views */
    hi = hi / page * page;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ---- sets of files ------------------------------------------------------------- */

static int set_add(qh_st_set *s, const char *path)
{
    qh_st_file **grown = realloc(s->files, (s->n_files + 1) * sizeof *grown);
    if (!grown) QH_ERROR(QH_ENOMEM, "%s", path);
    s->files = grown;
    QH_TRY(qh_st_open(path, &s->files[s->n_files]));
    s->n_files++;
    return QH_OK;
}

static int set_has_file(const qh_st_set *s, const char *path)
{
    for (size_t i = 0; i < s->n_files; i++)
        if (!strcmp(s->files[i]->path, path)) return 1;
    return 0;
}

/* 1 if folder `real` (a realpath) is `top` (a realpath) or lies below it. */
static int path_within(const char *real, const char *top)
{
    size_t n = strlen(top);
    if (n == 1 && top[0] == '/') return 1;
    return !strncmp(real, top, n) && (real[n] == '\0' || real[n] == '/');
}

/* A weight_map entry must name a file inside the model folder: the folder
 * that holds the shard, with ".." and symbolic links resolved, must be the
 * model folder (top: its realpath) or below it, so that an index cannot read
 * weights from elsewhere.  The shard itself may be a symbolic link, as in a
 * download cache whose snapshot folders link every file into a blob store. */
static int check_shard_inside(const qh_st_set *s, const char *top, const cJSON *e, const char *path)
{
    char parent[1024], real[PATH_MAX];
    const char *entry = e->valuestring;
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    const char *base = slash ? slash + 1 : parent;
    if (!strcmp(base, "..") || !strcmp(base, ".") || entry[0] == '/')
        QH_ERROR(QH_EINVAL, "%s: weight_map entry for tensor %s names \"%s\", which is not a "
                 "file inside the model folder", s->index_path, e->string, entry);
    if (slash) *slash = '\0';
    else snprintf(parent, sizeof parent, ".");
    if (!realpath(parent, real))     /* a missing subfolder: the open names it */
        return QH_OK;
    if (!path_within(real, top))
        QH_ERROR(QH_EINVAL, "%s: weight_map entry for tensor %s names \"%s\", which lies "
                 "outside the model folder (in %s)", s->index_path, e->string, entry, real);
    return QH_OK;
}

/* Opens every shard the weight_map names and checks each mapped tensor is there. */
static int open_shards(qh_st_set *s, const char *dir, const cJSON *map)
{
    char path[1024], top[PATH_MAX];
    const cJSON *e;
    if (!realpath(dir, top))
        QH_ERROR(QH_EIO, "model folder %s: %s", dir, strerror(errno));
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || e->valuestring[0] == '/')
            QH_ERROR(QH_EINVAL, "%s: weight_map entry for tensor %s is not a relative file name",
                     s->index_path, e->string);
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->valuestring) >= sizeof path)
            QH_ERROR(QH_EINVAL, "%s: shard path too long: %s", s->index_path, e->valuestring);
        QH_TRY(check_shard_inside(s, top, e, path));
        if (!set_has_file(s, path)) {
            int st = set_add(s, path);
            if (st != QH_OK) {
                qh_error_prefix("%s names shard %s for tensor %s", s->index_path,
                                e->valuestring, e->string);
                return st;
            }
        }
        const qh_st_file *held = NULL;
        for (size_t i = 0; i < s->n_files; i++)
            if (!strcmp(s->files[i]->path, path)) held = s->files[i];
        if (!qh_st_find(held, e->string))
            QH_ERROR(QH_EINVAL, "%s: tensor %s is mapped to %s, which does not contain it",
                     s->index_path, e->string, path);
    }
    return QH_OK;
}

static int open_index(qh_st_set *s, const char *dir)
{
    cJSON *root = NULL;
    QH_TRY(qh_st_json_load(s->index_path, &root));
    int st = QH_OK;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        QH_SET_ERROR(st, QH_EINVAL, "%s: no \"weight_map\" object", s->index_path);
        goto cleanup;
    }
    st = open_shards(s, dir, map);
cleanup:
    cJSON_Delete(root);
    return st;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

int qh_st_set_open(const char *dir, qh_st_set **out)
{
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0) QH_ERROR(QH_EIO, "model folder %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) QH_ERROR(QH_EIO, "model folder %s is not a directory", dir);
    qh_st_set *s = calloc(1, sizeof *s);
    if (!s) QH_ERROR(QH_ENOMEM, "%s", dir);
    int st = QH_OK;
    char single[1024];
    if (qh_path_format(s->index_path, sizeof s->index_path, "model index", "%s/model.safetensors.index.json", dir) != QH_OK
        || qh_path_format(single, sizeof single, "model weights", "%s/model.safetensors", dir) != QH_OK) {
        free(s);
        return QH_EINVAL;
    }
    if (file_exists(s->index_path)) {
        st = open_index(s, dir);
    } else {
        s->index_path[0] = '\0';
        if (file_exists(single)) st = set_add(s, single);
        else QH_SET_ERROR(st, QH_EIO, "%s: neither model.safetensors nor "
                          "model.safetensors.index.json found", dir);
    }
    if (st != QH_OK) { qh_st_set_close(s); return st; }
    *out = s;
    return QH_OK;
}

void qh_st_set_close(qh_st_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) qh_st_close(s->files[i]);
    free(s->files);
    free(s);
}

const qh_st_tensor *qh_st_set_find(const qh_st_set *s, const char *name, const qh_st_file **file)
{
    for (size_t i = 0; i < s->n_files; i++) {
        const qh_st_tensor *t = qh_st_find(s->files[i], name);
        if (t) {
            if (file) *file = s->files[i];
            return t;
        }
    }
    return NULL;
}

/* ---- writer ------------------------------------------------------------------------ */

static int check_write_tensor(const char *path, const qh_st_write_tensor *t, int streamed,
                              size_t *numel)
{
    if (!t->name || !t->name[0] || !strcmp(t->name, "__metadata__"))
        QH_ERROR(QH_EINVAL, "%s: invalid tensor name", path);
    if (t->dtype != QH_ST_F32 && t->dtype != QH_ST_F16 && t->dtype != QH_ST_BF16)
        QH_ERROR(QH_EINVAL, "%s: tensor %s: can only write F32, F16, BF16", path, t->name);
    if (t->ndim < 0 || t->ndim > QH_ST_MAX_DIMS)
        QH_ERROR(QH_EINVAL, "%s: tensor %s: %d dimensions", path, t->name, t->ndim);
    *numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            QH_ERROR(QH_EINVAL, "%s: tensor %s: negative shape[%d]", path, t->name, d);
        *numel *= (size_t)t->shape[d];
    }
    if (*numel && !t->data && !streamed) QH_ERROR(QH_EINVAL, "%s: tensor %s: no data", path, t->name);
    return QH_OK;
}

/* Builds the padded JSON header; *text is new (free it). */
static int build_header(const char *path, const qh_st_write_tensor *t, size_t n, int streamed,
                        char **text, size_t *len)
{
    int st = QH_OK;
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!root || !meta || !cJSON_AddStringToObject(meta, "format", "pt")) goto nomem;
    size_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        size_t numel = 0;
        if ((st = check_write_tensor(path, &t[i], streamed, &numel)) != QH_OK) goto cleanup;
        if (cJSON_GetObjectItemCaseSensitive(root, t[i].name)) {
            QH_SET_ERROR(st, QH_EINVAL, "%s: tensor %s given twice", path, t[i].name);
            goto cleanup;
        }
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name), *shape = cJSON_CreateArray();
        cJSON *offs = cJSON_CreateArray();
        if (!e || !shape || !offs) { cJSON_Delete(shape); cJSON_Delete(offs); goto nomem; }
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddStringToObject(e, "dtype", qh_st_dtype_name(t[i].dtype));
        for (int d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        size_t bytes = numel * qh_st_dtype_size(t[i].dtype);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes)));
        offset += bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    if (!json) goto nomem;
    size_t jlen = strlen(json), padded = (jlen + 7) / 8 * 8;
    *text = malloc(padded);
    if (!*text) { free(json); goto nomem; }
    memcpy(*text, json, jlen);
    memset(*text + jlen, ' ', padded - jlen);   /* the format allows trailing spaces */
    *len = padded;
    free(json);
    goto cleanup;
nomem:
    QH_SET_ERROR(st, QH_ENOMEM, "%s: building the header", path);
cleanup:
    cJSON_Delete(root);
    return st;
}

static int write_data(FILE *fp, const qh_st_write_tensor *t, const float *data)
{
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
    if (numel == 0) return QH_OK;                    /* data may be NULL */
    if (t->dtype == QH_ST_F32)
        return fwrite(data, 4, numel, fp) == numel ? QH_OK : QH_EIO;
    uint16_t buf[4096];
    for (size_t i = 0; i < numel; i += 4096) {
        size_t m = numel - i < 4096 ? numel - i : 4096;
        for (size_t j = 0; j < m; j++)
            buf[j] = t->dtype == QH_ST_F16 ? qh_f32_to_f16(data[i + j])
                                           : qh_f32_to_bf16(data[i + j]);
        if (fwrite(buf, 2, m, fp) != m) return QH_EIO;
    }
    return QH_OK;
}

/* Tensor i's data, from t or the source, written; then the source is told.
 * *load_failed: the status is the source's, with its own message. */
static int write_one(FILE *fp, const qh_st_write_tensor *t, size_t i, const qh_st_write_source *src,
                     int *load_failed)
{
    const float *data = t[i].data;
    int st = QH_OK;
    if (!data && src && src->load && (st = src->load(src->user, i, &data)) != QH_OK) {
        *load_failed = 1;
        return st;
    }
    st = write_data(fp, &t[i], data);
    if (src && src->done) src->done(src->user, i);
    return st;
}

int qh_st_write(const char *path, const qh_st_write_tensor *t, size_t n)
{
    return qh_st_write_stream(path, t, n, NULL);
}

int qh_st_write_stream(const char *path, const qh_st_write_tensor *t, size_t n,
                       const qh_st_write_source *src)
{
    char tmp[1100], *header = NULL;
    size_t hlen = 0;
    FILE *fp = NULL;
    /* a name of this process's own: two writers of one path never share it */
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= sizeof tmp)
        QH_ERROR(QH_EINVAL, "path too long: %s", path);
    int st = build_header(path, t, n, src && src->load, &header, &hlen);
    if (st != QH_OK) goto cleanup;
    fp = fopen(tmp, "wb");
    if (!fp) { QH_SET_ERROR(st, QH_EIO, "cannot create %s: %s", tmp, strerror(errno)); goto cleanup; }
    unsigned char lenbytes[8];
    for (int i = 0; i < 8; i++) lenbytes[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (fwrite(lenbytes, 1, 8, fp) != 8 || fwrite(header, 1, hlen, fp) != hlen) st = QH_EIO;
    int load_failed = 0;
    for (size_t i = 0; i < n && st == QH_OK; i++) st = write_one(fp, t, i, src, &load_failed);
    if (fclose(fp) != 0 && st == QH_OK) st = QH_EIO;
    fp = NULL;
    if (st == QH_OK && rename(tmp, path) != 0) st = QH_EIO;
    if (st != QH_OK) {
        remove(tmp);
        if (!load_failed) QH_SET_ERROR(st, QH_EIO, "cannot write %s: %s", path, strerror(errno));
    }
cleanup:
    if (fp) fclose(fp);
    free(header);
    return st;
}
