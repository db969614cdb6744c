# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The sequencer: mailboxes, the ready ring and ticket assignment.

Cells are known here only by an integer cell id and inputs only by their
admission number; the Python layer maps both to reducers, keys and events.
Everything below works on plain C arrays, so the scheduling decisions run
with the GIL released (``with nogil`` around the core of each method).

The rule (docs/scheduling.md):

* Each cell has a FIFO mailbox of admission numbers.
* The ready ring is a FIFO of cells whose mailbox is non-empty; a cell is in
  it at most once. ``next()`` pops the front cell, gives the head of its
  mailbox the next ticket, and puts the cell back at the end of the ring if
  its mailbox still holds inputs. This is round-robin with at most one step
  per cell per pass (a *tick*).
* Inputs delivered by ``deliver`` are visible at once; ``deliver_at(v, ...)``
  (external admissions) holds an input until ticket ``v`` is assigned — the
  next ticket when nothing is in flight, a later one when the admission
  happens while tickets are in flight (its record carries ``v``, so a
  replay holds it just as long).
  Inputs emitted by the step with ticket ``t`` are delivered with
  ``deliver_emitted(t, ...)`` and become visible when ticket ``t + window`` is
  assigned, or earlier when nothing else is ready (then every pending input is
  released). Both conditions are functions of ticket numbers and committed
  outputs only, never of timing, so a parallel executor may run up to
  ``window - 1`` tickets ahead of the committer and still assign exactly the
  tickets the serial executor assigns.
"""

cimport cython
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset
from libc.stdint cimport int32_t, int64_t, uint32_t, INT32_MAX, INT64_MAX
from cpython.exc cimport PyErr_NoMemory

from aos._core.cellstore cimport CellStore


cdef int _grow_fifo(Pending** buf, int64_t* cap, int64_t* head, int64_t length, int64_t want,
                    int64_t first) except -1:
    """Grow the ring ``buf`` (``cap`` slots, ``length`` entries from ``head``) to hold ``want``, in order from 0."""
    cdef int64_t n = cap[0] if cap[0] else first
    cdef int64_t i
    while n < want:
        n *= 2
    if n == cap[0]:
        return 0
    cdef Pending* p = <Pending*>malloc(n * sizeof(Pending))
    if p == NULL:
        PyErr_NoMemory()
    for i in range(length):
        p[i] = buf[0][(head[0] + i) % cap[0]]
    free(buf[0])
    buf[0] = p
    cap[0] = n
    head[0] = 0
    return 0


@cython.final
cdef class Sequencer:
    # attributes: see sequencer.pxd

    def __cinit__(self, int64_t window=64, int64_t first_ticket=1, int64_t aging=256):
        cdef int k
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if aging < 1:
            raise ValueError(f"aging must be >= 1, got {aging}")
        self.aging = aging
        if first_ticket < 1:
            raise ValueError(f"first_ticket must be >= 1, got {first_ticket}")
        self.window = window
        self.next_ticket = first_ticket
        self.head = self.tail = NULL
        self.last = NULL
        self.since = NULL
        self.in_ring = NULL
        self.cls = NULL
        self.nodes = NULL
        for k in range(NCLASS):
            self.ring[k] = NULL
            self.ring_head[k] = 0
            self.ring_count[k] = 0
        self.pend = NULL
        self.held = NULL
        self.by_reducer = NULL
        self.free_node = -1
        self._grow_cells(64)
        self._grow_nodes(256)
        self._grow_ring(64)
        self._grow_pending(64)
        self._grow_held(16)

    def __dealloc__(self):
        free(self.head); free(self.tail); free(self.last); free(self.since); free(self.in_ring)
        free(self.cls); free(self.nodes); free(self.pend); free(self.held); free(self.by_reducer)
        cdef int k
        for k in range(NCLASS):
            free(self.ring[k])

    # ---------------------------------------------------------------- growth
    cdef int _grow_cells(self, int64_t want) except -1:
        cdef int64_t cap = self.cell_cap if self.cell_cap else 64
        cdef int64_t i
        while cap < want:
            cap *= 2
        if cap == self.cell_cap:
            return 0
        if cap > INT32_MAX:
            raise MemoryError(f"the sequencer holds at most {INT32_MAX} cells")
        cdef int32_t* m = <int32_t*>realloc(self.head, cap * sizeof(int32_t))
        if m == NULL:
            PyErr_NoMemory()
        self.head = m
        m = <int32_t*>realloc(self.tail, cap * sizeof(int32_t))
        if m == NULL:
            PyErr_NoMemory()
        self.tail = m
        cdef uint32_t* u = <uint32_t*>realloc(self.last, cap * sizeof(uint32_t))
        if u == NULL:
            PyErr_NoMemory()
        self.last = u
        cdef int64_t* h = <int64_t*>realloc(self.since, cap * sizeof(int64_t))
        if h == NULL:
            PyErr_NoMemory()
        self.since = h
        cdef char* r = <char*>realloc(self.in_ring, cap * sizeof(char))
        if r == NULL:
            PyErr_NoMemory()
        self.in_ring = r
        r = <char*>realloc(self.cls, cap * sizeof(char))
        if r == NULL:
            PyErr_NoMemory()
        self.cls = r
        self.cell_cap = cap  # (entries are set up by _reserve as cells come into use)
        return 0

    cdef int _grow_nodes(self, int64_t want) except -1:
        cdef int64_t cap = self.node_cap if self.node_cap else 256
        while cap < want:
            cap *= 2
        if cap > INT32_MAX:
            raise MemoryError(f"the sequencer holds at most {INT32_MAX} queued inputs")
        if cap == self.node_cap:
            return 0
        cdef Node* n = <Node*>realloc(self.nodes, cap * sizeof(Node))
        if n == NULL:
            PyErr_NoMemory()
        self.nodes = n
        self.node_cap = cap
        return 0

    cdef int _grow_ring(self, int64_t want) except -1:
        cdef int64_t cap = self.ring_cap if self.ring_cap else 64
        cdef int64_t i
        cdef int k
        cdef uint32_t* r
        while cap < want:
            cap *= 2
        if cap == self.ring_cap:
            return 0
        for k in range(NCLASS):
            r = <uint32_t*>malloc(cap * sizeof(uint32_t))
            if r == NULL:
                PyErr_NoMemory()
            for i in range(self.ring_count[k]):
                r[i] = self.ring[k][(self.ring_head[k] + i) % self.ring_cap]
            free(self.ring[k])
            self.ring[k] = r
            self.ring_head[k] = 0
        self.ring_cap = cap
        return 0

    cdef int _grow_pending(self, int64_t want) except -1:
        return _grow_fifo(&self.pend, &self.pend_cap, &self.pend_head, self.pend_len, want, 64)

    cdef int _grow_held(self, int64_t want) except -1:
        return _grow_fifo(&self.held, &self.held_cap, &self.held_head, self.held_len, want, 16)

    cdef int _reserve(self, int64_t cell) except -1:
        if cell < 0:
            raise ValueError(f"cell id must be >= 0, got {cell}")
        cdef int64_t i
        if cell >= self.cell_cap:
            self._grow_cells(cell + 1)
        if cell >= self.ncells:
            for i in range(self.ncells, cell + 1):
                self.head[i] = -1
                self.tail[i] = -1
                self.last[i] = 0
                self.since[i] = 0
                self.in_ring[i] = 0
                self.cls[i] = 1
            self.ncells = cell + 1
        return self._ensure_room(1)

    cdef int _ensure_room(self, int64_t extra) except -1:
        # Room for every pending input plus ``extra`` more to enter mailboxes
        # and the ring, so the nogil sections below never allocate.
        cdef int64_t waiting = self.pend_len + self.held_len
        if self.node_used + waiting + extra > self.node_cap:
            self._grow_nodes(self.node_used + waiting + extra)
        if self.ring_len + waiting + extra > self.ring_cap:
            self._grow_ring(self.ring_len + waiting + extra)
        return 0

    # ------------------------------------------------------------ nogil core
    cdef void _push_mailbox(self, int64_t cell, int64_t input) noexcept nogil:
        cdef int32_t idx
        if self.free_node >= 0:
            idx = self.free_node
            self.free_node = self.nodes[idx].next
        else:
            idx = self.node_used
            self.node_used += 1
        self.nodes[idx].input = input
        self.nodes[idx].next = -1
        if self.tail[cell] >= 0:
            self.nodes[self.tail[cell]].next = idx
        else:
            self.head[cell] = idx
        self.tail[cell] = idx
        self.queued += 1
        if self.queued > self.queued_max:
            self.queued_max = self.queued
        if not self.in_ring[cell]:
            self.in_ring[cell] = 1
            self.since[cell] = self.next_ticket
            self._ring_push(cell)

    cdef void _ring_push(self, int64_t cell) noexcept nogil:
        cdef int k = self.cls[cell]
        self.ring[k][(self.ring_head[k] + self.ring_count[k]) % self.ring_cap] = cell
        self.ring_count[k] += 1
        self.ring_len += 1

    cdef int _choose(self) noexcept nogil:
        # The ring to serve next: the front that has waited `aging` tickets or more (the
        # longest-waiting such front first), else the front of the most urgent class.
        cdef int k, best = -1
        cdef int64_t f, best_since = 0
        for k in range(NCLASS):
            if self.ring_count[k]:
                f = self.ring[k][self.ring_head[k]]
                if self.next_ticket - self.since[f] >= self.aging and (best < 0 or self.since[f] < best_since):
                    best = k
                    best_since = self.since[f]
        if best >= 0:
            return best
        for k in range(NCLASS):
            if self.ring_count[k]:
                return k
        return -1

    cdef void _count(self, int k, int64_t c, int64_t wait) noexcept nogil:
        # A ticket's counts: per priority class, and per reducer where the cells are known
        # (a reducer the counts have no room for yet grows them; if that fails it goes uncounted).
        cdef int64_t r, n
        cdef int64_t* grown
        self.class_tickets[k] += 1
        self.class_wait_sum[k] += wait
        if wait > self.class_wait_max[k]:
            self.class_wait_max[k] = wait
        if self.cells is None or c >= self.cells.n:
            return
        r = self.cells.spec_name[self.cells.spec_ix[c]]
        if r >= self.reducer_cap:
            n = r + 16
            grown = <int64_t*>realloc(self.by_reducer, n * 3 * sizeof(int64_t))
            if grown == NULL:
                return
            memset(grown + self.reducer_cap * 3, 0, (n - self.reducer_cap) * 3 * sizeof(int64_t))
            self.by_reducer = grown
            self.reducer_cap = n
        self.by_reducer[r * 3] += 1
        self.by_reducer[r * 3 + 1] += wait
        if wait > self.by_reducer[r * 3 + 2]:
            self.by_reducer[r * 3 + 2] = wait

    cdef void _push_pending(self, Pending* p) noexcept nogil:
        if not self.in_ring[p.cell]:
            self.cls[p.cell] = <char>p.cls  # a cell keeps its class while it is ready
        self._push_mailbox(p.cell, p.input)

    cdef void _release(self, int64_t upto, bint everything) noexcept nogil:
        # Into the mailboxes, in (visible_at, order) order: every emitted and held input visible at
        # ticket ``upto``; with ``everything``, every emitted input too (held ones stay held: they
        # were admitted after the tickets before their visible_at were assigned).
        cdef Pending* p
        cdef Pending* h
        while True:
            p = NULL
            h = NULL
            if self.pend_len > 0:
                p = &self.pend[self.pend_head]
                if not everything and p.visible_at > upto:
                    p = NULL
            if self.held_len > 0:
                h = &self.held[self.held_head]
                if h.visible_at > upto:
                    h = NULL
            if p != NULL and h != NULL:
                if h.visible_at < p.visible_at or (h.visible_at == p.visible_at and h.order < p.order):
                    p = NULL
                else:
                    h = NULL
            if p != NULL:
                self._push_pending(p)
                self.pend_head = (self.pend_head + 1) % self.pend_cap
                self.pend_len -= 1
            elif h != NULL:
                self._push_pending(h)
                self.held_head = (self.held_head + 1) % self.held_cap
                self.held_len -= 1
            else:
                return

    cdef bint _next(self, int64_t* ticket, int64_t* cell, int64_t* input) noexcept nogil:
        cdef int64_t c, idx, wait
        cdef int k
        self._release(self.next_ticket, False)
        if self.ring_len == 0:
            if self.pend_len == 0 and self.held_len == 0:
                return False
            self._release(self.next_ticket, True)
            if self.ring_len == 0:
                # Only inputs held for later tickets: a journal no world writes (an input is held only
                # while other tickets are assigned). Deterministic all the same: release them now.
                self._release(INT64_MAX, False)
        k = self._choose()
        c = self.ring[k][self.ring_head[k]]
        self.ring_head[k] = (self.ring_head[k] + 1) % self.ring_cap
        self.ring_count[k] -= 1
        self.ring_len -= 1
        idx = self.head[c]
        input[0] = self.nodes[idx].input
        # fairness metrics: how many tickets went to other cells while this one was ready
        wait = self.next_ticket - self.since[c]
        self.wait_sum += wait
        if wait > self.wait_max:
            self.wait_max = wait
            self.wait_max_cell = c
            self.wait_max_ticket = self.next_ticket
        self._count(k, c, wait)
        self.head[c] = self.nodes[idx].next
        if self.head[c] < 0:
            self.tail[c] = -1
        self.nodes[idx].next = self.free_node
        self.free_node = idx
        self.queued -= 1
        if self.head[c] >= 0:
            self._ring_push(c)
            self.since[c] = self.next_ticket + 1
        else:
            self.in_ring[c] = 0
        cell[0] = c
        ticket[0] = self.next_ticket
        self.last[c] = <uint32_t>self.next_ticket
        self.next_ticket += 1
        return True

    # ---------------------------------------------------------------- API
    def deliver(self, int64_t cell, int64_t input, int priority=1):
        """Queue ``input`` for ``cell`` (of priority class ``priority``), visible to the next ticket."""
        self.c_deliver(cell, input, priority)

    cdef int c_deliver(self, int64_t cell, int64_t input, int priority) except -1:
        if priority < 0 or priority >= NCLASS:
            raise ValueError(f"priority class must be 0..{NCLASS - 1}, got {priority}")
        self._reserve(cell)
        if not self.in_ring[cell]:
            self.cls[cell] = <char>priority  # a cell keeps its class while it is ready
        # Pending inputs must stay ahead of later external ones when their
        # visibility point has come; release them first so order is kept.
        with nogil:
            self._release(self.next_ticket, False)
            self._push_mailbox(cell, input)
        return 0

    def deliver_at(self, int64_t visible_at, int64_t cell, int64_t input, int priority=1):
        """Queue admitted ``input`` for ``cell``, held until ticket ``visible_at`` is assigned.

        ``visible_at`` is the next ticket when nothing is in flight. Inputs
        becoming visible at the same ticket enter their mailboxes in the
        order they were delivered (emitted ones included). Calls must come
        with non-decreasing ``visible_at``.
        """
        self.c_deliver_at(visible_at, cell, input, priority)

    cdef int c_deliver_at(self, int64_t visible_at, int64_t cell, int64_t input, int priority) except -1:
        if priority < 0 or priority >= NCLASS:
            raise ValueError(f"priority class must be 0..{NCLASS - 1}, got {priority}")
        if visible_at < 1:
            raise ValueError(f"visible_at must be a ticket >= 1, got {visible_at}")
        if self.held_len > 0:
            if visible_at < self.held[(self.held_head + self.held_len - 1) % self.held_cap].visible_at:
                raise ValueError(f"admitted inputs must come with non-decreasing visible_at ({visible_at})")
        return self._enqueue(&self.held, &self.held_cap, &self.held_head, &self.held_len, 16,
                             visible_at, cell, input, priority)

    def deliver_emitted(self, int64_t emitter, int64_t cell, int64_t input, int priority=1):
        """Queue ``input``, emitted by the step with ticket ``emitter``.

        It becomes visible at ticket ``emitter + window`` (or as soon as
        nothing else is ready). Calls must come in commit order.
        """
        self.c_deliver_emitted(emitter, cell, input, priority)

    cdef int c_deliver_emitted(self, int64_t emitter, int64_t cell, int64_t input, int priority) except -1:
        if emitter >= self.next_ticket:
            raise ValueError(f"emitter ticket {emitter} has not been assigned yet")
        if priority < 0 or priority >= NCLASS:
            raise ValueError(f"priority class must be 0..{NCLASS - 1}, got {priority}")
        cdef int64_t visible_at = emitter + self.window
        if self.pend_len > 0:
            if visible_at < self.pend[(self.pend_head + self.pend_len - 1) % self.pend_cap].visible_at:
                raise ValueError(f"emitted inputs must be delivered in commit order (ticket {emitter})")
        return self._enqueue(&self.pend, &self.pend_cap, &self.pend_head, &self.pend_len, 64,
                             visible_at, cell, input, priority)

    cdef int _enqueue(self, Pending** buf, int64_t* cap, int64_t* head, int64_t* length, int64_t first,
                      int64_t visible_at, int64_t cell, int64_t input, int priority) except -1:
        """Append an input to the held (admitted) or pending (emitted) FIFO, stamped with its delivery order."""
        self._reserve(cell)
        if length[0] + 1 > cap[0]:
            _grow_fifo(buf, cap, head, length[0], length[0] + 1, first)
        self._ensure_room(1)
        cdef Pending* p = &buf[0][(head[0] + length[0]) % cap[0]]
        p.visible_at = visible_at
        p.cell = cell
        p.input = input
        p.cls = priority
        p.order = self.order_next
        self.order_next += 1
        length[0] += 1
        return 0

    def next(self):
        """Assign the next ticket: ``(ticket, cell, input)`` or ``None`` when idle."""
        cdef int64_t t = 0, c = 0, i = 0
        cdef bint ok
        self._ensure_room(1)
        with nogil:
            ok = self._next(&t, &c, &i)
        if not ok:
            return None
        return (t, c, i)

    cdef int64_t _poll(self, int64_t committed, int64_t* ticket, int64_t* cell, int64_t* input) noexcept nogil:
        # 1: a ticket was assigned; 0: idle (nothing to schedule even once all
        # commits are in); -1: wait for more commits (the decision depends on them).
        cdef int64_t n = self.next_ticket, front
        cdef int k
        if committed < n - self.window:
            return -1  # inputs emitted by ticket n - window may not be delivered yet
        self._release(n, False)
        if self.ring_len == 0:
            if committed < n - 1:
                return -1  # a step in flight may still emit; its inputs decide what comes next
            if self.pend_len == 0 and self.held_len == 0:
                return 0
        elif committed < n - 1:
            k = self._choose()
            front = self.ring[k][self.ring_head[k]]
            if <uint32_t>(<uint32_t>(n - 1) - self.last[front]) < <uint32_t>(n - 1 - committed):
                # The cell's previous step has not committed: its state is not known yet. (Only tickets
                # in flight, under ``window`` of them, matter: ``last`` keeps a ticket's low 32 bits; a
                # cell idle for a multiple of 2**32 tickets may wait until everything has committed,
                # which changes no decision.)
                return -1
        return 1 if self._next(ticket, cell, input) else 0

    def poll(self, int64_t committed):
        """Assign the next ticket if it is already determined.

        ``committed``: every ticket up to it has committed (and delivered what
        it emitted). Returns ``(ticket, cell, input)``; ``None`` when there is
        nothing to schedule; or ``False`` when the next ticket depends on
        commits still in flight. Which ticket goes to which cell is the same
        whatever ``committed`` is: polling early only says "wait".
        """
        cdef int64_t t = 0, c = 0, i = 0
        cdef int r = self.c_poll(committed, &t, &c, &i)
        if r == 1:
            return (t, c, i)
        return None if r == 0 else False

    cdef int c_poll(self, int64_t committed, int64_t* ticket, int64_t* cell, int64_t* input) except -2:
        """``poll`` in C: 1 and the ticket in the pointers; 0: nothing to schedule; -1: wait for commits."""
        self._ensure_room(1)
        with nogil:
            return <int>self._poll(committed, ticket, cell, input)

    cdef bint c_has_work(self) noexcept nogil:
        return self.ring_len > 0 or self.pend_len > 0 or self.held_len > 0

    def class_counts(self):
        """Per priority class (0 first): ``[tickets, wait ticks summed, longest wait, cells ready now]``; the
        first three count since this sequencer began."""
        cdef int k
        return [[self.class_tickets[k], self.class_wait_sum[k], self.class_wait_max[k], self.ring_count[k]]
                for k in range(NCLASS)]

    def reducer_counts(self):
        """Per reducer name: ``[tickets, wait ticks summed, longest wait]`` (reducers given a ticket only)."""
        cdef int64_t r
        out = {}
        if self.cells is None:
            return out
        for name, r in self.cells.name_index.items():
            if r < self.reducer_cap and self.by_reducer[r * 3]:
                out[name] = [self.by_reducer[r * 3], self.by_reducer[r * 3 + 1], self.by_reducer[r * 3 + 2]]
        return out

    def has_work(self):
        """True when a ticket can be assigned (ready, pending or held inputs exist)."""
        return self.ring_len > 0 or self.pend_len > 0 or self.held_len > 0

    @property
    def ready(self):
        """Number of cells in the ready ring."""
        return self.ring_len

    @property
    def pending(self):
        """Number of inputs not yet visible (emitted, or admitted and held until their ticket)."""
        return self.pend_len + self.held_len

    @property
    def held(self):
        """Number of admitted inputs held until their ticket (``deliver_at``)."""
        return self.held_len

    def mailbox_depth(self, int64_t cell):
        cdef int64_t n = 0, idx
        if cell < 0 or cell >= self.ncells:
            return 0
        idx = self.head[cell]
        while idx >= 0:
            n += 1
            idx = self.nodes[idx].next
        return n

    # ------------------------------------------------------- persistence
    def export_state(self):
        """The whole scheduling state as plain lists (for snapshots).

        ``rings`` holds, per priority class, ``[cell, since]`` in ring order;
        ``mailboxes`` the inputs of those cells in the same order;
        ``pending`` the emitted inputs not yet visible, ``[visible_at, cell,
        input, class]`` in delivery order; ``admitted`` the admitted inputs
        held until their ticket, ``[visible_at, cell, input, class, before]``
        in delivery order, ``before`` being how many of ``pending`` were
        delivered before it.
        """
        cdef int64_t i, c, idx
        cdef int k
        rings = []
        mail = []
        for k in range(NCLASS):
            ring = []
            for i in range(self.ring_count[k]):
                c = self.ring[k][(self.ring_head[k] + i) % self.ring_cap]
                ring.append([c, self.since[c]])
                inputs = []
                idx = self.head[c]
                while idx >= 0:
                    inputs.append(self.nodes[idx].input)
                    idx = self.nodes[idx].next
                mail.append(inputs)
            rings.append(ring)
        pend = []
        for i in range(self.pend_len):
            p = self.pend[(self.pend_head + i) % self.pend_cap]
            pend.append([p.visible_at, p.cell, p.input, p.cls])
        held = []
        cdef int64_t before = 0
        for i in range(self.held_len):
            p = self.held[(self.held_head + i) % self.held_cap]
            while before < self.pend_len and self.pend[(self.pend_head + before) % self.pend_cap].order < p.order:
                before += 1
            held.append([p.visible_at, p.cell, p.input, p.cls, before])
        return {"next_ticket": self.next_ticket, "window": self.window, "aging": self.aging,
                "rings": rings, "mailboxes": mail, "pending": pend, "admitted": held}

    @classmethod
    def from_state(cls, state):
        """Rebuild a sequencer from ``export_state()`` output."""
        cdef Sequencer s = cls(window=state["window"], first_ticket=state["next_ticket"], aging=state["aging"])
        rings = state["rings"]
        mail = state["mailboxes"]
        if len(rings) != NCLASS:
            raise ValueError(f"sequencer state: expected {NCLASS} rings, got {len(rings)}")
        entries = [(k, c, since) for k, ring in enumerate(rings) for c, since in ring]
        if len(entries) != len(mail):
            raise ValueError("sequencer state: rings and mailboxes differ in length")
        for (k, c, since), inputs in zip(entries, mail):
            if not inputs:
                raise ValueError(f"sequencer state: cell {c} is ready with an empty mailbox")
            if c < s.ncells and s.in_ring[c]:
                raise ValueError(f"sequencer state: cell {c} appears twice in the rings")
            s._reserve(c)
            s.cls[c] = <char>k
            for i in inputs:
                s._reserve(c)
                s._push_mailbox(c, i)
            s.since[c] = since
        pending = state["pending"]
        held = state.get("admitted", ())
        # delivery order: the admitted entries among the emitted ones, each after ``before`` of them
        order = []
        last_before = 0
        for entry in held:
            visible_at, c, i, k, before = entry
            if not last_before <= before <= len(pending):
                raise ValueError("sequencer state: admitted inputs out of order")
            order.extend((False, e) for e in pending[last_before:before])
            order.append((True, entry[:4]))
            last_before = before
        order.extend((False, e) for e in pending[last_before:])
        last = None
        last_held = None
        for is_held, (visible_at, c, i, k) in order:
            if k < 0 or k >= NCLASS:
                raise ValueError(f"sequencer state: bad priority class {k}")
            if visible_at < 1:
                raise ValueError(f"sequencer state: bad visible_at {visible_at}")
            if is_held:
                if last_held is not None and visible_at < last_held:
                    raise ValueError("sequencer state: admitted inputs out of order")
                last_held = visible_at
                s._enqueue(&s.held, &s.held_cap, &s.held_head, &s.held_len, 16, visible_at, c, i, k)
            else:
                if last is not None and visible_at < last:
                    raise ValueError("sequencer state: pending inputs out of order")
                last = visible_at
                s._enqueue(&s.pend, &s.pend_cap, &s.pend_head, &s.pend_len, 64, visible_at, c, i, k)
        return s
