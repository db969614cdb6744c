"""The lane world: what a world does as one lane of a fleet (docs/fleet.md, "The lane world").

A lane world (``World.open(..., lane=Lane(lane_id, lanes, home))``) holds
the cells of its lane only. This module has its parts, each plain state the
kernel keeps:

* **routing** (:func:`split_routes`): of an event's routes the world keeps
  those whose cells it holds; when other lanes hold some, the routes come as
  a :class:`LaneRoutes`, a tuple that also names those lanes (``targets``);
* **origins** (:class:`Origins`): ``marks[source]``, the last message number
  admitted from each source (a lane, or the fleet's client), which drops a
  message sent twice and refuses one that skips ahead;
* **outbound messages** (:class:`Outbound`): each event a committed step
  emitted for cells of other lanes, numbered per target lane, held until the
  fleet has moved it and trims it; rebuilt from the journal's
  ``StepCommitted`` records where memory no longer holds them
  (:func:`scan_outbound`);
* **budget grants** (:class:`Grants`): the grants a lane of a fleet got from
  the control plane (its capabilities start at 0) and the cost its intents
  were denied for lack of budget since.

A world without a lane is lane 0 of 1: every route is its own, nothing goes
out, and it writes the bytes it always did.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from aos._core.encoder import record_kind
from aos.lane import CLIENT_SOURCE, Lane, lane_of_key
from aos.records import StepCommitted, decode_record

if TYPE_CHECKING:
    from aos.admission import Admission, Route
    from aos.manifest import Manifest

__all__ = ["event_lanes", "lane_of_meta", "LaneRoutes", "split_routes", "Origins", "Outbound", "Grants",
           "scan_outbound", "Message", "check_source"]

Message = tuple[int, str, bytes]  # (n, schema, canonical bytes of the value)

_KEY_CACHE = 65_536  # keys whose lane is remembered (a cache: the hash is pinned, so any answer is the same)


def event_lanes(manifest: "Manifest", lanes: int, home: int, schema: str, value: Any) -> tuple[int, ...]:
    """The lanes (ascending) of a fleet of ``lanes`` lanes holding a cell the event ``(schema, value)`` goes to.

    Where a fleet sends a client's event; empty for an event no cell takes
    (a declared schema no reducer reads). Raises the admission errors of
    ``World.submit`` for an event no world would admit.
    """
    from aos.admission import Admission

    routes = Admission(manifest).check(schema, value, "submitted event").routes
    lane = Lane(0, lanes, home)
    return tuple(sorted({lane.of(key) for _spec, key in routes}))


def lane_of_meta(meta: Any) -> Lane:
    """The lane ``world.cbor`` names (``lane``: ``{lane_id, lanes, home}``); lane 0 of 1 when it names none."""
    d = meta.get("lane")
    if d is None:
        return Lane()
    if type(d) is not dict or set(d) != {"lane_id", "lanes", "home"}:
        raise ValueError(f"lane must be a map of lane_id, lanes and home, got {d!r}")
    return Lane(d["lane_id"], d["lanes"], d["home"])


class LaneRoutes(tuple):  # type: ignore[type-arg]
    """The routes of an event that this lane's cells take, when other lanes' cells take it too.

    ``targets``: those other lanes, ascending. A plain tuple of routes means
    every cell the event goes to is this lane's (the common case, and every
    event of a world without lanes).
    """

    targets: tuple[int, ...]

    def __new__(cls, routes: Sequence["Route"], targets: tuple[int, ...]) -> "LaneRoutes":
        self = super().__new__(cls, routes)
        self.targets = targets
        return self


def split_routes(lane: Lane, routes: tuple["Route", ...], lane_of: dict[Any, int]) -> tuple["Route", ...]:
    """``routes`` less those of cells other lanes hold (a :class:`LaneRoutes` naming them, if any)."""
    mine = lane.lane_id
    local: list[Route] = []
    targets: set[int] = set()
    for route in routes:
        key = route[1]
        if key is None:
            where = lane.home
        else:
            where = lane_of.get(key, -1)
            if where < 0:
                where = lane_of_key(key, lane.lanes)
                if len(lane_of) >= _KEY_CACHE:
                    lane_of.clear()
                lane_of[key] = where
        if where == mine:
            local.append(route)
        else:
            targets.add(where)
    if not targets:
        return routes
    return LaneRoutes(local, tuple(sorted(targets)))


class Origins:
    """The last message number admitted from each source (``marks``)."""

    __slots__ = ("marks",)

    def __init__(self) -> None:
        self.marks: dict[int, int] = {}

    def export(self) -> list[list[int]]:
        return [[s, n] for s, n in sorted(self.marks.items())]

    def restore(self, rows: Any) -> None:
        for s, n in rows:
            self.marks[s] = n


def check_source(lane: Lane, source: Any) -> None:
    """Raise unless ``source`` may send to a world of ``lane`` (a lane of its fleet, or the fleet's client)."""
    from aos.errors import ArgumentError

    if type(source) is not int or not (0 <= source < lane.lanes or source == CLIENT_SOURCE):
        raise ArgumentError(f"accept: source must be a lane id of the fleet (0..{lane.lanes - 1}) or "
                            f"aos.lane.CLIENT_SOURCE ({CLIENT_SOURCE}), got {source!r}")


class Outbound:
    """The messages committed steps sent to other lanes, per target lane, numbered from 1."""

    __slots__ = ("produced", "held")

    def __init__(self) -> None:
        self.produced: dict[int, int] = {}  # target -> the last n produced
        self.held: dict[int, deque[Message]] = {}  # target -> the messages in memory, contiguous, up to produced

    def send(self, targets: tuple[int, ...], schema: str, value: bytes) -> None:
        """One message per target lane (ascending) for an event a step emitted (the commit's delivery)."""
        produced, held = self.produced, self.held
        for t in targets:
            n = produced.get(t, 0) + 1
            produced[t] = n
            q = held.get(t)
            if q is None:
                q = held[t] = deque()
            q.append((n, schema, value))

    def low(self, target: int) -> int:
        """The first n memory holds for ``target`` (``produced + 1`` when it holds none)."""
        q = self.held.get(target)
        return q[0][0] if q else self.produced.get(target, 0) + 1

    def held_after(self, target: int, after: int, limit: int | None) -> list[Message]:
        q = self.held.get(target)
        if not q:
            return []
        start = max(0, after + 1 - q[0][0])
        stop = len(q) if limit is None else min(len(q), start + limit)
        return [q[i] for i in range(start, stop)]

    def trim(self, target: int, upto: int) -> None:
        q = self.held.get(target)
        while q and q[0][0] <= upto:
            q.popleft()

    def export(self) -> list[list[int]]:
        return [[t, n] for t, n in sorted(self.produced.items())]

    def restore(self, rows: Any) -> None:
        """The counts of a snapshot; the messages before it are in the journal only."""
        for t, n in rows:
            self.produced[t] = n


class Grants:
    """Budget grants (the last grant id per capability) and the cost denied for lack of budget since."""

    __slots__ = ("last", "granted", "wants")

    def __init__(self) -> None:
        self.last: dict[str, int] = {}  # cap -> the last grant id
        self.granted: dict[str, int] = {}  # cap -> the sum of its grants
        self.wants: dict[str, int] = {}  # cap -> cost denied since its last grant (not journaled)

    def export(self) -> list[list[Any]]:
        return [[cap, self.granted[cap], self.last[cap]] for cap in sorted(self.last)]

    def restore(self, rows: Any) -> None:
        for cap, amount, last in rows:
            self.granted[cap] = amount
            self.last[cap] = last


def scan_outbound(journal: Path, eras: Sequence[bytes] | bytes | None, admission: "Admission", target: int,
                  after: int, below: int) -> list[Message]:
    """The messages ``n`` with ``after < n < below`` to ``target``, re-made from the journal's ``StepCommitted``.

    Each emitted event is routed again (routing is a pure function of the
    event and the lane), numbered per target in journal order, as the
    commits numbered them.
    """
    from aos.journal import JournalReader

    out: list[Message] = []
    n = 0
    if below - after <= 1:
        return out
    for _segment, _first, frames in JournalReader(journal, eras).batches():
        for _at, payload, _chain in frames:
            if record_kind(payload) != "StepCommitted":
                continue
            rec = decode_record(payload, "journaled step")
            assert isinstance(rec, StepCommitted)
            for emit in rec.emits:
                routes = admission.check_encoded(emit.schema, emit.value, "journaled emitted event").routes
                if type(routes) is tuple or target not in routes.targets:  # type: ignore[attr-defined]
                    continue
                n += 1
                if n > after:
                    out.append((n, emit.schema, emit.value))
                    if n + 1 >= below:
                        return out
    return out
