//! The HTTP side: resolving `/route/<path>` (or any path not otherwise
//! served) on a snapshot of `routes`, the per-request span, the per-route
//! counters in `request_stats`.
//!
//! The gateway *resolves* a request's upstream and answers with it as JSON;
//! it does not proxy. Proxying would add an HTTP client and real upstreams to
//! the demo without showing anything more about snapview.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use snapview::View;
use snapview::debug::DebugConfig;
use tracing::Instrument;
use tracing::field::Empty;

use super::config::MAX_PREFIX_LEN;
use super::path;
use super::{RouteMap, StatsMap};

/// The `request_stats` key of requests that matched no route.
pub const UNMATCHED: &str = "(none)";

/// What the handlers share: the two maps.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// Prefix → upstream, replaced by the reloader one version per file edit.
    pub routes: Arc<RouteMap>,
    /// Route prefix (or [`UNMATCHED`]) → its counters, one version per request.
    pub request_stats: Arc<StatsMap>,
}

/// The whole application: the gateway's routes, `/metrics`, snapview's
/// `/debug/pprof` router (with `debug`'s token, if any), and, for every other
/// path, the gateway again, as a gateway resolves any path it is sent
/// (`GET /api/users/42` as `GET /route/api/users/42`); all under the
/// per-request span.
///
/// The debug router is the fallback rather than merged because both serve
/// `/metrics`: the gateway's own includes snapview's families (see
/// [`metrics`](super::metrics)), so nothing is lost.
pub fn router(gateway: Gateway, debug: &DebugConfig) -> Router {
    let any_other_path = get(resolve_path).with_state(gateway.clone());
    Router::new()
        .route("/", get(index))
        .route("/route", get(resolve))
        .route("/route/", get(resolve))
        .route("/route/{*path}", get(resolve))
        .route("/metrics", metrics_route(debug))
        .with_state(gateway)
        .fallback_service(snapview::debug::router_with(debug).fallback_service(any_other_path))
        .layer(middleware::from_fn(request_span))
}

/// `GET /metrics`, behind the debug token if there is one, and refusing
/// what a web page can make a browser send, as the debug routes do: it
/// carries snapview's latency histograms, which the debug router's own
/// `/metrics` (that this one stands in for) guards so. Every method
/// reaches it and is checked inside the token check, as on the debug routes
/// (`get` would answer a wrong method's 405 before the token is asked for).
fn metrics_route(debug: &DebugConfig) -> MethodRouter<Gateway> {
    let guard = snapview::debug::BrowserGuard::new(debug);
    let route = any(super::metrics::metrics)
        .layer(middleware::from_fn_with_state(guard, snapview::debug::refuse_other_sites))
        .layer(middleware::from_fn(snapview::debug::only_get));
    match &debug.token {
        Some(token) => route.layer(middleware::from_fn_with_state(token.clone(), snapview::debug::require_token)),
        None => route,
    }
}

/// Wraps each request in an INFO span named, for OpenTelemetry, after the
/// method and the route template (`GET /route/{*path}`, `GET /metrics`), as
/// the HTTP semantic conventions do: a bounded set of names. The snapview
/// spans of the request (the `routes` snapshot, the `request_stats` publish
/// or iteration) nest under it, in Jaeger and in `/debug/pprof/views`.
async fn request_span(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let name = span_name(request.method(), matched.as_ref().map(MatchedPath::as_str), path);
    let span = tracing::info_span!(
        "request",
        otel.name = %name,
        http.request.method = %request.method(),
        url.path = %path,
        http.response.status_code = Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    // An integer, as the HTTP semantic conventions want it: tracing-opentelemetry
    // sends a `u16` field (recorded as `u64`) as a string.
    span.record("http.response.status_code", i64::from(response.status().as_u16()));
    response
}

/// The request span's name, from a bounded set whatever clients send, so
/// that scanners cannot mint names: the method if it is one of HTTP's own
/// (else `_OTHER`, as the HTTP semantic conventions say), and the route
/// template, the debug endpoint's path, or `other`.
fn span_name(method: &Method, template: Option<&str>, path: &str) -> String {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    let method = if KNOWN.contains(method) { method.as_str() } else { "_OTHER" };
    let template = match template {
        Some(template) => template,
        None if snapview::debug::ROUTES.contains(&path) => path,
        None => "other",
    };
    format!("{method} {template}")
}

/// `GET /route/<path>`: the upstream of the longest matching prefix.
async fn resolve(State(gateway): State<Gateway>, method: Method, uri: Uri) -> Response {
    let sent = uri.path().strip_prefix("/route").filter(|p| !p.is_empty()).unwrap_or("/");
    resolved(&gateway, &method, sent)
}

/// `GET <path>` for any path the application serves nothing else on: as
/// `GET /route/<path>`. A path that is `/route/...` once normalized
/// (`/x/../route/api`, `/%72oute/api`), which the router did not see as
/// one, is resolved as `/route/...` is.
async fn resolve_path(State(gateway): State<Gateway>, method: Method, uri: Uri) -> Response {
    let normal = path::normalize(uri.path());
    let sent = match normal.strip_prefix("/route") {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => &normal,
    };
    resolved(&gateway, &method, sent)
}

/// The answer for a request of `sent`: the upstream of the longest matching
/// prefix, as JSON, or 404.
///
/// One snapshot of `routes` serves the whole request, so the route, the
/// upstream and the version in the answer always belong together, even if a
/// reload publishes meanwhile.
fn resolved(gateway: &Gateway, method: &Method, sent: &str) -> Response {
    // As prefixes are stored: `/static/../api` is `/api`, `%7e` is `~`.
    let normal = path::normalize(sent);
    let path: &str = &normal;
    let routes = gateway.routes.snapshot();
    let hit = longest_prefix(&routes, path);
    let route = hit.map_or(UNMATCHED, |(prefix, _)| prefix);
    // A child span named after the route, so that view costs and traces can
    // be told apart per route (`GET /route/{*path};route /api;snapview.publish`).
    let version = i64::try_from(routes.version()).unwrap_or(i64::MAX); // an OTLP integer, as snapview's own `version`
    let span =
        tracing::info_span!("route", otel.name = %format_args!("{method} {route}"), route, routes.version = version);
    span.in_scope(|| {
        let (status, body) = match hit {
            Some((prefix, upstream)) => (
                StatusCode::OK,
                serde_json::json!({ "route": prefix, "upstream": upstream, "path": path, "version": routes.version() }),
            ),
            None => (
                StatusCode::NOT_FOUND,
                serde_json::json!({ "error": "no route", "path": path, "version": routes.version() }),
            ),
        };
        let body = body.to_string();
        // A HEAD answer carries no body (axum leaves it out).
        let body_bytes = if *method == Method::HEAD { 0 } else { body.len() };
        record(&gateway.request_stats, route, status, body_bytes);
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    })
}

/// The entry of the longest prefix of `path` that ends on a segment boundary:
/// for `/api/users/42`, looks up `/api/users/42`, `/api/users`, `/api`, `/`,
/// in that order. So a request costs one hash look-up per path segment,
/// whatever the number of routes, and `/api` never matches `/apix`. Only the
/// first [`MAX_PREFIX_LEN`] bytes are looked at (no route is longer), so a
/// long path costs no more than a short one.
pub fn longest_prefix<'a>(routes: &'a View<String, String>, path: &str) -> Option<(&'a str, &'a str)> {
    let mut candidate = path.trim_end_matches('/');
    if candidate.len() > MAX_PREFIX_LEN {
        // The last segment boundary within reach; a byte index of '/' is a
        // char boundary.
        let reach = &candidate.as_bytes()[..=MAX_PREFIX_LEN];
        candidate = &candidate[..reach.iter().rposition(|&b| b == b'/').unwrap_or(0)];
    }
    loop {
        let key = if candidate.is_empty() { "/" } else { candidate };
        if let Some((prefix, upstream)) = routes.get_key_value(key) {
            return Some((prefix.as_str(), upstream.as_str()));
        }
        match candidate.rfind('/') {
            Some(cut) if !candidate.is_empty() => candidate = &candidate[..cut],
            _ => return None,
        }
    }
}

/// Counts the request under its route: one `update`, so one published
/// version per request. Fine at the demo's rates (a publish copies one
/// short trie path); a service at tens of thousands of requests per second
/// would count in per-thread counters and fold them into the map in one
/// batch every few hundred milliseconds instead.
fn record(stats: &StatsMap, route: &str, status: StatusCode, bytes: usize) {
    stats.update(|tx| {
        let counters = tx.entry(route.to_owned()).or_default();
        counters.requests += 1;
        counters.not_found += u64::from(status == StatusCode::NOT_FOUND);
        counters.response_bytes += bytes as u64;
    });
}

async fn index() -> impl IntoResponse {
    "snapview demo gateway\n\
     GET /route/<path>          the upstream of the longest matching route prefix (JSON; resolved, not proxied)\n\
     GET /<path>                the same, for any path not listed here\n\
     GET /metrics               per-route counters from one snapshot of request_stats, and snapview's own metrics\n\
     GET /debug/pprof/          CPU profiles, view-cost flamegraphs, latency histograms\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(prefixes: &[&str]) -> RouteMap {
        let map = RouteMap::new();
        map.update(|tx| {
            for p in prefixes {
                tx.insert(p.to_string(), format!("http://{p}"));
            }
        });
        map
    }

    #[test]
    fn the_longest_prefix_on_a_segment_boundary_wins() {
        let map = routes(&["/api", "/api/users", "/static"]);
        let snap = map.snapshot();
        let hit = |path| longest_prefix(&snap, path).map(|(p, _)| p);
        assert_eq!(hit("/api/users/42"), Some("/api/users"));
        assert_eq!(hit("/api/users"), Some("/api/users"));
        assert_eq!(hit("/api/users/"), Some("/api/users"));
        assert_eq!(hit("/api/orders"), Some("/api"));
        assert_eq!(hit("/apix"), None);
        assert_eq!(hit("/"), None);
        assert_eq!(hit("/nothing/here"), None);
    }

    #[test]
    fn span_names_come_from_a_bounded_set() {
        let custom = Method::from_bytes(b"SCAN1").unwrap();
        assert_eq!(span_name(&Method::GET, Some("/route/{*path}"), "/route/a/b"), "GET /route/{*path}");
        assert_eq!(span_name(&Method::GET, None, "/debug/pprof/profile"), "GET /debug/pprof/profile");
        assert_eq!(span_name(&Method::GET, None, "/debug/pprof/x1234"), "GET other");
        assert_eq!(span_name(&Method::GET, None, "/wp-login.php"), "GET other");
        assert_eq!(span_name(&custom, Some("/metrics"), "/metrics"), "_OTHER /metrics");
    }

    #[test]
    fn a_path_is_looked_up_only_as_far_as_a_prefix_can_reach() {
        let deep = format!("/{}", "a/".repeat(MAX_PREFIX_LEN)); // 2 KB of one-letter segments
        let within = &deep[..MAX_PREFIX_LEN]; // "/a/a/.../a", 1024 bytes: the longest a route may be
        let map = routes(&[within, "/a"]);
        let snap = map.snapshot();
        assert_eq!(longest_prefix(&snap, &deep).map(|(p, _)| p), Some(within));
        let long_segment = format!("/a/{}", "b".repeat(4 * MAX_PREFIX_LEN));
        assert_eq!(longest_prefix(&snap, &long_segment).map(|(p, _)| p), Some("/a"));
    }

    #[test]
    fn the_root_route_catches_everything() {
        let map = routes(&["/", "/api"]);
        let snap = map.snapshot();
        assert_eq!(longest_prefix(&snap, "/apix").map(|(p, _)| p), Some("/"));
        assert_eq!(longest_prefix(&snap, "/").map(|(p, _)| p), Some("/"));
        assert_eq!(longest_prefix(&snap, "/api/v1").map(|(p, _)| p), Some("/api"));
    }
}
