"""Benchmark workloads, each defined once and shared by benchmarks and reports."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aos

CELLS = 10_000


def counter_manifest() -> aos.Manifest:
    m = aos.Manifest("bench/counter@1")

    @m.reducer("bench/Counter@1", key="id", events=["bench/Inc@1"])
    def counter(ctx: Any, state: Any, event: Any) -> Any:
        return {"n": (state or {"n": 0})["n"] + event.value["by"]}

    return m


def counter_events(n: int, cells: int = CELLS) -> list[tuple[str, dict[str, Any]]]:
    return [("bench/Inc@1", {"id": f"c{(i * 7919) % cells}", "by": 1 + i % 7}) for i in range(n)]


@dataclass
class KernelRun:
    """A fresh world with ``events`` queued over ``cells`` counter cells, durability on."""

    events: int = 20_000
    cells: int = CELLS
    durability: str = "group"
    workers: int = 0  # the serial kernel; >= 1 measures the threads executor's overhead

    def setup(self) -> tuple[aos.World, Path]:
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        w = aos.World.open(tmp / "w", counter_manifest(), durability=self.durability, workers=self.workers,
                           snapshot_every=0, snapshot_on_close=False)
        for schema, value in counter_events(self.events, self.cells):
            w.submit(schema, value)
        w.sync()
        return w, tmp

    def run(self, w: aos.World) -> int:
        return w.run().steps

    @staticmethod
    def teardown(w: aos.World, tmp: Path) -> None:
        w.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- scaling
NATIVE_ITERATIONS = 43_000  # ≈ 200 µs per step of aos.examples.spin on the reference machine
PYTHON_ITERATIONS = 3_000  # ≈ 1 ms per step of the same loop in Python


def spin_manifest(native: bool, iterations: int) -> aos.Manifest:
    from aos.examples import spin

    m = aos.Manifest("bench/spin@1")
    if native:
        m.native_reducer("bench/Spin@1", key="id", events=["bench/Go@1"], fn=spin.REDUCER, user=iterations,
                         code_id=spin.CODE_ID)
    else:
        m.reducer("bench/Spin@1", key="id", events=["bench/Go@1"], code_id=f"python-spin-{iterations}")(
            spin.python_spin(iterations))
    return m


@dataclass
class SpinRun:
    """``steps`` spin steps over ``cells`` cells (one event per cell round-robin), ``workers`` workers."""

    native: bool
    workers: int
    steps: int = 4_000
    cells: int = CELLS
    iterations: int | None = None

    def setup(self) -> tuple[aos.World, Path]:
        it = self.iterations or (NATIVE_ITERATIONS if self.native else PYTHON_ITERATIONS)
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        w = aos.World.open(tmp / "w", spin_manifest(self.native, it), workers=self.workers,
                           snapshot_every=0, snapshot_on_close=False)
        for i in range(self.steps):
            w.submit("bench/Go@1", {"id": i % self.cells})
        w.sync()
        return w, tmp

    def run(self, w: aos.World) -> int:
        return w.run().steps


# ------------------------------------------------------------- contention
def budget_manifest(high: bool) -> aos.Manifest:
    """Steps read a capability's budget; with ``high`` contention other steps keep spending it."""
    from aos.examples import spin

    m = aos.Manifest("bench/budget@1")
    m.capability("shared", effect="bench.pay", budget=10**12)
    work = spin.python_spin(200)

    @m.reducer("bench/Reader@1", key="id", events=["bench/Read@1"], code_id="reader")
    def reader(ctx: Any, state: Any, event: Any) -> Any:
        left = ctx.budget("shared")
        if high and event.value["id"] % 2 == 0:
            ctx.effect("bench.pay", {"n": 1}, cost=1)  # spends what the others read
        st = work(ctx, state and state[1:], event)
        return [left % 1000, *st]

    return m


@dataclass
class ContentionRun:
    high: bool
    workers: int = 2
    steps: int = 2_000

    def setup(self) -> tuple[aos.World, Path]:
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        w = aos.World.open(tmp / "w", budget_manifest(self.high), workers=self.workers, effects="manual",
                           snapshot_every=0, snapshot_on_close=False)
        for i in range(self.steps):
            w.submit("bench/Read@1", {"id": i})
        w.sync()
        return w, tmp

    def run(self, w: aos.World) -> int:
        return w.run().steps


# --------------------------------------------------------- head of line
def hol_cold_latency(workers: int = 2, hot: int = 10_000, cold: int = 20, native: bool = True) -> list[int]:
    """Cold-cell commit latency (in steps committed meanwhile) behind a hot cell with ``hot`` queued events.

    The hot cell's events are queued first; while the world runs them, single
    events for cold cells are submitted from another thread. Each latency
    counts the steps committed between the cold event's admission and its
    own commit (the journal says both), i.e. the latency in step-times.
    """
    import threading

    from aos.journal import JournalReader
    from aos.records import EventAdmitted, StepCommitted, StepScheduled

    m = spin_manifest(native, NATIVE_ITERATIONS if native else PYTHON_ITERATIONS)
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
    try:
        with aos.World.open(tmp / "w", m, workers=workers, snapshot_every=0, snapshot_on_close=False) as w:
            for _ in range(hot):
                w.submit("bench/Go@1", {"id": "hot"})
            runner = threading.Thread(target=w.run)
            runner.start()
            for i in range(cold):
                w.submit("bench/Go@1", {"id": f"cold-{i}"})
                time.sleep(0.01)
            runner.join()
        latencies: list[int] = []
        admitted_at: dict[int, int] = {}  # admission seq -> commits so far
        step_input: dict[int, int] = {}
        commits = 0
        cold_seqs: set[int] = set()
        for _e, r in JournalReader(tmp / "w" / "journal", m.era).records():
            if isinstance(r, EventAdmitted) and b"cold" in r.value:
                admitted_at[r.seq] = commits
                cold_seqs.add(r.seq)
            elif isinstance(r, StepScheduled):
                step_input[r.event_id] = r.input
            elif isinstance(r, StepCommitted):
                commits += 1
                seq = step_input[r.event_id]
                if seq in cold_seqs:
                    latencies.append(commits - admitted_at[seq])
        return latencies
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
