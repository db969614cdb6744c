"""The world the upgrade crash trials upgrade: two versions of a small bank (importable by the child process).

v1 keeps an account's balance in whole units; v2 changes the account
reducer's code and state shape (cents), so every account cell is migrated
(``migrate={ACCOUNT: to_v2}``), leaves the ledger reducer's code as it was,
and adds a reducer. With a few thousand accounts the apply journals a few
thousand ``CellMigrated`` records, so a kill at a random moment lands
before, inside and after the apply.
"""

from __future__ import annotations

import random
from typing import Any

import aos

ACCOUNT, LEDGER, REPORT = "rel/Account@1", "rel/Ledger@1", "rel/Report@1"


def _ledger(m: aos.Manifest) -> None:
    @m.reducer(LEDGER, events=["rel/Noted@1"])
    def ledger(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"notes": 0, "total": 0}
        return {"notes": state["notes"] + 1, "total": state["total"] + event.value["amount"]}


def v1_manifest() -> aos.Manifest:
    m = aos.Manifest("rel/bank@1")

    @m.reducer(ACCOUNT, key="id", events=["rel/Deposit@1"])
    def account(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"balance": 0, "ops": 0}
        amount = event.value["amount"]
        if amount >= 50:
            ctx.emit("rel/Noted@1", {"amount": amount})
        return {"balance": state["balance"] + amount, "ops": state["ops"] + 1}

    _ledger(m)
    return m


def v2_manifest() -> aos.Manifest:
    m = aos.Manifest("rel/bank@1")

    @m.reducer(ACCOUNT, key="id", events=["rel/Deposit@1"])
    def account(ctx: Any, state: Any, event: Any) -> Any:
        state = state or {"cents": 0, "ops": 0, "v": 2}
        amount = event.value["amount"]
        if amount >= 50:
            ctx.emit("rel/Noted@1", {"amount": amount})
        return {"cents": state["cents"] + 100 * amount, "ops": state["ops"] + 1, "v": 2}

    _ledger(m)

    @m.reducer(REPORT, key="id", events=["rel/Report@1"])
    def report(ctx: Any, state: Any, event: Any) -> Any:
        return {"reports": (state or {"reports": 0})["reports"] + 1}

    return m


def to_v2(state: Any) -> Any:
    """The migration of an account cell: whole units to cents."""
    return {"cents": 100 * state["balance"], "ops": state["ops"], "v": 2}


MIGRATE = {ACCOUNT: to_v2}


def deposit(rnd: random.Random, accounts: int) -> tuple[str, dict[str, Any]]:
    return "rel/Deposit@1", {"id": f"a{rnd.randrange(accounts)}", "amount": rnd.randint(1, 60)}


def fill(path: Any, accounts: int, extra: int = 0, seed: int = 0) -> None:
    """A v1 world with one deposit to each of ``accounts`` accounts, then ``extra`` random deposits."""
    rnd = random.Random(seed)
    with aos.World.open(path, v1_manifest(), workers=0, effects="manual", durability="none",
                        snapshot_every=0) as w:
        for i in range(accounts):
            w.submit("rel/Deposit@1", {"id": f"a{i}", "amount": 1 + i % 60})
        for _ in range(extra):
            w.submit(*deposit(rnd, accounts))
        w.run()
