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


@dataclass
class StreamingRun:
    """:class:`SpinRun`'s events (native spin), submitted by a producer thread while the caller loops on ``run()``.

    The time measured runs from the producer's start to the last commit; the
    baseline is the same events queued first (``SpinRun(native=True)``).
    """

    workers: int = 2
    steps: int = 4_000
    cells: int = CELLS
    iterations: int | None = None

    def setup(self) -> tuple[aos.World, Path]:
        it = self.iterations or NATIVE_ITERATIONS
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        w = aos.World.open(tmp / "w", spin_manifest(True, it), workers=self.workers,
                           snapshot_every=0, snapshot_on_close=False)
        return w, tmp

    def run(self, w: aos.World) -> int:
        import threading

        done = threading.Event()
        failed: list[BaseException] = []

        def produce() -> None:
            try:
                for i in range(self.steps):
                    w.submit("bench/Go@1", {"id": i % self.cells})
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                failed.append(exc)
            finally:
                done.set()

        producer = threading.Thread(target=produce, name="aos-bench-producer")
        producer.start()
        steps = 0
        while True:
            finished = done.is_set()  # then every event was submitted before this run started
            steps += w.run().steps
            if finished:
                break
        producer.join()
        if failed:
            raise failed[0]
        return steps


# ----------------------------------------------------------------- fleets
def python_spin() -> aos.Manifest:
    """:class:`SpinRun`'s pure-Python reducer (≈ 1 ms per step), for lanes to import as ``workloads:python_spin``."""
    return spin_manifest(False, PYTHON_ITERATIONS)


def relay() -> aos.Manifest:
    """A ping to a relay cell becomes a pong to a counter of another key — mostly in another lane."""
    m = aos.Manifest("bench/relay@1")

    @m.reducer("bench/Relay@1", key="id", events=["bench/Ping@1"])
    def relay_cell(ctx: Any, state: Any, event: Any) -> Any:
        for to in event.value["to"]:
            ctx.emit("bench/Pong@1", {"id": to})
        return (state or 0) + 1

    @m.reducer("bench/Pongs@1", key="id", events=["bench/Pong@1"])
    def pongs(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    return m


@dataclass
class FleetSpinRun:
    """:class:`SpinRun`'s Python events on a fleet of ``lanes`` local lanes (one process each): ``Fleet.run``.

    The lanes are started and the events submitted (durably) in ``setup``;
    ``run`` times the fleet running them, as :class:`SpinRun` times ``World.run``.
    """

    lanes: int = 2
    steps: int = 600
    cells: int = CELLS
    backend: str = "local"

    def setup(self) -> tuple[Any, Path]:
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        f = aos.Fleet.open(tmp / "f", "workloads:python_spin", lanes=self.lanes, backend=self.backend,
                           snapshot_every=0, snapshot_on_close=False)
        f.submit_many(("bench/Go@1", {"id": key}) for key in balanced_keys(self.steps, self.lanes, self.cells))
        return f, tmp

    def run(self, f: Any) -> int:
        return int(f.run().steps)


def balanced_keys(steps: int, lanes: int, cells: int = CELLS) -> list[int]:
    """``steps`` keys from 0 up (round-robin over ``cells``), taken so that each of ``lanes`` lanes holds
    ``steps // lanes`` of them: a fleet figure measures the lanes' parallelism, not how evenly the
    lane hash happens to split a small set of keys (1,200 keys split 575 / 625 between 2 lanes)."""
    from aos.lane import lane_of_key

    per_lane, taken = steps // lanes, [0] * lanes
    keys: list[int] = []
    key = 0
    while len(keys) < per_lane * lanes:
        lane = lane_of_key(key % cells, lanes)
        if taken[lane] < per_lane:
            taken[lane] += 1
            keys.append(key % cells)
        key += 1
    return keys


@dataclass
class CrossLaneRun:
    """``pings`` pings, each fanning out ``fanout`` pongs to other keys, on a fleet of ``lanes`` lanes.

    ``run`` returns the cross-lane messages the fleet moved (its time is the figure's denominator).
    """

    lanes: int = 2
    pings: int = 2_000
    fanout: int = 8
    cells: int = 1_000

    def setup(self) -> tuple[Any, Path]:
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        f = aos.Fleet.open(tmp / "f", "workloads:relay", lanes=self.lanes, snapshot_every=0,
                           snapshot_on_close=False)
        f.submit_many(("bench/Ping@1", {"id": i % self.cells,
                                         "to": [(i * 31 + j * 7919) % self.cells for j in range(self.fanout)]})
                      for i in range(self.pings))
        return f, tmp

    def run(self, f: Any) -> int:
        return int(f.run().messages)


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


# ------------------------------------------------------------- baselines
def counter_reducer(ctx: Any, state: Any, event: Any) -> Any:
    """The counter reducer of ``counter_manifest``, as a plain function (for the floor loop)."""
    return {"n": (state or {"n": 0})["n"] + event.value["by"]}


class _Event:
    __slots__ = ("schema", "value")

    def __init__(self, schema: str, value: Any) -> None:
        self.schema, self.value = schema, value


def floor_loop(events: int = 20_000, cells: int = CELLS) -> float:
    """Seconds for a plain Python loop calling the counter reducer, no kernel (the floor)."""
    evs = [_Event(s, v) for s, v in counter_events(events, cells)]
    states: dict[Any, Any] = {}
    t0 = time.perf_counter()
    for ev in evs:
        key = ev.value["id"]
        states[key] = counter_reducer(None, states.get(key), ev)
    return time.perf_counter() - t0


_ES_COUNTER: Any = None


def _es_counter() -> Any:
    """The eventsourcing aggregate of a counter cell (defined once: the library registers its topic)."""
    global _ES_COUNTER
    if _ES_COUNTER is None:
        from eventsourcing.domain import Aggregate, event

        class Counter(Aggregate):
            @event("Created")
            def __init__(self, key: str, by: int) -> None:
                self.key = key
                self.n = by

            @event("Incremented")
            def increment(self, by: int) -> None:
                self.n += by

        _ES_COUNTER = Counter
    return _ES_COUNTER


def eventsourcing_run(persistence: str, events: int, cells: int = CELLS) -> float:
    """Seconds for the counter workload in the eventsourcing library: one aggregate per cell, one event per step.

    ``persistence``: ``"memory"`` (its plain-old-Python-objects store) or
    ``"sqlite"`` (a SQLite file; each save is a committed transaction).
    """
    from eventsourcing.application import Application

    Counter = _es_counter()
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-es-"))
    env = {} if persistence == "memory" else {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                                               "SQLITE_DBNAME": str(tmp / "events.db")}
    try:
        app = Application(env=env)
        aggregates: dict[str, Any] = {}
        work = [(v["id"], v["by"]) for _s, v in counter_events(events, cells)]
        t0 = time.perf_counter()
        for key, by in work:
            agg = aggregates.get(key)
            if agg is None:
                agg = aggregates[key] = Counter(key, by)
            else:
                agg.increment(by)
            app.save(agg)
        elapsed = time.perf_counter() - t0
        app.close()
        return elapsed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------- replay
def replay_vs_run(events: int = 20_000) -> tuple[float, float]:
    """(seconds of the original run, seconds of ``aos.replay(...).verify()``) of the same journal.

    The original run is everything that wrote the journal: admitting the
    events and running the steps, durably (group commit).
    """
    m = counter_manifest()
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
    try:
        with aos.World.open(tmp / "w", m, workers=0, snapshot_every=0, snapshot_on_close=False) as w:
            t0 = time.perf_counter()
            for schema, value in counter_events(events):
                w.submit(schema, value)
            w.run()
            run = time.perf_counter() - t0
        t0 = time.perf_counter()
        aos.replay(tmp / "w", m).verify()
        return run, time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replay_native_parallel(steps: int = 2_000, workers: int = 2, rounds: int = 1) -> list[tuple[float, float]]:
    """[(seconds of a serial ``verify()``, seconds of ``verify(workers=workers)``), ...] of one journal of the
    native spin reducer (``steps`` steps over 10,000 cells), timed in turns ``rounds`` times."""
    m = spin_manifest(True, NATIVE_ITERATIONS)
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
    try:
        with aos.World.open(tmp / "w", m, workers=workers, snapshot_every=0, snapshot_on_close=False) as w:
            for i in range(steps):
                w.submit("bench/Go@1", {"id": i % CELLS})
            w.run()
        rows = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            aos.replay(tmp / "w", m).verify()
            serial = time.perf_counter() - t0
            t0 = time.perf_counter()
            aos.replay(tmp / "w", m).verify(workers=workers)
            rows.append((serial, time.perf_counter() - t0))
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def shadow_vs_replay(events: int = 20_000, rounds: int = 1) -> list[tuple[float, float]]:
    """[(seconds of ``aos.replay(...).verify()``, seconds of ``shadow_run``), ...] on the same journal.

    The shadow runs the world's own manifest over the whole journal (it
    reproduces every step: the common case of a rehearsal, where most steps
    match); the two are timed in turns, ``rounds`` times.
    """
    from aos.shadow import shadow_run

    m = counter_manifest()
    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
    try:
        with aos.World.open(tmp / "w", m, workers=0, snapshot_every=0, snapshot_on_close=False) as w:
            for schema, value in counter_events(events):
                w.submit(schema, value)
            w.run()
        rows = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            aos.replay(tmp / "w", m).verify()
            t1 = time.perf_counter()
            report = shadow_run(tmp / "w", m)
            t2 = time.perf_counter()
            assert report.ok and report.compared == events, report.summary()
            rows.append((t1 - t0, t2 - t1))
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------- memory
MEMORY_SCRIPT = r"""
import resource, sys, tempfile, shutil
from pathlib import Path
import aos
cells = int(sys.argv[1])
def peak_mb():
    # this process's own peak (VmHWM): ru_maxrss also counts the parent's RSS when it was larger,
    # since Linux carries the high-water mark over the fork and the exec that started this process
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
m = aos.Manifest("bench/memory@1")
@m.reducer("bench/Cell@1", key="id", events=["bench/Set@1"], code_id="cell")
def cell(ctx, state, event):
    return event.value["v"]
tmp = Path(tempfile.mkdtemp(prefix="aos-bench-rss-"))
try:
    with aos.World.open(tmp / "w", m, workers=0, durability="none", snapshot_every=0,
                        snapshot_on_close=False) as w:
        payload = "x" * 52  # with its CBOR head and map: about 64 bytes of state per cell
        batch = 50_000
        for start in range(0, cells, batch):
            for i in range(start, min(cells, start + batch)):
                w.submit("bench/Set@1", {"id": i, "v": {"p": payload, "i": i}})
            w.run()
        assert w.stats["cells"] == cells  # (w.cells() would build a sorted list of them all)
    print(peak_mb())
finally:
    shutil.rmtree(tmp, ignore_errors=True)
"""


def peak_rss_mb(cells: int, python: str | None = None) -> float:
    """Peak RSS (MB) of a fresh process holding a world of ``cells`` cells of ~64-byte state."""
    import subprocess
    import sys

    out = subprocess.run([python or sys.executable, "-c", MEMORY_SCRIPT, str(cells)], capture_output=True,
                         text=True, check=True, timeout=1800)
    return float(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------- crossings
def crossings_per_step(events: int = 2_000) -> float:
    """Python functions entered, or C functions called from Python code, per committed step (inline executor).

    Counted with ``sys.setprofile`` while ``World.run`` runs ``events`` steps of
    the counter reducer (whose body calls nothing, so the reducer call itself
    is one): what a step costs in crossings between the interpreter and C.
    """
    import sys

    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call" or event == "c_call":
            count += 1

    try:
        with aos.World.open(tmp / "w", counter_manifest(), workers=0, snapshot_every=0,
                            snapshot_on_close=False) as w:
            for schema, value in counter_events(events):
                w.submit(schema, value)
            w.sync()
            sys.setprofile(profile)
            try:
                steps = w.run().steps
            finally:
                sys.setprofile(None)
        return (count - 1) / steps  # less the call of sys.setprofile(None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- journal
def journal_vs_raw(records: int = 50_000, durability: str = "group") -> tuple[float, float]:
    """(seconds to append ``records`` journal records, seconds to write the same bytes to a plain file).

    Both write in the same groups and fsync after each group (``group``) or never (``none``).
    """
    import os

    from aos.journal import Durability, Journal
    from aos.records import StepCommitted

    tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
    try:
        era = bytes(32)
        group = 1000
        recs = [StepCommitted(i + 1, bytes([i % 256]) * 32) for i in range(records)]
        j = Journal.open(tmp / "journal", era, Durability(durability, group_commits=group, group_ms=1e9))
        t0 = time.perf_counter()
        for r in recs:
            j.append(r)
            j.commit_point()
        j.flush(sync=durability != "none")
        journal = time.perf_counter() - t0
        j.close()
        data = b"".join(p.read_bytes() for p in sorted((tmp / "journal").glob("*.seg")))
        chunk = max(1, len(data) * group // records)
        fd = os.open(tmp / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        t0 = time.perf_counter()
        for off in range(0, len(data), chunk):
            os.write(fd, data[off:off + chunk])
            if durability != "none":
                os.fsync(fd)
        raw = time.perf_counter() - t0
        os.close(fd)
        return journal, raw
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- metrics
# Scrapes URL every EVERY seconds until its stdin closes, then prints how many it made.
_HTTP_SCRAPER = """
import sys, threading, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
n = 0
while not done.wait(every):
    urllib.request.urlopen(url, timeout=30).read()
    n += 1
print(n)
"""


@dataclass
class MetricsRun(KernelRun):
    """:class:`KernelRun` with the Prometheus exporter on and scraped every ``every`` seconds while ``run()`` goes.

    ``http``: scrape ``serve_prometheus`` over HTTP on 127.0.0.1 (only inside a network namespace whose
    only interface is loopback) from another process, as Prometheus does (an HTTP client in this process
    would charge the world for the client's work too); else the same collector is read in-process on a
    thread (``generate_latest``: the world's side of a scrape and the text, without the socket).
    ``scraping`` False: the exporter is off (the baseline). Call :meth:`finish` after the timed ``run``.
    """

    events: int = 100_000
    every: float = 0.1
    scraping: bool = True
    http: bool = False
    scrapes: int = 0

    def setup(self) -> tuple[aos.World, Path]:
        w, tmp = super().setup()
        self.scrapes = 0
        self._server: Any = None
        self._fetch: Any = None
        if self.scraping:
            from aos.exporter import prometheus_collector, serve_prometheus

            if self.http:
                self._server = serve_prometheus(w, 0)
                self._fetch = "http"
            else:
                from prometheus_client import CollectorRegistry, generate_latest

                registry = CollectorRegistry(auto_describe=False)
                registry.register(prometheus_collector(w))
                self._fetch = lambda: generate_latest(registry)
        return w, tmp

    def run(self, w: aos.World) -> int:
        import threading

        if self._fetch is None:
            return w.run().steps
        if self._fetch == "http":  # the scraper is another process, as Prometheus is
            import subprocess
            import sys

            scraper = subprocess.Popen([sys.executable, "-c", _HTTP_SCRAPER, self._server.url, str(self.every)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                return w.run().steps
            finally:
                out, _ = scraper.communicate("", timeout=60)  # stdin closed: it stops and says how many
                self.scrapes += int(out.strip() or 0)
        stop = threading.Event()

        def scraper() -> None:
            while not stop.wait(self.every):
                self._fetch()
                self.scrapes += 1

        t = threading.Thread(target=scraper, daemon=True)
        t.start()
        try:
            return w.run().steps
        finally:
            stop.set()
            t.join()

    def finish(self, w: aos.World, tmp: Path) -> None:
        if self._server is not None:
            self._server.close()
        self.teardown(w, tmp)


def metrics_overhead(events: int, http: bool, every: float = 0.1, on_first: bool = False,
                     durability: str = "group") -> tuple[float, float, int, float, float]:
    """The same run without and with the exporter scraped every ``every`` s (``on_first``: the scraped run
    first; alternate it to cancel the order's effect): (seconds off, seconds on, scrapes, CPU seconds off,
    CPU seconds on; the process's CPU time, the scraping thread's included)."""
    took: dict[bool, float] = {}
    cpu: dict[bool, float] = {}
    scrapes = 0
    for scraping in ((True, False) if on_first else (False, True)):
        wl = MetricsRun(events=events, every=every, scraping=scraping, http=http, durability=durability)
        w, tmp = wl.setup()
        try:
            c0, t0 = time.process_time(), time.perf_counter()
            wl.run(w)
            took[scraping], cpu[scraping] = time.perf_counter() - t0, time.process_time() - c0
        finally:
            wl.finish(w, tmp)
        scrapes += wl.scrapes
    return took[False], took[True], scrapes, cpu[False], cpu[True]


# ------------------------------------------------------------ typed values
@dataclass
class TypedInc:
    """The event of the typed counter (``typed_counter_manifest``)."""

    id: str
    by: int


@dataclass
class TypedCount:
    """The state of the typed counter."""

    n: int = 0


def typed_counter_manifest() -> aos.Manifest:
    """The counter of ``counter_manifest`` with a dataclass state and event (the same journal bytes but the era)."""
    m = aos.Manifest("bench/counter@1")

    @m.reducer("bench/Counter@1", key="id", events=["bench/Inc@1"], state=TypedCount, event=TypedInc)
    def counter(ctx: Any, state: Any, event: Any) -> Any:
        return TypedCount((state.n if state is not None else 0) + event.value.by)

    return m


@dataclass
class TypedRun(KernelRun):
    """``KernelRun`` with the counter typed (``typed=True``) or on dicts: ``typed_vs_dict``."""

    typed: bool = True

    def setup(self) -> tuple[aos.World, Path]:
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        m = typed_counter_manifest() if self.typed else counter_manifest()
        w = aos.World.open(tmp / "w", m, durability=self.durability, workers=self.workers,
                           snapshot_every=0, snapshot_on_close=False)
        for schema, value in counter_events(self.events, self.cells):
            w.submit(schema, value)
        w.sync()
        return w, tmp


# ---------------------------------------------------------------- snapshots off the commit path
_STEP_TIMES: list[float] = []  # when each step of SnapshotStall's measured run ran (outside any state)
STALL_CHAINS = 64  # events in flight in SnapshotStall's measured run: each step emits the next of its chain


def stall_manifest(cells: int) -> aos.Manifest:
    m = aos.Manifest("bench/stall@1")

    @m.reducer("bench/Cell@1", key="id", events=["bench/Set@1"])
    def cell(ctx: Any, state: Any, event: Any) -> Any:
        _STEP_TIMES.append(time.perf_counter())
        hops = event.value["hops"]
        if hops > 0:
            ctx.emit("bench/Set@1", {"id": (event.value["id"] * 7919 + 1) % cells, "hops": hops - 1})
        return {"n": (state or {"n": 0})["n"] + 1, "hops": hops}

    return m


@dataclass
class SnapshotStall:
    """The longest gap between two consecutive commits while a snapshot of ``cells`` cells is written.

    A world of ``cells`` cells (one step each) runs about ``steps`` more
    steps over them — :data:`STALL_CHAINS` chains of events, each step
    emitting the next, so few inputs wait (as in a serving world) — with
    ``snapshot_every`` set so that a snapshot falls due early in that run.
    The gap is measured between the reducer calls of consecutive steps (each
    commit lies between two). ``background``: the default background writer,
    else the synchronous one.
    """

    cells: int = 1_000_000
    steps: int = 300_000
    background: bool = True

    def setup(self) -> tuple[aos.World, Path]:
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        w = aos.World.open(tmp / "w", stall_manifest(self.cells), workers=0, snapshot_every=0,
                           snapshot_on_close=False, background_snapshots=self.background)
        for i in range(self.cells):
            w.submit("bench/Set@1", {"id": i, "hops": 0})
        w.run()
        hops = self.steps // STALL_CHAINS
        for c in range(STALL_CHAINS):
            w.submit("bench/Set@1", {"id": (c * 104_729) % self.cells, "hops": hops})
        w.sync()
        w.snapshot_every = self.cells + 1_000  # due once, 1,000 steps into the measured run
        return w, tmp

    def run(self, w: aos.World) -> float:
        """The longest commit stall, in ms (the snapshot due in the run is journaled by its end)."""
        _STEP_TIMES.clear()
        w.run()
        times = _STEP_TIMES[:]
        _STEP_TIMES.clear()
        return max(b - a for a, b in zip(times, times[1:], strict=False)) * 1000.0

    @staticmethod
    def teardown(w: aos.World, tmp: Path) -> None:
        w.close()
        shutil.rmtree(tmp, ignore_errors=True)


def snapshot_stall_ms(cells: int, steps: int) -> tuple[float, float]:
    """``(background, synchronous)`` longest commit stall in ms while a ``cells``-cell snapshot is written."""
    out = []
    for background in (True, False):
        work = SnapshotStall(cells, steps, background)
        w, tmp = work.setup()
        try:
            out.append(work.run(w))
        finally:
            SnapshotStall.teardown(w, tmp)
    return out[0], out[1]
