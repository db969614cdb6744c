"""A commuting workload for the Ray backend's tests: per-key counters and sums, a fleet-wide total.

Importable by the lanes' actor processes (by reference, ``"fleet_ray_world:manifest"``), so it
lives in its own module. Each step may burn ``spin`` milliseconds of CPU in pure Python, so a
run lasts long enough to be killed in the middle.
"""

from __future__ import annotations

import time
from typing import Any

import aos


def _burn(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    x = 0
    while time.perf_counter() < end:
        x += 1


def make_manifest(name: str = "test/ray-tally@1") -> aos.Manifest:
    m = aos.Manifest(name)

    @m.reducer("test/Tally@1", key="id", events=["test/Add@1"])
    def tally(ctx: Any, state: Any, event: Any) -> Any:
        v = event.value
        _burn(v.get("spin", 0))
        s = state or {"n": 0, "sum": 0, "tags": []}
        tags = sorted(set(s["tags"]) | {v.get("tag", "")})
        return {"n": s["n"] + 1, "sum": s["sum"] + v.get("by", 1), "tags": tags}

    @m.reducer("test/Pass@1", key="id", events=["test/Pass@1"])
    def passer(ctx: Any, state: Any, event: Any) -> Any:
        """Passes an amount on to other keys (cross-lane messages in a fleet, mostly)."""
        v = event.value
        for to in v["to"]:
            ctx.emit("test/Add@1", {"id": to, "by": v["by"], "tag": f"from-{ctx.key}", "spin": v.get("spin", 0)})
        return (state or 0) + len(v["to"])

    @m.reducer("test/Total@1", events=["test/Add@1"])
    def total(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + event.value.get("by", 1)

    return m


manifest = make_manifest()
