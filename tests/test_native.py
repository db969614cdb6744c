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


# ------------------------------------------------ aos_cbor.h, compiled as C99 and called through ctypes
CBOR_WRAPPERS = r"""
#include "aos_cbor.h"
int read_head(const uint8_t *p, size_t n, size_t *pos, int *major, uint64_t *arg) {
    return aos_cbor_read_head(p, n, pos, major, arg);
}
int skip(const uint8_t *p, size_t n, size_t *pos) { return aos_cbor_skip(p, n, pos); }
int read_uint(const uint8_t *p, size_t n, size_t *pos, uint64_t *out) { return aos_cbor_read_uint(p, n, pos, out); }
int find_key(const uint8_t *p, size_t n, size_t *pos, const char *key, size_t len) {
    return aos_cbor_find_key(p, n, pos, key, len);
}
size_t write_uint(uint8_t *p, uint64_t v) { return aos_cbor_write_uint(p, v); }
size_t write_text(uint8_t *p, const char *s, size_t len) { return aos_cbor_write_text(p, s, len); }
size_t write_array_head(uint8_t *p, uint64_t items) { return aos_cbor_write_array_head(p, items); }
size_t write_map_head(uint8_t *p, uint64_t pairs) { return aos_cbor_write_map_head(p, pairs); }
"""


@pytest.fixture(scope="module")
def cbor_h(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The helpers of the installed aos_cbor.h in a shared library (strict C99, every warning an error)."""
    import ctypes as c
    import shutil
    import subprocess

    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("cbor_h")
    (d / "wrap.c").write_text(CBOR_WRAPPERS)
    subprocess.run([cc, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC",
                    "-I", aos.get_include(), str(d / "wrap.c"), "-o", str(d / "libwrap.so")], check=True)
    lib = c.CDLL(str(d / "libwrap.so"))
    for name in ["write_uint", "write_text", "write_array_head", "write_map_head"]:
        getattr(lib, name).restype = c.c_size_t
    lib.write_uint.argtypes = [c.c_char_p, c.c_uint64]
    lib.write_text.argtypes = [c.c_char_p, c.c_char_p, c.c_size_t]
    lib.write_array_head.argtypes = lib.write_map_head.argtypes = [c.c_char_p, c.c_uint64]
    return lib


def cbor_call(lib: Any, name: str, data: bytes, *extra: Any) -> tuple[int, int, list[int]]:
    """Call a reader on ``data`` from position 0: its result, the position after it, and its outputs."""
    import ctypes as c

    pos = c.c_size_t(0)
    outs: list[Any] = {"read_head": [c.c_int(), c.c_uint64()], "read_uint": [c.c_uint64()]}.get(name, [])
    rc = getattr(lib, name)(data, c.c_size_t(len(data)), c.byref(pos), *[c.byref(o) for o in outs], *extra)
    return rc, pos.value, [o.value for o in outs]


def canonical(value: Any) -> bytes:
    import cbor2

    return cbor2.dumps(value, canonical=True)


UINTS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]


def test_aos_cbor_h_writes_what_cbor2_writes(cbor_h: Any) -> None:
    import ctypes as c

    def written(name: str, *args: Any) -> bytes:
        buf = c.create_string_buffer(400)
        n = getattr(cbor_h, name)(buf, *args)
        return buf.raw[:n]

    for v in UINTS:
        head = canonical(v)
        assert written("write_uint", v) == head, v
        assert written("write_array_head", v) == bytes([0x80 | head[0]]) + head[1:], v
        assert written("write_map_head", v) == bytes([0xA0 | head[0]]) + head[1:], v
    assert written("write_array_head", 300) == canonical([0] * 300)[:3]
    assert written("write_map_head", 300) == canonical({i: 0 for i in range(300)})[:3]
    for s in ["", "key", "x" * 23, "x" * 24, "é" * 150]:
        raw = s.encode()
        assert written("write_text", raw, len(raw)) == canonical(s), s


def test_aos_cbor_h_reads_and_skips_canonical_items(cbor_h: Any) -> None:
    for v in UINTS:
        assert cbor_call(cbor_h, "read_uint", canonical(v)) == (0, len(canonical(v)), [v])
        assert cbor_call(cbor_h, "read_head", canonical(-1 - v)) == (0, len(canonical(v)), [1, v])
    assert cbor_call(cbor_h, "read_uint", canonical(-1))[0] == -1  # not unsigned
    assert cbor_call(cbor_h, "read_head", canonical(1.5)) == (0, 3, [7, 0x3E00])  # a float's bits
    values: list[Any] = [None, True, 1.5, -(2**70), 2**64, "text", b"bytes", [1, [2, [3, {"a": [b"", -7]}]]],
                         {"amount": 3, "note": [1, {"x": b"y"}], 5: {"deep": [[[[]]]]}}, [[]] * 50]
    for value in values:
        data = canonical(value)
        assert cbor_call(cbor_h, "skip", data)[:2] == (0, len(data)), value
        assert cbor_call(cbor_h, "skip", data + b"\x00")[:2] == (0, len(data)), value  # one item, no more
        for cut in range(len(data)):  # a truncated item is refused, never read past its end
            assert cbor_call(cbor_h, "skip", data[:cut])[0] == -1, (value, cut)


def test_aos_cbor_h_refuses_heads_that_are_not_canonical(cbor_h: Any) -> None:
    for data in [b"\x18\x17",  # 23 in a 1-byte argument
                 b"\x19\x00\xff", b"\x1a\x00\x00\xff\xff", b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff",  # not the shortest
                 b"\x38\x10", b"\x78\x03abc", b"\x98\x01\x00", b"\xb8\x00",  # other major types alike
                 b"\x1c", b"\x1d", b"\x1e",  # reserved
                 b"\x5f\x41a\xff", b"\x7f\xff", b"\x9f\xff", b"\xbf\xff", b"\xff"]:  # indefinite lengths, break
        assert cbor_call(cbor_h, "skip", data)[0] == -1, data
    assert cbor_call(cbor_h, "skip", b"\x9a\xff\xff\xff\xff\x00")[0] == -1  # more items than bytes
    assert cbor_call(cbor_h, "skip", b"\xbb" + b"\x7f" + b"\xff" * 7 + b"\x00" * 8)[0] == -1


def test_aos_cbor_h_finds_a_text_key(cbor_h: Any) -> None:
    value = {"a": 1, "b": [1, {"amount": 2}], "amount": [7, {"x": b"y"}], "zz": "amount", 9: "amount"}
    data = canonical(value)
    rc, pos, _ = cbor_call(cbor_h, "find_key", data, b"amount", 6)
    assert rc == 0 and data[pos:pos + len(canonical(value["amount"]))] == canonical(value["amount"])
    for key in [b"amoun", b"amounts", b"x", b""]:  # absent (a nested or a value "amount" is not a key here)
        assert cbor_call(cbor_h, "find_key", data, key, len(key))[0] == -1, key
    assert cbor_call(cbor_h, "find_key", canonical(["amount", 1]), b"amount", 6)[0] == -1  # not a map
    assert cbor_call(cbor_h, "find_key", canonical({"a": 1})[:-1], b"b", 1)[0] == -1  # truncated


def test_aos_cbor_h_and_its_declarations_ship_with_the_package() -> None:
    import re

    header = (Path(aos.get_include()) / "aos_cbor.h").read_text()
    assert "#ifndef AOS_CBOR_H" in header
    pxd = (Path(aos._core.__file__).parent / "native.pxd").read_text()
    block = pxd.split('cdef extern from "aos_cbor.h" nogil:')[1].split("\n\n\n")[0]
    declared = re.findall(r"\b(aos_cbor_\w+|AOS_CBOR_\w+)\b", block)
    assert len(declared) >= 18
    for name in declared:
        assert re.search(rf"(static inline \w+ |#define ){name}\b", header), name
    defined = set(re.findall(r"static inline \w+ (aos_cbor_\w+)\(", header))
    assert defined <= set(declared), defined - set(declared)
