//! `GET /metrics`: the gateway's counters, then snapview's own metrics.
//!
//! The gateway's families come from ONE snapshot of `request_stats`, so they
//! are consistent with each other: the per-route `gateway_requests_total`
//! add up to exactly the requests counted by that version
//! (`gateway_request_stats_version`), even while requests keep updating the
//! map during the scrape.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use snapview::instrument::prometheus;

use super::RouteStats;
use super::app::Gateway;

/// Prometheus text exposition (0.0.4) of the gateway's counters followed by
/// `snapview::instrument::prometheus::render_current()`.
pub async fn metrics(State(gateway): State<Gateway>) -> Response {
    let mut text = render_gateway(&gateway);
    text.push_str(&prometheus::render_current());
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response()
}

/// The gateway's own families, from one snapshot of each map.
pub fn render_gateway(gateway: &Gateway) -> String {
    let stats = gateway.request_stats.snapshot();
    // Sorted for a stable, diffable exposition; the map iterates in hash order.
    let mut rows: Vec<(&String, &RouteStats)> = stats.iter().collect();
    rows.sort_unstable_by_key(|(route, _)| *route);
    let mut out = String::new();
    counter(&mut out, "gateway_requests_total", "Requests resolved, per matched route prefix.", &rows, |s| s.requests);
    counter(&mut out, "gateway_not_found_total", "Requests that matched no route (404).", &rows, |s| s.not_found);
    counter(&mut out, "gateway_response_bytes_total", "Bytes of response bodies.", &rows, |s| s.response_bytes);
    let routes = gateway.routes.snapshot();
    gauge(
        &mut out,
        "gateway_request_stats_version",
        "Version of request_stats these counters come from.",
        stats.version(),
    );
    gauge(&mut out, "gateway_routes_version", "Version of the routes table in force.", routes.version());
    gauge(&mut out, "gateway_routes", "Routes in the table in force.", routes.len() as u64);
    out
}

fn counter(out: &mut String, name: &str, help: &str, rows: &[(&String, &RouteStats)], value: fn(&RouteStats) -> u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (route, stats) in rows {
        let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", escape(route), value(stats));
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("/a\"b\\c\n"), "/a\\\"b\\\\c\\n");
    }
}
