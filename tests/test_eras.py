"""Eras: propose, approve, apply with migrations; replay across eras; refusals; determinism; crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.eras import apply as apply_proposal
from aos.records import ApprovalRecorded, CellMigrated, EraApplied, ProposalSubmitted

sys.path.insert(0, str(Path(__file__).parent))
from eras_world import after, fill, to_v2, v1_manifest, v2_manifest  # noqa: E402

ORDER, AUDIT, REFUND = "test/Order@1", "test/Audit@1", "test/Refund@1"


def _upgrade(path: Path, **kw: Any) -> Any:
    kw.setdefault("migrate", {ORDER: to_v2})
    kw.setdefault("drop", [AUDIT])
    return aos.upgrade(path, v2_manifest(), old=v1_manifest(), **kw)


def _files(path: Path) -> dict[str, bytes]:
    """Every file of the world that holds its history (not the lock or the metrics)."""
    out = {}
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.name not in ("world.lock", "metrics.json"):
            out[str(f.relative_to(path))] = f.read_bytes()
    return out


def _journal_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted((path / "journal").glob("*.seg")))


def test_upgrade_moves_the_world_to_the_new_era(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    with aos.World.open(p, v1_manifest()) as w:
        before = {key: w.state(ORDER, key)["n"] for _r, key in w.cells(ORDER)}
        era1 = w.era
    r = _upgrade(p)
    assert isinstance(r, aos.UpgradeResult) and r.ends == era1 and r.migrated == len(before)
    with pytest.raises(aos.EraChangeError):
        aos.World.open(p, v1_manifest())
    with aos.World.open(p, v2_manifest()) as w:
        assert [e.era.hex() for e in w.eras] == [era1, v2_manifest().era.hex()]
        assert {key: w.state(ORDER, key) for _r, key in w.cells(ORDER)} == {k: {"count": n} for k, n in before.items()}
        assert w.budget("timers").budget == 5_000
        w.submit("test/Placed@1", {"id": "o0"})
        w.submit("test/Refunded@1", {"id": "o0"})
        w.run()
        assert w.state(ORDER, "o0") == {"count": before["o0"] + 2}
        assert w.state(REFUND, "o0") == {"refunded": True}
    with aos.World.open(p, v2_manifest()) as w:  # and again, from the new era's snapshots
        assert w.state(ORDER, "o0") == {"count": before["o0"] + 2}
    meta = canonical.decode((p / "world.cbor").read_bytes())
    assert [e["era"].hex() for e in meta["eras"]] == [era1, v2_manifest().era.hex()]
    kinds = [type(rec) for _e, rec in aos.JournalReader(p / "journal").records()]
    assert kinds.count(ProposalSubmitted) == kinds.count(ApprovalRecorded) == kinds.count(EraApplied) == 1
    assert kinds.count(CellMigrated) == len(before)


def test_each_segment_holds_one_era_and_the_apply_starts_one(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    _upgrade(p)
    segs = sorted((p / "journal").glob("*.seg"))
    eras = [s.read_bytes()[48:80] for s in segs]
    assert eras == [v1_manifest().era, v2_manifest().era]
    recs = [(e.segment, rec) for e, rec in aos.JournalReader(p / "journal").records()]
    new_seg = [rec for seg, rec in recs if seg == segs[1].name]
    assert isinstance(new_seg[0], EraApplied)
    assert new_seg[0].ends == v1_manifest().era and new_seg[0].starts == v2_manifest().era


def test_removed_reducer_cells_kept_read_only_when_retired(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p, orders=7)
    _upgrade(p, drop=(), retire=[AUDIT])
    with aos.World.open(p, v2_manifest()) as w:
        assert w.state(AUDIT) == 7
        w.submit("test/Placed@1", {"id": "o1"})
        w.run()
        assert w.state(AUDIT) == 7  # read-only: no reducer runs for it
    with aos.World.open(p, v2_manifest()) as w:
        assert w.state(AUDIT) == 7  # kept in the snapshots
    assert aos.replay(p, manifests=[v1_manifest(), v2_manifest()]).state(AUDIT) == 7


def test_replay_across_eras_with_each_manifest(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    r = _upgrade(p)
    after(p)
    with aos.World.open(p, v2_manifest()) as w:
        final = w.snapshot_hash()
    full = aos.replay(p, manifests=[v1_manifest(), v2_manifest()])
    assert full.verify() == final
    assert list(full.not_reexecuted) == []
    part = aos.replay(p, v2_manifest())
    assert part.verify() == final
    assert list(part.not_reexecuted) == list(range(1, r.event_id + 1)) and r.event_id > 0


def test_replay_across_eras_finds_a_divergence_in_the_old_era(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    _upgrade(p)
    # a journal record of the first era altered (its chain re-made), the same bytes length
    from aos.journal import JournalReader

    entries = list(JournalReader(p / "journal").entries())
    target = next(e for e in entries if e.record().KIND == "EventAdmitted")
    seg = p / "journal" / target.segment
    data = bytearray(seg.read_bytes())
    i = data.index(b"o0", target.offset)
    data[i:i + 2] = b"o9"
    seg.write_bytes(bytes(data))
    with pytest.raises(aos.JournalCorruptError):
        aos.replay(p, manifests=[v1_manifest(), v2_manifest()]).verify()


def test_a_manifest_of_no_era_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    _upgrade(p)
    with pytest.raises(aos.ManifestMismatchError):
        aos.replay(p, manifests=[v2_manifest(budget=7), v2_manifest()])
    with pytest.raises(aos.EraChangeError):
        aos.replay(p, v1_manifest())


# ------------------------------------------------------------------ refusals
def _opened_with_proposal(p: Path, approve: bool = True) -> tuple[aos.World, int]:
    fill(p)
    w = aos.World.open(p, v1_manifest())
    pid = w.propose(v2_manifest())
    if approve:
        w.approve(pid, by="tester", note="ok")
    w.sync()
    return w, pid


@pytest.mark.parametrize("case", ["raises", "unencodable", "live-cells", "unapproved", "unknown", "foreign-reducer"])
def test_bad_apply_is_refused_before_anything_is_written(tmp_path: Path, case: str) -> None:
    p = tmp_path / "w"
    w, pid = _opened_with_proposal(p, approve=case != "unapproved")
    files = _files(p)
    records = w.stats["records"]
    kw: dict[str, Any] = {"migrate": {ORDER: to_v2}, "drop": [AUDIT]}
    expected: type[Exception] = aos.MigrationError
    if case == "raises":
        kw["migrate"] = {ORDER: lambda s: s["missing"]}
    elif case == "unencodable":
        kw["migrate"] = {ORDER: lambda s: {"count": object()}}
    elif case == "live-cells":
        kw["drop"] = []
        expected = aos.LiveCellsError
    elif case == "unapproved":
        expected = aos.NotApprovedError
    elif case == "unknown":
        pid = pid + 1000
        expected = aos.UnknownProposalError
    elif case == "foreign-reducer":
        kw["migrate"] = {AUDIT: lambda s: s}
    with pytest.raises(expected) as info:
        w.apply(pid, v2_manifest(), **kw)
    assert isinstance(info.value, aos.UpgradeError)
    assert w.stats["records"] == records
    w.sync()
    assert _files(p) == files  # nothing written
    assert w.state(ORDER, "o0")["n"] > 0  # still open, in its era
    w.close()
    with aos.World.open(p, v1_manifest()) as w2:
        assert w2.era == v1_manifest().era.hex()


def test_migration_error_names_the_cell(tmp_path: Path) -> None:
    p = tmp_path / "w"
    w, pid = _opened_with_proposal(p)
    with pytest.raises(aos.MigrationError, match=r"'test/Order@1', 'o0'.*KeyError"):
        w.apply(pid, v2_manifest(), migrate={ORDER: lambda s: s["missing"]}, drop=[AUDIT])
    w.close()


def test_a_proposal_for_another_era_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    w = aos.World.open(p, v1_manifest())
    pid = w.propose(v2_manifest())
    w.approve(pid)
    w.apply(pid, v2_manifest(), migrate={ORDER: to_v2}, drop=[AUDIT])
    with aos.World.open(p, v2_manifest()) as w:
        with pytest.raises(aos.StaleProposalError):
            w.approve(pid)
        with pytest.raises(aos.StaleProposalError):
            w.apply(pid, v2_manifest())
        with pytest.raises(aos.StaleProposalError):
            w.propose(v2_manifest())  # already its era


def test_apply_with_a_manifest_other_than_proposed_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "w"
    w, pid = _opened_with_proposal(p)
    with pytest.raises(aos.ManifestMismatchError):
        w.apply(pid, v2_manifest(budget=9), migrate={ORDER: to_v2}, drop=[AUDIT])
    w.close()


# ------------------------------------------------------------------ determinism
def test_same_inputs_and_upgrade_give_the_same_journal_for_any_workers(tmp_path: Path) -> None:
    journals = []
    for workers in (0, 1, 2, 4):
        p = tmp_path / f"w{workers}"
        fill(p, workers=workers)
        _upgrade(p, workers=workers)
        after(p, workers=workers)
        journals.append(_journal_bytes(p))
        assert sorted(f.name for f in (p / "snapshots").iterdir()) == sorted(
            f.name for f in (tmp_path / "w0" / "snapshots").iterdir())
    assert all(j == journals[0] for j in journals)


# ------------------------------------------------------------------ crashes
POINTS = ["after-old-snapshot", "after-new-segment", "during-migration", "after-era-applied",
          "after-new-snapshot-file", "after-apply-record"]


class Crash(Exception):
    pass


def _check_one_era(p: Path, applied: bool) -> None:
    new, old = (v2_manifest(), v1_manifest()) if applied else (v1_manifest(), v2_manifest())
    with pytest.raises(aos.EraChangeError):
        aos.World.open(p, old)
    with aos.World.open(p, new) as w:
        assert [e.era for e in w.eras][-1] == new.era
        states = {key: w.state(ORDER, key) for _r, key in w.cells(ORDER)}
        assert all(("count" in s) == applied for s in states.values())
    eras = [v1_manifest()] + ([v2_manifest()] if applied else [])
    aos.replay(p, manifests=eras).verify()
    assert {s.read_bytes()[48:80] for s in (p / "journal").glob("*.seg")} == {e.era for e in eras}


@pytest.mark.parametrize("point", POINTS)
def test_an_interrupted_apply_reopens_wholly_in_one_era(tmp_path: Path, point: str) -> None:
    p = tmp_path / "w"
    w, pid = _opened_with_proposal(p)

    def fail(at: str) -> None:
        if at == point:
            raise Crash(at)

    with pytest.raises(Crash):
        apply_proposal(w, pid, v2_manifest(), migrate={ORDER: to_v2}, drop=[AUDIT], _fail=fail)
    with pytest.raises(aos.WorldClosedError):
        w.state(ORDER, "o0")
    applied = point == "after-apply-record"  # the journal holds the whole apply; world.cbor lags it
    _check_one_era(p, applied)
    if not applied:  # the apply can be made again
        _upgrade(p)
        _check_one_era(p, True)


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_during_an_apply_reopens_wholly_in_one_era(tmp_path: Path, point: str) -> None:
    p = tmp_path / "w"
    fill(p)
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "eras_world.py"), str(p), point],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    _check_one_era(p, point == "after-apply-record")


def test_a_completed_apply_killed_never_leaves_a_mixed_world(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "eras_world.py"), str(p), "none"],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0 and "applied" in child.stdout, child.stderr
    _check_one_era(p, True)
    assert os.path.exists(p / "world.cbor")


# ------------------------------------------------------------------ the command line
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    return subprocess.run([sys.executable, "-m", "aos", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_cli_propose_approve_apply_eras_info_replay(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    (tmp_path / "migs.py").write_text("from eras_world import to_v2\nMIGRATE = {'test/Order@1': to_v2}\n")
    out = _cli("propose", str(p), "--manifest", "eras_world:v2", "--old", "eras_world:v1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[1].rstrip(":"))
    assert "reducer test/Audit@1 removed" in out.stdout and "capability timers: budget 1000 -> 5000" in out.stdout
    out = _cli("apply", str(p), str(pid), "--manifest", "eras_world:v2", "--old", "eras_world:v1",
               "--migrate", "migs:MIGRATE", "--drop", "test/Audit@1", cwd=tmp_path)
    assert out.returncode == 1 and "has no approval" in out.stderr
    out = _cli("approve", str(p), str(pid), "--by", "alice", "--note", "looks right", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = _cli("eras", str(p), cwd=tmp_path)
    assert f"{pid}" in out.stdout and "alice" in out.stdout
    out = _cli("apply", str(p), str(pid), "--manifest", "eras_world:v2", "--old", "eras_world:v1",
               "--migrate", "migs:MIGRATE", "--drop", "test/Audit@1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "5 cells migrated" in out.stdout and "test/Audit@1: cells dropped" in out.stdout
    out = _cli("eras", str(p), cwd=tmp_path)
    assert out.stdout.count("test/shop@1") == 2 and "after event_id" in out.stdout
    out = _cli("info", str(p), cwd=tmp_path)
    assert "eras" in out.stdout and "(created)" in out.stdout and "EraApplied" in out.stdout
    out = _cli("replay", str(p), "--manifest", "eras_world:v2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "not re-executed: event_ids 1..36" in out.stdout
    out = _cli("replay", str(p), "--manifest", "eras_world:v1", "--manifest", "eras_world:v2", cwd=tmp_path)
    assert out.returncode == 0 and "not re-executed" not in out.stdout and "verified" in out.stdout
    with aos.World.open(p, v2_manifest()) as w:
        assert w.state(ORDER, "o0") == {"count": 6}


def test_an_interrupted_apply_is_named_before_the_world_reopens(tmp_path: Path) -> None:
    from aos.fsck import check_world

    p = tmp_path / "w"
    fill(p)
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "eras_world.py"), str(p),
                            "after-new-snapshot-file"], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9
    report = check_world(p)
    assert report.ok, report.problems
    assert any("interrupted" in n for n in report.notes)
    with pytest.raises(aos.StorageError, match="interrupted"):
        aos.replay(p, v1_manifest())
    _check_one_era(p, False)  # opening rolled it back
    assert check_world(p).ok and not any("interrupted" in n for n in check_world(p).notes)


def test_boundary_snapshots_are_never_pruned(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    r = _upgrade(p)
    with aos.World.open(p, v2_manifest(), keep_snapshots=1, snapshot_every=1) as w:
        for i in range(5):
            w.submit("test/Placed@1", {"id": f"n{i}"})
        w.run()
    assert (p / "snapshots" / r.snapshot).is_file()
    assert len(list((p / "snapshots").iterdir())) == 2
    part = aos.replay(p, v2_manifest())
    part.verify()
    assert part.first_era.snapshot == r.snapshot


def test_a_migration_returning_none_deletes_the_cell(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    _upgrade(p, migrate={ORDER: lambda s: None if s["n"] < 6 else to_v2(s)})
    with aos.World.open(p, v2_manifest()) as w:
        assert w.cells(ORDER) == [(ORDER, "o0"), (ORDER, "o1")]
    aos.replay(p, manifests=[v1_manifest(), v2_manifest()]).verify()


def test_retired_cells_can_be_dropped_by_a_later_upgrade(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    _upgrade(p, drop=(), retire=[AUDIT])
    v3 = v2_manifest(budget=6_000)
    with pytest.raises(aos.LiveCellsError):
        aos.upgrade(p, v3, old=v2_manifest(), retire=[AUDIT])  # not removed by this proposal
    r = aos.upgrade(p, v3, old=v2_manifest(), drop=[AUDIT])
    assert r.dropped == (AUDIT,)
    with aos.World.open(p, v3) as w:
        assert len(w.eras) == 3
        with pytest.raises(aos.UnknownReducerError):
            w.state(AUDIT)
    whole = aos.replay(p, manifests=[v1_manifest(), v2_manifest(), v3])
    whole.verify()
    assert list(whole.not_reexecuted) == []
    assert aos.replay(p, manifests=[v2_manifest(), v3]).verify() == whole.verify()


def test_a_shadow_run_is_journaled_with_its_proposal_and_replays(tmp_path: Path) -> None:
    from aos.eras import proposals, record_shadow_run
    from aos.records import ShadowRunCompleted

    p = tmp_path / "w"
    w, pid = _opened_with_proposal(p, approve=False)
    record_shadow_run(w, pid, since=1, compared=24, differing=24, costs={"timers": 0})
    with pytest.raises(aos.UnknownProposalError):
        record_shadow_run(w, pid + 1, since=1, compared=1, differing=0)
    w.approve(pid)
    w.apply(pid, v2_manifest(), migrate={ORDER: to_v2}, drop=[AUDIT])
    shadows = [rec for _e, rec in aos.JournalReader(p / "journal").records() if isinstance(rec, ShadowRunCompleted)]
    assert shadows == [ShadowRunCompleted(pid, 1, 24, 24, (("timers", 0),))]
    assert proposals(p / "journal")[pid].applied
    aos.replay(p, manifests=[v1_manifest(), v2_manifest()]).verify()


@pytest.mark.parametrize("adopt", [False, True])
def test_an_effect_queued_before_the_upgrade_is_received_under_the_era_that_owns_its_cell(
        tmp_path: Path, adopt: bool) -> None:
    """The receipt reaches the cell's own era's code (pinned: the old; adopted: the new), with the new budget."""
    from eras_world import effect_manifest

    p = tmp_path / "w"
    v1, v2 = effect_manifest(1, budget=10), effect_manifest(2, budget=50)
    with aos.World.open(p, v1, effects="manual") as w:
        w.submit("test/Wait@1", {"id": "a"})
        w.run()
        assert w.budget("timers").reserved == 3
    r = aos.upgrade(p, v2, old=v1, adopt=["test/Waiter@1"] if adopt else [])
    assert isinstance(r, aos.UpgradeResult)
    assert (r.pinned, r.pinned_cells, r.adopted) == (((), 0, ("test/Waiter@1",)) if adopt
                                                     else (("test/Waiter@1",), 1, ()))
    with aos.World.open(p, v2, effects="manual", earlier=[] if adopt else [v1]) as w:
        [queued] = w.pending_effects()
        assert w.budget("timers").budget == 50 and w.budget("timers").reserved == 3
        w.submit_receipt(w.receipt(queued.intent_hash, "ok", cost=2))
        w.run()
        assert w.state("test/Waiter@1", "a") == {"waiting": True, "got": "ok", "by": 2 if adopt else 1}
        assert w.budget("timers").spent == 2
    aos.replay(p, manifests=[v1, v2]).verify()


def test_replay_until_an_event_of_an_era_not_given_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    r = _upgrade(p)
    after(p)
    with pytest.raises(aos.EraManifestMissingError, match="lies in era .* whose manifest was not given"):
        aos.replay(p, v2_manifest()).verify(until=3)
    old = aos.replay(p, manifests=[v1_manifest(), v2_manifest()])
    old.verify(until=3)
    assert old.state(ORDER, "o0")["n"] >= 1 and old.kernel.manifest.era == v1_manifest().era  # type: ignore[union-attr]
    new = aos.replay(p, manifests=[v1_manifest(), v2_manifest()])
    new.verify(until=r.event_id + 2)
    assert "count" in new.state(ORDER, "o0")


def test_a_world_cbor_of_another_journal_is_refused_and_nothing_is_removed(tmp_path: Path) -> None:
    p, q = tmp_path / "w", tmp_path / "q"
    fill(p)
    with aos.World.open(q, v2_manifest()) as w:
        w.submit("test/Placed@1", {"id": "x"})
        w.run()
    (p / "world.cbor").write_bytes((q / "world.cbor").read_bytes())
    files = _files(p)
    with pytest.raises(aos.StorageError, match="does not belong"):
        aos.World.open(p, v2_manifest())
    assert _files(p) == files


@pytest.mark.parametrize("crash", [None, "after-apply-record", "during-migration"])
def test_an_upgrade_back_to_an_earlier_era(tmp_path: Path, crash: str | None) -> None:
    p = tmp_path / "w"
    fill(p)
    _upgrade(p, drop=(), retire=[AUDIT])
    after(p)
    w = aos.World.open(p, v2_manifest())
    pid = w.propose(v1_manifest())
    w.approve(pid)

    def fail(at: str) -> None:
        if at == crash:
            raise Crash(at)

    back = {ORDER: lambda s: {"n": s["count"], "by": 0}}
    if crash is None:
        apply_proposal(w, pid, v1_manifest(), migrate=back, drop=[AUDIT, REFUND])
    else:
        with pytest.raises(Crash):
            apply_proposal(w, pid, v1_manifest(), migrate=back, drop=[AUDIT, REFUND], _fail=fail)
    applied = crash != "during-migration"
    current = v1_manifest() if applied else v2_manifest()
    with aos.World.open(p, current) as w:
        assert len(w.eras) == (3 if applied else 2)
        assert ("n" in w.state(ORDER, "o0")) == applied
    eras = [v1_manifest(), v2_manifest()] + ([v1_manifest()] if applied else [])
    whole = aos.replay(p, manifests=eras[:2])
    whole.verify()
    assert list(whole.not_reexecuted) == []


def test_a_second_proposal_from_the_same_base_goes_stale_once_the_first_is_applied(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    w = aos.World.open(p, v1_manifest())
    first = w.propose(v2_manifest())
    second = w.propose(v2_manifest(budget=9_000))
    w.approve(first)
    w.approve(second)
    w.apply(first, v2_manifest(), migrate={ORDER: to_v2}, drop=[AUDIT])
    with aos.World.open(p, v2_manifest()) as w:
        records = w.stats["records"]
        with pytest.raises(aos.StaleProposalError, match="was made for era"):
            w.apply(second, v2_manifest(budget=9_000), migrate={ORDER: to_v2})
        assert w.stats["records"] == records
    with aos.World.open(p, v2_manifest()) as w:
        assert w.budget("timers").budget == 5_000


# ------------------------------------------------------------------ shadow runs of proposals
def _timers_world(p: Path) -> None:
    from eras_world import effect_manifest

    with aos.World.open(p, effect_manifest(1, budget=10), effects="manual") as w:
        for key in ("a", "b"):
            w.submit("test/Wait@1", {"id": key})
        w.run()
        for queued in w.pending_effects():
            w.submit_receipt(w.receipt(queued.intent_hash, "ok", cost=1))
        w.run()


def test_a_proposal_is_shadowed_and_the_report_journaled_with_it(tmp_path: Path) -> None:
    from aos.eras import proposals
    from aos.records import ShadowRunCompleted
    from eras_world import effect_manifest

    p = tmp_path / "w"
    _timers_world(p)
    v1, v2 = effect_manifest(1, budget=10), effect_manifest(2, budget=50)
    with aos.World.open(p, v1, effects="manual") as w:
        pid = w.propose(v2)
        report = w.shadow(pid, v2, since=1)
        assert (report.first_event_id, report.compared, report.differing) == (1, 4, 2)  # the receipts' steps
        assert report.costs["timers"].shadow_cost == 6
        w.approve(pid, by="alice")
    found = proposals(p / "journal")[pid]
    assert found.shadow_runs == [ShadowRunCompleted(pid, 1, 4, 2, (("timers", 6),))]
    assert found.approvals == [("alice", "")] and not found.applied
    aos.upgrade(p, v2, old=v1, approve=False)  # a second proposal; the first is applied below
    with aos.World.open(p, v1, effects="manual") as w:
        w.apply(pid, v2)
    assert proposals(p / "journal")[pid].applied
    aos.replay(p, manifests=[v1, v2]).verify()


@pytest.mark.parametrize("case", ["other-manifest", "unknown", "bad-window"])
def test_a_shadow_of_a_proposal_that_cannot_run_journals_nothing(tmp_path: Path, case: str) -> None:
    from aos.shadow import ShadowError

    p = tmp_path / "w"
    w, pid = _opened_with_proposal(p, approve=False)
    before = _journal_bytes(p)
    manifest, proposal, kw, error = {
        "other-manifest": (v2_manifest(budget=7), pid, {}, aos.ManifestMismatchError),
        "unknown": (v2_manifest(), pid + 1, {}, aos.UnknownProposalError),
        "bad-window": (v2_manifest(), pid, {"since": 10_000}, ShadowError),
    }[case]
    with pytest.raises(error):
        w.shadow(proposal, manifest, **kw)
    w.sync()
    assert _journal_bytes(p) == before
    w.close()


def test_cli_shadow_of_a_proposal_is_recorded_and_listed(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    out = _cli("propose", str(p), "--manifest", "eras_world:v2", "--old", "eras_world:v1", cwd=tmp_path)
    pid = int(out.stdout.split()[1].rstrip(":"))
    before = _journal_bytes(p)
    out = _cli("shadow", str(p), "--manifest", "eras_world:v1", "--proposal", str(pid), cwd=tmp_path)
    assert out.returncode == 1 and f"but proposal {pid} of world" in out.stderr
    assert _journal_bytes(p) == before
    with aos.World.open(p, v1_manifest()):  # an open world is locked: refused, nothing written
        out = _cli("shadow", str(p), "--manifest", "eras_world:v2", "--proposal", str(pid), cwd=tmp_path)
        assert out.returncode == 1 and "open" in out.stderr
    before = _journal_bytes(p)
    out = _cli("shadow", str(p), "--manifest", "eras_world:v2", "--proposal", str(pid), "--since", "1",
               cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # v2 differs
    assert f"ShadowRunCompleted for proposal {pid}" in out.stdout and "36 compared: 0 same, 36 differing" in out.stdout
    assert _journal_bytes(p).startswith(before) and len(_journal_bytes(p)) > len(before)
    out = _cli("approve", str(p), str(pid), "--by", "alice", cwd=tmp_path)
    out = _cli("eras", str(p), cwd=tmp_path)
    assert "since event_id 1: 36 compared, 36 differing" in out.stdout and "alice" in out.stdout
    assert "open" in out.stdout
    out = _cli("info", str(p), cwd=tmp_path)
    assert f"proposal {pid}" in out.stdout and "shadow runs: since event_id 1: 36 compared" in out.stdout
    r = _upgrade(p, approve="bob")  # a second proposal, applied: the first one goes stale
    out = _cli("eras", str(p), cwd=tmp_path)
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.split()[:1] in ([str(pid)],
                                                                                            [str(r.proposal)])}
    assert "stale (made for an earlier era)" in rows[str(pid)] and "36 compared" in rows[str(pid)]
    assert "applied" in rows[str(r.proposal)] and "bob" in rows[str(r.proposal)]


def test_cli_state_and_cells_at_an_event_of_an_earlier_era(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    r = _upgrade(p)
    after(p)
    v1_era = v1_manifest().era.hex()
    with pytest.raises(aos.EraManifestMissingError) as info:
        aos.replay(p, v2_manifest()).verify(until=3)
    assert (info.value.era, info.value.event_id) == (v1_era, 3) and "era 1 of 2" in str(info.value)
    out = _cli("state", str(p), ORDER, "o0", "--manifest", "eras_world:v2", "--at", "3", cwd=tmp_path)
    assert out.returncode == 1 and f"lies in era {v1_era[:12]}" in out.stderr and "whose manifest was not given" in \
        out.stderr and out.stdout == ""
    then = aos.replay(p, manifests=[v1_manifest(), v2_manifest()])
    then.verify(until=3)
    at5 = aos.replay(p, manifests=[v1_manifest(), v2_manifest()])
    at5.verify(until=5)
    for order in (["eras_world:v2", "eras_world:v1"], ["eras_world:v1", "eras_world:v2"]):
        args = [a for spec in order for a in ("--manifest", spec)]
        out = _cli("state", str(p), ORDER, "o0", *args, "--at", "3", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == then.state(ORDER, "o0") and "n" in then.state(ORDER, "o0")
        out = _cli("state", str(p), AUDIT, *args, "--at", "5", cwd=tmp_path)  # a reducer only the old era has
        assert out.returncode == 0 and json.loads(out.stdout) == at5.state(AUDIT) >= 1
        out = _cli("cells", str(p), *args, "--at", "5", cwd=tmp_path)
        assert out.returncode == 0 and AUDIT in out.stdout and "as of event_id 5" in out.stdout
        out = _cli("state", str(p), ORDER, "o0", *args, "--at", str(r.event_id + 2), cwd=tmp_path)
        assert out.returncode == 0 and "count" in json.loads(out.stdout)
    out = _cli("state", str(p), ORDER, "o0", "--manifest", "eras_world:v2", cwd=tmp_path)  # now: the newest era
    with aos.World.open(p, v2_manifest()) as w:
        assert out.returncode == 0 and json.loads(out.stdout) == w.state(ORDER, "o0")


# ------------------------------------------------------------------ fsck across eras
def _pinned(version: int, bump: int) -> aos.Manifest:
    """A manifest whose era is named by ``code_id`` (``version``) while its code adds ``bump``."""
    m = aos.Manifest("test/pinned@1")

    @m.reducer("test/Count@1", key="id", events=["test/Tick@1"], code_id=f"v{version}")
    def count(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + bump

    return m


def test_fsck_verifies_each_era_with_its_own_manifest(tmp_path: Path) -> None:
    from aos.fsck import check_world

    p = tmp_path / "w"
    fill(p)
    r = _upgrade(p)
    after(p)
    report = check_world(p, manifests=[v2_manifest(), v1_manifest()])
    assert report.ok, report.problems
    assert [(first, what) for _e, first, _l, what in report.era_checks] == [(1, "verified"), (r.event_id + 1,
                                                                                             "verified")]
    assert report.era_checks[0][2] == r.event_id
    assert report.verified == aos.replay(p, manifests=[v1_manifest(), v2_manifest()]).verify()
    only_new = check_world(p, v2_manifest())  # the current era's manifest alone: the old era is not re-executed
    assert only_new.ok and only_new.era_checks[0][0] == v1_manifest().era
    assert only_new.era_checks[0][3].startswith("not re-executed") and only_new.era_checks[1][3] == "verified"
    only_old = check_world(p, manifests=[v1_manifest()])
    assert only_old.ok and only_old.verified is None
    assert [what for *_x, what in only_old.era_checks] == ["verified", "not re-executed: no manifest of this era "
                                                                       "was given"]
    foreign = check_world(p, manifests=[v1_manifest(), v2_manifest(budget=3)])
    assert not foreign.ok and "is none of the world's 2 era(s)" in str(foreign.problems[0])


def test_fsck_finds_a_divergence_in_an_earlier_era(tmp_path: Path) -> None:
    from aos.fsck import check_world

    p = tmp_path / "w"
    with aos.World.open(p, _pinned(1, 1)) as w:
        for _ in range(5):
            w.submit("test/Tick@1", {"id": "a"})
        w.run()
    aos.upgrade(p, _pinned(2, 2), old=_pinned(1, 1), migrate={"test/Count@1": lambda old: old})
    with aos.World.open(p, _pinned(2, 2)) as w:
        w.submit("test/Tick@1", {"id": "a"})
        w.run()
    assert check_world(p, manifests=[_pinned(1, 1), _pinned(2, 2)]).ok
    report = check_world(p, manifests=[_pinned(1, 5), _pinned(2, 2)])  # era 1's code_id, other code
    assert not report.ok and "replay of era" in str(report.problems[0])
    assert report.era_checks[0][3].startswith("FAILED: replay") and report.era_checks[1][3] == "verified"


def test_cli_fsck_with_a_manifest_per_era(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    r = _upgrade(p)
    after(p)
    out = _cli("fsck", str(p), "--manifest", "eras_world:v2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    v1_era, v2_era = v1_manifest().era.hex()[:12], v2_manifest().era.hex()[:12]
    assert f"era 1       {v1_era} (event_ids 1..{r.event_id}): not re-executed" in out.stdout
    assert f"era 2       {v2_era} (event_ids {r.event_id + 1}.." in out.stdout and "): verified" in out.stdout
    out = _cli("fsck", str(p), "--manifest", "eras_world:v2", "--manifest", "eras_world:v1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{v1_era} (event_ids 1..{r.event_id}): verified" in out.stdout and "not re-executed" not in out.stdout


# ------------------------------------------------------------------ salvage across eras
def _damage(p: Path, kind: str, nth: int = 0) -> int:
    """Flip a byte inside the ``nth`` record of ``kind``; returns its journal index."""
    from aos.journal import JournalReader

    entries = [e for e in JournalReader(p / "journal").entries() if e.record().KIND == kind]
    target = entries[nth]
    seg = p / "journal" / target.segment
    data = bytearray(seg.read_bytes())
    data[target.offset + 12] ^= 0x55
    seg.write_bytes(bytes(data))
    return target.index


def _eras_of(p: Path) -> list[bytes]:
    from aos.eras import era_chain
    from aos.world import load_meta

    return [e.era for e in era_chain(load_meta(p))]


def test_salvage_keeps_every_era_of_an_intact_chain(tmp_path: Path) -> None:
    from aos.salvage import salvage_world

    p, new = tmp_path / "w", tmp_path / "new"
    fill(p)
    r = _upgrade(p)
    after(p)
    cut = _damage(p, "StepScheduled", -2)  # in the new era, after its boundary snapshot
    report = salvage_world(p, new, manifests=[v1_manifest(), v2_manifest()])
    assert report.eras == 2 and report.records <= cut and report.verified is not None
    assert report.snapshots_kept == [r.snapshot]
    assert _eras_of(new) == [v1_manifest().era, v2_manifest().era]
    aos.replay(new, manifests=[v1_manifest(), v2_manifest()]).verify()
    part = aos.replay(new, v2_manifest())
    part.verify()
    assert list(part.not_reexecuted) == list(range(1, r.event_id + 1))
    with aos.World.open(new, v2_manifest()) as w:  # opens from the boundary snapshot, runs on
        w.submit("test/Placed@1", {"id": "o0"})
        w.run()
    aos.replay(new, manifests=[v1_manifest(), v2_manifest()]).verify()
    # without manifests: the same chain, not replayed
    report = salvage_world(p, tmp_path / "new2")
    assert report.eras == 2 and report.verified is None and _eras_of(tmp_path / "new2") == _eras_of(new)


@pytest.mark.parametrize("where", ["in-the-apply", "before-the-apply"])
def test_salvage_rolls_back_an_apply_the_cut_leaves_in_part(tmp_path: Path, where: str) -> None:
    from aos.salvage import salvage_world

    p, new = tmp_path / "w", tmp_path / "new"
    fill(p)
    r = _upgrade(p)
    after(p)
    if where == "in-the-apply":
        _damage(p, "CellMigrated", 2)
    else:
        _damage(p, "StepScheduled", 3)
    report = salvage_world(p, new, v1_manifest())
    assert report.eras == 1 and report.verified is not None and report.snapshots_kept == []
    expected = "cut in the middle; rolled back" if where == "in-the-apply" else "which began after the cut"
    assert any(expected in why for why in report.dropped_why), report.dropped_why
    assert report.last_event_id <= r.event_id
    assert _eras_of(new) == [v1_manifest().era]
    assert [f.name for f in (new / "journal").glob("*.seg")] == ["00000000000000000000.seg"]
    with aos.World.open(new, v1_manifest()) as w:
        assert w.era == v1_manifest().era.hex()
        w.run()  # the inputs of the steps the cut dropped
    aos.replay(new, v1_manifest()).verify()
    # the salvaged world can be upgraded again
    _upgrade(new)
    aos.replay(new, manifests=[v1_manifest(), v2_manifest()]).verify()


def test_salvage_of_a_world_with_an_interrupted_apply_keeps_the_old_era(tmp_path: Path) -> None:
    from aos.salvage import salvage_world

    p, new = tmp_path / "w", tmp_path / "new"
    fill(p)
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "eras_world.py"), str(p),
                            "during-migration"], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    before = _files(p)
    report = salvage_world(p, new, v1_manifest())
    assert _files(p) == before  # the source is never changed
    assert report.eras == 1 and any("interrupted apply" in why for why in report.dropped_why)
    with aos.World.open(new, v1_manifest()) as w:
        assert w.era == v1_manifest().era.hex()
    aos.replay(new, v1_manifest()).verify()


def test_cli_salvage_with_a_manifest_per_era(tmp_path: Path) -> None:
    p, new = tmp_path / "w", tmp_path / "new"
    fill(p)
    _upgrade(p)
    after(p)
    out = _cli("salvage", str(p), "--to", str(new), "--manifest", "eras_world:v1", "--manifest", "eras_world:v2",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "eras       2 kept" in out.stdout and "replay     verified" in out.stdout
    out = _cli("fsck", str(new), "--manifest", "eras_world:v1", "--manifest", "eras_world:v2", cwd=tmp_path)
    assert out.returncode == 0 and "not re-executed" not in out.stdout


def test_cli_eras_and_info_name_an_interrupted_apply(tmp_path: Path) -> None:
    p = tmp_path / "w"
    fill(p)
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "eras_world.py"), str(p),
                            "after-era-applied"], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    before = _files(p)
    for command in ("eras", "info"):
        out = _cli(command, str(p), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "apply interrupted (opening the world rolls it back)" in out.stdout
    assert _files(p) == before
    _check_one_era(p, False)
    out = _cli("eras", str(p), cwd=tmp_path)
    assert "interrupted" not in out.stdout and " open " in out.stdout
