"""The in-memory world: cells, the sequencer, admitted inputs, and a sink.

The kernel is shared by a live :class:`~aos.world.World` (whose sink is the
journal) and by replay (whose sink compares what the kernel produces with
what the journal recorded). Its state is exactly what a snapshot holds.
"""

from __future__ import annotations

from typing import Any, Protocol

from aos import canonical
from aos._core import Sequencer
from aos.admission import Admission, Admitted
from aos.cells import CellTable
from aos.errors import ReplayDivergenceError
from aos.manifest import Manifest
from aos.records import EventAdmitted, Record
from aos.worker import Ticket

__all__ = ["Kernel", "Sink", "Inbox", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 64


class Sink(Protocol):
    def append(self, record: Record) -> int: ...
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

    def __init__(self, manifest: Manifest, sink: Sink, window: int = DEFAULT_WINDOW) -> None:
        self.manifest = manifest
        self.admission = Admission(manifest)
        self.sink = sink
        self.cells = CellTable()
        self.sequencer = Sequencer(window=window)
        self.inbox = Inbox()
        self.next_seq = 0
        self.commits = 0
        self.failures = 0

    @property
    def window(self) -> int:
        return self.sequencer.window

    @property
    def last_event_id(self) -> int:
        """The last ticket assigned (0 before the first)."""
        return self.sequencer.next_ticket - 1

    # ---------------------------------------------------------- admission
    def admit(self, adm: Admitted) -> int:
        """Journal and deliver an external event (visible to the next ticket)."""
        seq = self.next_seq
        self.sink.append(EventAdmitted(seq, adm.schema, adm.value))
        self.next_seq = seq + 1
        self.inbox.put(seq, adm.schema, adm.value, len(adm.routes))
        cells, deliver = self.cells, self.sequencer.deliver
        for spec, key in adm.routes:
            deliver(cells.id_of(spec, key), seq)
        return seq

    def admit_recorded(self, rec: EventAdmitted) -> None:
        """Re-admit an external event read from the journal (replay)."""
        if rec.seq != self.next_seq:
            raise ReplayDivergenceError(None, None, None, None, None,
                                        f"EventAdmitted has seq {rec.seq}, replay expects {self.next_seq}")
        value = canonical.decode(rec.value, f"value of admitted event {rec.seq}")
        adm = self.admission.check(rec.schema, value, origin=f"journaled event {rec.seq}")
        self.admit(adm)

    # ---------------------------------------------------------- ticketing
    def next_ticket(self) -> Ticket | None:
        t = self.sequencer.next()
        if t is None:
            return None
        event_id, cid, seq = t
        cells = self.cells
        return Ticket(event_id, cid, seq, cells.specs[cid], cells.keys[cid])
