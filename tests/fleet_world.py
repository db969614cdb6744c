"""Manifests for fleet tests, importable by reference ("fleet_world:commuting") in lane processes.

The reducers commute (counters, sums, sets): the merged state of a fleet
equals one world's on the same inputs, whatever order the lanes ran in.
"""

from __future__ import annotations

from typing import Any

import aos


def _counter(ctx: Any, state: Any, event: Any) -> Any:
    return (state or 0) + event.value["n"]


def _tags(ctx: Any, state: Any, event: Any) -> Any:
    return sorted(set(state or []) | {event.value["tag"]})


def _total(ctx: Any, state: Any, event: Any) -> Any:
    return (state or 0) + event.value["n"]


def _spread(ctx: Any, state: Any, event: Any) -> Any:
    """A keyed cell that passes amounts on to other keys (cross-lane messages, mostly) and counts them."""
    v = event.value
    for to in v["to"]:
        ctx.emit("fleet/Add@1", {"k": to, "n": v["n"], "tag": f"from-{ctx.key}"})
    return (state or 0) + len(v["to"])


def build(name: str = "fleet/commuting@1") -> aos.Manifest:
    m = aos.Manifest(name)
    m.reducer("fleet/Counter@1", key="k", events=["fleet/Add@1"])(_counter)
    m.reducer("fleet/Tags@1", key="k", events=["fleet/Add@1"])(_tags)
    m.reducer("fleet/Total@1", events=["fleet/Add@1"])(_total)
    m.reducer("fleet/Spread@1", key="k", events=["fleet/Spread@1"])(_spread)
    m.schema("fleet/Note@1")  # declared, no reducer takes it
    return m


commuting = build()


def _mailer(ctx: Any, state: Any, event: Any) -> Any:
    state = state or {"asked": 0, "denied": 0, "receipts": 0}
    if event.schema == "sys/EffectDenied@1":
        state["denied"] += 1
        return state
    if event.schema == "sys/Receipt@1":
        state["receipts"] += 1
        return state
    ctx.effect("mail.send", {"to": ctx.key, "i": event.value["i"]}, cost=event.value.get("cost", 1))
    state["asked"] += 1
    return state


def mail(budget: int = 10) -> aos.Manifest:
    m = aos.Manifest("fleet/mail@1")
    m.capability("mail", effect="mail.send", budget=budget)
    m.reducer("fleet/Mailer@1", key="k", events=["fleet/Send@1"])(_mailer)
    return m


mailing = mail()


def _slow(ctx: Any, state: Any, event: Any) -> Any:
    """About ``event.value["work"]`` iterations of pure-Python work (the fleet bench's reducer)."""
    x = 0
    for i in range(event.value["work"]):
        x = (x * 31 + i) % 1_000_003
    return (state or 0) + 1 + (x & 0)


def slow() -> aos.Manifest:
    m = aos.Manifest("fleet/slow@1")
    m.reducer("fleet/Slow@1", key="k", events=["fleet/Work@1"])(_slow)
    return m


slowing = slow()


def broken() -> aos.Manifest:
    raise RuntimeError("this manifest cannot be built")
