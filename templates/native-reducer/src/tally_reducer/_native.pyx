# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The native ``tally`` reducer: a keyed running count and total that emits a milestone.

Event: a canonical CBOR map with an unsigned integer ``amount`` (other fields are skipped).
State: the canonical CBOR array ``[count, total]``; a new cell starts at ``[0, 0]``.
Each step adds 1 to ``count`` and ``amount`` to ``total``; whenever ``count`` reaches a
multiple of ``every`` (the registration's ``user`` value) it emits ``MILESTONE`` with the value
``{"key": <the cell key>, "count": count, "total": total}``. A missing or negative ``amount``,
or a total past 2**64 - 1, fails the step (the cell is unchanged).

:mod:`tally_reducer.twin` is the same reducer in Python; both write the same journal.
"""

from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint8_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

# The ABI (aos_native.h) and the canonical CBOR helpers (aos_cbor.h), found through aos.get_include() at
# build time, as Cython declarations.
from aos._core.native cimport AOS_REDUCER_CAPSULE, aos_out, aos_step_in
from aos._core.native cimport (
    AOS_CBOR_ARRAY,
    AOS_CBOR_HEAD_MAX,
    aos_cbor_find_key,
    aos_cbor_read_head,
    aos_cbor_read_uint,
    aos_cbor_write_array_head,
    aos_cbor_write_map_head,
    aos_cbor_write_text,
    aos_cbor_write_uint,
)

# Refuse to build against a header of another ABI version than this code was written for.
cdef extern from *:
    """
    #if AOS_NATIVE_ABI_VERSION != 1
    #error "tally_reducer is written for the aos native reducer ABI version 1"
    #endif
    """

# Names the code's version: it enters the world's era. Bump it whenever the C behaviour changes.
CODE_ID = "tally_reducer.tally@1"
MILESTONE = "tally/Milestone@1"

cdef const char* MILESTONE_C = b"tally/Milestone@1"  # MILESTONE, for C


cdef int tally(const aos_step_in* inp, aos_out* out, void* user) noexcept nogil:
    cdef uint64_t every = <uint64_t><uintptr_t>user
    cdef uint64_t items = 0, count = 0, total = 0, amount = 0
    cdef size_t pos = 0, n
    cdef int major
    cdef uint8_t state[19]
    cdef uint8_t* value
    cdef int rc
    if inp.state != NULL:
        if aos_cbor_read_head(inp.state, inp.state_len, &pos, &major, &items) != 0 or \
                major != AOS_CBOR_ARRAY or items != 2 or \
                aos_cbor_read_uint(inp.state, inp.state_len, &pos, &count) != 0 or \
                aos_cbor_read_uint(inp.state, inp.state_len, &pos, &total) != 0 or \
                pos != inp.state_len:
            out.fail(out, b"tally: the state is not [count, total]")
            return 1
    pos = 0  # the event: a map with an unsigned integer under "amount"
    if aos_cbor_find_key(inp.event, inp.event_len, &pos, b"amount", 6) != 0 or \
            aos_cbor_read_uint(inp.event, inp.event_len, &pos, &amount) != 0:
        out.fail(out, b"tally: the event has no unsigned integer 'amount'")
        return 1
    if amount > <uint64_t>0xffffffffffffffff - total:
        out.fail(out, b"tally: the total would pass 2**64 - 1")
        return 1
    count += 1
    total += amount
    n = aos_cbor_write_array_head(state, 2)
    n += aos_cbor_write_uint(state + n, count)
    n += aos_cbor_write_uint(state + n, total)
    if out.set_state(out, state, n) != 0:
        return 1
    if every == 0 or count % every != 0:
        return 0
    # {"key": key, "count": count, "total": total}: canonical CBOR sorts the keys by length, then bytes.
    value = <uint8_t*>malloc(1 + 4 + inp.key_len + 6 + AOS_CBOR_HEAD_MAX + 6 + AOS_CBOR_HEAD_MAX)
    if value == NULL:
        out.fail(out, b"tally: out of memory")
        return 1
    n = aos_cbor_write_map_head(value, 3)
    n += aos_cbor_write_text(value + n, b"key", 3)
    memcpy(value + n, inp.key, inp.key_len)  # the key is canonical CBOR already
    n += inp.key_len
    n += aos_cbor_write_text(value + n, b"count", 5)
    n += aos_cbor_write_uint(value + n, count)
    n += aos_cbor_write_text(value + n, b"total", 5)
    n += aos_cbor_write_uint(value + n, total)
    rc = out.emit(out, MILESTONE_C, value, n)
    free(value)
    return 1 if rc != 0 else 0


# The function, for Manifest.native_reducer(fn=...): a capsule named for the ABI version it was built for.
REDUCER = PyCapsule_New(<void*>tally, AOS_REDUCER_CAPSULE, NULL)
