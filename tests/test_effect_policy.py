"""Effect policies: timeouts, retries with backoff, dead letters (receipt or park), retry by hand, ``aos effects``."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import aos
from aos import canonical
from aos.cli import cli
from aos.journal import JournalReader
from aos.records import ReceiptAppended
from effects_world import effects_manifest

MODES = ["inline", "background"]


def receipts(path: Path, m: aos.Manifest) -> list[ReceiptAppended]:
    return [r for _e, r in JournalReader(path / "journal", m.era).records() if isinstance(r, ReceiptAppended)]


def journal_bytes(path: Path, m: aos.Manifest) -> list[bytes]:
    return [e.payload for e in JournalReader(path / "journal", m.era).entries()]


class Flaky:
    """A payment adapter that raises ``fails`` times for each idempotency key, then pays."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.calls: dict[str, int] = {}
        self.times: dict[str, list[float]] = {}
        self.wall_ms: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, req: aos.EffectRequest) -> aos.Outcome:
        with self.lock:
            n = self.calls[req.idempotency_key] = self.calls.get(req.idempotency_key, 0) + 1
            self.times.setdefault(req.idempotency_key, []).append(time.monotonic())
            self.wall_ms.append(time.time() * 1000)
        if n <= self.fails:
            raise ConnectionError(f"bank unreachable (attempt {n})")
        return aos.Outcome("ok", {"paid": req.params["amount"]}, req.cost)


def pay(w: aos.World, *ids: str) -> None:
    for i in ids:
        w.submit("test/Pay@1", {"id": i, "costs": [3]})


@pytest.mark.parametrize("mode", MODES)
def test_retries_with_backoff_then_success_journal_one_ok_receipt(tmp_path: Path, mode: str) -> None:
    m = effects_manifest()
    bank = Flaky(fails=2)
    policy = aos.EffectPolicy(retries=3, backoff=0.05, jitter=0)
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": bank}, effects=mode,
                        effect_policies={"kind:payment.send": policy}) as w:
        pay(w, "a", "b")
        r = w.run(settle=True, timeout=30)
        assert r.outstanding == 0
        assert w.state("test/Payer@1", "a")["receipts"] == [["ok", 3, "payment.send"]]
        assert w.effect_status() == []
    assert sorted(bank.calls.values()) == [3, 3]  # two failures and the success, for each key
    for times in bank.times.values():  # exponential backoff: 0.05 s, then 0.1 s
        assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.095
    got = receipts(tmp_path / "w", m)
    assert len(got) == 2 and len({r.intent_hash for r in got}) == 2
    assert all(r.status == "ok" and canonical.decode(r.payload) == {"paid": 3} for r in got)


def test_the_journal_is_the_same_whatever_the_number_of_attempts(tmp_path: Path) -> None:
    m = effects_manifest()
    inputs = [{"id": "a", "costs": [3, 4]}, {"id": "b", "costs": [5]}]

    def run(path: Path, bank: Flaky, policies: Any) -> list[bytes]:
        with aos.World.open(path, m, adapters={"payment.send": bank}, effects="inline",
                            effect_policies=policies) as w:
            for v in inputs:
                w.submit("test/Pay@1", v)
            w.run()
        return journal_bytes(path, m)

    at_once = run(tmp_path / "once", Flaky(fails=0), None)
    retried = run(tmp_path / "retried", Flaky(fails=3),
                  {"cap:pay": aos.EffectPolicy(retries=3, backoff=0.001, jitter=0.5)})
    assert at_once == retried


@pytest.mark.parametrize("mode", MODES)
def test_retries_exhausted_admit_one_dead_letter_receipt_recording_the_attempts(tmp_path: Path, mode: str) -> None:
    m = effects_manifest()
    bank = Flaky(fails=1_000)
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": bank}, effects=mode,
                        effect_policies={"cap:pay": aos.EffectPolicy(retries=2, backoff=0.001)}) as w:
        pay(w, "a")
        assert w.run(settle=True, timeout=30).outstanding == 0
        assert w.state("test/Payer@1", "a")["receipts"] == [["error", 0, "payment.send"]]
        assert w.budget("pay").reserved == 0
        fx = w.metrics()["effects"]  # the outcomes, as the exporters serve them
        assert (fx["attempts_failed"], fx["dead_lettered"], fx["receipts"]) == (3, 1, {"error": 1})
        from aos.exporter import families

        served = {f.name: f for f in families(w.metrics())}
        assert served["aos_effect_attempts_failed"].samples[0][-1] == 3
        assert served["aos_effects_dead_lettered"].samples[0][-1] == 1
    (got,) = receipts(tmp_path / "w", m)
    assert got.status == "error" and got.cost == 0
    assert canonical.decode(got.payload) == {"error": "ConnectionError", "message": "bank unreachable (attempt 3)",
                                             "attempts": 3}
    assert bank.calls == {"1/0": 3}


def test_an_error_outcome_is_an_answer_and_is_not_retried(tmp_path: Path) -> None:
    m = effects_manifest()
    calls: list[str] = []

    def refuse(req: aos.EffectRequest) -> aos.Outcome:
        calls.append(req.idempotency_key)
        return aos.Outcome("error", {"why": "insufficient funds"}, 0)

    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": refuse}, effects="inline",
                        effect_policies={"cap:pay": aos.EffectPolicy(retries=5, backoff=0)}) as w:
        pay(w, "a")
        w.run()
    assert calls == ["1/0"]
    (got,) = receipts(tmp_path / "w", m)
    assert canonical.decode(got.payload) == {"why": "insufficient funds"}


@pytest.mark.parametrize("mode", MODES)
def test_park_keeps_the_intent_unsettled_across_a_reopen_until_retried_by_hand(tmp_path: Path, mode: str) -> None:
    m = effects_manifest()
    bank = Flaky(fails=2)
    policies = {"kind:payment.send": aos.EffectPolicy(retries=1, backoff=0.001, dead_letter="park")}
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": bank}, effects=mode,
                        effect_policies=policies) as w:
        pay(w, "a")
        assert w.run(settle=True, timeout=30).outstanding == 1
        (st,) = w.effect_status()
        assert (st.parked, st.attempts, st.last_error, st.idempotency_key) == (True, 2, "ConnectionError", "1/0")
        assert st.last_message == "bank unreachable (attempt 2)"
    assert receipts(tmp_path / "w", m) == [] and bank.calls == {"1/0": 2}
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": bank}, effects=mode,
                        effect_policies=policies) as w:
        assert w.run(settle=True, timeout=30).outstanding == 1
        assert bank.calls == {"1/0": 2}  # parked: not dispatched again at the reopen
        (st,) = w.effect_status()
        assert st.parked
        with pytest.raises(aos.DeadLetterError, match="no intent awaiting"):
            w.retry_effect("00" * 32)
        assert w.retry_effect(st.intent_hash.hex()[:10]) == st.intent_hash
        assert w.run(settle=True, timeout=30).outstanding == 0
        assert w.state("test/Payer@1", "a")["receipts"] == [["ok", 3, "payment.send"]]
        with pytest.raises(aos.DeadLetterError, match="no intent awaiting"):
            w.retry_effect(st.intent_hash)
    assert bank.calls == {"1/0": 3}
    assert [r.status for r in receipts(tmp_path / "w", m)] == ["ok"]


def test_give_up_admits_the_dead_letter_receipt(tmp_path: Path) -> None:
    m = effects_manifest()
    bank = Flaky(fails=1_000)
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": bank}, effects="background",
                        effect_policies={"cap:pay": aos.EffectPolicy(retries=0, dead_letter="park")}) as w:
        pay(w, "a", "b")
        w.run(settle=True, timeout=30)
        parked = w.effect_status()
        assert [s.parked for s in parked] == [True, True]
        w.give_up_effect(parked[0].intent_hash)
        w.run(settle=True, timeout=30)
        assert [s.intent_hash for s in w.effect_status()] == [parked[1].intent_hash]
        assert w.state("test/Payer@1", "a")["receipts"] == [["error", 0, "payment.send"]]
    (got,) = receipts(tmp_path / "w", m)
    assert canonical.decode(got.payload) == {"error": "ConnectionError", "message": "bank unreachable (attempt 1)",
                                             "attempts": 1}


def test_an_ambiguous_prefix_is_refused() -> None:
    from aos.effect_state import match_intent

    a, b = b"\xab" * 32, b"\xac" * 32
    with pytest.raises(aos.DeadLetterError, match="prefix a is ambiguous: 2 pending intents"):
        match_intent([a, b], "a")
    assert match_intent([a, b], "AB") == a


def test_an_intent_in_progress_is_not_retried_by_hand(tmp_path: Path) -> None:
    m = effects_manifest()
    with aos.World.open(tmp_path / "w", m, effects="manual",
                        effect_policies={"cap:pay": aos.EffectPolicy(retries=1, dead_letter="park")}) as w:
        pay(w, "a")
        w.run()
        (e,) = w.pending_effects()
        with pytest.raises(aos.DeadLetterError, match="not dead-lettered"):
            w.retry_effect(e.intent_hash)
        with pytest.raises(aos.DeadLetterError, match="hex text"):
            w.give_up_effect("not hex")


@pytest.mark.parametrize("mode", MODES)
def test_an_async_adapter_past_its_timeout_is_cancelled(tmp_path: Path, mode: str) -> None:
    m = effects_manifest()
    cancelled: list[str] = []

    async def hang(req: aos.EffectRequest) -> Any:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(req.idempotency_key)
            raise
        return {"paid": 0}

    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": hang}, effects=mode,
                        effect_policies={"cap:pay": aos.EffectPolicy(timeout=0.05, retries=1, backoff=0)}) as w:
        pay(w, "a")
        t0 = time.monotonic()
        assert w.run(settle=True, timeout=20).outstanding == 0
        assert time.monotonic() - t0 < 10
    assert cancelled == ["1/0", "1/0"]
    (got,) = receipts(tmp_path / "w", m)
    payload = canonical.decode(got.payload)
    assert payload["error"] == "EffectTimeoutError" and payload["attempts"] == 2
    assert "did not answer within 0.05 s (cancelled)" in payload["message"]


@pytest.mark.parametrize("mode", MODES)
def test_a_sync_adapter_past_its_timeout_has_its_late_answer_discarded(tmp_path: Path, mode: str) -> None:
    m = effects_manifest()
    release = threading.Event()
    answered: list[int] = []
    calls: list[str] = []

    def slow_first(req: aos.EffectRequest) -> Any:
        calls.append(req.idempotency_key)  # the same key on every attempt
        attempt = len(calls)
        if attempt == 1:
            release.wait(20)
        answered.append(attempt)
        return {"attempt": attempt}

    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": slow_first}, effects=mode,
                        effect_policies={"cap:pay": aos.EffectPolicy(timeout=0.1, retries=2, backoff=0)}) as w:
        pay(w, "a")
        assert w.run(settle=True, timeout=20).outstanding == 0
        release.set()
        deadline = time.monotonic() + 10
        while len(answered) < 2 and time.monotonic() < deadline:  # the first attempt answers late
            time.sleep(0.01)
        assert sorted(answered) == [1, 2]
        assert w.run(settle=True, timeout=1).receipts == 0  # the late answer is not admitted
    assert calls == ["1/0", "1/0"]
    (got,) = receipts(tmp_path / "w", m)
    assert got.status == "ok" and canonical.decode(got.payload) == {"attempt": 2}


@pytest.mark.parametrize("policies, key, message", [
    ({"payment.send": aos.EffectPolicy()}, "payment.send", "must be 'kind:<effect kind>' or 'cap:<capability>'"),
    ({"cap:nope": aos.EffectPolicy()}, "cap:nope", "declares no capability 'nope'"),
    ({"kind:rocket.launch": aos.EffectPolicy()}, "kind:rocket.launch", "no capability of the manifest covers"),
    ({"cap:pay": {"retries": 2}}, "cap:pay", "must be an aos.EffectPolicy, got dict"),
    ({3: aos.EffectPolicy()}, None, "is not a string"),
])
def test_bad_policy_keys_are_refused_before_the_world_is_touched(tmp_path: Path, policies: Any, key: Any,
                                                                 message: str) -> None:
    with pytest.raises(aos.EffectPolicyError, match=message) as info:
        aos.World.open(tmp_path / "w", effects_manifest(), effect_policies=policies)
    assert info.value.key == key
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("fields, message", [
    ({"retries": -1}, "retries must be an int >= 0"),
    ({"retries": 1.5}, "retries must be an int >= 0"),
    ({"timeout": 0}, "timeout must be a number of seconds > 0 or None"),
    ({"timeout": float("inf")}, "timeout must be"),
    ({"backoff": -0.1}, "backoff must be a number of seconds >= 0"),
    ({"max_backoff": "1"}, "max_backoff must be"),
    ({"jitter": 2}, "jitter must be a fraction from 0 to 1"),
    ({"dead_letter": "drop"}, "dead_letter must be one of"),
])
def test_bad_policies_raise_typed_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(aos.EffectPolicyError, match=message):
        aos.EffectPolicy(**fields)


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    p = aos.EffectPolicy(backoff=1, max_backoff=5, jitter=0)
    assert [p.delay(n) for n in (1, 2, 3, 4, 10)] == [1, 2, 4, 5, 5]
    j = aos.EffectPolicy(backoff=1, max_backoff=100, jitter=0.5)
    assert all(2 <= j.delay(3) <= 6 for _ in range(200))


def test_a_damaged_side_state_is_a_typed_error(tmp_path: Path) -> None:
    m = effects_manifest()
    aos.World.open(tmp_path / "w", m).close()
    (tmp_path / "w" / "effects.cbor").write_bytes(b"\xff garbage")
    with pytest.raises(aos.EffectStateError, match="effects.cbor is damaged"):
        aos.World.open(tmp_path / "w", m)
    (tmp_path / "w" / "effects.cbor").unlink()
    aos.World.open(tmp_path / "w", m).close()  # the lock was released


# ------------------------------------------------------------------ the CLI
def _parked_world(path: Path) -> tuple[aos.Manifest, Flaky, dict[str, aos.EffectPolicy]]:
    m = effects_manifest()
    bank = Flaky(fails=1)
    policies = {"cap:pay": aos.EffectPolicy(retries=0, dead_letter="park")}
    with aos.World.open(path, m, adapters={"payment.send": bank}, effects="background",
                        effect_policies=policies) as w:
        pay(w, "a")
        w.submit("test/Pay@1", {"id": "b", "costs": [2]})
        w.run(settle=True, timeout=30)
        w.submit("test/Pay@1", {"id": "t", "timer": 3_600_000})
        w.run()  # the timer is dispatched: its deadline is fixed
        deadline = time.monotonic() + 10
        while not [s for s in w.effect_status() if s.deadline_ms] and time.monotonic() < deadline:
            time.sleep(0.01)
    return m, bank, policies


def test_cli_effects_lists_pending_and_dead_lettered_intents_and_marks_one_for_retry(tmp_path: Path) -> None:
    m, bank, policies = _parked_world(tmp_path / "w")
    runner = CliRunner()
    out = runner.invoke(cli, ["effects", str(tmp_path / "w")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["intent", "kind", "cap", "idempotency", "key", "attempts", "next", "attempt",
                                "timer", "deadline", "state", "last", "error"]
    assert len([x for x in lines if "payment.send" in x and "parked" in x]) == 2
    assert len([x for x in lines if "timer.set" in x and "queued" in x]) == 1
    assert "3 pending: 2 dead-lettered (parked)" in out.output
    assert "ConnectionError: bank unreachable (attempt 1)" in out.output
    hashes = [e.intent_hash for e in _pending(tmp_path / "w", m) if e.kind == "payment.send"]

    out = runner.invoke(cli, ["effects", str(tmp_path / "w"), "--retry", hashes[0].hex()[:12]])
    assert out.exit_code == 0, out.output
    assert f"intent {hashes[0].hex()} is marked for retry at the next open" in out.output
    assert "marked for retry" in runner.invoke(cli, ["effects", str(tmp_path / "w")]).output

    bad = runner.invoke(cli, ["effects", str(tmp_path / "w"), "--retry", "zz"])
    assert bad.exit_code != 0 and "hex text" in bad.output
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": bank}, effects="background",
                        effect_policies=policies) as w:
        busy = runner.invoke(cli, ["effects", str(tmp_path / "w"), "--retry", hashes[1].hex()])
        assert busy.exit_code != 0 and "is open" in busy.output and "close it" in busy.output
        listed = runner.invoke(cli, ["effects", str(tmp_path / "w")])  # listing an open world is fine
        assert listed.exit_code == 0 and "(the world is open" in listed.output
        deadline = time.monotonic() + 10  # (the hour-long timer stays outstanding)
        while not w.state("test/Payer@1", "a")["receipts"] and time.monotonic() < deadline:
            w.run(settle=True, timeout=0.05)
        assert w.state("test/Payer@1", "a")["receipts"] == [["ok", 3, "payment.send"]]
        assert [s.intent_hash for s in w.effect_status() if s.parked] == [hashes[1]]
    assert bank.calls == {"1/0": 2, "2/0": 1}


def test_cli_effects_json_and_an_empty_world(tmp_path: Path) -> None:
    import json

    _parked_world(tmp_path / "w")
    out = CliRunner().invoke(cli, ["effects", str(tmp_path / "w"), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert [e["state"] for e in doc["pending"]] == ["parked", "parked", "queued"]
    timer = doc["pending"][2]
    assert timer["kind"] == "timer.set" and timer["deadline_ms"] > time.time() * 1000 + 3_000_000
    assert doc["pending"][0]["last_error"] == "ConnectionError" and doc["pending"][0]["attempts"] == 1
    aos.World.open(tmp_path / "e", effects_manifest()).close()
    out = CliRunner().invoke(cli, ["effects", str(tmp_path / "e")])
    assert out.exit_code == 0 and out.output.strip() == "no pending effects"


def _pending(path: Path, m: aos.Manifest) -> list[aos.QueuedEffect]:
    with aos.World.open(path, m, effects="manual") as w:
        return w.pending_effects()


def test_a_reopened_world_goes_on_from_the_attempts_made_and_waits_for_the_next_one_due(tmp_path: Path) -> None:
    m = effects_manifest()
    first = Flaky(fails=1_000)
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": first}, effects="background",
                        effect_policies={"cap:pay": aos.EffectPolicy(retries=5, backoff=0.5, jitter=0)}) as w:
        pay(w, "a")
        w.run()
        end = time.monotonic() + 10
        while not (w.effect_status() and w.effect_status()[0].attempts) and time.monotonic() < end:
            time.sleep(0.005)
        (st,) = w.effect_status()
    assert first.calls == {"1/0": 1} and st.attempts == 1 and st.last_error == "ConnectionError"
    assert st.next_attempt_ms is not None
    second = Flaky(fails=1_000)
    with aos.World.open(tmp_path / "w", m, adapters={"payment.send": second}, effects="background",
                        effect_policies={"cap:pay": aos.EffectPolicy(retries=1, backoff=0)}) as w:
        assert w.run(settle=True, timeout=30).outstanding == 0
    assert second.calls == {"1/0": 1}  # one attempt was left of the two the policy now allows
    assert second.wall_ms[0] >= st.next_attempt_ms - 1  # not before it was due (ms resolution)
    (got,) = receipts(tmp_path / "w", m)
    assert canonical.decode(got.payload)["attempts"] == 2


def test_cli_effects_lists_the_intents_pending_at_a_compacted_journals_base(tmp_path: Path) -> None:
    """After ``aos compact`` the journal no longer holds the EffectQueued of an intent still pending: the
    base snapshot's outbox does."""
    from aos.retention import compact

    m = effects_manifest()
    path = tmp_path / "w"
    with aos.World.open(path, m, effects="manual", segment_bytes=4096, snapshot_every=0) as w:
        w.submit("test/Pay@1", {"id": "early", "costs": [2]})
        w.run()
        for i in range(200):  # enough records to fill segments before the snapshot
            w.submit("test/Pay@1", {"id": f"n{i}"})
        w.run()
        w.snapshot()
        w.submit("test/Pay@1", {"id": "late", "costs": [3]})
        w.run()
        pending = {e.intent_hash for e in w.pending_effects()}
    assert len(pending) == 2
    result = compact(path)
    assert result.segments_removed, "the early intent's EffectQueued should have been compacted away"
    out = CliRunner().invoke(cli, ["effects", str(path), "--json"])
    assert out.exit_code == 0, out.output
    import json

    listed = {bytes.fromhex(e["intent_hash"]) for e in json.loads(out.output)["pending"]}
    assert listed == pending
