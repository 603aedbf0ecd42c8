//! tokio-console through console-subscriber.

use super::{BoxedLayer, TelemetryBuilder, TelemetryError};

#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
impl TelemetryBuilder {
    /// Serves tokio-console (default `127.0.0.1:6669`; console-subscriber's
    /// `TOKIO_CONSOLE_*` variables apply). tokio only emits what the console
    /// shows when built with `--cfg tokio_unstable`, so without it
    /// [`build`](Self::build) returns [`TelemetryError::ConsoleNeedsTokioUnstable`].
    ///
    /// The console's layer takes tokio's TRACE instrumentation (its own
    /// filter), so `LevelFilter::current()` becomes TRACE while it is on.
    pub fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }
}

/// The console layer, with console-subscriber's own filter; its server runs
/// on a thread of its own.
#[cfg(tokio_unstable)]
pub(super) fn layer() -> Result<BoxedLayer, TelemetryError> {
    use tracing_subscriber::Layer as _;
    Ok(console_subscriber::ConsoleLayer::builder().with_default_env().spawn().boxed())
}

#[cfg(not(tokio_unstable))]
pub(super) fn layer() -> Result<BoxedLayer, TelemetryError> {
    Err(TelemetryError::ConsoleNeedsTokioUnstable)
}
