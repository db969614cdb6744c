"""Typed errors. Every error says what was wrong and where."""

from __future__ import annotations

import re
from typing import Any, Sequence

__all__ = [
    "AosError", "CanonicalError", "UnencodableValueError", "NonCanonicalError", "ManifestError",
    "ManifestMismatchError", "EraChangeError", "AdmissionError", "UnknownSchemaError",
    "MissingKeyFieldError", "InvalidKeyError", "CellKeyError", "UnknownReducerError", "StorageError",
    "JournalCorruptError", "JournalTruncatedError", "WatermarkCorruptError", "SnapshotCorruptError",
    "WorldLockedError", "WorldNotFoundError", "WorldClosedError", "ReentrantCallError",
    "ReplayDivergenceError", "ReceiptError", "ReceiptAuthError", "UnknownIntentError",
    "DuplicateReceiptError", "ReceiptOverBudgetError", "InvariantViolation", "Backpressure",
    "InvalidEffectError", "ReducerError", "UpgradeError", "UnknownProposalError", "NotApprovedError",
    "StaleProposalError", "LiveCellsError", "MigrationError", "PinnedEraError", "UpcastError",
    "EraManifestMissingError", "ArgumentError", "FleetError", "LaneUnavailableError", "FleetClosedError",
    "OriginOrderError",
    "ExporterError",
    "TypedValueError", "IdempotencyKeyError",
]


class AosError(Exception):
    """Base class of every error raised by aos."""


# --------------------------------------------------------------- values
class CanonicalError(AosError, ValueError):
    """A value or byte string is outside the canonical value model."""


_SEGMENT = re.compile(r"""\[(?:b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*"|[^\[\]'"]*)\]""")


def brief_path(path: str, keep: int = 3) -> str:
    """A path inside a value for a message: a deep one with its middle left out.

    ``value[0][0]…[0]['x'] (401 levels)`` instead of 401 subscripts; the
    full path stays in the error's ``path`` attribute.
    """
    root = path.split("[", 1)[0]
    segments = _SEGMENT.findall(path, len(root))
    if len(segments) <= 2 * keep + 2 or len(root) + sum(map(len, segments)) != len(path):
        return path
    return f"{root}{''.join(segments[:keep])}…{''.join(segments[-keep:])} ({len(segments)} levels)"


class UnencodableValueError(CanonicalError):
    """A value cannot be encoded canonically (``path`` says where inside it)."""

    def __init__(self, reason: str, path: str = "value", where: str | None = None) -> None:
        self.reason = reason
        self.path = path
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{brief_path(path)}: {reason}")


class NonCanonicalError(CanonicalError):
    """Bytes decode, but are not the canonical encoding of their value."""


# ----------------------------------------------------------- manifest
class ManifestError(AosError, ValueError):
    """The manifest itself is malformed (bad name, duplicate reducer, ...)."""


class ManifestMismatchError(AosError):
    """The world was created with a different manifest."""


class EraChangeError(ManifestMismatchError):
    """The manifest's era differs from the world's: its reducers, schemas, capabilities, ... were changed.

    ``changed`` holds one line per change, ``changes`` the typed
    :class:`aos.changes.Change` objects (kind, subject, before, after, text).
    """

    def __init__(self, message: str, changed: list[str], changes: Sequence[Any] = ()) -> None:
        self.changed = changed
        self.changes = list(changes)
        super().__init__(message)


# ---------------------------------------------------------- admission
class AdmissionError(AosError, ValueError):
    """An event was refused at admission; nothing was journaled."""


class UnknownSchemaError(AdmissionError):
    """No reducer takes this schema and the manifest does not declare it."""


class MissingKeyFieldError(AdmissionError):
    """The event lacks the field a keyed reducer is keyed by."""


class InvalidKeyError(AdmissionError):
    """The key field holds a value that cannot key a cell (str, int or bytes only)."""


class CellKeyError(AosError, TypeError):
    """A cell was named with a key its reducer does not take: none for a keyed reducer, one for an unkeyed one."""


class Backpressure(AdmissionError):
    """The world's input queue is full and the caller chose not to wait (longer)."""


class UnknownReducerError(AosError, KeyError):
    """A reducer name that the manifest does not define."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# ------------------------------------------------------------- effects
class InvalidEffectError(AosError, TypeError, ValueError):
    """``ctx.effect`` was given an argument a journal record cannot hold (kind, cap, cost, idempotency key).

    Raised inside the reducer: unless it catches it, the step fails (``StepFailed``).
    """


# ------------------------------------------------------------- storage
class StorageError(AosError):
    """Base class of errors about files in a world directory."""


def repair_hint(world: object | None) -> str:
    """What to run about a damaged world (``WORLD`` when its path is not known)."""
    w = "WORLD" if world is None else str(world)
    return (f" (run `aos fsck {w}` to see what is intact, "
            f"`aos salvage {w} --to NEW` to copy it into a new world)")


class JournalCorruptError(StorageError):
    """A journal record that is not a torn tail fails its checks.

    ``world`` is the world's directory where it is known (the message then
    names the commands to run with it).
    """

    def __init__(self, segment: str, offset: int, reason: str, world: object | None = None) -> None:
        self.segment = segment
        self.offset = offset
        self.reason = reason
        self.world = world
        super().__init__(segment, offset, reason)

    def __str__(self) -> str:
        return f"journal corrupt in segment {self.segment} at offset {self.offset}: {self.reason}" \
               + repair_hint(self.world)


class JournalTruncatedError(JournalCorruptError):
    """The journal ends before a point that something proves it reached.

    The proof (``evidence``) is the durable watermark (``journal/durable``),
    a snapshot's position, or the world metadata (a world that was created
    has a journal). ``records`` is how many records the journal holds,
    ``expected`` how many the evidence proves it held (None: unknown, e.g.
    the whole journal is missing). ``segment`` and ``offset`` say where the
    journal now ends.
    """

    def __init__(self, segment: str, offset: int, reason: str, evidence: str = "",
                 records: int = 0, expected: int | None = None, world: object | None = None) -> None:
        self.evidence = evidence
        self.records = records
        self.expected = expected
        super().__init__(segment, offset, reason, world)

    def __str__(self) -> str:
        return f"journal cut short: it ends in segment {self.segment} at offset {self.offset}: {self.reason}" \
               + repair_hint(self.world)


class WatermarkCorruptError(JournalCorruptError):
    """The durable watermark (``journal/durable``) is missing or fails its checks."""

    def __init__(self, reason: str, world: object | None = None) -> None:
        super().__init__("durable", 0, reason, world)

    def __str__(self) -> str:
        return f"journal watermark journal/durable: {self.reason}" + repair_hint(self.world)


class SnapshotCorruptError(StorageError):
    """A snapshot file fails its content hash or structure checks."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(path, reason)

    @property
    def world(self) -> str | None:
        """The world directory holding the snapshot (``<world>/snapshots/<file>``), if it is one."""
        from pathlib import Path

        parent = Path(self.path).parent
        return str(parent.parent) if parent.name == "snapshots" else None

    def __str__(self) -> str:
        return f"snapshot {self.path}: {self.reason}" + repair_hint(self.world)


class WorldLockedError(StorageError):
    """Another World object or process has this world open."""


class WorldNotFoundError(StorageError, FileNotFoundError):
    """Opening an existing world (``create=False``) where none exists."""


class WorldClosedError(AosError):
    """The world was closed; no further calls are accepted."""


class ReentrantCallError(AosError, RuntimeError):
    """A reducer step called its own world (it would wait for its own commit)."""


class ArgumentError(AosError, TypeError, ValueError):
    """A ``World`` call was given an argument of the wrong type or out of range (the message names it)."""


# ---------------------------------------------------------------- replay
class ReplayDivergenceError(AosError):
    """Replaying the journal did not reproduce what it recorded."""

    def __init__(self, event_id: int | None, reducer: str | None, key: object,
                 expected: str | None, actual: str | None, detail: str) -> None:
        self.event_id = event_id
        self.reducer = reducer
        self.key = key
        self.expected = expected
        self.actual = actual
        self.detail = detail
        where = f"event_id {event_id}" if event_id is not None else "journal"
        cell = f", reducer {reducer}, key {key!r}" if reducer is not None else ""
        hashes = f": journal has {expected}, replay gives {actual}" if expected or actual else ""
        super().__init__(f"replay diverged at {where}{cell} ({detail}){hashes}")


class EraManifestMissingError(AosError, ValueError):
    """A point of a world's history lies in an era whose manifest was not given (docs/upgrades.md).

    ``era`` is that era (hex), ``manifest`` its manifest's name, ``event_id``
    the point asked for.
    """

    def __init__(self, message: str, *, era: str, manifest: str, event_id: int) -> None:
        self.era = era
        self.manifest = manifest
        self.event_id = event_id
        super().__init__(message)


# -------------------------------------------------------------- receipts
class ReceiptError(AosError, ValueError):
    """A receipt was refused; nothing was journaled or changed."""


class ReceiptAuthError(ReceiptError):
    """The receipt's MAC does not verify (forged, altered, or another world's)."""


class UnknownIntentError(ReceiptError):
    """No queued effect has this intent hash."""


class DuplicateReceiptError(ReceiptError):
    """The intent was already settled by an earlier receipt."""


class ReceiptOverBudgetError(ReceiptError):
    """The receipt's cost exceeds its reservation by more than the capability has left."""


# ------------------------------------------------------------ failed steps
class ReducerError(AosError):
    """A reducer raised (``World.open(..., strict=True)``): the step was journaled as ``StepFailed``.

    The reducer's own exception is chained as ``__cause__``, with its traceback.
    """

    def __init__(self, event_id: int, reducer: str, key: object, error: str, message: str,
                 traceback: str = "") -> None:
        self.event_id = event_id
        self.reducer = reducer
        self.key = key
        self.error = error
        self.message = message
        self.traceback = traceback
        super().__init__(f"step {event_id} (reducer {reducer}, key {brief(key)}) failed: {error}: {message}")


_FIXED = (type(None), bool, str, bytes, float)  # (and ints of up to 128 bits)


def brief(value: object, limit: int = 100) -> str:
    """A value for a message: never failing, cut to ``limit`` characters, the same text in every process.

    Messages end up in journaled records (``StepFailed``), which replay
    compares byte for byte, so only values whose ``repr`` is fixed are shown
    (``None``, bools, ints, floats, strings, bytes, short tuples of these; a
    huge int by its size);
    anything else by its type and size: the ``repr`` of a set follows hash
    order, which differs between processes, and an object's may change.
    """
    if value is None or isinstance(value, (str, bytes, int, float)) or (
            type(value) is tuple and len(value) <= 8
            and all(type(v) in _FIXED or (type(v) is int and v.bit_length() <= 128) for v in value)):
        if isinstance(value, int) and not isinstance(value, bool) and int.bit_length(value) > 128:
            return f"<an int of {int.bit_length(value)} bits>"
        try:
            text = repr(value)
        except Exception:  # a subclass's broken __repr__
            text = f"<{type(value).__name__}>"
    else:
        try:
            text = f"<{type(value).__name__} of {len(value)} items>"  # type: ignore[arg-type]
        except Exception:  # not sized
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


# ------------------------------------------------------------ invariants
class InvariantViolation(AosError):
    """A step would have violated an invariant; it was journaled and its writes not applied."""

    def __init__(self, event_id: int, invariant: str, reducer: str, key: object, message: str) -> None:
        self.event_id = event_id
        self.invariant = invariant
        self.reducer = reducer
        self.key = key
        self.message = message
        super().__init__(f"invariant {invariant!r} violated by event_id {event_id} "
                         f"(reducer {reducer}, key {key!r}): {message}")


class PinnedEraError(ManifestMismatchError):
    """Cells of the world run an earlier era's code (they are pinned to it) whose manifest was not given.

    Pass that era's manifest: ``World.open(path, manifest, earlier=[old])``
    or ``aos.replay(path, manifests=[old, manifest])`` (docs/upgrades.md,
    "Pinned cells"). ``eras`` maps each missing era (hex) to the number of
    cells pinned to it.
    """

    def __init__(self, message: str, eras: dict[str, int] | None = None) -> None:
        self.eras = dict(eras or {})
        super().__init__(message)


class UpgradeError(AosError):
    """A proposal, approval or apply was refused; nothing was written and the world stays in its era
    (docs/upgrades.md)."""


class UnknownProposalError(UpgradeError, KeyError):
    """No proposal with this id was submitted to the world."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NotApprovedError(UpgradeError):
    """The proposal has no ``ApprovalRecorded``: it cannot be applied."""


class StaleProposalError(UpgradeError):
    """The proposal's base era is not the world's current era (or it was applied already)."""


class LiveCellsError(UpgradeError):
    """The proposal removes a reducer whose cells hold state or work, without consent to drop them."""


class MigrationError(UpgradeError):
    """A migration function raised or returned a value that cannot be stored; names the reducer and key."""


class UpcastError(UpgradeError, AdmissionError):
    """An upcaster raised or returned a value outside the canonical model (``old`` and ``new``: its schemas).

    Refuses an apply whose upcasters fail on an input waiting in a mailbox
    (an :class:`UpgradeError`) and the submission of an old-schema event they
    fail on (an :class:`AdmissionError`); nothing is written either way. At
    delivery, the step fails (``StepFailed`` with error ``UpcastError``).
    """

    def __init__(self, message: str, old: str = "", new: str = "") -> None:
        self.old = old
        self.new = new
        super().__init__(message)


# ---------------------------------------------------------------- fleets
class FleetError(AosError):
    """A fleet-level failure; ``lane`` names the lane concerned (None: the fleet as a whole)."""

    def __init__(self, message: str, lane: int | None = None) -> None:
        self.lane = lane
        super().__init__(message)


class LaneUnavailableError(FleetError):
    """A lane could not be opened or reached (after the retries its backend makes); names the lane."""


class FleetClosedError(FleetError, WorldClosedError):
    """The fleet was closed; no further calls are accepted."""


class OriginOrderError(AdmissionError):
    """A cross-lane message arrived out of order (a gap after the last one admitted from its source)."""


# ---------------------------------------------------------------- metrics
class ExporterError(AosError):
    """A metrics exporter could not start: its library is not installed, or its address cannot be bound."""


# ------------------------------------------------- effect policies, timers
class EffectPolicyError(AosError, TypeError, ValueError):
    """An effect policy (``World.open(effect_policies=...)``) is malformed; ``key`` names the entry."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class EffectTimeoutError(AosError, TimeoutError):
    """An adapter did not answer within its policy's timeout (the attempt failed; a late answer is discarded)."""


class InvalidTimerError(AosError, ValueError):
    """``timer.set`` params are not exactly one of ``{"after_ms": int >= 0}`` or ``{"at": unix ms >= 0}``."""


class DeadLetterError(AosError, LookupError):
    """An intent given to retry or give up is unknown, ambiguous, or not dead-lettered (the message says which)."""


class EffectStateError(StorageError):
    """The world's effect side state (``effects.cbor``: attempts, parked intents, timer deadlines) is unreadable."""


__all__ += ["EffectPolicyError", "EffectTimeoutError", "InvalidTimerError", "DeadLetterError", "EffectStateError"]


class TypedValueError(AdmissionError, TypeError):
    """A value does not fit the type a reducer declares (``state=``, ``event=``): names the schema and field.

    ``path`` is where inside the value (``"['lines'][2]['qty']"``, ``""`` for the
    value itself) and ``reason`` what is wrong there (a missing field, an unknown
    field, a value of the wrong type).
    """

    def __init__(self, message: str, path: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class IdempotencyKeyError(AdmissionError, ArgumentError):
    """An idempotency key is not a non-empty str of at most :data:`aos.idempotency.MAX_KEY_BYTES` UTF-8 bytes,
    or was given where keys are not taken; nothing was admitted."""


class JournalCompactedError(AosError, ValueError):
    """A point of a world's history lies before its compacted point: the records it needs were removed by
    ``aos compact`` (docs/storage.md, "Compaction"). ``event_id`` is the point asked for, ``oldest`` the
    oldest ticket whose state can still be re-made (the compaction base snapshot's)."""

    def __init__(self, message: str, *, event_id: int, oldest: int) -> None:
        self.event_id = event_id
        self.oldest = oldest
        super().__init__(message)


__all__ += ["JournalCompactedError"]
