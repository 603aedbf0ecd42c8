//! Iteration over a trie: depth-first, entries of a node before its children.
//!
//! The iterator carries a fixed stack of child-slice cursors ([`MAX_DEPTH`]
//! deep), so it never allocates; the inner loop is a cursor over one node's
//! inline entries (`raw::Reader` for [`Iter`], a slice iterator for
//! [`RawIter`]).

use core::iter::FusedIterator;
use core::slice;

use crate::hooks::{Held, IterHook, cut};
use crate::raw::{Finish, NodeRef, Reader};
use crate::trie::MAX_DEPTH;

// `Walk::depth` is a `u8`.
const _: () = assert!(MAX_DEPTH <= u8::MAX as usize);

/// How many siblings ahead of the node being entered are prefetched.
const PREFETCH_AHEAD: usize = 8;
/// Below this many entries (~400 KB of nodes) a trie fits in a core's L2
/// cache, where prefetching only adds instructions (measured at 1K entries:
/// ~25% of the walk); above it, misses dominate and prefetching halves them.
const PREFETCH_MIN_LEN: usize = 16 * 1024;

/// Walks the nodes under one node, depth first (a node, then its children
/// in slot order), handing out each node's entries; [`RawIter`] and
/// [`Iter`] read them.
///
/// The innermost level's children left to walk sit in `siblings`, the outer
/// levels in `stack`, and only a level with children left is pushed: moving
/// on to the next node is a pop at most, never a loop. Moving to a sibling,
/// the common move, then indexes nothing: ~1.5 to 2.5 fewer instructions
/// per element at 1K and 10K entries than with the top level in the array
/// (docs/benchmark-history.md, "What changed in session 15"). With a loop popping
/// emptied levels, LLVM turned the stack's index into a byte offset that it
/// could not bound, and the cursor's store per element came back.
///
/// `repr(C)` with the stack last, and the depth a `u8`, inside iterators
/// that are `repr(C)` with the walk last: so that LLVM can tell the stack's
/// slots from the entry cursor before it. Its alias analysis looks through
/// the index's zero extension and sees it at most 255 slots past the stack's
/// start, never on the fields before it; a `for` loop then keeps the cursor
/// in a register. With a `usize` depth (masked to the array's length or not:
/// it does not read ranges from a mask) the slot might have been anywhere,
/// and the loop stored the cursor back after every element: 6 instructions
/// per element where it is now 4 (docs/benchmark-history.md, "What changed
/// in session 14").
#[repr(C)]
pub(crate) struct Walk<'a, K, V> {
    /// How many levels of `stack` are in use (at most [`MAX_DEPTH`]).
    depth: u8,
    /// Whether to prefetch nodes ahead of the walk (see [`PREFETCH_MIN_LEN`]).
    prefetch: bool,
    /// The children left to walk at the innermost level: the stack's top,
    /// kept out of the array so that moving on to a sibling indexes nothing.
    siblings: slice::Iter<'a, NodeRef<K, V>>,
    /// The levels outside `siblings`, innermost last; `depth` of them.
    stack: [slice::Iter<'a, NodeRef<K, V>>; MAX_DEPTH],
}

impl<'a, K, V> Walk<'a, K, V> {
    /// A walk of the `len` entries under `root`, and the root's entries.
    ///
    /// Inlined into the caller, which then tests `prefetch` once, not at
    /// every node change: 0.3-0.4 fewer instructions per element of a `for`
    /// loop at 1K to 1M entries (`instructions.py`, session 17).
    #[inline(always)]
    pub(crate) fn start(root: Option<&'a NodeRef<K, V>>, len: usize) -> (Self, &'a [(K, V)]) {
        let mut walk = Self::done(len >= PREFETCH_MIN_LEN);
        let entries = match root {
            Some(root) => walk.enter(root),
            None => &[],
        };
        (walk, entries)
    }

    /// A walk with no node left.
    #[inline(always)]
    fn done(prefetch: bool) -> Self {
        Self { siblings: [].iter(), stack: core::array::from_fn(|_| [].iter()), depth: 0, prefetch }
    }

    /// Makes `node` the current one; returns its entries.
    #[inline]
    fn enter(&mut self, node: &'a NodeRef<K, V>) -> &'a [(K, V)] {
        // A leaf (most nodes) has nothing to come back to: no stack level.
        if let Some(entries) = node.leaf_entries() {
            return entries;
        }
        if self.prefetch {
            for child in node.children().iter().take(PREFETCH_AHEAD) {
                child.prefetch::<2>();
            }
        }
        let outer = core::mem::replace(&mut self.siblings, node.children().iter());
        // Only a level with children left is pushed, so that a level popped
        // always has one: moving on is then never a loop over empty levels.
        if !outer.as_slice().is_empty() {
            self.stack[usize::from(self.depth)] = outer;
            self.depth += 1;
        }
        node.entries()
    }

    /// Moves to the next node; returns its entries, or `None` at the end.
    ///
    /// Their count, taken from the node's header (the slice's length), is
    /// what [`Iter`] subtracts from its length: recomputed from the cursor,
    /// as before session 17, it cost a subtraction and a shift after the
    /// cursor's own arithmetic. Taking the next sibling first, and testing
    /// for an empty level only when there is none, tests the common move
    /// once where the emptiness test and `next()` tested it twice. Together:
    /// a `for` loop over a 1K map 11.0 → 9.6 instructions per element, 10K
    /// 14.8 → 12.0, 100K 14.6 → 12.9, 1M 16.5 → 14.7
    /// (docs/benchmark-history.md, "What changed in session 17").
    ///
    /// Inlined into the loop that calls `next()`, although a node change is
    /// rarer than an entry: out of line, the call took the iterator's
    /// address, so the loop kept its cursor in memory, and each element
    /// waited on a store and its reload (a `for` loop over a 1K map: 1.48 →
    /// 0.83 ns per element, session 12, `runtime/benches/ab.sh`).
    #[inline(always)]
    fn next_node(&mut self) -> Option<&'a [(K, V)]> {
        let child = match self.siblings.next() {
            Some(child) => child,
            None => {
                if self.depth == 0 {
                    return None;
                }
                self.depth -= 1;
                self.siblings = self.stack[usize::from(self.depth)].clone();
                let child = self.siblings.next();
                debug_assert!(child.is_some(), "a level on the stack has children left");
                child?
            }
        };
        // Keep PREFETCH_AHEAD siblings in flight: small nodes are far apart
        // in memory, and their misses then overlap.
        if self.prefetch
            && let Some(ahead) = self.siblings.as_slice().get(PREFETCH_AHEAD - 1)
        {
            ahead.prefetch::<2>();
        }
        Some(self.enter(child))
    }

    /// Folds every entry under the nodes left: what is left at each level,
    /// innermost first; every sub-tree by recursion ([`fold_tree`]), so the
    /// walk keeps its cursors in registers and a leaf costs no stack push.
    #[inline]
    fn fold<B, F: FnMut(B, &'a (K, V)) -> B>(self, mut acc: B, f: &mut F) -> B {
        let levels = self.stack[..usize::from(self.depth)].iter().rev();
        for level in core::iter::once(&self.siblings).chain(levels) {
            acc = match self.prefetch {
                true => fold_tree::<_, _, _, true>(level.as_slice(), acc, f),
                false => fold_tree::<_, _, _, false>(level.as_slice(), acc, f),
            };
        }
        acc
    }
}

impl<K, V> Clone for Walk<'_, K, V> {
    fn clone(&self) -> Self {
        Self { siblings: self.siblings.clone(), stack: self.stack.clone(), depth: self.depth, prefetch: self.prefetch }
    }
}

/// Walks every entry under one node, depth first, a node's entries before
/// its children's (the diff's walk of a sub-tree, and [`Iter`]'s `fold`).
#[repr(C)]
pub(crate) struct RawIter<'a, K, V> {
    entries: slice::Iter<'a, (K, V)>,
    walk: Walk<'a, K, V>,
}

impl<'a, K, V> RawIter<'a, K, V> {
    /// A walk of a sub-tree of unknown size: prefetches as for a large one.
    pub(crate) fn new(root: Option<&'a NodeRef<K, V>>) -> Self {
        let (walk, entries) = Walk::start(root, usize::MAX);
        Self { entries: entries.iter(), walk }
    }
}

impl<'a, K, V> Iterator for RawIter<'a, K, V> {
    type Item = &'a (K, V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.entries.next() {
                return Some(entry);
            }
            self.entries = self.walk.next_node()?.iter();
        }
    }

    /// Internal iteration (`fold`, hence `sum`, `for_each`, `count`): what is
    /// left of the current node's entries, then the rest of the walk
    /// ([`Walk::fold`]). Same order as `next`.
    #[inline]
    fn fold<B, F: FnMut(B, Self::Item) -> B>(self, init: B, mut f: F) -> B {
        let acc = fold_entries(self.entries.as_slice(), init, &mut f);
        self.walk.fold(acc, &mut f)
    }
}

impl<K, V> Clone for RawIter<'_, K, V> {
    fn clone(&self) -> Self {
        Self { entries: self.entries.clone(), walk: self.walk.clone() }
    }
}

/// Folds every entry under `nodes`, depth first: each node's entries, then
/// its children's sub-trees. Recursion depth is bounded by [`MAX_DEPTH`].
/// `PREFETCH` is a parameter rather than a flag so that the in-cache walk
/// carries no test per node.
fn fold_tree<'a, K, V, B, const PREFETCH: bool>(
    nodes: &'a [NodeRef<K, V>],
    mut acc: B,
    f: &mut impl FnMut(B, &'a (K, V)) -> B,
) -> B {
    if PREFETCH {
        for node in nodes.iter().take(PREFETCH_AHEAD) {
            node.prefetch::<2>();
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        // Keep PREFETCH_AHEAD siblings in flight, as `next_node` does.
        if PREFETCH && let Some(ahead) = nodes.get(i + PREFETCH_AHEAD) {
            ahead.prefetch::<2>();
        }
        acc = match node.leaf_entries() {
            Some(entries) => fold_leaf(entries, acc, f),
            None => {
                let acc = fold_entries(node.entries(), acc, f);
                fold_children::<_, _, _, PREFETCH>(node.children(), acc, f)
            }
        };
    }
    acc
}

/// Folds a leaf's entries. Most leaves are small, and the most common one
/// in maps up to ~100K is a pair (two keys that shared a slot one level up):
/// it is folded as two calls, not as a loop that LLVM vectorizes and whose
/// set-up costs more than two entries (a 1K map's iteration went from 9 to
/// 7 instructions per element, `instructions.py`).
#[inline(always)]
fn fold_leaf<'a, K, V, B>(entries: &'a [(K, V)], acc: B, f: &mut impl FnMut(B, &'a (K, V)) -> B) -> B {
    match entries {
        [a, b] => {
            let acc = f(acc, a);
            f(acc, b)
        }
        _ => fold_entries(entries, acc, f),
    }
}

/// Folds a node's inline entries two at a time. A plain slice fold is
/// vectorized by LLVM for a summing closure, and for the ~12 entries of a
/// 1K map's node its set-up, its vector loop and its scalar tail each end
/// in a branch whose count varies from node to node; two at a time (which
/// LLVM unrolls, and does not vectorize) is one loop and one test. The
/// `iter` fold at 1K: 6.9 -> 5.7 instructions per element
/// (`instructions.py`), 380-415 -> 292-320 ns per iteration in alternating
/// runs of the `peers` bench; 100K read 2.5-3% slower (docs/benchmark-history.md,
/// "What changed in session 14").
#[inline(always)]
fn fold_entries<'a, K, V, B>(entries: &'a [(K, V)], mut acc: B, f: &mut impl FnMut(B, &'a (K, V)) -> B) -> B {
    let mut pairs = entries.chunks_exact(2);
    for pair in &mut pairs {
        acc = f(acc, &pair[0]);
        acc = f(acc, &pair[1]);
    }
    if let [last] = pairs.remainder() {
        acc = f(acc, last);
    }
    acc
}

/// [`fold_tree`] over a node's children. In an in-cache walk the leaves
/// among them (most of them: a leaf holds two to four entries) are folded
/// here rather than by a call, which would cost as much as their entries
/// (measured at 1K: ~0.66 → ~0.53 ns per element). A prefetching walk keeps
/// the call: there, misses dominate, and the larger loop measured ~4% slower.
#[inline(always)]
fn fold_children<'a, K, V, B, const PREFETCH: bool>(
    children: &'a [NodeRef<K, V>],
    mut acc: B,
    f: &mut impl FnMut(B, &'a (K, V)) -> B,
) -> B {
    if PREFETCH {
        if !children.is_empty() {
            acc = fold_tree::<_, _, _, PREFETCH>(children, acc, f);
        }
        return acc;
    }
    for child in children {
        acc = match child.leaf_entries() {
            Some(entries) => fold_leaf(entries, acc, f),
            None => {
                let acc = fold_entries(child.entries(), acc, f);
                fold_tree::<_, _, _, PREFETCH>(child.children(), acc, f)
            }
        };
    }
    acc
}

impl<K, V> FusedIterator for RawIter<'_, K, V> {}

/// An iterator over a snapshot's entries, as `(&K, &V)`, in unspecified order.
///
/// Created by [`View::iter`](crate::View::iter). Allocates nothing; its length
/// is known exactly.
#[must_use = "iterators are lazy and do nothing unless consumed"]
#[repr(C)]
pub struct Iter<'a, K, V> {
    /// The current node's unread entries, and what rides with them ([`Rest`]).
    /// Its dropped part needs nothing alive, so an `Iter` may be dropped
    /// after its snapshot (and after what its keys borrow), with the
    /// `instrument` feature (whose hook records the iteration then) as
    /// without it (`raw::Reader`).
    reader: Reader<'a, (K, V), Rest, Held>,
    walk: Walk<'a, K, V>,
}

/// What rides with an [`Iter`]'s cursor, and is told on drop how much the
/// cursor left unread.
pub(crate) struct Rest {
    /// How many items follow the current node's unread ones: the
    /// iterator's length is this plus the cursor's window and what is held
    /// back ([`Iter::remaining`]). Counted per node, not per item, so that
    /// `next()`'s fast path is the cursor alone.
    beyond: usize,
    hook: IterHook,
}

impl Finish for Rest {
    /// Without the feature the cursor counts nothing (`unread` is `None`),
    /// and the hook records nothing.
    #[inline(always)]
    fn finish(&mut self, unread: Option<usize>) {
        self.hook.dropped(unread.map(|unread| self.beyond + unread));
    }
}

impl<'a, K, V> Iter<'a, K, V> {
    /// An iteration that instrumentation does not see (a batch's, or one the crate makes for itself).
    pub(crate) fn new(root: Option<&'a NodeRef<K, V>>, len: usize) -> Self {
        Self::with_hook(root, len, IterHook::none())
    }

    pub(crate) fn with_hook(root: Option<&'a NodeRef<K, V>>, len: usize, hook: IterHook) -> Self {
        let (walk, entries) = Walk::start(root, len);
        let rest = Rest { beyond: len - entries.len(), hook };
        let mut it = Self { reader: Reader::with(entries, rest), walk };
        it.cut();
        it
    }

    /// The instrumentation's hook.
    #[inline(always)]
    pub(crate) fn hook(&self) -> &IterHook {
        &self.reader.rider().hook
    }

    /// The instrumentation's hook (only the instrumented build swaps it).
    #[cfg_attr(not(feature = "instrument"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn hook_mut(&mut self) -> &mut IterHook {
        &mut self.reader.rider_mut().hook
    }

    /// How many items are left: the iterator's length.
    #[inline(always)]
    pub(crate) fn remaining(&self) -> usize {
        self.reader.rider().beyond + self.reader.len() + self.reader.held()
    }

    /// The `next()` after the current node's entries ran out, when the
    /// instrumentation does not watch it: the entries held back, or the
    /// next node's. (Entries are held back only up to a watched `next()`,
    /// which opens them with [`refill`](Self::refill), so the `held()`
    /// branch here is a guard. Taking them in the watched path itself
    /// rather than in this loop measured slower before session 43: the
    /// instrumented `for` loop took 1.25-1.45x as long at 1K entries and
    /// 1.1x at 10K, LLVM keeping the item count in memory in one variant.)
    #[inline(always)]
    pub(crate) fn next_refill(&mut self) -> Option<(&'a K, &'a V)> {
        loop {
            if self.reader.held() != 0 {
                // The rest of this node: `beyond` stays.
                self.cut();
            } else if let Some(entries) = self.walk.next_node() {
                self.enter(entries);
            } else {
                return None;
            }
            if let Some((k, v)) = self.reader.next() {
                return Some((k, v));
            }
        }
    }

    /// Opens the window until it holds the next item, reading none: `false`
    /// if none is left. The watched `next()` reads its item only after the
    /// probe's calls, whose tracing layers may panic: such a panic then
    /// leaves the item unread, for the next `next()`.
    #[cfg_attr(not(feature = "instrument"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn refill(&mut self) -> bool {
        while self.reader.len() == 0 {
            if self.reader.held() != 0 {
                self.cut();
            } else if let Some(entries) = self.walk.next_node() {
                self.enter(entries);
            } else {
                return false;
            }
        }
        true
    }

    /// The window's next item: the watched `next()`'s, read once the
    /// window holds it ([`refill`](Self::refill)).
    #[cfg_attr(not(feature = "instrument"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn next_in_window(&mut self) -> Option<(&'a K, &'a V)> {
        self.reader.next().map(|(k, v)| (k, v))
    }

    /// Reads the next node's `entries` from here on.
    #[inline(always)]
    fn enter(&mut self, entries: &'a [(K, V)]) {
        self.reader.set(entries);
        self.reader.rider_mut().beyond -= entries.len();
        // Nothing is held back now, so an iteration that watches no later
        // `next()` (63 in 64 at the default sampling) needs no new window:
        // its node change skips the count of what is left and the window's
        // arithmetic (instrumented `for` loop: ~1 to 1.8 fewer instructions
        // per element at 1K to 100K, docs/benchmark-history.md, "What
        // changed in session 37").
        if self.hook().watches_again() {
            self.cut();
        }
    }

    /// A copy of the iterator with `hook`, cut for it.
    fn copy_with(&self, hook: IterHook) -> Self {
        let rest = Rest { beyond: self.reader.rider().beyond, hook };
        let mut it = Self { reader: self.reader.copied(rest), walk: self.walk.clone() };
        it.cut();
        it
    }

    /// Ends the cursor's window just before the next `next()` that the
    /// instrumentation watches, and holds the rest of the node's entries
    /// back, so that `next()` needs no test of its own per entry: it takes
    /// the watched path only once the window runs out. (Tested per entry,
    /// with the watched call in the caller's loop, the loop kept the cursor
    /// in memory: a `for` loop ran 1.9-2.4x the feature-off build, then
    /// 1.4-1.5x at 1K and 10K entries, 1.1-1.2x at 100K and 1M, in
    /// `AB_FEATURES=instrument runtime/benches/ab.sh`; ~2.1x, 1.4x and
    /// 1.14x since session 17 made the feature-off loop faster.) Does nothing
    /// without the feature.
    #[inline(always)]
    pub(crate) fn cut(&mut self) {
        let unwatched = self.hook().unwatched_ahead(self.remaining());
        cut(&mut self.reader, unwatched);
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some((k, v)) = self.reader.next() {
            return Some((k, v));
        }
        if self.hook().watching(self.remaining()) {
            return self.next_watched();
        }
        self.next_refill()
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.remaining();
        (remaining, Some(remaining))
    }

    /// Internal iteration (`sum`, `for_each`, `count`, ...): once the
    /// instrumentation has seen the first item, the rest is a plain walk,
    /// unless it will watch another `next()` (a sampled iteration; one in
    /// `sample_every`), which then walks by `next()`.
    #[inline]
    fn fold<B, F: FnMut(B, Self::Item) -> B>(mut self, init: B, mut f: F) -> B {
        let mut acc = init;
        if self.hook().watching(self.remaining()) {
            debug_assert!(self.reader.len() == 0, "`cut` ends the window before a watched `next()`");
            match self.next_watched() {
                Some(item) => acc = f(acc, item),
                None => return acc,
            }
        }
        if self.hook().watches_again() {
            return self.by_next(acc, f);
        }
        // Entries are held back only up to a watched `next()`, and none is
        // left to watch, so none should be held now. (Before session 43 a
        // probe that panicked inside `next_watched`, a tracing layer's
        // panic caught by the caller, left them held back under the
        // placeholder hook; the hook is put back now. The cut stays, as the
        // cheap guard that gives back whatever is held.)
        if self.reader.held() != 0 {
            self.cut();
        }
        let entries = self.reader.as_slice();
        self.reader.set(&[]);
        let walk = core::mem::replace(&mut self.walk, Walk::done(false));
        let acc = RawIter { entries: entries.iter(), walk }.fold(acc, |acc, (k, v)| f(acc, (k, v)));
        // For the count of items the instrumentation records when `self` is
        // dropped. (If `f` panics, the items folded so far go uncounted.)
        self.reader.rider_mut().beyond = 0;
        acc
    }
}

impl<'a, K, V> Iter<'a, K, V> {
    /// The rest of a `fold`, one `next()` at a time (kept out of line: only
    /// sampled iterations take it).
    #[inline(never)]
    fn by_next<B, F: FnMut(B, (&'a K, &'a V)) -> B>(self, mut acc: B, mut f: F) -> B {
        // A `for` loop calls `next()`, never `fold`.
        for item in self {
            acc = f(acc, item);
        }
        acc
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}
impl<K, V> FusedIterator for Iter<'_, K, V> {}

/// An iterator over nothing, as std's are since Rust 1.83.
impl<K, V> Default for Iter<'_, K, V> {
    fn default() -> Self {
        Iter::new(None, 0)
    }
}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        self.copy_with(self.hook().restarted(self.remaining()))
    }
}

impl<K: core::fmt::Debug, V: core::fmt::Debug> core::fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.copy_with(IterHook::none())).finish()
    }
}

macro_rules! projection {
    ($(#[$doc:meta])* $name:ident, $item:ty, |$k:ident, $v:ident| $proj:expr) => {
        $(#[$doc])*
        #[must_use = "iterators are lazy and do nothing unless consumed"]
        pub struct $name<'a, K, V> {
            inner: Iter<'a, K, V>,
        }

        impl<'a, K, V> $name<'a, K, V> {
            pub(crate) fn new(inner: Iter<'a, K, V>) -> Self {
                Self { inner }
            }
        }

        /// An iterator over nothing.
        impl<K, V> Default for $name<'_, K, V> {
            fn default() -> Self {
                Self { inner: Iter::default() }
            }
        }

        impl<'a, K, V> Iterator for $name<'a, K, V> {
            type Item = $item;

            #[inline]
            fn next(&mut self) -> Option<Self::Item> {
                let ($k, $v) = self.inner.next()?;
                let _ = (&$k, &$v);
                Some($proj)
            }

            #[inline]
            fn size_hint(&self) -> (usize, Option<usize>) {
                self.inner.size_hint()
            }

            #[inline]
            fn fold<B, F: FnMut(B, Self::Item) -> B>(self, init: B, mut f: F) -> B {
                self.inner.fold(init, |acc, ($k, $v)| {
                    let _ = (&$k, &$v);
                    f(acc, $proj)
                })
            }
        }

        impl<K, V> ExactSizeIterator for $name<'_, K, V> {}
        impl<K, V> FusedIterator for $name<'_, K, V> {}

        impl<K, V> Clone for $name<'_, K, V> {
            fn clone(&self) -> Self {
                Self { inner: self.inner.clone() }
            }
        }

        impl<'a, K, V> core::fmt::Debug for $name<'a, K, V>
        where
            $item: core::fmt::Debug,
        {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                // Unwatched, as `Iter`'s: printing is not an iteration to record.
                let unwatched = Self { inner: self.inner.copy_with(IterHook::none()) };
                f.debug_list().entries(unwatched).finish()
            }
        }
    };
}

projection!(
    /// An iterator over a snapshot's keys. Created by [`View::keys`](crate::View::keys).
    Keys, &'a K, |k, v| k
);
projection!(
    /// An iterator over a snapshot's values. Created by [`View::values`](crate::View::values).
    Values, &'a V, |k, v| v
);
