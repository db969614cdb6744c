"""Retention and compaction: journal segments wholly before the oldest kept snapshot are removed.

A world keeps its newest ``keep_snapshots`` snapshots (and every era's
boundary snapshot). :func:`compact` removes the journal segments that lie
wholly before the oldest snapshot it keeps — the compaction base — after
recording, durably, what it removed in ``compacted.cbor``:

``format``, ``snapshot`` (the base's file name), ``index`` (its record
index: records before it may be gone), ``position`` (its journal position),
``event_id`` (its last ticket), ``era`` (the era it was written under),
``segments`` and ``bytes`` (removed so far, over every compaction).

The steps, each crash-safe (docs/storage.md, "Compaction"): the marker is
written first (temporary file, fsync, rename, fsync of the directory), then
segments are removed oldest first and the journal directory fsync'd, then
the snapshots older than the base (boundary snapshots stay). A world
stopped between any two steps opens: opening reads the journal from its
newest snapshot, never from its start. Replay, ``fsck`` and time travel
read the marker: they verify from the base snapshot, say so, and refuse a
ticket before it with :class:`~aos.errors.JournalCompactedError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aos import canonical
from aos.errors import ArgumentError, CanonicalError, JournalCompactedError, SnapshotCorruptError, StorageError
from aos.files import fsync_dir, lock_world, write_atomic
from aos.journal import JournalReader, Position, segment_name
from aos.snapshot import check_snapshot_file, list_snapshots, snapshot_index

__all__ = ["COMPACTED", "Compaction", "CompactionResult", "read_compaction", "compact", "snapshot_head",
           "check_not_compacted"]

COMPACTED = "compacted.cbor"
COMPACTION_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Compaction:
    """What ``compacted.cbor`` says: the journal before ``index`` may be gone; verify from ``snapshot``."""

    snapshot: str
    index: int
    position: Position
    event_id: int
    era: bytes
    segments: int = 0
    bytes: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"format": COMPACTION_FORMAT, "snapshot": self.snapshot, "index": self.index,
                "position": self.position.to_wire(), "event_id": self.event_id, "era": self.era,
                "segments": self.segments, "bytes": self.bytes}


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What one :func:`compact` did."""

    base: Compaction | None  # None: no snapshot to compact to
    segments_removed: list[str]
    bytes_removed: int
    snapshots_removed: list[str]


def read_compaction(world: str | os.PathLike[str]) -> Compaction | None:
    """The world's compaction marker (None: its journal was never compacted). Raises StorageError when
    the marker is malformed."""
    path = Path(world) / COMPACTED
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"{path}: cannot be read: {exc}") from None
    try:
        m = canonical.decode(data, str(path))
        if type(m) is not dict or m.get("format") != COMPACTION_FORMAT:
            raise ValueError(f"unknown format {m.get('format') if type(m) is dict else m!r}")
        c = Compaction(m["snapshot"], m["index"], Position.from_wire(m["position"]), m["event_id"], m["era"],
                       m["segments"], m["bytes"])
        if not (type(c.snapshot) is str and type(c.index) is int and c.index == c.position.index
                and type(c.event_id) is int and type(c.era) is bytes and len(c.era) == 32
                and type(c.segments) is int and type(c.bytes) is int):
            raise ValueError("a field has the wrong type")
    except (CanonicalError, KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"{path}: malformed compaction marker: {exc}") from None
    return c


def snapshot_head(path: Path) -> tuple[Position, int, bytes]:
    """``(position, event_id, era)`` of the snapshot file at ``path`` (checked against its content hash)."""
    data = check_snapshot_file(path)
    try:
        doc = canonical.decode(data, str(path))
        return Position.from_wire(doc["position"]), doc["event_id"], doc["era"]
    except (CanonicalError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotCorruptError(str(path), f"malformed snapshot: {exc}") from None


def check_not_compacted(world: Path, compaction: Compaction | None, event_id: int) -> None:
    """Raise :class:`JournalCompactedError` when ticket ``event_id`` lies before the compaction base."""
    if compaction is not None and event_id < compaction.event_id:
        raise JournalCompactedError(
            f"event_id {event_id} of {world} lies before the compacted point: the journal's records before "
            f"record {compaction.index} were removed (`aos compact`); the oldest state that can be re-made is "
            f"event_id {compaction.event_id}, from snapshots/{compaction.snapshot}",
            event_id=event_id, oldest=compaction.event_id)


def compact(world: str | os.PathLike[str], keep: int | None = None) -> CompactionResult:
    """Remove the journal segments wholly before the oldest snapshot kept; the world must be closed.

    ``keep``: keep the newest ``keep`` snapshots (besides era boundary
    snapshots) and compact to the oldest of them; None keeps every snapshot
    on disk. Raises :class:`WorldLockedError` while the world is open.
    """
    from aos.eras import era_chain
    from aos.world import load_meta

    p = Path(world)
    if keep is not None and (type(keep) is not int or keep < 1):
        raise ArgumentError(f"compact: keep must be an int >= 1 or None, got {keep!r}")
    meta = load_meta(p)
    fd = lock_world(p, f"world {p} is open elsewhere (world.lock is held): close it before compacting")
    try:
        boundaries = {e.snapshot for e in era_chain(meta)}
        before = read_compaction(p)
        snaps = list_snapshots(p / "snapshots")
        ordinary = [s for s in snaps if s.name not in boundaries]
        kept = ordinary[-keep:] if keep is not None else ordinary
        if before is not None:  # the base so far stays a candidate (never compact backwards)
            kept = [s for s in kept if snapshot_index(s) >= before.index] or [
                s for s in snaps if s.name == before.snapshot]
        if not kept:
            return CompactionResult(before, [], 0, [])
        base_path = kept[0]
        position, event_id, era = snapshot_head(base_path)
        journal = p / "journal"
        segs = JournalReader(journal).segments()
        doomed = [s for s in segs if int(s.stem) < position.segment]
        if not (journal / segment_name(position.segment)).is_file():
            raise StorageError(f"{p}: snapshot snapshots/{base_path.name} lies in journal segment "
                               f"{segment_name(position.segment)}, which is missing: nothing compacted")
        freed = sum(s.stat().st_size for s in doomed)
        base = Compaction(base_path.name, position.index, position, event_id, era,
                          (before.segments if before else 0) + len(doomed), (before.bytes if before else 0) + freed)
        if before is None or before != base:
            write_atomic(p / COMPACTED, canonical.encode(base.to_wire(), where="compaction marker"))
        for s in doomed:  # oldest first: what is left is always a whole tail of the journal
            s.unlink()
        if doomed:
            fsync_dir(journal)
        old = [s for s in snaps if snapshot_index(s) < position.index and s.name not in boundaries]
        for s in old:
            s.unlink()
        if old:
            fsync_dir(p / "snapshots")
        return CompactionResult(base, [s.name for s in doomed], freed, [s.name for s in old])
    finally:
        os.close(fd)
