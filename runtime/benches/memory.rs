//! Heap bytes per entry at 1M `u64 -> u64` entries, snapview against its peers.
//!
//! A counting global allocator tracks live heap bytes. Each map is built from
//! empty (the same random keys, the same foldhash 0.2 hasher), measured, and
//! dropped before the next one. `live` is what the built map holds (the
//! bytes asked for); `malloc's` is what glibc spends on those blocks (each
//! one's usable size plus its 8-byte header; Linux with glibc only); `peak`
//! is the most that was live at once while building it (growth, garbage not
//! yet freed). Run: `cargo bench -p snapview --bench memory`; set
//! `SNAPVIEW_MEMORY_ENTRIES` to measure another size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use snapview::SnapMap;

type H = foldhash::fast::RandomState;

/// Counts the bytes live on the heap, and the most that were live at once.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// What the allocator spends on the live blocks: each one's usable size (the
/// size asked for, rounded up to glibc's 16-byte steps) plus its 8-byte
/// chunk header. A map of many small blocks pays more than it asks for; the
/// `live` column alone would favour it.
static SPENT: AtomicUsize = AtomicUsize::new(0);

/// The bytes glibc's malloc spends on the block at `p` (0 elsewhere: the
/// column is then not measured).
///
/// # Safety
///
/// `p` is a live block from `System`.
unsafe fn spent_on(p: *mut u8) -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `p` is live and came from `System`, i.e. glibc's malloc.
        unsafe { libc::malloc_usable_size(p.cast()) + size_of::<usize>() }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = p;
        0
    }
}

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(by: usize) {
    LIVE.fetch_sub(by, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's arguments; the
// counting around it does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout, which meets `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
            // SAFETY: `p` was just allocated by `System`.
            SPENT.fetch_add(unsafe { spent_on(p) }, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
            // SAFETY: `p` was just allocated by `System`.
            SPENT.fetch_add(unsafe { spent_on(p) }, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is live, from `System` (the caller's contract).
        SPENT.fetch_sub(unsafe { spent_on(ptr) }, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is live, from `System` (the caller's contract).
        let spent_before = unsafe { spent_on(ptr) };
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // SAFETY: `p` is the live block `realloc` returned.
            let spent_after = unsafe { spent_on(p) };
            SPENT.fetch_add(spent_after, Ordering::Relaxed);
            SPENT.fetch_sub(spent_before, Ordering::Relaxed);
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// splitmix64 with a fixed seed, so every run measures the same keys.
fn keys(n: usize) -> Vec<u64> {
    let mut state = 0x5EED_0000 ^ n as u64;
    let mut seen = hashbrown::HashSet::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let k = z ^ (z >> 31);
        if seen.insert(k) {
            keys.push(k);
        }
    }
    keys
}

struct Row {
    name: &'static str,
    how: &'static str,
    live: usize,
    spent: usize,
    peak: usize,
    leaked: isize,
}

/// Builds with `build`, measures what it holds, drops it.
fn measure<M>(name: &'static str, how: &'static str, build: impl FnOnce() -> M) -> Row {
    let (before, spent_before) = (live(), SPENT.load(Ordering::Relaxed));
    PEAK.store(before, Ordering::Relaxed);
    let map = black_box(build());
    let (after, spent_after) = (live(), SPENT.load(Ordering::Relaxed));
    let peak = PEAK.load(Ordering::Relaxed);
    drop(map);
    let leaked = live() as isize - before as isize;
    Row { name, how, live: after - before, spent: spent_after - spent_before, peak: peak - before, leaked }
}

fn main() {
    // Cargo passes `--bench` (and any filter); there is nothing to filter.
    let n: usize = std::env::var("SNAPVIEW_MEMORY_ENTRIES")
        .ok()
        .map(|s| s.trim().replace('_', "").parse().expect("SNAPVIEW_MEMORY_ENTRIES: a number"))
        .unwrap_or(1_000_000);
    let keys = keys(n);
    let hasher = H::default();
    let entries = || keys.iter().map(|&k| (k, k ^ 0x5555));

    // One-time per-thread allocations (arc-swap's debt list node, seize's
    // thread slot) happen here, outside the measurements.
    let warm = SnapMap::builder().hasher(hasher.clone()).build();
    warm.insert(1u64, 1u64);
    drop(black_box((warm.snapshot(), warm.read().len())));
    drop(warm);
    let warm = papaya::HashMap::<u64, u64, H>::with_hasher(hasher.clone());
    warm.pin().insert(1, 1);
    drop(warm);

    let rows = [
        measure("snapview", "one `update` batch (`extend` into the empty map: one-pass load)", || {
            let m = SnapMap::builder().hasher(hasher.clone()).build();
            m.update(|tx| tx.extend(entries()));
            m
        }),
        measure("snapview", "single `insert`s", || {
            let m = SnapMap::builder().hasher(hasher.clone()).build();
            for (k, v) in entries() {
                m.insert(k, v);
            }
            m
        }),
        measure("hashbrown", "`extend`", || {
            let mut m = hashbrown::HashMap::with_hasher(hasher.clone());
            m.extend(entries());
            m
        }),
        measure("std", "`extend`", || {
            let mut m = std::collections::HashMap::with_hasher(hasher.clone());
            m.extend(entries());
            m
        }),
        measure("imbl", "`insert` (in place)", || {
            let mut m =
                imbl::GenericHashMap::<u64, u64, H, imbl::shared_ptr::DefaultSharedPtr>::with_hasher(hasher.clone());
            for (k, v) in entries() {
                m.insert(k, v);
            }
            m
        }),
        measure("rpds", "`insert_mut`", || {
            let mut m = rpds::HashTrieMapSync::<u64, u64, H>::new_with_hasher_and_ptr_kind(hasher.clone());
            for (k, v) in entries() {
                m.insert_mut(k, v);
            }
            m
        }),
        measure("dashmap", "`insert`", || {
            let m = dashmap::DashMap::<u64, u64, H>::with_hasher(hasher.clone());
            for (k, v) in entries() {
                m.insert(k, v);
            }
            m
        }),
        measure("papaya", "`insert`, one pin", || {
            let m = papaya::HashMap::<u64, u64, H>::with_hasher(hasher.clone());
            let p = m.pin();
            for (k, v) in entries() {
                p.insert(k, v);
            }
            drop(p);
            // Each table papaya outgrew waits in this thread's batch for
            // seize to free it, which happens once the batch holds 32:
            // growing to 1M entries retires 16, so without a flush they would
            // all be counted (~19 B per entry) as papaya's memory. A later
            // write frees them; measured here as if one had come.
            papaya::Guard::flush(&m.guard());
            m
        }),
        measure("evmap", "`update`, 2 refreshes", || {
            let (r, mut w) = evmap::Options::default().with_hasher(hasher.clone()).construct::<u64, u64>();
            for (k, v) in entries() {
                w.update(k, v);
            }
            w.refresh();
            w.refresh();
            (r, w)
        }),
    ];

    println!("Heap bytes per entry, {n} `u64 -> u64` entries (16 bytes of payload each), foldhash 0.2.\n");
    println!(
        "| map | built by | live bytes/entry | malloc's bytes/entry (usable + header) | peak bytes/entry while building | not freed on drop |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            r.name,
            r.how,
            r.live as f64 / n as f64,
            r.spent as f64 / n as f64,
            r.peak as f64 / n as f64,
            r.leaked
        );
    }
}
