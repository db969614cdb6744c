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
from libc.string cimport memcmp, memcpy

# The ABI (aos_native.h, found through aos.get_include() at build time), as Cython declarations.
from aos._core.native cimport AOS_REDUCER_CAPSULE, aos_out, aos_step_in

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


cdef int read_head(const uint8_t* p, size_t n, size_t* pos, int* major, uint64_t* arg) noexcept nogil:
    """Read one CBOR head (definite lengths only, as aos hands over): major type and argument."""
    cdef uint8_t b
    cdef int extra, i
    if pos[0] >= n:
        return -1
    b = p[pos[0]]
    pos[0] += 1
    major[0] = b >> 5
    b &= 31
    if b < 24:
        arg[0] = b
        return 0
    if b == 24:
        extra = 1
    elif b == 25:
        extra = 2
    elif b == 26:
        extra = 4
    elif b == 27:
        extra = 8
    else:
        return -1
    if n - pos[0] < <size_t>extra:
        return -1
    arg[0] = 0
    for i in range(extra):
        arg[0] = (arg[0] << 8) | p[pos[0] + i]
    pos[0] += extra
    return 0


cdef int skip_rest(const uint8_t* p, size_t n, size_t* pos, int major, uint64_t arg) noexcept nogil:
    """Skip the rest of the CBOR data item whose head (``major``, ``arg``) was just read, nested items
    included (iteratively: nesting costs no stack)."""
    cdef uint64_t pending = 0
    while True:
        if major == 2 or major == 3:  # byte or text string
            if arg > n - pos[0]:
                return -1
            pos[0] += <size_t>arg
        elif major == 4 or major == 5:  # array, map
            if arg > n:  # more items than bytes: malformed
                return -1
            pending += arg * 2 if major == 5 else arg
        elif major == 6:  # tag: one item follows
            pending += 1
        if pending == 0:
            return 0
        pending -= 1
        if read_head(p, n, pos, &major, &arg) != 0:
            return -1


cdef int find_amount(const uint8_t* p, size_t n, uint64_t* amount) noexcept nogil:
    """The unsigned integer under the text key "amount" of the map ``p``; -1 when absent or not one."""
    cdef size_t pos = 0
    cdef uint64_t entries, arg
    cdef int major
    if read_head(p, n, &pos, &major, &entries) != 0 or major != 5:
        return -1
    while entries:
        entries -= 1
        if read_head(p, n, &pos, &major, &arg) != 0:
            return -1
        if major == 3 and arg == 6 and n - pos >= 6 and memcmp(p + pos, b"amount", 6) == 0:
            pos += 6
            if read_head(p, n, &pos, &major, amount) != 0 or major != 0:
                return -1
            return 0
        if skip_rest(p, n, &pos, major, arg) != 0:  # another key
            return -1
        if read_head(p, n, &pos, &major, &arg) != 0 or skip_rest(p, n, &pos, major, arg) != 0:  # its value
            return -1
    return -1


cdef size_t write_uint(uint8_t* p, uint64_t v) noexcept nogil:
    """Write ``v`` as a canonical CBOR unsigned integer (the shortest head); returns its length."""
    cdef int extra, i
    if v < 24:
        p[0] = <uint8_t>v
        return 1
    if v <= <uint64_t>0xff:
        p[0] = 24
        extra = 1
    elif v <= <uint64_t>0xffff:
        p[0] = 25
        extra = 2
    elif v <= <uint64_t>0xffffffff:
        p[0] = 26
        extra = 4
    else:
        p[0] = 27
        extra = 8
    for i in range(extra):
        p[1 + i] = <uint8_t>(v >> (8 * (extra - 1 - i)))
    return 1 + extra


cdef size_t write_text(uint8_t* p, const char* s, size_t len) noexcept nogil:
    """Write a short text string (under 24 bytes) as canonical CBOR; returns its length."""
    p[0] = <uint8_t>(0x60 | len)
    memcpy(p + 1, s, len)
    return 1 + len


cdef int tally(const aos_step_in* inp, aos_out* out, void* user) noexcept nogil:
    cdef uint64_t every = <uint64_t><uintptr_t>user
    cdef uint64_t items = 0, count = 0, total = 0, amount = 0
    cdef size_t pos = 0, n
    cdef int major
    cdef uint8_t state[19]
    cdef uint8_t* value
    cdef int rc
    if inp.state != NULL:
        if read_head(inp.state, inp.state_len, &pos, &major, &items) != 0 or major != 4 or items != 2 or \
                read_head(inp.state, inp.state_len, &pos, &major, &count) != 0 or major != 0 or \
                read_head(inp.state, inp.state_len, &pos, &major, &total) != 0 or major != 0 or \
                pos != inp.state_len:
            out.fail(out, b"tally: the state is not [count, total]")
            return 1
    if find_amount(inp.event, inp.event_len, &amount) != 0:
        out.fail(out, b"tally: the event has no unsigned integer 'amount'")
        return 1
    if amount > <uint64_t>0xffffffffffffffff - total:
        out.fail(out, b"tally: the total would pass 2**64 - 1")
        return 1
    count += 1
    total += amount
    state[0] = 0x82  # an array of two items
    n = 1 + write_uint(state + 1, count)
    n += write_uint(state + n, total)
    if out.set_state(out, state, n) != 0:
        return 1
    if every == 0 or count % every != 0:
        return 0
    # {"key": key, "count": count, "total": total}: canonical CBOR sorts the keys by length, then bytes.
    value = <uint8_t*>malloc(1 + 4 + inp.key_len + 6 + 9 + 6 + 9)
    if value == NULL:
        out.fail(out, b"tally: out of memory")
        return 1
    n = 1
    value[0] = 0xa3  # a map of three pairs
    n += write_text(value + n, b"key", 3)
    memcpy(value + n, inp.key, inp.key_len)  # the key is canonical CBOR already
    n += inp.key_len
    n += write_text(value + n, b"count", 5)
    n += write_uint(value + n, count)
    n += write_text(value + n, b"total", 5)
    n += write_uint(value + n, total)
    rc = out.emit(out, MILESTONE_C, value, n)
    free(value)
    return 1 if rc != 0 else 0


# The function, for Manifest.native_reducer(fn=...): a capsule named for the ABI version it was built for.
REDUCER = PyCapsule_New(<void*>tally, AOS_REDUCER_CAPSULE, NULL)
