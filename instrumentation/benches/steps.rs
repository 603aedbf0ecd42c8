//! The cost of each measuring step, alone: what the recording path is made of.
//!
//! `cargo bench -p snapview-instrument --bench steps`

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use snapview_instrument::Op;
use snapview_instrument::probe::MapProbe;

fn steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("steps");
    group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let clock = quanta::Clock::new();
    group.bench_function("quanta_raw", |b| b.iter(|| black_box(clock.raw())));
    group.bench_function("quanta_now", |b| b.iter(|| black_box(quanta::Instant::now())));
    group.bench_function("std_instant_now", |b| b.iter(|| black_box(std::time::Instant::now())));
    let counted = MapProbe::new("steps.counted").sample_every(0);
    group.bench_function("count_unsampled_call", |b| b.iter(|| counted.start(black_box(Op::Get)).finish()));
    let timed = MapProbe::new("steps.timed").sample_every(1);
    group.bench_function("count_and_time_call", |b| b.iter(|| timed.start(black_box(Op::Get)).finish()));
    group.bench_function("disabled_debug_span", |b| {
        b.iter(|| black_box(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "m", version = 1u64)))
    });
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, without their public
// (and undocumented) group function.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    steps(&mut c);
    c.final_summary();
}
