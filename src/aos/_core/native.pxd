# The aos native reducer ABI for Cython users: ``from aos._core.native cimport *``.
# See aos_native.h (installed beside this file, aos/_core/include) for the contract, and aos_cbor.h there
# for the canonical CBOR helpers.
from libc.stdint cimport int64_t, uint8_t, uint64_t


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


# Canonical CBOR helpers for reducers (aos_cbor.h, beside aos_native.h): readers return 0, or -1 for
# malformed or non-canonical input; writers return the number of bytes written.
cdef extern from "aos_cbor.h" nogil:
    enum:
        AOS_CBOR_UINT
        AOS_CBOR_NEGINT
        AOS_CBOR_BYTES
        AOS_CBOR_TEXT
        AOS_CBOR_ARRAY
        AOS_CBOR_MAP
        AOS_CBOR_TAG
        AOS_CBOR_SIMPLE
        AOS_CBOR_HEAD_MAX

    int aos_cbor_read_head(const uint8_t* p, size_t n, size_t* pos, int* major, uint64_t* arg)
    int aos_cbor_skip_rest(const uint8_t* p, size_t n, size_t* pos, int major, uint64_t arg)
    int aos_cbor_skip(const uint8_t* p, size_t n, size_t* pos)
    int aos_cbor_read_uint(const uint8_t* p, size_t n, size_t* pos, uint64_t* out)
    int aos_cbor_find_key(const uint8_t* p, size_t n, size_t* pos, const char* key, size_t key_len)
    size_t aos_cbor_write_head(uint8_t* p, int major, uint64_t arg)
    size_t aos_cbor_write_uint(uint8_t* p, uint64_t v)
    size_t aos_cbor_write_text(uint8_t* p, const char* s, size_t len)
    size_t aos_cbor_write_array_head(uint8_t* p, uint64_t items)
    size_t aos_cbor_write_map_head(uint8_t* p, uint64_t pairs)


# ----------------------------------------------------------------------------------------------
# Internal to aos._core (the commit loop and the pipeline cimport them); users need only the ABI above.

cdef struct Buf:
    uint8_t* data
    size_t len
    size_t cap


cdef struct Impl:
    Buf state
    int state_action  # 0 unchanged, 1 set, 2 delete
    Buf emits         # [u32 n, schema, u32 n, value]*
    Buf effects       # [u32 n, kind, u32 n, params, u32 n or 0xffffffff, cap, i64 cost]*
    Buf error
    int oom


cdef struct NativeJob:
    # a native step prepared for a worker that runs it without the GIL
    aos_reducer_fn fn
    void* user
    aos_step_in inp
    aos_out out
    int rc


cdef class NativeCall:
    cdef NativeJob job
    cdef Impl im
    cdef readonly object state
    cdef object keep  # the byte strings the job's pointers point into

    cpdef tuple outputs(self)


cdef class NativeReducer:
    cdef aos_reducer_fn fn
    cdef void* user
    cdef object keep  # objects that own fn / user

    cpdef NativeCall prepare(self, int64_t event_id, object state, bytes schema, bytes event, bytes key, bytes seed)
