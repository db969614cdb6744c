"""The journal's record schema: one declaration of every record kind.

Every record is a canonical CBOR map. This table says, for each kind, its
fields in declaration order (the order of the record class's fields and of
the C writers' arguments) and each field's type. Everything else is derived
from it here, once:

* the wire order of a kind's map keys (``kind`` included): canonical CBOR
  sorts map keys by their encoded length, then bytewise;
* the pre-encoded key bytes and ``kind`` value the C writer
  (:mod:`aos._core.encoder`) and the C reader (:mod:`aos._core.decoder`)
  build their layouts from at import;
* the record classes' ``FIELDS`` and ``WIRE_ORDER`` (:mod:`aos.records`
  checks at import that each class declares exactly these fields, in this
  order), their ``to_wire``/``from_wire`` conversions and their type checks.

This module imports nothing from aos: the C modules read it at import.
See docs/storage.md, "The record schema".
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "TYPES", "Field", "Kind", "Part", "KINDS", "KIND_INDEX", "INTENT", "EMIT", "KIND_FIELD", "kind",
    "wire_order", "text_key", "Slot", "layout", "variants", "first_key", "MAX_OPTIONAL",
]

#: The field types, as the writers, the reader and the record checks know them:
#:
#: ``uint``     int, 0 or more (signed 64-bit on the wire; a larger int takes the general path)
#: ``ticket``   an event_id: int, 1 or more
#: ``int``      int of either sign
#: ``bool``     ``True`` or ``False``
#: ``text``     str;  ``text?``: str or None
#: ``bytes``    bytes (canonical CBOR of a value, or plain bytes); ``bytes?``: bytes or None
#: ``hash``     bytes, 32 of them (a BLAKE3 hash); ``hash?``: a hash or None
#: ``key``      a cell key: None, str, int or bytes
#: ``emits``    a tuple of :data:`EMIT` parts, written as ``[schema, value]`` arrays
#: ``intents``  a tuple of :data:`INTENT` parts, written as maps
#: ``names``    a tuple of str, written as an array
#: ``pairs``    a tuple of ``(str, str)``, written as ``[text, text]`` arrays
#: ``counts``   a tuple of ``(str, int)``, written as ``[text, int]`` arrays
#: ``uints``    a tuple of ints, 0 or more (each in the signed 64-bit range), written as an array
TYPES: tuple[str, ...] = ("uint", "ticket", "int", "bool", "text", "text?", "bytes", "bytes?", "hash", "hash?",
                          "key", "emits", "intents", "names", "pairs", "counts", "uints")

KIND_FIELD = "kind"  # the map key naming a record's kind (every record has it; no field is called so)


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    optional: bool = False  # left out of the map when None (never written as null)


@dataclass(frozen=True)
class Part:
    """A nested value of a record field (an emitted event, an effect intent)."""

    name: str
    fields: tuple[Field, ...]
    as_map: bool  # a map in canonical key order (else an array in field order)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Kind:
    """One record kind: its name and fields, in declaration order.

    Optional fields (declared ``[name:type]``, after the others) were added
    to a kind after records of it were written: a record leaves one out when
    it is None, so records written before it existed read as before.
    """

    name: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def optional(self) -> tuple[int, ...]:
        """The indices of the optional fields (the last ones)."""
        return tuple(i for i, f in enumerate(self.fields) if f.optional)


MAX_OPTIONAL = 3  # optional fields per kind (the C layouts hold one variant per subset of them)


def _f(spec: str) -> tuple[Field, ...]:
    """Fields from ``"name:type name:type ... [name:type]"`` (bracketed: optional)."""
    out = []
    for item in spec.split():
        optional = item.startswith("[") and item.endswith("]")
        name, _, type_ = item.strip("[]").partition(":")
        out.append(Field(name, type_, optional))
    return tuple(out)


#: An event a step emitted: ``[schema, value]``.
EMIT = Part("Emit", _f("schema:text value:bytes"), as_map=False)
#: An effect a step intended: a map.
INTENT = Part("Intent", _f("kind:text params:bytes cap:text? idempotency_key:text cost:int intent_hash:bytes"),
              as_map=True)

#: Every record kind. Append new kinds at the end; a kind's index is its position here.
KINDS: tuple[Kind, ...] = (
    Kind("EventAdmitted", _f("seq:uint schema:text value:bytes lane_id:uint [visible_at:ticket] [origin:uints] "
                              "[idempotency_key:text]")),
    Kind("StepScheduled", _f("event_id:ticket reducer:text key:key input:uint lane_id:uint")),
    Kind("StepCommitted", _f("event_id:ticket state_hash:hash? emits:emits effects:intents lane_id:uint")),
    Kind("StepFailed", _f("event_id:ticket reducer:text key:key error:text message:text traceback:text "
                          "lane_id:uint")),
    Kind("SnapshotCreated", _f("event_id:uint snapshot_hash:hash file:text lane_id:uint")),
    Kind("PolicyDecision", _f("event_id:ticket intent_hash:hash allowed:bool reason:text lane_id:uint")),
    Kind("EffectQueued", _f("event_id:ticket intent_hash:hash effect:text cap:text idempotency_key:text cost:uint "
                            "lane_id:uint")),
    Kind("ReceiptAppended", _f("seq:uint intent_hash:hash status:text payload:bytes cost:uint lane_id:uint")),
    Kind("InvariantViolated", _f("event_id:ticket invariant:text message:text lane_id:uint")),
    Kind("ProposalSubmitted", _f("proposal:uint base:hash era:hash manifest:bytes changes:pairs lane_id:uint")),
    Kind("ApprovalRecorded", _f("proposal:uint by:text note:text lane_id:uint")),
    Kind("ShadowRunCompleted", _f("proposal:uint since:uint compared:uint differing:uint costs:counts "
                                  "lane_id:uint")),
    Kind("EraApplied", _f("event_id:uint proposal:uint ends:hash starts:hash migrated:names retired:names "
                          "dropped:names pinned:names adopted:names lane_id:uint")),
    Kind("CellMigrated", _f("reducer:text key:key state:bytes? state_hash:hash? lane_id:uint")),
    Kind("BudgetGranted", _f("cap:text amount:uint grant:uint lane_id:uint")),
)

KIND_INDEX: dict[str, int] = {k.name: i for i, k in enumerate(KINDS)}


def kind(name: str) -> Kind:
    return KINDS[KIND_INDEX[name]]


def text_key(name: str) -> bytes:
    """The CBOR encoding of the text string ``name`` (a map key or the ``kind`` value)."""
    raw = name.encode("utf-8")
    n = len(raw)
    if n < 24:
        return bytes([0x60 | n]) + raw
    if n < 256:
        return bytes([0x78, n]) + raw
    raise ValueError(f"schema name {name!r} is too long")


def wire_order(names: tuple[str, ...]) -> tuple[str, ...]:
    """Text keys in canonical CBOR order: shorter encodings first, then bytewise."""
    return tuple(sorted(names, key=lambda n: (len(text_key(n)), text_key(n))))


@dataclass(frozen=True)
class Slot:
    """One map entry of a record as written: its key's bytes, then the field (-1: the ``kind``)."""

    name: str
    key: bytes  # the encoded key
    field: int  # index into the kind's fields; -1 for ``kind``
    type: str  # the field's type ("" for ``kind``)


def variants(k: Kind) -> int:
    """How many layouts a kind has: one per subset of its optional fields."""
    return 1 << len(k.optional)


def layout(k: Kind | Part, variant: int = -1) -> tuple[Slot, ...]:
    """The map entries of a record of kind ``k`` (or of a map part), in wire order.

    ``variant`` says which optional fields the record has (bit ``j``: the
    ``j``-th optional field); -1: all of them.
    """
    index = {f.name: i for i, f in enumerate(k.fields)}
    optional = k.optional if isinstance(k, Kind) else ()
    names = tuple(f.name for i, f in enumerate(k.fields)
                  if i not in optional or variant & (1 << optional.index(i)))
    names += (KIND_FIELD,) if isinstance(k, Kind) else ()
    return tuple(Slot(n, text_key(n), index.get(n, -1), k.fields[index[n]].type if n in index else "")
                 for n in wire_order(names))


def first_key(name: str, variant: int = -1) -> bytes:
    """The map head and first key with which every record of kind ``name`` starts (that has the optional
    fields ``variant`` names, as :func:`layout`)."""
    slots = layout(kind(name), variant)
    return bytes([0xa0 | len(slots)]) + slots[0].key


def _check(kinds: tuple[Kind, ...] = KINDS) -> None:
    names = set()
    for k in kinds:
        if k.name in names:
            raise ValueError(f"record kind {k.name} is declared twice")
        names.add(k.name)
        if len(k.fields) + 1 >= 24:
            raise ValueError(f"record kind {k.name} has too many fields")
        if len(k.optional) > MAX_OPTIONAL or k.optional != tuple(range(len(k.fields) - len(k.optional),
                                                                       len(k.fields))):
            raise ValueError(f"record kind {k.name}: at most {MAX_OPTIONAL} optional fields, declared last")
        seen = set()
        for f in k.fields:
            if f.type not in TYPES:
                raise ValueError(f"{k.name}.{f.name} has unknown type {f.type!r}")
            if f.name in seen or f.name == KIND_FIELD:
                raise ValueError(f"{k.name} declares field {f.name!r} twice (or names a field 'kind')")
            seen.add(f.name)
    for p in (EMIT, INTENT):
        for f in p.fields:
            if f.type not in TYPES or f.type in ("emits", "intents") or f.optional:
                raise ValueError(f"{p.name}.{f.name} has type {f.type!r}, which a part cannot have")


_check()
