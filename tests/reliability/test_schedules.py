"""Randomized schedules: any worker count and any timing write the inline executor's journal.

For each seed, a random workload of the determinism manifest (cross-cell
emits, effects with receipts, budget reads contended by reservations,
reducers that raise, invariant violations) is run once with the inline
executor (the oracle) and then with 1, 2, 4 or 8 workers under injected
worker delays: none, random per ticket, early tickets slower than later
ones (results arrive in reverse order), or rare long stragglers. Inputs
arrive in batches, runs are cut into ``max_steps`` pieces and snapshots
taken every N tickets, all drawn from the seed. Every run must write the
oracle's journal byte for byte and reach its state hash.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import aos
from reliability_support import (
    Failures,
    first_difference,
    journal_payloads,
    random_input,
    record,
    scaled,
    workload_adapters,
    workload_manifest,
)

SHORT_SEEDS, LONG_SEEDS = 5, 200
RUNS_PER_SEED = 5  # compared with the oracle, besides the oracle itself
WORKERS = (1, 2, 4, 8)
PROFILES = ("none", "random", "reverse", "straggler")


def delay_of(profile: str, rnd: random.Random) -> Callable[[int], float] | None:
    if profile == "none":
        return None
    if profile == "random":
        table = [rnd.choice([0.0, 0.0, 0.0, 0.0002, 0.001, 0.003]) for _ in range(1024)]
        return lambda event_id: table[event_id % len(table)]
    if profile == "reverse":
        span = rnd.choice([4, 8, 16])
        return lambda event_id: (span - 1 - event_id % span) * 0.0003
    every = rnd.choice([29, 61, 97])
    return lambda event_id: 0.02 if event_id % every == 0 else 0.0


def plan(seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    return {"batches": [[random_input(rnd) for _ in range(rnd.randint(10, 35))] for _ in range(rnd.randint(2, 4))],
            "cuts": [rnd.choice([None, 1, 5, 40]) for _ in range(4)],
            "snapshot_every": rnd.choice([0, 31, 97]), "window": rnd.choice([None, 8, 64])}


def run_once(path: Path, p: dict[str, Any], workers: int, delay: Callable[[int], float] | None) -> tuple[
        list[bytes], str, int]:
    m = workload_manifest()
    with aos.World.open(path, m, workers=workers, worker_delay=delay, effects="inline", on_violation="record",
                        aging=40, window=p["window"], adapters=workload_adapters(),
                        snapshot_every=p["snapshot_every"]) as w:
        for batch, cut in zip(p["batches"], p["cuts"], strict=False):
            for schema, value in batch:
                w.submit(schema, value)
            if cut is not None:
                w.run(max_steps=cut)
            w.run()
        h = w.snapshot_hash()
        reexecutions = w.stats["reexecutions"]
    return journal_payloads(path, m), h, reexecutions


def run_schedules(tmp: Path, seeds: int, base_seed: int) -> tuple[dict[str, Any], Failures]:
    t0 = time.monotonic()
    failures = Failures()
    counts: dict[str, Any] = {"seeds": 0, "oracle_runs": 0, "runs": 0, "identical": 0, "reexecutions": 0,
                              "records_compared": 0}
    by_workers = dict.fromkeys(WORKERS, 0)
    by_profile = dict.fromkeys(PROFILES, 0)
    m = workload_manifest()
    for s in range(seeds):
        seed = base_seed + s
        p = plan(seed)
        oracle, oracle_hash, _ = run_once(tmp / f"{seed}-oracle", p, 0, None)
        counts["oracle_runs"] += 1
        if aos.replay(tmp / f"{seed}-oracle", m).verify() != oracle_hash:
            failures.add(f"seed {seed}: the oracle's journal does not replay to its state")
        rnd = random.Random(seed * 7 + 1)
        for i in range(RUNS_PER_SEED):
            workers = WORKERS[i % len(WORKERS)] if i < len(WORKERS) else rnd.choice(WORKERS)
            profile = rnd.choice(PROFILES)
            journal, h, reexec = run_once(tmp / f"{seed}-{i}", p, workers, delay_of(profile, rnd))
            counts["runs"] += 1
            counts["reexecutions"] += reexec
            counts["records_compared"] += len(journal)
            by_workers[workers] += 1
            by_profile[profile] += 1
            diff = first_difference(journal, oracle)
            if diff is None and h == oracle_hash:
                counts["identical"] += 1
            else:
                failures.add(f"seed {seed}, workers={workers}, delays {profile}: record {diff} differs "
                             f"(state {h} vs {oracle_hash})")
        counts["seeds"] += 1
    counts["identical_pct"] = round(100.0 * counts["identical"] / max(1, counts["runs"]), 2)
    counts["runs_by_workers"] = by_workers
    counts["runs_by_delay_profile"] = by_profile
    counts["failures"] = len(failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, failures


@pytest.mark.determinism
def test_schedules_short(tmp_path: Path) -> None:
    counts, failures = run_schedules(tmp_path, scaled(SHORT_SEEDS), 7000)
    record("short", "schedules", **counts)
    assert not failures, failures.message()


@pytest.mark.long
def test_schedules_long(tmp_path: Path) -> None:
    counts, failures = run_schedules(tmp_path, scaled(LONG_SEEDS), 700_000)
    record("long", "schedules", **counts)
    assert not failures, failures.message()
