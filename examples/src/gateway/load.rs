//! A small built-in load generator, so that the histograms, `/metrics` and the
//! flamegraphs show something on the first run without any other tool.
//!
//! Bounded on purpose: at most [`MAX_RATE`] route requests per second (and
//! one `/metrics` request a second besides), for a bounded time, to a
//! loopback address only (it must never be a way to load someone else's
//! server).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::RouteMap;

/// Route requests per second unless told otherwise.
pub const DEFAULT_RATE: u32 = 200;
/// The highest [`LoadConfig::rate`] taken.
pub const MAX_RATE: u32 = 5000;
/// How long it runs unless told otherwise.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);
/// The longest it will run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Ticks per second: requests go out in small bursts, because tokio's timer
/// has a millisecond resolution and cannot pace 5000 single requests a second.
const TICKS_PER_SECOND: u32 = 100;

/// How hard and how long to load the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadConfig {
    /// Route requests per second, in `1..=MAX_RATE` (`/metrics`, once a
    /// second, comes on top).
    pub rate: u32,
    /// How long to run, at most [`MAX_DURATION`].
    pub duration: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig { rate: DEFAULT_RATE, duration: DEFAULT_DURATION }
    }
}

/// Why the load generator refused to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The target is not a loopback address.
    NotLoopback(SocketAddr),
    /// The rate is 0 or above [`MAX_RATE`].
    Rate(u32),
    /// The duration is 0 or above [`MAX_DURATION`].
    Duration(Duration),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotLoopback(addr) => write!(
                f,
                "the load generator only targets loopback addresses (or all of them: 0.0.0.0, [::]), \
                 not {addr}; --no-load serves {addr} without it"
            ),
            LoadError::Rate(rate) => write!(f, "load rate must be in 1..={MAX_RATE} requests/s, got {rate}"),
            LoadError::Duration(d) => write!(f, "load duration must be in 1..={} s, got {d:?}", MAX_DURATION.as_secs()),
        }
    }
}

impl std::error::Error for LoadError {}

/// What the load generator did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered (any status).
    pub answered: u64,
    /// Requests that failed (connection error, timeout).
    pub failed: u64,
    /// Requests answered `401 Unauthorized` (counted in `answered` too):
    /// none, unless the server wants a token the generator was not given.
    pub unauthorized: u64,
}

/// The address to send to for a server listening on `listening`: the
/// unspecified address (`0.0.0.0`, `::`) becomes loopback; anything else
/// must already be loopback.
///
/// # Errors
///
/// [`LoadError::NotLoopback`] for any other address.
pub fn target_for(listening: SocketAddr) -> Result<SocketAddr, LoadError> {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip if ip.is_loopback() => ip,
        _ => return Err(LoadError::NotLoopback(listening)),
    };
    Ok(SocketAddr::new(ip, listening.port()))
}

impl LoadConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    ///
    /// [`LoadError::Rate`] or [`LoadError::Duration`].
    pub fn validate(&self) -> Result<(), LoadError> {
        if !(1..=MAX_RATE).contains(&self.rate) {
            return Err(LoadError::Rate(self.rate));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(LoadError::Duration(self.duration));
        }
        Ok(())
    }
}

/// Sends `GET /route/<prefix>/demo` for each route in turn, and for
/// `/no/such/route` (a 404, unless a route covers it: a `/` catch-all
/// does), at most `config.rate` of them per second, and besides them
/// `GET /metrics` once a second, until `config.duration` has passed or
/// `stop` turns true. Requests go one after another, so a slow server slows
/// it down instead of piling requests up. `/metrics` is asked with `token`,
/// if the server has one (it guards `/metrics`).
///
/// # Errors
///
/// As [`target_for`] and [`LoadConfig::validate`], before sending anything.
pub async fn run(
    target: SocketAddr,
    config: LoadConfig,
    routes: Arc<RouteMap>,
    token: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> Result<LoadSummary, LoadError> {
    let target = target_for(target)?;
    config.validate()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("a plain HTTP client builds");
    let base = format!("http://{target}");
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / TICKS_PER_SECOND);
    // Skip, not burst: after a stall the rate must stay under the bound.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut summary = LoadSummary::default();
    let mut paths = demo_paths(&routes);
    let (mut paths_at, mut metrics_at) = (Instant::now(), Instant::now());
    let mut owed = 0u32; // rate / TICKS_PER_SECOND, carried in hundredths
    'run: while started.elapsed() < config.duration {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            _ = ticks.tick() => {}
        }
        owed += config.rate;
        while owed >= TICKS_PER_SECOND {
            owed -= TICKS_PER_SECOND;
            let path = &paths[(summary.sent % paths.len() as u64) as usize];
            send(client.get(format!("{base}/route{path}")), &mut summary).await;
            if *stop.borrow() {
                break 'run;
            }
        }
        if metrics_at.elapsed() >= Duration::from_secs(1) {
            metrics_at = Instant::now();
            let request = client.get(format!("{base}/metrics"));
            send(if let Some(token) = &token { request.bearer_auth(token) } else { request }, &mut summary).await;
        }
        if paths_at.elapsed() >= Duration::from_secs(1) {
            // Follow the routes file, so an edit shows in the load at once.
            paths_at = Instant::now();
            paths = demo_paths(&routes);
        }
    }
    tracing::info!(
        sent = summary.sent,
        answered = summary.answered,
        failed = summary.failed,
        unauthorized = summary.unauthorized,
        "load generator stopped"
    );
    Ok(summary)
}

async fn send(request: reqwest::RequestBuilder, summary: &mut LoadSummary) {
    summary.sent += 1;
    match request.send().await {
        Ok(response) => {
            summary.answered += 1;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED {
                summary.unauthorized += 1;
                if summary.unauthorized == 1 {
                    tracing::warn!(url = %response.url(), "load generator: answered 401 (a token it lacks)");
                }
            }
            // Read the body so the connection is reused.
            let _ = response.bytes().await;
        }
        Err(err) => {
            summary.failed += 1;
            if summary.failed == 1 {
                tracing::warn!(url = err.url().map(|u| u.as_str()), error = %err, "load generator: request failed");
            }
        }
    }
}

/// One path per route, and `/no/such/route`, meant for the 404s (which it
/// gets unless a route covers it).
fn demo_paths(routes: &RouteMap) -> Vec<String> {
    let _span = tracing::info_span!("loadgen.paths").entered();
    let snapshot = routes.snapshot();
    let mut paths: Vec<String> =
        snapshot.keys().map(|prefix| format!("{}/demo", prefix.trim_end_matches('/'))).collect();
    paths.sort_unstable();
    paths.push("/no/such/route".to_owned());
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        let target = |s: &str| target_for(s.parse().unwrap());
        assert_eq!(target("127.0.0.1:80"), Ok("127.0.0.1:80".parse().unwrap()));
        assert_eq!(target("0.0.0.0:81"), Ok("127.0.0.1:81".parse().unwrap()));
        assert_eq!(target("[::]:82"), Ok("[::1]:82".parse().unwrap()));
        assert_eq!(target("[::1]:83"), Ok("[::1]:83".parse().unwrap()));
        assert!(matches!(target("10.1.2.3:80"), Err(LoadError::NotLoopback(_))));
    }

    #[test]
    fn rate_and_duration_are_bounded() {
        let ok = LoadConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(LoadConfig { rate: 0, ..ok }.validate(), Err(LoadError::Rate(0)));
        assert_eq!(LoadConfig { rate: MAX_RATE + 1, ..ok }.validate(), Err(LoadError::Rate(MAX_RATE + 1)));
        let long = MAX_DURATION + Duration::from_secs(1);
        assert_eq!(LoadConfig { duration: long, ..ok }.validate(), Err(LoadError::Duration(long)));
    }
}
