"""Manifest definition errors, the era and era changes."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aos

REDUCER_MODULE = '''
import aos

manifest = aos.Manifest("test/shop@1")

@manifest.reducer("test/Order@1", key="order_id", events=["test/Placed@1"])
def order(ctx, state, event):
    return dict(state or {{}}, placed={placed})

@manifest.reducer("test/Stats@1", events=["test/Placed@1"])
def stats(ctx, state, event):
    return (state or 0) + 1
'''


def load_manifest(tmp_path: Path, name: str, placed: str) -> aos.Manifest:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(REDUCER_MODULE.format(placed=placed)))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod.manifest


def test_changed_reducer_code_is_an_era_change(tmp_path: Path) -> None:
    m1 = load_manifest(tmp_path, "shop_v1", "True")
    m1_again = load_manifest(tmp_path, "shop_v1_again", "True")
    m2 = load_manifest(tmp_path, "shop_v2", "'yes'")
    assert m1.era == m1_again.era  # same source, same era
    assert m1.era != m2.era
    with aos.World.open(tmp_path / "w", m1) as w:
        w.submit("test/Placed@1", {"order_id": "o1"})
        w.run()
    with aos.World.open(tmp_path / "w", m1_again) as w:
        assert w.state("test/Order@1", "o1") == {"placed": True}
    with pytest.raises(aos.EraChangeError, match=r"reducer test/Order@1: code changed") as info:
        aos.World.open(tmp_path / "w", m2)
    assert info.value.changed == ["reducer test/Order@1: code changed (its own code changed)"]
    assert [(c.kind, c.subject) for c in info.value.changes] == [("reducer-code", "test/Order@1")]
    with pytest.raises(aos.EraChangeError):
        aos.replay(tmp_path / "w", m2)


def test_added_removed_and_rerouted_reducers_are_named(tmp_path: Path) -> None:
    def build(extra: bool, events: list[str]) -> aos.Manifest:
        m = aos.Manifest("test/m@1")
        m.reducer("test/A@1", events=events, code_id="a")(lambda c, s, e: 1)
        if extra:
            m.reducer("test/B@1", events=["test/E@1"], code_id="b")(lambda c, s, e: 1)
        return m

    with aos.World.open(tmp_path / "w", build(True, ["test/E@1"])):
        pass
    with pytest.raises(aos.EraChangeError, match=r"reducer test/B@1 removed"):
        aos.World.open(tmp_path / "w", build(False, ["test/E@1"]))
    with pytest.raises(aos.EraChangeError, match=r"reducer test/A@1: events \+ test/F@1"):
        aos.World.open(tmp_path / "w", build(True, ["test/E@1", "test/F@1"]))


@pytest.mark.parametrize("call, match", [
    (lambda m: aos.Manifest("no-version"), "not of the form"),
    (lambda m: m.reducer("bad name@1", events=["a/B@1"]), "reducer name"),
    (lambda m: m.reducer("a/B@1", events=[]), "non-empty list"),
    (lambda m: m.reducer("a/B@1", events="a/E@1"), "non-empty list"),
    (lambda m: m.reducer("a/B@1", events=["a/E"]), "event schema"),
    (lambda m: m.reducer("a/B@1", events=["a/E@1", "a/E@1"]), "listed twice"),
    (lambda m: m.reducer("a/B@1", events=["a/E@1"], key="has space"), "key must be an event field"),
    (lambda m: m.schema("nope"), "schema"),
])
def test_manifest_definition_errors(call: Any, match: str) -> None:
    m = aos.Manifest("test/m@1")
    with pytest.raises(aos.ManifestError, match=match):
        call(m)


def test_duplicate_reducer_and_empty_manifest() -> None:
    m = aos.Manifest("test/m@1")
    with pytest.raises(aos.ManifestError, match="declares no reducer"):
        _ = m.era
    m.reducer("a/B@1", events=["a/E@1"], code_id="x")(lambda c, s, e: 1)
    with pytest.raises(aos.ManifestError, match="declared twice"):
        m.reducer("a/B@1", events=["a/E@1"])


def test_era_covers_declared_schemas_and_route_order() -> None:
    def build(order: list[str], schemas: tuple[str, ...] = ()) -> aos.Manifest:
        m = aos.Manifest("test/m@1")
        for n in order:
            m.reducer(n, events=["a/E@1"], code_id=n)(lambda c, s, e: 1)
        m.schema(*schemas)
        return m

    base = build(["a/X@1", "a/Y@1"]).era
    assert build(["a/X@1", "a/Y@1"]).era == base
    assert build(["a/Y@1", "a/X@1"]).era != base
    assert build(["a/X@1", "a/Y@1"], ("a/Out@1",)).era != base
