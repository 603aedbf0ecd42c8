//! Batches of 1000 overwrites into a small `String`-keyed map, with the
//! value's entries lent or cloned: the program behind docs/benchmark-history.md,
//! "What changed in session 30" (where lending costs a dense batch).
//!
//! `cargo run --release -p snapview --example dense_batches -- [lend|clone] [keys] [batches]`
//! (defaults `lend`, 1000 and 100). For the cost per batch, time two runs
//! that differ only in `batches`, or count under valgrind and subtract:
//! `valgrind --tool=cachegrind --cache-sim=no --branch-sim=yes
//! target/release/examples/dense_batches lend 1000 300` (and 100).
//!
//! The value type is `Copy` but not `Lendable`, so the map clones entries
//! when it copies a node unless it is built with `lend_copy_values`.

use snapview::SnapMap;

/// A value of the user's own: `Copy`, so `lend_copy_values` may lend it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Val(u64);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let lend = match args.get(1).map_or("lend", String::as_str) {
        "lend" => true,
        "clone" => false,
        other => panic!("the first argument is `lend` or `clone`, not {other:?}"),
    };
    let keys: usize = args.get(2).map_or(1000, |s| s.parse().expect("keys: a number"));
    let batches: u64 = args.get(3).map_or(100, |s| s.parse().expect("batches: a number"));
    let names: Vec<String> =
        (0..keys as u64).map(|i| format!("/api/orders/{:x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40)).collect();

    let builder = SnapMap::<String, Val, _>::builder().hasher(foldhash::fast::FixedState::with_seed(7));
    let builder = if lend { builder.lend_copy_values() } else { builder };
    let mut map = builder.build();
    map.extend(names.iter().map(|k| (k.clone(), Val(0))));

    let mut x = 1u64;
    for batch in 0..batches {
        map.update(|tx| {
            for _ in 0..1000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = &names[(x % keys as u64) as usize];
                tx.insert(key.clone(), Val(batch));
            }
        });
    }
    println!("{} keys, version {}", map.len(), map.version());
}
