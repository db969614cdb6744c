# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: freethreading_compatible=True
"""The commit loop of the threads executor: sequencing and ticket-order commits.

It runs on the thread that called ``World.run``. Each turn it commits every
result that is next in ticket order, runs the world's hooks, assigns the
tickets the sequencer has already determined (up to the in-flight depth,
which adapts to stale reads) and then, when no worker has taken the next
ticket yet, computes that one itself (short steps then cost no hand-over);
otherwise it waits — in :class:`Pipeline`, without the GIL — for the next
result. The commit itself and the hooks are Python (they touch Python
objects); the sequencer, the pipeline and the native job are called in C, and
the loop's bookkeeping (tickets in flight, depth, latency histogram) is typed C.
"""

cimport cython
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from cpython.exc cimport PyErr_NoMemory

from aos._core.latency cimport bucket
from aos._core.native cimport NativeCall
from aos._core.pipeline cimport Pipeline
from aos._core.posix cimport (
    now_ns,
    pthread_cond_broadcast,
    pthread_cond_destroy,
    pthread_cond_init,
    pthread_cond_t,
    pthread_cond_wait,
    pthread_mutex_destroy,
    pthread_mutex_init,
    pthread_mutex_lock,
    pthread_mutex_t,
    pthread_mutex_unlock,
)
from aos._core.cellstore cimport CellStore
from aos._core.inline_loop cimport InlineLoop
from aos._core.sequencer cimport Sequencer

__all__ = ["CommitLoop", "BUCKETS"]

BUCKETS = NBUCKETS


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


@cython.final
cdef class CommitLoop:
    """The threads executor's loop and its counters (read by the executor and ``World.metrics``).

    ``lookahead``: tickets in flight at most (the pipeline holds one more);
    ``workers``: worker threads serving :attr:`pipe`; ``python_here``: Python
    steps are computed on the calling thread, right before their commit;
    ``may_help``: the loop computes the next ticket itself when no worker has
    taken it yet; ``native_direct``: native steps run in the workers without
    the GIL (else through the Python compute).
    """

    def __cinit__(self, int64_t lookahead, int64_t workers, bint python_here=False, bint may_help=True,
                  bint native_direct=True):
        cdef int i
        if lookahead < 1 or workers < 1:
            raise ValueError(f"lookahead and workers must be >= 1, got {lookahead} and {workers}")
        self.lookahead = lookahead
        self.workers = workers
        self.python_here = python_here
        self.may_help = may_help
        self.native_direct = native_direct
        self.pipe = Pipeline(lookahead + 1)
        self.assigned_at = <int64_t*>calloc(lookahead + 1, sizeof(int64_t))
        if self.assigned_at == NULL:
            PyErr_NoMemory()
        for i in range(NBUCKETS):
            self.counts[i] = 0
        pthread_mutex_init(&self.gate_mutex, NULL)
        pthread_cond_init(&self.gate_left, NULL)

    def __dealloc__(self):
        free(self.assigned_at)
        pthread_cond_destroy(&self.gate_left)
        pthread_mutex_destroy(&self.gate_mutex)

    cdef void _open_gate(self) noexcept nogil:
        pthread_mutex_lock(&self.gate_mutex)
        self.gate_open = True
        pthread_mutex_unlock(&self.gate_mutex)

    cdef void _close_gate(self) noexcept nogil:
        pthread_mutex_lock(&self.gate_mutex)
        self.gate_open = False
        while self.visitor:
            pthread_cond_wait(&self.gate_left, &self.gate_mutex)
        pthread_mutex_unlock(&self.gate_mutex)

    def enter(self):
        """From another thread: whether it may now admit inputs itself, until :meth:`leave`.

        True only while the loop waits for a result — between two commits,
        touching neither the kernel nor the journal — and no other thread
        is in; the loop then goes on only once this one left. Never blocks.
        """
        cdef bint ok
        with nogil:
            pthread_mutex_lock(&self.gate_mutex)
            ok = self.gate_open and not self.visitor
            if ok:
                self.visitor = True
            pthread_mutex_unlock(&self.gate_mutex)
        return ok

    def leave(self):
        """End what :meth:`enter` allowed."""
        with nogil:
            pthread_mutex_lock(&self.gate_mutex)
            self.visitor = False
            pthread_cond_broadcast(&self.gate_left)
            pthread_mutex_unlock(&self.gate_mutex)

    @property
    def coordinator_busy(self):
        """Seconds the loop spent computing steps itself."""
        return self.busy_ns / 1e9

    def arrive(self):
        """From any thread: inputs wait to be admitted (``hooks.intake``); a waiting loop turns round."""
        self.pipe.c_wake()

    def latency_counts(self):
        """The commit latency histogram: counts per power-of-two µs bucket (``BUCKETS`` of them)."""
        return [self.counts[i] for i in range(NBUCKETS)]

    def run(self, kernel, committer, object max_steps, hooks):
        """Run the pipeline until nothing is left (or ``max_steps`` were assigned); return the steps committed."""
        cdef Pipeline pipe = self.pipe
        cdef Sequencer seq = kernel.sequencer
        cdef int64_t committed = seq.next_ticket - 1  # nothing is in flight between runs
        cdef int64_t assigned = committed
        cdef int64_t start = committed
        cdef int64_t steps = 0
        cdef int64_t limit = -1 if max_steps is None else max_steps
        cdef int64_t lookahead = self.lookahead
        cdef int64_t cap = lookahead + 1
        cdef int64_t depth = lookahead
        cdef int64_t floor = min(lookahead, self.workers)
        cdef int64_t clean = 0
        cdef int64_t reexecutions = kernel.reexecutions
        cdef int64_t t0
        cdef int64_t ticket = 0, cid = 0, inp = 0
        cdef int polled
        cdef bint held = False  # a barrier ticket was assigned or inputs wait: no more until all committed
        cdef bint idle
        cdef NativeCall call
        commit = committer.commit
        compute = kernel.compute
        prepare_native = kernel.prepare_native
        ticket_of = kernel.ticket
        after, barrier, quiet, wants_quiet = hooks.after_commit, hooks.barrier, hooks.at_quiet, hooks.wants_quiet
        intake = hooks.intake
        cdef InlineLoop own = self.inline  # its C step, called without a Python call
        if own is None:
            raise RuntimeError("the commit loop has no inline loop to compute its own steps with")
        cdef CellStore cells = kernel.cells
        cdef int64_t every = hooks.every
        cdef int64_t quiet_at = committed - QUIET_EVERY  # the first quiet point carries out what waits
        cdef int64_t asked_at = committed - QUIET_EVERY
        mine = {}  # tickets the loop computes itself, by event_id
        waited = None  # the result the loop last waited for
        while True:
            # Commit every result that is next in ticket order.
            while committed < assigned:
                if waited is not None:
                    result = waited
                    waited = None
                elif mine and (committed + 1) in mine:
                    # computed right before its commit, against the committed state, as inline does:
                    # through the inline executor's C step (the reference path where it hands over)
                    tk = mine.pop(committed + 1)
                    t0 = now_ns()
                    if type(tk) is tuple:
                        own.c_commit_ticket((<tuple>tk)[0], (<tuple>tk)[1], (<tuple>tk)[2])
                    else:  # a ticket taken back from the pipeline
                        own.c_commit_ticket(tk.event_id, tk.cid, tk.input)
                    self.busy_ns += now_ns() - t0
                    self.helped += 1
                    result = None
                else:
                    result = pipe.c_result(committed + 1, False)
                    if result is None:
                        break
                if type(result) is tuple:  # a native job's outcome: committed in C in the common case
                    tk = (<tuple>result)[0]
                    own.c_commit_native(tk.event_id, tk.cid, tk.input, tk, <NativeCall>(<tuple>result)[1])
                    result = None
                if result is not None:  # (None: committed by the inline loop)
                    commit(result)
                committed += 1
                steps += 1
                self.counts[bucket((now_ns() - self.assigned_at[committed % cap]) // 1000)] += 1
                if kernel.reexecutions != reexecutions:
                    reexecutions = kernel.reexecutions
                    depth = _max(floor, depth // 2)
                    clean = 0
                elif depth < lookahead:
                    clean += 1
                    if clean >= depth:
                        depth += 1
                        clean = 0
                if after is not None and (result is not None or (every > 0 and committed % every == 0)
                                          or kernel.new_effects):
                    after(committed)  # (Hooks: only where it has work)
            if self.error is not None:
                raise self.error
            if pipe.c_take_wake() and intake is not None:
                # Inputs other threads submitted: admitted here, between commits, with tickets in
                # flight; each is held until the next ticket to assign (docs/scheduling.md).
                intake()
            if committed == assigned:
                # a quiet point: calls handed over are carried out at one every QUIET_EVERY commits, or
                # at once when they asked for it (wants_quiet) or a barrier holds assignment
                if quiet is not None and (held or committed - quiet_at >= QUIET_EVERY):
                    quiet_at = committed
                    quiet()
                held = False
            if wants_quiet is not None and committed - asked_at >= QUIET_EVERY:
                asked_at = committed
                if wants_quiet():
                    held = True  # calls are waiting: let what is in flight commit first
                    quiet_at = committed - QUIET_EVERY  # and carry them out at the quiet point
            # Assign what is already determined, up to the in-flight depth and max_steps.
            idle = False
            while not held and assigned - committed < depth and (limit < 0 or assigned - start < limit):
                polled = seq.c_poll(committed, &ticket, &cid, &inp)
                if polled == 0:
                    idle = True
                    break
                if polled < 0:
                    break
                assigned = ticket
                self.assigned_at[assigned % cap] = now_ns()
                spec = cells.c_spec(cid)
                if spec.native is None and self.python_here:
                    mine[assigned] = (ticket, cid, inp)  # a Python step under the GIL: computed here when next
                    if barrier is not None and every > 0 and assigned % every == 0 and barrier(assigned):
                        held = True
                    continue
                tk = ticket_of(ticket, cid, inp)
                if spec.native is not None:
                    if self.native_direct and not spec.upcasts:  # (upcasters run in Python: the worker's compute)
                        # the worker runs the C call without ever taking the GIL; the outputs are
                        # checked here, before the commit
                        call = prepare_native(tk)
                        pipe.c_put_native(assigned, (tk, call), &call.job)
                    else:
                        pipe.c_put(assigned, tk)
                elif self.python_here:
                    mine[assigned] = tk  # a Python step under the GIL: computed here when it is next to commit
                else:
                    pipe.c_put(assigned, tk)
                if barrier is not None and every > 0 and assigned % every == 0 and barrier(assigned):
                    held = True  # (Hooks: a barrier comes at a multiple of ``every``)
            if assigned - committed > self.max_inflight:
                self.max_inflight = assigned - committed
            if committed == assigned:
                if held:
                    continue  # the quiet point is here: admit, then go on
                if idle or (limit >= 0 and assigned - start >= limit):
                    return steps
                continue
            if mine and (committed + 1) in mine:
                continue  # the next ticket is the loop's own: compute and commit it
            # Help rather than wait: when no worker has taken the next ticket yet, compute it here
            # (against the committed state, as the inline executor would). Else wait without the GIL.
            tk = pipe.c_steal(committed + 1) if self.may_help else None
            if tk is not None:
                mine[committed + 1] = tk  # computed and committed by the loop above, like the others
                continue
            # An arrival ends the wait only when the sequencer has no ready input: otherwise admitting
            # it now would change nothing, and the next turn (after this commit) admits it.
            # Meanwhile another thread may admit inputs (the gate).
            with nogil:
                self._open_gate()
            try:
                waited = pipe.c_result(committed + 1, True, seq.ring_len == 0 and not held)
            finally:
                with nogil:
                    self._close_gate()
            if waited is None and pipe.failed:
                raise self.error or RuntimeError("worker pipeline failed")
            # (None otherwise: woken by arrive(); the next turn admits what arrived)
