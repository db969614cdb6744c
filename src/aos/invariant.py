"""Invariants: predicates over committed state, checked at commit.

Before a step's new state is applied, every invariant that covers the step's
reducer is called with an :class:`InvariantView` of the state *as it would
be after the step*. A false return value or an exception is a violation:
the committer journals ``InvariantViolated`` instead of ``StepCommitted``,
applies none of the step's writes (state, emitted events, effects), and the
world surfaces the violation (see ``World.open(on_violation=...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from aos import canonical
from aos.capability import BudgetView
from aos.step import StepResult, failure_message

if TYPE_CHECKING:
    from aos.kernel import Kernel

__all__ = ["InvariantView", "check_invariants"]


class InvariantView:
    """Read-only state as it would be after the step being committed."""

    __slots__ = ("_kernel", "_cid", "_state", "changed")

    def __init__(self, kernel: "Kernel", cid: int, state: bytes | None, changed: tuple[str, Any]) -> None:
        self._kernel = kernel
        self._cid = cid
        self._state = state
        self.changed = [changed]  # the cells the step changed, as (reducer, key)

    def state(self, reducer: str, key: Any = None) -> Any:
        """The state of cell (reducer, key), or None."""
        cells = self._kernel.cells
        cid = cells.find(reducer, key)
        if cid is None:
            return None
        data = self._state if cid == self._cid else cells.state(cid)
        return None if data is None else canonical.decode_trusted(data)

    def cells(self, reducer: str | None = None) -> Iterator[tuple[str, Any, Any]]:
        """(reducer, key, state) of every live cell (all of them: use sparingly)."""
        cells = self._kernel.cells
        for cid in range(cells.count):
            spec = cells.spec(cid)
            if reducer is not None and spec.name != reducer:
                continue
            data = self._state if cid == self._cid else cells.state(cid)
            if data is not None:
                yield spec.name, cells.key(cid), canonical.decode_trusted(data)

    def budget(self, cap: str) -> BudgetView:
        return self._kernel.ledger.view(cap)


def check_invariants(kernel: "Kernel", result: StepResult) -> tuple[str, str] | None:
    """``(invariant, message)`` of the first violated invariant, or None."""
    t = result.ticket
    view: InvariantView | None = None
    for inv in kernel.manifest.invariants.values():
        if inv.reducers is not None and t.spec.name not in inv.reducers:
            continue
        if view is None:
            view = InvariantView(kernel, t.cid, result.state, (t.spec.name, t.key))
        try:
            ok = inv.fn(view)
        except Exception as exc:
            name, msg = failure_message(exc)
            return inv.name, f"raised {name}: {msg}"
        if not ok:
            return inv.name, f"returned {ok!r}"
    return None
