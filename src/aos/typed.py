"""Typed values: dataclasses, msgspec Structs and pydantic models as event and state values.

A *record* is an instance of a dataclass, a ``msgspec.Struct`` or a pydantic
model. Its canonical encoding is the map of its fields by name (the same
bytes as the equivalent dict: :func:`fields_of`), so the journal does not
depend on the Python type. msgspec and pydantic are never imported by aos:
a value is recognized as theirs only when the library is already loaded.

``@m.reducer(..., state=S, event=E)`` declares the types a reducer works
with. Each declared type is compiled once into a :class:`Shape`, which

* checks a plain value (what the journal holds) against the type and names
  the first field that does not fit (missing, unknown, of the wrong type);
* loads a plain value as the type (``S(**fields)``, nested records too);
* dumps an instance back to plain values.

:func:`typed_reducer` wraps the reducer function only when it declares
types (a reducer that declares none is called as it is, at no cost).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from aos._core.context import TypedPlan
from aos.errors import ManifestError, TypedValueError

__all__ = ["Shape", "ReducerTypes", "shape_of", "is_record", "fields_of", "typed_reducer", "typed_plan",
           "EventCheck"]

_SCALARS: dict[Any, str] = {int: "int", float: "float", str: "str", bytes: "bytes", bool: "bool",
                            type(None): "None"}


def _lib_record_kind(tp: type) -> str | None:
    """``"msgspec"`` or ``"pydantic"`` for a class of a loaded library's record types, else None."""
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "msgspec"
    pydantic = sys.modules.get("pydantic")
    if (pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)
            and hasattr(tp, "model_fields")):  # (pydantic 2: a pydantic 1 model is no record)
        return "pydantic"
    return None


def record_kind(tp: Any) -> str | None:
    """``"dataclass"``, ``"msgspec"`` or ``"pydantic"`` for a record class; None for anything else."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return "dataclass"
    return _lib_record_kind(tp) if isinstance(tp, type) else None


def is_record(value: Any) -> bool:
    """Whether ``value`` is an instance of a record class."""
    t = type(value)
    return (dataclasses.is_dataclass(t) or _lib_record_kind(t) is not None)


def field_names(tp: type) -> tuple[str, ...]:
    """The names of a record class's fields, in declaration order."""
    kind = record_kind(tp)
    if kind == "dataclass":
        return tuple(f.name for f in dataclasses.fields(tp))
    if kind == "msgspec":
        return tuple(tp.__struct_fields__)  # type: ignore[attr-defined]
    if kind == "pydantic":
        return tuple(tp.model_fields)  # type: ignore[attr-defined]
    raise TypeError(f"{tp!r} is not a record class")


def fields_of(value: Any) -> dict[str, Any] | None:
    """The map of a record's fields by name (their values as they are); None if ``value`` is no record."""
    t = type(value)
    if dataclasses.is_dataclass(t):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(t)}
    if _lib_record_kind(t) is not None:
        return {name: getattr(value, name) for name in field_names(t)}
    return None


# ------------------------------------------------------------------ shapes
class _Misfit(Exception):
    def __init__(self, reason: str, where: list[str]) -> None:
        self.reason = reason
        self.where = where


@dataclass(eq=False)
class Shape:
    """A declared type, compiled: ``check``, ``load``, ``dump`` and its description (part of the era)."""

    describe: Any
    check: Callable[[Any], None]  # raises _Misfit
    load: Callable[[Any], Any]  # of a plain value that fits
    dump: Callable[[Any], Any]  # to plain values (a record's fields by name)
    plain: bool  # load and dump are the identity: values of this type are plain values already
    record: type | None = None
    # a dataclass of plain fields, not frozen, whose __init__ only sets them: its field names, and the
    # accessors the reducer's wrapper uses for a map of exactly these fields (_accessors)
    fast: frozenset[str] | None = None
    fast_load: Callable[[Any], Any] | None = None
    fast_dump: Callable[[Any], Any] | None = None


def _identity(v: Any) -> Any:
    return v


def _type_name(v: Any) -> str:
    return "None" if v is None else type(v).__name__


def _scalar(tp: type) -> Shape:
    name = _SCALARS[tp]
    if tp is float:
        def check(v: Any) -> None:
            if type(v) is not float and (type(v) is not int):
                raise _Misfit(f"expected float, got {_type_name(v)}", [])
    elif tp is type(None):
        def check(v: Any) -> None:
            if v is not None:
                raise _Misfit(f"expected None, got {_type_name(v)}", [])
    else:
        exact = tp

        def check(v: Any) -> None:
            if type(v) is not exact:
                raise _Misfit(f"expected {name}, got {_type_name(v)}", [])
    return Shape(name, check, _identity, _identity, True)


def _any_check(v: Any) -> None:
    return None


_ANY = Shape("any", _any_check, _identity, _identity, True)


def shape_of(tp: Any, where: str, _seen: dict[type, Shape] | None = None) -> Shape:
    """The :class:`Shape` of a declared type; :class:`ManifestError` (naming ``where``) for one outside the model."""
    seen = {} if _seen is None else _seen
    if tp is Any or tp is object:
        return _ANY
    if tp is None:
        tp = type(None)
    if tp in _SCALARS:
        return _scalar(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is list or tp is tuple or origin in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise ManifestError(f"{where}: {tp!r}: a tuple type must be tuple[T, ...] (values are lists in the "
                                "journal)")
        return _sequence(shape_of(args[0], where, seen) if args else _ANY, tp is tuple or origin is tuple)
    if tp is dict or origin is dict:
        key = shape_of(args[0], where, seen) if args else _ANY
        if key.describe not in ("str", "int", "bytes", "any"):
            raise ManifestError(f"{where}: {tp!r}: map keys must be str, int or bytes")
        return _mapping(key, shape_of(args[1], where, seen) if args else _ANY)
    if origin is typing.Union or origin is types.UnionType:
        return _union([shape_of(a, where, seen) for a in args])
    if origin is typing.Literal:
        return _literal(args, where)
    if record_kind(tp) is not None:
        return _record(tp, where, seen)
    raise ManifestError(f"{where}: type {tp!r} is outside what typed values take (int, float, str, bytes, bool, "
                        "None, Any, list[T], tuple[T, ...], dict[K, V], unions, Literal, and dataclasses, msgspec "
                        "Structs or pydantic models of these)")


def _sequence(item: Shape, as_tuple: bool) -> Shape:
    def check(v: Any) -> None:
        if type(v) is not list and type(v) is not tuple:
            raise _Misfit(f"expected a list, got {_type_name(v)}", [])
        for i, x in enumerate(v):
            try:
                item.check(x)
            except _Misfit as bad:
                bad.where.append(f"[{i}]")
                raise

    if item.plain and not as_tuple:
        return Shape(["list", item.describe], check, _identity, _identity, True)
    load_item, dump_item = item.load, item.dump
    if as_tuple:
        def load(v: Any) -> Any:
            return tuple([load_item(x) for x in v])
    else:
        def load(v: Any) -> Any:
            return [load_item(x) for x in v]

    def dump(v: Any) -> Any:
        return [dump_item(x) for x in v]

    return Shape(["tuple" if as_tuple else "list", item.describe], check, load, dump, False)


def _mapping(key: Shape, value: Shape) -> Shape:
    def check(v: Any) -> None:
        if type(v) is not dict:
            raise _Misfit(f"expected a map, got {_type_name(v)}", [])
        for k, x in v.items():
            try:
                key.check(k)
            except _Misfit as bad:
                raise _Misfit(f"key {k!r}: {bad.reason}", []) from None
            try:
                value.check(x)
            except _Misfit as bad:
                bad.where.append(f"[{k!r}]")
                raise

    if value.plain:
        return Shape(["dict", key.describe, value.describe], check, _identity, _identity, True)
    load_value, dump_value = value.load, value.dump

    def load(v: Any) -> Any:
        return {k: load_value(x) for k, x in v.items()}

    def dump(v: Any) -> Any:
        return {k: dump_value(x) for k, x in v.items()}

    return Shape(["dict", key.describe, value.describe], check, load, dump, False)


def _union(options: list[Shape]) -> Shape:
    def check(v: Any) -> None:
        for o in options:
            try:
                o.check(v)
                return
            except _Misfit:
                continue
        raise _Misfit(f"expected {' | '.join(_show(o.describe) for o in options)}, got {_type_name(v)}", [])

    describe = ["union", *[o.describe for o in options]]
    if all(o.plain for o in options):
        return Shape(describe, check, _identity, _identity, True)

    def load(v: Any) -> Any:
        for o in options:
            try:
                o.check(v)
            except _Misfit:
                continue
            return o.load(v)
        return v  # pragma: no cover - a checked value fits one option

    def dump(v: Any) -> Any:
        for o in options:
            if o.record is not None and isinstance(v, o.record):
                return o.dump(v)
        return _dump_any(v)

    return Shape(describe, check, load, dump, False)


def _literal(values: tuple[Any, ...], where: str) -> Shape:
    for x in values:
        if type(x) not in (int, str, bytes, bool) and x is not None:
            raise ManifestError(f"{where}: Literal values must be int, str, bytes, bool or None, got {x!r}")
    allowed = [(type(x), x) for x in values]

    def check(v: Any) -> None:
        if (type(v), v) not in allowed:
            raise _Misfit(f"expected one of {', '.join(repr(x) for x in values)}, got {v!r}"[:200], [])

    return Shape(["literal", *values], check, _identity, _identity, True)


def _show(describe: Any) -> str:
    if isinstance(describe, str):
        return describe
    if isinstance(describe, dict):
        return str(describe.get("type")).rpartition(".")[2]
    head, *rest = describe
    if head == "union":
        return " | ".join(_show(r) for r in rest)
    if head == "literal":
        return "Literal[" + ", ".join(repr(r) for r in rest) + "]"
    return f"{head}[{', '.join(_show(r) for r in rest)}]"


def _dump_any(v: Any) -> Any:
    f = fields_of(v)
    return v if f is None else {k: _dump_any(x) for k, x in f.items()}


def _record_fields(tp: type, where: str) -> list[tuple[str, Any, bool]]:
    """(name, annotation, required) of each field of record class ``tp``."""
    kind = record_kind(tp)
    try:
        hints = typing.get_type_hints(tp)
    except Exception as exc:
        raise ManifestError(f"{where}: the field types of {tp.__qualname__} cannot be resolved "
                            f"({type(exc).__name__}: {exc})") from None
    out: list[tuple[str, Any, bool]] = []
    if kind == "dataclass":
        real = {f.name for f in dataclasses.fields(tp)}
        for n in tp.__dataclass_fields__:  # type: ignore[attr-defined]
            if n not in real and typing.get_origin(hints.get(n)) is not typing.ClassVar:
                raise ManifestError(f"{where}: {tp.__qualname__}.{n} is an InitVar; a typed value is built from "
                                    "its fields alone")
        for f in dataclasses.fields(tp):
            if not f.init:
                raise ManifestError(f"{where}: field {f.name!r} of {tp.__qualname__} is init=False; a typed value is "
                                    "built from its fields, so every field must be an __init__ parameter")
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            out.append((f.name, hints.get(f.name, Any), required))
    elif kind == "msgspec":
        defaults = tp.__struct_defaults__  # type: ignore[attr-defined]
        names = tp.__struct_fields__  # type: ignore[attr-defined]
        first_default = len(names) - len(defaults)
        for i, name in enumerate(names):
            out.append((name, hints.get(name, Any), i < first_default))
    else:  # pydantic
        for name, info in tp.model_fields.items():  # type: ignore[attr-defined]
            out.append((name, info.annotation, info.is_required()))
    return out


def _record(tp: type, where: str, seen: dict[type, Shape]) -> Shape:
    if tp in seen:
        known = seen[tp]
        if "fields" in known.describe:  # described already: the same shape again
            return known
        # a record inside itself (through a list, a map or an Optional): a reference to the one being built
        return Shape({"ref": tp.__qualname__}, lambda v: known.check(v), lambda v: known.load(v),
                     lambda v: known.dump(v), False, tp)
    kind = record_kind(tp)
    shape = Shape({"type": tp.__qualname__, "kind": kind}, _any_check, _identity, _identity, False, tp)
    seen[tp] = shape  # a record that contains itself (through a list or an Optional) refers to this one
    fields = [(name, shape_of(ann, f"{where}: {tp.__qualname__}.{name}", seen), required)
              for name, ann, required in _record_fields(tp, where)]
    shape.describe["fields"] = [[name, s.describe, required] for name, s, required in fields]
    by_name = {name: s for name, s, _r in fields}
    required_names = [name for name, _s, r in fields if r]
    names = tuple(by_name)
    label = tp.__name__

    def check(v: Any) -> None:
        if type(v) is not dict:
            raise _Misfit(f"expected a map of the fields of {label}, got {_type_name(v)}", [])
        for name in required_names:
            if name not in v:
                raise _Misfit(f"missing (a required field of {label})", [f"[{name!r}]"])
        for k, x in v.items():
            s = by_name.get(k) if type(k) is str else None
            if s is None:
                raise _Misfit(f"unknown field (not a field of {label})", [f"[{k!r}]"])
            try:
                s.check(x)
            except _Misfit as bad:
                bad.where.append(f"[{k!r}]")
                raise

    plain_fields = all(s.plain for s in by_name.values())
    if plain_fields and _fills_dict(tp, kind) and not tp.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        # A map that holds exactly the fields (what dump writes) is set into a new instance field by field,
        # as the generated __init__ would; any other through __init__ (defaults filled, misfits explained).
        field_set = frozenset(names)
        shape.fast = field_set
        shape.fast_load, shape.fast_dump = _accessors(tp, names)
        fast_load: Callable[[Any], Any] = shape.fast_load

        count = len(field_set)

        def load(v: Any) -> Any:
            if len(v) == count:
                try:
                    return fast_load(v)  # every field there (else KeyError), and only those
                except KeyError:
                    pass
            return tp(**v)
    elif plain_fields:
        def load(v: Any) -> Any:
            return tp(**v)
    else:
        loaders = {name: s.load for name, s in by_name.items()}

        def load(v: Any) -> Any:
            return tp(**{k: loaders[k](x) for k, x in v.items()})

    if shape.fast is not None:
        fast_dump: Callable[[Any], Any] = shape.fast_dump  # type: ignore[assignment]

        def dump(v: Any) -> Any:
            return fast_dump(v) if type(v) is tp else _dump_other(v)
    elif plain_fields:
        def dump(v: Any) -> Any:
            if type(v) is not tp:
                return _dump_other(v)
            return {name: getattr(v, name) for name in names}
    else:
        dumpers = {name: s.dump for name, s in by_name.items()}

        def dump(v: Any) -> Any:
            if type(v) is not tp:
                return _dump_other(v)
            return {name: dumpers[name](getattr(v, name)) for name in names}

    shape.check, shape.load, shape.dump = check, load, dump
    return shape


def _accessors(tp: type, names: tuple[str, ...]) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Made for one dataclass: ``load(map)`` sets each field of a new instance, ``dump(instance)`` the map back.

    Written out field by field (the way dataclasses write ``__init__``): on every step of a typed
    reducer, a loop over the names would cost more than the rest of the conversion.
    """
    for n in names:
        if not n.isidentifier():  # pragma: no cover - dataclass fields are identifiers
            raise ManifestError(f"field {n!r} of {tp.__qualname__} is not an identifier")
    sets = "".join(f"    o.{n} = v[{n!r}]\n" for n in names)
    reads = ", ".join(f"{n!r}: o.{n}" for n in names)
    source = (f"def load(v):\n    o = new(tp)\n{sets}    return o\n"
              f"def dump(o):\n    return {{{reads}}}\n")
    namespace: dict[str, Any] = {"new": object.__new__, "tp": tp}
    exec(compile(source, f"<aos.typed accessors of {tp.__qualname__}>", "exec"), namespace)  # noqa: S102
    return namespace["load"], namespace["dump"]


def _fills_dict(tp: type, kind: str | None) -> bool:
    """Whether a dataclass's generated ``__init__`` only stores its fields in the instance ``__dict__``."""
    if kind != "dataclass" or "__slots__" in tp.__dict__ or hasattr(tp, "__post_init__"):
        return False
    params = getattr(tp, "__dataclass_params__", None)
    init = getattr(tp, "__init__", None)
    # (every field is an __init__ parameter and there is no InitVar: _record_fields refuses the others)
    return params is not None and params.init and getattr(init, "__qualname__", "") == f"{tp.__qualname__}.__init__"


def _dump_other(v: Any) -> Any:
    """A value where a record was declared but that is no instance of it: a map as it is, another record's fields."""
    return _dump_any(v)


def misfit(shape: Shape, value: Any) -> tuple[str, str] | None:
    """``(path, reason)`` of the first part of plain ``value`` that does not fit ``shape``; None if it fits."""
    try:
        shape.check(value)
    except _Misfit as bad:
        return "".join(reversed(bad.where)), bad.reason
    return None


# ----------------------------------------------------------------- reducers
def _as_mapping(event: Any, events: tuple[str, ...], reducer: str) -> dict[str, Any]:
    if isinstance(event, Mapping):
        for schema in event:
            if schema not in events:
                raise ManifestError(f"reducer {reducer}: event= names schema {schema!r}, which is not one of its "
                                    f"events {list(events)}")
        return dict(event)
    return {schema: event for schema in events}


@dataclass(eq=False)
class ReducerTypes:
    """The declared types of one reducer: its state's and, per schema of its events, its event values'."""

    reducer: str
    state: Shape | None
    events: dict[str, Shape]
    state_type: Any = None
    event_types: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def declare(cls, reducer: str, events: tuple[str, ...], state: Any, event: Any) -> ReducerTypes | None:
        """The types of ``@m.reducer(..., state=, event=)``; None when neither is given."""
        if state is None and event is None:
            return None
        seen: dict[type, Shape] = {}
        st = None
        if state is not None:
            if record_kind(state) is None:
                raise ManifestError(f"reducer {reducer}: state= must be a dataclass, a msgspec Struct or a pydantic "
                                    f"model, got {state!r}")
            st = shape_of(state, f"reducer {reducer}: state", seen)
        ev_types = {} if event is None else _as_mapping(event, events, reducer)
        evs: dict[str, Shape] = {}
        for schema, tp in ev_types.items():
            if record_kind(tp) is None:
                raise ManifestError(f"reducer {reducer}: event= for {schema} must be a dataclass, a msgspec Struct "
                                    f"or a pydantic model, got {tp!r}")
            evs[schema] = shape_of(tp, f"reducer {reducer}: event {schema}", seen)
        return cls(reducer, st, evs, state, ev_types)

    def describe(self) -> dict[str, Any]:
        """What enters the era: the shape of each declared type (class names and fields, not modules)."""
        d: dict[str, Any] = {}
        if self.state is not None:
            d["state"] = self.state.describe
        if self.events:
            d["events"] = {schema: self.events[schema].describe for schema in sorted(self.events)}
        return d


def _fail(where: str, shape: Shape, value: Any, exc: BaseException | None = None) -> TypedValueError:
    found = misfit(shape, value)
    if found is not None:
        path, reason = found
        return TypedValueError(f"{where}{path}: {reason}", path, reason)
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else "does not fit"
    return TypedValueError(f"{where}: {reason}", "", reason)


def _set_fields(shape: Shape, source: str, target: str, pad: str, cls: str, fallback: str) -> str:
    """Lines that build ``target`` from map ``source`` field by field, or through ``fallback`` (a plain dataclass)."""
    assert shape.fast is not None
    names = sorted(shape.fast)
    sets = "".join(f"{pad}        _o.{n} = {source}[{n!r}]\n" for n in names)
    return (f"{pad}if len({source}) == {len(names)}:  # every field there (else KeyError) and only those\n"
            f"{pad}    try:\n{pad}        _o = _new({cls})\n{sets}{pad}        {target} = _o\n"
            f"{pad}    except Exception:\n{pad}        {target} = {fallback}\n"
            f"{pad}else:\n{pad}    {target} = {fallback}\n")


def _write_wrapper(st: Shape | None, ev_loads: dict[str, Shape], namespace: dict[str, Any]) -> Any:
    """The reducer's wrapper, written out for its types (the way dataclasses write ``__init__``).

    It runs on every step of the reducer, so the common case — a plain dataclass (``Shape.fast``)
    and a map of exactly its fields, which is what its dump writes — sets the fields of a new
    instance inline, with no call per value; any other map goes through the type's ``load``
    (``__init__``: defaults filled, a misfit explained).
    """
    lines = ["def typed(ctx, state, event):\n"]
    if st is not None:
        lines.append("    if state is not None:\n")
        if st.fast is not None:
            lines.append(_set_fields(st, "state", "state", "        ", "_ST", "_load_state(state)"))
        else:
            lines.append("        state = _load_state(state)\n")
    if ev_loads:
        lines.append("    schema = event.schema\n")
        for i, (schema, shape) in enumerate(ev_loads.items()):
            lines.append(f"    {'if' if i == 0 else 'elif'} schema == {schema!r}:\n")
            if shape.fast is not None:
                namespace[f"_E{i}"] = shape.record
                lines.append("        value = event.value\n")
                lines.append(_set_fields(shape, "value", "event.value", "        ", f"_E{i}",
                                         f"_load_event(event, {schema!r})"))
            else:
                lines.append(f"        event.value = _load_event(event, {schema!r})\n")
    lines.append("    new = _fn(ctx, state, event)\n")
    if st is None:
        lines.append("    return new\n")
    else:
        if st.fast is not None:
            reads = ", ".join(f"{n!r}: new.{n}" for n in sorted(st.fast))
            lines.append(f"    if type(new) is _ST:\n        return {{{reads}}}\n")
        else:
            lines.append("    if type(new) is _ST:\n        return _st_dump(new)\n")
        lines.append("    return None if new is None else _returned(new)\n")
    exec(compile("".join(lines), "<aos.typed reducer wrapper>", "exec"), namespace)  # noqa: S102
    return namespace["typed"]


def typed_reducer(fn: Callable[[Any, Any, Any], Any], types_: ReducerTypes) -> Callable[[Any, Any, Any], Any]:
    """``fn`` handed its state and events as the declared types; its returned record stored as its fields."""
    name = types_.reducer
    st = types_.state
    ev_loads = {schema: s for schema, s in types_.events.items()}
    state_where = f"state of reducer {name} (stored) as {_show(st.describe) if st else ''}: state"
    returned_where = f"state returned by reducer {name}: state"
    st_type = None if st is None else st.record
    st_name = "?" if st_type is None else st_type.__name__
    st_load = _identity if st is None else st.load
    st_dump = _identity if st is None else st.dump

    def stored(state: Any, exc: Exception) -> TypedValueError:
        return _fail(state_where, st, state, exc)  # type: ignore[arg-type]

    def delivered(event: Any, shape: Shape, exc: Exception) -> TypedValueError:
        return _fail(f"event {event.schema} delivered to reducer {name}: value", shape, event.value, exc)

    def returned(new: Any) -> Any:
        if type(new) is dict and st is not None:
            found = misfit(st, new)
            if found is not None:
                raise TypedValueError(f"{returned_where}{found[0]}: {found[1]}", found[0], found[1])
            return st_dump(st_load(new))  # stored as the type's full field map (defaults filled)
        raise TypedValueError(f"{returned_where}: expected {st_name} or a dict, got {type(new).__name__}", "",
                              "wrong type")

    def load_state(state: Any) -> Any:
        try:
            return st_load(state)
        except Exception as exc:
            raise stored(state, exc) from None

    def load_event(event: Any, schema: str) -> Any:
        shape = ev_loads[schema]
        try:
            return shape.load(event.value)
        except Exception as exc:
            raise delivered(event, shape, exc) from None

    namespace: dict[str, Any] = {"_fn": fn, "_new": object.__new__, "_load_state": load_state,
                                 "_load_event": load_event, "_returned": returned, "_st_dump": st_dump,
                                 "_ST": st_type}
    typed: Callable[[Any, Any, Any], Any] = _write_wrapper(st, ev_loads, namespace)
    typed.__wrapped__ = fn  # type: ignore[attr-defined]
    typed.__aos_typed__ = fn  # type: ignore[attr-defined]  # (a failed step's traceback starts at fn: aos.step)
    typed.__name__ = getattr(fn, "__name__", "reducer")
    typed.__qualname__ = getattr(fn, "__qualname__", typed.__name__)
    plain = {schema: (shape.record, tuple(sorted(shape.fast))) for schema, shape in ev_loads.items()
             if shape.fast is not None and shape.record is not None}
    if len(plain) == len(ev_loads) and (st is None or st.fast is not None):
        # every declared type a plain dataclass: the inline loop does what this wrapper does, in C
        typed.__aos_plan__ = TypedPlan(  # type: ignore[attr-defined]
            fn, typed, st_type, () if st is None or st.fast is None else tuple(sorted(st.fast)), plain, returned)
    return typed


def typed_plan(fn: Any) -> TypedPlan | None:
    """The plan the inline loop follows for ``fn``, a reducer as the manifest holds it (None for most)."""
    plan = getattr(fn, "__aos_plan__", None)
    return plan if isinstance(plan, TypedPlan) else None


class EventCheck:
    """The declared types of one schema's event values, over every reducer that takes it (admission)."""

    __slots__ = ("schema", "shapes")

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.shapes: list[tuple[str, Shape]] = []  # (reducer, shape)

    def admit(self, value: Any, where: str) -> Any:
        """``value`` as plain values, checked against each declared type; :class:`TypedValueError` if it misfits."""
        value = plain_records(value)
        for reducer, shape in self.shapes:
            found = misfit(shape, value)
            if found is not None:
                path, reason = found
                raise TypedValueError(f"{where}: value{path}: {reason} (the event type of reducer {reducer})",
                                      path, reason)
            try:
                shape.load(value)  # the type's own checks (__post_init__, a pydantic validator)
            except Exception as exc:
                raise TypedValueError(f"{where}: value does not build a {_show(shape.describe)} "
                                      f"({type(exc).__name__}: {exc}) (the event type of reducer {reducer})"[:2000],
                                      "", str(exc)) from None
        return value


def plain_records(value: Any, depth: int = 0) -> Any:
    """``value`` with every record inside it (in maps, lists, tuples) as the map of its fields; itself if none."""
    if depth > 400:  # deeper than the value model goes: the encoding refuses it
        return value
    t = type(value)
    if t is dict:
        out = None
        for k, v in value.items():
            p = plain_records(v, depth + 1)
            if p is not v and out is None:
                out = dict(value)
            if out is not None:
                out[k] = p
        return value if out is None else out
    if t is list or t is tuple:
        items = [plain_records(v, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if t in _SCALARS:
        return value
    f = fields_of(value)
    return value if f is None else plain_records(f, depth + 1)


def _type_label(d: Any) -> str:
    return _show(d) if d is not None else "none"


def _field_diff(before: Any, after: Any) -> list[str]:
    """What differs between two record descriptions, field by field."""
    if not (isinstance(before, dict) and isinstance(after, dict) and "fields" in before and "fields" in after):
        return [f"{_type_label(before)} -> {_type_label(after)}"]
    out = []
    if before.get("type") != after.get("type") or before.get("kind") != after.get("kind"):
        out.append(f"{before.get('kind')} {before.get('type')} -> {after.get('kind')} {after.get('type')}")
    a = {f[0]: f for f in before["fields"] if isinstance(f, list) and f}
    b = {f[0]: f for f in after["fields"] if isinstance(f, list) and f}
    out += [f"field {n!r} removed" for n in a if n not in b]
    out += [f"field {n!r} added" for n in b if n not in a]
    for n in a.keys() & b.keys():
        if a[n] != b[n]:
            (_n, t1, r1), (_m, t2, r2) = a[n][:3], b[n][:3]
            if t1 != t2:
                out.append(f"field {n!r} {_show(t1)} -> {_show(t2)}")
            if r1 != r2:
                out.append(f"field {n!r} {'now required' if r2 else 'now has a default'}")
    if not out and [f[0] for f in before["fields"]] != [f[0] for f in after["fields"]]:
        out.append("field order changed")
    return out or ["changed"]


def types_details(before: Any, after: Any) -> str:
    """What differs between two reducers' ``"types"`` descriptions, for an era change's message."""
    x = before if isinstance(before, dict) else {}
    y = after if isinstance(after, dict) else {}
    parts = []
    if x.get("state") != y.get("state"):
        parts.append("state " + ", ".join(_field_diff(x.get("state"), y.get("state"))))
    ex, ey = x.get("events") or {}, y.get("events") or {}
    for schema in sorted(set(ex) | set(ey)):
        if ex.get(schema) != ey.get(schema):
            parts.append(f"event {schema} " + ", ".join(_field_diff(ex.get(schema), ey.get(schema))))
    return "; ".join(parts) or "changed"
