"""Workers: compute one step against the state as of ticket − 1.

A worker reads the cell's committed state bytes and the input event, runs
the reducer and returns a :class:`StepResult`. It writes nothing shared:
the committer alone applies results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aos import canonical
from aos.admission import Admission, Route
from aos.capability import Ledger
from aos.context import Event, StepContext
from aos.manifest import ReducerSpec
from aos.records import Emit, Intent

__all__ = ["Ticket", "StepResult", "compute", "failure_message"]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
MAX_MESSAGE = 2000


@dataclass(frozen=True, slots=True)
class Ticket:
    """A step the sequencer scheduled: ticket ``event_id`` for cell ``cid`` on input ``input``."""

    event_id: int
    cid: int
    input: int
    spec: ReducerSpec
    key: Any


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step produced; ``error`` is set when the reducer raised."""

    ticket: Ticket
    state: bytes | None = None
    state_hash: bytes | None = None
    emits: tuple[Emit, ...] = ()
    routes: tuple[tuple[Route, ...], ...] = ()
    intents: tuple[Intent, ...] = ()
    reads: tuple[tuple[str, int], ...] = ()  # shared values read through ctx: (capability, remaining)
    error: tuple[str, str] | None = None


def failure_message(exc: BaseException) -> tuple[str, str]:
    """``(error type, message)`` of an exception, free of machine-specific text."""
    name = type(exc).__qualname__
    try:
        msg = str(exc)
    except Exception:  # a broken __str__ must not break the kernel
        msg = "<unprintable message>"
    msg = _ADDRESS.sub("0x?", msg)
    if len(msg) > MAX_MESSAGE:
        msg = msg[:MAX_MESSAGE] + "…"
    return name, msg


def compute(ticket: Ticket, state: bytes | None, schema: str, value: bytes,
            admission: Admission, ledger: Ledger) -> StepResult:
    """Run the reducer of ``ticket`` on (state, event). Never raises for reducer errors."""
    spec = ticket.spec
    ctx = StepContext(ticket.event_id, spec.name, ticket.key, admission, ledger)
    try:
        current = None if state is None else canonical.decode_trusted(state)
        event = Event(schema, canonical.decode_trusted(value), ticket.input)
        new = spec.fn(ctx, current, event)
        if new is None:
            new_bytes, new_hash = None, None
        else:
            new_bytes = canonical.encode(new, where=f"state returned by reducer {spec.name}", path="state")
            new_hash = canonical.digest(new_bytes)
    except Exception as exc:
        return StepResult(ticket, error=failure_message(exc))
    return StepResult(ticket, new_bytes, new_hash, tuple(ctx.emits), tuple(ctx.routes), tuple(ctx.intents),
                      tuple(ctx.reads.items()))
