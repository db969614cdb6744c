"""Journal record kinds (DESIGN §4) and their canonical encoding.

Every record is a canonical CBOR map with a ``kind`` and a ``lane_id`` (0
for now), and an ``event_id`` where it has one. Event values, emitted
values and effect parameters are carried as their canonical CBOR encoding
(a byte string), so records are written and compared without re-encoding
user values. See docs/storage.md for the field reference.

The kinds, their fields, types and wire order are declared once, in
:mod:`aos.schema`; the classes here take ``FIELDS`` and ``WIRE_ORDER`` from
it (and the import fails if a class's fields differ from its declaration),
their wire conversions and type checks follow the declared types, and
:func:`encode_record` writes every kind in C from the same declaration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import cbor2

from aos import canonical
from aos import schema as record_schema
from aos._core.encoder import bind_record_classes, ordered, record_payload
from aos._core.encoder import event_admitted as admitted_payload
from aos._core.encoder import step_committed as committed_payload
from aos._core.encoder import step_scheduled as scheduled_payload
from aos.errors import JournalCorruptError, NonCanonicalError

__all__ = [
    "Record", "EventAdmitted", "StepScheduled", "StepCommitted", "StepFailed",
    "SnapshotCreated", "PolicyDecision", "EffectQueued", "ReceiptAppended", "InvariantViolated",
    "ProposalSubmitted", "ApprovalRecorded", "ShadowRunCompleted", "EraApplied", "CellMigrated", "ERA_KINDS",
    "BudgetGranted",
    "Emit", "Intent", "encode_record", "decode_record", "KINDS", "scheduled_payload", "committed_payload",
    "admitted_payload", "admissions", "AdmissionNumbers",
]

Key = Any  # str | int | bytes | None


@dataclass(frozen=True, slots=True)
class Emit:
    """An event emitted by a step; admitted when the step commits."""

    schema: str
    value: bytes  # canonical CBOR

    def to_wire(self) -> list[Any]:
        return [getattr(self, name) for name in record_schema.EMIT.names]


@dataclass(frozen=True, slots=True)
class Intent:
    """An effect intended by a step (gated at commit by the effects layer)."""

    kind: str
    params: bytes  # canonical CBOR
    cap: str | None
    idempotency_key: str
    cost: int
    intent_hash: bytes

    def to_wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _INTENT_WIRE}


_INTENT_WIRE = tuple(slot.name for slot in record_schema.layout(record_schema.INTENT))  # canonical key order
_INTENT_FIELDS = frozenset(record_schema.INTENT.names)


class Record:
    """Base of all record kinds (their fields: :mod:`aos.schema`)."""

    __slots__ = ()
    KIND: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]  # the declared fields, in declaration order
    WIRE_ORDER: ClassVar[tuple[str, ...]] = ()  # FIELDS and "kind" in canonical key order
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()  # fields left out of the map when None
    TYPES: ClassVar[tuple[str, ...]] = ()  # the declared type of each field (aos.schema.TYPES)
    _WIRE: ClassVar[tuple[tuple[str, Callable[[Any], Any] | None], ...]] = ()  # (key, conversion; None: kind)
    _READ: ClassVar[tuple[tuple[str, Callable[[Any, str], Any] | None], ...]] = ()  # (field, conversion)
    _CHECKS: ClassVar[tuple[tuple[str, str, Callable[[Any], bool]], ...]] = ()  # (field, type, check)

    def to_wire(self) -> dict[str, Any]:
        """The record as a map whose keys are already in canonical order (an optional field that is None
        left out)."""
        out: dict[str, Any] = {}
        for name, to_wire in self._WIRE:
            if to_wire is None:
                out[name] = self.KIND
                continue
            v = getattr(self, name)
            if v is None and name in self.OPTIONAL:
                continue
            out[name] = to_wire(v)
        return out

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "Record":
        for name in cls.OPTIONAL:
            if name in m and m[name] is None:
                raise ValueError(f"{name} is null (an optional field is left out, never null)")
        return cls(*[(m.get(name) if conv is None or m.get(name) is None else conv(m[name], name))
                     if name in cls.OPTIONAL else m[name] if conv is None else conv(m[name], name)
                     for name, conv in cls._READ])


@dataclass(frozen=True, slots=True)
class EventAdmitted(Record):
    """An external event admitted into the world (an input).

    ``visible_at``: the ticket from which it may be scheduled (the next
    ticket when it was admitted with nothing in flight, a later one when
    tickets were in flight; docs/scheduling.md). None only in records written
    before the field existed: visible to the next ticket of a serial replay.

    ``origin``: ``(source, n)`` for an event a lane world accepted as the
    ``n``-th message of ``source`` (another lane, or a fleet's client); None
    for any other event (docs/fleet.md, "The lane world").

    ``idempotency_key``: the key it was submitted with
    (``World.submit(..., idempotency_key=)``), None for an event submitted
    without one (and in records written before the field existed); the
    world's index of keys is rebuilt from these (:mod:`aos.idempotency`).
    """

    seq: int
    schema: str
    value: bytes
    lane_id: int = 0
    visible_at: int | None = None
    origin: tuple[int, int] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class StepScheduled(Record):
    """Ticket ``event_id`` was given to cell (reducer, key) for admitted input ``input``."""

    event_id: int
    reducer: str
    key: Key
    input: int
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class StepCommitted(Record):
    """The step committed: its cell's new state hash (None: cell deleted), emits, intents."""

    event_id: int
    state_hash: bytes | None
    emits: tuple[Emit, ...] = ()
    effects: tuple[Intent, ...] = ()
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class StepFailed(Record):
    """The reducer of cell (``reducer``, ``key``) raised: the cell is unchanged, nothing it emitted is admitted.

    ``World.failures()`` lists these records.
    """

    event_id: int
    reducer: str
    key: Key
    error: str  # the exception type's qualified name
    message: str  # its message: memory addresses replaced by 0x?, cut at 2,000 characters
    traceback: str = ""  # the reducer's frames, deterministic (see aos.step.failure_traceback)
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotCreated(Record):
    """A snapshot of all cells after ticket ``event_id`` was written to ``file``."""

    event_id: int
    snapshot_hash: bytes
    file: str
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class PolicyDecision(Record):
    """The committer's decision on one effect intent of step ``event_id``."""

    event_id: int
    intent_hash: bytes
    allowed: bool
    reason: str
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class EffectQueued(Record):
    """An allowed intent was queued for its adapter; ``cost`` is reserved from ``cap``'s budget."""

    event_id: int
    intent_hash: bytes
    effect: str  # the effect kind ("kind" names the record kind)
    cap: str
    idempotency_key: str
    cost: int
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class ReceiptAppended(Record):
    """An adapter's receipt for a queued intent (an input, admitted as ``seq``).

    Its MAC was verified at admission; the MAC is not journaled, so the same
    inputs give the same journal in any world (each world has its own secret).
    """

    seq: int
    intent_hash: bytes
    status: str
    payload: bytes  # canonical CBOR
    cost: int
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class InvariantViolated(Record):
    """Step ``event_id`` would have violated ``invariant``: none of its writes were applied."""

    event_id: int
    invariant: str
    message: str
    lane_id: int = 0


# ------------------------------------------------------------------ eras (docs/upgrades.md)
@dataclass(frozen=True, slots=True)
class ProposalSubmitted(Record):
    """A proposal to move the world from era ``base`` to era ``era``.

    ``proposal`` is its id: the journal index of this record. ``manifest``
    is the canonical CBOR of the proposed manifest's description (what
    ``era`` hashes); ``changes`` lists ``[kind, text]`` pairs.
    """

    proposal: int
    base: bytes
    era: bytes
    manifest: bytes
    changes: tuple[tuple[str, str], ...]
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class ApprovalRecorded(Record):
    """Proposal ``proposal`` was approved ``by`` someone (or some policy), with a ``note``."""

    proposal: int
    by: str
    note: str
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class ShadowRunCompleted(Record):
    """A shadow run of proposal ``proposal`` over the history from ``since`` (an event_id).

    ``compared``: steps re-run; ``differing``: steps whose state, emitted
    events or intents differ from the journal; ``costs``: predicted effect
    costs as ``[capability, units]`` pairs.
    """

    proposal: int
    since: int
    compared: int
    differing: int
    costs: tuple[tuple[str, int], ...] = ()
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class EraApplied(Record):
    """Proposal ``proposal`` applied after ticket ``event_id``: era ``ends`` ended, era ``starts`` began.

    It is the first record of the new era's first segment. ``migrated``
    names the reducers whose cells were migrated (a ``CellMigrated`` record
    per cell follows), ``retired`` the removed reducers whose cells are kept
    read-only, ``dropped`` the removed reducers whose cells were dropped,
    ``pinned`` the reducers whose code changed and whose live cells keep
    running the era that ends (they are pinned to it), ``adopted`` the
    reducers whose cells, pinned to any earlier era, move to the new code
    with their state as it is. The apply is complete with the
    ``SnapshotCreated`` that follows them.
    """

    event_id: int
    proposal: int
    ends: bytes
    starts: bytes
    migrated: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    pinned: tuple[str, ...] = ()
    adopted: tuple[str, ...] = ()
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class CellMigrated(Record):
    """Cell (``reducer``, ``key``) was migrated at an era boundary to ``state`` (canonical CBOR).

    ``state_hash`` is its BLAKE3 (None: the migration deleted the cell).
    The state is journaled so that a replay without the migration function
    (or the old era's code) still reaches the new era's state.
    """

    reducer: str
    key: Key
    state: bytes | None
    state_hash: bytes | None
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class BudgetGranted(Record):
    """Grant ``grant`` (a lane's increasing grant id) added ``amount`` to capability ``cap``'s budget (an input).

    A lane of a fleet starts every capability at 0; the fleet's control
    plane hands out its global budget in grants (docs/fleet.md, "The lane world").
    """

    cap: str
    amount: int
    grant: int
    lane_id: int = 0


ERA_KINDS: tuple[type[Record], ...] = (ProposalSubmitted, ApprovalRecorded, ShadowRunCompleted, EraApplied,
                                       CellMigrated)


KINDS: dict[str, type[Record]] = {
    cls.__name__: cls for cls in (EventAdmitted, StepScheduled, StepCommitted, StepFailed, SnapshotCreated,
                                  PolicyDecision, EffectQueued, ReceiptAppended, InvariantViolated) + ERA_KINDS
    + (BudgetGranted,)
}


# ------------------------------------------------------------------ the declaration (aos.schema)
def _seq(v: Any) -> list[Any]:
    return list(v)


_TO_WIRE: dict[str, Callable[[Any], Any] | None] = {
    "emits": lambda v: [e.to_wire() for e in v],
    "intents": lambda v: [i.to_wire() for i in v],
    "names": _seq,
    "pairs": lambda v: [list(c) for c in v],
    "counts": lambda v: [list(c) for c in v],
    "uints": _seq,
}


def _emits_from_wire(v: Any, name: str) -> tuple[Emit, ...]:
    if type(v) is not list or any(type(e) is not list or len(e) != len(record_schema.EMIT.fields) for e in v):
        raise TypeError(f"{name} must be a list of [{', '.join(record_schema.EMIT.names)}] arrays")
    return tuple(Emit(*e) for e in v)


def _intents_from_wire(v: Any, name: str) -> tuple[Intent, ...]:
    if type(v) is not list or any(type(i) is not dict or set(i) != _INTENT_FIELDS for i in v):
        raise TypeError(f"{name} must be a list of maps with fields {sorted(_INTENT_FIELDS)}")
    return tuple(Intent(*[i[n] for n in record_schema.INTENT.names]) for i in v)


def _names_from_wire(v: Any, name: str) -> tuple[str, ...]:
    if type(v) is not list or any(type(x) is not str for x in v):
        raise TypeError(f"{name} must be a list of reducer names")
    return tuple(v)


def _pairs_from_wire(v: Any, name: str) -> tuple[tuple[Any, Any], ...]:
    if type(v) is not list or any(type(c) is not list or len(c) != 2 for c in v):
        raise TypeError(f"{name} must be a list of pairs")
    return tuple((a, b) for a, b in v)


def _text_pairs_from_wire(v: Any, name: str) -> tuple[tuple[str, str], ...]:
    pairs = _pairs_from_wire(v, name)
    if not all(type(a) is str and type(b) is str for a, b in pairs):
        raise TypeError(f"{name} must be a list of pairs of strings")
    return pairs


def _uints_from_wire(v: Any, name: str) -> tuple[int, ...] | None:
    if v is None:
        return None
    if type(v) is not list or any(type(x) is not int for x in v):
        raise TypeError(f"{name} must be a list of ints")
    return tuple(v)


_FROM_WIRE: dict[str, Callable[[Any, str], Any]] = {
    "emits": _emits_from_wire, "intents": _intents_from_wire, "names": _names_from_wire,
    "pairs": _text_pairs_from_wire, "counts": _pairs_from_wire, "uints": _uints_from_wire,
}


def _is_uint(v: Any) -> bool:
    return type(v) is int and v >= 0


def _is_hash(v: Any) -> bool:
    return type(v) is bytes and len(v) == 32


def _of_part(part: record_schema.Part, v: Any) -> bool:
    return all(_TYPE_CHECKS[f.type](getattr(v, f.name)) for f in part.fields)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "uint": _is_uint,
    "ticket": lambda v: type(v) is int and v >= 1,  # every step has a ticket >= 1
    "int": lambda v: type(v) is int,
    "bool": lambda v: type(v) is bool,
    "text": lambda v: type(v) is str,
    "text?": lambda v: v is None or type(v) is str,
    "bytes": lambda v: type(v) is bytes,
    "bytes?": lambda v: v is None or type(v) is bytes,
    "hash": _is_hash,
    "hash?": lambda v: v is None or _is_hash(v),
    "key": lambda v: v is None or type(v) in (str, int, bytes),
    "emits": lambda v: all(_of_part(record_schema.EMIT, e) for e in v),
    "intents": lambda v: all(_of_part(record_schema.INTENT, i) for i in v),
    "names": lambda v: all(type(x) is str for x in v),
    "pairs": lambda v: all(type(a) is str and type(b) is str for a, b in v),
    "counts": lambda v: all(type(a) is str and type(b) is int for a, b in v),
    "uints": lambda v: type(v) is tuple and all(type(x) is int and 0 <= x < 1 << 63 for x in v),
}
if set(_TYPE_CHECKS) != set(record_schema.TYPES):
    raise TypeError("aos.records checks other field types than aos.schema declares")


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _bind(cls: type, fields: tuple[str, ...], what: str) -> None:
    declared = tuple(f.name for f in dataclasses.fields(cls))
    if declared != fields:
        raise TypeError(f"{cls.__name__} declares fields {declared}, but aos.schema declares {what} with {fields}")


_bind(Emit, record_schema.EMIT.names, "Emit")
_bind(Intent, record_schema.INTENT.names, "Intent")
if set(KINDS) != set(record_schema.KIND_INDEX):
    raise TypeError(f"aos.records has classes for {sorted(KINDS)}, "
                    f"aos.schema declares {sorted(record_schema.KIND_INDEX)}")
for _k in record_schema.KINDS:
    _cls = KINDS[_k.name]
    _bind(_cls, _k.names, _k.name)
    _cls.KIND = _k.name
    _cls.FIELDS = _k.names
    _cls.TYPES = tuple(f.type for f in _k.fields)
    _cls.WIRE_ORDER = tuple(slot.name for slot in record_schema.layout(_k))
    _cls._WIRE = tuple((slot.name, None if slot.field < 0 else (_TO_WIRE.get(slot.type) or (lambda v: v)))
                       for slot in record_schema.layout(_k))
    _cls._READ = tuple((f.name, _FROM_WIRE.get(f.type)) for f in _k.fields)
    _cls.OPTIONAL = frozenset(f.name for f in _k.fields if f.optional)
    _cls._CHECKS = tuple((f.name, f.type, _optional(_TYPE_CHECKS[f.type]) if f.optional else _TYPE_CHECKS[f.type])
                         for f in _k.fields)
bind_record_classes(KINDS, Emit, Intent)


def encode_record(record: Record) -> bytes:
    """Canonical CBOR of a record.

    Records are built by the kernel from checked parts (ints, strings, keys
    that passed admission, byte strings; never floats); the C writer of
    :mod:`aos._core.encoder` writes each kind from its declared layout, keys
    in canonical order. A value outside its declared type (an int beyond 64
    bits, say) takes the general path, which writes the same bytes.
    """
    data = record_payload(record)
    return data if data is not None else _encode_general(record)


def _encode_general(record: Record) -> bytes:
    if type(record) in ERA_KINDS:  # rare records with nested values: the canonical encoder sorts their keys
        return canonical.encode(record.to_wire(), where=f"{record.KIND} record")
    wire = record.to_wire()
    data = ordered(wire)
    return data if data is not None else cbor2.dumps(wire)  # e.g. a cost beyond 64 bits


def decode_record(payload: bytes, where: str = "record") -> Record:
    """Decode and type a record; raise :class:`NonCanonicalError` if malformed."""
    m = canonical.decode(payload, where)
    if not isinstance(m, dict):
        raise NonCanonicalError(f"{where}: a record must be a map, got {type(m).__name__}")
    kind = m.get(record_schema.KIND_FIELD)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise NonCanonicalError(f"{where}: unknown record kind {kind!r}")
    expected = set(cls.FIELDS) | {record_schema.KIND_FIELD}
    if not expected - cls.OPTIONAL <= set(m) <= expected:
        raise NonCanonicalError(f"{where}: {kind} must have fields {sorted(expected)}, "
                                f"has {sorted(m, key=repr)}")
    try:
        rec = cls.from_wire(m)
    except (TypeError, ValueError, KeyError) as exc:
        raise NonCanonicalError(f"{where}: malformed {kind}: {exc}") from None
    _check_types(rec, where)
    return rec




def _check_types(rec: Record, where: str) -> None:
    for name, t, ok in rec._CHECKS:
        if not ok(getattr(rec, name)):
            raise NonCanonicalError(f"{where}: {rec.KIND}.{name} has the wrong type (expected {t})")
    if isinstance(rec, CellMigrated) and (rec.state is None) != (rec.state_hash is None):
        raise NonCanonicalError(f"{where}: CellMigrated.state and state_hash must both be null or both be set")
    if isinstance(rec, EventAdmitted) and rec.origin is not None and len(rec.origin) != 2:
        raise NonCanonicalError(f"{where}: EventAdmitted.origin must be [source, n]")


# ------------------------------------------------------------------ admission numbers
def admissions(rec: Record) -> int:
    """How many admission numbers ``rec`` takes: the one rule of the kernel and the committer.

    Every input delivered to cells gets the next admission number, in
    journal order: an ``EventAdmitted`` (its ``seq``), a ``ReceiptAppended``
    (its ``seq``), each event a ``StepCommitted`` emits (in emit order), and
    each denied intent (a ``PolicyDecision`` with ``allowed`` false: the
    denial event delivered to the intending cell). No other record takes one.
    """
    t = type(rec)
    if t is EventAdmitted or t is ReceiptAppended:
        return 1
    if t is StepCommitted:
        return len(rec.emits)  # type: ignore[attr-defined]
    if t is PolicyDecision:
        return 0 if rec.allowed else 1  # type: ignore[attr-defined]
    return 0


class AdmissionNumbers:
    """Numbers the inputs of a journal read from its start, by :func:`admissions`."""

    __slots__ = ("next",)

    def __init__(self, start: int = 0) -> None:
        self.next = start  # the next admission number

    def take(self, rec: Record, entry: Any = None) -> range:
        """The admission numbers ``rec`` takes (most records: none).

        An ``EventAdmitted`` or ``ReceiptAppended`` records its number; one
        other than the next raises :class:`~aos.errors.JournalCorruptError`
        (at ``entry``, the journal :class:`~aos.journal.Entry` it was read from).
        """
        n = admissions(rec)
        first = self.next
        if n and type(rec) in (EventAdmitted, ReceiptAppended) and rec.seq != first:  # type: ignore[attr-defined]
            index = f"record {entry.index}" if entry is not None else "a record"
            raise JournalCorruptError(getattr(entry, "segment", "?"), getattr(entry, "offset", 0),
                                      f"{index} ({rec.KIND}) has admission number {rec.seq}, "  # type: ignore
                                      f"expected {first}")
        self.next = first + n
        return range(first, first + n)
