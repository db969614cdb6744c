"""The lane world: a world that is one lane of a fleet (docs/fleet.md, "The lane world").

The oracles: the inline executor (every executor writes a lane world's
journal byte for byte as it does), and one world without lanes (K lanes
driven by hand through accept / outbound / accept reach its state for a
commuting workload).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from aos.lane import CLIENT_SOURCE, Lane
from aos.lane_world import event_lanes
from aos.records import BudgetGranted, EventAdmitted, PolicyDecision, SnapshotCreated, StepScheduled

sys.path.insert(0, str(Path(__file__).parent))
from lanes_world import MANIFEST, orders, shop_manifest  # noqa: E402

HERE = Path(__file__).parent


def journal_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / "journal").glob("*.seg")))


def client_submit(worlds: list[aos.World], sent: list[int], schema: str, value: Any, home: int = 0) -> None:
    """What a fleet does with a client's event: accept it, numbered, in every lane holding one of its cells."""
    for t in event_lanes(worlds[0].manifest, len(worlds), home, schema, value):
        sent[t] += 1
        assert worlds[t].accept(CLIENT_SOURCE, sent[t], schema, value=value) is True


def forward(worlds: list[aos.World]) -> int:
    """Move every lane's outbound messages to their targets (from each target's mark); how many moved."""
    moved = 0
    for src, w in enumerate(worlds):
        for tgt, to in enumerate(worlds):
            if tgt == src:
                continue
            msgs = w.outbound(tgt, to.marks().get(src, 0))
            for n, schema, data in msgs:
                assert to.accept(src, n, schema, data=data) is True
            if msgs:
                w.trim_outbound(tgt, msgs[-1][0])
            moved += len(msgs)
    return moved


def settle(worlds: list[aos.World]) -> None:
    """Run every lane and forward until every lane is quiet and nothing is in flight."""
    while True:
        steps = sum(w.run().steps for w in worlds)
        if forward(worlds) == 0 and steps == 0:
            return


def merged(worlds: list[aos.World]) -> dict[tuple[str, Any], Any]:
    out: dict[tuple[str, Any], Any] = {}
    for w in worlds:
        for reducer, key, state in w.iter_states():
            assert (reducer, key) not in out, f"cell {(reducer, key)} lives in two lanes"
            assert w.lane.holds(key) if key is not None else w.lane.lane_id == w.lane.home
            out[(reducer, key)] = state
    return out


def one_world(path: Path, events: list[tuple[str, Any]]) -> dict[tuple[str, Any], Any]:
    with aos.World.open(path, MANIFEST, workers=0) as w:
        for schema, value in events:
            w.submit(schema, value)
        w.run()
        return {(r, k): s for r, k, s in w.iter_states()}


# ------------------------------------------------------------------ a world without lanes
def test_a_world_without_lane_and_lane_0_of_1_write_the_same_journal(tmp_path: Path) -> None:
    events = orders(40)
    for name, lane in (("plain", None), ("one", Lane(0, 1, 0))):
        with aos.World.open(tmp_path / name, MANIFEST, workers=0, lane=lane) as w:
            for schema, value in events:
                w.submit(schema, value)
            w.run()
    assert journal_bytes(tmp_path / "plain") == journal_bytes(tmp_path / "one")
    assert all(r.lane_id == 0 for _e, r in JournalReader(tmp_path / "plain" / "journal").records())
    assert not any(isinstance(r, EventAdmitted) and r.origin is not None
                   for _e, r in JournalReader(tmp_path / "plain" / "journal").records())


# ------------------------------------------------------------------ lane_id, routing, meta
def test_every_record_of_a_lane_world_carries_its_lane_id(tmp_path: Path) -> None:
    m = shop_manifest(budget=10)
    lane = Lane(1, 2, 1)
    with aos.World.open(tmp_path / "w", m, lane=lane, workers=0, effects="manual") as w:
        assert w.grant("mail", 5, 1) is True
        sent = 0
        for schema, value in orders(30):
            if lane.holds(value["order"]):
                sent += 1
                w.accept(CLIENT_SOURCE, sent, schema, value=dict(value, mail=2))
        w.run()
        w.snapshot()
        assert w.propose(shop_manifest(budget=10, name="test/lanes-shop@2")) >= 0
    kinds = set()
    for _entry, rec in JournalReader(tmp_path / "w" / "journal").records():
        kinds.add(rec.KIND)
        assert rec.lane_id == 1, rec
    assert {"EventAdmitted", "StepScheduled", "StepCommitted", "PolicyDecision", "EffectQueued", "BudgetGranted",
            "SnapshotCreated", "ProposalSubmitted"} <= kinds
    assert aos.replay(tmp_path / "w", m).verify()


def test_an_event_none_of_whose_cells_the_lane_holds_is_admitted_without_a_step(tmp_path: Path) -> None:
    lane = Lane(0, 4, 3)  # the non-keyed Total lives in lane 3
    user = next(f"u{i}" for i in range(100) if not lane.holds(f"u{i}"))
    with aos.World.open(tmp_path / "w", MANIFEST, lane=lane, workers=0) as w:
        assert w.accept(CLIENT_SOURCE, 1, "shop/Spent@1", value={"user": user, "amount": 3}) is True
        assert w.run().steps == 0
        assert w.cells() == [] and w.marks() == {CLIENT_SOURCE: 1}
    recs = [r for _e, r in JournalReader(tmp_path / "w" / "journal").records()]
    assert [type(r) for r in recs] == [EventAdmitted, SnapshotCreated]
    assert recs[0].origin == (CLIENT_SOURCE, 1) and recs[0].lane_id == 0


def test_the_lane_is_kept_in_the_world_and_another_is_refused(tmp_path: Path) -> None:
    with aos.World.open(tmp_path / "w", MANIFEST, lane=Lane(2, 4, 1)):
        pass
    with aos.World.open(tmp_path / "w", MANIFEST) as w:  # None: as stored
        assert w.lane == Lane(2, 4, 1)
    with pytest.raises(aos.FleetError, match=r"lane 2 of 4 \(home 1\), not lane 3 of 4 \(home 1\)") as info:
        aos.World.open(tmp_path / "w", MANIFEST, lane=Lane(3, 4, 1))
    assert info.value.lane == 2
    with pytest.raises(aos.FleetError, match="lane 0 of 1"):
        aos.World.open(tmp_path / "plain", MANIFEST).close()
        aos.World.open(tmp_path / "plain", MANIFEST, lane=Lane(0, 2, 0))
    with pytest.raises(aos.ArgumentError, match="lane must be an aos.lane.Lane"):
        aos.World.open(tmp_path / "x", MANIFEST, lane=(0, 2, 0))  # type: ignore[arg-type]


# ------------------------------------------------------------------ the inline oracle
def drive_lane(path: Path, lane: Lane, **options: Any) -> tuple[bytes, str, list[Any], dict[int, int]]:
    """Lane ``lane`` fed the same client events and cross-lane messages; its journal, hash, outbound, marks."""
    other = 1 - lane.lane_id
    with aos.World.open(path, MANIFEST, lane=lane, snapshot_every=7, **options) as w:
        sent = 0
        for i, (schema, value) in enumerate(orders(60)):
            if lane.holds(value["order"]):
                sent += 1
                w.accept(CLIENT_SOURCE, sent, schema, value=value)
            if i % 5 == 4:  # messages from the other lane arrive between runs
                w.accept(other, i // 5 + 1, "shop/Spent@1", data=aos.canonical.encode({"user": f"u{i % 7}",
                                                                                      "amount": i}))
                w.run(max_steps=3)
        w.run()
        return (journal_bytes(path), w.snapshot_hash(), w.outbound(other, 0), w.marks())


@pytest.mark.parametrize("lane_id", [0, 1])
def test_every_executor_writes_a_lane_worlds_journal_as_the_inline_executor(tmp_path: Path, lane_id: int) -> None:
    lane = Lane(lane_id, 2, 0)
    inline = drive_lane(tmp_path / "inline", lane, workers=0)
    assert inline[2], "the workload sends messages to the other lane"
    assert drive_lane(tmp_path / "reference", lane, reference=True) == inline
    assert drive_lane(tmp_path / "threads", lane, workers=2) == inline
    assert drive_lane(tmp_path / "offload", lane, workers=2, offload="all") == inline  # steps on the workers
    assert aos.replay(tmp_path / "inline", MANIFEST).verify() == inline[1]
    assert aos.replay(tmp_path / "inline", MANIFEST).verify(workers=2) == inline[1]


# ------------------------------------------------------------------ K lanes vs one world
@pytest.mark.parametrize("k", [1, 2, 4])
def test_k_lanes_driven_by_hand_reach_the_state_of_one_world(tmp_path: Path, k: int) -> None:
    events = orders(120, seed=k)
    oracle = one_world(tmp_path / "one", events)
    worlds = [aos.World.open(tmp_path / f"lane{i}", MANIFEST, lane=Lane(i, k, k - 1), workers=0, snapshot_every=50)
              for i in range(k)]
    try:
        sent = [0] * k
        for i, (schema, value) in enumerate(events):
            client_submit(worlds, sent, schema, value, home=k - 1)
            if i % 17 == 0:
                settle(worlds)  # interleave runs and forwarding with the submits
        settle(worlds)
        assert merged(worlds) == oracle
        if k > 1:
            assert all(w.outbound_marks() for w in worlds)
        hashes = [w.snapshot_hash() for w in worlds]
    finally:
        for w in worlds:
            w.close()
    for i in range(k):
        assert aos.replay(tmp_path / f"lane{i}", MANIFEST).verify() == hashes[i]


# ------------------------------------------------------------------ origins
def test_duplicates_are_dropped_and_gaps_refused(tmp_path: Path) -> None:
    with aos.World.open(tmp_path / "w", MANIFEST, lane=Lane(0, 2, 0), workers=0) as w:
        spent = aos.canonical.encode({"user": "x", "amount": 1})
        assert w.accept(1, 1, "shop/Spent@1", data=spent) is True
        assert w.accept(1, 1, "shop/Spent@1", data=spent) is False
        records = w.stats["records"]
        with pytest.raises(aos.OriginOrderError, match="message 3 from source 1.*last one admitted from it is 1"):
            w.accept(1, 3, "shop/Spent@1", data=spent)
        assert w.stats["records"] == records  # nothing written for a duplicate or a gap
        assert w.accept(1, 2, "shop/Spent@1", data=spent) is True
        assert w.accept(CLIENT_SOURCE, 1, "shop/Spent@1", value={"user": "y", "amount": 2}) is True
        assert w.marks() == {1: 2, CLIENT_SOURCE: 1}
        for bad, match in [((2, 1), "source must be a lane id"), ((1, 0), "n must be an int >= 1"),
                           ((-1, 1), "source must be")]:
            with pytest.raises(aos.ArgumentError, match=match):
                w.accept(*bad, "shop/Spent@1", data=spent)
        with pytest.raises(aos.ArgumentError, match="exactly one of value= and data="):
            w.accept(1, 3, "shop/Spent@1")
        with pytest.raises(aos.ArgumentError, match="exactly one of value= and data="):
            w.accept(1, 3, "shop/Spent@1", value={"user": "y", "amount": 2}, data=spent)
        with pytest.raises(aos.NonCanonicalError):
            w.accept(1, 3, "shop/Spent@1", data=b"\xa2\x01")
        with pytest.raises(aos.UnknownSchemaError):
            w.accept(1, 3, "shop/Nope@1", data=spent)
        assert w.marks() == {1: 2, CLIENT_SOURCE: 1}
        w.run()
        if w.lane.holds("x"):
            assert w.state("shop/User@1", "x") == {"n": 2, "sum": 2}
    with aos.World.open(tmp_path / "w", MANIFEST) as w:
        assert w.marks() == {1: 2, CLIENT_SOURCE: 1}
        assert w.accept(1, 2, "shop/Spent@1", data=spent) is False


_CRASHER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {here!r})
    import aos
    from aos.lane import CLIENT_SOURCE, Lane
    from lanes_world import MANIFEST, orders
    w = aos.World.open({path!r}, MANIFEST, lane=Lane(0, 2, 0), workers=0, snapshot_every={every})
    sent = 0
    for schema, value in orders(80):
        if w.lane.holds(value["order"]):
            sent += 1
            w.accept(CLIENT_SOURCE, sent, schema, value=value)
    w.run()
    w.trim_outbound(1, 10)
    print(sent, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("every", [0, 9])
def test_marks_and_outbound_survive_kill_9(tmp_path: Path, every: int) -> None:
    path = tmp_path / "w"
    proc = subprocess.run([sys.executable, "-c", _CRASHER.format(here=str(HERE), path=str(path), every=every)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sent = int(proc.stdout.strip())
    # the oracle: the same lane, not killed
    with aos.World.open(tmp_path / "oracle", MANIFEST, lane=Lane(0, 2, 0), workers=0) as o:
        n = 0
        for schema, value in orders(80):
            if o.lane.holds(value["order"]):
                n += 1
                o.accept(CLIENT_SOURCE, n, schema, value=value)
        o.run()
        expected = o.outbound(1, 0)
        expected_hash = o.snapshot_hash()
    assert len(expected) > 20
    with aos.World.open(path, MANIFEST) as w:  # run() synced everything before the kill
        assert w.marks() == {CLIENT_SOURCE: sent}
        assert w.outbound_marks() == {1: len(expected)}
        assert w.outbound(1, 0) == expected
        assert w.outbound(1, 5, limit=3) == expected[5:8]
        assert w.outbound(1, len(expected)) == []
        assert w.snapshot_hash() == expected_hash
        schema, value = orders(80)[0]
        assert w.accept(CLIENT_SOURCE, sent, schema, value=value) is False  # a retried submit: dropped
        w.trim_outbound(1, 30)
        assert w.outbound(1, 28) == expected[28:]  # trimmed from memory: re-made from the journal
    assert aos.replay(path, MANIFEST).verify() == expected_hash


_MID_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    import aos
    from aos.lane import CLIENT_SOURCE, Lane
    from lanes_world import MANIFEST, orders
    w = aos.World.open({path!r}, MANIFEST, lane=Lane(0, 2, 0), workers=0, snapshot_every=11,
                       durability=aos.Durability("group", group_commits=7, group_ms=1))
    sent = 0
    for schema, value in orders(80):
        if w.lane.holds(value["order"]):
            sent += 1
            w.accept(CLIENT_SOURCE, sent, schema, value=value)
    for n in range(1, 6):
        w.accept(1, n, "shop/Spent@1", value={{"user": "u0", "amount": n}})
    w.run()  # dies in the step of event_id 40 (lanes_world.KILL_AT)
""")


def test_a_lane_killed_mid_run_carries_on_from_its_marks(tmp_path: Path) -> None:
    """Killed with records not yet durable: the senders resend from the marks, and the lane ends as if never killed."""
    path = tmp_path / "w"
    env = dict(os.environ, AOS_TEST_LANES_KILL_AT="40")
    proc = subprocess.run([sys.executable, "-c", _MID_RUN.format(here=str(HERE), path=str(path))], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    def feed(w: aos.World) -> None:
        """What the senders do: send again everything past the lane's marks."""
        marks = w.marks()
        sent = 0
        for schema, value in orders(80):
            if w.lane.holds(value["order"]):
                sent += 1
                if sent > marks.get(CLIENT_SOURCE, 0):
                    assert w.accept(CLIENT_SOURCE, sent, schema, value=value) is True
        for n in range(marks.get(1, 0) + 1, 6):
            assert w.accept(1, n, "shop/Spent@1", value={"user": "u0", "amount": n}) is True
        w.run()

    with aos.World.open(tmp_path / "oracle", MANIFEST, lane=Lane(0, 2, 0), workers=0) as o:
        feed(o)
        expected = (o.marks(), o.outbound_marks(), o.outbound(1, 0), o.snapshot_hash())
    with aos.World.open(path, MANIFEST) as w:
        assert w.last_event_id < 40  # the step that killed it was not journaled
        feed(w)
        assert (w.marks(), w.outbound_marks(), w.outbound(1, 0), w.snapshot_hash()) == expected
    assert aos.replay(path, MANIFEST).verify() == expected[3]


# ------------------------------------------------------------------ budget grants
def test_a_lane_spends_what_it_is_granted(tmp_path: Path) -> None:
    m = shop_manifest(budget=1_000)
    lane = Lane(0, 2, 0)
    order = next(i for i in range(100) if lane.holds(i))

    def mail(w: aos.World, n: int, cost: int) -> None:
        w.accept(CLIENT_SOURCE, n, "shop/Order@1", value={"order": order, "user": "u", "item": 1, "amount": 1,
                                                          "mail": cost})
        w.run()

    with aos.World.open(tmp_path / "w", m, lane=lane, workers=0, effects="manual") as w:
        assert w.budget("mail").budget == 0  # the manifest's budget is the fleet's
        mail(w, 1, 4)
        mail(w, 2, 3)
        assert w.budget_wants() == {"mail": 7}
        assert w.grant("mail", 5, 1) is True
        assert w.budget_wants() == {}
        assert w.grant("mail", 5, 1) is False and w.grant("mail", 50, 1) is False  # a repeat
        mail(w, 3, 4)
        assert w.budget("mail").budget == 5 and w.budget("mail").reserved == 4
        mail(w, 4, 4)
        assert w.budget_wants() == {"mail": 4}
        assert w.grant("mail", 10, 3) is True and w.grant("mail", 1, 2) is False  # an older id
        assert w.budget("mail").budget == 15
        with pytest.raises(aos.ArgumentError, match="unknown capability"):
            w.grant("nope", 1, 9)
        with pytest.raises(aos.ArgumentError, match="amount must be an int >= 0"):
            w.grant("mail", -1, 9)
        h = w.snapshot_hash()
    denied = [r for _e, r in JournalReader(tmp_path / "w" / "journal").records()
              if isinstance(r, PolicyDecision) and not r.allowed]
    assert len(denied) == 3 and all("budget of mail exhausted" in r.reason for r in denied)
    grants = [r for _e, r in JournalReader(tmp_path / "w" / "journal").records() if isinstance(r, BudgetGranted)]
    assert [(g.cap, g.amount, g.grant) for g in grants] == [("mail", 5, 1), ("mail", 10, 3)]
    for snapshot in (True, False):
        if not snapshot:
            for s in (tmp_path / "w" / "snapshots").iterdir():
                s.unlink()
        with aos.World.open(tmp_path / "w", m, effects="manual", snapshot_on_close=False) as w:
            assert w.budget("mail").budget == 15 and w.snapshot_hash() == h
            assert w.grant("mail", 1, 3) is False
    assert aos.replay(tmp_path / "w", m).verify() == h
    # a world without lanes keeps its manifest's budget
    with aos.World.open(tmp_path / "plain", m) as w:
        assert w.budget("mail").budget == 1_000


# ------------------------------------------------------------------ tools
def test_fsck_and_export_read_a_lane_world(tmp_path: Path) -> None:
    from aos.export import export_sqlite
    from aos.fsck import check_world

    drive_lane(tmp_path / "w", Lane(1, 2, 0), workers=0)
    with aos.World.open(tmp_path / "w", MANIFEST) as w:
        w.grant("mail", 3, 1)
    report = check_world(tmp_path / "w", MANIFEST)
    assert report.ok, report.problems
    counts = export_sqlite(tmp_path / "w", tmp_path / "w.sqlite")
    assert counts
    assert not [r for _e, r in JournalReader(tmp_path / "w" / "journal").records()
                if isinstance(r, (StepScheduled, SnapshotCreated)) and r.lane_id != 1]


def test_event_lanes_names_the_lanes_of_an_events_cells() -> None:
    value = {"user": "u1", "amount": 2}
    lanes = event_lanes(MANIFEST, 4, 2, "shop/Spent@1", value)
    assert lanes == tuple(sorted({Lane(0, 4, 2).of("u1"), 2}))
    assert event_lanes(MANIFEST, 1, 0, "shop/Spent@1", value) == (0,)
    with pytest.raises(aos.UnknownSchemaError):
        event_lanes(MANIFEST, 4, 2, "shop/Nope@1", value)
