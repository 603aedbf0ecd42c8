//! Counting bits with the CPU's population-count instruction.
//!
//! Baseline x86-64 (the default target) has no `popcnt`, so `count_ones`
//! compiles to a dozen dependent bit operations; a trie walk makes one or two
//! per level. Nearly every x86-64 CPU since 2008 has the instruction, and
//! there are two ways to use it from code not compiled for it:
//!
//! - [`run_with_popcnt`] checks for it (std caches the answer) and runs a
//!   whole path inside a function compiled with it, where `count_ones`
//!   becomes the instruction. Writes take this way: the call costs ~30
//!   instructions, small beside a write.
//! - A [`Popcnt`] is the proof that the CPU has it, kept by a published
//!   version's lookup plan; code holding one counts with the bare
//!   instruction, inline where it is. Lookups take this way: they cost a
//!   large map in instructions, and the call was ~30 of ~100 of them.
//!
//! Builds that already target `popcnt` (`-C target-cpu=native`,
//! `x86-64-v2`), and other architectures, count with `count_ones` either way.

/// A hot path to compile with `popcnt`: a function and its arguments.
///
/// Only code inlined into the `#[target_feature]` function gets the
/// instruction. A closure cannot be marked `#[inline(always)]`, and LLVM does
/// not inline a large one (a whole write's descent) into it, so such a path
/// is a type whose [`run`](Self::run) is `#[inline(always)]` instead.
pub(crate) trait HotPath {
    /// What the path returns.
    type Output;
    /// Runs the path; implementations must be `#[inline(always)]`.
    fn run(self) -> Self::Output;
}

/// Runs `path`, compiled with `popcnt` if this CPU has it.
#[inline(always)]
pub(crate) fn run_with_popcnt<P: HotPath>(path: P) -> P::Output {
    #[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt"), not(snapview_loom)))]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the one requirement of calling a `#[target_feature]`
        // function is that the CPU has the feature, which was just detected.
        return unsafe { popcnt_enabled(path) };
    }
    path.run()
}

#[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt"), not(snapview_loom)))]
#[target_feature(enable = "popcnt")]
#[inline]
fn popcnt_enabled<P: HotPath>(path: P) -> P::Output {
    path.run()
}

/// A way to count the bits set in a word: what a lookup is generic over.
pub(crate) trait BitCount: Copy {
    /// The number of bits set in `x`, as the array index it is used as: a
    /// `usize` straight from the instruction's 64-bit result, where a `u32`
    /// would cost a zero-extension at each level of a lookup.
    fn count(self, x: u64) -> usize;
}

/// `count_ones` as this code is compiled: the instruction inside a
/// [`HotPath`] or in a build that targets it, a dozen operations otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compiled;

impl BitCount for Compiled {
    #[inline(always)]
    fn count(self, x: u64) -> usize {
        x.count_ones() as usize
    }
}

/// The CPU's fast bit count, for code not compiled for it: a value of this
/// type is the proof that the CPU has one, and only [`Popcnt::detect`]
/// makes it. On x86-64 (unless the build targets `popcnt`), counting with it
/// runs the `popcnt` instruction itself; elsewhere it is `count_ones` as the
/// build compiles it, and every CPU has it.
///
/// A lookup counts with it rather than through [`run_with_popcnt`]: a
/// published version detects it once and keeps it in its lookup plan, and
/// the lookup, inlined where `get` is called, counts with one instruction
/// and calls nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Popcnt {
    _private: (),
}

impl Popcnt {
    /// The proof, unless this is an x86-64 CPU without `popcnt` (made before
    /// 2008), where only [`Compiled`] counts. std caches the detection.
    #[inline]
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt")))]
        if !std::arch::is_x86_feature_detected!("popcnt") {
            return None;
        }
        Some(Self { _private: () })
    }
}

impl BitCount for Popcnt {
    #[inline(always)]
    fn count(self, x: u64) -> usize {
        #[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt")))]
        // SAFETY: `self` exists only if `detect` found that the CPU has `popcnt`.
        return unsafe { popcnt_instruction(x) };
        #[cfg(not(all(target_arch = "x86_64", not(target_feature = "popcnt"))))]
        {
            x.count_ones() as usize
        }
    }
}

/// The `popcnt` instruction, in a build not compiled for it.
///
/// # Safety
/// The CPU must have the instruction.
#[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt")))]
#[inline(always)]
unsafe fn popcnt_instruction(x: u64) -> usize {
    let n: u64;
    // SAFETY: the caller guarantees that the instruction exists. It reads and
    // writes registers only (and the flags, which the block does not claim
    // to preserve).
    //
    // One register is both source and destination: Intel CPUs before Ice
    // Lake make `popcnt` wait for its destination's last writer too, which
    // a separate destination would add to the walk's dependency chain.
    unsafe {
        core::arch::asm!("popcnt {0}, {0}", inout(reg) x => n, options(pure, nomem, nostack));
    }
    // Lossless: the count is at most 64.
    n as usize
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use super::*;

    /// A path that owns its arguments and writes through a borrowed one, as
    /// `insert`'s does.
    struct CountBits<'a> {
        words: Vec<u64>,
        total: &'a mut u32,
    }

    impl HotPath for CountBits<'_> {
        type Output = usize;
        #[inline(always)]
        fn run(self) -> usize {
            *self.total = self.words.iter().map(|w| w.count_ones()).sum();
            self.words.len()
        }
    }

    #[test]
    fn runs_a_hot_path_with_its_arguments_and_returns_its_result() {
        let mut total = 0;
        let n = run_with_popcnt(CountBits { words: vec![u64::MAX, 0b1011, 0], total: &mut total });
        assert_eq!((n, total), (3, 67));
    }

    #[test]
    fn both_ways_of_counting_agree_with_count_ones() {
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..1000 {
            x = x.rotate_left(7).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 3);
            assert_eq!(Compiled.count(x), x.count_ones() as usize);
            if let Some(popcnt) = Popcnt::detect() {
                assert_eq!(popcnt.count(x), x.count_ones() as usize);
            }
        }
        for edge in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(Popcnt::detect().map_or(Compiled.count(edge), |p| p.count(edge)), edge.count_ones() as usize);
        }
    }
}
