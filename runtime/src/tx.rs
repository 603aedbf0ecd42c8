//! A write batch: the working copy that [`SnapMap::update`](crate::SnapMap::update) hands its closure.

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use crate::entry::Entry;
use crate::iter::{Iter, Keys, Values};
use crate::order::{TrieOrdered, hash_of_order};
use crate::raw::{LendGuard, LendingWatch, NodeRef};
use crate::trie::{self, Target, WrittenPaths};
use crate::view::View;

/// A trie root; `None` for an empty map.
pub(crate) type Root<K, V> = Option<NodeRef<K, V>>;

/// Whether a mutable access to a value counts as one more write (the batch's
/// `changes`, which the `publish` span reports), or belongs to one counted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    Write,
    Counted,
}

/// The outcome of a batch that changed something.
pub(crate) struct Changed<K, V> {
    pub(crate) root: Root<K, V>,
    pub(crate) len: usize,
    /// Effective writes (see [`Tx`]'s `changes`).
    pub(crate) changes: usize,
    /// The keys written, for bringing the writer's spare root up to date.
    pub(crate) written: WrittenPaths,
}

/// A batch of writes on a private working copy of the map, published as one
/// version when the [`update`](crate::SnapMap::update) closure returns (a
/// [`try_update`](crate::SnapMap::try_update) closure: when it returns `Ok`).
///
/// Reads see the batch's own writes. The first write under each node copies it
/// (the published version still shares it); later writes there change the copy
/// in place. If the closure panics nothing is published.
///
/// A panic that the closure catches (`catch_unwind`) in a one-entry write
/// (`insert`, `remove`, `get_mut`, an [`Entry`](crate::Entry)'s) leaves the
/// batch as it was before that write if it came from user code that runs
/// before the write: `Hash`, `Eq`, `Clone`, an `or_insert_with` closure. One
/// that comes after the write leaves the write done, as std's would: the
/// destructor of a removed or replaced key or value, and
/// [`and_modify`](crate::Entry::and_modify)'s closure, which changes the
/// value in place (the batch then publishes, whatever the closure had
/// changed). A write of many entries keeps those it wrote before the panic,
/// as std's would: `extend` its inserts so far, [`assign`](Self::assign)
/// and [`retain`](Self::retain) their writes so far; except that `extend`
/// and `assign` into an empty batch load in bulk, hashing every entry before
/// they build, so a panic in the iterator or in `Hash` leaves that batch
/// empty.
///
/// What std's `HashMap` has and a batch has not: `iter_mut`, `values_mut`,
/// `drain`, `extract_if` and `get_disjoint_mut`. Each would hand out every
/// value mutably, so the batch would copy every node that the published
/// version shares and clone every value in it, where a write copies only
/// its path. Instead, [`get_mut`](Self::get_mut) or [`entry`](Self::entry)
/// the keys that need it (collected from [`iter`](Self::iter) first);
/// collect the entries and [`clear`](Self::clear) for `drain`; and collect
/// what to take out before a [`retain`](Self::retain) for `extract_if`.
pub struct Tx<'m, K, V, S = crate::DefaultHashBuilder> {
    root: Option<NodeRef<K, V>>,
    len: usize,
    hasher: &'m S,
    /// Effective writes so far: inserts, replacements, removals (a clear counts its entries).
    changes: usize,
    written: WrittenPaths,
    lending: LendingWatch,
    /// The map's leave to lend entries of its types (`lend_entries`), for
    /// writes on another thread than the batch's ([`will_write`](Self::will_write)).
    lend: Option<fn() -> LendGuard>,
    /// The version the batch started from, if it belongs to a map: what
    /// [`restore`](Self::restore) compares with.
    base: Option<&'m View<K, V, S>>,
    /// The roots of the versions [`restore`](Self::restore)d, held until the
    /// batch is over (see there): no write in the batch may be the last
    /// holder of a node, since freeing one runs the destructors of its
    /// values, and a panic there would come after the write changed the
    /// trie but before it counted the change.
    restored: Vec<NodeRef<K, V>>,
}

/// The batch's entries as a map, with its writes so far.
impl<K: core::fmt::Debug, V: core::fmt::Debug, S> core::fmt::Debug for Tx<'_, K, V, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'m, K, V, S> Tx<'m, K, V, S> {
    /// A batch on `root`; `written` is an empty list whose buffer it reuses.
    pub(crate) fn new(
        root: Option<NodeRef<K, V>>,
        len: usize,
        hasher: &'m S,
        written: WrittenPaths,
        lend: Option<fn() -> LendGuard>,
    ) -> Self {
        Self {
            root,
            len,
            hasher,
            changes: 0,
            written,
            lending: LendingWatch::start(),
            lend,
            base: None,
            restored: Vec::new(),
        }
    }

    /// The batch of a map whose current version is `base`, on `root` (a
    /// clone of `base`'s root, or the writer's spare, equal to it).
    pub(crate) fn on(
        root: Option<NodeRef<K, V>>,
        base: &'m View<K, V, S>,
        written: WrittenPaths,
        lend: Option<fn() -> LendGuard>,
    ) -> Self {
        Self { base: Some(base), ..Self::new(root, base.len(), base.hasher(), written, lend) }
    }

    /// Whether the batch may have built a node that lends (so that its paths
    /// must be settled at publish); asked on the thread that made the `Tx`.
    pub(crate) fn built_lending(&self) -> bool {
        self.lending.built_lending()
    }

    /// Before a write touches the trie: if a `Clone` panics half-way down,
    /// the copies already made on its path must still be settled at publish;
    /// and a write on another thread than the one that made the `Tx` (it is
    /// `Send`) builds where the writer's count cannot see it. There, the
    /// returned guard lets the write's copies lend what the map lends (the
    /// batch's own guard is on its thread); hold it until the write is over.
    #[must_use]
    fn will_write(&mut self, hash: u64) -> Option<LendGuard> {
        self.written.record(hash);
        self.lending.will_write();
        match self.lending.written_elsewhere() {
            true => self.lend.map(|allow| allow()),
            false => None,
        }
    }

    /// The roots of the versions the batch restored, which it held so far:
    /// for the caller to let go of when the batch is over (this may run
    /// destructors, which may panic).
    pub(crate) fn take_restored(&mut self) -> Vec<NodeRef<K, V>> {
        core::mem::take(&mut self.restored)
    }

    /// What the batch did if any write took effect, else the working root
    /// (equal in contents to the batch's base, though a write that panicked
    /// may have copied nodes on its path) and the paths of those writes.
    pub(crate) fn into_changes(self) -> Result<Changed<K, V>, (Root<K, V>, WrittenPaths)> {
        if self.changes > 0 {
            Ok(Changed { root: self.root, len: self.len, changes: self.changes, written: self.written })
        } else {
            Err((self.root, self.written))
        }
    }

    /// The number of entries, with this batch's writes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map, with this batch's writes, is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries, with this batch's writes.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter::new(self.root.as_ref(), self.len)
    }

    /// The keys, with this batch's writes.
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys::new(self.iter())
    }

    /// The values, with this batch's writes.
    pub fn values(&self) -> Values<'_, K, V> {
        Values::new(self.iter())
    }

    /// Puts `root` (of `len` entries) in place of the batch's working copy,
    /// which goes, with every copy its writes made (a lending copy's drop
    /// settles it). The written paths go too: they led through nodes that are
    /// gone, and the spare is synced with the new root by a full comparison.
    /// And the watch on lending copies starts again (on the batch's thread):
    /// the publish then settles, and marks its version unsettled until then,
    /// only if a write after this built a lending copy.
    fn replace_root(&mut self, root: Option<NodeRef<K, V>>, len: usize) {
        self.written.clear();
        self.written.rebuilt();
        self.lending.restart();
        let old = core::mem::replace(&mut self.root, root);
        self.len = len;
        // Dropped last: a value's destructor may panic, and a batch that
        // catches it holds the new root by then.
        drop(old);
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        if let Some(root) = self.root.take() {
            self.changes += self.len;
            self.len = 0;
            // Dropped once the batch is empty: a value's destructor may
            // panic, and a batch that catches it must not keep the old `len`.
            drop(root);
        }
    }
}

impl<'m, K, V, S> Tx<'m, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Inserts or replaces; returns the value replaced, as std's `HashMap::insert`.
    ///
    /// The stored key is kept when the value is replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hasher.hash_one(&key);
        self.insert_hashed(key, hash, value)
    }

    /// [`insert`](Self::insert) of a key whose hash is known.
    fn insert_hashed(&mut self, key: K, hash: u64, value: V) -> Option<V> {
        let _lend = self.will_write(hash);
        let replaced = match &mut self.root {
            None => {
                self.root = Some(trie::singleton(hash, key, value));
                None
            }
            Some(root) => trie::insert(root, self.len, hash, key, value, self.hasher),
        };
        self.changes += 1;
        let Some((old, unused_key)) = replaced else {
            self.len += 1;
            return None;
        };
        // Dropped once the write is counted: if its `Drop` panics and the
        // batch catches it, the write must not look undone.
        drop(unused_key);
        Some(old)
    }

    /// Removes `key`; returns its value if it was present.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`; returns the stored key and value if it was present.
    pub fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_hashed(self.hasher.hash_one(key), key)
    }

    /// [`remove_entry`](Self::remove_entry) of a key whose hash is known.
    pub(crate) fn remove_hashed<Q>(&mut self, hash: u64, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // Look first, so that removing an absent key copies nothing.
        trie::get(self.root.as_ref()?, self.len, hash, key)?;
        let _lend = self.will_write(hash);
        let root = self.root.as_mut()?;
        let removed = trie::remove(root, hash, key)?;
        if root.entries().is_empty() && root.children().is_empty() {
            self.root = None;
        }
        self.len -= 1;
        self.changes += 1;
        Some(removed)
    }

    /// A mutable reference to the value of `key`, with this batch's writes.
    ///
    /// If `key` is present this counts as a write, whether or not the value is
    /// then changed: the batch publishes a version (one that equals the last,
    /// if nothing changed), and the nodes on the key's path become the batch's
    /// own copies, as for [`insert`](Self::insert). An absent key copies nothing.
    ///
    /// ```
    /// # use snapview::SnapMap;
    /// let routes: SnapMap<String, Vec<u16>> = [("api".to_string(), vec![8080])].into();
    /// let before = routes.snapshot();
    /// routes.update(|tx| tx.get_mut("api").unwrap().push(8081));
    /// assert_eq!(routes.snapshot()["api"], [8080, 8081]);
    /// assert_eq!(before["api"], [8080]); // an older version is never changed
    /// ```
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        // Look first, so that an absent key copies nothing.
        self.find(hash, key)?;
        self.value_mut(hash, Target::Key(key), Count::Write)
    }

    /// The entry of `key`, for in-place reading, changing, inserting or
    /// removing, as std's `HashMap::entry`.
    ///
    /// Looking costs no copy; the entry's writes count as [`insert`](Self::insert),
    /// [`get_mut`](Self::get_mut) and [`remove`](Self::remove) would.
    ///
    /// ```
    /// # use snapview::SnapMap;
    /// let hits: SnapMap<&str, u64> = SnapMap::new();
    /// hits.update(|tx| {
    ///     for path in ["/", "/login", "/"] {
    ///         *tx.entry(path).or_insert(0) += 1;
    ///     }
    /// });
    /// assert_eq!(hits.version(), 1); // the whole batch is one version
    /// assert_eq!(hits.snapshot()["/"], 2);
    /// ```
    pub fn entry(&mut self, key: K) -> Entry<'_, 'm, K, V, S> {
        let hash = self.hasher.hash_one(&key);
        let present = self.find(hash, &key).is_some();
        Entry::new(self, key, hash, present)
    }

    /// The value `target` names (with hash `hash`), made the batch's own: the
    /// copy-on-write descent of `get_mut`, counted as a write if it finds it
    /// and `count` says so.
    pub(crate) fn value_mut<Q>(&mut self, hash: u64, target: Target<'_, Q>, count: Count) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.root.as_ref()?;
        let _lend = self.will_write(hash);
        let root = self.root.as_mut()?;
        let value = trie::value_mut(root, hash, target)?;
        self.changes += usize::from(count == Count::Write);
        Some(value)
    }

    /// Inserts `key`, known absent, and returns its value, made the batch's own.
    ///
    /// # Panics
    ///
    /// If the insert replaced a value after all: only an `Eq` or `Hash` that
    /// answers differently for the same keys can make [`Tx::entry`] miss a
    /// key that the insert then finds. The entry for the inserted key would
    /// be another key's (`Target::Inserted` finds the entry a new key takes).
    pub(crate) fn insert_new(&mut self, key: K, hash: u64, value: V) -> &mut V {
        if let Some(replaced) = self.insert_hashed(key, hash, value) {
            drop(replaced);
            panic!(
                "snapview: a vacant entry's key was found when it was inserted: its `Hash` or `Eq` is not consistent"
            );
        }
        // The insert counted the write.
        self.value_mut::<K>(hash, Target::Inserted, Count::Counted)
            .expect("snapview bug: a key just inserted is not on its hash's path")
    }

    /// Makes the batch hold exactly `entries` (of a repeated key, the last
    /// value), writing only what differs: keys absent from `entries` are
    /// removed, and a key is inserted only if it is new or its value is not
    /// equal to the one held. Returns how many keys that wrote.
    ///
    /// The hot reload of a table read from a file: where `clear` then
    /// `extend` would rebuild every node, this keeps every node no write
    /// touched shared with the last version, so a reload that changed a few
    /// keys publishes a version whose [`diff`](crate::View::diff) from the
    /// last costs O(changes), the `publish` span counts those changes, and a
    /// reload that changed nothing publishes nothing. It costs a hash per key
    /// on both sides and a binary search per key of the batch, O(n log n) in all,
    /// where the rebuild is O(n) (a reload of 100K `String` keys measured
    /// ~1.4x the rebuild's time); into an empty batch it is that rebuild.
    ///
    /// ```
    /// # use snapview::SnapMap;
    /// let flags: SnapMap<&str, bool> = [("beta", true), ("dark", false)].into();
    /// let before = flags.snapshot();
    /// let written = flags.update(|tx| tx.assign([("beta", true), ("dark", true), ("new", false)]));
    /// assert_eq!(written, 2); // "dark" changed, "new" added; "beta" untouched
    /// assert_eq!(before.diff(&flags.snapshot()).count(), 2);
    /// // The same table again changes nothing, so publishes nothing.
    /// let version = flags.version();
    /// assert_eq!(flags.update(|tx| tx.assign([("beta", true), ("dark", true), ("new", false)])), 0);
    /// assert_eq!(flags.version(), version);
    /// ```
    pub fn assign<I>(&mut self, entries: I) -> usize
    where
        I: IntoIterator<Item = (K, V)>,
        V: PartialEq,
    {
        if self.root.is_none() {
            let changes_before = self.changes;
            self.load(entries.into_iter());
            // A repeated key is one key written, as on the path below (the
            // load counts it as the inserts in turn that `extend` means).
            self.changes = changes_before + self.len;
            return self.len;
        }
        let wanted = TrieOrdered::new(entries.into_iter(), self.hasher).laid_out_in_order();
        if wanted.is_empty() {
            let removed = self.len;
            self.clear();
            return removed;
        }
        let changes_before = self.changes;
        // One pass over the batch's entries before any write (so every `Hash`
        // and `Eq` of the comparison runs first, and each key is compared
        // once): the keys the table lacks, and the table entries held equal.
        let mut held = vec![false; wanted.len()];
        let mut unwanted: Vec<(u64, K)> = Vec::new();
        for (key, value) in self.iter() {
            let hash = self.hasher.hash_one(key);
            match wanted.position(hash, key) {
                Some(i) => held[i] = wanted.value(i) == value,
                None => unwanted.push((hash, key.clone())),
            }
        }
        for (hash, key) in &unwanted {
            self.remove_hashed(*hash, key);
        }
        let (orders, entries) = wanted.into_parts();
        for ((order, (key, value)), held) in orders.into_iter().zip(entries).zip(held) {
            if !held {
                self.insert_hashed(key, hash_of_order(order), value);
            }
        }
        self.changes - changes_before
    }

    /// Makes the batch hold exactly the entries of `version`, held by a
    /// [`Snapshot`](crate::Snapshot) or a [`ReadGuard`](crate::ReadGuard):
    /// most often an earlier version of this map, for the rollback to the
    /// last good configuration. The batch's writes so far are dropped; writes after it
    /// apply to the restored entries.
    ///
    /// For a version of this map or of a clone of it (`map.clone()`), this
    /// is O(1) and clones nothing: the batch takes `version`'s trie as its
    /// own (one count increment), so the restored version shares every node
    /// and entry instance with `version`, and its [`diff`](View::diff) with
    /// any version of the map costs O(changes), as between any two. It
    /// counts as one write (the `publish` span's `changes`). Restoring the
    /// version the batch started from undoes the batch: it then publishes
    /// nothing, unless it writes again after.
    ///
    /// A version of another map (whose hasher may place keys elsewhere) is
    /// copied instead, in O(n): every entry cloned and the trie rebuilt, as
    /// [`clear`](Self::clear) then [`extend`](Extend::extend) would; each
    /// `Clone` and `Hash` runs before the batch changes, so a panic in one
    /// leaves it as it was. So is a clone's version that its writer has
    /// just published and is still settling (see docs/design.md, "Restoring
    /// a version"): the restore never waits for another map's writer.
    ///
    /// The batch's working copy goes last: if a value's destructor panics
    /// then, the restore has taken effect (and is counted) before the panic
    /// leaves it, as with [`clear`](Self::clear).
    ///
    /// The batch holds the restored version until it is over, even if the
    /// caller lets go of `version` meanwhile, so that no later write of the
    /// batch frees its values: what only it held is dropped after the
    /// publish (a destructor's panic then leaves `update` after the version
    /// is published, as a replaced value's does), or when a batch that
    /// publishes nothing ends.
    ///
    /// ```
    /// # use snapview::SnapMap;
    /// let limits: SnapMap<&str, u32> = [("api", 100), ("admin", 5)].into();
    /// let last_good = limits.snapshot();
    /// limits.update(|tx| {
    ///     tx.insert("api", 0);
    ///     tx.remove("admin");
    /// });
    /// limits.restore(&last_good); // a new version, with last_good's entries
    /// assert_eq!(limits.snapshot(), last_good);
    /// assert_eq!(limits.version(), last_good.version() + 2);
    /// ```
    pub fn restore(&mut self, version: &View<K, V, S>) {
        let Some(base) = self.base.filter(|base| base.same_map(version)) else {
            return self.restore_by_copy(version);
        };
        if same_root(version.root(), base.root()) {
            // Back to where the batch started. With no write yet, the working
            // copy is that version already (or the writer's spare, equal to it).
            if self.changes > 0 {
                self.changes = 0;
                self.replace_root(base.root().cloned(), base.len());
            }
            return;
        }
        // A version of a clone whose writer is still settling it (just after
        // publishing it) may not be copied by another writer yet: it is read,
        // as a reader would, and copied.
        if !version.is_settled() {
            return self.restore_by_copy(version);
        }
        self.changes += 1;
        // Held to the batch's end: the writes below copy the restored nodes,
        // and once the caller lets go of `version` the copies (their lenders,
        // or the node a rebuild replaces) would hold them alone. Without this,
        // a write would free them, and a value's panicking destructor would
        // come mid-write: after the trie changed, before the change counted.
        // Every node the batch started from is held the same way, by `base`.
        // Once per root: a batch that restores in a loop holds no more.
        if let Some(root) = version.root().filter(|root| !self.restored.iter().any(|held| held.ptr_eq(root))) {
            self.restored.push(root.clone());
        }
        self.replace_root(version.root().cloned(), version.len());
    }

    /// [`restore`](Self::restore) of another map's version: a rebuild from
    /// clones of its entries. Counted as `clear` then `extend` would count it.
    fn restore_by_copy(&mut self, version: &View<K, V, S>) {
        // Unwatched: the crate's own walk, not an iteration to record
        // against the other map's name (feature `instrument`).
        let entries = version.iter_unwatched().map(|(k, v)| (k.clone(), v.clone()));
        // Every `Clone` and `Hash` runs here, before the batch changes.
        let table = TrieOrdered::new(entries, self.hasher);
        let (len, written) = (table.len(), self.len + table.yielded());
        let (orders, mut entries) = table.into_parts();
        let root = trie::build_sorted(&orders, &mut entries);
        self.changes += written;
        self.replace_root(root, len);
        // The version's keys are distinct: nothing is left to drop here.
        drop(entries);
    }

    /// Keeps only the entries for which `keep` returns true.
    ///
    /// Unlike std's `HashMap::retain`, `keep` sees `&V`, not `&mut V`: to
    /// hand out `&mut V`, the batch would have to copy every node of the map
    /// that another version shares and clone every value in it, where a
    /// filter copies only the paths of the entries it removes. To change
    /// values too, use [`get_mut`](Self::get_mut) or [`entry`](Self::entry)
    /// on the keys that need it.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let doomed: Vec<K> = self.iter().filter(|(k, v)| !keep(k, v)).map(|(k, _)| k.clone()).collect();
        for k in &doomed {
            self.remove(k);
        }
    }
}

/// Whether two versions' roots are the same trie.
fn same_root<K, V>(a: Option<&NodeRef<K, V>>, b: Option<&NodeRef<K, V>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.ptr_eq(b),
        (a, b) => a.is_none() && b.is_none(),
    }
}

impl<K, V, S> Tx<'_, K, V, S>
where
    S: BuildHasher,
{
    /// The value for `key`, with this batch's writes.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    /// The stored key and value for `key`, with this batch's writes.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(self.hasher.hash_one(key), key).map(|(k, v)| (k, v))
    }

    /// The entry of `key`, whose hash is `hash`.
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<&(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        trie::get(self.root.as_ref()?, self.len, hash, key)
    }

    /// Whether `key` is present, with this batch's writes.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).is_some()
    }
}

/// `tx[&key]`, as `std::collections::HashMap` has it, with the batch's
/// writes.
///
/// # Panics
///
/// If `key` is absent ([`get`](Tx::get) returns an `Option`).
///
/// ```
/// # use snapview::SnapMap;
/// let ports: SnapMap<String, u16> = SnapMap::from([("/api".to_string(), 8080)]);
/// ports.update(|tx| {
///     tx.insert("/static".into(), tx["/api"] + 1);
///     assert_eq!(tx["/static"], 8081);
/// });
/// ```
impl<K, Q, V, S> core::ops::Index<&Q> for Tx<'_, K, V, S>
where
    K: Borrow<Q>,
    Q: Hash + Eq + ?Sized,
    S: BuildHasher,
{
    type Output = V;

    #[inline]
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for this key in the snapview batch")
    }
}

/// The batch's entries, with its writes, as [`Tx::iter`].
impl<'a, K, V, S> IntoIterator for &'a Tx<'_, K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Copies the entries in, as std's `HashMap` extends from references for
/// `Copy` types: `tx.extend(other_snapshot.iter())`.
impl<'a, K, V, S> Extend<(&'a K, &'a V)> for Tx<'_, K, V, S>
where
    K: Hash + Eq + Copy + 'a,
    V: Copy + 'a,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        self.extend(iter.into_iter().map(|(&k, &v)| (k, v)));
    }
}

impl<K, V, S> Extend<(K, V)> for Tx<'_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Into an empty map (`FromIterator`, a first load, a reload after
    /// `clear`), the entries are hashed, sorted into trie order and built into
    /// nodes in one pass: each node allocated once, in iteration order.
    /// Otherwise, one `insert` each.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        if self.root.is_none() {
            self.load(iter.into_iter());
            return;
        }
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K, V, S> Tx<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Fills the empty working copy with `iter`; of equal keys, the last
    /// value under the first key, as `insert`s in turn would leave. `Hash` and `Eq` run before the trie is touched, so a
    /// panic in them leaves the batch empty, as it was.
    fn load(&mut self, iter: impl Iterator<Item = (K, V)>) {
        debug_assert!(self.root.is_none() && self.len == 0);
        let table = TrieOrdered::new(iter, self.hasher);
        self.written.rebuilt();
        let (len, yielded) = (table.len(), table.yielded());
        let (orders, mut entries) = table.into_parts();
        self.root = trie::build_sorted(&orders, &mut entries);
        self.len = len;
        self.changes += yielded;
        // Last: what is left are the pairs of keys given again later, and
        // their destructors may panic; the batch holds the whole load by then.
        drop(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::Tx;
    use crate::trie::WrittenPaths;

    type Hasher = foldhash::fast::FixedState;

    /// The writes `ops` counts (its `publish` span's `changes`) in an empty batch.
    fn changes_from_empty(ops: impl FnOnce(&mut Tx<'_, u32, u32, Hasher>)) -> usize {
        let hasher = Hasher::with_seed(7);
        let mut tx = Tx::new(None, 0, &hasher, WrittenPaths::default(), None);
        ops(&mut tx);
        tx.into_changes().map_or(0, |c| c.changes)
    }

    #[test]
    fn assign_into_an_empty_batch_counts_each_key_once() {
        let table = [(1, 1), (2, 2), (1, 3)];
        assert_eq!(changes_from_empty(|tx| assert_eq!(tx.assign(table), 2)), 2);
    }

    /// As `Tx`'s docs say: a bulk load hashes every entry before it builds,
    /// so it keeps none of them, where inserts in turn keep those before.
    #[test]
    fn a_panicking_iterator_leaves_an_empty_batch_empty_and_a_filled_one_with_its_inserts() {
        let hasher = Hasher::with_seed(7);
        let panicking = || (0..10).map(|k| if k == 5 { panic!("planned") } else { (k, k) });
        let mut empty = Tx::new(None, 0, &hasher, WrittenPaths::default(), None);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| empty.extend(panicking())));
        assert!(caught.is_err());
        assert_eq!((empty.len(), empty.iter().count()), (0, 0));
        empty.insert(20, 20);
        assert_eq!(empty.len(), 1);

        let mut filled = Tx::new(None, 0, &hasher, WrittenPaths::default(), None);
        filled.insert(20, 20);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| filled.extend(panicking())));
        assert!(caught.is_err());
        assert_eq!((filled.len(), filled.iter().count()), (6, 6));
    }

    #[test]
    fn extend_into_an_empty_batch_counts_what_inserts_in_turn_would() {
        let entries = [(1, 1), (2, 2), (1, 3)];
        assert_eq!(changes_from_empty(|tx| tx.extend(entries)), 3);
    }
}
