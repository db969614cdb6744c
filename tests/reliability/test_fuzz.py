"""Fuzzing: decoders, odd manifests and world metadata, arbitrary submitted values, snapshots, receipts.

Every input must end in a result or one of the documented error types —
no other exception, no hang (each input runs under a time limit):

* byte decoders (a seeded loop of random and mutated byte strings, seeded
  with real journal records and with crafted CBOR: deep nesting, huge
  lengths, tags, shared and string references): ``canonical.decode`` gives a
  value whose canonical encoding is the input, or ``NonCanonicalError``;
  ``decode_record`` gives a record that encodes back to the input, or
  ``NonCanonicalError``; reading a damaged segment gives records or
  ``JournalCorruptError``;
* ``World.submit`` with arbitrary Python values and schemas: admitted (and
  then the reducer sees the value as the value model says), or
  ``UnknownSchemaError``/``MissingKeyFieldError``/``InvalidKeyError``/
  ``UnencodableValueError``, journaling nothing;
* manifests built from odd arguments: ``ManifestError``; opening a world
  with them, or with another manifest than it was created with:
  ``ManifestError``/``ManifestMismatchError``/``EraChangeError``;
* ``world.cbor`` replaced by odd values: ``StorageError`` or a manifest
  mismatch;
* snapshot files with altered structure under a correct content hash:
  ``SnapshotCorruptError`` (or the replay-or-die check);
* receipts with arbitrary fields: a ``ReceiptError``, changing nothing.
"""

from __future__ import annotations

import contextlib
import enum
import math
import random
import shutil
import signal
import struct
import time
import zlib
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import blake3
import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aos
from aos import canonical
from aos.journal import JournalReader
from aos.records import decode_record, encode_record
from aos.snapshot import list_snapshots
from reliability_support import Failures, journal_payloads, random_input, record, scaled, workload_adapters
from reliability_support import workload_manifest as determinism_manifest

# inputs per target: (short, long)
LOOP_INPUTS = (20_000, 1_000_000)
HYPOTHESIS = {
    "canonical": (300, 40_000),
    "records": (200, 20_000),
    "submit": (300, 20_000),
    "manifest": (60, 3_000),
    "world_meta": (60, 3_000),
    "snapshot": (40, 2_000),
    "receipt": (150, 10_000),
}
TIME_LIMIT = 5.0  # seconds any single input may take


class Hang(Exception):
    """An input took longer than the time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(_signum: int, _frame: Any) -> None:
        raise Hang(f"an input ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def hyp(n: int, mode: str) -> Any:
    """Short mode draws the same examples every run (CI stays reproducible); long mode new ones."""
    return settings(max_examples=n, deadline=None, database=None, derandomize=mode == "short",
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------ corpus
def build_corpus(tmp: Path) -> tuple[list[bytes], Path]:
    """Real record payloads of the determinism workload, and a world to copy segments from."""
    m = determinism_manifest()
    path = tmp / "corpus"
    rnd = random.Random(3)
    with aos.World.open(path, m, effects="inline", adapters=workload_adapters(), aging=40, on_violation="record",
                        snapshot_every=50, segment_bytes=12_000) as w:
        for _ in range(40):
            w.submit(*random_input(rnd))
        w.run()
    return journal_payloads(path, m), path


def shared_ladder(depth: int, tag: int = 28, ref: int = 29) -> bytes:
    """CBOR whose shared references (tags 28/29) make a value of 2**depth leaves from a few bytes."""
    items = [cbor2.dumps(cbor2.CBORTag(tag, []))]
    for k in range(1, depth):
        r = cbor2.dumps(cbor2.CBORTag(ref, k - 1))
        items.append(b"\xd8" + bytes([tag]) + b"\x82" + r + r)
    return _array_head(len(items)) + b"".join(items)


def string_refs(n: int, size: int) -> bytes:
    """A stringref namespace (tag 256) with one long string referenced ``n`` times (tag 25)."""
    body = [cbor2.dumps("s" * size)] + [b"\xd8\x19\x00"] * n
    return b"\xd9\x01\x00" + _array_head(len(body)) + b"".join(body)


def _array_head(n: int) -> bytes:
    return cbor2.dumps([None] * n)[:-n] if n else b"\x80"


def crafted(rnd: random.Random) -> bytes:
    roll = rnd.randrange(9)
    if roll == 0:
        return shared_ladder(rnd.randint(2, 60))
    if roll == 1:
        return string_refs(rnd.randint(1, 2_000), rnd.randint(1, 2_000))
    if roll == 2:  # deep nesting, around the model's limit of 400
        d = rnd.choice([rnd.randint(1, 50), 398, 399, 400, 401, 402, rnd.randint(403, 5000)])
        return b"\x81" * d + b"\x00"
    if roll == 3:  # huge declared lengths
        return bytes([rnd.choice([0x5b, 0x7b, 0x9b, 0xbb])]) + struct.pack(">Q", rnd.choice([2**63, 2**40, 2**64 - 1]))
    if roll == 4:  # a tag, any number, around a small value
        return cbor2.dumps(cbor2.CBORTag(rnd.choice([0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 256, 258, 55799,
                                                     rnd.randrange(2**32)]),
                                         rnd.choice([0, "x", b"y", [1, 2], {"a": 1}, 1.5])))
    if roll == 5:  # bignums, long and short
        return b"\xc2" + cbor2.dumps(bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40))))
    if roll == 6:  # indefinite lengths
        return bytes([rnd.choice([0x5f, 0x7f, 0x9f, 0xbf])]) + bytes(rnd.randrange(256) for _ in range(8)) + b"\xff"
    if roll == 7:  # floats of every width
        return rnd.choice([b"\xf9", b"\xfa", b"\xfb"]) + bytes(rnd.randrange(256) for _ in range(8))
    return cbor2.dumps({"kind": "StepCommitted", "event_id": rnd.randrange(-3, 2**70), "lane_id": 0,
                        "state_hash": bytes(32), "emits": [], "effects": []}, canonical=True)


def mutate(data: bytes, corpus: list[bytes], rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.choice([1, 1, 2, 3, 5])):
        op = rnd.randrange(7)
        if op == 0 and b:
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        elif op == 1 and b:
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif op == 2:
            i = rnd.randint(0, len(b))
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 9)))
        elif op == 3 and b:
            i = rnd.randrange(len(b))
            del b[i:i + rnd.randint(1, 16)]
        elif op == 4 and b:
            del b[rnd.randrange(len(b)):]
        elif op == 5:
            other = rnd.choice(corpus)
            i = rnd.randint(0, len(b))
            b[i:] = other[rnd.randint(0, len(other)):]
        elif b:
            i = rnd.randrange(len(b))
            b[i:i + 1] = bytes([rnd.choice([0x18, 0x19, 0x1a, 0x1b, 0x5f, 0x9f, 0xbf, 0xc2, 0xd8, 0xf9, 0xfb, 0xff])])
    return bytes(b)


def check_decode(data: bytes) -> bool:
    """Feed ``data`` to both decoders; True when it decoded as a canonical value."""
    try:
        value = canonical.decode(data)
    except aos.NonCanonicalError:
        ok = False
    else:
        assert canonical.encode(value) == data, f"decode accepted non-canonical bytes {data[:40].hex()}"
        ok = True
    try:
        rec = decode_record(data)
    except aos.NonCanonicalError:
        pass
    else:
        assert encode_record(rec) == data, f"a decoded record does not encode back: {data[:40].hex()}"
    return ok


def segment_bytes_of(payloads: list[bytes], first: int, prev: bytes, era: bytes) -> bytes:
    head = struct.pack("<8sQ32s32s", b"AOSJRNL1", first, prev, era)
    out = bytearray(head + blake3.blake3(head).digest()[:8])
    chain = prev
    for p in payloads:
        chain = blake3.blake3(chain + p).digest()
        out += struct.pack("<II", len(p), zlib.crc32(len(p).to_bytes(4, "little"))) + p + chain
    return bytes(out)


def check_segment(directory: Path, data: bytes, era: bytes) -> int:
    (directory / "00000000000000000000.seg").write_bytes(data)
    n = 0
    try:
        for _entry, _rec in JournalReader(directory, era).records():
            n += 1
    except aos.JournalCorruptError:
        pass
    return n


def run_decoder_loop(tmp: Path, n: int, seed: int, failures: Failures) -> dict[str, int]:
    corpus, _world = build_corpus(tmp)
    era = determinism_manifest().era
    segdir = tmp / "seg"
    segdir.mkdir()
    rnd = random.Random(seed)
    counts = {"decode_inputs": 0, "decoded_ok": 0, "segment_inputs": 0, "hangs": 0, "crashes": 0}
    slowest = 0.0
    for i in range(n):
        roll = rnd.random()
        if roll < 0.05:
            data = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 48)))
        elif roll < 0.15:
            data = crafted(rnd)
        else:
            data = mutate(rnd.choice(corpus), corpus, rnd)
        t0 = time.perf_counter()
        try:
            with time_limit(TIME_LIMIT):
                if i % 20 == 0:  # a damaged segment, read back through the journal reader
                    start = rnd.randrange(len(corpus) - 8)
                    seg = bytearray(segment_bytes_of(corpus[start:start + 8], 0, bytes(32), era))
                    if rnd.random() < 0.5:
                        seg = bytearray(mutate(bytes(seg), corpus, rnd))
                    else:
                        seg[rnd.randrange(len(seg))] ^= 1 << rnd.randrange(8)
                    check_segment(segdir, bytes(seg), era)
                    counts["segment_inputs"] += 1
                else:
                    counts["decoded_ok"] += check_decode(data)
                    counts["decode_inputs"] += 1
        except Hang as exc:
            counts["hangs"] += 1
            failures.add(f"input {i} ({data[:40].hex()}...): {exc}")
        except Exception as exc:
            counts["crashes"] += 1
            failures.add(f"input {i} ({data[:40].hex()}...): {type(exc).__name__}: {exc}")
        slowest = max(slowest, time.perf_counter() - t0)
    counts["slowest_ms"] = round(slowest * 1000, 1)
    return counts


# ------------------------------------------------------------- strategies
class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def nested(depth: int) -> Any:
    v: Any = 0
    for _ in range(depth):
        v = [v]
    return v


def cyclic() -> Any:
    a: list[Any] = [1]
    a.append(a)
    return a


ODD = [set(), frozenset({1}), bytearray(b"x"), memoryview(b"y"), object(), Decimal("1.5"), complex(1, 2),
       Color.RED, Name("n"), range(3), Ellipsis, OrderedDict(a=1), nested(398), nested(399), nested(400),
       nested(401), float("nan"), -0.0, float("inf"), 2**64, -(2**64) - 1, 2**300, cbor2.CBORTag(1, 0),
       cbor2.CBORSimpleValue(7), cbor2.undefined]
KEYS = st.one_of(st.text(max_size=6), st.integers(), st.binary(max_size=5), st.booleans(), st.none(),
                 st.floats(allow_nan=False), st.sampled_from([Color.RED, Name("k"), (1, 2)]))
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**200), 2**200), st.floats(),
                   st.text(max_size=20), st.binary(max_size=20), st.sampled_from(ODD))
VALUES = st.recursive(LEAVES, lambda ch: st.one_of(st.lists(ch, max_size=5), st.tuples(ch, ch),
                                                    st.dictionaries(KEYS, ch, max_size=5)), max_leaves=25)


def plain(v: Any) -> Any:
    """What the value model makes of an admitted value (independent of aos.canonical)."""
    if v is None or type(v) is bool:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return 0.0 if v == 0 else float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bytes):
        return bytes(v)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {plain(k): plain(x) for k, x in v.items()}
    raise AssertionError(f"admitted a value outside the model: {type(v).__name__}")


def fuzz_manifest() -> aos.Manifest:
    m = aos.Manifest("fz/world@1")

    @m.reducer("fz/Echo@1", key="k", events=["fz/E@1"])
    def echo(ctx: Any, state: Any, event: Any) -> Any:
        return {"v": event.value, "n": (state or {"n": 0})["n"] + 1}

    @m.reducer("fz/All@1", events=["fz/E@1", "fz/A@1"])
    def count(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    m.schema("fz/Quiet@1")
    return m


def normalize_key(k: Any) -> Any:
    for base in (str, int, bytes):
        if isinstance(k, base):
            return base(k)
    return k


SUBMIT_ERRORS = (aos.UnknownSchemaError, aos.MissingKeyFieldError, aos.InvalidKeyError, aos.UnencodableValueError)


# ------------------------------------------------------------------ targets
def run_hypothesis_targets(tmp: Path, mode: str) -> tuple[dict[str, int], Failures]:
    failures = Failures()
    counts: dict[str, int] = dict.fromkeys(HYPOTHESIS, 0)
    pick = 0 if mode == "short" else 1

    def n(target: str) -> int:
        return scaled(HYPOTHESIS[target][pick])

    def guard(target: str, fn: Any, *args: Any) -> None:
        counts[target] += 1
        try:
            with time_limit(TIME_LIMIT):
                fn(*args)
        except Hang as exc:
            failures.add(f"{target}: {exc} on {args!r:.300}")
        except AssertionError as exc:
            failures.add(f"{target}: {exc} on {args!r:.300}")
        except Exception as exc:
            failures.add(f"{target}: untyped {type(exc).__name__}: {exc} on {args!r:.300}")

    # canonical values: encode arbitrary values; decode arbitrary and mutated bytes
    def canonical_target(value: Any, raw: bytes, flips: list[int]) -> None:
        try:
            data = canonical.encode(value)
        except aos.UnencodableValueError:
            data = raw
        else:
            assert canonical.decode(data) == plain(value)
        check_decode(raw)
        b = bytearray(data)
        for f in flips:
            if b:
                b[f % len(b)] ^= 1 + f % 255
        check_decode(bytes(b))

    @hyp(n("canonical"), mode)
    @given(VALUES, st.binary(max_size=64), st.lists(st.integers(0, 2**16), max_size=3))
    def canonical_prop(value: Any, raw: bytes, flips: list[int]) -> None:
        guard("canonical", canonical_target, value, raw, flips)

    canonical_prop()

    # records: maps with a kind and arbitrary fields
    kinds = st.sampled_from(["EventAdmitted", "StepScheduled", "StepCommitted", "StepFailed", "SnapshotCreated",
                             "PolicyDecision", "EffectQueued", "ReceiptAppended", "InvariantViolated", "Nope", 3])
    fields = st.sampled_from(["event_id", "lane_id", "seq", "schema", "value", "reducer", "key", "input",
                              "state_hash", "emits", "effects", "error", "message", "snapshot_hash", "file",
                              "intent_hash", "allowed", "reason", "effect", "cap", "idempotency_key", "cost",
                              "status", "payload", "invariant"])
    field_values = st.one_of(st.integers(-5, 2**70), st.binary(max_size=33), st.text(max_size=8), st.none(),
                             st.booleans(), st.lists(st.lists(st.one_of(st.text(max_size=4), st.binary(max_size=4)),
                                                               max_size=3), max_size=2),
                             st.lists(st.dictionaries(st.sampled_from(["kind", "params", "cap", "idempotency_key",
                                                                       "cost", "intent_hash"]),
                                                      st.one_of(st.text(max_size=4), st.binary(max_size=32),
                                                                st.integers(-1, 9), st.none())), max_size=2))

    def record_target(kind: Any, extra: dict[str, Any]) -> None:
        m = dict(extra, kind=kind)
        try:
            data = canonical.encode(m)
        except aos.UnencodableValueError:
            return
        check_decode(data)

    @hyp(n("records"), mode)
    @given(kinds, st.dictionaries(fields, field_values, max_size=8))
    def record_prop(kind: Any, extra: dict[str, Any]) -> None:
        guard("records", record_target, kind, extra)

    record_prop()

    # submitted values
    m = fuzz_manifest()
    with aos.World.open(tmp / "submit", m, effects="manual", durability="none", snapshot_every=500) as w:
        schemas = st.one_of(st.sampled_from(["fz/E@1", "fz/A@1", "fz/Quiet@1", "fz/Nope@1", "sys/Receipt@1"]),
                            st.text(max_size=8), st.sampled_from([None, 1, b"fz/E@1", Name("fz/E@1")]))

        def submit_target(schema: Any, value: Any, key: Any, keyed: bool) -> None:
            if keyed and isinstance(value, dict):
                value = dict(value, k=key)
            elif keyed:
                value = {"k": key, "v": value}
            before = w.stats["records"]
            try:
                w.submit(schema, value)
            except SUBMIT_ERRORS:
                assert w.stats["records"] == before, "a refused submission journaled something"
                return
            echo = schema == "fz/E@1"  # admitted, so the value is a map with a valid key "k"
            key = normalize_key(value["k"]) if echo else None
            old, failed = (w.state("fz/Echo@1", key) if echo else None), w.stats["failures"]
            w.run()
            if echo:
                got = w.state("fz/Echo@1", key)
                if w.stats["failures"] > failed:  # the state, one level deeper than the value, left the model
                    assert got == old, "a failed step changed its cell"
                else:
                    assert got is not None and got["v"] == plain(value), f"state {got!r:.200} != value"

        @hyp(n("submit"), mode)
        @given(schemas, VALUES, KEYS, st.booleans())
        def submit_prop(schema: Any, value: Any, key: Any, keyed: bool) -> None:
            guard("submit", submit_target, schema, value, key, keyed)

        submit_prop()
        h = w.snapshot_hash()
    if aos.replay(tmp / "submit", m).verify() != h:
        failures.add("submit: the fuzzed world does not replay to its state")

    # manifests built from odd arguments, and worlds opened with them
    names = st.one_of(st.from_regex(r"\A[a-z]{1,3}/[A-Za-z]{1,4}@[0-9]\Z"), st.text(max_size=6),
                      st.sampled_from([None, 1, b"a/B@1", "sys/X@1", "a/B@01"]))
    arg_lists = st.one_of(st.lists(names, max_size=3), names, st.sampled_from([(), None, 5, {"a/E@1": 1}]))
    ops = st.lists(st.tuples(st.sampled_from(["reducer", "schema", "capability", "allow", "deny", "invariant"]),
                             names, arg_lists, st.one_of(st.none(), st.text(max_size=4), st.integers(-1, 5)),
                             st.one_of(st.integers(-2, 5), st.none(), st.text(max_size=2))), max_size=6)
    world_no = [0]
    base = tmp / "manifests"
    base.mkdir()
    manifest_errors = (aos.ManifestError, aos.ManifestMismatchError)

    def build(name: Any, steps: list[Any]) -> aos.Manifest | None:
        try:
            mm = aos.Manifest(name)
        except aos.ManifestError:
            return None
        for op, nm, args, key, num in steps:
            try:
                if op == "reducer":
                    mm.reducer(nm, events=args, key=key, priority=num if num is not None else 1)(
                        lambda c, s, e: (s or 0) + 1)
                elif op == "schema":
                    mm.schema(*(args if isinstance(args, (list, tuple)) else [args]))
                elif op == "capability":
                    mm.capability(key, effect=args, budget=num)
                elif op in ("allow", "deny"):
                    getattr(mm, op)(kind=key, reducer=nm, cap=key)
                else:
                    mm.invariant(nm, lambda view: True, reducers=args)
            except aos.ManifestError:
                pass
        return mm

    def manifest_target(name: Any, steps: list[Any], other: list[Any]) -> None:
        mm = build(name, steps)
        if mm is None:
            return
        world_no[0] += 1
        path = base / str(world_no[0])
        try:
            with aos.World.open(path, mm, effects="manual", durability="none"):
                pass
        except manifest_errors:
            return
        alt = build(name, other)
        if alt is not None:
            try:
                with aos.World.open(path, alt, effects="manual", durability="none"):
                    pass
            except manifest_errors:
                pass
        with aos.World.open(path, mm, effects="manual", durability="none"):
            pass
        shutil.rmtree(path)

    @hyp(n("manifest"), mode)
    @given(names, ops, ops)
    def manifest_prop(name: Any, steps: list[Any], other: list[Any]) -> None:
        guard("manifest", manifest_target, name, steps, other)

    manifest_prop()

    # world.cbor replaced by odd values
    wm = fuzz_manifest()
    meta_world = tmp / "meta"
    with aos.World.open(meta_world, wm, effects="manual") as w:
        w.submit("fz/E@1", {"k": 1})
        w.run()
    good_meta = canonical.decode((meta_world / "world.cbor").read_bytes())
    pristine = tmp / "meta-pristine"
    shutil.copytree(meta_world, pristine)
    meta_values = st.one_of(st.integers(-3, 2**70), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2),
                            st.dictionaries(st.text(max_size=8), st.integers(-2, 3), max_size=3), st.binary(max_size=4))
    meta_keys = st.sampled_from(["format", "manifest", "window", "aging", "extra"])
    desc_keys = st.sampled_from(["format", "manifest", "reducers", "schemas", "capabilities", "policies",
                                 "invariants"])

    def meta_target(how: int, key: str, dkey: str, value: Any, raw: bytes) -> None:
        doc: Any = {k: v for k, v in good_meta.items()}
        if how == 0:
            doc[key] = value
        elif how == 1:
            doc.pop(key, None)
        elif how == 2:
            doc["manifest"] = dict(doc["manifest"], **{dkey: value})
        elif how == 3:
            doc = value
        data = raw if how == 4 else canonical.encode(doc)
        (meta_world / "world.cbor").write_bytes(data)
        try:
            with aos.World.open(meta_world, wm, effects="manual", snapshot_on_close=False) as w2:
                w2.state("fz/Echo@1", 1)
        except (aos.StorageError, aos.ManifestMismatchError, aos.SnapshotCorruptError, aos.ReplayDivergenceError):
            pass
        finally:
            shutil.rmtree(meta_world)
            shutil.copytree(pristine, meta_world)

    @hyp(n("world_meta"), mode)
    @given(st.integers(0, 4), meta_keys, desc_keys, meta_values, st.binary(max_size=40))
    def meta_prop(how: int, key: str, dkey: str, value: Any, raw: bytes) -> None:
        guard("world_meta", meta_target, how, key, dkey, value, raw)

    meta_prop()

    # snapshots whose structure was altered under a correct content hash
    sm = determinism_manifest()
    snap_world = tmp / "snap"
    rnd = random.Random(5)
    with aos.World.open(snap_world, sm, effects="inline", adapters=workload_adapters(), aging=40,
                        on_violation="record", snapshot_every=0, snapshot_on_close=False) as w:
        for _ in range(25):
            w.submit(*random_input(rnd))
        w.run()
        w.snapshot()
        for _ in range(5):
            w.submit(*random_input(rnd))
        w.run()
    snap_path = list_snapshots(snap_world / "snapshots")[-1]
    snap_doc = canonical.decode(snap_path.read_bytes())
    snap_pristine = tmp / "snap-pristine"
    shutil.copytree(snap_world, snap_pristine)
    paths = []

    def walk(v: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if len(path) > 5:
            return
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v[:4]):
                walk(x, path + (i,))

    walk(snap_doc, ())
    paths = paths[1:]

    def snapshot_target(which: int, value: Any, drop: bool) -> None:
        import copy

        doc = copy.deepcopy(snap_doc)
        where = paths[which % len(paths)]
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        if drop and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = value
        try:
            data = canonical.encode(doc)
        except aos.UnencodableValueError:
            return
        for old in list_snapshots(snap_world / "snapshots"):
            old.unlink()
        name = f"{snap_path.name.split('-')[0]}-{canonical.digest(data).hex()}.snap"
        (snap_world / "snapshots" / name).write_bytes(data)
        try:
            with aos.World.open(snap_world, sm, effects="manual", aging=40, on_violation="record",
                                snapshot_on_close=False):
                pass
        except (aos.StorageError, aos.ReplayDivergenceError):  # e.g. the position names a missing segment
            pass
        finally:
            shutil.rmtree(snap_world)
            shutil.copytree(snap_pristine, snap_world)

    snap_values = st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=4), st.binary(max_size=33), st.none(),
                            st.booleans(), st.lists(st.integers(-2, 2**40), max_size=4),
                            st.lists(st.lists(st.integers(-1, 70), max_size=3), max_size=3),
                            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))

    @hyp(n("snapshot"), mode)
    @given(st.integers(0, 10**6), snap_values, st.booleans())
    def snapshot_prop(which: int, value: Any, drop: bool) -> None:
        guard("snapshot", snapshot_target, which, value, drop)

    snapshot_prop()

    # receipts with arbitrary fields
    em = determinism_manifest()
    with aos.World.open(tmp / "receipts", em, effects="manual", aging=40, on_violation="record") as w:
        w.submit("test/Pay@1", {"id": "p0", "costs": [5, 7]})
        w.run()
        pending = w.pending_effects()
        intents = [e.intent_hash for e in pending]

        def receipt_target(which: int, status: Any, payload: Any, cost: Any, mac: Any, sign: bool) -> None:
            ih = intents[which % len(intents)] if which >= 0 else bytes(32)
            before = (w.stats["records"], w.budget("pay"))
            try:
                r = w.receipt(ih, status, payload, cost) if sign else aos.Receipt(ih, status, payload, cost, mac)
            except (TypeError, ValueError):
                return  # refused at signing: nothing was submitted
            try:
                w.submit_receipt(r)
            except aos.ReceiptError:
                assert (w.stats["records"], w.budget("pay")) == before, "a refused receipt changed something"
                return
            b = w.budget("pay")
            assert 0 <= b.reserved + b.spent <= b.budget, f"budget overspent: {b}"
            intents.remove(ih)
            intents.append(ih)  # settled: from now on a duplicate

        @hyp(n("receipt"), mode)
        @given(st.integers(-1, 5), st.one_of(st.sampled_from(["ok", "error"]), st.text(max_size=3), st.none()),
               VALUES, st.one_of(st.integers(-2, 20), st.floats(), st.none()),
               st.one_of(st.binary(max_size=33), st.none()), st.booleans())
        def receipt_prop(which: int, status: Any, payload: Any, cost: Any, mac: Any, sign: bool) -> None:
            guard("receipt", receipt_target, which, status, payload, cost, mac, sign)

        receipt_prop()
    return counts, failures


def fuzz(tmp: Path, mode: str, seed: int) -> tuple[dict[str, Any], Failures]:
    t0 = time.monotonic()
    failures = Failures()
    pick = 0 if mode == "short" else 1
    (tmp / "loop").mkdir()
    loop = run_decoder_loop(tmp / "loop", scaled(LOOP_INPUTS[pick]), seed, failures)
    hyp_counts, hyp_failures = run_hypothesis_targets(tmp, mode)
    failures.items.extend(hyp_failures.items)
    counts: dict[str, Any] = {f"loop_{k}": v for k, v in loop.items()}
    counts.update({f"hypothesis_{k}": v for k, v in hyp_counts.items()})
    counts["inputs"] = loop["decode_inputs"] + loop["segment_inputs"] + sum(hyp_counts.values())
    counts["crashes"] = len(failures)
    counts["wall_s"] = round(time.monotonic() - t0, 1)
    return counts, failures


def test_fuzz_short(tmp_path: Path) -> None:
    counts, failures = fuzz(tmp_path, "short", 11)
    record("short", "fuzz", **counts)
    assert not failures, failures.message()


@pytest.mark.long
def test_fuzz_long(tmp_path: Path) -> None:
    counts, failures = fuzz(tmp_path, "long", 1_000_003)
    record("long", "fuzz", **counts)
    assert not failures, failures.message()


def test_float_model_helpers_agree() -> None:
    """``plain`` (the fuzz oracle) agrees with the documented float rules."""
    assert plain(-0.0) == 0.0 and math.copysign(1.0, plain(-0.0)) == 1.0
    assert plain((1, Color.RED, Name("x"))) == [1, 1, "x"]
