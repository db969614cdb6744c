"""The provenance index and graphs, checked against what the demo's reducers route and emit."""

from __future__ import annotations

import pytest

from aos import canonical
from aos.demo import run_demo
from aos.provenance import Provenance, UnknownSubjectError

KEY_FIELD = {"shop/Order@1": "order_id", "shop/Inventory@1": "sku", "shop/Ledger@1": None}


@pytest.fixture(scope="module")
def prov(tmp_path_factory: pytest.TempPathFactory) -> Provenance:
    path = tmp_path_factory.mktemp("prov") / "shop.world"
    run_demo(path, orders=80)
    return Provenance(path)


def test_every_step_consumed_an_event_routed_to_its_cell(prov: Provenance) -> None:
    """Admission numbers counted from the records give each step an input that names its cell."""
    kinds = set()
    for step in prov.steps.values():
        event = prov.events[step.input]
        kinds.add(event.origin)
        if event.origin in ("submitted", "emitted"):
            assert event.value is not None
            field = KEY_FIELD[step.reducer]
            assert field is None or canonical.decode_trusted(event.value)[field] == step.key, (step, event)
        else:  # a receipt goes back to the cell whose step intended the effect
            assert event.intent is not None
            origin = prov.steps[prov.intents[event.intent].steps[0]]
            assert (origin.reducer, origin.key) == (step.reducer, step.key)
        if event.origin == "emitted":
            assert event.step is not None and event.step < step.event_id
    assert kinds == {"submitted", "emitted", "receipt"}


def test_graphs_are_acyclic_and_end_in_submitted_events(prov: Provenance) -> None:
    for intent in list(prov.intents)[:20]:
        g = prov.why_effect(intent, depth=2)
        leaves = [n for n in g.nodes if not g.causes(n)]
        assert leaves and all(g.nodes[n].text.endswith("(submitted)") for n in leaves)
        layer = g.layers()
        assert all(layer[e.dst] > layer[e.src] for e in g.edges)


def test_layout_routes_long_edges_around_the_nodes(prov: Provenance) -> None:
    (reducer, key), _writes = max(((c, w) for c, w in prov.writes.items() if c[0] == "shop/Order@1"),
                                  key=lambda cw: len(cw[1]))
    g = prov.why_cell(reducer, key, depth=10)  # the order's earlier writes share their causes: long edges
    nodes, routes = g.layout(node_width=3.2, gap_width=0.8)
    assert set(nodes) == set(g.nodes) and len(routes) == len(g.edges)
    for edge, points in routes:
        assert points[0] == nodes[edge.src] and points[-1] == nodes[edge.dst]
        assert [y for _x, y in points] == [points[0][1] - i for i in range(len(points))]  # one layer a step
        for x, y in points[1:-1]:  # a bend never lies inside a node's box
            assert all(abs(x - nx) >= 1.6 + 0.4 - 1e-9 for nx, ny in nodes.values() if ny == y)
    assert len(routes) > sum(len(points) == 2 for _e, points in routes)  # some edges did span layers


def test_unknown_subjects(prov: Provenance) -> None:
    with pytest.raises(UnknownSubjectError, match="no cell"):
        prov.why_cell("shop/Order@1", "o-424242")
    with pytest.raises(UnknownSubjectError, match="no effect intent"):
        prov.why_effect("00" * 32)
    with pytest.raises(ValueError, match="ends at event_id"):
        prov.why_cell("shop/Ledger@1", None, at=prov.last_event_id + 1)


# ------------------------------------------------------------------ across eras
def _upgraded(tmp_path: object, migrate: object) -> tuple[object, object]:
    import sys
    from pathlib import Path

    import aos

    sys.path.insert(0, str(Path(__file__).parent))
    from eras_world import fill, v1_manifest, v2_manifest

    p = Path(str(tmp_path)) / "w"
    fill(p)
    r = aos.upgrade(p, v2_manifest(), old=v1_manifest(), migrate={"test/Order@1": migrate},
                    drop=["test/Audit@1"])
    return p, r


def _migrated(p: object) -> dict[object, object]:
    from pathlib import Path

    from aos.journal import JournalReader
    from aos.records import CellMigrated

    return {(rec.reducer, rec.key): rec for _e, rec in JournalReader(Path(str(p)) / "journal").records()
            if isinstance(rec, CellMigrated)}


def test_why_a_migrated_cell_names_the_migration_as_its_last_writer(tmp_path: object) -> None:
    from eras_world import to_v2

    p, r = _upgraded(tmp_path, to_v2)
    cm = _migrated(p)[("test/Order@1", "o0")]
    prov = Provenance(p)
    g = prov.why_cell("test/Order@1", "o0")
    [written] = g.causes("cell")
    node = g.nodes[written.dst]
    assert written.label == "written by" and node.kind == "migration"
    assert cm.state_hash.hex()[:12] in node.text and cm.state_hash.hex()[:12] in g.nodes["cell"].text
    assert f"era boundary after event_id {r.event_id}" in node.text and f"proposal {r.proposal}" in node.text
    [before] = g.causes(written.dst)
    last = max(prov.writes[("test/Order@1", "o0")])
    assert (before.label, before.dst) == ("migrated from", f"step:{last}") and last <= r.event_id
    # as of the boundary's ticket the cell holds what its last step wrote (a replay until it stops before the apply)
    g = prov.why_cell("test/Order@1", "o0", at=r.event_id)
    assert g.causes("cell")[0].dst == f"step:{last}"


def test_why_a_cell_written_after_a_migration_shows_it_as_an_earlier_write(tmp_path: object) -> None:
    from eras_world import after, to_v2

    p, r = _upgraded(tmp_path, to_v2)
    after(p)
    prov = Provenance(p)
    after_boundary = [eid for eid in prov.writes[("test/Order@1", "o0")] if eid > r.event_id]
    g = prov.why_cell("test/Order@1", "o0", depth=len(after_boundary))
    [written] = g.causes("cell")
    assert written.dst == f"step:{after_boundary[-1]}"
    earlier = [e.dst for e in g.causes(written.dst) if e.label == "earlier write"]  # newest first
    assert earlier == [f"step:{eid}" for eid in reversed(after_boundary[:-1])] + [earlier[-1]]
    assert g.nodes[earlier[-1]].kind == "migration"


def test_why_a_cell_a_migration_deleted(tmp_path: object) -> None:
    p, r = _upgraded(tmp_path, lambda old: None)
    g = Provenance(p).why_cell("test/Order@1", "o1")
    assert g.nodes["cell"].text.startswith("deleted as of event_id") and "era boundary" in g.nodes["cell"].text
    assert "deleted the cell" in g.nodes[g.causes("cell")[0].dst].text


def test_cli_why_shows_the_migration(tmp_path: object) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from eras_world import to_v2

    p, r = _upgraded(tmp_path, to_v2)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-m", "aos", "why", str(p), "--cell", "test/Order@1", "o0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].startswith("└── written by migration  test/Order@1 'o0' wrote state")
    assert f"era boundary after event_id {r.event_id}" in lines[1] and "migrated from step" in lines[2]
