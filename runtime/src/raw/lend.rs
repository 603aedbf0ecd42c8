//! Which entries a copy may lend (E1): the types whose copy bit for bit,
//! living beside the original until one of the two is forgotten, cannot be
//! told from a clone.
//!
//! A lent entry is the same bytes in two nodes, of which only one ever drops
//! them. That is sound only while the two copies stay equal, and a write
//! through a `&T` breaks it: replacing a `Mutex<String>`'s string through an
//! old snapshot freed the buffer that the new version's copy still pointed
//! to, and the map's drop freed it a second time (found by review in session
//! 28; `tests/interior_mutability.rs`). Stable Rust cannot tell whether a
//! type has interior mutability (`core::marker::Freeze` is unstable), so a
//! copy lends only the entries of types known not to:
//!
//! - std types listed here ([`copies_as_clones`]), whatever the map: `String`
//!   keys and `u64` values, for example;
//! - the [`Lendable`] types of a map built with
//!   [`SnapMapBuilder::lend_entries`](crate::SnapMapBuilder::lend_entries), or
//!   a `Lendable` key and a `Copy` value in one built with
//!   [`SnapMapBuilder::lend_copy_values`](crate::SnapMapBuilder::lend_copy_values):
//!   its batches say so to the copies they make through a thread-local
//!   ([`LendGuard`]).
//!
//! Every other entry is cloned, which is right for any type and is what
//! every copy did before entries were lent.

use core::any::TypeId;
use core::cell::Cell;
use core::marker::PhantomData;

/// A type whose values a map may *lend* between versions: a write that
/// copies a node shares its other entries with the copy bit for bit instead
/// of cloning them, and only one of the two copies is ever dropped
/// (docs/design.md, "Lending entries"). That saves a clone (an allocation,
/// for a `String`) per entry of each node a write copies.
///
/// Maps whose key and value types are common std types (integers, `String`,
/// `Box<str>`, `Arc<str>`, `Vec<u8>`, ...) lend without asking. For other
/// types, implement this trait and build the map with
/// [`SnapMapBuilder::lend_entries`](crate::SnapMapBuilder::lend_entries); for
/// a value type that is `Copy` (a small struct of numbers, an enum), build it
/// with [`SnapMapBuilder::lend_copy_values`](crate::SnapMapBuilder::lend_copy_values),
/// which needs no `unsafe`.
///
/// ```
/// use snapview::{Lendable, SnapMap};
///
/// #[derive(Clone)]
/// struct Route {
///     upstream: String,
///     weight: u32,
/// }
///
/// // SAFETY: a `String` and a `u32`: no interior mutability anywhere.
/// unsafe impl Lendable for Route {}
///
/// let routes = SnapMap::<String, Route>::builder().lend_entries().build();
/// routes.insert("/api".into(), Route { upstream: "10.0.0.1:8080".into(), weight: 1 });
/// assert_eq!(routes.snapshot().get("/api").map(|r| r.weight), Some(1));
/// ```
///
/// # Safety
///
/// Nothing of a value may change through a shared reference `&T`: no
/// `Cell`, `RefCell`, `Mutex`, `RwLock`, atomic, `OnceCell`, `OnceLock` or
/// other `UnsafeCell` in the value itself, nor behind a `Box` or `Vec` it
/// owns. Two versions of a map may hold the same bytes at once, of which
/// only one is ever dropped: a write through one copy would leave the other
/// pointing at freed memory, or racing with the write. What sits behind an
/// `Arc` or `Rc` is shared by clones anyway, so it may change: `Arc<T>` is
/// `Lendable` for any `T`.
///
/// A lent value's `Clone` does not run, so it must have no effect that the
/// program relies on beyond making an equal value.
pub unsafe trait Lendable {}

/// Implements [`Lendable`] for the std types without type parameters
/// (`own`), and lists them and some instances of the generic ones below
/// (`covered`) in [`copies_as_clones`].
macro_rules! std_lendable {
    (own: $($own:ty),* ; covered: $($covered:ty),* $(,)?) => {
        $(
            // SAFETY: a std type whose values change only through `&mut`.
            unsafe impl Lendable for $own {}
        )*

        /// Whether a copy of a `T` bit for bit cannot be told from a clone,
        /// for any map: one of the listed [`Lendable`] std types.
        /// `typeid::of` ignores lifetimes, so `&'a str` answers as `&'static
        /// str` does; no other listed type has a lifetime. The answer is a
        /// constant of the type: the comparisons fold away.
        #[inline(always)]
        pub(super) fn copies_as_clones<T: ?Sized>() -> bool {
            let t = typeid::of::<T>();
            false $(|| t == TypeId::of::<$own>())* $(|| t == TypeId::of::<$covered>())*
        }
    };
}

std_lendable!(
    own: u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char, (), str, String,
        std::path::PathBuf, std::ffi::OsString, std::ffi::CString;
    covered: &'static str, &'static [u8], Box<str>, std::sync::Arc<str>, std::rc::Rc<str>, Vec<u8>, Box<[u8]>,
        std::sync::Arc<[u8]>, Vec<String>,
);

// SAFETY: a `Box` adds no cell to its `T`.
unsafe impl<T: Lendable + ?Sized> Lendable for Box<T> {}
// SAFETY: what an `Arc` points to is shared by its clones too: a lent copy
// shares it the same way, and the pointer itself changes only through `&mut`.
unsafe impl<T: ?Sized> Lendable for std::sync::Arc<T> {}
// SAFETY: as for `Arc<T>`.
unsafe impl<T: ?Sized> Lendable for std::rc::Rc<T> {}

// SAFETY: `Vec<T>` and `Option<T>` add no cell to their `T`s.
unsafe impl<T: Lendable> Lendable for Vec<T> {}
// SAFETY: as for `Vec<T>`.
unsafe impl<T: Lendable> Lendable for Option<T> {}
// SAFETY: a slice is its `T`s.
unsafe impl<T: Lendable> Lendable for [T] {}
// SAFETY: what a shared reference points to changes only through a cell,
// which `T: Lendable` excludes.
unsafe impl<T: Lendable + ?Sized> Lendable for &T {}
// SAFETY: a pair adds no cell to its parts.
unsafe impl<A: Lendable, B: Lendable> Lendable for (A, B) {}
// SAFETY: as for a pair.
unsafe impl<A: Lendable, B: Lendable, C: Lendable> Lendable for (A, B, C) {}

thread_local! {
    /// The key and value types that the batch running on this thread lends
    /// although they are not listed ([`copies_as_clones`]): those of a map
    /// built with `lend_entries`, proven `Lendable` there.
    static LENDS_HERE: Cell<Option<(TypeId, TypeId)>> = const { Cell::new(None) };
}

/// Whether a copy of a node of `(K, V)` entries, made on this thread now,
/// may lend them rather than clone them.
#[inline(always)]
pub(super) fn may_lend<K, V>() -> bool {
    (copies_as_clones::<K>() && copies_as_clones::<V>()) || lends_here::<K, V>()
}

/// Whether the batch running on this thread lends `(K, V)` entries.
#[inline(never)]
fn lends_here<K, V>() -> bool {
    LENDS_HERE.get() == Some((typeid::of::<K>(), typeid::of::<V>()))
}

/// While alive, copies made on this thread may lend `(K, V)` entries: held by
/// the batch of a map built with `lend_entries`. Made only where the two
/// types are proven [`Lendable`] ([`allow`](Self::allow)); the guard it
/// replaces comes back when it goes (nested batches of two maps), and it
/// stays on its thread.
#[derive(Debug)]
pub(crate) struct LendGuard {
    before: Option<(TypeId, TypeId)>,
    _on_this_thread: PhantomData<*const ()>,
}

impl LendGuard {
    /// Lets copies on this thread lend `(K, V)` entries until the guard goes.
    pub(crate) fn allow<K: Lendable, V: Lendable>() -> Self {
        Self::allow_unchecked::<K, V>()
    }

    /// As [`allow`](Self::allow), for a `Copy` value type: a `Copy` type
    /// holds no `UnsafeCell` (which is not `Copy`) and owns nothing it
    /// drops, so its bytes cannot change through `&V`, and a copy bit for
    /// bit is what `Copy` promises to be a valid value.
    pub(crate) fn allow_copy_values<K: Lendable, V: Copy>() -> Self {
        Self::allow_unchecked::<K, V>()
    }

    /// The guard, for types the caller has proven lendable.
    fn allow_unchecked<K, V>() -> Self {
        let before = LENDS_HERE.replace(Some((typeid::of::<K>(), typeid::of::<V>())));
        Self { before, _on_this_thread: PhantomData }
    }
}

impl Drop for LendGuard {
    fn drop(&mut self) {
        LENDS_HERE.set(self.before);
    }
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use super::*;
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    #[derive(Clone)]
    struct Plain(#[allow(dead_code)] String);
    // SAFETY: a `String` alone.
    unsafe impl Lendable for Plain {}

    #[test]
    fn listed_std_types_lend_in_any_map() {
        assert!(may_lend::<String, u64>());
        assert!(may_lend::<Arc<str>, Vec<u8>>());
        assert!(may_lend::<&str, String>());
    }

    #[test]
    fn types_that_may_change_through_a_reference_never_lend() {
        assert!(!may_lend::<String, Mutex<String>>());
        assert!(!may_lend::<String, core::cell::RefCell<String>>());
        assert!(!may_lend::<String, core::cell::Cell<u64>>());
        assert!(!may_lend::<String, core::sync::atomic::AtomicU64>());
        let _lend = LendGuard::allow::<String, Plain>();
        assert!(!may_lend::<String, Mutex<String>>(), "a guard lends its own types only");
    }

    #[test]
    fn other_types_lend_only_while_a_batch_of_theirs_allows_it() {
        assert!(!may_lend::<String, Plain>());
        {
            let _outer = LendGuard::allow::<String, Plain>();
            assert!(may_lend::<String, Plain>());
            {
                let _inner = LendGuard::allow::<u32, Rc<()>>();
                assert!(may_lend::<u32, Rc<()>>());
                assert!(!may_lend::<String, Plain>(), "the innermost batch's types");
            }
            assert!(may_lend::<String, Plain>(), "back when the inner batch ends");
            let elsewhere = std::thread::spawn(may_lend::<String, Plain>).join().unwrap();
            assert!(!elsewhere, "another thread's copies clone");
        }
        assert!(!may_lend::<String, Plain>());
    }
}
