"""Fault injection: stale reads, misbehaving adapters and receipts, exhausted budgets, raising reducers, failing
invariants — and what must hold through all of them.

Every scenario is seeded and compared with an oracle that does not share the
code under test where it can: the inline executor's journal for parallel
runs, and an independent audit of the journal for budgets (the ledger is
rebuilt record by record from ``EffectQueued`` and ``ReceiptAppended``:
reserved + spent never exceeds the budget at any point, and no intent is
settled twice). Budget checks are also made on the live world after every
admission. The report counts budget overspends (must be 0), duplicate
settlements (0), refused receipts by type, forced re-executions and
violations.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import aos
from aos import canonical
from aos.records import (
    EffectQueued,
    InvariantViolated,
    ReceiptAppended,
    StepCommitted,
    StepFailed,
    StepScheduled,
)
from effects_world import effects_manifest, payment_adapter
from reliability_support import Failures, first_difference, journal_entries, journal_payloads, record, scaled

SHORT_SEEDS, LONG_SEEDS = 4, 100


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {"budget_overspends": 0, "duplicate_settlements": 0, "budget_checks": 0}
        self.failures = Failures()

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def check_budget(self, w: aos.World, caps: tuple[str, ...], where: str) -> None:
        for cap in caps:
            b = w.budget(cap)
            self.add("budget_checks")
            if b.reserved < 0 or b.spent < 0 or b.reserved + b.spent > b.budget or b.remaining < 0:
                self.add("budget_overspends")
                self.failures.add(f"{where}: budget {cap} overspent: {b}")

    def audit(self, path: Path, m: aos.Manifest, where: str) -> None:
        """Rebuild every capability's ledger from the journal and check it at every record."""
        budgets = {name: c.budget for name, c in m.capabilities.items()}
        reserved = dict.fromkeys(budgets, 0)
        spent = dict.fromkeys(budgets, 0)
        queued: dict[bytes, EffectQueued] = {}
        settled: set[bytes] = set()
        for _e, r in journal_entries(path, m):
            if isinstance(r, EffectQueued):
                queued[r.intent_hash] = r
                reserved[r.cap] += r.cost
            elif isinstance(r, ReceiptAppended):
                if r.intent_hash in settled:
                    self.add("duplicate_settlements")
                    self.failures.add(f"{where}: intent {r.intent_hash.hex()} settled twice")
                    continue
                q = queued.get(r.intent_hash)
                if q is None:
                    self.failures.add(f"{where}: a receipt for an intent never queued")
                    continue
                settled.add(r.intent_hash)
                reserved[q.cap] -= q.cost
                spent[q.cap] += r.cost
            else:
                continue
            self.add("budget_checks")
            for cap in budgets:
                if reserved[cap] < 0 or reserved[cap] + spent[cap] > budgets[cap]:
                    self.add("budget_overspends")
                    self.failures.add(f"{where}: journal overspends {cap}: reserved {reserved[cap]}, "
                                      f"spent {spent[cap]}, budget {budgets[cap]}")


def reverse_delays(span: int) -> Callable[[int], float]:
    """Earlier tickets of every ``span`` sleep longer: later results arrive first (forces stale reads)."""
    return lambda event_id: (span - 1 - event_id % span) * 0.0005


def same_as_inline(t: Tally, run: Callable[[Path, int, Any], Any], tmp: Path, tag: str, workers: int,
                   delay: Any) -> None:
    oracle = run(tmp / f"{tag}-inline", 0, None)
    got = run(tmp / f"{tag}-w{workers}", workers, delay)
    diff = first_difference(got[0], oracle[0])
    if diff is not None or got[1] != oracle[1]:
        t.failures.add(f"{tag}: workers={workers} differs from the inline run at record {diff}")
    t.add("parallel_runs_compared")


# -------------------------------------------------------------- scenarios
def stale_reads(t: Tally, tmp: Path, seed: int) -> None:
    """Every step reads the budget that the steps before it reserve from; workers compute ahead."""
    rnd = random.Random(seed)
    budget = rnd.choice([0, 17, 60, 200])
    pays = [(f"p{rnd.randrange(8)}", [rnd.randint(0, 12) for _ in range(rnd.randint(0, 2))]) for _ in range(40)]

    def run(path: Path, workers: int, delay: Any) -> tuple[list[bytes], str]:
        m = effects_manifest(budget=budget, name="test/stale@1")
        with aos.World.open(path, m, workers=workers, worker_delay=delay, effects="inline",
                            adapters={"payment.send": payment_adapter(cost_of=lambda r: r.cost)}) as w:
            for who, costs in pays:
                w.submit("test/Pay@1", {"id": who, "costs": costs, "peek": True})
            w.run()
            t.check_budget(w, ("pay",), f"stale reads seed {seed}")
            h = w.snapshot_hash()
            if workers:
                t.add("reexecutions", w.stats["reexecutions"])
                t.add("validations", w.stats["validations"])
        t.audit(path, m, f"stale reads seed {seed}")
        return journal_payloads(path, m), h

    same_as_inline(t, run, tmp, f"stale-{seed}", rnd.choice([2, 4, 8]), reverse_delays(rnd.choice([4, 8])))


def exhausted_budgets(t: Tally, tmp: Path, seed: int) -> None:
    """Budgets of exactly zero or exactly the sum of some reservations, contended by many steps at once."""
    rnd = random.Random(seed)
    budget = rnd.choice([0, 0, 10, 24])
    pays = [(f"p{i % 6}", [rnd.choice([0, 0, 1, 2, 5, 8])], rnd.random() < 0.5) for i in range(30)]
    extras = [rnd.choice([0, 1, budget + 1]) for _ in pays]

    def run(path: Path, workers: int, delay: Any) -> tuple[list[bytes], str]:
        m = effects_manifest(budget=budget, name="test/zero@1")
        with aos.World.open(path, m, workers=workers, worker_delay=delay, effects="manual") as w:
            for who, costs, peek in pays:
                w.submit("test/Pay@1", {"id": who, "costs": costs, "peek": peek})
            w.run()
            t.check_budget(w, ("pay",), f"zero budget seed {seed}")
            b = w.budget("pay")
            if budget == 0 and b.reserved != 0:
                t.failures.add(f"zero budget seed {seed}: {b.reserved} reserved from a budget of 0")
            pending = w.pending_effects()
            for e, extra in zip(pending, extras, strict=False):  # charging more than reserved: refused
                r = w.receipt(e.intent_hash, "ok", None, e.cost + extra)  # once nothing is left
                try:
                    w.submit_receipt(r)
                    t.add("receipts_admitted")
                except aos.ReceiptOverBudgetError:
                    t.add("refused_over_budget")
                t.check_budget(w, ("pay",), f"zero budget seed {seed}")
            w.run()
            h = w.snapshot_hash()
        t.audit(path, m, f"zero budget seed {seed}")
        return journal_payloads(path, m), h

    same_as_inline(t, run, tmp, f"zero-{seed}", rnd.choice([2, 4, 8]), reverse_delays(8))


def manual_receipts(t: Tally, tmp: Path, seed: int) -> None:
    """The test plays a bad adapter: duplicate, late (even after a reopen), altered, unknown and costly receipts."""
    rnd = random.Random(seed)
    m = effects_manifest(budget=rnd.choice([0, 30, 120]), name="test/receipts@1")
    path = tmp / f"receipts-{seed}"
    held: list[aos.Receipt] = []
    expected = {aos.ReceiptAuthError, aos.UnknownIntentError, aos.DuplicateReceiptError, aos.ReceiptOverBudgetError}

    def deliver(w: aos.World, r: aos.Receipt) -> None:
        before = (w.stats["records"], w.budget("pay"))
        try:
            w.submit_receipt(r)
            t.add("receipts_admitted")
        except aos.ReceiptError as exc:
            if type(exc) not in expected:
                t.failures.add(f"receipts seed {seed}: unexpected {type(exc).__name__}: {exc}")
            t.add(f"refused_{type(exc).__name__}")
            if (w.stats["records"], w.budget("pay")) != before:
                t.failures.add(f"receipts seed {seed}: a refused receipt changed the world")
        t.check_budget(w, ("pay",), f"receipts seed {seed}")

    for generation in range(3):
        with aos.World.open(path, m, effects="manual", workers=rnd.choice([0, 2])) as w:
            for r in held:  # late: from before the world was closed and reopened
                deliver(w, r)
            held = [r for r in held if rnd.random() < 0.3]  # some come again, later still
            for _round in range(4):
                for _ in range(rnd.randint(1, 6)):
                    w.submit("test/Pay@1", {"id": f"p{rnd.randrange(5)}",
                                            "costs": [rnd.randint(0, 20) for _ in range(rnd.randint(1, 3))]})
                w.run()
                for e in w.pending_effects():
                    action = rnd.random()
                    cost = rnd.choice([0, e.cost, e.cost // 2, e.cost + rnd.randint(1, 40)])
                    r = w.receipt(e.intent_hash, rnd.choice(["ok", "error"]), {"n": rnd.randrange(9)}, cost)
                    if action < 0.4:
                        deliver(w, r)
                    elif action < 0.55:
                        deliver(w, r)
                        deliver(w, r)  # a duplicate
                    elif action < 0.8:
                        held.append(r)  # late
                    elif action < 0.9:
                        deliver(w, aos.Receipt(r.intent_hash, r.status, r.payload, r.cost + 1, r.mac))  # altered
                    else:
                        deliver(w, w.receipt(canonical.digest(bytes([generation, _round])), "ok", None, 0))
                for r in held[:]:
                    if rnd.random() < 0.3:
                        deliver(w, r)
                        held.remove(r)
                w.run()
            h = w.snapshot_hash()
    t.audit(path, m, f"receipts seed {seed}")
    if aos.replay(path, m).verify() != h:
        t.failures.add(f"receipts seed {seed}: the journal does not replay to the world's state")


def misbehaving_adapters(t: Tally, tmp: Path, seed: int) -> None:
    """Background adapters that are slow, fail, answer garbage or cost more than reserved; closed mid-flight."""
    rnd = random.Random(seed)
    m = effects_manifest(budget=rnd.choice([20, 80]), name="test/adapters@1")
    path = tmp / f"adapters-{seed}"
    calls: dict[str, int] = {}

    def adapter(req: aos.EffectRequest) -> Any:
        calls[req.idempotency_key] = calls.get(req.idempotency_key, 0) + 1
        kind = canonical.digest(f"{seed}/{req.idempotency_key}".encode())[0] % 6
        if kind == 0:
            time.sleep(0.002 * (canonical.digest(req.intent_hash)[1] % 10))
            return {"slow": True}
        if kind == 1:
            raise ConnectionError("service unavailable")
        if kind == 2:
            return object()  # not in the value model: an error receipt
        if kind == 3:
            return aos.Outcome("ok", None, req.cost + 5)  # more than reserved: may not fit
        if kind == 4:
            return aos.Outcome("error", {"why": "declined"}, 0)
        return aos.Outcome("ok", {"paid": req.params["amount"]}, req.cost // 2)

    for generation in range(3):
        with aos.World.open(path, m, effects="background", workers=rnd.choice([0, 2]),
                            adapters={"payment.send": adapter}) as w:
            for _ in range(rnd.randint(3, 10)):
                w.submit("test/Pay@1", {"id": f"p{rnd.randrange(4)}", "costs": [rnd.randint(0, 9)]})
            w.run(settle=generation == 2, timeout=60)  # earlier generations close with effects in flight
            t.check_budget(w, ("pay",), f"adapters seed {seed}")
            t.add("receipts_refused_by_world", len(w.refused_receipts))
            refused = set()
            for r, exc in w.refused_receipts:
                refused.add(r.intent_hash)
                if not isinstance(exc, aos.ReceiptOverBudgetError):
                    t.failures.add(f"adapters seed {seed}: receipt refused with {type(exc).__name__}: {exc}")
            if generation == 2:
                # settled, or left queued because the adapter's receipt would overspend: the operator
                # then settles it with a receipt that fits
                for e in w.pending_effects():
                    if e.intent_hash not in refused:
                        t.failures.add(f"adapters seed {seed}: effect {e.idempotency_key} neither settled "
                                       "nor refused")
                    w.submit_receipt(w.receipt(e.intent_hash, "error", {"settled_by": "operator"}, 0))
                    t.add("settled_by_operator")
                w.run()
                t.check_budget(w, ("pay",), f"adapters seed {seed}")
            outstanding = len(w.pending_effects())
            h = w.snapshot_hash()
    if outstanding:
        t.failures.add(f"adapters seed {seed}: {outstanding} effects never settled")
    t.add("adapter_calls", sum(calls.values()))
    t.add("adapter_redeliveries", sum(n - 1 for n in calls.values()))
    t.audit(path, m, f"adapters seed {seed}")
    if aos.replay(path, m).verify() != h:
        t.failures.add(f"adapters seed {seed}: the journal does not replay to the world's state")


class Broken(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def raising_manifest() -> aos.Manifest:
    m = aos.Manifest("test/raising@1")
    m.capability("pay", effect="payment.send", budget=50)

    @m.reducer("test/R@1", key="k", events=["test/Go@1"])
    def r(ctx: Any, state: Any, event: Any) -> Any:
        how = event.value["how"]
        n = (state or 0) + 1
        if how == "emit-then-raise":
            ctx.emit("test/Go@1", {"k": (ctx.key + 1) % 5, "how": "ok"})
            raise ValueError("after emitting")
        if how == "effect-then-raise":
            ctx.effect("payment.send", {"amount": 1}, cost=1)
            raise LookupError("after intending")
        if how == "broken-str":
            raise Broken()
        if how == "long":
            raise RuntimeError("x" * 10_000 + f" at {object()!r}")
        if how == "unencodable":
            return {1.5: "float key"}
        if how == "nan":
            return float("nan")
        if how == "recursion":
            def down(i: int) -> int:
                return down(i + 1)
            return down(0)
        if how == "emit":
            ctx.emit("test/Go@1", {"k": (ctx.key + 2) % 5, "how": "ok"})
        return n

    return m


FAILING = ["emit-then-raise", "effect-then-raise", "broken-str", "long", "unencodable", "nan", "recursion"]


def raising_reducers(t: Tally, tmp: Path, seed: int) -> None:
    rnd = random.Random(seed)
    events = [{"k": rnd.randrange(5), "how": rnd.choice(FAILING + ["ok", "ok", "emit"])} for _ in range(60)]

    def run(path: Path, workers: int, delay: Any) -> tuple[list[bytes], str]:
        m = raising_manifest()
        with aos.World.open(path, m, workers=workers, worker_delay=delay, effects="manual") as w:
            for e in events:
                w.submit("test/Go@1", e)
            w.run()
            h = w.snapshot_hash()
            if w.pending_effects():
                t.failures.add(f"raising seed {seed}: a step that raised queued an effect")
        recs = [r for _e, r in journal_entries(path, m)]
        failed = sum(isinstance(r, StepFailed) for r in recs)
        if failed != sum(e["how"] in FAILING for e in events):
            t.failures.add(f"raising seed {seed}: {failed} steps failed, expected one per failing event")
        if workers:
            t.add("reducer_failures", failed)
        return journal_payloads(path, m), h

    same_as_inline(t, run, tmp, f"raising-{seed}", rnd.choice([1, 2, 4]), reverse_delays(4))


def interrupting_reducer(t: Tally, tmp: Path, seed: int) -> None:
    """A reducer raising KeyboardInterrupt: run() raises, the world object is unusable, reopening recovers."""
    rnd = random.Random(seed)
    m = aos.Manifest("test/interrupt@1")

    @m.reducer("test/I@1", key="k", events=["test/Go@1"])
    def i(ctx: Any, state: Any, event: Any) -> Any:
        if event.value.get("stop") and (state or 0) >= 1:
            raise KeyboardInterrupt
        return (state or 0) + 1

    path = tmp / f"interrupt-{seed}"
    workers = rnd.choice([0, 2, 4])
    w = aos.World.open(path, m, workers=workers, durability=rnd.choice(["always", "group"]))
    for n in range(30):
        w.submit("test/Go@1", {"k": n % 4, "stop": n == 25})
    try:
        w.run()
    except KeyboardInterrupt:
        t.add("interrupts")
    else:
        t.failures.add(f"interrupt seed {seed}: run() did not raise")
    try:
        w.submit("test/Go@1", {"k": 0})
        t.failures.add(f"interrupt seed {seed}: the interrupted world object still accepted a submission")
    except aos.WorldClosedError:
        pass
    with aos.World.open(path, m, workers=0) as w2:
        h = w2.snapshot_hash()
        committed = w2.last_event_id
    if aos.replay(path, m).verify() != h or committed < 1:
        t.failures.add(f"interrupt seed {seed}: the reopened world does not match its journal")


def failing_invariants(t: Tally, tmp: Path, seed: int) -> None:
    rnd = random.Random(seed)
    outcomes: list[Any] = [False, 0, None, "", [], "raise"]
    events = [{"k": rnd.randrange(4), "bad": rnd.choice(outcomes) if rnd.random() < 0.3 else True}
              for _ in range(50)]

    def manifest() -> aos.Manifest:
        m = aos.Manifest("test/invariants@1")

        @m.reducer("test/V@1", key="k", events=["test/Go@1"])
        def v(ctx: Any, state: Any, event: Any) -> Any:
            ctx.emit("test/Seen@1", {"k": ctx.key})
            return {"n": (state or {"n": 0})["n"] + 1, "bad": event.value["bad"]}

        @m.reducer("test/Seen@1", key="k", events=["test/Seen@1"])
        def seen(ctx: Any, state: Any, event: Any) -> Any:
            return (state or 0) + 1

        @m.invariant("bad is truthy", reducers=["test/V@1"])
        def ok(view: Any) -> Any:
            for r, k in view.changed:
                bad = view.state(r, k)["bad"]
                if bad == "raise":
                    raise ValueError("invariant raised")
                return bad
            return True

        return m

    def run(path: Path, workers: int, delay: Any) -> tuple[list[bytes], str]:
        m = manifest()
        mode = rnd.choice(["raise", "record", "callback"])
        seen_v: list[aos.InvariantViolation] = []
        with aos.World.open(path, m, workers=workers, worker_delay=delay, effects="manual",
                            on_violation=seen_v.append if mode == "callback" else mode) as w:
            for e in events:
                w.submit("test/Go@1", e)
            for _attempt in range(200):
                try:
                    w.run()
                    break
                except aos.InvariantViolation as v:
                    seen_v.append(v)
            h = w.snapshot_hash()
            seen_v.extend(w.violations)
        recs = [r for _e, r in journal_entries(path, m)]
        violated = {r.event_id for r in recs if isinstance(r, InvariantViolated)}
        committed = {r.event_id for r in recs if isinstance(r, StepCommitted)}
        if violated & committed or len(violated) != len(seen_v):
            t.failures.add(f"invariants seed {seed}: violations journaled {len(violated)}, surfaced {len(seen_v)}")
        steps = sum(isinstance(r, StepScheduled) for r in recs)
        seen_total = sum(1 for r in recs if isinstance(r, StepScheduled) and r.reducer == "test/Seen@1")
        if seen_total != steps - seen_total - len(violated):
            t.failures.add(f"invariants seed {seed}: a violating step's emitted event was admitted")
        if workers:
            t.add("violations", len(violated))
        return journal_payloads(path, m), h

    same_as_inline(t, run, tmp, f"inv-{seed}", rnd.choice([2, 4]), reverse_delays(4))


SCENARIOS = [stale_reads, exhausted_budgets, manual_receipts, misbehaving_adapters, raising_reducers,
             interrupting_reducer, failing_invariants]


def run_faults(tmp: Path, seeds: int, base_seed: int) -> tuple[dict[str, Any], Failures]:
    t0 = time.monotonic()
    t = Tally()
    for s in range(seeds):
        for scenario in SCENARIOS:
            d = tmp / f"{scenario.__name__}-{s}"
            d.mkdir()
            try:
                scenario(t, d, base_seed + s)
            except Exception as exc:
                t.failures.add(f"{scenario.__name__} seed {base_seed + s}: {type(exc).__name__}: {exc}")
            t.add(f"scenario_{scenario.__name__}")
    counts: dict[str, Any] = dict(sorted(t.counts.items()))
    counts["failures"] = len(t.failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, t.failures


def test_faults_short(tmp_path: Path) -> None:
    counts, failures = run_faults(tmp_path, scaled(SHORT_SEEDS), 9000)
    record("short", "faults", **counts)
    assert not failures, failures.message()
    assert counts["budget_overspends"] == 0 and counts["duplicate_settlements"] == 0
    assert counts["reexecutions"] > 0, "no stale read was forced"


@pytest.mark.long
def test_faults_long(tmp_path: Path) -> None:
    counts, failures = run_faults(tmp_path, scaled(LONG_SEEDS), 900_000)
    record("long", "faults", **counts)
    assert not failures, failures.message()
    assert counts["budget_overspends"] == 0 and counts["duplicate_settlements"] == 0
