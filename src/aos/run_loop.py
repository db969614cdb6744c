"""The run loop: drives the executor batch by batch, settles effects, syncs, surfaces what went wrong.

``World.run`` runs steps until none is ready (optionally settling effects);
``World.serve`` keeps a world running on the calling thread while other
threads submit, until told to stop. Both hand the executor whole batches —
``executor.run(max_steps, hooks)`` loops over the steps — and do their own
work between batches only: admitting inputs at quiet points, syncing the
journal, handing durable intents to the adapters, raising the invariant
violations and failures the executor's commits recorded.

The executor calls back through :class:`~aos.executor.Hooks`:
``after_commit`` (a snapshot every ``snapshot_every`` tickets, effects of a
durable commit to the adapters), ``barrier`` (a snapshot is due: the executor
holds a quiet point after that ticket), and the intake's ``at_quiet`` /
``wants_quiet`` (inputs are admitted only where nothing is in flight).
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Callable

from aos.errors import ArgumentError, InvariantViolation, ReducerError, ReentrantCallError
from aos.executor import Hooks, RunResult
from aos.intake import Intake, wait_limit
from aos.kernel import Kernel
from aos.settle import Settling, settling_for

if TYPE_CHECKING:
    from aos.world import World

__all__ = ["RunLoop", "MAX_STEPS", "SERVE_BATCH"]

MAX_STEPS = 1 << 62  # more than any run takes; the threads executor counts in 64 bits
SERVE_BATCH = 4096  # steps a serving world runs before it looks at stop/until and at the clock again


class RunLoop:
    """Runs a world's steps: ``run`` until quiet, ``serve`` until stopped."""

    def __init__(self, world: "World", intake: Intake) -> None:
        self.world = world
        self.intake = intake
        self._kernel = world._kernel
        self._journal = world._journal
        self.settling: Settling = settling_for(world._dispatcher, self._wait_for_call)
        intake.take_receipts_from(self.settling.has_arrived, self.settling.arrived)
        self._hooks = Hooks(self._after_commit, self._snapshot_due, intake.at_quiet, intake.wants_quiet,
                            intake=intake.take_submitted, every=world.snapshot_every)
        self.lock = threading.RLock()  # one run at a time; another thread's run() waits for this one
        self.stop_requested = False  # World.stop(): the serve in progress (or the next one) returns
        self._effects_seen = 0  # len(kernel.new_effects) when _effects_end was taken
        self._effects_end = 0  # the journal index the new effects are durable at

    # ------------------------------------------------------------------ run
    @property
    def hooks(self) -> Hooks:
        """The hooks the executor runs (``every``: the world's snapshot interval, which may change)."""
        if self._hooks.every != self.world.snapshot_every:
            intake = self.intake
            self._hooks = Hooks(self._after_commit, self._snapshot_due, intake.at_quiet, intake.wants_quiet,
                                intake=intake.take_submitted, every=self.world.snapshot_every)
        return self._hooks

    def run(self, max_steps: int | None, settle: bool | None, timeout: float | None) -> RunResult:
        k = self.world._live()
        if max_steps is not None:
            if type(max_steps) is not int:
                raise TypeError(f"max_steps must be an int >= 0 or None, got {type(max_steps).__name__}")
            if max_steps < 0:
                raise ValueError("max_steps must be >= 0")
            if max_steps > MAX_STEPS:
                max_steps = None
        timeout = wait_limit(timeout)
        with self.lock:
            outer = self._claim()
            try:
                return self._run(k, max_steps, settle, timeout)
            finally:
                if not outer:
                    self._release()

    def _claim(self) -> bool:
        """Make this thread the runner; whether it already was (a run inside a run)."""
        intake = self.intake
        with intake.cv:
            outer = intake.runner is not None
            intake.runner = threading.get_ident()
        return outer

    def _release(self) -> None:
        intake = self.intake
        with intake.cv:
            intake.runner = None
            intake.take_submitted()  # submitted just as the run ended
            intake.take_calls()
            intake.cv.notify_all()
            if intake.unacked and self.world._closed is None:  # a submit_async taken just now waits for no run
                self.world._sync()

    def _run(self, k: Kernel, max_steps: int | None, settle: bool | None, timeout: float | None) -> RunResult:
        world, intake, settling = self.world, self.intake, self.settling
        executor, hooks = world._executor, self.hooks
        settle = settling.settles_by_default if settle is None else settle
        deadline = None if timeout is None else time.monotonic() + timeout
        steps = committed = failed = receipts = 0
        try:
            while True:
                intake.at_quiet()  # nothing is in flight between executor runs
                left = None if max_steps is None else max_steps - steps
                r = executor.run(left, hooks)
                steps, committed, failed = steps + r.steps, committed + r.committed, failed + r.failed
                self.sync_and_dispatch()
                self._surface_violations()
                self._surface_failures()
                if max_steps is not None and steps >= max_steps:
                    break
                if k.sequencer.has_work() or intake.submitted:
                    continue
                if not settle or not k.outbox.queued:
                    break
                intake.waiting = True  # a submit from another thread wakes the wait below
                try:
                    got = [] if intake.submitted else settling.settle(deadline)
                finally:
                    intake.waiting = False
                if got is None:
                    break
                receipts += len(intake.admit(got, world.refused_receipts))
        except (InvariantViolation, ReducerError):
            self.sync_and_dispatch()
            raise
        except BaseException as exc:
            world._close(f"is unusable after an interrupted run ({type(exc).__name__}); reopen it", clean=False)
            raise
        return RunResult(steps, committed, failed, not k.sequencer.has_work(), receipts, len(k.outbox.queued))

    # ---------------------------------------------------------------- serve
    def serve(self, until: Callable[[], bool] | None, idle: float) -> RunResult:
        k = self.world._live()
        if until is not None and not callable(until):
            raise ArgumentError(f"serve(until=...) takes a function returning a bool, or None; got "
                                f"{type(until).__name__}")
        if type(idle) not in (int, float) or not (0 < idle and math.isfinite(idle)):
            raise ArgumentError(f"serve(idle=...) takes a number of seconds > 0, got {idle!r}")
        on_worker = getattr(self.world._executor, "on_worker", None)
        if self.intake.runner == threading.get_ident() or (on_worker is not None and on_worker()):
            raise ReentrantCallError(f"serve() was called while this thread is running world {self.world.path} "
                                     "(from a reducer, a hook or an until function)")
        with self.lock:
            self._claim()
            try:
                return self._serve(k, until, float(idle))
            finally:
                self.stop_requested = False  # this stop was for this serve
                self._release()

    def stop(self) -> None:
        """Make the serve in progress return at its next quiet point (or the next serve at once)."""
        with self.intake.cv:
            self.stop_requested = True
            self.intake.cv.notify_all()
        self.world._dispatcher.wake()

    def _serve(self, k: Kernel, until: Callable[[], bool] | None, idle: float) -> RunResult:
        world, intake, settling = self.world, self.intake, self.settling
        executor, hooks, j = world._executor, self.hooks, world._journal
        group_s = j.durability.group_ms / 1000.0
        always = j.durability.mode == "always"
        steps = committed = failed = receipts = 0
        dirty_since: float | None = None  # when records not yet known durable were first seen
        while True:
            try:
                if self.stop_requested or world._closed is not None or (until is not None and until()):
                    break
            except BaseException:
                self.sync_and_dispatch()  # nothing is in flight: the world stays usable
                raise
            try:
                intake.at_quiet()
                r = executor.run(SERVE_BATCH, hooks)
                steps, committed, failed = steps + r.steps, committed + r.committed, failed + r.failed
                if k.new_effects:
                    self.sync_and_dispatch()  # intents go to the adapters once durable
                elif not always:
                    intake.acknowledge(j.durable_index)  # the group syncs the journal made by itself
                self._surface_violations()
                self._surface_failures()
                # group commit by time: whatever is not durable yet is synced within group_ms
                now = time.monotonic()
                if j.index > intake.acked and not always:
                    if dirty_since is None:
                        dirty_since = now
                    if now - dirty_since >= group_s:
                        world._sync()
                        dirty_since = None
                else:
                    intake.acknowledge(j.durable_index)
                    dirty_since = None
                if k.sequencer.has_work() or intake.arrivals or intake.submitted:
                    continue
            except (InvariantViolation, ReducerError):
                self.sync_and_dispatch()
                raise
            except BaseException as exc:
                world._close(f"is unusable after an interrupted serve ({type(exc).__name__}); reopen it",
                             clean=False)
                raise
            # nothing to do: wait for input, a receipt, stop() or the next group sync
            wait = idle if dirty_since is None else min(idle, max(0.0, dirty_since + group_s - now))
            try:
                intake.waiting = True  # a submit from another thread wakes the wait below
                try:
                    got = [] if intake.submitted else settling.idle(wait)
                finally:
                    intake.waiting = False
                if got:
                    receipts += len(intake.admit(got, world.refused_receipts))
            except BaseException:
                self.sync_and_dispatch()  # nothing is in flight: the world stays usable
                raise
        if world._closed is None:
            self.sync_and_dispatch()
        return RunResult(steps, committed, failed, not k.sequencer.has_work(), receipts, len(k.outbox.queued))

    def _wait_for_call(self, timeout: float | None) -> None:
        """Block until another thread hands a call over, :meth:`stop` is called, or ``timeout``."""
        intake = self.intake
        with intake.cv:
            if not intake.arrivals and not intake.submitted and not self.stop_requested:
                intake.cv.wait(timeout)

    # ------------------------------------------------------- between batches
    def sync_and_dispatch(self) -> None:
        """Sync the journal; hand the intents it made durable to the adapters."""
        world = self.world
        k = world._kernel
        world._sync()
        snapshots = world._snapshots
        if snapshots is not None and snapshots.done:  # a background snapshot written meanwhile: journal it
            world._publish_snapshot()
        if k.new_effects:  # only durable intents go to adapters
            world._dispatcher.submit(k.new_effects)
            k.new_effects = []

    def _surface_violations(self) -> None:
        world = self.world
        k = world._kernel
        found, k.violations = k.violations, []
        for i, v in enumerate(found):
            if world.on_violation == "raise":
                k.violations = found[i + 1:]  # the next run() raises the next one: none is dropped
                raise v
            if world.on_violation == "record":
                world.violations.append(v)
            else:
                world.on_violation(v)  # type: ignore[operator]

    def _surface_failures(self) -> None:
        k = self.world._kernel
        if k.failed_steps:
            first, *k.failed_steps = k.failed_steps  # the next run() raises the next one: none is dropped
            raise first

    # ---------------------------------------------------------------- hooks
    def _snapshot_due(self, event_id: int) -> bool:
        every = self.world.snapshot_every
        return bool(every) and event_id % every == 0

    def _after_commit(self, event_id: int) -> None:
        # runs after every commit: the common case (no snapshot, no new effect) costs two tests
        every = self.world.snapshot_every
        if every and event_id % every == 0:
            self.world._periodic_snapshot()  # the executor holds a quiet point here (barrier)
        k = self._kernel
        if k.new_effects:
            # only durable intents go to adapters: these once the journal is durable up to where the last of
            # them was queued (group commit syncs in the background, so this holds a little later)
            j = self._journal
            if len(k.new_effects) != self._effects_seen:
                self._effects_seen, self._effects_end = len(k.new_effects), j.index
            if j.durable_index >= self._effects_end:
                self.world._dispatcher.submit(k.new_effects)
                k.new_effects = []
                self._effects_seen = 0
