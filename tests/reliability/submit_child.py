"""The process the idempotent-submit crash trials kill: a serving world whose client retries with keys.

``python submit_child.py '<json config>'``. It opens (or reopens) the world,
prints ``O``, then serves it on the main thread while producer threads call
``World.submit_async(..., idempotency_key=)`` for each key of ``keys`` (the
ones the parent has no acknowledgement of: a retrying client), some of them
twice at once. The event of key ``k`` is always the same (seeded by ``k``).
When a future resolves — the event is durable — it prints ``A <key> <seq>``.
Once every key is acknowledged it prints ``D``. It never stops by itself;
the parent kills it with SIGKILL.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from concurrent.futures import Future

import aos
from reliability_support import random_input, workload_adapters, workload_manifest


def event_of(key: str) -> tuple[str, dict[str, object]]:
    return random_input(random.Random(f"event/{key}"))


def main() -> None:
    cfg = json.loads(sys.argv[1])
    rnd = random.Random(f"{cfg['seed']}/{cfg['generation']}")
    durability = aos.Durability("group", group_commits=rnd.choice([1, 7, 1000]),
                                group_ms=rnd.choice([0.0, 2.0, 20.0]))
    w = aos.World.open(cfg["path"], workload_manifest(), durability=durability, workers=cfg["workers"],
                       effects="inline", on_violation="record", aging=40, snapshot_every=cfg["snapshot_every"],
                       segment_bytes=cfg["segment_bytes"], adapters=workload_adapters(), max_queued=64)
    out = sys.stdout
    lock = threading.Lock()
    keys: list[str] = cfg["keys"]
    left = set(keys)
    out.write("O\n")
    out.flush()

    def acked(key: str, f: Future[int]) -> None:
        if f.exception() is None:
            with lock:
                out.write(f"A {key} {f.result()}\n")
                left.discard(key)
                if not left:
                    out.write("D\n")
                out.flush()

    def produce(i: int) -> None:
        prnd = random.Random(f"{cfg['seed']}/{cfg['generation']}/{i}")
        for key in keys[i::cfg["producers"]]:
            schema, value = event_of(key)
            for _ in range(2 if prnd.random() < 0.2 else 1):  # sometimes sent twice at once
                w.submit_async(schema, value, idempotency_key=key).add_done_callback(
                    lambda f, key=key: acked(key, f))
            if prnd.random() < 0.3:
                time.sleep(prnd.uniform(0.0, 0.004))

    for i in range(cfg["producers"]):
        threading.Thread(target=produce, args=(i,), daemon=True).start()
    if not keys:
        out.write("D\n")
        out.flush()
    w.serve()


if __name__ == "__main__":
    main()
