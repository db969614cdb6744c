"""Damage to a world's files is detected with file and offset, never accepted silently."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

import aos
import aos.journal
from aos.journal import JournalReader
from conftest import make_counter_manifest


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    m = make_counter_manifest()
    path = tmp_path_factory.mktemp("orig") / "w"
    with aos.World.open(path, m, segment_bytes=6_000, snapshot_every=0, snapshot_on_close=False) as w:
        for i in range(120):
            w.submit("test/Add@1", {"id": i % 17, "forward_to": (i * 5) % 11})
        w.run()
        w.snapshot()  # opening then replays only the records after it
        w.submit("test/Add@1", {"id": 1, "forward_to": 2})
        w.run()
        h = w.snapshot_hash()
    assert len(list((path / "journal").iterdir())) >= 3
    return path, h


def test_flipped_byte_anywhere_in_the_journal_is_detected(tmp_path: Path, world: tuple[Path, str]) -> None:
    orig, h = world
    m = make_counter_manifest()
    segs = sorted(p for p in (orig / "journal").iterdir() if p.suffix == ".seg")
    sizes = [(s.name, s.stat().st_size) for s in segs]
    total = sum(n for _s, n in sizes)
    rnd = random.Random(2)
    for trial, pos in enumerate(sorted(rnd.sample(range(total), 40)) + [total - 1, total - 33]):
        seg_name, off = None, pos
        for name, size in sizes:
            if off < size:
                seg_name = name
                break
            off -= size
        assert seg_name is not None
        copy = tmp_path / f"c{trial}"
        shutil.copytree(orig, copy)
        target = copy / "journal" / seg_name
        data = bytearray(target.read_bytes())
        data[off] ^= 0x41
        target.write_bytes(bytes(data))
        errors = []
        for attempt in ("open", "verify"):
            try:
                if attempt == "open":
                    with aos.World.open(copy, m) as w:
                        got = w.snapshot_hash()
                else:
                    got = aos.replay(copy, m).verify()
            except aos.JournalCorruptError as exc:
                assert exc.segment == seg_name, (pos, exc)
                assert 0 <= exc.offset <= off, (pos, exc)
                assert f"segment {seg_name} at offset {exc.offset}" in str(exc)
                errors.append(exc)
            else:
                # a flip must never give a different state without an error
                assert got == h, (pos, attempt)
        assert errors, f"flip at {seg_name}+{off} went undetected"


@pytest.fixture(scope="module")
def unsynced_tail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world whose last steps were written but never synced (durability "none"): what a crash may tear."""
    m = make_counter_manifest()
    path = tmp_path_factory.mktemp("unsynced") / "w"
    with aos.World.open(path, m, segment_bytes=6_000, snapshot_every=0, snapshot_on_close=False) as w:
        for i in range(60):
            w.submit("test/Add@1", {"id": i % 17, "forward_to": (i * 5) % 11})
        w.run()
    with aos.World.open(path, m, durability="none", segment_bytes=6_000, snapshot_every=0,
                        snapshot_on_close=False) as w:
        w.submit("test/Add@1", {"id": 3, "forward_to": 4})
        w.run()
    return path


def test_torn_tail_at_every_offset_recovers_last_complete_record(tmp_path: Path, unsynced_tail: Path) -> None:
    orig = unsynced_tail
    m = make_counter_manifest()
    entries = list(JournalReader(orig / "journal", m.era).entries())
    last_seg = entries[-1].segment
    tail = [e for e in entries if e.segment == last_seg][-4:]
    size = (orig / "journal" / last_seg).stat().st_size
    for cut in range(tail[0].offset, size):
        copy = tmp_path / "t"
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(orig, copy)
        with open(copy / "journal" / last_seg, "r+b") as f:
            f.truncate(cut)
        complete = [e for e in entries if e.segment != last_seg or e.end <= cut]
        with aos.World.open(copy, m, snapshot_on_close=False):
            pass
        got = list(JournalReader(copy / "journal", m.era).entries())
        # the world re-completes a step torn after its StepScheduled, so it may add records,
        # but everything complete before the cut is kept exactly
        assert [e.payload for e in got[:len(complete)]] == [e.payload for e in complete], cut
        assert len(got) >= len(complete)


# ---------------------------------------------------- a journal that ends before its evidence
@pytest.fixture(scope="module")
def damage_original(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from damage_world import build

    return build(tmp_path_factory.mktemp("damage"))


@pytest.mark.parametrize("name", ["journal deleted", "segment cut below the durable watermark",
                                  "last segment deleted", "snapshot newer than the journal", "watermark deleted",
                                  "newest snapshot flipped"])
def test_a_journal_shorter_than_its_evidence_is_refused_and_nothing_is_deleted(
        tmp_path: Path, damage_original: Any, name: str) -> None:
    from damage_world import REFUSED, damaged_copy, listing
    from effects_world import effects_manifest

    copy, named = damaged_copy(tmp_path, damage_original, name)
    before = listing(copy)
    error = REFUSED[name][1]
    for attempt in range(2):  # refused again: the first refusal changed nothing
        with pytest.raises(error) as ei:
            aos.World.open(copy, effects_manifest(budget=1_000), effects="manual")
        assert listing(copy) == before, attempt
    exc = ei.value
    text = str(exc)
    assert named in text, text
    assert f"aos fsck {copy}" in text and f"aos salvage {copy} --to NEW" in text, text
    if isinstance(exc, aos.JournalTruncatedError):
        assert exc.expected is None or exc.records < exc.expected, text
        with pytest.raises(aos.JournalTruncatedError):  # a full replay does not pass it off as shorter either
            aos.replay(copy, effects_manifest(budget=1_000)).verify()
        assert listing(copy) == before
    if not isinstance(exc, aos.SnapshotCorruptError):
        with pytest.raises(aos.JournalCorruptError):  # one base class for every kind of journal damage
            aos.World.open(copy, effects_manifest(budget=1_000), effects="manual")


def test_cut_at_a_frame_boundary_below_the_watermark_is_refused(tmp_path: Path, unsynced_tail: Path) -> None:
    """A cut exactly between two acknowledged records looks like a clean end; the watermark tells."""
    m = make_counter_manifest()
    entries = list(JournalReader(unsynced_tail / "journal", m.era).entries())
    mark = aos.journal.Watermark.read(unsynced_tail / "journal")
    assert mark is not None
    acked = [e for e in entries if e.index < mark[0].index]
    victim = acked[-3]
    copy = tmp_path / "w"
    shutil.copytree(unsynced_tail, copy)
    for seg in sorted((copy / "journal").glob("*.seg")):
        if seg.name > victim.segment:
            seg.unlink()
    with open(copy / "journal" / victim.segment, "r+b") as f:
        f.truncate(victim.end)
    with pytest.raises(aos.JournalTruncatedError) as ei:
        aos.World.open(copy, m)
    assert (ei.value.segment, ei.value.offset) == (victim.segment, victim.end)
    assert (ei.value.records, ei.value.expected) == (victim.index + 1, mark[0].index)
    assert (copy / "journal" / victim.segment).stat().st_size == victim.end


def test_one_damaged_watermark_slot_falls_back_to_the_other(tmp_path: Path, unsynced_tail: Path) -> None:
    m = make_counter_manifest()
    for slots, opens in (((0,), True), ((1,), True), ((0, 1), False)):
        copy = tmp_path / f"w{len(slots)}{slots[0]}"
        shutil.copytree(unsynced_tail, copy)
        mark = copy / "journal" / "durable"
        data = bytearray(mark.read_bytes())
        for slot in slots:
            data[slot * 512 + 20] ^= 0xFF
        mark.write_bytes(bytes(data))
        if opens:
            with aos.World.open(copy, m, snapshot_on_close=False):
                pass
        else:
            with pytest.raises(aos.WatermarkCorruptError) as ei:
                aos.World.open(copy, m)
            assert "journal/durable" in str(ei.value) and "aos fsck" in str(ei.value)


def test_a_world_from_before_the_watermark_opens_and_gets_one(tmp_path: Path, unsynced_tail: Path) -> None:
    from aos import canonical

    m = make_counter_manifest()
    copy = tmp_path / "w"
    shutil.copytree(unsynced_tail, copy)
    meta = canonical.decode((copy / "world.cbor").read_bytes())
    del meta["watermark"]
    (copy / "world.cbor").write_bytes(canonical.encode(meta))
    (copy / "journal" / "durable").unlink()
    with aos.World.open(copy, m) as w:
        w.submit("test/Add@1", {"id": 1})
        w.run()
    assert canonical.decode((copy / "world.cbor").read_bytes())["watermark"] is True
    mark = aos.journal.Watermark.read(copy / "journal")
    assert mark is not None and mark[0].index == len(list(JournalReader(copy / "journal", m.era).entries()))
    # such a world whose journal is then lost is still refused: its snapshot proves the journal
    shutil.rmtree(copy / "journal")
    (copy / "world.cbor").write_bytes(canonical.encode(meta))
    snaps = sorted((copy / "snapshots").iterdir())
    with pytest.raises(aos.JournalTruncatedError) as ei:
        aos.World.open(copy, m)
    assert snaps[-1].name in str(ei.value)
    assert sorted((copy / "snapshots").iterdir()) == snaps and not (copy / "journal").exists()


def test_an_interrupted_creation_with_its_empty_journal_is_created_again(tmp_path: Path) -> None:
    m = make_counter_manifest()
    first = tmp_path / "first"
    with aos.World.open(first, m):
        pass
    path = tmp_path / "w"
    path.mkdir()
    shutil.copy(first / "secret.key", path / "secret.key")
    shutil.copytree(first / "journal", path / "journal")  # world.cbor, written last, never came
    for seg in (path / "journal").glob("*.seg"):
        assert seg.stat().st_size == 88
    with aos.World.open(path, m) as w:
        w.submit("test/Add@1", {"id": 1})
        w.run()
        h = w.snapshot_hash()
    assert aos.replay(path, m).verify() == h
    # a journal with records is never taken for such a leftover
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(path / "journal", other / "journal")
    with pytest.raises(aos.StorageError, match="not an aos world"):
        aos.World.open(other, m)
