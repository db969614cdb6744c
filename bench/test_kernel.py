"""Serial kernel throughput: counter reducer over 10,000 keyed cells, durability on.

Run with ``python -m pytest bench`` (pytest-benchmark). The figure is the
time of ``World.run()`` for the queued steps; steps/s is in extra_info.
"""

from __future__ import annotations

from typing import Any

import pytest

from workloads import KernelRun


@pytest.mark.parametrize("durability", ["group", "none"])
def test_serial_kernel_counter_10k_cells(benchmark: Any, durability: str) -> None:
    wl = KernelRun(events=20_000, durability=durability)
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
