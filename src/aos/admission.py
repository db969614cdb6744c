"""Admission: validating an event and routing it to the cells that take it.

Used for external submissions (``World.submit``) and for events a step emits
(``ctx.emit``). Either the whole event is valid — known schema, every key
field present and of a key type, value in the canonical model — or a typed
error says what and where, and nothing is admitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aos import canonical
from aos._core.decoder import UNHANDLED
from aos._core.decoder import decode as _fast_decode
from aos._core.encoder import encode as _fast_encode
from aos.canonical import int64_problem
from aos.errors import CellKeyError, InvalidKeyError, MissingKeyFieldError, UnknownSchemaError, brief
from aos.lane import Lane
from aos.lane_world import split_routes
from aos.manifest import Manifest, ReducerSpec
from aos.upcast import run_chain

__all__ = ["Admission", "Route", "normalize_key", "cell_key"]

Route = tuple[ReducerSpec, Any]  # (reducer, key); key is None for a non-keyed reducer


def normalize_key(key: Any, where: str) -> Any:
    """Check a cell key (str, int in the signed 64-bit range, or bytes; not bool) and strip subclasses."""
    t = type(key)
    if t is str or t is bytes:
        return key
    if t is bool or not isinstance(key, (str, int, bytes)):
        raise InvalidKeyError(f"{where}: key must be str, int or bytes, got {t.__name__} {brief(key)}")
    # The plain value of a subclass, as the canonical encoding writes it (never its own __str__ or __int__).
    if isinstance(key, str):
        key = str.__str__(key)
    elif isinstance(key, int):
        key = int.__int__(key)
    else:
        key = bytes.__bytes__(key)
    if type(key) is int and (problem := int64_problem(key)) is not None:
        raise InvalidKeyError(f"{where}: an int key must fit a journal record: {problem}")
    return key




@dataclass(slots=True)
class Admitted:
    """A validated event: its canonical bytes and the cells it goes to, in route order.

    ``idempotency_key``: the key it is submitted with (``World.submit``), journaled with it; None: none.
    """

    schema: str
    value: bytes
    routes: tuple[Route, ...]
    idempotency_key: str | None = None


class Admission:
    """Validates events against a manifest."""

    def __init__(self, manifest: Manifest, lane: Lane | None = None) -> None:
        self.manifest = manifest
        # a lane of a fleet of more than one lane keeps the routes of its own cells (aos.lane_world)
        self.lane = lane if lane is not None and lane.lanes > 1 else None
        self._lane_of: dict[Any, int] = {}
        # schema -> declared event types (the manifest's dict, empty unless a reducer declares event=)
        self._typed = manifest.event_checks

    def check(self, schema: Any, value: Any, origin: str = "submitted event") -> Admitted:
        """Validate and encode an event; raise a typed error naming what is wrong and where."""
        if type(schema) is not str and isinstance(schema, str):
            schema = str.__str__(schema)  # a str subclass: its plain text (never its own __str__ or __eq__)
        specs = self._specs(schema, origin)
        if self._typed and schema in self._typed:  # (one test of an empty dict for worlds without typed events)
            value = self._typed[schema].admit(value, f"{origin} {schema}")
        if specs is None:
            data = _fast_encode(value)
            if data is None:
                data = canonical.encode(value, where=f"{origin} {schema}")
            return self._upcast(schema, data, origin)
        data = _fast_encode(value)  # the C writer; None: the general path, which explains a bad value
        if data is None:
            data = canonical.encode(value, where=f"{origin} {schema}")
            if specs:
                # Route by what was encoded — what replay routes by — not by what a subclass's own
                # __getitem__ says; and since the C writer takes only ints of the signed 64-bit range,
                # only a value it left to this path can hold a key outside what a StepScheduled holds.
                return Admitted(schema, data, self._routes(schema, canonical.decode_trusted(data), specs, origin,
                                                           True))
            return Admitted(schema, data, ())
        return Admitted(schema, data, self._routes(schema, value, specs, origin, False))

    def check_encoded(self, schema: Any, data: bytes, origin: str) -> Admitted:
        """The same for an event whose canonical bytes are known (journal replay)."""
        specs = self._specs(schema, origin)
        if specs is None:
            if type(data) is not bytes or _fast_decode(data, True) is UNHANDLED:
                canonical.decode(data, f"{origin} {schema}")  # raises for bytes that are not canonical
            return self._upcast(schema, bytes(data), origin)
        value = _fast_decode(data, True) if type(data) is bytes else UNHANDLED
        if value is UNHANDLED:
            value = canonical.decode(data, f"{origin} {schema}")
        return Admitted(schema, data, self._routes(schema, value, specs, origin, True))

    def _upcast(self, schema: str, data: bytes, origin: str) -> Admitted:
        """An event of a schema the manifest upcasts: kept as it is, routed by its upcast value.

        The chain runs once here, which also proves that it takes the event
        (else :class:`~aos.errors.UpcastError`, nothing admitted); it runs
        again when the event is delivered.
        """
        chain = self.manifest.upcast_chains[schema]
        new_schema, _bytes, new_value = run_chain(chain, canonical.decode_trusted(data), f"{origin} {schema}")
        if self._typed and new_schema in self._typed:
            self._typed[new_schema].admit(new_value, f"{origin} {schema} upcast to {new_schema}")
        specs = self.manifest.routes.get(new_schema) or ()
        return Admitted(schema, data, self._routes(new_schema, new_value, specs, f"{origin} {schema} upcast to",
                                                   True))

    def _specs(self, schema: Any, origin: str) -> tuple[ReducerSpec, ...] | None:
        """The reducers taking ``schema``; None for a schema the manifest upcasts."""
        if not isinstance(schema, str):
            raise UnknownSchemaError(f"{origin}: schema must be a string, got {type(schema).__name__}")
        m = self.manifest
        specs = m.routes.get(schema)
        if specs is None and schema not in m.schemas:
            if schema in m.upcast_chains:
                return None
            raise UnknownSchemaError(
                f"{origin}: unknown schema {schema!r}: no reducer of manifest {m.name} takes it "
                "and the manifest does not declare it")
        return specs or ()

    def _routes(self, schema: str, value: Any, specs: tuple[ReducerSpec, ...], origin: str,
                wide: bool) -> tuple[Route, ...]:
        """The cells an event goes to; ``wide``: its ints may lie outside the signed 64-bit range."""
        if not specs:
            return ()
        routes: list[Route] = []
        for spec in specs:
            if spec.key is None:
                routes.append((spec, None))
                continue
            if not isinstance(value, dict):
                raise MissingKeyFieldError(
                    f"{origin} {schema}: value must be a map with field {spec.key!r} "
                    f"(reducer {spec.name} is keyed by it), got {type(value).__name__}")
            if spec.key not in value:
                raise MissingKeyFieldError(
                    f"{origin} {schema}: missing field {spec.key!r}, which reducer {spec.name} is keyed by")
            key = value[spec.key]
            t = type(key)
            if (t is not str and t is not int and t is not bytes) or (wide and t is int):
                key = normalize_key(key, f"{origin} {schema} field {spec.key!r}")  # (message built only here)
            routes.append((spec, key))
        if self.lane is not None:
            return split_routes(self.lane, tuple(routes), self._lane_of)
        return tuple(routes)


def cell_key(spec: ReducerSpec, key: Any, where: str) -> Any:
    """The key of one of ``spec``'s cells as asked for by a caller (e.g. ``World.state``), checked.

    Raises :class:`CellKeyError` for a keyed reducer without a key or an
    unkeyed one with a key, :class:`InvalidKeyError` for a key of another type.
    """
    if spec.key is not None:
        if key is None:
            raise CellKeyError(f"{where}: reducer {spec.name} is keyed by {spec.key!r}: pass a key")
        return normalize_key(key, where)
    if key is not None:
        raise CellKeyError(f"{where}: reducer {spec.name} is not keyed: pass no key (got {key!r})")
    return None
