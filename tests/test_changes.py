"""The typed change list between two manifest descriptions, and the era change message made of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

import aos
from aos import canonical
from aos.changes import KINDS


def build(*, reducers: tuple[str, ...] = ("a/A@1", "a/B@1"), code: dict[str, str] | None = None,
          key: str | None = "id", events: tuple[str, ...] = ("a/E@1",), priority: int = 1,
          schemas: tuple[str, ...] = ("a/Out@1",), budget: int = 10, effects: tuple[str, ...] = ("blob.put",),
          caps: tuple[str, ...] = ("pay",), rules: tuple[tuple[str, str], ...] = (("allow", "blob.put"),),
          invariants: tuple[str, ...] = ("inv",), inv_reducers: list[str] | None = None,
          inv_code: str = "i1",
          upcasts: tuple[tuple[str, str, str], ...] = (("a/E@0", "a/E@1", "u1"),)) -> aos.Manifest:
    m = aos.Manifest("a/m@1")
    for n in reducers:
        m.reducer(n, events=list(events) if n == "a/A@1" else ["a/E@1"], key=key if n == "a/A@1" else None,
                  priority=priority if n == "a/A@1" else 1, code_id=(code or {}).get(n, n))(lambda c, s, e: s)
    m.schema(*schemas)
    for cap in caps:
        m.capability(cap, effect=list(effects), budget=budget)
    for action, kind in rules:
        (m.allow if action == "allow" else m.deny)(kind=kind)
    for name in invariants:
        m.invariant(name, lambda view: True, reducers=inv_reducers, code_id=inv_code)
    for old, new, code_id in upcasts:
        m.upcast(old, new, lambda v: v, code_id=code_id)
    return m


def kinds(a: aos.Manifest, b: aos.Manifest) -> list[tuple[str, str, Any, Any]]:
    return [(c.kind, c.subject, c.before, c.after) for c in aos.changes(a.describe(), b.describe())]


BASE = build()


@pytest.mark.parametrize("other, expected, text", [
    (build(reducers=("a/A@1",)), [("reducer-removed", "a/B@1")], "reducer a/B@1 removed"),
    (build(reducers=("a/A@1", "a/B@1", "a/C@1")), [("reducer-added", "a/C@1")], "reducer a/C@1 added"),
    (build(code={"a/A@1": "v2"}), [("reducer-code", "a/A@1", "a/A@1", "v2")],
     "reducer a/A@1: code changed (a/A@1 -> v2)"),
    (build(key="other"), [("reducer-key", "a/A@1", "id", "other")], "reducer a/A@1: key 'id' -> 'other'"),
    (build(key=None), [("reducer-key", "a/A@1", "id", None)], "reducer a/A@1: key 'id' -> None"),
    (build(events=("a/E@1", "a/F@1")), [("reducer-events", "a/A@1", ["a/E@1"], ["a/E@1", "a/F@1"])],
     "reducer a/A@1: events + a/F@1"),
    (build(priority=0), [("reducer-priority", "a/A@1", 1, 0)], "reducer a/A@1: priority 1 -> 0"),
    (build(reducers=("a/B@1", "a/A@1")), [("route-order", "", ["a/A@1", "a/B@1"], ["a/B@1", "a/A@1"])],
     "reducer order (the order a schema's reducers receive it) a/A@1, a/B@1 -> a/B@1, a/A@1"),
    (build(schemas=()), [("schema-removed", "a/Out@1", "a/Out@1", None)], "declared schema a/Out@1 removed"),
    (build(schemas=("a/Out@1", "a/Z@1")), [("schema-added", "a/Z@1", None, "a/Z@1")],
     "declared schema a/Z@1 added"),
    (build(budget=11), [("capability-budget", "pay", 10, 11)], "capability pay: budget 10 -> 11"),
    (build(effects=("blob.put", "timer.set")),
     [("capability-effects", "pay", ["blob.put"], ["blob.put", "timer.set"])], "capability pay: effects + timer.set"),
    (build(caps=("pay", "more")), [("capability-added", "more")],
     "capability more added (effects blob.put, budget 10)"),
    (build(caps=()), [("capability-removed", "pay")], "capability pay removed"),
    (build(rules=(("deny", "blob.put"),)), [("policy-changed", "rule 1")],
     "policy rule 1: allow kind=blob.put -> deny kind=blob.put"),
    (build(rules=(("allow", "blob.put"), ("deny", "x.y"))), [("policy-added", "rule 2")],
     "policy rule 2 (deny kind=x.y) added"),
    (build(rules=()), [("policy-removed", "rule 1")], "policy rule 1 (allow kind=blob.put) removed"),
    (build(invariants=()), [("invariant-removed", "inv")], "invariant inv removed"),
    (build(invariants=("inv", "inv2")), [("invariant-added", "inv2")], "invariant inv2 added"),
    (build(inv_code="i2"), [("invariant-code", "inv", "i1", "i2")], "invariant inv: code changed (i1 -> i2)"),
    (build(inv_reducers=["a/A@1"]), [("invariant-reducers", "inv", None, ["a/A@1"])],
     "invariant inv: checked for all reducers -> a/A@1"),
    (build(upcasts=()), [("upcaster-removed", "a/E@0")], "upcaster a/E@0 -> a/E@1 removed"),
    (build(upcasts=(("a/E@0", "a/E@1", "u1"), ("a/D@0", "a/E@1", "u1"))), [("upcaster-added", "a/D@0")],
     "upcaster a/D@0 -> a/E@1 added"),
    (build(upcasts=(("a/E@0", "a/E@1", "u2"),)), [("upcaster-code", "a/E@0", "u1", "u2")],
     "upcaster a/E@0 -> a/E@1: code changed (u1 -> u2)"),
    (build(upcasts=(("a/E@0", "a/D@0", "u1"), ("a/D@0", "a/E@1", "u1"))),
     [("upcaster-added", "a/D@0"), ("upcaster-target", "a/E@0", "a/E@1", "a/D@0")],
     "upcaster a/D@0 -> a/E@1 added"),
])
def test_each_kind_of_change(other: aos.Manifest, expected: list[tuple[Any, ...]], text: str) -> None:
    found = aos.changes(BASE.describe(), other.describe())
    assert [(c.kind, c.subject, c.before, c.after)[:len(e)] for c, e in zip(found, expected, strict=False)] == expected
    assert len(found) == len(expected)
    assert found[0].text == str(found[0]) == text
    assert all(c.kind in KINDS for c in found)
    back = aos.changes(other.describe(), BASE.describe())  # and the other way round: as many changes
    assert len(back) == len(found)


def test_equal_descriptions_have_no_changes_and_every_era_change_has_one() -> None:
    assert aos.changes(BASE.describe(), build().describe()) == []
    variants: list[Callable[[dict[str, Any]], None]] = [
        lambda d: d["capabilities"].reverse() if len(d["capabilities"]) > 1 else d["capabilities"].append(
            dict(d["capabilities"][0])),
        lambda d: d.update(format=2),
        lambda d: d.update(extra="x"),
        lambda d: d["reducers"][0].update(native=True),
        lambda d: d["reducers"][0].update(something="new"),
        lambda d: d.update(manifest="a/other@1"),
        lambda d: d["upcasters"][0].update(code="u9"),
        lambda d: d["upcasters"][0].update(since="now"),
        lambda d: d["upcasters"].append(dict(d["upcasters"][0])),
    ]
    for change in variants:
        desc = BASE.describe()
        change(desc)
        assert canonical.hash_value(desc) != BASE.era
        assert aos.changes(BASE.describe(), desc), desc


def test_code_details_name_the_parts() -> None:
    before = {"code": "py:1", "code_parts": {"": "fn:1", "a": "fn:1", "b": "const:1", "c": "fn:1"}}
    after = {"code": "py:2", "code_parts": {"": "fn:2", "a": "fn:2", "b": "fn:1", "d": "const:1"}}
    old = dict(BASE.describe(), reducers=[dict(BASE.describe()["reducers"][0], **before)])
    new = dict(BASE.describe(), reducers=[dict(BASE.describe()["reducers"][0], **after)])
    (change,) = aos.changes(old, new)
    assert change.text == ("reducer a/A@1: code changed (its own code changed; function a changed; "
                           "b changed from a value to a function; no longer uses c; now uses value d)")


def test_the_era_change_message_lists_changes_up_to_a_limit(tmp_path: Path) -> None:
    with aos.World.open(tmp_path / "w", BASE):
        pass
    many = build(reducers=("a/A@1", "a/B@1", *(f"a/N{i:02d}@1" for i in range(20))), budget=3)
    with pytest.raises(aos.EraChangeError) as info:
        aos.World.open(tmp_path / "w", many)
    err = info.value
    assert len(err.changes) == len(err.changed) == 21
    lines = str(err).splitlines()
    assert lines[0].startswith(f"era change in world {tmp_path / 'w'} of manifest a/m@1: the world was written in "
                               f"era {BASE.era.hex()[:12]}, this manifest describes era {many.era.hex()[:12]}; "
                               "21 changes:")
    assert lines[1:13] == [f"  - reducer a/N{i:02d}@1 added" for i in range(12)]
    assert lines[13] == "  - and 9 more"
    assert "aos.upgrade(path, new_manifest, ...)" in lines[14] and "docs/upgrades.md" in lines[14]
    with aos.World.open(tmp_path / "w", build()):  # the refused open left the world as it was
        pass


@pytest.mark.parametrize("bad", [5, {"reducers": 5}, {"reducers": [1]}, {"reducers": [{"key": "k"}]},
                                 {"capabilities": "x"}, {"schemas": [1]}, {"policies": [None]},
                                 {"upcasters": 5}, {"upcasters": [{"to": "a/E@1"}]}])
def test_a_description_no_manifest_writes_is_refused(bad: Any) -> None:
    desc = BASE.describe()
    malformed = dict(desc, **bad) if isinstance(bad, dict) else bad
    with pytest.raises(TypeError, match="description"):
        aos.changes(desc, malformed)
    with pytest.raises(TypeError, match="description"):
        aos.changes(malformed, desc)
