"""Live metrics: the breakdowns of World.metrics(), the OpenTelemetry instruments, the Prometheus endpoint.

The scrape tests start a real HTTP server on 127.0.0.1: they run only inside a
network namespace whose only interface is loopback (CI runs this file under
``shared/tools/loopback-only.sh`` with ``AOS_REQUIRE_LOOPBACK_TESTS=1``, which also
turns a missing ``prometheus-client`` into a failure); elsewhere they skip.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.exporter import families, instrument, serve_prometheus
from aos.journal import JournalReader
from aos.records import StepFailed, StepScheduled
from effects_world import effects_manifest

LOOPBACK = os.environ.get("AOS_REQUIRE_LOOPBACK_TESTS") == "1"


def manifest(slow: threading.Event | None = None) -> aos.Manifest:
    m = aos.Manifest("test/metrics@1")

    @m.reducer("test/Urgent@1", key="k", events=["test/Tick@1"], priority=0)
    def urgent(ctx: Any, state: Any, event: Any) -> Any:
        if event.value.get("boom"):
            raise ValueError("boom")
        return (state or 0) + 1

    @m.reducer("test/Batch@1", key="k", events=["test/Tick@1", "test/Slow@1"], priority=2)
    def batch(ctx: Any, state: Any, event: Any) -> Any:
        if event.schema == "test/Slow@1" and slow is not None:
            slow.wait(10)  # held until the test lets it go
        return (state or 0) + 1

    return m


def fill(w: aos.World, n: int = 300) -> None:
    for i in range(n):
        w.submit("test/Tick@1", {"k": i % 7, "boom": i % 50 == 0})


def scheduled_by_reducer(path: Path, m: aos.Manifest) -> tuple[Counter[str], Counter[str]]:
    steps: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for _e, r in JournalReader(path / "journal", m.era).records():
        if isinstance(r, StepScheduled):
            steps[r.reducer] += 1
        elif isinstance(r, StepFailed):
            failed[r.reducer] += 1
    return steps, failed


# ------------------------------------------------------------ World.metrics()
@pytest.mark.parametrize("workers", [0, 3])
def test_steps_failures_and_waits_per_reducer_and_class_match_the_journal(tmp_path: Path, workers: int) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=workers) as w:
        fill(w)
        w.run()
        got = w.metrics()
    steps, failed = scheduled_by_reducer(tmp_path / "w", m)
    assert steps == {"test/Urgent@1": 300, "test/Batch@1": 300} and failed == {"test/Urgent@1": 6}
    by = got["by_reducer"]
    assert {name: r["steps"] for name, r in by.items()} == steps
    assert {name: r["failures"] for name, r in by.items()} == {"test/Urgent@1": 6, "test/Batch@1": 0}
    assert by["test/Urgent@1"]["priority"] == 0 and by["test/Batch@1"]["priority"] == 2
    classes = got["by_priority"]
    assert [c["priority"] for c in classes] == [0, 1, 2, 3]
    assert [c["steps"] for c in classes] == [300, 0, 300, 0]
    assert [c["failures"] for c in classes] == [6, 0, 0, 0]
    # the breakdowns add up to the totals
    assert sum(c["steps"] for c in classes) == got["commits"] + got["failures"] == got["tickets"]
    assert sum(c["wait_ticks"] for c in classes) == pytest.approx(got["wait_ticks"]["mean"] * got["tickets"])
    assert max(c["wait_max"] for c in classes) == got["wait_ticks"]["max"]
    assert {c["priority"]: c["wait_ticks"] for c in classes if c["steps"]} == \
        {r["priority"]: r["wait_ticks"] for r in by.values()}
    # priority 0 is served first: its inputs wait less than the batch class's
    assert classes[0]["wait_ticks"] < classes[2]["wait_ticks"]


def test_breakdowns_are_the_same_for_every_worker_count(tmp_path: Path) -> None:
    seen = []
    for workers in (0, 1, 4):
        with aos.World.open(tmp_path / f"w{workers}", manifest(), workers=workers) as w:
            fill(w)
            w.run()
            m = w.metrics()
            seen.append((m["by_reducer"], [{k: v for k, v in c.items() if k != "ready_cells"}
                                           for c in m["by_priority"]]))
    assert seen[0] == seen[1] == seen[2]


def test_per_reducer_counts_go_on_after_a_reopen_from_a_snapshot(tmp_path: Path) -> None:
    m = manifest()
    with aos.World.open(tmp_path / "w", m) as w:
        fill(w, 70)
        w.run()
        w.snapshot()
    with aos.World.open(tmp_path / "w", m) as w:  # the sequencer comes from the snapshot
        fill(w, 14)
        w.run()
        by = w.metrics()["by_reducer"]
    assert by["test/Urgent@1"]["steps"] == 14 and by["test/Batch@1"]["steps"] == 14


def test_receipts_are_counted_by_status(tmp_path: Path) -> None:
    with aos.World.open(tmp_path / "w", effects_manifest(), effects="manual") as w:
        w.submit("test/Pay@1", {"id": "a", "costs": [1, 2, 3]})
        w.run()
        first, second, third = w.pending_effects()
        w.submit_receipt(w.receipt(first.intent_hash, "ok", None, cost=1))
        w.submit_receipt(w.receipt(second.intent_hash, "error", None, cost=0))
        w.submit_receipt(w.receipt(third.intent_hash, "ok", None, cost=3))
        with pytest.raises(aos.ReceiptError):
            w.submit_receipt(w.receipt(bytes(range(32)), "ok", None, 0))
        w.run()
        fx = w.metrics()["effects"]
    assert fx["receipts"] == {"error": 1, "ok": 2}


def test_a_closed_world_has_no_metrics_to_export(tmp_path: Path) -> None:
    from aos.exporter import MetricsReader
    w = aos.World.open(tmp_path / "w", manifest())
    reader = MetricsReader(w)
    assert reader.families()  # open: every family
    w.close()
    assert reader.families() == []
    with pytest.raises(aos.ArgumentError, match="timeout"):
        MetricsReader(w, timeout=0)


# -------------------------------------------------------------- OpenTelemetry
def otel_points(reader: Any) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = [(dict(p.attributes), p.value) for p in metric.data.data_points]
    return out


def test_opentelemetry_instruments_read_the_world_metrics(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.metrics", reason="opentelemetry-sdk is not installed (aos-kernel[otel])")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with aos.World.open(tmp_path / "w", manifest(), workers=2) as w:
        made = instrument(w, provider.get_meter("aos-test"))
        assert len(made) == len([f for f in families(w.metrics()) if f.kind != "histogram"]) + 2
        fill(w)
        w.run()
        points = otel_points(reader)
        m = w.metrics()
    assert points["aos.commits"] == [({}, m["commits"])]
    assert points["aos.failures"] == [({}, 6)]
    assert sorted(points["aos.steps"], key=repr) == sorted([
        ({"reducer": "test/Urgent@1", "priority": "0"}, 300), ({"reducer": "test/Batch@1", "priority": "2"}, 300)],
        key=repr)
    assert ({"reducer": "test/Urgent@1", "priority": "0"}, 6) in points["aos.step_failures"]
    assert sorted(points["aos.class_steps"], key=repr) == sorted(
        [({"priority": str(c)}, n) for c, n in enumerate([300, 0, 300, 0])], key=repr)
    assert points["aos.queue_queued"] == [({}, 0)]
    assert points["aos.commit_latency.p99"] == [({}, m["commit_latency_us"]["p99"] / 1e6)]
    provider.shutdown()


# ----------------------------------------------------------------- Prometheus
def needs_loopback() -> Any:
    """The scrape tests: they run inside the loopback-only namespace (where prometheus-client must be there)."""
    if not LOOPBACK:
        pytest.skip("starts an HTTP server: runs inside shared/tools/loopback-only.sh (AOS_REQUIRE_LOOPBACK_TESTS=1)")
    try:
        import prometheus_client.parser
    except ImportError as exc:
        pytest.fail(f"the scrape tests must run here, but prometheus-client is missing: {exc}")
    return prometheus_client.parser


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    parser = needs_loopback()
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in parser.text_string_to_metric_families(body):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_bad_arguments_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with aos.World.open(tmp_path / "w", manifest()) as w:
        for port in (-1, 65536, "9100", 1.5, True):
            with pytest.raises(aos.ArgumentError, match="port"):
                serve_prometheus(w, port)  # type: ignore[arg-type]
        with pytest.raises(aos.ArgumentError, match="address"):
            serve_prometheus(w, 0, addr="")


def test_scrape_a_running_world_over_http(tmp_path: Path) -> None:
    needs_loopback()
    m = manifest()
    with aos.World.open(tmp_path / "w", m, workers=2) as w, serve_prometheus(w, 0) as server:
        assert server.addr == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/metrics"
        assert server._httpd.socket.getsockname()[0] == "127.0.0.1"  # loopback only
        fill(w, 3000)
        runner = threading.Thread(target=w.run)
        runner.start()
        during = [scrape(server.url) for _ in range(5)]  # while run() goes on on another thread
        runner.join()
        after = scrape(server.url)
        final = w.metrics()
    for s in during + [after]:
        steps = sum(s.get("aos_steps_total", {}).values())
        assert steps == sum(s["aos_class_steps_total"].values())
        assert steps == s["aos_commits_total"][()] + s["aos_failures_total"][()]  # one consistent reading
        assert s["aos_commit_latency_seconds_bucket"][(("le", "+Inf"),)] == steps
    assert after["aos_steps_total"] == {(("priority", "0"), ("reducer", "test/Urgent@1")): 3000.0,
                                        (("priority", "2"), ("reducer", "test/Batch@1")): 3000.0}
    assert after["aos_step_failures_total"][(("priority", "0"), ("reducer", "test/Urgent@1"))] == 60
    assert after["aos_class_steps_total"][(("priority", "2"),)] == 3000
    assert after["aos_commits_total"][()] == final["commits"] == 5940
    assert after["aos_queue_queued"][()] == 0 and after["aos_queue_queued_max"][()] >= 3000
    buckets = after["aos_commit_latency_seconds_bucket"]
    assert buckets[(("le", "+Inf"),)] == 6000
    world_buckets = final["commit_latency_us"]["buckets"]  # (upper bound µs, count), powers of two
    for labels, v in buckets.items():
        le = float(dict(labels)["le"])
        assert v == sum(n for bound, n in world_buckets if bound <= le * 1e6 * 1.000001), le
    assert len(buckets) == 15
    assert after["aos_wait_ticks_max"][(("priority", "2"), ("reducer", "test/Batch@1"))] == \
        final["by_reducer"]["test/Batch@1"]["wait_max"]


def test_a_scrape_during_a_long_step_serves_the_last_reading_in_time(tmp_path: Path) -> None:
    needs_loopback()
    slow = threading.Event()
    with aos.World.open(tmp_path / "w", manifest(slow)) as w, serve_prometheus(w, 0, timeout=0.3) as server:
        fill(w, 14)
        w.run()
        first = scrape(server.url)
        assert first["aos_metrics_age_seconds"][()] < 0.3
        w.submit("test/Slow@1", {"k": 1})
        runner = threading.Thread(target=w.run)
        runner.start()
        try:
            time.sleep(0.2)  # the step is now held in the reducer: no quiet point comes
            t0 = time.monotonic()
            stale = scrape(server.url)
            took = time.monotonic() - t0
        finally:
            slow.set()
            runner.join()
        fresh = scrape(server.url)
    assert took < 2.0
    assert stale["aos_steps_total"] == first["aos_steps_total"]  # the reading before the long step
    assert stale["aos_metrics_age_seconds"][()] >= 0.2
    assert fresh["aos_steps_total"][(("priority", "2"), ("reducer", "test/Batch@1"))] == 15


def test_a_taken_port_is_a_typed_error(tmp_path: Path) -> None:
    needs_loopback()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with aos.World.open(tmp_path / "w", manifest()) as w:
            with pytest.raises(aos.ExporterError, match=f"127.0.0.1:{port}"):
                serve_prometheus(w, port)


def test_a_closed_world_scrapes_empty(tmp_path: Path) -> None:
    needs_loopback()
    w = aos.World.open(tmp_path / "w", manifest())
    with serve_prometheus(w, 0) as server:
        assert "aos_commits_total" in scrape(server.url)
        w.close()
        assert scrape(server.url) == {}


# ------------------------------------------------------------------ aos metrics
def test_aos_metrics_shows_each_class_and_reducer_of_the_last_session(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from aos.cli import cli

    with aos.World.open(tmp_path / "w", manifest()) as w:
        fill(w)
        w.run()
    out = CliRunner().invoke(cli, ["metrics", str(tmp_path / "w")], catch_exceptions=False).output
    lines = out.splitlines()
    assert lines[0].startswith("executor        inline")  # the label column as wide as before
    assert [x.split("  ")[0] for x in lines if x.startswith(("class", "reducer"))] == \
        ["class 0", "class 2", "reducer", "reducer"]
    assert "reducer         test/Batch@1  300 steps, 0 failed; wait mean" in out
    assert "reducer         test/Urgent@1  300 steps, 6 failed; wait mean" in out
    assert "effects         dispatched 0, receipts none, refused 0; outstanding 0" in out
