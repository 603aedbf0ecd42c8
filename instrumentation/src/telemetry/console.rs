//! tokio-console through console-subscriber.
//!
//! console-subscriber reads its `TOKIO_CONSOLE_*` variables and starts its
//! server itself, on a thread that outlives everything: it panics on a
//! variable it cannot read and (on that thread, so the program goes on
//! without a console) on an address it cannot listen on, and nothing stops
//! it. The pipeline reads the variables here, binds the address itself, so
//! both are errors of `build()`, and serves the console's parts on a thread
//! of its own, which the [`TelemetryGuard`](super::TelemetryGuard) stops.

use std::ffi::OsString;

use super::{BoxedLayer, TelemetryBuilder, TelemetryError};

#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
impl TelemetryBuilder {
    /// Serves tokio-console (default `127.0.0.1:6669`; console-subscriber's
    /// `TOKIO_CONSOLE_BIND`, `TOKIO_CONSOLE_RETENTION`,
    /// `TOKIO_CONSOLE_PUBLISH_INTERVAL`, `TOKIO_CONSOLE_BUFFER_CAPACITY` and
    /// `TOKIO_CONSOLE_RECORD_PATH` apply). tokio only emits what the console
    /// shows when built with `--cfg tokio_unstable`, so without it
    /// [`build`](Self::build) returns [`TelemetryError::ConsoleNeedsTokioUnstable`].
    /// A variable it cannot read is a [`TelemetryError::InvalidEnvironment`],
    /// and an address already taken a [`TelemetryError::ConsoleServer`].
    ///
    /// The server listens from `build()` on and stops, closing its
    /// connections and freeing its address, when the
    /// [`TelemetryGuard`](super::TelemetryGuard) is dropped. The console's
    /// layer stays in the subscriber, which may outlive the guard (a global
    /// one does): it keeps taking tokio's instrumentation (below) and
    /// writing the recording of `TOKIO_CONSOLE_RECORD_PATH` if one was asked
    /// for, and drops what it would have sent the server.
    ///
    /// The console's layer takes tokio's TRACE instrumentation (its own
    /// filter), so `LevelFilter::current()` becomes TRACE while the layer is
    /// in the subscriber.
    pub fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }
}

/// The console, configured and listening, not yet serving: the pipeline
/// checks its settings and binds its address first, and starts its server
/// once the filters have parsed, before the OTLP exporters.
#[cfg(tokio_unstable)]
pub(super) struct Prepared {
    builder: console_subscriber::Builder,
    listener: std::net::TcpListener,
    /// Where `listener` listens: a port 0 asked for is the port it got.
    addr: std::net::SocketAddr,
}

#[cfg(tokio_unstable)]
impl Prepared {
    /// The console layer, with the filter console-subscriber gives it, and
    /// its server, serving on a thread of its own until [`Serving`] is
    /// dropped. What can fail (the server's runtime, the listener's
    /// registration with it, the thread) fails here, as a
    /// [`TelemetryError::ConsoleServer`], not later on the server's thread,
    /// where `build()` would have returned a console that serves nothing.
    pub(super) fn spawn(self) -> Result<(BoxedLayer, Serving), TelemetryError> {
        use tracing_subscriber::Layer as _;
        let addr = self.addr;
        let failed = |source| TelemetryError::ConsoleServer { addr, source };
        let mut runtime = Unserved(Some(
            tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(failed)?,
        ));
        self.listener.set_nonblocking(true).map_err(failed)?;
        let listener = {
            let _runtime = runtime.0.as_ref().map(tokio::runtime::Runtime::enter);
            tokio::net::TcpListener::from_std(self.listener).map_err(failed)?
        };
        let (layer, server) = self.builder.build();
        let layer = layer.with_filter(tracing_subscriber::filter::filter_fn(tokio_instrumentation)).boxed();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("snapview-console".into())
            .spawn(move || serve(runtime.0.take().expect("served once"), server, listener, stopped))
            .map_err(failed)?;
        Ok((layer, Serving { addr, stop: Some(stop), thread: Some(thread) }))
    }
}

/// The server's runtime until its thread takes it. Dropped before that (an
/// error on the way to serving), it shuts down without blocking: that drop
/// runs on the thread that called `build()`, which may be inside an
/// application's async runtime, where dropping a runtime panics.
#[cfg(tokio_unstable)]
struct Unserved(Option<tokio::runtime::Runtime>);

#[cfg(tokio_unstable)]
impl Drop for Unserved {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// What console-subscriber's own `spawn` lets through to its layer: tokio's
/// events (targets `runtime::*`, `tokio::*`) and its spans (names
/// `runtime.*`, and target `tokio` for older tokio versions).
#[cfg(tokio_unstable)]
fn tokio_instrumentation(meta: &tracing::Metadata<'_>) -> bool {
    if meta.is_event() {
        meta.target().starts_with("runtime") || meta.target().starts_with("tokio")
    } else {
        meta.name().starts_with("runtime.") || meta.target().starts_with("tokio")
    }
}

#[cfg(tokio_unstable)]
use tonic::transport::server::TcpIncoming;

/// Serves the console on this thread until `stopped` resolves (the guard
/// dropped its sender), then drops the runtime and with it every
/// connection's task and the aggregator: a client watching updates holds
/// its stream open for ever, so a graceful shutdown could wait for ever.
#[cfg(tokio_unstable)]
fn serve(
    runtime: tokio::runtime::Runtime,
    server: console_subscriber::Server,
    listener: tokio::net::TcpListener,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    // The server's own work must not reach the subscriber it serves: it
    // would report on itself (console-subscriber's `self_trace` off, its
    // default).
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    let served = runtime.block_on(async move {
        let console_subscriber::ServerParts { instrument_server, aggregator, .. } = server.into_parts();
        let aggregate = tokio::spawn(aggregator.run());
        // As tonic's own `serve(addr)` accepts (console-subscriber's way):
        // `TCP_NODELAY`, so that updates are not held back by Nagle.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let router = tonic::transport::Server::builder().add_service(instrument_server);
        let result = tokio::select! {
            served = router.serve_with_incoming(incoming) => served,
            _ = stopped => Ok(()),
        };
        aggregate.abort();
        result
    });
    drop(runtime);
    // Not expected: tonic 0.14 logs (at TRACE) and skips a connection it
    // fails to accept, and makes each connection's service without fail,
    // so serving ends with an error only if a later tonic adds one. Printed
    // then, as the subscriber may be the one this console served, and the
    // program goes on without its console.
    if let Err(err) = served {
        eprintln!("snapview-instrument: tokio-console's server stopped: {err}");
    }
}

/// The console's server, running; dropping it stops the server and waits
/// for its thread to end.
#[cfg(tokio_unstable)]
#[derive(Debug)]
pub(super) struct Serving {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(tokio_unstable)]
impl Serving {
    /// The address the server listens on.
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

#[cfg(tokio_unstable)]
impl Drop for Serving {
    fn drop(&mut self) {
        // The receiver resolves when the sender is gone, sent or not.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Its panic, if any, has been printed; a drop must not panic.
            let _ = thread.join();
        }
    }
}

/// Without `tokio_unstable` there is no console to start.
#[cfg(not(tokio_unstable))]
pub(super) enum Prepared {}

#[cfg(not(tokio_unstable))]
impl Prepared {
    pub(super) fn spawn(self) -> Result<(BoxedLayer, Serving), TelemetryError> {
        match self {}
    }
}

/// Without `tokio_unstable` no console serves.
#[cfg(not(tokio_unstable))]
#[derive(Debug)]
pub(super) enum Serving {}

#[cfg(not(tokio_unstable))]
impl Serving {
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        match *self {}
    }
}

/// Reads the console's variables and binds its address.
#[cfg(tokio_unstable)]
pub(super) fn prepare() -> Result<Prepared, TelemetryError> {
    let settings = Settings::read(&|var: &str| std::env::var_os(var))?;
    let addr = settings.bind.unwrap_or(DEFAULT_BIND);
    // Bound here and kept: the server serves on this listener, so an address
    // taken is an error now, not a panic on the server's thread later.
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| TelemetryError::ConsoleServer { addr, source })?;
    let addr = listener.local_addr().map_err(|source| TelemetryError::ConsoleServer { addr, source })?;
    let mut builder = console_subscriber::ConsoleLayer::builder().server_addr(addr);
    if let Some(retention) = settings.retention {
        builder = builder.retention(retention);
    }
    if let Some(interval) = settings.publish_interval {
        builder = builder.publish_interval(interval);
    }
    if let Some(capacity) = settings.buffer_capacity {
        builder = builder.event_buffer_capacity(capacity);
    }
    if let Some(path) = settings.record_path {
        check_record_path(&path)?;
        builder = builder.recording_path(path);
    }
    Ok(Prepared { builder, listener, addr })
}

#[cfg(not(tokio_unstable))]
pub(super) fn prepare() -> Result<Prepared, TelemetryError> {
    Err(TelemetryError::ConsoleNeedsTokioUnstable)
}

/// console-subscriber's default address.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
const DEFAULT_BIND: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 6669));

/// The shortest `TOKIO_CONSOLE_PUBLISH_INTERVAL` taken, as the OTLP export
/// intervals' [`MIN_EXPORT_INTERVAL`](super::MIN_EXPORT_INTERVAL): below it
/// the console's thread would publish (and wake) almost without pause, and
/// 0 panics in tokio's `interval`, on that thread. Refused rather than
/// raised to it: an interval set this short is likely a mistaken unit.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
const MIN_PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// The largest `TOKIO_CONSOLE_BUFFER_CAPACITY` taken (2^20 events, about
/// ten times console-subscriber's default): tokio's channel panics above
/// `usize::MAX >> 3`, and one that large, though it takes no room up front,
/// would hold events without bound while the console's thread lags.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
const MAX_BUFFER_CAPACITY: usize = 1 << 20;

/// The `TOKIO_CONSOLE_*` variables console-subscriber's `with_default_env`
/// reads, read the same way; `None` where one is not set. A value that is
/// not Unicode is an error naming it (as its lossy text), except the
/// recording's path, which is taken as the path it is.
#[derive(Debug, Default, PartialEq)]
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
struct Settings {
    bind: Option<std::net::SocketAddr>,
    retention: Option<std::time::Duration>,
    publish_interval: Option<std::time::Duration>,
    buffer_capacity: Option<usize>,
    record_path: Option<std::path::PathBuf>,
}

#[cfg_attr(not(tokio_unstable), allow(dead_code))]
impl Settings {
    fn read(env: &impl Fn(&str) -> Option<OsString>) -> Result<Settings, TelemetryError> {
        Ok(Settings {
            bind: read_var(env, "TOKIO_CONSOLE_BIND", "HOST:PORT that resolves, e.g. 127.0.0.1:6669", |value| {
                std::net::ToSocketAddrs::to_socket_addrs(value).ok()?.next()
            })?,
            retention: read_var(env, "TOKIO_CONSOLE_RETENTION", "a duration, e.g. 1h or 30s", duration)?,
            publish_interval: read_var(
                env,
                "TOKIO_CONSOLE_PUBLISH_INTERVAL",
                "a duration of at least 10ms, e.g. 1s",
                |value| duration(value).filter(|&interval| interval >= MIN_PUBLISH_INTERVAL),
            )?,
            // Zero, and more than tokio's limit (`usize::MAX >> 3`), would
            // panic in tokio's `mpsc::channel`, inside `build()`.
            buffer_capacity: read_var(
                env,
                "TOKIO_CONSOLE_BUFFER_CAPACITY",
                "a number of events from 1 to 1048576",
                |value| value.parse().ok().filter(|capacity| (1..=MAX_BUFFER_CAPACITY).contains(capacity)),
            )?,
            record_path: env("TOKIO_CONSOLE_RECORD_PATH").map(Into::into),
        })
    }
}

/// Whether console-subscriber can create its recording at `path`: it
/// panics inside `build()` where it cannot. The file is created here (empty)
/// if it is not there; console-subscriber creates it anyway, moments later.
/// Something there that is not a regular file (a FIFO would block both
/// opens) is refused.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
fn check_record_path(path: &std::path::Path) -> Result<(), TelemetryError> {
    let refused = |why: String| TelemetryError::InvalidEnvironment {
        var: "TOKIO_CONSOLE_RECORD_PATH",
        value: format!("{} ({why})", path.display()),
        expected: "a regular file that can be created and written",
    };
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(refused("not a regular file".into())),
        _ => {}
    }
    std::fs::OpenOptions::new().append(true).create(true).open(path).map(drop).map_err(|err| refused(err.to_string()))
}

fn duration(value: &str) -> Option<std::time::Duration> {
    value.parse::<humantime::Duration>().ok().map(Into::into)
}

/// `var` read by `parse` (which sees the value as set, as console-subscriber
/// does); an error naming it if `parse` finds nothing.
fn read_var<T>(
    env: &impl Fn(&str) -> Option<OsString>,
    var: &'static str,
    expected: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, TelemetryError> {
    let Some(value) = env(var) else { return Ok(None) };
    // Not Unicode, its lossy text reads as nothing valid: an error naming it.
    let value = value.to_string_lossy().into_owned();
    match parse(&value) {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(TelemetryError::InvalidEnvironment { var, value, expected }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, TelemetryError> {
        Settings::read(&|var: &str| vars.iter().find(|(name, _)| *name == var).map(|(_, value)| (*value).into()))
    }

    #[test]
    fn the_variables_are_read_as_console_subscriber_reads_them() {
        assert_eq!(read(&[]).unwrap(), Settings::default());
        let settings = read(&[
            ("TOKIO_CONSOLE_BIND", "127.0.0.1:7000"),
            ("TOKIO_CONSOLE_RETENTION", "10m"),
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "250ms"),
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "4096"),
            ("TOKIO_CONSOLE_RECORD_PATH", "console.rec"),
        ])
        .unwrap();
        assert_eq!(settings.bind, Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(settings.retention, Some(Duration::from_secs(600)));
        assert_eq!(settings.publish_interval, Some(Duration::from_millis(250)));
        assert_eq!(settings.buffer_capacity, Some(4096));
        assert_eq!(settings.record_path.as_deref(), Some(std::path::Path::new("console.rec")));
    }

    /// The limits themselves are taken.
    #[test]
    fn the_shortest_interval_and_the_largest_buffer_are_taken() {
        let settings =
            read(&[("TOKIO_CONSOLE_PUBLISH_INTERVAL", "10ms"), ("TOKIO_CONSOLE_BUFFER_CAPACITY", "1048576")]).unwrap();
        assert_eq!(settings.publish_interval, Some(MIN_PUBLISH_INTERVAL));
        assert_eq!(settings.buffer_capacity, Some(MAX_BUFFER_CAPACITY));
    }

    /// A path need not be Unicode: read lossily, the recording went to a
    /// file of another name.
    #[cfg(unix)]
    #[test]
    fn a_recording_path_is_taken_as_it_is() {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::OsStr::from_bytes(b"console-\xff.rec");
        let settings = Settings::read(&|var: &str| (var == "TOKIO_CONSOLE_RECORD_PATH").then(|| path.to_owned()));
        assert_eq!(settings.unwrap().record_path.as_deref(), Some(std::path::Path::new(path)));
    }

    /// Any other variable that is not Unicode is an error naming it.
    #[cfg(unix)]
    #[test]
    fn another_variable_that_is_not_unicode_is_an_error() {
        use std::os::unix::ffi::OsStrExt;
        let value = std::ffi::OsStr::from_bytes(b"1s\xff");
        let read = Settings::read(&|var: &str| (var == "TOKIO_CONSOLE_RETENTION").then(|| value.to_owned()));
        match read {
            Err(TelemetryError::InvalidEnvironment { var, value, .. }) => {
                assert_eq!((var, value.as_str()), ("TOKIO_CONSOLE_RETENTION", "1s\u{fffd}"))
            }
            other => panic!("{other:?}"),
        }
    }

    /// console-subscriber panics on each of these.
    #[test]
    fn a_value_it_cannot_read_is_an_error_naming_the_variable() {
        for (var, value) in [
            ("TOKIO_CONSOLE_BIND", "nonsense"),
            ("TOKIO_CONSOLE_BIND", "127.0.0.1"),
            ("TOKIO_CONSOLE_RETENTION", "an hour"),
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "5"),
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "-1"),
            // These two read, but panic later: in `build()` and on the
            // console's thread.
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "0"),
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "0s"),
            // Above tokio's limit (`usize::MAX >> 3`): its channel panicked
            // inside `build()`.
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "18446744073709551615"),
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "1048577"),
            // The console's thread published without pause.
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "1ns"),
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "9ms"),
        ] {
            match read(&[(var, value)]) {
                Err(TelemetryError::InvalidEnvironment { var: named, value: got, .. }) => {
                    assert_eq!((named, got.as_str()), (var, value));
                }
                other => panic!("{var}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_recording_path_that_cannot_be_created_is_an_error() {
        let dir = std::env::temp_dir().join(format!("snapview-console-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("console.rec");
        check_record_path(&file).expect("a file in an existing directory");
        assert!(file.is_file(), "created, as console-subscriber would");
        std::fs::write(&file, b"kept").unwrap();
        check_record_path(&file).expect("an existing file");
        assert_eq!(std::fs::read(&file).unwrap(), b"kept", "the check changes no existing file");

        let missing = dir.join("no such directory/console.rec");
        for (path, why) in [(missing.as_path(), "No such file"), (dir.as_path(), "not a regular file")] {
            match check_record_path(path) {
                Err(TelemetryError::InvalidEnvironment { var, value, .. }) => {
                    assert_eq!(var, "TOKIO_CONSOLE_RECORD_PATH");
                    assert!(value.starts_with(path.to_str().unwrap()) && value.contains(why), "{value}");
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
