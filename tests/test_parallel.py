"""The threads executor: run limits, metrics, fairness figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from conftest import make_counter_manifest

pytestmark = pytest.mark.parallel


@pytest.mark.parametrize("workers", [0, 1, 3])
@pytest.mark.parametrize("offload", ["auto", "all"])
def test_max_steps_is_exact_with_workers(tmp_path: Path, workers: int, offload: str) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, offload=offload) as w:
        for i in range(40):
            w.submit("test/Add@1", {"id": i % 5, "forward_to": (i + 1) % 5})
        assert w.run(max_steps=17).steps == 17
        assert w.last_event_id == 17
        rest = w.run()
        assert rest.quiescent and w.last_event_id == 17 + rest.steps
        h = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == h


@pytest.mark.parametrize("workers", [0, 2])
def test_metrics_report_scheduling_and_commits(tmp_path: Path, workers: int) -> None:
    m = make_counter_manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, offload="all") as w:
        for _ in range(200):
            w.submit("test/Add@1", {"id": "hot"})
        for i in range(10):
            w.submit("test/Add@1", {"id": f"cold{i}"})
        w.run()
        mt = w.metrics()
    assert mt["executor"] == ("inline" if workers == 0 else "threads")
    assert mt["tickets"] == mt["commits"] == 420  # counter + total per event
    assert mt["queue"]["queued"] == 0 and mt["queue"]["queued_max"] >= 210
    # round robin: with the hot cell, the total cell and ten cold cells ready, no input waits
    # more than one pass over the ready cells
    assert 0 < mt["wait_ticks"]["max"] <= 12
    assert mt["wait_ticks"]["max_cell"] is not None
    assert sum(n for _b, n in mt["commit_latency_us"]["buckets"]) == 420
    assert mt["worker_busy_seconds"] > 0
    assert mt["queue"]["in_flight_max"] >= 1


def test_cold_cell_is_ticketed_right_behind_a_hot_cell(tmp_path: Path) -> None:
    m = aos.Manifest("test/hol@1")

    @m.reducer("test/C@1", key="k", events=["test/E@1"])
    def c(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    with aos.World.open(tmp_path / "w", m, workers=2, offload="all") as w:
        for _ in range(10_000):
            w.submit("test/E@1", {"k": "hot"})
        w.run(max_steps=100)
        w.submit("test/E@1", {"k": "cold"})
        start = w.last_event_id
        w.run(max_steps=3)
        assert w.state("test/C@1", "cold") == 1
        assert w.last_event_id - start <= 3
    tickets = [r.event_id for _e, r in JournalReader(tmp_path / "w" / "journal", m.era).records()
               if getattr(r, "key", None) == "cold"]
    assert tickets == [102]


def test_default_workers_follow_what_can_run_in_parallel() -> None:
    import os
    import sys

    from aos.examples import spin
    from aos.world import default_workers

    py = make_counter_manifest()
    native = make_counter_manifest()
    native.native_reducer("test/Spin@1", events=["test/Add@1"], fn=spin.REDUCER, user=1, code_id="s")
    free_threaded = not getattr(sys, "_is_gil_enabled", lambda: True)()
    assert default_workers(py) == ((os.cpu_count() or 1) if free_threaded else 0)
    assert default_workers(native) == (os.cpu_count() or 1)


def test_offload_auto_computes_python_steps_beside_the_gil_on_the_coordinator(tmp_path: Path) -> None:
    """Where the GIL serialises Python steps, "auto" computes them on the coordinator: same journal."""
    import sys

    m = make_counter_manifest()
    journals, computed_here = {}, {}
    for name, workers, offload in (("inline", 0, "auto"), ("auto", 2, "auto"), ("all", 2, "all")):
        with aos.World.open(tmp_path / name, m, workers=workers, offload=offload) as w:
            for i in range(300):
                w.submit("test/Add@1", {"id": i % 7, "forward_to": (i * 3) % 7})
            w.run()
            computed_here[name] = w.metrics()["steps_computed_by_coordinator"]
            steps = w.metrics()["tickets"]
        journals[name] = b"".join(p.read_bytes() for p in sorted((tmp_path / name / "journal").glob("*.seg")))
    assert journals["auto"] == journals["all"] == journals["inline"]
    if getattr(sys, "_is_gil_enabled", lambda: True)():
        assert computed_here["auto"] == steps
    else:
        assert computed_here["auto"] < steps  # no GIL: the workers take steps too


def test_offload_must_be_known(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="offload"):
        aos.World.open(tmp_path / "w", make_counter_manifest(), workers=1, offload="some")
