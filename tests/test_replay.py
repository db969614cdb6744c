"""Replay-or-die: serial replay reproduces the journal, or names the first divergence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aos


def manifest_with(add: int, name: str = "test/div@1") -> aos.Manifest:
    m = aos.Manifest(name)

    # The same declared code identity with different behaviour: what replay must catch.
    @m.reducer("test/C@1", key="k", events=["test/E@1"], code_id="pinned")
    def c(ctx: Any, state: Any, event: Any) -> Any:
        n = (state or 0) + 1
        return n + add if ctx.key == "b" and n > 2 else n

    return m


def fill(path: Path, m: aos.Manifest, **kw: Any) -> str:
    with aos.World.open(path, m, **kw) as w:
        for i in range(12):
            w.submit("test/E@1", {"k": "ab"[i % 2]})
        w.run()
        return w.snapshot_hash()


def test_verify_returns_the_world_hash(tmp_path: Path) -> None:
    m = manifest_with(0)
    h = fill(tmp_path / "w", m)
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_divergence_names_event_reducer_key_and_hashes(tmp_path: Path) -> None:
    fill(tmp_path / "w", manifest_with(0))
    with pytest.raises(aos.ReplayDivergenceError) as info:
        aos.replay(tmp_path / "w", manifest_with(1)).verify()
    e = info.value
    # b's third step (tickets alternate a, b, a, b, ...) is the first to differ
    assert (e.event_id, e.reducer, e.key) == (6, "test/C@1", "b")
    assert e.expected != e.actual and len(e.expected) == len(e.actual) == 64
    assert "event_id 6" in str(e) and "test/C@1" in str(e)


def test_open_replays_tail_and_dies_on_divergence(tmp_path: Path) -> None:
    fill(tmp_path / "w", manifest_with(0), snapshot_every=0, snapshot_on_close=False)
    with pytest.raises(aos.ReplayDivergenceError, match="event_id 6"):
        aos.World.open(tmp_path / "w", manifest_with(1))
    # the world is not left locked or damaged by the failed open
    with aos.World.open(tmp_path / "w", manifest_with(0)) as w:
        assert w.state("test/C@1", "b") == 6


def test_replay_progress_callback(tmp_path: Path) -> None:
    m = manifest_with(0)
    fill(tmp_path / "w", m)
    seen: list[int] = []
    aos.replay(tmp_path / "w", m).verify(progress=seen.append)
    assert seen == sorted(seen) and seen[-1] > 12


def test_a_snapshot_before_the_first_step_replays(tmp_path: Path) -> None:
    """``snapshot()`` right after opening (event_id 0) journals a record that replay and reopening read back."""
    m = aos.Manifest("t/early@1")

    @m.reducer("t/C@1", events=["t/E@1"])
    def count(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("t/E@1", {})
        assert w.snapshot().event_id == 0
        w.run()
        h = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == h
    with aos.World.open(tmp_path / "w", m) as w:
        assert w.state("t/C@1") == 1


def _count_parallel_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Steps the parallel replay ran on the threads executor (observed, not replaced)."""
    import importlib

    from aos.executor import ThreadsExecutor

    replay_module = importlib.import_module("aos.replay")
    ran: list[int] = []
    run = ThreadsExecutor.run

    def counting(self: ThreadsExecutor, *args: Any, **kw: Any) -> Any:
        result = run(self, *args, **kw)
        ran.append(result.steps)
        return result

    monkeypatch.setattr(replay_module.ThreadsExecutor, "run", counting)
    return ran


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_parallel_replay_reaches_the_serial_state_and_the_same_divergence(tmp_path: Path, workers: int,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _count_parallel_steps(monkeypatch)
    m = manifest_with(0)
    h = fill(tmp_path / "w", m, snapshot_every=5)
    assert aos.replay(tmp_path / "w", m).verify(workers=workers) == h
    assert sum(ran) == 12  # every step ran on the executor
    for until in (0, 1, 5, 7):  # stopped at a ticket: the same state as the serial replay stopped there
        serial_until, parallel_until = aos.replay(tmp_path / "w", m), aos.replay(tmp_path / "w", m)
        assert serial_until.verify(until=until) == parallel_until.verify(until=until, workers=workers)
        assert serial_until.state("test/C@1", "b") == parallel_until.state("test/C@1", "b")
    with pytest.raises(aos.ReplayDivergenceError) as serial:
        aos.replay(tmp_path / "w", manifest_with(1)).verify()
    with pytest.raises(aos.ReplayDivergenceError) as parallel:
        aos.replay(tmp_path / "w", manifest_with(1)).verify(workers=workers)
    assert (parallel.value.event_id, parallel.value.reducer, parallel.value.key, parallel.value.expected,
            parallel.value.actual) == (serial.value.event_id, serial.value.reducer, serial.value.key,
                                       serial.value.expected, serial.value.actual) == \
        (6, "test/C@1", "b", serial.value.expected, serial.value.actual)


def test_a_parallel_replay_of_a_streaming_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events admitted while steps were in flight (visible from a later ticket) replay in parallel too."""
    import threading

    m = aos.Manifest("t/stream@1")

    @m.reducer("t/Sum@1", key="k", events=["t/Add@1"])
    def add(ctx: Any, state: Any, event: Any) -> Any:
        total = (state or 0) + event.value["n"]
        if event.value["n"] % 3 == 0:
            ctx.emit("t/Add@1", {"k": (event.value["k"] + 1) % 7, "n": event.value["n"] + 1})
        return total

    with aos.World.open(tmp_path / "w", m, workers=2) as w:
        stop = threading.Event()

        def produce() -> None:
            for i in range(300):
                w.submit("t/Add@1", {"k": i % 7, "n": i})
            stop.set()

        producer = threading.Thread(target=produce)
        producer.start()
        while not stop.is_set():
            w.run()
        producer.join()
        w.run()
        h = w.snapshot_hash()
    ran = _count_parallel_steps(monkeypatch)
    assert aos.replay(tmp_path / "w", m).verify() == h
    assert aos.replay(tmp_path / "w", m).verify(workers=2) == h
    assert sum(ran) >= 300


def test_replay_workers_must_be_a_count(tmp_path: Path) -> None:
    m = manifest_with(0)
    fill(tmp_path / "w", m)
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="workers must be an int >= 0"):
            aos.replay(tmp_path / "w", m).verify(workers=bad)  # type: ignore[arg-type]
