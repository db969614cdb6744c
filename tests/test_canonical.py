"""Canonical values (aos.canonical), record encoding (aos.records) and aos.rng.

The checks compare against small reference encoders written here from the
rules in aos.canonical's docstring (RFC 7049 canonical CBOR, shortest
floats, length-first key order), not against cbor2 itself.
"""

from __future__ import annotations

import math
import struct

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aos import canonical
from aos.canonical import decode, encode
from aos.errors import NonCanonicalError, UnencodableValueError
from aos.records import (
    KINDS,
    ApprovalRecorded,
    BudgetGranted,
    CellMigrated,
    EffectQueued,
    Emit,
    EraApplied,
    EventAdmitted,
    Intent,
    InvariantViolated,
    PolicyDecision,
    ProposalSubmitted,
    ReceiptAppended,
    ShadowRunCompleted,
    SnapshotCreated,
    StepCommitted,
    StepFailed,
    StepScheduled,
    decode_record,
    encode_record,
)
from aos.rng import Rng, step_seed

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies
big_ints = st.integers(min_value=-(2**200), max_value=2**200)
edge_ints = st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64,
                             -1, -24, -25, -256, -257, -65536, -65537, -(2**32), -(2**32) - 1,
                             -(2**64), -(2**64) - 1, 2**64 + 1, -(2**64) - 2])
ints = st.integers() | big_ints | edge_ints
floats = st.floats(allow_nan=False) | st.floats(width=16, allow_nan=False) | st.floats(width=32, allow_nan=False)
scalars = st.none() | st.booleans() | ints | floats | st.text(max_size=30) | st.binary(max_size=30)
keys = st.text(max_size=10) | st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=10)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6)
    | st.lists(inner, max_size=4).map(tuple),
    max_leaves=30,
)


# ------------------------------------------------------------------ helpers
def model(v):
    """What decode(encode(v)) should be: tuples become lists, -0.0 becomes 0.0."""
    if type(v) is float:
        return 0.0 if v == 0.0 else v
    if isinstance(v, dict):
        return {k: model(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [model(x) for x in v]
    return v


def assert_same(got, want, where="value"):
    """Strict equality: types too (1 != 1.0 != True), floats bit for bit."""
    assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
    if type(want) is float:
        assert struct.pack(">d", got) == struct.pack(">d", want), f"{where}: {got!r} != {want!r}"
    elif type(want) is list:
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            assert_same(g, w, f"{where}[{i}]")
    elif type(want) is dict:
        assert set(got) == set(want) and len(got) == len(want), where
        for k in want:
            assert type(next(g for g in got if g == k and type(g) is type(k))) is type(k)
            assert_same(got[k], want[k], f"{where}[{k!r}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def ref_head(major: int, n: int) -> bytes:
    """Shortest CBOR head for major type ``major`` and argument ``n``."""
    if n < 24:
        return bytes([major << 5 | n])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
    raise AssertionError("use a bignum")


def ref_int(n: int) -> bytes:
    major, m = (0, n) if n >= 0 else (1, -1 - n)
    if m < 2**64:
        return ref_head(major, m)
    mag = m.to_bytes((m.bit_length() + 7) // 8, "big")
    return bytes([0xC2 + major]) + ref_head(2, len(mag)) + mag


def ref_float(x: float) -> bytes:
    if x == 0.0:
        x = 0.0
    for head, fmt in ((0xF9, ">e"), (0xFA, ">f")):
        try:
            packed = struct.pack(fmt, x)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == x:
            return bytes([head]) + packed
    return b"\xfb" + struct.pack(">d", x)


def key_order(k: bytes) -> tuple[int, bytes]:
    return (len(k), k)


# ------------------------------------------------------------------ round trips
@SETTINGS
@given(values)
def test_round_trip_value_model(v):
    data = encode(v)
    back = decode(data)
    assert_same(back, model(v))
    assert encode(back) == data
    assert encode(model(v)) == data
    assert decode(encode(back)) == back


@SETTINGS
@given(values)
def test_decode_of_encoding_re_encodes_identically(v):
    data = encode(v)
    assert encode(decode(data)) == data
    assert canonical.hash_value(v) == blake3.blake3(data).digest()
    assert len(canonical.hash_value(v)) == canonical.HASH_SIZE


@pytest.mark.parametrize("v", [
    None, True, False, 0, -1, 2**64 - 1, 2**64, -(2**64), -(2**64) - 1, 2**300, -(2**300), 1.5, 0.1,
    float("inf"), float("-inf"), 5.960464477539063e-08, 1e-310, "", "snow ☃ man", b"", b"\x00\xff",
    [], {}, [[[]]], {"a": {"b": [1, 2.5, b"x", None]}}, {1: "one", -1: "minus", b"k": 2, "k": 3},
    {2**70: 1, -(2**70): 2},
])
def test_round_trip_examples(v):
    data = encode(v)
    assert_same(decode(data), model(v))
    assert encode(decode(data)) == data


def test_tuples_encode_as_lists():
    assert encode((1, "a", (2, b"b"))) == encode([1, "a", [2, b"b"]])
    assert decode(encode((1, 2))) == [1, 2]
    assert type(decode(encode((1, 2)))) is list


def test_known_encodings():
    assert encode(None) == b"\xf6"
    assert encode(True) == b"\xf5"
    assert encode(False) == b"\xf4"
    assert encode([1, [2, 3]]) == bytes.fromhex("8201820203")
    assert encode("a") == b"\x61a"
    assert encode(b"\x01") == b"\x41\x01"
    assert encode({"a": 1}) == bytes.fromhex("a1616101")


# ------------------------------------------------------------------ key order
@SETTINGS
@given(st.dictionaries(keys, scalars, max_size=12))
def test_map_keys_sorted_length_first_then_bytewise(d):
    pairs = sorted(((encode(k), encode(v)) for k, v in d.items()), key=lambda p: key_order(p[0]))
    expected = ref_head(5, len(d)) + b"".join(k + v for k, v in pairs)
    assert encode(d) == expected


@SETTINGS
@given(st.dictionaries(keys, values, max_size=10), st.randoms(use_true_random=False))
def test_insertion_order_does_not_matter(d, rnd):
    items = list(d.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    assert encode(shuffled) == encode(d)
    assert encode(dict(reversed(list(d.items())))) == encode(d)


def test_key_order_is_length_first_not_bytewise():
    # 1000 encodes as 19 03e8 (3 bytes), "b" as 61 62 (2 bytes): bytewise 19 < 61,
    # but shorter keys sort first.
    d = {1000: 0, "b": 0}
    assert encode(d) == bytes.fromhex("a2" "6162" "00" "1903e8" "00")
    assert encode({"b": 0, 1000: 0}) == encode(d)
    # Same length: bytewise, so major type decides (int < bytes < str).
    assert encode({"a": 1, b"a": 2, 1: 3}) == bytes.fromhex("a3" "0103" "416102" "616101")
    assert encode({"aa": 1, "b": 2}) == bytes.fromhex("a2" "616202" "62616101")


# ------------------------------------------------------------------ shortest ints / floats
@SETTINGS
@given(ints)
def test_ints_are_shortest(n):
    assert encode(n) == ref_int(n)
    assert_same(decode(ref_int(n)), n)


@SETTINGS
@given(floats)
def test_floats_are_shortest(x):
    assert encode(x) == ref_float(x)
    assert_same(decode(encode(x)), model(x))


@pytest.mark.parametrize("x, hexed", [
    (1.5, "f93e00"), (0.0, "f90000"), (-2.0, "f9c000"), (65504.0, "f97bff"), (100000.0, "fa47c35000"),
    (1.1, "fb3ff199999999999a"), (float("inf"), "f97c00"), (float("-inf"), "f9fc00"),
    (5.960464477539063e-08, "f90001"), (3.4028234663852886e38, "fa7f7fffff"), (32768.0, "f97800"),
    (40000.0, "f978e2"), (-65504.0, "f9fbff"), (65505.0, "fa477fe100"),
])
def test_float_examples(x, hexed):
    assert encode(x).hex() == hexed
    assert_same(decode(bytes.fromhex(hexed)), x)


def test_negative_zero_normalized():
    assert encode(-0.0) == encode(0.0) == b"\xf9\x00\x00"
    assert encode({"a": [-0.0, 1]}) == encode({"a": [0.0, 1]})
    assert encode((-0.0,)) == encode([0.0])
    back = decode(encode(-0.0))
    assert math.copysign(1.0, back) == 1.0
    assert canonical.normalize({"x": [-0.0]}) == {"x": [0.0]}
    assert math.copysign(1.0, canonical.normalize({"x": [-0.0]})["x"][0]) == 1.0


def test_infinities_allowed():
    assert decode(encode([float("inf"), float("-inf")])) == [float("inf"), float("-inf")]


@pytest.mark.parametrize("v, path", [
    (float("nan"), "value"),
    ([float("nan")], "value[0]"),
    ({"a": [1, float("nan")]}, "value['a'][1]"),
    ({"a": {b"k": [0, 1, {7: float("nan")}]}}, "value['a'][b'k'][2][7]"),
    ((1, (2, float("nan"))), "value[1][1]"),
])
def test_nan_rejected_with_path(v, path):
    with pytest.raises(UnencodableValueError) as ei:
        encode(v)
    assert ei.value.path == path
    assert "NaN" in ei.value.reason


def test_error_names_where():
    with pytest.raises(UnencodableValueError) as ei:
        encode({"a": float("nan")}, where="demo.Event")
    assert ei.value.where == "demo.Event"
    assert "demo.Event" in str(ei.value) and "value['a']" in str(ei.value)
    with pytest.raises(UnencodableValueError) as ei:
        encode({"a": float("nan")}, path="event")
    assert ei.value.path == "event['a']"


class _Float(float):
    pass


class _Int(int):
    pass


def test_float_subclasses_follow_float_rules():
    # A subclass of float (e.g. numpy.float64) is accepted like a float, so its
    # NaN must be refused and its -0.0 normalized like a float's.
    assert encode(_Float(1.5)) == encode(1.5)
    assert encode([_Float(-0.0)]) == encode([0.0])
    with pytest.raises(UnencodableValueError) as ei:
        encode({"x": _Float("nan")})
    assert ei.value.path == "value['x']"
    assert encode(_Int(7)) == encode(7)


# ------------------------------------------------------------------ values outside the model
@pytest.mark.parametrize("v, path", [
    ({1, 2}, "value"),
    (frozenset(), "value"),
    (object(), "value"),
    ([1, {"a": {3}}], "value[1]['a']"),
    ({1.5: "x"}, "value[1.5]"),
    ({"ok": {True: 1}}, "value['ok'][True]"),
    ({False: 1}, "value[False]"),
    ({(1, 2): 1}, "value[(1, 2)]"),
    ({None: 1}, "value[None]"),
    ([0, {"a": 1, None: 2}], "value[1][None]"),
    (bytearray(b"x"), "value"),
    (complex(1, 2), "value"),
])
def test_outside_model_rejected_with_path(v, path):
    with pytest.raises(UnencodableValueError) as ei:
        encode(v)
    assert ei.value.path == path


def test_unencodable_is_a_value_error():
    with pytest.raises(ValueError):
        encode(object())


def test_cyclic_and_too_deep_values_rejected():
    a: list = []
    a.append(a)
    with pytest.raises(UnencodableValueError):
        encode(a)
    d: dict = {}
    d["self"] = d
    with pytest.raises(UnencodableValueError):
        encode(d)
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(UnencodableValueError):
        encode(deep)


def test_whatever_encode_accepts_decode_accepts():
    # Nesting: every depth encode accepts must decode (and vice versa).
    for depth in (1, 100, 399, 400, 401, 500, 998, 1500):
        v: object = 0
        for _ in range(depth):
            v = [v]
        try:
            data = encode(v)
        except UnencodableValueError:
            data = None
        if data is not None:
            assert encode(decode(data)) == data
        v = {"k": 0}
        for _ in range(depth - 1):
            v = {"k": v}
        try:
            data = encode(v)
        except UnencodableValueError:
            continue
        assert encode(decode(data)) == data


# ------------------------------------------------------------------ decode rejects non-canonical bytes
NON_CANONICAL = {
    "int head not shortest 1": "1801",
    "int head not shortest 2": "190001",
    "int head not shortest 4": "1a00000001",
    "int head not shortest 8": "1b0000000000000001",
    "neg int head not shortest": "3800",
    "length head not shortest": "5801ff",
    "str length head not shortest": "780161",
    "array length head not shortest": "980101",
    "bignum that fits 64 bits": "c24101",
    "bignum with leading zero": "c2490001000000000000000000",
    "indefinite array": "9f01ff",
    "indefinite map": "bf616101ff",
    "indefinite bytes": "5f4101ff",
    "indefinite text": "7f6161ff",
    "unsorted map keys": "a2616201616102",
    "unsorted map keys length-first": "a21903e8006162" "00",
    "duplicate map keys": "a2616101616102",
    "trailing bytes": "0100",
    "trailing break": "01ff",
    "two values": "f6f6",
    "float64 that fits float16": "fb3ff8000000000000",
    "float32 that fits float16": "fa3fc00000",
    "float64 that fits float32": "fb40f86a0000000000",
    "negative zero f16": "f98000",
    "negative zero f32": "fa80000000",
    "negative zero f64": "fb8000000000000000",
    "NaN f16": "f97e00",
    "NaN f32": "fa7fc00000",
    "NaN f64": "fb7ff8000000000000",
    "NaN inside map": "a1616181f97e00",
    "truncated head": "19",
    "truncated float": "f93e",
    "truncated bytes": "4301",
    "truncated array": "820102"[:4],
    "truncated map": "a16161",
    "empty input": "",
    "datetime tag": "c074" + "2013-03-21T20:04:00Z".encode().hex(),
    "epoch datetime tag": "c11a514b67b0",
    "decimal fraction tag": "c48221196ab3",
    "set tag": "d9010281" "01",
    "unknown tag": "d8ff01",
    "self-describe tag": "d9d9f701",
    "undefined": "f7",
    "simple value": "e0",
    "simple value 255": "f8ff",
    "lone break": "ff",
    "map with float key": "a1f93e0001",
    "map with bool key": "a1f501",
    "map with null key": "a1f601",
    "map with array key": "a1810101",
    "map with map key": "a1a1010101",
    "invalid utf-8": "62fffe",
    "shared reference, no cycle": "82d81c01d81d00",
    "string reference": "d90100826161d81900",
}


@pytest.mark.parametrize("hexed", list(NON_CANONICAL.values()), ids=list(NON_CANONICAL))
def test_decode_rejects_non_canonical(hexed):
    with pytest.raises(NonCanonicalError):
        decode(bytes.fromhex(hexed))


@pytest.mark.parametrize("hexed", ["d81c81d81d00", "d81ca16161d81d00", "d81c82d81d0001"],
                         ids=["cyclic list", "cyclic map", "cyclic list 2"])
def test_decode_rejects_cyclic_shared_references(hexed):
    # Tags 28/29 let CBOR describe a cycle; that is no value of the model.
    with pytest.raises(NonCanonicalError):
        decode(bytes.fromhex(hexed))


@pytest.mark.parametrize("depth", [401, 1000, 100_000])
def test_decode_rejects_too_deep_nesting(depth):
    with pytest.raises(NonCanonicalError):
        decode(b"\x81" * depth + b"\x00")


def test_decode_error_names_where():
    with pytest.raises(NonCanonicalError, match="^payload of X: "):
        decode(b"\x18\x01", where="payload of X")


def test_non_canonical_is_a_value_error():
    with pytest.raises(ValueError):
        decode(b"\x18\x01")


def _decode_is_strict(data: bytes) -> None:
    try:
        value = decode(data)
    except NonCanonicalError:
        return
    assert encode(value) == data


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_decode_strictly(data):
    _decode_is_strict(data)


@settings(max_examples=600, deadline=None)
@given(values, st.data())
def test_mutated_encodings_decode_strictly(v, data):
    enc = bytearray(encode(v))
    op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
    if op == "flip":
        i = data.draw(st.integers(0, len(enc) - 1))
        enc[i] = data.draw(st.integers(0, 255))
    elif op == "insert":
        i = data.draw(st.integers(0, len(enc)))
        enc[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    elif op == "delete":
        i = data.draw(st.integers(0, len(enc) - 1))
        del enc[i]
    elif op == "truncate":
        del enc[data.draw(st.integers(0, len(enc) - 1)):]
        with pytest.raises(NonCanonicalError):
            decode(bytes(enc))
    else:
        enc += data.draw(st.binary(min_size=1, max_size=3))
        with pytest.raises(NonCanonicalError):
            decode(bytes(enc))
    _decode_is_strict(bytes(enc))


def test_decode_trusted_reads_own_output():
    v = {"a": [1, 2.5, b"x"], 3: None}
    assert canonical.decode_trusted(encode(v)) == v


# ------------------------------------------------------------------ records
H1 = canonical.digest(b"state one")
H2 = canonical.digest(b"state two")


def sample_records() -> list:
    return [
        EventAdmitted(seq=0, schema="counter.Add", value=encode({"key": "a", "n": 1})),
        EventAdmitted(seq=2**40, schema="bank.Deposit", value=encode({"acct": 7, "amount": 2.5}), lane_id=3),
        EventAdmitted(seq=5, schema="counter.Add", value=encode({"key": "b", "n": 2}), visible_at=12),
        EventAdmitted(seq=6, schema="counter.Add", value=encode({"key": "c", "n": 1}), lane_id=2, visible_at=13,
                      origin=(4096, 7)),
        EventAdmitted(seq=7, schema="counter.Add", value=encode({"key": "c", "n": 1}), visible_at=14,
                      idempotency_key="order-7"),
        StepScheduled(event_id=1, reducer="counter", key="a", input=0),
        StepScheduled(event_id=2, reducer="bank", key=7, input=1),
        StepScheduled(event_id=3, reducer="blob", key=b"\x00\x01", input=1),
        StepScheduled(event_id=4, reducer="global", key=None, input=2, lane_id=1),
        StepCommitted(event_id=1, state_hash=H1),
        StepCommitted(event_id=2, state_hash=None),
        StepCommitted(
            event_id=3, state_hash=H2,
            emits=(Emit("counter.Added", encode({"n": 1})), Emit("audit.Log", encode(["x", None]))),
            effects=(Intent(kind="http.post", params=encode({"url": "https://example.org", "body": b"hi"}),
                            cap="net", idempotency_key="step-3-0", cost=5, intent_hash=H1),
                     Intent(kind="timer", params=encode({"ms": 100}), cap=None,
                            idempotency_key="step-3-1", cost=0, intent_hash=H2)),
        ),
        StepFailed(event_id=5, reducer="acme/Order@1", key="o-1", error="ValueError", message="amount must be positive",
                   traceback="  orders.py, in order, line 4 of its definition: raise ValueError(...)"),
        StepFailed(event_id=6, reducer="acme/Total@1", key=None, error="KeyError", message=""),
        StepFailed(event_id=7, reducer="acme/Order@1", key=-(2**63), error="E", message="m"),
        SnapshotCreated(event_id=6, snapshot_hash=H2, file="snapshots/00000000000000000006.snap"),
        PolicyDecision(event_id=3, intent_hash=H1, allowed=True, reason="allowed by capability net"),
        PolicyDecision(event_id=3, intent_hash=H2, allowed=False, reason="no capability covers effect timer"),
        EffectQueued(event_id=3, intent_hash=H1, effect="http.post", cap="net", idempotency_key="step-3-0",
                     cost=5),
        ReceiptAppended(seq=9, intent_hash=H1, status="ok", payload=encode({"code": 200}), cost=4),
        InvariantViolated(event_id=7, invariant="stock never negative", message="sku-1 has -2"),
        ProposalSubmitted(proposal=12, base=H1, era=H2, manifest=encode({"manifest": "m"}),
                          changes=(("reducer_added", "reducer r added"),)),
        ApprovalRecorded(proposal=12, by="alice", note="reviewed"),
        ShadowRunCompleted(proposal=12, since=3, compared=40, differing=2, costs=(("net", 5),)),
        EraApplied(event_id=0, proposal=12, ends=H1, starts=H2, migrated=("r",), retired=(), dropped=("d",),
                   pinned=("p",), adopted=("a",)),
        CellMigrated(reducer="r", key="a", state=encode({"n": 1}), state_hash=canonical.digest(encode({"n": 1}))),
        CellMigrated(reducer="r", key=None, state=None, state_hash=None),
        BudgetGranted(cap="net", amount=2**40, grant=3, lane_id=1),
    ]


def test_samples_cover_every_kind():
    assert {r.KIND for r in sample_records()} == set(KINDS)
    for r in sample_records():
        assert KINDS[r.KIND] is type(r)


@pytest.mark.parametrize("rec", sample_records(), ids=lambda r: r.KIND)
def test_record_round_trip(rec):
    payload = encode_record(rec)
    back = decode_record(payload)
    assert type(back) is type(rec)
    assert back == rec
    assert encode_record(back) == payload
    wire = decode(payload)
    assert wire["kind"] == rec.KIND
    left_out = {f for f in getattr(rec, "OPTIONAL", ()) if getattr(rec, f) is None}  # e.g. an old visible_at
    assert set(wire) == (set(rec.FIELDS) - left_out) | {"kind"}


def _wire(rec) -> dict:
    return decode(encode_record(rec))


def test_record_unknown_kind():
    for rec in sample_records():
        w = _wire(rec)
        w["kind"] = "Bogus"
        with pytest.raises(NonCanonicalError, match="unknown record kind"):
            decode_record(encode(w))
    w = _wire(sample_records()[0])
    del w["kind"]
    with pytest.raises(NonCanonicalError):
        decode_record(encode(w))
    w["kind"] = 7
    with pytest.raises(NonCanonicalError):
        decode_record(encode(w))


# (an optional field may be left out: EventAdmitted.visible_at of a record from before it existed)
MISSING = [(rec, name) for rec in sample_records() for name in rec.FIELDS if name not in getattr(rec, "OPTIONAL", ())]


@pytest.mark.parametrize("rec, name", MISSING, ids=[f"{r.KIND}-{n}" for r, n in MISSING])
def test_record_missing_field(rec, name):
    w = _wire(rec)
    del w[name]
    with pytest.raises(NonCanonicalError):
        decode_record(encode(w))


@pytest.mark.parametrize("rec", sample_records(), ids=lambda r: r.KIND)
def test_record_extra_field(rec):
    for extra in ("extra", "event_id" if "event_id" not in rec.FIELDS else "seq", 1, b"x"):
        w = _wire(rec)
        w[extra] = 1
        with pytest.raises(NonCanonicalError):
            decode_record(encode(w))


def test_record_not_a_map_or_not_canonical():
    for bad in ([1, 2], "EventAdmitted", None, 3):
        with pytest.raises(NonCanonicalError):
            decode_record(encode(bad))
    payload = encode_record(sample_records()[0])
    with pytest.raises(NonCanonicalError):
        decode_record(payload + b"\x00")
    with pytest.raises(NonCanonicalError):
        decode_record(payload[:-1])


_GOOD_INTENT = {"kind": "k", "params": b"\xa0", "cap": None, "idempotency_key": "i", "cost": 1,
                "intent_hash": H1}

WRONG_TYPES = {
    "EventAdmitted": {
        "seq": ["0", -1, None, 1.0, True], "schema": [b"s", 1, None], "value": ["v", 1, None, [1]],
        "lane_id": [-1, "0", None, True, 0.0], "visible_at": [0, -1, "1", None, 1.0, True],
        "origin": [None, [1], [1, 2, 3], [-1, 2], [1, "2"], "1", 7, [1, 2.0]],
        "idempotency_key": [None, b"k", 1, ["k"]],
    },
    "StepScheduled": {
        "event_id": [0, -1, "1", None, 1.0, True], "reducer": [b"r", 1, None],
        "key": [True, 1.5, [1], {"a": 1}], "input": [-1, "0", None, True], "lane_id": [-1, "0"],
    },
    "StepCommitted": {
        "event_id": [0, "3", None], "state_hash": [b"short", "h" * 32, 1, [H1]],
        "emits": [1, "ab", [[1, b""]], [["s", "v"]], [["s"]], [["s", b"v", 1]], [1],
                  [{"x": 0, b"yy": 1}], {"ab": 1}, [b"ab"]],
        "effects": [1, [1], [["k", b"", None, "i", 1, H1]],
                    [dict(_GOOD_INTENT, cost="1")], [dict(_GOOD_INTENT, cap=1)],
                    [dict(_GOOD_INTENT, params="p")], [dict(_GOOD_INTENT, kind=None)],
                    [dict(_GOOD_INTENT, idempotency_key=1)], [dict(_GOOD_INTENT, intent_hash="h")],
                    [dict(_GOOD_INTENT, cost=True)], [dict(_GOOD_INTENT, extra=1)],
                    [{k: v for k, v in _GOOD_INTENT.items() if k != "cap"}]],
        "lane_id": [-1, None],
    },
    "StepFailed": {"event_id": [0, "5"], "reducer": [None, 1, b"r"], "key": [1.5, True, [1]],
                   "error": [1, None, b"e"], "message": [None, 1, b"m"], "traceback": [None, 1, b"t"],
                   "lane_id": [-1, "0"]},
    "SnapshotCreated": {
        "event_id": [-1, None, "0"], "snapshot_hash": [None, b"", "x" * 32, H1 + b"\x00"],
        "file": [None, b"f", 1], "lane_id": [-1, 0.0],
    },
    "PolicyDecision": {
        "event_id": [0, "3"], "intent_hash": [b"short", "h" * 32, None], "allowed": [1, "yes", None],
        "reason": [None, b"r", 1], "lane_id": [-1, None],
    },
    "EffectQueued": {
        "event_id": [0, None], "intent_hash": [b"", None], "effect": [None, 1], "cap": [None, 1, b"c"],
        "idempotency_key": [None, 1], "cost": [-1, "1", True, None], "lane_id": [-1],
    },
    "ReceiptAppended": {
        "seq": [-1, "1", None], "intent_hash": [b"x", None], "status": [None, 1], "payload": ["p", None, 1],
        "cost": [-1, True, "0"], "lane_id": [-1],
    },
    "InvariantViolated": {
        "event_id": [0, None], "invariant": [None, 1, b"i"], "message": [None, 2], "lane_id": [True],
    },
    "ProposalSubmitted": {
        "proposal": [-1, None, "1"], "base": [b"x", None], "era": [H1[:31], "h"], "manifest": [None, "m"],
        "changes": [None, [["a"]], [[1, "x"]], "c"], "lane_id": [-1],
    },
    "ApprovalRecorded": {"proposal": [-1, True], "by": [None, 1], "note": [b"n"], "lane_id": [None]},
    "ShadowRunCompleted": {
        "proposal": [-1], "since": [-1, None], "compared": ["1"], "differing": [2.5], "costs": [[["c"]], [[1, 2]], 3],
        "lane_id": [True],
    },
    "EraApplied": {
        "event_id": [-1, None], "proposal": [None], "ends": [b"e"], "starts": [None], "migrated": [[1], "r"],
        "retired": [None], "dropped": [[b"d"]], "pinned": [[None], "p"], "adopted": [None, [2]], "lane_id": [-2],
    },
    "CellMigrated": {
        "reducer": [None, 1], "key": [2.5, [1]], "state": [1, "s"], "state_hash": [b"h", 3], "lane_id": [None],
    },
    "BudgetGranted": {
        "cap": [None, 1, b"c"], "amount": [-1, "1", None, 1.5], "grant": [-1, None, True], "lane_id": [-1, "1"],
    },
}
WRONG = [(kind, name, bad) for kind, fields in WRONG_TYPES.items() for name, bads in fields.items()
         for bad in bads]


def _sample_of(kind: str):
    return next(r for r in reversed(sample_records()) if r.KIND == kind)


@pytest.mark.parametrize("kind, name, bad", WRONG, ids=[f"{k}-{n}-{i}" for i, (k, n, _) in enumerate(WRONG)])
def test_record_wrong_typed_field(kind, name, bad):
    w = _wire(_sample_of(kind))
    w[name] = bad
    with pytest.raises(NonCanonicalError):
        decode_record(encode(w))


def test_wrong_types_cover_every_field():
    for kind, cls in KINDS.items():
        assert set(WRONG_TYPES[kind]) == set(cls.FIELDS)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sample_records()), st.data())
def test_decoded_records_re_encode_to_their_payload(rec, data):
    """Whatever decode_record accepts is the canonical encoding of the record it returns."""
    w = _wire(rec)
    name = data.draw(st.sampled_from(sorted(set(rec.FIELDS))))
    w[name] = data.draw(values)
    payload = encode(w)
    try:
        back = decode_record(payload)
    except NonCanonicalError:
        return
    assert encode_record(back) == payload


# ------------------------------------------------------------------ rng
SEED = step_seed(1, "counter", "a")


def test_rng_same_seed_same_stream():
    a, b = Rng(SEED), Rng(SEED)
    assert [a.u64() for _ in range(50)] == [b.u64() for _ in range(50)]
    assert [a.randint(-5, 5) for _ in range(50)] == [b.randint(-5, 5) for _ in range(50)]
    assert a.random() == b.random()
    xs, ys = list(range(20)), list(range(20))
    a.shuffle(xs)
    b.shuffle(ys)
    assert xs == ys and sorted(xs) == list(range(20))


def test_rng_different_seeds_differ():
    other = step_seed(2, "counter", "a")
    assert Rng(SEED).bytes(64) != Rng(other).bytes(64)


def test_rng_stream_is_blake3_xof_keyed_by_seed():
    expected = blake3.blake3(b"aos.rng", key=SEED).digest(length=2000)
    assert Rng(SEED).bytes(2000) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=20))
def test_rng_chunking_does_not_change_the_stream(sizes):
    r = Rng(SEED)
    got = b"".join(r.bytes(n) for n in sizes)
    assert got == Rng(SEED).bytes(sum(sizes))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(-(2**80), 2**80), st.integers(0, 2**80))
def test_randint_within_bounds(seed, a, width):
    r = Rng(seed)
    b = a + width
    for _ in range(20):
        x = r.randint(a, b)
        assert type(x) is int and a <= x <= b
    assert r.randint(a, a) == a


def test_randint_covers_small_range_and_rejects_empty():
    r = Rng(SEED)
    seen = {r.randint(1, 6) for _ in range(600)}
    assert seen == {1, 2, 3, 4, 5, 6}
    with pytest.raises(ValueError):
        r.randint(3, 2)
    for _ in range(200):
        assert 0.0 <= r.random() < 1.0
        assert 0 <= r.randbelow(3) < 3
    with pytest.raises(ValueError):
        Rng(b"short")


def test_step_seed():
    base = step_seed(7, "counter", "a")
    assert len(base) == 32
    assert step_seed(7, "counter", "a") == base
    assert base == blake3.blake3(encode([7, "counter", "a"])).digest()
    variants = [
        step_seed(8, "counter", "a"), step_seed(7, "counters", "a"), step_seed(7, "counter", "b"),
        step_seed(7, "counter", b"a"), step_seed(7, "counter", None), step_seed(7, "counter", 1),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)
    assert step_seed(1, "r", 1) != step_seed(1, "r", "1")


def test_fast_record_encoding_is_the_canonical_encoding() -> None:
    """encode_record skips cbor2's key sort; its bytes must equal canonical mode's."""
    import cbor2

    from aos.records import (
        KINDS,
        Emit,
        EventAdmitted,
        Intent,
        SnapshotCreated,
        StepCommitted,
        StepFailed,
        StepScheduled,
        encode_record,
    )

    h = bytes(range(32))
    recs = [
        EventAdmitted(3, "a/E@1", b"\xa0", 0),
        StepScheduled(2**40, "a/R@1", b"k", 7, 1),
        StepScheduled(5, "a/R@1", -(2**70), 7),
        StepCommitted(9, h, (Emit("a/E@1", b"\x01"),),
                      (Intent("timer.set", b"\xa0", "timers", "9/0", 3, h),
                       Intent("blob.put", b"\x80", None, "x" * 30, 0, h))),
        StepCommitted(10, None),
        StepFailed(11, "test/R@1", b"k", "ValueError", "boom", "  r.py, in r, line 2 of its definition: boom()"),
        SnapshotCreated(12, h, "0001-abc.snap"),
        PolicyDecision(13, h, False, "denied by rule 2"),
        EffectQueued(13, h, "timer.set", "timers", "13/0", 2**33),
        ReceiptAppended(40, h, "ok", b"\xa1ax\x01", 3),
        InvariantViolated(14, "non-negative", "x < 0"),
        *[r for r in sample_records() if r.KIND in {"ProposalSubmitted", "ApprovalRecorded", "ShadowRunCompleted",
                                                   "EraApplied", "CellMigrated", "BudgetGranted"}],
        EventAdmitted(3, "a/E@1", b"\xa0", 5, 9, (4096, 2**40)),
    ]
    assert {type(r) for r in recs} == set(KINDS.values())
    for r in recs:
        assert encode_record(r) == cbor2.dumps(r.to_wire(), canonical=True), r.KIND
