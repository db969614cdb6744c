"""The world's effect side state: attempts, parked (dead-lettered) intents and timer deadlines.

Kept outside the journal, in ``<world>/effects.cbor`` (canonical CBOR,
replaced atomically and fsynced on every change), because none of it is an
input of the deterministic core: it says how far the dispatch of an intent
that still awaits its receipt has come. A change is written before the
dispatcher acts on it (a retry waits, a timer sleeps, an intent is parked),
so a world that reopens after a crash resumes where it was:

* the attempts already made count against the policy's retries, and the
  next attempt is not made before the time it was due;
* a parked intent stays parked until it is retried (``World.retry_effect``,
  or ``aos effects WORLD --retry HASH`` on a closed world, which marks it
  for retry at the next open) or given up;
* a timer's deadline, fixed at its first dispatch, does not move.

Entries of intents that have their receipt are dropped at the next write,
close or open. The file is small: one entry per intent in progress.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from aos import canonical
from aos.errors import DeadLetterError, EffectStateError
from aos.files import write_atomic

__all__ = ["EffectEntry", "EffectState", "EffectStatus", "SIDE_FILE", "now_ms", "effect_status", "match_intent"]

SIDE_FILE = "effects.cbor"
FORMAT = 1


def now_ms() -> int:
    """Wall-clock time in unix milliseconds (what deadlines and next attempts are kept in)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class EffectEntry:
    """Where the dispatch of one intent stands."""

    attempts: int = 0  # failed attempts made so far
    next_attempt_ms: int | None = None  # not before this (unix ms), after a failed attempt
    deadline_ms: int | None = None  # a timer's fixed deadline (unix ms)
    parked: bool = False  # dead-lettered: not dispatched until retried
    retry: bool = False  # parked, marked for retry at the next open
    last_error: str | None = None  # the last failed attempt's error type and message
    last_message: str | None = None

    def to_wire(self) -> list[Any]:
        return [self.attempts, self.next_attempt_ms, self.deadline_ms, self.parked, self.retry,
                self.last_error, self.last_message]


class EffectState:
    """The side state of one world, shared by the dispatcher's threads (every change is durable when it returns)."""

    def __init__(self, path: Path | None, entries: dict[bytes, EffectEntry] | None = None) -> None:
        self.path = path  # None: kept in memory only (worlds opened without a directory of their own)
        self.entries: dict[bytes, EffectEntry] = entries or {}
        self._lock = threading.Lock()
        self._dirty = False  # entries forgotten since the last write
        self._flush: asyncio.Future[None] | None = None  # the next write of timer deadlines (fix_deadline)

    @classmethod
    def load(cls, world: Path) -> "EffectState":
        """The state kept in ``world`` (empty when the file does not exist)."""
        path = world / SIDE_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise EffectStateError(f"world {world}: {SIDE_FILE} cannot be read: {exc}") from None
        try:
            doc = canonical.decode(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("effects"), list):
                raise ValueError(f"not an effect state of format {FORMAT}")
            entries: dict[bytes, EffectEntry] = {}
            for item in doc["effects"]:
                h, *fields = item
                if not isinstance(h, bytes) or len(h) != 32 or len(fields) != 7:
                    raise ValueError(f"malformed entry {item!r}")
                entries[h] = EffectEntry(*fields)
        except (ValueError, TypeError) as exc:
            raise EffectStateError(f"world {world}: {SIDE_FILE} is damaged ({exc}); remove it to start every "
                                   "pending intent's attempts afresh (parked intents are then dispatched again, "
                                   "timers re-armed from their reopen)") from None
        return cls(path, entries)

    # ------------------------------------------------------------- reading
    def get(self, intent_hash: bytes) -> EffectEntry | None:
        return self.entries.get(intent_hash)

    def is_parked(self, intent_hash: bytes) -> bool:
        e = self.entries.get(intent_hash)
        return e is not None and e.parked

    def parked(self) -> list[bytes]:
        return [h for h, e in self.entries.items() if e.parked]

    # ------------------------------------------------------------- writing
    def _save(self) -> None:
        if self.path is None:
            return
        self._dirty = False
        doc = {"format": FORMAT, "effects": [[h, *e.to_wire()] for h, e in sorted(self.entries.items())]}
        write_atomic(self.path, canonical.encode(doc, where="effect state"))

    def update(self, intent_hash: bytes, **changes: Any) -> EffectEntry:
        """Change (or create) the entry of ``intent_hash``, durably."""
        with self._lock:
            entry = replace(self.entries.get(intent_hash) or EffectEntry(), **changes)
            self.entries[intent_hash] = entry
            self._save()
            return entry

    async def fix_deadline(self, intent_hash: bytes, proposed_ms: int) -> int:
        """A timer's deadline: the one kept, else ``proposed_ms``, kept durably before this returns.

        The timers dispatched together share one durable write.

        The entry is set at once; the write is scheduled on the running loop
        behind the coroutines already ready there (a batch of timers started
        by one ``gather`` or one dispatch), and each waits for it before it
        returns: no timer waits on a deadline that is not durable.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self.entries.get(intent_hash)
            if entry is not None and entry.deadline_ms is not None:
                return entry.deadline_ms
            self.entries[intent_hash] = replace(entry or EffectEntry(), deadline_ms=proposed_ms)
            if self.path is None:
                return proposed_ms
            fut = self._flush
            if fut is None or fut.get_loop() is not loop or fut.done():
                fut = self._flush = loop.create_future()
                loop.call_soon(self._write_deadlines, fut)
        await asyncio.shield(fut)
        return proposed_ms

    def _write_deadlines(self, fut: "asyncio.Future[None]") -> None:
        try:
            with self._lock:
                if self._flush is fut:
                    self._flush = None
                self._save()
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)

    def forget(self, intent_hash: bytes) -> None:
        """Drop the entry of a settled intent (in memory; the next write or open makes it durable)."""
        with self._lock:
            if self.entries.pop(intent_hash, None) is not None:
                self._dirty = True

    def flush(self) -> None:
        """Write the entries forgotten since the last write (at close)."""
        with self._lock:
            if self._dirty:
                self._save()

    def prepare(self, queued: Iterable[bytes]) -> list[bytes]:
        """At open: drop the entries of settled intents, unpark those marked for retry; returns the unparked."""
        live = set(queued)
        with self._lock:
            before = len(self.entries)
            self.entries = {h: e for h, e in self.entries.items() if h in live}
            unparked = [h for h, e in self.entries.items() if e.parked and e.retry]
            for h in unparked:
                self.entries[h] = replace(self.entries[h], parked=False, retry=False, attempts=0,
                                          next_attempt_ms=None)
            if unparked or len(self.entries) != before:
                self._save()
            return unparked

    def mark_retry(self, intent_hash: bytes) -> EffectEntry:
        """Mark a parked intent for retry at the next open (the world must be closed: ``aos effects --retry``)."""
        with self._lock:
            entry = self.entries[intent_hash]
            entry = self.entries[intent_hash] = replace(entry, retry=True)
            self._save()
            return entry


@dataclass(frozen=True, slots=True)
class EffectStatus:
    """A pending intent and its dispatch progress (``World.effect_status()``, ``aos effects``)."""

    intent_hash: bytes
    kind: str
    cap: str
    idempotency_key: str
    attempts: int  # failed attempts so far (reset by a retry by hand)
    next_attempt_ms: int | None  # unix ms: not before then, after a failed attempt
    deadline_ms: int | None  # unix ms: a timer's fixed deadline
    parked: bool  # dead-lettered, awaiting a retry or give-up by hand
    retry: bool  # parked and marked for retry at the next open
    last_error: str | None
    last_message: str | None


def effect_status(pending: Iterable[tuple[bytes, str, str, str]], state: EffectState) -> list[EffectStatus]:
    """``pending`` (intent hash, kind, cap, idempotency key), in queue order, joined with ``state``."""
    out = []
    for h, kind, cap, key in pending:
        e = state.get(h) or EffectEntry()
        out.append(EffectStatus(h, kind, cap, key, e.attempts, e.next_attempt_ms, e.deadline_ms, e.parked, e.retry,
                                e.last_error, e.last_message))
    return out


def match_intent(pending: Iterable[bytes], spec: bytes | str, parked: Iterable[bytes] | None = None) -> bytes:
    """The pending intent ``spec`` names (its hash, hex, or a unique hex prefix); with ``parked``, it must be one.

    Raises :class:`DeadLetterError` saying what did not match.
    """
    pending = list(pending)
    if isinstance(spec, bytes):
        found = [h for h in pending if h == spec]
        shown = spec.hex()
    elif isinstance(spec, str) and spec and all(c in "0123456789abcdefABCDEF" for c in spec):
        found = [h for h in pending if h.hex().startswith(spec.lower())]
        shown = spec
    else:
        raise DeadLetterError(f"an intent hash is 32 bytes or hex text (a unique prefix will do), got {spec!r}")
    if not found:
        raise DeadLetterError(f"no intent awaiting its receipt has hash {shown}"
                              + ("…" if isinstance(spec, str) and len(spec) < 64 else ""))
    if len(found) > 1:
        raise DeadLetterError(f"intent hash prefix {shown} is ambiguous: {len(found)} pending intents start with it")
    h = found[0]
    if parked is not None and h not in set(parked):
        raise DeadLetterError(f"intent {h.hex()} is not dead-lettered (parked): it is being dispatched, or waits "
                              "for its next attempt")
    return h
