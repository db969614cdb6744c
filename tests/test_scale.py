"""A world of 10,000 keyed cells and 100,000 events survives close, reopen and replay."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import aos


def test_ten_thousand_cells_hundred_thousand_events(tmp_path: Path) -> None:
    m = aos.Manifest("test/scale@1")

    @m.reducer("test/Counter@1", key="id", events=["test/Inc@1"])
    def counter(ctx: Any, state: Any, event: Any) -> Any:
        return {"n": (state or {"n": 0})["n"] + event.value["by"]}

    rnd = random.Random(1)
    path = tmp_path / "w"
    with aos.World.open(path, m) as w:
        for batch in range(10):
            for i in range(10_000):
                w.submit("test/Inc@1", {"id": f"c{(i * 7919 + batch) % 10_000}", "by": rnd.randint(1, 9)})
            w.run()
        assert len(w.cells()) == 10_000
        assert w.last_event_id == 100_000
        live_hash = w.snapshot_hash()
        total = sum(s["n"] for _r, _k, s in w.iter_states())
    assert len(list((path / "snapshots").iterdir())) >= 1
    with aos.World.open(path, m) as w:
        assert w.snapshot_hash() == live_hash
        assert sum(s["n"] for _r, _k, s in w.iter_states()) == total
    assert aos.replay(path, m).verify() == live_hash
