"""Workers: compute one step against the state as of ticket − 1.

A worker reads the cell's committed state bytes and the input event, runs
the reducer and returns a :class:`StepResult`. It writes nothing shared:
the committer alone applies results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import blake3

from aos import canonical
from aos._core.decoder import UNHANDLED
from aos._core.decoder import decode as _fast_decode
from aos._core.encoder import encode as _fast_encode
from aos.admission import Admission, Route
from aos.capability import Ledger
from aos.context import Event, StepContext
from aos.manifest import ReducerSpec
from aos.records import Emit, Intent
from aos.rng import step_seed

__all__ = ["Ticket", "StepResult", "compute", "failure_message", "prepare_native", "finish_native"]

_digest = blake3.blake3
_decode = _fast_decode  # of bytes aos wrote itself; UNHANDLED: canonical.decode_trusted, the general path
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
MAX_MESSAGE = 2000


@dataclass(slots=True)
class Ticket:
    """A step the sequencer scheduled: ticket ``event_id`` for cell ``cid`` on input ``input``."""

    event_id: int
    cid: int
    input: int
    spec: ReducerSpec
    key: Any


@dataclass(slots=True)
class StepResult:
    """What a step produced; ``error`` is set when the reducer raised.

    Tickets and results are not changed once made (plain slots classes: a
    frozen dataclass costs a microsecond more to build, on every step).
    """

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
    if spec.native is not None:
        return _compute_native(ticket, state, schema, value, admission, ledger)
    ctx = StepContext(ticket.event_id, spec.name, ticket.key, admission, ledger)
    try:
        current = None if state is None else _decode(state)
        if current is UNHANDLED:
            current = canonical.decode_trusted(state)  # type: ignore[arg-type]
        decoded = _decode(value)
        event = Event(schema, canonical.decode_trusted(value) if decoded is UNHANDLED else decoded, ticket.input)
        new = spec.fn(ctx, current, event)
        if new is None:
            new_bytes, new_hash = None, None
        else:
            new_bytes = _fast_encode(new)  # the C writer; None: the general path, which explains a bad value
            if new_bytes is None:
                new_bytes = canonical.encode(new, where=f"state returned by reducer {spec.name}", path="state")
            new_hash = _digest(new_bytes).digest()
    except Exception as exc:
        return StepResult(ticket, error=failure_message(exc))
    if ctx.emits or ctx.intents or ctx.reads:
        return StepResult(ticket, new_bytes, new_hash, tuple(ctx.emits), tuple(ctx.routes), tuple(ctx.intents),
                          tuple(ctx.reads.items()))
    return StepResult(ticket, new_bytes, new_hash)


class NativeReducerError(Exception):
    """A native reducer reported a failure."""


def _compute_native(ticket: Ticket, state: bytes | None, schema: str, value: bytes,
                    admission: Admission, ledger: Ledger) -> StepResult:
    """A native step: the C call runs without the GIL; outputs are checked like a Python reducer's."""
    spec = ticket.spec
    try:
        outputs = spec.native.step(ticket.event_id, state, schema.encode(), value,
                                   canonical.encode_trusted(ticket.key), step_seed(ticket.event_id, spec.name,
                                                                                    ticket.key))
    except Exception as exc:
        return StepResult(ticket, error=failure_message(exc))
    return finish_native(ticket, state, outputs, admission, ledger)


def prepare_native(ticket: Ticket, state: bytes | None, schema: str, value: bytes) -> Any:
    """The native call of a step, prepared for a worker that runs it without the GIL (a ``NativeCall``)."""
    spec = ticket.spec
    key = ticket.key
    key_bytes = _fast_encode(key)
    return spec.native.prepare(ticket.event_id, state, schema.encode(), value,
                               canonical.encode_trusted(key) if key_bytes is None else key_bytes,
                               step_seed(ticket.event_id, spec.name, key))


def finish_native(ticket: Ticket, state: bytes | None, outputs: tuple[Any, ...], admission: Admission,
                  ledger: Ledger) -> StepResult:
    """The result of a native call: its outputs checked like a Python reducer's.

    This holds the GIL, so it is kept short: the step context is only built
    when the step emitted or intended something, and error texts only when
    there is an error.
    """
    spec = ticket.spec
    try:
        error, action, new, emits, effects = outputs
        if error is not None:
            raise NativeReducerError(error)
        if action == 0:
            new_bytes = state
        elif action == 2:
            new_bytes = None
        else:
            if _fast_decode(new, True) is UNHANDLED:  # not canonical or not in the model: say why
                canonical.decode(new, f"state returned by native reducer {spec.name}")
            new_bytes = new
        if emits or effects:
            ctx = StepContext(ticket.event_id, spec.name, ticket.key, admission, ledger)
            for emit_schema, emit_value in emits:
                ctx.emit(emit_schema, canonical.decode(emit_value, f"value emitted by {spec.name}"))
            for kind, params, cap, cost in effects:
                ctx.effect(kind, canonical.decode(params, f"params of effect {kind}"), cap=cap, cost=cost)
    except Exception as exc:
        return StepResult(ticket, error=failure_message(exc))
    new_hash = None if new_bytes is None else _digest(new_bytes).digest()
    if emits or effects:
        return StepResult(ticket, new_bytes, new_hash, tuple(ctx.emits), tuple(ctx.routes), tuple(ctx.intents),
                          tuple(ctx.reads.items()))
    return StepResult(ticket, new_bytes, new_hash)
