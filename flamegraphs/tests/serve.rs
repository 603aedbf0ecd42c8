//! `serve_with` refuses non-loopback addresses unless told otherwise;
//! `serve_with_shutdown` stops on its signal.

use std::io::ErrorKind;

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
