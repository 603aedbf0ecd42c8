//! Code over snapview written in edition 2021, where a tail expression's
//! temporaries are dropped after the block's locals: the temporary iterator
//! of `snap.values().any(..)` outlives `snap`. Such code compiles without
//! snapview's `instrument` feature, so it must compile with it: features
//! unify across a build, and a library written this way would break when an
//! application turned `instrument` on. Until session 36 each function here
//! was `E0597` with the feature (an iterator's `Drop`, which records its
//! iteration, borrowed the map); `cargo test --workspace --all-features`
//! builds this crate with it. `runtime/tests/views_dropped_after_their_snapshot.rs`
//! holds the edition-2024 form of the same rule.

use snapview::{SnapMap, Snapshot};

/// Whether any value is above `floor`.
pub fn any_value_above(map: &SnapMap<u64, u64>, floor: u64) -> bool {
    let snap = map.snapshot();
    snap.values().any(|v| *v > floor)
}

/// The first key in iteration order.
pub fn first_key(map: &SnapMap<u64, u64>) -> Option<u64> {
    let snap = map.snapshot();
    snap.keys().next().copied()
}

/// Where `key` comes in iteration order, through a borrowed read.
pub fn position_of(map: &SnapMap<u64, u64>, key: u64) -> Option<usize> {
    let read = map.read();
    read.iter().position(|(k, _)| *k == key)
}

/// Whether the map changed since `old`.
pub fn changed_since(map: &SnapMap<u64, u64>, old: &Snapshot<u64, u64>) -> bool {
    let new = map.snapshot();
    old.diff(&new).next().is_some()
}

/// Whether any of `words`, upper-cased, contains `needle`: a map whose keys
/// borrow a local that the tail expression's iterator outlives too.
pub fn any_upper_contains(words: &[&str], needle: &str) -> bool {
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    let map: SnapMap<&str, usize> = upper.iter().map(|w| (w.as_str(), w.len())).collect();
    let snap = map.snapshot();
    snap.keys().any(|k| k.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_expression_temporaries_may_outlive_the_snapshot() {
        let map: SnapMap<u64, u64> = [(1, 10), (2, 20)].into_iter().collect();
        let old = map.snapshot();
        assert!(any_value_above(&map, 15));
        assert!(!any_value_above(&map, 20));
        assert!(matches!(first_key(&map), Some(1 | 2)));
        assert!(position_of(&map, 2).is_some());
        assert!(position_of(&map, 3).is_none());
        assert!(!changed_since(&map, &old));
        map.insert(3, 30);
        assert!(changed_since(&map, &old));
        assert!(any_upper_contains(&["route", "table"], "BL"));
        assert!(!any_upper_contains(&["route", "table"], "bl"));
    }

    /// The feature is on in this build when asked for: the functions above
    /// were compiled against the instrumented iterators.
    #[cfg(feature = "instrument")]
    #[test]
    fn the_instrumented_build_records_these_iterations() {
        use snapview::instrument::{report, Op};

        let map = SnapMap::<u64, u64>::builder().name("edition2021").build();
        map.insert(1, 1);
        assert!(!any_value_above(&map, 5));
        assert_eq!(report().get("edition2021", Op::Iter).map(|s| s.calls), Some(1));
    }
}
