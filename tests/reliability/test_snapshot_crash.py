"""Crash trials for snapshots written in the background, and for compaction between crashes.

A child process runs a world of some thousands of cells with a snapshot due
every few hundred tickets — so a background snapshot is nearly always being
encoded, written, fsync'd or renamed — and prints ``D <event_id>`` after
each ``run()`` (everything up to it is durable). The parent kills it with
SIGKILL at a seeded random moment, then checks, before anything opens it,
that ``aos fsck`` finds no damage; then that the world opens, holds every
acknowledged step, equals a full replay, and that no half-written snapshot
is left. Every other trial compacts the world (``aos compact --keep 1``)
before the next child reopens it. Counted: trials, kills, lost acknowledged
steps, failed reopens, replay mismatches, fsck damage (all but the first
two must be 0).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aos
from aos.fsck import check_world
from aos.retention import compact
from conftest import make_counter_manifest
from reliability_support import Failures, record

CHILD = """
import sys
sys.path.insert(0, {tests!r})
import aos
from conftest import make_counter_manifest

w = aos.World.open({path!r}, make_counter_manifest(), workers=0, snapshot_every=300, segment_bytes=256 * 1024,
                   keep_snapshots=2)
print("O", w.last_event_id, flush=True)
i = {start}
while True:
    for _ in range(200):
        w.submit("test/Add@1", {{"id": (i * 7919) % 5000, "by": 1 + i % 3}})
        i += 1
    w.run()
    print("D", w.durable_event_id, flush=True)
"""


def _trial(tmp: Path, rnd: random.Random, trial: int, failures: Failures, counts: dict[str, int]) -> None:
    m = make_counter_manifest()
    path = tmp / f"w{trial}"
    tests = str(Path(__file__).resolve().parent.parent)
    acked = 0
    for generation in range(3):
        code = CHILD.format(tests=tests, path=str(path), start=generation * 1_000_000)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first.startswith("O "):
            why = proc.stderr.read() if proc.stderr else ""
            failures.add(f"trial {trial}: the child did not open: {first!r} {why}")
            proc.kill()
            return
        deadline = time.monotonic() + rnd.uniform(0.2, 1.5)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("D "):
                acked = max(acked, int(line.split()[1]))
        proc.kill()
        proc.wait()
        counts["kills"] += 1
        report = check_world(path)
        if not report.ok:
            counts["fsck_damaged"] += 1
            failures.add(f"trial {trial}: fsck after the kill: {[str(p) for p in report.problems]}")
            return
        try:
            w = aos.World.open(path, m, workers=0)
        except aos.AosError as exc:
            counts["failed_reopens"] += 1
            failures.add(f"trial {trial}: reopen failed: {exc!r}")
            return
        if w.last_event_id < acked:
            counts["lost_acknowledged"] += 1
            failures.add(f"trial {trial}: acknowledged event_id {acked}, the world holds {w.last_event_id}")
        h = w.snapshot_hash()
        w.close()
        if list((path / "snapshots").glob("*.tmp")):
            failures.add(f"trial {trial}: a half-written snapshot is left after opening")
        if aos.replay(path, m).verify() != h or aos.replay(path, m).latest() != h:
            counts["replay_mismatches"] += 1
            failures.add(f"trial {trial}: the replay does not give the reopened world's state")
        if generation % 2 == 1:
            compact(path, keep=1)
            counts["compactions"] += 1


def test_snapshot_crash_short(tmp_path: Path) -> None:
    rnd = random.Random(16)
    failures = Failures()
    counts = {"trials": 0, "kills": 0, "compactions": 0, "lost_acknowledged": 0, "failed_reopens": 0,
              "replay_mismatches": 0, "fsck_damaged": 0}
    t0 = time.monotonic()
    for trial in range(4):
        counts["trials"] += 1
        _trial(tmp_path, rnd, trial, failures, counts)
    record("short", "snapshot crash", **counts, wall_s=round(time.monotonic() - t0, 1))
    assert not failures.items, "\n".join(failures.items)


@pytest.mark.long
def test_snapshot_crash_long(tmp_path: Path) -> None:
    rnd = random.Random(1616)
    failures = Failures()
    counts = {"trials": 0, "kills": 0, "compactions": 0, "lost_acknowledged": 0, "failed_reopens": 0,
              "replay_mismatches": 0, "fsck_damaged": 0}
    for trial in range(60):
        counts["trials"] += 1
        _trial(tmp_path, rnd, trial, failures, counts)
    record("long", "snapshot crash", **counts)
    assert not failures.items, "\n".join(failures.items)
