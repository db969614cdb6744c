"""Replay-or-die: re-run the journal serially and compare every record.

The replay feeds the journal's inputs (``EventAdmitted``) to a fresh kernel
in journal order, lets the inline executor assign the tickets and run the
reducers, and compares each record the kernel produces, byte for byte, with
the one the journal holds. ``SnapshotCreated`` records are checked against
the replayed cells. The first difference raises
:class:`~aos.errors.ReplayDivergenceError` naming the event_id, the reducer,
the key and both hashes.

``verify(workers=N)`` computes the steps on N worker threads (the threads
executor) and still commits and compares them strictly in journal order: a
run of steps between two inputs is assigned by the same sequencer, so it
produces the same records. It pays where steps run in parallel: native
reducers, or any reducer on a free-threaded build (docs/performance.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, cast

from aos._core.encoder import record_kind
from aos._core.frames import FrameCursor
from aos._core.inline_loop import InlineLoop
from aos.canonical import decode_trusted, digest
from aos.committer import Committer
from aos.errors import ArgumentError, ManifestMismatchError, ReplayDivergenceError
from aos.executor import Hooks, ThreadsExecutor
from aos.journal import SEG_HEADER_SIZE, Entry, Journal, JournalReader, Position
from aos.kernel import Kernel
from aos.lane_world import lane_of_meta
from aos.manifest import Manifest
from aos.outbox import settled_keep_of
from aos.records import (
    BudgetGranted,
    EventAdmitted,
    ReceiptAppended,
    Record,
    SnapshotCreated,
    StepCommitted,
    StepScheduled,
    decode_record,
    encode_record,
)
from aos.schema import first_key

if TYPE_CHECKING:
    from aos.retention import Compaction

_ERA_NOTES = frozenset(("ProposalSubmitted", "ApprovalRecorded", "ShadowRunCompleted"))
# what the commit of a step writes after its StepScheduled
_STEP_WRITES = frozenset(("StepCommitted", "StepFailed", "PolicyDecision", "EffectQueued", "InvariantViolated"))

# The map head and first key every StepScheduled payload starts with (from the schema). A CellMigrated payload
# starts so too, but those are read at era boundaries, never produced by a step; the divergence report checks
# the kind when it decodes the remembered payload.
_SCHEDULED_START = first_key("StepScheduled")
_SCHEDULED_LEN = len(_SCHEDULED_START)

__all__ = ["replay", "Replay", "VerifyingSink", "replay_entries"]

PROGRESS_EVERY = 1024  # steps between two progress reports


class _JournalEnd(Exception):
    """The journal ended in the middle of a step (read-only replay stops there)."""


class VerifyingSink(FrameCursor):
    """A kernel sink that checks each record against the journal's next one.

    It reads the journal in the batches of :meth:`JournalReader.batches`.
    When the journal's records run out, records go to ``journal`` when one is
    given (a world completing a step whose outcome was torn off), else the
    replay stops.
    """

    def __init__(self, batches: Iterator[tuple[str, int, list[tuple[int, bytes, bytes]]]],
                 journal: Journal | None = None) -> None:
        super().__init__()
        self._batches = batches
        self._segment = ""
        self._first = 0  # index of the batch's first frame
        self._frames: list[tuple[int, bytes, bytes]] = []
        self._i = 0
        self._next: bytes | None = None  # the payload of the next journal record
        self.journal = journal
        self._scheduled: bytes | None = None  # the last StepScheduled payload produced
        self.records = 0
        self._load()

    def _load(self) -> None:
        while self._i >= len(self._frames):
            batch = next(self._batches, None)
            if batch is None:
                self._next = None
                return
            self._segment, self._first, self._frames = batch
            self._i = 0
        self._next = self._frames[self._i][1]

    def peek_payload(self) -> bytes | None:
        """The next journal record's payload (None at the end)."""
        return self._next

    def peek(self) -> Entry | None:
        """The next journal record (None at the end)."""
        if self._next is None:
            return None
        at, payload, chain = self._frames[self._i]
        return Entry(self._first + self._i, self._segment, at, payload, chain)

    def consume(self) -> Entry:
        entry = self.peek()
        assert entry is not None
        self._i += 1
        self.records += 1
        self._load()
        return entry

    def append(self, record: Record) -> int:
        return self.append_payload(encode_record(record))

    def append_payload(self, payload: bytes) -> int:
        expected = self._next
        if expected is None:
            if self.journal is None:
                raise _JournalEnd()
            return self.journal.append_payload(payload)
        if payload != expected:
            self._diverged(self.peek(), payload)  # type: ignore[arg-type]
        i = self._i
        self._i = i + 1
        self.records += 1
        if i + 1 < len(self._frames):
            self._next = self._frames[i + 1][1]
        else:
            self._load()
        if payload[:_SCHEDULED_LEN] == _SCHEDULED_START:  # remembered for the divergence report
            self._scheduled = payload
        return self._first + i

    def steps_ahead(self) -> int:
        """The ``StepScheduled`` records from the next one on, before the next record no step writes (an input,
        a snapshot, an era record), within the batch read so far."""
        n = 0
        frames = self._frames
        for i in range(self._i, len(frames)):
            kind = record_kind(frames[i][1])
            if kind == "StepScheduled":
                n += 1
            elif kind not in _STEP_WRITES:
                break
        return n

    def commit_point(self) -> bool:
        if self._next is None and self.journal is not None:
            return self.journal.commit_point()
        return False

    def _diverged(self, entry: Entry, payload: bytes) -> None:
        from aos.canonical import digest

        recorded = entry.record()
        produced = decode_record(payload, "replayed record")
        step = decode_record(self._scheduled, "replayed record") if self._scheduled is not None else None
        event_id = getattr(produced, "event_id", None) or getattr(recorded, "event_id", None)
        if isinstance(produced, StepScheduled):
            step = produced
        reducer = step.reducer if isinstance(step, StepScheduled) and step.event_id == event_id else None
        key = step.key if reducer is not None else None  # type: ignore[union-attr]
        where = f"segment {entry.segment} offset {entry.offset}"
        if isinstance(recorded, StepCommitted) and isinstance(produced, StepCommitted):
            if recorded.state_hash != produced.state_hash:
                raise ReplayDivergenceError(
                    event_id, reducer, key, _hex(recorded.state_hash), _hex(produced.state_hash),
                    f"state hash differs, {where}")
            what = "emitted events differ" if recorded.emits != produced.emits else "effect intents differ"
        elif type(recorded) is not type(produced):
            what = f"journal has {recorded.KIND}, replay produced {produced.KIND}"
        else:
            what = f"{produced.KIND} differs"
        raise ReplayDivergenceError(event_id, reducer, key, digest(entry.payload).hex(),
                                    digest(payload).hex(), f"{what}, {where}")


def _hex(h: bytes | None) -> str:
    return h.hex() if h is not None else "none (cell deleted)"


def _peek(payload: bytes) -> dict[str, Any]:
    """A journal record's map, read without the full canonical checks ({} when malformed)."""
    try:
        m = decode_trusted(payload)
    except Exception:  # malformed: Entry.record() reports it properly
        return {}
    return m if isinstance(m, dict) else {}


def replay_entries(kernel: Kernel, sink: VerifyingSink, progress: Callable[[int], None] | None = None,
                   until: int | None = None, workers: int = 0) -> None:
    """Drive ``kernel`` through the journal entries held by ``sink`` (up to ticket ``until``).

    ``workers`` >= 1: the steps between two inputs run on the threads
    executor with that many workers (the module's docstring).
    """
    committer = Committer(kernel)
    next_ticket = kernel.next_ticket
    loop = InlineLoop(kernel, committer, [0] * 40)  # the inline executor's C loop, comparing through the sink
    hooks = Hooks()
    admit_journaled = kernel.admit_journaled
    cells = kernel.cells
    threads = ThreadsExecutor(kernel, workers) if workers > 0 else None
    try:
        while (payload := sink.peek_payload()) is not None:
            # Dispatch on the record kind, read without decoding the record: the records a step
            # makes are compared byte for byte with the journal's, which proves them canonical.
            kind = record_kind(payload)
            if threads is not None and kind == "EventAdmitted":
                if loop.admit(payload) or admit_journaled(payload):  # admitted only: the steps go below
                    continue
            if threads is not None and kind == "StepScheduled":
                steps = sink.steps_ahead()
                if until is not None:
                    steps = min(steps, max(0, until - kernel.last_event_id))
                before = sink.records
                if steps > 0:
                    threads.run(steps)  # every record compared as it is committed
                if sink.records != before:
                    if progress is not None:
                        progress(sink.records)
                    continue
                # nothing ran (past ``until``, or no input for the step): the serial path below says which
            if kind == "StepScheduled" or kind == "EventAdmitted":
                limit = -1
                if until is not None:
                    if kind == "StepScheduled":
                        event_id = _peek(payload).get("event_id")
                        if isinstance(event_id, int) and event_id > until:
                            return
                    limit = max(0, until - kernel.last_event_id)
                if progress is not None:
                    limit = PROGRESS_EVERY if limit < 0 else min(limit, PROGRESS_EVERY)
                # steps and admissions up to the journal's next other record (or ``limit`` steps), in C
                before = sink.records
                loop.run(limit, hooks)
                if sink.records != before:
                    if progress is not None:
                        progress(sink.records)
                    continue
                if kind == "StepScheduled":
                    ticket = next_ticket()
                    entry = sink.peek()
                    assert entry is not None  # (the next record is the StepScheduled ``kind`` names)
                    scheduled = cast(StepScheduled, entry.record())
                    if ticket is None:
                        raise ReplayDivergenceError(scheduled.event_id, scheduled.reducer, scheduled.key,
                                                    None, None, "journal schedules a step the replay has no input for")
                    raise RuntimeError(f"replay: the step loop stopped before ticket {ticket.event_id}")
                # an event the C loop leaves to the general path: admitted (or refused) below
            if kind == "EventAdmitted" and admit_journaled(payload):  # re-made and compared
                continue
            if kind in _ERA_NOTES:  # proposals, approvals, shadow runs: nothing to re-run
                sink.consume()
                continue
            if kind == "EraApplied":  # an era boundary: the caller moves to the next era's kernel
                return
            entry = sink.peek()
            assert entry is not None
            rec = entry.record()
            if isinstance(rec, ReceiptAppended):
                kernel.admit_receipt_recorded(rec)
            elif isinstance(rec, EventAdmitted) and rec.origin is not None:  # a lane world's numbered message
                kernel.accept_recorded(rec)
            elif isinstance(rec, BudgetGranted):
                kernel.grant_recorded(rec)
            elif isinstance(rec, SnapshotCreated):
                sink.consume()
                actual = cells.snapshot_hash()
                if actual != rec.snapshot_hash or rec.event_id != kernel.last_event_id:
                    raise ReplayDivergenceError(rec.event_id, None, None, rec.snapshot_hash.hex(),
                                                actual.hex(), "snapshot hash differs")
            else:
                raise ReplayDivergenceError(getattr(rec, "event_id", None), None, None, None, None,
                                            f"unexpected {rec.KIND} at segment {entry.segment} "
                                            f"offset {entry.offset}")
            if progress is not None:
                progress(sink.records)
    except _JournalEnd:
        return
    finally:
        if threads is not None:
            threads.close()


class Replay:
    """A serial replay of a world's journal (read-only), across its eras.

    ``manifests``: the manifests of the world's eras (any order; each is
    matched to its era by hash). Every era from the oldest one given on is
    re-executed with its own manifest; the eras before it are not: the
    replay then starts from the boundary snapshot of the oldest era given
    and :attr:`not_reexecuted` names the event_ids it did not re-execute.
    """

    def __init__(self, path: str | os.PathLike[str], manifest: Manifest | None = None, *,
                 manifests: Sequence[Manifest] | None = None) -> None:
        from aos.eras import era_chain, reconcile
        from aos.world import check_meta, load_meta  # the world module owns the directory layout

        self.path = Path(path)
        given = list(manifests or ()) + ([manifest] if manifest is not None else [])
        if not given:
            raise TypeError("replay needs a manifest (or manifests=[...], one per era)")
        for m in given:
            if not isinstance(m, Manifest):
                raise TypeError(f"manifests must be aos.Manifest objects, got {type(m).__name__}")
        self.meta: dict[str, Any] = reconcile(self.path, load_meta(self.path), write=False)
        if "interrupted_apply" in self.meta:
            from aos.errors import StorageError

            raise StorageError(f"world {self.path}: an upgrade was interrupted (journal/"
                               f"{self.meta['interrupted_apply']} begins an apply the journal does not hold "
                               "whole); opening the world rolls it back")
        self.eras = era_chain(self.meta)
        current = self.eras[-1]
        if current.era not in {m.era for m in given}:
            newest = given[-1] if manifest is None else manifest
            # raises EraChangeError naming the changes; a world written with an earlier form of code
            # identity pins the manifest to that form (its era then is the stored one)
            check_meta(self.path, self.meta, newest)
        by_era = {m.era: m for m in given}
        unknown = [m for m in given if m.era not in {e.era for e in self.eras}]
        if unknown:
            raise ManifestMismatchError(f"manifest {unknown[0].name} (era {unknown[0].era.hex()[:12]}) is not one "
                                        f"of the {len(self.eras)} era(s) of world {self.path}")
        first = len(self.eras) - 1
        while first > 0 and self.eras[first - 1].era in by_era:
            first -= 1
        self._first = first
        self.first_era = self.eras[first]  # the oldest era re-executed
        self._manifests = [by_era[e.era] for e in self.eras[first:]]
        self.manifest = self._manifests[-1]
        #: the manifests of the eras re-executed, oldest first
        self.manifests: tuple[Manifest, ...] = tuple(self._manifests)
        boundary = self.eras[first].event_id
        #: event_ids the replay does not re-execute (written in eras whose manifest was not given)
        self.not_reexecuted: range = range(1, boundary + 1) if first > 0 else range(1, 1)
        self.kernel: Kernel | None = None
        from aos.retention import read_compaction

        #: the world's compaction marker (None: never compacted): records before its index may be gone
        self.compacted = read_compaction(self.path)
        #: the compaction base the replay verifies from, when it lies after the oldest era re-executed (None:
        #: the replay starts where the era chain says); the event_ids up to its ticket are not re-executed
        self.verified_from: Compaction | None = None
        self._first_base = first
        c = self.compacted
        if c is not None and c.index > (self.eras[first].record if first > 0 else 0):
            at = next((i for i, e in enumerate(self.eras) if e.era == c.era), None)
            if at is None or at < first:
                raise ManifestMismatchError(f"world {self.path} was compacted to snapshots/{c.snapshot}, written "
                                            f"under era {c.era.hex()[:12]}, which is not one of the eras given")
            self.verified_from = c
            self._first_base = at
            self.not_reexecuted = range(1, c.event_id + 1)
        self.started_from: Path | None = None  # the snapshot the last verify() or latest() started from

    def verify(self, progress: Callable[[int], None] | None = None, until: int | None = None,
               workers: int = 0) -> str:
        """Replay everything (or up to ticket ``until``); return the snapshot hash (hex) of the cells.

        ``workers`` >= 1 computes the steps on that many threads (see the
        module's docstring); the records are compared in order all the same.

        Afterwards :meth:`state` and :meth:`cells` read the replayed state:
        with ``until`` that is the world as it was right after that ticket.

        A compacted world (``aos compact``) is verified from its compaction
        base snapshot (:attr:`verified_from`; :attr:`not_reexecuted` names the
        tickets before it) and a ticket ``until`` before it raises
        :class:`~aos.errors.JournalCompactedError`.
        """
        if until is not None and (type(until) is not int or until < 0):
            raise ArgumentError(f"until must be an event_id >= 0, got {until!r}")
        if type(workers) is not int or workers < 0:
            raise ArgumentError(f"workers must be an int >= 0, got {workers!r}")
        if until is not None and self._first > 0 and until < self.first_era.event_id:
            raise _era_missing(self.path, self.eras, self._first, until)
        if until is not None and self.verified_from is not None:
            from aos.retention import check_not_compacted

            check_not_compacted(self.path, self.verified_from, until)
        return self._verify(progress, until, workers, None)

    def latest(self) -> str:
        """The world's state now: load its newest snapshot and replay only the journal after it.

        Every record after the snapshot is verified as :meth:`verify` does;
        returns the snapshot hash (hex) of the cells, which :meth:`state` and
        :meth:`cells` read afterwards. Works after ``aos compact``, and costs
        the journal's tail instead of all of it (the ``aos state`` and
        ``aos cells`` commands without ``--at``). Without a snapshot of an era
        given it replays from the start, as :meth:`verify` does.
        """
        from aos.snapshot import list_snapshots, snapshot_index

        boundaries = {e.snapshot: i for i, e in enumerate(self.eras)}
        for snap in reversed(list_snapshots(self.path / "snapshots")):
            index = snapshot_index(snap)
            at = boundaries.get(snap.name)
            if at is None:
                at = max(i for i, e in enumerate(self.eras) if i == 0 or e.record < index)
            if at >= self._first:
                return self._verify(None, None, 0, (snap, at))
        return self.verify()

    def _verify(self, progress: Callable[[int], None] | None, until: int | None, workers: int,
                from_snapshot: tuple[Path, int] | None) -> str:
        from aos.eras import transition
        from aos.records import CellMigrated, EraApplied
        from aos.snapshot import load_snapshot

        self.started_from = None
        if from_snapshot is None and self.verified_from is not None:
            from_snapshot = (self.path / "snapshots" / self.verified_from.snapshot, self._first_base)
        proof = _longest_proof(self.path, self.meta)  # read before the journal: a writer only adds to both
        reader = JournalReader(self.path / "journal", [e.era for e in self.eras])
        era_at = self._first
        m = self._manifests[0]
        start = None
        boot = Kernel(m, None, window=self.meta["window"], aging=self.meta["aging"],  # type: ignore[arg-type]
                      lane=lane_of_meta(self.meta), settled_keep=settled_keep_of(self.meta))
        if from_snapshot is not None:
            snap_path, era_at = from_snapshot
            m = self._manifests[era_at - self._first]
            boot = Kernel(m, None, window=self.meta["window"], aging=self.meta["aging"],  # type: ignore[arg-type]
                          lane=lane_of_meta(self.meta), settled_keep=settled_keep_of(self.meta))
            if not snap_path.is_file():
                raise ReplayDivergenceError(None, None, None, None, None,
                                            f"the snapshot to replay from ({snap_path.relative_to(self.path)}) is "
                                            "missing")
            start = load_snapshot(snap_path, boot, m.era)
            self.started_from = snap_path
        elif era_at > 0:
            snap = self.eras[era_at].snapshot
            if snap is None or not (self.path / "snapshots" / snap).is_file():
                raise ReplayDivergenceError(None, None, None, None, None,
                                            f"the boundary snapshot of era {self.eras[era_at].era.hex()[:12]} "
                                            f"(snapshots/{snap}) is missing: supply the manifests of the eras "
                                            "before it")
            start = load_snapshot(self.path / "snapshots" / snap, boot, m.era)
        sink = VerifyingSink(reader.batches(start))
        boot.sink = sink
        kernel = boot
        while True:
            replay_entries(kernel, sink, progress, until, workers)
            payload = sink.peek_payload()
            if payload is None or record_kind(payload) != "EraApplied":
                break
            if until is not None and kernel.last_event_id >= until:
                break
            entry = sink.consume()
            rec = entry.record()
            assert isinstance(rec, EraApplied)
            if era_at + 1 >= len(self.eras) or rec.ends != self.eras[era_at].era \
                    or rec.starts != self.eras[era_at + 1].era or rec.event_id != kernel.last_event_id:
                raise ReplayDivergenceError(rec.event_id, None, None, None, None,
                                            f"EraApplied at segment {entry.segment} offset {entry.offset} does "
                                            "not continue the era chain of world.cbor")
            states: dict[tuple[str, Any], bytes | None] = {}
            while (p := sink.peek_payload()) is not None and record_kind(p) == "CellMigrated":
                e = sink.consume()
                cm = e.record()
                assert isinstance(cm, CellMigrated)
                if cm.state is not None and digest(cm.state) != cm.state_hash:
                    raise ReplayDivergenceError(rec.event_id, cm.reducer, cm.key, _hex(cm.state_hash),
                                                digest(cm.state).hex(), "migrated state does not match its hash")
                if kernel.cells.find(cm.reducer, cm.key) is None:
                    raise ReplayDivergenceError(rec.event_id, cm.reducer, cm.key, None, None,
                                                "CellMigrated names a cell the replay does not hold")
                states[(cm.reducer, cm.key)] = cm.state
            era_at += 1
            m = self._manifests[era_at - self._first]
            kernel = transition(kernel, m, sink, states, rec.retired, rec.dropped,
                                Position(entry.index, 0, SEG_HEADER_SIZE, entry.chain), rec.pinned, rec.adopted)
        if until is None and sink.peek_payload() is None and reader.end is not None:
            _check_end(self.path, reader.end, proof)
        if until is not None and kernel.last_event_id < until:
            raise ValueError(f"the journal of {self.path} ends at event_id {kernel.last_event_id}, before {until}")
        self.kernel = kernel
        return kernel.cells.snapshot_hash().hex()

    def _replayed(self) -> Kernel:
        if self.kernel is None:
            self.verify()
        assert self.kernel is not None
        return self.kernel

    def state(self, reducer: str, key: Any = None) -> Any:
        """The replayed state of cell (reducer, key), decoded; None if it has none (keys as for World.state)."""
        from aos.admission import cell_key
        from aos.canonical import decode_trusted

        k = self._replayed()
        m = k.manifest
        if reducer not in m.reducers and k.retired:
            for (r, c), s in k.retired.items():
                if r == reducer and c == key:
                    return decode_trusted(s)
        key = cell_key(m.get(reducer), key, f"state({reducer!r})")
        cid = k.cells.find(reducer, key)
        data = None if cid is None else k.cells.states[cid]
        return None if data is None else decode_trusted(data)

    def cells(self, reducer: str | None = None) -> list[tuple[str, Any]]:
        """Live cells of the replayed state as (reducer, key), in canonical order."""
        k = self._replayed()
        if reducer is not None:
            k.manifest.get(reducer)
        return [(spec.name, key) for _n, spec, key, _s, _h in k.cells.sorted_items()
                if reducer is None or spec.name == reducer]


def _longest_proof(path: Path, meta: dict[str, Any]) -> tuple[int, str] | None:
    """How many records something proves the journal held, and what: the watermark, a snapshot, the metadata."""
    from aos.journal import Watermark
    from aos.snapshot import list_snapshots, snapshot_index

    proofs: list[tuple[int, str]] = []
    if meta.get("watermark") is True:
        proofs.append((0, "world.cbor (the world was created with a journal)"))
    if (path / "journal").is_dir():
        found = Watermark.read(path / "journal")
        if found is not None:
            proofs.append((found[0].index, "the durable watermark (journal/durable)"))
    snaps = list_snapshots(path / "snapshots")
    if snaps:
        proofs.append((snapshot_index(snaps[-1]), f"snapshot snapshots/{snaps[-1].name}"))
    return max(proofs) if proofs else None


def _check_end(path: Path, end: Any, proof: tuple[int, str] | None) -> None:
    from aos.errors import JournalTruncatedError
    from aos.journal import segment_name

    if proof is None:
        return
    expected, evidence = proof
    if not JournalReader(path / "journal").segments() and evidence.startswith("world.cbor"):
        raise JournalTruncatedError(segment_name(0), 0, f"the journal directory {path / 'journal'} holds no "
                                    f"segments, but {evidence}", evidence, 0, None, path)
    if end.index < expected:
        raise JournalTruncatedError(segment_name(end.segment), end.offset,
                                    f"the journal holds {end.index} records, but {evidence} proves {expected}",
                                    evidence, end.index, expected, path)


def _era_missing(path: Path, eras: Sequence[Any], first: int, until: int) -> Exception:
    """The typed error for ticket ``until`` of an era before ``eras[first]``, naming that era."""
    from aos.errors import EraManifestMissingError

    at = max(i for i in range(first) if i == 0 or eras[i].event_id < until)
    e = eras[at]
    since = "from the world's creation" if at == 0 else f"after event_id {e.event_id}"
    missing = ", ".join(f"{x.era.hex()[:12]} ({x.name})" for x in eras[at:first])
    return EraManifestMissingError(
        f"event_id {until} of {path} lies in era {e.era.hex()[:12]} (manifest {e.name}, era {at + 1} of {len(eras)}, "
        f"{since}), whose manifest was not given: give the manifest of each era from it on "
        f"(--manifest or manifests=[...]; missing: {missing})",
        era=e.era.hex(), manifest=e.name, event_id=until)


def replay(path: str | os.PathLike[str], manifest: Manifest | None = None, *,
           manifests: Sequence[Manifest] | None = None) -> Replay:
    """``aos.replay(path, manifest).verify()`` replays a world's journal serially.

    ``manifests=[m1, m2, ...]`` replays across eras, each with its own
    manifest (see :class:`Replay`).
    """
    return Replay(path, manifest, manifests=manifests)
