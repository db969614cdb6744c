# cython: language_level=3
"""The commit latency histogram's buckets, shared by the commit loops."""

from libc.stdint cimport int64_t


cdef inline int bucket(int64_t us) noexcept nogil:
    """The power-of-two bucket of ``us`` microseconds: its bit length, at most 39."""
    cdef int n = 0
    while us > 0 and n < 39:
        us >>= 1
        n += 1
    return n
