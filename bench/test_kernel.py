"""Serial kernel throughput: counter reducer over 10,000 keyed cells, durability on.

Run with ``python -m pytest bench`` (pytest-benchmark). The figure is the
time of ``World.run()`` for the queued steps; steps/s is in extra_info.
"""

from __future__ import annotations

from typing import Any

import pytest

from workloads import KernelRun


@pytest.mark.parametrize("durability, workers", [("group", 0), ("none", 0), ("group", 1)],
                         ids=["group-inline", "none-inline", "group-threads1"])
def test_serial_kernel_counter_10k_cells(benchmark: Any, durability: str, workers: int) -> None:
    """Inline (the serial kernel), and the threads executor with one worker on the same load."""
    wl = KernelRun(events=20_000, durability=durability, workers=workers)
    holder: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if "w" in holder:
            KernelRun.teardown(*holder.pop("w"))
        w, tmp = wl.setup()
        holder["w"] = (w, tmp)
        return (w,), {}

    steps = benchmark.pedantic(wl.run, setup=setup, rounds=5, iterations=1)
    KernelRun.teardown(*holder.pop("w"))
    assert steps == wl.events
    benchmark.extra_info["steps"] = steps
    benchmark.extra_info["steps_per_s"] = round(steps / benchmark.stats.stats.median)
    benchmark.extra_info["durability"] = durability
    benchmark.extra_info["workers"] = workers
