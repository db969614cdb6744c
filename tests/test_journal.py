"""The journal (aos.journal): framing, hash chain, segments, torn tails, corruption."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path

import blake3
import pytest

from aos import canonical
from aos._core import frames
from aos.errors import JournalCorruptError
from aos.journal import GENESIS, Durability, Journal, JournalReader, Position, Watermark
from aos.records import (
    Emit,
    EventAdmitted,
    Intent,
    StepCommitted,
    StepFailed,
    StepScheduled,
    decode_record,
    encode_record,
)

ERA = blake3.blake3(b"test era").digest()
HEADER = 88  # magic, first index, previous chain, era, 8-byte check
OVERHEAD = 8 + 32  # u32 length, u32 CRC-32 of the length, ..., 32-byte chain


def make_records(n: int, seed: int = 0) -> list:
    """``n`` records of several kinds and sizes, like a world writes them."""
    rnd = random.Random(seed)
    out: list = []
    event_id = 0
    seq = 0
    while len(out) < n:
        value = canonical.encode({"key": f"k{rnd.randrange(20)}", "n": rnd.randrange(-1000, 1000),
                                  "pad": "x" * rnd.randrange(0, 120)})
        out.append(EventAdmitted(seq=seq, schema="demo.Add", value=value))
        event_id += 1
        out.append(StepScheduled(event_id=event_id, reducer="counter", key=f"k{rnd.randrange(20)}", input=seq))
        seq += 1
        roll = rnd.random()
        if roll < 0.15:
            out.append(StepFailed(event_id=event_id, reducer="test/R@1", key=rnd.randrange(9),
                                  error="ValueError", message="bad input " * rnd.randrange(3)))
        elif roll < 0.3:
            out.append(StepCommitted(
                event_id=event_id, state_hash=canonical.digest(bytes([event_id % 256])),
                emits=(Emit("demo.Done", canonical.encode({"id": event_id})),),
                effects=(Intent("http.post", canonical.encode({"u": "x" * rnd.randrange(50)}), "net",
                                f"idem-{event_id}", rnd.randrange(10), canonical.digest(b"i")),)))
        else:
            out.append(StepCommitted(event_id=event_id, state_hash=canonical.digest(str(event_id).encode())
                                     if roll < 0.9 else None))
    return out[:n]


def write_journal(d: Path, records: list, segment_bytes: int = 4096, durability: str = "group") -> None:
    j = Journal.open(d, ERA, durability, segment_bytes)
    for r in records:
        j.append(r)
        j.commit_point()
    j.close()


def read_all(d: Path) -> list:
    return [rec for _, rec in JournalReader(d, ERA).records()]


def segs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix == ".seg")


def layout(d: Path) -> list[tuple[str, int, int, int]]:
    """(segment name, frame offset, payload length, frame end) of each record, parsed here."""
    out = []
    for p in segs(d):
        data = p.read_bytes()
        off = HEADER
        while off < len(data):
            n, check = struct.unpack_from("<II", data, off)
            assert check == zlib.crc32(n.to_bytes(4, "little"))
            out.append((p.name, off, n, off + OVERHEAD + n))
            off += OVERHEAD + n
        assert off == len(data)
    return out


# ------------------------------------------------------------------ round trip
def test_round_trip(tmp_path):
    d = tmp_path / "journal"
    records = make_records(300)
    j = Journal.open(d, ERA)
    indices = [j.append(r) for r in records]
    assert indices == list(range(300))
    assert j.index == 300
    j.close()

    entries = list(JournalReader(d, ERA).records())
    assert [rec for _, rec in entries] == records
    assert [type(rec) for _, rec in entries] == [type(r) for r in records]
    assert [e.index for e, _ in entries] == list(range(300))
    # the chain is BLAKE3(previous chain || payload), from GENESIS
    chain = GENESIS
    for entry, rec in entries:
        chain = blake3.blake3(chain + entry.payload).digest()
        assert entry.chain == chain
        assert decode_record(entry.payload) == rec
    assert len(segs(d)) == 1


def test_frame_layout_on_disk(tmp_path):
    d = tmp_path / "journal"
    records = make_records(5)
    write_journal(d, records)
    (seg,) = segs(d)
    data = seg.read_bytes()
    assert seg.name == f"{0:020d}.seg"
    assert data[:8] == b"AOSJRNL1"
    assert struct.unpack_from("<Q", data, 8)[0] == 0
    assert data[16:48] == GENESIS and data[48:80] == ERA
    assert data[80:88] == blake3.blake3(data[:80]).digest()[:8]
    off, chain = HEADER, GENESIS
    for r in records:
        payload = encode_record(r)
        n, check = struct.unpack_from("<II", data, off)
        assert n == len(payload) and check == zlib.crc32(n.to_bytes(4, "little"))
        assert data[off + 8:off + 8 + n] == payload
        chain = blake3.blake3(chain + payload).digest()
        assert data[off + 8 + n:off + OVERHEAD + n] == chain
        off += OVERHEAD + n
    assert off == len(data)


def test_empty_journal(tmp_path):
    d = tmp_path / "journal"
    assert read_all(d) == []  # no directory
    Journal.open(d, ERA).close()
    assert read_all(d) == []
    assert [p.stat().st_size for p in segs(d)] == [HEADER]
    j = Journal.open(d, ERA)
    assert j.index == 0 and j.chain == GENESIS
    j.close()


# ------------------------------------------------------------------ segments
def test_segment_rotation_and_reopen(tmp_path):
    d = tmp_path / "journal"
    first = make_records(200, seed=1)
    write_journal(d, first, segment_bytes=4096)
    files = segs(d)
    assert len(files) >= 4
    for p in files:
        assert p.stat().st_size <= 4096
    lay = layout(d)
    # each segment is named after its first record's index
    starts = {}
    for i, (name, _, _, _) in enumerate(lay):
        starts.setdefault(name, i)
    assert [p.name for p in files] == [f"{starts[p.name]:020d}.seg" for p in files]

    entries = list(JournalReader(d, ERA).records())
    assert [rec for _, rec in entries] == first
    assert [e.index for e, _ in entries] == list(range(200))
    assert {e.segment for e, _ in entries} == {p.name for p in files}

    # reopen for append: continues index and chain, rotates further
    j = Journal.open(d, ERA, segment_bytes=4096)
    assert j.index == 200 and j.chain == entries[-1][0].chain
    more = make_records(150, seed=2)
    assert [j.append(r) for r in more] == list(range(200, 350))
    j.close()
    assert len(segs(d)) > len(files)
    assert read_all(d) == first + more
    # and once more, with a larger segment size
    j = Journal.open(d, ERA, segment_bytes=1 << 20)
    j.append(more[0])
    j.close()
    back = list(JournalReader(d, ERA).records())
    assert [rec for _, rec in back] == first + more + more[:1]
    assert [e.index for e, _ in back] == list(range(351))


def test_record_larger_than_segment(tmp_path):
    d = tmp_path / "journal"
    big = EventAdmitted(seq=0, schema="big", value=b"\x00" * 10_000)
    small = make_records(3)
    write_journal(d, small + [big] + small, segment_bytes=1024)
    assert read_all(d) == small + [big] + small


def test_wrong_era_refused(tmp_path):
    d = tmp_path / "journal"
    write_journal(d, make_records(10))
    other = blake3.blake3(b"other era").digest()
    with pytest.raises(JournalCorruptError) as ei:
        list(JournalReader(d, other).entries())
    assert ei.value.offset == 0
    with pytest.raises(JournalCorruptError):
        Journal.open(d, other)
    assert len(list(JournalReader(d).entries())) == 10  # era=None: not checked


def test_read_from_position(tmp_path):
    d = tmp_path / "journal"
    records = make_records(120, seed=11)
    j = Journal.open(d, ERA, segment_bytes=4096)
    positions = []
    for r in records:
        positions.append(j.position)
        j.append(r)
    end = j.position
    j.close()
    entries = list(JournalReader(d, ERA).entries())
    assert len({p.segment for p in positions}) >= 3
    for i, e in enumerate(entries):
        assert positions[i].index == i and positions[i].chain == (entries[i - 1].chain if i else GENESIS)
        assert (f"{positions[i].segment:020d}.seg", positions[i].offset) in {(e.segment, e.offset),
                                                                             (entries[i - 1].segment,
                                                                              entries[i - 1].end)}
    for i in list(range(0, 120, 7)) + [119]:
        reader = JournalReader(d, ERA)
        got = list(reader.records(positions[i]))
        assert [rec for _, rec in got] == records[i:]
        assert [e.index for e, _ in got] == list(range(i, 120))
        assert reader.end == end
    reader = JournalReader(d, ERA)
    assert list(reader.records(end)) == []
    reader = JournalReader(d, ERA)
    list(reader.entries())
    assert reader.end == end
    # a position whose chain is wrong does not verify
    bad = Position(positions[5].index, positions[5].segment, positions[5].offset, bytes(32))
    with pytest.raises(JournalCorruptError):
        list(JournalReader(d, ERA).entries(bad))
    gone = Position(0, 10**9, 88, GENESIS)
    with pytest.raises(JournalCorruptError):
        list(JournalReader(d, ERA).entries(gone))


# ------------------------------------------------------------------ durability
@pytest.mark.parametrize("mode", ["group", "always", "none"])
def test_durability_modes_round_trip(tmp_path, mode):
    d = tmp_path / "journal"
    records = make_records(120, seed=3)
    write_journal(d, records, segment_bytes=4096, durability=mode)
    assert read_all(d) == records
    j = Journal.open(d, ERA, Durability(mode), 4096)
    assert j.durability.mode == mode
    j.append(records[0])
    j.close()
    assert read_all(d) == records + records[:1]


def test_durability_always_writes_each_commit(tmp_path):
    d = tmp_path / "journal"
    j = Journal.open(d, ERA, "always")
    records = make_records(5)
    for i, r in enumerate(records):
        j.append(r)
        assert j.commit_point() is True
        assert j.durable_index == i + 1
        assert read_all(d) == records[:i + 1]
    j.close()


def test_durability_group_and_none_buffer(tmp_path):
    records = make_records(6)
    for mode in ("group", "none"):
        d = tmp_path / mode
        j = Journal.open(d, ERA, Durability(mode, group_commits=3, group_ms=1e9))
        for r in records[:2]:
            j.append(r)
            assert j.commit_point() is False
        assert read_all(d) == []  # buffered
        j.append(records[2])
        assert j.commit_point() is False  # group: handed to the background flusher, durable soon
        j.drain()
        assert read_all(d) == records[:3]
        assert j.durable_index == (3 if mode == "group" else 0)
        j.append(records[3])
        j.flush(sync=False)
        assert read_all(d) == records[:4]
        j.close()
        assert read_all(d) == records[:4]
        with pytest.raises(ValueError):
            j.append(records[0])


def test_durability_validation():
    with pytest.raises(ValueError):
        Durability("bogus")
    with pytest.raises(ValueError):
        Durability.of("bogus")
    with pytest.raises(ValueError):
        Durability("group", group_commits=0)
    with pytest.raises(ValueError):
        Durability("group", group_ms=-1)
    assert Durability.of("none") == Durability("none")
    d = Durability("always")
    assert Durability.of(d) is d
    assert Durability().mode == "group"


# ------------------------------------------------------------------ torn tails
def _copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def test_torn_tail_every_offset(tmp_path):
    src = tmp_path / "journal"
    records = make_records(40, seed=4)
    # a large last record so the cut also lands in a long payload and its chain
    records.append(EventAdmitted(seq=999, schema="demo.Big", value=canonical.encode("y" * 300)))
    write_journal(src, records[:-2], segment_bytes=2048)
    # the last two are written, never synced (as a crash during a group leaves them): a tear there is torn
    write_journal(src, records[-2:], segment_bytes=2048, durability="none")
    lay = layout(src)
    last = segs(src)[-1]
    assert len(segs(src)) >= 2
    assert lay[-1][0] == lay[-2][0] == last.name  # the last two records share the last segment
    size = last.stat().st_size
    start = lay[-2][1]
    before = sum(1 for name, *_ in lay if name != last.name)
    in_last = [(off, end) for name, off, _, end in lay if name == last.name]
    chains = [e.chain for e in JournalReader(src, ERA).entries()]
    extra = StepFailed(event_id=10_000, reducer="test/R@1", key=None, error="E", message="after the cut")
    work = tmp_path / "work"

    for cut in range(start, size + 1):
        d = _copy(src, work)
        p = d / last.name
        with open(p, "r+b") as f:
            f.truncate(cut)
        complete = [end for _, end in in_last if end <= cut]
        boundary = max(complete) if complete else HEADER
        expected = records[:before + len(complete)]

        reader = JournalReader(d, ERA)
        assert [rec for _, rec in reader.records()] == expected, cut
        assert reader.torn_at == (None if cut == boundary else (last.name, boundary)), cut

        j = Journal.open(d, ERA, segment_bytes=2048)
        assert p.stat().st_size == boundary, cut
        assert j.index == len(expected)
        assert j.position == Position(len(expected), int(last.stem), boundary, chains[len(expected) - 1]), cut
        assert read_all(d) == expected
        j.append(extra)
        j.close()
        reader = JournalReader(d, ERA)
        assert [rec for _, rec in reader.records()] == expected + [extra], cut
        assert reader.torn_at is None


def test_torn_tail_of_a_one_record_segment(tmp_path):
    src = tmp_path / "journal"
    records = make_records(30, seed=12)
    write_journal(src, records[:-1], segment_bytes=2048)
    j = Journal.open(src, ERA, "none", segment_bytes=200)  # the next record starts a new segment, unsynced
    j.append(records[-1])
    j.close()
    last = segs(src)[-1]
    lay = layout(src)
    assert [name for name, *_ in lay].count(last.name) == 1
    work = tmp_path / "work"
    for cut in range(HEADER, last.stat().st_size + 1):
        d = _copy(src, work)
        with open(d / last.name, "r+b") as f:
            f.truncate(cut)
        whole = cut == lay[-1][3]
        expected = records if whole else records[:-1]
        j = Journal.open(d, ERA, segment_bytes=2048)
        assert (d / last.name).stat().st_size == (cut if whole else HEADER), cut
        assert j.index == len(expected)
        j.append(records[0])
        j.close()
        assert read_all(d) == expected + records[:1], cut


def test_zero_filled_tail_is_torn(tmp_path):
    d = tmp_path / "journal"
    records = make_records(60, seed=5)
    write_journal(d, records, segment_bytes=4096)
    last = segs(d)[-1]
    size = last.stat().st_size
    for zeros in (1, 7, 8, 100, 5000):
        w = _copy(d, tmp_path / "w")
        with open(w / last.name, "ab") as f:
            f.write(bytes(zeros))
        reader = JournalReader(w, ERA)
        assert [rec for _, rec in reader.records()] == records
        assert reader.torn_at == (last.name, size)
        j = Journal.open(w, ERA, segment_bytes=4096)
        assert (w / last.name).stat().st_size == size
        j.append(records[0])
        j.close()
        assert read_all(w) == records + records[:1]


def test_zero_filled_non_last_segment_is_corrupt(tmp_path):
    d = tmp_path / "journal"
    write_journal(d, make_records(100, seed=6), segment_bytes=4096)
    first = segs(d)[0]
    size = first.stat().st_size
    with open(first, "ab") as f:
        f.write(bytes(100))
    with pytest.raises(JournalCorruptError) as ei:
        read_all(d)
    assert (ei.value.segment, ei.value.offset) == (first.name, size)


def test_garbage_tail_is_corrupt(tmp_path):
    d = tmp_path / "journal"
    records = make_records(20, seed=7)
    write_journal(d, records)
    last = segs(d)[-1]
    size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x01" * 100)  # a full frame header that fails its check, not zeros
    with pytest.raises(JournalCorruptError) as ei:
        read_all(d)
    assert (ei.value.segment, ei.value.offset) == (last.name, size)
    with pytest.raises(JournalCorruptError):
        Journal.open(d, ERA)
    assert last.stat().st_size == size + 100  # nothing was truncated


# ------------------------------------------------------------------ corruption
def test_non_last_segment_cut_short(tmp_path):
    src = tmp_path / "journal"
    records = make_records(150, seed=8)
    write_journal(src, records, segment_bytes=4096)
    files = segs(src)
    assert len(files) >= 3
    lay = layout(src)
    for victim in files[:-1]:
        frames = [(off, n, end) for name, off, n, end in lay if name == victim.name]
        off, n, end = frames[len(frames) // 2]
        cuts = [off + 3, off + 8, off + 8 + n // 2, end - 1, frames[-1][2] - 1]
        for cut in cuts:
            d = _copy(src, tmp_path / "w")
            with open(d / victim.name, "r+b") as f:
                f.truncate(cut)
            frame = max(o for o, _, _ in frames if o <= cut)
            with pytest.raises(JournalCorruptError) as ei:
                read_all(d)
            assert (ei.value.segment, ei.value.offset) == (victim.name, frame), cut
            # Journal.open only checks the last segment; reading must still fail
            Journal.open(d, ERA, segment_bytes=4096).close()
            with pytest.raises(JournalCorruptError):
                read_all(d)
        for cut in (end, HEADER, 40, 0):  # at a frame boundary, or inside the header
            d = _copy(src, tmp_path / "w")
            with open(d / victim.name, "r+b") as f:
                f.truncate(cut)
            got = []
            with pytest.raises(JournalCorruptError):
                for _, rec in JournalReader(d, ERA).records():
                    got.append(rec)
            assert got == records[:len(got)]


def test_missing_segment_is_corrupt(tmp_path):
    d = tmp_path / "journal"
    write_journal(d, make_records(150, seed=9), segment_bytes=4096)
    files = segs(d)
    files[1].unlink()
    with pytest.raises(JournalCorruptError) as ei:
        read_all(d)
    assert (ei.value.segment, ei.value.offset) == (files[2].name, 0)


def test_segment_header_must_continue_the_chain(tmp_path):
    # a header that passes its own check but does not continue the chain
    d = tmp_path / "journal"
    records = make_records(150, seed=9)
    write_journal(d, records, segment_bytes=4096)
    for k in (1, -1):
        w = _copy(d, tmp_path / "w")
        p = segs(w)[k]
        data = bytearray(p.read_bytes())
        data[16] ^= 0xFF  # previous chain
        data[80:88] = blake3.blake3(bytes(data[:80])).digest()[:8]
        p.write_bytes(bytes(data))
        with pytest.raises(JournalCorruptError) as ei:
            read_all(w)
        assert (ei.value.segment, ei.value.offset) == (p.name, 0)
    # a renumbered segment (name and header agree, chain continues, index does not)
    w = _copy(d, tmp_path / "w")
    p = segs(w)[1]
    data = bytearray(p.read_bytes())
    first = struct.unpack_from("<Q", data, 8)[0]
    struct.pack_into("<Q", data, 8, first + 1)
    data[80:88] = blake3.blake3(bytes(data[:80])).digest()[:8]
    p.unlink()
    renamed = w / f"{first + 1:020d}.seg"
    renamed.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError) as ei:
        read_all(w)
    assert (ei.value.segment, ei.value.offset) == (renamed.name, 0)
    # splicing in a segment from another journal with the same era
    other = tmp_path / "other"
    assert isinstance(records[0], EventAdmitted) and records[0].seq == 0
    write_journal(other, [dataclasses.replace(records[0], seq=1)] + records[1:], segment_bytes=4096)
    w = _copy(d, tmp_path / "w")
    victim = segs(w)[1]
    assert (other / victim.name).exists()
    shutil.copy(other / victim.name, victim)
    with pytest.raises(JournalCorruptError) as ei:
        read_all(w)
    assert (ei.value.segment, ei.value.offset) == (victim.name, 0)


def test_renamed_segment_is_corrupt(tmp_path):
    d = tmp_path / "journal"
    write_journal(d, make_records(150, seed=9), segment_bytes=4096)
    files = segs(d)
    files[-1].rename(d / f"{int(files[-1].stem) + 1:020d}.seg")
    with pytest.raises(JournalCorruptError) as ei:
        read_all(d)
    assert ei.value.offset == 0
    with pytest.raises(JournalCorruptError):
        Journal.open(d, ERA)


def _region_positions(lay, files, rnd) -> list[tuple[str, int]]:
    """Positions in every kind of region: segment headers, frame headers, payloads, chains."""
    out = []
    for p in files:
        out += [(p.name, i) for i in (0, 7, 8, 15, 16, 47, 48, 79, 80, 87)]
    picks = rnd.sample(lay[:-1], 12) + [lay[-1]]
    for name, off, n, end in picks:
        out += [(name, off), (name, off + 3), (name, off + 4), (name, off + 7),
                (name, off + 8), (name, off + 8 + rnd.randrange(n)), (name, off + 8 + n - 1),
                (name, end - 32), (name, end - 1 - rnd.randrange(32)), (name, end - 1)]
    return out


def test_flipped_byte_detected(tmp_path):
    src = tmp_path / "journal"
    records = make_records(160, seed=10)
    write_journal(src, records, segment_bytes=4096)
    files = segs(src)
    assert len(files) >= 4
    lay = layout(src)
    sizes = [(p.name, p.stat().st_size) for p in files]
    total = sum(s for _, s in sizes)
    rnd = random.Random(20240601)

    positions = _region_positions(lay, files, rnd)
    for _ in range(300):
        g = rnd.randrange(total)
        for name, size in sizes:
            if g < size:
                positions.append((name, g))
                break
            g -= size

    work = tmp_path / "w"
    last = files[-1].name
    for name, pos in positions:
        d = _copy(src, work)
        p = d / name
        data = bytearray(p.read_bytes())
        data[pos] ^= (1 << rnd.randrange(8)) if rnd.random() < 0.5 else rnd.randrange(1, 256)
        p.write_bytes(bytes(data))
        frame = 0 if pos < HEADER else max(off for n_, off, _, _ in lay if n_ == name and off <= pos)
        where = (name, pos)

        got = []
        with pytest.raises(JournalCorruptError) as ei:
            for _, rec in JournalReader(d, ERA).records():
                got.append(rec)
        assert (ei.value.segment, ei.value.offset) == (name, frame), where
        assert got == records[:len(got)], where

        if name == last:
            with pytest.raises(JournalCorruptError) as ei:
                Journal.open(d, ERA, segment_bytes=4096)
            assert (ei.value.segment, ei.value.offset) == (name, frame), where
            assert p.read_bytes() == bytes(data), where  # a failed open truncates nothing
        else:
            Journal.open(d, ERA, segment_bytes=4096).close()
            got = []
            with pytest.raises(JournalCorruptError) as ei:
                for _, rec in JournalReader(d, ERA).records():
                    got.append(rec)
            assert (ei.value.segment, ei.value.offset) == (name, frame), where
            assert got == records[:len(got)], where


def test_group_commit_syncs_in_the_background_and_its_io_errors_reach_the_writer(tmp_path, monkeypatch):
    """A due group sync does not stall the commit: the flusher thread writes and fsyncs, then the watermark moves.

    An I/O error on that thread is not lost: the next call that writes or waits raises it.
    """
    import aos.journal as journal_module

    records = make_records(4)
    d = tmp_path / "j"
    j = Journal.open(d, ERA, Durability("group", group_commits=1, group_ms=1e9))
    synced = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd):
        synced.wait(10)  # the flusher holds here until the test has seen the commit point return
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", slow_fsync)
    j.append(records[0])
    assert j.commit_point() is False  # returned while the fsync waits
    assert j.durable_index == 0
    synced.set()
    j.drain()
    assert j.durable_index == 1 and read_all(d) == records[:1]
    assert Watermark.read(d)[0].index == 1

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module.os, "fsync", failing_fsync)
    j.append(records[1])
    j.commit_point()
    with pytest.raises(OSError, match="No space left"):
        j.drain()
    with pytest.raises(OSError, match="No space left"):
        j.flush()
    assert j.durable_index == 1  # nothing more is claimed durable
    monkeypatch.setattr(journal_module.os, "fsync", real_fsync)
    with pytest.raises(OSError):
        j.close()


def test_groups_handed_over_during_a_sync_share_the_next_one(tmp_path, monkeypatch):
    """While the flusher waits on one fsync, the groups handed to it meanwhile go in one write and one fsync."""
    import aos.journal as journal_module

    records = make_records(5)
    d = tmp_path / "j"
    j = Journal.open(d, ERA, Durability("group", group_commits=1, group_ms=1e9))
    release = threading.Event()
    real_fsync = os.fsync
    syncs = []

    def counted_fsync(fd):
        syncs.append(j.durable_index)
        release.wait(10)  # the first sync holds until the later groups are queued
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", counted_fsync)
    j.append(records[0])
    assert j.commit_point() is False
    deadline = time.monotonic() + 10
    while not syncs and time.monotonic() < deadline:  # the flusher is in the first group's fsync
        time.sleep(0.001)
    for rec in records[1:]:
        j.append(rec)
        assert j.commit_point() is False
    release.set()
    j.drain()
    assert j.durable_index == 5 and read_all(d) == records
    assert Watermark.read(d)[0].index == 5
    assert len(syncs) == 2  # the first group alone, then the four queued behind it together
    j.close()


@pytest.mark.parametrize("damage", ["chain", "length", "cut"])
def test_a_large_segment_checked_a_batch_ahead_reads_as_a_serial_scan(tmp_path, monkeypatch, damage):
    """A segment large enough to have its chain checked on another thread gives the same records, then the
    same error at the same offset, as the serial scan, wherever the damage lies (here in its third batch)."""
    import aos.journal as journal_module

    records = make_records(12_000, seed=3)
    d = tmp_path / "j"
    j = Journal.open(d, ERA, Durability("none"))
    for rec in records:
        j.append(rec)
    j.close()
    (seg,) = segs(d)
    data = bytearray(seg.read_bytes())
    assert len(data) > journal_module._AHEAD_BYTES and len(records) > 2 * journal_module._SCAN_BATCH
    at = HEADER
    for _ in range(2 * journal_module._SCAN_BATCH + 100):  # the offset of a frame in the third batch
        at += OVERHEAD + struct.unpack_from("<I", data, at)[0]
    if damage == "chain":
        data[at + 9] ^= 0x01  # a payload byte: its chain link fails
    elif damage == "length":
        data[at] ^= 0x01  # the length fails its check
    else:
        del data[at + 20:]  # the segment ends inside a frame (the last segment: a torn tail)
    seg.write_bytes(bytes(data))

    def read() -> tuple[list, str]:
        got = []
        try:
            for _, rec in JournalReader(d, ERA).records():
                got.append(rec)
        except JournalCorruptError as exc:
            return got, f"{exc.segment}@{exc.offset}"
        return got, "end"

    ahead = read()
    monkeypatch.setattr(journal_module, "_AHEAD_BYTES", 1 << 62)  # the serial scan
    serial = read()
    assert ahead == serial
    assert ahead[0] == records[:2 * journal_module._SCAN_BATCH + 100]
    assert ahead[1] == ("end" if damage == "cut" else f"{seg.name}@{at}")


def test_the_chain_check_agrees_with_the_scan(tmp_path):
    records = make_records(300, seed=5)
    d = tmp_path / "j"
    j = Journal.open(d, ERA, Durability("none"))
    for rec in records:
        j.append(rec)
    j.close()
    data = segs(d)[0].read_bytes()
    start_chain = GENESIS  # the chain before the first record
    for limit in (1, 7, 300, 1000):
        found, stop, off, chain = frames.scan(data, HEADER, start_chain, limit)
        assert frames.chain_check(data, HEADER, start_chain, limit) == (len(found), stop, off, chain)
        assert frames.scan(data, HEADER, start_chain, len(found), True) == (found, frames.SCAN_END, off, chain)


def test_the_frame_writer_frames_as_the_reference_and_keeps_records_until_written() -> None:
    """FrameWriter (the append side in C) writes the frames frames.append writes and keeps them until taken."""
    payloads = [encode_record(r) for r in make_records(2_000, seed=9)]
    w = frames.FrameWriter(0, GENESIS, HEADER, 1 << 40, HEADER, "group", 1000, 1e9)
    expected = bytearray()
    chain = GENESIS
    for i, p in enumerate(payloads):
        assert w.append(p) == i
        chain = frames.append(expected, chain, p)
    assert w.chain == chain and w.index == len(payloads) and w.offset == HEADER + len(expected)
    assert w.buffered == len(expected) > 64 * 1024  # grew past its first capacity
    assert w.pending_bytes() == expected and w.buffered == len(expected)  # a copy: still buffered
    with pytest.raises(ValueError, match="must be written"):
        w.flushed(0.0)
    with pytest.raises(ValueError, match="must be written"):
        w.new_segment(HEADER)
    assert w.take() == expected and w.buffered == 0
    w.append(payloads[0])  # after a take, the buffer (its capacity kept) starts empty again
    one = bytearray()
    frames.append(one, chain, payloads[0])
    assert w.take() == one
