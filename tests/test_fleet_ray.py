"""The Ray fleet backend: lanes as Ray actors on a simulated 2-node cluster, killed and moved.

The tests that start Ray run only inside a network namespace whose only
interface is loopback (``../shared/tools/loopback-only.sh``, as CI runs
them), so the cluster they start can bind nothing but 127.0.0.1; elsewhere
they are skipped, as they are where Ray is not installed. The cluster is
started once for the module (about 15-30 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.lane import Lane
from aos.lane_host import LaneSpec

TESTS = str(Path(__file__).parent)
MANIFEST = "fleet_ray_world:manifest"
sys.path.insert(0, TESTS)
import fleet_ray_world  # noqa: E402


def loopback_only() -> bool:
    """Whether this process runs in a network namespace whose only interface is loopback."""
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


def cannot_start_ray(why: str) -> None:
    """Skip — or fail, where the Ray tests must run (CI sets ``AOS_REQUIRE_RAY_TESTS=1``)."""
    if os.environ.get("AOS_REQUIRE_RAY_TESTS") == "1":
        pytest.fail(f"the Ray tests must run here, but {why}")
    pytest.skip(why)


# ---------------------------------------------------------------- without Ray
def test_importing_aos_and_the_backend_does_not_import_ray():
    code = "import sys, aos, aos.fleet_ray; assert 'ray' not in sys.modules, 'ray was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_ray_the_backend_is_a_typed_error(monkeypatch):
    from aos.fleet_ray import RayBackend

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(aos.FleetError, match=r"aos-kernel\[ray\]"):
        RayBackend()


def test_a_fleet_on_ray_without_ray_is_a_typed_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(aos.FleetError, match=r"pip install 'aos-kernel\[ray\]'"):
        aos.Fleet.open(tmp_path / "f", MANIFEST, lanes=2, backend="ray")


# ---------------------------------------------------------------- the cluster
class SimCluster:
    def __init__(self) -> None:
        import ray
        from ray.cluster_utils import Cluster

        self.ray = ray
        self.node_args = {"num_cpus": 4, "object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}
        t0 = time.monotonic()
        self.cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **self.node_args})
        self.worker = self.cluster.add_node(**self.node_args)
        ray.init(address=self.cluster.address, log_to_driver=False, logging_level="warning")
        self.start_seconds = time.monotonic() - t0

    def replace_worker(self) -> None:
        """Remove the worker node (every process on it dies) and add a fresh one."""
        self.cluster.remove_node(self.worker)
        self.worker = self.cluster.add_node(**self.node_args)

    def close(self) -> None:
        self.ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def sim() -> Any:
    try:
        import ray  # noqa: F401
    except ImportError:
        cannot_start_ray("Ray is not installed (pip install 'aos-kernel[ray]')")
    if not loopback_only():
        cannot_start_ray("these tests start a Ray cluster: run them inside ../shared/tools/loopback-only.sh "
                         "(a network namespace whose only interface is loopback)")
    c = SimCluster()
    print(f"\nsimulated 2-node Ray cluster up in {c.start_seconds:.1f} s")
    yield c
    c.close()


def backend(**options: Any) -> Any:
    from aos.fleet_ray import RayBackend

    return RayBackend(**options)


def spec(path: Path, manifest: str = MANIFEST) -> LaneSpec:
    return LaneSpec(str(path), Lane(), manifest, {})  # the backend adds this process's sys.path


def fill(path: Path, events: list[dict[str, Any]]) -> None:
    """A world with ``events`` submitted (durable) and not yet run."""
    with aos.World.open(path, fleet_ray_world.manifest) as w:
        for v in events:
            w.submit("test/Add@1", v)


def oracle(tmp_path: Path, events: list[dict[str, Any]]) -> tuple[list[Any], str]:
    """The inline world's cells and state hash after running ``events``."""
    with aos.World.open(tmp_path / "oracle", fleet_ray_world.manifest, workers=0) as w:
        for v in events:
            w.submit("test/Add@1", v)
        w.run()
        return w.cells(), w.snapshot_hash()


def workload(n: int, spin: float = 0) -> list[dict[str, Any]]:
    return [{"id": i % 11, "by": i, "tag": f"t{i % 3}", "spin": spin} for i in range(n)]


# ---------------------------------------------------------------- the backend on plain worlds
@pytest.mark.slow
def test_lanes_run_as_actors_and_match_the_inline_oracle(sim, tmp_path):
    events = workload(120)
    cells, h = oracle(tmp_path, events)
    paths = [tmp_path / f"lane{i}" for i in range(2)]
    for p in paths:
        fill(p, events)
    b = backend()
    b.start([spec(p) for p in paths])
    try:
        runs = b.call_many({0: ("run", ()), 1: ("run", ())})
        assert [r["steps"] for r in runs.values()] == [2 * len(events)] * 2
        assert b.call_many({0: ("cells", ()), 1: ("cells", ())}) == {0: cells, 1: cells}
        assert b.call(1, "snapshot_hash") == h
        # An error the lane's method raises comes back as it is, typed.
        with pytest.raises(aos.UnknownReducerError):
            b.call(0, "state", "test/Nope@1", None)
        with pytest.raises(aos.FleetError, match="no lane host method"):
            b.call(0, "__init__")
        with pytest.raises(aos.FleetError, match="no lane 7"):
            b.call(7, "run")
        assert {b.where(0)["pid"], b.where(1)["pid"]} != {os.getpid()}
    finally:
        b.close()
    with pytest.raises(aos.FleetClosedError):
        b.call(0, "run")
    for p in paths:
        assert aos.replay(p, fleet_ray_world.manifest).verify()


@pytest.mark.slow
def test_a_lane_that_cannot_open_is_named(sim, tmp_path):
    b = backend()
    with pytest.raises(aos.LaneUnavailableError, match="lane 1 .*cannot be opened") as err:
        b.start([spec(tmp_path / "a"), LaneSpec(str(tmp_path / "b"), Lane(), "fleet_ray_world:nothing", {})])
    assert err.value.lane == 1
    b.close()


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_and_repeats_nothing(sim, tmp_path):
    events = workload(300, spin=8)  # about 5 s of steps
    cells, h = oracle(tmp_path, events)
    fill(tmp_path / "lane", events)
    b = backend()
    b.start([spec(tmp_path / "lane")])
    try:
        pid = b.where(0)["pid"]
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.update(b.call(0, "run")))
        runner.start()
        time.sleep(1.5)
        assert runner.is_alive()
        b.kill(0)  # SIGKILL, in the middle of the run
        runner.join(120)
        assert not runner.is_alive()
        assert b.where(0)["pid"] != pid  # a new process reopened the lane from its journal
        assert 0 < result["steps"] < 2 * len(events)  # the retried run finished what the first began
        assert b.call(0, "cells") == cells  # every acknowledged event counted exactly once
        assert b.call(0, "snapshot_hash") == h
    finally:
        b.close()
    assert aos.replay(tmp_path / "lane", fleet_ray_world.manifest).verify()


@pytest.mark.slow
def test_a_removed_node_moves_its_lanes_and_a_pinned_lane_is_unavailable(sim, tmp_path):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    events = workload(200, spin=5)
    cells, h = oracle(tmp_path, events)
    for i in range(2):
        fill(tmp_path / f"lane{i}", events)
    worker = sim.worker.node_id
    # Lane 0 is pinned to the worker node (its directory "is on that node's disk"); lane 1 only starts there.
    b = backend(placement={0: worker, 1: NodeAffinitySchedulingStrategy(worker, soft=True)}, restart_timeout=8)
    b.start([spec(tmp_path / "lane0"), spec(tmp_path / "lane1")])
    try:
        assert b.where(0)["node_id"] == b.where(1)["node_id"] == worker
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.update(b.call(1, "run")))
        runner.start()
        time.sleep(1.0)
        assert runner.is_alive()
        sim.replace_worker()  # every process on the node dies with it
        runner.join(120)
        assert not runner.is_alive()
        assert b.where(1)["node_id"] != worker  # restarted elsewhere, reopened from its journal
        assert b.call(1, "cells") == cells and b.call(1, "snapshot_hash") == h
        with pytest.raises(aos.LaneUnavailableError, match="lane 0") as err:
            b.call(0, "run")
        assert err.value.lane == 0
    finally:
        b.close()
    for i in range(2):
        assert aos.replay(tmp_path / f"lane{i}", fleet_ray_world.manifest).verify()


# ---------------------------------------------------------------- the fleet on Ray
needs_lane_worlds = pytest.mark.skipif(not hasattr(aos.World, "accept"), reason="needs lane worlds (World.accept)")


def fleet_inputs(n: int, spin: float = 0) -> list[tuple[str, dict[str, Any]]]:
    """Keyed adds, and passes that emit adds to keys mostly held by other lanes."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        out.append(("test/Add@1", {"id": i % 17, "by": i, "tag": f"t{i % 5}", "spin": spin}))
        if i % 4 == 0:
            out.append(("test/Pass@1", {"id": i % 7, "by": i, "to": [(i + 3) % 17, (i + 8) % 17], "spin": spin}))
    return out


def oracle_states(tmp_path: Path, inputs: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    with aos.World.open(tmp_path / "oracle", fleet_ray_world.manifest, workers=0) as w:
        for schema, v in inputs:
            w.submit(schema, v)
        w.run()
        return fleet_view(w)


def fleet_view(x: Any) -> list[Any]:
    """Every cell's state, read one by one (a world and a fleet answer the same calls)."""
    cells = [("test/Tally@1", k) for k in range(17)] + [("test/Pass@1", k) for k in range(7)]
    return [x.state(r, k) for r, k in cells] + [x.state("test/Total@1")]


@needs_lane_worlds
@pytest.mark.slow
@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_a_fleet_on_ray_matches_the_inline_oracle(sim, tmp_path, lanes):
    inputs = fleet_inputs(150)
    want = oracle_states(tmp_path, inputs)
    path = tmp_path / "fleet"
    with aos.Fleet.open(path, MANIFEST, lanes=lanes, backend="ray") as fleet:
        fleet.submit_many(inputs)
        fleet.run()
        assert fleet_view(fleet) == want
    with aos.Fleet.open(path, MANIFEST) as fleet:  # reopened: the backend stored at creation
        assert fleet.backend.name == "ray"
        assert fleet_view(fleet) == want
    assert len(aos.replay_fleet(path).lanes) == lanes


@needs_lane_worlds
@pytest.mark.slow
def test_a_fleet_on_ray_survives_a_sigkill_and_a_removed_node(sim, tmp_path):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from aos.fleet_ray import RayBackend

    inputs = fleet_inputs(400, spin=6)  # about 700 steps of 6 ms: seconds, even on 4 free cores
    want = oracle_states(tmp_path, inputs)
    worker = sim.worker.node_id
    # Every lane starts on the worker node (its directories are on the shared disk).
    b = RayBackend(placement={i: NodeAffinitySchedulingStrategy(worker, soft=True) for i in range(4)})
    path = tmp_path / "fleet"
    fleet = aos.Fleet.open(path, MANIFEST, lanes=4, backend=b)
    try:
        cut = len(inputs) * 9 // 10
        fleet.submit_many(inputs[:cut])  # acknowledged: durable in their lanes
        pids = {i: b.where(i)["pid"] for i in range(4)}
        result: dict[str, Any] = {}
        def drive() -> None:
            try:
                result["run"] = fleet.run()
            except BaseException as e:  # reported below with its traceback
                result["error"] = e

        runner = threading.Thread(target=drive)
        runner.start()
        time.sleep(0.4)
        assert runner.is_alive()
        fleet.kill(2)  # SIGKILL lane 2's actor process mid-run
        # kill() returns once Ray has reported the process dead, which under load can come after the
        # restarted lane finished its part of the run (the call in flight is retried at once): the
        # run may be over by now. The node goes either way: mid-run, or between two runs.
        if "error" in result:
            raise result["error"]
        sim.replace_worker()  # the node goes, with every lane on it
        runner.join(240)
        if "error" in result:
            raise result["error"]
        assert not runner.is_alive() and "run" in result
        fleet.submit_many(inputs[cut:])  # the fleet carries on
        fleet.run()
        assert all(b.where(i)["pid"] != pids[i] for i in range(4))  # every lane was restarted
        assert all(b.where(i)["node_id"] != worker for i in range(4))
        # Nothing acknowledged lost, nothing counted twice: every cell equals the oracle's.
        assert fleet_view(fleet) == want
    finally:
        fleet.close()
    assert len(aos.replay_fleet(path).lanes) == 4  # every lane replays to its own bytes
