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

from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from cpython.exc cimport PyErr_NoMemory


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* m, const void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)
    int pthread_cond_init(pthread_cond_t* c, const void* attr)
    int pthread_cond_destroy(pthread_cond_t* c)
    int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m)
    int pthread_cond_signal(pthread_cond_t* c)
    int pthread_cond_broadcast(pthread_cond_t* c)


cdef class Pipeline:
    """A bounded FIFO of tickets for workers and a reorder buffer of their results."""

    cdef pthread_mutex_t mutex
    cdef pthread_cond_t has_ticket
    cdef pthread_cond_t has_result
    cdef int64_t* queue      # ring of ticket numbers waiting for a worker
    cdef int64_t* done       # done[n % capacity] == n once ticket n's result is in
    cdef readonly int64_t capacity
    cdef int64_t head
    cdef int64_t length
    cdef int64_t waiting_for
    cdef bint closed
    cdef bint failed
    cdef list tickets
    cdef list results

    def __cinit__(self, int64_t capacity):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.queue = <int64_t*>calloc(capacity, sizeof(int64_t))
        self.done = <int64_t*>calloc(capacity, sizeof(int64_t))
        if self.queue == NULL or self.done == NULL:
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

    # ------------------------------------------------------------ coordinator
    def put(self, int64_t n, ticket):
        """Queue ticket number ``n`` (carried by ``ticket``) for the workers."""
        cdef bint full
        cdef int64_t slot = n % self.capacity
        self.tickets[slot] = ticket
        with nogil:
            pthread_mutex_lock(&self.mutex)
            full = self.length == self.capacity
            if not full:
                self.done[slot] = -1
                self.queue[(self.head + self.length) % self.capacity] = n
                self.length += 1
                pthread_cond_signal(&self.has_ticket)
            pthread_mutex_unlock(&self.mutex)
        if full:
            self.tickets[slot] = None
            raise OverflowError("more tickets in flight than the pipeline holds")

    def result(self, int64_t n, bint wait):
        """The result of ticket ``n`` (removed from the buffer), or None if not in yet.

        With ``wait`` it blocks, without the GIL, until the result is in or a
        worker reported a failure (then None).
        """
        cdef int64_t slot = n % self.capacity
        cdef bint ready
        with nogil:
            pthread_mutex_lock(&self.mutex)
            if wait:
                self.waiting_for = n
                while self.done[slot] != n and not self.failed:
                    pthread_cond_wait(&self.has_result, &self.mutex)
                self.waiting_for = -1
            ready = self.done[slot] == n
            if ready:
                self.done[slot] = -1
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
        cdef int64_t slot = n % self.capacity
        cdef bint got = False
        with nogil:
            pthread_mutex_lock(&self.mutex)
            if self.length > 0 and self.queue[self.head] == n:
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

    @property
    def queued(self):
        return self.length
