"""Code identity from the outside: what changes a world's era and what does not (docs/manifest.md).

Each manifest is built by importing a module written to a file, as an
application's would be; a world made with one version is then opened with
another.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.identity import code_parts, legacy_code_identity

_names = itertools.count()

BASE = '''
import json
import aos

TAX_RATE = 20
UNUSED = 1

manifest = aos.Manifest("test/shop@1")


@manifest.reducer("test/Order@1", key="order_id", events=["test/Placed@1"])
def order(ctx, state, event):
    """An order: its total with tax."""
    total = with_tax(event.value["amount"])
    return {"total": total, "text": json.dumps(total)}


def with_tax(amount):
    return amount + amount * TAX_RATE // 100
'''


def load(tmp_path: Path, source: str) -> Any:
    """Import ``source`` as a module of its own file (a fresh name each time)."""
    name = f"ident_mod_{next(_names)}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def make_world(tmp_path: Path, manifest: aos.Manifest) -> Path:
    path = tmp_path / "w"
    with aos.World.open(path, manifest) as w:
        w.submit("test/Placed@1", {"order_id": "o1", "amount": 100})
        w.run()
        assert w.state("test/Order@1", "o1") == {"total": 120, "text": "120"}
    return path


REFORMATTED = '''
import json
import aos

TAX_RATE = 20   # percent
UNUSED = 2      # not read by any reducer

manifest = aos.Manifest("test/shop@1")

@manifest.reducer("test/Order@1",
                  key="order_id",
                  events=["test/Placed@1"])
def order(ctx, state, event):
    # a comment, a changed docstring, other line breaks
    """The order reducer."""

    total = with_tax(
        event.value["amount"]
    )
    return {"total": total,
            "text": json.dumps(total)}   # trailing comment
def with_tax(amount):
    "Adds the tax."
    return (amount + amount * TAX_RATE // 100)
'''


def test_comments_formatting_and_docstrings_leave_the_era_alone(tmp_path: Path) -> None:
    path = make_world(tmp_path, load(tmp_path, BASE).manifest)
    again = load(tmp_path, REFORMATTED).manifest
    with aos.World.open(path, again) as w:  # the world reopens
        assert w.state("test/Order@1", "o1") == {"total": 120, "text": "120"}
        w.submit("test/Placed@1", {"order_id": "o2", "amount": 10})
        w.run()
    assert aos.replay(path, load(tmp_path, BASE).manifest).verify()


def test_a_changed_helper_changes_the_era_and_is_named(tmp_path: Path) -> None:
    path = make_world(tmp_path, load(tmp_path, BASE).manifest)
    changed = load(tmp_path, BASE.replace("return amount + amount * TAX_RATE // 100",
                                          "return amount + (amount * TAX_RATE + 99) // 100"))
    with pytest.raises(aos.EraChangeError) as info:
        aos.World.open(path, changed.manifest)
    assert info.value.changed == ["reducer test/Order@1: code changed (function with_tax changed)"]
    message = str(info.value)
    assert "reducer test/Order@1: code changed (function with_tax changed)" in message
    assert "its own code" not in message
    assert "aos.upgrade(" in message and "docs/upgrades.md" in message


def test_a_changed_constant_changes_the_era(tmp_path: Path) -> None:
    path = make_world(tmp_path, load(tmp_path, BASE).manifest)
    changed = load(tmp_path, BASE.replace("TAX_RATE = 20", "TAX_RATE = 25"))
    with pytest.raises(aos.EraChangeError, match=r"reducer test/Order@1: code changed \(value with_tax/TAX_RATE "
                                                 r"changed\)"):
        aos.World.open(path, changed.manifest)


def test_changes_to_what_the_reducer_does_not_use_leave_the_era_alone(tmp_path: Path) -> None:
    base = load(tmp_path, BASE).manifest
    assert load(tmp_path, BASE.replace("UNUSED = 1", "UNUSED = (1, 2)")).manifest.era == base.era
    assert load(tmp_path, BASE + "\ndef unrelated():\n    return TAX_RATE\n").manifest.era == base.era


def test_own_code_change_is_named(tmp_path: Path) -> None:
    path = make_world(tmp_path, load(tmp_path, BASE).manifest)
    changed = load(tmp_path, BASE.replace('"text": json.dumps(total)', '"text": str(total)'))
    with pytest.raises(aos.EraChangeError) as info:
        aos.World.open(path, changed.manifest)
    assert info.value.changed == ["reducer test/Order@1: code changed (its own code changed)"]


TRANSITIVE = '''
import aos
manifest = aos.Manifest("test/t@1")
LIMIT = {limit}

@manifest.reducer("test/R@1", events=["test/E@1"])
def r(ctx, state, event):
    return ping(state or 0)

def ping(n):
    return n if n > LIMIT else pong(n + 1)

def pong(n):
    return ping(n + {step})
'''


def test_helpers_are_followed_transitively_through_cycles(tmp_path: Path) -> None:
    base = load(tmp_path, TRANSITIVE.format(limit=3, step=1)).manifest
    parts = base.reducers["test/R@1"].identity.parts
    assert parts is not None and set(parts) == {"", "ping", "ping/LIMIT", "ping/pong"}
    same = load(tmp_path, TRANSITIVE.format(limit=3, step=1)).manifest
    assert same.era == base.era
    deeper = load(tmp_path, TRANSITIVE.format(limit=3, step=2)).manifest  # pong, two calls away, changed
    assert deeper.era != base.era
    found = aos.changes(base.describe(), deeper.describe())
    assert [c.text for c in found] == ["reducer test/R@1: code changed (function ping/pong changed)"]
    assert load(tmp_path, TRANSITIVE.format(limit=4, step=1)).manifest.era != base.era


def test_attribute_chains_through_user_modules(tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    try:
        (tmp_path / "ident_pricing_a.py").write_text("RATE = 3\ndef tax(x):\n    return x * RATE\n")
        (tmp_path / "ident_pricing_b.py").write_text("RATE = 4\ndef tax(x):\n    return x * RATE\n")
        src = '''
        import aos
        import {mod} as pricing
        manifest = aos.Manifest("test/p@1")

        @manifest.reducer("test/R@1", events=["test/E@1"])
        def r(ctx, state, event):
            return pricing.tax(state or 1)
        '''
        a = load(tmp_path, src.format(mod="ident_pricing_a")).manifest
        b = load(tmp_path, src.format(mod="ident_pricing_b")).manifest
    finally:
        sys.path.remove(str(tmp_path))
    parts = a.reducers["test/R@1"].identity.parts
    assert parts is not None and set(parts) == {"", "pricing", "pricing.tax", "pricing.tax/RATE"}
    assert [c.text for c in aos.changes(a.describe(), b.describe())] == [
        "reducer test/R@1: code changed (value pricing.tax/RATE changed)"]


def test_library_code_is_not_hashed() -> None:
    import collections
    import json

    def r(ctx: Any, state: Any, event: Any) -> Any:
        return json.dumps(collections.OrderedDict(a=len(state or ())))

    parts = code_parts(r)
    assert set(parts) == {""}  # json, collections, len and Any: library code, counted by the names used


def test_closure_cells_and_defaults_count() -> None:
    def make(n: Any, scale: int = 2) -> Any:
        def r(ctx: Any, state: Any, event: Any, k: int = scale) -> Any:
            return (state or 0) + n * k
        return r

    assert aos.code_identity(make(3)) == aos.code_identity(make(3))
    assert aos.code_identity(make(3)) != aos.code_identity(make(4))
    assert aos.code_identity(make(3)) != aos.code_identity(make(3, scale=5))
    assert aos.code_identity(make((1, "a"))) != aos.code_identity(make((1, "b")))
    assert code_parts(make(3))["free:n"].startswith("const:")


CLASSY = '''
import aos
from dataclasses import dataclass
manifest = aos.Manifest("test/c@1")

@manifest.reducer("test/R@1", events=["test/E@1"])
def r(ctx, state, event):
    return Tally(state or 0).bump()

@dataclass
class Tally:
    n: int

    def bump(self):
        return self.n + {step}
'''


def test_a_class_the_reducer_uses_is_covered_and_helpers_defined_below_it_too(tmp_path: Path) -> None:
    a = load(tmp_path, CLASSY.format(step=1)).manifest
    parts = a.reducers["test/R@1"].identity.parts
    assert parts is not None and parts["Tally"].startswith("class:")
    b = load(tmp_path, CLASSY.format(step=2)).manifest
    assert [c.text for c in aos.changes(a.describe(), b.describe())] == [
        "reducer test/R@1: code changed (class Tally changed)"]


def test_lambdas_ignore_spacing() -> None:
    m1, m2, m3 = aos.Manifest("test/l@1"), aos.Manifest("test/l@1"), aos.Manifest("test/l@1")
    m1.reducer("test/R@1", events=["test/E@1"])(lambda c, s, e: (s or 0) + 1)
    m2.reducer("test/R@1", events=["test/E@1"])(lambda c, s, e: (s or 0)+1)  # noqa: E226
    m3.reducer("test/R@1", events=["test/E@1"])(lambda c, s, e: (s or 0) + 2)
    assert m1.era == m2.era != m3.era


def test_code_id_stays_the_explicit_override(tmp_path: Path) -> None:
    src = BASE.replace('events=["test/Placed@1"])', 'events=["test/Placed@1"], code_id="order-v1")')
    pinned = load(tmp_path, src).manifest
    desc = pinned.describe()["reducers"][0]
    assert desc["code"] == "order-v1" and "code_parts" not in desc
    path = make_world(tmp_path, pinned)
    helper_changed = load(tmp_path, src.replace("TAX_RATE = 20", "TAX_RATE = 25")).manifest
    with aos.World.open(path, helper_changed):  # the user said the code is "order-v1": it opens
        pass


INVARIANT = '''
import aos
manifest = aos.Manifest("test/i@1")
FLOOR = {floor}

@manifest.reducer("test/R@1", events=["test/E@1"], code_id="r")
def r(ctx, state, event):
    return (state or 0) + 1

@manifest.invariant("floor", reducers=["test/R@1"])
def floor(view):
    # the comment can change: {comment}
    return above(view.get("test/R@1") or 0)

def above(n):
    return n >= FLOOR
'''


def test_invariants_use_the_same_identity(tmp_path: Path) -> None:
    a = load(tmp_path, INVARIANT.format(floor=0, comment="a")).manifest
    assert load(tmp_path, INVARIANT.format(floor=0, comment="b")).manifest.era == a.era
    b = load(tmp_path, INVARIANT.format(floor=1, comment="a")).manifest
    assert [c.text for c in aos.changes(a.describe(), b.describe())] == [
        "invariant floor: code changed (value above/FLOOR changed)"]


def test_functions_without_python_code_need_code_id() -> None:
    m = aos.Manifest("test/x@1")
    with pytest.raises(aos.ManifestError, match="pass code_id="):
        m.reducer("test/R@1", events=["test/E@1"])(len)
    with pytest.raises(aos.ManifestError, match="code_id must be a non-empty string"):
        m.reducer("test/R@1", events=["test/E@1"], code_id="")(lambda c, s, e: s)


# ------------------------------------------------------------------ worlds made by the previous version
def old_describe(m: aos.Manifest) -> dict[str, Any]:
    """The description as aos wrote it before code parts: ids are BLAKE3 of the dedented source."""

    def old_id(fn: Any) -> str:
        return "src:" + canonical.digest(textwrap.dedent(inspect.getsource(fn)).encode()).hex()

    return {
        "format": 1, "manifest": m.name,
        "reducers": [{"name": s.name, "key": s.key, "events": list(s.events),
                      "code": s.identity.override if s.identity.override is not None else old_id(s.fn),
                      "native": s.native is not None, "priority": s.priority} for s in m.reducers.values()],
        "schemas": sorted(m.schemas), "capabilities": [c.describe() for c in m.capabilities.values()],
        "policies": [r.describe() for r in m.policies],
        "invariants": [{"name": i.name, "reducers": None if i.reducers is None else list(i.reducers),
                        "code": i.identity.override if i.identity.override is not None else old_id(i.fn)}
                       for i in m.invariants.values()],
    }


def make_old_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    """A world written as the previous version wrote it (its world.cbor and its segments' era)."""
    m = load(tmp_path, BASE).manifest
    with monkeypatch.context() as patch:
        patch.setattr(aos.Manifest, "describe", lambda self, legacy=None: old_describe(self))
        path = make_world(tmp_path, m)
        era = m.era
    stored = canonical.decode((path / "world.cbor").read_bytes())["manifest"]
    assert stored["reducers"][0]["code"].startswith("src:") and "code_parts" not in stored["reducers"][0]
    assert canonical.hash_value(stored) == era
    return path, era


def test_a_world_made_with_old_form_ids_keeps_opening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, era = make_old_world(tmp_path, monkeypatch)
    cbor_before = (path / "world.cbor").read_bytes()
    m = load(tmp_path, BASE).manifest
    assert m.era != era  # the current form describes other ids
    with aos.World.open(path, m) as w:
        assert w.era == era.hex()  # the world keeps its stored era: every segment header names it
        assert m.legacy_ids
        w.submit("test/Placed@1", {"order_id": "o2", "amount": 50})
        w.run()
        w.snapshot()
    assert (path / "world.cbor").read_bytes() == cbor_before
    again = load(tmp_path, BASE).manifest
    with aos.World.open(path, again) as w:
        assert w.state("test/Order@1", "o2") == {"total": 60, "text": "60"}
    assert aos.replay(path, load(tmp_path, BASE).manifest).verify()


def test_an_old_form_world_whose_code_changed_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = make_old_world(tmp_path, monkeypatch)
    changed = load(tmp_path, BASE.replace('"text": json.dumps(total)', '"text": str(total)'))
    with pytest.raises(aos.EraChangeError) as info:
        aos.World.open(path, changed.manifest)
    assert [(c.kind, c.subject) for c in info.value.changes] == [("reducer-code", "test/Order@1")]
    assert info.value.changes[0].before.startswith("src:") and info.value.changes[0].after.startswith("src:")
    assert not changed.manifest.legacy_ids


def test_one_manifest_object_keeps_one_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = make_old_world(tmp_path, monkeypatch)
    m = load(tmp_path, BASE).manifest
    with aos.World.open(tmp_path / "new", m):
        pass
    with pytest.raises(aos.ManifestError, match="build a second Manifest object"):
        aos.World.open(path, m)
    assert legacy_code_identity(m.reducers["test/Order@1"].fn).startswith("src:")


GOLDEN = '''
import json
import re
from dataclasses import dataclass
from typing import Any

RATE = 0.2
TABLE = {"x": [1, 2.5, None, True], "y": b"\\x00", "z": frozenset({1, 2})}
PAT = re.compile(r"\\d+", re.I)


@dataclass(frozen=True)
class Line:
    sku: str
    qty: int = 1

    @property
    def weight(self) -> float:
        return self.qty * RATE


def helper(x, *, scale=2):
    """Documented."""
    lam = lambda a, /, b=1, *c, d, **e: (a, b, c, d, e)  # noqa: E731
    match x:
        case {"a": 1, **rest}:
            return rest
        case [1, *others] if others:
            return others
    return {k: v for k, v in zip("ab", [x])}, f"{x!r:>{scale}} {RATE}", lam, x[1:2:3]


def reducer(ctx: Any, state: Any, event: Any) -> Any:
    for line in map(Line, event.value["lines"]):
        assert line.qty > 0, "qty"
    return json.dumps([helper(1, scale=3), TABLE["x"], PAT.pattern, 10**3, 0x10, 1e3, ...])
'''


def test_the_identity_of_fixed_code_does_not_drift(tmp_path: Path) -> None:
    """A change of the normalization would change every world's era: this pins it.

    The same value comes out on CPython 3.11, 3.12 and 3.13 (their syntax
    trees differ in ways the normalization leaves out, e.g. how an f-string's
    text is split).
    """
    reducer = load(tmp_path, GOLDEN).reducer
    assert sorted(code_parts(reducer)) == ["", "Line", "Line/RATE", "PAT", "TABLE", "helper", "helper/RATE"]
    assert aos.code_identity(reducer) == "py:97ec28a3bc35a3b0125d5c8c94906f27eeb0df54d038e1a7f9fa1653950de0ff"


def test_partials_bound_methods_and_library_values_are_followed() -> None:
    import decimal
    import enum
    import functools

    class Colour(enum.Enum):
        RED = 1
        BLUE = 2

    def make(rate: Any, colour: Any, by: int) -> Any:
        def tax(x: Any, r: Any) -> Any:
            return x * r

        class Shop:
            def price(self, x: Any) -> Any:
                return x + by

        taxed = functools.partial(tax, r=rate)
        price = Shop().price

        def r(ctx: Any, state: Any, event: Any) -> Any:
            return taxed(state), colour, price(1)
        return r

    base = aos.code_identity(make(decimal.Decimal("0.1"), Colour.RED, 1))
    assert aos.code_identity(make(decimal.Decimal("0.1"), Colour.RED, 1)) == base
    assert aos.code_identity(make(decimal.Decimal("0.2"), Colour.RED, 1)) != base
    assert aos.code_identity(make(decimal.Decimal("0.1"), Colour.BLUE, 1)) != base
    assert aos.code_identity(make(decimal.Decimal("0.1"), Colour.RED, 2)) != base  # the method's closure
    assert set(code_parts(make(decimal.Decimal("0.1"), Colour.RED, 1))) == {
        "", "free:colour", "free:price", "free:price/free:by", "free:taxed", "free:taxed/partial.args",
        "free:taxed/partial.func"}


def test_a_module_run_as_a_script_or_imported_has_one_identity(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "ident_app.py").write_text(textwrap.dedent(BASE) + textwrap.dedent('''
        class Config:
            pass

        CONFIG = Config()

        @manifest.reducer("test/Other@1", events=["test/Placed@1"])
        def other(ctx, state, event):
            return CONFIG is not None

        if __name__ == "__main__":
            print(manifest.era.hex())
        '''))
    script = subprocess.run([sys.executable, "ident_app.py"], cwd=tmp_path, capture_output=True, text=True,
                            check=True).stdout
    imported = subprocess.run([sys.executable, "-c", "import ident_app; print(ident_app.manifest.era.hex())"],
                              cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert script == imported and len(script.strip()) == 64


def test_era_changes_compares_in_the_stored_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aos.manifest import era_changes

    path, _ = make_old_world(tmp_path, monkeypatch)
    stored = canonical.decode((path / "world.cbor").read_bytes())["manifest"]
    assert era_changes(stored, load(tmp_path, BASE).manifest) == []
    assert len(aos.changes(stored, load(tmp_path, BASE).manifest.describe())) == 1  # src: -> py: ids
    more = load(tmp_path, BASE).manifest
    more.schema("test/Out@1")
    assert [c.kind for c in era_changes(stored, more)] == ["schema-added"]


def test_an_instance_counts_by_its_class_and_a_long_walk_is_bounded(tmp_path: Path) -> None:
    src = '''
    import aos
    manifest = aos.Manifest("test/o@1")

    class Store:
        def get(self, k):
            return k * {factor}

    STORE = Store()

    @manifest.reducer("test/R@1", events=["test/E@1"])
    def r(ctx, state, event):
        return STORE.get(2) + f0(1)
    '''
    chain = "".join(f"\ndef f{i}(x):\n    return f{i + 1}(x)\n" for i in range(1100))
    chain += "\ndef f1100(x):\n    return x\n"
    a = load(tmp_path, textwrap.dedent(src.format(factor=2)) + chain).manifest
    b = load(tmp_path, textwrap.dedent(src.format(factor=3)) + chain).manifest
    assert [c.text for c in aos.changes(a.describe(), b.describe())] == [
        "reducer test/R@1: code changed (class STORE/type changed)"]
    parts = a.reducers["test/R@1"].identity.parts
    assert parts is not None and parts["STORE"] == "object:Store"
    assert parts["(more)"] == "truncated" and len(parts) <= aos.identity.MAX_PARTS + 2


def test_an_object_that_raises_when_looked_at_counts_by_its_type() -> None:
    class Proxy:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("outside of its context")

        @property  # type: ignore[misc]
        def __class__(self) -> Any:
            raise RuntimeError("outside of its context")

    proxy = Proxy()

    def r(ctx: Any, state: Any, event: Any) -> Any:
        return proxy.value

    assert code_parts(r)["free:proxy"] == "object:test_an_object_that_raises_when_looked_at_counts_by_its_type." \
                                          "<locals>.Proxy"
