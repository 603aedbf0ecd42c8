//! Reads allocate nothing: a counting global allocator proves that
//! `snapshot()`, `read()`, `get` (hit and miss), full iteration and snapshot
//! clone/drop never touch the heap, on a map of 100k entries. And a map's
//! clone allocates what an empty map does, whatever its size: it shares the
//! trie; so does a restore of an older version.
//!
//! The allocator counts per thread (thread-local counters), so tests running
//! in parallel do not disturb each other. Each measurement warms up first:
//! arc-swap allocates a per-thread node on a thread's first load.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::OnceLock;

use snapview::{SnapMap, Snapshot};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static DEALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    // try_with: the counters may be gone while a thread is torn down.
    let _ = counter.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCS);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCS);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(&ALLOCS);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(&DEALLOCS);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations (including reallocations) and
/// deallocations it made on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    let (a0, d0) = (ALLOCS.with(Cell::get), DEALLOCS.with(Cell::get));
    let r = f();
    let (a1, d1) = (ALLOCS.with(Cell::get), DEALLOCS.with(Cell::get));
    (r, a1 - a0, d1 - d0)
}

/// Asserts that `f`, run after one warm-up call, touches the heap not at all.
fn assert_no_alloc<R>(what: &str, mut f: impl FnMut() -> R) {
    black_box(f());
    let (_, allocs, deallocs) = count(|| {
        for _ in 0..3 {
            black_box(f());
        }
    });
    assert_eq!((allocs, deallocs), (0, 0), "{what}: {allocs} allocations, {deallocs} deallocations");
}

const N: u64 = 100_000;

/// One big map for all the tests, built once (outside any measurement).
fn big_map() -> &'static SnapMap<u64, u64> {
    static MAP: OnceLock<SnapMap<u64, u64>> = OnceLock::new();
    MAP.get_or_init(|| {
        let map = SnapMap::new();
        map.update(|tx| tx.extend((0..N).map(|i| (i * 3, i))));
        map
    })
}

#[test]
fn the_counter_sees_allocations() {
    // The harness itself must be able to fail.
    let (_, allocs, deallocs) = count(|| drop(black_box(vec![1u8; 10])));
    assert_eq!((allocs, deallocs), (1, 1));
    // (Not the shared map: a write there could make another test's snapshot
    // the last one of its version, and its drop would free memory.)
    let map: SnapMap<u64, u64> = (0..1000).map(|i| (i, i)).collect();
    let _old = map.snapshot();
    let (_, allocs, _) = count(|| map.insert(u64::MAX, 1));
    assert!(allocs > 0, "a write copies a path: it must allocate");
}

#[test]
fn snapshot_and_read_allocate_nothing() {
    let map = big_map();
    assert_no_alloc("snapshot()", || map.snapshot());
    assert_no_alloc("read()", || map.read().len());
    assert_no_alloc("read().to_snapshot()", || map.read().to_snapshot());
    assert_no_alloc("version()/len()", || map.version() + map.len() as u64);
    // Several guards held at once: arc-swap's fallback past its fast slots.
    assert_no_alloc("16 read guards held together", || {
        let guards: [_; 16] = std::array::from_fn(|_| map.read());
        guards.iter().map(|g| g.len()).sum::<usize>()
    });
}

#[test]
fn snapshot_clone_and_drop_allocate_nothing() {
    let map = big_map();
    let snap = map.snapshot();
    assert_no_alloc("Snapshot::clone + drop", || drop(snap.clone()));
    assert_no_alloc("clone held then dropped", || {
        let clones: [Snapshot<u64, u64>; 8] = std::array::from_fn(|_| snap.clone());
        clones.len()
    });
}

#[test]
fn lookups_allocate_nothing() {
    let map = big_map();
    let snap = map.snapshot();
    assert_no_alloc("get (hit)", || {
        let mut found = 0;
        for i in (0..N).step_by(97) {
            found += u64::from(snap.get(&(i * 3)) == Some(&i));
        }
        assert_eq!(found, N.div_ceil(97));
        found
    });
    assert_no_alloc("get (miss)", || {
        let mut missed = 0;
        for i in (0..N).step_by(97) {
            missed += u64::from(snap.get(&(i * 3 + 1)).is_none());
        }
        assert_eq!(missed, N.div_ceil(97));
        missed
    });
    assert_no_alloc("get_key_value/contains_key", || {
        snap.get_key_value(&3).is_some() && snap.contains_key(&6) && !snap.contains_key(&7)
    });
    assert_no_alloc("get through a read guard", || map.read().get(&300).copied());
}

#[test]
fn iteration_allocates_nothing() {
    let map = big_map();
    let snap = map.snapshot();
    assert_no_alloc("iter()", || {
        let (count, sum) = snap.iter().fold((0u64, 0u64), |(c, s), (_, v)| (c + 1, s + v));
        assert_eq!(count, N);
        assert_eq!(sum, N * (N - 1) / 2);
    });
    assert_no_alloc("keys()", || assert_eq!(snap.keys().count() as u64, N));
    assert_no_alloc("values()", || assert_eq!(snap.values().sum::<u64>(), N * (N - 1) / 2));
    assert_no_alloc("for in &snapshot", || {
        let mut n = 0u64;
        for (k, v) in &snap {
            n += u64::from(*k == v * 3);
        }
        assert_eq!(n, N);
    });
    assert_no_alloc("iteration through a read guard", || map.read().iter().count());
}

#[test]
fn a_map_clone_allocates_what_an_empty_map_does() {
    let empty = SnapMap::<u64, u64>::new();
    // Warmed up: this thread's arc-swap record is taken (`assert_no_alloc`).
    drop(empty.clone());
    let (_, per_clone, _) = count(|| drop(black_box(empty.clone())));
    assert!(per_clone > 0, "a map of its own allocates something: the counter sees it");
    let small: SnapMap<u64, u64> = (0..10).map(|i| (i, i)).collect();
    for (what, map) in [("a 10-entry map", &small), ("a 100K-entry map", big_map())] {
        let (clone, allocs, deallocs) = count(|| map.clone());
        assert_eq!(clone.len(), map.len());
        assert_eq!(allocs, per_clone, "cloning {what}: the clone of an empty map makes {per_clone}");
        assert_eq!(deallocs, 0, "cloning {what}");
        // Its first write copies one path, not the map.
        let (_, allocs, _) = count(|| clone.insert(u64::MAX, 1));
        assert!((1..=16).contains(&allocs), "the clone's first write of {what}: {allocs} allocations");
        assert_eq!(map.snapshot().get(&u64::MAX), None);
    }
}

#[test]
fn a_restore_allocates_the_same_whatever_the_map_s_size() {
    let allocations = |len: u64| {
        let map: SnapMap<u64, u64> = (0..len).map(|i| (i, i)).collect();
        let last_good = map.snapshot();
        map.insert(u64::MAX, 1);
        let (_, allocs, _) = count(|| map.restore(&last_good));
        assert_eq!(map.snapshot(), last_good);
        allocs
    };
    let small = allocations(10);
    assert!((1..=2).contains(&small), "restoring a 10-entry map: {small} allocations (the new version's)");
    assert_eq!(allocations(N), small, "restoring a 100K-entry map allocates what a 10-entry one does");
}

#[test]
fn snapshot_is_small() {
    assert!(std::mem::size_of::<Snapshot<u64, u64>>() <= 16);
    assert!(std::mem::size_of::<Option<Snapshot<u64, u64>>>() <= 16);
}
