"""World.open(profile=True): per-reducer time in metrics(), the journal unchanged (docs/profiling.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import aos
from aos.examples import spin


def shop() -> aos.Manifest:
    m = aos.Manifest("test/profiled@1")

    @m.reducer("test/Order@1", key="k", events=["test/Placed@1"])
    def order(ctx, state, event):
        ctx.emit("test/Billed@1", {"k": event.value["k"]})
        return (state or 0) + 1

    @m.reducer("test/Ledger@1", events=["test/Billed@1"])
    def ledger(ctx, state, event):
        if event.value["k"] == 7:
            raise ValueError("ledger refuses order 7")
        return (state or 0) + 1

    return m


def run(path: Path, m: aos.Manifest, n: int = 40, **options: object) -> dict:
    with aos.World.open(path, m, **options) as w:
        for i in range(n):
            w.submit("test/Placed@1", {"k": i})
        w.run()
        metrics = w.metrics()
        metrics["failures"] = [(f.reducer, f.message, f.traceback) for f in w.failures()]
    return metrics


def journal_bytes(path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((path / "journal").glob("*.seg"))]


@pytest.mark.determinism
@pytest.mark.parametrize("workers", [0, 2])
def test_profiled_world_reports_each_reducers_steps_and_time_and_journals_the_same(tmp_path: Path,
                                                                                   workers: int) -> None:
    m = shop()
    plain = run(tmp_path / "plain", m, workers=workers)
    profiled = run(tmp_path / "profiled", m, workers=workers, profile=True)
    assert "reducers" not in plain
    reducers = profiled["reducers"]
    assert set(reducers) == {"test/Order@1", "test/Ledger@1"}
    assert reducers["test/Order@1"]["steps"] == 40 and reducers["test/Ledger@1"]["steps"] == 40  # one raised
    assert all(r["seconds"] > 0 and r["timed"] for r in reducers.values())
    assert sum(r["share"] for r in reducers.values()) == pytest.approx(1.0)
    # the same journal bytes, the failed step's traceback without the timing wrapper's frame
    assert journal_bytes(tmp_path / "plain") == journal_bytes(tmp_path / "profiled")
    assert plain["failures"] == profiled["failures"]
    assert "ledger, line 4 of its definition" in profiled["failures"][0][2]
    if workers == 0:  # the inline executor's C loop still calls the (wrapped) reducer itself
        assert profiled["steps_by_path"]["reference"] == plain["steps_by_path"]["reference"] == 1


def test_reducers_are_unwrapped_when_the_world_closes(tmp_path: Path) -> None:
    m = shop()
    fns = {name: spec.fn for name, spec in m.reducers.items()}
    w = aos.World.open(tmp_path / "w", m, profile=True)
    assert all(spec.fn is not fns[name] for name, spec in m.reducers.items())
    w.close()
    assert {name: spec.fn for name, spec in m.reducers.items()} == fns
    assert "reducers" in json.loads((tmp_path / "w" / "metrics.json").read_text())  # written at closing


def test_one_profiled_world_per_manifest_at_a_time(tmp_path: Path) -> None:
    m = shop()
    with aos.World.open(tmp_path / "a", m, profile=True):
        with pytest.raises(aos.ArgumentError, match="already being timed"):
            aos.World.open(tmp_path / "b", m, profile=True)
        with aos.World.open(tmp_path / "c", m) as other:  # unprofiled: fine (its steps are counted too)
            other.submit("test/Placed@1", {"k": 1})
            other.run()
    with aos.World.open(tmp_path / "b", m, profile=True) as w:  # the first one closed: allowed again
        assert w.metrics()["reducers"]["test/Order@1"]["steps"] == 0


def test_profile_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(aos.ArgumentError, match="profile must be True or False"):
        aos.World.open(tmp_path / "w", shop(), profile="yes")  # type: ignore[arg-type]


def test_native_reducers_are_not_timed(tmp_path: Path) -> None:
    m = aos.Manifest("test/native-profiled@1")
    m.native_reducer("test/Spin@1", key="id", events=["test/Go@1"], fn=spin.REDUCER, user=10, code_id=spin.CODE_ID)
    with aos.World.open(tmp_path / "w", m, workers=0, profile=True) as w:
        w.submit("test/Go@1", {"id": 1})
        w.run()
        assert w.metrics()["reducers"] == {"test/Spin@1": {"steps": 0, "seconds": 0.0, "share": 0.0,
                                                           "timed": False}}
