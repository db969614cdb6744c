"""Backups: ``World.backup`` of a running world and ``aos backup`` of a closed one.

A backup must open as the world was at its cut (the same journal prefix, byte
for byte, the same state), replay-verify, and never appear half-written.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import aos
from aos.backup import BackupError, backup_closed
from aos.cli import cli
from aos.journal import JournalReader


def ledger() -> aos.Manifest:
    m = aos.Manifest("test/backup@1")
    m.capability("files", effect="blob.put", budget=10**9)

    @m.reducer("test/Account@1", key="acct", events=["test/Deposit@1"])
    def account(ctx: Any, state: Any, event: Any) -> Any:
        total = (state or {"total": 0})["total"] + event.value["n"]
        if event.value["n"] % 50 == 0:
            ctx.effect("blob.put", {"data": str(total).encode()})
        return {"total": total}

    return m


def journal_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / "journal").glob("*.seg")))


def records(path: Path, m: aos.Manifest) -> list[Any]:
    return [r for _e, r in JournalReader(path / "journal", m.era).records()]


def feed(w: aos.World, start: int, n: int) -> None:
    for i in range(start, start + n):
        w.submit("test/Deposit@1", {"acct": i % 7, "n": i})


def test_backup_of_an_open_world_opens_at_its_cut(tmp_path: Path) -> None:
    m = ledger()
    src, dest = tmp_path / "w", tmp_path / "backup"
    opts: dict[str, Any] = {"workers": 0, "effects": "inline", "snapshot_every": 100, "segment_bytes": 4096}
    with aos.World.open(src, m, **opts) as w:
        feed(w, 1, 300)
        w.run()
        info = w.backup(dest)
        at_cut = w.snapshot_hash()
        blobs = sorted(p.relative_to(src).as_posix() for p in (src / "blobs").rglob("*") if p.is_file())
        feed(w, 301, 100)  # the world goes on after the backup
        w.run()
    assert info.path == dest and info.verified and info.event_id > 0
    assert info.segments > 1 and info.snapshots, "the test should cover several segments and a snapshot"
    assert not dest.with_name("backup.partial").exists()
    copied = journal_bytes(dest)
    assert journal_bytes(src).startswith(copied) and len(records(dest, m)) == info.records
    assert (dest / "secret.key").stat().st_mode & 0o777 == 0o600
    assert blobs and all((dest / b).read_bytes() == (src / b).read_bytes() for b in blobs)
    assert aos.replay(dest, m).verify() == at_cut
    with aos.World.open(dest, m, **opts) as b:
        assert b.last_event_id == info.event_id and b.snapshot_hash() == at_cut
        feed(b, 301, 100)  # the backup is a live world: the same inputs give the same journal
        b.run()
    assert journal_bytes(dest) == journal_bytes(src)


def test_backup_while_another_thread_serves(tmp_path: Path) -> None:
    m = ledger()
    src = tmp_path / "w"
    w = aos.World.open(src, m, workers=0, effects="inline", segment_bytes=8192)
    out: dict[str, Any] = {}

    def serve() -> None:
        try:
            out["result"] = w.serve()
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while w._intake.runner is None:
            assert time.monotonic() < deadline, "serve() did not start"
            time.sleep(0.001)
        infos = []
        for round_ in range(3):
            for i in range(round_ * 200 + 1, round_ * 200 + 201):
                w.submit_async("test/Deposit@1", {"acct": i % 5, "n": i})
            infos.append(w.backup(tmp_path / f"b{round_}"))
    finally:
        w.stop()
        t.join(30)
        w.close()
    assert not t.is_alive() and "error" not in out, out.get("error")
    full = journal_bytes(src)
    for i, info in enumerate(infos):
        b = tmp_path / f"b{i}"
        assert full.startswith(journal_bytes(b))
        h = aos.replay(b, m).verify()
        r = aos.replay(src, m)
        assert r.verify(until=info.event_id) == h  # the copy is the world as of its cut
    assert infos[0].records <= infos[1].records <= infos[2].records


def test_backup_refuses_an_existing_destination_and_leaves_nothing(tmp_path: Path) -> None:
    m = ledger()
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        feed(w, 1, 10)
        w.run()
        (tmp_path / "taken").mkdir()
        with pytest.raises(BackupError, match="already exists"):
            w.backup(tmp_path / "taken")
        with pytest.raises(BackupError, match="inside the world"):
            w.backup(tmp_path / "w" / "copy")
        with pytest.raises(BackupError, match="parent directory"):
            w.backup(tmp_path / "no" / "such" / "dir")
        (tmp_path / "b.partial").mkdir()
        with pytest.raises(BackupError, match="interrupted backup"):
            w.backup(tmp_path / "b")
        assert isinstance(BackupError("x"), aos.StorageError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.partial", "taken", "w"]


def test_a_failed_copy_leaves_no_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = ledger()
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        feed(w, 1, 20)
        w.run()
        import aos.backup as backup

        def broken(fd: int, length: int | None, target: Path) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(backup, "_copy_fd", broken)
        with pytest.raises(OSError, match="No space"):
            w.backup(tmp_path / "b")
        assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()
        monkeypatch.undo()
        w.backup(tmp_path / "b")  # the world is unharmed and the next backup works
    assert aos.replay(tmp_path / "b", m).verify()


def test_cli_backup_of_a_closed_world(tmp_path: Path) -> None:
    m = ledger()
    with aos.World.open(tmp_path / "w", m, workers=0, effects="inline") as w:
        feed(w, 1, 120)
        w.run()
        h = w.snapshot_hash()
        with pytest.raises(aos.WorldLockedError, match="World.backup"):
            backup_closed(tmp_path / "w", tmp_path / "b")  # open here: the lock says so
    runner = CliRunner()
    res = runner.invoke(cli, ["backup", str(tmp_path / "w"), str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "verified" in res.output and str(tmp_path / "b") in res.output
    assert journal_bytes(tmp_path / "b") == journal_bytes(tmp_path / "w")
    assert aos.replay(tmp_path / "b", m).verify() == h
    res = runner.invoke(cli, ["backup", str(tmp_path / "w"), str(tmp_path / "b")])
    assert res.exit_code != 0 and "already exists" in res.output
    res = runner.invoke(cli, ["backup", str(tmp_path / "nothing"), str(tmp_path / "c")])
    assert res.exit_code != 0 and "no world" in res.output


def test_backup_of_a_crashed_world_stops_at_its_watermark(tmp_path: Path) -> None:
    """Bytes past the durable watermark (a tail no sync acknowledged) are not part of the backup."""
    m = ledger()
    with aos.World.open(tmp_path / "w", m, workers=0) as w:
        feed(w, 1, 50)
        w.run()
        h = w.snapshot_hash()
    seg = sorted((tmp_path / "w" / "journal").glob("*.seg"))[-1]
    whole = seg.read_bytes()
    with open(seg, "ab") as f:  # a torn frame, as a crash mid-write leaves it
        f.write(b"\x07" * 37)
        os.fsync(f.fileno())
    info = backup_closed(tmp_path / "w", tmp_path / "b")
    assert sorted((tmp_path / "b" / "journal").glob("*.seg"))[-1].read_bytes() == whole
    assert info.verified and aos.replay(tmp_path / "b", m).verify() == h
