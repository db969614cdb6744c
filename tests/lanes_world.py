"""A commuting workload for lane worlds (counters, sums, sets) whose events cross lanes.

Importable by child processes (crash tests), so it lives in its own module.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import aos

KILL_AT = "AOS_TEST_LANES_KILL_AT"  # a crash test's child dies (SIGKILL) in the step of this event_id


def shop_manifest(budget: int = 0, name: str = "test/lanes-shop@1") -> aos.Manifest:
    """Orders (keyed by order) emit Spent (to the user's cell and the non-keyed total) and Sold (to the item's cell)."""
    m = aos.Manifest(name)
    m.capability("mail", effect="mail.send", budget=budget)

    @m.reducer("shop/Order@1", key="order", events=["shop/Order@1"])
    def order(ctx: Any, state: Any, event: Any) -> Any:
        if os.environ.get(KILL_AT) == str(ctx.event_id):
            os.kill(os.getpid(), signal.SIGKILL)
        v = event.value
        ctx.emit("shop/Spent@1", {"user": v["user"], "amount": v["amount"]})
        ctx.emit("shop/Sold@1", {"item": v["item"]})
        if v.get("mail"):
            ctx.effect("mail.send", {"to": v["user"]}, cap="mail", cost=v["mail"])
        return {"amount": (state or {"amount": 0})["amount"] + v["amount"], "user": v["user"]}

    @m.reducer("shop/User@1", key="user", events=["shop/Spent@1"])
    def user(ctx: Any, state: Any, event: Any) -> Any:
        s = state or {"n": 0, "sum": 0}
        return {"n": s["n"] + 1, "sum": s["sum"] + event.value["amount"]}

    @m.reducer("shop/Item@1", key="item", events=["shop/Sold@1"])
    def item(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    @m.reducer("shop/Total@1", events=["shop/Spent@1"])
    def total(ctx: Any, state: Any, event: Any) -> Any:
        s = state or {"sum": 0, "users": []}
        users = sorted(set(s["users"]) | {event.value["user"]})
        return {"sum": s["sum"] + event.value["amount"], "users": users}

    return m


MANIFEST = shop_manifest()


def orders(n: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``n`` orders over a few users and items (deterministic)."""
    out = []
    for i in range(n):
        x = (i * 7919 + seed * 104729) % 1000
        out.append(("shop/Order@1", {"order": i % (n // 2 + 1), "user": f"u{x % 7}", "item": x % 5,
                                     "amount": 1 + x % 13}))
    return out
