//! Timing turned off with `set_default_sample_every(0)` can be turned on
//! again: a thread that made calls while it was off goes back to timing
//! within a bounded number of calls (it used to wait ~4.3 billion). The
//! default is process-wide, so this file holds one test.

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, report, set_default_sample_every};

fn snapshots(probe: &MapProbe, n: usize) {
    for _ in 0..n {
        probe.start(Op::Snapshot).finish();
    }
}

fn samples(map: &str) -> u64 {
    report().get(map, Op::Snapshot).map_or(0, |stats| stats.samples)
}

#[test]
fn timing_turned_off_then_on_times_again() {
    let probe = MapProbe::new("toggle");
    set_default_sample_every(0);
    snapshots(&probe, 10);
    assert_eq!(samples("toggle"), 0, "nothing is timed while timing is off");

    set_default_sample_every(1);
    snapshots(&probe, 2000);
    let timed = samples("toggle");
    assert!(timed >= 2000 - 1024, "{timed} of 2000 calls timed after timing was turned on");
    assert_eq!(report().get("toggle", Op::Snapshot).map(|stats| stats.calls), Some(2010));
}
