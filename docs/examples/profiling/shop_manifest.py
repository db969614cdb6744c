# shop_manifest.py
"""A sample manifest to profile: orders reserve stock and are charged to one ledger."""

import aos

manifest = aos.Manifest("example/shop@1")


@manifest.reducer("example/Order@1", key="order_id", events=["example/OrderPlaced@1"])
def order(ctx, state, event):
    v = event.value
    ctx.emit("example/StockReserved@1", {"sku": v["sku"], "qty": v["qty"]})
    ctx.emit("example/Charged@1", {"order_id": v["order_id"], "amount": v["qty"] * v["price"]})
    return {"sku": v["sku"], "qty": v["qty"], "status": "placed"}


@manifest.reducer("example/Stock@1", key="sku", events=["example/StockReserved@1"])
def stock(ctx, state, event):
    reserved = (state or {}).get("reserved", 0)
    return {"reserved": reserved + event.value["qty"]}


@manifest.reducer("example/Ledger@1", events=["example/Charged@1"])  # one cell: not keyed
def ledger(ctx, state, event):
    state = state or {"orders": 0, "total": 0}
    return {"orders": state["orders"] + 1, "total": state["total"] + event.value["amount"]}


def orders(n=2_000, skus=50):
    """``n`` orders as (schema, value) pairs: each makes 3 steps (order, stock, ledger)."""
    return [("example/OrderPlaced@1", {"order_id": f"o-{i}", "sku": f"sku-{i % skus}",
                                       "qty": 1 + i % 3, "price": 100 + i % 7})
            for i in range(n)]
