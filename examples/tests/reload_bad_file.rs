//! A routes file that does not parse, breaks a rule, has no `[[route]]`
//! (without saying `route = []`, which is published) or cannot be read
//! keeps the last good version in force, and the log says why; fixing it is
//! picked up again.

use std::time::Duration;

use snapview_examples::gateway::Service;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_last_good_routes() {
    let logs = common::Logs::capture();
    let (service, file) = common::start(common::ROUTES).await;
    let client = common::client();
    let bad_upstream = common::ROUTES.replace("http://10.0.0.1:8080", "ftp://nope");
    for (bad, why) in [
        ("[[route]\nprefix = ", "TOML error at line 1"),
        ("[[route]]\nprefix = \"api\"\nupstream = \"http://x\"\n", "route #1: prefix \"api\" must start with '/'"),
        (bad_upstream.as_str(), "route #1 (/api): upstream \"ftp://nope\""),
    ] {
        file.write(bad);
        let line = logs.line_with(why).await;
        assert!(line.contains("ERROR") && line.contains("rejected"), "{line}");
        assert!(line.contains("; keeping the routes of version 1"), "{line}");
        let (status, json) = common::route(&client, &service, "/api/x").await;
        assert_eq!((status, &json["route"], &json["version"]), (200, &"/api".into(), &1.into()), "{json}");
    }
    // A good file again is published.
    file.write(&common::ROUTES.replace("http://10.0.0.1:8080", "http://10.0.0.7:8080"));
    let json = common::wait_for_route(&client, &service, "/api/x", Some("/api")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut json = json;
    while json["upstream"] != "http://10.0.0.7:8080" {
        assert!(std::time::Instant::now() < deadline, "the fixed file was not picked up: {json}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        json = common::route(&client, &service, "/api/x").await.1;
    }
    assert_eq!(json["version"], 2);
    service.shutdown().await;
}

/// A file with no `[[route]]`, what a failed `./render-routes > routes.toml`
/// leaves (empty, or with the comments printed before the failure), is
/// rejected as any bad file is: before, it was published as an empty table,
/// and every request got a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_a_route_keeps_the_last_good_routes() {
    let logs = common::Logs::capture();
    let client = common::client();
    for text in ["", "# rendered by render-routes\n# routes:\n"] {
        let (service, file) = common::start(common::ROUTES).await;
        file.write(text);
        let rejected = format!("rejected {}: has no [[route]]", file.path.display());
        let line = logs.line_with(&rejected).await;
        assert!(line.contains("ERROR") && line.contains("; keeping the routes of version 1"), "{text:?}: {line}");
        let (status, json) = common::route(&client, &service, "/api/x").await;
        assert_eq!((status, &json["route"], &json["version"]), (200, &"/api".into(), &1.into()), "{text:?}: {json}");
        assert_eq!((service.routes().version(), service.routes().snapshot().len()), (1, 3), "{text:?}");
        service.shutdown().await;
    }
}

/// `route = []` says no route on purpose: it is published, one version
/// whose diff removes every route, and requests get 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_says_no_route_is_published() {
    let logs = common::Logs::capture();
    let client = common::client();
    let (service, file) = common::start(common::ROUTES).await;
    file.write("# every route withdrawn\nroute = []\n");
    let line = logs.line_with(&format!("reloaded {}: routes v1 -> v2:", file.path.display())).await;
    assert_eq!(line.matches(" -/").count(), 3, "the diff removes every route: {line}");
    let (status, json) = common::route(&client, &service, "/api/x").await;
    assert_eq!((status, &json["version"]), (404, &2.into()), "{json}");
    assert!(service.routes().snapshot().is_empty());
    service.shutdown().await;
}

/// A file that cannot be read as a routes file while the service runs:
/// deleted, made non-UTF-8, grown past 1 MiB, a FIFO swapped in. Each is
/// logged once with its reason, the current routes are kept, and the
/// shutdown does not wait on the FIFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_keeps_the_current_routes() {
    let logs = common::Logs::capture();
    let (service, file) = common::start(common::ROUTES).await;
    let client = common::client();
    let path = format!("path={}", file.path.display());
    let limit = snapview_examples::gateway::config::MAX_ROUTES_FILE;
    std::fs::remove_file(&file.path).unwrap();
    keeps_the_routes(&logs, &client, &service, &path, "No such file or directory").await;
    file.write_bytes(&[common::ROUTES.as_bytes(), b"# caf\xe9\n"].concat());
    keeps_the_routes(&logs, &client, &service, &path, "error=not UTF-8 text").await;
    // The same routes, padded with a comment: read, it would be taken.
    let padding = usize::try_from(limit).unwrap() + 1 - common::ROUTES.len() - 2;
    let big = format!("{}#{}\n", common::ROUTES, "x".repeat(padding));
    assert_eq!(big.len() as u64, limit + 1);
    file.write(&big);
    let over = format!("error={} bytes, over the {limit} a routes file may have", limit + 1);
    keeps_the_routes(&logs, &client, &service, &path, &over).await;

    // A readable file again is read again.
    file.write(&common::ROUTES.replace("http://10.0.0.1:8080", "http://10.0.0.7:8080"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while service.routes().version() != 2 {
        assert!(std::time::Instant::now() < deadline, "the good file was not read again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let fifo = file.path.with_extension("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs").success());
    std::fs::rename(&fifo, &file.path).unwrap();
    let line = logs.line_with_all(&["cannot read the routes file", &path, "error=not a regular file"]).await;
    assert!(line.contains("version=2"), "{line}");
    assert_eq!(common::route(&client, &service, "/api/x").await.1["upstream"], "http://10.0.0.7:8080");
    // Under the 5 s the shutdown gives a reloader that does not stop.
    let shutdown = tokio::time::timeout(Duration::from_secs(3), service.shutdown()).await;
    shutdown.expect("the shutdown waited on the reloader");
}

/// `why` is logged as the reason the file is not read, once however many
/// polls meet it, with the routes of version 1 kept; they are still served.
async fn keeps_the_routes(logs: &common::Logs, client: &reqwest::Client, service: &Service, path: &str, why: &str) {
    let needles = ["cannot read the routes file; keeping the current routes", path, why];
    let line = logs.line_with_all(&needles).await;
    assert!(line.contains("WARN") && line.contains("version=1"), "{line}");
    let (status, json) = common::route(client, service, "/api/x").await;
    assert_eq!((status, &json["route"], &json["version"]), (200, &"/api".into(), &1.into()), "{why}: {json}");
    assert_eq!(service.routes().version(), 1, "{why}");
    // A few more of `common::start`'s 50 ms polls.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = logs.text();
    let times = text.lines().filter(|line| needles.iter().all(|needle| line.contains(needle))).count();
    assert_eq!(times, 1, "{why}:\n{text}");
}
