"""The ``aos`` command line (``python -m aos``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from aos.errors import AosError
from aos.records import KINDS

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aos-kernel")
def cli() -> None:
    """aos: a deterministic, event-sourced world kernel."""


@cli.command()
@click.argument("directory", default="aos-demo.world", type=click.Path(file_okay=False))
@click.option("--orders", default=3000, show_default=True, help="Number of orders to place.")
@click.option("--durability", type=click.Choice(["group", "always", "none"]), default="group",
              show_default=True, help="Journal durability policy.")
def demo(directory: str, orders: int, durability: str) -> None:
    """Run the shop demo world in DIRECTORY and verify it by replay.

    An earlier demo world in DIRECTORY is replaced; a world the demo did not
    make, or one that another process has open, is refused and left as it is.
    """
    import shlex

    from aos.demo import run_demo

    s = run_demo(directory, orders=orders, durability=durability)
    ok = s.snapshot_hash == s.replay_hash
    click.echo(f"world          {s.path.resolve()}")
    click.echo(f"events         {s.events} admitted")
    click.echo(f"steps          {s.steps} ({s.failed} failed)")
    click.echo(f"cells          {s.cells}")
    click.echo(f"ledger         {s.ledger}")
    click.echo(f"effects        {s.effects} intended, {s.receipts} receipts (invoices in blobs/, timers)")
    click.echo(f"snapshot hash  {s.snapshot_hash}")
    click.echo(f"seconds        {s.seconds:.2f} ({s.steps / s.seconds:,.0f} steps/s, durability {durability})")
    click.echo(f"replay         {'verified' if ok else 'DIVERGED'}: {s.replay_hash} "
               f"in {s.replay_seconds:.2f} s")
    if not ok:
        sys.exit(1)
    w = shlex.quote(directory)
    click.echo("\nnext, try:")
    for line in (f"aos info {w}", f"aos tail {w} -n 5",
                 f"aos state {w} shop/Ledger@1 --manifest aos.demo:manifest",
                 f"aos why {w} --cell shop/Order@1 o-000005", f"aos replay {w} --manifest aos.demo:manifest"):
        click.echo(f"  {line}")


# ------------------------------------------------------------ world reading
def _load_object(spec: str, option: str) -> Any:
    """``module:attribute`` (from the current directory or the path) -> the object it names."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.ClickException(f"{option}: expected module:attribute, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(f"{option}: cannot load {spec}: {exc}") from None


def _load_manifest(spec: str) -> Any:
    """``module:attribute`` -> the Manifest it names."""
    from aos.manifest import Manifest

    obj = _load_object(spec, "--manifest")
    if not isinstance(obj, Manifest):
        raise click.ClickException(f"--manifest: {spec} is a {type(obj).__name__}, not an aos.Manifest")
    return obj


def _world_dir(path: str) -> Path:
    from aos.errors import WorldNotFoundError
    from aos.world import META

    p = Path(path)
    if not (p / META).is_file():
        raise WorldNotFoundError(f"no world at {p} ({META} is missing)")
    return p


def _parse_key(text: str | None) -> Any:
    """A cell key from the command line.

    JSON that reads as an int, a string or a tagged int or byte string (``42``,
    ``"42"``, ``{"$bytes": "6b31"}``, as ``aos state`` writes them; docs/cli.md)
    is taken as that key, anything else as the text itself.
    """
    from aos.render import from_json

    if text is None:
        return None
    try:
        value = from_json(json.loads(text))
    except ValueError:
        return text
    return value if type(value) in (int, str, bytes) else text


def _show(value: Any) -> str:
    """A value for people, one line (docs/cli.md, "Values in output")."""
    from aos.render import show

    return show(value)


def _out(*renderables: Any) -> None:
    """Print rich renderables on stdout: coloured on a terminal, plain text (no trailing blanks) otherwise."""
    from rich.console import Console

    console = Console(highlight=False, markup=False, emoji=False)
    if console.is_terminal:
        console.print(*renderables)
        return
    console.width = 10_000  # captured or piped: never wrap a line for an imagined terminal
    with console.capture() as captured:
        console.print(*renderables)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _fields() -> Any:
    """A two-column grid of named fields (name in bold)."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    return grid


def _table(*columns: str, right: tuple[str, ...] = ()) -> Any:
    """A table with a header and no borders; ``right`` names the right-aligned columns."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left")
    return table


manifest_option = click.option("--manifest", "manifest_spec", required=True, metavar="MODULE:ATTR",
                               help="The world's manifest, e.g. shop.world_def:manifest.")


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
def info(world: str) -> None:
    """Era (and chain of eras), record counts per kind, last event_id, latest snapshot of WORLD."""
    from collections import Counter

    from aos import canonical
    from aos.journal import JournalReader
    from aos.snapshot import list_snapshots
    from aos.world import META

    p = _world_dir(world)
    meta = canonical.decode((p / META).read_bytes(), str(p / META))
    era = canonical.hash_value(meta["manifest"]).hex()
    kinds: Counter[str] = Counter()
    last_event = 0
    reader = JournalReader(p / "journal")
    for _entry, rec in reader.records():
        kinds[rec.KIND] += 1
        last_event = max(last_event, getattr(rec, "event_id", 0) or 0)
    snaps = list_snapshots(p / "snapshots")
    grid = _fields()
    grid.add_row("world", str(p.resolve()))
    grid.add_row("manifest", f"{meta['manifest']['manifest']} ({len(meta['manifest']['reducers'])} reducers)")
    grid.add_row("era", era)
    from aos.eras import era_chain, reconcile

    view = reconcile(p, meta, write=False)
    chain = era_chain(view)
    if len(chain) > 1:
        grid.add_row("eras", "; ".join(f"{i} {e.era.hex()[:12]} " + ("(created)" if e.proposal is None else
                                                                      f"(after event_id {e.event_id})")
                                       for i, e in enumerate(chain, 1)))
    for pr in _world_proposals(p, view, chain):
        grid.add_row("proposal " + str(pr.proposal),
                     f"era {pr.era.hex()[:12]}, {_proposal_status(pr, chain)}; approvals: "
                     + (", ".join(by or "?" for by, _n in pr.approvals) or "none")
                     + f"; shadow runs: {_shadow_runs(pr)}")
    grid.add_row("window, aging", f"{meta['window']}, {meta['aging']}")
    grid.add_row("records", f"{sum(kinds.values())} in {len(reader.segments())} segment(s)"
                 + (f", torn tail at {reader.torn_at[0]}:{reader.torn_at[1]}" if reader.torn_at else ""))
    grid.add_row("last event_id", str(last_event))
    from aos.retention import read_compaction

    compacted = read_compaction(p)
    if compacted is not None:
        grid.add_row("compacted", f"records before {compacted.index:,} removed ({_n(compacted.segments, 'segment')}, "
                                  f"{compacted.bytes:,} bytes); the journal is read from snapshots/"
                                  f"{compacted.snapshot} (event_id {compacted.event_id}) on")
    if snaps:
        doc = canonical.decode(snaps[-1].read_bytes(), str(snaps[-1]))
        grid.add_row("snapshot", f"{snaps[-1].name}: event_id {doc['event_id']}, {len(doc['cells'])} cells, "
                                 f"hash {doc['snapshot_hash'].hex()}")
    else:
        grid.add_row("snapshot", "none")
    grid.add_row("durability", "chosen by each World.open (group by default); not recorded in the world")
    table = _table("record kind", "count", right=("count",))
    for kind, n in sorted(kinds.items()):
        table.add_row(kind, str(n))
    _out(grid, "", table)


class _Hex:
    """A hash in a record, shown as its hex digits."""

    def __init__(self, data: bytes) -> None:
        self.text = data.hex()

    def __repr__(self) -> str:
        return self.text


def _wire_field(name: str, value: Any) -> Any:
    """A record field for display: hashes as hex, embedded canonical values (event values, params) decoded."""
    from aos import canonical

    if isinstance(value, bytes):
        if name in ("value", "payload", "params", "state"):
            return canonical.decode_trusted(value)
        if name == "manifest":  # a proposal's manifest description: its era says which
            return f"<description, {len(value)} bytes>"
        return _Hex(value) if name.endswith("hash") or name in ("base", "era", "ends", "starts") else value
    if isinstance(value, (list, tuple)):
        return [_wire_field(name, v) for v in value]
    if hasattr(value, "to_wire"):  # an emit or an effect intent inside a StepCommitted
        fields = getattr(value, "__dataclass_fields__", {})
        return {f: _wire_field(f, getattr(value, f)) for f in fields}
    return value


def _record_line(entry: Any, rec: Any) -> str:
    """One journal record on one line: its fields in the record's own order (event_id first where it has one)."""
    fields = [f"{name}={_show(_wire_field(name, getattr(rec, name)))}" for name in rec.FIELDS
              if name != "lane_id" and not (name in ("origin", "idempotency_key") and getattr(rec, name) is None)]
    return f"#{entry.index:<7} {rec.KIND:<17} " + " ".join(fields)


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("-n", "count", default=20, show_default=True, help="How many of the last records.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(KINDS)),
              help="Only records of this kind (repeatable).")
@click.option("-f", "--follow", is_flag=True, help="Then print records as they are appended, until Ctrl-C.")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="With --follow: stop after following this long.")
@click.option("--max-records", type=int, default=None, metavar="N",
              help="With --follow: stop after N new records.")
@click.option("--poll", type=float, default=0.2, show_default=True, metavar="SECONDS",
              help="With --follow: how often to look for new records.")
def tail(world: str, count: int, kinds: tuple[str, ...], follow: bool, timeout: float | None,
         max_records: int | None, poll: float) -> None:
    """The last records of WORLD's journal, one per line (with -f, and then new ones as they come)."""
    import time
    from collections import deque

    from aos.journal import JournalReader

    p = _world_dir(world)
    last: deque[Any] = deque(maxlen=max(count, 0))
    reader = JournalReader(p / "journal")
    for entry, rec in reader.records():
        if not kinds or rec.KIND in kinds:
            last.append((entry, rec))
    for entry, rec in last:
        click.echo(_record_line(entry, rec))
    if not follow or max_records == 0:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    click.echo(f"following {p}; Ctrl-C to stop", err=True)
    shown = 0
    try:
        for entry in reader.follow(reader.end, poll, lambda: deadline is not None and time.monotonic() >= deadline):
            rec = entry.record()
            if kinds and rec.KIND not in kinds:
                continue
            click.echo(_record_line(entry, rec))
            shown += 1
            if max_records is not None and shown >= max_records:
                return
    except KeyboardInterrupt:
        return


era_manifests_option = click.option(
    "--manifest", "manifest_specs", required=True, multiple=True, metavar="MODULE:ATTR",
    help="The world's manifest; repeat it with each earlier era's manifest (any order) for --at an event_id "
         "of an earlier era.")


def _era_replay(world: str, specs: tuple[str, ...]) -> Any:
    """A replay of WORLD with the manifests given (one per era, any order)."""
    from aos.replay import Replay

    return Replay(_world_dir(world), manifests=[_load_manifest(s) for s in specs])


def _replay_to(r: Any, at: int | None) -> None:
    """Replay ``r`` up to event_id ``at``, or (None) to now: from the newest snapshot, the journal's tail only."""
    if at is None:
        r.latest()
    else:
        r.verify(until=at)


def _with_reducer(r: Any, reducer: str) -> Any:
    """The manifest of the newest era ``r`` re-executes that has ``reducer`` (else the newest: it names the error)."""
    return next((m for m in reversed(r.manifests) if reducer in m.reducers), r.manifest)


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.argument("reducer", required=False)
@era_manifests_option
@click.option("--at", "at", type=int, default=None, help="As of this event_id (time travel).")
def cells(world: str, reducer: str | None, manifest_specs: tuple[str, ...], at: int | None) -> None:
    """Live cells of WORLD (of REDUCER): now (its newest snapshot and the journal after it) or --at EVENT_ID."""
    r = _era_replay(world, manifest_specs)
    _replay_to(r, at)
    rows = r.cells(reducer)
    table = _table("reducer", "key")
    for name, key in rows:
        table.add_row(name, _show(key))
    _out(table, f"{len(rows)} cell(s)" + (f" as of event_id {at}" if at is not None else ""))


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.argument("reducer")
@click.argument("key", required=False)
@era_manifests_option
@click.option("--at", "at", type=int, default=None, help="As of this event_id (time travel).")
def state(world: str, reducer: str, key: str | None, manifest_specs: tuple[str, ...], at: int | None) -> None:
    """The state of cell (REDUCER, KEY) of WORLD as JSON, now or as of --at EVENT_ID (null: no such cell).

    KEY is required for a keyed reducer and left out for one without a key.
    """
    from aos.admission import cell_key
    from aos.render import json_text

    r = _era_replay(world, manifest_specs)
    # the key is checked before the replay, against the newest era given that has the reducer
    m = _with_reducer(r, reducer)
    cell = cell_key(m.get(reducer), _parse_key(key), f"aos state {reducer}")
    _replay_to(r, at)
    click.echo(json_text(r.state(reducer, cell)))


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
def metrics(world: str) -> None:
    """Scheduling and commit metrics of WORLD's last session (written when it closed)."""
    from aos.world import METRICS

    path = _world_dir(world) / METRICS
    if not path.is_file():
        raise click.ClickException(f"{world} has no {METRICS}: the world has not been closed since it was created")
    m = json.loads(path.read_text())
    q, w, lat = m["queue"], m["wait_ticks"], m["commit_latency_us"]
    grid = _fields()
    grid.add_row("executor", f"{m['executor']} ({m['workers']} workers)")
    grid.add_row("tickets", f"{m['tickets']}  commits {m['commits']}  failures {m['failures']}")
    grid.add_row("validations", f"{m['validations']}  re-executions {m['reexecutions']}  conflicts {m['conflicts']}")
    grid.add_row("queue", f"now {q['queued']}, at most {q['queued_max']}; in flight at most {q['in_flight_max']}")
    grid.add_row("starvation", f"longest ring wait {w['max']} tickets (cell {w['max_cell']}, at ticket "
                               f"{w['max_at_ticket']}); mean {w['mean']:.2f}")
    grid.add_row("workers busy", f"{m['worker_busy_seconds']:.3f} s")
    grid.add_row("commit latency", f"p50 <= {lat['p50']} us, p99 <= {lat['p99']} us")
    # per priority class and per reducer (metrics.json written before they were kept has neither)
    for c in m.get("by_priority", []):
        if c["steps"]:
            grid.add_row(f"class {c['priority']}", _step_counts(c))
    for name, r in m.get("by_reducer", {}).items():
        grid.add_row("reducer", f"{name}  {_step_counts(r)}")
    if "receipts" in m["effects"]:
        fx = m["effects"]
        grid.add_row("effects", f"dispatched {fx['dispatched']}, receipts "
                                + (", ".join(f"{s} {n}" for s, n in fx["receipts"].items()) or "none")
                                + f", refused {fx['receipts_refused']}; outstanding {fx['outstanding']}")
    _out(grid)


def _step_counts(c: dict[str, Any]) -> str:
    mean = c["wait_ticks"] / c["steps"] if c["steps"] else 0.0
    return f"{c['steps']} steps, {c['failures']} failed; wait mean {mean:.2f}, longest {c['wait_max']} tickets"


KIND_STYLES = {"cell": "bold yellow", "step": "bold blue", "event": "bold green", "receipt": "bold magenta",
               "denial": "bold red", "effect": "bold cyan", "migration": "bold white"}


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--effect", "intent", metavar="INTENT_HASH", help="Explain this effect intent (hex, or a unique prefix).")
@click.option("--cell", nargs=2, metavar="REDUCER KEY", default=None,
              help="Explain this cell's state (KEY null: the reducer's keyless cell).")
@click.option("--at", "at", type=int, default=None, help="With --cell: the state as of this event_id.")
@click.option("--depth", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also explain this many earlier writes of the cell.")
@click.option("--manifest", "manifest_spec", default=None, metavar="MODULE:ATTR",
              help="Optional: check the world was made with it and that REDUCER is one of its reducers.")
@click.option("--dot", "dot_file", type=click.Path(dir_okay=False), help="Also write the graph as Graphviz DOT.")
@click.option("--png", "png_file", type=click.Path(dir_okay=False), help="Also draw the graph as a PNG (matplotlib).")
def why(world: str, intent: str | None, cell: tuple[str, str] | None, at: int | None, depth: int,
        manifest_spec: str | None, dot_file: str | None, png_file: str | None) -> None:
    """The provenance of an effect or of a cell's state: the steps and events that caused it.

    Read from WORLD's journal alone (no reducer runs). Printed as a tree from
    the effect or cell down to the events submitted from outside.
    """
    from rich.text import Text
    from rich.tree import Tree

    from aos.provenance import Provenance

    if (intent is None) == (cell is None):
        raise click.UsageError("give either --effect INTENT_HASH or --cell REDUCER KEY")
    if at is not None and cell is None:
        raise click.UsageError("--at goes with --cell")
    p = _world_dir(world)
    if manifest_spec is not None:
        from aos.world import read_meta

        m = _load_manifest(manifest_spec)
        read_meta(p, m)
        if cell is not None:
            m.get(cell[0])
    prov = Provenance(p)
    if cell is not None:
        key = None if cell[1] == "null" else _parse_key(cell[1])
        graph = prov.why_cell(cell[0], key, at=at, depth=depth)
    else:
        assert intent is not None
        graph = prov.why_effect(intent, depth=depth)
    branches: list[Any] = []
    tree: Any = None
    for level, label, node, repeated in graph.walk():
        text = Text()
        if label is not None:
            text.append(f"{label} ", style="dim italic")
        text.append(node.title, style=KIND_STYLES[node.kind])
        text.append(f"  {node.text}")
        if repeated:
            text.append("  (shown above)", style="dim")
        if tree is None:
            tree = Tree(text)
            branches = [tree]
            continue
        del branches[level:]
        branches.append(branches[-1].add(text))
    _out(tree)
    size = f"{len(graph.nodes)} nodes, {len(graph.edges)} edges"
    if dot_file is not None:
        Path(dot_file).write_text(graph.to_dot())
        click.echo(f"wrote {dot_file} ({size})")
    if png_file is not None:
        try:
            graph.write_png(png_file)
        except ImportError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"wrote {png_file} ({size})")


@cli.command(name="replay")
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--manifest", "manifest_specs", required=True, multiple=True, metavar="MODULE:ATTR",
              help="The world's manifest, e.g. shop.world_def:manifest; repeat it with the manifest of each "
                   "era to verify a world's history across eras (docs/upgrades.md).")
@click.option("--verify", is_flag=True, help="Accepted for clarity: replaying always verifies every record.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Compute the steps on this many threads (pays for native reducers or on a free-threaded "
                   "Python); records are still compared in journal order.")
def replay_cmd(world: str, manifest_specs: tuple[str, ...], verify: bool, workers: int) -> None:
    """Replay WORLD's journal and verify it byte for byte (with or without --verify)."""
    from aos.journal import JournalReader
    from aos.replay import Replay

    p = _world_dir(world)
    ms = [_load_manifest(spec) for spec in manifest_specs]
    r = Replay(p, manifests=ms)
    base = r.verified_from  # a compacted world: verified from its compaction base
    total = sum(1 for _ in JournalReader(p / "journal", [e.era for e in r.eras]).entries(
        base.position if base is not None else None))
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        seen = [0]

        def progress(records: int) -> None:
            bar.update(records - seen[0])
            seen[0] = records

        digest = r.verify(progress=progress, workers=workers)
        bar.update(total - seen[0])
    skipped = r.not_reexecuted
    if base is not None:
        click.echo(f"verified {total} records from snapshot snapshots/{base.snapshot} at record {base.index} "
                   f"(event_id {base.event_id}): snapshot hash {digest}")
        click.echo(f"not re-executed: event_ids 1..{base.event_id} (records 0..{base.index - 1} were compacted: "
                   f"{_n(base.segments, 'segment')}, {base.bytes:,} bytes removed)")
    elif skipped:
        first = r.first_era
        click.echo(f"verified from the boundary snapshot of era {first.era.hex()[:12]} "
                   f"(snapshots/{first.snapshot}): snapshot hash {digest}")
        click.echo(f"not re-executed: event_ids {skipped.start}..{skipped.stop - 1} (written in earlier eras; "
                   "give --manifest for each era to verify them)")
    else:
        click.echo(f"verified {total} records: snapshot hash {digest}")


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--sqlite", "target", required=True, type=click.Path(dir_okay=False),
              help="A new SQLite file to write.")
def export(world: str, target: str) -> None:
    """Export WORLD's records, steps, events, effects, receipts and cells as SQLite tables."""
    from aos.export import export_sqlite

    counts = export_sqlite(_world_dir(world), Path(target))
    click.echo(f"wrote {target}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))


def _n(count: int, what: str) -> str:
    return f"{count:,} {what}" + ("" if count == 1 else "s")


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--manifest", "manifest_specs", multiple=True, metavar="MODULE:ATTR",
              help="Optional: also check the world's era and replay its intact journal, verifying every record. "
                   "Repeat it with each earlier era's manifest (any order) to verify those eras too.")
def fsck(world: str, manifest_specs: tuple[str, ...]) -> None:
    """Check every file of WORLD; print what is intact and up to where. Changes nothing.

    Exit status 0 when nothing is damaged, 1 when something is.
    """
    from aos.fsck import check_world
    from aos.journal import segment_name

    if not Path(world).is_dir():
        raise click.ClickException(f"{world} is not a directory (no world to check)")
    r = check_world(world, manifests=[_load_manifest(spec) for spec in manifest_specs])
    j = r.journal
    grid = _fields()
    grid.add_row("world", str(r.path))
    if r.meta is not None:
        desc = r.meta["manifest"]
        grid.add_row("world.cbor", f"ok: manifest {desc.get('manifest')}, era {r.era.hex() if r.era else '?'}, "
                                   f"window {r.meta['window']}, aging {r.meta['aging']}")
    else:
        grid.add_row("world.cbor", "DAMAGED")
    grid.add_row("secret.key", "ok" if r.secret else "MISSING")
    read = [s for s in j.segments if s.read]
    journal_problems = [pr for pr in r.problems if pr.file == "journal"]
    if r.journal_state:
        grid.add_row("journal", f"{r.journal_state}: {journal_problems[0].what}")
    else:
        where = f"segment {segment_name(j.end.segment)} offset {j.end.offset}"
        state = "DAMAGED" if j.damage is not None or journal_problems else "ok"
        c = r.compacted
        held = _n(j.records, "record") + " intact from the start" if c is None else (
            f"{_n(j.records - c.index, 'record')} intact from the compaction base (record {c.index:,}; the records "
            "before it were compacted)")
        grid.add_row("journal", f"{state}: {held}, up to {where}; "
                                f"{len(read)} of {len(j.segments)} segment(s) read")
    grid.add_row("steps", f"last whole step event_id {j.last_event_id} (record {j.keep:,})"
                 + (f"; then {j.cut_step}" if j.cut_step else ""))
    if j.damage is not None:
        grid.add_row("first damage", str(j.damage))
    after = [s.name for s in j.segments if not s.read and s.first > j.records]
    if after:
        grid.add_row("not read", f"{len(after)} segment(s) after the damage: {after[0]}"
                                 + (f" to {after[-1]}" if len(after) > 1 else ""))
    if r.watermark is not None:
        wm = r.watermark
        grid.add_row("watermark", f"{r.watermark_state}: {_n(wm.index, 'record')} acknowledged, up to segment "
                                  f"{segment_name(wm.segment)} offset {wm.offset}")
    else:
        grid.add_row("watermark", r.watermark_state)
    if not r.snapshots:
        grid.add_row("snapshots", "none")
    for i, s in enumerate(r.snapshots):
        what = (f"DAMAGED: {s.problem}" if s.problem is not None
                else f"ok: record {s.index:,}, event_id {s.event_id}, {_n(s.cells or 0, 'cell')}; {s.note}")
        if s.past_end and s.problem is None:
            what = "PAST THE JOURNAL'S END: " + what[4:]
        grid.add_row("snapshots" if i == 0 else "", f"{s.name[:20]}-…: {what}")
    if r.era_checks:
        for i, (era, first, last, what) in enumerate(r.era_checks, 1):
            span = f"event_ids {first}..{last}" if last >= first else "no steps"
            grid.add_row(f"era {i}", f"{era.hex()[:12]} ({span}): {what}")
        if r.verified is not None:
            grid.add_row("replay", f"state of the intact journal: snapshot hash {r.verified}")
    elif r.verified is not None and r.compacted is not None:
        grid.add_row("replay", f"verified records {r.compacted.index:,}..{j.keep - 1:,} from the compaction base "
                               f"snapshot (event_id {r.compacted.event_id}): snapshot hash {r.verified}")
    elif r.verified is not None:
        grid.add_row("replay", f"verified {_n(j.keep, 'record')}: snapshot hash {r.verified}")
    for note in r.notes:
        grid.add_row("note", note)
    if r.ok:
        grid.add_row("result", "clean")
    else:
        grid.add_row("result", f"DAMAGED: {_n(len(r.problems), 'problem')}")
        for pr in r.problems:
            grid.add_row("", str(pr))
        grid.add_row("", f"`aos salvage {world} --to NEW` copies the first {_n(j.keep, 'record')} "
                         f"(up to event_id {j.last_event_id}) into a new world")
    _out(grid)
    if not r.ok:
        sys.exit(1)


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False),
              help="The new world's directory (must not exist).")
@click.option("--manifest", "manifest_specs", multiple=True, metavar="MODULE:ATTR",
              help="Optional: replay the new world and verify every record before it is put in place (repeat it "
                   "with each era's manifest for a world of several eras).")
def salvage(world: str, dest: str, manifest_specs: tuple[str, ...]) -> None:
    """Copy the intact part of WORLD into a new world at --to NEW. WORLD is never changed.

    Keeps the journal up to its first damage, cut at the last whole step,
    the world metadata, the secret and the intact blobs; drops the rest and
    every snapshot (the new world replays its journal when opened) but the
    boundary snapshots of a world of several eras, whose era chain it keeps
    (an upgrade the cut leaves in part is rolled back).
    """
    from aos.salvage import salvage_world

    r = salvage_world(world, dest, manifests=[_load_manifest(spec) for spec in manifest_specs])
    grid = _fields()
    grid.add_row("salvaged", f"{r.source} -> {r.dest}")
    grid.add_row("kept", f"{_n(r.records, 'record')}, up to event_id {r.last_event_id}; world.cbor"
                         + ("; secret.key (pending receipts still authenticate)" if r.secret else "")
                         + f"; {_n(r.blobs, 'blob')}")
    if r.dropped_why or r.dropped_records:
        for i, why in enumerate(r.dropped_why):
            grid.add_row("dropped" if i == 0 else "", why)
    else:
        grid.add_row("dropped", "no record: the journal was intact")
    if r.acknowledged_lost:
        grid.add_row("lost", f"{_n(r.acknowledged_lost, 'record')} the durable watermark had acknowledged")
    if not r.secret:
        grid.add_row("secret.key", "missing in the damaged world: the new world has a new one (receipts "
                                   "signed with the old one are refused)")
    if r.blobs_dropped:
        grid.add_row("", f"{_n(len(r.blobs_dropped), 'blob')} failing its hash not copied: "
                         + ", ".join(b[:12] for b in r.blobs_dropped))
    if r.eras > 1:
        grid.add_row("eras", f"{r.eras} kept, with their boundary snapshots: " + ", ".join(r.snapshots_kept))
    grid.add_row("snapshots", f"{len(r.snapshots_dropped)} not copied; the new world replays its journal when "
                              "opened and writes a fresh snapshot when closed")
    if r.verified is not None:
        grid.add_row("replay", f"verified: snapshot hash {r.verified}")
    else:
        grid.add_row("replay", f"not run: `aos replay {dest} --verify --manifest M` checks the new world")
    _out(grid)


def _shadow_side(side: Any, what: tuple[str, ...]) -> str:
    """What differs of one side of a step, for the ``aos shadow`` table."""
    from aos.shadow import _show_emits, _show_intents

    if side is None:
        return "no step to run"
    parts = []
    for w in what:
        if w == "schedule":
            parts.append(f"{side.reducer} {_show(side.key)}")
        elif w in ("outcome", "error"):
            parts.append(side.outcome + (f": {side.error}" if side.error else ""))
        elif w == "state":
            parts.append(f"state {side.state_hash[:12] + '…' if side.state_hash else 'none'}"
                         + (f" {_show(side.state)}" if side.state is not None else ""))
        elif w == "emits":
            parts.append(f"emits {_show_emits(side.emits)}")
        elif w in ("intents", "policy"):
            parts.append(f"intents {_show_intents(side.intents)}")
    return "; ".join(parts)


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--manifest", "manifest_spec", required=True, metavar="MODULE:ATTR",
              help="The proposed manifest, e.g. shop.world_v2:manifest.")
@click.option("--since", type=click.IntRange(min=1), default=None, metavar="EVENT_ID",
              help="Rehearse from this event_id (from the newest snapshot at or before it).")
@click.option("--last", type=click.IntRange(min=1), default=None, metavar="N", help="Rehearse the last N steps.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True, metavar="K",
              help="Show at most K differing steps (all are counted).")
@click.option("--proposal", type=int, default=None, metavar="N",
              help="Journal the result with proposal N (ShadowRunCompleted); the world must be closed.")
@click.option("--earlier", "earlier_specs", multiple=True, metavar="MODULE:ATTR",
              help="The manifest of an earlier era whose code pinned cells still run (repeatable).")
def shadow(world: str, manifest_spec: str, since: int | None, last: int | None, limit: int,
           proposal: int | None, earlier_specs: tuple[str, ...]) -> None:
    """Rehearse a proposed manifest on WORLD's recorded history; write nothing (but --proposal's record).

    Runs the recorded inputs and receipts through the proposed code in
    memory and shows every step whose state, emitted events or intents
    differ from the journal. Exit status 0 when the shadow reproduces the
    journal, 1 when anything differs. With --proposal N, --manifest must be
    the manifest proposal N proposes, and the counts and predicted costs are
    journaled with the proposal (`aos eras` shows them).
    """
    from aos.eras import shadow_closed
    from aos.shadow import shadow_run

    if since is not None and last is not None:
        raise click.UsageError("give --since EVENT_ID or --last N, not both")
    p = _world_dir(world)
    earlier = [_load_manifest(s) for s in earlier_specs]
    if proposal is None:
        r = shadow_run(p, _load_manifest(manifest_spec), since=since, last=last, limit=limit, earlier=earlier)
    else:
        r = shadow_closed(p, proposal, _load_manifest(manifest_spec), since=since, last=last, limit=limit,
                          earlier=earlier)
    grid = _fields()
    grid.add_row("world", str(p.resolve()))
    grid.add_row("proposed", f"{r.manifest}, era {r.proposed_era}"
                 + (" (the world's own)" if r.proposed_era == r.world_era else ""))
    grid.add_row("world era", r.world_era)
    start = f"snapshot {r.snapshot}" if r.snapshot is not None else "the start of the journal"
    grid.add_row("window", f"{r.requested}: from {start}, event_ids {r.first_event_id}..{r.last_event_id}")
    grid.add_row("steps", f"{r.compared} compared: {r.same} same, {r.differing} differing "
                          f"({r.carried} carried; {r.failing_only_in_shadow} failing only in the shadow, "
                          f"{r.failing_only_in_journal} only in the journal)")
    if r.first_difference is not None:
        grid.add_row("first difference", f"event_id {r.first_difference}")
    if r.schedule_diverged_at is not None:
        grid.add_row("schedule", f"diverges at event_id {r.schedule_diverged_at}: later steps run in another order")
    if r.shadow_ready:
        grid.add_row("left over", f"{r.shadow_ready} input(s) still waiting in the shadow at the journal's end")
    grid.add_row("inputs refused", str(len(r.refused)) if r.refused else "none")
    grid.add_row("result", "the shadow reproduces the journal" if r.ok else "DIFFERS from the journal")
    if proposal is not None:
        grid.add_row("recorded", f"ShadowRunCompleted for proposal {proposal} (`aos eras {world}` lists it)")
    out: list[Any] = [grid]
    if r.costs:
        costs = _table("capability", "journal effects", "journal cost", "shadow effects", "shadow cost",
                       right=("journal effects", "journal cost", "shadow effects", "shadow cost"))
        for cap, c in sorted(r.costs.items()):
            costs.add_row(cap, str(c.journal_effects), str(c.journal_cost), str(c.shadow_effects),
                          str(c.shadow_cost))
        out += ["", costs]
    if r.diffs and limit:
        steps = _table("event_id", "reducer", "key", "differs", "journal", "shadow", right=("event_id",))
        for d in r.diffs[:limit]:
            steps.add_row(str(d.event_id), d.reducer, _show(d.key), ", ".join(d.what) + (" (carried)" if d.carried
                                                                                         else ""),
                          _shadow_side(d.journal, d.what), _shadow_side(d.shadow, d.what))
        out += ["", steps]
        if r.differing > len(r.diffs[:limit]):
            out.append(f"… {r.differing - len(r.diffs[:limit])} more differing step(s) (--limit)")
    if r.refused:
        refused = _table("seq", "input", "why the shadow refused it", right=("seq",))
        for x in r.refused[:limit]:
            refused.add_row(str(x.seq), x.what, x.reason)
        out += ["", refused]
    _out(*out)
    if not r.ok:
        sys.exit(1)


# ------------------------------------------------------------------ eras (docs/upgrades.md)
def _load_migrations(spec: str | None) -> dict[str, Any]:
    """``module:attribute`` -> the {reducer: migrate function} map it names."""
    if spec is None:
        return {}
    obj = _load_object(spec, "--migrate")
    if not isinstance(obj, dict) or not all(isinstance(k, str) and callable(v) for k, v in obj.items()):
        raise click.ClickException(f"--migrate: {spec} must be a dict of reducer name -> function, "
                                   f"got {type(obj).__name__}")
    return obj


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--manifest", "manifest_spec", required=True, metavar="MODULE:ATTR", help="The proposed manifest.")
@click.option("--old", "old_spec", required=True, metavar="MODULE:ATTR", help="The world's current manifest.")
@click.option("--earlier", "earlier_specs", multiple=True, metavar="MODULE:ATTR",
              help="The manifest of an earlier era whose code pinned cells still run (repeatable).")
def propose(world: str, manifest_spec: str, old_spec: str, earlier_specs: tuple[str, ...]) -> None:
    """Journal a proposal to move WORLD to the manifest --manifest; print its id and changes."""
    from aos.world import World

    p = _world_dir(world)
    new, old = _load_manifest(manifest_spec), _load_manifest(old_spec)
    earlier = [_load_manifest(s) for s in earlier_specs]
    with World.open(p, old, create=False, effects="manual", earlier=earlier) as w:
        pid = w.propose(new)
    from aos.eras import changes

    click.echo(f"proposal {pid}: era {old.era.hex()[:12]} -> {new.era.hex()[:12]} ({new.name})")
    for _kind, text in changes(old.describe(), new.describe()):
        click.echo(f"  {text}")
    click.echo(f"next: aos approve {world} {pid}")


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.argument("proposal", type=int)
@click.option("--by", default="", help="Who approves.")
@click.option("--note", default="", help="A note kept with the approval.")
def approve(world: str, proposal: int, by: str, note: str) -> None:
    """Journal an approval of PROPOSAL in WORLD (closed; no manifest needed)."""
    from aos.eras import approve_closed

    approve_closed(_world_dir(world), proposal, by, note)
    click.echo(f"proposal {proposal} approved" + (f" by {by}" if by else ""))


@cli.command(name="apply")
@click.argument("world", type=click.Path(file_okay=False))
@click.argument("proposal", type=int)
@click.option("--manifest", "manifest_spec", required=True, metavar="MODULE:ATTR", help="The proposed manifest.")
@click.option("--old", "old_spec", required=True, metavar="MODULE:ATTR", help="The world's current manifest.")
@click.option("--migrate", "migrate_spec", default=None, metavar="MODULE:ATTR",
              help="A dict {reducer: fn(old_state) -> new_state}.")
@click.option("--adopt", multiple=True, metavar="REDUCER",
              help="A reducer whose cells move to the new code with their state as it is (not pinned).")
@click.option("--drop", multiple=True, metavar="REDUCER", help="A removed reducer whose cells are dropped.")
@click.option("--retire", multiple=True, metavar="REDUCER",
              help="A removed reducer whose cells are kept read-only.")
@click.option("--earlier", "earlier_specs", multiple=True, metavar="MODULE:ATTR",
              help="The manifest of an earlier era whose code pinned cells still run (repeatable).")
def apply_cmd(world: str, proposal: int, manifest_spec: str, old_spec: str, migrate_spec: str | None,
              adopt: tuple[str, ...], drop: tuple[str, ...], retire: tuple[str, ...],
              earlier_specs: tuple[str, ...]) -> None:
    """Apply the approved PROPOSAL: WORLD moves to the new era (reopen it with --manifest)."""
    from aos.world import World

    p = _world_dir(world)
    new, old = _load_manifest(manifest_spec), _load_manifest(old_spec)
    migrate = _load_migrations(migrate_spec)
    earlier = [_load_manifest(s) for s in earlier_specs]
    w = World.open(p, old, create=False, effects="manual", earlier=earlier)
    try:
        r = w.apply(proposal, new, migrate=migrate, adopt=adopt, drop=drop, retire=retire)
    finally:
        w.close()
    click.echo(f"applied proposal {proposal} after event_id {r.event_id}: era {r.ends[:12]} -> {r.starts[:12]}, "
               f"{_n(r.migrated, 'cell')} migrated, boundary snapshot snapshots/{r.snapshot}")
    for name in r.pinned:
        click.echo(f"  {name}: live cells keep the code of era {r.ends[:12]} (pinned; open the world with "
                   "earlier=[that manifest], or migrate or adopt them in a later upgrade)")
    for name in r.adopted:
        click.echo(f"  {name}: cells run the new code with their state as it is")
    for name in r.retired:
        click.echo(f"  {name}: cells kept read-only")
    for name in r.dropped:
        click.echo(f"  {name}: cells dropped")


def _proposal_status(pr: Any, chain: list[Any]) -> str:
    if pr.applied:
        if pr.proposal not in {e.proposal for e in chain}:  # its EraApplied lies in an apply cut short
            return "apply interrupted (opening the world rolls it back)"
        return "applied"
    return "open" if pr.base == chain[-1].era else "stale (made for an earlier era)"


def _world_proposals(p: Path, view: dict[str, Any], chain: list[Any]) -> list[Any]:
    """Every proposal of the world's journal (that of an interrupted apply's segments included)."""
    from aos.eras import _segment_era, proposals

    eras = [e.era for e in chain]
    if "interrupted_apply" in view:
        eras.append(_segment_era(p / "journal" / view["interrupted_apply"]))
    return list(proposals(p / "journal", eras).values())


def _shadow_runs(pr: Any) -> str:
    """A proposal's journaled shadow runs, one phrase each."""
    runs = []
    for s in pr.shadow_runs:
        costs = ", ".join(f"{cap} {n}" for cap, n in s.costs)
        runs.append(f"since event_id {s.since}: {s.compared} compared, {s.differing} differing"
                    + (f", predicted costs {costs}" if costs else ""))
    return "; ".join(runs) or "none"


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
def eras(world: str) -> None:
    """The chain of eras of WORLD, and every proposal: its shadow runs, approvals, and whether it was applied."""
    from aos.eras import era_chain, reconcile
    from aos.world import load_meta

    p = _world_dir(world)
    view = reconcile(p, load_meta(p), write=False)
    chain = era_chain(view)
    table = _table("#", "era", "manifest", "from", "proposal", "boundary snapshot")
    for i, e in enumerate(chain, 1):
        table.add_row(str(i), e.era.hex()[:12], e.name, "creation" if e.proposal is None else
                      f"after event_id {e.event_id}", "" if e.proposal is None else str(e.proposal),
                      e.snapshot or "")
    found = _world_proposals(p, view, chain)
    out: list[Any] = [table]
    if found:
        props = _table("proposal", "base", "era", "status", "approvals", "shadow runs", "changes")
        for pr in found:
            props.add_row(str(pr.proposal), pr.base.hex()[:12], pr.era.hex()[:12],
                          _proposal_status(pr, chain),
                          ", ".join(by or "?" for by, _n in pr.approvals) or "none", _shadow_runs(pr),
                          "; ".join(text for _k, text in pr.changes))
        out += ["", props]
    _out(*out)


# ------------------------------------------------------------------ fleets
@cli.group()
def fleet() -> None:
    """Read a fleet (a keyspace split into lanes, each a world; docs/fleet.md)."""


def _fleet_meta(path: str) -> dict[str, Any]:
    from aos.fleet import read_fleet_meta

    return read_fleet_meta(path)


def _fleet_manifest(meta: dict[str, Any], spec: str | None) -> Any:
    """The manifest given with --manifest, else the one the fleet's metadata names."""
    return _load_manifest(spec if spec is not None else meta["manifest"])


fleet_manifest_option = click.option(
    "--manifest", "manifest_spec", default=None, metavar="MODULE:ATTR",
    help="The fleet's manifest (default: the reference stored in fleet.cbor, imported from the current directory).")


@fleet.command(name="info")
@click.argument("path", type=click.Path(file_okay=False))
def fleet_info(path: str) -> None:
    """Lanes, home lane, manifest, era, budget grants of the fleet at PATH; records and last event_id per lane.

    Read from the files alone: no lane is opened.
    """
    from aos import canonical
    from aos.control_plane import GRANTS, read_grants
    from aos.fleet import lane_path
    from aos.journal import JournalReader
    from aos.snapshot import list_snapshots

    meta = _fleet_meta(path)
    grid = _fields()
    grid.add_row("fleet", str(Path(path).resolve()))
    grid.add_row("lanes", f"{meta['lanes']} (home lane {meta['home']})")
    grid.add_row("manifest", f"{meta['manifest_name']} ({meta['manifest']})")
    grid.add_row("era", meta["era"])
    grid.add_row("backend", meta["backend"])
    budgets = {c["name"]: c["budget"] for c in meta["description"].get("capabilities", [])}
    grants, _end = read_grants(Path(path) / GRANTS)
    for cap, budget in budgets.items():
        given = sum(g.amount for g in grants if g.cap == cap)
        grid.add_row(f"budget {cap}", f"{budget} global" + (f"; {given} granted to lanes in "
                                                             f"{_n(sum(1 for g in grants if g.cap == cap), 'grant')}"
                                                             if meta["lanes"] > 1 else ""))
    table = _table("lane", "records", "last event_id", "snapshot", "directory", right=("records", "last event_id"))
    for i in range(meta["lanes"]):
        lp = lane_path(path, i)
        if not (lp / "journal").is_dir():
            table.add_row(str(i), "-", "-", "-", f"{lp} (MISSING)")
            continue
        records = last = 0
        for _entry, rec in JournalReader(lp / "journal").records():
            records += 1
            last = max(last, getattr(rec, "event_id", 0) or 0)
        snaps = list_snapshots(lp / "snapshots")
        snap = "none"
        if snaps:
            doc = canonical.decode(snaps[-1].read_bytes(), str(snaps[-1]))
            snap = f"event_id {doc['event_id']}, hash {doc['snapshot_hash'].hex()[:16]}…"
        table.add_row(str(i), str(records), str(last), snap, str(lp))
    _out(grid, "", table)


@fleet.command(name="state")
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("reducer")
@click.argument("key", required=False)
@fleet_manifest_option
def fleet_state(path: str, reducer: str, key: str | None, manifest_spec: str | None) -> None:
    """The state of cell (REDUCER, KEY) of the fleet at PATH as JSON (null: no such cell).

    Replays the journal of the lane holding the cell (read-only; the fleet may be open).
    """
    from aos.admission import cell_key
    from aos.fleet import lane_path
    from aos.lane import Lane
    from aos.render import json_text
    from aos.replay import replay

    meta = _fleet_meta(path)
    m = _fleet_manifest(meta, manifest_spec)
    cell = cell_key(m.get(reducer), _parse_key(key), f"aos fleet state {reducer}")
    lane = Lane(0, meta["lanes"], meta["home"]).of(cell)
    r = replay(lane_path(path, lane), m)
    r.verify()
    click.echo(json_text(r.state(reducer, cell)))


@fleet.command(name="replay")
@click.argument("path", type=click.Path(file_okay=False))
@fleet_manifest_option
def fleet_replay(path: str, manifest_spec: str | None) -> None:
    """Replay every lane of the fleet at PATH from its journal, verifying every record; print the hashes."""
    from aos.fleet import replay_fleet

    meta = _fleet_meta(path)
    r = replay_fleet(path, _fleet_manifest(meta, manifest_spec))
    for i, h in enumerate(r.lanes):
        click.echo(f"lane {i:<4} verified: snapshot hash {h}")
    click.echo(f"fleet      verified {_n(len(r.lanes), 'lane')}: fleet hash {r.hash}")


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--no-verify", is_flag=True, help="Do not check the copy with fsck before putting it in place.")
def backup(world: str, dest: str, no_verify: bool) -> None:
    """Copy the closed WORLD into the new directory DEST, consistent up to its durable watermark.

    DEST appears only once the copy is whole, fsync'd and (unless --no-verify)
    checked. A world open in a process is backed up there, with
    World.backup(DEST), at a quiet point of its run.
    """
    from aos.backup import backup_closed

    try:
        info = backup_closed(world, dest, verify=not no_verify)
    except AosError as exc:
        raise click.ClickException(str(exc)) from None
    grid = _fields()
    grid.add_row("backup", f"{world} -> {info.path}")
    grid.add_row("journal", f"{_n(info.records, 'record')} in {_n(info.segments, 'segment')}")
    grid.add_row("snapshots", ", ".join(s[:20] + "-…" for s in info.snapshots) or "none")
    grid.add_row("copied", f"{info.bytes:,} bytes")
    grid.add_row("check", "verified: aos fsck finds it clean" if info.verified else "not run (--no-verify)")
    _out(grid)


def main() -> None:
    try:
        rc = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (AosError, OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


# ------------------------------------------------------------------ effects
def _unix_ms(ms: int | None) -> str:
    """Unix milliseconds as UTC time for people (``-`` for none)."""
    import datetime

    if ms is None:
        return "-"
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _effect_state_word(s: Any) -> str:
    if s.parked:
        return "marked for retry" if s.retry else "parked"
    return "retrying" if s.attempts else "queued"


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--retry", "retry", metavar="INTENT_HASH",
              help="Mark this parked (dead-lettered) intent for retry at the next open (hex, or a unique prefix); "
                   "the world must be closed.")
@click.option("--json", "as_json", is_flag=True, help="Print the pending intents as JSON.")
def effects(world: str, retry: str | None, as_json: bool) -> None:
    """Pending effect intents of WORLD and their dispatch: attempts, next attempt, timer deadline, dead letters.

    Reads the journal and the world's effect side state (effects.cbor), so it
    works on a closed world; on an open one it shows what is durable.
    """
    from aos import canonical
    from aos.effect_state import EffectState, effect_status, match_intent
    from aos.errors import WorldLockedError
    from aos.files import lock_world
    from aos.journal import JournalReader
    from aos.outbox import QueuedEffect
    from aos.records import EffectQueued, ReceiptAppended
    from aos.retention import read_compaction
    from aos.snapshot import check_snapshot_file

    p = _world_dir(world)
    try:
        lock_fd: int | None = lock_world(p)
    except WorldLockedError:
        lock_fd = None
    try:
        if retry is not None and lock_fd is None:
            raise click.ClickException(f"world {p} is open (world.lock is held): close it first, or call "
                                       "World.retry_effect(intent_hash) on the open world")
        try:
            state = EffectState.load(p)
            queued: dict[bytes, tuple[bytes, str, str, str]] = {}
            base = read_compaction(p)
            if base is not None:  # a compacted journal begins at its base snapshot: the intents pending there
                doc = canonical.decode(check_snapshot_file(p / "snapshots" / base.snapshot), base.snapshot)
                for wire in doc["outbox"]["queued"]:
                    e = QueuedEffect(*wire)
                    queued[e.intent_hash] = (e.intent_hash, e.kind, e.cap, e.idempotency_key)
            for _entry, rec in JournalReader(p / "journal").records():  # (from the base when compacted)
                if isinstance(rec, EffectQueued):
                    queued[rec.intent_hash] = (rec.intent_hash, rec.effect, rec.cap, rec.idempotency_key)
                elif isinstance(rec, ReceiptAppended):
                    queued.pop(rec.intent_hash, None)
            if retry is not None:
                h = match_intent(queued, retry, parked=state.parked())
                state.mark_retry(h)
                click.echo(f"intent {h.hex()} is marked for retry at the next open (attempts counted afresh)")
                return
        except AosError as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    status = effect_status(queued.values(), state)
    if as_json:
        click.echo(json.dumps({"world_open": lock_fd is None, "pending": [
            {"intent_hash": s.intent_hash.hex(), "kind": s.kind, "cap": s.cap, "idempotency_key": s.idempotency_key,
             "attempts": s.attempts, "next_attempt_ms": s.next_attempt_ms, "deadline_ms": s.deadline_ms,
             "state": _effect_state_word(s), "last_error": s.last_error, "last_message": s.last_message}
            for s in status]}, indent=2))
        return
    if lock_fd is None:
        click.echo("(the world is open: what is durable so far)")
    if not status:
        click.echo("no pending effects")
        return
    table = _table("intent", "kind", "cap", "idempotency key", "attempts", "next attempt", "timer deadline",
                   "state", "last error", right=("attempts",))
    for s in status:
        error = "-" if s.last_error is None else f"{s.last_error}: {s.last_message}"
        table.add_row(s.intent_hash.hex()[:16], s.kind, s.cap, s.idempotency_key, str(s.attempts),
                      _unix_ms(s.next_attempt_ms), _unix_ms(s.deadline_ms), _effect_state_word(s), error)
    parked = sum(1 for s in status if s.parked)
    _out(table)
    click.echo(f"\n{len(status)} pending: {parked} dead-lettered (parked)"
               + (f"; retry one with: aos effects {world} --retry INTENT_HASH" if parked else ""))


@cli.command()
@click.argument("world", type=click.Path(file_okay=False))
@click.option("--keep", type=click.IntRange(min=1), default=None,
              help="Keep the newest N snapshots (besides era boundary snapshots) and compact to the oldest of them; "
                   "default: every snapshot on disk is kept.")
def compact(world: str, keep: int | None) -> None:
    """Remove WORLD's journal segments wholly before the oldest snapshot kept (the world must be closed).

    Replay, fsck and --at then start from that snapshot and say so; what was
    removed is recorded in compacted.cbor.
    """
    from aos.retention import compact as compact_world

    r = compact_world(_world_dir(world), keep)
    base = r.base
    if base is None:
        click.echo("nothing to compact: the world has no snapshot")
        return
    click.echo(f"compacted to snapshots/{base.snapshot}: record {base.index:,}, event_id {base.event_id}")
    click.echo(f"removed {_n(len(r.segments_removed), 'segment')} ({r.bytes_removed:,} bytes) and "
               f"{_n(len(r.snapshots_removed), 'older snapshot')}; in all {_n(base.segments, 'segment')}, "
               f"{base.bytes:,} bytes removed since the world began")
