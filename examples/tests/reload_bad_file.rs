//! A routes file that does not parse, or breaks a rule, keeps the last good
//! version in force; fixing it is picked up again.

use std::time::Duration;

mod common;

#[tokio::test]
async fn a_bad_file_keeps_the_last_good_routes() {
    let (service, file) = common::start(common::ROUTES).await;
    let client = common::client();
    for bad in ["[[route]\nprefix = ", "[[route]]\nprefix = \"api\"\nupstream = \"http://x\"\n", ""] {
        let bad =
            if bad.is_empty() { common::ROUTES.replace("http://10.0.0.1:8080", "ftp://nope") } else { bad.to_owned() };
        file.write(&bad);
        // Several reload periods: long enough for the reloader to have seen it.
        tokio::time::sleep(Duration::from_millis(300)).await;
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
