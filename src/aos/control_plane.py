"""The fleet's control plane: a global budget per capability, split into journaled per-lane grants.

In a fleet of more than one lane, each lane's world starts every capability
at a budget of 0; the manifest's budget is the fleet's, held here. The
control plane hands it out as *grants*: ``(lane, cap, amount, grant)``,
where ``grant`` is the lane's own increasing grant id. Each grant is
appended to ``grants.log`` in the fleet directory and fsync'd **before** it
is sent to its lane (``World.grant``, journaled there as ``BudgetGranted``),
so the sum of what the lanes were ever granted is the sum of the log, which
never exceeds the global budget — across crashes and restarts of the fleet
and of its lanes. Sending is safe to repeat (a lane ignores a grant id it
has seen), so on opening the fleet sends every grant of the log again.

Policy: when the fleet is created each lane gets a first grant of
``budget // (2 * lanes)`` (half an even share; at least 1 where the budget
allows), the rest is held back. A lane whose world reports that intents were
denied for lack of budget (``World.budget_wants()``) gets more: what it
wanted, at least another first-grant's worth, at most what is left.

The log (:mod:`aos.fleet_log`): a record ``[lane, cap, amount, grant]`` per
grant. A torn last record (a crash while appending, before the grant was
sent) is cut off on opening; any other damage is refused with
:class:`~aos.errors.StorageError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from aos.errors import StorageError
from aos.fleet_log import append_log, cut_log, read_log

__all__ = ["ControlPlane", "Grant", "GRANTS"]

GRANTS = "grants.log"


@dataclass(frozen=True, slots=True)
class Grant:
    """``amount`` units of capability ``cap`` given to lane ``lane`` as its grant number ``grant``."""

    lane: int
    cap: str
    amount: int
    grant: int

    def fields(self) -> list[object]:
        return [self.lane, self.cap, self.amount, self.grant]


def read_grants(path: Path) -> tuple[list[Grant], int]:
    """The grants in the log at ``path`` and the length of its intact part (a torn last record is left out)."""
    records, intact = read_log(path)
    grants = []
    for r in records:
        if len(r) != 4 or not (type(r[0]) is int and type(r[1]) is str and type(r[2]) is int and type(r[3]) is int):
            raise StorageError(f"{path}: malformed grant record {r!r}")
        grants.append(Grant(*r))
    return grants, intact


class ControlPlane:
    """The global budget of each capability and the grants made of it (see the module's docstring)."""

    def __init__(self, directory: Path, budgets: Mapping[str, int], lanes: int) -> None:
        self.path = Path(directory) / GRANTS
        self.budgets = dict(budgets)
        self.lanes = lanes
        self.grants, intact = read_grants(self.path)
        cut_log(self.path, intact)  # a torn last record: never sent
        self._granted: dict[str, int] = dict.fromkeys(self.budgets, 0)
        self._by_lane: dict[tuple[int, str], int] = {}
        self._last_id: dict[int, int] = {}
        for g in self.grants:
            if g.cap not in self.budgets or not 0 <= g.lane < lanes:
                raise StorageError(f"{self.path}: grant {g} names a capability or lane this fleet does not have")
            self._count(g)
        for cap, total in self._granted.items():
            if total > self.budgets[cap]:
                raise StorageError(f"{self.path}: grants of {cap} add up to {total}, over its budget "
                                   f"{self.budgets[cap]}")

    @property
    def active(self) -> bool:
        """Whether the fleet's lanes take their budgets from grants (a fleet of more than one lane)."""
        return self.lanes > 1 and bool(self.budgets)

    def _count(self, g: Grant) -> None:
        self._granted[g.cap] += g.amount
        self._by_lane[g.lane, g.cap] = self._by_lane.get((g.lane, g.cap), 0) + g.amount
        self._last_id[g.lane] = max(self._last_id.get(g.lane, 0), g.grant)

    def granted(self, cap: str, lane: int | None = None) -> int:
        """What was granted of ``cap`` (to ``lane``, or to all lanes)."""
        return self._granted[cap] if lane is None else self._by_lane.get((lane, cap), 0)

    def left(self, cap: str) -> int:
        """What of ``cap``'s global budget is not granted yet."""
        return self.budgets[cap] - self._granted[cap]

    def chunk(self, cap: str) -> int:
        """The size of a first grant of ``cap``: half an even share, at least 1 where the budget allows."""
        budget = self.budgets[cap]
        return min(budget, max(1, budget // (2 * self.lanes))) if budget > 0 else 0

    def initial(self) -> list[Grant]:
        """First grants of every capability none of whose budget was granted yet (journaled)."""
        if not self.active:
            return []
        out: list[Grant] = []
        for cap in self.budgets:
            if any(g.cap == cap for g in self.grants):
                continue
            for lane in range(self.lanes):
                amount = min(self.chunk(cap), self.left(cap) - sum(g.amount for g in out if g.cap == cap))
                if amount > 0:
                    out.append(Grant(lane, cap, amount, self._last_id.get(lane, 0)
                                     + 1 + sum(1 for g in out if g.lane == lane)))
        self._record(out)
        return out

    def top_up(self, wants: Mapping[int, Mapping[str, int]]) -> list[Grant]:
        """Grants (journaled) for lanes that wanted more: ``wants[lane][cap]`` = the cost they were denied."""
        if not self.active:
            return []
        out: list[Grant] = []
        for lane in sorted(wants):
            for cap in sorted(wants[lane]):
                want = wants[lane][cap]
                if cap not in self.budgets or want <= 0:
                    continue
                left = self.left(cap) - sum(g.amount for g in out if g.cap == cap)
                amount = min(left, max(want, self.chunk(cap)))
                if amount > 0:
                    out.append(Grant(lane, cap, amount, self._last_id.get(lane, 0)
                                     + 1 + sum(1 for g in out if g.lane == lane)))
        self._record(out)
        return out

    def for_lane(self, lane: int) -> list[Grant]:
        """Every grant made to ``lane``, in order (what to send it again after it or the fleet restarted)."""
        return [g for g in self.grants if g.lane == lane]

    def _record(self, grants: list[Grant]) -> None:
        """Append ``grants`` to the log and fsync it: from then on they count as given."""
        if not grants:
            return
        append_log(self.path, [g.fields() for g in grants])
        for g in grants:
            self.grants.append(g)
            self._count(g)
