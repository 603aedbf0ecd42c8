//! `serve_with` refuses non-loopback addresses unless told otherwise, and
//! warns when told to serve one without a token; `serve_with_shutdown` stops
//! on its signal.

use std::io::{ErrorKind, Write};
use std::sync::{Arc, Mutex};

use snapview_flame::{DEFAULT_ADDR, DebugConfig};

#[test]
fn the_default_address_is_loopback_6060() {
    assert_eq!(DEFAULT_ADDR.to_string(), "127.0.0.1:6060");
}

#[tokio::test]
async fn remote_addresses_need_allow_remote() {
    let err = snapview_flame::serve_with("0.0.0.0:0", DebugConfig::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("allow_remote"), "{err}");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = snapview_flame::serve_with_shutdown(listener, DebugConfig::default(), async {}).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

#[tokio::test]
async fn serving_ends_on_the_shutdown_signal() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = snapview_flame::serve_with_shutdown(listener, DebugConfig::default().without_token(), async {});
    tokio::time::timeout(std::time::Duration::from_secs(5), served).await.expect("it stops").expect("cleanly");
}

/// What the fmt layer writes, kept for the test to read.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn serving_beyond_loopback_without_a_token_warns() {
    for (config, warns) in [
        (DebugConfig::default().without_token().allow_remote(true), true),
        (DebugConfig::default().token("s3cret").allow_remote(true), false),
    ] {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        snapview_flame::serve_with_shutdown(listener, config, async {}).await.expect("serves, then stops");
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.contains("without a token"), warns, "{text:?}");
    }
}
