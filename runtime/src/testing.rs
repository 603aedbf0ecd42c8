//! Helpers for the unit tests.

use core::hash::{BuildHasherDefault, Hasher};

/// A hasher that returns the key itself: tests place `u64` keys in chosen slots.
#[derive(Default)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Builds [`Identity`] hashers.
pub(crate) type Id = BuildHasherDefault<Identity>;
