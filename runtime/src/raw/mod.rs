//! Every `unsafe` line of the crate lives in this module.
//!
//! It owns the memory of trie nodes: their layout (exact-size arrays, but
//! some room in maps of plain data), their reference
//! counts, building a node ([`Builder`]), taking one apart ([`Drain`]), and
//! copy-on-write access ([`NodeRef::make_mut`], [`rebuild`]). What it hands out
//! is safe: shared slices for readers, mutable slices only for a node that is
//! provably unshared. The trie algorithms in `crate::trie` are written against
//! this interface in safe code.

mod build;
mod cpu;
mod cursor;
mod lend;
mod node;

#[cfg(all(test, snapview_loom))]
pub(crate) use build::settle;
pub(crate) use build::{Builder, Drain, LendingWatch, rebuild, rebuild_taking, settle_node};
pub(crate) use cpu::{BitCount, Compiled, HotPath, Popcnt, run_with_popcnt};
pub(crate) use cursor::{Finish, Reader};
// One of the two, as `hooks::Held`: the instrumented build holds entries back.
#[cfg(feature = "instrument")]
pub(crate) use cursor::HoldsBack;
#[cfg(not(feature = "instrument"))]
pub(crate) use cursor::HoldsNothing;
pub(crate) use lend::LendGuard;
pub use lend::Lendable;
pub(crate) use node::{NodeRef, Occupancy, Slot, SpareBlock, SpareBlockScope, prefetch};
