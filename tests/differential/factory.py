"""Turn a workload into an ``aos.Manifest`` and play its script against a world.

The manifest is built afresh from the workload each time (a path that
reopens a world, and every replay, builds its own), so everything a reducer
does must follow from the workload's plain data. Reducers and the invariant
state their code identity (``code_id``) as the repr of the plan they run:
the era changes with the workload and never with anything else.
"""

from __future__ import annotations

from typing import Any

import aos
from aos.errors import ReceiptOverBudgetError
from aos.outbox import QueuedEffect
from differential.workload import CAPS, KEYS, SCHEMAS, Input, Phase, ReducerPlan, Workload

__all__ = ["build_manifest", "reducer_name", "play", "receipt_for", "event_value", "settle", "Tally"]


CAP_OF = {kind: cap for cap, kind in CAPS.items()}
OTHER_CAP = dict(zip(CAPS, reversed(list(CAPS)), strict=True))


def reducer_name(index: int) -> str:
    return f"diff/R{index}@1"


def event_value(i: Input) -> dict[str, int]:
    return {"k": i.k, "n": i.n, "hop": i.hop}


def _params(kind: str, n: int) -> dict[str, Any]:
    if kind == "timer.set":
        return {"after_ms": n}
    if kind == "blob.put":
        return {"data": bytes([n % 256]) * (1 + n % 3)}
    return {"n": n}


def behave(plan: ReducerPlan, ctx: Any, state: Any, event: Any) -> Any:
    """The step of a reducer following ``plan`` (see :class:`~differential.workload.ReducerPlan`)."""
    st = state if state is not None else {"n": 0, "steps": 0, "sys": []}
    v = event.value
    if event.schema.startswith("sys/"):  # a receipt or a denial of one of this cell's intents
        st["sys"].append([event.schema, v.get("status"), v.get("cost"), v.get("reason")])
        return st
    n, hop = v["n"], v["hop"]
    st["n"] += n
    st["steps"] += 1
    r = ctx.rng.randint(0, 9) if plan.rng else 0
    st["r"] = r
    if plan.reads is not None:
        st["seen"] = ctx.budget(plan.reads)
    if hop > 0:
        for s in plan.emits:
            ctx.emit(SCHEMAS[s], {"k": (v["k"] * 3 + n + r + s) % KEYS, "n": (n + r + 1) % 13, "hop": hop - 1})
    for j, kind in enumerate(plan.effects):
        cap = None
        if plan.cap and kind in CAP_OF:
            cap = CAP_OF[kind] if plan.cap == 1 or n % 2 else OTHER_CAP[CAP_OF[kind]]  # the other one: denied
        key = f"same/{kind}/{n % 3}" if plan.same_key else None
        ctx.effect(kind, _params(kind, n + j), cap=cap, idempotency_key=key, cost=(n + r + j) % 4)
    total = st["n"]
    if plan.raise_every and total % plan.raise_every == 1:
        raise ValueError(f"{ctx.reducer} refuses a total of {total}")
    if plan.bad_every and total % plan.bad_every == 2 % plan.bad_every:
        return {"n": total, "bad": {1, 2}}  # a set: outside the value model, so the step fails
    if plan.delete_every and total % plan.delete_every == 3 % plan.delete_every:
        return None  # deletes the cell
    return st


def _reducer(plan: ReducerPlan) -> Any:
    def step(ctx: Any, state: Any, event: Any) -> Any:
        return behave(plan, ctx, state, event)

    return step


def _invariant(every: int, floor: int | None) -> Any:
    def holds(view: Any) -> bool:
        for r, k in view.changed:
            s = view.state(r, k)
            if every and s is not None and s["n"] > 0 and s["n"] % every == 0:
                return False
        return floor is None or view.budget("timers").remaining >= floor

    return holds


def build_manifest(wl: Workload) -> aos.Manifest:
    m = aos.Manifest("diff/world@1")
    for (cap, kind), budget in zip(CAPS.items(), wl.budgets, strict=True):
        m.capability(cap, effect=kind, budget=budget)
    for action, kind, index in wl.rules:
        if index < len(wl.reducers):
            (m.allow if action == "allow" else m.deny)(kind=kind, reducer=reducer_name(index))
    for index, plan in enumerate(wl.reducers):
        m.reducer(reducer_name(index), key="k" if plan.keyed else None, events=[SCHEMAS[s] for s in plan.takes],
                  priority=plan.priority, code_id=repr(plan))(_reducer(plan))
    taken = {s for plan in wl.reducers for s in plan.takes}
    for s, schema in enumerate(SCHEMAS):
        if s not in taken:
            m.schema(schema)  # emitted or submitted, taken by no reducer
    if wl.invariant or wl.invariant_floor is not None:
        m.invariant("diff invariant", _invariant(wl.invariant, wl.invariant_floor),
                    code_id=f"every={wl.invariant} floor={wl.invariant_floor}")
    return m


def receipt_for(effect: QueuedEffect, index: int, rule: int) -> tuple[str, Any, int]:
    """(status, payload, cost) of the receipt answering the ``index``-th pending effect.

    Derived from the effect alone, so every path answers the same effect the same way.
    """
    choice = (effect.cost + index + rule + effect.intent_hash[0]) % 4
    if choice == 0:
        return "ok", {"i": index}, effect.cost
    if choice == 1:
        return "ok", {"i": index, "cheaper": True}, effect.cost // 2
    if choice == 2:
        return "error", {"why": "declined"}, 0
    return "ok", {"i": index, "dearer": True}, effect.cost + 2  # refused when the budget cannot take it


class Tally:
    """What a script did that the journal does not show: receipts the world refused."""

    def __init__(self) -> None:
        self.receipts = 0
        self.refused = 0
        self.reexecutions = 0  # steps computed again after a stale budget read (threads executor)
        self.c_loop = 0  # steps the inline executor's C loop ran (the rest went the reference path)

    def count(self, w: aos.World) -> None:
        """Add what ``w`` counted since it was opened."""
        m = w.metrics()
        self.reexecutions += m["reexecutions"]
        self.c_loop += m["steps_by_path"].get("c_loop", 0)


def settle(w: aos.World, phase: Phase, tally: Tally) -> None:
    for index, effect in enumerate(w.pending_effects()[:phase.settle]):
        status, payload, cost = receipt_for(effect, index, phase.rule)
        try:
            w.submit_receipt(w.receipt(effect.intent_hash, status, payload, cost))
            tally.receipts += 1
        except ReceiptOverBudgetError:
            tally.refused += 1  # the effect stays pending, its reservation held


def play(wl: Workload, open_world: Any, *, reopen: bool = False) -> tuple[str, Tally]:
    """Play the script on ``open_world()``; returns the final state hash and the tally.

    With ``reopen`` the world is closed and opened again between phases and,
    in a phase with a cut, right after it (mid-run: steps are ready, emitted
    events pending, priority waits counting). After the last phase a final
    ``run`` takes the steps its receipts caused.
    """
    tally = Tally()
    w = open_world()

    def again() -> aos.World:
        tally.count(w)
        w.close()
        return open_world()

    try:
        for at, phase in enumerate(wl.phases):
            if reopen and at:
                w = again()
            for i in phase.inputs:
                w.submit(SCHEMAS[i.schema], event_value(i))
            if phase.cut is not None:
                w.run(max_steps=phase.cut)
                if reopen:
                    w = again()
            w.run()
            settle(w, phase, tally)
            if phase.snapshot:
                w.snapshot()
        w.run()
        tally.count(w)
        return w.snapshot_hash(), tally
    finally:
        w.close()
