"""Shared fixtures: small manifests used across the tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import aos


def pytest_report_header(config: pytest.Config) -> str:
    return f"aos {aos.__version__} imported from {Path(aos.__file__).parent}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """With AOS_TEST_INSTALLED=PREFIX, refuse to run unless aos was imported from under PREFIX.

    CI runs the suite against an installed wheel this way: a copy of ``tests/`` outside the
    source tree, and this check that the package under test is the installed one.
    """
    prefix = os.environ.get("AOS_TEST_INSTALLED")
    if prefix:
        where = Path(aos.__file__).resolve()
        if not where.is_relative_to(Path(prefix).resolve()):
            raise pytest.UsageError(f"aos was imported from {where}, not from the installation under {prefix}")


def make_counter_manifest(name: str = "test/counter@1") -> aos.Manifest:
    """A keyed counter, a non-keyed total, a reducer that emits across cells, one that raises."""
    m = aos.Manifest(name)

    @m.reducer("test/Counter@1", key="id", events=["test/Add@1", "test/Forward@1"])
    def counter(ctx: Any, state: Any, event: Any) -> Any:
        v = event.value
        n = (state or {"n": 0})["n"] + v.get("by", 1)
        if v.get("delete"):
            return None
        if event.schema == "test/Add@1" and v.get("forward_to") is not None:
            ctx.emit("test/Forward@1", {"id": v["forward_to"], "by": v.get("by", 1)})
        if v.get("boom"):
            raise ValueError(f"boom on {ctx.key} at object {object()!r}")
        return {"n": n, "last": ctx.event_id, "r": ctx.rng.randint(0, 1_000_000)}

    @m.reducer("test/Total@1", events=["test/Add@1"])
    def total(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + event.value.get("by", 1)

    return m


@pytest.fixture
def counter_manifest() -> aos.Manifest:
    return make_counter_manifest()


LONG_TIMEOUT_S = 3 * 3600  # a long reliability run takes minutes to tens of minutes (docs/reliability.md)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long runs get a longer per-test timeout than the suite's (pyproject.toml); others keep theirs."""
    for item in items:
        if item.get_closest_marker("long") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT_S))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the counts of the reliability suite (tests/reliability) when it ran."""
    import sys

    support = sys.modules.get("reliability_support")
    if support is None or not support.REPORT:
        return
    terminalreporter.section("reliability counts")
    for mode, sections in support.REPORT.items():
        for section, counts in sections.items():
            terminalreporter.write_line(f"[{mode}] {section}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
