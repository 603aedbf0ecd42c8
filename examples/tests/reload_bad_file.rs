//! A routes file that does not parse, or breaks a rule, keeps the last good
//! version in force, and the log says why; fixing it is picked up again.

use std::time::Duration;

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
