"""The inline executor's C step loop (aos/_core/inline_loop.pyx) against the reference executor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import pytest

import aos


def counter_manifest(invariant: bool = False) -> aos.Manifest:
    m = aos.Manifest("test/inline-loop@1")

    @m.reducer("t/Counter@1", key="id", events=["t/Inc@1"])
    def counter(ctx: Any, state: Any, event: Any) -> Any:
        return {"n": (state or {"n": 0})["n"] + event.value["by"]}

    if invariant:
        m.invariant("never 1000", lambda reducer, key, state: state is None or state["n"] != 1000)
    return m


def python_calls(fn: Callable[[], Any]) -> int:
    """How many times Python code was entered or called C code while ``fn`` ran (``sys.setprofile`` events)."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call" or event == "c_call":
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count - 1  # the call of sys.setprofile(None) itself


def fill(w: aos.World, n: int, cells: int = 50) -> None:
    for i in range(n):
        w.submit("t/Inc@1", {"id": f"c{i % cells}", "by": 1 + i % 7})


def test_a_common_step_enters_python_code_once_for_the_reducer(tmp_path: Path) -> None:
    """The goal of the C loop: ≤ 3 crossings between Python and C per committed step (the reducer call is one)."""
    n = 2_000
    with aos.World.open(tmp_path / "w", counter_manifest(), workers=0, snapshot_every=0) as w:
        fill(w, n)
        w.sync()
        calls = python_calls(w.run)
        assert w.metrics()["steps_by_path"] == {"c_loop": n, "reference": 0}
    per_step = calls / n
    assert per_step <= 3, f"{per_step:.2f} Python calls per committed step"
    with aos.World.open(tmp_path / "r", counter_manifest(), reference=True, snapshot_every=0) as w:
        fill(w, n)
        w.sync()
        reference = python_calls(w.run) / n
    assert reference > 3 * per_step  # what the C loop saves: the reference path is plain Python


def test_a_verifying_replay_reads_admissions_and_steps_in_the_c_loop(tmp_path: Path) -> None:
    """A replay compares each admission and step in the C loop too: Python code is entered for the reducer and
    little else (the loop hands anything it does not recognise to the replay's Python loop, which costs many
    calls per record)."""
    n = 2_000
    with aos.World.open(tmp_path / "w", counter_manifest(), workers=0, snapshot_every=0) as w:
        fill(w, n)
        w.run()
    replay = aos.replay(tmp_path / "w", counter_manifest())
    per_step = python_calls(replay.verify) / n
    assert per_step <= 1.5, f"{per_step:.2f} Python calls per replayed step"


@pytest.mark.parametrize("snapshot_every", [0, 7])
def test_the_c_loop_writes_the_reference_journal(tmp_path: Path, snapshot_every: int) -> None:
    def play(directory: Path, **opts: Any) -> tuple[bytes, str]:
        with aos.World.open(directory, counter_manifest(), snapshot_every=snapshot_every, **opts) as w:
            fill(w, 300, cells=13)
            w.run(max_steps=100)
            fill(w, 50, cells=5)
            w.run()
            h = w.snapshot_hash()
        return b"".join(p.read_bytes() for p in sorted((directory / "journal").glob("*.seg"))), h

    assert play(tmp_path / "c", workers=0) == play(tmp_path / "ref", reference=True)
    assert aos.replay(tmp_path / "c", counter_manifest()).verify() == play(tmp_path / "again", workers=0)[1]


def test_segments_rotate_under_the_c_loop(tmp_path: Path) -> None:
    """The C loop appends through the journal's frame writer; a full segment starts the next one."""
    opts: dict[str, Any] = {"segment_bytes": 4096, "snapshot_every": 0}
    with aos.World.open(tmp_path / "c", counter_manifest(), workers=0, **opts) as w:
        fill(w, 500)
        w.run()
        h = w.snapshot_hash()
    with aos.World.open(tmp_path / "ref", counter_manifest(), reference=True, **opts) as w:
        fill(w, 500)
        w.run()
    segs = sorted((tmp_path / "c" / "journal").glob("*.seg"))
    assert len(segs) > 5
    reference = sorted((tmp_path / "ref" / "journal").glob("*.seg"))
    assert [p.read_bytes() for p in segs] == [p.read_bytes() for p in reference]
    assert aos.replay(tmp_path / "c", counter_manifest()).verify() == h


def test_steps_the_c_loop_does_not_handle_go_the_reference_path(tmp_path: Path) -> None:
    """A manifest with invariants runs every step through the reference path, with the same journal."""
    with aos.World.open(tmp_path / "w", counter_manifest(invariant=True), workers=0, on_violation="record") as w:
        fill(w, 100)
        w.run()
        assert w.metrics()["steps_by_path"] == {"c_loop": 0, "reference": 100}


def test_reference_takes_no_workers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reference=True"):
        aos.World.open(tmp_path / "w", counter_manifest(), reference=True, workers=2)


def test_reference_is_a_bool(tmp_path: Path) -> None:
    with pytest.raises(aos.ArgumentError, match="reference must be True or False"):
        aos.World.open(tmp_path / "w", counter_manifest(), reference="yes")  # type: ignore[arg-type]
    assert not (tmp_path / "w").exists()  # refused before anything was created
