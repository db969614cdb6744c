"""aos's pytest plugin (aos.pytest_plugin): inner pytest sessions with a tiny manifest, under pytest-benchmark."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "profiling"

TINY = '''
import aos

manifest = aos.Manifest("tiny/counter@1")


@manifest.reducer("tiny/Counter@1", key="k", events=["tiny/Hit@1"])
def counter(ctx, state, event):
    ctx.emit("tiny/Tallied@1", {"k": event.value["k"]})
    return (state or 0) + 1


@manifest.reducer("tiny/Tally@1", events=["tiny/Tallied@1"])
def tally(ctx, state, event):
    if event.value["k"] == -1:
        raise ValueError("tally refuses k=-1")
    return (state or 0) + 1


def hits(n=50):
    return [("tiny/Hit@1", {"k": i % 7}) for i in range(n)]
'''

BENCH = '''
from tiny_manifest import hits, manifest


def test_tiny(aos_bench):
    result = aos_bench(manifest, hits(50), workers=0, rounds=3)
    assert result.steps == 100


def test_tiny_by_reference(aos_bench):
    aos_bench("tiny_manifest:manifest", hits, rounds=2, durability="none")
'''


def bench_json(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-json=bench.json", *args)
    return result, json.loads((pytester.path / "bench.json").read_text())


def test_bench_records_steps_rate_workers_and_each_reducers_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_tiny_bench=BENCH)
    result, data = bench_json(pytester)
    result.assert_outcomes(passed=2)
    by_name = {b["name"]: b for b in data["benchmarks"]}
    assert set(by_name) == {"test_tiny", "test_tiny_by_reference"}
    tiny = by_name["test_tiny"]
    info = tiny["extra_info"]
    assert tiny["stats"]["rounds"] == 3 and by_name["test_tiny_by_reference"]["stats"]["rounds"] == 2
    assert info["aos_manifest"] == "tiny/counter@1" and info["aos_events"] == 50
    assert info["aos_steps"] == 100  # each hit: a Counter step and a Tally step
    assert info["aos_workers"] == 0 and info["aos_rounds"] == 3
    assert info["aos_steps_per_s"] == pytest.approx(100 / tiny["stats"]["mean"])
    reducers = info["aos_reducers"]
    assert set(reducers) == {"tiny/Counter@1", "tiny/Tally@1"}
    assert all(r["steps"] == 50 and r["seconds"] > 0 and r["timed"] for r in reducers.values())
    assert sum(r["share"] for r in reducers.values()) == pytest.approx(1.0)
    assert 0 < info["aos_in_reducers"] < 1  # the reducers' part of the last round's run()
    assert by_name["test_tiny_by_reference"]["extra_info"]["aos_steps"] == 100


def test_command_line_overrides_workers_and_rounds(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_tiny_bench=BENCH)
    result, data = bench_json(pytester, "--aos-workers", "2", "--aos-rounds", "4")
    result.assert_outcomes(passed=2)
    for bench in data["benchmarks"]:
        assert bench["extra_info"]["aos_workers"] == 2
        assert bench["extra_info"]["aos_rounds"] == bench["stats"]["rounds"] == 4
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aos-rounds", "0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--aos-rounds must be >= 1, got 0*"])


def test_benchmark_only_selects_aos_bench_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_tiny_bench=BENCH + '''

def test_not_a_benchmark(aos_world):
    pass
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-only", "-rs")
    result.assert_outcomes(passed=2, skipped=1)


def test_unknown_schema_in_the_events_fails_with_the_typed_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_bad='''
from tiny_manifest import hits, manifest


def test_bad(aos_bench):
    aos_bench(manifest, hits(3) + [("tiny/Nope@1", {"k": 1})], rounds=1)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*UnknownSchemaError*tiny/Nope@1*"])


def test_a_failing_reducer_fails_the_benchmark_with_reducer_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_bad='''
from tiny_manifest import hits, manifest


def test_bad(aos_bench):
    aos_bench(manifest, hits(3) + [("tiny/Hit@1", {"k": -1})], rounds=1)


def test_bad_not_strict(aos_bench):  # the failed step journaled, not raised: the benchmark's check finds it
    aos_bench(manifest, hits(3) + [("tiny/Hit@1", {"k": -1})], rounds=2, strict=False)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*ReducerError*tiny/Tally@1*tally refuses k=-1*",
                                 "*BenchmarkCheckError: benchmark of manifest tiny/counter@1 in *bench-0: "
                                 "1 steps failed (first: tally refuses k=-1)*"])


def test_bad_manifest_and_events_are_refused_with_argument_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_bad='''
import pytest

import aos
from tiny_manifest import hits


def test_bad_reference(aos_bench):
    with pytest.raises(aos.ArgumentError, match="no_such_module"):
        aos_bench("no_such_module:manifest", hits(3))


def test_bad_events(aos_bench):
    with pytest.raises(aos.ArgumentError, match=r"events\\[1\\] must be a \\(schema, value\\) pair"):
        aos_bench("tiny_manifest:manifest", [("tiny/Hit@1", {"k": 1}), "tiny/Hit@1"])
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_aos_world_opens_fresh_worlds_in_tmp_path_and_closes_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_worlds='''
import pytest

import aos
from tiny_manifest import hits, manifest

opened = []


@pytest.fixture
def closed_after():
    yield
    for world in opened:  # torn down after aos_world (set up before it)
        with pytest.raises(aos.WorldClosedError):
            world.state("tiny/Tally@1")


def test_worlds(closed_after, aos_world, tmp_path):
    a = aos_world(manifest, workers=0)
    b = aos_world("tiny_manifest:manifest", durability="none")
    opened.extend([a, b])
    assert a.path.parent == b.path.parent == tmp_path and a.path != b.path
    for schema, value in hits(10):
        a.submit(schema, value)
    a.run()
    assert a.state("tiny/Tally@1") == 10 and b.cells() == []
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def without_pytest_benchmark(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions of ``pytester`` run as if pytest-benchmark were not installed (its import fails)."""
    shadow = pytester.mkdir("shadow")
    (shadow / "pytest_benchmark").mkdir()
    (shadow / "pytest_benchmark" / "__init__.py").write_text("raise ImportError('pytest-benchmark is absent')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_absent='''
import pytest


def test_pytest_benchmark_does_not_import():
    with pytest.raises(ImportError, match="pytest-benchmark is absent"):
        import pytest_benchmark  # noqa: F401
''')


@pytest.mark.parametrize("how", ["not installed", "disabled"])
def test_without_pytest_benchmark_aos_bench_says_which_extra_to_install(pytester: pytest.Pytester,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       how: str) -> None:
    pytester.makepyfile(tiny_manifest=TINY, test_tiny_bench=BENCH + '''

def test_world_still_works(aos_world):
    assert aos_world("tiny_manifest:manifest").cells() == []
''')
    if how == "not installed":
        without_pytest_benchmark(pytester, monkeypatch)
        args = ["-p", "aos.pytest_plugin"]
    else:
        args = ["-p", "no:benchmark"]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=2 if how == "not installed" else 1, errors=2)
    out = result.stdout.str()
    # Each error's section (not the short summary, whose lines depend on the terminal's width) says it.
    said = re.findall(r"_ ERROR at setup of (\w+) _+\n(.*)\n", out)
    assert [name for name, _ in said] == ["test_tiny", "test_tiny_by_reference"], out
    assert all(text == "the 'benchmark' fixture (used by aos_bench) comes from pytest-benchmark, which is not "
               "installed or not enabled (-p no:benchmark): install it with pip install 'aos-kernel[bench]'"
               for _, text in said), out
    assert "fixture 'benchmark' not found" not in out


def test_the_doc_shows_the_example_files_as_they_are() -> None:
    doc = (ROOT / "docs" / "profiling.md").read_text()
    shown = {m.group(1): m.group(0)[len("```python\n"):-len("```")]
             for m in re.finditer(r"^```python\n# (\w+\.py)\n.*?^```", doc, re.S | re.M)}
    files = {p.name: p.read_text() for p in EXAMPLE.glob("*.py")}
    assert set(shown) == set(files) == {"shop_manifest.py", "test_shop_bench.py", "report.py"}
    for name, text in files.items():
        assert shown[name] == text, f"docs/profiling.md shows {name} otherwise than {EXAMPLE / name}"


def test_the_example_runs_outside_the_source_tree(pytester: pytest.Pytester) -> None:
    for path in EXAMPLE.glob("*.py"):
        shutil.copy(path, pytester.path / path.name)
    result, data = bench_json(pytester, "--benchmark-only", "--aos-rounds", "1")
    result.assert_outcomes(passed=3, skipped=1)
    assert {b["name"] for b in data["benchmarks"]} == {"test_shop_run", "test_shop_workers[0]",
                                                        "test_shop_workers[2]"}
    for bench in data["benchmarks"]:
        assert bench["extra_info"]["aos_steps"] == 6_000
        assert set(bench["extra_info"]["aos_reducers"]) == {"example/Order@1", "example/Stock@1",
                                                             "example/Ledger@1"}
    report = pytester.run(sys.executable, "report.py", "bench.json")
    assert report.ret == 0, report.stderr.str()
    report.stdout.fnmatch_lines(["test_shop_run: 6,000 steps, * steps/s (workers=0), *% of run() inside reducers",
                                 "  example/*@1 * 2,000 steps * ms *%"])
    (pytester.path / "empty.json").write_text('{"benchmarks": []}')
    assert pytester.run(sys.executable, "report.py", "empty.json").ret == 1
