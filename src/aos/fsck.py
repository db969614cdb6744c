"""Checking a world's files without changing them (``aos fsck``).

:func:`check_world` reads every file of a world directory — ``world.cbor``,
the secret's presence, every journal segment (headers, frames, the hash
chain, every record's encoding and the order of each step's records), the
durable watermark and every snapshot (content hash, structure, the hash of
its cells, its position against the journal's chain) — and reports what is
intact and up to where. It needs no manifest; given one it also checks the
world's era and replays the intact journal, verifying every recorded state
hash. It never writes, creates, locks or deletes anything.

The *intact prefix* is the journal from its first record up to the first
damage (or its end). Inside it, the *step boundary* is the end of the last
complete step or input: a ``StepScheduled`` whose outcome (and, for a
committed step, its ``PolicyDecision``/``EffectQueued`` records) is not all
there is cut off. That boundary is what ``aos salvage`` keeps
(:mod:`aos.salvage`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from aos import canonical
from aos.cells import hash_cells
from aos.errors import AosError, JournalCorruptError, NonCanonicalError, PinnedEraError, SnapshotCorruptError
from aos.journal import (
    FRAME_OVERHEAD,
    GENESIS,
    SEG_HEADER_SIZE,
    WATERMARK_FILE,
    JournalReader,
    Position,
    Watermark,
    segment_name,
)
from aos.lane_world import lane_of_meta
from aos.manifest import Manifest
from aos.outbox import settled_keep_of
from aos.receipt import SECRET_FILE
from aos.records import (
    ERA_KINDS,
    BudgetGranted,
    EffectQueued,
    EventAdmitted,
    InvariantViolated,
    PolicyDecision,
    ReceiptAppended,
    Record,
    SnapshotCreated,
    StepCommitted,
    StepFailed,
    StepScheduled,
    decode_record,
)
from aos.snapshot import SNAPSHOT_FORMAT, check_snapshot_file, list_snapshots, snapshot_index

__all__ = ["check_world", "FsckReport", "Problem", "JournalWalk", "SnapshotCheck", "walk_journal",
           "prefix_batches"]

META = "world.cbor"  # aos.world.META (not imported: aos.world imports much more than a check needs)


@dataclass(frozen=True)
class Problem:
    """One piece of damage: the file (relative to the world), the offset in it where known, what is wrong."""

    file: str
    offset: int | None
    what: str

    def __str__(self) -> str:
        at = f" offset {self.offset}" if self.offset is not None else ""
        return f"{self.file}{at}: {self.what}"


@dataclass
class SegmentInfo:
    """One segment as read: its first record, how many of its records are intact, its size."""

    name: str
    first: int
    records: int = 0
    size: int = 0
    read: bool = False  # False: lies after the first damage (its records are not counted)


@dataclass
class JournalWalk:
    """What reading the journal from its start found."""

    records: int = 0  # intact records from the first one
    end: Position = field(default_factory=lambda: Position(0, 0, SEG_HEADER_SIZE, GENESIS))
    damage: Problem | None = None  # the first damage (the intact prefix ends there)
    torn: tuple[str, int] | None = None  # a frame cut short at the very end (not damage by itself)
    keep: int = 0  # records up to the last step boundary inside the intact prefix
    last_event_id: int = 0  # the last step with its whole outcome inside ``keep``
    cut_step: str | None = None  # what lies between ``keep`` and ``records`` (an unfinished step)
    kinds: Counter[str] = field(default_factory=Counter)
    segments: list[SegmentInfo] = field(default_factory=list)
    chains: dict[int, bytes] = field(default_factory=dict)  # the chain hash at asked-for record indices


@dataclass
class SnapshotCheck:
    """One snapshot file: where it lies in the journal and whether it is whole."""

    name: str
    index: int | None
    event_id: int | None = None
    cells: int | None = None
    problem: str | None = None  # the file itself is damaged
    note: str = ""
    past_end: bool = False  # whole, but lies past the intact journal


@dataclass
class FsckReport:
    """What :func:`check_world` found. ``ok`` when nothing is damaged."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] | None = None
    era: bytes | None = None  # the current era
    eras: list[bytes] = field(default_factory=list)  # the era chain, oldest first (docs/upgrades.md)
    secret: bool = False
    journal: JournalWalk = field(default_factory=JournalWalk)
    watermark: Position | None = None
    watermark_state: str = ""
    snapshots: list[SnapshotCheck] = field(default_factory=list)
    verified: str | None = None  # the state hash a replay of the intact prefix gave (with a manifest)
    #: per era (oldest first) with manifests given: (era, first event_id, last event_id, what the replay found:
    #: "verified", "not re-executed: ...", or "FAILED: ...")
    era_checks: list[tuple[bytes, int, int, str]] = field(default_factory=list)
    journal_state: str = ""  # "MISSING" / "EMPTY" where the journal directory should hold segments
    compacted: Any = None  # the compaction marker (aos.retention.Compaction) of a compacted journal

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------ the journal
# the records that come between steps, never inside one
_BOUNDARY_KINDS: tuple[type[Record], ...] = (EventAdmitted, ReceiptAppended, SnapshotCreated, BudgetGranted) + ERA_KINDS


class _Steps:
    """Follows the order of a step's records: StepScheduled, its outcome, a PolicyDecision per intent
    (each allowed one followed by its EffectQueued); inputs and SnapshotCreated only between steps."""

    def __init__(self) -> None:
        self.state = 0  # 0 between steps, 1 scheduled, 2 awaiting a PolicyDecision, 3 awaiting an EffectQueued
        self.event_id = 0  # the step under way (or the last one)
        self.left = 0  # intents whose PolicyDecision is still to come

    def feed(self, rec: Any) -> str | bool:
        """True when ``rec`` ends at a step boundary, False inside a step, else what is out of place."""
        s = self.state
        if isinstance(rec, _BOUNDARY_KINDS):
            return True if s == 0 else f"{rec.KIND} in the middle of the step of event_id {self.event_id}"
        if isinstance(rec, StepScheduled):
            if s != 0:
                return f"StepScheduled of event_id {rec.event_id} before the step of event_id {self.event_id} ended"
            if rec.event_id != self.event_id + 1:
                return f"StepScheduled of event_id {rec.event_id} after event_id {self.event_id}"
            self.event_id, self.state = rec.event_id, 1
            return False
        if getattr(rec, "event_id", None) != self.event_id or s == 0:
            return f"{rec.KIND} of event_id {getattr(rec, 'event_id', None)} outside its step"
        if isinstance(rec, (StepFailed, InvariantViolated)) and s == 1:
            self.state = 0
            return True
        if isinstance(rec, StepCommitted) and s == 1:
            self.left = len(rec.effects)
            self.state = 2 if self.left else 0
            return self.state == 0
        if isinstance(rec, PolicyDecision) and s == 2:
            if rec.allowed:
                self.state = 3
                return False
            return self._intent_done()
        if isinstance(rec, EffectQueued) and s == 3:
            return self._intent_done()
        return f"{rec.KIND} out of order in the step of event_id {self.event_id}"

    def _intent_done(self) -> bool:
        self.left -= 1
        self.state = 2 if self.left else 0
        return self.state == 0


def walk_journal(directory: Path, era: bytes | list[bytes] | None,
                 chains_at: frozenset[int] | set[int] = frozenset(), start: Position | None = None,
                 event_id: int = 0) -> JournalWalk:
    """Read the journal at ``directory`` from its start up to its first damage (read-only).

    ``start``, ``event_id``: a compacted journal is read from its compaction base (a position between steps,
    after ticket ``event_id``).
    """
    w = JournalWalk()
    reader = JournalReader(directory, era)
    w.segments = [SegmentInfo(p.name, _first_of(p), 0, p.stat().st_size) for p in reader.segments()]
    by_name = {s.name: s for s in w.segments}
    if start is not None:
        w.records = w.keep = start.index
        w.last_event_id = event_id
        w.end = start
    at0 = 0 if start is None else start.index
    if at0 in chains_at:
        w.chains[at0] = GENESIS if start is None else start.chain
    steps = _Steps()
    steps.event_id = event_id
    pos = w.end
    try:
        for name, first, found in reader.batches(start):
            seg = by_name[name]
            seg.read = True
            seg_first = seg.first
            for i, (offset, payload, chain) in enumerate(found):
                index = first + i
                try:
                    rec = decode_record(payload, f"segment {name} offset {offset}")
                except NonCanonicalError as exc:
                    w.damage = Problem(f"journal/{name}", offset, f"record {index} does not decode: {exc}")
                    break
                verdict = steps.feed(rec)
                if isinstance(verdict, str):
                    w.damage = Problem(f"journal/{name}", offset, f"record {index} out of place: {verdict}")
                    break
                pos = Position(index + 1, seg_first, offset + FRAME_OVERHEAD + len(payload), chain)
                w.records = index + 1
                w.end = pos
                seg.records += 1
                w.kinds[rec.KIND] += 1
                if index + 1 in chains_at:
                    w.chains[index + 1] = chain
                if verdict:
                    w.keep, w.last_event_id = index + 1, steps.event_id
            if w.damage is not None:
                break
        else:
            for seg in w.segments:  # segments of a journal read to its end were all read
                seg.read = seg.read or seg.records == 0 and seg.first == w.records
    except JournalCorruptError as exc:
        w.damage = Problem(f"journal/{exc.segment}", exc.offset, exc.reason)
    if w.damage is None and reader.torn_at is not None:
        w.torn = reader.torn_at
    if w.keep < w.records:
        w.cut_step = (f"the step of event_id {steps.event_id}: {w.records - w.keep} record(s) from its "
                      "StepScheduled on, without all of its outcome")
    return w


def _first_of(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return -1


def prefix_batches(directory: Path, era: bytes | None,
                   records: int) -> Iterator[tuple[str, int, list[tuple[int, bytes, bytes]]]]:
    """The journal's first ``records`` records, as :meth:`JournalReader.batches` gives them."""
    if records <= 0:
        return
    for name, first, found in JournalReader(directory, era).batches():
        if first + len(found) >= records:
            yield name, first, found[:records - first]
            return
        yield name, first, found


# ------------------------------------------------------------------ the files
def _check_meta(report: FsckReport, manifest: Manifest | None, others: tuple[Manifest, ...] = ()) -> None:
    p = report.path
    meta_path = p / META
    if not meta_path.is_file():
        report.problems.append(Problem(META, None, "is missing (this may not be an aos world)"))
        return
    try:
        meta = canonical.decode(meta_path.read_bytes(), META)
        if not isinstance(meta, dict):
            raise ValueError(f"is a {type(meta).__name__}, not a map")
        if meta.get("format") != 1:
            raise ValueError(f"unknown world format {meta.get('format')!r}")
        if not isinstance(meta.get("manifest"), dict):
            raise ValueError("has no manifest description")
        for name in ("window", "aging"):
            if type(meta.get(name)) is not int or meta[name] < 1:
                raise ValueError(f"{name} is {meta.get(name)!r}")
        if meta.get("watermark", True) is not True:
            raise ValueError(f"watermark is {meta['watermark']!r}")
    except (AosError, ValueError, OSError) as exc:
        report.problems.append(Problem(META, None, f"malformed: {exc}"))
        return
    report.meta = meta
    report.era = canonical.hash_value(meta["manifest"])
    try:
        from aos.eras import era_chain, reconcile

        view = reconcile(p, meta, write=False)
        report.eras = [e.era for e in era_chain(view)]
        if "interrupted_apply" in view:
            from aos.eras import _segment_era

            report.eras.append(_segment_era(p / "journal" / view["interrupted_apply"]))
            report.notes.append(f"journal/{view['interrupted_apply']} begins an upgrade that was interrupted: "
                                "opening the world rolls it back")
    except (AosError, KeyError, TypeError, ValueError, OSError) as exc:
        report.problems.append(Problem(META, None, f"malformed era chain: {exc}"))
        report.eras = [report.era]
    if report.eras[-1] != report.era:
        report.notes.append(f"{META} lags the journal, which ends in era {report.eras[-1].hex()} "
                            "(opening the world repairs it)")
    if manifest is not None:
        from aos.world import read_meta

        try:
            read_meta(p, manifest)
        except AosError as exc:
            report.problems.append(Problem(META, None, f"does not match the manifest given: {exc}"))
    for m in others:  # manifests of earlier eras (--manifest given more than once)
        if m.era not in report.eras:
            from aos.world import read_meta

            try:  # the changes against the current era say what differs
                read_meta(p, m)
            except AosError as exc:
                report.problems.append(Problem(META, None, f"the manifest given {m.name} (era {m.era.hex()[:12]}) "
                                                           f"is none of the world's {len(report.eras)} era(s): {exc}"))


def _check_watermark(report: FsckReport) -> None:
    d = report.path / "journal"
    keeps = report.meta is not None and report.meta.get("watermark") is True
    if not d.is_dir():
        report.watermark_state = "missing, with the journal directory"
        return
    try:
        found = Watermark.read(d) if d.is_dir() else None
    except JournalCorruptError as exc:
        report.problems.append(Problem(f"journal/{WATERMARK_FILE}", None, exc.reason))
        report.watermark_state = "damaged"
        return
    if found is None:
        if keeps:
            report.problems.append(Problem(f"journal/{WATERMARK_FILE}", None, "is missing (the world keeps one): "
                                           "nothing shows how much of the journal was acknowledged"))
            report.watermark_state = "missing"
        else:
            report.watermark_state = "none (a world from before the watermark; opening starts one)"
        return
    mark, _slot = found
    report.watermark = mark
    report.watermark_state = "ok" + (" (one of its two slots fails its check; the other is used)"
                                     if Watermark.whole_slots(d) < 2 else "")


def _compare_watermark(report: FsckReport) -> None:
    mark, w = report.watermark, report.journal
    if mark is None:
        return
    where = f"segment {segment_name(mark.segment)} offset {mark.offset}"
    if w.records < mark.index:
        report.problems.append(Problem(
            f"journal/{WATERMARK_FILE}", None,
            f"says {mark.index:,} records were acknowledged (up to {where}), the intact journal holds "
            f"{w.records:,}: {mark.index - w.records:,} acknowledged record(s) are missing or damaged"))
    elif w.chains.get(mark.index) != mark.chain:
        report.problems.append(Problem(
            f"journal/{WATERMARK_FILE}", None,
            f"the journal's chain hash at record {mark.index} ({where}) is not the one the watermark "
            "acknowledged: the journal is not the one that was synced"))


def _check_snapshot(report: FsckReport, path: Path, manifests: dict[bytes, Manifest]) -> SnapshotCheck:
    """Check one snapshot file; with the manifest of its era (``manifests``, by era) also load it."""
    name = path.name
    try:
        index = snapshot_index(path)
    except SnapshotCorruptError as exc:
        return SnapshotCheck(name, None, problem=exc.reason)
    check = SnapshotCheck(name, index)
    try:
        data = check_snapshot_file(path)
        doc = canonical.decode(data, str(path))
        if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
            raise ValueError("not a snapshot of a known format")
        if report.era is not None and doc.get("era") not in (report.eras or [report.era]):
            raise ValueError("written under another era than the world's")
        position = Position.from_wire(doc["position"])
        if position.index != index:
            raise ValueError("record index in the file name disagrees with the content")
        states, cells = doc["states"], doc["cells"]
        for sh, body in states.items():
            if canonical.digest(body) != sh:
                raise ValueError(f"state body does not match its hash {sh.hex()}")
        if any(sh not in states for _r, _k, sh in cells):
            raise ValueError("a cell names a state body the snapshot does not hold")
        if hash_cells(cells) != doc["snapshot_hash"]:
            raise ValueError("cells do not hash to the recorded snapshot hash")
        check.event_id, check.cells = doc["event_id"], len(cells)
    except SnapshotCorruptError as exc:
        check.problem = exc.reason
        return check
    except (AosError, KeyError, TypeError, ValueError, AttributeError) as exc:
        check.problem = f"malformed: {exc}"
        return check
    manifest = manifests.get(doc["era"])
    if manifest is not None and report.meta is not None:
        from aos.kernel import Kernel
        from aos.snapshot import load_snapshot

        try:
            load_snapshot(path, Kernel(manifest, None, window=report.meta["window"],  # type: ignore[arg-type]
                                       lane=lane_of_meta(report.meta), settled_keep=settled_keep_of(report.meta),
                                       aging=report.meta["aging"], earlier=manifests), manifest.era)
        except PinnedEraError:
            pass  # cells pinned to an era whose manifest was not given: not damage, only not loaded in full
        except (SnapshotCorruptError, AosError) as exc:
            check.problem = getattr(exc, "reason", str(exc))
            return check
    w = report.journal
    if report.compacted is not None and index < report.compacted.index:
        check.note = "its position lies in the compacted part of the journal (not checked against it)"
    elif index > w.records:
        check.past_end = True
        check.note = (f"lies past the {'intact ' if w.damage else ''}journal's end (record {w.records:,}): "
                      "its state cannot be salvaged")
    elif w.chains.get(index) != position.chain:
        check.problem = f"its position (record {index}) does not match the journal's chain hash there"
    else:
        check.note = "its position lies inside the intact journal"
    return check


def _batches_from(directory: Path, eras: list[bytes], start: Position | None,
                  records: int) -> Iterator[tuple[str, int, list[tuple[int, bytes, bytes]]]]:
    """The journal's records from ``start`` up to (not including) record ``records``."""
    for name, first, found in JournalReader(directory, eras).batches(start):
        if first + len(found) >= records:
            if records > first:
                yield name, first, found[:records - first]
            return
        yield name, first, found


def _verify_eras(report: FsckReport, manifests: list[Manifest]) -> None:
    """Replay each era of the intact prefix with its own manifest, from its boundary snapshot (the first era
    from the journal's start) to its end; eras without a manifest given are reported as not re-executed."""
    from aos.eras import era_chain, reconcile
    from aos.kernel import Kernel
    from aos.replay import VerifyingSink, replay_entries
    from aos.snapshot import load_snapshot

    assert report.meta is not None
    w = report.journal
    chain = era_chain(reconcile(report.path, report.meta, write=False))
    by_era = {m.era: m for m in manifests}
    c = report.compacted
    for i, era in enumerate(chain):
        first = era.event_id + 1
        last = chain[i + 1].event_id if i + 1 < len(chain) else w.last_event_id
        m = by_era.get(era.era)
        base_here = c is not None and c.era == era.era and c.index > (era.record if i > 0 else 0)
        if c is not None and not base_here and i + 1 < len(chain) and chain[i + 1].record <= c.index:
            report.era_checks.append((era.era, first, last, "not re-executed: its records were compacted"))
            continue
        if m is None:
            report.era_checks.append((era.era, first, last, "not re-executed: no manifest of this era was given"))
            continue
        # (its sink is set below, once the replay's start is known)
        kernel = Kernel(m, None, window=report.meta["window"], aging=report.meta["aging"],  # type: ignore[arg-type]
                        lane=lane_of_meta(report.meta), settled_keep=settled_keep_of(report.meta),
                        earlier={e: mm for e, mm in by_era.items() if e != m.era})
        start: Position | None = None
        try:
            if base_here:
                assert c is not None
                start = load_snapshot(report.path / "snapshots" / c.snapshot, kernel, m.era)
            elif i > 0:
                assert era.snapshot is not None
                try:
                    start = load_snapshot(report.path / "snapshots" / era.snapshot, kernel, m.era)
                except PinnedEraError as exc:
                    report.era_checks.append((era.era, first, last, "not re-executed: its cells pinned to "
                                              f"era(s) {', '.join(e[:12] for e in sorted(exc.eras))} need "
                                              "that era's manifest"))
                    continue
                if start.index >= w.keep:
                    report.era_checks.append((era.era, first, last, "not re-executed: the era begins after the "
                                                                    "intact journal's end"))
                    continue
            sink = VerifyingSink(_batches_from(report.path / "journal", report.eras, start, w.keep))
            kernel.sink = sink
            replay_entries(kernel, sink)
        except (AosError, AssertionError) as exc:
            what = f"boundary snapshot snapshots/{era.snapshot}" if start is None and i > 0 else "replay"
            report.era_checks.append((era.era, first, last, f"FAILED: {what}: {exc}"))
            report.problems.append(Problem("journal", None, f"replay of era {era.era.hex()[:12]} failed: {exc}"))
            continue
        report.era_checks.append((era.era, first, kernel.last_event_id, "verified"))
        if i == len(chain) - 1:
            report.verified = kernel.cells.snapshot_hash().hex()


def _verify(report: FsckReport, manifest: Manifest) -> None:
    """Replay the intact prefix up to its step boundary, verifying every record."""
    from aos.kernel import Kernel
    from aos.replay import VerifyingSink, replay_entries

    assert report.meta is not None
    w = report.journal
    if len(report.eras) > 1:
        _verify_eras(report, [manifest])
        return
    c = report.compacted
    kernel = Kernel(manifest, None, window=report.meta["window"], aging=report.meta["aging"],  # type: ignore[arg-type]
                    lane=lane_of_meta(report.meta), settled_keep=settled_keep_of(report.meta))
    try:
        start = None
        if c is not None:  # a compacted journal: replayed from its compaction base
            from aos.snapshot import load_snapshot

            start = load_snapshot(report.path / "snapshots" / c.snapshot, kernel, manifest.era)
        eras = report.eras or ([report.era] if report.era is not None else [])
        sink = VerifyingSink(_batches_from(report.path / "journal", eras, start, w.keep))
        kernel.sink = sink
        replay_entries(kernel, sink)
    except AosError as exc:
        report.problems.append(Problem("journal", None, f"replay of the intact journal failed: {exc}"))
        return
    report.verified = kernel.cells.snapshot_hash().hex()


def check_world(path: str | os.PathLike[str], manifest: Manifest | None = None, *,
                manifests: list[Manifest] | tuple[Manifest, ...] = ()) -> FsckReport:
    """Check every file of the world at ``path``; change nothing. See the module docstring.

    ``manifest``: the current era's manifest; ``manifests``: manifests of
    the world's eras (any order; the current era's among them or given as
    ``manifest``): each era is then replayed with its own, and eras without
    one are reported as not re-executed (:attr:`FsckReport.era_checks`).
    """
    report = FsckReport(Path(path))
    p = report.path
    if not p.is_dir():
        report.problems.append(Problem(".", None, f"{p} is not a directory"))
        return report
    given = list(manifests)
    for m in given:
        if not isinstance(m, Manifest):
            raise TypeError(f"manifests must be aos.Manifest objects, got {type(m).__name__}")
    if manifest is None and given:
        current = _current_era(p)
        manifest = next((m for m in given if m.era == current), None)
    others = [m for m in given if m is not manifest]
    _check_meta(report, manifest, tuple(others))
    secret = p / SECRET_FILE
    report.secret = secret.is_file() and secret.stat().st_size == 32
    if not report.secret:
        report.problems.append(Problem(SECRET_FILE, None, "is missing or not 32 bytes: receipts cannot be "
                                       "authenticated"))
    _check_watermark(report)
    snaps = list_snapshots(p / "snapshots")
    wanted = {report.watermark.index} if report.watermark is not None else set()
    for s in snaps:
        try:
            wanted.add(snapshot_index(s))
        except SnapshotCorruptError:
            pass
    d = p / "journal"
    era: Any = report.eras or report.era
    segs = JournalReader(d).segments()
    if not segs:
        proof = ("the world metadata says it was created with one" if report.meta and report.meta.get("watermark")
                 else f"snapshots/{snaps[-1].name} proves there was one" if snaps else "")
        if proof:
            what = "holds no segments" if d.is_dir() else "is missing"
            report.problems.append(Problem("journal", None, f"{what}, but {proof}"))
            report.journal_state = "MISSING" if not d.is_dir() else "EMPTY"
        else:
            report.notes.append("the journal is empty")
    from aos.retention import read_compaction

    try:
        report.compacted = c = read_compaction(p)
    except AosError as exc:
        report.problems.append(Problem("compacted.cbor", None, str(exc)))
        c = None
    if c is not None:
        report.notes.append(f"the journal was compacted: records before {c.index:,} removed "
                            f"({_plural(c.segments, 'segment')}, {c.bytes:,} bytes); checked from "
                            f"snapshots/{c.snapshot} (record {c.index:,}, "
                            f"event_id {c.event_id}) on")
        if not (p / "snapshots" / c.snapshot).is_file():
            report.problems.append(Problem(f"snapshots/{c.snapshot}", None, "is missing: it is the compaction base, "
                                           "which the journal is checked and replayed from"))
    report.journal = walk_journal(d, era, wanted, None if c is None else c.position, 0 if c is None else c.event_id)
    w = report.journal
    if w.damage is not None:
        report.problems.append(w.damage)
    _compare_watermark(report)
    for s in snaps:
        check = _check_snapshot(report, s, {m.era: m for m in others + ([manifest] if manifest else [])})
        report.snapshots.append(check)
        if check.problem is not None:
            report.problems.append(Problem(f"snapshots/{s.name}", None, check.problem))
    past = [c for c in report.snapshots if c.past_end and c.problem is None]
    if past and w.damage is None and segs:
        report.problems.append(Problem(
            "journal", None, f"ends at record {w.records:,}, but snapshots/{past[-1].name} was taken at record "
            f"{past[-1].index:,}: the records between are missing"))
    cut_short = bool(past) or (report.watermark is not None and w.records < report.watermark.index)
    if w.torn is not None:
        report.notes.append(f"journal/{w.torn[0]} ends at offset {w.torn[1]} with a frame cut short" + (
            "" if cut_short else ": a torn tail, past what a sync acknowledged (opening for writing removes it)"))
    if w.cut_step and w.damage is None:
        report.notes.append(f"the journal ends inside {w.cut_step}" + (
            " (salvage drops it)" if cut_short else " (opening re-runs the step)"))
    leftovers = sorted(c.name for c in p.iterdir() if c.name.endswith(".tmp"))
    if d.is_dir():
        leftovers += sorted(f"journal/{c.name}" for c in d.iterdir() if c.name.endswith(".tmp"))
    if leftovers:
        report.notes.append(f"leftover temporary files (an interrupted write): {', '.join(leftovers)}")
    if report.meta is not None and not any(pr.file == META for pr in report.problems):
        if others:
            _verify_eras(report, ([manifest] if manifest is not None else []) + others)
        elif manifest is not None:
            _verify(report, manifest)
    return report


def _current_era(p: Path) -> bytes | None:
    """The era ``world.cbor`` names (None where it cannot be read: its check reports why)."""
    try:
        return canonical.hash_value(canonical.decode((p / META).read_bytes(), META)["manifest"])
    except Exception:
        return None


def _plural(count: int, what: str) -> str:
    return f"{count:,} {what}" + ("" if count == 1 else "s")
