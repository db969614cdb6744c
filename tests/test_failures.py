"""Failed steps: what StepFailed records, World.failures(), and World.open(strict=True)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

import aos
from aos.journal import JournalReader
from aos.records import StepFailed

REDUCERS = '''
import aos


def build():
    m = aos.Manifest("test/fail@1")

    @m.reducer("test/Cell@1", key="k", events=["test/E@1"])
    def cell(ctx, state, event):
        v = event.value
        if v.get("boom") is not None:
            return lookup(v["boom"])
        if v.get("deep"):
            return chain(30)
        if v.get("recurse"):
            return recurse(0)
        return (state or 0) + 1

    return m


def lookup(name):
    return {"known": 1}[name]


def chain(n):
    if n == 0:
        raise ValueError(f"bottom of the chain at {object()!r}")
    return chain(n - 1)


def recurse(n):
    return recurse(n + 1)
'''


def load(directory: Path, padding: int = 0) -> aos.Manifest:
    """The reducers of REDUCERS from ``directory``/failing_reducers.py, ``padding`` blank lines down its file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "failing_reducers.py"
    path.write_text("\n" * padding + REDUCERS)
    name = f"failing_reducers_{abs(hash((str(directory), padding)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.build()


def payloads(path: Path, m: aos.Manifest) -> list[bytes]:
    return [e.payload for e in JournalReader(path / "journal", m.era).entries()]


def failed(path: Path, m: aos.Manifest) -> list[StepFailed]:
    return [r for _e, r in JournalReader(path / "journal", m.era).records() if isinstance(r, StepFailed)]


INPUTS: list[dict[str, Any]] = [{"k": "a"}, {"k": "a", "boom": "unknown"}, {"k": 7, "deep": True},
                                {"k": b"r", "recurse": True}, {"k": "a"}]


@pytest.mark.parametrize("workers", [0, 2])
def test_step_failed_names_the_cell_and_carries_a_deterministic_bounded_traceback(tmp_path: Path,
                                                                                  workers: int) -> None:
    m = load(tmp_path / "code")
    with aos.World.open(tmp_path / "w", m, workers=workers) as w:
        for v in INPUTS:
            w.submit("test/E@1", v)
        assert w.run().failed == 3
    by_key = {r.key: r for r in failed(tmp_path / "w", m)}
    boom, deep, rec = by_key["a"], by_key[7], by_key[b"r"]
    assert (boom.reducer, boom.key, boom.error, boom.message) == ("test/Cell@1", "a", "KeyError", "'unknown'")
    assert boom.traceback.splitlines() == [
        "  failing_reducers.py, in build.<locals>.cell, line 5 of its definition: return lookup(v[\"boom\"])",
        "  failing_reducers.py, in lookup, line 2 of its definition: return {\"known\": 1}[name]",
    ]
    assert str(tmp_path) not in boom.traceback + deep.traceback + rec.traceback  # no absolute path
    # 32 frames: the first 4 and the last 12, the address in the source line's message not in the record
    lines = deep.traceback.splitlines()
    assert (deep.reducer, deep.key, deep.error) == ("test/Cell@1", 7, "ValueError") and "0x?" in deep.message
    assert len(lines) == 17 and lines[4] == "  … (16 frames left out)"
    assert lines[-1].endswith("raise ValueError(f\"bottom of the chain at {object()!r}\")")
    # a recursion: its first frames only, however deep the calling thread's stack was
    lines = rec.traceback.splitlines()
    assert rec.error == "RecursionError" and rec.key == b"r"
    assert len(lines) == 17 and lines[-1] == "  … (deeper frames left out)"
    assert all(len(r.traceback) <= 4001 for r in (boom, deep, rec))


def test_failed_steps_journal_the_same_bytes_for_every_worker_count_and_replay(tmp_path: Path) -> None:
    m = load(tmp_path / "code")
    journals = []
    for workers in (0, 1, 4):
        path = tmp_path / f"w{workers}"
        with aos.World.open(path, m, workers=workers, worker_delay=(lambda t: 0.001 * (t % 3)) if workers else None) \
                as w:
            for v in INPUTS * 3:
                w.submit("test/E@1", v)
            w.run()
            h = w.snapshot_hash()
        journals.append(payloads(path, m))
        assert aos.replay(path, m).verify() == h
    assert journals[0] == journals[1] == journals[2]


def test_a_world_whose_reducer_code_moved_in_another_directory_replays_its_failures(tmp_path: Path) -> None:
    """The same reducer source, further down its file and at another path: same era, same StepFailed bytes."""
    m1 = load(tmp_path / "one")
    with aos.World.open(tmp_path / "w", m1) as w:
        w.submit("test/E@1", {"k": "a", "boom": "x"})
        w.run()
        before = w.failures()
    m2 = load(tmp_path / "two", padding=7)
    assert m2.era == m1.era
    with aos.World.open(tmp_path / "w", m2, snapshot_on_close=False) as w:  # replays the tail: same bytes
        assert w.failures() == before
    (tmp_path / "w" / "snapshots").exists() and [p.unlink() for p in (tmp_path / "w" / "snapshots").iterdir()]
    assert aos.replay(tmp_path / "w", m2).verify()


def test_failures_lists_every_failed_step_also_from_before_a_reopen(tmp_path: Path) -> None:
    m = load(tmp_path / "code")
    with aos.World.open(tmp_path / "w", m) as w:
        assert w.failures() == []
        w.submit("test/E@1", {"k": "a", "boom": "first"})
        w.run()
        first = w.failures()
        assert [(f.event_id, f.reducer, f.key, f.error, f.message) for f in first] == \
            [(1, "test/Cell@1", "a", "KeyError", "'first'")]
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/E@1", {"k": "b", "boom": "second"})
        w.submit("test/E@1", {"k": "b"})
        w.run()
        got = w.failures()
        assert got[0] == first[0] and [(f.key, f.message) for f in got[1:]] == [("b", "'second'")]
        assert got[1].traceback.startswith("  failing_reducers.py, in build.<locals>.cell, line 5")


@pytest.mark.parametrize("workers", [0, 2])
def test_strict_raises_the_reducers_error_after_journaling_it(tmp_path: Path, workers: int) -> None:
    m = load(tmp_path / "code")
    with aos.World.open(tmp_path / "w", m, workers=workers, strict=True) as w:
        w.submit("test/E@1", {"k": "a"})
        w.submit("test/E@1", {"k": "a", "boom": "nope"})
        w.submit("test/E@1", {"k": "b", "boom": "again"})
        w.submit("test/E@1", {"k": "c"})
        with pytest.raises(aos.ReducerError) as info:
            w.run()
        err = info.value  # tickets go round-robin over cells: a, b, c, then a again
        assert (err.event_id, err.reducer, err.key, err.error, err.message) == (2, "test/Cell@1", "b", "KeyError",
                                                                                "'again'")
        assert "line 5 of its definition" in err.traceback
        cause = err.__cause__
        assert isinstance(cause, KeyError) and cause.args == ("again",)
        frames = []
        tb = cause.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        assert frames[-2:] == ["cell", "lookup"]  # the original traceback, down to where it raised
        assert [f.event_id for f in w.failures()] == [2, 4]  # journaled before it was raised
        with pytest.raises(aos.ReducerError, match="'nope'"):  # the next one is not dropped
            w.run()
        w.run()
        assert w.state("test/Cell@1", "a") == 1 and w.state("test/Cell@1", "c") == 1
        w.submit("test/E@1", {"k": "a"})
        w.run()
        assert w.state("test/Cell@1", "a") == 2
        h = w.snapshot_hash()
    with aos.World.open(tmp_path / "w", m, workers=workers, strict=True) as w:
        assert w.run().steps == 0  # failures of the past are not raised again on reopening
        assert w.snapshot_hash() == h
    assert aos.replay(tmp_path / "w", m).verify() == h


def test_without_strict_a_failed_step_raises_nothing(tmp_path: Path) -> None:
    m = load(tmp_path / "code")
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/E@1", {"k": "a", "boom": "nope"})
        assert w.run().failed == 1


def test_a_callable_object_reducer_and_a_source_line_ending_in_a_colon(tmp_path: Path) -> None:
    m = aos.Manifest("test/call@1")

    class Reducer:
        def __call__(self, ctx: Any, state: Any, event: Any) -> Any:
            if event.value["n"] > [1][event.value["n"]]:
                return 0
            return event.value["n"]

    m.reducer("test/R@1", events=["test/E@1"], code_id="reducer-v1")(Reducer())
    with aos.World.open(tmp_path / "w", m) as w:
        w.submit("test/E@1", {"n": 5})
        w.run()
        (f,) = w.failures()
    assert f.traceback == "  test_failures.py, in test_a_callable_object_reducer_and_a_source_line_ending_in_a_colon." \
                          "<locals>.Reducer.__call__, line 2 of its definition: " \
                          "if event.value[\"n\"] > [1][event.value[\"n\"]]:"
    assert aos.replay(tmp_path / "w", m).verify()


HASHY = '''
import aos

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]


def build():
    m = aos.Manifest("test/hashy@1")

    @m.reducer("test/Cell@1", key="k", events=["test/E@1"])
    def cell(ctx, state, event):
        how = event.value["how"]
        if how == "set key":
            ctx.emit("test/E@1", {"k": frozenset(WORDS), "how": "none"})
        elif how == "tuple key":
            ctx.emit("test/E@1", {"k": (frozenset(WORDS), 1), "how": "none"})
        elif how == "set in path":
            ctx.emit("test/E@1", {"k": "x", "how": "none", "v": {frozenset(WORDS): 1}})
        elif how == "set params":
            ctx.effect("note.send", {"bad": set(WORDS)})
        return (state or 0) + 1

    return m
'''


def test_failure_messages_of_odd_values_are_the_same_in_every_process(tmp_path: Path) -> None:
    """A StepFailed message naming a set (whose repr follows the per-process hash order) would make the journal
    differ from its replay in another process: values are named by type and size instead."""
    import subprocess

    (tmp_path / "hashy_reducers.py").write_text(HASHY)
    script = ("import sys, aos, hashy_reducers as h\n"
              "with aos.World.open(sys.argv[1], h.build(), workers=0) as w:\n"
              "    for how in ['set key', 'tuple key', 'set in path', 'set params']:\n"
              "        w.submit('test/E@1', {'k': how, 'how': how})\n"
              "    assert w.run().failed == 4, w.failures()\n")
    env = dict(__import__("os").environ, PYTHONHASHSEED="1", PYTHONPATH=str(tmp_path))
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "w")], check=True, env=env, cwd=tmp_path)
    spec = importlib.util.spec_from_file_location("hashy_reducers", tmp_path / "hashy_reducers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    m = module.build()
    messages = sorted(f.message for f in failed(tmp_path / "w", m))
    assert all("alpha" not in msg for msg in messages), messages
    assert aos.replay(tmp_path / "w", m).verify()  # this process hashes strings differently
