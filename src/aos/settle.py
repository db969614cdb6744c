"""Settling effects: how a run gets the receipts of outstanding effects, one strategy per dispatch mode.

A world's effects mode (``World.open(effects=...)``, see :mod:`aos.adapters`)
decides where receipts come from; the run loop asks its strategy three things
and never looks at the mode itself:

* ``has_arrived`` / ``arrived()`` — receipts that came in while steps ran,
  admitted at the next quiet point (only the background mode has such; the
  others leave ``has_arrived`` None, so the per-step hook costs one test);
* ``settle(deadline)`` — once no step is ready and effects are outstanding:
  the next receipts to admit, ``[]`` when woken by another thread's call
  (serve it at the quiet point), or None when nothing more will come (the
  run returns);
* ``idle(timeout)`` — for a serving world with nothing to do: wait up to
  ``timeout`` seconds for receipts or another thread's call, and return the
  receipts that came.

``InlineSettling`` executes the waiting effects on the calling thread once no
step is ready (the receipts in queue order, so a run's journal depends on its
inputs only); ``BackgroundSettling`` waits for receipts from the adapter
threads; ``ManualSettling`` never gets any (the embedding program hands
receipts to ``World.submit_receipt``).
"""

from __future__ import annotations

import time
from typing import Callable

from aos.adapters import WAKE, Dispatcher
from aos.receipt import Receipt

__all__ = ["Settling", "InlineSettling", "BackgroundSettling", "ManualSettling", "settling_for"]

Wait = Callable[[float | None], None]  # blocks until another thread hands a call over, or the timeout


class Settling:
    """The strategy of one effects mode (the base class is the manual one: no receipt ever comes)."""

    mode = "manual"
    settles_by_default = False  # what ``run(settle=None)`` means in this mode

    def __init__(self, dispatcher: Dispatcher, wait_for_call: Wait) -> None:
        self.dispatcher = dispatcher
        self.wait_for_call = wait_for_call
        self.has_arrived: Callable[[], bool] | None = None

    def arrived(self) -> list[Receipt]:
        """Receipts that arrived while steps ran (taken at a quiet point)."""
        return []

    def settle(self, deadline: float | None) -> list[Receipt] | None:
        """The next receipts once no step is ready; ``[]``: woken by another thread; None: no more will come."""
        return None

    def idle(self, timeout: float | None) -> list[Receipt]:
        """Nothing to do: wait up to ``timeout`` s for receipts or another thread's call; the receipts that came."""
        self.wait_for_call(timeout)
        return []


class ManualSettling(Settling):
    """``effects="manual"``: nothing is dispatched; receipts come through ``World.submit_receipt``."""


class InlineSettling(Settling):
    """``effects="inline"``: waiting effects run on the calling thread once no step is ready."""

    mode = "inline"
    settles_by_default = True

    def settle(self, deadline: float | None) -> list[Receipt] | None:
        d = self.dispatcher
        if not d.waiting:
            return None
        return d.run_inline()

    def idle(self, timeout: float | None) -> list[Receipt]:
        if self.dispatcher.waiting:
            return self.dispatcher.run_inline()
        self.wait_for_call(timeout)
        return []


class BackgroundSettling(Settling):
    """``effects="background"``: adapters run on their own threads; receipts are admitted as they arrive."""

    mode = "background"

    def __init__(self, dispatcher: Dispatcher, wait_for_call: Wait) -> None:
        super().__init__(dispatcher, wait_for_call)
        self.has_arrived = dispatcher.has_arrived

    def arrived(self) -> list[Receipt]:
        return self.dispatcher.take()

    def settle(self, deadline: float | None) -> list[Receipt] | None:
        d = self.dispatcher
        if not d.busy:
            return None  # every dispatched effect answered (a refused receipt leaves its effect queued)
        got = d.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if got is WAKE:
            return []  # another thread handed over a call: serve it at the quiet point
        if got is None:
            return None  # timed out
        return [got]  # type: ignore[list-item]

    def idle(self, timeout: float | None) -> list[Receipt]:
        got = self.dispatcher.wait(timeout)  # another thread's call puts WAKE here
        if got is None or got is WAKE:
            return []
        return [got]  # type: ignore[list-item]


_BY_MODE: dict[str, type[Settling]] = {"inline": InlineSettling, "background": BackgroundSettling,
                                       "manual": ManualSettling}


def settling_for(dispatcher: Dispatcher, wait_for_call: Wait) -> Settling:
    """The strategy of ``dispatcher``'s mode."""
    return _BY_MODE[dispatcher.mode](dispatcher, wait_for_call)
