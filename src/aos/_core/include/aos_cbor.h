/*
 * aos_cbor.h: reading and writing canonical CBOR in native reducers.
 *
 * A native reducer (aos_native.h) receives its state, event and key as
 * canonical CBOR and must hand back canonical CBOR. These helpers cover
 * what a reducer typically needs: walk an item's heads, skip an item, find a
 * text key in a map, read an unsigned integer, and write heads, unsigned
 * integers and text strings. They are dependency-free C99 `static inline`
 * functions with no state: safe from any thread, without the GIL.
 *
 * Canonical here means what aos writes and checks (docs/canonical.md):
 *   - every head is the shortest that holds its argument (a value below 24
 *     in the initial byte, else 1, 2, 4 or 8 bytes, the fewest that fit);
 *   - lengths are definite (no indefinite-length strings, arrays or maps);
 *   - a map's keys are sorted by their encoded bytes, shorter first.
 * The readers refuse a head that breaks the first two rules (and the
 * reserved additional information 28-30), so anything they accept is read
 * exactly as aos reads it. The writers always write the shortest heads; the
 * order of map keys is the caller's: write the pairs in canonical order
 * (for text keys: shorter keys first, keys of equal length by their bytes),
 * e.g. {"key", "count", "total"}.
 *
 * Readers take the buffer `p` of `n` bytes and a cursor `*pos` into it; they
 * never read outside p[0..n), advance `*pos` past what they read and return
 * 0, or return -1 for malformed or non-canonical input (where `*pos` is then
 * unspecified). Writers write at `p` without a bound and return the number of
 * bytes written: size the buffer with AOS_CBOR_HEAD_MAX (9) per head.
 */
#ifndef AOS_CBOR_H
#define AOS_CBOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CBOR major types: the top three bits of an item's initial byte. */
#define AOS_CBOR_UINT 0    /* unsigned integer: the argument is the value */
#define AOS_CBOR_NEGINT 1  /* negative integer: the value is -1 - argument */
#define AOS_CBOR_BYTES 2   /* byte string: the argument is its length */
#define AOS_CBOR_TEXT 3    /* text string (UTF-8): the argument is its length in bytes */
#define AOS_CBOR_ARRAY 4   /* array: the argument is its number of items */
#define AOS_CBOR_MAP 5     /* map: the argument is its number of key/value pairs */
#define AOS_CBOR_TAG 6     /* tag: the argument is the tag; one item follows */
#define AOS_CBOR_SIMPLE 7  /* false, true, null (20, 21, 22) and floats */

/* The longest head: an initial byte and an 8-byte argument. */
#define AOS_CBOR_HEAD_MAX 9

/* Read one item's head at p[*pos]: its major type and argument (for a float,
 * major type 7, the argument holds the float's bits). */
static inline int aos_cbor_read_head(const uint8_t *p, size_t n, size_t *pos, int *major, uint64_t *arg) {
    uint8_t b;
    size_t extra, i;
    uint64_t v = 0;
    if (*pos >= n)
        return -1;
    b = p[*pos];
    *pos += 1;
    *major = b >> 5;
    b &= 31;
    if (b < 24) {
        *arg = b;
        return 0;
    }
    if (b > 27) /* 28-30 reserved, 31 an indefinite length or "break" */
        return -1;
    extra = (size_t)1 << (b - 24); /* 1, 2, 4 or 8 bytes */
    if (n - *pos < extra)
        return -1;
    for (i = 0; i < extra; i++)
        v = (v << 8) | p[*pos + i];
    *pos += extra;
    /* The shortest head (floats and simple values, major type 7, have rules of their own). */
    if (*major != AOS_CBOR_SIMPLE && (extra == 1 ? v < 24 : v >> (4 * extra) == 0))
        return -1;
    *arg = v;
    return 0;
}

/* Skip the rest of the item whose head (`major`, `arg`) was just read: a
 * string's bytes, an array's or map's items, a tag's item, nested items
 * included. Iterative: nesting costs no stack. */
static inline int aos_cbor_skip_rest(const uint8_t *p, size_t n, size_t *pos, int major, uint64_t arg) {
    uint64_t pending = 0; /* items still to skip; each takes at least one byte, so never more than n - *pos */
    for (;;) {
        if (major == AOS_CBOR_BYTES || major == AOS_CBOR_TEXT) {
            if (arg > n - *pos)
                return -1;
            *pos += (size_t)arg;
        } else if (major == AOS_CBOR_ARRAY || major == AOS_CBOR_MAP) {
            uint64_t per = major == AOS_CBOR_MAP ? 2 : 1;
            if (pending > n - *pos || arg > (n - *pos - pending) / per)
                return -1; /* more items than bytes left: malformed */
            pending += arg * per;
        } else if (major == AOS_CBOR_TAG) {
            pending += 1;
        }
        if (pending == 0)
            return 0;
        pending -= 1;
        if (aos_cbor_read_head(p, n, pos, &major, &arg) != 0)
            return -1;
    }
}

/* Skip one whole item at p[*pos]. */
static inline int aos_cbor_skip(const uint8_t *p, size_t n, size_t *pos) {
    int major;
    uint64_t arg;
    if (aos_cbor_read_head(p, n, pos, &major, &arg) != 0)
        return -1;
    return aos_cbor_skip_rest(p, n, pos, major, arg);
}

/* Read an unsigned integer (major type 0) at p[*pos] into *out. */
static inline int aos_cbor_read_uint(const uint8_t *p, size_t n, size_t *pos, uint64_t *out) {
    int major;
    uint64_t arg;
    if (aos_cbor_read_head(p, n, pos, &major, &arg) != 0 || major != AOS_CBOR_UINT)
        return -1;
    *out = arg;
    return 0;
}

/* Find the text key `key` (`key_len` bytes of UTF-8) in the map at p[*pos]:
 * returns 0 with *pos at the start of its value, or -1 when the item is not
 * a map, the key is absent, or the map is malformed. */
static inline int aos_cbor_find_key(const uint8_t *p, size_t n, size_t *pos, const char *key, size_t key_len) {
    int major;
    uint64_t pairs, arg;
    if (aos_cbor_read_head(p, n, pos, &major, &pairs) != 0 || major != AOS_CBOR_MAP)
        return -1;
    while (pairs) {
        pairs -= 1;
        if (aos_cbor_read_head(p, n, pos, &major, &arg) != 0)
            return -1;
        if (major == AOS_CBOR_TEXT && arg == key_len && n - *pos >= key_len &&
            memcmp(p + *pos, key, key_len) == 0) {
            *pos += key_len;
            return 0;
        }
        if (aos_cbor_skip_rest(p, n, pos, major, arg) != 0) /* another key */
            return -1;
        if (aos_cbor_skip(p, n, pos) != 0) /* its value */
            return -1;
    }
    return -1;
}

/* Write the shortest head of major type `major` with argument `arg`; returns its length (1 to 9). */
static inline size_t aos_cbor_write_head(uint8_t *p, int major, uint64_t arg) {
    uint8_t mt = (uint8_t)(major << 5);
    size_t extra, i;
    if (arg < 24) {
        p[0] = (uint8_t)(mt | arg);
        return 1;
    }
    if (arg <= 0xffu) {
        p[0] = mt | 24;
        extra = 1;
    } else if (arg <= 0xffffu) {
        p[0] = mt | 25;
        extra = 2;
    } else if (arg <= 0xffffffffu) {
        p[0] = mt | 26;
        extra = 4;
    } else {
        p[0] = mt | 27;
        extra = 8;
    }
    for (i = 0; i < extra; i++)
        p[1 + i] = (uint8_t)(arg >> (8 * (extra - 1 - i)));
    return 1 + extra;
}

/* Write the unsigned integer `v` (1 to 9 bytes). */
static inline size_t aos_cbor_write_uint(uint8_t *p, uint64_t v) {
    return aos_cbor_write_head(p, AOS_CBOR_UINT, v);
}

/* Write the text string of `len` bytes at `s` (valid UTF-8: aos checks it). */
static inline size_t aos_cbor_write_text(uint8_t *p, const char *s, size_t len) {
    size_t h = aos_cbor_write_head(p, AOS_CBOR_TEXT, len);
    memcpy(p + h, s, len);
    return h + len;
}

/* Write the head of an array of `items` items; the items follow. */
static inline size_t aos_cbor_write_array_head(uint8_t *p, uint64_t items) {
    return aos_cbor_write_head(p, AOS_CBOR_ARRAY, items);
}

/* Write the head of a map of `pairs` pairs; key, value, key, value, ... follow, keys in canonical order. */
static inline size_t aos_cbor_write_map_head(uint8_t *p, uint64_t pairs) {
    return aos_cbor_write_head(p, AOS_CBOR_MAP, pairs);
}

#ifdef __cplusplus
}
#endif

#endif /* AOS_CBOR_H */
