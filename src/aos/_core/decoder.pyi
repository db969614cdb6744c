"""The canonical CBOR reader of the step path (``decoder.pyx``)."""

from typing import Any, Final, final

__all__ = ["decode", "UNHANDLED", "record_fields", "event_admitted_fields", "MAX_DEPTH"]

@final
class _Unhandled:
    """The marker of a value this reader leaves to the general path."""

UNHANDLED: Final[_Unhandled]
MAX_DEPTH: Final[int]

# The decoded value is any value of the model (None, bool, int, float, str, bytes, lists, maps), so Any;
# or UNHANDLED, which callers test for by identity.
def decode(data: bytes, strict: bool = False) -> Any: ...
def record_fields(kind: int, payload: bytes) -> tuple[Any, ...] | None: ...
def event_admitted_fields(payload: bytes) -> tuple[int, str, bytes, int | None] | None:
    """``(seq, schema, value, visible_at)`` of an ``EventAdmitted`` payload laid out as aos writes it, else None."""
