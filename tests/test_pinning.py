"""Pinned cells: after an upgrade, a live cell keeps running the code of the era it was made in.

The spec's default (docs/upgrades.md, "Pinned cells"): cells made before the
upgrade run the old code, cells made after it the new code, until a later
upgrade migrates or adopts them, or the cell is deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aos
from aos.records import EraApplied

COUNTER, LOG = "test/Counter@1", "test/Log@1"


def shop(version: int, budget: int = 100) -> aos.Manifest:
    """Counter's code changes with ``version`` (a captured value); Log's never does."""
    m = aos.Manifest("test/pins@1")
    m.capability("timers", effect="timer.set", budget=budget)

    @m.reducer(COUNTER, key="id", events=["test/Hit@1", "test/Reset@1"])
    def counter(ctx: Any, state: Any, event: Any) -> Any:
        if event.schema == "test/Reset@1":
            return None
        state = state or {"hits": 0, "made_by": version}
        ctx.emit("test/Noted@1", {"id": event.value["id"], "by": version})
        return {"hits": state["hits"] + 1, "made_by": state["made_by"], "last_by": version}

    @m.reducer(LOG, events=["test/Noted@1"])
    def log(ctx: Any, state: Any, event: Any) -> Any:
        return (state or []) + [[event.value["id"], event.value["by"]]]

    return m


def _files(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file() and f.name not in ("world.lock", "metrics.json")}


def _journal(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted((path / "journal").glob("*.seg")))


def _hit(w: aos.World, *keys: str) -> None:
    for k in keys:
        w.submit("test/Hit@1", {"id": k})
    w.run()


def _v1_world(p: Path, workers: int = 0) -> None:
    with aos.World.open(p, shop(1), workers=workers) as w:
        _hit(w, "a", "b", "a")


def _era_applied(p: Path) -> EraApplied:
    from aos.journal import JournalReader

    found = [e.record() for e in JournalReader(p / "journal").entries()
             if isinstance(e.record(), EraApplied)]
    assert len(found) == 1
    return found[0]  # type: ignore[return-value]


def test_live_cells_keep_their_era_and_new_cells_take_the_new_one(tmp_path: Path) -> None:
    p = tmp_path / "w"
    _v1_world(p)
    r = aos.upgrade(p, shop(2), old=shop(1))
    assert isinstance(r, aos.UpgradeResult)
    assert r.pinned == (COUNTER,) and r.pinned_cells == 2 and r.migrated == 0
    assert _era_applied(p).pinned == (COUNTER,)  # Log's code did not change: it is not pinned
    with aos.World.open(p, shop(2), earlier=[shop(1)]) as w:
        _hit(w, "a", "c")
        assert w.state(COUNTER, "a") == {"hits": 3, "made_by": 1, "last_by": 1}
        assert w.state(COUNTER, "c") == {"hits": 1, "made_by": 2, "last_by": 2}
        assert w.state(LOG, None)[-2:] == [["a", 1], ["c", 2]]  # what each cell's code emitted
        assert (w.era_of(COUNTER, "a"), w.era_of(COUNTER, "c")) == (shop(1).era.hex(), shop(2).era.hex())
        assert w.era_of(LOG) == w.era_of(COUNTER, "nobody") == shop(2).era.hex()
        live = w.snapshot()
    with aos.World.open(p, shop(2), earlier=[shop(1)]) as w:  # from the snapshot: the pins hold
        _hit(w, "b", "c")
        assert w.state(COUNTER, "b") == {"hits": 2, "made_by": 1, "last_by": 1}
        assert w.state(COUNTER, "c") == {"hits": 2, "made_by": 2, "last_by": 2}
        final = w.snapshot()
    assert live != final
    assert aos.replay(p, manifests=[shop(1), shop(2)]).verify() == final.snapshot_hash


def test_a_world_with_pinned_cells_needs_their_eras_manifest(tmp_path: Path) -> None:
    p = tmp_path / "w"
    _v1_world(p)
    aos.upgrade(p, shop(2), old=shop(1))
    files = _files(p)
    with pytest.raises(aos.PinnedEraError, match=r"2 cell\(s\) of test/Counter@1 pinned to era") as err:
        aos.World.open(p, shop(2))
    assert err.value.eras == {shop(1).era.hex(): 2}
    assert "earlier=[old_manifest]" in str(err.value)
    assert _files(p) == files  # a refused open writes nothing
    with pytest.raises(aos.PinnedEraError):
        aos.replay(p, shop(2)).verify()  # from the boundary: the pinned cells need the old code
    with pytest.raises(aos.ManifestMismatchError, match="not one of the earlier eras"):
        aos.World.open(p, shop(2), earlier=[shop(3)])
    with pytest.raises(TypeError, match="earlier must hold"):
        aos.World.open(p, shop(2), earlier=["shop@1"])  # type: ignore[list-item]
    assert _files(p) == files


def test_a_deleted_pinned_cell_is_made_again_under_the_new_code(tmp_path: Path) -> None:
    p = tmp_path / "w"
    _v1_world(p)
    aos.upgrade(p, shop(2), old=shop(1))
    with aos.World.open(p, shop(2), earlier=[shop(1)]) as w:
        w.submit("test/Reset@1", {"id": "a"})
        _hit(w, "a")
        assert w.state(COUNTER, "a") == {"hits": 1, "made_by": 2, "last_by": 2}
        w.submit("test/Reset@1", {"id": "b"})
        w.run()
    # no cell is pinned any more: the old manifest is no longer needed
    with aos.World.open(p, shop(2)) as w:
        _hit(w, "b")
        assert w.state(COUNTER, "b") == {"hits": 1, "made_by": 2, "last_by": 2}
    aos.replay(p, manifests=[shop(1), shop(2)]).verify()


def test_inputs_waiting_at_the_boundary_run_under_their_cells_era(tmp_path: Path) -> None:
    """A waiting input of a live cell runs the old code; one for a cell with no state yet, the new."""
    p = tmp_path / "w"
    _v1_world(p)
    with aos.World.open(p, shop(1)) as w:
        w.submit("test/Hit@1", {"id": "a"})
        w.submit("test/Hit@1", {"id": "d"})  # admitted, not yet run: cell d has no state
    aos.upgrade(p, shop(2), old=shop(1))
    with aos.World.open(p, shop(2), earlier=[shop(1)]) as w:
        w.run()
        assert w.state(COUNTER, "a") == {"hits": 3, "made_by": 1, "last_by": 1}
        assert w.state(COUNTER, "d") == {"hits": 1, "made_by": 2, "last_by": 2}
    aos.replay(p, manifests=[shop(1), shop(2)]).verify()


def test_adopted_cells_run_the_new_code_with_their_state_as_it_is(tmp_path: Path) -> None:
    p = tmp_path / "w"
    _v1_world(p)
    r = aos.upgrade(p, shop(2), old=shop(1), adopt=[COUNTER])
    assert isinstance(r, aos.UpgradeResult) and r.pinned == () and r.adopted == (COUNTER,)
    assert _era_applied(p).adopted == (COUNTER,)
    with aos.World.open(p, shop(2)) as w:
        _hit(w, "a")
        assert w.state(COUNTER, "a") == {"hits": 3, "made_by": 1, "last_by": 2}
    aos.replay(p, manifests=[shop(1), shop(2)]).verify()


def test_a_change_that_leaves_the_code_alone_pins_nothing(tmp_path: Path) -> None:
    p = tmp_path / "w"
    _v1_world(p)
    r = aos.upgrade(p, shop(1, budget=500), old=shop(1))
    assert isinstance(r, aos.UpgradeResult) and r.pinned == () and r.pinned_cells == 0
    with aos.World.open(p, shop(1, budget=500)) as w:
        _hit(w, "a")
        assert w.state(COUNTER, "a")["hits"] == 3


@pytest.mark.parametrize("bad", ["unknown", "both", "string"])
def test_bad_adopt_is_refused_before_anything_is_written(tmp_path: Path, bad: str) -> None:
    p = tmp_path / "w"
    _v1_world(p)
    w = aos.World.open(p, shop(1))
    pid = w.propose(shop(2))
    w.approve(pid, by="tester")
    w.sync()
    files = _files(p)
    kw: dict[str, Any] = {"unknown": {"adopt": ["test/Nope@1"]},
                          "both": {"adopt": [COUNTER], "migrate": {COUNTER: lambda s: s}},
                          "string": {"adopt": COUNTER}}[bad]
    with pytest.raises(TypeError if bad == "string" else aos.MigrationError, match="adopt"):
        w.apply(pid, shop(2), **kw)
    w.sync()
    assert _files(p) == files  # nothing written; the world is still open, in its era
    _hit(w, "a")
    w.close()
    with aos.World.open(p, shop(1)) as w2:
        assert len(w2.eras) == 1 and w2.state(COUNTER, "a")["hits"] == 3


def test_pins_survive_later_upgrades_until_migrated(tmp_path: Path) -> None:
    """v1 cells stay on v1 across v2 -> v3; v2's cells pin to v2; migrating Counter at v3 -> v4 frees them all."""
    p = tmp_path / "w"
    _v1_world(p)
    aos.upgrade(p, shop(2), old=shop(1))
    with aos.World.open(p, shop(2), earlier=[shop(1)]) as w:
        _hit(w, "c")
    r = aos.upgrade(p, shop(3), old=shop(2), earlier=[shop(1)])
    assert isinstance(r, aos.UpgradeResult) and r.pinned == (COUNTER,) and r.pinned_cells == 3
    with pytest.raises(aos.PinnedEraError) as err:
        aos.World.open(p, shop(3), earlier=[shop(2)])
    assert err.value.eras == {shop(1).era.hex(): 2}
    with aos.World.open(p, shop(3), earlier=[shop(1), shop(2)]) as w:
        _hit(w, "a", "c", "e")
        assert [w.state(COUNTER, k)["last_by"] for k in "ace"] == [1, 2, 3]
    r = aos.upgrade(p, shop(4), old=shop(3), earlier=[shop(1), shop(2)],
                    migrate={COUNTER: lambda s: dict(s, migrated=True)})
    assert isinstance(r, aos.UpgradeResult) and r.pinned == () and r.pinned_cells == 0 and r.migrated == 4
    with aos.World.open(p, shop(4)) as w:
        _hit(w, "a", "c")
        assert [w.state(COUNTER, k)["last_by"] for k in "ac"] == [4, 4]
        h = w.snapshot().snapshot_hash
    assert aos.replay(p, manifests=[shop(1), shop(2), shop(3), shop(4)]).verify() == h
    r2 = aos.replay(p, shop(4))  # from the last boundary, where no cell is pinned
    assert r2.verify() == h and len(r2.not_reexecuted) > 0


def _pinned_run(p: Path, workers: int) -> bytes:
    with aos.World.open(p, shop(1), workers=workers) as w:
        for i in range(30):
            w.submit("test/Hit@1", {"id": f"k{i % 7}"})
        w.run()
        for i in range(5):
            w.submit("test/Hit@1", {"id": f"k{i}"})  # left waiting at the boundary
    aos.upgrade(p, shop(2), old=shop(1), workers=workers)
    with aos.World.open(p, shop(2), earlier=[shop(1)], workers=workers) as w:
        for i in range(40):
            w.submit("test/Hit@1", {"id": f"k{i % 11}"})
            if i % 13 == 0:
                w.submit("test/Reset@1", {"id": f"k{i % 5}"})
        w.run()
    return _journal(p)


def test_pinned_worlds_give_the_same_journal_for_any_workers(tmp_path: Path) -> None:
    journals = {n: _pinned_run(tmp_path / f"w{n}", n) for n in (0, 1, 2, 4)}
    assert len(set(journals.values())) == 1
    aos.replay(tmp_path / "w4", manifests=[shop(1), shop(2)]).verify()


def _placed(version: int) -> aos.Manifest:
    """v1 takes test/Placed@1 {"qty"}; v2 takes test/Placed@2 {"units"} and upcasts @1 events."""
    m = aos.Manifest("test/placed@1")
    schema = f"test/Placed@{version}"

    @m.reducer("test/Stock@1", key="id", events=[schema])
    def stock(ctx: Any, state: Any, event: Any) -> Any:
        got = event.value["qty"] if event.schema == "test/Placed@1" else event.value["units"]
        return {"seen": (state or {"seen": []})["seen"] + [[event.schema, got, version]]}

    if version == 2:
        m.upcast("test/Placed@1", "test/Placed@2", lambda v: {"id": v["id"], "units": v["qty"]})
    return m


def test_an_old_schema_event_reaches_a_pinned_cell_as_it_was_journaled(tmp_path: Path) -> None:
    """Upcasters belong to the new code: a pinned cell (old code) gets the old event, a new cell the upcast one."""
    p = tmp_path / "w"
    v1, v2 = _placed(1), _placed(2)
    with aos.World.open(p, v1) as w:
        w.submit("test/Placed@1", {"id": "old", "qty": 1})
        w.run()
    aos.upgrade(p, v2, old=v1)
    with aos.World.open(p, v2, earlier=[v1]) as w:
        w.submit("test/Placed@1", {"id": "old", "qty": 2})
        w.submit("test/Placed@1", {"id": "new", "qty": 3})
        w.run()
        assert w.state("test/Stock@1", "old")["seen"] == [["test/Placed@1", 1, 1], ["test/Placed@1", 2, 1]]
        assert w.state("test/Stock@1", "new")["seen"] == [["test/Placed@2", 3, 2]]
    aos.replay(p, manifests=[v1, v2]).verify()


def test_tools_take_the_manifests_of_pinned_eras(tmp_path: Path) -> None:
    """fsck, shadow runs (of a proposal too) and assert_replays run pinned cells with their era's code."""
    from aos.fsck import check_world
    from aos.shadow import shadow_run
    from aos.testing import assert_replays

    p = tmp_path / "w"
    _v1_world(p)
    aos.upgrade(p, shop(2), old=shop(1))
    with aos.World.open(p, shop(2), earlier=[shop(1)]) as w:
        _hit(w, "a", "c")
    report = check_world(p, manifests=[shop(1), shop(2)])
    assert report.ok and [c[3] for c in report.era_checks] == ["verified", "verified"]
    only_v2 = check_world(p, manifests=[shop(2)])
    assert only_v2.ok  # a pinned era's missing manifest is not damage
    assert "pinned" in only_v2.era_checks[-1][3] and "not re-executed" in only_v2.era_checks[-1][3]
    assert shadow_run(p, shop(2), earlier=[shop(1)]).ok
    with pytest.raises(aos.PinnedEraError):
        shadow_run(p, shop(2))
    assert_replays(p, shop(2), earlier=[shop(1)], since=None, last=2)
    with aos.World.open(p, shop(2), earlier=[shop(1)]) as w:
        pid = w.propose(shop(3))
        rep = w.shadow(pid, shop(3))
        # the pinned cell "a" keeps v1's code in the rehearsal; "c" runs v3's and differs
        assert rep.compared == 4 and {(d.reducer, d.key) for d in rep.diffs} == {(COUNTER, "c"), (LOG, None)}
