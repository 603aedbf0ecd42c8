//! Without a token, the gateway's `/metrics` (snapview's histograms, as the
//! debug `/metrics` it stands in for) refuses what a web page can make a
//! browser send, as the debug routes do: a request addressed by a name
//! that is not loopback's (DNS rebinding) and one made for another site's
//! page. The gateway's own routes answer both.

mod common;

#[tokio::test]
async fn metrics_refuses_rebound_names_and_other_sites() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    let url = |path: &str| format!("http://{}{path}", service.local_addr());
    let port = service.local_addr().port();
    let rebound = format!("attacker.example:{port}");
    for path in ["/metrics", "/debug/pprof/histograms"] {
        let by_name = client.get(url(path)).header("host", &rebound).send().await.unwrap();
        assert_eq!(by_name.status(), 403, "{path} addressed as {rebound}");
        let cross_site = client.get(url(path)).header("sec-fetch-site", "cross-site").send().await.unwrap();
        assert_eq!(cross_site.status(), 403, "{path} for another site's page");
        let local = client.get(url(path)).header("host", format!("localhost:{port}")).send().await.unwrap();
        assert_eq!(local.status(), 200, "{path} addressed as localhost");
    }
    let routed = client.get(url("/route/api/users/1")).header("host", &rebound).send().await.unwrap();
    assert_eq!(routed.status(), 200, "the gateway's own routes are the application's business");
    service.shutdown().await;
}
