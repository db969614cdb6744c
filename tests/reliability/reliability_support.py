"""Shared machinery of the reliability suite: how many trials, the report, the workload and the oracle.

Short and long modes run the same code with different counts. A long test
is marked ``long`` (deselected by default; run it with ``pytest -m long``).
``AOS_RELIABILITY_SCALE`` multiplies every count (default 1), so a quick
look at the long suite is ``AOS_RELIABILITY_SCALE=0.05 pytest -m long``.

Counts are kept per mode and section, printed in pytest's terminal summary
(see ``tests/conftest.py``) and written as JSON to ``$AOS_RELIABILITY_REPORT``
or, after a long run, to ``reliability-report.json`` in the current directory.

The child processes of the crash trials import this module too, so it does
not import pytest.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import aos
from aos import canonical
from aos.journal import JournalReader
from aos.records import (
    EventAdmitted,
    ReceiptAppended,
    Record,
    SnapshotCreated,
    StepScheduled,
)

SCALE_ENV = "AOS_RELIABILITY_SCALE"
REPORT_ENV = "AOS_RELIABILITY_REPORT"
DEFAULT_REPORT = "reliability-report.json"

# mode -> section -> counts
REPORT: dict[str, dict[str, dict[str, Any]]] = {}


def scale() -> float:
    raw = os.environ.get(SCALE_ENV, "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{SCALE_ENV} must be > 0, got {raw!r}")
    return value


def scaled(n: int) -> int:
    """``n`` times the scale knob, at least 1."""
    return max(1, round(n * scale()))


def record(mode: str, section: str, **counts: Any) -> None:
    """Keep one section's counts; write the JSON report after a long run (or when asked to)."""
    REPORT.setdefault(mode, {})[section] = counts
    line = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"reliability [{mode}] {section}: {line}", flush=True)
    target = os.environ.get(REPORT_ENV) or (DEFAULT_REPORT if mode == "long" else None)
    if not target:
        return
    path = Path(target)
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        doc = {}
    doc.setdefault("modes", {}).setdefault(mode, {})[section] = counts
    doc["machine"] = {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
                      "cpus": os.cpu_count(), "platform": platform.platform()}
    doc["scale"] = scale()
    doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


class Failures:
    """Collects what went wrong in a batch of trials, so one run reports all of them."""

    def __init__(self, limit: int = 20) -> None:
        self.items: list[str] = []
        self.limit = limit

    def add(self, what: str) -> None:
        self.items.append(what)

    def __len__(self) -> int:
        return len(self.items)

    def message(self) -> str:
        shown = "\n".join(self.items[:self.limit])
        more = f"\n... and {len(self.items) - self.limit} more" if len(self.items) > self.limit else ""
        return f"{len(self.items)} failure(s):\n{shown}{more}"


# ------------------------------------------------------------------ workload
def workload_manifest() -> aos.Manifest:
    """The determinism workload: keyed and non-keyed cells, cross-cell emits, effects, budgets, failures."""
    from test_determinism import workload_manifest as manifest

    return manifest()


def workload_adapters() -> dict[str, Any]:
    """Deterministic adapters for the workload (payments cost half of what they reserve)."""
    from effects_world import payment_adapter

    return {"payment.send": payment_adapter(cost_of=lambda r: r.cost // 2)}


def random_input(rnd: random.Random) -> tuple[str, dict[str, Any]]:
    """One input of the determinism workload (the same mix as ``test_determinism.inputs``)."""
    kind = rnd.random()
    if kind < 0.4:
        return "test/Hop@1", {"id": rnd.randrange(23), "ttl": rnd.randint(0, 4)}
    if kind < 0.8:
        return "test/Pay@1", {"id": f"p{rnd.randrange(6)}", "costs": [rnd.randint(1, 30)],
                              "peek": rnd.random() < 0.5, "timer": rnd.choice([None, 1, 3]),
                              "blob": rnd.choice([None, b"x" * rnd.randint(1, 9)])}
    return "test/Take@1", {"sku": f"s{rnd.randrange(3)}", "qty": rnd.randint(1, 2)}


# ------------------------------------------------------------------- journal
def journal_entries(path: Path, m: aos.Manifest) -> list[tuple[Any, Record]]:
    return list(JournalReader(Path(path) / "journal", m.era).records())


def journal_payloads(path: Path, m: aos.Manifest) -> list[bytes]:
    return [e.payload for e in JournalReader(Path(path) / "journal", m.era).entries()]


def serial_oracle(records: Iterable[Record], m: aos.Manifest, path: Path, *, window: int | None = None,
                  aging: int | None = None, segment_bytes: int | None = None) -> tuple[list[bytes], str]:
    """Re-run a journal's inputs on a fresh world with the inline executor; return its journal and state hash.

    The inputs (submitted events, receipts) are admitted, and snapshots
    taken, exactly where the given journal has them — after as many steps as
    it scheduled before them — so a journal that is right equals the oracle's
    byte for byte. Receipts are signed again with the oracle world's secret.
    """
    opts: dict[str, Any] = {"window": window, "aging": aging}
    if segment_bytes is not None:
        opts["segment_bytes"] = segment_bytes
    with aos.World.open(path, m, workers=0, effects="manual", on_violation="record", snapshot_every=0,
                        snapshot_on_close=False, durability="none", **opts) as w:
        steps = 0

        def catch_up() -> None:
            nonlocal steps
            if steps:
                done = w.run(max_steps=steps).steps
                if done != steps:
                    raise AssertionError(f"the journal schedules {steps} steps here, the oracle ran {done}")
                steps = 0

        for rec in records:
            if isinstance(rec, StepScheduled):
                steps += 1
            elif isinstance(rec, EventAdmitted):
                catch_up()
                w.submit(rec.schema, canonical.decode(rec.value))
            elif isinstance(rec, ReceiptAppended):
                catch_up()
                w.submit_receipt(w.receipt(rec.intent_hash, rec.status, canonical.decode(rec.payload), rec.cost))
            elif isinstance(rec, SnapshotCreated):
                catch_up()
                w.snapshot()
        catch_up()
        h = w.snapshot_hash()
    return journal_payloads(path, m), h


def first_difference(a: list[bytes], b: list[bytes]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))
