"""Adapters execute effects outside the deterministic core and answer with receipts.

An adapter is a callable ``fn(request) -> result`` (or an ``async def``) for
one effect kind. ``request`` is an :class:`EffectRequest`; the result is an
:class:`Outcome`, or any value in the value model (meaning status ``"ok"``,
that payload, and the reserved cost as the actual cost). An adapter that
raises produces a receipt with status ``"error"`` and cost 0.

Delivery is at least once, keyed by the idempotency key: an intent whose
receipt did not reach the journal is dispatched again when the world reopens,
so adapters with outside effects should deduplicate by
``request.idempotency_key``.

The :class:`Dispatcher` runs adapters in one of three modes:

* ``background`` (default): sync adapters on a thread pool, async ones on an
  event loop thread; receipts are admitted as they arrive (their order is an
  input, journaled like any other).
* ``inline``: when the world has no step left to run, every queued intent is
  executed (async ones concurrently) and the receipts are admitted in queue
  order, so a run's journal depends on its inputs only.
* ``manual``: nothing is dispatched; the embedding program reads
  ``World.pending_effects()`` and hands receipts to ``World.submit_receipt``.

Each intent may have an :class:`~aos.effect_policy.EffectPolicy` (timeout,
retries with backoff and jitter, dead letter): its attempts run as one task
on the event loop thread (a sync adapter on the thread pool), their progress
kept durably in the world's side state (:mod:`aos.effect_state`), and only
the final answer becomes a receipt. Intents without a policy take the plain
path: one attempt, an exception being an error receipt.

Built in: ``timer.set`` (``{"after_ms": n}`` or ``{"at": unix_ms}``: a
receipt at the deadline, fixed durably at the first dispatch, so a reopen
does not move it), ``blob.put`` (``{"data": bytes}`` → ``{"hash", "size"}``)
and ``blob.get`` (``{"hash": hex}`` → ``{"data": bytes}``) over the world's
blob store.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, cast

from aos import canonical
from aos.blobs import BlobStore
from aos.effect_policy import EffectPolicy, Policies
from aos.effect_state import EffectState, now_ms
from aos.errors import AosError, EffectTimeoutError, InvalidTimerError
from aos.outbox import QueuedEffect
from aos.receipt import Receipt, ReceiptSigner
from aos.step import failure_message

__all__ = ["EffectRequest", "Outcome", "Adapter", "Dispatcher", "builtin_adapters", "MODES", "WAKE"]


class _Wake:
    """What :meth:`Dispatcher.wait` returns when :meth:`Dispatcher.wake` was called instead of a receipt arriving."""

    def __repr__(self) -> str:
        return "WAKE"


WAKE = _Wake()

MODES = ("background", "inline", "manual")


@dataclass(frozen=True, slots=True)
class EffectRequest:
    """What an adapter is asked to do."""

    kind: str
    params: Any
    cap: str
    idempotency_key: str
    intent_hash: bytes
    cost: int  # reserved


@dataclass(frozen=True, slots=True)
class Outcome:
    """An adapter's answer: status ``"ok"`` or ``"error"``, a payload, the actual cost (None: as reserved)."""

    status: str = "ok"
    payload: Any = None
    cost: int | None = None


Adapter = Callable[[EffectRequest], "Outcome | Any | Awaitable[Outcome | Any]"]


async def timer_deadline(params: Any, intent_hash: bytes, state: EffectState) -> tuple[int, dict[str, int]]:
    """A ``timer.set`` intent's deadline (unix ms) and its receipt's payload.

    ``params`` hold exactly one of ``after_ms`` (an int >= 0, counted from the
    intent's first dispatch) or ``at`` (unix ms, an int >= 0); other keys are
    left alone. The deadline of ``after_ms`` is kept in ``state`` (durably)
    before the timer waits, so a dispatch after a reopen keeps it. The
    payload echoes the params (``{"after_ms": n}`` or ``{"at": t}``), never
    the wall-clock deadline, so the journal depends on the inputs only.
    """
    given = [k for k in ("after_ms", "at") if isinstance(params, dict) and k in params]
    if len(given) != 1:
        got = sorted(params) if isinstance(params, dict) else params
        raise InvalidTimerError(f"timer.set needs params with exactly one of 'after_ms' (ms from the first "
                                f"dispatch) or 'at' (unix ms), got {got!r}")
    name = given[0]
    value = params[name]
    if type(value) is not int or value < 0:
        raise InvalidTimerError(f"timer.set params {name!r} must be an int >= 0, got {value!r}")
    if name == "at":
        return value, {"at": value}
    return await state.fix_deadline(intent_hash, now_ms() + value), {"after_ms": value}


def builtin_adapters(blobs: BlobStore, state: EffectState | None = None) -> dict[str, Adapter]:
    timers = state if state is not None else EffectState(None)

    async def timer_set(req: EffectRequest) -> Outcome:
        deadline, payload = await timer_deadline(req.params, req.intent_hash, timers)
        wait = deadline - now_ms()
        if wait > 0:
            await asyncio.sleep(wait / 1000.0)
        return Outcome("ok", payload)

    def blob_put(req: EffectRequest) -> Outcome:
        data = req.params.get("data") if isinstance(req.params, dict) else None
        if not isinstance(data, bytes):
            raise ValueError("blob.put needs params {'data': bytes}")
        return Outcome("ok", {"hash": blobs.put(data), "size": len(data)})

    def blob_get(req: EffectRequest) -> Outcome:
        digest = req.params.get("hash") if isinstance(req.params, dict) else None
        return Outcome("ok", {"data": blobs.get(digest)})  # type: ignore[arg-type]

    return {"timer.set": timer_set, "blob.put": blob_put, "blob.get": blob_get}


class Dispatcher:
    """Runs adapters for queued effects and collects signed receipts."""

    def __init__(self, adapters: Mapping[str, Adapter], signer: ReceiptSigner, mode: str = "background",
                 threads: int = 4, policies: Policies | None = None, state: EffectState | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"effects mode must be one of {MODES}, got {mode!r}")
        for kind, fn in adapters.items():
            if not isinstance(kind, str) or not callable(fn):
                raise TypeError(f"adapters must map effect kinds to callables, got {kind!r}: {fn!r}")
        self.adapters = dict(adapters)
        self.signer = signer
        self.mode = mode
        self.threads = threads
        self._arrived: queue.SimpleQueue[Receipt | _Wake] = queue.SimpleQueue()
        self._inflight: set[bytes] = set()
        self._waiting: list[QueuedEffect] = []  # inline mode
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dispatched = 0
        self.policies = policies if policies is not None else Policies()
        self.state = state if state is not None else EffectState(None)
        self.attempts_failed = 0  # attempts that raised or timed out (under a policy)
        self.dead_lettered = 0  # intents whose last attempt failed: dead-letter receipt or parked

    # ------------------------------------------------------------- execution
    def _request(self, e: QueuedEffect) -> EffectRequest:
        return EffectRequest(e.kind, canonical.decode_trusted(e.params), e.cap, e.idempotency_key,
                             e.intent_hash, e.cost)

    def _receipt(self, e: QueuedEffect, result: Any = None, exc: BaseException | None = None) -> Receipt:
        if exc is None:
            out = result if isinstance(result, Outcome) else Outcome("ok", result, None)
            cost = e.cost if out.cost is None else out.cost
            try:
                return self.signer.make(e.intent_hash, out.status, out.payload, cost)
            except (AosError, TypeError, ValueError) as bad:
                exc = bad
        name, msg = failure_message(exc)
        return self.signer.make(e.intent_hash, "error", {"error": name, "message": msg}, 0)

    def _adapter(self, e: QueuedEffect) -> Adapter | None:
        return self.adapters.get(e.kind)

    def _run_sync(self, e: QueuedEffect) -> Receipt:
        fn = self._adapter(e)
        if fn is None:
            return self._receipt(e, exc=LookupError(f"no adapter registered for effect kind {e.kind!r}"))
        try:
            return self._receipt(e, fn(self._request(e)))
        except Exception as exc:  # an adapter's failure is the effect's failure
            return self._receipt(e, exc=exc)

    async def _run_async(self, e: QueuedEffect) -> Receipt:
        fn = self._adapter(e)
        try:
            return self._receipt(e, await fn(self._request(e)))  # type: ignore[misc]
        except Exception as exc:
            return self._receipt(e, exc=exc)

    def _is_async(self, e: QueuedEffect) -> bool:
        fn = self._adapter(e)
        return fn is not None and inspect.iscoroutinefunction(fn)

    # ------------------------------------------------------------- policies
    def policy(self, e: QueuedEffect) -> EffectPolicy | None:
        return self.policies.for_effect(e.kind, e.cap) if self.policies else None

    def _sync_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="aos-adapter")
            return self._pool

    async def _attempt(self, e: QueuedEffect, timeout: float | None) -> Any:
        """One attempt: the adapter's answer, or its exception (:class:`EffectTimeoutError` past ``timeout``)."""
        fn = self._adapter(e)
        if fn is None:
            raise LookupError(f"no adapter registered for effect kind {e.kind!r}")
        req = self._request(e)
        is_async = inspect.iscoroutinefunction(fn)
        if is_async:
            answer: Awaitable[Any] = fn(req)  # type: ignore[assignment]
        else:  # on the pool: a sync adapter past its timeout keeps its thread, and its answer is discarded
            answer = asyncio.get_running_loop().run_in_executor(self._sync_pool(), fn, req)
        if timeout is None:
            return await answer
        try:
            return await asyncio.wait_for(answer, timeout)
        except asyncio.TimeoutError:
            late = "cancelled" if is_async else "its late answer will be discarded"
            raise EffectTimeoutError(f"the adapter of effect kind {e.kind!r} did not answer within {timeout:g} s "
                                     f"({late})") from None

    async def _attempts(self, e: QueuedEffect, policy: EffectPolicy) -> Receipt | None:
        """Attempt ``e`` under ``policy``: its receipt, or None once parked (dead letter ``"park"``).

        Progress is kept in the side state before each wait, so a world that
        reopens goes on from the attempts already made, not before the next
        one is due.
        """
        h = e.intent_hash
        entry = self.state.get(h)
        failed = entry.attempts if entry is not None else 0
        error = (entry.last_error or "", entry.last_message or "") if entry is not None else ("", "")
        if entry is not None and entry.next_attempt_ms is not None:
            wait = entry.next_attempt_ms - now_ms()
            if wait > 0:
                await asyncio.sleep(wait / 1000.0)
        while failed < policy.attempts:
            try:
                answer = await self._attempt(e, policy.timeout)
            except Exception as exc:  # the attempt failed: retry, or dead letter after the last one
                failed += 1
                self.attempts_failed += 1
                error = failure_message(exc)
                if failed >= policy.attempts:
                    break
                delay = policy.delay(failed)
                self.state.update(h, attempts=failed, next_attempt_ms=now_ms() + int(delay * 1000),
                                  last_error=error[0], last_message=error[1])
                await asyncio.sleep(delay)
                continue
            return self._receipt(e, answer)  # an answer, "ok" or "error": final
        self.dead_lettered += 1
        if policy.dead_letter == "park":
            self.state.update(h, attempts=failed, next_attempt_ms=None, parked=True, retry=False,
                              last_error=error[0], last_message=error[1])
            return None
        return self.dead_letter_receipt(e, failed, error)

    def dead_letter_receipt(self, e: QueuedEffect, attempts: int | None = None,
                            error: tuple[str, str] | None = None) -> Receipt:
        """The error receipt that settles ``e`` after its last attempt: ``{"error", "message", "attempts"}``."""
        entry = self.state.get(e.intent_hash)
        if attempts is None:
            attempts = entry.attempts if entry is not None else 0
        if error is None:
            error = (entry.last_error or "", entry.last_message or "") if entry is not None else ("", "")
        return self.signer.make(e.intent_hash, "error",
                                {"error": error[0], "message": error[1], "attempts": attempts}, 0)

    def _finish(self, e: QueuedEffect, fut: Any) -> None:
        """The end of a task under a policy (background mode): deliver its receipt, or note it parked."""
        try:
            r = fut.result()
        except BaseException as exc:  # cancelled at close (dispatched again at reopen), or a failure of ours
            if fut.cancelled():
                with self._lock:
                    self._inflight.discard(e.intent_hash)
                return
            r = self._receipt(e, exc=exc)
        if r is None:  # parked: nothing to admit, but a run waiting for this effect must see it is done
            with self._lock:
                self._inflight.discard(e.intent_hash)
            self._arrived.put(WAKE)
            return
        self._deliver(r)

    def retry(self, e: QueuedEffect) -> None:
        """Dispatch a parked intent again, its attempts counted afresh."""
        self.state.update(e.intent_hash, parked=False, retry=False, attempts=0, next_attempt_ms=None)
        self.submit([e])

    # ----------------------------------------------------------- background
    def _ensure_background(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="aos-adapter")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, name="aos-adapter-loop",
                                                 daemon=True)
            self._loop_thread.start()

    def _run_and_deliver(self, e: QueuedEffect) -> None:
        self._deliver(self._run_sync(e))

    def _deliver(self, r: Receipt) -> None:
        if self.state.entries:
            self.state.forget(r.intent_hash)  # settled (or refused): its progress is of no more use
        self._arrived.put(r)  # before it leaves _inflight, so that `busy` never misses it
        with self._lock:
            self._inflight.discard(r.intent_hash)

    @property
    def busy(self) -> bool:
        """Background mode: a dispatched effect has not answered yet, or a receipt waits to be taken."""
        with self._lock:
            return bool(self._inflight) or not self._arrived.empty()

    def submit(self, effects: list[QueuedEffect]) -> None:
        """Hand queued (and durable) effects to their adapters."""
        if self.mode == "manual" or not effects:
            return
        if self.state.entries:  # parked (dead-lettered) intents wait for a retry by hand
            effects = [e for e in effects if not self.state.is_parked(e.intent_hash)]
        if self.mode == "inline":
            self._waiting.extend(effects)
            return
        self._ensure_background()
        for e in effects:
            with self._lock:
                if e.intent_hash in self._inflight:
                    continue
                self._inflight.add(e.intent_hash)
            self.dispatched += 1
            policy = self.policy(e)
            if policy is not None:
                task = asyncio.run_coroutine_threadsafe(self._attempts(e, policy), self._loop)  # type: ignore[arg-type]
                task.add_done_callback(lambda f, e=e: self._finish(e, f))  # type: ignore[misc]
            elif self._is_async(e):
                fut = asyncio.run_coroutine_threadsafe(self._run_async(e), self._loop)  # type: ignore[arg-type]
                fut.add_done_callback(lambda f: self._deliver(f.result()))
            else:
                cast(ThreadPoolExecutor, self._pool).submit(self._run_and_deliver, e)  # (made just above)

    def has_arrived(self) -> bool:
        """Whether a receipt is waiting to be taken (background mode)."""
        return not self._arrived.empty()

    def take(self) -> list[Receipt]:
        """Receipts that have arrived (background mode), in arrival order."""
        out: list[Receipt] = []
        if self._arrived.empty():  # the common case, checked once per step: no exception raised
            return out
        while True:
            try:
                got = self._arrived.get_nowait()
            except queue.Empty:
                return out
            if got is not WAKE:
                out.append(cast(Receipt, got))

    def wake(self) -> None:
        """Make a :meth:`wait` in progress (or the next one) return :data:`WAKE` (background mode)."""
        if self.mode == "background":
            self._arrived.put(WAKE)

    def wait(self, timeout: float | None) -> Receipt | _Wake | None:
        """Block until a receipt arrives (background mode), :meth:`wake` is called (``WAKE``) or ``timeout`` (None)."""
        try:
            return self._arrived.get(timeout=timeout)
        except queue.Empty:
            return None

    # ---------------------------------------------------------------- inline
    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def run_inline(self) -> list[Receipt]:
        """Execute every waiting effect; receipts come back in queue order."""
        batch, self._waiting = self._waiting, []
        self.dispatched += len(batch)
        receipts: list[Receipt | None] = [None] * len(batch)
        pending: list[tuple[int, QueuedEffect, EffectPolicy | None]] = []
        for i, e in enumerate(batch):
            policy = self.policy(e)
            if policy is not None or self._is_async(e):
                pending.append((i, e, policy))
            else:
                receipts[i] = self._run_sync(e)
        if pending:
            async def gather() -> list[Receipt | None]:
                return await asyncio.gather(*(self._run_async(e) if p is None else self._attempts(e, p)
                                              for _i, e, p in pending))

            for (i, _e, _p), r in zip(pending, asyncio.run(gather()), strict=True):
                receipts[i] = r
        if self.state.entries:
            for r in receipts:
                if r is not None:
                    self.state.forget(r.intent_hash)
        return [r for r in receipts if r is not None]

    def close(self) -> None:
        try:
            self.state.flush()
        except OSError:
            pass  # only settled intents' entries were not yet dropped: the next open drops them
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._loop is not None:
            loop = self._loop

            def stop() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()  # effects in flight are dispatched again when the world reopens
                loop.call_soon(loop.stop)

            loop.call_soon_threadsafe(stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            if not loop.is_running():
                loop.close()
            self._loop = None
