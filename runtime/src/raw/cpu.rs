//! Running a hot path compiled for the CPU's population-count instruction.
//!
//! Baseline x86-64 (the default target) has no `popcnt`, so `count_ones`
//! compiles to a dozen dependent bit operations; a lookup makes one or two
//! per trie level. Nearly every x86-64 CPU since 2008 has the instruction, so
//! [`run_with_popcnt`] checks once (std caches the answer) and runs the path
//! inside a function compiled with it, where the path is inlined and its
//! `count_ones` become single instructions. Builds that already target
//! `popcnt` (`-C target-cpu=native`, `x86-64-v2`), and other architectures,
//! run the path directly.

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
}
