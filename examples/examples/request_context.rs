//! One snapshot shared by many tokio tasks of one request, without a copy.
//!
//! A request takes ONE snapshot of the tenant settings and hands it to the
//! sub-tasks it fans out to (auth, pricing, rendering, ...). Cloning a
//! `Snapshot` is one reference-count increment of an 8-byte handle: every
//! task reads the very same version (`Snapshot::ptr_eq`), even while an admin
//! task keeps publishing new ones, so the request's answer is consistent.
//!
//! `cargo run --release -p snapview-examples --example request_context -- --seconds 2`

use std::sync::Arc;
use std::time::{Duration, Instant};

use snapview::{SnapMap, Snapshot};

type Settings = SnapMap<String, u64>;

const SUBTASKS: usize = 8;
const KEYS: u64 = 1000;

#[tokio::main]
async fn main() {
    let seconds = snapview_examples::seconds_flag("request_context", 2);
    let settings: Arc<Settings> = Arc::new(SnapMap::builder().name("settings").build());
    settings.update(|tx| (0..KEYS).for_each(|i| _ = tx.insert(format!("tenant/{i}"), 0)));
    println!(
        "a Snapshot is {} bytes; the map holds {} entries, none of which a request copies",
        std::mem::size_of::<Snapshot<String, u64>>(),
        settings.len()
    );

    // An admin task publishes a new version every millisecond: every 100th key
    // (10 of them) set to the same generation in one batch.
    let admin = {
        let settings = Arc::clone(&settings);
        tokio::spawn(async move {
            for generation in 1.. {
                settings
                    .update(|tx| (0..KEYS).step_by(100).for_each(|i| _ = tx.insert(format!("tenant/{i}"), generation)));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let started = Instant::now();
    let (mut requests, mut versions) = (0u64, std::collections::BTreeSet::new());
    while started.elapsed() < seconds {
        versions.insert(request(&settings).await);
        requests += 1;
    }
    admin.abort();
    println!(
        "{requests} requests, each fanned out to {SUBTASKS} tasks sharing one snapshot: every task saw its request's \
         version and the same memory (ptr_eq), across {} distinct versions the requests saw",
        versions.len()
    );
}

/// Takes one snapshot and checks that every sub-task reads that same version.
async fn request(settings: &Settings) -> u64 {
    let snapshot = settings.snapshot();
    let tasks: Vec<_> = (0..SUBTASKS)
        .map(|part| {
            let mine = snapshot.clone(); // a reference count, not a copy
            tokio::spawn(async move {
                tokio::task::yield_now().await; // let the admin publish meanwhile
                // All "tenant/i" with i % 100 == 0 carry the same generation in one version.
                let generation = mine.get(format!("tenant/{}", part * 100).as_str()).copied();
                (mine, generation)
            })
        })
        .collect();
    let expected = snapshot.get("tenant/0").copied();
    for task in tasks {
        let (seen, generation) = task.await.expect("sub-task");
        assert!(Snapshot::ptr_eq(&seen, &snapshot), "a clone is the same version, not a copy");
        assert_eq!(generation, expected, "version {}: a sub-task saw another generation", snapshot.version());
    }
    snapshot.version()
}
