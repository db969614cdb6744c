"""The committer: the only writer of world state, applying results in ticket order.

For each result it

1. re-validates the shared values the step read (capability budgets read
   through ``ctx.budget``); a stale read makes it compute the step again
   against the current state before going on;
2. journals ``StepScheduled``, then
3. ``StepFailed`` when the reducer raised (the cell is unchanged, nothing it
   emitted or intended takes effect), or ``InvariantViolated`` when the new
   state would break an invariant (likewise nothing is applied), or
   ``StepCommitted`` (new state hash, emitted events, effect intents): the
   cell is updated and the emitted events admitted in emit order, each
   schedulable ``window`` tickets later;
4. gates each intent: a ``PolicyDecision`` for every one; an allowed intent
   reserves its cost and is journaled as ``EffectQueued`` and put in the
   outbox; a denied one sends a ``sys/EffectDenied@1`` event to the cell;
5. marks the commit point for the durability policy.
"""

from __future__ import annotations

from typing import cast

from aos import canonical
from aos.errors import InvariantViolation, ReducerError
from aos.invariant import check_invariants
from aos.kernel import Kernel
from aos.manifest import DENIED_SCHEMA
from aos.outbox import QueuedEffect
from aos.policy import Decision, decide
from aos.records import (
    EffectQueued,
    InvariantViolated,
    PolicyDecision,
    StepFailed,
    committed_payload,
    scheduled_payload,
)
from aos.step import StepResult, Ticket, failure_message

__all__ = ["Committer", "failed_step"]


def failed_step(t: Ticket, result: StepResult) -> ReducerError:
    """The error ``World.open(strict=True)`` raises for a failed step, the reducer's exception chained."""
    assert result.error is not None
    err = ReducerError(t.event_id, t.spec.name, t.key, *result.error)
    err.__cause__ = result.exception
    return err


class Committer:
    __slots__ = ("kernel", "next_event_id")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.next_event_id = kernel.last_event_id + 1

    def commit(self, result: StepResult) -> bool:
        """Apply one result; returns True when the commit is already durable."""
        k = self.kernel
        t = result.ticket
        if t.event_id != self.next_event_id:
            raise RuntimeError(f"commit out of order: ticket {t.event_id}, expected {self.next_event_id}")
        if result.reads:
            result = self._revalidate(result)
        sink = k.sink
        sink.append_payload(scheduled_payload(t.event_id, t.spec.name, t.key, t.input, k.lane_id))
        if result.error is not None:
            self._fail(t, result)
        elif k.manifest.invariants and (violated := check_invariants(k, result)) is not None:
            sink.append(InvariantViolated(t.event_id, violated[0], violated[1], k.lane_id))
            k.violations.append(InvariantViolation(t.event_id, violated[0], t.spec.name, t.key, violated[1]))
        else:
            try:
                committed = committed_payload(t.event_id, result.state_hash, result.emits, result.intents,
                                              k.lane_id)
            except (TypeError, ValueError) as exc:
                # An output the record cannot hold (the boundaries refuse them; this is the last guard):
                # the step fails as a whole, nothing of it applied, and the world goes on.
                self._unrecordable(t, exc)
                k.inbox.consumed(t.input)
                self.next_event_id += 1
                return sink.commit_point()
            k.cells.set(t.cid, result.state, result.state_hash)
            sink.append_payload(committed)
            if result.emits:
                cells, deliver, inbox = k.cells, k.sequencer.deliver_emitted, k.inbox
                seq = k.next_seq
                for emit, routes in zip(result.emits, result.routes, strict=True):
                    inbox.put(seq, emit.schema, emit.value, len(routes))
                    for spec, key in routes:
                        deliver(t.event_id, cells.id_of(spec, key), seq, spec.priority)
                    if type(routes) is not tuple:  # other lanes' cells take it too (aos.lane_world)
                        k.outbound.send(routes.targets, emit.schema, emit.value)  # type: ignore[attr-defined]
                    seq += 1
                k.next_seq = seq
            if result.intents:
                self._gate(t, result)
            k.commits += 1
        k.inbox.consumed(t.input)
        self.next_event_id += 1
        return sink.commit_point()

    def _fail(self, t: Ticket, result: StepResult) -> None:
        """Journal a failed step (its cell unchanged, nothing it emitted or intended admitted)."""
        k = self.kernel
        error, message, traceback = cast("tuple[str, str, str]", result.error)  # (set: the step failed)
        k.sink.append(StepFailed(t.event_id, t.spec.name, t.key, error, message, traceback, k.lane_id))
        k.failures += 1
        k.failures_by_reducer[t.spec.name] = k.failures_by_reducer.get(t.spec.name, 0) + 1
        k.failures_by_class[t.spec.priority] += 1
        if k.strict:
            k.failed_steps.append(failed_step(t, result))

    def _unrecordable(self, t: Ticket, exc: BaseException) -> None:
        name, message = failure_message(exc)
        self._fail(t, StepResult(t, error=("UnrecordableOutputError",
                                           f"the step's outputs cannot be journaled: {name}: {message}", ""),
                                 exception=exc))

    def _revalidate(self, result: StepResult) -> StepResult:
        """Re-check shared reads against the current state; recompute on a stale one."""
        k = self.kernel
        k.validations += 1
        ledger = k.ledger
        if all(ledger.remaining(cap) == value for cap, value in result.reads):
            return result
        k.reexecutions += 1
        return k.compute(result.ticket)

    def _gate(self, t: Ticket, result: StepResult) -> None:
        k = self.kernel
        sink, outbox, ledger = k.sink, k.outbox, k.ledger
        for intent in result.intents:
            h = intent.intent_hash
            if h in outbox.queued or h in outbox.settled:
                decision = Decision(False, f"duplicate intent: idempotency key {intent.idempotency_key!r} "
                                           f"of {intent.kind} was already used")
            else:
                decision = decide(k.manifest, ledger, intent, t.spec.name)
            sink.append(PolicyDecision(t.event_id, h, decision.allowed, decision.reason, k.lane_id))
            if decision.allowed:
                assert intent.cap is not None
                ledger.reserve(intent.cap, intent.cost)
                effect = QueuedEffect(h, intent.kind, intent.params, intent.cap, intent.idempotency_key,
                                      intent.cost, t.event_id, t.spec.name, t.key)
                outbox.add(effect)
                k.new_effects.append(effect)
                sink.append(EffectQueued(t.event_id, h, intent.kind, intent.cap, intent.idempotency_key,
                                         intent.cost, k.lane_id))
            else:
                if decision.over_budget and intent.cap is not None:  # the control plane's hint (budget_wants)
                    wants = k.grants.wants
                    wants[intent.cap] = wants.get(intent.cap, 0) + intent.cost
                seq = k.next_seq
                k.next_seq = seq + 1
                value = canonical.encode_trusted({
                    "cap": intent.cap, "kind": intent.kind, "reason": decision.reason, "intent_hash": h,
                    "idempotency_key": intent.idempotency_key})
                k.inbox.put(seq, DENIED_SCHEMA, value, 1)
                k.sequencer.deliver_emitted(t.event_id, t.cid, seq, t.spec.priority)
