"""The serial world: admission, steps, cells, typed errors, reopening."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from aos.records import EventAdmitted, StepCommitted, StepFailed
from conftest import make_counter_manifest


def records(path: Path, m: aos.Manifest) -> list[Any]:
    return [r for _e, r in JournalReader(path / "journal", m.era).records()]


def test_submit_run_state(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        w.submit("test/Add@1", {"id": "a", "by": 2})
        w.submit("test/Add@1", {"id": "b"})
        w.submit("test/Add@1", {"id": "a", "by": 5})
        r = w.run()
        assert (r.steps, r.committed, r.failed, r.quiescent) == (6, 6, 0, True)
        assert w.state("test/Counter@1", "a")["n"] == 7
        assert w.state("test/Counter@1", "b")["n"] == 1
        assert w.state("test/Total@1") == 8
        assert w.state("test/Counter@1", "zzz") is None
        assert w.cells() == [("test/Total@1", None), ("test/Counter@1", "a"), ("test/Counter@1", "b")]
        assert w.cells("test/Counter@1") == [("test/Counter@1", "a"), ("test/Counter@1", "b")]


def test_a_str_subclass_schema_is_journaled_as_its_plain_text(tmp_path: Path,
                                                               counter_manifest: aos.Manifest) -> None:
    """Regression (found by the fuzzer): the C record writer took only exact str schemas."""

    class Name(str):
        def __str__(self) -> str:
            return "not the schema"

    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        w.submit(Name("test/Add@1"), {"id": "a", "by": 2})
        w.run()
        assert w.state("test/Counter@1", "a")["n"] == 2
    admitted = [r for r in records(tmp_path / "w", counter_manifest) if isinstance(r, EventAdmitted)]
    assert [type(r.schema) for r in admitted] == [str] and admitted[0].schema == "test/Add@1"
    assert aos.replay(tmp_path / "w", counter_manifest).verify()


def test_ticket_order_is_round_robin_over_cells(tmp_path: Path) -> None:
    m = aos.Manifest("test/rr@1")
    seen: list[tuple[int, Any]] = []

    @m.reducer("test/C@1", key="k", events=["test/E@1"])
    def c(ctx: Any, state: Any, event: Any) -> Any:
        seen.append((ctx.event_id, ctx.key))
        return (state or 0) + 1

    with aos.World.open(tmp_path / "w", m) as w:
        for k in ["hot"] * 4 + ["x", "y"]:
            w.submit("test/E@1", {"k": k})
        w.run()
    assert seen == [(1, "hot"), (2, "x"), (3, "y"), (4, "hot"), (5, "hot"), (6, "hot")]


def test_keyed_cell_created_with_none_and_deleted_on_none(tmp_path: Path) -> None:
    m = aos.Manifest("test/life@1")
    states: list[Any] = []

    @m.reducer("test/C@1", key="k", events=["test/E@1"])
    def c(ctx: Any, state: Any, event: Any) -> Any:
        states.append(state)
        return None if event.value.get("delete") else (state or 0) + 1

    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/E@1", {"k": 1})
        w.run()
        assert states == [None] and w.state("test/C@1", 1) == 1
        assert w.cells() == [("test/C@1", 1)]
        w.submit("test/E@1", {"k": 1, "delete": True})
        w.run()
        assert w.state("test/C@1", 1) is None and w.cells() == []
        w.submit("test/E@1", {"k": 1})
        w.run()
        assert states[-1] is None and w.state("test/C@1", 1) == 1
    committed = [r for r in records(tmp_path / "w", m) if isinstance(r, StepCommitted)]
    assert committed[1].state_hash is None


def test_emitted_events_admitted_at_commit_in_emit_order(tmp_path: Path) -> None:
    m = aos.Manifest("test/emit@1")
    got: list[Any] = []

    @m.reducer("test/Src@1", events=["test/Go@1"])
    def src(ctx: Any, state: Any, event: Any) -> Any:
        for i in range(3):
            ctx.emit("test/Item@1", {"k": "dst", "i": i})
        ctx.emit("test/Note@1", {"i": 99})  # declared, routed nowhere
        return 1

    @m.reducer("test/Dst@1", key="k", events=["test/Item@1"])
    def dst(ctx: Any, state: Any, event: Any) -> Any:
        got.append(event.value["i"])
        return (state or []) + [event.value["i"]]

    m.schema("test/Note@1")
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/Go@1", {})
        w.run()
        assert w.state("test/Dst@1", "dst") == [0, 1, 2]
    assert got == [0, 1, 2]
    commit = next(r for r in records(tmp_path / "w", m) if isinstance(r, StepCommitted))
    assert [e.schema for e in commit.emits] == ["test/Item@1"] * 3 + ["test/Note@1"]


def test_one_schema_routes_to_several_reducers_in_declared_order(tmp_path: Path) -> None:
    m = aos.Manifest("test/routes@1")
    order: list[str] = []
    for name in ["test/Z@1", "test/A@1", "test/M@1"]:
        @m.reducer(name, events=["test/E@1"], code_id=name)
        def r(ctx: Any, state: Any, event: Any) -> Any:
            order.append(ctx.reducer)
            return 1
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/E@1", {})
        w.run()
    assert order == ["test/Z@1", "test/A@1", "test/M@1"]


def test_rng_is_deterministic_per_step(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    def run(path: Path) -> list[Any]:
        with aos.World.open(path, counter_manifest) as w:
            for i in range(20):
                w.submit("test/Add@1", {"id": i % 3})
            w.run()
            return [w.state("test/Counter@1", k)["r"] for k in range(3)]
    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a == b and len(set(a)) == 3


def test_reducer_that_raises_is_recorded_and_world_carries_on(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        w.submit("test/Add@1", {"id": "a"})
        w.submit("test/Add@1", {"id": "a", "boom": True, "forward_to": "b"})
        w.submit("test/Add@1", {"id": "c"})
        r = w.run()
        assert r.failed == 1
        assert w.state("test/Counter@1", "a")["n"] == 1  # unchanged by the failed step
        assert w.state("test/Counter@1", "b") is None    # its emit was not admitted
        assert w.state("test/Counter@1", "c")["n"] == 1
    failed = [r for r in records(tmp_path / "w", counter_manifest) if isinstance(r, StepFailed)]
    assert len(failed) == 1
    assert failed[0].error == "ValueError" and "boom on a" in failed[0].message
    assert "0x?" in failed[0].message  # the object address is not journaled
    assert aos.replay(tmp_path / "w", counter_manifest).verify()


def test_run_max_steps(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        for i in range(5):
            w.submit("test/Add@1", {"id": i})
        r = w.run(max_steps=3)
        assert (r.steps, r.quiescent) == (3, False)
        assert w.last_event_id == 3
        assert w.run().steps == 7
        assert w.run().steps == 0


# ------------------------------------------------------------ typed errors
@pytest.mark.parametrize("schema, value, error, match", [
    ("test/Nope@1", {"id": "a"}, aos.UnknownSchemaError, "unknown schema 'test/Nope@1'"),
    ("test/Add@1", {"by": 1}, aos.MissingKeyFieldError, "missing field 'id'.*test/Counter@1"),
    ("test/Add@1", [1, 2], aos.MissingKeyFieldError, "must be a map"),
    ("test/Add@1", {"id": 1.5}, aos.InvalidKeyError, "key must be str, int or bytes"),
    ("test/Add@1", {"id": True}, aos.InvalidKeyError, "got bool"),
    ("test/Add@1", {"id": "a", "x": {1, 2}}, aos.UnencodableValueError, r"test/Add@1: value\['x'\]: type set"),
    ("test/Add@1", {"id": "a", "x": [float("nan")]}, aos.UnencodableValueError, r"value\['x'\]\[0\]: NaN"),
    (42, {}, aos.UnknownSchemaError, "schema must be a string"),
])
def test_submit_errors_are_typed_and_journal_nothing(tmp_path: Path, counter_manifest: aos.Manifest,
                                                     schema: Any, value: Any, error: type, match: str) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        w.submit("test/Add@1", {"id": "ok"})
        before = w.stats["records"]
        with pytest.raises(error, match=match):
            w.submit(schema, value)
        assert w.stats["records"] == before
        assert w.run().steps == 2
    admitted = [r for r in records(tmp_path / "w", counter_manifest) if isinstance(r, EventAdmitted)]
    assert len(admitted) == 1


def test_emit_errors_fail_the_step(tmp_path: Path) -> None:
    m = aos.Manifest("test/emiterr@1")

    @m.reducer("test/C@1", key="k", events=["test/E@1"])
    def c(ctx: Any, state: Any, event: Any) -> Any:
        ctx.emit(event.value["emit"], {"no_key": 1})
        return 1

    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/E@1", {"k": 1, "emit": "test/Unknown@1"})
        w.submit("test/E@1", {"k": 2, "emit": "test/E@1"})
        assert w.run().failed == 2
    failed = [r for r in records(tmp_path / "w", m) if isinstance(r, StepFailed)]
    assert [f.error for f in failed] == ["UnknownSchemaError", "MissingKeyFieldError"]


def test_unencodable_state_fails_the_step(tmp_path: Path) -> None:
    m = aos.Manifest("test/badstate@1")

    @m.reducer("test/C@1", events=["test/E@1"])
    def c(ctx: Any, state: Any, event: Any) -> Any:
        return {"when": object()}

    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/E@1", 1)
        assert w.run().failed == 1
    failed = [r for r in records(tmp_path / "w", m) if isinstance(r, StepFailed)]
    assert failed[0].error == "UnencodableValueError" and "state['when']" in failed[0].message


def test_wrong_manifest_is_refused(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        w.submit("test/Add@1", {"id": "a"})
        w.run()
    other = make_counter_manifest("test/other@1")
    with pytest.raises(aos.ManifestMismatchError, match="created with manifest 'test/counter@1'"):
        aos.World.open(tmp_path / "w", other)
    with pytest.raises(aos.ManifestMismatchError):
        aos.replay(tmp_path / "w", other)


def test_state_and_cells_argument_errors(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        with pytest.raises(aos.UnknownReducerError, match="no reducer 'test/Nope@1'"):
            w.state("test/Nope@1", "a")
        with pytest.raises(aos.UnknownReducerError):
            w.cells("test/Nope@1")
        with pytest.raises(TypeError, match="pass a key"):
            w.state("test/Counter@1")
        with pytest.raises(TypeError, match="not keyed"):
            w.state("test/Total@1", "x")
        with pytest.raises(aos.InvalidKeyError):
            w.state("test/Counter@1", 1.5)


def test_closed_locked_and_missing_worlds(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    w = aos.World.open(tmp_path / "w", counter_manifest)
    with pytest.raises(aos.WorldLockedError):
        aos.World.open(tmp_path / "w", counter_manifest)
    w.close()
    w.close()  # idempotent
    with pytest.raises(aos.WorldClosedError):
        w.submit("test/Add@1", {"id": "a"})
    with pytest.raises(aos.WorldNotFoundError):
        aos.World.open(tmp_path / "none", counter_manifest, create=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(aos.StorageError, match="not an aos world"):
        aos.World.open(tmp_path / "junk", counter_manifest)


def test_reopen_continues_with_same_state(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        for i in range(50):
            w.submit("test/Add@1", {"id": i % 7, "forward_to": (i + 1) % 7})
        w.run()
        h1 = w.snapshot_hash()
        last = w.last_event_id
    with aos.World.open(tmp_path / "w", counter_manifest) as w:
        assert w.snapshot_hash() == h1 and w.last_event_id == last
        w.submit("test/Add@1", {"id": 3})
        w.run()
        assert w.state("test/Counter@1", 3)["last"] > last
        h2 = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", counter_manifest).verify() == h2


def test_reopen_without_close_replays_journal_tail(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    """A world that was not closed (as after a crash) reopens from snapshot + journal."""
    import shutil

    w = aos.World.open(tmp_path / "w", counter_manifest, snapshot_every=40)
    for i in range(100):
        w.submit("test/Add@1", {"id": i % 9, "forward_to": i % 4})
    w.run()
    h = w.snapshot_hash()
    shutil.copytree(tmp_path / "w", tmp_path / "crashed")  # files as they are, no close
    w.close()
    snaps = list((tmp_path / "crashed" / "snapshots").iterdir())
    assert len(snaps) >= 1
    with aos.World.open(tmp_path / "crashed", counter_manifest) as w2:
        assert w2.snapshot_hash() == h


def test_durability_modes_and_durable_event_id(tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    for mode in ["always", "group", "none", aos.Durability("group", group_commits=3, group_ms=1e9)]:
        path = tmp_path / str(getattr(mode, "mode", mode)) / str(id(mode))
        with aos.World.open(path, counter_manifest, durability=mode) as w:
            for i in range(10):
                w.submit("test/Add@1", {"id": i})
            w.run()
            assert w.durable_event_id == w.last_event_id == 20
    with pytest.raises(ValueError):
        aos.World.open(tmp_path / "bad", counter_manifest, durability="sometimes")


def test_step_torn_between_scheduled_and_outcome_is_completed_on_reopen(
        tmp_path: Path, counter_manifest: aos.Manifest) -> None:
    path = tmp_path / "w"
    with aos.World.open(path, counter_manifest, snapshot_every=0, snapshot_on_close=False) as w:
        for i in range(9):
            w.submit("test/Add@1", {"id": i % 3})
        w.run()
    # the last step is written but never synced (durability "none"): a crash may tear it
    with aos.World.open(path, counter_manifest, durability="none", snapshot_every=0, snapshot_on_close=False) as w:
        w.submit("test/Add@1", {"id": 0})
        w.run()
        h = w.snapshot_hash()
    entries = list(JournalReader(path / "journal", counter_manifest.era).entries())
    last = entries[-1]
    assert isinstance(last.record(), StepCommitted)
    seg = path / "journal" / last.segment
    with open(seg, "r+b") as f:
        f.truncate(last.offset + 5)  # the outcome of the last step is torn
    with aos.World.open(path, counter_manifest) as w:
        assert w.snapshot_hash() == h
    again = list(JournalReader(path / "journal", counter_manifest.era).entries())
    assert [e.payload for e in again[:len(entries)]] == [e.payload for e in entries]
    assert aos.replay(path, counter_manifest).verify() == h
