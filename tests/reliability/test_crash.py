"""Crash trials: nothing acknowledged is lost, and what survives is what a serial run of it writes.

Each trial runs ``crash_child.py`` in a child process with the durable
policy (``always``, or ``group`` where an acknowledgement is the group's
fsync: ``run()``/``sync()`` returned), with 0 to 4 workers, small segments
and periodic snapshots, and kills it with SIGKILL at a seeded random moment
— one to three times in a row on the same world, sometimes before it even
finished opening. Then the parent reopens the world and checks:

* ``aos fsck`` (read-only, before reopening) finds no damage: a torn tail
  past the durable watermark is what a crash leaves (0 damaged after a crash);
* it opens (0 failed reopens);
* every event the child was told is durable is in the journal with the same
  value, and every step up to the last acknowledged ``durable_event_id``
  has its outcome (0 lost acknowledged commits);
* the journal equals, byte for byte, what the inline executor writes when
  given the same inputs at the same points (the serial oracle), the state
  hash equals the oracle's, and a full replay verifies;
* the world carries on: reopened with its adapters it settles what is
  outstanding, and replays to its new state.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.fsck import check_world
from aos.records import EventAdmitted, InvariantViolated, StepCommitted, StepFailed
from reliability_support import (
    Failures,
    first_difference,
    journal_entries,
    journal_payloads,
    record,
    scaled,
    serial_oracle,
    workload_adapters,
    workload_manifest,
)

CHILD = Path(__file__).with_name("crash_child.py")
SHORT_TRIALS = 12
LONG_TRIALS = 500


def _env() -> dict[str, str]:
    here = Path(__file__).parent
    paths = [str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


class Child:
    """A crash child whose stdout lines are collected as they come."""

    def __init__(self, cfg: dict[str, Any], stderr_path: Path, script: Path = CHILD) -> None:
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg)], stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=_env(), text=True, bufsize=1)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr_path = stderr_path

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_opened(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lines:
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return bool(self.lines)
            time.sleep(0.002)
        return False

    def wait_line(self, line: str, timeout: float) -> bool:
        """Wait until the child printed ``line`` (False: it did not, in time, or it ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.lines:
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return line in self.lines
            time.sleep(0.001)
        return False

    def kill_after_acks(self, want: int, seconds: float) -> int:
        """SIGKILL the child once it acknowledged ``want`` events (lines ``A ...``), after ``seconds``, or when it
        ended by itself; its exit status (``-SIGKILL`` when it was killed)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and sum(line.startswith("A ") for line in self.lines) < want:
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        return self.kill()

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait()
        self._reader.join(10)
        self._stderr.close()
        return rc

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]


def crash_trial(tmp: Path, seed: int, failures: Failures, counts: dict[str, int]) -> None:
    rnd = random.Random(seed)
    path = tmp / "w"
    cfg: dict[str, Any] = {
        "path": str(path), "seed": seed,
        "durability": rnd.choice(["always", "group"]),
        "workers": rnd.choice([0, 0, 1, 2, 4]),
        "segment_bytes": rnd.choice([6_000, 20_000, 1 << 20]),
        "snapshot_every": rnd.choice([0, 23, 100]),
        "batches": 60,
    }
    tag = f"seed {seed} ({cfg['durability']}, workers={cfg['workers']})"
    acked_events: dict[int, tuple[str, str]] = {}
    acked_step = 0
    for generation in range(rnd.choice([1, 1, 2, 3])):
        cfg["generation"] = generation
        cfg["workers"] = rnd.choice([0, 0, 1, 2, 4]) if generation else cfg["workers"]
        child = Child(cfg, tmp / f"child{generation}.err")
        early = rnd.random() < 0.15  # kill while it starts, opens or recovers
        if early:
            time.sleep(rnd.uniform(0.0, 0.5))
        elif not child.wait_opened(60):
            rc = child.kill()
            failures.add(f"{tag}: generation {generation} did not open (exit {rc}): {child.stderr()}")
            counts["failed_reopens"] += 1
            return
        else:
            time.sleep(rnd.uniform(0.0, 0.6))
        rc = child.kill()
        counts["kills"] += 1
        if rc != -signal.SIGKILL:
            failures.add(f"{tag}: generation {generation} exited by itself ({rc}): {child.stderr()}")
            counts["failed_reopens"] += 1
            return
        for line in child.lines:
            kind, *rest = line.split()
            if kind == "S":
                acked_events[int(rest[0])] = (rest[1], rest[2])
            elif kind == "D":
                acked_step = max(acked_step, int(rest[0]))
            elif kind == "E":
                counts["children_done"] += 1
    counts["acked_events"] += len(acked_events)
    counts["acked_steps"] += acked_step

    m = workload_manifest()
    if (path / "world.cbor").is_file():  # (a kill during creation leaves no world yet)
        check = check_world(path)  # read-only: what a crash leaves is never damage
        if not check.ok:
            counts["fsck_damaged_after_crash"] += 1
            failures.add(f"{tag}: aos fsck reports damage after the crash: {[str(p) for p in check.problems]}")
    opts: dict[str, Any] = {"aging": 40, "segment_bytes": cfg["segment_bytes"], "on_violation": "record"}
    try:
        with aos.World.open(path, m, workers=0, effects="manual", snapshot_on_close=False, **opts) as w:
            h = w.snapshot_hash()
    except Exception as exc:
        counts["failed_reopens"] += 1
        failures.add(f"{tag}: reopening failed: {type(exc).__name__}: {exc}")
        return

    entries = journal_entries(path, m)
    recs = [r for _e, r in entries]
    admitted = {r.seq: (r.schema, canonical.digest(r.value).hex()) for r in recs if isinstance(r, EventAdmitted)}
    outcomes = {r.event_id for r in recs if isinstance(r, (StepCommitted, StepFailed, InvariantViolated))}
    lost_events = [seq for seq, ev in acked_events.items() if admitted.get(seq) != ev]
    lost_steps = [i for i in range(1, acked_step + 1) if i not in outcomes]
    if lost_events or lost_steps:
        counts["lost_acknowledged"] += len(lost_events) + len(lost_steps)
        failures.add(f"{tag}: acknowledged but lost: events {lost_events[:5]}, steps {lost_steps[:5]}")

    payloads = [e.payload for e, _r in entries]
    counts["records_checked"] += len(payloads)
    oracle, oracle_hash = serial_oracle(recs, m, tmp / "oracle", aging=40, segment_bytes=cfg["segment_bytes"])
    diff = first_difference(payloads, oracle)
    if diff is not None or oracle_hash != h:
        counts["oracle_mismatches"] += 1
        failures.add(f"{tag}: journal differs from the serial oracle at record {diff} "
                     f"(state {h} vs {oracle_hash})")
        return
    if aos.replay(path, m).verify() != h:
        counts["oracle_mismatches"] += 1
        failures.add(f"{tag}: a full replay gives another state than the reopened world")
        return

    # The world carries on: outstanding effects are dispatched again and settle.
    with aos.World.open(path, m, workers=rnd.choice([0, 2]), effects="inline", adapters=workload_adapters(),
                        **opts) as w:
        r = w.run()
        h2 = w.snapshot_hash()
        if r.outstanding:
            failures.add(f"{tag}: {r.outstanding} effects still outstanding after settling")
    after = journal_payloads(path, m)
    if after[:len(payloads)] != payloads or aos.replay(path, m).verify() != h2:
        counts["oracle_mismatches"] += 1
        failures.add(f"{tag}: continuing after the crash changed the journal's past or does not replay")


def run_crash_trials(tmp: Path, trials: int, base_seed: int) -> tuple[dict[str, Any], Failures]:
    failures = Failures()
    counts = dict.fromkeys(["trials", "kills", "children_done", "acked_events", "acked_steps", "records_checked",
                            "lost_acknowledged", "failed_reopens", "oracle_mismatches", "fsck_damaged_after_crash"], 0)
    t0 = time.monotonic()
    for i in range(trials):
        d = tmp / f"t{i}"
        d.mkdir()
        crash_trial(d, base_seed + i, failures, counts)
        counts["trials"] += 1
    counts["failures"] = len(failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, failures


def test_crash_short(tmp_path: Path) -> None:
    counts, failures = run_crash_trials(tmp_path, scaled(SHORT_TRIALS), 1000)
    record("short", "crash", **counts)
    assert not failures, failures.message()
    assert counts["acked_events"] > 0 and counts["acked_steps"] > 0


@pytest.mark.long
def test_crash_long(tmp_path: Path) -> None:
    counts, failures = run_crash_trials(tmp_path, scaled(LONG_TRIALS), 100_000)
    record("long", "crash", **counts)
    assert not failures, failures.message()
