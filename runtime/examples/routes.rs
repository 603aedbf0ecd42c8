//! A routing table shared by request threads while a reloader publishes new
//! versions: each "request" resolves its upstream from a snapshot, each reload
//! is one batch, and the reloader logs what changed with `diff`.
//!
//! With the `instrument` feature it ends with the latency report of every view
//! it took (`snapview::instrument::report()`); docs/instrumentation.md tells
//! how the same views reach traces and metrics.
//!
//! `cargo run --release -p snapview --features instrument --example routes -- --seconds 3`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use snapview::{Change, SnapMap};

const ROUTES: u64 = 10_000;

fn main() {
    let seconds = parse_seconds().unwrap_or_else(|e| {
        eprintln!("{e}\nusage: routes [--seconds N]");
        std::process::exit(2)
    });
    let routes: Arc<SnapMap<String, String>> = Arc::new(SnapMap::builder().name("routes").build());
    routes.update(|tx| {
        for i in 0..ROUTES {
            tx.insert(format!("/svc/{i}"), format!("10.0.{}.{}:8080", i / 256, i % 256));
        }
    });
    println!("loaded {} routes (version {})", routes.len(), routes.version());

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (routes, stop, served) = (Arc::clone(&routes), Arc::clone(&stop), Arc::clone(&served));
            thread::spawn(move || serve(t, &routes, &stop, &served))
        })
        .collect();

    let started = Instant::now();
    let mut reloads = 0u64;
    let mut previous = routes.snapshot();
    while started.elapsed() < Duration::from_secs(seconds) {
        thread::sleep(Duration::from_millis(250));
        reloads += 1;
        reload(&routes, reloads);
        let current = routes.snapshot();
        let (mut added, mut removed, mut updated) = (0, 0, 0);
        for change in previous.diff(&current) {
            match change {
                Change::Added(..) => added += 1,
                Change::Removed(..) => removed += 1,
                Change::Updated { .. } => updated += 1,
            }
        }
        println!(
            "reload {reloads}: version {} -> {}: +{added} -{removed} ~{updated}, {} routes",
            previous.version(),
            current.version(),
            current.len()
        );
        previous = current;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader thread");
    }
    let n = served.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "served {n} requests in {secs:.1} s ({:.1} M/s), {reloads} reloads, no lock on the read path",
        n as f64 / secs / 1e6
    );
    print_report();
}

#[cfg(feature = "instrument")]
fn print_report() {
    println!("\nlatency of each view (ns; one call in {} timed):", snapview::instrument::default_sample_every());
    print!("{}", snapview::instrument::report());
}

#[cfg(not(feature = "instrument"))]
fn print_report() {
    println!("(build with --features instrument for the latency report of every view)");
}

/// A reload: a few routes move, one appears, one goes; all in one version.
fn reload(routes: &SnapMap<String, String>, round: u64) {
    routes.update(|tx| {
        for i in 0..5 {
            let key = format!("/svc/{}", (round * 7 + i * 1009) % ROUTES);
            tx.insert(key, format!("10.1.{}.{}:9090", round % 256, i));
        }
        tx.insert(format!("/canary/{round}"), "10.9.9.9:8080".to_string());
        tx.remove(&format!("/canary/{}", round.wrapping_sub(1)));
    });
}

fn serve(thread: u64, routes: &SnapMap<String, String>, stop: &AtomicBool, served: &AtomicU64) {
    let mut n = 0u64;
    let mut x = thread.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut path = String::new();
    while !stop.load(Ordering::Relaxed) {
        // One snapshot per request: every lookup in it sees the same version.
        let view = routes.read();
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            path.clear();
            use std::fmt::Write;
            let _ = write!(path, "/svc/{}", x % ROUTES);
            let upstream = view.get(path.as_str()).expect("every /svc route exists in every version");
            std::hint::black_box(upstream);
            n += 1;
        }
    }
    served.fetch_add(n, Ordering::Relaxed);
}

fn parse_seconds() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 3;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = args.next().ok_or("--seconds needs a value")?;
                seconds = v.parse().map_err(|_| format!("--seconds: not a whole number: {v:?}"))?;
                if !(1..=3600).contains(&seconds) {
                    return Err(format!("--seconds must be 1..=3600, got {seconds}"));
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(seconds)
}
