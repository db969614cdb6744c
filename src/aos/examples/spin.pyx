# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""``spin``: an example native reducer with adjustable CPU work per step.

State: the canonical CBOR array ``[count, acc]`` of two unsigned integers.
Each step runs ``iterations`` rounds of splitmix64 starting from
``acc XOR (first 8 bytes of the step seed, little endian)``, stores the result
as ``acc`` and increments ``count``. ``iterations`` is passed as the
registration's user value. :func:`python_spin` is the same reducer written in
Python; both write identical journals.

Register it with::

    m.native_reducer("bench/Spin@1", key="id", events=["bench/Spin@1"],
                     fn=aos.examples.spin.REDUCER, user=iterations, code_id=aos.examples.spin.CODE_ID)
"""

from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t

from aos._core.native cimport aos_out, aos_step_in

CODE_ID = "aos.examples.spin@1"
MASK64 = (1 << 64) - 1


cdef inline uint64_t splitmix64(uint64_t x) noexcept nogil:
    cdef uint64_t z = x + <uint64_t>0x9e3779b97f4a7c15
    z = (z ^ (z >> 30)) * <uint64_t>0xbf58476d1ce4e5b9
    z = (z ^ (z >> 27)) * <uint64_t>0x94d049bb133111eb
    return z ^ (z >> 31)


cdef int read_uint(const uint8_t* p, size_t n, size_t* pos, uint64_t* out) noexcept nogil:
    """Read a canonical CBOR unsigned integer (major type 0)."""
    cdef uint8_t head
    cdef int extra, i
    if pos[0] >= n:
        return -1
    head = p[pos[0]]
    pos[0] += 1
    if head >> 5 != 0:
        return -1
    head &= 31
    if head < 24:
        out[0] = head
        return 0
    if head == 24:
        extra = 1
    elif head == 25:
        extra = 2
    elif head == 26:
        extra = 4
    elif head == 27:
        extra = 8
    else:
        return -1
    if pos[0] + extra > n:
        return -1
    out[0] = 0
    for i in range(extra):
        out[0] = (out[0] << 8) | p[pos[0] + i]
    pos[0] += extra
    return 0


cdef size_t write_uint(uint8_t* p, uint64_t v) noexcept nogil:
    """Write v as a canonical CBOR unsigned integer; returns the length."""
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


cdef int spin(const aos_step_in* inp, aos_out* out, void* user) noexcept nogil:
    cdef uint64_t count = 0, acc = 0, x = 0
    cdef size_t pos = 0
    cdef int64_t iterations = <int64_t><uintptr_t>user
    cdef int64_t i
    cdef uint8_t buf[19]
    cdef size_t n
    if inp.state != NULL:
        if inp.state_len < 1 or inp.state[0] != 0x82:
            out.fail(out, b"spin: state is not a 2-element array")
            return 1
        pos = 1
        if read_uint(inp.state, inp.state_len, &pos, &count) != 0 or \
                read_uint(inp.state, inp.state_len, &pos, &acc) != 0 or pos != inp.state_len:
            out.fail(out, b"spin: state is not [count, acc]")
            return 1
    for i in range(8):
        x |= (<uint64_t>inp.seed[i]) << (8 * i)
    x ^= acc
    for i in range(iterations):
        x = splitmix64(x)
    buf[0] = 0x82
    n = 1 + write_uint(buf + 1, count + 1)
    n += write_uint(buf + n, x)
    return out.set_state(out, buf, n)


REDUCER = PyCapsule_New(<void*>spin, b"aos.reducer.v1", NULL)


def python_spin(iterations: int):
    """The same reducer in Python (a reference for tests, and the pure-Python benchmark)."""

    def spin_reducer(ctx, state, event):
        count, acc = state if state is not None else (0, 0)
        x = int.from_bytes(ctx.seed[:8], "little") ^ acc
        for _ in range(iterations):
            z = (x + 0x9e3779b97f4a7c15) & MASK64
            z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & MASK64
            x = z ^ (z >> 31)
        return [count + 1, x]

    return spin_reducer
