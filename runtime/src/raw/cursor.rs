//! A slice iterator whose `Drop`-carrying part has no generic parameter
//! but its rider's.
//!
//! An iterator over a snapshot records its iteration when dropped (feature
//! `instrument`), and that record needs how many items were left: the
//! position of the cursor over the current node's entries. A `Drop` impl on
//! a generic type makes the borrow checker keep every lifetime in its
//! parameters alive until the drop (dropck; `#[may_dangle]` is unstable):
//! the snapshot's borrow, and those inside the key and value types. So code
//! that compiles without the feature, such as an edition-2021 tail
//! expression `snap.values().any(..)` whose temporary iterator outlives
//! `snap`, would fail with `E0597` once some crate in the build turned the
//! feature on (features unify). So the cursor's addresses live, with the
//! item type erased, in [`Tally`], which carries the `Drop`, and the borrow
//! and the item type sit beside it in [`Reader`], which alone hands out
//! items.
//!
//! The drop reads only the cursor's addresses, never the items, so it is
//! sound after the slice is gone.

use core::marker::PhantomData;

/// What the iteration does when its reader is dropped: `unread` items were
/// left in the cursor (those it could still yield, and those held back), if
/// the cursor counts them ([`Hold`]).
pub(crate) trait Finish {
    fn finish(&mut self, unread: Option<usize>);
}

/// What a cursor keeps beside its two addresses: [`HoldsBack`], how many
/// items past its window it holds back and the item type's size, so that
/// its drop can count what was unread; or [`HoldsNothing`], zero-sized, for
/// a reader that never narrows its window and whose drop counts nothing
/// (the feature-off build's). Each field written at every node change
/// costs: one more address in every build's cursor made the feature-off
/// `for` loop over a 1K map 9.6 → 12.7 instructions per item (LLVM no
/// longer kept the cursor in one register), and so did the item size kept
/// beside the cursor (12.5).
pub(crate) trait Hold: Copy + private::Sealed {
    /// A cursor's, over items of `T`, holding nothing back.
    fn new<T>() -> Self;
    /// How many items it holds back.
    fn held(self) -> usize;
    /// Holds nothing back any more (for the next slice), in place: the item
    /// size stays, unwritten.
    fn release(&mut self);
    /// The items unread from `ptr` to `end` and held back, if it counts.
    fn unread(self, ptr: *const u8, end: *const u8) -> Option<usize>;
}

mod private {
    /// Only this module's two kinds of [`Hold`](super::Hold): `Reader`'s
    /// soundness rests on the count they keep (C1).
    pub(crate) trait Sealed {}
}

/// Items held back past the window ([`Reader::window`]), and the bytes a
/// cursor moves per item ([`stride`]).
#[cfg_attr(not(feature = "instrument"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct HoldsBack {
    held: usize,
    stride: usize,
}

/// Nothing held back, nothing counted.
#[cfg_attr(feature = "instrument", allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct HoldsNothing;

impl private::Sealed for HoldsBack {}
impl private::Sealed for HoldsNothing {}

impl Hold for HoldsBack {
    #[inline(always)]
    fn new<T>() -> Self {
        Self { held: 0, stride: stride::<T>() }
    }

    #[inline(always)]
    fn held(self) -> usize {
        self.held
    }

    #[inline(always)]
    fn release(&mut self) {
        self.held = 0;
    }

    #[inline(always)]
    fn unread(self, ptr: *const u8, end: *const u8) -> Option<usize> {
        Some(between(ptr, end, self.stride) + self.held)
    }
}

impl Hold for HoldsNothing {
    #[inline(always)]
    fn new<T>() -> Self {
        Self
    }

    #[inline(always)]
    fn held(self) -> usize {
        0
    }

    #[inline(always)]
    fn release(&mut self) {}

    #[inline(always)]
    fn unread(self, _ptr: *const u8, _end: *const u8) -> Option<usize> {
        None
    }
}

/// The unread part of one slice as `slice::Iter` holds it, as untyped
/// addresses (the [`Reader`] knows the item type; for a zero-sized one they
/// count items in bytes from the slice's start), and what it holds back.
///
/// Invariant C1: `ptr <= end` (for a zero-sized `T`, in the wrapping sense:
/// its byte counts may pass the top of memory), both addresses of items (or
/// one past the last) of the reader's type `T` in one slice, and `end` moved
/// on by the items held back is at most that slice's end.
#[derive(Clone, Copy)]
struct Cursor<H> {
    ptr: *const u8,
    end: *const u8,
    held: H,
}

// SAFETY: a `Cursor` is addresses and counts; nothing is read through them
// but by the `Reader` that owns it, whose `PhantomData<&'a [T]>` gives it
// `&[T]`'s auto traits (`Send` and `Sync` for `T: Sync`, as
// `core::slice::Iter<T>`).
unsafe impl<H: Send> Send for Cursor<H> {}
// SAFETY: as for `Send`.
unsafe impl<H: Sync> Sync for Cursor<H> {}

/// Whether `T` is zero-sized: its cursors count in bytes.
const fn zst<T>() -> bool {
    size_of::<T>() == 0
}

/// The bytes a cursor moves per item of `T`: its size, or 1 for a
/// zero-sized `T`.
const fn stride<T>() -> usize {
    if zst::<T>() { 1 } else { size_of::<T>() }
}

/// `from` moved on by `n` items of `T`.
///
/// # Safety
///
/// `from` and the result lie within (or one past) one slice of `T` (C1).
#[inline(always)]
unsafe fn advance<T>(from: *const u8, n: usize) -> *const u8 {
    match zst::<T>() {
        true => from.wrapping_add(n),
        // SAFETY: the caller's: in bounds of one slice, which an in-bounds
        // offset (unlike `wrapping_add`) lets LLVM know.
        false => unsafe { from.cast::<T>().add(n).cast() },
    }
}

/// How many items of `stride` bytes lie from `from` to `to`: addresses
/// only, so it may be asked after the slice is gone. (Wrapping: a
/// zero-sized item's count may take its addresses past the top of memory.)
#[inline(always)]
fn between(from: *const u8, to: *const u8, stride: usize) -> usize {
    to.addr().wrapping_sub(from.addr()) / stride
}

/// Where the item at `at` is: `at` itself, or for a zero-sized `T` (whose
/// `at` counts bytes, so may be unaligned) any aligned address.
#[inline(always)]
fn item<T>(at: *const u8) -> *const T {
    match zst::<T>() {
        true => core::ptr::NonNull::<T>::dangling().as_ptr(),
        false => at.cast(),
    }
}

/// A cursor and what rides with it, with neither the borrow nor the item
/// type: the part of a [`Reader`] that is dropped, whose `Drop` tells the
/// rider how much was left unread, and needs nothing alive but the rider.
pub(crate) struct Tally<R: Finish, H: Hold> {
    cursor: Cursor<H>,
    rider: R,
}

impl<R: Finish, H: Hold> Drop for Tally<R, H> {
    #[inline(always)]
    fn drop(&mut self) {
        // Addresses only: the items may be gone by now.
        let unread = self.cursor.held.unread(self.cursor.ptr, self.cursor.end);
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
    tally: Tally<R, H>,
    _borrow: PhantomData<&'a [T]>,
}

impl<'a, T, R: Finish, H: Hold> Reader<'a, T, R, H> {
    /// A reader over `entries`.
    #[inline(always)]
    pub(crate) fn with(entries: &'a [T], rider: R) -> Self {
        let (ptr, end) = Self::bounds(entries);
        Self { tally: Tally { cursor: Cursor { ptr, end, held: H::new::<T>() }, rider }, _borrow: PhantomData }
    }

    /// Reads `entries` next, from their first; drops what was unread and held.
    #[inline(always)]
    pub(crate) fn set(&mut self, entries: &'a [T]) {
        let c = &mut self.tally.cursor;
        (c.ptr, c.end) = Self::bounds(entries);
        c.held.release();
    }

    /// The addresses of `slice`'s first item and of one past its last.
    #[inline(always)]
    fn bounds(slice: &[T]) -> (*const u8, *const u8) {
        let ptr = slice.as_ptr().cast::<u8>();
        // SAFETY: one past the slice's end.
        (ptr, unsafe { advance::<T>(ptr, slice.len()) })
    }

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
        let at = item::<T>(c.ptr);
        // SAFETY: C1: `ptr` is below `end`, so one item on is at most `end`.
        c.ptr = unsafe { advance::<T>(c.ptr, 1) };
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
        unsafe { core::slice::from_raw_parts(item::<T>(self.tally.cursor.ptr), self.len()) }
    }

    /// How many items are left in the window.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        between(self.tally.cursor.ptr, self.tally.cursor.end, stride::<T>())
    }

    /// How many items are held back past the window.
    #[inline(always)]
    pub(crate) fn held(&self) -> usize {
        self.tally.cursor.held.held()
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
        let unread = between(c.ptr, c.end, stride::<T>()) + c.held.held;
        if n < unread {
            // SAFETY: C1: fewer than the unread items, all within the slice.
            c.end = unsafe { advance::<T>(c.ptr, n) };
            c.held.held = unread - n;
        } else if c.held.held != 0 {
            // SAFETY: C1: `end` moved on by what it held is within the slice.
            c.end = unsafe { advance::<T>(c.end, c.held.held) };
            c.held.held = 0;
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
        fn finish(&mut self, unread: Option<usize>) {
            self.0.set(unread);
        }
    }

    fn reader<'a, T, H: Hold>(items: &'a [T], seen: &Rc<Cell<Option<usize>>>) -> Reader<'a, T, Report, H> {
        Reader::with(items, Report(seen.clone()))
    }

    #[test]
    fn reads_a_slice_in_order_and_reports_what_was_left() {
        let seen = Rc::new(Cell::new(None));
        let items = [1u64, 2, 3, 4, 5];
        let mut r = reader::<_, HoldsBack>(&items, &seen);
        assert_eq!(r.len(), 5);
        assert_eq!(r.next(), Some(&1));
        assert_eq!(r.next(), Some(&2));
        assert_eq!(r.as_slice(), &[3, 4, 5]);
        drop(r);
        assert_eq!(seen.get(), Some(3));
    }

    #[test]
    fn a_reader_that_holds_nothing_back_counts_nothing() {
        let seen = Rc::new(Cell::new(Some(usize::MAX)));
        let items = [1u8, 2, 3];
        let mut r = reader::<_, HoldsNothing>(&items, &seen);
        assert_eq!(r.next(), Some(&1));
        assert_eq!((r.len(), r.held()), (2, 0));
        r.set(&items[..1]);
        assert_eq!(r.as_slice(), &[1]);
        drop(r);
        assert_eq!(seen.get(), None);
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
        let copied = Rc::new(Cell::new(None));
        let mut copy = r.copied(Report(copied.clone()));
        assert_eq!((copy.len(), copy.held()), (0, 2));
        copy.window(1);
        assert_eq!(copy.next(), Some(&30));
        drop(copy);
        assert_eq!(copied.get(), Some(1), "the copy counts its own unread items");
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
