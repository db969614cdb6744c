"""The outbox: allowed effect intents queued for adapters, until their receipt.

Its contents are kernel state (snapshotted), so a world that reopens knows
which intents still await a receipt and dispatches them again with the same
idempotency keys.

Settled intents: the hashes of the last ``keep`` intents a receipt settled,
in settle order (``keep`` is fixed when the world is created: ``World.open(...,
settled_keep=)``, kept in ``world.cbor``; a world created before it has none
and keeps every settled intent). They are what refusing a duplicate receipt
(:class:`~aos.errors.DuplicateReceiptError`) and a re-intended effect (the
committer's "duplicate intent" denial) look at. The oldest is forgotten when
a newer one would exceed ``keep``, in commit order, so a replay and every
worker count forget the same ones; a receipt for a forgotten intent is then
refused as :class:`~aos.errors.UnknownIntentError`, and a step intending
it again has it allowed again. The journal keeps every receipt
(docs/effects.md, "Bounded outbox").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Outbox", "QueuedEffect", "DEFAULT_SETTLED_KEEP", "settled_keep_of", "check_settled_keep"]

DEFAULT_SETTLED_KEEP = 100_000  # settled intents a world created now remembers


@dataclass(frozen=True, slots=True)
class QueuedEffect:
    """An intent awaiting its receipt, and the cell that intended it."""

    intent_hash: bytes
    kind: str
    params: bytes  # canonical CBOR
    cap: str
    idempotency_key: str
    cost: int  # reserved
    event_id: int
    reducer: str
    key: Any

    def to_wire(self) -> list[Any]:
        return [self.intent_hash, self.kind, self.params, self.cap, self.idempotency_key, self.cost,
                self.event_id, self.reducer, self.key]


def check_settled_keep(keep: Any) -> int:
    if type(keep) is not int or keep < 1:
        from aos.errors import ArgumentError

        raise ArgumentError(f"settled_keep must be an int >= 1, got {keep!r}")
    return keep


def settled_keep_of(meta: Any) -> int | None:
    """The ``settled_keep`` of a world's metadata (None: a world created before it, which keeps every one)."""
    keep = meta.get("settled_keep")
    if keep is not None and (type(keep) is not int or keep < 1):
        raise ValueError(f"settled_keep must be an int >= 1, got {keep!r}")
    return keep


class Outbox:
    """Queued effects in commit order, and the hashes of the last ``keep`` settled ones (None: all of them)."""

    __slots__ = ("queued", "settled", "keep", "settled_count")

    def __init__(self, keep: int | None = None) -> None:
        self.queued: dict[bytes, QueuedEffect] = {}
        self.settled: dict[bytes, None] = {}  # an ordered set: oldest settled first
        self.keep = keep
        self.settled_count = 0  # intents ever settled (forgotten ones included)

    def __len__(self) -> int:
        return len(self.queued)

    @property
    def forgotten(self) -> int:
        """Settled intents no longer remembered."""
        return self.settled_count - len(self.settled)

    def add(self, effect: QueuedEffect) -> None:
        self.queued[effect.intent_hash] = effect

    def settle(self, intent_hash: bytes) -> QueuedEffect:
        effect = self.queued.pop(intent_hash)
        settled = self.settled
        settled[intent_hash] = None
        self.settled_count += 1
        if self.keep is not None and len(settled) > self.keep:
            del settled[next(iter(settled))]
        return effect

    def export(self) -> dict[str, Any]:
        if self.keep is None:  # as before settled intents were bounded
            return {"queued": [e.to_wire() for e in self.queued.values()], "settled": sorted(self.settled)}
        return {"queued": [e.to_wire() for e in self.queued.values()], "settled": list(self.settled),
                "count": self.settled_count}

    def restore(self, doc: dict[str, Any]) -> None:
        for w in doc["queued"]:
            e = QueuedEffect(*w)
            self.queued[e.intent_hash] = e
        self.settled = dict.fromkeys(doc["settled"])
        count = doc.get("count", len(self.settled))
        if type(count) is not int or count < len(self.settled):
            raise ValueError("outbox count must be an int at least the number of settled intents")
        self.settled_count = count
        keep = self.keep
        if keep is not None:
            while len(self.settled) > keep:
                del self.settled[next(iter(self.settled))]
