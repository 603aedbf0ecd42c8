//! Static assertions on auto traits: the map and its snapshots can be shared
//! and sent across threads when (and only when) keys and values can; a
//! snapshot is `'static` and `Clone`; iterators are `Send + Sync`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use snapview::{Change, Diff, Iter, Keys, SnapMap, Snapshot, Tx, Values, View};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}
fn assert_static_clone<T: 'static + Clone>() {}

/// Compiles only if `T` is *not* `Send`: with `T: Send` both impls apply and
/// the call is ambiguous (the trick `static_assertions::assert_not_impl_any` uses).
macro_rules! assert_not_send {
    ($t:ty) => {{
        trait AmbiguousIfSend<A> {
            fn some_item() {}
        }
        impl<T: ?Sized> AmbiguousIfSend<()> for T {}
        impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
        <$t as AmbiguousIfSend<_>>::some_item();
    }};
}

/// Compiles only if `T` is *not* `Sync`.
macro_rules! assert_not_sync {
    ($t:ty) => {{
        trait AmbiguousIfSync<A> {
            fn some_item() {}
        }
        impl<T: ?Sized> AmbiguousIfSync<()> for T {}
        impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
        <$t as AmbiguousIfSync<_>>::some_item();
    }};
}

#[test]
fn map_and_snapshots_are_send_and_sync() {
    assert_send_sync::<SnapMap<u64, u64>>();
    assert_send_sync::<SnapMap<String, Vec<u8>>>();
    assert_send_sync::<SnapMap<Arc<str>, Arc<Vec<u8>>>>();
    assert_send_sync::<Snapshot<u64, u64>>();
    assert_send_sync::<Snapshot<String, Arc<str>>>();
    assert_send_sync::<View<String, u64, snapview::DefaultHashBuilder>>();
    assert_send_sync::<Change<'static, String, u64>>();
}

#[test]
fn snapshot_is_static_and_clone() {
    assert_static_clone::<Snapshot<u64, u64>>();
    assert_static_clone::<Snapshot<String, Vec<u8>>>();

    // And it is usable as such: moved into another thread, outliving the map.
    let map: SnapMap<String, u64> = [("a".to_string(), 1)].into_iter().collect();
    let snap = map.snapshot();
    drop(map);
    let got = std::thread::spawn(move || snap.get("a").copied()).join().expect("no panic");
    assert_eq!(got, Some(1));
}

#[test]
fn iterators_are_send_and_sync() {
    assert_send_sync::<Iter<'static, u64, String>>();
    assert_send_sync::<Keys<'static, u64, String>>();
    assert_send_sync::<Values<'static, u64, String>>();
    assert_send_sync::<Diff<'static, u64, String, snapview::DefaultHashBuilder>>();

    // An iterator borrowed from a snapshot can go to a scoped thread.
    let map: SnapMap<u64, String> = (0..100).map(|i| (i, i.to_string())).collect();
    let snap = map.snapshot();
    let it = snap.iter();
    let n = std::thread::scope(|s| s.spawn(move || it.count()).join().expect("no panic"));
    assert_eq!(n, 100);
}

#[test]
fn a_tx_can_be_sent_when_its_contents_can() {
    assert_send::<Tx<'static, u64, String, snapview::DefaultHashBuilder>>();
}

#[test]
fn not_send_or_sync_with_non_thread_safe_contents() {
    // Rc is neither Send nor Sync: a snapshot of Rc values must be neither,
    // or two threads could touch one Rc's count through clones.
    assert_not_send!(Snapshot<u64, Rc<u64>>);
    assert_not_sync!(Snapshot<u64, Rc<u64>>);
    assert_not_send!(SnapMap<Rc<str>, u64>);
    assert_not_sync!(SnapMap<Rc<str>, u64>);
    // Cell is Send but not Sync: shared versions hand out `&Cell` on every
    // thread that holds one, so neither may cross threads.
    assert_not_send!(Snapshot<u64, Cell<u64>>);
    assert_not_sync!(Snapshot<u64, Cell<u64>>);
    assert_not_sync!(SnapMap<u64, Cell<u64>>);
    assert_not_send!(Iter<'static, u64, Cell<u64>>);
    // A batch's working copy shares nodes with published versions: it may not
    // go to another thread with `Cell`s in it either.
    assert_not_send!(Tx<'static, u64, Cell<u64>, snapview::DefaultHashBuilder>);
    assert_not_send!(Tx<'static, u64, Rc<u64>, snapview::DefaultHashBuilder>);
}

fn assert_unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}

/// Reads can run inside `catch_unwind` without `AssertUnwindSafe`, with the
/// `instrument` feature as without it: a feature must not take an auto trait
/// away (an iteration's probe holds a `tracing::Span`, which is not
/// `UnwindSafe`: tokio-rs/tracing#1642).
#[test]
fn reads_are_unwind_safe_with_and_without_instrument() {
    assert_unwind_safe::<SnapMap<u64, u64>>();
    assert_unwind_safe::<Snapshot<String, u64>>();
    assert_unwind_safe::<snapview::ReadGuard<u64, u64>>();
    assert_unwind_safe::<Iter<'static, u64, u64>>();
    assert_unwind_safe::<Keys<'static, u64, u64>>();
    assert_unwind_safe::<Values<'static, u64, u64>>();
    assert_unwind_safe::<Diff<'static, u64, u64>>();
    assert_unwind_safe::<snapview::Subscription<u64, u64>>();

    let map: SnapMap<u64, u64> = (0..10).map(|i| (i, i)).collect();
    let snapshot = map.snapshot();
    let mut entries = snapshot.iter();
    entries.next();
    assert_eq!(std::panic::catch_unwind(move || entries.count()).ok(), Some(9));
}
