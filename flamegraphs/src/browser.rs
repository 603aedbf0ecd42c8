//! Refusing what a web page can make a browser send to the debug routes.
//!
//! Bound to loopback and without a token, the routes' only guard is that a
//! client must run on this machine, and a browser does. A page opened
//! anywhere can point an `<img>` at `/debug/pprof/profile?seconds=300`,
//! which starts a profile and holds the profiler for five minutes; and a
//! page whose own name it rebinds to 127.0.0.1 (DNS rebinding) can then
//! read the answers as its own: histograms, symbol names, code paths.
//!
//! - Every current browser says where a request comes from in
//!   `Sec-Fetch-Site` (to loopback and `https://` addresses, which it counts
//!   as secure): `cross-site` and `same-site` requests are refused.
//!   `same-origin` (the routes' own index page) and `none` (an address
//!   typed or bookmarked) pass, as do tools that send no such header
//!   (curl, `go tool pprof`, Prometheus).
//! - Without a token, and unless remote clients are allowed, the `Host`
//!   must be an IP address or `localhost` (or a name under `.localhost`,
//!   which browsers resolve to loopback themselves): a rebound name is
//!   neither. Not the unspecified address (`0.0.0.0`, `[::]`), which some
//!   browsers send to loopback without `Sec-Fetch-Site`. With a token a rebinding page has nothing to gain, as it
//!   cannot send the token.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::DebugConfig;
use crate::query::quoted;
use crate::reply;

/// What [`refuse_other_sites`] checks for a [`DebugConfig`]: the
/// `Sec-Fetch-Site` of every request, and the `Host` only without a token
/// and without [`allow_remote`](DebugConfig::allow_remote).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrowserGuard {
    check_host: bool,
}

impl BrowserGuard {
    /// The checks the debug routes make under `config`.
    pub fn new(config: &DebugConfig) -> Self {
        BrowserGuard { check_host: config.token.is_none() && !config.allow_remote }
    }
}

/// Middleware: `403 Forbidden` for a request a browser sent for another
/// site's page (`Sec-Fetch-Site: cross-site` or `same-site`) and, when
/// `guard` checks it, for one whose `Host` is neither an IP address nor
/// `localhost`, the mark of a DNS-rebinding page (or is an unspecified
/// address, `0.0.0.0`, `[::]` or `[::ffff:0:0]`, which some browsers send to
/// loopback as if from no site).
///
/// The debug routes use it; guard an application's own route that carries
/// what they do (the demo's `/metrics`) the same way, inside the token:
///
/// ```
/// use axum::{Router, middleware, routing::any};
/// use snapview_flame::{BrowserGuard, DebugConfig};
/// let config = DebugConfig::default().without_token();
/// let app: Router = Router::new().route(
///     "/metrics",
///     any(|| async { "# my metrics" })
///         .layer(middleware::from_fn_with_state(BrowserGuard::new(&config), snapview_flame::refuse_other_sites))
///         .layer(middleware::from_fn(snapview_flame::only_get)),
/// );
/// ```
///
/// Browsers send `Sec-Fetch-Site` to secure contexts only: loopback and
/// `https://`. Served beyond loopback over plain HTTP (`allow_remote`), a
/// browser's cross-site requests carry none, and only the token guards
/// the routes.
pub async fn refuse_other_sites(State(guard): State<BrowserGuard>, request: Request, next: Next) -> Response {
    if let Some(site) = sent_for_another_site(request.headers()) {
        let message = format!(
            "refused: a browser sent this request for a page of another site (Sec-Fetch-Site: {}); \
             open the address directly, or use curl or go tool pprof",
            quoted(site)
        );
        return reply::error(StatusCode::FORBIDDEN, message);
    }
    let elsewhere = guard.check_host.then(|| host(&request)).flatten().filter(|host| !names_loopback(host));
    if let Some(host) = elsewhere {
        let message = format!(
            "refused: Host {} is neither an IP address (other than 0.0.0.0 or [::]) nor localhost, \
             and without a token only those are answered (a guard against DNS rebinding); \
             use 127.0.0.1 or localhost, or set a token",
            quoted(host)
        );
        return reply::error(StatusCode::FORBIDDEN, message);
    }
    next.run(request).await
}

/// The `Sec-Fetch-Site` of a request made for another site's page.
fn sent_for_another_site(headers: &HeaderMap) -> Option<&str> {
    let site = headers.get("sec-fetch-site")?.to_str().unwrap_or("(not text)");
    (!matches!(site, "same-origin" | "none")).then_some(site)
}

/// The host the request is addressed to: the `Host` header, else the
/// authority of an absolute request target. `None` for neither (HTTP/1.0).
fn host(request: &Request) -> Option<&str> {
    match request.headers().get(header::HOST) {
        // A `Host` that is not text cannot name loopback.
        Some(value) => Some(value.to_str().unwrap_or("(not text)")),
        None => request.uri().host(),
    }
}

/// Whether `host` (with or without its port) is an IP address other than an
/// unspecified one (`0.0.0.0`, `[::]`, `[::ffff:0:0]`), `localhost` or a
/// name under `.localhost`.
///
/// The unspecified address is no address a client can reach a server at,
/// except that some browsers send requests for `http://0.0.0.0:port` to
/// loopback, without `Sec-Fetch-Site` (it is not a trustworthy origin): a
/// page on any site could embed such a URL and start a profile.
fn names_loopback(host: &str) -> bool {
    let name = without_port(host);
    if let Some(literal) = name.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        return literal.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| !IpAddr::V6(ip).to_canonical().is_unspecified());
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return !ip.to_canonical().is_unspecified();
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// `host` without a trailing `:port`; an IPv6 literal keeps its brackets.
fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        Some((name, port)) if name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_and_localhost_name_loopback() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:6060",
            "[::1]",
            "[::1]:6060",
            "localhost",
            "LocalHost:8080",
            "localhost.",
            "app.localhost:3000",
            "10.0.0.7:6060",
        ] {
            assert!(names_loopback(host), "{host}");
        }
    }

    #[test]
    fn other_names_do_not() {
        for host in [
            "attacker.example",
            "attacker.example:6060",
            "localhost.attacker.example",
            "notlocalhost",
            "127.0.0.1.attacker.example",
            "[::1",
            "[localhost]",
            "0.0.0.0",
            "0.0.0.0:6060",
            "[::]:6060",
            "[::ffff:0:0]",
            "[::ffff:0.0.0.0]:6060",
            "",
            "(not text)",
        ] {
            assert!(!names_loopback(host), "{host}");
        }
    }

    #[test]
    fn only_other_sites_are_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(sent_for_another_site(&headers), None, "curl and go tool pprof send no Sec-Fetch-Site");
        for (site, refused) in [("same-origin", false), ("none", false), ("cross-site", true), ("same-site", true)] {
            headers.insert("sec-fetch-site", site.parse().unwrap());
            assert_eq!(sent_for_another_site(&headers).is_some(), refused, "{site}");
        }
    }
}
