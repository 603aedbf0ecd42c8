//! Runnable examples of [snapview](https://docs.rs/snapview), and the library
//! part of the biggest one, the `service` gateway, so that its tests can start
//! it in-process.
//!
//! Examples (`cargo run --release -p snapview-examples --example NAME`):
//!
//! - `service`: an instrumented HTTP gateway (axum on tokio) with a
//!   hot-reloaded `routes` map, per-request snapshots, per-route counters in
//!   `request_stats`, `/metrics`, `/debug/pprof`, OTLP export and a built-in
//!   load generator; see [`gateway`].
//! - `config_reload`: hot reload with `diff` and change notification
//!   (`SnapMap::subscribe`).
//! - `metrics_cache`: writers updating counters while a scraper checks that
//!   every snapshot it iterates is consistent.
//! - `request_context`: one snapshot shared by the tokio tasks of a request,
//!   without a copy.
//!
//! Unix only: `service` waits for SIGTERM (`tokio::signal::unix`), and the
//! tests make FIFOs (`mkfifo`), read `/dev/zero` and send signals with `kill`.
//! CI builds and runs it on Linux.
//!
//! Features (off by default; each turns on snapview's feature of that name):
//!
//! - `console`: tokio-console support in `service`. Requires
//!   `RUSTFLAGS="--cfg tokio_unstable"`.
//! - `otlp-tls`: OTLP export from `service` to `https://` collectors
//!   (`OTEL_EXPORTER_OTLP_CERTIFICATE` for a CA of your own). Requires a C
//!   compiler for aws-lc.

#![forbid(unsafe_code)]

pub mod gateway;

use std::time::Duration;

/// The `--seconds N` flag of the small examples (`default` when absent):
/// prints the usage and exits with status 2 on anything else.
pub fn seconds_flag(example: &str, default: u64) -> Duration {
    let mut args = std::env::args().skip(1);
    let mut seconds = default;
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--seconds" => args.next().and_then(|v| v.parse().ok()).filter(|n| (1..=3600).contains(n)),
            _ => None,
        };
        match parsed {
            Some(n) => seconds = n,
            None => {
                eprintln!(
                    "{example}: bad argument {arg:?}\nusage: {example} [--seconds N]  (N in 1..=3600, default {default})"
                );
                std::process::exit(2);
            }
        }
    }
    Duration::from_secs(seconds)
}
