/* BLAKE3 (hash mode, 32-byte output) in portable C, for the commit loops.
 *
 * Written from the BLAKE3 specification (O'Connor, Aumasson, Neves,
 * Wilcox-O'Hearn, 2020). aos hashes every committed state and chains every
 * journal frame with BLAKE3; the `blake3` Python package has no C API, and a
 * call into it from C costs more than hashing a small record. The digests are
 * checked against the package's on random inputs by tests/test_hashing.py.
 *
 * Only what aos needs: the unkeyed hash of a byte string fed in pieces, and
 * the 32-byte digest. No SIMD: aos's inputs are records and states, mostly
 * a few hundred bytes.
 */
#ifndef AOS_BLAKE3_H
#define AOS_BLAKE3_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AOS_B3_BLOCK 64
#define AOS_B3_CHUNK 1024
#define AOS_B3_MAX_DEPTH 54 /* enough for 2^64 bytes */

enum {
    AOS_B3_CHUNK_START = 1,
    AOS_B3_CHUNK_END = 2,
    AOS_B3_PARENT = 4,
    AOS_B3_ROOT = 8
};

static const uint32_t AOS_B3_IV[8] = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u
};

static const uint8_t AOS_B3_SCHEDULE[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static inline uint32_t aos_b3_rotr(uint32_t w, int c) { return (w >> c) | (w << (32 - c)); }

static inline uint32_t aos_b3_load32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void aos_b3_store32(uint8_t *p, uint32_t w) {
    p[0] = (uint8_t)w; p[1] = (uint8_t)(w >> 8); p[2] = (uint8_t)(w >> 16); p[3] = (uint8_t)(w >> 24);
}

#define AOS_B3_G(a, b, c, d, x, y)                    \
    do {                                              \
        v[a] = v[a] + v[b] + (x);                     \
        v[d] = aos_b3_rotr(v[d] ^ v[a], 16);          \
        v[c] = v[c] + v[d];                           \
        v[b] = aos_b3_rotr(v[b] ^ v[c], 12);          \
        v[a] = v[a] + v[b] + (y);                     \
        v[d] = aos_b3_rotr(v[d] ^ v[a], 8);           \
        v[c] = v[c] + v[d];                           \
        v[b] = aos_b3_rotr(v[b] ^ v[c], 7);           \
    } while (0)

/* The compression function; the first 8 words of its output go to `out`. */
static void aos_b3_compress(const uint32_t cv[8], const uint8_t block[AOS_B3_BLOCK], uint8_t block_len,
                            uint64_t counter, uint8_t flags, uint32_t out[8]) {
    uint32_t m[16], v[16];
    int i, r;
    for (i = 0; i < 16; i++) m[i] = aos_b3_load32(block + 4 * i);
    for (i = 0; i < 8; i++) v[i] = cv[i];
    v[8] = AOS_B3_IV[0]; v[9] = AOS_B3_IV[1]; v[10] = AOS_B3_IV[2]; v[11] = AOS_B3_IV[3];
    v[12] = (uint32_t)counter; v[13] = (uint32_t)(counter >> 32);
    v[14] = (uint32_t)block_len; v[15] = (uint32_t)flags;
    for (r = 0; r < 7; r++) {
        const uint8_t *s = AOS_B3_SCHEDULE[r];
        AOS_B3_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        AOS_B3_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        AOS_B3_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        AOS_B3_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        AOS_B3_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        AOS_B3_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        AOS_B3_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        AOS_B3_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (i = 0; i < 8; i++) out[i] = v[i] ^ v[i + 8];
}

typedef struct {
    uint32_t cv[8];              /* the current chunk's chaining value */
    uint64_t chunk;              /* the current chunk's index */
    uint8_t block[AOS_B3_BLOCK]; /* bytes of the current block not yet compressed */
    uint8_t block_len;
    uint8_t blocks;              /* blocks of the current chunk compressed */
    uint8_t depth;               /* chaining values on the stack */
    uint32_t stack[AOS_B3_MAX_DEPTH][8]; /* completed subtrees, left to right */
} aos_b3;

static inline void aos_b3_init(aos_b3 *h) {
    memcpy(h->cv, AOS_B3_IV, sizeof h->cv);
    h->chunk = 0;
    h->block_len = 0;
    h->blocks = 0;
    h->depth = 0;
}

static inline uint8_t aos_b3_start_flag(const aos_b3 *h) { return h->blocks == 0 ? AOS_B3_CHUNK_START : 0; }

static void aos_b3_parent(const uint32_t left[8], const uint32_t right[8], uint8_t flags, uint32_t out[8]) {
    uint8_t block[AOS_B3_BLOCK];
    int i;
    for (i = 0; i < 8; i++) {
        aos_b3_store32(block + 4 * i, left[i]);
        aos_b3_store32(block + 32 + 4 * i, right[i]);
    }
    aos_b3_compress(AOS_B3_IV, block, AOS_B3_BLOCK, 0, AOS_B3_PARENT | flags, out);
}

/* A chunk is complete and more input follows: push its chaining value, merging complete subtrees. */
static void aos_b3_push_chunk(aos_b3 *h, const uint32_t cv[8]) {
    uint32_t merged[8];
    uint64_t total = h->chunk + 1;
    memcpy(merged, cv, sizeof merged);
    while ((total & 1) == 0) {
        h->depth--;
        aos_b3_parent(h->stack[h->depth], merged, 0, merged);
        total >>= 1;
    }
    memcpy(h->stack[h->depth], merged, sizeof merged);
    h->depth++;
    memcpy(h->cv, AOS_B3_IV, sizeof h->cv);
    h->chunk++;
    h->blocks = 0;
}

static void aos_b3_update(aos_b3 *h, const uint8_t *data, size_t n) {
    while (n > 0) {
        size_t take;
        if (h->block_len == AOS_B3_BLOCK) {
            /* The buffered block is full and more input follows: it is not the chunk's last... */
            if (h->blocks == AOS_B3_CHUNK / AOS_B3_BLOCK - 1) {
                /* ...unless it ends the chunk: then the chunk is done and the input goes on */
                uint32_t out[8];
                aos_b3_compress(h->cv, h->block, AOS_B3_BLOCK, h->chunk,
                                aos_b3_start_flag(h) | AOS_B3_CHUNK_END, out);
                h->block_len = 0;
                aos_b3_push_chunk(h, out);
            } else {
                aos_b3_compress(h->cv, h->block, AOS_B3_BLOCK, h->chunk, aos_b3_start_flag(h), h->cv);
                h->blocks++;
                h->block_len = 0;
            }
        }
        take = AOS_B3_BLOCK - h->block_len;
        if (take > n) take = n;
        memcpy(h->block + h->block_len, data, take);
        h->block_len += (uint8_t)take;
        data += take;
        n -= take;
    }
}

static void aos_b3_final(const aos_b3 *h, uint8_t digest[32]) {
    uint8_t block[AOS_B3_BLOCK];
    uint32_t out[8];
    int i, d = h->depth;
    memset(block, 0, sizeof block);
    memcpy(block, h->block, h->block_len);
    if (d == 0) {
        aos_b3_compress(h->cv, block, h->block_len, h->chunk,
                        aos_b3_start_flag(h) | AOS_B3_CHUNK_END | AOS_B3_ROOT, out);
    } else {
        aos_b3_compress(h->cv, block, h->block_len, h->chunk, aos_b3_start_flag(h) | AOS_B3_CHUNK_END, out);
        while (d > 1) {
            d--;
            aos_b3_parent(h->stack[d], out, 0, out);
        }
        aos_b3_parent(h->stack[0], out, AOS_B3_ROOT, out);
    }
    for (i = 0; i < 8; i++) aos_b3_store32(digest + 4 * i, out[i]);
}

/* BLAKE3 of a || b (either may be empty). */
static inline void aos_b3_hash2(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, uint8_t digest[32]) {
    aos_b3 h;
    aos_b3_init(&h);
    aos_b3_update(&h, a, na);
    aos_b3_update(&h, b, nb);
    aos_b3_final(&h, digest);
}

#endif
