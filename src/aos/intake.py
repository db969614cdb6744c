"""Intake: how inputs enter a world — submission, backpressure, the hand-off to the running thread, admission.

Every input (a submitted event, a receipt handed in by the program, the
receipts adapters send back) is admitted through :meth:`Intake.admit`, the
one admission path: it journals and delivers the inputs through the kernel,
in order, and marks one commit point for them.

While one thread runs the world (``World.run`` or ``World.serve``), an event
another thread submits is admitted between two commits, steps in flight or
not, and held until the next ticket to assign, which its record names
(``EventAdmitted.visible_at``), so that a serial replay holds it just as long
(docs/scheduling.md): on the submitting thread while the threads executor's
commit loop waits for a step, else by the running thread
(:meth:`Intake.take_submitted`, the executor's ``intake`` hook). Other calls
from other threads (receipts, snapshots, reads) are handed over: queued with
a :class:`concurrent.futures.Future` and carried out by the running thread at
its next *quiet point*, when every assigned ticket has committed
(:meth:`Intake.at_quiet`).

Backpressure: at most ``World.max_queued`` inputs wait in mailboxes; a
submission to a full world raises :class:`~aos.errors.Backpressure`, waits for
room, or — when no run is in progress — runs steps itself to make room.

Acknowledgements: ``World.submit_async`` returns a future that resolves with
the event's admission number once its ``EventAdmitted`` record is durable
under the world's durability policy (written, for ``"none"``); the world
calls :meth:`Intake.acknowledge` after each sync.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Callable, Iterable

from aos.admission import Admitted
from aos.errors import Backpressure, ReceiptError, ReentrantCallError, WorldClosedError
from aos.executor import ThreadsExecutor
from aos.idempotency import check_key
from aos.receipt import Receipt

if TYPE_CHECKING:
    from aos.world import World

__all__ = ["Intake", "wait_limit"]


def wait_limit(timeout: float | None) -> float | None:
    """A caller's timeout for waits: None (no limit) beyond what the platform's waits take."""
    if timeout is not None and not timeout <= threading.TIMEOUT_MAX:
        if timeout != timeout:
            raise ValueError("timeout must be a number of seconds or None, got NaN")
        return None
    return timeout


class Intake:
    """A world's inputs: submission, backpressure, hand-off to the runner, admission, acknowledgements."""

    def __init__(self, world: "World") -> None:
        self.world = world
        self.cv = threading.Condition(threading.RLock())
        self.runner: int | None = None  # the thread running the world (run or serve), if any
        self.arrivals: deque[tuple[Callable[[], Any], Future[Any]]] = deque()  # calls handed over to the runner
        self.room_waiters = 0  # submitters blocked on a full world
        # events other threads submitted while the world runs: (event, its caller's future, submit_async's ack)
        self.submitted: deque[tuple[Admitted, Future[int], Future[int] | None]] = deque()
        # the idempotency keys of the events in ``submitted``: their callers' futures (a duplicate waits on it)
        self.pending_keys: dict[str, Future[int]] = {}
        self.waiting = False  # the runner waits for a receipt or a call: a submitted event must wake it
        # submit_async's futures, in journal order: (journal index its record ends at, future, seq)
        self.unacked: deque[tuple[int, Future[int], int]] = deque()
        self.acked = world._journal.durable_index  # journal records known durable (written, for "none")
        self._has_arrived: Callable[[], bool] | None = None  # receipts came in between steps (background mode)
        self._arrived: Callable[[], list[Receipt]] = list

    def take_receipts_from(self, has_arrived: Callable[[], bool] | None,
                           arrived: Callable[[], list[Receipt]]) -> None:
        """Where receipts that arrive while steps run come from (the effects mode's settling strategy)."""
        self._has_arrived = has_arrived
        self._arrived = arrived

    # ------------------------------------------------------------ admission
    def admit(self, inputs: Iterable[Admitted | Receipt],
              refused: list[tuple[Receipt, ReceiptError]] | None = None) -> list[int]:
        """Admit events and receipts in order; returns their admission numbers.

        The one admission path of a world (the caller is the thread that runs
        it, at a quiet point). A receipt that does not apply raises
        :class:`ReceiptError`, changing nothing — or, given ``refused`` (the
        receipts adapters sent), is kept there while the others are admitted.
        One commit point marks the end of them all.
        """
        world = self.world
        k = world._kernel
        seqs: list[int] = []
        for item in inputs:
            if isinstance(item, Receipt):
                try:
                    seqs.append(k.admit_receipt(item))
                except ReceiptError as exc:
                    if refused is None:
                        raise
                    refused.append((item, exc))
            else:
                seqs.append(k.admit(item))
        if seqs and world._journal.commit_point():
            world.durable_event_id = k.last_event_id
        return seqs

    def accept(self, source: int, n: int, adm: Admitted) -> bool:
        """``World.accept`` on the running thread: admit ``adm`` as message ``n`` of ``source`` unless a duplicate."""
        world = self.world
        k = world._kernel
        if not k.accept(source, n, adm):
            return False
        if world._journal.commit_point():
            world.durable_event_id = k.last_event_id
        return True

    def admit_arrived(self) -> int:
        """Admit the receipts adapters sent back so far; how many applied."""
        return len(self.admit(self._arrived(), self.world.refused_receipts))

    # ----------------------------------------------------------- submission
    def submit(self, schema: Any, value: Any, block: bool, timeout: float | None,
               durable: bool, idempotency_key: str | None = None) -> int | Future[int]:
        """``World.submit`` (``durable=False``) and ``World.submit_async`` (``durable=True``).

        With an ``idempotency_key`` that admitted an event already (the index
        of keys, :mod:`aos.idempotency`) nothing is admitted: the first
        admission's number is returned (for ``submit_async``, a future that
        resolves with it once the journal up to now is durable). When the first
        event with the key is still queued here for the running thread, a
        duplicate waits for its admission (up to ``timeout``) and then answers so.
        """
        world = self.world
        k = world._live()
        if idempotency_key is not None:
            idempotency_key = check_key(idempotency_key, f"submit of {schema!r}")
        adm = k.admission.check(schema, value)
        adm.idempotency_key = idempotency_key
        if timeout is not None:
            timeout = wait_limit(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self._submit(adm, block, timeout, deadline, durable)
            if not isinstance(result, _Queued):
                return result
            # the first event with this key waits for the running thread: its outcome decides
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                result.call.exception(left)
            except FutureTimeout:
                raise Backpressure(f"world {world.path} did not admit the first event with idempotency key "
                                   f"{idempotency_key!r} within {timeout} s; this one was not admitted") from None
            except CancelledError:
                pass  # its caller gave up waiting: nothing was admitted, so this one may be
            world._live()

    def _duplicate(self, seq: int, durable: bool) -> int | Future[int]:
        """The answer to a submission whose idempotency key admitted event ``seq`` (the caller holds ``cv``)."""
        if not durable:
            return seq
        ack: Future[int] = Future()
        ack.set_running_or_notify_cancel()
        self.unacked.append((self.world._journal.index, ack, seq))  # durable with what is written now
        self.acknowledge(self.world._journal.durable_index)
        return ack

    def _known(self, key: str | None) -> int | _Queued | None:
        """What ``key`` already stands for: an admission number, an event queued for the runner, or nothing."""
        if key is None:
            return None
        seq = self.world._kernel.submit_keys.get(key)
        if seq is not None:
            return seq
        first = self.pending_keys.get(key)
        if first is None:
            return None
        if self.runner is None or self.runner == threading.get_ident():
            self.take_submitted()  # admit what waits (in order): this thread admits
            return self.world._kernel.submit_keys.get(key)
        return _Queued(first)

    def _submit(self, adm: Admitted, block: bool, timeout: float | None, deadline: float | None,
                durable: bool) -> int | Future[int] | _Queued:
        world = self.world
        key = adm.idempotency_key
        with self.cv:
            known = self._known(key)
            if known is not None:
                return known if isinstance(known, _Queued) else self._duplicate(known, durable)
            ack: Future[int] | None = None
            if durable:
                ack = Future()
                ack.set_running_or_notify_cancel()  # an admitted event cannot be withdrawn: cancel() says False
            while self.full():
                if not block:
                    raise Backpressure(f"world {world.path} has {self.queued()} inputs queued "
                                       f"(max_queued={world.max_queued}); the event was not admitted")
                if deadline is not None and time.monotonic() >= deadline:
                    raise Backpressure(f"world {world.path} stayed full for {timeout} s "
                                       f"(max_queued={world.max_queued}); the event was not admitted")
                if self.runner is None:
                    self._make_room(deadline)
                    continue
                self.room_waiters += 1
                try:
                    self.cv.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
                finally:
                    self.room_waiters -= 1
            if key is not None:  # another submission may have taken the key while this one waited for room
                known = self._known(key)
                if known is not None:
                    return known if isinstance(known, _Queued) else self._duplicate(known, durable)
            if self.runner is None or self.runner == threading.get_ident():
                seq = self._admit_submitted(adm, ack)
                return seq if ack is None else ack
            ex = world._executor
            threads = ex if isinstance(ex, ThreadsExecutor) else None
            if threads is not None and threads.on_worker():
                raise ReentrantCallError(f"a reducer step called world {world.path}.submit; reducers emit events "
                                         "through ctx.emit")
            if threads is not None and threads.enter():
                # The commit loop waits for a step, between two commits: admit the event on this thread
                # (held until the next ticket to assign, like any admission with steps in flight).
                try:
                    seq = self._admit_submitted(adm, ack)
                finally:
                    threads.leave()
                threads.arrive()  # a loop waiting with nothing to schedule assigns it now
                return seq if ack is None else ack
            # Else the running thread admits it between two commits (Hooks.intake), or at its next
            # quiet point: steps in flight need not commit first (docs/scheduling.md).
            call: Future[int] = Future()
            self.submitted.append((adm, call, ack))
            if key is not None:
                self.pending_keys[key] = call
            if threads is not None:
                threads.arrive()
            if self.waiting:
                world._dispatcher.wake()  # the run waits for a receipt: it comes round to admit the event
            self.cv.notify_all()  # so does a serving world waiting for work
        if ack is not None:
            call.add_done_callback(lambda c: _pass_failure(c, ack))
            return ack
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return call.result(left)
        except FutureTimeout:
            if call.cancel():  # the runner has not taken it: nothing was admitted
                raise Backpressure(f"world {world.path} did not admit the event within {timeout} s; "
                                   "the event was not admitted") from None
            return call.result()  # taken just now: its outcome follows at once

    def _admit_submitted(self, adm: Admitted, ack: Future[int] | None) -> int:
        seq = self.admit((adm,))[0]
        if ack is not None:
            self.unacked.append((self.world._journal.index, ack, seq))
            self.acknowledge(self.world._journal.durable_index)  # durability "always": durable already
        return seq

    def submit_receipt(self, receipt: Receipt) -> int:
        """``World.submit_receipt``: admit one receipt or raise, changing nothing."""
        self.world._live()
        return self.on_runner(lambda: self.admit((receipt,))[0])  # type: ignore[no-any-return]

    # --------------------------------------------------------- backpressure
    def queued(self) -> int:
        s = self.world._kernel.sequencer
        return s.queued + s.pending + len(self.arrivals) + len(self.submitted)

    def full(self) -> bool:
        return self.queued() >= self.world.max_queued

    def _make_room(self, deadline: float | None) -> None:
        """Run steps on this thread until the world is no longer full (no run in progress)."""
        world = self.world
        self.cv.release()
        try:
            step = max(1, world.max_queued // 10)
            if world.run(max_steps=step).steps == 0 and self.full():
                raise Backpressure(f"world {world.path} is full (max_queued={world.max_queued}) and no step "
                                   "can run to make room")
        finally:
            self.cv.acquire()

    # ------------------------------------------------ calls from other threads
    def hand_over(self, fn: Callable[[], Any]) -> Future[Any]:
        """Queue ``fn`` for the running thread, at its next quiet point (the caller holds ``cv``).

        A quiet point is a moment when every assigned ticket has committed:
        the journal, the cells and the budgets are consistent there, and an
        input admitted there lands where a serial replay admits it too.
        """
        call: Future[Any] = Future()
        self.arrivals.append((fn, call))
        self.world._dispatcher.wake()  # a run waiting for a receipt comes round to its quiet point now
        self.cv.notify_all()  # so does a serving world waiting for work
        return call

    def on_runner(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` now, or — while another thread runs the world — at that run's next quiet point."""
        world = self.world
        with self.cv:
            if self.runner is None or self.runner == threading.get_ident():
                world._live()
                return fn()
            on_worker = getattr(world._executor, "on_worker", None)
            if on_worker is not None and on_worker():
                raise ReentrantCallError(f"a reducer step called world {world.path}; reducers read and write "
                                         "through ctx only")
            call = self.hand_over(fn)
        return call.result()

    def take_calls(self) -> None:
        """Carry out the calls handed over (the caller holds ``cv``; nothing is in flight)."""
        world = self.world
        while self.arrivals:
            fn, call = self.arrivals.popleft()
            if not call.set_running_or_notify_cancel():
                continue  # its caller gave up waiting (a submit's timeout)
            try:
                if world._closed is not None:
                    raise WorldClosedError(f"world {world.path} {world._closed}")
                call.set_result(fn())
            except BaseException as exc:  # e.g. a refused receipt: the caller hears of it
                call.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    def take_submitted(self) -> None:
        """Admit the events other threads submitted (on the running thread, between two commits).

        Steps may be in flight: each event is held until the next ticket to
        assign (``Kernel.admit``), which its record names. The callers hear
        their admission numbers once the records are journaled (and durable,
        with ``durability="always"``).
        """
        world = self.world
        k = world._kernel
        done: list[tuple[Future[int], int, Future[int] | None]] = []
        with self.cv:
            try:
                while self.submitted:
                    adm, call, ack = self.submitted.popleft()
                    if adm.idempotency_key is not None:
                        self.pending_keys.pop(adm.idempotency_key, None)
                    if not call.set_running_or_notify_cancel():
                        continue  # its caller gave up waiting (a submit's timeout)
                    try:
                        if world._closed is not None:
                            raise WorldClosedError(f"world {world.path} {world._closed}")
                        done.append((call, k.admit(adm), ack))
                    except BaseException as exc:
                        call.set_exception(exc)
                        if not isinstance(exc, Exception):
                            raise
                if done and world._journal.commit_point():
                    world.durable_event_id = k.last_event_id
            finally:
                end = world._journal.index
                for call, seq, ack in done:
                    if ack is not None:
                        self.unacked.append((end, ack, seq))
                    call.set_result(seq)
                if done:
                    self.acknowledge(world._journal.durable_index)
            if self.room_waiters:
                self.cv.notify_all()

    # ----------------------------------------------------- the executor's hooks
    def at_quiet(self) -> None:
        """Nothing is in flight: admit the events submitted, the receipts that arrived and the calls handed over."""
        if self.submitted:
            self.take_submitted()
        has_arrived = self._has_arrived
        if has_arrived is not None and has_arrived():
            self.admit_arrived()
        if self.arrivals:
            with self.cv:
                self.take_calls()
                self.cv.notify_all()
        elif self.room_waiters:
            with self.cv:
                self.cv.notify_all()

    def wants_quiet(self) -> bool:
        return bool(self.arrivals)

    # ---------------------------------------------------------- acknowledgements
    def acknowledge(self, durable_index: int) -> None:
        """The journal's records before ``durable_index`` are durable: resolve the futures they complete."""
        if durable_index > self.acked:
            self.acked = durable_index
        unacked = self.unacked
        while unacked and unacked[0][0] <= self.acked:
            _at, ack, seq = unacked.popleft()
            ack.set_result(seq)

    def abandon_unacked(self, why: str) -> None:
        """The world closed before these events were known durable: their futures fail."""
        while self.unacked:
            _at, ack, seq = self.unacked.popleft()
            ack.set_exception(WorldClosedError(f"world {self.world.path} {why} before event {seq} was known "
                                               "to be durable; reopen it to see whether it is in the journal"))


class _Queued:
    """The first event with an idempotency key, queued for the running thread: its caller's future."""

    __slots__ = ("call",)

    def __init__(self, call: Future[int]) -> None:
        self.call = call


def _pass_failure(call: Future[Any], ack: Future[int]) -> None:
    """A handed-over admission that failed fails the acknowledgement future too."""
    exc = call.exception()
    if exc is not None and not ack.done():
        ack.set_exception(exc)
