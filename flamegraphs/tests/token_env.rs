//! `SNAPVIEW_DEBUG_TOKEN` sets the token of the default configuration. The
//! environment is process-wide, so each case runs this binary again as a
//! child process with the variable set rather than changing its own.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use snapview_flame::{DebugConfig, TOKEN_ENV};

const TOKEN: &str = "from-the-environment";
#[test]
fn the_token_comes_from_the_environment() {
    common::run_child("child_the_token_comes_from_the_environment", (TOKEN_ENV, OsStr::new(TOKEN)));
}

#[test]
#[ignore = "run by the_token_comes_from_the_environment, in a child process"]
fn child_the_token_comes_from_the_environment() {
    if !common::in_child() {
        return;
    }
    assert_eq!(DebugConfig::default().token.as_deref(), Some(TOKEN));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, snapview_flame::router()).await });
        assert_eq!(common::get(&url, None).await.0, 401);
        assert_eq!(common::get(&url, Some(&format!("Bearer {TOKEN}"))).await.0, 200);
    });
}

/// A token that is not Unicode cannot be sent; it must stop the server, not
/// be taken for no token and leave it open.
#[test]
fn a_token_that_is_not_unicode_is_refused_not_ignored() {
    common::run_child(
        "child_a_token_that_is_not_unicode_is_refused_not_ignored",
        (TOKEN_ENV, OsStr::from_bytes(b"s3cr\xffet")),
    );
}

#[test]
#[ignore = "run by a_token_that_is_not_unicode_is_refused_not_ignored, in a child process"]
fn child_a_token_that_is_not_unicode_is_refused_not_ignored() {
    if !common::in_child() {
        return;
    }
    assert!(DebugConfig::default().token.is_some(), "the token is kept, lossily");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = snapview_flame::serve_with_shutdown(listener, DebugConfig::default(), std::future::pending());
        let err = served.await.expect_err("the server refuses to start");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    });
    let mounted = std::panic::catch_unwind(snapview_flame::router);
    assert!(mounted.is_err(), "router() panics on a token it cannot check");
}
