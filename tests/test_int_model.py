"""The integer model: no int the API accepts can stop a world (docs/canonical.md, "The integer model").

Record fields that hold ints (cell keys, costs, budgets) are signed 64-bit;
an int outside that range is refused where it enters, with a typed error and
nothing journaled, or — inside a reducer — fails the step, and the world
goes on: it runs, reopens and replays afterwards.
"""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from aos.records import EffectQueued, StepFailed, StepScheduled

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
OUTSIDE = [2**63, -(2**63) - 1, 2**64, -(2**64), 2**64 + 5, 2**200, -(10**5000)]
WORKERS = [0, 2]


class Big(enum.IntEnum):
    HUGE = 2**70


class Text(str):
    def __str__(self) -> str:
        return "not the text"


def records(path: Path, m: aos.Manifest) -> list[Any]:
    return [r for _e, r in JournalReader(path / "journal", m.era).records()]


def manifest(budget: int = 1_000) -> aos.Manifest:
    m = aos.Manifest("test/ints@1")
    m.capability("pay", effect="payment.send", budget=budget)

    @m.reducer("test/K@1", key="k", events=["test/E@1"])
    def keyed(ctx: Any, state: Any, event: Any) -> Any:
        v = event.value
        if "emit" in v:
            ctx.emit("test/E@1", {"k": v["emit"]})
        for cost in v.get("costs", []):
            ctx.effect("payment.send", {"n": v.get("n", 0)}, cost=cost)
        if "odd_effect" in v:
            kind, cap, ikey = v["odd_effect"]
            ctx.effect(Text(kind), {"big": 2**100}, cap=Text(cap), idempotency_key=Text(ikey), cost=1)
        return (state or 0) + 1

    return m


def alive(path: Path, m: aos.Manifest, workers: int, key: Any = "after") -> None:
    """The world still takes and runs an event, reopens, and replays to its state."""
    with aos.World.open(path, m, workers=workers, effects="manual") as w:
        before = w.state("test/K@1", key) or 0
        w.submit("test/E@1", {"k": key})
        w.run()
        assert w.state("test/K@1", key) == before + 1
        h = w.snapshot_hash()
    with aos.World.open(path, m, workers=workers, effects="manual", snapshot_on_close=False) as w:
        w.run()
        assert w.snapshot_hash() == h
    assert aos.replay(path, m).verify() == h


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("key", OUTSIDE + [Big.HUGE], ids=lambda k: f"{k.bit_length()}bits{'-' if k < 0 else ''}")
def test_an_int_key_outside_64_bits_is_refused_at_submit(tmp_path: Path, workers: int, key: int) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual") as w:
        n = w.stats["records"]
        with pytest.raises(aos.InvalidKeyError, match="outside the record range") as info:
            w.submit("test/E@1", {"k": key})
        assert len(str(info.value)) < 300  # a 5,000-digit int is described, not printed
        assert w.stats["records"] == n, "a refused submission journaled something"
        w.run()
    alive(tmp_path / "w", m, workers)


@pytest.mark.parametrize("workers", WORKERS)
def test_the_64_bit_bounds_themselves_are_keys(tmp_path: Path, workers: int) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual") as w:
        w.submit("test/E@1", {"k": INT64_MAX})
        w.submit("test/E@1", {"k": INT64_MIN, "pad": 2**90})  # a wide value with a key in range
        w.run()
        assert w.state("test/K@1", INT64_MAX) == 1 and w.state("test/K@1", INT64_MIN) == 1
    keys = [r.key for r in records(tmp_path / "w", m) if isinstance(r, StepScheduled)]
    assert keys == [INT64_MAX, INT64_MIN]
    alive(tmp_path / "w", m, workers, INT64_MIN)


@pytest.mark.parametrize("workers", WORKERS)
def test_an_emitted_key_outside_64_bits_fails_the_step(tmp_path: Path, workers: int) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual") as w:
        w.submit("test/E@1", {"k": "a", "emit": 2**64})
        w.submit("test/E@1", {"k": "b", "emit": -(2**63) - 1})
        w.submit("test/E@1", {"k": "c", "emit": INT64_MIN})
        r = w.run()
        assert r.failed == 2 and w.state("test/K@1", "a") is None and w.state("test/K@1", INT64_MIN) == 1
    failed = [r for r in records(tmp_path / "w", m) if isinstance(r, StepFailed)]
    assert [f.error for f in failed] == ["InvalidKeyError"] * 2
    alive(tmp_path / "w", m, workers)


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("cost", [2**63, 2**64, 2**300, -1, True, 1.5, "1"])
def test_an_effect_cost_outside_the_record_range_fails_the_step(tmp_path: Path, workers: int, cost: Any) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual") as w:
        w.submit("test/E@1", {"k": "a", "costs": [cost]})
        assert w.run().failed == 1
        assert w.budget("pay").reserved == 0 and not w.pending_effects()
    failed = [r for r in records(tmp_path / "w", m) if isinstance(r, StepFailed)]
    assert [f.error for f in failed] == ["InvalidEffectError"]
    alive(tmp_path / "w", m, workers)


def test_invalid_effect_error_is_typed_and_stays_a_type_error() -> None:
    assert issubclass(aos.InvalidEffectError, aos.AosError)
    assert issubclass(aos.InvalidEffectError, TypeError) and issubclass(aos.InvalidEffectError, ValueError)


@pytest.mark.parametrize("workers", WORKERS)
def test_costs_up_to_the_largest_budget_add_up_without_leaving_the_range(tmp_path: Path, workers: int) -> None:
    m = manifest(budget=INT64_MAX)
    path = tmp_path / "w"
    with aos.World.open(path, m, workers=workers, effects="manual") as w:
        w.submit("test/E@1", {"k": "a", "costs": [2**62, 2**62 - 1, 2**62], "n": 1})  # the third does not fit
        w.run()
        pending = w.pending_effects()
        assert [e.cost for e in pending] == [2**62, 2**62 - 1]
        assert w.budget("pay").remaining == 0
        # the first receipt refunds 2**61; the second charges more than reserved, up to everything left
        w.submit_receipt(w.receipt(pending[0].intent_hash, "ok", {"big": -(2**80)}, cost=2**61))
        with pytest.raises(aos.ReceiptOverBudgetError):
            w.submit_receipt(w.receipt(pending[1].intent_hash, "ok", None, cost=INT64_MAX))
        w.submit_receipt(w.receipt(pending[1].intent_hash, "ok", None, cost=2**62 - 1 + 2**61))
        w.run()
        b = w.budget("pay")
        assert (b.reserved, b.spent, b.remaining) == (0, INT64_MAX, 0)
    queued = [r.cost for r in records(path, m) if isinstance(r, EffectQueued)]
    assert queued == [2**62, 2**62 - 1]
    alive(path, m, workers)


def test_a_budget_beyond_64_bits_is_refused_in_the_manifest() -> None:
    m = aos.Manifest("test/b@1")
    with pytest.raises(aos.ManifestError, match="2\\*\\*63-1"):
        m.capability("pay", effect="payment.send", budget=2**63)
    m.capability("pay", effect="payment.send", budget=INT64_MAX)


@pytest.mark.parametrize("cost", [2**63, 2**64, -1, True, 2.0])
def test_a_receipt_cost_outside_the_record_range_is_refused(tmp_path: Path, cost: Any) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/E@1", {"k": "a", "costs": [5]})
        w.run()
        (e,) = w.pending_effects()
        n = w.stats["records"]
        with pytest.raises(aos.ReceiptError, match="cost"):
            w.receipt(e.intent_hash, "ok", None, cost=cost)
        forged = aos.Receipt(e.intent_hash, "ok", b"\xf6", cost, b"\x00" * 32)
        with pytest.raises(aos.ReceiptError):
            w.submit_receipt(forged)
        assert w.stats["records"] == n and w.budget("pay").reserved == 5
        w.submit_receipt(w.receipt(e.intent_hash, Text("ok"), {"payload": 2**70}, cost=7))
    assert aos.replay(tmp_path / "w", m).verify()


@pytest.mark.parametrize("workers", WORKERS)
def test_str_subclasses_in_an_effect_are_journaled_as_plain_text(tmp_path: Path, workers: int) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual") as w:
        w.submit("test/E@1", {"k": "a", "odd_effect": ["payment.send", "pay", "once"]})
        assert w.run().failed == 0
        (e,) = w.pending_effects()
        assert (e.kind, e.cap, e.idempotency_key) == ("payment.send", "pay", "once")
        assert {type(e.kind), type(e.cap), type(e.idempotency_key)} == {str}
    alive(tmp_path / "w", m, workers)


@pytest.mark.parametrize("workers", WORKERS)
def test_a_key_subclass_keys_its_plain_value(tmp_path: Path, workers: int) -> None:
    """A str subclass key with its own __str__ keys the cell by the text the value holds (as replay does)."""
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual") as w:
        w.submit("test/E@1", {"k": Text("a")})
        w.run()
        assert w.cells() == [("test/K@1", "a")]
    alive(tmp_path / "w", m, workers)


@pytest.mark.parametrize("workers", WORKERS)
def test_run_takes_any_max_steps_and_timeout(tmp_path: Path, workers: int) -> None:
    m = manifest()

    def slow_payment(req: Any) -> Any:
        time.sleep(0.05)
        return {"paid": req.cost}

    with aos.World.open(tmp_path / "w", m, workers=workers, effects="background",
                        adapters={"payment.send": slow_payment}) as w:
        w.submit("test/E@1", {"k": "a", "costs": [3]}, timeout=1e300)
        assert w.run(max_steps=2**64).steps == 1
        r = w.run(max_steps=2**63, settle=True, timeout=1e300)  # waits for the receipt, then runs its step
        assert (r.receipts, r.steps, r.outstanding) == (1, 1, 0)
        with pytest.raises(TypeError):
            w.run(max_steps=1.5)
        w.submit("test/E@1", {"k": "a"})
        assert w.run().steps == 1 and w.state("test/K@1", "a") == 3
    alive(tmp_path / "w", m, workers)


@pytest.mark.parametrize("workers", WORKERS)
def test_a_step_whose_outputs_cannot_be_journaled_fails_as_a_whole(tmp_path: Path, workers: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The committer's last guard (the boundaries refuse such outputs first): a StepCommitted that cannot be
    written makes the step a StepFailed, nothing of it applied, and the world goes on."""
    import aos.committer

    real = aos.committer.committed_payload

    def refuse_intents(event_id: int, state_hash: Any, emits: Any, intents: Any, *rest: Any) -> bytes:
        if intents:
            raise ValueError("effect intent is outside the record model")
        return real(event_id, state_hash, emits, intents, *rest)

    monkeypatch.setattr(aos.committer, "committed_payload", refuse_intents)
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers, effects="manual") as w:
        w.submit("test/E@1", {"k": "a", "costs": [5], "emit": "b"})
        w.submit("test/E@1", {"k": "c"})
        r = w.run()
        assert (r.failed, r.committed) == (1, 1)
        assert w.state("test/K@1", "a") is None and w.state("test/K@1", "b") is None  # nothing applied
        assert w.state("test/K@1", "c") == 1 and not w.pending_effects() and w.budget("pay").reserved == 0
        (f,) = w.failures()
        assert (f.reducer, f.key, f.error) == ("test/K@1", "a", "UnrecordableOutputError")
        assert "cannot be journaled" in f.message
