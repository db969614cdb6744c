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

import threading
import time
from dataclasses import dataclass
from typing import Callable

from aos._core import Pipeline
from aos.committer import Committer
from aos.kernel import Kernel
from aos.worker import StepResult

__all__ = ["InlineExecutor", "ThreadsExecutor", "RunResult", "Hooks"]


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

    ``after_commit(event_id)`` runs after every commit; ``barrier(event_id)``
    says the world needs a quiet point right after that ticket (a snapshot):
    no later ticket is assigned before it committed and ``at_quiet`` ran.
    ``at_quiet()`` runs whenever nothing is in flight (every ticket assigned so
    far has committed): the only moments external inputs may be admitted, so
    that they enter the journal where a serial replay would admit them.
    """

    after_commit: Callable[[int], None] | None = None
    barrier: Callable[[int], bool] | None = None
    at_quiet: Callable[[], None] | None = None
    wants_quiet: Callable[[], bool] | None = None  # inputs wait: stop assigning until nothing is in flight


class LatencyHistogram:
    """Counts of latencies in power-of-two microsecond buckets."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * 40

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


class InlineExecutor:
    """Serial execution: ticket, compute, commit, repeat."""

    name = "inline"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.committer = Committer(kernel)
        self.latency = LatencyHistogram()
        self.busy_seconds = 0.0
        self.max_inflight = 1

    def run(self, max_steps: int | None = None, hooks: Hooks = Hooks()) -> RunResult:
        k = self.kernel
        commit = self.committer.commit
        poll = k.sequencer.poll
        compute = k.compute
        after, quiet = hooks.after_commit, hooks.at_quiet
        clock, latency = time.perf_counter, self.latency
        steps = 0
        commits0, failures0 = k.commits, k.failures
        while max_steps is None or steps < max_steps:
            t = poll(k.last_event_id)
            if not t:
                break
            t0 = clock()
            result = compute(k.ticket(*t))
            self.busy_seconds += clock() - t0
            commit(result)
            latency.add(clock() - t0)
            steps += 1
            if after is not None:
                after(t[0])
            if quiet is not None:
                quiet()
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
                 lookahead: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"the threads executor needs workers >= 1, got {workers}")
        self.kernel = kernel
        self.committer = Committer(kernel)
        self.workers = workers
        self.delay = delay
        # Tickets in flight at most. The window bounds it anyway (ticket n waits for n - window);
        # using all of it lets other cells flow past a slow step for as long as possible.
        self.lookahead = max(1, min(kernel.window, lookahead or kernel.window))
        self._pipe = Pipeline(self.lookahead + 1)
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._busy = [0.0] * workers
        self.latency = LatencyHistogram()
        self.max_inflight = 0

    @property
    def busy_seconds(self) -> float:
        return sum(self._busy)

    # ------------------------------------------------------------ workers
    def _start(self) -> None:
        if self._threads:
            return
        for i in range(self.workers):
            th = threading.Thread(target=self._work, args=(i,), name=f"aos-worker-{i}", daemon=True)
            th.start()
            self._threads.append(th)

    def _work(self, index: int) -> None:
        compute = self.kernel.compute
        pipe, busy, delay, clock = self._pipe, self._busy, self.delay, time.perf_counter
        while (ticket := pipe.take()) is not None:
            try:
                if delay is not None and (pause := delay(ticket.event_id)) > 0:
                    time.sleep(pause)
                t0 = clock()
                result = compute(ticket)
                busy[index] += clock() - t0
            except BaseException as exc:  # compute never raises for reducer errors: this is a kernel fault
                self._error = exc
                pipe.fail()
                return
            pipe.complete(ticket.event_id, result)

    def close(self) -> None:
        self._pipe.close()
        for th in self._threads:
            th.join(timeout=10)
        self._threads = []

    # -------------------------------------------------------- coordination
    def run(self, max_steps: int | None = None, hooks: Hooks = Hooks()) -> RunResult:
        k = self.kernel
        self._start()
        pipe = self._pipe
        commit = self.committer.commit
        poll = k.sequencer.poll
        after, barrier, quiet, wants_quiet = hooks.after_commit, hooks.barrier, hooks.at_quiet, hooks.wants_quiet
        commits0, failures0 = k.commits, k.failures
        committed = assigned = start = k.last_event_id  # nothing is in flight between runs
        steps = 0
        held = False  # a barrier ticket was assigned or inputs wait: no more until everything committed
        clock, assigned_at, latency = time.perf_counter, {}, self.latency
        # In-flight depth adapts (timing only, never the ticket order): a stale read that made the
        # committer compute a step again halves it; a run of clean commits widens it again.
        depth, floor = self.lookahead, min(self.lookahead, 2 * self.workers)
        reexecutions, clean = k.reexecutions, 0
        waited: StepResult | None = None  # the result the coordinator last waited for
        try:
            while True:
                # Commit every result that is next in ticket order.
                while committed < assigned:
                    result, waited = waited or pipe.result(committed + 1, False), None
                    if result is None:
                        break
                    commit(result)
                    committed += 1
                    steps += 1
                    latency.add(clock() - assigned_at.pop(committed))
                    if k.reexecutions != reexecutions:
                        reexecutions, depth, clean = k.reexecutions, max(floor, depth // 2), 0
                    elif depth < self.lookahead and (clean := clean + 1) >= depth:
                        depth, clean = depth + 1, 0
                    if after is not None:
                        after(committed)
                if self._error is not None:
                    raise self._error
                if committed == assigned:
                    held = False
                    if quiet is not None:
                        quiet()
                if wants_quiet is not None and wants_quiet():
                    held = True  # inputs are waiting: let what is in flight commit first
                # Assign what is already determined, up to the lookahead and max_steps.
                idle = False
                while not held and assigned - committed < depth and (
                        max_steps is None or assigned - start < max_steps):
                    t = poll(committed)
                    if t is None:
                        idle = True
                        break
                    if t is False:
                        break
                    assigned = t[0]
                    assigned_at[assigned] = clock()
                    pipe.put(assigned, k.ticket(*t))
                    if barrier is not None and barrier(assigned):
                        held = True
                if assigned - committed > self.max_inflight:
                    self.max_inflight = assigned - committed
                if committed == assigned:
                    if held:
                        continue  # the quiet point is here: admit, then go on
                    if idle or (max_steps is not None and assigned - start >= max_steps):
                        break
                    continue
                # Wait (without the GIL) for the next result in ticket order.
                waited = pipe.result(committed + 1, True)
                if waited is None:
                    raise self._error or RuntimeError("worker pipeline failed")
        except BaseException:
            self.close()
            raise
        return RunResult(steps, k.commits - commits0, k.failures - failures0, not k.sequencer.has_work())
