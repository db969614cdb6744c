"""Eras: how a world changes its code — propose, approve, apply (docs/upgrades.md).

A world's history is a chain of eras, each the manifest (its description)
it ran under. The chain is journaled: ``ProposalSubmitted`` carries the
proposed manifest's description, ``ApprovalRecorded`` an approval, and an
apply writes, at one ticket right after a snapshot of the old era, a new
segment whose header names the new era and which starts with
``EraApplied``, then one ``CellMigrated`` per migrated cell, then the
``SnapshotCreated`` of the new era's boundary snapshot. That snapshot
record completes the apply. ``world.cbor`` keeps every era's description
(``eras``), written after the journal: a ``world.cbor`` that lags is
repaired from the journal on open, and an apply the journal holds only in
part is rolled back (its segments and snapshot removed): the world reopens
wholly in one era.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from aos import canonical
from aos._core.encoder import record_kind
from aos.cells import hash_cells
from aos.changes import changes as _changes
from aos.errors import (
    AosError,
    LiveCellsError,
    ManifestMismatchError,
    MigrationError,
    NotApprovedError,
    StaleProposalError,
    StorageError,
    UnknownProposalError,
)
from aos.files import lock_world, write_atomic
from aos.journal import SEG_HEADER_SIZE, Journal, JournalReader, Position, Watermark, _read_header
from aos.kernel import Kernel
from aos.lane_world import lane_of_meta
from aos.manifest import Manifest, era_changes
from aos.outbox import QueuedEffect
from aos.records import (
    ApprovalRecorded,
    CellMigrated,
    EraApplied,
    ProposalSubmitted,
    ShadowRunCompleted,
    SnapshotCreated,
)
from aos.snapshot import restore_doc, snapshot_doc, snapshot_index, write_snapshot
from aos.upcast import check_inbox

if TYPE_CHECKING:
    from aos.shadow import ShadowReport
    from aos.world import World

__all__ = ["Era", "Proposal", "UpgradeResult", "era_chain", "reconcile", "propose", "approve", "apply",
           "approve_closed", "record_shadow_run", "shadow_proposal", "shadow_closed",
           "upgrade", "changes", "transition", "proposals"]

Migration = Callable[[Any], Any]


@dataclass(frozen=True)
class Era:
    """One era of a world: the manifest description it ran under, and where it began."""

    era: bytes  # BLAKE3 of the canonical description
    manifest: dict[str, Any]
    proposal: int | None = None  # the proposal that started it (None: the era the world was created in)
    record: int = 0  # journal index of its EraApplied record (0 for the first era)
    event_id: int = 0  # the last ticket of the era before it
    snapshot: str | None = None  # its boundary snapshot's file name

    def to_wire(self) -> dict[str, Any]:
        return {"era": self.era, "manifest": self.manifest, "proposal": self.proposal, "record": self.record,
                "event_id": self.event_id, "snapshot": self.snapshot}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> "Era":
        e = cls(m["era"], m["manifest"], m["proposal"], m["record"], m["event_id"], m["snapshot"])
        if not (type(e.era) is bytes and len(e.era) == 32 and isinstance(e.manifest, dict)
                and (e.proposal is None or type(e.proposal) is int) and type(e.record) is int
                and type(e.event_id) is int and (e.snapshot is None or type(e.snapshot) is str)):
            raise TypeError("malformed era entry")
        return e

    @property
    def name(self) -> str:
        return str(self.manifest.get("manifest", "?"))


def era_chain(meta: Mapping[str, Any]) -> list[Era]:
    """The chain of eras ``world.cbor`` holds (a world from before eras has one)."""
    if "eras" not in meta:
        desc = meta["manifest"]
        return [Era(canonical.hash_value(desc), desc)]
    chain = [Era.from_wire(m) for m in meta["eras"]]
    if not chain or canonical.hash_value(chain[-1].manifest) != canonical.hash_value(meta["manifest"]):
        raise ValueError("the era chain does not end with the world's manifest")
    return chain


# ------------------------------------------------------------------ change lists
def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(kind, text)`` for every difference between two manifest descriptions (:func:`aos.changes.changes`)."""
    return [(c.kind, c.text) for c in _changes(dict(old), dict(new))]


# ------------------------------------------------------------------ the journal's view
@dataclass
class Proposal:
    """A proposal found in the journal, with its approvals, its shadow runs and whether it was applied."""

    proposal: int
    base: bytes
    era: bytes
    manifest: dict[str, Any]
    changes: list[tuple[str, str]]
    approvals: list[tuple[str, str]] = field(default_factory=list)  # (by, note)
    applied: bool = False
    shadow_runs: list[ShadowRunCompleted] = field(default_factory=list)  # oldest first


_ERA_RECORDS = {"ProposalSubmitted", "ApprovalRecorded", "ShadowRunCompleted", "EraApplied"}


def proposals(journal_dir: Path, eras: Sequence[bytes] | None = None) -> dict[int, Proposal]:
    """Every proposal the journal holds, by id (reads the whole journal; kinds are sniffed, not decoded)."""
    found: dict[int, Proposal] = {}
    for entry in JournalReader(journal_dir, eras).entries():
        if record_kind(entry.payload) not in _ERA_RECORDS:
            continue
        rec = entry.record()
        if isinstance(rec, ProposalSubmitted):
            found[rec.proposal] = Proposal(rec.proposal, rec.base, rec.era, canonical.decode(rec.manifest),
                                           list(rec.changes))
        elif isinstance(rec, ApprovalRecorded) and rec.proposal in found:
            found[rec.proposal].approvals.append((rec.by, rec.note))
        elif isinstance(rec, ShadowRunCompleted) and rec.proposal in found:
            found[rec.proposal].shadow_runs.append(rec)
        elif isinstance(rec, EraApplied) and rec.proposal in found:
            found[rec.proposal].applied = True
    return found


def _segment_era(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(SEG_HEADER_SIZE)
    return _read_header(path, head)[2]


def reconcile(p: Path, meta: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """Make ``world.cbor``'s era chain agree with the journal (the truth); return the metadata to use.

    The last segment's header names the era the journal ends in. When it is
    the era ``world.cbor`` names, nothing is read. Otherwise an apply was
    interrupted: if the journal holds the whole apply (``EraApplied`` ...
    ``SnapshotCreated``), ``world.cbor`` gains the new era; if it holds only
    part of it, the new era's segments and snapshot are removed and the
    durable watermark set back to the end of the old era (``write=False``:
    only the view is returned, nothing is changed; an interrupted apply is
    named by the key ``interrupted_apply``, the segment it began).
    """
    d = p / "journal"
    segs = JournalReader(d).segments()
    if not segs:
        return meta
    current = canonical.hash_value(meta["manifest"])
    if _segment_era(segs[-1]) == current:
        return meta
    chain = era_chain(meta)
    trailing = []
    for seg in reversed(segs):  # the segments after the last one of the current era: one apply's
        if _segment_era(seg) == current:
            break
        trailing.append(seg)
    trailing.reverse()
    if len(trailing) == len(segs):
        raise StorageError(f"{p}: no journal segment names the era of world.cbor ({current.hex()[:12]}); "
                           "world.cbor does not belong to this journal")
    first = int(trailing[0].stem)
    prev = _read_header(trailing[0], trailing[0].read_bytes()[:SEG_HEADER_SIZE])[1]
    applied: EraApplied | None = None
    closed: SnapshotCreated | None = None
    for entry in JournalReader(d).entries(Position(first, first, SEG_HEADER_SIZE, prev)):
        kind = record_kind(entry.payload)
        if entry.index == first and kind == "EraApplied":
            rec = entry.record()
            assert isinstance(rec, EraApplied)
            applied = rec
        elif kind == "SnapshotCreated" and applied is not None:
            rec2 = entry.record()
            assert isinstance(rec2, SnapshotCreated)
            closed = rec2
            break
    if applied is not None and closed is not None:
        if applied.ends != current or applied.starts != _segment_era(trailing[0]):
            raise StorageError(f"{p}: journal/{trailing[0].name} applies era {applied.starts.hex()[:12]} after era "
                               f"{applied.ends.hex()[:12]}, but world.cbor names era {current.hex()[:12]}")
        props = proposals(d)
        prop = props.get(applied.proposal)
        if prop is None or prop.era != applied.starts:
            raise StorageError(f"{p}: EraApplied names proposal {applied.proposal}, which the journal lacks")
        chain.append(Era(applied.starts, prop.manifest, applied.proposal, first, applied.event_id, closed.file))
        new_meta = dict(meta, manifest=prop.manifest, eras=[e.to_wire() for e in chain])
        if write:
            write_atomic(p / "world.cbor", canonical.encode(new_meta, where="world metadata"))
        return new_meta
    if not write:  # the view of an interrupted apply: the old era, and where the apply began
        return dict(meta, interrupted_apply=trailing[0].name)
    # the apply did not complete: roll it back
    for snap in sorted((p / "snapshots").glob("*.snap")) if (p / "snapshots").is_dir() else []:
        try:
            if snapshot_index(snap) > first:
                snap.unlink()
        except AosError:
            pass
    for seg in trailing:
        seg.unlink()
    kept = JournalReader(d).segments()
    if kept:
        end, _torn = Journal._scan_last(JournalReader(d), kept[-1])
        found = Watermark.read(d)
        if found is None or found[0].index > end.index or found[0].segment > end.segment:
            Watermark.create(d, end)
    from aos.files import fsync_dir

    fsync_dir(d)
    return meta


# ------------------------------------------------------------------ the transition
def transition(old: Kernel, manifest: Manifest, sink: Any, states: Mapping[tuple[str, Any], bytes | None],
               retired: Iterable[str], dropped: Iterable[str], position: Position, pinned: Iterable[str] = (),
               adopted: Iterable[str] = ()) -> Kernel:
    """A kernel for ``manifest`` holding ``old``'s state, with ``states`` replacing cells' states.

    Cells of ``retired`` reducers are kept read-only (``Kernel.retired``),
    those of ``dropped`` reducers are left out. Live cells of ``pinned``
    reducers that run ``old``'s code keep running it (they are pinned to
    ``old``'s era); cells pinned to an earlier era stay pinned, unless they
    were migrated (``states``) or their reducer is ``adopted``. Budgets are
    the new manifest's; what was reserved and spent is carried over.
    """
    doc, _h = snapshot_doc(old, old.manifest.era, position)
    retired_set, dropped_set = set(retired), set(dropped)
    pinned_set, adopted_set = set(pinned), set(adopted)
    body: dict[bytes, bytes] = dict(doc["states"])
    cells = []
    kept_retired: dict[tuple[str, Any], bytes] = {k: v for k, v in old.retired.items() if k[0] not in dropped_set}
    era_of: dict[tuple[str, Any], bytes] = {(r, k): e for r, k, e in doc.pop("pins", ())}
    pins: list[list[Any]] = []
    for reducer, key, sh in doc["cells"]:
        if reducer in dropped_set:
            continue
        if reducer in retired_set:
            kept_retired[(reducer, key)] = body[sh]
            continue
        if (reducer, key) in states:
            new = states[(reducer, key)]
            if new is None:
                continue
            sh = canonical.digest(new)
            body[sh] = new
        elif reducer not in adopted_set:
            if (reducer, key) in era_of:
                if era_of[(reducer, key)] != manifest.era:  # an era's code is back: the pin has no use
                    pins.append([reducer, key, era_of[(reducer, key)]])
            elif reducer in pinned_set:
                pins.append([reducer, key, old.manifest.era])
        cells.append([reducer, key, sh])
    earlier = dict(old.earlier)
    earlier[old.manifest.era] = old.manifest
    earlier.pop(manifest.era, None)
    kernel = Kernel(manifest, sink, window=old.window, signer=old.signer, aging=old.sequencer.aging,
                    earlier=earlier, lane=old.lane, settled_keep=old.outbox.keep)
    kernel.submit_keys.keep = old.submit_keys.keep
    used = {sh for _r, _k, sh in cells}
    doc["states"] = {sh: b for sh, b in body.items() if sh in used}
    doc["cells"] = cells
    if pins:
        doc["pins"] = pins
    doc["snapshot_hash"] = hash_cells(cells)
    doc["ledger"] = [row for row in doc["ledger"] if row[0] in manifest.capabilities]
    doc.pop("retired", None)
    restore_doc(doc, kernel, "era transition")
    kernel.retired = kept_retired
    return kernel


# ------------------------------------------------------------------ the steps
def propose(world: "World", manifest: Manifest) -> int:
    """Journal a ``ProposalSubmitted`` for ``manifest``; returns the proposal id."""
    if not isinstance(manifest, Manifest):
        raise TypeError(f"manifest must be an aos.Manifest, got {type(manifest).__name__}")
    world._live()
    new = manifest.describe()
    old = world.manifest.describe()
    if manifest.era == world.manifest.era:
        raise StaleProposalError(f"world {world.path} already runs era {manifest.era.hex()[:12]} of manifest "
                                 f"{manifest.name}: nothing to propose")
    j = world._journal
    pid = j.index
    listed = tuple((c.kind, c.text) for c in era_changes(old, manifest))  # in the world's form of code ids
    rec = ProposalSubmitted(pid, world.manifest.era, manifest.era, canonical.encode(new, where="manifest"), listed,
                            world._kernel.lane_id)

    def write() -> int:
        j.append(rec)
        j.commit_point()
        j.flush(sync=True)
        return pid

    return world._on_runner(write)  # type: ignore[no-any-return]


def _find(world: "World", proposal: int) -> Proposal:
    world._journal.flush(sync=False)
    return _found(world.path, [e.era for e in world.eras], proposal)


def _found(path: Path, eras: list[bytes], proposal: int) -> Proposal:
    if type(proposal) is not int:
        raise TypeError(f"a proposal id is an int (the journal index of its ProposalSubmitted), got "
                        f"{type(proposal).__name__}")
    found = proposals(path / "journal", eras).get(proposal)
    if found is None:
        raise UnknownProposalError(f"world {path} has no proposal {proposal}")
    if found.applied:
        raise StaleProposalError(f"proposal {proposal} of world {path} was applied already")
    if found.base != eras[-1]:
        raise StaleProposalError(f"proposal {proposal} was made for era {found.base.hex()[:12]}, but world "
                                 f"{path} is in era {eras[-1].hex()[:12]}: propose again")
    return found


def record_shadow_run(world: "World", proposal: int, *, since: int, compared: int, differing: int,
                      costs: Mapping[str, int] | None = None) -> None:
    """Journal a ``ShadowRunCompleted`` for ``proposal`` (what a shadow run of it found).

    The shadow run itself (replaying recent history under the proposed
    manifest, in memory) is :mod:`aos.shadow`'s; this is where its report is
    attached to the proposal.
    """
    world._live()
    for name, v in (("since", since), ("compared", compared), ("differing", differing)):
        if type(v) is not int or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    rows = tuple(sorted((str(c), int(n)) for c, n in (costs or {}).items()))
    _find(world, proposal)
    j = world._journal

    def write() -> None:
        j.append(ShadowRunCompleted(proposal, since, compared, differing, rows, world._kernel.lane_id))
        j.commit_point()
        j.flush(sync=True)

    world._on_runner(write)


def approve(world: "World", proposal: int, by: str = "", note: str = "") -> None:
    """Journal an ``ApprovalRecorded`` for ``proposal``."""
    world._live()
    if type(by) is not str or type(note) is not str:
        raise TypeError("by and note must be strings")
    _find(world, proposal)
    j = world._journal

    def write() -> None:
        j.append(ApprovalRecorded(proposal, by, note, world._kernel.lane_id))
        j.commit_point()
        j.flush(sync=True)

    world._on_runner(write)


def approve_closed(path: Any, proposal: int, by: str = "", note: str = "") -> None:
    """Journal an ``ApprovalRecorded`` in a closed world, without its manifest (``aos approve``).

    The world is locked while the record is appended. Refused when the
    journal ends inside a step (a crash cut it there): opening the world
    with its manifest completes the step first.
    """
    if type(by) is not str or type(note) is not str:
        raise TypeError("by and note must be strings")
    _append_closed(path, proposal, "approve", lambda _p, _prop: ApprovalRecorded(proposal, by, note))


def _append_closed(path: Any, proposal: int, what: str,
                   make: Callable[[Path, Proposal], Any]) -> None:
    """Append the record ``make(path, proposal)`` returns to the journal of a closed world, locked meanwhile.

    ``make`` runs while the world is locked, after the proposal was found
    (not applied, made for the current era) and the journal checked to end
    at a whole step; it may raise to refuse (nothing is then written).
    """
    import os

    from aos.errors import UpgradeError
    from aos.fsck import walk_journal
    from aos.world import load_meta

    p = Path(path)
    meta = load_meta(p)
    fd = lock_world(p)
    try:
        meta = reconcile(p, load_meta(p))
        eras = [e.era for e in era_chain(meta)]
        prop = _found(p, eras, proposal)
        walk = walk_journal(p / "journal", eras)
        if walk.damage is not None or walk.keep != walk.records:
            raise UpgradeError(f"the journal of {p} ends inside a step or is damaged (`aos fsck {p}`): open the "
                               f"world once with its manifest, then {what}")
        rec = make(p, prop)
        lane_id = lane_of_meta(meta).lane_id
        if lane_id:  # a lane world's records carry its lane
            rec = dataclasses.replace(rec, lane_id=lane_id)
        j = Journal.open(p / "journal", eras[-1], "always", existing=meta.get("watermark") is True)
        try:
            j.append(rec)
            j.commit_point()
        finally:
            j.close()
    finally:
        os.close(fd)


def _shadow_record(proposal: int, report: "ShadowReport") -> ShadowRunCompleted:
    """The ``ShadowRunCompleted`` that sums up ``report``: the window's first event_id, counts, predicted costs."""
    costs = tuple(sorted((cap, c.shadow_cost) for cap, c in report.costs.items()))
    return ShadowRunCompleted(proposal, report.first_event_id, report.compared, report.differing, costs)


def _check_proposed(path: Path, prop: Proposal, manifest: Manifest) -> None:
    if not isinstance(manifest, Manifest):
        raise TypeError(f"manifest must be an aos.Manifest, got {type(manifest).__name__}")
    if manifest.era != prop.era:
        raise ManifestMismatchError(f"manifest {manifest.name} has era {manifest.era.hex()[:12]}, but proposal "
                                    f"{prop.proposal} of world {path} proposes era {prop.era.hex()[:12]}")


def shadow_proposal(world: "World", proposal: int, manifest: Manifest, *, since: int | None = None,
                    last: int | None = None, limit: int | None = None) -> "ShadowReport":
    """Shadow-run ``proposal``'s manifest on the open world's recent history and journal what it found.

    Runs :func:`aos.shadow.shadow_run` of ``manifest`` (which must be the
    proposed one) over the window (``since``/``last``; by default from the
    newest snapshot with steps after it), then journals a
    ``ShadowRunCompleted`` for the proposal: the first event_id compared,
    the steps compared and differing, and the predicted cost per
    capability. Returns the full report. Nothing is journaled when the
    shadow cannot run (``ShadowError``) or the proposal is unknown, applied
    or stale.
    """
    from aos.shadow import shadow_run

    world._live()

    def run() -> "ShadowReport":
        prop = _find(world, proposal)  # flushes the journal: the shadow reads every record written so far
        _check_proposed(world.path, prop, manifest)
        report = shadow_run(world.path, manifest, since=since, last=last, limit=limit,
                            earlier=list(world._kernel.earlier.values()))
        j = world._journal
        j.append(_shadow_record(proposal, report))
        j.commit_point()
        j.flush(sync=True)
        return report

    return world._on_runner(run)  # type: ignore[no-any-return]


def shadow_closed(path: Any, proposal: int, manifest: Manifest, *, since: int | None = None,
                  last: int | None = None, limit: int | None = None,
                  earlier: Sequence[Manifest] = ()) -> "ShadowReport":
    """:func:`shadow_proposal` on a closed world (``aos shadow --proposal N``): no manifest of its era needed.

    The world is locked from the run until its ``ShadowRunCompleted`` is
    appended, so the record describes exactly the history it follows.
    """
    from aos.shadow import shadow_run

    out: list[ShadowReport] = []

    def make(p: Path, prop: Proposal) -> ShadowRunCompleted:
        _check_proposed(p, prop, manifest)
        out.append(shadow_run(p, manifest, since=since, last=last, limit=limit, earlier=earlier))
        return _shadow_record(proposal, out[0])

    _append_closed(path, proposal, "shadow the proposal", make)
    return out[0]


@dataclass(frozen=True)
class UpgradeResult:
    """What an apply did."""

    proposal: int
    ends: str  # era (hex)
    starts: str
    event_id: int  # the last ticket of the old era
    migrated: int  # cells migrated
    retired: tuple[str, ...]
    dropped: tuple[str, ...]
    snapshot: str  # the new era's boundary snapshot
    pinned: tuple[str, ...] = ()  # reducers whose live cells keep the old era's code
    pinned_cells: int = 0  # cells that run an earlier era's code after the apply (all eras)
    adopted: tuple[str, ...] = ()


def _migrate(old: Kernel, migrate: Mapping[str, Migration]) -> dict[tuple[str, Any], bytes | None]:
    """Run every migration in memory, in canonical cell order; refuse bad results before anything is written."""
    out: dict[tuple[str, Any], bytes | None] = {}
    for _ck, spec, key, state, _h in old.cells.sorted_items():
        fn = migrate.get(spec.name)
        if fn is None:
            continue
        where = f"migration of cell ({spec.name!r}, {key!r})"
        try:
            value = fn(canonical.decode_trusted(state))
        except Exception as exc:
            raise MigrationError(f"{where} raised {type(exc).__name__}: {exc}; nothing was written") from exc
        if value is None:
            out[(spec.name, key)] = None
            continue
        try:
            out[(spec.name, key)] = canonical.encode(value, where=where)
        except AosError as exc:
            raise MigrationError(f"{where} returned a value that cannot be stored: {exc}; nothing was "
                                 "written") from exc
    return out


def apply(world: "World", proposal: int, manifest: Manifest, *, migrate: Mapping[str, Migration] | None = None,
          adopt: Iterable[str] = (), drop: Iterable[str] = (), retire: Iterable[str] = (),
          _fail: Callable[[str], None] | None = None) -> UpgradeResult:
    """Apply an approved proposal: the world moves to ``manifest``'s era and is closed.

    Everything is checked and every migration run in memory first; a
    refusal (:class:`UpgradeError`) leaves the world as it was, open, in
    its era. Then: a snapshot of the old era, a new segment starting with
    ``EraApplied``, a ``CellMigrated`` per migrated cell, the new era's
    boundary snapshot and its ``SnapshotCreated``, and ``world.cbor``.
    Reopen the world with ``manifest``.

    A reducer whose code changed keeps its live cells on the code they
    were created under (they are *pinned* to the era that ends; reopen the
    world with ``earlier=[old_manifest]``), unless it is named in
    ``migrate`` (each cell's state goes through ``migrate[name]`` and the
    cell runs the new code) or in ``adopt`` (its cells run the new code
    with their state as it is). Cells made after the apply run the new code.

    A reducer the proposal removes whose cells hold state must be named in
    ``drop`` (its cells are dropped) or ``retire`` (they are kept
    read-only: ``World.state`` still reads them); else
    :class:`LiveCellsError`.
    """
    if not isinstance(manifest, Manifest):
        raise TypeError(f"manifest must be an aos.Manifest, got {type(manifest).__name__}")
    migrate = dict(migrate or {})
    if isinstance(adopt, str):
        raise TypeError("adopt is a list of reducer names, not one string")
    adopt = tuple(sorted(set(adopt)))
    drop = tuple(sorted(set(drop)))
    retire = tuple(sorted(set(retire)))
    fail = _fail or (lambda point: None)
    return world._on_runner(lambda: _apply(world, proposal, manifest, migrate, adopt, drop, retire, fail))  # type: ignore


def _apply(world: "World", proposal: int, manifest: Manifest, migrate: dict[str, Migration],
           adopt: tuple[str, ...], drop: tuple[str, ...], retire: tuple[str, ...],
           fail: Callable[[str], None]) -> UpgradeResult:
    k = world._live()
    prop = _find(world, proposal)
    if manifest.era != prop.era:
        raise ManifestMismatchError(f"manifest {manifest.name} has era {manifest.era.hex()[:12]}, but proposal "
                                    f"{proposal} proposes era {prop.era.hex()[:12]}")
    if not prop.approvals:
        raise NotApprovedError(f"proposal {proposal} of world {world.path} has no approval: "
                               f"`aos approve {world.path} {proposal}` or World.approve() first")
    old_m = world.manifest
    removed = sorted(set(old_m.reducers) - set(manifest.reducers))
    for name in migrate:
        if name not in manifest.reducers or name not in old_m.reducers:
            raise MigrationError(f"migrate names reducer {name!r}, which is not in both the old and the new "
                                 "manifest")
        if not callable(migrate[name]):
            raise TypeError(f"migrate[{name!r}] must be a function old_state -> new_state")
    for name in adopt:
        if name not in manifest.reducers or name not in old_m.reducers:
            raise MigrationError(f"adopt names reducer {name!r}, which is not in both the old and the new manifest")
        if name in migrate:
            raise MigrationError(f"{name!r} is named in both migrate and adopt")
    for name in drop:
        if name not in removed and not any(r == name for r, _k in k.retired):
            raise LiveCellsError(f"drop names {name!r}, which the proposal does not remove")
    for name in retire:
        if name not in removed:
            raise LiveCellsError(f"retire names {name!r}, which the proposal does not remove")
        if name in drop:
            raise LiveCellsError(f"{name!r} is named in both drop and retire")
    live: dict[str, int] = {}
    for _cid, spec, _key, _s in k.cells.entries():
        if spec.name in removed:
            live[spec.name] = live.get(spec.name, 0) + 1
    seq = k.sequencer.export_state()
    for ring in seq["rings"]:
        for cid, _since in ring:
            if k.cells.spec(cid).name in removed:
                raise LiveCellsError(f"reducer {k.cells.spec(cid).name} is removed but its cells have inputs "
                                     "waiting: run the world until it is quiet first")
    for p in seq["pending"] + seq["admitted"]:
        if k.cells.spec(p[1]).name in removed:
            raise LiveCellsError(f"reducer {k.cells.spec(p[1]).name} is removed but emitted events are on "
                                 "their way to its cells: run the world until it is quiet first")
    for q in k.outbox.queued.values():
        assert isinstance(q, QueuedEffect)
        if q.cap not in manifest.capabilities:
            raise LiveCellsError(f"capability {q.cap} is removed but effect {q.intent_hash.hex()[:12]} of "
                                 f"event_id {q.event_id} still awaits its receipt")
    for r in removed:
        if live.get(r) and r not in drop and r not in retire:
            raise LiveCellsError(f"the proposal removes reducer {r}, which has {live[r]} live cell(s): name it in "
                                 "drop=[...] to drop them or retire=[...] to keep them read-only (nothing was "
                                 "written; the world stays in its era)")
    retired = tuple(r for r in removed if r in retire and live.get(r))
    dropped = tuple(r for r in removed if r in drop) + tuple(
        sorted({r for r, _k in k.retired if r in drop and r not in removed}))
    states = _migrate(k, migrate)  # raises MigrationError before anything is written
    check_inbox(k.inbox, manifest)  # the new era's upcasters take every waiting input, or UpcastError
    # reducers whose code changed keep their live cells on the old code unless migrated or adopted
    changed_code = {c.subject for c in era_changes(old_m.describe(), manifest) if c.kind == "reducer-code"}
    pinned = tuple(sorted(
        {spec.name for cid, spec, _key, _s in k.cells.entries()
         if spec.name in changed_code and spec.name not in migrate and spec.name not in adopt
         and k.cells.era_of(cid) is None}))
    # the new kernel, built in memory (a failure here also leaves everything as it was)
    j = world._journal
    probe = transition(k, manifest, j, states, retired, dropped, j.position, pinned, adopt)
    del probe
    # ---- from here on, the world's files change; the journal decides which era a crash leaves
    try:
        if j.index != world._snapshot_index:
            world._snapshot()
        fail("after-old-snapshot")
        event_id = k.last_event_id
        j.start_era(manifest.era)
        fail("after-new-segment")
        at = j.append(EraApplied(event_id, proposal, old_m.era, manifest.era, tuple(sorted(migrate)), retired,
                                 dropped, pinned, adopt, k.lane_id))
        for (reducer, key), state in sorted(states.items(), key=lambda i: canonical.encode(list(i[0]))):
            j.append(CellMigrated(reducer, key, state, None if state is None else canonical.digest(state),
                                  k.lane_id))
            fail("during-migration")
        j.flush(sync=True, force=True)
        fail("after-era-applied")
        new_k = transition(k, manifest, j, states, retired, dropped, j.position, pinned, adopt)
        info = write_snapshot(world.path / "snapshots", new_k, manifest.era, j.position)
        fail("after-new-snapshot-file")
        j.append(SnapshotCreated(new_k.last_event_id, bytes.fromhex(info.snapshot_hash), info.path.name,
                                 k.lane_id))
        j.flush(sync=True, force=True)
        fail("after-apply-record")
        from aos.world import META

        meta = canonical.decode((world.path / META).read_bytes())
        chain = list(world.eras) + [Era(manifest.era, manifest.describe(), proposal, at, event_id, info.path.name)]
        write_atomic(world.path / META, canonical.encode(dict(meta, manifest=manifest.describe(),
                                                              eras=[e.to_wire() for e in chain]),
                                                         where="world metadata"))
    except BaseException:
        world._close("is unusable after an interrupted apply; reopen it (it reopens wholly in one era)", clean=False)
        raise
    world._snapshot_index = j.index
    world._close("was upgraded to a new era; reopen it with the new manifest", clean=False)
    return UpgradeResult(proposal, old_m.era.hex(), manifest.era.hex(), event_id, len(states), retired, dropped,
                         info.path.name, pinned, len(new_k.cells.pins), adopt)


def upgrade(path: Any, manifest: Manifest, *, old: Manifest, migrate: Mapping[str, Migration] | None = None,
            adopt: Iterable[str] = (), approve: bool | str = True, note: str = "", drop: Iterable[str] = (),
            retire: Iterable[str] = (), **open_options: Any) -> UpgradeResult | int:
    """Propose, approve and apply ``manifest`` for the (closed) world at ``path``, written with ``old``.

    ``approve``: True (approved by ``"aos.upgrade"``), the approver's name,
    or False (only propose: returns the proposal id). Returns what the apply
    did; the world is closed afterwards — reopen it with ``manifest``.
    """
    from aos.world import World

    w = World.open(path, old, create=False, effects="manual", **open_options)
    try:
        pid = w.propose(manifest)
        if approve is False:
            return pid
        w.approve(pid, by="aos.upgrade" if approve is True else str(approve), note=note)
        return w.apply(pid, manifest, migrate=migrate, adopt=adopt, drop=drop, retire=retire)
    finally:
        w.close()
