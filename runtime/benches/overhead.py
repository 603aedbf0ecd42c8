#!/usr/bin/env python3
"""Markdown table of `cargo bench -p snapview --bench instrument` results, both builds.

Reads every `overhead/CASE_CONFIG/new/benchmark.json` under the directory given
(default: target/overhead-rounds, as runtime/benches/overhead.sh leaves it; a
plain target/criterion works too), keeps each (case, config)'s fastest median
per element over all rounds found, and prints each config's time and its
ratio to `off` (the build without the feature).
"""

import json
import sys
from pathlib import Path

CONFIGS = ["off", "on-none", "on-info", "on-sample1", "on-debug"]
root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "target" / "overhead-rounds")
times = {}
runs = {}
for bench in root.glob("**/overhead/*/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    case, config = meta["function_id"].split("/")
    median = json.loads((bench.parent / "estimates.json").read_text())["median"]["point_estimate"]
    per = median / ((meta.get("throughput") or {}).get("Elements", 1))
    times[(case, config)] = min(per, times.get((case, config), per))
    runs[(case, config)] = runs.get((case, config), 0) + 1

counts = sorted(set(runs.values()))
print(f"fastest median of {'-'.join(map(str, counts))} run(s) per benchmark")
print()
print("| case | " + " | ".join(CONFIGS) + " |")
print("|---|" + "---|" * len(CONFIGS))
for case in ["snapshot", "get", "iter", "for"]:
    off = times.get((case, "off"))
    cells = []
    for config in CONFIGS:
        t = times.get((case, config))
        if t is None:
            cells.append("-")
        elif off and config != "off":
            cells.append(f"{t:.2f} ns ({t / off:.2f}x)")
        else:
            cells.append(f"{t:.2f} ns")
    unit = " (per element)" if case in ("iter", "for") else ""
    print(f"| {case}{unit} | " + " | ".join(cells) + " |")
