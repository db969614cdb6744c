"""Retention and compaction (`aos compact`), and "now" reads from the newest snapshot (docs/storage.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import aos
import aos.retention as retention
from aos.cli import cli
from aos.fsck import check_world
from aos.journal import JournalReader
from aos.retention import COMPACTED, compact, read_compaction
from aos.snapshot import list_snapshots
from conftest import make_counter_manifest

SEGMENT = 32 * 1024  # small segments, so that a compaction has whole segments to remove


def _open(path: Path, m: aos.Manifest, **kw: Any) -> aos.World:
    return aos.World.open(path, m, workers=0, snapshot_every=kw.pop("every", 400), segment_bytes=SEGMENT, **kw)


def _fill(w: aos.World, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        w.submit("test/Add@1", {"id": i % 113 if i % 4 else f"s{i % 17}", "by": 1 + i % 5})
    w.run()


def _world(path: Path, rounds: int = 8) -> tuple[aos.Manifest, str]:
    m = make_counter_manifest()
    w = _open(path, m)
    for r in range(rounds):
        _fill(w, 300, r * 300)
    h = w.snapshot_hash()
    w.close()
    return m, h


def _segments(path: Path) -> list[str]:
    return [p.name for p in JournalReader(path / "journal").segments()]


def test_compact_reopen_run_more_and_replay(tmp_path: Path) -> None:
    p = tmp_path / "w"
    m, h = _world(p)
    segs = _segments(p)
    r = compact(p, keep=2)
    assert r.base is not None and r.segments_removed and r.bytes_removed > 0
    snaps = list_snapshots(p / "snapshots")
    assert len(snaps) == 2 and snaps[0].name == r.base.snapshot
    assert _segments(p) == [s for s in segs if int(s[:-4]) >= r.base.position.segment]
    assert read_compaction(p) == r.base
    # the full replay can no longer start from record 0: it verifies from the base and says so
    rep = aos.replay(p, m)
    assert rep.verify() == h
    assert rep.verified_from == r.base and rep.not_reexecuted == range(1, r.base.event_id + 1)
    # reopen, run more, replay again
    w = _open(p, m, keep_snapshots=1, every=250)
    assert w.snapshot_hash() == h
    _fill(w, 1200, 5000)
    h2 = w.snapshot_hash()
    w.close()
    assert (p / "snapshots" / r.base.snapshot).is_file()  # pruning keeps the compaction base
    assert aos.replay(p, m).verify() == h2
    report = check_world(p, m)
    assert report.ok and report.verified == h2
    assert any("the journal was compacted" in n for n in report.notes)
    # a second compaction moves the base forward and counts what was removed in all
    r2 = compact(p, keep=1)
    assert r2.base is not None and r2.base.index > r.base.index
    assert r2.base.segments == r.base.segments + len(r2.segments_removed)
    assert not (p / "snapshots" / r.base.snapshot).exists()
    assert aos.replay(p, m).verify() == h2


def test_a_journal_without_its_start_and_without_a_marker_is_still_refused(tmp_path: Path) -> None:
    """Replay-or-die stays honest: segments missing without a compaction marker are damage, not compaction."""
    p = tmp_path / "w"
    m, _h = _world(p)
    compact(p, keep=2)
    (p / COMPACTED).unlink()
    with pytest.raises(aos.JournalCorruptError):
        aos.replay(p, m).verify()
    assert not check_world(p, m).ok


def test_time_travel_before_the_compacted_point_is_a_typed_error(tmp_path: Path) -> None:
    p = tmp_path / "w"
    m, _h = _world(p)
    base = compact(p, keep=2).base
    assert base is not None
    with pytest.raises(aos.JournalCompactedError) as e:
        aos.replay(p, m).verify(until=base.event_id - 1)
    assert e.value.oldest == base.event_id and "compacted" in str(e.value)
    r = aos.replay(p, m)
    r.verify(until=base.event_id + 5)
    assert r.kernel is not None and r.kernel.last_event_id == base.event_id + 5


def test_compact_refuses_an_open_world(tmp_path: Path) -> None:
    p = tmp_path / "w"
    m, _h = _world(p)
    w = _open(p, m)
    try:
        with pytest.raises(aos.WorldLockedError):
            compact(p)
    finally:
        w.close()


class _Crash(Exception):
    pass


def _crashing_unlink(real: Any, stop: int) -> Any:
    """``Path.unlink`` that raises instead of removing the ``stop``-th file (counting from 0)."""
    done = [0]

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if done[0] == stop:
            raise _Crash()
        done[0] += 1
        real(self, missing_ok=missing_ok)

    return unlink


def _steps_of_a_compaction(src: Path, tmp: Path) -> int:
    """How many files one compaction of a copy of ``src`` removes (each removal is a point it can stop at)."""
    q = tmp / "count"
    shutil.copytree(src, q)
    r = compact(q, keep=2)
    shutil.rmtree(q)
    return len(r.segments_removed) + len(r.snapshots_removed)


@pytest.mark.parametrize("mode", ["marker", "removals"])
def test_a_compaction_interrupted_at_each_step_still_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          mode: str) -> None:
    src = tmp_path / "src"
    m, h = _world(src)
    points = [0] if mode == "marker" else range(_steps_of_a_compaction(src, tmp_path) + 1)
    for stop in points:
        p = tmp_path / f"w{mode}{stop}"
        shutil.copytree(src, p)
        with monkeypatch.context() as mp:
            if mode == "marker":
                def no_marker(path: Path, data: bytes) -> None:
                    path.with_name(path.name + ".tmp").write_bytes(data[:10])  # a torn temporary file
                    raise _Crash()

                mp.setattr(retention, "write_atomic", no_marker)
            else:
                mp.setattr(Path, "unlink", _crashing_unlink(Path.unlink, stop))
            try:
                compact(p, keep=2)
            except _Crash:
                pass
        w = _open(p, m)
        assert w.snapshot_hash() == h
        _fill(w, 50, 9000)
        h2 = w.snapshot_hash()
        w.close()
        assert aos.replay(p, m).verify() == h2
        assert check_world(p, m).ok
        compact(p, keep=2)  # a later compaction finishes the job
        assert aos.replay(p, m).verify() == h2


def test_latest_reads_the_newest_snapshot_and_the_tail(tmp_path: Path) -> None:
    p = tmp_path / "w"
    m, h = _world(p)
    w = _open(p, m, snapshot_on_close=False)
    _fill(w, 150, 7000)  # a tail after the newest snapshot
    h2 = w.snapshot_hash()
    expected = {k: w.state("test/Counter@1", k) for _r, k in w.cells("test/Counter@1")}
    w.close()
    full = aos.replay(p, m)
    assert full.verify() == h2
    now = aos.replay(p, m)
    assert now.latest() == h2
    assert now.started_from == list_snapshots(p / "snapshots")[-1]
    assert full.started_from is None  # the full replay started from the journal's start
    assert now.cells() == full.cells()
    assert {k: now.state("test/Counter@1", k) for k in expected} == expected
    # after a compaction that leaves only the newest snapshot's segment, "now" still reads from it
    compact(p, keep=1)
    again = aos.replay(p, m)
    assert again.latest() == h2 and again.started_from == list_snapshots(p / "snapshots")[-1]


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_compact_state_cells_and_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    p = tmp_path / "w"
    m, h = _world(p)
    mod = types.ModuleType("compact_manifest")
    mod.manifest = m  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "compact_manifest", mod)
    spec = "compact_manifest:manifest"
    w = _open(p, m)
    state = w.state("test/Counter@1", 5)
    w.close()
    out = _invoke("compact", str(p), "--keep", "2")
    assert out.exit_code == 0 and "compacted to snapshots/" in out.output and "removed" in out.output
    base = read_compaction(p)
    assert base is not None
    out = _invoke("state", str(p), "test/Counter@1", "5", "--manifest", spec)
    assert out.exit_code == 0 and json.loads(out.output) == state
    out = _invoke("cells", str(p), "test/Counter@1", "--manifest", spec)
    assert out.exit_code == 0 and "130 cell(s)" in out.output  # 113 int keys, 17 str keys
    out = _invoke("replay", str(p), "--manifest", spec)
    assert out.exit_code == 0, out.output
    assert f"from snapshot snapshots/{base.snapshot} at record {base.index}" in out.output and h in out.output
    assert f"not re-executed: event_ids 1..{base.event_id}" in out.output
    from aos.cli import main

    monkeypatch.setattr(sys, "argv", ["aos", "state", str(p), "test/Counter@1", "5", "--manifest", spec,
                                      "--at", "3"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1
