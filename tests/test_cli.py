"""The aos command line on a world built by the test."""

from __future__ import annotations

import json
import queue
import re
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
    fields = [re.findall(r" (\w+)=", line) for line in lines]
    assert fields == [["event_id", "reducer", "key", "input"]] * 3  # the record's own field order
    ids = [int(line.split("event_id=")[1].split()[0]) for line in lines]
    assert ids == sorted(ids) and ids[-1] - ids[0] == 2


def test_state_now_and_in_the_past(world: Path) -> None:
    now = json.loads(invoke("state", str(world), "shop/Order@1", "o-000005", "--manifest", MANIFEST))
    assert now["status"] in ("shipped", "short", "confirmed")
    first = next(int(line.split("event_id=")[1].split()[0]) for line in invoke(
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
    (["state", "WORLD", "shop/Order@1", "--manifest", MANIFEST], "is keyed by 'order_id': pass a key"),
    (["state", "WORLD", "shop/Ledger@1", "x", "--manifest", MANIFEST], "is not keyed: pass no key"),
    (["why", "NOWHERE", "--effect", "abcdef"], "error: no world at NOWHERE"),
    (["why", "WORLD", "--effect", "abcdef0123"], "no effect intent with hash abcdef0123"),
    (["why", "WORLD", "--effect", "xyz"], "'xyz' is not an intent hash"),
    (["why", "WORLD", "--cell", "shop/Order@1", "o-999999"], "no cell (shop/Order@1, 'o-999999') was written"),
    (["why", "WORLD", "--cell", "shop/Nope@1", "x"], "no step of reducer 'shop/Nope@1'"),
    (["why", "WORLD", "--cell", "shop/Nope@1", "x", "--manifest", MANIFEST], "has no reducer 'shop/Nope@1'"),
    (["why", "WORLD", "--cell", "shop/Order@1", "o-000001", "--manifest", "aos.demo:nothing"], "cannot load"),
    (["why", "WORLD", "--cell", "shop/Order@1", "o-000001", "--at", "99999999"], "ends at event_id"),
    (["why", "WORLD", "--cell", "shop/Order@1", "o-000001", "--at", "1"], "has no committed write up to event_id 1"),
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
    assert invoke("replay", str(world), "--manifest", MANIFEST) == out  # verifying is all it does: --verify optional
    assert invoke("replay", str(world), "--manifest", MANIFEST, "--workers", "2") == out  # the same, in parallel


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
        assert [line.split("value=")[1].split(" schema=")[0].split(" visible_at=")[0] for line in lines] == [
            "{'by': 0, 'id': 'k0'}", "{'by': 1, 'id': 'k1'}", "{'by': 2, 'id': 'k2'}"]
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------------ why
def journal_lines(world: Path, kind: str) -> list[dict[str, str]]:
    """Records of one kind as ``aos tail`` prints them, as {field: text} (the raw journal, for cross-checks)."""
    rows = []
    for line in invoke("tail", str(world), "-n", "1000000", "--kind", kind).splitlines():
        fields = re.findall(r"(\w+)=('[^']*'|\S+)", line)
        rows.append({name: value.strip("'") for name, value in fields})
    return rows


def relations(tree: str) -> list[tuple[str, str]]:
    """(relation, node title) for each line of a ``why`` tree below the root."""
    out = []
    for line in tree.splitlines()[1:]:
        m = re.match(r"^[│ ├└─]*([a-z ]+?) ((?:step|event|receipt|denial|effect) \S+)  ", line)
        assert m, line
        out.append((m.group(1), m.group(2)))
    return out


def test_why_effect_traces_an_intent_to_the_submitted_order(world: Path) -> None:
    queued = journal_lines(world, "EffectQueued")[-1]
    intent, step = queued["intent_hash"], queued["event_id"]
    out = invoke("why", str(world), "--effect", intent)
    assert out.splitlines()[0].startswith(f"effect {intent[:12]}  {queued['effect']} ")
    rel = relations(out)
    assert rel[0] == ("intended by", f"step {step}")
    assert rel[-1][0] == "consumed" and out.splitlines()[-1].endswith("(submitted)")
    assert "shop/OrderPlaced@1" in out.splitlines()[-1]
    assert invoke("why", str(world), "--effect", intent[:10]) == out  # a unique prefix names it too


def test_why_cell_chains_through_a_receipt_an_effect_and_emitted_events(world: Path) -> None:
    timer = [q for q in journal_lines(world, "EffectQueued") if q["effect"] == "timer.set"][0]
    steps = journal_lines(world, "StepScheduled")
    key = next(s["key"] for s in steps if s["event_id"] == timer["event_id"])
    mine = [s for s in steps if s["key"] == key]
    out = invoke("why", str(world), "--cell", "shop/Order@1", key)
    lines = out.splitlines()
    last_hash = next(c["state_hash"] for c in journal_lines(world, "StepCommitted")
                     if c["event_id"] == mine[-1]["event_id"])
    assert lines[0] == f"cell shop/Order@1 '{key}'  state {last_hash[:12]} as of event_id {steps[-1]['event_id']}"
    rel = relations(out)
    assert rel[0] == ("written by", f"step {mine[-1]['event_id']}")  # the cell's last step
    receipt = next(r for r in journal_lines(world, "ReceiptAppended") if r["seq"] == mine[-1]["input"])
    assert rel[1] == ("consumed", f"receipt #{receipt['seq']}")
    assert rel[2] == ("answers", f"effect {receipt['intent_hash'][:12]}")
    assert rel[3] == ("intended by", f"step {timer['event_id']}")
    assert [r for r, _t in rel[4:]] == ["consumed", "emitted by", "consumed", "emitted by", "consumed"]
    assert "shop/StockReserved@1" in lines[5] and "shop/Inventory@1" in lines[6]
    assert "shop/ReserveStock@1" in lines[7] and f"shop/Order@1 '{key}'" in lines[8]
    assert rel[-1] == ("consumed", f"event #{mine[0]['input']}") and lines[-1].endswith("(submitted)")
    # --depth: the earlier writes of the cell, newest first, each explained
    deep = invoke("why", str(world), "--cell", "shop/Order@1", key, "--depth", "100")
    earlier = [t for r, t in relations(deep) if r == "earlier write"]
    assert earlier == [f"step {s['event_id']}" for s in reversed(mine[:-1])]
    # --at: the state right after the order was placed was written by that first step alone
    first = mine[0]["event_id"]
    then = invoke("why", str(world), "--cell", "shop/Order@1", key, "--at", first)
    assert then.splitlines()[0].endswith(f"as of event_id {first}")
    assert relations(then) == [("written by", f"step {first}"), ("consumed", f"event #{mine[0]['input']}")]


def test_why_cell_of_a_keyless_reducer(world: Path) -> None:
    out = invoke("why", str(world), "--cell", "shop/Ledger@1", "null", "--manifest", MANIFEST)
    assert out.startswith("cell shop/Ledger@1 None  state ")
    assert [r for r, _t in relations(out)][:3] == ["written by", "consumed", "emitted by"]
    assert "shop/OrderClosed@1" in out.splitlines()[2]


def test_why_through_a_denied_effect(tmp_path: Path) -> None:
    from effects_world import effects_manifest

    path = tmp_path / "denied.world"
    with aos.World.open(path, effects_manifest(), effects="inline") as w:
        w.submit("test/Sneak@1", {"who": "mallory"})
        w.run()
    out = invoke("why", str(path), "--cell", "test/Intruder@1", "null")
    assert [r for r, _t in relations(out)] == ["written by", "consumed", "denies", "intended by", "consumed"]
    lines = out.splitlines()
    assert "denial #1" in lines[2] and "payment.send" in lines[2]
    assert "denied:" in lines[3] and "test/Sneak@1 {'who': 'mallory'} (submitted)" in lines[5]


def test_why_dot_lists_every_node_and_edge(world: Path, tmp_path: Path) -> None:
    dot = tmp_path / "why.dot"
    out = invoke("why", str(world), "--cell", "shop/Order@1", "o-000007", "--depth", "3", "--dot", str(dot))
    text = dot.read_text()
    assert text.startswith("digraph why {\n") and text.rstrip().endswith("}")
    nodes = re.findall(r'^  "([^"]+)" \[label=', text, re.M)
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label="([^"]+)"\];$', text, re.M)
    assert len(nodes) == len(set(nodes)) and {a for a, _b, _l in edges} | {b for _a, b, _l in edges} <= set(nodes)
    tree = out.splitlines()[:-1]
    assert out.splitlines()[-1] == f"wrote {dot} ({len(nodes)} nodes, {len(edges)} edges)"
    assert len(nodes) == sum(1 for line in tree if not line.endswith("(shown above)"))
    assert len(edges) == len(tree) - 1  # every edge is one line below the root
    steps = {f"step:{title.split()[1]}" for _r, title in relations("\n".join(tree)) if title.startswith("step")}
    assert "cell" in nodes and steps <= set(nodes)
    assert ("cell", sorted(steps, key=lambda s: -int(s[5:]))[0], "written by") in edges


def test_why_png_draws_the_graph(world: Path, tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    png = tmp_path / "why.png"
    out = invoke("why", str(world), "--cell", "shop/Order@1", "o-000007", "--depth", "2", "--png", str(png))
    assert out.splitlines()[-1].startswith(f"wrote {png} (")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    pixels = image.imread(str(png))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    colours = {tuple(round(c * 255) for c in px[:3]) for px in pixels.reshape(-1, pixels.shape[2])[::7]}
    assert (0xF6, 0xD5, 0x5C) in colours and (0x9E, 0xCA, 0xE1) in colours  # the cell's and the steps' boxes


def test_why_png_without_matplotlib_is_one_clear_error(world: Path, tmp_path: Path) -> None:
    code = "import sys; sys.modules['matplotlib'] = None; from aos.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code, "why", str(world), "--cell", "shop/Ledger@1", "null",
                          "--png", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "Error: --png needs matplotlib: pip install 'aos-kernel[graph]'"
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------ every value renders
HUGE = 7 ** 6000  # 5,071 decimal digits: beyond the interpreter's default int-to-text limit
ODD_VALUES = {
    "huge": {"n": HUGE, "neg": -HUGE, "big": 2 ** 64, "small": -(2 ** 63) - 1},
    "inf": {"up": float("inf"), "down": float("-inf"), "x": 1.5},
    "bytes": {"raw": b"\x00\xff", "long": bytes(range(40))},
    "keys": {b"k": 1, 7: [b"\x01", {"$bytes": "not a tag"}], "s": {-3: None}},
    "deep": {"d": [[[[{"x": [HUGE, float("-inf")]}]]]]},
}


def odd_values_manifest() -> aos.Manifest:
    m = aos.Manifest("test/odd@1")
    m.capability("timers", effect="timer.set", budget=1_000)

    @m.reducer("test/Keep@1", key="id", events=["test/Put@1"])
    def keep(ctx: Any, state: Any, event: Any) -> Any:
        if event.value.get("fx"):
            ctx.effect("timer.set", {"after_ms": 1, "big": HUGE, "b": b"\x01"}, cost=1)
        return event.value["v"]

    return m


@pytest.fixture(scope="module")
def odd_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("odd") / "odd.world"
    with aos.World.open(path, odd_values_manifest(), effects="inline") as w:
        for name, value in ODD_VALUES.items():
            w.submit("test/Put@1", {"id": name, "v": value})
        w.submit("test/Put@1", {"id": b"\xfe\x01", "v": [HUGE]})
        w.submit("test/Put@1", {"id": 12, "v": {"fx": 1}, "fx": True})
        w.run()
    return path


def _odd_cli(*args: str) -> str:
    """Run ``python -m aos`` in a child (a fresh interpreter with its default int-to-text limit)."""
    out = subprocess.run([sys.executable, "-m", "aos", *args], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("name", sorted(ODD_VALUES))
def test_state_prints_every_value_as_valid_json_that_reads_back(odd_world: Path, name: str) -> None:
    from aos.render import from_json

    out = _odd_cli("state", str(odd_world), "test/Keep@1", name, "--manifest", "test_cli:odd_values_manifest_m")
    assert from_json(_strict_json(out)) == ODD_VALUES[name]


def test_state_takes_a_bytes_key_in_the_tagged_form(odd_world: Path) -> None:
    from aos.render import from_json

    out = _odd_cli("state", str(odd_world), "test/Keep@1", '{"$bytes": "fe01"}',
                   "--manifest", "test_cli:odd_values_manifest_m")
    assert from_json(_strict_json(out)) == [HUGE]


def test_tail_cells_why_and_export_show_every_value(odd_world: Path, tmp_path: Path) -> None:
    import sqlite3

    from aos.render import from_json

    tail = _odd_cli("tail", str(odd_world), "-n", "1000")
    assert "'up': inf, 'down': -inf" in tail and "b'\\x00\\xff'" in tail and "{7: [b'\\x01'" in tail
    assert hex(HUGE) in tail and "-" + hex(HUGE) in tail and str(2 ** 64) in tail
    assert "key=b'\\xfe\\x01'" in tail
    intent = next(line for line in tail.splitlines() if " StepCommitted " in line and "'params'" in line)
    assert f"'params': {{'b': b'\\x01', 'big': {hex(HUGE)}, 'after_ms': 1}}" in intent  # decoded, not CBOR
    cells = _odd_cli("cells", str(odd_world), "--manifest", "test_cli:odd_values_manifest_m")
    assert "b'\\xfe\\x01'" in cells and "7 cell(s)" in cells
    why = _odd_cli("why", str(odd_world), "--cell", "test/Keep@1", "huge")
    assert why.splitlines()[0].startswith("cell test/Keep@1 'huge'") and "(submitted)" in why
    effect = re.search(r"'intent_hash': ([0-9a-f]{64})", intent)
    assert effect is not None
    assert "timer.set {'b': b'\\x01', 'big': 0x" in _odd_cli("why", str(odd_world), "--effect", effect.group(1))
    db_path = tmp_path / "odd.db"
    _odd_cli("export", str(odd_world), "--sqlite", str(db_path))
    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT key, state FROM cells")
    states = {from_json(json.loads(k)): from_json(_strict_json(s)) for k, s in rows}
    assert states == {**ODD_VALUES, b"\xfe\x01": [HUGE], 12: {"fx": 1}}
    for (body,) in db.execute("SELECT body FROM records"):
        _strict_json(body)


def test_export_failure_leaves_no_file_and_never_replaces_one(world: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken.world"
    shutil.copytree(world, broken)
    snap = sorted((broken / "snapshots").iterdir())[-1]
    snap.write_bytes(b"\xff not a snapshot")  # the export fails at the last table, after all the others
    out = subprocess.run([sys.executable, "-m", "aos", "export", str(broken), "--sqlite", str(tmp_path / "x.db")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.world"]  # no partial file, no temporary one
    (tmp_path / "x.db").write_bytes(b"mine")
    out = subprocess.run([sys.executable, "-m", "aos", "export", str(world), "--sqlite", str(tmp_path / "x.db")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "exists" in out.stderr
    assert (tmp_path / "x.db").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.world", "x.db"]


odd_values_manifest_m = odd_values_manifest()  # for --manifest test_cli:odd_values_manifest_m
