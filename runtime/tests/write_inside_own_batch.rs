//! A write to a map from inside its own `update` closure cannot wait for the
//! writer lock its own batch holds: it panics with a reason (std's `Mutex`
//! deadlocks, or may panic, on a relock), the batch publishes nothing, and
//! the map stays usable. Writing to another map from inside a batch is fine.

use std::panic::{AssertUnwindSafe, catch_unwind};

use snapview::SnapMap;

type Map = SnapMap<u32, u32>;

/// A named write to a map.
type Write = (&'static str, fn(&Map));

#[test]
fn each_write_inside_its_own_batch_panics_with_a_reason_and_publishes_nothing() {
    let map: Map = [(1, 1)].into();
    let writes: [Write; 8] = [
        ("insert", |m| {
            m.insert(9, 9);
        }),
        ("remove", |m| {
            m.remove(&1);
        }),
        ("clear", |m| m.clear()),
        ("update", |m| {
            m.update(|tx| tx.insert(9, 9));
        }),
        ("try_update", |m| {
            let _ = m.try_update(|tx| Ok::<_, ()>(tx.insert(9, 9)));
        }),
        ("extend", |mut m| m.extend([(9, 9)])),
        ("subscribe", |m| drop(m.subscribe())),
        // It waits for the lock too: a batch's nodes are settled after it
        // publishes them, and a clone must not start from them before.
        ("clone", |m| drop(m.clone())),
    ];
    for (name, write) in writes {
        let version = map.version();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            map.update(|tx| {
                tx.insert(2, 2);
                write(&map);
            })
        }));
        let payload = outcome.expect_err(name);
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or_default();
        assert!(message.contains("inside its own `update`") && message.contains("`Tx`"), "{name}: {message:?}");
        assert_eq!(map.version(), version, "{name}: nothing published");
        assert_eq!(map.snapshot().get(&2), None, "{name}");
    }
    map.insert(3, 3);
    assert_eq!(map.version(), 2, "the map is usable afterwards");
}

#[test]
fn writing_another_map_inside_a_batch_is_fine() {
    let (map, other): (Map, Map) = (SnapMap::new(), SnapMap::new());
    map.update(|tx| {
        other.insert(1, 1);
        other.update(|inner| inner.insert(2, 2));
        tx.insert(3, 3);
    });
    assert_eq!((map.len(), other.len(), map.version(), other.version()), (1, 2, 1, 2));
}
