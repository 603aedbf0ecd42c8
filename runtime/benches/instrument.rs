//! What the `instrument` feature costs on the hot paths.
//!
//! Ids are `overhead/CASE/CONFIG`. Built without the feature, the bench has
//! one config, `off`; built with it, the configs are:
//! - `on-none`: no tracing subscriber at all;
//! - `on-info`: the subscriber an application installs with
//!   `snapview::instrument::Telemetry` (registry + fmt layer with its own
//!   `info` filter);
//! - `on-sample1`: the same, with the map timing every call (`sample_every(1)`,
//!   look-ups recorded too);
//! - `on-debug`: the same subscriber at `debug`, so every snapview span is built.
//!
//! Cases: `snapshot` (take and drop), `get` (each key of a 1000-entry map
//! looked up in turn; time per lookup),
//! `iter` (a full iteration of 10 000 entries by `sum`, an internal
//! iteration; throughput per element), `for` (the same by a `for` loop, one
//! `next()` per element).
//! `runtime/benches/overhead.sh` runs both builds and prints the ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use snapview::SnapMap;

const GET_SIZE: u64 = 1_000;
const ITER_SIZE: u64 = 10_000;

fn map(size: u64, sample_every_call: bool) -> SnapMap<u64, u64> {
    let builder = SnapMap::builder().name(format!("bench.{size}"));
    let builder = if sample_every_call { builder.sample_every(1).record_get(true) } else { builder };
    let map = builder.build();
    map.update(|tx| {
        (0..size).for_each(|i| {
            tx.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
        })
    });
    map
}

fn cases(c: &mut Criterion, config: &str, sample_every_call: bool) {
    let small = map(GET_SIZE, sample_every_call);
    let large = map(ITER_SIZE, sample_every_call);
    let keys: Vec<u64> = (0..GET_SIZE).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();

    let mut group = c.benchmark_group("overhead");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("snapshot/{config}"), |b| b.iter(|| black_box(small.snapshot())));
    let snap = small.snapshot();
    // All the keys per iteration (the time is per lookup): one lookup per
    // iteration, with its index kept across iterations, made each iteration
    // wait on the last through memory and a division, and that chain, which
    // moved with register allocation, was most of what this case measured.
    group.throughput(Throughput::Elements(GET_SIZE));
    group.bench_function(format!("get/{config}"), |b| {
        b.iter(|| keys.iter().filter(|key| snap.get(black_box(*key)).is_some()).count())
    });
    let snap = large.snapshot();
    group.throughput(Throughput::Elements(ITER_SIZE));
    group.bench_function(format!("iter/{config}"), |b| b.iter(|| snap.iter().map(|(_, v)| *v).sum::<u64>()));
    group.bench_function(format!("for/{config}"), |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for (_, v) in snap.iter() {
                sum = sum.wrapping_add(*v);
            }
            sum
        })
    });
    group.finish();
}

#[cfg(not(feature = "instrument"))]
fn benches(c: &mut Criterion) {
    cases(c, "off", false);
}

#[cfg(feature = "instrument")]
fn benches(c: &mut Criterion) {
    use snapview::instrument::Telemetry;

    // The subscriber an application installs: the Telemetry pipeline's fmt
    // layer with its own filter (nothing is logged here: no events).
    let app_subscriber = |filter: &str| Telemetry::builder().filter(filter).build().expect("valid filter");
    cases(c, "on-none", false);
    // Thread-local defaults, one at a time; DEBUG last so that no earlier
    // config runs while a more verbose dispatcher is registered.
    let (info, _guard) = app_subscriber("info");
    tracing::subscriber::with_default(info, || cases(c, "on-info", false));
    let (info, _guard) = app_subscriber("info");
    tracing::subscriber::with_default(info, || cases(c, "on-sample1", true));
    let (debug, _guard) = app_subscriber("debug");
    tracing::subscriber::with_default(debug, || cases(c, "on-debug", false));
}

// What `criterion_group!`/`criterion_main!` expand to, without their public
// (and undocumented) group function.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
