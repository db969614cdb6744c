"""Upgrade crash trials: a world killed anywhere in an upgrade reopens wholly in one era.

Each trial copies a v1 world with history (``upgrade_world``: a few
thousand account cells, so the apply journals as many ``CellMigrated``
records) and runs ``upgrade_child.py`` on it: ``aos.upgrade(path, v2,
old=v1, migrate=...)`` on the closed world, or — the ``live`` variant — a
world that keeps submitting events (acknowledged under
``durability="always"``, some left waiting in mailboxes) up to a propose,
approve and apply on the same open world. The parent kills the child with
SIGKILL at a seeded random moment (the seeds are printed): some kills
anywhere from the child's start; the others after the child said the
upgrade begins, within the upgrade's length as measured on unkilled children
of the same variant, in its second half, where the apply writes (its first
half checks, migrates in memory and builds the new kernel), or aimed at the
moment the apply completes (:class:`KillClock`).

Before reopening it reads what the kill left (read-only) and counts where
the kill landed: before the proposal, after it, inside the apply (the new
era's segment without ``EraApplied``, part of the ``CellMigrated`` records,
all of them without the boundary ``SnapshotCreated``), after the apply
record with ``world.cbor`` lagging, or after ``world.cbor``. ``aos fsck``'s
check must find no damage. Then:

* the world opens with exactly one of v1 and v2 — the era the journal
  decides (v2 exactly when it holds the whole apply, and always when the
  child was told the upgrade returned) — and the other manifest is refused
  with ``EraChangeError``, changing no file (0 both, 0 neither);
* every acknowledged event and proposal is journaled, every step up to the
  acknowledged ``durable_event_id`` has its outcome (0 lost);
* the journal equals, byte for byte, the one an inline world writes from the
  same template given the same inputs, proposals, approvals and apply at
  the same points (the oracle), and so does the state hash;
* in v1, ``aos.replay(path, manifests=[v1])`` verifies; in v2,
  ``aos.replay(path, manifests=[v1, v2])`` verifies, and every account's
  state is ``to_v2`` of its state in the oracle's v1 world at the boundary;
* a world left in v1 is upgraded again with ``aos.upgrade`` (a proposal of
  the killed attempt stays in the journal, unapplied) and the upgrade
  completes; then the v2 world carries on (new events, a new reducer) and
  its whole history replays across both eras and equals the oracle's.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos import canonical
from aos.fsck import check_world
from aos.journal import DEFAULT_SEGMENT_BYTES, SEG_HEADER_SIZE, JournalReader
from aos.records import (
    ApprovalRecorded,
    CellMigrated,
    EraApplied,
    EventAdmitted,
    InvariantViolated,
    ProposalSubmitted,
    SnapshotCreated,
    StepCommitted,
    StepFailed,
    StepScheduled,
)
from reliability_support import Failures, first_difference, record, scaled
from test_crash import Child
from upgrade_world import ACCOUNT, MIGRATE, REPORT, fill, to_v2, v1_manifest, v2_manifest

CHILD = Path(__file__).with_name("upgrade_child.py")
ACCOUNTS = 3000
SHORT_TRIALS = 3
LONG_TRIALS = 300

V1, V2 = v1_manifest(), v2_manifest()

STAGES = ["before_proposal", "proposed", "new_segment_only", "during_migration", "migrated_no_boundary_record",
          "apply_record_world_cbor_lags", "completed"]


# ------------------------------------------------------------------ reading what a kill left
def _journal(path: Path, skip: int) -> tuple[list[bytes], list[tuple[int, Any]]]:
    """Every record's payload, and ``(index, record)`` of those after the template's first ``skip``."""
    payloads, tail = [], []
    for e in JournalReader(path / "journal").entries():
        payloads.append(e.payload)
        if e.index >= skip:
            tail.append((e.index, e.record()))
    return payloads, tail


def _files(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file() and f.name not in ("world.lock", "metrics.json")}


def _meta_era(path: Path) -> bytes:
    return canonical.hash_value(canonical.decode((path / "world.cbor").read_bytes())["manifest"])


def stage_of(path: Path, tail: list[tuple[int, Any]]) -> str:
    """Where in the upgrade the kill landed, from the files alone (``tail``: the records after the template)."""
    if _meta_era(path) == V2.era:
        return "completed"
    segs = JournalReader(path / "journal").segments()
    new = [s for s in segs if s.read_bytes()[:SEG_HEADER_SIZE][48:80] == V2.era]
    if not new:
        return "proposed" if any(isinstance(r, ProposalSubmitted) for _i, r in tail) else "before_proposal"
    first = int(new[0].stem)
    applied = [r for i, r in tail if i >= first]
    if not applied or not isinstance(applied[0], EraApplied):
        return "new_segment_only"
    if any(isinstance(r, SnapshotCreated) for r in applied):
        return "apply_record_world_cbor_lags"
    migrated = sum(isinstance(r, CellMigrated) for r in applied)
    return "during_migration" if migrated < ACCOUNTS else "migrated_no_boundary_record"


def _states(w: aos.World) -> dict[Any, Any]:
    return {key: w.state(ACCOUNT, key) for _r, key in w.cells(ACCOUNT)}


# ------------------------------------------------------------------ the oracle
def oracle(template: Path, records: list[Any], path: Path, segment_bytes: int) -> tuple[list[bytes], str,
                                                                                        dict[Any, Any]]:
    """An inline world from the template, given the journal's inputs and upgrade acts at the same points.

    Returns its journal's payloads, its state hash and the account states of
    its v1 world at the boundary (at the end, when it never applied).
    """
    shutil.copytree(template, path)
    opts: dict[str, Any] = {"workers": 0, "effects": "manual", "durability": "none", "snapshot_every": 0,
                            "snapshot_on_close": False, "segment_bytes": segment_bytes}
    w = aos.World.open(path, V1, **opts)
    steps = 0
    boundary: dict[Any, Any] | None = None
    in_apply = False

    def catch_up() -> None:
        nonlocal steps
        if steps:
            done = w.run(max_steps=steps).steps
            if done != steps:
                raise AssertionError(f"the journal schedules {steps} steps here, the oracle ran {done}")
            steps = 0

    try:
        for rec in records:
            if in_apply:  # the apply writes these itself
                in_apply = not isinstance(rec, SnapshotCreated)
            elif isinstance(rec, StepScheduled):
                steps += 1
            elif isinstance(rec, EventAdmitted):
                catch_up()
                w.submit(rec.schema, canonical.decode(rec.value))
            elif isinstance(rec, SnapshotCreated):
                catch_up()
                w.snapshot()
            elif isinstance(rec, ProposalSubmitted):
                catch_up()
                pid = w.propose(V2)
                if pid != rec.proposal:
                    raise AssertionError(f"the oracle's proposal is {pid}, the journal's {rec.proposal}")
            elif isinstance(rec, ApprovalRecorded):
                catch_up()
                w.approve(rec.proposal, by=rec.by, note=rec.note)
            elif isinstance(rec, EraApplied):
                catch_up()
                boundary = _states(w)
                w.apply(rec.proposal, V2, migrate=MIGRATE)
                w = aos.World.open(path, V2, **opts)
                in_apply = True
        catch_up()
        h = w.snapshot_hash()
        if boundary is None:
            boundary = _states(w)
    finally:
        w.close()
    return [e.payload for e in JournalReader(path / "journal").entries()], h, boundary


# ------------------------------------------------------------------ one trial
class Trial:
    def __init__(self, tmp: Path, template: Path, template_records: int, template_steps: int, seed: int,
                 failures: Failures, counts: dict[str, int]) -> None:
        self.tmp, self.template, self.skip, self.seed = tmp, template, template_records, seed
        self.steps = template_steps  # the template's steps: the acknowledged ones after it are checked here
        self.failures, self.counts = failures, counts
        self.rnd = random.Random(seed)
        self.path = tmp / "w"
        self.tag = f"seed {seed}"
        self.segment_bytes = DEFAULT_SEGMENT_BYTES
        self.stage: str | None = None  # where the kill landed, once read

    def fail(self, what: str, count: str) -> None:
        self.counts[count] += 1
        self.failures.add(f"{self.tag}: {what}")

    def run(self, clocks: dict[str, "KillClock"]) -> None:
        rnd = self.rnd
        shutil.copytree(self.template, self.path)
        cfg = {"path": str(self.path), "seed": self.seed, "variant": rnd.choice(["closed", "live"]),
               "workers": rnd.choice([0, 0, 1, 2]), "accounts": ACCOUNTS, "batches": rnd.randint(1, 8),
               "snapshot_every": rnd.choice([0, 0, 17]), "segment_bytes": rnd.choice([DEFAULT_SEGMENT_BYTES, 65_536])}
        self.segment_bytes = cfg["segment_bytes"]  # small segments: the migration records span several
        self.tag = f"seed {self.seed} ({cfg['variant']}, workers={cfg['workers']}, segment_bytes={self.segment_bytes})"
        clock = clocks[cfg["variant"]]
        child = Child(cfg, self.tmp / "child.err", CHILD)
        roll = rnd.random()
        delay, aimed = 0.0, False
        if roll < 0.15:  # anywhere from the child's start
            time.sleep(rnd.uniform(0.0, clock.lead + 1.3 * clock.upgrade))
        elif not child.wait_line("A", 60):
            rc = child.kill()
            return self.fail(f"the child never began the upgrade (exit {rc}): {child.stderr()}", "child_errors")
        else:
            if roll < 0.45:  # within the upgrade, as long as it took when measured
                delay = rnd.uniform(0.0, 1.3 * clock.upgrade)
            elif roll < 0.65:  # within its second half, where the apply writes (its first half checks and migrates)
                delay = rnd.uniform(0.5 * clock.upgrade, 1.2 * clock.upgrade)
            else:  # around the moment the apply completes (learnt from the kills before): world.cbor's write
                delay, aimed = max(0.0, rnd.uniform(clock.end - 0.03, clock.end + 0.01)), True
                self.counts["kills_aimed_at_the_end"] += 1
            time.sleep(delay)
        rc = child.kill()
        self.counts["kills"] += 1
        if rc != -signal.SIGKILL:
            return self.fail(f"the child exited by itself ({rc}): {child.stderr()}", "child_errors")
        self.check(child.lines)
        if aimed and self.stage is not None:
            clock.learn(self.stage == "completed")

    def check(self, lines: list[str]) -> None:
        counts, path = self.counts, self.path
        acked: dict[int, tuple[str, str]] = {}
        acked_step, acked_proposal, acked_upgrade = 0, None, False
        for line in lines:
            kind, *rest = line.split()
            if kind == "S":
                acked[int(rest[0])] = (rest[1], rest[2])
            elif kind == "D":
                acked_step = max(acked_step, int(rest[0]))
            elif kind == "P":
                acked_proposal = int(rest[0])
            elif kind == "U":
                acked_upgrade = True
        counts["acked_events"] += len(acked)
        counts["acked_upgrades"] += acked_upgrade

        _p, tail = _journal(path, self.skip)
        self.stage = stage = stage_of(path, tail)
        counts[f"killed_{stage}"] += 1
        counts["world_cbor_tmp_left"] += (path / "world.cbor.tmp").exists()
        expected = V2 if stage in ("completed", "apply_record_world_cbor_lags") else V1
        if acked_upgrade and expected is not V2:
            return self.fail(f"the upgrade returned, but the journal does not hold the whole apply ({stage})",
                             "lost_acknowledged")
        check = check_world(path)
        if not check.ok:
            self.fail(f"aos fsck reports damage after the kill ({stage}): {[str(p) for p in check.problems]}",
                      "fsck_damaged_after_crash")

        # exactly one manifest opens the world; the other is refused, and the refusal changes nothing
        first, second = (V1, V2) if self.rnd.random() < 0.5 else (V2, V1)
        opened: list[aos.Manifest] = []
        hashes: dict[bytes, str] = {}
        states: dict[bytes, dict[Any, Any]] = {}
        for m in (first, second):
            try:
                with aos.World.open(path, m, workers=0, effects="manual", snapshot_on_close=False,
                                    segment_bytes=self.segment_bytes) as w:
                    opened.append(m)
                    hashes[m.era] = w.snapshot_hash()
                    states[m.era] = _states(w)
            except aos.EraChangeError:
                pass
            except Exception as exc:
                return self.fail(f"opening with {'v1' if m is V1 else 'v2'} ({stage}) raised "
                                 f"{type(exc).__name__}: {exc}", "failed_reopens")
        if len(opened) != 1:
            return self.fail(f"{len(opened)} of v1 and v2 opened the world ({stage})",
                             "both_opened" if opened else "neither_opened")
        era = opened[0]
        counts["reopened_v2" if era is V2 else "reopened_v1"] += 1
        if era is not expected:
            return self.fail(f"the world opened in {'v2' if era is V2 else 'v1'}, but the journal says "
                             f"{'v2' if expected is V2 else 'v1'} ({stage})", "wrong_era")
        wrong = V1 if era is V2 else V2
        before = _files(path)
        try:
            aos.World.open(path, wrong, workers=0, effects="manual", segment_bytes=self.segment_bytes).close()
            return self.fail(f"the world opened again with the other manifest ({stage})", "both_opened")
        except aos.EraChangeError:
            pass
        if _files(path) != before:
            self.fail(f"a refused open with the other manifest changed the world's files ({stage})",
                      "refusal_changed_files")

        # nothing acknowledged lost
        payloads, tail = _journal(path, self.skip)
        recs = [r for _i, r in tail]
        admitted = {r.seq: (r.schema, canonical.digest(r.value).hex()) for r in recs if isinstance(r, EventAdmitted)}
        outcomes = {r.event_id for r in recs if isinstance(r, (StepCommitted, StepFailed, InvariantViolated))}
        lost = [s for s, ev in acked.items() if admitted.get(s) != ev]
        lost += [-i for i in range(self.steps + 1, acked_step + 1) if i not in outcomes]
        if acked_proposal is not None and not any(isinstance(r, ProposalSubmitted) and r.proposal == acked_proposal
                                                  for r in recs):
            lost.append(acked_proposal)
        if lost:
            return self.fail(f"acknowledged but lost: {lost[:5]} ({stage})", "lost_acknowledged")

        # the oracle: same journal, same state; migrated cells are to_v2 of the v1 state at the boundary
        counts["records_checked"] += len(payloads)
        o_payloads, o_hash, boundary = oracle(self.template, recs, self.tmp / "oracle1", self.segment_bytes)
        diff = first_difference(payloads, o_payloads)
        if diff is not None or o_hash != hashes[era.era]:
            return self.fail(f"journal differs from the oracle's at record {diff} of {len(payloads)} "
                             f"({stage})", "oracle_mismatches")
        eras = [V1, V2] if era is V2 else [V1]
        if aos.replay(path, manifests=eras).verify() != hashes[era.era]:
            return self.fail(f"a replay with {len(eras)} manifest(s) gives another state ({stage})",
                             "replay_mismatches")
        if era is V2:
            if states[V2.era] != {k: to_v2(s) for k, s in boundary.items()}:
                return self.fail(f"migrated accounts differ from to_v2 of the oracle's v1 states ({stage})",
                                 "migration_mismatches")
        else:  # the upgrade is made again, and completes
            had_proposal = any(isinstance(r, ProposalSubmitted) for r in recs)
            aos.upgrade(path, V2, old=V1, migrate=MIGRATE, workers=self.rnd.choice([0, 2]),
                        segment_bytes=self.segment_bytes)
            counts["retried_upgrades"] += 1
            counts["retried_after_a_journaled_proposal"] += had_proposal
            with aos.World.open(path, V2, workers=0, effects="manual", snapshot_on_close=False,
                                segment_bytes=self.segment_bytes) as w:
                if _states(w) != {k: to_v2(s) for k, s in states[V1.era].items()}:
                    return self.fail(f"after the retried upgrade, accounts differ from to_v2 of their v1 states "
                                     f"({stage})", "migration_mismatches")

        # the v2 world carries on; its whole history replays across both eras and is the oracle's
        with aos.World.open(path, V2, workers=self.rnd.choice([0, 2]), effects="manual",
                            segment_bytes=self.segment_bytes) as w:
            for i in range(5):
                w.submit("rel/Deposit@1", {"id": f"a{self.rnd.randrange(ACCOUNTS)}", "amount": 10 * i + 7})
            w.submit("rel/Deposit@1", {"id": "new", "amount": 60})
            w.submit(REPORT, {"id": "r1"})
            w.run()
            h = w.snapshot_hash()
            if w.state(ACCOUNT, "new") != {"cents": 6000, "ops": 1, "v": 2}:
                return self.fail("a new account after the upgrade does not run v2's code", "migration_mismatches")
        counts["continued_in_v2"] += 1
        if aos.replay(path, manifests=[V1, V2]).verify() != h:
            return self.fail(f"the continued world does not replay across both eras ({stage})", "replay_mismatches")
        payloads, tail = _journal(path, self.skip)
        counts["records_checked"] += len(payloads)
        o_payloads, o_hash, _b = oracle(self.template, [r for _i, r in tail], self.tmp / "oracle2",
                                        self.segment_bytes)
        diff = first_difference(payloads, o_payloads)
        if diff is not None or o_hash != h:
            return self.fail(f"after carrying on, the journal differs from the oracle's at record {diff} ({stage})",
                             "oracle_mismatches")


# ------------------------------------------------------------------ the runs
COUNTS = ["trials", "kills", "kills_aimed_at_the_end", "acked_events", "acked_upgrades", "records_checked",
          *(f"killed_{s}" for s in STAGES), "world_cbor_tmp_left", "reopened_v1", "reopened_v2",
          "retried_upgrades", "retried_after_a_journaled_proposal", "continued_in_v2",
          # each of these must stay 0
          "both_opened", "neither_opened", "wrong_era", "refusal_changed_files", "lost_acknowledged",
          "failed_reopens", "fsck_damaged_after_crash", "oracle_mismatches", "replay_mismatches",
          "migration_mismatches", "child_errors"]


class KillClock:
    """When to kill a child of one variant, in seconds after it said the upgrade begins (``A``).

    ``lead`` and ``upgrade`` are measured on unkilled children (the longer of
    two runs). ``end`` tracks the delay at which half the kills find the
    apply complete (``world.cbor`` written): every kill aimed around it moves
    it 5 ms down when the apply was complete, 5 ms up when not, so the aimed
    kills gather about the last writes of an apply — the boundary snapshot's
    record and ``world.cbor`` — which take a few milliseconds of it.
    """

    STEP = 0.005

    def __init__(self, lead: float, upgrade: float) -> None:
        self.lead, self.upgrade = lead, upgrade
        self.end = 0.8 * upgrade

    def learn(self, completed: bool) -> None:
        self.end = max(0.0, self.end + (-self.STEP if completed else self.STEP))

    @classmethod
    def measure(cls, tmp: Path, template: Path, variant: str) -> "KillClock":
        lead = upgrade = 0.0
        for run in range(2):
            path = tmp / f"{variant}{run}"
            shutil.copytree(template, path)
            cfg = {"path": str(path), "seed": run, "variant": variant, "workers": 0, "accounts": ACCOUNTS,
                   "batches": 4, "snapshot_every": 0, "segment_bytes": 65_536}
            t0 = time.monotonic()
            child = Child(cfg, tmp / "child.err", CHILD)
            try:
                if not child.wait_line("A", 120):
                    raise AssertionError(f"the measuring child never began the upgrade: {child.stderr()}")
                t1 = time.monotonic()
                if not child.wait_line("U", 120):
                    raise AssertionError(f"the measuring child never finished the upgrade: {child.stderr()}")
                t2 = time.monotonic()
            finally:
                child.kill()
            lead, upgrade = max(lead, t1 - t0), max(upgrade, t2 - t1)
        return cls(lead, upgrade)


def run_upgrade_crash_trials(tmp: Path, trials: int, base_seed: int) -> tuple[dict[str, Any], Failures]:
    failures = Failures()
    counts: dict[str, Any] = dict.fromkeys(COUNTS, 0)
    t0 = time.monotonic()
    template = tmp / "template"
    fill(template, ACCOUNTS, extra=ACCOUNTS // 4)
    _p, template_tail = _journal(template, 0)
    template_records = len(template_tail)
    template_steps = max(r.event_id for _i, r in template_tail if isinstance(r, StepCommitted))
    (tmp / "measure").mkdir()
    clocks = {v: KillClock.measure(tmp / "measure", template, v) for v in ("closed", "live")}
    for v, c in clocks.items():
        counts[f"measured_{v}_lead_s"], counts[f"measured_{v}_upgrade_s"] = round(c.lead, 3), round(c.upgrade, 3)
    print(f"upgrade crash trials: seeds {base_seed}..{base_seed + trials - 1}", flush=True)
    for i in range(trials):
        d = tmp / f"t{i}"
        d.mkdir()
        try:
            Trial(d, template, template_records, template_steps, base_seed + i, failures, counts).run(clocks)
        except Exception as exc:  # a check that raised is a failure of this trial, not of the whole run
            failures.add(f"seed {base_seed + i}: {type(exc).__name__}: {exc}")
            counts["failed_reopens"] += 1
        counts["trials"] += 1
        shutil.rmtree(d, ignore_errors=True)
    for v, c in clocks.items():
        counts[f"learnt_{v}_end_s"] = round(c.end, 3)
    counts["failures"] = len(failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, failures


def test_upgrade_crash_short(tmp_path: Path) -> None:
    counts, failures = run_upgrade_crash_trials(tmp_path, scaled(SHORT_TRIALS), 2000)
    record("short", "crash_upgrade", **counts)
    assert not failures, failures.message()
    assert counts["reopened_v1"] + counts["reopened_v2"] == counts["trials"]


@pytest.mark.long
def test_upgrade_crash_long(tmp_path: Path) -> None:
    counts, failures = run_upgrade_crash_trials(tmp_path, scaled(LONG_TRIALS), 200_000)
    record("long", "crash_upgrade", **counts)
    assert not failures, failures.message()
    assert counts["reopened_v1"] + counts["reopened_v2"] == counts["trials"]
