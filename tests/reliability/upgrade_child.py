"""The process the upgrade crash trials kill: it upgrades a v1 world to v2 and reports what it was told.

``python upgrade_child.py '<json config>'``. The world (``upgrade_world``)
exists already, with history. Two variants:

* ``closed``: prints ``A`` and runs ``aos.upgrade(path, v2, old=v1,
  migrate=...)`` (open, propose, approve, apply).
* ``live``: opens the world with ``durability="always"``, submits seeded
  batches of deposits (some left waiting in mailboxes), then proposes,
  approves and applies on the same open world.

Each line it prints is an acknowledgement, printed only after the call that
made it durable returned: ``O`` (opened), ``S <seq> <schema> <value digest>``
(a submitted event), ``D <event_id>`` (``World.durable_event_id`` after a
``run()``), ``A`` (the upgrade begins: nothing of it is written yet), ``P
<proposal>`` (proposed), ``V`` (approved) and ``U`` (the upgrade returned:
the world is in the new era). Then it waits to be killed.
"""

from __future__ import annotations

import json
import random
import sys
import time

import aos
from aos import canonical
from upgrade_world import MIGRATE, deposit, v1_manifest, v2_manifest


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    rnd = random.Random(f"{cfg['seed']}/child")
    v1, v2 = v1_manifest(), v2_manifest()
    if cfg["variant"] == "closed":
        say("A")
        aos.upgrade(cfg["path"], v2, old=v1, migrate=MIGRATE, workers=cfg["workers"],
                    segment_bytes=cfg["segment_bytes"])
        say("U")
    else:
        w = aos.World.open(cfg["path"], v1, durability="always", workers=cfg["workers"], effects="manual",
                           snapshot_every=cfg["snapshot_every"], segment_bytes=cfg["segment_bytes"])
        say("O")
        for _batch in range(cfg["batches"]):
            for _ in range(rnd.randint(1, 12)):
                schema, value = deposit(rnd, cfg["accounts"])
                seq = w.submit(schema, value)
                say(f"S {seq} {schema} {canonical.digest(canonical.encode(value)).hex()}")
            if rnd.random() < 0.8:  # else the batch waits in the mailboxes, and crosses the boundary
                w.run(max_steps=rnd.choice([None, None, 5]))
            say(f"D {w.durable_event_id}")
        say("A")
        pid = w.propose(v2)
        say(f"P {pid}")
        w.approve(pid, by="crash trial")
        say("V")
        w.apply(pid, v2, migrate=MIGRATE)
        say("U")
    time.sleep(3600)


if __name__ == "__main__":
    main()
