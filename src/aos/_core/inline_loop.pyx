# cython: language_level=3, boundscheck=False, wraparound=False
# cython: freethreading_compatible=True
"""The inline executor's loop: ticket, compute, commit, in one C loop.

The common step of a Python reducer — take the ticket, decode the state and
the event, call the reducer, encode and hash the new state, write
``StepScheduled`` and ``StepCommitted``, apply the cell write, consume the
input — runs here without entering Python code except for the reducer call
itself, and delivering what it emitted. Everything else goes the reference
path (:func:`aos.step.compute` and :class:`aos.committer.Committer`), for
that one step: a native reducer or one with upcasters, a step with effect
intents or budget reads, a failed step, a state the C writer does not
handle, and a manifest with invariants. Both paths make the same records;
the differential suite checks it.

The records go to the journal's :class:`FrameWriter` (a live world), to a
:class:`FrameCursor` that compares them with the journal's (a replay, which
then stops the loop wherever the journal holds something other than a
step), or to any other sink through its Python methods.

The world's hooks run between steps only where they have something to do:
``after_commit`` after a ticket that is a multiple of ``Hooks.every`` (a
snapshot), after a step of the reference path and while effects wait for
their dispatch; ``at_quiet`` (inputs from other threads, receipts) every
``QUIET_EVERY`` steps.
"""

from libc.stdint cimport int64_t
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject, PyTypeObject

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object)
    PyTypeObject PyBaseObject_Type
    PyObject* PyDict_GetItem(object, object)  # borrowed; NULL when missing (no exception set)

from aos._core.cellstore cimport CellStore

from aos._core.decoder cimport decode, event_admitted_fields
from aos._core.encoder cimport (KIND_ADMITTED, KIND_SCHEDULED, encode, event_admitted, kind_code, step_committed,
                                step_scheduled)
from aos._core.context cimport EventFields, StepFields, TypedPlan
from aos._core.frames cimport FrameCursor, FrameWriter
from aos._core.hashing cimport digest_of
from aos._core.latency cimport bucket
from aos._core.posix cimport now_ns
from aos._core.sequencer cimport Sequencer

from types import FunctionType

from aos._core.decoder import UNHANDLED

cdef object _UNHANDLED = UNHANDLED
cdef tuple _EMPTY = ()


cdef inline object new_of(type cls):
    """A new, unset instance of ``cls`` (a Python subclass of a cdef class with no fields of its own), made by its
    ``tp_new`` without calling ``__init__``: ``cls.__new__(cls)`` without the method lookup."""
    return (<PyTypeObject*>cls).tp_new(cls, <PyObject*>_EMPTY, NULL)


cdef object as_record(type cls, tuple names, object m):
    """A new ``cls`` with its fields ``names`` set from map ``m`` holding exactly those keys, as aos.typed's
    wrapper sets them (``object.__new__``, then each field); :data:`_UNHANDLED` for anything else."""
    if type(m) is not dict or len(<dict>m) != len(names):
        return _UNHANDLED
    cdef PyObject* v
    try:
        o = PyBaseObject_Type.tp_new(cls, <PyObject*>_EMPTY, NULL)
        for name in names:
            v = PyDict_GetItem(m, name)
            if v == NULL:
                return _UNHANDLED
            setattr(o, name, <object>v)
    except Exception:
        return _UNHANDLED
    return o


cdef object typed_call(TypedPlan plan, object ctx, object state, object event):
    """Call a typed reducer as its wrapper (``plan.wrapper``) does: its state and event value as their
    declared dataclasses, its returned instance as the map of its fields. A value the plan does not cover goes
    to the wrapper, whole, before the reducer has run."""
    cdef EventFields ev = <EventFields>event
    typed_state = state
    if state is not None and plan.state_type is not None:
        typed_state = as_record(<type>plan.state_type, plan.state_fields, state)
        if typed_state is _UNHANDLED:
            return plan.wrapper(ctx, state, event)
    if plan.events:
        shape = plan.events.get(ev.schema)
        if shape is not None:
            value = as_record(<type>(<tuple>shape)[0], <tuple>(<tuple>shape)[1], ev.value)
            if value is _UNHANDLED:
                return plan.wrapper(ctx, state, event)
            ev.value = value
    new = plan.fn(ctx, typed_state, event)
    if plan.state_type is None:
        return new
    if type(new) is plan.state_type:
        out = {}
        for name in plan.state_fields:
            out[name] = getattr(new, name)
        return out
    return None if new is None else plan.returned(new)


QUIET_EVERY = 64  # steps between two calls of the at_quiet hook
cdef int64_t _QUIET_EVERY = QUIET_EVERY


cdef class InlineLoop:
    """The loop of one :class:`aos.executor.InlineExecutor` (its kernel and committer)."""

    def __init__(self, kernel, committer, list latency):
        self.kernel = kernel
        self.committer = committer
        self.latency = latency
        from aos import canonical
        from aos.context import Event, StepContext
        from aos.step import failed, finish_native, finish_step
        self.finish_step = finish_step
        self.finish_native_fn = finish_native
        self.failed = failed
        self.decode_trusted = canonical.decode_trusted
        self.Event = Event
        self.StepContext = StepContext
        self.FunctionType = FunctionType
        self.routes = kernel.manifest.routes

    cdef int _bind(self) except -1:
        """Take the kernel's current parts (they are the same objects for the kernel's life, but cheap to take)."""
        k = self.kernel
        self.seq = <Sequencer>k.sequencer
        self.writer = None
        self.cursor = None
        self.collected = None
        sink = self.sink = k.sink
        w = getattr(sink, "writer", None)
        if isinstance(w, FrameWriter):
            self.writer = <FrameWriter>w
        elif isinstance(sink, FrameCursor):
            self.cursor = <FrameCursor>sink  # a replay: the records are compared with the journal's
        else:
            out = getattr(sink, "collect_into", None)
            if type(out) is list:
                self.collected = <list>out  # a sink that only keeps the payloads (a shadow run's) and never commits
        self.fast_ok = not k.manifest.invariants
        self.cells = <CellStore?>k.cells
        self.events = k.inbox.events
        self.admission = k.admission
        self.ledger = k.ledger
        self.lane_id = k.lane_id
        return 0

    cdef int _settle_counts(self) except -1:
        """Hand the counts kept in C to the kernel, the executor's histogram and the committer."""
        cdef int i
        self.kernel.commits += self.commits
        self.commits = 0
        self.committer.next_event_id = self.seq.next_ticket
        for i in range(40):
            if self.counts[i]:
                self.latency[i] += self.counts[i]
                self.counts[i] = 0
        return 0

    def run(self, int64_t limit, hooks):
        """Run up to ``limit`` steps (-1: until no step is ready); return the number run."""
        self._bind()
        k = self.kernel
        cdef Sequencer seq = self.seq
        cdef FrameCursor cursor = self.cursor
        after, quiet = hooks.after_commit, hooks.at_quiet
        cdef int64_t every = hooks.every
        cdef int64_t t = 0, cid = 0, inp = 0, steps = 0
        cdef int r, code
        cdef bint due
        try:
            while steps != limit:
                if cursor is not None:
                    code = cursor.c_next_code()
                    if code == KIND_ADMITTED:
                        if self._admit_payload(<bytes>cursor._next):
                            continue
                        break  # an event the general path admits (or refuses)
                    if code != KIND_SCHEDULED:
                        break  # the journal has something else next: the replay reads it
                r = seq.c_poll(seq.next_ticket - 1, &t, &cid, &inp)  # every ticket so far has committed
                if r == 0:
                    break
                if r < 0:
                    raise RuntimeError(f"the sequencer waits for commits, but every ticket up to "
                                       f"{seq.next_ticket - 1} has committed")
                due = self._step(t, cid, inp)  # True: it went the reference path
                steps += 1
                if not due and ((every > 0 and t % every == 0) or k.new_effects):
                    due = True  # a snapshot is due, or effects wait for their dispatch (once durable)
                if due and after is not None:
                    self._settle_counts()
                    after(t)
                if quiet is not None and steps % _QUIET_EVERY == 0:
                    self._settle_counts()
                    quiet()
        finally:
            self._settle_counts()
        return steps

    def step(self):
        """Run the next step, if one is ready: ``(event_id, cell id, input)``, or None (shadow runs)."""
        cdef int64_t t = 0, cid = 0, inp = 0
        self._bind()
        cdef Sequencer seq = self.seq
        if seq.c_poll(seq.next_ticket - 1, &t, &cid, &inp) != 1:
            return None
        try:
            self._step(t, cid, inp)
        finally:
            self._settle_counts()
        return (t, cid, inp)

    def commit_ticket(self, int64_t t, int64_t cid, int64_t inp):
        """:meth:`c_commit_ticket` from Python."""
        self.c_commit_ticket(t, cid, inp)

    cdef int c_commit_ticket(self, int64_t t, int64_t cid, int64_t inp) except -1:
        """Compute and commit ticket ``t``, already assigned and next to commit (the threads commit loop)."""
        self._bind()
        try:
            self._step(t, cid, inp)
        finally:
            self._settle_counts()
            self.committer.next_event_id = t + 1  # (later tickets may be assigned: they are in flight)
        return 0

    cdef int c_commit_native(self, int64_t t, int64_t cid, int64_t inp, object ticket, NativeCall call) except -1:
        """Commit ticket ``t``, a native step a worker ran (the threads commit loop), next to commit.

        The common outcome — no error, nothing emitted or intended, a state
        kept, deleted or replaced by canonical bytes, no invariants — is
        committed here as the inline step commits; any other goes through
        :func:`aos.step.finish_native` and the committer, which check and
        journal it.
        """
        cdef tuple outputs = call.outputs()
        cdef int action
        self._bind()
        try:
            error, action_obj, new, emits, effects = outputs
            action = action_obj
            new_bytes = None
            fast = self.fast_ok and error is None and not emits and not effects
            if fast:
                if action == 0:
                    new_bytes = call.state
                elif action == 1:
                    if type(new) is not bytes or decode(<bytes>new, True) is _UNHANDLED:
                        fast = False  # not canonical, or outside the model: the general path says why
                    else:
                        new_bytes = new
                elif action != 2:
                    fast = False
            if not fast:
                k = self.kernel
                result = self.finish_native_fn(ticket, call.state, outputs, k.admission, k.ledger)
                self.committer.next_event_id = t
                self.committer.commit(result)
                self.reference += 1
                return 0
            new_hash = None if new_bytes is None else digest_of(<bytes>new_bytes)
            committed = step_committed(t, new_hash, _EMPTY, _EMPTY, self.lane_id)
            spec = self.cells.c_spec(cid)
            writer, cursor, sink = self.writer, self.cursor, self.sink
            self._append(writer, cursor, sink,
                         step_scheduled(t, spec.name, self.cells.c_key(cid), inp, self.lane_id))
            self.cells.c_set(cid, new_bytes)
            if new_bytes is None and self.cells.pins and cid in self.cells.pins:  # it leaves its era
                self.cells.unpin(cid)
            self._append(writer, cursor, sink, committed)
            self._committed(<list>self.events[inp], inp, writer, cursor, sink)
        finally:
            self._settle_counts()
            self.committer.next_event_id = t + 1  # (later tickets may be assigned: they are in flight)
        return 0

    cdef bint _step(self, int64_t t, int64_t cid, int64_t inp) except -1:
        """Compute and commit ticket ``t`` (every earlier one has committed); True when it went the reference path."""
        cdef int64_t t0 = now_ns(), t1
        cdef bint took_reference = True
        cdef list entry
        cdef StepFields fields
        cdef CellStore cells = self.cells
        cdef dict events = self.events
        cdef FrameWriter writer = self.writer
        cdef FrameCursor cursor = self.cursor
        committer = self.committer
        k = self.kernel
        spec = cells.c_spec(cid)
        if self.fast_ok and spec.native is None:
            entry = events[inp]
            schema = entry[0]
            value = entry[1]
            upcasts = spec.upcasts
            fn = spec.fn
            if (not upcasts or schema not in upcasts) and type(fn) is self.FunctionType:
                took_reference = False
        if took_reference:
            result = k.compute(k.ticket(t, cid, inp))
            t1 = now_ns()
            committer.next_event_id = t
            committer.commit(result)
            self.reference += 1
        else:
            # the common step, as aos.step.compute and Committer.commit do it
            key = cells.c_key(cid)
            ctx = new_of(self.StepContext)
            fields = <StepFields>ctx
            fields.event_id = t
            fields.reducer = spec.name
            fields.key = key
            fields._admission = self.admission
            fields._ledger = self.ledger
            fields.emits = []
            fields.routes = []
            fields.intents = []
            fields.reads = {}
            result = None
            try:
                state = cells.c_state(cid)
                if state is None:
                    current = None
                else:
                    current = decode(<bytes>state, False)
                    if current is _UNHANDLED:
                        current = self.decode_trusted(state)
                event = new_of(self.Event)
                decoded = decode(<bytes>value, False)
                (<EventFields>event).schema = schema
                (<EventFields>event).value = self.decode_trusted(value) if decoded is _UNHANDLED else decoded
                (<EventFields>event).seq = inp
                plan = spec.plan  # a typed reducer's: called as its wrapper would (unless another wraps it)
                if plan is not None and fn is (<TypedPlan>plan).wrapper:
                    new = typed_call(<TypedPlan>plan, ctx, current, event)
                else:
                    new = fn(ctx, current, event)
            except Exception as exc:
                result = self.failed(k.ticket(t, cid, inp), exc)
            if result is None:
                if fields.intents or fields.reads:
                    result = self.finish_step(k.ticket(t, cid, inp), ctx, new)
                elif new is None:
                    new_bytes = None
                    new_hash = None
                else:
                    new_bytes = encode(new)
                    if new_bytes is None:  # outside the C writer: the general path explains why
                        result = self.finish_step(k.ticket(t, cid, inp), ctx, new)
                    else:
                        new_hash = digest_of(<bytes>new_bytes)
            t1 = now_ns()
            emits = fields.emits
            if result is None:
                try:
                    committed = step_committed(t, new_hash, tuple(emits) if emits else _EMPTY, _EMPTY, self.lane_id)
                except (TypeError, ValueError):  # outputs the record cannot hold: the reference path says so
                    result = self.finish_step(k.ticket(t, cid, inp), ctx, new)
            if result is not None:
                committer.next_event_id = t
                committer.commit(result)
                self.reference += 1
            else:
                took_reference = False
                sink = self.sink
                self._append(writer, cursor, sink, step_scheduled(t, spec.name, key, inp, self.lane_id))
                cells.c_set(cid, new_bytes)
                if new_bytes is None and cells.pins and cid in cells.pins:  # it leaves its era (CellTable.set)
                    cells.unpin(cid)
                self._append(writer, cursor, sink, committed)
                if emits:
                    self._deliver(k, self.seq, cells, t, emits, fields.routes, events)
                self._committed(entry, inp, writer, cursor, sink)
        self.busy_ns += t1 - t0
        self.counts[bucket((now_ns() - t0) // 1000)] += 1
        return took_reference

    cdef int _committed(self, list entry, int64_t inp, FrameWriter writer, FrameCursor cursor, object sink) except -1:
        """The end of a commit made here: the input consumed (``entry``, its inbox entry), the counts, the
        commit point."""
        left = entry[2] - 1  # Inbox.consumed
        if left == 0:
            del self.events[inp]
        else:
            entry[2] = left
        self.commits += 1
        self.fast += 1
        if writer is not None:
            if writer.c_commit_point():
                sink.flush_due()
        elif (cursor is None and self.collected is None) or (cursor is not None and cursor._next is None):
            sink.commit_point()
        return 0

    def admit(self, bytes payload):
        """Admit the ``EventAdmitted`` record ``payload`` as :meth:`_admit_payload` does (shadow runs)."""
        self._bind()
        return self._admit_payload(payload)

    cdef bint _admit_payload(self, bytes payload) except -1:
        """Admit an ``EventAdmitted`` record read from a journal, as :meth:`aos.kernel.Kernel.admit_journaled` does.

        The record aos would write for it goes to the sink (a replay compares
        it with the journal's). Returns False, doing nothing, for anything but
        the common case (the next admission number; an event of a schema
        reducers take, keyed by a str, bytes or 64-bit int field; laid out as
        aos writes it): the general path then admits it, or says what is wrong.
        """
        k = self.kernel
        cdef Sequencer seq = self.seq
        cdef CellStore cells = self.cells
        cdef dict events = self.events
        cdef long long as_int
        cdef int overflow = 0
        fields = event_admitted_fields(payload)
        if fields is None:
            return False
        number, schema, value, visible = fields
        if number != k.next_seq or visible is None:
            return False  # (a record from before visible_at: the general path)
        cdef int64_t visible_at = visible
        if not seq.next_ticket <= visible_at <= seq.next_ticket + seq.window:
            return False  # the general path says what is wrong
        specs = self.routes.get(schema)
        if specs is None:
            return False  # a schema no reducer takes, one the manifest upcasts, or an unknown one
        decoded = decode(<bytes>value, True)
        if decoded is _UNHANDLED:
            return False
        routes = []
        for spec in specs:
            field = spec.key
            if field is None:
                routes.append((spec, None))
                continue
            if type(decoded) is not dict:
                return False
            key = (<dict>decoded).get(field, _UNHANDLED)
            if type(key) is int:
                as_int = PyLong_AsLongLongAndOverflow(key, &overflow)
                if overflow:
                    return False
            elif type(key) is not str and type(key) is not bytes:
                return False  # missing, or a key the general path normalizes or refuses
            routes.append((spec, key))
        self._append(self.writer, self.cursor, self.sink,
                     event_admitted(number, schema, <bytes>value, self.lane_id, visible))
        s = <int64_t>number
        k.next_seq = s + 1
        if routes:
            entry = [schema, value, len(routes)]  # Inbox.put
            PyObject_GC_UnTrack(entry)  # a str, bytes and an int, for as long as it lives: nothing for the collector
            events[s] = entry
        for spec, key in routes:
            seq.c_deliver_at(visible_at, cells.c_id_of(spec, key), s, spec.priority)
        return True

    cdef int _deliver(self, k, Sequencer seq, CellStore cells, int64_t t, list emits, list routes,
                      dict events) except -1:
        """Admit what step ``t`` emitted, in emit order, each input visible ``window`` tickets later."""
        cdef int64_t s = k.next_seq
        cdef Py_ssize_t i, n
        cdef tuple to
        for i in range(len(emits)):
            emit = emits[i]
            to = <tuple>routes[i]
            n = len(to)
            if n:
                entry = [emit.schema, emit.value, n]  # Inbox.put
                PyObject_GC_UnTrack(entry)  # (as in _admit_payload)
                events[s] = entry
            for spec, key in to:
                seq.c_deliver_emitted(t, cells.c_id_of(spec, key), s, spec.priority)
            if type(to) is not tuple:  # a lane world's event that other lanes' cells take (aos.lane_world)
                k.outbound.send((<object>to).targets, emit.schema, emit.value)
            s += 1
        k.next_seq = s
        return 0

    cdef int _append(self, FrameWriter writer, FrameCursor cursor, object sink, bytes payload) except -1:
        if writer is not None:
            if writer.c_append(payload) < 0:
                sink.append_payload(payload)  # the segment is full: the journal starts the next one
        elif cursor is not None:
            cursor.c_expect(payload)
        elif self.collected is not None:
            self.collected.append(payload)
        else:
            sink.append_payload(payload)
        return 0
