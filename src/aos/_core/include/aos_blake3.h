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

static inline uint32_t aos_b3_rotr(uint32_t w, int c) { return (w >> c) | (w << (32 - c)); }

static inline uint32_t aos_b3_load32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void aos_b3_store32(uint8_t *p, uint32_t w) {
    p[0] = (uint8_t)w; p[1] = (uint8_t)(w >> 8); p[2] = (uint8_t)(w >> 16); p[3] = (uint8_t)(w >> 24);
}

/* The quarter-round G on four state words (locals, so they stay in registers). */
#define AOS_B3_G(a, b, c, d, x, y)                    \
    do {                                              \
        a = a + b + (x);                              \
        d = aos_b3_rotr(d ^ a, 16);                   \
        c = c + d;                                    \
        b = aos_b3_rotr(b ^ c, 12);                   \
        a = a + b + (y);                              \
        d = aos_b3_rotr(d ^ a, 8);                    \
        c = c + d;                                    \
        b = aos_b3_rotr(b ^ c, 7);                    \
    } while (0)

/* One round: the columns, then the diagonals, with message words m[s0..s15]. */
#define AOS_B3_ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    do {                                                                                     \
        AOS_B3_G(v0, v4, v8, v12, m[s0], m[s1]);                                             \
        AOS_B3_G(v1, v5, v9, v13, m[s2], m[s3]);                                             \
        AOS_B3_G(v2, v6, v10, v14, m[s4], m[s5]);                                            \
        AOS_B3_G(v3, v7, v11, v15, m[s6], m[s7]);                                            \
        AOS_B3_G(v0, v5, v10, v15, m[s8], m[s9]);                                            \
        AOS_B3_G(v1, v6, v11, v12, m[s10], m[s11]);                                          \
        AOS_B3_G(v2, v7, v8, v13, m[s12], m[s13]);                                           \
        AOS_B3_G(v3, v4, v9, v14, m[s14], m[s15]);                                           \
    } while (0)

/* The compression function; the first 8 words of its output go to `out`.
 *
 * The seven rounds are written out, each with its message schedule (the
 * message permutation applied r times) as constants: a loop over a schedule
 * table indexes the message through memory and keeps the state out of
 * registers, and was 1.6 times slower here. */
static void aos_b3_compress(const uint32_t cv[8], const uint8_t block[AOS_B3_BLOCK], uint8_t block_len,
                            uint64_t counter, uint8_t flags, uint32_t out[8]) {
    uint32_t m[16];
    int i;
    for (i = 0; i < 16; i++) m[i] = aos_b3_load32(block + 4 * i);
    uint32_t v0 = cv[0], v1 = cv[1], v2 = cv[2], v3 = cv[3], v4 = cv[4], v5 = cv[5], v6 = cv[6], v7 = cv[7];
    uint32_t v8 = AOS_B3_IV[0], v9 = AOS_B3_IV[1], v10 = AOS_B3_IV[2], v11 = AOS_B3_IV[3];
    uint32_t v12 = (uint32_t)counter, v13 = (uint32_t)(counter >> 32), v14 = block_len, v15 = flags;
    AOS_B3_ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    AOS_B3_ROUND(2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8);
    AOS_B3_ROUND(3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1);
    AOS_B3_ROUND(10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6);
    AOS_B3_ROUND(12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4);
    AOS_B3_ROUND(9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7);
    AOS_B3_ROUND(11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13);
    out[0] = v0 ^ v8; out[1] = v1 ^ v9; out[2] = v2 ^ v10; out[3] = v3 ^ v11;
    out[4] = v4 ^ v12; out[5] = v5 ^ v13; out[6] = v6 ^ v14; out[7] = v7 ^ v15;
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
