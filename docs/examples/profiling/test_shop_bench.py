# test_shop_bench.py
"""Benchmarks of the sample shop manifest, with aos's pytest fixtures (docs/profiling.md)."""

import pytest
from shop_manifest import manifest, orders

REDUCERS = {"example/Order@1", "example/Stock@1", "example/Ledger@1"}


@pytest.mark.benchmark(group="shop")
def test_shop_run(aos_bench):
    result = aos_bench(manifest, orders(2_000), workers=0, rounds=5)
    assert result.steps == 3 * 2_000
    assert set(result.reducers) == REDUCERS


@pytest.mark.benchmark(group="shop-workers")
@pytest.mark.parametrize("workers", [0, 2])
def test_shop_workers(aos_bench, workers):
    # the manifest by reference and the events from a callable, as a benchmark module may prefer
    result = aos_bench("shop_manifest:manifest", orders, workers=workers, durability="none")
    assert result.steps == 3 * 2_000


def test_shop_totals(aos_world):
    world = aos_world(manifest, workers=0)
    for schema, value in orders(30):
        world.submit(schema, value)
    world.run()
    assert world.state("example/Ledger@1")["orders"] == 30
