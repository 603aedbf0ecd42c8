//! The debug routes merged into an application's router: they bring no
//! fallback, so an application with its own merges them, and the token
//! guards the debug routes only, never the application's paths or 404s.

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use snapview_flame::DebugConfig;
use tokio::net::TcpListener;

/// Serves `app` on an ephemeral loopback port; returns `http://127.0.0.1:PORT`.
async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn application() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_with_a_fallback_merges_the_routes_and_keeps_its_404() {
    let config = DebugConfig::default().token("s3cret");
    let app = application()
        .fallback(|| async { (StatusCode::NOT_FOUND, "the application's 404") })
        .merge(snapview_flame::router_with(&config));
    let base = serve(app).await;

    let (status, _, body) = common::get(&format!("{base}/favicon.ico"), None).await;
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (404, "the application's 404"));
    assert_eq!(common::get(&format!("{base}/"), None).await.0, 200, "the application's route needs no token");
    for path in snapview_flame::ROUTES {
        // `seconds=0` gets a 400 at once from the profiling routes, where
        // their default would profile for 30 s.
        let url = format!("{base}{path}?seconds=0");
        assert_eq!(common::get(&url, None).await.0, 401, "{path} without the token");
        let status = common::get(&url, Some("Bearer s3cret")).await.0;
        assert!(status == 200 || status == 400, "{path} with the token: {status}");
        let wrong_method = reqwest::Client::new().post(&url).send().await.unwrap().status();
        assert_eq!(wrong_method, 401, "POST {path} without the token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_without_a_fallback_keeps_its_404_out_of_the_token() {
    let config = DebugConfig::default().token("s3cret");
    let base = serve(application().merge(snapview_flame::router_with(&config))).await;
    assert_eq!(common::get(&format!("{base}/nowhere"), None).await.0, 404);
    assert_eq!(common::get(&format!("{base}/debug/pprof/histograms"), None).await.0, 401);
}
