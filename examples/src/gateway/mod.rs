//! A small HTTP gateway that uses snapview the way a real service would.
//!
//! - `routes` (`SnapMap<String, String>`, prefix → upstream) is loaded from a
//!   TOML file and hot-reloaded ([`reload`]): each edit is published as one
//!   version and its diff is logged; a bad file (one with no `[[route]]`
//!   too, unless it says `route = []`) keeps the last good version.
//! - Each request to `/route/<path>`, or to `<path>` itself where nothing
//!   else is served, takes one snapshot of `routes` and resolves the longest
//!   matching prefix of its path in normal form ([`app`], [`path`]).
//! - `request_stats` (`SnapMap<String, RouteStats>`) counts requests per
//!   route, one `update` per request; `/metrics` renders one snapshot of it
//!   ([`metrics`]).
//! - snapview's `/debug/pprof` endpoints are served on the same port, and an
//!   optional load generator ([`load`]) keeps it busy.
//!
//! [`Service::start`] runs all of it on the current tokio runtime and returns
//! a handle; [`Service::shutdown`] stops it.

pub mod app;
pub mod cli;
pub mod config;
pub mod load;
pub mod metrics;
pub mod path;
pub mod reload;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use snapview::SnapMap;
use snapview::debug::DebugConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::config::ConfigError;
use self::load::{LoadConfig, LoadError, LoadSummary};

/// Prefix → upstream URL.
pub type RouteMap = SnapMap<String, String>;

/// Route prefix (or [`app::UNMATCHED`]) → its counters.
pub type StatsMap = SnapMap<String, RouteStats>;

/// Counters of one route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// Requests resolved to this route.
    pub requests: u64,
    /// Of which answered 404 (only under [`app::UNMATCHED`]).
    pub not_found: u64,
    /// Bytes of the response bodies.
    pub response_bytes: u64,
}

/// The routes file shipped with the examples, `examples/data/routes.toml`,
/// as an absolute path: found whatever the current directory.
pub fn default_routes_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/routes.toml"))
}

/// How long [`Service::shutdown`] lets running requests finish (a CPU
/// profile may have asked for 30 s) before it cuts them off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What [`Service::start`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free one ([`Service::local_addr`] tells which).
    pub addr: SocketAddr,
    /// Whether `addr` may be a non-loopback address.
    pub allow_remote: bool,
    /// The routes file.
    pub routes_path: PathBuf,
    /// How often the routes file is checked for changes.
    pub reload_every: Duration,
    /// The load generator, if any.
    pub load: Option<LoadConfig>,
    /// Token of the `/debug/pprof` endpoints.
    pub debug: DebugConfig,
}

impl Default for Config {
    /// `127.0.0.1:8080`, the shipped routes file checked every 100 ms, no
    /// load, debug token from `SNAPVIEW_DEBUG_TOKEN`.
    fn default() -> Self {
        Config {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            allow_remote: false,
            routes_path: default_routes_path(),
            reload_every: Duration::from_millis(100),
            load: None,
            debug: DebugConfig::default(),
        }
    }
}

/// Why the service did not start.
#[derive(Debug)]
pub enum StartError {
    /// The routes file cannot be used, and there is no earlier version to keep.
    Routes(ConfigError),
    /// A non-loopback address without [`Config::allow_remote`].
    NotLoopback(SocketAddr),
    /// The address cannot be bound.
    Bind(SocketAddr, io::Error),
    /// The load generator's settings are out of bounds.
    Load(LoadError),
    /// The debug token cannot be sent in a header (`DebugConfig::validate`).
    Token(io::Error),
    /// [`Config::reload_every`] is zero, or longer than
    /// [`MAX_RELOAD_EVERY`]: the reloader would read the file without a
    /// pause (zero), and a day is longer than any reload wanted (a typo).
    ReloadInterval,
}

/// The longest [`Config::reload_every`] taken.
pub const MAX_RELOAD_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Routes(err) => write!(f, "cannot load the routes: {err}"),
            StartError::NotLoopback(addr) => write!(
                f,
                "refusing to listen on {addr}: it serves /debug/pprof; use a loopback address, \
                 or --allow-remote (and a --token)"
            ),
            StartError::Bind(addr, err) => write!(f, "cannot listen on {addr}: {err}"),
            StartError::Load(err) => err.fmt(f),
            StartError::Token(err) => write!(f, "--token or ${}: {err}", snapview::debug::TOKEN_ENV),
            StartError::ReloadInterval => {
                f.write_str("the routes file's reload interval must be above zero and at most a day")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// A running gateway; stop it with [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    gateway: app::Gateway,
    /// Stops the load generator and the reloader.
    stop: watch::Sender<bool>,
    /// Starts the server's graceful shutdown; sent after the load generator
    /// has stopped, so that none of its requests meets a closing server.
    stop_server: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
    reloader: JoinHandle<()>,
    load: Option<JoinHandle<Result<LoadSummary, LoadError>>>,
}

/// How the service ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// What the load generator did, if it ran.
    pub load: Option<LoadSummary>,
    /// Whether requests still running after [`SHUTDOWN_GRACE`] were cut off.
    pub forced: bool,
}

impl Service {
    /// Loads the routes, binds, and spawns the server, the reloader and (if
    /// configured) the load generator on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// See [`StartError`].
    pub async fn start(config: Config) -> Result<Service, StartError> {
        if !config.addr.ip().is_loopback() && !config.allow_remote {
            return Err(StartError::NotLoopback(config.addr));
        }
        config.debug.validate().map_err(StartError::Token)?;
        // Zero would make the reloader read the file in a loop, a core's
        // worth, and a duration past a day is a typo more likely than a
        // wish (`Duration::MAX` would be a reloader that never reads).
        if config.reload_every.is_zero() || config.reload_every > MAX_RELOAD_EVERY {
            return Err(StartError::ReloadInterval);
        }
        if let Some(load) = &config.load {
            load.validate().map_err(StartError::Load)?;
            // The generator only sends to this process, over loopback: say so
            // now rather than have it end at its first request.
            load::target_for(config.addr).map_err(StartError::Load)?;
        }
        // Remote clients allowed lifts the debug routes' `Host` check too
        // (below), also on a loopback address: without a token, a web page
        // the machine's browser opens could then reach them by DNS rebinding.
        if config.allow_remote && config.debug.token.is_none() {
            tracing::warn!(
                addr = %config.addr,
                "remote clients allowed without a token: /debug/pprof and /metrics answer any Host, \
                 so anyone who reaches this address, or a web page by DNS rebinding, can profile this process (--token)"
            );
        }
        // On a blocking thread, as the reloader reads it: a file on a hung
        // network mount then holds that thread, not the runtime's, whose
        // other tasks (the demo's wait for Ctrl-C) go on.
        let routes_path = config.routes_path.clone();
        let (table, loaded_text) = match tokio::task::spawn_blocking(move || config::load(&routes_path)).await {
            Ok(loaded) => loaded,
            Err(err) => Err(ConfigError {
                path: config.routes_path.clone(),
                message: format!("cannot read: the read failed: {err}"),
            }),
        }
        .map_err(StartError::Routes)?;
        // Bound before the maps are made: a start that fails to bind (and
        // that the demo retries on a free port) leaves nothing behind, in
        // particular no calls in the maps' latency histograms.
        let listener = TcpListener::bind(config.addr).await.map_err(|err| StartError::Bind(config.addr, err))?;
        let addr = listener.local_addr().map_err(|err| StartError::Bind(config.addr, err))?;
        let gateway = app::Gateway {
            routes: Arc::new(SnapMap::builder().name("routes").build()),
            // `RouteStats` is `Copy`: its copies may share the `String` keys
            // of the nodes a write copies instead of cloning them.
            request_stats: Arc::new(SnapMap::builder().name("request_stats").lend_copy_values().build()),
        };
        reload::apply(&gateway.routes, &table);
        // What `/metrics` does at each scrape, once now: so that the latency
        // report (`/debug/pprof/histograms`) lists both maps from the start,
        // before the first request or scrape.
        drop(gateway.request_stats.snapshot());
        tracing::info!(
            routes = table.len(),
            version = gateway.routes.version(),
            "loaded {}",
            config.routes_path.display()
        );

        let (stop, stopped) = watch::channel(false);
        let (stop_server, mut signal) = watch::channel(false);
        // Remote clients address the service by its name: with remote
        // clients allowed, the debug routes answer any `Host`.
        let debug = config.debug.clone().allow_remote(config.allow_remote);
        let app = app::router(gateway.clone(), &debug);
        // Not `axum::serve`: its connections never time out, and outlive the
        // task when `shutdown` cuts requests off (see `serve_router`).
        let server = tokio::spawn(snapview::debug::serve_router(
            listener,
            app,
            snapview::debug::ConnectionLimits::default(),
            async move {
                // An error means the sender is gone: stop as well.
                let _ = signal.wait_for(|stopped| *stopped).await;
            },
        ));
        let reloader = tokio::spawn(reload::run(
            config.routes_path.clone(),
            config.reload_every,
            Arc::clone(&gateway.routes),
            loaded_text,
            stopped.clone(),
        ));
        let load = config.load.map(|load| {
            let token = config.debug.token.clone();
            tokio::spawn(load::run(addr, load, Arc::clone(&gateway.routes), token, stopped.clone()))
        });
        Ok(Service { addr, gateway, stop, stop_server, server, reloader, load })
    }

    /// The address it listens on (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `routes` map (e.g. to [`subscribe`](SnapMap::subscribe) to reloads).
    pub fn routes(&self) -> &Arc<RouteMap> {
        &self.gateway.routes
    }

    /// The `request_stats` map.
    pub fn request_stats(&self) -> &Arc<StatsMap> {
        &self.gateway.request_stats
    }

    /// Stops the load generator, lets running requests finish (for at most
    /// [`SHUTDOWN_GRACE`]), closes the port and stops the reloader.
    ///
    /// A read of the routes file that hangs (a stalled mount) is left to its
    /// blocking thread: a runtime dropped plainly (`#[tokio::main]`'s) waits
    /// for that thread at exit; end it with
    /// [`Runtime::shutdown_timeout`](tokio::runtime::Runtime::shutdown_timeout),
    /// as the demo's `main` does.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        let mut report = ShutdownReport::default();
        if let Some(load) = self.load {
            // The generator checks `stop` between requests, each bounded by its 2 s timeout.
            report.load = load.await.ok().and_then(Result::ok);
        }
        let _ = self.stop_server.send(true);
        let mut server = self.server;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::error!(error = %err, "the server stopped with an error"),
            Ok(Err(err)) => tracing::error!(error = %err, "the server task failed"),
            Err(_) => {
                tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; cutting them off");
                server.abort();
                let _ = server.await;
                report.forced = true;
            }
        }
        // It stops at once, also in a read that never returns (a stalled
        // network mount), which it leaves to its blocking thread; bounded
        // all the same, since a shutdown that hangs is worse than one that
        // leaves a task behind.
        let mut reloader = self.reloader;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut reloader).await.is_err() {
            tracing::warn!("the routes reloader did not stop within {SHUTDOWN_GRACE:?}; leaving it");
            reloader.abort();
        }
        report
    }
}
