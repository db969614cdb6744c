"""The ``"ray"`` fleet backend: each lane a Ray actor hosting a :class:`~aos.lane_host.LaneHost`.

Ray is the engine: it places the lanes' actors on the cluster's nodes,
carries the calls, and restarts an actor whose process or node died
(``max_restarts=-1``). A restarted actor opens its lane's world again, which
recovers from its journal, and the call that was in flight is made again
(Ray's task retries, then this backend's own, bounded by ``restart_timeout``);
every lane host method is safe to repeat (marks drop a repeated message or
client event, a grant id a repeated grant), so a retry changes nothing that
was already done. aos adds no cluster manager, RPC layer or scheduler.

Ray is imported lazily: ``import aos`` never imports it, and asking for this
backend without Ray installed raises :class:`~aos.errors.FleetError` naming the
extra to install (``pip install 'aos-kernel[ray]'``).

Where the lanes' directories are: each lane's world lives at its
:attr:`LaneSpec.path <aos.lane_host.LaneSpec.path>` *as seen from the node its
actor runs on*. On a file system every node mounts at the same path, a lane
may run, and be restarted, anywhere. On node-local disks, pin each lane to the
node holding its directory with ``placement={lane: node_id}``: a pinned lane
is restarted on that node only, and is unavailable while that node is gone.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from typing import Any, Mapping, Sequence

from aos.errors import FleetClosedError, FleetError, LaneUnavailableError
from aos.lane_host import HOST_METHODS, LaneHost, LaneSpec

__all__ = ["RayBackend", "ray_available", "LIGHT_INIT_OPTIONS"]

#: ``ray.init`` options used when this backend starts a Ray instance of its own (no ``address``):
#: no dashboard, no worker output copied to the driver, warnings and errors only.
LIGHT_INIT_OPTIONS: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": "warning", "configure_logging": True}

_INSTALL_HINT = "the 'ray' fleet backend needs Ray: pip install 'aos-kernel[ray]'"


def ray_available() -> bool:
    """Whether Ray can be imported here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise FleetError(f"{_INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
    return ray


class _LaneActor:
    """The body of a lane's actor (made a Ray actor class by :func:`_actor_class`).

    The lane's host is opened when the actor starts — and again on every
    restart, which reopens the world from its journal. A failure to open is
    kept and reported by each call (as :class:`LaneUnavailableError`) rather
    than failing the actor's creation, so the driver gets a typed error naming
    the lane; each call first tries to open the host again.
    """

    def __init__(self, spec: LaneSpec, lane: int) -> None:
        self.spec = spec
        self.lane = lane
        self.host: LaneHost | None = None
        self.error: str | None = None
        try:
            self._open()
        except LaneUnavailableError:
            pass  # kept in self.error; every call tries again and reports it

    def _open(self) -> LaneHost:
        if self.host is None:
            try:
                self.host = LaneHost(self.spec)
                self.error = None
            except Exception as exc:  # reported to the driver, typed, by every call
                self.error = f"{type(exc).__name__}: {exc}"
                raise LaneUnavailableError(f"lane {self.lane} ({self.spec.path}) cannot be opened: {self.error}",
                                           lane=self.lane) from None
        return self.host

    def ready(self) -> int:
        """The lane's last event id once its world is open (raises LaneUnavailableError if it cannot open)."""
        return int(self._open().world.last_event_id)

    def call(self, method: str, args: tuple[Any, ...]) -> Any:
        return self._open().call(method, args)

    # The methods below run in the actor's "control" concurrency group, beside a call in progress.
    def where(self) -> dict[str, Any]:
        """The actor's process id and Ray node id."""
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    def die(self) -> None:
        """SIGKILL this actor's process (Ray restarts it)."""
        os.kill(os.getpid(), signal.SIGKILL)


_ACTOR_CLASSES: dict[int, Any] = {}


def _actor_class(ray: Any, max_task_retries: int) -> Any:
    """The Ray actor class of a lane: restarted without limit; ``where``/``die`` in their own group."""
    cls = _ACTOR_CLASSES.get(max_task_retries)
    if cls is None:
        class LaneActor(_LaneActor):
            @ray.method(concurrency_group="control")  # type: ignore[untyped-decorator]  # Ray ships no types
            def where(self) -> dict[str, Any]:
                return _LaneActor.where(self)

            # Never retried: a retry would kill the restarted actor again.
            @ray.method(concurrency_group="control", max_task_retries=0)  # type: ignore[untyped-decorator]  # (as above)
            def die(self) -> None:
                _LaneActor.die(self)

        cls = ray.remote(max_restarts=-1, max_task_retries=max_task_retries,
                         concurrency_groups={"control": 1})(LaneActor)
        _ACTOR_CLASSES[max_task_retries] = cls
    return cls


class RayBackend:
    """Hosts each lane of a fleet in a Ray actor (see the module's text).

    Options:

    * ``address``: the Ray cluster to join (``"auto"``, ``"ray://..."``, ``"127.0.0.1:6379"``).
      If Ray is already initialised in this process, that instance is used as it is; if not and
      ``address`` is None, a local Ray instance is started with :data:`LIGHT_INIT_OPTIONS`
      (overridden by ``init_options``) and shut down by :meth:`close`.
    * ``num_cpus``: CPUs a lane's actor reserves (default 1: a lane runs its reducers on one core).
    * ``placement``: ``{lane: node_id}`` pins lanes to nodes (node-local lane directories); a value
      may also be a Ray scheduling strategy, used as it is. The other lanes are spread over the
      cluster (``"SPREAD"``, unless ``actor_options`` names another strategy).
    * ``actor_options``: further ``.options()`` of the lanes' actors (``memory``, ``resources``, ...).
    * ``max_task_retries``: Ray's own retries of a call whose actor died (default 3); then
    * ``restart_timeout``: how long (seconds) this backend keeps retrying a lane that is down
      before raising :class:`LaneUnavailableError` (default 120).
    """

    name = "ray"

    def __init__(self, *, address: str | None = None, init_options: Mapping[str, Any] | None = None,
                 num_cpus: float = 1, placement: Mapping[int, Any] | None = None,
                 actor_options: Mapping[str, Any] | None = None, max_task_retries: int = 3,
                 restart_timeout: float = 120.0) -> None:
        self._ray = _import_ray()
        if restart_timeout <= 0:
            raise FleetError(f"ray backend: restart_timeout must be > 0 seconds, got {restart_timeout!r}")
        if max_task_retries < 0:
            raise FleetError(f"ray backend: max_task_retries must be >= 0, got {max_task_retries!r}")
        self.address = address
        self.init_options = dict(init_options or {})
        self.num_cpus = num_cpus
        self.placement = dict(placement or {})
        self.actor_options = dict(actor_options or {})
        self.max_task_retries = max_task_retries
        self.restart_timeout = restart_timeout
        self._owns_ray = False
        self._actors: dict[int, Any] = {}
        self._specs: dict[int, LaneSpec] = {}
        self._closed = False
        #: lanes found down, by a kill or a call that had to be made again (Ray's own retries of a call
        #: are not seen here): for tests and Fleet.metrics
        self.restarted = 0

    # ------------------------------------------------------------ life cycle
    def start(self, specs: Sequence[LaneSpec]) -> None:
        """Start one actor per lane and wait until every lane's world is open.

        Raises :class:`LaneUnavailableError` (``lane=i``) if lane i cannot be
        opened; the actors already started are stopped.
        """
        ray = self._ray
        if self._closed:
            raise FleetClosedError("ray backend is closed")
        if not ray.is_initialized():
            options = {**LIGHT_INIT_OPTIONS, **self.init_options}
            if self.address is not None:
                options["address"] = self.address
            ray.init(**options)
            self._owns_ray = True
        cls = _actor_class(ray, self.max_task_retries)
        for lane, spec in enumerate(specs):  # lane i is specs[i]
            if not spec.sys_path:  # the fleet's sys.path goes with it, as to a local lane's process
                spec = dataclasses.replace(spec, sys_path=tuple(p for p in sys.path if isinstance(p, str) and p))
            self._specs[lane] = spec
            self._actors[lane] = cls.options(**self._options_for(lane)).remote(spec, lane)
        refs = {lane: actor.ready.remote() for lane, actor in self._actors.items()}
        try:
            for lane, ref in refs.items():
                self._resolve(lane, ref, "ready", ())
        except BaseException:
            self._stop_actors()
            if self._owns_ray:  # nothing stays running
                ray.shutdown()
                self._owns_ray = False
            raise

    def _options_for(self, lane: int) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        opts.update(self.actor_options)
        where = self.placement.get(lane)
        if isinstance(where, str):  # a node id: this node only
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=where, soft=False)
        elif where is not None:  # a Ray scheduling strategy, as it is
            opts["scheduling_strategy"] = where
        else:
            opts.setdefault("scheduling_strategy", "SPREAD")
        return opts

    def close(self) -> None:
        """Close every lane's world (best effort: a lane that is down is left to its journal), stop Ray if
        this backend started it."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        refs = {lane: a.call.remote("close", ()) for lane, a in self._actors.items()}
        for ref in refs.values():
            try:
                ray.get(ref, timeout=self.restart_timeout)
            except Exception:  # a lane that died: its journal holds every acknowledged event
                pass
        self._stop_actors()
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def _stop_actors(self) -> None:
        for actor in self._actors.values():
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self._actors.clear()

    # ------------------------------------------------------------ calls
    def _actor(self, lane: int) -> Any:
        if self._closed:
            raise FleetClosedError("ray backend is closed", lane=lane)
        try:
            return self._actors[lane]
        except KeyError:
            raise FleetError(f"ray backend: no lane {lane} (lanes: {sorted(self._actors)})", lane=lane) from None

    def call(self, lane: int, method: str, *args: Any) -> Any:
        """``LaneHost.<method>(*args)`` on ``lane``'s actor; a lane that died is restarted and called again."""
        if method not in HOST_METHODS:
            raise FleetError(f"lane {lane}: no lane host method {method!r}", lane=lane)
        return self._resolve(lane, self._actor(lane).call.remote(method, args), method, args)

    def call_many(self, calls: Mapping[int, tuple[str, tuple[Any, ...]]]) -> dict[int, Any]:
        """The calls on several lanes, made at once; returns each lane's result."""
        for lane, (method, _) in calls.items():
            if method not in HOST_METHODS:
                raise FleetError(f"lane {lane}: no lane host method {method!r}", lane=lane)
        refs = {lane: self._actor(lane).call.remote(method, tuple(args)) for lane, (method, args) in calls.items()}
        return {lane: self._resolve(lane, ref, *calls[lane]) for lane, ref in refs.items()}

    def _resolve(self, lane: int, ref: Any, method: str, args: tuple[Any, ...]) -> Any:
        """The result of ``ref``; while the lane's actor is down (restarting), the call is made again."""
        ex = self._ray.exceptions
        deadline = time.monotonic() + self.restart_timeout
        delay = 0.05
        while True:
            try:
                return self._ray.get(ref)
            except ex.RayTaskError as err:  # the method raised: raise the lane's own error
                cause = getattr(err, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise FleetError(f"lane {lane}: {method} failed: {err}", lane=lane) from None
            except _unschedulable(ex) as err:  # for good: a pinned lane's node is gone
                if self._closed:
                    raise FleetClosedError("ray backend is closed", lane=lane) from None
                raise LaneUnavailableError(f"lane {lane}: its actor died and cannot be restarted "
                                           f"({_first_line(err)})", lane=lane) from None
            except ex.RayActorError as err:  # the actor died or is unreachable: Ray restarts it
                self.restarted += 1
                # Ray has retried the call already (max_task_retries); retry until the deadline. (Ray's
                # ActorDiedError does not say whether a restart follows, so it is waited out too.)
                if self._closed:
                    raise FleetClosedError("ray backend is closed", lane=lane) from None
                if time.monotonic() >= deadline:
                    raise LaneUnavailableError(
                        f"lane {lane}: its actor is down and was not brought back within "
                        f"{self.restart_timeout:g} s ({type(err).__name__}: {_first_line(err)})", lane=lane) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                actor = self._actors.get(lane)
                if actor is None:
                    raise FleetClosedError("ray backend is closed", lane=lane) from None
                ref = actor.ready.remote() if method == "ready" else actor.call.remote(method, args)

    # ------------------------------------------------------------ chaos and placement
    def kill(self, lane: int) -> None:
        """SIGKILL ``lane``'s actor process (wherever it runs), now, even in the middle of a call.

        Returns once the process is gone; Ray restarts the actor, which reopens the lane from its
        journal; a call that was in progress is made again.
        """
        ray = self._ray
        ref = self._actor(lane).die.remote()
        try:
            ray.get(ref, timeout=self.restart_timeout)
        except _unschedulable(ray.exceptions) as err:
            raise LaneUnavailableError(f"lane {lane}: actor dead ({_first_line(err)})", lane=lane) from None
        except ray.exceptions.RayActorError:
            self.restarted += 1
            return  # the process died
        except ray.exceptions.GetTimeoutError:
            raise LaneUnavailableError(f"lane {lane}: its actor could not be reached to be killed", lane=lane) from None

    def where(self, lane: int) -> dict[str, Any]:
        """Where ``lane``'s actor runs now: ``{"pid": ..., "node_id": ...}`` (waits for a restart)."""
        ray = self._ray
        deadline = time.monotonic() + self.restart_timeout
        while True:
            try:
                return ray.get(self._actor(lane).where.remote())  # type: ignore[no-any-return]
            except _unschedulable(ray.exceptions) as err:
                raise LaneUnavailableError(f"lane {lane}: actor dead ({_first_line(err)})", lane=lane) from None
            except ray.exceptions.RayActorError as err:
                if time.monotonic() >= deadline:
                    raise LaneUnavailableError(f"lane {lane}: actor down ({_first_line(err)})", lane=lane) from None
                time.sleep(0.1)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._actors)} lanes"
        return f"<RayBackend {state}>"


class _Never(Exception):
    """Raised by nothing: stands for a Ray error class this Ray release lacks."""


def _unschedulable(ex: Any) -> type[Exception]:
    """Ray's error for an actor that cannot be placed (pinned to a node that is gone)."""
    return getattr(ex, "ActorUnschedulableError", _Never)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
