"""Fleets of local lanes (pytest-benchmark): the Python spin reducer (≈ 1 ms per step) on 1, 2 and
as many lanes as the machine has cores, each lane a process; compare with ``test_python_spin[0]``
(one world inline) in ``test_scaling.py``. Cross-lane messages: pings fanning out pongs on 2 lanes.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from test_scaling import bench_world
from workloads import CrossLaneRun, FleetSpinRun

LANES = sorted({1, 2, min(os.cpu_count() or 1, 16)})


@pytest.mark.parametrize("lanes", LANES)
def test_fleet_python_spin(benchmark: Any, lanes: int) -> None:
    steps = 600 * max(lanes, 2)
    assert bench_world(benchmark, FleetSpinRun(lanes=lanes, steps=steps), rounds=2) == steps


def test_cross_lane_messages(benchmark: Any) -> None:
    wl = CrossLaneRun(lanes=2, pings=1_000)
    messages = bench_world(benchmark, wl, rounds=2)
    benchmark.extra_info["messages_per_s"] = round(messages / benchmark.stats.stats.median)
    assert messages > 0
