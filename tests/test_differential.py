"""Differential testing: random workloads write the same journal on every path (see tests/differential).

Hypothesis draws workloads — 1 to 4 keyed or single-cell reducers with
priorities 0-3, emit chains, effects under small budgets and deny rules,
receipts settled by the script (ok, cheaper, error, dearer than reserved),
budget reads, reducers that raise, return unencodable values or delete their
cell, an invariant, the step's random numbers, snapshots — and each must
give the reference's journal bytes and state hash on every path of
``differential.paths.PATHS``, and replay to that state.

Short mode (CI) draws the same examples every run; the long mode (marked
``long``; ``AOS_RELIABILITY_SCALE`` multiplies its count) draws new ones.
A failure prints the shrunk workload as a constructor call: pass it to
``differential.paths.check(workload, directory)`` to reproduce it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, reject, settings

sys.path.insert(0, str(Path(__file__).parent / "reliability"))

from differential.paths import PATHS, REFERENCE, Divergence, check  # noqa: E402
from differential.workload import CONTENTION, Workload, workloads  # noqa: E402
from reliability_support import record, scaled  # noqa: E402

SHORT_EXAMPLES, LONG_EXAMPLES = 30, 1000
# Seconds Hypothesis may spend shrinking a failure before it reports the smallest one found so far.
SHRINK_S = {"short": 60.0, "long": 300.0}

pytestmark = pytest.mark.determinism


def run_examples(tmp: Path, mode: str, examples: int) -> dict[str, Any]:
    t0 = time.monotonic()
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    failing: dict[str, Any] = {}  # once a path diverged, shrinking runs the reference and that path only
    failed: set[str] = set()  # the workloads (reprs) that failed
    first_failure: list[float] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=mode == "short",
              suppress_health_check=list(HealthCheck))
    @given(wl=workloads())
    @example(wl=CONTENTION)  # stale budget reads on every parallel run
    def differential(wl: Workload) -> None:
        if first_failure and time.monotonic() - first_failure[0] > SHRINK_S[mode] and repr(wl) not in failed:
            reject()  # the shrinking time is spent: only the failures already found run again, to be reported
        where = Path(tempfile.mkdtemp(dir=tmp))
        try:
            out = check(wl, where, {n: PATHS[n] for n in failing if n in PATHS} if failing else None)
        except Divergence as exc:
            failing.setdefault(exc.path, True)
            failed.add(repr(wl))
            first_failure[:] = first_failure or [time.monotonic()]
            raise
        finally:
            shutil.rmtree(where, ignore_errors=True)
        ref = out[REFERENCE[0]]
        counts["examples"] += 1
        counts["paths_compared"] += len(out) - 1
        counts["records_compared"] += len(ref.payloads) * (len(out) - 1)
        counts["receipts"] += ref.tally.receipts
        counts["receipts_refused"] += ref.tally.refused
        counts["reexecutions"] += sum(o.tally.reexecutions for o in out.values())
        counts["c_loop_steps"] += out["inline"].tally.c_loop if "inline" in out else 0
        counts["steps"] += ref.kinds["StepScheduled"]
        counts["max_steps"] = max(counts["max_steps"], ref.kinds["StepScheduled"])
        kinds.update(ref.kinds)

    differential()
    result: dict[str, Any] = dict(counts)
    result["paths"] = [f"{REFERENCE[0]} (the oracle)", *PATHS]
    result["reference_records"] = dict(sorted(kinds.items()))
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result


@pytest.mark.timeout(600)  # passing takes about 30 s; a failure is shrunk for a minute
def test_differential_short(tmp_path: Path) -> None:
    counts = run_examples(tmp_path, "short", scaled(SHORT_EXAMPLES))
    record("short", "differential", **counts)
    # The examples exercise what they are drawn to: these kinds of records all occur.
    for kind in ("StepCommitted", "StepFailed", "InvariantViolated", "PolicyDecision", "PolicyDecision (denied)",
                 "EffectQueued", "ReceiptAppended", "SnapshotCreated"):
        assert counts["reference_records"].get(kind, 0) > 0, kind
    assert counts["receipts_refused"] > 0 and counts["reexecutions"] > 0
    # the inline path ran steps in its C loop, not only on the reference path
    assert counts["c_loop_steps"] > 0


@pytest.mark.long
def test_differential_long(tmp_path: Path) -> None:
    counts = run_examples(tmp_path, "long", scaled(LONG_EXAMPLES))
    record("long", "differential", **counts)


def test_the_check_names_a_path_that_writes_another_journal(tmp_path: Path) -> None:
    """The comparison itself can fail: a path that submits one value differently is caught at that record."""
    from dataclasses import replace

    from differential.paths import session

    def off_by_one(wl: Workload, directory: Path) -> Any:
        first, *rest = wl.phases
        nudged = replace(first.inputs[0], n=first.inputs[0].n + 1)
        return session()(replace(wl, phases=(replace(first, inputs=(nudged, *first.inputs[1:])), *rest)), directory)

    with pytest.raises(Divergence, match=r"path off-by-one diverges from the reference .*record 0 differs") as caught:
        check(CONTENTION, tmp_path, {"threads-2": PATHS["threads-2"], "off-by-one": off_by_one})
    assert caught.value.path == "off-by-one"
