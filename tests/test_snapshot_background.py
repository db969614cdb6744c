"""Snapshots off the commit path: the background writer (docs/storage.md, "Snapshots")."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import aos
import aos.snapshot_writer as snapshot_writer
from aos import canonical
from aos.journal import JournalReader
from aos.records import SnapshotCreated
from aos.snapshot import capture, list_snapshots, write_pending, write_snapshot
from conftest import make_counter_manifest


def _fill(w: aos.World, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        key: Any = i % 97 if i % 3 else f"k{i % 41}"
        w.submit("test/Add@1", {"id": key, "by": i % 7, "delete": i % 29 == 0})
    w.run()


def _snapshot_records(path: Path) -> list[tuple[int, SnapshotCreated]]:
    return [(e.index, r) for e, r in JournalReader(path / "journal").records() if isinstance(r, SnapshotCreated)]


def test_background_bytes_equal_the_synchronous_snapshot(tmp_path: Path) -> None:
    m = make_counter_manifest()
    w = aos.World.open(tmp_path / "w", m, workers=0, snapshot_every=0)
    try:
        _fill(w, 3000)
        k, j = w._kernel, w._journal
        j.flush(sync=True, force=True)
        sync = write_snapshot(tmp_path / "sync", k, m.era, j.position)
        pending = capture(k, m.era, j.position)
        _fill(w, 500, 3000)  # the world goes on: the frozen copy does not
        written = write_pending(tmp_path / "bg", pending)
    finally:
        w.close()
    assert written.tmp.read_bytes() == sync.path.read_bytes()
    assert written.path.name == sync.path.name
    assert written.snapshot_hash.hex() == sync.snapshot_hash


def _blocking_writer(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make the background writer wait for ``release`` before it writes; ``started`` is set when it begins."""
    started, release = threading.Event(), threading.Event()
    real = snapshot_writer.write_pending

    def slow(directory: Path, pending: Any) -> Any:
        started.set()
        assert release.wait(30)
        return real(directory, pending)

    monkeypatch.setattr(snapshot_writer, "write_pending", slow)
    return started, release


def test_commits_go_on_while_a_snapshot_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = make_counter_manifest()
    started, release = _blocking_writer(monkeypatch)
    w = aos.World.open(tmp_path / "w", m, workers=0, snapshot_every=500)
    try:
        _fill(w, 400)  # the snapshot due at ticket 500 is still being written: the run returned all the same
        assert started.is_set() and w._snapshots is not None and w._snapshots.busy
        assert w.last_event_id == 800  # (each event makes two steps: its counter and the total)
        assert list_snapshots(tmp_path / "w" / "snapshots") == []  # nothing published yet
        threading.Timer(0.3, release.set).start()
        _fill(w, 200, 400)  # the snapshot due at ticket 1000 waits for the one in flight
        assert w._snapshots.waits == 1 and list_snapshots(tmp_path / "w" / "snapshots")
        h, last = w.snapshot_hash(), w.last_event_id
    finally:
        release.set()
        w.close()
    # published once written; announced by no record (when it finished is timing, which the journal must not
    # show): the only SnapshotCreated is close's
    assert [r.event_id for _i, r in _snapshot_records(tmp_path / "w")] == [last]
    assert [canonical.decode(p.read_bytes())["event_id"] for p in list_snapshots(tmp_path / "w" / "snapshots")] == [
        500, 1000, last]  # every due ticket has its snapshot
    assert aos.replay(tmp_path / "w", m).verify() == h
    w = aos.World.open(tmp_path / "w", m)
    assert w.snapshot_hash() == h
    w.close()


def test_close_waits_for_the_snapshot_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = make_counter_manifest()
    started, release = _blocking_writer(monkeypatch)
    w = aos.World.open(tmp_path / "w", m, workers=0, snapshot_every=200, snapshot_on_close=False)
    _fill(w, 150)
    assert started.is_set()
    threading.Timer(0.3, release.set).start()
    w.close()
    snaps = list_snapshots(tmp_path / "w" / "snapshots")
    assert len(snaps) == 1 and not list((tmp_path / "w" / "snapshots").glob("*.tmp"))
    assert _snapshot_records(tmp_path / "w") == []
    w = aos.World.open(tmp_path / "w", m, workers=0, snapshot_on_close=False)  # opens from it
    assert w.last_event_id == 300  # (each event makes two steps: its counter and the total)
    w.close()
    assert aos.replay(tmp_path / "w", m).verify()


def test_a_snapshot_never_published_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while the snapshot is written leaves only a temporary file: the world opens from its journal."""
    m = make_counter_manifest()
    w = aos.World.open(tmp_path / "w", m, workers=0, snapshot_every=0)
    _fill(w, 300)
    j = w._journal
    written = write_pending(tmp_path / "w" / "snapshots", capture(w._kernel, m.era, j.position))
    h = w.snapshot_hash()
    w._close("simulated crash", clean=False)
    assert written.tmp.exists() and list_snapshots(tmp_path / "w" / "snapshots") == []
    w = aos.World.open(tmp_path / "w", m)
    assert w.snapshot_hash() == h
    assert not written.tmp.exists()  # the leftover is removed when the world opens
    w.close()
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_background_and_synchronous_worlds_hold_the_same_state(tmp_path: Path) -> None:
    m = make_counter_manifest()
    hashes = []
    for bg in (True, False):
        w = aos.World.open(tmp_path / f"w{bg}", m, workers=0, snapshot_every=250, background_snapshots=bg)
        for r in range(6):
            _fill(w, 400, r * 400)
        hashes.append(w.snapshot_hash())
        w.close()
        assert aos.replay(tmp_path / f"w{bg}", m).verify() == hashes[-1]
        assert _snapshot_records(tmp_path / f"w{bg}")
    assert hashes[0] == hashes[1]


def test_the_journal_does_not_depend_on_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow writer (due snapshots wait for it) and a fast one write the same journal and snapshot files."""
    m = make_counter_manifest()
    journals, files = [], []
    for slow in (False, True):
        with monkeypatch.context() as mp:
            if slow:
                _started, release = _blocking_writer(mp)
                threading.Timer(0.3, release.set).start()
            w = aos.World.open(tmp_path / f"w{slow}", m, workers=0, snapshot_every=50)
            for r in range(5):
                _fill(w, 120, r * 120)
            if slow:
                assert w._snapshots is not None and w._snapshots.waits > 0
            w.close()
        journals.append(b"".join(p.read_bytes() for p in JournalReader(tmp_path / f"w{slow}" / "journal").segments()))
        files.append(sorted(p.name for p in list_snapshots(tmp_path / f"w{slow}" / "snapshots")))
    assert journals[0] == journals[1] and files[0] == files[1]
