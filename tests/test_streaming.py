"""Streaming intake: events submitted from another thread while ``run()`` goes are admitted between commits.

The threads executor does not drain the pipeline to admit them: an event
admitted while tickets are in flight is held until the next ticket to assign,
and its ``EventAdmitted`` record says which (``visible_at``). A serial replay
holds it just as long, so the journal replays byte for byte (the oracle rule);
with commuting reducers the final states equal those of the same events
queued first and run inline.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos._core import Sequencer
from aos.errors import ReplayDivergenceError
from aos.journal import JournalReader
from aos.records import EventAdmitted, StepScheduled, admitted_payload, decode_record

pytestmark = pytest.mark.parallel

EVENTS = 600
CELLS = 13


def streaming_manifest(iterations: int = 20_000) -> aos.Manifest:
    """A native spin reducer (steps in parallel, GIL released) and a Python sum over the same events."""
    from aos.examples import spin

    m = aos.Manifest("test/streaming@1")
    m.native_reducer("test/Spin@1", key="id", events=["test/Go@1"], fn=spin.REDUCER, user=iterations,
                     code_id=spin.CODE_ID)

    @m.reducer("test/Sum@1", key="id", events=["test/Go@1"])
    def total(ctx: Any, state: Any, event: Any) -> Any:
        s = state or {"n": 0, "sum": 0}
        return {"n": s["n"] + 1, "sum": s["sum"] + event.value["v"]}

    return m


def events(n: int = EVENTS) -> list[dict[str, int]]:
    return [{"id": (i * 5) % CELLS, "v": i} for i in range(n)]


def stream(w: aos.World, values: list[dict[str, int]], first: int = 0) -> list[int]:
    """Submit ``values`` from a producer thread while this thread loops on ``run()``; the admission numbers.

    The ``first`` ones are queued before, so that steps are in flight when the producer starts.
    """
    seqs = [w.submit("test/Go@1", v) for v in values[:first]]
    values = values[first:]
    done = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            while first and w.stats["commits"] == 0:  # until the run is going
                time.sleep(0.0002)
            for v in values:
                seqs.append(w.submit("test/Go@1", v))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=produce)
    t.start()
    while True:
        finished = done.is_set()  # then everything was submitted before this run started
        w.run()
        if finished:
            break
    t.join(60)
    assert not errors, errors
    return seqs


def admissions(path: Path) -> list[tuple[int, int | None]]:
    """``(steps journaled before it, visible_at)`` of every EventAdmitted."""
    out: list[tuple[int, int | None]] = []
    steps = 0
    for _e, rec in JournalReader(path / "journal").records():
        if isinstance(rec, StepScheduled):
            steps += 1
        elif isinstance(rec, EventAdmitted):
            out.append((steps, rec.visible_at))
    return out


def final_states(w: aos.World) -> dict[tuple[str, Any], Any]:
    states = {(name, key): state for name, key, state in w.iter_states()}
    # the spin accumulator depends on each step's ticket (its seed); its count does not
    return {cell: (s[0] if cell[0] == "test/Spin@1" else s) for cell, s in states.items()}


def test_a_producer_thread_feeds_a_running_world_without_draining_it(tmp_path: Path) -> None:
    m = streaming_manifest()
    with aos.World.open(tmp_path / "w", m, workers=2) as w:
        seqs = stream(w, events(), first=100)
        live_hash = w.snapshot_hash()
        live = final_states(w)
        metrics = w.metrics()
    assert sorted(seqs) == list(range(EVENTS))
    assert metrics["commits"] == 2 * EVENTS
    held = [(steps, v) for steps, v in admissions(tmp_path / "w") if v is not None and v > steps + 1]
    assert held, "no event was admitted while steps were in flight: the intake drained the pipeline"
    assert all(v is not None and steps + 1 <= v <= steps + 1 + w.window for steps, v in admissions(tmp_path / "w"))

    # the oracle rule: a serial replay writes the same journal bytes and reaches the same cells
    assert aos.replay(tmp_path / "w", m).verify() == live_hash
    # reopening (a replay of the journal after the last snapshot) gives the same cells
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        assert w.snapshot_hash() == live_hash

    # the same events queued first and run inline: the same final states (these reducers commute)
    with aos.World.open(tmp_path / "inline", m, workers=0) as ref:
        for v in events():
            ref.submit("test/Go@1", v)
        ref.run()
        assert final_states(ref) == live


def test_inline_streaming_admits_at_the_next_ticket(tmp_path: Path) -> None:
    m = streaming_manifest(iterations=2_000)
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        stream(w, events(200))
        live_hash = w.snapshot_hash()
    # nothing is ever in flight inline: every event is visible to the next ticket
    assert [v for _s, v in admissions(tmp_path / "w")] == [s + 1 for s, _v in admissions(tmp_path / "w")]
    assert aos.replay(tmp_path / "w", m).verify() == live_hash


def test_a_snapshot_while_events_stream_in_keeps_held_events(tmp_path: Path) -> None:
    m = streaming_manifest()
    with aos.World.open(tmp_path / "w", m, workers=2, snapshot_every=37, keep_snapshots=1000) as w:
        stream(w, events(400), first=100)
        live_hash = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == live_hash
    # every snapshot, taken while events streamed in, is a state the rest of the journal replays from
    snaps = sorted((tmp_path / "w" / "snapshots").iterdir())
    assert len(snaps) > 3
    for snap in snaps[:-1]:
        snap.unlink()
        with aos.World.open(tmp_path / "w", m, workers=0, snapshot_on_close=False) as w:
            assert w.snapshot_hash() == live_hash


def test_a_record_from_before_visible_at_replays_as_visible_at_once() -> None:
    old = admitted_payload(3, "test/Go@1", b"\xa0")
    assert old[0] == 0xA5  # five keys: seq, kind, value, schema, lane_id
    rec = decode_record(old)
    assert isinstance(rec, EventAdmitted) and rec.visible_at is None
    new = admitted_payload(3, "test/Go@1", b"\xa0", 0, 9)
    rec = decode_record(new)
    assert isinstance(rec, EventAdmitted) and rec.visible_at == 9
    from aos.records import encode_record

    assert encode_record(rec) == new


def test_replay_refuses_a_visible_at_no_live_world_writes(tmp_path: Path) -> None:
    from aos.kernel import Kernel

    m = streaming_manifest()

    class Sink:
        def append_payload(self, payload: bytes) -> int:
            return 0

    k = Kernel(m, Sink())  # type: ignore[arg-type]
    value = canonical.encode({"id": 1, "v": 2})
    with pytest.raises(ReplayDivergenceError, match="visible at ticket 0"):
        k.admit_journaled(admitted_payload(0, "test/Go@1", value, 0, 0))
    with pytest.raises(ReplayDivergenceError, match="visible at ticket 66"):
        k.admit_journaled(admitted_payload(0, "test/Go@1", value, 0, 66))  # window 64, next ticket 1
    assert k.admit_journaled(admitted_payload(0, "test/Go@1", value, 0, 65))


# ------------------------------------------------------------------ the sequencer's rule
def test_an_admitted_input_is_held_until_its_ticket() -> None:
    s = Sequencer(window=4)
    s.deliver(0, 100)
    s.deliver(1, 101)
    s.deliver_at(3, 2, 102)  # admitted while tickets 1 and 2 are in flight
    assert s.poll(0) == (1, 0, 100)
    assert s.poll(0) == (2, 1, 101)
    assert s.poll(2) == (3, 2, 102)
    assert s.poll(3) is None


def test_held_inputs_and_emitted_ones_visible_at_one_ticket_enter_in_delivery_order() -> None:
    s = Sequencer(window=2)
    s.deliver(0, 1)
    s.deliver(1, 2)
    assert s.poll(0) == (1, 0, 1)
    assert s.poll(0) == (2, 1, 2)
    s.deliver_emitted(1, 5, 10)  # visible at 3
    s.deliver_at(3, 6, 11)       # admitted after ticket 1 committed: visible at 3, after the emit
    s.deliver_emitted(2, 7, 12)  # visible at 4
    assert [s.poll(4)[1] for _ in range(3)] == [5, 6, 7]


def test_the_idle_rule_does_not_release_a_held_input_early() -> None:
    # A serial replay at ticket 2 holds an input the live world admitted once ticket 3 was assigned:
    # with nothing ready it releases the emitted inputs, as the live world did, but not that one.
    s = Sequencer(window=8)
    s.deliver(0, 1)
    assert s.poll(0) == (1, 0, 1)
    s.deliver_emitted(1, 1, 2)   # visible at 9, or when nothing else is ready
    s.deliver_at(4, 2, 3)        # live: admitted after tickets 2 and 3 were assigned
    s.deliver_emitted(1, 3, 4)
    assert s.poll(1) == (2, 1, 2)
    assert s.poll(2) == (3, 3, 4)
    assert s.poll(3) == (4, 2, 3)


def test_held_inputs_survive_export_and_restore() -> None:
    s = Sequencer(window=4)
    s.deliver(0, 1)
    assert s.poll(0) == (1, 0, 1)
    s.deliver_emitted(1, 1, 2)   # visible at 5
    s.deliver_at(2, 2, 3)
    s.deliver_emitted(1, 3, 4)   # visible at 5, after the held one
    state = s.export_state()
    assert state["admitted"] == [[2, 2, 3, 1, 1]]
    r = Sequencer.from_state(state)
    assert r.export_state() == state
    assert [r.poll(10) for _ in range(4)] == [s.poll(10) for _ in range(4)] == [(2, 2, 3), (3, 1, 2), (4, 3, 4), None]


def test_a_journal_from_before_visible_at_replays_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aos.kernel import Kernel

    def admit_as_before(self: Kernel, adm: Any, visible_at: int | None = None) -> int:
        # what admission wrote before the field existed: no visible_at, visible to the next ticket at once
        seq = self.next_seq
        self.sink.append_payload(admitted_payload(seq, adm.schema, adm.value))
        self.next_seq = seq + 1
        self.inbox.put(seq, adm.schema, adm.value, len(adm.routes))
        for spec, key in adm.routes:
            self.sequencer.deliver(self.cells.id_of(spec, key), seq, spec.priority)
        return seq

    m = streaming_manifest(iterations=200)
    path = tmp_path / "w"
    with monkeypatch.context() as patched:
        patched.setattr(Kernel, "admit", admit_as_before)
        with aos.World.open(path, m, workers=0, snapshot_every=40) as w:
            for i, v in enumerate(events(120)):
                w.submit("test/Go@1", v)
                if i % 7 == 0:
                    w.run()
            w.run()
            old_hash = w.snapshot_hash()
    assert {v for _s, v in admissions(path)} == {None}
    assert aos.replay(path, m).verify() == old_hash
    with aos.World.open(path, m, workers=2) as w:  # the old records, then new ones streamed in
        stream(w, events(200)[120:], first=20)
        new_hash = w.snapshot_hash()
    assert aos.replay(path, m).verify() == new_hash


def test_metrics_tell_held_admissions_from_emitted_inputs(tmp_path: Path) -> None:
    s = Sequencer(window=4)
    s.deliver_at(1, 0, 1)
    assert (s.pending, s.held) == (1, 1)
    with aos.World.open(tmp_path / "w", streaming_manifest(), workers=0) as w:
        w.submit("test/Go@1", {"id": 1, "v": 1})
        q = w.metrics()["queue"]
        assert q["pending_emitted"] == 0 and w.stats["pending"] == 2  # held for ticket 1, one per reducer


def test_a_reducer_on_a_worker_submitting_to_its_world_fails_its_step(tmp_path: Path) -> None:
    """A step may not admit events behind the kernel's back (ctx.emit is the way): refused, the world goes on."""
    m = aos.Manifest("test/resubmit@1")
    box: dict[str, aos.World] = {}

    @m.reducer("test/Echo@1", key="id", events=["test/Echo@1"])
    def echo(ctx: Any, state: Any, event: Any) -> Any:
        box["w"].submit("test/Echo@1", {"id": event.value["id"] + 1})
        return {"n": 1}

    with aos.World.open(tmp_path / "w", m, workers=2, offload="all") as w:
        box["w"] = w
        w.submit("test/Echo@1", {"id": 1})
        r = w.run()
        assert (r.committed, r.failed) == (0, 1)
        assert w.stats["admitted"] == 1
    errors = [rec.error for _e, rec in JournalReader(tmp_path / "w" / "journal").records()
              if type(rec).__name__ == "StepFailed"]
    assert len(errors) == 1 and errors[0].endswith("ReentrantCallError")


def test_a_producer_held_back_by_backpressure_goes_on_as_steps_make_room(tmp_path: Path) -> None:
    m = streaming_manifest()
    with aos.World.open(tmp_path / "w", m, workers=2, max_queued=20) as w:
        seqs = stream(w, events(400), first=10)
        live_hash = w.snapshot_hash()
        assert w.metrics()["queue"]["queued_max"] <= 20 + 2  # (the last event's deliveries may pass the bound)
    assert sorted(seqs) == list(range(400))
    assert aos.replay(tmp_path / "w", m).verify() == live_hash
