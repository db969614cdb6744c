"""Backpressure: a bounded input queue; submit blocks, times out or raises; nothing is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from aos.records import EventAdmitted

pytestmark = pytest.mark.parallel


def manifest(sleep: float = 0.0) -> aos.Manifest:
    m = aos.Manifest("test/flood@1")

    @m.reducer("test/C@1", key="k", events=["test/E@1"], code_id=f"c{sleep}")
    def c(ctx: Any, state: Any, event: Any) -> Any:
        if sleep:
            time.sleep(sleep)
        return (state or 0) + event.value["n"]

    return m


def admitted(path: Path, m: aos.Manifest) -> int:
    return sum(isinstance(r, EventAdmitted) for _e, r in JournalReader(path / "journal", m.era).records())


@pytest.mark.parametrize("workers", [0, 2])
def test_non_blocking_submit_raises_when_full_and_journals_nothing(tmp_path: Path, workers: int) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, max_queued=5, workers=workers, offload="all") as w:
        for i in range(5):
            w.submit("test/E@1", {"k": i, "n": 1}, block=False)
        before = w.stats["records"]
        with pytest.raises(aos.Backpressure, match="max_queued=5"):
            w.submit("test/E@1", {"k": 9, "n": 1}, block=False)
        assert w.stats["records"] == before
        w.run()
        w.submit("test/E@1", {"k": 9, "n": 1}, block=False)
        w.run()
    assert admitted(tmp_path / "w", m) == 6


@pytest.mark.parametrize("workers", [0, 2])
def test_blocking_submit_makes_room_and_memory_stays_bounded(tmp_path: Path, workers: int) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, max_queued=50, workers=workers, offload="all") as w:
        for i in range(2_000):
            w.submit("test/E@1", {"k": i % 13, "n": 1})
        w.run()
        assert w.metrics()["queue"]["queued_max"] <= 50
        assert sum(w.state("test/C@1", k) for k in range(13)) == 2_000
        h = w.snapshot_hash()
    assert admitted(tmp_path / "w", m) == 2_000
    assert aos.replay(tmp_path / "w", m).verify() == h


@pytest.mark.parametrize("workers", [0, 2])
def test_flood_from_threads_while_running_loses_nothing(tmp_path: Path, workers: int) -> None:
    m = manifest()
    stop = threading.Event()
    errors: list[BaseException] = []
    seqs: list[int] = []
    with aos.World.open(tmp_path / "w", m, max_queued=20, workers=workers, offload="all") as w:
        def runner() -> None:
            try:
                while not stop.is_set():
                    w.run()
                    time.sleep(0.0005)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def submitter(base: int) -> None:
            try:
                for i in range(300):
                    seqs.append(w.submit("test/E@1", {"k": (base + i) % 7, "n": 1}, timeout=30))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        run_thread = threading.Thread(target=runner)
        run_thread.start()
        subs = [threading.Thread(target=submitter, args=(b,)) for b in range(3)]
        for t in subs:
            t.start()
        for t in subs:
            t.join()
        stop.set()
        run_thread.join()
        assert not errors, errors
        w.run()
        assert sorted(seqs) == list(range(900))
        assert sum(w.state("test/C@1", k) for k in range(7)) == 900
        assert w.metrics()["queue"]["queued_max"] <= 20
        h = w.snapshot_hash()
    assert admitted(tmp_path / "w", m) == 900
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_submit_with_a_timeout_that_passed_raises_and_journals_nothing(tmp_path: Path) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, max_queued=3, workers=0) as w:
        for i in range(3):
            w.submit("test/E@1", {"k": i, "n": 1})
        before = w.stats["records"]
        with pytest.raises(aos.Backpressure, match="stayed full"):
            w.submit("test/E@1", {"k": 9, "n": 1}, timeout=0)
        assert w.stats["records"] == before
        assert w.submit("test/E@1", {"k": 9, "n": 1}, timeout=5) == 3  # made room by running steps
        w.run()
    assert admitted(tmp_path / "w", m) == 4
