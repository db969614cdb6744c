"""aos's pytest plugin: fixtures that open worlds of your manifest and time them under pytest-benchmark.

Loaded by every pytest run where aos is installed (the ``pytest11`` entry
point ``aos``), so it imports only pytest and aos; pytest-benchmark is used
only by a test that asks for :func:`aos_bench`. See docs/profiling.md.

* ``aos_world(manifest, **options)`` opens a fresh world of ``manifest`` (an
  :class:`aos.Manifest` or ``"module:attribute"``) in the test's
  ``tmp_path``, closed at teardown.
* ``aos_bench(manifest, events, **options)`` times ``World.run()`` on a
  fresh world per round, the events submitted before the clock starts, and
  records steps, steps/s and each reducer's time in the benchmark's
  ``extra_info``; it returns an :class:`AosBenchResult`.
* ``--aos-workers N`` overrides ``workers`` for every ``aos_bench``, and
  ``--aos-rounds N`` its rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import pytest

from aos.errors import AosError, ArgumentError
from aos.executor import RunResult
from aos.manifest import Manifest
from aos.world import World

__all__ = ["AosBench", "AosBenchResult", "BenchmarkCheckError", "aos_bench", "aos_world"]

#: A manifest as the fixtures take it: the object, or ``"module:attribute"`` naming it (or a callable making it).
ManifestRef = Union[Manifest, str]
#: Events as the fixtures take them: ``(schema, value)`` pairs, or a callable returning them.
Events = Union[Sequence[tuple[str, Any]], Callable[[], Iterable[tuple[str, Any]]]]

#: Plugins that provide a ``benchmark`` fixture: with one of them loaded, aos defines none of its own.
BENCHMARK_PLUGINS = ("benchmark", "codspeed")

MISSING_BENCHMARK = ("the 'benchmark' fixture (used by aos_bench) comes from pytest-benchmark, which is not installed "
                     "or not enabled (-p no:benchmark): install it with pip install 'aos-kernel[bench]'")
DEFAULT_ROUNDS = 5


class BenchmarkCheckError(AosError):
    """A benchmarked run did not do what its events asked for (events left, steps failed)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aos", "aos benchmarks (aos_bench fixture, docs/profiling.md)")
    group.addoption("--aos-workers", type=int, default=None, metavar="N",
                    help="worker threads for every aos_bench world (overrides the test's workers=)")
    group.addoption("--aos-rounds", type=int, default=None, metavar="N",
                    help="rounds for every aos_bench (overrides the test's rounds=)")


def pytest_configure(config: pytest.Config) -> None:
    for option, least in (("aos_workers", 0), ("aos_rounds", 1)):
        value = config.getoption(option)
        if value is not None and value < least:
            raise pytest.UsageError(f"--{option.replace('_', '-')} must be >= {least}, got {value}")
    if not any(config.pluginmanager.hasplugin(name) for name in BENCHMARK_PLUGINS):
        # aos_bench asks for 'benchmark' by name (so that --benchmark-only selects it): without pytest-benchmark
        # (or a plugin with the same fixture) that name gets a fixture saying what to install, instead of
        # "fixture 'benchmark' not found"
        config.pluginmanager.register(_NoBenchmark(), "aos-no-benchmark")


class _NoBenchmark:
    @pytest.fixture
    def benchmark(self) -> None:
        pytest.fail(MISSING_BENCHMARK, pytrace=False)


def load_manifest(manifest: ManifestRef) -> Manifest:
    """``manifest`` itself, or the one ``"module:attribute"`` names (:class:`ArgumentError` otherwise)."""
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, str):
        from aos.lane_host import load_manifest as load_ref

        return load_ref(manifest)
    raise ArgumentError(f"manifest must be an aos.Manifest or 'module:attribute', got {type(manifest).__name__}")


def event_list(events: Events) -> list[tuple[str, Any]]:
    """``events`` (or what the callable returns) as a list of ``(schema, value)`` pairs, checked."""
    if callable(events):
        events = list(events())
    if isinstance(events, (str, bytes)) or not isinstance(events, Iterable):
        raise ArgumentError(f"events must be a list of (schema, value) pairs or a callable returning one, "
                            f"got {type(events).__name__}")
    out = list(events)
    for i, item in enumerate(out):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ArgumentError(f"events[{i}] must be a (schema, value) pair, got {item!r:.80}")
    return out


@pytest.fixture
def aos_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    """``aos_world(manifest, **options)``: a fresh world of ``manifest`` in ``tmp_path``, closed at teardown."""
    opened: list[World] = []

    def open_world(manifest: ManifestRef, **options: Any) -> World:
        world = World.open(tmp_path / f"world-{len(opened)}", load_manifest(manifest), **options)
        opened.append(world)
        return world

    yield open_world
    for world in reversed(opened):
        world.close()


@dataclass(frozen=True)
class AosBenchResult:
    """What :func:`aos_bench` measured (the timing itself is in the benchmark's stats)."""

    steps: int                       # steps of one round (the same every round)
    steps_per_s: float | None        # steps / the mean round time (None with --benchmark-disable)
    workers: int
    reducers: dict[str, dict[str, Any]]  # per reducer: steps, seconds, share (the last round; profile=True)
    run: RunResult                   # the last round's World.run() result
    metrics: dict[str, Any]          # the last round's World.metrics()


class AosBench:
    """The ``aos_bench`` fixture's value: call it once per test."""

    def __init__(self, benchmark: Any, tmp_path: Path, config: pytest.Config) -> None:
        self.benchmark = benchmark
        self.tmp_path = tmp_path
        self.workers_override: int | None = config.getoption("aos_workers")
        self.rounds_override: int | None = config.getoption("aos_rounds")
        self._worlds: list[World] = []
        self._runs: dict[int, RunResult] = {}  # id(world) -> its run's result, checked before it is closed

    def __call__(self, manifest: ManifestRef, events: Events, *, rounds: int = DEFAULT_ROUNDS,
                 warmup_rounds: int = 0, profile: bool = True, **options: Any) -> AosBenchResult:
        """Time ``World.run()`` on ``events`` in a fresh world of ``manifest`` per round.

        ``options`` go to :meth:`aos.World.open` (``workers``, ``durability``,
        ``offload``, …); ``strict`` is True unless given, so a reducer that
        raises fails the benchmark with :class:`aos.ReducerError`. ``profile``
        (default True) times each Python reducer (``World.open(profile=True)``:
        two clock reads per step); False leaves per-reducer times out.
        """
        m = load_manifest(manifest)
        evs = event_list(events)
        rounds = self.rounds_override if self.rounds_override is not None else rounds
        if type(rounds) is not int or rounds < 1:
            raise ArgumentError(f"rounds must be an int >= 1, got {rounds!r}")
        if self.workers_override is not None:
            options["workers"] = self.workers_override
        options.setdefault("strict", True)
        options["profile"] = profile
        counter = iter(range(1 << 62))
        last: dict[str, Any] = {}

        def setup() -> tuple[tuple[World], dict[str, Any]]:
            self._close_all(check=True)  # the round before: checked and closed, outside the clock
            world = World.open(self.tmp_path / f"bench-{next(counter)}", m, **options)
            self._worlds.append(world)
            for schema, value in evs:
                world.submit(schema, value)
            admitted = world.stats["admitted"]
            if admitted != len(evs):
                raise BenchmarkCheckError(f"benchmark of manifest {m.name} in {world.path}: {admitted} events "
                                          f"admitted before the run, not the {len(evs)} submitted")
            return (world,), {}

        def run(world: World) -> RunResult:
            result = world.run()
            self._runs[id(world)] = result
            last["world"], last["run"] = world, result
            return result

        try:
            self.benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
            world, result = last["world"], last["run"]
            metrics = world.metrics()
            self._close_all(check=True)
        finally:
            self._close_all()
        stats = getattr(self.benchmark, "stats", None)
        mean = stats.stats.mean if stats is not None else None
        out = AosBenchResult(steps=result.steps, steps_per_s=result.steps / mean if mean else None,
                             workers=world.workers, reducers=metrics.get("reducers", {}), run=result,
                             metrics=metrics)
        info = self.benchmark.extra_info
        info["aos_manifest"] = m.name
        info["aos_events"] = len(evs)
        info["aos_steps"] = out.steps
        info["aos_steps_per_s"] = out.steps_per_s
        info["aos_workers"] = out.workers
        info["aos_rounds"] = rounds
        if out.reducers:
            info["aos_reducers"] = out.reducers
            data = stats.stats.data if stats is not None else []
            if data:  # the part of the last round's run() spent inside reducer functions
                info["aos_in_reducers"] = sum(r["seconds"] for r in out.reducers.values()) / data[-1]
        return out

    @staticmethod
    def _check(world: World, result: RunResult | None) -> None:
        """Every step run and committed, or :class:`BenchmarkCheckError` saying what not."""
        if result is None:
            raise BenchmarkCheckError(f"benchmark of manifest {world.manifest.name} in {world.path}: the world "
                                      "was opened but not run")
        pending = world.stats["pending"]
        problems = []
        if not result.quiescent or pending:
            problems.append(f"the run stopped with {pending} inputs pending")
        if result.failed:
            problems.append(f"{result.failed} steps failed (first: {world.failures()[0].message})")
        if problems:
            raise BenchmarkCheckError(f"benchmark of manifest {world.manifest.name} in {world.path}: "
                                      + "; ".join(problems))

    def _close_all(self, check: bool = False) -> None:
        """Close the worlds of the rounds (``check``: each checked first, see :meth:`_check`)."""
        while self._worlds:
            world = self._worlds[-1]
            if check:
                self._check(world, self._runs.pop(id(world), None))
            self._worlds.pop().close()


@pytest.fixture
def aos_bench(benchmark: Any, tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[AosBench]:
    """``aos_bench(manifest, events, rounds=5, **World.open options)``: see :class:`AosBench`."""
    bench = AosBench(benchmark, tmp_path, pytestconfig)
    yield bench
    bench._close_all()
