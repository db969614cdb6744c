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

* ``durable``: the durable watermark, the last position a sync made durable
  (:class:`Watermark`).

Recovery: a frame cut short at the end of the last segment (or a zero-filled
end) past the durable watermark is a *torn tail* and is truncated away when
a world is opened for writing. A journal that ends before the watermark
raises :class:`JournalTruncatedError`; any other failing check raises
:class:`JournalCorruptError` naming the segment and the offset of the bad
frame; nothing is skipped.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import blake3

from aos._core import frames
from aos._core.encoder import record_payload
from aos.errors import JournalCorruptError, JournalTruncatedError, NonCanonicalError, WatermarkCorruptError
from aos.files import write_atomic
from aos.records import Record, decode_record, encode_record

__all__ = ["Journal", "JournalReader", "Entry", "Position", "Durability", "Watermark", "GENESIS",
           "WATERMARK_FILE", "segment_name"]

MAGIC = b"AOSJRNL1"
_SEG_HEAD = struct.Struct("<8sQ32s32s")
SEG_HEADER_SIZE = _SEG_HEAD.size + 8  # 88
_FRAME = struct.Struct("<II")
FRAME_OVERHEAD = _FRAME.size + 32
MAX_RECORD = 1 << 30
GENESIS = bytes(32)
DEFAULT_SEGMENT_BYTES = 32 << 20
_SCAN_BATCH = 4096  # frames checked per call into the C scanner
_AHEAD_BYTES = 256 * 1024  # a segment with more frame bytes to read has its chain checked a batch ahead


def _seg_name(first_index: int) -> str:
    return f"{first_index:020d}.seg"


segment_name = _seg_name


def _records(n: int) -> str:
    return f"{n} record" if n == 1 else f"{n} records"


def _world_of(directory: Path) -> Path | None:
    """The world directory of a journal directory (``<world>/journal``), for error messages."""
    return directory.parent if directory.name == "journal" else None


def _own(exc: JournalCorruptError, directory: Path) -> None:
    if exc.world is None:
        exc.world = _world_of(directory)


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


WATERMARK_FILE = "durable"
_MARK_MAGIC = b"AOSDURB1"
_MARK = struct.Struct("<8sQQQ32s")
_MARK_SLOT = 512  # one slot per disk sector: a torn write of one slot leaves the other whole
_MARK_SIZE = 2 * _MARK_SLOT


def _mark_bytes(pos: Position) -> bytes:
    body = _MARK.pack(_MARK_MAGIC, pos.index, pos.segment, pos.offset, pos.chain)
    return (body + blake3.blake3(body).digest()[:8]).ljust(_MARK_SLOT, b"\0")


def _mark_slot(data: bytes) -> Position | None:
    body = data[:_MARK.size]
    if data[_MARK.size:_MARK.size + 8] != blake3.blake3(body).digest()[:8] or any(data[_MARK.size + 8:]):
        return None
    magic, index, segment, offset, chain = _MARK.unpack(body)
    if magic != _MARK_MAGIC or offset < SEG_HEADER_SIZE or segment > index:
        return None
    return Position(index, segment, offset, chain)


class Watermark:
    """The durable watermark: the last journal position a sync made durable (``journal/durable``).

    It is what proves how long the journal was: opening refuses a journal
    that ends before it (:class:`JournalTruncatedError`), so a torn tail is
    only ever the part no sync acknowledged. The file holds two 512-byte
    slots, each ``magic | record index | segment | offset | chain hash |
    8-byte BLAKE3 check``; an update overwrites the older slot in place (one
    ``pwrite``, no fsync of its own), so a torn or lost update leaves the
    other slot, an older and still true position. Reading takes the valid
    slot with the higher index. It is written after the journal's fsync,
    so it never claims more than the disk holds; after a power loss it may
    claim less (then opening checks less), never more. It is fsync'd when
    the journal closes.
    """

    __slots__ = ("path", "position", "_fd", "_slot", "_dirty")

    def __init__(self, path: Path, position: Position, slot: int) -> None:
        self.path = path
        self.position = position
        self._slot = slot  # the slot holding ``position``
        self._fd = os.open(path, os.O_RDWR)
        self._dirty = False

    @staticmethod
    def read(directory: Path) -> tuple[Position, int] | None:
        """``(position, slot)`` of ``directory``'s watermark; None when there is none."""
        path = directory / WATERMARK_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WatermarkCorruptError(f"cannot be read: {exc}", _world_of(directory)) from None
        if len(data) != _MARK_SIZE:
            raise WatermarkCorruptError(f"is {len(data)} bytes, expected {_MARK_SIZE}", _world_of(directory))
        slots = [_mark_slot(data[:_MARK_SLOT]), _mark_slot(data[_MARK_SLOT:])]
        good = [(pos.index, i, pos) for i, pos in enumerate(slots) if pos is not None]
        if not good:
            raise WatermarkCorruptError("both of its slots fail their checks", _world_of(directory))
        _index, slot, pos = max(good)
        return pos, slot

    @staticmethod
    def whole_slots(directory: Path) -> int:
        """How many of the two slots pass their check (0 when the file is missing or has the wrong size)."""
        try:
            data = (directory / WATERMARK_FILE).read_bytes()
        except OSError:
            return 0
        if len(data) != _MARK_SIZE:
            return 0
        return sum(_mark_slot(data[i * _MARK_SLOT:(i + 1) * _MARK_SLOT]) is not None for i in (0, 1))

    @classmethod
    def create(cls, directory: Path, position: Position) -> "Watermark":
        write_atomic(directory / WATERMARK_FILE, _mark_bytes(position) * 2)
        return cls(directory / WATERMARK_FILE, position, 0)

    @classmethod
    def open(cls, directory: Path) -> "Watermark | None":
        found = cls.read(directory)
        return None if found is None else cls(directory / WATERMARK_FILE, found[0], found[1])

    def advance(self, position: Position) -> None:
        """Record ``position`` (already fsync'd in the journal) when it lies past the current one."""
        if position.index <= self.position.index:
            return
        slot = 1 - self._slot
        os.pwrite(self._fd, _mark_bytes(position), slot * _MARK_SLOT)
        self._slot = slot
        self.position = position
        self._dirty = True

    def close(self) -> None:
        try:
            if self._dirty:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)


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
        """``(index of the first, [(offset, payload, chain), ...])`` batches of good frames.

        In a large segment the chain of the next batch is checked on another
        thread (in C, without the GIL) while the caller uses this one; a batch
        is handed out only once it is checked, so the caller sees the same
        frames and the same error, at the same point, as from a serial scan.
        """
        if len(self.data) - self.offset < _AHEAD_BYTES:
            yield from self._batches(None)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="aos-journal-check") as ahead:
            yield from self._batches(ahead)

    def _batches(self, ahead: ThreadPoolExecutor | None) -> Iterator[tuple[int, list[tuple[int, bytes, bytes]]]]:
        data, name = self.data, self.name
        size = len(data)
        checking = None if ahead is None else ahead.submit(frames.chain_check, data, self.offset, self.chain,
                                                             _SCAN_BATCH)
        while self.offset < size:
            if checking is None:
                # frames.scan checks lengths and chain links in C, a batch at a time
                found, stop, off, chain = frames.scan(data, self.offset, self.chain, _SCAN_BATCH)
            else:
                count, stop, off, chain = checking.result()
                checking = None
                if ahead is not None and stop == frames.SCAN_END and off < size:
                    checking = ahead.submit(frames.chain_check, data, off, chain, _SCAN_BATCH)
                found = frames.scan(data, self.offset, self.chain, count, True)[0]
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

    def __init__(self, directory: str | os.PathLike[str], era: bytes | Sequence[bytes] | None = None) -> None:
        """``era``: the era every segment must name, or a world's chain of eras (oldest first: segments
        name eras of the chain, in its order), or None (not checked)."""
        self.directory = Path(directory)
        self.era = era
        self._chain: tuple[bytes, ...] | None = (None if era is None else (era,) if isinstance(era, bytes)
                                                 else tuple(era))
        self._at_era = 0  # the chain position of the last segment read
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
        try:
            yield from self._batches(start)
        except JournalCorruptError as exc:
            _own(exc, self.directory)
            raise

    def _batches(self, start: Position | None) -> Iterator[tuple[str, int, list[tuple[int, bytes, bytes]]]]:
        if start is None:  # a compacted journal (``aos compact``) is read from its compaction base
            start = self.compacted_start()
        segs = self.segments()
        if not segs:
            self.end = Position(0, 0, SEG_HEADER_SIZE, GENESIS)
            if start is not None and start.index > 0:
                raise JournalCorruptError(_seg_name(start.segment), start.offset,
                                          "the journal has no segments, but a snapshot points into one")
            return
        index, chain = (0, GENESIS) if start is None else (start.index, start.chain)
        begun = start is None
        self._at_era = 0
        for i, path in enumerate(segs):
            data = path.read_bytes()
            first, prev, era = _read_header(path, data)
            self.check_era(path.name, era)
            if not begun:
                if first != start.segment:  # type: ignore[union-attr]
                    continue
                begun = True
                offset = start.offset  # type: ignore[union-attr]
                if offset > len(data):
                    # name where the segment ends: that is where it was cut short
                    raise JournalCorruptError(path.name, len(data), f"segment ends before offset {offset}, "
                                              "where a snapshot says the journal goes on")
                at = prev if offset == SEG_HEADER_SIZE else data[offset - 32:offset]
                if at != chain:
                    raise JournalCorruptError(path.name, offset, "the journal's chain hash here differs from "
                                              "the one a snapshot recorded for this position")
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

    def compacted_start(self) -> Position | None:
        """Where the journal now begins when its world was compacted (``compacted.cbor`` beside this
        directory: records before it were removed), else None (docs/storage.md, "Compaction")."""
        if not (self.directory.parent / "compacted.cbor").is_file():
            return None
        from aos.retention import read_compaction

        c = read_compaction(self.directory.parent)
        return None if c is None else c.position

    def check_era(self, name: str, era: bytes) -> None:
        """Refuse a segment whose era is not in the chain, or comes before an era already read."""
        chain = self._chain
        if chain is None:
            return
        if era not in chain:
            raise JournalCorruptError(name, 0, "segment was written under another era")
        at = chain.index(era, self._at_era) if era in chain[self._at_era:] else -1
        if at < 0:
            raise JournalCorruptError(name, 0, "segment names an era that ended before the previous segment's")
        self._at_era = at

    def records(self, start: Position | None = None) -> Iterator[tuple[Entry, Record]]:
        """Typed records, with their entries."""
        try:
            for entry in self.entries(start):
                yield entry, entry.record()
        except JournalCorruptError as exc:
            _own(exc, self.directory)
            raise

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
        try:
            yield from self._follow(start, poll, stop)
        except JournalCorruptError as exc:
            _own(exc, self.directory)
            raise

    def _follow(self, start: Position | None, poll: float, stop: Callable[[], bool]) -> Iterator[Entry]:
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
                            self.check_era(path.name, era)
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


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Write ``parts`` one after the other (one system call when it takes them all)."""
    if len(parts) > 64:  # (the system takes a bounded number of pieces per call)
        parts = [b"".join(parts)]
    total = sum(len(p) for p in parts)
    written = os.writev(fd, parts) if len(parts) > 1 else os.write(fd, parts[0])
    if written < total:
        view = memoryview(b"".join(parts))[written:]
        while view:
            view = view[os.write(fd, view):]


class _Flusher:
    """Group commit off the commit path: writes and fsyncs handed-over batches on its own thread.

    Under the ``group`` policy a commit point that makes a sync due hands the
    buffered frames here and the commit loop goes on; the thread writes them
    to the segment file in order, fsyncs, and only then moves the journal's
    ``durable_index`` and the durable watermark, so nothing is called durable
    before the disk has it. Anything else that touches the file (a
    synchronous flush, a segment rotation, closing) first waits until every
    handed-over batch is written (:meth:`drain`). An I/O error stops the
    thread and is raised, unchanged, by the next call into the journal that
    writes or waits.
    """

    def __init__(self, journal: "Journal") -> None:
        self.journal = journal
        self.cv = threading.Condition()
        self.batches: deque[tuple[bytes, Position]] = deque()
        self.busy = False
        self.error: BaseException | None = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="aos-journal-flush", daemon=True)
        self.thread.start()

    def put(self, data: bytes, end: Position) -> None:
        with self.cv:
            self._raise()
            self.batches.append((data, end))
            self.cv.notify_all()

    def drain(self) -> None:
        """Wait until every handed-over batch is written and synced; raise the thread's I/O error if any."""
        with self.cv:
            while (self.batches or self.busy) and self.error is None:
                self.cv.wait()
            self._raise()

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        j = self.journal
        while True:
            with self.cv:
                while not self.batches and not self.stopping:
                    self.cv.wait()
                if not self.batches:
                    return
                # every batch handed over meanwhile goes in one write and one fsync (group commit: a
                # commit loop that outruns the disk makes fewer, larger syncs, never later ones)
                parts = []
                while self.batches:
                    data, end = self.batches.popleft()
                    parts.append(data)
                self.busy = True
            try:
                _write_all(j._fd, parts)
                os.fsync(j._fd)
                j.durable_index = end.index
                if j._mark is not None:
                    j._mark.advance(end)
            except BaseException as exc:  # kept for the journal's caller: never lost
                with self.cv:
                    self.error = exc
                    self.busy = False
                    self.cv.notify_all()
                return
            with self.cv:
                self.busy = False
                self.cv.notify_all()


class Journal:
    """The append side of a world's journal (one writer at a time)."""

    def __init__(self, directory: Path, era: bytes, durability: Durability,
                 end: Position, segment_bytes: int, mark: Watermark | None,
                 torn: tuple[Path, int] | None = None) -> None:
        self.directory = directory
        self.era = era
        self.durability = durability
        self.segment_bytes = segment_bytes
        self._seg_first = end.segment
        # the current segment's append side (buffer, chain, index, offset, commit points), in C: the
        # commit loops append through it without a Python call
        self.writer = frames.FrameWriter(end.index, end.chain, end.offset, segment_bytes, SEG_HEADER_SIZE,
                                         durability.mode, durability.group_commits, durability.group_ms)
        self.durable_index = end.index
        self._mark = mark  # None until finish_open() starts one (a journal from before the watermark)
        self._opened_at = end.index
        self.torn = torn  # (segment, offset) of a torn tail not yet cut off (see finish_open)
        self._fd = os.open(directory / _seg_name(end.segment), os.O_WRONLY | os.O_APPEND)
        self._closed = False
        self._flusher: _Flusher | None = None  # started at the first group commit (docs/storage.md)

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: str | os.PathLike[str], era: bytes, durability: Durability | str = "group",
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, *, existing: bool = False,
             cut_tail: bool = True) -> "Journal":
        """Open for appending: verify the last segment against the watermark, truncate a torn tail.

        ``existing``: the journal must already be there, with its durable
        watermark (a world's, once created); otherwise a missing journal is
        created, and a journal without a watermark (written before there
        was one) gets one. Raises :class:`JournalTruncatedError` when the
        journal ends before the watermark, before anything is changed.
        With ``cut_tail=False`` nothing is changed yet: a torn tail is cut
        (and a missing watermark started) by :meth:`finish_open`, once the
        caller has checked its own evidence (snapshots); :meth:`abandon`
        gives up instead.
        """
        if len(era) != 32:
            raise ValueError(f"era must be a 32-byte hash, got {len(era)} bytes")
        d = Path(directory)
        try:
            journal = cls._open(d, era, Durability.of(durability), segment_bytes, existing)
        except JournalCorruptError as exc:
            _own(exc, d)
            raise
        if cut_tail:
            journal.finish_open()
        return journal

    @classmethod
    def _open(cls, d: Path, era: bytes, durability: Durability, segment_bytes: int, existing: bool) -> "Journal":
        reader = JournalReader(d, era)
        segs = reader.segments()
        found = Watermark.read(d) if d.is_dir() else None
        if not segs:
            expected = found[0].index if found is not None else None
            if existing or (expected or 0) > 0:
                what = f"{d} holds no journal segments" if d.is_dir() else f"the journal directory {d} is missing"
                proof = (f"the durable watermark says {expected} records were acknowledged" if expected
                         else "the world metadata says the world was created, with a journal")
                raise JournalTruncatedError(_seg_name(0), 0, f"{what}, but {proof}",
                                            "journal/durable" if expected else "world.cbor", 0, expected)
            d.mkdir(parents=True, exist_ok=True)
            cls._create_segment(d, 0, GENESIS, era)
            end = Position(0, 0, SEG_HEADER_SIZE, GENESIS)
            return cls(d, era, durability, end, segment_bytes, Watermark.create(d, end))
        if found is None and existing:
            raise WatermarkCorruptError("is missing: without it nothing shows how much of the journal was "
                                        "acknowledged (the world metadata says the world keeps one)")
        end, torn = cls._scan_last(reader, segs[-1])
        mark = None  # a journal from before the watermark: finish_open() starts one
        if found is not None:
            cls._check_mark(d, segs, end, torn, found[0])
            mark = Watermark(d / WATERMARK_FILE, found[0], found[1])
        return cls(d, era, durability, end, segment_bytes, mark, torn)

    @staticmethod
    def _scan_last(reader: JournalReader, path: Path) -> tuple[Position, tuple[Path, int] | None]:
        """The end of the good frames of the last segment, and where a torn tail starts (if any)."""
        data = path.read_bytes()
        first, prev, era = _read_header(path, data)
        if reader.era is not None and era != reader.era:
            raise JournalCorruptError(path.name, 0, "segment was written under another era")
        scan = _Scan(path.name, data, first, SEG_HEADER_SIZE, prev, True)
        for _ in scan.batches():  # checks every frame; no Entry objects needed here
            pass
        torn = None if scan.torn_at is None else (path, scan.torn_at)
        return Position(scan.index, first, scan.offset, scan.chain), torn

    @staticmethod
    def _check_mark(d: Path, segs: list[Path], end: Position, torn: tuple[Path, int] | None,
                    mark: Position) -> None:
        """Refuse a journal that ends before the watermark or does not hold the record it acknowledged."""
        last = segs[-1]
        if end.index < mark.index:
            where = f"segment {_seg_name(mark.segment)} offset {mark.offset}"
            missing = [] if mark.segment <= end.segment else [
                _seg_name(mark.segment) + " is missing"]
            cause = "; ".join(missing + ([f"{last.name} breaks off at offset {end.offset}"] if torn else []))
            raise JournalTruncatedError(
                last.name, end.offset,
                f"the journal holds {end.index} records, but the durable watermark (journal/durable) says "
                f"{mark.index} were acknowledged, up to {where}: {_records(mark.index - end.index)} acknowledged "
                f"by a sync {'is' if mark.index - end.index == 1 else 'are'} missing"
                + (f" ({cause})" if cause else ""),
                "journal/durable", end.index, mark.index)
        path = d / _seg_name(mark.segment)
        name = path.name
        try:
            with open(path, "rb") as f:
                if mark.offset == SEG_HEADER_SIZE:
                    head = f.read(SEG_HEADER_SIZE)
                    at = _read_header(path, head)[1] if len(head) == SEG_HEADER_SIZE else b""
                else:
                    f.seek(mark.offset - 32)
                    at = f.read(32)
        except FileNotFoundError:
            raise JournalCorruptError(name, 0, "segment is missing, but the durable watermark points into "
                                      "it") from None
        if len(at) != 32:
            raise JournalTruncatedError(name, path.stat().st_size,
                                        f"segment ends before offset {mark.offset}, up to where the durable "
                                        "watermark says the journal was acknowledged",
                                        "journal/durable", end.index, mark.index)
        if at != mark.chain:
            raise JournalCorruptError(name, mark.offset, f"the chain hash before this offset (record "
                                      f"{mark.index}) is not the one the durable watermark acknowledged")

    def finish_open(self) -> None:
        """Truncate the torn tail found when opening (if any), start a missing watermark; before appending.

        A journal without a watermark gets one at its start: no sync of this
        process has confirmed more yet (the next one moves it).
        """
        if self.torn is not None:
            path, at = self.torn
            with open(path, "r+b") as f:
                f.truncate(at)
                f.flush()
                os.fsync(f.fileno())
            self.torn = None
        if self._mark is None:
            self._mark = Watermark.create(self.directory, Position(0, 0, SEG_HEADER_SIZE, GENESIS))

    def abandon(self) -> None:
        """Close after a failed open: nothing is written when nothing was appended."""
        if self._closed:
            return
        if self.writer.buffered or self.index != self._opened_at:  # a replay completed a step: keep it, as close() does
            self.close()
            return
        self._stop_flusher()
        os.close(self._fd)
        self._closed = True
        self.writer.closed = True
        if self._mark is not None:
            self._mark.close()

    @staticmethod
    def _create_segment(d: Path, first_index: int, prev_chain: bytes, era: bytes) -> None:
        write_atomic(d / _seg_name(first_index), _header_bytes(first_index, prev_chain, era))

    # ------------------------------------------------------------ writing
    @property
    def index(self) -> int:
        """The index the next appended record gets."""
        return self.writer.index

    @property
    def chain(self) -> bytes:
        """The chain hash of the last record appended."""
        return self.writer.chain

    @property
    def position(self) -> Position:
        """Where the next appended record goes."""
        w = self.writer
        return Position(w.index, self._seg_first, w.offset, w.chain)

    def append(self, record: Record) -> int:
        """Buffer one record; return its index. It is durable after a sync."""
        idx = self.writer.append_record(record)  # written and framed in C (raises once the journal is closed)
        if idx >= 0:
            return idx
        payload = record_payload(record) if idx == -1 else None  # -1: the segment is full
        return self.append_payload(payload if payload is not None else encode_record(record))

    def append_payload(self, payload: bytes) -> int:
        if self._closed:
            raise ValueError("journal is closed")
        idx = self.writer.append(payload)  # checks MAX_RECORD
        if idx < 0:  # the segment is full
            self._rotate()
            idx = self.writer.append(payload)
        return idx

    def commit_point(self) -> bool:
        """Mark the end of one commit; write (and sync) as the policy says.

        Returns True when everything appended so far is now durable.
        """
        if self.writer.commit_point():
            return self.flush_due()
        return False

    def flush_due(self) -> bool:
        """Write (and sync) as the policy says at a commit point where a flush is due.

        Returns True when everything appended so far is now durable. Under
        ``group`` the buffered frames go to the background flusher, which
        writes and syncs them while the commit loop goes on (False: durable
        soon, see ``durable_index``).
        """
        mode = self.durability.mode
        if mode == "always":
            self.flush(sync=True)
            return True
        if mode == "none":
            self.flush(sync=False)
            return False
        w = self.writer
        if w.buffered:
            if self._flusher is None:
                self._flusher = _Flusher(self)
            self._flusher.put(w.take(), Position(w.index, self._seg_first, w.offset, w.chain))
        w.flushed(time.monotonic())
        return False

    def flush(self, sync: bool = True, force: bool = False) -> None:
        """Write buffered records; fsync them when ``sync`` and the policy is not 'none' (or ``force``).

        What an fsync made durable is recorded in the durable watermark.
        """
        if self._flusher is not None:
            self._flusher.drain()  # what was handed over goes first, in order
        w = self.writer
        if w.buffered:
            view = memoryview(w.pending_bytes())  # kept in the buffer until all of it is written
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            w.clear()
        if sync and (force or self.durability.mode != "none"):
            os.fsync(self._fd)
            self.durable_index = w.index
            if self._mark is not None and self._mark.position.index != w.index:
                self._mark.advance(Position(w.index, self._seg_first, w.offset, w.chain))
        w.flushed(time.monotonic())

    def drain(self) -> None:
        """Wait until what group commits handed to the background flusher is written and synced."""
        if self._flusher is not None:
            self._flusher.drain()

    def _stop_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None

    def _rotate(self) -> None:
        self.flush(sync=True, force=True)  # a segment is complete on disk before the next one exists
        os.close(self._fd)
        self._create_segment(self.directory, self.index, self.chain, self.era)
        self._seg_first = self.index
        self.writer.new_segment(SEG_HEADER_SIZE)
        self._fd = os.open(self.directory / _seg_name(self.index), os.O_WRONLY | os.O_APPEND)

    def start_era(self, era: bytes) -> None:
        """End the current segment (synced) and continue in a new one whose header names ``era``."""
        if len(era) != 32:
            raise ValueError(f"era must be a 32-byte hash, got {len(era)} bytes")
        self.era = era
        self._rotate()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush(sync=True)
        finally:
            self._stop_flusher()
            os.close(self._fd)
            self._closed = True
            self.writer.closed = True
            if self._mark is not None:
                self._mark.close()
