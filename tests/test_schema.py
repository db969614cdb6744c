"""The record schema (aos.schema) and what comes from it.

Every record kind is declared once; the record classes, the C writer
(aos._core.encoder), the C reader (aos._core.decoder) and replay's
byte check follow the declaration. These tests compare each of them with
an independent reference (cbor2's canonical mode) for every kind, so a
writer or reader that drifts from the declaration fails here, and check
the admission-number rule against what a live world assigns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aos
from aos import schema
from aos._core import decoder, encoder
from aos.errors import JournalCorruptError, NonCanonicalError
from aos.journal import JournalReader
from aos.provenance import Provenance
from aos.records import (
    KINDS,
    AdmissionNumbers,
    Emit,
    EventAdmitted,
    Intent,
    StepScheduled,
    admissions,
    decode_record,
    encode_record,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ints64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
uints = st.integers(min_value=0, max_value=2**63 - 1)
text = st.text(max_size=12)
hashes = st.binary(min_size=32, max_size=32)
short = st.binary(max_size=12)

VALUES: dict[str, Any] = {
    "uint": uints,
    "ticket": st.integers(min_value=1, max_value=2**63 - 1),
    "int": ints64,
    "bool": st.booleans(),
    "text": text,
    "text?": st.none() | text,
    "bytes": short,
    "bytes?": st.none() | short,
    "hash": hashes,
    "hash?": st.none() | hashes,
    "key": st.none() | text | ints64 | short,
    "emits": st.lists(st.builds(Emit, text, short), max_size=3).map(tuple),
    "intents": st.lists(st.builds(Intent, text, short, st.none() | text, text, ints64, short), max_size=3).map(tuple),
    "names": st.lists(text, max_size=3).map(tuple),
    "pairs": st.lists(st.tuples(text, text), max_size=3).map(tuple),
    "counts": st.lists(st.tuples(text, ints64), max_size=3).map(tuple),
    "uints": st.tuples(uints, uints),  # (an EventAdmitted origin is a pair)
}


def test_every_declared_type_has_values_here() -> None:
    assert set(VALUES) == set(schema.TYPES)


def _values(k: schema.Kind) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(*[st.none() | VALUES[f.type] if f.optional else VALUES[f.type] for f in k.fields])


def _record(k: schema.Kind, values: tuple[Any, ...]) -> Any:
    rec = KINDS[k.name](*values)
    if k.name == "CellMigrated" and (rec.state is None) != (rec.state_hash is None):  # the one cross-field rule
        rec = dataclasses.replace(rec, state=None, state_hash=None)
    return rec


@pytest.mark.parametrize("k", schema.KINDS, ids=lambda k: k.name)
@SETTINGS
@given(data=st.data())
def test_each_kind_is_written_and_read_as_declared(k: schema.Kind, data: st.DataObject) -> None:
    """The C writer's bytes are cbor2's canonical encoding; decode, the C reader and record_kind give it back."""
    rec = _record(k, data.draw(_values(k)))
    values = tuple(getattr(rec, n) for n in k.names)
    payload = encode_record(rec)
    assert payload == cbor2.dumps(rec.to_wire(), canonical=True)
    assert encoder.write_record(schema.KIND_INDEX[k.name], values) == payload
    assert decode_record(payload) == rec
    assert encoder.record_kind(payload) == k.name
    read = decoder.record_fields(schema.KIND_INDEX[k.name], payload)
    assert read is not None and len(read) == len(k.fields)
    wire = {n: v for n, v in zip(k.names, read, strict=True) if v is not None or n not in KINDS[k.name].OPTIONAL}
    assert KINDS[k.name].from_wire(dict(wire, kind=k.name)) == rec
    variant = sum(1 << j for j, i in enumerate(k.optional) if values[i] is not None)
    assert payload.startswith(schema.first_key(k.name, variant))
    for i in k.optional:  # an optional field that is None is left out, never written as null
        assert (values[i] is None) == (k.fields[i].name not in cbor2.loads(payload))


def test_wire_order_is_canonical_cbor_order() -> None:
    for k in (*schema.KINDS, schema.INTENT):
        names = [s.name for s in schema.layout(k)]
        as_cbor = cbor2.loads(cbor2.dumps({n: 0 for n in names}, canonical=True))
        assert names == list(as_cbor), k.name


def test_record_classes_take_their_fields_from_the_declaration() -> None:
    assert set(KINDS) == set(schema.KIND_INDEX)
    for k in schema.KINDS:
        cls = KINDS[k.name]
        assert cls.KIND == k.name
        assert cls.FIELDS == tuple(f.name for f in dataclasses.fields(cls)) == k.names
        assert cls.WIRE_ORDER == tuple(s.name for s in schema.layout(k))


def test_a_class_that_differs_from_the_declaration_is_refused() -> None:
    from aos import records

    @dataclasses.dataclass(frozen=True)
    class Drifted:
        seq: int
        value: bytes
        schema: str

    with pytest.raises(TypeError, match="aos.schema declares EventAdmitted"):
        records._bind(Drifted, schema.kind("EventAdmitted").names, "EventAdmitted")


@pytest.mark.parametrize("name,writer", [("EventAdmitted", encoder.event_admitted),
                                         ("StepScheduled", encoder.step_scheduled),
                                         ("StepCommitted", encoder.step_committed)])
def test_step_writers_take_the_declared_fields_in_order(name: str, writer: Any) -> None:
    k = schema.kind(name)
    sample: dict[str, Any] = {"uint": 7, "ticket": 3, "text": "a/B@1", "bytes": b"\xa0", "hash?": bytes(range(32)),
                              "key": b"k", "uints": (4096, 2), "emits": (Emit("a/E@1", b"\x01"),),
                              "intents": (Intent("timer.set", b"\xa0", "timers", "3/0", 1, bytes(32)),)}
    values = tuple(sample[f.type] for f in k.fields)
    assert writer(*values) == encoder.write_record(schema.KIND_INDEX[name], values) \
        == cbor2.dumps(KINDS[name](*values).to_wire(), canonical=True)


def test_emits_and_intents_of_other_classes_are_written_by_their_attributes() -> None:
    @dataclasses.dataclass
    class LooseEmit:  # not aos.records.Emit (whose slots the writer reads directly): read by attribute
        value: bytes
        schema: str

    h = bytes(range(32))
    assert encoder.step_committed(2, h, (LooseEmit(b"\x01", "a/E@1"),), ()) == \
        encoder.step_committed(2, h, (Emit("a/E@1", b"\x01"),), ())


def test_step_writers_refuse_values_outside_their_types() -> None:
    with pytest.raises(TypeError, match=r"StepScheduled\.reducer"):
        encoder.step_scheduled(1, 5, "k", 0)
    with pytest.raises(ValueError, match=r"StepScheduled\.key"):
        encoder.step_scheduled(1, "r", 2**70, 0)
    with pytest.raises(ValueError, match=r"StepScheduled\.event_id"):
        encoder.step_scheduled(-1, "r", "k", 0)
    with pytest.raises(ValueError, match=r"StepCommitted\.state_hash"):
        encoder.step_committed(1, b"short", (), ())
    with pytest.raises(TypeError, match=r"EventAdmitted\.schema"):
        encoder.event_admitted(0, b"a/E@1", b"\xa0")


def test_values_outside_the_declared_types_take_the_general_path() -> None:
    rec = StepScheduled(1, "r", 2**80, 0)
    assert encoder.write_record(schema.KIND_INDEX["StepScheduled"], (1, "r", 2**80, 0, 0)) is None
    assert encode_record(rec) == cbor2.dumps(rec.to_wire(), canonical=True)
    with pytest.raises(ValueError, match="has 5 fields"):
        encoder.write_record(schema.KIND_INDEX["StepScheduled"], (1, "r"))


def test_the_reader_returns_none_for_anything_but_the_exact_layout() -> None:
    good = encode_record(EventAdmitted(4, "a/E@1", b"\xa0"))
    assert decoder.event_admitted_fields(good) == (4, "a/E@1", b"\xa0", None)
    visible = encode_record(EventAdmitted(4, "a/E@1", b"\xa0", 0, 9))
    assert decoder.event_admitted_fields(visible) == (4, "a/E@1", b"\xa0", 9)
    k = schema.KIND_INDEX["EventAdmitted"]
    other = encode_record(StepScheduled(4, "a/E@1", None, 1))
    wrong_type = cbor2.dumps({"seq": "4", "kind": "EventAdmitted", "value": b"", "schema": "s", "lane_id": 0},
                             canonical=True)
    wrong_kind = good.replace(b"EventAdmitted", b"EventAdmitteD")
    null_visible = cbor2.dumps({"seq": 4, "kind": "EventAdmitted", "value": b"", "schema": "s", "lane_id": 0,
                                "visible_at": None}, canonical=True)
    for bad in (good[:-1], good + b"\x00", other, wrong_type, wrong_kind, b"", b"\xa0", visible[:-1],
                null_visible):
        assert decoder.record_fields(k, bad) is None, bad
        assert decoder.event_admitted_fields(bad) is None


def test_replay_remembers_only_step_scheduled_payloads_by_their_start() -> None:
    import importlib

    replay = importlib.import_module("aos.replay")  # the module (aos.replay is also a function's name)
    starts = {k.name for k in schema.KINDS for v in range(schema.variants(k))
              if schema.first_key(k.name, v) == replay._SCHEDULED_START}
    assert starts == {"StepScheduled", "CellMigrated"}  # CellMigrated is read at era boundaries, never produced


def test_a_record_of_the_wrong_type_names_its_field() -> None:
    payload = cbor2.dumps({"seq": 1, "kind": "EventAdmitted", "value": "text", "schema": "s", "lane_id": 0},
                          canonical=True)
    with pytest.raises(NonCanonicalError, match=r"EventAdmitted\.value has the wrong type"):
        decode_record(payload)


# ------------------------------------------------------------------ admission numbers
def _manifest() -> aos.Manifest:
    m = aos.Manifest("test/admission@1")
    m.capability("pay", effect="payment.send", budget=5)
    m.schema("test/Nowhere@1")  # emitted, routed to no cell: still takes an admission number

    @m.reducer("test/Log@1", key="k", events=["test/In@1", "test/Fwd@1"])
    def log(ctx: Any, state: Any, event: Any) -> Any:
        seen = list(state or [])
        seen.append([event.schema, event.seq])
        v = event.value
        if event.schema == "test/In@1":
            for i in range(v.get("fan", 0)):
                ctx.emit("test/Fwd@1", {"k": f"{ctx.key}.{i}"})
                ctx.emit("test/Nowhere@1", {"i": i})
            for cost in v.get("pay", []):  # the budget of 5 denies some of these
                ctx.effect("payment.send", {"n": cost}, cost=cost)
        return seen

    return m


def test_admission_numbers_match_what_a_live_world_assigns(tmp_path: Path) -> None:
    """The rule (records.admissions) numbers the journal's inputs as the kernel and committer did."""
    m = _manifest()
    path = tmp_path / "w"
    paid = lambda req: aos.Outcome("ok", {"paid": req.cost}, req.cost)  # noqa: E731
    with aos.World.open(path, m, effects="inline", adapters={"payment.send": paid}) as w:
        w.submit("test/In@1", {"k": "a", "fan": 2, "pay": [2, 2, 2]})  # the third payment is denied
        w.submit("test/In@1", {"k": "b", "pay": [9]})  # denied
        w.submit("test/In@1", {"k": "a", "fan": 1})
        w.run(settle=True)
        w.submit("test/In@1", {"k": "c"})  # its number is the count of all before it (journaled, and seen)
        w.run(settle=True)
        seen = {tuple(k): w.state("test/Log@1", k[1]) for k in w.cells()}

    # what each cell was delivered, by admission number (the kernel's numbering)
    delivered = {seq: (schema_, cell) for cell, events in seen.items() for schema_, seq in events}
    numbers = AdmissionNumbers()
    kinds: dict[int, str] = {}
    for entry, rec in JournalReader(path / "journal").records():
        for seq in numbers.take(rec, entry):
            kinds[seq] = rec.KIND
    admitted = numbers.next
    assert delivered[admitted - 1] == ("test/In@1", ("test/Log@1", "c"))
    assert len(kinds) == admitted
    assert sorted(kinds) == list(range(admitted))
    assert set(delivered) <= set(kinds)
    for seq, (schema_, _cell) in delivered.items():
        expect = {"test/In@1": "EventAdmitted", "test/Fwd@1": "StepCommitted", "sys/Receipt@1": "ReceiptAppended",
                  "sys/EffectDenied@1": "PolicyDecision"}[schema_]
        assert kinds[seq] == expect, (seq, schema_)
    assert {k for s, k in kinds.items() if s not in delivered} == {"StepCommitted"}  # the unrouted emits
    assert set(kinds.values()) == {"EventAdmitted", "StepCommitted", "ReceiptAppended", "PolicyDecision"}

    prov = Provenance(path)  # provenance numbers with the same rule
    assert sorted(prov.events) == list(range(admitted))
    for seq, (schema_, _cell) in delivered.items():
        assert prov.events[seq].schema == schema_ or prov.events[seq].origin in ("denied", "receipt")

    import sqlite3

    from aos.export import export_sqlite

    export_sqlite(path, tmp_path / "w.sqlite")
    db = sqlite3.connect(tmp_path / "w.sqlite")
    try:
        exported = dict(db.execute("SELECT seq, schema FROM events").fetchall())
    finally:
        db.close()
    for seq, (schema_, _cell) in delivered.items():
        if schema_ in ("test/In@1", "test/Fwd@1"):
            assert exported[seq] == schema_


def test_admissions_per_record() -> None:
    from aos.records import PolicyDecision, ReceiptAppended, StepCommitted

    h = bytes(32)
    assert admissions(EventAdmitted(0, "s", b"")) == 1
    assert admissions(ReceiptAppended(0, h, "ok", b"\xf6", 0)) == 1
    assert admissions(StepCommitted(1, h, (Emit("a", b""), Emit("b", b"")))) == 2
    assert admissions(PolicyDecision(1, h, False, "no")) == 1
    assert admissions(PolicyDecision(1, h, True, "ok")) == 0
    assert admissions(StepScheduled(1, "r", None, 0)) == 0


def test_an_input_with_the_wrong_admission_number_is_reported() -> None:
    numbers = AdmissionNumbers()
    assert numbers.take(EventAdmitted(0, "s", b"")) == range(0, 1)
    with pytest.raises(JournalCorruptError, match="admission number 5, expected 1"):
        numbers.take(EventAdmitted(5, "s", b""))


def test_an_optional_field_is_left_out_never_null() -> None:
    rec = EventAdmitted(4, "a/E@1", b"\xa0", 0, 9)
    assert decode_record(encode_record(rec)) == rec
    old = EventAdmitted(4, "a/E@1", b"\xa0")
    assert "visible_at" not in cbor2.loads(encode_record(old)) and decode_record(encode_record(old)) == old
    null = cbor2.dumps({"seq": 4, "kind": "EventAdmitted", "value": b"", "schema": "s", "lane_id": 0,
                        "visible_at": None}, canonical=True)
    with pytest.raises(NonCanonicalError, match="visible_at is null"):
        decode_record(null)


def test_optional_fields_are_declared_last() -> None:
    bad = schema.Kind("Bad", schema._f("[a:uint] b:uint"))
    with pytest.raises(ValueError, match="optional fields, declared last"):
        schema._check((bad,))
