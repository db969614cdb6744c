"""The process the fleet crash trials kill: a fleet's client submitting events one by one.

``python fleet_child.py '<json config>'``. It opens (or reopens) the fleet
at ``path`` (``lanes`` local lanes, manifest ``fleet_world:commuting``),
prints ``O``, then submits events — adds of 1 to rotating keys, each with a
tag of its own (``g<generation>-<i>``), some of them spreads that cross
lanes — and after each ``submit`` returns (the event is durable in every
lane holding one of its cells) prints ``A <tag>``: an acknowledgement.
Every few events it runs the fleet. It never stops by itself; the parent
kills it with SIGKILL.
"""

from __future__ import annotations

import json
import random
import sys

import aos


def main() -> None:
    cfg = json.loads(sys.argv[1])
    rnd = random.Random(f"{cfg['seed']}/{cfg['generation']}")
    fleet = aos.Fleet.open(cfg["path"], "fleet_world:commuting", lanes=cfg["lanes"], durability=cfg["durability"])
    out = sys.stdout
    out.write("O\n")
    out.flush()
    i = 0
    while True:
        tag = f"g{cfg['generation']}-{i}"
        key = f"k{rnd.randrange(9)}"
        if rnd.random() < 0.2:
            fleet.submit("fleet/Spread@1", {"k": key, "n": 0, "to": [f"k{rnd.randrange(9)}"]})
            tag = "spread-" + tag
        else:
            fleet.submit("fleet/Add@1", {"k": key, "n": 1, "tag": tag})
        out.write(f"A {tag} {key}\n")
        out.flush()
        if rnd.random() < 0.1:
            fleet.run()
        i += 1


if __name__ == "__main__":
    main()
