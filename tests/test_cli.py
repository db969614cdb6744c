"""The aos command line on a world built by the test."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import aos
from aos.cli import cli
from aos.demo import run_demo
from conftest import make_counter_manifest

MANIFEST = "aos.demo:manifest"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "shop.world"
    run_demo(path, orders=60)
    return path


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output  # captured output is plain text, never terminal colours
    return result.output


def kind_count(info: str, kind: str) -> int:
    """The count of one record kind in the table ``aos info`` prints."""
    return int(next(line.split()[1] for line in info.splitlines() if line.split()[:1] == [kind]))


def test_info_counts_records_and_names_the_snapshot(world: Path) -> None:
    out = invoke("info", str(world))
    assert "manifest       aos/demo-shop@1 (3 reducers)" in out
    lines = out.splitlines()
    header = lines.index("record kind      count")
    assert [line.split()[0] for line in lines[header + 1:]] == [
        "EffectQueued", "EventAdmitted", "PolicyDecision", "ReceiptAppended", "SnapshotCreated", "StepCommitted",
        "StepScheduled"]
    steps = kind_count(out, "StepScheduled")
    assert kind_count(out, "ReceiptAppended") > 0 and kind_count(out, "StepCommitted") == steps
    assert f"last event_id  {steps}" in out
    assert "snapshot       0" in out


def test_tail_prints_the_last_records_filtered_by_kind(world: Path) -> None:
    out = invoke("tail", str(world), "-n", "3", "--kind", "StepScheduled")
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(" StepScheduled " in line for line in lines)
    ids = [int(line.split("event_id=")[1]) for line in lines]
    assert ids == sorted(ids) and ids[-1] - ids[0] == 2


def test_state_now_and_in_the_past(world: Path) -> None:
    now = json.loads(invoke("state", str(world), "shop/Order@1", "o-000005", "--manifest", MANIFEST))
    assert now["status"] in ("shipped", "short", "confirmed")
    first = next(int(line.split("event_id=")[1]) for line in invoke(
        "tail", str(world), "-n", "100000", "--kind", "StepScheduled").splitlines() if "o-000005" in line)
    then = json.loads(invoke("state", str(world), "shop/Order@1", "o-000005", "--manifest", MANIFEST,
                             "--at", str(first)))
    assert then["status"] == "open" and then["answered"] == 0
    before = invoke("state", str(world), "shop/Order@1", "o-000005", "--manifest", MANIFEST, "--at", str(first - 1))
    assert before.strip() == "null"


def test_cells_lists_live_cells(world: Path) -> None:
    out = invoke("cells", str(world), "shop/Ledger@1", "--manifest", MANIFEST)
    assert out.splitlines() == ["reducer        key", "shop/Ledger@1  None", "1 cell(s)"]
    assert int(invoke("cells", str(world), "--manifest", MANIFEST).splitlines()[-1].split()[0]) > 60


@pytest.mark.parametrize("args, message", [
    (["info", "NOWHERE"], "error: no world at NOWHERE"),
    (["state", "WORLD", "shop/Nope@1", "x", "--manifest", MANIFEST], "has no reducer 'shop/Nope@1'"),
    (["state", "WORLD", "shop/Order@1", "x", "--manifest", "aos.demo:nothing"], "cannot load aos.demo:nothing"),
    (["state", "WORLD", "shop/Order@1", "x", "--manifest", MANIFEST, "--at", "99999999"], "ends at event_id"),
])
def test_errors_are_one_line_and_exit_non_zero(world: Path, args: list[str], message: str) -> None:
    args = [str(world) if a == "WORLD" else a for a in args]
    out = subprocess.run([sys.executable, "-m", "aos", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2


def test_metrics_of_the_last_session(world: Path) -> None:
    out = invoke("metrics", str(world))
    assert out.startswith("executor        inline (0 workers)")
    assert "starvation      longest ring wait" in out and "commit latency  p50" in out
    tickets = int(out.splitlines()[1].split()[1])
    assert f"last event_id  {tickets}" in invoke("info", str(world))


def test_replay_verify_gives_the_snapshot_hash(world: Path) -> None:
    out = invoke("replay", str(world), "--verify", "--manifest", MANIFEST)
    digest = out.strip().splitlines()[-1].split()[-1]
    assert f"hash {digest}" in invoke("info", str(world))


def test_export_sqlite_answers_the_documented_queries(world: Path, tmp_path: Path) -> None:
    import sqlite3

    out = invoke("export", str(world), "--sqlite", str(tmp_path / "w.db"))
    assert out.startswith(f"wrote {tmp_path / 'w.db'}: ")
    db = sqlite3.connect(tmp_path / "w.db")
    # query 1 (docs/cli.md): steps per reducer and how they ended
    per_reducer = dict((r, n) for r, n, _c in db.execute(
        "SELECT reducer, count(*), sum(outcome = 'committed') FROM steps GROUP BY reducer"))
    assert set(per_reducer) == {"shop/Inventory@1", "shop/Order@1", "shop/Ledger@1"}
    info_steps = kind_count(invoke("info", str(world)), "StepScheduled")
    assert sum(per_reducer.values()) == info_steps
    # query 2: what each kind of effect cost, from its receipts
    costs = dict((k, (n, c)) for k, n, c in db.execute(
        "SELECT e.kind, count(*), sum(r.cost) FROM effects e JOIN receipts r USING (intent_hash) GROUP BY e.kind"))
    assert set(costs) == {"blob.put", "timer.set"} and costs["blob.put"][0] == costs["timer.set"][0] > 0
    # every step's input is an admitted event or a receipt (admission numbers line up)
    orphans = db.execute("SELECT count(*) FROM steps WHERE input NOT IN (SELECT seq FROM events) "
                         "AND input NOT IN (SELECT seq FROM receipts)").fetchone()[0]
    assert orphans == 0
    with pytest.raises(FileExistsError):
        from aos.export import export_sqlite

        export_sqlite(world, tmp_path / "w.db")


# ------------------------------------------------------------------ tail --follow
def _lines(stream: Any) -> "queue.Queue[str]":
    """The lines of a text stream, read on a thread (so the test can wait with a deadline)."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put("")

    threading.Thread(target=pump, daemon=True).start()
    return q


def _follow(world: Path, *args: str) -> subprocess.Popen[str]:
    """``aos tail WORLD --follow ARGS`` in a child process that takes Ctrl-C as a terminal would send it."""
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from aos.cli import main; main()")
    return subprocess.Popen([sys.executable, "-c", code, "tail", str(world), "--follow", "--poll", "0.02", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _append(world: Path, n: int) -> None:
    """Another writer: n more events (each 5 records), in segments small enough to rotate while followed."""
    with aos.World.open(world, make_counter_manifest(), segment_bytes=1024, snapshot_on_close=False) as w:
        for i in range(n):
            w.submit("test/Add@1", {"id": f"k{i % 3}", "by": i})
            w.run()


def test_tail_follow_prints_records_another_writer_appends(tmp_path: Path) -> None:
    from aos.journal import JournalReader

    world = tmp_path / "followed.world"
    _append(world, 2)
    before = sum(1 for _ in JournalReader(world / "journal").entries())
    child = _follow(world, "-n", "2", "--timeout", "120")
    try:
        errors = _lines(child.stderr)
        assert "following" in errors.get(timeout=60)
        _append(world, 30)
        after = sum(1 for _ in JournalReader(world / "journal").entries())
        assert len(JournalReader(world / "journal").segments()) > 3  # the writer rotated segments meanwhile
        out, seen = _lines(child.stdout), []
        while len(seen) < after - before + 2:
            line = out.get(timeout=60)
            assert line, f"aos tail --follow ended early: {seen[-3:]}"
            seen.append(line)
        assert [int(line.split()[0][1:]) for line in seen] == list(range(before - 2, after))
        assert seen[-1].split()[1] == "StepCommitted" and "EventAdmitted" in seen[-5]
        assert "value={'by': 29, 'id': 'k2'}" in seen[-5]
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=60) == 0  # Ctrl-C ends following cleanly
    finally:
        child.kill()
        child.wait()


def test_tail_follow_stops_after_max_records_of_a_kind(tmp_path: Path) -> None:
    world = tmp_path / "followed.world"
    _append(world, 1)
    child = _follow(world, "-n", "0", "--kind", "EventAdmitted", "--max-records", "3", "--timeout", "120")
    try:
        assert "following" in _lines(child.stderr).get(timeout=60)
        _append(world, 5)
        out, _err = child.communicate(timeout=60)
        assert child.returncode == 0
        lines = out.splitlines()
        assert len(lines) == 3 and all(line.split()[1] == "EventAdmitted" for line in lines)
        assert [line.split("value=")[1].split(" schema=")[0] for line in lines] == [
            "{'by': 0, 'id': 'k0'}", "{'by': 1, 'id': 'k1'}", "{'by': 2, 'id': 'k2'}"]
    finally:
        child.kill()
        child.wait()
