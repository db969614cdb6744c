"""Fleet crash trials: a killed client or lane host loses no acknowledged event and admits none twice.

Each trial runs ``fleet_child.py``, which opens a fleet of local lanes and
submits events one by one, printing an acknowledgement when ``submit``
returns. The parent kills it at a seeded random moment — one or two times
in a row on the same fleet; the lane processes it leaves behind close their
worlds as they notice — then reopens the fleet, runs it and checks:

* every acknowledged add is in its counter cell's tags (0 acknowledged events lost);
* each counter equals the number of distinct tags it holds (0 events admitted twice), and the
  fleet's total equals the sum of the counters (no event half admitted: in one of its lanes and
  not the other);
* every lane replays from its journal to its own bytes.

The lane-host trials SIGKILL lane processes at seeded random moments while
the fleet runs (mid-call: while a lane admits, runs or answers) and while
the client submits; the backend restarts them. The fleet's merged state
must equal one world's fed the same events (the inline oracle), and every
lane must replay.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import aos
from reliability_support import Failures, record, scaled
from test_crash import Child
from test_fleet import merged, oracle, workload

CHILD = Path(__file__).with_name("fleet_child.py")
SHORT_TRIALS = 2
LONG_TRIALS = 60


def fleet_trial(tmp: Path, seed: int, failures: Failures, counts: dict[str, int]) -> None:
    rnd = random.Random(seed)
    path = tmp / "fleet"
    cfg: dict[str, Any] = {"path": str(path), "seed": seed, "lanes": rnd.choice([2, 3]),
                           "durability": rnd.choice(["always", "group"])}
    tag = f"seed {seed} ({cfg['lanes']} lanes, {cfg['durability']})"
    acked: dict[str, str] = {}
    for generation in range(rnd.choice([1, 2])):
        cfg["generation"] = generation
        child = Child(cfg, tmp / f"child{generation}.err", CHILD)
        if not child.wait_opened(120):
            rc = child.kill()
            failures.add(f"{tag}: generation {generation} did not open (exit {rc}): {child.stderr()}")
            counts["failed_reopens"] += 1
            return
        want = rnd.randint(3, 60)
        rc = child.kill_after_acks(want, rnd.uniform(0.5, 4.0))
        counts["kills"] += 1
        if rc != -signal.SIGKILL:
            failures.add(f"{tag}: generation {generation} exited by itself ({rc}): {child.stderr()}")
            return
        for line in child.lines:
            kind, *rest = line.split()
            if kind == "A" and not rest[0].startswith("spread-"):
                acked[rest[0]] = rest[1]
    counts["acked_events"] += len(acked)
    with aos.Fleet.open(path, "fleet_world:commuting") as fleet:
        fleet.run()
        tags = {k: {t for t in fleet.state("fleet/Tags@1", k) or [] if not t.startswith("from-")}
                for k in (f"k{i}" for i in range(9))}  # (a spread's adds carry "from-" tags and add 0)
        counters = {k: fleet.state("fleet/Counter@1", k) or 0 for k in tags}
        total = fleet.state("fleet/Total@1") or 0
    lost = [t for t, k in acked.items() if t not in tags[k]]
    counts["lost"] += len(lost)
    if lost:
        failures.add(f"{tag}: {len(lost)} acknowledged events lost, e.g. {lost[:3]}")
    twice = {k: (counters[k], len(tags[k])) for k in tags if counters[k] != len(tags[k])}
    counts["duplicates"] += len(twice)
    if twice:
        failures.add(f"{tag}: counters differ from their distinct tags (admitted twice?): {twice}")
    if total != sum(counters.values()):
        counts["half_admitted"] += 1
        failures.add(f"{tag}: total {total} != sum of counters {sum(counters.values())}")
    counts["unacked_admitted"] += sum(len(t) for t in tags.values()) - len(acked)
    aos.replay_fleet(path)
    counts["lanes_replayed"] += cfg["lanes"]


def run_trials(tmp: Path, trials: int, first_seed: int, mode: str) -> None:
    failures = Failures()
    counts = dict.fromkeys(("kills", "acked_events", "lost", "duplicates", "half_admitted", "unacked_admitted",
                            "failed_reopens", "lanes_replayed"), 0)
    for i in range(trials):
        trial = tmp / f"t{i}"
        trial.mkdir()
        fleet_trial(trial, first_seed + i, failures, counts)
    record(mode, "fleet client killed (SIGKILL)", trials=trials, **counts)
    assert not failures.items, failures.message()
    assert counts["acked_events"] > 0


def test_fleet_client_crash_loses_nothing_acknowledged(tmp_path: Path) -> None:
    run_trials(tmp_path, scaled(SHORT_TRIALS), 1000, "short")


def lane_kill_trial(tmp: Path, seed: int, failures: Failures, counts: dict[str, int]) -> None:
    rnd = random.Random(seed)
    lanes = rnd.choice([2, 3, 4])
    events = workload(seed, rnd.randint(300, 600))
    tag = f"seed {seed} ({lanes} lanes, {len(events)} events)"
    path = tmp / "fleet"
    stop = threading.Event()
    with aos.Fleet.open(path, "fleet_world:commuting", lanes=lanes) as fleet:
        backend: Any = fleet.backend
        kills = [0]
        lock = threading.Lock()

        def chaos() -> None:
            crnd = random.Random(seed + 1)
            while kills[0] < 8 and not stop.wait(crnd.uniform(0.01, 0.2)):
                pid = backend.pid(crnd.randrange(lanes))
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        with lock:
                            kills[0] += 1
                    except ProcessLookupError:
                        pass

        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        try:
            cut = rnd.randint(1, len(events) - 1)
            fleet.submit_many(events[:cut])
            # At least one kill per trial, whatever the timing: on a quiet machine the whole workload can
            # finish before the chaos thread's first wait is over. This one lands between the acknowledged
            # submits and the run that must find them.
            pid = backend.pid(rnd.randrange(lanes))
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                    with lock:
                        kills[0] += 1
                except ProcessLookupError:  # the chaos thread was first
                    pass
            fleet.run(max_rounds=rnd.randint(1, 3))
            for schema, value in events[cut:]:
                fleet.submit(schema, value)
            fleet.run()
        finally:
            stop.set()
            killer.join()
        fleet.run()  # anything a last kill left in flight
        counts["kills"] += kills[0]
        counts["restarts"] += backend.restarted
        counts["events"] += len(events)
        got = merged(fleet)
    want = oracle(tmp, events)
    if got != want:
        counts["differing"] += 1
        diff = [c for c in got if c not in want][:3]
        failures.add(f"{tag}: the fleet's state differs from one world's, e.g. {diff}")
    aos.replay_fleet(path)
    counts["lanes_replayed"] += lanes


def run_lane_trials(tmp: Path, trials: int, first_seed: int, mode: str) -> None:
    failures = Failures()
    counts = dict.fromkeys(("kills", "restarts", "events", "differing", "lanes_replayed"), 0)
    for i in range(trials):
        trial = tmp / f"t{i}"
        trial.mkdir()
        lane_kill_trial(trial, first_seed + i, failures, counts)
    record(mode, "fleet lane hosts killed mid-run (SIGKILL)", trials=trials, **counts)
    assert not failures.items, failures.message()
    assert counts["kills"] > 0


def test_lane_hosts_killed_mid_run_lose_nothing(tmp_path: Path) -> None:
    run_lane_trials(tmp_path, scaled(SHORT_TRIALS), 2000, "short")


@pytest.mark.long
def test_lane_hosts_killed_long(tmp_path: Path) -> None:
    run_lane_trials(tmp_path, scaled(LONG_TRIALS), 60_000, "long")


@pytest.mark.long
def test_fleet_client_crash_long(tmp_path: Path) -> None:
    run_trials(tmp_path, scaled(LONG_TRIALS), 50_000, "long")
