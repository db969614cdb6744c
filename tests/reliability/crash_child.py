"""The process the crash trials kill: it runs a world and reports what it was told is durable.

``python crash_child.py '<json config>'``. It opens (or reopens) the world,
prints ``O <durable_event_id>``, then submits seeded random batches of the
determinism workload and runs them. Each line it prints is an
acknowledgement, printed only after the call that made it durable returned:

* ``S <seq> <schema> <value digest>`` — a submitted event. With durability
  ``always`` right after ``submit`` returns; with ``group`` after the next
  ``run()`` or ``sync()`` returned (that is when the documentation calls it
  durable).
* ``D <event_id>`` — ``World.durable_event_id`` after ``run()``/``sync()``:
  every step up to it is on disk.

When its batches are done it prints ``E`` and waits to be killed.
"""

from __future__ import annotations

import json
import random
import sys
import time

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
                       effects="inline", on_violation="record", aging=40, snapshot_every=cfg["snapshot_every"],
                       segment_bytes=cfg["segment_bytes"], adapters=workload_adapters())
    out = sys.stdout
    out.write(f"O {w.durable_event_id}\n")
    out.flush()
    always = cfg["durability"] == "always"
    waiting: list[str] = []
    for _batch in range(cfg["batches"]):
        for _ in range(rnd.randint(1, 12)):
            schema, value = random_input(rnd)
            seq = w.submit(schema, value)
            line = f"S {seq} {schema} {canonical.digest(canonical.encode(value)).hex()}\n"
            if always:
                out.write(line)
                out.flush()
            else:
                waiting.append(line)
        roll = rnd.random()
        if roll < 0.1:
            w.sync()
        else:
            w.run(max_steps=rnd.choice([None, None, 3, 17]))
        if roll > 0.97:
            w.snapshot()
        out.write("".join(waiting) + f"D {w.durable_event_id}\n")
        out.flush()
        waiting.clear()
    out.write("E\n")
    out.flush()
    time.sleep(3600)


if __name__ == "__main__":
    main()
