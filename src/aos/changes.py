"""The typed list of changes between two manifest descriptions.

:func:`changes` takes two descriptions (``Manifest.describe()``, or the one a
world stores) and returns what differs, one :class:`Change` per item, in a
fixed order: the manifest's name and format, reducers (removed, added, then
each changed field), routing order, declared schemas, capabilities, policy
rules, invariants, upcasters, then anything else this version does not know. It is pure
(descriptions in, changes out) and complete: two descriptions with different
eras always give at least one change, equal ones none. An era change's
message and an upgrade's proposal are made of these.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from aos.typed import types_details

__all__ = ["Change", "changes", "check_shape", "KINDS"]

# The kinds of change, in the order changes() lists them.
KINDS = (
    "manifest-name", "format",
    "reducer-removed", "reducer-added", "reducer-code", "reducer-key", "reducer-events", "reducer-priority",
    "reducer-other", "route-order",
    "schema-removed", "schema-added",
    "capability-removed", "capability-added", "capability-effects", "capability-budget", "capability-other",
    "policy-removed", "policy-added", "policy-changed",
    "invariant-removed", "invariant-added", "invariant-code", "invariant-reducers", "invariant-other",
    "upcaster-removed", "upcaster-added", "upcaster-code", "upcaster-target", "upcaster-other",
    "other",
)

_PART_KINDS = {"fn": "function", "compiled": "compiled function", "class": "class", "const": "value",
               "module": "module", "object": "object",
               "unbound": "name", "partial": "partial", "truncated": "more", "pending": "more"}


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two manifest descriptions.

    ``kind`` is one of :data:`KINDS`; ``subject`` names what changed (a
    reducer, capability, invariant or schema name; ``"rule N"`` for a policy
    rule; ``""`` for the manifest as a whole); ``before`` and ``after`` are
    the description's values (``None`` for what is absent on that side);
    ``text`` says it in one line.
    """

    kind: str
    subject: str
    before: Any
    after: Any
    text: str

    def __str__(self) -> str:
        return self.text


def _short(code: Any) -> str:
    """A code id for a message: a digest's first 12 hex digits, a ``code_id=`` as given."""
    if not isinstance(code, str):
        return repr(code)
    prefix, colon, rest = code.partition(":")
    if colon and len(rest) == 64 and all(ch in "0123456789abcdef" for ch in rest):
        return f"{prefix}:{rest[:12]}"
    return code


def _part_kind(value: Any) -> str:
    head = str(value).split(":", 1)[0]
    return _PART_KINDS.get(head, "part")


def code_details(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What differs between two code descriptions (``code`` and ``code_parts``), for a message."""
    if before.get("native") != after.get("native"):
        return "now native" if after.get("native") else "no longer native"
    a, b = before.get("code_parts"), after.get("code_parts")
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        return f"{_short(before.get('code'))} -> {_short(after.get('code'))}"
    said: list[str] = []
    if a.get("") != b.get(""):
        said.append("its own code changed")
    for path in sorted((a.keys() | b.keys()) - {""}):
        if path not in b:
            said.append(f"no longer uses {path}")
        elif path not in a:
            said.append(f"now uses {_part_kind(b[path])} {path}")
        elif a[path] != b[path]:
            ka, kb = _part_kind(a[path]), _part_kind(b[path])
            said.append(f"{kb} {path} changed" if ka == kb else f"{path} changed from a {ka} to a {kb}")
    return "; ".join(said) if said else f"{_short(before.get('code'))} -> {_short(after.get('code'))}"


def _by_name(items: Any) -> dict[str, Mapping[str, Any]]:
    return {x["name"]: x for x in items or [] if isinstance(x, Mapping) and "name" in x}


def _rule_text(rule: Any) -> str:
    if not isinstance(rule, Mapping):
        return repr(rule)
    fields = " ".join(f"{k}={rule[k]}" for k in ("kind", "reducer", "cap") if rule.get(k) is not None)
    return f"{rule.get('action')} {fields or '(everything)'}"


def _list_diff(before: list[Any], after: list[Any]) -> str:
    gone = [x for x in before if x not in after]
    new = [x for x in after if x not in before]
    said = [f"+ {x}" for x in new] + [f"- {x}" for x in gone]
    return ", ".join(said) if said else f"{before} -> {after}"


def _reducers(old: Any, new: Any, out: list[Change]) -> None:
    a, b = _by_name(old), _by_name(new)
    for name in sorted(a.keys() - b.keys()):
        out.append(Change("reducer-removed", name, a[name], None, f"reducer {name} removed"))
    for name in sorted(b.keys() - a.keys()):
        out.append(Change("reducer-added", name, None, b[name], f"reducer {name} added"))
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name], b[name]
        if (x.get("code"), x.get("code_parts"), x.get("native")) != (y.get("code"), y.get("code_parts"),
                                                                      y.get("native")):
            out.append(Change("reducer-code", name, x.get("code"), y.get("code"),
                              f"reducer {name}: code changed ({code_details(x, y)})"))
        if x.get("key") != y.get("key"):
            out.append(Change("reducer-key", name, x.get("key"), y.get("key"),
                              f"reducer {name}: key {x.get('key')!r} -> {y.get('key')!r}"))
        if x.get("events") != y.get("events"):
            diff = _list_diff(list(x.get("events") or []), list(y.get("events") or []))
            out.append(Change("reducer-events", name, x.get("events"), y.get("events"),
                              f"reducer {name}: events {diff}"))
        if x.get("priority") != y.get("priority"):
            out.append(Change("reducer-priority", name, x.get("priority"), y.get("priority"),
                              f"reducer {name}: priority {x.get('priority')} -> {y.get('priority')}"))
        known = {"name", "key", "events", "code", "code_parts", "native", "priority"}
        for field in sorted((x.keys() | y.keys()) - known):
            if x.get(field) != y.get(field):
                shown = (types_details(x.get(field), y.get(field)) if field == "types"  # typed values
                         else f"{x.get(field)!r} -> {y.get(field)!r}")
                out.append(Change("reducer-other", name, x.get(field), y.get(field),
                                  f"reducer {name}: {field}: {shown}" if field == "types"
                                  else f"reducer {name}: {field} {shown}"))
    order_a = [n for n in a if n in b]
    order_b = [n for n in b if n in a]
    if order_a != order_b:
        out.append(Change("route-order", "", order_a, order_b,
                          "reducer order (the order a schema's reducers receive it) "
                          f"{', '.join(order_a)} -> {', '.join(order_b)}"))


def _capabilities(old: Any, new: Any, out: list[Change]) -> None:
    a, b = _by_name(old), _by_name(new)
    for name in sorted(a.keys() - b.keys()):
        out.append(Change("capability-removed", name, a[name], None, f"capability {name} removed"))
    for name in sorted(b.keys() - a.keys()):
        y = b[name]
        out.append(Change("capability-added", name, None, y,
                          f"capability {name} added (effects {', '.join(y.get('effects') or [])}, "
                          f"budget {y.get('budget')})"))
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name], b[name]
        if x.get("effects") != y.get("effects"):
            diff = _list_diff(list(x.get("effects") or []), list(y.get("effects") or []))
            out.append(Change("capability-effects", name, x.get("effects"), y.get("effects"),
                              f"capability {name}: effects {diff}"))
        if x.get("budget") != y.get("budget"):
            out.append(Change("capability-budget", name, x.get("budget"), y.get("budget"),
                              f"capability {name}: budget {x.get('budget')} -> {y.get('budget')}"))
        for field in sorted((x.keys() | y.keys()) - {"name", "effects", "budget"}):
            if x.get(field) != y.get(field):
                out.append(Change("capability-other", name, x.get(field), y.get(field),
                                  f"capability {name}: {field} {x.get(field)!r} -> {y.get(field)!r}"))


def _policies(old: Any, new: Any, out: list[Change]) -> None:
    a, b = list(old or []), list(new or [])
    ta, tb = [_rule_text(r) for r in a], [_rule_text(r) for r in b]
    keys_a = [repr(sorted(r.items())) if isinstance(r, Mapping) else repr(r) for r in a]
    keys_b = [repr(sorted(r.items())) if isinstance(r, Mapping) else repr(r) for r in b]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        pairs = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for k in range(pairs):
            out.append(Change("policy-changed", f"rule {j1 + k + 1}", a[i1 + k], b[j1 + k],
                              f"policy rule {j1 + k + 1}: {ta[i1 + k]} -> {tb[j1 + k]}"))
        for i in range(i1 + pairs, i2):
            out.append(Change("policy-removed", f"rule {i + 1}", a[i], None,
                              f"policy rule {i + 1} ({ta[i]}) removed"))
        for j in range(j1 + pairs, j2):
            out.append(Change("policy-added", f"rule {j + 1}", None, b[j],
                              f"policy rule {j + 1} ({tb[j]}) added"))


def _invariants(old: Any, new: Any, out: list[Change]) -> None:
    a, b = _by_name(old), _by_name(new)
    for name in sorted(a.keys() - b.keys()):
        out.append(Change("invariant-removed", name, a[name], None, f"invariant {name} removed"))
    for name in sorted(b.keys() - a.keys()):
        out.append(Change("invariant-added", name, None, b[name], f"invariant {name} added"))
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name], b[name]
        if (x.get("code"), x.get("code_parts")) != (y.get("code"), y.get("code_parts")):
            out.append(Change("invariant-code", name, x.get("code"), y.get("code"),
                              f"invariant {name}: code changed ({code_details(x, y)})"))
        if x.get("reducers") != y.get("reducers"):
            def show(r: Any) -> str:
                return "all reducers" if r is None else ", ".join(r) or "no reducer"

            out.append(Change("invariant-reducers", name, x.get("reducers"), y.get("reducers"),
                              f"invariant {name}: checked for {show(x.get('reducers'))} -> "
                              f"{show(y.get('reducers'))}"))
        for field in sorted((x.keys() | y.keys()) - {"name", "code", "code_parts", "reducers"}):
            if x.get(field) != y.get(field):
                out.append(Change("invariant-other", name, x.get(field), y.get(field),
                                  f"invariant {name}: {field} {x.get(field)!r} -> {y.get(field)!r}"))


def _upcasters(old: Any, new: Any, out: list[Change]) -> None:
    a = {x["from"]: x for x in old or [] if isinstance(x, Mapping) and "from" in x}
    b = {x["from"]: x for x in new or [] if isinstance(x, Mapping) and "from" in x}
    for name in sorted(a.keys() - b.keys()):
        out.append(Change("upcaster-removed", name, a[name], None,
                          f"upcaster {name} -> {a[name].get('to')} removed"))
    for name in sorted(b.keys() - a.keys()):
        out.append(Change("upcaster-added", name, None, b[name], f"upcaster {name} -> {b[name].get('to')} added"))
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name], b[name]
        if x.get("to") != y.get("to"):
            out.append(Change("upcaster-target", name, x.get("to"), y.get("to"),
                              f"upcaster {name}: makes {x.get('to')} -> {y.get('to')}"))
        if (x.get("code"), x.get("code_parts")) != (y.get("code"), y.get("code_parts")):
            out.append(Change("upcaster-code", name, x.get("code"), y.get("code"),
                              f"upcaster {name} -> {y.get('to')}: code changed ({code_details(x, y)})"))
        for field in sorted((x.keys() | y.keys()) - {"from", "to", "code", "code_parts"}):
            if x.get(field) != y.get(field):
                out.append(Change("upcaster-other", name, x.get(field), y.get(field),
                                  f"upcaster {name}: {field} {x.get(field)!r} -> {y.get(field)!r}"))


_SECTIONS = ("format", "manifest", "reducers", "schemas", "capabilities", "policies", "invariants", "upcasters")


def check_shape(description: Any, which: str = "description") -> None:
    """Raise ``TypeError`` unless ``description`` has the shape ``Manifest.describe()`` gives."""
    if not isinstance(description, Mapping):
        raise TypeError(f"the {which} is a {type(description).__name__}, not a map")
    for section in ("reducers", "capabilities", "policies", "invariants", "schemas", "upcasters"):
        items = description.get(section, [])
        if not isinstance(items, list):
            raise TypeError(f"the {which}'s {section} is a {type(items).__name__}, not a list")
        for i, item in enumerate(items):
            if section == "schemas":
                if not isinstance(item, str):
                    raise TypeError(f"the {which}'s schemas[{i}] is a {type(item).__name__}, not a string")
            elif not isinstance(item, Mapping):
                raise TypeError(f"the {which}'s {section}[{i}] is a {type(item).__name__}, not a map")
            elif section == "upcasters":
                if not isinstance(item.get("from"), str):
                    raise TypeError(f"the {which}'s upcasters[{i}] names no schema it upcasts")
            elif section != "policies" and not isinstance(item.get("name"), str):
                raise TypeError(f"the {which}'s {section}[{i}] has no name")


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """What differs from manifest description ``old`` to ``new``, one :class:`Change` per item.

    Raises ``TypeError`` for a description no manifest writes (see :func:`check_shape`).
    """
    check_shape(old, "old description")
    check_shape(new, "new description")
    out: list[Change] = []
    if old.get("manifest") != new.get("manifest"):
        out.append(Change("manifest-name", "", old.get("manifest"), new.get("manifest"),
                          f"manifest {old.get('manifest')!r} -> {new.get('manifest')!r}"))
    if old.get("format") != new.get("format"):
        out.append(Change("format", "", old.get("format"), new.get("format"),
                          f"description format {old.get('format')!r} -> {new.get('format')!r}"))
    _reducers(old.get("reducers"), new.get("reducers"), out)
    sa, sb = list(old.get("schemas") or []), list(new.get("schemas") or [])
    for name in sorted(set(sa) - set(sb)):
        out.append(Change("schema-removed", name, name, None, f"declared schema {name} removed"))
    for name in sorted(set(sb) - set(sa)):
        out.append(Change("schema-added", name, None, name, f"declared schema {name} added"))
    _capabilities(old.get("capabilities"), new.get("capabilities"), out)
    _policies(old.get("policies"), new.get("policies"), out)
    _invariants(old.get("invariants"), new.get("invariants"), out)
    _upcasters(old.get("upcasters"), new.get("upcasters"), out)
    for key in sorted((old.keys() | new.keys()) - set(_SECTIONS)):
        if old.get(key) != new.get(key):
            out.append(Change("other", str(key), old.get(key), new.get(key), f"{key}: {old.get(key)!r} -> "
                                                                               f"{new.get(key)!r}"))
    if not out and old != new:  # e.g. a section's order or a duplicate entry: still a change
        for key in _SECTIONS:
            if old.get(key) != new.get(key):
                out.append(Change("other", key, old.get(key), new.get(key), f"{key} differ"))
    return out
