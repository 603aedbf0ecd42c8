//! Criterion set-up shared by the peer benchmarks (`peers.rs`, `strings.rs`).
//! Kept apart from `common/mod.rs`, which the in-process A/B programs
//! (`ab.sh`) copy into a crate without criterion.

/// The criterion group of one case and size: ids `CASE/SIZE/PEER`.
pub fn group<'a>(
    c: &'a mut criterion::Criterion,
    case: &str,
    n: usize,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    c.benchmark_group(format!("{case}/{n}"))
}

/// Criterion's settings for the peer benchmarks: 20 samples, 1 s of warm-up
/// and 2 s of measurement per benchmark (command-line flags override them).
pub fn config() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
}
