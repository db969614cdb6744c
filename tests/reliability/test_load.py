"""Load: a flood of submissions from several threads against a bounded queue.

Submitter threads flood a world with ``max_queued`` small while a runner
thread drains it. Some submit without blocking (refusals are retried after
a pause), some block with a timeout. Checks: every submit returns an
admission number or raises ``Backpressure`` (nothing else); every admitted
event is in the journal exactly once, with its value, and nothing refused
is; the queue never held more than ``max_queued`` inputs; the Python heap
(tracemalloc) and the process's resident memory grow by a bounded amount
while the flood goes on, however long it is; the journal replays to the
world's state.
"""

from __future__ import annotations

import array
import gc
import os
import random
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.records import EventAdmitted
from reliability_support import Failures, journal_entries, record, scaled

pytestmark = pytest.mark.parallel

SHORT_EVENTS, LONG_EVENTS = 6_000, 100_000  # in total, over all submitters
THREADS = 4
MAX_QUEUED = 32
HEAP_GROWTH_LIMIT = 4 << 20  # bytes the traced heap may grow after the warm-up quarter
RSS_GROWTH_LIMIT = 64 << 20


def manifest() -> aos.Manifest:
    m = aos.Manifest("test/load@1")

    @m.reducer("test/Sum@1", key="k", events=["test/Add@1"])
    def total(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + event.value["n"]

    return m


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def flood(tmp: Path, events: int, workers: int, seed: int) -> tuple[dict[str, Any], Failures]:
    t0 = time.monotonic()
    failures = Failures()
    m = manifest()
    path = tmp / f"load-{workers}"
    per_thread = events // THREADS
    # preallocated, so that the test's own bookkeeping does not grow the heap it measures
    seqs = array.array("q", [-1]) * (per_thread * THREADS)  # admission number of thread t's event i
    refused = {"nonblocking": 0, "timeout": 0}
    errors: list[BaseException] = []
    samples: list[tuple[int, int, int]] = []  # (submitted so far, traced heap, rss)
    submitted = [0]
    lock = threading.Lock()
    stop = threading.Event()
    with aos.World.open(path, m, workers=workers, max_queued=MAX_QUEUED, snapshot_every=5_000,
                        durability="group") as w:
        def runner() -> None:
            try:
                while not stop.is_set():
                    w.run()
                    time.sleep(0.0002)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def submitter(t: int) -> None:
            rnd = random.Random(seed * 100 + t)
            try:
                for i in range(per_thread):
                    value = {"k": (t * 7 + i) % 11, "n": 1, "t": t, "i": i}
                    while True:
                        try:
                            if rnd.random() < 0.5:
                                seq = w.submit("test/Add@1", value, block=False)
                            else:
                                seq = w.submit("test/Add@1", value, timeout=rnd.choice([0.0, 0.001, 5.0]))
                        except aos.Backpressure as exc:
                            refused["timeout" if "stayed full" in str(exc) or "did not reach" in str(exc)
                                    else "nonblocking"] += 1
                            time.sleep(rnd.choice([0.0, 0.0001, 0.001]))
                            continue
                        break
                    seqs[t * per_thread + i] = seq
                    with lock:
                        submitted[0] += 1
            except BaseException as exc:
                errors.append(exc)

        def sampler() -> None:
            while not stop.is_set():
                gc.collect()
                samples.append((submitted[0], tracemalloc.get_traced_memory()[0], rss()))
                time.sleep(0.05)

        tracemalloc.start()
        try:
            threads = [threading.Thread(target=runner), threading.Thread(target=sampler)]
            threads += [threading.Thread(target=submitter, args=(t,)) for t in range(THREADS)]
            for th in threads:
                th.start()
            for th in threads[2:]:
                th.join()
            stop.set()
            for th in threads[:2]:
                th.join()
        finally:
            tracemalloc.stop()
        w.run()
        queued_max = w.metrics()["queue"]["queued_max"]
        h = w.snapshot_hash()
        total = sum(w.state("test/Sum@1", k) or 0 for k in range(11))
    admitted = [(seq, n // per_thread, n % per_thread) for n, seq in enumerate(seqs) if seq >= 0]
    for exc in errors:
        failures.add(f"workers={workers}: a submitter or the runner raised {type(exc).__name__}: {exc}")
    recs = [r for _e, r in journal_entries(path, m) if isinstance(r, EventAdmitted)]
    journaled = {r.seq: canonical.decode(r.value) for r in recs}
    if len(recs) != len(journaled) or sorted(journaled) != sorted(s for s, _t, _i in admitted):
        failures.add(f"workers={workers}: {len(admitted)} admitted, {len(recs)} journaled (or seqs differ)")
    for seq, t, i in admitted:
        v = journaled.get(seq)
        if v is None or (v["t"], v["i"]) != (t, i):
            failures.add(f"workers={workers}: admission {seq} journals {v}, not thread {t} event {i}")
            break
    if len({(t, i) for _s, t, i in admitted}) != per_thread * THREADS:
        failures.add(f"workers={workers}: some event was admitted twice or never")
    if total != len(admitted):
        failures.add(f"workers={workers}: the cells count {total} events, {len(admitted)} were admitted")
    if queued_max > MAX_QUEUED:
        failures.add(f"workers={workers}: {queued_max} inputs were queued at once (max_queued={MAX_QUEUED})")
    warm = [s for s in samples if s[0] >= len(admitted) // 4]
    heap_growth = max(s[1] for s in warm) - warm[0][1] if len(warm) > 1 else 0
    rss_growth = max(s[2] for s in warm) - warm[0][2] if len(warm) > 1 else 0
    if heap_growth > HEAP_GROWTH_LIMIT or rss_growth > RSS_GROWTH_LIMIT:
        failures.add(f"workers={workers}: memory grew during the flood: heap +{heap_growth} B, rss +{rss_growth} B")
    if aos.replay(path, m).verify() != h:
        failures.add(f"workers={workers}: the journal does not replay to the world's state")
    counts = {"workers": workers, "threads": THREADS, "max_queued": MAX_QUEUED, "submitted": per_thread * THREADS,
              "admitted": len(admitted), "journaled": len(recs), "refused_nonblocking": refused["nonblocking"],
              "refused_timeout": refused["timeout"], "queued_max": queued_max, "heap_growth_kib": heap_growth // 1024,
              "rss_growth_kib": rss_growth // 1024, "samples": len(samples),
              "wall_s": round(time.monotonic() - t0, 1)}
    return counts, failures


def run_load(tmp: Path, events: int, seed: int) -> tuple[dict[str, Any], Failures]:
    failures = Failures()
    counts: dict[str, Any] = {}
    for workers in (0, 2):
        c, f = flood(tmp, events, workers, seed)
        counts[f"workers_{workers}"] = c
        failures.items.extend(f.items)
    counts["lost"] = sum(c["admitted"] - c["journaled"] for c in counts.values() if isinstance(c, dict))
    counts["failures"] = len(failures)
    return counts, failures


def test_load_short(tmp_path: Path) -> None:
    counts, failures = run_load(tmp_path, scaled(SHORT_EVENTS), 1)
    record("short", "load", **counts)
    assert not failures, failures.message()


@pytest.mark.long
def test_load_long(tmp_path: Path) -> None:
    counts, failures = run_load(tmp_path, scaled(LONG_EVENTS), 2)
    record("long", "load", **counts)
    assert not failures, failures.message()
