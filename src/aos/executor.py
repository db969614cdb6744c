"""Executors drive tickets from the sequencer through workers to the committer.

``InlineExecutor`` does it on the calling thread, one step at a time: it is
the reference (the *oracle*) every parallel executor is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from aos.committer import Committer
from aos.kernel import Kernel

__all__ = ["InlineExecutor", "RunResult"]


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one ``World.run`` call did."""

    steps: int
    committed: int
    failed: int
    quiescent: bool  # no step is ready
    receipts: int = 0  # receipts admitted
    outstanding: int = 0  # effects still awaiting a receipt


class InlineExecutor:
    """Serial execution: ticket, compute, commit, repeat."""

    name = "inline"

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.committer = Committer(kernel)

    def run(self, max_steps: int | None = None, on_commit: Callable[[], None] | None = None) -> RunResult:
        k = self.kernel
        commit = self.committer.commit
        next_ticket = k.next_ticket
        compute = k.compute
        steps = 0
        commits0, failures0 = k.commits, k.failures
        while max_steps is None or steps < max_steps:
            ticket = next_ticket()
            if ticket is None:
                break
            commit(compute(ticket))
            steps += 1
            if on_commit is not None:
                on_commit()
        return RunResult(steps, k.commits - commits0, k.failures - failures0, not k.sequencer.has_work())
