//! Writers updating counters while a scraper iterates consistent snapshots.
//!
//! Each writer thread counts a request with ONE `update` that increments two
//! entries together: its route's counter and `total`. A scraper thread keeps
//! iterating snapshots and checks, in every one, that the routes add up to
//! `total` exactly. With a map whose iteration is not a snapshot (a sharded
//! concurrent map), a scrape would mix counters from different moments and the
//! sum would drift from `total`; here it never does.
//!
//! This shows what a scrape sees, not how to count at a high rate: every
//! count here is a publish, serialized on the map's one writer lock, copying
//! the path it writes. A service counting every request would rather count in
//! atomics (or per thread) and publish their values to the map in one batch
//! per interval, so that scrapes still see one consistent version.
//!
//! `cargo run --release -p snapview-examples --example metrics_cache -- --seconds 2`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use snapview::SnapMap;

const WRITERS: usize = 3;
const TOTAL: &str = "total";

fn main() {
    let seconds = snapview_examples::seconds_flag("metrics_cache", 2);
    let counters: Arc<SnapMap<String, u64>> = Arc::new(SnapMap::builder().name("counters").build());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (counters, stop) = (Arc::clone(&counters), Arc::clone(&stop));
            thread::spawn(move || write(w, &counters, &stop))
        })
        .collect();
    let scraper = {
        let (counters, stop) = (Arc::clone(&counters), Arc::clone(&stop));
        thread::spawn(move || scrape(&counters, &stop))
    };
    let started = Instant::now();
    thread::sleep(seconds);
    stop.store(true, Ordering::Relaxed);
    let written: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    let (scrapes, last_total) = scraper.join().expect("the scraper found every snapshot consistent");
    let final_snapshot = counters.snapshot();
    println!(
        "{WRITERS} writers counted {written} requests in {:.1} s ({} versions); the scraper checked {scrapes} snapshots, all consistent (last saw total {last_total})",
        started.elapsed().as_secs_f64(),
        final_snapshot.version()
    );
    assert_eq!(final_snapshot.get(TOTAL).copied(), Some(written));
    let mut routes: Vec<_> = final_snapshot.iter().filter(|(k, _)| *k != TOTAL).collect();
    routes.sort();
    for (route, n) in routes {
        println!("  {route:<12} {n}");
    }
}

/// Counts requests on routes `/w<writer>/0..4`, each with its `total`, in one batch.
fn write(writer: usize, counters: &SnapMap<String, u64>, stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let route = format!("/w{writer}/{}", n % 4);
        counters.update(|tx| {
            *tx.entry(route).or_insert(0) += 1;
            *tx.entry(TOTAL.to_owned()).or_insert(0) += 1;
        });
        n += 1;
    }
    n
}

/// Iterates snapshots until stopped; panics on an inconsistent one.
fn scrape(counters: &SnapMap<String, u64>, stop: &AtomicBool) -> (u64, u64) {
    let (mut scrapes, mut last_total) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let snapshot = counters.snapshot();
        let (mut total, mut sum) = (0, 0);
        for (key, n) in &snapshot {
            if key == TOTAL { total = *n } else { sum += *n }
        }
        assert_eq!(sum, total, "version {}: routes add up to {sum}, total says {total}", snapshot.version());
        assert!(total >= last_total, "counters never go back");
        last_total = total;
        scrapes += 1;
    }
    (scrapes, last_total)
}
