//! The router and the ways to serve it.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::RawQuery;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::any;
use snapview_instrument::prometheus;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::config::DebugConfig;
use crate::connections::{ConnectionLimits, serve_router};
use crate::query::Query;
use crate::{auth, browser, cpu, reply, views};

/// Where [`serve`] is usually pointed: `127.0.0.1:6060`, Go's customary pprof port.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6060);

/// The debug routes with [`DebugConfig::default()`] (token from
/// `SNAPVIEW_DEBUG_TOKEN`), to merge into an application's router.
///
/// They answer whoever reaches the application: without a token, they
/// refuse only what a browser sends (cross-site requests, a `Host` that is a
/// name, for DNS rebinding), not other machines asking by IP address. An
/// application that listens beyond loopback needs the token.
///
/// # Panics
///
/// If `SNAPVIEW_DEBUG_TOKEN` holds a token that cannot be sent in a header,
/// one with a character other than printable ASCII (a space, a trailing
/// newline): see [`router_with`] and [`DebugConfig::validate`].
pub fn router() -> Router {
    router_with(&DebugConfig::default())
}

/// The debug routes, [`ROUTES`], behind the token if `config` has one, to
/// merge into an application's router: they bring no fallback (so an
/// application that has one can merge them), and the token guards only them,
/// every method on them (a wrong one's 405 would tell the path exists), never
/// the application's other paths or its 404s.
///
/// They refuse what a web page can make a browser send ([`refuse_other_sites`](crate::refuse_other_sites)):
/// without a token, and unless `config` [allows remote clients](DebugConfig::allow_remote),
/// a request addressed by a name other than `localhost` (a scraper that
/// reaches the application as `app:8080`, say) gets 403: set a token, or
/// `allow_remote(true)`, for such clients.
///
/// # Panics
///
/// If the token cannot be sent in a header ([`DebugConfig::validate`]), as
/// axum's own routing panics on a bad route: a mistake of set-up, better
/// caught at start than as a server refusing every request. Call
/// `validate` first to report it your own way.
pub fn router_with(config: &DebugConfig) -> Router {
    if let Err(err) = config.validate() {
        panic!("{err}");
    }
    let handlers = [
        any(index),
        any(index),
        any(cpu::profile),
        any(cpu::flamegraph),
        any(views::views),
        any(histograms),
        any(metrics),
    ];
    let routes =
        ROUTES.into_iter().zip(handlers).fold(Router::new(), |router, (path, handler)| router.route(path, handler));
    // Every method reaches the route, so the method is checked inside the
    // token check: axum's own 405 for `get` routes (and its `Allow` header)
    // answers before any layer of the route's can, telling without the
    // token which paths exist.
    let guard = browser::BrowserGuard::new(config);
    let routes = routes.route_layer(axum::middleware::from_fn_with_state(guard, browser::refuse_other_sites));
    let routes = routes.route_layer(axum::middleware::from_fn(refuse_bodies));
    let routes = routes.route_layer(axum::middleware::from_fn(only_get));
    let routes = match &config.token {
        Some(token) => routes.route_layer(axum::middleware::from_fn_with_state(token.clone(), auth::require_token)),
        None => routes,
    };
    // Outermost, so that the token's 401 gets them too.
    routes.route_layer(axum::middleware::map_response(private_and_unsniffed))
}

/// Every answer of the debug routes is marked for no cache (a flamegraph
/// opened in a browser would otherwise leave the process's symbols in its
/// disk cache, and a profile is stale the moment it ends) and for no content
/// sniffing (an error echoing a query is plain text, and must stay so; Go's
/// `net/http/pprof` sets `nosniff` too).
async fn private_and_unsniffed(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Middleware: `405 Method Not Allowed` with `Allow: GET,HEAD` for anything
/// but `GET` and `HEAD` (whose body hyper leaves out).
///
/// The debug routes use it under [`require_token`](crate::require_token),
/// on routes made with `any`: a route made with `get` answers a wrong method
/// with axum's own 405 and `Allow` before any of its layers runs, telling
/// without the token that the path exists. Guard an application's own
/// route the same way:
///
/// ```
/// use axum::{Router, middleware, routing::any};
/// let token = "s3cret".to_string();
/// let app: Router = Router::new().route(
///     "/metrics",
///     any(|| async { "# my metrics" })
///         .layer(middleware::from_fn(snapview_flame::only_get))
///         .layer(middleware::from_fn_with_state(token, snapview_flame::require_token)),
/// );
/// ```
pub async fn only_get(request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    let mut response = reply::error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served here");
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    response
}

/// Middleware: `400 Bad Request` for a request with a body. None of the
/// routes reads one, and one left unread hides the client's leaving: hyper
/// looks for the connection's end only once the body is read, so a profile
/// whose client has gone would run its whole window, holding the profiler.
async fn refuse_bodies(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let declared = headers.get(header::CONTENT_LENGTH).is_some_and(|length| length != "0");
    if declared || headers.contains_key(header::TRANSFER_ENCODING) {
        return reply::error(StatusCode::BAD_REQUEST, "these endpoints take no request body");
    }
    next.run(request).await
}

/// The paths the debug router serves.
pub const ROUTES: [&str; 7] = [
    "/debug/pprof",
    "/debug/pprof/",
    "/debug/pprof/profile",
    "/debug/pprof/flamegraph",
    "/debug/pprof/views",
    "/debug/pprof/histograms",
    "/metrics",
];

/// What [`serve_with`] serves: the debug routes, and a 404 that names the
/// index for any other path, every answer behind the token if there is one
/// (so that without it, nothing tells which paths exist).
fn standalone(config: &DebugConfig) -> Router {
    let unknown = Router::new().fallback(not_found);
    let unknown = match &config.token {
        Some(token) => unknown.layer(axum::middleware::from_fn_with_state(token.clone(), auth::require_token)),
        None => unknown,
    };
    // The same headers as the routes' answers: a 401 without them would
    // tell an unknown path from a known one.
    let unknown = unknown.layer(axum::middleware::map_response(private_and_unsniffed));
    router_with(config).merge(unknown)
}

/// Serves [`router()`] on `addr` until the process ends. See [`serve_with`].
///
/// # Errors
///
/// As [`serve_with`].
pub async fn serve(addr: impl ToSocketAddrs) -> io::Result<()> {
    serve_with(addr, DebugConfig::default()).await
}

/// Serves the debug routes on `addr` until the process ends, within the
/// default [`ConnectionLimits`] (see [`serve_router`]).
///
/// # Errors
///
/// `InvalidInput` if the token cannot be sent ([`DebugConfig::validate`]);
/// `PermissionDenied` if `addr` resolves to a non-loopback address and
/// `config` does not [`allow_remote`](DebugConfig::allow_remote); the
/// errors of resolving and binding. Nothing once serving: an error accepting a connection is logged and
/// retried (see [`serve_router`](crate::serve_router)).
pub async fn serve_with(addr: impl ToSocketAddrs, config: DebugConfig) -> io::Result<()> {
    config.validate()?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    for addr in &addrs {
        check_reach(*addr, &config)?;
    }
    let listener = TcpListener::bind(&addrs[..]).await?;
    serve_with_shutdown(listener, config, std::future::pending()).await
}

/// Serves the debug routes on an already bound `listener` (e.g. port 0 in
/// tests) until `signal` completes, then lets running requests finish (see
/// [`serve_router`](crate::serve_router) for what it closes at once).
///
/// # Errors
///
/// `InvalidInput` if the token cannot be sent ([`DebugConfig::validate`]);
/// `PermissionDenied` if the listener is on a non-loopback address and
/// `config` does not [`allow_remote`](DebugConfig::allow_remote); the error
/// of reading the listener's address. All before serving; nothing after:
/// an error accepting a connection is logged and retried (see
/// [`serve_router`](crate::serve_router)).
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: DebugConfig,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_limits(listener, config, ConnectionLimits::default(), signal).await
}

/// [`serve_with_shutdown`] within `limits`, the server's bounds on each
/// client (how many connections, how long a request head may take).
///
/// # Errors
///
/// As [`serve_with_shutdown`], and `InvalidInput` if `limits` cannot be
/// served ([`ConnectionLimits::validate`]); all before serving.
pub async fn serve_with_limits(
    listener: TcpListener,
    config: DebugConfig,
    limits: ConnectionLimits,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config.validate()?;
    // Before the warning below: a server that will not start warns of nothing.
    limits.validate()?;
    let addr = listener.local_addr()?;
    check_reach(addr, &config)?;
    if !addr.ip().is_loopback() && config.token.is_none() {
        tracing::warn!(target: "snapview_flame", %addr, "serving /debug/pprof beyond loopback without a token: anyone who reaches {addr} can profile this process");
    }
    serve_router(listener, standalone(&config), limits, signal).await
}

fn check_reach(addr: SocketAddr, config: &DebugConfig) -> io::Result<()> {
    if addr.ip().is_loopback() || config.allow_remote {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refusing to serve /debug/pprof on {addr}: profiles expose the program; \
             use a loopback address or DebugConfig::allow_remote(true) (with a token)"
        ),
    ))
}

/// The endpoints and what they give, as Go's index page lists them.
const ENDPOINTS: [(&str, &str); 5] = [
    ("/debug/pprof/profile", "CPU profile (gzipped profile.proto for go tool pprof); ?seconds=30&frequency=99"),
    ("/debug/pprof/flamegraph", "the same CPU profile as an SVG flamegraph; ?seconds=30&frequency=99"),
    ("/debug/pprof/views", "wall time in snapview views under the caller's spans; ?seconds=30&format=svg|folded|pprof"),
    ("/debug/pprof/histograms", "latency histograms of every map and operation; ?format=text|json"),
    ("/metrics", "Prometheus text exposition of the same histograms and call counts"),
];

async fn index() -> Html<String> {
    let items: String =
        ENDPOINTS.iter().map(|(path, what)| format!("<li><a href=\"{path}\">{path}</a>: {what}</li>\n")).collect();
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>/debug/pprof/</title></head><body>\n\
         <h1>/debug/pprof/</h1>\n<ul>\n{items}</ul>\n\
         <p>Read a CPU profile with <code>go tool pprof 'http://HOST/debug/pprof/profile?seconds=10'</code>.</p>\n\
         </body></html>\n"
    ))
}

async fn histograms(RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    match query.misspelt(&["format"]).and_then(|()| query.format(&["text", "json"])) {
        Ok("json") => match serde_json::to_string(&snapview_instrument::report()) {
            Ok(json) => reply::body("application/json", json),
            Err(err) => reply::Failure::internal("could not encode the histograms", err).into_response(),
        },
        Ok(_) => reply::body("text/plain; charset=utf-8", snapview_instrument::report().to_string()),
        Err(message) => reply::error(StatusCode::BAD_REQUEST, message),
    }
}

async fn metrics() -> Response {
    reply::body(prometheus::CONTENT_TYPE, prometheus::render_current())
}

async fn not_found() -> Response {
    reply::error(StatusCode::NOT_FOUND, "no such endpoint; see /debug/pprof/")
}
