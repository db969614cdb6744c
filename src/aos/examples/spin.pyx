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

# The ABI and the canonical CBOR helpers (aos_native.h, aos_cbor.h).
from aos._core.native cimport (
    aos_cbor_read_uint,
    aos_cbor_write_array_head,
    aos_cbor_write_uint,
    aos_out,
    aos_step_in,
)

CODE_ID = "aos.examples.spin@1"
MASK64 = (1 << 64) - 1


cdef inline uint64_t splitmix64(uint64_t x) noexcept nogil:
    cdef uint64_t z = x + <uint64_t>0x9e3779b97f4a7c15
    z = (z ^ (z >> 30)) * <uint64_t>0xbf58476d1ce4e5b9
    z = (z ^ (z >> 27)) * <uint64_t>0x94d049bb133111eb
    return z ^ (z >> 31)


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
        if aos_cbor_read_uint(inp.state, inp.state_len, &pos, &count) != 0 or \
                aos_cbor_read_uint(inp.state, inp.state_len, &pos, &acc) != 0 or pos != inp.state_len:
            out.fail(out, b"spin: state is not [count, acc]")
            return 1
    for i in range(8):
        x |= (<uint64_t>inp.seed[i]) << (8 * i)
    x ^= acc
    for i in range(iterations):
        x = splitmix64(x)
    n = aos_cbor_write_array_head(buf, 2)
    n += aos_cbor_write_uint(buf + n, count + 1)
    n += aos_cbor_write_uint(buf + n, x)
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
