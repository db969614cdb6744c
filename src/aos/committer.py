"""The committer: the only writer of world state, applying results in ticket order.

For each result it journals ``StepScheduled`` and then ``StepCommitted``
(new state hash, emitted events, effect intents) or ``StepFailed`` (the
cell is unchanged and nothing the step emitted is admitted), updates the
cell, admits emitted events in emit order — each visible to the sequencer
``window`` tickets later — and marks the commit point for the durability
policy.
"""

from __future__ import annotations

from aos.kernel import Kernel
from aos.records import StepCommitted, StepFailed, StepScheduled
from aos.worker import StepResult

__all__ = ["Committer"]


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
        sink = k.sink
        sink.append(StepScheduled(t.event_id, t.spec.name, t.key, t.input))
        if result.error is not None:
            sink.append(StepFailed(t.event_id, result.error[0], result.error[1]))
            k.failures += 1
        else:
            k.cells.set(t.cid, result.state, result.state_hash)
            sink.append(StepCommitted(t.event_id, result.state_hash, result.emits, result.intents))
            if result.emits:
                cells, deliver, inbox = k.cells, k.sequencer.deliver_emitted, k.inbox
                seq = k.next_seq
                for emit, routes in zip(result.emits, result.routes, strict=False):
                    inbox.put(seq, emit.schema, emit.value, len(routes))
                    for spec, key in routes:
                        deliver(t.event_id, cells.id_of(spec, key), seq)
                    seq += 1
                k.next_seq = seq
            k.commits += 1
        k.inbox.consumed(t.input)
        self.next_event_id += 1
        return sink.commit_point()
