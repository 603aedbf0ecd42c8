//! What the benchmarks share: the generator of their keys, and the loops
//! that the in-process programs (`instructions.rs`, `ab/`) time or count.

/// splitmix64: a tiny fixed-seed generator, so every run uses the same keys.
pub struct SplitMix64(pub u64);

// Each benchmark uses the part it needs.
#[allow(dead_code)]
impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Keeps taking a snapshot (`take`) and holding it for `hold`, until `stop`:
/// the reader of the benches that write while snapshots are held (a scrape,
/// a config dump). Spins rather than sleeps, so each hold is as long as asked.
#[allow(dead_code)]
pub fn hold_snapshots<S>(take: impl Fn() -> S, hold: std::time::Duration, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let snapshot = take();
        let since = std::time::Instant::now();
        while since.elapsed() < hold {
            std::hint::spin_loop();
        }
        drop(snapshot);
    }
}

/// Sizes from `SNAPVIEW_BENCH_SIZES` (comma list, `_` allowed), or `default`.
#[allow(dead_code)]
pub fn bench_sizes(default: &[usize]) -> Vec<usize> {
    match std::env::var("SNAPVIEW_BENCH_SIZES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                let s = s.trim().replace('_', "");
                s.parse().unwrap_or_else(|_| panic!("SNAPVIEW_BENCH_SIZES: bad size {s:?}"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

/// `fn $name(map, probe) -> u64`: `BURST` lookups cycling through `probe`
/// (a power of two long), counting the keys found.
#[allow(unused_macros)]
macro_rules! lookups {
    ($name:ident, $map:ty) => {
        #[inline(never)]
        fn $name(map: &$map, probe: &[u64]) -> u64 {
            let mask = probe.len() - 1;
            (0..BURST).filter(|&i| map.get(black_box(&probe[i & mask])).is_some()).count() as u64
        }
    };
}

/// `fn $name(map, passes) -> u64`: the sum of the values over `passes`
/// iterations by a `for` loop, one `next()` per element (the way most code
/// iterates; a `fold` may walk a map's structure directly).
#[allow(unused_macros)]
macro_rules! loops {
    ($name:ident, $map:ty) => {
        #[inline(never)]
        fn $name(map: &$map, passes: usize) -> u64 {
            let mut sum = 0u64;
            for _ in 0..passes {
                for (_, v) in black_box(map).iter() {
                    sum = sum.wrapping_add(*v);
                }
            }
            sum
        }
    };
}
