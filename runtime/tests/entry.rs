//! `Tx::get_mut` and `Tx::entry`: writes in place, published like any other.

use snapview::{Change, Entry, SnapMap};

#[test]
fn get_mut_publishes_one_version_and_older_snapshots_keep_their_values() {
    let map: SnapMap<u64, Vec<u32>> = (0..5000).map(|k| (k, vec![k as u32])).collect();
    let before = map.snapshot();
    map.update(|tx| {
        tx.get_mut(&7).expect("present").push(70);
        tx.get_mut(&4000).expect("present").clear();
    });
    let after = map.snapshot();
    assert_eq!(after.version(), before.version() + 1);
    assert_eq!(after.get(&7), Some(&vec![7, 70]));
    assert_eq!(after.get(&4000), Some(&vec![]));
    assert_eq!(before.get(&7), Some(&vec![7]));
    assert_eq!(before.get(&4000), Some(&vec![4000]));

    let mut changes: Vec<_> = before.diff(&after).collect();
    changes.sort_by_key(|c| *c.key());
    assert_eq!(
        changes,
        [
            Change::Updated { key: &7, old: &vec![7], new: &vec![7, 70] },
            Change::Updated { key: &4000, old: &vec![4000], new: &vec![] },
        ]
    );
}

#[test]
fn get_mut_of_an_absent_key_publishes_nothing() {
    let map: SnapMap<String, u32> = [("a".to_string(), 1)].into();
    let before = map.snapshot();
    let found = map.update(|tx| tx.get_mut("b").is_some());
    assert!(!found);
    assert_eq!(map.version(), before.version());
    assert!(snapview::Snapshot::ptr_eq(&before, &map.snapshot()));
}

#[test]
fn a_get_mut_that_changes_nothing_publishes_an_equal_version() {
    let map: SnapMap<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    let before = map.snapshot();
    map.update(|tx| {
        let v = tx.get_mut(&3).expect("present");
        *v += 1;
        *v -= 1;
    });
    let after = map.snapshot();
    assert_eq!(after.version(), before.version() + 1, "a found key counts as a write");
    assert_eq!(before, after);
    assert_eq!(before.diff(&after).count(), 0);
}

#[test]
fn entry_counts_words_in_one_batch() {
    let counts: SnapMap<String, usize> = SnapMap::new();
    let text = "the cat saw the dog and the dog saw the cat";
    counts.update(|tx| {
        for word in text.split(' ') {
            *tx.entry(word.to_string()).or_insert(0) += 1;
        }
    });
    assert_eq!(counts.version(), 1, "one batch, one version");
    let snap = counts.snapshot();
    assert_eq!(snap.len(), 5);
    assert_eq!(snap["the"], 4);
    assert_eq!(snap["cat"], 2);
    assert_eq!(snap["and"], 1);
}

#[test]
fn occupied_and_vacant_entries_read_write_and_remove() {
    let map: SnapMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
    let loaded = map.version();
    map.update(|tx| {
        match tx.entry("a".to_string()) {
            Entry::Occupied(mut e) => {
                assert_eq!((e.key().as_str(), *e.get()), ("a", 1));
                *e.get_mut() += 10;
                assert_eq!(e.insert(20), 11);
            }
            Entry::Vacant(_) => panic!("a is present"),
        }
        match tx.entry("c".to_string()) {
            Entry::Vacant(e) => {
                assert_eq!(e.key(), "c");
                *e.insert(3) += 1;
            }
            Entry::Occupied(_) => panic!("c is absent"),
        }
        match tx.entry("b".to_string()) {
            Entry::Occupied(e) => assert_eq!(e.remove_entry(), ("b".to_string(), 2)),
            Entry::Vacant(_) => panic!("b is present"),
        }
        assert_eq!(*tx.entry("d".to_string()).or_default(), 0);
        assert_eq!(*tx.entry("d".to_string()).and_modify(|v| *v = 9).or_insert_with_key(|k| k.len() as u32), 9);
        assert_eq!(format!("{:?}", tx.entry("a".to_string())), r#"Entry(OccupiedEntry { key: "a", value: 20 })"#);
        assert_eq!(format!("{:?}", tx.entry("z".to_string())), r#"Entry(VacantEntry("z"))"#);
    });
    let snap = map.snapshot();
    assert_eq!(snap.version(), loaded + 1);
    let mut all: Vec<(&str, u32)> = snap.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    all.sort();
    assert_eq!(all, [("a", 20), ("c", 4), ("d", 9)]);
}

#[test]
fn looking_at_an_entry_publishes_nothing() {
    let map: SnapMap<u64, u64> = (0..100).map(|k| (k, k)).collect();
    let before = map.snapshot();
    map.update(|tx| {
        if let Entry::Occupied(e) = tx.entry(5) {
            assert_eq!(*e.get(), 5);
        }
        if let Entry::Vacant(e) = tx.entry(500) {
            assert_eq!(e.into_key(), 500);
        }
    });
    assert!(snapview::Snapshot::ptr_eq(&before, &map.snapshot()));
}
