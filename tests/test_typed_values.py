"""Typed values: dataclasses (and msgspec Structs, pydantic models) as event and state values.

A record encodes as the map of its fields by name (the bytes of the equal dict);
``@m.reducer(..., state=S, event=E)`` hands the reducer those types, checks events
at admission (``TypedValueError`` naming the schema and the field, nothing
admitted) and stores a returned ``S`` as its field map.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.journal import JournalReader


@dataclass(frozen=True)
class Line:
    sku: str
    qty: int


@dataclass
class Placed:
    order_id: str
    qty: int
    lines: list[Line] = field(default_factory=list)
    note: str | None = None


@dataclass
class Order:
    qty: int = 0
    lines: list[Line] = field(default_factory=list)
    paid: int = 0
    seen: list[str] = field(default_factory=list)


SEEN: list[tuple[str, str, str]] = []  # (state type, event value type, schema) as the reducer saw them


def typed_manifest(name: str = "test/typed@1", order_type: type = Order) -> aos.Manifest:
    m = aos.Manifest(name)
    m.capability("pay", effect="payment.send", budget=1000)
    m.schema("test/Shipped@1")

    # (code_id: the reducer reads SEEN, a list the tests change, which would move a code identity)
    @m.reducer("test/Order@1", key="order_id", events=["test/Placed@1", "test/Note@1"], state=order_type,
               event={"test/Placed@1": Placed}, code_id="order-1")
    def order(ctx: Any, state: Any, event: Any) -> Any:
        SEEN.append((type(state).__name__, type(event.value).__name__, event.schema))
        s = state or Order()
        if event.schema == "sys/Receipt@1":  # not declared: a plain dict, as for any reducer
            return dataclasses.replace(s, paid=s.paid + event.value["payload"]["paid"])
        if event.schema == "test/Note@1":  # not in the event= mapping: a plain dict
            return dataclasses.replace(s, seen=[*s.seen, event.value["text"]])
        p = event.value
        if p.qty > 5:
            ctx.effect("payment.send", {"amount": p.qty}, cap="pay", cost=1)
        if p.note == "ship":
            ctx.emit("test/Shipped@1", Line(p.order_id, p.qty))  # a record emitted: its field map
        return Order(s.qty + p.qty, [*s.lines, *p.lines], s.paid, s.seen)

    return m


def untyped_manifest() -> aos.Manifest:
    """The same reducer on dicts (same events, same states)."""
    m = aos.Manifest("test/typed@1")
    m.capability("pay", effect="payment.send", budget=1000)
    m.schema("test/Shipped@1")

    @m.reducer("test/Order@1", key="order_id", events=["test/Placed@1", "test/Note@1"])
    def order(ctx: Any, state: Any, event: Any) -> Any:
        s = state or {"qty": 0, "lines": [], "paid": 0, "seen": []}
        if event.schema == "sys/Receipt@1":
            return dict(s, paid=s["paid"] + event.value["payload"]["paid"])
        if event.schema == "test/Note@1":
            return dict(s, seen=[*s["seen"], event.value["text"]])
        p = event.value
        if p["qty"] > 5:
            ctx.effect("payment.send", {"amount": p["qty"]}, cap="pay", cost=1)
        if p.get("note") == "ship":
            ctx.emit("test/Shipped@1", {"sku": p["order_id"], "qty": p["qty"]})
        return {"qty": s["qty"] + p["qty"], "lines": [*s["lines"], *p.get("lines", [])], "paid": s["paid"],
                "seen": s["seen"]}

    return m


def pay(req: aos.EffectRequest) -> aos.Outcome:
    return aos.Outcome("ok", {"paid": req.params["amount"]}, 1)


EVENTS: list[tuple[str, Any]] = [
    ("test/Placed@1", Placed("a", 2, [Line("x", 1)])),
    ("test/Placed@1", {"order_id": "c", "qty": 1, "lines": [Line("z", 3)]}),  # a record inside a dict
    ("test/Placed@1", {"order_id": "b", "qty": 7}),
    ("test/Note@1", {"order_id": "a", "text": "hello"}),
    ("test/Placed@1", Placed("a", 3, note="ship")),
    ("test/Placed@1", {"order_id": "b", "qty": 1, "lines": [{"sku": "y", "qty": 2}], "note": None}),
]


def run(path: Path, m: aos.Manifest, workers: int = 0, **kw: Any) -> tuple[list[bytes], str]:
    with aos.World.open(path, m, workers=workers, effects="inline", adapters={"payment.send": pay}, **kw) as w:
        for schema, value in EVENTS:
            w.submit(schema, value)
        w.run()
        h = w.snapshot_hash()
        assert not w.failures()
    return [e.payload for e in JournalReader(path / "journal", m.era).entries()], h


# ------------------------------------------------------------------ encoding
def test_records_encode_as_their_field_maps() -> None:
    assert canonical.encode(Placed("a", 2, [Line("x", 1)])) == canonical.encode(
        {"order_id": "a", "qty": 2, "lines": [{"sku": "x", "qty": 1}], "note": None})
    assert canonical.encode({"k": [Line("x", -0.0)]}) == canonical.encode({"k": [{"sku": "x", "qty": 0.0}]})
    with pytest.raises(aos.UnencodableValueError, match=r"value\['lines'\]\[0\]\['qty'\]: NaN"):
        canonical.encode(Placed("a", 1, [Line("x", float("nan"))]))  # type: ignore[arg-type]
    with pytest.raises(aos.UnencodableValueError, match="type type is not in the value model"):
        canonical.encode(Placed)  # the class is no value


# ------------------------------------------------------------ the reducer's view
def test_the_reducer_gets_its_declared_types_and_states_are_the_dict_worlds(tmp_path: Path) -> None:
    SEEN.clear()
    typed_journal, typed_hash = run(tmp_path / "typed", typed_manifest())
    assert ("NoneType", "Placed", "test/Placed@1") in SEEN
    assert ("Order", "Placed", "test/Placed@1") in SEEN
    assert ("Order", "dict", "test/Note@1") in SEEN  # a schema the event= mapping does not name
    assert ("Order", "dict", "sys/Receipt@1") in SEEN  # a receipt: the kernel's schema, a dict
    _journal, plain_hash = run(tmp_path / "plain", untyped_manifest())
    assert typed_hash == plain_hash  # every cell's state: the same bytes as the dict reducer's
    with aos.World.open(tmp_path / "typed", typed_manifest()) as w:
        assert w.state("test/Order@1", "a") == {"qty": 5, "lines": [{"sku": "x", "qty": 1}], "paid": 0,
                                                 "seen": ["hello"]}
        assert w.state("test/Order@1", "b")["paid"] == 7
    shipped = [r for _e, r in JournalReader(tmp_path / "typed" / "journal", typed_manifest().era).records()
               if type(r).__name__ == "StepCommitted" and r.emits]
    assert [canonical.decode(e.value) for e in shipped[0].emits] == [{"sku": "a", "qty": 3}]


def test_typed_values_round_trip_through_snapshot_reopen_and_replay(tmp_path: Path) -> None:
    m = typed_manifest()
    path = tmp_path / "w"
    journal, h = run(path, m, snapshot_every=2)
    with aos.World.open(path, typed_manifest()) as w:  # reopened from its snapshot and tail
        assert w.snapshot_hash() == h
        w.submit("test/Placed@1", Placed("a", 1))
        w.run()
        assert w.state("test/Order@1", "a")["qty"] == 6
        h2 = w.snapshot_hash()
    assert aos.replay(path, typed_manifest()).verify() == h2
    again, _h = run(tmp_path / "again", typed_manifest(), snapshot_every=2)
    assert again == journal  # the same inputs, the same journal bytes


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_count_writes_the_inline_journal(tmp_path: Path, workers: int) -> None:
    oracle, h = run(tmp_path / "inline", typed_manifest())
    journal, h2 = run(tmp_path / f"w{workers}", typed_manifest(), workers=workers)
    assert journal == oracle and h2 == h


def test_profiled_typed_world_writes_the_same_journal(tmp_path: Path) -> None:
    oracle, _h = run(tmp_path / "plain", typed_manifest())
    journal, _h = run(tmp_path / "profiled", typed_manifest(), profile=True)
    assert journal == oracle


# ------------------------------------------------------------------ admission
@pytest.mark.parametrize("value, where, reason", [
    ({"order_id": "a"}, r"value\['qty'\]", "missing"),
    ({"order_id": "a", "qty": "2"}, r"value\['qty'\]", "expected int, got str"),
    ({"order_id": "a", "qty": True}, r"value\['qty'\]", "expected int, got bool"),
    ({"order_id": "a", "qty": 1, "colour": "red"}, r"value\['colour'\]", "unknown field"),
    ({"order_id": "a", "qty": 1, "lines": [{"sku": "x", "qty": 1}, {"sku": "y"}]}, r"value\['lines'\]\[1\]\['qty'\]",
     "missing"),
    ({"order_id": "a", "qty": 1, "note": 3}, r"value\['note'\]", r"expected str \| None, got int"),
    (Placed("a", "2"), r"value\['qty'\]", "expected int, got str"),  # type: ignore[arg-type]
    (["a", 1], r"value", "expected a map of the fields of Placed, got list"),
])
def test_a_value_that_does_not_fit_is_refused_at_admission(tmp_path: Path, value: Any, where: str,
                                                             reason: str) -> None:
    with aos.World.open(tmp_path / "w", typed_manifest()) as w:
        with pytest.raises(aos.TypedValueError, match=rf"submitted event test/Placed@1: {where}: {reason}") as info:
            w.submit("test/Placed@1", value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
        assert info.value.path == where.replace("value", "", 1).replace("\\", "")
        assert w.run().steps == 0  # nothing admitted
    assert [r for _e, r in JournalReader(tmp_path / "w" / "journal", typed_manifest().era).records()
            if type(r).__name__ == "EventAdmitted"] == []


def test_an_emitted_event_that_does_not_fit_fails_the_step(tmp_path: Path) -> None:
    m = aos.Manifest("test/emit@1")

    @m.reducer("test/Src@1", events=["test/Go@1"])
    def src(ctx: Any, state: Any, event: Any) -> Any:
        ctx.emit("test/Placed@1", {"order_id": "a", "qty": event.value["qty"]})
        return {"ok": True}

    m.reducer("test/Order@1", key="order_id", events=["test/Placed@1"], state=Order, event=Placed)(
        lambda ctx, state, event: Order(event.value.qty))
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/Go@1", {"qty": 1.5})
        w.run()
        (failure,) = w.failures()
        assert failure.error == "TypedValueError"
        assert "event emitted by test/Src@1 test/Placed@1: value['qty']: expected int, got float" in failure.message
        assert w.state("test/Src@1") is None and w.state("test/Order@1", "a") is None


def test_a_returned_state_that_does_not_fit_fails_the_step(tmp_path: Path) -> None:
    m = aos.Manifest("test/ret@1")

    @m.reducer("test/Order@1", key="order_id", events=["test/Placed@1"], state=Order)
    def order(ctx: Any, state: Any, event: Any) -> Any:
        v = event.value
        return {"qty": "many"} if v["qty"] == 1 else Line("x", 1) if v["qty"] == 2 else {"qty": v["qty"]}

    with aos.World.open(tmp_path / "w", m) as w:
        for q in (1, 2, 3):
            w.submit("test/Placed@1", {"order_id": f"o{q}", "qty": q})
        w.run()
        messages = [f.message for f in w.failures()]
        assert messages == ["state returned by reducer test/Order@1: state['qty']: expected int, got str",
                            "state returned by reducer test/Order@1: state: expected Order or a dict, got Line"]
        # a dict that fits is stored as the type's field map, defaults filled
        assert w.state("test/Order@1", "o3") == {"qty": 3, "lines": [], "paid": 0, "seen": []}


def test_an_event_upcast_to_a_typed_schema_is_checked_after_the_upcast(tmp_path: Path) -> None:
    m = typed_manifest()
    m.upcast("test/Placed@0", "test/Placed@1", lambda v: {"order_id": v["id"], "qty": v["n"]})
    with aos.World.open(tmp_path / "w", m) as w:
        with pytest.raises(aos.TypedValueError, match=r"test/Placed@0 upcast to test/Placed@1: value\['qty'\]: "
                                                      "expected int, got str"):
            w.submit("test/Placed@0", {"id": "a", "n": "3"})
        w.submit("test/Placed@0", {"id": "a", "n": 3})
        w.run()
        assert w.state("test/Order@1", "a")["qty"] == 3


# ----------------------------------------------------------------- declaration
def test_declared_types_are_part_of_the_era(tmp_path: Path) -> None:
    @dataclass
    class Order2:  # Order with one more field
        qty: int = 0
        lines: list[Line] = field(default_factory=list)
        paid: int = 0
        seen: list[str] = field(default_factory=list)
        extra: int = 0

    Order2.__qualname__ = "Order"  # the same name: only the field set differs
    typed_manifest().describe()
    with aos.World.open(tmp_path / "w", typed_manifest()):
        pass
    with pytest.raises(aos.EraChangeError) as info:
        aos.World.open(tmp_path / "w", typed_manifest(order_type=Order2))
    assert [c.kind for c in info.value.changes] == ["reducer-other"]
    assert info.value.changes[0].text == "reducer test/Order@1: types: state field 'extra' added"
    assert typed_manifest().era != untyped_manifest().era
    (change,) = [c for c in aos.changes(untyped_manifest().describe(), typed_manifest().describe())
                 if c.kind == "reducer-other"]
    assert change.text == "reducer test/Order@1: types: state none -> Order; event test/Placed@1 none -> Placed"


def test_a_reducer_without_types_is_not_wrapped_and_keeps_its_era() -> None:
    m = untyped_manifest()
    spec = m.get("test/Order@1")
    assert spec.types is None and spec.fn.__code__.co_name == "order" and not hasattr(spec.fn, "__wrapped__")
    assert "types" not in spec.describe()
    assert m.event_checks == {}


def test_bad_declarations_are_refused() -> None:
    m = aos.Manifest("test/bad@1")
    with pytest.raises(aos.ManifestError, match="state= must be a dataclass"):
        m.reducer("test/A@1", events=["test/X@1"], state=dict)
    with pytest.raises(aos.ManifestError, match="event= names schema 'test/Y@1', which is not one of its events"):
        m.reducer("test/A@1", events=["test/X@1"], event={"test/Y@1": Placed})
    with pytest.raises(aos.ManifestError, match=r"Bad\.when: type .*datetime.* is outside what typed values take"):
        @dataclass
        class Bad:
            when: datetime.datetime

        m.reducer("test/A@1", events=["test/X@1"], state=Bad)
    with pytest.raises(aos.ManifestError, match="init=False"):
        @dataclass
        class Derived:
            a: int
            b: int = field(init=False, default=0)

        m.reducer("test/A@1", events=["test/X@1"], event=Derived)
    from aos.examples import spin

    with pytest.raises(aos.ManifestError, match="native reducer test/N@1: state= and event= declare typed values for "
                                                "Python reducers"):
        m.native_reducer("test/N@1", events=["test/X@1"], fn=spin.REDUCER, code_id="x", state=Order)


# ------------------------------------------------------------- other libraries
@pytest.mark.skipif(importlib.util.find_spec("msgspec") is None,
                    reason="msgspec is not installed (no wheel for this interpreter, e.g. free-threaded 3.13)")
def test_msgspec_structs(tmp_path: Path) -> None:
    import msgspec

    class MPlaced(msgspec.Struct):
        order_id: str
        qty: int
        tags: list[str] = []

    class MOrder(msgspec.Struct):
        qty: int = 0

    m = aos.Manifest("test/msgspec@1")

    @m.reducer("test/Order@1", key="order_id", events=["test/Placed@1"], state=MOrder, event=MPlaced)
    def order(ctx: Any, state: Any, event: Any) -> Any:
        assert isinstance(event.value, MPlaced) and (state is None or isinstance(state, MOrder))
        return MOrder((state.qty if state else 0) + event.value.qty)

    assert canonical.encode(MPlaced("a", 1)) == canonical.encode({"order_id": "a", "qty": 1, "tags": []})
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/Placed@1", MPlaced("a", 2))
        w.submit("test/Placed@1", {"order_id": "a", "qty": 3})
        with pytest.raises(aos.TypedValueError, match=r"value\['tags'\]\[0\]: expected str, got int"):
            w.submit("test/Placed@1", {"order_id": "a", "qty": 3, "tags": [1]})
        w.run()
        assert w.state("test/Order@1", "a") == {"qty": 5}
        h = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == h


@pytest.mark.skipif(importlib.util.find_spec("pydantic") is None,
                    reason="pydantic is not installed (no wheel for this interpreter, e.g. free-threaded 3.13)")
def test_pydantic_models(tmp_path: Path) -> None:
    import pydantic

    class PPlaced(pydantic.BaseModel):
        order_id: str
        qty: int = pydantic.Field(gt=0)

    class POrder(pydantic.BaseModel):
        qty: int = 0

    m = aos.Manifest("test/pydantic@1")

    @m.reducer("test/Order@1", key="order_id", events=["test/Placed@1"], state=POrder, event=PPlaced)
    def order(ctx: Any, state: Any, event: Any) -> Any:
        assert isinstance(event.value, PPlaced) and (state is None or isinstance(state, POrder))
        return POrder(qty=(state.qty if state else 0) + event.value.qty)

    assert canonical.encode(PPlaced(order_id="a", qty=1)) == canonical.encode({"order_id": "a", "qty": 1})
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/Placed@1", PPlaced(order_id="a", qty=2))
        w.submit("test/Placed@1", {"order_id": "a", "qty": 3})
        with pytest.raises(aos.TypedValueError, match=r"value\['qty'\]: expected int, got str"):
            w.submit("test/Placed@1", {"order_id": "a", "qty": "3"})  # no coercion
        with pytest.raises(aos.TypedValueError, match="(?s)value does not build a PPlaced .*greater than 0"):
            w.submit("test/Placed@1", {"order_id": "a", "qty": 0})  # the model's own validation
        w.run()
        assert w.state("test/Order@1", "a") == {"qty": 5}
        h = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_class_variables_are_no_fields_and_init_vars_are_refused() -> None:
    @dataclass
    class WithClassVar:
        LIMIT: typing.ClassVar[int] = 3
        n: int = 0

    assert canonical.encode(WithClassVar(1)) == canonical.encode({"n": 1})
    aos.Manifest("test/cv@1").reducer("test/A@1", events=["test/X@1"], state=WithClassVar)

    @dataclass
    class WithInitVar:
        n: int
        seed: dataclasses.InitVar[int] = 0

    with pytest.raises(aos.ManifestError, match=r"WithInitVar\.seed is an InitVar"):
        aos.Manifest("test/iv@1").reducer("test/A@1", events=["test/X@1"], state=WithInitVar)


def test_a_failed_typed_step_journals_the_reducers_frames_as_an_untyped_one(tmp_path: Path) -> None:
    def make(typed: bool) -> aos.Manifest:
        m = aos.Manifest("test/fail@1")

        def order(ctx: Any, state: Any, event: Any) -> Any:
            qty = event.value.qty if typed else event.value["qty"]
            return {"qty": 10 // qty}

        m.reducer("test/Order@1", key="order_id", events=["test/Placed@1"], code_id="fail-1",
                  **({"state": Order, "event": Placed} if typed else {}))(order)
        return m

    tracebacks = []
    for typed in (True, False):
        with aos.World.open(tmp_path / str(typed), make(typed)) as w:
            w.submit("test/Placed@1", {"order_id": "a", "qty": 0})
            w.run()
            (failure,) = w.failures()
            assert failure.error == "ZeroDivisionError"
            tracebacks.append(failure.traceback)
    assert tracebacks[0] == tracebacks[1]
    assert "typed.py" not in tracebacks[0] and "in test_a_failed_typed_step" in tracebacks[0]


@dataclass
class Node:
    name: str
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None


def test_a_record_that_contains_itself(tmp_path: Path) -> None:
    m = aos.Manifest("test/tree@1")

    @m.reducer("test/Tree@1", events=["test/Put@1"], state=Node, event=Node)
    def tree(ctx: Any, state: Any, event: Any) -> Any:
        assert isinstance(event.value.children[0], Node)
        return Node("root", [*(state.children if state else []), event.value])

    d = m.describe()["reducers"][0]["types"]["state"]
    assert d["fields"][1] == ["children", ["list", {"ref": "Node"}], False]
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/Put@1", Node("a", [Node("b")]))
        with pytest.raises(aos.TypedValueError, match=r"value\['children'\]\[0\]\['children'\]\[0\]\['name'\]: "
                                                      "expected str, got int"):
            w.submit("test/Put@1", {"name": "a", "children": [{"name": "b", "children": [{"name": 1}]}]})
        w.run()
        assert w.state("test/Tree@1")["children"][0]["children"][0]["name"] == "b"
        h = w.snapshot_hash()
    assert aos.replay(tmp_path / "w", m).verify() == h


# ------------------------------------------------------------------ the inline loop's typed call
@dataclass
class Tally:
    n: int = 0
    last: str = ""


@dataclass
class Bump:
    id: str
    by: int = 1


def plain_typed_manifest(state: type | None = Tally, event: type | None = Bump) -> aos.Manifest:
    """Plain dataclasses only (``Shape.fast``): the inline loop converts in C (``TypedPlan``); the reference
    executor calls aos.typed's wrapper. Each ``by`` picks a way out of the reducer."""
    m = aos.Manifest("test/plain-typed@1")

    @m.reducer("test/Tally@1", key="id", events=["test/Bump@1", "test/Note@1"], state=state,
               event=None if event is None else {"test/Bump@1": event}, code_id="tally-1")
    def tally(ctx: Any, state: Any, event: Any) -> Any:
        v = event.value
        SEEN.append((type(state).__name__, type(v).__name__, event.schema))
        by = v["by"] if type(v) is dict else v.by
        n = 0 if state is None else state["n"] if type(state) is dict else state.n
        if by == 0:
            return None  # the cell deleted
        if by == 13:
            raise ValueError("unlucky")
        if by == 7:
            return {"n": n + by}  # a fitting dict: stored with the defaults filled
        if by == 9:
            return "nine"  # neither the type nor a map: the step fails
        return Tally(n + by, v["id"] if type(v) is dict else v.id) if state is not None or by != 5 else {"n": by}

    return m


TALLY_EVENTS: list[tuple[str, Any]] = [
    ("test/Bump@1", {"id": "a", "by": 2}), ("test/Bump@1", {"id": "a"}),  # by's default: the wrapper's way
    ("test/Bump@1", Bump("b", 5)), ("test/Bump@1", {"id": "a", "by": 7}), ("test/Bump@1", {"id": "b", "by": 13}),
    ("test/Note@1", {"id": "a", "by": 4}),  # a schema without a declared type: a plain dict
    ("test/Bump@1", {"id": "b", "by": 9}), ("test/Bump@1", {"id": "a", "by": 0}), ("test/Bump@1", Bump("a", 3)),
    ("test/Bump@1", {"id": "b", "by": 2}),
]


def run_tally(path: Path, m: aos.Manifest, **kw: Any) -> tuple[list[bytes], str, list[tuple[str, str, str]], Any]:
    SEEN.clear()
    with aos.World.open(path, m, snapshot_every=0, **kw) as w:
        for schema, value in TALLY_EVENTS:
            w.submit(schema, value)
        w.run()
        out = ([e.payload for e in JournalReader(path / "journal", m.era).entries()], w.snapshot_hash(),
               list(SEEN), w.metrics()["steps_by_path"])
    SEEN.clear()
    return out


@pytest.mark.parametrize("state, event", [(Tally, Bump), (None, Bump), (Tally, None)])
def test_the_inline_loops_typed_call_writes_the_wrappers_journal(tmp_path: Path, state: Any, event: Any) -> None:
    m = plain_typed_manifest(state, event)
    assert m.reducers["test/Tally@1"].plan is not None  # plain dataclasses: the loop converts in C
    journal, h, seen, paths = run_tally(tmp_path / "c", m, workers=0)
    ref_journal, ref_h, ref_seen, _p = run_tally(tmp_path / "ref", plain_typed_manifest(state, event),
                                                 reference=True)
    assert journal == ref_journal and h == ref_h
    assert seen == ref_seen  # the reducer saw the same types, step by step
    assert paths["c_loop"] > 0
    expected_event = "Bump" if event is not None else "dict"
    assert ("NoneType", expected_event, "test/Bump@1") in seen
    if state is not None:
        assert ("Tally", expected_event, "test/Bump@1") in seen
    assert ("Tally" if state is not None else "dict", "dict", "test/Note@1") in seen
    assert aos.replay(tmp_path / "c", plain_typed_manifest(state, event)).verify() == h


def test_a_profiled_world_times_a_typed_call_and_writes_the_same_journal(tmp_path: Path) -> None:
    journal, h, seen, _p = run_tally(tmp_path / "plain", plain_typed_manifest())
    profiled, h2, seen2, _p = run_tally(tmp_path / "profiled", plain_typed_manifest(), profile=True)
    assert profiled == journal and h2 == h and seen2 == seen
    with aos.World.open(tmp_path / "profiled", plain_typed_manifest(), profile=True) as w:
        w.submit("test/Bump@1", {"id": "z", "by": 2})
        w.run()
        assert w.metrics()["reducers"]["test/Tally@1"]["steps"] == 1  # the timing wrapper was called


def test_records_with_other_than_plain_fields_have_no_plan() -> None:
    assert typed_manifest().reducers["test/Order@1"].plan is None  # (Order holds Line records: the wrapper)
    assert untyped_manifest().reducers["test/Order@1"].plan is None
