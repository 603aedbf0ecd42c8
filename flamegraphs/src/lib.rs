//! The `/debug/pprof` endpoint for [snapview](https://docs.rs/snapview):
//! CPU profiles and view-cost flamegraphs as Go's `net/http/pprof` serves
//! them, plus the latency histograms and the Prometheus metrics of
//! `snapview-instrument`. Re-exported by `snapview` (feature `pprof`) as
//! `snapview::debug`.
//!
//! Mount [`router()`] in your own axum server, or run it on its own port with
//! [`serve`] (default [`DEFAULT_ADDR`], `127.0.0.1:6060`):
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! // Standalone, loopback only:
//! snapview_flame::serve(snapview_flame::DEFAULT_ADDR).await?;
//! # Ok(())
//! # }
//! # fn mount() {
//! // Or beside the application's own routes:
//! let app: axum::Router = axum::Router::new().merge(snapview_flame::router());
//! # }
//! ```
//!
//! Then `go tool pprof 'http://127.0.0.1:6060/debug/pprof/profile?seconds=10'`.
//!
//! # Endpoints
//!
//! | path | answer |
//! |---|---|
//! | `GET /debug/pprof/` | an HTML index of these endpoints |
//! | `GET /debug/pprof/profile?seconds=30&frequency=99` | CPU profile (pprof-rs), gzipped `profile.proto` |
//! | `GET /debug/pprof/flamegraph?seconds=30&frequency=99` | the same CPU profile as an SVG flamegraph |
//! | `GET /debug/pprof/views?seconds=30&format=svg` | view-cost flamegraph: wall time in snapview spans under the caller's spans; `format` = `svg`, `folded` or `pprof` |
//! | `GET /debug/pprof/histograms?format=text` | the latency report of `snapview-instrument`; `format` = `text` or `json` |
//! | `GET /metrics` | Prometheus text exposition |
//!
//! `seconds` must be in `1..=300` and `frequency` (Hz) in `1..=1000`, in
//! digits only; any other value, or an unknown `format`, is answered `400
//! Bad Request` with a message naming the parameter. So is a parameter that
//! looks like a misspelling of one the endpoint takes (`second`, `freq`),
//! naming the likely one; other parameters are ignored, as Go ignores them.
//! Unknown paths are `404`.
//!
//! One CPU profile runs at a time, because the profiler (a `SIGPROF` timer)
//! is process-wide: a second request while one runs waits up to half a
//! second for it to end (a client that has just left may still hold it),
//! then gets `409 Conflict`. A
//! client that disconnects mid-profile stops the profiler: the handler's
//! future is dropped, and with it the profiler guard. View profiles may
//! overlap each other and a CPU profile, up to four at once
//! (`snapview_instrument::views::MAX_WINDOWS`, each costing every snapview
//! span's close a hash-map update): a fifth gets `409 Conflict` at once. If
//! no subscriber carries the view
//! profiler's layer (`snapview_instrument::views::profiler().layer()`,
//! installed by the `Telemetry` pipeline), `/views` answers
//! `503 Service Unavailable` with the reason: the server works, this process
//! was not set up for it.
//!
//! Every route also answers `HEAD`. For the three profiles, a `HEAD` checks
//! the parameters as a `GET` does and answers the headers at once (with no
//! `Content-Length`, which would have to be the `GET`'s), without
//! profiling: an uptime monitor's probe must not hold the CPU profiler, or
//! one of the view windows, for the window it names.
//!
//! A window in which nothing was recorded gives a valid, empty answer: an SVG
//! that says "no samples", an empty folded text, a profile with no samples.
//!
//! # Security
//!
//! [`serve`] binds loopback addresses only, and so does [`serve_with`]
//! unless [`DebugConfig::allow_remote`] is set: profiles reveal the
//! program's code paths. With a token ([`DebugConfig::token`], or the `SNAPVIEW_DEBUG_TOKEN`
//! environment variable), every path [`serve`] answers, unknown ones
//! included, is `401 Unauthorized` unless the request carries
//! `Authorization: Bearer <token>`; merged into an application by
//! [`router_with`], the token guards the debug routes only, not the
//! application's own paths or its `404`s.
//!
//! # Features
//!
//! This crate has no optional features; `snapview`'s `pprof` feature pulls it
//! in (with `instrument`). It builds on Unix targets only: pprof-rs samples
//! with `SIGPROF`.

#![forbid(unsafe_code)]

mod auth;
mod browser;
mod config;
mod connections;
mod cpu;
mod query;
mod reply;
mod server;
mod views;
mod waiting;

pub use auth::require_token;
pub use browser::{BrowserGuard, refuse_other_sites};
pub use config::{DebugConfig, TOKEN_ENV};
pub use connections::{CLOSE_WAITING_AFTER, ConnectionLimits, serve_router};
pub use server::{
    DEFAULT_ADDR, ROUTES, only_get, router, router_with, serve, serve_with, serve_with_limits, serve_with_shutdown,
};
