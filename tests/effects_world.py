"""A manifest with effects, capabilities, policies and an invariant, shared by effect tests.

Importable by child processes (crash tests), so it lives in its own module.
"""

from __future__ import annotations

from typing import Any

import aos


def effects_manifest(budget: int = 100, name: str = "test/effects@1") -> aos.Manifest:
    m = aos.Manifest(name)
    m.capability("pay", effect="payment.send", budget=budget)
    m.capability("timers", effect="timer.set", budget=1_000)
    m.capability("blobs", effect=["blob.put", "blob.get"], budget=1_000)
    m.deny(kind="payment.send", reducer="test/Intruder@1")

    @m.reducer("test/Payer@1", key="id", events=["test/Pay@1"])
    def payer(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"asked": 0, "receipts": [], "denied": [], "seen_budget": None}
        if event.schema == "sys/Receipt@1":
            v = event.value
            state["receipts"].append([v["status"], v["cost"], v["kind"]])
            return state
        if event.schema == "sys/EffectDenied@1":
            state["denied"].append(event.value["reason"])
            return state
        v = event.value
        if v.get("peek"):
            state["seen_budget"] = ctx.budget("pay")
        for cost in v.get("costs", []):
            ctx.effect("payment.send", {"to": ctx.key, "amount": cost}, cost=cost)
        if v.get("uncovered"):
            ctx.effect("rocket.launch", {"target": "moon"})
        if v.get("timer") is not None:
            ctx.effect("timer.set", {"after_ms": v["timer"]}, cost=1)
        if v.get("blob") is not None:
            ctx.effect("blob.put", {"data": v["blob"]}, cost=1)
        state["asked"] += 1
        return state

    @m.reducer("test/Intruder@1", events=["test/Sneak@1"])
    def intruder(ctx: Any, state: Any, event: Any) -> Any:
        if event.schema.startswith("sys/"):
            return {"tried": True, "answer": event.schema}
        ctx.effect("payment.send", {"amount": 1}, cost=1)
        return {"tried": True}

    @m.reducer("test/Stock@1", key="sku", events=["test/Take@1"])
    def stock(ctx: Any, state: Any, event: Any) -> Any:
        n = (state or {"n": 3})["n"] - event.value["qty"]
        ctx.emit("test/Taken@1", {"sku": ctx.key, "qty": event.value["qty"]})
        return {"n": n}

    m.schema("test/Taken@1")

    @m.invariant("stock never negative", reducers=["test/Stock@1"])
    def never_negative(view: Any) -> bool:
        return all(view.state(r, k)["n"] >= 0 for r, k in view.changed if view.state(r, k) is not None)

    return m


def payment_adapter(calls: list[Any] | None = None, cost_of: Any = None) -> Any:
    """A deterministic payment adapter; ``calls`` collects the idempotency keys it saw."""

    def send(req: aos.EffectRequest) -> aos.Outcome:
        if calls is not None:
            calls.append(req.idempotency_key)
        cost = req.cost if cost_of is None else cost_of(req)
        return aos.Outcome("ok", {"paid": req.params["amount"]}, cost)

    return send
