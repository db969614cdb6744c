"""`aos fsck` and `aos salvage` on clean and damaged worlds, from the outside (the CLI and the world's files)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import aos
from aos.cli import cli
from aos.fsck import check_world
from aos.records import StepCommitted
from aos.salvage import salvage_world
from conftest import make_counter_manifest
from damage_world import DAMAGES, Original, build, damaged_copy, listing
from effects_world import effects_manifest


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Original:
    return build(tmp_path_factory.mktemp("fsck"))


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_fsck_of_a_clean_world_exits_0_and_says_how_far_it_is_intact(original: Original) -> None:
    before = listing(original.path)
    r = run_cli("fsck", str(original.path))
    assert r.exit_code == 0, r.output
    records = len(list(aos.JournalReader(original.path / "journal").entries()))
    assert f"ok: {records:,} records intact from the start" in r.output
    assert "result      clean" in r.output
    assert r.output.count(": ok: record ") == len(list((original.path / "snapshots").iterdir()))
    assert f"watermark   ok: {records:,} records acknowledged" in r.output
    report = check_world(original.path, effects_manifest(budget=1_000))
    assert report.ok and report.verified == original.hash  # with a manifest: a replay of the whole journal
    assert listing(original.path) == before


@pytest.mark.parametrize("name", list(DAMAGES))
def test_fsck_names_the_damage_and_exits_1(tmp_path: Path, original: Original, name: str) -> None:
    copy, named = damaged_copy(tmp_path, original, name)
    before = listing(copy)
    r = run_cli("fsck", str(copy))
    assert r.exit_code == 1, r.output
    assert "DAMAGED" in r.output and named in r.output, r.output
    assert f"aos salvage {copy} --to NEW" in r.output
    assert listing(copy) == before  # fsck changes nothing


@pytest.mark.parametrize("name", list(DAMAGES))
def test_salvage_gives_a_world_that_opens_runs_and_replays(tmp_path: Path, original: Original, name: str) -> None:
    m = effects_manifest(budget=1_000)
    copy, _named = damaged_copy(tmp_path, original, name)
    before = listing(copy)
    new = tmp_path / "salvaged"
    report = salvage_world(copy, new, m)
    assert listing(copy) == before  # the damaged world is never changed
    assert report.verified is not None and report.records > 0 or name == "journal deleted"
    assert check_world(new, m).ok
    with aos.World.open(new, m, effects="manual") as w:
        assert w.stats["records"] == report.records
        assert w.last_event_id == report.last_event_id
        w.submit("test/Pay@1", {"id": "after", "costs": [1]})
        w.run()
        # receipts the damaged world signed for its pending effects still authenticate
        pending = {e.intent_hash for e in w.pending_effects()}
        kept = [r for r in original.receipts if r.intent_hash in pending]
        for receipt in kept:
            w.submit_receipt(receipt)
        w.run()
        h = w.snapshot_hash()
    if name in ("watermark deleted",):  # the journal itself was intact: everything is kept
        assert kept == original.receipts and report.records == report.check.journal.records
    assert aos.replay(new, m).verify() == h
    with pytest.raises(aos.StorageError, match="exists"):
        salvage_world(copy, new, m)


def test_salvage_cuts_a_step_without_its_outcome_and_the_new_world_runs_it(tmp_path: Path) -> None:
    m = make_counter_manifest()
    path = tmp_path / "w"
    with aos.World.open(path, m, snapshot_every=0, snapshot_on_close=False) as w:
        for i in range(9):
            w.submit("test/Add@1", {"id": i % 3})
        w.run()
    with aos.World.open(path, m, durability="none", snapshot_every=0, snapshot_on_close=False) as w:
        w.submit("test/Add@1", {"id": 0})
        w.run()
        h = w.snapshot_hash()
    entries = list(aos.JournalReader(path / "journal", m.era).records())
    last, rec = entries[-1]
    assert isinstance(rec, StepCommitted)
    with open(path / "journal" / last.segment, "r+b") as f:
        f.truncate(last.offset + 5)  # a crash tore the outcome of the last step (never synced)
    r = run_cli("fsck", str(path))
    assert r.exit_code == 0, r.output  # a torn tail past the watermark is no damage
    assert "torn tail" in r.output and f"the step of event_id {rec.event_id}" in r.output
    report = salvage_world(path, tmp_path / "new", m)
    assert report.records == last.index - 1 and report.last_event_id == rec.event_id - 1
    assert any("StepScheduled" in why for why in report.dropped_why)
    with aos.World.open(tmp_path / "new", m) as w:
        assert w.run().steps == 1  # the input is still admitted: its step runs again
        assert w.snapshot_hash() == h
    with aos.World.open(path, m) as w:  # the original recovers its torn tail as before
        assert w.snapshot_hash() == h


def test_cli_salvage_prints_what_it_kept_and_dropped(tmp_path: Path) -> None:
    from aos.demo import run_demo

    world = tmp_path / "shop.world"
    run_demo(world, orders=40)
    seg = sorted((world / "journal").glob("*.seg"))[-1]
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 200)
    r = run_cli("fsck", str(world), "--manifest", "aos.demo:manifest")
    assert r.exit_code == 1 and "journal/durable" in r.output, r.output
    new = tmp_path / "rescued.world"
    r = run_cli("salvage", str(world), "--to", str(new), "--manifest", "aos.demo:manifest")
    assert r.exit_code == 0, r.output
    for line in ("kept ", "dropped ", "lost ", "snapshots ", "replay     verified: snapshot hash"):
        assert line in r.output, r.output
    assert "secret.key (pending receipts still authenticate)" in r.output
    assert run_cli("replay", str(new), "--verify", "--manifest", "aos.demo:manifest").exit_code == 0
    r = run_cli("fsck", str(new))
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["salvage", str(world), "--to", str(new)])
    assert r.exit_code != 0 and "exists" in str(r.exception)


def test_salvage_without_a_manifest_copies_and_names_how_to_verify(tmp_path: Path, original: Original) -> None:
    copy, _named = damaged_copy(tmp_path, original, "segment cut below the durable watermark")
    new = tmp_path / "n"
    r = run_cli("salvage", str(copy), "--to", str(new))
    assert r.exit_code == 0, r.output
    assert f"aos replay {new} --verify --manifest M" in r.output
    m = effects_manifest(budget=1_000)
    assert aos.replay(new, m).verify()
    shutil.rmtree(new)
