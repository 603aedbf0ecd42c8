//! An edit of the routes file is visible in the next requests, published as
//! one version, and its diff is logged.

use std::io::Write;
use std::sync::{Arc, Mutex};

mod common;

/// Everything logged, for the assertions. Global: the reloader logs from a tokio worker thread.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer = Buffer(Arc::clone(&logs));
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_one_version_visible_in_the_next_request_and_logged() {
    let logs = capture_logs();
    let (service, file) = common::start(common::ROUTES).await;
    let client = common::client();
    assert_eq!(common::route(&client, &service, "/api/v2/x").await.1["route"], "/api");

    let edited = common::ROUTES.replace("http://10.0.1.1:80", "http://10.0.1.9:80")
        + "\n[[route]]\nprefix = \"/api/v2\"\nupstream = \"http://10.0.0.22:8080\"\n";
    let edited = edited.replace("[[route]]\nprefix = \"/api/users\"\nupstream = \"http://10.0.0.2:8080\"\n", "");
    file.write(&edited);

    let json = common::wait_for_route(&client, &service, "/api/v2/x", Some("/api/v2")).await;
    assert_eq!(json["upstream"], "http://10.0.0.22:8080");
    assert_eq!(json["version"], 2, "the whole edit is one version: {json}");
    // The rest of the same edit is in that version too.
    assert_eq!(common::route(&client, &service, "/api/users/1").await.1["route"], "/api");
    assert_eq!(common::route(&client, &service, "/static/a").await.1["upstream"], "http://10.0.1.9:80");
    assert_eq!(service.routes().version(), 2);

    // The reloader publishes, then logs the diff: a request can see the new
    // version before the line is written.
    let logged = || String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !logged().contains("routes v1 -> v2") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let logged = logged();
    let line =
        logged.lines().find(|l| l.contains("routes v1 -> v2")).unwrap_or_else(|| panic!("no diff logged:\n{logged}"));
    for part in
        ["+/api/v2 (http://10.0.0.22:8080)", "-/api/users", "~/static (http://10.0.1.1:80 -> http://10.0.1.9:80)"]
    {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(line.contains("INFO"), "{line}");
    service.shutdown().await;
}
