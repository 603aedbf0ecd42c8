#!/usr/bin/env bash
# Builds and runs bucket_probe.rs (a design probe, see its header) against
# the working tree's snapview, under target/ab/bucket.
#
#   runtime/benches/ab/bucket.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
dir=$root/target/ab/bucket
mkdir -p "$dir/src/common"
cp "$root/runtime/benches/ab/bucket_probe.rs" "$dir/src/main.rs"
cp "$root/runtime/benches/common/mod.rs" "$dir/src/common/mod.rs"
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "snapview-bucket-probe"
version = "0.0.0"
edition = "2024"
publish = false

# Not a member of the snapview workspace.
[workspace]

[dependencies]
snapview = { path = "$root/runtime" }
foldhash = "0.2"
hashbrown = "0.15"

[profile.release]
debug = "line-tables-only"
TOML
# Its own target directory, whatever CARGO_TARGET_DIR says: the line below runs it from there.
cargo build --release --quiet --manifest-path "$dir/Cargo.toml" --target-dir "$dir/target"
"$dir/target/release/snapview-bucket-probe" "$@"
