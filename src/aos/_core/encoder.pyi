"""The canonical CBOR writer of the step path and the record writers (``encoder.pyx``)."""

from typing import Final

from aos.records import Emit, Intent

__all__ = ["encode", "ordered", "event_admitted", "step_scheduled", "step_committed", "write_record", "record_payload",
           "bind_record_classes", "record_kind", "MAX_DEPTH"]

MAX_DEPTH: Final[int]

def encode(value: object) -> bytes | None:
    """Canonical CBOR of ``value``, or None when it needs the general path."""

def ordered(value: object) -> bytes | None:
    """CBOR of a record map whose keys are already in canonical order, or None."""

def bind_record_classes(classes: dict[str, type], emit: type[Emit], intent: type[Intent]) -> None: ...
def write_record(kind: int, values: tuple[object, ...]) -> bytes | None: ...
def record_payload(record: object) -> bytes | None: ...
def step_scheduled(event_id: int, reducer: str, key: str | int | bytes | None, input: int,
                   lane_id: int = 0) -> bytes: ...
def step_committed(event_id: int, state_hash: bytes | None, emits: tuple[Emit, ...], effects: tuple[Intent, ...],
                   lane_id: int = 0) -> bytes: ...
def event_admitted(seq: int, schema: str, value: bytes, lane_id: int = 0, visible_at: int | None = None,
                   origin: tuple[int, ...] | None = None, idempotency_key: str | None = None) -> bytes: ...
def record_kind(payload: bytes) -> str | None:
    """The ``kind`` of a record payload, read without decoding the rest (None if not found)."""
