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
