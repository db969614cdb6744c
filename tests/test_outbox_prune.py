"""Bounded outbox: a world remembers only its last ``settled_keep`` settled intents (fixed at creation).

Checked from the outside — snapshots, receipts, replay: the settled intents
a snapshot holds stay bounded over many effects, a receipt for a recent one
is a duplicate, one for a forgotten one an unknown intent (refused all the
same), and snapshot, reopen, replay and every worker count agree on what is
remembered. A world created before the bound keeps every settled intent
(docs/effects.md, "Bounded outbox").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.snapshot import list_snapshots
from aos.world import META
from effects_world import effects_manifest, payment_adapter


def manifest() -> aos.Manifest:
    """Payments; a ``test/Again@1`` event intends the payment with idempotency key ``key`` again."""
    m = aos.Manifest("test/prune@1")
    m.capability("pay", effect="payment.send", budget=10**9)

    @m.reducer("test/Payer@1", key="id", events=["test/Pay@1"])
    def payer(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"receipts": 0, "denied": []}
        if event.schema == "sys/Receipt@1":
            state["receipts"] += 1
        elif event.schema == "sys/EffectDenied@1":
            state["denied"].append(event.value["idempotency_key"])
        else:
            ctx.effect("payment.send", {"to": ctx.key}, cost=1, idempotency_key=event.value["key"])
        return state

    return m


def pay(w: aos.World, keys: range | list[str]) -> None:
    for k in keys:
        w.submit("test/Pay@1", {"id": "p", "key": str(k)})
        w.run()


def newest_snapshot(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = canonical.decode(list_snapshots(path / "snapshots")[-1].read_bytes())
    return doc


def test_the_outbox_stays_bounded_over_many_effects_and_the_count_goes_on(tmp_path: Path) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, settled_keep=5, effects="inline",
                        adapters={"payment.send": payment_adapter()}) as w:
        pay(w, range(40))
        assert w.metrics()["effects"]["settled"] == 40  # every one settled, counted
        assert w.state("test/Payer@1", "p")["receipts"] == 40
        w.snapshot()
        h = w.snapshot_hash()
    doc = newest_snapshot(tmp_path / "w")
    assert len(doc["outbox"]["settled"]) == 5 and doc["outbox"]["count"] == 40
    assert canonical.decode((tmp_path / "w" / META).read_bytes())["settled_keep"] == 5
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_a_receipt_for_a_forgotten_intent_is_refused_as_unknown_and_a_recent_one_as_duplicate(
        tmp_path: Path) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, settled_keep=3, effects="manual") as w:
        hashes = []
        for k in range(6):
            w.submit("test/Pay@1", {"id": "p", "key": f"k{k}"})
            w.run()
            (effect,) = w.pending_effects()
            hashes.append(effect.intent_hash)
            w.submit_receipt(w.receipt(effect.intent_hash, "ok", None, 1))
        with pytest.raises(aos.DuplicateReceiptError, match="already settled"):
            w.submit_receipt(w.receipt(hashes[-1], "ok", None, 1))  # remembered
        with pytest.raises(aos.UnknownIntentError, match="3 older ones forgotten: refused all the same"):
            w.submit_receipt(w.receipt(hashes[0], "ok", None, 1))  # forgotten
        w.run()
        assert w.state("test/Payer@1", "p")["receipts"] == 6  # neither refused receipt was admitted
    with aos.World.open(tmp_path / "w", m, effects="manual") as w:  # reopened: the same answers
        with pytest.raises(aos.DuplicateReceiptError):
            w.submit_receipt(w.receipt(hashes[-3], "ok", None, 1))
        with pytest.raises(aos.UnknownIntentError, match="forgotten"):
            w.submit_receipt(w.receipt(hashes[-4], "ok", None, 1))


def test_an_intent_is_a_duplicate_while_remembered_and_allowed_again_once_forgotten(tmp_path: Path) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, settled_keep=3, effects="inline",
                        adapters={"payment.send": payment_adapter()}) as w:
        pay(w, ["a", "b", "a"])  # "a" settled and remembered: denied as a duplicate intent
        assert w.state("test/Payer@1", "p") == {"receipts": 2, "denied": ["a"]}
        pay(w, ["c", "d", "a"])  # "a" forgotten (b, c, d remembered): allowed again
        assert w.state("test/Payer@1", "p") == {"receipts": 5, "denied": ["a"]}
        h = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_snapshot_reopen_replay_and_worker_counts_remember_the_same_settled_intents(tmp_path: Path) -> None:
    m = effects_manifest(budget=10**6)
    journals, remembered = {}, {}
    for workers in (0, 2):
        path = tmp_path / f"w{workers}"
        with aos.World.open(path, m, settled_keep=7, workers=workers, offload="all", effects="inline",
                            snapshot_every=11, adapters={"payment.send": payment_adapter()}) as w:
            for i in range(60):
                w.submit("test/Pay@1", {"id": f"p{i % 5}", "costs": [1 + i % 3], "timer": None})
                if i % 7 == 0:
                    w.run()
            w.run()
            remembered[workers] = list(w._kernel.outbox.settled)
            h = w.snapshot_hash()
        journals[workers] = b"".join(p.read_bytes() for p in sorted((path / "journal").glob("*.seg")))
        r = aos.replay(path, m)
        assert r.verify() == h and r.kernel is not None
        assert list(r.kernel.outbox.settled) == remembered[workers]
        with aos.World.open(path, m, effects="manual") as w2:  # the newest snapshot + the journal after it
            assert list(w2._kernel.outbox.settled) == remembered[workers]
            assert w2.metrics()["effects"]["settled"] == 60
    assert journals[0] == journals[2] and remembered[0] == remembered[2] and len(remembered[0]) == 7


def test_settled_keep_is_fixed_at_creation_and_checked(tmp_path: Path) -> None:
    m = manifest()
    with pytest.raises(aos.ArgumentError, match="settled_keep"):
        aos.World.open(tmp_path / "bad", m, settled_keep=0)
    aos.World.open(tmp_path / "w", m, settled_keep=4).close()
    with pytest.raises(aos.ManifestMismatchError, match="settled_keep 4, not 5"):
        aos.World.open(tmp_path / "w", m, settled_keep=5)
    aos.World.open(tmp_path / "w", m, settled_keep=4).close()
    aos.World.open(tmp_path / "w", m).close()  # None: as created
    meta = canonical.decode((tmp_path / "w" / META).read_bytes())
    (tmp_path / "w" / META).write_bytes(canonical.encode(dict(meta, settled_keep="many")))
    with pytest.raises(aos.StorageError, match="settled_keep must be an int"):
        aos.World.open(tmp_path / "w", m)


def test_a_world_created_before_the_bound_keeps_every_settled_intent(tmp_path: Path) -> None:
    m = manifest()
    aos.World.open(tmp_path / "w", m).close()
    meta = canonical.decode((tmp_path / "w" / META).read_bytes())
    del meta["settled_keep"]  # world.cbor as worlds were created before settled_keep
    (tmp_path / "w" / META).write_bytes(canonical.encode(meta))
    with aos.World.open(tmp_path / "w", m, effects="inline", adapters={"payment.send": payment_adapter()}) as w:
        pay(w, range(12))
        w.snapshot()
        h = w.snapshot_hash()
    doc = newest_snapshot(tmp_path / "w")
    assert doc["outbox"]["settled"] == sorted(doc["outbox"]["settled"]) and len(doc["outbox"]["settled"]) == 12
    assert "count" not in doc["outbox"]  # the snapshot as such worlds wrote it
    assert aos.replay(tmp_path / "w", m).verify() == h
