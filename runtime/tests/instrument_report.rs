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
fn each_way_of_looking_up_is_one_recorded_get_with_the_unrecorded_answer() {
    let name = "report.lookups";
    let mut recorded: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(1).record_get(true).build();
    let mut plain: SnapMap<u64, u64> = SnapMap::builder().name("report.lookups.plain").build();
    recorded.extend((0..100).map(|k| (k, k * 3)));
    plain.extend((0..100).map(|k| (k, k * 3)));
    let (snap, guard, plain) = (recorded.snapshot(), recorded.read(), plain.snapshot());
    // Hits and misses, by each of the three methods, on a snapshot and a
    // guard: each is one recorded call and answers as the unrecorded map.
    for k in 90..110 {
        assert_eq!(snap.get(&k), plain.get(&k));
        assert_eq!(guard.get_key_value(&k), plain.get_key_value(&k));
        assert_eq!(snap.contains_key(&k), plain.contains_key(&k));
    }
    let report = report();
    let s = stats(&report, name, Op::Get);
    assert_eq!((s.calls, s.samples), (60, 60), "{s:?}");
    assert_plausible(s);
    assert!(report.get("report.lookups.plain", Op::Get).is_none(), "look-ups are not recorded unless asked");
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
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["map", "op", "calls", "samples", "min", "p50", "p90", "p99", "p999", "max", "mean"], "{table}");
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

/// A map named `name` holding `0..n`, with a sampling period of `every`.
fn filled(name: &str, n: u64, every: u32) -> SnapMap<u64, u64> {
    let map = SnapMap::builder().name(name).sample_every(every).build();
    map.update(|tx| {
        for i in 0..n {
            tx.insert(i, i);
        }
    });
    map
}

#[test]
fn internal_iteration_counts_every_item() {
    const N: u64 = 100;
    let name = "report.fold";
    let map = filled(name, N, DEFAULT_SAMPLE_EVERY);
    let snap = map.snapshot();
    let rounds = u64::from(DEFAULT_SAMPLE_EVERY) * 2 + 3; // sampled and unsampled iterations
    for round in 0..rounds {
        match round % 4 {
            0 => assert_eq!(snap.iter().map(|(_, v)| *v).sum::<u64>(), N * (N - 1) / 2),
            1 => assert_eq!(snap.keys().count() as u64, N),
            2 => snap.values().for_each(|v| assert!(*v < N)),
            _ => {
                let mut it = snap.iter();
                it.by_ref().take(7).for_each(drop);
                assert_eq!(it.count() as u64, N - 7, "a fold after some next()s");
            }
        }
    }
    let report = report();
    assert_eq!(stats(&report, name, Op::Iter).calls, rounds);
    assert_eq!(stats(&report, name, Op::IterNext).calls, rounds * N);
}

#[test]
fn a_sampled_iteration_times_one_next_in_sample_every() {
    const N: u64 = 1000;
    const EVERY: u32 = 16;
    for (name, by_fold) in [("report.sampled.next", false), ("report.sampled.fold", true)] {
        let map = filled(name, N, EVERY);
        let snap = map.snapshot();
        // The map's first iteration is sampled; its first next() is timed,
        // then one in EVERY, however the iterator is driven.
        let walked = if by_fold {
            snap.iter().count()
        } else {
            let mut it = snap.iter();
            let mut walked = 0;
            while it.next().is_some() {
                walked += 1;
            }
            walked
        };
        assert_eq!(walked as u64, N);
        let report = report();
        let next = stats(&report, name, Op::IterNext);
        assert_eq!(next.calls, N, "{name}");
        assert_eq!(next.samples, N.div_ceil(u64::from(EVERY)), "{name}");
        assert_eq!(stats(&report, name, Op::Iter).samples, 1, "{name}");
    }
}

#[test]
fn a_clone_of_an_iterator_is_counted_as_its_own_iteration() {
    const N: u64 = 50;
    let name = "report.clone";
    let map = filled(name, N, DEFAULT_SAMPLE_EVERY);
    let snap = map.snapshot();
    let mut it = snap.iter();
    it.by_ref().take(10).for_each(drop);
    let copy = it.clone();
    drop(it);
    assert_eq!(copy.count() as u64, N - 10);
    let report = report();
    assert_eq!(stats(&report, name, Op::Iter).calls, 2);
    assert_eq!(stats(&report, name, Op::IterNext).calls, N);
}

#[test]
fn printing_a_snapshot_or_its_iterators_records_no_iteration() {
    let name = "report.debug";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(1).build();
    map.insert(1, 10);
    let snapshot = map.snapshot();
    let printed = [
        format!("{snapshot:?}"),
        format!("{:?}", snapshot.iter()),
        format!("{:?}", snapshot.keys()),
        format!("{:?}", snapshot.values()),
    ];
    assert_eq!(printed[1..], ["[(1, 10)]", "[1]", "[10]"]);
    let report = report();
    for op in [Op::Iter, Op::IterNext] {
        assert_eq!(report.get(name, op).map_or(0, |s| s.calls), 0, "{op} after printing:\n{report}");
    }
}
