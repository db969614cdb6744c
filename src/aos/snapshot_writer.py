"""The background snapshot writer: snapshots off the commit path.

At a quiet point the world takes a :class:`~aos.snapshot.PendingSnapshot`
(the small tables as values, the cell store as a flat frozen copy: a few
memcpys) and hands it here. A thread encodes the cells in C with the GIL
released, writes the file under a temporary name and fsyncs it; the world
publishes it at a later quiet point — once the journal is durable past the
snapshot's position it renames the file into place — so a snapshot never
lies past the journal on disk and a half-written one is never used. No
``SnapshotCreated`` is journaled for a background snapshot: when the writer
finishes depends on timing, and the journal must not (docs/storage.md,
"Snapshots off the commit path").

One snapshot is in flight at a time: a snapshot that falls due while one is
being written waits for it (counted in ``waits``), so every due ticket gets
its snapshot whatever the timing — the same files as the synchronous
writer's. An error on the thread
is kept and raised by the world's next call that publishes or waits.
"""

from __future__ import annotations

import threading
from pathlib import Path

from aos.snapshot import PendingSnapshot, WrittenSnapshot, write_pending

__all__ = ["SnapshotWriter"]


class SnapshotWriter:
    """Writes one :class:`PendingSnapshot` at a time on a thread of its own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._thread: threading.Thread | None = None
        self._written: WrittenSnapshot | None = None
        self._error: BaseException | None = None
        self.waits = 0  # due snapshots that waited for the one in flight

    @property
    def busy(self) -> bool:
        """Whether a snapshot was handed over and not yet taken back (written or not)."""
        return self._thread is not None

    @property
    def done(self) -> bool:
        """Whether the snapshot handed over is written (or failed): :meth:`take` returns at once."""
        return self._thread is not None and not self._thread.is_alive()

    def start(self, pending: PendingSnapshot) -> None:
        if self._thread is not None:
            raise RuntimeError("a snapshot is being written already")
        self._written = self._error = None
        self._thread = threading.Thread(target=self._run, args=(pending,), name="aos-snapshot", daemon=True)
        self._thread.start()

    def _run(self, pending: PendingSnapshot) -> None:
        try:
            self._written = write_pending(self.directory, pending)
        except BaseException as exc:  # kept for the world's next call (never lost)
            self._error = exc

    def take(self) -> WrittenSnapshot | None:
        """Wait for the snapshot in flight; return it written (None: none in flight). Raises its error."""
        t = self._thread
        if t is None:
            return None
        t.join()
        self._thread = None
        written, error = self._written, self._error
        self._written = self._error = None
        if error is not None:
            raise error
        return written

    def abandon(self) -> None:
        """Wait for the snapshot in flight and drop it (its temporary file is removed)."""
        try:
            written = self.take()
        except BaseException:
            return
        if written is not None:
            written.tmp.unlink(missing_ok=True)
