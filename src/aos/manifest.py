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

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from aos import canonical
from aos.changes import Change, changes, check_shape
from aos.errors import EraChangeError, ManifestError, ManifestMismatchError, UnknownReducerError, brief
from aos.identity import LEGACY_PREFIXES, CodeIdentity, code_identity, legacy_code_identity
from aos.typed import EventCheck, ReducerTypes, typed_plan, typed_reducer
from aos.upcast import Chain, Upcast, Upcaster, chain_label

if TYPE_CHECKING:
    from aos._core.context import TypedPlan
    from aos._core.native import NativeReducer

__all__ = ["Manifest", "ReducerSpec", "Reducer", "Capability", "PolicyRule", "InvariantSpec", "Upcaster",
           "code_identity",
           "legacy_code_identity", "check_compatible", "era_changes", "uses_legacy_ids", "Change", "changes",
           "RECEIPT_SCHEMA", "DENIED_SCHEMA"]

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*@[0-9]+$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
MANIFEST_FORMAT = 1

Reducer = Callable[[Any, Any, Any], Any]


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ManifestError(f"{what} {name!r} is not of the form 'namespace/Name@version' "
                            "(letters, digits, '_', '.', '-', '/', then '@' and a version number)")
    return name


def _check_code_id(what: str, code_id: object) -> str | None:
    if code_id is not None and (not isinstance(code_id, str) or not code_id):
        raise ManifestError(f"{what}: code_id must be a non-empty string naming the code's version, got {code_id!r}")
    return code_id


@dataclass(frozen=True, slots=True)
class ReducerSpec:
    """One reducer of a manifest."""

    name: str
    fn: Reducer
    key: str | None
    events: tuple[str, ...]
    identity: CodeIdentity
    native: NativeReducer | None = None  # for native reducers
    priority: int = 1  # scheduling class: 0 is served first, 3 last (with aging)
    # old schema -> the upcasters that turn it into one of ``events``; filled by the manifest, empty for
    # most reducers (a step tests it once: docs/upgrades.md, "Upcasters")
    upcasts: dict[str, Chain] = field(default_factory=dict, compare=False, repr=False)
    # the declared types (``state=``, ``event=``; docs/manifest.md, "Typed values"); None for most reducers
    types: ReducerTypes | None = field(default=None, compare=False, repr=False)
    # how the inline loop hands ``fn`` its typed values in C (aos.typed.typed_plan); None for most reducers
    plan: TypedPlan | None = field(default=None, compare=False, repr=False)

    @property
    def keyed(self) -> bool:
        return self.key is not None

    @property
    def code_id(self) -> str:
        """The code identity (``"py:…"``, or the ``code_id=`` given, ``"native:…"`` for native reducers)."""
        return self.identity.id

    def describe(self, legacy: bool = False) -> dict[str, Any]:
        """This reducer's part of the manifest description (``legacy``: with the code id form of old worlds)."""
        d: dict[str, Any] = {"name": self.name, "key": self.key, "events": list(self.events),
             "code": self.identity.legacy_id if legacy else self.identity.id,
             "native": self.native is not None, "priority": self.priority}
        parts = None if legacy else self.identity.parts
        if parts is not None:
            d["code_parts"] = parts
        if self.types is not None:  # (absent when none: the era of a reducer without types is unchanged)
            d["types"] = self.types.describe()
        return d


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
    identity: CodeIdentity

    @property
    def code_id(self) -> str:
        return self.identity.id

    def describe(self, legacy: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "reducers": None if self.reducers is None else list(self.reducers),
             "code": self.identity.legacy_id if legacy else self.identity.id}
        parts = None if legacy else self.identity.parts
        if parts is not None:
            d["code_parts"] = parts
        return d


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
    upcasters: dict[str, Upcaster] = field(default_factory=dict)  # by old schema
    upcast_chains: dict[str, Chain] = field(default_factory=dict, repr=False)  # old schema -> to its chain's end
    routes: dict[str, tuple[ReducerSpec, ...]] = field(default_factory=dict, repr=False)
    # schema -> the declared event types admission checks it against (kept as one dict object: aos.admission)
    event_checks: dict[str, EventCheck] = field(default_factory=dict, repr=False)
    _era: bytes | None = field(default=None, repr=False)
    _legacy: bool = field(default=False, repr=False)  # describes itself with the code ids of old worlds
    _form_of: str | None = field(default=None, repr=False)  # the world that fixed the form above, once one did

    def __post_init__(self) -> None:
        _check_name("manifest name", self.name)

    # ----------------------------------------------------------- building
    def reducer(self, name: str, *, events: list[str] | tuple[str, ...], key: str | None = None,
                code_id: str | None = None, priority: int = 1, state: Any = None,
                event: Any = None) -> Callable[[Reducer], Reducer]:
        """Register ``fn(ctx, state, event) -> new_state`` as reducer ``name``.

        ``key`` names the event field whose value selects the cell; without it
        the reducer is a single cell. ``code_id`` overrides the code identity
        (e.g. to cover helper functions the reducer calls). ``priority`` is
        the cells' scheduling class: 0 is served first, then 1 (the default),
        2, 3; a ready cell that waited ``aging`` tickets is served regardless.
        ``state`` and ``event`` declare typed values (a dataclass, msgspec
        Struct or pydantic model; ``event`` may map schemas to types): the
        reducer is handed them as those types, may return a ``state`` instance,
        and submitted or emitted events are checked against them at admission
        (docs/manifest.md, "Typed values").
        """
        evs = self._check_reducer(name, events, key, priority)
        types = ReducerTypes.declare(name, evs, state, event)

        def register(fn: Reducer) -> Reducer:
            if not callable(fn):
                raise ManifestError(f"reducer {name}: {fn!r} is not callable")
            ident = CodeIdentity(fn, _check_code_id(f"reducer {name}", code_id), f"reducer {name}")
            call = fn if types is None else typed_reducer(fn, types)  # no wrapper without declared types
            self.reducers[name] = ReducerSpec(name, call, key, evs, ident, None, priority, types=types,
                                              plan=typed_plan(call))
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
        for e in evs:
            if e in self.upcasters:
                raise ManifestError(f"reducer {name} takes {e}, which manifest {self.name} upcasts to "
                                    f"{self.upcasters[e].new}: a reducer takes the schema at the chain's end")
        return evs

    def native_reducer(self, name: str, *, events: list[str] | tuple[str, ...], fn: Any, code_id: str,
                       key: str | None = None, user: Any = None, priority: int = 1, state: Any = None,
                       event: Any = None) -> ReducerSpec:
        """Register a native reducer (the C ABI of ``aos/_core/include/aos_native.h``).

        ``fn`` is a PyCapsule named ``"aos.reducer.v1"`` holding an
        ``aos_reducer_fn``, or the function's address; ``user`` (an address,
        an int or an unnamed capsule) is passed to every call. ``code_id``
        names the code's version: it enters the era, so bump it whenever the
        native code changes. Native steps run with the GIL released.
        """
        from aos._core.native import NativeReducer

        if state is not None or event is not None:
            raise ManifestError(f"native reducer {name}: state= and event= declare typed values for Python "
                                "reducers; a native reducer reads and writes canonical CBOR bytes itself")
        evs = self._check_reducer(name, events, key, priority)
        if not isinstance(code_id, str) or not code_id:
            raise ManifestError(f"native reducer {name}: code_id must name the code's version")
        try:
            native = NativeReducer(fn, user)
        except TypeError as exc:
            raise ManifestError(f"native reducer {name}: {exc}") from None
        spec = ReducerSpec(name, _native_placeholder, key, evs, CodeIdentity(fn, "native:" + code_id), native,
                           priority)
        self.reducers[name] = spec
        self._rebuild()
        return spec

    def schema(self, *names: str) -> None:
        """Declare event schemas that steps may emit though no reducer takes them."""
        for n in names:
            if _check_name("schema", n).startswith(SYS_NAMESPACE):
                raise ManifestError(f"schema {n}: the {SYS_NAMESPACE} namespace is the kernel's")
            if n in self.upcasters:
                raise ManifestError(f"schema {n}: manifest {self.name} upcasts it to {self.upcasters[n].new}; "
                                    "an upcast schema is not declared")
            self.schemas.add(n)
        self._era = None

    def upcast(self, old_schema: str, new_schema: str, fn: Upcast | None = None, *,
               code_id: str | None = None) -> Any:
        """Declare that events of ``old_schema`` reach this manifest's reducers as ``new_schema``.

        ``fn(old_value) -> new_value`` is pure (it runs again on replay). An
        event of ``old_schema`` (submitted, emitted, or journaled before an
        upgrade) is journaled as it arrived, routed like ``new_schema`` (the
        end of its chain: upcasters compose, ``@1 -> @2 -> @3``), and a
        reducer receives it with ``event.schema == new_schema`` and
        ``event.value == fn(old_value)``. No reducer may take ``old_schema``;
        ``new_schema`` must be taken by a reducer or be upcast further; one
        upcaster per old schema, no cycles. Usable as a decorator:
        ``@m.upcast("acme/Placed@1", "acme/Placed@2")``. ``code_id``
        overrides the code identity, as for reducers.
        """
        _check_name("upcaster: old schema", old_schema)
        _check_name("upcaster: new schema", new_schema)
        what = f"upcaster {old_schema} -> {new_schema}"
        for s in (old_schema, new_schema):
            if s.startswith(SYS_NAMESPACE):
                raise ManifestError(f"{what}: the {SYS_NAMESPACE} namespace is the kernel's")
        if old_schema == new_schema:
            raise ManifestError(f"{what}: a schema cannot be upcast to itself")
        if old_schema in self.upcasters:
            raise ManifestError(f"{what}: {old_schema} already has an upcaster (to {self.upcasters[old_schema].new}); "
                                "one upcaster per old schema")
        takers = [spec.name for spec in self.routes.get(old_schema, ())]
        if takers:
            raise ManifestError(f"{what}: reducer {takers[0]} takes {old_schema} directly; an upcast schema is "
                                "taken by no reducer (they take the schema at the chain's end)")
        if old_schema in self.schemas:
            raise ManifestError(f"{what}: {old_schema} is declared with schema(); an upcast schema is not")
        seen, s = [old_schema], new_schema
        while s in self.upcasters:
            seen.append(s)
            s = self.upcasters[s].new
            if s == old_schema:
                raise ManifestError(f"{what}: the upcasters would form a cycle "
                                    f"({' -> '.join([*seen, old_schema])})")

        def register(f: Upcast) -> Upcast:
            if not callable(f):
                raise ManifestError(f"{what}: {f!r} is not callable")
            ident = CodeIdentity(f, _check_code_id(what, code_id), what)
            self.upcasters[old_schema] = Upcaster(old_schema, new_schema, f, ident)
            self._rebuild()
            return f

        return register if fn is None else register(fn)

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
            ident = CodeIdentity(f, _check_code_id(f"invariant {name}", code_id), f"invariant {name}")
            self.invariants[name] = InvariantSpec(name, f, None if reducers is None else tuple(reducers), ident)
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
        chains: dict[str, Chain] = {}
        for old in self.upcasters:
            steps: list[Upcaster] = []
            s = old
            while s in self.upcasters:  # no cycles: upcast() refuses them
                steps.append(self.upcasters[s])
                s = self.upcasters[s].new
            chains[old] = tuple(steps)
        self.upcast_chains = chains
        for spec in self.reducers.values():
            spec.upcasts.clear()
        for old, chain in chains.items():
            for spec in self.routes.get(chain[-1].new, ()):
                spec.upcasts[old] = chain
        self.event_checks.clear()
        for spec in self.reducers.values():
            for schema, shape in (spec.types.events.items() if spec.types is not None else ()):
                self.event_checks.setdefault(schema, EventCheck(schema)).shapes.append((spec.name, shape))
        self._era = None

    # ------------------------------------------------------------- lookups
    def knows(self, schema: str) -> bool:
        return schema in self.routes or schema in self.schemas or schema in self.upcasters

    def get(self, reducer: str) -> ReducerSpec:
        try:
            return self.reducers[reducer]
        except KeyError:
            raise UnknownReducerError(f"manifest {self.name} has no reducer {reducer!r}") from None

    # ---------------------------------------------------------------- era
    def describe(self, *, legacy: bool | None = None) -> dict[str, Any]:
        """The canonical description of this manifest (what the era hashes).

        ``legacy`` (default: :attr:`legacy_ids`) writes code ids in the form
        worlds made before code parts store (``"src:…"``, no ``code_parts``).
        """
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
        for chain in self.upcast_chains.values():
            end = chain[-1].new
            if end not in self.routes:
                raise ManifestError(f"upcaster {chain_label(chain)}: no reducer of manifest {self.name} takes "
                                    f"{end}; the schema an upcaster makes must be taken by a reducer or be "
                                    "upcast further")
        old = self._legacy if legacy is None else legacy
        d: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "manifest": self.name,
            "reducers": [spec.describe(old) for spec in self.reducers.values()],
            "schemas": sorted(self.schemas),
            "capabilities": [c.describe() for c in self.capabilities.values()],
            "policies": [r.describe() for r in self.policies],
            "invariants": [i.describe(old) for i in self.invariants.values()],
        }
        if self.upcasters:  # (absent when none: the descriptions of manifests without upcasters are unchanged)
            d["upcasters"] = [self.upcasters[s].describe(old) for s in sorted(self.upcasters)]
        return d

    @property
    def era(self) -> bytes:
        if self._era is None:
            self._era = canonical.hash_value(self.describe())
        return self._era

    @property
    def legacy_ids(self) -> bool:
        """True once this manifest opened a world made before code parts: it describes itself as that world does."""
        return self._legacy

    def _fix_form(self, legacy: bool, world: object) -> None:
        """Keep the code id form a world was found in; refuse a second world that needs the other one."""
        if self._form_of is not None and self._legacy != legacy:
            first, second = ("old", "current") if self._legacy else ("current", "old")
            raise ManifestError(
                f"manifest {self.name} already describes itself with the {first} form of code ids "
                f"(for world {self._form_of}); world {world} stores the {second} form. One Manifest object "
                "keeps one era for all the worlds it opens: build a second Manifest object for this world")
        if self._legacy != legacy:
            self._legacy = legacy
            self._era = None
        if self._form_of is None:
            self._form_of = "?" if world is None else str(world)


def uses_legacy_ids(description: dict[str, Any]) -> bool:
    """Whether a stored description has code ids in the form of aos before code parts (``"src:…"``)."""
    items = [*description.get("reducers", []), *description.get("invariants", []),
             *description.get("upcasters", [])]
    return any(isinstance(x, dict) and "code_parts" not in x and isinstance(x.get("code"), str)
               and x["code"].startswith(LEGACY_PREFIXES) for x in items)


def era_changes(stored: dict[str, Any], manifest: Manifest) -> list[Change]:
    """The :func:`changes` from a ``stored`` description to ``manifest``, its code ids in the stored form.

    A world made before code parts stores ``"src:…"`` ids; comparing them with
    ``"py:…"`` ids would list every function as changed, so the manifest is
    described in the stored form for the comparison.
    """
    return changes(stored, manifest.describe(legacy=uses_legacy_ids(stored)))


MAX_LISTED = 12  # changes an EraChangeError's message lists one per line; the rest are counted


def check_compatible(stored: dict[str, Any], manifest: Manifest, world: object = None) -> None:
    """Raise unless ``manifest`` has the era of the ``stored`` description (``world``: its path, for messages).

    A stored description whose code ids have the old form (``"src:…"``, made
    by aos before code parts) matches when the manifest described in that
    form equals it: the manifest then keeps describing itself in that form
    (:attr:`Manifest.legacy_ids`), so its era stays the world's stored era,
    the one every journal segment header names.
    Otherwise :class:`EraChangeError` lists the :func:`changes`.
    """
    current = manifest.describe()
    at = "" if world is None else f" {world}"
    check_shape(stored, "stored manifest description")  # TypeError: read_meta reports the file as malformed
    if stored.get("manifest") != current["manifest"]:
        raise ManifestMismatchError(
            f"world{at} was created with manifest {stored.get('manifest')!r}, not {manifest.name!r}")
    stored_era = canonical.hash_value(stored)
    if stored_era == manifest.era:
        manifest._fix_form(manifest.legacy_ids, world)
        return
    old_form = uses_legacy_ids(stored)
    if old_form != manifest.legacy_ids:
        other = manifest.describe(legacy=old_form)
        if canonical.hash_value(other) == stored_era:
            manifest._fix_form(old_form, world)
            return
        current = other  # compare like with like: only what changed is listed
    found = changes(stored, current)  # = era_changes(stored, manifest)
    listed = [c.text for c in found[:MAX_LISTED]]
    if len(found) > MAX_LISTED:
        listed.append(f"and {len(found) - MAX_LISTED} more")
    raise EraChangeError(
        f"era change in world{at} of manifest {manifest.name}: the world was written in era "
        f"{stored_era.hex()[:12]}, this manifest describes era {canonical.hash_value(current).hex()[:12]}; "
        f"{len(found)} change{'s' if len(found) != 1 else ''}:\n"
        + "".join(f"  - {line}\n" for line in listed)
        + ("The world stores code ids of an earlier aos (a hash of each function's source text, comments "
           "included), which keeps them until it is upgraded. " if old_form else "")
        + "Replaying the journal with this manifest would run other code than wrote it, so it is refused. "
          "Open the world with the manifest it was written with, or upgrade it to this one with "
          "aos.upgrade(path, new_manifest, ...) (see docs/upgrades.md).",
        [c.text for c in found], found)
