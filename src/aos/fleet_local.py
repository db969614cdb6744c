"""The local fleet backend: each lane a process of its own on this machine.

Each lane's :class:`~aos.lane_host.LaneHost` runs in a process started with
the ``spawn`` context of :mod:`multiprocessing` (a fresh interpreter: no
state, threads or locks inherited from the fleet's process), and the fleet
talks to it over a pipe, one request at a time. Pure-Python reducers of
different lanes run in different interpreters, each with its own GIL, so
they run in parallel on a GIL build.

A host that dies (killed, crashed) is noticed when its pipe breaks; the
backend starts a new process for the lane — the world reopens from its
journal — and makes the call again (every :class:`LaneHost` method is safe
to repeat). A lane that cannot be brought back after ``restarts`` tries in a
row raises :class:`~aos.errors.LaneUnavailableError` naming it.

A host whose fleet process goes away (its pipe reads end-of-file) closes its
world and exits.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any, Mapping, Sequence

from aos.errors import FleetError, LaneUnavailableError
from aos.lane_host import LaneHost, LaneSpec

__all__ = ["LocalBackend"]

_CLOSE = "__close__"
_DEAD = (EOFError, OSError)  # a broken pipe: the host process is gone (BrokenPipeError, ConnectionResetError)


def _wire_error(exc: BaseException, lane: int) -> BaseException:
    """``exc`` as it can cross the pipe: itself if it pickles and unpickles, else a FleetError saying it."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        exc.add_note(f"(raised in lane {lane}'s host)\n{tb}")
    except Exception:  # noqa: BLE001 - an exception object that takes no notes
        pass
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - its class does not survive pickling: say what it was
        return FleetError(f"lane {lane}: {type(exc).__name__}: {exc}", lane=lane)


def lane_main(conn: Connection, spec: LaneSpec) -> None:
    """A lane host process: open the lane, then answer requests until told to close or the pipe ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C in the terminal is the fleet's to handle
    lane = spec.lane.lane_id
    try:
        host = LaneHost(spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the fleet, which names the lane
        conn.send(("err", _wire_error(exc, lane)))
        return
    conn.send(("ok", None))
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):  # the fleet went away: close cleanly
            host.close()
            return
        if method == _CLOSE:
            try:
                host.close()
                conn.send(("ok", None))
            except BaseException as exc:  # noqa: BLE001
                conn.send(("err", _wire_error(exc, lane)))
            return
        try:
            result = host.call(method, args)
        except BaseException as exc:  # noqa: BLE001 - the caller gets it
            conn.send(("err", _wire_error(exc, lane)))
            continue
        conn.send(("ok", result))


class _Died(Exception):
    """A host process ended while opening its lane (killed, crashed): worth another try."""

    def __init__(self, lane: int, path: str, code: int | None) -> None:
        super().__init__(f"lane {lane} ({path}): its host process died while opening it (exit code {code})")
        self.lane = lane


class _Host:
    """The fleet's end of one lane host process."""

    __slots__ = ("spec", "process", "conn", "lock")

    def __init__(self, spec: LaneSpec) -> None:
        self.spec = spec
        self.process: Any = None
        self.conn: Connection | None = None
        self.lock = threading.RLock()


class LocalBackend:
    """Hosts each lane in a spawned process on this machine (see the module's docstring).

    ``restarts``: how many times in a row a lane's host is restarted for one
    call before :class:`LaneUnavailableError`. ``start_timeout``: seconds a
    host may take to open its lane.
    """

    name = "local"

    def __init__(self, *, restarts: int = 5, start_timeout: float = 120.0) -> None:
        self.restarts = restarts
        self.start_timeout = start_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._hosts: list[_Host] = []
        self.restarted = 0  # how many times a host was restarted (for tests and metrics)

    # ------------------------------------------------------------ starting
    def start(self, specs: Sequence[LaneSpec]) -> None:
        self._hosts = [_Host(s) for s in specs]
        for h in self._hosts:
            self._spawn(h)
        failure: LaneUnavailableError | None = None
        for i, h in enumerate(self._hosts):
            try:
                try:
                    self._ready(i, h)
                except _Died as died:
                    self._reopen(i, h, died)
            except LaneUnavailableError as exc:
                failure = failure or exc
        if failure is not None:
            self.close()
            raise failure

    def _spawn(self, h: _Host) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        p = self._ctx.Process(target=lane_main, args=(child, h.spec), daemon=True,
                              name=f"aos-lane-{h.spec.lane.lane_id}")
        p.start()
        child.close()
        h.process, h.conn = p, parent

    def _ready(self, lane: int, h: _Host) -> None:
        """Wait for a spawned host to report its lane open; LaneUnavailableError if it cannot."""
        conn = h.conn
        assert conn is not None
        try:
            if not conn.poll(self.start_timeout):
                self._reap(h)
                raise LaneUnavailableError(f"lane {lane} ({h.spec.path}) did not open within "
                                           f"{self.start_timeout:g} s", lane=lane)
            status, payload = conn.recv()
        except _DEAD:
            raise _Died(lane, h.spec.path, self._reap(h)) from None
        if status != "ok":
            self._reap(h)
            raise LaneUnavailableError(f"lane {lane} ({h.spec.path}) cannot be opened: "
                                       f"{type(payload).__name__}: {payload}", lane=lane) from payload

    def _reap(self, h: _Host, grace: float = 0.0) -> int | None:
        """Make sure the host process is gone (killed if still there after ``grace`` s); its exit code."""
        if h.conn is not None:
            h.conn.close()
            h.conn = None
        p = h.process
        if p is None:
            return None
        if grace:
            p.join(grace)
        if p.is_alive():
            p.kill()
        p.join()
        h.process = None
        return p.exitcode  # type: ignore[no-any-return]

    def _restart(self, lane: int, h: _Host) -> None:
        """Start lane ``lane``'s host again (the world reopens from its journal)."""
        self._reap(h)
        self.restarted += 1
        self._spawn(h)
        try:
            self._ready(lane, h)
        except _Died as died:
            self._reopen(lane, h, died)

    def _reopen(self, lane: int, h: _Host, died: _Died) -> None:
        """Start a host that died while opening again, up to ``restarts`` times."""
        for _ in range(self.restarts):
            self.restarted += 1
            self._spawn(h)
            try:
                self._ready(lane, h)
                return
            except _Died as again:
                died = again
        raise LaneUnavailableError(f"{died} ({self.restarts + 1} times in a row)", lane=lane)

    # ------------------------------------------------------------ calls
    def _host(self, lane: int) -> _Host:
        if not 0 <= lane < len(self._hosts):
            raise FleetError(f"no lane {lane} (the fleet has {len(self._hosts)} lanes)", lane=lane)
        return self._hosts[lane]

    def _send(self, h: _Host, method: str, args: tuple[Any, ...]) -> bool:
        """Send a request; False if the host is gone."""
        if h.conn is None:
            return False
        try:
            h.conn.send((method, args))
            return True
        except _DEAD:
            return False

    def _receive(self, lane: int, h: _Host) -> tuple[bool, Any]:
        """(True, result) or (False, None) if the host died; raises the error the method raised."""
        if h.conn is None:
            return False, None
        try:
            status, payload = h.conn.recv()
        except _DEAD:
            return False, None
        if status == "ok":
            return True, payload
        raise payload

    def _call_locked(self, lane: int, h: _Host, method: str, args: tuple[Any, ...], sent: bool) -> Any:
        """Finish a call whose request was (``sent``) or was not sent: restart and retry while the host dies."""
        for attempt in range(self.restarts + 1):
            if attempt:
                self._restart(lane, h)  # LaneUnavailableError when the lane cannot be opened again
            if (sent and attempt == 0) or self._send(h, method, args):
                ok, result = self._receive(lane, h)
                if ok:
                    return result
        self._reap(h)
        raise LaneUnavailableError(f"lane {lane} ({h.spec.path}): its host died {self.restarts + 1} times "
                                   f"in a row on {method}", lane=lane)

    def call(self, lane: int, method: str, *args: Any) -> Any:
        h = self._host(lane)
        with h.lock:
            return self._call_locked(lane, h, method, args, False)

    def call_many(self, calls: Mapping[int, tuple[str, tuple[Any, ...]]]) -> dict[int, Any]:
        lanes = sorted(calls)
        hosts = [self._host(i) for i in lanes]
        for h in hosts:
            h.lock.acquire()
        try:
            sent = {i: self._send(h, *calls[i]) for i, h in zip(lanes, hosts, strict=True)}
            results: dict[int, Any] = {}
            error: BaseException | None = None
            retry: list[int] = []
            for i, h in zip(lanes, hosts, strict=True):
                if not sent[i]:
                    retry.append(i)
                    continue
                try:
                    ok, result = self._receive(i, h)
                except BaseException as exc:  # noqa: BLE001 - raised once every answer is in
                    error = error or exc
                    continue
                if ok:
                    results[i] = result
                else:
                    retry.append(i)
            for i in retry:
                try:
                    results[i] = self._call_locked(i, self._hosts[i], *calls[i], False)
                except BaseException as exc:  # noqa: BLE001
                    error = error or exc
            if error is not None:
                raise error
            return results
        finally:
            for h in reversed(hosts):
                h.lock.release()

    # ------------------------------------------------------------ chaos, closing
    def kill(self, lane: int) -> None:
        """SIGKILL lane ``lane``'s host process (the next call restarts it)."""
        h = self._host(lane)
        p = h.process
        if p is not None and p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.join()

    def pid(self, lane: int) -> int | None:
        """The process id of lane ``lane``'s host (None when it is not running)."""
        p = self._host(lane).process
        return None if p is None else p.pid

    def close(self) -> None:
        """Close every lane's world (each host snapshots and syncs; all at once) and end the processes."""
        error: BaseException | None = None
        hosts = self._hosts
        for h in hosts:
            h.lock.acquire()
        try:
            sent = [self._send(h, _CLOSE, ()) for h in hosts]
            for i, h in enumerate(hosts):
                if sent[i]:
                    try:
                        self._receive(i, h)
                    except BaseException as exc:  # noqa: BLE001 - every lane is closed first
                        error = error or exc
                self._reap(h, grace=10.0)
            self._hosts = []
        finally:
            for h in reversed(hosts):
                h.lock.release()
        if error is not None:
            raise error
