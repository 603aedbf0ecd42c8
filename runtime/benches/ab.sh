#!/usr/bin/env bash
# In-process A/B of two commits: builds runtime/benches/ab/probe.rs against
# both (OLD as crate `snap_a`, NEW, or the working tree if omitted, as
# `snap_b`) and runs it. Both builds are linked into one program, which
# alternates them in bursts on the same maps (see probe.rs), so that the
# host's noise hits both alike: the A/Bs in docs/benchmark-history.md.
#
#   [AB_PROBES=N] [AB_FEATURES=F] [AB_FILL=insert] [AB_WRITES=1] [AB_STRINGS=1] [AB_HOLD=µs] runtime/benches/ab.sh OLD [NEW] [-- ROUNDS SIZE...]
#   e.g. runtime/benches/ab.sh a97d991 -- 30 1000000
#
# AB_FEATURES builds both sides with those snapview features, e.g.
# `instrument` (no subscriber: the instrument bench's `on-none`).
# Lookups cycle through 64Ki keys unless AB_PROBES (a power of two) says
# more; AB_PROBES=1048576 probes every key of a 1M map, as the criterion
# benches do. AB_FILL=insert grows snapview's maps by one insert per key
# (nodes scattered over the heap, as in a map written over time) instead of
# loading them with one `extend` (nodes in iteration order). AB_WRITES=1
# adds `publ`: publishing writes, as the `insert_publish` bench makes them,
# and `bat`: batches of 1000 overwrites, one version each; AB_STRINGS=1 the
# same two (`spub`, `sbat`) on maps keyed by `String`, and `schu`, batches
# that turn keys over (500 added, the 500 added before removed); AB_HOLD=µs (with
# AB_STRINGS=1) adds `shld`, four passes of `sbat` over the same keys while
# another thread holds snapshots of the map, each for that long.
# Resolution: A/A runs (the same commit on both sides, session 12) differed
# by up to 4% at 1M and, through code layout alone, by up to 19% for 1K
# misses; `publ` by 2-5% (session 16). A smaller difference is not evidence.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
old=${1:?usage: ab.sh OLD [NEW] [-- ROUNDS SIZE...]}
shift
new=
if [ $# -gt 0 ] && [ "$1" != "--" ]; then new=$1; shift; fi
[ "${1:-}" = "--" ] && shift
dir=$root/target/ab
rm -rf "$dir/a" "$dir/b"
rm -rf "$dir/probe/src"
mkdir -p "$dir/a" "$dir/b" "$dir/probe/src"
git -C "$root" archive "$old" | tar -x -C "$dir/a"
if [ -n "$new" ]; then
  git -C "$root" archive "$new" | tar -x -C "$dir/b"
else
  git -C "$root" ls-files -z | (cd "$root" && xargs -0 tar -c) | tar -x -C "$dir/b"
fi
# Fresh mtimes, so that cargo rebuilds what an earlier A/B left in target/ab.
find "$dir/a" "$dir/b" -type f -exec touch {} +
# Two packages may not share a name in one build: rename the old one.
sed -i '0,/^name = "snapview"/s//name = "snapview-a"/' "$dir/a/runtime/Cargo.toml"
# Likewise its crates under the hood (the workspace's dependency table keeps their names for its members).
for crate in instrument:instrumentation flame:flamegraphs; do
  sed -i "0,/^name = \"snapview-${crate%%:*}\"/s//name = \"snapview-${crate%%:*}-a\"/" "$dir/a/${crate#*:}/Cargo.toml"
  sed -i "s|^snapview-${crate%%:*} = { path = |snapview-${crate%%:*} = { package = \"snapview-${crate%%:*}-a\", path = |" "$dir/a/Cargo.toml"
done
features=
for feature in ${AB_FEATURES:-}; do features+="\"$feature\","; done
cp "$root/runtime/benches/ab/probe.rs" "$dir/probe/src/main.rs"
mkdir -p "$dir/probe/src/common"
cp "$root/runtime/benches/common/mod.rs" "$dir/probe/src/common/mod.rs"
cat > "$dir/probe/Cargo.toml" <<TOML
[package]
name = "snapview-ab"
version = "0.0.0"
edition = "2024"
publish = false

# Not a member of the snapview workspace.
[workspace]

[dependencies]
snap_a = { package = "snapview-a", path = "../a/runtime", features = [$features] }
snap_b = { package = "snapview", path = "../b/runtime", features = [$features] }
foldhash = "0.2"
hashbrown = "0.15"

[profile.release]
debug = "line-tables-only"
TOML
# Its own target directory, whatever CARGO_TARGET_DIR says: the line below runs it from there.
cargo build --release --quiet --manifest-path "$dir/probe/Cargo.toml" --target-dir "$dir/probe/target"
echo "a = $old, b = ${new:-working tree}"
"$dir/probe/target/release/snapview-ab" "$@"
