#!/usr/bin/env bash
# The instrument feature's overhead table: the same bench built without and
# with the feature, run back to back for ROUNDS rounds (default 3), then
# tabulated from each (case, config)'s fastest median across rounds, as ratios
# to `off`. The minimum over rounds is what the code costs; the rest is the
# noise of a shared 2-core machine.
#
#   runtime/benches/overhead.sh [criterion filter...]      e.g. ROUNDS=5 runtime/benches/overhead.sh iter
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-3}
target=${CARGO_TARGET_DIR:-target}
out=$target/overhead-rounds
rm -rf "$out"
cargo bench -p snapview --bench instrument --no-run
cargo bench -p snapview --bench instrument --features instrument --no-run
for round in $(seq 1 "$rounds"); do
  for build in off on; do
    features=()
    [ "$build" = on ] && features=(--features instrument)
    rm -rf "$target/criterion/overhead" # only this run's results get copied
    # (The `+` form: bash before 4.4 calls an empty array unbound under `set -u`.)
    cargo bench -q -p snapview --bench instrument ${features[@]+"${features[@]}"} -- "$@" >/dev/null
    mkdir -p "$out/$round-$build"
    cp -r "$target/criterion/overhead" "$out/$round-$build/"
  done
done
python3 runtime/benches/overhead.py "$out"
