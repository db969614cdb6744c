"""Workers: compute one step against the state as of ticket − 1.

A worker reads the cell's committed state bytes and the input event, runs
the reducer and returns a :class:`StepResult`. It writes nothing shared:
the committer alone applies results.
"""

from __future__ import annotations

import linecache
import os
import re
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import TYPE_CHECKING, Any, cast

from aos import canonical
from aos._core.decoder import UNHANDLED
from aos._core.decoder import decode as _fast_decode
from aos._core.encoder import encode as _fast_encode
from aos._core.hashing import digest as _digest  # BLAKE3 in C
from aos.admission import Admission, Route
from aos.capability import Ledger
from aos.context import Event, StepContext
from aos.manifest import ReducerSpec
from aos.profiling import unwrapped
from aos.records import Emit, Intent
from aos.rng import step_seed
from aos.upcast import Chain, run_chain

if TYPE_CHECKING:
    from aos._core.native import NativeCall, NativeReducer

__all__ = ["Ticket", "StepResult", "compute", "finish_step", "failed", "failure_message", "failure_traceback",
           "prepare_native", "finish_native"]

_decode = _fast_decode  # of bytes aos wrote itself; UNHANDLED: canonical.decode_trusted, the general path
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
MAX_MESSAGE = 2000
MAX_FRAMES = 16  # frames a StepFailed traceback shows: the first 4 and the last 12 ...
HEAD_FRAMES = 4
MAX_SOURCE = 160  # characters of a frame's source line
MAX_TRACEBACK = 4000
_AOS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


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
    error: tuple[str, str, str] | None = None  # (error type, message, traceback) of a failed step
    exception: BaseException | None = None  # what the reducer raised (``World.open(strict=True)`` re-raises it)


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


def failure_traceback(exc: BaseException, code: CodeType | None) -> str:
    """The frames of a failed step, from the reducer's own down to where it raised; ``""`` if none.

    ``code`` is the reducer function's code (``None`` for a callable object:
    every frame below the one that caught ``exc``). The text is journaled in
    ``StepFailed`` and compared on replay, so it holds nothing that differs
    between runs of the same code: a frame is its file's base name (never the
    absolute path), its function's qualified name, its line counted from the
    first line of the function's definition — its first decorator or its
    ``def`` —, so that code moved in its file (same source, same era) replays
    the same, and that line's source. Frames of aos itself are left out (but
    those in the reducer's own file), and frames above the reducer's: how deep
    the reducer was called differs between executors. At most ``MAX_FRAMES``
    frames are shown, the first 4 and the last 12, except for a
    ``RecursionError``, whose depth depends on the calling thread's stack: its
    first frames only, without a count.
    """
    tb: TracebackType | None = exc.__traceback__
    if code is None:
        tb = tb.tb_next if tb is not None else None
    else:
        while tb is not None and tb.tb_frame.f_code is not code:
            tb = tb.tb_next
    frames: list[str] = []
    own = code.co_filename if code is not None else None
    while tb is not None:
        co = tb.tb_frame.f_code
        name = co.co_filename
        if name == own or not (name.startswith(_AOS_DIR) or name.startswith("aos/")):
            lineno = tb.tb_lineno or co.co_firstlineno
            source = linecache.getline(name, lineno).strip()
            if len(source) > MAX_SOURCE:
                source = source[:MAX_SOURCE] + "…"
            frame = f"  {os.path.basename(name)}, in {co.co_qualname}, line {lineno - co.co_firstlineno + 1} of its " \
                    "definition"
            frames.append(f"{frame}: {_ADDRESS.sub('0x?', source)}" if source else frame)
            if len(frames) > MAX_FRAMES and isinstance(exc, RecursionError):
                frames[MAX_FRAMES:] = ["  … (deeper frames left out)"]
                break
        tb = tb.tb_next
    else:
        if len(frames) > MAX_FRAMES:
            left_out = len(frames) - MAX_FRAMES
            frames[HEAD_FRAMES:len(frames) - (MAX_FRAMES - HEAD_FRAMES)] = [f"  … ({left_out} frames left out)"]
    text = "\n".join(frames)
    return text if len(text) <= MAX_TRACEBACK else text[:MAX_TRACEBACK] + "…"


def _code_of(fn: Any) -> CodeType | None:
    """The code of reducer function ``fn`` (through a ``profile=True`` timing wrapper: the traceback is the same)."""
    fn = unwrapped(fn)
    # through the typed-values wrapper too (aos.typed): a traceback holds the reducer's frames, never aos's
    return getattr(getattr(fn, "__aos_typed__", fn), "__code__", None)


def _failed(ticket: Ticket, exc: BaseException, code: CodeType | None) -> StepResult:
    name, message = failure_message(exc)
    return StepResult(ticket, error=(name, message, failure_traceback(exc, code)), exception=exc)


def compute(ticket: Ticket, state: bytes | None, schema: str, value: bytes,
            admission: Admission, ledger: Ledger) -> StepResult:
    """Run the reducer of ``ticket`` on (state, event). Never raises for reducer errors."""
    spec = ticket.spec
    if spec.upcasts and schema in spec.upcasts:  # (the one test a step of a reducer without upcasters pays)
        upcast = _upcast(ticket, spec.upcasts[schema], value)
        if isinstance(upcast, StepResult):
            return upcast
        schema, value = upcast
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
    except Exception as exc:
        return _failed(ticket, exc, _code_of(spec.fn))
    return finish_step(ticket, ctx, new)


def finish_step(ticket: Ticket, ctx: StepContext, new: Any) -> StepResult:
    """The result of a Python reducer's call that returned ``new``: the state encoded and hashed, the outputs.

    The inline loop (``aos/_core/inline_loop.pyx``) calls the reducer itself and
    comes here only for a step with outputs or a state the C writer does not
    handle, so both make the same result.
    """
    spec = ticket.spec
    try:
        if new is None:
            new_bytes, new_hash = None, None
        else:
            new_bytes = _fast_encode(new)  # the C writer; None: the general path, which explains a bad value
            if new_bytes is None:
                new_bytes = canonical.encode(new, where=f"state returned by reducer {spec.name}", path="state")
            new_hash = _digest(new_bytes)
    except Exception as exc:
        return _failed(ticket, exc, _code_of(spec.fn))
    if ctx.emits or ctx.intents or ctx.reads:
        return StepResult(ticket, new_bytes, new_hash, tuple(ctx.emits), tuple(ctx.routes), tuple(ctx.intents),
                          tuple(ctx.reads.items()))
    return StepResult(ticket, new_bytes, new_hash)


def failed(ticket: Ticket, exc: BaseException) -> StepResult:
    """The failed step of a Python reducer that raised ``exc`` (the inline loop's error path)."""
    return _failed(ticket, exc, _code_of(ticket.spec.fn))


def _upcast(ticket: Ticket, chain: Chain, value: bytes) -> tuple[str, bytes] | StepResult:
    """The event of ``ticket`` as its reducer reads it (new schema, value bytes), or the failed step."""
    try:
        schema, data, _v = run_chain(chain, canonical.decode_trusted(value),
                                     f"event seq {ticket.input} delivered to reducer {ticket.spec.name} "
                                     f"at event_id {ticket.event_id}")
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        culprit = next((u for u in chain if u.old == getattr(exc, "old", None)), chain[0])
        name, message = failure_message(exc)
        return StepResult(ticket, error=(name, message, failure_traceback(cause, getattr(culprit.fn, "__code__",
                                                                                         None))),
                          exception=exc)
    return schema, data


class NativeReducerError(Exception):
    """A native reducer reported a failure."""


def _compute_native(ticket: Ticket, state: bytes | None, schema: str, value: bytes,
                    admission: Admission, ledger: Ledger) -> StepResult:
    """A native step: the C call runs without the GIL; outputs are checked like a Python reducer's."""
    spec = ticket.spec
    try:
        native = cast("NativeReducer", spec.native)  # (a native step: compute() chose it for spec.native)
        outputs = native.step(ticket.event_id, state, schema.encode(), value,
                              canonical.encode_trusted(ticket.key), step_seed(ticket.event_id, spec.name,
                                                                               ticket.key))
    except Exception as exc:
        return _failed(ticket, exc, None)
    return finish_native(ticket, state, outputs, admission, ledger)


def prepare_native(ticket: Ticket, state: bytes | None, schema: str, value: bytes) -> NativeCall:
    """The native call of a step, prepared for a worker that runs it without the GIL (a ``NativeCall``).

    Not for a reducer with upcasters (``spec.upcasts``): :func:`compute` runs those steps.
    """
    spec = ticket.spec
    key = ticket.key
    key_bytes = _fast_encode(key)
    native = cast("NativeReducer", spec.native)  # (only native reducers' steps are prepared)
    return native.prepare(ticket.event_id, state, schema.encode(), value,
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
        return _failed(ticket, exc, None)
    new_hash = None if new_bytes is None else _digest(new_bytes)
    if emits or effects:
        return StepResult(ticket, new_bytes, new_hash, tuple(ctx.emits), tuple(ctx.routes), tuple(ctx.intents),
                          tuple(ctx.reads.items()))
    return StepResult(ticket, new_bytes, new_hash)
