"""The in-memory world: cells, the sequencer, admitted inputs, and a sink.

The kernel is shared by a live :class:`~aos.world.World` (whose sink is the
journal) and by replay (whose sink compares what the kernel produces with
what the journal recorded). Its state is exactly what a snapshot holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol

from aos import canonical
from aos._core import Sequencer
from aos._core.decoder import event_admitted_fields
from aos.admission import Admission, Admitted
from aos.capability import Ledger
from aos.cells import CellTable
from aos.errors import (
    AosError,
    DuplicateReceiptError,
    InvariantViolation,
    NonCanonicalError,
    OriginOrderError,
    ReceiptAuthError,
    ReceiptError,
    ReceiptOverBudgetError,
    ReducerError,
    ReplayDivergenceError,
    UnencodableValueError,
    UnknownIntentError,
)
from aos.idempotency import SubmitKeys
from aos.lane import Lane
from aos.lane_world import Grants, Origins, Outbound
from aos.manifest import RECEIPT_SCHEMA, Manifest
from aos.outbox import Outbox, QueuedEffect
from aos.receipt import Receipt, ReceiptSigner
from aos.records import BudgetGranted, EventAdmitted, ReceiptAppended, Record, admitted_payload, decode_record
from aos.step import StepResult, Ticket, compute, finish_native, prepare_native

if TYPE_CHECKING:
    from aos._core.native import NativeCall

__all__ = ["Kernel", "Sink", "Inbox", "DEFAULT_WINDOW", "DEFAULT_AGING"]

DEFAULT_WINDOW = 64
DEFAULT_AGING = 256


class Sink(Protocol):
    """Where the kernel's records go: the journal (a live world) or a comparison with it (replay)."""

    def append(self, record: Record) -> int: ...
    def append_payload(self, payload: bytes) -> int: ...  # a record already encoded (the step path)
    def commit_point(self) -> bool: ...


class Inbox:
    """Admitted events not yet consumed by every cell they were routed to."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        # seq -> [schema, value bytes, deliveries left]
        self.events: dict[int, list[Any]] = {}

    def put(self, seq: int, schema: str, value: bytes, deliveries: int) -> None:
        if deliveries:
            self.events[seq] = [schema, value, deliveries]

    def get(self, seq: int) -> tuple[str, bytes]:
        e = self.events[seq]
        return e[0], e[1]

    def consumed(self, seq: int) -> None:
        e = self.events[seq]
        e[2] -= 1
        if e[2] == 0:
            del self.events[seq]


class Kernel:
    """Cells + sequencer + inbox; admission and ticketing."""

    def __init__(self, manifest: Manifest, sink: Sink, window: int = DEFAULT_WINDOW,
                 signer: ReceiptSigner | None = None, aging: int = DEFAULT_AGING,
                 earlier: Mapping[bytes, Manifest] | None = None, lane: Lane | None = None,
                 settled_keep: int | None = None) -> None:
        self.manifest = manifest
        # the lane of a fleet this world is (docs/fleet.md, "The lane world"); every record carries its id
        self.lane = Lane() if lane is None else lane
        self.lane_id = self.lane.lane_id
        self.admission = Admission(manifest, self.lane)
        self.sink = sink
        self.signer = signer
        # the manifests of earlier eras, by era: the code of cells pinned to them (docs/upgrades.md)
        self.earlier: dict[bytes, Manifest] = dict(earlier or {})
        self.cells = CellTable()
        self.cells.current = manifest
        self.sequencer = Sequencer(window=window, aging=aging)
        self.sequencer.cells = self.cells  # tickets and waits counted per reducer (World.metrics)
        self.inbox = Inbox()
        self.ledger = Ledger(manifest)
        if self.lane.lanes > 1:  # the manifest's budget is the fleet's: a lane spends what it is granted
            self.ledger.budgets = dict.fromkeys(self.ledger.budgets, 0)
        self.origins = Origins()  # the last message admitted from each source (World.accept)
        self.outbound = Outbound()  # the messages committed steps sent to other lanes
        self.grants = Grants()  # budget grants (World.grant)
        self.outbox = Outbox(settled_keep)  # the last settled_keep settled intents (None: all; aos.outbox)
        self.submit_keys = SubmitKeys()  # idempotency keys of submitted events (aos.idempotency)
        self.next_seq = 0
        self.commits = 0
        self.failures = 0
        self.failures_by_reducer: dict[str, int] = {}  # failed steps per reducer name (World.metrics)
        self.failures_by_class = [0, 0, 0, 0]  # and per priority class
        self.receipts_by_status: dict[str, int] = {}  # receipts admitted, per status
        self.validations = 0
        self.reexecutions = 0
        self.new_effects: list[QueuedEffect] = []  # queued since the executor last took them
        self.violations: list[InvariantViolation] = []  # not yet surfaced to the caller
        self.strict = False  # keep failed steps for the caller (World.open(strict=True))
        self.failed_steps: list[ReducerError] = []  # with strict: not yet surfaced to the caller
        self.retired: dict[tuple[str, Any], bytes] = {}  # cells of removed reducers, read-only (eras)

    @property
    def window(self) -> int:
        return self.sequencer.window

    @property
    def last_event_id(self) -> int:
        """The last ticket assigned (0 before the first)."""
        return self.sequencer.next_ticket - 1

    # ---------------------------------------------------------- admission
    def admit(self, adm: Admitted, visible_at: int | None = None, origin: tuple[int, int] | None = None) -> int:
        """Journal and deliver an external event, visible from ticket ``visible_at``.

        ``visible_at`` defaults to the next ticket: right for an admission
        between commits with nothing in flight (inline), and for one made
        while tickets are in flight too, since the next ticket to assign is
        the first one after them (docs/scheduling.md, "Admissions while steps
        are in flight"). It is journaled with the event, so a replay holds
        the event just as long. So is its idempotency key, if it has one
        (``adm.idempotency_key``), which the index of keys then maps to ``seq``.
        """
        seq = self.next_seq
        sequencer = self.sequencer
        if visible_at is None:
            visible_at = sequencer.next_ticket
        key = adm.idempotency_key
        self.sink.append_payload(admitted_payload(seq, adm.schema, adm.value, self.lane_id, visible_at, origin, key))
        if key is not None:
            self.submit_keys.record(key, seq)
        self.next_seq = seq + 1
        self.inbox.put(seq, adm.schema, adm.value, len(adm.routes))
        cells, deliver_at = self.cells, sequencer.deliver_at
        for spec, key in adm.routes:
            deliver_at(visible_at, cells.id_of(spec, key), seq, spec.priority)
        return seq

    def admit_recorded(self, seq: int, schema: str, value: bytes, visible_at: int | None = None,
                       idempotency_key: str | None = None) -> None:
        """Re-admit an external event read from the journal (replay).

        The sink then compares the re-made ``EventAdmitted`` with the journal's
        bytes, which proves the record canonical too. ``visible_at`` None (a
        record from before the field): visible to the next ticket, delivered
        at once as it was then.
        """
        if seq != self.next_seq:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"EventAdmitted has seq {seq}, replay expects {self.next_seq}")
        adm = self.admission.check_encoded(schema, value, origin=f"journaled event {seq}")
        adm.idempotency_key = idempotency_key
        if visible_at is None:
            if idempotency_key is not None:  # (a record from before visible_at cannot have a key)
                raise ReplayDivergenceError(None, None, None, None, None,
                                            f"EventAdmitted {seq} has an idempotency key but no visible_at")
            self.sink.append_payload(admitted_payload(seq, adm.schema, adm.value, self.lane_id))
            self.next_seq = seq + 1
            self.inbox.put(seq, adm.schema, adm.value, len(adm.routes))
            cells, deliver = self.cells, self.sequencer.deliver
            for spec, key in adm.routes:
                deliver(cells.id_of(spec, key), seq, spec.priority)
            return
        # Written while tickets up to visible_at - 1 were assigned and this replay's next ticket
        # committed: at most a window of tickets in flight (docs/scheduling.md).
        nxt = self.sequencer.next_ticket
        if not nxt <= visible_at <= nxt + self.window:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"EventAdmitted {seq} is visible at ticket {visible_at}, but the replay "
                                        f"admits it before ticket {nxt}, with at most {self.window} tickets in "
                                        f"flight (visible at {nxt} to {nxt + self.window})")
        self.admit(adm, visible_at)

    def admit_journaled(self, payload: bytes) -> bool:
        """Re-admit the ``EventAdmitted`` record ``payload`` read from the journal (replay, fast path).

        Its fields are read in C; the record aos would write for them goes
        through the sink, which compares it with the journal's bytes (so the
        record is proven canonical). Returns False, admitting nothing, when
        the payload is not laid out as aos writes it: the caller then decodes
        it in full (and reports what is wrong).
        """
        fields = event_admitted_fields(payload)
        if fields is None:
            return self._admit_keyed(payload)
        seq, schema, value, visible_at = fields
        self.admit_recorded(seq, schema, value, visible_at)
        return True

    def _admit_keyed(self, payload: bytes) -> bool:
        """:meth:`admit_journaled` for an event submitted with an idempotency key (read in full, in Python)."""
        try:
            rec = decode_record(payload, "journaled EventAdmitted")
        except AosError:
            return False  # the caller decodes it again and says what is wrong
        if type(rec) is not EventAdmitted or rec.idempotency_key is None or rec.origin is not None:
            return False
        self.admit_recorded(rec.seq, rec.schema, rec.value, rec.visible_at, rec.idempotency_key)
        return True

    # ----------------------------------------------------------- origins
    def accept(self, source: int, n: int, adm: Admitted) -> bool:
        """Admit ``adm`` as message ``n`` of ``source`` (``World.accept``): False for a duplicate.

        Raises :class:`OriginOrderError` for a message past the next one (a
        gap), admitting nothing.
        """
        marks = self.origins.marks
        mark = marks.get(source, 0)
        if n <= mark:
            return False
        if n != mark + 1:
            raise OriginOrderError(f"lane {self.lane_id}: message {n} from source {source} arrived, but the last "
                                   f"one admitted from it is {mark}: messages {mark + 1}..{n - 1} are missing")
        self.admit(adm, None, (source, n))
        marks[source] = n
        return True

    def accept_recorded(self, rec: EventAdmitted) -> None:
        """Re-admit an event with an origin read from the journal (replay): the marks follow."""
        assert rec.origin is not None
        source, n = rec.origin
        where = f"EventAdmitted {rec.seq} (origin source {source}, message {n})"
        if rec.seq != self.next_seq:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"{where} has seq {rec.seq}, replay expects {self.next_seq}")
        mark = self.origins.marks.get(source, 0)
        if n != mark + 1:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"{where}: the last message admitted from source {source} is {mark}")
        nxt = self.sequencer.next_ticket
        if rec.visible_at is None or not nxt <= rec.visible_at <= nxt + self.window:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"{where} is visible at ticket {rec.visible_at}, but the replay admits "
                                        f"it before ticket {nxt} (visible at {nxt} to {nxt + self.window})")
        adm = self.admission.check_encoded(rec.schema, rec.value, origin=f"journaled event {rec.seq}")
        self.admit(adm, rec.visible_at, (source, n))
        self.origins.marks[source] = n

    # ------------------------------------------------------------ grants
    def grant(self, cap: str, amount: int, grant: int) -> bool:
        """Journal and apply budget grant ``grant`` of ``amount`` units to ``cap`` (False: an old grant id)."""
        g = self.grants
        if grant <= g.last.get(cap, 0):
            return False
        self.sink.append(BudgetGranted(cap, amount, grant, self.lane_id))
        self._granted(cap, amount, grant)
        return True

    def _granted(self, cap: str, amount: int, grant: int) -> None:
        g = self.grants
        g.last[cap] = grant
        g.granted[cap] = g.granted.get(cap, 0) + amount
        g.wants.pop(cap, None)
        self.ledger.budgets[cap] += amount

    def grant_recorded(self, rec: BudgetGranted) -> None:
        """Re-apply a grant read from the journal (replay)."""
        if rec.cap not in self.ledger.budgets or rec.grant <= self.grants.last.get(rec.cap, 0):
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"BudgetGranted {rec.grant} of capability {rec.cap!r} does not apply: "
                                        "an unknown capability, or not after its last grant")
        self.sink.append(BudgetGranted(rec.cap, rec.amount, rec.grant, self.lane_id))
        self._granted(rec.cap, rec.amount, rec.grant)

    def restore_lane(self, doc: Any) -> None:
        """The lane state a snapshot holds (``{"marks", "outbound", "grants"}``)."""
        self.origins.restore(doc.get("marks", ()))
        self.outbound.restore(doc.get("outbound", ()))
        self.grants.restore(doc.get("grants", ()))
        for cap, amount in self.grants.granted.items():
            self.ledger.budgets[cap] += amount

    def export_lane(self) -> dict[str, Any] | None:
        """What a snapshot holds of the lane state (None when there is none: a world without lanes)."""
        doc: dict[str, Any] = {}
        if self.origins.marks:
            doc["marks"] = self.origins.export()
        if self.outbound.produced:
            doc["outbound"] = self.outbound.export()
        if self.grants.last:
            doc["grants"] = self.grants.export()
        return doc or None

    # ----------------------------------------------------------- receipts
    def check_receipt(self, r: Receipt, authenticate: bool = True) -> QueuedEffect:
        """Validate a receipt without changing anything; return the effect it settles."""
        if authenticate:
            if self.signer is None:
                raise ReceiptAuthError("this kernel has no world secret to authenticate receipts with")
            self.signer.verify(r)
        if r.intent_hash in self.outbox.settled:
            raise DuplicateReceiptError(f"intent {r.intent_hash.hex()} is already settled")
        effect = self.outbox.queued.get(r.intent_hash)
        if effect is None:
            forgotten = self.outbox.forgotten
            raise UnknownIntentError(
                f"no queued effect has intent hash {r.intent_hash.hex()}" + (
                    f" (or it was settled before the last {self.outbox.keep} settled intents this world "
                    f"remembers, {forgotten} older ones forgotten: refused all the same)" if forgotten else ""))
        if not self.ledger.can_settle(effect.cap, effect.cost, r.cost):
            raise ReceiptOverBudgetError(
                f"receipt for {effect.kind} intent {r.intent_hash.hex()} costs {r.cost}; {effect.cost} was "
                f"reserved and capability {effect.cap} has {self.ledger.remaining(effect.cap)} left")
        try:
            canonical.decode(r.payload, "receipt payload")
        except NonCanonicalError as exc:
            raise ReceiptError(str(exc)) from None
        return effect

    def admit_receipt(self, r: Receipt, authenticate: bool = True) -> int:
        """Journal a checked receipt, settle its budget, deliver it to the intending cell."""
        effect = self.check_receipt(r, authenticate)
        # The sys/Receipt@1 event is built before anything changes: a payload at the model's depth
        # limit cannot be delivered one level deeper, and must be refused, not half admitted.
        try:
            value = canonical.encode({"cost": r.cost, "kind": effect.kind, "status": r.status,
                                      "payload": canonical.decode_trusted(r.payload), "intent_hash": r.intent_hash,
                                      "idempotency_key": effect.idempotency_key})
        except UnencodableValueError as exc:
            raise ReceiptError(f"receipt for intent {r.intent_hash.hex()} cannot be delivered: {exc}") from None
        seq = self.next_seq
        self.sink.append(ReceiptAppended(seq, r.intent_hash, r.status, r.payload, r.cost, self.lane_id))
        self.next_seq = seq + 1
        self.outbox.settle(r.intent_hash)
        self.receipts_by_status[r.status] = self.receipts_by_status.get(r.status, 0) + 1
        self.ledger.settle(effect.cap, effect.cost, r.cost)
        self.inbox.put(seq, RECEIPT_SCHEMA, value, 1)
        spec = self.manifest.get(effect.reducer)
        self.sequencer.deliver(self.cells.id_of(spec, effect.key), seq, spec.priority)
        return seq

    def admit_receipt_recorded(self, rec: ReceiptAppended) -> None:
        """Re-admit a receipt read from the journal (replay)."""
        if rec.seq != self.next_seq:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"ReceiptAppended has seq {rec.seq}, replay expects {self.next_seq}")
        try:
            # authenticated when it was admitted; the journal's chain protects it since
            self.admit_receipt(Receipt(rec.intent_hash, rec.status, rec.payload, rec.cost, b""),
                               authenticate=False)
        except ReceiptError as exc:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"journaled receipt {rec.seq} does not apply: {exc}") from None

    # ---------------------------------------------------------- ticketing
    def compute(self, ticket: Ticket) -> StepResult:
        """Compute a step against the committed state (serial executors and replay)."""
        schema, value = self.inbox.get(ticket.input)
        return compute(ticket, self.cells.state(ticket.cid), schema, value, self.admission, self.ledger)

    def prepare_native(self, ticket: Ticket) -> NativeCall:
        """The native call of ``ticket``, for a worker that runs it without the GIL (threads executor)."""
        schema, value = self.inbox.get(ticket.input)
        return prepare_native(ticket, self.cells.state(ticket.cid), schema, value)

    def finish_native(self, ticket: Ticket, call: Any) -> StepResult:
        """The result of a native call a worker ran (checked like any step's outputs)."""
        return finish_native(ticket, call.state, call.outputs(), self.admission, self.ledger)

    def ticket(self, event_id: int, cid: int, seq: int) -> Ticket:
        cells = self.cells
        return Ticket(event_id, cid, seq, cells.spec(cid), cells.key(cid))

    def next_ticket(self) -> Ticket | None:
        """The next ticket, all earlier ones being committed (serial use)."""
        t = self.sequencer.poll(self.last_event_id)
        return self.ticket(*t) if t else None
