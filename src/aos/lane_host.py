"""The lane host: one lane of a fleet, where it runs, and the backend protocol that hosts lanes.

A fleet (:mod:`aos.fleet`) drives its lanes through a *backend*: the
``"local"`` one (:mod:`aos.fleet_local`) runs each lane in a process of its
own on this machine, the ``"ray"`` one each lane in a Ray actor. Whatever
the backend, a lane runs as a :class:`LaneHost` — it opens the lane's world
(creating it if missing) from a :class:`LaneSpec` — and the fleet calls the
host's methods by name through :meth:`LaneBackend.call`. Every method takes
and returns plain picklable values (ints, strings, bytes, lists, tuples,
dicts), so a backend can move them over a pipe or an RPC.

Every method is safe to repeat: a backend whose host died restarts it (the
world reopens from its journal) and calls the method again, and the result
is as if it had run once — a message or a client event admitted twice is
dropped by the lane's marks, a grant given twice by its id.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, cast, runtime_checkable

from aos.errors import ArgumentError, FleetError
from aos.lane import Lane
from aos.manifest import Manifest

if TYPE_CHECKING:
    from aos.world import World

__all__ = ["LaneSpec", "LaneHost", "LaneBackend", "load_manifest", "Message", "HOST_METHODS"]

#: One message to a lane: (n, schema, canonical bytes of the value); n counts from 1 per source.
Message = tuple[int, str, bytes]


def _copies(messages: list[Message]) -> list[Message]:
    """Each message as a tuple of its own."""
    return [cast(Message, tuple(m)) for m in messages]  # (tuple() of a Message keeps its item types)


#: The methods of :class:`LaneHost` a backend may call.
HOST_METHODS = frozenset({
    "info", "accept_batch", "run", "cycle", "state", "cells", "iter_states", "snapshot_hash", "outbound",
    "outbound_marks", "trim", "marks", "snapshot", "grant", "grant_batch", "wants", "budget", "metrics", "sync",
    "close",
})


def load_manifest(ref: str) -> Manifest:
    """The manifest that ``"module:attribute"`` names: a :class:`Manifest`, or a callable returning one.

    Raises :class:`ArgumentError` for a reference of another form, one that
    does not import, or one that names something else.
    """
    if not isinstance(ref, str):
        raise ArgumentError(f"manifest must be given by reference, 'module:attribute', got {type(ref).__name__}")
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ArgumentError(f"manifest reference must be 'module:attribute', got {ref!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ArgumentError(f"manifest {ref}: cannot load it: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, Manifest) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise ArgumentError(f"manifest {ref}: building it raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Manifest):
        raise ArgumentError(f"manifest {ref} is a {type(obj).__name__}, not an aos.Manifest "
                            "(or a callable returning one)")
    return obj


@dataclass(frozen=True)
class LaneSpec:
    """What a host needs to run one lane: where its world is, which lane it is, the manifest, options."""

    path: str                 # the lane's world directory
    lane: Lane
    manifest: str             # "module:attribute"
    options: dict[str, Any] = field(default_factory=dict)  # World.open keyword options
    sys_path: tuple[str, ...] = ()  # entries put in front of sys.path before the manifest is imported


class LaneHost:
    """Runs where the lane runs: opens (creating it if missing) the lane's world and answers the fleet.

    The methods, all taking and returning plain picklable values:

    * ``info()``: lane id, lanes, home, path, era, last event id, marks, outbound marks.
    * ``accept_batch(source, messages)``: admit ``messages`` (``(n, schema, data)``, n increasing)
      from ``source`` (a lane id or :data:`aos.lane.CLIENT_SOURCE`); duplicates are dropped; durable
      on return. Returns how many were admitted.
    * ``run(max_steps=None)``: run the world until quiet; returns a summary (steps, ...).
    * ``cycle(inbox, trims, after, max_steps=None)``: one round of a fleet's run in one call: admit
      ``inbox`` (``{source: [messages]}``), trim what targets hold (``{target: upto}``), run, and
      return the summary with the outbound messages after ``after`` (``{target: n}``) and the marks.
    * ``state(reducer, key)``, ``cells(reducer)``, ``iter_states()``, ``snapshot_hash()``.
    * ``outbound(target, after, limit)``, ``outbound_marks()``, ``trim(target, upto)``, ``marks()``.
    * ``snapshot()``: write a snapshot; returns its hash, file name and event id.
    * ``grant(cap, amount, grant)``, ``grant_batch(grants)``, ``wants()``, ``budget(cap)``.
    * ``metrics()``, ``sync()``, ``close()``.
    """

    LOCK_WAIT = 30.0

    def __init__(self, spec: LaneSpec) -> None:
        for entry in reversed(spec.sys_path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        from aos.world import World

        self.spec = spec
        self.manifest = load_manifest(spec.manifest)
        options = dict(spec.options)
        if spec.lane != Lane():
            options["lane"] = spec.lane
        self.world = self._open(World, options)
        self.lane = spec.lane
        self._opened = time.monotonic()
        self._steps = 0
        self._run_seconds = 0.0
        self._accepted = 0
        self._duplicates = 0
        self._sent = 0

    def _open(self, world: type[World], options: dict[str, Any]) -> World:
        """Open the lane's world; while it is locked, wait (up to :attr:`LOCK_WAIT` s) for its holder to go.

        After a crash of the fleet's process, the hosts it leaves behind
        close their worlds as they notice, and a host restarted while its
        predecessor still exits finds the lock held for a moment.
        """
        from aos.errors import WorldLockedError

        deadline = time.monotonic() + self.LOCK_WAIT
        while True:
            try:
                return world.open(self.spec.path, self.manifest, **options)
            except WorldLockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    # ------------------------------------------------------------ inputs
    def accept_batch(self, source: int, messages: Sequence[Message]) -> int:
        """Admit ``messages`` from ``source`` in order; returns how many were new. Durable on return."""
        admitted = self._accept(source, messages)
        self.world.sync()  # also when all were repeats: an earlier, interrupted call's may not be synced yet
        return admitted

    def _accept(self, source: int, messages: Sequence[Message]) -> int:
        accept = self.world.accept
        admitted = 0
        for n, schema, data in messages:
            if accept(source, n, schema, data=data):
                admitted += 1
        self._accepted += admitted
        self._duplicates += len(messages) - admitted
        return admitted

    def grant(self, cap: str, amount: int, grant: int) -> bool:
        """Add ``amount`` to the lane's budget of ``cap`` (grant id ``grant``; a repeat is a no-op). Durable."""
        done = bool(self.world.grant(cap, amount, grant))
        self.world.sync()
        return done

    def grant_batch(self, grants: Sequence[tuple[str, int, int]]) -> int:
        """Apply ``grants`` (``(cap, amount, grant)``) in order; how many were new. Durable on return."""
        done = sum(1 for cap, amount, grant in grants if self.world.grant(cap, amount, grant))
        self.world.sync()
        return done

    # ------------------------------------------------------------ running
    def run(self, max_steps: int | None = None) -> dict[str, Any]:
        """Run until no step is ready (or ``max_steps``); everything is synced on return."""
        t0 = time.perf_counter()
        r = self.world.run(max_steps)
        self._run_seconds += time.perf_counter() - t0
        self._steps += r.steps
        return {"steps": r.steps, "failed": r.failed, "last_event_id": self.world.last_event_id}

    def cycle(self, inbox: Mapping[int, Sequence[Message]], trims: Mapping[int, int],
              after: Mapping[int, int], max_steps: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """Admit ``inbox``, trim, run, and report what went out (after ``after``) — one round trip.

        What was admitted is durable on return (``World.run`` syncs everything).
        """
        for source in sorted(inbox):
            self._accept(source, inbox[source])
        for target, upto in trims.items():
            self.world.trim_outbound(target, upto)
        out = self.run(max_steps)
        marks = self.world.outbound_marks()
        msgs: dict[int, list[Message]] = {}
        for target, n in marks.items():
            if n > after.get(target, 0):
                msgs[target] = _copies(self.world.outbound(target, after.get(target, 0), limit))
                self._sent += len(msgs[target])
        out["outbound"] = msgs
        out["outbound_marks"] = dict(marks)
        out["marks"] = dict(self.world.marks())
        out["wants"] = dict(self.world.budget_wants())
        out["queued"] = self.world.stats["queued"]
        return out

    # ------------------------------------------------------------ cross-lane
    def outbound(self, target: int, after: int, limit: int | None = None) -> list[Message]:
        return _copies(self.world.outbound(target, after, limit))

    def outbound_marks(self) -> dict[int, int]:
        return dict(self.world.outbound_marks())

    def trim(self, target: int, upto: int) -> None:
        self.world.trim_outbound(target, upto)

    def marks(self) -> dict[int, int]:
        return dict(self.world.marks())

    def wants(self) -> dict[str, int]:
        return dict(self.world.budget_wants())

    # ------------------------------------------------------------ reading
    def info(self) -> dict[str, Any]:
        w = self.world
        return {"lane": self.lane.describe(), "path": str(w.path), "era": w.era,
                "last_event_id": w.last_event_id, "marks": self.marks(), "outbound_marks": self.outbound_marks()}

    def state(self, reducer: str, key: Any = None) -> Any:
        return self.world.state(reducer, key)

    def cells(self, reducer: str | None = None) -> list[tuple[str, Any]]:
        return list(self.world.cells(reducer))

    def iter_states(self) -> list[tuple[str, Any, Any]]:
        return list(self.world.iter_states())

    def snapshot_hash(self) -> str:
        return self.world.snapshot_hash()

    def budget(self, cap: str) -> dict[str, int]:
        b = self.world.budget(cap)
        return {"budget": b.budget, "reserved": b.reserved, "spent": b.spent, "remaining": b.remaining}

    def metrics(self) -> dict[str, Any]:
        st = self.world.stats
        secs = self._run_seconds
        return {"lane": self.lane.lane_id, "steps": self._steps, "run_seconds": secs,
                "steps_per_s": self._steps / secs if secs > 0 else 0.0, "queue_depth": st["queued"],
                "accepted": self._accepted, "duplicates": self._duplicates, "sent": self._sent,
                "event_id": st["event_id"], "cells": st["cells"], "uptime": time.monotonic() - self._opened}

    # ------------------------------------------------------------ durability
    def snapshot(self) -> dict[str, Any]:
        info = self.world.snapshot()
        return {"hash": info.snapshot_hash, "file": info.path.name, "event_id": self.world.last_event_id}

    def sync(self) -> None:
        self.world.sync()

    def close(self) -> None:
        self.world.close()

    def call(self, method: str, args: Sequence[Any]) -> Any:
        """``self.<method>(*args)`` for a method of :data:`HOST_METHODS` (what a backend dispatches)."""
        if method not in HOST_METHODS:
            raise FleetError(f"lane {self.lane.lane_id}: no lane host method {method!r}", lane=self.lane.lane_id)
        return getattr(self, method)(*args)


@runtime_checkable
class LaneBackend(Protocol):
    """Hosts a fleet's lanes (one :class:`LaneHost` each) and calls their methods.

    ``start`` opens every lane (raising :class:`~aos.errors.LaneUnavailableError`
    with ``lane=i`` if lane i cannot open); ``call`` runs
    ``LaneHost.<method>(*args)`` on a lane and returns its result — if the
    host died, the backend restarts it (it reopens its world from the
    journal) and calls again, raising ``LaneUnavailableError`` only when
    the lane cannot be brought back; an error the method itself raised is
    raised as it is. ``call_many`` makes calls on several lanes at once.
    ``kill`` SIGKILLs a lane's host (for tests and chaos); the next call
    restarts it.
    """

    def start(self, specs: Sequence[LaneSpec]) -> None: ...

    def call(self, lane: int, method: str, *args: Any) -> Any: ...

    def call_many(self, calls: Mapping[int, tuple[str, tuple[Any, ...]]]) -> dict[int, Any]: ...

    def kill(self, lane: int) -> None: ...

    def close(self) -> None: ...
