//! The report's text table (`Report`'s `Display`, served at
//! `/debug/pprof/histograms`): one line per (map, op), whatever the maps are
//! called.

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, report};

fn record(name: &str) {
    let probe = MapProbe::new(name).sample_every(1);
    let timer = probe.start(Op::Snapshot);
    probe.snapshot_taken(timer, 1);
}

/// A line break in a name would print a second, forged row; control
/// characters (an ANSI colour code) would reach the reader's terminal.
#[test]
fn a_name_with_a_line_break_or_a_control_character_stays_in_its_row() {
    record("table\nforged  snapshot  999");
    record("table\u{1b}[31mred");
    let report = report();
    let table = report.to_string();
    assert_eq!(table.lines().count(), 1 + report.iter().count(), "{table}");
    assert!(table.lines().any(|l| l.starts_with("table\\u{a}forged  snapshot  999 ")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("table\\u{1b}[31mred ")), "{table}");
    assert!(!table.contains('\u{1b}'), "{table}");
}
