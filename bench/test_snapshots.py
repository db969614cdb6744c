"""Snapshots off the commit path: the longest commit stall while a snapshot is written (background vs synchronous).

Run with ``python -m pytest bench``. The figure is the longest gap between
two consecutive commits (ms) in a run over a world of 100,000 cells during
which a snapshot of all of them is written; ``bench/report.py`` measures it
at 1,000,000 cells (``snapshot_stall_ms_1m_cells``).
"""

from __future__ import annotations

from typing import Any

import pytest

from workloads import SnapshotStall


@pytest.mark.parametrize("background", [True, False], ids=["background", "synchronous"])
def test_snapshot_stall_100k_cells(benchmark: Any, background: bool) -> None:
    wl = SnapshotStall(cells=100_000, steps=60_000, background=background)
    holder: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if "w" in holder:
            SnapshotStall.teardown(*holder.pop("w"))
        w, tmp = wl.setup()
        holder["w"] = (w, tmp)
        return (w,), {}

    stalls = []

    def run(w: Any) -> float:
        stalls.append(wl.run(w))
        return stalls[-1]

    benchmark.pedantic(run, setup=setup, rounds=2, iterations=1)
    SnapshotStall.teardown(*holder.pop("w"))
    benchmark.extra_info["longest_stall_ms"] = round(max(stalls), 1)
    benchmark.extra_info["background"] = background
