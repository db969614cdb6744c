"""Live metrics for monitoring systems: Prometheus exposition and OpenTelemetry instruments.

Both read :meth:`aos.World.metrics` — the one source of a world's counters —
when they are asked (a scrape, a collection), never on the step path: a
world that nobody scrapes pays nothing, and a scrape costs one read at the
running thread's next quiet point (every 64 commits at most). A scrape waits
``timeout`` seconds at most for that point; past it, the last reading is
served again and ``aos_metrics_age_seconds`` says how old it is.

:func:`families` turns one reading into named, typed families; the
Prometheus collector and the OpenTelemetry callbacks both serve those, so the
two exporters always carry the same numbers (docs/metrics.md lists them).

* :func:`serve_prometheus` — an HTTP endpoint (``/metrics``) on
  ``127.0.0.1`` by default; needs ``aos-kernel[prometheus]``.
* :func:`prometheus_collector` — the collector alone, for a registry the
  application already serves.
* :func:`instrument` — observable instruments on an OpenTelemetry meter;
  needs ``aos-kernel[otel]``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Literal

from aos.errors import ArgumentError, ExporterError, WorldClosedError

if TYPE_CHECKING:
    from aos.world import World

__all__ = ["Family", "MetricsReader", "MetricsServer", "families", "instrument", "prometheus_collector",
           "serve_prometheus"]

Kind = Literal["counter", "gauge", "histogram"]


@dataclass
class Family:
    """One metric: ``name`` (Prometheus style, without a counter's ``_total``), its kind, help text, and
    ``samples`` as ``(labels, value)``; a histogram's value is its cumulative ``[(upper bound s, count)]``,
    the last bound ``inf``."""

    name: str
    kind: Kind
    help: str
    samples: list[tuple[dict[str, str], Any]] = field(default_factory=list)

    def add(self, value: Any, **labels: Any) -> "Family":
        self.samples.append(({k: "" if v is None else str(v) for k, v in labels.items()}, value))
        return self


def _latency_buckets(m: dict[str, Any]) -> list[tuple[float, int]]:
    """The commit latency histogram, cumulative, in seconds, at every other power of two from 1 µs to 2**26 µs
    (67 s), then ``inf``. Exact: the world's buckets are powers of two (bucket ``2**i`` µs holds latencies
    below it; the last one, ``2**39``, is open-ended)."""
    counts = dict(m["commit_latency_us"]["buckets"])
    out: list[tuple[float, int]] = []
    seen = 0
    for i in range(39):
        seen += counts.get(1 << i, 0)
        if i % 2 == 0 and i <= 26:
            out.append(((1 << i) / 1e6, seen))
    out.append((float("inf"), seen + counts.get(1 << 39, 0)))
    return out


def families(m: dict[str, Any], age: float = 0.0) -> list[Family]:
    """The metric families of one ``World.metrics()`` reading (``age``: seconds since it was taken)."""
    q, fx = m["queue"], m["effects"]
    out = [
        Family("aos_metrics_age_seconds", "gauge", "Seconds since this reading was taken (a scrape that "
               "could not reach the world's quiet point in time serves the last one).").add(round(age, 6)),
        Family("aos_event_id", "gauge", "The last ticket given (event id).").add(m["event_id"]),
        Family("aos_admitted", "counter", "Inputs admitted over the world's life (the next admission "
               "number).").add(m["admitted"]),
        Family("aos_cells", "gauge", "Live cells.").add(m["cells"]),
        Family("aos_journal_records", "gauge", "Records in the journal.").add(m["records"]),
        Family("aos_commits", "counter", "Steps committed since the world was opened.").add(m["commits"]),
        Family("aos_failures", "counter", "Steps that failed since the world was opened.").add(m["failures"]),
        Family("aos_validations", "counter", "Shared reads revalidated at commit.").add(m["validations"]),
        Family("aos_reexecutions", "counter", "Steps computed again after a stale budget read.")
        .add(m["reexecutions"]),
        Family("aos_worker_busy_seconds", "counter", "Seconds the executor spent computing steps.")
        .add(m["worker_busy_seconds"]),
        Family("aos_queue_queued", "gauge", "Inputs queued for cells.").add(q["queued"]),
        Family("aos_queue_queued_max", "gauge", "Most inputs queued at once since the world was opened.")
        .add(q["queued_max"]),
        Family("aos_queue_pending", "gauge", "Inputs waiting for their visibility ticket.").add(q["pending"]),
        Family("aos_queue_ready_cells", "gauge", "Cells ready for a ticket.").add(q["ready_cells"]),
        Family("aos_in_flight_max", "gauge", "Most tickets in flight at once.").add(q["in_flight_max"]),
        Family("aos_effects_outstanding", "gauge", "Effect intents awaiting their receipt.")
        .add(fx["outstanding"]),
        Family("aos_effects_settled", "gauge", "Effect intents settled by a receipt.").add(fx["settled"]),
        Family("aos_effects_dispatched", "counter", "Effect intents handed to adapters since the world was "
               "opened.").add(fx["dispatched"]),
        Family("aos_receipts_refused", "counter", "Receipts refused (bad MAC, unknown intent, over budget...).")
        .add(fx["receipts_refused"]),
        Family("aos_effect_attempts_failed", "counter", "Adapter attempts that raised or timed out under an effect "
               "policy (each retried or dead-lettered).").add(fx["attempts_failed"]),
        Family("aos_effects_dead_lettered", "counter", "Intents whose last attempt failed: a dead-letter receipt "
               "or parked.").add(fx["dead_lettered"]),
    ]
    receipts = Family("aos_receipts", "counter", "Receipts admitted since the world was opened, by status.")
    for status, n in fx["receipts"].items():
        receipts.add(n, status=status)
    out.append(receipts)
    steps = Family("aos_steps", "counter", "Steps (tickets given) since the world was opened, by reducer.")
    failures = Family("aos_step_failures", "counter", "Failed steps since the world was opened, by reducer.")
    waits = Family("aos_wait_ticks", "counter", "Tickets given to other cells while an input of this reducer's "
                   "cells was ready, summed.")
    wait_max = Family("aos_wait_ticks_max", "gauge", "The longest wait in tickets, by reducer.")
    for name, r in m["by_reducer"].items():
        labels = {"reducer": name, "priority": r["priority"]}
        steps.add(r["steps"], **labels)
        failures.add(r["failures"], **labels)
        waits.add(r["wait_ticks"], **labels)
        wait_max.add(r["wait_max"], **labels)
    out += [steps, failures, waits, wait_max]
    c_steps = Family("aos_class_steps", "counter", "Steps since the world was opened, by priority class.")
    c_failures = Family("aos_class_failures", "counter", "Failed steps, by priority class.")
    c_waits = Family("aos_class_wait_ticks", "counter", "Wait ticks summed, by priority class.")
    c_max = Family("aos_class_wait_ticks_max", "gauge", "The longest wait in tickets, by priority class.")
    c_ready = Family("aos_class_ready_cells", "gauge", "Cells ready for a ticket, by priority class.")
    for c in m["by_priority"]:
        c_steps.add(c["steps"], priority=c["priority"])
        c_failures.add(c["failures"], priority=c["priority"])
        c_waits.add(c["wait_ticks"], priority=c["priority"])
        c_max.add(c["wait_max"], priority=c["priority"])
        c_ready.add(c["ready_cells"], priority=c["priority"])
    out += [c_steps, c_failures, c_waits, c_max, c_ready]
    out.append(Family("aos_commit_latency_seconds", "histogram", "Commit latency (ticket given to committed), "
                      "in seconds (buckets of 1 µs to 67 s, by factors of 4).").add(_latency_buckets(m)))
    return out


class MetricsReader:
    """Reads a world's metrics for an exporter, ``timeout`` seconds at most; keeps the last reading.

    ``max_age``: a reading younger than this is served again without asking
    the world (the OpenTelemetry callbacks of one collection share one).
    """

    def __init__(self, world: "World", timeout: float = 2.0, max_age: float = 0.0) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ArgumentError(f"metrics timeout must be a number of seconds > 0, got {timeout!r}")
        self.world = world
        self.timeout = float(timeout)
        self.max_age = float(max_age)
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self._taken = 0.0

    def read(self) -> tuple[dict[str, Any], float] | None:
        """``(metrics, age in seconds)``; None once the world is closed, or before any reading succeeded."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._taken < self.max_age:
                return self._last, time.monotonic() - self._taken
        try:
            m = self.world._inspection.metrics_within(self.timeout)
        except WorldClosedError:
            return None
        with self._lock:
            if m is not None:
                self._last, self._taken = m, time.monotonic()
            if self._last is None:
                return None
            return self._last, time.monotonic() - self._taken

    def families(self) -> list[Family]:
        got = self.read()
        return [] if got is None else families(got[0], got[1])


# ------------------------------------------------------------- Prometheus
def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ExporterError("the Prometheus exporter needs prometheus-client: pip install 'aos-kernel[prometheus]' "
                            f"({type(exc).__name__}: {exc})") from None
    return prometheus_client


def prometheus_collector(world: "World", timeout: float = 2.0) -> Any:
    """A Prometheus collector of ``world``'s metrics, read at each scrape (``registry.register(it)``)."""
    _prometheus()
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    reader = MetricsReader(world, timeout)

    class WorldCollector:
        def collect(self) -> Iterator[Any]:
            for f in reader.families():
                names = sorted({k for labels, _ in f.samples for k in labels})
                if f.kind == "histogram":
                    h = HistogramMetricFamily(f.name, f.help, labels=names)
                    for labels, buckets in f.samples:
                        h.add_metric([labels[n] for n in names],
                                     [("+Inf" if b == float("inf") else repr(b), n) for b, n in buckets], None)
                    yield h
                    continue
                fam = (CounterMetricFamily if f.kind == "counter" else GaugeMetricFamily)(f.name, f.help,
                                                                                          labels=names)
                for labels, value in f.samples:
                    fam.add_metric([labels[n] for n in names], value)
                yield fam

        def describe(self) -> list[Any]:
            return []  # (registering must not read the world)

    return WorldCollector()


class MetricsServer:
    """A running Prometheus endpoint (``http://addr:port/metrics``); :meth:`close` stops it."""

    def __init__(self, httpd: Any, thread: threading.Thread, addr: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.addr = addr
        self.port: int = httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_prometheus(world: "World", port: int, addr: str = "127.0.0.1", timeout: float = 2.0) -> MetricsServer:
    """Serve ``world``'s metrics for Prometheus on ``addr:port`` (port 0: any free one, see ``.port``).

    Loopback by default: pass another ``addr`` to expose it. The server runs
    on a daemon thread and reads the metrics only when scraped; it outlives
    nothing: close it (or use it as a context manager) before or after the
    world closes (a closed world's scrape is empty).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ArgumentError(f"metrics port must be an int from 0 to 65535, got {port!r}")
    if not isinstance(addr, str) or not addr:
        raise ArgumentError(f"metrics address must be a host name or IP address, got {addr!r}")
    prometheus_client = _prometheus()
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(prometheus_collector(world, timeout))
    try:
        httpd, thread = prometheus_client.start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise ExporterError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
    return MetricsServer(httpd, thread, addr)


# ---------------------------------------------------------- OpenTelemetry
def instrument(world: "World", meter: Any, timeout: float = 2.0) -> list[Any]:
    """Observable instruments on the OpenTelemetry ``meter`` for ``world``'s metrics; return them.

    Each family becomes one instrument (``aos_steps`` -> ``aos.steps``, a
    counter an observable counter, a gauge an observable gauge, labels
    attributes); the commit latency, which has no observable histogram,
    becomes ``aos.commit_latency.p50`` and ``.p99`` gauges in seconds. One
    reading serves every callback of a collection.
    """
    try:
        from opentelemetry.metrics import Observation
    except ImportError as exc:
        raise ExporterError("the OpenTelemetry exporter needs opentelemetry-api: pip install 'aos-kernel[otel]' "
                            f"({type(exc).__name__}: {exc})") from None
    reader = MetricsReader(world, timeout, max_age=1.0)

    def observe(name: str) -> Any:
        def callback(_options: Any) -> list[Any]:
            for f in reader.families():
                if f.name == name:
                    return [Observation(v, labels) for labels, v in f.samples]
            return []
        return callback

    def latency(q: str) -> Any:
        def callback(_options: Any) -> list[Any]:
            got = reader.read()
            return [] if got is None else [Observation(got[0]["commit_latency_us"][q] / 1e6)]
        return callback

    made = []
    for f in families(_EMPTY):
        otel = "aos." + f.name[len("aos_"):]
        if f.kind == "counter":
            made.append(meter.create_observable_counter(otel, callbacks=[observe(f.name)], description=f.help))
        elif f.kind == "gauge":
            made.append(meter.create_observable_gauge(otel, callbacks=[observe(f.name)], description=f.help))
    for q in ("p50", "p99"):
        made.append(meter.create_observable_gauge(f"aos.commit_latency.{q}", callbacks=[latency(q)], unit="s",
                                                  description=f"Commit latency, {q} (bucket upper bound)."))
    return made


# a reading of nothing: the families' names and kinds
_EMPTY: dict[str, Any] = {
    "event_id": 0, "admitted": 0, "cells": 0, "records": 0, "commits": 0, "failures": 0, "validations": 0,
    "reexecutions": 0, "worker_busy_seconds": 0.0,
    "queue": {"queued": 0, "queued_max": 0, "pending": 0, "ready_cells": 0, "in_flight_max": 0},
    "effects": {"outstanding": 0, "settled": 0, "dispatched": 0, "receipts_refused": 0, "receipts": {},
                "attempts_failed": 0, "dead_lettered": 0},
    "by_reducer": {}, "by_priority": [], "commit_latency_us": {"buckets": [], "p50": 0, "p99": 0},
}
