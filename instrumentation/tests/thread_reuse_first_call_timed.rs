//! A thread that starts after another ended takes its id, and with it its
//! shards (`thread_local` recycles ids): it must still time its first call
//! of each operation, as every new thread does, rather than go on with the
//! ended thread's countdown. Threads run one after another here, so that
//! each takes the id the previous one left.

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, report};

#[test]
fn each_new_thread_times_its_first_call() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 5;
    for _ in 0..THREADS {
        std::thread::spawn(|| {
            let probe = MapProbe::new("reused-threads").sample_every(64);
            for _ in 0..CALLS {
                probe.start(Op::Snapshot).finish();
            }
        })
        .join()
        .unwrap();
    }
    let report = report();
    let stats = report.get("reused-threads", Op::Snapshot).expect("calls were made");
    assert_eq!(stats.calls, THREADS * CALLS);
    // Each thread times its first call, and no other: 5 calls of 64.
    assert_eq!(stats.samples, THREADS, "samples of {THREADS} threads of {CALLS} calls, one in 64");
}
