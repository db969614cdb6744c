"""Export a world's journal, cells, effects and receipts to SQLite tables.

Schema (docs/cli.md has example queries):

* ``records(idx, segment, offset, kind, event_id, seq, body)`` — every
  journal record; ``body`` is the record as JSON (embedded CBOR values
  decoded).
* ``steps(event_id, reducer, key, input, outcome, state_hash, error)`` —
  one row per step; ``outcome`` is ``committed``, ``failed`` or
  ``violated``.
* ``events(seq, schema, value, origin_event_id)`` — admitted events
  (external ones have no origin; emitted ones name the step that emitted them).
* ``effects(intent_hash, event_id, kind, cap, idempotency_key, cost, allowed, reason)``
* ``receipts(seq, intent_hash, status, payload, cost)``
* ``cells(reducer, key, state, state_hash)`` — live cells of the latest snapshot.

Keys, values and bodies are JSON text in the representation of
:func:`aos.render.json_text` (byte strings, ints beyond 64 bits and
infinities as tagged objects); hash columns are hex. The file is written
under a temporary name in the target's directory and renamed into place
once complete: a failed export leaves no file behind.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from aos import canonical
from aos.journal import JournalReader
from aos.records import (
    AdmissionNumbers,
    EffectQueued,
    EventAdmitted,
    InvariantViolated,
    PolicyDecision,
    ReceiptAppended,
    StepCommitted,
    StepFailed,
    StepScheduled,
)
from aos.render import INT64_MAX, INT64_MIN, int_text, json_text
from aos.snapshot import list_snapshots

__all__ = ["export_sqlite", "SCHEMA"]

SCHEMA = """
CREATE TABLE records (idx INTEGER PRIMARY KEY, segment TEXT, offset INTEGER, kind TEXT, event_id INTEGER,
                      seq INTEGER, body TEXT);
CREATE TABLE steps (event_id INTEGER PRIMARY KEY, reducer TEXT, key TEXT, input INTEGER, outcome TEXT,
                    state_hash TEXT, error TEXT);
CREATE TABLE events (seq INTEGER PRIMARY KEY, schema TEXT, value TEXT, origin_event_id INTEGER);
CREATE TABLE effects (intent_hash TEXT PRIMARY KEY, event_id INTEGER, kind TEXT, cap TEXT, idempotency_key TEXT,
                      cost INTEGER, allowed INTEGER, reason TEXT);
CREATE TABLE receipts (seq INTEGER PRIMARY KEY, intent_hash TEXT, status TEXT, payload TEXT, cost INTEGER);
CREATE TABLE cells (reducer TEXT, key TEXT, state TEXT, state_hash TEXT, PRIMARY KEY (reducer, key));
"""


def _json(value: Any) -> str:
    return json_text(value)


def _int(value: int) -> int | str:
    """An int for an INTEGER column; one beyond SQLite's 64 bits is stored as its text (aos.render.int_text)."""
    return value if INT64_MIN <= value <= INT64_MAX else int_text(value)


def _body(wire: Any, name: str = "") -> Any:
    """A record's wire map with its embedded canonical values (event values, payloads, params) decoded."""
    if isinstance(wire, bytes) and name in ("value", "payload", "params"):
        return canonical.decode_trusted(wire)
    if isinstance(wire, dict):
        return {k: _body(v, k) for k, v in wire.items()}
    if isinstance(wire, list):
        if name == "emits":  # [schema, value] pairs
            return [[e[0], canonical.decode_trusted(e[1])] for e in wire]
        return [_body(v, name) for v in wire]
    return wire


def export_sqlite(world: Path, target: Path) -> dict[str, int]:
    """Write the tables into a new SQLite file ``target``; returns the row count of each table.

    ``target`` must not exist. The tables are written to a temporary file
    beside it, which is renamed to ``target`` only once complete; on any
    error the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} exists; choose a new file")
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        counts = _write(world, tmp)
        try:
            os.link(tmp, target)  # fails, rather than replace, if target appeared meanwhile
        except FileExistsError:
            raise FileExistsError(f"{target} exists; choose a new file") from None
        except OSError:  # a file system without hard links
            if target.exists():
                raise FileExistsError(f"{target} exists; choose a new file") from None
            os.replace(tmp, target)
        return counts
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _write(world: Path, target: Path) -> dict[str, int]:
    db = sqlite3.connect(target)
    try:
        db.executescript(SCHEMA)
        numbers = AdmissionNumbers()  # the admission numbers of inputs, in journal order
        for entry, rec in JournalReader(world / "journal").records():
            seqs = numbers.take(rec, entry)
            body = _body(rec.to_wire())
            db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (entry.index, entry.segment, entry.offset, rec.KIND, getattr(rec, "event_id", None),
                        getattr(rec, "seq", None), _json(body)))
            if isinstance(rec, EventAdmitted):
                db.execute("INSERT INTO events VALUES (?, ?, ?, NULL)",
                           (rec.seq, rec.schema, _json(canonical.decode_trusted(rec.value))))
            elif isinstance(rec, StepScheduled):
                db.execute("INSERT INTO steps VALUES (?, ?, ?, ?, NULL, NULL, NULL)",
                           (rec.event_id, rec.reducer, _json(rec.key), rec.input))
            elif isinstance(rec, StepCommitted):
                db.execute("UPDATE steps SET outcome = 'committed', state_hash = ? WHERE event_id = ?",
                           (None if rec.state_hash is None else rec.state_hash.hex(), rec.event_id))
                for seq, emit in zip(seqs, rec.emits, strict=True):
                    db.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                               (seq, emit.schema, _json(canonical.decode_trusted(emit.value)), rec.event_id))
            elif isinstance(rec, StepFailed):
                db.execute("UPDATE steps SET outcome = 'failed', error = ? WHERE event_id = ?",
                           (f"{rec.error}: {rec.message}" + (f"\n{rec.traceback}" if rec.traceback else ""),
                            rec.event_id))
            elif isinstance(rec, InvariantViolated):
                db.execute("UPDATE steps SET outcome = 'violated', error = ? WHERE event_id = ?",
                           (f"{rec.invariant}: {rec.message}", rec.event_id))
            elif isinstance(rec, PolicyDecision):
                db.execute("INSERT OR REPLACE INTO effects (intent_hash, event_id, allowed, reason) "
                           "VALUES (?, ?, ?, ?)", (rec.intent_hash.hex(), rec.event_id, int(rec.allowed), rec.reason))
            elif isinstance(rec, EffectQueued):
                db.execute("UPDATE effects SET kind = ?, cap = ?, idempotency_key = ?, cost = ? WHERE intent_hash = ?",
                           (rec.effect, rec.cap, rec.idempotency_key, _int(rec.cost), rec.intent_hash.hex()))
            elif isinstance(rec, ReceiptAppended):
                db.execute("INSERT INTO receipts VALUES (?, ?, ?, ?, ?)",
                           (rec.seq, rec.intent_hash.hex(), rec.status, _json(canonical.decode_trusted(rec.payload)),
                            _int(rec.cost)))
        snaps = list_snapshots(world / "snapshots")
        if snaps:
            doc = canonical.decode(snaps[-1].read_bytes(), str(snaps[-1]))
            for reducer, key, state_hash in doc["cells"]:
                db.execute("INSERT INTO cells VALUES (?, ?, ?, ?)",
                           (reducer, _json(key), _json(canonical.decode_trusted(doc["states"][state_hash])),
                            state_hash.hex()))
        db.commit()
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed table names
                for t in ("records", "steps", "events", "effects", "receipts", "cells")}
    finally:
        db.close()
