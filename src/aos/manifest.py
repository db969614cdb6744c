"""The manifest: a world's control plane as data, and its era.

A manifest names itself (``ns/name@version``), lists reducers (each keyed
by an event field or not, with the schemas it takes) and may declare extra
event schemas that steps emit without any reducer taking them. Routing: a
schema goes to every reducer that takes it, in the order the reducers were
declared.

The *era* is the BLAKE3 of the canonical encoding of :meth:`Manifest.describe`,
which includes each reducer's code identity, so a world opened with changed
reducer code reports an era change naming the reducer (see docs/manifest.md).
"""

from __future__ import annotations

import inspect
import marshal
import re
import textwrap
import tokenize
from dataclasses import dataclass, field
from typing import Any, Callable

from aos import canonical
from aos.errors import EraChangeError, ManifestError, ManifestMismatchError, UnknownReducerError, brief

__all__ = ["Manifest", "ReducerSpec", "Reducer", "Capability", "PolicyRule", "InvariantSpec", "code_identity",
           "check_compatible", "RECEIPT_SCHEMA", "DENIED_SCHEMA"]

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*@[0-9]+$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
MANIFEST_FORMAT = 1

Reducer = Callable[[Any, Any, Any], Any]


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ManifestError(f"{what} {name!r} is not of the form 'namespace/Name@version' "
                            "(letters, digits, '_', '.', '-', '/', then '@' and a version number)")
    return name


def code_identity(fn: Callable[..., Any]) -> str:
    """A stable identity of a reducer's code.

    It is the BLAKE3 of the function's source text (dedented), which does
    not change between Python versions. Functions without retrievable source
    fall back to their marshalled code object (stable for one Python version).
    """
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


@dataclass(frozen=True, slots=True)
class ReducerSpec:
    """One reducer of a manifest."""

    name: str
    fn: Reducer
    key: str | None
    events: tuple[str, ...]
    code_id: str
    native: Any = None  # an aos._core.native.NativeReducer for native reducers
    priority: int = 1  # scheduling class: 0 is served first, 3 last (with aging)

    @property
    def keyed(self) -> bool:
        return self.key is not None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "events": list(self.events), "code": self.code_id,
                "native": self.native is not None, "priority": self.priority}


def _native_placeholder(ctx: Any, state: Any, event: Any) -> Any:
    raise TypeError("a native reducer is called through its native entry point")


@dataclass(frozen=True, slots=True)
class Capability:
    """A named right to intend effects of some kinds, with a budget in integer units."""

    name: str
    effects: tuple[str, ...]
    budget: int

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "effects": list(self.effects), "budget": self.budget}


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """An allow or deny rule; ``None`` fields match anything."""

    action: str  # "allow" | "deny"
    kind: str | None = None
    reducer: str | None = None
    cap: str | None = None

    def matches(self, kind: str, reducer: str, cap: str | None) -> bool:
        return ((self.kind is None or self.kind == kind)
                and (self.reducer is None or self.reducer == reducer)
                and (self.cap is None or self.cap == cap))

    def describe(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "reducer": self.reducer, "cap": self.cap}


@dataclass(frozen=True, slots=True)
class InvariantSpec:
    """A predicate over committed state, checked at every commit of the named reducers."""

    name: str
    fn: Callable[[Any], Any]
    reducers: tuple[str, ...] | None
    code_id: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "reducers": None if self.reducers is None else list(self.reducers),
                "code": self.code_id}


SYS_NAMESPACE = "sys/"
RECEIPT_SCHEMA = "sys/Receipt@1"
DENIED_SCHEMA = "sys/EffectDenied@1"


@dataclass
class Manifest:
    """Reducers, routes and declared schemas of a world.

    >>> m = Manifest("acme/shop@1")
    >>> @m.reducer("acme/Order@1", key="order_id", events=["acme/OrderPlaced@1"])
    ... def order(ctx, state, event):
    ...     return dict(state or {}, placed=True)
    """

    name: str
    reducers: dict[str, ReducerSpec] = field(default_factory=dict)
    schemas: set[str] = field(default_factory=set)
    capabilities: dict[str, Capability] = field(default_factory=dict)
    policies: list[PolicyRule] = field(default_factory=list)
    invariants: dict[str, InvariantSpec] = field(default_factory=dict)
    routes: dict[str, tuple[ReducerSpec, ...]] = field(default_factory=dict, repr=False)
    _era: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_name("manifest name", self.name)

    # ----------------------------------------------------------- building
    def reducer(self, name: str, *, events: list[str] | tuple[str, ...], key: str | None = None,
                code_id: str | None = None, priority: int = 1) -> Callable[[Reducer], Reducer]:
        """Register ``fn(ctx, state, event) -> new_state`` as reducer ``name``.

        ``key`` names the event field whose value selects the cell; without it
        the reducer is a single cell. ``code_id`` overrides the code identity
        (e.g. to cover helper functions the reducer calls). ``priority`` is
        the cells' scheduling class: 0 is served first, then 1 (the default),
        2, 3; a ready cell that waited ``aging`` tickets is served regardless.
        """
        evs = self._check_reducer(name, events, key, priority)

        def register(fn: Reducer) -> Reducer:
            if not callable(fn):
                raise ManifestError(f"reducer {name}: {fn!r} is not callable")
            cid = code_id if code_id is not None else code_identity(fn)
            self.reducers[name] = ReducerSpec(name, fn, key, evs, cid, None, priority)
            self._rebuild()
            return fn

        return register

    def _check_reducer(self, name: str, events: Any, key: str | None, priority: int) -> tuple[str, ...]:
        _check_name("reducer name", name)
        if type(priority) is not int or not 0 <= priority <= 3:
            raise ManifestError(f"reducer {name}: priority must be an int from 0 (first) to 3, got {priority!r}")
        if name in self.reducers:
            raise ManifestError(f"reducer {name} is declared twice in manifest {self.name}")
        if key is not None and (not isinstance(key, str) or not FIELD_RE.match(key)):
            raise ManifestError(f"reducer {name}: key must be an event field name, got {key!r}")
        if not isinstance(events, (list, tuple)) or not events:
            raise ManifestError(f"reducer {name}: events must be a non-empty list of schema names")
        evs = tuple(_check_name(f"reducer {name}: event schema", e) for e in events)
        if any(e.startswith(SYS_NAMESPACE) for e in evs):
            raise ManifestError(f"reducer {name}: {SYS_NAMESPACE} schemas are not routed; the kernel "
                                "delivers receipts and denials to the cell that intended the effect")
        if len(set(evs)) != len(evs):
            raise ManifestError(f"reducer {name}: an event schema is listed twice")
        return evs

    def native_reducer(self, name: str, *, events: list[str] | tuple[str, ...], fn: Any, code_id: str,
                       key: str | None = None, user: Any = None, priority: int = 1) -> ReducerSpec:
        """Register a native reducer (the C ABI of ``aos/_core/include/aos_native.h``).

        ``fn`` is a PyCapsule named ``"aos.reducer.v1"`` holding an
        ``aos_reducer_fn``, or the function's address; ``user`` (an address,
        an int or an unnamed capsule) is passed to every call. ``code_id``
        names the code's version: it enters the era, so bump it whenever the
        native code changes. Native steps run with the GIL released.
        """
        from aos._core.native import NativeReducer

        evs = self._check_reducer(name, events, key, priority)
        if not isinstance(code_id, str) or not code_id:
            raise ManifestError(f"native reducer {name}: code_id must name the code's version")
        try:
            native = NativeReducer(fn, user)
        except TypeError as exc:
            raise ManifestError(f"native reducer {name}: {exc}") from None
        spec = ReducerSpec(name, _native_placeholder, key, evs, "native:" + code_id, native, priority)
        self.reducers[name] = spec
        self._rebuild()
        return spec

    def schema(self, *names: str) -> None:
        """Declare event schemas that steps may emit though no reducer takes them."""
        for n in names:
            if _check_name("schema", n).startswith(SYS_NAMESPACE):
                raise ManifestError(f"schema {n}: the {SYS_NAMESPACE} namespace is the kernel's")
            self.schemas.add(n)
        self._era = None

    def capability(self, name: str, *, effect: str | list[str] | tuple[str, ...], budget: int) -> Capability:
        """Declare capability ``name`` covering effect kind(s) ``effect`` with an integer ``budget``.

        ``budget`` is an int from 0 to 2**63-1: costs are journaled as signed
        64-bit ints, and a ledger whose reservations and spending never pass
        the budget keeps every sum of costs in that range too.
        """
        if not isinstance(name, str) or not FIELD_RE.match(name):
            raise ManifestError(f"capability name {name!r} must be an identifier")
        if name in self.capabilities:
            raise ManifestError(f"capability {name} is declared twice in manifest {self.name}")
        kinds = (effect,) if isinstance(effect, str) else tuple(effect) if isinstance(effect, (list, tuple)) else ()
        if not kinds or not all(isinstance(k, str) and k for k in kinds) or len(set(kinds)) != len(kinds):
            raise ManifestError(f"capability {name}: effect must name one or more distinct effect kinds")
        if type(budget) is not int or not 0 <= budget <= canonical.INT64_MAX:
            raise ManifestError(f"capability {name}: budget must be an int from 0 to 2**63-1 (so that every "
                                f"cost and sum of costs fits a journal record), got {brief(budget)}")
        cap = Capability(name, kinds, budget)
        self.capabilities[name] = cap
        self._era = None
        return cap

    def allow(self, *, kind: str | None = None, reducer: str | None = None, cap: str | None = None) -> None:
        """Append an allow rule (rules are tried in order; the first match decides)."""
        self._rule("allow", kind, reducer, cap)

    def deny(self, *, kind: str | None = None, reducer: str | None = None, cap: str | None = None) -> None:
        """Append a deny rule (rules are tried in order; the first match decides)."""
        self._rule("deny", kind, reducer, cap)

    def _rule(self, action: str, kind: str | None, reducer: str | None, cap: str | None) -> None:
        for what, v in (("kind", kind), ("reducer", reducer), ("cap", cap)):
            if v is not None and (not isinstance(v, str) or not v):
                raise ManifestError(f"{action} rule: {what} must be a non-empty string or None, got {v!r}")
        self.policies.append(PolicyRule(action, kind, reducer, cap))
        self._era = None

    def invariant(self, name: str, fn: Callable[[Any], Any] | None = None, *,
                  reducers: list[str] | tuple[str, ...] | None = None,
                  code_id: str | None = None) -> Any:
        """Declare invariant ``name``: ``fn(view)`` returns a false value or raises when violated.

        Checked at the commit of every step of ``reducers`` (all reducers when
        omitted), against the state as it would be after the step. Usable as a
        decorator: ``@m.invariant("stock-non-negative", reducers=[...])``.
        """
        if not isinstance(name, str) or not name:
            raise ManifestError(f"invariant name must be a non-empty string, got {name!r}")
        if name in self.invariants:
            raise ManifestError(f"invariant {name} is declared twice in manifest {self.name}")
        if reducers is not None and (not isinstance(reducers, (list, tuple))
                                     or not all(isinstance(r, str) for r in reducers)):
            raise ManifestError(f"invariant {name}: reducers must be a list of reducer names, got {reducers!r}")

        def register(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
            if not callable(f):
                raise ManifestError(f"invariant {name}: {f!r} is not callable")
            cid = code_id if code_id is not None else code_identity(f)
            self.invariants[name] = InvariantSpec(name, f, None if reducers is None else tuple(reducers), cid)
            self._era = None
            return f

        return register if fn is None else register(fn)

    def covering(self, kind: str) -> list[Capability]:
        """Capabilities that cover effect ``kind``, in declaration order."""
        return [c for c in self.capabilities.values() if kind in c.effects]

    def _rebuild(self) -> None:
        routes: dict[str, list[ReducerSpec]] = {}
        for spec in self.reducers.values():
            for ev in spec.events:
                routes.setdefault(ev, []).append(spec)
        self.routes = {k: tuple(v) for k, v in routes.items()}
        self._era = None

    # ------------------------------------------------------------- lookups
    def knows(self, schema: str) -> bool:
        return schema in self.routes or schema in self.schemas

    def get(self, reducer: str) -> ReducerSpec:
        try:
            return self.reducers[reducer]
        except KeyError:
            raise UnknownReducerError(f"manifest {self.name} has no reducer {reducer!r}") from None

    # ---------------------------------------------------------------- era
    def describe(self) -> dict[str, Any]:
        """The canonical description of this manifest (what the era hashes)."""
        if not self.reducers:
            raise ManifestError(f"manifest {self.name} declares no reducer")
        for inv in self.invariants.values():
            for r in inv.reducers or ():
                if r not in self.reducers:
                    raise ManifestError(f"invariant {inv.name} names unknown reducer {r}")
        for rule in self.policies:
            if rule.cap is not None and rule.cap not in self.capabilities:
                raise ManifestError(f"{rule.action} rule names unknown capability {rule.cap}")
            if rule.reducer is not None and rule.reducer not in self.reducers:
                raise ManifestError(f"{rule.action} rule names unknown reducer {rule.reducer}")
        return {
            "format": MANIFEST_FORMAT,
            "manifest": self.name,
            "reducers": [spec.describe() for spec in self.reducers.values()],
            "schemas": sorted(self.schemas),
            "capabilities": [c.describe() for c in self.capabilities.values()],
            "policies": [r.describe() for r in self.policies],
            "invariants": [i.describe() for i in self.invariants.values()],
        }

    @property
    def era(self) -> bytes:
        if self._era is None:
            self._era = canonical.hash_value(self.describe())
        return self._era


def check_compatible(stored: dict[str, Any], manifest: Manifest, world: object = None) -> None:
    """Raise unless ``manifest`` has the era of the ``stored`` description (``world``: its path, for messages)."""
    current = manifest.describe()
    at = "" if world is None else f" {world}"
    if stored.get("manifest") != current["manifest"]:
        raise ManifestMismatchError(
            f"world{at} was created with manifest {stored.get('manifest')!r}, not {manifest.name!r}")
    if canonical.hash_value(stored) == manifest.era:
        return
    old = {r["name"]: r for r in stored.get("reducers", [])}
    new = {r["name"]: r for r in current["reducers"]}
    changed: list[str] = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None:
            changed.append(f"{name} (added)")
        elif b is None:
            changed.append(f"{name} (removed)")
        elif a["code"] != b["code"]:
            changed.append(f"{name} (code changed)")
        elif a != b:
            changed.append(f"{name} (key or events changed)")
    if [r["name"] for r in stored.get("reducers", [])] != [r["name"] for r in current["reducers"]] and not changed:
        changed.append("reducer order (routing order) changed")
    if stored.get("schemas") != current["schemas"]:
        changed.append("declared schemas changed")
    for section, label in (("capabilities", "capability"), ("invariants", "invariant")):
        a_items = {x["name"]: x for x in stored.get(section, [])}
        b_items = {x["name"]: x for x in current[section]}
        for name in sorted(a_items.keys() | b_items.keys()):
            if a_items.get(name) != b_items.get(name):
                how = ("added" if name not in a_items else "removed" if name not in b_items
                       else "code changed" if a_items[name].get("code") != b_items[name].get("code")
                       else "changed")
                changed.append(f"{label} {name} ({how})")
    if stored.get("policies") != current["policies"]:
        changed.append("policy rules changed")
    raise EraChangeError(
        f"era change in world{at} of manifest {manifest.name}: " + "; ".join(changed)
        + ". The journal was written by other reducer code; replaying it with this manifest "
          "would diverge. Open it with the manifest it was written with.", changed)
