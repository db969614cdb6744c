"""Shadow runs (aos.shadow.shadow_run, aos.testing.assert_replays, aos shadow), from the outside.

Each world is made with one version of the code; the shadow runs another
version (or the same) on its journal and must name exactly the steps whose
records differ, write nothing, and say so through the exit status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import aos
import shadow_world as sw
from aos.journal import JournalReader
from aos.records import StepScheduled
from aos.shadow import ShadowError, shadow_run
from aos.testing import assert_replays


def scheduled(path: Path) -> list[StepScheduled]:
    return [rec for _e, rec in JournalReader(path / "journal").records() if isinstance(rec, StepScheduled)]


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sw.make_world(tmp_path_factory.mktemp("shadow") / "w", count=30)


def test_the_worlds_own_manifest_reproduces_every_step(world: Path) -> None:
    r = shadow_run(world, sw.v1)
    steps = scheduled(world)
    assert r.ok and r.diffs == [] and r.refused == []
    assert (r.compared, r.same, r.differing) == (len(steps), len(steps), 0)
    assert (r.first_event_id, r.last_event_id) == (1, len(steps))
    mails = sum(1 for v in sw.inputs(30) if v["mail"])
    assert r.costs["mail"].journal_effects == r.costs["mail"].shadow_effects == mails
    assert r.costs["mail"].journal_cost == r.costs["mail"].shadow_cost == mails
    assert r.world_era == r.proposed_era == sw.v1.era.hex()


def test_changed_arithmetic_names_exactly_the_steps_of_that_cell(world: Path) -> None:
    r = shadow_run(world, sw.v2)
    b_steps = [s.event_id for s in scheduled(world) if s.reducer == "t/Counter@1" and s.key == "b"]
    assert [d.event_id for d in r.diffs] == b_steps
    assert r.differing == len(b_steps) and r.same == r.compared - len(b_steps) and not r.ok
    assert r.failing_only_in_shadow == r.failing_only_in_journal == 0
    first, *rest = r.diffs
    assert first.reducer == "t/Counter@1" and first.key == "b" and not first.carried
    assert all(d.carried for d in rest)
    # b's inputs are n = 1, 4, 7, ... (i % 3 == 1); its receipts leave n alone
    b_inputs = [v["n"] for v in sw.inputs(30) if v["id"] == "b"]
    state_diffs = [d for d in r.diffs if d.what == ("state",)]
    assert state_diffs and all(d.shadow is not None and d.shadow.outcome == "committed" for d in state_diffs)
    last = r.diffs[-1]
    assert last.shadow is not None and last.shadow.state["n"] == 2 * sum(b_inputs)
    assert last.journal.state_hash != last.shadow.state_hash and last.journal.state is None
    assert r.costs["mail"].journal_effects == r.costs["mail"].shadow_effects  # same intents: receipts delivered
    assert r.refused == []
    assert shadow_run(world, sw.v2) == r  # deterministic: the same report, field for field
    counted = shadow_run(world, sw.v2, limit=0)  # details of none, counts and the first difference all the same
    assert (counted.diffs, counted.differing, counted.first_difference) == ([], r.differing, b_steps[0])


def test_a_difference_carries_to_the_cells_its_events_reach(tmp_path: Path) -> None:
    path = sw.make_world(tmp_path / "w", count=12, fwd=True)
    r = shadow_run(path, sw.v2)
    first = r.diffs[0]
    assert (first.reducer, first.key, first.carried) == ("t/Counter@1", "b", False)
    assert set(first.what) == {"state", "emits"}
    assert first.journal.emits == (("t/Total@1", {"id": "b", "n": 1}),)
    assert first.shadow is not None and first.shadow.emits == (("t/Total@1", {"id": "b", "n": 2}),)
    totals = [d for d in r.diffs if d.reducer == "t/Totals@1"]
    assert totals and all(d.carried and d.what == ("state",) for d in totals)
    assert totals[-1].shadow is not None and totals[-1].shadow.state["b"] == 2 * (1 + 4 + 7 + 10)


def test_more_emitted_events_change_the_schedule_and_later_steps_are_carried(tmp_path: Path) -> None:
    path = sw.make_world(tmp_path / "w", count=150)
    r = shadow_run(path, sw.chatty)
    c_steps = [s.event_id for s in scheduled(path) if s.key == "c"]
    fresh = [d for d in r.diffs if not d.carried]
    diverged = r.schedule_diverged_at
    assert diverged is not None and r.carried == r.differing - len(fresh) > 0
    assert [d.event_id for d in fresh if d.event_id != diverged] == [e for e in c_steps if e < diverged]
    assert all(d.what == ("emits",) and d.journal.emits == () for d in fresh if d.event_id != diverged)
    assert all(d.carried for d in r.diffs if d.event_id > diverged)
    assert "the schedule diverges at event_id" in r.summary()


def test_a_step_failing_only_in_the_shadow(world: Path) -> None:
    r = shadow_run(world, sw.fails)
    assert (r.differing, r.failing_only_in_shadow, r.failing_only_in_journal) == (r.differing, 1, 0)
    failed = [d for d in r.diffs if d.shadow is not None and d.shadow.outcome == "failed"]
    assert len(failed) == 1 and failed[0].key == "a" and "outcome" in failed[0].what
    assert failed[0].shadow.error is not None and "three is not allowed" in failed[0].shadow.error
    assert failed[0].journal.outcome == "committed"
    # the failure leaves a's state behind the journal's: a's later steps differ, carried
    later = [d for d in r.diffs if d.event_id > failed[0].event_id]
    assert later and all(d.key == "a" and d.carried for d in later)


def test_a_fix_shows_as_a_step_failing_only_in_the_journal(tmp_path: Path) -> None:
    path = sw.make_world(tmp_path / "w", count=12, manifest=sw.fails)
    r = shadow_run(path, sw.v1)
    assert (r.failing_only_in_journal, r.failing_only_in_shadow) == (1, 0)
    fixed = r.diffs[0]
    assert fixed.journal.outcome == "failed" and "three is not allowed" in (fixed.journal.error or "")
    assert fixed.shadow is not None and fixed.shadow.outcome == "committed" and not fixed.carried


def test_recorded_events_the_proposed_manifest_refuses_are_reported(world: Path) -> None:
    renamed = aos.Manifest("test/shadow@1")  # the counter is keyed by a field the recorded events lack
    renamed.capability("mail", effect="blob.put", budget=1_000)
    renamed.reducer("t/Counter@1", key="name", events=["t/Add@1"])(sw.counter_v1)
    renamed.reducer("t/Totals@1", events=["t/Total@1"])(sw.totals)
    r = shadow_run(world, renamed)
    events = [x for x in r.refused if x.what.startswith("event ")]
    receipts = [x for x in r.refused if x.what.startswith("receipt ")]
    assert not r.ok and len(events) == 30 and len(events) + len(receipts) == len(r.refused)
    assert all(x.what == "event t/Add@1" and "missing field 'name'" in x.reason for x in events)
    assert len(receipts) == r.costs["mail"].journal_effects  # their intents were never made
    assert r.differing == r.compared and all(d.shadow is None and d.what == ("schedule",) for d in r.diffs)
    assert r.costs["mail"].shadow_effects == 0 < r.costs["mail"].journal_effects


def test_progress_counts_the_journal_records_read(world: Path) -> None:
    seen: list[int] = []
    shadow_run(world, sw.v1, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == sum(1 for _ in JournalReader(world / "journal").entries())


def test_a_smaller_budget_predicts_denials_and_lower_costs(world: Path) -> None:
    r = shadow_run(world, sw.tight)
    c = r.costs["mail"]
    assert c.shadow_effects < c.journal_effects and c.shadow_cost < c.journal_cost
    assert any("policy" in d.what for d in r.diffs)
    # receipts the journal recorded for intents the shadow denied cannot be delivered
    assert r.refused and all(x.what.startswith("receipt for intent ") for x in r.refused)
    assert not r.ok


def test_nothing_in_the_world_is_written_even_while_it_is_open(tmp_path: Path) -> None:
    path = sw.make_world(tmp_path / "w", count=20, snapshot_every=7)
    before = listing(path)
    shadow_run(path, sw.v2)
    shadow_run(path, sw.v1, since=3)
    assert listing(path) == before
    with aos.World.open(path, sw.v1, workers=0, effects="inline") as w:  # held open, with the lock
        for value in sw.inputs(4):
            w.submit("t/Add@1", value)
        w.run()
        w.sync()
        during = listing(path)
        r = shadow_run(path, sw.v1, since=1)
        assert r.ok and r.last_event_id == w.last_event_id
        assert listing(path) == during


def test_windows_since_and_last_start_at_a_snapshot(tmp_path: Path) -> None:
    path = sw.make_world(tmp_path / "w", count=30, snapshot_every=10)
    end = len(scheduled(path))
    snaps = sorted(int(aos.canonical.decode_trusted(p.read_bytes())["event_id"])
                   for p in (path / "snapshots").glob("*.snap"))
    r = shadow_run(path, sw.v1, since=25)
    start = max(e for e in snaps if e < 25)
    assert r.ok and r.snapshot is not None and (r.first_event_id, r.last_event_id) == (start + 1, end)
    assert r.compared == end - start
    r = shadow_run(path, sw.v1, last=5)
    start_last = max(e for e in snaps if e < end - 4)
    assert (r.first_event_id, r.last_event_id, r.compared) == (start_last + 1, end, end - start_last)
    r = shadow_run(path, sw.v1, since=1)
    assert r.snapshot is None and r.compared == end
    # the window decides which differences are seen: b's steps after the start only
    r = shadow_run(path, sw.v2, since=25)
    b_steps = [s.event_id for s in scheduled(path) if s.key == "b" and s.event_id > start]
    assert [d.event_id for d in r.diffs] == b_steps and not r.diffs[0].carried
    for bad in ({"since": 3, "last": 2}, {"since": 0}, {"last": -1}, {"since": end + 1}):
        with pytest.raises(ShadowError):
            shadow_run(path, sw.v1, **bad)  # type: ignore[arg-type]


def test_by_default_the_shadow_runs_from_the_newest_snapshot_with_steps_after_it(tmp_path: Path) -> None:
    path = sw.make_world(tmp_path / "w", count=9)  # one snapshot, written on close, at its end
    first_session = len(scheduled(path))
    assert shadow_run(path, sw.v1).compared == first_session  # that snapshot has no step after it
    with aos.World.open(path, sw.v1, workers=0, effects="inline") as w:
        for value in sw.inputs(6):
            w.submit("t/Add@1", value)
        w.run()
    r = shadow_run(path, sw.v1)
    assert r.first_event_id == first_session + 1 and r.last_event_id == len(scheduled(path)) and r.ok


def test_a_proposed_manifest_without_a_reducer_the_snapshot_holds_is_refused(tmp_path: Path) -> None:
    path = sw.make_world(tmp_path / "w", count=9, fwd=True, snapshot_every=4)
    with pytest.raises(ShadowError, match="no reducer t/Totals@1"):
        shadow_run(path, sw.build(with_totals=False), since=len(scheduled(path)))
    with pytest.raises(TypeError):
        shadow_run(path, "not a manifest")  # type: ignore[arg-type]


def test_assert_replays(world: Path) -> None:
    report = assert_replays(world, sw.v1)
    assert report.ok and report.compared == len(scheduled(world))
    first_b = next(s.event_id for s in scheduled(world) if s.key == "b")
    with pytest.raises(AssertionError, match=rf"event_id {first_b} t/Counter@1 'b': state differs"):
        assert_replays(world, sw.v2)
    assert_replays(world, sw.v1, last=3)


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    from aos.cli import cli

    monkeypatch.chdir(Path(sw.__file__).parent)  # --manifest shadow_world:... is imported from here
    return CliRunner().invoke(cli, args)


def test_cli_exit_status_says_whether_anything_differs(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same = run_cli(["shadow", str(world), "--manifest", "shadow_world:v1"], monkeypatch)
    assert same.exit_code == 0, same.output
    assert "the shadow reproduces the journal" in same.output
    differs = run_cli(["shadow", str(world), "--manifest", "shadow_world:v2", "--limit", "2"], monkeypatch)
    assert differs.exit_code == 1, differs.output
    lines = differs.output.splitlines()
    assert any(line.startswith("result") and "DIFFERS" in line for line in lines)
    b_steps = [s.event_id for s in scheduled(world) if s.key == "b"]
    rows = [line for line in lines if line.strip().split(" ")[0].isdigit()]
    assert [int(line.split()[0]) for line in rows] == b_steps[:2]
    assert f"… {len(b_steps) - 2} more differing step(s) (--limit)" in lines
    both = run_cli(["shadow", str(world), "--manifest", "shadow_world:v1", "--since", "2", "--last", "2"],
                   monkeypatch)
    assert both.exit_code == 2 and "not both" in both.output
    window = run_cli(["shadow", str(world), "--manifest", "shadow_world:v2", "--last", "1"], monkeypatch)
    assert window.exit_code in (0, 1) and "the last 1 steps" in window.output


@pytest.mark.parametrize("cut_after", ["StepScheduled", "StepCommitted"])
def test_a_journal_that_ends_inside_a_step_is_compared_up_to_the_last_whole_step(tmp_path: Path,
                                                                                   cut_after: str) -> None:
    """What a reader sees while a writer is appending a step: its first records only."""
    import shutil

    from aos.records import EffectQueued, StepCommitted

    path = sw.make_world(tmp_path / "w", count=30)
    copy = tmp_path / "cut"
    shutil.copytree(path, copy)
    shutil.rmtree(copy / "snapshots")
    entries = list(JournalReader(copy / "journal").records())
    # the last step with an effect: its StepCommitted is followed by a PolicyDecision and an EffectQueued
    at = max(i for i, (_e, rec) in enumerate(entries) if isinstance(rec, EffectQueued))
    committed = max(i for i in range(at) if isinstance(entries[i][1], StepCommitted))
    cut = committed - 1 if cut_after == "StepScheduled" else committed
    entry = entries[cut][0]
    (seg,) = (copy / "journal").glob("*.seg")
    with open(seg, "r+b") as f:
        f.truncate(entry.offset + 8 + len(entry.payload) + 32)
    r = shadow_run(copy, sw.v1)
    whole = sum(1 for _e, rec in entries[:committed - 1] if isinstance(rec, StepScheduled))
    assert r.ok and r.compared == whole and r.last_event_id == whole
