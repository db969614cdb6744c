"""The fleet: a keyspace split into lanes, each a full world, driven as one (docs/fleet.md).

Directory layout::

    <fleet>/fleet.cbor      format, lanes, home lane, manifest (reference, name, era, description), backend
    <fleet>/fleet.lock      held (flock) while a Fleet has the fleet open
    <fleet>/grants.log      the control plane's journal of budget grants (aos.control_plane)
    <fleet>/submits.log     client events journaled before they are sent to their lanes
    <fleet>/lanes/000/      lane 0's world, lanes/001/ lane 1's, ...

A keyed cell lives in the lane :func:`aos.lane.lane_of_key` names, a
non-keyed one in the home lane. ``submit`` admits an event (as
``World.accept`` from the client source, numbered per lane) in every lane
holding one of its cells; ``run`` runs the lanes at once, moving the
cross-lane messages each one's steps emit to their target lane, until every
lane is quiet and no message is in flight. Lanes run in the processes (or
machines) of a backend (:mod:`aos.lane_host`): ``"local"``, one process per
lane on this machine (:mod:`aos.fleet_local`), or ``"ray"`` (:mod:`aos.fleet_ray`).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from aos import canonical
from aos.admission import Admission, Admitted, cell_key
from aos.control_plane import ControlPlane, Grant
from aos.errors import (
    AosError,
    ArgumentError,
    FleetClosedError,
    FleetError,
    IdempotencyKeyError,
    StorageError,
    WorldLockedError,
    WorldNotFoundError,
)
from aos.files import fsync_dir, write_atomic
from aos.fleet_log import append_log, cut_log, read_log
from aos.lane import CLIENT_SOURCE, MAX_LANES, Lane
from aos.lane_host import LaneBackend, LaneSpec, Message, load_manifest
from aos.manifest import Manifest, check_compatible

__all__ = ["Fleet", "FleetRunResult", "FleetSnapshot", "FleetReplay", "LaneSnapshot", "replay_fleet",
           "read_fleet_meta", "lane_path", "FLEET_META"]

FLEET_FORMAT = 1
FLEET_META = "fleet.cbor"
FLEET_LOCK = "fleet.lock"
SUBMITS = "submits.log"
SUBMITS_CUT = 1 << 20  # the submits log is emptied once longer than this and every event in it was sent
LANES_DIR = "lanes"
BATCH = 5000  # client events or messages per call to a lane
RESERVED_OPTIONS = frozenset({"lane", "create"})


def lane_path(fleet: str | os.PathLike[str], lane: int) -> Path:
    """The world directory of lane ``lane`` of the fleet at ``fleet``."""
    return Path(fleet) / LANES_DIR / f"{lane:03d}"


def read_fleet_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The fleet's metadata (``fleet.cbor``), checked; :class:`WorldNotFoundError` where there is no fleet."""
    p = Path(path) / FLEET_META
    if not p.is_file():
        raise WorldNotFoundError(f"no fleet at {path} ({FLEET_META} is missing)")
    try:
        meta = canonical.decode(p.read_bytes(), str(p))
        if not isinstance(meta, dict) or meta.get("format") != FLEET_FORMAT:
            raise ValueError(f"unknown fleet format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        lanes, home = meta["lanes"], meta["home"]
        if type(lanes) is not int or not 1 <= lanes <= MAX_LANES or type(home) is not int or not 0 <= home < lanes:
            raise ValueError(f"lanes {lanes!r} / home {home!r} out of range")
        for name in ("manifest", "manifest_name", "era", "backend"):
            if type(meta[name]) is not str:
                raise ValueError(f"{name} must be a string, got {meta[name]!r}")
        if not isinstance(meta["description"], dict):
            raise ValueError("the manifest description is not a map")
    except (AosError, KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"{p}: malformed fleet metadata: {exc}") from None
    return meta


def _lock(path: Path) -> int:
    import fcntl

    fd = os.open(path / FLEET_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorldLockedError(f"fleet {path} is open elsewhere ({FLEET_LOCK} is held)") from None
    return fd


def _backend(backend: str | LaneBackend) -> LaneBackend:
    if backend == "local":
        from aos.fleet_local import LocalBackend

        return LocalBackend()
    if backend == "ray":
        from aos.fleet_ray import RayBackend  # (imports Ray itself: a FleetError naming the extra without it)

        return RayBackend()
    if isinstance(backend, str):
        raise ArgumentError(f"backend must be 'local', 'ray' or a LaneBackend, got {backend!r}")
    if not isinstance(backend, LaneBackend):
        raise ArgumentError(f"backend must be 'local', 'ray' or a LaneBackend, got {type(backend).__name__}")
    return backend


def _backend_name(backend: str | LaneBackend) -> str:
    return backend if isinstance(backend, str) else str(getattr(backend, "name", type(backend).__name__))


def _submit_record(path: Path, record: list[Any], lanes: int) -> tuple[str, bytes, list[int]]:
    """A record of ``submits.log`` checked: ``[schema, data, [lane, n, lane, n, ...]]``."""
    ok = len(record) == 3 and type(record[0]) is str and type(record[1]) is bytes and type(record[2]) is list
    targets = record[2] if ok else []
    if not ok or len(targets) % 2 or not all(type(x) is int and x >= 0 for x in targets) or any(
            lane >= lanes for lane in targets[::2]):
        raise StorageError(f"{path}: malformed submit record {record!r}")
    return record[0], record[1], targets


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class FleetRunResult:
    """What a :meth:`Fleet.run` did: rounds of the lanes, steps per lane, cross-lane messages moved."""

    rounds: int
    steps: int
    failed: int
    messages: int
    grants: int
    seconds: float
    lane_steps: tuple[int, ...] = ()


@dataclass(frozen=True)
class LaneSnapshot:
    """One lane's part of a fleet snapshot: its snapshot's cell hash (hex), file and last ticket."""

    lane: int
    hash: str
    file: str
    event_id: int


@dataclass(frozen=True)
class FleetSnapshot:
    """A consistent cut of a fleet: ``hash`` is BLAKE3 over the lanes' snapshot hashes, in lane order."""

    hash: str
    lanes: tuple[LaneSnapshot, ...]


@dataclass(frozen=True)
class FleetReplay:
    """Every lane of a fleet replayed from its journal: the fleet hash and each lane's hash (hex)."""

    hash: str
    lanes: tuple[str, ...]


def fleet_hash(lane_hashes: Sequence[str]) -> str:
    """BLAKE3 (hex) over the lanes' cell hashes (each 32 bytes), in lane order."""
    return canonical.digest(b"".join(bytes.fromhex(h) for h in lane_hashes)).hex()


@dataclass
class _Flow:
    """The fleet's view of the messages between lanes (kept in memory; rebuilt from the lanes' marks on open)."""

    lanes: int
    after: list[dict[int, int]] = field(default_factory=list)     # after[s][t]: last n fetched from s for t
    inbox: list[dict[int, list[Message]]] = field(default_factory=list)  # inbox[t][s]: fetched, not yet accepted
    trimmed: list[dict[int, int]] = field(default_factory=list)   # trimmed[s][t]: what s was told to let go
    marks: list[dict[int, int]] = field(default_factory=list)     # marks[t][s]: what t admitted from s
    produced: list[dict[int, int]] = field(default_factory=list)  # produced[s][t]: s's outbound marks

    def __post_init__(self) -> None:
        k = self.lanes
        self.after = [{} for _ in range(k)]
        self.inbox = [{} for _ in range(k)]
        self.trimmed = [{} for _ in range(k)]
        self.marks = [{} for _ in range(k)]
        self.produced = [{} for _ in range(k)]

    def in_flight(self, target: int) -> int:
        """Messages to ``target`` produced by their source and not yet admitted by it (as far as known)."""
        return sum(max(0, self.produced[s].get(target, 0) - self.marks[target].get(s, 0))
                   for s in range(self.lanes) if s != target)

    def waiting(self) -> bool:
        """Whether any message is fetched and not delivered, or produced and not fetched."""
        return any(self.inbox[t] for t in range(self.lanes)) or any(
            n > self.after[s].get(t, 0) for s in range(self.lanes) for t, n in self.produced[s].items())


# ---------------------------------------------------------------- the fleet
class Fleet:
    """K lanes, each a world of its own in a process (or machine) of its own, driven as one.

    Open one with :meth:`Fleet.open`. The manifest is given by reference,
    ``"module:attribute"`` (a :class:`~aos.Manifest` or a callable returning
    one), for the lanes' processes to import. A Fleet is safe to use from
    several threads: calls are served one at a time.
    """

    def __init__(self, path: Path, meta: dict[str, Any], manifest: Manifest, backend: LaneBackend,
                 lock_fd: int) -> None:
        self.path = path
        self.meta = meta
        self.manifest = manifest
        self.lanes: int = meta["lanes"]
        self.home: int = meta["home"]
        self.backend = backend
        self._lane = Lane(0, self.lanes, self.home)
        self._admission = Admission(manifest)
        self._lock_fd = lock_fd
        self._lock = threading.RLock()
        self._closed: str | None = None
        self._client_n = [0] * self.lanes
        self._pending: list[list[Message]] = [[] for _ in range(self.lanes)]
        self._flow = _Flow(self.lanes)
        self._plane = ControlPlane(path, {n: c.budget for n, c in manifest.capabilities.items()}, self.lanes)
        self._rounds = 0
        self._moved = 0

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], manifest: str, *, lanes: int | None = None,
             backend: str | LaneBackend | None = None, home: int | None = None, create: bool = True,
             **world_options: Any) -> "Fleet":
        """Create or open the fleet at ``path``.

        ``manifest``: ``"module:attribute"`` naming the manifest. ``lanes``:
        the lane count (fixed at creation, default 1; reopening with another
        is refused with :class:`FleetError`; None: as stored). ``home``: the
        lane of the non-keyed cells (fixed at creation, default 0).
        ``backend``: ``"local"`` (the default at creation), ``"ray"`` or a
        :class:`~aos.lane_host.LaneBackend` object; None: as stored.
        ``world_options`` are passed to each lane's ``World.open``
        (``durability``, ``snapshot_every``, ``window``, ...).

        Raises :class:`LaneUnavailableError` naming the lane when a lane
        cannot be opened (nothing stays running).
        """
        if not isinstance(manifest, str):
            raise ArgumentError("Fleet.open takes the manifest by reference, 'module:attribute' (its lanes' "
                                f"processes import it), got a {type(manifest).__name__}")
        bad = RESERVED_OPTIONS.intersection(world_options)
        if bad:
            raise ArgumentError(f"Fleet.open: {', '.join(sorted(bad))} is set by the fleet for each lane")
        for name, value in (("lanes", lanes), ("home", home)):
            if value is not None and (type(value) is not int or value < 0):
                raise ArgumentError(f"Fleet.open: {name} must be an int, got {value!r}")
        m = load_manifest(manifest)
        p = Path(path)
        exists = (p / FLEET_META).is_file()
        if not exists:
            if not create:
                raise WorldNotFoundError(f"no fleet at {p} ({FLEET_META} is missing) and create=False")
            leftovers = {FLEET_LOCK, FLEET_META + ".tmp", LANES_DIR}
            if p.exists() and (not p.is_dir() or any(c.name not in leftovers for c in p.iterdir())):
                raise StorageError(f"{p} exists and is not an aos fleet (no {FLEET_META}); refusing to use it")
            p.mkdir(parents=True, exist_ok=True)
        fd = _lock(p)
        try:
            if exists:
                meta = read_fleet_meta(p)
                if lanes is not None and lanes != meta["lanes"]:
                    raise FleetError(f"fleet {p} has {meta['lanes']} lanes (fixed when it was created); "
                                     f"it cannot be opened with lanes={lanes}")
                if home is not None and home != meta["home"]:
                    raise FleetError(f"fleet {p} has home lane {meta['home']} (fixed when it was created); "
                                     f"it cannot be opened with home={home}")
                check_compatible(meta["description"], m, p)
                meta = dict(meta, manifest=manifest)
            else:
                k = 1 if lanes is None else lanes
                Lane(0, k, 0 if home is None else home)  # checks the ranges (ArgumentError)
                meta = {"format": FLEET_FORMAT, "lanes": k, "home": 0 if home is None else home,
                        "manifest": manifest, "manifest_name": m.name, "era": m.era.hex(),
                        "description": m.describe(), "backend": _backend_name(backend or "local")}
            chosen = backend if backend is not None else meta["backend"]
            b = _backend(chosen)
            specs = [LaneSpec(str(lane_path(p, i)), Lane(i, meta["lanes"], meta["home"]), manifest,
                              dict(world_options, create=not exists)) for i in range(meta["lanes"])]
            if not exists:
                (p / LANES_DIR).mkdir(exist_ok=True)
            b.start(specs)
            try:
                if not exists:  # the lanes exist: now the fleet does
                    write_atomic(p / FLEET_META, canonical.encode(meta, where="fleet metadata"))
                    fsync_dir(p)
                fleet = cls(p, meta, m, b, fd)
                fleet._recover()
            except BaseException:
                b.close()
                raise
        except BaseException:
            os.close(fd)
            raise
        return fleet

    def _recover(self) -> None:
        """Learn each lane's marks (client numbering, messages admitted) and send it its grants."""
        infos = self.backend.call_many({i: ("info", ()) for i in range(self.lanes)})
        f = self._flow
        for t in range(self.lanes):
            marks = {int(s): n for s, n in infos[t]["marks"].items()}
            self._client_n[t] = marks.get(CLIENT_SOURCE, 0)
            f.marks[t] = marks
            f.produced[t] = {int(x): n for x, n in infos[t]["outbound_marks"].items()}
        for s in range(self.lanes):
            for t in range(self.lanes):
                if t != s:
                    f.after[s][t] = f.marks[t].get(s, 0)
                    f.trimmed[s][t] = 0
        records, intact = read_log(self.path / SUBMITS)
        cut_log(self.path / SUBMITS, intact)  # a torn last record: an event never sent
        for record in records:  # events journaled here, maybe not sent to every lane: again
            schema, data, targets = _submit_record(self.path / SUBMITS, record, self.lanes)
            for lane, n in zip(targets[::2], targets[1::2], strict=True):
                if n > self._client_n[lane]:
                    self._pending[lane].append((n, schema, data))
        for lane in range(self.lanes):
            if self._pending[lane]:
                self._client_n[lane] = self._pending[lane][-1][0]
        self._flush(range(self.lanes))
        if self._plane.active:
            self._plane.initial()
            self._send_grants({i: self._plane.for_lane(i) for i in range(self.lanes)})

    def _send_grants(self, grants: dict[int, list[Grant]]) -> None:
        calls = {i: ("grant_batch", ([(g.cap, g.amount, g.grant) for g in gs],)) for i, gs in grants.items() if gs}
        if calls:
            self.backend.call_many(calls)

    # ------------------------------------------------------------ inputs
    def _live(self) -> None:
        if self._closed is not None:
            raise FleetClosedError(f"fleet {self.path} {self._closed}")

    def _lanes_of(self, adm: Admitted) -> list[int]:
        """The lanes holding a cell the event goes to (the home lane for an event no reducer takes)."""
        lanes = {self._lane.of(key) for _spec, key in adm.routes}
        return sorted(lanes) if lanes else [self.home]

    def submit(self, schema: str, value: Any, *, idempotency_key: str | None = None) -> None:
        """Admit an event in every lane holding one of its cells; durable there when this returns.

        Raises the typed admission errors of ``World.submit`` (nothing
        sent), :class:`FleetClosedError` on a closed fleet, and
        :class:`LaneUnavailableError` when a lane cannot be reached — the
        event is then kept and sent again (admitted once) by the next call,
        or by the next open of the fleet if this process ends first.

        ``idempotency_key`` is not taken (:class:`IdempotencyKeyError` for
        any key): a fleet numbers its client's events itself (docs/fleet.md);
        deduplicate retries before calling, or submit to a single world.
        """
        if idempotency_key is not None:
            raise IdempotencyKeyError(f"Fleet.submit of {schema!r}: a fleet takes no idempotency_key (it numbers "
                                      "its client's events itself); nothing was sent")
        self._live()
        self._submit([self._admission.check(schema, value)])

    def submit_many(self, events: Iterable[tuple[str, Any]]) -> int:
        """Submit ``(schema, value)`` pairs in order, batched per lane; returns how many. Durable on return.

        Every event is checked before any is sent: a bad one raises its typed
        error and none of them is admitted.
        """
        self._live()
        checked = [self._admission.check(schema, value) for schema, value in events]
        self._submit(checked)
        return len(checked)

    def _submit(self, checked: list[Admitted]) -> None:
        """Number the events per lane, journal them in ``submits.log``, send them."""
        with self._lock:
            self._live()
            touched: set[int] = set()
            records = []
            for adm in checked:
                targets: list[int] = []
                for lane in self._lanes_of(adm):
                    self._client_n[lane] += 1
                    self._pending[lane].append((self._client_n[lane], adm.schema, adm.value))
                    targets += (lane, self._client_n[lane])
                    touched.add(lane)
                records.append([adm.schema, adm.value, targets])
            # Journaled before anything is sent: an event whose submit was cut short by a crash of this
            # process reaches every one of its lanes, or none, when the fleet is next opened.
            append_log(self.path / SUBMITS, records)
            self._flush(sorted(touched))

    def _flush(self, lanes: Iterable[int]) -> None:
        """Send the client events waiting for ``lanes`` (all of them, in order; repeats are dropped there)."""
        waiting = [i for i in lanes if self._pending[i]]
        while waiting:
            calls = {i: ("accept_batch", (CLIENT_SOURCE, self._pending[i][:BATCH])) for i in waiting}
            self.backend.call_many(calls)
            for i in waiting:
                del self._pending[i][:BATCH]
            waiting = [i for i in waiting if self._pending[i]]
        log = self.path / SUBMITS
        if not any(self._pending) and log.exists() and log.stat().st_size > SUBMITS_CUT:
            cut_log(log, 0)  # every event in it reached its lanes

    # ------------------------------------------------------------ running
    def run(self, max_rounds: int | None = None) -> FleetRunResult:
        """Run every lane until all are quiet and no cross-lane message is in flight (or ``max_rounds``).

        Each round, every lane at once: admits the messages fetched for it,
        lets go of those its targets hold, runs until quiet and reports what
        it sent. A lane whose host dies is restarted by the backend (its world
        reopens from its journal) and the round goes on.
        """
        self._live()
        if max_rounds is not None and (type(max_rounds) is not int or max_rounds < 1):
            raise ArgumentError(f"Fleet.run: max_rounds must be an int >= 1, got {max_rounds!r}")
        with self._lock:
            self._live()
            return self._run(max_rounds)

    def _run(self, max_rounds: int | None) -> FleetRunResult:
        t0 = time.perf_counter()
        self._flush(range(self.lanes))
        f = self._flow
        k = self.lanes
        rounds = steps = failed = moved = granted = 0
        lane_steps = [0] * k
        while True:
            calls: dict[int, tuple[str, tuple[Any, ...]]] = {}
            for i in range(k):
                inbox = {s: ms[:BATCH] for s, ms in f.inbox[i].items()}
                trims = {t: n for t in range(k) if t != i and (n := f.marks[t].get(i, 0)) > f.trimmed[i].get(t, 0)}
                calls[i] = ("cycle", (inbox, trims, dict(f.after[i]), None, BATCH))
            results = self.backend.call_many(calls)
            rounds += 1
            delivered = 0
            for i in range(k):
                inbox, trims = calls[i][1][0], calls[i][1][1]
                for s, ms in inbox.items():
                    delivered += len(ms)
                    rest = f.inbox[i][s][len(ms):]
                    if rest:
                        f.inbox[i][s] = rest
                    else:
                        del f.inbox[i][s]
                f.trimmed[i].update(trims)
            ran = 0
            wants: dict[int, dict[str, int]] = {}
            for i in range(k):
                r = results[i]
                ran += r["steps"]
                lane_steps[i] += r["steps"]
                failed += r["failed"]
                f.marks[i] = {int(s): n for s, n in r["marks"].items()}
                f.produced[i] = {int(t): n for t, n in r["outbound_marks"].items()}
                for t, ms in r["outbound"].items():
                    t = int(t)
                    fresh = [m for m in ms if m[0] > f.after[i].get(t, 0)]
                    if fresh:
                        f.inbox[t].setdefault(i, []).extend(fresh)
                        f.after[i][t] = fresh[-1][0]
                if r["wants"]:
                    wants[i] = r["wants"]
            steps += ran
            moved += delivered
            if wants:
                new = self._plane.top_up(wants)
                if new:
                    granted += len(new)
                    by_lane: dict[int, list[Grant]] = {}
                    for g in new:
                        by_lane.setdefault(g.lane, []).append(g)
                    self._send_grants(by_lane)
            self._rounds += 1
            self._moved += delivered
            if not ran and not delivered and not f.waiting():
                break
            if max_rounds is not None and rounds >= max_rounds:
                break
        return FleetRunResult(rounds, steps, failed, moved, granted, time.perf_counter() - t0, tuple(lane_steps))

    # ------------------------------------------------------------ reading
    def lane_of(self, reducer: str, key: Any = None) -> int:
        """The lane holding cell (reducer, key)."""
        spec = self.manifest.get(reducer)
        k = cell_key(spec, key, f"Fleet: cell of {reducer}")
        return self._lane.of(k)

    def state(self, reducer: str, key: Any = None) -> Any:
        """The committed state of cell (reducer, key), read from the lane holding it; None if it has none."""
        self._live()
        spec = self.manifest.get(reducer)
        k = cell_key(spec, key, f"Fleet.state {reducer}")
        with self._lock:
            return self.backend.call(self._lane.of(k), "state", reducer, k)

    def cells(self, reducer: str | None = None) -> list[tuple[str, Any]]:
        """Live cells of every lane as (reducer, key), in canonical order (as ``World.cells``)."""
        self._live()
        if reducer is not None:
            self.manifest.get(reducer)
        with self._lock:
            got = self.backend.call_many({i: ("cells", (reducer,)) for i in range(self.lanes)})
        cells = [(name, key) for i in range(self.lanes) for name, key in got[i]]
        cells.sort(key=lambda c: canonical.encode([c[0], c[1]]))
        return cells

    def iter_states(self) -> Iterator[tuple[str, Any, Any]]:
        """(reducer, key, state) of every live cell, lane by lane (each lane's in cell-creation order)."""
        self._live()
        for i in range(self.lanes):
            with self._lock:
                states = self.backend.call(i, "iter_states")
            yield from (tuple(s) for s in states)

    def __iter__(self) -> Iterator[tuple[str, Any, Any]]:
        return self.iter_states()

    def budget(self, cap: str) -> dict[str, int]:
        """Capability ``cap`` across the fleet: the global budget, what was granted and what the lanes spent."""
        self._live()
        if cap not in self._plane.budgets:
            raise ArgumentError(f"Fleet.budget: manifest {self.manifest.name} has no capability {cap!r}")
        with self._lock:
            views = self.backend.call_many({i: ("budget", (cap,)) for i in range(self.lanes)})
        return {"budget": self._plane.budgets[cap],
                "granted": self._plane.granted(cap) if self._plane.active else self._plane.budgets[cap],
                "reserved": sum(v["reserved"] for v in views.values()),
                "spent": sum(v["spent"] for v in views.values()),
                "lanes": [views[i] for i in range(self.lanes)]}

    def metrics(self) -> dict[str, Any]:
        """Per lane: steps, steps/s, queue depth, cross-lane messages in flight to it; and fleet totals."""
        self._live()
        with self._lock:
            got = self.backend.call_many({i: ("metrics", ()) for i in range(self.lanes)})
            lanes = []
            for i in range(self.lanes):
                m = dict(got[i])
                m["in_flight"] = self._flow.in_flight(i)
                m["pending_submits"] = len(self._pending[i])
                lanes.append(m)
            return {"lanes": lanes, "rounds": self._rounds, "messages": self._moved,
                    "in_flight": sum(m["in_flight"] for m in lanes),
                    "restarts": getattr(self.backend, "restarted", None)}

    # ------------------------------------------------------------ snapshots
    def snapshot(self) -> FleetSnapshot:
        """A consistent cut: intake paused, messages drained (the fleet runs until quiet), every lane snapshotted.

        ``hash`` is BLAKE3 over the lanes' snapshot hashes in lane order —
        what :func:`replay_fleet` computes from the journals.
        """
        self._live()
        with self._lock:  # no submit gets in until the cut is taken
            self._live()
            self._run(None)
            got = self.backend.call_many({i: ("snapshot", ()) for i in range(self.lanes)})
        lanes = tuple(LaneSnapshot(i, got[i]["hash"], got[i]["file"], got[i]["event_id"]) for i in range(self.lanes))
        return FleetSnapshot(fleet_hash([s.hash for s in lanes]), lanes)

    def snapshot_hash(self) -> str:
        """BLAKE3 over the lanes' current cell hashes in lane order (no snapshot written, nothing drained)."""
        self._live()
        with self._lock:
            got = self.backend.call_many({i: ("snapshot_hash", ()) for i in range(self.lanes)})
        return fleet_hash([got[i] for i in range(self.lanes)])

    # ------------------------------------------------------------ chaos
    def kill(self, lane: int) -> None:
        """SIGKILL lane ``lane``'s host (for tests): the next call to it restarts it from its journal."""
        self._live()
        self.backend.kill(lane)

    # ------------------------------------------------------------ closing
    @staticmethod
    def verify(path: str | os.PathLike[str], manifest: str | Manifest | None = None) -> FleetReplay:
        """Replay every lane of the fleet at ``path`` from its journal (see :func:`replay_fleet`)."""
        return replay_fleet(path, manifest)

    def close(self) -> None:
        """Send waiting client events, close every lane (each snapshots and syncs) and release the fleet."""
        if self._closed is not None:
            return
        with self._lock:
            if self._closed is not None:
                return
            try:
                self._flush(range(self.lanes))
            finally:
                self._closed = "is closed"
                try:
                    self.backend.close()
                finally:
                    os.close(self._lock_fd)

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Fleet {self.path} {self.manifest.name} lanes={self.lanes} {state}>"


def replay_fleet(path: str | os.PathLike[str], manifest: str | Manifest | None = None) -> FleetReplay:
    """Replay each lane of the fleet at ``path`` serially from its journal; verify every byte.

    ``manifest``: the manifest (an object or ``"module:attribute"``; None:
    the reference stored in the fleet's metadata). Raises
    :class:`~aos.errors.ReplayDivergenceError` (its message naming the lane)
    where a lane's journal does not replay to its own bytes.
    """
    from aos.replay import replay

    meta = read_fleet_meta(path)
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest or meta["manifest"])
    hashes = []
    for i in range(meta["lanes"]):
        try:
            hashes.append(replay(lane_path(path, i), m).verify())
        except AosError as exc:
            exc.add_note(f"in lane {i} of fleet {path} ({lane_path(path, i)})")
            raise
    return FleetReplay(fleet_hash(hashes), tuple(hashes))
