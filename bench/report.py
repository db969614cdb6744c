"""Every performance figure of aos beside its baseline, in one run.

    python bench/report.py [--quick] [--json PATH] [--plot PATH] [--ft-python PATH]

Runs the workloads of ``bench/workloads.py`` (the same ones the
pytest-benchmark suites time), prints a Markdown table, writes the figures as
JSON (``{"machine": {...}, "figures": {NAME: {"value", "unit", "min", "max",
"runs", ...}}}``) and draws speed-up against workers with the ideal line.
Ratios are computed per round from runs interleaved with their baseline, so
drifts of the machine's speed cancel out; ``value`` is the median.
``--quick`` uses small sizes (a smoke test, well under 3 minutes); its
figures are not comparable with a full run. ``--ft-python`` names a
free-threaded interpreter with aos installed, for ``python_ft_speedup_2w``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl  # noqa: E402

GOALS = {
    "kernel_vs_eventsourcing_mem": (">=", 15.0),
    "kernel_vs_floor": (">=", 0.08),
    "crossings_per_step": ("<=", 3.0),
    "native_speedup_2w": (">=", 1.9),
    "python_ft_speedup_2w": (">=", 1.8),
    "fleet_python_speedup_2lanes": (">=", 1.8),
    "journal_append_vs_raw": (">=", 0.6),
    "streaming_vs_prequeued": (">=", 0.8),
    "threads1_vs_inline": ("<=", 1.10),
    "contention_high_vs_low": (">=", 0.6),
    "hol_cold_latency_steps": ("<=", 3.0),
    "replay_vs_run": (">=", 1.5),
    "shadow_vs_replay": (">=", 0.8),
    "rss_mb_1m_cells": ("<=", 200.0),
    "metrics_overhead": (">=", 0.97),
    "typed_vs_dict": (">=", 0.8),
    "snapshot_stall_ms_1m_cells": ("<=", 50.0),
}


def timed(workload: Any) -> float:
    """Seconds of ``workload.run`` on a fresh ``workload.setup()``."""
    w, tmp = workload.setup()
    try:
        t0 = time.perf_counter()
        workload.run(w)
        return time.perf_counter() - t0
    finally:
        w.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def timed_count(workload: Any) -> tuple[float, int]:
    """(seconds, result) of ``workload.run`` on a fresh ``workload.setup()``."""
    w, tmp = workload.setup()
    try:
        t0 = time.perf_counter()
        n = workload.run(w)
        return time.perf_counter() - t0, n
    finally:
        w.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def ray_unavailable() -> str:
    """Why Ray figures cannot be measured here ("" if they can)."""
    import importlib.util
    import socket

    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'aos-kernel[ray]')"
    try:
        only_loopback = [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        only_loopback = False
    if not only_loopback:
        return ("Ray is started only inside a network namespace whose only interface is loopback: "
                "run the report under ../shared/tools/loopback-only.sh")
    return ""


def figure(samples: list[float], unit: str, baseline: str = "", **extra: Any) -> dict[str, Any]:
    return {"value": statistics.median(samples), "unit": unit, "min": min(samples), "max": max(samples),
            "runs": len(samples), "baseline": baseline, **extra}


class Report:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.rounds = 2 if quick else 3
        self.figures: dict[str, dict[str, Any]] = {}
        self.speedups: dict[str, dict[int, float]] = {}
        self.notes: list[str] = []  # figures left out, and why

    def rounds_of(self, fn: Callable[[], Any], more: bool = False, full: int = 7) -> list[Any]:
        """``fn()`` once per round; ``more``: ``full`` rounds in a full run, for the short, noisy figures."""
        return [fn() for _ in range(full if more and not self.quick else self.rounds)]

    # ------------------------------------------------------------- kernel
    def kernel(self) -> None:
        events = 5_000 if self.quick else 20_000
        sqlite_events = 500 if self.quick else 2_000
        rows = self.rounds_of(lambda: (timed(wl.KernelRun(events=events)),
                                       wl.eventsourcing_run("memory", events),
                                       wl.eventsourcing_run("sqlite", sqlite_events),
                                       wl.floor_loop(events)), more=True)
        kernel = [events / r[0] for r in rows]
        es_mem = [events / r[1] for r in rows]
        es_sqlite = [sqlite_events / r[2] for r in rows]
        floor = [events / r[3] for r in rows]
        f = self.figures
        f["kernel_steps_per_s"] = figure(kernel, "steps/s", "durable (group fsync), inline, 10,000 cells")
        f["eventsourcing_mem_events_per_s"] = figure(es_mem, "events/s", "eventsourcing, in-memory store")
        f["eventsourcing_sqlite_events_per_s"] = figure(es_sqlite, "events/s", "eventsourcing, SQLite file")
        f["kernel_vs_eventsourcing_mem"] = figure([k / e for k, e in zip(kernel, es_mem, strict=True)], "x",
                                                  "eventsourcing_mem_events_per_s")
        f["floor_loop_steps_per_s"] = figure(floor, "steps/s", "plain loop calling the reducer, no kernel")
        f["kernel_vs_floor"] = figure([k / fl for k, fl in zip(kernel, floor, strict=True)], "x",
                                      "floor_loop_steps_per_s")
        f["crossings_per_step"] = figure([wl.crossings_per_step(2_000)], "calls",
                                         "Python functions entered or C functions called from Python, per "
                                         "committed step of the inline executor (the reducer call is one)")

    # ------------------------------------------------------------ scaling
    def scaling(self) -> None:
        cpus = os.cpu_count() or 1
        workers = sorted({0, 1, 2, cpus} | {n for n in (4, 8, 16, 32, 64) if n < cpus})
        steps = 800 if self.quick else 4_000
        rows = self.rounds_of(lambda: {n: timed(wl.SpinRun(native=True, workers=n, steps=steps)) for n in workers})
        speed = {n: statistics.median(r[0] / r[n] for r in rows) for n in workers if n}
        self.speedups["native (vs inline)"] = speed
        f = self.figures
        f["native_speedup_2w"] = figure([r[0] / r[2] for r in rows], "x", "inline (0 workers)",
                                        vs_1_worker=statistics.median(r[1] / r[2] for r in rows))
        f["native_speedup_max_workers"] = figure([r[0] / r[cpus] for r in rows], "x", "inline (0 workers)",
                                                 workers=cpus)
        py_steps = 150 if self.quick else 600
        py = self.rounds_of(lambda: {n: timed(wl.SpinRun(native=False, workers=n, steps=py_steps))
                                     for n in (0, 1, 2)})
        f["python_speedup_2w"] = figure([r[0] / r[2] for r in py], "x", "inline (0 workers)",
                                        vs_1_worker=statistics.median(r[1] / r[2] for r in py))
        self.speedups["Python, GIL (vs inline)"] = {n: statistics.median(r[0] / r[n] for r in py) for n in (1, 2)}

    def streaming(self) -> None:
        """A producer thread submitting while the caller loops on ``run()``, against the same events queued first."""
        steps = 800 if self.quick else 4_000
        rows = self.rounds_of(lambda: (timed(wl.SpinRun(native=True, workers=2, steps=steps)),
                                       timed(wl.StreamingRun(workers=2, steps=steps))))
        self.figures["streaming_vs_prequeued"] = figure(
            [pre / st for pre, st in rows], "x throughput", "the same events queued first (native spin, 2 workers)",
            streaming_steps_per_s=statistics.median(steps / st for _p, st in rows),
            prequeued_steps_per_s=statistics.median(steps / pre for pre, _s in rows))

    def fleet(self) -> None:
        """Python reducers on 2 local lanes (a process each) against one world inline; cross-lane messages/s."""
        steps = 300 if self.quick else 1_200
        rows = self.rounds_of(lambda: (timed(wl.SpinRun(native=False, workers=0, steps=steps)),
                                       timed(wl.FleetSpinRun(lanes=2, steps=steps))))
        self.figures["fleet_python_speedup_2lanes"] = figure(
            [one / fleet for one, fleet in rows], "x", "one world inline (Python spin, ≈ 1 ms steps)")
        # Scaling with lanes, up to this machine's cores: 1, 2, 4, 8, 16 lanes, each lane 600 steps (150 quick).
        speedup = {2: statistics.median(one / fleet for one, fleet in rows)}
        for lanes in (n for n in (1, 4, 8, 16) if n <= (os.cpu_count() or 1)):
            n_steps = (150 if self.quick else 600) * max(lanes, 2)
            lane_rows = self.rounds_of(lambda k=lanes, n=n_steps: (timed(wl.SpinRun(native=False, workers=0, steps=n)),
                                                                   timed(wl.FleetSpinRun(lanes=k, steps=n))))
            speedup[lanes] = statistics.median(one / fleet for one, fleet in lane_rows)
        self.speedups["Python, fleet lanes (vs one world inline)"] = dict(sorted(speedup.items()))
        most = max(speedup)
        self.figures["fleet_speedup_max_lanes"] = figure([speedup[most]], "x", "one world inline (Python spin)",
                                                         lanes=most, by_lanes=dict(sorted(speedup.items())))
        pings = 500 if self.quick else 2_000
        rows = self.rounds_of(lambda: timed_count(wl.CrossLaneRun(lanes=2, pings=pings)))
        self.figures["cross_lane_msgs_per_s"] = figure(
            [n / secs for secs, n in rows], "msgs/s", "2 local lanes; each ping fans out 8 pongs to other keys",
            messages=rows[0][1])

    def fleet_ray(self) -> None:
        """``fleet_python_speedup_2lanes``' work on 2 Ray lanes against 2 local lanes (Ray's time ÷ local's).

        Starts Ray only inside a network namespace whose only interface is loopback
        (``../shared/tools/loopback-only.sh``); elsewhere, or without Ray, the figure is left out
        with a note. Ray is started once for all rounds (its start-up is reported, not timed).
        """
        why = ray_unavailable()
        if why:
            self.notes.append(f"`fleet_ray_vs_local` left out: {why}")
            return
        import ray

        from aos.fleet_ray import LIGHT_INIT_OPTIONS

        t0 = time.perf_counter()
        ray.init(**LIGHT_INIT_OPTIONS, num_cpus=2)
        started = time.perf_counter() - t0
        try:
            steps = 300 if self.quick else 1_200
            rows = self.rounds_of(lambda: (timed(wl.FleetSpinRun(lanes=2, steps=steps)),
                                           timed(wl.FleetSpinRun(lanes=2, steps=steps, backend="ray"))))
        finally:
            ray.shutdown()
        self.figures["fleet_ray_vs_local"] = figure(
            [r / local for local, r in rows], "x time", "2 local lanes (Python spin, ≈ 1 ms steps)",
            ray_start_seconds=started)

    def free_threaded(self, python: str) -> None:
        code = ("import json, sys; sys.path.insert(0, %r); import report; "
                "print(json.dumps(report.ft_part(%r)))" % (str(Path(__file__).parent), self.quick))
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, timeout=1800)
        rows = [{int(k): v for k, v in r.items()} for r in json.loads(out.stdout.strip().splitlines()[-1])]
        self.figures["python_ft_speedup_2w"] = figure([r[0] / r[2] for r in rows], "x", "inline (0 workers)",
                                                      vs_1_worker=statistics.median(r[1] / r[2] for r in rows),
                                                      interpreter=Path(python).name)
        self.speedups["Python, free-threaded (vs inline)"] = {
            n: statistics.median(r[0] / r[n] for r in rows) for n in (1, 2)}

    # ------------------------------------------------------------- others
    def overhead_and_contention(self) -> None:
        events = 5_000 if self.quick else 20_000
        rows = self.rounds_of(lambda: (timed(wl.KernelRun(events=events, workers=0)),
                                       timed(wl.KernelRun(events=events, workers=1))), more=True)
        self.figures["threads1_vs_inline"] = figure([r[1] / r[0] for r in rows], "x time",
                                                    "inline, counter reducer (30 µs steps)")
        steps = 600 if self.quick else 2_000
        rows = self.rounds_of(lambda: (timed(wl.ContentionRun(high=False, steps=steps)),
                                       timed(wl.ContentionRun(high=True, steps=steps))))
        self.figures["contention_high_vs_low"] = figure([r[0] / r[1] for r in rows], "x throughput",
                                                        "same steps, nobody spends the budget")

    def head_of_line(self) -> None:
        lat = wl.hol_cold_latency(hot=2_000 if self.quick else 10_000, cold=10 if self.quick else 20)
        self.figures["hol_cold_latency_steps"] = figure([float(x) for x in lat], "step-times",
                                                        "hot cell with 10,000 queued events", runs=len(lat))

    def replay(self) -> None:
        events = 5_000 if self.quick else 20_000
        # 11 rounds: a round is 0.6 s, and this machine's speed swings by up to 2x between two of them
        rows = self.rounds_of(lambda: wl.replay_vs_run(events), more=True, full=11)
        self.figures["replay_vs_run"] = figure([run / rep for run, rep in rows], "x speed",
                                               "the original run of the same journal",
                                               replay_seconds=statistics.median(rep for _r, rep in rows))
        steps = 800 if self.quick else 2_000
        rows = self.rounds_of(lambda: wl.replay_native_parallel(steps)[0])
        self.figures["replay_native_2w_vs_serial"] = figure([ser / par for ser, par in rows], "x speed",
                                                            "serial replay of the same journal (native spin)")

    def shadow(self) -> None:
        events = 5_000 if self.quick else 20_000
        rows = self.rounds_of(lambda: wl.shadow_vs_replay(events)[0], more=True)
        self.figures["shadow_vs_replay"] = figure([rep / sh for rep, sh in rows], "x speed",
                                                  "verifying replay of the same journal",
                                                  shadow_seconds=statistics.median(sh for _r, sh in rows))

    def memory(self) -> None:
        base = wl.peak_rss_mb(0)  # the interpreter, aos and an empty world
        if not self.quick:
            rss = wl.peak_rss_mb(1_000_000)
            per_cell = (rss - base) * 1024 * 1024 / 1_000_000
            self.figures["rss_mb_1m_cells"] = figure([rss], "MB", "peak RSS of the process", measured_cells=1_000_000,
                                                     extrapolated=False, baseline_mb=base, bytes_per_cell=per_cell)
            return
        # Quick mode measures 50,000 and 100,000 cells: the difference is what a cell costs, without the fixed
        # cost of a batch of waiting events (which a division by the cell count would spread over them);
        # a million cells are then the larger measurement plus 900,000 cells more.
        small, large = wl.peak_rss_mb(50_000), wl.peak_rss_mb(100_000)
        per_cell = max(0.0, large - small) * 1024 * 1024 / 50_000
        self.figures["rss_mb_1m_cells"] = figure([large + per_cell * 900_000 / (1024 * 1024)], "MB",
                                                 "peak RSS of the process", measured_cells=100_000,
                                                 extrapolated=True, baseline_mb=base, bytes_per_cell=per_cell)

    def journal(self) -> None:
        records = 10_000 if self.quick else 50_000
        rows = self.rounds_of(lambda: wl.journal_vs_raw(records))
        self.figures["journal_append_vs_raw"] = figure([raw / j for j, raw in rows], "x throughput",
                                                       "plain writes of the same bytes, same fsync groups")

    def metrics(self) -> None:
        """Kernel throughput with the Prometheus exporter on and scraped every 100 ms, over the same run without it.

        Runs interleaved (off, on / on, off), the ratio taken per pair. Scraped over HTTP on 127.0.0.1 inside a
        loopback-only namespace; elsewhere the same collector is read in-process (no server is started)."""
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            self.notes.append("metrics_overhead: prometheus-client is not installed "
                              "(pip install 'aos-kernel[prometheus]')")
            return
        try:
            http = [name for _, name in socket.if_nameindex()] == ["lo"]
        except OSError:
            http = False
        # durability "none": the fsyncs' timing (a few ms each, irregular) would drown a difference of 1 %.
        # Scraped every 0.5 s, 30 times Prometheus's usual 15 s (each scrape: about 2 ms of the world's CPU).
        events = 20_000 if self.quick else 600_000
        every = 0.1 if self.quick else 0.5
        rows = [wl.metrics_overhead(events, http, every, on_first=i % 2 == 1, durability="none")
                for i in range(2 if self.quick else 9)]
        self.figures["metrics_overhead"] = figure(
            [r[0] / r[1] for r in rows], "x throughput",
            "the same run without the exporter (inline, 10,000 cells, durability none)", scraped_every_s=every,
            scrapes_per_run=statistics.median(r[2] for r in rows), via="http" if http else "in-process",
            steps_per_s_on=statistics.median(events / r[1] for r in rows),
            cpu_ratio=statistics.median(r[3] / r[4] for r in rows))  # less sensitive to a busy machine

    def typed(self) -> None:
        """The counter with a dataclass state and event, against the same counter on dicts (durability off)."""
        events = 5_000 if self.quick else 20_000
        rows = self.rounds_of(lambda: (timed(wl.TypedRun(events=events, durability="none", typed=True)),
                                       timed(wl.TypedRun(events=events, durability="none", typed=False))),
                              more=True)
        self.figures["typed_vs_dict"] = figure(
            [plain / typed for typed, plain in rows], "x throughput",
            "the same counter on dicts (inline, durability off, 10,000 cells)",
            typed_steps_per_s=statistics.median(events / t for t, _p in rows),
            dict_steps_per_s=statistics.median(events / p for _t, p in rows))

    def snapshot_stall(self) -> None:
        cells, steps = (50_000, 40_000) if self.quick else (1_000_000, 300_000)
        rows = self.rounds_of(lambda: wl.snapshot_stall_ms(cells, steps))
        self.figures["snapshot_stall_ms_1m_cells"] = figure(
            [bg for bg, _sync in rows], "ms", "longest gap between two commits while a snapshot is written "
            "(background writer)", cells=cells, synchronous_ms=statistics.median(s for _bg, s in rows))
        self.figures["snapshot_stall_ms_1m_cells_synchronous"] = figure(
            [s for _bg, s in rows], "ms", "the same with background_snapshots=False (written on the commit path)",
            cells=cells)

    # -------------------------------------------------------------- output
    def table(self) -> str:
        lines = ["| figure | value | unit | min / median / max | baseline | goal |", "|---|---|---|---|---|---|"]
        for name, f in self.figures.items():
            goal = GOALS.get(name)
            goal_s = "" if goal is None else f"{goal[0]} {goal[1]:g} " + ("✓" if _meets(f["value"], goal) else "✗")
            lines.append(f"| `{name}` | {_fmt(f['value'])} | {f['unit']} | {_fmt(f['min'])} / {_fmt(f['value'])} / "
                         f"{_fmt(f['max'])} | {f['baseline']} | {goal_s} |")
        return "\n".join(lines)

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        top = max([2] + [n for s in self.speedups.values() for n in s])
        ax.plot([1, top], [1, top], "k--", label="ideal (linear)")
        for label, s in self.speedups.items():
            xs = sorted(s)
            ax.plot(xs, [s[x] for x in xs], "o-", label=label)
        ax.set_xlabel("workers (threads) or lanes (processes)")
        ax.set_ylabel("speed-up over the inline executor")
        ax.set_title("aos: steps in parallel, journal identical to inline")
        ax.set_xticks(range(1, top + 1))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)


def _meets(value: float, goal: tuple[str, float]) -> bool:
    return value >= goal[1] if goal[0] == ">=" else value <= goal[1]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def ft_part(quick: bool) -> list[dict[int, float]]:
    """Run inside the free-threaded interpreter: Python spin at 0, 1 and 2 workers."""
    steps = 150 if quick else 600
    return [{n: timed(wl.SpinRun(native=False, workers=n, steps=steps)) for n in (0, 1, 2)}
            for _ in range(2 if quick else 3)]


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def machine() -> dict[str, Any]:
    import blake3

    import aos

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "aos": aos.__version__, "cbor2": _version("cbor2"), "blake3": blake3.__version__,
            "gil": getattr(sys, "_is_gil_enabled", lambda: True)()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test (not comparable figures)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON here")
    ap.add_argument("--plot", type=Path, help="draw speed-up against workers (PNG) here")
    ap.add_argument("--ft-python", help="a free-threaded interpreter with aos installed")
    args = ap.parse_args(argv)
    r = Report(args.quick)
    t0 = time.perf_counter()
    steps = [("kernel", r.kernel), ("scaling", r.scaling), ("streaming", r.streaming),
             ("overhead and contention", r.overhead_and_contention),
             ("head of line", r.head_of_line), ("replay", r.replay), ("shadow", r.shadow),
             ("memory", r.memory), ("fleet", r.fleet), ("fleet on Ray", r.fleet_ray),
             ("journal", r.journal), ("metrics", r.metrics), ("typed values", r.typed),
             ("snapshot stall", r.snapshot_stall)]
    if args.ft_python:
        steps.append(("free-threaded", lambda: r.free_threaded(args.ft_python)))
    for name, step in steps:
        print(f"… {name}", file=sys.stderr, flush=True)
        step()
    print(r.table())
    for note in r.notes:
        print(f"\nnote: {note}")
    print(f"\n{'quick' if args.quick else 'full'} run, {time.perf_counter() - t0:.0f} s, on {machine()['cpu']}")
    if args.quick:
        print("quick run: small sizes, figures not comparable with a full run's (nor with the goals)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "quick": args.quick, "comparable": not args.quick,
                                         "figures": r.figures, "notes": r.notes}, indent=2))
    if args.plot:
        r.plot(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
