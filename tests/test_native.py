"""Native reducers (the C ABI): called without the GIL, same journal as the same logic in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aos
import aos._core
from aos.examples import spin
from aos.journal import JournalReader

ITERATIONS = 500


def spin_manifest(native: bool) -> aos.Manifest:
    m = aos.Manifest("test/spin@1")
    if native:
        m.native_reducer("test/Spin@1", key="id", events=["test/Go@1"], fn=spin.REDUCER, user=ITERATIONS,
                         code_id=spin.CODE_ID)
    else:
        m.reducer("test/Spin@1", key="id", events=["test/Go@1"])(spin.python_spin(ITERATIONS))

    @m.reducer("test/Count@1", events=["test/Go@1"])
    def count(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    return m


def run(path: Path, native: bool, workers: int) -> tuple[list[bytes], str, Any]:
    m = spin_manifest(native)
    # No snapshot records: a snapshot file names its era, which differs between the two manifests.
    with aos.World.open(path, m, workers=workers, snapshot_on_close=False) as w:
        for i in range(300):
            w.submit("test/Go@1", {"id": i % 37})
        w.run()
        h = w.snapshot_hash()
        state = w.state("test/Spin@1", 5)
    assert aos.replay(path, m).verify() == h
    return [e.payload for e in JournalReader(path / "journal", m.era).entries()], h, state


@pytest.mark.determinism
@pytest.mark.parametrize("workers", [0, 2, 4])
def test_native_and_python_spin_write_identical_journals(tmp_path: Path, workers: int) -> None:
    py_journal, py_hash, py_state = run(tmp_path / "py", native=False, workers=0)
    nat_journal, nat_hash, nat_state = run(tmp_path / "nat", native=True, workers=workers)
    assert nat_hash == py_hash and nat_state == py_state
    assert nat_state[0] == sum(1 for i in range(300) if i % 37 == 5)
    assert nat_journal == py_journal


def test_native_reducer_registration_errors() -> None:
    m = aos.Manifest("test/n@1")
    with pytest.raises(aos.ManifestError, match="PyCapsule"):
        m.native_reducer("test/N@1", events=["test/E@1"], fn="not a function", code_id="x")
    with pytest.raises(aos.ManifestError, match="code_id"):
        m.native_reducer("test/N@1", events=["test/E@1"], fn=spin.REDUCER, code_id="")


def test_native_code_id_enters_the_era() -> None:
    def build(code_id: str) -> aos.Manifest:
        m = aos.Manifest("test/n@1")
        m.native_reducer("test/N@1", events=["test/E@1"], fn=spin.REDUCER, user=1, code_id=code_id)
        return m

    assert build("a@1").era == build("a@1").era != build("a@2").era


def test_abi_header_and_pxd_ship_with_the_package() -> None:
    root = Path(aos._core.__file__).parent
    header = (root / "include" / "aos_native.h").read_text()
    assert "typedef int (*aos_reducer_fn)" in header and "AOS_NATIVE_ABI_VERSION 1" in header
    assert "aos_reducer_fn" in (root / "native.pxd").read_text()


# ------------------------------------------------ the whole ABI, through ctypes
def _ctypes_reducer() -> Any:
    """A native reducer written with ctypes: counts, emits, keeps, deletes and fails through the aos_out callbacks,
    and once returns a state that is not canonical.

    ctypes takes the GIL for the Python body, so it runs from worker threads
    that call native jobs without the GIL, as a C reducer would.
    """
    import ctypes as c

    import cbor2

    class StepIn(c.Structure):
        _fields_ = [("event_id", c.c_int64), ("state", c.c_void_p), ("state_len", c.c_size_t),
                    ("schema", c.c_char_p), ("event", c.c_void_p), ("event_len", c.c_size_t),
                    ("key", c.c_void_p), ("key_len", c.c_size_t), ("seed", c.c_void_p)]

    set_state_t = c.CFUNCTYPE(c.c_int, c.c_void_p, c.c_void_p, c.c_size_t)
    emit_t = c.CFUNCTYPE(c.c_int, c.c_void_p, c.c_char_p, c.c_char_p, c.c_size_t)
    effect_t = c.CFUNCTYPE(c.c_int, c.c_void_p, c.c_char_p, c.c_char_p, c.c_size_t, c.c_char_p, c.c_int64)
    fail_t = c.CFUNCTYPE(c.c_int, c.c_void_p, c.c_char_p)

    class Out(c.Structure):
        _fields_ = [("impl", c.c_void_p), ("set_state", set_state_t), ("emit", emit_t), ("effect", effect_t),
                    ("fail", fail_t)]

    @c.CFUNCTYPE(c.c_int, c.POINTER(StepIn), c.POINTER(Out), c.c_void_p)
    def reducer(inp: Any, out: Any, user: Any) -> int:
        i, o = inp.contents, out.contents
        state = cbor2.loads(c.string_at(i.state, i.state_len)) if i.state else 0
        event = cbor2.loads(c.string_at(i.event, i.event_len))
        seed = c.string_at(i.seed, 32)
        n = state + event["by"]
        if n % 7 == 0:
            o.fail(out, b"seven")
            return 1  # a failure: StepFailed, the cell unchanged
        if n % 5 == 0:
            note = cbor2.dumps({"id": event["id"], "n": n, "s": seed[0]}, canonical=True)
            o.emit(out, b"test/Note@1", note, len(note))
        if n % 13 == 0:
            o.set_state(out, None, 0)  # delete the cell
            return 0
        if n % 11 == 0:
            return 0  # no set_state: the state is kept
        if n % 17 == 0:
            bad = b"\x18\x05"  # 5 in a longer head than it needs: not canonical, the step fails
            return o.set_state(out, bad, len(bad))
        data = cbor2.dumps(n, canonical=True)
        return o.set_state(out, data, len(data))

    return reducer, c.cast(reducer, c.c_void_p).value


@pytest.mark.determinism
def test_the_abi_through_workers_that_never_take_the_gil(tmp_path: Path) -> None:
    keep, address = _ctypes_reducer()
    m = aos.Manifest("test/abi@1")
    m.native_reducer("test/Native@1", key="id", events=["test/Add@1"], fn=address, code_id="ctypes-abi@1")

    @m.reducer("test/Notes@1", key="id", events=["test/Note@1"])
    def notes(ctx: Any, state: Any, event: Any) -> Any:
        return (state or []) + [event.value["n"]]

    journals, hashes, metrics = {}, {}, {}
    for workers in (0, 2, 4):
        path = tmp_path / f"w{workers}"
        with aos.World.open(path, m, workers=workers, snapshot_on_close=False) as w:
            for i in range(400):
                w.submit("test/Add@1", {"id": i % 9, "by": 1 + i % 4})
            w.run()
            hashes[workers] = w.snapshot_hash()
            metrics[workers] = w.metrics()
        assert aos.replay(path, m).verify() == hashes[workers]
        journals[workers] = [e.payload for e in JournalReader(path / "journal", m.era).entries()]
    assert journals[0] == journals[2] == journals[4]
    assert hashes[0] == hashes[2] == hashes[4]
    assert metrics[0]["failures"] > 0 and metrics[0]["tickets"] > 400  # failures and emitted notes happened
    assert metrics[2]["worker_busy_seconds"] > 0
    del keep
