//! Latency histograms, tracing spans and telemetry export for
//! [snapview](https://docs.rs/snapview)'s map views.
//!
//! This crate knows nothing of maps: it records *operations* ([`Op`]) under a
//! map's *name*. `snapview` calls it through a [`probe::MapProbe`] when built
//! with its `instrument` feature, and re-exports what applications need as
//! `snapview::instrument`.
//!
//! # What is recorded
//!
//! For every (map name, [`Op`]):
//! - the exact number of calls, counted per thread without shared atomics;
//! - the duration of one call in [`default_sample_every`] (per map:
//!   `sample_every`; for `iter.next`, one `next()` in that many of one
//!   iteration in that many), into an HdrHistogram with 3 significant figures, merged
//!   across threads when read ([`report()`]);
//! - a `tracing` span per operation, target [`TARGET`]: `snapview.snapshot`,
//!   `snapview.read`, `snapview.iter`, `snapview.publish`, `snapview.diff` at
//!   DEBUG and `snapview.iter.next` at TRACE, each with fields `map` and
//!   `version`. A span whose level is off costs one cached check.
//!
//! # Reading it
//!
//! [`report()`] returns a [`Report`] (a table with `Display`, JSON with
//! `serde`, look-ups with [`Report::get`]); [`prometheus::render`] gives the
//! Prometheus text exposition.
//!
//! # Features
//!
//! - `otlp`: OTLP export of the spans and of the histograms (as OTLP
//!   histograms) from the telemetry pipeline (gRPC or HTTP/protobuf).
//!   Requires `opentelemetry`, `opentelemetry_sdk`, `opentelemetry-otlp`,
//!   `opentelemetry-proto`, `tracing-opentelemetry`, `tonic`, `prost`,
//!   `reqwest` (blocking) and `tokio`.
//! - `otlp-tls`: `otlp`, plus TLS for `https://` collectors (the platform's
//!   roots, or the certificates of `OTEL_EXPORTER_OTLP_CERTIFICATE` /
//!   `TelemetryBuilder::otlp_certificate`) and client certificates.
//!   Requires rustls with aws-lc-rs (through tonic's and reqwest's TLS
//!   features: a C compiler builds aws-lc) and `rustls-pki-types`.
//! - `console`: tokio-console support in the telemetry pipeline. Requires
//!   `console-subscriber` (and `humantime`, `tokio` and `tonic`'s server,
//!   already in its build), and the application built
//!   with `--cfg tokio_unstable`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(debug_assertions)]
mod interest;
mod op;
pub mod probe;
pub mod prometheus;
mod registry;
mod report;
mod spans;
mod sync;
mod telemetry;
pub mod text;
pub mod views;

pub use op::Op;
pub use registry::{DEFAULT_SAMPLE_EVERY, default_sample_every, set_default_sample_every};
pub use report::{BUCKET_BOUNDS_NS, OpStats, Report, report};
pub use spans::TARGET;
pub use telemetry::{BoxedLayer, Telemetry, TelemetryBuilder, TelemetryError, TelemetryGuard};
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use telemetry::{
    DEFAULT_EXPORT_TIMEOUT, DEFAULT_OTLP_FILTER, MAX_EXPORT_TIMEOUT, MAX_OTLP_MAPS, MIN_EXPORT_INTERVAL,
    MIN_EXPORT_TIMEOUT, Protocol,
};
