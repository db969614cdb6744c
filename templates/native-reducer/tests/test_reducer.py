"""The native tally reducer against its Python twin run inline (the oracle): same journal bytes, same
snapshot hash, inline and with worker threads; and its failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aos
import pytest

import tally_reducer

EVERY = 7
EVENTS = 400


def amount(i: int) -> int:
    """Amounts of every width of CBOR integer head (in the head, 1, 2, 4 and 8 bytes)."""
    return [i % 24, 200 + i % 50, 60_000 + i, 4_000_000_000 + i, (1 << 40) + i][i % 5]


def manifest(native: bool, keyed: bool = True) -> aos.Manifest:
    m = aos.Manifest("tally-test@1")
    tally_reducer.register(m, events=["tally/Add@1"], key="id" if keyed else None, every=EVERY, native=native)

    # The milestones the tally emits reach a Python reducer: emitted events are admitted like any other.
    @m.reducer("tally/Milestones@1", key="key" if keyed else None, events=[tally_reducer.MILESTONE])
    def milestones(ctx: Any, state: Any, event: Any) -> Any:
        return (state or []) + [[event.value["count"], event.value["total"]]]

    return m


def run(path: Path, native: bool, workers: int, keyed: bool = True) -> tuple[list[bytes], str, dict[str, Any]]:
    m = manifest(native, keyed)
    cell = 5 if keyed else None
    # No snapshot file on close: it names its era, and the two manifests' eras differ (their code differs).
    with aos.World.open(path, m, workers=workers, snapshot_on_close=False) as w:
        for i in range(EVENTS):
            # Fields other than "amount" are skipped, nested ones too.
            w.submit("tally/Add@1", {"id": i % 13, "amount": amount(i), "note": [i, {"x": b"y"}], "z": -i})
        w.run()
        h = w.snapshot_hash()
        cells = {"tally": w.state("tally/Tally@1", cell), "milestones": w.state("tally/Milestones@1", cell)}
        metrics = w.metrics()
    assert metrics["failures"] == 0
    assert aos.replay(path, m).verify() == h  # replay gives the same hash
    return [e.payload for e in aos.JournalReader(path / "journal", m.era).entries()], h, cells


@pytest.mark.parametrize("workers", [0, 2])
def test_native_tally_writes_the_python_twins_journal(tmp_path: Path, workers: int) -> None:
    py_journal, py_hash, py_cells = run(tmp_path / "py", native=False, workers=0)
    nat_journal, nat_hash, nat_cells = run(tmp_path / "nat", native=True, workers=workers)
    amounts = [amount(i) for i in range(EVENTS) if i % 13 == 5]
    assert py_cells["tally"] == [len(amounts), sum(amounts)]
    assert py_cells["milestones"] == [[c, sum(amounts[:c])] for c in range(EVERY, len(amounts) + 1, EVERY)]
    assert nat_cells == py_cells
    assert nat_hash == py_hash
    assert nat_journal == py_journal


def test_without_a_key_the_milestones_carry_null(tmp_path: Path) -> None:
    py_journal, py_hash, py_cells = run(tmp_path / "py", native=False, workers=0, keyed=False)
    nat_journal, nat_hash, nat_cells = run(tmp_path / "nat", native=True, workers=2, keyed=False)
    assert py_cells["tally"] == [EVENTS, sum(amount(i) for i in range(EVENTS))]
    assert len(py_cells["milestones"]) == EVENTS // EVERY
    assert (nat_journal, nat_hash, nat_cells) == (py_journal, py_hash, py_cells)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_event_fails_its_step_and_leaves_the_cell(tmp_path: Path, workers: int) -> None:
    m = manifest(native=True)
    with aos.World.open(tmp_path / "w", m, workers=workers, snapshot_on_close=False) as w:
        w.submit("tally/Add@1", {"id": 1, "amount": 5})
        w.submit("tally/Add@1", {"id": 1, "amount": -1})  # not unsigned
        w.submit("tally/Add@1", {"id": 1, "count": 3})  # no amount
        w.submit("tally/Add@1", {"id": 1, "amount": (1 << 64) - 5})  # the total would overflow 64 bits
        w.submit("tally/Add@1", {"id": 1, "amount": 2})
        w.run()
        assert w.state("tally/Tally@1", 1) == [2, 7]
        assert w.metrics()["failures"] == 3


def test_register_refuses_a_bad_every() -> None:
    with pytest.raises(aos.ManifestError, match="every"):
        tally_reducer.register(aos.Manifest("t@1"), every=0)


def test_the_parameter_is_part_of_the_era() -> None:
    def era(every: int) -> Any:
        m = aos.Manifest("t@1")
        tally_reducer.register(m, every=every)
        return m.era

    assert era(3) == era(3) != era(4)
