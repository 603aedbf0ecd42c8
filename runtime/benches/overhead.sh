#!/usr/bin/env bash
# The instrument feature's overhead table: the same bench built without and
# with the feature, run back to back, then tabulated as ratios to `off`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -p snapview --bench instrument -- "$@"
cargo bench -p snapview --bench instrument --features instrument -- "$@"
python3 runtime/benches/overhead.py
