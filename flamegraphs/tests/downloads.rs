//! The profiles are downloads with a file name, as Go's are. A test binary
//! of its own: the profiler is process-wide, and a CPU profile of another
//! test would refuse this one's.

mod common;

use common::Server;

/// The profiles are downloads named as Go's are (`go tool pprof` and a
/// browser save them under that name): `attachment; filename="profile"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_named_downloads() {
    common::start_workload();
    let server = Server::open().await;
    let disposition = |path: &'static str| {
        let url = server.url(path);
        async move {
            let response = reqwest::get(&url).await.expect("answered");
            assert_eq!(response.status(), 200, "{path}");
            let value = response.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_owned());
            value.unwrap_or_else(|| panic!("{path}: no Content-Disposition"))
        }
    };
    let (cpu, views) = tokio::join!(
        disposition("/debug/pprof/profile?seconds=1"),
        disposition("/debug/pprof/views?seconds=1&format=pprof"),
    );
    assert_eq!(cpu, "attachment; filename=\"profile\"");
    assert_eq!(views, "attachment; filename=\"views\"");
}
