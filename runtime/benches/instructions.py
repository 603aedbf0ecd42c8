#!/usr/bin/env python3
"""Instructions per lookup and per element of an iteration, counted by valgrind's
callgrind (see instructions.rs).

Usage (from the workspace root): python3 runtime/benches/instructions.py [--instrument] [--sample-every N] [--writes] [SIZE ...]
Default sizes: 1000 100000 1000000. `--instrument` builds snapview with its
`instrument` feature (no subscriber: the benches' `on-none`); `--sample-every N`
builds snapview's map with `sample_every(N)` (1: every call timed, the benches'
`on-sample1` without its subscriber). Needs valgrind. Prints a markdown table:
instructions per `get` (hit, miss) and per element of the `iter` benchmark's
fold (`iter`) and of the same sum by a `for` loop (`next`), for each map, and snapview's ratio to hashbrown and imbl. `--writes` counts
the write cases instead: per key of batches of 1000 new keys (`batch`),
per publishing write (`publish`), the same with a reader holding each
replaced version (`held`), and per key of batches of 1000 overwrites with a
reader holding the replaced version (`overwrite_held`). Each cell is
one run of the program under callgrind, collecting only inside its
`lookups_*`, `iterate_*`, `loop_*` or `writes_*` function; a count does not depend on the
machine's load, so one run is enough.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

PEERS = ["snapview", "hashbrown", "imbl"]
CASES = ["hit", "miss", "iter", "next"]
WRITE_CASES = ["batch", "publish", "held", "overwrite_held"]


def build(features):
    out = subprocess.run(
        ["cargo", "bench", "-p", "snapview", "--bench", "instructions", "--no-run", "--message-format=json", *features],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "instructions" and msg.get("executable"):
            return msg["executable"]
    sys.exit("instructions.py: cargo built no `instructions` bench")


def count(binary, peer, size, case):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SNAPVIEW_PEER=peer, SNAPVIEW_BENCH_SIZES=str(size), SNAPVIEW_CASE=case)
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--toggle-collect=instructions::lookups_*",
             "--toggle-collect=instructions::iterate_*", "--toggle-collect=instructions::loop_*",
             "--toggle-collect=instructions::writes_*",
             f"--callgrind-out-file={tmp}/out", binary],
            env=env, capture_output=True, text=True,
        )
        if run.returncode != 0:
            sys.exit(f"instructions.py: {peer} {size} {case} failed:\n{run.stdout}\n{run.stderr}")
        refs = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
        operations = re.search(r": (\d+) operations", run.stdout)
        if not refs or not operations:
            sys.exit(f"instructions.py: no count in the output of {peer} {size} {case}:\n{run.stderr}")
        return int(refs.group(1).replace(",", "")) / int(operations.group(1))


def main():
    args = sys.argv[1:]
    if "--sample-every" in args:
        at = args.index("--sample-every")
        os.environ["SNAPVIEW_SAMPLE_EVERY"] = args[at + 1]
        del args[at:at + 2]
    features = ["--features", "instrument"] if "--instrument" in args else []
    cases = WRITE_CASES if "--writes" in args else CASES
    sizes = [int(s) for s in args if s not in ("--instrument", "--writes")] or [1000, 100_000, 1_000_000]
    binary = build(features)
    print("| size | case | snapview | hashbrown | imbl | snapview / hashbrown | imbl / snapview |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        for case in cases:
            c = {peer: count(binary, peer, size, case) for peer in PEERS}
            cell = lambda x: f"{x:.0f}" if x >= 100 else f"{x:.1f}"
            print(f"| {size:,} | {case} | {cell(c['snapview'])} | {cell(c['hashbrown'])} | {cell(c['imbl'])} "
                  f"| {c['snapview'] / c['hashbrown']:.2f}x | {c['imbl'] / c['snapview']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
