"""The inline executor's step loop (``inline_loop.pyx``)."""

from typing import Final

from aos.committer import Committer
from aos.executor import Hooks
from aos.kernel import Kernel

QUIET_EVERY: Final[int]

class InlineLoop:
    def __init__(self, kernel: Kernel, committer: Committer, latency: list[int]) -> None: ...
    @property
    def busy_ns(self) -> int: ...
    @property
    def fast(self) -> int: ...
    @property
    def reference(self) -> int: ...
    def run(self, limit: int, hooks: Hooks) -> int:
        """Run up to ``limit`` steps (-1: until no step is ready); the number run."""

    def step(self) -> tuple[int, int, int] | None:
        """Run the next step, if one is ready: ``(event_id, cell id, input)``, or None."""

    def commit_ticket(self, t: int, cid: int, inp: int) -> None: ...
    def admit(self, payload: bytes) -> bool: ...
