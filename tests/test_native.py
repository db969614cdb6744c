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
