"""Calls from other threads while ``run()`` is going: each is carried out at the run's next quiet point.

A quiet point is a moment when every assigned ticket has committed, so what a
call reads or writes never lands between a step's records, and a serial
replay of the journal reproduces the world byte for byte.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import aos
from aos.journal import JournalReader
from effects_world import effects_manifest

pytestmark = pytest.mark.parallel

STEPS = 400


def slow_manifest() -> aos.Manifest:
    m = effects_manifest(budget=10_000, name="test/threads@1")

    @m.reducer("test/Slow@1", key="id", events=["test/Tick@1"])
    def slow(ctx: Any, state: Any, event: Any) -> Any:
        time.sleep(0.002)  # releases the GIL: the other thread's calls interleave with steps
        s = state or {"count": 0, "sum": 0}
        return {"count": s["count"] + 1, "sum": s["sum"] + event.value["n"], "last": ctx.event_id}

    return m


def run_beside(w: aos.World, call: Callable[[], Any], rounds: int) -> tuple[list[Any], list[int], Any]:
    """Run ``w`` on a thread while this one makes ``call`` ``rounds`` times; the results and the steps seen."""
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def runner() -> None:
        started.set()
        try:
            outcome["run"] = w.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc

    t = threading.Thread(target=runner)
    t.start()
    started.wait()
    results, seen = [], []
    for _ in range(rounds):
        results.append(call())
        seen.append(w.stats["commits"])
    t.join(60)
    assert not t.is_alive(), "run() did not return"
    if "error" in outcome:
        raise outcome["error"]
    return results, seen, outcome["run"]


def feed(w: aos.World) -> None:
    for i in range(STEPS):
        w.submit("test/Tick@1", {"id": i % 7, "n": i})


def verify(path: Path, m: aos.Manifest, live_hash: str) -> None:
    assert aos.replay(path, m).verify() == live_hash


def steps_are_whole(path: Path) -> None:
    """No record lies between a step's StepScheduled and its outcome; decisions follow their step's outcome."""
    open_step, last_step = None, None
    for _e, rec in JournalReader(path / "journal").records():
        kind = type(rec).__name__
        if kind == "StepScheduled":
            assert open_step is None, f"step {open_step} has no outcome before the next step"
            open_step = rec.event_id
        elif kind in ("StepCommitted", "StepFailed", "InvariantViolated"):
            assert open_step == rec.event_id, f"{kind} of {rec.event_id} while step {open_step} is open"
            open_step, last_step = None, rec.event_id
        else:
            assert open_step is None, f"{kind} written inside step {open_step}"
            if kind in ("PolicyDecision", "EffectQueued"):
                assert rec.event_id == last_step, f"{kind} of step {rec.event_id} after step {last_step}"
            else:
                last_step = None


@pytest.mark.parametrize("workers", [0, 2])
def test_sync_from_another_thread_during_run(tmp_path: Path, workers: int) -> None:
    m = slow_manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, offload="all" if workers else None) as w:
        feed(w)

        def sync() -> int:
            w.sync()
            return w.durable_event_id

        durable, seen, run = run_beside(w, sync, 100)
        assert run.committed == STEPS
        assert durable == sorted(durable) and durable[-1] >= 1
        assert min(seen) < STEPS, "every sync came after the run: the test did not overlap them"
        h = w.snapshot_hash()
    verify(tmp_path / "w", m, h)
    steps_are_whole(tmp_path / "w")


@pytest.mark.parametrize("workers", [0, 2])
def test_snapshot_from_another_thread_during_run(tmp_path: Path, workers: int) -> None:
    m = slow_manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, keep_snapshots=100,
                        offload="all" if workers else None) as w:
        feed(w)
        infos, seen, _run = run_beside(w, w.snapshot, 5)
        assert min(seen) < STEPS
        h = w.snapshot_hash()
        for info in infos:
            assert info.path.is_file()
    verify(tmp_path / "w", m, h)
    steps_are_whole(tmp_path / "w")
    # every snapshot taken mid-run is a consistent state: opening from it replays the rest
    for snap in sorted((tmp_path / "w" / "snapshots").iterdir())[:-1]:
        snap.unlink()
    with aos.World.open(tmp_path / "w", m) as w:
        assert w.snapshot_hash() == h


@pytest.mark.parametrize("workers", [0, 2])
def test_submit_receipt_from_another_thread_during_run(tmp_path: Path, workers: int) -> None:
    m = slow_manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual",
                        offload="all" if workers else None) as w:
        for i in range(20):
            w.submit("test/Pay@1", {"id": f"p{i}", "costs": [1]})
        w.run()
        pending = w.pending_effects()
        assert len(pending) == 20
        feed(w)
        todo = list(pending)

        def answer() -> int:
            e = todo.pop()
            return w.submit_receipt(w.receipt(e.intent_hash, "ok", {"paid": 1}, 1))

        seqs, seen, _run = run_beside(w, answer, 20)
        assert min(seen) < STEPS
        assert len(set(seqs)) == 20
        w.run()
        assert w.pending_effects() == []
        assert all(w.state("test/Payer@1", f"p{i}")["receipts"] == [["ok", 1, "payment.send"]] for i in range(20))
        assert w.budget("pay").spent == 20
        h = w.snapshot_hash()
    verify(tmp_path / "w", m, h)
    steps_are_whole(tmp_path / "w")


def test_a_refused_receipt_from_another_thread_raises_there(tmp_path: Path) -> None:
    m = slow_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Pay@1", {"id": "p", "costs": [1]})
        w.run()
        e = w.pending_effects()[0]
        w.submit_receipt(w.receipt(e.intent_hash, "ok", None, 1))
        feed(w)

        def again() -> Exception | None:
            try:
                w.submit_receipt(w.receipt(e.intent_hash, "ok", None, 1))
            except aos.AosError as exc:
                return exc
            return None

        errors, seen, _run = run_beside(w, again, 1)
        assert isinstance(errors[0], aos.DuplicateReceiptError)
        assert seen[0] < STEPS + 2
        assert w.stats["commits"] == STEPS + 2  # the pay step, its receipt, then the run went on


def test_reads_from_another_thread_during_run_are_consistent(tmp_path: Path) -> None:
    m = slow_manifest()
    with aos.World.open(tmp_path / "w", m) as w:
        feed(w)

        def read() -> list[Any]:
            return [s for r, _k, s in w.iter_states() if r == "test/Slow@1"]

        reads, _seen, _run = run_beside(w, read, 30)
        assert any(0 < sum(s["count"] for s in states) < STEPS for states in reads)
        for states in reads:
            # every Tick is one step and every step a Tick: at a commit boundary, the
            # steps the cells counted are exactly the tickets up to the newest one
            assert sum(s["count"] for s in states) == max((s["last"] for s in states), default=0)
        assert w.state("test/Slow@1", 3)["count"] == len(range(3, STEPS, 7))
        with pytest.raises(TypeError):
            w.state("test/Slow@1")


def test_background_run_waiting_for_receipts_serves_other_threads(tmp_path: Path) -> None:
    """A run that waits for an adapter's receipt still reaches its quiet point for another thread's call."""
    release = threading.Event()

    def slow_pay(req: aos.EffectRequest) -> aos.Outcome:
        release.wait(30)
        return aos.Outcome("ok", None, req.cost)

    m = slow_manifest()
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": slow_pay}) as w:
        w.submit("test/Pay@1", {"id": "p", "costs": [1]})
        outcome: dict[str, Any] = {}
        t = threading.Thread(target=lambda: outcome.setdefault("run", w.run(settle=True, timeout=30)))
        t.start()
        while not w.stats["effects_dispatched"]:
            time.sleep(0.01)
        got: dict[str, Any] = {}
        sub = threading.Thread(target=lambda: got.setdefault("seq", w.submit("test/Tick@1", {"id": 1, "n": 5})))
        sub.start()
        sub.join(10)  # the runner is blocked waiting for the receipt: the submit must not wait for it
        served = not sub.is_alive()
        release.set()
        sub.join(30)
        t.join(30)
        assert not t.is_alive()
        assert served, "a submit waited for an unrelated receipt"
        assert got["seq"] >= 1
        assert w.state("test/Slow@1", 1)["sum"] == 5


def test_a_reducer_on_a_worker_calling_its_world_fails_its_step(tmp_path: Path) -> None:
    """The call would wait for the step's own commit: it is refused, the step fails, the world goes on."""
    m = aos.Manifest("test/reentrant@1")
    box: dict[str, aos.World] = {}

    @m.reducer("test/Peek@1", key="id", events=["test/Peek@1"])
    def peek(ctx: Any, state: Any, event: Any) -> Any:
        return {"seen": box["w"].state("test/Peek@1", ctx.key)}

    with aos.World.open(tmp_path / "w", m, workers=2, offload="all") as w:
        box["w"] = w
        w.submit("test/Peek@1", {"id": 1})
        r = w.run()
        assert (r.committed, r.failed) == (0, 1)
        assert w.state("test/Peek@1", 1) is None
    errors = [rec.error for _e, rec in JournalReader(tmp_path / "w" / "journal").records()
              if type(rec).__name__ == "StepFailed"]
    assert len(errors) == 1 and errors[0].endswith("ReentrantCallError")
