# cython: language_level=3
"""The inline executor's step loop, declared for the threads commit loop (it commits its own steps through it)."""

from libc.stdint cimport int64_t

from aos._core.cellstore cimport CellStore
from aos._core.frames cimport FrameCursor, FrameWriter
from aos._core.native cimport NativeCall
from aos._core.sequencer cimport Sequencer


cdef class InlineLoop:
    cdef object kernel
    cdef object committer
    cdef list latency            # the executor's LatencyHistogram.counts (a list of 40 ints)
    cdef readonly int64_t busy_ns  # time spent computing steps
    cdef readonly int64_t fast   # steps that took the C path
    cdef readonly int64_t reference  # steps that took the reference path
    # from aos.step / aos.context, bound at the first run (they import this module's neighbours)
    cdef object compute_ticket, finish_step, finish_native_fn, failed, decode_trusted, Event, StepContext, FunctionType
    cdef dict routes             # the manifest's reducers by event schema
    # the kernel's parts, taken at each entry (_bind), and the counts kept in C until _settle_counts
    cdef Sequencer seq
    cdef FrameWriter writer
    cdef FrameCursor cursor
    cdef list collected          # the list of a sink that only collects payloads (``collect_into``), else None
    cdef object sink, admission, ledger
    cdef object lane_id          # the kernel's lane (every record written here carries it)
    cdef CellStore cells
    cdef dict events
    cdef bint fast_ok
    cdef int64_t commits
    cdef int64_t counts[40]

    cdef int _bind(self) except -1
    cdef int _settle_counts(self) except -1
    cdef int c_commit_ticket(self, int64_t t, int64_t cid, int64_t inp) except -1
    cdef int c_commit_native(self, int64_t t, int64_t cid, int64_t inp, object ticket, NativeCall call) except -1
    cdef bint _step(self, int64_t t, int64_t cid, int64_t inp) except -1
    cdef bint _admit_payload(self, bytes payload) except -1
    cdef int _deliver(self, k, Sequencer seq, CellStore cells, int64_t t, list emits, list routes,
                      dict events) except -1
    cdef int _append(self, FrameWriter writer, FrameCursor cursor, object sink, bytes payload) except -1
    cdef int _committed(self, list entry, int64_t inp, FrameWriter writer, FrameCursor cursor, object sink) except -1
