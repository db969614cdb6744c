"""Typed values: the counter of test_kernel with a dataclass state and event, against it on dicts.

``typed_vs_dict`` (bench/report.py) is the dict run's time over the typed run's
(the typed throughput as a fraction of the dict throughput); its goal is ≥ 0.8.
"""

from __future__ import annotations

from typing import Any

import pytest

from workloads import TypedRun


@pytest.mark.parametrize("typed", [True, False], ids=["dataclass", "dict"])
def test_typed_counter_10k_cells(benchmark: Any, typed: bool) -> None:
    wl = TypedRun(events=20_000, durability="none", typed=typed)
    holder: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if "w" in holder:
            TypedRun.teardown(*holder.pop("w"))
        w, tmp = wl.setup()
        holder["w"] = (w, tmp)
        return (w,), {}

    steps = benchmark.pedantic(wl.run, setup=setup, rounds=5, iterations=1)
    TypedRun.teardown(*holder.pop("w"))
    assert steps == wl.events
    benchmark.extra_info["steps_per_s"] = round(steps / benchmark.stats.stats.median)
    benchmark.extra_info["typed"] = typed
