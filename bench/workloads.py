"""Benchmark workloads, each defined once and shared by benchmarks and reports."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aos

CELLS = 10_000


def counter_manifest() -> aos.Manifest:
    m = aos.Manifest("bench/counter@1")

    @m.reducer("bench/Counter@1", key="id", events=["bench/Inc@1"])
    def counter(ctx: Any, state: Any, event: Any) -> Any:
        return {"n": (state or {"n": 0})["n"] + event.value["by"]}

    return m


def counter_events(n: int, cells: int = CELLS) -> list[tuple[str, dict[str, Any]]]:
    return [("bench/Inc@1", {"id": f"c{(i * 7919) % cells}", "by": 1 + i % 7}) for i in range(n)]


@dataclass
class KernelRun:
    """A fresh world with ``events`` queued over ``cells`` counter cells, durability on."""

    events: int = 20_000
    cells: int = CELLS
    durability: str = "group"

    def setup(self) -> tuple[aos.World, Path]:
        tmp = Path(tempfile.mkdtemp(prefix="aos-bench-"))
        w = aos.World.open(tmp / "w", counter_manifest(), durability=self.durability,
                           snapshot_every=0, snapshot_on_close=False)
        for schema, value in counter_events(self.events, self.cells):
            w.submit(schema, value)
        w.sync()
        return w, tmp

    def run(self, w: aos.World) -> int:
        return w.run().steps

    @staticmethod
    def teardown(w: aos.World, tmp: Path) -> None:
        w.close()
        shutil.rmtree(tmp, ignore_errors=True)
