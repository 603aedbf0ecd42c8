//! Keys that choose their own hash, to build deep tries over distinct
//! hashes: chains of single-child nodes, their fold-back on removal, and
//! collision nodes at their bottom (`model.rs`, `diff_model.rs`).

use std::hash::{BuildHasherDefault, Hash};

use proptest::prelude::*;

use super::Identity;

/// The hash is the key's own number ([`Placed`]): the test chooses which
/// bits two keys share, so how deep the trie goes.
pub type Placing = BuildHasherDefault<Identity>;

/// A key that chooses its own 64-bit hash under [`Placing`]; keys that
/// differ only in `id` collide fully.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub hash: u64,
    pub id: u8,
}

impl Hash for Placed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The low bits of the [`Placed`] keys' hashes, which the trie reads first
/// (6 a level, from bit 0). The first two part at bit 20 only (depth 3), so
/// that two long chains hang below one node.
pub const PREFIXES: [u64; 3] = [0x9E37_79B9_7F4A_7C15, 0x9E37_79B9_7F4A_7C15 ^ (1 << 20), 0xD1B5_4A32_D192_ED03];
/// Where a key's suffix starts: it shares the bits below with its prefix,
/// from 5 levels (bit 30) to 10 (bit 60, the last level's 4 bits).
pub const SPLITS: [u32; 6] = [30, 36, 42, 48, 54, 60];

/// Keys under [`Placing`] whose hashes share 30 to 60 low bits: chains of
/// single-child nodes down to depth 5-10, where they part. A prefix with a
/// suffix of 0 is the prefix itself, which every suffix of it parts from.
/// The suffix-3 keys of the shortest and longest chains come in three (by
/// `id`), so collision nodes hang at the bottom of some chains. A quarter
/// of the keys are small numbers: the root's own entries, and short
/// branches beside the chains.
pub fn placed_key() -> impl Strategy<Value = Placed> + Clone {
    let deep = (0..PREFIXES.len(), 0..SPLITS.len(), 0u64..4, 0u8..3).prop_map(|(p, at, suffix, id)| {
        let collides = suffix == 3 && (at == 0 || at == SPLITS.len() - 1);
        Placed { hash: PREFIXES[p] ^ (suffix << SPLITS[at]), id: if collides { id } else { 0 } }
    });
    prop_oneof![3 => deep, 1 => (0u64..128).prop_map(|hash| Placed { hash, id: 0 })]
}
