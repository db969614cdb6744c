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
from dataclasses import dataclass, field
from typing import Any, Callable

from aos import canonical
from aos.errors import EraChangeError, ManifestError, ManifestMismatchError, UnknownReducerError

__all__ = ["Manifest", "ReducerSpec", "Reducer", "code_identity", "check_compatible"]

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
    except (OSError, TypeError):
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

    @property
    def keyed(self) -> bool:
        return self.key is not None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "events": list(self.events), "code": self.code_id}


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
    routes: dict[str, tuple[ReducerSpec, ...]] = field(default_factory=dict, repr=False)
    _era: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_name("manifest name", self.name)

    # ----------------------------------------------------------- building
    def reducer(self, name: str, *, events: list[str] | tuple[str, ...], key: str | None = None,
                code_id: str | None = None) -> Callable[[Reducer], Reducer]:
        """Register ``fn(ctx, state, event) -> new_state`` as reducer ``name``.

        ``key`` names the event field whose value selects the cell; without it
        the reducer is a single cell. ``code_id`` overrides the code identity
        (e.g. to cover helper functions the reducer calls).
        """
        _check_name("reducer name", name)
        if name in self.reducers:
            raise ManifestError(f"reducer {name} is declared twice in manifest {self.name}")
        if key is not None and (not isinstance(key, str) or not FIELD_RE.match(key)):
            raise ManifestError(f"reducer {name}: key must be an event field name, got {key!r}")
        if isinstance(events, str) or not events:
            raise ManifestError(f"reducer {name}: events must be a non-empty list of schema names")
        evs = tuple(_check_name(f"reducer {name}: event schema", e) for e in events)
        if len(set(evs)) != len(evs):
            raise ManifestError(f"reducer {name}: an event schema is listed twice")

        def register(fn: Reducer) -> Reducer:
            if not callable(fn):
                raise ManifestError(f"reducer {name}: {fn!r} is not callable")
            cid = code_id if code_id is not None else code_identity(fn)
            self.reducers[name] = ReducerSpec(name, fn, key, evs, cid)
            self._rebuild()
            return fn

        return register

    def schema(self, *names: str) -> None:
        """Declare event schemas that steps may emit though no reducer takes them."""
        for n in names:
            self.schemas.add(_check_name("schema", n))
        self._era = None

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
        return {
            "format": MANIFEST_FORMAT,
            "manifest": self.name,
            "reducers": [spec.describe() for spec in self.reducers.values()],
            "schemas": sorted(self.schemas),
        }

    @property
    def era(self) -> bytes:
        if self._era is None:
            self._era = canonical.hash_value(self.describe())
        return self._era


def check_compatible(stored: dict[str, Any], manifest: Manifest) -> None:
    """Raise unless ``manifest`` has the era of the ``stored`` description."""
    current = manifest.describe()
    if stored.get("manifest") != current["manifest"]:
        raise ManifestMismatchError(
            f"world was created with manifest {stored.get('manifest')!r}, not {manifest.name!r}")
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
    raise EraChangeError(
        f"era change in world of manifest {manifest.name}: " + "; ".join(changed)
        + ". The journal was written by other reducer code; replaying it with this manifest "
          "would diverge. Open it with the manifest it was written with.", changed)
