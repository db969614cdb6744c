# cython: language_level=3
"""The journal's frame writer, declared for the commit loops (they append records in C)."""

from libc.stdint cimport int64_t


cdef class FrameWriter:
    cdef readonly bytearray buf      # framed records not yet written to the segment file
    cdef readonly bytes chain        # the chain hash of the last record appended
    cdef readonly int64_t index      # the index the next record gets
    cdef readonly int64_t offset     # where the next frame starts in the segment, counting buf
    cdef readonly int64_t segment_bytes
    cdef readonly int64_t header_size
    cdef public int64_t pending      # commit points since the last flush
    cdef public double last_flush    # time.monotonic() of the last flush
    cdef readonly int mode           # 0: none, 1: group, 2: always
    cdef readonly int64_t group_commits
    cdef readonly double group_ms
    cdef object hasher

    cdef int64_t c_append(self, bytes payload) except -2
    cdef int c_commit_point(self) except -1
