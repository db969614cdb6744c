"""The C writers of the step path (aos._core.encoder, aos._core.frames).

The canonical writer must produce exactly cbor2's canonical bytes (with
``-0.0`` written as ``0.0``) for every value it accepts, and hand every value
it does not know exactly back to the general path (``None``). The frame
writer and scanner are checked against zlib's CRC-32 and the blake3 package.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import OrderedDict

import blake3
import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aos import canonical
from aos._core import encoder, frames
from aos.errors import UnencodableValueError
from aos.records import Emit, Intent, StepCommitted, StepScheduled, encode_record

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ints64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
keys = st.one_of(st.text(max_size=12), ints64, st.binary(max_size=8))
floats = st.floats(allow_nan=False)
scalars = st.one_of(st.none(), st.booleans(), ints64, floats, st.text(), st.binary())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.tuples(inner, inner),
                            st.dictionaries(keys, inner, max_size=20)),
    max_leaves=60,
)


def _reference(value: object) -> bytes:
    return cbor2.dumps(canonical.normalize(value), canonical=True)


@SETTINGS
@given(values)
def test_writer_matches_cbor2_canonical(value):
    assert encoder.encode(value) == _reference(value)


@SETTINGS
@given(st.floats(allow_nan=False) | st.floats(width=16, allow_nan=False) | st.floats(width=32, allow_nan=False)
       | st.integers(min_value=-(2**24), max_value=2**24).map(lambda i: i * 2.0**-24))
def test_floats_take_the_shortest_exact_width(x):
    data = encoder.encode(x)
    assert data == _reference(x)
    assert struct.unpack({3: ">e", 5: ">f", 9: ">d"}[len(data)], data[1:])[0] == (0.0 if x == 0 else x)


@pytest.mark.parametrize("x", [0.0, -0.0, 1.0, -1.5, 65504.0, 65505.0, 65520.0, 2.0**-14, 2.0**-24, 2.0**-25,
                               3 * 2.0**-24, 1e300, -1e-300, 5e-324, math.inf, -math.inf, 0.1, 1 / 3])
def test_float_edges(x):
    assert encoder.encode(x) == _reference(x)


@SETTINGS
@given(st.dictionaries(keys, st.integers(0, 3), min_size=10, max_size=200))
def test_large_maps_sort_like_cbor2(d):
    assert encoder.encode(d) == _reference(d)


class _Str(str):
    pass


class _Int(int):
    pass


@pytest.mark.parametrize("value", [
    math.nan, [1, {"a": math.nan}], 2**64, -(2**63) - 1, [2**70], _Str("x"), _Int(3), OrderedDict(a=1),
    {True: 1}, {1.5: 2}, {(1, 2): 3}, {None: 1}, bytearray(b"x"), {"a": set()}, "\ud800", object(),
])
def test_values_it_does_not_know_go_to_the_general_path(value):
    assert encoder.encode(value) is None


def test_general_path_still_encodes_or_explains():
    assert canonical.encode(2**70) == cbor2.dumps(2**70, canonical=True)
    assert canonical.encode(_Int(3)) == b"\x03"
    with pytest.raises(UnencodableValueError, match=r"value\[1\]\['a'\]"):
        canonical.encode([1, {"a": math.nan}])


def test_depth_limit_matches_the_model():
    ok, deep = [], []
    for _ in range(canonical.MAX_DEPTH - 1):
        ok = [ok]
    for _ in range(canonical.MAX_DEPTH + 1):
        deep = [deep]
    assert encoder.encode(ok) == b"\x81" * (canonical.MAX_DEPTH - 1) + b"\x80"
    assert encoder.encode(deep) is None
    with pytest.raises(UnencodableValueError):
        canonical.encode(deep)


def test_self_referencing_value_is_refused():
    cycle: list[object] = []
    cycle.append(cycle)
    assert encoder.encode(cycle) is None
    with pytest.raises(UnencodableValueError):
        canonical.encode(cycle)


@SETTINGS
@given(values)
def test_strict_decode_accepts_exactly_canonical_bytes(value):
    data = _reference(value)
    assert canonical.encode(canonical.decode(data)) == data


intents = st.builds(Intent, st.text(max_size=8), st.binary(max_size=8), st.none() | st.text(max_size=5),
                    st.text(max_size=8), ints64.filter(lambda c: c >= 0), st.binary(min_size=32, max_size=32))


@SETTINGS
@given(st.integers(1, 2**40), st.text(max_size=20), st.none() | ints64 | st.text(max_size=10) | st.binary(max_size=5),
       st.integers(0, 2**40), st.binary(min_size=32, max_size=32) | st.none(),
       st.lists(st.builds(Emit, st.text(max_size=10), st.binary(max_size=10)), max_size=3),
       st.lists(intents, max_size=3))
def test_step_records_match_the_generic_writer(event_id, reducer, key, seq, state_hash, emits, effects):
    sched = StepScheduled(event_id, reducer, key, seq)
    done = StepCommitted(event_id, state_hash, tuple(emits), tuple(effects))
    assert encode_record(sched) == cbor2.dumps(sched.to_wire()) == _reference(sched.to_wire())
    assert encode_record(done) == cbor2.dumps(done.to_wire()) == _reference(done.to_wire())


def test_step_record_with_a_key_beyond_64_bits_falls_back():
    rec = StepScheduled(1, "r", 2**80, 0)
    assert encode_record(rec) == _reference(rec.to_wire())


# ------------------------------------------------------------------ frames
def _frame(prev: bytes, payload: bytes) -> tuple[bytes, bytes]:
    n = len(payload).to_bytes(4, "little")
    chain = blake3.blake3(prev + payload).digest()
    return n + zlib.crc32(n).to_bytes(4, "little") + payload + chain, chain


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_frames_match_the_reference_and_scan_back(payloads):
    buf, prev, expected = bytearray(), bytes(32), b""
    for p in payloads:
        frame, chain = _frame(prev, p)
        assert frames.append(buf, prev, p) == chain
        expected += frame
        prev = chain
    assert bytes(buf) == expected
    found, stop, off, last = frames.scan(bytes(buf), 0, bytes(32))
    assert stop == frames.SCAN_END and off == len(buf) and last == prev
    assert [p for _, p, _ in found] == payloads


def test_scan_stops_at_the_first_bad_frame():
    buf, prev = bytearray(), bytes(32)
    for p in (b"one", b"two", b"three"):
        prev = frames.append(buf, prev, p)
    second = 8 + 3 + 32
    flipped = bytearray(buf)
    flipped[second + 9] ^= 1  # inside the second payload
    found, stop, off, _ = frames.scan(bytes(flipped), 0, bytes(32))
    assert (len(found), stop, off) == (1, frames.SCAN_BAD_CHAIN, second)
    bad_len = bytearray(buf)
    bad_len[second] ^= 1
    assert frames.scan(bytes(bad_len), 0, bytes(32))[1:3] == (frames.SCAN_BAD_LENGTH, second)
    assert frames.scan(bytes(buf[:-5]), 0, bytes(32))[1:3] == (frames.SCAN_PAST_END, 2 * second)
    assert frames.scan(bytes(buf) + b"\0\0\0", 0, bytes(32))[1] == frames.SCAN_SHORT_HEAD
    assert len(frames.scan(bytes(buf), 0, bytes(32), 2)[0]) == 2
    assert all(frames.length_check(n) == zlib.crc32(n.to_bytes(4, "little")) for n in (0, 1, 255, 2**31, 2**32 - 1))


# ------------------------------------------------------------ record kinds
def test_record_kind_reads_every_kind_without_decoding():
    from aos.records import KINDS, EventAdmitted, ReceiptAppended, SnapshotCreated

    samples = [EventAdmitted(0, "s", b"\x01"), StepScheduled(3, "r", "kind", 1),
               StepScheduled(4, "r", "\x64kind", 1), StepCommitted(2, bytes(32)),
               ReceiptAppended(5, bytes(32), "ok", b"\xf6", 3), SnapshotCreated(9, bytes(32), "s.snap")]
    for rec in samples:
        assert encoder.record_kind(encode_record(rec)) == rec.KIND
    assert {type(r).KIND for r in samples} <= set(KINDS)
    for junk in (b"", b"\x00", b"\xa1", b"\xa1\x64kind", b"\xa1\x64kind\x01", b"\xbf", b"\xa2\x63key\x7b\xff"):
        assert encoder.record_kind(junk) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_record_kind_never_fails_on_junk(data):
    assert encoder.record_kind(data) in (None, *[k for k in __import__("aos.records").records.KINDS]) or \
        isinstance(encoder.record_kind(data), str)


@SETTINGS
@given(st.integers(0, 2**63 - 1), st.text(max_size=30), st.binary(max_size=40))
def test_event_admitted_matches_the_generic_writer(seq, schema, value):
    from aos.records import EventAdmitted

    rec = EventAdmitted(seq, schema, value)
    assert encode_record(rec) == cbor2.dumps(rec.to_wire())


# ------------------------------------------------------------------ reader
from aos._core import decoder  # noqa: E402


@SETTINGS
@given(values)
def test_reader_reads_back_what_the_writer_wrote(value):
    data = _reference(value)
    expected = cbor2.loads(data)
    for strict in (False, True):
        got = decoder.decode(data, strict)
        assert got == expected and cbor2.dumps(got, canonical=True) == data


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=40))
def test_strict_reader_accepts_only_what_the_general_path_accepts(data):
    got = decoder.decode(data, True)
    if got is decoder.UNHANDLED:
        return
    # accepted: it must be valid, canonical, in the model, and equal cbor2's reading
    assert canonical.encode(got) == data
    assert cbor2.loads(data) == got


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=40))
def test_lenient_reader_agrees_with_cbor2(data):
    got = decoder.decode(data)
    if got is decoder.UNHANDLED:
        return
    assert cbor2.loads(data) == got


@pytest.mark.parametrize("data", [
    b"\x18\x05",  # 5 in a two-byte head
    b"\xa2\x61b\x01\x61a\x02",  # keys out of order
    b"\xa2\x61a\x01\x61a\x02",  # duplicate key
    b"\xfa\x3f\x80\x00\x00",  # 1.0 as a single (a half would do)
    b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # 1.0 as a double
    b"\xf9\x80\x00",  # -0.0
    b"\xf9\x7e\x00",  # NaN
    b"\x9f\x01\xff",  # indefinite array
    b"\xc1\x01",  # a tag
    b"\x01\x02",  # trailing bytes
    b"\x62\xc3\x28",  # invalid UTF-8
    b"\xa1\xf6\x01",  # a null key
])
def test_strict_reader_leaves_non_canonical_bytes_to_the_general_path(data):
    from aos.errors import NonCanonicalError

    assert decoder.decode(data, True) is decoder.UNHANDLED
    with pytest.raises(NonCanonicalError):
        canonical.decode(data)


def test_reader_depth_limit():
    deep = b"\x81" * canonical.MAX_DEPTH + b"\x80"
    ok = b"\x81" * (canonical.MAX_DEPTH - 1) + b"\x80"
    assert decoder.decode(deep) is decoder.UNHANDLED
    assert decoder.decode(ok, True) == cbor2.loads(ok)


def test_the_c_readers_and_writers_export_the_models_depth() -> None:
    """`from aos._core.encoder import *` works (its __all__ names only what exists) and both agree with the model."""
    from aos._core import decoder

    for module in (encoder, decoder):
        assert all(hasattr(module, name) for name in module.__all__), module.__name__
        assert module.MAX_DEPTH == canonical.MAX_DEPTH
