"""Code identity: what a reducer's (or invariant's) code is, as a hash that means what it says.

A function's identity covers:

* its own code as a normalized syntax tree: comments, blank lines,
  formatting, docstrings, the ``def`` line's name and the decorators of the
  registered function do not count; everything else does;
* transitively (cycle-safe, at most :data:`MAX_PARTS` parts), what it uses
  by global name from the user's own code: module-level functions and
  classes (their own code and what they use in turn), attributes reached
  through a user module (``pricing.tax``), and the values of plain data it
  reads (``None``, bools, ints, floats, complex numbers, strings, bytes and
  tuples, lists, dicts, sets and frozensets of these);
* its closure: the cells it captures, followed like globals.

Library code (the standard library, installed packages, aos itself,
builtins, compiled extensions) is neither hashed nor named: a reference to
it counts by the name the code uses, which is part of the syntax tree.

The identity is ``"py:" + BLAKE3`` of the *parts*, a map from where each part
is reached (``""`` for the function itself, ``"tax"``, ``"tax/RATE"``,
``"pricing.tax"``, ``"free:count"``) to its kind and digest (``"fn:…"``,
``"class:…"``, ``"const:…"``, ``"module"``, ``"object:TYPE"``,
``"unbound"``). The parts enter the manifest description too, so an era
change can say which helper changed. See docs/manifest.md, "Code identity".

Worlds made by aos before this form kept ``"src:"`` ids (the BLAKE3 of the
dedented source text); :func:`legacy_code_identity` computes that form so
such worlds keep opening while their code is unchanged.
"""

from __future__ import annotations

import ast
import builtins
import datetime
import decimal
import dis
import enum
import fractions
import functools
import inspect
import marshal
import operator
import re
import site
import sys
import sysconfig
import textwrap
import threading
import tokenize
import types
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

from aos import canonical
from aos.errors import ManifestError

__all__ = ["CodeIdentity", "code_identity", "code_parts", "legacy_code_identity", "IDENTITY_PREFIX",
           "LEGACY_PREFIXES", "MAX_PARTS", "is_user_module"]

IDENTITY_PREFIX = "py:"
LEGACY_PREFIXES = ("src:", "bytecode:")
MAX_PARTS = 1000  # parts of one identity: past it the walk stops and records "(more)": "truncated"
_MAX_DEPTH = 64  # nesting of one plain-data value


# ----------------------------------------------------------------- user code or library
def _library_roots() -> tuple[str, ...]:
    roots: set[str] = set()
    paths = sysconfig.get_paths()
    for k in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(k):
            roots.add(paths[k])
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if user_site:
        roots.add(user_site)
    out = []
    for r in roots:
        try:
            out.append(str(Path(r).resolve()) + "/")
        except OSError:
            continue
    return tuple(sorted(out))


_ROOTS: tuple[str, ...] | None = None
_USER: dict[str, bool] = {}


def is_user_module(name: str | None) -> bool:
    """Whether module ``name`` is the user's own code (hashed), not a library (not hashed).

    Library: aos itself, builtins, imported modules without a source file
    (frozen, built in) but ``__main__``, compiled extensions, and anything
    under the standard library or a site-packages directory. ``__main__``,
    every other module with a ``.py`` file elsewhere, and code run by
    ``exec()`` under a name no imported module has are user code.
    """
    global _ROOTS
    if not name:
        return False
    known = _USER.get(name)
    if known is not None:
        return known
    if name == "aos" or name.startswith("aos.") or name in sys.builtin_module_names:
        result = False
    else:
        mod = sys.modules.get(name)
        file = getattr(mod, "__file__", None) if mod is not None else None
        if mod is None:
            result = True  # code run by exec() under a module name of its own: libraries are imported
        elif file is None:
            result = name == "__main__"  # an interactive session or notebook
        elif not str(file).endswith(".py"):
            result = False  # an extension module, or a .pyc without source
        else:
            if _ROOTS is None:
                _ROOTS = _library_roots()
            try:
                resolved = str(Path(file).resolve())
            except OSError:
                resolved = str(file)
            result = not resolved.startswith(_ROOTS)
    _USER[name] = result
    return result


def _is_user_object(obj: Any) -> bool:
    if isinstance(obj, types.FunctionType):
        mod = obj.__module__
        if mod is None:  # made by exec() in a namespace without __name__: the user's
            return True
        return is_user_module(mod)
    if isinstance(obj, type):
        return is_user_module(getattr(obj, "__module__", None))
    if isinstance(obj, types.ModuleType):
        return is_user_module(obj.__name__)
    return False


# ----------------------------------------------------------------- plain data
_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _plain(value: Any, out: bytearray, depth: int = 0) -> bool:
    """Append the canonical text of ``value`` to ``out``; False when it is not plain data."""
    t = type(value)
    if depth > _MAX_DEPTH:
        return False
    if value is None:
        out += b"N"
    elif t is bool:
        out += b"T" if value else b"F"
    elif t is int:
        out += b"i%x;" % value if value >= 0 else b"i-%x;" % -value
    elif t is float:
        out += b"f" + float.hex(value).encode() + b";"
    elif t is complex:
        out += b"c" + float.hex(value.real).encode() + b"," + float.hex(value.imag).encode() + b";"
    elif t is str:
        data = value.encode("utf-8", "surrogatepass")
        out += b"s%d:" % len(data) + data
    elif t is bytes:
        out += b"b%d:" % len(value) + value
    elif t is tuple or t is list:
        out += (b"t%d(" if t is tuple else b"l%d(") % len(value)
        for v in value:
            if not _plain(v, out, depth + 1):
                return False
        out += b")"
    elif t is dict:
        out += b"d%d(" % len(value)
        for k, v in value.items():  # insertion order: iteration follows it
            if not _plain(k, out, depth + 1) or not _plain(v, out, depth + 1):
                return False
        out += b")"
    elif t is frozenset or t is set:
        items = []
        for v in value:
            b = bytearray()
            if not _plain(v, b, depth + 1):
                return False
            items.append(bytes(b))
        out += (b"z%d(" if t is frozenset else b"e%d(") % len(items) + b"".join(sorted(items)) + b")"
    elif value is Ellipsis:
        out += b"E"
    else:
        form = _value_form(value)
        return form is not value and _plain(form, out, depth + 1)
    return True


_BY_REPR = (decimal.Decimal, fractions.Fraction, datetime.date, datetime.time, datetime.timedelta, uuid.UUID)


def _value_form(obj: Any) -> Any:
    """Values of a few library types as plain data (their ``repr`` is fixed); others as they are."""
    if isinstance(obj, re.Pattern):
        return ("re.Pattern", obj.pattern, obj.flags)
    if isinstance(obj, enum.Enum):
        t = type(obj)
        return ("enum", t.__qualname__, obj.name)
    if type(obj) in _BY_REPR or type(obj) is datetime.datetime:
        return (type(obj).__qualname__, repr(obj))
    return obj


def _plain_digest(value: Any) -> str | None:
    out = bytearray()
    try:
        ok = _plain(value, out)
    except RecursionError:
        ok = False
    return canonical.digest(bytes(out)).hex() if ok else None


# ----------------------------------------------------------------- syntax trees
_SKIP_FIELDS = frozenset({"type_comment", "kind", "ctx"})  # formatting only (u"" strings, type comments)
_BODIES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _dump(node: Any, out: bytearray, skip: frozenset[str] = frozenset()) -> None:
    """A canonical text of a syntax tree: no positions, comments, docstrings or formatting."""
    if isinstance(node, ast.AST):
        out += b"(" + type(node).__name__.encode()
        for name in node._fields:
            if name in _SKIP_FIELDS or name in skip:
                continue
            value = getattr(node, name, None)
            if name == "body" and isinstance(node, _BODIES) and value and _is_docstring(value[0]):
                value = value[1:]
            elif name == "values" and isinstance(node, ast.JoinedStr):
                value = _fstring_parts(node.values)
            if value is None or (isinstance(value, list) and not value):
                continue  # a field a later Python adds is absent or empty in code that does not use it
            out += b" " + name.encode() + b"="
            _dump(value, out)
        out += b")"
    elif isinstance(node, list):
        out += b"["
        for item in node:
            _dump(item, out)
            out += b","
        out += b"]"
    elif not _plain(node, out):
        out += b"?" + type(node).__name__.encode()


def _fstring_parts(values: Sequence[ast.AST]) -> list[Any]:
    """An f-string's parts with adjacent text joined and empty text left out (Pythons split them differently)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, ast.Constant) and isinstance(v.value, str):
            if not v.value:
                continue
            if out and isinstance(out[-1], ast.Constant) and isinstance(out[-1].value, str):
                out[-1] = ast.Constant(out[-1].value + v.value)
                continue
        out.append(v)
    return out


_TREES: dict[tuple[str, bytes], tuple[ast.Module, dict[int, list[ast.AST]]]] = {}
_TREES_LOCK = threading.Lock()


def _tree(lines: list[str], filename: str) -> tuple[ast.Module, dict[int, list[ast.AST]]] | None:
    """The parsed module (cached) and its definitions by first line (decorators included)."""
    text = "".join(lines)
    key = (filename, canonical.digest(text.encode("utf-8", "surrogatepass")))
    with _TREES_LOCK:
        hit = _TREES.get(key)
    if hit is not None:
        return hit
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    index: dict[int, list[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (*_FUNCS, ast.ClassDef)):
            first = node.lineno
            for d in getattr(node, "decorator_list", ()):
                first = min(first, d.lineno)
            index.setdefault(first, []).append(node)
            if first != node.lineno:
                index.setdefault(node.lineno, []).append(node)
    with _TREES_LOCK:
        if len(_TREES) > 64:
            _TREES.clear()
        _TREES[key] = (tree, index)
    return tree, index


def _source_lines(obj: Any) -> tuple[list[str], str] | None:
    try:
        lines, _ = inspect.findsource(obj)
        filename = inspect.getsourcefile(obj) or inspect.getfile(obj)
    except (OSError, TypeError, IndexError):
        return None
    return lines, filename


def _function_node(fn: types.FunctionType) -> list[ast.AST] | None:
    code = fn.__code__
    found = _source_lines(code)
    if found is None:
        return None
    parsed = _tree(*found)
    if parsed is None:
        return None
    _, index = parsed
    candidates = index.get(code.co_firstlineno, [])
    nodes: list[ast.AST]
    if code.co_name == "<lambda>":
        lambdas = [n for n in candidates if isinstance(n, ast.Lambda)]
        names = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
        exact = [n for n in lambdas if [a.arg for a in (*n.args.posonlyargs, *n.args.args, *n.args.kwonlyargs)]
                 == names]
        nodes = list(exact or lambdas)
    else:
        nodes = [n for n in candidates if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == code.co_name]
        nodes = nodes[:1]
    return nodes or None


def _class_node(cls: type) -> ast.ClassDef | None:
    found = _source_lines(cls)
    if found is None:
        return None
    lines, filename = found
    parsed = _tree(lines, filename)
    if parsed is None:
        return None
    try:
        _, lnum = inspect.findsource(cls)
    except (OSError, TypeError, IndexError):
        return None
    for n in parsed[1].get(lnum + 1, []):
        if isinstance(n, ast.ClassDef) and n.name == cls.__name__:
            return n
    return None


# ----------------------------------------------------------------- what code uses
def _code_chains(code: types.CodeType) -> set[tuple[str, ...]]:
    """Global names the code (and the code nested in it) loads, each with the attributes read from it."""
    chains: set[tuple[str, ...]] = set()
    todo = [code]
    while todo:
        co = todo.pop()
        cur: list[str] | None = None
        for ins in dis.get_instructions(co):
            op = ins.opname
            if op in ("LOAD_GLOBAL", "LOAD_NAME"):
                if cur:
                    chains.add(tuple(cur))
                cur = [ins.argval]
            elif op in ("LOAD_ATTR", "LOAD_METHOD") and cur is not None:
                cur.append(ins.argval)
            elif op in ("EXTENDED_ARG", "CACHE", "NOP"):
                continue
            elif cur is not None:
                chains.add(tuple(cur))
                cur = None
        if cur:
            chains.add(tuple(cur))
        todo.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    return chains


def _tree_chains(node: ast.AST) -> set[tuple[str, ...]]:
    """Names (with attribute chains) loaded by class-level code, outside the bodies of its functions."""
    chains: set[tuple[str, ...]] = set()

    def visit(n: ast.AST) -> None:
        if isinstance(n, ast.Attribute):
            attrs = []
            base: ast.AST = n
            while isinstance(base, ast.Attribute):
                attrs.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name):
                chains.add((base.id, *reversed(attrs)))
                return
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            chains.add((n.id,))
            return
        for name, value in ast.iter_fields(n):
            if isinstance(n, _FUNCS) and name == "body":
                continue  # methods: their code objects say exactly what they use
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    visit(child)

    for stmt in getattr(node, "body", []):
        visit(stmt)
    for part in (*getattr(node, "bases", []), *getattr(node, "keywords", []), *getattr(node, "decorator_list", [])):
        visit(part)
    return chains


def _unwrap(obj: Any) -> Any:
    """A function behind a user decorator's wrapper object (``functools.lru_cache`` and the like)."""
    if not isinstance(obj, (types.FunctionType, type, types.ModuleType)) and hasattr(obj, "__wrapped__"):
        try:
            inner = inspect.unwrap(obj)
        except ValueError:
            return obj
        if isinstance(inner, types.FunctionType):
            return inner
    return obj


def _builtins_of(fn: types.FunctionType) -> dict[str, Any]:
    """The builtins ``fn`` looks names up in (its ``__builtins__`` when a dict, else the builtins module's)."""
    # (read with attrgetter: mypy's incremental cache drops FunctionType.__builtins__, so a second run would
    # report it missing)
    names = _BUILTINS_ATTR(fn)
    return names if isinstance(names, dict) else vars(builtins)


_BUILTINS_ATTR = operator.attrgetter("__builtins__")


def _class_functions(cls: type) -> list[types.FunctionType]:
    out: list[types.FunctionType] = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            out.extend(f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType))
            continue
        value = _unwrap(value)
        if isinstance(value, types.FunctionType):
            out.append(value)
    return [f for f in out if _is_user_object(f)]  # not what a library's metaclass or decorator put there


def _type_name(t: type) -> str:
    """A user type by its name alone (run as __main__ or imported, the same code); others with their module."""
    return t.__qualname__ if is_user_module(t.__module__) else f"{t.__module__}.{t.__qualname__}"


class _Walk:
    """One identity's walk over a function and what it uses."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}
        self.seen: dict[int, str] = {}
        self.todo: deque[tuple[str, Any]] = deque()
        self.keep: list[Any] = []  # objects whose id() is in seen stay alive until the walk ends

    def run(self, fn: types.FunctionType) -> dict[str, str]:
        self.todo.append(("", fn))
        self.seen[id(fn)] = ""
        self.keep.append(fn)
        while self.todo:
            if len(self.parts) >= MAX_PARTS:
                self.parts["(more)"] = "truncated"
                break
            path, obj = self.todo.popleft()
            if isinstance(obj, types.FunctionType):
                self.parts[path] = "fn:" + self.function(path, obj, root=path == "")
            else:
                self.parts[path] = "class:" + self.klass(path, obj)
        return dict(sorted(self.parts.items()))

    def at(self, path: str, name: str) -> str:
        return f"{path}/{name}" if path else name

    def use(self, path: str, obj: Any) -> None:
        """Record what ``obj`` (reached at ``path``) is, queueing user functions and classes."""
        if path in self.parts:
            return
        try:
            self._use(path, obj)
        except Exception:  # an object that raises when looked at (a lazy proxy, say): by its type alone
            self.parts[path] = "object:" + _type_name(type(obj))

    def _use(self, path: str, obj: Any) -> None:
        obj = _unwrap(obj)
        if isinstance(obj, (types.FunctionType, type)):
            if not _is_user_object(obj):
                return
            if id(obj) in self.seen:
                return  # recorded where it was first reached
            self.seen[id(obj)] = path
            self.keep.append(obj)
            self.todo.append((path, obj))
            self.parts[path] = "pending"  # keeps the walk's order; replaced when its turn comes
            return
        if isinstance(obj, types.ModuleType):
            if _is_user_object(obj):
                self.parts[path] = "module"
            return
        if isinstance(obj, functools.partial):  # a library wrapper around what may be the user's function
            self.parts[path] = "partial"
            self.use(self.at(path, "partial.func"), obj.func)
            self.use(self.at(path, "partial.args"), (obj.args, obj.keywords))
            return
        if isinstance(obj, types.MethodType):  # a bound method: its function (not the object's state)
            self.use(path, obj.__func__)
            return
        d = _plain_digest(obj)
        if d is not None:
            self.parts[path] = "const:" + d
            return
        if isinstance(obj, (types.BuiltinFunctionType, types.MethodWrapperType)) or \
                not is_user_module(getattr(type(obj), "__module__", None)) and callable(obj):
            return  # a library callable: counted by the name the code uses
        t = type(obj)  # a user type by its name alone: a module run as __main__ or imported is the same code
        self.parts[path] = "object:" + _type_name(t)
        if is_user_module(t.__module__):
            self.use(self.at(path, "type"), t)  # its methods are code the reducer may call; its state is not

    def resolve(self, path: str, chain: tuple[str, ...], namespace: dict[str, Any] | None,
                builtin_names: Any) -> None:
        name = chain[0]
        if namespace is not None and name in namespace:
            obj = namespace[name]
        elif name in builtin_names:
            return  # a builtin
        else:
            self.use_unbound(self.at(path, name))
            return
        where = self.at(path, name)
        for attr in chain[1:]:
            if not (issubclass(type(obj), types.ModuleType) and _is_user_object(obj)):  # type(): no proxy's __class__
                break
            if where not in self.parts:
                self.parts[where] = "module"
            try:
                obj = getattr(obj, attr)
            except Exception:  # AttributeError, or whatever a module's __getattr__ raises
                self.use_unbound(f"{where}.{attr}")
                return
            where = f"{where}.{attr}"
        self.use(where, obj)

    def use_unbound(self, path: str) -> None:
        self.parts.setdefault(path, "unbound")

    def function(self, path: str, fn: types.FunctionType, root: bool) -> str:
        out = bytearray()
        nodes = _function_node(fn)
        if nodes:
            for node in nodes:
                # the def line's name never counts; the registered function's decorators are the registration
                _dump(node, out, frozenset({"name", "decorator_list"}) if root else frozenset({"name"}))
        else:
            out += b"bytecode:" + _bytecode(fn.__code__)
        for label, defaults in ((b"defaults", fn.__defaults__), (b"kwdefaults", fn.__kwdefaults__)):
            if defaults:
                out += b" " + label + b"="
                if not _plain(defaults, out):
                    out += b"?" + repr(sorted(type(v).__name__ for v in (
                        defaults.values() if isinstance(defaults, dict) else defaults))).encode()
        code = fn.__code__
        for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:
                self.use_unbound(self.at(path, "free:" + name))
                continue
            self.use(self.at(path, "free:" + name), value)
        builtin_names = _builtins_of(fn)
        for chain in sorted(_code_chains(code)):
            self.resolve(path, chain, fn.__globals__, builtin_names)
        return canonical.digest(bytes(out)).hex()

    def klass(self, path: str, cls: type) -> str:
        out = bytearray()
        node = _class_node(cls)
        module = sys.modules.get(cls.__module__)
        namespace = vars(module) if module is not None else None
        methods = _class_functions(cls)
        if node is not None:
            _dump(node, out)
            chains = _tree_chains(node)
        else:  # no source: its methods' bytecode and its plain attributes
            out += b"class:" + cls.__qualname__.encode() + b" bases=" + repr(
                [b.__qualname__ for b in cls.__bases__]).encode()
            for name in sorted(vars(cls)):
                value = vars(cls)[name]
                out += b" " + name.encode() + b"="
                if isinstance(value, types.FunctionType):
                    out += _bytecode(value.__code__)
                elif not _plain(value, out):
                    out += b"?" + type(value).__name__.encode()
            chains = {(b.__name__,) for b in cls.__bases__ if b is not object}
        for chain in sorted(chains):
            self.resolve(path, chain, namespace, vars(builtins))
        for fn in methods:  # each method's names are looked up where it looks them up
            builtin_names = _builtins_of(fn)
            for chain in sorted(_code_chains(fn.__code__)):
                self.resolve(path, chain, fn.__globals__, builtin_names)
        return canonical.digest(bytes(out)).hex()


def _bytecode(code: types.CodeType) -> bytes:
    """A code object's marshalled form with its file, position, name and docstring left out (one Python version)."""
    consts = tuple(_strip_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return marshal.dumps(_strip_code(code).replace(co_consts=consts))


def _strip_code(code: types.CodeType) -> types.CodeType:
    consts = tuple(_strip_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename="", co_firstlineno=1, co_name="", co_qualname="", co_consts=consts)


# ----------------------------------------------------------------- the identity
def code_parts(fn: Callable[..., Any]) -> dict[str, str]:
    """The parts of ``fn``'s identity: where each is reached → its kind and digest (see the module's doc)."""
    target = getattr(fn, "__func__", fn)  # a bound method: its function
    if not isinstance(target, types.FunctionType):
        code = getattr(target, "__code__", None)
        if not isinstance(code, types.CodeType):
            raise ManifestError(f"cannot determine the code identity of {fn!r} (not a Python function): "
                                "pass code_id= to name its version")
        # compiled (e.g. Cython) code: only its module and name can be seen
        name = f"{getattr(target, '__module__', None)}.{getattr(target, '__qualname__', code.co_name)}"
        return {"": "compiled:" + canonical.digest(name.encode()).hex()}
    try:
        return _Walk().run(target)
    except RecursionError:
        raise ManifestError(f"cannot determine the code identity of {fn!r} (its syntax nests too deeply): "
                            "pass code_id= to name its version") from None


def identity_of_parts(parts: dict[str, str]) -> str:
    return IDENTITY_PREFIX + canonical.hash_value(parts).hex()


def code_identity(fn: Callable[..., Any]) -> str:
    """The identity of ``fn``'s code: ``"py:"`` + BLAKE3 of :func:`code_parts`."""
    return identity_of_parts(code_parts(fn))


def legacy_code_identity(fn: Callable[..., Any]) -> str:
    """The identity earlier versions of aos gave ``fn``: BLAKE3 of its dedented source text (comments count)."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        return "src:" + canonical.digest(source.encode("utf-8")).hex()
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):  # no source, or not the function's
        code = getattr(fn, "__code__", None)
        if code is None:
            raise ManifestError(f"cannot determine the code identity of {fn!r}: "
                                "pass code_id= to Manifest.reducer") from None
        blob = marshal.dumps(code.replace(co_filename="", co_firstlineno=1))
        return "bytecode:" + canonical.digest(blob).hex()


class CodeIdentity:
    """A reducer's or invariant's code identity, worked out when first needed.

    Worked out lazily (at the manifest's first ``describe()`` or ``era``,
    normally when a world opens) so that helpers defined further down the
    module than the reducer are covered; then kept. ``override`` is a
    ``code_id=`` given by the user (or a native reducer's): it is the
    identity as is, with no parts.
    """

    __slots__ = ("fn", "override", "_parts", "_id", "_legacy")

    def __init__(self, fn: Callable[..., Any], override: str | None = None, what: str = "function") -> None:
        self.fn = fn
        self.override = override
        self._parts: dict[str, str] | None = None
        self._id: str | None = override
        self._legacy: str | None = override
        if override is None and not isinstance(getattr(getattr(fn, "__func__", fn), "__code__", None), types.CodeType):
            raise ManifestError(f"{what}: cannot determine the code identity of {fn!r} (not a Python function): "
                                "pass code_id= to name its version")

    @property
    def id(self) -> str:
        if self._id is None:  # two threads may both work it out: the same value, set once each
            parts = code_parts(self.fn)
            self._parts = parts
            self._id = identity_of_parts(parts)
        return self._id

    @property
    def parts(self) -> dict[str, str] | None:
        """The parts (None for an override)."""
        if self.override is not None:
            return None
        self.id  # noqa: B018 - works them out
        return dict(self._parts or {})

    @property
    def legacy_id(self) -> str:
        """The identity in the form of aos before code parts (``"src:…"``), for worlds made then."""
        if self._legacy is None:
            self._legacy = legacy_code_identity(self.fn)
        return self._legacy

    def __repr__(self) -> str:
        return f"CodeIdentity({self.override!r})" if self.override is not None else "CodeIdentity(<auto>)"
