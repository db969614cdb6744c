"""Effect retries killed with SIGKILL: every intent ends with exactly one receipt, each key applied at most once.

Each trial runs this file as a child process (``python test_effect_retry_crash.py '<json config>'``): a
world whose payment adapter calls a file-backed "service" that deduplicates by
idempotency key (a file per applied key, created with ``O_EXCL``, and a log
line per application). The adapter fails often — before applying, or after
applying (the answer lost) — and an :class:`aos.EffectPolicy` retries it with
backoff, so the child spends its time between attempts when the parent kills
it (one to three times in a row, on the same world, in the inline or the
background dispatch mode). Then the world is reopened here with an adapter
that answers and settled, and the test checks:

* every queued intent has exactly one ``ReceiptAppended`` (none lost, none
  twice): ``ok``, or the dead-letter error receipt recording its attempts;
* the service applied each idempotency key at most once, and every ``ok``
  receipt's key was applied;
* the children really were killed while attempts failed (retries happened).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aos

HERE = Path(__file__).resolve()


def manifest() -> aos.Manifest:
    m = aos.Manifest("test/retry-crash@1")
    m.capability("pay", effect="payment.send", budget=1_000_000)

    @m.reducer("test/Order@1", key="id", events=["test/Place@1"])
    def order(ctx: Any, state: Any, event: Any) -> Any:
        if event.schema == "sys/Receipt@1":
            return dict(state, status=event.value["status"])
        ctx.effect("payment.send", {"amount": event.value["amount"]}, cost=1)
        return {"status": None}

    return m


class Service:
    """The outside service: applies each idempotency key at most once (a file per key, ``O_EXCL``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "keys").mkdir(parents=True, exist_ok=True)

    def apply(self, key: str) -> bool:
        """Apply ``key`` once; False: it was applied before (the dedup answer)."""
        name = self.root / "keys" / key.replace("/", "_")
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        with open(self.root / "applied.log", "a") as log:  # every real application, one line each
            log.write(key + "\n")
        return True

    def applied(self) -> list[str]:
        path = self.root / "applied.log"
        return path.read_text().split() if path.exists() else []


def flaky_adapter(service: Service, rnd: random.Random, attempts_log: Path) -> Any:
    def send(req: aos.EffectRequest) -> Any:
        with open(attempts_log, "a") as log:
            log.write(req.idempotency_key + "\n")
        roll = rnd.random()
        if roll < 0.4:
            raise ConnectionError("service unreachable")
        service.apply(req.idempotency_key)
        if roll < 0.7:
            raise TimeoutError("the answer was lost")  # applied, but the caller never heard
        return {"paid": req.params["amount"]}

    return send


POLICY = aos.EffectPolicy(retries=4, backoff=0.05, max_backoff=0.3, jitter=0.5)


def child(cfg: dict[str, Any]) -> None:
    rnd = random.Random(f"{cfg['seed']}/{cfg['generation']}")
    root = Path(cfg["root"])
    w = aos.World.open(root / "w", manifest(), effects=cfg["effects"],
                       adapters={"payment.send": flaky_adapter(Service(root / "service"), rnd,
                                                               root / "attempts.log")},
                       effect_policies={"cap:pay": POLICY})
    print("O", flush=True)
    for batch in range(1_000):
        for i in range(rnd.randint(1, 5)):
            w.submit("test/Place@1", {"id": f"{cfg['generation']}-{batch}-{i}", "amount": rnd.randint(1, 9)})
        w.run(settle=cfg["effects"] == "inline" or rnd.random() < 0.3, timeout=0.5)
    time.sleep(3600)


def _env() -> dict[str, str]:
    # The child imports the aos this interpreter has installed (never the source tree, which holds no
    # compiled core when aos is installed from a wheel) and the test helpers beside this file.
    paths = [str(HERE.parent), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def trial(tmp: Path, seed: int) -> dict[str, int]:
    rnd = random.Random(seed)
    effects = rnd.choice(["inline", "background"])
    kills = 0
    for generation in range(rnd.choice([1, 2, 3])):
        cfg = {"root": str(tmp), "seed": seed, "generation": generation, "effects": effects}
        err = open(tmp / f"child{generation}.err", "wb")
        proc = subprocess.Popen([sys.executable, str(HERE), json.dumps(cfg)], stdout=subprocess.PIPE,
                                stderr=err, env=_env(), text=True)
        assert proc.stdout is not None
        opened = proc.stdout.readline().strip()
        assert opened == "O", f"seed {seed}: generation {generation} did not open: " + \
            (tmp / f"child{generation}.err").read_text()
        time.sleep(rnd.uniform(0.3, 1.2))
        assert proc.poll() is None, f"seed {seed}: the child ended: " + (tmp / f"child{generation}.err").read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        err.close()
        kills += 1
    from aos.effect_state import EffectState

    resumed = sum(1 for e in EffectState.load(tmp / "w").entries.values() if e.attempts)  # killed mid-retries
    service = Service(tmp / "service")

    def answer(req: aos.EffectRequest) -> Any:
        service.apply(req.idempotency_key)
        return {"paid": req.params["amount"]}

    m = manifest()
    with aos.World.open(tmp / "w", m, effects=effects, adapters={"payment.send": answer},
                        effect_policies={"cap:pay": POLICY}) as w:
        deadline = time.monotonic() + 60
        while w.run(settle=True, timeout=5).outstanding and time.monotonic() < deadline:
            pass
        assert w.effect_status() == [], f"seed {seed}: intents left unsettled"
    queued: dict[bytes, str] = {}
    receipts: dict[bytes, list[Any]] = {}
    for _e, rec in aos.JournalReader(tmp / "w" / "journal", m.era).records():
        if rec.KIND == "EffectQueued":
            queued[rec.intent_hash] = rec.idempotency_key
        elif rec.KIND == "ReceiptAppended":
            receipts.setdefault(rec.intent_hash, []).append(rec)
    assert queued, f"seed {seed}: no intent was queued"
    assert set(receipts) == set(queued), f"seed {seed}: receipts for other intents than the queued ones"
    twice = [h.hex() for h, rs in receipts.items() if len(rs) != 1]
    assert not twice, f"seed {seed}: intents with more than one receipt: {twice}"
    applied = service.applied()
    assert len(applied) == len(set(applied)), f"seed {seed}: a key was applied twice"
    ok_keys = {queued[h] for h, (r,) in receipts.items() if r.status == "ok"}
    assert ok_keys <= set(applied), f"seed {seed}: an ok receipt whose key the service never applied"
    dead = [aos.canonical.decode(r.payload) for (r,) in receipts.values() if r.status == "error"]
    assert all(d["attempts"] == POLICY.attempts and d["error"] in ("ConnectionError", "TimeoutError")
               for d in dead), dead
    attempts = (tmp / "attempts.log").read_text().split()
    return {"kills": kills, "intents": len(queued), "attempts": len(attempts), "dead_lettered": len(dead),
            "applied": len(applied), "resumed": resumed}


def test_effect_retries_survive_kill_9(tmp_path: Path) -> None:
    totals: dict[str, int] = {}
    for seed in range(4):
        (tmp_path / f"t{seed}").mkdir()
        got = trial(tmp_path / f"t{seed}", seed)
        for k, v in got.items():
            totals[k] = totals.get(k, 0) + v
    assert totals["kills"] >= 4
    assert totals["attempts"] > totals["intents"]  # attempts failed and were retried, in the killed children
    assert totals["resumed"] > 0  # some intents were killed between attempts and resumed their count at reopen
    print("effect retry crash trials:", totals)


if __name__ == "__main__":
    child(json.loads(sys.argv[1]))
