"""A small world and versions of its code for the shadow-run tests (importable by ``aos shadow --manifest``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import aos


def counter_v1(ctx: Any, state: Any, event: Any) -> Any:
    state = state or {"n": 0, "receipts": 0}
    if event.schema == "sys/Receipt@1":
        state["receipts"] += 1
        return state
    v = event.value
    state["n"] += v["n"]
    if v.get("fwd"):
        ctx.emit("t/Total@1", {"id": ctx.key, "n": state["n"]})
    if v.get("mail"):
        ctx.effect("blob.put", {"data": f"mail {ctx.key} {v['n']}".encode()}, cost=1)
    return state


def counter_v2(ctx: Any, state: Any, event: Any) -> Any:  # cell "b" counts double
    state = state or {"n": 0, "receipts": 0}
    if event.schema == "sys/Receipt@1":
        state["receipts"] += 1
        return state
    v = event.value
    state["n"] += 2 * v["n"] if ctx.key == "b" else v["n"]
    if v.get("fwd"):
        ctx.emit("t/Total@1", {"id": ctx.key, "n": state["n"]})
    if v.get("mail"):
        ctx.effect("blob.put", {"data": f"mail {ctx.key} {v['n']}".encode()}, cost=1)
    return state


def counter_fails(ctx: Any, state: Any, event: Any) -> Any:  # raises on one input of cell "a"
    state = state or {"n": 0, "receipts": 0}
    if event.schema == "sys/Receipt@1":
        state["receipts"] += 1
        return state
    v = event.value
    if ctx.key == "a" and v["n"] == 3:
        raise ValueError("three is not allowed")
    state["n"] += v["n"]
    if v.get("fwd"):
        ctx.emit("t/Total@1", {"id": ctx.key, "n": state["n"]})
    if v.get("mail"):
        ctx.effect("blob.put", {"data": f"mail {ctx.key} {v['n']}".encode()}, cost=1)
    return state


def counter_chatty(ctx: Any, state: Any, event: Any) -> Any:  # cell "c" also reports every total
    state = state or {"n": 0, "receipts": 0}
    if event.schema == "sys/Receipt@1":
        state["receipts"] += 1
        return state
    v = event.value
    state["n"] += v["n"]
    if v.get("fwd") or ctx.key == "c":
        ctx.emit("t/Total@1", {"id": ctx.key, "n": state["n"]})
    if v.get("mail"):
        ctx.effect("blob.put", {"data": f"mail {ctx.key} {v['n']}".encode()}, cost=1)
    return state


def totals(ctx: Any, state: Any, event: Any) -> Any:
    state = state or {}
    state[event.value["id"]] = event.value["n"]
    return state


def build(counter: Callable[..., Any] = counter_v1, budget: int = 1_000, with_totals: bool = True) -> aos.Manifest:
    m = aos.Manifest("test/shadow@1")
    m.capability("mail", effect="blob.put", budget=budget)
    m.reducer("t/Counter@1", key="id", events=["t/Add@1"])(counter)
    if with_totals:
        m.reducer("t/Totals@1", events=["t/Total@1"])(totals)
    else:
        m.schema("t/Total@1")
    return m


v1 = build()
v2 = build(counter_v2)
fails = build(counter_fails)
chatty = build(counter_chatty)
tight = build(budget=1)  # budget for one mail: later mails are denied


def inputs(count: int, fwd: bool = False) -> list[dict[str, Any]]:
    """Inputs over cells a, b, c; every fifth one asks for a mail."""
    return [{"id": "abc"[i % 3], "n": i, "mail": i % 5 == 0, "fwd": fwd} for i in range(count)]


def make_world(path: Path, count: int = 30, fwd: bool = False, snapshot_every: int = 0,
               manifest: aos.Manifest = v1) -> Path:
    with aos.World.open(path, manifest, workers=0, effects="inline", snapshot_every=snapshot_every) as w:
        for value in inputs(count, fwd):
            w.submit("t/Add@1", value)
        w.run()
    return path
