//! tokio-console without `--cfg tokio_unstable` is an error, not a panic.

#![cfg(all(feature = "console", not(tokio_unstable)))]

use snapview_instrument::{Telemetry, TelemetryError};

#[test]
fn console_without_tokio_unstable_is_a_clear_error() {
    let error = Telemetry::builder().console(true).build().err().expect("console needs tokio_unstable");
    assert!(matches!(error, TelemetryError::ConsoleNeedsTokioUnstable), "{error:?}");
    assert!(error.to_string().contains("--cfg tokio_unstable"), "{error}");
}
