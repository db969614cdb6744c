"""Shadow runs: rehearse a proposed manifest on a world's recorded history, writing nothing.

:func:`shadow_run` loads the world's newest snapshot at or before the start
of the window into a fresh kernel built with the *proposed* manifest, then
feeds it the journal's inputs — the admitted external events and the
recorded receipts — at the positions the journal recorded them, and runs
the steps with the inline executor's logic, one ticket for each ticket of
the journal. Every step's records are compared with the journal's, byte for
byte; a step whose state hash, emitted events, effect intents, policy
decisions or outcome differ is reported side by side (journal against
shadow, values decoded, with the reducer and the key), with counts and the
effect costs each capability would be charged.

The shadow continues from its own states: once a step differs, later steps
run on the shadow's states and the shadow's emitted events (routed, gated
and budgeted under the proposed manifest), so the report predicts the world
the new code would have made from the same inputs. Each differing step says
whether it is *carried* (its cell's state or its input event already
differed) or new. Receipts are delivered to the intents they settle when
the shadow queued the same intent; a receipt for an intent the shadow did
not make is reported and not delivered. See docs/upgrades.md ("Shadow runs").

Nothing in the world's directory is written or locked: the world may be open
in another process meanwhile (the shadow reads up to the last whole step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from aos import canonical
from aos._core.decoder import event_admitted_fields
from aos._core.encoder import record_kind
from aos._core.inline_loop import InlineLoop
from aos.committer import Committer
from aos.errors import AosError, ReceiptError, SnapshotCorruptError
from aos.journal import JournalReader, Position
from aos.kernel import Kernel
from aos.lane_world import lane_of_meta
from aos.manifest import Manifest
from aos.outbox import settled_keep_of
from aos.receipt import Receipt
from aos.records import (
    EffectQueued,
    EventAdmitted,
    InvariantViolated,
    PolicyDecision,
    ReceiptAppended,
    Record,
    StepCommitted,
    StepFailed,
    StepScheduled,
    decode_record,
    encode_record,
)
from aos.snapshot import check_snapshot_file, list_snapshots, load_snapshot

__all__ = ["shadow_run", "ShadowReport", "StepDiff", "StepSide", "CapabilityCost", "RefusedInput",
           "ShadowError"]

# The records one step writes after its StepScheduled (docs/storage.md).
_STEP_TAIL = frozenset(("StepCommitted", "StepFailed", "InvariantViolated", "PolicyDecision", "EffectQueued"))
_OUTCOMES = {StepCommitted: "committed", StepFailed: "failed", InvariantViolated: "invariant violated"}


class ShadowError(AosError, ValueError):
    """A shadow run cannot start: a bad window, or a proposed manifest the recorded state cannot load into."""


# ------------------------------------------------------------------ the report
@dataclass(frozen=True, slots=True)
class StepSide:
    """One side (journal or shadow) of a step.

    ``outcome`` is ``"committed"``, ``"failed"`` or ``"invariant violated"``.
    ``state`` is the cell's new state decoded (the shadow side only: the
    journal records state hashes, not states; None also for a deleted cell).
    ``emits`` are ``(schema, value)``; ``intents`` are ``(kind, params, cap,
    cost, allowed)``; ``error`` is ``"Type: message"`` of a failed step or
    ``"invariant NAME: message"``.
    """

    reducer: str
    key: Any
    outcome: str
    state_hash: str | None = None
    state: Any = None
    emits: tuple[tuple[str, Any], ...] = ()
    intents: tuple[tuple[str, Any, str | None, int, bool | None], ...] = ()
    error: str | None = None
    input: int | None = None  # the seq of the input event (numbered by each side)


@dataclass(frozen=True, slots=True)
class StepDiff:
    """A step whose records differ between the journal and the shadow.

    ``what`` names what differs, from ``"schedule"`` (the shadow's ticket went
    to another cell), ``"outcome"``, ``"state"``, ``"emits"``, ``"intents"``,
    ``"policy"`` and ``"error"``. ``carried``: the cell's state or the input
    event already differed before this step (a consequence of an earlier
    difference). ``shadow`` is None when the shadow had no step to run.
    """

    event_id: int
    reducer: str
    key: Any
    what: tuple[str, ...]
    carried: bool
    journal: StepSide
    shadow: StepSide | None


@dataclass(slots=True)
class CapabilityCost:
    """Effects queued under one capability, and the cost they reserved: recorded against predicted."""

    journal_effects: int = 0
    journal_cost: int = 0
    shadow_effects: int = 0
    shadow_cost: int = 0


@dataclass(frozen=True, slots=True)
class RefusedInput:
    """A recorded input the shadow could not take: an event the proposed manifest refuses, or a receipt."""

    seq: int  # the journal's seq of the input
    what: str  # "event SCHEMA" or "receipt for intent HASH"
    reason: str


@dataclass(slots=True)
class ShadowReport:
    """What :func:`shadow_run` found. ``ok``: the proposed manifest reproduces the journal exactly."""

    path: Path
    manifest: str
    world_era: str
    proposed_era: str
    requested: str  # the window asked for, in words
    snapshot: str | None  # the snapshot the run started from (None: the start of the journal)
    first_event_id: int  # the first step compared (last_event_id + 1 when none was)
    last_event_id: int  # the last step compared (first_event_id - 1 when none was)
    compared: int = 0  # steps of the journal compared
    same: int = 0
    differing: int = 0
    failing_only_in_shadow: int = 0
    failing_only_in_journal: int = 0
    diffs: list[StepDiff] = field(default_factory=list)  # the first ``limit`` differing steps
    refused: list[RefusedInput] = field(default_factory=list)
    costs: dict[str, CapabilityCost] = field(default_factory=dict)
    carried: int = 0  # differing steps that are consequences of earlier differences
    first_difference: int | None = None  # the event_id of the first differing step
    schedule_diverged_at: int | None = None  # the first step the shadow ran for another cell or input
    shadow_ready: int = 0  # inputs still waiting in the shadow's mailboxes at the journal's end

    @property
    def ok(self) -> bool:
        return self.differing == 0 and not self.refused

    def summary(self, limit: int = 3) -> str:
        """A few lines for people: counts, then the first ``limit`` differences."""
        head = (f"shadow of {self.manifest} (era {self.proposed_era[:12]}…) on {self.path}, event_ids "
                f"{self.first_event_id}..{self.last_event_id}: {self.compared} steps compared, {self.same} same, "
                f"{self.differing} differing ({self.carried} carried; {self.failing_only_in_shadow} failing only "
                f"in the shadow, {self.failing_only_in_journal} only in the journal)")
        lines = [head]
        if self.schedule_diverged_at is not None:
            lines.append(f"  the schedule diverges at event_id {self.schedule_diverged_at}: later steps run in another "
                         "order (their event_ids, random draws and default idempotency keys differ)")
        for d in self.diffs[:limit]:
            lines.append("  " + describe_diff(d))
        if self.differing > min(limit, len(self.diffs)):
            lines.append(f"  … and {self.differing - min(limit, len(self.diffs))} more differing steps")
        for r in self.refused[:limit]:
            lines.append(f"  input {r.seq} ({r.what}) refused by the shadow: {r.reason}")
        if len(self.refused) > limit:
            lines.append(f"  … and {len(self.refused) - limit} more refused inputs")
        return "\n".join(lines)


def describe_diff(d: StepDiff) -> str:
    """One line: event_id, cell, what differs, the two sides' values of it."""
    from aos.render import show

    j, s = d.journal, d.shadow
    cell = d.reducer if d.key is None else f"{d.reducer} {show(d.key)}"
    parts = [f"event_id {d.event_id} {cell}: {', '.join(d.what)} differ{'s' if len(d.what) == 1 else ''}"
             + (" (carried)" if d.carried else "")]
    if s is None:
        parts.append("the shadow had no step to run")
        return "; ".join(parts)
    for w in d.what:
        if w == "schedule":
            parts.append(f"shadow ran {s.reducer} {show(s.key)}")
        elif w in ("outcome", "error"):
            parts.append(f"journal {j.outcome}{': ' + j.error if j.error else ''}, "
                         f"shadow {s.outcome}{': ' + s.error if s.error else ''}")
        elif w == "state":
            parts.append(f"state hash {_short(j.state_hash)} -> {_short(s.state_hash)}, shadow state {show(s.state)}")
        elif w == "emits":
            parts.append(f"emits {_show_emits(j.emits)} -> {_show_emits(s.emits)}")
        elif w in ("intents", "policy"):
            parts.append(f"intents {_show_intents(j.intents)} -> {_show_intents(s.intents)}")
    return "; ".join(parts)


def _short(h: str | None) -> str:
    return "none" if h is None else h[:12] + "…"


def _show_emits(emits: tuple[tuple[str, Any], ...]) -> str:
    from aos.render import show

    return "[" + ", ".join(f"{schema} {show(value)}" for schema, value in emits) + "]"


def _show_intents(intents: tuple[tuple[str, Any, str | None, int, bool | None], ...]) -> str:
    from aos.render import show

    return "[" + ", ".join(f"{kind} {show(params)} cap {cap} cost {cost}"
                           + ("" if allowed is None else " allowed" if allowed else " denied")
                           for kind, params, cap, cost, allowed in intents) + "]"


# ------------------------------------------------------------------ the run
class _Collector:
    """The shadow kernel's sink: keeps what one step (or one admission) produced, writes nothing."""

    __slots__ = ("out", "queued", "collect_into")

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.queued: list[EffectQueued] = []
        self.collect_into = self.out  # the inline loop appends the payloads it makes here itself (no call)

    def append(self, record: Record) -> int:
        if type(record) is EffectQueued:
            self.queued.append(record)
        self.out.append(encode_record(record))
        return 0

    def append_payload(self, payload: bytes) -> int:
        self.out.append(payload)
        return 0

    def commit_point(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Snap:
    """What the choice of a starting snapshot needs of one (its states are not kept)."""

    path: Path
    event_id: int  # the last ticket it includes
    era: Any
    position: Any  # the journal position, as written
    reducers: frozenset[str]  # of its cells
    capabilities: frozenset[str]  # of its ledger


def _snapshots(path: Path) -> list[_Snap]:
    """The world's snapshots, oldest first."""
    out = []
    for p in list_snapshots(path / "snapshots"):
        doc = canonical.decode_trusted(check_snapshot_file(p))
        try:
            if type(doc["event_id"]) is not int:
                raise TypeError("event_id is not an int")
            out.append(_Snap(p, doc["event_id"], doc["era"], doc["position"],
                             frozenset(row[0] for row in doc["cells"]), frozenset(row[0] for row in doc["ledger"])))
        except (KeyError, TypeError, IndexError) as exc:
            raise SnapshotCorruptError(str(p), f"malformed snapshot: {type(exc).__name__}: {exc}") from None
        del doc
    return out


def _last_event_id(path: Path, snaps: list[_Snap]) -> int:
    """The journal's last ticket: the newest snapshot's, plus the steps journaled after it."""
    start = snaps[-1] if snaps else None
    position = Position.from_wire(start.position) if start is not None else None
    last = start.event_id if start is not None else 0
    for _name, _first, frames in JournalReader(path / "journal").batches(position):
        for _at, payload, _chain in frames:
            if record_kind(payload) == "StepScheduled":
                last += 1
    return last


def _choose_start(path: Path, since: int | None, last: int | None) -> tuple[_Snap | None, str]:
    """The snapshot to start from (None: the journal's beginning) and the window asked for, in words."""
    if since is not None and last is not None:
        raise ShadowError("give since=EVENT_ID or last=N, not both")
    for name, v in (("since", since), ("last", last)):
        if v is not None and (type(v) is not int or v < 1):
            raise ShadowError(f"{name} must be an int >= 1, got {v!r}")
    snaps = _snapshots(path)
    if since is None and last is None:
        if not snaps:
            return None, "recent history"
        end = _last_event_id(path, snaps)
        # the newest snapshot with steps after it (a world closed normally has one at its very end)
        before = [s for s in snaps if s.event_id < end]
        return (before[-1] if before else None), "recent history"
    end = _last_event_id(path, snaps)
    if last is not None:
        first, requested = max(1, end - last + 1), f"the last {last} steps"
    else:
        if since > end:  # type: ignore[operator]
            raise ShadowError(f"the journal of {path} ends at event_id {end}, before since={since}")
        first, requested = since, f"since event_id {since}"  # type: ignore[assignment]
    before = [s for s in snaps if s.event_id < first]
    return (before[-1] if before else None), requested


def _check_loadable(snap: _Snap, manifest: Manifest, world_era: bytes) -> None:
    if snap.era != world_era:
        raise ShadowError(f"snapshot {snap.path.name} was written in another era than the world's current one: "
                          "a shadow window that crosses an era boundary is not supported yet (start later)")
    missing = sorted(r for r in snap.reducers if r not in manifest.reducers)
    if missing:
        raise ShadowError(f"the proposed manifest {manifest.name} has no reducer {', '.join(missing)}, whose cells "
                          f"the world holds in snapshot {snap.path.name}: a shadow run cannot load them")
    caps = sorted(c for c in snap.capabilities if c not in manifest.capabilities)
    if caps:
        raise ShadowError(f"the proposed manifest {manifest.name} has no capability {', '.join(caps)}, whose budget "
                          f"the world records in snapshot {snap.path.name}: a shadow run cannot load it")


def _payloads(batches: Iterator[tuple[str, int, list[tuple[int, bytes, bytes]]]]) -> Iterator[bytes]:
    """The payload of every frame, in order (iterated in C: this runs once per record)."""
    return map(itemgetter(1), chain.from_iterable(frames for _name, _first, frames in batches))


def shadow_run(path: str | os.PathLike[str], manifest: Manifest, *, since: int | None = None,
               last: int | None = None, limit: int | None = None,
               progress: Callable[[int], None] | None = None, earlier: Sequence[Manifest] = ()) -> ShadowReport:
    """Rehearse ``manifest`` on the recorded history of the world at ``path``; write nothing.

    The window: ``since=EVENT_ID`` or ``last=N`` steps; the run starts from
    the newest snapshot at or before the window's start (the steps from there
    are run and compared too), or from the journal's beginning where there is
    none. By default it starts from the newest snapshot that has steps after
    it. ``limit`` keeps the details of only the first ``limit`` differing
    steps (all are counted). ``progress(records)`` is called as journal
    records are consumed. ``earlier``: the manifests of earlier eras whose
    code pinned cells run (they keep running it in the rehearsal, as they
    would after an apply that neither migrates nor adopts them). See
    :class:`ShadowReport` and docs/upgrades.md.
    """
    if not isinstance(manifest, Manifest):
        raise TypeError(f"manifest must be an aos.Manifest, got {type(manifest).__name__}")
    if any(not isinstance(m, Manifest) for m in earlier):
        raise TypeError("earlier must hold aos.Manifest objects")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ShadowError(f"limit must be an int >= 0, got {limit!r}")
    p = Path(path)
    from aos.world import load_meta

    meta = load_meta(p)  # world.cbor, checked without a manifest: the proposed one differs by design
    world_era = canonical.hash_value(meta["manifest"])
    snap, requested = _choose_start(p, since, last)
    sink = _Collector()
    kernel = Kernel(manifest, sink, window=meta["window"], aging=meta["aging"],
                    earlier={m.era: m for m in earlier if m.era != manifest.era}, lane=lane_of_meta(meta),
                    settled_keep=settled_keep_of(meta))
    start: Position | None = None
    if snap is not None:
        _check_loadable(snap, manifest, world_era)
        start = load_snapshot(snap.path, kernel, world_era)  # checked against the world's era, not the proposed
    first_event_id = kernel.last_event_id + 1
    report = ShadowReport(p, manifest.name, world_era.hex(), manifest.era.hex(), requested,
                          None if snap is None else snap.path.name, first_event_id, first_event_id - 1)
    _Run(kernel, sink, report, limit, progress).run(_payloads(JournalReader(p / "journal").batches(start)))
    return report


class _Run:
    """The shadow's loop over the journal (one instance per run)."""

    def __init__(self, kernel: Kernel, sink: _Collector, report: ShadowReport, limit: int | None,
                 progress: Callable[[int], None] | None) -> None:
        self.kernel = kernel
        self.sink = sink
        self.report = report
        self.limit = limit
        self.progress = progress
        self.diverged_cells: set[int] = set()  # cells whose shadow state differs from the journal's
        self.diverged_inputs: set[int] = set()  # shadow seqs of events that differ from the journal's
        self.shifted = False  # the two sides number their inputs differently from here on
        self.loop: InlineLoop | None = None  # the C step loop (set by run)

    def run(self, payloads: Iterator[bytes]) -> None:
        k, sink, report = self.kernel, self.sink, self.report
        committer = Committer(k)
        # each step in the inline executor's C loop (the reference path where it hands over), one at a time
        self.loop = InlineLoop(k, committer, [0] * 40)
        step = self.loop.step
        admit_in_c = self.loop.admit  # the common admission, in C (else _admit_event says why not)
        ticket_of = k.ticket
        out = sink.out
        queued = sink.queued
        progress = self.progress
        costs = report.costs
        diverged_cells = self.diverged_cells
        records = 0
        compared = same = 0
        nxt = next(payloads, None)
        kind = record_kind(nxt) if nxt is not None else None
        while nxt is not None:
            if kind == "StepScheduled":
                group = [nxt]
                nxt = next(payloads, None)
                kind = record_kind(nxt) if nxt is not None else None
                while kind in _STEP_TAIL:
                    group.append(nxt)  # type: ignore[arg-type]
                    nxt = next(payloads, None)
                    kind = record_kind(nxt) if nxt is not None else None
                records += len(group)
                if len(group) == 1:
                    if nxt is None:  # the journal ends inside this step (a writer is appending it)
                        break
                    raise ShadowError(f"the journal schedules step {_event_id(group)} with no outcome after it")
                compared += 1
                del out[:]
                seq0 = k.next_seq
                took = step()
                if took is None:
                    self._journal_only(group)
                else:
                    if out == group:
                        same += 1
                        if diverged_cells:
                            diverged_cells.discard(took[1])  # (event_id, cell id, input)
                        if queued:
                            for q in queued:
                                c = costs.get(q.cap)
                                if c is None:
                                    c = costs[q.cap] = CapabilityCost()
                                c.journal_effects += 1
                                c.shadow_effects += 1
                                c.journal_cost += q.cost
                                c.shadow_cost += q.cost
                            del queued[:]
                            k.new_effects.clear()  # a live world hands these to its adapters
                    elif nxt is None and len(group) < len(out) and out[:len(group)] == group:
                        compared -= 1  # the journal ends inside this step (a writer is appending it)
                        records -= len(group)
                        break
                    else:
                        same += self._compare(group, list(out), ticket_of(*took), seq0)
                        k.new_effects.clear()
                if progress is not None:
                    progress(records)
                continue
            records += 1
            if kind == "EventAdmitted":
                if not admit_in_c(nxt):
                    self._admit_event(nxt)
            elif kind == "ReceiptAppended":
                self._admit_receipt(nxt)
            # SnapshotCreated and control-plane records are not inputs: the shadow passes them by.
            del out[:]
            nxt = next(payloads, None)
            kind = record_kind(nxt) if nxt is not None else None
            if progress is not None:
                progress(records)
        report.compared, report.same = compared, same
        report.differing = compared - same
        report.last_event_id = report.first_event_id + compared - 1
        report.shadow_ready = k.sequencer.queued

    # ------------------------------------------------------------ inputs
    def _admit_event(self, payload: bytes) -> None:
        """An event the inline loop did not admit in C (``InlineLoop.admit``, tried first by :meth:`run`)."""
        k = self.kernel
        fields = event_admitted_fields(payload)
        if fields is None:
            rec = decode_record(payload, "journaled EventAdmitted")
            assert isinstance(rec, EventAdmitted)
            fields = (rec.seq, rec.schema, rec.value, rec.visible_at)
        seq, schema, value, visible_at = fields
        if seq != k.next_seq:
            self.shifted = True
        try:
            adm = k.admission.check_encoded(schema, value, origin=f"journaled event {seq}")
        except AosError as exc:
            self.report.refused.append(RefusedInput(seq, f"event {schema}", str(exc)))
            return
        # held as long as the world held it (but not past tickets the shadow already assigned)
        k.admit(adm, None if visible_at is None else max(visible_at, k.sequencer.next_ticket))

    def _admit_receipt(self, payload: bytes) -> None:
        k = self.kernel
        rec = decode_record(payload, "journaled ReceiptAppended")
        assert isinstance(rec, ReceiptAppended)
        what = f"receipt for intent {rec.intent_hash.hex()}"
        if rec.seq != k.next_seq:
            self.shifted = True
        if rec.intent_hash not in k.outbox.queued:
            self.report.refused.append(RefusedInput(rec.seq, what, "the shadow did not queue this intent"))
            return
        try:
            # authenticated when the world admitted it; the journal's chain protects it since
            k.admit_receipt(Receipt(rec.intent_hash, rec.status, rec.payload, rec.cost, b""), authenticate=False)
        except ReceiptError as exc:
            self.report.refused.append(RefusedInput(rec.seq, what, str(exc)))

    # ------------------------------------------------------------- steps
    def _journal_only(self, group: list[bytes]) -> None:
        j = _side(group, None)
        self._cost(group, journal=True)
        cid = self.kernel.cells.find(j.reducer, j.key) if j.reducer in self.kernel.manifest.reducers else None
        if cid is not None:
            self.diverged_cells.add(cid)
        self._diverged_schedule(_event_id(group))
        self.report.carried += 1
        self._record(StepDiff(_event_id(group), j.reducer, j.key, ("schedule",), True, j, None), j, None)

    def _diverged_schedule(self, event_id: int) -> None:
        self.shifted = True
        if self.report.schedule_diverged_at is None:
            self.report.schedule_diverged_at = event_id

    def _compare(self, group: list[bytes], produced: list[bytes], ticket: Any, seq0: int) -> int:
        """Compare one step whose records differ in bytes; 1 when it is the same step all the same."""
        k = self.kernel
        del self.sink.queued[:]
        j = _side(group, None)
        state = k.cells.state(ticket.cid)
        s = _side(produced, None if state is None else canonical.decode_trusted(state))
        what = []
        if (j.reducer, j.key) != (s.reducer, s.key) or (j.input != s.input and not self.shifted):
            what.append("schedule")
        if j.outcome != s.outcome:
            what.append("outcome")
        elif j.error != s.error:
            what.append("error")
        if j.state_hash != s.state_hash and j.outcome == s.outcome == "committed":
            what.append("state")
        if j.emits != s.emits:
            what.append("emits")
        if [i[:4] for i in j.intents] != [i[:4] for i in s.intents]:
            what.append("intents")
        elif [i[4] for i in j.intents] != [i[4] for i in s.intents]:
            what.append("policy")
        self._cost(group, journal=True)
        self._cost(produced, journal=False)
        if not what:  # the same step; only the numbering of its input differs (events shifted earlier)
            self.diverged_cells.discard(ticket.cid)
            return 1
        carried = (ticket.cid in self.diverged_cells or ticket.input in self.diverged_inputs
                   or self.report.schedule_diverged_at is not None)
        if "schedule" in what:
            self._diverged_schedule(_event_id(group))
        if len(j.emits) != len(s.emits) or _denied(j) != _denied(s):
            self.shifted = True  # the events made after this step are numbered differently on each side
        if carried:
            self.report.carried += 1
        if "schedule" in what or j.state_hash != s.state_hash or j.outcome != s.outcome:
            self.diverged_cells.add(ticket.cid)
            if "schedule" in what and j.reducer in k.manifest.reducers:
                cid = k.cells.find(j.reducer, j.key)
                if cid is not None:
                    self.diverged_cells.add(cid)
        else:
            self.diverged_cells.discard(ticket.cid)
        if "emits" in what or "intents" in what or "policy" in what or "outcome" in what:
            self.diverged_inputs.update(range(seq0, k.next_seq))
        if j.outcome != s.outcome:
            if s.outcome == "failed":
                self.report.failing_only_in_shadow += 1
            elif j.outcome == "failed":
                self.report.failing_only_in_journal += 1
        self._record(StepDiff(_event_id(group), j.reducer, j.key, tuple(what), carried, j, s), j, s)
        return 0

    def _record(self, diff: StepDiff, j: StepSide, s: StepSide | None) -> None:
        if self.report.first_difference is None:
            self.report.first_difference = diff.event_id
        if self.limit is None or len(self.report.diffs) < self.limit:
            self.report.diffs.append(diff)

    def _cost(self, payloads: list[bytes], journal: bool) -> None:
        costs = self.report.costs
        for payload in payloads[2:]:
            if record_kind(payload) != "EffectQueued":
                continue
            q = decode_record(payload, "EffectQueued")
            assert isinstance(q, EffectQueued)
            c = costs.get(q.cap)
            if c is None:
                c = costs[q.cap] = CapabilityCost()
            if journal:
                c.journal_effects += 1
                c.journal_cost += q.cost
            else:
                c.shadow_effects += 1
                c.shadow_cost += q.cost


def _denied(side: StepSide) -> int:
    return sum(1 for i in side.intents if i[4] is False)


def _event_id(group: list[bytes]) -> int:
    rec = decode_record(group[0], "StepScheduled")
    return rec.event_id  # type: ignore[attr-defined,no-any-return]


def _side(payloads: list[bytes], state: Any) -> StepSide:
    """A step's records decoded for the report."""
    scheduled = decode_record(payloads[0], "StepScheduled")
    assert isinstance(scheduled, StepScheduled)
    outcome = decode_record(payloads[1], "step outcome")
    decisions: dict[bytes, bool] = {}
    for payload in payloads[2:]:
        rec = decode_record(payload, "step record")
        if isinstance(rec, PolicyDecision):
            decisions[rec.intent_hash] = rec.allowed
    kind = _OUTCOMES.get(type(outcome), outcome.KIND)
    if isinstance(outcome, StepCommitted):
        emits = tuple((e.schema, canonical.decode_trusted(e.value)) for e in outcome.emits)
        intents = tuple((i.kind, canonical.decode_trusted(i.params), i.cap, i.cost, decisions.get(i.intent_hash))
                        for i in outcome.effects)
        sh = None if outcome.state_hash is None else outcome.state_hash.hex()
        return StepSide(scheduled.reducer, scheduled.key, kind, sh, state, emits, intents, input=scheduled.input)
    if isinstance(outcome, StepFailed):
        return StepSide(scheduled.reducer, scheduled.key, kind, error=f"{outcome.error}: {outcome.message}",
                        input=scheduled.input)
    if isinstance(outcome, InvariantViolated):
        return StepSide(scheduled.reducer, scheduled.key, kind,
                        error=f"invariant {outcome.invariant}: {outcome.message}", input=scheduled.input)
    return StepSide(scheduled.reducer, scheduled.key, kind, input=scheduled.input)
