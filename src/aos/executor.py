"""Executors drive tickets from the sequencer through workers to the committer.

``InlineExecutor`` does it on the calling thread, one step at a time: it is
the reference (the *oracle*) every parallel executor is compared with.

``ThreadsExecutor`` computes steps on N worker threads while the calling
thread sequences and commits (docs/parallel.md). It assigns exactly the
tickets the inline executor assigns — ``Sequencer.poll`` only answers once the
next ticket no longer depends on commits in flight — and commits strictly in
ticket order, so both write the same journal.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from aos._core.commit_loop import CommitLoop
from aos._core.inline_loop import InlineLoop
from aos.committer import Committer
from aos.kernel import Kernel
from aos.step import StepResult, Ticket

__all__ = ["InlineExecutor", "ReferenceExecutor", "ThreadsExecutor", "RunResult", "Hooks"]


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one ``World.run`` call did."""

    steps: int
    committed: int
    failed: int
    quiescent: bool  # no step is ready
    receipts: int = 0  # receipts admitted
    outstanding: int = 0  # effects still awaiting a receipt


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the world does around commits.

    ``after_commit(event_id)`` runs after every commit at a multiple of
    ``every`` (0: none), and after every commit while the kernel holds effects
    not yet dispatched (``Kernel.new_effects``); an executor may call it after
    other commits too (the reference and threads executors call it after
    every one). ``barrier(event_id)``
    says the world needs a quiet point right after that ticket (a snapshot):
    no later ticket is assigned before it committed and ``at_quiet`` ran.
    ``at_quiet()`` runs whenever nothing is in flight (every ticket assigned so
    far has committed): calls handed over from other threads (receipts,
    snapshots, reads) are carried out there. ``intake()`` admits the events
    other threads submitted; the threads executor calls it between commits
    with tickets in flight, after :meth:`ThreadsExecutor.arrive` (each event
    is held until the next ticket to assign, which its record names, so a
    serial replay holds it just as long: docs/scheduling.md).
    """

    after_commit: Callable[[int], None] | None = None
    barrier: Callable[[int], bool] | None = None
    at_quiet: Callable[[], None] | None = None
    wants_quiet: Callable[[], bool] | None = None  # calls wait: stop assigning until nothing is in flight
    intake: Callable[[], None] | None = None
    every: int = 0  # the tickets after which after_commit has work besides effects (snapshots)


class LatencyHistogram:
    """Counts of latencies in power-of-two microsecond buckets."""

    __slots__ = ("counts",)

    def __init__(self, counts: list[int] | None = None) -> None:
        self.counts = [0] * 40 if counts is None else counts

    def add(self, seconds: float) -> None:
        us = int(seconds * 1e6)
        self.counts[min(us.bit_length(), 39)] += 1

    def buckets(self) -> list[tuple[int, int]]:
        """``(upper bound in µs, count)`` of every non-empty bucket."""
        return [(1 << i, n) for i, n in enumerate(self.counts) if n]

    def quantile(self, q: float) -> int:
        """Upper bound (µs) of the bucket holding the q-quantile (0 when empty)."""
        total = sum(self.counts)
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if total and seen >= q * total:
                return 1 << i
        return 0


class ReferenceExecutor:
    """Serial execution in plain Python: ticket, compute, commit, repeat.

    The readable reference every other executor is compared with (the
    differential suite, ``tests/differential/``): each step goes through
    :func:`aos.step.compute` and :class:`aos.committer.Committer`.
    """

    name = "reference"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.committer = Committer(kernel)
        self.latency = LatencyHistogram()
        self.busy_seconds = 0.0
        self.max_inflight = 1

    def run(self, max_steps: int | None = None, hooks: Hooks = Hooks()) -> RunResult:
        k = self.kernel
        commit = self.committer.commit
        seq = k.sequencer
        poll = seq.poll
        compute, ticket = k.compute, k.ticket
        after, quiet = hooks.after_commit, hooks.at_quiet
        clock, counts = time.perf_counter, self.latency.counts
        steps, busy = 0, 0.0
        limit = -1 if max_steps is None else max_steps
        commits0, failures0 = k.commits, k.failures
        try:
            while steps != limit:
                t = poll(seq.next_ticket - 1)  # every ticket so far has committed
                if not t:
                    break
                t0 = clock()
                result = compute(ticket(*t))
                t1 = clock()
                commit(result)
                busy += t1 - t0
                counts[min(int((clock() - t0) * 1e6).bit_length(), 39)] += 1  # LatencyHistogram.add
                steps += 1
                if after is not None:
                    after(t[0])
                if quiet is not None:
                    quiet()
        finally:
            self.busy_seconds += busy
        return RunResult(steps, k.commits - commits0, k.failures - failures0, not k.sequencer.has_work())


class InlineExecutor:
    """Serial execution on the calling thread, the common step in one C loop (``aos/_core/inline_loop.pyx``).

    It writes exactly the journal :class:`ReferenceExecutor` writes; steps
    the C loop does not handle go the reference path.
    """

    name = "inline"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.committer = Committer(kernel)
        self.latency = LatencyHistogram()
        self.max_inflight = 1
        self._loop = InlineLoop(kernel, self.committer, self.latency.counts)

    @property
    def busy_seconds(self) -> float:
        return self._loop.busy_ns / 1e9

    @property
    def steps_by_path(self) -> dict[str, int]:
        """Steps the C loop ran, and steps that went the reference path."""
        return {"c_loop": self._loop.fast, "reference": self._loop.reference}

    def run(self, max_steps: int | None = None, hooks: Hooks = Hooks()) -> RunResult:
        k = self.kernel
        commits0, failures0 = k.commits, k.failures
        steps = self._loop.run(-1 if max_steps is None else max_steps, hooks)
        return RunResult(steps, k.commits - commits0, k.failures - failures0, not k.sequencer.has_work())


class ThreadsExecutor:
    """Steps computed on worker threads; sequencing and commits on the calling thread.

    Tickets and results pass through a :class:`aos._core.Pipeline` (ticket
    queue and reorder buffer in C; waits release the GIL). ``delay(ticket)
    -> seconds`` (tests only) makes a worker sleep before computing, to
    shuffle the order in which results arrive.
    """

    name = "threads"

    def __init__(self, kernel: Kernel, workers: int, delay: Callable[[int], float] | None = None,
                 offload: str = "auto") -> None:
        if workers < 1:
            raise ValueError(f"the threads executor needs workers >= 1, got {workers}")
        if offload not in ("auto", "all"):
            raise ValueError(f"offload must be 'auto' or 'all', got {offload!r}")
        # "auto": a Python step holds the GIL while it runs, so on a GIL build it cannot overlap
        # with the coordinator; the coordinator computes it itself instead of handing it over.
        self.offload = offload
        gil = getattr(sys, "_is_gil_enabled", lambda: True)()
        self.python_on_coordinator = offload == "auto" and gil
        self.kernel = kernel
        self.committer = Committer(kernel)
        self.workers = workers
        self.delay = delay
        # Tickets in flight at most. The window bounds it anyway (ticket n waits for n - window);
        # using all of it lets other cells flow past a slow step for as long as possible.
        self.lookahead = kernel.window
        # The loop (aos/_core/commit_loop.pyx) owns the pipeline and its own counters.
        self.loop = CommitLoop(self.lookahead, workers, python_here=self.python_on_coordinator,
                               may_help=offload == "auto",  # "all": every step is a worker's
                               native_direct=delay is None)  # (a test's worker_delay needs the Python path)
        self.loop.inline = InlineLoop(kernel, self.committer, [0] * 40)  # the steps the loop computes itself
        self._pipe = self.loop.pipe
        self._threads: list[threading.Thread] = []
        self._busy = [0.0] * workers

    @property
    def helped(self) -> int:
        """Steps the calling thread computed itself."""
        return self.loop.helped

    @property
    def max_inflight(self) -> int:
        return self.loop.max_inflight

    @property
    def latency(self) -> LatencyHistogram:
        """Commit latency (ticket assigned -> committed)."""
        return LatencyHistogram(self.loop.latency_counts())

    @property
    def busy_seconds(self) -> float:
        return sum(self._busy) + self.loop.coordinator_busy + self._pipe.native_busy_ns / 1e9

    # ------------------------------------------------------------ workers
    def on_worker(self) -> bool:
        """Whether the calling thread is one of this executor's workers."""
        return threading.current_thread() in self._threads

    def _start(self) -> None:
        if self._threads:
            return
        for i in range(self.workers):
            th = threading.Thread(target=self._work, args=(i,), name=f"aos-worker-{i}", daemon=True)
            th.start()
            self._threads.append(th)

    def _work(self, index: int) -> None:
        # Native jobs run inside serve() without the GIL; Python tickets come back here.
        compute = self.kernel.compute
        pipe, busy, delay, clock = self._pipe, self._busy, self.delay, time.perf_counter

        def step(ticket: Ticket) -> StepResult | None:
            try:
                if delay is not None and (pause := delay(ticket.event_id)) > 0:
                    time.sleep(pause)
                t0 = clock()
                result = compute(ticket)
                busy[index] += clock() - t0
                return result
            except BaseException as exc:  # compute never raises for reducer errors: this is a kernel fault
                self.loop.error = exc
                pipe.fail()
                return None

        pipe.serve(step)

    def arrive(self) -> None:
        """From any thread: submitted events wait for ``hooks.intake`` (the loop admits them at its next turn).

        Also after an admission made through :meth:`enter`: a loop waiting with nothing to schedule turns round.
        """
        self.loop.arrive()

    def enter(self) -> bool:
        """From another thread: whether it may admit an event itself now (the loop waits for a step), until
        :meth:`leave`. Never blocks."""
        return self.loop.enter()

    def leave(self) -> None:
        self.loop.leave()

    def close(self) -> None:
        self._pipe.close()
        for th in self._threads:
            th.join(timeout=10)
        self._threads = []

    # -------------------------------------------------------- coordination
    def run(self, max_steps: int | None = None, hooks: Hooks = Hooks()) -> RunResult:
        k = self.kernel
        self._start()
        commits0, failures0 = k.commits, k.failures
        try:
            steps = self.loop.run(k, self.committer, max_steps, hooks)
        except BaseException:
            self.close()
            raise
        return RunResult(steps, k.commits - commits0, k.failures - failures0, not k.sequencer.has_work())
