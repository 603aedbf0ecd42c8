//! What `snapview::instrument::report()` says after known workloads: exact
//! counts, samples as configured, plausible quantiles, nothing lost across threads.
#![cfg(feature = "instrument")]

use std::thread;

use snapview::SnapMap;
use snapview::instrument::{DEFAULT_SAMPLE_EVERY, Op, OpStats, Report, report};

fn stats<'r>(report: &'r Report, map: &str, op: Op) -> &'r OpStats {
    report.get(map, op).unwrap_or_else(|| panic!("no stats for {map}/{op}:\n{report}"))
}

fn assert_plausible(s: &OpStats) {
    assert!(s.samples > 0, "{s:?}");
    assert!(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max, "{s:?}");
    assert!(s.max > 0, "{s:?}");
    assert!(s.mean >= s.min as f64 * 0.99 && s.mean <= s.max as f64 * 1.01, "{s:?}");
    assert_eq!(s.sum as f64, (s.mean * s.samples as f64).round(), "{s:?}");
    let buckets: Vec<(f64, u64)> = s.buckets().collect();
    assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, s.samples)));
}

#[test]
fn every_op_with_sample_every_1_has_calls_equal_samples() {
    const N: u64 = 300;
    const ITEMS: u64 = 20;
    let name = "report.every1";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(1).record_get(true).build();
    map.update(|tx| {
        (0..ITEMS).for_each(|i| {
            tx.insert(i, i);
        })
    });
    let first = map.snapshot();
    for i in 0..N {
        let snap = map.snapshot();
        drop(map.read());
        assert_eq!(snap.get(&(i % ITEMS)), Some(&(i % ITEMS)));
        assert_eq!(snap.iter().count() as u64, ITEMS);
        assert_eq!(first.diff(&snap).count(), 0);
        map.insert(i % ITEMS, i % ITEMS); // same value: still a publish (a replacement)
    }
    let report = report();
    let expect = [
        (Op::Snapshot, N + 1),
        (Op::Read, N),
        (Op::Get, N),
        (Op::Iter, N),
        (Op::IterNext, N * ITEMS),
        (Op::Diff, N),
        (Op::Publish, N + 1),
    ];
    for (op, calls) in expect {
        let s = stats(&report, name, op);
        assert_eq!((s.calls, s.samples), (calls, calls), "{op}: {s:?}");
        assert_plausible(s);
    }
    assert_eq!(report.get(name, "iter.next").map(|s| s.calls), Some(N * ITEMS));
}

#[test]
fn default_sampling_times_the_first_call_then_one_in_the_default() {
    let name = "report.default";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).build();
    let calls = u64::from(DEFAULT_SAMPLE_EVERY) * 10 + 1;
    for _ in 0..calls {
        drop(map.snapshot());
    }
    let report = report();
    let s = stats(&report, name, Op::Snapshot);
    assert_eq!((s.calls, s.samples), (calls, 11));
    assert!(report.get(name, Op::Get).is_none(), "look-ups are not recorded unless asked");
}

#[test]
fn sample_every_0_counts_without_timing() {
    let name = "report.never";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(0).build();
    for i in 0..50 {
        map.insert(i, i);
    }
    let report = report();
    let s = stats(&report, name, Op::Publish);
    assert_eq!((s.calls, s.samples, s.max, s.mean), (50, 0, 0, 0.0));
}

#[test]
fn concurrent_threads_lose_no_count() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 20_000;
    let name = "report.threads";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(1).build();
    map.insert(1, 1);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..PER_THREAD {
                    let snap = map.snapshot();
                    assert_eq!(snap.iter().count(), 1);
                }
            });
        }
        // Reports taken while recording goes on drain the threads' buffers
        // concurrently with them: nothing may be lost or counted twice.
        s.spawn(|| {
            for _ in 0..50 {
                let r = report();
                if let Some(snap) = r.get(name, Op::Snapshot) {
                    assert!(snap.samples <= THREADS * PER_THREAD);
                }
            }
        });
    });
    let report = report();
    for op in [Op::Snapshot, Op::Iter, Op::IterNext] {
        let s = stats(&report, name, op);
        assert_eq!((s.calls, s.samples), (THREADS * PER_THREAD, THREADS * PER_THREAD), "{op}");
    }
}

#[test]
fn maps_without_a_name_share_the_default_name() {
    let map: SnapMap<u8, u8> = SnapMap::new();
    map.insert(1, 1);
    let s = report();
    assert!(stats(&s, snapview::DEFAULT_NAME, Op::Publish).calls >= 1);
}

#[test]
fn display_and_json_show_every_map_and_op() {
    let name = "report.display";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).build();
    map.insert(7, 7);
    assert_eq!(map.snapshot().iter().count(), 1);
    let report = report();
    let table = report.to_string();
    assert!(table.lines().next().unwrap().contains("p99.9"), "{table}");
    for op in ["publish", "iter", "iter.next"] {
        assert!(table.lines().any(|l| l.starts_with(name) && l.split_whitespace().nth(1) == Some(op)), "{table}");
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    let ops = json["ops"].as_array().unwrap();
    let publish = ops.iter().find(|o| o["map"] == name && o["op"] == "publish").unwrap();
    assert_eq!(publish["calls"], 1);
    for key in ["samples", "min", "p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(publish[key].is_number(), "{key} in {publish}");
    }
}
