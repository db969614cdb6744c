# cython: language_level=3
"""The pipeline's declaration: the commit loop calls it in C (``cimport``)."""

cimport cython
from libc.stdint cimport int64_t

from aos._core.native cimport NativeJob
from aos._core.posix cimport pthread_cond_t, pthread_mutex_t


@cython.final
cdef class Pipeline:
    cdef pthread_mutex_t mutex
    cdef pthread_cond_t has_ticket
    cdef pthread_cond_t has_result
    cdef int64_t* queue      # ring of ticket numbers waiting for a worker
    cdef int64_t* done       # done[n % capacity] == n once ticket n's result is in
    cdef NativeJob** jobs    # jobs[n % capacity]: a native step the worker runs without the GIL, or NULL
    cdef readonly int64_t native_busy_ns  # time workers spent in native jobs
    cdef readonly int64_t capacity
    cdef int64_t head
    cdef int64_t length
    cdef int64_t waiting_for
    cdef bint wait_wakeable  # the coordinator's wait ends on wake()
    cdef bint closed
    cdef bint failed
    cdef bint woken          # wake() was called and take_wake() not yet: a wakeable wait returns None
    cdef list tickets
    cdef list results

    cdef bint enqueue(self, int64_t n, NativeJob* job) noexcept
    # The C API (what ``put``, ``put_native``, ``result`` and ``steal`` do, without Python calls)
    cdef int c_put(self, int64_t n, object ticket) except -1
    cdef int c_put_native(self, int64_t n, object outcome, NativeJob* job) except -1
    cdef object c_result(self, int64_t n, bint wait, bint wakeable=*)
    cdef object c_steal(self, int64_t n)
    cdef void c_wake(self) noexcept
    cdef bint c_take_wake(self) noexcept
