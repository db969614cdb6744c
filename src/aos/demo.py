"""The demo world: a shop with orders, inventory and a ledger.

* ``shop/Inventory@1`` (keyed by ``sku``) holds stock and answers
  reservation requests with ``StockReserved`` or ``StockRejected``.
* ``shop/Order@1`` (keyed by ``order_id``) places one reservation per order
  line, closes the order when every line is answered (choosing a courier
  with the step's deterministic ``ctx.rng``) and is deleted when cancelled.
* ``shop/Ledger@1`` (one cell) counts closed orders and revenue.

Effects: a confirmed order stores its invoice with ``blob.put`` and sets a
``timer.set`` to follow up on shipping; their receipts come back to the
order cell as ``sys/Receipt@1`` events. Effects run in the ``inline`` mode,
so the journal depends on the inputs only.

Inputs come from a seeded generator, so every run writes the same journal.

The demo replaces only a world it made itself: right after creating its
world it writes :data:`MARKER` into it, holding the BLAKE3 of the world's
``world.cbor``. A later run deletes the directory only if that marker
matches, the world's manifest is the demo's, and no process has the world
open (its ``world.lock`` is free); anything else is refused with
:class:`NotADemoWorldError` or :class:`~aos.errors.WorldLockedError`.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aos import canonical
from aos.errors import StorageError
from aos.files import lock_world
from aos.manifest import Manifest
from aos.replay import replay
from aos.world import META, World

__all__ = ["manifest", "DemoSummary", "run_demo", "demo_inputs", "remove_demo_world", "NotADemoWorldError", "MARKER",
           "DEFAULT_DIR"]

DEFAULT_DIR = "aos-demo.world"
MARKER = "aos-demo.marker"  # written by the demo into each world it makes

manifest = Manifest("aos/demo-shop@1")
manifest.capability("invoices", effect="blob.put", budget=1_000_000)
manifest.capability("reminders", effect="timer.set", budget=1_000_000)
COURIERS = ["parcelnet", "swiftpost", "cargo-co"]


@manifest.reducer("shop/Inventory@1", key="sku", events=["shop/StockAdded@1", "shop/ReserveStock@1"])
def inventory(ctx: Any, state: Any, event: Any) -> Any:
    state = state or {"on_hand": 0, "reserved": 0, "rejected": 0}
    v = event.value
    if event.schema == "shop/StockAdded@1":
        state["on_hand"] += v["qty"]
    elif state["on_hand"] >= v["qty"]:
        state["on_hand"] -= v["qty"]
        state["reserved"] += v["qty"]
        ctx.emit("shop/StockReserved@1", {"order_id": v["order_id"], "sku": v["sku"], "qty": v["qty"]})
    else:
        state["rejected"] += 1
        ctx.emit("shop/StockRejected@1", {"order_id": v["order_id"], "sku": v["sku"]})
    return state


@manifest.reducer("shop/Order@1", key="order_id",
                  events=["shop/OrderPlaced@1", "shop/StockReserved@1", "shop/StockRejected@1",
                          "shop/OrderCancelled@1"])
def order(ctx: Any, state: Any, event: Any) -> Any:
    v = event.value
    if event.schema == "sys/Receipt@1":
        if state is not None and v["status"] == "ok":
            if v["kind"] == "blob.put":
                state["invoice"] = v["payload"]["hash"]
            else:
                state["status"] = "shipped"
        return state
    if event.schema == "shop/OrderPlaced@1":
        for line in v["lines"]:
            ctx.emit("shop/ReserveStock@1", {"order_id": v["order_id"], "sku": line["sku"], "qty": line["qty"]})
        return {"customer": v["customer"], "lines": len(v["lines"]), "answered": 0, "short": 0,
                "total": sum(line["qty"] * line["price"] for line in v["lines"]), "status": "open"}
    if state is None or event.schema == "shop/OrderCancelled@1":
        return None  # unknown or cancelled order: the cell is deleted
    state["answered"] += 1
    if event.schema == "shop/StockRejected@1":
        state["short"] += 1
    if state["answered"] == state["lines"]:
        state["status"] = "short" if state["short"] else "confirmed"
        state["courier"] = ctx.rng.choice(COURIERS)
        if not state["short"]:
            invoice = f"invoice {ctx.key} {state['customer']} total {state['total']} via {state['courier']}"
            ctx.effect("blob.put", {"data": invoice.encode()}, cost=1)
            ctx.effect("timer.set", {"after_ms": 2}, cost=1)
        ctx.emit("shop/OrderClosed@1", {"order_id": ctx.key, "status": state["status"],
                                        "total": state["total"] if not state["short"] else 0})
    return state


@manifest.reducer("shop/Ledger@1", events=["shop/OrderClosed@1"])
def ledger(ctx: Any, state: Any, event: Any) -> Any:
    state = state or {"confirmed": 0, "short": 0, "revenue": 0}
    state[event.value["status"]] += 1
    state["revenue"] += event.value["total"]
    return state


def demo_inputs(orders: int, skus: int = 200, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """The demo's external events (deterministic for a given seed)."""
    rnd = random.Random(seed)
    events: list[tuple[str, dict[str, Any]]] = []
    for s in range(skus):
        events.append(("shop/StockAdded@1", {"sku": f"sku-{s:04d}", "qty": rnd.randint(5, 60)}))
    for o in range(orders):
        lines = [{"sku": f"sku-{rnd.randrange(skus):04d}", "qty": rnd.randint(1, 3),
                  "price": rnd.randint(100, 5000)} for _ in range(rnd.randint(1, 3))]
        events.append(("shop/OrderPlaced@1", {"order_id": f"o-{o:06d}", "customer": f"c-{rnd.randrange(500)}",
                                               "lines": lines}))
        if o % 97 == 13:
            events.append(("shop/StockAdded@1", {"sku": f"sku-{rnd.randrange(skus):04d}", "qty": 40}))
        if o % 10 == 3:
            events.append(("shop/OrderCancelled@1", {"order_id": f"o-{rnd.randrange(o + 1):06d}"}))
    return events


@dataclass(frozen=True)
class DemoSummary:
    path: Path
    events: int
    steps: int
    failed: int
    cells: int
    snapshot_hash: str
    replay_hash: str
    seconds: float
    replay_seconds: float
    ledger: dict[str, int]
    effects: int
    receipts: int


class NotADemoWorldError(StorageError, FileExistsError):
    """The demo's directory holds something the demo did not make; it is left alone."""


def _marker_text(meta: bytes) -> str:
    return f"made by aos demo; world.cbor blake3 {canonical.digest(meta).hex()}\n"


def _mark(p: Path) -> None:
    """Say that the world at ``p`` is the demo's (bound to this world's metadata)."""
    (p / MARKER).write_text(_marker_text((p / META).read_bytes()))


def _check_demo_world(p: Path) -> None:
    """Raise unless ``p`` holds a world the demo made (its marker matches its metadata, its manifest is the demo's)."""
    if not (p / META).is_file():
        raise NotADemoWorldError(f"{p} exists and is not an aos world; the demo leaves it alone: "
                                 "choose another directory")
    meta = (p / META).read_bytes()
    try:
        name = canonical.decode(meta, str(p / META))["manifest"]["manifest"]
    except (ValueError, KeyError, TypeError):
        name = None
    try:
        marked = (p / MARKER).read_text() == _marker_text(meta)
    except (OSError, UnicodeDecodeError):
        marked = False
    if not marked or name != manifest.name:
        raise NotADemoWorldError(
            f"{p} holds a world that aos demo did not make (manifest {name!r}, "
            f"{'marker does not match' if (p / MARKER).exists() else 'no ' + MARKER}); the demo replaces "
            f"only its own worlds: choose another directory, or remove {p} yourself")


def remove_demo_world(path: str | Path) -> bool:
    """Delete the demo world at ``path`` if the demo made it and no process has it open.

    Returns False if there is nothing to remove (no ``path``, or an empty
    directory); raises :class:`NotADemoWorldError` for anything the demo did
    not make and :class:`~aos.errors.WorldLockedError` for a world that is
    open, deleting nothing.
    """
    p = Path(path)
    if not p.exists() or (p.is_dir() and not any(p.iterdir())):
        return False
    if not p.is_dir():
        raise NotADemoWorldError(f"{p} exists and is not a directory; choose another directory")
    _check_demo_world(p)
    fd = lock_world(p, f"demo world {p} is open in another process (world.lock is held); close it first or "
                       "choose another directory")
    try:
        # Still holding the lock: move the world out of the way in one step, so that no process
        # can open a half-deleted world, then delete it at leisure.
        here = p.resolve()
        doomed = here.with_name(f".{here.name}.removing-{os.getpid()}")
        os.rename(here, doomed)
    finally:
        os.close(fd)
    shutil.rmtree(doomed)
    return True


def run_demo(path: str | Path = DEFAULT_DIR, orders: int = 3000, durability: str = "group",
             batch: int = 500) -> DemoSummary:
    """Run the demo world in ``path`` and verify it.

    An earlier demo world at ``path`` is replaced; anything else there is
    refused (see :func:`remove_demo_world`).
    """
    p = Path(path)
    remove_demo_world(p)
    inputs = demo_inputs(orders)
    t0 = time.perf_counter()
    steps = failed = receipts = 0
    with World.open(p, manifest, durability=durability, effects="inline") as w:
        _mark(p)
        for i in range(0, len(inputs), batch):
            for schema, value in inputs[i:i + batch]:
                w.submit(schema, value)
            r = w.run()
            steps += r.steps
            failed += r.failed
            receipts += r.receipts
        snap = w.snapshot_hash()
        cells = len(w.cells())
        ledger = w.state("shop/Ledger@1")
        effects = w.stats["effects_settled"] + w.stats["effects_outstanding"]
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    replayed = replay(p, manifest).verify()
    return DemoSummary(p, len(inputs), steps, failed, cells, snap, replayed, seconds,
                       time.perf_counter() - t1, ledger, effects, receipts)
