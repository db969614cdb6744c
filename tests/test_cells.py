"""The cell store: keys of every type, states written over, deleted and made again, compaction, pins, memory."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3
import pytest

import aos
from aos.cells import CellTable, hash_cells
from aos.errors import InvalidKeyError


def manifest(name: str = "test/cells@1") -> aos.Manifest:
    m = aos.Manifest(name)

    @m.reducer("test/A@1", key="id", events=["test/Set@1"])
    def a(ctx: Any, state: Any, event: Any) -> Any:
        return event.value.get("v")

    @m.reducer("test/B@1", key="id", events=["test/Set@1"])
    def b(ctx: Any, state: Any, event: Any) -> Any:
        return event.value.get("v")

    @m.reducer("test/Solo@1", events=["test/Tick@1"])
    def solo(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    return m


def table() -> tuple[CellTable, aos.Manifest]:
    m = manifest()
    t = CellTable()
    t.current = m
    return t, m


KEYS: list[Any] = [
    0, 1, -1, 7, 255, 256, -256, 2**31, -(2**31), 2**32 + 5, 2**63 - 1, -(2**63),
    "", "a", "1", "0", "ä", "日本語のキー", "x" * 7, "x" * 8, "x" * 9, "y" * 1000,
    b"", b"a", b"1", b"\x00", b"\x00" * 8, b"\xff" * 9, bytes(range(256)),
]


def test_keys_of_every_type_are_distinct_cells_and_come_back_as_they_were() -> None:
    t, m = table()
    a, b = m.reducers["test/A@1"], m.reducers["test/B@1"]
    ids = {}
    for key in KEYS:
        for spec in (a, b):
            ids[(spec.name, type(key), key)] = t.id_of(spec, key)
    # every (reducer, key) its own cell: 1 and "1" and b"1" differ, so do the two reducers
    assert len(set(ids.values())) == len(ids) == 2 * len(KEYS)
    assert sorted(ids.values()) == list(range(len(ids)))  # ids are dense, in order of first use
    for (name, _ty, key), cid in ids.items():
        assert t.id_of(m.reducers[name], key) == cid
        assert t.find(name, key) == cid
        back = t.key(cid)
        assert type(back) is type(key) and back == key
        assert t.spec(cid).name == name
    assert t.find("test/A@1", 12345) is None
    assert t.find("test/A@1", "missing") is None
    assert t.find("test/Nope@1", 0) is None
    assert t.count == len(ids) and len(t) == 0  # no cell holds a state yet


def test_the_unkeyed_cell_and_subclassed_keys() -> None:
    import enum

    class Color(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    t, m = table()
    solo = t.id_of(m.reducers["test/Solo@1"], None)
    assert t.find("test/Solo@1", None) == solo and t.key(solo) is None
    a = m.reducers["test/A@1"]
    three = t.id_of(a, 3)
    assert t.id_of(a, Color.RED) == three and type(t.key(three)) is int  # by value, as the journal has it
    name = t.id_of(a, "bob")
    assert t.id_of(a, Name("bob")) == name and type(t.key(name)) is str


@pytest.mark.parametrize("key", [1.0, True, False, (1, 2), [1], {"a": 1}, 2**63, -(2**63) - 1, 10**30,
                                 "\ud800", object()])
def test_keys_outside_the_key_model_are_refused(key: Any) -> None:
    t, m = table()
    with pytest.raises(InvalidKeyError):
        t.id_of(m.reducers["test/A@1"], key)
    with pytest.raises(InvalidKeyError):
        t.find("test/A@1", key)
    assert t.count == 0


def test_states_written_over_deleted_and_made_again() -> None:
    t, m = table()
    a = m.reducers["test/A@1"]
    cid = t.id_of(a, "k")
    assert t.state(cid) is None and not t.has_state(cid) and t.state_hash(cid) is None
    t.set(cid, b"\x01" * 10)
    assert t.state(cid) == b"\x01" * 10 and len(t) == 1
    assert t.state_hash(cid) == blake3.blake3(b"\x01" * 10).digest()
    t.set(cid, b"\x02" * 4)  # shorter: in its place
    assert t.state(cid) == b"\x02" * 4
    t.set(cid, b"\x03" * 40)  # longer: moved
    assert t.state(cid) == b"\x03" * 40 and len(t) == 1
    t.set(cid, None)
    assert t.state(cid) is None and len(t) == 0 and t.state_of("test/A@1", "k") is None
    t.set(cid, b"\x04")
    assert t.state(cid) == b"\x04" and len(t) == 1 and t.find("test/A@1", "k") == cid
    assert type(t.state(cid)) is bytes
    with pytest.raises(IndexError):
        t.state(cid + 1)
    with pytest.raises(IndexError):
        t.set(-1, b"x")
    with pytest.raises(TypeError):
        t.set(cid, bytearray(b"x"))


def test_many_cells_random_writes_match_a_dict_and_the_arena_compacts() -> None:
    t, m = table()
    specs = [m.reducers["test/A@1"], m.reducers["test/B@1"]]
    rnd = random.Random(7)
    model: dict[tuple[str, Any], bytes | None] = {}
    keys: list[tuple[Any, Any]] = []
    for i in range(3000):
        key: Any = rnd.choice([i, -i * 977, f"k{i}", f"ключ-{i}".encode()])
        keys.append((specs[i % 2], key))
    for step in range(60_000):
        spec, key = rnd.choice(keys)
        cid = t.id_of(spec, key)
        r = rnd.random()
        if r < 0.1:
            state = None
        else:
            state = rnd.randbytes(rnd.choice([1, 8, 30, 64, 200, rnd.randint(1, 600)]))
        t.set(cid, state)
        model[(spec.name, key)] = state
        if step % 15_000 == 0:
            assert t.memory()["garbage"] <= t.memory()["arena_used"]
    mem = t.memory()
    assert mem["compactions"] > 0  # (the writes left garbage enough to squeeze out)
    assert mem["garbage"] * 4 < mem["arena_used"] + 600 * 4 or mem["arena_used"] < mem["arena"]
    for (name, key), state in model.items():
        assert t.state_of(name, key) == state
    assert len(t) == sum(s is not None for s in model.values())
    live = sum(len(s) for s in model.values() if s is not None)
    assert mem["arena_used"] - mem["garbage"] == live
    # what items() and the snapshot hash see is what the dict holds
    rows = [[spec.name, key, blake3.blake3(state).digest()] for spec, key, state, _h in t.items()]
    assert sorted((r[0], repr(r[1])) for r in rows) == sorted(
        (n, repr(k)) for (n, k), s in model.items() if s is not None)
    assert t.snapshot_hash() == hash_cells(rows) == t.snapshot_hash(t.sorted_items())


def test_pins_change_the_reducer_not_the_cell() -> None:
    t, m = table()
    old = manifest("test/cells@0")
    cid = t.id_of(m.reducers["test/A@1"], 5)
    t.set(cid, b"\x05")
    era = b"\xee" * 32
    t.pin(cid, old.reducers["test/A@1"], era)
    assert t.spec(cid) is old.reducers["test/A@1"] and t.era_of(cid) == era
    assert t.find("test/A@1", 5) == cid and t.id_of(m.reducers["test/A@1"], 5) == cid
    other = t.id_of(m.reducers["test/A@1"], 6)
    assert t.spec(other) is m.reducers["test/A@1"]  # a new cell takes the spec it was made with
    t.set(cid, None)  # deleted: it leaves its era
    assert t.era_of(cid) is None and t.spec(cid) is m.reducers["test/A@1"]
    with pytest.raises(ValueError):
        t.set_spec(cid, m.reducers["test/B@1"])  # a cell never changes reducer name


def test_views_by_cell_id() -> None:
    t, m = table()
    a = m.reducers["test/A@1"]
    for i in range(5):
        t.set(t.id_of(a, i), bytes([i + 1]))
    t.set(2, None)
    assert len(t.states) == 5 and t.states[1] == b"\x02" and t.states[2] is None
    assert list(t.keys) == [0, 1, 2, 3, 4] and {s.name for s in t.specs} == {"test/A@1"}
    assert list(t.live_ids()) == [0, 1, 3, 4]


def test_a_world_of_mixed_keys_snapshots_reopens_and_replays(tmp_path: Path) -> None:
    m = manifest()
    path = tmp_path / "w"
    rnd = random.Random(3)
    with aos.World.open(path, m, snapshot_every=5_000) as w:
        for i in range(12_000):
            key = rnd.choice([i % 3000, -(i % 1700), f"s{i % 2500}", f"ß{i % 900}".encode()])
            v = None if rnd.random() < 0.05 else {"n": i, "pad": "p" * rnd.randint(0, 80)}
            w.submit("test/Set@1", {"id": key, "v": v})
            if i % 1000 == 0:
                w.submit("test/Tick@1", {})
        w.run()
        live = w.snapshot_hash()
        states = {(r, repr(k)): s for r, k, s in w.iter_states()}
        rows = [[r, k, blake3.blake3(aos.canonical.encode(s)).digest()] for r, k, s in w.iter_states()]
        assert bytes.fromhex(live) == hash_cells(rows)
        assert w.state("test/Solo@1") == 12
    assert any((path / "snapshots").iterdir())
    with aos.World.open(path, m) as w:
        assert w.snapshot_hash() == live
        assert {(r, repr(k)): s for r, k, s in w.iter_states()} == states
    assert aos.replay(path, m).verify() == live


MEMORY = r"""
import resource, sys, tempfile, shutil
from pathlib import Path
import aos
cells = int(sys.argv[1])
m = aos.Manifest("test/memory@1")
@m.reducer("test/Cell@1", key="id", events=["test/Set@1"])
def cell(ctx, state, event):
    return event.value["v"]
tmp = Path(tempfile.mkdtemp())
try:
    with aos.World.open(tmp / "w", m, durability="none", snapshot_every=0, snapshot_on_close=False) as w:
        for start in range(0, cells, 20_000):
            for i in range(start, min(cells, start + 20_000)):
                w.submit("test/Set@1", {"id": i, "v": {"p": "x" * 52, "i": i}})
            w.run()
    # this process's own peak (VmHWM): ru_maxrss would count the test process's RSS when it was larger
    print(next((int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")), None)
          if sys.platform == "linux" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
"""


@pytest.mark.slow
def test_a_cell_of_64_bytes_of_state_costs_under_200_bytes_of_memory() -> None:
    def peak_kib(cells: int) -> int:
        out = subprocess.run([sys.executable, "-c", MEMORY, str(cells)], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    per_cell = (peak_kib(200_000) - peak_kib(0)) * 1024 / 200_000
    assert per_cell < 200, f"{per_cell:.0f} bytes per cell"  # (≈ 390 with a bytes object and a dict entry per cell)


def test_the_snapshot_hash_is_the_reference_hash_over_every_kind_of_key() -> None:
    """CellTable.snapshot_hash (parts built, sorted and hashed in C) equals hash_cells (cbor2 and the blake3
    package over sorted (cell, hash) pairs) for keys of every kind, the keyless cell and 64-bit bounds."""
    t, m = table()
    a, b, solo = m.reducers["test/A@1"], m.reducers["test/B@1"], m.reducers["test/Solo@1"]
    rows = []
    for i, key in enumerate(KEYS):
        for spec in (a, b):
            state = bytes([i % 256]) * (1 + i % 70)
            t.set(t.id_of(spec, key), state)
            rows.append([spec.name, key, blake3.blake3(state).digest()])
    rnd = random.Random(7)  # and enough cells for the C merge sort to take many passes
    for _ in range(1_000):
        key = rnd.choice((rnd.randrange(-2**63, 2**63), str(rnd.random()), rnd.randbytes(1 + rnd.randrange(40))))
        if t.find(a.name, key) is not None:
            continue
        state = rnd.randbytes(1 + rnd.randrange(100))
        t.set(t.id_of(a, key), state)
        rows.append([a.name, key, blake3.blake3(state).digest()])
    t.set(t.id_of(solo, None), b"\x05")
    rows.append([solo.name, None, blake3.blake3(b"\x05").digest()])
    t.set(t.id_of(a, "gone"), b"\x06")
    t.set(t.id_of(a, "gone"), None)  # a deleted cell is not covered
    assert t.snapshot_hash() == hash_cells(rows) == t.snapshot_hash(t.sorted_items())


@pytest.mark.determinism
def test_workers_reading_states_while_commits_move_the_arena_give_the_inline_journal(tmp_path: Path) -> None:
    # states grow at every step, so the arena grows and compacts while worker threads read states
    m = aos.Manifest("test/grow@1")

    @m.reducer("test/Grow@1", key="id", events=["test/Add@1"])
    def grow(ctx: Any, state: Any, event: Any) -> Any:
        items = (state or {"items": []})["items"]
        return {"items": items + [event.value["n"]] if len(items) < 40 else [event.value["n"]]}

    journals = {}
    for workers in (0, 2):
        path = tmp_path / f"w{workers}"
        with aos.World.open(path, m, workers=workers, offload="all" if workers else None) as w:
            for i in range(6_000):
                w.submit("test/Add@1", {"id": i % 150, "n": i})
            w.run()
            hashes = w.snapshot_hash()
        journals[workers] = (b"".join(p.read_bytes() for p in sorted((path / "journal").glob("*.seg"))), hashes)
    assert journals[0] == journals[2]
