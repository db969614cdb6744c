"""The fields of a step's context and of the event a reducer sees (``context.pyx``).

The field types are those :mod:`aos.context` gives them (its ``StepContext`` and
``Event`` subclass these classes and fill the fields).
"""

from typing import Any, Callable

from aos.admission import Admission, Route
from aos.capability import Ledger
from aos.records import Emit, Intent
from aos.rng import Rng

__all__ = ["StepFields", "EventFields", "TypedPlan"]

class StepFields:
    event_id: int
    reducer: str
    key: str | int | bytes | None
    _admission: Admission
    _ledger: Ledger
    _rng: Rng | None
    emits: list[Emit]
    routes: list[tuple[Route, ...]]
    intents: list[Intent]
    reads: dict[str, int]

class EventFields:
    schema: str
    value: Any  # a decoded value of the value model
    seq: int

class TypedPlan:
    fn: Callable[[Any, Any, Any], Any]
    wrapper: Callable[[Any, Any, Any], Any]
    state_type: type | None
    state_fields: tuple[str, ...]
    events: dict[str, tuple[type, tuple[str, ...]]]
    returned: Callable[[Any], Any]
    def __init__(self, fn: Callable[[Any, Any, Any], Any], wrapper: Callable[[Any, Any, Any], Any],
                 state_type: type | None, state_fields: tuple[str, ...],
                 events: dict[str, tuple[type, tuple[str, ...]]], returned: Callable[[Any], Any]) -> None: ...
