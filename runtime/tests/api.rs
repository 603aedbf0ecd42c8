//! The std-like surface: construction (`FromIterator`, `Extend` on the map
//! and on a reference to it, `From` an array, builder, `Default`), indexing,
//! `Debug` output, `IntoIterator` for references, `Borrow` look-ups, read
//! guards, pointer equality, `std::HashMap`-like return values, version rules
//! of each write, and (feature `serde`) serialization and deserialization.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

use snapview::{Change, DEFAULT_NAME, ReadGuard, SnapMap, Snapshot};

#[test]
fn from_iterator_publishes_one_version_and_last_duplicate_wins() {
    let map: SnapMap<u32, u32> = (0..10).map(|i| (i, i * i)).chain([(3, 33)]).collect();
    assert_eq!(map.version(), 1, "collect is one batch");
    assert_eq!(map.len(), 10);
    assert_eq!(map.snapshot().get(&3), Some(&33), "a later duplicate replaces the earlier");
    assert_eq!(map.snapshot().get(&4), Some(&16));

    let empty: SnapMap<u32, u32> = std::iter::empty().collect();
    assert_eq!(empty.version(), 0, "collecting nothing publishes nothing");
    assert!(empty.is_empty());

    let custom: SnapMap<u32, u32, BuildHasherDefault<DefaultHasher>> = [(1, 1)].into_iter().collect();
    assert_eq!(custom.snapshot().get(&1), Some(&1));
}

#[test]
fn extend_publishes_one_version() {
    let mut map: SnapMap<u32, &str> = SnapMap::new();
    map.insert(0, "zero");
    let before = map.snapshot();
    map.extend([(1, "one"), (2, "two"), (0, "nil")]);
    assert_eq!(map.version(), 2, "extend is one version");
    let now = map.snapshot();
    assert_eq!(now.len(), 3);
    assert_eq!(now.get(&0), Some(&"nil"));
    assert_eq!(before.len(), 1, "the earlier snapshot is untouched");
    assert_eq!(before.get(&0), Some(&"zero"));
    map.extend(std::iter::empty::<(u32, &str)>());
    assert_eq!(map.version(), 2, "extending with nothing publishes nothing");
    assert!(Snapshot::ptr_eq(&now, &map.snapshot()));
}

/// As std's `HashMap`: `Copy` keys and values extend from references, e.g.
/// another snapshot's entries, or a std map's.
#[test]
fn copy_entries_extend_from_references() {
    let source: SnapMap<u32, u64> = (0..50).map(|i| (i, u64::from(i) * 2)).collect();
    let source = source.snapshot();
    let mut map: SnapMap<u32, u64> = SnapMap::new();
    map.extend(source.iter());
    assert_eq!((map.version(), map.len()), (1, 50), "one batch");
    let std_map = std::collections::HashMap::from([(7u32, 70u64), (100, 1000)]);
    (&map).extend(&std_map);
    assert_eq!((map.version(), map.len()), (2, 51));
    let copied = map.update(|tx| {
        tx.extend([(&200, &2000)]);
        tx.len()
    });
    assert_eq!(copied, 52);
    let now = map.snapshot();
    assert_eq!((now.get(&7), now.get(&100), now.get(&200)), (Some(&70), Some(&1000), Some(&2000)));
}

#[test]
fn a_shared_map_extends_through_a_reference() {
    let map = std::sync::Arc::new(SnapMap::<u32, u32>::new());
    let writer = std::sync::Arc::clone(&map);
    std::thread::spawn(move || (&*writer).extend((0..100).map(|i| (i, i + 1)))).join().expect("the writer thread");
    assert_eq!(map.version(), 1, "one batch through `&SnapMap`");
    assert_eq!(map.len(), 100);
    assert_eq!(map.snapshot().get(&99), Some(&100));
    (&*map).extend(std::iter::empty::<(u32, u32)>());
    assert_eq!(map.version(), 1, "extending with nothing publishes nothing");
}

#[test]
fn from_an_array_publishes_one_version() {
    let map = SnapMap::from([(1u32, 10u32), (2, 20), (1, 11)]);
    assert_eq!(map.version(), 1, "from an array is one batch");
    assert_eq!(map.len(), 2);
    assert_eq!(map.snapshot().get(&1), Some(&11), "a later duplicate replaces the earlier");
    assert_eq!(map.snapshot().get(&2), Some(&20));
    let empty = SnapMap::<u32, u32>::from([]);
    assert_eq!(empty.version(), 0, "an empty array publishes nothing");
}

#[test]
fn indexing_reads_present_keys_through_every_handle() {
    let map = SnapMap::from([("a".to_string(), 1u32), ("b".to_string(), 2)]);
    let snap = map.snapshot();
    assert_eq!(snap["a"], 1, "a `String` key indexed by `&str`");
    assert_eq!(snap[&"b".to_string()], 2);
    assert_eq!(map.read()["b"], 2, "a read guard indexes too");
    map.insert("a".to_string(), 10);
    assert_eq!(snap["a"], 1, "a snapshot keeps its version");
    assert_eq!(map.snapshot()["a"], 10);
}

#[test]
#[should_panic(expected = "no entry for this key")]
fn indexing_an_absent_key_panics() {
    let map = SnapMap::from([(1u64, 1u64)]);
    let _ = map.snapshot()[&2];
}

#[test]
fn debug_looks_like_a_hash_map() {
    let map: SnapMap<u32, &str> = SnapMap::new();
    assert_eq!(format!("{:?}", map.snapshot()), format!("{:?}", HashMap::<u32, &str>::new()));
    assert_eq!(format!("{:?}", map.snapshot()), "{}");
    map.insert(1, "a");
    assert_eq!(format!("{:?}", map.snapshot()), format!("{:?}", HashMap::from([(1, "a")])));
    assert_eq!(format!("{:?}", map.snapshot()), r#"{1: "a"}"#);
    assert_eq!(format!("{:#?}", map.snapshot()), format!("{:#?}", HashMap::from([(1, "a")])));

    // Several entries: `{k: v, ...}` in iteration order.
    map.update(|tx| tx.extend([(2, "b"), (3, "c")]));
    let snap = map.snapshot();
    let expected = format!("{{{}}}", snap.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect::<Vec<_>>().join(", "));
    assert_eq!(format!("{snap:?}"), expected);
    assert_eq!(format!("{:?}", map.read()), expected, "a read guard prints the same");
    assert_eq!(format!("{:?}", *snap), expected, "and so does the view");
    assert_eq!(format!("{map:?}"), expected, "and so does the map, its current version");

    // Iterators print as lists.
    let keys = format!("[{}]", snap.keys().map(|k| k.to_string()).collect::<Vec<_>>().join(", "));
    assert_eq!(format!("{:?}", snap.keys()), keys);
    let values = format!("[{}]", snap.values().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", "));
    assert_eq!(format!("{:?}", snap.values()), values);

    // A batch prints its entries with its writes so far; a diff and a builder print too.
    map.update(|tx| {
        tx.remove(&1);
        let expected =
            format!("{{{}}}", tx.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect::<Vec<_>>().join(", "));
        assert_eq!(format!("{tx:?}"), expected);
        assert!(!expected.contains("1:") && expected.contains("2:"), "the batch's removal shows: {expected}");
    });
    assert_eq!(format!("{:?}", snap.diff(&map.snapshot())), "Diff { .. }");
    let builder = SnapMap::<u32, u32>::builder().name("routes");
    assert!(format!("{builder:?}").starts_with(r#"SnapMapBuilder { name: Some("routes")"#), "{builder:?}");
}

#[test]
fn references_iterate() {
    let map: SnapMap<u32, u32> = (0..50).map(|i| (i, i + 1)).collect();
    let snap = map.snapshot();
    let mut sum = 0;
    for (k, v) in &snap {
        assert_eq!(*v, k + 1);
        sum += v;
    }
    assert_eq!(sum, (1..=50).sum::<u32>());
    let guard: ReadGuard<u32, u32> = map.read();
    assert_eq!((&guard).into_iter().count(), 50);
    assert_eq!((&*snap).into_iter().count(), 50);
    // A cloned iterator continues from the same place.
    let mut it = snap.iter();
    it.next();
    let rest: Vec<_> = it.clone().collect();
    assert_eq!(rest, it.collect::<Vec<_>>());
    assert_eq!(rest.len(), 49);
}

#[test]
fn string_keys_are_looked_up_by_str() {
    let map: SnapMap<String, u32> = SnapMap::new();
    map.insert("alpha".to_string(), 1);
    map.insert("beta".to_string(), 2);
    let snap = map.snapshot();
    assert_eq!(snap.get("alpha"), Some(&1));
    assert_eq!(snap.get("gamma"), None);
    assert!(snap.contains_key("beta"));
    assert_eq!(snap.get_key_value("beta"), Some((&"beta".to_string(), &2)));
    assert_eq!(map.remove("alpha"), Some(1));
    assert_eq!(map.remove("alpha"), None);
    map.update(|tx| {
        assert_eq!(tx.get("beta"), Some(&2));
        assert_eq!(tx.remove_entry("beta"), Some(("beta".to_string(), 2)));
        assert!(!tx.contains_key("beta"));
    });
    assert!(map.is_empty());
    assert_eq!(snap.get("alpha"), Some(&1), "the snapshot still has it");
}

#[test]
fn names_and_hashers() {
    let plain: SnapMap<u8, u8> = SnapMap::new();
    assert_eq!(plain.name(), DEFAULT_NAME);
    assert_eq!(plain.snapshot().name(), DEFAULT_NAME);
    assert_eq!(SnapMap::<u8, u8>::default().name(), DEFAULT_NAME);
    assert_eq!(SnapMap::<u8, u8>::builder().build().name(), DEFAULT_NAME);

    let routes = SnapMap::<String, u16>::builder().name("routes").build();
    assert_eq!(routes.name(), "routes");
    routes.insert("/".to_string(), 80);
    assert_eq!(routes.snapshot().name(), "routes", "every version keeps the name");
    assert_eq!(routes.read().name(), "routes");

    let hashed =
        SnapMap::<u32, u32>::builder().name("fixed").hasher(BuildHasherDefault::<DefaultHasher>::default()).build();
    assert_eq!(hashed.name(), "fixed", "the name survives choosing a hasher");
    hashed.insert(5, 6);
    assert_eq!(hashed.snapshot().get(&5), Some(&6));
    let _: &BuildHasherDefault<DefaultHasher> = hashed.snapshot().hasher();
    let with = SnapMap::<u32, u32, _>::with_hasher(BuildHasherDefault::<DefaultHasher>::default());
    assert_eq!(with.name(), DEFAULT_NAME);
}

#[test]
fn read_guards_and_pointer_equality() {
    let map: SnapMap<u32, u32> = SnapMap::new();
    map.insert(1, 1);
    let a = map.snapshot();
    let b = map.snapshot();
    assert!(Snapshot::ptr_eq(&a, &b), "no write in between: the same version");
    assert!(Snapshot::ptr_eq(&a, &a.clone()));

    let guard = map.read();
    assert_eq!(guard.version(), 1);
    assert!(Snapshot::ptr_eq(&guard.to_snapshot(), &a));
    map.insert(2, 2);
    // A guard, like a snapshot, stays on its version.
    assert_eq!(guard.len(), 1);
    assert_eq!(guard.get(&2), None);
    let held = guard.to_snapshot();
    drop(guard);
    assert!(Snapshot::ptr_eq(&held, &a));
    assert!(!Snapshot::ptr_eq(&a, &map.snapshot()));
    assert_eq!(map.read().get(&2), Some(&2));
    assert!(Snapshot::ptr_eq(&map.read().to_snapshot(), &map.snapshot()));

    // Equal contents are `==` without being the same version.
    map.remove(&2);
    assert!(!Snapshot::ptr_eq(&a, &map.snapshot()));
    assert_eq!(a, map.snapshot());
}

#[test]
fn maps_compare_by_their_current_entries() {
    let a: SnapMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
    let b: SnapMap<u32, u32> = (0..100).rev().map(|i| (i, i)).collect();
    assert_eq!(a, b, "the same entries, built in another order");
    assert_eq!(a, a);
    b.insert(7, 8);
    assert_ne!(a, b, "a value differs");
    b.insert(7, 7);
    assert_eq!(a, b);
    b.remove(&7);
    assert_ne!(a, b, "a key is missing");
    assert_ne!(a, SnapMap::new());
    assert_eq!(SnapMap::<u32, u32>::new(), SnapMap::new());
}

#[test]
fn return_values_and_versions_follow_each_write() {
    let map: SnapMap<u32, u32> = SnapMap::new();
    assert_eq!(map.version(), 0);
    assert_eq!(map.insert(1, 10), None);
    assert_eq!(map.version(), 1);
    assert_eq!(map.insert(1, 10), Some(10), "same value: still a write");
    assert_eq!(map.version(), 2, "insert always publishes");
    assert_eq!(map.remove(&9), None);
    assert_eq!(map.version(), 2, "removing an absent key publishes nothing");
    assert_eq!(map.remove(&1), Some(10));
    assert_eq!(map.version(), 3);
    map.clear();
    assert_eq!(map.version(), 3, "clearing an empty map publishes nothing");
    map.update(|_| ());
    map.update(|tx| {
        assert_eq!(tx.get(&1), None);
        tx.remove(&1);
        tx.clear();
        tx.retain(|_, _| false);
        tx.extend(std::iter::empty::<(u32, u32)>());
    });
    assert_eq!(map.version(), 3, "a batch that writes nothing publishes nothing");
    map.update(|tx| {
        tx.insert(7, 7);
        tx.remove(&7);
    });
    assert_eq!((map.version(), map.len()), (4, 0), "writes that cancel out still publish");
    let len = map.update(|tx| {
        tx.insert(1, 1);
        tx.insert(2, 2);
        tx.remove(&1);
        tx.len()
    });
    assert_eq!(len, 1, "update returns the closure's result");
    assert_eq!(map.version(), 5, "one version per batch");
    map.clear();
    assert_eq!((map.version(), map.len()), (6, 0));
}

/// A key equal by `id` only, to see which instance is stored.
#[derive(Clone, Debug)]
struct Labelled {
    id: u32,
    label: &'static str,
}

impl PartialEq for Labelled {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Labelled {}

impl Hash for Labelled {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

#[test]
fn replacing_a_value_keeps_the_stored_key() {
    let map: SnapMap<Labelled, u32> = SnapMap::new();
    map.insert(Labelled { id: 1, label: "first" }, 1);
    assert_eq!(map.insert(Labelled { id: 1, label: "second" }, 2), Some(1));
    let snap = map.snapshot();
    let (k, v) = snap.get_key_value(&Labelled { id: 1, label: "probe" }).expect("present");
    assert_eq!((k.label, *v), ("first", 2), "as std's HashMap: the key stays, the value changes");
    let (k, _) = map.update(|tx| tx.remove_entry(&Labelled { id: 1, label: "probe" })).expect("present");
    assert_eq!(k.label, "first", "remove_entry hands back the stored key");
}

#[test]
fn change_is_a_copyable_value() {
    let map: SnapMap<u32, u32> = [(1, 1), (2, 2)].into_iter().collect();
    let old = map.snapshot();
    map.update(|tx| {
        tx.insert(1, 10);
        tx.remove(&2);
        tx.insert(3, 3);
    });
    let new = map.snapshot();
    let mut changes: Vec<Change<'_, u32, u32>> = old.diff(&new).collect();
    changes.sort_by_key(|c| *c.key());
    let copy = changes[0];
    assert_eq!(copy, changes[0]);
    assert_eq!(
        changes,
        [Change::Updated { key: &1, old: &1, new: &10 }, Change::Removed(&2, &2), Change::Added(&3, &3)]
    );
    // Sorted as they are: by kind, then key.
    changes.sort();
    assert_eq!(
        changes,
        [Change::Added(&3, &3), Change::Removed(&2, &2), Change::Updated { key: &1, old: &1, new: &10 }]
    );
}

#[cfg(feature = "serde")]
#[test]
fn serde_round_trip_into_a_hash_map() {
    let map: SnapMap<String, u32> = (0..100).map(|i| (format!("k{i}"), i)).collect();
    let snap = map.snapshot();
    let json = serde_json::to_string(&snap).expect("serializes");
    let back: HashMap<String, u32> = serde_json::from_str(&json).expect("a JSON object");
    let model: HashMap<String, u32> = (0..100).map(|i| (format!("k{i}"), i)).collect();
    assert_eq!(back, model);
    // The view serializes the same way, and an empty one as `{}`.
    assert_eq!(serde_json::to_string(&*snap).expect("serializes"), json);
    assert_eq!(serde_json::to_string(&SnapMap::<String, u32>::new().snapshot()).expect("serializes"), "{}");

    // Integer keys go through JSON's string keys and come back.
    let ints: SnapMap<u64, Vec<u8>> = [(7, vec![1, 2]), (8, vec![])].into_iter().collect();
    let back: HashMap<u64, Vec<u8>> =
        serde_json::from_str(&serde_json::to_string(&ints.snapshot()).expect("serializes")).expect("parses");
    assert_eq!(back, HashMap::from([(7, vec![1, 2]), (8, vec![])]));
}

#[cfg(feature = "serde")]
#[test]
fn serde_round_trip_into_a_snap_map() {
    let map: SnapMap<String, Vec<u16>> = (0..500).map(|i| (format!("k{i}"), vec![i; (i % 3) as usize])).collect();
    let json = serde_json::to_string(&map.snapshot()).expect("serializes");
    let back: SnapMap<String, Vec<u16>> = serde_json::from_str(&json).expect("a JSON object");
    assert_eq!(back.version(), 1, "one version, as collect");
    assert_eq!(back.snapshot(), map.snapshot());

    // A repeated key: the last value wins, as with `collect` and JSON objects into a HashMap.
    let dup: SnapMap<String, u8> = serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).expect("parses");
    assert_eq!(dup.snapshot()["a"], 3);
    assert_eq!(dup.len(), 2);

    // The map itself and a read guard serialize as its current version, so
    // a map round-trips without a snapshot in between.
    assert_eq!(serde_json::to_string(&map).expect("serializes"), json);
    assert_eq!(serde_json::to_string(&map.read()).expect("serializes"), json);
    let again: SnapMap<String, Vec<u16>> =
        serde_json::from_str(&serde_json::to_string(&back).expect("serializes")).expect("parses");
    assert_eq!(again.snapshot(), map.snapshot());

    let empty: SnapMap<u64, u8> = serde_json::from_str("{}").expect("parses");
    assert_eq!((empty.version(), empty.len()), (0, 0));

    // Bad input is an error that says what was expected; nothing half-built escapes.
    let err = serde_json::from_str::<SnapMap<String, u8>>("[1, 2]").expect_err("not a map");
    assert!(err.to_string().contains("expected a map"), "{err}");
    let err = serde_json::from_str::<SnapMap<String, u8>>(r#"{"a": 1, "b": "x"}"#).expect_err("bad value");
    assert!(err.to_string().contains("invalid type"), "{err}");
}

/// Keys and values of unusual layouts: zero-sized, over-aligned, large.
#[test]
fn any_sized_keys_and_values() {
    // A set: zero-sized values.
    let set: SnapMap<u64, ()> = (0..5_000).map(|i| (i * 7, ())).collect();
    let snap = set.snapshot();
    assert_eq!(snap.len(), 5_000);
    assert!((0..5_000).all(|i| snap.contains_key(&(i * 7)) && !snap.contains_key(&(i * 7 + 1))));
    assert_eq!(snap.iter().count(), 5_000);

    // A zero-sized key: at most one entry.
    let unit: SnapMap<(), ()> = SnapMap::new();
    assert_eq!(unit.insert((), ()), None);
    assert_eq!(unit.insert((), ()), Some(()));
    assert_eq!(unit.len(), 1);
    let held = unit.snapshot();
    assert_eq!(unit.remove(&()), Some(()));
    assert!(unit.is_empty());
    assert_eq!(held.get(&()), Some(&()));

    // Over-aligned values; the debug build checks alignment on every access.
    #[derive(Clone, Debug, PartialEq)]
    #[repr(align(64))]
    struct Aligned(u8);
    let aligned: SnapMap<u8, Aligned> = (0..=255).map(|i| (i, Aligned(i))).collect();
    let before = aligned.snapshot();
    aligned.update(|tx| tx.retain(|k, _| k % 3 == 0));
    let after = aligned.snapshot();
    for (k, v) in &after {
        assert_eq!(*k, v.0);
        assert_eq!(std::ptr::from_ref(v).addr() % 64, 0, "value misaligned");
    }
    assert_eq!(after.len(), 86);
    assert_eq!(before.diff(&after).count(), 256 - 86);
    assert_eq!(before.get(&1), Some(&Aligned(1)));

    // Large values next to small keys.
    let big: SnapMap<u8, [u64; 64]> = (0..40).map(|i| (i, [u64::from(i); 64])).collect();
    big.insert(3, [9; 64]);
    let snap = big.snapshot();
    assert!(snap.iter().all(|(k, v)| v.iter().all(|x| *x == if *k == 3 { 9 } else { u64::from(*k) })));
    assert_eq!(snap.len(), 40);
}

/// Every public type with a hasher parameter defaults it, as `std`'s do, so
/// that helpers can name them without it.
#[test]
fn the_types_name_the_default_hasher_by_default() {
    fn total(view: &snapview::View<String, u64>) -> u64 {
        view.values().sum()
    }
    fn add(tx: &mut snapview::Tx<'_, String, u64>, key: &str) {
        match tx.entry(key.to_owned()) {
            snapview::Entry::Occupied(mut occupied) => *occupied.get_mut() += 1,
            snapview::Entry::Vacant(vacant) => {
                vacant.insert(1);
            }
        }
    }
    fn changes(diff: snapview::Diff<'_, String, u64>) -> usize {
        diff.count()
    }
    let map: SnapMap<String, u64> = SnapMap::new();
    let before = map.snapshot();
    map.update(|tx| {
        add(tx, "a");
        add(tx, "a");
        add(tx, "b");
    });
    let after = map.snapshot();
    assert_eq!(total(&after), 3);
    assert_eq!(changes(before.diff(&after)), 2);
    let _: snapview::SnapMapBuilder<String, u64> = SnapMap::builder();
}

/// As std's: empty iterators by `Default`, and a batch iterated by `for`.
#[test]
fn default_iterators_and_a_batch_in_a_for_loop() {
    use snapview::{Iter, Keys, Values};
    let mut empty: Iter<'_, u32, u32> = Iter::default();
    assert_eq!((empty.len(), empty.next()), (0, None));
    assert_eq!(Keys::<u32, u32>::default().count(), 0);
    assert_eq!(Values::<u32, u32>::default().len(), 0);

    let map: SnapMap<u32, u32> = (0..10).map(|k| (k, k)).collect();
    let sum = map.update(|tx| {
        tx.insert(10, 10);
        let mut sum = 0;
        for (k, v) in &*tx {
            sum += k + v;
        }
        sum
    });
    assert_eq!(sum, 2 * (0..=10).sum::<u32>());
}
