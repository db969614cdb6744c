"""Provenance: why an effect was intended, or why a cell holds its state.

Everything is read from the journal records alone; no reducer runs. The
journal says, for every step, which cell it ran for and which admitted input
it consumed (``StepScheduled.input``), and, when it committed, the events it
emitted and the effects it intended (``StepCommitted``). Admission numbers
(``seq``) are given in journal order: an external event's and a receipt's are
in their records; the events a step emitted take the next numbers, in emit
order, when its ``StepCommitted`` is written, and a denied intent's
``sys/EffectDenied@1`` event takes the next one at its ``PolicyDecision``.
Counting them while reading gives every consumed input its origin.

The graph's edges point from what is explained to its cause:

* cell state --written by--> the last step that committed a write to it;
* step --consumed--> the event it took as input;
* step --earlier write--> older writes of the subject cell (``depth`` of them);
* event --emitted by--> the step that emitted it (events submitted from
  outside have no cause: they are the leaves);
* receipt --answers--> the effect intent it settles;
* denial --denies--> the effect intent that was refused;
* effect --intended by--> the step whose ``StepCommitted`` carries the intent;
* cell state --written by--> the migration at an era boundary, when a
  ``CellMigrated`` wrote the cell after its last step (docs/upgrades.md);
  migration --migrated from--> the last step that wrote the cell before the
  boundary (the state the migration function was given).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from aos import canonical
from aos.errors import AosError
from aos.journal import JournalReader
from aos.records import (
    AdmissionNumbers,
    CellMigrated,
    EffectQueued,
    EraApplied,
    EventAdmitted,
    InvariantViolated,
    PolicyDecision,
    ReceiptAppended,
    StepCommitted,
    StepFailed,
    StepScheduled,
)
from aos.render import show

__all__ = ["Node", "Edge", "WhyGraph", "Provenance", "UnknownSubjectError"]

RECEIPT = "sys/Receipt@1"
DENIED = "sys/EffectDenied@1"


class UnknownSubjectError(AosError, LookupError):
    """The effect or cell asked about is not in the journal."""


class _Folded:
    """A nested container shown by its size only."""

    def __init__(self, n: int, kind: str) -> None:
        self.text = f"[{n} items]" if kind == "list" else f"{{{n} fields}}"

    def __repr__(self) -> str:
        return self.text


def _brief(value: Any, limit: int = 72) -> str:
    """A value on one short line: hashes shortened, nested containers folded when it is too long."""
    def plain(v: Any, depth: int, fold: bool) -> Any:
        if isinstance(v, bytes):
            return v.hex()[:12] if len(v) == 32 else (v if len(v) <= 16 else v[:16] + b"...")
        if isinstance(v, (dict, list)) and fold and depth > 0:
            return _Folded(len(v), "list" if isinstance(v, list) else "dict")
        if isinstance(v, dict):
            return {k: plain(x, depth + 1, fold) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x, depth + 1, fold) for x in v]
        return v

    text = show(plain(value, 0, False))
    if len(text) > limit:
        text = show(plain(value, 0, True))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(h: bytes | None) -> str:
    return "none" if h is None else h.hex()[:12]


# ------------------------------------------------------------------ the graph
@dataclass(frozen=True, slots=True)
class Node:
    """One node: ``id`` is unique in its graph (``step:12``, ``event:40``, ``effect:<hex>``, ``cell``)."""

    id: str
    kind: str  # "cell", "step", "event", "receipt", "denial", "effect" or "migration"
    title: str  # e.g. "step 12"
    text: str  # what it is, on one line


@dataclass(frozen=True, slots=True)
class Edge:
    """``src`` is explained by ``dst`` (its cause); ``label`` names the relation."""

    src: str
    dst: str
    label: str


@dataclass
class WhyGraph:
    """A provenance DAG: ``root`` is the effect or cell state asked about."""

    root: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    _linked: set[Edge] = field(default_factory=set, repr=False, compare=False)

    def add(self, node: Node) -> bool:
        """Add a node; False when it is already there."""
        if node.id in self.nodes:
            return False
        self.nodes[node.id] = node
        return True

    def link(self, src: str, dst: str, label: str) -> None:
        edge = Edge(src, dst, label)
        if edge not in self._linked:
            self._linked.add(edge)
            self.edges.append(edge)

    def causes(self, node_id: str) -> list[Edge]:
        """The edges out of a node, in the order they were added."""
        return [e for e in self.edges if e.src == node_id]

    def walk(self) -> Iterator[tuple[int, str | None, Node, bool]]:
        """Depth-first from the root: (depth, edge label, node, already shown above)."""
        out: dict[str, list[Edge]] = {n: [] for n in self.nodes}
        for e in self.edges:
            out[e.src].append(e)
        seen: set[str] = set()
        stack: list[tuple[int, str | None, str]] = [(0, None, self.root)]
        while stack:
            depth, label, nid = stack.pop()
            repeated = nid in seen
            seen.add(nid)
            yield depth, label, self.nodes[nid], repeated
            if not repeated:
                stack.extend((depth + 1, e.label, e.dst) for e in reversed(out[nid]))

    def layers(self) -> dict[str, int]:
        """Each node's layer: one below the lowest node that points to it (the root is layer 0)."""
        succs: dict[str, list[str]] = {n: [] for n in self.nodes}
        indegree = dict.fromkeys(self.nodes, 0)
        for e in self.edges:
            succs[e.src].append(e.dst)
            indegree[e.dst] += 1
        layer = dict.fromkeys(self.nodes, 0)
        ready = deque(n for n, d in indegree.items() if d == 0)
        while ready:  # topological order (the graph is acyclic: causes are always earlier)
            n = ready.popleft()
            for d in succs[n]:
                layer[d] = max(layer[d], layer[n] + 1)
                indegree[d] -= 1
                if indegree[d] == 0:
                    ready.append(d)
        return layer

    def layout(self, node_width: float = 3.2, gap_width: float = 0.8, sweeps: int = 4
               ) -> tuple[dict[str, tuple[float, float]], list[tuple[Edge, list[tuple[float, float]]]]]:
        """A layered drawing: node centres, and each edge as a polyline (layers are 1 apart, downwards).

        An edge that spans several layers passes through a narrow gap in each
        layer between (so it crosses no node); the nodes and gaps of each
        layer are ordered by the mean place of their neighbours, sweeping down
        and up a few times to limit crossings.
        """
        layer = self.layers()
        rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
        for nid in self.nodes:  # insertion order: breadth first from the root
            rows[layer[nid]].append(nid)
        ups: dict[str, list[str]] = {n: [] for n in self.nodes}
        downs: dict[str, list[str]] = {n: [] for n in self.nodes}
        routes: list[tuple[Edge, list[str]]] = []
        for k, e in enumerate(self.edges):
            path = [e.src]
            for depth in range(layer[e.src] + 1, layer[e.dst]):
                gap = f"~{k}~{depth}"
                rows[depth].append(gap)
                ups[gap], downs[gap] = [], []
                path.append(gap)
            path.append(e.dst)
            for a, b in zip(path, path[1:], strict=False):
                downs[a].append(b)
                ups[b].append(a)
            routes.append((e, path))
        place = {n: float(i) for row in rows for i, n in enumerate(row)}

        def order(row: list[str], by: dict[str, list[str]]) -> None:
            keyed = [(sum(place[m] for m in by[n]) / len(by[n]) if by[n] else place[n], i, n)
                     for i, n in enumerate(row)]
            row[:] = [n for _b, _i, n in sorted(keyed)]
            place.update((n, float(i)) for i, n in enumerate(row))

        for _ in range(sweeps):
            for row in rows[1:]:
                order(row, ups)
            for row in reversed(rows[:-1]):
                order(row, downs)
        for row in rows[1:]:
            order(row, ups)
        xy: dict[str, tuple[float, float]] = {}
        for depth, row in enumerate(rows):
            widths = [gap_width if n.startswith("~") else node_width for n in row]
            x = -sum(widths) / 2
            for n, w in zip(row, widths, strict=True):
                xy[n] = (x + w / 2, -float(depth))
                x += w
        nodes = {n: xy[n] for n in self.nodes}
        return nodes, [(e, [xy[n] for n in path]) for e, path in routes]

    # ------------------------------------------------------------ output
    def to_dot(self) -> str:
        """The graph as Graphviz DOT text (edges point from what is explained to its cause)."""
        def q(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

        lines = ["digraph why {", "  rankdir=TB;",
                 '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
                 '  edge [fontname="Helvetica", fontsize=9];']
        for node in self.nodes.values():
            lines.append(f"  {q(node.id)} [label={q(node.title + chr(10) + node.text)}, "
                         f"fillcolor={q(COLOURS[node.kind])}];")
        for e in self.edges:
            lines.append(f"  {q(e.src)} -> {q(e.dst)} [label={q(e.label)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def write_png(self, path: str | os.PathLike[str]) -> None:
        """Draw the graph with matplotlib (no Graphviz needed) in the layered layout of :meth:`layers`."""
        import textwrap

        try:
            from matplotlib.figure import Figure
            from matplotlib.patches import FancyBboxPatch
        except ImportError:
            raise ImportError("--png needs matplotlib: pip install 'aos-kernel[graph]'") from None
        pos, routes = self.layout()
        xs = [x for x, _y in pos.values()] + [x for _e, pts in routes for x, _y in pts]
        depth = -min(y for _x, y in pos.values())
        row_h, half_w, half_h = 1.6, 1.45, 0.42
        span = max(xs) - min(xs) + 3.4
        fig = Figure(figsize=(min(max(span * 1.05, 6.0), 90.0), min(max(row_h * (depth + 1), 3.0), 160.0)))
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_axis_off()
        for e, pts in routes:
            line = [(x, y * row_h) for x, y in pts]
            line[0] = (line[0][0], line[0][1] - half_h)
            line[-1] = (line[-1][0], line[-1][1] + half_h)
            ax.plot([x for x, _y in line[:-1]], [y for _x, y in line[:-1]], color="#555555", lw=0.8)
            ax.annotate("", xy=line[-1], xytext=line[-2],
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 0, "shrinkB": 0})
            (x1, y1), (x2, y2) = line[0], line[1]
            ax.text(x1 + (x2 - x1) * 0.35, y1 + (y2 - y1) * 0.35, e.label, fontsize=6, color="#333333",
                    ha="center", va="center", bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})
        for nid, (x, y) in pos.items():
            node, y = self.nodes[nid], y * row_h
            ax.add_patch(FancyBboxPatch((x - half_w, y - half_h), 2 * half_w, 2 * half_h,
                                        boxstyle="round,pad=0.02", fc=COLOURS[node.kind], ec="#333333", lw=0.8))
            body = "\n".join(textwrap.wrap(node.text, 44, max_lines=2, placeholder="..."))
            ax.text(x, y + 0.17, node.title, fontsize=7, weight="bold", ha="center", va="center")
            ax.text(x, y - 0.12, body, fontsize=5.5, ha="center", va="center")
        ax.set_xlim(min(xs) - 1.7, max(xs) + 1.7)
        ax.set_ylim(-depth * row_h - 0.7, 0.7)
        fig.savefig(path, format="png", dpi=110)


COLOURS = {"cell": "#f6d55c", "step": "#9ecae1", "event": "#c7e9c0", "receipt": "#fdd0a2",
           "denial": "#fcbba1", "effect": "#dadaeb", "migration": "#d9d9d9"}


# ------------------------------------------------------------------ the index
@dataclass(slots=True)
class _Step:
    event_id: int
    reducer: str
    key: Any
    input: int
    outcome: str = "pending"  # committed, failed, violated; pending when the journal ends before its outcome
    state_hash: bytes | None = None
    error: str = ""


@dataclass(slots=True)
class _Event:
    seq: int
    schema: str
    value: bytes | None  # canonical CBOR (None for receipts and denials, described by their intent)
    origin: str  # "submitted", "emitted", "receipt" or "denied"
    step: int | None = None  # the emitting step
    intent: bytes | None = None  # what a receipt answers or a denial refuses
    status: str = ""
    cost: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Migration:
    """A ``CellMigrated`` at the era boundary after ticket ``event_id`` (``index``: its journal index)."""

    index: int
    event_id: int
    reducer: str
    key: Any
    state_hash: bytes | None
    proposal: int
    ends: bytes
    starts: bytes
    migrated: bool  # the reducer's migration ran (False: the proposal dropped or retired it)


@dataclass(slots=True)
class _Intent:
    intent_hash: bytes
    kind: str
    cap: str | None
    idempotency_key: str
    cost: int
    params: bytes
    steps: list[int] = field(default_factory=list)
    decisions: list[tuple[bool, str]] = field(default_factory=list)
    queued: bool = False
    receipts: list[int] = field(default_factory=list)


class Provenance:
    """An index of one world's journal that answers *why* questions (see the module docstring)."""

    def __init__(self, world: str | os.PathLike[str]) -> None:
        self.path = Path(world)
        self.steps: dict[int, _Step] = {}
        self.events: dict[int, _Event] = {}
        self.intents: dict[bytes, _Intent] = {}
        self.writes: dict[tuple[str, Any], list[int]] = {}  # committed steps per cell, in ticket order
        self.migrations: dict[tuple[str, Any], list[_Migration]] = {}  # CellMigrated per cell, in journal order
        self._migration_at: dict[int, _Migration] = {}  # by journal index
        self.last_event_id = 0
        self._read()

    def _read(self) -> None:
        numbers = AdmissionNumbers()  # the admission numbers of inputs, in journal order
        boundary: EraApplied | None = None
        for entry, rec in JournalReader(self.path / "journal").records():
            seqs = numbers.take(rec, entry)
            if isinstance(rec, EventAdmitted):
                self.events[rec.seq] = _Event(rec.seq, rec.schema, rec.value, "submitted")
            elif isinstance(rec, StepScheduled):
                self.steps[rec.event_id] = _Step(rec.event_id, rec.reducer, rec.key, rec.input)
                self.last_event_id = rec.event_id
            elif isinstance(rec, StepCommitted):
                step = self.steps[rec.event_id]
                step.outcome, step.state_hash = "committed", rec.state_hash
                self.writes.setdefault((step.reducer, step.key), []).append(rec.event_id)
                for seq, emit in zip(seqs, rec.emits, strict=True):
                    self.events[seq] = _Event(seq, emit.schema, emit.value, "emitted", rec.event_id)
                for i in rec.effects:
                    intent = self.intents.setdefault(i.intent_hash, _Intent(
                        i.intent_hash, i.kind, i.cap, i.idempotency_key, i.cost, i.params))
                    intent.steps.append(rec.event_id)
            elif isinstance(rec, StepFailed):
                self.steps[rec.event_id].outcome = "failed"
                self.steps[rec.event_id].error = f"{rec.error}: {rec.message}"
            elif isinstance(rec, InvariantViolated):
                self.steps[rec.event_id].outcome = "violated"
                self.steps[rec.event_id].error = f"{rec.invariant}: {rec.message}"
            elif isinstance(rec, PolicyDecision):
                self.intents[rec.intent_hash].decisions.append((rec.allowed, rec.reason))
                for seq in seqs:  # a denial: an event delivered to the intending cell
                    self.events[seq] = _Event(seq, DENIED, None, "denied", rec.event_id, rec.intent_hash,
                                              reason=rec.reason)
            elif isinstance(rec, EffectQueued):
                self.intents[rec.intent_hash].queued = True
            elif isinstance(rec, ReceiptAppended):
                self.events[rec.seq] = _Event(rec.seq, RECEIPT, None, "receipt", None, rec.intent_hash, rec.status,
                                              rec.cost)
                self.intents[rec.intent_hash].receipts.append(rec.seq)
            elif isinstance(rec, EraApplied):
                boundary = rec
            elif isinstance(rec, CellMigrated) and boundary is not None:
                m = _Migration(entry.index, boundary.event_id, rec.reducer, rec.key, rec.state_hash,
                               boundary.proposal, boundary.ends, boundary.starts, rec.reducer in boundary.migrated)
                self.migrations.setdefault((rec.reducer, rec.key), []).append(m)
                self._migration_at[entry.index] = m

    # -------------------------------------------------------------- lookups
    def find_intent(self, text: str) -> bytes:
        """The intent hash a full hex hash or a unique prefix (6 digits or more) names."""
        t = text.strip().lower()
        if len(t) < 6 or any(c not in "0123456789abcdef" for c in t):
            raise ValueError(f"{text!r} is not an intent hash (64 hex digits, or a unique prefix of 6 or more)")
        found = [h for h in self.intents if h.hex().startswith(t)]
        if not found:
            raise UnknownSubjectError(f"no effect intent with hash {t} in the journal of {self.path}")
        if len(found) > 1:
            raise UnknownSubjectError(f"intent hash prefix {t} is ambiguous: {len(found)} intents start with it")
        return found[0]

    def _check_at(self, at: int | None) -> int:
        if at is None:
            return self.last_event_id
        if type(at) is not int or at < 0:
            raise ValueError(f"--at must be an event_id >= 0, got {at!r}")
        if at > self.last_event_id:
            raise ValueError(f"the journal of {self.path} ends at event_id {self.last_event_id}, before {at}")
        return at

    # -------------------------------------------------------------- questions
    def why_effect(self, intent: str | bytes, depth: int = 0) -> WhyGraph:
        """Why this effect was intended; ``depth`` earlier writes of the intending cell are shown too."""
        h = intent if isinstance(intent, bytes) else self.find_intent(intent)
        if h not in self.intents:
            raise UnknownSubjectError(f"no effect intent with hash {h.hex()} in the journal of {self.path}")
        g = WhyGraph(f"effect:{h.hex()}")
        self._build(g, [g.root])
        for eid in self.intents[h].steps:
            self._history(g, eid, depth)
        return g

    def why_cell(self, reducer: str, key: Any = None, at: int | None = None, depth: int = 0) -> WhyGraph:
        """Why cell (reducer, key) holds its state as of ticket ``at`` (default: the journal's end).

        The state is the one the latest committed step of the cell up to ``at``
        wrote; ``depth`` earlier writes are shown too, each with its causes.
        """
        until = self._check_at(at)
        writers = self._writers((reducer, key))
        if not writers:
            if not any(s.reducer == reducer for s in self.steps.values()):
                raise UnknownSubjectError(f"no step of reducer {reducer!r} in the journal of {self.path}")
            raise UnknownSubjectError(f"no cell ({reducer}, {key!r}) was written in the journal of {self.path}")
        # a migration after ticket E is part of the state as of E only at the journal's end (no --at): a replay
        # until E stops before the era boundary
        upto = [w for w in writers if w[0][0] < until or (w[0][0] == until and (w[0][1] == 0 or at is None))]
        if not upto:
            raise UnknownSubjectError(f"cell ({reducer}, {key!r}) has no committed write up to event_id {until} "
                                      f"(its first is at event_id {writers[0][0][0]})")
        last = upto[-1][1]
        kind, _, ident = last.partition(":")
        written = self.steps[int(ident)].state_hash if kind == "step" else self._migration_at[int(ident)].state_hash
        state = "deleted" if written is None else f"state {_short(written)}"
        state += f" as of event_id {until}" + (" and the era boundary after it" if upto[-1][0] == (until, 1) else "")
        g = WhyGraph("cell")
        g.add(Node("cell", "cell", f"cell {reducer} {key!r}", state))
        g.link("cell", last, "written by")
        self._build(g, [last])
        self._history(g, last, depth)
        return g

    def _writers(self, cell: tuple[str, Any]) -> list[tuple[tuple[int, int], str]]:
        """Everything that wrote ``cell``, oldest first: ``((event_id, 0), "step:N")`` for a committed step,
        ``((event_id, 1), "migration:INDEX")`` for a migration at the boundary after ticket ``event_id``."""
        out = [((eid, 0), f"step:{eid}") for eid in self.writes.get(cell, ())]
        out += [((m.event_id, 1), f"migration:{m.index}") for m in self.migrations.get(cell, ())]
        out.sort()
        return out

    # -------------------------------------------------------------- building
    def _history(self, g: WhyGraph, writer: int | str, depth: int) -> None:
        """Link ``depth`` earlier writes of the writer's cell to it, newest first, and explain them.

        ``writer``: a step's event_id, or a node id (``step:N``, ``migration:INDEX``).
        """
        if depth <= 0:
            return
        nid = f"step:{writer}" if isinstance(writer, int) else writer
        kind, _, ident = nid.partition(":")
        if kind == "step":
            step = self.steps[int(ident)]
            cell, order = (step.reducer, step.key), (step.event_id, 0)
        else:
            m = self._migration_at[int(ident)]
            cell, order = (m.reducer, m.key), (m.event_id, 1)
        earlier = [w for o, w in self._writers(cell) if o < order][-depth:]
        for w in reversed(earlier):
            g.link(nid, w, "earlier write")
        self._build(g, list(reversed(earlier)))

    def _build(self, g: WhyGraph, todo: list[str]) -> None:
        """Add the nodes named in ``todo`` and, transitively, all their causes."""
        work = deque(todo)
        while work:
            nid = work.popleft()
            kind, _, ident = nid.partition(":")
            if kind == "step":
                node, causes = self._step_node(int(ident))
            elif kind == "event":
                node, causes = self._event_node(int(ident))
            elif kind == "migration":
                node, causes = self._migration_node(int(ident))
            else:
                node, causes = self._effect_node(bytes.fromhex(ident))
            if not g.add(node):
                continue
            for label, dst in causes:
                g.link(nid, dst, label)
                if dst not in g.nodes:
                    work.append(dst)

    def _step_node(self, eid: int) -> tuple[Node, list[tuple[str, str]]]:
        s = self.steps[eid]
        if s.outcome == "committed":
            what = "deleted the cell" if s.state_hash is None else f"wrote state {_short(s.state_hash)}"
        else:
            what = s.outcome + (f" ({s.error})" if s.error else "")
        node = Node(f"step:{eid}", "step", f"step {eid}", f"{s.reducer} {s.key!r} {what}")
        return node, [("consumed", f"event:{s.input}")]

    def _migration_node(self, index: int) -> tuple[Node, list[tuple[str, str]]]:
        m = self._migration_at[index]
        what = "deleted the cell" if m.state_hash is None else f"wrote state {_short(m.state_hash)}"
        text = (f"{m.reducer} {m.key!r} {what} at the era boundary after event_id {m.event_id}: era "
                f"{_short(m.ends)} -> {_short(m.starts)}, proposal {m.proposal}")
        before = [eid for eid in self.writes.get((m.reducer, m.key), ()) if eid <= m.event_id]
        earlier = [x for x in self.migrations.get((m.reducer, m.key), ()) if x.event_id < m.event_id]
        causes: list[tuple[str, str]] = []
        if before and (not earlier or earlier[-1].event_id < before[-1]):
            causes.append(("migrated from", f"step:{before[-1]}"))
        elif earlier:
            causes.append(("migrated from", f"migration:{earlier[-1].index}"))
        return Node(f"migration:{index}", "migration", "migration", text), causes

    def _event_node(self, seq: int) -> tuple[Node, list[tuple[str, str]]]:
        e = self.events[seq]
        nid = f"event:{seq}"
        if e.origin == "receipt":
            assert e.intent is not None
            kind = self.intents[e.intent].kind
            return (Node(nid, "receipt", f"receipt #{seq}", f"{kind} {e.status}, cost {e.cost}"),
                    [("answers", f"effect:{e.intent.hex()}")])
        if e.origin == "denied":
            assert e.intent is not None
            kind = self.intents[e.intent].kind
            return (Node(nid, "denial", f"denial #{seq}", f"{kind}: {e.reason}"),
                    [("denies", f"effect:{e.intent.hex()}")])
        assert e.value is not None
        text = f"{e.schema} {_brief(canonical.decode_trusted(e.value))}"
        if e.origin == "emitted":
            return Node(nid, "event", f"event #{seq}", text), [("emitted by", f"step:{e.step}")]
        return Node(nid, "event", f"event #{seq}", text + " (submitted)"), []

    def _effect_node(self, h: bytes) -> tuple[Node, list[tuple[str, str]]]:
        i = self.intents[h]
        if i.queued:
            fate = "allowed"
        elif i.decisions:
            fate = f"denied: {i.decisions[-1][1]}"
        else:
            fate = "not decided"
        answers = [self.events[r] for r in i.receipts]
        if answers:
            fate += "; receipt " + ", ".join(f"#{r.seq} {r.status}" for r in answers)
        elif i.queued:
            fate += "; awaiting its receipt"
        text = f"{i.kind} {_brief(canonical.decode_trusted(i.params), 40)} cap {i.cap} key {i.idempotency_key!r} {fate}"
        return (Node(f"effect:{h.hex()}", "effect", f"effect {h.hex()[:12]}", text),
                [("intended by", f"step:{eid}") for eid in i.steps])
