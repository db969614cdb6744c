"""Serving crash trials: a serving world killed with SIGKILL loses no event whose future resolved.

Each trial runs ``serve_child.py``: a world serving on its main thread while
producer threads call ``World.submit_async``, printing each acknowledgement
(a future that resolved: the event is durable under the world's policy,
``always`` or ``group`` with random group sizes and times). The parent kills
it at a seeded random moment — one or two times in a row on the same world —
then reopens the world and checks:

* it opens, and ``aos fsck`` finds no damage (a torn tail past the durable
  watermark is what a crash leaves);
* every acknowledged event is in the journal under its admission number,
  with the same schema and value (0 acknowledged events lost);
* a full replay gives the reopened world's state.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.fsck import check_world
from aos.records import EventAdmitted
from reliability_support import Failures, journal_entries, record, scaled, workload_manifest
from test_crash import Child

CHILD = Path(__file__).with_name("serve_child.py")
SHORT_TRIALS = 6
LONG_TRIALS = 200


def serve_trial(tmp: Path, seed: int, failures: Failures, counts: dict[str, int]) -> None:
    rnd = random.Random(seed)
    path = tmp / "w"
    cfg: dict[str, Any] = {
        "path": str(path), "seed": seed,
        "durability": rnd.choice(["always", "group", "group"]),
        "workers": rnd.choice([0, 0, 2]),
        "effects": rnd.choice(["inline", "background"]),
        "segment_bytes": rnd.choice([20_000, 1 << 20]),
        "snapshot_every": rnd.choice([0, 50]),
        "producers": rnd.choice([1, 2, 3]),
    }
    tag = f"seed {seed} ({cfg['durability']}, workers={cfg['workers']}, effects={cfg['effects']})"
    acked: dict[int, tuple[str, str]] = {}
    for generation in range(rnd.choice([1, 2])):
        cfg["generation"] = generation
        child = Child(cfg, tmp / f"child{generation}.err", CHILD)
        if not child.wait_opened(60):
            rc = child.kill()
            failures.add(f"{tag}: generation {generation} did not open (exit {rc}): {child.stderr()}")
            counts["failed_reopens"] += 1
            return
        want = rnd.randint(5, 150)  # kill once about this many events were acknowledged (or in time)
        rc = child.kill_after_acks(want, rnd.uniform(0.3, 3.0))
        counts["kills"] += 1
        if rc != -signal.SIGKILL:
            failures.add(f"{tag}: generation {generation} exited by itself ({rc}): {child.stderr()}")
            counts["failed_reopens"] += 1
            return
        for line in child.lines:
            kind, *rest = line.split()
            if kind == "A":
                acked[int(rest[0])] = (rest[1], rest[2])
    counts["acked_events"] += len(acked)

    m = workload_manifest()
    check = check_world(path)
    if not check.ok:
        counts["fsck_damaged_after_crash"] += 1
        failures.add(f"{tag}: aos fsck reports damage after the crash: {[str(p) for p in check.problems]}")
    try:
        with aos.World.open(path, m, workers=0, effects="manual", snapshot_on_close=False, aging=40,
                            segment_bytes=cfg["segment_bytes"], on_violation="record") as w:
            h = w.snapshot_hash()
    except Exception as exc:
        counts["failed_reopens"] += 1
        failures.add(f"{tag}: reopening failed: {type(exc).__name__}: {exc}")
        return
    admitted = {r.seq: (r.schema, canonical.digest(r.value).hex())
                for _e, r in journal_entries(path, m) if isinstance(r, EventAdmitted)}
    lost = sorted(seq for seq, ev in acked.items() if admitted.get(seq) != ev)
    counts["events_in_journal"] += len(admitted)
    if lost:
        counts["lost_acknowledged"] += len(lost)
        failures.add(f"{tag}: {len(lost)} acknowledged event(s) lost or changed, e.g. {lost[:5]}")
    if aos.replay(path, m).verify() != h:
        counts["replay_mismatches"] += 1
        failures.add(f"{tag}: a full replay gives another state than the reopened world")


def run_serve_trials(tmp: Path, trials: int, base_seed: int) -> tuple[dict[str, Any], Failures]:
    failures = Failures()
    counts = dict.fromkeys(["trials", "kills", "acked_events", "events_in_journal", "lost_acknowledged",
                            "failed_reopens", "replay_mismatches", "fsck_damaged_after_crash"], 0)
    t0 = time.monotonic()
    for i in range(trials):
        d = tmp / f"t{i}"
        d.mkdir()
        serve_trial(d, base_seed + i, failures, counts)
        counts["trials"] += 1
    counts["failures"] = len(failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, failures


def test_serve_crash_short(tmp_path: Path) -> None:
    counts, failures = run_serve_trials(tmp_path, scaled(SHORT_TRIALS), 2000)
    record("short", "serve crash", **counts)
    assert not failures, failures.message()
    assert counts["acked_events"] > 0


@pytest.mark.long
def test_serve_crash_long(tmp_path: Path) -> None:
    counts, failures = run_serve_trials(tmp_path, scaled(LONG_TRIALS), 200_000)
    record("long", "serve crash", **counts)
    assert not failures, failures.message()
