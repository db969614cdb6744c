"""Serving mode: ``World.serve`` runs a world on one thread while others submit; ``submit_async`` futures.

A future from ``submit_async`` resolves with the event's admission number once
its ``EventAdmitted`` record is durable: these tests read the journal and its
durable watermark from the outside to check that it is, and that a serving
world that goes idle still syncs within the policy's ``group_ms``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.journal import JournalReader, Watermark
from aos.records import EventAdmitted
from effects_world import effects_manifest, payment_adapter

pytestmark = pytest.mark.parallel


def counter() -> aos.Manifest:
    m = aos.Manifest("test/serve@1")

    @m.reducer("test/Sum@1", key="k", events=["test/Add@1"])
    def add(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + event.value["n"]

    return m


def admitted(path: Path, m: aos.Manifest) -> dict[int, Any]:
    """seq -> value of every EventAdmitted in the journal (read from the files)."""
    out = {}
    for _e, r in JournalReader(path / "journal", m.era).records():
        if isinstance(r, EventAdmitted):
            out[r.seq] = canonical.decode(r.value)
    return out


def durable_records(path: Path) -> int:
    """How many journal records the durable watermark says were fsync'd."""
    found = Watermark.read(path / "journal")
    assert found is not None
    return found[0].index


def serve_on_thread(w: aos.World, **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["result"] = w.serve(**kw)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            out["error"] = exc

    t = threading.Thread(target=go)
    t.start()
    return t, out


def wait_serving(w: aos.World) -> None:
    deadline = time.monotonic() + 10
    while w._intake.runner is None:
        assert time.monotonic() < deadline, "serve() did not start"
        time.sleep(0.001)


@pytest.mark.parametrize("workers", [0, 2])
def test_producers_submit_while_serving_and_every_future_resolves(tmp_path: Path, workers: int) -> None:
    m = counter()
    n_threads, per_thread = 3, 300
    futures: list[list[Future[int]]] = [[] for _ in range(n_threads)]
    with aos.World.open(tmp_path / "w", m, workers=workers, offload="all", max_queued=50) as w:
        t, out = serve_on_thread(w)
        wait_serving(w)

        def produce(i: int) -> None:
            for j in range(per_thread):
                futures[i].append(w.submit_async("test/Add@1", {"k": j % 5, "n": i + 1}))

        producers = [threading.Thread(target=produce, args=(i,)) for i in range(n_threads)]
        for p in producers:
            p.start()
        for p in producers:
            p.join(60)
        seqs = [f.result(timeout=30) for fs in futures for f in fs]
        w.stop()
        t.join(30)
        assert not t.is_alive(), "serve() did not return after stop()"
        assert "error" not in out, out.get("error")
        r = out["result"]
        assert isinstance(r, aos.RunResult) and r.steps == n_threads * per_thread
        assert sorted(seqs) == list(range(n_threads * per_thread))  # each admitted once, none lost
        assert sum(w.state("test/Sum@1", k) for k in range(5)) == per_thread * (1 + 2 + 3)
        h = w.snapshot_hash()
    assert sorted(admitted(tmp_path / "w", m)) == sorted(seqs)
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_a_resolved_future_means_the_record_is_fsynced(tmp_path: Path) -> None:
    m = counter()
    dur = aos.Durability("group", group_commits=1_000_000, group_ms=30.0)  # never by size: only by time
    with aos.World.open(tmp_path / "w", m, durability=dur, workers=0) as w:
        t, out = serve_on_thread(w)
        wait_serving(w)
        f = w.submit_async("test/Add@1", {"k": 1, "n": 5})
        seq = f.result(timeout=10)  # the world went idle after the step: the group sync came by time
        assert t.is_alive(), "the future resolved only because serve() returned"
        records = durable_records(tmp_path / "w")
        got = [(i, r) for i, (_e, r) in enumerate(JournalReader(tmp_path / "w" / "journal", m.era).records())
               if isinstance(r, EventAdmitted) and r.seq == seq]
        assert got and got[0][0] < records, "the acknowledged EventAdmitted is past the durable watermark"
        w.stop()
        t.join(10)
        assert not t.is_alive() and "error" not in out


def test_an_idle_serving_world_syncs_within_group_ms(tmp_path: Path) -> None:
    m = counter()
    dur = aos.Durability("group", group_commits=1_000_000, group_ms=50.0)
    with aos.World.open(tmp_path / "w", m, durability=dur, workers=0) as w:
        t, out = serve_on_thread(w, idle=10.0)  # a long idle: the sync must not wait for it
        wait_serving(w)
        before = durable_records(tmp_path / "w")
        t0 = time.monotonic()
        w.submit("test/Add@1", {"k": 1, "n": 1})  # returns once admitted, not once durable
        while durable_records(tmp_path / "w") == before:
            assert time.monotonic() - t0 < 5, "an idle serving world never synced"
            time.sleep(0.005)
        assert time.monotonic() - t0 < 2.0
        w.stop()
        t.join(20)
        assert not t.is_alive(), "stop() did not wake an idle serve()"
        assert "error" not in out


@pytest.mark.parametrize("effects", ["background", "inline", "manual"])
def test_stop_returns_serve_in_every_effects_mode(tmp_path: Path, effects: str) -> None:
    m = counter()
    with aos.World.open(tmp_path / "w", m, workers=0, effects=effects) as w:
        t, out = serve_on_thread(w, idle=30.0)
        wait_serving(w)
        time.sleep(0.05)
        t0 = time.monotonic()
        w.stop()
        t.join(10)
        assert not t.is_alive() and time.monotonic() - t0 < 5
        assert out["result"].steps == 0
        w.submit("test/Add@1", {"k": 1, "n": 2})  # the world stays usable
        assert w.run().steps == 1


def test_serve_returns_when_until_is_true_and_when_stopped_before(tmp_path: Path) -> None:
    m = counter()
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        for i in range(10):
            w.submit("test/Add@1", {"k": i, "n": 1})
        r = w.serve(until=lambda: w.last_event_id >= 10, idle=0.01)
        assert r.steps == 10 and w.last_event_id == 10
        w.stop()  # no serve in progress: the next one returns at once
        t0 = time.monotonic()
        assert w.serve(idle=30.0).steps == 0
        assert time.monotonic() - t0 < 5
        calls = []
        r = w.serve(until=lambda: calls.append(1) or len(calls) > 3, idle=0.01)  # asked again while idle
        assert r.steps == 0 and len(calls) == 4


def test_close_from_another_thread_ends_serve(tmp_path: Path) -> None:
    m = counter()
    w = aos.World.open(tmp_path / "w", m, workers=0)
    t, out = serve_on_thread(w, idle=30.0)
    wait_serving(w)
    f = w.submit_async("test/Add@1", {"k": 1, "n": 7})
    w.close()
    t.join(10)
    assert not t.is_alive() and "error" not in out
    assert f.result(timeout=5) == 0
    with pytest.raises(aos.WorldClosedError):
        w.serve()
    assert admitted(tmp_path / "w", m) == {0: {"k": 1, "n": 7}}  # admitted (its step may be left to run)
    with aos.World.open(tmp_path / "w", m) as w2:
        w2.run()
        assert w2.state("test/Sum@1", 1) == 7


def test_serve_settles_effects(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, workers=0, adapters={"payment.send": payment_adapter()}) as w:
        t, out = serve_on_thread(w)
        wait_serving(w)
        w.submit("test/Pay@1", {"id": "a", "costs": [3]})
        deadline = time.monotonic() + 10
        while (w.state("test/Payer@1", "a") or {}).get("receipts") != [["ok", 3, "payment.send"]]:
            assert time.monotonic() < deadline, "the receipt never came while serving"
            time.sleep(0.01)
        w.stop()
        t.join(10)
        assert not t.is_alive() and "error" not in out
        assert w.budget("pay").spent == 3


def test_violations_raise_from_serve_and_the_world_stays_usable(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        w.submit("test/Take@1", {"sku": "x", "qty": 5})  # 3 - 5 < 0: the invariant refuses it
        with pytest.raises(aos.InvariantViolation):
            w.serve(idle=0.01)
        w.submit("test/Take@1", {"sku": "x", "qty": 1})
        assert w.serve(until=lambda: w.state("test/Stock@1", "x") is not None, idle=0.01).steps == 1
        assert w.state("test/Stock@1", "x") == {"n": 2}


@pytest.mark.parametrize("until, idle", [(5, 0.05), ("stop", 0.05), (None, 0), (None, -1.0), (None, "1"),
                                         (None, float("nan")), (None, float("inf")), (None, True)])
def test_bad_serve_arguments_raise_typed_errors(tmp_path: Path, until: Any, idle: Any) -> None:
    m = counter()
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        with pytest.raises(aos.ArgumentError) as err:
            w.serve(until, idle=idle)
        assert isinstance(err.value, aos.AosError) and ("until" in str(err.value) or "idle" in str(err.value))
        assert w.run().steps == 0  # nothing was started


def test_serve_from_the_running_thread_is_refused(tmp_path: Path) -> None:
    m = counter()
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        with pytest.raises(aos.ReentrantCallError):
            w.serve(until=lambda: w.serve() is None)
        w.submit("test/Add@1", {"k": 1, "n": 1})
        assert w.run().steps == 1


def test_submit_async_checks_at_once_and_journals_nothing_when_refused(tmp_path: Path) -> None:
    m = counter()
    with aos.World.open(tmp_path / "w", m, workers=0, max_queued=1) as w:
        before = w.stats["records"]
        with pytest.raises(aos.UnknownSchemaError):
            w.submit_async("test/Nope@1", {"k": 1})
        with pytest.raises(aos.MissingKeyFieldError):
            w.submit_async("test/Add@1", {"n": 1})
        assert w.stats["records"] == before
        w.submit_async("test/Add@1", {"k": 1, "n": 1})
        with pytest.raises(aos.Backpressure):
            w.submit_async("test/Add@1", {"k": 2, "n": 1}, block=False)


@pytest.mark.parametrize("mode", ["group", "always", "none"])
def test_submit_async_without_serve_resolves_at_the_next_sync(tmp_path: Path, mode: str) -> None:
    m = counter()
    dur = aos.Durability(mode, group_commits=1_000_000, group_ms=1e9)
    with aos.World.open(tmp_path / "w", m, durability=dur, workers=0) as w:
        f = w.submit_async("test/Add@1", {"k": 1, "n": 1})
        assert not f.cancel()  # an admitted event cannot be withdrawn
        if mode == "always":
            assert f.done() and f.result() == 0  # fsync'd before submit_async returned
        else:
            assert not f.done()
            w.sync()
            assert f.result(timeout=0) == 0
        g = w.submit_async("test/Add@1", {"k": 1, "n": 1})
        w.run()  # everything is synced when run returns
        assert g.result(timeout=0) == 1


@pytest.mark.timeout(60)
def test_serve_from_a_reducer_on_a_worker_thread_is_refused(tmp_path: Path) -> None:
    m = aos.Manifest("test/serve-reentrant@1")
    box: dict[str, aos.World] = {}

    @m.reducer("test/Sum@1", key="k", events=["test/Add@1"])
    def add(ctx: Any, state: Any, event: Any) -> Any:
        box["w"].serve()  # would wait for its own step to commit
        return 1

    with aos.World.open(tmp_path / "w", m, workers=2, offload="all") as w:
        box["w"] = w
        w.submit("test/Add@1", {"k": 1})
        assert w.run().failed == 1
        assert [f.error for f in w.failures()] == ["ReentrantCallError"]
