//! `go tool pprof` fetching from the endpoint itself, as its users point it:
//! the query it builds (`seconds`, set from `-seconds`) is accepted, and a
//! refusal's message reaches its user (it prints the body of an error only
//! when `X-Go-Pprof` marks it as the pprof endpoint's own). Skipped when
//! `go` is missing, unless `SNAPVIEW_REQUIRE_TOOLS` is set (as in CI).

mod common;

use std::process::{Command, Output};

use common::{SPIN_FN, Server};

/// `go tool pprof -top ARGS` on a blocking thread (the server runs on this
/// test's runtime), with its state kept out of the user's home.
async fn go_pprof(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let dir = std::env::temp_dir().join(format!("snapview-go-pprof-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("go")
            .args(["tool", "pprof", "-top", "-symbolize=none"])
            .args(&args)
            .env("HOME", &dir)
            .env("PPROF_TMPDIR", &dir)
            .env("GOCACHE", dir.join("gocache"))
            .output()
            .expect("go runs");
        let _ = std::fs::remove_dir_all(&dir);
        output
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_tool_pprof_fetches_and_reads_refusals() {
    if !common::go_is_installed() {
        return;
    }
    common::start_workload();
    let server = Server::open().await;

    let fetched = go_pprof(vec!["-seconds".into(), "1".into(), server.url("/debug/pprof/profile")]).await;
    let stdout = String::from_utf8_lossy(&fetched.stdout);
    assert!(fetched.status.success(), "go tool pprof failed: {}\n{stdout}", String::from_utf8_lossy(&fetched.stderr));
    assert!(stdout.contains(SPIN_FN), "the fetched profile names {SPIN_FN}:\n{stdout}");

    let refused = go_pprof(vec![server.url("/debug/pprof/profile?seconds=1&second=1")]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a misspelt parameter fetched a profile");
    assert!(
        stderr.contains("400 Bad Request - unknown parameter \"second\" (did you mean seconds?)"),
        "go tool pprof shows why it was refused:\n{stderr}"
    );
}
