"""Idempotent submit across crashes: a client that retries unacknowledged submits with their keys admits each once.

Each trial runs ``submit_child.py``: a world serving under
``durability="group"`` (random group sizes and times) while producer threads
submit keyed events with ``World.submit_async(..., idempotency_key=)``. The
parent kills it with SIGKILL at a seeded random moment, then starts it again
with every key whose acknowledgement it did not see — a client retrying —
until each key is acknowledged. Then it checks, from the world's files:

* every key is in the journal exactly once (``EventAdmitted.idempotency_key``),
  with the event that key always sends;
* every acknowledgement names that record's admission number (none lost,
  and a retry of an event admitted before the crash was answered with the
  first admission's number);
* a full replay gives the reopened world's state, and ``aos fsck`` finds no damage.
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
from submit_child import event_of
from test_crash import Child

CHILD = Path(__file__).with_name("submit_child.py")
SHORT_TRIALS = 3
LONG_TRIALS = 100
MAX_GENERATIONS = 8


def submit_trial(tmp: Path, seed: int, failures: Failures, counts: dict[str, int]) -> None:
    rnd = random.Random(seed)
    path = tmp / "w"
    keys = [f"{seed}-{i}" for i in range(rnd.randint(40, 160))]
    cfg: dict[str, Any] = {
        "path": str(path), "seed": seed,
        "workers": rnd.choice([0, 0, 2]),
        "segment_bytes": rnd.choice([20_000, 1 << 20]),
        "snapshot_every": rnd.choice([0, 30]),
        "producers": rnd.choice([1, 2, 3]),
    }
    tag = f"seed {seed} (workers={cfg['workers']}, snapshot_every={cfg['snapshot_every']})"
    acks: dict[str, set[int]] = {}
    for generation in range(MAX_GENERATIONS):
        cfg["generation"] = generation
        cfg["keys"] = [k for k in keys if k not in acks]  # the client retries what it has no ack for
        last = not cfg["keys"] or generation == MAX_GENERATIONS - 1
        child = Child(cfg, tmp / f"child{generation}.err", CHILD)
        if not child.wait_opened(60):
            rc = child.kill()
            failures.add(f"{tag}: generation {generation} did not open (exit {rc}): {child.stderr()}")
            counts["failed_reopens"] += 1
            return
        if last:  # the last one runs until every key is acknowledged
            if not child.wait_line("D", 120):
                failures.add(f"{tag}: not every key was acknowledged in the last generation: {child.stderr()}")
            rc = child.kill()
        else:
            rc = child.kill_after_acks(rnd.randint(1, max(1, len(cfg["keys"]) - 1)), rnd.uniform(0.05, 1.5))
        counts["kills"] += 1
        if rc != -signal.SIGKILL:
            failures.add(f"{tag}: generation {generation} exited by itself ({rc}): {child.stderr()}")
            return
        for line in child.lines:
            kind, *rest = line.split()
            if kind == "A":
                acks.setdefault(rest[0], set()).add(int(rest[1]))
        if last:
            break
    counts["generations"] += generation + 1
    counts["keys"] += len(keys)
    m = workload_manifest()
    check = check_world(path)
    if not check.ok:
        failures.add(f"{tag}: aos fsck reports damage after the crashes: {[str(p) for p in check.problems]}")
    try:
        with aos.World.open(path, m, workers=0, effects="manual", snapshot_on_close=False, aging=40,
                            segment_bytes=cfg["segment_bytes"], on_violation="record") as w:
            h = w.snapshot_hash()
    except Exception as exc:
        counts["failed_reopens"] += 1
        failures.add(f"{tag}: reopening failed: {type(exc).__name__}: {exc}")
        return
    journaled: dict[str, list[tuple[int, str, bytes]]] = {}
    for _e, r in journal_entries(path, m):
        if isinstance(r, EventAdmitted) and r.idempotency_key is not None:
            journaled.setdefault(r.idempotency_key, []).append((r.seq, r.schema, r.value))
    twice = [k for k, rows in journaled.items() if len(rows) > 1]
    missing = [k for k in keys if k not in journaled]
    counts["admitted_twice"] += len(twice)
    counts["missing"] += len(missing)
    if twice:
        failures.add(f"{tag}: {len(twice)} key(s) admitted more than once, e.g. {twice[:3]}: "
                     f"{[journaled[k] for k in twice[:1]]}")
    if missing:
        failures.add(f"{tag}: {len(missing)} key(s) never admitted, e.g. {missing[:3]}")
    for key, seqs in acks.items():
        rows = journaled.get(key, [])
        counts["acks"] += len(seqs)
        if len(seqs) > 1:
            counts["retries_answered_differently"] += 1
            failures.add(f"{tag}: key {key} was acknowledged with different numbers {sorted(seqs)}")
        if not rows or {rows[0][0]} != seqs:
            counts["lost_acknowledged"] += 1
            failures.add(f"{tag}: key {key} acknowledged as {sorted(seqs)}, the journal has {rows[:2]}")
            continue
        schema, value = event_of(key)
        if rows[0][1:] != (schema, canonical.encode(value)):
            failures.add(f"{tag}: key {key} admitted another event than it sent")
    if aos.replay(path, m).verify() != h:
        counts["replay_mismatches"] += 1
        failures.add(f"{tag}: a full replay gives another state than the reopened world")


def run_submit_trials(tmp: Path, trials: int, base_seed: int) -> tuple[dict[str, Any], Failures]:
    failures = Failures()
    counts = dict.fromkeys(["trials", "keys", "kills", "generations", "acks", "admitted_twice", "missing",
                            "lost_acknowledged", "retries_answered_differently", "failed_reopens",
                            "replay_mismatches"], 0)
    t0 = time.monotonic()
    for i in range(trials):
        d = tmp / f"t{i}"
        d.mkdir()
        submit_trial(d, base_seed + i, failures, counts)
        counts["trials"] += 1
    counts["failures"] = len(failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, failures


def test_submit_crash_short(tmp_path: Path) -> None:
    counts, failures = run_submit_trials(tmp_path, scaled(SHORT_TRIALS), 3000)
    record("short", "idempotent submit crash", **counts)
    assert not failures, failures.message()
    assert counts["kills"] > counts["trials"]  # at least one crash with a retry after it in some trial
    assert counts["acks"] == counts["keys"]


@pytest.mark.long
def test_submit_crash_long(tmp_path: Path) -> None:
    counts, failures = run_submit_trials(tmp_path, scaled(LONG_TRIALS), 300_000)
    record("long", "idempotent submit crash", **counts)
    assert not failures, failures.message()
