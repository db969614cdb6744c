"""The ``tally`` reducer in Python: the oracle the native reducer is tested against.

It imports nothing but aos, so it also runs where the extension is not built.
"""

from __future__ import annotations

from typing import Any

from aos import StepContext

MILESTONE = "tally/Milestone@1"
MAX_TOTAL = (1 << 64) - 1


class TallyError(ValueError):
    """A step the tally reducer refuses (the step fails, the cell is unchanged)."""


def python_tally(every: int) -> Any:
    """The reducer function: the same state, emits and failures as the native one with ``user=every``."""

    def tally(ctx: StepContext, state: Any, event: Any) -> Any:
        count, total = state if state is not None else (0, 0)
        amount = event.value.get("amount") if isinstance(event.value, dict) else None
        if type(amount) is not int or amount < 0:
            raise TallyError("tally: the event has no unsigned integer 'amount'")
        if total + amount > MAX_TOTAL:
            raise TallyError("tally: the total would pass 2**64 - 1")
        count, total = count + 1, total + amount
        if every and count % every == 0:
            ctx.emit(MILESTONE, {"key": ctx.key, "count": count, "total": total})
        return [count, total]

    return tally
