"""Durable file operations shared by the journal, snapshots and world metadata."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic", "lock_world"]


def fsync_dir(path: Path) -> None:
    """fsync a directory, making renames and creations in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is either absent or complete, and durable.

    Temporary file, fsync, rename over ``path``, fsync of the directory.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def lock_world(path: Path, busy: str | None = None) -> int:
    """Take the world's lock (``world.lock``, an exclusive flock) and return its file descriptor.

    Raises :class:`~aos.errors.WorldLockedError` (with ``busy`` as its message,
    if given) when another World object or process holds it.
    """
    import fcntl

    from aos.errors import WorldLockedError

    fd = os.open(path / "world.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorldLockedError(busy or f"world {path} is open elsewhere (world.lock is held)") from None
    return fd
