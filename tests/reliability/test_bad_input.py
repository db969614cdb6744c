"""Bad input: no value the API accepts may stop a world.

A seeded loop throws odd values — ints of every width (around ±2**63, ±2**64
and far beyond), containers around the depth limit and large ones,
subclasses of int, str, bytes, float, list and dict (with lying accessors,
lengths and iteration), bools, keys that encode alike, and types outside the
model (sets, tuples as keys, objects, NaN, -0.0, Decimal, ...), and dataclasses (their field maps) —
through every door:

* ``World.submit`` (as the key field, as the value, as the schema);
* ``ctx.emit`` from a reducer driven by a submitted seed (the odd value as
  the emitted key, value or schema), and the reducer's returned state;
* ``ctx.effect`` params, cost, kind, capability and idempotency key;
* receipts: ``World.receipt`` with odd payloads, statuses and costs, and
  hand-built ``Receipt`` objects through ``World.submit_receipt``.

Each input ends in a typed refusal (an ``aos.AosError``, journaling
nothing), an admitted input, or a failed step (``StepFailed``); the world
then runs. After each batch the world must still run, reopen (with another
worker count) and replay-verify to its state. Counted: inputs, typed
refusals, failed steps, worlds left unable to run (must be 0) and untyped
exceptions (must be 0). Worlds alternate between the inline executor and
two worker threads.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import cbor2
import pytest

import aos
from reliability_support import Failures, record, scaled

INPUTS = (1_500, 100_000)  # (short, long)
BATCH = 250  # inputs per world before it is checked (run, reopen, replay)
INT64_MAX = 2**63 - 1
INT_EDGES = [0, 1, -1, 23, 24, 255, 256, 2**31, 2**32, 2**53 + 1, 2**62, INT64_MAX, 2**63, -(2**63),
             -(2**63) - 1, 2**64 - 1, 2**64, -(2**64), -(2**64) - 1, 2**65, 10**30]
OPS = ["emit_key", "emit_value", "emit_top", "emit_schema", "state", "params", "cost", "kind", "cap", "ikey"]


class Color(enum.IntEnum):
    RED = 1
    HUGE = 2**70


class LoudInt(int):
    def __str__(self) -> str:
        return "not the number"

    __repr__ = __str__


class Name(str):
    def __str__(self) -> str:
        return "not the text"


class Odd(str):
    """A str whose repr raises and whose equality and hash say nothing of its text."""

    def __repr__(self) -> str:
        raise ValueError("no repr")

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 1


class Raw(bytes):
    def __bytes__(self) -> bytes:
        return b"not the bytes"


class Real(float):
    pass


class Items(list):
    pass


class Liar(dict):
    """A dict whose accessors lie about its contents."""

    def __getitem__(self, key: Any) -> Any:
        return "liar"

    def __contains__(self, key: object) -> bool:
        return True


class Lying(dict):
    """A dict whose items and length say something else than its contents."""

    def items(self) -> Any:
        return [("a", 1), ("b", [2**70])]

    def __len__(self) -> int:
        return 7


class Stretchy(list):
    """A list whose iteration and length say something else than its contents."""

    def __iter__(self) -> Any:
        return iter([1, 2, 3])

    def __len__(self) -> int:
        return 9


@dataclasses.dataclass
class Point:
    x: int
    y: int


Pair = collections.namedtuple("Pair", "a b")


def bad_int(rnd: random.Random) -> int:
    roll = rnd.random()
    if roll < 0.45:
        return rnd.choice(INT_EDGES) + rnd.randint(-2, 2)
    sign = -1 if rnd.random() < 0.5 else 1
    if roll < 0.85:
        return sign * rnd.getrandbits(rnd.choice([7, 31, 32, 53, 62, 63, 64, 65, 66, 100, 128, 256, 1000, 5000]))
    if roll < 0.9:
        return sign * 10 ** rnd.choice([4299, 4300, 4301, 5000])
    return rnd.randint(-1000, 1000)


def leaf(rnd: random.Random) -> Any:
    roll = rnd.randrange(24)
    if roll < 6:
        return bad_int(rnd)
    if roll == 6:
        return rnd.choice([True, False, None])
    if roll == 7:
        return rnd.choice([float("nan"), -0.0, float("inf"), float("-inf"), 1e308, 5e-324, 0.1, Real(2.5),
                           Real("nan")])
    if roll == 8:
        return rnd.choice(["", "x", "\ud800", "é€𝄞", Name("n"), Odd("o"), "k" * rnd.randint(0, 300)])
    if roll == 9:
        return rnd.choice([b"", b"\x00\xff", Raw(b"r"), bytearray(b"ba"), memoryview(b"mv")])
    if roll == 10:
        return rnd.choice([Color.RED, Color.HUGE, LoudInt(bad_int(rnd))])
    if roll == 11:
        return rnd.choice([{1, 2}, frozenset({"a", "b"}), set()])
    if roll == 12:
        return rnd.choice([Point(1, 2), Pair(1, 2), Decimal("1.5"), complex(1, 2), range(3), object(), Ellipsis,
                           len, int, cbor2.CBORTag(1, 0), cbor2.undefined, cbor2.CBORSimpleValue(7)])
    if roll == 13:  # around the depth limit
        v: Any = bad_int(rnd) if rnd.random() < 0.5 else 0
        for _ in range(rnd.choice([398, 399, 400, 401, 402])):
            v = [v] if rnd.random() < 0.5 else {"d": v}
        return v
    if roll == 14:  # large
        n = rnd.choice([1_000, 10_000, 50_000]) if rnd.random() < 0.3 else rnd.randint(0, 100)
        return rnd.choice([list(range(n)), {i: i for i in range(n)}, "s" * n, b"b" * n])
    if roll == 15:
        a: list[Any] = [1]
        a.append(a)
        return a
    return rnd.randint(-5, 5)


def bad_value(rnd: random.Random, depth: int = 0) -> Any:
    if depth >= 3 or rnd.random() < 0.5:
        return leaf(rnd)
    roll = rnd.randrange(8)
    items = [bad_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    if roll == 0:
        return items
    if roll == 1:
        return tuple(items)
    if roll == 2:
        return rnd.choice([Items, Stretchy])(items)
    keys = [bad_key(rnd) if rnd.random() < 0.7 else leaf(rnd) for _ in items]
    try:
        if roll == 3:
            return collections.OrderedDict(zip(keys, items, strict=True))
        if roll == 4:
            return rnd.choice([Liar, Lying])(zip(keys, items, strict=True))
        return dict(zip(keys, items, strict=True))
    except TypeError:  # an unhashable key
        return items


def bad_key(rnd: random.Random) -> Any:
    roll = rnd.random()
    if roll < 0.55:
        return bad_int(rnd)
    if roll < 0.7:
        return rnd.choice(["a", "b", Name("a"), Odd("a"), b"k", Raw(b"k"), Color.RED, Color.HUGE, LoudInt(7)])
    if roll < 0.8:
        return rnd.choice([True, None, 1.5, (1, 2), Pair(1, 2), frozenset({1}), -0.0])
    return leaf(rnd)


def manifest() -> aos.Manifest:
    m = aos.Manifest("bad/world@1")
    m.capability("pay", effect="payment.send", budget=INT64_MAX)
    m.capability("small", effect="note.send", budget=1_000)
    m.schema("bad/Sink@1")

    @m.reducer("bad/Cell@1", key="k", events=["bad/E@1"])
    def cell(ctx: Any, state: Any, event: Any) -> Any:
        v = event.value
        op = v.get("op") if isinstance(v, dict) else None
        n = state["n"] + 1 if isinstance(state, dict) and type(state.get("n")) is int else 1
        if op not in OPS:
            return {"n": n}
        rnd = random.Random(v["seed"])
        odd = bad_value(rnd) if rnd.random() < 0.6 else bad_int(rnd)
        if op == "emit_key":
            ctx.emit("bad/E@1", {"k": odd})
        elif op == "emit_value":
            ctx.emit("bad/E@1", {"k": "sink", "v": odd})
        elif op == "emit_top":
            ctx.emit("bad/Sink@1", odd)
        elif op == "emit_schema":
            ctx.emit(odd if rnd.random() < 0.7 else Name("bad/Sink@1"), {"k": 1})
        elif op == "state":
            return odd
        elif op == "params":
            ctx.effect("payment.send", odd, cost=rnd.randint(0, 3))
        elif op == "cost":
            ctx.effect("payment.send" if rnd.random() < 0.5 else "note.send", {"n": n}, cost=odd)
        elif op == "kind":
            ctx.effect(odd, {"n": n})
        elif op == "cap":
            ctx.effect("payment.send", {"n": n}, cap=odd)
        else:
            ctx.effect("note.send", {"n": n}, idempotency_key=odd if rnd.random() < 0.7 else Name(f"i{n}"))
        return {"n": n}

    @m.reducer("bad/All@1", events=["bad/E@1", "bad/Sink@1"])
    def total(ctx: Any, state: Any, event: Any) -> Any:
        return (state or 0) + 1

    return m


class Counts:
    def __init__(self) -> None:
        self.c: dict[str, int] = collections.Counter()

    def add(self, name: str, n: int = 1) -> None:
        self.c[name] += n


def one_input(w: aos.World, rnd: random.Random, counts: Counts, failures: Failures, label: str) -> None:
    """Throw one odd input at ``w`` through a random door; classify what happens."""
    door = rnd.random()
    counts.add("inputs")
    before = w.stats["records"]
    try:
        if door < 0.35:
            counts.add("door_submit")
            roll = rnd.random()
            if roll < 0.5:
                value: Any = {"k": bad_key(rnd), "v": bad_value(rnd)}
            elif roll < 0.8:
                value = bad_value(rnd)
            else:
                value = Liar({"k": bad_key(rnd), "v": 1})
            schema = "bad/E@1" if rnd.random() < 0.85 else rnd.choice(["bad/Sink@1", Name("bad/E@1"), Odd("bad/E@1"),
                                                                        "nope/X@1", Odd("x"), None, 3, b"bad/E@1"])
            w.submit(schema, value)
        elif door < 0.8:
            op = rnd.choice(OPS)
            counts.add(f"door_{op}")
            w.submit("bad/E@1", {"k": rnd.choice(["a", "b", 1, -(2**63)]), "op": op, "seed": rnd.getrandbits(48)})
        else:
            counts.add("door_receipt")
            pending = w.pending_effects()
            ih = rnd.choice(pending).intent_hash if pending and rnd.random() < 0.8 else rnd.randbytes(32)
            status = rnd.choice(["ok", "error", Name("ok"), "bad", None, 1])
            cost = bad_int(rnd) if rnd.random() < 0.6 else rnd.randint(0, 5)
            payload = bad_value(rnd)
            if rnd.random() < 0.8:
                r = w.receipt(ih, status, payload, cost)
            else:
                raw = rnd.choice([b"\xf6", b"\x01", rnd.randbytes(4), payload])
                r = aos.Receipt(ih, status, raw, cost, rnd.randbytes(32))
            w.submit_receipt(r)
    except aos.AosError as exc:
        counts.add("typed_refusals")
        counts.add(f"refused_{type(exc).__name__}")
        if w.stats["records"] != before:
            failures.add(f"{label}: a refused input journaled something ({type(exc).__name__}: {exc!s:.200})")
        return
    except Exception as exc:
        counts.add("untyped_exceptions")
        failures.add(f"{label}: untyped {type(exc).__name__}: {exc!s:.300}")
        return
    counts.add("admitted")
    try:
        r = w.run()
    except Exception as exc:
        counts.add("runs_failed")
        failures.add(f"{label}: run() raised {type(exc).__name__}: {exc!s:.300}")
        raise
    counts.add("failed_steps", r.failed)


def check_world(path: Path, m: aos.Manifest, workers: int, counts: Counts, failures: Failures, label: str) -> None:
    """The world runs, reopens with another worker count, takes an event, and replays to its state."""
    try:
        with aos.World.open(path, m, workers=2 - workers, effects="manual", durability="none") as w:
            w.run()
            before = w.state("bad/Cell@1", "probe") or {"n": 0}
            w.submit("bad/E@1", {"k": "probe"})
            w.run()
            assert w.state("bad/Cell@1", "probe") == {"n": before["n"] + 1}, "the probe event was not processed"
            h = w.snapshot_hash()
        got = aos.replay(path, m).verify()
        assert got == h, f"replay gives {got}, the world has {h}"
    except Exception as exc:
        counts.add("worlds_unable_to_run")
        failures.add(f"{label}: the world cannot run, reopen or replay: {type(exc).__name__}: {exc!s:.300}")


def bad_inputs(tmp: Path, n: int, seed: int) -> tuple[dict[str, Any], Failures]:
    t0 = time.monotonic()
    m = manifest()
    rnd = random.Random(seed)
    counts = Counts()
    failures = Failures()
    done = worlds = 0
    while done < n:
        workers = 2 * (worlds % 2)
        path = tmp / f"w{worlds}"
        label = f"world {worlds} (workers={workers})"
        batch = min(BATCH, n - done)
        try:
            with aos.World.open(path, m, workers=workers, effects="manual", durability="none",
                                snapshot_every=rnd.choice([0, 50]), on_violation="record") as w:
                for i in range(batch):
                    one_input(w, rnd, counts, failures, f"{label} input {i}")
        except Exception as exc:  # run() failed (counted there) or closing did
            failures.add(f"{label}: {type(exc).__name__}: {exc!s:.300}")
        check_world(path, m, workers, counts, failures, label)
        done += batch
        worlds += 1
        counts.add("worlds")
    out: dict[str, Any] = {"inputs": counts.c.get("inputs", 0)}
    for name in ("typed_refusals", "admitted", "failed_steps", "worlds_unable_to_run", "untyped_exceptions",
                 "runs_failed", "worlds"):
        out[name] = counts.c.get(name, 0)
    out.update(sorted((k, v) for k, v in counts.c.items() if k.startswith(("door_", "refused_"))))
    out["wall_s"] = round(time.monotonic() - t0, 1)
    return out, failures


def run_mode(tmp: Path, mode: str, seed: int) -> None:
    n = scaled(INPUTS[0 if mode == "short" else 1])
    counts, failures = bad_inputs(tmp, n, seed)
    record(mode, "bad_input", **counts)
    assert counts["worlds_unable_to_run"] == 0, failures.message()
    assert counts["untyped_exceptions"] == 0, failures.message()
    assert not failures, failures.message()


def test_bad_input_short(tmp_path: Path) -> None:
    run_mode(tmp_path, "short", 17)


@pytest.mark.long
def test_bad_input_long(tmp_path: Path) -> None:
    run_mode(tmp_path, "long", 1_000_033)
