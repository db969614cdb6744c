# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The ticket queue and the reorder buffer between the coordinator and the workers.

Tickets and results are Python objects kept in slot lists indexed by
``event_id % capacity`` (capacity is more than the tickets in flight, so
slots never collide); the queue of ticket numbers, the completion flags and
every wait live in C under one pthread mutex and two condition variables, so
waiting workers and a waiting coordinator hold neither the GIL nor a Python
lock.
"""

cimport cython
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from cpython.exc cimport PyErr_NoMemory

from aos._core.native cimport NativeCall, NativeJob
from aos._core.posix cimport (
    now_ns,
    pthread_cond_broadcast,
    pthread_cond_destroy,
    pthread_cond_init,
    pthread_cond_signal,
    pthread_cond_wait,
    pthread_mutex_destroy,
    pthread_mutex_init,
    pthread_mutex_lock,
    pthread_mutex_unlock,
)


@cython.final
cdef class Pipeline:
    """A bounded FIFO of tickets for workers and a reorder buffer of their results."""

    # attributes: see pipeline.pxd

    def __cinit__(self, int64_t capacity):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.queue = <int64_t*>calloc(capacity, sizeof(int64_t))
        self.done = <int64_t*>calloc(capacity, sizeof(int64_t))
        self.jobs = <NativeJob**>calloc(capacity, sizeof(NativeJob*))
        if self.queue == NULL or self.done == NULL or self.jobs == NULL:
            PyErr_NoMemory()
        pthread_mutex_init(&self.mutex, NULL)
        pthread_cond_init(&self.has_ticket, NULL)
        pthread_cond_init(&self.has_result, NULL)
        self.tickets = [None] * capacity
        self.results = [None] * capacity
        self.waiting_for = -1

    def __dealloc__(self):
        pthread_cond_destroy(&self.has_ticket)
        pthread_cond_destroy(&self.has_result)
        pthread_mutex_destroy(&self.mutex)
        free(self.queue)
        free(self.done)
        free(self.jobs)

    # ------------------------------------------------------------ coordinator
    def put(self, int64_t n, ticket):
        """Queue ticket number ``n`` (carried by ``ticket``) for the workers."""
        self.c_put(n, ticket)

    cdef int c_put(self, int64_t n, object ticket) except -1:
        cdef int64_t slot = n % self.capacity
        self.tickets[slot] = ticket
        if not self.enqueue(n, NULL):
            self.tickets[slot] = None
            raise OverflowError("more tickets in flight than the pipeline holds")
        return 0

    def put_native(self, int64_t n, outcome, NativeCall call):
        """Queue native step ``n``: a worker runs ``call``'s job without the GIL.

        ``outcome`` (which owns the call) is what :meth:`result` returns once
        the job has run.
        """
        self.c_put_native(n, outcome, &call.job)

    cdef int c_put_native(self, int64_t n, object outcome, NativeJob* job) except -1:
        cdef int64_t slot = n % self.capacity
        if job == NULL:
            raise ValueError("no native job")
        self.results[slot] = outcome
        self.tickets[slot] = None
        if not self.enqueue(n, job):
            self.results[slot] = None
            raise OverflowError("more tickets in flight than the pipeline holds")
        return 0

    cdef bint enqueue(self, int64_t n, NativeJob* job) noexcept:
        """Queue ticket ``n`` (with its native job, or NULL) for a worker; False when full."""
        cdef bint full
        cdef int64_t slot = n % self.capacity
        with nogil:
            pthread_mutex_lock(&self.mutex)
            full = self.length == self.capacity
            if not full:
                self.jobs[slot] = job
                self.done[slot] = -1
                self.queue[(self.head + self.length) % self.capacity] = n
                self.length += 1
                pthread_cond_signal(&self.has_ticket)
            pthread_mutex_unlock(&self.mutex)
        return not full

    def result(self, int64_t n, bint wait):
        """The result of ticket ``n`` (removed from the buffer), or None if not in yet.

        With ``wait`` it blocks, without the GIL, until the result is in, a
        worker reported a failure or :meth:`wake` was called (then None).
        """
        return self.c_result(n, wait, True)

    cdef object c_result(self, int64_t n, bint wait, bint wakeable=True):
        # ``wakeable``: a wake() ends the wait (the caller would use what arrived at once)
        cdef int64_t slot = n % self.capacity
        cdef bint ready
        with nogil:
            pthread_mutex_lock(&self.mutex)
            if wait:
                self.waiting_for = n
                self.wait_wakeable = wakeable
                while self.done[slot] != n and not self.failed and not (wakeable and self.woken):
                    pthread_cond_wait(&self.has_result, &self.mutex)
                self.waiting_for = -1
            ready = self.done[slot] == n
            if ready:
                self.done[slot] = -1
                self.jobs[slot] = NULL
            pthread_mutex_unlock(&self.mutex)
        if not ready:
            return None
        r = self.results[slot]
        self.results[slot] = None
        return r

    def steal(self, int64_t n):
        """Take ticket ``n`` back if it is still first in the queue (no worker took it); else None.

        The coordinator computes such a ticket itself instead of waiting for it.
        """
        return self.c_steal(n)

    cdef object c_steal(self, int64_t n):
        cdef int64_t slot = n % self.capacity
        cdef bint got = False
        with nogil:
            pthread_mutex_lock(&self.mutex)
            if self.length > 0 and self.queue[self.head] == n and self.jobs[slot] == NULL:
                self.head = (self.head + 1) % self.capacity
                self.length -= 1
                got = True
            pthread_mutex_unlock(&self.mutex)
        if not got:
            return None
        t = self.tickets[slot]
        self.tickets[slot] = None
        return t

    def fail(self):
        """Wake the coordinator: a worker hit an error it cannot turn into a result."""
        with nogil:
            pthread_mutex_lock(&self.mutex)
            self.failed = True
            pthread_cond_broadcast(&self.has_result)
            pthread_mutex_unlock(&self.mutex)

    def wake(self):
        """Tell the coordinator that other work arrived (an input to admit), from any thread.

        A :meth:`result` that waits (and may be woken) returns None at once
        until the coordinator took the news with :meth:`take_wake`.
        """
        self.c_wake()

    cdef void c_wake(self) noexcept:
        with nogil:
            pthread_mutex_lock(&self.mutex)
            self.woken = True
            if self.waiting_for >= 0 and self.wait_wakeable:  # (no needless wake-up of a wait that goes on)
                pthread_cond_broadcast(&self.has_result)
            pthread_mutex_unlock(&self.mutex)

    def take_wake(self):
        """Whether :meth:`wake` was called since the last call (which clears it)."""
        return self.c_take_wake()

    cdef bint c_take_wake(self) noexcept:
        cdef bint woken
        with nogil:
            pthread_mutex_lock(&self.mutex)
            woken = self.woken
            self.woken = False
            pthread_mutex_unlock(&self.mutex)
        return woken

    def close(self):
        """Wake every worker; ``take`` returns None from now on."""
        with nogil:
            pthread_mutex_lock(&self.mutex)
            self.closed = True
            pthread_cond_broadcast(&self.has_ticket)
            pthread_mutex_unlock(&self.mutex)

    # ---------------------------------------------------------------- workers
    def take(self):
        """The next ticket (waiting without the GIL), or None once closed."""
        cdef int64_t n = -1
        with nogil:
            pthread_mutex_lock(&self.mutex)
            while self.length == 0 and not self.closed:
                pthread_cond_wait(&self.has_ticket, &self.mutex)
            if self.length > 0 and not self.closed:
                n = self.queue[self.head]
                self.head = (self.head + 1) % self.capacity
                self.length -= 1
            pthread_mutex_unlock(&self.mutex)
        if n < 0:
            return None
        slot = n % self.capacity
        t = self.tickets[slot]
        self.tickets[slot] = None
        return t

    def complete(self, int64_t n, result):
        """Hand in the result of ticket ``n``."""
        cdef int64_t slot = n % self.capacity
        self.results[slot] = result
        with nogil:
            pthread_mutex_lock(&self.mutex)
            self.done[slot] = n
            if self.waiting_for == n:
                pthread_cond_signal(&self.has_result)
            pthread_mutex_unlock(&self.mutex)

    def serve(self, python_step):
        """A worker's loop, until the pipeline closes (or ``python_step`` returns None).

        Native jobs run here without the GIL from taking the ticket to
        handing in the result; other tickets go to ``python_step(ticket) ->
        result`` with the GIL.
        """
        cdef int64_t n, slot, t0
        cdef NativeJob* job
        while True:
            with nogil:
                while True:
                    pthread_mutex_lock(&self.mutex)
                    while self.length == 0 and not self.closed:
                        pthread_cond_wait(&self.has_ticket, &self.mutex)
                    n = -1
                    job = NULL
                    if self.length > 0 and not self.closed:
                        n = self.queue[self.head]
                        self.head = (self.head + 1) % self.capacity
                        self.length -= 1
                        job = self.jobs[n % self.capacity]
                    pthread_mutex_unlock(&self.mutex)
                    if job == NULL:
                        break  # closed, or a Python ticket
                    t0 = now_ns()
                    job.rc = job.fn(&job.inp, &job.out, job.user)
                    t0 = now_ns() - t0
                    slot = n % self.capacity
                    pthread_mutex_lock(&self.mutex)
                    self.native_busy_ns += t0
                    self.done[slot] = n
                    if self.waiting_for == n:
                        pthread_cond_signal(&self.has_result)
                    pthread_mutex_unlock(&self.mutex)
            if n < 0:
                return
            slot = n % self.capacity
            t = self.tickets[slot]
            self.tickets[slot] = None
            result = python_step(t)
            if result is None:
                return
            self.complete(n, result)

    @property
    def queued(self):
        return self.length
