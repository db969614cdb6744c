"""The outbox: allowed effect intents queued for adapters, until their receipt.

Its contents are kernel state (snapshotted), so a world that reopens knows
which intents still await a receipt and dispatches them again with the same
idempotency keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Outbox", "QueuedEffect"]


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


class Outbox:
    """Queued effects in commit order, and the hashes of settled ones."""

    __slots__ = ("queued", "settled")

    def __init__(self) -> None:
        self.queued: dict[bytes, QueuedEffect] = {}
        self.settled: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.queued)

    def add(self, effect: QueuedEffect) -> None:
        self.queued[effect.intent_hash] = effect

    def settle(self, intent_hash: bytes) -> QueuedEffect:
        effect = self.queued.pop(intent_hash)
        self.settled.add(intent_hash)
        return effect

    def export(self) -> dict[str, Any]:
        return {"queued": [e.to_wire() for e in self.queued.values()], "settled": sorted(self.settled)}

    def restore(self, doc: dict[str, Any]) -> None:
        for w in doc["queued"]:
            e = QueuedEffect(*w)
            self.queued[e.intent_hash] = e
        self.settled = set(doc["settled"])
