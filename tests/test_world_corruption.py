"""Damage to a world's files is detected with file and offset, never accepted silently."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

import aos
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
