"""What a reducer sees: the event and the step context ``ctx``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aos import canonical
from aos._core.context import EventFields, StepFields
from aos.canonical import INT64_MAX
from aos.errors import InvalidEffectError, brief
from aos.records import Emit, Intent
from aos.rng import Rng, step_seed

if TYPE_CHECKING:
    from aos.admission import Admission, Route
    from aos.capability import Ledger

__all__ = ["Event", "StepContext"]


class Event(EventFields):
    """An event delivered to a reducer: ``schema`` and a fresh decoded ``value``."""

    __slots__ = ()  # the fields are EventFields' (aos/_core/context.pyx)

    def __init__(self, schema: str, value: Any, seq: int) -> None:
        self.schema = schema
        self.value = value
        self.seq = seq  # admission number

    def __repr__(self) -> str:
        return f"Event({self.schema!r}, {self.value!r})"


class StepContext(StepFields):
    """The context of one step.

    ``event_id`` is the step's ticket; ``reducer`` and ``key`` name its cell;
    ``rng`` is seeded by (event_id, reducer, key). ``emit`` and ``effect``
    record outputs that take effect only if the step commits.
    """

    __slots__ = ()  # the fields are StepFields' (aos/_core/context.pyx)

    def __init__(self, event_id: int, reducer: str, key: Any, admission: "Admission",
                 ledger: "Ledger") -> None:
        self.event_id = event_id
        self.reducer = reducer
        self.key = key
        self._admission = admission
        self._ledger = ledger
        self._rng: Rng | None = None
        self.emits: list[Emit] = []
        self.routes: list[tuple["Route", ...]] = []
        self.intents: list[Intent] = []
        self.reads: dict[str, int] = {}

    @property
    def seed(self) -> bytes:
        """The step's 32-byte seed: BLAKE3 of ``[event_id, reducer, key]``."""
        if self._rng is not None:
            return self._rng.seed
        return step_seed(self.event_id, self.reducer, self.key)

    @property
    def rng(self) -> Rng:
        """The step's deterministic random number generator."""
        if self._rng is None:
            self._rng = Rng(step_seed(self.event_id, self.reducer, self.key))
        return self._rng

    def emit(self, schema: str, value: Any) -> None:
        """Emit a domain event; it is admitted, in emit order, when this step commits.

        Raises the admission errors (unknown schema, missing key field,
        unencodable value) at once, inside the reducer.
        """
        adm = self._admission.check(schema, value, origin=f"event emitted by {self.reducer}")
        self.emits.append(Emit(adm.schema, adm.value))
        self.routes.append(adm.routes)

    def budget(self, cap: str) -> int:
        """The remaining budget of capability ``cap`` as of ticket − 1.

        The read is recorded: the committer re-validates it, and a step that
        read a stale value is computed again before it commits.
        """
        try:
            value = self._ledger.remaining(cap)
        except KeyError:
            raise KeyError(f"unknown capability {brief(cap)}") from None
        self.reads[cap] = value
        return value

    def effect(self, kind: str, params: Any, *, cap: str | None = None,
               idempotency_key: str | None = None, cost: int = 0) -> bytes:
        """Record an effect intent; returns its intent hash.

        Raises :class:`~aos.errors.InvalidEffectError` (a ``TypeError`` and a
        ``ValueError``) for an argument a journal record cannot hold: ``kind``
        not a non-empty string, ``cap`` or ``idempotency_key`` not a string,
        ``cost`` not an int from 0 to 2**63-1; and
        :class:`~aos.errors.UnencodableValueError` for ``params`` (or a string)
        outside the value model. Uncaught, either fails the step.

        ``cap`` defaults to the one capability covering ``kind`` (an intent no
        capability covers is denied at commit). ``cost`` is reserved from the
        capability's budget at commit and settled by the receipt.
        Intent hash = BLAKE3(canonical CBOR of [kind, params, cap, idempotency key]).
        The default idempotency key is ``"<event_id>/<index>"``, the index
        counting this step's intents from 0, so it is the same on every run.
        """
        if not isinstance(kind, str) or not kind:
            raise InvalidEffectError(f"effect kind must be a non-empty string, got {brief(kind)}")
        kind = str.__str__(kind)  # a str subclass: its plain text, as records hold it
        if cap is None:
            covering = self._admission.manifest.covering(kind)
            if len(covering) > 1:
                raise InvalidEffectError(f"effect {kind}: capabilities {[c.name for c in covering]} all cover it; "
                                         "pass cap= to choose")
            cap = covering[0].name if covering else None  # None: denied at commit
        elif isinstance(cap, str):
            cap = str.__str__(cap)
        else:
            raise InvalidEffectError(f"effect cap must be a capability name, got {brief(cap)}")
        if type(cost) is not int or cost < 0 or cost > INT64_MAX:
            raise InvalidEffectError(f"effect {kind}: cost must be an int from 0 to 2**63-1 "
                                     f"(costs are journaled as signed 64-bit ints), got {brief(cost)}")
        if idempotency_key is None:
            idempotency_key = f"{self.event_id}/{len(self.intents)}"
        elif isinstance(idempotency_key, str):
            idempotency_key = str.__str__(idempotency_key)
        else:
            raise InvalidEffectError(f"idempotency_key must be a string, got {type(idempotency_key).__name__}")
        params_bytes = canonical.encode(params, where=f"params of effect {kind}")
        # The canonical encoding of [kind, params, cap, key], built around the
        # params bytes already encoded (a 4-element array head is 0x84).
        intent_hash = canonical.digest(b"\x84" + canonical.encode(kind) + params_bytes
                                       + canonical.encode(cap) + canonical.encode(idempotency_key))
        self.intents.append(Intent(kind, params_bytes, cap, idempotency_key, cost, intent_hash))
        return intent_hash


