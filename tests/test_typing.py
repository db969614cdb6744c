"""The core's type stubs (``aos/_core/*.pyi``) against the compiled modules and the code that uses them.

mypy reads the stubs instead of the extension modules, so a stub that names
something the module lacks, or lacks something the code imports, or gives a
function other parameters, types the code against a core that is not there.
These tests compare them from the outside (no type checker is run here; CI
runs mypy).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import inspect
import types
from pathlib import Path
from typing import Any

import pytest

import aos
import aos._core
import aos._core.sequencer

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(aos._core.__file__).parent  # where type checkers look for the stubs: the package itself
# where the compiled modules are: the package too, or an editable install's copy
EXTENSIONS = Path(aos._core.sequencer.__file__ or "").parent
# the Python code that uses the core (the installed package's own modules, then the tests and the benchmarks)
USERS = [Path(aos.__file__).parent, ROOT / "tests", ROOT / "bench"]


def _extension_modules() -> list[str]:
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    names = set()
    for p in EXTENSIONS.iterdir():
        suffix = next((s for s in suffixes if p.name.endswith(s)), None)
        if suffix is not None:
            names.add(p.name[: -len(suffix)])
    return sorted(names)


MODULES = _extension_modules()


def _stub(name: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{name}.pyi").read_text(), f"{name}.pyi")


def _declared(tree: ast.Module | ast.ClassDef) -> dict[str, ast.stmt]:
    """The names a stub (or a class of it) declares, with their declarations (its imports excluded)."""
    out: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
        elif isinstance(node, ast.Assign):
            out.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
    return out


def _decorators(fn: ast.FunctionDef) -> set[str]:
    return {d.id for d in fn.decorator_list if isinstance(d, ast.Name)}


def _stub_only(node: ast.stmt) -> bool:
    """A type of the stub alone: an alias (``_Key = str | int | ...``) or a ``TypedDict`` (a plain dict at run time)."""
    if isinstance(node, ast.ClassDef):
        return any(isinstance(b, ast.Name) and b.id == "TypedDict" for b in node.bases)
    return isinstance(node, ast.Assign)


def _stub_parameters(fn: ast.FunctionDef) -> list[tuple[str, Any]]:
    """``(name, default)`` of each parameter (``inspect.Parameter.empty`` when it has none)."""
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[Any] = [inspect.Parameter.empty] * (len(positional) - len(args.defaults))
    defaults += [ast.literal_eval(d) for d in args.defaults]
    out = [(a.arg, d) for a, d in zip(positional, defaults, strict=True)]
    out += [(a.arg, inspect.Parameter.empty if d is None else ast.literal_eval(d))
            for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    return out


def _runtime_parameters(obj: Any) -> list[tuple[str, Any]] | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # a slot wrapper (a cdef class's __init__ from __cinit__)
        return None
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds and inspect.Parameter.VAR_KEYWORD in kinds:
        return None  # (*args, **kwargs): a cdef class's __init__ says nothing of its parameters
    return [(p.name, p.default) for p in sig.parameters.values()]


def _check_function(where: str, fn: ast.FunctionDef, obj: Any, problems: list[str], bound: bool = False) -> None:
    if "property" in _decorators(fn):
        if not isinstance(obj, (types.GetSetDescriptorType, types.MemberDescriptorType, property)):
            problems.append(f"{where}: a property in the stub, a {type(obj).__name__} in the module")
        return
    if not callable(obj):
        problems.append(f"{where}: a function in the stub, a {type(obj).__name__} in the module")
        return
    runtime = _runtime_parameters(obj)
    if runtime is None:
        return
    stub = _stub_parameters(fn)
    if bound or "classmethod" in _decorators(fn):
        stub = stub[1:]  # cls (the runtime classmethod is bound)
    if stub != runtime:
        problems.append(f"{where}: the stub takes {stub}, the module {runtime}")


def _compare(name: str) -> list[str]:
    module = importlib.import_module(f"aos._core.{name}")
    problems: list[str] = []
    for attr, node in _declared(_stub(name)).items():
        where = f"aos._core.{name}.{attr}"
        if attr.startswith("_") and _stub_only(node):
            continue
        if not hasattr(module, attr):
            problems.append(f"{where}: declared in the stub, missing from the module")
            continue
        obj = getattr(module, attr)
        if isinstance(node, ast.FunctionDef):
            _check_function(where, node, obj, problems)
        elif isinstance(node, ast.ClassDef):
            if not isinstance(obj, type):
                problems.append(f"{where}: a class in the stub, a {type(obj).__name__} in the module")
                continue
            for member, mnode in _declared(node).items():
                mwhere = f"{where}.{member}"
                if member not in dir(obj):
                    problems.append(f"{mwhere}: declared in the stub, missing from the class")
                    continue
                if isinstance(mnode, ast.FunctionDef):
                    static = inspect.getattr_static(obj, member)
                    if "classmethod" not in _decorators(mnode):
                        _check_function(mwhere, mnode, static, problems)
                    elif isinstance(static, (classmethod, types.ClassMethodDescriptorType)):
                        _check_function(mwhere, mnode, getattr(obj, member), problems)
                    else:
                        problems.append(f"{mwhere}: a classmethod in the stub, a {type(static).__name__} in the class")
                elif isinstance(mnode, ast.AnnAssign):  # a field: a descriptor of the class
                    if not isinstance(inspect.getattr_static(obj, member),
                                      (types.GetSetDescriptorType, types.MemberDescriptorType)):
                        problems.append(f"{mwhere}: a field in the stub, not a field of the class")
    return problems


def test_the_core_modules_are_found() -> None:
    assert {"sequencer", "encoder", "decoder", "frames"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_core_module_has_its_stub_beside_it(name: str) -> None:
    """Type checkers find a stub in the package directory, next to the extension module it describes."""
    assert (PACKAGE / f"{name}.pyi").is_file(), f"aos/_core/{name}.pyi is missing"
    assert (Path(aos.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("name", MODULES)
def test_the_stub_declares_only_what_the_module_has(name: str) -> None:
    """Every name, class member, property and function signature of the stub matches the compiled module."""
    assert _compare(name) == []


def _core_uses() -> list[tuple[str, str, str]]:
    """``(module, name, where)`` of every name the Python code takes from a core extension module."""
    out: list[tuple[str, str, str]] = []
    for top in USERS:
        for path in sorted(top.rglob("*.py")):
            where = str(path.relative_to(path.parents[1]))
            tree = ast.parse(path.read_text(), str(path))
            aliases: dict[str, str] = {}  # a name bound to a core module -> the module
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aos._core"):
                    for a in node.names:
                        if node.module == "aos._core":
                            if a.name in MODULES:
                                aliases[a.asname or a.name] = a.name
                        elif node.module.count(".") == 2:
                            out.append((node.module.rsplit(".", 1)[1], a.name, f"{where}:{node.lineno}"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Attribute) or node.attr.startswith("__"):
                    continue
                base = node.value
                if isinstance(base, ast.Name) and base.id in aliases:  # frames.append
                    out.append((aliases[base.id], node.attr, f"{where}:{node.lineno}"))
                elif (isinstance(base, ast.Attribute) and base.attr in MODULES  # aos._core.frames.append
                        and isinstance(base.value, ast.Attribute) and base.value.attr == "_core"
                        and isinstance(base.value.value, ast.Name) and base.value.value.id == "aos"):
                    out.append((base.attr, node.attr, f"{where}:{node.lineno}"))
    return out


def test_the_stubs_declare_everything_the_code_takes_from_the_core() -> None:
    uses = _core_uses()
    assert len(uses) > 20  # the scan finds the imports (from aos._core.x import y, and x.y after importing x)
    declared = {name: set(_declared(_stub(name))) for name in MODULES}
    missing = sorted({f"aos._core.{m}.{n} ({where})" for m, n, where in uses
                      if m in declared and n not in declared[m] and n != "*"})
    assert missing == []
