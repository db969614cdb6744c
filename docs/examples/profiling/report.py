# report.py
"""Steps/s and per-reducer time of the aos_bench results in a --benchmark-json file.

    python report.py shop.json

Exits non-zero when the file holds no aos_bench result or one lacks a figure.
"""

import json
import sys

with open(sys.argv[1]) as f:
    benchmarks = [b for b in json.load(f)["benchmarks"] if "aos_steps" in b["extra_info"]]
if not benchmarks:
    sys.exit(f"{sys.argv[1]}: no aos_bench results")
for bench in benchmarks:
    info = bench["extra_info"]
    print(f"{bench['name']}: {info['aos_steps']:,} steps, {info['aos_steps_per_s']:,.0f} steps/s "
          f"(workers={info['aos_workers']}), {info['aos_in_reducers']:.0%} of run() inside reducers")
    for name, r in sorted(info["aos_reducers"].items(), key=lambda item: -item[1]["seconds"]):
        print(f"  {name:<18} {r['steps']:>6,} steps {r['seconds'] * 1e3:7.2f} ms {r['share']:6.1%}")
