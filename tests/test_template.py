"""The native reducer template (templates/native-reducer): what can be checked without building it.

The real build (with build isolation, against an aos wheel) and the template's own tests run in CI;
here: its files, its build requirements, that the ABI names it uses exist, and its Python twin in a world.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import aos

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "native-reducer"
PACKAGE = TEMPLATE / "src" / "tally_reducer"


def twin() -> ModuleType:
    """The template's pure-Python twin, loaded from its file (the package itself needs the extension)."""
    spec = importlib.util.spec_from_file_location("tally_reducer_twin", PACKAGE / "twin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_template_is_complete() -> None:
    for name in ["pyproject.toml", "setup.py", "README.md", "tests/test_reducer.py", "src/tally_reducer/__init__.py",
                 "src/tally_reducer/_native.pyx", "src/tally_reducer/twin.py"]:
        assert (TEMPLATE / name).is_file(), name
    assert not (TEMPLATE / "tests" / "conftest.py").exists()  # its tests need nothing from aos's test suite


def test_it_builds_against_the_installed_aos() -> None:
    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())
    requires = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower(): r for r in project["build-system"]["requires"]}
    assert {"aos-kernel", "cython", "setuptools"} <= set(requires), requires
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert any(d.startswith("aos-kernel") for d in project["project"]["dependencies"])
    # The header's directory comes from the aos of the build environment, never from a path into a source tree.
    setup = (TEMPLATE / "setup.py").read_text()
    assert "include_dirs=[aos.get_include()]" in setup and ".." not in setup
    assert (Path(aos.get_include()) / "aos_native.h").is_file()


def test_the_names_it_cimports_are_the_abis() -> None:
    source = (PACKAGE / "_native.pyx").read_text()
    # "from aos._core.native cimport a, b" or "... cimport (\n    a,\n    b,\n)"
    cimports = re.findall(r"^from aos\._core\.native cimport (\([^)]*\)|.+)$", source, re.M)
    names = {n.strip() for c in cimports for n in c.strip("()").split(",")} - {""}
    assert {"aos_out", "aos_step_in", "AOS_REDUCER_CAPSULE", "aos_cbor_find_key", "aos_cbor_write_uint"} <= names
    pxd = (Path(aos.__file__).parent / "_core" / "native.pxd").read_text()
    # The ABI (aos_native.h) and the canonical CBOR helpers (aos_cbor.h), both from the installed aos.
    headers = "".join((Path(aos.get_include()) / h).read_text() for h in ["aos_native.h", "aos_cbor.h"])
    for name in names:
        assert re.search(rf"\b{name}\b", pxd) and re.search(rf"\b{name}\b", headers), name
    assert re.search(r'^CODE_ID = "[^"]+@\d+"$', source, re.M)  # a versioned code id
    assert f'MILESTONE = "{twin().MILESTONE}"' in source  # both emit the same schema


def run_twin(tmp_path: Path, events: list[dict[str, Any]], every: int) -> tuple[Any, Any, int]:
    t = twin()
    m = aos.Manifest("template@1")
    m.reducer("tally/Tally@1", key="id", events=["tally/Add@1"])(t.python_tally(every))

    @m.reducer("tally/Milestones@1", key="key", events=[t.MILESTONE])
    def milestones(ctx: Any, state: Any, event: Any) -> Any:
        return (state or []) + [[event.value["count"], event.value["total"]]]

    with aos.World.open(tmp_path / "w", m, snapshot_on_close=False) as w:
        for e in events:
            w.submit("tally/Add@1", e)
        w.run()
        return w.state("tally/Tally@1", 1), w.state("tally/Milestones@1", 1), w.metrics()["failures"]


def test_the_python_twin_tallies_and_emits(tmp_path: Path) -> None:
    amounts = [3, 300, 70_000, 5_000_000_000, 0, 1, 2]
    events = [{"id": 1 + i % 2, "amount": a} for i, a in enumerate(amounts * 2)]  # key 1 takes every other one
    mine = (amounts * 2)[::2]
    tally, milestones, failures = run_twin(tmp_path, events, every=3)
    assert tally == [len(mine), sum(mine)] and failures == 0
    assert milestones == [[c, sum(mine[:c])] for c in (3, 6)]


@pytest.mark.parametrize("bad", [{"amount": -1}, {"amount": "7"}, {"amount": 1.5}, {"other": 1},
                                 {"amount": (1 << 64) - 5}])
def test_the_python_twin_fails_a_bad_event_and_keeps_the_cell(tmp_path: Path, bad: dict[str, Any]) -> None:
    tally, _milestones, failures = run_twin(tmp_path, [{"id": 1, "amount": 5}, {"id": 1, **bad}], every=10)
    assert tally == [1, 5] and failures == 1
