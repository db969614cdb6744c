"""The journal: append-only segment files of framed, hash-chained records.

Layout of ``journal/`` (docs/journal.md):

* Segment files ``<first record index, 20 digits>.seg``. Each starts with a
  64-byte header: magic ``AOSJRNL1``, the index of its first record, the
  chain hash it continues from, the era its records were written under, and
  an 8-byte BLAKE3 check of those fields.
* Then frames: ``u32 length | u32 CRC-32 of the length | payload | chain``
  where ``payload`` is a canonical CBOR record and
  ``chain = BLAKE3(previous chain || payload)``. The chain is both the
  record's checksum and the link to everything before it.

Recovery: a frame cut short at the end of the last segment (or a zero-filled
end) is a *torn tail* and is truncated away when a world is opened for
writing. Any other failing check raises :class:`JournalCorruptError` naming the
segment and the offset of the bad frame; nothing is skipped.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import blake3

from aos._core import frames
from aos.errors import JournalCorruptError, NonCanonicalError
from aos.files import write_atomic
from aos.records import Record, decode_record, encode_record

__all__ = ["Journal", "JournalReader", "Entry", "Position", "Durability", "GENESIS"]

MAGIC = b"AOSJRNL1"
_SEG_HEAD = struct.Struct("<8sQ32s32s")
SEG_HEADER_SIZE = _SEG_HEAD.size + 8  # 88
_FRAME = struct.Struct("<II")
FRAME_OVERHEAD = _FRAME.size + 32
MAX_RECORD = 1 << 30
GENESIS = bytes(32)
DEFAULT_SEGMENT_BYTES = 32 << 20
_append_frame = frames.append
_SCAN_BATCH = 4096  # frames checked per call into the C scanner


def _seg_name(first_index: int) -> str:
    return f"{first_index:020d}.seg"


def _len_check(n: int) -> int:
    return zlib.crc32(n.to_bytes(4, "little"))


def _chain(prev: bytes, payload: bytes) -> bytes:
    h = blake3.blake3(prev)
    h.update(payload)
    return h.digest()


@dataclass(frozen=True, slots=True)
class Durability:
    """When appended records reach the disk.

    * ``group`` (default): records are written and fsync'd together once
      ``group_commits`` commits are buffered or ``group_ms`` milliseconds
      passed since the last sync, and whenever ``World.run`` returns,
      ``World.sync`` is called or the world closes. What was synced is
      acknowledged durable (``World.durable_event_id``).
    * ``always``: every commit and every admission is fsync'd before the call
      that made it returns.
    * ``none``: records are written to the OS in groups and never fsync'd;
      they survive a process crash, not a power loss.
    """

    mode: str = "group"
    group_commits: int = 1000
    group_ms: float = 20.0

    def __post_init__(self) -> None:
        if self.mode not in ("group", "always", "none"):
            raise ValueError(f"durability mode must be 'group', 'always' or 'none', got {self.mode!r}")
        if self.group_commits < 1 or self.group_ms < 0:
            raise ValueError("group_commits must be >= 1 and group_ms >= 0")

    @classmethod
    def of(cls, value: "Durability | str") -> "Durability":
        return value if isinstance(value, Durability) else cls(mode=value)


@dataclass(frozen=True, slots=True)
class Position:
    """A point between records: the next record's index, where it goes, the chain so far."""

    index: int
    segment: int  # first record index of the segment
    offset: int
    chain: bytes

    def to_wire(self) -> list[object]:
        return [self.index, self.segment, self.offset, self.chain]

    @classmethod
    def from_wire(cls, w: list[object]) -> "Position":
        index, segment, offset, chain = w
        if not (type(index) is int and type(segment) is int and type(offset) is int
                and type(chain) is bytes and len(chain) == 32
                and index >= 0 and segment >= 0 and offset >= SEG_HEADER_SIZE):
            raise ValueError("malformed journal position")
        return cls(index, segment, offset, chain)


@dataclass(slots=True)
class Entry:
    """One record read back, with where it lies (not changed once made)."""

    index: int
    segment: str
    offset: int
    payload: bytes
    chain: bytes

    def record(self) -> Record:
        try:
            return decode_record(self.payload, f"segment {self.segment} offset {self.offset}")
        except NonCanonicalError as exc:
            raise JournalCorruptError(self.segment, self.offset, f"record does not decode: {exc}") from None

    @property
    def end(self) -> int:
        return self.offset + FRAME_OVERHEAD + len(self.payload)


def _header_bytes(first_index: int, prev_chain: bytes, era: bytes) -> bytes:
    head = _SEG_HEAD.pack(MAGIC, first_index, prev_chain, era)
    return head + blake3.blake3(head).digest()[:8]


def _read_header(path: Path, data: bytes) -> tuple[int, bytes, bytes]:
    name = path.name
    if len(data) < SEG_HEADER_SIZE:
        raise JournalCorruptError(name, 0, f"segment header is {len(data)} bytes, expected {SEG_HEADER_SIZE}")
    head = data[:_SEG_HEAD.size]
    if blake3.blake3(head).digest()[:8] != data[_SEG_HEAD.size:SEG_HEADER_SIZE]:
        raise JournalCorruptError(name, 0, "segment header fails its check")
    magic, first, prev, era = _SEG_HEAD.unpack(head)
    if magic != MAGIC:
        raise JournalCorruptError(name, 0, "not an aos journal segment")
    if _seg_name(first) != name:
        raise JournalCorruptError(name, 0, f"header says first record {first}, file name disagrees")
    return first, prev, era


class _Scan:
    """Walks the frames of one segment's bytes, verifying length checks and the chain."""

    def __init__(self, name: str, data: bytes, index: int, offset: int, chain: bytes, is_last: bool) -> None:
        self.name = name
        self.data = data
        self.index = index
        self.offset = offset
        self.chain = chain
        self.is_last = is_last
        self.torn_at: int | None = None

    def __iter__(self) -> Iterator[Entry]:
        name = self.name
        for index, found in self.batches():
            for at, payload, link in found:
                yield Entry(index, name, at, payload, link)
                index += 1

    def batches(self) -> Iterator[tuple[int, list[tuple[int, bytes, bytes]]]]:
        """``(index of the first, [(offset, payload, chain), ...])`` batches of good frames."""
        data, name = self.data, self.name
        size = len(data)
        while self.offset < size:
            # frames.scan checks lengths and chain links in C, a batch at a time
            found, stop, off, chain = frames.scan(data, self.offset, self.chain, _SCAN_BATCH)
            index = self.index
            self.index, self.offset, self.chain = index + len(found), off, chain
            if found:
                yield index, found
            if stop == frames.SCAN_END:
                continue
            if stop == frames.SCAN_SHORT_HEAD:
                self._tail(off, "frame header cut short")
            elif stop == frames.SCAN_BAD_LENGTH:
                if self.is_last and not any(data[off:]):
                    self.torn_at = off
                    return
                raise JournalCorruptError(name, off, "frame length fails its check")
            elif stop == frames.SCAN_PAST_END:
                n = _FRAME.unpack_from(data, off)[0]
                self._tail(off, f"frame of {n} bytes runs past the end of the segment")
            else:
                raise JournalCorruptError(name, off, "record fails its hash chain check")
            return

    def _tail(self, off: int, reason: str) -> None:
        if not self.is_last:
            raise JournalCorruptError(self.name, off, f"{reason} in a segment that is not the last")
        self.torn_at = off


class JournalReader:
    """Reads the records of a journal directory in order, verifying every check.

    Reading never changes files: a torn tail just ends the iteration
    (``torn_at`` then tells where).
    """

    def __init__(self, directory: str | os.PathLike[str], era: bytes | None = None) -> None:
        self.directory = Path(directory)
        self.era = era
        self.torn_at: tuple[str, int] | None = None
        self.end: Position | None = None

    def segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.suffix == ".seg")

    def entries(self, start: Position | None = None) -> Iterator[Entry]:
        """Entries from ``start`` (or the beginning) to the end of the journal."""
        for name, index, found in self.batches(start):
            for at, payload, link in found:
                yield Entry(index, name, at, payload, link)
                index += 1

    def batches(self, start: Position | None = None) -> Iterator[tuple[str, int, list[tuple[int, bytes, bytes]]]]:
        """The journal from ``start`` as ``(segment, index of the first, [(offset, payload, chain), ...])``."""
        segs = self.segments()
        if not segs:
            self.end = Position(0, 0, SEG_HEADER_SIZE, GENESIS)
            return
        index, chain = (0, GENESIS) if start is None else (start.index, start.chain)
        begun = start is None
        for i, path in enumerate(segs):
            data = path.read_bytes()
            first, prev, era = _read_header(path, data)
            if self.era is not None and era != self.era:
                raise JournalCorruptError(path.name, 0, "segment was written under another era")
            if not begun:
                if first != start.segment:  # type: ignore[union-attr]
                    continue
                begun = True
                offset = start.offset  # type: ignore[union-attr]
                if offset > len(data):
                    # name where the segment ends: that is where it was cut short
                    raise JournalCorruptError(path.name, len(data), f"segment ends before offset {offset}, "
                                              "where a snapshot says the journal goes on")
            else:
                if first != index:
                    raise JournalCorruptError(path.name, 0, f"segment starts at record {first}, expected {index}")
                if prev != chain:
                    raise JournalCorruptError(path.name, 0, "segment does not continue the previous segment's chain")
                offset = SEG_HEADER_SIZE
            scan = _Scan(path.name, data, index, offset, chain, i == len(segs) - 1)
            for first_index, found in scan.batches():
                yield path.name, first_index, found
            index, chain = scan.index, scan.chain
            if scan.torn_at is not None:
                self.torn_at = (path.name, scan.torn_at)
            self.end = Position(index, first, scan.torn_at if scan.torn_at is not None else len(data), chain)
        if not begun:
            raise JournalCorruptError(_seg_name(start.segment), start.offset,  # type: ignore[union-attr]
                                      "the segment a snapshot points into is missing")

    def records(self, start: Position | None = None) -> Iterator[tuple[Entry, Record]]:
        """Typed records, with their entries."""
        for entry in self.entries(start):
            yield entry, entry.record()

    def follow(self, start: Position | None = None, poll: float = 0.2,
               stop: Callable[[], bool] = lambda: False) -> Iterator[Entry]:
        """Entries from ``start`` on, then each new one as a writer appends it, until ``stop()``.

        Every ``poll`` seconds it reads the bytes appended after the last whole
        frame (verifying lengths and the chain as :meth:`entries` does), and it
        moves on to the next segment once the writer has rotated to it (a
        writer flushes a segment completely before creating the next one). A
        frame still being written is read on a later poll. ``stop`` is checked
        between polls; ``start`` defaults to the beginning of the journal.
        """
        pos = start if start is not None else Position(0, 0, SEG_HEADER_SIZE, GENESIS)
        index, chain, seg, offset = pos.index, pos.chain, pos.segment, pos.offset
        need_header = start is None  # a given start comes from a pass that checked its segment
        while True:
            path = self.directory / _seg_name(seg)
            newer = [p for p in self.segments() if p.name > path.name]  # listed before reading: see above
            data = b""
            try:
                with open(path, "rb") as f:
                    if need_header:
                        head = f.read(SEG_HEADER_SIZE)
                        if len(head) == SEG_HEADER_SIZE:  # segments are created atomically
                            first, prev, era = _read_header(path, head)
                            if self.era is not None and era != self.era:
                                raise JournalCorruptError(path.name, 0, "segment was written under another era")
                            if first != index or prev != chain:
                                raise JournalCorruptError(path.name, 0, "segment does not continue the chain")
                            need_header = False
                    if not need_header:
                        f.seek(offset)
                        data = f.read()
            except FileNotFoundError:
                pass
            if data:
                scan = _Scan(path.name, data, index, 0, chain, not newer)
                try:
                    for e in scan:
                        yield Entry(e.index, e.segment, offset + e.offset, e.payload, e.chain)
                except JournalCorruptError as exc:
                    raise JournalCorruptError(exc.segment, offset + exc.offset, exc.reason) from None
                index, chain, offset = scan.index, scan.chain, offset + scan.offset
            elif newer and not need_header:  # this segment is read to its end and the writer has moved on
                seg, offset, need_header = int(newer[0].stem), SEG_HEADER_SIZE, True
                continue
            if stop():
                return
            if not data or scan.torn_at is not None:
                time.sleep(poll)


class Journal:
    """The append side of a world's journal (one writer at a time)."""

    def __init__(self, directory: Path, era: bytes, durability: Durability,
                 end: Position, segment_bytes: int) -> None:
        self.directory = directory
        self.era = era
        self.durability = durability
        self.segment_bytes = segment_bytes
        self.index = end.index
        self.chain = end.chain
        self._seg_first = end.segment
        self._offset = end.offset  # where the next frame starts, counting buffered bytes
        self._buf = bytearray()
        self._hasher = blake3.blake3()  # the chain's, reused frame after frame (one writer)
        self._pending_commits = 0
        self._last_sync = time.monotonic()
        self.durable_index = end.index
        self._fd = os.open(directory / _seg_name(end.segment), os.O_WRONLY | os.O_APPEND)
        self._closed = False

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: str | os.PathLike[str], era: bytes, durability: Durability | str = "group",
             segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> "Journal":
        """Open for appending: verify the last segment, truncate a torn tail."""
        if len(era) != 32:
            raise ValueError(f"era must be a 32-byte hash, got {len(era)} bytes")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        reader = JournalReader(d, era)
        segs = reader.segments()
        if not segs:
            cls._create_segment(d, 0, GENESIS, era)
            end = Position(0, 0, SEG_HEADER_SIZE, GENESIS)
        else:
            end = cls._recover_last(reader, segs[-1])
        return cls(d, era, Durability.of(durability), end, segment_bytes)

    @staticmethod
    def _recover_last(reader: JournalReader, path: Path) -> Position:
        data = path.read_bytes()
        first, prev, era = _read_header(path, data)
        if reader.era is not None and era != reader.era:
            raise JournalCorruptError(path.name, 0, "segment was written under another era")
        scan = _Scan(path.name, data, first, SEG_HEADER_SIZE, prev, True)
        for _ in scan.batches():  # checks every frame; no Entry objects needed here
            pass
        if scan.torn_at is not None:
            with open(path, "r+b") as f:
                f.truncate(scan.torn_at)
                f.flush()
                os.fsync(f.fileno())
        return Position(scan.index, first, scan.offset, scan.chain)

    @staticmethod
    def _create_segment(d: Path, first_index: int, prev_chain: bytes, era: bytes) -> None:
        write_atomic(d / _seg_name(first_index), _header_bytes(first_index, prev_chain, era))

    # ------------------------------------------------------------ writing
    @property
    def position(self) -> Position:
        """Where the next appended record goes."""
        return Position(self.index, self._seg_first, self._offset, self.chain)

    def append(self, record: Record) -> int:
        """Buffer one record; return its index. It is durable after a sync."""
        return self.append_payload(encode_record(record))

    def append_payload(self, payload: bytes) -> int:
        if self._closed:
            raise ValueError("journal is closed")
        end = self._offset + FRAME_OVERHEAD + len(payload)
        if end > self.segment_bytes and self._offset > SEG_HEADER_SIZE:
            self._rotate()
            end = self._offset + FRAME_OVERHEAD + len(payload)
        self.chain = _append_frame(self._buf, self.chain, payload, self._hasher)  # checks MAX_RECORD
        self._offset = end
        idx = self.index
        self.index = idx + 1
        return idx

    def commit_point(self) -> bool:
        """Mark the end of one commit; write (and sync) as the policy says.

        Returns True when everything appended so far is now durable.
        """
        self._pending_commits += 1
        d = self.durability
        if d.mode == "always":
            self.flush(sync=True)
            return True
        if self._pending_commits >= d.group_commits or (time.monotonic() - self._last_sync) * 1000.0 >= d.group_ms:
            self.flush(sync=d.mode == "group")
            return d.mode == "group"
        return False

    def flush(self, sync: bool = True) -> None:
        """Write buffered records; fsync them when ``sync`` (and the policy is not 'none')."""
        if self._buf:
            view = memoryview(self._buf)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            view.release()
            self._buf.clear()
        if sync and self.durability.mode != "none":
            os.fsync(self._fd)
            self.durable_index = self.index
        self._pending_commits = 0
        self._last_sync = time.monotonic()

    def _rotate(self) -> None:
        self.flush(sync=True)
        os.close(self._fd)
        self._create_segment(self.directory, self.index, self.chain, self.era)
        self._seg_first = self.index
        self._offset = SEG_HEADER_SIZE
        self._fd = os.open(self.directory / _seg_name(self.index), os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush(sync=True)
        finally:
            os.close(self._fd)
            self._closed = True
