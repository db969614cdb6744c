"""The World: a directory with a journal, snapshots and the live kernel — the front of its roles.

Directory layout (docs/storage.md)::

    <world>/world.cbor     format, manifest description (era), window
    <world>/world.lock     held (flock) while a World has it open
    <world>/journal/       segment files
    <world>/snapshots/     content-addressed snapshot files

Opening loads the newest snapshot and replays the journal after it,
verifying every recorded state hash (replay-or-die).

This module is the front: the directory layout, the lock, opening and
recovery, the public API and the one close path. The roles behind it are
modules of their own: inputs in :mod:`aos.intake`, running in
:mod:`aos.run_loop` (with one effect-settling strategy per dispatch mode in
:mod:`aos.settle`), reading in :mod:`aos.inspection`.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from aos import canonical
from aos.adapters import MODES, Adapter, Dispatcher, builtin_adapters
from aos.backup import BackupInfo, backup_world
from aos.blobs import BlobStore
from aos.capability import BudgetView
from aos.effect_policy import EffectPolicy, resolve_policies
from aos.effect_state import EffectState, EffectStatus, effect_status, match_intent
from aos.eras import Era, UpgradeResult, era_chain, reconcile
from aos.errors import (
    AosError,
    ArgumentError,
    FleetError,
    InvariantViolation,
    JournalCorruptError,
    JournalTruncatedError,
    ManifestMismatchError,
    ReceiptError,
    StorageError,
    WorldClosedError,
    WorldNotFoundError,
)
from aos.executor import InlineExecutor, ReferenceExecutor, RunResult, ThreadsExecutor
from aos.files import fsync_dir, lock_world, write_atomic
from aos.idempotency import DEFAULT_KEEP as DEFAULT_IDEMPOTENCY_KEEP
from aos.idempotency import check_keep
from aos.inspection import Inspection
from aos.intake import Intake
from aos.journal import (
    DEFAULT_SEGMENT_BYTES,
    SEG_HEADER_SIZE,
    WATERMARK_FILE,
    Durability,
    Journal,
    JournalReader,
    Position,
    segment_name,
)
from aos.kernel import DEFAULT_AGING, DEFAULT_WINDOW, Kernel
from aos.lane import Lane
from aos.lane_world import Message, check_source, lane_of_meta, scan_outbound
from aos.manifest import Manifest, check_compatible
from aos.outbox import DEFAULT_SETTLED_KEEP, QueuedEffect, check_settled_keep, settled_keep_of
from aos.profiling import ReducerClock
from aos.receipt import SECRET_FILE, Receipt, ReceiptSigner, create_secret, load_secret
from aos.records import SnapshotCreated, StepFailed
from aos.replay import VerifyingSink, replay_entries
from aos.run_loop import MAX_STEPS, RunLoop
from aos.snapshot import (
    SnapshotInfo,
    capture,
    check_snapshot_file,
    list_snapshots,
    load_snapshot,
    publish,
    snapshot_index,
    write_snapshot,
)
from aos.snapshot_writer import SnapshotWriter

__all__ = ["World", "read_meta", "load_meta"]

_NO_VALUE: Any = object()  # World.accept: no value= given

WORLD_FORMAT = 1
MAX_WINDOW = MAX_STEPS  # window and aging: the sequencer adds them to tickets in 64-bit arithmetic
META = "world.cbor"
METRICS = "metrics.json"


def read_meta(path: Path, manifest: Manifest) -> dict[str, Any]:
    """Read ``world.cbor`` and check ``manifest`` against it (era)."""
    meta = load_meta(path)
    check_meta(path, meta, manifest)
    return meta


def load_meta(path: Path) -> dict[str, Any]:
    """Read and check ``world.cbor`` (its era chain too), without a manifest to compare."""
    meta_path = path / META
    if not meta_path.is_file():
        raise WorldNotFoundError(f"no world at {path} ({META} is missing)")
    try:
        meta: dict[str, Any] = canonical.decode(meta_path.read_bytes(), str(meta_path))
        if meta.get("format") != WORLD_FORMAT:
            raise StorageError(f"{meta_path}: unknown world format {meta.get('format')!r}")
        stored = meta["manifest"]
        if not isinstance(stored, dict):
            raise TypeError(f"the manifest description is a {type(stored).__name__}, not a map")
        for name in ("window", "aging"):
            if type(meta[name]) is not int or not 1 <= meta[name] <= MAX_WINDOW:
                raise ValueError(f"{name} must be an int from 1 to {MAX_WINDOW}, got {meta[name]!r}")
        settled_keep_of(meta)
        if meta.get("watermark", True) is not True:
            raise ValueError(f"watermark must be true when present, got {meta['watermark']!r}")
        era_chain(meta)
        lane_of_meta(meta)
    except (AosError, KeyError, AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"{meta_path}: malformed world metadata: {exc}") from None
    return meta


def check_meta(path: Path, meta: dict[str, Any], manifest: Manifest) -> None:
    """Raise unless ``manifest`` is the one of the world's current era."""
    try:
        check_compatible(meta["manifest"], manifest, path)
    except (KeyError, AttributeError, TypeError, ValueError) as exc:  # a description no manifest writes
        if isinstance(exc, AosError):  # about the manifest given (e.g. ManifestError), not the stored one
            raise
        raise StorageError(f"{path / META}: malformed manifest description: {type(exc).__name__}: {exc}") from None


def _earlier_by_era(path: Path, eras: Sequence[Era], manifest: Manifest,
                    earlier: Sequence[Manifest]) -> dict[bytes, Manifest]:
    """The manifests of earlier eras given to ``World.open``, by era; each must be one of the world's."""
    chain = {e.era: e for e in eras[:-1]}
    out: dict[bytes, Manifest] = {}
    for m in earlier:
        if m.era == manifest.era:
            continue
        if m.era not in chain:
            raise ManifestMismatchError(f"earlier manifest {m.name} (era {m.era.hex()[:12]}) is not one of the "
                                        f"earlier eras of world {path} ({len(eras) - 1}: `aos eras {path}`)")
        out[m.era] = m
    return out


def default_workers(manifest: Manifest) -> int:
    """Worker threads by default: one per CPU where they can run steps in parallel, else 0."""
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    if not gil or any(spec.native is not None for spec in manifest.reducers.values()):
        return os.cpu_count() or 1
    return 0


_NEW_JOURNAL = {segment_name(0), segment_name(0) + ".tmp", WATERMARK_FILE, WATERMARK_FILE + ".tmp"}


def _new_journal(path: Path) -> bool:
    """Whether ``path`` is the journal an interrupted creation left: no records yet."""
    if path.name != "journal" or not path.is_dir() or path.is_symlink():
        return False
    for c in path.iterdir():
        if c.name not in _NEW_JOURNAL or not c.is_file():
            return False
        if c.name == segment_name(0) and c.stat().st_size > SEG_HEADER_SIZE:
            return False
    return True


def _remove_new_journal(path: Path) -> None:
    if path.is_dir():
        for c in path.iterdir():
            c.unlink()
        path.rmdir()


def _check_legacy_journal(p: Path) -> None:
    """A world from before the watermark: a missing journal is refused when a snapshot proves there was one."""
    if JournalReader(p / "journal").segments():
        return
    snaps = list_snapshots(p / "snapshots")
    if snaps:
        newest = snaps[-1]
        check_snapshot_file(newest)
        at = snapshot_index(newest)
        what = "has no segments" if (p / "journal").is_dir() else "is missing"
        raise JournalTruncatedError(segment_name(0), 0, f"the journal directory {p / 'journal'} {what}, but "
                                    f"snapshot snapshots/{newest.name} was taken at record {at}",
                                    f"snapshots/{newest.name}", 0, at, p)


class World:
    """A deterministic, event-sourced world. Use :meth:`World.open`."""

    def __init__(self, path: Path, manifest: Manifest, journal: Journal, kernel: Kernel, lock_fd: int,
                 dispatcher: Dispatcher, options: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._journal = journal
        self._kernel = kernel
        self._lock_fd = lock_fd
        self._dispatcher = dispatcher
        self.snapshot_every: int = options["snapshot_every"]
        self.keep_snapshots: int = options["keep_snapshots"]
        self.snapshot_on_close: bool = options["snapshot_on_close"]
        self.on_violation: str | Callable[[InvariantViolation], None] = options["on_violation"]
        workers = options["workers"]
        self.workers: int = workers
        self._executor: InlineExecutor | ReferenceExecutor | ThreadsExecutor = (
            ReferenceExecutor(kernel) if options["reference"]
            else InlineExecutor(kernel) if workers == 0
            else ThreadsExecutor(kernel, workers, options["worker_delay"], offload=options["offload"]))
        self.max_queued: int = options["max_queued"]
        self._snapshot_index = -1
        self._closed: str | None = None
        self.durable_event_id = kernel.last_event_id
        self.violations: list[InvariantViolation] = []  # with on_violation="record"
        self.refused_receipts: list[tuple[Receipt, ReceiptError]] = []  # adapter receipts that did not apply
        self.eras: list[Era] = []  # the world's chain of eras, oldest first (docs/upgrades.md)
        # the roles (one module each): inputs, the run loop, the read side
        self._intake = Intake(self)
        self._loop = RunLoop(self, self._intake)
        self._inspection = Inspection(self)
        self._clock: ReducerClock | None = None  # World.open(profile=True)
        # snapshot_every's snapshots, written on a thread of their own (None: on the commit path)
        self._snapshots: SnapshotWriter | None = (SnapshotWriter(path / "snapshots")
                                                  if options.get("background_snapshots", True) else None)

    # ----------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], manifest: Manifest, *, create: bool = True,
             durability: Durability | str = "group", window: int | None = None, aging: int | None = None,
             snapshot_every: int = 10_000, keep_snapshots: int = 3, snapshot_on_close: bool = True,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, adapters: Mapping[str, Adapter] | None = None,
             effects: str = "background",
             on_violation: str | Callable[[InvariantViolation], None] = "raise",
             workers: int | None = None, worker_delay: Callable[[int], float] | None = None,
             max_queued: int = 1_000_000, offload: str | None = None, strict: bool = False,
             earlier: Sequence[Manifest] = (), reference: bool = False, lane: Lane | None = None,
             profile: bool = False, effect_policies: Mapping[str, EffectPolicy] | None = None,
             idempotency_keep: int = DEFAULT_IDEMPOTENCY_KEEP, settled_keep: int | None = None,
             background_snapshots: bool = True) -> "World":
        """Create or open the world at ``path`` with ``manifest``.

        ``durability``: ``"group"`` (default), ``"always"``, ``"none"`` or a
        :class:`Durability`. ``window``: how many tickets after a step its
        emitted events become schedulable (fixed when the world is created;
        default 64). ``aging``: tickets after which a ready cell of a lower
        priority class is served before more urgent ones (fixed at creation;
        default 256). ``snapshot_every``: write a snapshot after every N-th
        ticket (0: only on close and on request).

        ``adapters`` maps effect kinds to adapters (added to the built-in
        ``timer.set``, ``blob.put``, ``blob.get``); ``effects`` is the dispatch
        mode: ``"background"``, ``"inline"`` or ``"manual"`` (see
        :mod:`aos.adapters`). ``on_violation``: ``"raise"`` (``run`` raises
        :class:`InvariantViolation` after journaling it), ``"record"`` (kept in
        ``World.violations``) or a callable called with each violation.

        ``workers``: worker threads computing steps; 0 runs every step on the
        calling thread (the inline executor, whose journal every parallel run
        equals). The default is the number of CPUs where threads can run steps
        in parallel — the manifest has a native reducer, or the interpreter
        runs without the GIL — and 0 otherwise, where threads would only add
        hand-over costs to Python reducers that hold the GIL. ``offload``
        says which steps go to the workers: ``"auto"`` sends a step there when
        it can run beside the calling thread — its reducer is native, or the
        interpreter runs without the GIL — and computes a Python step under
        the GIL on the calling thread, where a hand-over would only add cost;
        ``"all"`` sends every step (for Python reducers that release the GIL
        themselves, e.g. in NumPy). ``worker_delay(event_id)`` -> seconds makes
        workers sleep before a step (for tests that shuffle timing; it implies
        ``offload="all"`` unless told otherwise). ``max_queued`` bounds the
        inputs waiting in mailboxes (see :meth:`submit` for what happens when
        it is reached).

        ``strict`` (for development): ``run`` raises :class:`ReducerError`,
        the reducer's exception chained with its traceback, for a step whose
        reducer raised — once the steps in progress have committed, the failed
        step journaled as ``StepFailed`` like any other, the world usable.
        Without it a failed step is only journaled (see :meth:`failures`).

        ``earlier``: manifests of the world's earlier eras whose code some
        cells still run (cells pinned to the era they were created in, see
        docs/upgrades.md, "Pinned cells"); opening a world with pinned cells
        without their era's manifest raises :class:`PinnedEraError`.

        ``reference``: run every step through the reference executor, plain
        Python on the calling thread (:class:`aos.executor.ReferenceExecutor`),
        instead of the inline executor's C loop or worker threads; both write
        the same journal. For differential tests and for debugging.

        ``lane``: the world is that lane of a fleet (docs/fleet.md, "The lane
        world"): fixed when the world is created and kept in ``world.cbor``;
        None opens the world as it was created (a world created without one is
        lane 0 of 1). Opening it as another lane raises :class:`FleetError`.

        ``profile``: time each Python reducer's calls while the world is open;
        :meth:`metrics` then has ``"reducers"``: per reducer, its ``steps``,
        the ``seconds`` spent inside it and its ``share`` of all reducers'
        time (:mod:`aos.profiling`, docs/profiling.md). Without it a step pays
        nothing for this; with it, two clock reads per step. The journal is
        the same either way.

        ``effect_policies``: how adapters are attempted, per effect kind
        (``"kind:<kind>"``) or capability (``"cap:<capability>"``), as
        :class:`aos.EffectPolicy` (timeout, retries with backoff and jitter,
        dead letter; docs/effects.md, "Effect policies"). Operational, not
        part of the era: the journal holds each intent's final receipt only.

        ``idempotency_keep``: how many keyed admissions (``submit(...,
        idempotency_key=)``) the world remembers, newest first (default
        100,000); a key older than that admits its event again. It may change
        between opens (the index is rebuilt from the journal and snapshots).

        ``settled_keep``: how many settled effect intents the outbox remembers
        to refuse a duplicate receipt or a re-intended effect (fixed when the
        world is created, kept in ``world.cbor``; default 100,000; None opens
        the world as it was created). A world created before this option
        remembers every one (docs/effects.md, "Bounded outbox").

        ``background_snapshots`` (default True): the snapshots ``snapshot_every``
        takes are encoded, written and fsync'd on a thread of their own — the
        commit path pays only for a frozen copy of the cell table — and journaled
        at a later quiet point; False writes them on the commit path. Snapshots
        on request (:meth:`snapshot`), on close and at an upgrade are written at
        once either way (docs/storage.md, "Snapshots").
        """
        if not isinstance(manifest, Manifest):
            raise TypeError(f"manifest must be an aos.Manifest, got {type(manifest).__name__}")
        if isinstance(earlier, Manifest):
            earlier = [earlier]
        for m in earlier:
            if not isinstance(m, Manifest):
                raise TypeError(f"earlier must hold aos.Manifest objects, got {type(m).__name__}")
        if snapshot_every < 0 or keep_snapshots < 1:
            raise ValueError("snapshot_every must be >= 0 and keep_snapshots >= 1")
        if not (on_violation in ("raise", "record") or callable(on_violation)):
            raise ValueError(f"on_violation must be 'raise', 'record' or a callable, got {on_violation!r}")
        if effects not in MODES:
            raise ValueError(f"effects must be one of {MODES}, got {effects!r}")
        if lane is not None and not isinstance(lane, Lane):
            raise ArgumentError(f"lane must be an aos.lane.Lane or None, got {type(lane).__name__}")
        if type(reference) is not bool:
            raise ArgumentError(f"reference must be True or False, got {type(reference).__name__}")
        if type(profile) is not bool:
            raise ArgumentError(f"profile must be True or False, got {type(profile).__name__}")
        if workers is None:
            workers = 0 if reference else default_workers(manifest)
        if type(workers) is not int or workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {workers!r}")
        if reference and workers:
            raise ArgumentError(f"reference=True runs steps on the calling thread; it takes workers=0, got {workers}")
        if offload is None:
            offload = "all" if worker_delay is not None else "auto"
        if offload not in ("auto", "all"):
            raise ValueError(f"offload must be 'auto' or 'all', got {offload!r}")
        if type(max_queued) is not int or max_queued < 1:
            raise ValueError(f"max_queued must be an int >= 1, got {max_queued!r}")
        policies = resolve_policies(effect_policies, manifest.capabilities)
        check_keep(idempotency_keep)
        if settled_keep is not None:
            check_settled_keep(settled_keep)
        dur = Durability.of(durability)
        p = Path(path)
        if not (p / META).is_file():
            if not create:
                raise WorldNotFoundError(f"no world at {p} ({META} is missing) and create=False")
            # A creation that was interrupted (the process died before world.cbor, which is written
            # last, was in place) leaves only these files behind: create the world again over them.
            leftovers = {SECRET_FILE, SECRET_FILE + ".tmp", META + ".tmp"}
            if p.exists() and (not p.is_dir() or any(c.name not in leftovers and not _new_journal(c)
                                                     for c in p.iterdir())):
                raise StorageError(f"{p} exists and is not an aos world (no {META}); refusing to use it")
            p.mkdir(parents=True, exist_ok=True)
            meta: dict[str, Any] = {"format": WORLD_FORMAT, "manifest": manifest.describe(),
                    "window": DEFAULT_WINDOW if window is None else window,
                    "aging": DEFAULT_AGING if aging is None else aging}
            if lane is not None:
                meta["lane"] = lane.describe()
            meta["settled_keep"] = DEFAULT_SETTLED_KEEP if settled_keep is None else settled_keep
            if type(meta["window"]) is not int or not 1 <= meta["window"] <= MAX_WINDOW:
                raise ValueError(f"window must be an int from 1 to {MAX_WINDOW}, got {window!r}")
            if type(meta["aging"]) is not int or not 1 <= meta["aging"] <= MAX_WINDOW:
                raise ValueError(f"aging must be an int from 1 to {MAX_WINDOW}, got {aging!r}")
            create_secret(p)
            _remove_new_journal(p / "journal")
            Journal.open(p / "journal", manifest.era, "always").close()  # its first segment and watermark
            fsync_dir(p)
            meta["watermark"] = True  # the journal keeps a durable watermark (docs/storage.md)
            write_atomic(p / META, canonical.encode(meta, where="world metadata"))
        lock_fd = lock_world(p)
        try:
            meta = reconcile(p, load_meta(p))  # the journal is the truth about the era chain
            check_meta(p, meta, manifest)
            eras = era_chain(meta)
            stored = lane_of_meta(meta)
            if lane is not None and lane != stored:
                raise FleetError(f"world {p} is lane {stored.lane_id} of {stored.lanes} (home {stored.home}), not "
                                 f"lane {lane.lane_id} of {lane.lanes} (home {lane.home})", lane=stored.lane_id)
            if window is not None and window != meta["window"]:
                raise ManifestMismatchError(f"world {p} has window {meta['window']}, not {window}")
            if aging is not None and aging != meta["aging"]:
                raise ManifestMismatchError(f"world {p} has aging {meta['aging']}, not {aging}")
            if settled_keep is not None and settled_keep != settled_keep_of(meta):
                raise ManifestMismatchError(f"world {p} has settled_keep {settled_keep_of(meta)}, not {settled_keep}")
            secret = load_secret(p)
            if secret is None:
                raise StorageError(f"world {p}: {SECRET_FILE} is missing or unreadable (receipts cannot be "
                                   "authenticated without it)")
            signer = ReceiptSigner(secret)
            effect_state = EffectState.load(p)
            keeps_watermark = meta.get("watermark") is True
            if not keeps_watermark:
                _check_legacy_journal(p)
            journal = Journal.open(p / "journal", manifest.era, dur, segment_bytes, existing=keeps_watermark,
                                   cut_tail=False)
            try:
                by_era = _earlier_by_era(p, eras, manifest, earlier)
                kernel, start = cls._recover(p, manifest, journal, meta["window"], signer, meta["aging"],
                                             [e.era for e in eras], by_era, stored, idempotency_keep,
                                             settled_keep_of(meta))
            except BaseException:
                journal.abandon()
                raise
            if not keeps_watermark:  # a world from before the watermark now has one
                write_atomic(p / META, canonical.encode(dict(meta, watermark=True), where="world metadata"))
        except JournalCorruptError as exc:
            os.close(lock_fd)
            if exc.world is None:
                exc.world = p
            raise
        except BaseException:
            os.close(lock_fd)
            raise
        registry: dict[str, Adapter] = builtin_adapters(BlobStore(p / "blobs"), effect_state)
        registry.update(adapters or {})
        dispatcher = Dispatcher(registry, signer, effects, policies=policies, state=effect_state)
        options = {"reference": reference, "snapshot_every": snapshot_every, "keep_snapshots": keep_snapshots,
                   "snapshot_on_close": snapshot_on_close, "on_violation": on_violation,
                   "workers": workers, "worker_delay": worker_delay, "max_queued": max_queued,
                   "offload": offload, "background_snapshots": bool(background_snapshots)}
        world = cls(p, manifest, journal, kernel, lock_fd, dispatcher, options)
        world.eras = eras
        kernel.strict = bool(strict)  # after recovery: the journal's past failures are not raised again
        # Nothing to snapshot on close if the journal ends with the loaded snapshot.
        if journal.index == 0 or (start is not None and start.index + 1 == journal.index):
            world._snapshot_index = journal.index
        # Intents queued without a receipt are dispatched again, with the same idempotency keys.
        kernel.new_effects.clear()
        kernel.violations.clear()
        effect_state.prepare(kernel.outbox.queued)  # settled intents forgotten, those marked for retry unparked
        dispatcher.submit(list(kernel.outbox.queued.values()))
        if profile:  # last: the steps replayed while opening are not timed
            clock = ReducerClock(manifest)
            try:
                clock.attach()
            except BaseException:
                world._close("could not be profiled", clean=False)
                raise
            world._clock = clock
        return world

    @staticmethod
    def _recover(p: Path, manifest: Manifest, journal: Journal, window: int, signer: ReceiptSigner, aging: int,
                 eras: list[bytes], earlier: dict[bytes, Manifest],
                 lane: Lane | None = None,
                 idempotency_keep: int = DEFAULT_IDEMPOTENCY_KEEP,
                 settled_keep: int | None = None) -> tuple[Kernel, Position | None]:
        """Newest usable snapshot + replay of the journal after it."""
        reader = JournalReader(p / "journal", eras)
        start = None
        kernel = Kernel(manifest, journal, window=window, signer=signer, aging=aging, earlier=earlier, lane=lane,
                        settled_keep=settled_keep)
        kernel.submit_keys.keep = idempotency_keep
        if (p / "snapshots").is_dir():  # a snapshot a crash left half-written (never loaded): removed
            for tmp in (p / "snapshots").glob("*.snap.tmp"):
                tmp.unlink(missing_ok=True)
        snaps = list_snapshots(p / "snapshots")
        if snaps and snapshot_index(snaps[-1]) > journal.index:
            # A snapshot is written only at a durable journal position: the journal lost records.
            # Nothing is deleted; the snapshot is the proof (and the state to salvage from).
            newest = snaps[-1]
            check_snapshot_file(newest)  # a damaged file proves nothing: report it as such
            end = journal.position
            at = snapshot_index(newest)
            raise JournalTruncatedError(
                segment_name(end.segment), end.offset,
                f"the journal holds {journal.index} records, but snapshot snapshots/{newest.name} was taken "
                f"at record {at}: the {at - journal.index} record(s) between are missing",
                f"snapshots/{newest.name}", journal.index, at, p)
        if snaps:
            kernel = Kernel(manifest, journal, window=window, signer=signer, aging=aging, earlier=earlier,
                            lane=lane, settled_keep=settled_keep)
            kernel.submit_keys.keep = idempotency_keep
            start = load_snapshot(snaps[-1], kernel, manifest.era)
        journal.finish_open()  # the evidence is checked: what lies past it was never acknowledged
        sink = VerifyingSink(reader.batches(start), journal)
        kernel.sink = sink
        replay_entries(kernel, sink)
        if sink.peek_payload() is not None:  # an era boundary: the new era's snapshot should have been loaded
            entry = sink.peek()
            assert entry is not None
            raise StorageError(f"world {p}: the journal crosses into a new era at segment {entry.segment} "
                               f"offset {entry.offset}, but the boundary snapshot of the current era is missing")
        kernel.sink = journal
        return kernel, start

    # --------------------------------------------------------------- API
    def _live(self) -> Kernel:
        if self._closed is not None:
            raise WorldClosedError(f"world {self.path} {self._closed}")
        return self._kernel

    def _on_runner(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` now, or — while another thread runs the world — at that run's next quiet point."""
        return self._intake.on_runner(fn)

    # ------------------------------------------------------------- inputs
    def submit(self, schema: str, value: Any, *, block: bool = True, timeout: float | None = None,
               idempotency_key: str | None = None) -> int:
        """Admit an external event; returns its admission number.

        ``idempotency_key`` (a non-empty str of at most 255 UTF-8 bytes, else
        :class:`IdempotencyKeyError`): the event is admitted once per key,
        across restarts — a submission with a key that admitted an event
        already admits nothing and returns that first admission's number (its
        value is not compared). The world remembers the keys of its last
        ``idempotency_keep`` keyed admissions (:meth:`open`); a key older than
        that admits its event again (docs/storage.md, "Idempotent submission").

        Raises UnknownSchemaError, MissingKeyFieldError, InvalidKeyError or
        UnencodableValueError, in which case nothing is journaled.

        Backpressure: at most ``max_queued`` inputs wait in mailboxes. When
        the world is full, ``block=False`` raises :class:`Backpressure` at
        once; ``block=True`` waits for room — up to ``timeout`` seconds, then
        raises :class:`Backpressure` — while ``run`` drains the queue on
        another thread, or runs steps itself when no run is in progress.
        ``submit`` may be called from other threads while ``run`` executes:
        the event is admitted between two commits, without waiting for the
        steps in flight — on the calling thread while the commit loop waits
        for a step, else by the running thread at its next turn — and is
        held until the next ticket to assign, which its record names, so a
        replay holds it as long (docs/scheduling.md). The call returns once
        it is admitted.
        """
        return self._intake.submit(schema, value, block, timeout, False,  # type: ignore[return-value]
                                   idempotency_key)

    def submit_async(self, schema: str, value: Any, *, block: bool = True,
                     timeout: float | None = None, idempotency_key: str | None = None) -> "Future[int]":
        """Submit an event; the returned future resolves with its admission number once it is durable.

        The event is checked at once (the same typed errors as :meth:`submit`,
        nothing journaled) and backpressure applies as for :meth:`submit`
        (``block``, ``timeout``: waiting for room only). The call returns
        without waiting for the admission: while another thread runs the world
        the event is admitted between two of its commits (see :meth:`submit`). The future's result is
        the admission number, set once the ``EventAdmitted`` record is durable
        under the world's durability policy — fsync'd for ``"group"`` and
        ``"always"``, written to the OS for ``"none"`` — that is at the next
        sync: a group commit of :meth:`serve`, the end of :meth:`run`,
        :meth:`sync`, a snapshot or :meth:`close`. If the world closes before
        that (an interrupted run), the future fails with
        :class:`WorldClosedError`. Its callbacks run on the thread that synced.

        ``idempotency_key``: as for :meth:`submit`; a duplicate's future
        resolves with the first admission's number once what the journal holds
        now is durable. A client that did not get an acknowledgement (a crash)
        submits again with the same key: the event is admitted once.
        """
        return self._intake.submit(schema, value, block, timeout, True,  # type: ignore[return-value]
                                   idempotency_key)

    def receipt(self, intent_hash: bytes, status: str = "ok", payload: Any = None, cost: int = 0) -> Receipt:
        """A receipt signed with this world's secret, for an effect executed outside its adapters."""
        self._live()
        return self._kernel.signer.make(intent_hash, status, payload, cost)  # type: ignore[union-attr]

    def submit_receipt(self, receipt: Receipt) -> int:
        """Admit a receipt; returns its admission number.

        Raises ReceiptAuthError (bad MAC), UnknownIntentError,
        DuplicateReceiptError or ReceiptOverBudgetError, changing nothing.
        """
        return self._intake.submit_receipt(receipt)

    # ------------------------------------------------------------ lanes
    @property
    def lane(self) -> Lane:
        """The lane of a fleet this world is (lane 0 of 1 for a world created without one)."""
        return self._kernel.lane

    def accept(self, source: int, n: int, schema: str, *, value: Any = _NO_VALUE, data: bytes | None = None) -> bool:
        """Admit an event as message ``n`` (from 1) that ``source`` sent to this lane; False for a duplicate.

        ``source`` is a lane id of the fleet (a cross-lane message, ``data``:
        the value's canonical bytes, as :meth:`outbound` gives them) or
        :data:`aos.lane.CLIENT_SOURCE` (the fleet's client, ``value``: a plain
        value). Give exactly one of ``value`` and ``data``. A message at or
        below the source's mark (:meth:`marks`) was admitted already: nothing
        is written and False returned. One past the next raises
        :class:`OriginOrderError` (a gap), admitting nothing. Else the event is
        admitted — journaled with its origin ``(source, n)``, delivered to the
        cells of this lane it routes to (none, possibly) — and True returned.
        Durable at the next sync (:meth:`sync`, the end of :meth:`run`).
        Raises the admission errors of :meth:`submit` for a bad event.
        """
        k = self._live()
        check_source(k.lane, source)
        if type(n) is not int or n < 1:
            raise ArgumentError(f"accept: n must be an int >= 1 (messages count from 1), got {n!r}")
        where = f"message {n} from source {source} to lane {k.lane_id}"
        if (value is _NO_VALUE) == (data is None):
            raise ArgumentError(f"accept: {where}: give exactly one of value= and data=")
        if data is not None:
            if type(data) is not bytes:
                raise ArgumentError(f"accept: {where}: data must be bytes, got {type(data).__name__}")
            adm = k.admission.check_encoded(schema, data, where)
        else:
            adm = k.admission.check(schema, value, where)
        return self._on_runner(lambda: self._intake.accept(source, n, adm))  # type: ignore[no-any-return]

    def marks(self) -> dict[int, int]:
        """The last message number admitted from each source (:meth:`accept`), by source."""
        return dict(self._live().origins.marks)

    def outbound(self, target: int, after: int, limit: int | None = None) -> list[Message]:
        """The messages ``(n, schema, data)`` for lane ``target`` numbered above ``after``, in order.

        At most ``limit`` of them (None: all). Each is an event a committed
        step of this world emitted for cells that lane ``target`` holds;
        ``data`` is its value's canonical bytes (for ``accept(source, n,
        schema, data=data)`` there). Messages memory no
        longer holds (trimmed, or from before a reopen) are re-made from the
        journal. The journal is synced first when it holds records not yet
        durable: a message is only handed out once the step that sent it is
        durable, so no crash can take it back and number another in its place.
        """
        k = self._live()
        if type(target) is not int or not 0 <= target < k.lane.lanes or target == k.lane_id:
            raise ArgumentError(f"outbound: target must be another lane of the fleet (0..{k.lane.lanes - 1}, not "
                                f"{k.lane_id}), got {target!r}")
        if type(after) is not int or after < 0:
            raise ArgumentError(f"outbound: after must be an int >= 0, got {after!r}")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ArgumentError(f"outbound: limit must be an int >= 0 or None, got {limit!r}")
        return self._on_runner(lambda: self._outbound(target, after, limit))  # type: ignore[no-any-return]

    def _outbound(self, target: int, after: int, limit: int | None) -> list[Message]:
        k = self._kernel
        out = k.outbound
        low = out.low(target)
        older: list[Message] = []
        if after + 1 < low and (limit is None or limit > 0):
            self._journal.flush(sync=False)
            older = scan_outbound(self.path / "journal", [e.era for e in self.eras] or self.manifest.era,
                                  k.admission, target, after, low)
            if limit is not None:
                older = older[:limit]
                limit -= len(older)
            if older and older[-1][0] + 1 < low:
                return older  # the limit was reached before what memory holds
        msgs = older + out.held_after(target, after, limit)
        if msgs and self._journal.durable_index < self._journal.index:
            self._sync()  # a message leaves only once its step is durable (a crash cannot renumber it)
        return msgs

    def outbound_marks(self) -> dict[int, int]:
        """The last message number produced for each target lane (:meth:`outbound`)."""
        return dict(self._live().outbound.produced)

    def trim_outbound(self, target: int, upto: int) -> None:
        """Let the messages for ``target`` numbered up to ``upto`` go from memory (the target has them)."""
        k = self._live()
        if type(target) is not int or type(upto) is not int or upto < 0:
            raise ArgumentError(f"trim_outbound: target and upto must be ints (upto >= 0), got {target!r}, {upto!r}")
        self._on_runner(lambda: k.outbound.trim(target, upto))

    def grant(self, cap: str, amount: int, grant: int) -> bool:
        """Journal budget grant ``grant`` (a per-lane increasing id) adding ``amount`` units to capability ``cap``.

        A grant id at or below the cap's last one is a repeat: nothing is
        written, False returned. A lane of a fleet of more than one lane
        starts every capability at 0 and spends what it is granted. Durable
        at the next sync.
        """
        k = self._live()
        if type(cap) is not str or cap not in k.ledger.budgets:
            raise ArgumentError(f"grant: unknown capability {cap!r} (manifest {self.manifest.name} declares "
                                f"{sorted(k.ledger.budgets)})")
        if type(amount) is not int or amount < 0 or type(grant) is not int or grant < 1:
            raise ArgumentError(f"grant: amount must be an int >= 0 and grant an int >= 1, got {amount!r}, {grant!r}")

        def apply() -> bool:
            done = k.grant(cap, amount, grant)
            if done and self._journal.commit_point():
                self.durable_event_id = k.last_event_id
            return done

        return self._on_runner(apply)  # type: ignore[no-any-return]

    def budget_wants(self) -> dict[str, int]:
        """Per capability, the cost of the intents denied for lack of budget since its last grant (a hint)."""
        return {cap: n for cap, n in dict(self._live().grants.wants).items() if n}

    # ---------------------------------------------------------------- running
    def run(self, max_steps: int | None = None, *, settle: bool | None = None,
            timeout: float | None = None) -> RunResult:
        """Run steps until no step is ready (or ``max_steps`` ran); everything is synced on return.

        With ``settle`` (the default in the ``inline`` effects mode) it also
        waits for the receipts of outstanding effects and runs the steps they
        cause, until no step is ready and no effect is outstanding, or
        ``timeout`` seconds passed. Receipts that arrived are admitted between
        steps. Raises :class:`InvariantViolation` (with ``on_violation="raise"``)
        once the steps in progress have committed; the violating step was
        journaled and none of its writes applied, and the world stays usable.
        """
        return self._loop.run(max_steps, settle, timeout)

    def serve(self, until: Callable[[], bool] | None = None, *, idle: float = 0.05) -> RunResult:
        """Run the world on this thread while other threads submit, until told to stop.

        Steps run as inputs arrive (other threads' :meth:`submit`,
        :meth:`submit_async`, receipts); effects are settled as their receipts
        come. The journal is group-committed: synced when the durability
        policy's ``group_commits`` commits are buffered, and at the latest
        ``group_ms`` milliseconds after a record was written, idle or not — so
        every :meth:`submit_async` future resolves. Returns (everything synced)
        when ``until()`` is true — it is asked between batches of steps and
        every ``idle`` seconds while nothing happens — when :meth:`stop` is
        called, or when the world is closed from another thread. Raises as
        :meth:`run` does (violations, ``strict`` failures), the world usable;
        :class:`ArgumentError` for an ``until`` that is not callable or an
        ``idle`` that is not a number of seconds > 0; :class:`ReentrantCallError`
        when this thread is running the world already.
        """
        return self._loop.serve(until, idle)

    def stop(self) -> None:
        """Make the :meth:`serve` in progress return, synced, at its next quiet point.

        Called from any thread. When no serve is in progress, the next one returns at once.
        """
        self._loop.stop()

    # ---------------------------------------------------------------- reading
    def failures(self) -> list[StepFailed]:
        """Every failed step the journal holds, oldest first — before reopening too.

        Each ``StepFailed`` record names its ``event_id``, ``reducer``,
        ``key``, ``error`` (the exception type), ``message`` and
        ``traceback`` (the reducer's frames, see docs/architecture.md). It
        reads the whole journal (kinds are told apart without decoding the
        other records), so it costs time in proportion to the journal's size:
        a tool for debugging, not for every step.
        """
        return self._inspection.failures()

    def pending_effects(self) -> list[QueuedEffect]:
        """Queued effects still awaiting their receipt, in queue order."""
        return self._inspection.pending_effects()

    def budget(self, cap: str) -> BudgetView:
        """Budget, reserved, spent and remaining units of capability ``cap``."""
        return self._inspection.budget(cap)

    def era_of(self, reducer: str, key: Any = None) -> str:
        """The era (hex) whose code cell (reducer, key) runs: an earlier one for a pinned cell, else the world's."""
        return self._inspection.era_of(reducer, key)

    def state(self, reducer: str, key: Any = None) -> Any:
        """The committed state of cell (reducer, key), decoded; None if it has none.

        ``key`` is required for a keyed reducer and must be left out for one
        without a key (else :class:`CellKeyError`, a ``TypeError``).
        """
        return self._inspection.state(reducer, key)

    def cells(self, reducer: str | None = None) -> list[tuple[str, Any]]:
        """Live cells as (reducer, key), in canonical order."""
        return self._inspection.cells(reducer)

    def iter_states(self) -> Iterator[tuple[str, Any, Any]]:
        """(reducer, key, state) of every live cell, decoded, in cell-creation order.

        Cheaper than :meth:`cells` plus :meth:`state` per cell when reading
        every state (e.g. to build a report). The cells are those committed
        when the call is made (at a run's next quiet point when another thread
        is running the world); states are decoded as the iteration goes.
        """
        return self._inspection.iter_states()

    def snapshot_hash(self) -> str:
        """BLAKE3 (hex) over all live cells' state hashes (see docs/storage.md)."""
        return self._inspection.snapshot_hash()

    @property
    def stats(self) -> dict[str, int]:
        """Counters from :meth:`metrics`, flat: event_id, admitted, commits, failures, cells, queued, pending,
        records, effects_outstanding, effects_settled, effects_dispatched, receipts_refused, validations,
        reexecutions (readable after closing too)."""
        return self._inspection.stats()

    def metrics(self) -> dict[str, Any]:
        """Scheduling and commit metrics since the world was opened (docs/parallel.md)."""
        return self._inspection.metrics()

    # --------------------------------------------------------- snapshots, sync
    def snapshot(self) -> SnapshotInfo:
        """Write a snapshot now and journal a ``SnapshotCreated`` record.

        Called from another thread while :meth:`run` is going, it is written
        at the run's next quiet point and returns then.
        """
        self._live()
        return self._on_runner(self._snapshot)  # type: ignore[no-any-return]

    def _snapshot(self) -> SnapshotInfo:
        if self._snapshots is not None and self._snapshots.busy:
            self._publish_snapshot()  # the one in flight first: snapshots are journaled in order
        k = self._kernel
        j = self._journal
        j.flush(sync=True, force=True)  # the snapshot's position is on disk before the snapshot (every mode)
        info = write_snapshot(self.path / "snapshots", k, self.manifest.era, j.position)
        j.append(SnapshotCreated(k.last_event_id, bytes.fromhex(info.snapshot_hash), info.path.name, k.lane_id))
        j.flush(sync=True)
        self.durable_event_id = k.last_event_id
        self._intake.acknowledge(j.index)
        self._snapshot_index = j.index
        self._prune_snapshots()
        return info

    def backup(self, dest: str | os.PathLike[str], *, verify: bool = True) -> BackupInfo:
        """Copy this world, as of the next quiet point, into the new directory ``dest``.

        The running world pays one quiet point (a journal fsync and opening
        the files the copy needs); the copying happens after, beside it.
        ``dest`` must not exist; it appears only once the copy is whole and
        durable and — with ``verify`` — checked by :func:`aos.fsck.check_world`.
        It opens as this world did at the cut (docs/operations.md, "Backups").
        """
        return backup_world(self, dest, verify=verify)

    def _periodic_snapshot(self) -> None:
        """The snapshot due every ``snapshot_every`` tickets (at a quiet point): taken and handed to the
        background writer, or written here (``background_snapshots=False``). One is in flight at a time: one
        due while the last is still being written waits for it (so every due ticket has its snapshot, whatever
        the timing)."""
        w = self._snapshots
        if w is None:
            self._snapshot()
            return
        if w.busy:
            if not w.done:
                w.waits += 1
            self._publish_snapshot()
        j = self._journal
        if j.index == self._snapshot_index:
            return  # nothing journaled since the last snapshot
        w.start(capture(self._kernel, self.manifest.era, j.position))

    def _publish_snapshot(self) -> SnapshotInfo | None:
        """At a quiet point: wait for the background snapshot in flight, rename it into place once the journal
        is durable past its position and prune old ones (None: none in flight).

        No ``SnapshotCreated`` is journaled for it: when the writer finishes
        depends on timing, and the journal must not (the same bytes for every
        worker count and every run). The file is self-describing — position,
        last ticket, snapshot hash, content hash in its name — and checked in
        full where it is loaded (docs/storage.md, "Snapshots off the commit path").
        """
        w = self._snapshots
        if w is None:
            return None
        written = w.take()
        if written is None:
            return None
        j = self._journal
        if j.durable_index < written.position.index:  # a snapshot never lies past the journal on disk
            j.flush(sync=True, force=True)
        info = publish(written)
        # (``_snapshot_index`` stays: whether close snapshots must not depend on when the writer finished)
        self._prune_snapshots()
        return info

    def _prune_snapshots(self) -> None:
        snaps = list_snapshots(self.path / "snapshots")
        boundaries = {e.snapshot for e in self.eras}  # era boundary snapshots stay (replay starts there)
        from aos.retention import read_compaction

        base = read_compaction(self.path)
        if base is not None:  # and the compaction base (replay, fsck and time travel start there)
            boundaries.add(base.snapshot)
        for old in snaps[:-self.keep_snapshots]:
            if old.name not in boundaries:
                old.unlink(missing_ok=True)

    def sync(self) -> None:
        """Write and fsync everything journaled so far.

        Called from another thread while :meth:`run` is going, it syncs at the
        run's next quiet point (everything committed by then) and returns then.
        """
        self._live()
        self._on_runner(self._sync)

    def _sync(self) -> None:
        """Write and sync the journal (as the durability policy says); acknowledge what it made durable."""
        j = self._journal
        j.flush(sync=True)
        self.durable_event_id = self._kernel.last_event_id
        self._intake.acknowledge(j.index)

    @property
    def era(self) -> str:
        return self.manifest.era.hex()

    # --------------------------------------------------------------- eras
    def propose(self, manifest: Manifest) -> int:
        """Journal a proposal to move this world to ``manifest``; returns its id (docs/upgrades.md)."""
        from aos.eras import propose

        return propose(self, manifest)

    def approve(self, proposal: int, *, by: str = "", note: str = "") -> None:
        """Journal an approval of ``proposal``."""
        from aos.eras import approve

        approve(self, proposal, by, note)

    def apply(self, proposal: int, manifest: Manifest, *, migrate: Mapping[str, Callable[[Any], Any]] | None = None,
              adopt: Any = (), drop: Any = (), retire: Any = ()) -> UpgradeResult:
        """Apply the approved ``proposal``: the world moves to ``manifest``'s era, then is closed.

        ``migrate`` maps reducer names to ``fn(old_state) -> new_state``, run
        for each of its cells in canonical order; ``adopt`` names reducers
        whose cells move to the new code as they are; the live cells of
        other reducers whose code changed stay pinned to the old code.
        ``drop`` names removed reducers whose cells are dropped, ``retire``
        those whose cells are kept read-only. See :func:`aos.eras.apply`.
        """
        from aos.eras import apply

        return apply(self, proposal, manifest, migrate=migrate, adopt=adopt, drop=drop, retire=retire)

    def shadow(self, proposal: int, manifest: Manifest, *, since: int | None = None, last: int | None = None,
               limit: int | None = None) -> Any:
        """Shadow-run ``proposal``'s manifest on recent history; journal the result with the proposal.

        Returns the :class:`aos.shadow.ShadowReport`; see :func:`aos.eras.shadow_proposal`.
        """
        from aos.eras import shadow_proposal

        return shadow_proposal(self, proposal, manifest, since=since, last=last, limit=limit)

    @property
    def window(self) -> int:
        return self._kernel.window

    @property
    def durability(self) -> Durability:
        return self._journal.durability

    @property
    def last_event_id(self) -> int:
        """The last ticket assigned (and committed: the inline executor commits each at once)."""
        return self._kernel.last_event_id

    # ----------------------------------------------------------- closing
    def close(self) -> None:
        """Snapshot (if anything changed and ``snapshot_on_close``), sync and release the world.

        A run in progress on another thread is waited for; a :meth:`serve` in progress is stopped first.
        """
        if self._closed is not None:
            return
        self._loop.stop()
        with self._loop.lock:
            self._close()

    def _close(self, why: str = "is closed", *, clean: bool = True) -> None:
        """The one way a world is released: adapters and workers stopped, journal closed (synced), lock freed.

        ``clean`` (``close``): a snapshot first when anything changed since the
        last one (``snapshot_on_close``) and the session's metrics written.
        Without it (an interrupted run or apply, an applied upgrade) only
        what was committed is synced. Calls made afterwards raise
        :class:`WorldClosedError` saying ``why``.
        """
        if self._closed is not None:
            return
        self._dispatcher.close()
        if isinstance(self._executor, ThreadsExecutor):
            self._executor.close()
        try:
            if self._snapshots is not None and self._snapshots.busy:
                if clean:
                    self._publish_snapshot()
                else:
                    self._snapshots.abandon()
            if clean and self.snapshot_on_close and self._journal.index != self._snapshot_index:
                self._snapshot()
            self._journal.close()
            self._intake.acknowledge(self._journal.index)
            if clean:  # the scheduling and commit metrics of this session, for `aos metrics` (not state)
                write_atomic(self.path / METRICS,
                             json.dumps(self._inspection.metrics_now(), indent=2, default=str).encode())
        finally:
            self._closed = why
            if self._clock is not None:
                self._clock.detach()
            os.close(self._lock_fd)
            self._intake.abandon_unacked(why)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"event_id={self._kernel.last_event_id}"
        return f"<World {self.path} {self.manifest.name} {state}>"

    # ---------------------------------------------------------- effect dispatch
    def effect_status(self) -> list[EffectStatus]:
        """Every intent awaiting its receipt, in queue order, with its dispatch progress (docs/effects.md):
        attempts failed so far, when the next is due, a timer's deadline, whether it is parked (dead-lettered)."""
        k = self._live()
        d = self._dispatcher
        return effect_status([(e.intent_hash, e.kind, e.cap, e.idempotency_key) for e in k.outbox.queued.values()],
                             d.state)

    def retry_effect(self, intent_hash: bytes | str) -> bytes:
        """Dispatch a parked (dead-lettered) intent again, its attempts counted afresh; returns its hash.

        ``intent_hash``: the hash, its hex, or a unique hex prefix. Raises
        :class:`DeadLetterError` when no pending intent matches, several do,
        or the one that does is not parked.
        """
        k = self._live()
        d = self._dispatcher
        h = match_intent(list(k.outbox.queued), intent_hash, parked=d.state.parked())
        self._on_runner(lambda: d.retry(k.outbox.queued[h]))
        return h

    def give_up_effect(self, intent_hash: bytes | str) -> int:
        """Settle a parked (dead-lettered) intent with its dead-letter error receipt
        (``{"error", "message", "attempts"}``, cost 0); returns the receipt's admission number."""
        k = self._live()
        d = self._dispatcher
        h = match_intent(list(k.outbox.queued), intent_hash, parked=d.state.parked())
        seq = self.submit_receipt(d.dead_letter_receipt(k.outbox.queued[h]))
        d.state.forget(h)
        return seq
