"""Upcasters: old event schemas delivered to new code (docs/upgrades.md, "Upcasters")."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

import aos
from aos import canonical
from aos.examples import spin
from aos.journal import JournalReader
from aos.records import EventAdmitted, StepFailed
from aos.shadow import shadow_run

ORDER, AUDIT = "t/Order@1", "t/Audit@1"
P1, P2, P3 = "t/Placed@1", "t/Placed@2", "t/Placed@3"


def to_p2(v: Any) -> Any:
    return {"order_id": v["id"], "quantity": v["qty"]}


def v1_manifest() -> aos.Manifest:
    m = aos.Manifest("t/shop@1")

    @m.reducer(ORDER, key="id", events=[P1])
    def order(ctx: Any, state: Any, event: Any) -> Any:
        return {"n": (state or {"n": 0})["n"] + event.value["qty"]}

    @m.reducer(AUDIT, events=[P1])
    def audit(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    return m


def v2_manifest(upcast: Callable[[Any], Any] = to_p2) -> aos.Manifest:
    """Order reads t/Placed@2 (its key field renamed); t/Placed@1 events are upcast."""
    m = aos.Manifest("t/shop@1")

    @m.reducer(ORDER, key="order_id", events=[P2])
    def order(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"units": 0, "seen": []}
        if event.value["quantity"] > 50:
            ctx.emit(P1, {"id": "bulk", "qty": 1})  # old code paths may still emit the old schema
        return {"units": state["units"] + event.value["quantity"], "seen": state["seen"] + [event.schema]}

    @m.reducer(AUDIT, events=[P2])
    def audit(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    m.upcast(P1, P2, upcast)
    return m


def to_v2(old: Any) -> Any:
    return {"units": old["n"], "seen": []}


def _journal(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted((path / "journal").glob("*.seg")))


def _files(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file() and f.name not in ("world.lock", "metrics.json")}


def _records(path: Path) -> list[Any]:
    return [rec for _e, rec in JournalReader(path / "journal").records()]


# ------------------------------------------------------------------ the manifest
def test_a_reducer_may_not_take_an_upcast_schema() -> None:
    m = v2_manifest()
    with pytest.raises(aos.ManifestError, match=r"takes t/Placed@1, which manifest t/shop@1 upcasts"):
        m.reducer("t/Old@1", events=[P1])(lambda c, s, e: s)
    m = v1_manifest()
    with pytest.raises(aos.ManifestError, match=r"upcaster t/Placed@1 -> t/Placed@2: reducer t/Order@1 takes "
                                                r"t/Placed@1 directly"):
        m.upcast(P1, P2, to_p2)


@pytest.mark.parametrize("case", ["twice", "cycle", "self", "sys", "declared", "not-callable", "bad-name"])
def test_upcaster_refusals_name_the_schemas(case: str) -> None:
    m = v2_manifest()
    m.upcast(P3, "t/Placed@4", lambda v: v)
    with pytest.raises(aos.ManifestError) as info:
        if case == "twice":
            m.upcast(P1, P3, lambda v: v)
        elif case == "cycle":
            m.upcast("t/Placed@4", P3, lambda v: v)
        elif case == "self":
            m.upcast("t/X@1", "t/X@1", lambda v: v)
        elif case == "sys":
            m.upcast("sys/Receipt@1", P2, lambda v: v)
        elif case == "declared":
            m.schema(P1)
        elif case == "not-callable":
            m.upcast("t/Y@1", P2, 42)  # type: ignore[arg-type]
        else:
            m.upcast("Placed", P2, lambda v: v)
    text = str(info.value)
    expected = {"twice": "t/Placed@1 already has an upcaster (to t/Placed@2)",
                "cycle": "cycle (t/Placed@4 -> t/Placed@3 -> t/Placed@4)",
                "self": "t/X@1 -> t/X@1: a schema cannot be upcast to itself",
                "sys": "the sys/ namespace", "declared": "upcasts it to t/Placed@2",
                "not-callable": "t/Y@1 -> t/Placed@2: 42 is not callable", "bad-name": "'Placed'"}[case]
    assert expected in text


def test_an_upcaster_must_end_at_a_schema_a_reducer_takes() -> None:
    m = v2_manifest()
    m.upcast("t/Shipped@1", "t/Shipped@2", lambda v: v)
    with pytest.raises(aos.ManifestError, match=r"upcaster t/Shipped@1 -> t/Shipped@2: no reducer of manifest "
                                                r"t/shop@1 takes t/Shipped@2"):
        m.describe()
    m.schema("t/Shipped@2")  # declared only: still not taken
    with pytest.raises(aos.ManifestError, match="no reducer"):
        _ = m.era


def test_upcasters_are_part_of_the_era_and_of_the_change_list() -> None:
    assert "upcasters" not in v1_manifest().describe()  # manifests without them describe themselves as before
    d = v2_manifest().describe()
    assert [(u["from"], u["to"]) for u in d["upcasters"]] == [(P1, P2)]
    assert d["upcasters"][0]["code"].startswith("py:") and "" in d["upcasters"][0]["code_parts"]
    other = v2_manifest(lambda v: {"order_id": v["id"], "quantity": 2 * v["qty"]})
    assert other.era != v2_manifest().era
    kinds = [(c.kind, c.subject) for c in aos.changes(v2_manifest().describe(), other.describe())]
    assert kinds == [("upcaster-code", P1)]
    change = aos.changes(v2_manifest().describe(), other.describe())[0]
    assert change.text == "upcaster t/Placed@1 -> t/Placed@2: code changed (its own code changed)"

    kinds = [c.kind for c in aos.changes(v1_manifest().describe(), v2_manifest().describe())]
    assert "upcaster-added" in kinds
    assert [c.text for c in aos.changes(v2_manifest().describe(), v1_manifest().describe())
            if c.kind.startswith("upcaster")] == ["upcaster t/Placed@1 -> t/Placed@2 removed"]

    chained = v2_manifest()
    chained.upcast("t/Placed@0", P1, lambda v: v)
    retarget = v2_manifest()
    retarget.upcast("t/Placed@0", P2, lambda v: v)
    found = [c for c in aos.changes(chained.describe(), retarget.describe()) if c.kind == "upcaster-target"]
    assert [(c.subject, c.before, c.after) for c in found] == [("t/Placed@0", P1, P2)]


def test_an_upcaster_code_id_overrides_its_identity() -> None:
    m = v2_manifest()
    m.upcast("t/Placed@0", P1, lambda v: v, code_id="zero-to-one-v1")
    assert [u["code"] for u in m.describe()["upcasters"] if u["from"] == "t/Placed@0"] == ["zero-to-one-v1"]


# ------------------------------------------------------------------ routing and delivery
def test_old_events_are_routed_like_the_new_schema_and_delivered_upcast(tmp_path: Path) -> None:
    p = tmp_path / "w"
    with aos.World.open(p, v2_manifest()) as w:
        w.submit(P1, {"id": "a", "qty": 2})           # an old client, after the upgrade
        w.submit(P2, {"order_id": "a", "quantity": 3})
        w.submit(P1, {"id": "b", "qty": 60})          # its step emits a t/Placed@1, upcast too
        w.run()
        assert w.state(ORDER, "a") == {"units": 5, "seen": [P2, P2]}
        assert w.state(ORDER, "b") == {"units": 60, "seen": [P2]}
        assert w.state(ORDER, "bulk") == {"units": 1, "seen": [P2]}
        assert w.state(AUDIT) == 4
    admitted = [(r.schema, canonical.decode(r.value)) for r in _records(p) if isinstance(r, EventAdmitted)]
    assert admitted == [(P1, {"id": "a", "qty": 2}), (P2, {"order_id": "a", "quantity": 3}),
                        (P1, {"id": "b", "qty": 60})]  # the journal keeps what arrived
    aos.replay(p, v2_manifest()).verify()


def test_chains_compose_in_order(tmp_path: Path) -> None:
    m = aos.Manifest("t/chain@1")
    seen: list[Any] = []

    @m.reducer("t/C@1", key="k", events=[P3])
    def c(ctx: Any, state: Any, event: Any) -> Any:
        seen.append((event.schema, event.value))
        return event.value

    m.upcast(P2, P3, lambda v: dict(v, three=True, steps=v["steps"] + [3]))
    m.upcast(P1, P2, lambda v: {"k": v["old_key"], "steps": [2]})
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit(P1, {"old_key": 7})
        w.submit(P2, {"k": 8, "steps": []})
        w.run()
    assert seen == [(P3, {"k": 7, "steps": [2, 3], "three": True}), (P3, {"k": 8, "steps": [3], "three": True})]


def test_the_upcast_value_is_canonical(tmp_path: Path) -> None:
    m = aos.Manifest("t/canon@1")
    got: list[Any] = []

    @m.reducer("t/C@1", events=[P2])
    def c(ctx: Any, state: Any, event: Any) -> Any:
        got.append(event.value)
        return None

    m.upcast(P1, P2, lambda v: {"pair": (1, 2)})  # a tuple: the reducer reads the list the journal model holds
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit(P1, {})
        w.run()
    assert got == [{"pair": [1, 2]}] and type(got[0]["pair"]) is list


@pytest.mark.determinism
def test_workers_0_1_2_4_write_the_same_journal_and_replay_verifies(tmp_path: Path) -> None:
    journals = set()
    for workers in (0, 1, 2, 4):
        p = tmp_path / f"w{workers}"
        with aos.World.open(p, v2_manifest(), workers=workers) as w:
            for i in range(60):
                if i % 3:
                    w.submit(P1, {"id": f"o{i % 7}", "qty": i})
                else:
                    w.submit(P2, {"order_id": f"o{i % 7}", "quantity": i})
            w.run()
        journals.add(_journal(p))
        aos.replay(p, v2_manifest()).verify()
    assert len(journals) == 1


def native_manifest(native: bool) -> aos.Manifest:
    m = aos.Manifest("t/spin@1")
    if native:
        m.native_reducer("t/Spin@1", key="id", events=["t/Go@2"], fn=spin.REDUCER, user=50, code_id=spin.CODE_ID)
    else:
        m.reducer("t/Spin@1", key="id", events=["t/Go@2"])(spin.python_spin(50))
    m.upcast("t/Go@1", "t/Go@2", lambda v: {"id": v["n"] % 5})
    return m


@pytest.mark.parametrize("workers", [0, 2])
def test_a_native_reducer_gets_old_events_upcast(tmp_path: Path, workers: int) -> None:
    out = []
    for native in (False, True):
        p = tmp_path / f"{native}{workers}"
        m = native_manifest(native)
        with aos.World.open(p, m, workers=workers, snapshot_on_close=False) as w:
            for i in range(40):
                w.submit("t/Go@1", {"n": i})
            w.run()
            out.append((w.snapshot_hash(), [w.state("t/Spin@1", k) for k in range(5)]))
        aos.replay(p, m).verify()
    assert out[0] == out[1] and None not in out[0][1]


# ------------------------------------------------------------------ failures
def test_a_failing_upcaster_refuses_the_submit_and_admits_nothing(tmp_path: Path) -> None:
    p = tmp_path / "w"
    with aos.World.open(p, v2_manifest()) as w:
        w.submit(P1, {"id": "a", "qty": 1})
        w.sync()
        before = _journal(p)
        with pytest.raises(aos.UpcastError, match=r"upcaster t/Placed@1 -> t/Placed@2 raised KeyError: 'qty' "
                                                  r"\(submitted event t/Placed@1\)") as info:
            w.submit(P1, {"id": "a"})
        assert isinstance(info.value, aos.AdmissionError) and (info.value.old, info.value.new) == (P1, P2)
        w.sync()
        assert _journal(p) == before
        w.run()
        assert w.state(ORDER, "a") == {"units": 1, "seen": [P2]}


def test_an_upcast_value_without_the_key_field_is_refused(tmp_path: Path) -> None:
    with aos.World.open(tmp_path / "w", v2_manifest(lambda v: {"quantity": v["qty"]})) as w:
        with pytest.raises(aos.MissingKeyFieldError, match=r"submitted event t/Placed@1 upcast to t/Placed@2: "
                                                            r"missing field 'order_id'"):
            w.submit(P1, {"id": "a", "qty": 1})


def test_an_upcaster_failing_at_delivery_fails_the_step(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(v: Any) -> Any:  # takes the event at admission, fails when it is delivered
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise ValueError("no unit for this quantity")
        return to_p2(v)

    p = tmp_path / "w"
    with aos.World.open(p, v2_manifest(flaky)) as w:
        w.submit(P1, {"id": "a", "qty": 1})
        w.run()
        assert w.state(ORDER, "a") is None
        w.submit(P2, {"order_id": "a", "quantity": 4})  # the world goes on
        w.run()
        assert w.state(ORDER, "a") == {"units": 4, "seen": [P2]}
    failed = [r for r in _records(p) if isinstance(r, StepFailed)]
    assert [(r.event_id, r.reducer, r.error) for r in failed] == [(1, ORDER, "UpcastError")]
    assert failed[0].message == ("upcaster t/Placed@1 -> t/Placed@2 raised ValueError: no unit for this quantity "
                                 "(event seq 0 delivered to reducer t/Order@1 at event_id 1)")
    assert "flaky" in failed[0].traceback and "raise ValueError" in failed[0].traceback


def test_an_upcaster_returning_an_unencodable_value_at_delivery_fails_the_step(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(v: Any) -> Any:
        calls["n"] += 1
        return to_p2(v) if calls["n"] % 2 else {"order_id": v["id"], "quantity": {1, 2}}

    p = tmp_path / "w"
    with aos.World.open(p, v2_manifest(flaky), strict=True) as w:
        w.submit(P1, {"id": "a", "qty": 1})
        with pytest.raises(aos.ReducerError, match="UpcastError: upcaster t/Placed@1 -> t/Placed@2 returned a "
                                                   "value that is not an event value") as info:
            w.run()
        assert info.value.reducer == ORDER and info.value.event_id == 1
        with pytest.raises(aos.UpcastError, match="returned a value that is not an event value"):
            w.submit(P1, {"id": "a", "qty": 1})  # (the admission's run of the flaky upcaster fails this time)
    failed = [r for r in _records(p) if isinstance(r, StepFailed)]
    assert [(r.event_id, r.error) for r in failed] == [(1, "UpcastError")]


def _with_waiting_inputs(p: Path, new: aos.Manifest) -> tuple[aos.World, int]:
    with aos.World.open(p, v1_manifest()) as w:
        for i in range(6):
            w.submit(P1, {"id": f"o{i % 2}", "qty": i + 1})
        w.run()
    w = aos.World.open(p, v1_manifest())
    w.submit(P1, {"id": "o0", "qty": 10})  # waiting in the mailboxes when the upgrade applies
    w.submit(P1, {"id": "o1", "qty": 20})
    pid = w.propose(new)
    w.approve(pid, by="test")
    return w, pid


def test_inputs_waiting_at_the_apply_reach_the_new_code_upcast(tmp_path: Path) -> None:
    p = tmp_path / "w"
    w, pid = _with_waiting_inputs(p, v2_manifest())
    result = w.apply(pid, v2_manifest(), migrate={ORDER: to_v2})
    with aos.World.open(p, v2_manifest()) as w:
        w.submit(P1, {"id": "o0", "qty": 100})  # an old client after the upgrade
        w.run()
        assert w.state(ORDER, "o0") == {"units": 1 + 3 + 5 + 10 + 100, "seen": [P2, P2]}
        assert w.state(ORDER, "o1") == {"units": 2 + 4 + 6 + 20, "seen": [P2]}
        assert w.state(ORDER, "bulk") == {"units": 1, "seen": [P2]}
    assert {r.schema for r in _records(p) if isinstance(r, EventAdmitted)} == {P1}
    aos.replay(p, manifests=[v1_manifest(), v2_manifest()]).verify()
    part = aos.replay(p, v2_manifest())
    part.verify()
    assert list(part.not_reexecuted) == list(range(1, result.event_id + 1))


def test_an_upcaster_failing_on_a_waiting_input_refuses_the_apply(tmp_path: Path) -> None:
    p = tmp_path / "w"
    def picky(v: Any) -> Any:
        if v["qty"] == 20:
            raise ValueError("twenty is not a quantity v2 knows")
        return to_p2(v)

    w, pid = _with_waiting_inputs(p, v2_manifest(picky))

    w.sync()
    files = _files(p)
    with pytest.raises(aos.UpcastError) as info:
        w.apply(pid, v2_manifest(picky), migrate={ORDER: to_v2})
    assert str(info.value) == ("upcaster t/Placed@1 -> t/Placed@2 raised ValueError: twenty is not a quantity v2 "
                               "knows (event seq 7 waiting in a mailbox; nothing was written, the world stays in "
                               "its era)")
    assert isinstance(info.value, aos.UpgradeError)
    w.sync()
    assert _files(p) == files  # nothing written: the same files, the same bytes
    w.run()  # still open, in its era
    assert w.state(ORDER, "o1") == {"n": 2 + 4 + 6 + 20}
    w.close()
    with aos.World.open(p, v1_manifest()) as w:
        assert w.era == v1_manifest().era.hex()


# ------------------------------------------------------------------ shadow runs
def test_a_shadow_run_upcasts_old_events(tmp_path: Path) -> None:
    p = tmp_path / "w"
    with aos.World.open(p, v1_manifest()) as w:
        for i in range(8):
            w.submit(P1, {"id": f"o{i % 2}", "qty": i})
        w.run()
    report = shadow_run(p, v2_manifest(), since=1)
    assert not report.refused
    assert report.compared == 16
    states = {(d.reducer, d.key): d.shadow.state for d in report.diffs if d.reducer == ORDER}
    assert states[(ORDER, "o0")] == {"units": 0 + 2 + 4 + 6, "seen": [P2] * 4}
    assert states[(ORDER, "o1")] == {"units": 1 + 3 + 5 + 7, "seen": [P2] * 4}
    assert all(d.reducer == ORDER for d in report.diffs)  # Audit counts the upcast events as before


@pytest.mark.determinism
def test_an_upgrade_with_an_upcaster_gives_the_same_journal_for_workers_0_1_2_4(tmp_path: Path) -> None:
    journals = set()
    for workers in (0, 1, 2, 4):
        p = tmp_path / f"w{workers}"
        with aos.World.open(p, v1_manifest(), workers=workers) as w:
            for i in range(30):
                w.submit(P1, {"id": f"o{i % 4}", "qty": i})
            w.run()
            for i in range(5):  # waiting in the mailboxes at the apply
                w.submit(P1, {"id": f"o{i % 4}", "qty": 40 + i})
        aos.upgrade(p, v2_manifest(), old=v1_manifest(), migrate={ORDER: to_v2}, workers=workers)
        with aos.World.open(p, v2_manifest(), workers=workers) as w:
            for i in range(30):
                w.submit(P1 if i % 2 else P2, {"id": f"o{i % 5}", "qty": 3 * i} if i % 2 else
                         {"order_id": f"o{i % 5}", "quantity": 3 * i})
            w.run()
            assert w.state(ORDER, "bulk") is not None  # a step emitted a t/Placed@1, upcast on delivery
        journals.add(_journal(p))
        aos.replay(p, manifests=[v1_manifest(), v2_manifest()]).verify()
    assert len(journals) == 1


def test_a_shadow_run_lists_recorded_events_its_upcaster_refuses(tmp_path: Path) -> None:
    p = tmp_path / "w"
    with aos.World.open(p, v1_manifest()) as w:
        for i in range(4):
            w.submit(P1, {"id": "o0", "qty": i})
        w.run()

    def picky(v: Any) -> Any:
        if v["qty"] == 2:
            raise ValueError("no such quantity")
        return to_p2(v)

    report = shadow_run(p, v2_manifest(picky), since=1)
    assert [(r.seq, r.what) for r in report.refused] == [(2, f"event {P1}")]
    assert report.refused[0].reason == ("upcaster t/Placed@1 -> t/Placed@2 raised ValueError: no such quantity "
                                        "(journaled event 2 t/Placed@1)")
    assert not report.ok
