"""Copying the intact part of a damaged world into a new one (``aos salvage``).

:func:`salvage_world` reads the damaged world (never changing it) and
writes a new world at ``dest`` that opens and replays:

* **kept**: the journal's records from the first one up to the first damage,
  cut back to the last step boundary — a step whose ``StepScheduled`` is
  there without its whole outcome is dropped, and its input stays admitted,
  so the new world runs that step again when it runs. The records are copied
  byte for byte, so their chain hashes are the same as in the damaged world.
  Also kept: ``world.cbor`` (the manifest description, window and aging),
  the world secret (receipts for effects still pending authenticate in the
  new world as they would have in the old one; where it was lost, the new
  world gets a new one, and receipts signed with the old one are refused)
  and every blob whose bytes still match its name.
* **dropped**: everything after the cut — damaged records and whatever
  follows them, even where it is intact, since a journal is only valid as a
  chain from its start —, every snapshot (the new world has none; it
  replays its journal when first opened and writes a snapshot when closed),
  blobs that fail their hash, ``metrics.json``.

A world of several eras (docs/upgrades.md) keeps its era chain: its
journal segments are copied byte for byte (each era's segments keep their
headers, and the segment layout the boundary snapshots point into), and the
boundary snapshot of every era kept is copied too (a world opens from its
current era's). ``world.cbor``'s ``eras`` is kept up to the last era whose
apply is whole inside the kept records: an apply cut in the middle (its
``EraApplied`` kept but not the ``SnapshotCreated`` of its boundary
snapshot, or that snapshot damaged) is rolled back, its records dropped, as
opening the world after an interrupted apply does.

With a manifest (one per era for a world of several) the new world's
journal is replayed and every record verified before the new world is put in
place; a step that diverges is cut off too (with the rest after it). The new world is built in a temporary
directory beside ``dest`` and renamed into place, so ``dest`` is either
absent or a whole world.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from aos import canonical
from aos.eras import Era
from aos.errors import JournalCorruptError, ReplayDivergenceError, StorageError
from aos.files import fsync_dir, write_atomic
from aos.fsck import FsckReport, JournalWalk, check_world, prefix_batches
from aos.journal import (
    FRAME_OVERHEAD,
    GENESIS,
    SEG_HEADER_SIZE,
    Durability,
    Journal,
    JournalReader,
    Position,
    Watermark,
)
from aos.manifest import Manifest
from aos.receipt import SECRET_FILE, create_secret
from aos.records import StepScheduled

__all__ = ["salvage_world", "SalvageReport"]

META = "world.cbor"


@dataclass
class SalvageReport:
    """What :func:`salvage_world` kept and dropped."""

    source: Path
    dest: Path
    check: FsckReport
    records: int = 0  # records kept
    last_event_id: int = 0  # the last step kept
    dropped_records: int = 0  # intact records dropped (an unfinished or diverging step)
    dropped_why: list[str] = field(default_factory=list)
    acknowledged_lost: int = 0  # records the watermark acknowledged that are not kept
    snapshots_dropped: list[str] = field(default_factory=list)
    blobs: int = 0
    blobs_dropped: list[str] = field(default_factory=list)
    secret: bool = False
    verified: str | None = None  # the new world's state hash, replayed (with a manifest)
    eras: int = 1  # eras kept (a world of several: their boundary snapshots are kept too)
    snapshots_kept: list[str] = field(default_factory=list)


def _publish(tmp: Path, dst: Path) -> None:
    """Put the salvaged world built at ``tmp`` in place at ``dst``, durably (never over a world that appeared)."""
    fsync_dir(tmp)
    if dst.exists():
        raise StorageError(f"{dst} appeared while the salvage ran; the new world is left at {tmp}")
    os.rename(tmp, dst)
    fsync_dir(dst.parent)


def _dropped_why(w: JournalWalk) -> list[str]:
    """Why the salvage leaves out the journal's end (``w``: the journal walk of the check)."""
    why = []
    if w.damage is not None:
        why.append(f"the first damage, {w.damage}, and everything after it")
    if w.torn is not None:
        why.append(f"the frame cut short at journal/{w.torn[0]} offset {w.torn[1]}")
    if w.cut_step:
        why.append(f"{w.cut_step} (its input stays admitted and runs again)")
    return why


def salvage_world(source: str | os.PathLike[str], dest: str | os.PathLike[str],
                  manifest: Manifest | None = None, *, manifests: list[Manifest] | tuple[Manifest, ...] = ()
                  ) -> SalvageReport:
    """Copy the intact prefix of the world at ``source`` into a new world at ``dest`` (see the module doc).

    ``manifest`` (or ``manifests``, one per era, any order): replay the new
    world and verify every record before it is put in place.
    """
    src, dst = Path(source), Path(dest)
    if dst.exists() or dst.is_symlink():
        raise StorageError(f"{dst} exists; salvage writes a new world and never overwrites anything")
    if src.resolve() == dst.resolve():
        raise StorageError("the new world must be another directory than the damaged one")
    check = check_world(src)  # the new world's replay verifies the records (with a manifest)
    if check.meta is None or check.era is None:
        raise StorageError(f"{src / META} is missing or damaged: without it the world's manifest description, "
                           "window and aging are unknown, and nothing can be salvaged")
    given = list(manifests) + ([manifest] if manifest is not None else [])
    if len(check.eras) > 1:
        return _salvage_eras(src, dst, check, given)
    if given:
        manifest = next((m for m in given if m.era == check.era), given[-1])
    if manifest is not None:
        from aos.world import read_meta

        read_meta(src, manifest)  # the manifest the world was made with, or a ManifestMismatchError
    report = SalvageReport(src, dst, check)
    w = check.journal
    keep = w.keep
    report.dropped_why += _dropped_why(w)
    report.snapshots_dropped = [s.name for s in check.snapshots]
    if check.secret:
        report.secret = True
    tmp = dst.with_name(f".{dst.name}.salvage-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        if report.secret:
            write_atomic(tmp / SECRET_FILE, (src / SECRET_FILE).read_bytes())
            os.chmod(tmp / SECRET_FILE, 0o600)
        else:  # lost with the damage: a new one, so that the new world opens (old receipts are refused)
            create_secret(tmp)
        report.blobs, report.blobs_dropped = _copy_blobs(src / "blobs", tmp / "blobs")
        _write_journal(src, tmp, check.era, keep)
        if manifest is not None:
            keep = _verify(tmp, src, check, manifest, keep, report)
        meta = dict(check.meta, watermark=True)
        write_atomic(tmp / META, canonical.encode(meta, where="world metadata"))
        _publish(tmp, dst)
    except BaseException:
        if tmp.exists() and not dst.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.records = keep
    report.last_event_id = _last_event_id(dst, check.era, keep) if keep != w.keep else w.last_event_id
    report.dropped_records = w.records - keep
    if check.watermark is not None:
        report.acknowledged_lost = max(0, check.watermark.index - keep)
    return report


def _copy_blobs(src: Path, dst: Path) -> tuple[int, list[str]]:
    """Copy each blob whose bytes still hash to its name; name the others."""
    copied, dropped = 0, []
    if not src.is_dir():
        return 0, []
    for sub in sorted(src.iterdir()):
        if not sub.is_dir():
            continue
        for blob in sorted(sub.iterdir()):
            if blob.name.endswith(".tmp"):
                continue
            try:
                data = blob.read_bytes()
            except OSError:
                dropped.append(blob.name)
                continue
            if canonical.digest(data).hex() != blob.name or sub.name != blob.name[:2]:
                dropped.append(blob.name)
                continue
            (dst / sub.name).mkdir(parents=True, exist_ok=True)
            write_atomic(dst / sub.name / blob.name, data)
            copied += 1
    return copied, dropped


def _write_journal(src: Path, tmp: Path, era: bytes, keep: int) -> None:
    """The damaged journal's first ``keep`` records, byte for byte, in a new journal."""
    d = tmp / "journal"
    if d.exists():
        shutil.rmtree(d)
    j = Journal.open(d, era, Durability("group", group_commits=1 << 62, group_ms=1e18))
    try:
        for _name, _first, found in prefix_batches(src / "journal", era, keep):
            for _offset, payload, _chain in found:
                j.append_payload(payload)
    finally:
        j.close()  # writes and fsyncs the rest, and the watermark


def _verify(tmp: Path, src: Path, check: FsckReport, manifest: Manifest, keep: int, report: SalvageReport) -> int:
    """Replay the new journal; cut off a diverging step (and all after it) until it verifies."""
    from aos.replay import Replay

    write_atomic(tmp / META, canonical.encode(dict(check.meta or {}, watermark=True), where="world metadata"))
    for _attempt in range(3):
        try:
            report.verified = Replay(tmp, manifest).verify()
            return keep
        except ReplayDivergenceError as exc:
            if exc.event_id is None:
                raise
            at = _step_index(tmp / "journal", check.era, exc.event_id)  # type: ignore[arg-type]
            if at is None or at >= keep:
                raise
            report.dropped_why.append(f"the step of event_id {exc.event_id} and everything after it: its replay "
                                      f"diverges ({exc})")
            keep = at
            _write_journal(src, tmp, check.era, keep)  # type: ignore[arg-type]
    raise StorageError(f"the journal of {src} does not replay even cut back to record {keep}")


def _step_index(d: Path, era: bytes, event_id: int) -> int | None:
    for entry, rec in JournalReader(d, era).records():
        if isinstance(rec, StepScheduled) and rec.event_id == event_id:
            return entry.index
    return None


def _last_event_id(d: Path, era: bytes, keep: int) -> int:
    last = 0
    for _entry, rec in JournalReader(d / "journal", era).records():
        if isinstance(rec, StepScheduled):
            last = rec.event_id
    return last


# ------------------------------------------------------------------ worlds of several eras
def _plan(check: FsckReport, chain: list[Era], keep: int, why: list[str]) -> tuple[int, list[Era]]:
    """The eras kept and where the kept records end: an apply not whole inside ``keep`` is rolled back."""
    from aos.snapshot import snapshot_index

    intact = {c.name for c in check.snapshots if c.problem is None}
    kept = [chain[0]]
    for era in chain[1:]:
        if era.record >= keep:
            why.append(f"era {era.era.hex()[:12]}, which began after the cut (record {era.record:,})")
            break
        whole = era.snapshot in intact and snapshot_index(check.path / "snapshots" / era.snapshot) < keep
        if not whole:
            why.append(f"the apply of era {era.era.hex()[:12]} from record {era.record:,}: "
                       + ("its boundary snapshot is damaged" if era.snapshot not in intact else "cut in the middle")
                       + "; rolled back, as opening the world after an interrupted apply does")
            keep = era.record
            break
        kept.append(era)
    return keep, kept


def _copy_segments(src: Path, tmp: Path, eras: list[bytes], keep: int) -> Position:
    """The source journal's segments holding its first ``keep`` records, byte for byte; the last one cut at
    the end of record ``keep - 1``. Returns the end (the new world's durable watermark)."""
    end = Position(0, 0, SEG_HEADER_SIZE, GENESIS)
    reader = JournalReader(src / "journal", eras)
    try:
        for name, first, found in reader.batches():
            if first >= keep:
                break
            seg_first = int(name.split(".")[0])
            for i, (offset, payload, chain) in enumerate(found[:keep - first]):
                end = Position(first + i + 1, seg_first, offset + FRAME_OVERHEAD + len(payload), chain)
    except JournalCorruptError:
        if end.index < keep:  # fsck found these records intact
            raise
    d = tmp / "journal"
    d.mkdir(parents=True, exist_ok=True)
    for seg in reader.segments():
        seg_first = int(seg.stem)
        if seg_first > end.segment:  # begins after the last record kept
            continue
        data = seg.read_bytes()
        write_atomic(d / seg.name, data[:end.offset] if seg_first == end.segment else data)
    Watermark.create(d, end)
    fsync_dir(d)
    return end


def _salvage_eras(src: Path, dst: Path, check: FsckReport, manifests: list[Manifest]) -> SalvageReport:
    """:func:`salvage_world` of a world of several eras (see the module doc)."""
    from aos.eras import era_chain, reconcile
    from aos.replay import Replay

    assert check.meta is not None
    view = reconcile(src, check.meta, write=False)
    chain = era_chain(view)
    report = SalvageReport(src, dst, check)
    w = check.journal
    keep = w.keep
    report.dropped_why += _dropped_why(w)
    if "interrupted_apply" in view:
        keep = min(keep, int(view["interrupted_apply"].split(".")[0]))
        report.dropped_why.append(f"the interrupted apply that begins journal/{view['interrupted_apply']}; rolled "
                                  "back, as opening the world does")
    keep, kept = _plan(check, chain, keep, report.dropped_why)
    report.secret = check.secret
    tmp = dst.with_name(f".{dst.name}.salvage-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for _attempt in range(3):
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            if report.secret:
                write_atomic(tmp / SECRET_FILE, (src / SECRET_FILE).read_bytes())
                os.chmod(tmp / SECRET_FILE, 0o600)
            else:
                create_secret(tmp)
            report.blobs, report.blobs_dropped = _copy_blobs(src / "blobs", tmp / "blobs")
            eras = [e.era for e in kept]
            _copy_segments(src, tmp, eras, keep)
            report.snapshots_kept = cast("list[str]", [e.snapshot for e in kept[1:]])  # (every later era has one)
            (tmp / "snapshots").mkdir()
            for name in report.snapshots_kept:
                write_atomic(tmp / "snapshots" / name, (src / "snapshots" / name).read_bytes())
            meta = {k: v for k, v in view.items() if k != "interrupted_apply"}
            meta.update(manifest=kept[-1].manifest, eras=[e.to_wire() for e in kept], watermark=True)
            write_atomic(tmp / META, canonical.encode(meta, where="world metadata"))
            if not manifests:
                break
            try:
                report.verified = Replay(tmp, manifests=[m for m in manifests if m.era in eras]
                                         or manifests).verify()
                break
            except ReplayDivergenceError as exc:
                if exc.event_id is None:
                    raise
                at = _step_index(tmp / "journal", eras, exc.event_id)  # type: ignore[arg-type]
                if at is None or at >= keep:
                    raise
                report.dropped_why.append(f"the step of event_id {exc.event_id} and everything after it: its "
                                          f"replay diverges ({exc})")
                keep, kept = _plan(check, chain, at, report.dropped_why)
        else:
            raise StorageError(f"the journal of {src} does not replay even cut back to record {keep}")
        _publish(tmp, dst)
    except BaseException:
        if tmp.exists() and not dst.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.eras = len(kept)
    report.snapshots_dropped = [c.name for c in check.snapshots if c.name not in report.snapshots_kept]
    report.records = keep
    report.last_event_id = _last_event_id(dst, [e.era for e in kept], keep)  # type: ignore[arg-type]
    report.dropped_records = w.records - keep
    if check.watermark is not None:
        report.acknowledged_lost = max(0, check.watermark.index - keep)
    return report
