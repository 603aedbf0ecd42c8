#!/usr/bin/env python3
"""Markdown table of the criterion results saved by `cargo bench -p snapview --bench peers`.

Reads every `<criterion dir>/**/new/benchmark.json` (ids) and the
`estimates.json` beside it (median), and prints one row per benchmark:

    | case | size | peer | median | per | vs snapview |

`median` is criterion's median time per iteration divided by the throughput
elements the bench declared: per write for the cases in `UNIT`, per element
for any other case that declares a throughput, per operation otherwise.
`vs snapview` is that time over snapview's in the same group (`case/size`),
or over the snapview variant `BASELINE_OF` names for groups without a plain
`snapview`: above 1 means slower than snapview.

Usage: python3 runtime/benches/tabulate.py [CRITERION_DIR]
CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion at
the workspace root (two levels above this file). Only ids of the form
`case/size/peer` are listed, so other benches' results in the same directory
are skipped.
"""

import json
import os
import sys
from pathlib import Path

CASES = ["snapshot", "get_hit", "get_miss", "get_chain", "iter", "iter_for", "iter_inserted", "insert_publish", "batch_publish", "diff"]
BASELINE = "snapview"
# Groups whose snapview entries are all variants: the one to compare with.
BASELINE_OF = {"batch_upsert": "snapview-entry", "str_reload": "snapview-assign"}
# What a declared throughput counts, where it is not elements.
UNIT = {
    "insert_publish": "write",
    "batch_publish": "write",
    "batch_upsert": "write",
    "str_insert_publish": "write",
    "str_batch_publish": "write",
    "str_batch_churn": "write",
    "str_batch_held": "write",
    "str_batch_beside": "write",
    "str_batch_route": "write",
    "str_batch_stats": "write",
}


def criterion_dir() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "criterion"
    return Path(__file__).resolve().parents[2] / "target" / "criterion"


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    if ns >= 10:
        return f"{ns:.1f} ns"
    return f"{ns:.2f} ns"


def load(root: Path):
    rows = []
    for bench in root.glob("**/new/benchmark.json"):
        est_path = bench.with_name("estimates.json")
        if not est_path.exists():
            continue
        meta = json.loads(bench.read_text())
        est = json.loads(est_path.read_text())
        group, peer = meta.get("group_id", ""), meta.get("function_id")
        if peer is None or "/" not in group:
            continue
        case, size = group.rsplit("/", 1)
        if not size.isdigit():
            continue
        elements, per = 1, "op"
        throughput = meta.get("throughput") or {}
        if "Elements" in throughput:
            elements, per = throughput["Elements"], UNIT.get(case, "element")
        elif "Bytes" in throughput:
            elements, per = throughput["Bytes"], "byte"
        median = est["median"]["point_estimate"] / elements
        rows.append((case, int(size), peer, median, per))
    return rows


def main() -> int:
    root = criterion_dir()
    rows = load(root)
    if not rows:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1
    base = {(c, n): t for c, n, p, t, _ in rows if p == BASELINE_OF.get(c, BASELINE)}

    def order(row):
        case, size, peer, median, _ = row
        case_rank = CASES.index(case) if case in CASES else len(CASES)
        return (case_rank, case, size, peer != BASELINE_OF.get(case, BASELINE), median)

    print("| case | size | peer | median | per | vs snapview |")
    print("| --- | ---: | --- | ---: | --- | ---: |")
    for case, size, peer, median, per in sorted(rows, key=order):
        b = base.get((case, size))
        ratio = f"{median / b:.2f}×" if b else "–"
        print(f"| {case} | {size:,} | {peer} | {fmt_ns(median)} | {per} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
