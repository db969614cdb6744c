# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""The coordinator loop of the threads executor: sequencing and ticket-order commits.

It runs on the thread that called ``World.run``. Each turn it commits every
result that is next in ticket order, runs the world's hooks, assigns the
tickets the sequencer has already determined (up to the in-flight depth,
which adapts to stale reads) and then, when no worker has taken the next
ticket yet, computes that one itself (short steps then cost no hand-over);
otherwise it waits — in :class:`Pipeline`, without the GIL — for the next
result. The commit itself and the hooks are Python
(they touch Python objects); the loop's bookkeeping is typed C.
"""

from libc.stdint cimport int64_t


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


cdef inline int _bucket(int64_t us) noexcept nogil:
    """The power-of-two bucket of ``us`` (its bit length, at most 39)."""
    cdef int n = 0
    while us > 0 and n < 39:
        us >>= 1
        n += 1
    return n


def coordinate(executor, kernel, object max_steps, hooks):
    """Run the pipeline until nothing is left (or ``max_steps`` were assigned); return the steps committed."""
    pipe = executor._pipe
    poll = kernel.sequencer.poll
    cdef int64_t committed = kernel.last_event_id  # nothing is in flight between runs
    cdef int64_t assigned = committed
    cdef int64_t start = committed
    cdef int64_t steps = 0
    cdef int64_t limit = -1 if max_steps is None else max_steps
    cdef int64_t lookahead = executor.lookahead
    cdef int64_t depth = lookahead
    cdef int64_t floor = min(lookahead, executor.workers)
    cdef int64_t clean = 0
    cdef int64_t reexecutions = kernel.reexecutions
    cdef int64_t max_inflight = executor.max_inflight
    cdef bint held = False  # a barrier ticket was assigned or inputs wait: no more until all committed
    cdef bint idle
    commit = executor.committer.commit
    compute = kernel.compute
    cdef bint python_here = executor.python_on_coordinator
    cdef bint may_help = executor.offload == "auto"  # "all": every step is a worker's
    cdef bint native_direct = executor.delay is None  # (a test's worker_delay needs the Python path)
    prepare_native, finish_native = kernel.prepare_native, kernel.finish_native
    ticket_of = kernel.ticket
    counts = executor.latency.counts
    cdef int64_t us
    after, barrier, quiet, wants_quiet = hooks.after_commit, hooks.barrier, hooks.at_quiet, hooks.wants_quiet
    from time import perf_counter as clock
    assigned_at = {}
    mine = {}  # tickets the coordinator computes itself, by event_id
    waited = None  # the result the loop last waited for
    while True:
        # Commit every result that is next in ticket order.
        while committed < assigned:
            if waited is not None:
                result = waited
                waited = None
            elif mine and (committed + 1) in mine:
                # computed right before its commit, against the committed state, as inline does
                t0 = clock()
                result = compute(mine.pop(committed + 1))
                executor.coordinator_busy += clock() - t0
                executor.helped += 1
            else:
                result = pipe.result(committed + 1, False)
                if result is None:
                    break
            if type(result) is tuple:  # a native job's outcome
                result = finish_native(result[0], result[1])
            commit(result)
            committed += 1
            steps += 1
            us = <int64_t>((clock() - assigned_at.pop(committed)) * 1e6)  # LatencyHistogram.add, inline
            counts[_bucket(us)] += 1
            if kernel.reexecutions != reexecutions:
                reexecutions = kernel.reexecutions
                depth = _max(floor, depth // 2)
                clean = 0
            elif depth < lookahead:
                clean += 1
                if clean >= depth:
                    depth += 1
                    clean = 0
            if after is not None:
                after(committed)
        if executor._error is not None:
            raise executor._error
        if committed == assigned:
            held = False
            if quiet is not None:
                quiet()
        if wants_quiet is not None and wants_quiet():
            held = True  # inputs are waiting: let what is in flight commit first
        # Assign what is already determined, up to the in-flight depth and max_steps.
        idle = False
        while not held and assigned - committed < depth and (limit < 0 or assigned - start < limit):
            t = poll(committed)
            if t is None:
                idle = True
                break
            if t is False:
                break
            assigned = t[0]
            assigned_at[assigned] = clock()
            tk = ticket_of(*t)
            if tk.spec.native is not None:
                if native_direct and not tk.spec.upcasts:  # (upcasters run in Python: the worker's compute)
                    # the worker runs the C call without ever taking the GIL; the outputs are
                    # checked here, before the commit
                    call = prepare_native(tk)
                    pipe.put_native(assigned, (tk, call), call.job_address)
                else:
                    pipe.put(assigned, tk)
            elif python_here:
                mine[assigned] = tk  # a Python step under the GIL: computed here when it is next to commit
            else:
                pipe.put(assigned, tk)
            if barrier is not None and barrier(assigned):
                held = True
        if assigned - committed > max_inflight:
            max_inflight = assigned - committed
            executor.max_inflight = max_inflight
        if committed == assigned:
            if held:
                continue  # the quiet point is here: admit, then go on
            if idle or (limit >= 0 and assigned - start >= limit):
                return steps
            continue
        if mine and (committed + 1) in mine:
            continue  # the next ticket is the coordinator's own: compute and commit it
        # Help rather than wait: when no worker has taken the next ticket yet, compute it here
        # (against the committed state, as the inline executor would). Else wait without the GIL.
        t = pipe.steal(committed + 1) if may_help else None
        if t is not None:
            mine[committed + 1] = t  # computed and committed by the loop above, like the others
            continue
        waited = pipe.result(committed + 1, True)
        if waited is None:
            raise executor._error or RuntimeError("worker pipeline failed")
