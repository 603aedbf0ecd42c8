//! Prometheus text exposition (format 0.0.4) of a [`Report`].
//!
//! Two metric families, labelled `map` and `op`:
//! - `snapview_op_duration_seconds` (histogram): the timed calls, with
//!   `_bucket`, `_sum` and `_count`;
//! - `snapview_op_calls_total` (counter): every call, timed or not.

use core::fmt::Write;

use crate::report::{OpStats, Report};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The current [`report`](crate::report()) as Prometheus text.
pub fn render_current() -> String {
    render(&crate::report())
}

/// `report` as Prometheus text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("# HELP snapview_op_duration_seconds Duration of sampled snapview map operations.\n");
    out.push_str("# TYPE snapview_op_duration_seconds histogram\n");
    for stats in report {
        histogram(&mut out, stats);
    }
    out.push_str("# HELP snapview_op_calls_total Calls of snapview map operations, sampled or not.\n");
    out.push_str("# TYPE snapview_op_calls_total counter\n");
    for stats in report {
        let labels = labels(stats);
        let _ = writeln!(out, "snapview_op_calls_total{{{labels}}} {}", stats.calls);
    }
    out
}

fn histogram(out: &mut String, stats: &OpStats) {
    let labels = labels(stats);
    for (le, count) in stats.buckets() {
        let le = if le.is_infinite() { "+Inf".to_owned() } else { le.to_string() };
        let _ = writeln!(out, "snapview_op_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "snapview_op_duration_seconds_sum{{{labels}}} {}", stats.sum as f64 / 1e9);
    let _ = writeln!(out, "snapview_op_duration_seconds_count{{{labels}}} {}", stats.samples);
}

fn labels(stats: &OpStats) -> String {
    format!("map=\"{}\",op=\"{}\"", escape(&stats.map), escape(stats.op.as_str()))
}

/// Escapes a label value as the text format requires.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("line\nbreak"), "line\\nbreak");
    }
}
