//! Iterators and diffs are covariant in their borrow and in the key and value
//! types, as `std::collections::hash_map::Iter` is: one over longer-lived
//! keys may stand where one over shorter-lived keys is expected. (Their entry
//! cursor is raw addresses since session 36; its `PhantomData<&'a [(K, V)]>`
//! keeps them covariant, and these functions compile only if it does.)

use snapview::{Change, Diff, Iter, Keys, SnapMap, Values};

fn iter<'l: 's, 's>(it: Iter<'l, &'l str, &'l str>) -> Iter<'s, &'s str, &'s str> {
    it
}

fn keys<'l: 's, 's>(it: Keys<'l, &'l str, u8>) -> Keys<'s, &'s str, u8> {
    it
}

fn values<'l: 's, 's>(it: Values<'l, u8, &'l str>) -> Values<'s, u8, &'s str> {
    it
}

fn diff<'l: 's, 's>(d: Diff<'l, &'l str, u8>) -> Diff<'s, &'s str, u8> {
    d
}

fn change<'l: 's, 's>(c: Change<'l, &'l str, u8>) -> Change<'s, &'s str, u8> {
    c
}

#[test]
fn iterators_and_diffs_are_covariant() {
    let map: SnapMap<&str, &str> = SnapMap::new();
    map.insert("a", "b");
    let snap = map.snapshot();
    assert_eq!(iter(snap.iter()).next(), Some((&"a", &"b")));

    let counts: SnapMap<&str, u8> = SnapMap::new();
    let old = counts.snapshot();
    counts.insert("x", 1);
    let new = counts.snapshot();
    assert_eq!(keys(new.keys()).count(), 1);
    let first = diff(old.diff(&new)).next().map(change);
    assert!(matches!(first, Some(Change::Added(&"x", &1))));

    let by_value: SnapMap<u8, &str> = [(1, "one")].into_iter().collect();
    assert_eq!(values(by_value.snapshot().values()).next(), Some(&"one"));
}
