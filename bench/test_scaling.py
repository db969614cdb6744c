"""Scaling of the threads executor (pytest-benchmark).

* native reducer (aos.examples.spin, ≈ 200 µs per step) at 0 (inline), 1 and 2 workers;
* the native reducer's events streamed in by a producer thread while ``run()`` goes (2 workers);
* the same loop as a pure-Python reducer (≈ 1 ms per step) at 0, 1 and 2 workers
  (parallel only on free-threaded CPython);
* contention: steps reading a budget that half of them spend vs nobody spends;
* head of line: cold-cell commit latency behind a hot cell 10,000 events deep.

Speed-ups are the ratios of the medians, e.g. ``native[0] / native[2]``.
"""

from __future__ import annotations

import os
import statistics
import sys
from typing import Any

import pytest

from workloads import ContentionRun, SpinRun, StreamingRun, hol_cold_latency

WORKERS = sorted({0, 1, 2, os.cpu_count() or 1})


def bench_world(benchmark: Any, wl: Any, rounds: int = 3) -> int:
    holder: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if "w" in holder:
            w, tmp = holder.pop("w")
            w.close()
        w, tmp = wl.setup()
        holder["w"] = (w, tmp)
        return (w,), {}

    steps = benchmark.pedantic(wl.run, setup=setup, rounds=rounds, iterations=1)
    w, tmp = holder.pop("w")
    benchmark.extra_info["metrics"] = {k: v for k, v in w.metrics().items() if k in ("reexecutions", "validations")}
    w.close()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    benchmark.extra_info["steps"] = steps
    benchmark.extra_info["steps_per_s"] = round(steps / benchmark.stats.stats.median)
    benchmark.extra_info["free_threaded"] = not getattr(sys, "_is_gil_enabled", lambda: True)()
    return steps


@pytest.mark.parametrize("workers", WORKERS)
def test_native_spin(benchmark: Any, workers: int) -> None:
    assert bench_world(benchmark, SpinRun(native=True, workers=workers)) == 4_000


def test_native_spin_streaming(benchmark: Any) -> None:
    """The events of ``test_native_spin[2]`` submitted by a producer thread while the caller loops on ``run()``."""
    assert bench_world(benchmark, StreamingRun(workers=2)) == 4_000


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_python_spin(benchmark: Any, workers: int) -> None:
    assert bench_world(benchmark, SpinRun(native=False, workers=workers, steps=1_000), rounds=2) == 1_000


@pytest.mark.parametrize("high", [False, True], ids=["low", "high"])
def test_budget_contention(benchmark: Any, high: bool) -> None:
    assert bench_world(benchmark, ContentionRun(high=high)) == 2_000


def test_hot_cell_cold_latency(benchmark: Any) -> None:
    lat = benchmark.pedantic(hol_cold_latency, rounds=1, iterations=1)
    benchmark.extra_info["cold_latency_steps_median"] = statistics.median(lat)
    benchmark.extra_info["cold_latency_steps_max"] = max(lat)
    assert len(lat) == 20


@pytest.mark.parametrize("straggler_ms", [0, 20])
def test_straggler(benchmark: Any, straggler_ms: int) -> None:
    """One 20 ms step among 2,000 native 200 µs steps, 2 workers.

    Without an idle barrier the other worker keeps computing other cells'
    steps meanwhile, so the run takes about half the straggler longer, not
    the whole straggler (with a barrier per tick the other worker would idle
    through it).
    """
    wl = SpinRun(native=True, workers=2, steps=2_000)
    slow = straggler_ms / 1000.0

    def setup_with_delay() -> tuple[Any, Any]:
        w, tmp = SpinRun.setup(wl)
        w._executor.delay = (lambda event_id: slow if event_id == 500 else 0.0) if slow else None
        return w, tmp

    wl.setup = setup_with_delay  # type: ignore[method-assign]
    assert bench_world(benchmark, wl) == 2_000
    benchmark.extra_info["straggler_ms"] = straggler_ms
