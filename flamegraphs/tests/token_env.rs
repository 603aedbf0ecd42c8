//! `SNAPVIEW_DEBUG_TOKEN` sets the token of the default configuration. The
//! environment is process-wide, so the test runs itself again as a child
//! process with the variable set rather than changing its own.

mod common;

use std::process::Command;

use snapview_flame::{DebugConfig, TOKEN_ENV};

const TOKEN: &str = "from-the-environment";

#[test]
fn the_token_comes_from_the_environment() {
    if std::env::var(TOKEN_ENV).is_err() {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "the_token_comes_from_the_environment", "--nocapture"])
            .env(TOKEN_ENV, TOKEN)
            .status()
            .unwrap();
        assert!(status.success(), "the child run failed");
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
