# The aos native reducer ABI for Cython users: ``from aos._core.native cimport *``.
# See aos_native.h (installed beside this file, aos/_core/include) for the contract.
from libc.stdint cimport int64_t, uint8_t


cdef extern from "aos_native.h" nogil:
    int AOS_NATIVE_ABI_VERSION
    const char* AOS_REDUCER_CAPSULE

    ctypedef struct aos_step_in:
        int64_t event_id
        const uint8_t* state
        size_t state_len
        const char* schema
        const uint8_t* event
        size_t event_len
        const uint8_t* key
        size_t key_len
        const uint8_t* seed

    ctypedef struct aos_out:
        void* impl
        int (*set_state)(aos_out* out, const uint8_t* data, size_t len) noexcept nogil
        int (*emit)(aos_out* out, const char* schema, const uint8_t* value, size_t len) noexcept nogil
        int (*effect)(aos_out* out, const char* kind, const uint8_t* params, size_t len, const char* cap,
                      int64_t cost) noexcept nogil
        int (*fail)(aos_out* out, const char* message) noexcept nogil

    ctypedef int (*aos_reducer_fn)(const aos_step_in* inp, aos_out* out, void* user) noexcept nogil
