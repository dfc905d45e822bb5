/* sha256.h -- SHA-256 (FIPS 180-4), used to fingerprint token-id streams and
 * files so that results can be compared with reference.json exactly. */
#ifndef QH_SHA256_H
#define QH_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t n_bytes;      /* total bytes absorbed */
    uint8_t block[64];     /* pending partial block */
    size_t n_block;        /* bytes in block */
} qh_sha256_ctx;

/* Incremental interface: init, update any number of times, final. */
void qh_sha256_init(qh_sha256_ctx *c);
void qh_sha256_update(qh_sha256_ctx *c, const void *data, size_t len);
void qh_sha256_final(qh_sha256_ctx *c, uint8_t out[32]);

/* One-shot digest of len bytes at data (data may be NULL when len is 0). */
void qh_sha256(const void *data, size_t len, uint8_t out[32]);
/* Writes the 32-byte digest as 64 lowercase hex characters plus NUL. */
void qh_sha256_to_hex(const uint8_t digest[32], char out[65]);

#endif
