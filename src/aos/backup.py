"""Consistent copies of a world, taken while it runs (``World.backup``, ``aos backup``).

A backup is a world directory that opens like the original did at one
journal position, the *cut*: every record up to it, the snapshots taken up to
it, the metadata, the secret (receipts for intents still pending keep
authenticating), the blobs and the effect side state.

Taking it costs the running world one quiet point: the journal is written and
fsync'd (every durability mode), its position is read, the small files
(``world.cbor``, ``secret.key``, ...) are read and the segments and snapshots
the copy needs are *opened*. The copying itself happens after the world has
gone on, from those open descriptors: journal segments are append-only, so
the first ``length`` bytes of each stay what they were at the cut, snapshots
never change once written, and a file removed meanwhile (a pruned snapshot,
a compacted segment) stays readable through its descriptor.

The copy is written into ``DEST.partial`` (every file fsync'd), given a
durable watermark at the cut, checked with :func:`aos.fsck.check_world`
(``verify=True``, the default) and only then renamed to ``DEST``, so ``DEST``
is either absent or a whole, checked world. See docs/operations.md,
"Backups".
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aos.errors import StorageError
from aos.files import fsync_dir, lock_world
from aos.journal import WATERMARK_FILE, Position, Watermark, segment_name
from aos.snapshot import list_snapshots, snapshot_index

if TYPE_CHECKING:
    from aos.world import World

__all__ = ["BackupError", "BackupInfo", "backup_world", "backup_closed"]

_SKIP_TOP = {"world.lock", "journal", "snapshots"}  # the lock is never copied; the other two are copied by the cut
_CHUNK = 1 << 20


class BackupError(StorageError):
    """A backup could not be taken (the destination exists, the world has no watermark, a copy failed)."""


@dataclass(frozen=True)
class BackupInfo:
    """What :func:`backup_world` / :func:`backup_closed` wrote."""

    path: Path  # the backup's directory
    records: int  # journal records it holds (the cut's record index)
    event_id: int  # the last event_id committed at the cut (-1 when not known: a closed world's backup)
    segments: int
    snapshots: tuple[str, ...]
    bytes: int  # bytes copied, all files
    verified: bool  # aos.fsck found it clean before it was put in place


@dataclass
class _Cut:
    """What the quiet point captured: a position and open descriptors of everything the copy needs."""

    position: Position
    event_id: int
    small: dict[str, bytes] = field(default_factory=dict)  # top-level and journal/ files, read whole
    segments: list[tuple[str, int, int]] = field(default_factory=list)  # (name, fd, length)
    snapshots: list[tuple[str, int]] = field(default_factory=list)  # (name, fd)
    trees: list[str] = field(default_factory=list)  # other top-level directories (blobs, effect state)

    def close(self) -> None:
        for _name, fd, _n in self.segments:
            os.close(fd)
        for _name, fd in self.snapshots:
            os.close(fd)
        self.segments.clear()
        self.snapshots.clear()


def _check_dest(dest: Path, source: Path) -> Path:
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"backup destination {dest} already exists; give a new path")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        raise BackupError(f"{partial} exists (an interrupted backup?); remove it, or give another destination")
    if not dest.parent.is_dir():
        raise BackupError(f"backup destination {dest}: its parent directory {dest.parent} does not exist")
    try:
        inside = dest.resolve().is_relative_to(source.resolve())
    except OSError:
        inside = False
    if inside:
        raise BackupError(f"backup destination {dest} lies inside the world {source}")
    return dest


def capture(path: Path, position: Position, event_id: int) -> _Cut:
    """Take the cut at ``position``: read the small files, open the segments and snapshots it needs.

    The caller guarantees nothing is appended meanwhile (a quiet point, or
    the world's lock held by a closed world's backup).
    """
    cut = _Cut(position, event_id)
    try:
        for entry in sorted(path.iterdir()):
            if entry.name in _SKIP_TOP or entry.name.endswith((".tmp", ".partial")):
                continue
            if entry.is_file():
                cut.small[entry.name] = entry.read_bytes()
            elif entry.is_dir():
                cut.trees.append(entry.name)
        jdir = path / "journal"
        for entry in sorted(jdir.iterdir()):
            if entry.suffix == ".seg":
                first = int(entry.stem)
                if first > position.segment:
                    continue  # begun after the cut (none at a quiet point: the cut's segment is the last)
                fd = os.open(entry, os.O_RDONLY)
                size = os.fstat(fd).st_size
                length = position.offset if first == position.segment else size
                cut.segments.append((entry.name, fd, length))
                if length > size:
                    raise BackupError(f"journal segment {entry.name} holds {size} bytes, fewer than the "
                                      f"{length} the cut at record {position.index} needs")
            elif entry.is_file() and entry.name != WATERMARK_FILE and not entry.name.endswith(".tmp"):
                cut.small["journal/" + entry.name] = entry.read_bytes()
        if not any(name == segment_name(position.segment) for name, _fd, _n in cut.segments):
            raise BackupError(f"journal segment {segment_name(position.segment)} (the cut's) is missing")
        for snap in list_snapshots(path / "snapshots"):
            if snapshot_index(snap) <= position.index:
                cut.snapshots.append((snap.name, os.open(snap, os.O_RDONLY)))
    except BaseException:
        cut.close()
        raise
    return cut


def _copy_fd(fd: int, length: int | None, target: Path) -> int:
    """Copy ``length`` bytes (all when None) from the start of ``fd`` into ``target``, fsync'd."""
    done = 0
    with open(target, "wb") as out:
        while length is None or done < length:
            want = _CHUNK if length is None else min(_CHUNK, length - done)
            chunk = os.pread(fd, want, done)
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    if length is not None and done != length:
        raise BackupError(f"{target.name}: read {done} of {length} bytes")
    return done


def _write_file(target: Path, data: bytes, mode: int | None = None) -> int:
    with open(target, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    if mode is not None:
        os.chmod(target, mode)
    return len(data)


def _copy_tree(src: Path, dst: Path) -> int:
    """Copy a directory of files (blobs, effect side state), each fsync'd; returns the bytes copied."""
    total = 0
    dst.mkdir()
    for entry in sorted(src.iterdir()):
        if entry.name.endswith(".tmp"):
            continue
        if entry.is_dir():
            total += _copy_tree(entry, dst / entry.name)
        elif entry.is_file():
            try:
                fd = os.open(entry, os.O_RDONLY)
            except FileNotFoundError:
                continue  # removed since it was listed (a side file replaced atomically)
            try:
                total += _copy_fd(fd, None, dst / entry.name)
            finally:
                os.close(fd)
    fsync_dir(dst)
    return total


def write_cut(source: Path, cut: _Cut, dest: Path, verify: bool) -> BackupInfo:
    """Write the captured cut into ``dest`` (through ``dest.partial``); closes the cut's descriptors."""
    partial = dest.with_name(dest.name + ".partial")
    segments = tuple(name for name, _fd, _n in cut.segments)
    snapshots = tuple(name for name, _fd in cut.snapshots)
    partial.mkdir()  # not inside the try: a directory this call did not make is never removed
    try:
        total = 0
        for name, data in cut.small.items():
            target = partial / name
            target.parent.mkdir(exist_ok=True)
            total += _write_file(target, data, 0o600 if name == "secret.key" else None)
        jdir = partial / "journal"
        jdir.mkdir(exist_ok=True)
        for name, fd, length in cut.segments:
            total += _copy_fd(fd, length, jdir / name)
        Watermark.create(jdir, cut.position).close()
        fsync_dir(jdir)
        sdir = partial / "snapshots"
        sdir.mkdir()
        for name, fd in cut.snapshots:
            total += _copy_fd(fd, None, sdir / name)
        fsync_dir(sdir)
        for tree in cut.trees:
            if (source / tree).is_dir():
                total += _copy_tree(source / tree, partial / tree)
        fsync_dir(partial)
        verified = False
        if verify:
            from aos.fsck import check_world

            report = check_world(partial)
            if not report.ok:
                problems = "; ".join(str(p) for p in report.problems)
                raise BackupError(f"the copy of {source} failed its check, so it was not put in place: {problems}")
            verified = True
        os.rename(partial, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        cut.close()
    return BackupInfo(dest, cut.position.index, cut.event_id, len(segments), snapshots, total, verified)


def backup_world(world: "World", dest: str | os.PathLike[str], *, verify: bool = True) -> BackupInfo:
    """``World.backup``: cut at the running world's next quiet point, then copy beside it."""
    target = _check_dest(Path(dest), world.path)

    def take() -> _Cut:
        j = world._journal
        j.flush(sync=True, force=True)  # the cut is on disk, whatever the durability mode
        world.durable_event_id = world._kernel.last_event_id
        world._intake.acknowledge(j.index)
        return capture(world.path, j.position, world._kernel.last_event_id)

    world._live()
    cut: _Cut = world._on_runner(take)
    return write_cut(world.path, cut, target, verify)


def backup_closed(path: str | os.PathLike[str], dest: str | os.PathLike[str], *, verify: bool = True) -> BackupInfo:
    """Back up a world no process has open (``aos backup``): its journal up to the durable watermark.

    Takes the world's lock for the capture (:class:`~aos.errors.WorldLockedError`
    when a process has it open: call :meth:`World.backup` there instead).
    Records past the watermark — a tail no sync acknowledged, left by a crash
    — are not copied: the original drops them too when it next opens.
    """
    p = Path(path)
    if not (p / "world.cbor").is_file():
        raise BackupError(f"no world at {p} (world.cbor is missing)")
    target = _check_dest(Path(dest), p)
    fd = lock_world(p, f"world {p} is open in another process: back it up there with World.backup(DEST)")
    try:
        found = Watermark.read(p / "journal")
        if found is None:
            raise BackupError(f"world {p} has no durable watermark (journal/durable): open it once with this "
                              "version of aos, which adds one, then back it up")
        cut = capture(p, found[0], -1)
    finally:
        os.close(fd)
    return write_cut(p, cut, target, verify)
