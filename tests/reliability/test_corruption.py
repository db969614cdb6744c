"""Corruption cases: seeded byte flips and truncations of journal segments and snapshot files.

A world with several segments and snapshots is damaged in one copy per case
(flips of 1-3 bytes, a truncation, a zero-filled tail or appended garbage,
in a journal segment or a snapshot file). Opening it must end in one of:

* a clean recovery: the world opens and its state equals the serial oracle
  of the records that survived, and those records are the original's first
  ones, byte for byte (a torn tail was cut, or the damage lies where opening
  does not read — then ``aos.replay(...).verify()``, which reads everything,
  must either report it or return the same state);
* a typed error: ``JournalCorruptError`` naming a segment of the world and
  an offset inside it (the damaged segment itself for flips) — among them
  ``JournalTruncatedError`` for a journal cut below its durable watermark or
  before a snapshot (the original's last records are never synced, so a cut
  there is a torn tail and recovers) —, or ``SnapshotCorruptError`` naming
  the damaged snapshot file.

Never a wrong state (a *silent acceptance*), never an untyped exception.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from reliability_support import (
    Failures,
    journal_payloads,
    random_input,
    record,
    scaled,
    serial_oracle,
    workload_adapters,
    workload_manifest,
)

SHORT_CASES = 50
LONG_CASES = 1_000
SEGMENT_BYTES = 16_000
OPTS: dict[str, Any] = {"aging": 40, "segment_bytes": SEGMENT_BYTES, "on_violation": "record"}


class Original:
    """The undamaged world, its records, and the serial oracle of each prefix (memoized)."""

    def __init__(self, root: Path) -> None:
        self.m = workload_manifest()
        self.path = root / "original"
        rnd = random.Random(77)
        with aos.World.open(self.path, self.m, workers=2, effects="inline", adapters=workload_adapters(),
                            snapshot_every=97, keep_snapshots=3, snapshot_on_close=False, **OPTS) as w:
            for _batch in range(4):
                for _ in range(30):
                    w.submit(*random_input(rnd))
                w.run()
        # the last records are written but never synced (durability "none"): past the durable
        # watermark, where a cut is a torn tail a crash may leave; a cut below it is refused
        with aos.World.open(self.path, self.m, workers=2, effects="inline", adapters=workload_adapters(),
                            durability="none", snapshot_every=0, snapshot_on_close=False, **OPTS) as w:
            for _ in range(6):
                w.submit(*random_input(rnd))
            w.run()
            self.hash = w.snapshot_hash()
        self.records = [r for _e, r in JournalReader(self.path / "journal", self.m.era).records()]
        self.payloads = journal_payloads(self.path, self.m)
        self.segments = sorted(p.name for p in (self.path / "journal").iterdir() if p.suffix == ".seg")
        self.snapshots = sorted(p.name for p in (self.path / "snapshots").iterdir() if p.suffix == ".snap")
        assert len(self.segments) >= 4 and len(self.snapshots) == 3
        self._oracles: dict[int, str] = {len(self.records): self.hash}
        self._scratch = root / "oracles"
        self._scratch.mkdir()

    def oracle_hash(self, n: int) -> str:
        if n not in self._oracles:
            payloads, h = serial_oracle(self.records[:n], self.m, self._scratch / str(n), aging=40,
                                        segment_bytes=SEGMENT_BYTES)
            assert payloads == self.payloads[:n]
            self._oracles[n] = h
        return self._oracles[n]


def damage(copy: Path, orig: Original, rnd: random.Random) -> tuple[str, Path, str]:
    """Damage one file of ``copy``; return (kind, file, description)."""
    roll = rnd.random()
    if roll < 0.7:
        segs = orig.segments
        name = segs[-1] if rnd.random() < 0.5 else rnd.choice(segs)
        target = copy / "journal" / name
    else:
        snaps = orig.snapshots
        name = snaps[-1] if rnd.random() < 0.6 else rnd.choice(snaps)
        target = copy / "snapshots" / name
    data = bytearray(target.read_bytes())
    how = rnd.random()
    if how < 0.55:
        offsets = sorted(rnd.randrange(len(data)) for _ in range(rnd.choice([1, 1, 1, 2, 3])))
        for off in offsets:
            data[off] ^= rnd.randrange(1, 256)
        kind, what = "flip", f"flipped bytes at {offsets}"
    elif how < 0.85:
        cut = rnd.randrange(len(data))
        del data[cut:]
        kind, what = "truncate", f"truncated to {cut} bytes"
    elif how < 0.93:
        n = rnd.randint(1, min(400, len(data)))
        data[-n:] = bytes(n)
        kind, what = "zero_tail", f"last {n} bytes zeroed"
    else:
        extra = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
        data += extra
        kind, what = "append", f"{len(extra)} garbage bytes appended"
    target.write_bytes(bytes(data))
    return kind, target, f"{target.parent.name}/{target.name}: {what}"


def corruption_case(tmp: Path, orig: Original, seed: int, failures: Failures, counts: dict[str, int]) -> None:
    rnd = random.Random(seed)
    copy = tmp / "copy"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(orig.path, copy)
    kind, target, what = damage(copy, orig, rnd)
    tag = f"seed {seed}: {what}"
    m = orig.m
    try:
        with aos.World.open(copy, m, workers=rnd.choice([0, 2]), effects="manual", snapshot_on_close=False,
                            **OPTS) as w:
            h = w.snapshot_hash()
            n = w.stats["records"]
    except aos.JournalCorruptError as exc:
        if isinstance(exc, aos.JournalTruncatedError):
            counts["refused_cut_short"] += 1
        seg = copy / "journal" / exc.segment
        size = seg.stat().st_size if seg.is_file() else None
        named_ok = exc.segment in orig.segments and (size is None or 0 <= exc.offset <= size)
        if target.parent.name == "journal" and kind == "flip":
            named_ok = named_ok and exc.segment == target.name
        if not named_ok or f"segment {exc.segment} at offset {exc.offset}" not in str(exc):
            counts["badly_named_errors"] += 1
            failures.add(f"{tag}: error names the wrong place: {exc}")
        counts["typed_errors"] += 1
        return
    except aos.SnapshotCorruptError as exc:
        if Path(exc.path) != target:
            counts["badly_named_errors"] += 1
            failures.add(f"{tag}: snapshot error names {exc.path}, not the damaged file")
        counts["typed_errors"] += 1
        return
    except aos.AosError as exc:
        counts["unexpected_errors"] += 1
        failures.add(f"{tag}: unexpected error type {type(exc).__name__}: {exc}")
        return
    except Exception as exc:
        counts["untyped_errors"] += 1
        failures.add(f"{tag}: untyped {type(exc).__name__}: {exc}")
        return
    # It opened: the state must be the oracle's for what survived, and what survived the original's.
    if h != orig.oracle_hash(n):
        counts["silent_acceptances"] += 1
        failures.add(f"{tag}: opened with {n} records and state {h}, the oracle of that prefix differs")
        return
    try:
        replayed = aos.replay(copy, m).verify()
        survived = journal_payloads(copy, m)
    except aos.JournalCorruptError as exc:
        counts["detected_by_verify"] += 1
        if target.parent.name == "journal" and kind == "flip" and exc.segment != target.name:
            counts["badly_named_errors"] += 1
            failures.add(f"{tag}: verify names the wrong segment: {exc}")
        return
    except Exception as exc:
        counts["untyped_errors" if not isinstance(exc, aos.AosError) else "unexpected_errors"] += 1
        failures.add(f"{tag}: verify raised {type(exc).__name__}: {exc}")
        return
    if replayed != h or survived != orig.payloads[:n]:
        counts["silent_acceptances"] += 1
        failures.add(f"{tag}: the journal verifies but differs from the original's first {n} records")
        return
    if n < len(orig.payloads):
        counts["tail_truncations"] += 1
    else:
        counts["intact_opens"] += 1  # damage in a file opening never needs (an older snapshot) or undone


def run_corruption_cases(tmp: Path, cases: int, base_seed: int) -> tuple[dict[str, Any], Failures]:
    t0 = time.monotonic()
    orig = Original(tmp)
    failures = Failures()
    counts = dict.fromkeys(["cases", "typed_errors", "refused_cut_short", "tail_truncations", "detected_by_verify",
                            "intact_opens",
                            "silent_acceptances", "untyped_errors", "unexpected_errors", "badly_named_errors"], 0)
    for i in range(cases):
        corruption_case(tmp, orig, base_seed + i, failures, counts)
        counts["cases"] += 1
    counts["failures"] = len(failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, failures


def test_corruption_short(tmp_path: Path) -> None:
    counts, failures = run_corruption_cases(tmp_path, scaled(SHORT_CASES), 5000)
    record("short", "corruption", **counts)
    assert not failures, failures.message()
    assert counts["typed_errors"] > 0


@pytest.mark.long
def test_corruption_long(tmp_path: Path) -> None:
    counts, failures = run_corruption_cases(tmp_path, scaled(LONG_CASES), 500_000)
    record("long", "corruption", **counts)
    assert not failures, failures.message()
