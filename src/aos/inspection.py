"""Inspection: reading a live world — cell states, budgets, pending effects, failures, metrics.

Every read is taken at a consistent point: on the calling thread when no run
is in progress, else handed over to the running thread's next quiet point
(:meth:`aos.intake.Intake.on_runner`). ``metrics()`` is the one source of
counters; ``World.stats`` is a flat view of some of them.
"""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Iterator

from aos import canonical
from aos._core.encoder import record_kind
from aos.admission import cell_key
from aos.capability import BudgetView
from aos.journal import JournalReader
from aos.outbox import QueuedEffect
from aos.records import StepFailed

if TYPE_CHECKING:
    from aos.world import World

__all__ = ["Inspection", "STATS"]

# World.stats: its keys and where each one is in metrics()
STATS: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id",), "admitted": ("admitted",), "commits": ("commits",), "failures": ("failures",),
    "cells": ("cells",), "queued": ("queue", "queued"), "pending": ("queue", "pending"),
    "records": ("records",), "effects_outstanding": ("effects", "outstanding"),
    "effects_settled": ("effects", "settled"), "effects_dispatched": ("effects", "dispatched"),
    "receipts_refused": ("effects", "receipts_refused"), "validations": ("validations",),
    "reexecutions": ("reexecutions",),
}


class Inspection:
    """The read side of a world's public API."""

    def __init__(self, world: "World") -> None:
        self.world = world

    def _on_runner(self, fn: Any) -> Any:
        return self.world._intake.on_runner(fn)

    # ---------------------------------------------------------------- cells
    def state(self, reducer: str, key: Any = None) -> Any:
        world = self.world
        k = world._live()
        if reducer not in world.manifest.reducers and k.retired:  # a removed reducer's cells: read-only
            found = self._on_runner(lambda: [s for (r, c), s in k.retired.items() if r == reducer and c == key])
            if found:
                return canonical.decode_trusted(found[0])
        key = cell_key(world.manifest.get(reducer), key, f"state({reducer!r})")
        data = self._on_runner(lambda: k.cells.state_of(reducer, key))
        return None if data is None else canonical.decode_trusted(data)

    def cells(self, reducer: str | None = None) -> list[tuple[str, Any]]:
        world = self.world
        k = world._live()
        if reducer is not None:
            world.manifest.get(reducer)
        return self._on_runner(lambda: [(name, key) for _n, name, key in sorted(  # type: ignore[no-any-return]
            (canonical.encode([spec.name, key]), spec.name, key) for _cid, spec, key, _s in k.cells.entries()
            if reducer is None or spec.name == reducer)])

    def iter_states(self) -> Iterator[tuple[str, Any, Any]]:
        k = self.world._live()
        taken = self._on_runner(lambda: [(spec.name, key, state) for _cid, spec, key, state in k.cells.entries()])
        for name, key, state in taken:
            yield name, key, canonical.decode_trusted(state)

    def era_of(self, reducer: str, key: Any = None) -> str:
        world = self.world
        k = world._live()
        key = cell_key(world.manifest.get(reducer), key, f"era_of({reducer!r})")

        def find() -> bytes:
            cid = k.cells.find(reducer, key)
            era = None if cid is None or not k.cells.has_state(cid) else k.cells.era_of(cid)
            return world.manifest.era if era is None else era

        return self._on_runner(find).hex()  # type: ignore[no-any-return]

    def snapshot_hash(self) -> str:
        k = self.world._live()
        return self._on_runner(lambda: k.cells.snapshot_hash().hex())  # type: ignore[no-any-return]

    # -------------------------------------------------------------- effects
    def budget(self, cap: str) -> BudgetView:
        world = self.world
        k = world._live()
        if cap not in k.ledger.budgets:
            raise KeyError(f"manifest {world.manifest.name} has no capability {cap!r}")
        return self._on_runner(lambda: k.ledger.view(cap))  # type: ignore[no-any-return]

    def pending_effects(self) -> list[QueuedEffect]:
        k = self.world._live()
        return self._on_runner(lambda: list(k.outbox.queued.values()))  # type: ignore[no-any-return]

    # -------------------------------------------------------------- failures
    def failures(self) -> list[StepFailed]:
        world = self.world
        world._live()
        world._intake.on_runner(lambda: world._journal.flush(sync=False))  # the journal's writer is the runner
        out: list[StepFailed] = []
        for entry in JournalReader(world.path / "journal", [e.era for e in world.eras]).entries():
            if record_kind(entry.payload) == StepFailed.KIND:
                rec = entry.record()
                if isinstance(rec, StepFailed):
                    out.append(rec)
        return out

    # --------------------------------------------------------------- metrics
    def metrics(self) -> dict[str, Any]:
        """``World.metrics()``: read at the running thread's next quiet point."""
        self.world._live()
        return self._on_runner(self.metrics_now)  # type: ignore[no-any-return]

    def metrics_within(self, timeout: float) -> dict[str, Any] | None:
        """``metrics()`` from another thread, waiting ``timeout`` seconds at most for the running thread's
        quiet point (None when it did not come: the call is withdrawn). For exporters: a scrape must not hang
        on a long step."""
        world = self.world
        intake = world._intake
        with intake.cv:
            if intake.runner is None or intake.runner == threading.get_ident():
                world._live()
                return self.metrics_now()
            call = intake.hand_over(self.metrics_now)
        try:
            return call.result(timeout)  # type: ignore[no-any-return]
        except FutureTimeout:
            call.cancel()  # (taken later, a cancelled call is skipped)
            return None

    def stats(self) -> dict[str, int]:
        """``World.stats``: the counters of :data:`STATS`, taken from the metrics (those at closing, once closed)."""
        m = self.metrics_now() if self.world._closed is not None else self._on_runner(self.metrics_now)
        out = {}
        for name, where in STATS.items():
            v: Any = m
            for part in where:
                v = v[part]
            out[name] = v
        return out

    def metrics_now(self) -> dict[str, Any]:
        """The metrics, read on this thread (the caller is the one running the world, or none is)."""
        world = self.world
        k = world._kernel
        s = k.sequencer
        ex = world._executor
        d = world._dispatcher
        tickets = max(0, s.next_ticket - 1)
        wait_cell = None
        if s.wait_max and s.wait_max_cell < k.cells.count:
            wait_cell = (k.cells.spec(s.wait_max_cell).name, k.cells.key(s.wait_max_cell))
        return {
            "executor": ex.name,
            "workers": world.workers,
            "event_id": k.last_event_id,
            "admitted": k.next_seq,
            "cells": len(k.cells),
            "records": world._journal.index,
            "tickets": tickets,
            "commits": k.commits,
            "failures": k.failures,
            "validations": k.validations,
            "reexecutions": k.reexecutions,
            "conflicts": {"stale_budget_read": k.reexecutions},
            "queue": {"queued": s.queued, "queued_max": s.queued_max, "pending": s.pending,
                      "pending_emitted": s.pending - s.held, "held_admitted": s.held,
                      "ready_cells": s.ready, "in_flight_max": ex.max_inflight},
            "wait_ticks": {"max": s.wait_max, "max_cell": wait_cell, "max_at_ticket": s.wait_max_ticket,
                           "mean": s.wait_sum / tickets if tickets else 0.0},
            "worker_busy_seconds": ex.busy_seconds,
            "steps_computed_by_coordinator": getattr(ex, "helped", 0),
            "steps_by_path": getattr(ex, "steps_by_path", {}),  # inline executor: its C loop / the reference path
            "commit_latency_us": {"buckets": ex.latency.buckets(), "p50": ex.latency.quantile(0.5),
                                  "p99": ex.latency.quantile(0.99)},
            "effects": {"outstanding": len(k.outbox.queued), "settled": k.outbox.settled_count,
                        "dispatched": d.dispatched, "receipts_refused": len(world.refused_receipts),
                        "receipts": dict(sorted(k.receipts_by_status.items())),
                        "attempts_failed": d.attempts_failed, "dead_lettered": d.dead_lettered},
            "by_priority": [{"priority": c, "steps": n, "failures": k.failures_by_class[c], "wait_ticks": w,
                             "wait_max": wmax, "ready_cells": ready}
                            for c, (n, w, wmax, ready) in enumerate(s.class_counts())],
            "by_reducer": {name: {"priority": world.manifest.reducers[name].priority
                                  if name in world.manifest.reducers else None,
                                  "steps": n, "failures": k.failures_by_reducer.get(name, 0), "wait_ticks": w,
                                  "wait_max": wmax}
                           for name, (n, w, wmax) in sorted(s.reducer_counts().items())},
            **({} if world._clock is None else {"reducers": world._clock.read()}),  # World.open(profile=True)
        }
