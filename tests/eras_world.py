"""Two versions of a small shop, for the era tests (importable by child processes and `--manifest`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aos


def v1_manifest() -> aos.Manifest:
    m = aos.Manifest("test/shop@1")
    m.capability("timers", effect="timer.set", budget=1_000)

    @m.reducer("test/Order@1", key="id", events=["test/Placed@1", "test/Paid@1"])
    def order(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"n": 0}
        if event.schema == "test/Placed@1":
            ctx.emit("test/Paid@1", {"id": event.value["id"]})
        return {"n": state["n"] + 1, "by": ctx.rng.randint(0, 1000)}

    @m.reducer("test/Audit@1", events=["test/Placed@1"])
    def audit(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    return m


def v2_manifest(budget: int = 5_000) -> aos.Manifest:
    """Order's state is reshaped ({"count": ...}), Audit is removed, a Refund reducer is added."""
    m = aos.Manifest("test/shop@1")
    m.capability("timers", effect="timer.set", budget=budget)

    @m.reducer("test/Order@1", key="id", events=["test/Placed@1", "test/Paid@1"])
    def order(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"count": 0}
        if event.schema == "test/Placed@1":
            ctx.emit("test/Paid@1", {"id": event.value["id"]})
        return {"count": state["count"] + 1}

    @m.reducer("test/Refund@1", key="id", events=["test/Refunded@1"])
    def refund(ctx: Any, state: Any, event: Any) -> Any:
        return {"refunded": True}

    return m


def to_v2(state: Any) -> Any:
    return {"count": state["n"]}


v1 = v1_manifest()
v2 = v2_manifest()


def fill(path: Any, workers: int = 0, orders: int = 12) -> None:
    with aos.World.open(path, v1_manifest(), workers=workers) as w:
        for i in range(orders):
            w.submit("test/Placed@1", {"id": f"o{i % 5}"})
        w.run()


def after(path: Any, workers: int = 0) -> None:
    with aos.World.open(path, v2_manifest(), workers=workers) as w:
        for i in range(6):
            w.submit("test/Placed@1", {"id": f"o{i % 7}"})
        w.submit("test/Refunded@1", {"id": "o1"})
        w.run()


if __name__ == "__main__":  # python eras_world.py WORLD POINT: an upgrade killed (-9) at POINT of the apply
    import os
    import signal

    from aos.eras import apply

    def kill(point: str) -> None:
        if point == sys.argv[2]:
            os.kill(os.getpid(), signal.SIGKILL)

    w = aos.World.open(Path(sys.argv[1]), v1_manifest(), effects="manual")
    pid = w.propose(v2_manifest())
    w.approve(pid, by="test")
    apply(w, pid, v2_manifest(), migrate={"test/Order@1": to_v2}, drop=["test/Audit@1"], _fail=kill)
    print("applied", flush=True)


def effect_manifest(version: int, budget: int) -> aos.Manifest:
    """A cell that sets a timer and notes its receipt with the version of the code that received it."""
    m = aos.Manifest("test/timers@1")
    m.capability("timers", effect="timer.set", budget=budget)

    @m.reducer("test/Waiter@1", key="id", events=["test/Wait@1"])
    def waiter(ctx: Any, state: Any, event: Any) -> Any:
        if event.schema == "sys/Receipt@1":
            return dict(state, got=event.value["status"], by=version)
        ctx.effect("timer.set", {"after_ms": 5}, cap="timers", cost=3)
        return {"waiting": True}

    return m
