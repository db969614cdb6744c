"""The process the serving crash trials kill: a world serving while producer threads submit.

``python serve_child.py '<json config>'``. It opens (or reopens) the world,
prints ``O``, then serves it on the main thread while producer threads call
``World.submit_async`` with seeded random inputs of the determinism workload.
When a future resolves — the event is durable — it prints
``A <seq> <schema> <value digest>``: an acknowledgement. It never stops by
itself; the parent kills it with SIGKILL.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from concurrent.futures import Future

import aos
from aos import canonical
from reliability_support import random_input, workload_adapters, workload_manifest


def main() -> None:
    cfg = json.loads(sys.argv[1])
    rnd = random.Random(f"{cfg['seed']}/{cfg['generation']}")
    durability: str | aos.Durability = cfg["durability"]
    if durability == "group":
        durability = aos.Durability("group", group_commits=rnd.choice([1, 7, 1000]),
                                    group_ms=rnd.choice([0.0, 2.0, 20.0]))
    w = aos.World.open(cfg["path"], workload_manifest(), durability=durability, workers=cfg["workers"],
                       effects=cfg["effects"], on_violation="record", aging=40, snapshot_every=cfg["snapshot_every"],
                       segment_bytes=cfg["segment_bytes"], adapters=workload_adapters(), max_queued=64)
    out = sys.stdout
    lock = threading.Lock()
    out.write("O\n")
    out.flush()

    def acked(line: str, f: Future[int]) -> None:
        if f.exception() is None:
            with lock:
                out.write(f"A {f.result()} {line}\n")
                out.flush()

    def produce(i: int) -> None:
        prnd = random.Random(f"{cfg['seed']}/{cfg['generation']}/{i}")
        while True:
            schema, value = random_input(prnd)
            line = f"{schema} {canonical.digest(canonical.encode(value)).hex()}"
            w.submit_async(schema, value).add_done_callback(lambda f, line=line: acked(line, f))
            if prnd.random() < 0.3:
                time.sleep(prnd.uniform(0.0, 0.004))

    for i in range(cfg["producers"]):
        threading.Thread(target=produce, args=(i,), daemon=True).start()
    w.serve()


if __name__ == "__main__":
    main()
