/*
 * aos native reducer ABI, version 1.
 *
 * A native reducer is a C function called by aos worker threads with the
 * GIL released. It receives the cell's state and the event as canonical
 * CBOR bytes plus the step's 32-byte seed, and reports its outputs through
 * the callbacks in `aos_out`. It must be deterministic: no clock, no I/O,
 * no global mutable state; all randomness from `seed`.
 *
 * Every byte string it hands back (state, emitted values, effect params)
 * must be canonical CBOR (RFC 7049 canonical: shortest heads, definite
 * lengths, sorted map keys); aos checks them and fails the step otherwise.
 */
#ifndef AOS_NATIVE_H
#define AOS_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AOS_NATIVE_ABI_VERSION 1

typedef struct aos_step_in {
    int64_t event_id;          /* the step's ticket */
    const uint8_t *state;      /* canonical CBOR of the cell's state; NULL when it has none */
    size_t state_len;
    const char *schema;        /* the event's schema, NUL-terminated UTF-8 */
    const uint8_t *event;      /* canonical CBOR of the event value */
    size_t event_len;
    const uint8_t *key;        /* canonical CBOR of the cell key (null for non-keyed reducers) */
    size_t key_len;
    const uint8_t *seed;       /* 32 bytes: BLAKE3([event_id, reducer, key]) */
} aos_step_in;

typedef struct aos_out aos_out;
struct aos_out {
    void *impl;  /* aos's own; do not touch */
    /* The new state (copied). data == NULL deletes the cell. Returns 0, or -1 when out of memory. */
    int (*set_state)(aos_out *out, const uint8_t *data, size_t len);
    /* Emit an event: schema (NUL-terminated) and canonical CBOR value (copied). */
    int (*emit)(aos_out *out, const char *schema, const uint8_t *value, size_t len);
    /* Intend an effect: kind, canonical CBOR params, capability (NULL: the one covering kind), cost. */
    int (*effect)(aos_out *out, const char *kind, const uint8_t *params, size_t len, const char *cap,
                  int64_t cost);
    /* Fail the step with a message (copied); the reducer should then return non-zero. */
    int (*fail)(aos_out *out, const char *message);
};

/* Returns 0 when the step succeeded; non-zero fails it (StepFailed, cell unchanged).
 * Without a set_state call the state is unchanged. `user` is the pointer given at registration. */
typedef int (*aos_reducer_fn)(const aos_step_in *in, aos_out *out, void *user);

/* Name of the PyCapsule that carries an aos_reducer_fn. */
#define AOS_REDUCER_CAPSULE "aos.reducer.v1"

#ifdef __cplusplus
}
#endif
#endif /* AOS_NATIVE_H */
