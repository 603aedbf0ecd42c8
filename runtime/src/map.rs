//! The map: one published version behind an atomic pointer, and a writer lock.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::marker::PhantomData;
use core::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use arc_swap::ArcSwap;

use crate::DefaultHashBuilder;
use crate::hooks::{HookConfig, MapHook};
use crate::raw::{self, LendGuard, Lendable, NodeRef};
use crate::sync::unmodelled::{AtomicU64, Ordering};
use crate::trie::{self, WrittenPaths};
use crate::tx::{Changed, Tx};
use crate::view::{Meta, ReadGuard, Snapshot, View};
use crate::watch::{self, Replaced, Subscription, Waiting, Watchers};

/// The name a map gets when its builder is given none.
pub const DEFAULT_NAME: &str = "snapmap";

/// A concurrent hash map whose readers take O(1) point-in-time [`Snapshot`]s.
///
/// Readers never lock and never wait: [`snapshot`](Self::snapshot) is one
/// `ArcSwap::load_full` (a reference-count increment and a few uncontended
/// atomics), and what it returns never changes. Writers
/// ([`insert`](Self::insert), [`remove`](Self::remove), [`update`](Self::update))
/// take turns on a mutex, copy the trie path they touch, and publish the new
/// version with one atomic pointer swap; they never wait for readers.
///
/// Keys need `Hash + Eq + Clone` and values `Clone`, because a write copies the
/// nodes on its path; writes also need the hasher to be `Clone` (each version
/// carries its own, so that a snapshot hashes lookups without the map).
/// Where entries own memory (`String` keys, `Arc` or `Vec` values), a copy
/// can *borrow* the entries of the node it copies instead of cloning them,
/// and clone only the entry it writes, or the one that a key
/// added or removed moves (docs/design.md, "Lending entries"), also when one
/// batch adds or removes several keys in the same node; `u64`-like entries
/// are copied bit for bit. Whether a map's copies borrow is decided for its
/// key and value types together: in any map when both are listed std types
/// (integers, `String`, `Box<str>`, `Arc<str>`, `Vec<u8>`, ...: see
/// [`Lendable`]); otherwise only in a map built with
/// [`lend_entries`](SnapMapBuilder::lend_entries) (both types [`Lendable`]:
/// `String`, `Arc<T>` for any `T` and `Vec<T>` for a lendable `T` are, and
/// types of your own can be) or [`lend_copy_values`](SnapMapBuilder::lend_copy_values) (a `Copy`
/// value). Other maps clone every entry of each node a write copies.
/// So wrap large values in an `Arc`, and build the map with `lend_entries`:
/// a default `SnapMap<String, Arc<T>>` clones each copied node's keys (an
/// allocation each) and counts up its `Arc`s, one built with
/// `SnapMap::<String, Arc<T>>::builder().lend_entries().build()` clones
/// neither. Keys that clone without allocating, such as
/// `Arc<str>`, make the writes that still clone cheaper (a count increment
/// rather than an allocation; lookups by `&str` work either way;
/// `docs/benchmarks.md`, "String keys", has the figures):
///
/// ```
/// use std::sync::Arc;
/// use snapview::SnapMap;
///
/// let routes: SnapMap<Arc<str>, u16> = SnapMap::new();
/// routes.insert(Arc::from("/api"), 8080);
/// routes.update(|tx| *tx.entry(Arc::from("/api")).or_insert(0) += 1);
/// assert_eq!(routes.snapshot().get("/api"), Some(&8081));
/// assert_eq!(routes.remove("/api"), Some(8081));
/// ```
pub struct SnapMap<K, V, S = DefaultHashBuilder> {
    current: ArcSwap<View<K, V, S>>,
    /// The writers' state, and their turn-taking.
    ///
    /// A panic while it is held leaves it consistent (the current version is
    /// replaced only after a publish succeeded; the spare is taken out before
    /// use), so poisoning is ignored.
    writer: Mutex<Writer<K, V, S>>,
    /// The thread running a batch of this map ([`this_thread`]; 0: none),
    /// so that a write from inside the batch's closure panics with a reason
    /// instead of waiting for the lock it holds itself (std's `Mutex`
    /// deadlocks then). Only the holder of `writer` stores it. A check, not
    /// part of any protocol between threads: std's atomic even under loom.
    batch_thread: AtomicU64,
    meta: Arc<Meta>,
    /// The same as `meta.hook`, one pointer closer.
    hook: MapHook,
    watchers: Arc<Watchers<K, V, S>>,
    /// Set by [`SnapMapBuilder::lend_entries`], where `K` and `V` are proven
    /// [`Lendable`]: what lets each batch's copies lend entries of types
    /// that are not lent by default.
    lend: Option<fn() -> LendGuard>,
}

/// What writers keep between writes.
struct Writer<K, V, S> {
    /// The current version (the same one the `ArcSwap` holds).
    current: Arc<View<K, V, S>>,
    /// The root of the version before `current`, if nobody else held that
    /// version when it was replaced: an unshared node that already holds a
    /// count on each of its children. The next write brings it up to date by
    /// replacing the few children that differ, instead of copying the current
    /// root (one count increment per child) and later freeing the old one
    /// (one decrement per child).
    spare: Option<NodeRef<K, V>>,
    /// The buffer of the last batch's written hashes, kept for the next one;
    /// while `unsettled`, the paths of `current`'s copies.
    written: WrittenPaths,
    /// `current`'s copies still lend: its publish left them to the next
    /// batch, which settles them before it copies anything
    /// ([`defers_settling`]).
    unsettled: bool,
    /// The last node block of 1-4 KB (past glibc's per-thread cache) freed
    /// in this map's writes and not yet reused, for the next node of the
    /// same layout they allocate; freed with the map (`raw::SpareBlock`).
    block: raw::SpareBlock,
}

impl<K, V, S> Writer<K, V, S> {
    /// Settles the current version's copies if its publish left them lending
    /// ([`defers_settling`]): before a batch or a clone copies its nodes, and
    /// before the map goes. Runs no user code: only entries without
    /// destructors are left lending.
    fn settle_current(&mut self) {
        if !self.unsettled {
            return;
        }
        if let Some(root) = self.current.root() {
            raw::settle_node(root);
            trie::settle_written(root, &self.written);
        }
        self.mark_settled();
    }

    /// The current version is settled: its snapshots may be copied by
    /// another map's writer (a restore), and the written paths go.
    fn mark_settled(&mut self) {
        self.unsettled = false;
        self.current.mark_settled();
        self.written.clear();
    }
}

/// Whether a publish whose replaced version a reader still holds leaves its
/// copies lending, for the next batch to settle, rather than settling them
/// now by giving each lent child a count.
///
/// By the next batch the reader has usually let go, and the copies then take
/// the old nodes' counts over without touching a child, as when no one held
/// them (docs/design.md, "Settling later"); settled now, each copy counts
/// every child it shares (~190 atomic increments at 1M keys) and the
/// reader's drop takes them back. The price is memory: until the next write
/// (or `clone`, or the map's drop), the replaced paths stay allocated after
/// their last reader goes. So only
/// - where entries have no destructor: otherwise the old version's replaced
///   values would outlive its last snapshot, which must drop them;
/// - where entries are small ([`DEFERRED_ENTRY_MAX`]) and the batch wrote
///   few keys ([`DEFERRED_WRITES_MAX`]): what stays allocated is then ~1.5 MB
///   at most at 1M keys, not a version's worth;
/// - in a map never cloned: a clone may restore this map's versions, which
///   it shares only once they are settled, and copies otherwise.
fn defers_settling<K, V>(meta: &Meta, written: &WrittenPaths) -> bool {
    !mem::needs_drop::<(K, V)>()
        && mem::size_of::<(K, V)>() <= DEFERRED_ENTRY_MAX
        && written.len() <= DEFERRED_WRITES_MAX
        // Relaxed: set by `clone` under this map's writer lock, which the
        // caller holds.
        && !meta.cloned.load(Ordering::Relaxed)
}

/// The largest entry whose map's settling may wait for the next write: a
/// replaced leaf of 64 such entries is 4 KB.
const DEFERRED_ENTRY_MAX: usize = 64;

/// The most keys a batch whose settling waits may have written: 1024 paths
/// of a 1M-key map's copies are ~1.5 MB (a tenth of the replaced version's
/// memory would be more than the map's own growth over many writes).
const DEFERRED_WRITES_MAX: usize = 1024;

impl<K, V> SnapMap<K, V, DefaultHashBuilder> {
    /// An empty map with the default hasher (foldhash, randomly seeded per map).
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }

    /// A builder, to name the map or choose its hasher.
    pub fn builder() -> SnapMapBuilder<K, V, DefaultHashBuilder> {
        SnapMapBuilder {
            name: None,
            hasher: DefaultHashBuilder::default(),
            hooks: HookConfig::default(),
            lend: None,
            _map: PhantomData,
        }
    }
}

impl<K, V, S> SnapMap<K, V, S> {
    /// An empty map with this hasher and the default name.
    pub fn with_hasher(hasher: S) -> Self {
        Self::from_parts(DEFAULT_NAME.into(), hasher, HookConfig::default(), None)
    }

    fn from_parts(name: Box<str>, hasher: S, hooks: HookConfig, lend: Option<fn() -> LendGuard>) -> Self {
        let hook = MapHook::new(&name, hooks);
        let meta = Arc::new(Meta::new(name, hook));
        Self::starting_at(View::new(None, 0, 0, hasher, meta), lend)
    }

    /// A map whose current version is `first`, and the first of its own
    /// that it publishes is `first`'s version + 1.
    fn starting_at(first: View<K, V, S>, lend: Option<fn() -> LendGuard>) -> Self {
        let meta = Arc::clone(first.meta());
        let hook = meta.hook.clone();
        let first = Arc::new(first);
        let current = ArcSwap::new(Arc::clone(&first));
        // Gives this thread its arc-swap record now (an allocation, once per
        // thread), so that the thread that builds a map and reads it never
        // sees its first snapshot allocate.
        drop(current.load());
        Self {
            current,
            writer: Mutex::new(Writer {
                current: first,
                spare: None,
                written: WrittenPaths::default(),
                unsettled: false,
                block: raw::SpareBlock::default(),
            }),
            batch_thread: AtomicU64::new(0),
            meta,
            hook,
            watchers: Watchers::new(),
            lend,
        }
    }

    /// The current version, owned: O(1), allocation-free, never changes.
    ///
    /// (arc-swap, which publishes the versions, gives each thread a record the
    /// first time it loads: a thread's first snapshot may allocate it, once;
    /// it is reused by later threads when this one ends. The thread that
    /// builds a map gets its record then. With `instrument`, a thread's first
    /// call on maps of one name allocates its histogram shard for that name,
    /// once (the builder's thread gets it when the map is built), and an
    /// enabled `tracing` subscriber receives a span per snapshot, and
    /// allocates as it does.)
    #[inline]
    #[must_use]
    pub fn snapshot(&self) -> Snapshot<K, V, S> {
        Snapshot::from_arc(self.hook.snapshot(|| self.current.load_full(), |view| view.version()))
    }

    /// The current version, borrowed for a short read: cheaper than
    /// [`snapshot`](Self::snapshot); see [`ReadGuard`].
    #[inline]
    #[must_use]
    pub fn read(&self) -> ReadGuard<K, V, S> {
        ReadGuard::new(self.hook.read(|| self.current.load(), |view| view.version()))
    }

    /// The current version number: +1 per published write or batch, from 0
    /// for an empty map (a map built from entries, by `collect`, `From` or
    /// `Deserialize`, starts at 1: its entries are its first version).
    pub fn version(&self) -> u64 {
        self.current.load().version()
    }

    /// The number of entries in the current version.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether the current version is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map's name (see [`SnapMapBuilder::name`]).
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// A [`Subscription`] whose [`changed`](Subscription::changed) resolves
    /// with each new version published from now on (coalesced when several
    /// come between two waits), and `None` once the map is dropped.
    ///
    /// # Panics
    ///
    /// Inside this map's own [`update`](Self::update): it takes the writer
    /// lock (so that a publish is either counted in or sees the new
    /// subscription), and so waits for a batch running on another thread.
    pub fn subscribe(&self) -> Subscription<K, V, S> {
        // Under the writer lock: a publish is either before (and `version`
        // includes it) or after (and sees the new subscription).
        let writer = self.lock_writer();
        self.watchers.subscribe(writer.current.version())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer<K, V, S>> {
        // Relaxed: only this thread can have stored its own number, and its
        // own stores are visible to it; another thread's number never equals
        // it. Loom runs its threads on one OS thread, where a thread-local
        // cannot tell them apart.
        if !cfg!(snapview_loom) && self.batch_thread.load(Ordering::Relaxed) == this_thread() {
            panic!(
                "a write to a SnapMap from inside its own `update` (insert, remove, clear, extend, restore, \
                 update, try_update, subscribe or clone on the same map) would wait for itself: write through the `Tx` \
                 the closure gets"
            );
        }
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V, S> SnapMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Inserts or replaces, publishing a new version; returns the value replaced.
    ///
    /// # Panics
    ///
    /// As [`update`](Self::update) does: inside this map's own batch; and,
    /// with the version published, when a replaced value's `Drop`, a
    /// `tracing` layer or a subscription's `Waker` panics.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.update(|tx| tx.insert(key, value))
    }

    /// Removes `key`, publishing a new version if it was present; returns its value.
    ///
    /// # Panics
    ///
    /// As for [`insert`](Self::insert).
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.update(|tx| tx.remove(key))
    }

    /// Removes every entry, publishing a new version if there were any.
    ///
    /// # Panics
    ///
    /// As for [`insert`](Self::insert).
    pub fn clear(&self) {
        self.update(|tx| tx.clear());
    }

    /// Publishes `version`'s entries again, as a new version: the rollback to
    /// the last good configuration. `version` is a version held by a
    /// [`Snapshot`] or a [`ReadGuard`]; the new version's number is the
    /// current one + 1, as for any write. The same as
    /// `update(|tx| tx.restore(version))`: see [`Tx::restore`].
    ///
    /// O(1) for a version of this map or of a clone of it: nothing is cloned
    /// or copied, and the restored version shares every node with `version`.
    /// A version of another map is copied, in O(n), as is a clone's version
    /// that its writer is still settling, a moment after publishing it.
    /// Restoring a version that holds the current version's trie (the
    /// current version itself, or one restored without copying and not
    /// written since) publishes nothing.
    ///
    /// ```
    /// # use snapview::SnapMap;
    /// let routes: SnapMap<String, u16> = SnapMap::new();
    /// routes.insert("/api".into(), 8080);
    /// let last_good = routes.snapshot();
    /// routes.insert("/api".into(), 0); // a bad reload
    /// routes.restore(&last_good);
    /// assert_eq!(routes.snapshot().get("/api"), Some(&8080));
    /// assert_eq!(routes.version(), 3);
    /// ```
    ///
    /// # Panics
    ///
    /// As for [`insert`](Self::insert).
    pub fn restore(&self, version: &View<K, V, S>) {
        self.update(|tx| tx.restore(version));
    }

    /// Runs a batch of writes and publishes them as one version: all or nothing.
    ///
    /// The closure gets a [`Tx`] that reads its own writes. Readers see either
    /// the version before or the version after, never part of the batch. If
    /// the closure (or a `Hash`, `Eq`, `Clone` it calls into) panics, nothing
    /// is published and the map stays at its last version, usable by the next
    /// writer. What the closure returns does not matter: writes made before
    /// it returns an `Err` are published. To drop them on an error, use
    /// [`try_update`](Self::try_update). A batch that writes nothing (only
    /// reads, and removals of absent keys) publishes nothing. An insert, a removal or a `get_mut` of a
    /// present key is a write even when the contents end equal to the last
    /// version's (the same value stored again, a key inserted then removed),
    /// so that batch publishes a new version: values need no `PartialEq`.
    /// [`Tx::assign`] compares values and writes only those that differ.
    ///
    /// After a publish the writer frees what only the replaced version held
    /// (unless a snapshot still holds it; then its last drop does, or, in a
    /// map of plain data, the next write: docs/design.md, "Settling later"). If a value's `Drop` panics there,
    /// the batch stays published and subscribers are told of it; the panic
    /// then propagates out of `update`. So does one from a `tracing` layer
    /// (feature `instrument`) or from a subscription's `Waker`, once every
    /// waiting subscription is woken.
    ///
    /// # Panics
    ///
    /// If the closure writes to this same map other than through the `Tx`
    /// (`insert`, `remove`, `clear`, `extend`, `restore`, `update`,
    /// `try_update`, `subscribe`, `clone`): that
    /// write would wait for the lock its own batch holds. The batch then
    /// publishes nothing, as for any panic in the closure. Reading this map
    /// (`snapshot`, `read`) is fine, and so is writing to other maps, as long
    /// as no other thread's batch writes to this one from inside a batch of
    /// theirs: two threads that nest batches of two maps in opposite orders
    /// wait for each other, as with any two locks. The check
    /// sees the batch's own thread only: a thread the closure starts and
    /// waits for (`thread::scope`) that writes to this map other than
    /// through the `Tx` waits for the batch forever, as with any lock. So
    /// does a closure that waits for this map's next version
    /// ([`Subscription::changed`]): none can come while its batch runs.
    ///
    /// The same holds for the destructors of this map's keys and values:
    /// those only the replaced version held, those a batch that publishes
    /// nothing drops, run under the writer's lock, inside the write that
    /// frees them (unless a snapshot still holds them; then they run where
    /// its last holder lets go, with no lock). A destructor there that
    /// writes to this same map panics as the closure's write would, and
    /// aborts the process if the batch is already unwinding from a panic;
    /// one that waits for a thread that writes to it waits forever. So a
    /// key's or value's `Drop` must not write to its own map: hand the work
    /// to another thread without waiting for it, as with a value stored in
    /// a `Mutex<HashMap>` whose `Drop` would lock the same mutex.
    pub fn update<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&mut Tx<'_, K, V, S>) -> R,
    {
        self.batch(f, |_| true)
    }

    /// Runs a batch that may fail: its writes are published as one version
    /// if the closure returns `Ok`, and dropped if it returns `Err`, which
    /// leaves the map at its last version, as a panic does.
    ///
    /// [`update`](Self::update) publishes whatever its closure wrote,
    /// whatever it returns: a closure that stops half-way with `?` there
    /// publishes half its writes. Here the `?` drops them all.
    ///
    /// ```
    /// # use snapview::SnapMap;
    /// let limits: SnapMap<String, u32> = SnapMap::new();
    /// let load = |text: &str| {
    ///     limits.try_update(|tx| {
    ///         for line in text.lines() {
    ///             let (name, limit) = line.split_once('=').ok_or(format!("no '=' in {line:?}"))?;
    ///             tx.insert(name.to_string(), limit.parse().map_err(|e| format!("{name}: {e}"))?);
    ///         }
    ///         Ok(tx.len())
    ///     })
    /// };
    /// assert_eq!(load("api=100\nadmin=5"), Ok(2));
    /// assert_eq!(load("api=200\nadmin=five"), Err("admin: invalid digit found in string".to_string()));
    /// // The failed load wrote api=200 before it stopped: none of it was published.
    /// assert_eq!(limits.snapshot().get("api"), Some(&100));
    /// assert_eq!(limits.version(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// As [`update`](Self::update): a closure that writes to this same map
    /// other than through the `Tx`.
    pub fn try_update<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut Tx<'_, K, V, S>) -> Result<R, E>,
    {
        self.batch(f, Result::is_ok)
    }

    /// `update`, whose writes are published only if `keep` says so of the
    /// closure's result.
    fn batch<R>(&self, f: impl FnOnce(&mut Tx<'_, K, V, S>) -> R, keep: fn(&R) -> bool) -> R {
        let (result, announce) = self.batch_locked(f, keep);
        if let Some(announce) = announce {
            announce.finish();
        }
        result
    }

    /// The batch, under the writer lock; what a publish leaves to do once
    /// the lock is released (wake subscribers, let go of a replaced version),
    /// since that runs other code: a waker that runs its task at once, on
    /// this thread, may write to this map.
    fn batch_locked<R>(
        &self,
        f: impl FnOnce(&mut Tx<'_, K, V, S>) -> R,
        keep: fn(&R) -> bool,
    ) -> (R, Option<Announce<K, V, S>>) {
        let publish = self.hook.start_publish();
        let mut writer = self.lock_writer();
        let _in_batch = InBatch::mark(&self.batch_thread);
        // Until the batch is over, on this thread: settling and recycling
        // copy nodes too.
        let _lend = self.lend.map(|allow| allow());
        // The nodes the batch frees and allocates, its settling's and
        // recycling's included, go through the map's kept block; a panic
        // frees it.
        let writer = &mut *writer;
        let block = raw::SpareBlockScope::open(&mut writer.block);
        writer.settle_current();
        let base = Arc::clone(&writer.current);
        // The spare was made equal to the current root when it was kept.
        let root = writer.spare.take().or_else(|| base.root().cloned());
        let mut tx = Tx::on(root, &base, mem::take(&mut writer.written), self.lend);
        let result = f(&mut tx);
        if !keep(&result) {
            // Dropped as on a panic: the copies the batch made go with it,
            // and so does the spare it started from (the next write copies
            // the root instead of recycling one).
            drop(tx);
            publish.unchanged(base.version());
            block.close(&mut writer.block);
            return (result, None);
        }
        let lent = tx.built_lending();
        // What the batch restored goes last, once the writer is whole again:
        // freeing it may run destructors, which may panic.
        let restored = tx.take_restored();
        match tx.into_changes() {
            Ok(Changed { root, len, changes, written }) => {
                let next = View::new(root, len, base.version() + 1, base.hasher().clone(), Arc::clone(base.meta()));
                let next = Arc::new(if lent { next.unsettled() } else { next });
                self.current.store(Arc::clone(&next));
                drop(mem::replace(&mut writer.current, Arc::clone(&next)));
                // Subscriptions take `next` as their latest before the old
                // version is taken back: while anyone subscribes, the latest
                // is `base`, whose reference would keep every publish of a
                // watched map from recycling its root. They are woken later,
                // after the settling, as before.
                let (superseded, waiting) =
                    if self.watchers.watched() { self.watchers.published(&next) } else { (None, Vec::new()) };
                // The replaced latest is `base` itself, or none: its drop here
                // only counts down (`base` holds the version) and runs no
                // user code. Anything else waits for the end, as below.
                let superseded = superseded.filter(|old| !Arc::ptr_eq(old, &base));
                // Settling and recycling free what only the old version held,
                // so a value's destructor may panic here, after the publish.
                // The version stands: it is settled and announced before the
                // panic goes on (docs/design.md, "Panic safety", rule 7).
                let mut deferred = false;
                let freed = panic::catch_unwind(AssertUnwindSafe(|| {
                    // `base` is now the only holder of the old version unless
                    // a reader still has it (arc-swap has turned every
                    // reader's pending load into a counted reference by now).
                    // If one has, dropping `base` may still free the version
                    // here, should that reader let go meanwhile.
                    let old = Arc::try_unwrap(base);
                    deferred = old.is_err() && lent && defers_settling::<K, V>(next.meta(), &written);
                    if !deferred {
                        let old_root = old.ok().and_then(View::into_root);
                        settle_and_recycle(&mut writer.spare, old_root, next.root(), &written, lent);
                    }
                }));
                if freed.is_err()
                    && let Some(root) = next.root().filter(|_| lent)
                {
                    settle_despite_panics(root, &written);
                }
                writer.written = written;
                // A panic (the hasher's drop, with the old version's) had the
                // copies settled above, deferred or not.
                if deferred && freed.is_ok() {
                    writer.unsettled = true;
                } else {
                    next.mark_settled();
                    writer.written.clear();
                }
                let freed = freed.and(panic::catch_unwind(AssertUnwindSafe(|| drop(restored))));
                // A tracing layer may panic here too: that panic, like a
                // destructor's, goes on only after the announcing.
                let freed = freed.and(publish.published(next.version(), changes));
                block.close(&mut writer.block);
                (result, Some(Announce { waiting, superseded, freed }))
            }
            // Nothing changed: the working root equals the current one in
            // contents. A write that panicked (and was caught) may have left
            // copies on its path: they are settled and the spare brought back
            // to the current root along the same paths, so that they hold no
            // clone of an entry and no lender once the batch is over.
            Err((root, mut written)) => {
                if let Some(root) = root.as_ref().filter(|_| lent) {
                    raw::settle_node(root);
                    trie::settle_written(root, &written);
                }
                writer.spare = spare_for(root, base.root(), &written);
                written.clear();
                writer.written = written;
                publish.unchanged(base.version());
                // Nothing published, nothing to announce: a destructor's
                // panic goes on from here (and frees the block).
                drop(restored);
                block.close(&mut writer.block);
                (result, None)
            }
        }
    }
}

/// What a publish leaves to do after the writer lock and the batch's mark
/// are gone: wake the subscriptions that wait, let go of a replaced latest
/// version, and go on with a destructor's panic caught while settling.
struct Announce<K, V, S> {
    waiting: Waiting,
    superseded: Replaced<K, V, S>,
    freed: thread::Result<()>,
}

impl<K, V, S> Announce<K, V, S> {
    /// A replaced latest other than the old version (none is known: see
    /// `batch_locked`) is let go only after the wake-ups, as before session
    /// 39: it may be an old version's last holder, and its values' `Drop`s
    /// (which may panic) come after the announcing, as does a panic of a
    /// subscriber's waker. The first panic goes on once all is done.
    fn finish(self) {
        let Self { waiting, superseded, freed } = self;
        let woken = watch::wake_all(waiting);
        let freed = freed.and(woken).and(panic::catch_unwind(AssertUnwindSafe(|| drop(superseded))));
        if let Err(payload) = freed {
            panic::resume_unwind(payload);
        }
    }
}

/// A number that tells the calling thread apart from every other live
/// thread (never 0): the address of a thread-local.
fn this_thread() -> u64 {
    thread_local!(static MARK: u8 = const { 0 });
    MARK.with(|mark| core::ptr::from_ref(mark).addr() as u64)
}

/// Marks the calling thread as running a batch of one map, until dropped
/// (also when the batch unwinds), which happens before the writer lock goes.
struct InBatch<'a>(&'a AtomicU64);

impl<'a> InBatch<'a> {
    fn mark(batch_thread: &'a AtomicU64) -> Self {
        // Relaxed: read back only by this thread (see `lock_writer`); the
        // writer lock orders it for the next holder.
        batch_thread.store(this_thread(), Ordering::Relaxed);
        Self(batch_thread)
    }
}

impl Drop for InBatch<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// After a publish: makes the new version own all its nodes' children
/// ([`trie::settle_written`]; nothing to do if the batch made no lending copy,
/// `lent` false) and keeps the old root as the next spare.
///
/// The order matters. A new root copied from the old one borrows from it, so
/// it is settled first (by counts: the old root is still held), which leaves
/// the old root unshared for recycling. Recycling (or dropping the old root)
/// then releases the old version's nodes that the batch replaced, so that
/// settling the copies below takes their counts over instead of adding new ones.
fn settle_and_recycle<K: Clone, V: Clone>(
    spare: &mut Option<NodeRef<K, V>>,
    old: Option<NodeRef<K, V>>,
    current: Option<&NodeRef<K, V>>,
    written: &WrittenPaths,
    lent: bool,
) {
    let root = current.filter(|_| lent);
    if let Some(root) = root {
        raw::settle_node(root);
    }
    *spare = spare_for(old, current, written);
    if let Some(root) = root {
        trie::settle_written(root, written);
    }
}

/// Settles the copies that a panicking destructor left lending, walking the
/// written paths again until a walk completes. Each panic comes after its
/// node's lending state was taken out (`raw::settle_node`), so every walk
/// settles at least one copy more than the last, and the loop ends. The
/// panics of these walks are dropped: the caller resumes the first one.
fn settle_despite_panics<K, V>(root: &NodeRef<K, V>, written: &WrittenPaths) {
    while panic::catch_unwind(AssertUnwindSafe(|| trie::settle_written(root, written))).is_err() {}
}

/// Brings `old` (the root of a version nobody else holds) up to date with
/// `current` right away, so that what only the old version held is freed now,
/// not at the next write. Kept only for a root of children alone: a spare with
/// inline entries would keep clones of values alive that no version holds.
fn spare_for<K: Clone, V: Clone>(
    old: Option<NodeRef<K, V>>,
    current: Option<&NodeRef<K, V>>,
    written: &WrittenPaths,
) -> Option<NodeRef<K, V>> {
    let (old, current) = (old?, current?);
    if current.datamap() != 0 {
        return None;
    }
    trie::recycle(old, current, written).filter(|spare| !spare.ptr_eq(current))
}

impl<K, V, S> Drop for SnapMap<K, V, S> {
    fn drop(&mut self) {
        // Snapshots may outlive the map: its last copies take their lenders'
        // counts over now, as the next batch would have (nothing to drop but
        // nodes: only entries without destructors are left lending).
        self.writer.get_mut().unwrap_or_else(PoisonError::into_inner).settle_current();
        // A waker's panic goes on once every subscription is woken; not
        // while another panic unwinds, where a second one would abort.
        if let Err(payload) = self.watchers.close()
            && !std::thread::panicking()
        {
            panic::resume_unwind(payload);
        }
    }
}

/// A second map that starts from this one's current version: O(1), no entry
/// copied, no allocation but the new map's own.
///
/// It reads that version under the map's writer lock, so it waits for a
/// batch running on another thread to end, as a write would (and inside
/// the map's own batch it panics, as a write does). Locks taken in turn
/// deadlock as usual: two threads whose batches each clone or write the
/// other's map can wait for each other.
///
/// The two share their trie, as a map shares it with the snapshots it has
/// published, and go their own ways from here: a write to either copies
/// only the path it touches, and neither the other map nor its snapshots
/// see it. The clone has this map's name, hasher and settings
/// (`sample_every`, `record_get`, `lend_entries`) and its version number,
/// and no subscriptions; from then on each map numbers its own versions, so
/// equal numbers on the two say nothing about their entries. Snapshots of
/// the two compare (`==`) and [`diff`](View::diff) as versions of one map
/// do, skipping what they still share: "what did my dry run change"
/// costs O(changes).
///
/// Unlike std's `HashMap::clone`, it clones no key or value: the entries
/// neither map has written since are the same instances in both, so a value
/// that changes through `&V` (a `Mutex`, an atomic) changes in both, as it
/// does in the versions of one map. With `instrument`, the clone records
/// under the same name as its source, so the two maps' operations add up
/// in one set of histograms (name the dry run's map apart by building it
/// instead: `SnapMap::builder().name(..)` and `extend`).
///
/// ```
/// use snapview::SnapMap;
///
/// let live: SnapMap<&str, u32> = SnapMap::from([("a", 1), ("b", 2)]);
/// let trial = live.clone();
/// trial.insert("a", 10);
/// assert_eq!(live.snapshot().get("a"), Some(&1));
/// let changes: Vec<_> = live.snapshot().diff(&trial.snapshot()).map(|change| change.key().to_string()).collect();
/// assert_eq!(changes, ["a"]);
/// ```
impl<K, V, S: Clone> Clone for SnapMap<K, V, S> {
    /// # Panics
    ///
    /// Inside this map's own [`update`](SnapMap::update), as a write would:
    /// the clone waits for the writer lock.
    fn clone(&self) -> Self {
        // Under the writer lock: a batch settles the nodes it copied after it
        // publishes them (docs/design.md, "Lending copies"), and a clone's
        // writer must not copy a node whose lending is half settled. A reader
        // never looks at that state; a writer does.
        let mut writer = self.lock_writer();
        // The clone's writer copies these nodes too: none may still lend;
        // and from now on the two may restore each other's versions, which
        // they share only once settled, so both settle at each publish.
        writer.settle_current();
        // Relaxed: read by the writers of the maps sharing `meta`, under
        // their locks: this one's, held here, and the clone's, made after.
        self.meta.cloned.store(true, Ordering::Relaxed);
        let current = &writer.current;
        let root = current.root().cloned();
        let first =
            View::new(root, current.len(), current.version(), current.hasher().clone(), Arc::clone(current.meta()));
        Self::starting_at(first, self.lend)
    }
}

impl<K, V, S: Default> Default for SnapMap<K, V, S> {
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

/// The current version's entries, as std's `HashMap` prints them
/// (`{k: v, ...}`), like a snapshot; [`name`](SnapMap::name) and
/// [`version`](SnapMap::version) say which map and version it was.
impl<K, V, S> fmt::Debug for SnapMap<K, V, S>
where
    K: fmt::Debug,
    V: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.current.load(), f)
    }
}

/// Two maps are equal when their current versions hold the same entries (see
/// [`View`]'s `PartialEq`). Each side is read once, at the call: a map written
/// meanwhile may compare either way.
impl<K, V, S> PartialEq for SnapMap<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    fn eq(&self, other: &Self) -> bool {
        // One map is equal to itself even if a write lands between two loads.
        core::ptr::eq(self, other) || **self.current.load() == **other.current.load()
    }
}

impl<K: Hash + Eq, V: Eq, S: BuildHasher> Eq for SnapMap<K, V, S> {}

/// A map whose version 1 holds the entries, published as one batch (version
/// 0, the empty map, if there are none); of equal keys, the
/// last value is kept under the first key, as with std's `HashMap`.
impl<K, V, S> FromIterator<(K, V)> for SnapMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::default();
        map.extend(iter);
        map
    }
}

/// Inserts everything as one batch (one version; none if `iter` is empty).
impl<K, V, S> Extend<(K, V)> for SnapMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        (&*self).extend(iter);
    }
}

/// Inserts everything as one batch, like `Extend` on the map itself: writers
/// take `&self`, so a shared map (an `Arc<SnapMap>`, a `static`) can be
/// extended too, as `(&*map).extend(entries)`.
///
/// The iterator runs inside the batch, under the writer's lock: every other
/// writer of the map waits for it to end. An iterator fed by a thread that
/// writes to this map (a channel's receiver) waits forever: collect its
/// entries first.
impl<K, V, S> Extend<(K, V)> for &SnapMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.update(|tx| tx.extend(iter));
    }
}

/// Copies the entries in as one batch, as std's `HashMap` extends from
/// references for `Copy` types: `map.extend(other_snapshot.iter())`.
impl<'a, K, V, S> Extend<(&'a K, &'a V)> for SnapMap<K, V, S>
where
    K: Hash + Eq + Copy + 'a,
    V: Copy + 'a,
    S: BuildHasher + Clone,
{
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        (&*self).extend(iter);
    }
}

/// As `Extend<(&K, &V)>` on the map itself, through `&SnapMap`.
impl<'a, K, V, S> Extend<(&'a K, &'a V)> for &SnapMap<K, V, S>
where
    K: Hash + Eq + Copy + 'a,
    V: Copy + 'a,
    S: BuildHasher + Clone,
{
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        self.extend(iter.into_iter().map(|(&k, &v)| (k, v)));
    }
}

/// `SnapMap::from([(k1, v1), (k2, v2)])`: a map whose version 1 holds these
/// entries (version 0 if `N` is 0); of equal keys, the
/// last value is kept under the first key, as with std's `HashMap`.
impl<K, V, const N: usize> From<[(K, V); N]> for SnapMap<K, V, DefaultHashBuilder>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    fn from(entries: [(K, V); N]) -> Self {
        Self::from_iter(entries)
    }
}

/// Configures a [`SnapMap`]: its name (which labels its telemetry) and hasher.
#[must_use = "a builder makes no map until `build()`"]
pub struct SnapMapBuilder<K, V, S = DefaultHashBuilder> {
    name: Option<Box<str>>,
    hasher: S,
    hooks: HookConfig,
    lend: Option<fn() -> LendGuard>,
    _map: PhantomData<fn() -> (K, V)>,
}

impl<K, V, S: fmt::Debug> fmt::Debug for SnapMapBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapMapBuilder")
            .field("name", &self.name)
            .field("hasher", &self.hasher)
            .field("hooks", &self.hooks)
            .field("lend_entries", &self.lend.is_some())
            .finish()
    }
}

impl<K, V, S> SnapMapBuilder<K, V, S> {
    /// Names the map; instrumentation labels its spans and metrics with it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into().into_boxed_str());
        self
    }

    /// Uses this hasher instead of the default.
    pub fn hasher<S2>(self, hasher: S2) -> SnapMapBuilder<K, V, S2> {
        SnapMapBuilder { name: self.name, hasher, hooks: self.hooks, lend: self.lend, _map: PhantomData }
    }

    /// Lets a write share the entries of the nodes it copies with the copy
    /// (*lend* them) instead of cloning them, for key and value types that
    /// are not lent by default: a clone fewer per entry of each copied node
    /// (an allocation, for a type that owns a `String`).
    ///
    /// Maps of common std types (integers, `String`, `Box<str>`, `Arc<str>`,
    /// `Vec<u8>`, ...) lend without it; see [`Lendable`] for the list and for
    /// what a type must promise.
    pub fn lend_entries(mut self) -> Self
    where
        K: Lendable,
        V: Lendable,
    {
        self.lend = Some(LendGuard::allow::<K, V>);
        self
    }

    /// [`lend_entries`](Self::lend_entries) for a value type that is `Copy`
    /// (counters, an enum, a small struct of numbers): no `unsafe impl
    /// Lendable` needed, since a `Copy` type can hold no cell (`UnsafeCell`
    /// is not `Copy`) and owns nothing that it drops. What it saves is the
    /// keys' clones: a map of `String` keys and such values otherwise clones
    /// every key of each node a write copies. That pays where a batch writes
    /// a small part of the nodes it copies (3x faster for 1000 writes into
    /// 100K keys); a batch that rewrites nearly every key of a small map
    /// clones the keys it writes anyway and runs ~1.2x slower
    /// (`docs/benchmarks.md`, "A `Copy` value").
    ///
    /// ```
    /// use snapview::SnapMap;
    ///
    /// #[derive(Clone, Copy, Debug, Default, PartialEq)]
    /// struct Hits {
    ///     ok: u64,
    ///     failed: u64,
    /// }
    ///
    /// let stats = SnapMap::<String, Hits>::builder().lend_copy_values().build();
    /// stats.insert("/api".into(), Hits { ok: 1, failed: 0 });
    /// assert_eq!(stats.snapshot().get("/api").map(|h| h.ok), Some(1));
    /// ```
    ///
    /// A value that is not `Copy` needs [`Lendable`] and `lend_entries`:
    ///
    /// ```compile_fail,E0277
    /// use snapview::SnapMap;
    ///
    /// let names = SnapMap::<String, String>::builder().lend_copy_values().build();
    /// ```
    pub fn lend_copy_values(mut self) -> Self
    where
        K: Lendable,
        V: Copy,
    {
        self.lend = Some(LendGuard::allow_copy_values::<K, V>);
        self
    }

    /// Times one call in `every` of each operation on this map (`1`: every
    /// call, `0`: none; calls are counted either way), instead of the global
    /// default (`snapview::instrument::set_default_sample_every`). Has an
    /// effect with the `instrument` feature only.
    pub fn sample_every(mut self, every: u32) -> Self {
        self.hooks.sample_every = Some(every);
        self
    }

    /// Also records look-ups (`get`, `get_key_value`, `contains_key`) as the
    /// `get` operation, sampled like the others. Off by default: a look-up is
    /// the cheapest operation there is. Has an effect with the `instrument` feature only.
    pub fn record_get(mut self, on: bool) -> Self {
        self.hooks.record_get = on;
        self
    }

    /// The empty map.
    pub fn build(self) -> SnapMap<K, V, S> {
        SnapMap::from_parts(self.name.unwrap_or_else(|| DEFAULT_NAME.into()), self.hasher, self.hooks, self.lend)
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use core::fmt;
    use core::hash::{BuildHasher, Hash};
    use core::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde::ser::{Serialize, Serializer};

    use super::SnapMap;

    /// Serializes the current version, as its [`Snapshot`](crate::Snapshot)
    /// does: a struct that holds a `SnapMap` derives `Serialize` and
    /// `Deserialize` both.
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<K: Serialize, V: Serialize, S> Serialize for SnapMap<K, V, S> {
        fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
            self.read().serialize(serializer)
        }
    }

    /// Reads a map (as a [`Snapshot`](crate::Snapshot) serializes) into a new
    /// `SnapMap`, published as one version (none if the map read is empty)
    /// and built in one pass, as
    /// [`FromIterator`] does; for a repeated key the last value wins.
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<'de, K, V, S> Deserialize<'de> for SnapMap<K, V, S>
    where
        K: Deserialize<'de> + Hash + Eq + Clone,
        V: Deserialize<'de> + Clone,
        S: BuildHasher + Clone + Default,
    {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let entries = deserializer.deserialize_map(Entries(PhantomData))?;
            Ok(entries.into_iter().collect())
        }
    }

    /// Collects a serialized map's entries in order.
    struct Entries<K, V>(PhantomData<fn() -> (K, V)>);

    /// The most entries reserved up front on a format's word: a corrupt or
    /// hostile length must not allocate more than the data it brings.
    const MAX_RESERVED: usize = 4096;

    impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
        type Value = Vec<(K, V)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(MAX_RESERVED));
            while let Some(entry) = access.next_entry()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use std::sync::Arc;

    use super::SnapMap;

    /// The race of a last subscription dropped during a publish, made
    /// deterministic: its drop has run, its reference to the watchers not
    /// yet (another reference stands in for it), so the publish still finds
    /// the map watched. The version it publishes must not be kept for a
    /// subscription that no longer exists.
    #[test]
    fn a_publish_right_after_the_last_subscription_went_keeps_no_version() {
        let map: SnapMap<u32, Arc<()>> = SnapMap::new();
        let value = Arc::new(());
        let subscription = map.subscribe();
        let its_reference_not_yet_dropped = Arc::clone(&map.watchers);
        drop(subscription);
        map.insert(1, Arc::clone(&value));
        drop(its_reference_not_yet_dropped);
        map.insert(1, Arc::new(()));
        assert_eq!(Arc::strong_count(&value), 1, "the version with the first value is still held");
    }

    /// A publish whose replaced version a reader holds leaves the copies of
    /// a map of plain data lending, counting none of the children they share
    /// with that version (`defers_settling`), and the next batch settles
    /// them: once the reader has gone, by taking the old nodes' counts over.
    #[test]
    fn a_write_under_a_held_version_is_settled_by_the_next_batch() {
        let map: SnapMap<u64, u64> = (0..10_000).map(|k| (k, k)).collect();
        let held = map.snapshot();
        map.insert(1, 2);
        let published = map.snapshot();
        let (root, old_root) = (published.root().unwrap(), held.root().unwrap());
        assert!(map.lock_writer().unsettled && !published.is_settled());
        assert!(root.is_lending(), "the settling is left to the next batch");
        let shared: Vec<_> =
            root.children().iter().filter(|c| old_root.children().iter().any(|o| o.ptr_eq(c))).collect();
        assert!(shared.len() >= 60, "the root's copy shares all but one child: {}", shared.len());
        assert!(shared.iter().all(|c| c.ref_count() == 1), "counted by the held version alone");
        drop(held);
        map.insert(3, 4);
        assert!(published.is_settled() && !root.is_lending());
        // The children the newest version shares (the one under key 3 it
        // copied is held by that copy as its lender, until it settles).
        let newest = map.snapshot();
        let still_shared = shared.iter().filter(|c| newest.root().unwrap().children().iter().any(|n| n.ptr_eq(c)));
        assert!(still_shared.clone().count() >= 60);
        assert!(
            still_shared.into_iter().all(|c| c.ref_count() == 1),
            "counted once, by the settled copy: the held version is gone"
        );
        assert_eq!((published.get(&1), published.get(&3), newest.get(&3)), (Some(&2), Some(&3), Some(&4)));
    }

    /// Entries with a destructor are settled at the publish, held or not:
    /// the replaced value goes with the last snapshot that reads it, not at
    /// the next write.
    #[test]
    fn a_map_whose_values_drop_settles_at_the_publish() {
        let map: SnapMap<u64, Arc<u64>> = (0..10_000).map(|k| (k, Arc::new(k))).collect();
        let old = Arc::new(0);
        map.insert(1, Arc::clone(&old));
        let held = map.snapshot();
        map.insert(1, Arc::new(1));
        assert!(!map.lock_writer().unsettled && map.snapshot().is_settled());
        drop(held);
        assert_eq!(Arc::strong_count(&old), 1, "dropped with the last snapshot of its version");
    }

    /// A clone settles the copies a held publish left lending (the clone's
    /// writer copies the same nodes), and from then on both maps settle at
    /// each publish: a version one of them publishes under a held snapshot
    /// is restored into the other by sharing its nodes, not by copying
    /// (which `Tx::restore` does for a version still unsettled).
    #[test]
    fn a_clone_settles_and_cloned_maps_settle_at_each_publish() {
        let live: SnapMap<u64, u64> = (0..10_000).map(|k| (k, k)).collect();
        let held = live.snapshot();
        live.insert(1, 2);
        let published = live.snapshot();
        assert!(!published.is_settled());
        let trial = live.clone();
        assert!(published.is_settled() && !published.root().unwrap().is_lending());
        let before = trial.snapshot();
        trial.insert(1, 3);
        let theirs = trial.snapshot();
        assert!(theirs.is_settled() && !trial.lock_writer().unsettled, "a cloned map settles at the publish");
        live.restore(&theirs);
        assert!(live.snapshot().root().unwrap().ptr_eq(theirs.root().unwrap()), "restored by sharing");
        let again = live.snapshot();
        live.insert(2, 3);
        assert!(!live.lock_writer().unsettled, "the source too");
        assert_eq!(
            (held.get(&1), before.get(&1), again.get(&1), live.snapshot().get(&2)),
            (Some(&1), Some(&2), Some(&3), Some(&3))
        );
    }

    /// The map's drop settles the copies a held publish left lending: a
    /// snapshot may outlive the map.
    #[test]
    fn the_maps_drop_settles_what_a_held_publish_left() {
        let map: SnapMap<u64, u64> = (0..10_000).map(|k| (k, k)).collect();
        let held = map.snapshot();
        map.insert(5, 6);
        let last = map.snapshot();
        assert!(!last.is_settled());
        drop(map);
        assert!(last.is_settled() && !last.root().unwrap().is_lending());
        assert_eq!((held.get(&5), last.get(&5)), (Some(&5), Some(&6)));
    }

    /// Only small batches of small entries leave their settling to the next
    /// write: what stays allocated meanwhile is bounded.
    #[test]
    fn large_batches_and_large_entries_settle_at_the_publish() {
        let map: SnapMap<u64, u64> = (0..100_000).map(|k| (k, k)).collect();
        let held = map.snapshot();
        map.update(|tx| (0..super::DEFERRED_WRITES_MAX as u64 + 1).for_each(|k| _ = tx.insert(k * 7, 0)));
        assert!(!map.lock_writer().unsettled, "a batch of more than DEFERRED_WRITES_MAX keys");
        let held_too = map.snapshot();
        map.update(|tx| (0..super::DEFERRED_WRITES_MAX as u64).for_each(|k| _ = tx.insert(k * 7, 1)));
        assert!(map.lock_writer().unsettled, "one of DEFERRED_WRITES_MAX keys");
        let big: SnapMap<u64, [u8; 64]> = (0..10_000).map(|k| (k, [0; 64])).collect();
        let held_big = big.snapshot();
        big.insert(1, [1; 64]);
        assert!(!big.lock_writer().unsettled, "entries larger than DEFERRED_ENTRY_MAX");
        drop((held, held_too, held_big));
    }

    /// A subscribed map recycles its old root as an unwatched one does: the
    /// subscriptions' hold on the old version goes before it is taken back
    /// (before session 39 it did not, and every watched publish copied its
    /// root afresh).
    #[test]
    fn a_watched_map_recycles_its_root() {
        for watched in [false, true] {
            // Enough keys that no root slot holds a lone entry, whatever the
            // hasher's seed: only a root of children alone is recycled
            // (`spare_for`). At 1K keys, 4% of seeds left one.
            let map: SnapMap<u64, u64> = (0..10_000).map(|k| (k, k)).collect();
            let root_has_entries = map.lock_writer().current.root().is_some_and(|root| root.datamap() != 0);
            assert!(!root_has_entries, "the test needs a root of children alone");
            let subscription = watched.then(|| map.subscribe());
            map.insert(1, 2);
            map.insert(3, 4);
            assert!(map.lock_writer().spare.is_some(), "watched: {watched}");
            assert_eq!(map.snapshot().get(&3), Some(&4));
            drop(subscription);
        }
    }
}
