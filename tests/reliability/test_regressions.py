"""Regression tests for the defects the reliability suite found, one each, small and fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aos
from conftest import make_counter_manifest


def test_world_killed_while_being_created_can_be_opened(tmp_path: Path) -> None:
    """A process killed between writing secret.key and world.cbor left a world that never opened again."""
    m = make_counter_manifest()
    path = tmp_path / "w"
    path.mkdir()
    (path / "secret.key").write_bytes(b"\x01" * 32)  # what an interrupted creation leaves
    (path / "world.cbor.tmp").write_bytes(b"\xa1")
    with aos.World.open(path, m) as w:
        w.submit("test/Add@1", {"id": 1})
        w.run()
        h = w.snapshot_hash()
    assert aos.replay(path, m).verify() == h
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a world")
    try:
        aos.World.open(tmp_path / "other", m)
    except aos.StorageError as exc:
        assert "not an aos world" in str(exc)
    else:  # pragma: no cover - reported by the assertion
        raise AssertionError("a directory with foreign files was taken for a world")


def test_segment_cut_before_the_snapshot_position_names_where_it_ends(tmp_path: Path) -> None:
    """The error named the snapshot's offset, past the end of the cut file, instead of where the file ends."""
    m = make_counter_manifest()
    path = tmp_path / "w"
    with aos.World.open(path, m, segment_bytes=2_000, snapshot_every=0, snapshot_on_close=False) as w:
        for i in range(60):
            w.submit("test/Add@1", {"id": i % 5})
        w.run()
        info = w.snapshot()  # points into the last segment of the time...
        for i in range(60):  # ...which then stops being the last one
            w.submit("test/Add@1", {"id": i % 5})
        w.run()
    seg = path / "journal" / f"{info.position.segment:020d}.seg"
    assert sorted((path / "journal").glob("*.seg"))[-1] != seg
    cut = info.position.offset - 10
    with open(seg, "r+b") as f:
        f.truncate(cut)
    try:
        aos.World.open(path, m)
    except aos.JournalCorruptError as exc:
        assert (exc.segment, exc.offset) == (seg.name, cut), exc
    else:  # pragma: no cover - reported by the assertion
        raise AssertionError("a segment cut short before the snapshot position was accepted")


def test_shared_reference_bombs_are_refused_at_once() -> None:
    """Tags 28/29 (and 25/256) made 70 bytes decode into 2**23 leaves: decode ran for minutes."""
    import time

    import cbor2

    from aos import canonical

    items = [b"\xd8\x1c\x80"]  # 28([]) is shared value 0; then 28([29(k-1), 29(k-1)]), doubling each time
    for k in range(1, 21):  # 2**20 leaves: seconds before the fix (each level more doubles that)
        ref = b"\xd8\x1d" + cbor2.dumps(k - 1)
        items.append(b"\xd8\x1c\x82" + ref + ref)
    bomb = b"\x98" + bytes([len(items)]) + b"".join(items)
    string_refs = b"\xd9\x01\x00\x99\x03\xe9" + cbor2.dumps("s" * 1000) + b"\xd8\x19\x00" * 1000
    for data in (bomb, string_refs, b"\x81\xd9\x00\x1c\x80"):  # the last: tag 28 in a longer head
        t0 = time.perf_counter()
        try:
            canonical.decode(data)
        except aos.NonCanonicalError as exc:
            assert "outside the value model" in str(exc)
        else:  # pragma: no cover - reported by the assertion
            raise AssertionError("a reference tag was accepted")
        assert time.perf_counter() - t0 < 0.5
    # bytes that merely look like such a tag inside a string still decode
    assert canonical.decode(cbor2.dumps(b"\xd8\x1c\xd9\x01\x00")) == b"\xd8\x1c\xd9\x01\x00"
    assert canonical.decode(cbor2.dumps([2**70, "\xd8\x1d"], canonical=True)) == [2**70, "\xd8\x1d"]


def test_malformed_world_metadata_is_a_storage_error(tmp_path: Path) -> None:
    """A world.cbor with a non-map description, odd window/aging or a bad reducer list raised
    AttributeError, TypeError, ValueError or OverflowError from World.open instead of a typed error."""
    import shutil

    from aos import canonical

    m = make_counter_manifest()
    path = tmp_path / "w"
    with aos.World.open(path, m):
        pass
    meta = canonical.decode((path / "world.cbor").read_bytes())
    bad = [dict(meta, manifest=5), dict(meta, manifest=dict(meta["manifest"], reducers=5)),
           dict(meta, manifest=dict(meta["manifest"], reducers=[1, 2])),
           dict(meta, manifest=dict(meta["manifest"], capabilities="x")),
           dict(meta, window="64"), dict(meta, window=0), dict(meta, aging=2**70), dict(meta, aging=None)]
    for i, doc in enumerate(bad):
        copy = tmp_path / f"c{i}"
        shutil.copytree(path, copy)
        (copy / "world.cbor").write_bytes(canonical.encode(doc))
        try:
            aos.World.open(copy, m)
        except aos.StorageError as exc:
            assert "world.cbor" in str(exc), exc
        else:  # pragma: no cover - reported by the assertion
            raise AssertionError(f"case {i}: malformed metadata was accepted")
    try:
        aos.World.open(tmp_path / "huge", m, window=2**70)
    except ValueError:
        pass
    else:  # pragma: no cover - reported by the assertion
        raise AssertionError("a window the sequencer cannot hold was accepted")
    assert not (tmp_path / "huge").exists() or not (tmp_path / "huge" / "world.cbor").exists()
    empty = aos.Manifest("t/m@1")  # a manifest error is still reported as one when a world exists
    try:
        aos.World.open(tmp_path / "w", empty)
    except aos.ManifestError:
        pass
    else:  # pragma: no cover - reported by the assertion
        raise AssertionError("a manifest without reducers opened a world")


def test_manifest_arguments_of_the_wrong_type_are_manifest_errors() -> None:
    """events=5, effect=5 or reducers=5 raised TypeError from inside the manifest instead of ManifestError."""
    m = aos.Manifest("t/m@1")
    attempts = [
        lambda: m.reducer("t/R@1", events=5)(lambda c, s, e: s),
        lambda: m.reducer("t/R@1", events={"t/E@1": 1})(lambda c, s, e: s),
        lambda: m.capability("c", effect=5, budget=1),
        lambda: m.invariant("i", lambda view: True, reducers=5),
        lambda: m.invariant("j", lambda view: True, reducers=[["t/R@1"]]),
    ]
    for i, attempt in enumerate(attempts):
        try:
            attempt()
        except aos.ManifestError:
            pass
        else:  # pragma: no cover - reported by the assertion
            raise AssertionError(f"attempt {i} was accepted")
    m.reducer("t/R@1", events=("t/E@1",))(lambda c, s, e: s)  # a tuple is a list of schema names too
    m.invariant("k", lambda view: True, reducers=("t/R@1",))
    assert m.describe()["invariants"][0]["reducers"] == ["t/R@1"]


def test_snapshot_rows_of_the_wrong_type_are_snapshot_errors(tmp_path: Path) -> None:
    """A snapshot (with a matching content hash) whose counters or ledger rows had other types loaded,
    and the world then failed with TypeError in the middle of replaying its tail."""
    import shutil

    from aos import canonical
    from aos.snapshot import list_snapshots

    m = make_counter_manifest()
    path = tmp_path / "w"
    with aos.World.open(path, m, snapshot_every=0, snapshot_on_close=False) as w:
        for i in range(10):
            w.submit("test/Add@1", {"id": i % 3, "forward_to": 1})
        w.run()
        w.snapshot()
        w.submit("test/Add@1", {"id": 1})
        w.run()
    snap = list_snapshots(path / "snapshots")[-1]
    doc = canonical.decode(snap.read_bytes())
    for i, (field, value) in enumerate([("failures", [0]), ("commits", "9"), ("next_seq", -1),
                                        ("ledger", [["x", "1", 0]]), ("inbox", [[0, 1, 2, 3]]),
                                        ("outbox", {"queued": [[1]], "settled": []})]):
        copy = tmp_path / f"c{i}"
        shutil.copytree(path, copy)
        for old in list_snapshots(copy / "snapshots"):
            old.unlink()
        data = canonical.encode(dict(doc, **{field: value}))
        (copy / "snapshots" / f"{snap.name.split('-')[0]}-{canonical.digest(data).hex()}.snap").write_bytes(data)
        try:
            aos.World.open(copy, m)
        except aos.SnapshotCorruptError as exc:
            assert "malformed snapshot" in str(exc), exc
        else:  # pragma: no cover - reported by the assertion
            raise AssertionError(f"{field}={value!r} was loaded")


def test_settle_returns_when_every_dispatched_effect_has_answered(tmp_path: Path) -> None:
    """run(settle=True) without a timeout waited forever once an adapter's receipt was refused
    (over budget): the effect stays queued, but no further receipt was coming."""
    import threading

    from effects_world import effects_manifest

    def overcharges(req: aos.EffectRequest) -> aos.Outcome:
        return aos.Outcome("ok", None, req.cost + 50)

    m = effects_manifest(budget=10)
    with aos.World.open(tmp_path / "w", m, effects="background", adapters={"payment.send": overcharges}) as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [3]})
        done: list[aos.RunResult] = []
        t = threading.Thread(target=lambda: done.append(w.run(settle=True)), daemon=True)
        t.start()
        t.join(10)
        assert done, "run(settle=True) did not return"
        assert done[0].outstanding == 1
        assert [type(exc) for _r, exc in w.refused_receipts] == [aos.ReceiptOverBudgetError]
        b = w.budget("pay")
        assert (b.reserved, b.spent) == (3, 0)


def test_every_invariant_violation_is_raised(tmp_path: Path) -> None:
    """With on_violation="raise", a run meeting several violations raised the first and dropped the rest."""
    from effects_world import effects_manifest

    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        for sku in ("x", "y", "z"):
            w.submit("test/Take@1", {"sku": sku, "qty": 9})  # each would leave the stock negative
        raised = []
        for _ in range(5):
            try:
                w.run()
                break
            except aos.InvariantViolation as v:
                raised.append(v.key)
        assert raised == ["x", "y", "z"]


def test_snapshot_position_out_of_range_is_a_snapshot_error(tmp_path: Path) -> None:
    """A snapshot (with a matching content hash) whose journal position had a negative offset made the
    journal reader fail with struct.error."""
    import shutil

    from aos import canonical
    from aos.snapshot import list_snapshots

    m = make_counter_manifest()
    path = tmp_path / "w"
    with aos.World.open(path, m, snapshot_every=0, snapshot_on_close=False) as w:
        w.submit("test/Add@1", {"id": 1})
        w.run()
        w.snapshot()
    snap = list_snapshots(path / "snapshots")[-1]
    doc = canonical.decode(snap.read_bytes())
    index, segment, offset, chain = doc["position"]
    for i, position in enumerate([[index, segment, -5, chain], [index, -1, offset, chain], [index, segment, 3, chain]]):
        copy = tmp_path / f"c{i}"
        shutil.copytree(path, copy)
        for old in list_snapshots(copy / "snapshots"):
            old.unlink()
        data = canonical.encode(dict(doc, position=position))
        (copy / "snapshots" / f"{snap.name.split('-')[0]}-{canonical.digest(data).hex()}.snap").write_bytes(data)
        try:
            aos.World.open(copy, m)
        except aos.SnapshotCorruptError as exc:
            assert "position" in str(exc), exc
        else:  # pragma: no cover - reported by the assertion
            raise AssertionError(f"position {position[:3]} was accepted")


def test_deep_values_with_floats_encode_from_a_deep_stack() -> None:
    """Values at the model's depth limit that contain a float (or bytes that look like a float head)
    hit RecursionError in the -0.0 check, which recursed through generator expressions."""
    from aos import canonical

    deep: object = [-0.0, 1.5]
    for _ in range(398):
        deep = [deep]

    def at_depth(n: int) -> bytes:
        return canonical.encode(deep) if n == 0 else at_depth(n - 1)

    data = at_depth(250)  # a caller that is itself some frames deep
    inner = canonical.decode(data)
    for _ in range(398):
        inner = inner[0]
    assert inner == [0.0, 1.5]


def test_receipt_payload_too_deep_to_deliver_is_refused_before_it_is_journaled(tmp_path: Path) -> None:
    """A receipt payload nested 400 levels (allowed) was journaled and settled, then failed while
    building the one-level-deeper sys/Receipt@1 event: the world kept a half-admitted receipt
    and its journal could not be replayed."""
    from effects_world import effects_manifest

    m = effects_manifest()
    deep: object = 0
    for _ in range(400):  # the most a value may nest
        deep = [deep]
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [5]})
        w.run()
        e = w.pending_effects()[0]
        before = (w.stats["records"], w.budget("pay"))
        try:
            w.submit_receipt(w.receipt(e.intent_hash, "ok", deep, 5))
        except aos.ReceiptError as exc:
            assert "cannot be delivered" in str(exc)
        else:  # pragma: no cover - reported by the assertion
            raise AssertionError("a receipt that cannot be delivered was admitted")
        assert (w.stats["records"], w.budget("pay")) == before and w.pending_effects() == [e]
        w.submit_receipt(w.receipt(e.intent_hash, "ok", {"ok": 1}, 5))
        w.run()
        h = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == h


class _Odd(str):
    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 1


class _Lying(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        return [("a", 1)]

    def __len__(self) -> int:
        return 7


class _Stretchy(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return iter([1, 2, 3])

    def __len__(self) -> int:
        return 9


def test_values_whose_subclasses_lie_are_encoded_as_they_are_or_refused(tmp_path: Path) -> None:
    """Bad input: two keys that encode alike (a str subclass beside the same text) were written twice, and a
    dict or list subclass whose length or iteration lied got a head that disagreed with its items: the
    event was journaled, and the world could not be reopened (NonCanonicalError)."""
    m = aos.Manifest("reg/lie@1")

    @m.reducer("reg/R@1", events=["reg/E@1"])
    def r(ctx: Any, state: Any, event: Any) -> Any:
        return event.value

    with aos.World.open(tmp_path / "w", m) as w:
        for value in ({"a": 0, _Odd("a"): 1}, {_Odd("a"): 1, "a": 0}):
            with pytest.raises(aos.UnencodableValueError, match="encode alike"):
                w.submit("reg/E@1", value)
        w.submit("reg/E@1", [_Lying(x=1), _Stretchy([5])])
        w.run()
        assert w.state("reg/R@1") == [{"x": 1}, [5]]
        h = w.snapshot_hash()
    with aos.World.open(tmp_path / "w", m, snapshot_on_close=False) as w:
        assert w.snapshot_hash() == h
    for snap in (tmp_path / "w" / "snapshots").iterdir():
        snap.unlink()
    with aos.World.open(tmp_path / "w", m, snapshot_on_close=False) as w:  # the whole journal replayed
        assert w.snapshot_hash() == h
