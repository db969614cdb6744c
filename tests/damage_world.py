"""A world with several segments, snapshots and pending effects, and ways to damage a copy of it.

Shared by the damage tests (tests/test_world_corruption.py) and the fsck and
salvage tests (tests/test_fsck.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import blake3

import aos
from effects_world import effects_manifest

SEGMENT_BYTES = 3_000
OPTS = {"segment_bytes": SEGMENT_BYTES, "snapshot_every": 40, "effects": "manual", "on_violation": "record"}


@dataclass
class Original:
    path: Path
    early_journal: Path  # the journal directory as it was after the first session
    receipts: list[aos.Receipt]  # signed by the world for effects still pending at the end, never submitted
    hash: str


def build(root: Path) -> Original:
    m = effects_manifest(budget=1_000)
    path = root / "original"
    with aos.World.open(path, m, **OPTS) as w:
        for i in range(40):
            w.submit("test/Pay@1", {"id": f"p{i % 6}", "costs": [1 + i % 3]})
            w.submit("test/Take@1", {"sku": f"s{i % 4}", "qty": 0})
        w.run()
    early = root / "early-journal"
    shutil.copytree(path / "journal", early)
    with aos.World.open(path, m, **OPTS) as w:
        for i in range(40):
            w.submit("test/Pay@1", {"id": f"p{i % 6}", "costs": [2]})
            w.submit("test/Take@1", {"sku": f"s{i % 4}", "qty": 0})
        w.run()
        receipts = [w.receipt(e.intent_hash, "ok", {"paid": True}, e.cost) for e in w.pending_effects()]
        h = w.snapshot_hash()
    assert len(segments(path)) >= 4 and len(list((path / "snapshots").iterdir())) >= 2
    return Original(path, early, receipts, h)


def segments(path: Path) -> list[Path]:
    return sorted(p for p in (path / "journal").iterdir() if p.suffix == ".seg")


def listing(path: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``path``: its size and BLAKE3 (to show that nothing changed)."""
    return {str(p.relative_to(path)): (p.stat().st_size, blake3.blake3(p.read_bytes()).hexdigest())
            for p in sorted(path.rglob("*")) if p.is_file()}


def journal_deleted(copy: Path, orig: Original) -> str:
    shutil.rmtree(copy / "journal")
    return "journal"


def cut_below_watermark(copy: Path, orig: Original) -> str:
    last = segments(copy)[-1]
    with open(last, "r+b") as f:
        f.truncate(last.stat().st_size // 2)
    return last.name


def last_segment_deleted(copy: Path, orig: Original) -> str:
    last = segments(copy)[-1]
    last.unlink()
    return last.name


def snapshot_newer_than_journal(copy: Path, orig: Original) -> str:
    """The journal directory (with its own watermark) restored from an older copy; the snapshots are newer."""
    shutil.rmtree(copy / "journal")
    shutil.copytree(orig.early_journal, copy / "journal")
    return sorted((copy / "snapshots").iterdir())[-1].name


def watermark_deleted(copy: Path, orig: Original) -> str:
    (copy / "journal" / "durable").unlink()
    return "durable"


def newest_snapshot_flipped(copy: Path, orig: Original) -> str:
    snap = sorted((copy / "snapshots").iterdir())[-1]
    data = bytearray(snap.read_bytes())
    data[len(data) // 3] ^= 0x01
    snap.write_bytes(bytes(data))
    return snap.name


def early_segment_flipped(copy: Path, orig: Original) -> str:
    seg = segments(copy)[1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x10
    seg.write_bytes(bytes(data))
    return seg.name


REFUSED: dict[str, tuple[Callable[[Path, Original], str], type[aos.AosError]]] = {
    "journal deleted": (journal_deleted, aos.JournalTruncatedError),
    "segment cut below the durable watermark": (cut_below_watermark, aos.JournalTruncatedError),
    "last segment deleted": (last_segment_deleted, aos.JournalTruncatedError),
    "snapshot newer than the journal": (snapshot_newer_than_journal, aos.JournalTruncatedError),
    "watermark deleted": (watermark_deleted, aos.WatermarkCorruptError),
    "newest snapshot flipped": (newest_snapshot_flipped, aos.SnapshotCorruptError),
}

DAMAGES: dict[str, Callable[[Path, Original], str]] = {
    **{name: damage for name, (damage, _error) in REFUSED.items()},
    "early segment flipped": early_segment_flipped,
}


def damaged_copy(tmp: Path, orig: Original, name: str) -> tuple[Path, str]:
    """A copy of the original with damage ``name``; returns it and the file the damage names."""
    copy = tmp / "damaged"
    shutil.copytree(orig.path, copy)
    return copy, DAMAGES[name](copy, orig)
