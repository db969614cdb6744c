"""Effects and governance: capabilities, policies, budgets, receipts, adapters, invariants."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aos
from aos.journal import JournalReader
from aos.records import EffectQueued, InvariantViolated, PolicyDecision, ReceiptAppended, StepCommitted
from effects_world import effects_manifest, payment_adapter


def records(path: Path, m: aos.Manifest) -> list[Any]:
    return [r for _e, r in JournalReader(path / "journal", m.era).records()]


def journal_bytes(path: Path, m: aos.Manifest) -> list[bytes]:
    return [e.payload for e in JournalReader(path / "journal", m.era).entries()]


def test_effect_without_capability_is_denied_journaled_and_reported_to_the_cell(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Pay@1", {"id": "a", "uncovered": True})
        w.run()
        assert w.pending_effects() == []
        st_ = w.state("test/Payer@1", "a")
        assert st_["denied"] == ["no capability covers effect kind 'rocket.launch'"]
    recs = records(tmp_path / "w", m)
    decisions = [r for r in recs if isinstance(r, PolicyDecision)]
    assert len(decisions) == 1 and decisions[0].allowed is False
    assert not [r for r in recs if isinstance(r, EffectQueued)]


def test_policy_rules_deny_by_origin_reducer(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Sneak@1", {})
        w.submit("test/Pay@1", {"id": "a", "costs": [5]})
        w.run()
        assert [e.reducer for e in w.pending_effects()] == ["test/Payer@1"]
        assert w.budget("pay").reserved == 5
    decisions = [r for r in records(tmp_path / "w", m) if isinstance(r, PolicyDecision)]
    assert [d.allowed for d in decisions] == [False, True]
    assert "policy rule 0" in decisions[0].reason


def test_first_matching_rule_decides() -> None:
    from aos.capability import Ledger
    from aos.policy import decide
    from aos.records import Intent

    m = effects_manifest()
    m.allow(kind="payment.send", reducer="test/Payer@1")
    m.deny(kind="payment.send")
    ledger = Ledger(m)
    intent = Intent("payment.send", b"\xa0", "pay", "1/0", 1, bytes(32))
    assert decide(m, ledger, intent, "test/Payer@1").allowed
    assert not decide(m, ledger, intent, "test/Stock@1").allowed  # falls through to the deny-all rule
    assert not decide(m, ledger, dataclasses.replace(intent, cost=101), "test/Payer@1").allowed


def test_budget_reserved_at_commit_and_denied_when_it_does_not_fit(tmp_path: Path) -> None:
    m = effects_manifest(budget=10)
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [4, 4, 4]})
        w.run()
        b = w.budget("pay")
        assert (b.budget, b.reserved, b.spent, b.remaining) == (10, 8, 0, 2)
        assert len(w.pending_effects()) == 2
        assert w.state("test/Payer@1", "a")["denied"][0].startswith("budget of pay exhausted")
        first = w.pending_effects()[0]
        w.submit_receipt(w.receipt(first.intent_hash, "ok", {"paid": 4}, cost=1))  # a refund of 3
        w.run()
        b = w.budget("pay")
        assert (b.reserved, b.spent, b.remaining) == (4, 1, 5)
        assert w.state("test/Payer@1", "a")["receipts"] == [["ok", 1, "payment.send"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_budget_read_through_ctx_is_recorded_and_validated(tmp_path: Path, workers: int) -> None:
    m = effects_manifest(budget=50)
    # With workers, b's step may be computed before a's commit reserves 20: the stale
    # read is caught at commit and the step computed again, so b still sees 30.
    second_taken = threading.Event()

    def delay(event_id: int) -> float:
        # ticket 1 waits until the other worker has taken ticket 2 (then a little longer)
        if event_id == 2:
            second_taken.set()
            return 0.0
        second_taken.wait(timeout=5)
        return 0.05

    delay = delay if workers else None  # type: ignore[assignment]
    with aos.World.open(tmp_path / "w", m, effects="manual", workers=workers, worker_delay=delay) as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [20]})
        w.submit("test/Pay@1", {"id": "b", "peek": True})
        w.run()
        assert w.state("test/Payer@1", "b")["seen_budget"] == 30
        assert w.stats["validations"] == 1
        assert w.stats["reexecutions"] == (1 if workers else 0)


# --------------------------------------------------------------- receipts
def test_forged_altered_unknown_and_duplicate_receipts_are_refused(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "other", m, effects="manual") as other:
        forged_by_other = other.receipt(bytes(32), "ok", None, 0)
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [5]})
        w.run()
        e = w.pending_effects()[0]
        good = w.receipt(e.intent_hash, "ok", {"paid": 5}, cost=5)
        before = (w.stats["records"], w.budget("pay"), len(w.pending_effects()))
        bad = [
            (dataclasses.replace(good, cost=0), aos.ReceiptAuthError),
            (dataclasses.replace(good, status="error"), aos.ReceiptAuthError),
            (dataclasses.replace(good, payload=aos.canonical.encode({"paid": 500})), aos.ReceiptAuthError),
            (dataclasses.replace(good, mac=bytes(32)), aos.ReceiptAuthError),
            (dataclasses.replace(forged_by_other, intent_hash=e.intent_hash), aos.ReceiptAuthError),
            (w.receipt(bytes(range(32)), "ok", None, 0), aos.UnknownIntentError),
            (w.receipt(e.intent_hash, "ok", None, cost=500), aos.ReceiptOverBudgetError),
        ]
        for receipt, error in bad:
            with pytest.raises(error):
                w.submit_receipt(receipt)
            assert (w.stats["records"], w.budget("pay"), len(w.pending_effects())) == before
        w.submit_receipt(good)
        after = (w.stats["records"], w.budget("pay"), len(w.pending_effects()))
        with pytest.raises(aos.DuplicateReceiptError):
            w.submit_receipt(good)
        assert (w.stats["records"], w.budget("pay"), len(w.pending_effects())) == after
        w.run()
        assert w.state("test/Payer@1", "a")["receipts"] == [["ok", 5, "payment.send"]]
        assert w.budget("pay").spent == 5
    receipts = [r for r in records(tmp_path / "w", m) if isinstance(r, ReceiptAppended)]
    assert len(receipts) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_budgets_are_never_overspent_and_settle_to_the_receipt_costs(tmp_path_factory: Any, data: Any) -> None:
    budget = data.draw(st.integers(0, 60), label="budget")
    m = effects_manifest(budget=budget)
    path = tmp_path_factory.mktemp("budget") / "w"
    applied_costs: list[int] = []
    with aos.World.open(path, m, effects="manual", durability="none", snapshot_on_close=False) as w:
        for _round in range(data.draw(st.integers(1, 4), label="rounds")):
            for i in range(data.draw(st.integers(0, 4), label="payers")):
                costs = data.draw(st.lists(st.integers(0, 25), max_size=4), label="costs")
                w.submit("test/Pay@1", {"id": f"p{i}", "costs": costs})
            w.run()
            pending = w.pending_effects()
            order = data.draw(st.permutations(range(len(pending))), label="order") if pending else []
            for j in order[:data.draw(st.integers(0, len(pending)), label="answered")]:
                e = pending[j]
                cost = data.draw(st.integers(0, e.cost + 10), label="receipt cost")
                r = w.receipt(e.intent_hash, data.draw(st.sampled_from(["ok", "error"])), None, cost)
                try:
                    w.submit_receipt(r)
                    applied_costs.append(cost)
                except aos.ReceiptOverBudgetError:
                    pass
                if data.draw(st.booleans(), label="duplicate"):
                    with pytest.raises((aos.DuplicateReceiptError, aos.ReceiptOverBudgetError)):
                        w.submit_receipt(r)
                b = w.budget("pay")
                assert 0 <= b.spent + b.reserved <= b.budget
            w.run()
            b = w.budget("pay")
            assert b.spent == sum(applied_costs)
            assert b.reserved == sum(e.cost for e in w.pending_effects())
            assert b.remaining >= 0
    recs = records(path, m)
    assert sum(r.cost for r in recs if isinstance(r, ReceiptAppended)) == sum(applied_costs)
    assert aos.replay(path, m).verify()


# ---------------------------------------------------------------- adapters
def test_inline_adapters_settle_and_journal_is_reproducible(tmp_path: Path) -> None:
    m = effects_manifest()

    def run(path: Path) -> tuple[list[bytes], str]:
        with aos.World.open(path, m, effects="inline", adapters={"payment.send": payment_adapter()}) as w:
            for i in range(6):
                w.submit("test/Pay@1", {"id": f"p{i % 3}", "costs": [i, 1], "timer": 5 * (3 - i % 3),
                                        "blob": bytes([i]) * 10})
            r = w.run()
            assert r.outstanding == 0 and r.receipts == 24
            h = w.snapshot_hash()
            assert all(len(w.state("test/Payer@1", f"p{i}")["receipts"]) == 8 for i in range(3))
        return journal_bytes(path, m), h

    a_bytes, a_hash = run(tmp_path / "a")
    b_bytes, b_hash = run(tmp_path / "b")
    assert a_bytes == b_bytes and a_hash == b_hash
    assert aos.replay(tmp_path / "a", m).verify() == a_hash


def test_background_adapters_timer_and_blob(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="background",
                        adapters={"payment.send": payment_adapter()}) as w:
        w.submit("test/Pay@1", {"id": "a", "timer": 30, "blob": b"hello blob"})
        r = w.run(settle=True, timeout=10)
        assert r.outstanding == 0
        got = w.state("test/Payer@1", "a")["receipts"]
        assert sorted(got) == [["ok", 1, "blob.put"], ["ok", 1, "timer.set"]]
        h = w.snapshot_hash()
    payloads = [aos.canonical.decode(r.payload) for r in records(tmp_path / "w", m)
                if isinstance(r, ReceiptAppended)]
    assert {"after_ms": 30} in payloads
    digest = next(p for p in payloads if "hash" in p)["hash"]
    assert (tmp_path / "w" / "blobs" / digest[:2] / digest).read_bytes() == b"hello blob"
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_blob_get_reads_what_blob_put_stored(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        from aos.blobs import BlobStore

        digest = BlobStore(tmp_path / "w" / "blobs").put(b"stored bytes")
        got = aos.adapters.builtin_adapters(BlobStore(tmp_path / "w" / "blobs"))["blob.get"](
            aos.EffectRequest("blob.get", {"hash": digest}, "blobs", "k", bytes(32), 1))
        assert got.payload == {"data": b"stored bytes"}
        with pytest.raises(KeyError):
            aos.adapters.builtin_adapters(BlobStore(tmp_path / "w" / "blobs"))["blob.get"](
                aos.EffectRequest("blob.get", {"hash": "0" * 64}, "blobs", "k", bytes(32), 1))
        assert w.pending_effects() == []


def test_adapter_failure_and_missing_adapter_give_error_receipts(tmp_path: Path) -> None:
    m = effects_manifest()

    def broken(req: aos.EffectRequest) -> Any:
        raise ConnectionError("bank unreachable")

    with aos.World.open(tmp_path / "w", m, effects="inline", adapters={"payment.send": broken}) as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [3]})
        w.run()
        assert w.state("test/Payer@1", "a")["receipts"] == [["error", 0, "payment.send"]]
        assert w.budget("pay").spent == 0 and w.budget("pay").reserved == 0
    with aos.World.open(tmp_path / "w2", m, effects="inline") as w:  # no payment adapter at all
        w.submit("test/Pay@1", {"id": "a", "costs": [3]})
        w.run()
        assert w.state("test/Payer@1", "a")["receipts"] == [["error", 0, "payment.send"]]


def test_reopen_redispatches_outstanding_effects_once(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [1, 2]})
        w.submit("test/Pay@1", {"id": "b", "costs": [3]})
        w.run()
        keys = sorted(e.idempotency_key for e in w.pending_effects())
    calls: list[str] = []
    with aos.World.open(tmp_path / "w", m, effects="inline",
                        adapters={"payment.send": payment_adapter(calls)}) as w:
        w.run()
        assert sorted(calls) == keys
        assert w.pending_effects() == []
    with aos.World.open(tmp_path / "w", m, effects="inline",
                        adapters={"payment.send": payment_adapter(calls)}) as w:
        w.run()
    assert sorted(calls) == keys  # nothing dispatched a second time
    assert len([r for r in records(tmp_path / "w", m) if isinstance(r, ReceiptAppended)]) == 3


# -------------------------------------------------------------- invariants
def test_violated_invariant_leaves_state_unchanged_and_is_recorded(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:
        w.submit("test/Take@1", {"sku": "x", "qty": 2})
        w.submit("test/Take@1", {"sku": "x", "qty": 2})  # would leave -1
        w.submit("test/Take@1", {"sku": "y", "qty": 1})
        with pytest.raises(aos.InvariantViolation) as info:
            w.run()
        v = info.value
        assert (v.invariant, v.reducer, v.key) == ("stock never negative", "test/Stock@1", "x")
        assert w.state("test/Stock@1", "x") == {"n": 1}
        w.run()  # the world carries on
        assert w.state("test/Stock@1", "y") == {"n": 2}
        h = w.snapshot_hash()
    recs = records(tmp_path / "w", m)
    viol = [r for r in recs if isinstance(r, InvariantViolated)]
    assert len(viol) == 1 and viol[0].event_id == v.event_id
    committed = {r.event_id for r in recs if isinstance(r, StepCommitted)}
    assert v.event_id not in committed
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_on_violation_record_and_callback(tmp_path: Path) -> None:
    m = effects_manifest()
    seen: list[aos.InvariantViolation] = []
    for mode, path in (("record", tmp_path / "r"), (seen.append, tmp_path / "c")):
        with aos.World.open(path, m, effects="manual", on_violation=mode) as w:
            w.submit("test/Take@1", {"sku": "x", "qty": 5})
            w.run()
            assert w.state("test/Stock@1", "x") is None
            if mode == "record":
                assert len(w.violations) == 1
    assert len(seen) == 1 and seen[0].key == "x"


def test_manifest_capability_and_rule_errors() -> None:
    m = aos.Manifest("test/m@1")
    with pytest.raises(aos.ManifestError):
        m.capability("bad name", effect="x", budget=1)
    with pytest.raises(aos.ManifestError):
        m.capability("c", effect=[], budget=1)
    with pytest.raises(aos.ManifestError):
        m.capability("c", effect="x", budget=-1)
    m.capability("c", effect="x", budget=1)
    with pytest.raises(aos.ManifestError, match="declared twice"):
        m.capability("c", effect="y", budget=1)
    m.reducer("a/R@1", events=["a/E@1"], code_id="r")(lambda c, s, e: 1)
    with pytest.raises(aos.ManifestError, match="sys/"):
        m.reducer("a/S@1", events=["sys/Receipt@1"])
    m.deny(cap="nope")
    with pytest.raises(aos.ManifestError, match="unknown capability nope"):
        m.describe()


def test_capability_budget_change_is_an_era_change(tmp_path: Path) -> None:
    with aos.World.open(tmp_path / "w", effects_manifest(budget=10), effects="manual"):
        pass
    with pytest.raises(aos.EraChangeError, match=r"capability pay: budget 10 -> 11"):
        aos.World.open(tmp_path / "w", effects_manifest(budget=11))


CHILD = r"""
import sys, time
import aos
from effects_world import effects_manifest

def never_answers(req):
    time.sleep(3600)

w = aos.World.open(sys.argv[1], effects_manifest(), effects="background",
                   adapters={"payment.send": never_answers})
for i in range(4):
    w.submit("test/Pay@1", {"id": f"p{i}", "costs": [1, 2]})
w.run()
print(" ".join(sorted(e.idempotency_key for e in w.pending_effects())), flush=True)
time.sleep(3600)
"""


def test_killed_world_redispatches_each_queued_effect_exactly_once(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "w")], stdout=subprocess.PIPE,
                             env=env, text=True)
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    keys = line.split()
    assert len(keys) == 8
    m = effects_manifest()
    calls: list[str] = []
    with aos.World.open(tmp_path / "w", m, effects="inline", adapters={"payment.send": payment_adapter(calls)}) as w:
        r = w.run()
        assert sorted(calls) == keys  # each exactly once more
        assert r.receipts == 8 and r.outstanding == 0
        assert all(len(w.state("test/Payer@1", f"p{i}")["receipts"]) == 2 for i in range(4))
        h = w.snapshot_hash()
    with aos.World.open(tmp_path / "w", m, effects="inline", adapters={"payment.send": payment_adapter(calls)}) as w:
        w.run()
    assert sorted(calls) == keys
    assert len([r for r in records(tmp_path / "w", m) if isinstance(r, ReceiptAppended)]) == 8
    assert aos.replay(tmp_path / "w", m).verify() == h
