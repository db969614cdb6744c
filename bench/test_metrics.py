"""Kernel throughput with the Prometheus exporter scraped every 100 ms, and without it (pytest-benchmark).

The same workload as ``test_kernel.py`` (counter reducer, 10,000 cells,
durable, inline); ``metrics_overhead`` in ``report.py`` is the ratio of the
two. The collector is read in-process on a thread (no server is started).
"""

from __future__ import annotations

from typing import Any

import pytest

from workloads import MetricsRun


@pytest.mark.parametrize("scraping", [False, True], ids=["exporter-off", "exporter-scraped-100ms"])
def test_kernel_with_metrics_exporter(benchmark: Any, scraping: bool) -> None:
    pytest.importorskip("prometheus_client", reason="prometheus-client is not installed (aos-kernel[prometheus])")
    wl = MetricsRun(events=50_000, scraping=scraping)
    holder: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if "w" in holder:
            wl.finish(*holder.pop("w"))
        w, tmp = wl.setup()
        holder["w"] = (w, tmp)
        return (w,), {}

    steps = benchmark.pedantic(wl.run, setup=setup, rounds=5, iterations=1)
    wl.finish(*holder.pop("w"))
    assert steps == wl.events
    benchmark.extra_info["steps_per_s"] = round(steps / benchmark.stats.stats.median)
    benchmark.extra_info["scrapes_last_round"] = wl.scrapes
