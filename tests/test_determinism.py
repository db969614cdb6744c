"""Parallel runs equal the inline oracle: same journal bytes, same snapshot hash, same replay.

The workload mixes keyed and non-keyed cells, events emitted across cells,
effects with receipts (inline dispatch, so receipts are inputs that do not
depend on timing), budget contention (steps read a budget other steps
spend), reducers that raise and invariant violations. Worker delays are
drawn from a seeded generator to shuffle the order in which results arrive.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from effects_world import effects_manifest, payment_adapter

pytestmark = pytest.mark.determinism


def workload_manifest() -> aos.Manifest:
    m = effects_manifest(budget=400, name="test/determinism@1")

    @m.reducer("test/Relay@1", key="id", events=["test/Hop@1"], priority=0)
    def relay(ctx: Any, state: Any, event: Any) -> Any:
        v = event.value
        n = (state or 0) + 1
        if v["ttl"] > 0:
            ctx.emit("test/Hop@1", {"id": (v["id"] * 7 + ctx.rng.randint(0, 5)) % 23, "ttl": v["ttl"] - 1})
        if v["id"] % 11 == 5 and n % 3 == 0:
            raise RuntimeError(f"relay {v['id']} fails on visit {n}")
        return n

    @m.reducer("test/Tally@1", events=["test/Hop@1", "test/Pay@1"], priority=3)
    def tally(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    return m


def inputs(seed: int) -> list[list[tuple[str, dict[str, Any]]]]:
    rnd = random.Random(seed)
    batches = []
    for _ in range(3):
        batch: list[tuple[str, dict[str, Any]]] = []
        for _ in range(25):
            kind = rnd.random()
            if kind < 0.4:
                batch.append(("test/Hop@1", {"id": rnd.randrange(23), "ttl": rnd.randint(0, 4)}))
            elif kind < 0.8:
                batch.append(("test/Pay@1", {"id": f"p{rnd.randrange(6)}", "costs": [rnd.randint(1, 30)],
                                             "peek": rnd.random() < 0.5,
                                             "timer": rnd.choice([None, 1, 3]),
                                             "blob": rnd.choice([None, b"x" * rnd.randint(1, 9)])}))
            else:
                batch.append(("test/Take@1", {"sku": f"s{rnd.randrange(3)}", "qty": rnd.randint(1, 2)}))
        batches.append(batch)
    return batches


def run_world(path: Path, seed: int, workers: int, delay_seed: int | None) -> tuple[list[bytes], str]:
    m = workload_manifest()
    delays = random.Random(delay_seed)
    table = [delays.choice([0.0, 0.0, 0.0, 0.0005, 0.002]) for _ in range(4096)]
    delay = None if delay_seed is None else (lambda event_id: table[event_id % len(table)])
    with aos.World.open(path, m, workers=workers, worker_delay=delay, effects="inline", on_violation="record", aging=40,
                        adapters={"payment.send": payment_adapter(cost_of=lambda r: r.cost // 2)},
                        snapshot_every=97) as w:
        for batch in inputs(seed):
            for schema, value in batch:
                w.submit(schema, value)
            w.run()
        h = w.snapshot_hash()
        assert w.stats["failures"] > 0 and w.violations and w.stats["effects_settled"] > 0
    journal = [e.payload for e in JournalReader(path / "journal", m.era).entries()]
    assert aos.replay(path, m).verify() == h
    return journal, h


@pytest.mark.parametrize("seed", [1, 2])
def test_every_worker_count_writes_the_inline_journal(tmp_path: Path, seed: int) -> None:
    oracle, oracle_hash = run_world(tmp_path / "inline", seed, 0, None)
    for workers in (1, 2, 4, 8):
        for delay_seed in (None, seed * 100 + workers):
            journal, h = run_world(tmp_path / f"w{workers}-{delay_seed}", seed, workers, delay_seed)
            assert h == oracle_hash, (workers, delay_seed)
            assert len(journal) == len(oracle)
            first = next((i for i, (a, b) in enumerate(zip(journal, oracle, strict=True)) if a != b), None)
            assert first is None, f"workers={workers} delay_seed={delay_seed}: record {first} differs"


def test_reopening_mid_run_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    """Priority classes, aging waits and pending emitted events survive a snapshot and reopen."""
    from aos.records import StepScheduled

    def open_world(path: Path) -> aos.World:
        return aos.World.open(path, workload_manifest(), workers=2, offload="all", effects="inline",
                              on_violation="record",
                              aging=40, adapters={"payment.send": payment_adapter()})

    def steps(path: Path) -> list[tuple[int, str, Any]]:
        m = workload_manifest()
        return [(r.event_id, r.reducer, r.key) for _e, r in JournalReader(path / "journal", m.era).records()
                if isinstance(r, StepScheduled)]

    batches = inputs(7)
    with open_world(tmp_path / "straight") as w:
        for schema, value in batches[0]:
            w.submit(schema, value)
        w.run(max_steps=60)
        w.run()
        straight = w.snapshot_hash()
    with open_world(tmp_path / "reopened") as w:
        for schema, value in batches[0]:
            w.submit(schema, value)
        w.run(max_steps=60)
    with open_world(tmp_path / "reopened") as w:  # from the close snapshot, mid-run
        w.run()
        assert w.snapshot_hash() == straight
    assert steps(tmp_path / "reopened") == steps(tmp_path / "straight")
