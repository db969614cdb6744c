# cython: language_level=3
"""The journal's frame writer, declared for the commit loops (they append records in C)."""

from libc.stdint cimport int64_t, uint8_t


cdef class FrameWriter:
    cdef char* _data                 # framed records not yet taken (written to the segment file)
    cdef Py_ssize_t _size
    cdef Py_ssize_t _cap
    cdef uint8_t _chain[32]          # the chain hash of the last record appended
    cdef readonly int64_t index      # the index the next record gets
    cdef readonly int64_t offset     # where the next frame starts in the segment, counting buf
    cdef readonly int64_t segment_bytes
    cdef readonly int64_t header_size
    cdef public int64_t pending      # commit points since the last flush
    cdef public double last_flush    # time.monotonic() of the last flush
    cdef readonly int mode           # 0: none, 1: group, 2: always
    cdef readonly int64_t group_commits
    cdef readonly double group_ms
    cdef public bint closed          # appending raises once the journal is closed

    cdef int64_t c_append(self, bytes payload) except -2
    cdef int c_commit_point(self) except -1
    cdef int _reserve(self, Py_ssize_t more) except -1


cdef class FrameCursor:
    cdef public list _frames         # the current batch: (offset, payload, chain) of each frame
    cdef public Py_ssize_t _i        # the next frame in the batch
    cdef public Py_ssize_t _first    # the index of the batch's first frame
    cdef public object _next         # the payload of the next record (None at the end)
    cdef public object _scheduled    # the last StepScheduled payload compared (for divergence reports)
    cdef public int64_t records      # records compared

    cdef int c_expect(self, bytes payload) except -1
    cdef int c_next_code(self) noexcept
