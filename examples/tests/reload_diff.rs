//! An edit of the routes file is visible in the next requests, published as
//! one version, and its diff is logged.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_one_version_visible_in_the_next_request_and_logged() {
    let logs = common::Logs::capture();
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

    let line = logs.line_with("routes v1 -> v2").await;
    for part in
        ["+/api/v2 (http://10.0.0.22:8080)", "-/api/users", "~/static (http://10.0.1.1:80 -> http://10.0.1.9:80)"]
    {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(line.contains("INFO"), "{line}");
    service.shutdown().await;
}
