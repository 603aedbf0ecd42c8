//! A value whose `Drop` panics leaks nothing else: the node it sits in still
//! drops its other entries and its children (the sub-trees below), and frees
//! its memory. Until session 28 a node dropped its entries and then its
//! children in one go, so a panic in the first skipped the second. And a
//! publish whose freeing of the old version meets such a value still settles
//! and announces the version it published (since session 30).

mod common;

use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use common::{Identity, PLANNED_PANIC, quietly};
use snapview::{Lendable, SnapMap};

/// Live values per test (tests run in parallel).
static LIVE: [AtomicIsize; 6] = [const { AtomicIsize::new(0) }; 6];

/// A value that counts itself in `LIVE[slot]`, and panics when dropped if `boom`.
struct Value {
    slot: usize,
    boom: bool,
}

impl Value {
    fn new(slot: usize, boom: bool) -> Self {
        LIVE[slot].fetch_add(1, Ordering::Relaxed);
        Self { slot, boom }
    }
}

/// A clone does not panic when dropped: only the original does (`insert`
/// returns a clone of the value it replaces while an older version holds it).
impl Clone for Value {
    fn clone(&self) -> Self {
        Self::new(self.slot, false)
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        LIVE[self.slot].fetch_sub(1, Ordering::Relaxed);
        if self.boom {
            std::panic::panic_any(PLANNED_PANIC);
        }
    }
}

// SAFETY: two plain fields: nothing changes through `&Value`.
unsafe impl Lendable for Value {}

type Map = SnapMap<u64, Value, BuildHasherDefault<Identity>>;

/// Key 0 (whose value panics when dropped) and key 2 inline in the root;
/// keys 1, 65 and 129 share slot 1, so they sit in a child.
fn root_with_a_child(slot: usize, lend: bool) -> Map {
    let builder = SnapMap::builder().hasher(BuildHasherDefault::<Identity>::default());
    let map: Map = if lend { builder.lend_entries().build() } else { builder.build() };
    map.update(|tx| {
        tx.insert(0, Value::new(slot, true));
        for k in [2, 1, 65, 129] {
            tx.insert(k, Value::new(slot, false));
        }
    });
    assert_eq!(LIVE[slot].load(Ordering::Relaxed), 5);
    map
}

#[test]
fn a_node_whose_entry_panics_as_it_drops_still_drops_its_children() {
    let map = root_with_a_child(0, false);
    assert!(quietly(move || drop(map)).is_err(), "the value's drop panicked");
    assert_eq!(LIVE[0].load(Ordering::Relaxed), 0, "values leaked");
}

#[test]
fn a_lender_whose_entry_panics_as_it_drops_still_drops_its_children() {
    let map = root_with_a_child(1, true);
    let old = map.snapshot();
    // The copy of the root borrows key 2 from the old one (which now lends
    // it) and shares its child; the panicking value stays the old root's.
    map.insert(0, Value::new(1, false));
    drop(map);
    assert!(quietly(move || drop(old)).is_err(), "the value's drop panicked");
    assert_eq!(LIVE[1].load(Ordering::Relaxed), 0, "values leaked");
}

/// Three children of the root, each of three keys: slot 0 holds keys 0, 64
/// and 128; slot 3 holds 3, 67 and 131; slot 5 holds 5, 69 and 133. The
/// values of the keys in `booms` panic when dropped.
fn three_children(slot: usize, lend: bool, booms: &[u64]) -> Map {
    let builder = SnapMap::builder().hasher(BuildHasherDefault::<Identity>::default());
    let map: Map = if lend { builder.lend_entries().build() } else { builder.build() };
    map.update(|tx| {
        for k in [0, 64, 128, 3, 67, 131, 5, 69, 133] {
            tx.insert(k, Value::new(slot, booms.contains(&k)));
        }
    });
    map
}

/// A batch writes keys 0, 3 and 5, and freeing the old version after the
/// publish drops the original of key 0 (and of 3, if in `booms`), which
/// panics. With lending, each copy borrowed its source's entries, and
/// settling walks the paths in that order: the source drops the original
/// there; the copies after it must still be settled, or each keeps its
/// source (and the original it replaced) alive until a later version
/// replaces it. Without lending, the old version's nodes go as the writer
/// recycles its root.
fn a_panicking_drop_after_the_publish(slot: usize, lend: bool, booms: &[u64]) {
    let map = three_children(slot, lend, booms);
    let mut changes = map.subscribe();
    let before = map.version();
    let batch = quietly(|| {
        map.update(|tx| {
            tx.insert(0, Value::new(slot, false));
            tx.insert(3, Value::new(slot, false));
            tx.insert(5, Value::new(slot, false));
        })
    });
    assert!(batch.is_err(), "the old value's drop panicked");
    assert_eq!(map.version(), before + 1, "the batch was published");
    assert_eq!(map.snapshot().len(), 9);
    assert_eq!(LIVE[slot].load(Ordering::Relaxed), 9, "only the current version's values are alive");
    let noticed = changes.poll_changed(&mut Context::from_waker(Waker::noop()));
    assert!(
        matches!(&noticed, Poll::Ready(Some(s)) if s.version() == before + 1),
        "subscribers are told of the version"
    );
    drop(noticed);
    // The next batch starts from it as usual.
    map.insert(64, Value::new(slot, false));
    assert_eq!(map.version(), before + 2);
    assert_eq!(LIVE[slot].load(Ordering::Relaxed), 9);
    // The subscription holds the last version it was told of.
    drop((map, changes));
    assert_eq!(LIVE[slot].load(Ordering::Relaxed), 0, "values leaked");
}

#[test]
fn a_value_that_panics_as_a_publish_frees_it_leaves_that_version_settled_and_announced() {
    a_panicking_drop_after_the_publish(2, true, &[0]);
}

/// Two paths' settling panics: the second walk panics at slot 3, and only a
/// third one settles slot 5.
#[test]
fn two_values_that_panic_as_a_publish_frees_them_leave_that_version_settled() {
    a_panicking_drop_after_the_publish(4, true, &[0, 3]);
}

#[test]
fn a_value_that_panics_as_a_publish_frees_it_unlent_leaves_that_version_announced() {
    a_panicking_drop_after_the_publish(3, false, &[0]);
}

/// A waker that notes it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// While a subscription exists, the version it was last told of is held for
/// it, so that version is freed when the next publish replaces it: a value
/// that panics there must not keep the waiting subscription from being woken
/// (it was freed under the subscriptions' lock, before the wake-ups).
#[test]
fn a_value_that_panics_as_the_subscriptions_version_is_replaced_still_wakes_them() {
    let slot = 5;
    let map: Map = SnapMap::builder().hasher(BuildHasherDefault::<Identity>::default()).build();
    let mut changes = map.subscribe();
    map.insert(0, Value::new(slot, true));
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(changes.poll_changed(&mut cx), Poll::Ready(Some(s)) if s.version() == 1));
    assert!(changes.poll_changed(&mut cx).is_pending());

    let publish = quietly(|| drop(map.insert(0, Value::new(slot, false))));
    assert!(publish.is_err(), "the replaced version's value panicked as it dropped");
    assert_eq!(map.version(), 2, "the version stands");
    assert!(flag.0.load(Ordering::Relaxed), "the waiting subscription was woken");
    assert!(matches!(changes.poll_changed(&mut cx), Poll::Ready(Some(s)) if s.version() == 2));
    drop((map, changes));
    assert_eq!(LIVE[slot].load(Ordering::Relaxed), 0, "values leaked");
}
