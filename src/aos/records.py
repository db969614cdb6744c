"""Journal record kinds (DESIGN §4) and their canonical encoding.

Every record is a canonical CBOR map with a ``kind`` and a ``lane_id`` (0
for now), and an ``event_id`` where it has one. Event values, emitted
values and effect parameters are carried as their canonical CBOR encoding
(a byte string), so records are written and compared without re-encoding
user values. See docs/storage.md for the field reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import cbor2

from aos import canonical
from aos._core.encoder import event_admitted as admitted_payload
from aos._core.encoder import ordered
from aos._core.encoder import step_committed as committed_payload
from aos._core.encoder import step_scheduled as scheduled_payload
from aos.errors import NonCanonicalError

__all__ = [
    "Record", "EventAdmitted", "StepScheduled", "StepCommitted", "StepFailed",
    "SnapshotCreated", "PolicyDecision", "EffectQueued", "ReceiptAppended", "InvariantViolated",
    "ProposalSubmitted", "ApprovalRecorded", "ShadowRunCompleted", "EraApplied", "CellMigrated", "ERA_KINDS",
    "Emit", "Intent", "encode_record", "decode_record", "KINDS", "scheduled_payload", "committed_payload",
    "admitted_payload",
]

Key = Any  # str | int | bytes | None


@dataclass(frozen=True, slots=True)
class Emit:
    """An event emitted by a step; admitted when the step commits."""

    schema: str
    value: bytes  # canonical CBOR

    def to_wire(self) -> list[Any]:
        return [self.schema, self.value]


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
        # keys in canonical order (see encode_record)
        return {"cap": self.cap, "cost": self.cost, "kind": self.kind, "params": self.params,
                "intent_hash": self.intent_hash, "idempotency_key": self.idempotency_key}


_INTENT_FIELDS = frozenset(("kind", "params", "cap", "idempotency_key", "cost", "intent_hash"))


class Record:
    """Base of all record kinds."""

    __slots__ = ()
    KIND: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]
    WIRE_ORDER: ClassVar[tuple[str, ...]] = ()  # FIELDS and "kind" in canonical key order

    def to_wire(self) -> dict[str, Any]:
        """The record as a map whose keys are already in canonical order."""
        kind = self.KIND
        return {name: kind if name == "kind" else getattr(self, name) for name in self.WIRE_ORDER}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "Record":
        return cls(**{name: m[name] for name in cls.FIELDS})


@dataclass(frozen=True, slots=True)
class EventAdmitted(Record):
    """An external event admitted into the world (an input).

    ``visible_at``: the ticket from which it may be scheduled (the next
    ticket when it was admitted with nothing in flight, a later one when
    tickets were in flight; docs/scheduling.md). None only in records written
    before the field existed: visible to the next ticket of a serial replay.
    """

    KIND: ClassVar[str] = "EventAdmitted"
    FIELDS: ClassVar[tuple[str, ...]] = ("seq", "schema", "value", "lane_id", "visible_at")
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(("visible_at",))  # left out when None
    seq: int
    schema: str
    value: bytes
    lane_id: int = 0
    visible_at: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = Record.to_wire(self)
        if self.visible_at is None:
            del wire["visible_at"]
        return wire

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "Record":
        if "visible_at" in m and m["visible_at"] is None:  # (left out when there is none, never null)
            raise ValueError("visible_at is null")
        return cls(m["seq"], m["schema"], m["value"], m["lane_id"], m.get("visible_at"))


@dataclass(frozen=True, slots=True)
class StepScheduled(Record):
    """Ticket ``event_id`` was given to cell (reducer, key) for admitted input ``input``."""

    KIND: ClassVar[str] = "StepScheduled"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "reducer", "key", "input", "lane_id")
    event_id: int
    reducer: str
    key: Key
    input: int
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class StepCommitted(Record):
    """The step committed: its cell's new state hash (None: cell deleted), emits, intents."""

    KIND: ClassVar[str] = "StepCommitted"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "state_hash", "emits", "effects", "lane_id")
    event_id: int
    state_hash: bytes | None
    emits: tuple[Emit, ...] = ()
    effects: tuple[Intent, ...] = ()
    lane_id: int = 0

    def to_wire(self) -> dict[str, Any]:
        # keys in canonical order (see encode_record)
        return {"kind": self.KIND, "emits": [e.to_wire() for e in self.emits],
                "effects": [i.to_wire() for i in self.effects], "lane_id": self.lane_id,
                "event_id": self.event_id, "state_hash": self.state_hash}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "StepCommitted":
        emits, effects = m["emits"], m["effects"]
        if type(emits) is not list or any(type(e) is not list or len(e) != 2 for e in emits):
            raise TypeError("emits must be a list of [schema, value] pairs")
        if type(effects) is not list or any(type(i) is not dict or set(i) != _INTENT_FIELDS for i in effects):
            raise TypeError(f"effects must be a list of maps with fields {sorted(_INTENT_FIELDS)}")
        return cls(m["event_id"], m["state_hash"],
                   tuple(Emit(s, v) for s, v in m["emits"]),
                   tuple(Intent(i["kind"], i["params"], i["cap"], i["idempotency_key"], i["cost"],
                                i["intent_hash"]) for i in m["effects"]),
                   m["lane_id"])


@dataclass(frozen=True, slots=True)
class StepFailed(Record):
    """The reducer of cell (``reducer``, ``key``) raised: the cell is unchanged, nothing it emitted is admitted.

    ``World.failures()`` lists these records.
    """

    KIND: ClassVar[str] = "StepFailed"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "reducer", "key", "error", "message", "traceback", "lane_id")
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

    KIND: ClassVar[str] = "SnapshotCreated"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "snapshot_hash", "file", "lane_id")
    event_id: int
    snapshot_hash: bytes
    file: str
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class PolicyDecision(Record):
    """The committer's decision on one effect intent of step ``event_id``."""

    KIND: ClassVar[str] = "PolicyDecision"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "intent_hash", "allowed", "reason", "lane_id")
    event_id: int
    intent_hash: bytes
    allowed: bool
    reason: str
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class EffectQueued(Record):
    """An allowed intent was queued for its adapter; ``cost`` is reserved from ``cap``'s budget."""

    KIND: ClassVar[str] = "EffectQueued"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "intent_hash", "effect", "cap", "idempotency_key",
                                         "cost", "lane_id")
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

    KIND: ClassVar[str] = "ReceiptAppended"
    FIELDS: ClassVar[tuple[str, ...]] = ("seq", "intent_hash", "status", "payload", "cost", "lane_id")
    seq: int
    intent_hash: bytes
    status: str
    payload: bytes  # canonical CBOR
    cost: int
    lane_id: int = 0


@dataclass(frozen=True, slots=True)
class InvariantViolated(Record):
    """Step ``event_id`` would have violated ``invariant``: none of its writes were applied."""

    KIND: ClassVar[str] = "InvariantViolated"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "invariant", "message", "lane_id")
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

    KIND: ClassVar[str] = "ProposalSubmitted"
    FIELDS: ClassVar[tuple[str, ...]] = ("proposal", "base", "era", "manifest", "changes", "lane_id")
    proposal: int
    base: bytes
    era: bytes
    manifest: bytes
    changes: tuple[tuple[str, str], ...]
    lane_id: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"era": self.era, "base": self.base, "kind": self.KIND, "changes": [list(c) for c in self.changes],
                "lane_id": self.lane_id, "manifest": self.manifest, "proposal": self.proposal}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "ProposalSubmitted":
        changes = m["changes"]
        if type(changes) is not list or any(type(c) is not list or len(c) != 2 or not all(type(x) is str for x in c)
                                            for c in changes):
            raise TypeError("changes must be a list of [kind, text] pairs of strings")
        return cls(m["proposal"], m["base"], m["era"], m["manifest"], tuple((a, b) for a, b in changes),
                   m["lane_id"])


@dataclass(frozen=True, slots=True)
class ApprovalRecorded(Record):
    """Proposal ``proposal`` was approved ``by`` someone (or some policy), with a ``note``."""

    KIND: ClassVar[str] = "ApprovalRecorded"
    FIELDS: ClassVar[tuple[str, ...]] = ("proposal", "by", "note", "lane_id")
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

    KIND: ClassVar[str] = "ShadowRunCompleted"
    FIELDS: ClassVar[tuple[str, ...]] = ("proposal", "since", "compared", "differing", "costs", "lane_id")
    proposal: int
    since: int
    compared: int
    differing: int
    costs: tuple[tuple[str, int], ...] = ()
    lane_id: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.KIND, "costs": [list(c) for c in self.costs], "since": self.since,
                "lane_id": self.lane_id, "compared": self.compared, "proposal": self.proposal,
                "differing": self.differing}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "ShadowRunCompleted":
        costs = m["costs"]
        if type(costs) is not list or any(type(c) is not list or len(c) != 2 for c in costs):
            raise TypeError("costs must be a list of [capability, units] pairs")
        return cls(m["proposal"], m["since"], m["compared"], m["differing"], tuple((a, b) for a, b in costs),
                   m["lane_id"])


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

    KIND: ClassVar[str] = "EraApplied"
    FIELDS: ClassVar[tuple[str, ...]] = ("event_id", "proposal", "ends", "starts", "migrated", "retired",
                                         "dropped", "pinned", "adopted", "lane_id")
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

    def to_wire(self) -> dict[str, Any]:
        return {"ends": self.ends, "kind": self.KIND, "starts": self.starts, "pinned": list(self.pinned),
                "adopted": list(self.adopted), "dropped": list(self.dropped), "lane_id": self.lane_id,
                "retired": list(self.retired), "event_id": self.event_id, "migrated": list(self.migrated),
                "proposal": self.proposal}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "EraApplied":
        for name in ("migrated", "retired", "dropped", "pinned", "adopted"):
            if type(m[name]) is not list or any(type(x) is not str for x in m[name]):
                raise TypeError(f"{name} must be a list of reducer names")
        return cls(m["event_id"], m["proposal"], m["ends"], m["starts"], tuple(m["migrated"]),
                   tuple(m["retired"]), tuple(m["dropped"]), tuple(m["pinned"]), tuple(m["adopted"]),
                   m["lane_id"])


@dataclass(frozen=True, slots=True)
class CellMigrated(Record):
    """Cell (``reducer``, ``key``) was migrated at an era boundary to ``state`` (canonical CBOR).

    ``state_hash`` is its BLAKE3 (None: the migration deleted the cell).
    The state is journaled so that a replay without the migration function
    (or the old era's code) still reaches the new era's state.
    """

    KIND: ClassVar[str] = "CellMigrated"
    FIELDS: ClassVar[tuple[str, ...]] = ("reducer", "key", "state", "state_hash", "lane_id")
    reducer: str
    key: Key
    state: bytes | None
    state_hash: bytes | None
    lane_id: int = 0


ERA_KINDS: tuple[type[Record], ...] = (ProposalSubmitted, ApprovalRecorded, ShadowRunCompleted, EraApplied,
                                       CellMigrated)


KINDS: dict[str, type[Record]] = {
    cls.KIND: cls for cls in (EventAdmitted, StepScheduled, StepCommitted, StepFailed, SnapshotCreated,
                              PolicyDecision, EffectQueued, ReceiptAppended, InvariantViolated) + ERA_KINDS
}


def _canonical_key_order(names: tuple[str, ...]) -> tuple[str, ...]:
    """Text keys as a canonical CBOR map orders them: shorter encodings first, then bytewise."""
    return tuple(sorted(names, key=lambda n: (len(n.encode()), n.encode())))


for _cls in KINDS.values():
    _cls.WIRE_ORDER = _canonical_key_order(_cls.FIELDS + ("kind",))


def encode_record(record: Record) -> bytes:
    """Canonical CBOR of a record.

    Records are built by the kernel from checked parts (ints, strings, keys
    that passed admission, byte strings; never floats), and ``to_wire`` lists
    map keys in canonical order, so they are written as given, without the
    canonical key sort, by the C writer of :mod:`aos._core.encoder` (the two
    records of every step have their own writers there).
    """
    t = type(record)
    try:
        if t is EventAdmitted:
            r = record
            return admitted_payload(r.seq, r.schema, r.value, r.lane_id, r.visible_at)  # type: ignore[attr-defined]
        if t is StepScheduled:
            r = record
            return scheduled_payload(r.event_id, r.reducer, r.key, r.input, r.lane_id)  # type: ignore[attr-defined]
        if t is StepCommitted:
            r = record
            return committed_payload(r.event_id, r.state_hash, r.emits, r.effects, r.lane_id)  # type: ignore
    except ValueError:  # e.g. an int key beyond 64 bits: the general writer below
        pass
    if t in ERA_KINDS:  # rare records with nested values: the canonical encoder sorts their keys
        return canonical.encode(record.to_wire(), where=f"{record.KIND} record")
    wire = record.to_wire()
    data = ordered(wire)
    return data if data is not None else cbor2.dumps(wire)  # e.g. a cost beyond 64 bits


def decode_record(payload: bytes, where: str = "record") -> Record:
    """Decode and type a record; raise :class:`NonCanonicalError` if malformed."""
    m = canonical.decode(payload, where)
    if not isinstance(m, dict):
        raise NonCanonicalError(f"{where}: a record must be a map, got {type(m).__name__}")
    kind = m.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise NonCanonicalError(f"{where}: unknown record kind {kind!r}")
    expected = set(cls.FIELDS) | {"kind"}
    if set(m) != expected and set(m) != expected - getattr(cls, "OPTIONAL", frozenset()):
        raise NonCanonicalError(f"{where}: {kind} must have fields {sorted(expected)}, "
                                f"has {sorted(m, key=repr)}")
    try:
        rec = cls.from_wire(m)
    except (TypeError, ValueError, KeyError) as exc:
        raise NonCanonicalError(f"{where}: malformed {kind}: {exc}") from None
    _check_types(rec, where)
    return rec


def _check_types(rec: Record, where: str) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise NonCanonicalError(f"{where}: {rec.KIND}.{what} has the wrong type")

    if hasattr(rec, "event_id"):
        # a snapshot may be taken before the first step (event_id 0); every step has a ticket >= 1
        least = 0 if isinstance(rec, (SnapshotCreated, EraApplied)) else 1
        need(type(rec.event_id) is int and rec.event_id >= least, "event_id")  # type: ignore[attr-defined]
    need(type(rec.lane_id) is int and rec.lane_id >= 0, "lane_id")  # type: ignore[attr-defined]
    if isinstance(rec, EventAdmitted):
        need(type(rec.seq) is int and rec.seq >= 0, "seq")
        need(type(rec.schema) is str, "schema")
        need(type(rec.value) is bytes, "value")
        need(rec.visible_at is None or (type(rec.visible_at) is int and rec.visible_at >= 1), "visible_at")
    elif isinstance(rec, StepScheduled):
        need(type(rec.reducer) is str, "reducer")
        need(rec.key is None or type(rec.key) in (str, int, bytes), "key")
        need(type(rec.input) is int and rec.input >= 0, "input")
    elif isinstance(rec, StepCommitted):
        need(rec.state_hash is None or (type(rec.state_hash) is bytes and len(rec.state_hash) == 32),
             "state_hash")
        for e in rec.emits:
            need(type(e.schema) is str and type(e.value) is bytes, "emits")
        for i in rec.effects:
            need(type(i.kind) is str and type(i.params) is bytes and type(i.intent_hash) is bytes
                 and (i.cap is None or type(i.cap) is str) and type(i.idempotency_key) is str
                 and type(i.cost) is int, "effects")
    elif isinstance(rec, StepFailed):
        need(type(rec.reducer) is str, "reducer")
        need(rec.key is None or type(rec.key) in (str, int, bytes), "key")
        need(type(rec.error) is str and type(rec.message) is str and type(rec.traceback) is str, "error")
    elif isinstance(rec, SnapshotCreated):
        need(type(rec.snapshot_hash) is bytes and len(rec.snapshot_hash) == 32, "snapshot_hash")
        need(type(rec.file) is str, "file")
    elif isinstance(rec, PolicyDecision):
        need(_is_hash(rec.intent_hash), "intent_hash")
        need(type(rec.allowed) is bool, "allowed")
        need(type(rec.reason) is str, "reason")
    elif isinstance(rec, EffectQueued):
        need(_is_hash(rec.intent_hash), "intent_hash")
        need(type(rec.effect) is str and type(rec.cap) is str and type(rec.idempotency_key) is str, "effect")
        need(type(rec.cost) is int and rec.cost >= 0, "cost")
    elif isinstance(rec, ReceiptAppended):
        need(type(rec.seq) is int and rec.seq >= 0, "seq")
        need(_is_hash(rec.intent_hash), "intent_hash")
        need(type(rec.status) is str, "status")
        need(type(rec.payload) is bytes, "payload")
        need(type(rec.cost) is int and rec.cost >= 0, "cost")
    elif isinstance(rec, InvariantViolated):
        need(type(rec.invariant) is str and type(rec.message) is str, "invariant")
    elif isinstance(rec, ProposalSubmitted):
        need(type(rec.proposal) is int and rec.proposal >= 0, "proposal")
        need(_is_hash(rec.base) and _is_hash(rec.era), "era")
        need(type(rec.manifest) is bytes, "manifest")
    elif isinstance(rec, ApprovalRecorded):
        need(type(rec.proposal) is int and rec.proposal >= 0, "proposal")
        need(type(rec.by) is str and type(rec.note) is str, "by")
    elif isinstance(rec, ShadowRunCompleted):
        need(type(rec.proposal) is int and rec.proposal >= 0, "proposal")
        for name in ("since", "compared", "differing"):
            need(type(getattr(rec, name)) is int and getattr(rec, name) >= 0, name)
        need(all(type(c) is str and type(n) is int for c, n in rec.costs), "costs")
    elif isinstance(rec, EraApplied):
        need(type(rec.proposal) is int and rec.proposal >= 0, "proposal")
        need(_is_hash(rec.ends) and _is_hash(rec.starts), "era")
    elif isinstance(rec, CellMigrated):
        need(type(rec.reducer) is str, "reducer")
        need(rec.key is None or type(rec.key) in (str, int, bytes), "key")
        need((rec.state is None and rec.state_hash is None)
             or (type(rec.state) is bytes and _is_hash(rec.state_hash)), "state")


def _is_hash(v: Any) -> bool:
    return type(v) is bytes and len(v) == 32
