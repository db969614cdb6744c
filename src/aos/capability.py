"""Capability budgets: reserved at commit, settled on receipts.

For each capability the ledger keeps ``reserved`` (declared costs of queued
intents still awaiting a receipt) and ``spent`` (actual costs of settled
intents). ``remaining = budget - reserved - spent`` never goes below zero:
a reservation that does not fit is denied, and a receipt whose actual cost
exceeds its reservation by more than what remains is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aos.manifest import Manifest

__all__ = ["Ledger", "BudgetView"]


@dataclass(frozen=True, slots=True)
class BudgetView:
    """A capability's budget, as ``World.budget`` reports it."""

    cap: str
    budget: int
    reserved: int
    spent: int

    @property
    def remaining(self) -> int:
        return self.budget - self.reserved - self.spent


class Ledger:
    """Reservations and spending per capability."""

    __slots__ = ("budgets", "reserved", "spent")

    def __init__(self, manifest: Manifest) -> None:
        self.budgets = {name: c.budget for name, c in manifest.capabilities.items()}
        self.reserved = dict.fromkeys(self.budgets, 0)
        self.spent = dict.fromkeys(self.budgets, 0)

    def remaining(self, cap: str) -> int:
        return self.budgets[cap] - self.reserved[cap] - self.spent[cap]

    def fits(self, cap: str, cost: int) -> bool:
        return cost <= self.remaining(cap)

    def reserve(self, cap: str, cost: int) -> None:
        if not self.fits(cap, cost):
            raise AssertionError(f"reservation of {cost} on {cap} does not fit")  # callers check fits()
        self.reserved[cap] += cost

    def can_settle(self, cap: str, reserved: int, actual: int) -> bool:
        return actual - reserved <= self.remaining(cap)

    def settle(self, cap: str, reserved: int, actual: int) -> None:
        """Release ``reserved`` and spend ``actual`` (a refund or a further charge)."""
        self.reserved[cap] -= reserved
        self.spent[cap] += actual

    def view(self, cap: str) -> BudgetView:
        return BudgetView(cap, self.budgets[cap], self.reserved[cap], self.spent[cap])

    def export(self) -> list[list[Any]]:
        return [[cap, self.reserved[cap], self.spent[cap]] for cap in self.budgets]

    def restore(self, rows: list[list[Any]]) -> None:
        for cap, reserved, spent in rows:
            if cap not in self.budgets:
                raise ValueError(f"ledger names unknown capability {cap!r}")
            self.reserved[cap] = reserved
            self.spent[cap] = spent
