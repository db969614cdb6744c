"""Small append-only logs of a fleet's directory: the control plane's grants, the client's unsent submits.

A record is ``len (4 bytes, little-endian) | body | BLAKE3(body)[:8]``,
``body`` the canonical encoding of a list. A torn last record (a crash
while appending) is cut off when the log is read for writing; any other
damage is refused with :class:`~aos.errors.StorageError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from aos import canonical
from aos.errors import StorageError
from aos.files import fsync_dir

__all__ = ["read_log", "append_log", "cut_log", "frame"]

_HEAD = 4
_TAIL = 8


def frame(fields: list[Any]) -> bytes:
    """One record of ``fields``."""
    body = canonical.encode(fields)
    return len(body).to_bytes(_HEAD, "little") + body + canonical.digest(body)[:_TAIL]


def read_log(path: Path) -> tuple[list[list[Any]], int]:
    """The records of the log at ``path`` and the length of its intact part (a torn last record left out)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    out: list[list[Any]] = []
    pos = 0
    while pos < len(data):
        end = pos + _HEAD
        size = int.from_bytes(data[pos:end], "little") if end <= len(data) else None
        if size is None or end + size + _TAIL > len(data):
            break  # a torn last record
        body = data[end:end + size]
        if canonical.digest(body)[:_TAIL] != data[end + size:end + size + _TAIL]:
            if end + size + _TAIL == len(data):
                break  # the last record, half written
            raise StorageError(f"{path}: record at offset {pos} fails its checksum")
        try:
            fields = canonical.decode(body, f"{path} at offset {pos}")
        except ValueError as exc:
            raise StorageError(f"{path}: malformed record at offset {pos}: {exc}") from None
        if not isinstance(fields, list):
            raise StorageError(f"{path}: malformed record at offset {pos}: not a list")
        out.append(fields)
        pos = end + size + _TAIL
    return out, pos


def cut_log(path: Path, length: int) -> None:
    """Cut the log at ``path`` to ``length`` bytes (its intact part, or 0), durably."""
    if not path.exists() or path.stat().st_size == length:
        return
    with open(path, "r+b") as f:
        f.truncate(length)
        os.fsync(f.fileno())


def append_log(path: Path, records: Iterable[list[Any]], sync: bool = True) -> None:
    """Append ``records`` to the log at ``path`` (creating it) and fsync it."""
    data = b"".join(frame(r) for r in records)
    if not data:
        return
    new = not path.exists()
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    if new and sync:
        fsync_dir(path.parent)
