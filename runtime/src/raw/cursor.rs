//! A slice iterator whose `Drop`-carrying part borrows nothing.
//!
//! An iterator over a snapshot records its iteration when dropped (feature
//! `instrument`), and that record needs how many items were left: the
//! position of the cursor over the current node's entries. A `Drop` impl on
//! a type with a lifetime makes the borrow checker keep the borrow alive
//! until the drop (dropck), so code that compiles without the feature, such
//! as an edition-2021 tail expression `snap.values().any(..)` whose
//! temporary iterator outlives `snap`, would fail with `E0597` once some
//! crate in the build turned the feature on (features unify). So the cursor
//! lives in a lifetime-free part ([`Tally`]) that carries the `Drop`, and
//! the borrow sits beside it in [`Reader`], which alone hands out items.
//!
//! The drop reads only the cursor's addresses, never the items, so it is
//! sound after the slice is gone.

use core::marker::PhantomData;

/// What the iteration does when its reader is dropped: `unread` items were
/// left in the cursor (those it could still yield, and those held back).
pub(crate) trait Finish {
    fn finish(&mut self, unread: usize);
}

/// How many items past its window a cursor holds back: [`HoldsBack`], or
/// [`HoldsNothing`] (zero-sized) for a reader that never narrows its window,
/// so that it carries and writes nothing for it (a field it wrote at every
/// node made the feature-off `for` loop over a 1K map 9.6 → 12.7
/// instructions per item: LLVM no longer kept the cursor in one register).
pub(crate) trait Hold: Copy + private::Sealed {
    /// The count.
    fn count(self) -> usize;
}

mod private {
    /// Only this module's two kinds of [`Hold`](super::Hold): `Reader`'s
    /// soundness rests on the count they keep (C1).
    pub(crate) trait Sealed {}
}

/// A count of items held back past the window ([`Reader::window`]).
#[cfg_attr(not(feature = "instrument"), allow(dead_code))]
#[derive(Clone, Copy, Default)]
pub(crate) struct HoldsBack(usize);

/// Nothing held back, ever.
#[cfg_attr(feature = "instrument", allow(dead_code))]
#[derive(Clone, Copy, Default)]
pub(crate) struct HoldsNothing;

impl private::Sealed for HoldsBack {}
impl private::Sealed for HoldsNothing {}

impl Hold for HoldsBack {
    #[inline(always)]
    fn count(self) -> usize {
        self.0
    }
}

impl Hold for HoldsNothing {
    #[inline(always)]
    fn count(self) -> usize {
        0
    }
}

/// The unread part of one slice as `slice::Iter` holds it, without the
/// slice's lifetime (for a zero-sized `T`, the addresses count items in
/// bytes from the slice's start), and how many items past `end` are held
/// back.
///
/// Invariant C1: `ptr <= end`, and `end` moved on by `held` items is at
/// most the end of the slice they are all within.
struct Cursor<T, H> {
    ptr: *const T,
    end: *const T,
    held: H,
}

// SAFETY: a `Cursor<T>` is a shared slice iterator (it only hands out `&T`,
// through `Reader`), so it may cross threads exactly when `&T` may: as
// `core::slice::Iter<T>` is `Send` and `Sync` for `T: Sync`.
unsafe impl<T: Sync, H: Send> Send for Cursor<T, H> {}
// SAFETY: as for `Send`: sharing it shares only `&T`.
unsafe impl<T: Sync, H: Sync> Sync for Cursor<T, H> {}

impl<T, H: Copy> Clone for Cursor<T, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, H: Copy> Copy for Cursor<T, H> {}

/// Whether `T` is zero-sized: its cursors count in bytes.
const fn zst<T>() -> bool {
    size_of::<T>() == 0
}

/// `from` moved on by `n` items.
///
/// # Safety
///
/// `from` and the result lie within (or one past) one slice (C1).
#[inline(always)]
unsafe fn advance<T>(from: *const T, n: usize) -> *const T {
    match zst::<T>() {
        true => from.cast::<u8>().wrapping_add(n).cast::<T>(),
        // SAFETY: the caller's: in bounds of one slice, which an in-bounds
        // offset (unlike `wrapping_add`) lets LLVM know.
        false => unsafe { from.add(n) },
    }
}

/// How many items lie from `from` to `to`: addresses only, so it may be
/// asked after the slice is gone.
#[inline(always)]
fn between<T>(from: *const T, to: *const T) -> usize {
    let bytes = to.addr() - from.addr();
    match zst::<T>() {
        true => bytes,
        false => bytes / size_of::<T>(),
    }
}

/// Where the item at `at` is: `at` itself, or for a zero-sized `T` (whose
/// `at` counts bytes, so may be unaligned) any aligned address.
#[inline(always)]
fn item<T>(at: *const T) -> *const T {
    match zst::<T>() {
        true => core::ptr::NonNull::<T>::dangling().as_ptr(),
        false => at,
    }
}

/// A cursor and what rides with it, without any borrow: the part of a
/// [`Reader`] that is dropped, and whose `Drop` tells the rider how much
/// was left unread.
pub(crate) struct Tally<T, R: Finish, H: Hold> {
    cursor: Cursor<T, H>,
    rider: R,
}

impl<T, R: Finish, H: Hold> Drop for Tally<T, R, H> {
    #[inline(always)]
    fn drop(&mut self) {
        // Addresses only: the items may be gone by now.
        let unread = between(self.cursor.ptr, self.cursor.end) + self.cursor.held.count();
        self.rider.finish(unread);
    }
}

/// A slice iterator over slices borrowed for `'a`, one at a time, with a
/// rider ([`Tally`]). The borrow is this type's, not the tally's: dropping a
/// reader does not need `'a` alive.
///
/// Invariant R1: every slice the cursor has been set over is borrowed for
/// `'a` ([`Reader::with`] and [`Reader::set`] take only those), so the items
/// it hands out live for `'a`.
pub(crate) struct Reader<'a, T, R: Finish, H: Hold> {
    tally: Tally<T, R, H>,
    _borrow: PhantomData<&'a [T]>,
}

impl<'a, T, R: Finish, H: Hold + Default> Reader<'a, T, R, H> {
    /// A reader over `entries`.
    #[inline(always)]
    pub(crate) fn with(entries: &'a [T], rider: R) -> Self {
        Self { tally: Tally { cursor: Self::over(entries), rider }, _borrow: PhantomData }
    }

    /// Reads `entries` next, from their first; drops what was unread and held.
    #[inline(always)]
    pub(crate) fn set(&mut self, entries: &'a [T]) {
        self.tally.cursor = Self::over(entries);
    }

    fn over(slice: &[T]) -> Cursor<T, H> {
        let ptr = slice.as_ptr();
        // SAFETY: one past the slice's end.
        let end = unsafe { advance(ptr, slice.len()) };
        Cursor { ptr, end, held: H::default() }
    }
}

impl<'a, T, R: Finish, H: Hold> Reader<'a, T, R, H> {
    /// A reader at the same position as this one (window and held items
    /// alike), with another rider.
    #[inline(always)]
    pub(crate) fn copied(&self, rider: R) -> Self {
        Self { tally: Tally { cursor: self.tally.cursor, rider }, _borrow: PhantomData }
    }

    /// The next item, or `None` at the end of the window.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> Option<&'a T> {
        let c = &mut self.tally.cursor;
        if c.ptr == c.end {
            return None;
        }
        let at = item(c.ptr);
        // SAFETY: C1: `ptr` is below `end`, so one item on is at most `end`.
        c.ptr = unsafe { advance(c.ptr, 1) };
        // SAFETY: R1: the cursor is over a slice borrowed for 'a, and C1:
        // `at` is below `end`, so an item of it (for a zero-sized `T`, a
        // non-null aligned pointer, which is a valid one).
        Some(unsafe { &*at })
    }

    /// The items left in the window, as a slice.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &'a [T] {
        // SAFETY: R1 and C1: the window's `len` items from `ptr` are part of
        // a slice borrowed for 'a (for a zero-sized `T`, `len` of them at a
        // non-null aligned pointer).
        unsafe { core::slice::from_raw_parts(item(self.tally.cursor.ptr), self.len()) }
    }

    /// How many items are left in the window.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        between(self.tally.cursor.ptr, self.tally.cursor.end)
    }

    /// How many items are held back past the window.
    #[inline(always)]
    pub(crate) fn held(&self) -> usize {
        self.tally.cursor.held.count()
    }

    /// What rides with the cursor.
    #[inline(always)]
    pub(crate) fn rider(&self) -> &R {
        &self.tally.rider
    }

    /// What rides with the cursor.
    #[inline(always)]
    pub(crate) fn rider_mut(&mut self) -> &mut R {
        &mut self.tally.rider
    }
}

impl<T, R: Finish> Reader<'_, T, R, HoldsBack> {
    /// Ends the window after the next `n` unread items of the slice (those
    /// held back included), holding the rest back; opens it to the slice's
    /// end if `n` reaches past it. Writes nothing when there is nothing to
    /// hold back and nothing held (the common case).
    #[cfg_attr(not(feature = "instrument"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn window(&mut self, n: usize) {
        let c = &mut self.tally.cursor;
        let unread = between(c.ptr, c.end) + c.held.0;
        if n < unread {
            // SAFETY: C1: fewer than the unread items, all within the slice.
            c.end = unsafe { advance(c.ptr, n) };
            c.held = HoldsBack(unread - n);
        } else if c.held.0 != 0 {
            // SAFETY: C1: `end` moved on by what it held is within the slice.
            c.end = unsafe { advance(c.end, c.held.0) };
            c.held = HoldsBack(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Records what the drop reported.
    struct Report(Rc<Cell<Option<usize>>>);

    impl Finish for Report {
        fn finish(&mut self, unread: usize) {
            self.0.set(Some(unread));
        }
    }

    fn reader<'a, T, H: Hold + Default>(items: &'a [T], seen: &Rc<Cell<Option<usize>>>) -> Reader<'a, T, Report, H> {
        Reader::with(items, Report(seen.clone()))
    }

    #[test]
    fn reads_a_slice_in_order_and_reports_what_was_left() {
        let seen = Rc::new(Cell::new(None));
        let items = [1u64, 2, 3, 4, 5];
        let mut r = reader::<_, HoldsNothing>(&items, &seen);
        assert_eq!(r.len(), 5);
        assert_eq!(r.next(), Some(&1));
        assert_eq!(r.next(), Some(&2));
        assert_eq!(r.as_slice(), &[3, 4, 5]);
        drop(r);
        assert_eq!(seen.get(), Some(3));
    }

    #[test]
    fn a_window_holds_the_rest_back_and_reopens() {
        let seen = Rc::new(Cell::new(None));
        let items = [10u32, 20, 30, 40];
        let mut r = reader::<_, HoldsBack>(&items, &seen);
        r.next();
        r.window(1);
        assert_eq!((r.len(), r.held()), (1, 2));
        assert_eq!(r.next(), Some(&20));
        assert_eq!(r.next(), None, "the window ends before the held items");
        r.window(usize::MAX);
        assert_eq!((r.len(), r.held()), (2, 0));
        assert_eq!(r.as_slice(), &[30, 40]);
        r.window(0);
        assert_eq!((r.len(), r.held()), (0, 2));
        let copy = r.copied(Report(Rc::new(Cell::new(None))));
        assert_eq!((copy.len(), copy.held()), (0, 2));
        drop(r);
        assert_eq!(seen.get(), Some(2), "held items count as unread");
    }

    #[test]
    fn zero_sized_items_are_counted() {
        let seen = Rc::new(Cell::new(None));
        let items = [(), (), ()];
        let mut r = reader::<_, HoldsBack>(&items, &seen);
        assert_eq!(r.len(), 3);
        assert_eq!(r.next(), Some(&()));
        r.window(1);
        assert_eq!((r.len(), r.held()), (1, 1));
        assert_eq!(r.as_slice().len(), 1);
        assert_eq!(r.next(), Some(&()));
        assert_eq!(r.next(), None);
        r.window(5);
        assert_eq!((r.len(), r.held()), (1, 0));
        drop(r);
        assert_eq!(seen.get(), Some(1));
    }

    #[test]
    fn a_tally_may_be_dropped_after_what_it_read() {
        let seen = Rc::new(Cell::new(None));
        let tally;
        {
            let items = vec![String::from("a"), String::from("b"), String::from("c")];
            let mut reading = reader::<_, HoldsBack>(&items, &seen);
            reading.set(&items[1..]);
            assert_eq!(reading.next().map(String::as_str), Some("b"));
            // Only the tally outlives `items`; it reads addresses, never the strings.
            tally = reading.tally;
        }
        drop(tally);
        assert_eq!(seen.get(), Some(1));
    }
}
