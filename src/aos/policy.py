"""Policy: whether an effect intent is allowed, decided at commit.

In order: the intent must name a capability that exists and covers its
kind (an intent without one is denied); then the manifest's rules are tried
in declaration order and the first that matches (kind, origin reducer,
capability) decides; with no match the intent is allowed; finally its
declared cost must fit the capability's remaining budget. Every decision is
journaled as a ``PolicyDecision`` with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from aos.capability import Ledger
from aos.manifest import Manifest
from aos.records import Intent

__all__ = ["Decision", "decide"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    over_budget: bool = False  # denied for lack of budget (a lane world's wants, docs/fleet.md)


def decide(manifest: Manifest, ledger: Ledger, intent: Intent, reducer: str) -> Decision:
    kind, cap_name = intent.kind, intent.cap
    if cap_name is None:
        return Decision(False, f"no capability covers effect kind {kind!r}")
    cap = manifest.capabilities.get(cap_name)
    if cap is None:
        return Decision(False, f"unknown capability {cap_name!r}")
    if kind not in cap.effects:
        return Decision(False, f"capability {cap_name} does not cover effect kind {kind!r}")
    for i, rule in enumerate(manifest.policies):
        if rule.matches(kind, reducer, cap_name):
            if rule.action == "deny":
                return Decision(False, f"denied by policy rule {i} ({rule.action} {_fmt(rule)})")
            break
    if not ledger.fits(cap_name, intent.cost):
        return Decision(False, f"budget of {cap_name} exhausted: cost {intent.cost}, "
                               f"remaining {ledger.remaining(cap_name)}", over_budget=True)
    return Decision(True, f"allowed by capability {cap_name}")


def _fmt(rule: object) -> str:
    parts = [f"{k}={getattr(rule, k)}" for k in ("kind", "reducer", "cap") if getattr(rule, k) is not None]
    return " ".join(parts) or "everything"
