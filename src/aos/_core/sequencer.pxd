# cython: language_level=3
"""The sequencer's declaration: other core modules call it in C (``cimport``)."""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint32_t

from aos._core.cellstore cimport CellStore


cdef struct Node:
    int64_t input
    int64_t next


cdef struct Pending:
    int64_t visible_at
    int64_t cell
    int64_t input
    int64_t cls
    int64_t order  # when it was delivered: the tie-break among inputs visible at the same ticket


cdef enum:
    NCLASS = 4  # priority classes: 0 is served first


@cython.final
cdef class Sequencer:
    # per cell (22 bytes; set up as cell ids come into use, not for the whole capacity)
    cdef int32_t* head      # the cell's mailbox: its first and last node (-1: empty)
    cdef int32_t* tail
    cdef uint32_t* last     # the low 32 bits of the last ticket the cell was given (0: none)
    cdef int64_t* since     # the ticket current when the cell last entered the ring
    cdef char* cls          # the cell's priority class
    cdef char* in_ring
    cdef int64_t ncells
    cdef int64_t cell_cap
    # mailbox node pool with a free list
    cdef Node* nodes
    cdef int64_t node_cap
    cdef int64_t free_node
    cdef int64_t node_used
    # ready rings (one FIFO of cell ids per priority class)
    cdef uint32_t* ring[NCLASS]
    cdef int64_t ring_cap
    cdef int64_t ring_head[NCLASS]
    cdef int64_t ring_count[NCLASS]
    cdef int64_t ring_len   # cells in all rings
    cdef readonly int64_t aging
    # emitted inputs waiting for their visibility ticket (FIFO, visible_at non-decreasing)
    cdef Pending* pend
    cdef int64_t pend_cap
    cdef int64_t pend_head
    cdef int64_t pend_len
    # admitted inputs held until their visibility ticket (FIFO, visible_at non-decreasing; docs/scheduling.md)
    cdef Pending* held
    cdef int64_t held_cap
    cdef int64_t held_head
    cdef int64_t held_len
    cdef int64_t order_next
    # tickets
    cdef readonly int64_t next_ticket
    cdef readonly int64_t window
    cdef readonly int64_t queued
    # fairness metrics (waits in tickets between an input becoming ready and being ticketed)
    cdef readonly int64_t wait_sum
    cdef readonly int64_t wait_max
    cdef readonly int64_t wait_max_cell
    cdef readonly int64_t wait_max_ticket
    cdef readonly int64_t queued_max
    # the same, per priority class and per reducer (the cell store's name index of the cell's reducer),
    # counted as each ticket is given: tickets, the sum of their waits, the longest wait
    cdef int64_t class_tickets[NCLASS]
    cdef int64_t class_wait_sum[NCLASS]
    cdef int64_t class_wait_max[NCLASS]
    cdef public CellStore cells  # the cells ticketed (their reducers); None: no per-reducer counts
    cdef int64_t* by_reducer     # [tickets, wait sum, wait max] per name index
    cdef int64_t reducer_cap

    cdef int _grow_cells(self, int64_t want) except -1
    cdef int _grow_nodes(self, int64_t want) except -1
    cdef int _grow_ring(self, int64_t want) except -1
    cdef int _grow_pending(self, int64_t want) except -1
    cdef int _grow_held(self, int64_t want) except -1
    cdef void _count(self, int k, int64_t c, int64_t wait) noexcept nogil
    cdef int _reserve(self, int64_t cell) except -1
    cdef int _enqueue(self, Pending** buf, int64_t* cap, int64_t* head, int64_t* length, int64_t first,
                      int64_t visible_at, int64_t cell, int64_t input, int priority) except -1
    cdef int _ensure_room(self, int64_t extra) except -1
    cdef void _push_mailbox(self, int64_t cell, int64_t input) noexcept nogil
    cdef void _ring_push(self, int64_t cell) noexcept nogil
    cdef int _choose(self) noexcept nogil
    cdef void _push_pending(self, Pending* p) noexcept nogil
    cdef void _release(self, int64_t upto, bint everything) noexcept nogil
    cdef bint _next(self, int64_t* ticket, int64_t* cell, int64_t* input) noexcept nogil
    cdef int64_t _poll(self, int64_t committed, int64_t* ticket, int64_t* cell, int64_t* input) noexcept nogil

    # The C API (what ``poll``, ``deliver``, ``deliver_at`` and ``deliver_emitted`` do, without Python objects)
    cdef int c_poll(self, int64_t committed, int64_t* ticket, int64_t* cell, int64_t* input) except -2
    cdef int c_deliver(self, int64_t cell, int64_t input, int priority) except -1
    cdef int c_deliver_at(self, int64_t visible_at, int64_t cell, int64_t input, int priority) except -1
    cdef int c_deliver_emitted(self, int64_t emitter, int64_t cell, int64_t input, int priority) except -1
    cdef bint c_has_work(self) noexcept nogil
