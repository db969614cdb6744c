"""Snapshots: the whole kernel state at a journal position, content-addressed.

A snapshot file is canonical CBOR named ``<record index>-<BLAKE3 of the
file>.snap``. It holds every live cell as ``[reducer, key, state hash]`` with
the state bodies stored once per distinct hash, the sequencer's mailboxes,
ready ring and pending inputs, the admitted events still to be consumed, and
the journal position (record index, segment, offset, chain hash) it is
valid at. Opening a world loads the newest snapshot and replays the journal
from that position (docs/storage.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aos import canonical
from aos._core import Sequencer
from aos.errors import AosError, PinnedEraError, SnapshotCorruptError
from aos.files import fsync_dir, write_atomic
from aos.journal import Position
from aos.kernel import Kernel

__all__ = ["SnapshotInfo", "write_snapshot", "load_snapshot", "list_snapshots", "check_snapshot_file",
           "SNAPSHOT_FORMAT", "PendingSnapshot", "capture", "encode_pieces", "write_pending"]

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A written snapshot: its file, the last ticket it includes and the hash of its cells."""

    path: Path
    event_id: int
    snapshot_hash: str
    position: Position


def encode_snapshot(kernel: Kernel, era: bytes, position: Position) -> tuple[bytes, bytes]:
    """``(file bytes, snapshot hash)`` of the kernel's state at ``position``."""
    doc, snap_hash = snapshot_doc(kernel, era, position)
    return canonical.encode(doc, where="snapshot"), snap_hash


def snapshot_doc(kernel: Kernel, era: bytes, position: Position,
                 cell_parts: tuple[dict[bytes, bytes], list[list[Any]], bytes] | None = None
                 ) -> tuple[dict[str, Any], bytes]:
    """``(document, snapshot hash)``: what a snapshot file holds, as a map.

    ``cell_parts``: the cells' ``(states, cells, snapshot hash)`` when the caller makes them itself (a
    background snapshot passes placeholders and fills them in from a frozen copy of the cells).
    """
    states, cells, snap_hash = kernel.cells.snapshot_parts() if cell_parts is None else cell_parts

    seq_state = kernel.sequencer.export_state()
    refs: list[list[Any]] = []
    ref_of: dict[int, int] = {}

    def ref(cid: int) -> int:
        r = ref_of.get(cid)
        if r is None:
            r = ref_of[cid] = len(refs)
            refs.append([kernel.cells.spec(cid).name, kernel.cells.key(cid)])
        return r

    sequencer = {
        "next_ticket": seq_state["next_ticket"],
        "rings": [[[ref(c), since] for c, since in ring] for ring in seq_state["rings"]],
        "mailboxes": seq_state["mailboxes"],
        "pending": [[v, ref(c), i, k] for v, c, i, k in seq_state["pending"]],
    }
    if seq_state["admitted"]:  # admitted inputs held until their ticket (docs/scheduling.md)
        sequencer["admitted"] = [[v, ref(c), i, k, b] for v, c, i, k, b in seq_state["admitted"]]
    inbox = [[seq, e[0], e[1], e[2]] for seq, e in sorted(kernel.inbox.events.items())]
    doc = {
        "format": SNAPSHOT_FORMAT,
        "era": era,
        "window": kernel.window,
        "aging": kernel.sequencer.aging,
        "position": position.to_wire(),
        "event_id": kernel.last_event_id,
        "next_seq": kernel.next_seq,
        "commits": kernel.commits,
        "failures": kernel.failures,
        "snapshot_hash": snap_hash,
        "states": states,
        "cells": cells,
        "refs": refs,
        "sequencer": sequencer,
        "inbox": inbox,
        "ledger": kernel.ledger.export(),
        "outbox": kernel.outbox.export(),
    }
    lane = kernel.export_lane()
    if lane is not None:  # a lane world's marks, outbound counts and budget grants (docs/fleet.md)
        doc["lane"] = lane
    if kernel.cells.pins:  # cells that run an earlier era's code (docs/upgrades.md, "Pinned cells")
        doc["pins"] = pin_rows(kernel)
    if kernel.retired:  # cells of removed reducers, kept read-only (docs/upgrades.md)
        doc["retired"] = [[r, k, s] for (r, k), s in sorted(kernel.retired.items(),
                                                             key=lambda i: canonical.encode(list(i[0])))]
    if kernel.submit_keys:  # idempotency keys of submitted events, oldest first (aos.idempotency)
        doc["idempotency"] = kernel.submit_keys.export()
    return doc, snap_hash


def pin_rows(kernel: Kernel) -> list[list[Any]]:
    """``[reducer, key, era]`` of every pinned cell, in canonical cell order."""
    cells = kernel.cells
    rows = [[cells.spec(cid).name, cells.key(cid), era] for cid, era in cells.pins.items()]
    rows.sort(key=lambda r: canonical.encode(r[:2]))
    return rows


def restore_pins(kernel: Kernel, rows: Any, where: str) -> None:
    """Pin the cells ``rows`` (``[reducer, key, era]``) names to their eras' reducers, from ``kernel.earlier``.

    Raises :class:`PinnedEraError` when an era's manifest is not among
    ``kernel.earlier`` (the caller did not pass it).
    """
    if type(rows) is not list or any(type(r) is not list or len(r) != 3 or type(r[0]) is not str
                                     or type(r[2]) is not bytes for r in rows):
        raise SnapshotCorruptError(where, "malformed snapshot: pins has the wrong type")
    missing: dict[str, int] = {}
    reducers: dict[str, set[str]] = {}
    for reducer, key, era in rows:
        m = kernel.earlier.get(era)
        if m is None:
            missing[era.hex()] = missing.get(era.hex(), 0) + 1
            reducers.setdefault(era.hex(), set()).add(reducer)
            continue
        cid = kernel.cells.find(reducer, key)
        if cid is None or not kernel.cells.has_state(cid):
            raise SnapshotCorruptError(where, f"pins names cell ({reducer!r}, {key!r}), which holds no state")
        if reducer not in m.reducers:
            raise SnapshotCorruptError(where, f"cell ({reducer!r}, {key!r}) is pinned to era {era.hex()[:12]}, "
                                              f"whose manifest {m.name} has no such reducer")
        kernel.cells.pin(cid, m.reducers[reducer], era)
    if missing:
        listed = "; ".join(f"{n} cell(s) of {', '.join(sorted(reducers[e]))} pinned to era {e[:12]}"
                           for e, n in sorted(missing.items()))
        raise PinnedEraError(
            f"{where}: {listed}: these cells run that era's code, so its manifest is needed — pass it as "
            "World.open(path, manifest, earlier=[old_manifest]) or aos.replay(path, manifests=[old_manifest, "
            "manifest]), or upgrade again migrating (migrate=) or adopting (adopt=) those reducers "
            "(docs/upgrades.md, \"Pinned cells\")", missing)


def write_snapshot(directory: Path, kernel: Kernel, era: bytes, position: Position) -> SnapshotInfo:
    """Write a snapshot durably (temp file, fsync, rename, fsync directory)."""
    data, snap_hash = encode_snapshot(kernel, era, position)
    name = f"{position.index:020d}-{canonical.digest(data).hex()}.snap"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    write_atomic(path, data)
    return SnapshotInfo(path, kernel.last_event_id, snap_hash.hex(), position)


def list_snapshots(directory: Path) -> list[Path]:
    """Snapshot files, oldest first (by journal position)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".snap")


def snapshot_index(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[0])
    except ValueError:
        raise SnapshotCorruptError(str(path), "file name does not start with a record index") from None


def _check_types(doc: dict[str, Any], where: str) -> None:
    """The counters and rows that are restored as they are (not through checked constructors)."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise SnapshotCorruptError(where, f"malformed snapshot: {what} has the wrong type")

    def nat(v: Any) -> bool:
        return type(v) is int and v >= 0

    for name in ("next_seq", "commits", "failures"):
        need(nat(doc[name]), name)
    need(type(doc["states"]) is dict and type(doc["cells"]) is list and type(doc["refs"]) is list, "cells")
    need(type(doc["inbox"]) is list and all(
        type(e) is list and len(e) == 4 and nat(e[0]) and type(e[1]) is str and type(e[2]) is bytes and nat(e[3])
        for e in doc["inbox"]), "inbox")
    need(type(doc["ledger"]) is list and all(
        type(r) is list and len(r) == 3 and type(r[0]) is str and nat(r[1]) and nat(r[2]) for r in doc["ledger"]),
        "ledger")
    outbox = doc["outbox"]
    need(type(outbox) is dict and type(outbox.get("queued")) is list and type(outbox.get("settled")) is list
         and all(type(h) is bytes for h in outbox["settled"]), "outbox")
    need(all(type(q) is list and len(q) == 9 and type(q[0]) is bytes and type(q[1]) is str and type(q[2]) is bytes
             and type(q[3]) is str and type(q[4]) is str and nat(q[5]) and nat(q[6]) and type(q[7]) is str
             and (q[8] is None or type(q[8]) in (str, int, bytes)) for q in outbox["queued"]), "outbox")


def check_snapshot_file(path: Path) -> bytes:
    """The bytes of the snapshot file at ``path``, checked against the content hash in its name."""
    where = str(path)
    snapshot_index(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotCorruptError(where, f"cannot be read: {exc}") from None
    stem = path.name[:-len(".snap")]
    if "-" not in stem or canonical.digest(data).hex() != stem.split("-", 1)[1]:
        raise SnapshotCorruptError(where, "content does not match the hash in its file name")
    return data


def load_snapshot(path: Path, kernel: Kernel, era: bytes) -> Position:
    """Restore ``kernel`` (fresh) from the snapshot at ``path``; return its journal position."""
    where = str(path)
    data = check_snapshot_file(path)
    try:
        doc = canonical.decode(data, where)
        if doc.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotCorruptError(where, f"unknown snapshot format {doc.get('format')!r}")
        if doc["era"] != era:
            raise SnapshotCorruptError(where, "snapshot was written under another era")
        if doc["window"] != kernel.window or doc["aging"] != kernel.sequencer.aging:
            raise SnapshotCorruptError(where, "snapshot window or aging differs from the world's")
        _check_types(doc, where)
        position = Position.from_wire(doc["position"])
        if position.index != snapshot_index(path):
            raise SnapshotCorruptError(where, "record index in the file name disagrees with the content")
        restore_doc(doc, kernel, where)
    except (SnapshotCorruptError, PinnedEraError):
        raise
    except (AosError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise SnapshotCorruptError(where, f"malformed snapshot: {type(exc).__name__}: {exc}") from None
    return position


def restore_doc(doc: dict[str, Any], kernel: Kernel, where: str) -> None:
    """Restore ``kernel`` (fresh) from a snapshot document (checked by the caller)."""
    m = kernel.manifest
    cells = kernel.cells
    states = doc["states"]
    for sh, body in states.items():
        if canonical.digest(body) != sh:
            raise SnapshotCorruptError(where, f"state body does not match its hash {sh.hex()}")
    for reducer, key, sh in doc["cells"]:
        cid = cells.id_of(m.get(reducer), key)
        cells.set(cid, states[sh], sh)
    if cells.snapshot_hash() != doc["snapshot_hash"]:
        raise SnapshotCorruptError(where, "cells do not hash to the recorded snapshot hash")
    if "pins" in doc:
        restore_pins(kernel, doc["pins"], where)
    cid_of = [cells.id_of(m.get(r), k) for r, k in doc["refs"]]
    sq = doc["sequencer"]
    kernel.sequencer = Sequencer.from_state({
        "window": kernel.window,
        "aging": kernel.sequencer.aging,
        "next_ticket": sq["next_ticket"],
        "rings": [[[cid_of[r], since] for r, since in ring] for ring in sq["rings"]],
        "mailboxes": sq["mailboxes"],
        "pending": [[v, cid_of[r], i, k] for v, r, i, k in sq["pending"]],
        "admitted": [[v, cid_of[r], i, k, b] for v, r, i, k, b in sq.get("admitted", ())],
    })
    kernel.sequencer.cells = cells  # (as Kernel sets it: the counts per reducer)
    for seq, schema, value, left in doc["inbox"]:
        kernel.inbox.put(seq, schema, value, left)
    kernel.ledger.restore(doc["ledger"])
    kernel.outbox.restore(doc["outbox"])
    if "lane" in doc:
        lane = doc["lane"]
        if type(lane) is not dict or not all(
                type(rows) is list and all(type(r) is list and len(r) == 2 + (name == "grants") for r in rows)
                for name, rows in lane.items()):
            raise SnapshotCorruptError(where, "malformed snapshot: lane has the wrong type")
        kernel.restore_lane(lane)
    kernel.next_seq = doc["next_seq"]
    kernel.commits = doc["commits"]
    kernel.failures = doc["failures"]
    for reducer, key, state in doc.get("retired", ()):
        if type(reducer) is not str or type(state) is not bytes:
            raise SnapshotCorruptError(where, "malformed snapshot: retired has the wrong type")
        kernel.retired[(reducer, key)] = state
    if "idempotency" in doc:
        kernel.submit_keys.restore(doc["idempotency"])


# ----------------------------------------------------------------- background snapshots
SNAPSHOT_DOMAIN = b"aos.snapshot.v1"  # what the snapshot hash starts from (aos.cells.CellTable.snapshot_hash)
_CELL_SECTIONS = ("states", "cells")  # the two large values of a snapshot document, written in C


@dataclass(slots=True)
class PendingSnapshot:
    """A snapshot taken at a quiet point and not yet written: every small table already in its document,
    the cells as a frozen copy of the cell store (encoded later, off the commit path)."""

    doc: dict[str, Any]
    cells: Any  # a frozen CellTable: CellStore.frozen()
    position: Position
    event_id: int


@dataclass(frozen=True, slots=True)
class WrittenSnapshot:
    """A background snapshot written and fsync'd under a temporary name, not yet renamed into place."""

    tmp: Path
    path: Path
    event_id: int
    snapshot_hash: bytes
    position: Position


def capture(kernel: Kernel, era: bytes, position: Position) -> PendingSnapshot:
    """The kernel's state at ``position``, cheaply: the small tables encoded as values, the cells frozen."""
    doc, _ = snapshot_doc(kernel, era, position, cell_parts=({}, [], b""))
    return PendingSnapshot(doc, kernel.cells.frozen(), position, kernel.last_event_id)


def _head(major: int, n: int) -> bytes:
    """A canonical CBOR head (its shortest form)."""
    if n < 24:
        return bytes([major << 5 | n])
    for size, info in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError(f"{n} does not fit a CBOR head")


def encode_pieces(doc: dict[str, Any], sections: dict[str, bytes]) -> list[bytes]:
    """The canonical CBOR of ``doc`` as a list of byte strings, the values named in ``sections`` given
    already encoded: the same bytes as ``canonical.encode`` of the whole document (keys in canonical order:
    by encoded length, then bytewise)."""
    keys = sorted((canonical.encode(k), k) for k in doc)
    keys.sort(key=lambda e: (len(e[0]), e[0]))
    out = [_head(5, len(doc))]
    for encoded, k in keys:
        out.append(encoded)
        out.append(sections[k] if k in sections else canonical.encode(doc[k], where="snapshot"))
    return out


def write_pending(directory: Path, pending: PendingSnapshot) -> WrittenSnapshot:
    """Encode ``pending`` and write it, fsync'd, under a temporary name (runs on the background writer).

    The cells are encoded and hashed in C with the GIL released; the file is
    renamed into place by :func:`publish` once the journal is durable past
    the snapshot's position.
    """
    import blake3

    states, cells, snap_hash = pending.cells.snapshot_sections(SNAPSHOT_DOMAIN)
    doc = pending.doc
    doc["snapshot_hash"] = snap_hash
    pieces = encode_pieces(doc, {"states": states, "cells": cells})
    h = blake3.blake3()
    for piece in pieces:
        h.update(piece)
    name = f"{pending.position.index:020d}-{h.hexdigest()}.snap"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (name + ".tmp")
    with open(tmp, "wb") as f:
        for piece in pieces:
            f.write(piece)
        f.flush()
        os.fsync(f.fileno())
    return WrittenSnapshot(tmp, directory / name, pending.event_id, snap_hash, pending.position)


def publish(written: WrittenSnapshot) -> SnapshotInfo:
    """Rename a written snapshot into place and make the rename durable (the journal must be durable past
    its position first: the caller's duty)."""
    os.replace(written.tmp, written.path)
    fsync_dir(written.path.parent)
    return SnapshotInfo(written.path, written.event_id, written.snapshot_hash.hex(), written.position)
