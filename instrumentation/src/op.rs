//! The operations that are measured.

use core::fmt;

/// An operation on a map view, the second label (after the map's name) of
/// everything recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Taking an owned snapshot (`SnapMap::snapshot`).
    Snapshot,
    /// Taking a borrowed read guard (`SnapMap::read`).
    Read,
    /// A look-up (`get`, `get_key_value`, `contains_key`); off unless the map
    /// asks for it, because it is the cheapest operation there is.
    Get,
    /// One whole iteration: from its first `next()` to its exhaustion or drop.
    Iter,
    /// One iterator `next()` that yielded an item.
    IterNext,
    /// A write that published a new version (`insert`, `remove`, `update`, ...).
    Publish,
    /// One diff: from its first `next()` to its exhaustion or drop.
    Diff,
}

impl Op {
    /// Every operation, in a fixed order.
    pub const ALL: [Op; 7] = [Op::Snapshot, Op::Read, Op::Get, Op::Iter, Op::IterNext, Op::Publish, Op::Diff];

    /// The name used as the `op` label: `snapshot`, `read`, `get`, `iter`,
    /// `iter.next`, `publish`, `diff`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::Snapshot => "snapshot",
            Op::Read => "read",
            Op::Get => "get",
            Op::Iter => "iter",
            Op::IterNext => "iter.next",
            Op::Publish => "publish",
            Op::Diff => "diff",
        }
    }

    /// The operation with this label, if any.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == name)
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Op {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_matches_position() {
        for (i, op) in Op::ALL.into_iter().enumerate() {
            assert_eq!(Op::from_name(op.as_str()), Some(op));
            assert_eq!(op.index(), i);
        }
        assert_eq!(Op::from_name("iter.next"), Some(Op::IterNext));
        assert_eq!(Op::from_name("nope"), None);
    }
}
