"""The paths a workload can take to a journal, and the check that they all write the reference's.

A path is a function ``(workload, directory) -> Outcome``: it creates a world
in the (empty) directory, plays the workload's script and returns the
journal's bytes and the final state hash. The reference is the inline
executor in one uninterrupted session. Adding a path (a new executor, a new
step path) is one entry in :data:`PATHS`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aos
from aos.journal import JournalReader
from aos.records import PolicyDecision
from differential.factory import Tally, build_manifest, play
from differential.workload import Workload

__all__ = ["Outcome", "PathFn", "REFERENCE", "PATHS", "Divergence", "check", "world_options"]


@dataclass
class Outcome:
    journal: bytes  # the journal's segment files, concatenated in order
    state_hash: str
    payloads: list[bytes]  # one per record, to name the first that differs
    tally: Tally
    kinds: Counter[str] = field(default_factory=Counter)  # records by type


PathFn = Callable[[Workload, Path], Outcome]


def world_options(wl: Workload) -> dict[str, Any]:
    """The options every path opens its world with (they fix what the journal holds)."""
    return {"effects": "manual", "on_violation": "record", "window": wl.window, "aging": wl.aging,
            "snapshot_every": wl.snapshot_every, "snapshot_on_close": False, "durability": "none"}


def worker_delays(seed: int) -> Callable[[int], float]:
    """Seeded per-ticket delays: workers finish out of ticket order, so commits wait on computation."""
    rnd = random.Random(seed)
    table = [rnd.choice([0.0, 0.0, 0.0, 0.0001, 0.0005, 0.002]) for _ in range(257)]
    return lambda event_id: table[event_id % len(table)]


def outcome_of(directory: Path, wl: Workload, state_hash: str, tally: Tally) -> Outcome:
    m = build_manifest(wl)
    segments = sorted((directory / "journal").glob("*.seg"))
    kinds: Counter[str] = Counter()
    payloads = []
    for entry in JournalReader(directory / "journal", m.era).entries():
        payloads.append(entry.payload)
        rec = entry.record()
        kinds[type(rec).__name__] += 1
        if isinstance(rec, PolicyDecision) and not rec.allowed:
            kinds["PolicyDecision (denied)"] += 1
    return Outcome(b"".join(p.read_bytes() for p in segments), state_hash, payloads, tally, kinds)


def session(*, workers: int = 0, delayed: bool = False, reopen: bool = False, reference: bool = False,
            offload: str = "all") -> PathFn:
    """A path: the script played on a world with ``workers`` (0: inline), optionally reopened between phases.

    ``reference``: the reference executor (plain Python) instead of the inline executor's C loop.
    """

    def path(wl: Workload, directory: Path) -> Outcome:
        opts = world_options(wl)
        if workers:
            opts.update(workers=workers, offload=offload,
                        worker_delay=worker_delays(wl.delay_seed * 8 + workers) if delayed else None)
        else:
            opts.update(workers=0, reference=reference)
        h, tally = play(wl, lambda: aos.World.open(directory, build_manifest(wl), **opts), reopen=reopen)
        return outcome_of(directory, wl, h, tally)

    return path


REFERENCE: tuple[str, PathFn] = ("reference", session(reference=True))

PATHS: dict[str, PathFn] = {
    "inline": session(),  # the C step loop
    "threads-1": session(workers=1, delayed=True),
    "threads-2": session(workers=2, delayed=True),
    "threads-4": session(workers=4, delayed=True),
    # Python steps computed by the commit loop itself (through the inline executor's C step), as on a GIL build
    "threads-2-auto": session(workers=2, offload="auto"),
    "inline-reopened": session(reopen=True),
    "threads-2-reopened": session(workers=2, delayed=True, reopen=True),
}


class Divergence(AssertionError):
    """A path wrote another journal or reached another state than the reference, or could not play the script.

    ``path`` names it ("reference" for the reference itself).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def _describe(payload: bytes | None) -> str:
    if payload is None:
        return "(no record)"
    from aos.records import decode_record

    try:
        return repr(decode_record(payload, "differential"))
    except Exception as exc:  # a record the reader cannot decode is itself the finding
        return f"<undecodable record {payload.hex()}: {exc}>"


def compare(name: str, got: Outcome, want: Outcome) -> None:
    if got.journal == want.journal and got.state_hash == want.state_hash:
        return
    first = next((i for i, (a, b) in enumerate(zip(got.payloads, want.payloads, strict=False)) if a != b),
                 min(len(got.payloads), len(want.payloads)))
    a = got.payloads[first] if first < len(got.payloads) else None
    b = want.payloads[first] if first < len(want.payloads) else None
    if a is None and b is None:
        where = "the records are equal, the segment bytes are not"
    else:
        where = f"record {first} differs:\n  {name}:  {_describe(a)}\n  reference: {_describe(b)}"
    raise Divergence(name, f"path {name} diverges from the reference ({len(got.payloads)} vs {len(want.payloads)} "
                     f"records, state {got.state_hash[:16]} vs {want.state_hash[:16]}); {where}")


def verify_replay(name: str, directory: Path, wl: Workload, want: str, workers: int = 0) -> None:
    how = f"replayed with {workers} workers" if workers else "replayed"
    try:
        got = aos.replay(directory, build_manifest(wl)).verify(workers=workers)
    except aos.AosError as exc:
        raise Divergence(name, f"path {name}: the journal, {how}, does not replay: {type(exc).__name__}: "
                               f"{exc}") from exc
    if got != want:
        raise Divergence(name, f"path {name}: the journal, {how}, reaches state {got[:16]}, the run ended in "
                               f"{want[:16]}")


def _take(name: str, path: PathFn, wl: Workload, directory: Path) -> Outcome:
    try:
        return path(wl, directory / name)
    except Exception as exc:  # the script is valid on every path: an error escaping the world is a finding
        raise Divergence(name, f"path {name} could not play the workload: {type(exc).__name__}: {exc}") from exc


def check(wl: Workload, directory: Path, paths: dict[str, PathFn] | None = None) -> dict[str, Outcome]:
    """Run ``wl`` through the reference and every path; raise :class:`Divergence` at the first difference.

    Every journal must also replay (``aos.replay(...).verify()``) to the
    state its run ended in; the reference's also with 2 workers. Returns the outcomes by path name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ref_name, ref_path = REFERENCE
    want = _take(ref_name, ref_path, wl, directory)
    verify_replay(ref_name, directory / ref_name, wl, want.state_hash)
    verify_replay(ref_name, directory / ref_name, wl, want.state_hash, workers=2)  # the parallel replay
    out = {ref_name: want}
    for name, path in (PATHS if paths is None else paths).items():
        got = _take(name, path, wl, directory)
        compare(name, got, want)
        verify_replay(name, directory / name, wl, got.state_hash)
        out[name] = got
    return out
