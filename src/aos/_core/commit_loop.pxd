# cython: language_level=3
"""The threads executor's commit loop, declared with its fields (the executor reads its counters)."""

from libc.stdint cimport int64_t

from aos._core.inline_loop cimport InlineLoop
from aos._core.pipeline cimport Pipeline
from aos._core.posix cimport pthread_cond_t, pthread_mutex_t


cdef enum:
    NBUCKETS = 40  # latency buckets: power-of-two microseconds, the last one open-ended
    QUIET_EVERY = 64  # commits between two quiet-point hooks, unless a call or a barrier asks for one


cdef class CommitLoop:
    cdef readonly Pipeline pipe
    cdef readonly int64_t lookahead
    cdef readonly int64_t workers
    cdef readonly int64_t helped        # steps the loop computed itself
    cdef readonly int64_t max_inflight  # most tickets in flight at once
    cdef readonly int64_t busy_ns       # time the loop spent computing steps
    cdef int64_t counts[NBUCKETS]       # commit latency histogram (assigned -> committed)
    cdef int64_t* assigned_at           # when each ticket in flight was assigned (ns), by ticket % capacity
    cdef bint python_here
    cdef bint may_help
    cdef bint native_direct
    cdef public object error  # what a worker hit that it could not turn into a result (it then fails the pipe)
    cdef public InlineLoop inline  # the steps this loop computes itself go through the inline executor's loop
    # The gate: open while the loop waits for a result (between two commits, touching nothing); another
    # thread that entered it may admit inputs meanwhile, and the loop goes on only once it left.
    cdef pthread_mutex_t gate_mutex
    cdef pthread_cond_t gate_left
    cdef bint gate_open
    cdef bint visitor

    cdef void _open_gate(self) noexcept nogil
    cdef void _close_gate(self) noexcept nogil
