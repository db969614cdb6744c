"""Reducer timing: the time each Python reducer's calls take, for ``World.open(profile=True)``.

A world opened with ``profile=True`` puts a timing wrapper in place of each
Python reducer function of its manifest for as long as it is open (the
wrapper is a plain function, so the inline executor's C loop still calls it
directly), and ``metrics()["reducers"]`` reports, per reducer, the steps
that called it and the seconds spent inside it. Without ``profile`` nothing
is wrapped and a step pays nothing. The wrapper's frame is left out of a
failed step's traceback (the failure path unwraps it), so a profiled world
journals the same bytes as an unprofiled one.

Native reducers are called through their C entry point, not a Python
function: they are not timed (their entry says ``"timed": False``).
Each thread adds to its own counters (workers may run steps at the same
time), which a read sums.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from aos.errors import ArgumentError

if TYPE_CHECKING:
    from aos.manifest import Manifest, ReducerSpec

__all__ = ["ReducerClock", "unwrapped"]

_WRAPPED = "__aos_reducer_clock__"


def unwrapped(fn: Any) -> Any:
    """The reducer function ``fn`` times (``fn`` itself when it is not a timing wrapper)."""
    return getattr(fn, "__wrapped__", fn) if hasattr(fn, _WRAPPED) else fn


class ReducerClock:
    """The timing wrappers of one manifest's Python reducers, attached while one profiled world is open."""

    def __init__(self, manifest: "Manifest") -> None:
        self.manifest = manifest
        # reducer name -> thread id -> [calls, nanoseconds]
        self._counts: dict[str, dict[int, list[int]]] = {}
        self._originals: dict[str, Callable[..., Any]] = {}

    def attach(self) -> None:
        """Put a timing wrapper in place of each Python reducer; refused if another world is timing them."""
        for spec in self.manifest.reducers.values():
            if hasattr(spec.fn, _WRAPPED):
                raise ArgumentError(f"profile=True: the reducers of manifest {self.manifest.name} are already "
                                    "being timed by another open world; open one profiled world per manifest at "
                                    "a time")
        for spec in self.manifest.reducers.values():
            self._counts[spec.name] = {}
            if spec.native is None:
                self._originals[spec.name] = spec.fn
                object.__setattr__(spec, "fn", _timed(spec.fn, self._counts[spec.name]))

    def detach(self) -> None:
        """Put the reducer functions back (idempotent)."""
        for name, fn in self._originals.items():
            spec: ReducerSpec | None = self.manifest.reducers.get(name)
            if spec is not None and spec.fn is not fn and unwrapped(spec.fn) is fn:
                object.__setattr__(spec, "fn", fn)
        self._originals.clear()

    def read(self) -> dict[str, dict[str, Any]]:
        """Per reducer: ``steps`` (calls), ``seconds`` (inside the function), ``share`` (of all reducers' time)."""
        totals: dict[str, tuple[int, int]] = {}
        for name, per_thread in self._counts.items():
            calls = ns = 0
            for counter in list(per_thread.values()):
                calls += counter[0]
                ns += counter[1]
            totals[name] = (calls, ns)
        all_ns = sum(ns for _c, ns in totals.values())
        out: dict[str, dict[str, Any]] = {}
        for name, (calls, ns) in totals.items():
            spec = self.manifest.reducers.get(name)
            out[name] = {"steps": calls, "seconds": ns / 1e9, "share": ns / all_ns if all_ns else 0.0,
                         "timed": spec is not None and spec.native is None}
        return out


def _timed(fn: Callable[..., Any], counts: dict[int, list[int]]) -> Callable[..., Any]:
    clock = time.perf_counter_ns
    ident = threading.get_ident

    def timed_reducer(ctx: Any, state: Any, event: Any) -> Any:
        t0 = clock()
        try:
            return fn(ctx, state, event)
        finally:
            dt = clock() - t0
            counter = counts.get(ident())
            if counter is None:
                counter = counts.setdefault(ident(), [0, 0])
            counter[0] += 1
            counter[1] += dt

    timed_reducer.__wrapped__ = fn  # type: ignore[attr-defined]
    setattr(timed_reducer, _WRAPPED, True)
    timed_reducer.__name__ = getattr(fn, "__name__", "reducer")
    timed_reducer.__qualname__ = getattr(fn, "__qualname__", timed_reducer.__name__)
    return timed_reducer
