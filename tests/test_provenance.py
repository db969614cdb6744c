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
